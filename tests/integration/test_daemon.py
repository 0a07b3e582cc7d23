"""The daemon as a process: configuration precedence (file < CK_* env < flags),
config errors, JSON logs, and clean shutdown on SIGTERM/SIGINT.

Each test starts its own short-lived daemon.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_daemon
"""

import json
import os
import signal
import shutil
import subprocess
import time
import unittest

from harness import (Daemon, cmdline, find_app_process, free_port, group_members, pid_alive,
                     listening_ports, port_listening)

ADMIN_TOKEN_LINE = "admin token (shown once, store it now): "


class DaemonProcessTest(unittest.TestCase):
    def setUp(self):
        self.daemons = []
        self.diags = []

    def tearDown(self):
        failed = False
        for d in self.daemons:
            res = d.stop()
            if res.leftovers or (res.returncode != 0 and not getattr(d, "expect_exit", False)):
                failed = True
            if d.tmp:
                self.diags.append(d.diagnostics())
            d.cleanup()
        if failed:
            self.fail("a daemon did not exit cleanly on SIGTERM: "
                      + ", ".join(f"rc={d.stopped.returncode} leftovers={d.stopped.leftovers}"
                                  for d in self.daemons))

    def run(self, result=None):
        count = lambda r: 0 if r is None else len(r.failures) + len(r.errors)
        before = count(result)
        result = super().run(result)
        if count(result) > before:
            for diag in self.diags:
                print(f"\n===== diagnostics for {self.id()}\n{diag}")
        return result

    def daemon(self, **kw):
        d = Daemon(**kw)
        self.daemons.append(d)
        return d

    def run_to_exit(self, d, timeout=15):
        """Spawns a daemon expected to refuse to start; returns (rc, stderr lines)."""
        d.expect_exit = True
        d.spawn()
        try:
            rc = d.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.fail(f"cloudyknight kept running with a bad configuration "
                      f"(listening on {d.port}: {port_listening(d.port)})")
        d.stop()
        return rc, [l for l in d.stderr_text().splitlines() if l.strip()]

    # -- configuration precedence --------------------------------------------------------
    def test_flag_beats_env_beats_file(self):
        a, b, c = free_port(), free_port(), free_port()
        self.assertEqual(len({a, b, c}), 3)
        d = self.daemon(port=c, listen=True, config={"gateway": {"listen": f"127.0.0.1:{a}"}},
                        env={"CK_GATEWAY_LISTEN": f"127.0.0.1:{b}"})
        d.start()
        # Ask the daemon's own sockets: a free_port() can be taken by a test running beside
        # this one, so "something listens on b" proves nothing about this daemon.
        ports = listening_ports(d.proc.pid)
        self.assertIn(c, ports, "not listening on the --listen flag's address")
        self.assertNotIn(a, ports, "listening on the config file's address")
        self.assertNotIn(b, ports, "listening on CK_GATEWAY_LISTEN's address")
        self.assertIn(f"http://127.0.0.1:{c}/", d.stderr_text())

    def test_env_beats_file_without_flag(self):
        a, b = free_port(), free_port()
        d = self.daemon(port=b, listen=False, config={"gateway": {"listen": f"127.0.0.1:{a}"}},
                        env={"CK_GATEWAY_LISTEN": f"127.0.0.1:{b}"})
        d.start()
        ports = listening_ports(d.proc.pid)
        self.assertIn(b, ports, "not listening on CK_GATEWAY_LISTEN's address")
        self.assertNotIn(a, ports, "listening on the config file's address")
        self.assertIn(f"http://127.0.0.1:{b}/", d.stderr_text())

    def test_file_used_without_env_or_flag(self):
        a = free_port()
        d = self.daemon(port=a, listen=False, config={"gateway": {"listen": f"127.0.0.1:{a}"}})
        d.start()
        self.assertIn(f"http://127.0.0.1:{a}/", d.stderr_text())

    def test_env_duration_override(self):
        """CK_GATEWAY_REQUEST_TIMEOUT=2s beats the file's 60s."""
        d = self.daemon(fixtures=["echo"], config={"gateway": {"request_timeout": "60s"}},
                        env={"CK_GATEWAY_REQUEST_TIMEOUT": "2s"})
        d.start()
        d.wait_status("echo", "running", timeout=60)
        t0 = time.monotonic()
        r = d.get("/echo/slow", timeout=30)
        elapsed = time.monotonic() - t0
        self.assertEqual(r.status, 504)
        self.assertLess(elapsed, 10)

    # -- configuration errors -------------------------------------------------------------
    def test_malformed_yaml_exits_with_one_line_naming_the_file(self):
        d = self.daemon(config_text="gateway:\n  listen: [127.0.0.1:1\n  request_timeout: 2s\n"
                                    "storage: {kind: dir\n")
        rc, lines = self.run_to_exit(d)
        self.assertNotEqual(rc, 0)
        self.assertEqual(len(lines), 1, f"expected one clear line on stderr, got {lines!r}")
        self.assertIn("config.yaml", lines[0])

    def test_missing_config_file_exits_with_one_line(self):
        d = self.daemon(config=False, args=["--config", "/nonexistent/ck-missing.yaml"])
        rc, lines = self.run_to_exit(d)
        self.assertNotEqual(rc, 0)
        self.assertEqual(len(lines), 1, f"expected one clear line on stderr, got {lines!r}")
        self.assertIn("ck-missing.yaml", lines[0])

    # -- logging ---------------------------------------------------------------------
    def test_json_log_format(self):
        d = self.daemon(fixtures=["echo", "Bad_Name"], args=["--log-format", "json"])
        d.start()
        d.wait_status("echo", "running", timeout=60)
        self.assertEqual(d.get("/echo/").status, 200)
        self.assertEqual(d.get("/nosuch/").status, 404)
        res = d.stop()
        self.assertEqual(res.returncode, 0)
        lines = [l for l in d.stderr_text().splitlines() if l.strip()]
        # The one line that is not a log line: the admin token of a first start, printed as is
        # (never through the logger).
        admin = [l for l in lines if l.startswith(ADMIN_TOKEN_LINE)]
        self.assertEqual(len(admin), 1, lines)
        lines = [l for l in lines if not l.startswith(ADMIN_TOKEN_LINE)]
        self.assertGreater(len(lines), 0)
        for i, line in enumerate(lines):
            with self.subTest(line=i):
                try:
                    obj = json.loads(line)
                except ValueError:
                    self.fail(f"stderr line {i} is not JSON: {line!r}")
                self.assertIsInstance(obj, dict)
                for key in ("time", "level", "logger", "msg"):
                    self.assertIn(key, obj, line)
                self.assertIsInstance(obj["msg"], str)
        self.assertTrue(any(f"http://127.0.0.1:{d.port}/" in json.loads(l)["msg"] for l in lines),
                        "no log line names the listening URL")

    # -- admin token ------------------------------------------------------------------
    def data_bytes(self, d):
        out = b""
        for root, _, files in os.walk(d.data):
            for name in files:
                with open(os.path.join(root, name), "rb") as f:
                    out += f.read()
        return out

    def test_admin_token_is_printed_once_on_first_start_and_stored_hashed(self):
        d = self.daemon()
        d.start()
        printed = [l for l in d.stderr_text().splitlines() if l.startswith(ADMIN_TOKEN_LINE)]
        self.assertEqual(len(printed), 1, d.stderr_text())
        token = printed[0][len(ADMIN_TOKEN_LINE):].strip()
        self.assertRegex(token, r"^ck_[a-z2-7]{52}$")
        self.assertEqual(d.stop().returncode, 0)
        data = self.data_bytes(d)
        self.assertIn(b"SQLite format 3", data)
        self.assertNotIn(token.encode(), data)
        self.assertNotIn(token[3:].encode(), data)
        # Second start on the same data: nothing printed.
        d2 = self.daemon(reuse=d)
        d2.start()
        self.assertNotIn("admin token", d2.stderr_text())
        self.assertEqual(d2.stop().returncode, 0)

    def test_configured_admin_token_is_never_printed_nor_stored(self):
        secret = "configured-admin-token-0123456789"
        d = self.daemon(env={"CK_AUTH_ADMIN_TOKEN": secret})
        d.start()
        self.assertNotIn("admin token", d.stderr_text())
        self.assertNotIn(secret, d.stderr_text())
        self.assertEqual(d.stop().returncode, 0)
        self.assertNotIn(secret.encode(), self.data_bytes(d))

    def test_text_log_names_url(self):
        d = self.daemon()
        d.start()
        self.assertIn(f"http://127.0.0.1:{d.port}/", d.stderr_text())

    def test_status_describes_the_daemon_with_no_workspaces(self):
        # Was empty: the API was built before the port was known, and an empty first scan
        # published no snapshot.
        d = self.daemon()
        d.start()
        status, doc = d.api("/status")
        self.assertEqual(status, 200)
        self.assertEqual(doc["url"], f"http://127.0.0.1:{d.port}/")
        self.assertEqual(doc["runtime"], "process")
        self.assertTrue(doc["isolation"])
        self.assertEqual(doc["storage"], d.ws)
        self.assertEqual(doc["workspaces"], 0)

    # -- shutdown ---------------------------------------------------------------------
    def _shutdown(self, sig):
        d = self.daemon(fixtures=["echo"], examples=["hello-python"])
        d.start()
        pids = [d.wait_status(n, "running", timeout=60)["pid"] for n in ("echo", "hello-python")]
        apps = [find_app_process(pid, "app.py") for pid in pids]
        for pid, app in zip(pids, apps):
            self.assertTrue(pid_alive(pid))
            self.assertTrue(group_members(pid), f"pid {pid} leads no process group")
            self.assertIsNotNone(app, f"no app.py process below {pid}")
        res = d.stop(sig)
        self.assertEqual(res.returncode, 0, f"exit code after {sig.name}")
        self.assertEqual(res.leftovers, [], f"workspace processes alive after {sig.name}")
        self.assertLess(res.elapsed, 15)
        for pid in pids + apps:
            self.assertFalse(pid_alive(pid), f"{pid} ({cmdline(pid)}) still alive")

    def test_sigterm_during_an_install_exits_0(self):
        # A start suspended in the middle of its install is destroyed at exit; that used to
        # happen after the runtime was freed (heap corruption, exit code -6).
        d = self.daemon(fixtures=["echo"])
        d.start()
        d.wait_status("echo", "running", timeout=60)
        folder = os.path.join(d.ws, "installing")
        os.makedirs(folder)
        shutil.copy(os.path.join(d.ws, "echo", "app.py"), folder)
        with open(os.path.join(folder, "workspace.json"), "w") as f:
            json.dump({"command": "python3 app.py", "install": "sleep 30"}, f)
        d.wait_workspace("installing", lambda w: "install" in (w.get("phase") or ""), timeout=30,
                         what="installing to be installing")
        res = d.stop(signal.SIGTERM)
        self.assertEqual(res.returncode, 0, "exit code after SIGTERM during an install")
        self.assertEqual(res.leftovers, [], "processes alive after SIGTERM")
        self.assertLess(res.elapsed, 15)

    def test_sigterm_stops_children_and_exits_0(self):
        self._shutdown(signal.SIGTERM)

    def test_sigint_stops_children_and_exits_0(self):
        self._shutdown(signal.SIGINT)


if __name__ == "__main__":
    unittest.main()
