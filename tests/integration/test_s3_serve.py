"""S3 storage for `serve` (issue 5, part 5) end to end, process runtime, against a real
s3rver: `cloudyknight serve --storage s3://bkt/ws --s3-endpoint URL` mirrors every workspace
of the bucket into DATA/mirror and runs it; remote changes are served within
storage.list_interval, or at once after a MinIO bucket notification POSTed to
/monitor/api/v1/storage/events; a workspace deleted remotely is stopped and disappears; a key
with `..` never writes outside the mirror; an S3 outage keeps the mirror served and is
recovered from; a bad bucket name or a missing bucket gives a clear error.

Workspaces are uploaded with the real awscli (/usr/bin/aws s3 sync). s3rver is found through
CK_S3RVER (scripts/test.sh) or scripts/s3rver.sh's cache; without it the tests are skipped.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_s3_serve
"""

import hashlib
import http.client
import http.server
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import unittest
from xml.sax.saxutils import escape as xml_escape

from harness import (EXAMPLES, FIXTURES, ClassSetUp, Daemon, DaemonTestCase, binary, deep_merge,
                     free_service_port_range, pid_alive, port_listening, wait_until)
from s3util import S3Server, s3rver_path

BUCKET = "bkt"
PREFIX = "ws"
EVENTS = "/monitor/api/v1/storage/events"
# No periodic pass of the monitor within a test: only inotify on the mirror explains a change.
BASE_CONFIG = {"storage": {"scan_interval": "60s"}, "runtime": {"install_concurrency": 4}}

HAVE_S3RVER = os.access(s3rver_path(), os.X_OK)
NO_S3RVER = f"s3rver not found at {s3rver_path()} (run scripts/s3rver.sh or set CK_S3RVER)"


# ----------------------------------------------------------------------------- helpers


class RestartableS3Server(S3Server):
    """An S3Server that can go away and come back on the same port with the same objects."""

    def pause(self):
        os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(10)
        self.proc = None

    def resume(self, timeout=30):
        env = dict(os.environ, NODE_OPTIONS="--openssl-legacy-provider")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [s3rver_path(), "--address", "127.0.0.1", "--port", str(self.port), "--directory",
                 os.path.join(self.dir, "data"), "--silent"],
                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        wait_until(lambda: port_listening(self.port), timeout, f"s3rver back on port {self.port}")


def aws_env(s3):
    """The AWS_* variables the daemon needs to talk to this server (and nothing from ~/.aws)."""
    return {k: v for k, v in s3.client_env({}).items() if k.startswith("AWS_")}


def s3_daemon(s3, config=None, bucket=BUCKET, prefix=PREFIX, **kw):
    lo, hi = free_service_port_range()
    cfg = deep_merge(deep_merge(BASE_CONFIG, {"runtime": {"ports": f"{lo}-{hi}"}}), config or {})
    return Daemon(workspaces=False, args=s3.storage_args(bucket, prefix), env=aws_env(s3), config=cfg, **kw)


def put_text(s3, key, text):
    """Uploads `text` as s3://BUCKET/key with `aws s3 cp` (from a temporary file)."""
    with tempfile.NamedTemporaryFile("w", suffix=os.path.splitext(key)[1], delete=False) as f:
        f.write(text)
    try:
        s3.aws("s3", "cp", f.name, f"s3://{BUCKET}/{key}")
    finally:
        os.unlink(f.name)


def minio_event(key, name="s3:ObjectCreated:Put", bucket=BUCKET):
    """A MinIO webhook body for one object, as MinIO sends it (the record's key URL-encoded)."""
    from urllib.parse import quote_plus
    return json.dumps({
        "EventName": name,
        "Key": f"{bucket}/{key}",
        "Records": [{
            "eventVersion": "2.0",
            "eventSource": "minio:s3",
            "awsRegion": "",
            "eventTime": "2026-01-01T00:00:00.000Z",
            "eventName": name,
            "userIdentity": {"principalId": "minioadmin"},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "Config",
                "bucket": {"name": bucket, "ownerIdentity": {"principalId": "minioadmin"},
                           "arn": f"arn:aws:s3:::{bucket}"},
                "object": {"key": quote_plus(key), "size": 10, "eTag": "0" * 32,
                           "contentType": "text/html", "sequencer": "1"},
            },
        }],
    }).encode()


