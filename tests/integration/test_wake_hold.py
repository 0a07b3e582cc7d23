"""Requests held through a crash, and restart storms (issue 19, rows 3 and 4).

Row 3: a request that wakes a workspace is held (within idle.wake_timeout) while the app
restarts after a crash during the wake; only a workspace that stays failed answers 502, with
its reason. A frozen app killed with SIGKILL while frozen, then a request: 200, never 502. A
stopped workspace whose first start crashes: the waking request is held through the retry
and gets 200. An app that crashes at every start: 502 with the failure, well within
idle.wake_timeout.

Row 4: 200 saves in 10 s to a node workspace in restart mode while a client sends requests
all along: no 503 (nor any other error) reaches the client, and the burst gives one or two
restarts (changes while the app starts, or right after, wait for the source to settle and
give one restart; the new version starts beside the old one, which answers until the switch).
Process runtime, and the docker runtime (skipped unless an engine answers and has
cloudyknight/node:bookworm; its restarts must go through the blue/green switch).

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_wake_hold
"""

import html
import http.client
import os
import re
import signal
import threading
import time
import unittest

from harness import argv, body_excerpt, close_wait_sockets, descendants, pid_alive, write_json
from test_monitor import MonitorCase

# Freezes after 1 s without requests and stays frozen (no idle stop within a test).
FREEZE_FAST = {"idle_after": "500ms", "background_after": "1s", "stop_after": "10m", "grace": "500ms"}
# Stops after 2 s without requests.
STOP_FAST = {"idle_after": "500ms", "background_after": "1s", "stop_after": "2s", "grace": "500ms"}
WAKE_TIMEOUT = 20


def app_starts(log_text, name):
    """The daemon's lines saying a new app of workspace `name` runs (a start or a switch)."""
    pattern = re.compile(rf"\[ws={re.escape(name)} pid=\d+\] (?:new version )?running on .*")
    return pattern.findall(log_text)


class SteadyClient:
    """One keep-alive client sending `GET path` every 10 ms (at most 20000 requests) from start()
    until stop(); `seen` holds (seconds since start, status, body, seconds it took), an error as
    status -1 with its repr as the body."""

    def __init__(self, d, path):
        self.d, self.path, self.seen = d, path, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.t0 = 0.0

    def start(self):
        self.t0 = time.monotonic()
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(40)
        return self.seen

    def _run(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=30)
        while not self._stop.is_set() and len(self.seen) < 20000:
            t = time.monotonic()
            try:
                conn.request("GET", self.path, headers={"Accept": "text/plain"})
                r = conn.getresponse()
                self.seen.append((t - self.t0, r.status, r.read().decode(errors="replace").strip(),
                                  time.monotonic() - t))
            except (OSError, http.client.HTTPException) as e:
                self.seen.append((t - self.t0, -1, repr(e), time.monotonic() - t))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=30)
            time.sleep(0.01)
        conn.close()

    def check_switch(self, test, old, new):
        """Every answer 200, version `old` until the switch and `new` after it (the fixture's body
        is "bluegreen <version> ..."); returns the index of the first new answer."""
        bad = [x for x in self.seen if x[1] != 200]
        test.assertEqual(bad, [], "every request during the change answers 200")
        versions = [x[2].split()[1] for x in self.seen]
        switch = versions.index(new)
        test.assertEqual(set(versions[:switch]), {old}, "the old version until the switch")
        test.assertEqual(set(versions[switch:]), {new}, "never the old version after the switch")
        return switch


def app_process(root_pid, script):
    """The newest process below root_pid (or root_pid itself) running `script`, or None."""
    found = [p for p in [root_pid, *descendants(root_pid)] if script in argv(p)]
    return found[-1] if found else None


