#!/usr/bin/env python3
"""Prints what each failed test said, from a ctest build folder's LastTest.log.

ctest --output-on-failure prints a failure where it happens, in the middle of a long run; CI
keeps only the end of the output. scripts/test.sh calls this last, so the reason for a red run
is what a reader sees first: for a unittest module its FAIL/ERROR blocks, otherwise the end of
the test's output.

usage: failed_tests.py BUILD_DIR [MAX_LINES_PER_TEST]
"""
import os
import re
import sys

SEPARATOR = "-" * 58


def sections(log):
    """(name, output lines, passed) for every test in the log."""
    name, lines, inside = None, [], False
    for line in log.splitlines():
        m = re.match(r"^\d+/\d+ Test: (.+)$", line)
        if m:
            name, lines, inside = m.group(1), [], False
        elif name and line == "Output:":
            inside = None  # the separator line comes next
        elif name and inside is None and line == SEPARATOR:
            inside = True
        elif name and inside and line == "<end of output>":
            inside = False
        elif name and inside:
            lines.append(line)
        elif name and line.startswith("Test Passed"):
            yield name, lines, True
            name = None
        elif name and (line.startswith("Test Failed") or line.startswith("Test Fail")):
            yield name, lines, False
            name = None


def digest(lines, limit):
    """The unittest FAIL/ERROR blocks if there are any, else the last `limit` lines."""
    blocks, keep = [], False
    for line in lines:
        if re.match(r"^(FAIL|ERROR): ", line):
            keep = True
            blocks.append("=" * 70)
        elif re.match(r"^Ran \d+ tests? in ", line):
            keep = False
        if keep:
            blocks.append(line)
    chosen = blocks if blocks else lines
    return chosen[-limit:]


def main():
    build = sys.argv[1]
    limit = int(sys.argv[2]) if len(sys.argv) > 2 else 120
    path = os.path.join(build, "Testing", "Temporary", "LastTest.log")
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            log = f.read()
    except OSError as e:
        print(f"no test log to summarise ({e})")
        return
    failed = [(n, l) for n, l, ok in sections(log) if not ok]
    for name, lines in failed:
        print(f"---- {name} failed; what it said:")
        for line in digest(lines, limit):
            print("  " + line)


if __name__ == "__main__":
    main()
