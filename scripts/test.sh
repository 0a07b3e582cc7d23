#!/usr/bin/env bash
# Installs what the tests need, builds, and runs the whole suite (unit + integration) with ctest.
# Extra arguments go to ctest, e.g. scripts/test.sh -L unit
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ensure_build_deps
ensure_example_runtimes
ensure_packages python3
build -DCK_WERROR=${CK_WERROR:-OFF}
say "running the test suite"
cd "$CK_BUILD"
ctest --output-on-failure --timeout 900 -j 2 "$@"
