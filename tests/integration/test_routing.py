"""Gateway routing: redirects, prefix stripping, X-Forwarded-*, root files, the home
page, unknown workspaces, and the shapes of the workspace API.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_routing
"""

import html
import re
import unittest
from urllib.parse import urlsplit

from harness import DaemonTestCase, find_app_process, pid_alive, wait_until


def location_path(r):
    """path?query of a Location header (relative, or absolute on any host)."""
    loc = r.header("Location")
    if loc is None:
        return None
    parts = urlsplit(loc)
    return parts.path + ("?" + parts.query if parts.query else "")


def normalized_text(body):
    """HTML body with entities decoded and whitespace collapsed."""
    return re.sub(r"\s+", " ", html.unescape(body.decode("utf-8", "replace")))


class TestRoutingWithoutWww(DaemonTestCase):
    daemon_options = dict(fixtures=["echo", "static"])

    @classmethod
    def daemon_ready(cls):
        cls.daemon.wait_status("echo", "running", timeout=60)
        wait_until(lambda: cls.daemon.get("/static/").status == 200, 30, "static to be served")

    # -- redirects ----------------------------------------------------------
    def test_get_without_slash_redirects_301(self):
        r = self.get("/echo")
        self.assertStatus(r, 301)
        self.assertEqual(location_path(r), "/echo/")

    def test_head_without_slash_redirects_301(self):
        r = self.daemon.request("HEAD", "/echo")
        self.assertStatus(r, 301)
        self.assertEqual(location_path(r), "/echo/")

    def test_redirect_keeps_query(self):
        r = self.get("/echo?a=1&b=two%20words")
        self.assertStatus(r, 301)
        self.assertEqual(location_path(r), "/echo/?a=1&b=two%20words")

    def test_post_without_slash_redirects_308(self):
        r = self.daemon.request("POST", "/echo?x=1", body=b"payload",
                                headers={"Content-Type": "text/plain"})
        self.assertStatus(r, 308)
        self.assertEqual(location_path(r), "/echo/?x=1")

    def test_static_workspace_without_slash_redirects(self):
        r = self.get("/static")
        self.assertStatus(r, 301)
        self.assertEqual(location_path(r), "/static/")

    # -- proxying -------------------------------------------------------------
    def test_prefix_is_stripped(self):
        r = self.get("/echo/some/deep/path?x=1&y=%2F")
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["path"], "/some/deep/path?x=1&y=%2F")

    def test_workspace_root_is_slash(self):
        r = self.get("/echo/")
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["path"], "/")
        self.assertEqual(r.json()["method"], "GET")

    def test_forwarded_headers(self):
        r = self.get("/echo/hdr", headers={"Host": "example.test:8443"})
        self.assertStatus(r, 200)
        h = r.json()["headers"]
        self.assertEqual(h.get("x-forwarded-prefix"), "/echo")
        self.assertEqual(h.get("x-forwarded-for"), "127.0.0.1")
        self.assertEqual(h.get("x-forwarded-proto"), "http")
        self.assertEqual(h.get("x-forwarded-host"), "example.test:8443")

    def test_forwarded_for_replaces_the_clients_list(self):
        """No trusted proxies: a client's X-Forwarded-For is replaced by the peer's address
        (issue 13, row 12; tests/security/test_gateway_headers.py)."""
        r = self.get("/echo/xff", headers={"X-Forwarded-For": "203.0.113.7"})
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["headers"].get("x-forwarded-for"), "127.0.0.1")

    def test_methods_and_bodies_are_forwarded(self):
        for method in ("POST", "PUT", "PATCH", "DELETE"):
            with self.subTest(method=method):
                body = f'{{"method": "{method}", "n": 42}}'.encode()
                r = self.daemon.request(method, "/echo/items/7", body=body,
                                        headers={"Content-Type": "application/json"})
                self.assertStatus(r, 200)
                doc = r.json()
                self.assertEqual(doc["method"], method)
                self.assertEqual(doc["path"], "/items/7")
                self.assertEqual(doc["body"], body.decode())
                self.assertEqual(doc["headers"].get("content-type"), "application/json")

    def test_custom_request_headers_are_forwarded(self):
        r = self.get("/echo/h", headers={"X-Custom-Thing": "abc 123", "Cookie": "a=b"})
        self.assertStatus(r, 200)
        h = r.json()["headers"]
        self.assertEqual(h.get("x-custom-thing"), "abc 123")
        self.assertEqual(h.get("cookie"), "a=b")

    # -- root -----------------------------------------------------------------
    def test_root_file_without_www_is_404(self):
        r = self.get("/style.css")
        self.assertStatus(r, 404)
        self.assertNotIn(b"STATIC-CSS-MARKER", r.body)

    def test_home_page_lists_every_workspace(self):
        ws = self.daemon.workspaces()
        names = {w["name"] for w in ws}
        self.assertTrue({"echo", "static"} <= names, names)
        r = self.get("/")
        self.assertStatus(r, 200)
        self.assertIn("text/html", r.header("Content-Type", ""))
        page = normalized_text(r.body)
        raw = r.text()
        for w in ws:
            with self.subTest(workspace=w["name"]):
                self.assertIn(w["name"], page)
                self.assertRegex(raw, r'href="(https?://[^"/]+)?/%s/"' % re.escape(w["name"]))
                self.assertIn(f"{w['type']} — {w['matched']}", page)
                self.assertIn(w["status"], page)
                if w.get("description"):
                    self.assertIn(w["description"], page)
        self.assertIn("python — app.py", page)
        self.assertIn("Static test fixture", page)

    # -- unknown / monitor ------------------------------------------------------
    def test_unknown_workspace_is_404_html_naming_it(self):
        for path in ("/nosuch-ws/", "/nosuch-ws/deep/file.txt"):
            with self.subTest(path=path):
                r = self.get(path)
                self.assertStatus(r, 404)
                self.assertIn("text/html", r.header("Content-Type", ""))
                self.assertIn("nosuch-ws", r.text())

    def test_healthz(self):
        r = self.get("/monitor/healthz")
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["status"], "ok")

    # -- API shapes -------------------------------------------------------------
    def test_api_list_shape(self):
        status, doc = self.daemon.api("/workspaces")
        self.assertEqual(status, 200)
        self.assertIn("workspaces", doc)
        self.assertIn("next", doc)
        self.assertIsNone(doc["next"])
        self.assertEqual(sorted(w["name"] for w in doc["workspaces"]), ["echo", "static"])

    def test_api_process_workspace_shape(self):
        w = self.daemon.workspace("echo")
        self.assertEqual(w["name"], "echo")
        self.assertEqual(w["type"], "python")
        self.assertEqual(w["matched"], "app.py")
        self.assertEqual(w["status"], "running")
        self.assertEqual(w["url"], "/echo/")
        self.assertIs(w["public"], True)
        for key in ("activity", "description", "icon"):
            self.assertIn(key, w)
        self.assertIsInstance(w["port"], int)
        self.assertIsInstance(w["pid"], int)
        self.assertIsInstance(w["restarts"], int)
        self.assertTrue(pid_alive(w["pid"]), "W.pid is not a live host pid")
        self.assertIsNotNone(find_app_process(w["pid"], "app.py"),
                             f"no `app.py` process at or below W.pid {w['pid']}")

    def test_api_static_workspace_shape(self):
        w = self.daemon.workspace("static")
        self.assertEqual(w["type"], "static")
        self.assertEqual(w["url"], "/static/")
        self.assertEqual(w["description"], "Static test fixture")
        self.assertIsInstance(w["restarts"], int)

    def test_api_unknown_workspace_404(self):
        status, doc = self.daemon.api("/workspaces/nosuch")
        self.assertEqual(status, 404)
        self.assertEqual(doc["error"]["code"], "not_found")
        self.assertIsInstance(doc["error"]["message"], str)


