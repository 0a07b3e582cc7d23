#!/usr/bin/env python3
"""Docker runtime benchmark: how fast an express workspace becomes reachable.

One run, 127.0.0.1 and our own containers only, on a copy of examples/hello-node:

  cold   the folder appears with no dependency volume and an empty npm cache:
         detection -> install container (npm ci from the registry) -> app -> ready
  warm   a second folder with the same package-lock.json: the lockfile-keyed volume
         already holds node_modules, so the install is skipped
  create->ready  for each warm start, from the app container's creation (engine
         timestamp) to the first 200 through the gateway

Each figure is the median of BENCH_ROUNDS warm starts (cold runs once: it empties the
cache). Times start when the folder is created; the daemon scans every 200 ms here, so
up to 0.2 s of each figure is detection (issue 4 replaces the scan with inotify).

Env: CK_BINARY (default <repo>/build/cloudyknight), BENCH_ROUNDS (default 3),
BENCH_TIMEOUT per start in seconds (default 300). Exit 0 when every start succeeded.
"""

import http.client
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
from datetime import datetime

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BINARY = os.environ.get("CK_BINARY", os.path.join(REPO, "build", "cloudyknight"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "300"))
SOCK = "/var/run/docker.sock"


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("localhost", timeout=60)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(SOCK)


def docker(method, path):
    c = UnixHTTP()
    c.request(method, "/v1.41" + path)
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, (json.loads(body) if body and body[:1] in b"[{" else body)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_range(count=20):
    while True:
        base = free_port()
        if base + count < 65000:
            ok = True
            for p in range(base, base + count):
                with socket.socket() as s:
                    try:
                        s.bind(("127.0.0.1", p))
                    except OSError:
                        ok = False
                        break
            if ok:
                return base, base + count - 1


def get(port, path, timeout=5):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        c.request("GET", path)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def wait_200(port, name, deadline):
    while time.monotonic() < deadline:
        try:
            status, _ = get(port, f"/{name}/")
            if status == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.02)
    raise TimeoutError(f"/{name}/ did not answer 200 in time")


def container_created(name):
    status, info = docker("GET", f"/containers/ck-{name}/json")
    if status != 200:
        raise RuntimeError(f"no container ck-{name}: {info}")
    created = info["Created"]  # 2026-11-22T05:27:41.0931234Z
    base, _, frac = created.rstrip("Z").partition(".")
    t = datetime.strptime(base, "%Y-%m-%dT%H:%M:%S").timestamp() - time.timezone
    return t + float("0." + (frac or "0"))


def remove_workspace_containers(name):
    flt = json.dumps({"label": [f"cloudyknight.workspace={name}"]})
    _, lst = docker("GET", "/containers/json?all=1&filters=" + urlquote(flt))
    for c in lst or []:
        docker("DELETE", f"/containers/{c['Id']}?force=1")


def deps_volumes():
    flt = json.dumps({"label": ["cloudyknight.deps"]})
    _, vols = docker("GET", "/volumes?filters=" + urlquote(flt))
    return {v["Name"] for v in (vols or {}).get("Volumes") or []}


def urlquote(s):
    from urllib.parse import quote
    return quote(s, safe="")


def main():
    if docker("GET", "/_ping")[0] != 200:
        print("bench: no Docker engine on /var/run/docker.sock", file=sys.stderr)
        return 1
    tmp = tempfile.mkdtemp(prefix="ck-bench-docker-")
    ws, data = os.path.join(tmp, "ws"), os.path.join(tmp, "data")
    os.makedirs(ws)
    lo, hi = free_range()
    port = free_port()
    with open(os.path.join(tmp, "config.yaml"), "w") as f:
        f.write(f"runtime: {{ ports: \"{lo}-{hi}\" }}\nstorage: {{ scan_interval: 200ms }}\n")
    tag = os.urandom(3).hex()
    # A lockfile no other run shares, so "cold" really has no dependency volume: the
    # package name changes the lockfile's hash, not what gets installed.
    src = os.path.join(REPO, "examples", "hello-node")
    lock = json.load(open(os.path.join(src, "package-lock.json")))
    lock["name"] = lock["packages"][""]["name"] = f"bench-{tag}"
    pkg = json.load(open(os.path.join(src, "package.json")))
    pkg["name"] = f"bench-{tag}"

    def make(name):
        d = os.path.join(ws, name)
        os.makedirs(d)
        for f in os.listdir(src):
            if f not in ("package.json", "package-lock.json", "node_modules"):
                shutil.copy(os.path.join(src, f), d)
        json.dump(pkg, open(os.path.join(d, "package.json"), "w"), indent=2)
        json.dump(lock, open(os.path.join(d, "package-lock.json"), "w"), indent=2)

    volumes_before = deps_volumes()
    # An empty npm cache for the cold start (the cache volume is shared by node workspaces).
    docker("DELETE", "/volumes/ck-cache-node?force=1")
    log = open(os.path.join(tmp, "serve.log"), "w")
    proc = subprocess.Popen([BINARY, "serve", "--listen", f"127.0.0.1:{port}", "--workspaces", ws,
                             "--data", data, "--runtime", "docker", "--config",
                             os.path.join(tmp, "config.yaml"), "--log-level", "warn"],
                            stdout=log, stderr=log)
    names = []
    ok = True
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if get(port, "/monitor/healthz")[0] == 200:
                    break
            except OSError:
                time.sleep(0.05)
        results = {"cold": [], "warm": [], "create_ready": []}
        for i in range(ROUNDS + 1):
            kind = "cold" if i == 0 else "warm"
            name = f"b{tag}-{i}"
            names.append(name)
            t0 = time.monotonic()
            make(name)
            t1 = wait_200(port, name, time.monotonic() + TIMEOUT)
            results[kind].append(t1 - t0)
            wall_ready = time.time()
            created = container_created(name)
            if kind == "warm":
                results["create_ready"].append(wall_ready - created)
            print(f"[bench] {kind} start {i}: {t1 - t0:.2f} s", file=sys.stderr)
            # Keep one app running at a time, so starts do not compete for the 2 cores.
            shutil.rmtree(os.path.join(ws, name))
            gone = time.monotonic() + 30
            while time.monotonic() < gone:
                st, _ = docker("GET", f"/containers/ck-{name}/json")
                if st == 404:
                    break
                time.sleep(0.1)
        cold = results["cold"][0]
        warm = statistics.median(results["warm"])
        cr = statistics.median(results["create_ready"])
        print()
        print("Docker runtime, express app (examples/hello-node), folder created -> first 200 via the gateway")
        print(f"  cold first start (npm ci from the registry, empty cache): {cold:6.2f} s")
        print(f"  warm start (same lockfile, dependency volume reused):     {warm:6.2f} s  (median of {ROUNDS})")
        print(f"  container create -> ready (warm):                         {cr:6.2f} s  (median of {ROUNDS})")
        print(f"  cold / warm: {cold / warm:.1f}x")
    except Exception as e:  # noqa: BLE001 - report and clean up
        ok = False
        print(f"bench: {e}; daemon log: {os.path.join(tmp, 'serve.log')}", file=sys.stderr)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        for n in names:
            remove_workspace_containers(n)
        # The dependency volume this run created (its lockfile is unique to the run).
        for v in deps_volumes() - volumes_before:
            docker("DELETE", f"/volumes/{v}")
        if ok and not os.environ.get("BENCH_KEEP"):
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
