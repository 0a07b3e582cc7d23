"""Nothing accumulates (issue 19, parts 1 and 2).

- `cloudyknight gc` on a data folder (no server, process runtime): DATA/trash entries older than
  data.trash_keep go, workspace logs over log.max_size are rotated with at most log.keep rotated
  files, closed sessions and status history older than state.keep_history leave state.db; a dry
  run changes nothing.
- The daemon's cleanup jobs on the docker runtime: reinstalls (new dependency keys) leave
  dependency volumes; POST /monitor/api/v1/cleanup (admin only; 403 for a deploy token) removes
  those no container uses with runtime.deps_keep 0s and keeps the one in use; a dry run removes
  nothing; GET /cleanup, the `cleanup` event and the metrics report the bytes.
- Multipart hygiene: a `ws upload` killed in the middle of a multipart upload leaves it open;
  the next upload aborts it (through S3Proxy, which answers AbortMultipartUpload as S3 does;
  s3rver 3 does not implement it) and its index keeps no upload id.

Docker: needs an engine and cloudyknight/python:bookworm (`cloudyknight images build python`);
without an engine the docker class fails, unless CK_NO_DOCKER=1 (then it is skipped). Only the
volumes and containers of this run's own workspaces are touched and asserted on.
Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_cleanup
"""

import glob
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tarfile
import tempfile
import shutil
import time
import unittest

from harness import ClassSetUp, Daemon, EventStream, binary, wait_until
from test_auth import admin_token, call

MiB = 1 << 20
DAY_MS = 24 * 3600 * 1000
RUN = "gc" + os.urandom(3).hex()


def run_gc(data, config_text, *extra, env=None):
    """`cloudyknight gc --data DATA --config CFG --json ...` -> (returncode, report or None, stderr)."""
    cfg = os.path.join(data, "..", "gc.yaml")
    with open(cfg, "w") as f:
        f.write(config_text)
    e = {k: v for k, v in os.environ.items() if not k.startswith("CK_")}
    e.update(env or {})
    p = subprocess.run([binary(), "gc", "--data", data, "--config", cfg, "--json", *extra],
                       capture_output=True, text=True, timeout=120, env=e, stdin=subprocess.DEVNULL)
    try:
        report = json.loads(p.stdout)
    except ValueError:
        report = None
    return p.returncode, report, p.stdout + p.stderr