def served_within(d, path, marker, timeout, since=None):
    """Seconds from `since` (a time.monotonic(); default now) until GET path answers 200 with
    `marker` in its body (AssertionError after `timeout`)."""
    t0 = time.monotonic() if since is None else since

    def check():
        try:
            r = d.get(path, timeout=5)
        except (OSError, http.client.HTTPException):
            return False
        return r.status == 200 and marker in r.text()
    wait_until(check, timeout, f"{path} to serve {marker!r}", interval=0.05)
    return time.monotonic() - t0


class S3Case(ClassSetUp):
    """One s3rver and the daemons of a class; tearDownClass stops the daemons (SIGTERM: exit
    code 0 and no workspace process left), then the server, and removes their folders."""

    @classmethod
    def init_class_state(cls):
        cls.s3 = None
        cls.daemons = []

    @classmethod
    def setUpClass(cls):
        if not HAVE_S3RVER:
            raise unittest.SkipTest(NO_S3RVER)
        super().setUpClass()

    @classmethod
    def start_s3(cls):
        cls.s3 = RestartableS3Server().start()
        cls.s3.make_bucket(BUCKET)
        return cls.s3

    @classmethod
    def new_daemon(cls, **kw):
        d = s3_daemon(cls.s3, **kw)
        cls.daemons.append(d)
        return d

    @classmethod
    def tearDownClass(cls):
        problems = []
        for d in cls.daemons:
            if d.proc is None or d.stopped is not None:
                continue
            res = d.stop()
            if res.returncode != 0 or res.leftovers:
                problems.append(f"daemon on port {d.port}: exit code {res.returncode} (None = did not "
                                f"exit within 20 s), leftovers {res.leftovers}\n{d.diagnostics()}")
        for d in cls.daemons:
            d.cleanup()
        if cls.s3 is not None:
            cls.s3.stop()
        if problems:
            raise AssertionError("\n".join(problems))

    @classmethod
    def diagnostics(cls):
        out = super().diagnostics()
        if cls.s3 is not None and cls.s3.log_path:
            out += f"\n----- s3rver log\n{cls.s3.log()}"
        return out


# --------------------------------------------------------------------------- the tests


