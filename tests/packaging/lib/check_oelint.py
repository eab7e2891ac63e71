#!/usr/bin/env python3
"""oelint-adv over every .bb, .bbappend and layer.conf of meta-bmc-pairing.

- Rules come from the curated /.oelint-rules.json (rule -> severity, with a
  reason for each under "_reasons"); every rule must exist in oelint-adv and
  have a reason. OpenBMC variables, machines and distros are taught with
  --constantmods=+.oelint-constants.json (the "=" form: --constantmods takes
  nargs='+' and would swallow the file list otherwise).
- --release wrynose, --suppress oelint.vars.homepageping (network).
- Gate: no finding of severity error. Warnings are shown, not fatal.
- The one exclusion: oelint.vars.inconspaces in *-crates.inc, whose
  `SRC_URI += " \\` layout is what do_update_crates generates.
- Mutation self-tests on a copy of the layer prove the gate fails on a
  hard-coded /usr/share, a missing crates.inc, a non-specific image override,
  AUTOREV, and that inconspaces still applies to the recipe itself.
"""

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

from harness import Harness, REPO

RULES = os.path.join(REPO, ".oelint-rules.json")
CONSTANTS = os.path.join(REPO, ".oelint-constants.json")
LAYER = "meta-bmc-pairing"
FMT = "{path}|{line}|{severity}|{id}|{msg}"


def lint_files(repo):
    layer = os.path.join(repo, LAYER)
    files = [os.path.join(layer, "conf", "layer.conf")]
    for pat in ("recipes-*/*/*.bb", "recipes-*/*/*.bbappend"):
        files += sorted(glob.glob(os.path.join(layer, pat)))
    return files


def run_oelint(files, rulefile):
    cmd = ["oelint-adv", "--quiet", "--release", "wrynose", "--jobs", "2",
           f"--rulefile={rulefile}", f"--constantmods=+{CONSTANTS}",
           "--suppress", "oelint.vars.homepageping", f"--messageformat={FMT}"] + files
    p = subprocess.run(cmd, capture_output=True, text=True)
    findings, other = [], []
    for line in (p.stdout + p.stderr).splitlines():
        parts = line.split("|", 4)
        if len(parts) == 5 and parts[2] in ("error", "warning", "info"):
            findings.append(dict(path=parts[0], line=parts[1], severity=parts[2], id=parts[3], msg=parts[4]))
        elif line.strip():
            other.append(line)
    return findings, other, p.returncode


def split(findings):
    excluded = [f for f in findings if f["path"].endswith("-crates.inc") and f["id"] == "oelint.vars.inconspaces"]
    kept = [f for f in findings if f not in excluded]
    return kept, excluded


def fmt(f, base):
    return f"{os.path.relpath(f['path'], base)}:{f['line']}: {f['severity']}: {f['id']}: {f['msg']}"


def main():
    h = Harness()
    with open(RULES, encoding="utf-8") as fh:
        annotated = json.load(fh)
    rules = {k: v for k, v in annotated.items() if not k.startswith("_")}
    reasons = annotated.get("_reasons", {})
    known = json.loads(subprocess.run(["oelint-adv", "--release", "wrynose", "--print-rulefile"],
                                      capture_output=True, text=True).stdout)
    h.check(not [r for r in rules if r not in known], "every curated rule exists in oelint-adv",
            "unknown: " + ", ".join(r for r in rules if r not in known))
    h.check(set(rules) == set(reasons), "every curated rule has a reason (and every reason a rule)",
            f"no reason: {sorted(set(rules) - set(reasons))}; no rule: {sorted(set(reasons) - set(rules))}")
    h.check("oelint.vars.homepageping" not in rules, "homepageping (network) is not enabled", "remove it")

    tmp = tempfile.mkdtemp(prefix="oelint-")
    try:
        rulefile = os.path.join(tmp, "rules.json")
        with open(rulefile, "w", encoding="utf-8") as fh:
            json.dump(rules, fh)

        files = lint_files(REPO)
        h.check(len(files) >= 5, "files to lint found", f"{files}",
                note=", ".join(os.path.relpath(f, REPO) for f in files))
        findings, other, _rc = run_oelint(files, rulefile)
        kept, excluded = split(findings)
        errors = [f for f in kept if f["severity"] == "error"]
        warnings = [f for f in kept if f["severity"] != "error"]
        h.check(not errors and not other, "oelint-adv: no errors in the layer",
                "\n".join([fmt(f, REPO) for f in errors] + other),
                note=f"{len(warnings)} warning(s), {len(excluded)} inconspaces in *-crates.inc excluded")
        for w in warnings:
            h.note("warning: " + fmt(w, REPO))

        # --- mutation self-tests on a copy -----------------------------------
        def mutated(name, path_in_layer, edit, expect_id):
            work = os.path.join(tmp, name)
            shutil.copytree(os.path.join(REPO, LAYER), os.path.join(work, LAYER), symlinks=True)
            shutil.copytree(os.path.join(REPO, "recipes-phosphor"), os.path.join(work, "recipes-phosphor"), symlinks=True)
            target = os.path.join(work, LAYER, path_in_layer)
            edit(target)
            fs, oth, _ = run_oelint(lint_files(work), rulefile)
            kept_m, _ = split(fs)
            hit = [f for f in kept_m if f["severity"] == "error" and f["id"].startswith(expect_id)]
            h.check(bool(hit), f"self-test: {name} -> error {expect_id}",
                    "oelint did not report it; findings:\n" + "\n".join(fmt(f, work) for f in kept_m) + "\n".join(oth))

        recipe = "recipes-phosphor/bmc-pairing/bmc-pairing-manager_git.bb"

        def sub(old, new):
            def edit(path):
                with open(path, encoding="utf-8") as fh:
                    text = fh.read()
                assert old in text, f"{old!r} not in {path}"
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(text.replace(old, new))
            return edit

        mutated("hardcoded-usr-share", recipe,
                sub('FILES:${PN} += "${datadir}/dbus-1/system.d"', 'FILES:${PN} += "/usr/share/dbus-1/system.d"\nCONFFILES:${PN} += "/etc/bmc-pairing-manager/x.conf"'),
                "oelint.vars.pathhardcode")
        mutated("crates-inc-missing", "recipes-phosphor/bmc-pairing/bmc-pairing-manager-crates.inc",
                os.remove, "oelint.file.requirenotfound")
        mutated("image-append-not-specific", "recipes-pairing/images/obmc-phosphor-image.bbappend",
                sub(":append:df-bmc-pairing", ":append"), "oelint.vars.noncoreoverride")
        mutated("autorev", recipe, sub('SRCREV = "0000000000000000000000000000000000000000"',
                                       'SRCREV = "${AUTOREV}"'), "oelint.vars.autorev")
        mutated("inconspaces-in-recipe", recipe,
                sub('RDEPENDS:${PN} += "libtss2-tcti-device lldpd tpm2-tss"',
                    'RDEPENDS:${PN} += " libtss2-tcti-device lldpd tpm2-tss"'),
                "oelint.vars.inconspaces")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    h.exit()


if __name__ == "__main__":
    main()
