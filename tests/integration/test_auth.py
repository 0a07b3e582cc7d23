"""Authentication and authorization of the control-plane API (issue 6): the admin token
printed on the first start, API tokens with scopes, users with a login session cookie and
CSRF token, login rate limiting, the audit log, and a workspace's start/stop/restart and
logs. A workspace stopped from the API stays stopped (the gateway answers 503 and does not
wake it), also across a restart of the daemon.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_auth
"""

import json
import time
import unittest

from harness import Daemon, DaemonTestCase, wait_until

API = "/monitor/api/v1"
ADMIN_TOKEN_LINE = "admin token (shown once, store it now): "
PASSWORD = "correct horse battery"


def admin_token(d):
    for line in d.stderr_text().splitlines():
        if line.startswith(ADMIN_TOKEN_LINE):
            return line[len(ADMIN_TOKEN_LINE):].strip()
    raise AssertionError("the daemon did not print an admin token on its first start\n"
                         + d.stderr_text()[-2000:])


def call(d, method, path, token=None, body=None, headers=None, cookie=None, csrf=None):
    h = dict(headers or {})
    if token:
        h["Authorization"] = f"Bearer {token}"
    if cookie:
        h["Cookie"] = f"ck_session={cookie}"
    if csrf:
        h["X-CSRF-Token"] = csrf
    data = None
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        h["Content-Type"] = "application/json"
    return d.request(method, API + path, headers=h, body=data)


def set_cookie_parts(r):
    """The Set-Cookie header as (name, value, {attribute lower-case: value})."""
    raw = r.header("Set-Cookie")
    assert raw, f"no Set-Cookie in {dict(r.headers)!r}"
    parts = [p.strip() for p in raw.split(";")]
    name, _, value = parts[0].partition("=")
    attrs = {}
    for p in parts[1:]:
        k, _, v = p.partition("=")
        attrs[k.lower()] = v
    return name, value, attrs


class AuthTestMixin:
    def assertError(self, r, status, code):
        self.assertStatus(r, status)
        self.assertEqual(r.header("Content-Type"), "application/json")
        doc = r.json()
        self.assertEqual(doc["error"]["code"], code, doc)
        self.assertTrue(doc["error"]["message"], doc)

    def assertUnauthenticated(self, r):
        self.assertError(r, 401, "unauthenticated")
        self.assertEqual(r.header("WWW-Authenticate"), "Bearer")

    def new_token(self, d, admin, name, scopes):
        r = call(d, "POST", "/tokens", admin, {"name": name, "scopes": scopes})
        self.assertStatus(r, 201)
        doc = r.json()
        self.assertEqual(set(doc), {"id", "token", "name", "scopes"})
        self.assertTrue(doc["token"].startswith("ck_"))
        return doc

    def running_pid(self, d, name):
        return d.wait_workspace(name, lambda w: w.get("status") == "running" and w.get("pid"))["pid"]

    def wait_restarted(self, d, name, before):
        """After a restart (answered 202 before the monitor acts): running again under a new
        pid, and the gateway reaches it."""
        w = d.wait_workspace(name, lambda w: w.get("status") == "running" and w.get("pid")
                             and w["pid"] != before, timeout=60, what=f"{name} to run under a new pid")
        self.wait_gateway(d, name, 200)
        return w

    def wait_gateway(self, d, name, status, timeout=30):
        return wait_until(lambda: (lambda r: r if r.status == status else None)(d.get(f"/{name}/")),
                          timeout, f"/{name}/ to answer {status}")


