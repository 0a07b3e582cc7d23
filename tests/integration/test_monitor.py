"""The monitor (issue 4) end to end, process runtime: file changes reach /monitor/ws within
a second through inotify (storage.scan_interval is 60s everywhere, so the periodic pass can
never be what found a change), a kernel queue overflow triggers a full rescan, the idle
policy freezes and stops workspaces and a request wakes them (held, a waiting page for
browsers, 503 + Retry-After after idle.wake_timeout for the others), start jobs retry with
backoff, end dead, and resume after the daemon was SIGKILLed, /monitor/ws subscribe,
heartbeat and slow-client handling, live reload, and losing state.db.

The last class runs the idle policy with the docker runtime; it is skipped unless a Docker
engine answers on /var/run/docker.sock and has the cloudyknight/python:bookworm image.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_monitor
"""

import glob
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import sys
import threading
import time
import unittest

from harness import (FIXTURES, TIME_SCALE, ClassSetUp, Daemon, EventStream, argv, body_excerpt, deep_merge, descendants,
                     free_service_port_range, pid_alive, port_listening, processes_with_arg,
                     read_response, wait_until, write_json)

# Every daemon of this file: no periodic pass within a test's lifetime (only inotify can
# explain a change being noticed), and enough start slots that workspaces never queue.
# runtime.ports is a free range below the kernel's ephemeral ports (new_daemon).
BASE_CONFIG = {"storage": {"scan_interval": "60s"}, "runtime": {"install_concurrency": 8}}

FAST_IDLE = {"idle_after": "1s", "background_after": "2s", "stop_after": "4s", "grace": "1s"}
MAX_QUEUED = "/proc/sys/fs/inotify/max_queued_events"


# ----------------------------------------------------------------------------- helpers


def is_status(name, *statuses):
    return lambda e: (e.get("type") == "status" and e.get("workspace") == name
                      and (not statuses or e.get("status") in statuses))


def is_type(kind, name):
    return lambda e: e.get("type") == kind and e.get("workspace") == name


def append(path, text):
    with open(path, "a") as f:
        f.write(text)


def freezer_state(name, root_pid):
    """freezer.state of a workspace's v1 freezer cgroup, found through the cgroup of one of
    its processes at or below root_pid (a daemon or an app; .../cloudyknight/<instance>/<name>), or None when its
    processes are in no such group."""
    for pid in [root_pid, *descendants(root_pid)]:
        try:
            with open(f"/proc/{pid}/cgroup") as f:
                lines = f.read().splitlines()
        except OSError:
            continue
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if "freezer" in controllers.split(",") and path.endswith("/" + name) and "/cloudyknight/" in path:
                try:
                    with open(os.path.join("/sys/fs/cgroup/freezer", path.lstrip("/"), "freezer.state")) as f:
                        return f.read().strip()
                except OSError:
                    return None
    return None


def api_soon(d, name, predicate, what):
    """W once predicate(W) holds, within 1 s of the event that announced it. Monitor::publish()
    swaps in the snapshot the API reads before it sends the events, so this normally holds at
    the first read; the bound only absorbs a later change racing the read."""
    return d.wait_workspace(name, predicate, timeout=1.0, what=what)


def proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data[data.rfind(")") + 2:].split()[0]


def app_pids(d, script="app.py"):
    """Processes running `script` (as a whole argument) from this daemon's data folder."""
    return processes_with_arg(script, cwd_under=d.data)


# ------------------------------------------------------------------------------- base


class MonitorCase(ClassSetUp):
    """Daemons (and /monitor/ws streams) shared per class. Subclasses implement set_up().
    tearDownClass closes the streams, stops every daemon that was not killed on purpose
    (SIGTERM: exit code 0 and no workspace process left) and removes the temporary
    folders; a failing test prints every daemon's diagnostics."""

    @classmethod
    def init_class_state(cls):
        cls.daemons, cls.streams, cls.class_cleanups = [], [], []

    @classmethod
    def new_daemon(cls, config=None, **kw):
        if kw.get("reuse") is None:
            lo, hi = free_service_port_range()
            kw["config"] = deep_merge(deep_merge(BASE_CONFIG, {"runtime": {"ports": f"{lo}-{hi}"}}), config or {})
        d = Daemon(**kw)
        cls.daemons.append(d)
        return d

    @classmethod
    def open_stream(cls, d):
        s = EventStream(d.port)
        cls.streams.append(s)
        return s

    @classmethod
    def tearDownClass(cls):
        problems = []
        for s in getattr(cls, "streams", []):
            s.close()
        for d in getattr(cls, "daemons", []):
            if d.stopped is not None or d.proc is None:  # stopped or killed by the test, or never started
                continue
            res = d.stop()
            if res.returncode != 0 or res.leftovers:
                problems.append(f"daemon on port {d.port}: exit code {res.returncode} (None = did not "
                                f"exit within 20 s), leftovers {res.leftovers}\n{d.diagnostics()}")
        for fn in reversed(getattr(cls, "class_cleanups", [])):
            try:
                fn()
            except Exception as e:  # keep cleaning up
                problems.append(f"cleanup {fn}: {e!r}")
        for d in getattr(cls, "daemons", []):
            d.cleanup()
        if problems:
            raise AssertionError(f"{cls.__name__}: " + "\n".join(problems))

    # -- shortcuts -------------------------------------------------------------------
    def wait_answer(self, d, path, marker=None, timeout=30, headers=None):
        """GETs `path` until it answers 200 (with `marker` in the body); returns it."""
        last = []

        def answered():
            try:
                r = d.get(path, headers=headers, timeout=10)
            except (OSError, http.client.HTTPException) as e:
                last[:] = [repr(e)]
                return None
            last[:] = [f"{r.status} {body_excerpt(r.body)}"]
            return r if r.status == 200 and (marker is None or marker in r.body) else None
        try:
            return wait_until(answered, timeout, f"GET {path} to answer 200", interval=0.2)
        except AssertionError as e:
            raise AssertionError(f"{e}; last answer: {last[:1]}") from None

    def assertWithin(self, t_event, t_op, bound, what):
        bound *= TIME_SCALE
        delay = t_event - t_op
        self.assertLess(delay, bound, f"{what} arrived {delay:.3f} s after the file operation "
                                      f"(must be < {bound} s)")
        return delay


# ---------------------------------------------------------------- 1. transitions < 1 s


