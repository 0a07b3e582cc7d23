"""Blue/green restarts with the docker runtime (issue 19, row 4).

A change to a node workspace in restart mode starts the new version in a second container
(ck-<name>.b, then ck-<name> again) with a port of its own, while the old container serves;
once the new one answers the route switches and the old container is stopped and removed. The
bluegreen fixture takes DELAY seconds to listen, so a stop-then-start restart would hold
requests that long; blue/green answers them at once, from the old version until the switch and
from the new one after it. A new version that crashes leaves the old one serving, then ends
`failed` (the plain restart the monitor falls back to shows its error); a fix brings it back.
A changed package.json installs into a new dependency volume while the old container serves
on its own; the old volume goes after the switch. A Dockerfile workspace's image is built again
beside the running container; with limits.egress false the route switches to the new
container's address on the internal network. A workspace deleted, or the daemon stopped, while
the new version starts removes both containers at once. A control plane SIGKILLed while the new
version starts leaves two containers: the next one keeps exactly one (the newer, which copied
the latest source) and nothing else; SIGKILLed before the new container exists, it leaves only
the old one, which the next control plane must not adopt (it runs the old source).

Skipped unless a Docker engine answers and has cloudyknight/node:bookworm (ctest label once).

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_bluegreen_docker
"""

import http.client
import json
import os
import shutil
import time
import unittest

from harness import TIME_SCALE, wait_until, write_json
from test_monitor import MonitorCase
from test_wake_hold import SteadyClient, app_starts

START_TIMEOUT = 180


def docker():
    try:
        from test_docker_runtime import NODE_IMAGE, docker_with
    except ImportError as e:
        raise unittest.SkipTest(f"cannot load the Docker helpers: {e}")
    return docker_with(NODE_IMAGE)


def app_containers(dk, name, running_only=False):
    return [c for c in dk.containers(name, running_only=running_only)
            if (c.get("Labels") or {}).get("cloudyknight.role") == "app"]


def loopback_port(c):
    for p in c.get("Ports") or []:
        if p.get("IP") == "127.0.0.1" and p.get("PublicPort"):
            return p["PublicPort"]
    return 0


def read_log(d, name):
    with open(os.path.join(d.data, "logs", f"{name}.log"), errors="replace") as f:
        return f.read()


def listens(port):
    try:
        socket_conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        socket_conn.request("GET", "/")
        socket_conn.getresponse().read()
        socket_conn.close()
        return True
    except (OSError, http.client.HTTPException):
        return False


class DockerBlueGreenCase(MonitorCase):
    """A workspace (the bluegreen fixture unless told) under the docker runtime, named for this
    run; every container, network, volume and image of it is removed afterwards."""
    delay = 2

    @classmethod
    def blue_green_daemon(cls, suffix, fixture="bluegreen", config=None, workspace=None):
        cls.docker = docker()
        cls.name = f"t{os.urandom(3).hex()}-{suffix}"
        cls.class_cleanups.append(cls.remove_docker_things)
        d = cls.new_daemon(fixtures=[(fixture, cls.name)], runtime="docker", config=config)
        d.prepare()
        write_json(os.path.join(d.ws, cls.name, "workspace.json"), workspace or {"reload": "restart"})
        if fixture == "bluegreen":
            with open(os.path.join(d.ws, cls.name, "DELAY"), "w") as f:
                f.write(f"{cls.delay}\n")
        return d

    @classmethod
    def running_daemon(cls, suffix, **kw):
        """blue_green_daemon(), started, with the workspace running."""
        d = cls.blue_green_daemon(suffix, **kw)
        d.start()
        d.wait_status(cls.name, "running", timeout=START_TIMEOUT)
        return d

    @classmethod
    def remove_docker_things(cls):
        cls.docker.remove_workspace(cls.name)

    @classmethod
    def volumes(cls):
        return cls.docker.workspace_volumes(cls.name)

    def save(self, d, text, file="VERSION"):
        path = os.path.join(d.ws, self.name, file)
        with open(path + ".tmp", "w") as f:
            f.write(text + "\n")
        os.replace(path + ".tmp", path)

    def change_under_load(self, d, name, save, new_marker):
        """Calls save() while a client sends requests: every answer is 200, from the old version
        until the switch and from the new one (new_marker in the body) after it."""
        client = SteadyClient(d, f"/{name}/").start()
        time.sleep(0.3)
        save()
        self.wait_answer(d, f"/{name}/", new_marker, timeout=START_TIMEOUT)
        time.sleep(0.5)
        seen = client.stop()
        bad = [x for x in seen if x[1] != 200]
        self.assertEqual(bad[:5], [], f"every request during the change answers 200 ({len(bad)} did not)")
        marker = new_marker.decode()
        flags = [marker in body + " " for _, _, body, _ in seen]
        switch = flags.index(True)
        self.assertTrue(switch > 0 and not any(flags[:switch]) and all(flags[switch:]),
                        "the old version until the switch, the new one after")
        return seen

    def begin_replace(self, d, version):
        """From version 0 answering, saves `version` and waits until its container runs beside the
        old one (not answering yet: the fixture's DELAY)."""
        self.wait_answer(d, f"/{self.name}/", b"bluegreen 0 ", timeout=START_TIMEOUT)
        time.sleep(1.5)
        self.save(d, version)
        wait_until(lambda: len(app_containers(self.docker, self.name, running_only=True)) == 2, 60,
                   "the new version's container to run beside the old one")

    def assert_one_app_container(self, d, what):
        """Exactly one container of the workspace (the running app), the one the daemon routes to."""
        left = self.docker.containers(self.name)
        self.assertEqual(len(left), 1, f"{what}: {[(c['Names'], c['State']) for c in left]}")
        c = left[0]
        self.assertEqual(c["State"], "running", c["Names"])
        self.assertEqual((c.get("Labels") or {}).get("cloudyknight.role"), "app", c["Names"])
        self.assertEqual(loopback_port(c), d.workspace(self.name)["port"], f"{what}: the routed port")
        return c


