"""Harness for the end-to-end tests of the real `cloudyknight` binary.

Python 3.11 standard library only. A `Daemon` copies fixture folders (from
tests/integration/fixtures/ and examples/) into a fresh temporary directory,
writes a YAML config, starts

    $CK_BINARY serve --listen 127.0.0.1:PORT --workspaces TMP/ws --data TMP/data
                     --runtime process [--config TMP/config.yaml] [extra args]

waits for /monitor/healthz and offers HTTP helpers (http.client, and raw sockets
for request targets that must reach the server byte for byte), API polling with
deadlines, and a SIGTERM shutdown that checks the exit code and that every
workspace process the API ever reported is gone.

`DaemonTestCase` shares one daemon per test class (setUpClass/tearDownClass) and
prints the daemon's stderr and the workspace logs when a test fails.

Environment:
  CK_BINARY     path of the binary (default: <repo>/build/cloudyknight)
  CK_KEEP_TMP=1 keep the temporary directories (their paths are printed)
"""

import base64
import hashlib
import html
import http.client
import json
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
FIXTURES = os.path.join(HERE, "fixtures")
EXAMPLES = os.path.join(REPO, "examples")
DEFAULT_BINARY = os.path.join(REPO, "build", "cloudyknight")

# Written to TMP/secret.txt, i.e. next to (outside) the workspaces folder: no
# request may ever return it.
SECRET_MARKER = "CK-SECRET-OUTSIDE-THE-WORKSPACES-7f3a9c"

# Symlinks created when a fixture is copied (never committed to git). Targets are
# taken literally; relative ones resolve from the link's folder (TMP/ws/<name>/).
FIXTURE_SYMLINKS = {
    "static": {
        "escape": "/etc/passwd",
        "escape-dir": "/etc",
        "secret-link.txt": "../../secret.txt",
    },
}

POLL_INTERVAL = 0.1
# How much slower than a release build the daemon under test may be: scripts/test.sh sets 3 for
# the sanitizer pass. Waits stretch by it, and so do the bounds on how soon something happens
# (the figures themselves are checked in the release pass).
TIME_SCALE = max(1.0, float(os.environ.get("CK_TEST_TIME_SCALE", "1") or 1))


def binary():
    return os.environ.get("CK_BINARY") or DEFAULT_BINARY


# --------------------------------------------------------------------------- ports


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def free_port_range(count=30):
    """(lo, hi): `count` consecutive free ports, so parallel daemons don't collide."""
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        lo = rng.randrange(20000, 60000 - count)
        if all(_port_free(p) for p in range(lo, lo + count)):
            return lo, lo + count - 1
    raise RuntimeError("no free port range found")


