"""The workspace CLI over HTTPS, path-style and virtual-host style.

s3rver speaks plain HTTP, so a small TLS-terminating proxy (Python's ssl module, a certificate
made for the test by `openssl req`) sits in front of it. The CLI must trust that certificate
through AWS_CA_BUNDLE (as every AWS tool does), refuse the endpoint without it, and address
buckets both as https://s3.localhost:PORT/BUCKET/KEY (path) and as
https://BUCKET.s3.localhost:PORT/KEY (virtual host; *.localhost resolves to loopback, and
s3rver started with --service-endpoint localhost maps the host back to the bucket).
"""

import hashlib
import os
import select
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest

from harness import ClassSetUp, binary, free_port
from s3util import S3Server

BUCKET = "tls-bkt"


class TlsProxy:
    """Accepts TLS on 127.0.0.1 and relays the plain bytes to `upstream_port`."""

    def __init__(self, cert, key, upstream_port):
        self.upstream_port = upstream_port
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.handshakes_failed = 0
        self.requests = []  # (Host header, request target) of each request seen
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        raw.settimeout(10)
        try:
            client = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshakes_failed += 1
            raw.close()
            return
        upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
        try:
            for _ in range(1_000_000):  # bounded relay loop
                ready, _, _ = select.select([client, upstream], [], [], 30)
                if not ready:
                    return
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    if s is client:
                        self._note(data)
                    (upstream if s is client else client).sendall(data)
                # bytes already decrypted inside the TLS object are invisible to select()
                while client.pending():
                    upstream.sendall(client.recv(client.pending()))
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def _note(self, data):
        head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
        parts = head[0].split(" ")
        if len(parts) == 3 and parts[2].startswith("HTTP/"):
            host = next((h.split(":", 1)[1].strip() for h in head[1:] if h.lower().startswith("host:")), "")
            self.requests.append((host, parts[1]))

    def stop(self):
        self.stopping = True
        self.sock.close()


def tree_digest(root):
    out = {}
    for dp, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dp, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


class TlsTest(ClassSetUp):
    @classmethod
    def init_class_state(cls):
        cls.server = None
        cls.proxy = None
        cls.tmp = tempfile.mkdtemp(prefix="ck-s3-tls-")

    @classmethod
    def set_up(cls):
        cls.cert = os.path.join(cls.tmp, "cert.pem")
        key = os.path.join(cls.tmp, "key.pem")
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cls.cert,
             "-days", "1", "-subj", "/CN=s3.localhost",
             "-addext", "subjectAltName=DNS:s3.localhost,DNS:*.s3.localhost,DNS:localhost"],
            check=True, capture_output=True, timeout=60)
        cls.server = S3Server(extra_args=["--service-endpoint", "localhost"]).start()
        cls.server.make_bucket(BUCKET)
        cls.proxy = TlsProxy(cls.cert, key, cls.server.port)
        cls.src = os.path.join(cls.tmp, "src")
        os.makedirs(os.path.join(cls.src, "sub dir"))
        with open(os.path.join(cls.src, "index.html"), "w") as f:
            f.write("<h1>over TLS</h1>\n")
        with open(os.path.join(cls.src, "sub dir", "ü+&=.bin"), "wb") as f:
            f.write(os.urandom(70_000))

    @classmethod
    def tearDownClass(cls):
        if cls.proxy:
            cls.proxy.stop()
        if cls.server:
            cls.server.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def cli(self, *args, ca=True, addressing=None):
        env = self.server.client_env()
        env["XDG_CACHE_HOME"] = os.path.join(self.tmp, "cache")
        if ca:
            env["AWS_CA_BUNDLE"] = self.cert
        if addressing:
            env["CK_STORAGE_ADDRESSING"] = addressing
        endpoint = f"https://s3.localhost:{self.proxy.port}"
        return subprocess.run([binary(), "workspace", *args, "--storage", f"s3://{BUCKET}/ws",
                               "--s3-endpoint", endpoint], env=env, capture_output=True, text=True,
                              timeout=120)

    def assert_stored(self, name):
        listing = self.server.aws("s3", "ls", "--recursive", f"s3://{BUCKET}/ws/{name}/").stdout
        self.assertIn("index.html", listing)
        self.assertIn("sub dir/ü+&=.bin", listing)

    def round_trip(self, name, addressing):
        up = self.cli("upload", name, self.src, addressing=addressing)
        self.assertEqual(up.returncode, 0, up.stderr)
        self.assertIn("2 uploaded", up.stdout)
        self.assert_stored(name)
        dest = os.path.join(self.tmp, f"down-{name}")
        down = self.cli("download", name, dest, addressing=addressing)
        self.assertEqual(down.returncode, 0, down.stderr)
        self.assertEqual(tree_digest(dest), tree_digest(self.src))
        again = self.cli("upload", name, self.src, addressing=addressing)
        self.assertEqual(again.returncode, 0, again.stderr)
        self.assertIn("0 uploaded", again.stdout)

    def test_path_style_over_https(self):
        seen = len(self.proxy.requests)
        self.round_trip("path-style", "path")
        port = self.proxy.port
        for host, target in self.proxy.requests[seen:]:
            self.assertEqual(host, f"s3.localhost:{port}")
            self.assertTrue(target.startswith(f"/{BUCKET}"), target)

    def test_virtual_host_over_https(self):
        seen = len(self.proxy.requests)
        self.round_trip("vhost", "virtual")
        port = self.proxy.port
        requests = self.proxy.requests[seen:]
        self.assertGreater(len(requests), 3)
        for host, target in requests:
            self.assertEqual(host, f"{BUCKET}.s3.localhost:{port}")
            self.assertFalse(target.startswith(f"/{BUCKET}"), target)

    def test_untrusted_certificate_is_refused_with_a_hint(self):
        before = self.proxy.handshakes_failed
        r = self.cli("upload", "untrusted", self.src, ca=False)
        self.assertNotEqual(r.returncode, 0)
        lines = r.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, r.stderr)
        self.assertRegex(lines[0], r"(?i)certificate")
        self.assertIn("CA bundle", lines[0])
        self.assertGreater(self.proxy.handshakes_failed, before)
        self.assertNotIn("untrusted/", self.server.aws("s3", "ls", "--recursive", f"s3://{BUCKET}/ws/").stdout)


if __name__ == "__main__":
    unittest.main()
