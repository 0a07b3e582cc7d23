"""Dev servers with hot module replacement through the gateway, in Chromium (label `browser`;
issue 14, item 3).

Starts one daemon (process runtime, gateway.domain example.test) with three workspaces that
install their dependencies from the npm registry once and are shared by every case:
  hmr-vite   templates/vite-react  (Vite 5 + React Fast Refresh)
  hmr-next   templates/next-app    (next dev, pages router, Fast Refresh)
  plain      a plain Vite app written here, started with `vite --base /plain/` (the held case
             of the issue: it looped on a redirect through the gateway)
then runs tests/e2e/hmr.test.mjs in Node (playwright-core driving Debian's Chromium), which
loads each template by path (http://127.0.0.1:PORT/<name>/) and by host
(http://<name>.example.test:PORT/), edits a component in the workspace folder and checks that
the page changes without reloading and keeps its React state.

Environment: CK_PLAYWRIGHT, CK_CHROMIUM, CK_SCREENSHOTS as in test_browser.py.
Nothing is skipped: a missing browser, driver, node or registry fails the test with the reason.
"""

import json
import os
import shutil
import subprocess
import time
import unittest

import harness
from harness import Daemon, wait_until
from test_browser import DEFAULT_PLAYWRIGHT, screenshots_dir

SCRIPT = os.path.join(harness.REPO, "tests", "e2e", "hmr.test.mjs")
TEMPLATES = os.path.join(harness.REPO, "templates")
DOMAIN = "example.test"
NODE_TIMEOUT = 420
# npm install (next is ~40 MB with its SWC binary) and the first start, all three at once.
READY_TIMEOUT = 360

# The held case: Vite started with --base the way its docs say to run under a sub-path.
PLAIN_VITE = {
    "package.json": json.dumps({
        "name": "plain",
        "private": True,
        "type": "module",
        "scripts": {
            "dev": "vite --base /plain/ --host ${HOST:-127.0.0.1} --port ${PORT:-5173} --strictPort",
            "start": "vite --base /plain/ --host ${HOST:-127.0.0.1} --port ${PORT:-5173} --strictPort",
        },
        "devDependencies": {"vite": "5.4.21"},
    }, indent=2),
    "index.html": ('<!doctype html><html><head><meta charset="utf-8"><title>plain vite</title>'
                   '</head><body><p id="out">loading</p>'
                   '<script type="module" src="/main.js"></script></body></html>\n'),
    "main.js": "document.getElementById('out').textContent = 'plain vite is running';\n",
    "workspace.json": json.dumps({"reload": "hmr"}),
}

# name -> the template it is copied from (None: PLAIN_VITE)
WORKSPACES = {"hmr-vite": "vite-react", "hmr-next": "next-app", "plain": None}


class HmrInChromium(unittest.TestCase):
    def setUp(self):
        self.daemon = Daemon(config={"gateway": {"domain": DOMAIN}})
        self.daemon.prepare()
        for name, template in WORKSPACES.items():
            if template:
                self.daemon.add_folder(os.path.join(TEMPLATES, template), name)
            else:
                os.makedirs(os.path.join(self.daemon.ws, name))
                for rel, text in PLAIN_VITE.items():
                    with open(os.path.join(self.daemon.ws, name, rel), "w") as f:
                        f.write(text)
        self.daemon.start()

    def tearDown(self):
        if self.daemon.proc and self.daemon.proc.poll() is None:
            self.daemon.stop()
        self.daemon.cleanup(keep=os.environ.get("CK_KEEP_TMP") == "1")

    def wait_ready(self):
        """Every workspace is running and its dev server answers through the gateway (any
        status below 500: whether the answer is right is for the browser to judge)."""
        t0 = time.monotonic()
        last = {}

        def answers(name):
            w = self.daemon.workspace(name) or {}
            if w.get("status") != "running":
                last[name] = ("status", w.get("status"), w.get("error"))
                return False
            r = self.daemon.get(f"/{name}/", timeout=30)
            last[name] = (r.status, r.text()[:300])
            return r.status < 500

        for name in WORKSPACES:
            left = READY_TIMEOUT - (time.monotonic() - t0)
            try:
                wait_until(lambda: answers(name), max(left, 1), f"{name} to run and answer")
            except AssertionError as e:
                self.fail(f"{e} (last: {last.get(name)})\n{self.daemon.diagnostics(120)}")
        return time.monotonic() - t0

    def test_hmr(self):
        node = shutil.which("node")
        self.assertIsNotNone(node, "node is not installed (Debian package nodejs)")
        pw = os.environ.get("CK_PLAYWRIGHT", DEFAULT_PLAYWRIGHT)
        self.assertTrue(os.path.isfile(os.path.join(pw, "package.json")),
                        f"playwright-core is not installed at {pw} (run scripts/playwright.sh)")
        chromium = os.environ.get("CK_CHROMIUM", "/usr/bin/chromium")
        self.assertTrue(os.access(chromium, os.X_OK),
                        f"{chromium} is missing (Debian package chromium)")
        ready = self.wait_ready()
        print(f"\n  installed and started the three dev servers in {ready:.1f} s")
        env = dict(os.environ)
        env.update({
            "CK_URL": f"http://127.0.0.1:{self.daemon.port}",
            "CK_PORT": str(self.daemon.port),
            "CK_DOMAIN": DOMAIN,
            "CK_WORKSPACES": self.daemon.ws,
            "CK_SCREENSHOTS": screenshots_dir(),
            "CK_PLAYWRIGHT": pw,
            "CK_CHROMIUM": chromium,
            "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
        })
        started = time.monotonic()
        proc = subprocess.run([node, "--test-reporter=spec", SCRIPT], env=env,
                              cwd=os.path.dirname(SCRIPT), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=NODE_TIMEOUT)
        out = proc.stdout.decode("utf-8", "replace")
        print(out)
        print(f"HMR browser tests took {time.monotonic() - started:.1f} s (after {ready:.1f} s "
              f"of install and start-up); screenshots in {env['CK_SCREENSHOTS']}")
        if proc.returncode != 0:
            self.fail(f"the HMR browser tests failed (exit {proc.returncode}):\n{out[-8000:]}\n"
                      f"{self.daemon.diagnostics(120)}")


if __name__ == "__main__":
    unittest.main()
