"""Issue 13, part 6: the gateway's traversal list. Every request-target below goes out byte
for byte on a raw socket (no client-side normalisation) to a static workspace (`static`,
served by the gateway itself), to a proxied one (`rec`, the recorder app) and, without a
prefix, to the home workspace (`www`, static). None may answer with the secret the harness
puts next to the workspaces folder (TMP/secret.txt), /etc/passwd or the daemon's
environment, and each gets a sane status: a refusal (400/403/404) from the gateway, or the
app's own answer for the proxied workspace; never a 5xx, never 200 from a static one.

The static fixture has the harness's symlinks: escape -> /etc/passwd, escape-dir -> /etc,
secret-link.txt -> ../../secret.txt.

Run: cd tests/security && PYTHONPATH=../integration CK_BINARY=../../build/cloudyknight \
     python3 -m unittest -v test_traversal_list
"""

import unittest

from harness import SECRET_MARKER, DaemonTestCase, wait_until
from wire_util import RECORDER

FORBIDDEN_CONTENT = (SECRET_MARKER.encode(), b"root:x:0:0", b"root:*:0:0", b"daemon:x:1:1",
                     b"HOME=/", b"AWS_SECRET")

# {ws} is the workspace prefix ("static" or "rec"); {port} the gateway's port.
PAYLOADS = [
    # plain and encoded dots
    b"/{ws}/../secret.txt",
    b"/{ws}/../../secret.txt",
    b"/{ws}/../../../../../../../../../../etc/passwd",
    b"/{ws}/./../secret.txt",
    b"/{ws}/sub/../../../secret.txt",
    b"/{ws}/%2e%2e/%2e%2e/secret.txt",
    b"/{ws}/%2E%2E/%2E%2E/secret.txt",
    b"/{ws}/%2e%2E/%2E%2e/secret.txt",
    b"/{ws}/.%2e/.%2e/secret.txt",
    b"/{ws}/%2e./%2e./secret.txt",
    b"/{ws}/%2e/%2e%2e/%2e%2e/secret.txt",
    b"/{ws}/..%2f..%2fsecret.txt",
    b"/{ws}/..%2F..%2Fsecret.txt",
    b"/{ws}/%2e%2e%2f%2e%2e%2fsecret.txt",
    b"/{ws}/%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    # double encoding
    b"/{ws}/%252e%252e/%252e%252e/secret.txt",
    b"/{ws}/..%252f..%252fsecret.txt",
    b"/{ws}/%252e%252e%252f%252e%252e%252fsecret.txt",
    b"/{ws}/%25252e%25252e/secret.txt",
    # overlong UTF-8 and unicode look-alikes of '.', '/' and '\'
    b"/{ws}/%c0%ae%c0%ae/%c0%ae%c0%ae/secret.txt",
    b"/{ws}/..%c0%af..%c0%afsecret.txt",
    b"/{ws}/..%c1%9c..%c1%9csecret.txt",
    b"/{ws}/%e0%80%ae%e0%80%ae/secret.txt",
    b"/{ws}/%f0%80%80%ae%f0%80%80%ae/secret.txt",
    b"/{ws}/\xc0\xae\xc0\xae/\xc0\xae\xc0\xae/secret.txt",
    b"/{ws}/..%ef%bc%8f..%ef%bc%8fsecret.txt",
    b"/{ws}/..%e2%88%95..%e2%88%95secret.txt",
    b"/{ws}/%ef%bc%8e%ef%bc%8e/%ef%bc%8e%ef%bc%8e/secret.txt",
    b"/{ws}/%u002e%u002e/%u002e%u002e/secret.txt",
    # backslashes
    b"/{ws}/..\\..\\secret.txt",
    b"/{ws}/sub\\..\\..\\..\\secret.txt",
    b"/{ws}/..%5c..%5csecret.txt",
    b"/{ws}/..%5C..%5Csecret.txt",
    b"/{ws}/%2e%2e%5c%2e%2e%5csecret.txt",
    b"/{ws}/%5c..%5c..%5csecret.txt",
    # NUL
    b"/{ws}/secret-link.txt%00",
    b"/{ws}/index.html%00/../../secret.txt",
    b"/{ws}/..%00/..%00/secret.txt",
    b"/{ws}/%00../../secret.txt",
    # ;-parameters (servlet-style path parameters)
    b"/{ws}/..;/..;/secret.txt",
    b"/{ws}/.;/..;/..;/secret.txt",
    b"/{ws}/%2e%2e;x=1/%2e%2e;x=1/secret.txt",
    b"/{ws}/..%3b/..%3b/secret.txt",
    # filter evasion
    b"/{ws}/....//....//secret.txt",
    b"/{ws}/..././..././secret.txt",
    b"/{ws}/.../.../secret.txt",
    b"/{ws}//../../secret.txt",
    b"/{ws}/.//..//..//secret.txt",
    b"/{ws}/%2e%2e%3f/secret.txt",
    b"/{ws}/..%23/..%23/secret.txt",
    b"/{ws}/..?/../secret.txt",
    b"/{ws}/.well-known/../../secret.txt",
    b"/{ws}/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/proc/self/environ",
    b"/{ws}/" + b"../" * 60 + b"etc/passwd",
    b"/{ws}/" + b"%2e%2e/" * 60 + b"etc/passwd",
    # doubled slashes and absolute-form targets
    b"//{ws}/../secret.txt",
    b"///{ws}/..%2f..%2fsecret.txt",
    b"http://127.0.0.1:{port}/{ws}/../../secret.txt",
    b"http://127.0.0.1:{port}/{ws}/%2e%2e/%2e%2e/secret.txt",
    b"http://127.0.0.1:{port}/../secret.txt",
    b"http://evil.example/{ws}/..%2f..%2fsecret.txt",
    # the harness's symlinks, reached every way
    b"/{ws}/secret-link.txt",
    b"/{ws}/%73ecret-link.txt",
    b"/{ws}/secret-link.txt/",
    b"/{ws}/secret-link.txt?x=1",
    b"/{ws}/./secret-link.txt",
    b"/{ws}/escape",
    b"/{ws}/escape/",
    b"/{ws}/escape-dir/passwd",
    b"/{ws}/escape-dir/./passwd",
    b"/{ws}/escape-dir%2fpasswd",
    b"/{ws}/escape-dir/../escape-dir/passwd",
    b"/{ws}/sub/../escape-dir/shadow",
]
ROOT_PAYLOADS = [
    b"/..%2fsecret.txt",
    b"/%2e%2e/secret.txt",
    b"/%2e%2e%2fsecret.txt",
    b"/..%5csecret.txt",
    b"/%c0%ae%c0%ae/secret.txt",
    b"/..;/secret.txt",
]

