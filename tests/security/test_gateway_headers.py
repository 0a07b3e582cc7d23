"""What the gateway passes between a client and an app (issue 13, rows 12, 13 and 3's cookie).

Row 12: `Connection: X-Forwarded-For, ...` stripped the gateway's own forwarded headers (they
were set before hop-by-hop stripping), and a client's X-Real-IP / Forwarded reached the app.
Now the gateway sets X-Forwarded-For (the peer's address; a client's list is replaced, there
are no trusted proxies), X-Forwarded-Proto/-Host/-Prefix, X-Real-IP and Forwarded itself,
after stripping, and drops every other client-sent forwarding header.
Row 13: only the first Cookie header lost the dashboard's session cookie; a second one
carried `ck_session` to the app. Every Cookie header is filtered now.
Row 3 (cookie part): an app's `Set-Cookie: ck_session=...` reached the browser on the
dashboard's origin. Such Set-Cookie headers are dropped.

The upstream is tests/security/fixtures/recorder (it answers with the raw headers it got).

Run: cd tests/security && PYTHONPATH=../integration CK_BINARY=../../build/cloudyknight \
     python3 -m unittest -v test_gateway_headers
"""

import unittest

from harness import DaemonTestCase, wait_until
from wire_util import RECORDER, SESSION_COOKIES, header_values

SPOOF = "203.0.113.9"
FORWARDING = ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host", "x-forwarded-prefix",
              "x-real-ip", "forwarded")