class TestTransitions(MonitorCase):
    """With storage.scan_interval 60s, every change below is noticed by inotify: its event
    reaches /monitor/ws less than a second after the file operation."""

    @classmethod
    def set_up(cls):
        cls.d = d = cls.new_daemon(fixtures=["echo", ("www", "site"), ("www", "doomed")])
        d.prepare()
        os.makedirs(os.path.join(d.ws, "site", "css"))
        with open(os.path.join(d.ws, "site", "css", "theme.css"), "w") as f:
            f.write("/* theme */\n")
        d.start()
        d.wait_status("echo", "running", timeout=30)
        cls.events = cls.open_stream(d)

    def test_hello_lists_the_workspaces(self):
        hello = self.events.hello
        by_name = {w["name"]: w for w in hello["workspaces"]}
        self.assertLessEqual({"echo", "site", "doomed"}, set(by_name), hello)
        for w in by_name.values():
            self.assertEqual(set(w), {"name", "type", "status", "frozen", "activity"}, w)
        self.assertEqual(by_name["site"]["type"], "static")
        self.assertEqual(by_name["site"]["status"], "running")
        self.assertEqual(by_name["echo"]["type"], "python")
        self.assertIs(by_name["echo"]["frozen"], False)

    def test_static_folder_moved_in_runs_within_1s(self):
        stage = os.path.join(self.d.tmp, "stage-moved")
        os.makedirs(stage)
        with open(os.path.join(stage, "index.html"), "w") as f:
            f.write("<html><body>MOVED-IN-MARKER</body></html>")
        since = self.events.mark()
        t_op = time.monotonic()
        os.rename(stage, os.path.join(self.d.ws, "moved-in"))
        t, e = self.events.wait_for(is_status("moved-in", "running"), 5, since,
                                    "status running for moved-in")
        self.assertWithin(t, t_op, 1.0, "status running of a folder renamed into the root")
        self.assertIs(e["frozen"], False)
        self.assertIn("time", e)
        w = api_soon(self.d, "moved-in", lambda w: w.get("status") == "running", "moved-in running in the API")
        self.assertEqual(w["type"], "static", w)
        self.assertIn(b"MOVED-IN-MARKER", self.d.get("/moved-in/").body)

    def test_static_folder_made_in_place_runs_within_1s(self):
        folder = os.path.join(self.d.ws, "made-here")
        since = self.events.mark()
        t_op = time.monotonic()
        os.mkdir(folder)
        with open(os.path.join(folder, "index.html"), "w") as f:
            f.write("<html><body>MADE-HERE-MARKER</body></html>")
        t, _ = self.events.wait_for(is_status("made-here", "running"), 5, since,
                                    "status running for made-here")
        self.assertWithin(t, t_op, 1.0, "status running of a folder made with mkdir + write")
        self.assertIn(b"MADE-HERE-MARKER", self.wait_answer(self.d, "/made-here/", timeout=5).body)

    def test_python_workspace_created_and_started(self):
        since = self.events.mark()
        t_op = time.monotonic()
        shutil.copytree(os.path.join(FIXTURES, "echo"), os.path.join(self.d.ws, "echo2"))
        t, e = self.events.wait_for(is_status("echo2"), 5, since, "the first status event of echo2")
        self.assertIn(e["status"], ("creating", "initializing"), e)
        self.assertWithin(t, t_op, 1.0, "the first status event of a new python workspace")
        self.events.wait_for(is_status("echo2", "running"), 15, since, "echo2 to be running")
        r = self.wait_answer(self.d, "/echo2/hello", timeout=5)
        self.assertEqual(r.json()["path"], "/hello")

    def test_edited_app_restarts(self):
        before = self.d.wait_status("echo", "running", timeout=30)
        since = self.events.mark()
        t_op = time.monotonic()
        append(os.path.join(self.d.ws, "echo", "app.py"), "\n# edited by test_monitor\n")
        # The process runtime restarts blue/green: the new version starts beside the running
        # one (status stays running, the phase says so), then takes over.
        t, e = self.events.wait_for(
            lambda e: is_status("echo")(e) and e.get("previous") == "running"
            and (e.get("status") in ("stopping", "creating", "initializing")
                 or e.get("phase", "").startswith("new version")), 5, since,
            "a status event of echo restarting")
        self.assertWithin(t, t_op, 1.0, "echo restarting after app.py changed")
        t_files, files = self.events.wait_for(is_type("files", "echo"), 5, since, "a files event of echo")
        self.assertIn("app.py", files["paths"], files)
        self.assertIs(files["all"], False, files)
        self.assertWithin(t_files, t_op, 1.0, "the files event of echo")
        after = self.d.wait_workspace(
            "echo", lambda w: w.get("status") == "running" and w.get("pid") not in (None, before["pid"]),
            timeout=15, what="echo to run its new version")
        self.assertNotEqual(after["pid"], before["pid"], "the app was not restarted")
        self.assertEqual(self.wait_answer(self.d, "/echo/again", timeout=5).json()["path"], "/again")

    def test_edited_static_page_reloads_within_1s(self):
        since = self.events.mark()
        t_op = time.monotonic()
        append(os.path.join(self.d.ws, "site", "index.html"), "<!-- edited -->\n")
        t, e = self.events.wait_for(is_type("reload", "site"), 5, since, "a reload event of site")
        self.assertWithin(t, t_op, 1.0, "the reload event of an edited static page")
        self.assertIn("index.html", e["paths"], e)
        _, files = self.events.wait_for(is_type("files", "site"), 5, since, "a files event of site")
        self.assertIn("index.html", files["paths"], files)
        w = self.d.workspace("site")
        self.assertEqual(w["status"], "running", "a static workspace is never restarted")

    def test_nested_file_change_names_its_relative_path(self):
        since = self.events.mark()
        t_op = time.monotonic()
        append(os.path.join(self.d.ws, "site", "css", "theme.css"), "body { color: red; }\n")
        t, e = self.events.wait_for(is_type("files", "site"), 5, since, "a files event of site")
        self.assertWithin(t, t_op, 1.0, "the files event of a nested file")
        self.assertEqual(e["paths"], ["css/theme.css"], e)
        _, reload = self.events.wait_for(is_type("reload", "site"), 5, since, "a reload event of site")
        self.assertEqual(reload["paths"], ["css/theme.css"], reload)

    def test_deleted_folder_is_removed_within_1s(self):
        self.d.wait_status("doomed", "running", timeout=10)
        since = self.events.mark()
        t_op = time.monotonic()
        shutil.rmtree(os.path.join(self.d.ws, "doomed"))
        t, e = self.events.wait_for(is_status("doomed", "removed"), 5, since, "status removed of doomed")
        self.assertWithin(t, t_op, 1.0, "status removed of a deleted folder")
        self.assertEqual(e["previous"], "running", e)
        wait_until(lambda: self.d.workspace("doomed") is None, 1.0, "GET /monitor/api/v1/workspaces/doomed to 404")
        status, doc = self.d.api("/workspaces/doomed")
        self.assertEqual(status, 404, doc)
        self.assertIn("error", doc or {})
        self.assertEqual(self.d.get("/doomed/").status, 404)