class TestServeFromS3(S3Case):
    """A static site and a Python app uploaded with `aws s3 sync`, served by one daemon that
    lists the bucket every second."""

    @classmethod
    def set_up(cls):
        s3 = cls.start_s3()
        s3.aws("s3", "sync", os.path.join(EXAMPLES, "site"), f"s3://{BUCKET}/{PREFIX}/site")
        s3.aws("s3", "sync", os.path.join(EXAMPLES, "hello-python"), f"s3://{BUCKET}/{PREFIX}/app")
        s3.aws("s3", "sync", os.path.join(EXAMPLES, "hello-python"), f"s3://{BUCKET}/{PREFIX}/doomed")
        # Not workspaces: metadata, an invalid name, an object beside the workspaces.
        put_text(s3, f"{PREFIX}/.cloudyknight/manifests/site.json", "{}")
        put_text(s3, f"{PREFIX}/Bad_Name/index.html", "<p>bad</p>")
        put_text(s3, f"{PREFIX}/README.txt", "not a workspace")
        cls.d = cls.new_daemon(config={"storage": {"list_interval": "1s"}})
        cls.t_start = time.monotonic()
        cls.d.start()
        cls.d.wait_status("app", "running", 60)
        cls.d.wait_status("doomed", "running", 60)

    def test_1_every_workspace_of_the_bucket_answers(self):
        d = self.d
        r = d.get("/site/")
        self.assertEqual(r.status, 200, r.text()[:300])
        self.assertIn("Hello from a static workspace", r.text())
        self.assertEqual(d.get("/site/css/style.css").status, 200)
        r = d.get("/app/")
        self.assertEqual(r.status, 200, r.text()[:300])
        self.assertIn("Hello from Python", r.text())
        self.assertEqual(sorted(w["name"] for w in d.workspaces()), ["app", "doomed", "site"])
        self.assertTrue(os.path.isfile(os.path.join(d.data, "mirror", "site", "index.html")))
        self.assertTrue(os.path.isfile(os.path.join(d.data, "mirror-index", "site.json")))
        log = d.stderr_text()
        self.assertRegex(log, r"serving 3 workspaces from s3://bkt/ws \(mirror in .*/data/mirror\)")
        self.assertIn("not serving s3://bkt/ws/Bad_Name/", log)
        self.assertIn("aws s3 mv --recursive s3://bkt/ws/Bad_Name/", log)
        status, doc = d.api("/status")
        self.assertEqual(status, 200)
        self.assertTrue(doc["storage"].startswith("s3://bkt/ws (mirror in "), doc)

    def test_2_remote_change_is_served_within_the_list_interval(self):
        d = self.d
        with open(os.path.join(EXAMPLES, "site", "index.html")) as f:
            page = f.read()
        marker = f"changed-remotely-{time.monotonic_ns()}"
        t0 = time.monotonic()
        put_text(self.s3, f"{PREFIX}/site/index.html", page.replace("Hello from a static workspace", marker))
        uploaded = time.monotonic() - t0
        took = served_within(d, "/site/", marker, 15, since=t0)
        print(f"\n  static change served {took:.2f}s after `aws s3 cp` started ({uploaded:.2f}s of it "
              "the aws CLI itself; list_interval 1s)")
        self.assertLess(took - uploaded, 4.0)
        # A Python app is restarted on the new source.
        with open(os.path.join(EXAMPLES, "hello-python", "app.py")) as f:
            app = f.read()
        marker = f"python-from-s3-{time.monotonic_ns()}"
        t0 = time.monotonic()
        put_text(self.s3, f"{PREFIX}/app/app.py", app.replace("Hello from Python", marker))
        took = served_within(d, "/app/", marker, 60, since=t0)
        print(f"  python change served {took:.2f}s after `aws s3 cp` started (restart included)")
        # The invalid name was warned about once, though many passes ran since.
        self.assertEqual(d.stderr_text().count("not serving s3://bkt/ws/Bad_Name/"), 1)

    def test_3_a_new_workspace_appears(self):
        d = self.d
        t0 = time.monotonic()
        self.s3.aws("s3", "sync", os.path.join(FIXTURES, "static"), f"s3://{BUCKET}/{PREFIX}/blog")
        took = served_within(d, "/blog/hello%20world.txt", "", 15, since=t0)
        print(f"\n  new workspace served {took:.2f}s after `aws s3 sync` started")
        with open(os.path.join(FIXTURES, "static", "big.txt"), "rb") as f:
            self.assertEqual(d.get("/blog/big.txt").body, f.read())

    def test_3b_a_workspace_uploaded_with_our_cli_runs(self):
        d = self.d
        t0 = time.monotonic()
        env = self.s3.client_env()
        env["XDG_CACHE_HOME"] = os.path.join(d.tmp, "cli-cache")
        up = subprocess.run([binary(), "ws", "upload", "cli-app", os.path.join(EXAMPLES, "hello-python"),
                             *self.s3.storage_args(BUCKET, PREFIX)], env=env, capture_output=True,
                            text=True, timeout=120)
        self.assertEqual(up.returncode, 0, up.stderr)
        d.wait_status("cli-app", "running", 60)
        took = served_within(d, "/cli-app/", "Hello from Python", 30, since=t0)
        print(f"\n  workspace uploaded by `cloudyknight ws upload` answered {took:.2f}s after the upload began")
        # The manifest beside the workspaces is metadata, never a workspace.
        self.assertNotIn(".cloudyknight", [w["name"] for w in d.workspaces()])

    def test_4_remote_delete_stops_the_workspace_and_removes_it(self):
        d = self.d
        w = d.wait_status("doomed", "running", 60)
        pid = w["pid"]
        self.assertTrue(pid_alive(pid))
        t0 = time.monotonic()
        self.s3.aws("s3", "rm", "--recursive", f"s3://{BUCKET}/{PREFIX}/doomed")
        wait_until(lambda: d.workspace("doomed") is None, 15, "doomed to disappear from the API")
        print(f"\n  deleted workspace gone {time.monotonic() - t0:.2f}s after `aws s3 rm` started")
        wait_until(lambda: not pid_alive(pid), 15, f"doomed's process {pid} to exit")
        self.assertEqual(d.get("/doomed/").status, 404)
        self.assertFalse(os.path.exists(os.path.join(d.data, "mirror", "doomed")))
        self.assertFalse(os.path.exists(os.path.join(d.data, "mirror-index", "doomed.json")))
        self.assertEqual(d.get("/app/").status, 200)

    def test_5_an_outage_keeps_the_mirror_served_then_recovers(self):
        d = self.d
        names = sorted(w["name"] for w in d.workspaces())
        self.s3.pause()
        try:
            wait_until(lambda: "cannot list s3://bkt/ws:" in d.stderr_text(), 20,
                       "the daemon to log the failed listing")
            line = next(l for l in d.stderr_text().splitlines() if "cannot list s3://bkt/ws:" in l)
            self.assertIn("serving the mirror", line)
            # Several failed passes later (list_interval 1s; a failed listing takes ~1.5s of
            # retries) the workspaces are still there and served, and the error was logged once.
            time.sleep(4)
            self.assertEqual(d.stderr_text().count("cannot list s3://bkt/ws:"), 1, "logged once")
            self.assertEqual(d.get("/site/").status, 200)
            self.assertEqual(d.get("/app/").status, 200)
            self.assertEqual(sorted(w["name"] for w in d.workspaces()), names)
            self.assertTrue(os.path.isfile(os.path.join(d.data, "mirror", "site", "index.html")))
        finally:
            self.s3.resume()
        wait_until(lambda: "listing s3://bkt/ws works again" in d.stderr_text(), 20, "the recovery")
        marker = f"after-the-outage-{time.monotonic_ns()}"
        put_text(self.s3, f"{PREFIX}/site/after.html", marker)
        served_within(d, "/site/after.html", marker, 15)