class TestBlueGreenDocker(DockerBlueGreenCase):

    @classmethod
    def set_up(cls):
        cls.d = cls.running_daemon("bg")

    def test_clients_see_the_old_version_until_the_new_one_answers(self):
        d, name = self.d, self.name
        # From a known version (the other test may have run first), then settled.
        self.save(d, "10")
        self.wait_answer(d, f"/{name}/", b"bluegreen 10 ", timeout=START_TIMEOUT)
        d.wait_workspace(name, lambda w: w.get("status") == "running" and not w.get("phase"),
                         timeout=60, what=f"{name} to settle")
        time.sleep(1.5)  # past the settle window: the next save restarts at once
        wait_until(lambda: len(self.docker.containers(name)) == 1, 30, "one container before the change")
        old = self.assert_one_app_container(d, "before the change")
        old_port = loopback_port(old)
        log_mark = len(d.stderr_text())
        both = []  # the moments two app containers ran at once
        client = SteadyClient(d, f"/{name}/").start()
        seen = client.seen
        time.sleep(0.3)
        self.save(d, "11")
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if len(app_containers(self.docker, name, running_only=True)) == 2:
                both.append(time.monotonic() - client.t0)
            if seen and "bluegreen 11 " in seen[-1][2] + " ":
                break
            time.sleep(0.1)
        self.wait_answer(d, f"/{name}/", b"bluegreen 11 ", timeout=START_TIMEOUT)
        time.sleep(1.0)
        client.stop()
        switch = client.check_switch(self, "10", "11")
        self.assertTrue(both, "the new container never ran beside the old one")
        served_by_old_after_save = [x for x in seen[:switch] if x[0] > 0.3 + self.delay / 2]
        self.assertTrue(served_by_old_after_save, f"the old version served while the new one started: {seen[:5]}")
        slowest = max(x[3] for x in seen)
        print(f"\n[blue/green docker] {len(seen)} requests over the change; the switch after "
              f"{seen[switch][0] - 0.3:.2f} s; the slowest answer {slowest * 1000:.0f} ms", flush=True)
        self.assertLess(slowest, 1.5 * TIME_SCALE, "a request waited for the restart (a held stop-then-start restart)")
        # The old container is gone (and its port closed); the new one, under the other name, is
        # the only one and the one routed to.
        wait_until(lambda: self.docker.inspect(old["Id"]) is None, 30, "the old container to be removed")
        new = self.assert_one_app_container(d, "after the switch")
        self.assertNotEqual(new["Id"], old["Id"])
        self.assertNotEqual(sorted(new["Names"]), sorted(old["Names"]), "the new container took the old one's name")
        self.assertEqual({n.lstrip("/") for n in new["Names"] + old["Names"]},
                         {f"ck-{name}", f"ck-{name}.b"})
        self.assertFalse(listens(old_port), f"the old container's port {old_port} still answers")
        self.assertEqual(d.workspace(name)["status"], "running")
        starts = app_starts(d.stderr_text()[log_mark:], name)
        self.assertEqual(len(starts), 1, starts)
        self.assertIn("new version running on", starts[0])
        # The next change alternates back to the first name.
        self.save(d, "12")
        self.wait_answer(d, f"/{name}/", b"bluegreen 12 ", timeout=START_TIMEOUT)
        wait_until(lambda: self.docker.inspect(new["Id"]) is None, 30, "the previous container to be removed")
        third = self.assert_one_app_container(d, "after the second switch")
        self.assertEqual(sorted(third["Names"]), sorted(old["Names"]))

    def test_a_new_version_that_does_not_start_fails_as_a_restart_would(self):
        d, name = self.d, self.name
        self.save(d, "2")
        self.wait_answer(d, f"/{name}/", b"bluegreen 2", timeout=START_TIMEOUT)
        self.save(d, "crash")
        w = d.wait_workspace(name, lambda w: w.get("status") == "failed", timeout=START_TIMEOUT,
                             what=f"{name} to fail with its broken version")
        self.assertIn("code 3", w.get("error", "") + w.get("log_tail", ""), w)
        self.save(d, "3")
        self.wait_answer(d, f"/{name}/", b"bluegreen 3", timeout=START_TIMEOUT)
        self.assertEqual(d.workspace(name)["status"], "running")
        wait_until(lambda: len(self.docker.containers(name)) == 1, 30, "one container once fixed")
        self.assert_one_app_container(d, "once fixed")
        log = read_log(d, name)
        self.assertIn("VERSION says crash", log, "the new version's output goes to the workspace log")
        self.assertIn("the new version did not start", log)


    def test_changed_dependencies_install_into_a_new_volume(self):
        d, name = self.d, self.name
        self.save(d, "20")
        self.wait_answer(d, f"/{name}/", b"bluegreen 20 ", timeout=START_TIMEOUT)
        d.wait_workspace(name, lambda w: w.get("status") == "running" and not w.get("phase"),
                         timeout=60, what=f"{name} to settle")
        time.sleep(1.5)
        prefix = f"ck-deps-{name}-"
        before = [v for v in self.volumes() if v.startswith(prefix)]
        self.assertEqual(len(before), 1, self.volumes())
        old = self.assert_one_app_container(d, "before the change")
        self.assertIn(before[0], {m.get("Name") for m in old.get("Mounts") or []})
        # package.json changes: a new dependency key, installed while the old container serves.
        pkg_path = os.path.join(d.ws, name, "package.json")
        with open(pkg_path) as f:
            pkg = json.load(f)
        pkg["description"] += " (changed)"
        with open(pkg_path + ".tmp", "w") as f:
            json.dump(pkg, f)
        os.replace(pkg_path + ".tmp", pkg_path)
        self.save(d, "21")
        r = self.wait_answer(d, f"/{name}/", b"bluegreen 21 ", timeout=START_TIMEOUT)
        self.assertEqual(r.status, 200)

        def one_new_volume():
            deps = [v for v in self.volumes() if v.startswith(prefix)]
            return deps if len(deps) == 1 and deps != before else None
        after = wait_until(one_new_volume, 30, "the old dependency volume to go once the old container is removed")
        wait_until(lambda: self.docker.inspect(old["Id"]) is None, 30, "the old container to be removed")
        new = self.assert_one_app_container(d, "after the change")
        self.assertIn(after[0], {m.get("Name") for m in new.get("Mounts") or []})
        log = read_log(d, name)
        self.assertIn(f"installing dependencies in ck-{name}-install", log)


