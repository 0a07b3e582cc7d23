"""Issue 13, docker runtime: rows 5 (hmr symlinks), 6 (dependency volumes), 14 (resource
ceilings) and the per-workspace network (containers reach neither each other nor the host).

Against the real engine (/var/run/docker.sock) with the images cloudyknight/node:bookworm and
cloudyknight/python:bookworm; skipped when no engine answers and CK_NO_DOCKER=1 (see
tests/integration/test_docker_runtime.py, whose helpers this file uses). One daemon per class.

Run: cd tests/security && PYTHONPATH=../integration CK_BINARY=../../build/cloudyknight \
     python3 -m unittest -v test_docker_isolation
"""

import os
import shutil
import socket
import tempfile
import threading
import unittest

from harness import FIXTURES, wait_until
from test_docker_runtime import (DOCKER, MIB, START_TIMEOUT, DockerCase, log_text,
                                 write_json)
import test_docker_runtime

PYAPP = os.path.join(FIXTURES, "docker", "pyapp")

NODE_SERVER = """const http = require('http');
http.createServer((req, res) => res.end('NODE-ISO-MARKER')).listen(process.env.PORT, '0.0.0.0');
"""


def setUpModule():
    test_docker_runtime.setUpModule()


def connect_from(container_id, host, port, timeout=3):
    """Exit code of a TCP connect from inside the container: 0 connected, else refused."""
    probe = ("import socket,sys\n"
             "s=socket.socket(); s.settimeout(%d)\n"
             "try:\n s.connect((%r,%d)); print('CONNECTED')\n"
             "except Exception as e:\n print('FAILED', e); sys.exit(3)\n") % (timeout, host, port)
    code, out, err = DOCKER.exec(container_id, ["python3", "-c", probe], timeout=timeout + 20)
    return code, out + err


