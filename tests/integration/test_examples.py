"""The bundled examples/ as a new user sees them: the static site, the Express app
(express installed from the npm registry by `npm ci`, up to 180 s) and the Python
app, plus the home page listing them (examples/ has no www).

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_examples
"""

import html
import json
import os
import re
import time
import unittest
from urllib.parse import urljoin, urlsplit

from harness import EXAMPLES, DaemonTestCase, wait_until

STARTING = ("creating", "initializing")
NODE_TIMEOUT = 180


def example_json(name, file):
    with open(os.path.join(EXAMPLES, name, file), encoding="utf-8") as f:
        return json.load(f)


class TestExamples(DaemonTestCase):
    daemon_options = dict(examples=["site", "hello-node", "hello-python"])

    @classmethod
    def daemon_ready(cls):
        # Catch hello-node while `npm ci` runs, and ask for it right then.
        d = cls.daemon
        cls.early = None
        w = wait_until(lambda: d.workspace("hello-node"), 30, "hello-node to be listed")
        if w["status"] in STARTING:
            t0 = time.monotonic()
            r = d.get("/hello-node/", timeout=30)
            elapsed = time.monotonic() - t0
            after = d.workspace("hello-node")
            cls.early = (w["status"], r, elapsed, after["status"])

    def test_starting_workspace_answers_503_with_retry_after(self):
        if self.early is None:
            self.fail("hello-node was already running when first listed; "
                      "could not observe the starting state")
        before, r, elapsed, after = self.early
        if r.status == 200:
            # Only acceptable if installation finished in between, not because the
            # gateway held the request until the app was ready.
            self.assertEqual(after, "running")
            self.assertLess(elapsed, 1.0, f"request held {elapsed:.1f}s while {before}; "
                                          "expected an immediate 503 + Retry-After")
        else:
            self.assertStatus(r, 503, f"while hello-node was {before}:")
            self.assertTrue(r.header("Retry-After"), "503 without Retry-After")
            self.assertLess(elapsed, 5.0)

    # -- site -------------------------------------------------------------------------
    def test_site_index_and_assets(self):
        r = self.get("/site/")
        self.assertStatus(r, 200)
        page = r.text()
        self.assertIn('href="css/style.css"', page)
        self.assertIn('src="img/logo.png"', page)
        css = self.get("/site/css/style.css")
        self.assertStatus(css, 200)
        self.assertTrue(css.header("Content-Type", "").startswith("text/css"))
        png = self.get("/site/img/logo.png")
        self.assertStatus(png, 200)
        self.assertEqual(png.header("Content-Type"), "image/png")
        with open(os.path.join(EXAMPLES, "site", "img", "logo.png"), "rb") as f:
            self.assertEqual(png.body, f.read())
        self.assertTrue(png.body.startswith(b"\x89PNG\r\n\x1a\n"))

    def test_site_every_relative_link_resolves(self):
        pages = ["/site/", "/site/docs/", "/site/docs/guide/"]
        checked = set()
        for page in pages:
            r = self.get(page)
            self.assertStatus(r, 200)
            for link in re.findall(r'(?:href|src)="([^"]+)"', r.text()):
                url = urlsplit(urljoin(page, link)).path
                if url in checked or not url.startswith("/site/"):
                    continue
                checked.add(url)
                with self.subTest(page=page, link=link):
                    self.assertStatus(self.get(url), 200)
        self.assertIn("/site/css/style.css", checked)
        self.assertIn("/site/docs/guide/", checked)

    def test_site_nested_dir_redirect(self):
        r = self.get("/site/docs")
        self.assertStatus(r, 301)
        self.assertEqual(urlsplit(r.header("Location", "")).path, "/site/docs/")

    def test_site_metadata_from_workspace_json(self):
        meta = example_json("site", "workspace.json")
        w = wait_until(lambda: self.daemon.workspace("site"), 30, "site listed")
        self.assertEqual(w["type"], "static")
        self.assertEqual(w["description"], meta["description"])
        self.assertEqual(w["icon"], meta["icon"])

    # -- hello-python -------------------------------------------------------------------
    def test_hello_python(self):
        w = self.daemon.wait_status("hello-python", "running", timeout=60)
        self.assertEqual(w["type"], "python")
        self.assertEqual(w["description"], example_json("hello-python", "workspace.json")["description"])
        r = self.get("/hello-python/")
        self.assertStatus(r, 200)
        self.assertIn('<code id="prefix">/hello-python</code>', r.text())
        api = self.get("/hello-python/api/hello")
        self.assertStatus(api, 200)
        self.assertEqual(api.json()["prefix"], "/hello-python")
        self.assertEqual(api.json()["message"], "Hello from hello-python")

    # -- hello-node ---------------------------------------------------------------------
    def test_hello_node_with_express_from_npm(self):
        w = self.daemon.wait_status("hello-node", ("running", "failed"), timeout=NODE_TIMEOUT)
        self.assertEqual(w["status"], "running", f"hello-node failed: {w.get('error')}\n"
                                                 f"{w.get('log_tail')}")
        self.assertEqual(w["type"], "node")
        self.assertEqual(w["matched"], "package.json")
        self.assertEqual(w["description"], example_json("hello-node", "package.json")["description"])
        r = self.get("/hello-node/")
        self.assertStatus(r, 200)
        self.assertIn("Hello from Express", r.text())
        self.assertIn('<code id="prefix">/hello-node</code>', r.text())
        api = self.get("/hello-node/api/hello?name=knight")
        self.assertStatus(api, 200)
        self.assertIn("application/json", api.header("Content-Type", ""))
        doc = api.json()
        self.assertEqual(doc["message"], "Hello from hello-node")
        self.assertEqual(doc["prefix"], "/hello-node")
        self.assertEqual(doc["name"], "knight")
        app = os.path.join(self.daemon.data, "run", "hello-node", "app")
        self.assertTrue(os.path.isfile(os.path.join(app, "node_modules", "express", "package.json")),
                        "express should be installed in DATA/run/hello-node/app")
        self.assertFalse(os.path.exists(os.path.join(self.daemon.ws, "hello-node", "node_modules")),
                         "node_modules must not be written into the source folder")

    # -- home page ----------------------------------------------------------------------
    def test_home_page_lists_the_examples(self):
        self.daemon.wait_status("hello-node", ("running", "failed"), timeout=NODE_TIMEOUT)
        ws = {w["name"]: w for w in self.daemon.workspaces()}
        self.assertEqual(set(ws), {"site", "hello-node", "hello-python"})
        r = self.get("/")
        self.assertStatus(r, 200)
        self.assertIn("text/html", r.header("Content-Type", ""))
        raw = r.text()
        page = re.sub(r"\s+", " ", html.unescape(raw))
        self.assertIn("node — package.json", page)
        for name, w in ws.items():
            with self.subTest(workspace=name):
                self.assertIn(name, page)
                self.assertRegex(raw, r'href="(https?://[^"/]+)?/%s/"' % re.escape(name))
                self.assertIn(f"{w['type']} — {w['matched']}", page)
                self.assertIn(w["description"], page)
                self.assertTrue(w["description"])
        self.assertIn(ws["site"]["icon"], page)


if __name__ == "__main__":
    unittest.main()
