"""Issue 16: git remotes are input from members. Written as the attacks first:

1. A member points a workspace at a repository on the daemon's own disk (workspace.json "git"
   written through the files API, or POST /workspaces {"git"}) to read what the daemon can
   read: refused unless the operator set git.allow_local_remotes; nothing is cloned.
2. A member writes the workspace's .git/config (core.fsmonitor, hooks, a new origin) through
   the files API: refused, the repository unchanged.
3. A token given for a remote never comes back: not in the status, the create answer, an
   error message or the daemon's log.
4. Anyone can POST the webhook: an unsigned or badly signed one pulls nothing.

Run: cd tests/security && PYTHONPATH=../integration CK_BINARY=../../build/cloudyknight \
     python3 -m unittest -v test_git_remotes
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from harness import Daemon, wait_until
from test_auth import admin_token, call

ENV = dict(os.environ, GIT_AUTHOR_NAME="dev", GIT_AUTHOR_EMAIL="dev@test", GIT_COMMITTER_NAME="dev",
           GIT_COMMITTER_EMAIL="dev@test", GIT_CONFIG_NOSYSTEM="1", HOME=tempfile.gettempdir())
TOKEN = "tok-SUPERSECRET-123"


def read(path):
    with open(path) as f:
        return f.read()


def git(cwd, *args):
    subprocess.run(["git", *args], cwd=cwd, env=ENV, check=True, capture_output=True, timeout=60)


class GitRemoteAttacks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ck-git-sec-")
        # The "secret" repository on the daemon's disk a member must not get at.
        cls.secret = os.path.join(cls.tmp, "secret.git")
        dev = os.path.join(cls.tmp, "dev")
        git(cls.tmp, "init", "-q", "--bare", "-b", "main", cls.secret)
        git(cls.tmp, "clone", "-q", cls.secret, dev)
        with open(os.path.join(dev, "index.html"), "w") as f:
            f.write("OPERATOR-SECRET\n")
        git(dev, "add", "-A")
        git(dev, "commit", "-q", "-m", "secret")
        git(dev, "push", "-q", "origin", "main")
        cls.d = d = Daemon(fixtures=["static"], config={"git": {"poll": "1s", "webhook_secret": "w"}})
        d.prepare()
        try:
            d.start()
            cls.admin = admin_token(d)
        except BaseException:
            print(d.diagnostics())
            d.stop()
            d.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        res = cls.d.stop()
        cls.d.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        assert res.returncode == 0, res

    def api(self, method, path, body=None, headers=None, token="admin"):
        return call(self.d, method, path, self.admin if token == "admin" else token, body, headers)

    def test_a_local_repositories_are_not_reachable_by_default(self):
        for url in (self.secret, "file://" + self.secret):
            r = self.api("POST", "/workspaces", {"name": "grab", "git": {"url": url}})
            self.assertEqual(r.status, 403, r.text())
            self.assertIn("operator", r.json()["error"]["message"])
            self.assertFalse(os.path.exists(os.path.join(self.d.ws, "grab")))
        # Through workspace.json, written with the files API.
        body = json.dumps({"git": {"url": self.secret}})
        r = self.api("PUT", "/workspaces/static/files/workspace.json", body)
        self.assertIn(r.status, (200, 201), r.text())
        time.sleep(2.5)  # a poll (1 s) and the watcher have had their chance
        self.assertFalse(os.path.exists(os.path.join(self.d.ws, "static", ".git")))
        self.assertNotIn("OPERATOR-SECRET", self.d.get("/static/").text())
        st = self.api("GET", "/workspaces/static/status").json()["git"]
        self.assertIn("operator", st["error"] or "")
        self.api("DELETE", "/workspaces/static/files/workspace.json")

    def test_b_dot_git_is_out_of_reach(self):
        # A repository of the operator's making (ws git-init equivalent): made by hand here.
        folder = os.path.join(self.d.ws, "static")
        git(folder, "init", "-q", "-b", "main")
        before = read(os.path.join(folder, ".git", "config"))
        for path in (".git/config", ".git/hooks/post-checkout", "a/../.git/config", ".GIT/config"):
            r = self.api("PUT", "/workspaces/static/files/" + path,
                         "[core]\n\tfsmonitor = sh -c 'touch /tmp/ck-pwned'\n")
            self.assertIn(r.status, (400, 403), f"{path}: {r.text()}")
        self.assertEqual(read(os.path.join(folder, ".git", "config")), before)
        self.assertFalse(os.path.exists(os.path.join(folder, ".git", "hooks", "post-checkout")))
        shutil.rmtree(os.path.join(folder, ".git"))

    def test_c_tokens_never_come_back(self):
        r = self.api("POST", "/workspaces",
                     {"name": "tokened", "git": {"url": "http://127.0.0.1:9/nothing.git", "token": TOKEN}})
        self.assertNotIn(TOKEN, r.text())
        r = self.api("POST", "/workspaces",
                     {"name": "inurl", "git": {"url": f"http://user:{TOKEN}@127.0.0.1:9/x.git"}})
        self.assertNotEqual(r.status, 201)
        self.assertNotIn(TOKEN, r.text())
        self.assertNotIn(TOKEN, self.d.stderr_text())

    def test_d_an_unsigned_webhook_pulls_nothing(self):
        body = json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": self.secret}})
        for headers in ({}, {"X-Hub-Signature-256": "sha256=" + "ab" * 32}, {"X-Gitlab-Token": "nope"},
                        {"X-Gitea-Signature": "00"}):
            r = self.api("POST", "/git/hook", body, headers, token=None)
            self.assertEqual(r.status, 401, r.text())


if __name__ == "__main__":
    unittest.main()
