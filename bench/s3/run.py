#!/usr/bin/env python3
"""S3 sync benchmark: many small files, `cloudyknight workspace upload` vs `aws s3 sync` vs
`rclone sync`, all against one fresh s3rver on 127.0.0.1 in one run.

The tree: BENCH_FILES (5,000) files of 1-4 KiB of random bytes, in 50 folders one level deep
(`folder-NN/fNNNN.bin`), written once. Each tool gets its own empty prefix in the same bucket
and is timed (time.monotonic, wall clock of the whole command) for

  cold   upload into the empty prefix;
  no-op  the same command again right after it (nothing changed, nothing may be transferred).

Rows (flags printed in the output):
  ours            cloudyknight workspace upload bench DIR --storage s3://bkt/ours ...
                  (its defaults; the sync index lives in a fresh XDG_CACHE_HOME)
  ours, no index  the no-op run once more with an empty XDG_CACHE_HOME: it has to compare by
                  listing and MD5 like the other tools (no cold figure)
  aws             aws s3 sync DIR s3://bkt/aws/                      (awscli v2 defaults)
  rclone          rclone sync DIR s3rver:bkt/rclone -v               (rclone defaults)
  rclone 32       rclone sync ... -v --transfers 32 --checkers 32    (about ours' concurrency)
  floor           unsigned PUTs of the same files from 32 keep-alive connections of this
                  script: roughly the most this s3rver takes, so the bound on any cold figure

Besides wall time, each row shows the client's CPU time (user + system of the command and its
children, from getrusage(RUSAGE_CHILDREN)); s3rver's CPU is not in it.

After each cold run the script counts the prefix's objects (all must be there) and after each
no-op run it checks that nothing was transferred (ours: the summary line says 0 uploaded; aws:
no `upload:` line; rclone: no `Copied` line in its -v log). A failed check marks the row and
makes the exit code 1.

Usage: python3 bench/s3/run.py [--binary PATH] [--files N] [--tools ours,aws,rclone,rclone32,floor]
Env: BENCH_TIMEOUT (900 s, the whole run), BENCH_KEEP=1 keeps the temp dir, CK_S3RVER (s3rver).
Results go to stdout, progress to stderr.
"""

import argparse
import http.client
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

from s3util import AWS, S3Server, s3rver_path  # noqa: E402

BUCKET = "bkt"
TOTAL_TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "900"))
KEEP = bool(os.environ.get("BENCH_KEEP"))
START = time.monotonic()


class BenchError(Exception):
    pass


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def left(cap=600.0):
    remaining = TOTAL_TIMEOUT - (time.monotonic() - START)
    if remaining <= 5:
        raise BenchError(f"BENCH_TIMEOUT ({TOTAL_TIMEOUT:.0f} s) reached")
    return min(cap, remaining)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(argv, env, what):
    """(seconds, cpu seconds, stdout, stderr) of one command (cpu: user + system time of the
    command and its children); BenchError when it fails or times out."""
    c0 = children_cpu()
    t0 = time.monotonic()
    try:
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=left(),
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BenchError(f"{what}: timed out after {time.monotonic() - t0:.0f} s") from None
    secs = time.monotonic() - t0
    cpu = children_cpu() - c0
    if p.returncode != 0:
        raise BenchError(f"{what}: exit code {p.returncode}\n{p.stdout[-1500:]}\n{p.stderr[-1500:]}")
    return secs, cpu, p.stdout, p.stderr


def raw_put_floor(server, src, prefix, threads=32):
    """Seconds for unsigned PUTs of every file of src under prefix from `threads` keep-alive
    connections in this process: about the most s3rver can take, whatever the client."""
    paths = sorted(os.path.relpath(os.path.join(dp, f), src)
                   for dp, _, fs in os.walk(src) for f in fs)
    chunks = [paths[i::threads] for i in range(threads)]
    errors = []

    def worker(part):
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            for rel in part:
                with open(os.path.join(src, rel), "rb") as f:
                    body = f.read()
                c.request("PUT", f"/{BUCKET}/{prefix}{urllib.parse.quote(rel)}", body=body)
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    errors.append(f"PUT {rel}: HTTP {r.status}")
                    return
        except OSError as e:
            errors.append(repr(e))
        finally:
            c.close()

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker, args=(part,), daemon=True) for part in chunks]
    for t in ts:
        t.start()
    for t in ts:
        t.join(left())
    secs = time.monotonic() - t0
    if errors or any(t.is_alive() for t in ts):
        raise BenchError(f"raw PUT floor: {errors[:3] or 'did not finish'}")
    return secs


def first_line(argv):
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        out = (p.stdout or p.stderr).strip().splitlines()
        return out[0] if out else f"(no output, exit {p.returncode})"
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"({e})"


def s3rver_version():
    pkg = os.path.join(os.path.dirname(os.path.realpath(s3rver_path())), "..", "package.json")
    try:
        with open(pkg) as f:
            return f"s3rver {json.load(f)['version']}"
    except (OSError, ValueError, KeyError):
        return first_line([s3rver_path(), "--version"])


