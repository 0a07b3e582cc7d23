#!/usr/bin/env python3
"""Deploy benchmark (issue 18, part 3): `cloudyknight deploy` of a 5,000-file workspace with one
changed file, against `rsync -a --delete` to an `rsync --daemon` module over loopback, in one run.

Both send the same folder (bench/backup/make_workspace.py: 5,000 files, ~95 MB) to a server on
127.0.0.1: ours to a real daemon (dir storage, static workspace: the deploy answers once the
files are in place, --detach), rsync to its own daemon's module. First the full upload of each,
then BENCH_ROUNDS interleaved rounds: one file changes (make_workspace.py mutate), then each
tool sends it; the order alternates per round. Each result is checked: the served folder equals
the source (MD5 of every file) after the last round.

Prints the medians, the ratio ours/rsync and whether the goal (incremental within 2x of rsync)
is met. Exit code: 0 when everything was measured and verified, 1 otherwise.
"""
import argparse
import hashlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
MAKE = os.path.join(ROOT, "bench", "backup", "make_workspace.py")
ADMIN_LINE = "admin token (shown once, store it now): "


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def digest(folder):
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            p = os.path.join(root, name)
            with open(p, "rb") as f:
                out[os.path.relpath(p, folder)] = hashlib.md5(f.read()).hexdigest()
    return out


def timed(argv, env=None, timeout=600):
    t0 = time.monotonic()
    p = subprocess.run(argv, env=env, capture_output=True, timeout=timeout)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exit {p.returncode}\n{p.stdout.decode()[-2000:]}\n{p.stderr.decode()[-2000:]}")
    return dt, p.stdout.decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", default=os.path.join(ROOT, "build", "cloudyknight"))
    ap.add_argument("--files", type=int, default=int(os.environ.get("BENCH_FILES", "5000")))
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("BENCH_ROUNDS", "7")))
    ap.add_argument("--dir", default=os.environ.get("BENCH_DIR", tempfile.gettempdir()))
    args = ap.parse_args()
    if not os.access(args.binary, os.X_OK):
        sys.exit(f"[bench] ERROR: {args.binary} is missing: build it (cmake --build build --target cloudyknight)")
    if not shutil.which("rsync"):
        sys.exit("[bench] ERROR: rsync is missing (apt-get install rsync)")
    if not 1 <= args.rounds <= 50:
        sys.exit("[bench] ERROR: BENCH_ROUNDS must be 1-50")
    tmp = tempfile.mkdtemp(prefix="ck-deploy-bench-", dir=args.dir)
    procs = []
    try:
        src = os.path.join(tmp, "app")
        summary = subprocess.run([sys.executable, MAKE, "init", src, "--files", str(args.files)],
                                 capture_output=True, text=True, check=True).stdout.strip()
        log(f"workspace: {summary}")

        # Our daemon: dir storage, default limits (a ~95 MB first deploy goes in parts).
        port = free_port()
        ws, data = os.path.join(tmp, "ws"), os.path.join(tmp, "data")
        os.makedirs(ws)
        lo = free_port()
        cfg = os.path.join(tmp, "config.yaml")
        with open(cfg, "w") as f:
            f.write(f"gateway:\n  control_host: localhost\nruntime:\n  ports: {lo}-{lo + 20}\n")
        env = {k: v for k, v in os.environ.items() if not k.startswith("CK_")}
        env["HOME"] = os.path.join(tmp, "home")
        env["XDG_CACHE_HOME"] = os.path.join(tmp, "home", ".cache")
        os.makedirs(env["HOME"])
        err = open(os.path.join(tmp, "daemon.log"), "w")
        d = subprocess.Popen([args.binary, "serve", "--config", cfg, "--workspaces", ws, "--data", data,
                              "--listen", f"127.0.0.1:{port}"], env=env, stdout=err, stderr=err)
        procs.append(d)
        token = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and token is None:
            with open(os.path.join(tmp, "daemon.log")) as f:
                for line in f:
                    if line.startswith(ADMIN_LINE):
                        token = line[len(ADMIN_LINE):].strip()
            time.sleep(0.1)
        if token is None:
            raise RuntimeError("the daemon printed no admin token:\n" + open(os.path.join(tmp, "daemon.log")).read()[-3000:])
        cli_env = dict(env, CK_URL=f"http://localhost:{port}", CK_TOKEN=token)
        ours = [args.binary, "deploy", src, "--name", "bench", "--detach"]

        # rsync's daemon: one module, writable, no chroot (not root-only semantics to measure).
        rport = free_port()
        dest = os.path.join(tmp, "rsync-dest")
        os.makedirs(dest)
        rconf = os.path.join(tmp, "rsyncd.conf")
        with open(rconf, "w") as f:
            f.write(f"use chroot = no\nuid = root\ngid = root\n[bench]\n  path = {dest}\n  read only = no\n")
        r = subprocess.Popen(["rsync", "--daemon", "--no-detach", f"--port={rport}", f"--config={rconf}",
                              "--address=127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(r)
        theirs = ["rsync", "-a", "--delete", src + "/", f"rsync://127.0.0.1:{rport}/bench/"]
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", rport), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("rsync --daemon does not listen")
                time.sleep(0.1)

        first_ours, out = timed(ours, cli_env)
        log(f"first deploy (ours): {first_ours:.2f} s; {out.strip().splitlines()[-1]}")
        first_rsync, _ = timed(theirs)
        log(f"first upload (rsync): {first_rsync:.2f} s")

        t_ours, t_rsync = [], []
        for i in range(args.rounds):
            subprocess.run([sys.executable, MAKE, "mutate", src, "--step", str(i)], check=True, capture_output=True)
            pair = [("ours", ours, cli_env, t_ours), ("rsync", theirs, None, t_rsync)]
            if i % 2:
                pair.reverse()
            for name, argv, e, bucket in pair:
                dt, out = timed(argv, e)
                bucket.append(dt)
                if name == "ours" and "1 written" not in out:
                    raise RuntimeError(f"round {i}: our deploy did not write exactly one file:\n{out}")
        want = digest(src)
        if digest(os.path.join(ws, "bench")) != want:
            raise RuntimeError("the daemon's folder differs from the source after the last round")
        if digest(dest) != want:
            raise RuntimeError("rsync's folder differs from the source after the last round")
        m_ours, m_rsync = statistics.median(t_ours), statistics.median(t_rsync)
        ratio = m_ours / m_rsync
        print(json.dumps({"files": args.files, "rounds": args.rounds,
                          "first_ours_s": round(first_ours, 3), "first_rsync_s": round(first_rsync, 3),
                          "incremental_ours_s": round(m_ours, 4), "incremental_rsync_s": round(m_rsync, 4),
                          "ratio": round(ratio, 3)}))
        print(f"first upload:   ours {first_ours:.2f} s, rsync {first_rsync:.2f} s "
              f"(ratio {first_ours / first_rsync:.2f})")
        print(f"one file changed ({args.files} files, median of {args.rounds}): ours {m_ours * 1000:.0f} ms, "
              f"rsync {m_rsync * 1000:.0f} ms, ratio {ratio:.2f}")
        print(f"goal (incremental deploy within 2x of rsync): {'met' if ratio <= 2.0 else 'NOT met'}")
        return 0
    except Exception as e:  # noqa: BLE001 - the bench reports and fails
        log(f"ERROR: {e}")
        return 1
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        if os.environ.get("BENCH_KEEP") == "1":
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
