"""The same compose files run with CloudyKnight and with Debian's docker-compose 1.29 give the
same services, environment, commands, healthchecks, mounts, networks and start order (issue 15,
part 6): an oracle test, as the ignore rules are checked against `git check-ignore`.

Each case is one folder. CloudyKnight runs it as a workspace (one daemon, --runtime docker,
project ck-<name>); docker-compose runs a copy of it (`docker-compose -p <proj> -f ... up -d`,
project <RUN>-dc-<case>). Both runs' containers are inspected and compared, normalised:
  services      the same set (profiles applied);
  per service   Env as a set (CloudyKnight adds CK_BASE_PATH and BASE_URL to the routed service
                on purpose, and nothing else), Cmd, Entrypoint, WorkingDir, User, the file's own
                labels, the healthcheck (engine defaults filled in), mounts (type, target,
                read-only; named volumes without the project prefix; bind sources relative to
                the folder), networks (`<proj>_<net>` and `ck-<name>_<net>` are <net>; the
                default network is `default`) with the service name among the aliases;
  start order   for every depends_on, the dependent started after its dependency started, and
                for service_healthy after the dependency's first passing healthcheck (each
                healthcheck appends its time to /tmp/healthy-at in the container: the engine's
                Health.Log keeps only the last five checks).
Intended differences are asserted, not ignored: CloudyKnight makes every bind read-only and
rewrites the seeds' /workspaces/<name> to the workspace's real folder; it maps an external
network (traefik-network) to the project's default network; it publishes only the routed
service, on 127.0.0.1 (docker-compose publishes what the file says).

Cases:
  seed      the seed's own example (test_compose_runtime's file): an express-style app, the
            ephemeral copy to /app, /workspaces/<name> bind, external traefik-network. The
            docker-compose copy lives at /workspaces/<name>, where the seed's file points.
  redis     a node app and a redis built from Debian's redis-server (build: context,
            dockerfile, args; apt-get inside the build); depends_on service_started.
  worker    a python web app and a worker sharing a named volume; web on networks front and
            back, the worker on back only; entrypoint, user, short depends_on.
  health    web waits for api's healthcheck (service_healthy, start_period), a named volume.
  interp    interpolation from .env (${V:?e}, ${V:-d}, ${V-d}, $$), env_file (quotes,
            export, comments), profiles (COMPOSE_PROFILES in .env: one active, one not) and
            docker-compose.override.yml (environment, labels, healthcheck, a read-write bind).
  extras    hostname, stop_signal, stop_grace_period, tty, stdin_open, extra_hosts.
The case that builds (redis) starts under docker-compose once CloudyKnight has built it, so
the second build reuses the first one's layers (the args are part of their cache key).

TestComposeFileAgreement: files that each tool accepts or refuses (`docker-compose config`
against `cloudyknight workspace compose`, nothing runs), the known differences asserted both
ways; a misspelt key (`enviroment:`) is refused by both.

Needs the images cloudyknight/node:bookworm and cloudyknight/python:bookworm, and Debian's
docker-compose (`apt-get install docker-compose`; scripts/test.sh installs it).

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_compose_compat
"""

import calendar
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from test_compose_runtime import (API_SERVER, SEED_COMPOSE, SEED_PACKAGE, SEED_SERVER, WEB_SERVER,
                                  write)
from test_docker_runtime import (DOCKER, NODE_IMAGE, PYTHON_IMAGE, RUN, START_TIMEOUT, DockerCase,
                                 DockerError, run_cli, setUpModule as docker_set_up_module)
from harness import wait_until

COMPOSE_BIN = shutil.which("docker-compose") or "/usr/bin/docker-compose"
COMPOSE_TIMEOUT = 240
TRAEFIK_NETWORK = "traefik-network"
WORKSPACES_ROOT = "/workspaces"  # where the seed's file expects its folder (docker-compose run)

# What CloudyKnight adds to the routed service's environment on purpose (monitor.cc run_spec);
# it sets no PORT for compose workspaces (compose_plan.cc: only o.env, on the routed service).
CK_ENV_KEYS = {"CK_BASE_PATH", "BASE_URL"}

# Engine defaults of a healthcheck key left unset (0 in the API means "the default").
HEALTH_DEFAULTS = {"Interval": 30_000_000_000, "Timeout": 30_000_000_000, "StartPeriod": 0,
                   "Retries": 3}

# A healthcheck that records when it passed: Health.Log keeps only the last five results.
HEALTHY_AT = "/tmp/healthy-at"

# -- case: redis (node app, redis built from Debian's redis-server) --------------------------

REDIS_APP = """\
const http = require('http');
const net = require('net');
function redis(cmd) {
  return new Promise((resolve, reject) => {
    const s = net.connect(6379, process.env.REDIS_HOST, () => s.write(cmd + '\\r\\n'));
    s.setTimeout(3000, () => { s.destroy(); reject(new Error('timeout')); });
    s.on('data', d => { resolve(d.toString().trim()); s.end(); });
    s.on('error', reject);
  });
}
http.createServer(async (req, res) => {
  try {
    res.end(JSON.stringify({redis: await redis('INCR hits')}));
  } catch (e) {
    res.statusCode = 502;
    res.end(String(e));
  }
}).listen(process.env.PORT, '0.0.0.0', () => console.log('app listening'));
"""

