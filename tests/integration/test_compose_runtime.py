"""Compose workspaces on the docker runtime end to end (issue 15): a folder with its own
docker-compose.yml runs as one project ck-<name> through the Engine API.

One daemon (then a second on the same folders after a SIGKILL) over these workspaces:
  seed    the seed's example (an express-style node app: the `/workspaces/<name>:/workspace:ro`
          bind, the ephemeral copy to /app, the external traefik-network), on the local image
          cloudyknight/node:bookworm; answers at /<name>/ through the gateway.
  pair    web depends on api with `condition: service_healthy` and reaches it as
          http://api:5000 (service name); api keeps a named volume. Stopped (containers and
          network go, the volume stays), started again, adopted by a new control plane after a
          SIGKILL (same containers, none added), then deleted (everything of the project goes).
  nets    web on networks front and back, api only on back, spy only on front: web reaches
          api by name, spy cannot resolve it; web waits for the one-shot migrate to complete
          successfully (it writes the shared volume api reads); each declared network is its own engine network
          (ck-<name>_front, ck-<name>_back), all removed with the workspace.
  priv    `privileged: true`: fails, the API says which key and why.
  etc     a bind of /etc: fails, naming the key.
  miss    a service whose image is not on this host (and no registry answers): fails naming
          the service and the image.
  nap     two services with a fast idle policy (workspace.json): frozen (every container
          paused), woken by a request, stopped by the policy, started again by a request.

Needs the images cloudyknight/node:bookworm and cloudyknight/python:bookworm (never pulls).
Without a Docker engine the tests fail, unless CK_NO_DOCKER=1 (then they are skipped).
The tests run in order (test_1_..., test_6_...): each case builds on the one before, so the
suite starts one daemon and one project per case, not one per test.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_compose_runtime
"""

import http.client
import json
import os
import shutil
import time
import unittest

from harness import Daemon, wait_until
from test_auth import admin_token
from test_docker_runtime import (DOCKER, MISSING_IMAGE, NODE_IMAGE, PYTHON_IMAGE, START_TIMEOUT,
                                 DockerCase, log_text, run_cli,
                                 setUpModule as docker_set_up_module)

MARKER = "COMPOSE-SEED-MARKER"

SEED_SERVER = """\
const http = require('http');
const port = process.env.PORT || 3000;
http.createServer((req, res) => {
  res.setHeader('Content-Type', 'application/json');
  res.end(JSON.stringify({marker: '%s', path: req.url, env: process.env.NODE_ENV,
                          cwd: process.cwd()}));
}).listen(port, '0.0.0.0', () => console.log('seed listening on ' + port));
""" % MARKER

SEED_PACKAGE = {"name": "express-app", "version": "1.0.0", "private": True,
                "scripts": {"start": "node server.js"}}

# The seed's docker-compose.yml, with the image swapped for a local one and no npm install
# (no registry here): everything else as the seeds write it.
SEED_COMPOSE = """\
version: '3.8'
services:
  app:
    image: {image}
    working_dir: /app
    command: sh -c "cp -r /workspace/. /app/ && npm start"
    volumes:
      - /workspaces/{name}:/workspace:ro
    environment:
      - NODE_ENV=development
      - PORT=3000
    labels:
      - "traefik.enable=true"
      - "traefik.http.routers.{name}.rule=PathPrefix(`/{name}`)"
      - "traefik.http.services.{name}.loadbalancer.server.port=3000"
    networks:
      - traefik-network
networks:
  traefik-network:
    external: true
"""

API_SERVER = """\
import json, os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        with open('/data/count', 'a+') as f:
            f.write('x')
        body = json.dumps({'from': 'api', 'secret': os.environ.get('API_SECRET')}).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

print('api listening on 5000', flush=True)
ThreadingHTTPServer(('0.0.0.0', 5000), H).serve_forever()
"""

WEB_SERVER = """\
import json, urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        with urllib.request.urlopen('http://api:5000/', timeout=5) as r:
            api = json.loads(r.read())
        body = json.dumps({'from': 'web', 'api': api, 'path': self.path}).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

print('web listening on 8000', flush=True)
ThreadingHTTPServer(('0.0.0.0', 8000), H).serve_forever()
"""

