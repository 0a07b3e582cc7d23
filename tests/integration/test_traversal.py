"""Path traversal is refused and never returns file content.

Every request-target goes out byte for byte on a raw socket (no client-side
normalisation). The harness puts TMP/secret.txt next to the workspaces folder and
creates symlinks in the static fixture: escape -> /etc/passwd, escape-dir -> /etc,
secret-link.txt -> ../../secret.txt.

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_traversal
"""

import unittest

from harness import SECRET_MARKER, DaemonTestCase, wait_until

REFUSED = (400, 403, 404)
FORBIDDEN_CONTENT = (SECRET_MARKER.encode(), b"root:x:0:0", b"root:*:0:0", b"STATIC-INDEX-MARKER",
                     b"WWW-HOME-MARKER")

# request-target -> the status the contract names (400 for traversal, 403 for a
# symlink that resolves outside the workspace).
TRAVERSALS = {
    b"/static/../secret.txt": 400,
    b"/static/../../secret.txt": 400,
    b"/static/sub/../../../secret.txt": 400,
    b"/static/../../../../../../../../etc/passwd": 400,
    b"/static/%2e%2e/%2e%2e/secret.txt": 400,
    b"/static/%2E%2E/%2E%2E/secret.txt": 400,
    b"/static/.%2e/.%2e/secret.txt": 400,
    b"/static/%2e./%2e./secret.txt": 400,
    b"/static/..%2f..%2fsecret.txt": 400,
    b"/static/..%2F..%2Fsecret.txt": 400,
    b"/static/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd": 400,
    b"/static/..\\..\\secret.txt": 400,
    b"/static/sub\\..\\..\\..\\secret.txt": 400,
    b"/static/%5c..%5c..%5csecret.txt": 400,
    b"/static/..%5c..%5csecret.txt": 400,
    b"/static/..%5C..%5Csecret.txt": 400,
    b"/static/%2e%2e%5c%2e%2e%5csecret.txt": 400,
    b"/static/index.html%00": 400,
    b"/static/index.html%00.txt": 400,
    b"/static/%00/../../secret.txt": 400,
    b"/static/index.html\x00.txt": 400,
    b"/..%2fsecret.txt": 400,
    b"/%2e%2e/secret.txt": 400,
    b"/%2e%2e%2fsecret.txt": 400,
    b"/..%5csecret.txt": 400,
}
SYMLINKS = {
    b"/static/escape": 403,
    b"/static/escape-dir/passwd": 403,
    b"/static/secret-link.txt": 403,
}


class TestTraversal(DaemonTestCase):
    daemon_options = dict(fixtures=["static", "www"])

    @classmethod
    def daemon_ready(cls):
        wait_until(lambda: cls.daemon.get("/static/").status == 200, 30, "static to be served")
        wait_until(lambda: b"WWW-HOME-MARKER" in cls.daemon.get("/").body, 30, "www at /")

    def check_refused(self, target):
        r = self.daemon.raw_target(target)
        self.assertIn(r.status, REFUSED,
                      f"{target!r} -> {r.status}, body {r.body[:200]!r}")
        for marker in FORBIDDEN_CONTENT:
            self.assertNotIn(marker, r.body, f"{target!r} leaked content")
        return r

    def test_traversal_refused(self):
        for target in TRAVERSALS:
            with self.subTest(target=target):
                self.check_refused(target)

    def test_symlink_out_of_workspace_refused(self):
        for target in SYMLINKS:
            with self.subTest(target=target):
                self.check_refused(target)

    def test_statuses_match_contract(self):
        """The contract is precise: traversal -> 400, symlink outside -> 403."""
        for target, want in {**TRAVERSALS, **SYMLINKS}.items():
            with self.subTest(target=target):
                r = self.daemon.raw_target(target)
                self.assertEqual(r.status, want, f"{target!r}")

    def test_head_refused_too(self):
        for target in (b"/static/%2e%2e/%2e%2e/secret.txt", b"/static/escape"):
            with self.subTest(target=target):
                r = self.daemon.raw_target(target, method="HEAD")
                self.assertIn(r.status, REFUSED)

    def test_gateway_still_healthy_and_serving(self):
        for target in list(TRAVERSALS)[:5]:
            self.daemon.raw_target(target)
        self.assertStatus(self.get("/monitor/healthz"), 200)
        r = self.get("/static/index.html")
        self.assertStatus(r, 200)
        self.assertIn(b"STATIC-INDEX-MARKER", r.body)

    def test_harness_planted_the_bait(self):
        """Guards the test itself: the secret and the symlinks exist where the
        traversals point, so a refusal means the gateway refused."""
        import os
        tmp = self.daemon.tmp
        with open(os.path.join(tmp, "secret.txt")) as f:
            self.assertIn(SECRET_MARKER, f.read())
        static = os.path.join(self.daemon.ws, "static")
        with open(os.path.join(static, "secret-link.txt")) as f:
            self.assertIn(SECRET_MARKER, f.read())
        self.assertTrue(os.path.islink(os.path.join(static, "escape")))


if __name__ == "__main__":
    unittest.main()
