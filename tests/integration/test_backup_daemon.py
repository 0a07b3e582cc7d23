"""Backups in the daemon (issue 17, part 5), against two real s3rver destinations: the schedule
runs as one job per destination at start (a destination never backed up is due at once), one
destination down fails its own job (retried with backoff, reported) while the other succeeds,
GET /backups shows each destination's last run and each workspace's last snapshot, POST /backups
runs now, POST /workspaces/{name}/restore brings a deleted file back through the storage (the
workspace restarts), a dry run answers the plan, point_in_time picks the older snapshot, events
and metrics say what happened, and members only see and act on their own workspaces.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_backup_daemon
"""

import json
import os
import time
import unittest
import urllib.parse

from harness import ClassSetUp, Daemon, EventStream, free_service_port_range, wait_until
from s3util import S3Server, s3rver_path
from test_auth import PASSWORD, admin_token, call, set_cookie_parts

HAVE_S3RVER = os.access(s3rver_path(), os.X_OK)
NO_S3RVER = f"s3rver not found at {s3rver_path()} (run scripts/s3rver.sh or set CK_S3RVER)"


def aws_env(s3):
    return {k: v for k, v in s3.client_env({}).items() if k.startswith("AWS_")}


def objects(s3, bucket, prefix=""):
    r = s3.aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix, check=False)
    if r.returncode != 0 or not r.stdout.strip():
        return []
    return [o["Key"] for o in json.loads(r.stdout).get("Contents", [])]