PAIR_COMPOSE = """\
services:
  web:
    image: {image}
    command: ["python3", "/workspace/web.py"]
    volumes:
      - ./:/workspace:ro
    ports:
      - "8000"
    labels:
      cloudyknight.route: "true"
      cloudyknight.port: "8000"
    depends_on:
      api:
        condition: service_healthy
  api:
    image: {image}
    command: ["python3", "/workspace/api.py"]
    environment:
      API_SECRET: ${{API_SECRET:-from-default}}
    volumes:
      - ./:/workspace:ro
      - data:/data
    expose:
      - "5000"
    healthcheck:
      test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/')"]
      interval: 1s
      timeout: 3s
      retries: 30
volumes:
  data:
"""

NETS_COMPOSE = """\
services:
  web:
    image: {image}
    command: ["python3", "/workspace/web.py"]
    volumes: ["./:/workspace:ro"]
    ports: ["8000"]
    networks: [front, back]
    depends_on:
      api:
        condition: service_started
      migrate:
        condition: service_completed_successfully
  migrate:
    image: {image}
    command: ["python3", "-c", "import time; time.sleep(2); open('/data/migrated', 'w').write('ok')"]
    volumes: ["data:/data"]
    networks: [back]
  api:
    image: {image}
    command: ["python3", "/workspace/api.py"]
    volumes: ["./:/workspace:ro", "data:/data"]
    networks: [back]
  spy:
    image: {image}
    command: ["python3", "-m", "http.server", "9000"]
    networks:
      front:
volumes:
  data:
networks:
  front:
  back:
"""

PRIV_COMPOSE = """\
services:
  app:
    image: {image}
    command: ["python3", "-m", "http.server", "8000"]
    ports: ["8000"]
    privileged: true
"""

ETC_COMPOSE = """\
services:
  app:
    image: {image}
    command: ["python3", "-m", "http.server", "8000"]
    ports: ["8000"]
    volumes:
      - /etc:/host-etc:ro
"""


def setUpModule():
    docker_set_up_module()


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def project_containers(name):
    return sorted(DOCKER.containers(name), key=lambda c: c["Names"][0])


def network_exists(name):
    status, _ = DOCKER.request("GET", f"/networks/ck-{name}")
    return status == 200


def volume_exists(name):
    status, _ = DOCKER.request("GET", f"/volumes/{name}")
    return status == 200