# ------------------------------------------------------------------- 2. queue overflow


class TestQueueOverflow(MonitorCase):
    """fs.inotify.max_queued_events is 16 when the daemon creates its inotify instance (the
    kernel reads it then; it is restored at once). 40 new workspace folders, each with an
    index.html and several files, overflow that queue: the daemon says events were lost and
    its full pass finds all of them (scan_interval is 60s, so it was the rescan)."""

    COUNT = 40

    @classmethod
    def set_up(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root to lower fs.inotify.max_queued_events")
        if not os.access(MAX_QUEUED, os.W_OK):
            raise unittest.SkipTest(f"{MAX_QUEUED} is not writable here")
        with open(MAX_QUEUED) as f:
            cls.old_max = f.read().strip()
        cls.class_cleanups.append(cls.restore_max)
        cls.d = d = cls.new_daemon()
        d.prepare()
        try:
            with open(MAX_QUEUED, "w") as f:
                f.write("16")
            d.start()
        finally:
            cls.restore_max()

    @classmethod
    def restore_max(cls):
        with open(MAX_QUEUED) as f:
            if f.read().strip() == cls.old_max:
                return
        with open(MAX_QUEUED, "w") as f:
            f.write(cls.old_max)

    def tearDown(self):
        self.restore_max()

    def test_overflow_triggers_a_full_rescan(self):
        with open(MAX_QUEUED) as f:
            self.assertEqual(f.read().strip(), self.old_max, "max_queued_events was not restored")
        names = [f"burst{i:02d}" for i in range(self.COUNT)]
        # The daemon is paused (SIGSTOP) while the folders are made, so nothing drains the
        # 16-event queue: it overflows every time, however fast the daemon would have read.
        os.kill(self.d.proc.pid, signal.SIGSTOP)
        try:
            for name in names:
                folder = os.path.join(self.d.ws, name)
                os.mkdir(folder)
                with open(os.path.join(folder, "index.html"), "w") as f:
                    f.write(f"<html><body>{name.upper()}-MARKER</body></html>")
                for j in range(4):
                    with open(os.path.join(folder, f"file{j}.txt"), "w") as f:
                        f.write(f"{name} {j}\n")
        finally:
            os.kill(self.d.proc.pid, signal.SIGCONT)
        t0 = time.monotonic()
        line = "file-change events were lost (the kernel queue overflowed); rescanning everything"
        wait_until(lambda: line in self.d.stderr_text(), 5, f"the log line {line!r}")
        self.assertRegex(self.d.stderr_text(), r"the inotify event queue overflowed")

        def listed():
            found = {w["name"] for w in self.d.workspaces()}
            return found if set(names) <= found else None
        wait_until(listed, 5, f"all {self.COUNT} new folders in /monitor/api/v1/workspaces")
        self.assertLess(time.monotonic() - t0, 10)
        for name in (names[0], names[17], names[-1]):
            r = self.d.get(f"/{name}/")
            self.assertEqual(r.status, 200, f"/{name}/: {r.status} {body_excerpt(r.body)}")
            self.assertIn(f"{name.upper()}-MARKER".encode(), r.body)
        statuses = {w["name"]: w["status"] for w in self.d.workspaces()}
        self.assertEqual({statuses[n] for n in names}, {"running"}, statuses)


# --------------------------------------------------------------------- 3. idle policy


class TestIdlePolicy(MonitorCase):
    """workspace.json idle override (idle 1s, background 2s, stop 4s): without requests a
    workspace goes idle, is frozen (status stays running), then stopped (reason idle); a
    request wakes it and is answered 200, never 404 or 502."""

    @classmethod
    def set_up(cls):
        cls.d = d = cls.new_daemon(fixtures=[("echo", "sleepy"), ("echo", "frosty"), ("echo", "thawburst"),
                                                  ("echo", "inflight")])
        d.prepare()
        for name in ("sleepy", "frosty", "thawburst", "inflight"):
            write_json(os.path.join(d.ws, name, "workspace.json"), {"idle": FAST_IDLE})
        d.start()
        cls.events = cls.open_stream(d)

    def assertFrozenProcess(self, name, pid):
        state = freezer_state(name, pid)
        if state is not None:
            self.assertEqual(state, "FROZEN", f"freezer.state of {name}")
            return
        app = [p for p in descendants(pid) if "app.py" in argv(p)]
        self.assertTrue(app, f"no app.py process below pid {pid}")
        self.assertEqual(proc_state(app[-1]), "T", "without a freezer cgroup the app is SIGSTOPped")

    def test_idle_background_stopped_then_woken_by_a_request(self):
        self.wait_answer(self.d, "/sleepy/", timeout=30)  # whatever it was doing: active now
        since = self.events.mark()
        running = self.d.wait_status("sleepy", "running", timeout=5)
        port = running["port"]
        t_idle, _ = self.events.wait_for(lambda e: is_type("activity", "sleepy")(e) and e["level"] == "idle",
                                         5, since, "activity idle of sleepy")
        t_bg, _ = self.events.wait_for(lambda e: is_type("activity", "sleepy")(e) and e["level"] == "background",
                                       5, since, "activity background of sleepy")
        _, frozen = self.events.wait_for(lambda e: is_status("sleepy")(e) and e.get("frozen") is True,
                                         5, since, "a status event of sleepy with frozen: true")
        self.assertEqual(frozen["status"], "running", "a frozen workspace stays running")
        w = api_soon(self.d, "sleepy", lambda w: w.get("frozen") is True or w.get("status") != "running",
                     "the API to show sleepy frozen")
        if w.get("status") == "running":  # still in the frozen window (2 s wide)
            self.assertIs(w.get("frozen"), True, w)
            self.assertEqual(w.get("activity"), "background", w)
            self.assertFrozenProcess("sleepy", w["pid"])
        t_stop, stopped = self.events.wait_for(is_status("sleepy", "stopped"), 8, since,
                                               "status stopped of sleepy")
        self.assertEqual(stopped.get("reason"), "idle", stopped)
        self.assertLess(t_idle, t_bg)
        self.assertLess(t_bg, t_stop)
        self.assertGreater(t_stop - t_idle, 2.0, "stopped 4 s after the last request, idle after 1 s")
        w = api_soon(self.d, "sleepy", lambda w: w.get("status") == "stopped", "the API to show sleepy stopped")
        self.assertEqual(w.get("reason"), "idle", w)
        self.assertEqual(w.get("activity"), "stopped", w)
        self.assertFalse(w.get("port"), f"a stopped workspace keeps no port: {w}")
        self.assertFalse(port_listening(port), f"port {port} is still open after the idle stop")
        status, st = self.d.api("/workspaces/sleepy/status")
        self.assertEqual((status, st["status"], st["reason"], st["frozen"]), (200, "stopped", "idle", False), st)
        # The next request wakes it and is answered by the app.
        r = self.d.get("/sleepy/after-sleep", timeout=30)
        self.assertEqual(r.status, 200, f"a request to a sleeping workspace: {r.status} {body_excerpt(r.body)}")
        self.assertEqual(r.json()["path"], "/after-sleep")
        w = self.d.workspace("sleepy")
        self.assertEqual(w["status"], "running", w)
        self.assertFalse(w.get("frozen"), w)
        self.events.wait_for(lambda e: is_status("sleepy", "running")(e) and e.get("previous") != "running",
                             5, since, "status running of sleepy after the wake")
        _, hist = self.d.api("/workspaces/sleepy/history")
        statuses = [h["status"] for h in hist["history"]]
        self.assertEqual(statuses[0], "running", hist)
        self.assertIn("stopped", statuses, hist)
        stop = next(h for h in hist["history"] if h["status"] == "stopped")
        self.assertEqual(stop["reason"], "idle", hist)

    def test_frozen_workspace_answers_at_once(self):
        self.wait_answer(self.d, "/frosty/", timeout=30)
        w = self.d.wait_workspace("frosty", lambda w: w.get("frozen") is True, timeout=6,
                                  what="frosty to be frozen")
        self.assertEqual(w["status"], "running", w)
        self.assertFrozenProcess("frosty", w["pid"])
        t0 = time.monotonic()
        r = self.d.get("/frosty/thawed", timeout=10)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 200, f"{r.status} {body_excerpt(r.body)}")
        self.assertEqual(r.json()["path"], "/thawed")
        self.assertLess(elapsed, 1.0, f"a frozen workspace took {elapsed:.2f} s to answer")
        w = self.d.workspace("frosty")
        self.assertFalse(w.get("frozen"), w)
        self.assertEqual(w["status"], "running", w)
        _, st = self.d.api("/workspaces/frosty/status")
        self.assertIs(st["frozen"], False, st)
        state = freezer_state("frosty", self.d.proc.pid)
        if state is not None:
            self.assertEqual(state, "THAWED")

    def test_a_burst_of_requests_resumes_it_once(self):
        """Requests arriving together at a frozen workspace thaw it once: one resume, one log
        line, not one per request (a burst of requests used to thaw it, log "resumed" and publish an event once per request)."""
        self.wait_answer(self.d, "/thawburst/", timeout=30)
        w = self.d.wait_workspace("thawburst", lambda w: w.get("frozen") is True, timeout=6,
                                  what="thawburst to be frozen")
        self.assertFrozenProcess("thawburst", w["pid"])
        before = len(self.d.stderr_text())
        # 128 requests written back to back on connections opened beforehand, so they reach
        # the gateway within a millisecond or two, as a browser's or a load balancer's would.
        socks = [self.d.connect(timeout=10) for _ in range(128)]
        try:
            for i, sk in enumerate(socks):
                sk.sendall(f"GET /thawburst/burst-{i} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            results = [read_response(sk, "GET").status for sk in socks]
        finally:
            for sk in socks:
                sk.close()
        self.assertEqual(results, [200] * len(socks), "every request of the burst is answered by the app")
        log = self.d.stderr_text()[before:]
        self.assertEqual(log.count("[ws=thawburst] resumed"), 1,
                         f"one resume for the whole burst; the daemon logged:\n{log[-3000:]}")

    def test_a_request_in_flight_keeps_it_awake(self):
        """An app answering a request is neither frozen nor stopped, however long it takes (a
        download, a slow report): a 6 s answer under a policy that freezes after 2 s of quiet
        and stops after 4 s arrives whole, and nothing was frozen or stopped meanwhile."""
        self.wait_answer(self.d, "/inflight/", timeout=30)
        before = len(self.d.stderr_text())
        t0 = time.monotonic()
        r = self.d.get("/inflight/pause?s=6", timeout=30)
        elapsed = time.monotonic() - t0
        log = self.d.stderr_text()[before:]
        self.assertEqual(r.status, 200, f"{r.status} {body_excerpt(r.body)}\n{log[-3000:]}")
        self.assertEqual(r.json()["path"], "/pause?s=6")
        self.assertGreater(elapsed, 5.5)
        self.assertLess(elapsed, 9.0, "a frozen app would have answered late or not at all")
        for word in ("[ws=inflight] frozen", "[ws=inflight] no activity for"):
            self.assertNotIn(word, log, f"the idle policy acted under a request in flight:\n{log[-3000:]}")
        # Its end counts as activity: the timeline starts again from there.
        w = self.d.workspace("inflight")
        self.assertEqual((w["status"], w["activity"]), ("running", "active"), w)
        self.assertFalse(w.get("frozen"), w)


# ----------------------------------------------------- 4. waiting page and wake timeout


class TestWakeWaits(MonitorCase):
    """slowstart takes 4 s to listen and sleeps 2 s after its last request. Once asleep, a
    browser gets the self-refreshing waiting page after ~1.5 s (idle.wake_timeout 60s), an API
    client 503 + Retry-After after idle.wake_timeout (1s); polling then reaches the app."""

    @classmethod
    def set_up(cls):
        cls.browser_d = cls.new_daemon(fixtures=["slowstart"])
        cls.api_d = cls.new_daemon(fixtures=["slowstart"], config={"idle": {"wake_timeout": "1s"}})
        cls.browser_d.start()
        cls.api_d.start()

    def wait_asleep(self, d):
        return d.wait_workspace("slowstart", lambda w: w.get("status") == "stopped" and w.get("reason") == "idle",
                                timeout=30, what="slowstart to be stopped by the idle policy")

    def poll_until_ok(self, d, headers, timeout=25):
        seen = []

        def ok():
            r = d.get("/slowstart/", headers=headers, timeout=15)
            seen.append(r.status)
            return r if r.status == 200 else None
        r = wait_until(ok, timeout, "slowstart to answer 200", interval=0.25)
        self.assertLessEqual(set(seen), {503, 200}, f"statuses while it started: {seen}")
        return r

    def test_browser_gets_the_waiting_page(self):
        d = self.browser_d
        self.wait_asleep(d)
        headers = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
        t0 = time.monotonic()
        r = d.get("/slowstart/", headers=headers, timeout=10)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 503, f"{r.status} {body_excerpt(r.body)}")
        self.assertTrue(1.2 <= elapsed <= 2.5, f"the waiting page came after {elapsed:.2f} s, not ~1.5 s")
        self.assertIn("text/html", r.header("Content-Type", ""))
        self.assertRegex(r.text(), r'<meta http-equiv="refresh"')
        self.assertRegex(r.header("Retry-After", ""), r"^\d+$")
        r = self.poll_until_ok(d, headers)
        self.assertEqual(r.body, b"slow ok")

    def test_api_client_gets_503_after_the_wake_timeout(self):
        d = self.api_d
        self.wait_asleep(d)
        t0 = time.monotonic()
        r = d.get("/slowstart/", headers={"Accept": "application/json"}, timeout=10)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 503, f"{r.status} {body_excerpt(r.body)}")
        self.assertTrue(0.9 <= elapsed <= 2.0, f"503 after {elapsed:.2f} s, not ~1 s (idle.wake_timeout)")
        self.assertRegex(r.header("Retry-After", ""), r"^\d+$")
        r = self.poll_until_ok(d, {"Accept": "application/json"})
        self.assertEqual(r.body, b"slow ok")
        self.assertEqual(d.workspace("slowstart")["status"], "running")


