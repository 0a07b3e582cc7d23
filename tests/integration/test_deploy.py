"""`cloudyknight deploy` (issue 18, part 3) against a real daemon: a node app deployed from a
folder then answers through the gateway; an incremental deploy sends only the changed file (a
proxy between the CLI and the daemon counts the bytes the server received) and deletes what the
folder lost; a private workspace takes deploys from its owner and refuses another member, a read
token and an anonymous caller; hostile tars (paths out of the folder, .git, symlinks, sizes over
gateway.max_body, garbage, a stale manifest) are refused and change nothing; a plain tar without
manifest (curl -T) replaces the source; a git workspace gets a commit; --watch deploys each save;
S3 storage takes the deploy through the bucket.

Run: cd tests/integration && CK_BINARY=$PWD/../../build/cloudyknight python3 -m unittest -v test_deploy
"""

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import threading
import time
import unittest

from harness import binary, read_response, wait_until
from s3util import S3Server, s3rver_path
from test_auth import PASSWORD, admin_token, call
from test_remote_cli import CliCase, LocalhostControlDaemon, member_token

API = "/monitor/api/v1"
MAX_BODY = 2 * 1024 * 1024  # the daemon's gateway.max_body here

SERVER_JS = """const http = require('http');
const fs = require('fs');
http.createServer((req, res) => {
  const greeting = fs.readFileSync(__dirname + '/greeting.txt', 'utf8').trim();
  res.setHeader('Content-Type', 'text/plain');
  res.end(greeting + ' from node ' + process.version + ' at ' + req.url + '\\n');
}).listen(process.env.PORT, '127.0.0.1');
"""


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def read(path):
    with open(path) as f:
        return f.read()


def tree_digest(folder):
    """Path -> MD5 of every file under `folder` (node_modules, .git left out)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in ("node_modules", ".git")]
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = hashlib.md5(f.read()).hexdigest()
    return out


def tar_bytes(members, gzip=False):
    """A tar of (name, bytes | None for a folder | ('symlink', target))."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if gzip else "w", format=tarfile.PAX_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            elif isinstance(data, tuple):
                info.type = tarfile.SYMTYPE
                info.linkname = data[1]
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class CountingProxy:
    """A TCP proxy on 127.0.0.1 that counts the bytes clients send to `port`."""

    def __init__(self, port):
        self.upstream = port
        self.sent = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pipe, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(u, c, False), daemon=True).start()

    def _pipe(self, src, dst, count):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if count:
                    with self.lock:
                        self.sent += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            src.close()  # each direction closes the socket it reads

    def reset(self):
        with self.lock:
            self.sent = 0

    def close(self):
        self.stopping = True
        self.sock.close()


