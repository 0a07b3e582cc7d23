"""The CLI as a remote client (issue 18): `cloudyknight login` (a token by flag or stdin, a
password through a pseudo-terminal), contexts (list/use/remove, the 0600 file that never holds a
password), CK_URL/CK_TOKEN overriding them, every `ws` command over the API (ls, status, create,
delete asking or --yes, start/stop/restart, logs and logs -f across a restart, run streaming its
output and passing its exit code through, open, sync), a member's token refused on another
member's private workspace, a server behind TLS with a test CA, and logout revoking the token.

The daemon's control plane lives on gateway.control_host = localhost (several users log in), so
the CLI talks to http://localhost:PORT. Each test has its own XDG_CONFIG_HOME.

Run: cd tests/integration && CK_BINARY=$PWD/../../build/cloudyknight python3 -m unittest -v test_remote_cli
"""

import json
import os
import pty
import select
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
import unittest

from harness import REPO, ClassSetUp, Daemon, binary, wait_until
from test_auth import PASSWORD, admin_token, call, set_cookie_parts
from tlsutil import TestCA, TlsDaemon

API = "/monitor/api/v1"
CLI_TIMEOUT = 60


class LocalhostControlDaemon(Daemon):
    """The control plane on gateway.control_host = localhost, which the CLI can resolve."""

    def __init__(self, *a, **kw):
        kw.setdefault("config", {"gateway": {"control_host": "localhost"},
                                 "templates": os.path.join(REPO, "templates")})
        super().__init__(*a, **kw)

    def request(self, method, path, headers=None, body=None, timeout=10, port=None):
        h = dict(headers or {})
        if path.startswith("/monitor") and not any(k.lower() == "host" for k in h):
            h["Host"] = f"localhost:{port or self.port}"
        return super().request(method, path, headers=h, body=body, timeout=timeout, port=port)


def member_token(d, admin, user, name="test"):
    """An API token bound to member `user` (made through its login session)."""
    r = call(d, "POST", "/auth/login", body={"name": user, "password": PASSWORD})
    assert r.status == 200, r.text()
    cookie, csrf = set_cookie_parts(r)[1], r.json()["csrf"]
    r = call(d, "POST", "/tokens", cookie=cookie, csrf=csrf, body={"name": name, "scopes": ["read", "deploy"]})
    assert r.status == 201, r.text()
    return r.json()["token"]


class CliCase(ClassSetUp):
    """Runs the CLI with a config folder of the test's own and no CK_* from the caller."""

    def setUp(self):
        self.cfg = tempfile.mkdtemp(prefix="ck-cli-cfg-")
        self.addCleanup(shutil.rmtree, self.cfg, True)

    @property
    def contexts_file(self):
        return os.path.join(self.cfg, "cloudyknight", "contexts.yaml")

    def env(self, extra=None):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CK_")}
        env["XDG_CONFIG_HOME"] = self.cfg
        env["HOME"] = self.cfg
        env.update(extra or {})
        return env

    def ck(self, *args, env=None, input=None, code=0, timeout=CLI_TIMEOUT):
        """Runs `cloudyknight ARGS` (stdin: `input`, else /dev/null) and checks its exit code."""
        p = subprocess.run([binary(), *args], env=self.env(env), input=(input or "").encode(),
                           capture_output=True, timeout=timeout)
        p.out = p.stdout.decode("utf-8", "replace")
        p.err = p.stderr.decode("utf-8", "replace")
        if code is not None:
            self.assertEqual(p.returncode, code,
                             f"`cloudyknight {' '.join(args)}` exit {p.returncode}\nstdout: {p.out[-2000:]}\n"
                             f"stderr: {p.err[-2000:]}")
        return p

    def assertOneLine(self, text, needle=None):
        lines = [l for l in text.splitlines() if l.strip()]
        self.assertEqual(len(lines), 1, f"expected one line on stderr, got {text!r}")
        self.assertTrue(lines[0].startswith("cloudyknight: "), lines[0])
        if needle:
            self.assertIn(needle, lines[0])

    def ck_pty(self, *args, answers=(), env=None, timeout=CLI_TIMEOUT):
        """Runs the CLI on a pseudo-terminal; each (prompt, reply) waits for `prompt` in the
        output and types `reply` + newline. Answers (exit code, everything the terminal showed)."""
        pid, fd = pty.fork()
        if pid == 0:
            try:
                os.execve(binary(), [binary(), *args], self.env(env))
            finally:
                os._exit(127)
        out = b""
        pending = list(answers)
        end = time.monotonic() + timeout
        try:
            while True:
                if pending and pending[0][0].encode() in out:
                    prompt, reply = pending.pop(0)
                    out = out.replace(prompt.encode(), b"<" + prompt.encode() + b">", 1)
                    os.write(fd, reply.encode() + b"\n")
                left = end - time.monotonic()
                if left <= 0:
                    os.kill(pid, signal.SIGKILL)
                    self.fail(f"`cloudyknight {' '.join(args)}` on a terminal did not finish; it showed {out!r}")
                r, _, _ = select.select([fd], [], [], min(left, 0.5))
                if r:
                    try:
                        chunk = os.read(fd, 4096)
                    except OSError:  # EIO: the child closed the terminal
                        break
                    if not chunk:
                        break
                    out += chunk
        finally:
            _, status = os.waitpid(pid, 0)
            os.close(fd)
        return os.waitstatus_to_exitcode(status), out.decode("utf-8", "replace")

    def read_contexts(self):
        with open(self.contexts_file) as f:
            return f.read()

    def contexts(self):
        return json.loads(self.ck("context", "list", "--json").out)


