"""Gateway connection hardening (issue 13, rows 9 and 10).

Row 9: unread bodies to routes that take none, half-sent headers holding connections (and
file descriptors) forever, WebSocket tunnels without a deadline.
Row 10: ambiguous body framing (Transfer-Encoding not only chunked, both TE and CL) must be
refused with 400 before anything reaches the app.

Run: cd tests/security && PYTHONPATH=../integration CK_BINARY=../../build/cloudyknight \
     python3 -m unittest -v test_gateway_limits
"""

import hashlib
import json
import os
import resource
import socket
import subprocess
import time
import unittest

from harness import rss_kib, Daemon, DaemonTestCase, read_response, wait_until

MiB = 1 << 20


def closed_by_peer(sock, timeout):
    """True once the peer closed `sock` (EOF or reset) within `timeout` seconds."""
    sock.settimeout(timeout)
    try:
        for _ in range(1000):
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


class TestFramingAndBodies(DaemonTestCase):
    daemon_options = dict(fixtures=["echo"], config={"gateway": {"ws_idle_timeout": "2s"}})

    @classmethod
    def daemon_ready(cls):
        cls.daemon.wait_status("echo", "running", timeout=60)

    def app_requests(self, marker):
        """How many requests with `marker` in the path the echo app logged."""
        log = os.path.join(self.daemon.data, "logs", "echo.log")
        try:
            with open(log, errors="replace") as f:
                return sum(1 for line in f if marker in line)
        except OSError:
            return 0

    def send_raw(self, data):
        with self.daemon.connect() as s:
            s.sendall(data)
            r = read_response(s)
            return r, closed_by_peer(s, 5)

    # -- row 10 ------------------------------------------------------------------------
    def test_gzip_chunked_is_refused(self):
        body = b"5\r\nhello\r\n0\r\n\r\n"
        r, closed = self.send_raw(b"POST /echo/te-gzip HTTP/1.1\r\nHost: x\r\n"
                                  b"Transfer-Encoding: gzip, chunked\r\n\r\n" + body)
        self.assertEqual(r.status, 400, r)
        self.assertTrue(closed, "the connection must be closed after the 400")
        self.assertEqual(self.app_requests("/te-gzip"), 0, "the app must receive nothing")

    def test_te_and_cl_is_refused(self):
        body = b"5\r\nhello\r\n0\r\n\r\n"
        for name, head in (("cl-te", b"Content-Length: 15\r\nTransfer-Encoding: chunked\r\n"),
                           ("te-cl", b"Transfer-Encoding: chunked\r\nContent-Length: 15\r\n"),
                           ("te-gzip-cl", b"Transfer-Encoding: gzip\r\nContent-Length: 15\r\n"),
                           ("chunked-gzip", b"Transfer-Encoding: chunked, gzip\r\n")):
            with self.subTest(name):
                r, closed = self.send_raw(f"POST /echo/{name} HTTP/1.1\r\nHost: x\r\n".encode()
                                          + head + b"\r\n" + body)
                self.assertEqual(r.status, 400, r)
                self.assertTrue(closed)
        time.sleep(0.5)  # the app logs asynchronously; nothing may have arrived
        for name in ("cl-te", "te-cl", "te-gzip-cl", "chunked-gzip"):
            self.assertEqual(self.app_requests(f"/{name} "), 0, f"{name} reached the app")

    def test_differing_content_lengths_are_refused(self):
        r, closed = self.send_raw(b"POST /echo/cl-list HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Length: 5, 6\r\n\r\nhello!")
        self.assertEqual(r.status, 400, r)
        self.assertTrue(closed)

    def test_chunked_body_still_reaches_the_app(self):
        r, _ = self.send_raw(b"POST /echo/chunked-ok HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["body"], "hello")

    def test_large_upload_arrives_intact(self):
        blob = os.urandom(4 * MiB).hex().encode()  # 8 MiB the echo app returns as text
        r = self.daemon.request("POST", "/echo/upload", body=blob, timeout=60)
        self.assertEqual(r.status, 200, r)
        doc = r.json()
        self.assertEqual(doc["body_len"], len(blob))
        self.assertEqual(hashlib.sha256(doc["body"].encode()).hexdigest(),
                         hashlib.sha256(blob).hexdigest())

    # -- row 9: bodies nobody takes ------------------------------------------------------
    def test_bodies_to_a_404_are_not_buffered(self):
        pid = self.daemon.proc.pid
        before = rss_kib(pid)
        chunk = b"x" * MiB
        for i in range(4):
            with self.daemon.connect(timeout=30) as s:
                s.sendall(f"POST /no-such-workspace-{i}/ HTTP/1.1\r\nHost: x\r\n"
                          f"Content-Length: {50 * MiB}\r\n\r\n".encode())
                try:
                    for _ in range(50):
                        s.sendall(chunk)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # answered and closed before the body: what we want
        grown = (rss_kib(pid) - before) / 1024
        self.assertLess(grown, 30, f"RSS grew by {grown:.0f} MB for 4 x 50 MiB bodies to a 404")

    def test_404_with_body_is_answered_and_closed(self):
        with self.daemon.connect() as s:
            s.sendall(b"POST /no-such-workspace/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
            r = read_response(s)
            self.assertEqual(r.status, 404)
            self.assertTrue(closed_by_peer(s, 5))

    # -- row 9: WebSocket tunnels --------------------------------------------------------
    def test_silent_websocket_tunnel_is_closed(self):
        ws = self.daemon.websocket("/echo/ws")
        try:
            self.assertEqual(ws.status, 101)
            ws.send_text("hi")
            ws.recv_frame()
            t0 = time.monotonic()
            self.assertTrue(closed_by_peer(ws.sock, 10), "a silent tunnel stayed open")
            self.assertLess(time.monotonic() - t0, 2 + 3)  # ws_idle_timeout + watchdog tick
        finally:
            ws.close()


class TestSlowHeaders(unittest.TestCase):
    """70 half-sent headers under a low open-file limit and a small connection cap."""

    def setUp(self):
        self.daemon = Daemon(config={"gateway": {"header_timeout": "1s", "max_connections": 20,
                                                 "max_connections_per_ip": 200}})
        self.daemon.prepare()
        orig = subprocess.Popen

        def low_nofile():
            resource.setrlimit(resource.RLIMIT_NOFILE, (96, 96))

        def popen(*a, **kw):
            kw["preexec_fn"] = low_nofile
            return orig(*a, **kw)
        subprocess.Popen = popen
        try:
            self.daemon.start()
        finally:
            subprocess.Popen = orig

    def tearDown(self):
        res = self.daemon.stop()
        self.daemon.cleanup()
        self.assertEqual(res.returncode, 0)

    def test_half_sent_headers_do_not_lock_everyone_out(self):
        socks = []
        try:
            for _ in range(70):
                s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=5)
                try:
                    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                except OSError:
                    pass
                socks.append(s)
            t0 = time.monotonic()
            for s in socks:
                self.assertTrue(closed_by_peer(s, max(0.1, t0 + 1 + 3 - time.monotonic())),
                                "a half-open connection outlived header_timeout")
            r = wait_until(lambda: self.daemon.get("/monitor/healthz", timeout=5), 5,
                           "a new client to be served")
            self.assertEqual(r.status, 200)
        finally:
            for s in socks:
                s.close()


if __name__ == "__main__":
    unittest.main()