class TestBlueGreenDockerfile(DockerBlueGreenCase):
    """A Dockerfile workspace: its image is built again while the old container runs from the
    previous build (it keeps that image by id); the switch follows the new build."""

    @classmethod
    def set_up(cls):
        cls.d = cls.running_daemon("bgdf", fixture="docker/dockerfile")

    def test_dockerfile_workspace_switches_after_its_new_build(self):
        d, name = self.d, self.name
        self.wait_answer(d, f"/{name}/", b"DOCKERFILE-MARKER", timeout=START_TIMEOUT)
        time.sleep(1.5)
        old = self.assert_one_app_container(d, "before the change")

        def save():
            with open(os.path.join(d.ws, name, "added-v2.txt"), "w") as f:
                f.write("v2\n")
        self.change_under_load(d, name, save, b"added-v2.txt")
        wait_until(lambda: self.docker.inspect(old["Id"]) is None, 30, "the old container to be removed")
        new = self.assert_one_app_container(d, "after the switch")
        self.assertNotEqual(new["ImageID"], old["ImageID"], "the new container runs the new build")
        self.assertIn("new version running on", d.stderr_text())


class TestBlueGreenDockerInternal(DockerBlueGreenCase):
    """limits.egress false: nothing is published; the new container is reached on its own
    address on the workspace's internal network, and the route switches to it."""

    @classmethod
    def set_up(cls):
        cls.d = cls.running_daemon("bgint", config={"limits": {"egress": False}})

    def test_internal_network_switches_to_the_new_address(self):
        d, name = self.d, self.name
        self.wait_answer(d, f"/{name}/", b"bluegreen 0 ", timeout=START_TIMEOUT)
        time.sleep(1.5)
        apps = app_containers(self.docker, name)
        self.assertEqual(len(apps), 1, apps)
        old = self.docker.inspect(apps[0]["Id"])
        self.assertFalse(old["HostConfig"].get("PortBindings"), "nothing published on an internal network")
        self.change_under_load(d, name, lambda: self.save(d, "1"), b"bluegreen 1 ")
        wait_until(lambda: self.docker.inspect(old["Id"]) is None, 30, "the old container to be removed")
        apps = app_containers(self.docker, name)
        self.assertEqual(len(apps), 1, [(c["Names"], c["State"]) for c in apps])
        new = self.docker.inspect(apps[0]["Id"])
        new_ip = new["NetworkSettings"]["Networks"][f"ck-net-{name}"]["IPAddress"]
        self.assertIn(f"new version running on {new_ip}:", d.stderr_text())


