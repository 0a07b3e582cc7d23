"""Issue 13, part 6: request smuggling through the gateway (CL.TE, TE.CL, TE.TE variants,
duplicate or malformed Content-Length, invalid chunk sizes).

Each case is one request whose framing is ambiguous or invalid, sent byte for byte with a
second, smuggled request placed where a parser that misreads the framing would take it for
the next request (`GET /rec/smuggled-<case>`). The upstream is the recorder
(fixtures/recorder/app.py), whose framing is lenient like many real app servers: any
Transfer-Encoding mentioning "chunked" is read as chunked, else the first Content-Length.

For every case:
  - the app never receives a smuggled request;
  - every request the app receives has unambiguous framing: never Content-Length together
    with Transfer-Encoding, at most one Content-Length, and a Transfer-Encoding (if any)
    that is exactly "chunked";
  - the gateway's first answer is one the case allows (400 where RFC 9112 requires it:
    invalid Content-Length, Transfer-Encoding not ending in chunked, bad chunk sizes);
    when it answers a request that had both Content-Length and Transfer-Encoding, it
    closes the connection (RFC 9112 6.1);
  - a new client on a new connection then gets its own answer (no poisoned upstream).

Run: cd tests/security && PYTHONPATH=../integration CK_BINARY=../../build/cloudyknight \
     python3 -m unittest -v test_smuggling
"""

import unittest

from harness import DaemonTestCase, wait_until
from wire_util import RECORDER, exchange, header_values, recorded, statuses

REJECT = (400,)
REJECT_OR_501 = (400, 501)
HANDLE_OR_REJECT = (200, 400)


def smuggled(name):
    return f"GET /rec/smuggled-{name} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def request(name, headers, body):
    head = f"POST /rec/attack-{name} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode()
    return head + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body


def chunk_of(data):
    return b"%x\r\n" % len(data) + data + b"\r\n"


def cl_te(name, te_lines, cl_first=True):
    """Content-Length covers everything; the chunked body ends before the smuggled request."""
    body = b"0\r\n\r\n" + smuggled(name)
    cl = b"Content-Length: %d" % len(body)
    return request(name, ([cl] + te_lines) if cl_first else (te_lines + [cl]), body)


def te_cl(name, te_lines, cl_first=False):
    """The chunked body holds the smuggled request; Content-Length stops before it."""
    inner = smuggled(name)
    body = chunk_of(inner) + b"0\r\n\r\n"
    cl = b"Content-Length: %d" % len(b"%x\r\n" % len(inner))
    return request(name, ([cl] + te_lines) if cl_first else (te_lines + [cl]), body)


def te_only(name, te_lines):
    """Only a Transfer-Encoding; if it is chunked, the smuggled request is inside the chunk."""
    return request(name, te_lines, chunk_of(smuggled(name)) + b"0\r\n\r\n")


def te_only_trailing(name, te_lines):
    """Only a Transfer-Encoding that is not chunked: the smuggled request follows '0'."""
    return request(name, te_lines, b"0\r\n\r\n" + smuggled(name))


def cls(name, cl_lines):
    """Content-Length lines; with the length of the smuggled request, it is the body."""
    n = len(smuggled(name))
    return request(name, [line.replace(b"{n}", b"%d" % n) for line in cl_lines], smuggled(name))


def chunks(name, size_line, data=b"hello"):
    body = size_line + b"\r\n" + data + b"\r\n0\r\n\r\n" + smuggled(name)
    return request(name, [b"Transfer-Encoding: chunked"], body)


