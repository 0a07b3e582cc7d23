"""git push to deploy (issue 16, part 3): the real git CLI against a real daemon's
/monitor/git/<name>.git (git's smart HTTP protocol through git http-backend).

The attacks first: no token (401 with WWW-Authenticate: Basic, git says "Authentication
failed"), a wrong token, a read-only token pushing (403), a member pushing to another member's
private workspace, a push to a workspace that follows another remote, a name that cannot be a
workspace, paths of the dumb protocol and other files of the repository (404). Then what a user
does: a push of a static site creates the workspace (owned by the pusher), streams "remote:"
lines and ends with its URL, and the site answers at /<name>/; a second push updates it; a push
of another branch is kept without deploying; `git clone` through the gateway; a push to a plain
folder workspace moves its old files to DATA/trash; and a Node.js app pushed with the process
runtime is installed, started and answers.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_git_push
"""

import base64
import glob
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import CONTROL, ControlHostDaemon, wait_until
from test_auth import PASSWORD, admin_token, call

GIT = shutil.which("git")


def git_env():
    home = tempfile.mkdtemp(prefix="ck-git-home-")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": home,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "Pusher",
        "GIT_AUTHOR_EMAIL": "pusher@example.test",
        "GIT_COMMITTER_NAME": "Pusher",
        "GIT_COMMITTER_EMAIL": "pusher@example.test",
        "LANG": "C",
    }


