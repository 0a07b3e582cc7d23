"""The static file server's fast path (gateway/serve_static.cc): files changed on disk are
served fresh at once (also when a small file sits in the worker's cache and is rewritten with
its mtime set back), large files go out byte-exact (sendfile on plain TCP, chunked reads over
TLS), Range and HEAD on both, one keep-alive connection carrying every kind of answer, and the
answers for symlinks and special files unchanged (the full checks still decide them).
Run once over plain HTTP and once over TLS.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_static_files
"""

import http.client
import os
import time
import unittest

from harness import DaemonTestCase, Response, wait_until
from tlsutil import ResolvedHTTPS, TestCA, TlsDaemon

# Older than this, a small file may be answered from the worker's cache
# (StaticFileCache::cacheable: its ctime at least 2 s in the past).
CACHE_AGE = 2.3


class StaticFilesChecks:
    """The checks, for a class that provides `daemon` and `connection()`."""

    def site(self, *parts):
        return os.path.join(self.daemon.ws, "static", *parts)

    def write(self, rel, data):
        path = self.site(rel)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def fetch(self, path, headers=None, method="GET"):
        conn = self.connection()
        try:
            conn.request(method, path, headers=headers or {})
            r = conn.getresponse()
            return Response(r.status, r.reason, r.msg, r.read())
        finally:
            conn.close()

    def test_file_rewritten_is_served_fresh_at_once(self):
        for i, ch in enumerate(b"ABCD"):
            data = bytes([ch]) * 5000  # same size every time, rewritten within a timestamp tick
            self.write("fresh.txt", data)
            r = self.fetch("/static/fresh.txt")
            self.assertStatus(r, 200, f"version {i}")
            self.assertEqual(r.body, data, f"version {i} served stale")

    def test_cached_file_rewritten_with_its_mtime_set_back(self):
        path = self.write("cached.css", b"x" * 3000)
        st = os.stat(path)
        time.sleep(CACHE_AGE)
        first = self.fetch("/static/cached.css")
        self.assertStatus(first, 200)
        self.assertEqual(first.body, b"x" * 3000)
        again = self.fetch("/static/cached.css")  # from the cache now
        self.assertEqual(again.body, b"x" * 3000)
        self.assertEqual(again.header("ETag"), first.header("ETag"))
        r = self.fetch("/static/cached.css", headers={"Range": "bytes=10-19"})
        self.assertStatus(r, 206)
        self.assertEqual(r.body, b"x" * 10)
        self.assertEqual(r.header("Content-Range"), "bytes 10-19/3000")
        r = self.fetch("/static/cached.css", method="HEAD")
        self.assertStatus(r, 200)
        self.assertEqual(r.header("Content-Length"), "3000")
        self.assertEqual(r.body, b"")

        # Same size, same mtime (set back), new bytes: only the ctime tells, and it must.
        with open(path, "r+b") as f:
            f.write(b"y" * 3000)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        r = self.fetch("/static/cached.css")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"y" * 3000, "the cached bytes of the old version were served")
        self.assertEqual(r.header("ETag"), first.header("ETag"))  # size+mtime: same validator
        r = self.fetch("/static/cached.css", headers={"Range": "bytes=-5"})
        self.assertStatus(r, 206)
        self.assertEqual(r.body, b"y" * 5)

    def test_cached_file_past_the_writev_size_is_byte_exact(self):
        # Cached (aged past CACHE_AGE), but 64 KiB: on plain HTTP its body goes with sendfile,
        # not from the cache, over one keep-alive connection as over new ones.
        data = os.urandom(64 * 1024)
        path = self.write("mid.js", data)
        st = os.stat(path)
        time.sleep(CACHE_AGE)
        conn = self.connection()
        try:
            for i in range(3):
                conn.request("GET", "/static/mid.js")
                r = conn.getresponse()
                body = r.read()
                self.assertEqual(r.status, 200, f"request {i}")
                self.assertEqual(r.getheader("Content-Length"), str(len(data)))
                self.assertTrue(body == data, f"request {i}: the body differs from the file")
        finally:
            conn.close()
        # Same size, same mtime, new bytes: served as they are now.
        fresh = os.urandom(64 * 1024)
        with open(path, "r+b") as f:
            f.write(fresh)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        r = self.fetch("/static/mid.js")
        self.assertStatus(r, 200)
        self.assertTrue(r.body == fresh, "the old version was served")
        r = self.fetch("/static/mid.js", headers={"Range": "bytes=65000-"})
        self.assertStatus(r, 206)
        self.assertEqual(r.body, fresh[65000:])

    def test_large_file_is_byte_exact(self):
        data = os.urandom(3 * 1024 * 1024 + 123)  # past the cache and in-memory limits
        self.write("large.bin", data)
        r = self.fetch("/static/large.bin")
        self.assertStatus(r, 200)
        self.assertEqual(r.header("Content-Length"), str(len(data)))
        self.assertEqual(len(r.body), len(data))
        self.assertTrue(r.body == data, "the body differs from the file")
        etag = r.header("ETag")
        r = self.fetch("/static/large.bin", headers={"Range": "bytes=1000000-1999999"})
        self.assertStatus(r, 206)
        self.assertEqual(r.header("Content-Range"), f"bytes 1000000-1999999/{len(data)}")
        self.assertTrue(r.body == data[1000000:2000000], "the range differs from the file")
        r = self.fetch("/static/large.bin", headers={"Range": "bytes=-100"})
        self.assertStatus(r, 206)
        self.assertEqual(r.body, data[-100:])
        r = self.fetch("/static/large.bin", headers={"Range": f"bytes={len(data)}-"})
        self.assertStatus(r, 416)
        self.assertEqual(r.header("Content-Range"), f"bytes */{len(data)}")
        r = self.fetch("/static/large.bin", method="HEAD")
        self.assertStatus(r, 200)
        self.assertEqual(r.header("Content-Length"), str(len(data)))
        self.assertEqual(r.body, b"")
        r = self.fetch("/static/large.bin", headers={"If-None-Match": etag})
        self.assertStatus(r, 304)
        self.assertEqual(r.body, b"")

    def test_one_connection_carries_every_kind_of_answer(self):
        large = os.urandom(700 * 1024)
        self.write("ka-large.bin", large)
        small = b"small body\n" * 100
        self.write("ka-small.txt", small)
        with open(self.site("index.html"), "rb") as f:
            index = f.read()
        conn = self.connection()
        try:
            conn.request("GET", "/static/ka-large.bin")
            sock = None
            steps = [
                ("GET", "/static/ka-large.bin", {}, 200, large),
                ("HEAD", "/static/ka-large.bin", {}, 200, b""),
                ("GET", "/static/ka-small.txt", {}, 200, small),
                ("GET", "/static/ka-small.txt", {"Range": "bytes=0-4"}, 206, small[:5]),
                ("GET", "/static/ka-large.bin", {"Range": "bytes=100-199"}, 206, large[100:200]),
                ("GET", "/static/", {}, 200, index),
                ("GET", "/static/missing.txt", {}, 404, None),
                ("GET", "/static/sub", {}, 301, None),
                ("GET", "/static/ka-small.txt", {"Accept-Encoding": "gzip"}, 200, None),
                ("GET", "/static/ka-large.bin", {}, 200, large),
            ]
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            self.assertTrue(r.read() == large)
            sock = conn.sock
            for method, path, headers, status, body in steps:
                with self.subTest(method=method, path=path, headers=headers):
                    conn.request(method, path, headers=headers)
                    r = conn.getresponse()
                    got = r.read()
                    self.assertEqual(r.status, status)
                    if body is not None:
                        self.assertTrue(got == body, f"{len(got)} bytes, expected {len(body)}")
                    if "Etag" in r.msg and status == 200:
                        conn.request("GET", path, headers={"If-None-Match": r.msg["ETag"]})
                        r2 = conn.getresponse()
                        self.assertEqual(r2.read(), b"")
                        self.assertEqual(r2.status, 304)
            self.assertIs(conn.sock, sock, "the connection was not kept alive")
        finally:
            conn.close()

    def test_symlinks_and_special_files_keep_their_answers(self):
        # A symlink resolving inside the workspace is followed (resolve_static's full
        # checks), as it always was; one leaving it is refused.
        for name, target in (("inner-link.html", "index.html"), ("css-link", "css")):
            if not os.path.lexists(self.site(name)):
                os.symlink(target, self.site(name))
        with open(self.site("index.html"), "rb") as f:
            index = f.read()
        with open(self.site("css", "style.css"), "rb") as f:
            style = f.read()
        r = self.fetch("/static/inner-link.html")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, index)
        r = self.fetch("/static/css-link/style.css")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, style)
        if not os.path.lexists(self.site("escape-link.txt")):
            os.symlink("/etc/passwd", self.site("escape-link.txt"))
        self.assertStatus(self.fetch("/static/escape-link.txt"), 403)
        # A FIFO is refused at once: opening it must not wait for a writer.
        if not os.path.exists(self.site("pipe.txt")):
            os.mkfifo(self.site("pipe.txt"))
        started = time.monotonic()
        self.assertStatus(self.fetch("/static/pipe.txt"), 403)
        self.assertLess(time.monotonic() - started, 5)
        # Hidden files and encoded dots are still refused before any file is opened.
        self.write(".secret.txt", b"hidden")
        self.assertStatus(self.fetch("/static/.secret.txt"), 404)
        self.assertStatus(self.fetch("/static/%2e%2e/%2e%2e/etc/passwd"), 400)
        # ...and the gateway still serves.
        self.assertStatus(self.fetch("/static/index.html"), 200)


class TestStaticFilesPlain(StaticFilesChecks, DaemonTestCase):
    daemon_options = dict(fixtures=["static"])

    @classmethod
    def daemon_ready(cls):
        wait_until(lambda: cls.daemon.get("/static/").status == 200, 30, "static to be served")

    def connection(self):
        return http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=15)


class TestStaticFilesTls(StaticFilesChecks, DaemonTestCase):
    @classmethod
    def setUpClass(cls):
        cls.ca = TestCA()
        try:
            cert, key, _ = cls.ca.issue("site", "example.test", ["example.test"])
            cls.daemon = TlsDaemon(cls.ca, fixtures=["static"],
                                   config={"gateway": {"tls": {"cert": cert, "key": key}}})
            cls.daemon.start()
            wait_until(lambda: cls.daemon.get("/static/").status == 200, 30, "static to be served")
        except BaseException:
            d = getattr(cls, "daemon", None)
            if d is not None:
                print(d.diagnostics() if d.tmp else "")
                d.stop()
                d.cleanup()
            cls.ca.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.ca.cleanup()

    def connection(self):
        return ResolvedHTTPS("example.test", self.daemon.port, timeout=15, context=self.ca.context())


if __name__ == "__main__":
    unittest.main()
