#!/usr/bin/env bash
# Installs what the tests need, builds, and runs the whole suite (unit + integration) with ctest,
# twice: on the release build, then on an AddressSanitizer/UBSan build (preset `debug`), which
# catches use-after-free in coroutines that a release build hides. The sanitizer pass leaves out
# the tests labelled `once` (Docker, npm and the soak: their time is spent outside our code).
# Extra arguments go to both ctest runs, e.g. scripts/test.sh -L unit. CK_SKIP_SANITIZERS=1
# skips the second pass.
#
# Two cores make time the constraint: the runtime images are built (debootstrap: network and
# disk) while the compiler builds the tests, and the sanitizer build compiles at the lowest
# priority while the release suite runs (its tests mostly wait on sockets, timers and Docker).
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
# The dashboard's browser tests: Debian's Chromium, driven by playwright-core from npm (which
# never downloads a browser of its own).
ensure_packages chromium
# The docker runtime's tests run against a real engine; Debian's docker-compose (1.29) is the
# oracle test_compose_compat runs the same files with.
ensure_docker
ensure_packages docker-compose
# A local S3 stand-in (npm) for the S3 client's tests; a failed install stops the run.
CK_S3RVER="$(bash "$CK_ROOT/scripts/s3rver.sh")"
export CK_S3RVER
CK_PLAYWRIGHT="$(bash "$CK_ROOT/scripts/playwright.sh")"
export CK_PLAYWRIGHT

# The binary first: it builds the runtime images the examples use, in the background while the
# rest compiles.
CK_BUILD_TARGET=cloudyknight build -DCK_WERROR=${CK_WERROR:-OFF}
images_log="$CK_BUILD/images-build.log"
say "building the runtime images in the background (log: $images_log)"
ensure_images node python >"$images_log" 2>&1 &
images_pid=$!
build -DCK_WERROR=${CK_WERROR:-OFF}
if ! wait "$images_pid"; then
  say "building the runtime images failed; the end of its log:"
  tail -n 40 "$images_log" >&2
  exit 1
fi

asan_build="$CK_ROOT/build-debug"
asan_log="$CK_ROOT/build-debug.log"
if [ -z "${CK_SKIP_SANITIZERS:-}" ]; then
  say "building with AddressSanitizer and UBSan into $asan_build, at the lowest priority while" \
      "the release suite runs (log: $asan_log)"
  (
    cmake --preset debug -S "$CK_ROOT" -DCK_WERROR=${CK_WERROR:-OFF} >/dev/null &&
      nice -n 19 cmake --build "$asan_build" -j "$(nproc)"
  ) >"$asan_log" 2>&1 &
  asan_pid=$!
fi

say "running the test suite (release build)"
release_rc=0
(cd "$CK_BUILD" && ctest --output-on-failure --timeout 900 -j 2 "$@") || release_rc=$?

asan_rc=0
if [ -z "${CK_SKIP_SANITIZERS:-}" ]; then
  say "waiting for the sanitizer build"
  if ! wait "$asan_pid"; then
    say "the sanitizer build failed; the end of its log:"
    tail -n 60 "$asan_log" >&2
    exit 1
  fi
  say "running the test suite (sanitizer build, without the tests labelled once)"
  (
    cd "$asan_build"
    # CK_TEST_TIME_SCALE: the tests' waits and "within N s" bounds stretch for a slower daemon.
    CK_TEST_TIME_SCALE=3 \
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      LSAN_OPTIONS=suppressions=$CK_ROOT/scripts/lsan.supp \
      ctest --output-on-failure --timeout 900 -j 2 -LE once "$@"
  ) || asan_rc=$?
fi

if [ "$release_rc" -ne 0 ] || [ "$asan_rc" -ne 0 ]; then
  # CI keeps the end of the output: repeat what the failed tests said, last.
  [ "$release_rc" -ne 0 ] && { say "release pass:"; python3 "$CK_ROOT/scripts/failed_tests.py" "$CK_BUILD"; }
  [ "$asan_rc" -ne 0 ] && { say "sanitizer pass:"; python3 "$CK_ROOT/scripts/failed_tests.py" "$asan_build"; }
  say "tests failed: release pass exit $release_rc, sanitizer pass exit $asan_rc (see above)"
  exit 1
fi
say "all tests passed"
