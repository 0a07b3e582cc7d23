"""Private workspaces (issue 6): a workspace whose workspace.json, or whose creator, says
"public": false is reachable through the gateway only with a dashboard login session (its
owner's or an admin's; one nobody owns, because it came from storage, is for admins only since
issue 13), is left off the home page, and is invisible to anonymous API reads and to other
members. The session cookie never reaches an app.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_private
"""

import json
import os
import unittest
import urllib.parse

from harness import CONTROL, ControlHostDaemon, Daemon, EventStream, wait_until
from test_auth import PASSWORD, admin_token, call, set_cookie_parts

API = "/monitor/api/v1"


class PrivateWorkspaceTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = ControlHostDaemon(fixtures=["echo", ("echo", "secret"), ("static", "hidden")])
        d.prepare()
        for name in ("secret", "hidden"):
            with open(os.path.join(d.ws, name, "workspace.json"), "w") as f:
                json.dump({"public": False}, f)
        try:
            d.start()
            cls.admin = admin_token(d)
            cls.sessions = {}
            for user, role in (("ann", "member"), ("ben", "member"), ("root", "admin")):
                r = call(d, "POST", "/users", cls.admin, {"name": user, "password": PASSWORD, "role": role})
                assert r.status == 201, r.text()
                r = call(d, "POST", "/auth/login", body={"name": user, "password": PASSWORD})
                assert r.status == 200, r.text()
                cls.sessions[user] = (set_cookie_parts(r)[1], r.json()["csrf"])
            cls.wait_running("secret", 60)
        except BaseException:
            print(d.diagnostics())
            d.stop()
            d.cleanup()
            raise

    @classmethod
    def wait_running(cls, name, timeout):
        # Private: the anonymous harness helpers cannot see it.
        wait_until(lambda: call(cls.d, "GET", f"/workspaces/{name}", token=cls.admin).json().get("status") == "running",
                   timeout, f"{name} to be running")

    @classmethod
    def tearDownClass(cls):
        res = cls.d.stop()
        cls.d.cleanup()
        assert res.returncode == 0, res

    def get(self, path, user=None, accept="application/json", cookies=""):
        headers = {"Accept": accept}
        cookie = cookies
        if user:
            cookie = (cookie + "; " if cookie else "") + f"ck_session={self.sessions[user][0]}"
        if cookie:
            headers["Cookie"] = cookie
        return self.d.request("GET", path, headers=headers)

    def test_anonymous_clients_are_refused(self):
        r = self.get("/secret/")
        self.assertEqual(r.status, 401, r.text())
        err = r.json()["error"]
        self.assertEqual(err["code"], "unauthenticated")
        self.assertIn("log in", err["message"])
        self.assertEqual(self.get("/hidden/").status, 401)
        self.assertEqual(self.get("/hidden/index.html", cookies="ck_session=forged").status, 401)
        # A browser is sent to the dashboard's login, which brings it back.
        r = self.get("/secret/some/page?q=1", accept="text/html")
        self.assertEqual(r.status, 302)
        self.assertEqual(r.header("Location"), "/monitor/?next=" + urllib.parse.quote("/secret/some/page?q=1", safe=""))
        # A public workspace is unaffected.
        self.assertEqual(self.get("/echo/").status, 200)

    def test_a_session_opens_it_and_the_app_never_sees_the_cookie(self):
        # Nobody owns secret (it came from storage): admins only, not any member (issue 13).
        self.assertEqual(self.get("/secret/path", user="ann").status, 403)
        r = self.get("/secret/path", user="root", cookies="theme=dark")
        self.assertEqual(r.status, 200, r.text())
        seen = {k.lower(): v for k, v in r.json()["headers"].items()}
        self.assertEqual(seen.get("cookie"), "theme=dark", "the app must get its own cookies only")
        r = self.get("/echo/", user="ann")
        self.assertNotIn("cookie", {k.lower() for k in r.json()["headers"]})
        self.assertEqual(self.get("/hidden/", user="root", accept="text/html").status, 200)
        self.assertEqual(self.get("/hidden/", user="ben", accept="text/html").status, 403)

    def test_home_page_leaves_private_workspaces_out(self):
        page = self.get("/", accept="text/html").text()
        self.assertIn('data-workspace="echo"', page)
        self.assertNotIn("secret", page)
        self.assertNotIn('data-workspace="hidden"', page)
        self.assertNotIn('href="/hidden/"', page)
        self.assertRegex(page, r"\d private workspaces: log in")

    def test_anonymous_api_reads_do_not_show_them(self):
        names = [w["name"] for w in call(self.d, "GET", "/workspaces").json()["workspaces"]]
        self.assertEqual(names, ["echo"])  # (anns, made by another test, is private too)
        self.assertEqual(call(self.d, "GET", "/workspaces/secret").status, 404)
        self.assertEqual(call(self.d, "GET", "/workspaces/secret/status").status, 404)
        self.assertEqual(call(self.d, "GET", "/workspaces/secret/logs").status, 404)
        r = call(self.d, "GET", "/workspaces", token=self.admin)
        self.assertLessEqual({"echo", "hidden", "secret"}, {w["name"] for w in r.json()["workspaces"]})
        self.assertIn("Cookie", r.header("Vary", ""))
        # A member does not see an unowned private workspace; an admin does.
        self.assertEqual(call(self.d, "GET", "/workspaces/secret", cookie=self.sessions["ben"][0]).status, 404)
        r = call(self.d, "GET", "/workspaces/secret", cookie=self.sessions["root"][0])
        self.assertEqual(r.status, 200)
        self.assertIs(r.json()["public"], False)

    def test_a_users_private_workspace_opens_for_them_and_admins_only(self):
        session, csrf = self.sessions["ann"]
        r = call(self.d, "POST", "/workspaces", cookie=session, csrf=csrf,
                 body={"name": "anns", "template": "python-http", "public": False})
        self.assertEqual(r.status, 201, r.text())
        self.assertIs(r.json()["public"], False)
        self.wait_running("anns", 90)
        wait_until(lambda: self.get("/anns/", user="ann").status == 200, 30, "anns to answer ann")
        r = self.get("/anns/", user="ben")
        self.assertEqual(r.status, 403, r.text())
        self.assertEqual(r.json()["error"]["code"], "forbidden")
        self.assertEqual(self.get("/anns/", user="ben", accept="text/html").status, 403)
        self.assertEqual(self.get("/anns/", user="root").status, 200)
        self.assertEqual(self.get("/anns/").status, 401)
        entries = call(self.d, "GET", "/audit", token=self.admin).json()["entries"]
        create = [e for e in entries if e["action"] == "workspace.create" and e["target"] == "anns"]
        self.assertTrue(create and create[0]["detail"].get("owner"), create)

    def test_the_event_stream_shows_them_to_those_who_may_see_them(self):
        host = f"{CONTROL}:{self.d.port}"
        anon = EventStream(self.d.port, host=host)
        signed = EventStream(self.d.port, host=host,
                             extra_headers=[f"Cookie: ck_session={self.sessions['root'][0]}"])
        member = EventStream(self.d.port, host=host,
                             extra_headers=[f"Cookie: ck_session={self.sessions['ben'][0]}"])
        try:
            self.assertNotIn("secret", [w["name"] for w in member.hello["workspaces"]])
            self.assertNotIn("secret", [w["name"] for w in anon.hello["workspaces"]])
            self.assertIn("echo", [w["name"] for w in anon.hello["workspaces"]])
            self.assertIn("secret", [w["name"] for w in signed.hello["workspaces"]])
            mark = anon.mark()
            r = call(self.d, "POST", "/workspaces/secret/restart", token=self.admin)
            self.assertEqual(r.status, 202, r.text())
            signed.wait_for(lambda e: e.get("workspace") == "secret" and e.get("type") == "status", 30,
                            what="a status event of secret")
            r = call(self.d, "POST", "/workspaces/echo/restart", token=self.admin)
            anon.wait_for(lambda e: e.get("workspace") == "echo", 30, since=mark, what="an event of echo")
            self.assertEqual([e for _, e in anon.select(lambda e: e.get("workspace") == "secret", since=mark)], [])
            self.assertEqual([e for _, e in member.select(lambda e: e.get("workspace") == "secret")], [])
        finally:
            anon.close()
            signed.close()
            member.close()
        self.wait_running("secret", 60)

    def test_a_logout_closes_it_again(self):
        r = call(self.d, "POST", "/auth/login", body={"name": "root", "password": PASSWORD})
        session, csrf = set_cookie_parts(r)[1], r.json()["csrf"]
        headers = {"Accept": "application/json", "Cookie": f"ck_session={session}"}
        self.assertEqual(self.d.request("GET", "/secret/", headers=headers).status, 200)
        self.assertEqual(call(self.d, "POST", "/auth/logout", cookie=session, csrf=csrf).status, 204)
        # Decisions are remembered for at most 5 s.
        wait_until(lambda: self.d.request("GET", "/secret/", headers=headers).status == 401, 10,
                   "the logged-out session to be refused")


if __name__ == "__main__":
    unittest.main()