class HostServer:
    """A TCP server on 0.0.0.0 (an ephemeral port) that answers and counts connections."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("0.0.0.0", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.5)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            c.close()

    def close(self):
        self.stop = True
        self.thread.join(5)
        self.sock.close()


def network_of(inspect, name):
    return (inspect.get("NetworkSettings") or {}).get("Networks", {}).get(f"ck-net-{name}") or {}


def write_node(dest):
    os.makedirs(dest, exist_ok=True)
    with open(os.path.join(dest, "package.json"), "w") as f:
        f.write('{"name": "iso", "version": "1.0.0", "private": true}\n')
    with open(os.path.join(dest, "package-lock.json"), "w") as f:
        f.write('{"name": "iso", "version": "1.0.0", "lockfileVersion": 3, "requires": true, '
                '"packages": {"": {"name": "iso", "version": "1.0.0"}}}\n')
    with open(os.path.join(dest, "server.js"), "w") as f:
        f.write(NODE_SERVER)
    # The same install in both (no registry needed): it fills node_modules from nothing.
    write_json(os.path.join(dest, "workspace.json"),
               {"install": "mkdir -p node_modules/dep && echo clean > node_modules/dep/index.js",
                "command": "node server.js"})


class TestDockerIsolation(DockerCase):
    """One daemon (egress on): two node workspaces with the same lockfile, two python ones
    (one asking for 64g, one reloading with hmr)."""

    LIMITS = {"memory": "256m", "cpus": 0.5, "pids": 128, "install_memory": "384m"}

    @classmethod
    def set_up(cls):
        cls.n1, cls.n2 = cls.ws_name("iso-n1"), cls.ws_name("iso-n2")
        cls.pa, cls.pb = cls.ws_name("iso-pa"), cls.ws_name("iso-pb")
        cls.unique_deps |= {cls.n1, cls.n2}
        cls.secret_dir = tempfile.mkdtemp(prefix="ck-secret-")
        cls.secret = os.path.join(cls.secret_dir, "secret.txt")
        cls.marker = "HOST-SECRET-" + os.urandom(6).hex()
        with open(cls.secret, "w") as f:
            f.write(cls.marker + "\n")
        cls.d = d = cls.new_daemon(fixtures=[("docker/pyapp", cls.pa), ("docker/pyapp", cls.pb)],
                                   config={"limits": cls.LIMITS})
        d.prepare()
        for n in (cls.n1, cls.n2):
            write_node(os.path.join(d.ws, n))
        write_json(os.path.join(d.ws, cls.pa, "workspace.json"), {"reload": "hmr"})
        write_json(os.path.join(d.ws, cls.pb, "workspace.json"), {"resources": {"memory": "64g"}})
        d.start()
        for n in (cls.n1, cls.n2, cls.pa, cls.pb):
            d.wait_status(n, "running", timeout=START_TIMEOUT)

    # -- row 6 -------------------------------------------------------------------------------
    def test_row6_same_lockfile_gets_separate_dependency_volumes(self):
        a, b = self.wait_app_container(self.n1), self.wait_app_container(self.n2)
        va = {m["Destination"]: m["Name"] for m in a["Mounts"] if m["Type"] == "volume"}
        vb = {m["Destination"]: m["Name"] for m in b["Mounts"] if m["Type"] == "volume"}
        self.volumes |= set(va.values()) | set(vb.values())
        self.assertTrue(va["/app/node_modules"].startswith(f"ck-deps-{self.n1}-node-"), va)
        self.assertTrue(vb["/app/node_modules"].startswith(f"ck-deps-{self.n2}-node-"), vb)
        self.assertNotEqual(va["/app/node_modules"], vb["/app/node_modules"])
        self.assertNotEqual(va.get("/root/.npm"), vb.get("/root/.npm"), "a shared npm cache")
        # A trojan written into one workspace's node_modules is not in the other's.
        code, out, err = DOCKER.exec(a["Id"], ["sh", "-c", "echo TROJAN > /app/node_modules/dep/index.js"])
        self.assertEqual(code, 0, err)
        code, out, err = DOCKER.exec(b["Id"], ["cat", "/app/node_modules/dep/index.js"])
        self.assertEqual(code, 0, err)
        self.assertEqual(out.strip(), "clean")
        self.wait_answer(self.d, f"/{self.n2}/", b"NODE-ISO-MARKER")

    # -- network ------------------------------------------------------------------------------
    def test_network_workspaces_cannot_reach_each_other(self):
        a, b = self.wait_app_container(self.pa), self.wait_app_container(self.pb)
        na, nb = network_of(a, self.pa), network_of(b, self.pb)
        self.assertTrue(na.get("IPAddress") and nb.get("IPAddress"), (na, nb))
        self.assertEqual(set((a["NetworkSettings"]["Networks"]).keys()), {f"ck-net-{self.pa}"})
        net = DOCKER.call("GET", f"/networks/ck-net-{self.pa}")
        self.assertEqual(net["Labels"].get("cloudyknight.workspace"), self.pa)
        self.assertEqual(net["Options"].get("com.docker.network.bridge.enable_icc"), "false")
        # B answers on its own address (from inside B), but not from A.
        code, out = connect_from(b["Id"], nb["IPAddress"], 8080)
        self.assertEqual(code, 0, out)
        code, out = connect_from(a["Id"], nb["IPAddress"], 8080)
        self.assertNotEqual(code, 0, f"A reached B's container at {nb['IPAddress']}:8080: {out}")

    def test_network_containers_cannot_reach_the_hosts_ports(self):
        srv = HostServer()
        try:
            a = self.wait_app_container(self.pa)
            gw = network_of(a, self.pa).get("Gateway")
            self.assertTrue(gw, a["NetworkSettings"])
            code, out = connect_from(a["Id"], gw, srv.port)
            self.assertNotEqual(code, 0, f"the container reached the host's 0.0.0.0:{srv.port} "
                                         f"on its bridge gateway {gw}: {out}")
            self.assertEqual(srv.accepted, 0)
            # The host (the gateway) still reaches the container.
            self.wait_answer(self.d, f"/{self.pa}/", b"PYAPP-MARKER")
        finally:
            srv.close()

    # -- row 14 -------------------------------------------------------------------------------
    def test_row14_resources_are_capped_by_the_operator(self):
        i = self.wait_app_container(self.pb)
        self.assertEqual(i["HostConfig"]["Memory"], 256 * MIB, "64g capped to limits.max_memory")
        self.assertEqual(i["HostConfig"]["MemorySwap"], 256 * MIB)
        logs = ""
        for path in (self.d.stderr_path, self.d.stdout_path):
            with open(path, errors="replace") as f:
                logs += f.read()
        self.assertIn("capped to limits.max_memory", logs)

    # -- row 5 --------------------------------------------------------------------------------
    def test_row5_hmr_never_copies_a_symlinks_target(self):
        i = self.wait_app_container(self.pa)
        folder = os.path.join(self.d.ws, self.pa)
        os.symlink(self.secret, os.path.join(folder, "leak"))
        os.symlink("/etc/shadow", os.path.join(folder, "shadow"))
        os.symlink("app.py", os.path.join(folder, "inside"))
        with open(os.path.join(folder, "fresh.txt"), "w") as f:
            f.write("FRESH-HMR\n")
        # The copy happened: the plain file arrives.
        wait_until(lambda: DOCKER.exec(i["Id"], ["cat", "/app/fresh.txt"])[1].strip() == "FRESH-HMR",
                   30, "the hmr copy of fresh.txt")
        wait_until(lambda: "hmr: not copying leak" in log_text(self.d, self.pa), 30,
                   "the log line about the refused symlink")
        code, out, err = DOCKER.exec(i["Id"], ["sh", "-c", "cat /app/leak /app/shadow; ls -la /app"])
        self.assertNotIn(self.marker, out)
        self.assertNotIn("root:", out, "/etc/shadow's content landed in /app/shadow")
        self.assertEqual(self.wait_app_container(self.pa)["Id"], i["Id"], "hmr, not a restart")

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()  # containers, volumes it saw, networks
        finally:
            for n in list(cls.names):
                DOCKER.request("DELETE", f"/volumes/ck-cache-{n}-node")
                DOCKER.request("DELETE", f"/volumes/ck-cache-{n}-python")


class TestDockerNoEgress(DockerCase):
    """limits.egress false: the app cannot open connections out, the gateway still serves it,
    and a deleted workspace's network goes with it."""

    @classmethod
    def set_up(cls):
        cls.p = cls.ws_name("iso-closed")
        cls.gone = cls.ws_name("iso-gone")
        cls.d = d = cls.new_daemon(fixtures=[("docker/pyapp", cls.p), ("docker/pyapp", cls.gone)],
                                   config={"limits": {"memory": "256m", "egress": "false"}})
        d.prepare()
        d.start()
        for n in (cls.p, cls.gone):
            d.wait_status(n, "running", timeout=START_TIMEOUT)

    def test_egress_false_blocks_outbound_but_the_gateway_serves(self):
        self.wait_answer(self.d, f"/{self.p}/", b"PYAPP-MARKER")
        i = self.wait_app_container(self.p)
        net = DOCKER.call("GET", f"/networks/ck-net-{self.p}")
        self.assertIs(net["Internal"], True)
        self.assertFalse(i["HostConfig"].get("PortBindings"), "nothing published")
        srv = HostServer()
        try:
            other = self.wait_app_container(self.gone)
            targets = [network_of(i, self.p).get("Gateway"), "172.17.0.1",
                       network_of(other, self.gone).get("IPAddress")]
            for host in [t for t in targets if t]:
                port = srv.port if host != targets[-1] else 8080
                code, out = connect_from(i["Id"], host, port)
                self.assertNotEqual(code, 0, f"the app connected out to {host}:{port}: {out}")
            self.assertEqual(srv.accepted, 0)
        finally:
            srv.close()

    def test_z_deleted_workspace_loses_its_network(self):
        self.assertIsNotNone(DOCKER.call("GET", f"/networks/ck-net-{self.gone}"))
        shutil.rmtree(os.path.join(self.d.ws, self.gone))
        wait_until(lambda: DOCKER.request("GET", f"/networks/ck-net-{self.gone}")[0] == 404, 40,
                   f"network ck-net-{self.gone} to be removed")


if __name__ == "__main__":
    unittest.main()
