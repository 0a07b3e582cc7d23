#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup is reached through traps
# Deterministic cost per request: the CloudyKnight gateway against nginx doing the same job,
# counted rather than timed, so the result does not depend on the machine's load:
#   - user-space instructions per request (valgrind --tool=callgrind: counters zeroed after
#     startup and a warm-up, dumped after exactly N keep-alive requests on one connection);
#   - system calls per request (strace -f -c attached after startup, for another N requests),
#     with the calls that make up most of them.
# Both servers run one worker (CK_GATEWAY_THREADS=1; nginx master_process off, 1 worker), on
# 127.0.0.1 only. Targets (PROFILE_TARGETS):
#   static-4k   asset-4k.css of a static workspace (gateway) / the same folder (nginx, sendfile on)
#   static-64k  asset-64k.js, the same way
#   proxy       /bench/ proxied to the backend of bench/gateway/backend (the ~100-byte answer),
#               by the gateway and by an nginx proxy (keepalive upstream), as run.sh sets them up;
#               the gateway's instructions are n/a here: under valgrind 3.19 (no pidfd_open, no
#               seccomp) the process runtime cannot start the backend. Its syscalls are counted.
# Instruction counts include whatever else the process does in the window (timers, the
# monitor); the idle cost over the same time is printed as well, so it can be judged.
#
# Env options:
#   PROFILE_REQUESTS  requests per measurement          (default 2000, at most 100000)
#   PROFILE_TARGETS   targets, any subset               (default "static-4k static-64k proxy")
#   PROFILE_TIMEOUT   hard limit for the whole run, s   (default 600)
#   PROFILE_KEEP      1 = keep the temp dir (callgrind files, strace summaries, logs)
#   CK_BINARY         cloudyknight binary (default: build/cloudyknight of this checkout)
# Needs valgrind, strace, nginx, curl, python3. Exit code 0 when every measurement completed.
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
N="${PROFILE_REQUESTS:-2000}"
TARGETS="${PROFILE_TARGETS:-static-4k static-64k proxy}"
TOTAL_TIMEOUT="${PROFILE_TIMEOUT:-600}"
CK_BINARY="${CK_BINARY:-$REPO/build/cloudyknight}"
WARMUP=200

log() { printf '[profile] %s\n' "$*" >&2; }
die() { printf '[profile] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$N" =~ ^[0-9]+$ ]] && ((N > 0 && N <= 100000)) || die "PROFILE_REQUESTS must be 1..100000 (got '$N')"
[[ "$TOTAL_TIMEOUT" =~ ^[0-9]+$ ]] && ((TOTAL_TIMEOUT > 0)) || die "PROFILE_TIMEOUT must be a positive integer"
WANT_PROXY=0
for t in $TARGETS; do
  case "$t" in
    static-4k | static-64k) ;;
    proxy) WANT_PROXY=1 ;;
    *) die "unknown target '$t' in PROFILE_TARGETS (known: static-4k static-64k proxy)" ;;
  esac
done
for c in valgrind callgrind_control strace curl python3; do
  command -v "$c" >/dev/null 2>&1 || die "$c is missing (apt-get install valgrind strace curl python3)"
