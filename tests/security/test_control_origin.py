"""Row 3 of issue 13: the control plane on its own origin.

Every workspace used to be served on the dashboard's origin, so a page in a member's workspace,
opened by an admin, could read /auth/me's CSRF value and POST /tokens for an admin token. With
gateway.domain and gateway.control_host, the dashboard, API and login live on their own host and
each workspace on <name>.<domain>; without a control host, cookie logins are refused once there
is more than one user (tokens still work).

Hosts are sent as Host headers to 127.0.0.1 (what `curl --resolve` does), never looked up.
"""

import json
import secrets
import unittest

import harness
from harness import Daemon

DOMAIN = "ck.example.test"
CONTROL = "monitor.example.test"
ADMIN = "ck_" + secrets.token_hex(20)
JSON = {"Content-Type": "application/json"}


class ControlDaemon(Daemon):
    """The harness's own calls (health, API polling, shutdown) go to the control host, the only
    one that serves /monitor/ once gateway.control_host is set."""

    def request(self, method, path, headers=None, body=None, timeout=10, port=None):
        h = dict(headers or {})
        if path.startswith("/monitor") and not any(k.lower() == "host" for k in h):
            h["Host"] = f"{CONTROL}:{port or self.port}"
        return super().request(method, path, headers=h, body=body, timeout=timeout, port=port)


def bearer(token):
    return {"Authorization": f"Bearer {token}", **JSON}


def session_of(r):
    """The ck_session value of a Set-Cookie, and the header itself."""
    for name, value in r.headers.items():
        if name.lower() == "set-cookie" and "ck_session=" in value:
            return value.split("ck_session=", 1)[1].split(";", 1)[0], value
    return None, None


class OriginCase(unittest.TestCase):
    config = {}
    daemon_class = Daemon

    @classmethod
    def setUpClass(cls):
        cfg = harness.deep_merge({"auth": {"admin_token": ADMIN}}, cls.config)
        cls.daemon = cls.daemon_class(fixtures=["echo"], config=cfg)
        cls.daemon.start()
        cls.daemon.wait_status("echo", "running", timeout=60)

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()
        cls.daemon.cleanup()

    def req(self, method, path, host=None, headers=None, body=None):
        h = dict(headers or {})
        h["Host"] = host or f"127.0.0.1:{self.daemon.port}"
        return self.daemon.request(method, path, headers=h, body=body)

    def add_user(self, name, role="admin"):
        password = "pw-" + secrets.token_hex(8)
        r = self.req("POST", "/monitor/api/v1/users", host=self.control_host(), headers=bearer(ADMIN),
                     body=json.dumps({"name": name, "password": password, "role": role}))
        self.assertIn(r.status, (200, 201), r.text())
        return password

    def login(self, name, password, host=None):
        return self.req("POST", "/monitor/api/v1/auth/login", host=host or self.control_host(),
                        headers=JSON, body=json.dumps({"name": name, "password": password}))

    def control_host(self):
        return f"127.0.0.1:{self.daemon.port}"


