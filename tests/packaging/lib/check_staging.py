#!/usr/bin/env python3
"""Stage the install exactly as the recipe does and check the result.

Usage: check_staging.py YAML_ROOT

Runs recipes-phosphor/bmc-pairing/bmc-pairing-manager/install-bmc-pairing.sh
(the script do_install calls) into a temporary DESTDIR with OE's default
paths, using target/release/bmc-pairing-manager (the multi-call binary) when
built and a dummy executable otherwise (said in the output). Then:
- the exact file list and modes (binary 0755, bmc-attestation a relative link
  to it, units/policies/config 0644,
  certs dir 0700) and the YAML under meta-phosphor's ${yaml_dir}
  (/usr/share/phosphor-dbus-yaml; tests/openbmc reads it from the real class);
- the default configuration;
- `systemd-analyze verify` of both units, ExecStart pointed at the staged
  binaries (SYSTEMD_UNIT_PATH, host units for dbus.socket etc.); any message
  counts as a failure because verify exits 0 on most parse errors;
- `systemd-analyze security --offline=true --threshold=25`: exposure <= 2.5;
- with the real binary: the bmc-attestation link runs the attestation daemon;
- self-tests: verify flags a misspelt directive and a missing binary, the
  threshold rejects the anchor's unhardened unit, the install script fails
  without a binary, and the mode check notices a wrong mode.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

from harness import Harness, REPO

FILES = os.path.join(REPO, "recipes-phosphor", "bmc-pairing", "bmc-pairing-manager")
SCRIPT = os.path.join(FILES, "install-bmc-pairing.sh")
BINS = ["bmc-pairing-manager"]
LINKS = {"bmc-attestation": "bmc-pairing-manager"}  # name -> relative link target
PATHS = dict(bindir="/usr/bin", sysconfdir="/etc", datadir="/usr/share",
             unitdir="/usr/lib/systemd/system", yamldir="/usr/share/phosphor-dbus-yaml")
UNITS = ["xyz.openbmc_project.BmcPairingManager.service", "xyz.openbmc_project.attestation.service"]
# Targets the daemon starts itself (the trust quorum's); installed, never enabled.
TARGETS = ["bmc-trust-quorum-unlocked.target"]
POLICIES = ["xyz.openbmc_project.BmcPairingManager.conf", "xyz.openbmc_project.attestation.conf"]
THRESHOLD = 25  # systemd's exposure scale x10: 2.5


def install(destdir, binsrc, yaml_root):
    return subprocess.run(
        ["sh", SCRIPT, "--destdir", destdir, "--bindir", PATHS["bindir"], "--sysconfdir", PATHS["sysconfdir"],
         "--datadir", PATHS["datadir"], "--systemd-unitdir", PATHS["unitdir"], "--bin-src", binsrc,
         "--files", FILES, "--yaml-root", yaml_root, "--yaml-dir", PATHS["yamldir"]],
        capture_output=True, text=True)


def expected_tree(yaml_root):
    """path -> mode (files) or 'dir:<mode>' for the directories we own."""
    e = {}
    for b in BINS:
        e[f"{PATHS['bindir']}/{b}"] = 0o755
    for name, target in LINKS.items():
        e[f"{PATHS['bindir']}/{name}"] = f"link:{target}"
    for u in UNITS + TARGETS:
        e[f"{PATHS['unitdir']}/{u}"] = 0o644
    for p in POLICIES:
        e[f"{PATHS['datadir']}/dbus-1/system.d/{p}"] = 0o644
    for c in ("bmc-pairing-manager.conf", "bmc-attestation.conf"):
        e[f"{PATHS['sysconfdir']}/bmc-pairing-manager/{c}"] = 0o644
    e[f"{PATHS['sysconfdir']}/bmc-pairing-manager/certs"] = "dir:0o700"
    if os.path.isdir(yaml_root):
        for dirpath, _d, files in os.walk(yaml_root):
            for f in files:
                if f.endswith((".interface.yaml", ".errors.yaml", ".events.yaml")):
                    rel = os.path.relpath(os.path.join(dirpath, f), yaml_root)
                    e[f"{PATHS['yamldir']}/{rel}"] = 0o644
    return e


def tree_problems(destdir, expected):
    P, got = [], {}
    for dirpath, dirs, files in os.walk(destdir):
        for f in files:
            p = os.path.join(dirpath, f)
            got["/" + os.path.relpath(p, destdir)] = (
                f"link:{os.readlink(p)}" if os.path.islink(p) else stat.S_IMODE(os.lstat(p).st_mode))
        for d in dirs:
            p = os.path.join(dirpath, d)
            rel = "/" + os.path.relpath(p, destdir)
            if rel in expected:
                got[rel] = f"dir:{oct(stat.S_IMODE(os.lstat(p).st_mode))}"
    for path, mode in sorted(expected.items()):
        if path not in got:
            P.append(f"missing {path}")
        elif got[path] != mode:
            P.append(f"{path}: mode {got[path] if isinstance(got[path], str) else oct(got[path])}, "
                     f"expected {mode if isinstance(mode, str) else oct(mode)}")
    for path in sorted(set(got) - set(expected)):
        P.append(f"unexpected {path}")
    return P


def verify(unit_dir, units):
    env = dict(os.environ, SYSTEMD_UNIT_PATH=unit_dir + ":", SYSTEMD_LOG_COLOR="0")
    p = subprocess.run(["systemd-analyze", "verify", "--man=no"] + [os.path.join(unit_dir, u) for u in units],
                       capture_output=True, text=True, env=env)
    out = (p.stdout + p.stderr).strip()
    return p.returncode == 0 and not out, out


def security(unit_dir, unit):
    env = dict(os.environ, SYSTEMD_UNIT_PATH=unit_dir + ":", SYSTEMD_LOG_COLOR="0")
    p = subprocess.run(["systemd-analyze", "security", "--offline=true", f"--threshold={THRESHOLD}",
                        "--no-pager", os.path.join(unit_dir, unit)], capture_output=True, text=True, env=env)
    overall = [l for l in p.stdout.splitlines() if "Overall exposure level" in l]
    return p.returncode == 0, (overall[-1].split(":", 1)[-1].strip() if overall else p.stderr.strip())


def units_for_verify(destdir, unit_dir):
    os.makedirs(unit_dir, exist_ok=True)
    for u in UNITS:
        with open(os.path.join(destdir, PATHS["unitdir"].lstrip("/"), u), encoding="utf-8") as f:
            text = f.read()
        text = text.replace(f"ExecStart={PATHS['bindir']}/", f"ExecStart={destdir}{PATHS['bindir']}/")
        with open(os.path.join(unit_dir, u), "w", encoding="utf-8") as f:
            f.write(text)


def main():
    h = Harness()
    yaml_root = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="staging-")
    os.chmod(tmp, 0o755)
    try:
        binsrc = os.path.join(tmp, "bin-src")
        os.makedirs(binsrc)
        dummies = []
        for b in BINS:
            real = os.path.join(REPO, "target", "release", b)
            if os.path.isfile(real) and os.access(real, os.X_OK):
                shutil.copy2(real, os.path.join(binsrc, b))
            else:
                dummies.append(b)
                with open(os.path.join(binsrc, b), "w") as f:
                    f.write("#!/bin/sh\n# dummy stand-in for an unbuilt binary\nexit 0\n")
                os.chmod(os.path.join(binsrc, b), 0o755)
        if dummies:
            h.note(f"NOTE: target/release has no {', '.join(dummies)}: staging dummy executable(s) instead")
        else:
            h.note("using the binaries from target/release/")

        dest = os.path.join(tmp, "image")
        p = install(dest, binsrc, yaml_root)
        if not h.check(p.returncode == 0, "install-bmc-pairing.sh stages the package", p.stderr):
            h.exit()
        h.check(not tree_problems(dest, expected_tree(yaml_root)), "staged file list and modes",
                "\n".join(tree_problems(dest, expected_tree(yaml_root))),
                note=f"{len(expected_tree(yaml_root))} entries")
        with open(os.path.join(dest, "etc/bmc-pairing-manager/bmc-pairing-manager.conf"), encoding="utf-8") as f:
            conf = json.load(f)
        h.check(conf == {"port": 8090, "interface_id": "eth1", "cert_root": "/"},
                "default bmc-pairing-manager.conf", f"got {conf}")
        with open(os.path.join(dest, "etc/bmc-pairing-manager/bmc-attestation.conf"), encoding="utf-8") as f:
            aconf = json.load(f)
        h.check(isinstance(aconf, dict), "bmc-attestation.conf is a JSON object", f"got {aconf!r}")
        if not dummies:
            link = os.path.join(dest, PATHS["bindir"].lstrip("/"), "bmc-attestation")
            p = subprocess.run([link, "--help"], capture_output=True, text=True)
            h.check(p.returncode == 0 and "SPDM 1.2 (DMTF DSP0274)" in p.stdout,
                    "the staged bmc-attestation link runs the attestation daemon", p.stdout + p.stderr)

        unit_dir = os.path.join(tmp, "units")
        units_for_verify(dest, unit_dir)
        ok, out = verify(unit_dir, UNITS)
        h.check(ok, "systemd-analyze verify: both units clean", out)
        for u in UNITS:
            ok, level = security(unit_dir, u)
            h.check(ok, f"systemd-analyze security {u} <= {THRESHOLD / 10}", level, note=level)

        # --- self-tests -------------------------------------------------------
        bad = os.path.join(tmp, "bad-units")
        shutil.copytree(unit_dir, bad)
        mgr = os.path.join(bad, UNITS[0])
        with open(mgr, encoding="utf-8") as f:
            text = f.read()
        with open(mgr, "w", encoding="utf-8") as f:
            f.write(text.replace("ProtectSystem=strict", "ProtectSytem=strict"))
        ok, out = verify(bad, [UNITS[0]])
        h.check(not ok and "ProtectSytem" in out, "self-test: verify flags a misspelt directive", out)
        with open(mgr, "w", encoding="utf-8") as f:
            f.write(text.replace(f"{dest}{PATHS['bindir']}/bmc-pairing-manager", f"{dest}/usr/bin/not-installed"))
        ok, out = verify(bad, [UNITS[0]])
        h.check(not ok and "not-installed" in out, "self-test: verify flags a missing ExecStart binary", out)
        anchor = os.path.join(bad, "anchor-like.service")
        with open(anchor, "w", encoding="utf-8") as f:
            f.write(f"[Unit]\nDescription=unhardened, as the anchor's units\n[Service]\nType=dbus\n"
                    f"BusName=xyz.openbmc_project.BmcPairingManager\n"
                    f"ExecStart={dest}{PATHS['bindir']}/bmc-pairing-manager\nRestart=always\n"
                    f"[Install]\nWantedBy=multi-user.target\n")
        ok, level = security(bad, "anchor-like.service")
        h.check(not ok, "self-test: the exposure threshold rejects an unhardened unit", level, note=level)

        nobin = os.path.join(tmp, "bin-missing")
        os.makedirs(nobin)
        p = install(os.path.join(tmp, "image2"), nobin, yaml_root)
        h.check(p.returncode != 0 and "bmc-pairing-manager" in p.stderr,
                "self-test: install script fails when a binary is missing", f"rc={p.returncode} {p.stderr}")
        os.chmod(os.path.join(dest, PATHS["unitdir"].lstrip("/"), UNITS[1]), 0o664)
        P = tree_problems(dest, expected_tree(yaml_root))
        h.check(any("mode 0o664" in x for x in P), "self-test: mode check notices a 0664 unit", f"{P}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    h.exit()


if __name__ == "__main__":
    main()