REDIS_DOCKERFILE = """\
ARG BASE_IMAGE=cloudyknight/python:bookworm
FROM ${BASE_IMAGE}
ARG REDIS_PACKAGE=redis-tools
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${REDIS_PACKAGE} \\
 && rm -rf /var/lib/apt/lists/*
ENV REDIS_FROM_ARG=${REDIS_PACKAGE}
COPY redis.conf /etc/redis/compat.conf
CMD ["redis-server", "/etc/redis/compat.conf"]
"""

REDIS_CONF = "bind 0.0.0.0\nprotected-mode no\nsave \"\"\nappendonly no\n"

REDIS_COMPOSE = """\
services:
  app:
    image: {node}
    command: ["node", "server.js"]
    working_dir: /workspace
    volumes:
      - ./app:/workspace:ro
    environment:
      REDIS_HOST: redis
      PORT: "3000"
    ports:
      - "127.0.0.1::3000"
    depends_on:
      redis:
        condition: service_started
  redis:
    build:
      context: ./redis
      dockerfile: Dockerfile.redis
      args:
        BASE_IMAGE: {python}
        REDIS_PACKAGE: redis-server
    healthcheck:
      test: ["CMD-SHELL", "redis-cli ping | grep -q PONG && date +%s.%N >> {healthy_at}"]
      interval: 1s
      timeout: 3s
      retries: 30
"""

# -- case: worker (python web + worker, shared volume, two networks) --------------------------

WORKER = """\
import os, time
n = 0
while True:
    n += 1
    with open('/shared/beat.tmp', 'w') as f:
        f.write(str(n))
    os.replace('/shared/beat.tmp', '/shared/beat')
    time.sleep(0.5)
"""

WORKER_WEB = """\
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            beat = open('/shared/beat').read()
        except OSError:
            beat = None
        body = json.dumps({'beat': beat}).encode()
        self.send_response(200)
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(('0.0.0.0', 8000), H).serve_forever()
"""

WORKER_COMPOSE = """\
services:
  web:
    image: {python}
    entrypoint: ["python3", "-u"]
    command: ["/workspace/web.py"]
    user: "65534:65534"
    working_dir: /workspace
    volumes:
      - ./:/workspace:ro
      - shared:/shared:ro
    expose:
      - "8000"
    networks:
      - front
      - back
    tmpfs:
      - /tmp/cache
    depends_on:
      - worker
  worker:
    image: {python}
    command: python3 -u /workspace/worker.py
    restart: unless-stopped
    environment:
      - ROLE=worker
      - PYTHONUNBUFFERED=1
    volumes:
      - type: bind
        source: .
        target: /workspace
        read_only: true
      - type: volume
        source: shared
        target: /shared
    networks:
      back: {{}}
volumes:
  shared: {{}}
networks:
  front: {{}}
  back: {{}}
"""

# -- case: health (web waits for api's healthcheck) ---------------------------------------

HEALTH_COMPOSE = """\
services:
  web:
    image: {python}
    command: ["python3", "/workspace/web.py"]
    volumes:
      - ./:/workspace:ro
    ports:
      - "127.0.0.1::8000"
    labels:
      cloudyknight.route: "true"
      cloudyknight.port: "8000"
    depends_on:
      api:
        condition: service_healthy
  api:
    image: {python}
    command: ["sh", "-c", "sleep 2 && exec python3 /workspace/api.py"]
    environment:
      API_SECRET: compat
    volumes:
      - ./:/workspace:ro
      - data:/data
    healthcheck:
      test: ["CMD-SHELL", "python3 -c \\"import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/')\\" && date +%s.%N >> {healthy_at}"]
      interval: 1s
      timeout: 3s
      start_period: 20s
      retries: 30
volumes:
  data:
"""

# -- case: interp (interpolation, env_file, profiles, override) -----------------------------

INTERP_DOTENV = """\
# variables for the compose file (and COMPOSE_PROFILES for both tools)
COMPOSE_PROFILES=extra
APP_PORT=8000
GREETING=hello from dotenv
EMPTY=
"""

INTERP_ENV_FILE = """\
# a comment line
FROM_ENV_FILE=plain
QUOTED="double quoted value"
SINGLE='single quoted'
FROM_FILE=env-file-loses
export EXPORTED=yes
"""

INTERP_COMPOSE = """\
services:
  app:
    image: ${{PY_IMAGE:-{python}}}
    command: ["python3", "-m", "http.server", "${{APP_PORT}}"]
    working_dir: /srv
    env_file:
      - app.env
    environment:
      GREETING: ${{GREETING:?GREETING must be set}}
      UNSET_DEFAULT: ${{NOT_SET:-fallback}}
      DOLLAR: "$$literal"
      EMPTY_DASH: ${{EMPTY-dash-default}}
      EMPTY_COLON: ${{EMPTY:-colon-default}}
      FROM_FILE: base
    expose:
      - "${{APP_PORT}}"
    volumes:
      - ./site:/srv:ro
  extra:
    image: {python}
    command: ["python3", "-c", "import time; time.sleep(100000)"]
    profiles: ["extra"]
  debug:
    image: {python}
    command: ["python3", "-c", "import time; time.sleep(100000)"]
    profiles: ["debug"]
"""