@unittest.skipUnless(HAVE_S3RVER, NO_S3RVER)
class BackupDaemonTest(ClassSetUp):
    @classmethod
    def init_class_state(cls):
        cls.s3a = cls.s3b = cls.d = None
        cls.daemons = []

    @classmethod
    def set_up(cls):
        cls.s3a = S3Server()
        cls.s3a.start()
        cls.s3b = S3Server()
        cls.s3b.start()
        cls.s3a.make_bucket("bka")
        # s3b's bucket is made only later: until then its destination fails.
        lo, hi = free_service_port_range()
        cls.config = {
            "runtime": {"ports": f"{lo}-{hi}"},
            "jobs": {"backoff": "1s"},
            "backup": {
                "schedule": "1h",
                "destinations": [
                    {"name": "near", "url": "s3://bka/ck", "endpoint": cls.s3a.endpoint},
                    {"name": "far", "url": "s3://bkb/ck", "endpoint": cls.s3b.endpoint},
                ],
            },
        }
        cls.d = Daemon(fixtures=["static", ("static", "notes"), ("static", "secret")], config=cls.config,
                       env=aws_env(cls.s3a))
        cls.daemons = [cls.d]
        cls.d.prepare()
        with open(os.path.join(cls.d.ws, "notes", "keep.txt"), "w") as f:
            f.write("version one\n")
        with open(os.path.join(cls.d.ws, "secret", "workspace.json"), "w") as f:
            json.dump({"public": False}, f)
        cls.d.start()
        cls.admin = admin_token(cls.d)
        r = call(cls.d, "POST", "/users", cls.admin, {"name": "mia", "password": PASSWORD, "role": "member"})
        assert r.status == 201, r.text()

    @classmethod
    def tearDownClass(cls):
        for obj in (cls.d, cls.s3a, cls.s3b):
            if obj:
                obj.stop()

    def api(self, method, path, body=None, token=None):
        return call(self.d, method, path, token or self.admin, body)

    def backups(self):
        r = self.api("GET", "/backups")
        self.assertEqual(r.status, 200, r.text())
        return r.json()

    def dest(self, name):
        return next(d for d in self.backups()["destinations"] if d["name"] == name)

    def jobs(self, kind="backup"):
        r = self.api("GET", "/jobs?limit=200")
        self.assertEqual(r.status, 200, r.text())
        return [j for j in r.json()["jobs"] if j["kind"] == kind]

    def test_1_schedule_runs_at_start_one_destination_down(self):
        # near: backed up at start; far (no bucket yet): its job fails and waits to retry.
        wait_until(lambda: (self.dest("near").get("last") or {}).get("ok"), 60, "the first backup to near")
        near = self.dest("near")
        self.assertEqual(near["mode"], "incremental")
        self.assertEqual(near["url"], "s3://bka/ck")
        self.assertGreaterEqual(near["last"]["workspaces"], 3, near)
        snaps = objects(self.s3a, "bka", "ck/snapshots/")
        self.assertTrue(any("/notes/" in k for k in snaps), snaps)
        wait_until(lambda: (self.dest("far").get("last") or {}).get("ok") is False, 60, "far's failed run")
        self.assertTrue(any(j["state"] in ("queued", "running") and j["attempts"] >= 1 for j in self.jobs()),
                        self.jobs())
        # The error is shown to admins.
        self.assertTrue(self.dest("far")["last"]["error"], self.dest("far"))
        # Now the bucket exists: the retry succeeds without a restart.
        self.s3b.make_bucket("bkb")
        wait_until(lambda: (self.dest("far").get("last") or {}).get("ok"), 90, "far's retry to succeed")
        self.assertTrue(objects(self.s3b, "bkb", "ck/snapshots/notes/"))
        # Each workspace records its last snapshot per destination.
        ws = self.backups()["workspaces"]["notes"]
        self.assertIn("near", ws)
        self.assertIn("far", ws)
        # Metrics.
        r = self.d.request("GET", "/monitor/metrics")
        text = r.text()
        self.assertIn('cloudyknight_backup_runs_total{destination="near",result="ok"}', text)
        self.assertIn('cloudyknight_backup_runs_total{destination="far",result="failed"}', text)
        self.assertRegex(text, r'cloudyknight_backup_last_success_timestamp_seconds\{destination="far"\} [1-9]')

    def test_2_backup_now_and_restore_a_deleted_file(self):
        wait_until(lambda: (self.dest("near").get("last") or {}).get("ok"), 60, "the first backup to near")
        events = EventStream(self.d.port, extra_headers=[f"Authorization: Bearer {self.admin}"])
        try:
            mark = events.mark()
            r = self.api("POST", "/backups", {"workspace": "notes", "destination": "near"})
            self.assertEqual(r.status, 202, r.text())
            job = r.json()["jobs"][0]
            self.assertEqual((job["kind"], job["workspace"]), ("backup", "notes"))
            events.wait_for(lambda e: e.get("type") == "backup" and e.get("workspace") == "notes"
                            and e.get("destination") == "near", 60, since=mark, what="the backup event")
            r = self.api("GET", "/backups?workspace=notes&destination=near")
            self.assertEqual(r.status, 200, r.text())
            snaps = r.json()["snapshots"]
            self.assertGreaterEqual(len(snaps), 2, snaps)
            first = snaps[0]
            # Change and delete, then restore the older snapshot by point in time.
            time.sleep(1.1)
            path = os.path.join(self.d.ws, "notes", "keep.txt")
            with open(path, "w") as f:
                f.write("version two\n")
            r = self.api("POST", "/backups", {"workspace": "notes", "destination": "near"})
            self.assertEqual(r.status, 202, r.text())
            wait_until(lambda: len(self.api("GET", "/backups?workspace=notes&destination=near").json()["snapshots"])
                       > len(snaps), 60, "the third snapshot")
            os.remove(path)
            # A dry run says what would change, and changes nothing.
            r = self.api("POST", "/workspaces/notes/restore", {"destination": "near", "dry_run": True})
            self.assertEqual(r.status, 200, r.text())
            plan = r.json()
            self.assertIn({"op": "write", "path": "keep.txt", "size": len("version two\n")},
                          plan["changes"], plan)
            self.assertFalse(os.path.exists(path))
            # The latest snapshot brings version two back.
            mark = events.mark()
            r = self.api("POST", "/workspaces/notes/restore", {"destination": "near", "mode": "merge"})
            self.assertEqual(r.status, 202, r.text())
            self.assertEqual(r.json()["job"]["kind"], "restore")
            _, ev = events.wait_for(lambda e: e.get("type") == "backup" and e.get("action") == "restore"
                                    and e.get("workspace") == "notes", 60, since=mark, what="the restore event")
            self.assertTrue(ev.get("ok"), ev)
            self.assertGreaterEqual(ev.get("changed", 0), 1, ev)
            with open(path) as f:
                self.assertEqual(f.read(), "version two\n")
            # point_in_time between the first and the later snapshots: version one.
            t = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(first["time"]))
            mark = events.mark()
            r = self.api("POST", "/workspaces/notes/restore", {"destination": "near", "point_in_time": t})
            self.assertEqual(r.status, 202, r.text())
            _, ev = events.wait_for(lambda e: e.get("type") == "backup" and e.get("action") == "restore"
                                    and e.get("workspace") == "notes", 60, since=mark, what="the second restore")
            self.assertTrue(ev.get("ok"), ev)
            with open(path) as f:
                self.assertEqual(f.read(), "version one\n")
        finally:
            events.close()

    def test_3_bad_requests(self):
        cases = [
            ("/workspaces/notes/restore", {"mode": "sideways"}, 400, "mode"),
            ("/workspaces/notes/restore", {"point_in_time": "yesterday-ish"}, 400, ""),
            ("/workspaces/notes/restore", {"destination": "nowhere", "dry_run": True}, 404, "nowhere"),
            ("/workspaces/notes/restore", {"snapshot": "x", "point_in_time": "2026-01-01 00:00:00"}, 400, "either"),
            ("/workspaces/notes/restore", {"dry_run": "yes"}, 400, "dry_run"),
            ("/workspaces/notes/restore", {"surprise": 1}, 400, "unknown field"),
            ("/workspaces/nothere/restore", {}, 404, "nothere"),
            ("/backups", {"workspace": "../etc"}, 400, ""),
            ("/backups", {"destination": "nowhere"}, 404, "nowhere"),
            ("/backups", {"workspace": 5}, 400, "string"),
        ]
        for path, body, status, needle in cases:
            with self.subTest(path=path, body=body):
                r = self.api("POST", path, body)
                self.assertEqual(r.status, status, r.text())
                self.assertIn(needle, r.json()["error"]["message"])
        r = self.api("POST", "/workspaces/notes/restore", "{not json")
        self.assertEqual(r.status, 400, r.text())
        r = self.api("POST", "/workspaces/notes/restore", {"snapshot": "x" * 9000})
        self.assertEqual(r.status, 413, r.text())

    def test_4_members_see_and_act_on_their_own(self):
        # Anonymous callers read nothing of the backups.
        r = call(self.d, "GET", "/backups")
        self.assertEqual(r.status, 401, r.text())
        r = call(self.d, "POST", "/auth/login", body={"name": "mia", "password": PASSWORD})
        self.assertEqual(r.status, 200, r.text())
        cookie = set_cookie_parts(r)[1]
        csrf = r.json()["csrf"]
        r = call(self.d, "POST", "/tokens", cookie=cookie, csrf=csrf, body={"name": "t", "scopes": ["deploy"]})
        self.assertEqual(r.status, 201, r.text())
        mia = r.json()["token"]
        st = call(self.d, "GET", "/backups", mia)
        self.assertEqual(st.status, 200, st.text())
        self.assertNotIn("secret", st.json()["workspaces"])  # private, not hers
        # Backing up everything is for admins; someone else's private workspace does not exist.
        r = call(self.d, "POST", "/backups", mia, {})
        self.assertEqual(r.status, 403, r.text())
        r = call(self.d, "POST", "/backups", mia, {"workspace": "secret"})
        self.assertEqual(r.status, 404, r.text())
        r = call(self.d, "POST", "/workspaces/secret/restore", mia, {"dry_run": True})
        self.assertEqual(r.status, 404, r.text())
        r = call(self.d, "GET", "/backups?workspace=secret", mia)
        self.assertEqual(r.status, 404, r.text())