class TestBlueGreenDockerStopped(DockerBlueGreenCase):
    """The workspace's folder is deleted while its new version starts beside the old one: both
    containers go at once (before the new one would answer), and the new one does not come
    back when it would have answered."""
    delay = 10

    @classmethod
    def set_up(cls):
        cls.d = cls.running_daemon("bgstop")

    def test_deleted_during_replace_removes_both_containers(self):
        d, name, dk = self.d, self.name, self.docker
        self.begin_replace(d, "7")
        t = time.monotonic()
        shutil.rmtree(os.path.join(d.ws, name))
        wait_until(lambda: not dk.containers(name), 30, "both containers to be removed")
        took = time.monotonic() - t
        self.assertLess(took, self.delay - 3, "the new version was removed only once it answered, "
                        "not when the workspace went")
        time.sleep(self.delay + 2)  # the new version would have answered by now
        left = dk.containers(name)
        self.assertEqual(left, [], [(c["Names"], c["State"]) for c in left])
        self.assertIsNone(d.workspace(name))


class TestBlueGreenDockerShutdown(DockerBlueGreenCase):
    """SIGTERM while a new version starts beside the old one: the daemon exits 0 and removes
    both containers."""
    delay = 6

    @classmethod
    def set_up(cls):
        cls.d = cls.running_daemon("bgterm")

    def test_shutdown_during_replace_removes_both_containers(self):
        d, name, dk = self.d, self.name, self.docker
        self.begin_replace(d, "8")
        res = d.stop()
        self.assertEqual(res.returncode, 0, d.diagnostics())
        left = dk.containers(name)
        self.assertEqual(left, [], [(c["Names"], c["State"]) for c in left])


