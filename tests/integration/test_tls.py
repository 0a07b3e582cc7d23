"""TLS termination in the gateway (gateway.tls, issue 14 item 4).

A throwaway CA (openssl CLI, tlsutil.TestCA) issues a certificate for example.test and
*.example.test and one for other.test; the daemon serves both (SNI), and the tests talk to it
as `curl --resolve NAME:PORT:127.0.0.1 --cacert ca.pem` would: Python's ssl module trusting
only that CA, with the name as SNI and Host.
"""

import json
import os
import socket
import ssl
import time
import unittest

from harness import (DaemonTestCase, Daemon, free_port, read_response, wait_until, ws_accept_key)
from tlsutil import (ResolvedHTTPS, TestCA, TlsDaemon, serial_of, subject_cn, tls_connect)

API = "/monitor/api/v1"
PASSWORD = "correct horse battery"
ADMIN_TOKEN_LINE = "admin token (shown once, store it now): "


class TlsCase(DaemonTestCase):
    """One TLS daemon per class over certificates of a CA of the class's own."""

    @classmethod
    def make_daemon(cls):
        raise NotImplementedError

    @classmethod
    def setUpClass(cls):
        cls.ca = TestCA()
        try:
            cls.daemon = cls.make_daemon()
            cls.daemon.start()
            cls.daemon_ready()
        except BaseException as e:
            d = getattr(cls, "daemon", None)
            diag = d.diagnostics() if d is not None and d.tmp else ""
            if d is not None:
                d.stop()
                d.cleanup()
            cls.ca.cleanup()
            if isinstance(e, (AssertionError, RuntimeError)) and diag and diag not in str(e):
                raise type(e)(f"{e}\n{diag}") from None
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.ca.cleanup()

    def https(self, host="example.test"):
        return ResolvedHTTPS(host, self.daemon.port, timeout=10, context=self.ca.context())

    def get_as(self, host, path, headers=None):
        return self.daemon.request("GET", path, headers=headers, host=host)