done
NGINX="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"
[[ -x "$NGINX" ]] || die "nginx is missing (apt-get install nginx-light)"
[[ -x "$CK_BINARY" ]] || die "cloudyknight binary not found: $CK_BINARY (build it, or set CK_BINARY)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/ck-profile.XXXXXX")"
PIDS=()
cleanup() {
  trap '' INT TERM
  local p
  for p in "${PIDS[@]}"; do
    kill -0 "$p" 2>/dev/null || continue
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null
  done
  [[ -n "${WATCHDOG:-}" ]] && kill -TERM "$WATCHDOG" 2>/dev/null
  if [[ "${PROFILE_KEEP:-0}" == 1 ]]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM
(
  trap 'kill "$sp" 2>/dev/null; exit 0' TERM
  sleep "$TOTAL_TIMEOUT" & sp=$!
  wait "$sp"
  echo "[profile] ERROR: time limit ${TOTAL_TIMEOUT}s (PROFILE_TIMEOUT) reached" >&2
  kill -TERM $$ 2>/dev/null
) &
WATCHDOG=$!

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# The client: exactly N GET requests over one keep-alive connection, each answer read whole
# (Content-Length framing) and checked to be a 200 of the expected length; every socket
# operation has a 10 s timeout.
cat >"$TMP/client.py" <<'PY'
import socket, sys
port, path, n, expect_len = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
s = socket.create_connection(("127.0.0.1", port), timeout=10)
req = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: ck-profile\r\n\r\n".encode()
buf = b""
for i in range(n):
    s.sendall(req)
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(262144)
        if not chunk:
            sys.exit(f"request {i}: connection closed")
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 200"):
        sys.exit(f"request {i}: {lines[0]!r}")
    length = None
    for l in lines[1:]:
        k, _, v = l.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    if length is None or (expect_len >= 0 and length != expect_len):
        sys.exit(f"request {i}: Content-Length {length}, expected {expect_len}")
    while len(buf) < length:
        chunk = s.recv(262144)
        if not chunk:
            sys.exit(f"request {i}: connection closed in the body")
        buf += chunk
    buf = buf[length:]
s.close()
PY
run_client() { # port path n expect_len
  timeout 300 python3 "$TMP/client.py" "$@" || die "client failed: port $1 path $2"
}

# ---------------------------------------------------------------- the folders
WS="$TMP/workspaces"
mkdir -p "$WS/site"
printf '<!doctype html>\n<title>bench</title>\n<link rel="stylesheet" href="asset-4k.css">\n' >"$WS/site/index.html"
{ yes '.cloudyknight-bench { color: #123456; margin: 0 auto; } /* 4 KiB static asset */' || true; } \
  | head -c 4096 >"$WS/site/asset-4k.css"
{ yes 'window.cloudyknightBench = (window.cloudyknightBench || 0) + 1; // 64 KiB static asset' || true; } \
  | head -c 65536 >"$WS/site/asset-64k.js"
chmod a+rx "$TMP" "$WS" "$WS/site" && chmod a+r "$WS/site/"*
# The gateway under valgrind gets a workspaces folder without the proxy's backend: valgrind
# 3.19 has neither pidfd_open nor seccomp, so the process runtime cannot start an app there
# (and its retries would be counted). The proxy path is profiled for syscalls only, with the
# gateway running natively; that gateway's backend then serves nginx's proxy as well.
WS_ALL="$TMP/workspaces-all"
mkdir -p "$WS_ALL"
cp -a "$WS/site" "$WS_ALL/site"
if ((WANT_PROXY)); then
  mkdir -p "$WS_ALL/bench"
  cp "$SCRIPT_DIR/backend/workspace.json" "$SCRIPT_DIR/backend/start.sh" "$WS_ALL/bench/"
fi
path_of() { # target server -> URL path
  case "$1" in
    static-4k) echo "/site/asset-4k.css" ;;
    static-64k) echo "/site/asset-64k.js" ;;
    proxy) echo "/bench/" ;;
  esac
}
len_of() {
  case "$1" in
    static-4k) echo 4096 ;;
    static-64k) echo 65536 ;;
    proxy) echo -1 ;;
  esac
}