class TestBucketNotifications(S3Case):
    """storage.list_interval is a minute: only a notification explains a change seen sooner."""

    @classmethod
    def set_up(cls):
        s3 = cls.start_s3()
        s3.aws("s3", "sync", os.path.join(EXAMPLES, "site"), f"s3://{BUCKET}/{PREFIX}/site")
        cls.d = cls.new_daemon(config={"storage": {"list_interval": "60s"}})
        cls.d.start()
        from test_auth import admin_token
        cls.token = admin_token(cls.d)

    def post(self, body, headers=None):
        # MinIO sends the token configured as the webhook's auth_token.
        return self.d.request("POST", EVENTS, body=body,
                              headers=headers or {"Content-Type": "application/json",
                                                  "Authorization": f"Bearer {self.token}"})

    def test_a_notification_needs_a_token_that_may_deploy(self):
        r = self.post(minio_event(f"{PREFIX}/site/x.html"), headers={"Content-Type": "application/json"})
        self.assertEqual(r.status, 401, r.text())
        self.assertEqual(r.json()["error"]["code"], "unauthenticated")
        r = self.post(minio_event(f"{PREFIX}/site/x.html"),
                      headers={"Content-Type": "application/json", "Authorization": "Bearer ck_wrong"})
        self.assertEqual(r.status, 401, r.text())

    def test_a_notification_makes_a_change_visible_at_once(self):
        marker = f"notified-{time.monotonic_ns()}"
        put_text(self.s3, f"{PREFIX}/site/news.html", marker)
        # Give a wrong implementation (one that does not wait for its interval) time to show.
        time.sleep(0.5)
        self.assertEqual(self.d.get("/site/news.html").status, 404, "no pass before the notification")
        t0 = time.monotonic()
        r = self.post(minio_event(f"{PREFIX}/site/news.html"))
        self.assertEqual(r.status, 202, r.text())
        self.assertEqual(r.json(), {"accepted": 1})
        served_within(self.d, "/site/news.html", marker, 10)
        took = time.monotonic() - t0
        print(f"\n  change served {took:.2f}s after the notification (list_interval 60s)")
        self.assertLess(took, 5.0)
        # A deletion too (s3:ObjectRemoved:Delete).
        self.s3.aws("s3", "rm", f"s3://{BUCKET}/{PREFIX}/site/news.html")
        r = self.post(minio_event(f"{PREFIX}/site/news.html", "s3:ObjectRemoved:Delete"))
        self.assertEqual(r.status, 202)
        wait_until(lambda: self.d.get("/site/news.html").status == 404, 10, "news.html to be gone")

    def test_sync_pulls_a_change_now_and_answers_what_it_did(self):
        token = self.token
        marker = f"synced-{time.monotonic_ns()}"
        put_text(self.s3, f"{PREFIX}/site/sync.html", marker)
        time.sleep(0.5)
        self.assertEqual(self.d.get("/site/sync.html").status, 404, "no pass before the sync")
        r = self.d.request("POST", "/monitor/api/v1/workspaces/site/sync",
                           headers={"Authorization": f"Bearer {token}"}, timeout=30)
        self.assertEqual(r.status, 200, r.text())
        doc = r.json()
        self.assertEqual((doc["name"], doc["storage"], doc["direction"]), ("site", "s3", "pull"))
        self.assertGreaterEqual(doc["pulled"], 1, doc)
        self.assertGreaterEqual(doc["files"], 1, doc)
        self.assertEqual(doc["failed"], 0, doc)
        # The pass has finished when the answer comes: the file is in the mirror already.
        served_within(self.d, "/site/sync.html", marker, 5)
        status = self.d.request("GET", "/monitor/api/v1/workspaces/site/status").json()
        self.assertEqual(status["sync"]["storage"], "s3")
        self.assertEqual(status["sync"]["error"], "")
        self.assertGreater(status["sync"]["last_pass_ms"], (time.time() - 60) * 1000)
        r = self.d.request("POST", "/monitor/api/v1/workspaces/site/sync")
        self.assertEqual(r.status, 401, r.text())

    def test_create_and_delete_through_the_api(self):
        """With S3 storage, POST /workspaces uploads the new workspace (source and manifest) and
        DELETE removes its objects after keeping a copy in DATA/trash."""
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        r = self.d.request("POST", "/monitor/api/v1/workspaces", headers=headers, timeout=60,
                           body=json.dumps({"name": "made", "template": "static"}))
        self.assertEqual(r.status, 201, r.text())
        self.assertEqual(r.json()["type"], "static")
        keys = self.s3.aws("s3", "ls", "--recursive", f"s3://{BUCKET}/{PREFIX}/").stdout
        self.assertIn(f"{PREFIX}/made/index.html", keys)
        self.assertIn(f"{PREFIX}/.cloudyknight/manifests/made.json", keys)
        # Served without waiting for the 60 s list interval: the upload ran a pass.
        wait_until(lambda: self.d.get("/made/").status == 200, 10, "the new workspace to be served")
        # A name the bucket has is refused, and nothing is uploaded twice.
        r = self.d.request("POST", "/monitor/api/v1/workspaces", headers=headers, timeout=60,
                           body=json.dumps({"name": "made"}))
        self.assertEqual(r.status, 409, r.text())
        self.assertEqual(r.json()["error"]["code"], "already_exists")

        r = self.d.request("DELETE", "/monitor/api/v1/workspaces/made", headers=headers, timeout=60)
        self.assertEqual(r.status, 200, r.text())
        doc = r.json()
        self.assertEqual(doc["deleted"], "made")
        self.assertTrue(os.path.isfile(os.path.join(doc["trash"], "index.html")), doc)
        keys = self.s3.aws("s3", "ls", "--recursive", f"s3://{BUCKET}/{PREFIX}/").stdout
        self.assertNotIn(f"{PREFIX}/made/", keys)
        self.assertNotIn("manifests/made.json", keys)
        wait_until(lambda: self.d.get("/made/").status == 404, 10, "the deleted workspace to be gone")
        self.assertEqual(self.d.request("DELETE", "/monitor/api/v1/workspaces/made", headers=headers).status, 404)

    def test_test_and_empty_payloads_are_accepted(self):
        for body in (b"", b"  \n", b"{}"):
            r = self.post(body)
            self.assertEqual(r.status, 202, (body, r.text()))
            self.assertEqual(r.json(), {"accepted": 0})
        # MinIO's short form without records.
        r = self.post(json.dumps({"EventName": "s3:ObjectCreated:Put", "Key": "bkt/ws/site/x"}).encode())
        self.assertEqual((r.status, r.json()), (202, {"accepted": 1}))
        # Several records at once.
        doc = json.loads(minio_event("ws/site/a b+c.html"))
        doc["Records"] *= 3
        r = self.post(json.dumps(doc).encode())
        self.assertEqual((r.status, r.json()), (202, {"accepted": 3}))

    def test_malformed_payloads_are_400(self):
        for body in (b"{not json", b"[1, 2]", b'"text"', b'{"Records": 5}', b"\xff\xfe"):
            r = self.post(body)
            self.assertEqual(r.status, 400, (body, r.text()))
            err = r.json()["error"]
            self.assertEqual(err["code"], "invalid_argument")
            self.assertTrue(err["message"])
        r = self.d.get(EVENTS)
        self.assertEqual(r.status, 405)
        self.assertEqual(r.header("Allow"), "POST")

    def test_a_body_over_1_mib_is_413(self):
        body = b'{"Records": [' + b" " * (1 << 20) + b"]}"
        r = self.post(body)
        self.assertEqual(r.status, 413, r.text()[:300])
        self.assertIn("error", r.json())
        r = self.post(b'{"Records": [' + b" " * ((1 << 20) - 20) + b"]}")  # just under: fine
        self.assertEqual((r.status, r.json()), (202, {"accepted": 0}))


