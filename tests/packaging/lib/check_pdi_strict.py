#!/usr/bin/env python3
"""tools/check-pdi-yaml.py against the YAML root and the fixtures.

Usage: check_pdi_strict.py YAML_ROOT

- the YAML root and fixtures/good must pass with no finding;
- every fixtures/bad/<case>/ must fail, print each line of its `expect` file
  (the message naming the defect), and print nothing else: one defect per
  fixture. For each bad case it also records whether sdbus++ (server-header)
  notices, which shows what the strict checker adds.
"""

import os
import shutil
import subprocess
import sys

from harness import Harness, PKG, REPO

CHECKER = os.path.join(REPO, "tools", "check-pdi-yaml.py")


def run_checker(root):
    p = subprocess.run([sys.executable, CHECKER, root], capture_output=True, text=True)
    return p.returncode, [l for l in p.stdout.splitlines() if l.strip()], p.stderr


def sdbus_verdict(sdbus, root):
    for dirpath, _d, files in os.walk(root):
        for f in files:
            if f.endswith(".interface.yaml"):
                rel = os.path.relpath(os.path.join(dirpath, f), root)
                name = rel[: -len(".interface.yaml")].replace(os.sep, ".")
                p = subprocess.run([sdbus, "-r", root, "interface", "server-header", name],
                                   capture_output=True, text=True)
                if p.returncode != 0:
                    return "sdbus++ rejects it too"
    return "sdbus++ accepts it silently"


def main():
    h = Harness()
    yaml_root = sys.argv[1]
    good = os.path.join(PKG, "fixtures", "good")
    roots = [yaml_root] if os.path.abspath(yaml_root) == os.path.abspath(good) else [yaml_root, good]
    for root in roots:
        rc, out, err = run_checker(root)
        h.check(rc == 0 and not out, f"strict checker passes {os.path.relpath(root, REPO)}",
                "\n".join(out) + "\n" + err)

    sdbus = shutil.which("sdbus++")
    bad_dir = os.path.join(PKG, "fixtures", "bad")
    cases = sorted(d for d in os.listdir(bad_dir) if os.path.isdir(os.path.join(bad_dir, d)))
    h.check(len(cases) >= 10, "bad fixtures present", f"only {len(cases)} cases")
    for case in cases:
        root = os.path.join(bad_dir, case)
        with open(os.path.join(root, "expect"), encoding="utf-8") as f:
            expected = [l.rstrip("\n") for l in f if l.strip()]
        rc, out, err = run_checker(root)
        missing = [e for e in expected if not any(e in line for line in out)]
        problems = []
        if rc != 1:
            problems.append(f"exit status {rc}, expected 1")
        if missing:
            problems.append("missing message(s): " + " | ".join(missing))
        if len(out) != len(expected):
            problems.append(f"{len(out)} finding(s), expected exactly {len(expected)} (one defect per fixture)")
        verdict = sdbus_verdict(sdbus, root) if sdbus else "sdbus++ not run"
        h.check(not problems, f"bad/{case} rejected", "\n".join(problems + ["output:"] + out + [err]),
                note=verdict)
    h.exit()


if __name__ == "__main__":
    main()
