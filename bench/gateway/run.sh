#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup/on_signal/wait_gone are reached through traps
# Gateway benchmark: the CloudyKnight gateway against nginx, in the same run, on 127.0.0.1 only.
#
# Scenarios (BENCH_SCENARIOS, default all, always run in this order):
#   proxy64   ~100-byte proxied response, 64 connections:  direct, nginx proxy, gateway
#   proxy256  the same at 256 connections
#   large     64 KiB proxied response (backend /64k), 64 connections: direct, nginx, gateway
#   static    a static workspace served by the gateway itself vs nginx serving the same
#             folder as files (sendfile on), 64 connections, a 4 KiB and a 64 KiB file
#   tls       the gateway with gateway.tls {cert, key} vs nginx terminating TLS with the same
#             self-signed EC P-256 certificate, proxying the ~100-byte response, 64 connections
# The backend is an nginx instance returning a fixed ~100-byte 200 (and a 64 KiB file at /64k),
# started BY CloudyKnight as the process workspace "bench" (see backend/). nginx runs as many
# workers as the gateway has threads (gateway.threads, set explicitly), so the two are compared
# with the same number of CPUs' worth of workers.
#
# Env options:
#   BENCH_SCENARIOS    scenarios to run       (default "proxy64 proxy256 large static tls")
#   BENCH_DURATION     seconds per measured wrk run           (default 4)
#   BENCH_ROUNDS       interleaved rounds per scenario        (default 9)
#   BENCH_THREADS      wrk threads                            (default 1)
#   BENCH_WARMUP       seconds of warm-up before each run     (default 1)
#   BENCH_TIMEOUT      hard limit for the whole run, seconds  (default 1500)
# Many short rounds rather than a few long ones: on a shared VM the same target's req/s jumps
# between runs (per-round gateway/nginx ratios from 0.81 to 1.36 in one 5-round run), so the
# median needs more pairs; each ratio's spread over the rounds is printed beside it.
#   BENCH_KEEP         1 = keep the temp dir (logs, configs, wrk outputs)
#   BENCH_TLS_CONFIG   file: gateway.tls.{cert,key} in a YAML file given with --config
#                      (default); env: CK_GATEWAY_TLS_CERT / CK_GATEWAY_TLS_KEY instead
#   CK_BINARY          cloudyknight binary (default /work/main/build/cloudyknight)
#   CK_EXTRA_ARGS      extra args appended to `cloudyknight serve` (e.g. "--log-level warn")
#   CK_GATEWAY_THREADS gateway threads and nginx workers (default: nproc)
# Exit code: 0 when every selected scenario was measured without errors (a goal of issue 14
# not met is a finding, printed in the summary, not an error), 1 otherwise.
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DURATION="${BENCH_DURATION:-4}"
ROUNDS="${BENCH_ROUNDS:-9}"
THREADS="${BENCH_THREADS:-1}"
WARMUP="${BENCH_WARMUP:-1}"
TOTAL_TIMEOUT="${BENCH_TIMEOUT:-1500}"
SCENARIOS="${BENCH_SCENARIOS:-proxy64 proxy256 large static tls}"
TLS_CONFIG="${BENCH_TLS_CONFIG:-file}"
CK_BINARY="${CK_BINARY:-/work/main/build/cloudyknight}"
CK_EXTRA_ARGS="${CK_EXTRA_ARGS:-}"
READY_DEADLINE=60
ALL_SCENARIOS=(proxy64 proxy256 large static tls)

log()  { printf '[bench] %s\n' "$*" >&2; }
die()  { printf '[bench] ERROR: %s\n' "$*" >&2; exit 1; }

for v in DURATION ROUNDS THREADS WARMUP TOTAL_TIMEOUT; do
  [[ "${!v}" =~ ^[0-9]+$ && "${!v}" -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ -n "${BENCH_CONNECTIONS:-}" ]] &&
  log "warning: BENCH_CONNECTIONS is no longer used: proxy64 and proxy256 fix 64 and 256 connections (BENCH_SCENARIOS picks them)"
declare -A WANT=()
for s in $SCENARIOS; do
  case "$s" in
    proxy64 | proxy256 | large | static | tls) WANT[$s]=1 ;;
    *) die "unknown scenario '$s' in BENCH_SCENARIOS (known: ${ALL_SCENARIOS[*]})" ;;
  esac
