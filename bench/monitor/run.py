#!/usr/bin/env python3
"""Monitor benchmark: live reload latency, wake from the idle tiers, reconcile cost.

One run, traffic to 127.0.0.1 only (and, for the docker rows, the local engine socket):

  1. change -> reload event: a daemon (process runtime) serves one static workspace
     "site"; a WebSocket client on /monitor/ws subscribes to it; 100 times, the script
     rewrites site/index.html (open/write/close) and times from just before open() until
     the {"type":"reload","workspace":"site"} event arrives (other events are skipped).
     The next edit waits for that event plus 50 ms, so every edit is a batch of its own
     (a second reload event for one edit is reported as a problem). Run twice: with the
     shipped debounce (storage.debounce not set: 300 ms) and with storage.debounce 20ms
     (what the pipeline costs beyond the debounce window). storage.scan_interval is 60s,
     so the periodic scan cannot deliver a change: only inotify can.
  2. wake: a copy of examples/hello-node under idle {idle_after 1s, background_after 2s,
     stop_after 5s, grace 1s, wake_timeout 60s}. After the first start (npm install),
     frozen -> first byte: wait until the API says "frozen": true, then time
     GET /hello-node/ from connect until its status line arrives (5 times); stopped ->
     first byte: wait until the API says status "stopped" (reason "idle"), then the same
     (3 times; no Accept: text/html, so the gateway holds the request until the app is up).
     For the process runtime, and for the docker runtime when an engine answers and the
     image cloudyknight/node:bookworm exists; then also what `docker unpause` alone takes
     on a paused throwaway container of that image (docker CLI, and the Engine API call the
     daemon makes), 5 times each. The shared volumes ck-deps-node-<lockfile hash> and
     ck-cache-node are kept, as the integration tests keep them.
  3. reconcile: build/bench/reconcile_bench 500 (one monitor pass over 500 workspaces).

Every wait is bounded in time and in iterations, and the whole run by BENCH_TIMEOUT.
Env: CK_BINARY (default <repo>/build/cloudyknight), CK_RECONCILE_BENCH (default
<repo>/build/bench/reconcile_bench), BENCH_EDITS (100), BENCH_TIMEOUT (420 s),
BENCH_NO_DOCKER=1 skips the docker rows, BENCH_KEEP=1 keeps the daemons' temp dirs.
Exit 0 when every measurement was made (docker rows skipped for a stated reason are fine).
Results go to stdout; progress and failure details to stderr. Warnings and errors in a
daemon's log are printed as PROBLEM lines: the figures stand, but look at them.
"""

import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import harness  # noqa: E402
from harness import Daemon  # noqa: E402

os.environ.setdefault("CK_BINARY", os.path.join(REPO, "build", "cloudyknight"))
RECONCILE = os.environ.get("CK_RECONCILE_BENCH", os.path.join(REPO, "build", "bench", "reconcile_bench"))
EDITS = int(os.environ.get("BENCH_EDITS", "100"))
TOTAL_TIMEOUT = int(os.environ.get("BENCH_TIMEOUT", "420"))
KEEP = bool(os.environ.get("BENCH_KEEP"))
FROZEN_ROUNDS, STOPPED_ROUNDS, UNPAUSE_ROUNDS = 5, 3, 5
GAP = 0.05            # between an edit's reload event and the next edit
EVENT_TIMEOUT = 5.0   # an edit whose reload takes longer is a failure
INSTALL_TIMEOUT = 240  # first start of hello-node: npm install from the registry
APP = "hello-node"
IDLE = {"idle_after": "1s", "background_after": "2s", "stop_after": "5s", "grace": "1s",
        "wake_timeout": "60s"}
DOCKER_SOCK = "/var/run/docker.sock"
NODE_IMAGE = "cloudyknight/node:bookworm"


class BenchError(Exception):
    pass


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def ms(seconds):
    return seconds * 1000.0


