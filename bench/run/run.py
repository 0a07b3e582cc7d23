#!/usr/bin/env python3
"""POST /monitor/api/v1/workspaces/{name}/run: how long a command in a workspace takes.

One run, 127.0.0.1 and our own workspaces and containers only:

  process   `true` in a Python workspace of the process runtime (the command enters the
            app's pid and mount namespaces and cgroup), through the API
  docker    `true` in a Python workspace of the docker runtime, through the API, against
            `docker exec CONTAINER true` from the docker CLI on the same container: what a
            user would otherwise type
  stream    with ?stream=1, the time to the first output line of `echo x; sleep 1`: streamed
            output arrives as it is printed, not when the command ends

Each figure is the median (and 95th percentile) of BENCH_ROUNDS runs. Needs root, dockerd and
the image cloudyknight/python:bookworm (`cloudyknight images build python`) for the docker part;
without an engine that part is skipped and says so.

Env: CK_BINARY (default <repo>/build/cloudyknight), BENCH_ROUNDS (default 30).
"""

import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
os.environ.setdefault("CK_BINARY", os.path.join(REPO, "build", "cloudyknight"))

from harness import Daemon  # noqa: E402
from test_auth import admin_token  # noqa: E402

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "30"))
API = "/monitor/api/v1"


def run_once(d, token, name, argv, stream=False):
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=60)
    t0 = time.perf_counter()
    conn.request("POST", f"{API}/workspaces/{name}/run" + ("?stream=1" if stream else ""),
                 body=json.dumps({"command": argv}),
                 headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    r = conn.getresponse()
    if stream:
        first = r.readline()
        t_first = time.perf_counter() - t0
        rest = r.read()
        conn.close()
        if r.status != 200 or b'"output"' not in first or b'"exit_code":0' not in rest:
            raise SystemExit(f"streamed run failed: {r.status} {first!r} {rest!r}")
        return t_first
    body = r.read()
    took = time.perf_counter() - t0
    conn.close()
    doc = json.loads(body)
    if r.status != 200 or doc.get("exit_code") != 0:
        raise SystemExit(f"run failed: {r.status} {body!r}")
    return took


def summary(samples):
    s = sorted(samples)
    return statistics.median(s), s[min(len(s) - 1, int(len(s) * 0.95))]


def fmt(samples):
    med, p95 = summary(samples)
    return f"median {med * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"


def wait_running(d, token, name, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10)
        conn.request("GET", f"{API}/workspaces/{name}", headers={"Authorization": f"Bearer {token}"})
        r = conn.getresponse()
        doc = json.loads(r.read() or b"{}")
        conn.close()
        if doc.get("status") == "running":
            return
        time.sleep(0.2)
    raise SystemExit(f"{name} did not reach running within {timeout} s")


def bench(runtime, fixture):
    d = Daemon(runtime=runtime, fixtures=[(fixture, "bench-run")])
    d.start()
    try:
        token = admin_token(d)
        wait_running(d, token, "bench-run")
        for _ in range(3):  # warm up the connections and the engine
            run_once(d, token, "bench-run", ["true"])
        api = [run_once(d, token, "bench-run", ["true"]) for _ in range(ROUNDS)]
        first = [run_once(d, token, "bench-run", ["sh", "-c", "echo x; sleep 1"], stream=True)
                 for _ in range(min(ROUNDS, 5))]
        cli = None
        if runtime == "docker":
            ids = subprocess.run(["docker", "ps", "-q", "--filter", "label=cloudyknight.workspace=bench-run"],
                                 capture_output=True, text=True, check=True).stdout.split()
            if not ids:
                raise SystemExit("no container carries the label cloudyknight.workspace=bench-run")
            cli = []
            for i in range(ROUNDS + 3):
                t0 = time.perf_counter()
                subprocess.run(["docker", "exec", ids[0], "true"], check=True)
                if i >= 3:
                    cli.append(time.perf_counter() - t0)
        return api, first, cli
    finally:
        d.stop()
        d.cleanup()


def main():
    print(f"POST /run, {ROUNDS} runs each (first-line figure: 5 runs), {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.1f}")
    api, first, _ = bench("process", "echo")
    print(f"process runtime  API run `true`                 {fmt(api)}")
    print(f"process runtime  first streamed line (?stream=1) {fmt(first)}   (the command runs 1 s)")
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        api, first, cli = bench("docker", "docker/pyapp")
        print(f"docker runtime   API run `true`                 {fmt(api)}")
        print(f"docker runtime   docker exec CLI `true`         {fmt(cli)}")
        print(f"docker runtime   first streamed line (?stream=1) {fmt(first)}   (the command runs 1 s)")
        print(f"ratio docker exec CLI / API (median): {summary(cli)[0] / summary(api)[0]:.1f}x")
    else:
        print("docker runtime   skipped: no Docker engine answers (start dockerd to measure it)")


if __name__ == "__main__":
    main()