class DeployTest(CliCase):
    @classmethod
    def init_class_state(cls):
        cls.d = None
        cls.daemons = []

    @classmethod
    def set_up(cls):
        cls.d = d = LocalhostControlDaemon(
            fixtures=["static"],
            config={"gateway": {"control_host": "localhost", "max_body": str(MAX_BODY)},
                    "git": {"autocommit": "on-save"}})
        cls.daemons = [d]
        d.start()
        cls.admin = admin_token(d)
        for user in ("ann", "ben"):
            r = call(d, "POST", "/users", cls.admin, {"name": user, "password": PASSWORD, "role": "member"})
            assert r.status == 201, r.text()
        cls.ann = member_token(d, cls.admin, "ann")
        cls.ben = member_token(d, cls.admin, "ben")
        r = call(d, "POST", "/tokens", cls.admin, {"name": "reader", "scopes": ["read"]})
        assert r.status == 201, r.text()
        cls.read_token = r.json()["token"]
        cls.url = f"http://localhost:{d.port}"

    @classmethod
    def tearDownClass(cls):
        if cls.d is None:
            return
        res = cls.d.stop()
        cls.d.cleanup()
        assert res.returncode == 0, res

    def setUp(self):
        super().setUp()
        self.src = tempfile.mkdtemp(prefix="ck-deploy-src-")
        self.addCleanup(shutil.rmtree, self.src, True)

    def as_(self, token, url=None):
        return {"CK_URL": url or self.url, "CK_TOKEN": token}

    def deploy(self, *args, token=None, code=0, url=None, timeout=120):
        return self.ck("deploy", *args, env=self.as_(token or self.admin, url), code=code, timeout=timeout)

    def get(self, path):
        return self.d.request("GET", path)

    def put_source(self, name, body, token=None, query="?follow=0"):
        return self.d.request("PUT", f"{API}/workspaces/{name}/source{query}",
                              headers={"Authorization": f"Bearer {token or self.admin}",
                                       "Content-Type": "application/x-tar",
                                       "Host": f"localhost:{self.d.port}"},
                              body=body, timeout=60)

    # -- a node app, deployed and then answering ----------------------------------------------
    def test_deploy_a_node_app_then_it_answers(self):
        app = os.path.join(self.src, "hello-app")
        write(os.path.join(app, "package.json"), json.dumps({"name": "hello-app", "scripts": {"start": "node server.js"}}))
        write(os.path.join(app, "server.js"), SERVER_JS)
        write(os.path.join(app, "greeting.txt"), "hello")
        p = self.deploy(app)  # the name comes from the folder
        self.assertIn("Created hello-app", p.out)
        self.assertIn("hello-app is running at", p.out, p.out)
        self.assertIn(f"/hello-app/", p.out.strip().splitlines()[-1])
        r = self.get("/hello-app/x")
        self.assertEqual(r.status, 200, r.text())
        self.assertIn("hello from node", r.text())
        # A change: the app restarts with it, and the deploy follows until it answers again.
        write(os.path.join(app, "greeting.txt"), "bonjour")
        p = self.deploy(app)
        self.assertIn("Sending 1 of 3 files", p.out)
        self.assertIn("is running at", p.out)
        wait_until(lambda: "bonjour from node" in self.get("/hello-app/").text(), 30, "the new greeting")
        # Nothing changed: said so, nothing sent.
        p = self.deploy(app)
        self.assertIn("Sending 0 of 3 files", p.out)
        self.assertIn("Nothing changed", p.out)
        # An app that cannot start: the deploy fails (exit 1) with the reason and the log.
        write(os.path.join(app, "server.js"), "throw new Error('broken on purpose')\n")
        p = self.deploy(app, code=1, timeout=180)
        self.assertIn("!!!", p.out)
        self.assertIn("broken on purpose", p.out)

    def test_as_a_new_user_login_deploy_logs_run(self):
        """The issue's "done means": from a second folder, log in, deploy ./app, follow its log,
        run its tests."""
        work = os.path.join(self.src, "laptop")
        app = os.path.join(work, "app")
        write(os.path.join(app, "package.json"), json.dumps(
            {"name": "app", "scripts": {"start": "node server.js", "test": "node test.js"}}))
        write(os.path.join(app, "server.js"), SERVER_JS + "console.log('listening on', process.env.PORT);\n")
        write(os.path.join(app, "greeting.txt"), "hi")
        write(os.path.join(app, "test.js"), "console.log('1 test passed'); process.exit(0)\n")
        code, shown = self.ck_pty("login", self.url, "--user", "ann", answers=[("Password for ann", PASSWORD)])
        self.assertEqual(code, 0, shown)
        p = subprocess.run([binary(), "deploy", "./app", "--name", "app-ann"], cwd=work, env=self.env(),
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("app-ann is running at", p.stdout)
        self.assertEqual(self.get("/app-ann/").status, 200)
        logs = subprocess.Popen([binary(), "ws", "logs", "app-ann", "-f"], env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            line = logs.stdout.readline()
            deadline = time.monotonic() + 20
            while "listening on" not in line and time.monotonic() < deadline:
                line = logs.stdout.readline()
            self.assertIn("listening on", line)
        finally:
            logs.send_signal(signal.SIGINT)
            logs.communicate(timeout=20)
        p = self.ck("ws", "run", "app-ann", "--timeout", "60s", "--", "npm", "test")
        self.assertIn("1 test passed", p.out)

    # -- incremental: one changed file is one file sent -----------------------------------------
    def test_incremental_deploy_sends_only_the_changed_file(self):
        site = os.path.join(self.src, "site")
        for i in range(300):
            write(os.path.join(site, f"pages/p{i // 50}/page{i}.html"), f"<h1>page {i}</h1>\n" + "x" * 4000)
        write(os.path.join(site, "index.html"), "<h1>version one</h1>")
        write(os.path.join(site, ".gitignore"), "secret.env\n")
        write(os.path.join(site, "secret.env"), "TOKEN=never-sent")
        write(os.path.join(site, "node_modules/dep/index.js"), "never sent either")
        proxy = CountingProxy(self.d.port)
        self.addCleanup(proxy.close)
        via = f"http://localhost:{proxy.port}"
        p = self.deploy(site, "--name", "incr", url=via)
        full = proxy.sent
        self.assertGreater(full, 300 * 4000, "the first deploy must send every file")
        served = os.path.join(self.d.ws, "incr")
        self.assertFalse(os.path.exists(os.path.join(served, "secret.env")), "an ignored file was deployed")
        self.assertFalse(os.path.exists(os.path.join(served, "node_modules")), "node_modules was deployed")
        self.assertEqual(self.get("/incr/").text(), "<h1>version one</h1>")

        write(os.path.join(site, "index.html"), "<h1>version two</h1>")
        os.remove(os.path.join(site, "pages/p0/page0.html"))
        proxy.reset()
        p = self.deploy(site, "--name", "incr", url=via)
        self.assertIn("Sending 1 of 301 files", p.out)
        self.assertIn("1 to delete", p.out)
        # What went up: two requests' headers, the manifest (~80 bytes per file) and one file.
        self.assertLess(proxy.sent, 40_000, f"an incremental deploy sent {proxy.sent} bytes (the first sent {full})")
        self.assertEqual(self.get("/incr/").text(), "<h1>version two</h1>")
        self.assertEqual(self.get("/incr/pages/p0/page0.html").status, 404)
        self.assertTrue(os.path.exists(os.path.join(served, "pages/p0/page1.html")))
        # Files the ignore rules skip stay where they are on the server too.
        write(os.path.join(served, "server-only.env"), "kept")
        write(os.path.join(served, ".gitignore"), "secret.env\nserver-only.env\n")
        write(os.path.join(site, ".gitignore"), "secret.env\nserver-only.env\n")
        self.deploy(site, "--name", "incr", "--detach")
        self.assertTrue(os.path.exists(os.path.join(served, "server-only.env")))
        # The deploy's file index of the workspace goes with it when it is deleted.
        index = os.path.join(self.d.data, "deploy-index", "incr.json")
        self.assertTrue(os.path.exists(index), "no deploy index was kept for 'incr'")
        r = self.d.request("DELETE", f"{API}/workspaces/incr",
                           headers={"Authorization": f"Bearer {self.admin}", "Host": f"localhost:{self.d.port}"})
        self.assertEqual(r.status, 200, r.text())
        self.assertFalse(os.path.exists(index), "the deleted workspace's deploy index was left behind")

    def test_a_source_larger_than_one_request_goes_in_parts(self):
        site = os.path.join(self.src, "large")
        blobs = {f"assets/blob{i}.bin": os.urandom(160 * 1024) for i in range(32)}  # 5 MiB > max_body
        for rel, data in blobs.items():
            os.makedirs(os.path.dirname(os.path.join(site, rel)), exist_ok=True)
            with open(os.path.join(site, rel), "wb") as f:
                f.write(data)
        write(os.path.join(site, "index.html"), "large site")
        p = self.deploy(site, "--detach")
        self.assertIn("Sent part 1 of", p.out)
        served = os.path.join(self.d.ws, "large")
        for rel, data in blobs.items():
            with open(os.path.join(served, rel), "rb") as f:
                self.assertEqual(f.read(), data, rel)
        # One file alone over the limit: a clear refusal, naming the file and the setting.
        with open(os.path.join(site, "huge.bin"), "wb") as f:
            f.write(os.urandom(MAX_BODY + 1))
        p = self.deploy(site, "--detach", code=1)
        self.assertOneLine(p.err, "huge.bin")
        self.assertIn("gateway.max_body", p.err)

    # -- who may deploy ---------------------------------------------------------------------------
    def test_private_workspace_takes_deploys_from_its_owner_only(self):
        app = os.path.join(self.src, "mine")
        write(os.path.join(app, "index.html"), "ann's page")
        p = self.deploy(app, "--private", token=self.ann)
        self.assertIn("(private)", p.out)
        r = call(self.d, "GET", "/workspaces/mine", self.admin)
        self.assertEqual(r.json().get("public"), False, r.text())
        served = os.path.join(self.d.ws, "mine")
        before = tree_digest(served)
        write(os.path.join(app, "index.html"), "ben was here")
        # Another member does not see it (not found), and cannot take the name either.
        p = self.deploy(app, "--name", "mine", token=self.ben, code=1)
        self.assertOneLine(p.err, "already exists")
        # A read token cannot deploy; nobody anonymous can.
        p = self.deploy(app, "--name", "mine", token=self.read_token, code=4)
        r = self.put_source("mine", tar_bytes([("index.html", b"anon")]), token="ck_not_a_token")
        self.assertEqual(r.status, 401, r.text())
        r = self.d.request("GET", f"{API}/workspaces/mine/source", headers={"Host": f"localhost:{self.d.port}"})
        self.assertEqual(r.status, 401, r.text())
        r = call(self.d, "GET", "/workspaces/mine/source", self.ben)
        self.assertEqual(r.status, 404, r.text())
        self.assertEqual(tree_digest(served), before, "a refused deploy changed files")
        # The owner can; a deploy from a folder without workspace.json keeps it private.
        write(os.path.join(app, "index.html"), "ann's second page")
        self.deploy(app, "--name", "mine", token=self.ann)
        self.assertEqual(read(os.path.join(served, "index.html")), "ann's second page")
        self.assertTrue(os.path.exists(os.path.join(served, "workspace.json")))
        self.assertEqual(call(self.d, "GET", "/workspaces/mine/source", self.ben).status, 404)
        p = self.deploy(app, "--name", "mine", "--detach", token=self.ann)
        self.assertIn("up to date", p.out)
        # A workspace.json that does not say "public" would publish it: refused, nothing changes.
        write(os.path.join(app, "workspace.json"), json.dumps({"type": "static"}))
        write(os.path.join(app, "index.html"), "ann's third page")
        p = self.deploy(app, "--name", "mine", token=self.ann, code=1)
        self.assertOneLine(p.err, '"public": false')
        self.assertEqual(read(os.path.join(served, "index.html")), "ann's second page")
        write(os.path.join(app, "workspace.json"), json.dumps({"type": "static", "public": False}))
        self.deploy(app, "--name", "mine", token=self.ann)
        self.assertEqual(read(os.path.join(served, "index.html")), "ann's third page")
        r = call(self.d, "GET", "/workspaces/mine", self.admin)
        self.assertEqual(r.json().get("public"), False, r.text())

    # -- hostile tars -----------------------------------------------------------------------------
    def test_hostile_tars_are_refused_and_change_nothing(self):
        app = os.path.join(self.src, "target")
        write(os.path.join(app, "index.html"), "safe")
        write(os.path.join(app, "run.sh"), "#!/bin/sh\necho hi\n")
        os.chmod(os.path.join(app, "run.sh"), 0o755)
        self.deploy(app, "--detach")
        served = os.path.join(self.d.ws, "target")
        self.assertTrue(os.stat(os.path.join(served, "run.sh")).st_mode & 0o100, "the exec bit was lost")
        before = tree_digest(served)
        outside = os.path.join(self.d.tmp, "escaped.txt")
        cases = [
            ("../escaped.txt", tar_bytes([("../escaped.txt", b"out")]), 400),
            ("absolute", tar_bytes([(outside, b"out")]), 400),
            (".git", tar_bytes([(".git/hooks/post-commit", b"#!/bin/sh\nid\n")]), 400),
            ("symlink", tar_bytes([("index.html", ("symlink", "/etc/passwd"))]), 400),
            ("garbage", b"this is no tar" * 100, 400),
            ("duplicate", tar_bytes([("a.txt", b"1"), ("./a.txt", b"2")]), 400),
            ("gzip bomb", tar_bytes([("zeros.bin", b"\0" * (MAX_BODY + 4096))], gzip=True), 413),
        ]
        for what, body, status in cases:
            r = self.put_source("target", body)
            self.assertEqual(r.status, status, f"{what}: {r.text()}")
            self.assertIn("error", r.json(), what)
            self.assertEqual(tree_digest(served), before, f"{what} changed the workspace")
            self.assertFalse(os.path.exists(outside), f"{what} wrote outside the folder")
        # A body over gateway.max_body is refused from its Content-Length, before it is sent.
        with socket.create_connection(("127.0.0.1", self.d.port), timeout=10) as c:
            c.sendall((f"PUT {API}/workspaces/target/source HTTP/1.1\r\nHost: localhost:{self.d.port}\r\n"
                       f"Authorization: Bearer {self.admin}\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n").encode())
            r = read_response(c, "PUT")  # the whole answer, however many segments it comes in
        self.assertEqual(r.status, 413, r.text())
        self.assertIn("gateway.max_body", r.text())
        # A manifest that says a file is still there when it changed on the server: 409.
        write(os.path.join(served, "index.html"), "edited on the server")
        manifest = json.dumps({"version": 1, "files": [
            ["index.html", 4, hashlib.md5(b"safe").hexdigest(), False]]}).encode()
        r = self.put_source("target", tar_bytes([(".cloudyknight-deploy.json", manifest)]))
        self.assertEqual(r.status, 409, r.text())
        self.assertEqual(read(os.path.join(served, "index.html")), "edited on the server")
        # An unknown workspace, a bad name.
        self.assertEqual(self.put_source("nope", tar_bytes([("a", b"1")])).status, 404)
        self.assertEqual(self.put_source("Bad_Name", tar_bytes([("a", b"1")])).status, 400)

    def test_a_plain_tar_is_the_whole_source(self):
        app = os.path.join(self.src, "whole")
        write(os.path.join(app, "index.html"), "one")
        write(os.path.join(app, "old.html"), "gone soon")
        self.deploy(app, "--detach")
        r = self.put_source("whole", tar_bytes([("./", None), ("./index.html", b"two"), ("./new/page.html", b"new")],
                                               gzip=True))
        self.assertEqual(r.status, 200, r.text())
        doc = r.json()
        self.assertEqual((doc["written"], doc["deleted"], doc["unchanged"]), (2, 1, 0), doc)
        served = os.path.join(self.d.ws, "whole")
        self.assertEqual(tree_digest(served).keys(), {"index.html", "new/page.html"})
        self.assertEqual(self.get("/whole/new/page.html").text(), "new")
        r = call(self.d, "GET", "/workspaces/whole/source", self.admin)
        listed = {f[0]: f for f in r.json()["files"]}
        self.assertEqual(listed["index.html"][1:3], [3, hashlib.md5(b"two").hexdigest()])

    # -- git: a deploy is a commit -----------------------------------------------------------------
    def test_a_git_workspace_gets_a_commit(self):
        app = os.path.join(self.src, "gitted")
        write(os.path.join(app, "index.html"), "v1")
        self.deploy(app, "--detach")
        served = os.path.join(self.d.ws, "gitted")
        git = ["git", "-C", served, "-c", "user.name=t", "-c", "user.email=t@t"]
        subprocess.run(git + ["init", "-q", "-b", "main"], check=True)
        subprocess.run(git + ["add", "-A"], check=True)
        subprocess.run(git + ["commit", "-qm", "start"], check=True)
        write(os.path.join(app, "index.html"), "v2")
        self.deploy(app, "--detach")
        def committed():
            out = subprocess.run(git + ["log", "--format=%s", "-n", "1"], capture_output=True, text=True).stdout
            return "deploy" in out
        wait_until(committed, 20, "the deploy's commit")
        status = subprocess.run(git + ["status", "--porcelain"], capture_output=True, text=True).stdout
        self.assertEqual(status.strip(), "", "the deploy left uncommitted changes")

    # -- watch ----------------------------------------------------------------------------------------
    def test_watch_deploys_each_save(self):
        app = os.path.join(self.src, "watched")
        write(os.path.join(app, "index.html"), "first")
        proc = subprocess.Popen([binary(), "deploy", app, "--watch"],
                                env=self.env(self.as_(self.admin)), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            wait_until(lambda: self.get("/watched/").text() == "first", 30, "the first deploy")
            time.sleep(0.5)
            write(os.path.join(app, "index.html"), "second")
            wait_until(lambda: self.get("/watched/").text() == "second", 30, "the save deployed")
        finally:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 0, err.decode())
        self.assertIn(b"watching", out)


@unittest.skipUnless(os.access(s3rver_path(), os.X_OK), "s3rver not found (scripts/s3rver.sh or CK_S3RVER)")
class DeployS3Test(CliCase):
    """S3 storage: the deploy goes through the bucket first, then the mirror serves it."""

    @classmethod
    def init_class_state(cls):
        cls.d = cls.s3 = None
        cls.daemons = []

    @classmethod
    def set_up(cls):
        cls.s3 = s3 = S3Server()
        s3.start()
        s3.make_bucket("src")
        env = {k: v for k, v in s3.client_env({}).items() if k.startswith("AWS_")}
        cls.d = d = LocalhostControlDaemon(workspaces=False, args=s3.storage_args("src", "ws"), env=env,
                                           config={"gateway": {"control_host": "localhost"},
                                                   "storage": {"list_interval": "500ms"}})
        cls.daemons = [d]
        d.start()
        cls.admin = admin_token(d)
        cls.url = f"http://localhost:{d.port}"

    @classmethod
    def tearDownClass(cls):
        for obj in (cls.d, cls.s3):
            if obj is not None:
                obj.stop()
        if cls.d is not None:
            cls.d.cleanup()

    def test_deploy_goes_through_the_bucket(self):
        src = tempfile.mkdtemp(prefix="ck-deploy-s3-")
        self.addCleanup(shutil.rmtree, src, True)
        app = os.path.join(src, "bucketed")
        write(os.path.join(app, "index.html"), "from the bucket")
        write(os.path.join(app, "old.html"), "old")
        self.ck("deploy", app, "--detach", env={"CK_URL": self.url, "CK_TOKEN": self.admin}, timeout=120)
        wait_until(lambda: self.d.request("GET", "/bucketed/").text() == "from the bucket", 30, "the page served")
        write(os.path.join(app, "index.html"), "changed")
        os.remove(os.path.join(app, "old.html"))
        p = self.ck("deploy", app, "--detach", env={"CK_URL": self.url, "CK_TOKEN": self.admin}, timeout=120)
        self.assertIn("1 written, 1 deleted", p.out)
        keys = self.s3.aws("s3api", "list-objects-v2", "--bucket", "src", "--prefix", "ws/bucketed/", check=False)
        listing = json.loads(keys.stdout or "{}")
        names = sorted(o["Key"] for o in listing.get("Contents", []))
        self.assertEqual(names, ["ws/bucketed/index.html"], keys.stdout)
        wait_until(lambda: self.d.request("GET", "/bucketed/").text() == "changed", 30, "the change served")


if __name__ == "__main__":
    unittest.main()
