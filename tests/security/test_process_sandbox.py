"""Issue 13 rows 1 and 5 (process runtime): a workspace's code, its `run` commands and its
install step are sandboxed. Written as the attack first: on the old runtime a deploy token's
`POST /workspaces/{name}/run` answered uid=0(root), read /etc/shadow, printed the daemon's
AWS_SECRET_ACCESS_KEY and wrote host files; an hmr copy followed `leak -> /etc/shadow`.

The fixture app (fixtures/probe) reports what it can reach (probe.py): run as the app (GET)
and as a `run` command, each is checked for: a uid in runtime.uid_range, no /etc/shadow, none
of the daemon's environment, no writes to /etc, /root, /usr, no sight of DATA or another
workspace, only its own processes, mount/ptrace/unshare refused, its own hostname.

Run: cd tests/security && PYTHONPATH=../integration CK_BINARY=../../build/cloudyknight \
     python3 -m unittest -v test_process_sandbox
"""

import json
import os
import shutil
import socket
import unittest

from harness import SECRET_MARKER, Daemon, DaemonTestCase, wait_until
from test_auth import admin_token, call

HERE = os.path.dirname(os.path.abspath(__file__))
PROBE = os.path.join(HERE, "fixtures", "probe")
MARKER = "ck-daemon-secret-5b1e77d0"
UID_RANGE = (231000, 231999)


def read_text(path):
    with open(path) as f:
        return f.read()


def secret_paths(d):
    """Host paths no workspace may see: DATA, the workspaces, another app, a secret."""
    return [d.data, d.ws, os.path.join(d.data, "run", "other", "app"),
            os.path.join(d.ws, "other"), os.path.join(d.tmp, "secret.txt"), d.tmp]


class ProbeDaemon(Daemon):
    """Two copies of the probe app ("probe", "other") and an hmr one, with symlinks out."""

    def prepare(self):
        super().prepare()
        for name in ("probe", "other", "hmr"):
            target = self.add_folder(PROBE, name)
            os.symlink("/etc/shadow", os.path.join(target, "leak"))
            os.symlink(os.path.join(self.tmp, "secret.txt"), os.path.join(target, "secret-link"))
        with open(os.path.join(self.ws, "hmr", "workspace.json"), "w") as f:
            json.dump({"reload": "hmr"}, f)
        # The install step reports what it can reach into the app folder.
        paths = " ".join(secret_paths(self))
        with open(os.path.join(self.ws, "probe", "workspace.json"), "w") as f:
            json.dump({"install": f"python3 probe.py {paths} > install-probe.json"}, f)


