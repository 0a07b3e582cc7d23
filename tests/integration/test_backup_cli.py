"""`cloudyknight backup [list|check|prune]` and `cloudyknight restore` (issue 17) end to end:
the real binary, two s3rver instances as two destinations, dir storage and S3 storage.

- A backup to two destinations; `backup list --json` shows both; an unchanged second backup
  writes one object per workspace and destination.
- One destination down (nothing listening): exit 1, one stderr line naming it and why, and the
  other destination still got its snapshots.
- `restore --point-in-time` brings back a deleted file; `--mode mirror` makes a broken workspace
  exactly the snapshot; `--dry-run` changes nothing; `--to DIR`.
- An encrypted destination with CK_BACKUP_KEY; without it / with a wrong one, a clear error.
- `--dest` with an unknown name lists the configured names; `backup check` and `prune`.
- S3 storage: the workspaces are read from the storage bucket, and a restore writes back to it.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_backup_cli
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import unittest
import urllib.request

from harness import binary, free_port
from s3util import S3Server


def make_bucket(server, bucket):
    # s3rver takes any (or no) signature.
    req = urllib.request.Request(f"{server.endpoint}/{bucket}", method="PUT")
    urllib.request.urlopen(req, timeout=10).read()


def count_objects(server, bucket):
    out = server.aws("s3api", "list-objects-v2", "--bucket", bucket, "--output", "json").stdout
    return len(json.loads(out or "{}").get("Contents", []))


class BackupCli(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.a = S3Server().start()
        cls.b = S3Server().start()
        make_bucket(cls.a, "bk-a")
        make_bucket(cls.b, "bk-b")
        make_bucket(cls.a, "bk-enc")
        make_bucket(cls.a, "storage")

    @classmethod
    def tearDownClass(cls):
        cls.a.stop()
        cls.b.stop()

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ck-backup-cli-")
        self.ws = os.path.join(self.tmp, "workspaces")
        os.makedirs(os.path.join(self.ws, "site", "css"))
        os.makedirs(os.path.join(self.ws, "api"))
        self.write("site/index.html", "<h1>v1</h1>")
        self.write("site/css/site.css", "body{}")
        self.write("api/main.py", "print('hi')")
        self.env = self.a.client_env()
        self.env["XDG_CACHE_HOME"] = os.path.join(self.tmp, "cache")
        self.env["TZ"] = "UTC"
        self.env.pop("CK_BACKUP_KEY", None)
        self.prefix = f"run{time.monotonic_ns()}"

    def tearDown(self):
        if not os.environ.get("CK_KEEP_TMP"):
            shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, rel, text):
        path = os.path.join(self.ws, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def read(self, rel, root=None):
        with open(os.path.join(root or self.ws, rel)) as f:
            return f.read()

    def config(self, destinations, storage=None, keep=None):
        lines = []
        if storage:
            lines.append(storage)
        else:
            lines.append(f"storage: {{kind: dir, path: {json.dumps(self.ws)}}}")
        lines.append("backup:")
        lines.append("  destinations:")
        for d in destinations:
            lines.append("    - " + json.dumps(d))
        if keep:
            lines.append("  keep: " + json.dumps(keep))
        path = os.path.join(self.tmp, "ck.yaml")
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def dest(self, name, server, bucket, **extra):
        d = {"name": name, "url": f"s3://{bucket}/{self.prefix}", "endpoint": server.endpoint}
        d.update(extra)
        return d

    def ck(self, *args, env=None, check=None):
        r = subprocess.run([binary(), *args], env=env or self.env, capture_output=True, text=True,
                           timeout=300)
        if check is not None:
            self.assertEqual(r.returncode, check, f"{args}: {r.stdout}\n{r.stderr}")
        return r

    def test_two_destinations_list_and_unchanged_backup(self):
        cfg = self.config([self.dest("a", self.a, "bk-a"), self.dest("b", self.b, "bk-b")])
        self.ck("backup", "--config", cfg, check=0)
        listed = json.loads(self.ck("backup", "list", "--json", "--config", cfg, check=0).stdout)
        pairs = sorted((s["destination"], s["workspace"]) for s in listed["snapshots"])
        self.assertEqual(pairs, [("a", "api"), ("a", "site"), ("b", "api"), ("b", "site")])
        site = [s for s in listed["snapshots"] if s["workspace"] == "site"][0]
        self.assertEqual(site["files"], 2)
        before = count_objects(self.a, "bk-a")
        out = self.ck("backup", "--config", cfg, check=0).stdout
        self.assertEqual(count_objects(self.a, "bk-a"), before + 2, out)  # one per workspace
        table = self.ck("backup", "list", "--config", cfg, "--dest", "b", "--workspace", "site",
                        check=0).stdout
        self.assertIn("DESTINATION", table)
        self.assertEqual(len(table.strip().splitlines()), 3)  # header + two snapshots

    def test_one_destination_down_does_not_stop_the_other(self):
        down = {"name": "down", "url": "s3://nowhere/x", "endpoint": f"http://127.0.0.1:{free_port()}"}
        cfg = self.config([down, self.dest("b", self.b, "bk-b")])
        r = self.ck("backup", "--config", cfg, check=1)
        lines = [l for l in r.stderr.splitlines() if "destination down" in l]
        self.assertEqual(len(lines), 1, r.stderr)
        listed = json.loads(self.ck("backup", "list", "--json", "--dest", "b", "--config", cfg,
                                    check=0).stdout)
        self.assertEqual(len(listed["snapshots"]), 2)

    def test_point_in_time_and_mirror_restore(self):
        cfg = self.config([self.dest("a", self.a, "bk-a")])
        self.ck("backup", "--config", cfg, "--workspace", "site", check=0)
        time.sleep(1.1)
        first = json.loads(self.ck("backup", "list", "--json", "--config", cfg, check=0).stdout)
        t1 = first["snapshots"][0]["time"]  # UTC, and TZ=UTC here
        os.remove(os.path.join(self.ws, "site", "css", "site.css"))
        self.write("site/index.html", "<h1>v2</h1>")
        self.ck("backup", "--config", cfg, "--workspace", "site", check=0)
        point = t1.replace("T", " ").replace("Z", "")
        dry = self.ck("restore", "--config", cfg, "--workspace", "site", "--point-in-time", point,
                      "--dry-run", check=0)
        self.assertIn("would write css/site.css", dry.stdout)
        self.assertFalse(os.path.exists(os.path.join(self.ws, "site", "css", "site.css")))
        self.ck("restore", "--config", cfg, "--workspace", "site", "--point-in-time", point, check=0)
        self.assertEqual(self.read("site/css/site.css"), "body{}")  # the deleted file is back
        self.assertEqual(self.read("site/index.html"), "<h1>v1</h1>")
        # A broken workspace: junk added, a file emptied; mirror restore of the latest.
        self.write("site/junk.js", "oops")
        self.write("site/index.html", "")
        self.ck("restore", "--config", cfg, "--workspace", "site", "--mode", "mirror", check=0)
        self.assertFalse(os.path.exists(os.path.join(self.ws, "site", "junk.js")))
        self.assertEqual(self.read("site/index.html"), "<h1>v2</h1>")
        self.assertFalse(os.path.exists(os.path.join(self.ws, "site", "css", "site.css")))
        # --to: elsewhere, the live workspace untouched.
        to = os.path.join(self.tmp, "elsewhere")
        self.ck("restore", "--config", cfg, "--workspace", "site", "--to", to, "--point-in-time",
                point, check=0)
        self.assertEqual(self.read("index.html", to), "<h1>v1</h1>")
        r = self.ck("restore", "--config", cfg, "--workspace", "site", "--point-in-time",
                    "2001-01-01 00:00:00")
        self.assertEqual(r.returncode, 1)
        self.assertIn("the oldest is from", r.stderr)

    def test_encrypted_destination_needs_the_key(self):
        cfg = self.config([self.dest("vault", self.a, "bk-enc", encrypt=True)])
        r = self.ck("backup", "--config", cfg)
        self.assertEqual(r.returncode, 1)
        self.assertIn("CK_BACKUP_KEY", r.stderr)
        env = dict(self.env, CK_BACKUP_KEY="s3cret")
        self.ck("backup", "--config", cfg, env=env, check=0)
        r = self.ck("backup", "list", "--config", cfg)
        self.assertEqual(r.returncode, 1)
        self.assertIn("is encrypted: set backup.key", r.stderr)
        r = self.ck("backup", "list", "--config", cfg, env=dict(self.env, CK_BACKUP_KEY="nope"))
        self.assertEqual(r.returncode, 1)
        self.assertIn("the key does not open", r.stderr)
        self.ck("backup", "check", "--config", cfg, env=env, check=0)
        to = os.path.join(self.tmp, "out")
        self.ck("restore", "--config", cfg, "--workspace", "api", "--to", to, env=env, check=0)
        self.assertEqual(self.read("main.py", to), "print('hi')")

    def test_unknown_destination_check_and_prune(self):
        cfg = self.config([self.dest("a", self.a, "bk-a"), self.dest("b", self.b, "bk-b")],
                          keep={"last": 1, "hourly": 0, "daily": 0, "weekly": 0, "monthly": 0})
        r = self.ck("backup", "--config", cfg, "--dest", "nope")
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("configured: a, b", r.stderr)
        for i in range(3):
            self.write("api/main.py", f"print({i})")
            self.ck("backup", "--config", cfg, "--dest", "a", check=0)
        self.ck("backup", "prune", "--config", cfg, "--dest", "a", check=0)
        listed = json.loads(self.ck("backup", "list", "--json", "--dest", "a", "--config", cfg,
                                    check=0).stdout)
        self.assertEqual(len(listed["snapshots"]), 2)  # the newest of each workspace
        out = self.ck("backup", "check", "--config", cfg, "--dest", "a", check=0).stdout
        self.assertIn("0 damaged", out)

    def test_s3_storage(self):
        env = dict(self.env)
        storage = (f"storage: {{kind: s3, bucket: storage, prefix: {self.prefix}, "
                   f"endpoint: {json.dumps(self.a.endpoint)}}}")
        cfg = self.config([self.dest("b", self.b, "bk-b")], storage=storage)
        self.ck("workspace", "upload", "site", os.path.join(self.ws, "site"), "--config", cfg,
                env=env, check=0)
        self.ck("backup", "--config", cfg, env=env, check=0)
        listed = json.loads(self.ck("backup", "list", "--json", "--config", cfg, env=env,
                                    check=0).stdout)
        self.assertEqual([s["workspace"] for s in listed["snapshots"]], ["site"])
        # The stored workspace breaks: a file deleted, junk added; next to it an object the
        # ignore rules skip (another tool's build output). A mirror restore fixes the bucket.
        base = f"s3://storage/{self.prefix}/site"
        self.a.aws("s3", "rm", f"{base}/index.html")
        junk = os.path.join(self.tmp, "junk.txt")
        with open(junk, "w") as f:
            f.write("junk")
        self.a.aws("s3", "cp", junk, f"{base}/junk.txt")
        self.a.aws("s3", "cp", junk, f"{base}/dist/bundle.js")
        self.ck("restore", "--config", cfg, "--workspace", "site", "--mode", "mirror", env=env,
                check=0)
        got = self.a.aws("s3", "cp", f"{base}/index.html", "-").stdout
        self.assertEqual(got, "<h1>v1</h1>")
        keys = self.a.aws("s3", "ls", "--recursive", f"{base}/").stdout
        self.assertNotIn("junk.txt", keys)
        self.assertIn("dist/bundle.js", keys)  # not source: a mirror restore leaves it alone


if __name__ == "__main__":
    unittest.main()
