#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup/on_signal/wait_gone are reached through traps
# Gateway benchmark: backend direct vs nginx reverse proxy vs CloudyKnight gateway.
#
# One run measures, with wrk, on 127.0.0.1 only:
#   direct   wrk -> backend nginx                     (what the backend can do)
#   nginx    wrk -> nginx proxy (upstream keepalive)  -> backend
#   gateway  wrk -> cloudyknight /bench/              -> backend
# The backend is an nginx instance returning a fixed ~100-byte 200, started BY
# CloudyKnight as the process workspace "bench" (see backend/).
#
# Env options:
#   BENCH_DURATION     seconds per measured wrk run           (default 5)
#   BENCH_ROUNDS       interleaved rounds (direct, nginx, gateway) (default 5)
#   BENCH_CONNECTIONS  wrk connections                        (default 64)
#   BENCH_THREADS      wrk threads                            (default 1)
#   BENCH_WARMUP       seconds of warm-up before each run     (default 2)
#   BENCH_TIMEOUT      hard limit for the whole run, seconds  (default 600)
#   BENCH_KEEP         1 = keep the temp dir (logs, configs, wrk outputs)
#   CK_BINARY          cloudyknight binary (default /work/main/build/cloudyknight)
#   CK_EXTRA_ARGS      extra args appended to `cloudyknight serve` (e.g. "--log-level warn")
# Exit code: 0 when all three targets were measured without errors, 1 otherwise.
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DURATION="${BENCH_DURATION:-5}"
ROUNDS="${BENCH_ROUNDS:-5}"
CONNS="${BENCH_CONNECTIONS:-64}"
THREADS="${BENCH_THREADS:-1}"
WARMUP="${BENCH_WARMUP:-2}"
TOTAL_TIMEOUT="${BENCH_TIMEOUT:-600}"
CK_BINARY="${CK_BINARY:-/work/main/build/cloudyknight}"
CK_EXTRA_ARGS="${CK_EXTRA_ARGS:-}"
READY_DEADLINE=60

for v in DURATION CONNS THREADS WARMUP TOTAL_TIMEOUT; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || { echo "bench: $v must be a positive integer (got '${!v}')" >&2; exit 2; }
done

