"""Creating workspaces through the API (issue 6, item 3): from a template in templates/, as a
clone of another workspace (source only: node_modules and .env stay behind) or empty; deleting
one moves it to DATA/trash. GET /templates lists the templates. Process runtime; node-express
installs express from the npm registry (allow 120 s).

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_templates
"""

import json
import os
import time
import unittest

from harness import DaemonTestCase, wait_until
from test_auth import AuthTestMixin, admin_token, call

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TEMPLATES = os.path.join(REPO, "templates")


class TemplatesTest(AuthTestMixin, DaemonTestCase):
    daemon_options = {"config": {"templates": TEMPLATES}}

    @classmethod
    def daemon_ready(cls):
        cls.admin = admin_token(cls.daemon)

    def create(self, body, token=None):
        return call(self.daemon, "POST", "/workspaces", token or self.admin, body)

    def wait_answers(self, name, needle, timeout):
        """Polls GET /<name>/ through the gateway until it answers 200 with `needle`."""
        last = []

        def check():
            r = self.daemon.get(f"/{name}/", timeout=10)
            last[:] = [r.status, r.text()[:300]]
            return r.status == 200 and needle in r.text()

        t0 = time.monotonic()
        wait_until(check, timeout, f"/{name}/ answering 200 with {needle!r} (last: {last})")
        return time.monotonic() - t0

    def test_list_templates(self):
        r = call(self.daemon, "GET", "/templates")
        self.assertStatus(r, 200)
        got = {t["name"]: t for t in r.json()["templates"]}
        self.assertEqual(set(got), {"static", "node-express", "python-http", "vite-react",
                                    "next-app"})
        self.assertEqual(got["static"]["type"], "static")
        self.assertEqual(got["node-express"]["type"], "node")
        self.assertEqual(got["python-http"]["type"], "python")
        self.assertEqual(got["vite-react"]["type"], "node")
        self.assertEqual(got["next-app"]["type"], "node")
        for t in got.values():
            self.assertTrue(t["description"], t)

    def test_create_static_from_template(self):
        r = self.create({"name": "t-static", "template": "static"})
        self.assertStatus(r, 201)
        doc = r.json()
        self.assertEqual((doc["name"], doc["type"], doc["status"], doc["url"]),
                         ("t-static", "static", "creating", "/t-static/"))
        self.wait_answers("t-static", "Static site", 30)
        self.assertTrue(os.path.isfile(os.path.join(self.daemon.ws, "t-static", "style.css")))

    def test_create_python_from_template(self):
        r = self.create({"name": "t-python", "template": "python-http"})
        self.assertStatus(r, 201)
        self.assertEqual(r.json()["type"], "python")
        self.daemon.wait_workspace("t-python", lambda w: w.get("status") == "running", timeout=60)
        self.wait_answers("t-python", "Hello from Python", 30)

    def test_create_node_express_from_template(self):
        t0 = time.monotonic()
        r = self.create({"name": "t-node", "template": "node-express"})
        self.assertStatus(r, 201)
        self.assertEqual(r.json()["type"], "node")
        self.daemon.wait_workspace("t-node", lambda w: w.get("status") == "running", timeout=120)
        self.wait_answers("t-node", "Hello from Express", 30)
        r = self.daemon.get("/t-node/api/hello")
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["hello"], "world")
        print(f"\n  node-express created to answering in {time.monotonic() - t0:.1f} s")

    def test_create_vite_react_is_created(self):
        r = self.create({"name": "t-vite", "template": "vite-react", "public": False})
        self.assertStatus(r, 201)
        self.assertFalse(r.json()["public"])
        folder = os.path.join(self.daemon.ws, "t-vite")
        for f in ("package.json", "index.html", "src/main.jsx", "src/Greeting.jsx"):
            self.assertTrue(os.path.isfile(os.path.join(folder, f)), f)
        # The dev server reloads itself: source edits are copied in, not restarted on.
        with open(os.path.join(folder, "workspace.json")) as f:
            self.assertEqual(json.load(f), {"public": False, "reload": "hmr"})
        self.assertFalse(os.path.exists(os.path.join(folder, "node_modules")))

    def test_create_next_app_is_created(self):
        r = self.create({"name": "t-next", "template": "next-app"})
        self.assertStatus(r, 201)
        self.assertEqual(r.json()["type"], "node")
        folder = os.path.join(self.daemon.ws, "t-next")
        for f in ("package.json", "next.config.js", "pages/index.js", "components/Greeting.js"):
            self.assertTrue(os.path.isfile(os.path.join(folder, f)), f)
        with open(os.path.join(folder, "workspace.json")) as f:
            self.assertEqual(json.load(f)["reload"], "hmr")
        self.assertFalse(os.path.exists(os.path.join(folder, "node_modules")))

    def test_private_merges_the_templates_workspace_json(self):
        r = self.create({"name": "t-private", "template": "python-http", "public": False})
        self.assertStatus(r, 201)
        with open(os.path.join(self.daemon.ws, "t-private", "workspace.json")) as f:
            doc = json.load(f)
        self.assertIs(doc["public"], False)
        self.assertTrue(doc["description"])
        # Private: listed for callers with credentials only.
        wait_until(lambda: call(self.daemon, "GET", "/workspaces/t-private", self.admin).json().get("public") is False,
                   30, "t-private to be listed as private")
        self.assertEqual(call(self.daemon, "GET", "/workspaces/t-private").status, 404)

    def test_clone_copies_source_only(self):
        src = os.path.join(self.daemon.ws, "clone-src")
        os.makedirs(os.path.join(src, "node_modules", "left-pad"))
        os.makedirs(os.path.join(src, ".venv", "bin"))
        os.makedirs(os.path.join(src, "assets"))
        files = {"index.html": "<h1>clone source page</h1>", "assets/app.js": "1",
                 ".env": "SECRET=1", ".env.local": "SECRET=2",
                 "node_modules/left-pad/index.js": "x", ".venv/bin/python": "x"}
        for rel, text in files.items():
            with open(os.path.join(src, rel), "w") as f:
                f.write(text)
        with open(os.path.join(src, ".gitignore"), "w") as f:
            f.write(".venv/\n")
        self.daemon.wait_workspace("clone-src", lambda w: True, timeout=30)
        r = self.create({"name": "clone-dst", "clone_of": "clone-src"})
        self.assertStatus(r, 201)
        dst = os.path.join(self.daemon.ws, "clone-dst")
        self.assertTrue(os.path.isfile(os.path.join(dst, "index.html")))
        self.assertTrue(os.path.isfile(os.path.join(dst, "assets", "app.js")))
        for gone in ("node_modules", ".venv", ".env", ".env.local"):
            self.assertFalse(os.path.exists(os.path.join(dst, gone)), gone)
        self.wait_answers("clone-dst", "clone source page", 30)

    def test_create_empty(self):
        r = self.create({"name": "t-empty"})
        self.assertStatus(r, 201)
        self.assertEqual(r.json()["type"], "static")
        self.wait_answers("t-empty", "empty", 30)

    def test_errors(self):
        d = self.daemon
        self.assertError(self.create({"name": "Bad_Name"}), 400, "invalid_argument")
        self.assertError(self.create({"name": "monitor"}), 400, "invalid_argument")
        self.assertError(self.create({}), 400, "invalid_argument")
        self.assertError(call(d, "POST", "/workspaces", self.admin, "not json"), 400,
                         "invalid_argument")
        self.assertError(self.create({"name": "t-nope", "template": "no-such"}), 404, "not_found")
        self.assertError(self.create({"name": "t-nope", "template": "../static"}), 404,
                         "not_found")
        self.assertError(self.create({"name": "t-nope", "clone_of": "no-such"}), 404, "not_found")
        self.assertError(self.create({"name": "t-nope", "template": "static",
                                      "clone_of": "t-dup"}), 400, "invalid_argument")
        self.assertFalse(os.path.exists(os.path.join(d.ws, "t-nope")))
        self.assertStatus(self.create({"name": "t-dup", "template": "static"}), 201)
        self.assertError(self.create({"name": "t-dup"}), 409, "already_exists")
        self.assertUnauthenticated(call(d, "POST", "/workspaces", None, {"name": "t-anon"}))
        read = self.new_token(d, self.admin, "reader", ["read"])["token"]
        self.assertError(self.create({"name": "t-reader"}, token=read), 403, "forbidden")
        self.assertError(call(d, "DELETE", "/workspaces/t-dup", read), 403, "forbidden")
        self.assertUnauthenticated(call(d, "DELETE", "/workspaces/t-dup"))
        self.assertError(call(d, "DELETE", "/workspaces/no-such", self.admin), 404, "not_found")
        self.assertError(call(d, "DELETE", "/workspaces/Bad_Name", self.admin), 400,
                         "invalid_argument")
        for n in ("t-anon", "t-reader"):
            self.assertFalse(os.path.exists(os.path.join(d.ws, n)), n)
        # No temporary folders are left behind.
        self.assertEqual([n for n in os.listdir(d.ws) if n.startswith(".ck-create")], [])

    def test_delete_moves_to_trash(self):
        d = self.daemon
        self.assertStatus(self.create({"name": "t-gone", "template": "static"}), 201)
        d.wait_workspace("t-gone", lambda w: True, timeout=30)
        r = call(d, "DELETE", "/workspaces/t-gone", self.admin)
        self.assertStatus(r, 200)
        doc = r.json()
        self.assertEqual(doc["deleted"], "t-gone")
        self.assertTrue(doc["trash"].startswith(os.path.join(os.path.realpath(d.data), "trash"))
                        or doc["trash"].startswith(os.path.join(d.data, "trash")), doc)
        self.assertTrue(os.path.isfile(os.path.join(doc["trash"], "index.html")))
        self.assertFalse(os.path.exists(os.path.join(d.ws, "t-gone")))
        wait_until(lambda: all(w["name"] != "t-gone" for w in d.workspaces()), 30,
                   "t-gone leaving the list")
        self.assertStatus(d.get("/monitor/api/v1/workspaces/t-gone"), 404)

    def test_audit_entries(self):
        d = self.daemon
        self.assertStatus(self.create({"name": "t-audit", "template": "static"}), 201)
        self.assertStatus(call(d, "DELETE", "/workspaces/t-audit", self.admin), 200)
        r = call(d, "GET", "/audit?limit=1000", self.admin)
        self.assertStatus(r, 200)
        actions = {(e["action"], e["target"]) for e in r.json()["entries"]}
        self.assertIn(("workspace.create", "t-audit"), actions)
        self.assertIn(("workspace.delete", "t-audit"), actions)


if __name__ == "__main__":
    unittest.main()