class TlsGatewayTest(TlsCase):
    """SNI, forwarded headers, WebSockets, redirect_http, HSTS, refusals, cookies and URLs."""

    @classmethod
    def make_daemon(cls):
        cls.example = cls.ca.issue("example", "example.test", ["example.test", "*.example.test"])
        cls.other = cls.ca.issue("other", "other.test", ["other.test"])
        cls.redirect_port = free_port()
        config = {"gateway": {
            "domain": "example.test",
            "tls": {"cert": cls.example[0], "key": cls.example[1],
                    "certs": [{"cert": cls.other[0], "key": cls.other[1]}]},
            "redirect_http": f"127.0.0.1:{cls.redirect_port}",
            "hsts": "600",
            "header_timeout": "2s",
        }}
        return TlsDaemon(cls.ca, fixtures=["echo"], config=config)

    @classmethod
    def daemon_ready(cls):
        cls.daemon.wait_status("echo", "running", timeout=60)

    # -- SNI -------------------------------------------------------------------------------
    def test_sni_picks_each_certificate(self):
        port = self.daemon.port
        ctx = self.ca.context()  # verifies the chain and the name: the right certificate came
        ctx.set_alpn_protocols(["h2", "http/1.1"])
        for name, cert in (("example.test", self.example), ("echo.example.test", self.example),
                           ("Echo.Example.Test", self.example), ("other.test", self.other)):
            with tls_connect(port, name, ctx) as s:
                self.assertEqual(serial_of(s), cert[2], name)
                self.assertEqual(s.selected_alpn_protocol(), "http/1.1", name)
                self.assertIn(s.version(), ("TLSv1.2", "TLSv1.3"))
        # No match (and no SNI at all): the default certificate.
        loose = self.ca.context(check_hostname=False)
        for name in ("unknown.test", "a.b.example.test", None):
            with tls_connect(port, name, loose) as s:
                self.assertEqual(subject_cn(s), "example.test", name)
        # TLS 1.2 alone is enough.
        only12 = self.ca.context()
        only12.maximum_version = ssl.TLSVersion.TLSv1_2
        with tls_connect(port, "other.test", only12) as s:
            self.assertEqual(s.version(), "TLSv1.2")
            self.assertEqual(serial_of(s), self.other[2])

    # -- what workspaces see ---------------------------------------------------------------------
    def test_workspace_sees_https_by_path_and_by_host(self):
        for host, path, seen in (("example.test", "/echo/p?x=1", "/p?x=1"),
                                 ("echo.example.test", "/h?y=2", "/h?y=2")):
            r = self.get_as(host, path, headers={"X-Forwarded-Proto": "http"})
            self.assertStatus(r, 200, host)
            doc = r.json()
            self.assertEqual(doc["path"], seen)
            self.assertEqual(doc["headers"].get("x-forwarded-proto"), "https", doc["headers"])
            self.assertIn("proto=https", doc["headers"].get("forwarded", ""))
            self.assertEqual(doc["headers"].get("x-forwarded-host"), f"{host}:{self.daemon.port}")

    def test_keep_alive_over_tls(self):
        conn = self.https()
        try:
            for i in range(5):
                conn.request("GET", f"/echo/k{i}")
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                self.assertEqual(json.loads(r.read())["path"], f"/k{i}")
            conn.request("GET", "/monitor/healthz")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
        finally:
            conn.close()

    def test_large_proxied_answer_over_tls_is_whole(self):
        # The answer (the echoed body, as JSON) is far larger than one TLS record and than the
        # gateway's relay buffer: every byte must arrive, on a connection that stays usable.
        body = ("0123456789abcdef" * 20000).encode()  # 320,000 bytes
        conn = self.https()
        try:
            for _ in range(2):
                conn.request("POST", "/echo/big", body=body, headers={"Content-Type": "text/plain"})
                r = conn.getresponse()
                self.assertEqual(r.status, 200)
                doc = json.loads(r.read())
                self.assertEqual(doc["body_len"], len(body))
                self.assertEqual(doc["body"].encode(), body)
        finally:
            conn.close()

    def tls_socket(self, rcvbuf=None, host="example.test"):
        """A TLS connection (SNI and Host `host`), with a small receive buffer if asked: a
        client that reads slowly fills the gateway's socket."""
        raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        raw.settimeout(15)
        raw.connect(("127.0.0.1", self.daemon.port))
        return self.ca.context().wrap_socket(raw, server_hostname=host)

    def test_slow_reader_of_a_large_answer_gets_every_byte(self):
        # The client reads nothing for a while, through a 4 KiB window: the gateway's writes
        # find its socket full and wait, then offer the same record again (OpenSSL insists).
        body = bytes(range(256)) * 1200  # 307,200 bytes, echoed back as JSON (more)
        with self.tls_socket(rcvbuf=4096) as s:
            for _ in range(2):
                s.sendall(b"POST /echo/reader HTTP/1.1\r\nHost: example.test\r\n"
                          b"Content-Type: application/octet-stream\r\n"
                          b"Content-Length: %d\r\n\r\n" % len(body) + body)
                time.sleep(1.5)
                r = read_response(s, "POST")
                self.assertEqual(r.status, 200)
                doc = json.loads(r.body)
                self.assertEqual(doc["body_len"], len(body))

    def test_pipelined_requests_over_tls_answer_in_order(self):
        # Three requests in one write: several arrive in one TLS record, or one socket read.
        with self.tls_socket() as s:
            s.sendall(b"".join(b"GET /echo/p%d HTTP/1.1\r\nHost: example.test\r\n%s\r\n"
                               % (i, b"Connection: close\r\n" if i == 2 else b"")
                               for i in range(3)))
            data = b""
            while True:
                try:
                    chunk = s.recv(65536)
                except (ssl.SSLEOFError, ConnectionResetError):
                    break
                if not chunk:
                    break
                data += chunk
        self.assertEqual(data.count(b"HTTP/1.1 200"), 3, data[:400])
        order = [data.find(b'"/p%d' % i) for i in range(3)]
        self.assertTrue(-1 not in order and order == sorted(order), order)

    def test_broken_records_close_only_their_connection(self):
        # After a good request: a record whose authentication fails, a record longer than TLS
        # allows, a record cut short by the client's close. Each ends its own connection, with
        # no answer to the bad bytes; the daemon and the other connections go on.
        bystander = self.https()
        try:
            bystander.request("GET", "/echo/before")
            r = bystander.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            for bad, close_after in ((b"\x17\x03\x03\x00\x20" + bytes(range(32)), False),
                                     (b"\x17\x03\x03\xff\xff" + b"\x00" * 64, False),
                                     (b"\x17\x03\x03\x01\x00" + b"\x00" * 16, True)):
                s = self.tls_socket()
                try:
                    s.sendall(b"GET /echo/ok HTTP/1.1\r\nHost: example.test\r\n\r\n")
                    self.assertEqual(read_response(s).status, 200)
                    raw = socket.socket(fileno=os.dup(s.fileno()))  # the TCP under the TLS
                    raw.sendall(bad)
                    if close_after:
                        raw.shutdown(socket.SHUT_WR)
                    raw.close()
                    t0 = time.monotonic()
                    with self.assertRaises((ssl.SSLError, ConnectionError, OSError, EOFError)) as cm:
                        while True:
                            if not s.recv(4096):
                                raise EOFError("closed")
                    self.assertLess(time.monotonic() - t0, 5, cm.exception)
                finally:
                    s.close()
            bystander.request("GET", "/echo/after")
            r = bystander.getresponse()
            self.assertEqual(r.status, 200)
            self.assertEqual(json.loads(r.read())["path"], "/after")
        finally:
            bystander.close()
        self.assertIsNone(self.daemon.proc.poll())

    def test_websocket_tunnel_over_tls(self):
        for host, path in (("example.test", "/echo/ws"), ("echo.example.test", "/ws")):
            ws = self.daemon.websocket(path, host=host)
            try:
                self.assertEqual(ws.status, 101, ws.headers)
                self.assertEqual(ws.headers.get("sec-websocket-accept"), ws_accept_key(ws.key))
                for text in ("over tls", "x" * 70000):
                    ws.send_text(text)
                    fin, opcode, payload, _ = ws.recv_frame()
                    self.assertEqual((fin, opcode), (True, 1))
                    self.assertEqual(payload.decode(), text)
            finally:
                ws.close()

    def test_monitor_ws_over_tls(self):
        ws = self.daemon.websocket("/monitor/ws")
        try:
            self.assertEqual(ws.status, 101, ws.headers)
            self.assertEqual(ws.headers.get("strict-transport-security"), "max-age=600")
            fin, opcode, payload, _ = ws.recv_frame()
            self.assertEqual(opcode, 1)
            hello = json.loads(payload)
            self.assertEqual(hello["type"], "hello")
            self.assertIn("echo", [w["name"] for w in hello["workspaces"]])
        finally:
            ws.close()

    def test_api_urls_are_https(self):
        port = self.daemon.port
        r = self.get_as("example.test", f"{API}/workspaces/echo")
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["url"], f"https://echo.example.test:{port}/")

    def test_session_cookie_is_host_prefixed_and_secure(self):
        token = None
        for line in self.daemon.stderr_text().splitlines():
            if line.startswith(ADMIN_TOKEN_LINE):
                token = line[len(ADMIN_TOKEN_LINE):].strip()
        self.assertTrue(token, "no admin token printed")
        json_h = {"Content-Type": "application/json"}
        r = self.daemon.request("POST", f"{API}/users", body=json.dumps(
            {"name": "tina", "password": PASSWORD, "role": "member"}),
            headers={**json_h, "Authorization": f"Bearer {token}"})
        self.assertStatus(r, 201)
        r = self.daemon.request("POST", f"{API}/auth/login",
                                body=json.dumps({"name": "tina", "password": PASSWORD}), headers=json_h)
        self.assertStatus(r, 200)
        raw = r.header("Set-Cookie")
        parts = [p.strip() for p in raw.split(";")]
        name, _, session = parts[0].partition("=")
        self.assertEqual(name, "__Host-ck_session", raw)
        self.assertIn("Secure", parts)
        self.assertIn("Path=/", parts)
        self.assertFalse(any(p.lower().startswith("domain") for p in parts), raw)
        me = self.get_as("example.test", f"{API}/auth/me", headers={"Cookie": f"__Host-ck_session={session}"})
        self.assertStatus(me, 200)
        self.assertEqual(me.json()["user"]["name"], "tina")
        # Over TLS the plain name is not a session: a cookie a workspace on a sibling host could
        # plant (Domain=example.test) never logs anyone in.
        plain = self.get_as("example.test", f"{API}/auth/me", headers={"Cookie": f"ck_session={session}"})
        self.assertStatus(plain, 401)
        # Apps never see it.
        r = self.get_as("example.test", "/echo/c", headers={"Cookie": f"__Host-ck_session={session}; a=b"})
        self.assertEqual(r.json()["headers"].get("cookie"), "a=b")

    # -- HSTS ------------------------------------------------------------------------------
    def test_hsts_on_every_answer(self):
        for host, path, status in (("example.test", "/", (200, 404)),
                                   ("example.test", "/nope/", 404),
                                   ("example.test", "/echo/x", 200),
                                   ("echo.example.test", "/", 200),
                                   ("example.test", "/monitor/healthz", 200),
                                   ("example.test", f"{API}/workspaces", 200)):
            r = self.get_as(host, path)
            self.assertStatus(r, status, path)
            self.assertEqual(r.header("Strict-Transport-Security"), "max-age=600", f"{host}{path}")

    # -- redirect_http ---------------------------------------------------------------------
    def plain(self, port, data):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(data)
            return read_response(s)

    def test_redirect_http_answers_308(self):
        port, rport = self.daemon.port, self.redirect_port
        cases = ((f"example.test:{rport}", "/echo/a?b=c", f"https://example.test:{port}/echo/a?b=c"),
                 ("Echo.Example.Test.", "/", f"https://echo.example.test:{port}/"),
                 ("127.0.0.1", "/monitor/healthz", f"https://127.0.0.1:{port}/monitor/healthz"),
                 ("[::1]:80", "/x", f"https://[::1]:{port}/x"))
        for host, target, location in cases:
            r = self.plain(rport, f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            self.assertStatus(r, 308, host)
            self.assertEqual(r.header("Location"), location)
            self.assertIsNone(r.header("Strict-Transport-Security"), "HSTS is never sent over http")
        r = self.plain(rport, f"POST /form HTTP/1.1\r\nHost: example.test\r\nContent-Length: 3\r\n\r\nabc".encode())
        self.assertStatus(r, 308)
        self.assertEqual(r.header("Location"), f"https://example.test:{port}/form")
        for bad in (b"GET / HTTP/1.0\r\n\r\n", b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
                    b"GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n", b"GET / HTTP/1.1\r\nHost: \r\n\r\n",
                    b"GET http://evil.test/ HTTP/1.1\r\nHost: example.test\r\n\r\n",
                    b"GET * HTTP/1.1\r\nHost: example.test\r\n\r\n"):
            r = self.plain(rport, bad)
            self.assertStatus(r, 400, bad)
            self.assertIsNone(r.header("Location"), bad)
        # And the redirect target is real.
        self.assertStatus(self.get_as("example.test", "/monitor/healthz"), 200)

    # -- what is refused -------------------------------------------------------------------
    def test_plain_http_to_the_tls_port_fails_cleanly(self):
        r = self.plain(self.daemon.port, b"GET / HTTP/1.1\r\nHost: example.test\r\n\r\n")
        self.assertStatus(r, 400)
        self.assertIn(b"https://", r.body)
        # Garbage too, and the daemon lives on.
        with socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10) as s:
            s.sendall(b"\x16\x03\x01\x00\x05hello-not-tls" * 3)
            s.settimeout(10)
            try:
                while s.recv(4096):
                    pass
            except ConnectionResetError:
                pass
        self.assertIsNone(self.daemon.proc.poll())
        self.assertStatus(self.get_as("example.test", "/monitor/healthz"), 200)

    def test_slow_handshake_is_cut_by_header_timeout(self):
        """header_timeout is 2 s here: a client that connects and stalls, silent or in the
        middle of its ClientHello, is closed soon after (the watchdog ticks once a second)."""
        for first in (b"", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"):
            with socket.create_connection(("127.0.0.1", self.daemon.port), timeout=15) as s:
                t0 = time.monotonic()
                if first:
                    s.sendall(first)
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    data = b""
                elapsed = time.monotonic() - t0
                self.assertEqual(data, b"", first)
                self.assertGreater(elapsed, 1.5, first)
                self.assertLess(elapsed, 6, first)
        self.assertStatus(self.get_as("example.test", "/monitor/healthz"), 200)


class TlsReloadTest(TlsCase):
    """Certificate files replaced while the daemon runs (gateway.tls_reload), and no HSTS
    unless configured."""

    @classmethod
    def make_daemon(cls):
        cls.live_cert = os.path.join(cls.ca.dir, "live.pem")
        cls.live_key = os.path.join(cls.ca.dir, "live.key")
        cert, key, cls.first_serial = cls.ca.issue("v1", "example.test", ["example.test", "*.example.test"])
        cls.install(cert, key)
        config = {"gateway": {"tls": {"cert": cls.live_cert, "key": cls.live_key},
                              "tls_reload": "200ms"}}
        return TlsDaemon(cls.ca, fixtures=["static"], config=config)

    @classmethod
    def install(cls, cert, key):
        with open(key, "rb") as f:
            key_data = f.read()
        with open(cert, "rb") as f:
            cert_data = f.read()
        with open(cls.live_key, "wb") as f:
            f.write(key_data)
        with open(cls.live_cert, "wb") as f:
            f.write(cert_data)

    def serial_now(self):
        with tls_connect(self.daemon.port, "example.test", self.ca.context()) as s:
            return serial_of(s)

    def wait_log(self, needle, since, timeout=10):
        def seen():
            return needle in self.daemon.stderr_text()[since:]
        wait_until(seen, timeout, f"'{needle}' in the daemon's log")

    def test_hsts_off_by_default(self):
        r = self.daemon.get("/static/index.html")
        self.assertStatus(r, 200)
        self.assertIsNone(r.header("Strict-Transport-Security"))

    def test_reload_keeps_open_connections_and_refuses_broken_files(self):
        conn = self.https()
        try:
            conn.request("GET", "/monitor/healthz")
            r = conn.getresponse()
            r.read()
            self.assertEqual(r.status, 200)
            old = serial_of(conn.sock)
            self.assertEqual(self.serial_now(), old)

            # A renewed certificate: new connections get it, the open one goes on.
            cert, key, new = self.ca.issue("v2", "renewed.example.test", ["example.test", "*.example.test"])
            self.install(cert, key)
            wait_until(lambda: self.serial_now() == new, 15, "the renewed certificate")
            for i in range(3):
                conn.request("GET", f"/static/index.html?{i}")
                r = conn.getresponse()
                r.read()
                self.assertEqual(r.status, 200)
            self.assertEqual(serial_of(conn.sock), old)
        finally:
            conn.close()

        # A half-written certificate: the current one stays, and the log names the file.
        mark = len(self.daemon.stderr_text())
        with open(cert, "rb") as f:
            pem = f.read()
        with open(self.live_cert, "wb") as f:
            f.write(pem[: len(pem) // 2])
        self.wait_log("TLS certificates not reloaded", mark)
        self.assertIn(self.live_cert, self.daemon.stderr_text()[mark:])
        self.assertEqual(self.serial_now(), new)

        # A certificate whose key is another: refused as well.
        mark = len(self.daemon.stderr_text())
        mismatched, _, _ = self.ca.issue("v3", "example.test", ["example.test"])
        with open(mismatched, "rb") as f:
            data = f.read()
        with open(self.live_cert, "wb") as f:
            f.write(data)
        self.wait_log("does not belong to the certificate", mark)
        self.assertEqual(self.serial_now(), new)
        r = self.daemon.get("/monitor/healthz")
        self.assertStatus(r, 200)

        # Fixed: retried at the change, and served.
        cert4, key4, fourth = self.ca.issue("v4", "example.test", ["example.test", "*.example.test"])
        self.install(cert4, key4)
        wait_until(lambda: self.serial_now() == fourth, 15, "the fixed certificate")


class TlsStartupErrorsTest(unittest.TestCase):
    """Unusable certificate files stop the daemon at start with one line naming the file."""

    @classmethod
    def setUpClass(cls):
        cls.ca = TestCA()
        cls.cert, cls.key, _ = cls.ca.issue("good", "example.test", ["example.test"])
        _, cls.other_key, _ = cls.ca.issue("otherkey", "example.test", ["example.test"])
        cls.garbage = os.path.join(cls.ca.dir, "garbage.pem")
        with open(cls.garbage, "w") as f:
            f.write("not a certificate\n")

    @classmethod
    def tearDownClass(cls):
        cls.ca.cleanup()

    def start_fails(self, tls, needles):
        d = Daemon(config={"gateway": {"tls": tls}})
        try:
            d.spawn()
            try:
                rc = d.proc.wait(30)
            except Exception:
                self.fail(f"the daemon kept running with tls={tls}\n{d.diagnostics()}")
            err = d.stderr_text()
            self.assertNotEqual(rc, 0, err)
            lines = [line for line in err.splitlines() if all(n in line for n in needles)]
            self.assertTrue(lines, f"no line with {needles} in:\n{err}")
        finally:
            d.stop()
            d.cleanup()

    def test_missing_file(self):
        missing = os.path.join(self.ca.dir, "missing.pem")
        self.start_fails({"cert": missing, "key": self.key}, [missing, "cannot read", "check the path"])

    def test_key_not_matching(self):
        self.start_fails({"cert": self.cert, "key": self.other_key},
                         [self.other_key, "does not belong to the certificate", self.cert])

    def test_unreadable_pem(self):
        self.start_fails({"cert": self.garbage, "key": self.key}, [self.garbage, "no PEM certificate"])
        self.start_fails({"cert": self.cert, "key": self.garbage}, [self.garbage, "no PEM private key"])


if __name__ == "__main__":
    unittest.main()