class TestHeldThroughCrash(MonitorCase):
    """Process runtime, idle.wake_timeout 20s, start jobs retried after 1 s."""

    @classmethod
    def set_up(cls):
        cls.d = d = cls.new_daemon(fixtures=[("echo", "frozen"), ("crashy", "crashonce"), ("crashy", "crashalways")],
                                   config={"idle": {"wake_timeout": f"{WAKE_TIMEOUT}s"},
                                           "jobs": {"backoff": "1s", "max_attempts": 5}})
        d.prepare()
        write_json(os.path.join(d.ws, "frozen", "workspace.json"), {"idle": FREEZE_FAST})
        for name in ("crashonce", "crashalways"):
            write_json(os.path.join(d.ws, name, "workspace.json"), {"idle": STOP_FAST})
        d.start()
        cls.events = cls.open_stream(d)

    def wait_stopped(self, name):
        return self.d.wait_workspace(name, lambda w: w.get("status") == "stopped" and w.get("reason") == "idle",
                                     timeout=30, what=f"{name} to be stopped by the idle policy")

    def test_frozen_app_killed_while_frozen_holds_the_request(self):
        d = self.d
        self.wait_answer(d, "/frozen/", timeout=30)
        w = d.wait_workspace("frozen", lambda w: w.get("frozen") is True and w.get("status") == "running",
                             timeout=10, what="frozen to be frozen")
        app = app_process(w["pid"], "app.py")
        self.assertIsNotNone(app, f"no app.py process below pid {w['pid']}")
        since = self.events.mark()
        os.kill(app, signal.SIGKILL)
        time.sleep(0.3)  # the kill is in; whatever the monitor saw of it, a request comes now
        t0 = time.monotonic()
        r = d.get("/frozen/after-kill", timeout=WAKE_TIMEOUT + 10)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 200, f"a request to a frozen app killed while frozen: {r.status} "
                                        f"{body_excerpt(r.body)}")
        self.assertEqual(r.json()["path"], "/after-kill")
        self.assertNotEqual(r.json()["pid"], app, "answered by the killed process")
        self.assertLess(elapsed, WAKE_TIMEOUT)
        self.assertFalse(pid_alive(app), f"the killed app {app} is still alive")
        # The request came through a crash and a restart, not past them.
        self.events.wait_for(lambda e: e.get("type") == "status" and e.get("workspace") == "frozen"
                             and e.get("status") == "failed", 5, since, "frozen to be seen crashed")
        after = d.workspace("frozen")
        self.assertGreater(after["restarts"], w["restarts"], after)
        self.assertEqual(after["status"], "running", after)

    def test_stopped_workspace_whose_first_start_crashes_is_held(self):
        d = self.d
        before = self.wait_stopped("crashonce")
        with open(os.path.join(d.ws, "crashonce", "CRASH"), "w") as f:
            f.write(f"once {os.urandom(4).hex()}\n")
        time.sleep(0.5)  # the change is noticed while it sleeps: it starts from it on the wake
        t0 = time.monotonic()
        r = d.get("/crashonce/woken", timeout=WAKE_TIMEOUT + 10)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 200, f"a wake whose first start crashed: {r.status} {body_excerpt(r.body)}")
        self.assertEqual(r.json()["path"], "/woken")
        self.assertLess(elapsed, WAKE_TIMEOUT)
        after = d.workspace("crashonce")
        self.assertEqual(after["restarts"], before["restarts"] + 1, f"one failed start, then it ran: {after}")
        with open(os.path.join(d.data, "logs", "crashonce.log"), "rb") as f:
            self.assertIn(b"crashing at start", f.read())

    def test_always_crashing_app_answers_502_with_its_reason(self):
        d = self.d
        self.wait_stopped("crashalways")
        with open(os.path.join(d.ws, "crashalways", "CRASH"), "w") as f:
            f.write("always\n")
        time.sleep(0.5)
        t0 = time.monotonic()
        r = d.get("/crashalways/", timeout=WAKE_TIMEOUT + 10)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 502, f"an app that always crashes: {r.status} {body_excerpt(r.body)}")
        self.assertLess(elapsed, WAKE_TIMEOUT / 2, f"502 after {elapsed:.1f} s (wake_timeout {WAKE_TIMEOUT} s)")
        w = d.workspace("crashalways")
        self.assertEqual(w["status"], "failed", w)
        text = html.unescape(r.text())
        self.assertIn("Workspace 'crashalways' is not running", text)
        self.assertTrue(w.get("error"), w)
        self.assertIn(w["error"][:60], text, "the 502 gives the failure")