INTERP_OVERRIDE = """\
services:
  app:
    environment:
      FROM_OVERRIDE: "yes"
      FROM_FILE: override
    volumes:
      - ./data:/data
    labels:
      example.label: from-override
    healthcheck:
      test: ["CMD", "python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:${APP_PORT}/')"]
      interval: 2s
      timeout: 2s
      retries: 10
"""

# -- case: extras (keys people write that CloudyKnight reads as "not modelled") ---------------

EXTRAS_COMPOSE = """\
services:
  app:
    image: {python}
    command: ["python3", "-m", "http.server", "8000"]
    expose: ["8000"]
    hostname: extras-host
    stop_signal: SIGINT
    stop_grace_period: 3s
    tty: true
    stdin_open: true
    extra_hosts:
      - "printer.local:127.0.0.2"
"""

# The container keys EXTRAS_COMPOSE sets, where the engine shows them.
EXTRAS_KEYS = (("Config", "Hostname"), ("Config", "StopSignal"), ("Config", "StopTimeout"),
               ("Config", "Tty"), ("Config", "OpenStdin"), ("HostConfig", "ExtraHosts"))

CASES = ("redis", "seed", "worker", "health", "interp", "extras")
BUILD_CASES = {"redis"}


def write_case(case, folder, ws_name):
    """The case's folder: its sources and compose file(s)."""
    j = lambda *p: os.path.join(folder, *p)
    if case == "seed":
        write(j("server.js"), SEED_SERVER)
        write(j("package.json"), json.dumps(SEED_PACKAGE))
        write(j("docker-compose.yml"), SEED_COMPOSE.format(image=NODE_IMAGE, name=ws_name))
    elif case == "redis":
        write(j("app", "server.js"), REDIS_APP)
        write(j("redis", "Dockerfile.redis"), REDIS_DOCKERFILE)
        write(j("redis", "redis.conf"), REDIS_CONF)
        write(j("docker-compose.yml"),
              REDIS_COMPOSE.format(node=NODE_IMAGE, python=PYTHON_IMAGE, healthy_at=HEALTHY_AT))
    elif case == "worker":
        write(j("web.py"), WORKER_WEB)
        write(j("worker.py"), WORKER)
        write(j("docker-compose.yml"), WORKER_COMPOSE.format(python=PYTHON_IMAGE))
    elif case == "health":
        write(j("api.py"), API_SERVER)
        write(j("web.py"), WEB_SERVER)
        write(j("docker-compose.yml"), HEALTH_COMPOSE.format(python=PYTHON_IMAGE, healthy_at=HEALTHY_AT))
    elif case == "interp":
        write(j(".env"), INTERP_DOTENV)
        write(j("app.env"), INTERP_ENV_FILE)
        write(j("site", "index.html"), "interp\n")
        write(j("data", "keep.txt"), "data\n")
        write(j("docker-compose.yml"), INTERP_COMPOSE.format(python=PYTHON_IMAGE))
        write(j("docker-compose.override.yml"), INTERP_OVERRIDE)
    elif case == "extras":
        write(j("docker-compose.yml"), EXTRAS_COMPOSE.format(python=PYTHON_IMAGE))
    else:
        raise ValueError(case)


def compose_files(folder):
    return [f for f in ("docker-compose.yml", "docker-compose.override.yml")
            if os.path.exists(os.path.join(folder, f))]


# ----------------------------------------------------------------------------- helpers


def docker_time(text):
    """Seconds since the epoch of the engine's RFC 3339 time with nanoseconds."""
    text = text.rstrip("Z")
    whole, _, frac = text.partition(".")
    return calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")) + float("0." + (frac or "0"))


def by_label(kind, label):
    """Engine objects (containers: every state) with the label key=value."""
    query = {"filters": json.dumps({"label": [label]})}
    if kind == "containers":
        query["all"] = "1"
        return DOCKER.call("GET", "/containers/json", query=query) or []
    if kind == "volumes":
        return (DOCKER.call("GET", "/volumes", query=query) or {}).get("Volumes") or []
    return DOCKER.call("GET", "/networks", query=query) or []


def inspect_project(label):
    """{service: inspect} of the project's containers."""
    out = {}
    for c in by_label("containers", label):
        i = DOCKER.inspect(c["Id"])
        if i is not None:
            out[i["Config"]["Labels"]["com.docker.compose.service"]] = i
    return out


def remove_by_label(label):
    for c in by_label("containers", label):
        DOCKER.remove_container(c["Id"])
    for n in by_label("networks", label):
        DOCKER.request("DELETE", f"/networks/{n['Id']}")
    for v in by_label("volumes", label):
        DOCKER.remove_volume(v["Name"])


def healthy_times(inspect):
    """Times (epoch seconds) the container's healthcheck passed, from its HEALTHY_AT file."""
    code, out, err = DOCKER.exec(inspect["Id"], ["cat", HEALTHY_AT])
    if code != 0:
        raise AssertionError(f"{inspect['Name']}: cat {HEALTHY_AT} -> {code}: {err}")
    return sorted(float(x) for x in out.split())