class TestNotificationsWithDirStorage(DaemonTestCase):
    daemon_options = {"fixtures": ["static"]}

    def test_the_route_answers_409(self):
        from test_auth import admin_token
        r = self.daemon.request("POST", EVENTS, body=minio_event("ws/static/index.html"),
                                headers={"Authorization": f"Bearer {admin_token(self.daemon)}"})
        self.assertEqual(r.status, 409, r.text())
        err = r.json()["error"]
        self.assertIn("S3 storage", err["message"])


class InjectingProxy:
    """Forwards every request to s3rver unchanged, but adds `extra` keys to the bucket's
    ListObjectsV2 answers: keys with `..` that AWS S3 stores as written but s3rver cannot (it
    normalises them), so the daemon sees what a hostile bucket would list."""

    def __init__(self, upstream_port, bucket, extra):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                try:
                    conn.request(self.command, self.path, body=body, headers=headers)
                    r = conn.getresponse()
                    data = r.read()
                    status, rheaders = r.status, r.getheaders()
                except OSError:
                    status, rheaders, data = 502, [], b""
                finally:
                    conn.close()
                path, _, query = self.path.partition("?")
                if self.command == "GET" and path.rstrip("/") == f"/{bucket}" and "list-type=2" in query \
                        and status == 200:
                    data = proxy.inject(data)
                    proxy.listings += 1
                self.send_response(status)
                for k, v in rheaders:
                    if k.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self.extra = extra
        self.listings = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def inject(self, xml):
        items = "".join(
            f"<Contents><Key>{xml_escape(k)}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>"
            f"<ETag>&quot;{hashlib.md5(v).hexdigest()}&quot;</ETag><Size>{len(v)}</Size>"
            f"<StorageClass>STANDARD</StorageClass></Contents>" for k, v in self.extra.items())
        text = xml.decode("utf-8")
        at = text.rfind("</ListBucketResult>")
        return (text[:at] + items + text[at:]).encode("utf-8") if at >= 0 else xml

    @property
    def endpoint(self):
        return f"http://127.0.0.1:{self.port}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class TestKeysThatWouldEscape(S3Case):
    EVIL = {"ws/app/../../evil-escape.txt": b"EVIL-1", "ws/app/sub/../../../../evil-escape2.txt": b"EVIL-2",
            "ws/../evil-escape3.txt": b"EVIL-3", "ws/app//evil-escape4.txt": b"EVIL-4"}

    @classmethod
    def set_up(cls):
        s3 = cls.start_s3()
        put_text(s3, f"{PREFIX}/app/index.html", "<p>app</p>")
        # Should the daemon ever GET a `..` key, the server resolves it to these.
        for name in ("evil-escape.txt", "evil-escape2.txt", "evil-escape3.txt"):
            put_text(s3, name, "EVIL")
        cls.proxy = InjectingProxy(s3.port, BUCKET, cls.EVIL)
        lo, hi = free_service_port_range()
        cfg = deep_merge(BASE_CONFIG, {"runtime": {"ports": f"{lo}-{hi}"}, "storage": {"list_interval": "1s"}})
        cls.d = Daemon(workspaces=False, env=aws_env(s3), config=cfg,
                       args=["--storage", f"s3://{BUCKET}/{PREFIX}", "--s3-endpoint", cls.proxy.endpoint])
        cls.daemons.append(cls.d)
        cls.d.start()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            if getattr(cls, "proxy", None):
                cls.proxy.close()

    def test_nothing_is_written_outside_the_mirror(self):
        d = self.d
        self.assertGreaterEqual(self.proxy.listings, 1)
        r = d.get("/app/")
        self.assertEqual(r.status, 200, r.text()[:300])
        self.assertIn("<p>app</p>", r.text())
        wait_until(lambda: "refused the object 'ws/app/../../evil-escape.txt'" in d.stderr_text(), 10,
                   "the refusal to be logged")
        self.assertIn("refused the object 'ws/app/sub/../../../../evil-escape2.txt'", d.stderr_text())
        # A few more passes: nothing escapes on any of them.
        n = self.proxy.listings
        wait_until(lambda: self.proxy.listings >= n + 2, 10, "two more listings")
        # Where the keys would land if followed: inside the daemon's folder (data/, data/../) or
        # next to it.
        found = []
        for dirpath, _, filenames in os.walk(d.tmp):
            found += [os.path.join(dirpath, f) for f in filenames if f.startswith("evil-escape")]
        parent = os.path.dirname(d.tmp)
        found += [os.path.join(parent, f) for f in os.listdir(parent) if f.startswith("evil-escape")]
        self.assertEqual(found, [])
        self.assertEqual(sorted(w["name"] for w in d.workspaces()), ["app"])
        self.assertEqual(d.stderr_text().count("refused the object 'ws/app/../../evil-escape.txt'"), 1,
                         "refused once: the workspace is not pulled again while its objects stay the same")