TE = b"Transfer-Encoding: "
# name -> (bytes, allowed first statuses)
CASES = {
    # CL.TE and TE.CL with a plain Transfer-Encoding
    "cl_te": (lambda n: cl_te(n, [TE + b"chunked"]), HANDLE_OR_REJECT),
    "cl_te_te_first": (lambda n: cl_te(n, [TE + b"chunked"], cl_first=False), HANDLE_OR_REJECT),
    "te_cl": (lambda n: te_cl(n, [TE + b"chunked"]), HANDLE_OR_REJECT),
    "te_cl_cl_first": (lambda n: te_cl(n, [TE + b"chunked"], cl_first=True), HANDLE_OR_REJECT),
    # TE.TE: an obfuscated Transfer-Encoding next to a Content-Length
    "te_space_value": (lambda n: cl_te(n, [TE + b"chunked "], cl_first=False), HANDLE_OR_REJECT),
    "te_tab_value": (lambda n: cl_te(n, [b"Transfer-Encoding:\tchunked"], cl_first=False), HANDLE_OR_REJECT),
    "te_space_before_colon": (lambda n: cl_te(n, [b"Transfer-Encoding : chunked"], cl_first=False), REJECT),
    "te_xchunked": (lambda n: cl_te(n, [TE + b"xchunked"], cl_first=False), REJECT_OR_501),
    "te_chunked_identity": (lambda n: cl_te(n, [TE + b"chunked, identity"], cl_first=False), REJECT_OR_501),
    "te_chunked_chunked": (lambda n: cl_te(n, [TE + b"chunked, chunked"], cl_first=False), REJECT_OR_501),
    "te_twice": (lambda n: cl_te(n, [TE + b"chunked", TE + b"chunked"], cl_first=False), REJECT),
    "te_twice_second_bogus": (lambda n: cl_te(n, [TE + b"chunked", TE + b"x"], cl_first=False), REJECT_OR_501),
    "te_twice_first_bogus": (lambda n: cl_te(n, [TE + b"x", TE + b"chunked"], cl_first=False), REJECT_OR_501),
    "te_uppercase": (lambda n: cl_te(n, [b"TRANSFER-ENCODING: CHUNKED"], cl_first=False), HANDLE_OR_REJECT),
    "te_quoted": (lambda n: cl_te(n, [TE + b'"chunked"'], cl_first=False), REJECT_OR_501),
    "te_vertical_tab": (lambda n: cl_te(n, [TE + b"chunked\x0b"], cl_first=False), REJECT_OR_501),
    "te_line_folding": (lambda n: cl_te(n, [TE + b"x", b" chunked"], cl_first=False), REJECT_OR_501),
    "te_gzip_chunked": (lambda n: te_only(n, [TE + b"gzip, chunked"]), REJECT_OR_501 + (200,)),
    # Transfer-Encoding alone
    "te_only_trailing_space": (lambda n: te_only(n, [TE + b"chunked "]), HANDLE_OR_REJECT),
    "te_only_uppercase": (lambda n: te_only(n, [TE + b"Chunked"]), HANDLE_OR_REJECT),
    "te_only_folded": (lambda n: te_only(n, [b"Transfer-Encoding:", b" chunked"]), HANDLE_OR_REJECT),
    "te_only_xchunked": (lambda n: te_only_trailing(n, [TE + b"xchunked"]), REJECT_OR_501),
    "te_only_chunked_identity": (lambda n: te_only_trailing(n, [TE + b"chunked, identity"]), REJECT_OR_501),
    "te_only_http10": (lambda n: te_only(n, [TE + b"chunked"]).replace(b"HTTP/1.1\r\n", b"HTTP/1.0\r\n", 1),
                       HANDLE_OR_REJECT),
    # Content-Length: duplicates, signs, spaces, garbage
    "cl_duplicate_differs": (lambda n: cls(n, [b"Content-Length: 0", b"Content-Length: {n}"]), REJECT),
    "cl_duplicate_differs_reversed": (lambda n: cls(n, [b"Content-Length: {n}", b"Content-Length: 0"]), REJECT),
    "cl_list_differs": (lambda n: cls(n, [b"Content-Length: 0, {n}"]), REJECT),
    "cl_duplicate_same": (lambda n: cls(n, [b"Content-Length: {n}", b"Content-Length: {n}"]), HANDLE_OR_REJECT),
    "cl_plus_sign": (lambda n: cls(n, [b"Content-Length: +{n}"]), REJECT),
    "cl_minus_sign": (lambda n: cls(n, [b"Content-Length: -{n}"]), REJECT),
    "cl_spaces_around": (lambda n: cls(n, [b"Content-Length:   {n}   "]), HANDLE_OR_REJECT),
    "cl_space_inside": (lambda n: cls(n, [b"Content-Length: 1 {n}"]), REJECT),
    "cl_hex": (lambda n: cls(n, [b"Content-Length: 0x{n}"]), REJECT),
    "cl_overflow": (lambda n: cls(n, [b"Content-Length: 18446744073709551617{n}"]), (400, 413)),
    "cl_space_before_colon": (lambda n: cls(n, [b"Content-Length : 0"]), REJECT),
    # invalid chunk sizes
    "chunk_size_garbage": (lambda n: chunks(n, b"5g"), REJECT),
    "chunk_size_negative": (lambda n: chunks(n, b"-5"), REJECT),
    "chunk_size_0x": (lambda n: chunks(n, b"0x5"), REJECT),
    "chunk_size_plus": (lambda n: chunks(n, b"+5"), REJECT),
    "chunk_size_leading_space": (lambda n: chunks(n, b" 5"), REJECT),
    "chunk_size_overflow": (lambda n: chunks(n, b"1" + b"0" * 16 + b"5"), REJECT),
    "chunk_size_empty": (lambda n: chunks(n, b""), REJECT),
    "chunk_data_too_long": (lambda n: chunks(n, b"3"), REJECT),
}