class BurstCase(MonitorCase):
    """A node workspace in restart mode; save(n) replaces its VERSION file (the app reads it
    at start), client_loop() counts every answer."""
    runtime = None
    start_timeout = 60

    @classmethod
    def burst_daemon(cls, name, **kw):
        d = cls.new_daemon(fixtures=[("burst", name)], **kw)
        d.prepare()
        write_json(os.path.join(d.ws, name, "workspace.json"), {"reload": "restart"})
        d.start()
        d.wait_status(name, "running", timeout=cls.start_timeout)
        return d

    def run_burst(self, d, name, saves=200, seconds=10.0):
        self.wait_answer(d, f"/{name}/", b"burst 0", timeout=self.start_timeout)
        log_mark = len(d.stderr_text())
        stop = threading.Event()
        answers = {}
        errors = []
        bad = []

        def client():
            conn = None
            deadline = time.monotonic() + seconds + 90
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=WAKE_TIMEOUT + 10)
                    conn.request("GET", f"/{name}/", headers={"Accept": "text/plain"})
                    r = conn.getresponse()
                    body = r.read()
                    answers[r.status] = answers.get(r.status, 0) + 1
                    if r.status != 200 and len(bad) < 5:
                        bad.append(f"{r.status} {body_excerpt(body)}")
                    if r.getheader("Connection", "").lower() == "close":
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException) as e:
                    errors.append(repr(e))
                    if conn is not None:
                        conn.close()
                    conn = None
                    time.sleep(0.05)
            if conn is not None:
                conn.close()

        clients = [threading.Thread(target=client, daemon=True) for _ in range(2)]
        for t in clients:
            t.start()
        path = os.path.join(d.ws, name, "VERSION")
        t0 = time.monotonic()
        for i in range(1, saves + 1):
            tmp = path + ".tmp"
            with open(tmp, "w") as f:
                f.write(f"{i}\n")
            os.replace(tmp, path)
            # Evenly over `seconds`, whatever the writes cost.
            delay = t0 + i * seconds / saves - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        burst_took = time.monotonic() - t0
        # The last version answers once the changes settled and the app restarted.
        self.wait_answer(d, f"/{name}/", f"burst {saves}".encode(), timeout=self.start_timeout)
        time.sleep(3)  # nothing more comes: no restart after the last one
        stop.set()
        for t in clients:
            t.join(WAKE_TIMEOUT + 15)
        # A restart is a new app running: started after a stop, or a new version switched in
        # beside the old one (blue/green), as the daemon logs them.
        starts = app_starts(d.stderr_text()[log_mark:], name)
        total = sum(answers.values())
        switched = [s for s in starts if "new version running on" in s]
        print(f"\n[{self.runtime or 'process'}] {saves} saves in {burst_took:.1f} s: {len(starts)} restart(s) "
              f"({len(switched)} through the blue/green switch), {total} answers {answers}, "
              f"{len(errors)} client errors", flush=True)
        self.assertEqual(errors, [], "client-side errors during the burst")
        self.assertEqual(answers.get(503, 0), 0, f"503 answers during the burst: {bad}")
        self.assertEqual(set(answers), {200}, f"answers other than 200: {answers} {bad}")
        self.assertGreater(total, 50, "the client loop hardly ran")
        self.assertTrue(1 <= len(starts) <= 2, f"{len(starts)} restarts for one burst of saves: {starts}")
        self.assertEqual(d.workspace(name)["status"], "running")
        return starts


class TestRestartBurst(BurstCase):
    """Process runtime."""

    @classmethod
    def set_up(cls):
        cls.name = "burst"
        cls.d = cls.burst_daemon(cls.name)

    def test_200_saves_in_10s_give_no_503_and_one_or_two_restarts(self):
        self.run_burst(self.d, self.name)


class TestRestartBurstDocker(BurstCase):
    """Docker runtime (slow: one run). Skipped unless a Docker engine answers and has the node
    image."""
    runtime = "docker"
    start_timeout = 180

    @classmethod
    def set_up(cls):
        try:
            from test_docker_runtime import NODE_IMAGE, docker_with
        except ImportError as e:
            raise unittest.SkipTest(f"cannot load the Docker helpers: {e}")
        cls.docker = docker_with(NODE_IMAGE)
        cls.name = f"t{os.urandom(3).hex()}-burst"
        cls.class_cleanups.append(cls.remove_containers)
        cls.d = cls.burst_daemon(cls.name, runtime="docker")

    @classmethod
    def remove_containers(cls):
        cls.docker.remove_workspace(cls.name)

    def test_200_saves_in_10s_give_no_503_and_one_or_two_restarts(self):
        starts = self.run_burst(self.d, self.name)
        # Blue/green: each restart started the new container beside the old one.
        self.assertTrue(all("new version running on" in s for s in starts), starts)
        left = [c for c in self.docker.containers(self.name)
                if (c.get("Labels") or {}).get("cloudyknight.role") == "app"]
        self.assertEqual(len(left), 1, [(c["Names"], c["State"]) for c in left])


class TestUpstreamPool(MonitorCase):
    """The gateway's pooled keep-alive connections to an app are closed once the app goes away:
    an app that restarts on a new port never takes its old ones back (the soak found one socket
    left in CLOSE_WAIT per restart of an app that had served proxied requests)."""

    @classmethod
    def set_up(cls):
        cls.d = d = cls.new_daemon(fixtures=["echo"])
        d.start()
        d.wait_status("echo", "running", 60)

    def test_restarts_leave_no_socket_in_close_wait(self):
        for round_ in range(3):
            before = self.d.workspace("echo")["pid"]
            for _ in range(5):
                c = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
                c.request("GET", "/echo/x")
                self.assertEqual(c.getresponse().status, 200)
                c.close()
            with open(os.path.join(self.d.ws, "echo", "touch.txt"), "w") as f:
                f.write(str(round_))  # a change restarts the app
            self.d.wait_workspace("echo", lambda w: w.get("status") == "running" and w.get("pid") != before,
                                  timeout=30, what="echo to run again")
        deadline = time.monotonic() + 15
        left = close_wait_sockets(self.d.proc.pid)
        while left and time.monotonic() < deadline:
            time.sleep(0.5)
            left = close_wait_sockets(self.d.proc.pid)
        self.assertEqual(left, {}, "the gateway keeps connections the apps closed (inode: ports)")