class TestComposeWorkspaces(DockerCase):
    """The cases above in order, over one daemon (a second one from test_5 on)."""

    @classmethod
    def set_up(cls):
        cls.seed = cls.ws_name("seed")
        cls.pair = cls.ws_name("pair")
        cls.priv = cls.ws_name("priv")
        cls.etc = cls.ws_name("etc")
        cls.nap = cls.ws_name("nap")
        cls.miss = cls.ws_name("miss")
        cls.nets = cls.ws_name("nets")
        cls.volumes.add(f"ck-{cls.nets}_data")
        cls.volume = f"ck-{cls.pair}_data"
        cls.volumes.add(cls.volume)
        cls.d = d = cls.new_daemon()
        d.prepare()
        ws = d.ws
        write(os.path.join(ws, cls.seed, "server.js"), SEED_SERVER)
        write(os.path.join(ws, cls.seed, "package.json"), json.dumps(SEED_PACKAGE))
        write(os.path.join(ws, cls.seed, "docker-compose.yml"),
              SEED_COMPOSE.format(image=NODE_IMAGE, name=cls.seed))
        write(os.path.join(ws, cls.pair, "api.py"), API_SERVER)
        write(os.path.join(ws, cls.pair, "web.py"), WEB_SERVER)
        write(os.path.join(ws, cls.pair, ".env"), "API_SECRET=from-dotenv\n")
        write(os.path.join(ws, cls.pair, "docker-compose.yml"), PAIR_COMPOSE.format(image=PYTHON_IMAGE))
        write(os.path.join(ws, cls.priv, "docker-compose.yml"), PRIV_COMPOSE.format(image=PYTHON_IMAGE))
        write(os.path.join(ws, cls.nets, "api.py"), API_SERVER)
        write(os.path.join(ws, cls.nets, "web.py"), WEB_SERVER)
        write(os.path.join(ws, cls.nets, "docker-compose.yml"), NETS_COMPOSE.format(image=PYTHON_IMAGE))
        write(os.path.join(ws, cls.etc, "compose.yaml"), ETC_COMPOSE.format(image=PYTHON_IMAGE))
        write(os.path.join(ws, cls.miss, "docker-compose.yml"),
              ETC_COMPOSE.format(image=MISSING_IMAGE).replace("    volumes:\n      - /etc:/host-etc:ro\n", ""))
        write(os.path.join(ws, cls.nap, "api.py"), API_SERVER)
        write(os.path.join(ws, cls.nap, "web.py"), WEB_SERVER)
        write(os.path.join(ws, cls.nap, "docker-compose.yml"), PAIR_COMPOSE.format(image=PYTHON_IMAGE))
        write(os.path.join(ws, cls.nap, "workspace.json"), json.dumps(
            {"idle": {"idle_after": "1s", "background_after": "2s", "stop_after": "6s", "grace": "500ms"}}))
        cls.volumes.add(f"ck-{cls.nap}_data")
        d.start()
        cls.token = admin_token(d)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            for name in getattr(cls, "names", ()):
                for net in (f"ck-{name}", f"ck-{name}_front", f"ck-{name}_back"):
                    try:
                        DOCKER.request("DELETE", f"/networks/{net}")
                    except (OSError, http.client.HTTPException):
                        pass

    def post(self, path, body=None):
        return self.d.request("POST", "/monitor/api/v1" + path,
                              headers={"Authorization": f"Bearer {self.token}",
                                       "Content-Type": "application/json"},
                              body=json.dumps(body or {}), timeout=30)

    def pair_running(self):
        w = self.d.wait_status(self.pair, "running", timeout=START_TIMEOUT)
        r = self.wait_answer(self.d, f"/{self.pair}/hello", b'"from": "web"')
        return w, r.json()

    # -- (a) the seed's example --------------------------------------------------------------
    def test_1_seed_example_answers_through_the_gateway(self):
        w = self.d.wait_status(self.seed, "running", timeout=START_TIMEOUT)
        self.assertEqual(w["type"], "compose")
        r = self.wait_answer(self.d, f"/{self.seed}/some/path", MARKER.encode())
        doc = r.json()
        self.assertEqual(doc["path"], "/some/path")  # the prefix is stripped
        self.assertEqual(doc["env"], "development")
        self.assertEqual(doc["cwd"], "/app")
        cs = project_containers(self.seed)
        self.assertEqual(len(cs), 1, [(c["Names"], c["State"]) for c in cs])
        i = DOCKER.inspect(cs[0]["Id"])
        self.assertEqual(i["Name"], f"/ck-{self.seed}-app")
        labels = i["Config"]["Labels"]
        self.assertEqual(labels["cloudyknight.service"], "app")
        self.assertEqual(labels["cloudyknight.role"], "route")
        self.assertEqual(labels["cloudyknight.managed"], "true")
        self.assertEqual(labels["traefik.enable"], "true")  # the file's own labels stay
        self.assertHardened(i, i["HostConfig"]["Memory"], self.seed)
        # The seeds' /workspaces/<name> is the workspace's real folder, read-only.
        binds = [m for m in i["Mounts"] if m["Type"] == "bind"]
        self.assertEqual(len(binds), 1, i["Mounts"])
        self.assertEqual(os.path.realpath(binds[0]["Source"]),
                         os.path.realpath(os.path.join(self.d.ws, self.seed)))
        self.assertEqual(binds[0]["Destination"], "/workspace")
        self.assertFalse(binds[0]["RW"])
        # The external traefik-network is the project's own network.
        self.assertEqual(list(i["NetworkSettings"]["Networks"]), [f"ck-{self.seed}"])
        self.assertIn("app | seed listening on 3000", log_text(self.d, self.seed))

    # -- (b) two services, service_healthy, by name -------------------------------------------
    def test_2_web_waits_for_healthy_api_and_reaches_it_by_name(self):
        _, doc = self.pair_running()
        self.assertEqual(doc["api"], {"from": "api", "secret": "from-dotenv"})
        cs = {c["Labels"]["cloudyknight.service"]: DOCKER.inspect(c["Id"])
              for c in project_containers(self.pair)}
        self.assertEqual(set(cs), {"web", "api"})
        api, web = cs["api"], cs["web"]
        self.assertEqual(api["State"]["Health"]["Status"], "healthy")
        # web was created only once api was healthy.
        self.assertLess(api["State"]["StartedAt"], web["Created"])
        self.assertEqual(web["Config"]["Labels"]["cloudyknight.role"], "route")
        self.assertEqual(api["Config"]["Labels"]["cloudyknight.role"], "service")
        # Only the routed service is published, on loopback.
        self.assertFalse(api["HostConfig"].get("PortBindings"))
        self.assertHardened(web, web["HostConfig"]["Memory"], self.pair)
        self.assertIn(self.volume, [m.get("Name") for m in api["Mounts"]])
        # `run` in a chosen service; logs of one service.
        r = self.post(f"/workspaces/{self.pair}/run", {"command": ["cat", "/data/count"], "service": "api"})
        self.assertEqual(r.status, 200, r.text())
        self.assertEqual(r.json()["exit_code"], 0, r.json())
        self.assertTrue(r.json()["output"].startswith("x"), r.json())
        r = self.post(f"/workspaces/{self.pair}/run", {"command": ["hostname"]})
        self.assertEqual(r.json()["output"].strip(), web["Config"]["Hostname"])
        r = self.post(f"/workspaces/{self.pair}/run", {"command": ["true"], "service": "nope"})
        self.assertEqual(r.status, 400, r.text())
        self.assertIn("api", r.json()["error"]["message"])
        status, doc = self.d.api(f"/workspaces/{self.pair}/logs?service=api")
        self.assertEqual(status, 200, doc)
        self.assertIn("api listening on 5000", doc["lines"])
        self.assertNotIn("web listening on 8000", doc["lines"])
        # Followed, one service's lines only (the stream never ends: read what came first).
        conn = http.client.HTTPConnection("127.0.0.1", self.d.port, timeout=10)
        try:
            conn.request("GET", f"/monitor/api/v1/workspaces/{self.pair}/logs?follow=1&service=api")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            head = r.read1(65536).decode()
        finally:
            conn.close()
        self.assertIn("api listening on 5000\n", head)
        self.assertNotIn("web", head)
        self.assertNotIn("api | ", head)

    # -- (b2) declared networks stay separate -------------------------------------------------
    def test_2a_declared_networks_stay_separate(self):
        self.d.wait_status(self.nets, "running", timeout=START_TIMEOUT)
        r = self.wait_answer(self.d, f"/{self.nets}/hello", b'"from": "web"')
        self.assertEqual(r.json()["api"]["from"], "api")  # web → api over `back`
        cs = {c["Labels"]["cloudyknight.service"]: DOCKER.inspect(c["Id"])
              for c in project_containers(self.nets)}
        self.assertEqual(set(cs), {"web", "api", "spy", "migrate"})
        # The one-shot migrate ran to completion (exit 0) before web was created.
        migrate = cs.pop("migrate")
        self.assertEqual(migrate["State"]["Status"], "exited", migrate["State"])
        self.assertEqual(migrate["State"]["ExitCode"], 0, migrate["State"])
        self.assertLess(migrate["State"]["FinishedAt"], cs["web"]["Created"])
        r = self.post(f"/workspaces/{self.nets}/run", {"command": ["cat", "/data/migrated"], "service": "api"})
        self.assertEqual(r.json()["output"], "ok", r.json())
        front, back = f"ck-{self.nets}_front", f"ck-{self.nets}_back"
        nets = {s: set(c["NetworkSettings"]["Networks"]) for s, c in cs.items()}
        self.assertEqual(nets, {"web": {front, back}, "api": {back}, "spy": {front}})
        for service, c in cs.items():
            for net, ep in c["NetworkSettings"]["Networks"].items():
                self.assertIn(service, ep.get("Aliases") or [], (service, net, ep))
        self.assertFalse(network_exists(self.nets))  # nobody asked for the default network
        resolve = ["python3", "-c", "import socket, sys; socket.gethostbyname(sys.argv[1])"]
        r = self.post(f"/workspaces/{self.nets}/run", {"command": resolve + ["web"], "service": "spy"})
        self.assertEqual(r.json()["exit_code"], 0, r.json())  # spy and web share `front`
        r = self.post(f"/workspaces/{self.nets}/run", {"command": resolve + ["api"], "service": "spy"})
        self.assertNotEqual(r.json()["exit_code"], 0, r.json())  # api is only on `back`
        # Deleting the workspace takes every network of the project with it.
        shutil.rmtree(os.path.join(self.d.ws, self.nets))
        wait_until(lambda: not project_containers(self.nets), timeout=60, what="containers gone")
        for net in (front, back):
            wait_until(lambda net=net: DOCKER.request("GET", f"/networks/{net}")[0] == 404,
                       timeout=60, what=f"network {net} removed")

    # -- (c) refused keys -------------------------------------------------------------------
    def test_3_refused_keys_fail_the_workspace_naming_the_key(self):
        for name, key in ((self.priv, "privileged"), (self.etc, "volumes")):
            w = self.d.wait_status(name, "failed", timeout=START_TIMEOUT)
            self.assertIn(key, w.get("error") or "", w)
            self.assertIn(f"services.app.{key}", w.get("error") or "", w)
            self.assertEqual(DOCKER.containers(name), [], f"{name} created containers")
            # Found when the folder was read, like a broken package.json: not started, so not
            # retried with backoff either, until the file changes.
            self.assertEqual(w.get("reason"), "invalid workspace", w)
            self.assertEqual(w.get("restarts"), 0, w)
        # Fixed, it runs with no other step.
        write(os.path.join(self.d.ws, self.priv, "docker-compose.yml"),
              PRIV_COMPOSE.format(image=PYTHON_IMAGE).replace("    privileged: true\n", ""))
        self.d.wait_status(self.priv, "running", timeout=START_TIMEOUT)
        self.assertEqual(len(DOCKER.containers(self.priv)), 1)

    def test_3a_missing_image_fails_naming_service_and_image(self):
        w = self.d.wait_status(self.miss, "failed", timeout=START_TIMEOUT)
        self.assertIn(f"service app: image {MISSING_IMAGE} is not on this host", w.get("error") or "", w)
        self.assertEqual(DOCKER.containers(self.miss), [])

    # -- idle: freeze, wake, stop, start ---------------------------------------------------
    def test_3b_idle_policy_freezes_and_stops_the_whole_project(self):
        d, name = self.d, self.nap
        self.wait_answer(d, f"/{name}/", b'"from": "web"', timeout=START_TIMEOUT)

        def states():
            return sorted((c["Labels"]["cloudyknight.service"], c["State"])
                          for c in DOCKER.containers(name))
        w = d.wait_workspace(name, lambda w: w.get("frozen") is True, timeout=10,
                             what=f"{name} to be frozen")
        self.assertEqual(w["status"], "running", w)
        wait_until(lambda: states() == [("api", "paused"), ("web", "paused")], 5,
                   f"every container of {name} to be paused")
        r = d.get(f"/{name}/woken", timeout=30)
        self.assertEqual(r.status, 200, r.text())
        self.assertEqual(r.json()["path"], "/woken")
        self.assertEqual(r.json()["api"]["from"], "api")  # the api was resumed too
        self.assertEqual(states(), [("api", "running"), ("web", "running")])
        w = d.wait_workspace(name, lambda w: w.get("status") == "stopped", timeout=15,
                             what=f"{name} to be stopped by the idle policy")
        self.assertEqual(w.get("reason"), "idle", w)
        wait_until(lambda: not DOCKER.containers(name), 10, f"the containers of {name} to go")
        r = d.get(f"/{name}/again", timeout=60)
        self.assertEqual(r.status, 200, r.text())
        self.assertEqual(r.json()["path"], "/again")
        self.assertEqual(states(), [("api", "running"), ("web", "running")])

    # -- `workspace compose` --------------------------------------------------------------
    def test_3c_workspace_compose_prints_the_hardened_file(self):
        p = run_cli("workspace", "compose", self.seed, "--workspaces", self.d.ws)
        self.assertEqual(p.returncode, 0, f"stdout={p.stdout!r} stderr={p.stderr!r}")
        y = p.stdout  # (no YAML parser in the standard library: checked as text)
        self.assertIn(f"name: ck-{self.seed}", y)
        self.assertIn("services:\n  app:\n", y)
        self.assertIn(f'source: "{os.path.join(self.d.ws, self.seed)}"', y)
        self.assertIn("read_only: true", y)
        self.assertNotIn("traefik-network", y)  # mapped to the project's own network
        self.assertIn(f"routes /{self.seed}/ to app on port 3000", y)
        p = run_cli("workspace", "compose", self.etc, "--workspaces", self.d.ws)
        self.assertEqual(p.returncode, 1, f"stdout={p.stdout!r} stderr={p.stderr!r}")
        self.assertEqual(p.stdout, "")
        self.assertIn("services.app.volumes", p.stderr)

    # -- (d) stop and start ------------------------------------------------------------------
    def test_4_stop_removes_containers_and_network_and_keeps_volumes(self):
        self.pair_running()
        r = self.post(f"/workspaces/{self.pair}/stop")
        self.assertEqual(r.status, 202, r.text())
        self.d.wait_status(self.pair, "stopped", timeout=30)
        wait_until(lambda: not DOCKER.containers(self.pair), 30, "the project's containers to go")
        wait_until(lambda: not network_exists(self.pair), 10, "the project's network to go")
        self.assertTrue(volume_exists(self.volume), "the named volume was removed on stop")
        r = self.post(f"/workspaces/{self.pair}/start")
        self.assertEqual(r.status, 202, r.text())
        _, doc = self.pair_running()
        # The volume kept what the api wrote before the stop.
        r = self.post(f"/workspaces/{self.pair}/run", {"command": ["cat", "/data/count"], "service": "api"})
        self.assertGreaterEqual(len(r.json()["output"]), 2, r.json())

    # -- (d) adoption after SIGKILL -------------------------------------------------------------
    def test_5_killed_control_plane_adopts_the_project(self):
        self.pair_running()
        before = {c["Id"]: DOCKER.inspect(c["Id"])["State"]["StartedAt"]
                  for c in project_containers(self.pair)}
        self.assertEqual(len(before), 2)
        self.d.kill()
        cls = type(self)
        cls.d = self.new_daemon(reuse=self.d)
        cls.d.start()
        self.pair_running()
        after = {c["Id"]: DOCKER.inspect(c["Id"])["State"]["StartedAt"]
                 for c in project_containers(self.pair)}
        self.assertEqual(after, before, "containers replaced or restarted instead of adopted")
        self.assertIn("adopted compose project", log_text(self.d, self.pair))

    # -- (e) deletion -------------------------------------------------------------------------
    def test_6_deleting_the_workspace_removes_the_project(self):
        self.pair_running()
        shutil.rmtree(os.path.join(self.d.ws, self.pair))
        wait_until(lambda: not DOCKER.containers(self.pair), 30, "the project's containers to go")
        wait_until(lambda: not network_exists(self.pair), 30, "the project's network to go")
        wait_until(lambda: not volume_exists(self.volume), 30, "the project's volume to go")
        wait_until(lambda: self.d.workspace(self.pair) is None, 10, f"{self.pair} to leave the API")


class TestComposeNeedsDocker(unittest.TestCase):
    """With the process runtime a compose workspace fails, saying it needs runtime: docker."""

    def test_process_runtime_refuses_compose(self):
        d = Daemon(runtime="process")
        d.prepare()
        try:
            write(os.path.join(d.ws, "stack", "docker-compose.yml"),
                  PRIV_COMPOSE.format(image=PYTHON_IMAGE).replace("    privileged: true\n", ""))
            d.start()
            w = d.wait_status("stack", "failed", timeout=10)
            self.assertIn("runtime: docker", w.get("error") or "", w)
            self.assertEqual(w.get("type"), "compose", w)
        finally:
            d.stop()
            d.cleanup()


if __name__ == "__main__":
    unittest.main()
