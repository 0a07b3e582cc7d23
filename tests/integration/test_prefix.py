"""Issue 14 items 1-2: host routing and the per-workspace prefix mode, end to end.

Two copies of the echo fixture (it answers with the path it received and its environment):
`strip` (the default) and `keep` (workspace.json "prefix": "keep"), reached by path and by
host (gateway.domain, a Host header; never DNS). Also CK_BASE_PATH / BASE_URL in the apps'
environment, the API's `url` and `prefix`, the home page's links, and the 404 for an unknown
<name>.<domain>.
"""

import os
import unittest

import harness
from harness import Daemon

DOMAIN = "example.test"


class PrefixCase(unittest.TestCase):
    config = {"gateway": {"domain": DOMAIN}}

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(fixtures=[("echo", "strip"), ("echo", "keep")], config=cls.config)
        cls.daemon.prepare()
        harness.write_json(os.path.join(cls.daemon.ws, "keep", "workspace.json"), {"prefix": "keep"})
        try:
            cls.daemon.start()
            cls.daemon.wait_status("strip", "running", timeout=60)
            cls.daemon.wait_status("keep", "running", timeout=60)
        except BaseException:
            cls.daemon.stop()
            cls.daemon.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.daemon.stop()
        cls.daemon.cleanup()

    def get(self, path, host=None):
        h = {"Host": host or f"127.0.0.1:{self.daemon.port}"}
        return self.daemon.request("GET", path, headers=h)

    def echo(self, path, host=None):
        r = self.get(path, host)
        self.assertEqual(r.status, 200, f"{host} {path}: {r.text()[:300]}")
        return r.json()

    def host(self, name):
        return f"{name}.{DOMAIN}:{self.daemon.port}"


class DomainRouting(PrefixCase):
    def test_strip_by_path_and_by_host(self):
        doc = self.echo("/strip/api/x?q=1")
        self.assertEqual(doc["path"], "/api/x?q=1")
        self.assertEqual(doc["headers"].get("x-forwarded-prefix"), "/strip")
        self.assertEqual(self.echo("/api/x?q=1", self.host("strip"))["path"], "/api/x?q=1")
        self.assertEqual(self.echo("/strip/x", self.host("strip"))["path"], "/strip/x")

    def test_keep_by_path(self):
        doc = self.echo("/keep/api/x?q=1")
        self.assertEqual(doc["path"], "/keep/api/x?q=1")
        self.assertEqual(doc["headers"].get("x-forwarded-prefix"), "/keep")
        r = self.get("/keep")
        self.assertEqual(r.status, 301)
        self.assertEqual(r.header("Location"), "/keep/")

    def test_keep_by_host(self):
        h = self.host("keep")
        self.assertEqual(self.echo("/", h)["path"], "/keep/")
        self.assertEqual(self.echo("/src/main.js?t=1", h)["path"], "/keep/src/main.js?t=1")
        self.assertEqual(self.echo("/keep/@vite/client", h)["path"], "/keep/@vite/client")
        self.assertEqual(self.echo("/keep", h)["path"], "/keep")
        self.assertEqual(self.echo("/", h.upper())["path"], "/keep/")

    def test_environment(self):
        port = self.daemon.port
        env = self.echo("/strip/")["env"]
        self.assertEqual(env.get("CK_BASE_PATH"), "/strip/")
        self.assertEqual(env.get("BASE_URL"), f"http://strip.{DOMAIN}:{port}/")
        env = self.echo("/", self.host("keep"))["env"]
        self.assertEqual(env.get("CK_BASE_PATH"), "/keep/")
        self.assertEqual(env.get("BASE_URL"), f"http://keep.{DOMAIN}:{port}/")

    def test_api_url_and_prefix(self):
        port = self.daemon.port
        w = self.daemon.workspace("keep")
        self.assertEqual(w["url"], f"http://keep.{DOMAIN}:{port}/")
        self.assertEqual(w["prefix"], "keep")
        w = self.daemon.workspace("strip")
        self.assertEqual(w["prefix"], "strip")
        # BASE_URL is the API's url.
        self.assertEqual(self.echo("/strip/")["env"]["BASE_URL"], w["url"])

    def test_home_page_links_to_the_hosts(self):
        r = self.get("/", f"{DOMAIN}:{self.daemon.port}")
        self.assertEqual(r.status, 200)
        self.assertIn(f'href="http://keep.{DOMAIN}:{self.daemon.port}/"', r.text())
        self.assertIn(f'href="http://strip.{DOMAIN}:{self.daemon.port}/"', r.text())

    def test_unknown_host_is_a_clear_404(self):
        r = self.get("/", self.host("nope"))
        self.assertEqual(r.status, 404)
        self.assertIn("text/html", r.header("Content-Type", ""))
        self.assertIn("no workspace named &#39;nope&#39;", r.text().replace("'", "&#39;"))
        self.assertIn(f'href="http://{DOMAIN}:{self.daemon.port}/"', r.text())


class PathOnlyRouting(PrefixCase):
    """No domain and no public URL: relative links, BASE_URL from the listen address."""
    config = {}

    def test_environment_and_url(self):
        port = self.daemon.port
        env = self.echo("/keep/x")["env"]
        self.assertEqual(env.get("CK_BASE_PATH"), "/keep/")
        self.assertEqual(env.get("BASE_URL"), f"http://127.0.0.1:{port}/keep/")
        self.assertEqual(self.daemon.workspace("keep")["url"], "/keep/")
        self.assertEqual(self.echo("/keep/x?y")["path"], "/keep/x?y")
        self.assertEqual(self.echo("/strip/x?y")["path"], "/x?y")


class PublicUrl(PrefixCase):
    config = {"gateway": {"public_url": "https://ck.example.com/"}}

    def test_public_url_gives_base_url_and_api_url(self):
        env = self.echo("/strip/")["env"]
        self.assertEqual(env.get("BASE_URL"), "https://ck.example.com/strip/")
        self.assertEqual(self.daemon.workspace("strip")["url"], "https://ck.example.com/strip/")


if __name__ == "__main__":
    unittest.main()