def pct(values, p):
    """Nearest-rank percentile (p99 of 100 values is the 99th smallest)."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def stop_daemon(d, problems, what, failed=False):
    """SIGTERM the daemon; a non-zero exit, leftover processes, or warnings and errors in
    its log are reported as daemon problems (the figures stand; the run still passes).
    The temp dir (config, daemon log, workspace logs) is kept when something failed."""
    if d.proc is None:
        d.cleanup(keep=KEEP)
        return
    res = d.stop()
    logged = [line for line in d.stderr_text().splitlines()
              if re.match(r"\S+ \S+ (warning|error|critical) ", line)]
    for line in logged[:5]:
        problems.append(f"{what}: the daemon logged: {line[:300]}")
    if len(logged) > 5:
        problems.append(f"{what}: ... and {len(logged) - 5} more warning/error lines")
    if res.returncode != 0 or res.leftovers:
        problems.append(f"{what}: daemon exit code {res.returncode} after SIGTERM "
                        f"(None = did not exit in 20 s), leftover pids {res.leftovers}")
        log(d.diagnostics(40))
        failed = True
    d.cleanup(keep=KEEP or failed)


# ------------------------------------------------------------------ 1. change -> reload


def next_event(ws, deadline, want=None):
    """The next JSON event (a dict), answering pings. With `want`, events for which
    want(ev) is false are skipped. Returns (event, perf_counter at arrival); raises
    BenchError at the deadline or when the stream closes."""
    for _ in range(100_000):
        left = deadline - time.perf_counter()
        if left <= 0:
            raise BenchError("timed out waiting for an event on /monitor/ws")
        ws.sock.settimeout(left)
        try:
            fin, op, payload, _ = ws.recv_frame()
        except socket.timeout:
            raise BenchError("timed out waiting for an event on /monitor/ws") from None
        except (EOFError, OSError) as e:
            raise BenchError(f"/monitor/ws: {e!r} ({len(ws.buf)} bytes of a frame pending)") from None
        now = time.perf_counter()
        if op == 9:
            ws.send(10, payload)
            continue
        if op == 8:
            raise BenchError(f"/monitor/ws closed by the daemon: {payload[:200]!r}")
        if op != 1:
            continue
        if not fin:
            raise BenchError("fragmented event frame (not expected from /monitor/ws)")
        ev = json.loads(payload)
        if want is None or want(ev):
            return ev, now
    raise BenchError("too many events without the one wanted")


def is_reload(ev):
    return ev.get("type") == "reload" and ev.get("workspace") == "site"


def drain_reloads(ws, seconds):
    """Reads events for `seconds`; returns how many reload events for site arrived."""
    n = 0
    end = time.perf_counter() + seconds
    for _ in range(10_000):
        try:
            next_event(ws, end, is_reload)
            n += 1
        except BenchError as e:
            if "timed out" in str(e):
                return n
            raise
    return n


def reload_latency(debounce, problems):
    label = f"debounce {debounce}" if debounce else "debounce default (300ms)"
    storage = {"scan_interval": "60s"}
    if debounce:
        storage["debounce"] = debounce
    d = Daemon(config={"storage": storage})
    d.prepare()
    site = os.path.join(d.ws, "site")
    os.makedirs(site)
    index = os.path.join(site, "index.html")
    with open(index, "w") as f:
        f.write("<!doctype html><title>site</title><p>start</p>\n")
    ws = None
    failed = True
    try:
        d.start()
        w = d.wait_status("site", "running", timeout=15)
        if w.get("type") != "static":
            raise BenchError(f"site detected as {w.get('type')!r}, not static: {w!r}")
        ws = d.websocket("/monitor/ws")
        if ws.status != 101:
            raise BenchError(f"GET /monitor/ws -> {ws.status}, not 101")
        ws.send_text(json.dumps({"subscribe": ["site"]}))

        def edit(i):
            # The clock starts before open(): its O_TRUNC is the first inotify event, which
            # opens the debounce window. (Timing from close() instead would hide any time
            # this process was descheduled mid-edit and can give figures below the debounce.)
            text = f"<!doctype html><title>site</title><p>edit {i} at {time.time_ns()}</p>\n"
            t0 = time.perf_counter()
            with open(index, "w") as f:
                f.write(text)
            return t0

        # Two warm-up edits (not counted): they also prove the subscription is active.
        for i in range(2):
            t0 = edit(-1 - i)
            next_event(ws, t0 + EVENT_TIMEOUT, is_reload)
            drain_reloads(ws, GAP + 0.3)
        lat, extra = [], 0
        for i in range(EDITS):
            t0 = edit(i)
            _, t1 = next_event(ws, t0 + EVENT_TIMEOUT, is_reload)
            lat.append(t1 - t0)
            extra += drain_reloads(ws, GAP)
        if extra:
            problems.append(f"reload ({label}): {extra} extra reload event(s) for {EDITS} edits "
                            f"(each edit should give exactly one)")
        log(f"reload, {label}: p50 {ms(statistics.median(lat)):.1f} ms over {len(lat)} edits")
        failed = False
        return {"label": label, "lat": lat, "extra": extra}
    except Exception as e:  # noqa: BLE001 - any failure is reported with the daemon log
        raise BenchError(f"reload ({label}): {e}\n{d.diagnostics(40) if d.proc else ''}") from None
    finally:
        if ws is not None:
            ws.close()
        stop_daemon(d, problems, f"reload ({label})", failed)


# ----------------------------------------------------------------------------- 2. wake


def first_byte(port, path, timeout=70):
    """(seconds from connect until the status line arrived, status code). Reads the
    response to the end (Connection: close) so the next measurement starts clean."""
    req = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUser-Agent: ck-bench\r\n"
           f"Connection: close\r\n\r\n").encode()
    t0 = time.perf_counter()
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(req)
        buf = b""
        t1 = None
        for _ in range(100_000):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            if t1 is None and b"\r\n" in buf:
                t1 = time.perf_counter()
            if len(buf) > (1 << 20):
                break
        if t1 is None:
            raise BenchError(f"GET {path}: no status line (got {buf[:200]!r})")
        status = int(buf.split(b" ", 2)[1])
        return t1 - t0, status
    finally:
        s.close()


def poll_workspace(d, pred, timeout, what, interval=0.05):
    """Polls the API every `interval` until pred(W); returns W. Bounded."""
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(int(timeout / interval) + 2):
        last = d.workspace(APP)
        if last is not None and pred(last):
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise BenchError(f"{what}: not reached in {timeout:.0f} s (last W: {last!r})")


def wake_bench(runtime, problems):
    d = Daemon(examples=[APP], config={"idle": IDLE}, runtime=runtime)
    failed = True
    try:
        d.start()
        # First start: install and run. The gateway answers 503 at once while a workspace
        # starts for the first time (only an asleep one holds the request), so poll.
        t0 = time.monotonic()
        status = None
        for _ in range(int(INSTALL_TIMEOUT / 0.2) + 2):
            left = INSTALL_TIMEOUT - (time.monotonic() - t0)
            if left <= 0:
                break
            try:
                status = d.get(f"/{APP}/", timeout=min(left, 75)).status
            except (OSError, http.client.HTTPException) as e:
                status = repr(e)
            if status == 200:
                break
            time.sleep(0.2)
        if status != 200:
            raise BenchError(f"first start: GET /{APP}/ -> {status} after {time.monotonic() - t0:.0f} s")
        first = time.monotonic() - t0
        poll_workspace(d, lambda w: w.get("status") == "running", 20, "status running")
        log(f"{runtime}: first start (install + run) {first:.1f} s")

        frozen = []
        for i in range(FROZEN_ROUNDS):
            poll_workspace(d, lambda w: w.get("frozen") is True, 20, f"frozen #{i + 1}")
            t, status = first_byte(d.port, f"/{APP}/")
            if status != 200:
                raise BenchError(f"frozen -> GET /{APP}/ #{i + 1} -> {status}, not 200")
            frozen.append(t)
        log(f"{runtime}: frozen -> first byte {', '.join(f'{ms(x):.0f}' for x in frozen)} ms")

        stopped = []
        for i in range(STOPPED_ROUNDS):
            w = poll_workspace(d, lambda w: w.get("status") == "stopped", 20, f"stopped #{i + 1}")
            if w.get("reason") != "idle":
                problems.append(f"{runtime}: stopped by the idle policy but reason is "
                                f"{w.get('reason')!r}, not 'idle': {w!r}")
            t, status = first_byte(d.port, f"/{APP}/")
            if status != 200:
                raise BenchError(f"stopped -> GET /{APP}/ #{i + 1} -> {status}, not 200")
            stopped.append(t)
        log(f"{runtime}: stopped -> first byte {', '.join(f'{ms(x):.0f}' for x in stopped)} ms")
        failed = False
        return {"runtime": runtime, "first": first, "frozen": frozen, "stopped": stopped}
    except Exception as e:  # noqa: BLE001 - any failure is reported with the daemon log
        raise BenchError(f"wake ({runtime}): {e}\n{d.diagnostics(60) if d.proc else ''}") from None
    finally:
        stop_daemon(d, problems, f"wake ({runtime})", failed)
        if runtime == "docker" and d.tmp:
            remove_containers_of(d.ws)


# ---------------------------------------------------------------------------- docker


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, timeout=30):
        super().__init__("localhost", timeout=timeout)

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(DOCKER_SOCK)


def engine(method, path, timeout=30):
    c = UnixHTTP(timeout)
    try:
        c.request(method, "/v1.41" + path, headers={"Host": "docker"})
        r = c.getresponse()
        body = r.read()
        return r.status, (json.loads(body) if body and body[:1] in b"[{" else body)
    finally:
        c.close()


def docker_unavailable():
    """None when the docker rows can run, else the reason they are skipped."""
    if os.environ.get("BENCH_NO_DOCKER"):
        return "BENCH_NO_DOCKER is set"
    try:
        status, _ = engine("GET", "/_ping", timeout=5)
    except OSError as e:
        return f"no Docker engine on {DOCKER_SOCK} ({e})"
    if status != 200:
        return f"the Docker engine on {DOCKER_SOCK} answers /_ping with {status}"
    status, _ = engine("GET", f"/images/{NODE_IMAGE}/json")
    if status != 200:
        return (f"image {NODE_IMAGE} is missing (build it with `cloudyknight images build node`)")
    if not shutil.which("docker"):
        return "the docker CLI is not installed"
    return None


def remove_containers_of(ws_root):
    """Force-removes containers that bind-mount a folder of this run's workspaces (the
    daemon removes its containers on SIGTERM; this only cleans up after a failure)."""
    try:
        _, lst = engine("GET", "/containers/json?all=1")
        for c in lst or []:
            if any((m.get("Source") or "").startswith(ws_root) for m in c.get("Mounts") or []):
                log(f"removing leftover container {c['Names']}")
                engine("DELETE", f"/containers/{c['Id']}?force=1")
    except OSError as e:
        log(f"cannot list containers for cleanup: {e}")


def unpause_baseline():
    """docker unpause on a paused throwaway container of the node image: CLI wall time and
    the Engine API call alone (POST /containers/ID/unpause, as the daemon makes it)."""
    name = "ck-bench-unpause-" + os.urandom(3).hex()
    run = subprocess.run(["docker", "run", "-d", "--name", name, "--label", "cloudyknight.bench=1",
                          NODE_IMAGE, "node", "-e", "setInterval(() => {}, 1 << 30)"],
                         capture_output=True, text=True, timeout=60)
    if run.returncode != 0:
        raise BenchError(f"docker run {NODE_IMAGE}: {run.stderr.strip()}")
    try:
        cli, api = [], []
        for _ in range(UNPAUSE_ROUNDS):
            for how in ("cli", "api"):
                p = subprocess.run(["docker", "pause", name], capture_output=True, text=True, timeout=30)
                if p.returncode != 0:
                    raise BenchError(f"docker pause: {p.stderr.strip()}")
                t0 = time.perf_counter()
                if how == "cli":
                    p = subprocess.run(["docker", "unpause", name], capture_output=True, text=True,
                                       timeout=30)
                    ok, err = p.returncode == 0, p.stderr.strip()
                else:
                    status, body = engine("POST", f"/containers/{name}/unpause")
                    ok, err = status == 204, f"{status} {body!r}"
                dt = time.perf_counter() - t0
                if not ok:
                    raise BenchError(f"docker unpause ({how}): {err}")
                (cli if how == "cli" else api).append(dt)
        return {"cli": cli, "api": api}
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


# ------------------------------------------------------------------------- reconcile


def reconcile():
    if not os.access(RECONCILE, os.X_OK):
        raise BenchError(f"{RECONCILE} is missing (cmake --build build --target reconcile_bench)")
    p = subprocess.run([RECONCILE, "500"], capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise BenchError(f"reconcile_bench exited {p.returncode}: {p.stderr.strip()}")
    out = p.stdout.rstrip("\n")
    figures = {}
    for key, pat in (("first", r"first pass.*?([\d.]+) ms"),
                     ("steady", r"steady pass.*?([\d.]+) ms median, ([\d.]+) ms p99"),
                     ("change", r"pass after one change\s+([\d.]+) ms")):
        m = re.search(pat, out)
        if not m:
            raise BenchError(f"reconcile_bench output not understood (no {key!r} line):\n{out}")
        figures[key] = tuple(float(x) for x in m.groups())
    return out, figures


# ------------------------------------------------------------------------------ main


class Overtime(BaseException):
    """Raised by SIGALRM: passes every `except BenchError`, so cleanup runs and the rest stops."""


def on_alarm(signum, frame):
    raise Overtime(f"the whole run took longer than BENCH_TIMEOUT={TOTAL_TIMEOUT} s")


def main():
    signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(TOTAL_TIMEOUT)
    start = time.monotonic()
    problems, failures = [], []
    rows = []  # (figure, n, p50/median ms, p99 ms or None, max ms)
    load = os.getloadavg()[0]
    print(f"CloudyKnight monitor benchmark  ({os.cpu_count()} cores, load avg at start {load:.2f}, "
          f"{time.strftime('%Y-%m-%d')})")

    skip = None
    try:
        # 1
        print(f"\n1. change -> reload event on /monitor/ws (static workspace, {EDITS} edits, "
              f"scan_interval 60s)")
        print(f"   {'setting':<28} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'min ms':>8}")
        for debounce in (None, "20ms"):
            try:
                r = reload_latency(debounce, problems)
                lat = [ms(x) for x in r["lat"]]
                print(f"   {r['label']:<28} {statistics.median(lat):8.1f} {pct(lat, 99):8.1f} "
                      f"{max(lat):8.1f} {min(lat):8.1f}", flush=True)
                rows.append((f"change -> reload, {r['label']}", len(lat), statistics.median(lat),
                             pct(lat, 99), max(lat)))
            except BenchError as e:
                failures.append(str(e))
                print(f"   debounce {debounce or 'default'}: FAILED (see below)", flush=True)

        # 2
        skip = docker_unavailable()
        runtimes = ["process"] + ([] if skip else ["docker"])
        print(f"\n2. wake -> first byte of GET /{APP}/ (connect until the status line; idle_after 1s, "
              f"background_after 2s, stop_after 5s)")
        print(f"   {'runtime':<8} {'from':<8} {'n':>2} {'median ms':>10} {'max ms':>8}   all (ms)")
        for runtime in runtimes:
            try:
                r = wake_bench(runtime, problems)
                print(f"   ({runtime}: first start incl. install {r['first']:.1f} s)")
                for kind in ("frozen", "stopped"):
                    v = [ms(x) for x in r[kind]]
                    print(f"   {runtime:<8} {kind:<8} {len(v):>2} {statistics.median(v):10.1f} {max(v):8.1f}   "
                          + " ".join(f"{x:.0f}" for x in v), flush=True)
                    rows.append((f"{kind} -> first byte, {runtime}", len(v), statistics.median(v), None, max(v)))
            except BenchError as e:
                failures.append(str(e))
                print(f"   {runtime}: FAILED (see below)", flush=True)
        if skip:
            print(f"   docker: skipped: {skip}")
        else:
            try:
                u = unpause_baseline()
                for how, label in (("cli", "`docker unpause` (CLI)"), ("api", "unpause (Engine API call)")):
                    v = [ms(x) for x in u[how]]
                    print(f"   engine   {label:<27} {len(v):>2} {statistics.median(v):10.1f} {max(v):8.1f}   "
                          + " ".join(f"{x:.0f}" for x in v), flush=True)
                    rows.append((f"docker {label}, paused container", len(v), statistics.median(v), None, max(v)))
            except (BenchError, OSError, subprocess.TimeoutExpired) as e:
                failures.append(f"docker unpause baseline: {e}")
                print("   docker unpause baseline: FAILED (see below)", flush=True)

        # 3
        print("\n3. reconcile pass (build/bench/reconcile_bench 500)")
        try:
            out, f = reconcile()
            print("\n".join("   " + line for line in out.splitlines()), flush=True)
            rows.append(("reconcile 500: first pass", 1, f["first"][0], None, f["first"][0]))
            rows.append(("reconcile 500: steady pass", 50, f["steady"][0], f["steady"][1], None))
            rows.append(("reconcile 500: pass after one change", 1, f["change"][0], None, f["change"][0]))
        except (BenchError, OSError, subprocess.TimeoutExpired) as e:
            failures.append(f"reconcile: {e}")
            print("   FAILED (see below)", flush=True)

    except Overtime as e:
        failures.append(str(e))
        print(f"   OVERTIME: {e}", flush=True)
    signal.alarm(0)
    print(f"\nSummary (ms; total run {time.monotonic() - start:.0f} s)")
    print(f"{'figure':<52} {'n':>4} {'p50/med':>9} {'p99':>8} {'max':>8}")
    for name, n, mid, p99, mx in rows:
        f = lambda x: f"{x:8.1f}" if x is not None else f"{'-':>8}"  # noqa: E731
        print(f"{name:<52} {n:>4} {mid:9.1f} {f(p99)} {f(mx)}")
    if skip:
        print(f"{'docker rows':<52} skipped: {skip}")
    for p in problems:
        print(f"PROBLEM: {p}")
    for e in failures:
        print(f"\nFAILED: {e}", file=sys.stderr)
    if failures:
        print(f"\n{len(failures)} measurement(s) could not be made (details on stderr)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