class TestBlueGreen(MonitorCase):
    """Restart mode, process runtime: a change starts the new version beside the running one,
    which serves until the new one answers; then the route switches and the old one stops.
    The fixture takes 2 s to listen, so a stop-then-start restart would hold requests that
    long; blue/green answers them at once, from the old version until the switch and from the
    new one after it."""

    @classmethod
    def set_up(cls):
        cls.d = d = cls.new_daemon(fixtures=["bluegreen"])
        d.prepare()
        write_json(os.path.join(d.ws, "bluegreen", "workspace.json"), {"reload": "restart"})
        d.start()
        d.wait_status("bluegreen", "running", timeout=60)

    def save(self, text):
        path = os.path.join(self.d.ws, "bluegreen", "VERSION")
        with open(path + ".tmp", "w") as f:
            f.write(text + "\n")
        os.replace(path + ".tmp", path)

    def test_clients_see_the_old_version_until_the_new_one_answers(self):
        d = self.d
        # From a known version (the other test may have run first), then settled.
        self.save("10")
        self.wait_answer(d, "/bluegreen/", b"bluegreen 10 ", timeout=60)
        d.wait_workspace("bluegreen", lambda w: w.get("status") == "running" and not w.get("phase"),
                         timeout=30, what="bluegreen to settle")
        time.sleep(1.5)  # past the settle window: the next save restarts at once
        old_pid = d.workspace("bluegreen")["pid"]  # on the host (the body's is the sandbox's)
        log_mark = len(d.stderr_text())
        client = SteadyClient(d, "/bluegreen/").start()
        time.sleep(0.3)
        self.save("11")
        self.wait_answer(d, "/bluegreen/", b"bluegreen 11 ", timeout=60)
        time.sleep(1.0)
        seen = client.stop()
        w = d.workspace("bluegreen")
        new_pid = w["pid"]
        switch = client.check_switch(self, "10", "11")
        # The new version took 2 s to listen: the old one served meanwhile, without a wait.
        served_by_old_after_save = [x for x in seen[:switch] if x[0] > 0.3 + 1.0]
        self.assertTrue(served_by_old_after_save, f"the old version served while the new one started: {seen[:5]}")
        slowest = max(x[3] for x in seen)
        print(f"\n[blue/green] {len(seen)} requests over the change; the switch after "
              f"{seen[switch][0] - 0.3:.2f} s; the slowest answer {slowest * 1000:.0f} ms", flush=True)
        self.assertLess(slowest, 1.5, "a request waited for the restart (a held stop-then-start restart)")
        # The old app is gone, one app process runs, one app copy is left on disk.
        deadline = time.monotonic() + 15
        while pid_alive(old_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertFalse(pid_alive(old_pid), "the old version still runs after the switch")
        self.assertTrue(pid_alive(new_pid))
        self.assertNotEqual(new_pid, old_pid, w)
        self.assertEqual(w["status"], "running", w)
        run = os.path.join(d.data, "run", "bluegreen")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and len(app_copies(run)) > 1:
            time.sleep(0.1)
        self.assertEqual(len(app_copies(run)), 1, f"app copies left in {run}: {app_copies(run)}")
        starts = app_starts(d.stderr_text()[log_mark:], "bluegreen")
        self.assertEqual(len(starts), 1, starts)
        self.assertIn("new version running on", starts[0])

    def test_a_new_version_that_does_not_start_fails_as_a_restart_would(self):
        d = self.d
        self.save("2")
        self.wait_answer(d, "/bluegreen/", b"bluegreen 2", timeout=60)
        self.save("crash")
        w = d.wait_workspace("bluegreen", lambda w: w.get("status") == "failed", timeout=60,
                             what="bluegreen to fail with its broken version")
        self.assertIn("code 3", w.get("error", "") + w.get("log_tail", ""), w)
        self.save("3")
        self.wait_answer(d, "/bluegreen/", b"bluegreen 3", timeout=60)
        self.assertEqual(d.workspace("bluegreen")["status"], "running")


def app_copies(run_dir):
    """The app copies (app, app-b) in a workspace's DATA/run/<name> folder."""
    try:
        return sorted(n for n in os.listdir(run_dir) if n in ("app", "app-b"))
    except FileNotFoundError:
        return []


if __name__ == "__main__":
    unittest.main()
