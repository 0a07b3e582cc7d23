#!/usr/bin/env python3
"""Backup benchmark (issue 17): `cloudyknight backup`/`restore` beside restic's `backup`/`restore`
against one s3rver on 127.0.0.1, on the same generated workspace, in one run. Started by
bench/backup/run.sh (which installs restic and s3rver); see that file for the options.

Per round and tool (the tools' order rotates from round to round), each on its own prefix of
one bucket, with a fresh copy of the workspace and a fresh cache folder:
  first      the first backup of the workspace (restic: `restic init` before it, untimed);
  2..10      nine more, each after make_workspace.py changed one text file; "tenth" is the last;
  unchanged  one more with nothing changed (the hourly backup of an idle workspace);
  restore    the latest snapshot into an empty folder, then compared file by file (untimed).
Objects written = keys under the prefix after the step that were not there before (S3
listing); bytes stored = the sizes of everything under the prefix after the step.
"""

import filecmp
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from s3util import ACCESS_KEY, REGION, SECRET_KEY, S3Server, s3rver_path  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GEN = os.path.join(HERE, "make_workspace.py")
BUCKET = "bench"
WORKSPACE = "bench"
PASSWORD = "bench-passphrase-0123456789"
KNOWN_TOOLS = ("ours", "restic", "ours-plain")
LABEL = {"ours": "ours (encrypted)", "restic": "restic", "ours-plain": "ours (no encryption)"}
START = time.monotonic()


class BenchError(Exception):
    pass


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def env_int(name, default, lo, hi):
    raw = os.environ.get(name, str(default))
    try:
        v = int(raw)
    except ValueError:
        raise SystemExit(f"[bench] ERROR: {name} must be an integer (got '{raw}')")
    if not lo <= v <= hi:
        raise SystemExit(f"[bench] ERROR: {name} must be between {lo} and {hi} (got {v})")
    return v


ROUNDS = env_int("BENCH_ROUNDS", 3, 1, 50)
FILES = env_int("BENCH_FILES", 5000, 10, 200_000)
BINARIES = env_int("BENCH_BINARIES", 120, 0, 10_000)
BACKUPS = env_int("BENCH_BACKUPS", 10, 2, 100)
OP_TIMEOUT = env_int("BENCH_OP_TIMEOUT", 300, 5, 3600)
TOTAL_TIMEOUT = env_int("BENCH_TIMEOUT", 2400, 30, 86400)
TOOLS = os.environ.get("BENCH_TOOLS", "ours restic ours-plain").split()
CK_BINARY = os.environ.get("CK_BINARY") or os.path.join(REPO, "build", "cloudyknight")
RESTIC = os.environ.get("RESTIC", shutil.which("restic") or "/usr/bin/restic")
KEEP = os.environ.get("BENCH_KEEP") == "1"
PARENT = os.environ.get("BENCH_DIR") or tempfile.gettempdir()


def left(cap=OP_TIMEOUT):
    remaining = TOTAL_TIMEOUT - (time.monotonic() - START)
    if remaining <= 2:
        raise BenchError(f"BENCH_TIMEOUT ({TOTAL_TIMEOUT} s) reached")
    return min(cap, remaining)


def run(cmd, env, what, cwd=None):
    """Runs cmd bounded by BENCH_OP_TIMEOUT; returns its wall time. Fails with its output."""
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=left())
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what}: no answer within {left():.0f} s (BENCH_OP_TIMEOUT/BENCH_TIMEOUT): "
                         f"{' '.join(cmd)}")
    dt = time.monotonic() - t0
    if p.returncode != 0:
        out = (p.stderr.strip() or p.stdout.strip())[-1500:]
        raise BenchError(f"{what} exited with {p.returncode}: {' '.join(cmd)}\n{out}")
    return dt


