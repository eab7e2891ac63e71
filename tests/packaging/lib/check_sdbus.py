#!/usr/bin/env python3
"""Run every PDI YAML file through the real sdbus++ generators.

Usage: check_sdbus.py YAML_ROOT

*.interface.yaml: markdown, common-header, server-header, server-cpp,
client-header, aserver-header. *.errors.yaml: exception-header, exception-cpp,
markdown. *.events.yaml are not run here: the pinned sdbus++ 2.17 has no event
generators; tools/check-pdi-yaml.py checks them against sdbusplus's events
schema rules (check_pdi_strict.py). Each must exit 0 and print something (exception-cpp may be empty:
its template is empty in sdbusplus 2.17, errors are header-only). A self-test runs the same
loop over a fixture sdbus++ rejects (fixtures/bad/unknown-type) and expects
it to fail, so this check is known to be able to fail.
"""

import os
import shutil
import subprocess
import sys

from harness import Harness, PKG

IFACE_GENS = ["markdown", "common-header", "server-header", "server-cpp",
              "client-header", "aserver-header"]
ERROR_GENS = ["exception-header", "exception-cpp", "markdown"]


def items(root):
    ifaces, errors = [], []
    for dirpath, _dirs, files in os.walk(root):
        for f in sorted(files):
            rel = os.path.relpath(os.path.join(dirpath, f), root)
            if f.endswith(".interface.yaml"):
                ifaces.append(rel[: -len(".interface.yaml")].replace(os.sep, "."))
            elif f.endswith(".errors.yaml"):
                errors.append(rel[: -len(".errors.yaml")].replace(os.sep, "."))
    return sorted(ifaces), sorted(errors)


def run_all(sdbus, root):
    """Yield (label, ok, detail) for every generator run."""
    ifaces, errors = items(root)
    for kind, names, gens in (("interface", ifaces, IFACE_GENS), ("error", errors, ERROR_GENS)):
        for name in names:
            for gen in gens:
                p = subprocess.run([sdbus, "-r", root, kind, gen, name],
                                   capture_output=True, text=True)
                # exception-cpp is an empty template in sdbusplus 2.17 (errors
                # are header-only); everything else must generate something.
                ok = p.returncode == 0 and (gen == "exception-cpp" or p.stdout.strip() != "")
                detail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
                yield f"{kind} {gen} {name}", ok, detail


def main():
    h = Harness()
    root = sys.argv[1]
    sdbus = shutil.which("sdbus++")
    if not sdbus:
        h.fail("sdbus++ found", "sdbus++ not on PATH (pip install sdbusplus)")
        h.exit()
    ifaces, errors = items(root)
    h.check(bool(ifaces), f"{root} has *.interface.yaml files",
            f"no interface YAML under {root}", note=f"{len(ifaces)} interfaces, {len(errors)} errors files")
    for label, ok, detail in run_all(sdbus, root):
        h.check(ok, f"sdbus++ {label}", detail)

    bad = os.path.join(PKG, "fixtures", "bad", "unknown-type")
    results = list(run_all(sdbus, bad))
    h.check(results and not all(ok for _l, ok, _d in results),
            "self-test: sdbus++ loop fails on fixtures/bad/unknown-type",
            "sdbus++ accepted a type 'int33'")
    h.exit()


if __name__ == "__main__":
    main()
