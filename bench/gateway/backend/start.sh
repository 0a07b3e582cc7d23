#!/bin/sh
# Benchmark backend, started by CloudyKnight as a process workspace.
# CloudyKnight copies this folder to DATA/run/<name>/app and runs
# `sh start.sh` there (see workspace.json) with $PORT in the environment.
# We write an nginx config into the current directory and exec nginx in the
# foreground, so the workspace process *is* the nginx master.
set -eu

: "${PORT:?PORT must be set by the CloudyKnight runtime}"
HOST_ADDR="${HOST:-127.0.0.1}"
NGINX="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"
DIR="$PWD"
mkdir -p "$DIR/tmp" "$DIR/files"

# The large response: a 64 KiB file (the same bytes on every run), served from /64k.
yes 'cloudyknight gateway bench backend: 64 KiB response body, the same bytes every run.' \
  | head -c 65536 >"$DIR/files/64k"

# Temp paths inside $PWD for every temp-using module compiled into this nginx
# (nginx would otherwise try to create them under /var/lib/nginx).
NGX_V="$("$NGINX" -V 2>&1)"
TEMP_PATHS="client_body_temp_path $DIR/tmp/body;"
for m in proxy fastcgi uwsgi scgi; do
  case "$NGX_V" in
    *"--without-http_${m}_module"*) ;;
    *) TEMP_PATHS="$TEMP_PATHS ${m}_temp_path $DIR/tmp/$m;" ;;
  esac
done

# / answers a ~100-byte fixed body; /64k the 64 KiB file (sendfile, as nginx serves files).
cat > "$DIR/backend.conf" <<CONF
worker_processes 1;
pid $DIR/backend.pid;
error_log $DIR/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  $TEMP_PATHS
  keepalive_requests 100000;
  keepalive_timeout 75s;
  sendfile on;
  server {
    listen $HOST_ADDR:$PORT;
    location = /64k {
      default_type application/octet-stream;
      root $DIR/files;
    }
    # What a proxy forwarded: the bench checks that the gateway and nginx send the same.
    location = /forwarded {
      default_type text/plain;
      return 200 "host=\$http_host xff=\$http_x_forwarded_for xrip=\$http_x_real_ip xfproto=\$http_x_forwarded_proto xfhost=\$http_x_forwarded_host xfprefix=\$http_x_forwarded_prefix fwd=\$http_forwarded\n";
    }
    location / {
      default_type text/plain;
      return 200 "cloudyknight gateway bench backend: fixed 200 response from nginx, keepalive on, no access log!\n";
    }
  }
}
CONF

exec "$NGINX" -p "$DIR" -e "$DIR/error.log" -c "$DIR/backend.conf" -g 'daemon off;'