# ----------------------------------------------------------------- 5. retries, backoff


class FlakyServer:
    """127.0.0.1 HTTP server: 500 to the first `failures` GETs, 200 afterwards."""

    def __init__(self, failures=2):
        self.failures = failures
        self.count = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                with outer.lock:
                    outer.count += 1
                    n = outer.count
                status = 500 if n <= outer.failures else 200
                body = f"request {n}\n".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class TestJobRetries(MonitorCase):
    """The install step of `flaky` fails twice (its server answers 500), then succeeds: one
    start job, done after 3 attempts with jobs.backoff 200ms doubling in between."""

    @classmethod
    def set_up(cls):
        cls.server = FlakyServer(failures=2)
        cls.class_cleanups.append(cls.server.close)
        cls.d = cls.new_daemon(config={"jobs": {"backoff": "200ms"}})
        cls.d.start()
        cls.events = cls.open_stream(cls.d)

    def test_failing_install_is_retried_until_it_succeeds(self):
        d = self.d
        stage = os.path.join(d.tmp, "stage-flaky")
        shutil.copytree(os.path.join(FIXTURES, "echo"), stage)
        install = ("python3 -c \"import urllib.request; "
                   f"urllib.request.urlopen('http://127.0.0.1:{self.server.port}/')\"")
        write_json(os.path.join(stage, "workspace.json"), {"install": install})
        since = self.events.mark()
        os.rename(stage, os.path.join(d.ws, "flaky"))
        d.wait_status("flaky", "running", timeout=30)
        self.assertEqual(self.wait_answer(d, "/flaky/ok", timeout=5).json()["path"], "/ok")
        self.assertEqual(self.server.count, 3, "the install ran 3 times (500, 500, 200)")

        status, doc = d.api("/jobs?workspace=flaky")
        self.assertEqual(status, 200, doc)
        starts = [j for j in doc["jobs"] if j["kind"] == "start"]
        self.assertEqual(len(starts), 1, f"one start job for flaky: {doc}")
        job = starts[0]
        self.assertEqual((job["state"], job["attempts"], job["workspace"]), ("done", 3, "flaky"), job)
        self.assertEqual(job["max_attempts"], 5, job)
        self.assertIn("created_ms", job)
        self.assertIn("updated_ms", job)
        self.assertIsInstance(job["payload"], dict, job)
        status, one = d.api(f"/jobs/{job['id']}")
        self.assertEqual(status, 200, one)
        self.assertEqual((one["id"], one["state"], one["attempts"]), (job["id"], "done", 3), one)

        self.events.wait_for(lambda e: is_type("job", "flaky")(e) and e["state"] == "done", 5, since,
                             "job done for flaky")
        jobs = [(t, e) for t, e in self.events.select(is_type("job", "flaky"), since)]
        summary = [(e["state"], e["attempts"]) for _, e in jobs]
        self.assertTrue(all(e["id"] == job["id"] and e["kind"] == "start" for _, e in jobs), jobs)
        queued = [(t, e) for t, e in jobs if e["state"] == "queued"]
        self.assertEqual([e["attempts"] for _, e in queued], [1, 2], f"job events: {summary}")
        for _, e in queued:
            self.assertIn("installing dependencies failed", e.get("error", ""), e)
            self.assertIsInstance(e.get("next_run_ms"), int, e)
            self.assertEqual(e["max_attempts"], 5, e)
        self.assertEqual(summary[-1], ("done", 3), f"job events: {summary}")
        self.assertNotIn("dead", [s for s, _ in summary])
        self.assertEqual([a for s, a in summary if s == "running"], [1, 2, 3], f"job events: {summary}")
        # Exponential backoff: 200 ms, then 400 ms before the third attempt.
        t_fail1 = queued[0][0]
        t_run3 = next(t for t, e in jobs if e["state"] == "running" and e["attempts"] == 3)
        self.assertGreater(t_run3 - t_fail1, 0.55, f"backoff 200ms + 400ms between attempts 1 and 3: {summary}")
        _, st = d.api("/status")
        self.assertGreaterEqual(st["jobs"]["done"], 1, st)

    def test_jobs_api_rejects_bad_queries(self):
        for path in ("/jobs/abc", "/jobs/0", "/jobs/-1", "/jobs?state=finished", "/jobs?limit=0",
                     "/jobs?before=x"):
            with self.subTest(path=path):
                status, doc = self.d.api(path)
                self.assertEqual(status, 400, doc)
                self.assertIsInstance((doc or {}).get("error"), dict, doc)
        status, doc = self.d.api("/jobs/999999")
        self.assertEqual(status, 404, doc)
        status, doc = self.d.api("/jobs?state=done&limit=1")
        self.assertEqual(status, 200, doc)
        self.assertLessEqual(len(doc["jobs"]), 1)
        self.assertIn("next", doc)