class TestRoutingWithWww(DaemonTestCase):
    daemon_options = dict(fixtures=["www", "static"])

    @classmethod
    def daemon_ready(cls):
        wait_until(lambda: cls.daemon.get("/").status == 200 and
                   b"WWW-HOME-MARKER" in cls.daemon.get("/").body, 30, "www at /")

    def test_root_serves_www_index(self):
        r = self.get("/")
        self.assertStatus(r, 200)
        self.assertIn(b"WWW-HOME-MARKER", r.body)
        self.assertIn("text/html", r.header("Content-Type", ""))

    def test_root_file_served_from_www(self):
        r = self.get("/style.css")
        self.assertStatus(r, 200)
        self.assertIn(b"WWW-CSS-MARKER", r.body)
        self.assertTrue(r.header("Content-Type", "").startswith("text/css"), r.header("Content-Type"))
        r = self.get("/robots.txt")
        self.assertStatus(r, 200)
        self.assertIn(b"WWW-ROBOTS-MARKER", r.body)

    def test_missing_root_file_is_404(self):
        r = self.get("/missing-file.txt")
        self.assertStatus(r, 404)

    def test_other_workspaces_still_routed(self):
        r = self.get("/static/")
        self.assertStatus(r, 200)
        self.assertIn(b"STATIC-INDEX-MARKER", r.body)
        self.assertNotIn(b"WWW-HOME-MARKER", r.body)


if __name__ == "__main__":
    unittest.main()