class WithControlHost(OriginCase):
    config = {"gateway": {"domain": DOMAIN, "control_host": CONTROL}}
    daemon_class = ControlDaemon

    def control_host(self):
        return f"{CONTROL}:{self.daemon.port}"

    def test_workspace_host_gets_its_root_unstripped(self):
        for host in (f"echo.{DOMAIN}:{self.daemon.port}", f"ECHO.{DOMAIN.upper()}.:{self.daemon.port}"):
            r = self.req("GET", "/api/items?x=1", host=host)
            self.assertEqual(r.status, 200, f"{host}: {r.text()[:300]}")
            seen = r.json()
            self.assertEqual(seen["path"], "/api/items?x=1", host)
            prefix = {k.lower(): v for k, v in seen["headers"].items()}.get("x-forwarded-prefix", "")
            self.assertEqual(prefix, "", f"{host}: X-Forwarded-Prefix {prefix!r}")
        # A body sent by host reaches the app whole (the gateway decides who takes a body by the
        # same host routing as the request itself).
        r = self.req("POST", "/submit", host=f"echo.{DOMAIN}:{self.daemon.port}",
                     headers={"Content-Type": "text/plain"}, body=b"x" * 5000)
        self.assertEqual(r.status, 200, r.text()[:300])
        self.assertEqual(r.json()["body_len"], 5000)
        # The path routes keep working on another host.
        r = self.req("GET", "/echo/x")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.json()["path"], "/x")

    def test_unknown_workspace_host_is_a_clear_404(self):
        r = self.req("GET", "/", host=f"nope.{DOMAIN}:{self.daemon.port}")
        self.assertEqual(r.status, 404)
        self.assertIn("nope", r.text())

    def test_api_is_not_on_the_workspace_host(self):
        password = self.add_user("alice")
        r = self.login("alice", password)
        self.assertEqual(r.status, 200, r.text())
        sid, cookie = session_of(r)
        self.assertTrue(sid, f"no session cookie: {r.headers}")
        self.assertNotIn("domain=", cookie.lower(), f"the session cookie names a Domain: {cookie}")
        # The control host answers with that session ...
        me = self.req("GET", "/monitor/api/v1/auth/me", host=self.control_host(),
                      headers={"Cookie": f"ck_session={sid}"})
        self.assertEqual(me.status, 200, me.text())
        self.assertIn("csrf", me.json())
        # ... no other host does: not a workspace's, not the plain one.
        for host in (f"echo.{DOMAIN}:{self.daemon.port}", f"127.0.0.1:{self.daemon.port}",
                     f"{DOMAIN}:{self.daemon.port}"):
            r = self.req("GET", "/monitor/api/v1/auth/me", host=host,
                         headers={"Cookie": f"ck_session={sid}"})
            self.assertEqual(r.status, 404, f"{host}: {r.status} {r.text()[:300]}")
            self.assertNotIn("csrf", r.text())
            self.assertIn(CONTROL, r.text(), f"{host}: the 404 does not name the control host")
            r = self.req("POST", "/monitor/api/v1/tokens", host=host,
                         headers={"Cookie": f"ck_session={sid}", "X-CSRF-Token": me.json()["csrf"], **JSON},
                         body=json.dumps({"name": "stolen", "scopes": ["admin"]}))
            self.assertEqual(r.status, 404, f"{host}: {r.status} {r.text()[:300]}")

    def test_dashboard_on_the_control_host(self):
        r = self.req("GET", "/monitor/", host=self.control_host())
        self.assertEqual(r.status, 200)
        self.assertIn("text/html", r.headers.get("Content-Type", ""))
        r = self.req("GET", "/", host=self.control_host())
        self.assertIn(r.status, (301, 302, 307, 308))
        self.assertEqual(r.headers.get("Location"), "/monitor/")
        # Nothing else is served there: no workspace by path.
        r = self.req("GET", "/echo/x", host=self.control_host())
        self.assertEqual(r.status, 404, r.text()[:300])

    def test_api_urls_are_the_workspace_hosts(self):
        r = self.req("GET", "/monitor/api/v1/workspaces/echo", host=self.control_host())
        self.assertEqual(r.status, 200, r.text())
        self.assertEqual(r.json()["url"], f"http://echo.{DOMAIN}:{self.daemon.port}/")
        st = self.req("GET", "/monitor/api/v1/status", host=self.control_host()).json()
        self.assertEqual(st["routing"]["domain"], DOMAIN)
        self.assertEqual(st["routing"]["control_host"], CONTROL)


class SharedOrigin(OriginCase):
    """No control host: /monitor/ on the shared origin, for a single user only."""

    def test_one_user_then_two(self):
        password = self.add_user("solo")
        r = self.login("solo", password)
        self.assertEqual(r.status, 200, r.text())
        sid, cookie = session_of(r)
        self.assertNotIn("domain=", cookie.lower())
        me = self.req("GET", "/monitor/api/v1/auth/me", headers={"Cookie": f"ck_session={sid}"})
        self.assertEqual(me.status, 200, me.text())
        self.assertEqual(self.req("GET", "/monitor/").status, 200)
        # A private workspace the session may read while it is the only user's.
        r = self.req("POST", "/monitor/api/v1/workspaces", headers={**bearer(ADMIN), **JSON},
                     body=json.dumps({"name": "hush", "clone_of": "echo", "public": False}))
        self.assertEqual(r.status, 201, r.text())
        cookie_h = {"Cookie": f"ck_session={sid}"}
        harness.wait_until(lambda: self.req("GET", "/monitor/api/v1/workspaces/hush", headers=bearer(ADMIN)).status == 200,
                           30, "hush in the workspace list")
        self.assertEqual(self.req("GET", "/monitor/api/v1/workspaces/hush", headers=cookie_h).status, 200)
        # A second user: cookie logins stop, for both, with the way out in the message.
        other = self.add_user("second", role="member")
        for name, pw in (("solo", password), ("second", other)):
            r = self.login(name, pw)
            self.assertEqual(r.status, 403, f"{name}: {r.status} {r.text()}")
            self.assertIn("gateway.control_host", r.json()["error"]["message"])
            self.assertIsNone(session_of(r)[0])
        # The session from before is not accepted any more either.
        me = self.req("GET", "/monitor/api/v1/auth/me", headers={"Cookie": f"ck_session={sid}"})
        self.assertEqual(me.status, 403, me.text())
        self.assertIn("gateway.control_host", me.text())
        self.assertNotIn("csrf", me.text())
        # ...and it reads nothing private any more (a workspace's page on this origin could send it).
        self.assertEqual(self.req("GET", "/monitor/api/v1/workspaces/hush", headers=cookie_h).status, 404)
        names = [w["name"] for w in self.req("GET", "/monitor/api/v1/workspaces", headers=cookie_h).json()["workspaces"]]
        self.assertNotIn("hush", names)
        # Tokens still work.
        r = self.req("GET", "/monitor/api/v1/auth/me", headers=bearer(ADMIN))
        self.assertEqual(r.status, 200, r.text())
        r = self.req("GET", "/monitor/api/v1/users", headers=bearer(ADMIN))
        self.assertEqual(r.status, 200, r.text())
        self.assertEqual(self.req("GET", "/monitor/").status, 200)


if __name__ == "__main__":
    unittest.main()