def ck_has_backup():
    """(True, "") when the binary lists a `backup` subcommand in its --help (`X backup --help` would
    print the top-level help and exit 0 even without one)."""
    try:
        p = subprocess.run([CK_BINARY, "--help"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    if any(line.split(",")[0].split()[:1] == ["backup"] for line in p.stdout.splitlines()):
        return True, ""
    return False, "its --help lists no `backup` subcommand"


def yaml_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Tool:
    """One tool's commands for one round: its prefix, workspace copy and cache folder."""

    def __init__(self, name, s3, tmp, rnd):
        self.name = name
        self.s3 = s3
        self.prefix = f"{name}-r{rnd}"
        self.dir = os.path.join(tmp, f"{name}-r{rnd}")
        self.ws_root = os.path.join(self.dir, "workspaces")
        self.ws = os.path.join(self.ws_root, WORKSPACE)
        self.restore_dir = os.path.join(self.dir, "restored")
        self.env = s3.client_env()
        self.env["XDG_CACHE_HOME"] = os.path.join(self.dir, "cache")
        self.env["HOME"] = os.path.join(self.dir, "home")
        self.env.pop("CK_BACKUP_KEY", None)
        for k in [k for k in self.env if k.startswith("CK_") or k.startswith("RESTIC_")]:
            del self.env[k]
        os.makedirs(self.env["HOME"])
        if name == "restic":
            self.env["RESTIC_PASSWORD"] = PASSWORD
            self.repo = f"s3:{s3.endpoint}/{BUCKET}/{self.prefix}"
        else:
            encrypt = name == "ours"
            if encrypt:
                self.env["CK_BACKUP_KEY"] = PASSWORD
            self.config = os.path.join(self.dir, "config.yaml")
            with open(self.config, "w") as f:
                f.write(f"storage: {{kind: dir, path: {yaml_str(self.ws_root)}}}\n"
                        f"data: {yaml_str(os.path.join(self.dir, 'data'))}\n"
                        "backup:\n  destinations:\n"
                        f"    - name: bench\n      url: {yaml_str(f's3://{BUCKET}/{self.prefix}')}\n"
                        f"      endpoint: {yaml_str(s3.endpoint)}\n      region: {REGION}\n"
                        f"      encrypt: {'true' if encrypt else 'false'}\n")

    def prepare(self):
        if self.name == "restic":
            run([RESTIC, "--cacert", self.s3.tls[0], "-r", self.repo, "init", "-q"], self.env, "restic init")

    def backup(self):
        if self.name == "restic":
            # From inside the folder, so the snapshot's paths are the workspace's own (restore
            # then writes them at the target's top, as ours does).
            return run([RESTIC, "--cacert", self.s3.tls[0], "-r", self.repo, "backup", "-q", "."], self.env,
                       "restic backup", cwd=self.ws)
        return run([CK_BINARY, "backup", "--config", self.config, "--dest", "bench", "--workspace", WORKSPACE],
                   self.env, "cloudyknight backup")

    def restore(self):
        os.makedirs(self.restore_dir)
        if self.name == "restic":
            return run([RESTIC, "--cacert", self.s3.tls[0], "-r", self.repo, "restore", "latest", "-q",
                        "--target", self.restore_dir], self.env, "restic restore")
        return run([CK_BINARY, "restore", "--config", self.config, "--dest", "bench", "--workspace", WORKSPACE,
                    "--to", self.restore_dir], self.env, "cloudyknight restore")

    def objects(self):
        return self.s3.list_objects(BUCKET, self.prefix + "/")

    def cleanup(self):
        for key in self.objects():
            self.s3.delete_object(BUCKET, key)
        if not KEEP:
            shutil.rmtree(self.dir, ignore_errors=True)


def same_tree(a, b):
    """None when folders a and b hold the same files with the same bytes, else the first difference."""
    def files(root):
        out = {}
        for d, _, names in os.walk(root):
            for n in names:
                p = os.path.join(d, n)
                out[os.path.relpath(p, root)] = p
        return out
    fa, fb = files(a), files(b)
    if fa.keys() != fb.keys():
        missing = sorted(fa.keys() - fb.keys())[:3]
        extra = sorted(fb.keys() - fa.keys())[:3]
        return f"{len(fa)} files vs {len(fb)} restored (missing {missing}, extra {extra})"
    for rel in sorted(fa):
        if not filecmp.cmp(fa[rel], fb[rel], shallow=False):
            return f"{rel} differs"
    return None


def measure(tool, pristine):
    """One round of one tool: {step: (seconds, objects written, bytes stored, bytes added)}."""
    shutil.copytree(pristine, tool.ws, copy_function=shutil.copy2)
    tool.prepare()
    res = {}

    def step(name, fn):
        before = tool.objects()
        dt = fn()
        after = tool.objects()
        written = len(after.keys() - before.keys())
        res[name] = (dt, written, sum(after.values()), sum(after.values()) - sum(before.values()))
        log(f"  {LABEL[tool.name]:<22} {name:<10} {dt:7.2f} s  {written:5d} objects  "
            f"{sum(after.values()) / 1e6:8.1f} MB stored")

    step("first", tool.backup)
    for i in range(2, BACKUPS + 1):
        subprocess.run([sys.executable, GEN, "mutate", tool.ws, "--step", str(i)], check=True,
                       capture_output=True, timeout=60)
        step("tenth" if i == BACKUPS else f"b{i}", tool.backup)
    step("unchanged", tool.backup)
    step("restore", tool.restore)
    diff = same_tree(tool.ws, tool.restore_dir)
    if diff:
        raise BenchError(f"{LABEL[tool.name]}: the restored folder is not the workspace: {diff}")
    return res


def fmt_bytes(n):
    return f"{n / 1e6:.1f} MB" if abs(n) >= 1e5 else f"{n / 1e3:.1f} kB"


def main():
    for t in TOOLS:
        if t not in KNOWN_TOOLS:
            raise SystemExit(f"[bench] ERROR: unknown tool '{t}' in BENCH_TOOLS (known: {' '.join(KNOWN_TOOLS)})")
    if not TOOLS:
        raise SystemExit(f"[bench] ERROR: BENCH_TOOLS is empty (known: {' '.join(KNOWN_TOOLS)})")
    if any(t.startswith("ours") for t in TOOLS):
        if not os.access(CK_BINARY, os.X_OK):
            raise SystemExit(f"[bench] ERROR: {CK_BINARY} does not exist: build it (cmake --build build) "
                             "or set CK_BINARY")
        ok, why = ck_has_backup()
        if not ok:
            raise SystemExit(f"[bench] ERROR: {CK_BINARY} has no `backup` command ({why}); "
                             "build a tree with the backup module (branch backup-core) or measure restic alone "
                             "with BENCH_TOOLS=restic")
    if "restic" in TOOLS and not os.access(RESTIC, os.X_OK):
        raise SystemExit(f"[bench] ERROR: restic not found at {RESTIC}: apt-get install restic (run.sh does)")

    tempfile.tempdir = PARENT  # s3rver's data folder (S3Server) goes there too
    tmp = tempfile.mkdtemp(prefix="ck-backup-bench.", dir=PARENT)
    s3 = None
    failed = []
    try:
        cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                        "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=127.0.0.1",
                        "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True, timeout=60)
        s3 = S3Server(tls=(cert, key)).start()
        s3.make_bucket(BUCKET)
        pristine = os.path.join(tmp, "pristine")
        t0 = time.monotonic()
        summary = subprocess.run([sys.executable, GEN, "init", pristine, "--files", str(FILES),
                                  "--binaries", str(BINARIES)], check=True, capture_output=True, text=True,
                                 timeout=left(600)).stdout.strip()
        gen_s = time.monotonic() - t0
        restic_v = subprocess.run([RESTIC, "version"], capture_output=True, text=True).stdout.strip() \
            if "restic" in TOOLS else "-"
        fs_type = subprocess.run(["df", "-T", tmp], capture_output=True, text=True).stdout.split("\n")[1].split()[1]
        print(f"CloudyKnight backup benchmark  ({os.cpu_count()} cores, load avg at start "
              f"{os.getloadavg()[0]:.2f}, median of {ROUNDS} rounds, tools' order rotating)")
        print(f"workspace: {summary}; generated in {gen_s:.1f} s; work dir on {fs_type} ({PARENT})")
        print(f"s3rver {s3rver_path()} over HTTPS on 127.0.0.1 for every tool (s3rver 3 cannot read restic's "
              f"aws-chunked uploads over plain HTTP); {restic_v}")
        print(f"steps: first backup, backups 2..{BACKUPS} each after one text file changed ('tenth' = "
              f"backup {BACKUPS}), an unchanged backup, a full restore into an empty folder (verified)")
        print("objects = keys new under the tool's prefix after the step; stored = bytes under the prefix "
              "after it (added = the change)")
        print()

        results = {t: [] for t in TOOLS}
        for rnd in range(1, ROUNDS + 1):
            order = TOOLS[(rnd - 1) % len(TOOLS):] + TOOLS[:(rnd - 1) % len(TOOLS)]
            log(f"round {rnd}/{ROUNDS}: {', '.join(order)}")
            for name in order:
                tool = Tool(name, s3, tmp, rnd)
                try:
                    results[name].append(measure(tool, pristine))
                except BenchError as e:
                    failed.append(f"{LABEL[name]} round {rnd}: {e}")
                    log(f"FAILED: {LABEL[name]} round {rnd}: {e}")
                    if "BENCH_TIMEOUT" in str(e):
                        raise
                finally:
                    tool.cleanup()
        report(results)
    except BenchError as e:
        failed.append(str(e))
    finally:
        if s3:
            s3.stop()
        if KEEP:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failed:
        print()
        print("FAILED:")
        for f in failed:
            print(f"  {f}")
        return 1
    return 0


def report(results):
    steps = [("first", "first backup"), ("tenth", f"backup {BACKUPS} (tenth)"),
             ("unchanged", "unchanged backup"), ("restore", "full restore")]
    med = {}
    for t, rounds in results.items():
        if not rounds:
            continue
        med[t] = {s: tuple(statistics.median(r[s][i] for r in rounds) for i in range(4)) for s, _ in steps}
        others = [r[f"b{i}"][0] for r in rounds for i in range(2, BACKUPS)]
        med[t]["b2-9"] = statistics.median(others) if others else float("nan")
    hdr = f"{'step':<20} {'tool':<22} {'time':>9} {'objects':>8} {'stored':>10} {'added':>10}"
    print(hdr)
    print("-" * len(hdr))
    for s, title in steps:
        for t in TOOLS:
            if t not in med:
                print(f"{title:<20} {LABEL[t]:<22} {'(no result)':>9}")
                continue
            dt, objs, stored, added = med[t][s]
            print(f"{title:<20} {LABEL[t]:<22} {dt:8.2f}s {objs:8.0f} {fmt_bytes(stored):>10} {fmt_bytes(added):>10}")
        if "restic" in med:
            for t in ("ours", "ours-plain"):
                if t not in med:
                    continue
                ratios = []
                for i in range(3):
                    per_round = [a[s][i] / b[s][i] for a, b in zip(results[t], results["restic"]) if b[s][i]]
                    ratios.append(f"{statistics.median(per_round):.2f}" if per_round else "-")
                label = "ours/restic" if t == "ours" else "ours plain/restic"
                print(f"{'':<20} {label:<22} {ratios[0]:>9} {ratios[1]:>8} {ratios[2]:>10}")
        print()
    for t in TOOLS:
        if t in med:
            print(f"{LABEL[t]}: median time of backups 2..{BACKUPS - 1}: {med[t]['b2-9']:.2f} s")
    print("(ratios: median of the per-round ratios of time, objects written and bytes stored)")
    if "ours" in med:
        print()
        print("issue 17 goals (ours, encrypted):")
        dt, objs, _, _ = med["ours"]["unchanged"]
        print(f"  unchanged backup under 1 s with one object written: {dt:.2f} s, {objs:.0f} object(s): "
              f"{'met' if dt < 1 and objs == 1 else 'NOT met'}")
        if "restic" in med:
            for s, title in steps:
                if s == "unchanged":
                    continue
                a, b = med["ours"][s][0], med["restic"][s][0]
                print(f"  {title} faster than restic: {a:.2f} s vs {b:.2f} s: {'met' if a < b else 'NOT met'}")


def on_signal(signum, _frame):
    raise BenchError(f"stopped by signal {signum}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sys.exit(main())