done
[[ "$TLS_CONFIG" == file || "$TLS_CONFIG" == env ]] || die "BENCH_TLS_CONFIG must be file or env (got '$TLS_CONFIG')"
((${#WANT[@]})) || die "BENCH_SCENARIOS is empty (known: ${ALL_SCENARIOS[*]})"
want() { [[ -n "${WANT[$1]:-}" ]]; }
NEED_BACKEND=0; NEED_PLAIN=0
{ want proxy64 || want proxy256 || want large; } && NEED_BACKEND=1
{ ((NEED_BACKEND)) || want static; } && NEED_PLAIN=1

# The gateway's thread count is set explicitly, so nginx can run exactly as many workers.
GW_THREADS="${CK_GATEWAY_THREADS:-0}"
[[ "$GW_THREADS" =~ ^[0-9]+$ ]] || die "CK_GATEWAY_THREADS must be a number (got '$GW_THREADS')"
((GW_THREADS > 0)) || GW_THREADS="$(nproc)"
export CK_GATEWAY_THREADS="$GW_THREADS"

# ---------------------------------------------------------------- dependencies
need_pkgs=()
command -v wrk   >/dev/null 2>&1 || need_pkgs+=(wrk)
command -v nginx >/dev/null 2>&1 || [[ -x /usr/sbin/nginx ]] || need_pkgs+=(nginx-light)
command -v curl  >/dev/null 2>&1 || need_pkgs+=(curl)
command -v jq    >/dev/null 2>&1 || need_pkgs+=(jq)
want tls && { command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl); }
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
NGX_V="$("$NGINX" -V 2>&1)"
[[ -x "$CK_BINARY" ]] || die "cloudyknight binary not found or not executable: $CK_BINARY (set CK_BINARY)"

# 256 client connections plus as many upstream ones must fit the open-file limit of every
# process here; raise the soft limit toward the hard one (both daemons inherit it).
nofile_hard="$(ulimit -Hn)"
nofile_want=65536
[[ "$nofile_hard" != unlimited ]] && ((nofile_hard < nofile_want)) && nofile_want="$nofile_hard"
nofile_soft="$(ulimit -Sn)"
[[ "$nofile_soft" != unlimited ]] && ((nofile_soft < nofile_want)) && { ulimit -Sn "$nofile_want" 2>/dev/null || true; }

# ---------------------------------------------------------------- state + cleanup
TMP="$(mktemp -d "${TMPDIR:-/tmp}/ck-gwbench.XXXXXX")"
PROXY_DIR="$TMP/nginx-proxy"
RES="$TMP/results"
mkdir -p "$PROXY_DIR/tmp" "$RES"

# Daemons by tag: "plain" (proxy64, proxy256, large, static) and "tls" (tls).
declare -A DPID=() DLOG=() DDATA=() BPID=() BPORT=()
PROXY_PID=""; CHILD_PID=""; WATCHDOG_PID=""
CLEANED=0

daemon_tail() { # tag [lines]
  local tag="$1" n="${2:-40}"
  echo "---- cloudyknight ($tag) stderr (last $n lines): ${DLOG[$tag]}" >&2
  tail -n "$n" "${DLOG[$tag]}" >&2 2>/dev/null || true
  if [[ -f "${DDATA[$tag]}/logs/bench.log" ]]; then
    echo "---- workspace log (last 20 lines): ${DDATA[$tag]}/logs/bench.log" >&2
    tail -n 20 "${DDATA[$tag]}/logs/bench.log" >&2 || true
  fi
  echo "----" >&2
}

wait_gone() { # pid seconds
  local i
  for ((i = 0; i < $2 * 10; i++)); do kill -0 "$1" 2>/dev/null || return 0; sleep 0.1; done
  return 1
}

stop_daemon() { # tag
  local tag="$1" pid="${DPID[$1]:-}" bp="${BPID[$1]:-}"
  if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    if ! wait_gone "$pid" 15; then
      log "cloudyknight ($tag) did not exit within 15s of SIGTERM; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null
    local rc=$?
    [[ $rc -ne 0 && $rc -ne 143 ]] && log "cloudyknight ($tag) exited with status $rc after SIGTERM (contract: 0)"
  fi
  DPID[$tag]=""
  # The daemon must have stopped the backend; if it did not, stop that process group ourselves.
  if [[ -n "$bp" ]] && kill -0 "$bp" 2>/dev/null; then
    log "backend workspace process $bp ($tag) still alive after the daemon exited; stopping it"
    kill -TERM -- "-$bp" 2>/dev/null || kill -TERM "$bp" 2>/dev/null
    wait_gone "$bp" 5 || kill -KILL -- "-$bp" 2>/dev/null || kill -KILL "$bp" 2>/dev/null
  fi
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
  local tag
  for tag in "${!DPID[@]}"; do stop_daemon "$tag"; done
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
  echo "[bench] ERROR: total time limit ${TOTAL_TIMEOUT}s (BENCH_TIMEOUT) reached" >&2
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
# free_port / port_range set PORT_OUT / RANGE_OUT (not echo: a $(...) subshell would lose
# USED_PORTS, and two targets could draw the same port).
USED_PORTS=" "
PORT_OUT=""; RANGE_OUT=""
free_port() {
  local p i
  for ((i = 0; i < 500; i++)); do
    p=$((20000 + RANDOM % 30000))
    [[ "$USED_PORTS" == *" $p "* ]] && continue
    port_in_use "$p" && continue
    USED_PORTS+="$p "
    PORT_OUT="$p"; return 0
  done
  return 1
}
# A random range of 10 free workspace ports, so a daemon running beside this one (e.g.
# integration tests, or the other daemon of this run) cannot collide with it.
port_range() {
  local base i j ok
  for ((i = 0; i < 50; i++)); do
    free_port || return 1
    base="$PORT_OUT"; ok=1
    for ((j = 1; j < 10; j++)); do
      [[ "$USED_PORTS" == *" $((base + j)) "* ]] && ok=0
      port_in_use $((base + j)) && ok=0
    done
    ((ok)) || continue
    for ((j = 1; j < 10; j++)); do USED_PORTS+="$((base + j)) "; done
    RANGE_OUT="$base-$((base + 9))"; return 0
  done
  return 1
}

CERT="$TMP/tls/cert.pem"; KEY="$TMP/tls/key.pem"
# curl for a daemon: the tls one is reached over https, trusting only the run's certificate.
dcurl() { local tag="$1"; shift; if [[ $tag == tls ]]; then curl --cacert "$CERT" "$@"; else curl "$@"; fi; }
http_code() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$@" 2>/dev/null || true; }

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

# start_daemon TAG WORKSPACES DATA PORT [extra serve args...]
start_daemon() {
  local tag="$1" ws="$2" data="$3" port="$4"; shift 4
  DDATA[$tag]="$data"; DLOG[$tag]="$TMP/daemon-$tag.log"
  local ports="${CK_RUNTIME_PORTS:-}"
  if [[ -z "$ports" || $tag != plain ]]; then port_range || die "no free port range for the $tag daemon"; ports="$RANGE_OUT"; fi
  log "starting cloudyknight ($tag) on 127.0.0.1:$port (workspaces $ws, data $data, workspace ports $ports)"
  # shellcheck disable=SC2086
  (cd "$TMP" && CK_RUNTIME_PORTS="$ports" exec "$CK_BINARY" serve --listen "127.0.0.1:$port" --workspaces "$ws" \
     --data "$data" --runtime process "$@" $CK_EXTRA_ARGS) >"${DLOG[$tag]}" 2>&1 &
  DPID[$tag]=$!
}

# A port found free can be taken by another process before the daemon binds it (other
# engineers' tests run beside this). restart_on_clash TAG: when the daemon exited because its
# listen address was in use, start it again on another port (start_TAG does that); at most
# 3 times.
declare -A CLASHES=()
restart_on_clash() {
  local tag="$1"
  grep -q "cannot listen on .*in use" "${DLOG[$tag]}" 2>/dev/null || return 1
  (("${CLASHES[$tag]:-0}" < 3)) || return 1
  CLASHES[$tag]=$((${CLASHES[$tag]:-0} + 1))
  wait "${DPID[$tag]}" 2>/dev/null
  log "cloudyknight ($tag): its port was taken by another process; starting it on another port"
  "start_$tag"
}

# wait_workspace TAG BASE_URL NAME: until the workspace's status is running; sets BPORT/BPID.
wait_workspace() {
  local tag="$1" base="$2" name="$3" W="" status="" last_err="" err deadline=$((SECONDS + READY_DEADLINE))
  until [[ "$status" == running ]]; do
    kill -0 "${DPID[$tag]}" 2>/dev/null || { daemon_tail "$tag"; die "cloudyknight ($tag) exited while starting workspace '$name'"; }
    if ((SECONDS >= deadline)); then
      echo "last workspace JSON: $W" >&2; daemon_tail "$tag"
      die "workspace '$name' ($tag daemon) not running within ${READY_DEADLINE}s (status: ${status:-none})"
    fi
    sleep 0.5
    W="$(dcurl "$tag" -s -m 5 "$base/monitor/api/v1/workspaces/$name" 2>/dev/null || true)"
    status="$(jq -r '.status // empty' <<<"$W" 2>/dev/null || true)"
    if [[ "$status" == failed ]]; then
      err="$(jq -r '.error // empty' <<<"$W" 2>/dev/null)"
      [[ "$err" != "$last_err" ]] && log "workspace '$name' status failed: $err (waiting for a restart)"
      last_err="$err"
    fi
  done
  BPORT[$tag]="$(jq -r '.port // empty' <<<"$W")"
  BPID[$tag]="$(jq -r '.pid // empty' <<<"$W")"
  [[ "${BPORT[$tag]}" =~ ^[0-9]+$ ]] || { echo "$W" >&2; die "workspace JSON has no integer \"port\""; }
  USED_PORTS+="${BPORT[$tag]} "
  log "workspace $name ($tag daemon) running: type $(jq -r '.type' <<<"$W") ($(jq -r '.matched' <<<"$W")), port ${BPORT[$tag]}, pid ${BPID[$tag]:-?}"
}

read -r load1 _ </proc/loadavg
if awk -v l="$load1" 'BEGIN { exit !(l > 0.5) }'; then
  log "warning: load average is $load1 before starting; something else is using the CPU and numbers will be noisy"
fi

# ---------------------------------------------------------------- plain daemon
GW_PORT=""; GW=""
if ((NEED_PLAIN)); then
  WS="$TMP/workspaces"      # kept apart from DATA so "data" is not scanned as a workspace
  mkdir -p "$WS"
  if ((NEED_BACKEND)); then
    mkdir -p "$WS/bench"
    cp "$SCRIPT_DIR/backend/workspace.json" "$SCRIPT_DIR/backend/start.sh" "$WS/bench/"
  fi
  if want static; then
    # A static workspace (index.html makes it one): served by the gateway itself, and by
    # nginx from this very folder.
    mkdir -p "$WS/site"
    printf '<!doctype html>\n<title>bench</title>\n<link rel="stylesheet" href="asset-4k.css">\n<script src="asset-64k.js"></script>\n' \
      >"$WS/site/index.html"
    { yes '.cloudyknight-bench { color: #123456; margin: 0 auto; } /* 4 KiB static asset */' || true; } \
      | head -c 4096 >"$WS/site/asset-4k.css"
    { yes 'window.cloudyknightBench = (window.cloudyknightBench || 0) + 1; // 64 KiB static asset' || true; } \
      | head -c 65536 >"$WS/site/asset-64k.js"
    # nginx workers run as an unprivileged user when the script runs as root: let them read it.
    if ! chmod a+rx "$TMP" "$WS" "$WS/site" || ! chmod a+r "$WS/site/"*; then die "cannot make $WS/site readable"; fi
  fi
  start_plain() {
    free_port || die "no free port for the gateway"; GW_PORT="$PORT_OUT"
    start_daemon plain "$WS" "$TMP/data" "$GW_PORT"
    GW="http://127.0.0.1:$GW_PORT"
  }
  start_plain
  deadline=$((SECONDS + READY_DEADLINE))
  until [[ "$(http_code "$GW/monitor/healthz")" == 200 ]]; do
    if ! kill -0 "${DPID[plain]}" 2>/dev/null; then
      restart_on_clash plain && continue
      daemon_tail plain; die "cloudyknight exited during startup"
    fi
    ((SECONDS < deadline)) || { daemon_tail plain; die "cloudyknight /monitor/healthz not 200 within ${READY_DEADLINE}s"; }
    sleep 0.2
  done
  log "gateway healthy"
  ((NEED_BACKEND)) && wait_workspace plain "$GW" bench
fi

# ---------------------------------------------------------------- tls daemon
# TLS_STATE: on (measured), skipped (reason in TLS_SKIP), error (reason printed above).
TLS_STATE=""; TLS_SKIP=""; TLS_GW_PORT=""
if want tls; then
  TLS_STATE=on
  if [[ "$NGX_V" != *"--with-http_ssl_module"* ]]; then
    TLS_STATE=skipped; TLS_SKIP="this nginx has no ssl module (Debian nginx-light has it)"
  fi
fi
if [[ "$TLS_STATE" == on ]]; then
  mkdir -p "$TMP/tls"
  # A throwaway self-signed certificate for 127.0.0.1: EC P-256 (prime256v1), ECDSA-SHA256.
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
    -keyout "$KEY" -out "$CERT" >"$TMP/tls/openssl.log" 2>&1 \
    || { cat "$TMP/tls/openssl.log" >&2; die "openssl could not make the self-signed certificate"; }
  cat >"$TMP/tls/config.yaml" <<YAML
gateway:
  tls:
    cert: $CERT
    key: $KEY
YAML
  mkdir -p "$TMP/workspaces-tls/bench"
  cp "$SCRIPT_DIR/backend/workspace.json" "$SCRIPT_DIR/backend/start.sh" "$TMP/workspaces-tls/bench/"
  start_tls() {
    free_port || die "no free port for the TLS gateway"; TLS_GW_PORT="$PORT_OUT"
    if [[ "$TLS_CONFIG" == env ]]; then
      CK_GATEWAY_TLS_CERT="$CERT" CK_GATEWAY_TLS_KEY="$KEY" start_daemon tls "$TMP/workspaces-tls" "$TMP/data-tls" "$TLS_GW_PORT"
    else
      start_daemon tls "$TMP/workspaces-tls" "$TMP/data-tls" "$TLS_GW_PORT" --config "$TMP/tls/config.yaml"
    fi
    TLS_GW="https://127.0.0.1:$TLS_GW_PORT"
  }
  start_tls
  # Does this binary terminate TLS? It does when /monitor/healthz answers over https with the
  # run's certificate. It does not when it refuses the gateway.tls keys at startup, or when
  # its port answers plain HTTP and no TLS handshake completes.
  deadline=$((SECONDS + READY_DEADLINE))
  while :; do
    if ! kill -0 "${DPID[tls]}" 2>/dev/null; then
      restart_on_clash tls && continue
      if grep -Eq "unknown configuration key 'gateway\.tls|'gateway\.tls' is not a configuration section" "${DLOG[tls]}"; then
        TLS_STATE=skipped; TLS_SKIP="this binary has no TLS termination"
        log "tls: the binary refused the gateway.tls keys: $(grep -m1 -E "gateway\.tls" "${DLOG[tls]}")"
      else
        TLS_STATE=error; daemon_tail tls
        echo "!!!! tls: cloudyknight exited at startup with gateway.tls set (config: $TMP/tls/config.yaml)" >&2
      fi
      break
    fi
    code="$(http_code --cacert "$CERT" "$TLS_GW/monitor/healthz")"
    [[ "$code" == 200 ]] && break
    if [[ "$(http_code "http://127.0.0.1:$TLS_GW_PORT/monitor/healthz")" == 200 ]]; then
      TLS_STATE=skipped; TLS_SKIP="this binary has no TLS termination"
      log "tls: 127.0.0.1:$TLS_GW_PORT answers plain HTTP and completes no TLS handshake"
      break
    fi
    if ((SECONDS >= deadline)); then
      TLS_STATE=error; daemon_tail tls
      curl -sv --cacert "$CERT" -m 5 -o /dev/null "$TLS_GW/monitor/healthz" 2>&1 | tail -n 15 >&2
      echo "!!!! tls: https://127.0.0.1:$TLS_GW_PORT/monitor/healthz not 200 within ${READY_DEADLINE}s" >&2
      break
    fi
    sleep 0.2
  done
  if [[ "$TLS_STATE" == on ]]; then
    log "TLS gateway healthy (https, the run's certificate verified)"
    wait_workspace tls "$TLS_GW" bench
  else
    stop_daemon tls   # nothing to measure on it; it must not take CPU from the others
  fi
fi
[[ "$TLS_STATE" == skipped ]] && log "tls: skipped ($TLS_SKIP)"

# ---------------------------------------------------------------- nginx (proxy + static + tls)
NGX_TARGETS=0
((NEED_PLAIN)) && NGX_TARGETS=1
[[ "$TLS_STATE" == on ]] && NGX_TARGETS=1
PROXY_PORT=""; TLS_PROXY_PORT=""
if ((NGX_TARGETS)); then
  TEMP_PATHS="client_body_temp_path $PROXY_DIR/tmp/body;"
  for m in proxy fastcgi uwsgi scgi; do
    [[ "$NGX_V" == *"--without-http_${m}_module"* ]] || TEMP_PATHS+=" ${m}_temp_path $PROXY_DIR/tmp/$m;"
  done
  MIME=""; [[ -f /etc/nginx/mime.types ]] && MIME="include /etc/nginx/mime.types;"
  # The proxy settings every proxying location shares: the same headers the gateway sets
  # (gateway/forward.cc: X-Forwarded-For, X-Real-IP, X-Forwarded-Proto, X-Forwarded-Host,
  # X-Forwarded-Prefix, Forwarded), so both proxies send the backend the same request.
  # check_same_forwarding() below compares them. 32 4k buffers hold a 64 KiB response in
  # memory (nginx's default 8 would spill it to a temp file when the client is slower than
  # the backend).
  proxy_common() { # scheme
    cat <<CONF
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$http_host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Real-IP \$remote_addr;
      proxy_set_header X-Forwarded-Proto $1;
      proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header X-Forwarded-Prefix /bench;
      proxy_set_header Forwarded "for=\$remote_addr;proto=$1;host=\\"\$http_host\\"";
      proxy_buffers 32 4k;
CONF
  }
  # start_nginx: picks its ports, writes the config, starts nginx in the foreground.
  start_nginx() {
    local locs="" upstreams="" plain_server="" tls_server=""
    if ((NEED_PLAIN)); then
      free_port || die "no free port for the nginx proxy"; PROXY_PORT="$PORT_OUT"
      if ((NEED_BACKEND)); then
        upstreams+="
  upstream up {
    server 127.0.0.1:${BPORT[plain]};
    keepalive 64;
    keepalive_requests 100000;
  }"
        locs+="
    location /bench/ {
      proxy_pass http://up/;
$(proxy_common http)
    }"
      fi
      if want static; then
        locs+="
    location /site/ {
      alias $WS/site/;
    }"
      fi
      plain_server="
  server {
    listen 127.0.0.1:$PROXY_PORT;$locs
  }"
    fi
    if [[ "$TLS_STATE" == on ]]; then
      free_port || die "no free port for the nginx TLS proxy"; TLS_PROXY_PORT="$PORT_OUT"
      upstreams+="
  upstream up_tls {
    server 127.0.0.1:${BPORT[tls]};
    keepalive 64;
    keepalive_requests 100000;
  }"
      tls_server="
  server {
    listen 127.0.0.1:$TLS_PROXY_PORT ssl;
    ssl_certificate $CERT;
    ssl_certificate_key $KEY;
    ssl_protocols TLSv1.2 TLSv1.3;
    location /bench/ {
      proxy_pass http://up_tls/;
$(proxy_common https)
    }
  }"
    fi
    cat >"$PROXY_DIR/proxy.conf" <<CONF
worker_processes $GW_THREADS;
pid $PROXY_DIR/proxy.pid;
error_log $PROXY_DIR/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  $MIME
  $TEMP_PATHS
  sendfile on;
  keepalive_requests 100000;
  keepalive_timeout 75s;$upstreams$plain_server$tls_server
}
CONF
    "$NGINX" -p "$PROXY_DIR" -e "$PROXY_DIR/error.log" -c "$PROXY_DIR/proxy.conf" -t >"$PROXY_DIR/test.log" 2>&1 \
      || { cat "$PROXY_DIR/test.log" >&2; die "nginx config test failed ($PROXY_DIR/proxy.conf)"; }
    : >"$PROXY_DIR/error.log"; rm -f "$PROXY_DIR/proxy.pid"
    "$NGINX" -p "$PROXY_DIR" -e "$PROXY_DIR/error.log" -c "$PROXY_DIR/proxy.conf" -g 'daemon off;' \
      >"$PROXY_DIR/stdout.log" 2>&1 &
    PROXY_PID=$!
  }
  # nginx writes its pid file once its sockets are bound. A port taken by another process
  # between our check and nginx's bind makes it exit: try other ports (at most 4 times).
  for ((attempt = 1; ; attempt++)); do
    start_nginx
    deadline=$((SECONDS + 10))
    until [[ -s "$PROXY_DIR/proxy.pid" ]] || ! kill -0 "$PROXY_PID" 2>/dev/null || ((SECONDS >= deadline)); do
      sleep 0.1
    done
    kill -0 "$PROXY_PID" 2>/dev/null && break
    wait "$PROXY_PID"
    if ((attempt < 4)) && grep -q "in use" "$PROXY_DIR/error.log" "$PROXY_DIR/stdout.log"; then
      log "nginx: a port was taken by another process; trying other ports"
      continue
    fi
    tail -n 20 "$PROXY_DIR/error.log" "$PROXY_DIR/stdout.log" >&2
    die "nginx exited at startup ($PROXY_DIR/proxy.conf)"
  done
fi

# ---------------------------------------------------------------- cases
# A case is one table: targets measured in interleaved rounds at one connection count.
CASES=()
declare -A C_CONNS=() C_TARGETS=() C_TITLE=() C_GOAL=() C_DAEMON=() URL=() C_ERR=() C_NOTE=()
add_case() { # id conns daemon "targets" goal title
  CASES+=("$1"); C_CONNS[$1]="$2"; C_DAEMON[$1]="$3"; C_TARGETS[$1]="$4"; C_GOAL[$1]="$5"; C_TITLE[$1]="$6"
  C_ERR[$1]=0; C_NOTE[$1]=""
}
if want proxy64; then
  add_case proxy64 64 plain "direct nginx gateway" proxy "proxied ~100-byte response, 64 connections"
  URL[proxy64,direct]="http://127.0.0.1:${BPORT[plain]}/"; URL[proxy64,nginx]="http://127.0.0.1:$PROXY_PORT/bench/"
  URL[proxy64,gateway]="$GW/bench/"
fi
if want proxy256; then
  add_case proxy256 256 plain "direct nginx gateway" proxy "proxied ~100-byte response, 256 connections"
  URL[proxy256,direct]="http://127.0.0.1:${BPORT[plain]}/"; URL[proxy256,nginx]="http://127.0.0.1:$PROXY_PORT/bench/"
  URL[proxy256,gateway]="$GW/bench/"
fi
if want large; then
  add_case large 64 plain "direct nginx gateway" none "proxied 64 KiB response, 64 connections"
  URL[large,direct]="http://127.0.0.1:${BPORT[plain]}/64k"; URL[large,nginx]="http://127.0.0.1:$PROXY_PORT/bench/64k"
  URL[large,gateway]="$GW/bench/64k"
fi
if want static; then
  add_case static-4k 64 plain "nginx gateway" even "static 4 KiB file (gateway static workspace vs nginx sendfile), 64 connections"
  URL[static-4k,nginx]="http://127.0.0.1:$PROXY_PORT/site/asset-4k.css"; URL[static-4k,gateway]="$GW/site/asset-4k.css"
  add_case static-64k 64 plain "nginx gateway" even "static 64 KiB file (gateway static workspace vs nginx sendfile), 64 connections"
  URL[static-64k,nginx]="http://127.0.0.1:$PROXY_PORT/site/asset-64k.js"; URL[static-64k,gateway]="$GW/site/asset-64k.js"
fi
if [[ "$TLS_STATE" == on ]]; then
  add_case tls 64 tls "nginx gateway" even "TLS (EC P-256 self-signed, same cert and key), proxied ~100-byte response, 64 connections, keep-alive"
  URL[tls,nginx]="https://127.0.0.1:$TLS_PROXY_PORT/bench/"; URL[tls,gateway]="$TLS_GW/bench/"
fi

# ---------------------------------------------------------------- sanity checks
# Every target of a case answers 200 with the same body (for static files: the file's bytes).
declare -A TLS_SEEN=()
declare -A EXPECT_FILE=([static-4k]="${WS:-}/site/asset-4k.css" [static-64k]="${WS:-}/site/asset-64k.js")
target_curl() { # case target curl-args...
  local c="$1" t="$2"; shift 2
  if [[ $c == tls ]]; then curl --cacert "$CERT" "$@"; else curl "$@"; fi
}
for c in "${CASES[@]}"; do
  ref=""; [[ -n "${EXPECT_FILE[$c]:-}" ]] && ref="${EXPECT_FILE[$c]}"
  for t in ${C_TARGETS[$c]}; do
    u="${URL[$c,$t]}"; code=""; deadline=$((SECONDS + 10))
    while :; do
      code="$(target_curl "$c" "$t" -s -o /dev/null -m 5 -w '%{http_code}' "$u" 2>/dev/null || true)"
      [[ "$code" == 200 ]] && break
      ((SECONDS < deadline)) || break
      sleep 0.2
    done
    if [[ "$code" != 200 ]]; then
      target_curl "$c" "$t" -sv -m 5 -o /dev/null "$u" 2>&1 | tail -n 25 >&2 || true
      [[ $t == nginx ]] && tail -n 20 "$PROXY_DIR/error.log" >&2
      [[ $t == gateway ]] && daemon_tail "${C_DAEMON[$c]}"
      die "$c: $t ($u) returned HTTP ${code:-no response}, expected 200"
    fi
    hdr="$(target_curl "$c" "$t" -s -m 5 -o "$RES/$c.$t.body" -D "$RES/$c.$t.headers" -w '%{size_header}' "$u")" || die "$c: $t: curl failed"
    bytes="$(wc -c <"$RES/$c.$t.body")"
    if [[ -z "$ref" ]]; then ref="$RES/$c.$t.body"
    elif ! cmp -s "$ref" "$RES/$c.$t.body"; then die "$c: $t's body ($bytes bytes) differs from $ref"; fi
    C_NOTE[$c]+="$t $bytes+${hdr}B "
    tlsinfo=""
    if [[ $c == tls ]]; then
      tlsinfo="$(curl -sv --cacert "$CERT" -m 5 -o /dev/null "$u" 2>&1 | sed -n 's/^\* SSL connection using //p' | head -n1)"
      C_NOTE[$c]+="[$tlsinfo] "
      TLS_SEEN[$t]="$tlsinfo"
    fi
    log "ok: $c $t $u -> 200, $bytes-byte body, ${hdr}-byte header${tlsinfo:+, $tlsinfo}"
  done
done

# Both proxies must send the backend the same forwarding headers (the backend's /forwarded
# echoes them; each proxy's own port is written as PORT), or the comparison is not fair.
check_same_forwarding() { # case gateway-url nginx-url
  local c="$1" g n
  g="$(target_curl "$c" gateway -s -m 5 "$2forwarded" 2>/dev/null)" || die "$c: gateway: GET $2forwarded failed"
  n="$(target_curl "$c" nginx -s -m 5 "$3forwarded" 2>/dev/null)" || die "$c: nginx: GET $3forwarded failed"
  local gp="${2#*//*:}" np="${3#*//*:}"
  g="${g//:${gp%%/*}/:PORT}"; n="${n//:${np%%/*}/:PORT}"
  [[ "$g" == "$n" ]] || die "$c: the gateway and nginx forward different headers to the backend:
  gateway: $g
  nginx:   $n
(fix proxy_common() in this script)"
  log "ok: $c: the gateway and nginx forward the same headers: $g"
}
want proxy64 && check_same_forwarding proxy64 "$GW/bench/" "http://127.0.0.1:$PROXY_PORT/bench/"
[[ "$TLS_STATE" == on ]] && check_same_forwarding tls "$TLS_GW/bench/" "https://127.0.0.1:$TLS_PROXY_PORT/bench/"

# ---------------------------------------------------------------- measurement
WRK_LIMIT=$((DURATION + WARMUP + 30))
FAILED=0
[[ "$TLS_STATE" == error ]] && FAILED=1
declare -A ROUND_RPS=() ROUND_P50=() ROUND_P99=() ROUND_CPU=() RUNS=() MED_RPS=() MED_P50=() MED_P99=() MED_CPU=() RATIO=() SPREAD=()
runs=0; for c in "${CASES[@]}"; do read -ra ts <<<"${C_TARGETS[$c]}"; runs=$((runs + ${#ts[@]})); done
estimate=$((runs * ROUNDS * (DURATION + WARMUP)))
log "${#CASES[@]} cases, $runs targets, $ROUNDS rounds: about ${estimate}s of wrk (BENCH_TIMEOUT ${TOTAL_TIMEOUT}s)"
((estimate + 60 > TOTAL_TIMEOUT)) && log "warning: the run may not finish within BENCH_TIMEOUT=${TOTAL_TIMEOUT}s"

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.4f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# The per-round ratios of two targets' req/s, and their median (4 decimals).
round_ratios() { # case a b
  local list="" i
  for ((i = 1; i <= ROUNDS; i++)); do
    list+="$(awk -v a="${ROUND_RPS[$1,$2,$i]}" -v b="${ROUND_RPS[$1,$3,$i]}" 'BEGIN { if (b > 0) printf "%.4f", a / b; else print 0 }') "
  done
  echo "$list"
}
paired_ratio() { round_ratios "$@" | median | awk '{ printf "%.4f", $1 }'; }
# The spread of the per-round ratios: "lowest-highest".
ratio_spread() { round_ratios "$@" | tr ' ' '\n' | grep -v '^$' | sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%.2f-%.2f", lo, hi }'; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 >= b + 0) }'; }
le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a + 0 <= b + 0) }'; }
# CPU time of a proxy, the cost per request whatever share of the cores it got: user + system
# clock ticks of the processes (every thread), from /proc/PID/stat (fields 14 and 15).
CLK_TCK="$(getconf CLK_TCK)"
proc_cpu_ticks() { # pid...
  local p v sum=0
  for p in "$@"; do
    v="$(awk '{ sub(/^.*\) /, ""); split($0, f, " "); print f[12] + f[13] }' "/proc/$p/stat" 2>/dev/null)"
    sum=$((sum + ${v:-0}))
  done
  echo "$sum"
}
# The processes whose CPU a target's requests cost: nginx's master and workers, the daemon (its
# workspace processes, the backend among them, are other processes); none for direct.
cpu_pids() { # case target
  case "$2" in
    nginx) echo "$PROXY_PID $(pgrep -P "$PROXY_PID" | tr '\n' ' ')" ;;
    gateway) echo "${DPID[${C_DAEMON[$1]}]:-}" ;;
  esac
}

measure_case() {
  local c="$1" conns="${C_CONNS[$1]}" round t out rc rps p50 p99 non2xx sock w_non2xx w_sock pids ticks0 cpu
  local -a wrk_args=(-t"$THREADS" -c"$conns" --latency)
  log "== $c: ${C_TITLE[$c]}: wrk ${wrk_args[*]} -d${DURATION}s (warm-up ${WARMUP}s before each run); order: ${C_TARGETS[$c]} (reversed in even rounds), $ROUNDS rounds"
  for t in ${C_TARGETS[$c]}; do RUNS[$c,$t]=""; done
  local -a order=() rev=()
  read -ra order <<<"${C_TARGETS[$c]}"
  for ((round = ${#order[@]} - 1; round >= 0; round--)); do rev+=("${order[$round]}"); done
  for ((round = 1; round <= ROUNDS; round++)); do
    # Odd rounds run the targets in order, even rounds in reverse, so no target always runs
    # first (or always right after another one).
    local -a this=("${order[@]}")
    ((round % 2 == 0)) && this=("${rev[@]}")
    for t in "${this[@]}"; do
      out="$RES/$c.$t.$round.txt"
      run_bounded "$RES/$c.$t.$round.warmup.txt" timeout -k 5 "$WRK_LIMIT" wrk "${wrk_args[@]}" -d"${WARMUP}s" "${URL[$c,$t]}"
      pids="$(cpu_pids "$c" "$t")"
      ticks0=0; [[ -n "$pids" ]] && ticks0="$(proc_cpu_ticks $pids)"
      run_bounded "$out" timeout -k 5 "$WRK_LIMIT" wrk "${wrk_args[@]}" -d"${DURATION}s" "${URL[$c,$t]}"
      rc=$?
      cpu="-"
      read -r rps p50 p99 non2xx sock < <(parse_wrk "$out")
      if [[ -n "$pids" ]]; then
        cpu="$(awk -v d="$(( $(proc_cpu_ticks $pids) - ticks0 ))" -v hz="$CLK_TCK" -v rps="$rps" -v s="$DURATION" \
          'BEGIN { if (rps > 0) printf "%.2f", d / hz * 1e6 / (rps * s); else print 0 }')"
      fi
      log "$(printf '%s round %d %-8s %10.0f req/s  p50 %.3f ms  p99 %.3f ms  cpu %s us/req' "$c" "$round" "$t" "$rps" "$p50" "$p99" "$cpu")"
      w_non2xx=0; w_sock=0
      read -r _ _ _ w_non2xx w_sock < <(parse_wrk "$RES/$c.$t.$round.warmup.txt")
      if ((rc != 0 || non2xx > 0 || sock > 0 || w_non2xx > 0 || w_sock > 0)) || ! awk -v r="$rps" 'BEGIN { exit !(r + 0 > 0) }'; then
        FAILED=1; C_ERR[$c]=1
        echo "!!!! $c $t round $round: wrk exit $rc, non-2xx/3xx $non2xx, socket errors $sock (warm-up: non-2xx $w_non2xx, socket errors $w_sock)" >&2
        echo "---- wrk output ($c $t, round $round):" >&2; cat "$out" >&2
        ((w_non2xx > 0 || w_sock > 0)) && { echo "---- warm-up output:" >&2; cat "$RES/$c.$t.$round.warmup.txt" >&2; }
        [[ $t == gateway ]] && daemon_tail "${C_DAEMON[$c]}" 30
        [[ $t == nginx ]] && tail -n 20 "$PROXY_DIR/error.log" >&2
      fi
      local tag="${C_DAEMON[$c]}"
      if [[ -n "${DPID[$tag]}" ]] && ! kill -0 "${DPID[$tag]}" 2>/dev/null; then
        FAILED=1; C_ERR[$c]=1
        wait "${DPID[$tag]}"; echo "!!!! cloudyknight ($tag) died during the $c $t run (exit status $?)" >&2
        DPID[$tag]=""; daemon_tail "$tag" 60
      fi
      [[ -z "${DPID[$tag]}" ]] && { C_ERR[$c]=1; FAILED=1; }
      RUNS[$c,$t]+="$(printf "%.0f" "$rps") "
      ROUND_RPS[$c,$t,$round]=$rps; ROUND_P50[$c,$t,$round]=$p50; ROUND_P99[$c,$t,$round]=$p99
      ROUND_CPU[$c,$t,$round]=$cpu
    done
  done
  local r a b u
  for t in ${C_TARGETS[$c]}; do
    r=""; a=""; b=""; u=""
    for ((round = 1; round <= ROUNDS; round++)); do
      r+="${ROUND_RPS[$c,$t,$round]} "; a+="${ROUND_P50[$c,$t,$round]} "; b+="${ROUND_P99[$c,$t,$round]} "
      [[ "${ROUND_CPU[$c,$t,$round]}" != - ]] && u+="${ROUND_CPU[$c,$t,$round]} "
    done
    MED_RPS[$c,$t]=$(echo "$r" | median); MED_P50[$c,$t]=$(echo "$a" | median); MED_P99[$c,$t]=$(echo "$b" | median)
    MED_CPU[$c,$t]="-"; [[ -n "$u" ]] && MED_CPU[$c,$t]=$(echo "$u" | median | awk '{ printf "%.2f", $1 }')
  done
  RATIO[$c]="$(paired_ratio "$c" gateway nginx)"
  SPREAD[$c]="$(ratio_spread "$c" gateway nginx)"
}

print_case() {
  local c="$1" t flag
  echo
  echo "== $c: ${C_TITLE[$c]}"
  echo "   wrk -t$THREADS -c${C_CONNS[$c]} -d${DURATION}s --latency; body+header bytes: ${C_NOTE[$c]% }"
  if [[ $c == tls ]]; then
    echo "   keep-alive: wrk opens its 64 connections once, so the TLS handshake cost is (almost) excluded; this measures record encryption"
    [[ "${TLS_SEEN[nginx]:-}" != "${TLS_SEEN[gateway]:-}" ]] &&
      echo "   warning: nginx and the gateway negotiated different TLS parameters (nginx: ${TLS_SEEN[nginx]:-?}, gateway: ${TLS_SEEN[gateway]:-?})"
  fi
  printf '%-8s %12s %10s %10s %11s   %s\n' target "req/s" "p50 ms" "p99 ms" "cpu us/req" "rounds (req/s)"
  for t in ${C_TARGETS[$c]}; do
    flag=""; ((C_ERR[$c])) && flag="  (ERRORS, see stderr)"
    printf '%-8s %12.0f %10.3f %10.3f %11s   %s%s\n' "$t" "${MED_RPS[$c,$t]}" "${MED_P50[$c,$t]}" "${MED_P99[$c,$t]}" \
      "${MED_CPU[$c,$t]}" "${RUNS[$c,$t]% }" "$flag"
  done
  echo
  [[ " ${C_TARGETS[$c]} " == *" direct "* ]] &&
    printf 'gateway/direct throughput ratio: %.2f\n' "$(paired_ratio "$c" gateway direct)"
  printf 'gateway/nginx throughput ratio: %.2f (rounds: %s)\n' "${RATIO[$c]}" "${SPREAD[$c]}"
  if le "${MED_P99[$c,gateway]}" "${MED_P99[$c,nginx]}"; then yn=yes; else yn=no; fi
  printf 'p99 gateway <= nginx: %s (gateway %.3f ms, nginx %.3f ms)\n' "$yn" "${MED_P99[$c,gateway]}" "${MED_P99[$c,nginx]}"
}

echo "CloudyKnight gateway benchmark  ($(nproc) cores, load avg at start $load1, median of $ROUNDS interleaved rounds of ${DURATION}s, ${WARMUP}s warm-up before each)"
echo "gateway.threads = $GW_THREADS, nginx worker_processes = $GW_THREADS (equal, so both get the same number of workers); backend: nginx, 1 worker; open-file limit $(ulimit -Sn)"
echo "binary: $CK_BINARY"
[[ "$TLS_STATE" == skipped ]] && { echo; echo "tls: skipped ($TLS_SKIP)"; }
[[ "$TLS_STATE" == error ]] && { echo; echo "tls: ERROR: the TLS gateway did not start or did not answer over https (see stderr)"; }
for c in "${CASES[@]}"; do
  measure_case "$c"
  print_case "$c"
done

# ---------------------------------------------------------------- summary
echo
echo "== summary (gateway vs nginx in this run; ratio = median of per-round req/s ratios, rounds = their lowest-highest,"
echo "   p99 and cpu = medians over rounds; cpu: the proxy's CPU time per request, all its threads, whatever share of the cores it got)"
printf '%-11s %5s %9s %10s %12s %10s %10s %11s   %-27s %s\n' scenario conns gw/nginx rounds "p99 gw ms" "p99 ngx ms" "cpu gw us" "cpu ngx us" "goal (issue 14)" met
goals=0; met=0; unmeasured=""
for c in "${CASES[@]}"; do
  goal=""; ok="-"
  case "${C_GOAL[$c]}" in
    proxy) goal=">= 1.05x and p99 <= nginx"; goals=$((goals + 1))
           if ge "${RATIO[$c]}" 1.05 && le "${MED_P99[$c,gateway]}" "${MED_P99[$c,nginx]}"; then ok=yes; else ok=no; fi ;;
    even)  goal=">= 1.00x"; goals=$((goals + 1))
           if ge "${RATIO[$c]}" 1.0; then ok=yes; else ok=no; fi ;;
    *)     goal="(none)" ;;
  esac
  ((C_ERR[$c])) && ok="ERRORS"
  [[ $ok == yes ]] && met=$((met + 1))
  printf '%-11s %5s %9.3f %10s %12.3f %10.3f %10s %11s   %-27s %s\n' "$c" "${C_CONNS[$c]}" "${RATIO[$c]}" "${SPREAD[$c]}" \
    "${MED_P99[$c,gateway]}" "${MED_P99[$c,nginx]}" "${MED_CPU[$c,gateway]}" "${MED_CPU[$c,nginx]}" "$goal" "$ok"
done
if [[ -n "$TLS_STATE" && "$TLS_STATE" != on ]]; then
  printf '%-11s %5s %9s %10s %12s %10s %10s %11s   %-27s %s\n' tls 64 - - - - - - ">= 1.00x" "not measured ($TLS_STATE${TLS_SKIP:+: $TLS_SKIP})"
  goals=$((goals + 1)); unmeasured+=" tls"
fi
for s in "${ALL_SCENARIOS[@]}"; do want "$s" || unmeasured+=" $s(not selected)"; done
echo
echo "issue 14 goals met: $met of $goals${unmeasured:+ (not measured:$unmeasured)}"
if ((FAILED)); then
  echo "measurement errors: yes (see stderr); exit 1"
else
  echo "measurement errors: none"
fi
exit "$FAILED"
