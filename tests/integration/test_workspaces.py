"""Workspace life cycle with the process runtime: broken workspaces fail clearly
while good ones keep answering, invalid folder names are listed and not routed,
a killed app is restarted, and the process-runtime contract (PORT, HOST, the
copied app folder, .container-ready, the log file).

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_workspaces
"""

import os
import re
import signal
import time
import unittest

from harness import FIXTURES, DaemonTestCase, find_app_process, pid_alive, wait_until

INVALID = {"Bad_Name", "monitor", "-dash"}


class TestWorkspaces(DaemonTestCase):
    daemon_options = dict(fixtures=["echo", "static", "badjson", "badws", "pysyntax", "Bad_Name",
                                    ("static", "monitor"), ("Bad_Name", "-dash")])

    @classmethod
    def daemon_ready(cls):
        cls.daemon.wait_status("echo", "running", timeout=60)

    # -- broken workspaces ---------------------------------------------------------------
    def test_malformed_package_json_fails_naming_file_and_line(self):
        w = self.daemon.wait_workspace("badjson", lambda w: w.get("status") == "failed"
                                       and w.get("error"), timeout=30,
                                       what="badjson to be failed with an error")
        self.assertIn("package.json", w["error"])
        self.assertIn("line", w["error"].lower())
        self.assertRegex(w["error"], r"line\D{0,4}3\b", "the syntax error is on line 3")
        self.assertNotIn("pid", w, "no process may run for a workspace that failed to parse")

    def test_malformed_workspace_json_fails_naming_file_and_line(self):
        w = self.daemon.wait_workspace("badws", lambda w: w.get("status") == "failed"
                                       and w.get("error"), timeout=30,
                                       what="badws to be failed with an error")
        self.assertIn("workspace.json", w["error"])
        self.assertIn("line", w["error"].lower())
        self.assertRegex(w["error"], r"line\D{0,4}3\b", "the syntax error is on line 3")

    def test_python_syntax_error_fails_with_exit_and_log_tail(self):
        w = self.daemon.wait_workspace(
            "pysyntax",
            lambda w: w.get("status") == "failed" and w.get("error") and w.get("log_tail"),
            timeout=60, what="pysyntax to be failed with error and log_tail")
        self.assertRegex(w["error"], r"exited with code [1-9]\d*")
        self.assertIn("SyntaxError", w["log_tail"])
        w = self.daemon.wait_workspace("pysyntax", lambda w: w.get("restarts", 0) >= 1,
                                       timeout=30, what="pysyntax restarts >= 1")
        self.assertIsInstance(w["restarts"], int)
        with open(os.path.join(self.daemon.data, "logs", "pysyntax.log"), "rb") as f:
            self.assertIn(b"SyntaxError", f.read())

    def test_failed_workspace_answers_502_with_its_error(self):
        self.daemon.wait_status("badjson", "failed", timeout=30)
        r = self.get("/badjson/")
        self.assertStatus(r, 502)
        self.assertIn("text/html", r.header("Content-Type", ""))
        self.assertIn("package.json", r.text())
        self.assertNotIn("should never run", r.text())

    def test_broken_workspace_json_is_not_served(self):
        self.daemon.wait_status("badws", "failed", timeout=30)
        r = self.get("/badws/")
        self.assertNotEqual(r.status, 200)
        self.assertNotIn(b"BADWS-SHOULD-NOT-BE-SERVED", r.body)

    def test_good_workspaces_still_answer(self):
        self.daemon.wait_status("badjson", "failed", timeout=30)
        self.daemon.wait_status("pysyntax", "failed", timeout=60)
        r = self.get("/echo/fine")
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["path"], "/fine")
        r = self.get("/static/")
        self.assertStatus(r, 200)
        self.assertIn(b"STATIC-INDEX-MARKER", r.body)

    # -- invalid names --------------------------------------------------------------------
    def test_invalid_names_listed_in_status(self):
        def invalid_listed():
            status, doc = self.daemon.api("/status")
            folders = {i.get("folder") for i in (doc or {}).get("invalid", [])}
            return doc if INVALID <= folders else None
        doc = wait_until(invalid_listed, 30, f"{sorted(INVALID)} under status.invalid")
        self.assertEqual(doc["runtime"], "process")
        for entry in doc["invalid"]:
            if entry["folder"] in INVALID:
                self.assertIsInstance(entry["error"], str)
                self.assertTrue(entry["error"].strip(), entry)
        names = {w["name"] for w in self.daemon.workspaces()}
        self.assertFalse(names & INVALID, names)
        self.assertNotIn("bad_name", names, "invalid names must never be sanitised silently")
        self.assertEqual(doc["workspaces"], len(names))
        self.assertEqual(names, {"echo", "static", "badjson", "badws", "pysyntax"})

    def test_invalid_names_not_routed(self):
        for path in ("/Bad_Name/", "/Bad_Name/index.html", "/bad_name/", "/bad-name/", "/-dash/"):
            with self.subTest(path=path):
                r = self.get(path)
                self.assertStatus(r, 404)
                self.assertNotIn(b"BAD-NAME-SHOULD-NOT-BE-SERVED", r.body)
        # a folder named "monitor" never shadows the control plane
        r = self.get("/monitor/healthz")
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["status"], "ok")
        self.assertNotIn(b"STATIC-INDEX-MARKER", self.get("/monitor/index.html").body)

    # -- storage changes at run time ------------------------------------------------------------
    def test_folder_added_and_removed_at_run_time(self):
        """storage.scan_interval (2s): a new folder is picked up and routed, a removed one
        disappears from the API and the gateway."""
        import shutil
        self.daemon.add_folder(os.path.join(FIXTURES, "www"), "late-arrival")
        wait_until(lambda: self.get("/late-arrival/").status == 200, 15,
                   "/late-arrival/ to be served after its folder was created")
        self.assertIn(b"WWW-HOME-MARKER", self.get("/late-arrival/").body)
        self.assertEqual(self.daemon.workspace("late-arrival")["type"], "static")
        shutil.rmtree(os.path.join(self.daemon.ws, "late-arrival"))
        wait_until(lambda: self.daemon.workspace("late-arrival") is None, 15,
                   "late-arrival to leave the API after its folder was removed")
        r = self.get("/late-arrival/")
        self.assertStatus(r, 404)
        self.assertNotIn(b"WWW-HOME-MARKER", r.body)

    def test_fixing_a_broken_workspace_starts_it(self):
        """A folder that was broken on one scan (empty at first, then a bad package.json)
        starts as soon as its files are fixed, without a daemon restart."""
        import shutil
        folder = os.path.join(self.daemon.ws, "repaired")
        os.makedirs(folder)
        w = self.daemon.wait_workspace("repaired", lambda w: w.get("status") == "failed", timeout=15,
                                       what="the empty folder repaired to be failed")
        self.assertIn("no app found", w["error"])
        with open(os.path.join(folder, "package.json"), "w") as f:
            f.write('{"scripts": {"start": "node server.js"},\n')
        w = self.daemon.wait_workspace("repaired", lambda w: "package.json" in (w.get("error") or ""),
                                       timeout=15, what="repaired to report its bad package.json")
        self.assertEqual(w["status"], "failed")
        os.remove(os.path.join(folder, "package.json"))
        shutil.copy(os.path.join(FIXTURES, "echo", "app.py"), os.path.join(folder, "app.py"))
        try:
            self.daemon.wait_status("repaired", "running", timeout=30)
            r = self.get("/repaired/after-the-fix")
            self.assertStatus(r, 200)
            self.assertEqual(r.json()["path"], "/after-the-fix")
        finally:
            # Other tests of this class count the workspaces: leave none behind.
            shutil.rmtree(folder)
            wait_until(lambda: self.daemon.workspace("repaired") is None, 15,
                       "repaired to leave the API after its folder was removed")

    # -- restart after a crash ---------------------------------------------------------------
    def test_killed_app_is_restarted(self):
        before = self.daemon.wait_status("echo", "running", timeout=60)
        old_pid = before["pid"]
        old_restarts = before["restarts"]
        self.assertTrue(pid_alive(old_pid))
        os.kill(old_pid, signal.SIGKILL)
        seen_failed = []

        def back():
            w = self.daemon.workspace("echo")
            if w and w.get("status") == "failed":
                seen_failed.append(w)
            if (w and w.get("status") == "running" and w.get("restarts", 0) >= old_restarts + 1
                    and w.get("pid") not in (None, old_pid)):
                return w
            return None
        after = wait_until(back, 30, "echo to be running again with a new pid")
        self.assertGreaterEqual(after["restarts"], 1)
        self.assertFalse(pid_alive(old_pid))
        for w in seen_failed:  # what the API said while it was down
            self.assertRegex(w.get("error") or "", r"killed by signal 9|exited with code \d+")
        r = wait_until(lambda: (lambda r: r if r.status == 200 else None)(self.get("/echo/again")),
                       15, "echo to answer again")
        self.assertEqual(r.json()["path"], "/again")
        self.assertIsNotNone(find_app_process(after["pid"], "app.py"))

    # -- process runtime contract -----------------------------------------------------------
    def test_process_runtime_environment(self):
        w = self.daemon.wait_status("echo", "running", timeout=60)
        lo, hi = self.daemon.runtime_ports
        self.assertTrue(lo <= w["port"] <= hi, f"port {w['port']} outside runtime.ports {lo}-{hi}")
        r = self.get("/echo/env")
        self.assertStatus(r, 200)
        doc = r.json()
        self.assertEqual(doc["env"]["PORT"], str(w["port"]))
        self.assertEqual(doc["env"]["HOST"], "127.0.0.1")
        app_dir = os.path.join(self.daemon.data, "run", "echo", "app")
        app_pid = find_app_process(w["pid"], "app.py")
        self.assertIsNotNone(app_pid, f"no `app.py` process at or below W.pid {w['pid']}")
        self.assertTrue(os.path.samefile(f"/proc/{app_pid}/cwd", app_dir),
                        f"the app runs in {os.readlink(f'/proc/{app_pid}/cwd')}, not {app_dir}")
        self.assertTrue(os.path.isfile(os.path.join(app_dir, "app.py")))
        self.assertTrue(os.path.exists(os.path.join(app_dir, ".container-ready")))

    def test_app_output_goes_to_log_file(self):
        self.daemon.wait_status("echo", "running", timeout=60)
        path = os.path.join(self.daemon.data, "logs", "echo.log")
        def logged():
            if not os.path.isfile(path):
                return False
            with open(path, "rb") as f:
                return b"echo listening" in f.read()
        wait_until(logged, 10, f"'echo listening' in {path}")

    def test_start_line_names_the_url(self):
        self.assertIn(f"http://127.0.0.1:{self.daemon.port}/", self.daemon.stderr_text())

    def test_source_folder_is_not_modified(self):
        self.daemon.wait_status("echo", "running", timeout=60)
        src = os.path.join(self.daemon.ws, "echo")
        self.assertEqual(sorted(os.listdir(src)), ["app.py"],
                         "deps and markers belong in DATA/run/<name>/app, not in the source")


if __name__ == "__main__":
    unittest.main()
