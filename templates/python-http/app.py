"""A web app on Python's standard library alone (no requirements.txt, nothing to install).

CloudyKnight starts it with PORT (and HOST) in the environment and mounts it under
/<workspace>/ with that prefix stripped, so links here are relative.
"""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOST = os.environ.get("HOST", "127.0.0.1")
PORT = int(os.environ.get("PORT", "8000"))

PAGE = b"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>python-http</title></head>
<body>
  <h1>Hello from Python</h1>
  <p>Edit <code>app.py</code>; the workspace restarts on save. Try <a href="api/hello">api/hello</a>.</p>
</body>
</html>
"""


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            self.send(200, "text/html; charset=utf-8", PAGE)
        elif path == "/api/hello":
            body = json.dumps({"hello": "world", "python": sys.version.split()[0]}).encode()
            self.send(200, "application/json", body)
        else:
            self.send(404, "text/plain; charset=utf-8", b"not found\n")

    def send(self, status, content_type, body):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    server = ThreadingHTTPServer((HOST, PORT), Handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"python-http listening on http://{HOST}:{PORT}/", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