def compose_env():
    """docker-compose's environment: nothing of the host's that could interpolate the files."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8"}


class ComposeRun:
    """One case under docker-compose 1.29: its project name, folder and `up` output."""

    def __init__(self, case, project, folder, log_path):
        self.case, self.project, self.folder, self.log_path = case, project, folder, log_path
        self.result = None  # (returncode, seconds) once `up` returned
        self.thread = None

    def command(self, *args):
        files = []
        for f in compose_files(self.folder):
            files += ["-f", os.path.join(self.folder, f)]
        return [COMPOSE_BIN, "--ansi", "never", "-p", self.project, *files, *args]

    def run(self, *args, timeout=COMPOSE_TIMEOUT):
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(self.command(*args))}\n".encode())
            log.flush()
            try:
                p = subprocess.run(self.command(*args), cwd=self.folder, env=compose_env(),
                                   stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   timeout=timeout)
                return p.returncode
            except subprocess.TimeoutExpired:
                log.write(f"(timed out after {timeout}s)\n".encode())
                return None

    def start_up(self):
        def up():
            t0 = time.monotonic()
            self.result = (self.run("up", "-d"), time.monotonic() - t0)
        self.thread = threading.Thread(target=up, name=f"compose-up-{self.case}", daemon=True)
        self.thread.start()

    def output(self, limit=6000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-limit:]
        except OSError:
            return ""


# ----------------------------------------------------------------------------- the test


def setUpModule():
    docker_set_up_module()
    if not os.access(COMPOSE_BIN, os.X_OK):
        raise RuntimeError(f"{COMPOSE_BIN} is missing: apt-get install docker-compose "
                           f"(scripts/test.sh installs it)")


class TestComposeCompat(DockerCase):
    """Every case under both tools at once (one daemon), then compared case by case."""

    @classmethod
    def init_class_state(cls):
        super().init_class_state()
        cls.runs = {}
        cls.made_traefik = False
        cls.made_root = False
        cls.seed_copy = None

    @classmethod
    def set_up(cls):
        cls.ws = {case: cls.ws_name(f"cc-{case}") for case in CASES}
        for case in ("redis",):
            cls.images.add(f"ck-{cls.ws[case]}-redis:latest")
        cls.d = d = cls.new_daemon()
        d.prepare()
        for case in CASES:
            write_case(case, os.path.join(d.ws, cls.ws[case]), cls.ws[case])
        # The copies docker-compose runs: the seed's at /workspaces/<name>, where its file
        # points (the seeds' deployment layout); the others under the daemon's temp folder.
        if not os.path.isdir(WORKSPACES_ROOT):
            os.makedirs(WORKSPACES_ROOT)
            cls.made_root = True
        for case in CASES:
            if case == "seed":
                folder = os.path.join(WORKSPACES_ROOT, cls.ws[case])
                cls.seed_copy = folder
            else:
                folder = os.path.join(d.tmp, "compose", case)
            shutil.copytree(os.path.join(d.ws, cls.ws[case]), folder)
            project = f"{RUN}-dc-{case}"
            cls.runs[case] = ComposeRun(case, project, folder,
                                        os.path.join(d.tmp, f"compose-{case}.log"))
        status, _ = DOCKER.request("GET", f"/networks/{TRAEFIK_NETWORK}")
        if status == 404:
            DOCKER.call("POST", "/networks/create",
                        {"Name": TRAEFIK_NETWORK, "CheckDuplicate": True,
                         "Labels": {"cloudyknight.test": RUN}})
            cls.made_traefik = True
        d.start()
        # Cases that build an image start under docker-compose once CloudyKnight's build is
        # done: the same context, Dockerfile and args then reuse its layers (the apt-get step
        # included) instead of doing the same work twice at once on two cores.
        for case, r in cls.runs.items():
            if case not in BUILD_CASES:
                r.start_up()
        deadline = time.monotonic() + COMPOSE_TIMEOUT
        for case in CASES:
            # Running, or failed for good (then the message says why, without waiting on).
            w = d.wait_workspace(
                cls.ws[case], lambda w: w.get("status") == "running" or (
                    w.get("status") == "failed" and "gave up" in (w.get("reason") or "")),
                timeout=max(START_TIMEOUT, deadline - time.monotonic()),
                what=f"{cls.ws[case]} to be running")
            if w.get("status") != "running":
                raise AssertionError(f"case {case}: CloudyKnight could not run the file: "
                                     f"{w.get('error')}")
            if case in BUILD_CASES:
                cls.runs[case].start_up()
        for r in cls.runs.values():
            r.thread.join(max(1, deadline - time.monotonic()))
        cls.ck, cls.dc = {}, {}
        for case in CASES:
            r = cls.runs[case]
            if r.result is None or r.result[0] != 0:
                raise AssertionError(f"docker-compose up for case {case} failed "
                                     f"({r.result}):\n{r.output()}")
            cls.ck[case] = cls.settled(f"com.docker.compose.project=ck-{cls.ws[case]}")
            cls.dc[case] = cls.settled(f"com.docker.compose.project={r.project}")

    @classmethod
    def settled(cls, label):
        """The project's containers once each runs and each with a healthcheck is healthy."""
        def ready():
            cs = inspect_project(label)
            if not cs:
                return None
            for i in cs.values():
                s = i["State"]
                if not s.get("Running"):
                    return None
                if "Health" in s and s["Health"].get("Status") != "healthy":
                    return None
            return cs
        wait_until(ready, 60, f"every container of {label} running (and healthy)")
        return inspect_project(label)

    @classmethod
    def tearDownClass(cls):
        problems = []
        runs = list(getattr(cls, "runs", {}).values())
        for r in runs:
            if r.thread is not None:
                r.thread.join(COMPOSE_TIMEOUT)
        codes = {}

        def down(r):
            codes[r.case] = r.run("down", "-v", "--rmi", "local", "--remove-orphans", "-t", "2",
                                  timeout=120)
        threads = [threading.Thread(target=down, args=(r,), daemon=True) for r in runs]
        for t in threads:
            t.start()
        for t in threads:
            t.join(130)
        for r in runs:
            if codes.get(r.case) != 0:
                problems.append(f"docker-compose down for {r.case} -> {codes.get(r.case)}:\n"
                                f"{r.output(2000)}")
            try:
                remove_by_label(f"com.docker.compose.project={r.project}")
                DOCKER.remove_image(f"{r.project}_redis")
            except (OSError, http.client.HTTPException, DockerError) as e:
                problems.append(f"cleaning up {r.project}: {e}")
        try:
            super().tearDownClass()
        except AssertionError as e:
            problems.append(str(e))
        for name in getattr(cls, "ws", {}).values():
            try:
                remove_by_label(f"cloudyknight.workspace={name}")
            except (OSError, http.client.HTTPException, DockerError) as e:
                problems.append(f"cleaning up {name}: {e}")
        if cls.made_traefik:
            DOCKER.request("DELETE", f"/networks/{TRAEFIK_NETWORK}")
        if cls.seed_copy:
            shutil.rmtree(cls.seed_copy, ignore_errors=True)
        if cls.made_root:
            try:
                os.rmdir(WORKSPACES_ROOT)
            except OSError:
                pass
        if problems:
            raise AssertionError("\n".join(problems))

    @classmethod
    def diagnostics(cls):
        out = [super().diagnostics()]
        for r in getattr(cls, "runs", {}).values():
            out.append(f"----- docker-compose {r.case} ({r.project}), up: {r.result}\n{r.output(3000)}")
        return "\n".join(out)

    # -- normalising ---------------------------------------------------------------------------
    def net_name(self, tool, case, name):
        """An engine network's name as the file calls it (default: `default`)."""
        if tool == "ck":
            project = f"ck-{self.ws[case]}"
            if name == project:
                return "default"
        else:
            project = self.runs[case].project
        return name[len(project) + 1:] if name.startswith(project + "_") else name

    def folder(self, tool, case):
        return os.path.realpath(os.path.join(self.d.ws, self.ws[case]) if tool == "ck"
                                else self.runs[case].folder)

    def mounts(self, tool, case, i):
        """{target: (type, source as the file names it, read-only)}."""
        project = f"ck-{self.ws[case]}" if tool == "ck" else self.runs[case].project
        out = {}
        for m in i.get("Mounts") or []:
            if m["Type"] == "tmpfs":  # compared by tmpfs(): 1.29 does not list them here
                continue
            if m["Type"] == "bind":
                src = os.path.relpath(os.path.realpath(m["Source"]), self.folder(tool, case))
            elif m["Type"] == "volume":
                name = m.get("Name") or ""
                src = name[len(project) + 1:] if name.startswith(project + "_") else "(anonymous)"
            else:
                src = m.get("Source")
            out[m["Destination"]] = (m["Type"], src, not m.get("RW", True))
        return out

    @staticmethod
    def restart(i):
        """(policy, maximum retries); the engine reads "" as "no"."""
        r = (i.get("HostConfig") or {}).get("RestartPolicy") or {}
        return (r.get("Name") or "no", r.get("MaximumRetryCount") or 0)

    @staticmethod
    def tmpfs(i):
        """Targets of tmpfs mounts (docker-compose 1.29 uses HostConfig.Tmpfs, CloudyKnight
        HostConfig.Mounts)."""
        hc = i.get("HostConfig") or {}
        return set(hc.get("Tmpfs") or {}) | {m["Target"] for m in hc.get("Mounts") or []
                                              if m.get("Type") == "tmpfs"}

    def networks(self, tool, case, i):
        """{network as the file names it: aliases}."""
        nets = (i.get("NetworkSettings") or {}).get("Networks") or {}
        return {self.net_name(tool, case, n): set(v.get("Aliases") or []) for n, v in nets.items()}

    @staticmethod
    def healthcheck(i):
        h = (i.get("Config") or {}).get("Healthcheck")
        if h is None:
            return None
        out = {k: (h.get(k) or v) for k, v in HEALTH_DEFAULTS.items()}
        out["Test"] = h.get("Test")
        return out

    @staticmethod
    def own_labels(i):
        return {k: v for k, v in ((i.get("Config") or {}).get("Labels") or {}).items()
                if not k.startswith(("cloudyknight.", "com.docker.compose."))}

    # -- comparing -------------------------------------------------------------------------------
    def compare(self, case, route=None, route_port=None):
        """Asserts both runs agree on everything but the documented differences (which each
        case asserts itself); returns (ck, dc): {service: inspect} of each run."""
        ck, dc = self.ck[case], self.dc[case]
        self.assertEqual(set(ck), set(dc), f"{case}: services")
        for svc in sorted(ck):
            a, b = ck[svc], dc[svc]
            what = f"{case}/{svc}"
            for key in ("Cmd", "Entrypoint", "WorkingDir", "User"):
                self.assertEqual(a["Config"].get(key), b["Config"].get(key), f"{what}: Config.{key}")
            env_ck, env_dc = set(a["Config"]["Env"] or []), set(b["Config"]["Env"] or [])
            self.assertEqual(env_dc - env_ck, set(), f"{what}: docker-compose's Env has more")
            extra = {e.split("=", 1)[0] for e in env_ck - env_dc}
            self.assertEqual(extra, CK_ENV_KEYS if svc == route else set(),
                             f"{what}: CloudyKnight's own variables (only on the routed service)")
            self.assertEqual(self.own_labels(a), self.own_labels(b), f"{what}: labels")
            self.assertEqual(self.healthcheck(a), self.healthcheck(b), f"{what}: healthcheck")
            self.assertEqual(self.restart(a), self.restart(b), f"{what}: restart")
            self.assertEqual(self.tmpfs(a), self.tmpfs(b), f"{what}: tmpfs")
            ma, mb = self.mounts("ck", case, a), self.mounts("dc", case, b)
            self.assertEqual(set(ma), set(mb), f"{what}: mount targets")
            for target in ma:
                if ma[target][0] == "bind":
                    # Every bind of CloudyKnight's is read-only, whatever the file says.
                    self.assertTrue(ma[target][2], f"{what}: CloudyKnight bind {target} writable")
                    self.assertEqual(ma[target][:2], mb[target][:2], f"{what}: bind {target}")
                else:
                    self.assertEqual(ma[target], mb[target], f"{what}: mount {target}")
            na, nb = self.networks("ck", case, a), self.networks("dc", case, b)
            for tool, nets in (("CloudyKnight", na), ("docker-compose", nb)):
                for net, aliases in nets.items():
                    self.assertIn(svc, aliases, f"{what}: {tool}: aliases on {net}")
            if case != "seed":  # the seed's external network is compared in its own test
                self.assertEqual(set(na), set(nb), f"{what}: networks")
            self.assertEqual(a["Config"]["Labels"]["cloudyknight.workspace"], self.ws[case])
            self.assertTrue(a["State"]["Running"], f"{what}: CloudyKnight's not running")
            self.assertTrue(b["State"]["Running"], f"{what}: docker-compose's not running")
            # Published ports (an intended difference): ours are the routed service's only,
            # on loopback.
            bindings = a["HostConfig"].get("PortBindings") or {}
            if svc == route:
                self.assertEqual(list(bindings), [f"{route_port}/tcp"], f"{what}: published")
                for bind in bindings[f"{route_port}/tcp"]:
                    self.assertEqual(bind["HostIp"], "127.0.0.1", f"{what}: published on {bind}")
            else:
                self.assertEqual(bindings, {}, f"{what}: CloudyKnight publishes a non-routed service")
        return ck, dc

    def assert_started_after(self, case, dependent, dependency, healthy):
        """In both runs: `dependent` started after `dependency` started (and, for healthy,
        after its first passing healthcheck)."""
        for tool, cs in (("CloudyKnight", self.ck[case]), ("docker-compose", self.dc[case])):
            start = docker_time(cs[dependent]["State"]["StartedAt"])
            dep_start = docker_time(cs[dependency]["State"]["StartedAt"])
            self.assertGreater(start, dep_start,
                               f"{case} ({tool}): {dependent} started before {dependency}")
            if healthy:
                passed = healthy_times(cs[dependency])
                self.assertTrue(passed, f"{case} ({tool}): {dependency} never passed its check")
                self.assertGreater(start, passed[0],
                                   f"{case} ({tool}): {dependent} started at {start} before "
                                   f"{dependency} first passed its healthcheck at {passed[0]}")
                # The engine's own record agrees where it still holds the first pass: it keeps
                # the last 5 results, so only a log shorter than that begins at the first check
                # (a check failing later, under load, would look like the start otherwise).
                log = cs[dependency]["State"]["Health"]["Log"]
                if log and len(log) < 5 and log[0]["ExitCode"] != 0:
                    first_ok = next(docker_time(e["End"]) for e in log if e["ExitCode"] == 0)
                    self.assertGreater(start, first_ok, f"{case} ({tool}): Health.Log")

    # -- the cases -----------------------------------------------------------------------------
    def test_seed_example(self):
        ck, dc = self.compare("seed", route="app", route_port=3000)
        name = self.ws["seed"]
        a, b = ck["app"], dc["app"]
        # Documented difference 1: the seeds' /workspaces/<name> bind is the workspace's real
        # folder under CloudyKnight; docker-compose binds the path as written.
        src = lambda i: [m["Source"] for m in i["Mounts"] if m["Destination"] == "/workspace"]
        self.assertEqual(src(a), [os.path.join(self.d.ws, name)])
        self.assertEqual(src(b), [f"/workspaces/{name}"])
        # Documented difference 2: the external traefik-network is CloudyKnight's default
        # network; docker-compose joins the external network itself.
        self.assertEqual(set(self.networks("ck", "seed", a)), {"default"})
        self.assertEqual(set(self.networks("dc", "seed", b)), {TRAEFIK_NETWORK})
        # Both binds are read-only here because the file says :ro.
        self.assertEqual(self.mounts("ck", "seed", a)["/workspace"], ("bind", ".", True))
        self.assertEqual(self.mounts("dc", "seed", b)["/workspace"], ("bind", ".", True))

    def test_redis_built_from_a_dockerfile(self):
        ck, dc = self.compare("redis", route="app", route_port=3000)
        for tool, cs in (("CloudyKnight", ck), ("docker-compose", dc)):
            env = dict(e.split("=", 1) for e in cs["redis"]["Config"]["Env"])
            self.assertEqual(env.get("REDIS_FROM_ARG"), "redis-server", f"{tool}: build args")
            code, out, _ = DOCKER.exec(cs["redis"]["Id"], ["redis-cli", "ping"])
            self.assertEqual((code, out.strip()), (0, "PONG"), tool)
            code, out, err = DOCKER.exec(cs["app"]["Id"], [
                "node", "-e", "require('http').get('http://127.0.0.1:3000/', r => "
                "{let b=''; r.on('data', d => b += d); r.on('end', () => console.log(b))})"])
            self.assertEqual(code, 0, f"{tool}: {err}")
            self.assertIn('"redis":"', out, f"{tool}: the app reaches redis by name")
        # The two tools built the same image from the same context, Dockerfile and args.
        img = lambda i: DOCKER.call("GET", f"/images/{i['Image']}/json")
        self.assertEqual(img(ck["redis"])["Config"]["Cmd"], img(dc["redis"])["Config"]["Cmd"])
        self.assertEqual(ck["redis"]["Config"]["Image"], f"ck-{self.ws['redis']}-redis:latest")
        self.assert_started_after("redis", "app", "redis", healthy=False)

    def test_worker_shares_a_volume_on_two_networks(self):
        ck, dc = self.compare("worker", route="web", route_port=8000)
        # web on front and back, the worker on back only (the comparison above checked both
        # tools agree; this says what they agree on).
        for tool, cs in (("ck", ck), ("dc", dc)):
            self.assertEqual(set(self.networks(tool, "worker", cs["web"])), {"front", "back"}, tool)
            self.assertEqual(set(self.networks(tool, "worker", cs["worker"])), {"back"}, tool)
            code, out, _ = DOCKER.exec(cs["web"]["Id"], ["cat", "/shared/beat"])
            self.assertEqual(code, 0, f"{tool}: web does not see the worker's volume")
            self.assertTrue(out.strip().isdigit(), out)
        for tool, cs in (("ck", ck), ("dc", dc)):
            self.assertEqual(cs["worker"]["HostConfig"]["RestartPolicy"]["Name"], "unless-stopped", tool)
            self.assertEqual(self.tmpfs(cs["web"]), {"/tmp/cache"}, tool)
        self.assert_started_after("worker", "web", "worker", healthy=False)

    def test_health_web_waits_for_the_api(self):
        ck, dc = self.compare("health", route="web", route_port=8000)
        for tool, cs in (("ck", ck), ("dc", dc)):
            self.assertEqual(cs["api"]["State"]["Health"]["Status"], "healthy", tool)
            self.assertEqual(set(self.networks(tool, "health", cs["api"])), {"default"}, tool)
        self.assert_started_after("health", "web", "api", healthy=True)

    def test_interpolation_env_file_profiles_override(self):
        ck, dc = self.compare("interp", route="app", route_port=8000)
        self.assertEqual(set(ck), {"app", "extra"}, "COMPOSE_PROFILES=extra in .env")
        for tool, cs in (("CloudyKnight", ck), ("docker-compose", dc)):
            env = dict(e.split("=", 1) for e in cs["app"]["Config"]["Env"])
            want = {"GREETING": "hello from dotenv", "UNSET_DEFAULT": "fallback",
                    "DOLLAR": "$literal", "EMPTY_DASH": "",
                    "EMPTY_COLON": "colon-default", "FROM_FILE": "override",
                    "FROM_OVERRIDE": "yes", "FROM_ENV_FILE": "plain",
                    "QUOTED": "double quoted value", "SINGLE": "single quoted",
                    "EXPORTED": "yes"}
            self.assertEqual({k: env.get(k) for k in want}, want, tool)
            self.assertEqual(cs["app"]["Config"]["Cmd"], ["python3", "-m", "http.server", "8000"])
            self.assertEqual(cs["app"]["Config"]["Labels"].get("example.label"), "from-override")
        # Documented difference: the override's read-write bind is read-only under CloudyKnight.
        rw = lambda i: [m["RW"] for m in i["Mounts"] if m["Destination"] == "/data"]
        self.assertEqual(rw(ck["app"]), [False])
        self.assertEqual(rw(dc["app"]), [True])

    def test_extras_keys_cloudyknight_ignores(self):
        """hostname, stop_signal, stop_grace_period, tty, stdin_open and extra_hosts reach the
        engine as docker-compose sets them (they were once warned about and ignored)."""
        ck, dc = self.compare("extras", route="app", route_port=8000)
        a, b = ck["app"], dc["app"]
        self.assertEqual((b["Config"]["Hostname"], b["Config"]["StopSignal"],
                          b["Config"]["StopTimeout"], b["HostConfig"]["ExtraHosts"]),
                         ("extras-host", "SIGINT", 3, ["printer.local:127.0.0.2"]),
                         "docker-compose applied the file")
        differ = {f"{part}.{key}": (a[part].get(key), b[part].get(key))
                  for part, key in EXTRAS_KEYS if a[part].get(key) != b[part].get(key)}
        self.assertEqual(differ, {}, "keys CloudyKnight ignores, {key: (CloudyKnight, docker-compose)}")


