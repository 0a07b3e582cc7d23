"""Static workspaces served by the gateway itself: Content-Type, ETag/Last-Modified
revalidation, Range, directory indexes, gzip.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_static
"""

import gzip
import os
import re
import unittest
from urllib.parse import urlsplit

from harness import FIXTURES, DaemonTestCase, wait_until

STATIC = os.path.join(FIXTURES, "static")


def fixture_bytes(rel):
    with open(os.path.join(STATIC, rel), "rb") as f:
        return f.read()


class TestStatic(DaemonTestCase):
    daemon_options = dict(fixtures=["static"])

    @classmethod
    def daemon_ready(cls):
        wait_until(lambda: cls.daemon.get("/static/").status == 200, 30, "static to be served")

    def ctype(self, r):
        return (r.header("Content-Type") or "").split(";")[0].strip().lower()

    # -- content types --------------------------------------------------------------
    def test_content_types_by_extension(self):
        cases = {
            "/static/": ("text/html",),
            "/static/index.html": ("text/html",),
            "/static/css/style.css": ("text/css",),
            "/static/js/app.js": ("application/javascript", "text/javascript"),
            "/static/data.json": ("application/json",),
            "/static/img/logo.png": ("image/png",),
            "/static/big.txt": ("text/plain",),
        }
        for path, types in cases.items():
            with self.subTest(path=path):
                r = self.get(path)
                self.assertStatus(r, 200)
                self.assertIn(self.ctype(r), types)

    def test_bodies_are_the_files(self):
        for rel in ("index.html", "css/style.css", "img/logo.png", "big.txt", "data.json"):
            with self.subTest(file=rel):
                r = self.get("/static/" + rel)
                self.assertStatus(r, 200)
                self.assertEqual(r.body, fixture_bytes(rel))
                self.assertIsNone(r.header("Content-Encoding"))

    def test_percent_encoded_name(self):
        r = self.get("/static/hello%20world.txt")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, fixture_bytes("hello world.txt"))

    def test_missing_file_is_404(self):
        r = self.get("/static/no-such-file.txt")
        self.assertStatus(r, 404)

    def test_head(self):
        r = self.daemon.request("HEAD", "/static/big.txt")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, b"")
        self.assertEqual(int(r.header("Content-Length")), len(fixture_bytes("big.txt")))

    # -- directories ------------------------------------------------------------------
    def test_dir_with_slash_serves_its_index(self):
        r = self.get("/static/sub/")
        self.assertStatus(r, 200)
        self.assertEqual(r.body, fixture_bytes("sub/index.html"))
        self.assertEqual(self.ctype(r), "text/html")

    def test_dir_without_slash_redirects(self):
        r = self.get("/static/sub")
        self.assertStatus(r, 301)
        self.assertEqual(urlsplit(r.header("Location", "")).path, "/static/sub/")

    def test_nested_file(self):
        r = self.get("/static/sub/deeper/page.html")
        self.assertStatus(r, 200)
        self.assertIn(b"STATIC-DEEPER-MARKER", r.body)

    def test_relative_links_resolve(self):
        # index.html refers to css/style.css, js/app.js, img/logo.png, sub/ relatively.
        page = self.get("/static/").text()
        links = re.findall(r'(?:href|src)="([^"]+)"', page)
        self.assertGreaterEqual(len(links), 4, links)
        for link in links:
            with self.subTest(link=link):
                self.assertStatus(self.get("/static/" + link), 200)

    # -- ETag / Last-Modified -------------------------------------------------------------
    def test_etag_revalidation(self):
        r = self.get("/static/css/style.css")
        etag = r.header("ETag")
        self.assertTrue(etag, "no ETag header")
        r2 = self.get("/static/css/style.css", headers={"If-None-Match": etag})
        self.assertStatus(r2, 304)
        self.assertEqual(r2.body, b"")
        r3 = self.get("/static/css/style.css", headers={"If-None-Match": '"some-other-etag"'})
        self.assertStatus(r3, 200)
        self.assertEqual(r3.body, fixture_bytes("css/style.css"))
        r4 = self.get("/static/css/style.css", headers={"If-None-Match": f'"x", {etag}'})
        self.assertStatus(r4, 304)

    def test_etag_differs_between_files(self):
        a = self.get("/static/css/style.css").header("ETag")
        b = self.get("/static/js/app.js").header("ETag")
        self.assertTrue(a and b)
        self.assertNotEqual(a, b)

    def test_last_modified_revalidation(self):
        r = self.get("/static/js/app.js")
        lm = r.header("Last-Modified")
        self.assertTrue(lm, "no Last-Modified header")
        self.assertRegex(lm, r"^\w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} GMT$")
        r2 = self.get("/static/js/app.js", headers={"If-Modified-Since": lm})
        self.assertStatus(r2, 304)
        self.assertEqual(r2.body, b"")
        r3 = self.get("/static/js/app.js",
                      headers={"If-Modified-Since": "Mon, 01 Jan 1990 00:00:00 GMT"})
        self.assertStatus(r3, 200)
        self.assertEqual(r3.body, fixture_bytes("js/app.js"))

    # -- Range -------------------------------------------------------------------------
    def test_range_first_bytes(self):
        data = fixture_bytes("big.txt")
        r = self.get("/static/big.txt", headers={"Range": "bytes=0-99"})
        self.assertStatus(r, 206)
        self.assertEqual(r.body, data[0:100])
        self.assertEqual(r.header("Content-Range"), f"bytes 0-99/{len(data)}")

    def test_range_middle(self):
        data = fixture_bytes("big.txt")
        r = self.get("/static/big.txt", headers={"Range": "bytes=1000-1999"})
        self.assertStatus(r, 206)
        self.assertEqual(r.body, data[1000:2000])
        self.assertEqual(r.header("Content-Range"), f"bytes 1000-1999/{len(data)}")

    def test_range_open_ended(self):
        data = fixture_bytes("big.txt")
        start = len(data) - 5000
        r = self.get("/static/big.txt", headers={"Range": f"bytes={start}-"})
        self.assertStatus(r, 206)
        self.assertEqual(r.body, data[start:])
        self.assertEqual(r.header("Content-Range"), f"bytes {start}-{len(data) - 1}/{len(data)}")

    def test_range_suffix(self):
        data = fixture_bytes("big.txt")
        r = self.get("/static/big.txt", headers={"Range": "bytes=-500"})
        self.assertStatus(r, 206)
        self.assertEqual(r.body, data[-500:])
        self.assertEqual(r.header("Content-Range"),
                         f"bytes {len(data) - 500}-{len(data) - 1}/{len(data)}")

    def test_range_on_binary_file(self):
        data = fixture_bytes("img/logo.png")
        r = self.get("/static/img/logo.png", headers={"Range": "bytes=0-7"})
        self.assertStatus(r, 206)
        self.assertEqual(r.body, b"\x89PNG\r\n\x1a\n")
        self.assertEqual(r.header("Content-Range"), f"bytes 0-7/{len(data)}")

    def test_range_unsatisfiable(self):
        size = len(fixture_bytes("big.txt"))
        for spec in (f"bytes={size}-", f"bytes={size + 100}-{size + 200}"):
            with self.subTest(range=spec):
                r = self.get("/static/big.txt", headers={"Range": spec})
                self.assertStatus(r, 416)
                self.assertNotIn(b"quick brown fox", r.body)

    # -- compression -----------------------------------------------------------------
    def test_gzip_for_text_when_accepted(self):
        data = fixture_bytes("big.txt")
        r = self.get("/static/big.txt", headers={"Accept-Encoding": "gzip, deflate"})
        self.assertStatus(r, 200)
        self.assertEqual(r.header("Content-Encoding"), "gzip")
        self.assertIn("accept-encoding", (r.header("Vary") or "").lower())
        self.assertLess(len(r.body), len(data) // 2)
        self.assertEqual(gzip.decompress(r.body), data)

    def test_gzip_for_css_and_html(self):
        for rel in ("css/style.css", "index.html"):
            with self.subTest(file=rel):
                r = self.get("/static/" + rel, headers={"Accept-Encoding": "gzip"})
                self.assertStatus(r, 200)
                self.assertEqual(r.header("Content-Encoding"), "gzip")
                self.assertIn("accept-encoding", (r.header("Vary") or "").lower())
                self.assertEqual(gzip.decompress(r.body), fixture_bytes(rel))

    def test_no_gzip_when_not_accepted(self):
        for ae in ("identity", "br", "gzip;q=0"):
            with self.subTest(accept_encoding=ae):
                r = self.get("/static/big.txt", headers={"Accept-Encoding": ae})
                self.assertStatus(r, 200)
                self.assertIsNone(r.header("Content-Encoding"))
                self.assertEqual(r.body, fixture_bytes("big.txt"))

    def test_no_gzip_for_images(self):
        r = self.get("/static/img/logo.png", headers={"Accept-Encoding": "gzip"})
        self.assertStatus(r, 200)
        self.assertIn(r.header("Content-Encoding"), (None, "identity"))
        self.assertEqual(r.body, fixture_bytes("img/logo.png"))


if __name__ == "__main__":
    unittest.main()
