#!/usr/bin/env python3
"""Smart HTTP for bench/git: `git http-backend` behind a minimal CGI bridge on 127.0.0.1.

  http_backend.py ROOT PORTFILE
      Serves every repository under ROOT at http://127.0.0.1:PORT/<name> (the port is chosen
      by the kernel and written to PORTFILE once listening). One thread per connection; each
      request runs one `git http-backend` (GIT_PROJECT_ROOT=ROOT, GIT_HTTP_EXPORT_ALL), with
      the request body (Content-Length or chunked, at most 64 MiB) on its stdin and its output
      streamed back as the response (connection closed at the end, HTTP/1.0 style). The
      Git-Protocol header is passed on, so git speaks protocol v2 as it would to a real server.
      Read-only: receive-pack is refused. For benchmarks only; nothing here is hardened.
"""
import http.server
import os
import shutil
import subprocess
import sys

MAX_BODY = 64 << 20


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, fmt, *args):
        pass

    def read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                if len(out) + size > MAX_BODY:
                    raise ValueError("body too large")
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            raise ValueError("body too large")
        return self.rfile.read(n) if n else b""

    def handle_git(self):
        path, _, query = self.path.partition("?")
        if "receive-pack" in path or "receive-pack" in query:
            self.send_error(403, "read-only")
            return
        try:
            body = self.read_body()
        except ValueError as e:
            self.send_error(413, str(e))
            return
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/"),
            "GIT_PROJECT_ROOT": self.server.root,
            "GIT_HTTP_EXPORT_ALL": "1",
            "GIT_CONFIG_NOSYSTEM": "1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": self.client_address[0],
            "SERVER_PROTOCOL": "HTTP/1.1",
        }
        if self.headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
        if self.headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
        proc = subprocess.Popen(["git", "http-backend"], env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE)
        proc.stdin.write(body)
        proc.stdin.close()
        status, headers = 200, []
        while True:
            line = proc.stdout.readline()
            if not line or line in (b"\r\n", b"\n"):
                break
            k, _, v = line.decode("latin-1").partition(":")
            if k.lower() == "status":
                status = int(v.strip().split()[0])
            else:
                headers.append((k.strip(), v.strip()))
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        shutil.copyfileobj(proc.stdout, self.wfile, 1 << 16)
        proc.wait()

    do_GET = handle_git
    do_POST = handle_git


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: http_backend.py ROOT PORTFILE")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.root = os.path.abspath(sys.argv[1])
    tmp = sys.argv[2] + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(srv.server_address[1]))
    os.rename(tmp, sys.argv[2])
    srv.serve_forever()


if __name__ == "__main__":
    main()