# -------------------------------------------------------------------- 6. dead letter


class TestDeadJob(MonitorCase):
    """install `exit 3` with jobs.max_attempts 2: the start job ends dead, the workspace is
    failed ("gave up after 2 attempts") and answers 502; fixing workspace.json starts it."""

    @classmethod
    def set_up(cls):
        cls.d = d = cls.new_daemon(fixtures=[("echo", "flaky2")],
                                   config={"jobs": {"max_attempts": 2, "backoff": "100ms"}})
        d.prepare()
        write_json(os.path.join(d.ws, "flaky2", "workspace.json"), {"install": "exit 3"})
        d.start()

    def test_dead_job_then_fixed(self):
        d = self.d
        w = d.wait_workspace("flaky2", lambda w: w.get("status") == "failed"
                             and "gave up" in (w.get("reason") or ""), timeout=20,
                             what="flaky2 to give up")
        self.assertIn("gave up after 2 attempts", w["reason"])
        self.assertIn("exit 3", w.get("error", ""), w)
        status, doc = d.api("/jobs?state=dead")
        self.assertEqual(status, 200, doc)
        dead = [j for j in doc["jobs"] if j["workspace"] == "flaky2" and j["kind"] == "start"]
        self.assertEqual(len(dead), 1, doc)
        self.assertEqual((dead[0]["state"], dead[0]["attempts"], dead[0]["max_attempts"]), ("dead", 2, 2), dead)
        self.assertIn("exited with code 3", dead[0].get("error", ""), dead)
        _, st = d.api("/workspaces/flaky2/status")
        self.assertEqual(st["status"], "failed", st)
        self.assertIn("gave up after 2 attempts", st["reason"])
        self.assertEqual(st["restarts"], 2, st)
        r = d.get("/flaky2/")
        self.assertEqual(r.status, 502, f"a failed (not sleeping) workspace: {r.status} {body_excerpt(r.body)}")
        time.sleep(0.5)  # a dead job stays dead: no third attempt
        _, again = d.api(f"/jobs/{dead[0]['id']}")
        self.assertEqual((again["state"], again["attempts"]), ("dead", 2), again)
        # The fix: no install step any more.
        write_json(os.path.join(d.ws, "flaky2", "workspace.json"), {})
        d.wait_status("flaky2", "running", timeout=20)
        self.assertEqual(self.wait_answer(d, "/flaky2/fixed", timeout=5).json()["path"], "/fixed")
        _, doc = d.api("/jobs?workspace=flaky2")
        starts = sorted((j for j in doc["jobs"] if j["kind"] == "start"), key=lambda j: j["id"])
        self.assertEqual(starts[0]["id"], dead[0]["id"])
        self.assertEqual(starts[0]["state"], "dead", starts)
        self.assertGreater(starts[-1]["id"], dead[0]["id"], starts)
        self.assertEqual(starts[-1]["state"], "done", starts)
        # The fixed workspace starts at its first attempt: nothing failed.
        self.assertEqual((starts[-1]["attempts"], starts[-1].get("error", "")), (1, ""),
                         f"the start job after the fix lost an attempt: {starts[-1]}")


