"""Git workspaces (issue 16, parts 1, 2 and 5) against a real daemon and real git: a workspace
created from a remote (POST /workspaces {"git"}, `ws git-init`, workspace.json "git"), pulled on
a push webhook (GitHub-style HMAC; unsigned and badly signed ones refused), on POST /sync and
before a start; edits through the files API committed as their author and pushed; an edit
that conflicts with the remote kept on a ck/conflict-* branch with both sides intact; the
repository's own files out of the files API's reach; a git:// remote served by `git daemon`.
The git CLI plays the other developer and the remote; everything CloudyKnight does goes
through libgit2.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_git_workspaces
"""

import hashlib
import hmac
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from harness import Daemon, binary, free_port, wait_until
from test_auth import admin_token, call

SECRET = "hook-s3cret"
GIT_ENV = dict(os.environ, GIT_AUTHOR_NAME="dev", GIT_AUTHOR_EMAIL="dev@test",
               GIT_COMMITTER_NAME="dev", GIT_COMMITTER_EMAIL="dev@test",
               GIT_CONFIG_NOSYSTEM="1", HOME=tempfile.gettempdir())


def git(cwd, *args):
    r = subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed in {cwd}:\n{r.stdout}{r.stderr}")
    return r.stdout.strip()


class Remote:
    """A bare repository on disk plus a developer's clone of it."""

    def __init__(self, root, name, files):
        self.bare = os.path.join(root, name + ".git")
        self.dev = os.path.join(root, name + "-dev")
        git(root, "init", "-q", "--bare", "-b", "main", self.bare)
        git(root, "clone", "-q", self.bare, self.dev)
        self.commit(files, "first")

    def commit(self, files, message="change"):
        for path, text in files.items():
            full = os.path.join(self.dev, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(text)
        git(self.dev, "add", "-A")
        git(self.dev, "commit", "-q", "-m", message)
        git(self.dev, "push", "-q", "origin", "HEAD")
        return git(self.dev, "rev-parse", "HEAD")

    def head(self, ref="main"):
        return git(self.bare, "rev-parse", ref)

    def show(self, ref, path):
        return git(self.bare, "show", f"{ref}:{path}")


def signed(body):
    mac = hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).hexdigest()
    return {"X-Hub-Signature-256": "sha256=" + mac, "X-GitHub-Event": "push"}


class GitWorkspacesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ck-git-it-")
        cls.blog = Remote(cls.tmp, "blog", {"index.html": "<h1>v1</h1>\n"})
        cls.site = Remote(cls.tmp, "site", {"index.html": "<h1>site v1</h1>\n", "about.html": "about\n"})
        cls.app = Remote(cls.tmp, "app", {
            "app.py": ("import http.server, os\n"
                       "class H(http.server.BaseHTTPRequestHandler):\n"
                       "    def do_GET(self):\n"
                       "        body = open('version.txt', 'rb').read()\n"
                       "        self.send_response(200); self.send_header('Content-Length', str(len(body)))\n"
                       "        self.end_headers(); self.wfile.write(body)\n"
                       "    def log_message(self, *a): pass\n"
                       "http.server.HTTPServer(('127.0.0.1', int(os.environ['PORT'])), H).serve_forever()\n"),
            "version.txt": "app v1\n"})
        cls.d = d = Daemon(config={"git": {"allow_local_remotes": True, "poll": "0s",
                                           "webhook_secret": SECRET, "autocommit": "on-save"}})
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

    def page(self, path):
        r = self.d.get(path)
        return r.text() if r.status == 200 else f"HTTP {r.status}"

    def create(self, name, url, **extra):
        r = self.api("POST", "/workspaces", {"name": name, "git": dict({"url": url}, **extra)})
        self.assertEqual(r.status, 201, r.text())
        return r.json()

    def git_status(self, name):
        r = self.api("GET", f"/workspaces/{name}/status")
        self.assertEqual(r.status, 200, r.text())
        return r.json()["git"]

    # -- 1. create, webhook, sync --------------------------------------------------------
    def test_a_created_from_a_remote_then_pulled_by_webhook_and_sync(self):
        out = self.create("blog", self.blog.bare)
        self.assertEqual(out["git"]["url"], self.blog.bare)
        wait_until(lambda: "v1" in self.page("/blog/"), 20, "blog serves v1")
        st = self.git_status("blog")
        self.assertEqual((st["branch"], st["head"], st["ahead"], st["behind"], st["dirty"], st["sync"]),
                         ("main", self.blog.head(), 0, 0, False, "ok"))

        self.blog.commit({"index.html": "<h1>v2</h1>\n"})
        body = json.dumps({"ref": "refs/heads/main", "after": self.blog.head(),
                           "repository": {"clone_url": "file://" + self.blog.bare}})
        r = self.api("POST", "/git/hook", body, token=None)
        self.assertEqual(r.status, 401, r.text())
        self.assertIn("X-Hub-Signature-256", r.json()["error"]["message"])
        bad = dict(signed(body), **{"X-Hub-Signature-256": "sha256=" + "0" * 64})
        self.assertEqual(self.api("POST", "/git/hook", body, bad, token=None).status, 401)
        r = self.api("POST", "/git/hook", body, signed(body), token=None)
        self.assertEqual(r.status, 202, r.text())
        self.assertEqual(r.json()["pulling"], ["blog"])
        wait_until(lambda: "v2" in self.page("/blog/"), 20, "blog serves v2 after the webhook")
        # A tag's push pulls nothing; another repository's neither.
        tag = json.dumps({"ref": "refs/tags/v1", "repository": {"clone_url": self.blog.bare}})
        self.assertEqual(self.api("POST", "/git/hook", tag, signed(tag), token=None).json()["pulling"], [])
        other = json.dumps({"ref": "refs/heads/main", "repository": {"clone_url": "https://git.test/x/y.git"}})
        self.assertEqual(self.api("POST", "/git/hook", other, signed(other), token=None).json()["pulling"], [])
        bad_json = "{not json"
        self.assertEqual(self.api("POST", "/git/hook", bad_json, signed(bad_json), token=None).status, 400)

        self.blog.commit({"index.html": "<h1>v3</h1>\n"})
        r = self.api("POST", "/workspaces/blog/sync")
        self.assertEqual(r.status, 200, r.text())
        self.assertEqual(r.json()["git"], {"updated": True, "head": self.blog.head(), "changed": 1})
        wait_until(lambda: "v3" in self.page("/blog/"), 20, "blog serves v3 after sync")
        self.assertIsNotNone(self.git_status("blog")["last_pull"])

    # -- 2. edits through the API become commits on the remote ------------------------------
    def test_b_edits_are_committed_as_their_author_and_pushed(self):
        self.create("site", self.site.bare)
        wait_until(lambda: "site v1" in self.page("/site/"), 20, "site serves v1")
        r = self.api("PUT", "/workspaces/site/files/index.html", "<h1>edited</h1>\n")
        self.assertIn(r.status, (200, 201), r.text())
        r = self.api("DELETE", "/workspaces/site/files/about.html")
        self.assertEqual(r.status, 204, r.text())
        wait_until(lambda: git(self.site.bare, "log", "-1", "--format=%an", "main") == "admin", 20,
                   "the edit pushed to the remote")
        self.assertEqual(self.site.show("main", "index.html"), "<h1>edited</h1>")
        self.assertNotIn("about.html", git(self.site.bare, "ls-tree", "--name-only", "main"))
        self.assertIn("through CloudyKnight", git(self.site.bare, "log", "-1", "--format=%s", "main"))
        st = self.git_status("site")
        self.assertEqual((st["ahead"], st["dirty"], st["sync"]), (0, False, "ok"))
        self.assertIsNotNone(st["last_push"])

    # -- 3. a conflicting edit loses nothing ------------------------------------------------
    def test_c_a_conflicting_edit_is_kept_on_a_conflict_branch(self):
        remote = Remote(self.tmp, "conf", {"index.html": "base\n"})
        self.create("conf", remote.bare)
        wait_until(lambda: "base" in self.page("/conf/"), 20, "conf serves base")
        theirs = remote.commit({"index.html": "theirs\n"}, "their change")
        r = self.api("PUT", "/workspaces/conf/files/index.html", "ours\n")
        self.assertIn(r.status, (200, 201), r.text())
        st = wait_until(lambda: (lambda s: s if s["sync"] == "conflict" else None)(self.git_status("conf")),
                        20, "the conflict reported")
        branch = st["conflict_branch"]
        self.assertTrue(branch.startswith("ck/conflict-"), branch)
        # Both sides are on the remote: theirs on main, ours on the conflict branch.
        self.assertEqual(remote.head("main"), theirs)
        self.assertEqual(remote.show(branch, "index.html"), "ours")
        self.assertEqual(remote.show("main", "index.html"), "theirs")
        # The workspace follows the remote again.
        wait_until(lambda: "theirs" in self.page("/conf/"), 20, "conf serves theirs")

    # -- 4. the repository is not workspace files -------------------------------------------
    def test_d_the_files_api_does_not_reach_into_dot_git(self):
        if not os.path.isdir(os.path.join(self.d.ws, "blog")):
            self.create("blog2", self.blog.bare)
            name = "blog2"
        else:
            name = "blog"
        for method, path, body in (("PUT", ".git/config", "[core]\n\tfsmonitor = touch /tmp/pwned\n"),
                                   ("PUT", ".git/hooks/post-merge", "#!/bin/sh\n"),
                                   ("PUT", "sub/.GIT/x", "x"),
                                   ("GET", ".git/config", None),
                                   ("DELETE", ".git/HEAD", None)):
            r = self.api(method, f"/workspaces/{name}/files/{path}", body)
            self.assertEqual(r.status, 403, f"{method} {path}: {r.text()}")
        self.assertTrue(os.path.isfile(os.path.join(self.d.ws, name, ".git", "HEAD")))
        # The static server does not serve it either.
        self.assertIn(self.d.get(f"/{name}/.git/config").status, (403, 404))

    # -- 5. bindings from workspace.json and the CLI; bad input -----------------------------
    def test_e_workspace_json_binding_and_git_init(self):
        remote = Remote(self.tmp, "bound", {"index.html": "bound v1\n"})
        folder = os.path.join(self.d.ws, "bound")
        os.makedirs(folder)
        with open(os.path.join(folder, "workspace.json"), "w") as f:
            json.dump({"git": {"url": remote.bare, "branch": "main"}}, f)
        wait_until(lambda: "bound v1" in self.page("/bound/"), 30, "the workspace.json binding cloned")
        self.assertEqual(self.git_status("bound")["dirty"], False)

        cli = Remote(self.tmp, "cli", {"index.html": "cli v1\n"})
        cfg = os.path.join(self.tmp, "cli.yaml")
        with open(cfg, "w") as f:
            f.write("git:\n  allow_local_remotes: true\n")
        r = subprocess.run([binary(), "ws", "git-init", "fromcli", cli.bare, "--workspaces", self.d.ws,
                            "--config", cfg], capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("cloned", r.stdout)
        wait_until(lambda: "cli v1" in self.page("/fromcli/"), 30, "the git-init workspace served")
        r = subprocess.run([binary(), "ws", "git-init", "fromcli", cli.bare, "--workspaces", self.d.ws,
                            "--config", cfg], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("already exists", r.stderr)

        for body, code in (({"name": "x1", "git": "nope"}, 400),
                           ({"name": "x2", "git": {}}, 400),
                           ({"name": "x3", "git": {"url": "-uhack"}}, 400),
                           ({"name": "x4", "git": {"url": remote.bare, "branch": "a..b"}}, 400),
                           ({"name": "x5", "git": {"url": os.path.join(self.tmp, "missing.git")}}, 404),
                           ({"name": "x6", "git": {"url": remote.bare, "branch": "nope"}}, 404),
                           ({"name": "x7", "template": "static", "git": {"url": remote.bare}}, 400)):
            r = self.api("POST", "/workspaces", body)
            self.assertEqual(r.status, code, f"{body}: {r.text()}")
            self.assertFalse(os.path.exists(os.path.join(self.d.ws, body["name"])), body)
        leftovers = [n for n in os.listdir(self.d.ws) if n.startswith(".ck-create")]
        self.assertEqual(leftovers, [])

    # -- 6. an app pulls before it starts ----------------------------------------------------
    def test_f_an_app_pulls_before_every_start(self):
        self.create("app", self.app.bare)
        wait_until(lambda: "app v1" in self.page("/app/"), 60, "app answers v1")
        r = self.api("POST", "/workspaces/app/stop")
        self.assertIn(r.status, (200, 202), r.text())
        wait_until(lambda: self.api("GET", "/workspaces/app").json()["status"] == "stopped", 30, "app stopped")
        self.app.commit({"version.txt": "app v2\n"})
        r = self.api("POST", "/workspaces/app/start")
        self.assertIn(r.status, (200, 202), r.text())
        wait_until(lambda: "app v2" in self.page("/app/"), 60, "app answers v2 after a start")
        self.assertEqual(self.git_status("app")["head"], self.app.head())

    # -- 7. branch previews ---------------------------------------------------------------
    def test_h_a_branch_gets_a_preview_that_starts_on_request_and_goes_with_the_branch(self):
        files = {k: git(self.app.dev, "show", f"HEAD:{k}") + "\n" for k in ("app.py",)}
        remote = Remote(self.tmp, "pv", dict(files, **{"version.txt": "pv main\n"}))
        self.create("pv", remote.bare)
        wait_until(lambda: "pv main" in self.page("/pv/"), 60, "pv answers main")
        git(remote.dev, "checkout", "-q", "-b", "feature/New_UI")
        remote.commit({"version.txt": "pv new ui\n"}, "new ui")
        body = json.dumps({"ref": "refs/heads/feature/New_UI", "repository": {"clone_url": remote.bare}})
        r = self.api("POST", "/git/hook", body, signed(body), token=None)
        self.assertEqual(r.json()["pulling"], ["pv"])
        preview = "pv--feature-new-ui"
        w = wait_until(lambda: (lambda r: r.json() if r.status == 200 else None)(
            self.api("GET", f"/workspaces/{preview}")), 30, "the preview listed")
        self.assertEqual((w["preview_of"], w["branch"], w["status"]), ("pv", "feature/New_UI", "stopped"))
        self.assertEqual(self.api("GET", "/workspaces/pv").json()["previews"],
                         [{"name": preview, "branch": "feature/New_UI"}])
        # The first request starts it (and is held until it answers).
        wait_until(lambda: "pv new ui" in self.page(f"/{preview}/"), 60, "the preview answers")
        self.assertIn("pv main", self.page("/pv/"))
        # A new commit on the branch reaches the preview.
        remote.commit({"version.txt": "pv new ui 2\n"}, "new ui 2")
        self.assertEqual(self.api("POST", "/git/hook", body, signed(body), token=None).status, 202)
        wait_until(lambda: "pv new ui 2" in self.page(f"/{preview}/"), 60, "the preview updated")
        # Deleting the branch removes the preview.
        git(remote.dev, "push", "-q", "origin", "--delete", "feature/New_UI")
        gone = json.dumps({"ref": "refs/heads/feature/New_UI", "after": "0" * 40, "deleted": True,
                           "repository": {"clone_url": remote.bare}})
        self.assertEqual(self.api("POST", "/git/hook", gone, signed(gone), token=None).status, 202)
        wait_until(lambda: self.api("GET", f"/workspaces/{preview}").status == 404, 30, "the preview gone")
        self.assertFalse(os.path.exists(os.path.join(self.d.ws, preview)))
        self.assertNotIn("previews", self.api("GET", "/workspaces/pv").json())

    # -- 8. an ssh remote: a deploy key of the workspace's own, the host key pinned -------------
    def test_i_an_ssh_remote_with_a_deploy_key_and_a_pinned_host_key(self):
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        if not os.path.exists(sshd):
            self.fail("sshd is missing: scripts/test.sh installs openssh-server")
        base = os.path.join(self.tmp, "ssh")
        os.makedirs(base)
        remote = Remote(base, "viassh", {"index.html": "over ssh\n"})
        authorized = os.path.join(base, "authorized_keys")
        open(authorized, "w").close()
        os.chmod(authorized, 0o600)
        os.makedirs("/run/sshd", exist_ok=True)

        def start_sshd(port, host_key):
            if not os.path.exists(host_key):
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", host_key], check=True)
            cfg = os.path.join(base, f"sshd-{port}.conf")
            with open(cfg, "w") as f:
                f.write(f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {host_key}\n"
                        f"AuthorizedKeysFile {authorized}\nPermitRootLogin prohibit-password\n"
                        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
                        f"StrictModes no\nPidFile {base}/sshd-{port}.pid\n")
            with open(os.path.join(base, f"sshd-{port}.log"), "wb") as log:
                proc = subprocess.Popen([sshd, "-D", "-e", "-f", cfg], stdout=subprocess.DEVNULL, stderr=log)
            wait_until(lambda: subprocess.run(["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"],
                                              capture_output=True).returncode == 0, 10, "sshd listens")
            return proc

        port = free_port()
        proc = start_sshd(port, os.path.join(base, "host_key"))
        try:
            url = f"ssh://root@127.0.0.1:{port}{remote.bare}"
            # Not authorized yet: refused, and the answer names the key to add.
            r = self.api("POST", "/workspaces", {"name": "viassh", "git": {"url": url}})
            self.assertEqual(r.status, 401, r.text())
            msg = r.json()["error"]["message"]
            self.assertIn("deploy key", msg)
            key = msg[msg.index("ecdsa-sha2-nistp256"):].strip()
            self.assertFalse(os.path.exists(os.path.join(self.d.ws, "viassh")))
            with open(authorized, "w") as f:
                f.write(key + "\n")
            # The same key on the retry, and now it clones.
            self.create("viassh", url)
            wait_until(lambda: "over ssh" in self.page("/viassh/"), 20, "viassh serves its page")
            st = self.git_status("viassh")
            self.assertEqual(st["deploy_key"], key)
            remote.commit({"index.html": "over ssh 2\n"})
            self.assertEqual(self.api("POST", "/workspaces/viassh/sync").status, 200)
            wait_until(lambda: "over ssh 2" in self.page("/viassh/"), 20, "viassh pulled over ssh")
            keydir = os.path.join(self.d.data, "git", "keys", "viassh")
            self.assertEqual(os.stat(os.path.join(keydir, "id_ecdsa")).st_mode & 0o777, 0o600)
        finally:
            proc.terminate()
            proc.wait(timeout=10)
        # The same address with another host key: a man in the middle, as far as we can tell.
        proc = start_sshd(port, os.path.join(base, "other_host_key"))
        try:
            remote.commit({"index.html": "over ssh 3\n"})
            r = self.api("POST", "/workspaces/viassh/sync")
            self.assertEqual(r.status, 403, r.text())
            self.assertIn("host key", r.json()["error"]["message"])
            self.assertIn("over ssh 2", self.page("/viassh/"))
        finally:
            proc.terminate()
            proc.wait(timeout=10)

    # -- 9. an http remote that wants a token: CloudyKnight's own git push endpoint -------------
    def test_j_an_http_remote_with_a_token(self):
        src = os.path.join(self.tmp, "httpsrc")
        os.makedirs(src)
        git(src, "init", "-q", "-b", "main")
        with open(os.path.join(src, "index.html"), "w") as f:
            f.write("over http with a token\n")
        git(src, "add", "-A")
        git(src, "commit", "-q", "-m", "first")
        base = f"127.0.0.1:{self.d.port}/monitor/git/httpsrc.git"
        git(src, "push", "-q", f"http://x:{self.admin}@{base}", "main")
        wait_until(lambda: "over http" in self.page("/httpsrc/"), 30, "the pushed workspace")
        # Without the token the remote says 401; with it, libgit2 clones over HTTP.
        r = self.api("POST", "/workspaces", {"name": "viahttp", "git": {"url": f"http://{base}"}})
        self.assertEqual(r.status, 401, r.text())
        self.assertFalse(os.path.exists(os.path.join(self.d.ws, "viahttp")))
        out = self.create("viahttp", f"http://{base}", token=self.admin)
        self.assertNotIn(self.admin, json.dumps(out))
        wait_until(lambda: "over http with a token" in self.page("/viahttp/"), 20, "viahttp served")
        self.assertNotIn(self.admin, json.dumps(self.git_status("viahttp")))
        self.assertNotIn(self.admin, self.d.stderr_text().split("admin token", 1)[-1].split("\n", 1)[-1])

    # -- 10. a git:// remote over the network (git daemon on loopback) ------------------------
    def test_g_a_git_protocol_remote(self):
        port = free_port()
        base = os.path.join(self.tmp, "served")
        os.makedirs(base)
        remote = Remote(base, "net", {"index.html": "over git://\n"})
        proc = subprocess.Popen(["git", "daemon", "--reuseaddr", "--export-all", "--listen=127.0.0.1",
                                 f"--port={port}", f"--base-path={base}", base],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: subprocess.run(["git", "ls-remote", f"git://127.0.0.1:{port}/net.git"],
                                              capture_output=True, timeout=10).returncode == 0,
                       20, "git daemon answers")
            self.create("net", f"git://127.0.0.1:{port}/net.git")
            wait_until(lambda: "over git://" in self.page("/net/"), 20, "net serves its page")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)


if __name__ == "__main__":
    unittest.main()
