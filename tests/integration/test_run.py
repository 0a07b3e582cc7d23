"""The API's long-running endpoints against a real daemon with the process runtime (issue 6):
POST /workspaces/{name}/run (a command beside the app: in its pid and mount namespaces, its
folder and environment; streamed or not; killed at its timeout), POST /workspaces/{name}/sync,
GET /workspaces/{name}/logs?follow=1 and GET /logs (the monitor's own log), with their auth
rules and error cases. The docker runtime's run is tested in test_docker_runtime.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_run
"""

import http.client
import json
import os
import socket
import time
import unittest

from harness import TIME_SCALE, DaemonTestCase, wait_until
from test_auth import admin_token, call

API = "/monitor/api/v1"


def chunked_reader(d, path, token=None, timeout=10):
    """Opens a streamed GET and answers (connection, response) with the head read."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    conn.request("GET", API + path, headers=headers)
    return conn, conn.getresponse()


def read_until(resp, needle, timeout=10):
    """Reads a streamed body until `needle` shows up; answers what was read."""
    got = b""
    end = time.monotonic() + timeout
    while needle not in got:
        if time.monotonic() > end:
            raise AssertionError(f"{needle!r} did not arrive within {timeout} s; got {got[-500:]!r}")
        chunk = resp.read1(65536)
        if not chunk:
            raise AssertionError(f"the stream ended before {needle!r}; got {got[-500:]!r}")
        got += chunk
    return got


class RunTest(DaemonTestCase):
    daemon_options = dict(fixtures=["echo", "static"])

    @classmethod
    def daemon_ready(cls):
        cls.token = admin_token(cls.daemon)
        r = call(cls.daemon, "POST", "/tokens", token=cls.token, body={"name": "reader", "scopes": ["read"]})
        assert r.status == 201, r.text()
        cls.read_token = r.json()["token"]
        cls.daemon.wait_status("echo", "running", 60)

    def run_cmd(self, argv, timeout=None, stream=False, token=None, name="echo"):
        body = {"command": argv}
        if timeout:
            body["timeout"] = timeout
        return call(self.daemon, "POST", f"/workspaces/{name}/run" + ("?stream=1" if stream else ""),
                    token=token or self.token, body=body)

    def assertError(self, r, status, code):
        self.assertStatus(r, status)
        doc = r.json()
        self.assertEqual(doc["error"]["code"], code, doc)
        self.assertTrue(doc["error"]["message"])

    # -- run ------------------------------------------------------------------------------
    def test_runs_in_the_apps_folder_environment_and_namespaces(self):
        app = self.daemon.request("GET", "/echo/").json()
        r = self.run_cmd(["sh", "-c", "pwd; echo $PORT; echo $CLOUDYKNIGHT_WORKSPACE; cat /proc/1/cmdline | tr '\\0' ' '"])
        self.assertStatus(r, 200)
        doc = r.json()
        self.assertEqual(doc["exit_code"], 0, doc)
        self.assertFalse(doc["timed_out"])
        self.assertFalse(doc["truncated"])
        lines = doc["output"].splitlines()
        self.assertEqual(lines[0], app["cwd"], "not the app's folder")
        self.assertEqual(lines[1], app["env"]["PORT"], "not the app's environment")
        self.assertEqual(lines[2], "echo")
        if os.geteuid() == 0:
            # As root the app has its own pid namespace: PID 1 there is the app's init, not the
            # host's, and the command sees it.
            self.assertIn("__init", lines[3], "the command does not run in the app's pid namespace")
            self.assertNotEqual(open("/proc/1/cmdline", "rb").read().replace(b"\0", b" ").decode().strip(),
                                lines[3].strip())

    def test_exit_code_and_output_of_a_failing_command(self):
        r = self.run_cmd(["sh", "-c", "echo out; echo err >&2; exit 3"])
        self.assertStatus(r, 200)
        doc = r.json()
        self.assertEqual(doc["exit_code"], 3)
        self.assertEqual(sorted(doc["output"].split()), ["err", "out"])

    def test_no_shell_unless_asked(self):
        # Words are passed as they are: a ; or $ is not interpreted.
        r = self.run_cmd(["echo", "a;b", "$HOME", "it's"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["output"], "a;b $HOME it's\n")
        r = self.run_cmd(["no-such-command-xyz"])
        self.assertStatus(r, 200)
        self.assertEqual(r.json()["exit_code"], 127)

    def test_streamed_output_arrives_before_the_end(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=20)
        # The command sleeps longer in a slower (sanitizer) pass, so the bound keeps its meaning.
        pause = 2 * TIME_SCALE
        body = json.dumps({"command": ["sh", "-c", f"echo first; sleep {pause:g}; echo second"]})
        started = time.monotonic()
        conn.request("POST", API + "/workspaces/echo/run?stream=1", body=body,
                     headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"})
        resp = conn.getresponse()
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.getheader("Content-Type"), "application/x-ndjson")
        self.assertEqual(resp.getheader("Transfer-Encoding"), "chunked")
        first = read_until(resp, b"first")
        self.assertLess(time.monotonic() - started, pause - 0.2, "the first line waited for the end")
        rest = first + resp.read()
        conn.close()
        events = [json.loads(line) for line in rest.decode().splitlines() if line]
        self.assertEqual("".join(e.get("output", "") for e in events), "first\nsecond\n")
        self.assertEqual(events[-1], {"exit_code": 0, "timed_out": False})

    def test_an_http_1_0_client_gets_the_stream_until_the_connection_closes(self):
        body = json.dumps({"command": ["sh", "-c", "echo one; sleep 0.3; echo two"]}).encode()
        s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10)
        s.sendall(b"POST " + API.encode() + b"/workspaces/echo/run?stream=1 HTTP/1.0\r\n"
                  b"Authorization: Bearer " + self.token.encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        got = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            got += chunk
        s.close()
        head, _, rest = got.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head)
        self.assertNotIn(b"chunked", head.lower())
        events = [json.loads(line) for line in rest.decode().splitlines() if line]
        self.assertEqual("".join(e.get("output", "") for e in events), "one\ntwo\n")
        self.assertEqual(events[-1], {"exit_code": 0, "timed_out": False})

    def test_multibyte_output_is_never_split(self):
        r = self.run_cmd(["sh", "-c", "for i in $(seq 1 3000); do printf 'ü日本'; done"], stream=True)
        self.assertStatus(r, 200)
        events = [json.loads(line) for line in r.text().splitlines() if line]
        out = "".join(e.get("output", "") for e in events)
        self.assertEqual(out, "ü日本" * 3000)
        self.assertNotIn("\ufffd", out)

    def test_timeout_kills_the_command_and_its_children(self):
        marker = "7373.25"
        started = time.monotonic()
        r = self.run_cmd(["sh", "-c", f"sleep {marker} & sleep {marker}; wait"], timeout="1s")
        self.assertLess(time.monotonic() - started, 8)
        self.assertStatus(r, 200)
        doc = r.json()
        self.assertTrue(doc["timed_out"], doc)
        self.assertEqual(doc["exit_code"], 137)

        def gone():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        if marker.encode() in open(f"/proc/{pid}/cmdline", "rb").read():
                            return False
                    except OSError:
                        pass
            return True
        wait_until(gone, 5, "the timed-out command's processes to be gone")

    def test_a_client_that_goes_away_stops_the_command(self):
        marker = "8181.5"
        s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=5)
        body = json.dumps({"command": ["sh", "-c", f"while true; do echo tick; sleep 0.1; done; sleep {marker}"],
                           "timeout": "60s"}).encode()
        s.sendall(b"POST " + API.encode() + b"/workspaces/echo/run?stream=1 HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Bearer " + self.token.encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        got = b""
        while b"tick" not in got:
            got += s.recv(4096)
        s.close()

        def gone():
            out = self.run_cmd(["sh", "-c", "ps -eo args 2>/dev/null || cat /proc/[0-9]*/cmdline"]).json()["output"]
            return "while true" not in out
        wait_until(gone, 10, "the command to stop once its client went away")

    def test_a_silent_command_whose_client_goes_away_is_stopped_too(self):
        marker = "9191.5"
        s = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=5)
        body = json.dumps({"command": ["sleep", marker], "timeout": "120s"}).encode()
        s.sendall(b"POST " + API.encode() + b"/workspaces/echo/run HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Bearer " + self.token.encode() + b"\r\nContent-Type: application/json\r\n"
                  b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

        def running():
            out = self.run_cmd(["sh", "-c", "cat /proc/[0-9]*/cmdline | tr '\\0' ' '"]).json()["output"]
            return marker in out
        wait_until(running, 10, "the command to start")
        s.close()
        # The gateway notices the closed connection within 5 s, the command's probe within 1 s.
        wait_until(lambda: not running(), 15, "the silent command to stop once its client went away")

    def test_errors(self):
        self.assertError(call(self.daemon, "POST", "/workspaces/echo/run", token=self.token, body="{nope"),
                         400, "invalid_argument")
        self.assertError(self.run_cmd([]), 400, "invalid_argument")
        self.assertError(self.run_cmd("ls"), 400, "invalid_argument")
        self.assertError(self.run_cmd(["ls", 1]), 400, "invalid_argument")
        self.assertError(self.run_cmd(["ls"], timeout="forever"), 400, "invalid_argument")
        self.assertError(self.run_cmd(["ls"], timeout="11m"), 400, "invalid_argument")
        self.assertError(self.run_cmd(["ls"], name="nope"), 404, "not_found")
        self.assertError(self.run_cmd(["ls"], name="Bad..Name"), 400, "invalid_argument")
        r = self.run_cmd(["ls"], name="static")
        self.assertError(r, 409, "conflict")
        self.assertIn("static", r.json()["error"]["message"])
        # Credentials: none, a read-only token, a wrong one.
        r = call(self.daemon, "POST", "/workspaces/echo/run", body={"command": ["ls"]})
        self.assertError(r, 401, "unauthenticated")
        self.assertEqual(r.header("WWW-Authenticate"), "Bearer")
        self.assertError(self.run_cmd(["ls"], token=self.read_token), 403, "forbidden")
        self.assertError(self.run_cmd(["ls"], token="ck_wrong"), 401, "unauthenticated")
        self.assertError(call(self.daemon, "GET", "/workspaces/echo/run", token=self.token), 405, "invalid_argument")

    def test_runs_are_audited(self):
        self.run_cmd(["echo", "audited-run"])
        entries = call(self.daemon, "GET", "/audit", token=self.token).json()["entries"]
        runs = [e for e in entries if e["action"] == "workspace.run" and e["target"] == "echo"]
        self.assertTrue(runs, entries[:5])
        self.assertEqual(runs[0]["detail"]["command"], ["echo", "audited-run"])

    # -- sync -----------------------------------------------------------------------------
    def test_sync_rescans_the_folder(self):
        r = call(self.daemon, "POST", "/workspaces/echo/sync", token=self.token)
        self.assertStatus(r, 200)
        self.assertEqual(r.json(), {"name": "echo", "storage": "dir", "direction": "rescan"})
        self.assertError(call(self.daemon, "POST", "/workspaces/echo/sync"), 401, "unauthenticated")
        self.assertError(call(self.daemon, "POST", "/workspaces/echo/sync", token=self.read_token), 403, "forbidden")
        self.assertError(call(self.daemon, "POST", "/workspaces/nope/sync", token=self.token), 404, "not_found")

    def test_status_names_the_container_and_the_sync_state(self):
        doc = call(self.daemon, "GET", "/workspaces/echo/status").json()
        self.assertEqual(doc["container"]["runtime"], "process")
        self.assertGreater(doc["container"]["pid"], 0)
        self.assertGreater(doc["container"]["port"], 0)
        self.assertIs(doc["container"]["held"], False)
        self.assertEqual(doc["sync"]["storage"], "dir")
        self.assertEqual(doc["sync"]["error"], "")
        self.assertTrue(doc["sync"]["location"])

    # -- logs -----------------------------------------------------------------------------
    def test_follow_a_workspace_log(self):
        conn, resp = chunked_reader(self.daemon, "/workspaces/echo/logs?follow=1&tail=5")
        try:
            self.assertEqual(resp.status, 200)
            self.assertTrue(resp.getheader("Content-Type").startswith("text/plain"))
            self.assertEqual(resp.getheader("Transfer-Encoding"), "chunked")
            # Something the app prints after the follow began arrives on the open stream (the
            # echo app logs each request; a sandboxed command cannot write the root-owned log).
            self.daemon.get("/echo/followed-line-42")
            read_until(resp, b"followed-line-42")
        finally:
            conn.close()
        self.assertError(call(self.daemon, "GET", "/workspaces/echo/logs?follow=1&tail=0"), 400, "invalid_argument")
        self.assertError(call(self.daemon, "GET", "/workspaces/nope/logs?follow=1"), 404, "not_found")

    def test_monitor_log(self):
        self.assertError(call(self.daemon, "GET", "/logs"), 401, "unauthenticated")
        # The monitor's own log names every workspace: admins only (issue 13).
        self.assertError(call(self.daemon, "GET", "/logs", token=self.read_token), 403, "forbidden")
        r = call(self.daemon, "GET", "/logs?tail=50", token=self.token)
        self.assertStatus(r, 200)
        entries = r.json()["entries"]
        self.assertTrue(entries)
        self.assertLessEqual(len(entries), 50)
        for e in entries:
            self.assertEqual(set(e), {"seq", "time", "level", "logger", "msg"})
        seqs = [e["seq"] for e in entries]
        self.assertEqual(seqs, sorted(seqs))
        self.assertEqual(r.header("Cache-Control"), "no-store")
        self.assertError(call(self.daemon, "GET", "/logs?tail=abc", token=self.token), 400, "invalid_argument")
        # Followed: new records arrive as JSON lines.
        conn, resp = chunked_reader(self.daemon, "/logs?follow=1&tail=1", token=self.token)
        try:
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.getheader("Content-Type"), "application/x-ndjson")
            before = self.daemon.workspace("echo").get("pid")
            call(self.daemon, "POST", "/workspaces/echo/restart", token=self.token)
            got = read_until(resp, b"echo", timeout=15)
            for line in got.decode().splitlines():
                if line:
                    self.assertIn("msg", json.loads(line))
        finally:
            conn.close()
        # The restart is asynchronous: the other tests need the new app up (a run that
        # succeeds on the old one, before the restart began, proves nothing).
        def restarted():
            w = self.daemon.workspace("echo")
            return w.get("pid") != before and w.get("status") == "running"
        wait_until(restarted, 60, "echo to be running again, as a new process, after its restart")
        wait_until(lambda: self.run_cmd(["true"]).status == 200, 60, "echo to run again after its restart")


if __name__ == "__main__":
    unittest.main()