if __name__ == "__main__":
    unittest.main()


@unittest.skipUnless(HAVE_S3RVER, NO_S3RVER)
class BackupDashboardInChromium(unittest.TestCase):
    """tests/e2e/backup.test.mjs against a daemon with one destination and one admin user."""

    def test_dashboard_backup_and_restore(self):
        import shutil
        import subprocess
        import sys
        from test_browser import DEFAULT_PLAYWRIGHT, screenshots_dir
        import harness

        node = shutil.which("node")
        self.assertIsNotNone(node, "node is not installed (Debian package nodejs)")
        pw = os.environ.get("CK_PLAYWRIGHT", DEFAULT_PLAYWRIGHT)
        self.assertTrue(os.path.isfile(os.path.join(pw, "package.json")),
                        f"playwright-core is not installed at {pw} (run scripts/playwright.sh)")
        with S3Server() as s3:
            s3.make_bucket("bkd")
            lo, hi = free_service_port_range()
            config = {"runtime": {"ports": f"{lo}-{hi}"},
                      "backup": {"destinations": [{"name": "near", "url": "s3://bkd/x", "endpoint": s3.endpoint}]}}
            d = Daemon(fixtures=[("static", "notes")], config=config, env=aws_env(s3))
            d.prepare()
            keep = os.path.join(d.ws, "notes", "keep.txt")
            with open(keep, "w") as f:
                f.write("kept\n")
            d.start()
            try:
                admin = admin_token(d)
                r = call(d, "POST", "/users", admin, {"name": "root", "password": PASSWORD, "role": "admin"})
                self.assertEqual(r.status, 201, r.text())
                wait_until(lambda: (call(d, "GET", "/backups", admin).json()["destinations"][0].get("last") or {})
                           .get("ok"), 60, "the first backup")
                os.remove(keep)
                env = dict(os.environ, CK_URL=f"http://127.0.0.1:{d.port}", CK_USER="root", CK_PASSWORD=PASSWORD,
                           CK_WS=d.ws, CK_SCREENSHOTS=screenshots_dir(), CK_PLAYWRIGHT=pw,
                           CK_CHROMIUM=os.environ.get("CK_CHROMIUM", "/usr/bin/chromium"))
                script = os.path.join(harness.REPO, "tests", "e2e", "backup.test.mjs")
                proc = subprocess.run([node, "--test-reporter=spec", script], env=env, cwd=os.path.dirname(script),
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=240)
                out = proc.stdout.decode("utf-8", "replace")
                print(out, file=sys.stderr)
                self.assertEqual(proc.returncode, 0, out[-4000:])
            finally:
                d.stop()