def ephemeral_port_range():
    """(lo, hi) of the kernel's ephemeral (outgoing connection) ports."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_service_port_range(count=30):
    """(lo, hi): `count` consecutive free ports below the kernel's ephemeral range, for
    runtime.ports when an app binds its port long after the daemon chose it (an outgoing
    connection's local port, even the daemon's own readiness probe, can take a port of the
    ephemeral range in between; the product's default 8000-8100 is below it too)."""
    top = ephemeral_port_range()[0] - count
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        lo = rng.randrange(10000, max(top, 10001))
        if all(_port_free(p) for p in range(lo, lo + count)):
            return lo, lo + count - 1
    raise RuntimeError("no free port range found below the ephemeral ports")


def listening_ports(pid):
    """The TCP ports process `pid` listens on (from its fds and /proc/net/tcp*),
    so a test can tell what *this* daemon bound, whatever other tests run beside it."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def port_listening(port, host="127.0.0.1"):
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


# ------------------------------------------------------------------------- process


def _proc_stat(pid):
    """(state, pgrp, ppid) of a pid, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    rest = data[data.rfind(")") + 2:].split()
    return rest[0], int(rest[2]), int(rest[1])


def _all_stats():
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st is not None:
                out[int(entry)] = st
    return out


def descendants(pid):
    """pid and every live process below it (host pids, by walking ppid links)."""
    stats = _all_stats()
    children = {}
    for p, (_, _, ppid) in stats.items():
        children.setdefault(ppid, []).append(p)
    out, pending = [], [pid]
    for _ in range(100_000):
        if not pending:
            break
        p = pending.pop()
        if p in stats and stats[p][0] not in ("Z", "X"):
            out.append(p)
        pending.extend(children.get(p, []))
    return out


def cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode("utf-8", "replace").strip()
    except OSError:
        return ""


def find_app_process(pid, needle):
    """The host pid of the process at or below `pid` whose command line contains
    `needle` (apps may run under an init process, in their own pid namespace)."""
    for p in descendants(pid):
        if needle in cmdline(p):
            return p
    return None


def argv(pid):
    """The argument vector of a pid ([] when it is gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read()
    except OSError:
        return []
    return [a.decode("utf-8", "replace") for a in data.split(b"\0") if a]


def host_cwd(pid):
    """A process's working folder as the host names it. A sandboxed app (process runtime)
    lives in its own mount namespace with its folder at /app: mapped back through the /app
    mount's source in its mountinfo. None when the process is gone."""
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
        if os.readlink(f"/proc/{pid}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            return os.path.realpath(cwd)
        with open(f"/proc/{pid}/mountinfo") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 4 and fields[4] == "/app" and (cwd == "/app" or cwd.startswith("/app/")):
                    return os.path.realpath(fields[3] + cwd[len("/app"):])
        return cwd
    except OSError:
        return None


def processes_with_arg(arg, cwd_under=None):
    """Live (non-zombie) pids with `arg` as one whole argument (e.g. "app.py" matches
    `python3 app.py`, not `sh -c "exec python3 app.py"`), optionally only those whose
    working directory is `cwd_under` or below it."""
    root = os.path.realpath(cwd_under) if cwd_under else None
    out = []
    for p, st in _all_stats().items():
        if st[0] in ("Z", "X") or arg not in argv(p):
            continue
        if root is not None:
            cwd = host_cwd(p)
            if cwd is None:
                continue
            if cwd != root and not cwd.startswith(root + os.sep):
                continue
        out.append(p)
    return sorted(out)


def close_wait_sockets(pid):
    """{inode: (local port, remote port)} of pid's TCP sockets in CLOSE_WAIT (the peer closed,
    the process never did): a connection it forgot."""
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return {}
    out = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "08" and cols[9] in inodes:  # 08: CLOSE_WAIT
                out[cols[9]] = (int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16))
    return out


def pid_alive(pid):
    """True if pid exists and is not a zombie."""
    st = _proc_stat(pid)
    return st is not None and st[0] not in ("Z", "X")


def group_members(pgid):
    """Live (non-zombie) pids whose process group is pgid."""
    return [p for p, st in _all_stats().items() if st[1] == pgid and st[0] not in ("Z", "X")]


def rss_kib(pid):
    """A process's resident memory in KiB (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def wait_until(predicate, timeout, what="condition", interval=POLL_INTERVAL):
    """Polls predicate() until it returns something truthy; returns it. Bounded in
    time and in iterations. Raises AssertionError naming `what` on timeout. The timeout
    stretches by TIME_SCALE."""
    timeout *= TIME_SCALE
    deadline = time.monotonic() + timeout
    last = None
    for _ in range(int(timeout / interval) + 2):
        last = predicate()
        if last:
            return last
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


# ------------------------------------------------------------------------ config


def to_yaml(d, indent=0):
    """Tiny YAML writer for nested dicts of scalars and lists (strings and lists are
    JSON, which is valid YAML)."""
    lines = []
    for k, v in d.items():
        pad = " " * indent
        if isinstance(v, dict):
            lines.append(f"{pad}{k}:")
            lines.append(to_yaml(v, indent + 2))
        elif isinstance(v, bool):
            lines.append(f"{pad}{k}: {'true' if v else 'false'}")
        elif isinstance(v, (int, float)):
            lines.append(f"{pad}{k}: {v}")
        elif isinstance(v, list):
            lines.append(f"{pad}{k}: {json.dumps(v, ensure_ascii=False)}")
        else:
            lines.append(f"{pad}{k}: {json.dumps(str(v), ensure_ascii=False)}")
    return "\n".join(l for l in lines if l)


def deep_merge(a, b):
    out = dict(a)
    for k, v in b.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


# -------------------------------------------------------------------------- HTTP


class Response:
    def __init__(self, status, reason, headers, body):
        self.status = status
        self.reason = reason
        self.headers = headers  # http.client.HTTPMessage (case-insensitive)
        self.body = body

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def text(self):
        return self.body.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return f"<Response {self.status} {self.reason} {len(self.body)} bytes>"


def body_excerpt(body, limit=400):
    """Readable excerpt of a response body (HTML reduced to its text)."""
    text = body.decode("utf-8", "replace")
    if "<" in text:
        text = re.sub(r"<(style|script)\b.*?</\1>|<[^>]+>", " ", text, flags=re.S | re.I)
        text = html.unescape(text)
    text = re.sub(r"\s+", " ", text).strip()
    return repr(text[:limit])


def read_response(sock, method="GET"):
    """Parses one HTTP response from a connected socket (handles chunked and
    Content-Length bodies, HEAD and 1xx-less statuses)."""
    resp = http.client.HTTPResponse(sock, method=method)
    resp.begin()
    body = resp.read()
    return Response(resp.status, resp.reason, resp.msg, body)


# --------------------------------------------------------------------- WebSocket


def ws_accept_key(key):
    return base64.b64encode(
        hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
    ).decode()


def ws_encode(opcode, payload, mask=True, fin=True):
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack(">BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack(">BBH", b0, mbit | 126, n)
    else:
        head = struct.pack(">BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


class WebSocketClient:
    """Minimal RFC 6455 client on a raw socket (the test side of the passthrough)."""

    def __init__(self, port, path, host=None, timeout=10, extra_headers=()):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.key = base64.b64encode(os.urandom(16)).decode()
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host or f'127.0.0.1:{port}'}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {self.key}",
            "Sec-WebSocket-Version: 13",
            *extra_headers,
        ]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        for _ in range(1000):
            if b"\r\n\r\n" in head:
                break
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            head += chunk
        head, sep, self.buf = head.partition(b"\r\n\r\n")
        if not sep:
            raise AssertionError(f"no complete handshake response: {head[:500]!r}")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        self.status = int(status_line.split()[1])
        self.headers = {}
        for line in header_lines:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()

    def _recv_exact(self, n):
        for _ in range(100_000):
            if len(self.buf) >= n:
                break
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed by the gateway")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def send(self, opcode, payload, mask=True):
        self.sock.sendall(ws_encode(opcode, payload, mask=mask))

    def send_text(self, text):
        self.send(1, text.encode("utf-8"))

    def recv_frame(self):
        """(fin, opcode, payload, masked) of the next frame."""
        b0, b1 = self._recv_exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._recv_exact(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._recv_exact(8))[0]
        masked = bool(b1 & 0x80)
        key = self._recv_exact(4) if masked else None
        payload = self._recv_exact(n) if n else b""
        if key:
            payload = bytes(c ^ key[i % 4] for i, c in enumerate(payload))
        return bool(b0 & 0x80), b0 & 0x0F, payload, masked

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class EventStream:
    """A /monitor/ws client that reads in a background thread and keeps every event as
    (arrival time.monotonic(), parsed JSON), so tests can wait for one and measure when it
    arrived. Answers pings; send() is safe from the test thread. close() is idempotent."""

    def __init__(self, port, path="/monitor/ws", timeout=10, extra_headers=(), host=None):
        self.client = WebSocketClient(port, path, host=host, timeout=timeout, extra_headers=extra_headers)
        if self.client.status != 101:
            self.client.close()
            raise AssertionError(f"{path}: expected 101, got {self.client.status} {self.client.headers}")
        self.events = []          # [(monotonic time, dict)]
        self.ended = None         # why the reader stopped (None while it runs)
        self.ended_at = None
        self._cond = threading.Condition()
        self._send_lock = threading.Lock()
        self._stop = False
        self.client.sock.settimeout(timeout)  # for the rest of a frame once it started
        self._thread = threading.Thread(target=self._run, name="ck-event-stream", daemon=True)
        self._thread.start()
        try:
            self.hello = self.wait_for(lambda e: e.get("type") == "hello", timeout, what="the hello message")[1]
        except BaseException:
            self.close()
            raise

    def _run(self):
        reason = "stopped"
        try:
            for _ in range(10_000_000):
                if self._stop:
                    break
                if not self.client.buf:  # wait in select, never in the middle of a frame
                    readable, _, _ = select.select([self.client.sock], [], [], 0.2)
                    if not readable:
                        continue
                _, opcode, payload, _ = self.client.recv_frame()
                now = time.monotonic()
                if opcode == 1:
                    try:
                        doc = json.loads(payload.decode("utf-8"))
                    except ValueError:
                        doc = {"type": "<unparsable>", "raw": payload[:200].decode("utf-8", "replace")}
                    with self._cond:
                        self.events.append((now, doc))
                        self._cond.notify_all()
                elif opcode == 9:
                    self._send(10, payload)
                elif opcode == 8:
                    code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else None
                    reason = f"close frame {code} {payload[2:].decode('utf-8', 'replace')!r}"
                    break
        except (EOFError, OSError, ValueError) as e:  # ValueError: closed by close()
            reason = f"connection ended: {e!r}"
        with self._cond:
            self.ended = reason
            self.ended_at = time.monotonic()
            self._cond.notify_all()

    def _send(self, opcode, payload):
        with self._send_lock:
            try:
                self.client.send(opcode, payload)
            except OSError:
                pass

    def send(self, doc):
        """Sends one JSON text frame (masked, as a client must)."""
        with self._send_lock:
            self.client.send_text(json.dumps(doc))

    def mark(self):
        """Index of the next event to arrive (for wait_for(since=...))."""
        with self._cond:
            return len(self.events)

    def select(self, predicate=lambda e: True, since=0):
        with self._cond:
            return [(t, e) for t, e in self.events[since:] if predicate(e)]

    def wait_for(self, predicate, timeout, since=0, what="an event"):
        """(arrival time, event) of the first event at index >= since matching predicate."""
        timeout *= TIME_SCALE
        deadline = time.monotonic() + timeout
        with self._cond:
            for _ in range(1_000_000):
                for t, e in self.events[since:]:
                    if predicate(e):
                        return t, e
                since = max(since, len(self.events))
                left = deadline - time.monotonic()
                if left <= 0 or self.ended is not None:
                    break
                self._cond.wait(min(left, 0.5))
            recent = [e for _, e in self.events[-25:]]
        raise AssertionError(f"timed out after {timeout}s waiting for {what} on /monitor/ws "
                             f"(stream {'ended: ' + self.ended if self.ended else 'open'}); "
                             f"last events: {json.dumps(recent)[:4000]}")

    def close(self):
        self._stop = True
        self.client.close()
        self._thread.join(5)


def write_json(path, doc):
    """Writes a JSON file atomically (a scan never reads half of it)."""
    tmp = path + ".tmp-write"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


# ------------------------------------------------------------------ test classes


class ClassSetUp(unittest.TestCase):
    """A test class whose fixtures are built once, in set_up() (a classmethod). If set_up()
    fails, tearDownClass() still cleans up what was made, and the error carries the class's
    diagnostics() (daemon logs and the like). Subclasses define init_class_state() for the
    class attributes tearDownClass() relies on."""

    @classmethod
    def setUpClass(cls):
        cls.init_class_state()
        try:
            cls.set_up()
        except BaseException as e:
            diag = cls.diagnostics()
            try:
                cls.tearDownClass()
            except AssertionError:
                pass
            if isinstance(e, (AssertionError, RuntimeError)):
                raise type(e)(f"{e}\n{diag}") from None
            raise

    @classmethod
    def init_class_state(cls):
        pass

    @classmethod
    def set_up(cls):
        pass

    def run(self, result=None):
        """Runs one test; when it fails, prints the class's diagnostics() right after it."""
        count = lambda r: 0 if r is None else len(r.failures) + len(r.errors)
        before = count(result)
        result = super().run(result)
        if count(result) > before:
            sys.stderr.write(f"\n===== diagnostics for {self.id()}\n{self.diagnostics()}\n")
        return result

    @classmethod
    def diagnostics(cls):
        """Every daemon's log and state, for the class's cls.daemons (if any)."""
        parts = []
        for i, d in enumerate(getattr(cls, "daemons", [])):
            if d.tmp:
                parts.append(f"===== daemon #{i + 1} (port {d.port})\n{d.diagnostics()}")
        return "\n".join(parts)


# ------------------------------------------------------------------------ daemon


class StopResult:
    def __init__(self, returncode, leftovers, elapsed):
        self.returncode = returncode
        self.leftovers = leftovers  # pids (and group members) still alive
        self.elapsed = elapsed


class Daemon:
    """One cloudyknight daemon over a private temporary directory.

    fixtures: names of folders in tests/integration/fixtures/, or (source, dest)
              pairs to copy one under another name (e.g. ("static", "monitor")).
    examples: names of folders in examples/ (node_modules is never copied).
    config:   dict merged over the defaults (runtime.ports = a private free range)
              and written as YAML; config=False writes no config at all.
    config_text: raw YAML written instead (e.g. a malformed file).
    listen:   pass --listen 127.0.0.1:PORT (True) or not (False).
    args:     extra command-line arguments; env: extra environment variables
              (CK_* variables of the calling environment are always dropped).
    workspaces: pass --workspaces TMP/ws (True) or not (False: storage comes from `args`
              or the config, e.g. --storage s3://BUCKET/PREFIX).
    reuse:    another Daemon (stopped or killed) whose temporary directory,
              workspaces, data and config this one runs on, as a restarted control
              plane would, on the same port unless `port` says otherwise (its apps'
              BASE_URL carries the address); nothing is copied or written. cleanup() of
              either one removes the shared directory.
    """

    def __init__(self, fixtures=(), examples=(), config=None, config_text=None, args=(),
                 env=None, listen=True, runtime="process", port=None, reuse=None, workspaces=True):
        self.reuse = reuse
        self.pass_workspaces = workspaces
        self.fixtures = list(fixtures)
        self.examples = list(examples)
        self.config = config
        self.config_text = config_text
        self.args = list(args)
        self.extra_env = dict(env or {})
        self.listen = listen
        self.runtime = runtime
        self.port = port or (reuse.port if reuse is not None else free_port())
        self.proc = None
        self.tmp = None
        self.known_pids = set()
        self.stopped = None

    # -- setup ---------------------------------------------------------------
    def prepare(self):
        if self.reuse is not None:
            return self._prepare_reused(self.reuse)
        self.tmp = tempfile.mkdtemp(prefix="ck-it-")
        self.ws = os.path.join(self.tmp, "ws")
        self.data = os.path.join(self.tmp, "data")
        self.stderr_path = os.path.join(self.tmp, "stderr.log")
        self.stdout_path = os.path.join(self.tmp, "stdout.log")
        os.makedirs(self.ws)
        with open(os.path.join(self.tmp, "secret.txt"), "w") as f:
            f.write(SECRET_MARKER + "\n")
        for item in self.fixtures:
            src, dest = (item, item) if isinstance(item, str) else item
            self.add_folder(os.path.join(FIXTURES, src), dest, symlinks=FIXTURE_SYMLINKS.get(src))
        for item in self.examples:
            src, dest = (item, item) if isinstance(item, str) else item
            self.add_folder(os.path.join(EXAMPLES, src), dest)
        self.config_path = None
        # Below the ephemeral ports: an outgoing connection never takes an app's port before
        # the app binds it (test_examples saw EADDRINUSE on a loaded machine).
        self.runtime_ports = free_service_port_range()
        if self.config_text is not None:
            self.config_path = os.path.join(self.tmp, "config.yaml")
            with open(self.config_path, "w") as f:
                f.write(self.config_text)
        elif self.config is not False:
            cfg = {"runtime": {"ports": f"{self.runtime_ports[0]}-{self.runtime_ports[1]}"}}
            cfg = deep_merge(cfg, self.config or {})
            self.config_path = os.path.join(self.tmp, "config.yaml")
            with open(self.config_path, "w") as f:
                f.write(to_yaml(cfg) + "\n")

    def _prepare_reused(self, other):
        if other.tmp is None:
            raise RuntimeError("reuse: the other daemon was never prepared")
        self.tmp, self.ws, self.data = other.tmp, other.ws, other.data
        self.config_path, self.runtime_ports = other.config_path, other.runtime_ports
        # Own output files, so the first daemon's stay readable.
        n = 2
        while os.path.exists(os.path.join(self.tmp, f"stderr.{n}.log")):
            n += 1
        self.stderr_path = os.path.join(self.tmp, f"stderr.{n}.log")
        self.stdout_path = os.path.join(self.tmp, f"stdout.{n}.log")

    def add_folder(self, src, dest, symlinks=None):
        if not os.path.isdir(src):
            raise FileNotFoundError(f"fixture folder missing: {src}")
        target = os.path.join(self.ws, dest)
        shutil.copytree(src, target, symlinks=True,
                        ignore=shutil.ignore_patterns("node_modules", "__pycache__"))
        for link, to in (symlinks or {}).items():
            os.symlink(to, os.path.join(target, link))
        return target

    def command(self):
        cmd = [binary(), "serve"]
        if self.listen:
            cmd += ["--listen", f"127.0.0.1:{self.port}"]
        if self.pass_workspaces:
            cmd += ["--workspaces", self.ws]
        cmd += ["--data", self.data]
        if self.runtime:
            cmd += ["--runtime", self.runtime]
        if self.config_path:
            cmd += ["--config", self.config_path]
        return cmd + self.args

    def environment(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("CK_")}
        env.update(self.extra_env)
        return env

    def spawn(self):
        """Starts the process without waiting for it to be ready."""
        if self.tmp is None:
            self.prepare()
        if not os.access(binary(), os.X_OK):
            raise RuntimeError(f"binary not found or not executable: {binary()} (set CK_BINARY)")
        self._stderr_f = open(self.stderr_path, "wb")
        self._stdout_f = open(self.stdout_path, "wb")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                     stdout=self._stdout_f, stderr=self._stderr_f,
                                     env=self.environment(), cwd=self.tmp)
        return self.proc

    def start(self, timeout=20):
        self.spawn()
        self.wait_healthy(timeout)
        return self

    def wait_healthy(self, timeout=20, port=None):
        port = port or self.port
        timeout *= TIME_SCALE
        deadline = time.monotonic() + timeout
        last = None
        for _ in range(int(timeout / POLL_INTERVAL) + 2):
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"cloudyknight exited with code {self.proc.returncode} before "
                    f"/monitor/healthz answered.\ncommand: {' '.join(self.command())}\n"
                    f"{self.diagnostics()}")
            try:
                r = self.request("GET", "/monitor/healthz", timeout=2, port=port)
                if r.status == 200:
                    return r
                last = r
            except (OSError, http.client.HTTPException) as e:
                last = e
            if time.monotonic() >= deadline:
                break
            time.sleep(POLL_INTERVAL)
        raise RuntimeError(f"/monitor/healthz on port {port} not ready after {timeout}s "
                           f"(last: {last!r})\n{self.diagnostics()}")

    # -- shutdown --------------------------------------------------------------
    def workspace_pids(self):
        try:
            for w in self.workspaces():
                pass
        except Exception:  # the API may be gone; known_pids still holds what we saw
            pass
        return set(self.known_pids)

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Signals the daemon, waits for it, then checks that every workspace pid
        (and its process group) the API ever reported is gone. Idempotent."""
        if self.stopped is not None:
            return self.stopped
        if self.proc is None:
            self.stopped = StopResult(None, [], 0.0)
            return self.stopped
        pids = self.workspace_pids() if self.proc.poll() is None else set(self.known_pids)
        for pid in list(pids):  # apps may run below an init process, in their own groups
            pids.update(descendants(pid))
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            rc = None  # did not exit by itself
        elapsed = time.monotonic() - t0
        leftovers = self._leftovers(pids)
        for pid in leftovers:  # hygiene: never leave our daemon's children behind
            for kill in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
                try:
                    kill()
                except OSError:
                    pass
        for f in (self._stderr_f, self._stdout_f):
            f.close()
        self.stopped = StopResult(rc, leftovers, elapsed)
        return self.stopped

    def kill(self, timeout=10):
        """SIGKILLs the daemon and waits for it, leaving whatever it started alone: no
        leftover check and nothing else killed (with the docker runtime, containers
        outlive their control plane, to be adopted by the next one). Idempotent; after
        it, stop() returns the same result."""
        if self.stopped is not None:
            return self.stopped
        if self.proc is None:
            self.stopped = StopResult(None, [], 0.0)
            return self.stopped
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.kill()
        rc = self.proc.wait(timeout)
        for f in (self._stderr_f, self._stdout_f):
            f.close()
        self.stopped = StopResult(rc, [], time.monotonic() - t0)
        return self.stopped

    @staticmethod
    def _leftovers(pids, grace=2.0):
        def alive():
            out = set()
            for pid in pids:
                if pid_alive(pid):
                    out.add(pid)
                out.update(group_members(pid))
            return sorted(out)
        deadline = time.monotonic() + grace
        left = alive()
        for _ in range(int(grace / POLL_INTERVAL) + 1):
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(POLL_INTERVAL)
            left = alive()
        return left

    def cleanup(self, keep=False):
        if self.tmp is None:
            return
        if keep or os.environ.get("CK_KEEP_TMP"):
            sys.stderr.write(f"[harness] kept {self.tmp}\n")
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- diagnostics -----------------------------------------------------------
    def stderr_text(self):
        try:
            if getattr(self, "_stderr_f", None) and not self._stderr_f.closed:
                self._stderr_f.flush()
            with open(self.stderr_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except (OSError, AttributeError):
            return ""

    def diagnostics(self, max_lines=150):
        out = []
        lines = self.stderr_text().splitlines()
        out.append(f"----- cloudyknight stderr (last {min(len(lines), max_lines)} of {len(lines)} lines)")
        out += lines[-max_lines:]
        logs = os.path.join(getattr(self, "data", "") or "", "logs")
        if os.path.isdir(logs):
            for name in sorted(os.listdir(logs)):
                try:
                    with open(os.path.join(logs, name), "rb") as f:
                        tail = f.read()[-3000:].decode("utf-8", "replace")
                except OSError:
                    continue
                out.append(f"----- {name} (tail)")
                out.append(tail)
        out.append("----- end")
        return "\n".join(out)

    # -- HTTP ----------------------------------------------------------------
    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def request(self, method, path, headers=None, body=None, timeout=10, port=None):
        """One request on a fresh connection (http.client sends `path` verbatim)."""
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.reason, r.msg, r.read())
        finally:
            conn.close()

    def get(self, path, headers=None, timeout=10):
        return self.request("GET", path, headers=headers, timeout=timeout)

    def connect(self, timeout=10):
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def raw(self, data, method="GET", timeout=10):
        """Sends bytes exactly as given on a new socket and parses one response."""
        with self.connect(timeout) as s:
            s.sendall(data)
            return read_response(s, method)

    def raw_target(self, target, method="GET", headers=(), body=b"", timeout=10):
        """A request whose request-target (bytes or latin-1 str) is sent untouched."""
        if isinstance(target, str):
            target = target.encode("latin-1")
        head = [f"Host: 127.0.0.1:{self.port}".encode(), b"Connection: close"]
        head += [h.encode("latin-1") if isinstance(h, str) else h for h in headers]
        if body:
            head.append(f"Content-Length: {len(body)}".encode())
        data = method.encode() + b" " + target + b" HTTP/1.1\r\n" + b"\r\n".join(head) + b"\r\n\r\n" + body
        return self.raw(data, method=method, timeout=timeout)

    def websocket(self, path, **kw):
        return WebSocketClient(self.port, path, **kw)

    # -- API -----------------------------------------------------------------
    def api(self, path, timeout=10):
        r = self.get("/monitor/api/v1" + path, timeout=timeout)
        try:
            doc = r.json()
        except ValueError:
            doc = None
        return r.status, doc

    def _remember(self, w):
        if isinstance(w, dict) and isinstance(w.get("pid"), int) and w["pid"] > 1:
            self.known_pids.add(w["pid"])
        return w

    def workspaces(self):
        status, doc = self.api("/workspaces")
        if status != 200 or not isinstance(doc, dict):
            raise AssertionError(f"GET /monitor/api/v1/workspaces -> {status} {doc!r}")
        return [self._remember(w) for w in doc.get("workspaces", [])]

    def workspace(self, name):
        """W, or None when the API answers 404."""
        status, doc = self.api(f"/workspaces/{name}")
        if status == 404:
            return None
        if status != 200:
            raise AssertionError(f"GET /monitor/api/v1/workspaces/{name} -> {status} {doc!r}")
        return self._remember(doc)

    def wait_workspace(self, name, predicate, timeout=60, what=None):
        """Polls W every 100 ms until predicate(W) holds; returns W."""
        seen = []

        def check():
            w = self.workspace(name)
            if w is not None:
                seen.append(w.get("status"))
            return w if (w is not None and predicate(w)) else None
        try:
            return wait_until(check, timeout, what or f"workspace {name}")
        except AssertionError as e:
            statuses = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
            raise AssertionError(f"{e}\nstatus sequence seen: {statuses}\n"
                                 f"last W: {self.workspace(name)!r}") from None

    def wait_status(self, name, status, timeout=60):
        """Polls /monitor/api/v1/workspaces/{name} every 100 ms until its status is
        `status` (a string or a tuple of acceptable ones); returns W."""
        wanted = (status,) if isinstance(status, str) else tuple(status)
        return self.wait_workspace(name, lambda w: w.get("status") in wanted, timeout,
                                   f"workspace {name} to be {'/'.join(wanted)}")


class DaemonTestCase(unittest.TestCase):
    """Shares one Daemon per test class. Subclasses set `daemon_options` (the
    Daemon keyword arguments) and may override `daemon_ready` to wait for
    workspaces once the daemon answers."""

    daemon_options = {}
    daemon = None

    @classmethod
    def setUpClass(cls):
        cls.daemon = Daemon(**cls.daemon_options)
        try:
            cls.daemon.start()
            cls.daemon_ready()
        except BaseException as e:
            diag = cls.daemon.diagnostics() if cls.daemon.tmp else ""
            cls.daemon.stop()
            cls.daemon.cleanup()
            if isinstance(e, (AssertionError, RuntimeError)) and diag and diag not in str(e):
                raise type(e)(f"{e}\n{diag}") from None
            raise

    @classmethod
    def daemon_ready(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        d = cls.daemon
        if d is None:
            return
        res = d.stop()
        ok = res.returncode == 0 and not res.leftovers
        diag = "" if ok else d.diagnostics()
        d.cleanup()
        if res.returncode != 0:
            raise AssertionError(f"{cls.__name__}: cloudyknight exited with {res.returncode} "
                                 f"(None = did not exit within 20 s) after SIGTERM\n{diag}")
        if res.leftovers:
            raise AssertionError(f"{cls.__name__}: workspace processes still alive after the "
                                 f"daemon exited: {res.leftovers}\n{diag}")

    def run(self, result=None):
        before = self._problems(result)
        result = super().run(result)
        if result is not None and self._problems(result) > before and self.daemon is not None:
            sys.stderr.write(f"\n===== diagnostics for {self.id()}\n{self.daemon.diagnostics()}\n")
        return result

    @staticmethod
    def _problems(result):
        if result is None:
            return 0
        return len(result.failures) + len(result.errors) + len(getattr(result, "unexpectedSuccesses", []))

    # -- shortcuts -----------------------------------------------------------
    def get(self, path, **kw):
        return self.daemon.get(path, **kw)

    def assertStatus(self, r, status, msg=""):
        wanted = (status,) if isinstance(status, int) else tuple(status)
        if r.status not in wanted:
            self.fail(f"{msg} expected status {'/'.join(map(str, wanted))}, got {r.status} "
                      f"{r.reason}; headers={dict(r.headers)!r} body: {body_excerpt(r.body)}")


# The control plane's host in tests of several users with cookie logins (issue 13: without
# gateway.control_host, cookie logins are refused once more than one user exists).
CONTROL = "monitor.private.test"


class ControlHostDaemon(Daemon):
    """Several users log in with cookies, which needs the control plane on its own host
    (gateway.control_host; issue 13): the harness's /monitor calls go there."""

    def __init__(self, *a, **kw):
        kw.setdefault("config", {"gateway": {"control_host": CONTROL}})
        super().__init__(*a, **kw)

    def request(self, method, path, headers=None, body=None, timeout=10, port=None):
        h = dict(headers or {})
        if path.startswith("/monitor") and not any(k.lower() == "host" for k in h):
            h["Host"] = f"{CONTROL}:{port or self.port}"
        return super().request(method, path, headers=h, body=body, timeout=timeout, port=port)
