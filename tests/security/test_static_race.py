"""Row 4 of issue 13: a static workspace's author swaps a file for a symlink between the
gateway's check and its open. Before the fix, 18 of 1,500 GETs were answered with
/etc/shadow: static_files.cc checked the path (realpath) and gateway.cc opened it again by
name later, following whatever was there by then.

Here a thread keeps exchanging (renameat2 RENAME_EXCHANGE, atomic: the name always exists)
  - race.txt, a regular file, with a symlink to TMP/secret.txt outside the workspaces, and
  - racedir/, a real folder holding secret.txt (harmless content), with a symlink to TMP
    itself (so racedir/secret.txt is the real secret: a symlink in the middle of the path),
while ~1,500 GETs (plain, Range, gzip) run against both. No answer may hold the secret;
answers are the regular content or a refusal.

Run: cd tests/security && PYTHONPATH=../integration CK_BINARY=../../build/cloudyknight \
     python3 -m unittest -v test_static_race
"""

import ctypes
import gzip
import http.client
import os
import threading
import time
import unittest

from harness import SECRET_MARKER, DaemonTestCase, wait_until

REGULAR = b"REGULAR-RACE-CONTENT " * 20 + b"\n"  # > 256 bytes: the gzip path is taken too
AT_FDCWD = -100
RENAME_EXCHANGE = 2
TOTAL_REQUESTS = 1500
THREADS = 6
TIME_LIMIT = 90.0

_libc = ctypes.CDLL(None, use_errno=True)


def exchange(a, b):
    rc = _libc.renameat2(AT_FDCWD, a.encode(), AT_FDCWD, b.encode(), RENAME_EXCHANGE)
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), a)


class TestStaticRace(DaemonTestCase):
    daemon_options = dict(fixtures=["static"])

    @classmethod
    def daemon_ready(cls):
        static = os.path.join(cls.daemon.ws, "static")
        cls.static = static
        with open(os.path.join(static, "race.txt"), "wb") as f:
            f.write(REGULAR)
        os.symlink("../../secret.txt", os.path.join(static, ".race-link"))
        os.makedirs(os.path.join(static, "racedir"))
        with open(os.path.join(static, "racedir", "secret.txt"), "wb") as f:
            f.write(REGULAR)
        os.symlink("../..", os.path.join(static, ".racedir-link"))
        wait_until(lambda: cls.daemon.get("/static/race.txt").status == 200, 30,
                   "race.txt to be served")

    def test_harness_bait(self):
        """Guards the test: through the symlinks, the paths really reach the secret."""
        with open(os.path.join(self.static, ".race-link")) as f:
            self.assertIn(SECRET_MARKER, f.read())
        with open(os.path.join(self.static, ".racedir-link", "secret.txt")) as f:
            self.assertIn(SECRET_MARKER, f.read())

    def test_swapped_symlink_never_serves_the_secret(self):
        try:
            exchange(os.path.join(self.static, "race.txt"), os.path.join(self.static, ".race-link"))
            exchange(os.path.join(self.static, "race.txt"), os.path.join(self.static, ".race-link"))
        except (OSError, AttributeError) as e:
            self.skipTest(f"renameat2(RENAME_EXCHANGE) is not available here: {e}")

        stop = threading.Event()
        swaps = [0]
        deadline = time.monotonic() + TIME_LIMIT
        pairs = [("race.txt", ".race-link"), ("racedir", ".racedir-link")]

        def swapper():
            for i in range(10_000_000):
                if stop.is_set() or time.monotonic() > deadline:
                    break
                a, b = pairs[i % 2]
                exchange(os.path.join(self.static, a), os.path.join(self.static, b))
                swaps[0] += 1
                if i % 64 == 0:
                    time.sleep(0)  # let the gateway's threads run

        lock = threading.Lock()
        results = []  # (target, status, body)
        errors = []
        per_thread = TOTAL_REQUESTS // THREADS
        variants = [
            ("/static/race.txt", {}),
            ("/static/race.txt", {"Range": "bytes=0-"}),
            ("/static/race.txt", {"Accept-Encoding": "gzip"}),
            ("/static/racedir/secret.txt", {}),
            ("/static/racedir/secret.txt", {"Range": "bytes=0-"}),
            ("/static/racedir/secret.txt", {"Accept-Encoding": "gzip"}),
        ]

        def client(k):
            conn = None
            for i in range(per_thread):
                if time.monotonic() > deadline:
                    break
                target, headers = variants[(i + k) % len(variants)]
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=10)
                    conn.request("GET", target, headers=headers)
                    r = conn.getresponse()
                    body = r.read()
                    if r.getheader("Content-Encoding") == "gzip":
                        body = gzip.decompress(body)
                    with lock:
                        results.append((target, r.status, body))
                    if r.will_close:
                        conn.close()
                        conn = None
                except (OSError, http.client.HTTPException) as e:
                    with lock:
                        errors.append(f"{target}: {e!r}")
                    if conn is not None:
                        conn.close()
                    conn = None
            if conn is not None:
                conn.close()

        swap_thread = threading.Thread(target=swapper, daemon=True)
        swap_thread.start()
        clients = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(THREADS)]
        for t in clients:
            t.start()
        for t in clients:
            t.join(TIME_LIMIT + 30)
        stop.set()
        swap_thread.join(10)
        # Leave the names as they started (regular file, real folder) for the other tests.
        if os.path.islink(os.path.join(self.static, "race.txt")):
            exchange(os.path.join(self.static, "race.txt"), os.path.join(self.static, ".race-link"))
        if os.path.islink(os.path.join(self.static, "racedir")):
            exchange(os.path.join(self.static, "racedir"), os.path.join(self.static, ".racedir-link"))

        leaks = [(t, s) for t, s, b in results if SECRET_MARKER.encode() in b]
        counts = {}
        for t, s, b in results:
            counts[(t, s)] = counts.get((t, s), 0) + 1
        summary = f"{len(results)} answers, {swaps[0]} swaps, statuses {counts}, errors {errors[:5]}"
        self.assertEqual(leaks, [], f"{len(leaks)} answers held the secret; {summary}")
        self.assertGreaterEqual(len(results), TOTAL_REQUESTS * 9 // 10, summary)
        self.assertLess(len(errors), 10, summary)
        self.assertGreater(swaps[0], 100, summary)
        for t, s, b in results:
            if s in (200, 206):
                self.assertEqual(b, REGULAR, f"{t} -> {s} with unexpected content; {summary}")
            else:
                self.assertIn(s, (403, 404), f"{t} -> {s}; {summary}")
        ok = sum(1 for t, s, b in results if t == "/static/race.txt" and s in (200, 206))
        refused = sum(1 for t, s, b in results if t == "/static/race.txt" and s in (403, 404))
        self.assertGreater(ok, 0, f"race.txt was never served: the race was not exercised; {summary}")
        self.assertGreater(refused, 0, f"race.txt was never refused: no swap seen; {summary}")

    def test_regular_file_still_served(self):
        r = self.get("/static/index.html")
        self.assertStatus(r, 200)
        self.assertIn(b"STATIC-INDEX-MARKER", r.body)


if __name__ == "__main__":
    unittest.main()
