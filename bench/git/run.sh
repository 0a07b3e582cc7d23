#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup is reached through traps
# Git pull benchmark (issue 16): ck::git::pull() (libgit2) beside `git clone` / `git pull` on
# the same generated repository (5,000 files, 1,000 commits), per transport, on 127.0.0.1 only.
#
# Transports (BENCH_TRANSPORTS, default all, in this order):
#   file   file:///…/bench.git: git runs upload-pack over a pipe, libgit2 its in-process local
#          transport
#   path   /…/bench.git, a plain path: the same for ours; git clone links the object files
#          instead (git's local-clone shortcut), git pull is as for file
#   git    git://127.0.0.1:PORT/bench.git, served by `git daemon`
#   http   http://127.0.0.1:PORT/bench.git, smart HTTP: `git http-backend` behind
#          bench/git/http_backend.py (a minimal CGI bridge)
# Cases per transport (see git_bench.cc): clone (into an empty folder), pull (the remote got
# 20 commits touching 100 files), noop (nothing new). Median of BENCH_ROUNDS interleaved rounds.
#
# Env options:
#   BENCH_TRANSPORTS   transports to measure            (default "file path git http")
#   BENCH_ROUNDS       rounds per case                  (default 5)
#   BENCH_FILES        files in the repository          (default 5000)
#   BENCH_COMMITS      commits in the repository        (default 1000)
#   BENCH_DIR          where the temp dir goes          (default $TMPDIR or /tmp; /dev/shm
#                      takes the disk out of the comparison)
#   BENCH_OP_TIMEOUT   limit per clone/pull, seconds    (default 120)
#   BENCH_TIMEOUT      limit for the whole run, seconds (default 1200)
#   BENCH_KEEP         1 = keep the temp dir
#   GIT_BENCH          the bench binary (default build/bench/git_bench of this checkout)
# Exit code: 0 when every case was measured and verified (a goal not met is a finding, not an
# error), 1 otherwise.
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT_DIR="$(cd "$SCRIPT_DIR/../.." && pwd)"
TRANSPORTS="${BENCH_TRANSPORTS:-file path git http}"
ROUNDS="${BENCH_ROUNDS:-5}"
FILES="${BENCH_FILES:-5000}"
COMMITS="${BENCH_COMMITS:-1000}"
OP_TIMEOUT="${BENCH_OP_TIMEOUT:-120}"
TOTAL_TIMEOUT="${BENCH_TIMEOUT:-1200}"
PARENT="${BENCH_DIR:-${TMPDIR:-/tmp}}"
GIT_BENCH="${GIT_BENCH:-$ROOT_DIR/build/bench/git_bench}"

log() { printf '[bench] %s\n' "$*" >&2; }
die() { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

for v in ROUNDS FILES COMMITS OP_TIMEOUT TOTAL_TIMEOUT; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
((ROUNDS <= 100)) || die "BENCH_ROUNDS must be at most 100"
for t in $TRANSPORTS; do
  case "$t" in file | path | git | http) ;; *) die "unknown transport '$t' in BENCH_TRANSPORTS (known: file path git http)" ;; esac
done
[[ -n "${TRANSPORTS// /}" ]] || die "BENCH_TRANSPORTS is empty (known: file path git http)"
command -v git >/dev/null || die "git is missing (apt-get install git)"
command -v python3 >/dev/null || die "python3 is missing (apt-get install python3)"
[[ -x "$GIT_BENCH" ]] || die "$GIT_BENCH does not exist; build it: cmake --build build --target git_bench (or set GIT_BENCH)"
[[ -d "$PARENT" ]] || die "BENCH_DIR $PARENT is not a folder"

