#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup is reached through traps
# Deterministic cost of one proxied request: the gateway (build/bench/proxy_gateway, the
# gateway's code with one worker, as `serve` runs it, minus the runtime: valgrind 3.19 cannot
# start the process runtime's apps) against an nginx reverse proxy (keepalive upstream), both in
# front of the same backend (bench/gateway/backend: nginx answering a ~100-byte 200), over
# exactly N keep-alive requests on one connection:
#   - user-space instructions per request (callgrind: counters zeroed after a warm-up, dumped
#     after the N requests; all threads summed);
#   - system calls per request (perf's syscall tracepoints on a native run, else strace -f -c),
#     with the main calls and the reads that found nothing (recvfrom-EAGAIN).
# Counted, not timed: the result does not depend on the machine's load.
#
# Env options:
#   PROFILE_REQUESTS  requests per measurement            (default 2000, at most 100000)
#   PROFILE_PATH      the proxied path                    (default /bench/; /bench/64k: 64 KiB)
#   PROFILE_NGINX     0 = the gateway only                (default 1)
#   PROFILE_KEEP      1 = keep the temp dir (callgrind.out files for callgrind_annotate)
#   PROFILE_TLS       1 = over TLS: both terminate TLS with the same throwaway EC P-256
#                     certificate (gateway.tls; nginx `listen ssl`), the client speaks TLS 1.3
#   PROFILE_TIMEOUT   hard limit for the whole run, s     (default 600)
#   CK_PROXY_GATEWAY  the binary (default: build/bench/proxy_gateway of this checkout)
# Needs valgrind, perf (or strace), nginx, python3. Exit code 0 when every measurement completed.
set -uo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$SCRIPT_DIR/../.." && pwd)"
N="${PROFILE_REQUESTS:-2000}"
URL_PATH="${PROFILE_PATH:-/bench/}"
WITH_NGINX="${PROFILE_NGINX:-1}"
TLS="${PROFILE_TLS:-0}"
TOTAL_TIMEOUT="${PROFILE_TIMEOUT:-600}"
BIN="${CK_PROXY_GATEWAY:-$REPO/build/bench/proxy_gateway}"
WARMUP=200

log() { printf '[profile-proxy] %s\n' "$*" >&2; }
die() { printf '[profile-proxy] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$N" =~ ^[0-9]+$ ]] && ((N > 0 && N <= 100000)) || die "PROFILE_REQUESTS must be 1..100000 (got '$N')"
[[ "$URL_PATH" =~ ^/bench/[A-Za-z0-9./_-]*$ ]] || die "PROFILE_PATH must start with /bench/ (got '$URL_PATH')"
[[ "$TOTAL_TIMEOUT" =~ ^[0-9]+$ ]] && ((TOTAL_TIMEOUT > 0)) || die "PROFILE_TIMEOUT must be a positive integer"
for c in valgrind callgrind_control strace python3; do
  command -v "$c" >/dev/null 2>&1 || die "$c is missing (apt-get install valgrind strace python3)"
done
NGINX="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"
[[ -x "$NGINX" ]] || die "nginx is missing (apt-get install nginx-light)"
[[ -x "$BIN" ]] || die "proxy_gateway not found: $BIN (cmake --build build --target proxy_gateway, or set CK_PROXY_GATEWAY)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/ck-profile-proxy.XXXXXX")"
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
  echo "[profile-proxy] ERROR: time limit ${TOTAL_TIMEOUT}s (PROFILE_TIMEOUT) reached" >&2
  kill -TERM $$ 2>/dev/null
) &
WATCHDOG=$!

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
wait_port() { # port pid what
  local i
  for ((i = 0; i < 600; i++)); do
    kill -0 "$2" 2>/dev/null || die "$3 exited while starting (logs in $TMP)"
    python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$1" \
      2>/dev/null && return 0
    sleep 0.2
  done
  die "$3 did not listen on $1 within 120 s"
}

# The client: exactly N GET requests over one keep-alive connection, each answer read whole
# (Content-Length framing) and checked to be a 200; every socket operation has a 10 s timeout.
cat >"$TMP/client.py" <<'PY'
import socket, ssl, sys
port, path, n, tls = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
s = socket.create_connection(("127.0.0.1", port), timeout=10)
if tls:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the run's own throwaway certificate
    s = ctx.wrap_socket(s)
