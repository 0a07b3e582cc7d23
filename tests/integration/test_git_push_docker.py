"""git push to deploy with the docker runtime (issue 16, part 3): a Node.js app pushed through
/monitor/git is installed and started in its container, the push streams its install and start
log and ends with its URL; a second push restarts it on the new code, which answers as soon
as the push has said so. Needs a Docker engine and cloudyknight/node:bookworm (as
test_docker_runtime); CK_NO_DOCKER=1 skips it when no engine answers.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_git_push_docker
"""

import http.client
import os
import shutil
import subprocess
import tempfile
import unittest

from test_auth import admin_token
from test_docker_runtime import DOCKER, NODE_IMAGE, DockerCase
from test_git_push import GIT, git_env

NODE_TIMEOUT = 300


def setUpModule():
    if not GIT:
        raise unittest.SkipTest("the git CLI is not installed (apt-get install git)")
    try:
        DOCKER.ping()
    except (OSError, http.client.HTTPException) as e:
        if os.environ.get("CK_NO_DOCKER") == "1":
            raise unittest.SkipTest(f"CK_NO_DOCKER=1 and no Docker engine answers ({e})")
        raise RuntimeError(f"no Docker engine answers ({e}); start one, or set CK_NO_DOCKER=1") from None
    if not DOCKER.image_exists(NODE_IMAGE):
        raise RuntimeError(f"{NODE_IMAGE} is missing: run `cloudyknight images build node`")


class GitPushDockerTest(DockerCase):
    @classmethod
    def set_up(cls):
        cls.name = cls.ws_name("gitpush")
        cls.d = d = cls.new_daemon()
        d.prepare()
        d.start()
        cls.token = admin_token(d)
        cls.tmp = tempfile.mkdtemp(prefix="ck-git-docker-")
        cls.env = git_env()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(getattr(cls, "tmp", ""), ignore_errors=True)
            shutil.rmtree(getattr(cls, "env", {}).get("HOME", ""), ignore_errors=True)

    def git(self, *args, cwd=None):
        p = subprocess.run([GIT, *args], cwd=cwd, env=self.env, capture_output=True, text=True,
                           timeout=NODE_TIMEOUT)
        return p.returncode, p.stdout + p.stderr

    def commit(self, src, files):
        for rel, text in files.items():
            with open(os.path.join(src, rel), "w") as f:
                f.write(text)
        for args in (["add", "-A"], ["commit", "-q", "-m", "change"]):
            rc, out = self.git(*args, cwd=src)
            self.assertEqual(rc, 0, out)

    def test_push_installs_starts_and_restarts_in_a_container(self):
        src = os.path.join(self.tmp, "app")
        os.makedirs(src)
        rc, out = self.git("init", "-q", "-b", "main", cwd=src)
        self.assertEqual(rc, 0, out)
        server = ("const http = require('http');\n"
                  "console.log('docker app {v} starting');\n"
                  "http.createServer((q, s) => s.end('docker {v}\\n')).listen(process.env.PORT, '0.0.0.0');\n")
        self.commit(src, {
            "package.json": '{"name": "gp", "version": "1.0.0", "scripts": {"start": "node server.js"}}\n',
            "server.js": server.format(v="v1")})
        remote = f"http://x:{self.token}@127.0.0.1:{self.d.port}/monitor/git/{self.name}.git"
        rc, out = self.git("push", remote, "main", cwd=src)
        self.assertEqual(rc, 0, out)
        self.assertIn(f"remote: -----> Created workspace {self.name} from main", out)
        self.assertIn("docker app v1 starting", out)
        self.assertIn(f"remote: =====> {self.name} is running at http://127.0.0.1:{self.d.port}/{self.name}/", out)
        r = self.d.request("GET", f"/{self.name}/")
        self.assertEqual((r.status, r.text()), (200, "docker v1\n"))
        self.assertTrue(DOCKER.containers(self.name, running_only=True))
        # The second push restarts the container on the new code before it says so.
        self.commit(src, {"server.js": server.format(v="v2")})
        rc, out = self.git("push", remote, "main", cwd=src)
        self.assertEqual(rc, 0, out)
        self.assertIn("docker app v2 starting", out)
        self.assertIn(f"remote: =====> {self.name} is running at", out)
        r = self.d.request("GET", f"/{self.name}/")
        self.assertEqual((r.status, r.text()), (200, "docker v2\n"))


if __name__ == "__main__":
    unittest.main()
