"""Tiny result printer shared by the packaging checks.

Every case prints one line, `  ok   <name>` or `  FAIL <name>`, followed by
indented detail on failure. tests/packaging/run.sh counts those lines; a check
script that exits non-zero without a FAIL line counts as one failure.
"""

import os
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
PKG = os.path.join(REPO, "tests", "packaging")


class Harness:
    def __init__(self):
        self.failed = 0
        self.passed = 0

    def ok(self, name, note=""):
        self.passed += 1
        print(f"  ok   {name}" + (f"  ({note})" if note else ""), flush=True)

    def fail(self, name, detail=""):
        self.failed += 1
        print(f"  FAIL {name}", flush=True)
        for line in str(detail).rstrip().splitlines()[:40]:
            print(f"       {line}", flush=True)

    def check(self, cond, name, detail="", note=""):
        if cond:
            self.ok(name, note)
        else:
            self.fail(name, detail)
        return cond

    def note(self, text):
        for line in text.rstrip().splitlines():
            print(f"       {line}", flush=True)

    def exit(self):
        sys.exit(1 if self.failed else 0)