# ---------------------------------------------------------------- servers
# start_server KIND WRAPPER... : KIND gateway|nginx; sets SERVER_PID and SERVER_PORT.
BACKEND_PORT=""
start_gateway() { # wrapper args... (none: natively, with the proxy's backend)
  SERVER_PORT="$(free_port)"
  local ws="$WS" data="$TMP/data-valgrind" with_backend=0
  if (($# == 0)); then ws="$WS_ALL"; data="$TMP/data"; with_backend="$WANT_PROXY"; fi
  local lo=$((20000 + RANDOM % 20000))
  # Under valgrind the daemon cannot install seccomp filters, so the process runtime would refuse
  # to start the proxy's backend (this script's own nginx, on 127.0.0.1): allow the weaker
  # sandbox for this run. It changes nothing on the gateway's request path.
  (cd "$TMP" && CK_GATEWAY_THREADS=1 CK_RUNTIME_PORTS="$lo-$((lo + 9))" CK_RUNTIME_ALLOW_WEAK_SANDBOX=1 exec "$@" "$CK_BINARY" serve \
     --listen "127.0.0.1:$SERVER_PORT" --workspaces "$ws" --data "$data" --runtime process \
     --log-level warn) >"$TMP/gateway.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  local i
  for ((i = 0; i < 600; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || { tail -20 "$TMP/gateway.log" >&2; die "the gateway exited while starting"; }
    [[ "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:$SERVER_PORT/monitor/healthz")" == 200 ]] && break
    sleep 0.5
  done
  ((i < 600)) || die "the gateway did not answer /monitor/healthz within 300 s"
  if ((with_backend)); then
    local w=""
    for ((i = 0; i < 240; i++)); do
      w="$(curl -s -m 5 "http://127.0.0.1:$SERVER_PORT/monitor/api/v1/workspaces/bench" || true)"
      [[ "$w" == *'"status":"running"'* ]] && break
      [[ "$w" == *'"status":"failed"'* && "$w" == *'gave up'* ]] && die "workspace bench failed: $w"
      sleep 0.5
    done
    ((i < 240)) || die "workspace bench not running within 120 s: $w"
    BACKEND_PORT="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["port"])' "$w")"
  fi
}
start_nginx() { # wrapper args...
  SERVER_PORT="$(free_port)"
  local d="$TMP/nginx" up="" loc=""
  mkdir -p "$d/tmp"
  if ((WANT_PROXY)) && [[ -n "$BACKEND_PORT" ]]; then
    up="upstream up { server 127.0.0.1:$BACKEND_PORT; keepalive 64; keepalive_requests 100000; }"
    loc="location /bench/ { proxy_pass http://up/; proxy_http_version 1.1; proxy_set_header Connection \"\";
      proxy_set_header Host \$http_host; proxy_set_header X-Forwarded-Prefix /bench;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header X-Forwarded-Proto http; proxy_buffers 32 4k; }"
  fi
  local mime=""; [[ -f /etc/nginx/mime.types ]] && mime="include /etc/nginx/mime.types;"
  cat >"$d/nginx.conf" <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  $mime
  client_body_temp_path $d/tmp/body; proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi; uwsgi_temp_path $d/tmp/uwsgi; scgi_temp_path $d/tmp/scgi;
  sendfile on;
  keepalive_requests 100000;
  keepalive_timeout 75s;
  $up
  server {
    listen 127.0.0.1:$SERVER_PORT;
    location /site/ { alias $WS/site/; }
    $loc
  }
}
CONF
  (exec "$@" "$NGINX" -p "$d" -e "$d/error.log" -c "$d/nginx.conf") >"$TMP/nginx.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  local i
  for ((i = 0; i < 600; i++)); do
    kill -0 "$SERVER_PID" 2>/dev/null || { cat "$TMP/nginx.log" "$d/error.log" >&2; die "nginx exited while starting"; }
    [[ "$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://127.0.0.1:$SERVER_PORT/site/asset-4k.css")" == 200 ]] && break
    sleep 0.5
  done
  ((i < 600)) || die "nginx did not answer within 300 s"
}
stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null
  local i
  for ((i = 0; i < 200; i++)); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
}

# Total instructions (all threads) in the callgrind dump files written since the last dump.
callgrind_total() { # dump-file-glob...
  local total=0 f v
  for f in "$@"; do
    v="$(awk '/^summary:/ { print $2; exit } /^totals:/ { t = $2 } END { if (t != "") print t }' "$f" | head -1)"
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

# callgrind KIND TARGET: instructions per request. Prints "ir idle_ir_per_s".
declare -A IR=() SC=() SCTOP=() IDLE=()
measure_callgrind() { # kind
  local kind="$1" out="$TMP/cg-$1"
  mkdir -p "$out"
  "start_$kind" valgrind --tool=callgrind --separate-threads=no --callgrind-out-file="$out/cg.%p" \
    --dump-instr=no --collect-atstart=yes --vgdb=yes
  local t p len dumps before
  for t in $TARGETS; do
    [[ "$t" == proxy && "$kind" == gateway ]] && continue  # no backend under valgrind (see above)
    [[ "$t" == proxy && "$kind" == nginx && -z "$BACKEND_PORT" ]] && continue
    p="$(path_of "$t")"; len="$(len_of "$t")"
    run_client "$SERVER_PORT" "$p" "$WARMUP" "$len"
    callgrind_control -z "$SERVER_PID" >/dev/null 2>&1 || die "callgrind_control -z failed for $kind"
    before=$(date +%s.%N)
    run_client "$SERVER_PORT" "$p" "$N" "$len"
    local secs; secs=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$before" "$(date +%s.%N)")
    rm -f "$out"/cg.*.[0-9]*
    callgrind_control --dump="$t" "$SERVER_PID" >/dev/null 2>&1 || die "callgrind_control -d failed for $kind"
    sleep 0.5
    dumps=("$out"/cg.*.[0-9]*)
    [[ -e "${dumps[0]}" ]] || die "no callgrind dump for $kind $t"
    IR[$kind,$t]=$(( $(callgrind_total "${dumps[@]}") / N ))
    # The idle cost over the same time: what timers and the monitor add.
    rm -f "$out"/cg.*.[0-9]*
    callgrind_control -z "$SERVER_PID" >/dev/null 2>&1
    sleep "$secs"
    callgrind_control --dump=idle "$SERVER_PID" >/dev/null 2>&1
    sleep 0.5
    dumps=("$out"/cg.*.[0-9]*)
    IDLE[$kind,$t]=$(( $(callgrind_total "${dumps[@]}") / N ))
    rm -f "$out"/cg.*.[0-9]*
    log "$kind $t: ${IR[$kind,$t]} instructions/request (idle over the same time: ${IDLE[$kind,$t]}/request, ${secs%.*}s)"
  done
  stop_server
}

measure_strace() { # kind [keep]: keep = leave the server running (KEEPER_PID)
  local kind="$1" keep="${2:-}"
  "start_$kind"
  local t p len st
  for t in $TARGETS; do
    [[ "$t" == proxy && "$kind" == nginx && -z "$BACKEND_PORT" ]] && continue
    p="$(path_of "$t")"; len="$(len_of "$t")"
    run_client "$SERVER_PORT" "$p" "$WARMUP" "$len"
    st="$TMP/strace-$kind-$t.txt"
    strace -f -c -o "$st" -p "$SERVER_PID" 2>"$TMP/strace-$kind-$t.log" &
    local spid=$!
    PIDS+=("$spid")
    sleep 1
    run_client "$SERVER_PORT" "$p" "$N" "$len"
    kill -INT "$spid"; wait "$spid" 2>/dev/null
    # strace -c: the calls column is the 4th (errors may be empty); the name is the last.
    local total; total="$(awk '$NF == "total" { print $4 }' "$st")"
    SC[$kind,$t]="$(python3 -c 'import sys; print(f"{int(sys.argv[1])/int(sys.argv[2]):.2f}")' "${total:-0}" "$N")"
    SCTOP[$kind,$t]="$(awk -v n="$N" '/^-/ { d++; next } d == 1 && NF >= 5 { printf "%s %.2f\n", $NF, $4 / n }' "$st" \
      | sort -k2 -nr | awk '$2 >= 0.05 { printf "%s%s=%s", sep, $1, $2; sep = " " }')"
    log "$kind $t: ${SC[$kind,$t]} syscalls/request (${SCTOP[$kind,$t]})"
  done
  if [[ -n "$keep" ]]; then KEEPER_PID="$SERVER_PID"; else stop_server; fi
}

# The gateway starts the proxy's backend; nginx proxies to the gateway's backend, so the
# gateway runs first and its backend stays up for nginx (the daemon stops it when it exits:
# a plain, unprofiled gateway keeps it alive meanwhile).
log "binary: $CK_BINARY; nginx: $("$NGINX" -v 2>&1 | sed 's/.*: //'); $N requests per measurement, one keep-alive connection"
KEEPER_PID=""
measure_callgrind gateway
measure_strace gateway keep   # its backend serves nginx's proxy too
measure_callgrind nginx
measure_strace nginx
SERVER_PID="$KEEPER_PID"; stop_server

# ---------------------------------------------------------------- report
printf '\nper request (%d keep-alive requests on one connection, one worker each)\n' "$N"
printf '%-11s %14s %14s %7s   %10s %10s %7s\n' target "gateway instr" "nginx instr" ratio "gw sysc" "ngx sysc" ratio
for t in $TARGETS; do
  g="${IR[gateway,$t]:-n/a}" x="${IR[nginx,$t]:-n/a}"
  gs="${SC[gateway,$t]:-0}" xs="${SC[nginx,$t]:-0}"
  printf '%-11s %14s %14s %7s   %10s %10s %7s\n' "$t" "$g" "$x" \
    "$(python3 -c 'import sys; a,b=sys.argv[1],sys.argv[2]; print(f"{float(a)/float(b):.2f}x" if a != "n/a" and b != "n/a" and float(b) else "-")' "$g" "$x")" \
    "$gs" "$xs" \
    "$(python3 -c 'import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f"{a/b:.2f}x" if b else "-")' "$gs" "$xs")"
done
printf '\nsyscalls per request, by call (>= 0.05):\n'
for t in $TARGETS; do
  printf '  %-11s gateway: %s\n' "$t" "${SCTOP[gateway,$t]:-}"
  printf '  %-11s nginx:   %s\n' "" "${SCTOP[nginx,$t]:-}"
done
printf '\nidle instructions over the same time, per request (timers, monitor; included above):\n'
for t in $TARGETS; do
  printf '  %-11s gateway %s, nginx %s\n' "$t" "${IDLE[gateway,$t]:-n/a}" "${IDLE[nginx,$t]:-n/a}"
done
