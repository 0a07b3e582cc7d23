#!/usr/bin/env python3
"""The soak and chaos run (issue 19, part 4): a real daemon under hours of bounded mixed
traffic and faults, sampled every few seconds, then checked for anything that accumulated.

    tests/soak/run.py [--duration 1h] [--workspaces 50] [--out DIR] [--seed N]
                      [--runtime process|docker] [--clients 8] [--short]

Python 3 standard library and tests/integration/harness.py; gnuplot draws report.png.

What it does:
  * starts build/cloudyknight (CK_BINARY overrides) on 127.0.0.1 with dir storage in a
    temporary folder and N workspaces named s<tag>-NN-<kind>: static (a copy of
    examples/site), node (tests/soak/apps/node: no dependencies, WebSocket echo at /ws) and
    python (tests/soak/apps/python), each with a version.txt the apps read at start;
  * runs --clients threads (at most 8) of traffic, each pausing between requests: static
    GETs, proxied GETs, WebSocket echoes through the gateway, /monitor/ws connects, API reads
    (list, status) and, from the chaos thread, files API writes;
  * chaos at random intervals once the warm-up (first 10%) is over: saves of version.txt
    (half on disk, half through the files API), kill -9 of an app process (or of its
    container), SIGKILL of the daemon and a restart on the same data (only in the first half,
    so the second half is one daemon's life to measure). The last 15% is quiet;
  * samples every --interval (5 s): the daemon's RSS, open fds, threads, state.db size
    (with its WAL), log size, request latency p50/p99 and errors per window;
  * afterwards asserts: every workspace serves its last saved version.txt; no duplicate or
    orphan app process / container / dependency volume of the soak's workspaces, nothing of a
    killed daemon left running, nothing left after the final SIGTERM (process runtime); RSS
    growth after warm-up under the tolerance (median of the last window against the median
    of the window after warm-up, within the last daemon's life); fds flat (max - min after
    warm-up within a bound); state.db size bounded; no unexplained error (a 5xx or failed
    connection outside a daemon-kill window and not right after a fault on that workspace).

Writes to --out (default: a new temporary folder, printed): report.json, report.txt,
samples.tsv, requests (errors only) in errors.jsonl, report.png (gnuplot), and the daemon's
logs when something failed. Exit code 0 when every check passed, 1 otherwise, 2 on usage.
Docker mode kills the soak's own containers; it restarts the engine only with
--dockerd-restarts N (a machine where nothing else uses dockerd: a restart stops every
container on it). Each restart stops dockerd (SIGTERM), starts it again with the same command
line, and the daemon must bring every app back by itself.
"""

import argparse
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))

import harness  # noqa: E402
from harness import Daemon, WebSocketClient, argv, close_wait_sockets, descendants, pid_alive  # noqa: E402

APPS = os.path.join(HERE, "apps")
STATIC_SRC = os.path.join(REPO, "examples", "site")
S3_BUCKET = "soak"
S3_PREFIX = "ws"
KINDS = ("static", "node", "python")
API = "/monitor/api/v1"
MAX_CLIENTS = 8
CLOSE_WAIT_AGE = 60.0   # s a socket may stay in CLOSE_WAIT before it counts as forgotten
FAULT_GRACE = 30.0      # s after a fault on a workspace during which its errors are explained
KILL_GRACE = 5.0        # s after a restarted daemon answers during which errors are explained


def parse_duration(text):
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {text!r} (examples: 90s, 20m, 1h)")
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def percentile(values, q):
    if not values:
        return None
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * (len(s) - 1)))))]


def proc_status(pid):
    """{"rss_kib", "threads"} of a pid from /proc/PID/status, or None when it is gone."""
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    out["rss_kib"] = int(line.split()[1])
                elif line.startswith("Threads:"):
                    out["threads"] = int(line.split()[1])
    except OSError:
        return None
    return out if "rss_kib" in out else None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def file_size(*paths):
    total = 0
    for p in paths:
        try:
            total += os.path.getsize(p)
        except OSError:
            pass
    return total


def tree_size(folder):
    total = 0
    for root, _, files in os.walk(folder):
        for n in files:
            total += file_size(os.path.join(root, n))
    return total


def processes_under(path):
    """Live pids whose argv mentions `path` or whose working folder (as the host names it)
    is at or below it: what a daemon running on that folder started and left behind."""
    root = os.path.realpath(path)
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid == os.getpid() or not pid_alive(pid):
            continue
        cwd = harness.host_cwd(pid)
        if (cwd and (cwd == root or cwd.startswith(root + os.sep))) or any(root in a for a in argv(pid)):
            out.append(pid)
    return sorted(out)


# ------------------------------------------------------------------------------ docker

def engine_process():
    """(pid, argv) of the dockerd serving the engine socket the soak uses (DOCKER_HOST, else
    /var/run/docker.sock); (0, why) when it is not exactly one process."""
    host = os.environ.get("DOCKER_HOST", "")
    sock = host[len("unix://"):] if host.startswith("unix://") else "/var/run/docker.sock"
    found = []
    for p in subprocess.run(["pgrep", "-x", "dockerd"], capture_output=True, text=True).stdout.split():
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                args = [a.decode() for a in f.read().split(b"\0") if a]
        except OSError:
            continue
        hosts = [a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
                 for i, a in enumerate(args) if a.split("=", 1)[0] in ("-H", "--host")]
        serves = any(h == f"unix://{sock}" for h in hosts) if hosts else sock == "/var/run/docker.sock"
        if serves:
            found.append((int(p), args))
    if len(found) != 1:
        return 0, f"expected one dockerd serving {sock}, found {[f[0] for f in found]}"
    return found[0]


class DockerEngine:
    """The few Engine API calls the docker mode needs (the integration tests' client)."""

    def __init__(self):
        import test_docker_runtime as tdr  # noqa: E402 (only in docker mode: it checks nothing at import)
        self.d = tdr.DOCKER

    def containers(self, workspace):
        return self.d.containers(workspace)

    def containers_with_prefix(self, prefix):
        filters = json.dumps({"name": [prefix]})
        return [c for c in (self.d.call("GET", "/containers/json", query={"all": "1", "filters": filters}) or [])
                if any(n.lstrip("/").startswith(prefix) for n in c.get("Names") or [])]

    def volumes_with_prefix(self, prefix):
        doc = self.d.call("GET", "/volumes", query={"filters": json.dumps({"name": [prefix]})}) or {}
        return sorted(v["Name"] for v in doc.get("Volumes") or [] if v["Name"].startswith(prefix))

    def networks_with_prefix(self, prefix):
        nets = self.d.call("GET", "/networks", query={"filters": json.dumps({"name": [prefix]})}) or []
        return sorted(n["Name"] for n in nets if n["Name"].startswith(prefix))

    def kill(self, container_id):
        self.d.call("POST", f"/containers/{container_id}/kill", ok=(204, 404, 409))

    def remove_container(self, container_id):
        self.d.call("DELETE", f"/containers/{container_id}", query={"force": "1", "v": "1"}, ok=(204, 404, 409))

    def remove_volume(self, name):
        self.d.call("DELETE", f"/volumes/{name}", query={"force": "1"}, ok=(204, 404, 409))

    def remove_network(self, name):
        self.d.call("DELETE", f"/networks/{name}", ok=(204, 404, 409))