class TestSmuggling(DaemonTestCase):
    daemon_options = dict(fixtures=[(RECORDER, "rec")],
                          config={"gateway": {"request_timeout": "4s"}})

    @classmethod
    def daemon_ready(cls):
        wait_until(lambda: cls.daemon.get("/rec/ready").status == 200, 60, "the recorder")

    def run_case(self, name):
        build, allowed = CASES[name]
        data = build(name)
        before = len(recorded(self.daemon))
        out, closed = exchange(self.daemon, data, quiet=1.0, limit=12.0)
        seen = statuses(out)
        # A new client on a new connection gets its own answer.
        probe = self.daemon.get(f"/rec/probe-{name}")
        self.assertStatus(probe, 200, "the next client")
        self.assertEqual(probe.json()["path"], f"/probe-{name}", "the next client got someone else's answer")
        log = recorded(self.daemon)[before:]
        paths = [e["path"] for e in log]
        detail = f"gateway answered {seen} (closed={closed}); the app saw {paths}; sent {data!r}"
        self.assertFalse(any("smuggled" in p for p in paths), f"smuggled request reached the app: {detail}")
        for e in log:
            raw = e["raw_headers"]
            cl = header_values(raw, "Content-Length")
            te = header_values(raw, "Transfer-Encoding")
            self.assertLessEqual(len(cl), 1, f"{e['path']}: several Content-Length: {detail}")
            self.assertFalse(cl and te, f"{e['path']}: Content-Length with Transfer-Encoding {te!r}: {detail}")
            if te:
                self.assertEqual([v.strip().lower() for v in te], ["chunked"],
                                 f"{e['path']}: ambiguous Transfer-Encoding {te!r}: {detail}")
        self.assertTrue(seen, f"no answer at all: {detail}")
        self.assertIn(seen[0], allowed, f"first answer: {detail}")
        lower = data.split(b"\r\n\r\n", 1)[0].lower()
        if seen[0] < 400 and b"content-length" in lower and b"transfer-encoding" in lower:
            self.assertTrue(closed, f"answered a request with both CL and TE and kept the connection: {detail}")
        if seen[0] >= 400:
            self.assertEqual(len(seen), 1, f"answered more after refusing: {detail}")

    def test_case_count(self):
        self.assertGreaterEqual(len(CASES), 30)


def _make(name):
    def test(self):
        self.run_case(name)
    test.__name__ = f"test_{name}"
    test.__doc__ = f"smuggling case {name}"
    return test


for _name in CASES:
    setattr(TestSmuggling, f"test_{_name}", _make(_name))


if __name__ == "__main__":
    unittest.main()
