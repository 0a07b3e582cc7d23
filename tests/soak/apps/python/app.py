"""The soak's python app (tests/soak/run.py), standard library only.

GET /version answers the content of version.txt as read when the app started (the soak saves
a new one and expects the restarted app to answer it); GET / a small page.
"""

import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))
try:
    with open("version.txt", "rb") as f:
        VERSION = f.read()
except OSError:
    VERSION = b"(no version.txt)"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "soak-python"

    def _send(self, status, ctype, body):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/version":
            self._send(200, "text/plain; charset=utf-8", VERSION)
        elif path == "/":
            self._send(200, "text/html; charset=utf-8",
                       f"<!doctype html><title>soak python</title><p>pid {os.getpid()}</p>\n".encode())
        else:
            self._send(404, "text/plain", b"not found\n")

    def log_message(self, fmt, *args):  # quiet: the soak measures the daemon's log, not ours
        pass


def main():
    server = ThreadingHTTPServer((HOST, PORT), Handler)
    server.daemon_threads = True
    print(f"soak python listening on {HOST}:{PORT}, version {VERSION!r}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