# -- which files each tool accepts (`docker-compose config` against `cloudyknight workspace
# compose`; nothing runs) --------------------------------------------------------------------

FILE_HEAD = f"services:\n  app:\n    image: {PYTHON_IMAGE}\n    expose: ['8000']\n"

# name: (file, CloudyKnight accepts, docker-compose 1.29 accepts, why they differ or None)
FILES = {
    "lone-dollar": (FILE_HEAD + "    environment:\n      A: cost $ 5\n", False, False, None),
    "dep-missing": (FILE_HEAD + "    depends_on: [nope]\n", False, False, None),
    "cycle": (FILE_HEAD + "    depends_on: [b]\n  b:\n    image: x\n    depends_on: [app]\n",
              False, False, None),
    "anchors": ("x-env: &e\n  FOO: bar\n" + FILE_HEAD + "    environment:\n      <<: *e\n      B: q\n",
                True, True, None),
    "health-string": (FILE_HEAD + "    healthcheck:\n      test: curl -f http://localhost\n"
                      "      interval: 1m30s\n", True, True, None),
    "env-no-value": (FILE_HEAD + "    environment:\n      - FOO\n", True, True, None),
    # Known differences, none of them CloudyKnight's fault:
    "plus-alt": (FILE_HEAD + "    environment:\n      A: ${V:+alt}\n      B: ${V+alt}\n", True, False,
                 "${V:+alt} and ${V+alt} are in the Compose Specification (and Compose v2); "
                 "1.29 says 'Invalid interpolation format'"),
    "duplicate-key": (FILE_HEAD + "    environment:\n      A: x\n    environment:\n      B: y\n",
                      False, True, "YAML forbids duplicate keys (Compose v2 refuses them); "
                      "1.29's PyYAML keeps the last one"),
    "boolean-env": (FILE_HEAD + "    environment:\n      B: true\n", True, False,
                    "CloudyKnight keeps the text 'true'; 1.29's schema wants a string or number"),
    "port-range": (FILE_HEAD + "    ports: ['99999']\n", False, True,
                   "1.29's `config` leaves it to the engine, which refuses it at create"),
}


