"""Browser tests of the dashboard at /monitor/ (label `browser`).

Starts a daemon (process runtime) with the examples, creates a dashboard user with the admin
token the daemon prints on its first start, and runs tests/e2e/dashboard.test.mjs in Node
(playwright-core driving Debian's Chromium). The Node script asks this wrapper, over a small
HTTP control server on 127.0.0.1, to restart the daemon on the same port or to add a workspace
folder while the page is open.

Environment:
  CK_PLAYWRIGHT   playwright-core's folder (default: ~/.cache/cloudyknight/playwright/
                  node_modules/playwright-core, what scripts/playwright.sh installs)
  CK_CHROMIUM     the browser (default /usr/bin/chromium)
  CK_SCREENSHOTS  where screenshots go (default: <build>/Testing/screenshots, else a temp dir)
Nothing is skipped: a missing browser, driver or node fails the test with the reason.
"""

import http.server
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
import time
import unittest
import urllib.parse

import harness
from harness import Daemon

SCRIPT = os.path.join(harness.REPO, "tests", "e2e", "dashboard.test.mjs")
DEFAULT_PLAYWRIGHT = os.path.expanduser("~/.cache/cloudyknight/playwright/node_modules/playwright-core")
ADMIN_TOKEN_RE = re.compile(r"admin token \(shown once, store it now\): (ck_[A-Za-z0-9_\-]+)")
NODE_TIMEOUT = 420
# gateway.domain of the daemon under test: Chromium maps *.DOMAIN to 127.0.0.1
# (--host-resolver-rules), so the preview loads each workspace on its own origin.
DOMAIN = "ck.test"
CONFIG = {"gateway": {"domain": DOMAIN}}


def screenshots_dir():
    if os.environ.get("CK_SCREENSHOTS"):
        return os.environ["CK_SCREENSHOTS"]
    build = os.path.dirname(os.path.abspath(harness.binary()))
    return os.path.join(build, "Testing", "screenshots")


class Control(http.server.ThreadingHTTPServer):
    """POST /restart: stop the daemon and start it again on the same port and data.
    POST /add?name=N&from=EXAMPLE: copy examples/EXAMPLE to the workspaces as N."""

    daemon_threads = True

    def __init__(self, owner):
        self.owner = owner
        super().__init__(("127.0.0.1", 0), ControlHandler)


class ControlHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, fmt, *args):
        sys.stderr.write("control: " + fmt % args + "\n")

    def do_POST(self):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        try:
            if url.path == "/restart":
                self.server.owner.restart()
                body = "restarted"
            elif url.path == "/git":
                body = self.server.owner.git(q["name"], q.get("text", ""))
            elif url.path == "/add":
                d = self.server.owner.daemon
                d.add_folder(os.path.join(harness.EXAMPLES, q.get("from", "site")), q["name"])
                body = "added " + q["name"]
            else:
                self.send_error(404)
                return
            code = 200
        except Exception as e:  # reported to the Node script, which fails with it
            code, body = 500, f"{type(e).__name__}: {e}"
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class DashboardInChromium(unittest.TestCase):
    def setUp(self):
        self.daemons = []
        self.daemon = Daemon(examples=["site", "hello-python"], config=CONFIG)
        self.daemons.append(self.daemon)
        self.daemon.start()
        self.control = Control(self)
        threading.Thread(target=self.control.serve_forever, daemon=True).start()

    def tearDown(self):
        self.control.shutdown()
        self.control.server_close()
        for d in self.daemons:
            if d.proc and d.proc.poll() is None:
                d.stop()
        self.daemon.cleanup(keep=os.environ.get("CK_KEEP_TMP") == "1")

    def git(self, name, text):
        """A workspace following a bare repository of the test's (`ws git-init`), or, when it
        exists, a new commit of index.html on that repository (the dashboard then pulls it)."""
        env = dict(os.environ, GIT_AUTHOR_NAME="dev", GIT_AUTHOR_EMAIL="dev@test", GIT_COMMITTER_NAME="dev",
                   GIT_COMMITTER_EMAIL="dev@test", GIT_CONFIG_NOSYSTEM="1")
        base = os.path.join(self.daemon.tmp, "git-" + name)
        bare, dev = base + ".git", base + "-dev"

        def git(cwd, *args):
            subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, timeout=60)

        first = not os.path.exists(bare)
        if first:
            git(self.daemon.tmp, "init", "-q", "--bare", "-b", "main", bare)
            git(self.daemon.tmp, "clone", "-q", bare, dev)
        with open(os.path.join(dev, "index.html"), "w") as f:
            f.write(f"<h1>{text or 'first'}</h1>\n")
        git(dev, "add", "-A")
        git(dev, "commit", "-q", "-m", text or "first")
        git(dev, "push", "-q", "origin", "HEAD")
        if first:
            cfg = base + ".yaml"
            with open(cfg, "w") as f:
                f.write("git:\n  allow_local_remotes: true\n")
            subprocess.run([harness.binary(), "ws", "git-init", name, bare, "--workspaces", self.daemon.ws,
                            "--config", cfg], check=True, capture_output=True, timeout=60)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=dev, capture_output=True, text=True,
                              check=True).stdout.strip()

    def restart(self):
        old = self.daemon
        old.stop()
        new = Daemon(reuse=old, port=old.port, examples=["site", "hello-python"], config=CONFIG)
        self.daemons.append(new)
        # The Node script watches the page notice the drop before the daemon is back.
        time.sleep(1.5)
        new.start()
        self.daemon = new

    def create_user(self):
        """(user, password), or (None, reason) when this daemon has no users API yet."""
        token = None
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and token is None:
            m = ADMIN_TOKEN_RE.search(self.daemon.stderr_text())
            token = m.group(1) if m else None
            if token is None:
                time.sleep(0.1)
        if token is None:
            return None, "the daemon printed no admin token on its first start"
        user, password = "alice", "pw-" + secrets.token_hex(8)
        r = self.daemon.request(
            "POST", "/monitor/api/v1/users",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            body=json.dumps({"name": user, "password": password, "role": "admin"}))
        if r.status == 404:
            return None, f"POST /monitor/api/v1/users answered 404: {r.text()[:200]}"
        self.assertIn(r.status, (200, 201), f"creating the dashboard user: {r.status} {r.text()}")
        return user, password

    def test_dashboard(self):
        node = shutil.which("node")
        self.assertIsNotNone(node, "node is not installed (Debian package nodejs)")
        pw = os.environ.get("CK_PLAYWRIGHT", DEFAULT_PLAYWRIGHT)
        self.assertTrue(os.path.isfile(os.path.join(pw, "package.json")),
                        f"playwright-core is not installed at {pw} (run scripts/playwright.sh)")
        chromium = os.environ.get("CK_CHROMIUM", "/usr/bin/chromium")
        self.assertTrue(os.access(chromium, os.X_OK),
                        f"{chromium} is missing (Debian package chromium)")
        user, password = self.create_user()
        env = dict(os.environ)
        env.update({
            "CK_URL": f"http://127.0.0.1:{self.daemon.port}",
            "CK_CONTROL": f"http://127.0.0.1:{self.control.server_address[1]}",
            "CK_DOMAIN": DOMAIN,
            "CK_SCREENSHOTS": screenshots_dir(),
            "CK_PLAYWRIGHT": pw,
            "CK_CHROMIUM": chromium,
            "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
        })
        if user:
            env.update({"CK_AUTH": "1", "CK_USER": user, "CK_PASSWORD": password})
        else:
            env.update({"CK_AUTH": "0", "CK_AUTH_REASON": password})
            print(f"dashboard sign-in is not tested: {password}", file=sys.stderr)
        started = time.monotonic()
        proc = subprocess.run([node, "--test-reporter=spec", SCRIPT], env=env, cwd=os.path.dirname(SCRIPT),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=NODE_TIMEOUT)
        out = proc.stdout.decode("utf-8", "replace")
        print(out)
        print(f"browser tests took {time.monotonic() - started:.1f} s; screenshots in "
              f"{env['CK_SCREENSHOTS']}")
        if proc.returncode != 0:
            self.fail(f"the browser tests failed (exit {proc.returncode}):\n{out[-6000:]}\n"
                      f"{self.daemon.diagnostics(80)}")


if __name__ == "__main__":
    unittest.main()