class AuthApiTest(AuthTestMixin, DaemonTestCase):
    daemon_options = {"fixtures": ["echo", "chatty"]}

    @classmethod
    def daemon_ready(cls):
        cls.admin = admin_token(cls.daemon)
        for name in ("echo", "chatty"):
            cls.daemon.wait_status(name, "running", timeout=60)

    def test_admin_token_works_as_bearer(self):
        r = call(self.daemon, "GET", "/auth/me", self.admin)
        self.assertStatus(r, 200)
        doc = r.json()
        self.assertTrue(doc["token"].pop("id"), doc)  # what DELETE /tokens/{id} takes
        self.assertEqual(doc, {"token": {"name": "admin", "scopes": ["read", "deploy", "admin"]}})
        # Shown once: a second line would leak it again.
        self.assertEqual(self.daemon.stderr_text().count(ADMIN_TOKEN_LINE), 1)

    def test_missing_or_wrong_credentials_are_401(self):
        d = self.daemon
        self.assertUnauthenticated(call(d, "POST", "/workspaces/echo/restart"))
        self.assertUnauthenticated(call(d, "POST", "/workspaces/echo/restart", "ck_" + "a" * 52))
        self.assertUnauthenticated(call(d, "POST", "/workspaces/echo/restart",
                                        headers={"Authorization": "Basic YWRtaW46YWRtaW4="}))
        self.assertUnauthenticated(call(d, "POST", "/workspaces/echo/stop", cookie="nonsense"))
        for path in ("/auth/me", "/tokens", "/users", "/audit"):
            self.assertUnauthenticated(call(d, "GET", path))
        # Other GETs stay readable without credentials.
        self.assertStatus(call(d, "GET", "/workspaces/echo"), 200)
        self.assertEqual(d.workspace("echo")["status"], "running")

    def test_scopes_read_cannot_stop_deploy_can(self):
        d = self.daemon
        reader = self.new_token(d, self.admin, "reader", ["read"])
        deployer = self.new_token(d, self.admin, "deployer", ["deploy"])
        self.assertEqual(deployer["scopes"], ["read", "deploy"])
        self.assertError(call(d, "POST", "/workspaces/echo/stop", reader["token"]), 403, "forbidden")
        self.assertError(call(d, "GET", "/tokens", deployer["token"]), 403, "forbidden")
        self.assertError(call(d, "POST", "/tokens", deployer["token"], {"name": "x", "scopes": ["admin"]}),
                         403, "forbidden")
        self.assertEqual(d.workspace("echo")["status"], "running")

        r = call(d, "POST", "/workspaces/echo/stop", deployer["token"])
        self.assertStatus(r, 202)
        self.assertEqual(r.json()["workspace"]["name"], "echo")
        w = d.wait_status("echo", "stopped", timeout=30)
        self.assertTrue(w.get("held"), w)
        r = d.get("/echo/")
        self.assertStatus(r, 503)
        self.assertIn("stopped", r.text())
        self.assertIn(f"{API}/workspaces/echo/start", r.text())
        r = d.get("/echo/", headers={"Accept": "application/json"})
        self.assertError(r, 503, "unavailable")
        self.assertIn("/start", r.json()["error"]["message"])
        time.sleep(1.5)  # requests came in: a sleeping workspace would be waking by now
        self.assertEqual(d.workspace("echo")["status"], "stopped")

        r = call(d, "POST", "/workspaces/echo/start", deployer["token"])
        self.assertStatus(r, 202)
        w = d.wait_status("echo", "running", timeout=60)
        self.assertNotIn("held", w)
        self.assertStatus(self.wait_gateway(d, "echo", 200), 200)

        # A revoked token no longer works.
        self.assertStatus(call(d, "DELETE", f"/tokens/{deployer['id']}", self.admin), 204)
        self.assertUnauthenticated(call(d, "POST", "/workspaces/echo/restart", deployer["token"]))
        listed = call(d, "GET", "/tokens", self.admin)
        self.assertStatus(listed, 200)
        self.assertNotIn(deployer["token"], listed.text())
        ids = {t["id"]: t for t in listed.json()["tokens"]}
        self.assertGreater(ids[deployer["id"]]["revoked_ms"], 0)
        self.assertEqual(ids[reader["id"]]["scopes"], ["read"])

    def test_restart_changes_the_pid(self):
        d = self.daemon
        before = self.running_pid(d, "echo")
        r = call(d, "POST", "/workspaces/echo/restart", self.admin)
        self.assertStatus(r, 202)
        self.assertEqual(r.json()["workspace"]["name"], "echo")
        after = self.wait_restarted(d, "echo", before)
        self.assertNotEqual(after["pid"], before)

    def test_user_login_session_and_csrf(self):
        d = self.daemon
        r = call(d, "POST", "/users", self.admin, {"name": "alice", "password": PASSWORD, "role": "member"})
        self.assertStatus(r, 201)
        self.assertEqual(r.json(), {"user": {"name": "alice", "role": "member",
                                             "created_ms": r.json()["user"]["created_ms"]}})
        self.assertError(call(d, "POST", "/users", self.admin, {"name": "alice", "password": PASSWORD}),
                         409, "already_exists")
        self.assertError(call(d, "POST", "/users", self.admin, {"name": "bob", "password": "short"}),
                         400, "invalid_argument")
        users = call(d, "GET", "/users", self.admin)
        self.assertStatus(users, 200)
        self.assertIn("alice", [u["name"] for u in users.json()["users"]])

        self.assertUnauthenticated(call(d, "POST", "/auth/login", body={"name": "alice", "password": "wrong one!"}))
        r = call(d, "POST", "/auth/login", body={"name": "alice", "password": PASSWORD})
        self.assertStatus(r, 200)
        doc = r.json()
        self.assertEqual(doc["user"], {"name": "alice", "role": "member"})
        csrf = doc["csrf"]
        self.assertTrue(csrf)
        name, session, attrs = set_cookie_parts(r)
        self.assertEqual(name, "ck_session")
        self.assertTrue(session)
        self.assertIn("httponly", attrs)
        self.assertEqual(attrs.get("samesite"), "Strict")
        self.assertEqual(attrs.get("path"), "/")
        self.assertGreater(int(attrs.get("max-age", "0")), 0)

        r = call(d, "GET", "/auth/me", cookie=session)
        self.assertStatus(r, 200)
        self.assertEqual(r.json(), {"user": {"name": "alice", "role": "member"}, "csrf": csrf})

        self.assertError(call(d, "POST", "/workspaces/echo/restart", cookie=session), 403, "forbidden")
        self.assertError(call(d, "POST", "/workspaces/echo/restart", cookie=session, csrf="x" + csrf),
                         403, "forbidden")
        before = self.running_pid(d, "echo")
        r = call(d, "POST", "/workspaces/echo/restart", cookie=session, csrf=csrf)
        self.assertStatus(r, 202)
        self.wait_restarted(d, "echo", before)
        # A member deploys and manages its own tokens (issue 13), but not users.
        r = call(d, "GET", "/tokens", cookie=session)
        self.assertStatus(r, 200)
        self.assertEqual(r.json(), {"tokens": []})
        self.assertError(call(d, "POST", "/tokens", cookie=session, csrf=csrf,
                              body={"name": "x", "scopes": ["admin"]}), 403, "forbidden")
        self.assertError(call(d, "POST", "/users", cookie=session, csrf=csrf,
                              body={"name": "mallory", "password": PASSWORD}), 403, "forbidden")

        r = call(d, "POST", "/auth/logout", cookie=session, csrf=csrf)
        self.assertStatus(r, 204)
        name, value, attrs = set_cookie_parts(r)
        self.assertEqual((name, value, attrs.get("max-age")), ("ck_session", "", "0"))
        self.assertUnauthenticated(call(d, "GET", "/auth/me", cookie=session))
        self.assertUnauthenticated(call(d, "POST", "/workspaces/echo/restart", cookie=session, csrf=csrf))

    def test_logs_tail(self):
        d = self.daemon
        self.assertStatus(d.get("/chatty/chatter?seconds=0.3&lines=3&every=100"), 200)

        def lines():
            r = call(d, "GET", "/workspaces/chatty/logs?tail=20")
            self.assertStatus(r, 200)
            got = r.json()["lines"]
            return got if any("chatty: done after" in l for l in got) else None
        got = wait_until(lines, 15, "the app's output in its log")
        self.assertLessEqual(len(got), 20)
        self.assertTrue(any(l.startswith("chatty line ") for l in got), got)
        r = call(d, "GET", "/workspaces/chatty/logs?tail=1")
        self.assertEqual(len(r.json()["lines"]), 1)
        self.assertGreater(len(call(d, "GET", "/workspaces/chatty/logs").json()["lines"]), 1)
        for bad in ("0", "5001", "x"):
            self.assertError(call(d, "GET", f"/workspaces/chatty/logs?tail={bad}"), 400, "invalid_argument")
        self.assertError(call(d, "GET", "/workspaces/nope/logs"), 404, "not_found")

    def test_audit_lists_mutations_newest_first(self):
        d = self.daemon
        tok = self.new_token(d, self.admin, "auditor-probe", ["deploy"])
        before = self.running_pid(d, "chatty")
        self.assertStatus(call(d, "POST", "/workspaces/chatty/restart", tok["token"]), 202)
        self.wait_restarted(d, "chatty", before)
        r = call(d, "GET", "/audit?limit=5", self.admin)
        self.assertStatus(r, 200)
        entries = r.json()["entries"]
        ids = [e["id"] for e in entries]
        self.assertEqual(ids, sorted(ids, reverse=True))
        self.assertEqual((entries[0]["action"], entries[0]["target"], entries[0]["principal"]),
                         ("workspace.restart", "chatty", f"token:{tok['id']}"))
        self.assertEqual((entries[1]["action"], entries[1]["target"], entries[1]["principal"]),
                         ("token.create", tok["id"], "admin"))
        self.assertEqual(entries[0]["ip"], "127.0.0.1")
        page = call(d, "GET", f"/audit?limit=1&before={entries[0]['id']}", self.admin).json()
        self.assertEqual([e["id"] for e in page["entries"]], [entries[1]["id"]])
        self.assertError(call(d, "GET", "/audit", tok["token"]), 403, "forbidden")
        self.assertError(call(d, "GET", "/audit?limit=0", self.admin), 400, "invalid_argument")

    def test_bad_requests(self):
        d = self.daemon
        self.assertError(call(d, "POST", "/tokens", self.admin, "{not json"), 400, "invalid_argument")
        self.assertError(call(d, "POST", "/tokens", self.admin, {"name": "x", "scopes": ["root"]}),
                         400, "invalid_argument")
        self.assertError(call(d, "POST", "/tokens", self.admin, {"name": "x", "scopes": ["read"], "ttl": "soon"}),
                         400, "invalid_argument")
        self.assertError(call(d, "POST", "/auth/login", body="{not json"), 400, "invalid_argument")
        self.assertError(call(d, "POST", "/users", self.admin, "[]"), 400, "invalid_argument")
        self.assertError(call(d, "POST", "/workspaces/nope/stop", self.admin), 404, "not_found")
        self.assertError(call(d, "POST", "/workspaces/Bad_Name/stop", self.admin), 400, "invalid_argument")
        self.assertError(call(d, "DELETE", "/tokens/tok_nope", self.admin), 404, "not_found")
        r = call(d, "GET", "/workspaces/echo/stop", self.admin)
        self.assertStatus(r, 405)
        self.assertEqual(d.workspace("echo")["status"], "running")


