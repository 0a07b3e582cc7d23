"""The docker runtime end to end: workspaces run in hardened containers (node, python,
Dockerfile), answer through the gateway, fail clearly (out of memory, crash loop with
backoff, missing image), follow their folders (edited, deleted), share installed
dependencies (installed first in a container of their own), survive a killed control
plane (adopted, not restarted), are removed on a graceful shutdown, are left alone by
another control plane on the same engine, and `workspace compose` prints how they run.

Talks to the Docker Engine directly (/var/run/docker.sock, API 1.41) to inspect, list by
label, exec and clean up. Needs the images cloudyknight/node:bookworm and
cloudyknight/python:bookworm (`cloudyknight images build node python`); never pulls.
Every workspace name starts with a random per-run prefix (containers are global), and
every container, image built and unique dependency volume for those names is removed
afterwards (the shared ck-deps-node-* and ck-cache-* volumes are kept).
Without a Docker engine the tests fail, unless CK_NO_DOCKER=1 (then they are skipped).

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_docker_runtime
"""

import http.client
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
import unittest
import urllib.parse

from harness import EXAMPLES, FIXTURES, ClassSetUp, Daemon, binary, body_excerpt, free_port, wait_until
from test_auth import admin_token

# The engine DOCKER_HOST names (unix:// only, as the daemon's own client), else the default.
DOCKER_SOCKET = (os.environ["DOCKER_HOST"][len("unix://"):]
                 if os.environ.get("DOCKER_HOST", "").startswith("unix://") else "/var/run/docker.sock")
DOCKER_API = "/v1.41"
NODE_IMAGE = "cloudyknight/node:bookworm"
PYTHON_IMAGE = "cloudyknight/python:bookworm"
MISSING_IMAGE = "cloudyknight-missing/none:1"
MIB = 1 << 20

# Container names are global to the engine and other test files run in parallel.
RUN = "t" + os.urandom(3).hex()

NODE_TIMEOUT = 180  # a cold dependency volume means `npm ci` from the registry
START_TIMEOUT = 60


