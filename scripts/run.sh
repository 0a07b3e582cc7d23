#!/usr/bin/env bash
# Installs what CloudyKnight needs (Docker included), builds it, and serves the bundled examples/ on
# http://127.0.0.1:8080/ (Ctrl-C stops it and every workspace).
# Options go to `cloudyknight serve`, e.g. scripts/run.sh --listen 127.0.0.1:9090
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_build_deps
ensure_example_runtimes
# git push to deploy (/monitor/git/NAME.git) runs Debian's `git http-backend`.
ensure_command git git
# Serving needs only the binary: the tests, fuzzers and benchmarks are built by scripts/test.sh.
CK_BUILD_TARGET=cloudyknight build
# Each example in its own container when a Docker engine runs (installed and started here if
# need be); otherwise the embedded process runtime serves them.
if ensure_docker && ensure_images node python; then
  say "runtime: docker"
else
  say "no Docker engine: serving with the process runtime instead"
fi
say "starting: cloudyknight serve --listen 127.0.0.1:8080 --workspaces examples --data data"
cd "$CK_ROOT"
exec "$CK_BUILD/cloudyknight" serve --listen 127.0.0.1:8080 --workspaces "$CK_ROOT/examples" \
  --data "$CK_ROOT/data" "$@"
