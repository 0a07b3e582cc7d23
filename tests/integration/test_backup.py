"""`cloudyknight backup` / `restore` (issue 17) end to end: the real binary (CK_BINARY) against two
real s3rver instances (two destinations), and the suite's fault proxy (test_s3_cli.S3Proxy) in
front of one of them where a destination has to fail halfway or be slow.

- Two destinations backed up by one command; `backup list --json` lists both, with its shape.
- A destination that fails halfway (the proxy resets every connection after N requests): the
  other destination's snapshot exists, the command exits 1 naming the failed one.
- Restore: --mode mirror deletes a file newer than the snapshot (but never an ignored one such
  as node_modules/), --mode merge keeps it; --point-in-time between two snapshots restores the
  older content (in a non-UTC TZ); a deleted file comes back with its mode; --to DIR leaves the
  workspace alone.
- Encryption: no object holds the plaintext (content or path) of a known file; restore without
  the key, or with a wrong one, fails with one clear line and writes nothing.
- A tampered pack: `backup check` exits 1 naming the blob or its snapshot; restore exits 1 and
  leaves the target as it was.
- kill -9 of `cloudyknight backup` in the middle of its uploads (a proxy that holds uploads): `backup check`
  passes (no snapshot points at a missing blob), a new backup works and restores.
- Config sources: destinations from CK_BACKUP_DESTINATIONS (JSON flow list) with backup.key
  from the file, CK_BACKUP_KEY overriding it; a malformed list is one clear line.
- Invalid input: unknown --dest, a bad --point-in-time, an --snapshot that does not exist,
  --snapshot with --point-in-time: non-zero exit, one clear line on stderr.

Configuration is a YAML file given with --config: `storage: {kind: dir, path: WS}` (the
workspaces) and `backup.destinations`; credentials come from the environment (s3util), the
encryption key from CK_BACKUP_KEY, the local cache from XDG_CACHE_HOME (fresh per test).

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_backup
(needs s3rver: scripts/s3rver.sh, or CK_S3RVER; CK_KEEP_TMP=1 keeps the temporary folders).
"""

import datetime
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import zoneinfo

from harness import ClassSetUp, binary
from s3util import S3Server
from test_s3_cli import NOISE_RE, Fault, S3Proxy

BUCKET = "bkp"
WS = "app"
KEY = "correct horse battery staple 17"
CLI_TIMEOUT = 180
MiB = 1 << 20
TZ = "Asia/Kolkata"  # +05:30, no DST: a local time that is not UTC, by a non-whole hour
MARKER = b"CK-BACKUP-PLAINTEXT-MARKER-5d1c0e2a"  # in a known file; no encrypted object may hold it
SECRET_NAME = "secret-plans-7b3f.txt"  # a path no encrypted object may reveal


def det_bytes(seed, n):
    return random.Random(seed).randbytes(n)