class LoginRateLimitTest(AuthTestMixin, DaemonTestCase):
    daemon_options = {}

    def test_six_wrong_passwords_are_429(self):
        d = self.daemon
        admin = admin_token(d)
        self.assertStatus(call(d, "POST", "/users", admin, {"name": "carol", "password": PASSWORD}), 201)
        statuses = []
        for _ in range(6):
            r = call(d, "POST", "/auth/login", body={"name": "carol", "password": "not the password"})
            statuses.append(r.status)
        self.assertEqual(statuses, [401] * 5 + [429])
        self.assertError(r, 429, "rate_limited")
        self.assertGreater(int(r.header("Retry-After")), 0)
        # Locked out, even with the right password, until it refills.
        r = call(d, "POST", "/auth/login", body={"name": "carol", "password": PASSWORD})
        self.assertError(r, 429, "rate_limited")


class HeldStopTest(AuthTestMixin, unittest.TestCase):
    """stop keeps a workspace stopped across a restart of the daemon; start brings it back."""

    def setUp(self):
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.stop()
        for d in self.daemons:
            d.cleanup()

    def assertStatus(self, r, status, msg=""):
        self.assertEqual(r.status, status, f"{msg} {r!r}: {r.body[:400]!r}")

    def test_stopped_stays_stopped_across_a_restart(self):
        first = Daemon(fixtures=["echo"])
        self.daemons.append(first)
        first.start()
        admin = admin_token(first)
        first.wait_status("echo", "running", timeout=60)
        self.assertStatus(call(first, "POST", "/workspaces/echo/stop", admin), 202)
        first.wait_status("echo", "stopped", timeout=30)
        self.assertStatus(first.get("/echo/"), 503)
        res = first.stop()
        self.assertEqual(res.returncode, 0)

        second = Daemon(reuse=first)
        self.daemons.append(second)
        second.start()
        self.assertNotIn(ADMIN_TOKEN_LINE, second.stderr_text())
        w = second.workspace("echo")
        self.assertEqual((w["status"], w.get("held")), ("stopped", True), w)
        self.assertStatus(second.get("/echo/"), 503)
        time.sleep(1.0)
        self.assertEqual(second.workspace("echo")["status"], "stopped")

        self.assertStatus(call(second, "POST", "/workspaces/echo/start", admin), 202)
        second.wait_status("echo", "running", timeout=60)
        self.assertStatus(self.wait_gateway(second, "echo", 200), 200)
        actions = [(e["action"], e["target"]) for e in call(second, "GET", "/audit", admin).json()["entries"]]
        self.assertEqual(actions[:2], [("workspace.start", "echo"), ("workspace.stop", "echo")])


if __name__ == "__main__":
    unittest.main()
