"""hello-python: a standard-library-only web app run by CloudyKnight.

CloudyKnight starts it with PORT in the environment and mounts it under
/<folder-name>/ with that prefix stripped; the prefix itself arrives in the
X-Forwarded-Prefix header, which this page shows. No requirements.txt, so
nothing is installed: `python3 app.py` is all it takes.
"""

import html
import json
import os
import platform
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = os.environ.get("HOST", "127.0.0.1")  # CloudyKnight sets HOST (0.0.0.0 in a container)
PORT = int(os.environ.get("PORT", "8000"))
STARTED = time.time()

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>hello-python</title>
  <style>
    body {{ font: 16px/1.6 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; }}
    code {{ background: #efe; padding: 0 .3em; border-radius: 4px; }}
    th {{ text-align: left; padding-right: 1rem; }}
  </style>
</head>
<body>
  <h1>Hello from Python {version}</h1>
  <table>
    <tr><th>X-Forwarded-Prefix</th><td><code id="prefix">{prefix}</code></td></tr>
    <tr><th>X-Forwarded-For</th><td><code>{xff}</code></td></tr>
    <tr><th>X-Forwarded-Host</th><td><code>{xfh}</code></td></tr>
    <tr><th>Path seen by the app</th><td><code>{path}</code></td></tr>
  </table>
  <p><a href="api/hello">api/hello</a> answers JSON.</p>
</body>
</html>
"""


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "hello-python"

    def _send(self, status, ctype, body):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        prefix = self.headers.get("X-Forwarded-Prefix", "")
        if path == "/":
            body = PAGE.format(
                version=html.escape(platform.python_version()),
                prefix=html.escape(prefix or "(none)"),
                xff=html.escape(self.headers.get("X-Forwarded-For", "")),
                xfh=html.escape(self.headers.get("X-Forwarded-Host", "")),
                path=html.escape(self.path),
            ).encode()
            self._send(200, "text/html; charset=utf-8", body)
        elif path == "/api/hello":
            body = json.dumps({
                "message": "Hello from hello-python",
                "prefix": prefix,
                "python": platform.python_version(),
                "uptime_seconds": round(time.time() - STARTED),
            }).encode()
            self._send(200, "application/json", body)
        else:
            body = json.dumps({"error": "not found", "path": path}).encode()
            self._send(404, "application/json", body)

    do_HEAD = do_GET

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))


def main():
    server = ThreadingHTTPServer((HOST, PORT), Handler)
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"hello-python listening on http://{HOST}:{PORT}/", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