TMP="$(mktemp -d "$PARENT/ck-git-bench.XXXXXX")" || die "cannot make a temp dir in $PARENT"
PIDS=()
cleanup() {
  local p
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'log "interrupted"; exit 1' INT TERM
START=$SECONDS
# Neither side reads the user's or the system's git configuration.
export HOME="$TMP/home" XDG_CONFIG_HOME="$TMP/home/.config" GIT_CONFIG_NOSYSTEM=1
mkdir -p "$HOME" "$TMP/repos"
BARE="$TMP/repos/bench.git"

log "generating the repository ($FILES files, $COMMITS commits) in $BARE"
t0=$(date +%s.%N)
timeout 600 python3 "$SCRIPT_DIR/make_repo.py" init "$BARE" --files "$FILES" --commits "$COMMITS" >/dev/null ||
  die "make_repo.py init failed"
gen_s=$(echo "$(date +%s.%N) - $t0" | bc 2>/dev/null || echo "?")

declare -a ARGS=()
for t in $TRANSPORTS; do
  case "$t" in
    file) ARGS+=(--transport "file=file://$BARE") ;;
    path) ARGS+=(--transport "path=$BARE") ;;
    git)
      port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
      git daemon --reuseaddr --listen=127.0.0.1 --port="$port" --base-path="$TMP/repos" --export-all \
        --informative-errors "$TMP/repos" 2>"$TMP/git-daemon.log" &
      PIDS+=($!)
      url="git://127.0.0.1:$port/bench.git"
      for _ in $(seq 100); do timeout 5 git ls-remote "$url" >/dev/null 2>&1 && break; sleep 0.1; done
      timeout 5 git ls-remote "$url" >/dev/null 2>&1 || die "git daemon did not answer on $url: $(tail -5 "$TMP/git-daemon.log")"
      ARGS+=(--transport "git=$url")
      ;;
    http)
      python3 "$SCRIPT_DIR/http_backend.py" "$TMP/repos" "$TMP/http.port" 2>"$TMP/http.log" &
      PIDS+=($!)
      for _ in $(seq 100); do [[ -s "$TMP/http.port" ]] && break; sleep 0.1; done
      [[ -s "$TMP/http.port" ]] || die "http_backend.py did not start: $(tail -5 "$TMP/http.log")"
      url="http://127.0.0.1:$(cat "$TMP/http.port")/bench.git"
      timeout 5 git ls-remote "$url" >/dev/null 2>&1 || die "smart HTTP does not answer on $url: $(tail -5 "$TMP/http.log")"
      ARGS+=(--transport "http=$url")
      ;;
  esac
done

pack_mb=$(du -sm "$BARE/objects" | cut -f1)
tree_mb=$(git -C "$BARE" ls-tree -r -l main | awk '{s += $4} END {printf "%.1f", s / 1048576}')
nfiles=$(git -C "$BARE" ls-tree -r main | wc -l)
ncommits=$(git -C "$BARE" rev-list --count main)
fs_type=$(df -T "$TMP" | awk 'NR == 2 {print $2}')
echo "CloudyKnight git pull benchmark  ($(nproc) cores, load avg at start $(cut -d' ' -f1 /proc/loadavg), median of $ROUNDS interleaved rounds)"
echo "repository: $nfiles files ($tree_mb MiB checked out), $ncommits commits, $pack_mb MiB of objects; generated in ${gen_s%.*} s"
echo "ours: ck::git::pull (libgit2 $(pkg-config --modversion libgit2 2>/dev/null || echo '?')); git: $(git --version | cut -d' ' -f3); work dir on $fs_type ($PARENT)"
echo "pull case: 20 new commits touching 100 files per round; ours/git = median of the per-round ratios"
echo
# The whole run is bounded: generation by its own timeout above, the measurements by what is
# left of BENCH_TIMEOUT (every single clone or pull by BENCH_OP_TIMEOUT too).
left=$((TOTAL_TIMEOUT - (SECONDS - START)))
((left > 0)) || die "BENCH_TIMEOUT ($TOTAL_TIMEOUT s) reached before measuring"
timeout "$left" "$GIT_BENCH" --work "$TMP/work" --rounds "$ROUNDS" --op-timeout "$OP_TIMEOUT" \
  --extend "python3 $SCRIPT_DIR/make_repo.py extend $BARE --commits 20 --touch 100" "${ARGS[@]}"
rc=$?
((rc == 124)) && log "BENCH_TIMEOUT ($TOTAL_TIMEOUT s) reached: stopped before the end"
((rc == 0)) || log "git_bench exited with $rc"
exit "$rc"