class RemoteCliTest(CliCase):
    @classmethod
    def init_class_state(cls):
        cls.d = None
        cls.daemons = []

    @classmethod
    def set_up(cls):
        cls.d = d = LocalhostControlDaemon(fixtures=["echo", "static"])
        cls.daemons = [d]
        d.start()
        cls.admin = admin_token(d)
        for user in ("ann", "ben"):
            r = call(d, "POST", "/users", cls.admin, {"name": user, "password": PASSWORD, "role": "member"})
            assert r.status == 201, r.text()
        r = call(d, "POST", "/tokens", cls.admin, {"name": "reader", "scopes": ["read"]})
        assert r.status == 201, r.text()
        cls.read_token = r.json()["token"]
        cls.url = f"http://localhost:{d.port}"
        d.wait_status("echo", "running", 60)

    @classmethod
    def tearDownClass(cls):
        if cls.d is None:
            return
        res = cls.d.stop()
        cls.d.cleanup()
        assert res.returncode == 0, res

    def login_admin(self, name="main"):
        self.ck("login", self.url, "--token", self.admin, "--name", name)

    def as_admin(self):
        return {"CK_URL": self.url, "CK_TOKEN": self.admin}

    # -- login and contexts -------------------------------------------------------------------
    def test_login_with_a_token_by_flag_and_by_stdin(self):
        p = self.ck("login", self.url, "--token", self.admin)
        self.assertIn("logged in to", p.out)
        st = os.stat(self.contexts_file)
        self.assertEqual(stat.S_IMODE(st.st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(self.contexts_file)).st_mode), 0o700)
        ctx = self.contexts()
        self.assertEqual([(c["name"], c["current"]) for c in ctx], [(f"localhost:{self.d.port}", True)])
        self.assertNotIn("token", ctx[0], "context list must not print tokens")
        self.assertIn(self.admin, self.read_contexts())
        self.ck("ws", "ls")

        p = self.ck("login", self.url, "--token", "-", "--name", "piped", input=self.read_token + "\n")
        self.assertEqual([c["name"] for c in self.contexts() if c["current"]], ["piped"])
        self.assertIn(self.read_token, self.read_contexts())
        # A read token cannot stop anything: 403 is "not allowed".
        p = self.ck("ws", "stop", "echo", code=4)
        self.assertOneLine(p.err, "HTTP 403")

        # A wrong token is refused before anything is saved.
        before = self.read_contexts()
        p = self.ck("login", self.url, "--token", "ck_wrong", "--name", "bad", code=4)
        self.assertOneLine(p.err, "(unauthenticated, HTTP 401)")
        self.assertIn("nothing was saved", p.err)
        self.assertEqual(self.read_contexts(), before)
        # --token - with nothing on stdin; --user without a terminal.
        p = self.ck("login", self.url, "--token", "-", code=2)
        self.assertOneLine(p.err, "no token on stdin")
        p = self.ck("login", self.url, "--user", "ann", code=2)
        self.assertOneLine(p.err, "stdin is not a terminal")
        p = self.ck("login", "localhost:8080", "--token", "x", code=2)
        self.assertOneLine(p.err, "not a control plane URL")
        # Neither --token nor --user on a terminal: the token is asked for, without echo.
        code, shown = self.ck_pty("login", self.url, "--name", "typed", answers=[("API token for", self.admin)])
        self.assertEqual(code, 0, shown)
        self.assertNotIn(self.admin, shown, "the token was echoed")
        self.assertEqual([c["name"] for c in self.contexts() if c["current"]], ["typed"])

    def test_login_with_a_password_through_a_terminal_then_logout_revokes(self):
        code, shown = self.ck_pty("login", self.url, "--user", "ann", "--name", "ann",
                                  answers=[("Password for ann", PASSWORD)])
        self.assertEqual(code, 0, shown)
        self.assertNotIn(PASSWORD, shown, "the password was echoed")
        self.assertIn("logged in to", shown)
        text = self.read_contexts()
        self.assertNotIn(PASSWORD, text, "the password was stored")
        self.assertEqual(stat.S_IMODE(os.stat(self.contexts_file).st_mode), 0o600)
        ctx = [c for c in self.contexts() if c["name"] == "ann"][0]
        self.assertEqual((ctx["user"], ctx["current"], ctx["logged_in"]), ("ann", True, True))
        token = [l.split(":", 1)[1].strip() for l in text.splitlines() if l.strip().startswith("token:")][0]
        self.assertTrue(token.startswith("ck_"), text)
        r = call(self.d, "GET", "/auth/me", token)
        self.assertEqual(r.status, 200, r.text())
        self.assertTrue(r.json()["token"]["name"].startswith("cli@"), r.text())
        self.assertEqual(set(r.json()["token"]["scopes"]), {"read", "deploy"})
        # The login session was only the way to the token: the member works with the token.
        self.ck("ws", "ls")
        # Logging in again under the same name revokes the token the first login made.
        code, shown = self.ck_pty("login", self.url, "--user", "ann", "--name", "ann",
                                  answers=[("Password for ann", PASSWORD)])
        self.assertEqual(code, 0, shown)
        self.assertIn("of the earlier login was revoked", shown)
        self.assertEqual(call(self.d, "GET", "/auth/me", token).status, 401)
        text = self.read_contexts()
        token = [l.split(":", 1)[1].strip() for l in text.splitlines() if l.strip().startswith("token:")][0]
        self.assertEqual(call(self.d, "GET", "/auth/me", token).status, 200)

        p = self.ck("logout")
        self.assertIn("revoked the token", p.out)
        self.assertEqual(call(self.d, "GET", "/auth/me", token).status, 401, "the token still works")
        self.assertNotIn(token, self.read_contexts())
        ctx = [c for c in self.contexts() if c["name"] == "ann"][0]
        self.assertFalse(ctx["logged_in"])
        self.assertIn("already logged out", self.ck("logout").out)

        # A wrong password: not allowed (4), one line, nothing saved.
        code, shown = self.ck_pty("login", self.url, "--user", "ben", "--name", "ben",
                                  answers=[("Password for ben", "not the password")])
        self.assertEqual(code, 4, shown)
        errors = [l for l in shown.splitlines() if l.startswith("cloudyknight:")]
        self.assertEqual(len(errors), 1, shown)
        self.assertIn("HTTP 401", errors[0])
        self.assertNotIn("ben", [c["name"] for c in self.contexts()])

    def test_logout_of_a_token_given_to_login_keeps_it_on_the_server(self):
        token = member_token(self.d, self.admin, "ben", "given")
        self.ck("login", self.url, "--token", token)
        p = self.ck("logout")
        self.assertNotIn("revoked", p.out)
        self.assertEqual(call(self.d, "GET", "/auth/me", token).status, 200)

    def test_contexts_use_remove_and_the_environment_overrides_them(self):
        self.login_admin("one")
        self.ck("login", self.url, "--token", self.read_token, "--name", "two")
        self.assertEqual([c["name"] for c in self.contexts() if c["current"]], ["two"])
        p = self.ck("context", "list")
        self.assertRegex(p.out, r"(?m)^\* two ")
        self.assertRegex(p.out, r"(?m)^  one ")
        self.assertIn("context 'one' is current", self.ck("context", "use", "one").out)
        self.assertEqual([c["name"] for c in self.contexts() if c["current"]], ["one"])
        p = self.ck("context", "use", "nope", code=3)
        self.assertOneLine(p.err, "no context named 'nope'")
        self.ck("context", "remove", "two")
        self.assertEqual([c["name"] for c in self.contexts()], ["one"])
        self.ck("context", "remove", "two", code=3)
        self.assertEqual(stat.S_IMODE(os.stat(self.contexts_file).st_mode), 0o600)

        # CK_TOKEN overrides the context's (admin) token: a read token may not restart.
        p = self.ck("ws", "restart", "echo", env={"CK_TOKEN": self.read_token}, code=4)
        self.assertOneLine(p.err, "HTTP 403")
        # CK_URL overrides the context's server: nothing listens there.
        p = self.ck("ws", "ls", env={"CK_URL": "http://127.0.0.1:9"}, code=1)
        self.assertOneLine(p.err, "is the server running")
        # Without any context, CK_URL and CK_TOKEN are enough.
        self.ck("context", "remove", "one")
        p = self.ck("ws", "ls", "--json", env=self.as_admin())
        self.assertIn("echo", [w["name"] for w in json.loads(p.out)])
        # And with neither, an API command says how to get one.
        p = self.ck("ws", "ls", code=2)
        self.assertOneLine(p.err, "cloudyknight login URL")

    def test_a_broken_contexts_file_is_one_clear_line(self):
        os.makedirs(os.path.dirname(self.contexts_file))
        with open(self.contexts_file, "w") as f:
            f.write("contexts: [\n")
        p = self.ck("ws", "ls", code=1)
        self.assertOneLine(p.err, self.contexts_file)
        self.assertIn("invalid YAML", p.err)

    # -- workspace commands -----------------------------------------------------------------
    def seen(self, name):
        """A created workspace, once the monitor has seen it (create answers before that)."""
        return wait_until(lambda: self.d.workspace(name), 30, f"{name} to show in the API")

    def gone(self, name):
        wait_until(lambda: self.d.workspace(name) is None, 30, f"{name} to leave the API")

    def test_ls_status_open_sync(self):
        self.login_admin()
        p = self.ck("ws", "ls")
        header, *rows = p.out.splitlines()
        self.assertEqual(header.split(), ["NAME", "STATUS", "TYPE", "ACTIVITY", "PUBLIC", "URL"])
        names = {r.split()[0]: r.split() for r in rows}
        self.assertEqual(names["echo"][1], "running")
        self.assertEqual(names["echo"][5], f"{self.url}/echo/")
        listed = json.loads(self.ck("ws", "ls", "--json").out)
        self.assertLessEqual({"echo", "static"}, {w["name"] for w in listed})
        # `list` goes to the API too when a context is current and no storage flag is given.
        self.assertEqual(json.loads(self.ck("ws", "list", "--json").out), listed)

        p = self.ck("ws", "status", "echo")
        self.assertRegex(p.out, r"(?m)^status: +running$")
        self.assertEqual(json.loads(self.ck("ws", "status", "echo", "--json").out)["status"], "running")
        self.assertIn("workspaces", json.loads(self.ck("ws", "status", "--json").out))
        self.assertRegex(self.ck("ws", "status").out, r"(?m)^workspaces: +\d+ \(\d+ running")
        p = self.ck("ws", "status", "nope", code=3)
        self.assertOneLine(p.err, "(not_found, HTTP 404)")
        p = self.ck("ws", "status", "Bad_Name", code=2)

        self.assertEqual(self.ck("ws", "open", "echo").out.strip(), f"{self.url}/echo/")
        self.assertEqual(self.ck("ws", "open", "nope", code=3).out, "")
        # --browser hands the URL to xdg-open (a stand-in here that records its arguments).
        bin_dir = os.path.join(self.cfg, "bin")
        os.makedirs(bin_dir)
        opener = os.path.join(bin_dir, "xdg-open")
        with open(opener, "w") as f:
            f.write(f'#!/bin/sh\necho "$@" > {self.cfg}/opened\n')
        os.chmod(opener, 0o755)
        path = bin_dir + os.pathsep + os.environ.get("PATH", "")
        self.ck("ws", "open", "echo", "--browser", env={"PATH": path})
        with open(os.path.join(self.cfg, "opened")) as f:
            self.assertEqual(f.read().strip(), f"{self.url}/echo/")
        p = self.ck("ws", "open", "echo", "--browser", env={"PATH": "/nonexistent"}, code=1)
        self.assertOneLine(p.err, "xdg-open is not installed")
        p = self.ck("ws", "sync", "echo")
        self.assertIn("echo: rescanned", p.out)

    def test_create_delete_asks_or_takes_yes(self):
        self.login_admin()
        for name in ("made-by-cli", "copy-of-static"):
            self.addCleanup(call, self.d, "DELETE", f"/workspaces/{name}", self.admin)
        p = self.ck("ws", "create", "made-by-cli")
        self.assertIn("created made-by-cli", p.out)
        self.seen("made-by-cli")
        self.assertIn(f"{self.url}/made-by-cli/", p.out)
        p = self.ck("ws", "create", "made-by-cli", code=1)
        self.assertOneLine(p.err, "HTTP 409")
        p = self.ck("ws", "create", "copy-of-static", "--clone-of", "static", "--json")
        self.assertEqual(json.loads(p.out)["name"], "copy-of-static")
        self.seen("copy-of-static")
        self.addCleanup(call, self.d, "DELETE", "/workspaces/from-template", self.admin)
        p = self.ck("ws", "create", "from-template", "--template", "static")
        self.assertIn("created from-template (static", p.out)
        self.seen("from-template")
        p = self.ck("ws", "create", "x", "--template", "no-such-template", code=3)
        self.assertOneLine(p.err, "no template named 'no-such-template'")
        p = self.ck("ws", "create", "x", "--template", "a", "--clone-of", "b", code=2)

        # Without a terminal and without --yes: refused, nothing deleted.
        p = self.ck("ws", "delete", "made-by-cli", code=2)
        self.assertOneLine(p.err, "--yes")
        self.assertIsNotNone(self.d.workspace("made-by-cli"))
        # On a terminal: "n" keeps it, "y" deletes it.
        code, shown = self.ck_pty("ws", "delete", "made-by-cli", answers=[("[y/N]", "n")])
        self.assertEqual(code, 1, shown)
        self.assertIn("not deleted", shown)
        self.assertIsNotNone(self.d.workspace("made-by-cli"))
        code, shown = self.ck_pty("ws", "delete", "made-by-cli", answers=[("[y/N]", "y")])
        self.assertEqual(code, 0, shown)
        self.assertIn("deleted made-by-cli", shown)
        self.gone("made-by-cli")
        self.ck("ws", "delete", "copy-of-static", "--yes")
        self.gone("copy-of-static")
        p = self.ck("ws", "delete", "copy-of-static", "--yes", code=3)
        self.assertOneLine(p.err, "no workspace named")
        p = self.ck("ws", "delete", "static", "--dry-run", code=2)

    def test_stop_start_restart(self):
        self.login_admin()
        before = self.d.wait_status("echo", "running", 60)["pid"]
        self.assertIn("stop requested", self.ck("ws", "stop", "echo").out)
        self.d.wait_status("echo", "stopped", 60)
        self.assertIn("start requested", self.ck("ws", "start", "echo").out)
        w = self.d.wait_workspace("echo", lambda w: w.get("status") == "running" and w.get("pid") not in (None, before),
                                  60, "echo to run again")
        self.assertIn("restart requested", self.ck("ws", "restart", "echo").out)
        self.d.wait_workspace("echo", lambda x: x.get("status") == "running" and x.get("pid") not in (None, w["pid"]),
                              60, "echo to run under a new pid")
        p = self.ck("ws", "restart", "nope", code=3)
        self.assertOneLine(p.err, "HTTP 404")

    def test_run_streams_output_in_order_and_passes_the_exit_code(self):
        self.login_admin()
        self.d.wait_status("echo", "running", 60)
        wait_until(lambda: self.ck("ws", "run", "echo", "--", "true", code=None).returncode == 0, 60,
                   "a command to run in echo")
        script = "echo one; sleep 2; echo two >&2; echo three; exit 7"
        proc = subprocess.Popen([binary(), "ws", "run", "echo", "--", "sh", "-c", script], env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        t0 = time.monotonic()
        first = proc.stdout.readline()
        first_at = time.monotonic() - t0
        rest, err = proc.communicate(timeout=CLI_TIMEOUT)
        proc.stdout.close()
        proc.stderr.close()
        total = time.monotonic() - t0
        self.assertEqual(first, b"one\n")
        self.assertEqual(proc.returncode, 7, err)
        self.assertEqual(rest, b"two\nthree\n", "the output came out of order, or stderr was lost")
        self.assertLess(first_at, total - 1.0, "the first line waited for the command's end: not streamed")
        self.assertEqual(self.ck("ws", "run", "echo", "--", "sh", "-c", "exit 0").returncode, 0)
        # Arguments starting with dashes belong to the command.
        self.assertEqual(self.ck("ws", "run", "echo", "--", "ls", "-d", "-a", "/").out, "/\n")
        # Killed at the timeout: 137, and a line saying so.
        p = self.ck("ws", "run", "echo", "--timeout", "1s", "--", "sleep", "10", code=137)
        self.assertIn("killed after 1s", p.err)
        self.ck("ws", "run", "echo", "--timeout", "soon", "--", "true", code=2)
        self.ck("ws", "run", "echo", code=2)
        p = self.ck("ws", "run", "static", "--", "true", code=1)
        self.assertOneLine(p.err, "(conflict, HTTP 409)")

    def test_logs_and_follow_across_a_restart(self):
        self.login_admin()
        self.d.wait_status("echo", "running", 60)
        self.assertEqual(self.d.get("/echo/before-the-tail").status, 200)
        wait_until(lambda: "before-the-tail" in self.ck("ws", "logs", "echo").out, 20, "the request in the log")
        tail = self.ck("ws", "logs", "echo", "--tail", "1").out
        self.assertEqual(len(tail.splitlines()), 1, tail)
        self.ck("ws", "logs", "echo", "--tail", "0", code=2)

        proc = subprocess.Popen([binary(), "ws", "logs", "echo", "-f", "--tail", "5"], env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
        got = []

        def reader():
            for line in proc.stdout:
                got.append(line.decode("utf-8", "replace"))

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        try:
            wait_until(lambda: any("before-the-tail" in l for l in got), 20, "the tail in logs -f")
            pid = self.d.wait_status("echo", "running", 60)["pid"]
            self.ck("ws", "restart", "echo")
            self.d.wait_workspace("echo", lambda w: w.get("status") == "running" and w.get("pid") not in (None, pid),
                                  60, "echo to restart")
            wait_until(lambda: self.d.get("/echo/after-the-restart").status == 200, 30, "echo to answer")
            wait_until(lambda: any("after-the-restart" in l for l in got), 20,
                       "a line written after the restart in logs -f")
            self.assertIsNone(proc.poll(), "logs -f ended by itself")
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(10)
            t.join(5)
            proc.stdout.close()
            proc.stderr.close()

    def test_a_member_cannot_see_another_members_private_workspace(self):
        ann = member_token(self.d, self.admin, "ann", "ann-private")
        ben = member_token(self.d, self.admin, "ben", "ben-private")
        as_ann = {"CK_URL": self.url, "CK_TOKEN": ann}
        as_ben = {"CK_URL": self.url, "CK_TOKEN": ben}
        self.ck("ws", "create", "anns-secret", "--private", env=as_ann)
        try:
            wait_until(lambda: "anns-secret" in self.ck("ws", "ls", env=as_ann).out, 30,
                       "ann to see her new workspace")
            self.assertNotIn("anns-secret", self.ck("ws", "ls", env=as_ben).out)
            for args in (["ws", "status", "anns-secret"], ["ws", "restart", "anns-secret"],
                         ["ws", "logs", "anns-secret"], ["ws", "delete", "anns-secret", "--yes"],
                         ["ws", "run", "anns-secret", "--", "true"]):
                p = self.ck(*args, env=as_ben, code=3)
                self.assertOneLine(p.err, "no workspace named")
            # A token may revoke itself (logout), never another member's.
            ann_id = call(self.d, "GET", "/auth/me", ann).json()["token"]["id"]
            self.assertEqual(call(self.d, "DELETE", f"/tokens/{ann_id}", ben).status, 403)
            self.assertEqual(call(self.d, "GET", "/auth/me", ann).status, 200)
        finally:
            self.ck("ws", "delete", "anns-secret", "--yes", env=as_ann)

    def test_completion_and_help(self):
        p = self.ck("completion", "bash")
        script = p.out
        self.assertIn("complete -o filenames -F _cloudyknight cloudyknight", script)
        words = subprocess.run(
            ["bash", "-c", script + '\nCOMP_WORDS=(cloudyknight ws lo); COMP_CWORD=2; _cloudyknight; echo "${COMPREPLY[@]}"'
             '\nCOMP_WORDS=(cloudyknight ws run x --t); COMP_CWORD=4; _cloudyknight; echo "${COMPREPLY[@]}"'],
            capture_output=True, text=True, timeout=30)
        self.assertEqual(words.stdout.splitlines(), ["logs", "--timeout"], words.stderr)
        self.assertIn("bashcompinit", self.ck("completion", "zsh").out)
        fish = self.ck("completion", "fish").out
        self.assertIn("complete -c cloudyknight -f -n '__ck_at \"/workspace\"' -a 'logs'", fish)
        self.ck("completion", "tcsh", code=2)
        self.assertIn("Exit codes: 0 ok, 1 failure, 2 usage", self.ck("--help").out)
        for args in (["login"], ["logout"], ["context"], ["context", "list"], ["ws"], ["ws", "ls"], ["ws", "run"],
                     ["ws", "logs"], ["ws", "delete"], ["ws", "sync"], ["ws", "upload"], ["serve"], ["completion"]):
            out = self.ck(*args, "--help").out
            self.assertIn("Examples:", out, args)
        self.assertIn("no storage flag", self.ck("ws", "list", "--help").out)
        for api_only in ("ls", "status", "create", "start", "stop", "restart", "logs", "run", "open"):
            self.assertIn("Talks to a server", self.ck("ws", api_only, "--help").out, api_only)


class RemoteCliTlsTest(CliCase):
    """A server behind TLS: --cacert (kept in the context) works; without it, one clear line."""

    @classmethod
    def init_class_state(cls):
        cls.ca = None
        cls.d = None
        cls.daemons = []

    @classmethod
    def set_up(cls):
        cls.ca = TestCA()
        cert, key, _ = cls.ca.issue("localhost", "localhost", ["localhost"])
        cls.d = TlsDaemon(cls.ca, server_name="localhost", fixtures=["static"],
                          config={"gateway": {"tls": {"cert": cert, "key": key}}})
        cls.daemons = [cls.d]
        cls.d.start()
        cls.admin = admin_token(cls.d)
        cls.url = f"https://localhost:{cls.d.port}"

    @classmethod
    def tearDownClass(cls):
        try:
            if cls.d is not None:
                cls.d.stop()
                cls.d.cleanup()
        finally:
            if cls.ca is not None:
                cls.ca.cleanup()

    def test_cacert_is_needed_and_kept(self):
        p = self.ck("login", self.url, "--token", self.admin, code=1)
        self.assertOneLine(p.err, "--cacert")
        self.assertFalse(os.path.exists(self.contexts_file))
        self.ck("login", self.url, "--token", self.admin, "--cacert", self.ca.cert)
        self.assertEqual(self.contexts()[0]["cacert"], self.ca.cert)
        self.assertIn("static", self.ck("ws", "ls").out)
        # CK_CACERT overrides it: another CA does not sign this server.
        other = TestCA()
        try:
            p = self.ck("ws", "ls", env={"CK_CACERT": other.cert}, code=1)
            self.assertOneLine(p.err, "not signed by")
        finally:
            other.cleanup()
        self.ck("login", self.url, "--token", self.admin, "--cacert", "/nonexistent/ca.pem", code=2)


if __name__ == "__main__":
    unittest.main()
