"""The files API (issue 16, part 2): GET|PUT|DELETE /monitor/api/v1/workspaces/{name}/files/{path}
against a real daemon. Read, list, write and delete; the content ETag round trip, 412 on a
stale If-Match, If-None-Match: *; 413 past gateway.max_file_body; traversal payloads and
symlinks inside the workspace pointing outside (nothing outside is ever read, written or
deleted); the ownership matrix (owner, other member, admin, anonymous, read-only token,
another member's private workspace); the monitor sees a change as any file change; and on S3
storage the write goes through to the bucket and survives the next listing passes.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_files_api
"""

import hashlib
import json
import os
import unittest
import urllib.parse

from harness import CONTROL, ControlHostDaemon, EventStream, wait_until
from test_auth import PASSWORD, admin_token, call
from test_s3_serve import BUCKET, PREFIX, HAVE_S3RVER, NO_S3RVER, S3Case, put_text

API = "/monitor/api/v1"
LIMIT = 64 * 1024  # gateway.max_file_body in these tests


def etag_of(data):
    return '"' + hashlib.sha256(data).hexdigest() + '"'


class FilesApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = ControlHostDaemon(
            fixtures=["static", ("static", "other"), "echo"],
            config={"gateway": {"control_host": CONTROL, "max_file_body": "64k"}})
        d.prepare()
        try:
            d.start()
            cls.admin = admin_token(d)
            cls.sessions = {}
            for user, role in (("ann", "member"), ("ben", "member")):
                r = call(d, "POST", "/users", cls.admin, {"name": user, "password": PASSWORD, "role": role})
                assert r.status == 201, r.text()
                r = call(d, "POST", "/auth/login", body={"name": user, "password": PASSWORD})
                assert r.status == 200, r.text()
                cookie = r.header("Set-Cookie").split(";")[0].split("=", 1)[1]
                cls.sessions[user] = (cookie, r.json()["csrf"])
            for name, public in (("annpriv", False), ("annpub", True)):
                cookie, csrf = cls.sessions["ann"]
                r = call(d, "POST", "/workspaces", cookie=cookie, csrf=csrf,
                         body={"name": name, "template": "static", "public": public})
                assert r.status == 201, r.text()
                wait_until(lambda: call(d, "GET", f"/workspaces/{name}", token=cls.admin).status == 200,
                           30, f"{name} in the snapshot")
            # A read-only token bound to ann.
            cookie, csrf = cls.sessions["ann"]
            r = call(d, "POST", "/tokens", cookie=cookie, csrf=csrf, body={"name": "ro", "scopes": ["read"]})
            assert r.status == 201, r.text()
            cls.ann_read = r.json()["token"]
        except BaseException:
            print(d.diagnostics())
            d.stop()
            d.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        res = cls.d.stop()
        cls.d.cleanup()
        assert res.returncode == 0, res

    # who: None (anonymous), "admin" (the admin token), a user name (session + CSRF), or
    # ("token", T) for a bearer token.
    def f(self, method, ws, path, who="admin", body=None, headers=None, csrf=True):
        h = dict(headers or {})
        if who == "admin":
            h["Authorization"] = f"Bearer {self.admin}"
        elif isinstance(who, tuple):
            h["Authorization"] = f"Bearer {who[1]}"
        elif who is not None:
            cookie, token = self.sessions[who]
            h["Cookie"] = f"ck_session={cookie}"
            if csrf:
                h["X-CSRF-Token"] = token
        if isinstance(body, str):
            body = body.encode()
        return self.d.request(method, f"{API}/workspaces/{ws}/files/{path}", headers=h, body=body)

    def secret_path(self):
        return os.path.join(self.d.tmp, "secret.txt")

    def secret(self):
        with open(self.secret_path(), "rb") as fh:
            return fh.read()

    # ------------------------------------------------------------------ read, list, write, delete
    def test_read_list_write_delete(self):
        ws = os.path.join(self.d.ws, "static")
        r = self.f("GET", "static", "")
        self.assertEqual(r.status, 200, r.text())
        doc = r.json()
        self.assertEqual(doc["path"], "")
        names = [e["name"] for e in doc["entries"]]
        self.assertEqual(names, sorted(names))
        by = {e["name"]: e for e in doc["entries"]}
        self.assertEqual(by["index.html"]["type"], "file")
        self.assertEqual(by["escape"]["type"], "symlink")
        self.assertEqual(by["escape-dir"]["type"], "symlink")
        with open(os.path.join(ws, "index.html"), "rb") as fh:
            index = fh.read()
        self.assertEqual(by["index.html"]["size"], len(index))
        self.assertEqual(by["index.html"]["etag"], etag_of(index))
        self.assertIsInstance(by["index.html"]["mtime"], int)

        r = self.f("GET", "static", "index.html")
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, index)
        self.assertEqual(r.header("Content-Type"), "text/html; charset=utf-8")
        self.assertEqual(r.header("ETag"), etag_of(index))
        self.assertEqual(r.header("X-Content-Type-Options"), "nosniff")
        self.assertIn("sandbox", r.header("Content-Security-Policy", ""))
        r = self.f("GET", "static", "index.html", headers={"If-None-Match": etag_of(index)})
        self.assertEqual(r.status, 304)

        # A new file in new folders: 201 and the content's ETag; a replace: 200.
        data = b"first version\n"
        r = self.f("PUT", "static", "notes/2026/a.txt", body=data)
        self.assertEqual(r.status, 201, r.text())
        self.assertEqual(r.header("ETag"), etag_of(data))
        self.assertEqual(r.json()["etag"], etag_of(data))
        with open(os.path.join(ws, "notes", "2026", "a.txt"), "rb") as fh:
            self.assertEqual(fh.read(), data)
        r = self.f("PUT", "static", "notes/2026/a.txt", body=b"second\n")
        self.assertEqual(r.status, 200, r.text())
        r = self.f("GET", "static", "notes/2026/a.txt")
        self.assertEqual((r.body, r.header("ETag")), (b"second\n", etag_of(b"second\n")))
        self.assertEqual(r.header("Content-Type"), "text/plain; charset=utf-8")
        # A dotfile can be edited; no temporary file is left behind.
        self.assertEqual(self.f("PUT", "static", ".gitignore", body="dist/\n").status, 201)
        self.assertEqual([n for n in os.listdir(os.path.join(ws, "notes", "2026")) if n.startswith(".ck-")], [])
        r = self.f("GET", "static", "notes/")
        self.assertEqual([e["name"] for e in r.json()["entries"]], ["2026"])
        self.assertEqual(r.json()["entries"][0]["type"], "dir")

        # Deletes: a file, then its now empty folders; a missing file is 404; a full folder 409.
        self.assertEqual(self.f("DELETE", "static", "notes/2026").status, 409)
        self.assertEqual(self.f("DELETE", "static", "notes/2026/a.txt").status, 204)
        self.assertFalse(os.path.exists(os.path.join(ws, "notes", "2026", "a.txt")))
        self.assertEqual(self.f("DELETE", "static", "notes/2026/a.txt").status, 404)
        self.assertEqual(self.f("GET", "static", "notes/2026/a.txt").status, 404)
        self.assertEqual(self.f("DELETE", "static", "notes/2026").status, 204)
        self.assertEqual(self.f("DELETE", "static", "notes").status, 204)
        self.assertEqual(self.f("DELETE", "static", ".gitignore").status, 204)
        # Writing over a folder, or the root, is refused.
        self.assertEqual(self.f("PUT", "static", "css", body="x").status, 409)
        self.assertEqual(self.f("PUT", "static", "", body="x").status, 400)
        self.assertEqual(self.f("DELETE", "static", "").status, 400)
        self.assertEqual(self.f("GET", "static", "missing.txt").status, 404)

    def test_etag_preconditions(self):
        path = "cond.txt"
        v1 = b"v1\n"
        r = self.f("PUT", "static", path, body=v1, headers={"If-None-Match": "*"})
        self.assertEqual(r.status, 201, r.text())
        # Create-only refuses an existing file.
        r = self.f("PUT", "static", path, body=b"other\n", headers={"If-None-Match": "*"})
        self.assertEqual(r.status, 412, r.text())
        self.assertEqual(r.header("ETag"), etag_of(v1))
        # A writer holding v1's ETag wins once; the second writer with the same ETag gets 412
        # and the current ETag, and the file keeps the first write (no lost update).
        r = self.f("PUT", "static", path, body=b"v2 by A\n", headers={"If-Match": etag_of(v1)})
        self.assertEqual(r.status, 200, r.text())
        r = self.f("PUT", "static", path, body=b"v2 by B\n", headers={"If-Match": etag_of(v1)})
        self.assertEqual(r.status, 412, r.text())
        self.assertEqual(r.json()["error"]["code"], "precondition_failed")
        self.assertEqual(r.header("ETag"), etag_of(b"v2 by A\n"))
        self.assertEqual(self.f("GET", "static", path).body, b"v2 by A\n")
        # A weak validator never matches; "*" matches an existing file; If-Match on a missing one fails.
        self.assertEqual(self.f("PUT", "static", path, body=b"x", headers={"If-Match": "W/" + etag_of(b"v2 by A\n")}).status, 412)
        self.assertEqual(self.f("PUT", "static", "nope.txt", body=b"x", headers={"If-Match": "*"}).status, 412)
        self.assertFalse(os.path.exists(os.path.join(self.d.ws, "static", "nope.txt")))
        # Delete honours If-Match too.
        self.assertEqual(self.f("DELETE", "static", path, headers={"If-Match": etag_of(v1)}).status, 412)
        self.assertEqual(self.f("DELETE", "static", path, headers={"If-Match": etag_of(b"v2 by A\n")}).status, 204)

    def test_size_limit(self):
        r = self.f("PUT", "static", "big.bin", body=b"x" * (LIMIT + 1))
        self.assertEqual(r.status, 413, r.text()[:300])
        self.assertIn("gateway.max_file_body", r.json()["error"]["message"])
        self.assertFalse(os.path.exists(os.path.join(self.d.ws, "static", "big.bin")))
        # The same past the limit in chunks (no Content-Length to refuse it early).
        chunk = b"z" * 16384
        body = b"".join(b"%x\r\n" % len(chunk) + chunk + b"\r\n" for _ in range(LIMIT // len(chunk) + 1)) + b"0\r\n\r\n"
        data = (f"PUT {API}/workspaces/static/files/chunked.bin HTTP/1.1\r\nHost: {CONTROL}:{self.d.port}\r\n"
                f"Authorization: Bearer {self.admin}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").encode() + body
        r = self.d.raw(data, method="PUT")
        self.assertEqual(r.status, 413, r.body[:300])
        self.assertIn("gateway.max_file_body", r.json()["error"]["message"])
        self.assertFalse(os.path.exists(os.path.join(self.d.ws, "static", "chunked.bin")))
        # Bigger than the control plane's usual 2 MiB is fine when the key allows it: see the
        # S3 class (default 10 MiB). Exactly the limit here is accepted.
        r = self.f("PUT", "static", "big.bin", body=b"x" * LIMIT)
        self.assertEqual(r.status, 201, r.text()[:300])
        self.assertEqual(self.f("DELETE", "static", "big.bin").status, 204)
        # A file bigger than the limit (written outside the API) is not read whole either.
        with open(os.path.join(self.d.ws, "static", "huge.bin"), "wb") as fh:
            fh.write(b"y" * (LIMIT + 10))
        try:
            r = self.f("GET", "static", "huge.bin")
            self.assertEqual(r.status, 413)
            self.assertIn("gateway.max_file_body", r.json()["error"]["message"])
        finally:
            os.remove(os.path.join(self.d.ws, "static", "huge.bin"))

    # ------------------------------------------------------------------------------- attacks
    def test_traversal_payloads_are_refused(self):
        before = self.secret()
        payloads = ["../secret.txt", "%2e%2e/secret.txt", "a/%2e%2e/%2e%2e/%2e%2e/secret.txt",
                    "..%2fsecret.txt", "%2e%2e%2f%2e%2e%2fsecret.txt", "%2Fetc%2Fpasswd", "/etc/passwd",
                    "a%00b", "..%5c..%5csecret.txt", "%ZZ"]
        for p in payloads:
            for method in ("GET", "PUT", "DELETE"):
                r = self.f(method, "static", p, body=b"pwned" if method == "PUT" else None)
                self.assertIn(r.status, (400, 404), f"{method} {p}: {r.status} {r.text()[:200]}")
                self.assertNotIn(b"SECRET", r.body.upper().replace(b"SECRET.TXT", b""), f"{method} {p}")
        self.assertEqual(self.secret(), before)
        self.assertFalse(os.path.exists("/etc/passwd.tmp"))
        # The lexical refusals are the API's own 400s, not a route miss.
        for p in ("../secret.txt", "%2e%2e/secret.txt", "%2Fetc%2Fpasswd", "a%00b"):
            r = self.f("GET", "static", p)
            self.assertEqual(r.status, 400, f"{p}: {r.text()}")
            self.assertEqual(r.json()["error"]["code"], "invalid_argument")

    def test_symlinks_are_never_followed(self):
        before = self.secret()
        with open("/etc/passwd", "rb") as fh:
            passwd = fh.read()
        # GET: a link to a file outside, a link to a folder outside, and through it.
        for p in ("secret-link.txt", "escape", "escape-dir", "escape-dir/", "escape-dir/passwd"):
            r = self.f("GET", "static", p)
            self.assertEqual(r.status, 403, f"GET {p}: {r.text()[:200]}")
            self.assertNotIn(b"root:", r.body)
        # PUT over a link, and into a linked folder: refused, nothing written outside.
        r = self.f("PUT", "static", "secret-link.txt", body=b"pwned")
        self.assertEqual(r.status, 403, r.text())
        self.assertIn("symlink", r.json()["error"]["message"])
        self.assertEqual(self.f("PUT", "static", "escape-dir/ck-files-api-test.txt", body=b"pwned").status, 403)
        self.assertFalse(os.path.exists("/etc/ck-files-api-test.txt"))
        # DELETE of a link or through a linked folder: refused, the link and its target stay.
        self.assertEqual(self.f("DELETE", "static", "secret-link.txt").status, 403)
        self.assertEqual(self.f("DELETE", "static", "escape-dir/passwd").status, 403)
        self.assertTrue(os.path.islink(os.path.join(self.d.ws, "static", "secret-link.txt")))
        self.assertEqual(self.secret(), before)
        with open("/etc/passwd", "rb") as fh:
            self.assertEqual(fh.read(), passwd)
        # A folder swapped for a symlink to the outside is refused for writes below it too.
        ws = os.path.join(self.d.ws, "other")
        os.symlink(self.d.tmp, os.path.join(ws, "swapped"))
        try:
            self.assertEqual(self.f("PUT", "other", "swapped/secret.txt", body=b"pwned").status, 403)
            self.assertEqual(self.f("GET", "other", "swapped/secret.txt").status, 403)
            self.assertEqual(self.f("DELETE", "other", "swapped/secret.txt").status, 403)
            self.assertEqual(self.secret(), before)
        finally:
            os.remove(os.path.join(ws, "swapped"))

    # ------------------------------------------------------------------------------ ownership
    def test_ownership_matrix(self):
        # (caller, workspace, expected GET, expected PUT)
        ro = ("token", self.ann_read)
        matrix = [
            (None, "static", 401, 401),
            (None, "annpriv", 401, 401),
            ("ann", "annpriv", 200, 201),
            ("ann", "annpub", 200, 201),
            ("ben", "annpriv", 404, 404),   # private to ann: invisible to ben
            ("ben", "annpub", 200, 201),    # public: members see and act on it (issue 13 rules)
            ("admin", "annpriv", 200, 201),
            (ro, "annpriv", 200, 403),      # a read-only token reads but does not write
        ]
        for who, ws, want_get, want_put in matrix:
            label = who if not isinstance(who, tuple) else "ann's read token"
            r = self.f("GET", ws, "index.html", who=who)
            self.assertEqual(r.status, want_get, f"GET {ws} as {label}: {r.text()[:200]}")
            r = self.f("PUT", ws, f"by-{label}.txt".replace(" ", "-").replace("'", ""), who=who, body=b"x")
            self.assertEqual(r.status, want_put, f"PUT {ws} as {label}: {r.text()[:200]}")
            r = self.f("DELETE", ws, "missing.txt", who=who)
            want_del = {401: 401, 404: 404, 403: 403}.get(want_put, 404)
            self.assertEqual(r.status, want_del, f"DELETE {ws} as {label}: {r.text()[:200]}")
        # Anonymous answers carry WWW-Authenticate; the 404 for ben looks like no workspace at all.
        self.assertEqual(self.f("GET", "static", "", who=None).header("WWW-Authenticate"), "Bearer")
        a = self.f("GET", "annpriv", "", who="ben").json()["error"]["message"]
        b = self.f("GET", "nosuchws", "", who="ben").json()["error"]["message"]
        self.assertEqual(a.replace("annpriv", "X"), b.replace("nosuchws", "X"))
        # A session's write without the CSRF token is refused.
        r = self.f("PUT", "annpriv", "nocsrf.txt", who="ann", body=b"x", csrf=False)
        self.assertEqual(r.status, 403, r.text())
        self.assertFalse(os.path.exists(os.path.join(self.d.ws, "annpriv", "nocsrf.txt")))

    def test_the_monitor_sees_an_api_write_like_any_file_change(self):
        # The same path as an editor's save: inotify on the folder, then a restart of the app.
        before = self.d.wait_status("echo", "running", timeout=60)
        with open(os.path.join(self.d.ws, "echo", "app.py"), "rb") as fh:
            source = fh.read()
        events = EventStream(self.d.port, host=f"{CONTROL}:{self.d.port}")
        try:
            since = events.mark()
            r = self.f("PUT", "echo", "app.py", body=source + b"\n# edited through the files API\n",
                       headers={"If-Match": etag_of(source)})
            self.assertEqual(r.status, 200, r.text())
            _, files = events.wait_for(lambda e: e.get("type") == "files" and e.get("workspace") == "echo",
                                       10, since, "a files event of echo")
            self.assertIn("app.py", files["paths"], files)
            after = self.d.wait_workspace("echo", lambda w: w.get("status") == "running"
                                          and w.get("pid") != before.get("pid"), 30,
                                          "echo restarted with the new app.py")
            self.assertNotEqual(after["pid"], before["pid"])
        finally:
            events.close()

    def test_writes_are_audited(self):
        self.assertEqual(self.f("PUT", "other", "audited.txt", body=b"a").status, 201)
        r = call(self.d, "GET", "/audit?limit=20", self.admin)
        actions = [(e["action"], e["target"], e["detail"].get("path")) for e in r.json()["entries"]]
        self.assertIn(("workspace.file.write", "other", "audited.txt"), actions)
        self.assertEqual(self.f("DELETE", "other", "audited.txt").status, 204)


@unittest.skipUnless(HAVE_S3RVER, NO_S3RVER)
class FilesApiOnS3Test(S3Case):
    """S3 storage: a PUT or DELETE reaches the bucket before the mirror, so the next listing
    passes (every second here) keep the change instead of undoing it."""

    @classmethod
    def set_up(cls):
        s3 = cls.start_s3()
        put_text(s3, f"{PREFIX}/site/index.html", "<h1>from the bucket</h1>\n")
        put_text(s3, f"{PREFIX}/site/old.txt", "old\n")
        cls.d = cls.new_daemon(config={"storage": {"list_interval": "1s"}})
        cls.d.start()
        cls.token = admin_token(cls.d)
        wait_until(lambda: cls.d.get("/site/").status == 200, 30, "site served from the mirror")

    def f(self, method, path, body=None, headers=None):
        h = dict(headers or {}, Authorization=f"Bearer {self.token}")
        return self.d.request(method, f"{API}/workspaces/site/files/{path}", headers=h, body=body)

    def bucket_object(self, key):
        r = self.s3.aws("s3", "cp", f"s3://{BUCKET}/{PREFIX}/site/{key}", "-", check=False)
        return r.stdout if r.returncode == 0 else None

    def test_write_and_delete_go_through_to_the_bucket(self):
        data = "<h1>edited through the API</h1>\n"
        r = self.f("PUT", "index.html", data.encode())
        self.assertEqual(r.status, 200, r.text())
        self.assertEqual(r.header("ETag"), etag_of(data.encode()))
        self.assertEqual(self.bucket_object("index.html"), data)
        r = self.f("PUT", "pages/new.html", b"<p>new</p>\n", headers={"If-None-Match": "*"})
        self.assertEqual(r.status, 201, r.text())
        self.assertEqual(self.bucket_object("pages/new.html"), "<p>new</p>\n")
        self.assertEqual(self.f("DELETE", "old.txt").status, 204)
        self.assertIsNone(self.bucket_object("old.txt"))
        # Three listing passes later the mirror still has the API's version (not undone).
        mirror = os.path.join(self.d.data, "mirror", "site")
        passes = self.d.api("/workspaces/site/status")[1]["sync"]["last_pass_ms"]
        wait_until(lambda: self.d.api("/workspaces/site/status")[1]["sync"]["last_pass_ms"] > passes + 2500,
                   30, "three more listing passes")
        with open(os.path.join(mirror, "index.html")) as fh:
            self.assertEqual(fh.read(), data)
        self.assertFalse(os.path.exists(os.path.join(mirror, "old.txt")))
        self.assertEqual(self.f("GET", "pages/new.html").body, b"<p>new</p>\n")
        r = self.d.get("/site/")
        self.assertIn("edited through the API", r.text())
        # The default gateway.max_file_body (10 MiB) takes more than the control plane's usual
        # 2 MiB body.
        big = "0123456789abcdef" * (3 * 1024 * 1024 // 16)
        r = self.f("PUT", "big.txt", big.encode())
        self.assertEqual(r.status, 201, r.text()[:300])
        self.assertEqual(self.bucket_object("big.txt"), big)
        # Refused on its Content-Length, before the body is read.
        head = (f"PUT {API}/workspaces/site/files/too-big.txt HTTP/1.1\r\nHost: 127.0.0.1:{self.d.port}\r\n"
                f"Authorization: Bearer {self.token}\r\nContent-Length: {10 * 1024 * 1024 + 1}\r\n\r\n")
        r = self.d.raw(head.encode(), method="PUT")
        self.assertEqual(r.status, 413, r.body[:300])
        self.assertIn("gateway.max_file_body", r.json()["error"]["message"])
        self.assertIsNone(self.bucket_object("too-big.txt"))
        # A stale If-Match changes neither the bucket nor the mirror.
        r = self.f("PUT", "index.html", b"lost update\n", headers={"If-Match": etag_of(b"whatever")})
        self.assertEqual(r.status, 412, r.text())
        self.assertEqual(self.bucket_object("index.html"), data)


if __name__ == "__main__":
    unittest.main()
