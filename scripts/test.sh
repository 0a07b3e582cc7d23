#!/usr/bin/env bash
# Installs what the tests need, builds, and runs the whole suite (unit + integration) with ctest,
# twice: on the release build, then on an AddressSanitizer/UBSan build (preset `debug`), which
# catches use-after-free in coroutines that a release build hides.
# Extra arguments go to ctest, e.g. scripts/test.sh -L unit. CK_SKIP_SANITIZERS=1 skips the
# second pass.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_build_deps
ensure_example_runtimes
# botocore: an independent SigV4 signer; awscli (v2, /usr/bin/aws) and rclone: the real S3 clients
# the interop tests and bench/s3 compare against.
ensure_packages python3 python3-botocore awscli rclone
# git workspaces: the git CLI plays the remote and the other developer (git daemon, bare
# repositories) and pushes to /monitor/git, which runs `git http-backend`; sshd serves a remote
# over ssh for the deploy-key test.
ensure_packages git openssh-server
# The soak (tests/soak/run.py) draws its curves (RSS, fds, latency) into report.png with gnuplot.
ensure_packages gnuplot-nox
# A local S3 stand-in (npm) for the S3 client's tests; a failed install stops the run.
CK_S3RVER="$(bash "$CK_ROOT/scripts/s3rver.sh")"
export CK_S3RVER
# The dashboard's browser tests: Debian's Chromium, driven by playwright-core from npm (which
# never downloads a browser of its own).
ensure_packages chromium
CK_PLAYWRIGHT="$(bash "$CK_ROOT/scripts/playwright.sh")"
export CK_PLAYWRIGHT
build -DCK_WERROR=${CK_WERROR:-OFF}
# The docker runtime's tests run against a real engine with the images the examples use.
ensure_docker
# Debian's docker-compose (1.29): the oracle test_compose_compat runs the same files with.
ensure_packages docker-compose
ensure_images node python
say "running the test suite (release build)"
(cd "$CK_BUILD" && ctest --output-on-failure --timeout 900 -j 2 "$@")

if [ -z "${CK_SKIP_SANITIZERS:-}" ]; then
  say "building with AddressSanitizer and UBSan into $CK_ROOT/build-debug"
  cmake --preset debug -S "$CK_ROOT" -DCK_WERROR=${CK_WERROR:-OFF} >/dev/null
  cmake --build "$CK_ROOT/build-debug" -j "$(nproc)"
  say "running the test suite (sanitizer build)"
  cd "$CK_ROOT/build-debug"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    LSAN_OPTIONS=suppressions=$CK_ROOT/scripts/lsan.supp \
    ctest --output-on-failure --timeout 900 -j 2 "$@"
fi