def push_environments(data=None):
    """{argv: environ} of the processes of a push running now (git http-backend, receive-pack
    and the post-receive hook: the ones given CK_GIT_HOOK_FD); with `data`, only those of the
    daemon whose data folder that is (GIT_PROJECT_ROOT lies in it): other tests may push to
    daemons of their own at the same time."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read()
        except OSError:
            continue
        if b"CK_GIT_HOOK_FD=" in env or b"git-hook\0post-receive" in argv:
            if data is None or os.fsencode(data) in env:
                out[argv] = env
    return out


@unittest.skipUnless(GIT, "the git CLI is not installed (apt-get install git)")
class GitPushTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = ControlHostDaemon(
            fixtures=["static", ("static", "follower")],
            config={"gateway": {"control_host": CONTROL, "max_body": "8m"}},
            env={"AWS_SECRET_ACCESS_KEY": "leak-7c1e", "CK_SECRET_PROBE": "leak-7c1e"})
        d.prepare()
        # "follower" follows a git remote elsewhere: a push to it is refused.
        with open(os.path.join(d.ws, "follower", "workspace.json"), "w") as f:
            f.write('{"git": {"url": "https://git.example.test/team/site.git", "branch": "main"}}\n')
        cls.tmp = tempfile.mkdtemp(prefix="ck-git-push-")
        cls.env = git_env()
        try:
            d.start()
            cls.admin = admin_token(d)
            cls.tokens = {}
            for user in ("ann", "ben"):
                r = call(d, "POST", "/users", cls.admin, {"name": user, "password": PASSWORD, "role": "member"})
                assert r.status == 201, r.text()
                r = call(d, "POST", "/auth/login", body={"name": user, "password": PASSWORD})
                assert r.status == 200, r.text()
                cookie = r.header("Set-Cookie").split(";")[0].split("=", 1)[1]
                csrf = r.json()["csrf"]
                for scope in ("deploy", "read"):
                    r = call(d, "POST", "/tokens", cookie=cookie, csrf=csrf,
                             body={"name": f"{user}-{scope}", "scopes": [scope]})
                    assert r.status == 201, r.text()
                    cls.tokens[(user, scope)] = r.json()["token"]
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
        shutil.rmtree(cls.env["HOME"], ignore_errors=True)
        assert res.returncode == 0, res

    def run(self, result=None):
        super().run(result)
        if result and (result.failures or result.errors):
            last = (result.failures + result.errors)[-1][0]
            if last is self:
                print(self.d.diagnostics())

    # -- helpers ---------------------------------------------------------------
    def remote(self, name, token=None):
        cred = f"x:{token}@" if token else ""
        return f"http://{cred}{CONTROL}:{self.d.port}/monitor/git/{name}.git"

    def git(self, *args, cwd=None, check=False, timeout=180):
        # The control plane lives on its own host name: git resolves it to the daemon.
        cmd = [GIT, "-c", f"http.curloptResolve={CONTROL}:{self.d.port}:127.0.0.1", *args]
        p = subprocess.run(cmd, cwd=cwd, env=self.env, capture_output=True, text=True, timeout=timeout)
        out = p.stdout + p.stderr
        if check and p.returncode != 0:
            self.fail(f"git {' '.join(args)} failed ({p.returncode}):\n{out}")
        return p.returncode, out

    def repo(self, name, files, branch="main"):
        path = os.path.join(self.tmp, name)
        if not os.path.isdir(path):
            os.makedirs(path)
            self.git("init", "-q", "-b", branch, cwd=path, check=True)
        for rel, text in files.items():
            full = os.path.join(path, rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write(text)
        self.git("add", "-A", cwd=path, check=True)
        self.git("commit", "-q", "-m", "change", cwd=path, check=True)
        return path

    def page(self, name):
        r = self.d.request("GET", f"/{name}/")
        return r.status, r.text()

    def raw(self, method, path, token=None, basic=None, body=None, headers=None):
        h = dict(headers or {})
        if token:
            h["Authorization"] = f"Bearer {token}"
        if basic:
            h["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
        return self.d.request(method, path, headers=h, body=body)

    # -- the attacks -------------------------------------------------------------
    def test_no_token_is_401_with_basic_challenge(self):
        r = self.raw("GET", "/monitor/git/static.git/info/refs?service=git-receive-pack")
        self.assertEqual(r.status, 401, r.text())
        self.assertEqual(r.header("WWW-Authenticate").split(",")[0], 'Basic realm="CloudyKnight"')
        self.assertIn("API token", r.text())
        src = self.repo("noauth", {"index.html": "<h1>no</h1>\n"})
        rc, out = self.git("push", self.remote("noauth"), "main", cwd=src)
        self.assertNotEqual(rc, 0, out)
        self.assertTrue("Authentication failed" in out or "could not read Username" in out, out)
        self.assertEqual(self.page("noauth")[0], 404)

    def test_wrong_token_is_authentication_failed(self):
        src = self.repo("wrongtok", {"index.html": "<h1>no</h1>\n"})
        rc, out = self.git("push", self.remote("wrongtok", "ck_not_a_real_token"), "main", cwd=src)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("Authentication failed", out)
        self.assertFalse(os.path.exists(os.path.join(self.d.ws, "wrongtok")))

    def test_read_only_token_cannot_push(self):
        src = self.repo("readonly", {"index.html": "<h1>no</h1>\n"})
        rc, out = self.git("push", self.remote("readonly", self.tokens[("ann", "read")]), "main", cwd=src)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("403", out)
        self.assertIn("remote: ", out)
        self.assertIn("needs the 'deploy' scope", out)
        self.assertFalse(os.path.exists(os.path.join(self.d.ws, "readonly")))
        r = self.raw("GET", "/monitor/git/readonly.git/info/refs?service=git-receive-pack",
                     basic="x:" + self.tokens[("ann", "read")])
        self.assertEqual(r.status, 403)

    def test_invalid_name_is_refused_clearly(self):
        src = self.repo("badname", {"index.html": "<h1>no</h1>\n"})
        rc, out = self.git("push", self.remote("Bad_Name", self.admin), "main", cwd=src)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("remote: 'Bad_Name' cannot be a workspace", out)
        self.assertFalse(os.path.exists(os.path.join(self.d.data, "git", "repos", "Bad_Name.git")))

    def test_other_paths_are_404(self):
        for path in ("/monitor/git/static.git/HEAD", "/monitor/git/static.git/config",
                     "/monitor/git/static.git/objects/info/packs",
                     "/monitor/git/static.git/info/refs", "/monitor/git/static.git/info/refs?service=other",
                     "/monitor/git/static/info/refs?service=git-upload-pack",
                     "/monitor/git/../../etc/passwd"):
            r = self.raw("GET", path, token=self.admin)
            self.assertEqual(r.status, 404, f"{path}: {r.text()}")

    def test_workspace_following_another_remote_refuses_the_push(self):
        src = self.repo("follow", {"index.html": "<h1>mine</h1>\n"})
        rc, out = self.git("push", self.remote("follower", self.admin), "main", cwd=src)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("follows https://git.example.test/team/site.git", out)
        self.assertTrue(os.path.exists(os.path.join(self.d.ws, "follower", "index.html")))

    def test_member_cannot_push_to_another_members_private_workspace(self):
        src = self.repo("annpriv", {"index.html": "<h1>ann's private</h1>\n",
                                    "workspace.json": '{"public": false}\n'})
        rc, out = self.git("push", self.remote("annpriv", self.tokens[("ann", "deploy")]), "main", cwd=src)
        self.assertEqual(rc, 0, out)
        self.assertIn("annpriv is running at", out)
        # ben may not push over it, nor clone it.
        evil = self.repo("benevil", {"index.html": "<h1>ben was here</h1>\n"})
        rc, out = self.git("push", "--force", self.remote("annpriv", self.tokens[("ben", "deploy")]), "main", cwd=evil)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("already exists", out)
        rc, out = self.git("clone", self.remote("annpriv", self.tokens[("ben", "read")]),
                           os.path.join(self.tmp, "ben-clone"))
        self.assertNotEqual(rc, 0, out)
        with open(os.path.join(self.d.ws, "annpriv", "index.html")) as f:
            self.assertIn("ann's private", f.read())
        # ann (the owner) clones it.
        rc, out = self.git("clone", self.remote("annpriv", self.tokens[("ann", "read")]),
                           os.path.join(self.tmp, "ann-clone"))
        self.assertEqual(rc, 0, out)

    # -- what a user does ----------------------------------------------------------
    def test_push_creates_then_updates_a_static_workspace(self):
        src = self.repo("blog", {"index.html": "<h1>blog v1</h1>\n"})
        rc, out = self.git("push", self.remote("blog", self.tokens[("ann", "deploy")]), "main", cwd=src)
        self.assertEqual(rc, 0, out)
        self.assertIn("remote: -----> Deploying blog (main at", out)
        self.assertIn("remote: -----> Created workspace blog from main", out)
        self.assertIn(f"remote: =====> blog is running at http://127.0.0.1:{self.d.port}/blog/", out)
        self.assertEqual(self.page("blog"), (200, "<h1>blog v1</h1>\n"))
        # The checkout's repository is not served.
        for path in ("/blog/.git/config", "/blog/.git/HEAD"):
            self.assertEqual(self.d.request("GET", path).status, 404, path)
        # ann's user owns it: the audit log names the push.
        r = call(self.d, "GET", "/audit?limit=100", self.admin)
        pushes = [e for e in r.json()["entries"] if e["action"] == "workspace.push" and e["target"] == "blog"]
        self.assertTrue(pushes, r.text())
        # A second push updates it.
        self.repo("blog", {"index.html": "<h1>blog v2</h1>\n"})
        rc, out = self.git("push", self.remote("blog", self.tokens[("ann", "deploy")]), "main", cwd=src)
        self.assertEqual(rc, 0, out)
        self.assertIn("remote: =====> blog is running at", out)
        wait_until(lambda: self.page("blog") == (200, "<h1>blog v2</h1>\n"), 20, "the new version served")
        # Another branch is not deployed: it gets a branch preview (GitWorkspaces) beside it.
        self.git("checkout", "-q", "-b", "redesign", cwd=src, check=True)
        self.repo("blog", {"index.html": "<h1>redesign</h1>\n"})
        rc, out = self.git("push", self.remote("blog", self.tokens[("ann", "deploy")]), "redesign", cwd=src)
        self.assertEqual(rc, 0, out)
        self.assertIn("Nothing to deploy: blog deploys the branch main, which this push did not change", out)
        self.assertIn(f"remote: -----> branch redesign: preview at http://127.0.0.1:{self.d.port}/blog--redesign/", out)
        self.assertEqual(self.page("blog"), (200, "<h1>blog v2</h1>\n"))
        wait_until(lambda: self.page("blog--redesign") == (200, "<h1>redesign</h1>\n"), 30, "the preview served")
        # The preview is not a repository of its own: pushing to it says where to push.
        rc, out = self.git("push", self.remote("blog--redesign", self.tokens[("ann", "deploy")]), "redesign", cwd=src)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("remote: 'blog--redesign' is the branch preview of blog's branch redesign", out)
        # git clone through the gateway, with a read token.
        dest = os.path.join(self.tmp, "blog-clone")
        rc, out = self.git("clone", "-q", self.remote("blog", self.tokens[("ann", "read")]), dest)
        self.assertEqual(rc, 0, out)
        with open(os.path.join(dest, "index.html")) as f:
            self.assertEqual(f.read(), "<h1>blog v2</h1>\n")
        # A Bearer token works as well (git's http.extraHeader).
        rc, out = self.git("-c", f"http.extraHeader=Authorization: Bearer {self.tokens[('ann', 'read')]}",
                           "ls-remote", self.remote("blog"))
        self.assertEqual(rc, 0, out)
        self.assertIn("refs/heads/redesign", out)
        # Deleting the branch takes its preview away.
        rc, out = self.git("push", self.remote("blog", self.tokens[("ann", "deploy")]), "--delete", "redesign",
                           cwd=src)
        self.assertEqual(rc, 0, out)
        self.assertIn("remote: -----> branch redesign deleted", out)
        wait_until(lambda: self.page("blog--redesign")[0] == 404, 30, "the preview gone")
        self.assertEqual(self.page("blog"), (200, "<h1>blog v2</h1>\n"))
        # An edit through the API becomes a commit the developer pulls.
        self.git("checkout", "-q", "main", cwd=src, check=True)
        r = call(self.d, "PUT", "/workspaces/blog/files/index.html", self.tokens[("ann", "deploy")],
                 "<h1>edited in the browser</h1>\n")
        self.assertIn(r.status, (200, 201), r.text())

        def pulled():
            self.git("pull", "-q", "--ff-only", self.remote("blog", self.tokens[("ann", "read")]), "main", cwd=src)
            with open(os.path.join(src, "index.html")) as f:
                return f.read() == "<h1>edited in the browser</h1>\n"
        wait_until(pulled, 30, "the API edit in the pushed repository")
        rc, out = self.git("log", "-1", "--format=%s", cwd=src)
        self.assertIn("Edit index.html through CloudyKnight", out)

    def test_push_to_a_plain_folder_keeps_its_old_files_in_the_trash(self):
        with open(os.path.join(self.d.ws, "static", "index.html")) as f:
            old = f.read()
        src = self.repo("replace", {"index.html": "<h1>replaced</h1>\n"})
        rc, out = self.git("push", self.remote("static", self.admin), "main", cwd=src)
        self.assertEqual(rc, 0, out)
        self.assertIn("was a plain folder: its previous files were moved to", out)
        self.assertIn("remote: =====> static is running at", out)
        trashed = glob.glob(os.path.join(self.d.data, "trash", "static-*", "index.html"))
        self.assertEqual(len(trashed), 1, os.listdir(os.path.join(self.d.data, "trash")))
        with open(trashed[0]) as f:
            self.assertEqual(f.read(), old)
        wait_until(lambda: self.page("static") == (200, "<h1>replaced</h1>\n"), 20, "the pushed page served")

    def test_a_crashing_app_reports_the_failure_then_a_fix_deploys(self):
        if not shutil.which("node"):
            self.skipTest("node is not installed")
        src = self.repo("crashy", {
            "package.json": '{"name": "crashy", "version": "1.0.0", "scripts": {"start": "node server.js"}}\n',
            "server.js": "console.log('about to fail');\nthrow new Error('boom-5e1');\n",
        })
        rc, out = self.git("push", self.remote("crashy", self.admin), "main", cwd=src, timeout=300)
        self.assertEqual(rc, 0, out)  # the push itself is in: the deploy failed
        self.assertIn("remote: !!!    crashy failed:", out)
        self.assertIn("boom-5e1", out)
        self.assertNotIn("is running at", out)
        self.repo("crashy", {"server.js": ("require('http').createServer((q, s) => s.end('fixed\\n'))"
                                           ".listen(process.env.PORT);\n")})
        rc, out = self.git("push", self.remote("crashy", self.admin), "main", cwd=src, timeout=300)
        self.assertEqual(rc, 0, out)
        self.assertIn("remote: =====> crashy is running at", out)
        self.assertNotIn("crashy failed", out)
        self.assertEqual(self.page("crashy"), (200, "fixed\n"))

    def test_a_pack_larger_than_the_post_buffer_and_the_body_limit(self):
        # 3 MiB of noise: git sends it chunked (over http.postBuffer), after a probe request.
        blob = os.urandom(3 << 20)
        src = self.repo("big", {"index.html": "<h1>big</h1>\n"})
        with open(os.path.join(src, "noise.bin"), "wb") as f:
            f.write(blob)
        self.git("add", "-A", cwd=src, check=True)
        self.git("commit", "-q", "-m", "noise", cwd=src, check=True)
        rc, out = self.git("push", self.remote("big", self.admin), "main", cwd=src)
        self.assertEqual(rc, 0, out)
        self.assertIn("big is running at", out)
        with open(os.path.join(self.d.ws, "big", "noise.bin"), "rb") as f:
            self.assertEqual(f.read(), blob)
        dest = os.path.join(self.tmp, "big-clone")
        rc, out = self.git("clone", "-q", self.remote("big", self.admin), dest)
        self.assertEqual(rc, 0, out)
        with open(os.path.join(dest, "noise.bin"), "rb") as f:
            self.assertEqual(f.read(), blob)
        # Past gateway.max_body (8m here): refused, nothing of it lands.
        with open(os.path.join(src, "more.bin"), "wb") as f:
            f.write(os.urandom(9 << 20))
        self.git("add", "-A", cwd=src, check=True)
        self.git("commit", "-q", "-m", "too much", cwd=src, check=True)
        before = self.git("ls-remote", self.remote("big", self.admin), "refs/heads/main", cwd=src)[1]
        rc, out = self.git("push", self.remote("big", self.admin), "main", cwd=src)
        self.assertNotEqual(rc, 0, out)
        # The gateway answers 413 and closes without reading the rest (no lingering close):
        # git shows the 413, or, when the close reaches it while it is still sending, the
        # broken pipe.
        self.assertTrue("413" in out or "Broken pipe" in out or "unexpected disconnect" in out, out)
        self.assertFalse(os.path.exists(os.path.join(self.d.ws, "big", "more.bin")))
        after = self.git("ls-remote", self.remote("big", self.admin), "refs/heads/main", cwd=src)[1]
        self.assertEqual(after, before, "the refused push moved no branch")

    def test_first_branch_pushed_is_deployed_and_a_forced_push_loses_nothing(self):
        src = self.repo("trunky", {"index.html": "<h1>trunk 1</h1>\n"}, branch="trunk")
        rc, out = self.git("push", self.remote("trunky", self.admin), "trunk", cwd=src)
        self.assertEqual(rc, 0, out)
        self.assertIn("Created workspace trunky from trunk", out)
        first = self.git("rev-parse", "HEAD", cwd=src, check=True)[1].strip()
        # An unrelated history is refused without --force (git's own rule)...
        other = self.repo("trunky-other", {"index.html": "<h1>rewritten</h1>\n"}, branch="trunk")
        rc, out = self.git("push", self.remote("trunky", self.admin), "trunk", cwd=other)
        self.assertNotEqual(rc, 0, out)
        self.assertIn("rejected", out)
        self.assertEqual(self.page("trunky"), (200, "<h1>trunk 1</h1>\n"))
        # ...and deployed with it; the replaced commit stays in the repository's reflog.
        rc, out = self.git("push", "--force", self.remote("trunky", self.admin), "trunk", cwd=other)
        self.assertEqual(rc, 0, out)
        self.assertIn("trunky is running at", out)
        self.assertIn("does not fast-forward trunky's folder", out)
        wait_until(lambda: self.page("trunky") == (200, "<h1>rewritten</h1>\n"), 20, "the forced push served")
        kept = glob.glob(os.path.join(self.d.data, "trash", "trunky-*", "index.html"))
        self.assertEqual(len(kept), 1, kept)
        with open(kept[0]) as f:
            self.assertEqual(f.read(), "<h1>trunk 1</h1>\n")
        repo = os.path.join(self.d.data, "git", "repos", "trunky.git")
        rc, out = self.git("--git-dir", repo, "reflog", "show", "refs/heads/trunk")
        self.assertEqual(rc, 0, out)
        self.assertIn(first[:7], out)
        rc, out = self.git("--git-dir", repo, "cat-file", "-t", first)
        self.assertEqual(out.strip(), "commit")

    def test_a_deleted_workspaces_history_is_not_inherited(self):
        src = self.repo("inherit-ann", {"index.html": "<h1>ann</h1>\n", "secret.txt": "ann-secret-4d2\n"})
        rc, out = self.git("push", self.remote("inherit", self.tokens[("ann", "deploy")]), "main", cwd=src)
        self.assertEqual(rc, 0, out)
        wait_until(lambda: call(self.d, "GET", "/workspaces/inherit", self.admin).status == 200, 20, "inherit listed")
        r = call(self.d, "DELETE", "/workspaces/inherit", self.admin)
        self.assertEqual(r.status, 200, r.text())
        wait_until(lambda: call(self.d, "GET", "/workspaces/inherit", self.admin).status == 404, 20, "inherit gone")
        # ben takes the name: a new workspace, a new repository.
        mine = self.repo("inherit-ben", {"index.html": "<h1>ben</h1>\n"})
        rc, out = self.git("push", self.remote("inherit", self.tokens[("ben", "deploy")]), "main", cwd=mine)
        self.assertEqual(rc, 0, out)
        self.assertIn("Created workspace inherit", out)
        dest = os.path.join(self.tmp, "inherit-clone")
        rc, out = self.git("clone", "-q", "--mirror", self.remote("inherit", self.tokens[("ben", "read")]), dest)
        self.assertEqual(rc, 0, out)
        rc, out = self.git("log", "--all", "--oneline", cwd=dest)
        self.assertEqual(len(out.strip().splitlines()), 1, out)
        rc, out = self.git("log", "--all", "-p", cwd=dest)
        self.assertEqual(rc, 0, out)
        self.assertNotIn("ann-secret", out)
        self.assertTrue(glob.glob(os.path.join(self.d.data, "trash", "inherit-*.git", "HEAD")))

    def test_node_app_is_installed_started_and_answers(self):
        if not shutil.which("node"):
            self.skipTest("node is not installed")
        src = self.repo("nodeapp", {
            "package.json": '{"name": "nodeapp", "version": "1.0.0", "scripts": {"start": "node server.js"}}\n',
            "server.js": ("const http = require('http');\n"
                          "console.log('nodeapp starting');\n"
                          "http.createServer((req, res) => res.end('hello from node v1\\n'))"
                          ".listen(process.env.PORT);\n"),
        })
        # While it deploys, the hook (and the git programs above it) run with an environment
        # built from nothing: none of the daemon's (AWS_SECRET_ACCESS_KEY, CK_* ...).
        cmd = [GIT, "-c", f"http.curloptResolve={CONTROL}:{self.d.port}:127.0.0.1", "push",
               self.remote("nodeapp", self.admin), "main"]
        proc = subprocess.Popen(cmd, cwd=src, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
        seen = {}
        while proc.poll() is None:
            seen.update(push_environments(self.d.data))
        out = proc.communicate(timeout=300)[0]
        self.assertEqual(proc.returncode, 0, out)
        self.assertIn("remote: =====> nodeapp is running at", out)
        self.assertIn("nodeapp starting", out)
        hooks = [env for argv, env in seen.items() if b"git-hook" in argv]
        self.assertTrue(hooks, f"the hook was never seen running: {list(seen)}")
        for argv, env in seen.items():
            self.assertNotIn(b"leak-7c1e", env, argv)
            self.assertNotIn(b"AWS_", env, argv)
            self.assertIn(b"CK_GIT_HOOK_FD=3", env, argv)
            self.assertIn(b"GIT_CONFIG_NOSYSTEM=1", env, argv)
        self.assertEqual(self.page("nodeapp"), (200, "hello from node v1\n"))
        # A second push restarts it on the new code.
        self.repo("nodeapp", {"server.js": ("const http = require('http');\n"
                                            "http.createServer((req, res) => res.end('hello from node v2\\n'))"
                                            ".listen(process.env.PORT);\n")})
        rc, out = self.git("push", self.remote("nodeapp", self.admin), "main", cwd=src, timeout=300)
        self.assertEqual(rc, 0, out)
        self.assertIn("remote: =====> nodeapp is running at", out)
        self.assertEqual(self.page("nodeapp"), (200, "hello from node v2\n"))


@unittest.skipUnless(GIT and shutil.which("openssl"), "needs the git CLI and openssl")
class GitPushTlsTest(unittest.TestCase):
    """The same push through the gateway's TLS listener: the deploy channel does not go
    through the network, so nothing changes but the scheme of the URL reported."""

    def test_push_over_https(self):
        from tlsutil import TestCA, TlsDaemon
        ca = TestCA()
        tmp = tempfile.mkdtemp(prefix="ck-git-tls-")
        env = git_env()
        cert, key, _ = ca.issue("example", "example.test", ["example.test"])
        d = TlsDaemon(ca, config={"gateway": {"tls": {"cert": cert, "key": key}}})
        try:
            d.prepare()
            d.start()
            token = admin_token(d)
            src = os.path.join(tmp, "site")
            os.makedirs(src)
            with open(os.path.join(src, "index.html"), "w") as f:
                f.write("<h1>over tls</h1>\n")
            for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "tls"]):
                subprocess.run([GIT, *args], cwd=src, env=env, check=True, capture_output=True)
            p = subprocess.run([GIT, "-c", f"http.sslCAInfo={ca.cert}",
                                "-c", f"http.curloptResolve=example.test:{d.port}:127.0.0.1",
                                "push", f"https://x:{token}@example.test:{d.port}/monitor/git/site.git", "main"],
                               cwd=src, env=env, capture_output=True, text=True, timeout=120)
            out = p.stdout + p.stderr
            self.assertEqual(p.returncode, 0, out)
            self.assertIn(f"remote: =====> site is running at https://example.test:{d.port}/site/", out)
            r = d.request("GET", "/site/")
            self.assertEqual((r.status, r.text()), (200, "<h1>over tls</h1>\n"))
            res = d.stop()
            self.assertEqual(res.returncode, 0, res)
        except BaseException:
            print(d.diagnostics())
            raise
        finally:
            if d.proc and d.proc.poll() is None:
                d.kill()
            d.cleanup()
            ca.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(env["HOME"], ignore_errors=True)


@unittest.skipUnless(GIT and shutil.which("node"), "needs the git CLI and node")
class GitPushShutdownTest(unittest.TestCase):
    """The daemon stops cleanly (exit 0, every process gone) while a push is deploying: the
    push's programs are killed and its threads joined."""

    def test_stop_during_a_deploy(self):
        from harness import Daemon
        d = Daemon()
        d.prepare()
        tmp = tempfile.mkdtemp(prefix="ck-git-stop-")
        env = git_env()
        try:
            d.start()
            token = admin_token(d)
            src = os.path.join(tmp, "slow")
            os.makedirs(src)
            with open(os.path.join(src, "package.json"), "w") as f:
                f.write('{"name": "slow", "version": "1.0.0", "scripts": {"start": "node server.js"}}\n')
            with open(os.path.join(src, "server.js"), "w") as f:
                f.write("console.log('slow-start-begins');\n"
                        "setTimeout(() => require('http').createServer((q, s) => s.end('late')).listen(process.env.PORT), 60000);\n")
            for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "slow"]):
                subprocess.run([GIT, *args], cwd=src, env=env, check=True, capture_output=True)
            url = f"http://x:{token}@127.0.0.1:{d.port}/monitor/git/slow.git"
            push = subprocess.Popen([GIT, "push", url, "main"], cwd=src, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
            log = os.path.join(d.data, "logs", "slow.log")
            def started():
                try:
                    with open(log) as f:
                        return "slow-start-begins" in f.read()
                except OSError:
                    return False
            wait_until(started, 60, "the app starting")
            wait_until(lambda: push_environments(d.data), 10, "the push's hook running")
            res = d.stop(timeout=30)
            self.assertEqual(res.returncode, 0, res)
            out = push.communicate(timeout=30)[0]
            self.assertIn("remote: -----> Deploying slow", out)
            self.assertNotIn("is running at", out)
            self.assertEqual(push_environments(d.data), {}, "a process of the push outlived the daemon")
        finally:
            if d.proc and d.proc.poll() is None:
                d.kill()
            d.cleanup()
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(env["HOME"], ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