class LocalGcTest(unittest.TestCase):
    """`cloudyknight gc --data DIR` with small limits, on a data folder made by hand."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="ck-gc-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.data = os.path.join(self.tmp, "data")
        self.ws = os.path.join(self.tmp, "ws")
        os.makedirs(os.path.join(self.data, "trash", "site-20260101T000000Z", "sub"))
        os.makedirs(self.ws)
        with open(os.path.join(self.data, "trash", "site-20260101T000000Z", "sub", "a.bin"), "wb") as f:
            f.write(b"t" * 300_000)
        with open(os.path.join(self.data, "trash", "old.git"), "wb") as f:
            f.write(b"g" * 1000)
        logs = os.path.join(self.data, "logs")
        os.makedirs(logs)
        self.logs = logs
        with open(os.path.join(logs, "app.log"), "wb") as f:
            f.write(b"L" * 20_000)
        for n in range(1, 5):
            with open(os.path.join(logs, f"app.log.{n}"), "wb") as f:
                f.write(bytes([ord("0") + n]) * (1000 * n))
        with open(os.path.join(logs, "small.log"), "wb") as f:
            f.write(b"s" * 100)
        self.config = ("runtime: { kind: process }\n"
                       f"storage: {{ kind: dir, path: {self.ws} }}\n"
                       "data.trash_keep: 0s\n"
                       "log: { max_size: 4k, keep: 2 }\n"
                       "state: { keep_history: 30d }\n")

    def make_state(self):
        """A state.db with old and new closed sessions and status history (the schema from the
        binary: an empty file is a new database it migrates)."""
        db_path = os.path.join(self.data, "state.db")
        open(db_path, "wb").close()
        rc, _, out = run_gc(self.data, self.config.replace("data.trash_keep: 0s", "data.trash_keep: 1d"),
                            "--dry-run")
        self.assertEqual(rc, 0, out)
        now = int(time.time() * 1000)
        db = sqlite3.connect(db_path)
        with db:
            for i in range(40):
                db.execute("INSERT INTO sessions (workspace, kind, client, opened_ms, closed_ms) VALUES (?,?,?,?,?)",
                           ("w", "websocket", "c" * 500, now - 40 * DAY_MS, now - 40 * DAY_MS + i))
                db.execute("INSERT INTO status_history (workspace, status, reason, at_ms) VALUES (?,?,?,?)",
                           ("w", "running", "r" * 500, now - 35 * DAY_MS + i))
            db.execute("INSERT INTO sessions (workspace, kind, client, opened_ms, closed_ms) VALUES (?,?,?,?,?)",
                       ("w", "websocket", "new", now - DAY_MS, now - DAY_MS + 5))
            db.execute("INSERT INTO sessions (workspace, kind, client, opened_ms, closed_ms) VALUES (?,?,?,?,NULL)",
                       ("w", "websocket", "open", now - 50 * DAY_MS))
            db.execute("INSERT INTO status_history (workspace, status, reason, at_ms) VALUES (?,?,?,?)",
                       ("w", "running", "new", now - DAY_MS))
        db.close()
        return db_path

    def sizes(self):
        return {n: os.path.getsize(os.path.join(self.logs, n)) for n in sorted(os.listdir(self.logs))}

    def test_dry_run_changes_nothing(self):
        before_logs = self.sizes()
        rc, report, out = run_gc(self.data, self.config, "--dry-run")
        self.assertEqual(rc, 0, out)
        self.assertTrue(report["dry_run"])
        kinds = {(i["kind"], i["name"]) for i in report["items"]}
        self.assertIn(("trash", "site-20260101T000000Z"), kinds)
        self.assertIn(("log", "app.log.2"), kinds)
        self.assertGreaterEqual(report["bytes"], 301_000)
        self.assertEqual(self.sizes(), before_logs)
        self.assertEqual(sorted(os.listdir(os.path.join(self.data, "trash"))), ["old.git", "site-20260101T000000Z"])

    def test_trash_logs_and_state(self):
        db_path = self.make_state()
        rc, report, out = run_gc(self.data, self.config)
        self.assertEqual(rc, 0, out)
        self.assertFalse(report["dry_run"])
        # The trash: both entries (keep 0s), with their bytes.
        self.assertEqual(os.listdir(os.path.join(self.data, "trash")), [])
        self.assertEqual(report["by_kind"]["trash"]["count"], 2, report)
        self.assertEqual(report["by_kind"]["trash"]["bytes"], 301_000, report)
        # Logs: app.log (20000 > 4k) rotated to .1, the old .1 now .2; .3 and .4 (over keep 2) gone,
        # and the old .2 as the oldest of the kept ones. small.log is left as it is.
        self.assertEqual(self.sizes(), {"app.log": 0, "app.log.1": 20_000, "app.log.2": 1000, "small.log": 100})
        with open(os.path.join(self.logs, "app.log.2"), "rb") as f:
            self.assertEqual(f.read(), b"1" * 1000)
        self.assertEqual(report["by_kind"]["log"]["bytes"], 2000 + 3000 + 4000, report)
        # state.db: the 40 old closed sessions and history rows went, the new and the open stayed.
        db = sqlite3.connect(db_path)
        clients = sorted(r[0] for r in db.execute("SELECT client FROM sessions"))
        reasons = [r[0] for r in db.execute("SELECT reason FROM status_history")]
        db.close()
        self.assertEqual(clients, ["new", "open"])
        self.assertEqual(reasons, ["new"])
        names = {i["name"] for i in report["items"] if i["kind"] == "state"}
        self.assertTrue({"sessions", "status_history", "vacuum"} <= names, report)
        vacuum = [i for i in report["items"] if i["name"] == "vacuum"][0]
        self.assertGreater(vacuum["bytes"], 0, report)
        # The next run finds nothing more (and VACUUMs at most once a day).
        rc, report, out = run_gc(self.data, self.config)
        self.assertEqual(rc, 0, out)
        self.assertEqual([i for i in report["items"] if i["kind"] in ("trash", "state")], [], report)

    def test_trash_younger_than_the_limit_stays(self):
        rc, report, out = run_gc(self.data, self.config.replace("data.trash_keep: 0s", "data.trash_keep: 1h"))
        self.assertEqual(rc, 0, out)
        self.assertEqual(sorted(os.listdir(os.path.join(self.data, "trash"))), ["old.git", "site-20260101T000000Z"])
        self.assertNotIn("trash", report["by_kind"])

    def test_text_report_and_missing_data_folder(self):
        rc, _, out = run_gc(self.data, self.config)
        self.assertEqual(rc, 0, out)
        cfg = os.path.join(self.tmp, "gc.yaml")
        p = subprocess.run([binary(), "gc", "--data", self.data, "--config", cfg, "--dry-run"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("would reclaim:", p.stdout)
        p = subprocess.run([binary(), "gc", "--data", os.path.join(self.tmp, "nope")],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn("no data folder", p.stderr)


class RemoteGcTest(ClassSetUp):
    """`cloudyknight gc` over the API (CK_URL + CK_TOKEN): the plan, then a run, printed."""

    @classmethod
    def init_class_state(cls):
        cls.d = None

    @classmethod
    def set_up(cls):
        cls.d = Daemon(config={"data.trash_keep": "0s"})
        cls.d.start()
        cls.token = admin_token(cls.d)
        # The daemon's own cleanup at start (trash_keep 0s) must be over before a test plants
        # trash, or it takes the trash first (a loaded machine delays it).
        wait_until(lambda: (call(cls.d, "GET", "/cleanup", cls.token).json() or {}).get("finished_ms"),
                   60, "the cleanup at start to finish")

    @classmethod
    def tearDownClass(cls):
        if cls.d is not None:
            cls.d.stop()
            cls.d.cleanup()

    def gc(self, *args, token=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CK_")}
        env.update({"CK_URL": f"http://127.0.0.1:{self.d.port}", "CK_TOKEN": token or self.token,
                    "XDG_CONFIG_HOME": os.path.join(self.d.tmp, "xdg")})
        return subprocess.run([binary(), "gc", *args], capture_output=True, text=True, timeout=120, env=env)

    def test_plan_then_run(self):
        trash = os.path.join(self.d.data, "trash", "old-20260101T000000Z")
        os.makedirs(trash)
        with open(os.path.join(trash, "f"), "wb") as f:
            f.write(b"x" * 5000)
        r = self.gc("--dry-run")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("would remove trash old-20260101T000000Z", r.stdout)
        self.assertTrue(os.path.isdir(trash))
        r = self.gc()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("removed trash old-20260101T000000Z", r.stdout)
        self.assertIn("reclaimed:", r.stdout)
        self.assertFalse(os.path.exists(trash))
        last = call(self.d, "GET", "/cleanup", self.token).json()
        self.assertGreaterEqual(last["by_kind"]["trash"]["bytes"], 5000, last)
        # A deploy token may not: exit 4 (not allowed), and nothing runs.
        t = call(self.d, "POST", "/tokens", self.token, {"name": "dep", "scopes": ["read", "deploy"]}).json()["token"]
        r = self.gc(token=t)
        self.assertEqual(r.returncode, 4, r.stdout + r.stderr)
        r = self.gc("--json", "--dry-run")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(json.loads(r.stdout)["dry_run"])


class ProcessRuntimeTest(ClassSetUp):
    """The process runtime's app copy (DATA/run/NAME, with its dependencies) of a deleted
    workspace goes; that of a workspace that exists stays."""

    @classmethod
    def init_class_state(cls):
        cls.d = None

    @classmethod
    def set_up(cls):
        cls.d = Daemon(fixtures=["echo", ("echo", "gone")], config={"runtime": {"deps_keep": "0s"}})
        cls.d.start()
        cls.token = admin_token(cls.d)

    @classmethod
    def tearDownClass(cls):
        if cls.d is not None:
            cls.d.stop()
            cls.d.cleanup()

    def test_deleted_workspace_app_copy_goes(self):
        d = self.d
        d.wait_status("echo", "running")
        d.wait_status("gone", "running")
        run = os.path.join(d.data, "run")
        self.assertTrue(os.path.isdir(os.path.join(run, "gone")))
        shutil.rmtree(os.path.join(d.ws, "gone"))
        wait_until(lambda: d.workspace("gone") is None, 30, "the deleted workspace gone from the API")
        # Its app stops asynchronously; from then on a dry run names its folder.
        def planned():
            r = call(d, "POST", "/cleanup", self.token, {"dry_run": True})
            self.assertEqual(r.status, 200, r.text())
            return [i["name"] for i in r.json()["items"] if i["kind"] == "deps"]
        self.assertEqual(wait_until(planned, 30, "the deleted workspace's folder in the plan"),
                         [os.path.join(run, "gone")])
        self.assertTrue(os.path.isdir(os.path.join(run, "gone")))
        r = call(d, "POST", "/cleanup", self.token, {})
        self.assertEqual(r.status, 202, r.text())
        job = r.json()["job"]
        wait_until(lambda: call(d, "GET", f"/jobs/{job['id']}", self.token).json().get("state") in ("done", "dead"),
                   60, "the cleanup job to end")
        report = call(d, "GET", "/cleanup", self.token).json()
        self.assertFalse(os.path.exists(os.path.join(run, "gone")), report)
        self.assertTrue(os.path.isdir(os.path.join(run, "echo")))
        self.assertEqual(d.get("/echo/").status, 200)
        deps = [i for i in report["items"] if i["kind"] == "deps"]
        self.assertEqual(len(deps), 1, report)
        self.assertGreater(deps[0]["bytes"], 0, report)


# ----------------------------------------------------------------------------------- docker

def docker_or_skip():
    try:
        from test_docker_runtime import Docker
    except Exception as e:  # noqa: BLE001 - a missing module is a broken tree, say so
        raise AssertionError(f"cannot import test_docker_runtime: {e!r}")
    d = Docker()
    try:
        d.ping()
    except Exception as e:  # noqa: BLE001
        if os.environ.get("CK_NO_DOCKER") == "1":
            raise unittest.SkipTest(f"no Docker engine ({e}); CK_NO_DOCKER=1")
        raise AssertionError(f"no Docker engine: {e} (start dockerd, or set CK_NO_DOCKER=1 to skip)")
    return d


def tar_of(name, data):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


PYAPP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "docker", "pyapp")


class DockerCleanupTest(ClassSetUp):
    """One daemon on the docker runtime, runtime.deps_keep 0s; its python workspace reinstalled
    five times (a new requirements.txt each time)."""

    @classmethod
    def init_class_state(cls):
        cls.d = None
        cls.docker = None
        cls.volumes = set()  # every volume this class created or caused, removed at the end
        cls.image_workspaces = set()  # workspaces whose built images are removed at the end

    @classmethod
    def set_up(cls):
        cls.docker = docker_or_skip()
        cls.name = RUN + "-py"
        cls.d = Daemon(runtime="docker", config={"runtime": {"deps_keep": "0s", "cleanup_interval": "1h"}})
        cls.d.prepare()
        dest = cls.d.add_folder(PYAPP, cls.name)
        with open(os.path.join(dest, "requirements.txt"), "w") as f:
            f.write("# v0\n")
        cls.d.start()
        cls.token = admin_token(cls.d)

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.d is not None:
                cls.d.stop()
                cls.d.cleanup()
        finally:
            if cls.docker is not None:
                for c in cls.docker.call("GET", "/containers/json", query={"all": "1"}) or []:
                    if any(n.lstrip("/").startswith(f"ck-{RUN}") or RUN in n for n in c.get("Names", [])):
                        cls.docker.request("DELETE", f"/containers/{c['Id']}", query={"force": "1", "v": "1"})
                for v in list(cls.volumes) + cls.own_volumes():
                    cls.docker.request("DELETE", f"/volumes/{v}")
                for v in (cls.docker.call("GET", "/volumes") or {}).get("Volumes") or []:
                    if v["Name"].startswith(f"ck-cache-{RUN}"):  # the package download cache
                        cls.docker.request("DELETE", f"/volumes/{v['Name']}")
                # The workspaces' networks (ck-net-<name>...): left behind, every run would take
                # more of the engine's address space.
                for net in cls.docker.call("GET", "/networks") or []:
                    if net.get("Name", "").startswith(f"ck-net-{RUN}"):
                        cls.docker.request("DELETE", f"/networks/{net['Id']}")
                for w in cls.image_workspaces:
                    doc = cls.docker.call("GET", "/images/json", query={
                        "all": "1", "filters": json.dumps({"label": [f"cloudyknight.workspace={w}"]})}) or []
                    for i in doc:
                        cls.docker.request("DELETE", f"/images/{i['Id']}", query={"force": "1"})

    @classmethod
    def own_volumes(cls):
        if cls.docker is None:
            return []
        doc = cls.docker.call("GET", "/volumes") or {}
        return sorted(v["Name"] for v in doc.get("Volumes") or [] if v["Name"].startswith(f"ck-deps-{RUN}"))

    def app_container(self):
        for c in self.docker.call("GET", "/containers/json", query={"all": "1"}) or []:
            labels = c.get("Labels") or {}
            if labels.get("cloudyknight.workspace") == self.name and labels.get("cloudyknight.role") == "app" \
                    and c.get("State") == "running":
                return c
        return None

    def deps_in_use(self):
        """The dependency volume of the workspace's one app container; None while there is none,
        or two (a blue/green restart: the new version runs beside the old one until the switch,
        then the old container is removed)."""
        apps = [c for c in self.docker.call("GET", "/containers/json", query={"all": "1"}) or []
                if (c.get("Labels") or {}).get("cloudyknight.workspace") == self.name
                and (c.get("Labels") or {}).get("cloudyknight.role") == "app"]
        c = self.app_container()
        if not c or len(apps) != 1:
            return None
        for m in c.get("Mounts") or []:
            if m.get("Type") == "volume" and (m.get("Name") or "").startswith("ck-deps-"):
                return m["Name"]
        return None

    def reinstall(self, n, previous):
        with open(os.path.join(self.d.ws, self.name, "requirements.txt"), "w") as f:
            f.write(f"# v{n}\n")
        return wait_until(lambda: (v := self.deps_in_use()) and v != previous and v, 180,
                          f"the app on a new dependency volume after reinstall {n}")

    def test_reinstalls_then_cleanup(self):
        d = self.d
        first = wait_until(self.deps_in_use, 180, "the app running on its dependency volume")
        used = [first]
        for n in range(1, 5):
            used.append(self.reinstall(n, used[-1]))
        type(self).volumes |= set(used)
        current = used[-1]
        instance = (self.app_container().get("Labels") or {}).get("cloudyknight.instance")
        self.assertTrue(instance)
        # Five dependency keys, five volumes (the old ones may still be there; the engine refused
        # to remove a volume the old app container used while the new one installed). So that
        # the cleanup has something to prove itself on whatever the timing, two more leftovers of
        # this workspace, labelled as the runtime labels its volumes; one holds 1 MiB.
        fakes = {f"ck-deps-{RUN}-py-python-left{i}" for i in (1, 2)}
        for i, size in ((1, MiB), (2, 0)):
            name = f"ck-deps-{RUN}-py-python-left{i}"
            self.docker.call("POST", "/volumes/create", {"Name": name, "Labels": {
                "cloudyknight.managed": "true", "cloudyknight.workspace": self.name,
                "cloudyknight.instance": instance, "cloudyknight.deps": name}})
            type(self).volumes.add(name)
            if size:
                c = self.docker.call("POST", "/containers/create", {
                    "Image": "cloudyknight/python:bookworm", "Cmd": ["true"],
                    "HostConfig": {"Mounts": [{"Type": "volume", "Source": name, "Target": "/v"}]}},
                    query={"name": f"{RUN}-filler"})
                try:
                    status, raw = self._put_archive(c["Id"], tar_of("blob.bin", os.urandom(size)))
                    self.assertIn(status, (200,), raw)
                finally:
                    self.docker.request("DELETE", f"/containers/{c['Id']}", query={"force": "1"})
        before = set(self.own_volumes())
        sys.stderr.write(f"\n[test_cleanup] five dependency keys left {len(before - fakes)} volume(s) of "
                         f"{self.name} before the cleanup\n")
        self.assertIn(current, before)
        self.assertGreaterEqual(len(before), 3, before)

        # Only admins: a deploy token gets 403 for both.
        r = call(d, "POST", "/tokens", self.token, {"name": "deployer", "scopes": ["read", "deploy"]})
        self.assertEqual(r.status, 201, r.text())
        deployer = r.json()["token"]
        self.assertEqual(call(d, "POST", "/cleanup", deployer, {}).status, 403)
        self.assertEqual(call(d, "GET", "/cleanup", deployer).status, 403)
        self.assertEqual(call(d, "POST", "/cleanup", None, {}).status, 401)

        # A dry run says what would go and removes nothing.
        r = call(d, "POST", "/cleanup", self.token, {"dry_run": True})
        self.assertEqual(r.status, 200, r.text())
        plan = r.json()
        self.assertTrue(plan["dry_run"])
        planned = {i["name"] for i in plan["items"] if i["kind"] == "volume"}
        self.assertTrue(before - {current} <= planned, (before, planned))
        self.assertNotIn(current, planned)
        self.assertEqual(set(self.own_volumes()), before)

        # The run: every volume of ours but the one in use goes; the app still answers.
        events = EventStream(d.port, extra_headers=[f"Authorization: Bearer {self.token}"])
        self.addCleanup(events.close)
        r = call(d, "POST", "/cleanup", self.token, {})
        self.assertEqual(r.status, 202, r.text())
        job = r.json()["job"]
        wait_until(lambda: call(d, "GET", f"/jobs/{job['id']}", self.token).json().get("state") in ("done", "dead"),
                   120, "the cleanup job to end")
        self.assertEqual(call(d, "GET", f"/jobs/{job['id']}", self.token).json()["state"], "done")
        self.assertEqual(set(self.own_volumes()), {current})
        self.assertEqual(d.get(f"/{self.name}/").status, 200)
        report = call(d, "GET", "/cleanup", self.token).json()
        removed = {i["name"] for i in report["items"] if i["kind"] == "volume" and "error" not in i}
        self.assertTrue(before - {current} <= removed, report)
        self.assertGreaterEqual(report["by_kind"]["volume"]["bytes"], MiB, report)
        metrics = d.get("/monitor/metrics").text()
        line = [l for l in metrics.splitlines() if l.startswith('cloudyknight_cleanup_reclaimed_bytes_total{kind="volume"}')]
        self.assertTrue(line and int(float(line[0].split()[-1])) >= MiB, metrics[-3000:])
        self.assertRegex(metrics, r'cloudyknight_cleanup_runs_total\{result="ok"\} [1-9]')
        _, ev = events.wait_for(lambda e: e.get("type") == "cleanup", 30, what="a cleanup event")
        data = ev.get("data", ev)
        self.assertGreaterEqual(data.get("bytes", 0), MiB, ev)

        # `cloudyknight gc --data` on the same data folder (no server): the same control plane's
        # volumes. A fresh leftover stays under deps_keep 7d, and goes when the volumes are over
        # runtime.deps_max_size (least recently used first); the one in use stays either way.
        name = f"ck-deps-{RUN}-py-python-left3"
        self.docker.call("POST", "/volumes/create", {"Name": name, "Labels": {
            "cloudyknight.managed": "true", "cloudyknight.workspace": self.name,
            "cloudyknight.instance": instance, "cloudyknight.deps": name}})
        type(self).volumes.add(name)
        base = f"runtime: {{ kind: docker, deps_keep: 7d }}\nstorage: {{ kind: dir, path: {d.ws} }}\n"
        rc, report, out = run_gc(d.data, base)
        self.assertEqual(rc, 0, out)
        self.assertEqual([i for i in report["items"] if i["kind"] == "volume"], [], report)
        self.assertEqual(set(self.own_volumes()), {current, name})
        rc, report, out = run_gc(d.data, base.replace("deps_keep: 7d", "deps_keep: 7d, deps_max_size: 1k"))
        self.assertEqual(rc, 0, out)
        gone = [i for i in report["items"] if i["kind"] == "volume"]
        self.assertEqual([i["name"] for i in gone], [name], report)
        self.assertIn("deps_max_size", gone[0]["reason"])
        self.assertEqual(set(self.own_volumes()), {current})
        self.assertEqual(d.get(f"/{self.name}/").status, 200)

    def images_of(self, workspace):
        doc = self.docker.call("GET", "/images/json", query={
            "all": "1", "filters": json.dumps({"label": [f"cloudyknight.workspace={workspace}"]})}) or []
        return {i["Id"]: i for i in doc}

    def test_dockerfile_images(self):
        """An image replaced by a newer build goes, and so does the image of a deleted workspace;
        the image in use stays."""
        d = self.d
        name = RUN + "-img"
        type(self).image_workspaces.add(name)
        dest = d.add_folder(os.path.join(os.path.dirname(PYAPP), "dockerfile"), name)
        d.wait_status(name, "running", timeout=300)
        first = set(self.images_of(name))
        self.assertEqual(len(first), 1, first)
        with open(os.path.join(dest, "kept.txt"), "a") as f:
            f.write("changed\n")
        def new_build_running():
            for c in self.docker.call("GET", "/containers/json") or []:  # running ones
                labels = c.get("Labels") or {}
                if labels.get("cloudyknight.workspace") == name and labels.get("cloudyknight.role") == "app" \
                        and c.get("ImageID") not in first:
                    return c["ImageID"]
            return None
        image = wait_until(new_build_running, 300, "the app running on a second build")
        wait_until(lambda: len([c for c in self.docker.call("GET", "/containers/json", query={"all": "1"}) or []
                                if (c.get("Labels") or {}).get("cloudyknight.workspace") == name]) == 1, 60,
                   "the first build's container removed")
        second = {image}
        r = call(d, "POST", "/cleanup", self.token, {"dry_run": True})
        self.assertEqual(r.status, 200, r.text())
        planned = [i for i in r.json()["items"] if i["kind"] == "image" and name in i["reason"]]
        self.assertEqual(len(planned), 1, r.json())
        self.assertEqual(len(self.images_of(name)), 2)
        self.run_cleanup()
        self.assertEqual(set(self.images_of(name)), second, "the earlier build goes, the one in use stays")
        # The workspace goes: once its container is gone, so does its image.
        shutil.rmtree(dest)
        wait_until(lambda: not [c for c in self.docker.call("GET", "/containers/json", query={"all": "1"}) or []
                                if (c.get("Labels") or {}).get("cloudyknight.workspace") == name], 60,
                   "the deleted workspace's container removed")
        wait_until(lambda: name not in {w["name"] for w in d.workspaces()}, 30, "the workspace gone from the API")
        report = self.run_cleanup()
        self.assertEqual(self.images_of(name), {}, report)
        gone = [i for i in report["items"] if i["kind"] == "image" and "which is gone" in i["reason"]]
        self.assertTrue(gone and gone[0]["bytes"] > 0, report)

    def run_cleanup(self):
        d = self.d
        r = call(d, "POST", "/cleanup", self.token, {})
        self.assertEqual(r.status, 202, r.text())
        job = r.json()["job"]
        wait_until(lambda: call(d, "GET", f"/jobs/{job['id']}", self.token).json().get("state") in ("done", "dead"),
                   120, "the cleanup job to end")
        self.assertEqual(call(d, "GET", f"/jobs/{job['id']}", self.token).json()["state"], "done")
        return call(d, "GET", "/cleanup", self.token).json()

    def _put_archive(self, cid, data):
        from test_docker_runtime import UnixHTTPConnection, DOCKER_API
        conn = UnixHTTPConnection(timeout=30)
        try:
            conn.request("PUT", f"{DOCKER_API}/containers/{cid}/archive?path=/v", body=data,
                         headers={"Host": "docker", "Content-Type": "application/x-tar"})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()


# -------------------------------------------------------------------------------- multipart

from test_s3_cli import BUCKET, PREFIX, Fault, S3Case, S3Proxy, cli_env, write_file  # noqa: E402


class MultipartHygieneTest(S3Case):
    def test_killed_upload_is_aborted_by_the_next_one(self):
        d = self.mkdir("mpu")
        write_file(d, "index.html", b"<h1>hi</h1>\n")
        write_file(d, "big.bin", os.urandom(24 * MiB + 5))
        # Part 2 of the big file always fails (retried with backoff): the upload stays open while
        # the CLI retries, and is killed then.
        p = S3Proxy(self.server.port, [Fault(lambda r: r.kind == "upload_part" and r.part == 2, "500", times=None)])
        type(self).proxies.append(p)
        cache = os.path.join(self.tmp, "mpu-cache")
        env = cli_env(self.server, cache=cache)
        cmd = [binary(), "workspace", "upload", "mpu", d, "--storage", f"s3://{BUCKET}/{PREFIX}",
               "--s3-endpoint", p.endpoint]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL)
        try:
            index_files = lambda: glob.glob(os.path.join(cache, "cloudyknight", "sync", "*.json"))

            def recorded():
                for f in index_files():
                    try:
                        with open(f) as fh:
                            doc = json.load(fh)
                    except (OSError, ValueError):
                        continue
                    if doc.get("uploads"):
                        return doc["uploads"]
                return None
            ids = wait_until(lambda: p.open_uploads() and recorded(), 60, "an open multipart upload in the index")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
        open_ids = set(p.open_uploads())
        self.assertEqual(set(ids), open_ids, "the index records the open upload")
        # The next upload (no fault now) aborts the one left open, then uploads everything.
        p.faults = []
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("aborted 1 unfinished multipart upload", r.stderr)
        states = p.upload_states()
        for u in open_ids:
            self.assertEqual(states[u]["state"], "aborted", states)
        self.assertEqual(p.open_uploads(), {})
        for f in index_files():
            with open(f) as fh:
                self.assertEqual(json.load(fh).get("uploads"), {}, f)
        # `ws gc` finds nothing left.
        r = subprocess.run([binary(), "workspace", "gc", "mpu", d, "--storage", f"s3://{BUCKET}/{PREFIX}",
                            "--s3-endpoint", p.endpoint], env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("aborted 0 unfinished multipart upload(s)", r.stdout)


if __name__ == "__main__":
    unittest.main()