@unittest.skipUnless(HAVE_S3RVER, NO_S3RVER)
class BackupWithS3Storage(unittest.TestCase):
    """S3 storage: a restore goes back through the bucket (S3Mirror::put_back), so the mirror and
    the monitor get it from there like any other change."""

    def test_restore_puts_the_file_back_in_the_bucket(self):
        import tempfile
        with S3Server() as s3:
            s3.make_bucket("src")
            s3.make_bucket("bkp")
            with tempfile.TemporaryDirectory() as tmp:
                site = os.path.join(tmp, "site")
                os.makedirs(site)
                with open(os.path.join(site, "index.html"), "w") as f:
                    f.write("<h1>site</h1>\n")
                with open(os.path.join(site, "page.txt"), "w") as f:
                    f.write("from the bucket\n")
                s3.aws("s3", "sync", site, "s3://src/ws/site/")
            lo, hi = free_service_port_range()
            config = {"runtime": {"ports": f"{lo}-{hi}"}, "storage": {"list_interval": "500ms"},
                      "backup": {"destinations": [{"name": "bk", "url": "s3://bkp/b", "endpoint": s3.endpoint}]}}
            d = Daemon(workspaces=False, args=s3.storage_args("src", "ws"), env=aws_env(s3), config=config)
            d.start()
            try:
                admin = admin_token(d)
                wait_until(lambda: (call(d, "GET", "/backups", admin).json()["destinations"][0].get("last") or {})
                           .get("ok"), 60, "the first backup")
                self.assertIn("site", call(d, "GET", "/backups", admin).json()["workspaces"])
                s3.aws("s3", "rm", "s3://src/ws/site/page.txt")
                mirror = os.path.join(d.data, "mirror", "site", "page.txt")
                wait_until(lambda: not os.path.exists(mirror), 30, "the mirror to drop page.txt")
                r = call(d, "POST", "/workspaces/site/restore", admin, {"mode": "mirror"})
                self.assertEqual(r.status, 202, r.text())
                wait_until(lambda: "ws/site/page.txt" in objects(s3, "src", "ws/site/"), 60,
                           "page.txt back in the bucket")
                wait_until(lambda: os.path.exists(mirror), 30, "page.txt back in the mirror")
                with open(mirror) as f:
                    self.assertEqual(f.read(), "from the bucket\n")
                r = d.request("GET", "/site/page.txt")
                self.assertEqual((r.status, r.text()), (200, "from the bucket\n"))
            finally:
                d.stop()


class NoBackupDestination(unittest.TestCase):
    """A daemon without backup.destinations: GET /backups lists none (the dashboard hides its
    row), and asking for a backup or a restore says what to configure."""

    def test_without_destinations(self):
        d = Daemon(fixtures=[("static", "notes")])
        d.start()
        try:
            admin = admin_token(d)
            r = call(d, "GET", "/backups", admin)
            self.assertEqual(r.status, 200, r.text())
            self.assertEqual(r.json()["destinations"], [])
            for path, body in (("/backups", {}), ("/workspaces/notes/restore", {"dry_run": True})):
                r = call(d, "POST", path, admin, body)
                self.assertEqual(r.status, 503, r.text())
                self.assertIn("backup.destinations", r.json()["error"]["message"])
        finally:
            d.stop()