req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: ck-profile\r\n"
       "Accept: */*\r\nCookie: theme=dark; ck_session=secret\r\n\r\n").encode()
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
    if length is None:
        sys.exit(f"request {i}: no Content-Length")
    while len(buf) < length:
        chunk = s.recv(262144)
        if not chunk:
            sys.exit(f"request {i}: connection closed in the body")
        buf += chunk
    buf = buf[length:]
s.close()
PY
run_client() { # port n
  timeout 300 python3 "$TMP/client.py" "$1" "$URL_PATH" "$2" "$TLS" || die "client failed on port $1 ($URL_PATH)"
}

# ---------------------------------------------------------------- the backend
BACKEND_PORT="$(free_port)"
mkdir -p "$TMP/backend"
cp "$SCRIPT_DIR/backend/start.sh" "$TMP/backend/"
chmod a+rx "$TMP" "$TMP/backend"  # a root nginx's workers (nobody) read /64k from there
(cd "$TMP/backend" && PORT="$BACKEND_PORT" exec sh start.sh) >"$TMP/backend.log" 2>&1 &
PIDS+=("$!")
wait_port "$BACKEND_PORT" "$!" "the backend nginx"

# ---------------------------------------------------------------- servers
CERT="$TMP/cert.pem"; KEY="$TMP/key.pem"
GW_TLS=() NGX_TLS="" NGX_PROTO=http
if [[ "$TLS" == 1 ]]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=127.0.0.1" -keyout "$KEY" -out "$CERT" >"$TMP/openssl.log" 2>&1 ||
    die "openssl could not make the certificate ($(tail -1 "$TMP/openssl.log"))"
  GW_TLS=(env "CK_TLS_CERT=$CERT" "CK_TLS_KEY=$KEY")
  NGX_TLS=" ssl; ssl_certificate $CERT; ssl_certificate_key $KEY; ssl_protocols TLSv1.2 TLSv1.3"
  NGX_PROTO=https
fi
start_gateway() { # wrapper args...
  SERVER_PORT="$(free_port)"
  "${GW_TLS[@]}" "$@" "$BIN" "$SERVER_PORT" "$BACKEND_PORT" >"$TMP/gateway.out" 2>"$TMP/gateway.log" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_port "$SERVER_PORT" "$SERVER_PID" "proxy_gateway"
}
start_nginx() { # wrapper args...
  SERVER_PORT="$(free_port)"
  local d="$TMP/nginx"
  mkdir -p "$d/tmp"
  cat >"$d/nginx.conf" <<CONF
worker_processes 1;
master_process off;
daemon off;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $d/tmp/body; proxy_temp_path $d/tmp/proxy;
  fastcgi_temp_path $d/tmp/fastcgi; uwsgi_temp_path $d/tmp/uwsgi; scgi_temp_path $d/tmp/scgi;
  keepalive_requests 100000;
  keepalive_timeout 75s;
  upstream up { server 127.0.0.1:$BACKEND_PORT; keepalive 64; keepalive_requests 100000; }
  server {
    listen 127.0.0.1:$SERVER_PORT$NGX_TLS;
    location /bench/ { proxy_pass http://up/; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header Host \$http_host; proxy_set_header X-Forwarded-Prefix /bench;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; proxy_set_header X-Forwarded-Host \$http_host;
      proxy_set_header X-Forwarded-Proto $NGX_PROTO; proxy_buffers 32 4k; }
  }
}
CONF
  "$@" "$NGINX" -p "$d" -e "$d/error.log" -c "$d/nginx.conf" >"$TMP/nginx.log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  wait_port "$SERVER_PORT" "$SERVER_PID" "nginx"
}
stop_server() {
  kill -TERM "$SERVER_PID" 2>/dev/null
  local i
  for ((i = 0; i < 200; i++)); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$SERVER_PID" 2>/dev/null
  wait "$SERVER_PID" 2>/dev/null
}

callgrind_total() { # dump files...
  local total=0 f v
  for f in "$@"; do
    v="$(awk '/^summary:/ { print $2; exit } /^totals:/ { t = $2 } END { if (t != "") print t }' "$f" | head -1)"
    total=$((total + ${v:-0}))
  done
  echo "$total"
}