# ----------------------------------------------------------- 7. SIGKILL mid-install


class TestResumeAfterKill(MonitorCase):
    """The daemon is SIGKILLed while the start job of `slowinstall` (install `sleep 4`) runs;
    the next daemon resumes the same job (attempt 2) and exactly one app runs."""

    @classmethod
    def set_up(cls):
        cls.d1 = d = cls.new_daemon(fixtures=[("echo", "slowinstall")])
        d.prepare()
        write_json(os.path.join(d.ws, "slowinstall", "workspace.json"), {"install": "sleep 4"})
        d.start()

    def test_killed_daemon_resumes_the_start_job(self):
        d1 = self.d1

        def running_job():
            _, doc = d1.api("/jobs?workspace=slowinstall")
            jobs = [j for j in (doc or {}).get("jobs", []) if j["kind"] == "start" and j["state"] == "running"]
            return jobs[0] if jobs else None
        job = wait_until(running_job, 10, "the start job of slowinstall to run")
        self.assertEqual(job["attempts"], 1, job)
        wait_until(lambda: any(argv(p)[:2] == ["sleep", "4"] for p in descendants(d1.proc.pid)),
                   5, "the install step (sleep 4) to run")
        tree = [p for p in descendants(d1.proc.pid) if p != d1.proc.pid]
        self.assertTrue(tree, "the install runs below the daemon")
        self.assertEqual(d1.kill().returncode, -signal.SIGKILL)
        wait_until(lambda: not [p for p in tree if pid_alive(p)], 10,
                   f"the killed daemon's processes {tree} to be gone")

        d2 = self.new_daemon(reuse=d1)
        d2.start()
        wait_until(lambda: f"resuming job #{job['id']}" in d2.stderr_text(), 5,
                   f"'resuming job #{job['id']}' in the new daemon's log")
        d2.wait_status("slowinstall", "running", timeout=30)
        self.assertEqual(self.wait_answer(d2, "/slowinstall/resumed", timeout=5).json()["path"], "/resumed")
        _, doc = d2.api("/jobs?workspace=slowinstall")
        starts = [j for j in doc["jobs"] if j["kind"] == "start"]
        self.assertEqual(len(starts), 1, f"exactly one start job: {doc}")
        self.assertEqual((starts[0]["id"], starts[0]["state"], starts[0]["attempts"]),
                         (job["id"], "done", 2), starts[0])
        apps = app_pids(d2)
        self.assertEqual(len(apps), 1, f"app.py processes from {d2.data}: {apps}")
        self.assertIn(apps[0], descendants(d2.proc.pid), "the app belongs to the new daemon")
        self.assertEqual([p for p in tree if pid_alive(p)], [], "processes of the killed daemon")


# ------------------------------------------------------------------ 8. /monitor/ws