def count_objects(server, prefix):
    """Keys under prefix, by unsigned ListObjectsV2 straight to s3rver (all pages)."""
    n, token = 0, None
    for _ in range(10_000):
        q = {"list-type": "2", "prefix": prefix}
        if token:
            q["continuation-token"] = token
        c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        try:
            c.request("GET", f"/{BUCKET}?{urllib.parse.urlencode(q)}")
            r = c.getresponse()
            body = r.read().decode("utf-8", "replace")
        finally:
            c.close()
        if r.status != 200:
            raise BenchError(f"listing {prefix}: HTTP {r.status} {body[:300]}")
        n += body.count("<Contents>")
        m = re.search(r"<NextContinuationToken>([^<]+)</NextContinuationToken>", body)
        if "<IsTruncated>true</IsTruncated>" not in body or not m:
            return n
        token = m[1]
    raise BenchError("too many listing pages")


def make_tree(root, files, folders=50, seed=1):
    rng = random.Random(seed)
    total = 0
    for i in range(folders):
        os.makedirs(os.path.join(root, f"folder-{i:02d}"))
    for i in range(files):
        data = rng.randbytes(rng.randint(1024, 4096))
        with open(os.path.join(root, f"folder-{i % folders:02d}", f"f{i:04d}.bin"), "wb") as f:
            f.write(data)
        total += len(data)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--binary", default=os.path.join(REPO, "build", "cloudyknight"))
    ap.add_argument("--files", type=int, default=int(os.environ.get("BENCH_FILES", "5000")))
    ap.add_argument("--tools", default="ours,aws,rclone,rclone32,floor",
                    help="comma-separated subset of ours,aws,rclone,rclone32,floor")
    args = ap.parse_args()
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if "ours" in tools and not os.access(args.binary, os.X_OK):
        print(f"error: no executable cloudyknight at {args.binary} (--binary PATH)", file=sys.stderr)
        return 2

    load_start = os.getloadavg()[0]
    tmp = tempfile.mkdtemp(prefix="ck-bench-s3-")
    server = S3Server()
    failures = []
    results = {}  # row -> {"cold": secs|None, "noop": secs|None, "flags": str, "note": str}
    try:
        log(f"temp dir {tmp}; generating {args.files} files")
        src = os.path.join(tmp, "src")
        os.makedirs(src)
        total = make_tree(src, args.files)
        server.start()
        server.make_bucket(BUCKET)
        env = {k: v for k, v in server.client_env().items() if not k.startswith("CK_")}
        aws = [AWS, "--endpoint-url", server.endpoint]

        def cache_env(name):
            d = os.path.join(tmp, name)
            os.makedirs(d, exist_ok=True)
            return dict(env, XDG_CACHE_HOME=d)

        def ours(cache):
            return [args.binary, "workspace", "upload", "bench", src, "--storage", f"s3://{BUCKET}/ours",
                    "--s3-endpoint", server.endpoint], cache_env(cache)

        def check_ours(out, want_uploaded):
            m = re.search(r"^bench: (\d+) uploaded, (\d+) deleted, (\d+) unchanged", out, re.M)
            if not m:
                return f"no summary line in its output: {out[-300:]!r}"
            if int(m[1]) != want_uploaded:
                return f"summary says {m[1]} uploaded, expected {want_uploaded}: {m[0]!r}"
            return None

        rows = []
        if "ours" in tools:
            rows.append(("ours", "cloudyknight workspace upload (defaults)", "ours/bench/"))
        if "aws" in tools:
            rows.append(("aws", "aws s3 sync (defaults)", "aws/"))
        if "rclone" in tools:
            rows.append(("rclone", "rclone sync -v (defaults: --transfers 4 --checkers 8)", "rclone/"))
        if "rclone32" in tools:
            rows.append(("rclone32", "rclone sync -v --transfers 32 --checkers 32", "rclone32/"))

        for key, label, prefix in rows:
            res = results.setdefault(key, {"label": label, "cold": None, "noop": None, "note": ""})
            try:
                for phase in ("cold", "noop"):
                    if key == "ours":
                        argv, e = ours("cache")
                    elif key == "aws":
                        argv, e = aws + ["s3", "sync", src, f"s3://{BUCKET}/aws/"], env
                    else:
                        argv = ["rclone", "sync", src, f"s3rver:{BUCKET}/{prefix.rstrip('/')}", "-v"]
                        if key == "rclone32":
                            argv += ["--transfers", "32", "--checkers", "32"]
                        e = env
                    log(f"{key} {phase}: {' '.join(argv)}")
                    secs, cpu, out, err = run(argv, e, f"{key} {phase}")
                    res[phase], res[phase + "_cpu"] = secs, cpu
                    log(f"{key} {phase}: {secs:.2f} s, client cpu {cpu:.2f} s")
                    problem = None
                    if phase == "cold":
                        n = count_objects(server, prefix)
                        if n != args.files:
                            problem = f"{n} objects under {prefix} after the cold upload, expected {args.files}"
                        elif key == "ours":
                            problem = check_ours(out, args.files)
                    else:
                        if key == "ours":
                            problem = check_ours(out, 0)
                        elif key == "aws":
                            k = len(re.findall(r"^upload:", out, re.M))
                            problem = f"aws re-uploaded {k} files" if k else None
                        else:
                            k = len(re.findall(r": Copied \(", err))
                            problem = f"rclone re-copied {k} files" if k else None
                    if problem:
                        res["note"] = "(CHECK FAILED, see stderr)"
                        failures.append(f"{key} {phase}: {problem}")
                        log(f"PROBLEM: {key} {phase}: {problem}")
                if key == "ours":
                    argv, e = ours("cache-empty")
                    log(f"ours no-op without index: {' '.join(argv)} (empty XDG_CACHE_HOME)")
                    secs, cpu, out, _ = run(argv, e, "ours no-op without index")
                    extra = results.setdefault("ours-noindex", {
                        "label": "  same, no-op with an empty sync index", "cold": None, "noop": secs,
                        "noop_cpu": cpu, "note": ""})
                    problem = check_ours(out, 0)
                    if problem:
                        extra["note"] = "(CHECK FAILED, see stderr)"
                        failures.append(f"ours no-op without index: {problem}")
                        log(f"PROBLEM: ours no-op without index: {problem}")
            except BenchError as e:
                res["note"] = "(FAILED, see stderr)"
                failures.append(f"{key}: {e}")
                log(f"FAILED: {e}")

        if "floor" in tools:
            res = results.setdefault("floor", {
                "label": "raw unsigned PUTs, 32 connections (s3rver's limit)", "cold": None,
                "noop": None, "note": ""})
            try:
                log("floor: unsigned PUTs of every file from 32 keep-alive connections")
                res["cold"] = raw_put_floor(server, src, "floor/")
                log(f"floor: {res['cold']:.2f} s")
            except BenchError as e:
                res["note"] = "(FAILED, see stderr)"
                failures.append(f"floor: {e}")
                log(f"FAILED: {e}")

        # ---------------------------------------------------------------- report
        load_end = os.getloadavg()[0]
        print(f"S3 sync benchmark: {args.files} files ({total / 1024 / 1024:.1f} MiB, 1-4 KiB each, "
              f"50 folders), one run, every tool against the same s3rver on 127.0.0.1")
        print(f"  {os.cpu_count()} cores, load avg {load_start:.2f} at the start, {load_end:.2f} at the end"
              + ("  (busy machine: figures are noisy)" if max(load_start, load_end) > 1.5 else ""))
        if "ours" in tools:
            print(f"  cloudyknight: {args.binary} ({first_line([args.binary, '--version'])})")
        print(f"  {first_line([AWS, '--version'])}")
        print(f"  {first_line(['rclone', 'version'])}")
        print(f"  {s3rver_version()} (node {first_line(['node', '--version'])})")
        print()
        print(f"{'tool':54} {'cold s':>7} {'files/s':>7} {'cpu s':>6} {'no-op s':>7} {'files/s':>7} {'cpu s':>6}")

        def fmt(secs, cpu):
            if not secs:
                return f"{'-':>7} {'-':>7} {'-':>6}"
            return f"{secs:7.2f} {args.files / secs:7.0f} " + (f"{cpu:6.2f}" if cpu is not None else f"{'-':>6}")

        for key in ["ours", "ours-noindex", "aws", "rclone", "rclone32", "floor"]:
            if key not in results:
                continue
            r = results[key]
            print(f"{r['label']:54} {fmt(r['cold'], r.get('cold_cpu'))} "
                  f"{fmt(r['noop'], r.get('noop_cpu'))} {r['note']}".rstrip())
        print("(cpu s: user + system seconds of the client process and its children; "
              "s3rver's own CPU is not included)")
        ours_r = results.get("ours")
        if ours_r and ours_r["cold"] and ours_r["noop"]:
            print()
            print("ratios: the other tool's wall time / ours (above 1: ours is faster)")
            print(f"{'':54} {'cold':>7} {'no-op':>7}")
            pairs = [("aws", "aws/ours"), ("rclone", "rclone/ours"),
                     ("rclone32", "rclone --transfers 32/ours")]
            for key, name in pairs:
                r = results.get(key)
                if not r:
                    continue
                c = f"{r['cold'] / ours_r['cold']:7.1f}" if r["cold"] else f"{'-':>7}"
                n = f"{r['noop'] / ours_r['noop']:7.1f}" if r["noop"] else f"{'-':>7}"
                print(f"{name:54} {c} {n}")
            ni = results.get("ours-noindex")
            if ni and ni["noop"]:
                for key, name in pairs:
                    r = results.get(key)
                    if r and r["noop"]:
                        print(f"{name + ' (ours with no sync index)':54} {'':>7} {r['noop'] / ni['noop']:7.1f}")
        if failures:
            print()
            print("FAILED checks:")
            for f in failures:
                print(f"  {f.splitlines()[0]}")
        return 1 if failures else 0
    except BenchError as e:
        log(f"FAILED: {e}")
        return 1
    finally:
        server.stop()
        if KEEP:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