declare -A IR=() SC=() SCTOP=()
measure_callgrind() { # kind
  local kind="$1" out="$TMP/cg-$1"
  mkdir -p "$out"
  "start_$kind" valgrind --tool=callgrind --separate-threads=no --callgrind-out-file="$out/cg.%p" \
    --dump-instr=no --collect-atstart=yes --vgdb=yes
  run_client "$SERVER_PORT" "$WARMUP"
  callgrind_control -z "$SERVER_PID" >/dev/null 2>&1 || die "callgrind_control -z failed for $kind"
  run_client "$SERVER_PORT" "$N"
  callgrind_control --dump=requests "$SERVER_PID" >/dev/null 2>&1 || die "callgrind_control -d failed for $kind"
  sleep 0.5
  local dumps=("$out"/cg.*.[0-9]*)
  [[ -e "${dumps[0]}" ]] || die "no callgrind dump for $kind"
  IR[$kind]=$(($(callgrind_total "${dumps[@]}") / N))
  log "$kind: ${IR[$kind]} instructions/request"
  stop_server
}
# System calls: perf's syscall tracepoints when perf can use them (they barely slow the
# server, so a read finds the socket empty as often as without them), else strace -f -c (which
# slows every call: the peers then have time to answer, and reads that would find nothing and
# wait -- recvfrom returning EAGAIN -- mostly vanish from the count).
PERF_CALLS="recvfrom sendmsg sendto writev readv read write epoll_wait epoll_ctl getsockopt setsockopt"
use_perf() {
  command -v perf >/dev/null 2>&1 &&
    perf stat -e raw_syscalls:sys_enter -e syscalls:sys_exit_recvfrom --filter 'ret == -11' -- true >/dev/null 2>&1
}
measure_syscalls() { # kind
  local kind="$1" st="$TMP/syscalls-$1.txt"
  "start_$kind"
  run_client "$SERVER_PORT" "$WARMUP"
  local spid total
  if use_perf; then
    local ev=(-e raw_syscalls:sys_enter -e syscalls:sys_exit_recvfrom --filter 'ret == -11') c
    for c in $PERF_CALLS; do ev+=(-e "syscalls:sys_enter_$c"); done
    perf stat -x, -o "$st" "${ev[@]}" -p "$SERVER_PID" 2>"$TMP/perf-$kind.log" &
    spid=$!
    PIDS+=("$spid")
    sleep 1
    run_client "$SERVER_PORT" "$N"
    kill -INT "$spid"
    wait "$spid" 2>/dev/null
    total="$(awk -F, '$3 == "raw_syscalls:sys_enter" { print $1 }' "$st")"
    SCTOP[$kind]="$(awk -F, -v n="$N" '$3 ~ /^syscalls:/ { name = $3; sub(/^syscalls:sys_enter_/, "", name);
        sub(/^syscalls:sys_exit_recvfrom/, "recvfrom-EAGAIN", name); printf "%s %.2f\n", name, $1 / n }' "$st" |
      sort -k2 -nr | awk '$2 >= 0.05 { printf "%s%s=%s", sep, $1, $2; sep = " " }')"
  else
    strace -f -c -o "$st" -p "$SERVER_PID" 2>"$TMP/strace-$kind.log" &
    spid=$!
    PIDS+=("$spid")
    sleep 1
    run_client "$SERVER_PORT" "$N"
    kill -INT "$spid"
    wait "$spid" 2>/dev/null
    total="$(awk '$NF == "total" { print $4 }' "$st")"
    SCTOP[$kind]="strace: $(awk -v n="$N" '/^-/ { d++; next } d == 1 && NF >= 5 { printf "%s %.2f\n", $NF, $4 / n }' "$st" |
      sort -k2 -nr | awk '$2 >= 0.05 { printf "%s%s=%s", sep, $1, $2; sep = " " }')"
  fi
  SC[$kind]="$(python3 -c 'import sys; print(f"{int(sys.argv[1])/int(sys.argv[2]):.2f}")' "${total:-0}" "$N")"
  log "$kind: ${SC[$kind]} syscalls/request (${SCTOP[$kind]})"
  stop_server
}

log "binary: $BIN; nginx: $("$NGINX" -v 2>&1 | sed 's/.*: //'); $N requests of $URL_PATH on one keep-alive connection"
KINDS=(gateway)
[[ "$WITH_NGINX" == 1 ]] && KINDS+=(nginx)
for k in "${KINDS[@]}"; do
  measure_callgrind "$k"
  measure_syscalls "$k"
done

printf '\nper proxied request (%d keep-alive requests of %s on one connection%s, one worker)\n' "$N" "$URL_PATH" "$([[ $TLS == 1 ]] && echo ', over TLS')"
for k in "${KINDS[@]}"; do
  printf '  %-8s %8s instructions  %6s syscalls (%s)\n' "$k" "${IR[$k]:-n/a}" "${SC[$k]:-n/a}" "${SCTOP[$k]:-}"
done