class TestComposeFileAgreement(unittest.TestCase):
    """Files both tools accept or refuse, and the known differences, asserted both ways so a
    change in either tool shows."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ck-compat-files-")

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def verdicts(self, name, text):
        """(CloudyKnight's exit code and stderr, docker-compose's)."""
        folder = os.path.join(self.tmp, name)
        write(os.path.join(folder, "docker-compose.yml"), text)
        write(os.path.join(folder, ".env"), "V=set\n")
        ck = run_cli("workspace", "compose", name, "--workspaces", self.tmp)
        dc = subprocess.run([COMPOSE_BIN, "-p", f"{RUN}-files", "-f",
                             os.path.join(folder, "docker-compose.yml"), "config", "-q"],
                            cwd=folder, env=compose_env(), capture_output=True, text=True,
                            stdin=subprocess.DEVNULL, timeout=60)
        return (ck.returncode, ck.stderr.strip()), (dc.returncode, dc.stderr.strip())

    def test_both_tools_agree_or_differ_as_documented(self):
        verdicts = {}
        threads = [threading.Thread(target=lambda n, t: verdicts.__setitem__(n, self.verdicts(n, t)),
                                    args=(name, spec[0]), daemon=True) for name, spec in FILES.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join(90)
        for name, (text, ck_ok, dc_ok, why) in FILES.items():
            with self.subTest(name):
                self.assertIn(name, verdicts, "no verdict within 90 s")
                ck, dc = verdicts[name]
                self.assertEqual((ck[0] == 0, dc[0] == 0), (ck_ok, dc_ok),
                                 f"{name} ({why or 'both tools agree'}): CloudyKnight {ck}, "
                                 f"docker-compose {dc}")
                if not ck_ok:
                    self.assertIn("docker-compose.yml:", ck[1], "CloudyKnight names file and line")

    def test_misspelt_key_is_refused(self):
        """A key outside the Compose Specification (a misspelt `enviroment:`) is refused by both
        tools, CloudyKnight naming the key it probably meant; keys of the specification that
        CloudyKnight does not apply stay warnings."""
        text = FILE_HEAD + "    enviroment:\n      DATABASE_URL: postgres://db/app\n"
        ck, dc = self.verdicts("misspelt", text)
        self.assertNotEqual(dc[0], 0, f"docker-compose accepted it: {dc}")
        self.assertIn("enviroment", dc[1])
        self.assertNotEqual(ck[0], 0, f"CloudyKnight accepted a misspelt key: {ck}")
        self.assertIn("services.app.enviroment", ck[1])
        self.assertIn("did you mean `environment`?", ck[1])


if __name__ == "__main__":
    unittest.main()
