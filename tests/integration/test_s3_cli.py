"""`cloudyknight workspace ...` (issue 5) end to end against a real S3 server (s3rver) and real
S3 clients: awscli v2 (/usr/bin/aws) and rclone.

- Round trips, byte for byte, both ways: what our upload stores, `aws s3 sync` and `rclone sync`
  download identically; what they upload (aws: 8 MiB parts, rclone: 5 MiB parts), our download
  fetches identically, and our next upload of that folder transfers nothing (so the ETag
  comparison, multipart ETags included, works for objects another tool wrote). Keys with spaces,
  unicode and `+ & = ( ) ! * '`, nested folders, empty and binary files, a 50 MB file
  (multipart), .gitignore/.ckignore and the built-in excludes.
- Incremental upload/sync/download, --dry-run, --delete, lockfiles and --no-lock, symlinks
  (nothing outside the folder, no ignored file through a link).
- 5,000 small files.
- Faults, through a fault-injecting proxy (S3Proxy below): 500s and connections dropped in the
  middle of a request body are retried; a key that always fails makes the command fail without
  a partial object, leftover multipart upload or remote deletion; a failed or partial listing
  makes `sync` fail without deleting anything; a listing with keys that would escape the folder
  (`../`, absolute) makes download write nothing outside it.
- Errors (one line on stderr, non-zero exit), `list --json`, `delete`, `--config`, `--watch`.

rclone always runs with --fast-list here: s3rver 3.7 drops a CommonPrefix whose folder holds only
subfolders (`a/` is missing from a delimited listing when the only key below it is `a/b/c`), and
rclone's default walk lists folder by folder with a delimiter, so it would miss such files.

s3rver stores a multipart upload with the plain MD5 of the whole object as its ETag, and it does
not implement AbortMultipartUpload. Real S3 (and MinIO, R2) answer `"<md5 of the part MD5s>-N"`
and do abort. So the round-trip class and the fault tests talk to s3rver through S3Proxy, which
gives completed multipart uploads their real-S3 ETag (in ListObjects, HEAD, GET and
CompleteMultipartUpload answers), answers AbortMultipartUpload itself, and records which
multipart uploads were created, completed and aborted.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_s3_cli
(needs s3rver: scripts/s3rver.sh, or CK_S3RVER; CK_KEEP_TMP=1 keeps the temporary folders).
"""

import hashlib
import html
import http.client
import json
import os
import random
import re
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
import urllib.parse

from harness import ClassSetUp, binary, free_port
from s3util import AWS, S3Server

BUCKET = "bkt"
PREFIX = "ws"
CLI_TIMEOUT = 240  # one CLI run (the 50 MB and 5,000-file runs included)
TOOL_TIMEOUT = 300  # one aws/rclone run
MiB = 1 << 20
BIG_SIZE = 50 * MiB + 12_345  # not a multiple of any part size
SUMMARY_RE = re.compile(r"^(?P<name>[a-z0-9][a-z0-9-]*): (?P<counts>.*) in (?P<secs>[0-9.]+) ?s "
                        r"\((?P<url>s3://[^)]*)\)$")
# Signs of a crash or of an exception's raw text escaping to the user (case-sensitive: "the
# multipart upload was aborted" is a fine thing to say).
NOISE_RE = re.compile(r"Traceback|terminate called|what\(\):|Aborted \(core|core dumped|Segmentation fault|"
                      r"AddressSanitizer|UndefinedBehaviorSanitizer|runtime error:|Assertion .* failed|"
                      r"std::|boost::|basic_string|nlohmann|\[json\.exception")


# ------------------------------------------------------------------------------- files


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tree_digest(root, skip=()):
    """{relative '/'-path: SHA-256} of every regular file under root (symlinks not followed);
    paths in `skip` are left out."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in filenames:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if rel in skip or os.path.islink(full) or not os.path.isfile(full):
                continue
            out[rel] = sha256_file(full)
    return out


def write_file(root, rel, data):
    path = os.path.join(root, *rel.split("/"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    return path


def sha256_bytes(data):
    return hashlib.sha256(data if isinstance(data, bytes) else data.encode()).hexdigest()


# Files the upload must skip (built-in excludes, .gitignore, nested .gitignore, .ckignore).
IGNORED = {
    "node_modules/x.js": "module.exports = 1\n",
    "pkg/node_modules/dep/index.js": "nested node_modules\n",
    "a.log": "log line\n",
    "logs/deep/server.log": "deep log\n",
    ".env": "SECRET=hunter2\n",
    ".env.local": "SECRET=local\n",
    ".git/config": "[core]\n",
    ".git/HEAD": "ref: refs/heads/main\n",
    "dist/bundle.js": "bundled\n",
    "build/out.o": "object\n",
    "__pycache__/m.cpython-311.pyc": "pyc\n",
    "vendor/lib.php": "<?php\n",
    ".vscode/settings.json": "{}\n",
    ".idea/workspace.xml": "<x/>\n",
    ".DS_Store": "finder\n",
    "scratch.tmp": "*.tmp in .gitignore\n",
    "secret/key.txt": "/secret/ in .gitignore\n",
    "sub/local-only.txt": "local-only.txt in sub/.gitignore\n",
    "notes.bak": "*.bak in .ckignore\n",
}

# Whether .ckignore itself is uploaded is not part of the contract: compared trees skip it.
NOT_COMPARED = {".ckignore"}


def make_source_tree(root, big=True, seed=5):
    """Writes the interop tree under root; returns {rel: sha256} of the files an upload must
    store (IGNORED are written too and must not be stored)."""
    rng = random.Random(seed)
    files = {
        "README.md": "# interop\n",
        "package.json": json.dumps({"name": "interop", "description": "Interop tree",
                                    "scripts": {"start": "node src/app.js"}}) + "\n",
        "package-lock.json": json.dumps({"lockfileVersion": 3}) + "\n",
        "yarn.lock": "# yarn lockfile v1\n",
        "src/app.js": "console.log('hi')\n",
        "src/lib/util.js": "module.exports = {}\n",
        "src/lib/deep/a/b/c/d.txt": "deep\n",
        "with space/file name.txt": "spaces\n",
        "ü/日本/テスト.txt": "unicode folder and file\n",
        "über.txt": "umlaut\n",
        "chars/plus+sign.txt": "+\n",
        "chars/amp&and.txt": "&\n",
        "chars/eq=equal.txt": "=\n",
        "chars/(paren).txt": "()\n",
        "chars/bang!.txt": "!\n",
        "chars/star*.txt": "*\n",
        "chars/quote'.txt": "'\n",
        "chars/all + & = ( ) ! * ' ü 日本.txt": "all of them\n",
        "chars/percent%20not-a-space.txt": "%\n",
        "chars/tilde~hash#semi;comma,at@.txt": "misc\n",
        "empty.txt": b"",
        "nested/empty/also-empty": b"",
        "bin/all-bytes.bin": bytes(range(256)) * 512,
        "bin/random.bin": rng.randbytes(300_001),
        ".gitignore": "*.tmp\n!keep.tmp\n/secret/\n",
        "keep.tmp": "negated in .gitignore\n",
        "sub/secret/not-anchored.txt": "/secret/ is anchored to the root\n",
        "sub/.gitignore": "local-only.txt\n",
        "local-only.txt": "sub/.gitignore does not apply here\n",
        ".ckignore": "*.bak\n",
        "src/Dockerfile.notes": "not ignored\n",
        "distribution/x.txt": "dist/ matches only a folder named dist\n",
    }
    if big:
        files["big/random-50m.bin"] = rng.randbytes(BIG_SIZE)
    expected = {}
    for rel, data in files.items():
        write_file(root, rel, data)
        if rel not in NOT_COMPARED:
            expected[rel] = sha256_bytes(data)
    for rel, data in IGNORED.items():
        write_file(root, rel, data)
    return expected


def copy_expected(src, dst, expected):
    """Copies only the files of `expected` from src to dst (a clean tree for aws/rclone)."""
    for rel in expected:
        target = os.path.join(dst, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(os.path.join(src, *rel.split("/")), target)


def multipart_etag(data_or_path, part_size):
    """The ETag S3 gives an object uploaded in parts of part_size."""
    if isinstance(data_or_path, str):
        with open(data_or_path, "rb") as f:
            data = f.read()
    else:
        data = data_or_path
    digests = [hashlib.md5(data[i:i + part_size]).digest() for i in range(0, len(data), part_size)]
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


# --------------------------------------------------------------------------------- CLI


class CliResult:
    """One `cloudyknight workspace ...` run: exit code, output, parsed action and summary lines."""

    def __init__(self, cmd, returncode, stdout, stderr, seconds):
        self.cmd = cmd
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.seconds = seconds
        self.lines = [l for l in stdout.splitlines() if l.strip()]
        self.err_lines = [l for l in stderr.splitlines() if l.strip()]
        self.actions = []  # (would, op, path, detail or None)
        self.summary = None  # {"name", "uploaded"/"downloaded"/"deleted"/"unchanged": int, "url"}
        for line in self.lines:
            m = SUMMARY_RE.match(line)
            if m:
                counts = {k: int(v) for v, k in re.findall(r"(\d+) ([a-z]+)", m["counts"])}
                self.summary = dict(counts, name=m["name"], url=m["url"], line=line)
                continue
            m = re.match(r"^(would )?(upload|download|delete) (.+)$", line)
            if not m:
                continue
            rest, detail = m[3], None
            if m[2] != "delete" and rest.endswith(")") and " (" in rest:
                rest, detail = rest.rsplit(" (", 1)
                detail = detail[:-1]
            self.actions.append((bool(m[1]), m[2], rest, detail))

    def paths(self, op, would=False):
        return sorted(p for w, o, p, _ in self.actions if o == op and w == would)

    def count(self, key):
        if self.summary is None:
            raise AssertionError(f"no summary line in the output of {self.describe()}")
        return self.summary.get(key, 0)

    def describe(self, limit=3000):
        out = self.stdout if len(self.stdout) < limit else "..." + self.stdout[-limit:]
        return (f"`{' '.join(self.cmd)}` -> exit {self.returncode} in {self.seconds:.2f} s\n"
                f"--- stdout\n{out}\n--- stderr\n{self.stderr[-limit:]}")


def cli_env(server, endpoint=None, cache=None, extra=None):
    """Environment of a CLI/tool run: credentials of s3util, no CK_* from the caller, the sync
    index under `cache` (XDG_CACHE_HOME), rclone's remote "s3rver" pointing at `endpoint`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("CK_")}
    env = server.client_env(base)
    if endpoint:
        env["RCLONE_CONFIG_S3RVER_ENDPOINT"] = endpoint
    if cache:
        env["XDG_CACHE_HOME"] = cache
    env.update(extra or {})
    return env