def raw_slow_websocket(port, path="/monitor/ws"):
    """A WebSocket that is never read: a tiny receive buffer, and a small MSS so the daemon's
    side does not autotune its send buffer to megabytes (loopback's 64 KiB MSS would), both
    set before connect. Returns the socket once the handshake was answered."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    s.settimeout(10)
    s.connect(("127.0.0.1", port))
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    for _ in range(10_000):
        if b"\r\n\r\n" in head:
            break
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        s.close()
        raise AssertionError(f"no WebSocket handshake: {head[:300]!r}")
    return s


class TestEventSocket(MonitorCase):
    """/monitor/ws: subscribe narrows the stream, heartbeats keep a workspace active, a plain
    GET gets 426, and a client that falls more than gateway.event_buffer behind is dropped
    while the others keep receiving."""

    @classmethod
    def set_up(cls):
        cls.d = d = cls.new_daemon(
            fixtures=[("www", "alpha"), ("www", "beta"), ("echo", "beat"), "chatty"],
            config={"gateway": {"event_buffer": "16k"}})
        d.prepare()
        write_json(os.path.join(d.ws, "beat", "workspace.json"),
                   {"idle": {"idle_after": "1s", "background_after": "2s", "stop_after": "60s", "grace": "500ms"}})
        d.start()
        d.wait_status("chatty", "running", timeout=30)

    def test_plain_get_is_426(self):
        r = self.d.get("/monitor/ws")
        self.assertEqual(r.status, 426, f"{r.status} {body_excerpt(r.body)}")
        self.assertIn("application/json", r.header("Content-Type", ""))
        self.assertIn("message", r.json()["error"])
        self.assertEqual(r.header("Upgrade", "").lower(), "websocket")

    def test_subscribe_narrows_the_stream(self):
        only_alpha = self.open_stream(self.d)
        everything = self.open_stream(self.d)
        only_alpha.send({"subscribe": ["alpha"]})
        time.sleep(0.5)  # no acknowledgement: give the reader a moment
        since_a, since_all = only_alpha.mark(), everything.mark()
        append(os.path.join(self.d.ws, "beta", "index.html"), "<!-- beta edit -->\n")
        everything.wait_for(is_type("reload", "beta"), 5, since_all, "the reload event of beta (unfiltered)")
        append(os.path.join(self.d.ws, "alpha", "index.html"), "<!-- alpha edit -->\n")
        only_alpha.wait_for(is_type("reload", "alpha"), 5, since_a, "the reload event of alpha (subscribed)")
        everything.wait_for(is_type("reload", "alpha"), 5, since_all, "the reload event of alpha (unfiltered)")
        append(os.path.join(self.d.ws, "beta", "index.html"), "<!-- beta edit 2 -->\n")
        since_all2 = everything.mark()
        everything.wait_for(is_type("reload", "beta"), 5, since_all2, "the second reload event of beta")
        time.sleep(0.3)
        leaked = [e for _, e in only_alpha.select(lambda e: e.get("workspace") not in (None, "alpha"), since_a)]
        self.assertEqual(leaked, [], "events of other workspaces reached a client subscribed to alpha")
        self.assertTrue(only_alpha.select(is_type("files", "alpha"), since_a))

    def test_heartbeat_keeps_a_workspace_active(self):
        self.wait_answer(self.d, "/beat/", timeout=30)
        stream = self.open_stream(self.d)
        since = stream.mark()
        samples = []
        end = time.monotonic() + 4.0
        for _ in range(100):
            if time.monotonic() >= end:
                break
            stream.send({"heartbeat": ["beat"]})
            w = self.d.workspace("beat")
            samples.append((w["status"], w.get("activity"), bool(w.get("frozen"))))
            time.sleep(0.3)
        self.assertTrue(samples)
        self.assertEqual(set(samples), {("running", "active", False)},
                         f"beat under heartbeats for 4 s (idle_after 1s, background_after 2s): {samples}")
        # An "active" event may open the window (beat went idle while the stream was being
        # opened on a loaded machine, and the first heartbeat woke it): only a drop counts.
        quiet = stream.select(lambda e: e.get("workspace") == "beat"
                              and ((e.get("type") == "activity" and e.get("level") != "active")
                                   or e.get("frozen") is True), since)
        self.assertEqual(quiet, [], "beat went idle or froze despite the heartbeats")
        # Without heartbeats the policy applies again (so the above was not vacuous).
        stream.wait_for(lambda e: is_type("activity", "beat")(e) and e["level"] == "background", 5, since,
                        "beat to go to background once the heartbeats stopped")
        self.d.wait_workspace("beat", lambda w: w.get("frozen") is True, timeout=5, what="beat to be frozen")

    def test_slow_client_is_dropped(self):
        d = self.d
        normal = self.open_stream(d)
        slow = raw_slow_websocket(d.port)
        self.class_cleanups.append(slow.close)
        since = normal.mark()
        # ~150 log lines a second: ~6 KB of events per 200 ms log tick, well within the 16k
        # buffer of a client that reads, while the one that never reads falls behind for good.
        r = d.get("/chatty/chatter?seconds=10&lines=15&every=100")
        self.assertEqual((r.status, r.body), (200, b"chattering"))

        def published_bytes():
            return sum(len(json.dumps(e)) for _, e in normal.select(is_type("log", "chatty"), since))
        # The never-read socket holds ~50 KB (its receive buffer and the daemon's send buffer),
        # then 16k more queue: 120 KB of events are far more than it can ever take in.
        wait_until(lambda: published_bytes() > 120_000, 15, "120 KB of log events on the client that reads")
        self.assertIsNone(normal.ended, f"the client that reads was dropped: {normal.ended}")
        t0 = time.monotonic()
        h = d.get("/monitor/healthz", timeout=5)
        self.assertEqual(h.status, 200)
        self.assertLess(time.monotonic() - t0, 1.0, "healthz while a client was being dropped")
        # The slow client: what was already in flight, then the end of the connection.
        slow.settimeout(5)
        ended, received = None, 0
        deadline = time.monotonic() + 10
        for _ in range(100_000):
            if time.monotonic() > deadline:
                ended = "still open"
                break
            try:
                chunk = slow.recv(65536)
            except socket.timeout:
                ended = "timeout"
                break
            except ConnectionResetError:
                ended = "reset"
                break
            if not chunk:
                ended = "eof"
                break
            received += len(chunk)
        self.assertIn(ended, ("eof", "reset"), f"the slow client's connection was not closed by the daemon "
                                               f"({ended} after reading {received} bytes)")
        self.assertLess(received, published_bytes(), "the slow client got everything: it was never behind")
        # The reading client keeps receiving, every line in order.
        seen = len(normal.select(is_type("log", "chatty"), since))
        wait_until(lambda: len(normal.select(is_type("log", "chatty"), since)) >= seen + 30, 5,
                   "30 more log events on the client that reads")
        self.assertIsNone(normal.ended, f"the client that reads was dropped: {normal.ended}")
        lines = [e["line"] for _, e in normal.select(is_type("log", "chatty"), since)]
        numbers = [int(l.split()[2]) for l in lines if l.startswith("chatty line ")]
        self.assertEqual(numbers, list(range(numbers[0], numbers[0] + len(numbers))),
                         "the reading client got every log line, in order")


# --------------------------------------------------------------------- 9. live reload


class TestLiveReload(MonitorCase):
    """gateway.live_reload: HTML of static workspaces gets the reload script before </body>;
    other files and daemons without the option are untouched."""

    @classmethod
    def set_up(cls):
        cls.on = cls.new_daemon(fixtures=[("www", "site")], config={"gateway": {"live_reload": True}})
        cls.off = cls.new_daemon(fixtures=[("www", "site")])
        cls.on.start()
        cls.off.start()

    def fixture(self, rel):
        with open(os.path.join(FIXTURES, "www", rel), "rb") as f:
            return f.read()

    def test_html_gets_the_script_before_body_end(self):
        for path in ("/site/", "/site/index.html"):
            with self.subTest(path=path):
                r = self.wait_answer(self.on, path, timeout=10)
                text = r.text()
                self.assertIn("text/html", r.header("Content-Type", ""))
                script = text.find('<script data-cloudyknight="live-reload">')
                self.assertGreaterEqual(script, 0, f"no live-reload script in {path}: {body_excerpt(r.body)}")
                self.assertEqual(text.count('data-cloudyknight="live-reload"'), 1)
                self.assertLess(script, text.rfind("</body>"), "the script comes before </body>")
                self.assertIn("WWW-HOME-MARKER", text)
                self.assertEqual(int(r.header("Content-Length")), len(r.body))

    def test_css_is_untouched(self):
        r = self.wait_answer(self.on, "/site/style.css", timeout=10)
        self.assertEqual(r.body, self.fixture("style.css"))
        self.assertNotIn(b"live-reload", r.body)

    def test_without_live_reload_no_script(self):
        r = self.wait_answer(self.off, "/site/", timeout=10)
        self.assertEqual(r.body, self.fixture("index.html"))
        self.assertNotIn(b"live-reload", r.body)


# -------------------------------------------------------------------- 10. losing state.db


class TestLosingStateDb(MonitorCase):
    """state.db holds jobs and history, never the workspaces: a deleted one or one full of
    garbage (moved aside) loses no workspace."""

    @classmethod
    def set_up(cls):
        cls.current = cls.new_daemon(fixtures=["echo", ("www", "site")])
        cls.current.start()

    def restart(self, damage):
        old = type(self).current
        old.wait_status("echo", "running", timeout=30)
        res = old.stop()
        self.assertEqual(res.returncode, 0, "the daemon did not stop cleanly")
        self.assertEqual(res.leftovers, [])
        damage(old.data)
        new = self.new_daemon(reuse=old)
        type(self).current = new
        new.start()
        return new

    def assertServesEverything(self, d):
        names = {w["name"] for w in d.workspaces()}
        self.assertEqual(names, {"echo", "site"})
        d.wait_status("echo", "running", timeout=30)
        self.assertEqual(self.wait_answer(d, "/echo/back", timeout=5).json()["path"], "/back")
        self.assertIn(b"WWW-HOME-MARKER", self.wait_answer(d, "/site/", timeout=5).body)
        status, doc = d.api("/jobs?workspace=echo")
        self.assertEqual(status, 200, doc)

    def test_deleted_state_db(self):
        def delete(data):
            files = glob.glob(os.path.join(data, "state.db*"))
            self.assertIn(os.path.join(data, "state.db"), files)
            for f in files:
                if os.path.isdir(f):
                    shutil.rmtree(f)
                else:
                    os.remove(f)
        d = self.restart(delete)
        self.assertServesEverything(d)
        self.assertTrue(os.path.isfile(os.path.join(d.data, "state.db")), "a new state.db")

    def test_garbage_state_db_is_moved_aside(self):
        garbage = b"this is not an SQLite database\n" + bytes(range(256)) * 64

        def corrupt(data):
            for f in glob.glob(os.path.join(data, "state.db-*")):
                os.remove(f)
            with open(os.path.join(data, "state.db"), "wb") as f:
                f.write(garbage)
        before = set(glob.glob(os.path.join(self.current.data, "state.db.broken-*")))
        d = self.restart(corrupt)
        self.assertRegex(d.stderr_text(), r"moved it to \S*state\.db\.broken-\d+")
        aside = set(glob.glob(os.path.join(d.data, "state.db.broken-*"))) - before
        self.assertEqual(len(aside), 1, f"state.db.broken-* files: {sorted(aside | before)}")
        with open(aside.pop(), "rb") as f:
            self.assertEqual(f.read(), garbage, "the broken file is kept as it was")
        self.assertServesEverything(d)


# --------------------------------------------------------------- docker: idle policy


class TestDockerIdle(MonitorCase):
    """The idle policy with the docker runtime: a python workspace is frozen (its container
    paused), a request wakes it with 200; then it is stopped by the policy and the next
    request starts it again (200). Skipped unless a Docker engine answers."""

    @classmethod
    def set_up(cls):
        try:
            from test_docker_runtime import PYTHON_IMAGE, docker_with
        except ImportError as e:
            raise unittest.SkipTest(f"cannot load the Docker helpers: {e}")
        cls.docker = docker_with(PYTHON_IMAGE)
        cls.name = f"t{os.urandom(3).hex()}-idle"
        cls.class_cleanups.append(cls.remove_containers)
        cls.d = d = cls.new_daemon(runtime="docker", fixtures=[("docker/pyapp", cls.name)])
        d.prepare()
        write_json(os.path.join(d.ws, cls.name, "workspace.json"),
                   {"idle": {"idle_after": "1s", "background_after": "2s", "stop_after": "6s", "grace": "500ms"}})
        d.start()
        d.wait_status(cls.name, "running", timeout=90)

    @classmethod
    def remove_containers(cls):
        cls.docker.remove_workspace(cls.name)  # its network too

    def container_status(self):
        i = self.docker.app_container(self.name)
        return (i.get("State") or {}).get("Status") if i else None

    def test_paused_then_stopped_and_woken(self):
        d, name = self.d, self.name
        self.wait_answer(d, f"/{name}/", b"PYAPP-MARKER", timeout=60)
        w = d.wait_workspace(name, lambda w: w.get("frozen") is True, timeout=10, what=f"{name} to be frozen")
        self.assertEqual(w["status"], "running", w)
        wait_until(lambda: self.container_status() == "paused", 5, f"the container of {name} to be paused")
        r = d.get(f"/{name}/woken", timeout=30)
        self.assertEqual(r.status, 200, f"{r.status} {body_excerpt(r.body)}")
        self.assertEqual(r.json()["path"], "/woken")
        self.assertFalse(d.workspace(name).get("frozen"))
        self.assertEqual(self.container_status(), "running")
        w = d.wait_workspace(name, lambda w: w.get("status") == "stopped", timeout=15,
                             what=f"{name} to be stopped by the idle policy")
        self.assertEqual(w.get("reason"), "idle", w)
        self.assertNotEqual(self.container_status(), "running", "the container still runs")
        r = d.get(f"/{name}/again", timeout=90)
        self.assertEqual(r.status, 200, f"{r.status} {body_excerpt(r.body)}")
        self.assertEqual(r.json()["path"], "/again")
        self.assertEqual(d.workspace(name)["status"], "running")
        self.assertEqual(self.container_status(), "running")


if __name__ == "__main__":
    unittest.main()
