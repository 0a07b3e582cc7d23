"""The gateway over TLS in headless Chromium (label `browser`).

A throwaway CA (tlsutil.TestCA) issues a certificate for example.test and *.example.test;
the daemon serves it, and tests/e2e/tls.test.mjs (playwright-core driving Debian's Chromium,
--host-resolver-rules for the names) opens the home page, a workspace by path and by host, and
/monitor/ws over wss://, with the certificate's key pinned by
--ignore-certificate-errors-spki-list, and checks that a browser without that pin refuses it.

Environment: CK_PLAYWRIGHT (playwright-core's folder, as scripts/playwright.sh prints it),
CK_CHROMIUM (default /usr/bin/chromium). Nothing is skipped: a missing browser, driver or
node fails the test with the reason.
"""

import os
import shutil
import subprocess
import unittest

import harness
from tlsutil import TestCA, TlsDaemon, spki_sha256

SCRIPT = os.path.join(harness.REPO, "tests", "e2e", "tls.test.mjs")
DEFAULT_PLAYWRIGHT = os.path.expanduser("~/.cache/cloudyknight/playwright/node_modules/playwright-core")
NODE_TIMEOUT = 300


class BrowserTlsTest(unittest.TestCase):
    def setUp(self):
        self.ca = TestCA()
        self.addCleanup(self.ca.cleanup)
        self.cert, self.key, _ = self.ca.issue("site", "example.test", ["example.test", "*.example.test"])
        config = {"gateway": {"domain": "example.test", "hsts": "300",
                              "tls": {"cert": self.cert, "key": self.key}}}
        self.daemon = TlsDaemon(self.ca, fixtures=["www", "static"], config=config)
        self.daemon.start()
        self.addCleanup(self.daemon.cleanup)
        self.addCleanup(self.daemon.stop)

    def test_chromium_loads_pages_over_https(self):
        node = shutil.which("node")
        self.assertIsNotNone(node, "node is not installed (Debian package nodejs)")
        pw = os.environ.get("CK_PLAYWRIGHT", DEFAULT_PLAYWRIGHT)
        self.assertTrue(os.path.isdir(pw), f"playwright-core not found at {pw} (run scripts/playwright.sh)")
        chromium = os.environ.get("CK_CHROMIUM", "/usr/bin/chromium")
        self.assertTrue(os.access(chromium, os.X_OK), f"Chromium not found at {chromium}")
        env = dict(os.environ)
        env.update({"CK_TLS_PORT": str(self.daemon.port), "CK_TLS_SPKI": spki_sha256(self.cert),
                    "CK_DOMAIN": "example.test", "CK_PLAYWRIGHT": pw, "CK_CHROMIUM": chromium,
                    "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"})
        proc = subprocess.run([node, "--test-reporter=spec", SCRIPT], env=env,
                              cwd=os.path.dirname(SCRIPT), capture_output=True, text=True,
                              timeout=NODE_TIMEOUT)
        out = proc.stdout + proc.stderr
        if proc.returncode != 0:
            self.fail(f"tls.test.mjs failed ({proc.returncode}):\n{out}\n{self.daemon.diagnostics()}")
        self.assertIn("pass 2", out, out)


if __name__ == "__main__":
    unittest.main()