# ----------------------------------------------------------------------- Docker Engine


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over the engine's unix socket."""

    def __init__(self, path=None, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path or DOCKER_SOCKET

    def connect(self):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.unix_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


class DockerError(AssertionError):
    pass


def demux(data):
    """(stdout, stderr) of a non-TTY attach/exec stream: frames of an 8-byte header
    (stream type, 3 zero bytes, big-endian size) and the payload."""
    out = {1: bytearray(), 2: bytearray()}
    i = 0
    while i + 8 <= len(data):
        stream = data[i]
        (size,) = struct.unpack(">I", data[i + 4:i + 8])
        out[2 if stream == 2 else 1] += data[i + 8:i + 8 + size]
        i += 8 + size
    return bytes(out[1]), bytes(out[2])


class Docker:
    """The few Engine API calls these tests need."""

    def request(self, method, path, body=None, query=None, timeout=30):
        """(status, raw body); the body is read to the end (or to EOF for streams)."""
        target = DOCKER_API + path
        if query:
            target += "?" + urllib.parse.urlencode(query)
        conn = UnixHTTPConnection(timeout=timeout)
        try:
            headers = {"Host": "docker"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            conn.request(method, target, body=data, headers=headers)
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def call(self, method, path, body=None, query=None, ok=(200, 201, 204), timeout=30):
        status, raw = self.request(method, path, body, query, timeout)
        if status not in ok:
            raise DockerError(f"Docker {method} {path} -> {status}: {raw[:500]!r}")
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def ping(self, timeout=5):
        status, raw = self.request("GET", "/_ping", timeout=timeout)
        if status != 200:
            raise OSError(f"GET /_ping -> {status} {raw[:200]!r}")

    def image_exists(self, ref):
        status, _ = self.request("GET", f"/images/{ref}/json")
        return status == 200

    def containers(self, workspace, running_only=False):
        """Every container (any state) labelled cloudyknight.workspace=<workspace>."""
        filters = json.dumps({"label": [f"cloudyknight.workspace={workspace}"]})
        query = {"filters": filters}
        if not running_only:
            query["all"] = "1"
        return self.call("GET", "/containers/json", query=query)

    def inspect(self, ident):
        """The container's inspect document, or None if it does not exist."""
        status, raw = self.request("GET", f"/containers/{ident}/json")
        if status == 404:
            return None
        if status != 200:
            raise DockerError(f"inspect {ident} -> {status}: {raw[:300]!r}")
        return json.loads(raw)

    def app_container(self, workspace):
        """Inspect of the workspace's one app container, or None (AssertionError if several)."""
        apps = [c for c in self.containers(workspace)
                if (c.get("Labels") or {}).get("cloudyknight.role") == "app"]
        if len(apps) > 1:
            raise AssertionError(f"{len(apps)} app containers for {workspace}: "
                                 f"{[(c['Names'], c['State']) for c in apps]}")
        return self.inspect(apps[0]["Id"]) if apps else None

    def exec(self, ident, cmd, timeout=30):
        """(exit code, stdout, stderr) of `cmd` run in the container."""
        created = self.call("POST", f"/containers/{ident}/exec",
                            {"Cmd": cmd, "AttachStdout": True, "AttachStderr": True})
        status, raw = self.request("POST", f"/exec/{created['Id']}/start",
                                   {"Detach": False, "Tty": False}, timeout=timeout)
        if status != 200:
            raise DockerError(f"exec start {cmd} -> {status}: {raw[:300]!r}")
        stdout, stderr = demux(raw)
        info = wait_until(lambda: (lambda i: i if not i.get("Running") else None)(
            self.call("GET", f"/exec/{created['Id']}/json")), 10, f"exec {cmd} to finish")
        return info.get("ExitCode"), stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")

    def remove_container(self, ident):
        self.request("DELETE", f"/containers/{ident}", query={"force": "1"})

    def remove_image(self, ref):
        self.request("DELETE", f"/images/{ref}", query={"force": "1"})

    def remove_volume(self, name):
        self.request("DELETE", f"/volumes/{name}")

    def workspace_volumes(self, name):
        """The names of workspace `name`'s volumes (ck-deps-<name>-..., ck-cache-<name>-...), sorted."""
        vols = (self.call("GET", "/volumes") or {}).get("Volumes") or []
        return sorted(v["Name"] for v in vols if f"-{name}-" in v.get("Name", ""))

    def remove_workspace(self, name):
        """Everything a daemon made for workspace `name` (a test's cleanup; a killed or removed
        test daemon never cleans up): its containers, networks (ck-net-<name>...), volumes
        (ck-deps-<name>-..., ck-cache-<name>-...) and the images labelled with it. Left behind,
        every run would take more of the engine's disk and address space."""
        for c in self.containers(name):
            self.remove_container(c["Id"])
        for net in self.call("GET", "/networks") or []:
            if net.get("Name", "").startswith(f"ck-net-{name}"):
                self.request("DELETE", f"/networks/{net['Id']}")
        for v in self.workspace_volumes(name):
            self.remove_volume(v)
        filters = json.dumps({"label": [f"cloudyknight.workspace={name}"]})
        for img in self.call("GET", "/images/json", query={"filters": filters, "all": "1"}) or []:
            self.remove_image(img["Id"])


DOCKER = Docker()


def docker_with(image):
    """DOCKER, or unittest.SkipTest when no engine answers or `image` is missing."""
    try:
        DOCKER.ping()
    except (OSError, http.client.HTTPException) as e:
        raise unittest.SkipTest(f"no Docker engine answers on {DOCKER_SOCKET} ({e})")
    if not DOCKER.image_exists(image):
        raise unittest.SkipTest(f"the image {image} is missing (cloudyknight images build {image.split('/')[1].split(':')[0]})")
    return DOCKER


def setUpModule():
    try:
        DOCKER.ping()
    except (OSError, http.client.HTTPException) as e:
        if os.environ.get("CK_NO_DOCKER") == "1":
            raise unittest.SkipTest(f"CK_NO_DOCKER=1 and no Docker engine answers on "
                                    f"{DOCKER_SOCKET} ({e})")
        raise RuntimeError(f"no Docker engine answers on {DOCKER_SOCKET} ({e}); start one, or "
                           f"set CK_NO_DOCKER=1 to skip the docker runtime tests") from None
    missing = [i for i in (NODE_IMAGE, PYTHON_IMAGE) if not DOCKER.image_exists(i)]
    if missing:
        raise RuntimeError(f"images missing from the engine: {missing}; run "
                           f"`cloudyknight images build node python` (these tests never pull)")


# ----------------------------------------------------------------------------- helpers


def env_of(inspect):
    return dict(e.split("=", 1) for e in (inspect.get("Config") or {}).get("Env") or [])


def state_summary(inspect):
    s = inspect.get("State") or {}
    health = (s.get("Health") or {}).get("Status")
    return (f"{inspect.get('Name')} {inspect.get('Id', '')[:12]} status={s.get('Status')} "
            f"exit={s.get('ExitCode')} oom={s.get('OOMKilled')} started={s.get('StartedAt')} "
            f"finished={s.get('FinishedAt')} health={health} error={s.get('Error')!r}")


def docker_diagnostics(names):
    out = ["----- docker containers"]
    for name in sorted(names):
        try:
            for c in DOCKER.containers(name):
                i = DOCKER.inspect(c["Id"])
                out.append(state_summary(i) if i else f"{c['Names']} (gone)")
        except (OSError, AssertionError, http.client.HTTPException) as e:
            out.append(f"{name}: {e}")
    return "\n".join(out)


def deps_volumes(container):
    """The ck-deps-* volumes a listed or inspected container mounts."""
    return {m["Name"] for m in container.get("Mounts") or []
            if m.get("Type") == "volume" and (m.get("Name") or "").startswith("ck-deps-")}


def write_json(path, doc):
    """Writes a file atomically (a scan never reads half of it)."""
    tmp = path + ".tmp-write"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def log_text(d, name):
    try:
        with open(os.path.join(d.data, "logs", f"{name}.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")
    except OSError:
        return ""


def run_cli(*args, timeout=30):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CK_")}
    return subprocess.run([binary(), *args], capture_output=True, text=True, timeout=timeout,
                          env=env, stdin=subprocess.DEVNULL)


class DockerCase(ClassSetUp):
    """Daemons with the docker runtime, shared per class. Subclasses implement set_up().
    tearDownClass stops every daemon (SIGTERM) and removes every container and image of
    the class's workspace names, even after a failure; a failing test prints the daemons'
    diagnostics and the containers' states."""

    @classmethod
    def init_class_state(cls):
        cls.daemons, cls.names, cls.images, cls.volumes = [], set(), set(), set()
        cls.unique_deps = set()  # workspaces whose ck-deps-* volumes are theirs alone

    @classmethod
    def ws_name(cls, suffix):
        name = f"{RUN}-{suffix}"
        cls.names.add(name)
        return name

    @classmethod
    def new_daemon(cls, **kw):
        d = Daemon(runtime="docker", **kw)
        cls.daemons.append(d)
        return d

    @classmethod
    def tearDownClass(cls):
        problems = []
        # Dependency volumes of their own, found while their containers still exist.
        for name in cls.unique_deps:
            try:
                for c in DOCKER.containers(name):
                    cls.volumes |= deps_volumes(c)
            except (OSError, AssertionError, http.client.HTTPException):
                pass
        for d in cls.daemons:
            if d.stopped is not None or d.proc is None:  # killed on purpose, or never started
                continue
            res = d.stop()
            if res.returncode != 0 or res.leftovers:
                problems.append(f"daemon on port {d.port}: exit code {res.returncode} "
                                f"(None = did not exit within 20 s), leftovers {res.leftovers}\n"
                                f"{d.diagnostics()}")
        left = []
        for name in sorted(cls.names):
            try:
                for c in DOCKER.containers(name):
                    left.append(f"{c['Names']} {c['State']}")
                    DOCKER.remove_container(c["Id"])
            except (OSError, AssertionError, http.client.HTTPException) as e:
                problems.append(f"cleaning up {name}: {e}")
        for ref in sorted(cls.images):
            try:
                DOCKER.remove_image(ref)
            except (OSError, http.client.HTTPException):
                pass
        for vol in sorted(cls.volumes):
            try:
                DOCKER.remove_volume(vol)
            except (OSError, http.client.HTTPException):
                pass
        # The rest of each workspace (its networks, download-cache volume, labelled images): left
        # behind, every run would take more of the engine's disk and address space.
        for name in sorted(cls.names):
            try:
                DOCKER.remove_workspace(name)
            except (OSError, http.client.HTTPException):
                pass
        if left:
            sys.stderr.write(f"\n[{cls.__name__}] removed containers the daemons left: {left}\n")
        for d in cls.daemons:
            d.cleanup()
        if problems:
            raise AssertionError(f"{cls.__name__}: " + "\n".join(problems))

    @classmethod
    def diagnostics(cls):
        return super().diagnostics() + "\n" + docker_diagnostics(getattr(cls, "names", ()))

    # -- shortcuts -------------------------------------------------------------------
    def wait_answer(self, d, path, marker=None, timeout=30):
        """GETs `path` through the gateway until it answers 200 (with `marker` in the body)."""
        last = []

        def answered():
            try:
                r = d.get(path, timeout=10)
            except (OSError, http.client.HTTPException) as e:
                last[:] = [repr(e)]
                return None
            last[:] = [f"{r.status} {body_excerpt(r.body)}"]
            return r if r.status == 200 and (marker is None or marker in r.body) else None
        try:
            return wait_until(answered, timeout, f"GET {path} to answer 200")
        except AssertionError as e:
            raise AssertionError(f"{e}; last answer: {last[:1]}") from None

    def wait_app_container(self, name, predicate=lambda i: True, timeout=30, what=None):
        """Inspect of the workspace's running app container once predicate(inspect) holds."""
        def found():
            try:
                i = DOCKER.app_container(name)
            except AssertionError:  # an old and a new one for a moment; callers count at the end
                return None
            return i if i and (i.get("State") or {}).get("Running") and predicate(i) else None
        return wait_until(found, timeout, what or f"a running app container for {name}")

    def assertHardened(self, i, memory, name):
        """The hardening every workspace container carries (DESIGN.md "Container contract")."""
        hc = i["HostConfig"]
        self.assertEqual(hc.get("CapDrop"), ["ALL"], f"{name}: CapDrop")
        self.assertEqual(hc.get("SecurityOpt"), ["no-new-privileges:true"], f"{name}: SecurityOpt")
        self.assertEqual(hc.get("Memory"), memory, f"{name}: Memory")
        self.assertEqual(hc.get("MemorySwap"), memory, f"{name}: MemorySwap (no swap on top)")
        self.assertGreater(hc.get("NanoCpus") or 0, 0, f"{name}: NanoCpus")
        self.assertGreater(hc.get("PidsLimit") or 0, 0, f"{name}: PidsLimit")
        self.assertIs(hc.get("Init"), True, f"{name}: Init")
        self.assertFalse(hc.get("Privileged"), f"{name}: Privileged")
        self.assertNotEqual(hc.get("NetworkMode"), "host", name)
        self.assertNotEqual(hc.get("PidMode"), "host", name)
        self.assertFalse(hc.get("Binds"), f"{name}: Binds")
        bindings = hc.get("PortBindings") or {}
        self.assertTrue(bindings, f"{name}: nothing published")
        for port, binds in bindings.items():
            for b in binds or []:
                self.assertEqual(b.get("HostIp"), "127.0.0.1", f"{name}: {port} published on {b}")
        for port, binds in ((i.get("NetworkSettings") or {}).get("Ports") or {}).items():
            for b in binds or []:
                self.assertEqual(b.get("HostIp"), "127.0.0.1", f"{name}: {port} bound to {b}")
        for m in i.get("Mounts") or []:
            self.assertNotIn("docker.sock", m.get("Source") or "", f"{name}: {m}")
            self.assertNotIn("docker.sock", m.get("Destination") or "", f"{name}: {m}")
            self.assertIn(m.get("Type"), ("bind", "volume"), f"{name}: {m}")

    def host_port(self, i, container_port):
        binds = i["HostConfig"]["PortBindings"].get(f"{container_port}/tcp") or []
        self.assertEqual(len(binds), 1, f"PortBindings {i['HostConfig']['PortBindings']}")
        return int(binds[0]["HostPort"])


# ----------------------------------------------------------------------- workspaces


class TestDockerWorkspaces(DockerCase):
    """One daemon: node, python and Dockerfile workspaces, and the broken ones."""

    LIMITS = {"memory": "256m", "cpus": 0.5, "pids": 128, "install_memory": "384m"}
    RELEASE = "release-the-install"

    @classmethod
    def set_up(cls):
        cls.node = cls.ws_name("node")
        cls.node2 = cls.ws_name("node2")  # added at run time (dependency cache)
        cls.py = cls.ws_name("py")
        cls.df = cls.ws_name("df")
        cls.oom = cls.ws_name("oom")
        cls.envws = cls.ws_name("env")
        cls.missing = cls.ws_name("missing")
        cls.gone = cls.ws_name("gone")
        cls.crash = cls.ws_name("crash")  # added at run time (backoff from the first crash)
        cls.static = cls.ws_name("static")
        cls.slow = cls.ws_name("slow-install")
        cls.unique_deps.add(cls.slow)
        cls.images.add(f"cloudyknight-ws/{cls.df}:latest")
        cls.d = d = cls.new_daemon(
            examples=[("hello-node", cls.node)],
            fixtures=[("docker/pyapp", cls.py), ("docker/dockerfile", cls.df),
                      ("docker/pyapp", cls.oom), ("docker/pyapp", cls.envws),
                      ("docker/pyapp", cls.missing), ("docker/pyapp", cls.gone),
                      ("docker/pyapp", cls.slow), ("www", cls.static)],
            config={"limits": cls.LIMITS})
        d.prepare()
        write_json(os.path.join(d.ws, cls.oom, "workspace.json"), {"resources": {"memory": "48m"}})
        write_json(os.path.join(d.ws, cls.envws, "workspace.json"), {"env": {"CK_TEST_MARK": "one"}})
        write_json(os.path.join(d.ws, cls.missing, "workspace.json"), {"image": MISSING_IMAGE})
        # An install that waits (at most 120 s) until the test creates RELEASE in the folder.
        # RUN in the command gives it a dependency volume of its own, removed afterwards.
        write_json(os.path.join(d.ws, cls.slow, "workspace.json"), {"install": (
            f"echo 'install of {RUN} waiting'; for i in $(seq 1 600); do "
            f"[ -f /workspace/{cls.RELEASE} ] && exit 0; sleep 0.2; done; exit 1")})
        d.start()

    # -- 1. node: gateway, hardening, labels, exec ---------------------------------------
    def node_container(self):
        self.d.wait_status(self.node, "running", timeout=NODE_TIMEOUT)
        return self.wait_app_container(self.node)

    def test_node_workspace_answers_through_gateway(self):
        self.d.wait_status(self.node, "running", timeout=NODE_TIMEOUT)
        r = self.wait_answer(self.d, f"/{self.node}/", b"Hello from Express")
        self.assertIn("text/html", r.header("Content-Type", ""))
        self.assertIn(f"/{self.node}".encode(), r.body, "X-Forwarded-Prefix shown on the page")
        r = self.d.get(f"/{self.node}/api/hello?name=docker")
        self.assertEqual(r.status, 200, body_excerpt(r.body))
        self.assertEqual(r.json()["name"], "docker")
        self.assertEqual(r.json()["prefix"], f"/{self.node}")

    def test_node_answers_after_closing_idle_connections(self):
        # Node closes a keep-alive connection idle for 5 s; Docker's userland proxy, between the
        # published port and the app, then sends the gateway only a FIN and swallows whatever
        # comes after, without an answer or a reset. The gateway's pooled connections must not
        # be used once that FIN came: a GET sent there hung for the whole request timeout.
        self.d.wait_status(self.node, "running", timeout=NODE_TIMEOUT)
        self.wait_answer(self.d, f"/{self.node}/", b"Hello from Express")
        for _ in range(2):
            for i in range(6):  # one connection each: the pools of both gateway workers
                self.assertEqual(self.d.get(f"/{self.node}/api/hello?name=a{i}").status, 200)
            time.sleep(6.5)  # past node's keepAliveTimeout: the FINs have come
            for i in range(6):
                t = time.monotonic()
                r = self.d.get(f"/{self.node}/api/hello?name=b{i}", timeout=30)
                self.assertEqual(r.status, 200, body_excerpt(r.body))
                # A request sent on a half-closed connection waits for the daemon's whole
                # request timeout (60 s); a busy machine answers well within 10.
                self.assertLess(time.monotonic() - t, 10, "a request went to a half-closed connection")

    def test_node_container_is_hardened(self):
        i = self.node_container()
        w = self.d.workspace(self.node)
        self.assertEqual(i["Name"], f"/ck-{self.node}")
        self.assertEqual(i["Config"]["Image"], NODE_IMAGE,
                         "node:20-slim is absent, so the offline image is used")
        self.assertHardened(i, 256 * MIB, self.node)
        hc = i["HostConfig"]
        self.assertFalse(hc.get("CapAdd"), f"typed workspaces add no capability: {hc.get('CapAdd')}")
        self.assertEqual(hc["NanoCpus"], 500_000_000, "limits.cpus 0.5")
        self.assertEqual(hc["PidsLimit"], 128, "limits.pids")
        # Published on 127.0.0.1 only, from the daemon's range, the port the API reports.
        self.assertEqual(list(hc["PortBindings"]), ["8080/tcp"])
        port = self.host_port(i, 8080)
        lo, hi = self.d.runtime_ports
        self.assertTrue(lo <= port <= hi, f"host port {port} outside runtime.ports {lo}-{hi}")
        self.assertEqual(w["port"], port)
        # Mounts: the folder read-only at /workspace, everything else named volumes.
        mounts = i["Mounts"]
        binds = [m for m in mounts if m["Type"] == "bind"]
        self.assertEqual(len(binds), 1, f"exactly one bind mount: {mounts}")
        self.assertEqual(binds[0]["Destination"], "/workspace")
        self.assertTrue(os.path.samefile(binds[0]["Source"], os.path.join(self.d.ws, self.node)),
                        binds[0])
        self.assertIs(binds[0]["RW"], False, "the source is mounted read-only")
        volumes = {m["Destination"]: m["Name"] for m in mounts if m["Type"] == "volume"}
        self.assertEqual(set(volumes), {"/app/node_modules", "/root/.npm"}, mounts)
        self.assertRegex(volumes["/app/node_modules"], rf"^ck-deps-{re.escape(self.node)}-node-[0-9a-f]+$")
        self.assertEqual(volumes["/root/.npm"], f"ck-cache-{self.node}-node")
        env = env_of(i)
        self.assertEqual(env.get("PORT"), "8080")
        self.assertEqual(env.get("HOST"), "0.0.0.0")
        self.assertEqual(i["Config"]["Healthcheck"]["Test"], ["CMD-SHELL", "test -f /app/.container-ready"])
        # Every 30 s (Docker's default; each check is an exec): the first one 30 s after the start.
        self.assertEqual(i["Config"]["Healthcheck"]["Interval"], 30 * 10**9)
        health = wait_until(lambda: (lambda s: s if s == "healthy" else None)(
            ((DOCKER.inspect(i["Id"]) or {}).get("State", {}).get("Health") or {}).get("Status")),
            50, f"ck-{self.node} to be healthy")
        self.assertEqual(health, "healthy")

    def test_node_container_labels(self):
        i = self.node_container()
        n = self.node
        labels = i["Config"]["Labels"]
        expected = {
            "cloudyknight.managed": "true",
            "cloudyknight.workspace": n,
            "cloudyknight.role": "app",
            "cloudyknight.port": "8080",
            "traefik.enable": "true",
            f"traefik.http.routers.{n}.rule": f"PathPrefix(`/{n}`)",
            f"traefik.http.routers.{n}.middlewares": f"{n}-strip",
            f"traefik.http.middlewares.{n}-strip.stripprefix.prefixes": f"/{n}",
            f"traefik.http.services.{n}.loadbalancer.server.port": "8080",
        }
        for k, v in expected.items():
            self.assertEqual(labels.get(k), v, f"label {k}")
        self.assertRegex(labels.get("cloudyknight.spec", ""), r"^[0-9a-zA-Z]{6,}$")

    def test_node_exec_source_read_only_and_no_capabilities(self):
        i = self.node_container()
        code, out, err = DOCKER.exec(i["Id"], ["touch", "/workspace/x"])
        self.assertNotEqual(code, 0, f"touch /workspace/x succeeded: {out!r} {err!r}")
        self.assertIn("Read-only file system", err)
        self.assertFalse(os.path.exists(os.path.join(self.d.ws, self.node, "x")))
        code, out, err = DOCKER.exec(i["Id"], ["test", "-f", "/app/.container-ready"])
        self.assertEqual(code, 0, f"/app/.container-ready missing: {out!r} {err!r}")
        code, out, err = DOCKER.exec(i["Id"], ["cat", "/proc/self/status"])
        self.assertEqual(code, 0, err)
        status = dict(re.findall(r"^(\w+):\s*(.*?)\s*$", out, re.M))
        self.assertEqual(status.get("CapEff"), "0000000000000000", out)
        self.assertEqual(status.get("CapBnd"), "0000000000000000", out)
        self.assertEqual(status.get("NoNewPrivs"), "1", out)
        # The app runs from the copy in /app, with its dependencies in the volume.
        code, out, err = DOCKER.exec(i["Id"], ["test", "-f", "/app/node_modules/express/package.json"])
        self.assertEqual(code, 0, f"express is not installed in /app/node_modules: {err!r}")

    # -- install step -----------------------------------------------------------------------
    def test_install_runs_first_in_its_own_limited_container(self):
        name = self.slow
        i = wait_until(lambda: DOCKER.inspect(f"ck-{name}-install"), 30,
                       f"the install container ck-{name}-install")
        self.volumes.update(deps_volumes(i))
        self.assertEqual(i["Config"]["Labels"].get("cloudyknight.role"), "install")
        self.assertEqual(i["Config"]["Labels"].get("cloudyknight.workspace"), name)
        self.assertEqual(i["Config"]["Image"], PYTHON_IMAGE)
        hc = i["HostConfig"]
        self.assertEqual(hc["Memory"], 384 * MIB, "limits.install_memory")
        self.assertEqual(hc["MemorySwap"], 384 * MIB)
        self.assertEqual(hc["CapDrop"], ["ALL"])
        self.assertFalse(hc.get("CapAdd"))
        self.assertEqual(hc["SecurityOpt"], ["no-new-privileges:true"])
        self.assertFalse(hc.get("PortBindings"), "the install step publishes nothing")
        binds = [m for m in i["Mounts"] if m["Type"] == "bind"]
        self.assertEqual([(m["Destination"], m["RW"]) for m in binds], [("/workspace", False)])
        volumes = {m["Destination"]: m["Name"] for m in i["Mounts"] if m["Type"] == "volume"}
        self.assertRegex(volumes.get("/app/.venv", ""), r"^ck-deps-.*-python-[0-9a-f]+$", i["Mounts"])
        # The app waits for it.
        w = self.d.workspace(name)
        self.assertIn(w["status"], ("creating", "initializing"), w)
        self.assertIsNone(DOCKER.inspect(f"ck-{name}"), "the app container started before the install ended")
        with open(os.path.join(self.d.ws, name, self.RELEASE), "w") as f:
            f.write("go\n")
        self.d.wait_status(name, "running", timeout=START_TIMEOUT)
        self.wait_answer(self.d, f"/{name}/", b"PYAPP-MARKER")
        self.assertIsNone(DOCKER.inspect(f"ck-{name}-install"), "the install container was not removed")
        app = self.wait_app_container(name)
        self.assertEqual({m["Name"] for m in app["Mounts"] if m["Destination"] == "/app/.venv"},
                         {volumes["/app/.venv"]}, "the app mounts the volume the install filled")
        self.assertIn(f"install of {RUN} waiting", log_text(self.d, name))

    # -- 2. python ------------------------------------------------------------------------
    def test_python_workspace_answers_through_gateway(self):
        self.d.wait_status(self.py, "running", timeout=START_TIMEOUT)
        r = self.wait_answer(self.d, f"/{self.py}/some/path?q=1", b"PYAPP-MARKER")
        doc = r.json()
        self.assertEqual(doc["path"], "/some/path?q=1", "the /<name> prefix is stripped")
        self.assertEqual(doc["env"]["HOST"], "0.0.0.0")
        self.assertEqual(doc["env"]["PORT"], "8080")
        self.assertEqual(doc["cwd"], "/app")
        self.assertIn("app.py", doc["files"])
        i = self.wait_app_container(self.py)
        self.assertEqual(i["Config"]["Image"], PYTHON_IMAGE)
        self.assertHardened(i, 256 * MIB, self.py)
        self.assertFalse(i["HostConfig"].get("CapAdd"))
        binds = [m for m in i["Mounts"] if m["Type"] == "bind"]
        self.assertEqual([(m["Destination"], m["RW"]) for m in binds], [("/workspace", False)])

    # -- 3. Dockerfile ----------------------------------------------------------------------
    def test_dockerfile_workspace_built_and_answers(self):
        self.d.wait_status(self.df, "running", timeout=START_TIMEOUT)
        r = self.wait_answer(self.d, f"/{self.df}/", b"DOCKERFILE-MARKER")
        doc = r.json()
        self.assertEqual(doc["port"], "5000", "PORT comes from the image's EXPOSE")
        self.assertIn("app.py", doc["files"])
        self.assertIn("kept.txt", doc["files"])
        self.assertNotIn("ignored-secret.txt", doc["files"], ".dockerignore not applied")
        self.assertNotIn("scratch.tmp", doc["files"], ".dockerignore pattern *.tmp not applied")
        i = self.wait_app_container(self.df)
        self.assertEqual(i["Config"]["Image"], f"cloudyknight-ws/{self.df}:latest")
        self.assertTrue(DOCKER.image_exists(f"cloudyknight-ws/{self.df}:latest"))
        self.assertEqual(env_of(i).get("PORT"), "5000")
        self.assertHardened(i, 256 * MIB, self.df)
        self.assertEqual(list(i["HostConfig"]["PortBindings"]), ["5000/tcp"])
        lo, hi = self.d.runtime_ports
        self.assertTrue(lo <= self.host_port(i, 5000) <= hi)
        self.assertEqual(i["Mounts"], [], "a Dockerfile workspace gets no source mount")
        labels = i["Config"]["Labels"]
        self.assertEqual(labels.get("cloudyknight.port"), "5000")
        self.assertEqual(labels.get(f"traefik.http.services.{self.df}.loadbalancer.server.port"), "5000")

    # -- 4. out of memory -------------------------------------------------------------------
    def test_out_of_memory_is_reported_and_restarted(self):
        self.d.wait_status(self.oom, "running", timeout=START_TIMEOUT)
        i = self.wait_app_container(self.oom)
        self.assertEqual(i["HostConfig"]["Memory"], 48 * MIB, "resources.memory from workspace.json")
        self.assertEqual(i["HostConfig"]["MemorySwap"], 48 * MIB)
        before = self.d.workspace(self.oom)["restarts"]
        r = self.d.get(f"/{self.oom}/oom", timeout=30)
        self.assertNotEqual(r.status, 200, f"the app allocated 300 MB under a 48m limit: {r.body[:200]!r}")
        w = self.d.wait_workspace(
            self.oom, lambda w: "out of memory" in (w.get("error") or "") and w.get("restarts", 0) > before,
            timeout=30, what=f"{self.oom} to report 'out of memory'")
        self.assertIn(w["status"], ("failed", "initializing", "creating"), w)
        self.assertGreaterEqual(w["restarts"], 1)
        self.assertRegex(self.d.stderr_text(), rf"\[ws={re.escape(self.oom)}\][^\n]*out of memory")
        # Then it is back (it only allocates on /oom).
        self.d.wait_status(self.oom, "running", timeout=START_TIMEOUT)
        self.wait_answer(self.d, f"/{self.oom}/", b"PYAPP-MARKER")
        self.assertNotEqual(self.wait_app_container(self.oom)["Id"], i["Id"])

    # -- 5. crash loop with backoff --------------------------------------------------------------
    def test_crash_loop_backs_off(self):
        self.d.add_folder(os.path.join(FIXTURES, "docker", "crash"), self.crash)
        w = self.d.wait_workspace(self.crash, lambda w: w.get("restarts", 0) >= 1 and w.get("error"),
                                  timeout=30, what=f"{self.crash} to fail")
        t_first = time.monotonic()
        self.assertEqual(w["status"], "failed", w)
        self.assertIn("exited with code 3", w["error"])
        self.assertIn("exiting with code 3", w.get("log_tail") or "", "log_tail holds the app's output")
        # Backoff bounds how often it restarts: at most 4 within 6 s of the first crash
        # (1 s, 2 s, 4 s waits). How soon the second one comes depends on how fast Docker
        # creates a container, which on a busy machine (CI builds the sanitizer tree beside
        # the release tests) takes seconds: it must come within 30 s.
        samples = [(0.0, w["restarts"])]
        second_at = None
        for _ in range(400):
            elapsed = time.monotonic() - t_first
            if elapsed >= 30.0 or (elapsed >= 6.0 and second_at is not None):
                break
            time.sleep(0.1)
            cur = self.d.workspace(self.crash)
            at = round(time.monotonic() - t_first, 1)
            if at <= 6.0:
                samples.append((at, cur["restarts"]))
            if second_at is None and cur["restarts"] >= 2:
                second_at = at
            if cur.get("error"):
                self.assertIn("exited with code 3", cur["error"])
        self.assertIsNotNone(second_at, f"no restart within 30 s of the first crash: {samples}; "
                                        f"last W: {self.d.workspace(self.crash)!r}")
        restarts = samples[-1][1]
        self.assertLessEqual(restarts, 4, f"no backoff: {restarts} restarts within ~6 s: {samples}")
        waits = re.findall(rf"\[ws={re.escape(self.crash)}\].*restarting in (\S+)", self.d.stderr_text())
        self.assertEqual(waits[:2], ["1s", "2s"], f"backoff 1s, 2s, 4s...: {waits}")

    # -- 7a. folder deleted -------------------------------------------------------------------------
    def test_deleted_folder_removes_its_container(self):
        self.d.wait_status(self.gone, "running", timeout=START_TIMEOUT)
        i = self.wait_app_container(self.gone)
        shutil.rmtree(os.path.join(self.d.ws, self.gone))
        t0 = time.monotonic()
        wait_until(lambda: not DOCKER.containers(self.gone), 10,
                   f"the container of {self.gone} to be removed after its folder was deleted")
        self.assertLess(time.monotonic() - t0, 10.5)
        self.assertIsNone(DOCKER.inspect(i["Id"]))
        wait_until(lambda: self.d.workspace(self.gone) is None, 10, f"{self.gone} to leave the API")
        self.assertEqual(self.d.get(f"/{self.gone}/").status, 404)

    # -- 8. workspace.json changed ------------------------------------------------------------------
    def test_changed_workspace_json_replaces_the_container(self):
        self.d.wait_status(self.envws, "running", timeout=START_TIMEOUT)
        old = self.wait_app_container(self.envws)
        self.assertEqual(env_of(old).get("CK_TEST_MARK"), "one")
        write_json(os.path.join(self.d.ws, self.envws, "workspace.json"), {"env": {"CK_TEST_MARK": "two"}})
        new = self.wait_app_container(
            self.envws, lambda i: i["Id"] != old["Id"] and env_of(i).get("CK_TEST_MARK") == "two",
            timeout=30, what=f"a new container for {self.envws} with CK_TEST_MARK=two")
        self.assertNotEqual(new["Config"]["Labels"]["cloudyknight.spec"],
                            old["Config"]["Labels"]["cloudyknight.spec"])
        self.d.wait_status(self.envws, "running", timeout=START_TIMEOUT)
        r = self.wait_answer(self.d, f"/{self.envws}/", b'"CK_TEST_MARK": "two"')
        self.assertEqual(r.json()["env"]["CK_TEST_MARK"], "two")
        self.assertIsNone(DOCKER.inspect(old["Id"]), "the old container was not removed")
        self.assertEqual(len(DOCKER.containers(self.envws)), 1)

    # -- 9. missing image -----------------------------------------------------------------------------
    def test_missing_image_fails_naming_it(self):
        w = self.d.wait_workspace(self.missing, lambda w: w.get("status") == "failed" and w.get("error"),
                                  timeout=30, what=f"{self.missing} to fail")
        self.assertIn(MISSING_IMAGE, w["error"])
        self.assertEqual(DOCKER.containers(self.missing), [])
        r = self.d.get(f"/{self.missing}/")
        self.assertNotEqual(r.status, 200)

    # -- 10. dependency cache -------------------------------------------------------------------------
    def test_same_lockfile_does_not_share_the_dependency_volume(self):
        # Issue 13 row 6: each workspace installs into a volume of its own.
        self.d.wait_status(self.node, "running", timeout=NODE_TIMEOUT)
        self.d.add_folder(os.path.join(EXAMPLES, "hello-node"), self.node2)
        self.d.wait_status(self.node2, "running", timeout=NODE_TIMEOUT)
        self.wait_answer(self.d, f"/{self.node}/", b"Hello from Express")
        self.wait_answer(self.d, f"/{self.node2}/", b"Hello from Express")
        self.assertIn(f"installing dependencies in ck-{self.node}-install", log_text(self.d, self.node))
        self.assertIn(f"installing dependencies in ck-{self.node2}-install", log_text(self.d, self.node2))
        deps = lambda n: {m["Name"] for m in self.wait_app_container(n)["Mounts"]
                          if m["Destination"] == "/app/node_modules"}
        self.volumes.update(deps(self.node) | deps(self.node2))
        self.assertNotEqual(deps(self.node), deps(self.node2), "each has its own dependency volume")

    # -- 11. compose --------------------------------------------------------------------------------------
    def test_compose_prints_the_node_service(self):
        w = self.d.wait_status(self.node, "running", timeout=NODE_TIMEOUT)
        p = run_cli("workspace", "compose", self.node, "--workspaces", self.d.ws)
        self.assertEqual(p.returncode, 0, p.stderr)
        y = p.stdout
        self.assertRegex(y, r"(?m)^services:\s*$")
        self.assertRegex(y, rf"(?m)^  {re.escape(self.node)}:\s*$")
        self.assertRegex(y, rf"(?m)^\s+image: ['\"]?{re.escape(NODE_IMAGE)}['\"]?\s*$")
        self.assertRegex(y, rf"(?m)^\s+- ['\"]?127\.0\.0\.1:{w['port']}:8080['\"]?\s*$",
                         "the running container's published port")
        self.assertRegex(y, rf"(?m)^\s+cloudyknight\.workspace: ['\"]?{re.escape(self.node)}['\"]?\s*$")
        self.assertIn(f"{os.path.join(self.d.ws, self.node)}:/workspace:ro", y)
        self.assertNotIn("0.0.0.0:", y.replace("HOST=0.0.0.0", ""), "ports published beyond 127.0.0.1")
        self.assertNotIn("docker.sock", y)

    def test_compose_dockerfile_service_uses_the_exposed_port(self):
        self.d.wait_status(self.df, "running", timeout=START_TIMEOUT)
        p = run_cli("workspace", "compose", self.df, "--workspaces", self.d.ws)
        self.assertEqual(p.returncode, 0, p.stderr)
        y = p.stdout
        self.assertRegex(y, rf"(?m)^\s+image: ['\"]?cloudyknight-ws/{re.escape(self.df)}:latest['\"]?\s*$")
        self.assertRegex(y, r"(?m)^\s+build: ")
        self.assertRegex(y, r"(?m)^\s+- ['\"]?PORT=5000['\"]?\s*$",
                         f"the container runs with PORT=5000 (EXPOSE 5000):\n{y}")
        self.assertRegex(y, r"(?m)^\s+- ['\"]?127\.0\.0\.1:\d+:5000['\"]?\s*$",
                         f"the container publishes 5000:\n{y}")

    def test_compose_exit_codes(self):
        cases = [(self.static, 1, "static workspace"), (f"{RUN}-no-such", 1, "unknown workspace"),
                 ("Bad_Name", 2, "invalid name")]
        for name, rc, what in cases:
            with self.subTest(what=what, name=name):
                p = run_cli("workspace", "compose", name, "--workspaces", self.d.ws)
                self.assertEqual(p.returncode, rc, f"stdout={p.stdout!r} stderr={p.stderr!r}")
                self.assertEqual(p.stdout, "")
                lines = [l for l in p.stderr.splitlines() if l.strip()]
                self.assertEqual(len(lines), 1, f"one clear line on stderr: {p.stderr!r}")
                self.assertIn(name, lines[0])


# --------------------------------------------------------------------- control-plane restart


class TestControlPlaneRestart(DockerCase):
    """A daemon is SIGKILLed (its containers keep running); while it is down one folder is
    deleted and one workspace.json edited; a new daemon on the same folders adopts what is
    current, replaces what is outdated and removes what has no folder. The new daemon listens
    on another port: with gateway.public_url set, the apps' BASE_URL does not depend on it, so
    their containers are still current."""

    @classmethod
    def set_up(cls):
        cls.keep = cls.ws_name("keep")
        cls.doomed = cls.ws_name("doomed")
        cls.changed = cls.ws_name("changed")
        cls.d1 = d1 = cls.new_daemon(fixtures=[("docker/pyapp", n) for n in (cls.keep, cls.doomed, cls.changed)],
                                     config={"gateway": {"public_url": "http://ck.example.test"}})
        d1.prepare()
        write_json(os.path.join(d1.ws, cls.changed, "workspace.json"), {"env": {"CK_TEST_MARK": "before"}})
        d1.start()
        cls.before = {}
        for n in (cls.keep, cls.doomed, cls.changed):
            d1.wait_status(n, "running", timeout=START_TIMEOUT)
            cls.before[n] = DOCKER.app_container(n)
            assert cls.before[n] is not None, f"no container for {n}"
        cls.w_before = d1.workspace(cls.keep)
        d1.kill()
        cls.after_kill = {n: DOCKER.inspect(cls.before[n]["Id"]) for n in cls.before}
        shutil.rmtree(os.path.join(d1.ws, cls.doomed))
        write_json(os.path.join(d1.ws, cls.changed, "workspace.json"), {"env": {"CK_TEST_MARK": "after"}})
        cls.d2 = cls.new_daemon(reuse=d1, port=free_port())
        cls.d2.start()
        cls.d2_healthy = time.time()

    def test_containers_outlive_a_killed_control_plane(self):
        self.assertEqual(self.d1.stopped.returncode, -9)
        for n, i in self.after_kill.items():
            self.assertIsNotNone(i, f"{n}: the container vanished with the control plane")
            self.assertTrue(i["State"]["Running"], f"{n}: {state_summary(i)}")

    def test_running_container_is_adopted_without_restart(self):
        w = self.d2.wait_status(self.keep, "running", timeout=START_TIMEOUT)
        old = self.before[self.keep]
        containers = DOCKER.containers(self.keep)
        self.assertEqual(len(containers), 1, [(c["Names"], c["State"]) for c in containers])
        now = DOCKER.inspect(containers[0]["Id"])
        self.assertEqual(now["Id"], old["Id"], "a new container instead of the adopted one")
        self.assertEqual(now["State"]["StartedAt"], old["State"]["StartedAt"], "the container restarted")
        self.assertTrue(now["State"]["Running"])
        self.assertEqual(now["RestartCount"], 0)
        self.assertEqual(w["port"], self.w_before["port"], "the published port changed")
        self.assertEqual(w["restarts"], 0)
        self.assertIn("adopted container", log_text(self.d2, self.keep))

    def test_adopted_workspace_answers_through_the_new_gateway(self):
        self.d2.wait_status(self.keep, "running", timeout=START_TIMEOUT)
        self.assertNotEqual(self.d2.port, self.d1.port)
        r = self.wait_answer(self.d2, f"/{self.keep}/adopted", b"PYAPP-MARKER")
        self.assertEqual(r.json()["path"], "/adopted")

    def test_container_without_folder_is_removed_at_start(self):
        old = self.before[self.doomed]
        wait_until(lambda: not DOCKER.containers(self.doomed),
                   max(0.5, self.d2_healthy + 10 - time.time()),
                   f"the container of {self.doomed} (folder deleted while the control plane was down) "
                   f"to be removed within 10 s of the start")
        self.assertIsNone(DOCKER.inspect(old["Id"]))
        self.assertIsNone(self.d2.workspace(self.doomed))

    def test_outdated_container_is_replaced_at_start(self):
        old = self.before[self.changed]
        new = self.wait_app_container(
            self.changed, lambda i: env_of(i).get("CK_TEST_MARK") == "after", timeout=30,
            what=f"{self.changed} to run with CK_TEST_MARK=after")
        self.assertNotEqual(new["Id"], old["Id"])
        self.assertIsNone(DOCKER.inspect(old["Id"]), "the outdated container was not removed")
        self.assertEqual(len(DOCKER.containers(self.changed)), 1)
        self.d2.wait_status(self.changed, "running", timeout=START_TIMEOUT)


# ------------------------------------------------------------------------ shared engine


class TestSharedEngine(DockerCase):
    """Two control planes over different workspace folders share one engine (as parallel
    test runs, or a staging and a production instance, do): neither may take the other's
    containers for orphans."""

    @classmethod
    def set_up(cls):
        cls.a = cls.ws_name("plane-a")
        cls.b = cls.ws_name("plane-b")
        cls.da = cls.new_daemon(fixtures=[("docker/pyapp", cls.a)])
        cls.db = cls.new_daemon(fixtures=[("docker/pyapp", cls.b)])
        cls.da.start()
        cls.da.wait_status(cls.a, "running", timeout=START_TIMEOUT)
        cls.db.start()

    def test_other_control_planes_containers_are_left_alone(self):
        before = self.wait_app_container(self.a)
        self.db.wait_status(self.b, "running", timeout=START_TIMEOUT)
        time.sleep(5)  # a few scans of the second control plane (storage.scan_interval 2s)
        now = DOCKER.inspect(before["Id"])
        self.assertIsNotNone(now, f"the second control plane removed {self.a}'s container "
                                  f"(its stderr: {[l for l in self.db.stderr_text().splitlines() if self.a in l]})")
        self.assertEqual(now["State"]["StartedAt"], before["State"]["StartedAt"])
        self.assertEqual(self.da.workspace(self.a)["restarts"], 0)
        self.assertIsNotNone(DOCKER.app_container(self.b))


# ---------------------------------------------------------------------------- shutdown


class TestGracefulShutdown(DockerCase):
    @classmethod
    def set_up(cls):
        cls.py = cls.ws_name("bye-py")
        cls.node = cls.ws_name("bye-node")
        cls.d = cls.new_daemon(fixtures=[("docker/pyapp", cls.py)], examples=[("hello-node", cls.node)])
        cls.d.start()

    def test_sigterm_removes_the_containers(self):
        ids = {}
        for n, timeout in ((self.py, START_TIMEOUT), (self.node, NODE_TIMEOUT)):
            self.d.wait_status(n, "running", timeout=timeout)
            ids[n] = self.wait_app_container(n)["Id"]
        res = self.d.stop()
        self.assertEqual(res.returncode, 0, "cloudyknight did not exit cleanly on SIGTERM")
        self.assertEqual(res.leftovers, [], "container processes alive after the daemon exited")
        self.assertLess(res.elapsed, 15)
        for n, ident in ids.items():
            self.assertEqual(DOCKER.containers(n), [], f"{n}: containers left after SIGTERM")
            self.assertIsNone(DOCKER.inspect(ident))


class TestRunCommand(DockerCase):
    """POST /monitor/api/v1/workspaces/{name}/run with the docker runtime: the command runs
    in the workspace's own container (docker exec), never on the host, streamed or not, and
    a command past its timeout is killed inside the container."""

    @classmethod
    def set_up(cls):
        cls.py = cls.ws_name("run-py")
        cls.d = cls.new_daemon(fixtures=[("docker/pyapp", cls.py)])
        cls.d.start()
        cls.token = admin_token(cls.d)

    def run_cmd(self, argv, timeout=None, stream=False):
        body = {"command": argv}
        if timeout:
            body["timeout"] = timeout
        return self.d.request(
            "POST", f"/monitor/api/v1/workspaces/{self.py}/run" + ("?stream=1" if stream else ""),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            body=json.dumps(body), timeout=30)

    def test_runs_inside_the_container(self):
        self.d.wait_status(self.py, "running", timeout=START_TIMEOUT)
        container = self.wait_app_container(self.py)
        r = self.run_cmd(["sh", "-c", "hostname; pwd; echo $PORT; test -f /app/app.py && echo has-app"])
        self.assertEqual(r.status, 200, r.text())
        doc = r.json()
        self.assertEqual(doc["exit_code"], 0, doc)
        self.assertFalse(doc["timed_out"])
        lines = doc["output"].split()
        self.assertEqual(lines[0], container["Config"]["Hostname"], "not the workspace's container")
        self.assertEqual(lines[1:], ["/app", "8080", "has-app"])
        self.assertNotEqual(lines[0], socket.gethostname())

    def test_streamed_output_and_exit_code(self):
        self.d.wait_status(self.py, "running", timeout=START_TIMEOUT)
        self.wait_app_container(self.py)
        r = self.run_cmd(["sh", "-c", "echo one; echo two >&2; exit 7"], stream=True)
        self.assertEqual(r.status, 200, r.text())
        self.assertEqual(r.header("Content-Type"), "application/x-ndjson")
        events = [json.loads(line) for line in r.text().splitlines() if line]
        output = "".join(e.get("output", "") for e in events)
        self.assertEqual(sorted(output.split()), ["one", "two"])
        self.assertEqual(events[-1], {"exit_code": 7, "timed_out": False})

    def test_timeout_kills_the_command_in_the_container(self):
        self.d.wait_status(self.py, "running", timeout=START_TIMEOUT)
        container = self.wait_app_container(self.py)
        marker = "4242.5"
        started = time.monotonic()
        r = self.run_cmd(["sleep", marker], timeout="1s")
        self.assertLess(time.monotonic() - started, 10)
        self.assertEqual(r.status, 200, r.text())
        doc = r.json()
        self.assertTrue(doc["timed_out"], doc)
        self.assertEqual(doc["exit_code"], 137, doc)
        code, out, err = DOCKER.exec(container["Id"], ["ps", "-eo", "args"])
        if code == 0:
            self.assertNotIn(marker, out, "the timed-out command still runs in the container")
        else:  # no ps in the image: look through /proc of the container's processes
            code, out, err = DOCKER.exec(container["Id"], ["sh", "-c", "cat /proc/[0-9]*/cmdline"])
            self.assertNotIn(marker, out.replace("\0", " "))

    def test_a_silent_command_whose_client_goes_away_is_killed(self):
        self.d.wait_status(self.py, "running", timeout=START_TIMEOUT)
        container = self.wait_app_container(self.py)
        marker = "5353.5"
        body = json.dumps({"command": ["sleep", marker], "timeout": "120s"}).encode()
        s = socket.create_connection(("127.0.0.1", self.d.port), timeout=5)
        s.sendall(f"POST /monitor/api/v1/workspaces/{self.py}/run HTTP/1.1\r\nHost: x\r\n"
                  f"Authorization: Bearer {self.token}\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(body)}\r\n\r\n".encode() + body)

        def running():
            code, out, err = DOCKER.exec(container["Id"], ["sh", "-c", "cat /proc/[0-9]*/cmdline"])
            return marker in out.replace("\0", " ")
        wait_until(running, 10, "the command to start in the container")
        s.close()
        wait_until(lambda: not running(), 15, "the silent command to be killed once its client went away")


if __name__ == "__main__":
    unittest.main()