log()  { printf '[bench] %s\n' "$*" >&2; }
die()  { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- dependencies
need_pkgs=()
command -v wrk   >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_pkgs+=(nginx-light)
command -v curl  >/dev/null 2>&1 || need_pkgs+=(curl)
command -v jq    >/dev/null 2>&1 || need_pkgs+=(jq)
if ((${#need_pkgs[@]})); then
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "missing ${need_pkgs[*]} and not root (no sudo)"
    SUDO="sudo"
  fi
  log "installing ${need_pkgs[*]} with apt-get"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || die "apt-get update failed"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >&2 \
    || die "apt-get install ${need_pkgs[*]} failed"
fi
NGINX="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"
[[ -x "$CK_BINARY" ]] || die "cloudyknight binary not found or not executable: $CK_BINARY (set CK_BINARY)"

# ---------------------------------------------------------------- state + cleanup
TMP="$(mktemp -d "${TMPDIR:-/tmp}/ck-gwbench.XXXXXX")"
WS="$TMP/workspaces"      # kept apart from DATA so "data" is not scanned as a workspace
DATA="$TMP/data"
PROXY_DIR="$TMP/nginx-proxy"
RES="$TMP/results"
mkdir -p "$WS" "$DATA" "$PROXY_DIR/tmp" "$RES"

DAEMON_PID=""; PROXY_PID=""; CHILD_PID=""; WATCHDOG_PID=""; BACKEND_PID=""
CLEANED=0

daemon_tail() {
  echo "---- cloudyknight stderr (last ${1:-40} lines): $TMP/daemon.log" >&2
  tail -n "${1:-40}" "$TMP/daemon.log" >&2 2>/dev/null || true
  if [[ -f "$DATA/logs/bench.log" ]]; then
    echo "---- workspace log (last 20 lines): $DATA/logs/bench.log" >&2
    tail -n 20 "$DATA/logs/bench.log" >&2 || true
  fi
  echo "----" >&2
}

wait_gone() { # pid seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}

cleanup() {
  ((CLEANED)) && return
  CLEANED=1
  trap '' INT TERM
  [[ -n "$CHILD_PID" ]] && kill -TERM "$CHILD_PID" 2>/dev/null
  if [[ -n "$PROXY_PID" ]] && kill -0 "$PROXY_PID" 2>/dev/null; then
    kill -TERM "$PROXY_PID" 2>/dev/null
    wait_gone "$PROXY_PID" 5 || kill -KILL "$PROXY_PID" 2>/dev/null
  fi
  if [[ -n "$DAEMON_PID" ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    kill -TERM "$DAEMON_PID" 2>/dev/null
    if ! wait_gone "$DAEMON_PID" 15; then
      log "cloudyknight did not exit within 15s of SIGTERM; sending SIGKILL"
      kill -KILL "$DAEMON_PID" 2>/dev/null
    fi
    wait "$DAEMON_PID" 2>/dev/null
    local rc=$?
    [[ $rc -ne 0 && $rc -ne 143 ]] && log "cloudyknight exited with status $rc after SIGTERM (contract: 0)"
  fi
  # The daemon must have stopped the backend; if it did not, stop that process group ourselves.
  if [[ -n "$BACKEND_PID" ]] && kill -0 "$BACKEND_PID" 2>/dev/null; then
    log "backend workspace process $BACKEND_PID still alive after the daemon exited; stopping it"
    kill -TERM -- "-$BACKEND_PID" 2>/dev/null || kill -TERM "$BACKEND_PID" 2>/dev/null
    wait_gone "$BACKEND_PID" 5 || kill -KILL -- "-$BACKEND_PID" 2>/dev/null || kill -KILL "$BACKEND_PID" 2>/dev/null
  fi
  [[ -n "$WATCHDOG_PID" ]] && kill -TERM "$WATCHDOG_PID" 2>/dev/null
  if [[ "${BENCH_KEEP:-0}" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
on_signal() { log "interrupted ($1); cleaning up"; cleanup; exit 130; }
trap cleanup EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

# Hard bound on the whole run.
(
  trap 'kill "$sp" 2>/dev/null; exit 0' TERM
  sleep "$TOTAL_TIMEOUT" & sp=$!
  wait "$sp"
  echo "[bench] ERROR: total time limit ${TOTAL_TIMEOUT}s reached" >&2
  kill -TERM $$ 2>/dev/null
) &
WATCHDOG_PID=$!

# Run a command in the background and wait for it, so a signal trap fires at once
# (background children of a script ignore SIGINT; cleanup() TERMs CHILD_PID).
# run_bounded OUTFILE CMD...   (stdout+stderr of CMD go to OUTFILE)
run_bounded() {
  local outfile="$1"; shift
  "$@" >"$outfile" 2>&1 &
  CHILD_PID=$!
  wait "$CHILD_PID"
  local rc=$?
  CHILD_PID=""
  return $rc
}

# ---------------------------------------------------------------- helpers
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
USED_PORTS=" "
free_port() {
  local p i
  for ((i = 0; i < 500; i++)); do
    p=$((20000 + RANDOM % 30000))
    [[ "$USED_PORTS" == *" $p "* ]] && continue
    port_in_use "$p" && continue
    USED_PORTS+="$p "
    echo "$p"; return 0
  done
  return 1
}

http_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$1" 2>/dev/null || true; }

# parse_wrk FILE -> "rps p50_ms p99_ms non2xx socket_errors"
parse_wrk() {
  awk '
    function ms(v,   n, u) { n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
      if (u == "us") return n / 1000; if (u == "ms") return n; if (u == "s") return n * 1000
      if (u == "m") return n * 60000; if (u == "h") return n * 3600000; return n }
    /^[ \t]*50%/          { p50 = ms($2) }
    /^[ \t]*99%/          { p99 = ms($2) }
    /^Requests\/sec:/     { rps = $2 }
    /Non-2xx or 3xx/      { non2xx = $NF + 0 }
    /Socket errors:/      { sock = ($4 + 0) + ($6 + 0) + ($8 + 0) + ($10 + 0) }
    END { if (rps == "") rps = 0; if (p50 == "") p50 = -1; if (p99 == "") p99 = -1
          printf "%s %.3f %.3f %d %d\n", rps, p50, p99, non2xx, sock }' "$1"
}

# ---------------------------------------------------------------- backend workspace
mkdir -p "$WS/bench"
cp "$SCRIPT_DIR/backend/workspace.json" "$SCRIPT_DIR/backend/start.sh" "$WS/bench/"

GW_PORT="$(free_port)" || die "no free port for the gateway"
# Workspace ports: a small random range of our own (unless CK_RUNTIME_PORTS is set),
# so a daemon running beside this one (e.g. integration tests) cannot collide with it.
if [[ -z "${CK_RUNTIME_PORTS:-}" ]]; then
  base="$(free_port)" || die "no free port for the workspace port range"
  export CK_RUNTIME_PORTS="$base-$((base + 9))"
fi
read -r load1 _ </proc/loadavg
if awk -v l="$load1" 'BEGIN { exit !(l > 0.5) }'; then
  log "warning: load average is $load1 before starting; something else is using the CPU and numbers will be noisy"
fi
log "starting cloudyknight on 127.0.0.1:$GW_PORT (workspaces $WS, data $DATA)"
# shellcheck disable=SC2086
(cd "$TMP" && exec "$CK_BINARY" serve --listen "127.0.0.1:$GW_PORT" --workspaces "$WS" --data "$DATA" \
   --runtime process $CK_EXTRA_ARGS) >"$TMP/daemon.log" 2>&1 &
DAEMON_PID=$!

GW="http://127.0.0.1:$GW_PORT"
deadline=$((SECONDS + READY_DEADLINE))
until [[ "$(http_code "$GW/monitor/healthz")" == 200 ]]; do
  kill -0 "$DAEMON_PID" 2>/dev/null || { daemon_tail; die "cloudyknight exited during startup"; }
  ((SECONDS < deadline)) || { daemon_tail; die "cloudyknight /monitor/healthz not 200 within ${READY_DEADLINE}s"; }
  sleep 0.2
done
log "gateway healthy; waiting for workspace 'bench' to be running"

W=""; status=""; last_err=""
until [[ "$status" == running ]]; do
  kill -0 "$DAEMON_PID" 2>/dev/null || { daemon_tail; die "cloudyknight exited while starting the workspace"; }
  if ((SECONDS >= deadline)); then
    echo "last workspace JSON: $W" >&2; daemon_tail
    die "workspace 'bench' not running within ${READY_DEADLINE}s (status: ${status:-none})"
  fi
  sleep 0.5
  W="$(curl -s -m 5 "$GW/monitor/api/v1/workspaces/bench" 2>/dev/null || true)"
  status="$(jq -r '.status // empty' <<<"$W" 2>/dev/null || true)"
  if [[ "$status" == failed ]]; then
    err="$(jq -r '.error // empty' <<<"$W" 2>/dev/null)"
    [[ "$err" != "$last_err" ]] && log "workspace status failed: $err (waiting for a restart)"
    last_err="$err"
  fi
done
BACKEND_PORT="$(jq -r '.port // empty' <<<"$W")"
BACKEND_PID="$(jq -r '.pid // empty' <<<"$W")"
[[ "$BACKEND_PORT" =~ ^[0-9]+$ ]] || { echo "$W" >&2; die "workspace JSON has no integer \"port\""; }
USED_PORTS+="$BACKEND_PORT "
log "workspace bench running: type $(jq -r '.type' <<<"$W") ($(jq -r '.matched' <<<"$W")), port $BACKEND_PORT, pid ${BACKEND_PID:-?}"

# ---------------------------------------------------------------- nginx reverse proxy
PROXY_PORT="$(free_port)" || die "no free port for the nginx proxy"
NGX_V="$("$NGINX" -V 2>&1)"
TEMP_PATHS="client_body_temp_path $PROXY_DIR/tmp/body;"
for m in proxy fastcgi uwsgi scgi; do
  [[ "$NGX_V" == *"--without-http_${m}_module"* ]] || TEMP_PATHS+=" ${m}_temp_path $PROXY_DIR/tmp/$m;"
done
cat >"$PROXY_DIR/proxy.conf" <<CONF
worker_processes 2;
pid $PROXY_DIR/proxy.pid;
error_log $PROXY_DIR/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  $TEMP_PATHS
  keepalive_requests 100000;
  upstream up {
    server 127.0.0.1:$BACKEND_PORT;
    keepalive 64;
    keepalive_requests 100000;
  }
  server {
    listen 127.0.0.1:$PROXY_PORT;
    location /bench/ {
      proxy_pass http://up/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-Prefix /bench;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto http;
      proxy_set_header X-Forwarded-Host \$http_host;
    }
  }
}
CONF
"$NGINX" -p "$PROXY_DIR" -e "$PROXY_DIR/error.log" -c "$PROXY_DIR/proxy.conf" -t >"$PROXY_DIR/test.log" 2>&1 \
  || { cat "$PROXY_DIR/test.log" >&2; die "nginx proxy config test failed"; }
"$NGINX" -p "$PROXY_DIR" -e "$PROXY_DIR/error.log" -c "$PROXY_DIR/proxy.conf" -g 'daemon off;' \
  >"$PROXY_DIR/stdout.log" 2>&1 &
PROXY_PID=$!

# ---------------------------------------------------------------- sanity checks
NAMES=(direct nginx gateway)
declare -A URL=(
  [direct]="http://127.0.0.1:$BACKEND_PORT/"
  [nginx]="http://127.0.0.1:$PROXY_PORT/bench/"
  [gateway]="$GW/bench/"
)
ref_body=""
for n in "${NAMES[@]}"; do
  code=""; deadline=$((SECONDS + 10))
  while :; do
    code="$(http_code "${URL[$n]}")"
    [[ "$code" == 200 ]] && break
    ((SECONDS < deadline)) || break
    sleep 0.2
  done
  if [[ "$code" != 200 ]]; then
    curl -s -i -m 5 "${URL[$n]}" >&2 || true
    [[ $n == nginx ]] && cat "$PROXY_DIR/error.log" >&2
    [[ $n == gateway ]] && daemon_tail
    die "$n (${URL[$n]}) returned HTTP ${code:-no response}, expected 200"
  fi
  curl -s -m 5 -o "$RES/$n.body" "${URL[$n]}" || die "$n: curl failed"
  BODY_BYTES="$(wc -c <"$RES/$n.body")"
  if [[ -z "$ref_body" ]]; then ref_body="$RES/$n.body"
  elif ! cmp -s "$ref_body" "$RES/$n.body"; then die "$n body differs from the backend's: '$(cat "$RES/$n.body")'"; fi
  log "ok: $n ${URL[$n]} -> 200, $BODY_BYTES-byte body"
done

# ---------------------------------------------------------------- measurement
WRK_ARGS=(-t"$THREADS" -c"$CONNS" --latency)
WRK_LIMIT=$((DURATION + WARMUP + 30))
FAILED=0
declare -A ROUND_RPS ROUND_P50 ROUND_P99 RUNS ERRS
for n in "${NAMES[@]}"; do RUNS[$n]=""; ERRS[$n]=0; done

log "wrk ${WRK_ARGS[*]} -d${DURATION}s (warm-up ${WARMUP}s before each run); order: direct nginx gateway, $ROUNDS rounds"
for ((round = 1; round <= ROUNDS; round++)); do
  for n in "${NAMES[@]}"; do
    out="$RES/$n.$round.txt"
    run_bounded "$RES/$n.$round.warmup.txt" timeout -k 5 "$WRK_LIMIT" wrk "${WRK_ARGS[@]}" -d"${WARMUP}s" "${URL[$n]}"
    run_bounded "$out" timeout -k 5 "$WRK_LIMIT" wrk "${WRK_ARGS[@]}" -d"${DURATION}s" "${URL[$n]}"
    rc=$?
    read -r rps p50 p99 non2xx sock < <(parse_wrk "$out")
    log "$(printf 'round %d %-8s %10.0f req/s  p50 %.3f ms  p99 %.3f ms' "$round" "$n" "$rps" "$p50" "$p99")"
    w_non2xx=0; w_sock=0
    read -r _ _ _ w_non2xx w_sock < <(parse_wrk "$RES/$n.$round.warmup.txt")
    if ((rc != 0 || non2xx > 0 || sock > 0 || w_non2xx > 0 || w_sock > 0)) || [[ "$rps" == 0 ]]; then
      FAILED=1; ERRS[$n]=1
      echo "!!!! $n round $round: wrk exit $rc, non-2xx/3xx $non2xx, socket errors $sock (warm-up: non-2xx $w_non2xx, socket errors $w_sock)" >&2
      echo "---- wrk output ($n, round $round):" >&2; cat "$out" >&2
      ((w_non2xx > 0 || w_sock > 0)) && { echo "---- warm-up output:" >&2; cat "$RES/$n.$round.warmup.txt" >&2; }
      [[ $n == gateway ]] && daemon_tail 30
      [[ $n == nginx ]] && tail -n 20 "$PROXY_DIR/error.log" >&2
    fi
    if [[ $n == gateway ]] && ! kill -0 "$DAEMON_PID" 2>/dev/null; then
      FAILED=1; ERRS[$n]=1
      wait "$DAEMON_PID"; echo "!!!! cloudyknight died during the gateway run (exit status $?)" >&2
      DAEMON_PID=""; daemon_tail 60
    fi
    RUNS[$n]+="$(printf "%.0f" "$rps") "
    ROUND_RPS[$n,$round]=$rps; ROUND_P50[$n,$round]=$p50; ROUND_P99[$n,$round]=$p99
  done
done

# ---------------------------------------------------------------- report
# This VM's speed drifts from round to round, so one lucky round must not decide the result:
# each target reports its median round, and the ratios are the medians of the per-round
# ratios (the targets of a round run back to back, under the same conditions).
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
declare -A MED_RPS MED_P50 MED_P99
for n in "${NAMES[@]}"; do
  r=""; a=""; b=""
  for ((round = 1; round <= ROUNDS; round++)); do
    r+="${ROUND_RPS[$n,$round]} "; a+="${ROUND_P50[$n,$round]} "; b+="${ROUND_P99[$n,$round]} "
  done
  MED_RPS[$n]=$(echo "$r" | median); MED_P50[$n]=$(echo "$a" | median); MED_P99[$n]=$(echo "$b" | median)
done
paired_ratio() {
  local list="" i
  for ((i = 1; i <= ROUNDS; i++)); do
    list+="$(awk -v a="${ROUND_RPS[$1,$i]}" -v b="${ROUND_RPS[$2,$i]}" 'BEGIN { if (b > 0) printf "%.4f", a / b; else print 0 }') "
  done
  echo "$list" | median | awk '{ printf "%.2f", $1 }'
}
echo
echo "CloudyKnight gateway benchmark  ($(nproc) cores, load avg at start $load1, wrk -t$THREADS -c$CONNS -d${DURATION}s --latency, median of $ROUNDS interleaved rounds, ${BODY_BYTES}-byte 200 body)"
printf '%-8s %12s %10s %10s   %s\n' target "req/s" "p50 ms" "p99 ms" "rounds (req/s)"
for n in "${NAMES[@]}"; do
  flag=""; ((ERRS[$n])) && flag="  (ERRORS, see above)"
  printf '%-8s %12.0f %10.3f %10.3f   %s%s\n' "$n" "${MED_RPS[$n]}" "${MED_P50[$n]}" "${MED_P99[$n]}" "${RUNS[$n]% }" "$flag"
done
echo
echo "gateway/direct throughput ratio: $(paired_ratio gateway direct)"
echo "gateway/nginx throughput ratio: $(paired_ratio gateway nginx)"
exit "$FAILED"
