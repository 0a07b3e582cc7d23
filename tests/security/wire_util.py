"""Helpers for the gateway's wire-level security tests (test_gateway_headers,
test_static_race, test_traversal_list, test_smuggling).

The recorder fixture (fixtures/recorder/app.py) records every request that reaches it;
`recorded()` reads that record back through the gateway.
"""

import json
import os
import re
import socket
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RECORDER = os.path.join(HERE, "fixtures", "recorder")

# The control plane's session cookie, plain and with the __Host- prefix used under TLS.
SESSION_COOKIES = ("ck_session", "__Host-ck_session")


def recorded(daemon, name="rec"):
    """Every request the recorder workspace `name` has read so far, in order."""
    r = daemon.get(f"/{name}/__log")
    if r.status != 200:
        raise AssertionError(f"GET /{name}/__log -> {r.status} {r.body[:200]!r}")
    return r.json()["requests"]


def header_values(raw_headers, name):
    """The values of every header called `name` (case-insensitive) in a [[k, v]] list."""
    return [v for k, v in raw_headers if k.lower() == name.lower()]


def exchange(daemon, data, quiet=1.5, limit=15.0):
    """Sends `data` as it is on a new connection and reads until the gateway closes it,
    `quiet` seconds pass without a byte, or `limit` seconds in all. Returns the bytes read
    and whether the gateway closed the connection."""
    out = bytearray()
    closed = False
    deadline = time.monotonic() + limit
    with socket.create_connection(("127.0.0.1", daemon.port), timeout=5) as s:
        s.sendall(data)
        while time.monotonic() < deadline:
            s.settimeout(max(0.05, min(quiet, deadline - time.monotonic())))
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            except ConnectionResetError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            out += chunk
    return bytes(out), closed


STATUS_LINE = re.compile(rb"(?:^|\r\n)HTTP/1\.[01] (\d{3}) ")


def statuses(data):
    """The status codes of the responses in a byte stream, in order (heuristic: status
    lines at the start or after a CRLF)."""
    return [int(m.group(1)) for m in STATUS_LINE.finditer(data)]


def json_bodies(data):
    """The recorder's JSON answers found in a byte stream."""
    out = []
    for m in re.finditer(rb'\{"n": \d+.*?"body_len": \d+\}', data):
        try:
            out.append(json.loads(m.group(0)))
        except ValueError:
            pass
    return out
