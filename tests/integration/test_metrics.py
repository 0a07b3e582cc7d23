"""GET /monitor/metrics: the Prometheus text exposition (format 0.0.4).

One daemon (process runtime) serves a static workspace, a Python app (echo) and a Python app
that never starts (pysyntax). Every scrape is parsed strictly by the small parser below (each
sample belongs to a family declared by a TYPE line before it, names and label names are valid,
label values are properly escaped, values are floats, histograms are cumulative and end in
+Inf, no series twice). Request counts are checked as exact deltas between two scrapes made
on the same keep-alive connection as the requests in between (a request is counted once it
has been answered, before the connection reads the next one, so the order is guaranteed).

Run: cd tests/integration && CK_BINARY=../../build/cloudyknight python3 -m unittest -v test_metrics
"""

import http.client
import math
import re
import time
import unittest

from harness import DaemonTestCase, WebSocketClient, wait_until

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
STATES = ("creating", "initializing", "running", "stopping", "stopped", "failed")
LEVELS = ("active", "disconnected", "idle", "background", "stopped")
KINDS = ("workspace", "static", "monitor", "home", "other")
CLASSES = ("1xx", "2xx", "3xx", "4xx", "5xx")


class ParseError(AssertionError):
    pass


def _parse_labels(text, pos, lineno):
    """Parses `{a="x",b="y"}` from text[pos] == '{'; returns (dict, position after '}')."""
    labels = {}
    pos += 1
    while True:
        if text[pos] == "}":
            return labels, pos + 1
        m = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*").match(text, pos)
        if not m:
            raise ParseError(f"line {lineno}: bad label name at {text[pos:pos + 20]!r}")
        name = m.group(0)
        if name.startswith("__"):
            raise ParseError(f"line {lineno}: reserved label name {name!r}")
        if name in labels:
            raise ParseError(f"line {lineno}: label {name!r} twice")
        pos = m.end()
        if text[pos:pos + 2] != '="':
            raise ParseError(f"line {lineno}: expected =\" after label {name!r}")
        pos += 2
        value = []
        while True:
            c = text[pos]
            if c == "\\":
                esc = text[pos + 1]
                if esc not in ('\\', '"', "n"):
                    raise ParseError(f"line {lineno}: bad escape \\{esc} in label {name!r}")
                value.append("\n" if esc == "n" else esc)
                pos += 2
            elif c == '"':
                pos += 1
                break
            elif c == "\n":
                raise ParseError(f"line {lineno}: raw newline in label {name!r}")
            else:
                value.append(c)
                pos += 1
        labels[name] = "".join(value)
        if text[pos] == ",":
            pos += 1
        elif text[pos] != "}":
            raise ParseError(f"line {lineno}: expected , or }} after label {name!r}")