STATIC_STATUSES = (400, 403, 404)
PROXIED_STATUSES = (200, 400, 403, 404)


class TestTraversalList(DaemonTestCase):
    daemon_options = dict(fixtures=["static", "www", (RECORDER, "rec")])

    @classmethod
    def daemon_ready(cls):
        wait_until(lambda: cls.daemon.get("/static/").status == 200, 30, "static to be served")
        wait_until(lambda: b"WWW-HOME-MARKER" in cls.daemon.get("/").body, 30, "www at /")
        wait_until(lambda: cls.daemon.get("/rec/ready").status == 200, 60, "the recorder")

    def targets(self, ws):
        port = str(self.daemon.port).encode()
        return [p.replace(b"{ws}", ws.encode()).replace(b"{port}", port) for p in PAYLOADS]

    def check(self, target, allowed):
        r = self.daemon.raw_target(target)
        for marker in FORBIDDEN_CONTENT:
            self.assertNotIn(marker, r.body, f"{target!r} -> {r.status} leaked {marker!r}")
        self.assertIn(r.status, allowed, f"{target!r} -> {r.status}, body {r.body[:200]!r}")
        return r

    def test_list_is_long_enough(self):
        self.assertGreaterEqual(len(set(PAYLOADS)), 50)

    def test_static_workspace(self):
        for target in self.targets("static"):
            with self.subTest(target=target):
                self.check(target, STATIC_STATUSES)

    def test_static_workspace_head(self):
        for target in self.targets("static")[:20]:
            with self.subTest(target=target):
                r = self.daemon.raw_target(target, method="HEAD")
                self.assertIn(r.status, STATIC_STATUSES, f"{target!r}")

    def test_proxied_workspace(self):
        for target in self.targets("rec"):
            with self.subTest(target=target):
                self.check(target, PROXIED_STATUSES)

    def test_home_workspace(self):
        for target in ROOT_PAYLOADS:
            with self.subTest(target=target):
                self.check(target, STATIC_STATUSES)

    def test_gateway_still_serves_after_the_list(self):
        for target in self.targets("static")[:10]:
            self.daemon.raw_target(target)
        self.assertStatus(self.get("/monitor/healthz"), 200)
        r = self.get("/static/index.html")
        self.assertStatus(r, 200)
        self.assertIn(b"STATIC-INDEX-MARKER", r.body)

    def test_harness_planted_the_bait(self):
        import os
        with open(os.path.join(self.daemon.tmp, "secret.txt")) as f:
            self.assertIn(SECRET_MARKER, f.read())
        with open(os.path.join(self.daemon.ws, "static", "secret-link.txt")) as f:
            self.assertIn(SECRET_MARKER, f.read())


if __name__ == "__main__":
    unittest.main()