class TestGatewayHeaders(DaemonTestCase):
    daemon_options = dict(fixtures=[(RECORDER, "rec")])

    @classmethod
    def daemon_ready(cls):
        wait_until(lambda: cls.daemon.get("/rec/ready").status == 200, 60, "the recorder to answer")

    def seen(self, target=b"/rec/h", headers=(), method="GET"):
        """The raw headers the app got for a request sent byte for byte."""
        r = self.daemon.raw_target(target, method=method, headers=headers)
        self.assertStatus(r, 200)
        return r.json()["raw_headers"]

    def one(self, raw, name):
        values = header_values(raw, name)
        self.assertEqual(len(values), 1, f"{name}: expected exactly one, the app got {values!r}")
        return values[0]

    def assert_own_forwarded(self, raw):
        host = f"127.0.0.1:{self.daemon.port}"
        self.assertEqual(self.one(raw, "X-Forwarded-For"), "127.0.0.1")
        self.assertEqual(self.one(raw, "X-Real-IP"), "127.0.0.1")
        self.assertEqual(self.one(raw, "X-Forwarded-Proto"), "http")
        self.assertEqual(self.one(raw, "X-Forwarded-Host"), host)
        self.assertEqual(self.one(raw, "X-Forwarded-Prefix"), "/rec")
        fwd = self.one(raw, "Forwarded")
        self.assertIn("for=127.0.0.1", fwd)
        self.assertIn("proto=http", fwd)

    # -- row 12 ------------------------------------------------------------------
    def test_plain_request_gets_the_gateways_forwarded_headers(self):
        self.assert_own_forwarded(self.seen())

    def test_connection_header_cannot_strip_forwarded_headers(self):
        listed = "X-Forwarded-For, X-Forwarded-Prefix, X-Forwarded-Host, X-Forwarded-Proto, " \
                 "X-Real-IP, Forwarded"
        for conn in (listed, listed.lower(), "keep-alive, " + listed, "close, " + listed):
            with self.subTest(connection=conn):
                self.assert_own_forwarded(self.seen(headers=[f"Connection: {conn}"]))

    def test_connection_header_split_over_two_lines(self):
        raw = self.seen(headers=["Connection: X-Forwarded-For", "Connection: X-Real-IP, Forwarded"])
        self.assert_own_forwarded(raw)

    def test_client_forwarding_headers_are_replaced(self):
        spoofed = [
            f"X-Forwarded-For: {SPOOF}",
            f"X-Forwarded-For: {SPOOF}, 10.0.0.1",
            "X-Forwarded-Proto: https",
            "X-Forwarded-Host: evil.example",
            "X-Forwarded-Prefix: /evil",
            "X-Forwarded-Port: 443",
            "X-Forwarded-Server: evil.example",
            "X-Forwarded-Ssl: on",
            f"X-Real-IP: {SPOOF}",
            f"x-real-ip: {SPOOF}",
            f"Forwarded: for={SPOOF};proto=https;host=evil.example",
            f"Forwarded: for=\"[2001:db8::1]\"",
        ]
        raw = self.seen(headers=spoofed)
        self.assert_own_forwarded(raw)
        for k, v in raw:
            self.assertNotIn(SPOOF, v, f"the client's {k} reached the app: {v!r}")
            self.assertNotIn("evil", v, f"the client's {k} reached the app: {v!r}")
            self.assertNotIn("2001:db8", v, f"the client's {k} reached the app: {v!r}")
        names = {k.lower() for k, _ in raw}
        for gone in ("x-forwarded-port", "x-forwarded-server", "x-forwarded-ssl"):
            self.assertNotIn(gone, names)

    def test_underscore_spellings_do_not_reach_the_app(self):
        """CGI-style servers read X_Real_IP and X-Real-IP as the same variable."""
        raw = self.seen(headers=[f"X_Real_IP: {SPOOF}", f"X_Forwarded_For: {SPOOF}",
                                 f"x_forwarded_host: evil.example"])
        self.assert_own_forwarded(raw)
        for k, v in raw:
            self.assertNotIn(SPOOF, v, f"{k} reached the app")
            self.assertNotIn("evil", v, f"{k} reached the app")

    def test_forwarded_for_is_the_peer_not_the_clients_list(self):
        r = self.get("/rec/xff", headers={"X-Forwarded-For": "198.51.100.4"})
        self.assertStatus(r, 200)
        self.assertEqual(header_values(r.json()["raw_headers"], "X-Forwarded-For"), ["127.0.0.1"])

    def test_other_headers_still_pass(self):
        raw = self.seen(headers=["X-Custom: kept", "Authorization: Bearer app-token"])
        self.assertEqual(self.one(raw, "X-Custom"), "kept")
        self.assertEqual(self.one(raw, "Authorization"), "Bearer app-token")

    # -- row 13 ------------------------------------------------------------------
    def assert_no_session(self, raw):
        for k, v in raw:
            self.assertNotIn("SESSIONVALUE", v, f"the session cookie reached the app in {k}: {v!r}")
            if k.lower() == "cookie":
                for pair in v.split(";"):
                    name = pair.split("=", 1)[0].strip()
                    self.assertNotIn(name, SESSION_COOKIES, f"{k}: {v!r}")

    def cookies_seen(self, raw):
        pairs = []
        for v in header_values(raw, "Cookie"):
            pairs += [p.strip() for p in v.split(";") if p.strip()]
        return pairs

    def test_first_cookie_header_filtered(self):
        raw = self.seen(headers=["Cookie: a=1; ck_session=SESSIONVALUE1; b=2"])
        self.assert_no_session(raw)
        self.assertEqual(self.cookies_seen(raw), ["a=1", "b=2"])

    def test_second_cookie_header_filtered(self):
        raw = self.seen(headers=["Cookie: a=1", "Cookie: ck_session=SESSIONVALUE2; b=2"])
        self.assert_no_session(raw)
        self.assertEqual(self.cookies_seen(raw), ["a=1", "b=2"])

    def test_every_cookie_header_and_both_names_filtered(self):
        raw = self.seen(headers=[
            "Cookie: a=1",
            "cookie: __Host-ck_session=SESSIONVALUE3",
            "COOKIE: b=2; ck_session=SESSIONVALUE4; __Host-ck_session=SESSIONVALUE5",
            "Cookie: ck_session=SESSIONVALUE6",
        ])
        self.assert_no_session(raw)
        self.assertEqual(self.cookies_seen(raw), ["a=1", "b=2"])

    def test_only_session_cookies_means_no_cookie_header(self):
        raw = self.seen(headers=["Cookie: ck_session=SESSIONVALUE7",
                                 "Cookie: __Host-ck_session=SESSIONVALUE8"])
        self.assert_no_session(raw)
        self.assertEqual(header_values(raw, "Cookie"), [])

    def test_lookalike_names_are_kept(self):
        raw = self.seen(headers=["Cookie: ck_session_pref=1; my_ck_session=2"])
        self.assertEqual(self.cookies_seen(raw), ["ck_session_pref=1", "my_ck_session=2"])

    def test_upgrade_request_cookies_filtered(self):
        """Upgrade requests take the tunnel path: the same filtering applies."""
        r = self.daemon.raw_target(b"/rec/ws", headers=[
            "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Cookie: a=1",
            "Cookie: ck_session=SESSIONVALUE9", f"X-Real-IP: {SPOOF}",
            "Connection: X-Forwarded-For"])
        self.assertStatus(r, 200)  # the recorder declines the upgrade and answers
        raw = r.json()["raw_headers"]
        self.assert_no_session(raw)
        self.assertEqual(self.one(raw, "X-Forwarded-For"), "127.0.0.1")
        self.assertEqual(self.one(raw, "X-Real-IP"), "127.0.0.1")

    # -- row 3 (cookies) ------------------------------------------------------------
    def assert_no_session_set(self, r):
        cookies = r.headers.get_all("Set-Cookie") or []
        for c in cookies:
            first = c.split(";", 1)[0]
            name, eq, value = first.partition("=")
            name = name.strip()
            self.assertNotIn(name.lower(), [n.lower() for n in SESSION_COOKIES],
                             f"the app set the dashboard's cookie: {c!r}")
            self.assertFalse(name == "" and any(value.strip().startswith(n) for n in SESSION_COOKIES),
                             f"a nameless cookie a browser sends as the session: {c!r}")
            self.assertFalse(not eq and name in SESSION_COOKIES,
                             f"a value-only cookie a browser sends as the session: {c!r}")
        self.assertIn("app_pref=dark; Path=/", cookies, "the app's own cookies still pass")

    def test_app_cannot_set_the_session_cookie(self):
        r = self.get("/rec/set-cookie")
        self.assertStatus(r, 200)
        self.assert_no_session_set(r)

    def test_app_cannot_set_the_session_cookie_on_head(self):
        r = self.daemon.request("HEAD", "/rec/set-cookie")
        self.assertStatus(r, 200)
        self.assert_no_session_set(r)

    def test_app_cannot_set_the_session_cookie_when_declining_an_upgrade(self):
        r = self.daemon.raw_target(b"/rec/set-cookie", headers=[
            "Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="])
        self.assertStatus(r, 200)
        self.assert_no_session_set(r)


if __name__ == "__main__":
    unittest.main()