def parse_exposition(text):
    """Parses the text format strictly. Returns {family: {"type", "help", "samples": [(name,
    labels dict, value)]}} and raises ParseError on anything malformed."""
    if text and not text.endswith("\n"):
        raise ParseError("the exposition does not end with a newline")
    families = {}
    current = None  # the family whose samples may follow
    seen_series = set()
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
                raise ParseError(f"line {lineno}: unexpected comment {line!r}")
            name = parts[2]
            if not METRIC_NAME.match(name):
                raise ParseError(f"line {lineno}: invalid metric name {name!r}")
            fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
            if fam["samples"]:
                raise ParseError(f"line {lineno}: {parts[1]} for {name} after its samples")
            if parts[1] == "HELP":
                if fam["help"] is not None:
                    raise ParseError(f"line {lineno}: second HELP for {name}")
                fam["help"] = parts[3] if len(parts) > 3 else ""
            else:
                if fam["type"] is not None:
                    raise ParseError(f"line {lineno}: second TYPE for {name}")
                if len(parts) != 4 or parts[3] not in ("counter", "gauge", "histogram", "summary",
                                                       "untyped"):
                    raise ParseError(f"line {lineno}: bad TYPE line {line!r}")
                fam["type"] = parts[3]
                current = name
            continue
        if not line.strip():
            raise ParseError(f"line {lineno}: empty line")
        m = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*").match(line)
        if not m:
            raise ParseError(f"line {lineno}: no metric name in {line!r}")
        name, pos = m.group(0), m.end()
        labels = {}
        if pos < len(line) and line[pos] == "{":
            labels, pos = _parse_labels(line + "\n", pos, lineno)
        rest = line[pos:]
        if not rest.startswith(" "):
            raise ParseError(f"line {lineno}: expected a space before the value in {line!r}")
        fields = rest[1:].split(" ")
        if len(fields) not in (1, 2):
            raise ParseError(f"line {lineno}: expected `value [timestamp]` in {line!r}")
        try:
            value = float(fields[0])
        except ValueError:
            raise ParseError(f"line {lineno}: value {fields[0]!r} is not a float") from None
        if fields[0] not in ("+Inf", "-Inf", "NaN") and not re.fullmatch(
                r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?", fields[0]):
            raise ParseError(f"line {lineno}: value {fields[0]!r} is not in Prometheus' float syntax")
        if current is None:
            raise ParseError(f"line {lineno}: sample {name} before any TYPE line")
        ftype = families[current]["type"]
        allowed = {current}
        if ftype == "histogram":
            allowed = {current + "_bucket", current + "_sum", current + "_count"}
        if name not in allowed:
            raise ParseError(f"line {lineno}: sample {name} does not belong to the family "
                             f"{current} ({ftype}) declared before it")
        if ftype == "histogram" and name.endswith("_bucket") and "le" not in labels:
            raise ParseError(f"line {lineno}: histogram bucket without le")
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            raise ParseError(f"line {lineno}: series {name}{labels} twice")
        seen_series.add(key)
        families[current]["samples"].append((name, labels, value))
    for name, fam in families.items():
        if fam["type"] is None:
            raise ParseError(f"family {name} has HELP but no TYPE")
        if fam["type"] == "histogram":
            _check_histogram(name, fam["samples"])
    return families


def _check_histogram(name, samples):
    series = {}
    for sname, labels, value in samples:
        rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        s = series.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if sname.endswith("_bucket"):
            s["buckets"].append((float(labels["le"]), value))
        elif sname.endswith("_sum"):
            s["sum"] = value
        else:
            s["count"] = value
    for rest, s in series.items():
        les = [le for le, _ in s["buckets"]]
        if not les or les[-1] != math.inf:
            raise ParseError(f"{name}{dict(rest)}: the last bucket is not le=\"+Inf\"")
        if les != sorted(les) or len(set(les)) != len(les):
            raise ParseError(f"{name}{dict(rest)}: le values not strictly increasing: {les}")
        counts = [c for _, c in s["buckets"]]
        if counts != sorted(counts):
            raise ParseError(f"{name}{dict(rest)}: buckets not cumulative: {counts}")
        if s["count"] is None or s["sum"] is None:
            raise ParseError(f"{name}{dict(rest)}: missing _sum or _count")
        if s["count"] != counts[-1]:
            raise ParseError(f"{name}{dict(rest)}: _count {s['count']} != +Inf bucket {counts[-1]}")


def value_of(families, family, sample=None, **labels):
    """The value of the one sample of `family` (named `sample`, default the family) whose
    labels include `labels`."""
    sample = sample or family
    found = [v for n, l, v in families[family]["samples"]
             if n == sample and all(l.get(k) == v for k, v in labels.items())]
    if len(found) != 1:
        raise AssertionError(f"{sample}{labels}: {len(found)} samples match")
    return found[0]


class ParserSelfTest(unittest.TestCase):
    """The parser itself rejects what it must (so a passing scrape means something)."""

    def test_accepts_a_valid_exposition(self):
        fams = parse_exposition('# HELP a_total A.\n# TYPE a_total counter\na_total{k="x\\"y\\\\z\\n"} 3\n'
                                '# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\n'
                                'h_sum 3.5\nh_count 2\n')
        self.assertEqual(fams["a_total"]["samples"], [("a_total", {"k": 'x"y\\z\n'}, 3.0)])

    def test_rejects(self):
        bad = {
            "sample without TYPE": "a 1\n",
            "sample of another family": "# TYPE a counter\nb 1\n",
            "value not a float": "# TYPE a gauge\na one\n",
            "bad escape": '# TYPE a gauge\na{k="\\t"} 1\n',
            "unterminated label": '# TYPE a gauge\na{k="x} 1\n',
            "bad metric name": "# TYPE 1a gauge\n1a 1\n",
            "bad label name": '# TYPE a gauge\na{1k="x"} 1\n',
            "series twice": "# TYPE a gauge\na 1\na 2\n",
            "TYPE twice": "# TYPE a gauge\n# TYPE a gauge\n",
            "no +Inf bucket": '# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n',
            "not cumulative": ('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\n'
                               'h_sum 1\nh_count 1\n'),
            "count != +Inf": ('# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 1\n'
                              'h_sum 1\nh_count 2\n'),
            "no final newline": "# TYPE a gauge\na 1",
        }
        for what, text in bad.items():
            with self.subTest(what):
                with self.assertRaises(ParseError):
                    parse_exposition(text)


class TestMetrics(DaemonTestCase):
    daemon_options = dict(fixtures=["static", "echo", "pysyntax"])

    @classmethod
    def daemon_ready(cls):
        cls.daemon.wait_status("echo", "running", timeout=60)
        cls.daemon.wait_status("pysyntax", "failed", timeout=60)

    def setUp(self):
        self.conn = http.client.HTTPConnection("127.0.0.1", self.daemon.port, timeout=15)

    def tearDown(self):
        self.conn.close()

    def send(self, method, path):
        """One request on the test's keep-alive connection; returns the status."""
        self.conn.request(method, path)
        r = self.conn.getresponse()
        r.read()
        return r.status

    def scrape(self):
        self.conn.request("GET", "/monitor/metrics")
        r = self.conn.getresponse()
        body = r.read()
        self.assertEqual(r.status, 200, body[:500])
        self.assertEqual(r.getheader("Content-Type"), CONTENT_TYPE)
        return parse_exposition(body.decode("utf-8"))

    def requests(self, fams):
        return {(l["kind"], l["code_class"]): v
                for _, l, v in fams["cloudyknight_http_requests_total"]["samples"]}

    def durations(self, fams):
        return {l["kind"]: v for n, l, v in fams["cloudyknight_http_request_duration_seconds"]["samples"]
                if n.endswith("_count")}

    # ---------------------------------------------------------------------------------
    def test_scrape_is_well_formed_and_complete(self):
        fams = self.scrape()
        expected = {
            "cloudyknight_http_requests_total": "counter",
            "cloudyknight_http_request_duration_seconds": "histogram",
            "cloudyknight_upstream_errors_total": "counter",
            "cloudyknight_events_clients": "gauge",
            "cloudyknight_gateway_worker_connections": "gauge",
            "cloudyknight_workspace_starts_total": "counter",
            "cloudyknight_install_duration_seconds": "histogram",
            "cloudyknight_workspaces": "gauge",
            "cloudyknight_workspace_activity": "gauge",
            "cloudyknight_jobs": "gauge",
            "cloudyknight_process_resident_memory_bytes": "gauge",
            "cloudyknight_process_cpu_seconds_total": "counter",
            "cloudyknight_process_open_fds": "gauge",
            "cloudyknight_process_start_time_seconds": "gauge",
            "cloudyknight_build_info": "gauge",
        }
        for name, ftype in expected.items():
            self.assertIn(name, fams)
            self.assertEqual(fams[name]["type"], ftype, name)
            self.assertTrue(fams[name]["help"], f"{name} has no HELP text")
            self.assertTrue(name.startswith("cloudyknight_"))
        # Every kind and class is there from the start (zeros included), each with a histogram.
        reqs = self.requests(fams)
        self.assertEqual(set(reqs), {(k, c) for k in KINDS for c in CLASSES})
        self.assertEqual(set(self.durations(fams)), set(KINDS))
        buckets = [float(l["le"]) for n, l, _ in fams["cloudyknight_http_request_duration_seconds"]["samples"]
                   if n.endswith("_bucket") and l["kind"] == "workspace"]
        self.assertEqual(buckets[0], 0.0005)
        self.assertEqual(buckets[-2:], [10.0, math.inf])

    def test_requests_counted_per_kind_and_class(self):
        before = self.scrape()
        plan = [("GET", "/echo/a", 200), ("GET", "/echo/b?x=1", 200), ("POST", "/echo/c", 200),
                ("GET", "/static/", 200), ("HEAD", "/static/index.html", 200),
                ("GET", "/static/no-such-file.txt", 404),
                ("GET", "/echo", 301), ("GET", "/no-such-workspace/", 404),
                ("GET", "/monitor/healthz", 200), ("GET", "/monitor/api/v1/workspaces", 200),
                ("POST", "/monitor/healthz", 405), ("GET", "/", 200)]
        for method, path, status in plan:
            self.assertEqual(self.send(method, path), status, f"{method} {path}")
        after = self.scrape()
        delta = {k: after_v - self.requests(before)[k] for k, after_v in self.requests(after).items()}
        want = {k: 0 for k in delta}
        want.update({("workspace", "2xx"): 3, ("static", "2xx"): 2, ("static", "4xx"): 1,
                     ("other", "3xx"): 1, ("other", "4xx"): 1,
                     ("monitor", "2xx"): 2 + 1,  # + the first scrape, counted once it was answered
                     ("monitor", "4xx"): 1, ("home", "2xx"): 1})
        self.assertEqual({k: v for k, v in delta.items() if v}, {k: v for k, v in want.items() if v})
        # Each answered request was timed once, in its kind's histogram.
        dur_delta = {k: v - self.durations(before)[k] for k, v in self.durations(after).items()}
        for kind in KINDS:
            self.assertEqual(dur_delta[kind], sum(want[(kind, c)] for c in CLASSES if c != "1xx"), kind)
        total = sum(want.values())
        self.assertEqual(sum(dur_delta.values()), total)
        sums = {l["kind"]: v for n, l, v in after["cloudyknight_http_request_duration_seconds"]["samples"]
                if n.endswith("_sum")}
        self.assertGreater(sums["workspace"], 0)

    def test_upstream_error_counted(self):
        before = self.scrape()
        self.assertEqual(self.send("GET", "/echo/close"), 502)  # the app closes without answering
        after = self.scrape()
        self.assertEqual(value_of(after, "cloudyknight_upstream_errors_total")
                         - value_of(before, "cloudyknight_upstream_errors_total"), 1)
        self.assertEqual(self.requests(after)[("workspace", "5xx")]
                         - self.requests(before)[("workspace", "5xx")], 1)

    def test_workspace_gauges_match_the_api(self):
        # Scrape and list until two consecutive lists agree around a scrape (pysyntax keeps
        # retrying its start, so its status may move between the two).
        def consistent():
            first = [w["status"] for w in self.daemon.workspaces()]
            fams = self.scrape()
            second = [w["status"] for w in self.daemon.workspaces()]
            return (fams, second) if first == second else None
        fams, statuses = wait_until(consistent, 30, "a stable workspace list")
        gauges = {l["state"]: v for _, l, v in fams["cloudyknight_workspaces"]["samples"]}
        self.assertTrue(set(STATES) <= set(gauges), gauges)
        for state in set(STATES) | set(gauges):
            self.assertEqual(gauges.get(state, 0), statuses.count(state), state)
        self.assertEqual(sum(gauges.values()), 3)
        levels = {l["level"]: v for _, l, v in fams["cloudyknight_workspace_activity"]["samples"]}
        self.assertEqual(set(levels), set(LEVELS))
        self.assertEqual(sum(levels.values()), 3)

    def test_starts_install_times_and_jobs(self):
        fams = self.scrape()
        ok = value_of(fams, "cloudyknight_workspace_starts_total", result="ok")
        failed = value_of(fams, "cloudyknight_workspace_starts_total", result="failed")
        self.assertGreaterEqual(ok, 1)      # echo
        self.assertGreaterEqual(failed, 1)  # pysyntax
        installs = value_of(fams, "cloudyknight_install_duration_seconds",
                            "cloudyknight_install_duration_seconds_count")
        self.assertEqual(installs, ok)
        self.assertGreater(value_of(fams, "cloudyknight_install_duration_seconds",
                                    "cloudyknight_install_duration_seconds_sum"), 0)
        jobs = {l["state"]: v for _, l, v in fams["cloudyknight_jobs"]["samples"]}
        self.assertEqual(set(jobs), {"queued", "running", "done", "dead", "cancelled"})
        self.assertGreaterEqual(jobs["done"], 1)  # echo's start job

        def same_as_status():
            status, doc = self.daemon.api("/status")
            scraped = {l["state"]: v for _, l, v in self.scrape()["cloudyknight_jobs"]["samples"]}
            return status == 200 and doc.get("jobs") == scraped
        wait_until(same_as_status, 30, "job gauges equal to /status's job counts")

    def test_process_metrics(self):
        fams = self.scrape()
        self.assertGreater(value_of(fams, "cloudyknight_process_resident_memory_bytes"), 1 << 20)
        self.assertGreater(value_of(fams, "cloudyknight_process_open_fds"), 3)
        self.assertGreaterEqual(value_of(fams, "cloudyknight_process_cpu_seconds_total"), 0)
        start = value_of(fams, "cloudyknight_process_start_time_seconds")
        self.assertLess(abs(start - time.time()), 600, "the daemon started within the last minutes")
        self.assertLessEqual(start, time.time() + 1)
        (name, labels, value), = fams["cloudyknight_build_info"]["samples"]
        self.assertEqual(value, 1)
        self.assertRegex(labels["version"], r"^\d+\.\d+\.\d+")

    def test_events_clients_and_upgrade_counted(self):
        base = value_of(self.scrape(), "cloudyknight_events_clients")
        before = self.scrape()
        ws = WebSocketClient(self.daemon.port, "/monitor/ws")
        try:
            self.assertEqual(ws.status, 101)
            wait_until(lambda: value_of(self.scrape(), "cloudyknight_events_clients") == base + 1, 10,
                       "events_clients + 1")
        finally:
            ws.close()
        wait_until(lambda: value_of(self.scrape(), "cloudyknight_events_clients") == base, 10,
                   "events_clients back")
        # The upgrade is counted once the socket closed (1xx), and not timed.
        wait_until(lambda: self.requests(self.scrape())[("monitor", "1xx")]
                   == self.requests(before)[("monitor", "1xx")] + 1, 10, "monitor 1xx + 1")

    def test_head_and_methods(self):
        self.conn.request("HEAD", "/monitor/metrics")
        r = self.conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertEqual(r.read(), b"")
        self.assertEqual(r.getheader("Content-Type"), CONTENT_TYPE)
        self.assertEqual(self.send("POST", "/monitor/metrics"), 405)


if __name__ == "__main__":
    unittest.main()
