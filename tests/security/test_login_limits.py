"""Issue 13, rows 7 and 8: login hardening.

Row 7: a failed login with a 20 MB user name grew state.db by 40 MB and the daemon's RSS by
180 MB. Now a name over 64 bytes (or a login body over 8 KiB) is refused with 400 before any
database write, argon2id or rate-limiter entry.
Row 8: five wrong passwords from one address locked the user out from every address. Now the
limit is per (user, address), with a much higher per-user ceiling.

Run: cd tests/security && PYTHONPATH=../integration CK_BINARY=../../build/cloudyknight \
     python3 -m unittest -v test_login_limits
"""

import http.client
import json
import os
import time
import unittest

from harness import rss_kib, CONTROL, ControlHostDaemon
from test_auth import PASSWORD, admin_token, call

API = "/monitor/api/v1"


def db_bytes(data):
    total = 0
    for suffix in ("", "-wal", "-shm"):
        p = os.path.join(data, "state.db" + suffix)
        if os.path.exists(p):
            total += os.path.getsize(p)
    return total


def login_from(d, source, name, password, timeout=30):
    """POST /auth/login from the address `source` (the client socket bound to it)."""
    conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=timeout,
                                      source_address=(source, 0))
    try:
        body = json.dumps({"name": name, "password": password})
        try:
            conn.request("POST", API + "/auth/login", body=body,
                         headers={"Content-Type": "application/json", "Host": f"{CONTROL}:{d.port}"})
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused before the whole body was sent: the answer is waiting
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


class LoginLimitsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.d = d = ControlHostDaemon()
        d.start()
        try:
            cls.admin = admin_token(d)
            for user in ("dora", "eve"):
                r = call(d, "POST", "/users", cls.admin, {"name": user, "password": PASSWORD})
                assert r.status == 201, r.text()
        except BaseException:
            print(d.diagnostics())
            d.stop()
            d.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.d.stop()
        cls.d.cleanup()

    def test_row7_a_huge_user_name_is_400_and_stores_nothing(self):
        d = self.d
        pid = d.proc.pid
        rss0, db0 = rss_kib(pid), db_bytes(d.data)  # noqa: F841 (RSS: see below)
        name = "a" * (20 << 20)
        for _ in range(3):
            t0 = time.monotonic()
            status, body = login_from(d, "127.0.0.1", name, "whatever password")
            # The gateway refuses a control-plane body over 2 MiB (413) before the API sees it.
            self.assertIn(status, (400, 413), body[:300])
            self.assertLess(time.monotonic() - t0, 5)
        self.assertLess(db_bytes(d.data) - db0, 1 << 20, "state.db grew")
        del rss0
        # Just over the name limit, in a small body: 400 too, and no audit row for it.
        status, body = login_from(d, "127.0.0.1", "b" * 65, "whatever password")
        self.assertEqual(status, 400, body)
        status, body = login_from(d, "127.0.0.1", "dora", "p" * 2000)
        self.assertEqual(status, 400, body)
        entries = call(d, "GET", "/audit?limit=1000", self.admin).json()["entries"]
        self.assertFalse([e for e in entries if len(e["target"]) > 256])
        self.assertFalse([e for e in entries if e["target"].startswith("bbbb")])
        # The right password still works (nothing was counted against anyone).
        self.assertEqual(login_from(d, "127.0.0.1", "dora", PASSWORD)[0], 200)

    # The gateway caps control-plane bodies at 2 MiB and the API refuses long names at once.
    def test_row7_0_rss_stays_within_50_mb(self):
        d = self.d
        pid = d.proc.pid
        rss0 = rss_kib(pid)
        for _ in range(3):
            status, _ = login_from(d, "127.0.0.1", "c" * (20 << 20), "whatever password")
            self.assertIn(status, (400, 413))
        self.assertLess(rss_kib(pid) - rss0, 50 << 10, "the daemon's RSS grew by over 50 MB")

    def test_row8_wrong_passwords_from_one_address_do_not_lock_out_another(self):
        d = self.d
        statuses = [login_from(d, "127.0.0.2", "eve", "not the password")[0] for _ in range(6)]
        self.assertEqual(statuses, [401] * 5 + [429])
        # From another address the right password works at once.
        status, body = login_from(d, "127.0.0.1", "eve", PASSWORD)
        self.assertEqual(status, 200, body)
        # The address that guessed stays limited, even with the right password.
        self.assertEqual(login_from(d, "127.0.0.2", "eve", PASSWORD)[0], 429)
        # X-Forwarded-For is not the address: a forged one does not escape the limit.
        conn = http.client.HTTPConnection("127.0.0.1", d.port, timeout=10, source_address=("127.0.0.2", 0))
        try:
            conn.request("POST", API + "/auth/login", body=json.dumps({"name": "eve", "password": PASSWORD}),
                         headers={"Content-Type": "application/json", "X-Forwarded-For": "10.9.9.9",
                                  "Host": f"{CONTROL}:{d.port}"})
            self.assertEqual(conn.getresponse().status, 429)
        finally:
            conn.close()


if __name__ == "__main__":
    unittest.main()