class TestStorageErrors(unittest.TestCase):

    def test_a_bad_bucket_name_fails_fast(self):
        d = Daemon(workspaces=False, args=["--storage", "s3://Bad_Bucket/ws", "--s3-endpoint", "http://127.0.0.1:9"],
                   env={"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_CONFIG_FILE": "/dev/null",
                        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
        try:
            d.spawn()
            rc = d.proc.wait(15)
            self.assertEqual(rc, 1)
            err = d.stderr_text()
            self.assertIn("'Bad_Bucket' is not a valid S3 bucket name", err)
        finally:
            d.stop()
            d.cleanup()

    @unittest.skipUnless(HAVE_S3RVER, NO_S3RVER)
    def test_a_missing_bucket_is_a_clear_error_and_is_picked_up_once_created(self):
        s3 = S3Server().start()
        d = s3_daemon(s3, config={"storage": {"list_interval": "1s"}}, bucket="nosuch")
        try:
            d.start()
            err = d.stderr_text()
            self.assertIn("cannot list s3://nosuch/ws:", err)
            self.assertIn("create the bucket 'nosuch'", err)
            self.assertEqual(d.workspaces(), [])
            # Created later: served without a restart.
            s3.make_bucket("nosuch")
            s3.aws("s3", "sync", os.path.join(EXAMPLES, "site"), "s3://nosuch/ws/site")
            served_within(d, "/site/", "Hello from a static workspace", 15)
        except BaseException:
            import sys
            sys.stderr.write(d.diagnostics())
            raise
        finally:
            res = d.stop()
            d.cleanup()
            s3.stop()
        self.assertEqual(res.returncode, 0)


if __name__ == "__main__":
    unittest.main()