class TestBlueGreenDockerKilled(DockerBlueGreenCase):
    """The control plane is SIGKILLed while the new version starts beside the old one (the new
    container runs, not yet answering); the next control plane on the same data keeps one
    container, the newer, and leaves nothing behind."""
    delay = 6

    @classmethod
    def set_up(cls):
        cls.d1 = cls.running_daemon("bgkill")

    def test_killed_mid_replace_leaves_one_container(self):
        d1, name, dk = self.d1, self.name, self.docker
        self.wait_answer(d1, f"/{name}/", b"bluegreen 0 ", timeout=START_TIMEOUT)
        time.sleep(1.5)  # past the settle window
        old = self.assert_one_app_container(d1, "before the change")
        volumes_before = self.volumes()
        self.save(d1, "5")
        two = wait_until(lambda: (lambda cs: cs if len(cs) == 2 else None)(app_containers(dk, name, running_only=True)),
                         60, "the new version's container to run beside the old one")
        d1.kill()
        self.assertEqual(d1.stopped.returncode, -9)
        new_id = next(c["Id"] for c in two if c["Id"] != old["Id"])
        self.assertEqual(len(app_containers(dk, name, running_only=True)), 2,
                         "both containers outlive the killed control plane")
        d2 = self.new_daemon(reuse=d1, runtime="docker")
        d2.start()
        d2.wait_status(name, "running", timeout=START_TIMEOUT)
        self.wait_answer(d2, f"/{name}/", b"bluegreen 5 ", timeout=START_TIMEOUT)
        wait_until(lambda: len(dk.containers(name)) == 1, 30, "one container after the restart")
        kept = self.assert_one_app_container(d2, "after the restart")
        self.assertEqual(kept["Id"], new_id, "the newer container (the latest source) is the one kept")
        self.assertIsNone(dk.inspect(old["Id"]), "the old container was left behind")
        self.assertEqual(self.volumes(), volumes_before, "volumes left behind or lost")
        self.assertIn("adopted container", read_log(d2, name))
        # It goes on as usual: the next change switches again, to the first name.
        time.sleep(1.5)
        self.save(d2, "6")
        self.wait_answer(d2, f"/{name}/", b"bluegreen 6 ", timeout=START_TIMEOUT)
        wait_until(lambda: dk.inspect(new_id) is None, 30, "the adopted container to be replaced")
        self.assert_one_app_container(d2, "after the next change")


class TestBlueGreenDockerKilledBeforeTheNewContainer(DockerBlueGreenCase):
    """The control plane is SIGKILLed while the new version installs, before its container
    exists (as during a Dockerfile build): only the old container runs, with the old source.
    The next control plane must not adopt it (it was being replaced) but start the latest
    source. The install sleeps 8 s, and the change adds a lockfile so that the new version
    installs into a new volume: removing the old volume's install record is not enough, since
    the volume itself holds the mark that it is installed (the install container then skips the
    install in under a second, and the new container may exist before the test looks)."""

    @classmethod
    def set_up(cls):
        cls.d1 = cls.running_daemon("bgearly", workspace={"reload": "restart", "install": "sleep 8"})

    def test_killed_before_the_new_container_starts_the_latest_source(self):
        d1, name, dk = self.d1, self.name, self.docker
        self.wait_answer(d1, f"/{name}/", b"bluegreen 0 ", timeout=START_TIMEOUT)
        time.sleep(1.5)
        old = self.assert_one_app_container(d1, "before the change")
        # A lockfile of its own: a new dependency key (a new volume to install into) without a
        # new configuration (the install is workspace.json's, whatever the lockfile).
        with open(os.path.join(d1.ws, name, "package-lock.json"), "w") as f:
            json.dump({"name": "bluegreen", "lockfileVersion": 3, "packages": {}}, f)
        self.save(d1, "9")
        d1.wait_workspace(name, lambda w: w.get("phase") == "new version: installing dependencies", timeout=30,
                          what=f"{name} to install its new version")
        time.sleep(1)
        # The new version has no container yet: the daemon started one (the old), one app runs.
        self.assertEqual(d1.stderr_text().count(f"[ws={name}] started container"), 1,
                         "the new version's container exists already")
        apps = app_containers(dk, name, running_only=True)
        self.assertEqual([c["Id"] for c in apps], [old["Id"]],
                         f"{[(c['Names'], c['State'], c['Id'][:12]) for c in app_containers(dk, name)]}")
        self.assertTrue(os.path.exists(os.path.join(d1.data, "run", name, "superseded")))
        d1.kill()
        d2 = self.new_daemon(reuse=d1, runtime="docker")
        d2.start()
        d2.wait_status(name, "running", timeout=START_TIMEOUT)
        r = self.wait_answer(d2, f"/{name}/", timeout=START_TIMEOUT)
        self.assertIn(b"bluegreen 9 ", r.body, "the replaced container (the old source) was adopted")
        wait_until(lambda: len(dk.containers(name)) == 1, 30, "one container after the restart")
        self.assert_one_app_container(d2, "after the restart")
        self.assertIsNone(dk.inspect(old["Id"]), "the replaced container was left behind")
        self.assertFalse(os.path.exists(os.path.join(d2.data, "run", name, "superseded")))
        self.assertIn("a new version was replacing it", d2.stderr_text())

if __name__ == "__main__":
    unittest.main()