@unittest.skipUnless(os.geteuid() == 0, "the full sandbox needs a root daemon")
class ProcessSandboxTest(DaemonTestCase):
    daemon_options = dict(env={"AWS_SECRET_ACCESS_KEY": MARKER},
                          config={"runtime": {"uid_range": f"{UID_RANGE[0]}-{UID_RANGE[1]}"}})

    @classmethod
    def setUpClass(cls):
        cls.daemon = ProbeDaemon(**cls.daemon_options)
        try:
            cls.daemon.start()
            for name in ("probe", "other", "hmr"):
                cls.daemon.wait_status(name, "running", 60)
            cls.token = admin_token(cls.daemon)
            r = call(cls.daemon, "POST", "/tokens", token=cls.token,
                     body={"name": "deployer", "scopes": ["deploy"]})
            assert r.status == 201, r.text()
            cls.deploy = r.json()["token"]
        except BaseException:
            cls.daemon.stop()
            cls.daemon.cleanup()
            raise

    def secret_paths(self):
        return secret_paths(self.daemon)

    def probe_app(self, name="probe"):
        query = "&".join("path=" + p for p in self.secret_paths())
        r = self.daemon.get(f"/{name}/probe?{query}", timeout=20)
        self.assertStatus(r, 200)
        return r.json()

    def probe_run(self, name="probe", token=None):
        r = call(self.daemon, "POST", f"/workspaces/{name}/run", token=token or self.deploy,
                 body={"command": ["python3", "probe.py"] + self.secret_paths(), "timeout": "30s"})
        self.assertStatus(r, 200)
        doc = r.json()
        self.assertEqual(doc["exit_code"], 0, doc)
        return json.loads(doc["output"].strip().splitlines()[-1])

    def check_confined(self, p, who):
        self.assertNotEqual(p["uid"], 0, f"{who} runs as root")
        self.assertNotEqual(p["gid"], 0, f"{who} runs with gid 0")
        self.assertTrue(UID_RANGE[0] <= p["uid"] <= UID_RANGE[1], f"{who}: uid {p['uid']} not in the range")
        self.assertEqual(p["uid"], p["euid"])
        self.assertEqual(p["gid"], p["uid"])
        self.assertNotIn(0, p["groups"])
        self.assertFalse(p["shadow_exists"], f"{who} sees /etc/shadow")
        self.assertNotEqual(p["shadow_read"], "ok")
        self.assertNotIn(MARKER, json.dumps(p["env"]), f"{who} got the daemon's environment")
        self.assertNotIn("AWS_SECRET_ACCESS_KEY", p["env"])
        # The daemon's CK_* settings never leak; CK_BASE_PATH is the app's own (issue 14).
        self.assertFalse([k for k in p["env"] if k.startswith("CK_") and k != "CK_BASE_PATH"], p["env"])
        self.assertEqual(p["env"].get("CK_BASE_PATH"), "/probe/")
        self.assertEqual(p["env"].get("HOME"), "/home/app")
        for folder in ("/etc", "/root", "/usr", "/usr/local", "/"):
            self.assertNotEqual(p["write"][folder], "ok", f"{who} wrote into {folder}")
        self.assertEqual(p["write"]["/tmp"], "ok", f"{who} has no writable /tmp")
        self.assertEqual(p["write"]["/app"], "ok", f"{who} cannot write its own folder")
        self.assertNotEqual(p["root_listing"], "ok", f"{who} lists /root")
        for path, seen in p["visible"].items():
            self.assertFalse(seen, f"{who} sees the host path {path}")
        self.assertEqual(p["cwd"], "/app")
        # Only the workspace's own tree: its init, the app, the command.
        self.assertLess(len(p["processes"]), 10, p["processes"])
        self.assertFalse([c for c in p["processes"] if " serve " in f" {c} "], p["processes"])
        self.assertEqual(p["mount"], "EPERM", f"{who}: mount was not refused")
        self.assertEqual(p["ptrace"], "EPERM", f"{who}: ptrace was not refused")
        self.assertEqual(p["unshare"], "EPERM", f"{who}: unshare was not refused")
        self.assertNotEqual(p["hostname"], socket.gethostname(), f"{who} shares the host's name")
        caps = {l.split(":")[0]: l.split(":")[1].strip() for l in p["status_caps"]}
        for c in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
            self.assertEqual(int(caps[c], 16), 0, f"{who}: {c} {caps[c]}")
        self.assertEqual(caps["NoNewPrivs"], "1")
        self.assertEqual(caps["Seccomp"], "2")

    def test_run_command_is_sandboxed(self):
        self.check_confined(self.probe_run(), "a run command")

    def test_app_is_sandboxed(self):
        self.check_confined(self.probe_app(), "the app")

    def test_run_shares_the_apps_uid_and_each_workspace_has_its_own(self):
        app, run, other = self.probe_app(), self.probe_run(), self.probe_app("other")
        self.assertEqual(app["uid"], run["uid"])
        self.assertNotEqual(app["uid"], other["uid"], "two workspaces share a uid")
        self.assertEqual(app["hostname"], run["hostname"])
        uid_file = os.path.join(self.daemon.data, "run", "probe", "uid")
        self.assertEqual(int(read_text(uid_file).strip()), app["uid"])
        st = os.lstat(os.path.join(self.daemon.data, "run", "probe", "app", "app.py"))
        self.assertEqual(st.st_uid, app["uid"], "the app folder is not the workspace's")

    def test_status_and_log_say_which_layers_applied(self):
        status, doc = self.daemon.api("/workspaces/probe/status")
        self.assertEqual(status, 200, doc)
        isolation = doc["container"]["isolation"]
        for layer in ("own uid", "pid, mount, ipc and uts namespaces", "pivot_root", "no_new_privs",
                      "every capability dropped", "seccomp", "rlimits", "environment built from nothing"):
            self.assertIn(layer, isolation)
        self.assertNotIn("WEAK", isolation)
        log = read_text(os.path.join(self.daemon.data, "logs", "probe.log"))
        self.assertIn("sandbox: own uid", log)
        self.assertIn("seccomp filter", log)

    def test_symlinks_out_of_the_source_are_never_followed_on_copy(self):
        # Row 5 at start: refresh_app_dir copies a link as a link, which resolves inside the
        # sandbox (no /etc/shadow there, no host secret.txt).
        app_copy = os.path.join(self.daemon.data, "run", "probe", "app")
        self.assertTrue(os.path.islink(os.path.join(app_copy, "leak")))
        r = call(self.daemon, "POST", "/workspaces/probe/run", token=self.deploy,
                 body={"command": ["sh", "-c", "cat leak secret-link; true"]})
        self.assertStatus(r, 200)
        self.assertNotIn(SECRET_MARKER, r.json()["output"])
        self.assertNotIn("root:", r.json()["output"])

    def test_hmr_never_copies_a_symlinks_target(self):
        src = os.path.join(self.daemon.ws, "hmr")
        app_copy = os.path.join(self.daemon.data, "run", "hmr", "app")
        os.symlink("/etc/shadow", os.path.join(src, "leak2"))
        os.symlink(os.path.join(self.daemon.tmp, "secret.txt"), os.path.join(src, "secret2"))
        os.makedirs(os.path.join(src, "via"))
        os.symlink("/etc", os.path.join(src, "via", "etc"))
        with open(os.path.join(src, "marker.txt"), "w") as f:
            f.write("hmr-marker\n")
        wait_until(lambda: os.path.exists(os.path.join(app_copy, "marker.txt")), 30,
                   "the hmr copy of marker.txt")
        for name in ("leak2", "secret2", "via/etc"):
            path = os.path.join(app_copy, name)
            if os.path.lexists(path):
                self.assertTrue(os.path.islink(path), f"{name} landed as the target's content")
        for name in ("leak2", "secret2"):
            r = call(self.daemon, "POST", "/workspaces/hmr/run", token=self.deploy,
                     body={"command": ["sh", "-c", f"cat {name} via/etc/shadow; true"]})
            self.assertStatus(r, 200)
            self.assertNotIn(SECRET_MARKER, r.json()["output"])
            self.assertNotIn("root:", r.json()["output"])

    def test_install_step_is_sandboxed(self):
        # The install step wrote what it could reach into the app folder.
        with open(os.path.join(self.daemon.data, "run", "probe", "app", "install-probe.json")) as f:
            p = json.load(f)
        self.check_confined(p, "the install step")
        self.assertEqual(p["uid"], self.probe_app()["uid"])


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("setpriv"), "needs root and setpriv")
class WeakSandboxTest(unittest.TestCase):
    """A daemon that cannot build the sandbox (here: it runs as an unprivileged user, so it
    can neither switch uids nor create namespaces) refuses to start workspaces with a message
    naming what is missing and the setting, unless runtime.allow_weak_sandbox is set."""

    def start_unprivileged(self, config):
        d = Daemon(fixtures=["echo"], config=config)
        d.prepare()
        for root, dirs, files in os.walk(d.tmp):
            for n in dirs + files:
                os.lchown(os.path.join(root, n), 65534, 65534)
        os.chown(d.tmp, 65534, 65534)
        command = d.command
        d.command = lambda: ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] + command()
        d.start()
        self.addCleanup(d.cleanup)
        self.addCleanup(d.stop)
        return d

    def test_refused_without_allow_weak_sandbox(self):
        d = self.start_unprivileged(None)
        w = d.wait_workspace("echo", lambda w: "allow_weak_sandbox" in json.dumps(w), 30,
                             "the refusal in the workspace's status")
        self.assertNotEqual(w.get("status"), "running")
        text = json.dumps(w)
        self.assertIn("not root", text)
        log = read_text(os.path.join(d.data, "logs", "echo.log"))
        self.assertIn("runtime.allow_weak_sandbox", log)

    def test_weak_sandbox_runs_and_says_so(self):
        d = self.start_unprivileged({"runtime": {"allow_weak_sandbox": True}})
        d.wait_status("echo", "running", 60)
        status, doc = d.api("/workspaces/echo/status")
        self.assertEqual(status, 200, doc)
        self.assertIn("WEAK", doc["container"]["isolation"])
        self.assertIn("not root", doc["container"]["isolation"])
        self.assertIn("WEAK", read_text(os.path.join(d.data, "logs", "echo.log")))


if __name__ == "__main__":
    unittest.main()
