"""TLS helpers for the tests of the gateway's TLS listener (Python 3 standard library and the
openssl CLI).

TestCA makes a throwaway certificate authority in a temporary folder and issues server
certificates from it; TlsDaemon is a harness Daemon whose HTTP helpers speak HTTPS to
127.0.0.1 with a chosen server name (SNI and Host), trusting only that CA, the way
`curl --resolve NAME:PORT:127.0.0.1 --cacert ca.pem` does.
"""

import base64
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import tempfile

from harness import Daemon, Response, WebSocketClient


def openssl(*args, cwd=None):
    r = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed: {r.stderr.decode(errors='replace')}")
    return r.stdout


class TestCA:
    """A certificate authority of its own, in a temporary folder removed by cleanup()."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="ck-tls-")
        self.cert = os.path.join(self.dir, "ca.pem")
        self.key = os.path.join(self.dir, "ca.key")
        self.serial = 0x1000
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", self.key, "-out", self.cert, "-days", "2",
                "-subj", "/CN=CloudyKnight test CA")

    def issue(self, label, cn, dns_names, key=None):
        """(cert path, key path, serial) of a new certificate for `dns_names` (SAN), with a
        new key unless `key` (a key file) is given."""
        self.serial += 1
        cert = os.path.join(self.dir, f"{label}.pem")
        if key is None:
            key = os.path.join(self.dir, f"{label}.key")
            openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-out", key)
        csr = os.path.join(self.dir, f"{label}.csr")
        ext = os.path.join(self.dir, f"{label}.ext")
        openssl("req", "-new", "-key", key, "-out", csr, "-subj", f"/CN={cn}")
        with open(ext, "w") as f:
            f.write("subjectAltName=" + ",".join(f"DNS:{n}" for n in dns_names) + "\n"
                    "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\n"
                    "extendedKeyUsage=serverAuth\n")
        openssl("x509", "-req", "-in", csr, "-CA", self.cert, "-CAkey", self.key,
                "-set_serial", str(self.serial), "-days", "2", "-out", cert, "-extfile", ext)
        return cert, key, self.serial

    def context(self, check_hostname=True):
        ctx = ssl.create_default_context(cafile=self.cert)
        ctx.check_hostname = check_hostname
        return ctx

    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def spki_sha256(cert):
    """base64(sha256(SubjectPublicKeyInfo)) of a certificate, for Chromium's
    --ignore-certificate-errors-spki-list."""
    pub = openssl("x509", "-in", cert, "-pubkey", "-noout")
    der = subprocess.run(["openssl", "pkey", "-pubin", "-outform", "der"], input=pub,
                         capture_output=True, timeout=30, check=True).stdout
    digest = subprocess.run(["openssl", "dgst", "-sha256", "-binary"], input=der,
                            capture_output=True, timeout=30, check=True).stdout
    return base64.b64encode(digest).decode()


def serial_of(tls_sock):
    """The serial number of the certificate a TLS socket's server sent."""
    return int(tls_sock.getpeercert()["serialNumber"], 16)


def subject_cn(tls_sock):
    for rdn in tls_sock.getpeercert()["subject"]:
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


def tls_connect(port, server_name, ctx, timeout=10):
    """A TLS connection to 127.0.0.1:port, sending `server_name` as SNI (None: no SNI)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        return ctx.wrap_socket(sock, server_hostname=server_name)
    except BaseException:
        sock.close()
        raise


class ResolvedHTTPS(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 for any host name (SNI and Host are the name): curl --resolve."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class TlsDaemon(Daemon):
    """A daemon whose listener speaks TLS; its request helpers use HTTPS with `server_name`
    (SNI and Host), trusting `ca`."""

    def __init__(self, ca, server_name="example.test", **kw):
        self.ca = ca
        self.server_name = server_name
        super().__init__(**kw)

    def url(self, path):
        return f"https://{self.server_name}:{self.port}{path}"

    def request(self, method, path, headers=None, body=None, timeout=10, port=None, host=None):
        conn = ResolvedHTTPS(host or self.server_name, port or self.port, timeout=timeout,
                             context=self.ca.context())
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.reason, r.msg, r.read())
        finally:
            conn.close()

    def websocket(self, path, host=None, **kw):
        return TlsWebSocket(self, path, host=host, **kw)


class TlsWebSocket(WebSocketClient):
    """harness.WebSocketClient over TLS (SNI and Host: `host`, else the daemon's name)."""

    def __init__(self, daemon, path, host=None, timeout=10, extra_headers=()):
        name = host or daemon.server_name
        self.sock = tls_connect(daemon.port, name, daemon.ca.context(), timeout)
        self._handshake(path, f"{name}:{daemon.port}", extra_headers)

    def _handshake(self, path, host, extra_headers):
        key = base64.b64encode(os.urandom(16)).decode()
        self.key = key
        lines = [f"GET {path} HTTP/1.1", f"Host: {host}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
                 *extra_headers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        for _ in range(1000):
            if b"\r\n\r\n" in head:
                break
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            head += chunk
        head, sep, self.buf = head.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"no complete handshake response: {head[:500]!r}")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {}
        for line in header_lines:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
