"""Issue 13, row 2: ownership everywhere. Member B must not see or touch member A's private
workspace through any endpoint (read, status, history, logs, start/stop/restart/run/sync,
delete, clone source, jobs, events, metrics); admins reach everything; a token made by the
admin token without the admin scope reaches public workspaces only; anonymous callers see
public workspaces and act on nothing. A hidden workspace answers 404 as if it did not exist.

Run: cd tests/security && PYTHONPATH=../integration CK_BINARY=../../build/cloudyknight \
     python3 -m unittest -v test_ownership
"""

import unittest

from harness import CONTROL, ControlHostDaemon, EventStream, wait_until
from test_auth import PASSWORD, admin_token, call, set_cookie_parts

# What an allowed act on a static workspace answers: there is no app (409); the rest 2xx.
ALLOWED = "allowed"
CALLERS = ("ann_session", "ann_token", "ben_session", "ben_token", "admin", "admin_deploy_token",
           "anonymous")

SEE = [("GET", ""), ("GET", "/status"), ("GET", "/history"), ("GET", "/logs"),
       ("GET", "/logs?tail=5")]
ACT = [("POST", "/start"), ("POST", "/stop"), ("POST", "/restart"), ("POST", "/run"),
       ("POST", "/sync")]

# Expected status per caller: private workspace of ann, then a public one of ann.
SEE_PRIVATE = {"ann_session": 200, "ann_token": 200, "ben_session": 404, "ben_token": 404,
               "admin": 200, "admin_deploy_token": 404, "anonymous": 404}
SEE_PUBLIC = {c: 200 for c in CALLERS}
ACT_PRIVATE = {"ann_session": ALLOWED, "ann_token": ALLOWED, "ben_session": 404,
               "ben_token": 404, "admin": ALLOWED, "admin_deploy_token": 404, "anonymous": 401}
ACT_PUBLIC = {c: ALLOWED for c in CALLERS}
ACT_PUBLIC["anonymous"] = 401


class OwnershipTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = ControlHostDaemon(fixtures=["static"])
        try:
            d.start()
            cls.admin = admin_token(d)
            cls.sessions = {}
            for user in ("ann", "ben"):
                r = call(d, "POST", "/users", cls.admin, {"name": user, "password": PASSWORD})
                assert r.status == 201, r.text()
                r = call(d, "POST", "/auth/login", body={"name": user, "password": PASSWORD})
                assert r.status == 200, r.text()
                cls.sessions[user] = (set_cookie_parts(r)[1], r.json()["csrf"])
            cls.tokens = {}
            for user in ("ann", "ben"):
                session, csrf = cls.sessions[user]
                r = call(d, "POST", "/tokens", cookie=session, csrf=csrf,
                         body={"name": f"{user}-cli", "scopes": ["deploy"]})
                assert r.status == 201, r.text()
                cls.tokens[user] = r.json()["token"]
            r = call(d, "POST", "/tokens", cls.admin, {"name": "ci", "scopes": ["deploy"]})
            assert r.status == 201, r.text()
            cls.admin_deploy = r.json()["token"]
            session, csrf = cls.sessions["ann"]
            for name, public in (("apriv", False), ("apub", True)):
                r = call(d, "POST", "/workspaces", cookie=session, csrf=csrf,
                         body={"name": name, "public": public})
                assert r.status == 201, r.text()
            for name in ("apriv", "apub"):
                wait_until(lambda: call(d, "GET", f"/workspaces/{name}", cls.admin).status == 200,
                           30, f"{name} to appear")
        except BaseException:
            print(d.diagnostics())
            d.stop()
            d.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.d.cleanup()

    def as_caller(self, caller, method, path, body=None):
        kw = {}
        if caller.endswith("_session"):
            session, csrf = self.sessions[caller.split("_")[0]]
            kw = {"cookie": session, "csrf": csrf}
        elif caller.endswith("_token") and caller != "admin_deploy_token":
            kw = {"token": self.tokens[caller.split("_")[0]]}
        elif caller == "admin":
            kw = {"token": self.admin}
        elif caller == "admin_deploy_token":
            kw = {"token": self.admin_deploy}
        if body is None and method == "POST":
            body = {}
        return call(self.d, method, path, body=body, **kw)

    def check(self, ws, endpoints, expected):
        for method, sub in endpoints:
            for caller in CALLERS:
                body = {"command": ["true"]} if sub == "/run" else None
                r = self.as_caller(caller, method, f"/workspaces/{ws}{sub}", body)
                want = expected[caller]
                where = f"{method} {ws}{sub} as {caller}: {r.status} {r.body[:200]!r}"
                if want == ALLOWED:
                    self.assertNotIn(r.status, (401, 403, 404), where)
                    self.assertLess(r.status, 500, where)
                else:
                    self.assertEqual(r.status, want, where)

    def test_see_matrix(self):
        self.check("apriv", SEE, SEE_PRIVATE)
        self.check("apub", SEE, SEE_PUBLIC)

    def test_act_matrix(self):
        self.check("apriv", ACT, ACT_PRIVATE)
        self.check("apub", ACT, ACT_PUBLIC)

    def test_list_shows_what_each_caller_may_see(self):
        for caller, sees in (("ann_session", True), ("ann_token", True), ("admin", True),
                             ("ben_session", False), ("ben_token", False),
                             ("admin_deploy_token", False), ("anonymous", False)):
            r = self.as_caller(caller, "GET", "/workspaces")
            self.assertEqual(r.status, 200)
            names = {w["name"] for w in r.json()["workspaces"]}
            self.assertIn("apub", names, caller)
            self.assertEqual("apriv" in names, sees, f"{caller}: {names}")

    def test_clone_of_a_hidden_workspace_is_404(self):
        for caller in ("ben_session", "ben_token", "admin_deploy_token"):
            r = self.as_caller(caller, "POST", "/workspaces",
                               {"name": f"steal-{caller.replace('_', '-')}", "clone_of": "apriv"})
            self.assertEqual(r.status, 404, f"{caller}: {r.text()}")
        r = self.as_caller("ann_session", "POST", "/workspaces", {"name": "annclone", "clone_of": "apriv"})
        self.assertEqual(r.status, 201, r.text())
        r = self.as_caller("ben_session", "POST", "/workspaces", {"name": "benclone", "clone_of": "apub"})
        self.assertEqual(r.status, 201, r.text())

    def test_delete_is_the_owners_and_admins(self):
        session, csrf = self.sessions["ann"]
        r = call(self.d, "POST", "/workspaces", cookie=session, csrf=csrf,
                 body={"name": "adel", "public": False})
        self.assertEqual(r.status, 201, r.text())
        for caller, want in (("anonymous", 401), ("ben_session", 404), ("ben_token", 404),
                             ("admin_deploy_token", 404)):
            self.assertEqual(self.as_caller(caller, "DELETE", "/workspaces/adel").status, want, caller)
        r = self.as_caller("ann_token", "DELETE", "/workspaces/adel")
        self.assertEqual(r.status, 200, r.text())

    def test_tokens_of_members_are_their_own(self):
        r = self.as_caller("ben_session", "GET", "/tokens")
        self.assertEqual(r.status, 200, r.text())
        self.assertEqual([t["name"] for t in r.json()["tokens"]], ["ben-cli"])
        r = self.as_caller("ben_session", "POST", "/tokens", {"name": "x", "scopes": ["admin"]})
        self.assertEqual(r.status, 403, r.text())
        ann_ids = [t["id"] for t in self.as_caller("ann_session", "GET", "/tokens").json()["tokens"]]
        self.assertEqual(self.as_caller("ben_session", "DELETE", f"/tokens/{ann_ids[0]}").status, 404)
        # A token does not manage tokens unless it has the admin scope.
        self.assertEqual(self.as_caller("ben_token", "GET", "/tokens").status, 403)

    def test_jobs_and_metrics_do_not_name_private_workspaces(self):
        session, csrf = self.sessions["ann"]
        r = call(self.d, "POST", "/workspaces", cookie=session, csrf=csrf,
                 body={"name": "ajob", "template": "python-http", "public": False})
        self.assertEqual(r.status, 201, r.text())
        wait_until(lambda: any(j["workspace"] == "ajob" for j in
                               self.as_caller("admin", "GET", "/jobs").json()["jobs"]), 60,
                   "a job of ajob")
        self.assertTrue(any(j["workspace"] == "ajob" for j in
                            self.as_caller("ann_session", "GET", "/jobs").json()["jobs"]))
        for caller in ("anonymous", "ben_session", "admin_deploy_token"):
            r = self.as_caller(caller, "GET", "/jobs")
            self.assertEqual(r.status, 200)
            self.assertNotIn("ajob", r.text(), caller)
            self.assertNotIn("ajob", self.as_caller(caller, "GET", "/jobs?workspace=ajob").text())
        job = next(j for j in self.as_caller("admin", "GET", "/jobs").json()["jobs"] if j["workspace"] == "ajob")
        self.assertEqual(self.as_caller("anonymous", "GET", f"/jobs/{job['id']}").status, 404)
        self.assertEqual(self.as_caller("ben_session", "GET", f"/jobs/{job['id']}").status, 404)
        self.assertEqual(self.as_caller("ann_token", "GET", f"/jobs/{job['id']}").status, 200)
        metrics = self.d.request("GET", "/monitor/metrics").text()
        self.assertNotIn("apriv", metrics)
        self.assertNotIn("ajob", metrics)

    def test_event_socket_of_another_member_hides_the_private_workspace(self):
        ben = EventStream(self.d.port, host=f"{CONTROL}:{self.d.port}", extra_headers=[f"Cookie: ck_session={self.sessions['ben'][0]}"])
        anon = EventStream(self.d.port, host=f"{CONTROL}:{self.d.port}")
        admin = EventStream(self.d.port, host=f"{CONTROL}:{self.d.port}", extra_headers=[f"Authorization: Bearer {self.admin}"])
        try:
            for s in (ben, anon):
                names = [w["name"] for w in s.hello["workspaces"]]
                self.assertNotIn("apriv", names)
                self.assertIn("apub", names)
            self.assertIn("apriv", [w["name"] for w in admin.hello["workspaces"]])
            marks = (ben.mark(), anon.mark())
            r = self.as_caller("ann_session", "POST", "/workspaces/apriv/sync")
            self.assertLess(r.status, 300, r.text())
            # Something about apub after it, so the streams have caught up when it arrives.
            self.assertEqual(self.as_caller("ann_session", "POST", "/workspaces",
                                            {"name": "apub2"}).status, 201)
            for s, m in zip((ben, anon), marks):
                s.wait_for(lambda e: e.get("workspace") == "apub2", 30, since=m, what="an event of apub2")
                self.assertEqual([e for _, e in s.select(lambda e: e.get("workspace") == "apriv", since=m)], [])
        finally:
            for s in (ben, anon, admin):
                s.close()

    def test_event_socket_of_the_owner_shows_it(self):
        ann = EventStream(self.d.port, host=f"{CONTROL}:{self.d.port}", extra_headers=[f"Cookie: ck_session={self.sessions['ann'][0]}"])
        tok = EventStream(self.d.port, host=f"{CONTROL}:{self.d.port}", extra_headers=[f"Authorization: Bearer {self.tokens['ann']}"])
        try:
            self.assertIn("apriv", [w["name"] for w in ann.hello["workspaces"]])
            self.assertIn("apriv", [w["name"] for w in tok.hello["workspaces"]])
            marks = (ann.mark(), tok.mark())
            r = self.as_caller("ann_session", "POST", "/workspaces/apriv/restart")
            self.assertEqual(r.status, 409, r.text())  # static: no app, but no event either
            self.assertEqual(self.as_caller("ann_session", "POST", "/workspaces",
                                            {"name": "apriv2", "public": False}).status, 201)
            for s, m in zip((ann, tok), marks):
                s.wait_for(lambda e: e.get("workspace") == "apriv2", 30, since=m,
                           what="an event of ann's new private workspace")
        finally:
            ann.close()
            tok.close()


if __name__ == "__main__":
    unittest.main()