# ------------------------------------------------------------------------------- proxy


def _read_exact(rf, n):
    data = rf.read(n)
    if data is None or len(data) != n:
        raise EOFError(f"connection closed after {0 if data is None else len(data)} of {n} bytes")
    return data


def _read_chunked(rf):
    out = bytearray()
    for _ in range(10_000_000):
        line = rf.readline(65537)
        if not line:
            raise EOFError("connection closed in a chunked body")
        size = int(line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            for _ in range(1000):
                if rf.readline(65537) in (b"\r\n", b"\n", b""):
                    break
            return bytes(out)
        out += _read_exact(rf, size)
        _read_exact(rf, 2)
    raise EOFError("too many chunks")


class ProxyRequest:
    """A parsed S3 request (path-style): method, bucket, key, query (first values), headers,
    and its kind: list, put_object, upload_part, create_mpu, complete_mpu, abort_mpu, get,
    head, delete_object, delete_objects, other."""

    LIST_PARAMS = {"list-type", "prefix", "delimiter", "continuation-token", "start-after",
                   "max-keys", "encoding-type", "fetch-owner", "marker"}

    def __init__(self, method, target, headers):
        self.method = method
        self.target = target
        self.headers = headers  # [(name, value)]
        raw_path, _, raw_query = target.partition("?")
        self.query = {k: v[0] for k, v in urllib.parse.parse_qs(raw_query, keep_blank_values=True).items()}
        path = urllib.parse.unquote(raw_path)
        bucket, _, key = path.lstrip("/").partition("/")
        self.bucket, self.key = bucket, key
        q = self.query
        if not key:
            if method == "GET" and not set(q) - self.LIST_PARAMS:
                kind = "list"
            elif method == "POST" and "delete" in q:
                kind = "delete_objects"
            else:
                kind = "other"
        elif method == "PUT":
            kind = "upload_part" if "uploadId" in q else ("other" if set(q) else "put_object")
        elif method == "POST":
            kind = "create_mpu" if "uploads" in q else ("complete_mpu" if "uploadId" in q else "other")
        elif method == "DELETE":
            kind = "abort_mpu" if "uploadId" in q else "delete_object"
        elif method == "GET":
            kind = "other" if "uploadId" in q else "get"
        elif method == "HEAD":
            kind = "head"
        else:
            kind = "other"
        self.kind = kind

    def header(self, name, default=None):
        for k, v in self.headers:
            if k.lower() == name.lower():
                return v
        return default

    @property
    def part(self):
        return int(self.query["partNumber"]) if "partNumber" in self.query else None

    def __repr__(self):
        return f"<{self.kind} {self.method} {self.target[:200]}>"


class Fault:
    """Answers matching requests with `action` instead of forwarding them:
      "500"  an S3 InternalError (after reading the body),
      "drop" reads about half of the body, then resets the connection (no answer).
    `times`: how many requests it hits (None = every one). With per_target, it hits the first
    request for each distinct (key, part number) only, i.e. the first attempt of each."""

    def __init__(self, match, action, times=1, per_target=False, name=""):
        self.match = match
        self.action = action
        self.times = times
        self.per_target = per_target
        self.name = name or action
        self.hits = []  # repr of each request hit
        self.targets = set()

    def take(self, req):
        if self.times is not None and len(self.hits) >= self.times:
            return False
        if not self.match(req):
            return False
        if self.per_target:
            target = (req.key, req.part)
            if target in self.targets:
                return False
            self.targets.add(target)
        self.hits.append(repr(req))
        return True


class S3Proxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of s3rver (one thread per client connection, a
    new upstream connection per request). It makes s3rver look like real S3 where the tests
    depend on it (multipart ETags, AbortMultipartUpload; see the module docstring), injects
    the Faults in self.faults (first matching one with budget left wins), and logs every
    request with what happened to it."""

    def __init__(self, upstream_port, faults=(), planted=None):
        self.upstream_port = upstream_port
        self.faults = list(faults)
        # {key: bytes}: objects the proxy pretends the bucket has (listed without a delimiter,
        # served by GET/HEAD); for keys no real S3 client would create, e.g. "a/../../x".
        self.planted = dict(planted or {})
        self.lock = threading.Lock()
        self.log = []  # (kind, method, target, outcome)
        self.uploads = {}  # uploadId -> {"key": (bucket, key), "state": open|completed|aborted}
        self.mp_etags = {}  # (bucket, key) -> (plain md5 s3rver stored, multipart ETag)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.conns = set()
        self.threads = []
        self.errors = []  # unexpected proxy-side exceptions (a test bug, not a CLI one)
        self.acceptor = threading.Thread(target=self._accept, name="s3proxy-accept", daemon=True)
        self.acceptor.start()

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass
        with self.lock:
            conns = list(self.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.acceptor.join(5)
        for t in list(self.threads):
            t.join(5)

    # -- inspection ----------------------------------------------------------------------
    def requests(self, kind=None):
        with self.lock:
            return [e for e in self.log if kind is None or e[0] == kind]

    def open_uploads(self):
        with self.lock:
            return {u: v["key"] for u, v in self.uploads.items() if v["state"] == "open"}

    def upload_states(self):
        with self.lock:
            return {u: dict(v) for u, v in self.uploads.items()}

    def tail(self, n=40):
        with self.lock:
            return "\n".join(f"  {k:14} {m:6} {o:12} {t[:160]}" for k, m, t, o in self.log[-n:])

    # -- serving -------------------------------------------------------------------------
    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(120)
            with self.lock:
                self.conns.add(conn)
                self.threads = [t for t in self.threads if t.is_alive()]
            t = threading.Thread(target=self._serve, args=(conn,), name="s3proxy-conn", daemon=True)
            self.threads.append(t)
            t.start()

    def _record(self, req, outcome):
        with self.lock:
            self.log.append((req.kind, req.method, req.target, outcome))

    def _serve(self, conn):
        rf = conn.makefile("rb")
        try:
            for _ in range(1_000_000):
                if self.stopping or not self._one(conn, rf):
                    break
        except (OSError, EOFError, ValueError):
            pass
        except Exception as e:  # noqa: BLE001 - reported by the tests
            self.errors.append(repr(e))
        finally:
            with self.lock:
                self.conns.discard(conn)
            try:
                rf.close()
                conn.close()
            except OSError:
                pass

    def _one(self, conn, rf):
        """Serves one request; False when the connection is to be closed."""
        line = rf.readline(65537)
        if not line:
            return False
        method, target, version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
        headers = []
        for _ in range(500):
            h = rf.readline(65537)
            if h in (b"\r\n", b"\n", b""):
                break
            name, _, value = h.decode("latin-1").partition(":")
            headers.append((name.strip(), value.strip()))
        req = ProxyRequest(method, target, headers)
        chunked = "chunked" in (req.header("Transfer-Encoding") or "").lower()
        length = int(req.header("Content-Length") or 0)
        with self.lock:
            fault = next((f for f in self.faults if f.take(req)), None)
        if (req.header("Expect") or "").lower() == "100-continue":
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
        if fault is not None and fault.action == "drop":
            if chunked:
                rf.read(4096)
            elif length:
                _read_exact(rf, max(1, length // 2))
            self._record(req, f"drop({fault.name})")
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        body = _read_chunked(rf) if chunked else (_read_exact(rf, length) if length else b"")
        keep = version == "HTTP/1.1" and (req.header("Connection") or "").lower() != "close"
        if fault is not None:
            self._record(req, f"500({fault.name})")
            xml = (b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InternalError</Code>'
                   b"<Message>We encountered an internal error. Please try again. (injected)</Message>"
                   b"</Error>")
            self._send(conn, 500, "Internal Server Error",
                       [("Content-Type", "application/xml")], xml, keep)
            return keep
        planted = self.planted.get(req.key) if req.kind in ("get", "head") else None
        if planted is not None:
            self._record(req, "200(planted)")
            self._send(conn, 200, "OK", [("ETag", f'"{hashlib.md5(planted).hexdigest()}"'),
                                         ("Content-Type", "application/octet-stream"),
                                         ("Content-Length", str(len(planted)))],
                       planted, keep, head=req.method == "HEAD")
            return keep
        if req.kind == "abort_mpu":  # s3rver has no AbortMultipartUpload
            with self.lock:
                known = self.uploads.get(req.query["uploadId"])
                if known:
                    known["state"] = "aborted"
            self._record(req, "204(emulated)" if known else "404(emulated)")
            if known:
                self._send(conn, 204, "No Content", [], b"", keep)
            else:
                self._send(conn, 404, "Not Found", [("Content-Type", "application/xml")],
                           b"<Error><Code>NoSuchUpload</Code></Error>", keep)
            return keep
        status, reason, rheaders, rbody = self._forward(req, body)
        rheaders, rbody = self._emulate(req, body, status, rheaders, rbody)
        self._record(req, str(status))
        self._send(conn, status, reason, rheaders, rbody, keep, head=req.method == "HEAD")
        return keep

    def _forward(self, req, body):
        up = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=120)
        try:
            drop = {"expect", "connection", "keep-alive", "transfer-encoding", "content-length",
                    "proxy-connection"}
            lines = [f"{req.method} {req.target} HTTP/1.1"]
            for k, v in req.headers:
                if k.lower() in drop:
                    continue
                if k.lower() in ("if-match", "if-none-match"):
                    v = self._plain_etag(req, v)
                lines.append(f"{k}: {v}")
            if body or req.method in ("PUT", "POST"):
                lines.append(f"Content-Length: {len(body)}")
            lines.append("Connection: close")
            up.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
            resp = http.client.HTTPResponse(up, method=req.method)
            resp.begin()
            data = resp.read()
            return resp.status, resp.reason, resp.getheaders(), data
        finally:
            up.close()

    def _send(self, conn, status, reason, headers, body, keep, head=False):
        out = [f"HTTP/1.1 {status} {reason}"]
        for k, v in headers:
            if k.lower() in ("connection", "keep-alive", "transfer-encoding"):
                continue
            if k.lower() == "content-length" and not head:
                continue
            out.append(f"{k}: {v}")
        if not head and status not in (204, 304):
            out.append(f"Content-Length: {len(body)}")
        out.append("Connection: keep-alive" if keep else "Connection: close")
        conn.sendall(("\r\n".join(out) + "\r\n\r\n").encode("latin-1") + (b"" if head else body))

    # -- real-S3 behaviour ---------------------------------------------------------------
    def _plain_etag(self, req, value):
        with self.lock:
            known = self.mp_etags.get((req.bucket, req.key))
        if known and known[1] in value:
            return value.replace(known[1], known[0])
        return value

    def _emulate(self, req, body, status, headers, rbody):
        if status // 100 != 2:
            return headers, rbody
        if req.kind == "create_mpu":
            m = re.search(rb"<UploadId>([^<]+)</UploadId>", rbody)
            if m:
                with self.lock:
                    self.uploads[m[1].decode()] = {"key": (req.bucket, req.key), "state": "open"}
        elif req.kind == "complete_mpu":
            parts = []
            for block in re.findall(rb"<Part>(.*?)</Part>", body, re.S):
                num = re.search(rb"<PartNumber>\s*(\d+)\s*</PartNumber>", block)
                etag = re.search(rb"[0-9a-fA-F]{32}", block.split(b"<ETag>", 1)[-1])
                if num and etag:
                    parts.append((int(num[1]), bytes.fromhex(etag[0].decode())))
            parts.sort()
            m = re.search(rb"<ETag>(?:&quot;|\")?([0-9a-f]{32})(?:&quot;|\")?</ETag>", rbody)
            if parts and m:
                mp = f"{hashlib.md5(b''.join(d for _, d in parts)).hexdigest()}-{len(parts)}"
                with self.lock:
                    self.mp_etags[(req.bucket, req.key)] = (m[1].decode(), mp)
                    if req.query.get("uploadId") in self.uploads:
                        self.uploads[req.query["uploadId"]]["state"] = "completed"
                rbody = rbody[:m.start()] + f"<ETag>&quot;{mp}&quot;</ETag>".encode() + rbody[m.end():]
        elif req.kind == "list":
            def fix(block):
                text = block[0]
                key = re.search(rb"<Key>(.*?)</Key>", text, re.S)
                etag = re.search(rb"<ETag>(?:&quot;|\")?([0-9a-f]{32})(?:&quot;|\")?</ETag>", text)
                if not key or not etag:
                    return text
                with self.lock:
                    known = self.mp_etags.get((req.bucket, html.unescape(key[1].decode())))
                if not known or known[0] != etag[1].decode():
                    return text
                return text[:etag.start()] + f"<ETag>&quot;{known[1]}&quot;</ETag>".encode() + text[etag.end():]
            rbody = re.sub(rb"<Contents>.*?</Contents>", fix, rbody, flags=re.S)
            prefix = req.query.get("prefix", "")
            if self.planted and not req.query.get("delimiter") and not req.query.get("continuation-token"):
                extra = b"".join(
                    f"<Contents><Key>{html.escape(k, quote=False)}</Key>"
                    f"<LastModified>2026-01-01T00:00:00.000Z</LastModified>"
                    f"<ETag>&quot;{hashlib.md5(v).hexdigest()}&quot;</ETag><Size>{len(v)}</Size>"
                    f"<StorageClass>STANDARD</StorageClass></Contents>".encode()
                    for k, v in sorted(self.planted.items()) if k.startswith(prefix))
                rbody = rbody.replace(b"</ListBucketResult>", extra + b"</ListBucketResult>", 1)
        elif req.kind in ("get", "head"):
            with self.lock:
                known = self.mp_etags.get((req.bucket, req.key))
            if known:
                headers = [(k, f'"{known[1]}"' if k.lower() == "etag" and known[0] in v else v)
                           for k, v in headers]
        return headers, rbody


# ---------------------------------------------------------------------------- test base


class S3Case(ClassSetUp):
    """One s3rver (and bucket BUCKET) per class, a temp folder, and helpers to run the CLI,
    aws and rclone. With use_front, the CLI and the tools talk to s3rver through an S3Proxy
    without faults (real-S3 multipart ETags and aborts); self.endpoint is what they use."""

    use_front = False

    @classmethod
    def init_class_state(cls):
        cls.server = None
        cls.front = None
        cls.tmp = None
        cls.runs = []
        cls.proxies = []

    @classmethod
    def set_up(cls):
        cls.tmp = tempfile.mkdtemp(prefix="ck-s3cli-")
        cls.cache = os.path.join(cls.tmp, "cache")
        os.mkdir(cls.cache)
        cls.server = S3Server().start()
        cls.server.make_bucket(BUCKET)
        if cls.use_front:
            cls.front = S3Proxy(cls.server.port)
            cls.proxies.append(cls.front)
        cls.set_up_class()

    @classmethod
    def set_up_class(cls):
        pass

    @classmethod
    def tearDownClass(cls):
        for p in getattr(cls, "proxies", []):
            p.stop()
        if cls.server is not None:
            cls.server.stop()
        if cls.tmp:
            if os.environ.get("CK_KEEP_TMP"):
                sys.stderr.write(f"[test_s3_cli] kept {cls.tmp}\n")
            else:
                shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def diagnostics(cls):
        out = []
        for r in cls.runs[-4:]:
            out.append("----- " + r.describe(2000))
        for i, p in enumerate(getattr(cls, "proxies", [])[-2:]):
            out.append(f"----- proxy #{i} last requests\n{p.tail()}")
            if p.errors:
                out.append(f"----- proxy #{i} errors: {p.errors[:5]}")
        if cls.server is not None and cls.server.proc is not None:
            out.append(f"----- s3rver log (tail)\n{cls.server.log()[-1500:]}")
        return "\n".join(out)

    # -- helpers -------------------------------------------------------------------------
    @property
    def endpoint(self):
        return self.front.endpoint if self.front else self.server.endpoint

    def mkdir(self, name):
        path = os.path.join(self.tmp, name)
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path)
        return path

    def ck(self, *args, endpoint=None, storage=True, cache=None, env=None, timeout=CLI_TIMEOUT,
           ok=True, command="workspace"):
        """Runs `cloudyknight workspace ARGS [--storage s3://BUCKET/PREFIX --s3-endpoint E]`.
        With ok=True, a non-zero exit fails the test."""
        cmd = [binary(), command, *args]
        if storage:
            cmd += ["--storage", f"s3://{BUCKET}/{PREFIX}", "--s3-endpoint", endpoint or self.endpoint]
        t0 = time.monotonic()
        try:
            p = subprocess.run(cmd, env=cli_env(self.server, cache=cache or self.cache, extra=env),
                               capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            self.fail(f"`{' '.join(cmd)}` did not finish within {timeout} s; stdout tail: "
                      f"{(e.stdout or b'')[-2000:]!r} stderr tail: {(e.stderr or b'')[-2000:]!r}")
        r = CliResult(cmd, p.returncode, p.stdout.decode("utf-8", "replace"),
                      p.stderr.decode("utf-8", "replace"), time.monotonic() - t0)
        type(self).runs.append(r)
        if ok and r.returncode != 0:
            self.fail(f"expected exit 0: {r.describe()}")
        return r

    def tool(self, argv, endpoint=None, timeout=TOOL_TIMEOUT, check=True):
        env = cli_env(self.server, endpoint=endpoint or self.endpoint)
        if argv[0] == "aws":
            argv = [AWS, "--endpoint-url", endpoint or self.endpoint, *argv[1:]]
        p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            self.fail(f"`{' '.join(argv)}` -> {p.returncode}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
        return p

    def aws(self, *args, **kw):
        return self.tool(["aws", *args], **kw)

    def rclone(self, *args, **kw):
        return self.tool(["rclone", *args], **kw)

    def objects(self, prefix=PREFIX + "/", direct=True):
        """{key: (size, etag)} under prefix, listed with `aws s3api list-objects-v2` (all pages),
        straight from s3rver (direct) or through self.endpoint."""
        p = self.aws("s3api", "list-objects-v2", "--bucket", BUCKET, "--prefix", prefix,
                     "--output", "json", endpoint=self.server.endpoint if direct else None)
        doc = json.loads(p.stdout or "{}")
        return {o["Key"]: (o["Size"], o["ETag"].strip('"')) for o in doc.get("Contents", [])}

    def count_objects(self, prefix):
        """Objects under s3://BUCKET/prefix according to `aws s3 ls --recursive`."""
        p = self.aws("s3", "ls", "--recursive", f"s3://{BUCKET}/{prefix}", check=False,
                     endpoint=self.server.endpoint)
        if p.returncode not in (0, 1):  # 1: nothing found
            self.fail(f"aws s3 ls -> {p.returncode}: {p.stderr}")
        return len([l for l in p.stdout.splitlines() if l.strip()])

    def get_object(self, key):
        """(status, body) of an unsigned GET straight to s3rver (it checks no signatures)."""
        c = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            c.request("GET", f"/{BUCKET}/" + urllib.parse.quote(key))
            r = c.getresponse()
            try:
                return r.status, r.read()
            except http.client.IncompleteRead as e:
                # s3rver writes an object in place, so a GET racing a PUT of the same key can
                # read a short file; that is the server's, and the poll simply tries again.
                return -1, e.partial
        finally:
            c.close()

    def head_status(self, key):
        """HTTP status of `aws s3api head-object` (200 or 404), straight to s3rver."""
        p = self.aws("s3api", "head-object", "--bucket", BUCKET, "--key", key, check=False,
                     endpoint=self.server.endpoint)
        if p.returncode == 0:
            return 200
        if "404" in p.stderr or "Not Found" in p.stderr:
            return 404
        self.fail(f"head-object {key}: {p.stderr}")

    def aws_download(self, name, direct=True):
        d = self.mkdir(f"aws-down-{name}")
        self.aws("s3", "sync", f"s3://{BUCKET}/{PREFIX}/{name}/", d,
                 endpoint=self.server.endpoint if direct else None)
        return d

    def assertTree(self, root, expected, skip=NOT_COMPARED, msg=""):
        got = tree_digest(root, skip)
        if got == expected:
            return
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        differ = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        self.fail(f"{msg} tree {root} differs from the expected one: missing {missing[:20]} "
                  f"(of {len(missing)}), unexpected {extra[:20]} (of {len(extra)}), "
                  f"different content {differ[:20]} (of {len(differ)})")

    def assertFailsCleanly(self, r, *causes):
        """Non-zero exit, one non-empty line on stderr that mentions one of `causes`
        (case-insensitive), and nothing that looks like a crash or a stack trace."""
        self.assertNotEqual(r.returncode, 0, f"expected a failure: {r.describe()}")
        self.assertGreater(r.returncode, 0, f"killed by a signal? {r.describe()}")
        self.assertEqual(len(r.err_lines), 1, f"expected exactly one line on stderr: {r.describe()}")
        line = r.err_lines[0]
        self.assertTrue(any(c.lower() in line.lower() for c in causes),
                        f"the error line does not mention any of {causes}: {line!r}")
        self.assertIsNone(NOISE_RE.search(r.stderr), f"crash-like noise on stderr: {r.describe()}")


# -------------------------------------------------------------------------- round trips


class RoundTripTest(S3Case):
    """Our CLI <-> aws <-> rclone, byte for byte, through the front proxy (real-S3 ETags)."""

    use_front = True

    @classmethod
    def set_up_class(cls):
        cls.src = os.path.join(cls.tmp, "src")
        cls.expected = make_source_tree(cls.src)
        cls.clean = os.path.join(cls.tmp, "clean")  # the expected files only
        copy_expected(cls.src, cls.clean, cls.expected)

    def test_our_upload_then_aws_and_rclone_download_identical(self):
        r = self.ck("upload", "ours", self.src)
        self.assertEqual(set(r.paths("upload")) - NOT_COMPARED, set(self.expected),
                         f"action lines vs expected files: {r.describe()}")
        self.assertEqual(r.count("uploaded"), len(r.paths("upload")), r.describe())
        for _, op, path, detail in r.actions:
            self.assertIn("new", detail or "", f"{op} {path}: detail {detail!r}")
        self.assertEqual(r.summary["name"], "ours")
        self.assertTrue(r.summary["url"].startswith(f"s3://{BUCKET}/{PREFIX}/ours"), r.summary)

        keys = self.objects(f"{PREFIX}/ours/")
        for rel in IGNORED:
            self.assertNotIn(f"{PREFIX}/ours/{rel}", keys, f"ignored file {rel} was uploaded")
        # The 50 MB file went up in parts: through the front its ETag is a multipart one.
        big = self.objects(f"{PREFIX}/ours/big/", direct=False)
        self.assertRegex(big[f"{PREFIX}/ours/big/random-50m.bin"][1], r"^[0-9a-f]{32}-\d+$",
                         "the 50 MB file was not uploaded with multipart")
        self.assertEqual(len(self.front.open_uploads()), 0, "multipart uploads left open")

        d1 = self.mkdir("ours-aws")
        self.aws("s3", "sync", f"s3://{BUCKET}/{PREFIX}/ours/", d1)
        self.assertTree(d1, self.expected, msg="aws s3 sync download:")
        d2 = self.mkdir("ours-rclone")
        self.rclone("sync", "--fast-list", f"s3rver:{BUCKET}/{PREFIX}/ours", d2)
        self.assertTree(d2, self.expected, msg="rclone sync download:")

    def _foreign_round_trip(self, name, upload_argv, parts):
        """`upload_argv` (aws or rclone) stores the clean tree as workspace `name`; our download
        must be identical; our upload of the downloaded folder, and of a fresh copy of it with
        no sync index, must transfer nothing."""
        self.tool(upload_argv)
        big_key = f"{PREFIX}/{name}/big/random-50m.bin"
        etag = self.objects(f"{PREFIX}/{name}/big/", direct=False)[big_key][1]
        self.assertEqual(etag, multipart_etag(os.path.join(self.clean, "big", "random-50m.bin"), parts),
                         "the tool did not upload the big file in the expected parts")

        d = self.mkdir(f"{name}-down")
        r = self.ck("download", name, d)
        self.assertTree(d, self.expected, msg="our download:")
        self.assertEqual(r.count("downloaded"), len(self.expected), r.describe())

        r = self.ck("upload", name, d)
        self.assertEqual((r.count("uploaded"), r.count("deleted")), (0, 0),
                         f"upload right after download transferred something: {r.describe()}")
        self.assertEqual(r.count("unchanged"), len(self.expected), r.describe())

        # No local index: only the ETags (a multipart one for the big file) can tell.
        fresh = self.mkdir(f"{name}-fresh")
        shutil.rmtree(fresh)
        shutil.copytree(d, fresh)
        for rel in self.expected:  # new mtimes as well
            os.utime(os.path.join(fresh, *rel.split("/")))
        cache = self.mkdir(f"{name}-fresh-cache")
        r = self.ck("upload", name, fresh, cache=cache)
        self.assertEqual((r.count("uploaded"), r.count("deleted")), (0, 0),
                         f"upload without an index re-sent files another tool uploaded "
                         f"(ETag comparison): {r.describe()}")
        self.assertEqual(r.count("unchanged"), len(self.expected), r.describe())

    def test_aws_upload_then_our_download_identical_and_noop_upload(self):
        self._foreign_round_trip(
            "by-aws", ["aws", "s3", "sync", self.clean, f"s3://{BUCKET}/{PREFIX}/by-aws/"], 8 * MiB)

    def test_rclone_upload_then_our_download_identical_and_noop_upload(self):
        # rclone's default upload cutoff is 200 MiB: lower it so the 50 MB file goes up in
        # rclone's (default) 5 MiB chunks.
        self._foreign_round_trip(
            "by-rclone", ["rclone", "sync", "--fast-list", self.clean, f"s3rver:{BUCKET}/{PREFIX}/by-rclone",
                          "--s3-upload-cutoff", "5Mi", "--s3-chunk-size", "5Mi"], 5 * MiB)

    def test_include_env(self):
        d = self.mkdir("env-src")
        write_file(d, "app.py", "print(1)\n")
        write_file(d, ".env", "TOKEN=abc\n")
        r = self.ck("upload", "with-env", d)
        self.assertNotIn(".env", r.paths("upload"))
        self.assertEqual(self.head_status(f"{PREFIX}/with-env/.env"), 404, ".env uploaded by default")
        r = self.ck("upload", "with-env", d, "--include-env")
        self.assertEqual(r.paths("upload"), [".env"], r.describe())
        self.assertEqual(self.get_object(f"{PREFIX}/with-env/.env"), (200, b"TOKEN=abc\n"))


# ---------------------------------------------------------------------------- incremental


class IncrementalTest(S3Case):
    """upload / sync / download transfer only what changed; --dry-run changes nothing."""

    def small_tree(self, name, n=20):
        d = self.mkdir(name)
        files = {f"dir{i % 4}/file-{i}.txt": f"content {i}\n" * (i + 1) for i in range(n)}
        files["index.html"] = "<h1>hi</h1>\n"
        for rel, data in files.items():
            write_file(d, rel, data)
        return d, {rel: sha256_bytes(v) for rel, v in files.items()}

    def test_upload_only_what_changed_and_sync_deletes(self):
        d, expected = self.small_tree("inc")
        r = self.ck("upload", "inc", d)
        self.assertEqual((r.count("uploaded"), r.count("deleted"), r.count("unchanged")),
                         (len(expected), 0, 0), r.describe())

        r = self.ck("upload", "inc", d)
        self.assertEqual((r.count("uploaded"), r.count("deleted"), r.count("unchanged")),
                         (0, 0, len(expected)), r.describe())
        self.assertEqual(r.actions, [], r.describe())

        # mtime only: the content (MD5) is the same, nothing to send
        os.utime(os.path.join(d, "index.html"), (time.time() + 5, time.time() + 5))
        r = self.ck("upload", "inc", d)
        self.assertEqual(r.count("uploaded"), 0, f"a touched but unchanged file was re-sent: {r.describe()}")

        # same size, new content
        write_file(d, "dir1/file-1.txt", "CONTENT 1\n" * 2)
        r = self.ck("upload", "inc", d)
        self.assertEqual(r.count("uploaded"), 1, r.describe())
        self.assertEqual(r.actions, [(False, "upload", "dir1/file-1.txt", r.actions[0][3])], r.describe())
        self.assertIn("changed", r.actions[0][3] or "")
        self.assertEqual(self.get_object(f"{PREFIX}/inc/dir1/file-1.txt"), (200, b"CONTENT 1\n" * 2))

        # a new file and a removed one: upload adds, deletes nothing
        write_file(d, "new/fresh.txt", "fresh\n")
        os.remove(os.path.join(d, "dir2/file-2.txt"))
        r = self.ck("upload", "inc", d)
        self.assertEqual((r.count("uploaded"), r.count("deleted")), (1, 0), r.describe())
        self.assertEqual(r.paths("upload"), ["new/fresh.txt"])
        self.assertIn("new", r.actions[0][3] or "")
        self.assertEqual(self.head_status(f"{PREFIX}/inc/dir2/file-2.txt"), 200,
                         "upload without --delete removed an object")

        # sync deletes it
        r = self.ck("sync", "inc", d)
        self.assertEqual((r.count("uploaded"), r.count("deleted")), (0, 1), r.describe())
        self.assertEqual(r.paths("delete"), ["dir2/file-2.txt"], r.describe())
        self.assertEqual(self.head_status(f"{PREFIX}/inc/dir2/file-2.txt"), 404)

        # upload --delete does the same; a file newly ignored counts as removed
        os.remove(os.path.join(d, "dir3/file-3.txt"))
        write_file(d, ".ckignore", "dir0/file-4.txt\n")
        r = self.ck("upload", "inc", d, "--delete")
        self.assertEqual(sorted(r.paths("delete")), ["dir0/file-4.txt", "dir3/file-3.txt"], r.describe())
        expected = tree_digest(d, skip={".ckignore", "dir0/file-4.txt"})
        self.assertTree(self.aws_download("inc"), expected)

    def test_dry_run_changes_nothing(self):
        d, _ = self.small_tree("dry")
        r = self.ck("upload", "dry", d, "--dry-run")
        self.assertEqual(len(r.paths("upload", would=True)), 21, r.describe())
        self.assertEqual(self.count_objects(f"{PREFIX}/dry/"), 0, "--dry-run of a first upload stored objects")
        self.assertEqual(self.get_object(f"{PREFIX}/.cloudyknight/manifests/dry.json")[0], 404,
                         "--dry-run wrote a manifest")
        self.ck("upload", "dry", d)
        before = self.objects(f"{PREFIX}/")  # manifest included
        write_file(d, "added.txt", "added\n")
        write_file(d, "dir0/file-0.txt", "changed and longer\n")
        os.remove(os.path.join(d, "dir1/file-1.txt"))
        for args in (["upload", "dry", d, "--delete", "--dry-run"], ["sync", "dry", d, "--dry-run"]):
            r = self.ck(*args)
            self.assertEqual(r.paths("upload", would=True), ["added.txt", "dir0/file-0.txt"], r.describe())
            self.assertEqual(r.paths("delete", would=True), ["dir1/file-1.txt"], r.describe())
            self.assertEqual([a for a in r.actions if not a[0]], [], f"non-dry-run lines: {r.describe()}")
            details = {p: det for w, o, p, det in r.actions if o == "upload"}
            self.assertIn("new", details["added.txt"] or "")
            self.assertIn("changed", details["dir0/file-0.txt"] or "")
            self.assertEqual(self.objects(f"{PREFIX}/"), before, f"{args}: the bucket changed")
        r = self.ck("sync", "dry", d)
        self.assertEqual((r.count("uploaded"), r.count("deleted")), (2, 1), r.describe())

    def test_download_incremental_delete_and_dry_run(self):
        src, expected = self.small_tree("down-src")
        self.ck("upload", "down", src)
        d = self.mkdir("down")
        r = self.ck("download", "down", d)
        self.assertTree(d, expected)
        self.assertEqual(r.count("downloaded"), len(expected), r.describe())
        self.assertEqual(r.paths("download"), sorted(expected))

        r = self.ck("download", "down", d)
        self.assertEqual(r.count("downloaded"), 0, r.describe())

        write_file(d, "index.html", "local edit\n")
        write_file(d, "local-extra.txt", "only here\n")
        write_file(d, "node_modules/dep/x.js", "installed\n")
        write_file(d, ".env", "LOCAL=1\n")
        snapshot = tree_digest(d)
        r = self.ck("download", "down", d, "--delete", "--dry-run")
        self.assertEqual(r.paths("download", would=True), ["index.html"], r.describe())
        self.assertEqual(r.paths("delete", would=True), ["local-extra.txt"], r.describe())
        self.assertEqual(tree_digest(d), snapshot, "download --dry-run changed the folder")

        r = self.ck("download", "down", d)
        self.assertEqual(r.paths("download"), ["index.html"], r.describe())
        self.assertEqual(r.paths("delete"), [], "download without --delete deleted local files")
        self.assertTrue(os.path.exists(os.path.join(d, "local-extra.txt")))

        r = self.ck("download", "down", d, "--delete")
        self.assertEqual(r.paths("delete"), ["local-extra.txt"], r.describe())
        # local files the ignore rules exclude are not the remote's business
        self.assertTree(d, dict(expected, **{"node_modules/dep/x.js": sha256_bytes("installed\n"),
                                             ".env": sha256_bytes("LOCAL=1\n")}))

        fresh = os.path.join(self.tmp, "not", "there", "yet")
        self.ck("download", "down", fresh)
        self.assertTree(fresh, expected, msg="download into a folder that did not exist:")

    def test_lockfiles_kept_unless_no_lock(self):
        d = self.mkdir("locks")
        write_file(d, "package.json", "{}\n")
        write_file(d, "package-lock.json", "{}\n")
        write_file(d, "yarn.lock", "#\n")
        write_file(d, ".gitignore", "*.lock\npackage-lock.json\n")
        r = self.ck("upload", "locks", d, "-j", "2")
        self.assertEqual(r.paths("upload"), [".gitignore", "package-lock.json", "package.json", "yarn.lock"],
                         r.describe())
        r = self.ck("upload", "locks-nolock", d, "--no-lock")
        self.assertEqual(r.paths("upload"), [".gitignore", "package.json"], r.describe())

    def test_symlinks_never_leak(self):
        d = self.mkdir("links")
        write_file(self.tmp, "outside-secret.txt", "outside\n")
        write_file(d, "real.txt", "real\n")
        write_file(d, ".env", "SECRET=1\n")
        write_file(d, "node_modules/x.js", "x\n")
        links = {"link-inside.txt": "real.txt", "link-passwd": "/etc/passwd",
                 "link-outside.txt": "../outside-secret.txt", "link-env": ".env",
                 "link-dir": "/etc", "link-node.js": "node_modules/x.js", "dangling": "nowhere"}
        for name, target in links.items():
            os.symlink(target, os.path.join(d, name))
        r = self.ck("upload", "links", d)
        keys = {k[len(f"{PREFIX}/links/"):] for k in self.objects(f"{PREFIX}/links/")}
        for leak in ("link-passwd", "link-outside.txt", "link-env", "link-node.js", "dangling"):
            self.assertNotIn(leak, keys, f"a symlink leaked a file: {r.describe()}")
        self.assertFalse(any(k.startswith("link-dir/") for k in keys), f"followed a folder link: {sorted(keys)}")
        # documented in src/storage/ignore.h: a link to an included file inside the folder is a file
        self.assertEqual(self.get_object(f"{PREFIX}/links/link-inside.txt"), (200, b"real\n"))
        self.assertEqual(self.get_object(f"{PREFIX}/links/real.txt"), (200, b"real\n"))


# ------------------------------------------------------------------------ many small files


class ManySmallFilesTest(S3Case):
    def test_5000_small_files(self):
        d = self.mkdir("many")
        rng = random.Random(7)
        for i in range(5000):
            write_file(d, f"folder-{i % 50:02d}/f{i:04d}.txt", rng.randbytes(rng.randint(1, 4) * 512))
        r = self.ck("upload", "many", d)
        sys.stderr.write(f"\n[test_s3_cli] 5,000 files: cold upload {r.seconds:.2f} s")
        self.assertEqual(r.count("uploaded"), 5000, r.describe())
        self.assertEqual(self.count_objects(f"{PREFIX}/many/"), 5000)
        r = self.ck("upload", "many", d)
        sys.stderr.write(f", no-op {r.seconds:.2f} s")
        self.assertEqual((r.count("uploaded"), r.count("deleted"), r.count("unchanged")), (0, 0, 5000),
                         r.describe())
        r = self.ck("sync", "many", d, cache=self.mkdir("many-cache"))
        sys.stderr.write(f", no-op without index {r.seconds:.2f} s\n")
        self.assertEqual((r.count("uploaded"), r.count("deleted"), r.count("unchanged")), (0, 0, 5000),
                         r.describe())


# ---------------------------------------------------------------------------------- faults


def is_big(req):
    return req.key.endswith("big.bin")


class FaultTest(S3Case):
    """Each test puts its own S3Proxy (with faults) between the CLI and s3rver; setup and
    checks talk to s3rver directly."""

    def proxy(self, *faults):
        p = S3Proxy(self.server.port, faults)
        type(self).proxies.append(p)
        return p

    def fault_tree(self, name, n=30, big=20 * MiB + 7):
        d = self.mkdir(name)
        rng = random.Random(name)
        for i in range(n):
            write_file(d, f"f/{i:02d}.txt", rng.randbytes(100 + i))
        if big:
            write_file(d, "big.bin", rng.randbytes(big))
        return d

    def assertAllHit(self, faults):
        for f in faults:
            if f.times is not None:
                self.assertEqual(len(f.hits), f.times, f"fault {f.name} hit {f.hits}")

    def test_transient_errors_are_retried(self):
        d = self.fault_tree("flaky")
        faults = [
            Fault(lambda r: r.kind == "list", "500", name="list"),
            Fault(lambda r: r.kind == "put_object", "500", times=5, name="put-500"),
            Fault(lambda r: r.kind == "put_object", "drop", times=3, per_target=True, name="put-drop"),
            Fault(lambda r: r.kind == "create_mpu", "500", name="create-500"),
            Fault(lambda r: r.kind == "upload_part" and r.part == 2, "drop", name="part2-drop"),
            Fault(lambda r: r.kind == "upload_part" and r.part == 3, "500", name="part3-500"),
            Fault(lambda r: r.kind == "complete_mpu", "500", name="complete-500"),
        ]
        p = self.proxy(*faults)
        r = self.ck("upload", "flaky", d, endpoint=p.endpoint)
        self.assertAllHit(faults)
        self.assertEqual(r.count("uploaded"), 31, r.describe())
        self.assertTree(self.aws_download("flaky"), tree_digest(d))
        self.assertEqual(p.open_uploads(), {}, "multipart uploads left open")
        self.assertEqual(p.errors, [])

    def test_key_failing_permanently(self):
        d = self.fault_tree("perm", big=0)
        write_file(d, "src/bad file.txt", "never stored\n")
        self.aws("s3api", "put-object", "--bucket", BUCKET, "--key", f"{PREFIX}/perm/extra.txt",
                 "--body", os.path.join(d, "f", "00.txt"), endpoint=self.server.endpoint)
        bad = Fault(lambda r: r.kind == "put_object" and r.key.endswith("bad file.txt"), "500",
                    times=None, name="bad-key")
        p = self.proxy(bad)
        r = self.ck("sync", "perm", d, endpoint=p.endpoint, ok=False, timeout=120)
        self.assertNotEqual(r.returncode, 0, r.describe())
        self.assertGreaterEqual(len(bad.hits), 2, "the failing PUT was not retried")
        self.assertTrue(any("bad file.txt" in l for l in r.err_lines),
                        f"stderr does not name the file that failed: {r.describe()}")
        self.assertIsNone(NOISE_RE.search(r.stderr), r.describe())
        self.assertEqual(self.head_status(f"{PREFIX}/perm/src/bad file.txt"), 404)
        self.assertEqual(self.head_status(f"{PREFIX}/perm/extra.txt"), 200,
                         "sync deleted a remote object although an upload failed")
        expected = tree_digest(d, skip={"src/bad file.txt"})
        expected["extra.txt"] = expected["f/00.txt"]
        self.assertTree(self.aws_download("perm"), expected, msg="the other files:")

    def test_part_failing_permanently_aborts_the_multipart_upload(self):
        d = self.fault_tree("mpfail", n=5)
        bad = Fault(lambda r: r.kind == "upload_part" and is_big(r) and r.part == 2, "500",
                    times=None, name="part-2")
        p = self.proxy(bad)
        r = self.ck("upload", "mpfail", d, endpoint=p.endpoint, ok=False, timeout=120)
        self.assertNotEqual(r.returncode, 0, r.describe())
        self.assertTrue(any("big.bin" in l for l in r.err_lines), r.describe())
        self.assertIsNone(NOISE_RE.search(r.stderr), r.describe())
        self.assertEqual(self.head_status(f"{PREFIX}/mpfail/big.bin"), 404)
        self.assertGreater(len(p.upload_states()), 0, "no multipart upload was started")
        self.assertEqual(p.open_uploads(), {}, f"multipart uploads neither completed nor aborted: "
                                               f"{p.upload_states()}")
        self.assertTree(self.aws_download("mpfail"), tree_digest(d, skip={"big.bin"}))

    def test_download_refuses_keys_escaping_the_folder(self):
        base = self.mkdir("evil")
        d = os.path.join(base, "a", "b", "dl")
        absolute = os.path.join(base, "abs", "escape-3.txt")
        planted = {
            f"{PREFIX}/evil/../../escape-1.txt": b"1",
            f"{PREFIX}/evil/../escape-2.txt": b"2",
            f"{PREFIX}/evil/" + absolute: b"3",  # "ws/evil//tmp/..."
            f"{PREFIX}/evil/ok/./escape-4.txt": b"4",
            f"{PREFIX}/evil/ok/fine.txt": b"fine",
        }
        p = S3Proxy(self.server.port, planted=planted)
        type(self).proxies.append(p)
        r = self.ck("download", "evil", d, endpoint=p.endpoint, ok=False)
        written = sorted(os.path.relpath(os.path.join(dp, f), base)
                         for dp, _, fs in os.walk(base) for f in fs)
        self.assertEqual(written, ["a/b/dl/ok/fine.txt"], f"files written: {written}; {r.describe()}")
        self.assertFalse(os.path.exists(absolute))
        self.assertIsNone(NOISE_RE.search(r.stderr), r.describe())
        self.assertIn("escape-1.txt", r.stderr, f"the refused keys are not reported: {r.describe()}")

    def _listing_fault(self, name, nfiles, match):
        d = self.mkdir(name)
        for i in range(nfiles):
            write_file(d, f"k/{i:04d}.txt", f"{i}\n")
        self.ck("upload", name, d, endpoint=self.server.endpoint)
        for i in range(0, nfiles, 10):
            os.remove(os.path.join(d, "k", f"{i:04d}.txt"))
        write_file(d, "k/0001.txt", "changed\n")
        before = self.objects(f"{PREFIX}/{name}/")
        self.assertEqual(len(before), nfiles)
        fault = Fault(match, "500", times=None, name="list")
        p = self.proxy(fault)
        r = self.ck("sync", name, d, endpoint=p.endpoint, ok=False, timeout=120)
        self.assertGreater(len(fault.hits), 0, "the listing fault never fired")
        self.assertNotEqual(r.returncode, 0, f"sync succeeded with a failed listing: {r.describe()}")
        self.assertIsNone(NOISE_RE.search(r.stderr), r.describe())
        self.assertEqual(r.paths("delete"), [], r.describe())
        after = self.objects(f"{PREFIX}/{name}/")
        self.assertEqual(sorted(set(before) - set(after)), [], "objects deleted after a failed listing")
        self.assertEqual(p.requests("delete_objects") + p.requests("delete_object"), [],
                         "delete requests were sent")
        return r, p

    def test_listing_failure_deletes_nothing(self):
        r, _ = self._listing_fault("lst", 30, lambda q: q.kind == "list")
        self.assertEqual(len(r.err_lines), 1, r.describe())

    def test_partial_listing_deletes_nothing(self):
        # s3rver answers 1000 keys per page: the second page fails
        _, p = self._listing_fault("pages", 1100, lambda q: q.kind == "list" and "continuation-token" in q.query)
        self.assertTrue(any(e[3] == "200" for e in p.requests("list")), "the first page was not served")


# ---------------------------------------------------------------------------------- errors


class ErrorTest(S3Case):
    def setUp(self):
        self.dir = os.path.join(self.tmp, "src")
        if not os.path.isdir(self.dir):
            write_file(self.dir, "index.html", "hi\n")

    def test_invalid_names(self):
        for name in ("Bad_Name", "UPPER", "dot.name", "with space", "a" * 64, "../escape", "a/b", ""):
            for args in (["upload", name, self.dir], ["download", name, self.mkdir("dl")], ["delete", name]):
                with self.subTest(args=args):
                    r = self.ck(*args, ok=False)
                    self.assertFailsCleanly(r, name if name else "name", "invalid", "workspace name")
        self.assertEqual(self.count_objects(""), 0, "something was stored")

    def test_reserved_name(self):
        r = self.ck("upload", "monitor", self.dir, ok=False)
        self.assertFailsCleanly(r, "monitor")
        self.assertIn("reserved", r.stderr.lower(), r.describe())

    def test_missing_dir(self):
        missing = os.path.join(self.tmp, "does-not-exist")
        for cmd in ("upload", "sync"):
            r = self.ck(cmd, "site", missing, ok=False)
            self.assertFailsCleanly(r, missing, "does-not-exist")
        self.assertEqual(self.count_objects(""), 0)

    def test_missing_bucket(self):
        for args in (["upload", "site", self.dir], ["list"], ["download", "site", self.mkdir("dl")]):
            with self.subTest(args=args):
                r = self.ck(*args, "--storage", "s3://no-such-bucket/ws", "--s3-endpoint",
                            self.server.endpoint, storage=False, ok=False, timeout=60)
                self.assertFailsCleanly(r, "no-such-bucket", "NoSuchBucket")

    def test_unreachable_endpoint(self):
        port = free_port()
        r = self.ck("upload", "site", self.dir, endpoint=f"http://127.0.0.1:{port}", ok=False, timeout=90)
        self.assertFailsCleanly(r, f"127.0.0.1:{port}", "connect", "unreachable")
        self.assertLess(r.seconds, 60, "took too long to give up")


# ----------------------------------------------------------------------- list and delete


class ListDeleteTest(S3Case):
    @classmethod
    def set_up_class(cls):
        def tree(name, files):
            d = os.path.join(cls.tmp, "trees", name)
            for rel, data in files.items():
                write_file(d, rel, data)
            return d

        cls.trees = {
            "alpha": tree("alpha", {"package.json": json.dumps({"name": "alpha", "description": "Alpha app"}),
                                    "server.js": "require('http')\n", "public/a.css": "a{}\n"}),
            "app": tree("app", {"index.html": "<p>app</p>\n", "x/y.txt": "y\n"}),
            "app-2": tree("app-2", {"index.html": "<p>app-2</p>\n", "x/y.txt": "y2\n"}),
            "doomed": tree("doomed", {"index.html": "<p>doomed</p>\n"}),
        }

    def setUp(self):
        if getattr(type(self), "_ready", False):
            return
        for name in ("alpha", "app", "app-2"):
            self.ck("upload", name, self.trees[name])
        for name, src in (("gamma", self.trees["app"]), ("doomed-aws", self.trees["doomed"])):
            self.aws("s3", "sync", src, f"s3://{BUCKET}/{PREFIX}/{name}/")
        type(self)._ready = True

    def listed(self, *extra, **kw):
        r = self.ck("list", "--json", *extra, **kw)
        try:
            doc = json.loads(r.stdout)
        except ValueError:
            self.fail(f"list --json printed no JSON: {r.describe()}")
        self.assertIsInstance(doc, list, r.describe())
        for w in doc:
            self.assertIsInstance(w, dict)
            self.assertIn("name", w)
        return {w["name"]: w for w in doc}

    def test_list_json_includes_workspaces_without_manifest(self):
        got = self.listed()
        for name in ("alpha", "app-2", "gamma"):
            self.assertIn(name, got, f"list --json: {sorted(got)}")
        self.assertNotIn(".cloudyknight", got)
        self.assertTrue(all(re.match(r"^[a-z0-9][a-z0-9-]*$", n) for n in got), sorted(got))

    def test_list_plain_via_alias(self):
        r = self.ck("list", command="ws")
        for name in ("alpha", "app-2", "gamma"):
            self.assertIn(name, r.stdout, r.describe())

    def test_config_file(self):
        cfg = os.path.join(self.tmp, "config.yaml")
        with open(cfg, "w") as f:
            f.write(f'storage:\n  kind: s3\n  bucket: "{BUCKET}"\n  prefix: "{PREFIX}"\n'
                    f'  endpoint: "{self.server.endpoint}"\n  region: "us-east-1"\n')
        got = self.listed("--config", cfg, storage=False)
        self.assertIn("alpha", got)
        self.assertIn("gamma", got)

    def test_manifest(self):
        status, body = self.get_object(f"{PREFIX}/.cloudyknight/manifests/alpha.json")
        self.assertEqual(status, 200, "no manifest for alpha")
        doc = json.loads(body)
        for field in ("name", "description", "type", "updated", "files", "bytes"):
            self.assertIn(field, doc, doc)
        self.assertEqual(doc["name"], "alpha")
        self.assertEqual(doc["type"], "node")
        self.assertEqual(doc["description"], "Alpha app")
        self.assertEqual(doc["files"], 3)
        self.assertEqual(doc["bytes"], sum(os.path.getsize(os.path.join(dp, f))
                                           for dp, _, fs in os.walk(self.trees["alpha"]) for f in fs))

    def test_delete_removes_only_that_workspace(self):
        keep = {k: v for k, v in self.objects(f"{PREFIX}/").items()
                if not k.startswith(f"{PREFIX}/app/") and k != f"{PREFIX}/.cloudyknight/manifests/app.json"}
        self.assertIn(f"{PREFIX}/app-2/index.html", keep)
        r = self.ck("delete", "app")
        self.assertEqual(self.objects(f"{PREFIX}/"), keep, r.describe())
        self.assertNotIn("app", self.listed())

    def test_delete_workspace_without_manifest(self):
        self.ck("delete", "doomed-aws")
        self.assertEqual(self.objects(f"{PREFIX}/doomed-aws/"), {})

    def test_delete_dry_run(self):
        before = self.objects(f"{PREFIX}/")
        r = self.ck("delete", "alpha", "--dry-run")
        self.assertEqual(set(r.paths("delete", would=True)) & {"server.js", "package.json"},
                         {"server.js", "package.json"}, r.describe())
        self.assertEqual(self.objects(f"{PREFIX}/"), before, "delete --dry-run changed the bucket")


# ------------------------------------------------------------------------------------ watch


class WatchTest(S3Case):
    def start_watch(self, name, d, command="upload"):
        cmd = [binary(), "workspace", command, name, d, "--watch", "--storage",
               f"s3://{BUCKET}/{PREFIX}", "--s3-endpoint", self.endpoint]
        err = open(os.path.join(self.tmp, f"watch-{name}.err"), "w+b")
        proc = subprocess.Popen(cmd, env=cli_env(self.server, cache=self.cache), stdout=subprocess.PIPE,
                                stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        lines, cond = [], threading.Condition()

        def reader():
            for raw in iter(proc.stdout.readline, b""):
                with cond:
                    lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                    cond.notify_all()

        t = threading.Thread(target=reader, daemon=True)
        t.start()

        def cleanup():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
            t.join(5)
            proc.stdout.close()
            err.close()

        self.addCleanup(cleanup)
        return proc, lines, cond, err

    def wait_line(self, proc, lines, cond, pattern, timeout, since=0):
        deadline = time.monotonic() + timeout
        with cond:
            for _ in range(100_000):
                for i in range(since, len(lines)):
                    if re.search(pattern, lines[i]):
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or proc.poll() is not None:
                    break
                cond.wait(min(left, 0.2))
            self.fail(f"no line matching {pattern!r} within {timeout} s (exit code {proc.poll()}); "
                      f"output: {lines[-20:]}")

    def wait_content(self, key, data, timeout=15):
        """Seconds until GET key returns data (polled every 20 ms); fails after timeout. The
        timeout is for a save that never arrives; the seconds a save takes are printed, not
        asserted (a loaded CI machine makes any bound a flake)."""
        t0 = time.monotonic()
        last = None
        for _ in range(int(timeout / 0.02) + 50):
            last = self.get_object(key)
            if last == (200, data):
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                break
            time.sleep(0.02)
        self.fail(f"{key} did not get its new content within {timeout} s (last: {last[0]} "
                  f"{last[1][:80]!r})")

    def stop_watch(self, proc, err, sig):
        proc.send_signal(sig)
        try:
            rc = proc.wait(10)
        except subprocess.TimeoutExpired:
            self.fail(f"--watch did not exit within 10 s of {signal.Signals(sig).name}")
        err.seek(0)
        self.assertEqual(rc, 0, f"exit code after {signal.Signals(sig).name}; stderr: "
                                f"{err.read().decode(errors='replace')[-2000:]}")

    def test_watch_uploads_every_save(self):
        d = self.mkdir("watched")
        write_file(d, "index.html", "v0\n")
        write_file(d, "css/site.css", "body{}\n")
        proc, lines, cond, err = self.start_watch("live", d)
        first = self.wait_line(proc, lines, cond, r"^live: .* in [0-9.]+ ?s \(s3://", 60)
        self.assertEqual(self.get_object(f"{PREFIX}/live/index.html"), (200, b"v0\n"))
        times = {}
        # a new file in a new folder
        write_file(d, "new/dir/page.html", "new page\n")
        times["new file in a new folder"] = self.wait_content(f"{PREFIX}/live/new/dir/page.html", b"new page\n")
        # an editor's atomic save in a subfolder: write a temp file, rename it over the original
        tmp = write_file(d, "css/.site.css.swp-tmp", "body{color:red}\n")
        os.replace(tmp, os.path.join(d, "css", "site.css"))
        times["rename over css/site.css"] = self.wait_content(f"{PREFIX}/live/css/site.css", b"body{color:red}\n")
        # an in-place rewrite of a file at the top of the folder
        write_file(d, "index.html", "v1\n")
        times["rewrite of index.html"] = self.wait_content(f"{PREFIX}/live/index.html", b"v1\n")
        # an ignored file is never uploaded
        write_file(d, "node_modules/dep/index.js", "x\n")
        write_file(d, "css/site.css", "v2\n")
        times["after an ignored write"] = self.wait_content(f"{PREFIX}/live/css/site.css", b"v2\n")
        time.sleep(0.5)
        self.assertEqual(self.get_object(f"{PREFIX}/live/node_modules/dep/index.js")[0], 404)
        sys.stderr.write("\n[test_s3_cli] --watch save -> visible: "
                         + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in times.items()) + "\n")
        self.assertGreater(len(lines), first)
        self.assertIsNone(proc.poll(), "--watch exited by itself")
        self.stop_watch(proc, err, signal.SIGTERM)

    def test_sync_watch_deletes(self):
        d = self.mkdir("watched3")
        write_file(d, "keep/a.txt", "a\n")
        write_file(d, "keep/b.txt", "b\n")
        proc, lines, cond, err = self.start_watch("live3", d, command="sync")
        self.wait_line(proc, lines, cond, r"^live3: .* in [0-9.]+ ?s \(s3://", 60)
        os.remove(os.path.join(d, "keep", "b.txt"))
        t0 = time.monotonic()
        for _ in range(1000):
            if self.get_object(f"{PREFIX}/live3/keep/b.txt")[0] == 404 or time.monotonic() - t0 > 15:
                break
            time.sleep(0.02)
        self.assertEqual(self.get_object(f"{PREFIX}/live3/keep/b.txt")[0], 404,
                         "sync --watch did not delete a removed file's object within 15 s")
        self.assertEqual(self.get_object(f"{PREFIX}/live3/keep/a.txt"), (200, b"a\n"))
        self.stop_watch(proc, err, signal.SIGTERM)

    def test_watch_stops_on_sigint(self):
        d = self.mkdir("watched2")
        write_file(d, "index.html", "hello\n")
        proc, lines, cond, err = self.start_watch("live2", d)
        self.wait_line(proc, lines, cond, r"^live2: .* in [0-9.]+ ?s \(s3://", 60)
        self.stop_watch(proc, err, signal.SIGINT)


if __name__ == "__main__":
    unittest.main()
