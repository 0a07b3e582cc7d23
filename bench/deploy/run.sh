#!/usr/bin/env bash
# Deploy benchmark (issue 18): `cloudyknight deploy` vs `rsync --daemon` over loopback, a
# 5,000-file workspace with one changed file. See bench.py for what is measured.
# Env: BENCH_FILES (5000), BENCH_ROUNDS (7), BENCH_DIR (/tmp), BENCH_KEEP=1 keeps the temp dir.
set -euo pipefail
ROOT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
command -v rsync >/dev/null || { echo "[bench] rsync is missing: apt-get install rsync" >&2; exit 1; }
exec timeout 1200 python3 "$ROOT_DIR/bench/deploy/bench.py" "$@"