# ------------------------------------------------------------------------------- soak

class Soak:
    def __init__(self, opts):
        self.o = opts
        self.rng = random.Random(opts.seed)
        # Unique per run (the pid), so two soaks on one engine never share names.
        self.tag = "%04x" % ((self.rng.randrange(16 ** 4) ^ os.getpid()) & 0xFFFF)
        self.prefix = f"s{self.tag}-"
        self.names = [f"{self.prefix}{i:02d}-{KINDS[i % len(KINDS)]}" for i in range(opts.workspaces)]
        self.kind = {n: n.rsplit("-", 1)[1] for n in self.names}
        self.token = "%064x" % self.rng.getrandbits(256)
        self.lock = threading.Lock()
        self.daemon = None
        self.daemons = []
        self.t0 = None
        self.stop_traffic = threading.Event()
        self.requests = []        # (t_start, t_end, op, name, status|None, error|None)
        self.samples = []
        self.events = []          # (t, kind, detail)
        self.kill_windows = []    # [t_kill, t_ready + KILL_GRACE]
        self.faults = {}          # name -> [t of save/app kill]
        self.latest = {}          # name -> content last saved
        self.version_no = 0
        self.problems = []        # (check, message)
        self.unexplained_workspaces = []  # whose app logs save_diagnostics() keeps
        self.killed_trees = []    # pids of killed daemons and what ran below them
        self.docker = DockerEngine() if opts.runtime == "docker" else None
        self.s3 = None            # the soak's own s3rver with --storage s3
        self.checks = {}
        self.sample_cursor = 0    # requests before it are in an earlier sample
        self.close_wait_seen = {}  # (daemon pid, inode) -> (first seen t, local port, remote port)
        self.hang_snapshots = 0   # hang-N.txt written by snapshot_hang()

    # -- helpers --------------------------------------------------------------
    def now(self):
        return time.monotonic() - self.t0

    def note(self, kind, detail=""):
        t = self.now()
        with self.lock:
            self.events.append((round(t, 2), kind, detail))
        print(f"[soak {t:7.1f}s] {kind} {detail}", flush=True)

    def fail(self, check, message):
        self.problems.append((check, message))
        print(f"[soak] FAILED {check}: {message}", flush=True)

    def current(self):
        with self.lock:
            return self.daemon

    def request(self, method, path, headers=None, body=None, timeout=10):
        d = self.current()
        return d.request(method, path, headers=headers, body=body, timeout=timeout)

    def auth(self):
        return {"Authorization": f"Bearer {self.token}"}

    # -- set-up ---------------------------------------------------------------
    def new_version(self, name):
        self.version_no += 1
        return f"{name} v{self.version_no} {self.rng.getrandbits(48):012x}\n"

    def prepare(self):
        ports = harness.free_service_port_range(max(30, 3 * len(self.names) + 10))
        cfg = {"runtime": {"ports": f"{ports[0]}-{ports[1]}"},
               "auth": {"admin_token": self.token},
               "log": {"level": "info"}}
        if self.o.storage == "s3":
            from test_s3_serve import RestartableS3Server, aws_env
            self.s3 = RestartableS3Server().start()
            self.s3.make_bucket(S3_BUCKET)
            cfg["storage"] = {"list_interval": "2s"}
            d = Daemon(config=cfg, runtime=self.o.runtime, workspaces=False,
                       args=self.s3.storage_args(S3_BUCKET, S3_PREFIX), env=aws_env(self.s3))
        else:
            d = Daemon(config=cfg, runtime=self.o.runtime)
        d.prepare()
        for name in self.names:
            kind = self.kind[name]
            src = STATIC_SRC if kind == "static" else os.path.join(APPS, kind)
            target = d.add_folder(src, name)
            content = self.new_version(name)
            with open(os.path.join(target, "version.txt"), "w") as f:
                f.write(content)
            self.latest[name] = content
            if self.s3:  # the bucket holds the workspaces; TMP/ws is only where they were made
                for root, _, files in os.walk(target):
                    for n in files:
                        path = os.path.join(root, n)
                        with open(path, "rb") as f:
                            self.s3.put_object(S3_BUCKET, f"{S3_PREFIX}/{name}/{os.path.relpath(path, target)}",
                                               f.read())
        self.daemon = d
        self.daemons.append(d)

    def start(self):
        self.t0 = time.monotonic()
        d = self.daemon
        d.start(timeout=60)
        self.note("daemon-started", f"pid {d.proc.pid} port {d.port} tmp {d.tmp}")
        deadline = time.monotonic() + self.o.ready_timeout
        pending = set(self.names)
        for _ in range(100_000):
            for name in list(pending):
                if self.version_of(name) == self.latest[name]:
                    pending.discard(name)
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        if pending:
            raise RuntimeError(f"workspaces not answering their version.txt after "
                               f"{self.o.ready_timeout:.0f}s: {sorted(pending)}\n{d.diagnostics()}")
        self.note("all-workspaces-ready", f"{len(self.names)} workspaces")
        self.t0 = time.monotonic()  # the run's clock starts with every workspace up

    # -- what a workspace serves ------------------------------------------------
    def version_path(self, name):
        return f"/{name}/version.txt" if self.kind[name] == "static" else f"/{name}/version"

    def version_of(self, name):
        try:
            r = self.request("GET", self.version_path(name), timeout=10)
        except (OSError, http.client.HTTPException):
            return None
        return r.body.decode("utf-8", "replace") if r.status == 200 else None

    # -- traffic ----------------------------------------------------------------
    def client(self, i):
        rng = random.Random(self.o.seed * 1000 + i)
        ops = [("static", 30), ("proxied", 30), ("api", 15), ("ws_echo", 12), ("events", 5),
               ("page", 8)]
        population = [op for op, _ in ops]
        weights = [w for _, w in ops]
        apps = [n for n in self.names if self.kind[n] != "static"]
        statics = [n for n in self.names if self.kind[n] == "static"] or apps
        nodes = [n for n in self.names if self.kind[n] == "node"] or None
        for _ in range(100_000_000):
            if self.stop_traffic.is_set():
                return
            op = rng.choices(population, weights)[0]
            name = None
            t1 = self.now()
            status, error = None, None
            try:
                if op == "static":
                    name = rng.choice(statics)
                    path = rng.choice([f"/{name}/", f"/{name}/version.txt", f"/{name}/css/style.css"])
                    status = self.request("GET", path).status
                elif op == "proxied":
                    name = rng.choice(apps or statics)
                    status = self.request("GET", rng.choice([f"/{name}/", f"/{name}/version"])).status
                elif op == "page":
                    name = rng.choice(self.names)
                    status = self.request("GET", f"/{name}/").status
                elif op == "api":
                    name = rng.choice(self.names)
                    path = rng.choice(["/workspaces", f"/workspaces/{name}", f"/workspaces/{name}/status",
                                       "/status"])
                    status = self.request("GET", API + path).status
                    if path in ("/workspaces", "/status"):
                        name = None
                elif op == "ws_echo" and nodes:
                    name = rng.choice(nodes)
                    status = self.ws_echo(name, rng)
                else:
                    op = "events"
                    status = self.events_connect()
            except (OSError, http.client.HTTPException, EOFError, AssertionError, ValueError) as e:
                error = f"{type(e).__name__}: {e}"[:200]
                if isinstance(e, TimeoutError) and op in ("proxied", "page") and name:
                    self.snapshot_hang(name, t1)
            t2 = self.now()
            with self.lock:
                self.requests.append((t1, t2, op, name, status, error))
            self.stop_traffic.wait(rng.uniform(0.5, 1.5) * self.o.pause)

    def snapshot_hang(self, name, t1):
        """Writes what the sockets on the way to `name` look like while a request to it hangs.

        The client gives up after 10 s and the gateway after a minute, so the connections of the
        hung request are still there: the host's TCP sockets with their processes (the gateway,
        Docker's userland proxy) and, for a docker app, those inside the container's network
        namespace, whose queues tell who holds the request."""
        if self.explain((t1, self.now(), "proxied", name, None, "timeout")) != "unexplained":
            return  # a fault is on (a dockerd restart holds every request): nothing to learn
        with self.lock:
            if self.hang_snapshots >= 5:
                return
            self.hang_snapshots += 1
            n = self.hang_snapshots
        cmds = [["ss", "-tanpo"]]
        if self.docker:
            ps = subprocess.run(["docker", "ps", "-a", "--filter", f"name=^ck-{name}", "--format",
                                 "{{.Names}} {{.ID}} {{.Status}} {{.Ports}}"],
                                capture_output=True, text=True, timeout=20)
            cmds.insert(0, ["docker", "ps", "-a", "--filter", f"name=^ck-{name}"])
            for line in ps.stdout.splitlines():
                pid = subprocess.run(["docker", "inspect", "-f", "{{.State.Pid}}", line.split()[0]],
                                     capture_output=True, text=True, timeout=20).stdout.strip()
                if pid.isdigit() and pid != "0":
                    cmds.append(["nsenter", "-t", pid, "-n", "ss", "-tanpo"])
        with open(os.path.join(self.o.out, f"hang-{n}.txt"), "w") as f:
            f.write(f"# {name}: a request started at {t1:.3f}s timed out at {self.now():.3f}s\n")
            for cmd in cmds:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
                f.write(f"\n$ {' '.join(cmd)}\n{r.stdout}{r.stderr}")
        self.note("hang-snapshot", f"{name}: hang-{n}.txt")

    def ws_echo(self, name, rng):
        d = self.current()
        c = WebSocketClient(d.port, f"/{name}/ws", timeout=10)
        try:
            if c.status != 101:
                return c.status
            msg = f"soak {rng.getrandbits(32):08x}"
            c.send_text(msg)
            for _ in range(10):
                fin, opcode, payload, _ = c.recv_frame()
                if opcode == 1:
                    if payload.decode() != msg:
                        raise AssertionError(f"echo {payload[:80]!r} != {msg!r}")
                    return 101
            raise AssertionError("no echo in 10 frames")
        finally:
            c.close()

    def events_connect(self):
        d = self.current()
        c = WebSocketClient(d.port, "/monitor/ws", timeout=10)
        try:
            if c.status != 101:
                return c.status
            message, kind = b"", None
            for _ in range(1000):  # a message may come in fragments (the hello of 50 workspaces does)
                fin, opcode, payload, _ = c.recv_frame()
                if opcode in (1, 2):
                    message, kind = payload, opcode
                elif opcode == 0 and kind is not None:
                    message += payload
                else:
                    continue  # ping/pong: control frames may come between fragments
                if fin:
                    if kind == 1 and json.loads(message.decode()).get("type") == "hello":
                        return 101
                    message, kind = b"", None
            raise AssertionError("no hello in 1000 frames")
        finally:
            c.close()

    # -- chaos --------------------------------------------------------------------
    def save(self, name):
        content = self.new_version(name)
        how = "disk" if self.rng.random() < 0.5 else "api"
        with self.lock:
            self.faults.setdefault(name, []).append(self.now())
        if how == "disk" and self.s3:  # a save straight into the bucket, as `aws s3 cp` would
            how = "bucket"
            self.s3.put_object(S3_BUCKET, f"{S3_PREFIX}/{name}/version.txt", content.encode())
        elif how == "disk":
            path = os.path.join(self.current().ws, name, "version.txt")
            tmp = path + ".soak-tmp"
            with open(tmp, "w") as f:
                f.write(content)
            os.replace(tmp, path)
        else:
            r = None
            for attempt in range(20):  # the daemon may be down (a kill window)
                try:
                    r = self.request("PUT", f"{API}/workspaces/{name}/files/version.txt",
                                     headers=self.auth(), body=content.encode())
                    if r.status in (200, 201):
                        break
                except (OSError, http.client.HTTPException) as e:
                    r = e
                time.sleep(1)
            if not (hasattr(r, "status") and r.status in (200, 201)):
                self.fail("files-api", f"PUT {name}/files/version.txt failed 20 times: {r!r}")
                return
        with self.lock:
            self.latest[name] = content
        self.note("save", f"{name} via {how}: {content.strip()}")

    def kill_app(self, name):
        with self.lock:
            self.faults.setdefault(name, []).append(self.now())
        if self.docker:
            found = [c for c in self.docker.containers(name) if c.get("State") == "running"]
            if not found:
                self.note("kill-app", f"{name}: no running container")
                return
            self.docker.kill(found[0]["Id"])
            self.note("kill-app", f"{name}: container {found[0]['Names']} killed")
            return
        try:
            w = self.current().workspace(name)
        except (AssertionError, OSError, http.client.HTTPException) as e:
            self.note("kill-app", f"{name}: API unavailable ({e})")
            return
        pid = (w or {}).get("pid")
        needle = "server.js" if self.kind[name] == "node" else "app.py"
        app = harness.find_app_process(pid, needle) if isinstance(pid, int) and pid > 1 else None
        if app is None:
            self.note("kill-app", f"{name}: no app process (status {(w or {}).get('status')})")
            return
        try:
            os.kill(app, signal.SIGKILL)
        except OSError:
            pass
        self.note("kill-app", f"{name}: pid {app} killed")

    def kill_daemon(self):
        old = self.current()
        tree = descendants(old.proc.pid)
        t_kill = self.now()
        with self.lock:
            self.kill_windows.append([t_kill - 0.5, float("inf")])
        old.kill()
        self.note("kill-daemon", f"pid {old.proc.pid} and {len(tree) - 1} processes below it")
        if not self.docker:  # the process runtime's apps die with their daemon
            deadline = time.monotonic() + 15
            left = tree
            for _ in range(200):
                left = [p for p in tree if pid_alive(p)]
                if not left or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            if left:
                self.fail("orphans", f"15 s after SIGKILL of daemon {old.proc.pid}, still alive: "
                                     + ", ".join(f"{p} {harness.cmdline(p)[:80]!r}" for p in left))
        self.killed_trees.extend(tree)
        new = Daemon(reuse=old, runtime=self.o.runtime, workspaces=old.pass_workspaces,
                     args=old.args, env=old.extra_env)
        new.spawn()
        with self.lock:
            self.daemon = new
            self.daemons.append(new)
        new.wait_healthy(timeout=60)
        t_ready = self.now()
        with self.lock:
            self.kill_windows[-1][1] = t_ready + KILL_GRACE + self.o.restart_grace
        self.note("daemon-restarted", f"pid {new.proc.pid} healthy {t_ready - t_kill:.1f}s after the kill")

    def restart_dockerd(self):
        """Stops the engine (SIGTERM: it stops every container) and starts it again with the same
        command line; the daemon must notice the dead containers and start its apps again."""
        pid, argv_ = engine_process()
        if not pid:
            self.fail("dockerd-restart", argv_)
            return
        t_stop = self.now()
        with self.lock:
            self.kill_windows.append([t_stop - 0.5, float("inf")])
        os.kill(pid, signal.SIGTERM)
        for _ in range(600):  # dockerd stops its containers first (up to 15 s each)
            if not pid_alive(pid):
                break
            time.sleep(0.1)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            time.sleep(1)
        self.note("dockerd-stopped", f"pid {pid} after {self.now() - t_stop:.1f}s")
        log = open(os.path.join(self.o.out, "dockerd.log"), "ab")
        proc = subprocess.Popen(argv_, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
        up = False
        for _ in range(240):
            if subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
                up = True
                break
            time.sleep(0.5)
        if not up:
            self.fail("dockerd-restart", "dockerd did not answer within 120 s of its restart (dockerd.log)")
            self.stop_traffic.set()
            return
        t_up = self.now()
        self.note("dockerd-started", f"pid {proc.pid}, answering {t_up - t_stop:.1f}s after the stop")
        # Apps come back through the monitor's restart backoff: errors until every app answers
        # again (bounded) are the fault's.
        apps = [n for n in self.names if self.kind[n] != "static"]
        deadline = time.monotonic() + 180
        pending = set(apps)
        for _ in range(100_000):
            for name in list(pending):
                if self.version_of(name) is not None:
                    pending.discard(name)
            if not pending or time.monotonic() > deadline or self.stop_traffic.is_set():
                break
            time.sleep(0.5)
        t_back = self.now()
        with self.lock:
            self.kill_windows[-1][1] = t_back + KILL_GRACE
        if pending:
            self.fail("dockerd-restart", f"apps not answering 180 s after dockerd came back: {sorted(pending)}")
        else:
            self.note("apps-back", f"{len(apps)} apps answering {t_back - t_up:.1f}s after dockerd came back")

    def s3_outage(self):
        """Stops the soak's own s3rver for a while (traffic goes on: the mirror must keep
        serving) and starts it again on the same port and data."""
        secs = self.rng.uniform(5, 15)
        self.s3.pause()
        self.note("s3-outage", f"s3rver stopped for {secs:.0f}s")
        self.stop_traffic.wait(secs)
        self.s3.resume()
        self.note("s3-back", f"s3rver on port {self.s3.port} again")

    def chaos(self):
        o = self.o
        warm = o.duration * 0.10
        quiet_from = o.duration * 0.85
        kills_until = o.duration * 0.50
        # Daemon kills: evenly spread over [15%, 50%] of the run.
        n_kills = o.daemon_kills
        kill_at = [o.duration * (0.15 + 0.35 * (k + 0.5) / n_kills) for k in range(n_kills)] if n_kills else []
        apps = [n for n in self.names if self.kind[n] != "static"]
        t_next = warm + self.rng.expovariate(1 / o.chaos_every)
        outage_done = False
        # dockerd restarts: evenly over [55%, 80%] (the last daemon's life, before the quiet end).
        engine_at = [o.duration * (0.55 + 0.25 * (k + 0.5) / o.dockerd_restarts)
                     for k in range(o.dockerd_restarts)]
        for _ in range(1_000_000):
            if self.stop_traffic.is_set():
                return
            t = self.now()
            if kill_at and t >= kill_at[0] and t < kills_until:
                kill_at.pop(0)
                try:
                    self.kill_daemon()
                except RuntimeError as e:
                    self.fail("daemon-restart", str(e))
                    self.stop_traffic.set()
                    return
                continue
            if t >= quiet_from:
                return
            if engine_at and t >= engine_at[0]:
                engine_at.pop(0)
                self.restart_dockerd()
                continue
            if self.s3 and not outage_done and t >= o.duration * 0.6:  # at least one, in the last life
                outage_done = True
                self.s3_outage()
                continue
            if t >= t_next:
                what = self.rng.choices(["save", "kill_app", "s3_outage"], [3, 1, 0.3 if self.s3 else 0])[0]
                try:
                    if what == "s3_outage":
                        self.s3_outage()
                    elif what == "kill_app" and apps:
                        self.kill_app(self.rng.choice(apps))
                    else:
                        self.save(self.rng.choice(self.names))
                except (OSError, AssertionError, http.client.HTTPException) as e:
                    self.note("chaos-error", f"{what}: {e}")
                t_next = self.now() + self.rng.expovariate(1 / o.chaos_every)
            self.stop_traffic.wait(0.2)

    # -- sampling ------------------------------------------------------------------
    def sampler(self):
        last = 0.0
        for _ in range(10_000_000):
            if self.stop_traffic.wait(self.o.interval):
                return
            try:
                self.sample(last)
            except OSError as e:  # a sample missed is a gap in the curves, not the end of sampling
                self.note("sample-error", repr(e))
            last = self.now()

    def sample(self, since):
        d = self.current()
        t = self.now()
        st = proc_status(d.proc.pid) if d.proc.poll() is None else None
        fds = fd_count(d.proc.pid) if st else None
        with self.lock:
            window = self.requests[self.sample_cursor:]
            self.sample_cursor = len(self.requests)
            epoch = len(self.daemons)
        lat = [(r[1] - r[0]) * 1000 for r in window if r[5] is None and r[4] is not None and r[4] < 500]
        errors = sum(1 for r in window if self.is_error(r))
        unexplained = sum(1 for r in window if self.is_error(r) and self.explain(r) == "unexplained")
        logs = [os.path.join(d.tmp, n) for n in os.listdir(d.tmp) if n.endswith(".log")]
        cw = close_wait_sockets(d.proc.pid) if st else {}
        for inode, ports in cw.items():
            self.close_wait_seen.setdefault((d.proc.pid, inode), (t,) + ports)
        old_cw = sum(1 for inode in cw if t - self.close_wait_seen[(d.proc.pid, inode)][0] >= CLOSE_WAIT_AGE)
        s = {"t": round(t, 1), "epoch": epoch, "pid": d.proc.pid,
             "rss_kib": st["rss_kib"] if st else None, "threads": st["threads"] if st else None,
             "fds": fds, "close_wait": len(cw), "close_wait_old": old_cw,
             "db_bytes": file_size(*(os.path.join(d.data, "state.db" + x) for x in ("", "-wal", "-shm"))),
             "log_bytes": file_size(*logs) + tree_size(os.path.join(d.data, "logs")),
             "requests": len(window),
             "p50_ms": round(percentile(lat, 0.5), 1) if lat else None,
             "p99_ms": round(percentile(lat, 0.99), 1) if lat else None,
             "errors": errors, "unexplained": unexplained}
        with self.lock:
            self.samples.append(s)

    # -- classification ---------------------------------------------------------
    @staticmethod
    def is_error(r):
        _, _, op, _, status, error = r
        return error is not None or status is None or status >= 500 or status in (404, 400)

    def explain(self, r):
        t1, t2, op, name, status, error = r
        for a, b in self.kill_windows:
            if t2 >= a and t1 <= b:
                return "daemon-kill"
        if name is not None:
            for tf in self.faults.get(name, ()):
                if tf - 1 <= t2 <= tf + FAULT_GRACE:
                    return "fault-on-workspace"
        return "unexplained"

    # -- the run ---------------------------------------------------------------------
    def run(self):
        threads = [threading.Thread(target=self.client, args=(i,), name=f"soak-client-{i}", daemon=True)
                   for i in range(self.o.clients)]
        threads.append(threading.Thread(target=self.sampler, name="soak-sampler", daemon=True))
        chaos = threading.Thread(target=self.chaos, name="soak-chaos", daemon=True)
        for th in threads:
            th.start()
        chaos.start()
        end = self.o.duration
        for _ in range(int(end) * 10 + 100):
            if self.now() >= end or self.stop_traffic.is_set():
                break
            time.sleep(0.1)
        self.stop_traffic.set()
        chaos.join(90)
        for th in threads:
            th.join(30)
        self.sample(self.samples[-1]["t"] if self.samples else 0.0)
        self.note("traffic-stopped", f"{len(self.requests)} requests")

    # -- checks after the run -------------------------------------------------------
    def check_latest_source(self):
        deadline = time.monotonic() + self.o.converge_timeout
        pending = dict(self.latest)
        got = {}
        for _ in range(100_000):
            for name in list(pending):
                got[name] = self.version_of(name)
                if got[name] == pending[name]:
                    del pending[name]
            if not pending or time.monotonic() > deadline:
                break
            time.sleep(1)
        self.checks["latest_source"] = {"workspaces": len(self.latest), "stale": len(pending)}
        for name, want in sorted(pending.items()):
            w = None
            try:
                w = self.current().workspace(name)
            except (AssertionError, OSError, http.client.HTTPException):
                pass
            self.fail("latest-source", f"{name} answers {got.get(name)!r}, last saved {want!r} "
                                       f"(status {(w or {}).get('status')!r}, "
                                       f"reason {(w or {}).get('reason') or (w or {}).get('error')!r})")

    def check_orphans_running(self):
        d = self.current()
        left = [p for p in self.killed_trees if pid_alive(p) and p not in descendants(d.proc.pid)]
        if left and not self.docker:
            self.fail("orphans", "processes of killed daemons still alive: "
                      + ", ".join(f"{p} {harness.cmdline(p)[:80]!r}" for p in left))
        dup = {}
        if self.docker:
            for name in self.names:
                if self.kind[name] == "static":  # served by the gateway: no container
                    continue
                cs = self.docker.containers(name)
                if len(cs) != 1:
                    dup[name] = [f"{c['Names']} {c['State']}" for c in cs]
            all_c = self.docker.containers_with_prefix("ck-" + self.prefix)
            vols = self.docker.volumes_with_prefix("ck-deps-" + self.prefix)
            per = {}
            for v in vols:
                for name in self.names:
                    if v.startswith(f"ck-deps-{name}-"):
                        per.setdefault(name, []).append(v)
            extra_vols = {n: v for n, v in per.items() if len(v) > 1}
            self.checks["docker"] = {"containers": len(all_c), "deps_volumes": len(vols)}
            if extra_vols:
                self.fail("orphans", f"workspaces with more than one dependency volume: {extra_vols}")
        else:
            for name in self.names:
                if self.kind[name] == "static":
                    continue
                needle = "server.js" if self.kind[name] == "node" else "app.py"
                pids = harness.processes_with_arg(needle, cwd_under=os.path.join(d.data, "run", name))
                if len(pids) != 1:
                    dup[name] = pids
        if dup:
            self.fail("orphans", f"workspaces without exactly one app {'container' if self.docker else 'process'}: {dup}")
        self.checks["app_instances_ok"] = not dup

    def check_metrics(self):
        o = self.o
        last_epoch = len(self.daemons)
        life = [s for s in self.samples if s["epoch"] == last_epoch and s["rss_kib"] is not None]
        if not life:
            self.fail("samples", "no sample of the last daemon's life")
            return
        t_start = life[0]["t"]
        warm = max(o.duration * 0.10, o.interval * 3)
        win = max(o.duration * 0.10, o.interval * 4)
        base = [s for s in life if t_start + warm <= s["t"] < t_start + warm + win]
        tail = [s for s in life if s["t"] >= life[-1]["t"] - win]
        after_warm = [s for s in life if s["t"] >= t_start + warm]
        if len(base) < 3 or len(tail) < 3:
            self.fail("samples", f"too few samples to compare (last daemon life {life[-1]['t'] - t_start:.0f}s, "
                                 f"{len(base)} after warm-up, {len(tail)} in the last window)")
            return
        rss_base = statistics.median(s["rss_kib"] for s in base)
        rss_tail = statistics.median(s["rss_kib"] for s in tail)
        growth = (rss_tail - rss_base) / rss_base
        allowed = rss_base * o.rss_tolerance + o.rss_slack_kib
        fds = [s["fds"] for s in after_warm if s["fds"] is not None]
        fd_spread = max(fds) - min(fds)
        fd_base = statistics.median(s["fds"] for s in base)
        fd_tail = statistics.median(s["fds"] for s in tail)
        db_max = max(s["db_bytes"] for s in self.samples)
        db_base = statistics.median(s["db_bytes"] for s in base)
        db_tail = statistics.median(s["db_bytes"] for s in tail)
        thr = [s["threads"] for s in after_warm if s["threads"] is not None]
        self.checks["rss"] = {"baseline_kib": rss_base, "last_kib": rss_tail, "growth_pct": round(growth * 100, 2),
                              "allowed_kib": round(allowed), "window_s": round(win), "warmup_s": round(warm),
                              "last_life_start_s": t_start}
        self.checks["fds"] = {"min": min(fds), "max": max(fds), "spread": fd_spread, "bound": o.fd_bound,
                              "baseline_median": fd_base, "last_median": fd_tail}
        self.checks["threads"] = {"min": min(thr), "max": max(thr)}
        self.checks["state_db"] = {"baseline_bytes": db_base, "last_bytes": db_tail, "max_bytes": db_max,
                                   "bound_bytes": o.db_bound}
        self.checks["log"] = {"bytes": self.samples[-1]["log_bytes"],
                              "bytes_per_hour": round(self.samples[-1]["log_bytes"] / max(self.now(), 1) * 3600)}
        if o.sanitizer_build:
            self.checks["rss"]["checked"] = "no: sanitizer build"
        elif rss_tail - rss_base > allowed:
            self.fail("rss", f"RSS grew from {rss_base} KiB (median {warm:.0f}-{warm + win:.0f}s into the last daemon's "
                             f"life) to {rss_tail} KiB (median of the last {win:.0f}s): +{growth * 100:.1f}%, "
                             f"allowed {o.rss_tolerance * 100:.0f}% + {o.rss_slack_kib} KiB")
        if fd_spread > o.fd_bound:
            self.fail("fds", f"open fds ranged {min(fds)}-{max(fds)} after warm-up (spread {fd_spread}, bound "
                             f"{o.fd_bound}); medians {fd_base} -> {fd_tail}")
        if db_max > o.db_bound:
            self.fail("state-db", f"state.db (+WAL) reached {db_max} bytes, bound {o.db_bound}")
        if db_tail > 2 * db_base + 1024 * 1024:
            self.fail("state-db", f"state.db (+WAL) grew from {db_base} to {db_tail} bytes during the last "
                                  f"daemon's life (more than double + 1 MiB)")

    def check_sockets(self):
        """Sockets of the daemon in CLOSE_WAIT for CLOSE_WAIT_AGE or longer: connections whose
        peer (an app that restarted, a client) closed and that the daemon never closed."""
        d = self.current()
        self.sample(0)  # a last look, after the convergence wait
        t = self.now()
        cw = close_wait_sockets(d.proc.pid)
        old = sorted((t - self.close_wait_seen[(d.proc.pid, i)][0], p) for i, p in cw.items()
                     if (d.proc.pid, i) in self.close_wait_seen
                     and t - self.close_wait_seen[(d.proc.pid, i)][0] >= CLOSE_WAIT_AGE)
        self.checks["close_wait"] = {"now": len(cw), "older_than_s": CLOSE_WAIT_AGE, "old": len(old),
                                     "max_seen": max((s.get("close_wait") or 0) for s in self.samples)}
        if len(old) > self.o.max_close_wait:
            remote = sorted({p[1] for _, p in old})
            self.fail("close-wait", f"the daemon (pid {d.proc.pid}) holds {len(old)} TCP sockets in CLOSE_WAIT for "
                                    f"{CLOSE_WAIT_AGE:.0f}s or more (the peer closed, the daemon never did), "
                                    f"the oldest {old[-1][0]:.0f}s; remote ports {remote[:30]} "
                                    f"(app ports of restarted instances: the gateway's idle upstream pool, "
                                    f"Worker::idle in src/gateway/proxy.cc, never drops them)")

    def check_errors(self):
        by = {}
        kinds = {}
        unexplained = []
        for r in self.requests:
            kinds[r[2]] = kinds.get(r[2], 0) + 1
            if not self.is_error(r):
                continue
            why = self.explain(r)
            by.setdefault(why, {}).setdefault(r[2], 0)
            by[why][r[2]] += 1
            if why == "unexplained":
                unexplained.append(r)
        self.unexplained_workspaces = sorted({r[3] for r in unexplained if r[3]})
        self.checks["requests"] = {"total": len(self.requests), "by_kind": kinds, "errors": by,
                                   "rate_per_s": round(len(self.requests) / max(self.o.duration, 1), 1)}
        lat = [(r[1] - r[0]) * 1000 for r in self.requests if r[5] is None and r[4] is not None and r[4] < 500]
        self.checks["latency_ms"] = {"p50": round(percentile(lat, 0.5) or 0, 1),
                                     "p99": round(percentile(lat, 0.99) or 0, 1),
                                     "max": round(max(lat), 1) if lat else None}
        with open(os.path.join(self.o.out, "errors.jsonl"), "w") as f:
            for r in self.requests:
                if self.is_error(r):
                    f.write(json.dumps({"t_start": round(r[0], 3), "t_end": round(r[1], 3), "op": r[2],
                                        "workspace": r[3], "status": r[4], "error": r[5],
                                        "why": self.explain(r)}) + "\n")
        if len(unexplained) > self.o.max_unexplained:
            ex = "; ".join(f"{r[2]} {r[3]} at {r[1]:.1f}s: {r[4] or r[5]}" for r in unexplained[:8])
            self.fail("errors", f"{len(unexplained)} unexplained errors (allowed {self.o.max_unexplained}), "
                                f"e.g. {ex} (all in errors.jsonl)")

    def finish(self):
        d = self.current()
        res = d.stop(timeout=90)
        self.checks["final_stop"] = {"returncode": res.returncode, "seconds": round(res.elapsed, 1)}
        if res.returncode != 0:
            self.fail("shutdown", f"the daemon exited with {res.returncode} after SIGTERM (None: not within 90 s)")
        if not self.docker:
            left = []
            for _ in range(50):
                left = processes_under(d.tmp)
                if not left:
                    break
                time.sleep(0.2)
            if left or res.leftovers:
                self.fail("orphans", "processes left after the final SIGTERM: "
                          + ", ".join(f"{p} {harness.cmdline(p)[:80]!r}" for p in sorted(set(left) | set(res.leftovers))))
                for p in left:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass

    def docker_cleanup(self):
        """Removes what the soak's workspaces left in the engine (the daemon leaves its
        containers running on SIGTERM, to be adopted), by name prefix: never anyone else's."""
        if not self.docker:
            return
        removed = {"containers": 0, "volumes": 0, "networks": 0}
        for c in self.docker.containers_with_prefix("ck-" + self.prefix):
            self.docker.remove_container(c["Id"])
            removed["containers"] += 1
        for prefix in (f"ck-deps-{self.prefix}", f"ck-cache-{self.prefix}"):
            for v in self.docker.volumes_with_prefix(prefix):
                self.docker.remove_volume(v)
                removed["volumes"] += 1
        for n in self.docker.networks_with_prefix(f"ck-net-{self.prefix}"):
            self.docker.remove_network(n)
            removed["networks"] += 1
        self.checks["docker_cleanup"] = removed

    # -- report ------------------------------------------------------------------
    def write_report(self):
        out = self.o.out
        with open(os.path.join(out, "samples.tsv"), "w") as f:
            f.write("# t_s\tepoch\trss_mib\tfds\tthreads\tp50_ms\tp99_ms\tdb_kib\tlog_kib\trequests\terrors\tunexplained\tclose_wait\n")
            for s in self.samples:
                def v(x, scale=1.0):
                    return "NaN" if x is None else f"{x / scale:.3f}"
                f.write("\t".join([f"{s['t']:.1f}", str(s["epoch"]), v(s["rss_kib"], 1024), v(s["fds"]),
                                   v(s["threads"]), v(s["p50_ms"]), v(s["p99_ms"]), v(s["db_bytes"], 1024),
                                   v(s["log_bytes"], 1024), str(s["requests"]), str(s["errors"]),
                                   str(s["unexplained"]), str(s.get("close_wait", 0))]) + "\n")
        kills = [e[0] for e in self.events if e[1] == "kill-daemon"]
        report = {"ok": not self.problems, "problems": [{"check": c, "message": m} for c, m in self.problems],
                  "options": {k: v for k, v in vars(self.o).items()},
                  "workspaces": {k: sum(1 for n in self.names if self.kind[n] == k) for k in KINDS},
                  "checks": self.checks, "daemon_kills_at_s": kills,
                  "faults": {"saves": sum(1 for e in self.events if e[1] == "save"),
                             "app_kills": sum(1 for e in self.events if e[1] == "kill-app"),
                             "daemon_kills": len(kills)},
                  "events": self.events, "samples": self.samples}
        with open(os.path.join(out, "report.json"), "w") as f:
            json.dump(report, f, indent=1)
        png = self.plot(kills)
        lines = [f"soak: {'PASSED' if not self.problems else 'FAILED'} — {self.o.runtime} runtime, "
                 f"{len(self.names)} workspaces {report['workspaces']}, {self.o.duration:.0f}s, seed {self.o.seed}, "
                 f"{self.o.clients} clients",
                 f"faults: {report['faults']}"]
        for k, v in self.checks.items():
            lines.append(f"  {k}: {json.dumps(v)}")
        for c, m in self.problems:
            lines.append(f"FAILED {c}: {m}")
        lines.append(f"report: {os.path.join(out, 'report.txt')} (JSON: report.json, samples: samples.tsv, "
                     f"errors: errors.jsonl)")
        lines.append(f"curves: {png}" if png else "curves: not drawn (see above)")
        text = "\n".join(lines) + "\n"
        with open(os.path.join(out, "report.txt"), "w") as f:
            f.write(text)
        print(text, flush=True)

    def plot(self, kills):
        gp = shutil.which("gnuplot")
        out = self.o.out
        if gp is None:
            self.fail("plot", "gnuplot is not installed (apt-get install gnuplot-nox): no report.png")
            return None
        arrows = "\n".join(f"set arrow from {t:.1f}, graph 0 to {t:.1f}, graph 1 nohead dt 2 lc rgb 'red'"
                           for t in kills)
        script = f"""
set terminal pngcairo noenhanced size 1200,1000 font 'sans,10'
set output '{out}/report.png'
set datafile separator '\\t'
set datafile missing 'NaN'
set multiplot layout 4,1 title 'CloudyKnight soak: {self.o.runtime} runtime, {len(self.names)} workspaces, {self.o.duration:.0f} s (red: daemon SIGKILL)'
set grid
set xlabel 'seconds'
{arrows}
set ylabel 'RSS (MiB)'
plot '{out}/samples.tsv' using 1:3 with linespoints pt 7 ps 0.4 title 'daemon RSS'
set ylabel 'count'
plot '{out}/samples.tsv' using 1:4 with linespoints pt 7 ps 0.4 title 'open fds', '' using 1:5 with lines title 'threads', '' using 1:13 with lines title 'sockets in CLOSE_WAIT'
set ylabel 'ms'
set logscale y
plot '{out}/samples.tsv' using 1:7 with linespoints pt 7 ps 0.4 title 'latency p99', '' using 1:6 with lines title 'p50'
unset logscale y
set ylabel 'KiB / count'
plot '{out}/samples.tsv' using 1:8 with lines title 'state.db+WAL (KiB)', '' using 1:9 with lines title 'logs (KiB)', '' using 1:11 with impulses lw 2 title 'errors per window'
unset multiplot
"""
        path = os.path.join(out, "report.gp")
        with open(path, "w") as f:
            f.write(script)
        r = subprocess.run([gp, path], capture_output=True, text=True, timeout=60)
        if r.returncode != 0 or not os.path.exists(os.path.join(out, "report.png")):
            self.fail("plot", f"gnuplot failed ({r.returncode}): {r.stderr[-1000:]}")
            return None
        return os.path.join(out, "report.png")

    def save_diagnostics(self):
        for i, d in enumerate(self.daemons):
            try:
                text = d.diagnostics(max_lines=400)
            except Exception as e:  # noqa: BLE001 (diagnostics must never hide the report)
                text = f"diagnostics failed: {e!r}"
            with open(os.path.join(self.o.out, f"daemon-{i + 1}.log"), "w") as f:
                f.write(text)
        # The whole app log (its last 4 MiB) of each workspace with an unexplained error: the
        # daemon logs above keep only a tail, and the run's data folder goes with the run.
        data = self.daemons[-1].data if self.daemons else ""
        for name in self.unexplained_workspaces:
            src = os.path.join(data, "logs", f"{name}.log")
            try:
                with open(src, "rb") as f:
                    f.seek(max(0, os.path.getsize(src) - 4 * 1024 * 1024))
                    body = f.read()
                with open(os.path.join(self.o.out, f"app-{name}.log"), "wb") as f:
                    f.write(body)
            except OSError as e:
                print(f"[soak] cannot keep the log of {name}: {e}", flush=True)


def options(args=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=parse_duration, default=None, help="run time after start-up (1h; --short: 150s)")
    p.add_argument("--workspaces", type=int, default=None, help="number of workspaces (50; --short: 10)")
    p.add_argument("--out", default=None, help="folder for the report (default: a new temporary folder)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: from the clock, printed)")
    p.add_argument("--runtime", choices=("process", "docker"), default="process")
    p.add_argument("--storage", choices=("dir", "s3"), default="dir",
                   help="dir: a temporary folder; s3: a bucket on the soak's own s3rver (scripts/s3rver.sh), "
                        "with outages")
    p.add_argument("--clients", type=int, default=MAX_CLIENTS, help=f"concurrent clients (at most {MAX_CLIENTS})")
    p.add_argument("--pause", type=parse_duration, default=0.1, help="mean pause of a client between requests (0.1s)")
    p.add_argument("--interval", type=parse_duration, default=None, help="sampling interval (5s; --short: 3s)")
    p.add_argument("--chaos-every", type=parse_duration, default=None, help="mean time between faults (20s; --short: 5s)")
    p.add_argument("--daemon-kills", type=int, default=None, help="daemon SIGKILLs in the first half (one per 10 min, at least 1)")
    p.add_argument("--dockerd-restarts", type=int, default=0,
                   help="docker runtime: restarts of dockerd in the second half (0; stops every container on the machine)")
    p.add_argument("--short", action="store_true", help="the CI version: 150 s, 10 workspaces, tolerances for a short run")
    p.add_argument("--rss-tolerance", type=float, default=None, help="allowed RSS growth, fraction (0.05; --short: 0.10)")
    p.add_argument("--rss-slack-kib", type=int, default=None, help="allowed RSS growth on top, KiB (1024; --short: 4096)")
    p.add_argument("--fd-bound", type=int, default=None, help="allowed max - min of open fds after warm-up")
    p.add_argument("--db-bound", type=int, default=64 * 1024 * 1024, help="largest state.db + WAL, bytes")
    p.add_argument("--max-close-wait", type=int, default=0,
                   help=f"sockets allowed in CLOSE_WAIT for {CLOSE_WAIT_AGE:.0f}s or more at the end (0)")
    p.add_argument("--max-unexplained", type=int, default=0, help="errors allowed outside fault windows (0)")
    p.add_argument("--ready-timeout", type=parse_duration, default=None, help="start-up wait (180s; docker 600s)")
    p.add_argument("--converge-timeout", type=parse_duration, default=90.0, help="wait for the latest source at the end")
    p.add_argument("--restart-grace", type=parse_duration, default=None,
                   help="after a restarted daemon answers, how long errors still count as the kill's (30s)")
    p.add_argument("--sanitizer-build", action="store_true",
                   help="the binary is built with ASan: RSS is reported, not checked (its quarantine grows by design)")
    p.add_argument("--keep", action="store_true", help="keep the daemon's temporary folder")
    o = p.parse_args(args)
    short = o.short
    o.duration = o.duration if o.duration is not None else (150.0 if short else 3600.0)
    o.workspaces = o.workspaces if o.workspaces is not None else (10 if short else 50)
    o.interval = o.interval if o.interval is not None else (3.0 if short else 5.0)
    o.chaos_every = o.chaos_every if o.chaos_every is not None else (5.0 if short else 20.0)
    o.daemon_kills = o.daemon_kills if o.daemon_kills is not None else max(1, round(o.duration / 600))
    o.rss_tolerance = o.rss_tolerance if o.rss_tolerance is not None else (0.10 if short else 0.05)
    o.rss_slack_kib = o.rss_slack_kib if o.rss_slack_kib is not None else (4096 if short else 1024)
    o.fd_bound = o.fd_bound if o.fd_bound is not None else 4 * MAX_CLIENTS + 2 * o.workspaces + 16
    o.ready_timeout = o.ready_timeout if o.ready_timeout is not None else (600.0 if o.runtime == "docker" else 180.0)
    o.restart_grace = o.restart_grace if o.restart_grace is not None else 30.0
    o.seed = o.seed if o.seed is not None else int(time.time()) % 100000
    if not 1 <= o.clients <= MAX_CLIENTS:
        p.error(f"--clients must be 1 to {MAX_CLIENTS} (this machine is shared)")
    if not 3 <= o.workspaces <= 200:
        p.error("--workspaces must be 3 to 200")
    if o.duration < 60:
        p.error("--duration must be at least 60s (warm-up, faults, a quiet end)")
    if o.dockerd_restarts and o.runtime != "docker":
        p.error("--dockerd-restarts needs --runtime docker")
    if not 0 <= o.dockerd_restarts <= 10:
        p.error("--dockerd-restarts must be 0 to 10")
    o.out = os.path.abspath(o.out or tempfile.mkdtemp(prefix="ck-soak-report-"))
    os.makedirs(o.out, exist_ok=True)
    return o


def main(args=None):
    o = options(args)
    print(f"[soak] report folder: {o.out}; seed {o.seed}; {o.runtime} runtime; {o.workspaces} workspaces; "
          f"{o.duration:.0f}s", flush=True)
    # The daemon's folders (harness: ck-it-*) go in a folder of the soak's own, out of reach of
    # anything else that tidies /tmp/ck-it-* while the soak runs.
    base = tempfile.mkdtemp(prefix="ck-soak-")
    tempfile.tempdir = base
    soak = Soak(o)
    ok = False
    try:
        soak.prepare()
        soak.start()
        soak.run()
        soak.check_latest_source()
        soak.check_orphans_running()
        soak.check_metrics()
        soak.check_sockets()
        soak.check_errors()
        soak.finish()
        ok = not soak.problems
    except BaseException as e:
        soak.fail("run", f"{type(e).__name__}: {e}")
        soak.stop_traffic.set()
        for d in soak.daemons:
            if d.proc is not None and d.stopped is None:
                d.stop(timeout=60)
        if isinstance(e, KeyboardInterrupt):
            raise
    finally:
        try:
            soak.docker_cleanup()
        except (OSError, AssertionError, http.client.HTTPException) as e:
            soak.fail("docker-cleanup", str(e))
        if soak.s3 is not None:
            soak.s3.stop()
        if soak.problems:
            soak.save_diagnostics()
        if soak.t0 is not None:
            soak.write_report()
        else:
            for c, m in soak.problems:
                print(f"FAILED {c}: {m}", flush=True)
        keep = o.keep or bool(soak.problems and os.environ.get("CK_KEEP_TMP"))
        if soak.daemons:
            soak.daemons[0].cleanup(keep=keep)
        if keep:
            print(f"[soak] kept {base}", flush=True)
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0 if ok and not soak.problems else 1


if __name__ == "__main__":
    sys.exit(main())
