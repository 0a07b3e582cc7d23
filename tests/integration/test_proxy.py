"""Reverse proxy behaviour: keep-alive, WebSocket passthrough, 502/504 from the
upstream, 413/431 limits.

The daemon runs with gateway.request_timeout: 2s and gateway.max_body: 1k
(gateway.max_header keeps its 32k default).

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_proxy
"""

import http.client
import json
import os
import re
import time
import unittest

from harness import DaemonTestCase, read_response, wait_until, ws_accept_key


class TestProxy(DaemonTestCase):
    daemon_options = dict(fixtures=["echo"],
                          config={"gateway": {"request_timeout": "2s", "max_body": "1k"}})

    @classmethod
    def daemon_ready(cls):
        cls.daemon.wait_status("echo", "running", timeout=60)

    # -- response framing ----------------------------------------------------------
    def test_chunked_answer_split_inside_the_framing(self):
        # The first read after the headers ends between a chunk's CRLF and the next chunk's
        # size line (next dev's pages arrive so): the gateway reads on instead of closing.
        for _ in range(3):
            r = self.daemon.get("/echo/chunked-pause")
            self.assertStatus(r, 200)
            self.assertEqual(r.body, b"hello world")
        self.assertNotIn("upstream failed mid-response", self.daemon.stderr_text())

    # -- keep-alive ------------------------------------------------------------------
    def test_keep_alive_many_requests_one_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=10)
        try:
            conn.connect()
            first = conn.sock
            steps = [("GET", "/echo/one", None), ("GET", "/monitor/healthz", None),
                     ("POST", "/echo/two", b'{"k": "v"}'), ("GET", "/echo/three?q=1", None),
                     ("GET", "/echo", None), ("HEAD", "/echo/four", None),
                     ("GET", "/echo/five", None)]
            for i, (method, path, body) in enumerate(steps):
                conn.request(method, path, body=body)
                r = conn.getresponse()
                data = r.read()
                self.assertIn(r.status, (200, 301), f"step {i} {method} {path}: {r.status}")
                if path.startswith("/echo/") and method == "GET":
                    self.assertEqual(json.loads(data)["path"], path[len("/echo"):])
                if method == "POST":
                    self.assertEqual(json.loads(data)["body"], body.decode())
                self.assertIs(conn.sock, first,
                              f"the gateway closed the connection after step {i} ({method} {path})")
        finally:
            conn.close()

    def test_keep_alive_raw_sequential(self):
        with self.daemon.connect() as s:
            for i in range(5):
                s.sendall(f"GET /echo/r{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                r = read_response(s)
                self.assertStatus(r, 200)
                self.assertEqual(r.json()["path"], f"/r{i}")

    # -- WebSocket -------------------------------------------------------------------
    def test_websocket_echo_through_gateway(self):
        ws = self.daemon.websocket("/echo/ws")
        try:
            self.assertEqual(ws.status, 101, ws.headers)
            self.assertEqual(ws.headers.get("upgrade", "").lower(), "websocket")
            self.assertEqual(ws.headers.get("sec-websocket-accept"), ws_accept_key(ws.key))
            for text in ("hello knight", "ünïcødé ✓", "x" * 300):
                ws.send_text(text)
                fin, opcode, payload, masked = ws.recv_frame()
                self.assertTrue(fin)
                self.assertEqual(opcode, 1)
                self.assertFalse(masked, "server-to-client frames must not be masked")
                self.assertEqual(payload.decode("utf-8"), text)
        finally:
            ws.close()

    def test_websocket_large_binary_ping_and_close(self):
        ws = self.daemon.websocket("/echo/ws")
        try:
            self.assertEqual(ws.status, 101)
            blob = os.urandom(100_000)
            ws.send(2, blob)
            fin, opcode, payload, _ = ws.recv_frame()
            self.assertEqual((fin, opcode), (True, 2))
            self.assertEqual(payload, blob)
            ws.send(9, b"are you there")
            fin, opcode, payload, _ = ws.recv_frame()
            self.assertEqual((opcode, payload), (10, b"are you there"))
            ws.send(8, b"\x03\xe8")
            fin, opcode, payload, _ = ws.recv_frame()
            self.assertEqual(opcode, 8)
            self.assertEqual(payload[:2], b"\x03\xe8")
        finally:
            ws.close()

    def test_websocket_concurrent_sessions(self):
        socks = [self.daemon.websocket("/echo/ws") for _ in range(4)]
        try:
            for i, ws in enumerate(socks):
                self.assertEqual(ws.status, 101)
                ws.send_text(f"session {i}")
            for i, ws in enumerate(socks):
                self.assertEqual(ws.recv_frame()[2], f"session {i}".encode())
        finally:
            for ws in socks:
                ws.close()

    # -- upstream failures -----------------------------------------------------------
    def test_upstream_closes_without_answer_is_502(self):
        t0 = time.monotonic()
        r = self.get("/echo/close", timeout=15)
        self.assertStatus(r, 502)
        self.assertIn("text/html", r.header("Content-Type", ""))
        self.assertLess(time.monotonic() - t0, 10)
        self.assertStatus(self.get("/echo/after-close"), 200)

    def test_upstream_silent_is_504_after_request_timeout(self):
        t0 = time.monotonic()
        r = self.get("/echo/slow", timeout=30)
        elapsed = time.monotonic() - t0
        self.assertStatus(r, 504)
        self.assertGreaterEqual(elapsed, 1.5, "answered before gateway.request_timeout (2s)")
        self.assertLess(elapsed, 10, "took far longer than gateway.request_timeout (2s)")
        self.assertStatus(self.get("/echo/after-slow"), 200)

    # -- limits ------------------------------------------------------------------------
    def test_body_within_max_body_passes(self):
        body = b"a" * 900
        r = self.daemon.request("POST", "/echo/upload", body=body)
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["body_len"], 900)

    def test_body_over_max_body_is_413(self):
        r = self.daemon.request("POST", "/echo/upload", body=b"a" * 4096)
        self.assertStatus(r, 413)

    def test_chunked_body_over_max_body_is_413(self):
        chunks = b"".join(b"200\r\n" + b"b" * 0x200 + b"\r\n" for _ in range(8)) + b"0\r\n\r\n"
        r = self.daemon.raw(b"POST /echo/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n" + chunks, method="POST")
        self.assertStatus(r, 413)

    def test_chunked_body_within_max_body_passes(self):
        chunks = b"100\r\n" + b"c" * 0x100 + b"\r\n" + b"80\r\n" + b"d" * 0x80 + b"\r\n0\r\n\r\n"
        r = self.daemon.raw(b"POST /echo/upload HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n" + chunks, method="POST")
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["body"], "c" * 0x100 + "d" * 0x80)

    def test_header_within_max_header_passes(self):
        r = self.get("/echo/h", headers={"X-Big": "v" * 4000})
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["headers"]["x-big"], "v" * 4000)

    def test_huge_header_is_431(self):
        r = self.daemon.raw(b"GET /echo/h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            b"X-Huge: " + b"h" * 64 * 1024 + b"\r\n\r\n")
        self.assertStatus(r, 431)

    def test_many_headers_over_max_header_is_431(self):
        headers = b"".join(f"X-H{i}: ".encode() + b"z" * 500 + b"\r\n" for i in range(100))
        r = self.daemon.raw(b"GET /echo/h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                            + headers + b"\r\n")
        self.assertStatus(r, 431)

    def test_still_serving_after_limits(self):
        self.daemon.request("POST", "/echo/upload", body=b"a" * 4096)
        self.assertStatus(self.get("/echo/ok"), 200)
        self.assertStatus(self.get("/monitor/healthz"), 200)



class TestWorkersShareConnections(DaemonTestCase):
    """Each gateway worker accepts on its own SO_REUSEPORT listener, and the kernel spreads
    connections by a hash of their addresses (64 connections over two workers split 38/26 as
    often as 32/32). A worker that accepts while another serves two fewer hands the connection
    over, so every worker serves about as many; cloudyknight_gateway_worker_connections shows it."""

    daemon_options = dict(fixtures=["echo"], config={"gateway": {"threads": 3}})

    @classmethod
    def daemon_ready(cls):
        cls.daemon.wait_status("echo", "running", timeout=60)

    def per_worker(self):
        body = self.daemon.get("/monitor/metrics").body.decode()
        found = re.findall(r'^cloudyknight_gateway_worker_connections\{worker="(\d+)"\} (\d+)$', body, re.M)
        return {int(w): int(v) for w, v in found}

    def test_connections_are_spread_evenly_and_all_answered(self):
        conns = []
        try:
            for round_ in range(3):
                for i in range(64):
                    c = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=10)
                    conns.append(c)
                    c.request("GET", f"/echo/?c={round_}-{i}")
                    r = c.getresponse()
                    self.assertEqual(r.status, 200)
                    r.read()
                for c in conns:  # each connection is still served after its hand-over
                    c.request("GET", "/echo/again")
                    r = c.getresponse()
                    self.assertEqual(r.status, 200)
                    r.read()
                counts = self.per_worker()
                self.assertEqual(sorted(counts), [0, 1, 2], counts)
                # The scrape's own connection is one more somewhere.
                self.assertGreaterEqual(sum(counts.values()), len(conns), counts)
                self.assertLessEqual(max(counts.values()) - min(counts.values()), 3, counts)
        finally:
            for c in conns:
                c.close()
        # Closed connections are given back.
        wait_until(lambda: sum(self.per_worker().values()) <= 1, timeout=10,
                   what="the workers' connection counts going back down")


if __name__ == "__main__":
    unittest.main()