def initial_tree():
    """{relative path: bytes} of the workspace's source files (plus an executable script)."""
    return {
        "index.html": b"<!doctype html><h1>version 1</h1>\n",
        "src/app.js": b"console.log('version 1');\n" * 20,
        "src/lib/util.py": b"def add(a, b):\n    return a + b\n",
        "docs/readme.md": b"# App\n\nSome documentation.\n" * 50,
        "bin/run.sh": b"#!/bin/sh\necho run\n",
        "empty.txt": b"",
        "name with spaces & unicode \u00e9.txt": b"odd name\n",
        SECRET_NAME: MARKER + b"\n" + MARKER * 30 + b"\n",
        "assets/big.bin": det_bytes(1, 3 * MiB // 2),  # >= 1 MiB: a standalone blob
        "assets/small.bin": det_bytes(2, 40_000),
    }


EXECUTABLE = "bin/run.sh"
IGNORED = {"node_modules/dep/index.js": b"module.exports = 1;\n", "debug.log": b"log line\n"}


def write_tree(root, tree):
    for rel, data in tree.items():
        p = os.path.join(root, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(data)


def read_tree(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[os.path.relpath(p, root)] = f.read()
    return out


class Run:
    def __init__(self, cmd, returncode, stdout, stderr, seconds):
        self.cmd, self.returncode, self.stdout, self.stderr, self.seconds = cmd, returncode, stdout, stderr, seconds

    @property
    def err_lines(self):
        """stderr's lines, without CLI11's usage hint (it follows the one line of a flag error)."""
        return [line for line in self.stderr.splitlines()
                if line.strip() and line.strip() != "Run with --help for more information."]

    def describe(self, limit=3000):
        return (f"`{' '.join(self.cmd)}` -> exit {self.returncode} in {self.seconds:.2f} s\n"
                f"--- stdout\n{self.stdout[-limit:]}\n--- stderr\n{self.stderr[-limit:]}")


class AfterN:
    """Fault match: every request after the first n (the destination "fails halfway")."""

    def __init__(self, n):
        self.n = n
        self.seen = 0

    def __call__(self, req):
        self.seen += 1
        return self.seen > self.n


class GateProxy(S3Proxy):
    """S3Proxy that lets the first `pass_first` uploads of packs/blobs through and holds every
    later one (body received, not forwarded) until release() or 60 s: a destination so slow
    that the client can be killed with uploads certainly in flight."""

    def __init__(self, upstream_port, pass_first):
        self.pass_first = pass_first
        self.passed = 0
        self.held = 0
        self.gate = threading.Event()
        super().__init__(upstream_port)

    def _forward(self, req, body):
        data = req.kind in ("put_object", "upload_part") and ("/blobs/" in req.key or "/packs/" in req.key)
        if data:
            with self.lock:
                hold = self.passed >= self.pass_first
                self.passed += 0 if hold else 1
                self.held += 1 if hold else 0
            if hold:
                self.gate.wait(60)
                with self.lock:
                    self.held -= 1
        return super()._forward(req, body)

    def release(self):
        self.gate.set()


class BackupCase(ClassSetUp):
    """Two s3rvers (bucket BUCKET on each) for the class; per test a fresh folder with the
    workspaces root (workspace WS), a cache folder and destinations on their own prefixes."""

    @classmethod
    def init_class_state(cls):
        cls.servers = []
        cls.proxies = []
        cls.runs = []
        cls.tmp = None

    @classmethod
    def set_up(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ck-backup-test-")
        for _ in range(2):
            s = S3Server().start()
            s.make_bucket(BUCKET)
            cls.servers.append(s)
        cls.s3a, cls.s3b = cls.servers

    @classmethod
    def tearDownClass(cls):
        for p in cls.proxies:
            p.stop()
        for s in cls.servers:
            s.stop()
        if cls.tmp:
            if os.environ.get("CK_KEEP_TMP"):
                sys.stderr.write(f"[test_backup] kept {cls.tmp}\n")
            else:
                shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def diagnostics(cls):
        out = [("----- " + r.describe(2000)) for r in cls.runs[-4:]]
        for i, p in enumerate(cls.proxies[-2:]):
            out.append(f"----- proxy #{i} last requests\n{p.tail()}")
        for i, s in enumerate(cls.servers):
            if s.proc is not None:
                out.append(f"----- s3rver #{i} log (tail)\n{s.log()[-800:]}")
        return "\n".join(out)

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix=self._testMethodName[:40] + "-", dir=self.tmp)
        self.ws_root = os.path.join(self.dir, "workspaces")
        self.ws = os.path.join(self.ws_root, WS)
        self.cache = os.path.join(self.dir, "cache")
        self.prefix = self._testMethodName.replace("_", "-")[:50]
        self.dests = []
        self.config = os.path.join(self.dir, "config.yaml")
        write_tree(self.ws, initial_tree())
        write_tree(self.ws, IGNORED)
        os.chmod(os.path.join(self.ws, EXECUTABLE), 0o755)

    # -- config and CLI ---------------------------------------------------------------------

    def add_dest(self, name, endpoint, encrypt=False, mode="incremental", prefix=None):
        self.dests.append({"name": name, "url": f"s3://{BUCKET}/{prefix or self.prefix + '-' + name}",
                           "endpoint": endpoint, "region": "us-east-1", "encrypt": encrypt, "mode": mode})
        self.write_config()
        return f"{prefix or self.prefix + '-' + name}/"

    def write_config(self):
        lines = [f"storage: {{kind: dir, path: {json.dumps(self.ws_root)}}}",
                 f"data: {json.dumps(os.path.join(self.dir, 'data'))}",
                 "backup:", "  destinations:"]
        for d in self.dests:
            lines.append(f"    - name: {d['name']}")
            for k in ("url", "endpoint", "region", "mode"):
                lines.append(f"      {k}: {json.dumps(d[k])}")
            lines.append(f"      encrypt: {'true' if d['encrypt'] else 'false'}")
        with open(self.config, "w") as f:
            f.write("\n".join(lines) + "\n")

    def env(self, key=None, tz=None):
        base = {k: v for k, v in os.environ.items() if not k.startswith("CK_")}
        env = self.s3a.client_env(base)
        env["XDG_CACHE_HOME"] = self.cache
        env["TZ"] = tz or "UTC"
        if key is not None:
            env["CK_BACKUP_KEY"] = key
        return env

    def ck(self, *args, key=None, tz=None, timeout=CLI_TIMEOUT):
        cmd = [binary(), *args, "--config", self.config]
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, env=self.env(key, tz), capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            self.fail(f"`{' '.join(cmd)}` did not finish within {timeout} s; output so far:\n"
                      f"{(e.stdout or b'')[-2000:]!r}\n{(e.stderr or b'')[-2000:]!r}")
        run = Run(cmd, p.returncode, p.stdout, p.stderr, time.monotonic() - t0)
        self.runs.append(run)
        self.assertNotRegex(p.stdout + p.stderr, NOISE_RE, f"crash or raw exception text:\n{run.describe()}")
        return run

    def ok(self, *args, **kw):
        run = self.ck(*args, **kw)
        self.assertEqual(run.returncode, 0, run.describe())
        return run

    def fails(self, *args, mentions=(), **kw):
        """The command must exit non-zero with one clear line on stderr that names `mentions`."""
        run = self.ck(*args, **kw)
        self.assertNotEqual(run.returncode, 0, run.describe())
        self.assertEqual(len(run.err_lines), 1, f"want exactly one line on stderr:\n{run.describe()}")
        for m in mentions:
            self.assertIn(m.lower(), run.err_lines[0].lower(), run.describe())
        return run

    def snapshots(self, *args, key=None):
        """`backup list --json` as a list of snapshot entries (checks the shape)."""
        run = self.ok("backup", "list", "--json", *args, key=key)
        doc = json.loads(run.stdout)
        # {"snapshots": [{destination, workspace, id, time (RFC 3339 UTC), host, files, bytes,
        #  added_bytes}], "errors": [{destination, error}]}
        self.assertIsInstance(doc, dict, run.stdout)
        self.assertEqual(sorted(doc), ["errors", "snapshots"], run.stdout)
        self.assertEqual(doc["errors"], [], run.stdout)
        entries = doc["snapshots"]
        self.assertIsInstance(entries, list, run.stdout)
        for e in entries:
            for k, t in (("destination", str), ("workspace", str), ("id", str), ("time", str), ("host", str),
                         ("files", int), ("bytes", int), ("added_bytes", int)):
                self.assertIsInstance(e.get(k), t, f"{k} in {e}")
            self.assertRegex(e["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", e)
            if e["id"] != "latest":  # a mirror destination's only copy
                self.assertRegex(e["id"], r"^\d{8}T\d{6}Z-[0-9a-f]{8}$", e)
                self.assertEqual(e["id"][:16], e["time"].replace("-", "").replace(":", "")[:16], e)
        return entries

    def objects(self, server, prefix):
        return server.list_objects(BUCKET, prefix)

    def source_tree(self, root=None):
        """The workspace's files minus the ignored ones."""
        tree = read_tree(root or self.ws)
        return {k: v for k, v in tree.items() if not k.startswith("node_modules/") and not k.endswith(".log")}


# --------------------------------------------------------------------------- the tests


class TestDestinations(BackupCase):
    def test_two_destinations_in_one_command(self):
        pa = self.add_dest("alpha", self.s3a.endpoint)
        pb = self.add_dest("beta", self.s3b.endpoint)
        dry = self.ok("backup", "--dry-run")
        self.assertEqual((self.objects(self.s3a, pa), self.objects(self.s3b, pb)), ({}, {}),
                         f"--dry-run wrote objects:\n{dry.describe()}")
        self.assertIn("alpha", dry.stdout, dry.describe())
        self.assertIn("beta", dry.stdout, dry.describe())
        self.ok("backup")
        for server, prefix in ((self.s3a, pa), (self.s3b, pb)):
            keys = self.objects(server, prefix)
            snaps = [k for k in keys if k.startswith(f"{prefix}snapshots/{WS}/") and k.endswith(".json")]
            self.assertEqual(len(snaps), 1, keys)
            self.assertIn(f"{prefix}ck-backup.json", keys)
            # 10 files are not 10 objects: small ones are packed
            self.assertLess(len(keys), 10, keys)
        entries = self.snapshots()
        self.assertEqual(sorted((e["destination"], e["workspace"]) for e in entries),
                         [("alpha", WS), ("beta", WS)], entries)
        src = self.source_tree()
        for e in entries:
            self.assertEqual(e["files"], len(src), e)
            self.assertEqual(e["bytes"], sum(len(v) for v in src.values()), e)
            self.assertEqual(e["added_bytes"], e["bytes"], e)
            self.assertRegex(e["id"], r"^\d{8}T\d{6}Z-[0-9a-f]{8}$", e)
        # An unchanged second backup adds one snapshot object per destination and no bytes.
        before_a, before_b = self.objects(self.s3a, pa), self.objects(self.s3b, pb)
        self.ok("backup", "--dest", "alpha")
        after_a = self.objects(self.s3a, pa)
        self.assertEqual(len(after_a.keys() - before_a.keys()), 1, sorted(after_a.keys() - before_a.keys()))
        self.assertEqual(self.objects(self.s3b, pb), before_b, "--dest alpha wrote to beta")
        alpha = [e for e in self.snapshots("--dest", "alpha") if e["destination"] == "alpha"]
        self.assertEqual(len(alpha), 2, alpha)
        self.assertEqual(sorted(e["added_bytes"] for e in alpha)[0], 0, alpha)
        beta = [e for e in self.snapshots() if e["destination"] == "beta"]
        self.assertEqual(len(beta), 1, beta)

    def test_one_destination_fails_halfway(self):
        # Six more standalone blobs: the repository config (HEAD + PUT), the index listing and two
        # data uploads get through, then every connection is reset.
        write_tree(self.ws, {f"assets/clip-{i}.bin": det_bytes(200 + i, MiB + i) for i in range(6)})
        pa = self.add_dest("good", self.s3a.endpoint)
        flaky = S3Proxy(self.s3b.port, faults=[Fault(AfterN(5), "drop", times=None, name="halfway")])
        self.proxies.append(flaky)
        pb = self.add_dest("flaky", flaky.endpoint)
        run = self.ck("backup", timeout=300)
        self.assertEqual(run.returncode, 1, run.describe())
        self.assertTrue(any("flaky" in line for line in run.err_lines), run.describe())
        self.assertFalse(any("good" in line and ("fail" in line.lower() or "error" in line.lower())
                             for line in run.err_lines), run.describe())
        self.assertGreater(len(flaky.requests()), 3, "the flaky destination was never tried")
        keys = self.objects(self.s3a, pa)
        self.assertEqual(len([k for k in keys if k.startswith(f"{pa}snapshots/{WS}/")]), 1, keys)
        flaky_keys = self.objects(self.s3b, pb)
        self.assertTrue([k for k in flaky_keys if "/blobs/" in k or "/packs/" in k],
                        f"the flaky destination failed before any data was written: {flaky.tail()}")
        self.assertEqual([k for k in flaky_keys if "/snapshots/" in k], [])
        good = self.snapshots("--dest", "good")
        self.assertEqual([(e["destination"], e["workspace"]) for e in good], [("good", WS)])


class TestMirrorDestination(BackupCase):
    def test_plain_copy_readable_by_any_s3_tool(self):
        prefix = self.add_dest("copy", self.s3b.endpoint, mode="mirror")
        self.ok("backup")
        keys = self.objects(self.s3b, prefix)
        src = self.source_tree()
        for rel, data in src.items():
            self.assertEqual(self.s3b.get_object(BUCKET, f"{prefix}{WS}/{rel}"), data, rel)
        self.assertFalse([k for k in keys if "node_modules" in k or k.endswith(".log")], keys)
        self.assertIn(f"{prefix}.cloudyknight/backup/{WS}.json", keys)
        os.remove(os.path.join(self.ws, "docs/readme.md"))
        self.ok("backup")
        self.assertNotIn(f"{prefix}{WS}/docs/readme.md", self.objects(self.s3b, prefix))
        entries = self.snapshots("--dest", "copy")
        self.assertEqual([(e["destination"], e["workspace"]) for e in entries], [("copy", WS)])
        self.fails("restore", "--workspace", WS, "--point-in-time", "2030-01-01 00:00:00", "--to",
                   os.path.join(self.dir, "x"), mentions=("mirror",))
        out = os.path.join(self.dir, "out")
        self.ok("restore", "--workspace", WS, "--to", out)
        self.assertEqual(read_tree(out), self.source_tree())


class TestRestore(BackupCase):
    def test_mirror_deletes_newer_file_merge_keeps_it(self):
        self.add_dest("main", self.s3a.endpoint)
        self.ok("backup")
        snap = self.source_tree()
        write_tree(self.ws, {"newer.txt": b"written after the snapshot\n", "index.html": b"changed\n"})
        write_tree(self.ws, {"node_modules/later/x.js": b"ignored, never deleted\n"})

        run = self.ok("restore", "--workspace", WS, "--mode", "merge")
        tree = read_tree(self.ws)
        self.assertEqual(tree["newer.txt"], b"written after the snapshot\n", run.describe())
        self.assertEqual(tree["index.html"], snap["index.html"])
        self.assertIn("node_modules/later/x.js", tree)

        dry = self.ok("restore", "--workspace", WS, "--mode", "mirror", "--dry-run")
        self.assertIn("newer.txt", dry.stdout + dry.stderr, dry.describe())
        self.assertIn("newer.txt", read_tree(self.ws), "--dry-run deleted a file")

        self.ok("restore", "--workspace", WS, "--mode", "mirror")
        tree = read_tree(self.ws)
        self.assertNotIn("newer.txt", tree)
        self.assertEqual(self.source_tree(), snap)
        for rel, data in IGNORED.items():  # ignored files are not the snapshot's business
            self.assertEqual(tree.get(rel), data, rel)
        self.assertEqual(tree.get("node_modules/later/x.js"), b"ignored, never deleted\n")

    def test_point_in_time_between_two_snapshots(self):
        self.add_dest("main", self.s3a.endpoint)
        self.ok("backup")
        time.sleep(1.2)
        between = datetime.datetime.now(zoneinfo.ZoneInfo(TZ)).strftime("%Y-%m-%d %H:%M:%S")
        time.sleep(1.2)
        write_tree(self.ws, {"index.html": b"version 2\n", "src/app.js": b"console.log(2)\n"})
        self.ok("backup")
        entries = self.snapshots("--dest", "main")
        self.assertEqual(len(entries), 2, entries)
        out = os.path.join(self.dir, "pit")
        self.ok("restore", "--workspace", WS, "--point-in-time", between, "--to", out, tz=TZ)
        self.assertEqual(self.source_tree(out), {**self.source_tree(), "index.html": initial_tree()["index.html"],
                                                 "src/app.js": initial_tree()["src/app.js"]})
        latest = os.path.join(self.dir, "latest")
        self.ok("restore", "--workspace", WS, "--to", latest)
        self.assertEqual(self.source_tree(latest), self.source_tree())
        # The same text read in UTC+14 is 8 h 30 earlier: before the first snapshot.
        oldest = sorted(entries, key=lambda e: e["id"])[0]["id"]
        run = self.fails("restore", "--workspace", WS, "--point-in-time", between, "--to",
                         os.path.join(self.dir, "none"), tz="Pacific/Kiritimati")
        self.assertTrue(oldest in run.err_lines[0] or oldest[:15] in run.err_lines[0].replace("-", "").replace(":", "")
                        or "oldest" in run.err_lines[0].lower(), run.describe())
        self.assertFalse(os.path.exists(os.path.join(self.dir, "none", "index.html")))
        # --snapshot picks exactly that one
        first = sorted(entries, key=lambda e: e["id"])[0]["id"]
        by_id = os.path.join(self.dir, "by-id")
        self.ok("restore", "--workspace", WS, "--snapshot", first, "--to", by_id)
        self.assertEqual(read_tree(by_id)["index.html"], initial_tree()["index.html"])

    def test_deleted_file_comes_back(self):
        self.add_dest("main", self.s3a.endpoint)
        st_before = os.stat(os.path.join(self.ws, EXECUTABLE))
        self.ok("backup")
        for rel in (EXECUTABLE, "assets/big.bin", "src/lib/util.py"):
            os.remove(os.path.join(self.ws, rel))
        self.ok("restore", "--workspace", WS)
        tree = read_tree(self.ws)
        for rel in (EXECUTABLE, "assets/big.bin", "src/lib/util.py"):
            self.assertEqual(tree.get(rel), initial_tree()[rel], rel)
        st = os.stat(os.path.join(self.ws, EXECUTABLE))
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o755)
        self.assertEqual(int(st.st_mtime), int(st_before.st_mtime))
        # Nothing else changed: a restore of an intact workspace writes nothing.
        run = self.ok("restore", "--workspace", WS, "--dry-run")
        self.assertNotIn("index.html", run.stdout, run.describe())

    def test_restore_to_dir_leaves_workspace_alone(self):
        self.add_dest("main", self.s3a.endpoint)
        self.ok("backup")
        snap = self.source_tree()
        write_tree(self.ws, {"index.html": b"edited later\n", "extra.txt": b"new\n"})
        os.remove(os.path.join(self.ws, "docs/readme.md"))
        before = read_tree(self.ws)
        mtimes = {rel: os.stat(os.path.join(self.ws, rel)).st_mtime_ns for rel in before}
        out = os.path.join(self.dir, "elsewhere")
        self.ok("restore", "--workspace", WS, "--to", out, "--mode", "mirror")
        self.assertEqual(read_tree(out), snap)
        self.assertEqual(read_tree(self.ws), before)
        self.assertEqual({rel: os.stat(os.path.join(self.ws, rel)).st_mtime_ns for rel in before}, mtimes)


class TestEncryption(BackupCase):
    def test_no_plaintext_in_any_object_and_key_required(self):
        prefix = self.add_dest("sealed", self.s3a.endpoint, encrypt=True)
        self.ok("backup", key=KEY)
        keys = self.objects(self.s3a, prefix)
        self.assertGreater(len(keys), 2, keys)
        needles = [MARKER, SECRET_NAME.encode(), b"console.log('version 1')", initial_tree()["assets/small.bin"][:64],
                   initial_tree()["assets/big.bin"][1000:1064]]
        for k in keys:
            data = self.s3a.get_object(BUCKET, k)
            for n in needles:
                self.assertNotIn(n, data, f"{k} holds plaintext {n[:40]!r}")
            self.assertNotIn(SECRET_NAME, k)
            if k.endswith("ck-backup.json"):
                cfg = json.loads(data)
                self.assertEqual(cfg["encryption"]["cipher"], "aes-256-gcm", cfg)
                self.assertEqual(cfg["encryption"]["kdf"], "scrypt", cfg)
            elif "/snapshots/" in k or "/packs/" in k or "/index/" in k or "/blobs/" in k:
                self.assertTrue(data.startswith(b"CKB1"), f"{k} does not start with the CKB1 magic")

        out = os.path.join(self.dir, "out")
        run = self.fails("restore", "--workspace", WS, "--to", out, mentions=("sealed",))
        self.assertRegex(run.err_lines[0], r"backup\.key|CK_BACKUP_KEY", run.describe())
        self.assertEqual(read_tree(out) if os.path.isdir(out) else {}, {})
        self.fails("restore", "--workspace", WS, "--to", out, key="not the key", mentions=("sealed",))
        self.assertEqual(read_tree(out) if os.path.isdir(out) else {}, {})
        self.fails("backup", mentions=("sealed",))  # backing up needs the key as well
        self.ok("restore", "--workspace", WS, "--to", out, key=KEY)
        self.assertEqual(read_tree(out), self.source_tree())


class TestIntegrity(BackupCase):
    def test_tampered_pack_is_detected(self):
        prefix = self.add_dest("main", self.s3a.endpoint)
        self.ok("backup")
        self.ok("backup", "check")
        keys = self.objects(self.s3a, prefix)
        index_key = next(k for k in keys if k.startswith(f"{prefix}index/"))
        index = json.loads(self.s3a.get_object(BUCKET, index_key))
        pack = next(p for p in index["packs"] if p["blobs"])
        blob = max(pack["blobs"], key=lambda b: b["length"])
        pack_key = f"{prefix}packs/{pack['pack']}"
        data = bytearray(self.s3a.get_object(BUCKET, pack_key))
        at = blob["offset"] + blob["length"] // 2
        data[at] ^= 0x5A
        self.s3a.put_object(BUCKET, pack_key, bytes(data))
        snap_id = self.snapshots("--dest", "main")[0]["id"]

        run = self.ck("backup", "check")
        self.assertEqual(run.returncode, 1, run.describe())
        out = run.stdout + run.stderr
        self.assertIn(blob["id"], out, f"the damaged blob is not named:\n{run.describe()}")
        self.assertIn(snap_id, out, f"the damaged snapshot is not named:\n{run.describe()}")
        target = os.path.join(self.dir, "target")
        write_tree(target, {"keep.txt": b"was here before\n"})
        run = self.ck("restore", "--workspace", WS, "--to", target)
        self.assertEqual(run.returncode, 1, run.describe())
        self.assertEqual(len(run.err_lines), 1, run.describe())
        self.assertIn(blob["id"], run.err_lines[0], run.describe())
        self.assertEqual(read_tree(target), {"keep.txt": b"was here before\n"}, "a failed restore changed the target")

    def test_tampered_encrypted_blob_is_detected(self):
        prefix = self.add_dest("sealed", self.s3a.endpoint, encrypt=True)
        self.ok("backup", key=KEY)
        blobs = [k for k in self.objects(self.s3a, prefix) if k.startswith(f"{prefix}blobs/")]
        self.assertEqual(len(blobs), 1, blobs)  # assets/big.bin, the only file >= 1 MiB
        data = bytearray(self.s3a.get_object(BUCKET, blobs[0]))
        data[len(data) // 2] ^= 0x01
        self.s3a.put_object(BUCKET, blobs[0], bytes(data))
        blob_id = blobs[0].rsplit("/", 1)[1]
        snap_id = self.snapshots("--dest", "sealed", key=KEY)[0]["id"]
        run = self.ck("backup", "check", key=KEY)
        self.assertEqual(run.returncode, 1, run.describe())
        self.assertTrue(blob_id in run.stdout + run.stderr or snap_id in run.stdout + run.stderr, run.describe())
        out = os.path.join(self.dir, "out")
        run = self.ck("restore", "--workspace", WS, "--to", out, key=KEY)
        self.assertEqual(run.returncode, 1, run.describe())
        self.assertEqual(read_tree(out) if os.path.isdir(out) else {}, {}, "a failed restore wrote files")

    def test_kill_9_during_backup_leaves_a_consistent_repository(self):
        # 24 standalone blobs (>= 1 MiB each); the proxy stores the first 3 data uploads and holds
        # every later one, and the client is killed while they hang.
        write_tree(self.ws, {f"assets/media-{i:02d}.bin": det_bytes(100 + i, MiB + 4096 * i) for i in range(24)})
        gate = GateProxy(self.s3a.port, pass_first=3)
        self.proxies.append(gate)
        prefix = self.add_dest("slow", gate.endpoint)
        cmd = [binary(), "backup", "--config", self.config]
        proc = subprocess.Popen(cmd, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and proc.poll() is None:
                stored = [t for k, m, t, o in gate.requests() if k in ("put_object", "upload_part")
                          and ("/blobs/" in t or "/packs/" in t) and o.startswith("2")]
                if len(stored) >= 3 and gate.held > 0:
                    break
                time.sleep(0.02)
            if proc.poll() is not None:
                self.fail(f"the backup ended (exit {proc.returncode}) before it could be killed mid-upload: "
                          f"{proc.stderr.read()[-2000:]!r}")
            self.assertGreater(gate.held, 0, "no upload was held within 60 s")
            os.killpg(proc.pid, signal.SIGKILL)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            proc.stdout.close()
            proc.stderr.close()
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        # The held uploads now reach s3rver (as uploads a server finished after the client died).
        gate.release()
        for _ in range(400):
            if gate.held == 0:
                break
            time.sleep(0.05)
        keys = self.objects(self.s3a, prefix)
        self.assertGreaterEqual(len([k for k in keys if "/blobs/" in k or "/packs/" in k]), 3, keys)
        self.assertEqual([k for k in keys if "/snapshots/" in k], [], "a snapshot was written before its data")

        self.ok("backup", "check")
        self.ok("backup")
        self.ok("backup", "check")
        self.assertEqual(len(self.snapshots("--dest", "slow")), 1)
        out = os.path.join(self.dir, "out")
        self.ok("restore", "--workspace", WS, "--to", out)
        self.assertEqual(read_tree(out), self.source_tree())


class TestConfigSources(BackupCase):
    def test_destinations_from_the_environment_and_key_from_the_file(self):
        # No backup: section in the file: CK_BACKUP_DESTINATIONS carries the list (JSON flow).
        prefix = f"{self.prefix}-env"
        dests = [{"name": "from-env", "url": f"s3://{BUCKET}/{prefix}", "endpoint": self.s3a.endpoint,
                  "encrypt": True}]
        with open(self.config, "w") as f:
            f.write(f"storage: {{kind: dir, path: {json.dumps(self.ws_root)}}}\n"
                    f"backup: {{key: {json.dumps(KEY)}}}\n")
        env = self.env()
        env["CK_BACKUP_DESTINATIONS"] = json.dumps(dests)
        cmd = [binary(), "backup", "--config", self.config]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT)
        self.runs.append(Run(cmd, p.returncode, p.stdout, p.stderr, 0))
        self.assertEqual(p.returncode, 0, self.runs[-1].describe())
        keys = self.objects(self.s3a, prefix + "/")
        self.assertEqual(len([k for k in keys if "/snapshots/" in k]), 1, keys)
        cfg = json.loads(self.s3a.get_object(BUCKET, f"{prefix}/ck-backup.json"))
        self.assertEqual(cfg["encryption"]["cipher"], "aes-256-gcm", cfg)
        # The key from the file opens it; CK_BACKUP_KEY overrides the file (a wrong one fails).
        out = os.path.join(self.dir, "out")
        cmd = [binary(), "restore", "--workspace", WS, "--to", out, "--config", self.config]
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(read_tree(out), self.source_tree())
        env["CK_BACKUP_KEY"] = "wrong"
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        self.assertIn("from-env", p.stderr)
        # A malformed list is one clear line naming the setting.
        env["CK_BACKUP_DESTINATIONS"] = "[{name: x"
        p = subprocess.run([binary(), "backup", "--config", self.config], env=env, capture_output=True,
                           text=True, timeout=CLI_TIMEOUT)
        self.assertNotEqual(p.returncode, 0, p.stdout)
        lines = [line for line in p.stderr.splitlines() if line.strip()]
        self.assertEqual(len(lines), 1, p.stderr)
        self.assertIn("backup.destinations", lines[0].lower().replace("ck_backup_destinations", "backup.destinations"))


class TestInvalidInput(BackupCase):
    def test_errors_are_one_clear_line(self):
        self.add_dest("main", self.s3a.endpoint)
        self.ok("backup")
        self.fails("backup", "--dest", "nowhere", mentions=("nowhere",))
        self.fails("restore", "--workspace", WS, "--dest", "nowhere", mentions=("nowhere",))
        self.fails("backup", "list", "--dest", "nowhere", mentions=("nowhere",))
        for bad in ("yesterday", "2024-13-01 10:00:00", "2024-01-15 25:61:00", "2024-01-15T10:30:00+99:00",
                    "2024-01-15 10:30:00 and more"):
            self.fails("restore", "--workspace", WS, "--point-in-time", bad, "--to", os.path.join(self.dir, "x"),
                       mentions=(bad,))
        missing = "20990101T000000Z-deadbeef"
        self.fails("restore", "--workspace", WS, "--snapshot", missing, "--to", os.path.join(self.dir, "x"),
                   mentions=(missing,))
        self.fails("restore", "--workspace", WS, "--snapshot", "../../etc", "--to", os.path.join(self.dir, "x"))
        first = self.snapshots()[0]["id"]
        self.fails("restore", "--workspace", WS, "--snapshot", first, "--point-in-time", "2030-01-01 00:00:00",
                   "--to", os.path.join(self.dir, "x"))
        self.fails("restore", "--workspace", WS, "--mode", "sideways", "--to", os.path.join(self.dir, "x"))
        self.fails("backup", "--workspace", "no-such-workspace", mentions=("no-such-workspace",))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "x", "index.html")))


if __name__ == "__main__":
    unittest.main()
