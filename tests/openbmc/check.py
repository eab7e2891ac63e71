#!/usr/bin/env python3
"""Assertions on what BitBake made of our layer in OpenBMC's real tree.

Usage: check.py --setup FACTS.json --kas FACTS.json --src LAYER_SNAPSHOT --proposed PDI_PROPOSED_YAML
                --keep-list tests/openbmc/keep-recipes.txt

The facts come from probe.py (real variable values, BitBake's dependency tree,
the daemon recipe's real do_install and oe-core's package split); the
expectations come from the layer's own sources (the YAML tree, the units as
installed) and from the OpenBMC tree (yaml_dir, the machine template, the
useradd lines of the real recipes). Each case prints "ok" or "FAIL"; the
issue-16 defect a case guards is named in brackets.
"""

import argparse
import json
import os
import re
import shlex
import sys

import yaml

import prune

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "packaging", "lib"))
from harness import Harness  # noqa: E402

DAEMON, LLDP_CONF, GROUP = "bmc-pairing-manager", "bmc-pairing-lldpd-conf", "packagegroup-bmc-pairing"
YAML_PKG = DAEMON + "-yaml"
OURS = (DAEMON, LLDP_CONF, GROUP)
SIDE_SUFFIXES = ("-dbg", "-dev", "-src", "-staticdev", "-doc", "-locale", "-ptest")
# useradd/groupadd options that take a value (shadow's useradd(8), groupadd(8)).
USERADD_VALUE_OPTS = {"-b", "--base-dir", "-c", "--comment", "-d", "--home-dir", "-e", "--expiredate",
                      "-f", "--inactive", "-g", "--gid", "-G", "--groups", "-k", "--skel", "-K", "--key",
                      "-p", "--password", "-s", "--shell", "-u", "--uid", "-R", "--root", "-P", "--prefix",
                      "-Z", "--selinux-user"}
GROUPADD_VALUE_OPTS = {"-g", "--gid", "-K", "--key", "-p", "--password", "-R", "--root", "-P", "--prefix"}


def words(v):
    return (v or "").split()


def load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


# --- useradd.bbclass parameters ---------------------------------------------------------
def split_commands(value):
    return [shlex.split(c) for c in (value or "").split(";") if c.strip()]


def parse_useradd(args):
    """(user, primary group or None, supplementary groups, creates a user group)"""
    user, primary, groups, no_user_group, i = None, None, [], False, 0
    while i < len(args):
        a = args[i]
        opt, _, inline = a.partition("=")
        if opt in USERADD_VALUE_OPTS:
            val = inline if inline else (args[i + 1] if i + 1 < len(args) else "")
            i += 0 if inline else 1
            if opt in ("-g", "--gid"):
                primary = val
            elif opt in ("-G", "--groups"):
                groups += [g for g in val.split(",") if g]
        elif a in ("-N", "--no-user-group"):
            no_user_group = True
        elif not a.startswith("-"):
            user = a
        i += 1
    return user, primary, groups, (primary is None and not no_user_group)


def parse_groupadd(args):
    name, i = None, 0
    while i < len(args):
        a = args[i]
        if a.partition("=")[0] in GROUPADD_VALUE_OPTS and "=" not in a:
            i += 1
        elif not a.startswith("-"):
            name = a
        i += 1
    return name


def groups_created(params):
    """Groups one package's GROUPADD_PARAM and USERADD_PARAM create."""
    out = set()
    for cmd in split_commands(params.get("GROUPADD_PARAM")):
        name = parse_groupadd(cmd)
        if name:
            out.add(name)
    for cmd in split_commands(params.get("USERADD_PARAM")):
        user, _primary, _groups, user_group = parse_useradd(cmd)
        if user and user_group:
            out.add(user)
    return out


def unit_groups(text):
    groups = []
    for line in text.splitlines():
        key, _, val = line.strip().partition("=")
        if key == "SupplementaryGroups":
            groups = [] if not val.strip() else groups + val.split()
        elif key == "Group" and val.strip():
            groups.append(val.strip())
    return groups


# --- debian.bbclass ---------------------------------------------------------------------
def debian_rename(name, prov):
    """Why debian.bbclass renames runtime package `name`, or None. Its rule
    (debian_package_name_hook): a package of AUTO_LIBNAME_PKGS without PKG or
    DEBIAN_NOAUTONAME, shipping a lib*.so* in libdir/base_libdir and nothing in a
    bin directory, is renamed after the library's soname."""
    r = prov["recipe"]
    if not r["inherits_debian"] or name not in words(r["AUTO_LIBNAME_PKGS"]):
        return None
    if prov.get("PKG") or prov.get("DEBIAN_NOAUTONAME"):
        return None
    libdirs = {r["libdir"], r["base_libdir"]}
    bindirs = {r["bindir"], r["sbindir"], r["base_bindir"], r["base_sbindir"]}
    files = words(prov.get("FILES"))
    libs = [f for f in files if os.path.dirname(f) in libdirs and re.match(r"lib.*\.so", os.path.basename(f))]
    bins = [f for f in files if f in bindirs or os.path.dirname(f) in bindirs]
    if libs and not bins:
        return (f"recipe {r['PN']} inherits debian and {name} ships {' '.join(libs)} "
                f"(no PKG:{name}, no DEBIAN_NOAUTONAME:{name}): renamed after the soname")
    return None


# --- interface YAML -------------------------------------------------------------------------
def interface_shape(doc):
    """Everything of a PDI interface but the prose (descriptions) and service_names."""
    def strip(x):
        if isinstance(x, dict):
            return {k: strip(v) for k, v in x.items() if k not in ("description", "service_names")}
        if isinstance(x, list):
            return [strip(v) for v in x]
        return x
    return strip(doc)


def yaml_tree(src):
    root = os.path.join(src, "dbus-interfaces-yaml", "yaml")
    out = []
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            if f.endswith((".interface.yaml", ".errors.yaml", ".events.yaml")):
                out.append(os.path.relpath(os.path.join(dirpath, f), root))
    return sorted(out)


class Checks:
    def __init__(self, h, setup, kas, src, proposed, keep_list):
        self.h, self.setup, self.kas, self.src, self.proposed = h, setup, kas, src, proposed
        self.keep_list = keep_list

    # --- both configurations ------------------------------------------------------------
    def resolves(self, f, label):
        h = self.h
        h.check(not f["errors"], f"{label}: the probe read everything", "\n".join(f["errors"]))
        g = f.get("depgraph", {})
        h.check(not g.get("failure") and not g.get("errors") and g.get("pn"),
                f"{label}: BitBake resolves obmc-phosphor-image's dependency tree (bitbake -g)",
                f"{g.get('failure')}\n" + "\n".join(g.get("errors") or []),
                note=f"{len(g.get('pn') or {})} recipes, {f['parse']['recipes']} parsed, "
                     f"{f['parse']['bbmask_entries']} BBMASK entries, parse {f['seconds']['parse']} s")
        if f["parse"]["bbmask_entries"] and g.get("pn"):
            _digest, _keep, chosen = prune.read_keep_list(self.keep_list)
            full = chosen.get(f["config_name"], {})
            now = {pn: prune.relative_choice(fn, f["tree"]) for pn, fn in g["pn"].items()}
            differ = [f"{pn}: pruned {now[pn]}, full {full[pn]}" for pn in sorted(now) if pn in full
                      and full[pn] != now[pn]]
            h.check(full and not differ, f"{label}: the pruned parse chose the same recipe files as the full "
                                         f"parse of keep-recipes.txt", "\n".join(differ) or "no choices recorded",
                    note=f"{len(set(now) & set(full))} recipes compared, {len(set(now) - set(full))} new")
        ours = f.get("ours") or {}
        missing = [pn for pn in OURS if not ours.get(pn)]
        skipped = {pn: ours[pn]["skipped"] for pn in OURS if ours.get(pn) and ours[pn]["skipped"]}
        h.check(not missing and not skipped, f"{label}: our three recipes parse, with their bbappends",
                f"missing {missing} skipped {skipped}")

    def in_image(self, f, label):
        """Our packages, and what they RDEPEND on, are in the image's runtime closure."""
        via = (f.get("image_closure") or {}).get("via") or {}
        want = [GROUP, DAEMON, LLDP_CONF]
        edges = (f.get("closure") or {}).get("edges") or {}
        todo = list(want)
        while todo:
            name = todo.pop()
            for dep in (edges.get(name) or {}).get("rdepends", []):
                pkg = edges.get(dep, {}).get("package", dep)
                if pkg not in want:
                    want.append(pkg)
                    todo.append(dep)

        def path(p):
            chain = [p]
            while via.get(chain[-1], {}).get("parent"):
                chain.append(via[chain[-1]]["parent"])
            return " <- ".join(chain) + " <- PACKAGE_INSTALL"
        missing = [p for p in want if p not in via]
        self.h.check(not missing, f"{label}: our packages and their RDEPENDS are in obmc-phosphor-image's "
                                  f"runtime closure", f"not installed: {missing}",
                     note=path(DAEMON) if DAEMON in via else "")

    def allarch(self, f, label):
        """[defect 1] no allarch recipe of ours depends on a package debian.bbclass renames."""
        provs = (f.get("closure") or {}).get("providers") or {}
        edges = (f.get("closure") or {}).get("edges") or {}
        problems, seen = [], []
        for pn in OURS:
            r = (f.get("ours") or {}).get(pn)
            if not r or not (r["PACKAGE_ARCH"] == "all" or r["inherits_allarch"]):
                continue
            seen.append(pn)
            for pkg, vals in r["packages"].items():
                for dep in re.sub(r"\([^)]*\)", "", vals.get("RDEPENDS") or "").split():
                    target = edges.get(dep, {}).get("package", dep)
                    why = debian_rename(target, provs[target]) if target in provs else None
                    if why:
                        problems.append(f"{pkg} (PACKAGE_ARCH=all, packagegroup={r['inherits_packagegroup']}) "
                                        f"RDEPENDS on {dep}: {why}")
        self.h.check(not problems, f"{label}: [defect 1] no allarch recipe of ours RDEPENDS on a package "
                                   f"debian.bbclass renames", "\n".join(problems),
                     note=f"allarch: {', '.join(seen) or 'none'}")

    def groups(self, f, units, label, need_image=True):
        """[defect 4] the units' groups are created by our packages (and so are in the image)."""
        h = self.h
        named = {u: unit_groups(t) for u, t in units.items()}
        provs = (f.get("closure") or {}).get("providers") or {}
        edges = (f.get("closure") or {}).get("edges") or {}
        # runtime closure of the daemon package alone: the package whose units name the groups
        closure, todo = set(), [DAEMON]
        while todo:
            name = todo.pop()
            pkg = edges.get(name, {}).get("package")
            if not pkg or pkg in closure:
                continue
            closure.add(pkg)
            todo += edges[name]["rdepends"]
        created = {}
        for pkg in closure:
            p = provs.get(pkg) or {}
            if pkg in words((p.get("recipe") or {}).get("USERADD_PACKAGES")):
                for g in groups_created(p):
                    created.setdefault(g, []).append(f"{pkg} ({p['recipe']['PN']})")
        problems = [f"{u}: group {g} is created by no package in {DAEMON}'s runtime closure "
                    f"({', '.join(sorted(closure))})"
                    for u, gs in named.items() for g in gs if g not in created]
        all_named = {g for gs in named.values() for g in gs}
        h.check(bool(named) and not problems,
                f"{label}: [defect 4] every group the units name is created by a package {DAEMON} RDEPENDS on",
                "\n".join(problems) or "no units",
                note="; ".join(f"{g} by {', '.join(created[g])}" for g in sorted(all_named & set(created))))
        if need_image:
            in_image = {}
            for pn, info in (f.get("image_useradd") or {}).items():
                for pkg, params in info["packages"].items():
                    for g in groups_created(params):
                        in_image.setdefault(g, []).append(pkg)
            for cmd in (f["image"].get("EXTRA_USERS_PARAMS") or "").split(";"):
                args = shlex.split(cmd)
                if args and args[0] == "groupadd" and parse_groupadd(args[1:]):
                    in_image.setdefault(parse_groupadd(args[1:]), []).append("EXTRA_USERS_PARAMS")
            missing = sorted({g for gs in named.values() for g in gs if g not in in_image})
            h.check(not missing, f"{label}: [defect 4] the image creates those groups "
                                 f"(useradd of its packages, EXTRA_USERS_PARAMS)",
                    f"missing in the image: {missing}")
        # lldpd's control socket belongs to its privilege-separation group; the pairing
        # manager runs lldpcli, so its unit must name exactly that group.
        lldpd = provs.get("lldpd", {}).get("recipe", {})
        m = re.search(r"--with-privsep-group=(\S+)", lldpd.get("EXTRA_OECONF") or "")
        mgr = named.get("xyz.openbmc_project.BmcPairingManager.service", [])
        h.check(bool(m) and m.group(1) in mgr,
                f"{label}: [defect 4] the pairing manager's unit names lldpd's privilege-separation group",
                f"lldpd EXTRA_OECONF privsep group: {m.group(1) if m else None}; unit groups: {mgr}",
                note=f"--with-privsep-group={m.group(1)}" if m else "")

    def lldpd_snippet(self, f, label):
        """The lldpd.d snippet turns reception on for the interface the daemon reads LLDP on."""
        lc = f.get("lldpd_conf") or {}
        files = lc.get("files") or {}
        text = files.get("/etc/lldpd.d/50-bmc-pairing.conf", "")
        lines = [x for x in text.splitlines() if x.strip() and not x.startswith("#")]
        ports = ",".join(words(lc.get("interfaces")))
        conf = os.path.join(self.src, "recipes-phosphor", "bmc-pairing", "bmc-pairing-manager", "config",
                            "bmc-pairing-manager.conf")
        with open(conf, encoding="utf-8") as fh:
            iface = json.load(fh).get("interface_id", "eth1")
        self.h.check(list(files) == ["/etc/lldpd.d/50-bmc-pairing.conf"]
                     and lines == [f"configure ports {ports} lldp status rx-and-tx"] and iface in ports.split(","),
                     f"{label}: bmc-pairing-lldpd-conf's do_install turns LLDP reception on for the daemon's "
                     f"interface_id",
                     f"files {list(files)}; lines {lines}; BMC_PAIRING_LLDP_INTERFACES {ports!r}; interface_id {iface}",
                     note=lines[0] if lines else "")

    # --- configuration "setup" ----------------------------------------------------------
    def opt_in(self):
        """Including the layer changes no image; the distro include adds the packagegroup."""
        without = words((self.setup.get("image_without_include") or {}).get("PACKAGE_INSTALL"))
        with_inc = words(self.setup["image"]["PACKAGE_INSTALL"])
        self.h.check(GROUP in with_inc and without and GROUP not in without,
                     "setup: obmc-phosphor-image installs packagegroup-bmc-pairing only with "
                     "conf/distro/include/bmc-pairing.inc", f"with the include: {GROUP in with_inc}; "
                     f"without its override: {GROUP in without} ({len(without)} packages)")

    def packages(self):
        """The daemon recipe's real do_install, split by oe-core into packages."""
        h, f = self.h, self.setup
        st = f.get("stage") or {}
        if not h.check(st and not st.get("error"),
                       "setup: the daemon recipe's do_install and oe-core's package split run",
                       st.get("error") or "not run"):
            return None
        r = f["ours"][DAEMON]
        pk = st["packages"]
        main = set(pk.get(DAEMON, []))
        want = {f"{r['bindir']}/{b}" for b in ("bmc-pairing-manager", "bmc-attestation")}
        want |= {f"{r['systemd_system_unitdir']}/{u}" for u in words(r["packages"][DAEMON]["SYSTEMD_SERVICE"])}
        want |= set(words(r["packages"][DAEMON]["CONFFILES"]))
        dbus_dir = os.path.join(self.src, "recipes-phosphor", "bmc-pairing", "bmc-pairing-manager", "dbus")
        want |= {f"{r['datadir']}/dbus-1/system.d/{p}" for p in os.listdir(dbus_dir)}
        side = {p: fl for p, fl in pk.items() if p.endswith(SIDE_SUFFIXES) and fl}
        h.check(want <= main and not side and not st["qa_errors_found"],
                f"setup: package {DAEMON} holds the binary and its bmc-attestation link, SYSTEMD_SERVICE units, CONFFILES and D-Bus "
                f"policies; nothing unshipped, nothing in -dev/-dbg/...",
                f"missing: {sorted(want - main)}\nother packages: {side}\nQA: "
                + "\n".join(x["msg"] for x in st.get("log", [])), note=f"{len(main)} files")
        return st

    def yaml_path(self, st):
        """[defect 2] the YAML lands in ${yaml_dir}/xyz/..., in ${PN}-yaml, where PDI puts its own."""
        h, r = self.h, self.setup["ours"][DAEMON]
        ydir = r["yaml_dir"]
        files = set(st["packages"].get(YAML_PKG, []))
        want = {f"{ydir}/{rel}" for rel in yaml_tree(self.src)}
        h.check(ydir and ydir in words(r["packages"][YAML_PKG]["FILES"]),
                f"setup: FILES:{YAML_PKG} covers meta-phosphor's yaml_dir", f"yaml_dir {ydir!r}, FILES "
                f"{r['packages'][YAML_PKG]['FILES']!r}", note=ydir)
        h.check(want and files == want,
                f"setup: [defect 2] {YAML_PKG} holds every interface YAML at ${{yaml_dir}}/<path in "
                f"dbus-interfaces-yaml/yaml>, nothing else",
                "expected:\n  " + "\n  ".join(sorted(want - files)) + "\ngot instead:\n  "
                + "\n  ".join(sorted(files - want)), note=f"{len(files)} files")
        orgs = words(self.setup["config"]["OBMC_ORG_YAML_SUBDIRS"])
        off = [rel for rel in yaml_tree(self.src) if not any(rel.startswith(o + "/") for o in orgs)]
        h.check(orgs and not off, "setup: [defect 2] every YAML path is below an OBMC_ORG_YAML_SUBDIRS "
                                  "entry (where consumers look)", f"OBMC_ORG_YAML_SUBDIRS {orgs}; outside: {off}",
                note=" ".join(orgs))

    def provisioning(self, st):
        """[defect 7] the proposed Provisioning interface is shipped, exactly as proposed."""
        h, r = self.h, self.setup["ours"][DAEMON]
        rel = "xyz/openbmc_project/Provisioning/Provisioning.interface.yaml"
        shipped = f"{r['yaml_dir']}/{rel}"
        ok = shipped in st["packages"].get(YAML_PKG, [])
        h.check(ok, f"setup: [defect 7] {YAML_PKG} ships the Provisioning interface (not in PDI master)",
                f"{shipped} is not in {YAML_PKG}")
        ours = os.path.join(self.src, "dbus-interfaces-yaml", "yaml", rel)
        with open(os.path.join(self.proposed, rel), encoding="utf-8") as fh:
            want = interface_shape(yaml.safe_load(fh))
        got = None
        if os.path.isfile(ours):
            with open(ours, encoding="utf-8") as fh:
                got = interface_shape(yaml.safe_load(fh))
        h.check(got == want, "setup: [defect 7] the shipped Provisioning YAML is the Gerrit proposal's "
                             "interface (names, types, flags, defaults, enums, paths)",
                f"ours: {json.dumps(got, sort_keys=True)}\nproposed: {json.dumps(want, sort_keys=True)}")

    def licenses(self, f, label):
        """[defect 5] LIC_FILES_CHKSUM names the LICENSE file of the source, which is Apache-2.0."""
        lic = f.get("licenses") or {}
        files = lic.get("files") or []
        problems = [lic["error"]] if lic.get("error") else []
        if not files:
            problems.append("LIC_FILES_CHKSUM has no file:// entry")
        for e in files:
            if not e["in_source"]:
                problems.append(f"{e['url']} is not a file of the source tree S={lic.get('S')}")
            if e.get("identified_as") != words(lic.get("LICENSE")):
                problems.append(f"{e['path']}: oe-core's license_finder says {e.get('identified_as')}, "
                                f"the recipe says {lic.get('LICENSE')}")
        if lic.get("qa_errors_found"):
            problems += [x["msg"] for x in lic.get("log", [])] or ["populate_lic_qa_checksum reported an error"]
        self.h.check(not problems, f"{label}: [defect 5] LIC_FILES_CHKSUM points at the source's LICENSE, "
                                   f"oe-core's license QA passes and identifies it as {lic.get('LICENSE')}",
                     "\n".join(problems), note=", ".join(e["url"].split(";")[0] for e in files))

    def source(self):
        """[defect 6] no invented repository: the integrator's mirror or externalsrc, else a clear skip."""
        h, v = self.h, self.setup.get("source_variants") or {}
        if not h.check(v, "setup: the daemon recipe was parsed with the source settings varied", "no data"):
            return
        sentinel = v["sentinel"]
        problems = []
        nothing = v["nothing set"]
        if nothing["remote"]:
            problems.append(f"with nothing set, SRC_URI already fetches from {nothing['remote']} "
                            f"(a repository the integrator did not name)")
        for name, must_name in (("nothing set", ("BMC_PAIRING_SRC_URI", "SRCREV", "externalsrc")),
                                ("only SRCREV", ("BMC_PAIRING_SRC_URI",)),
                                ("only BMC_PAIRING_SRC_URI", ("SRCREV",))):
            why = v[name]["skipped"] or ""
            if not why:
                problems.append(f"{name}: the recipe is not skipped (it would fail in do_fetch)")
            elif not all(w in why for w in must_name):
                problems.append(f"{name}: the skip message does not name {must_name}: {why!r}")
        both = v["both set"]
        if both["skipped"] or both["remote"] != [sentinel] or (both.get("fetcher") or {}).get(sentinel) != "git":
            problems.append(f"with both set: skipped={both['skipped']!r}, remote={both['remote']}, "
                            f"fetcher={both.get('fetcher') or both.get('fetcher_error')}")
        h.check(not problems, "setup: [defect 6] SRC_URI fetches only the mirror the integrator names; "
                              "without one (or SRCREV) the recipe is skipped, saying what to set",
                "\n".join(problems), note=f"nothing set: {nothing['skipped']!r}")
        r = self.setup["ours"][DAEMON]
        remote = [u for u in words(r["SRC_URI"]) if not u.startswith(("file://", "crate://"))]
        h.check(len(remote) == 1 and remote[0].startswith(f"git://{self.src};"),
                "setup: [defect 6] the integrator route: the recipe fetches our mirror at the pinned SRCREV",
                f"remote SRC_URI entries {remote}, SRCREV {r['SRCREV']}", note=f"{remote[0] if remote else ''}")

    # --- configuration "kas" ------------------------------------------------------------
    def kas_image(self):
        """[defect 3] kas gives the image OpenBMC's setup gives: the template's variables."""
        h, k, s = self.h, self.kas["image"], self.setup["image"]

        def norm(f, value):
            return (value or "").replace(f["config"]["TOPDIR"], "${TOPDIR}")
        diffs = [f"{n}: kas {norm(self.kas, k['template_values'].get(n))!r} != setup "
                 f"{norm(self.setup, s['template_values'].get(n))!r}"
                 for n in self.setup["template"]["names"]
                 if norm(self.kas, k["template_values"].get(n)) != norm(self.setup, s["template_values"].get(n))]
        h.check(not diffs, "kas: [defect 3] every variable the machine template and obmc-bsp-common.inc set "
                           "has the value OpenBMC's setup gives", "\n".join(diffs),
                note=f"{len(self.setup['template']['names'])} variables")
        fst = words(k["IMAGE_FSTYPES"])
        h.check("mtd-static" in fst and sorted(fst) == sorted(words(s["IMAGE_FSTYPES"])),
                "kas: [defect 3] IMAGE_FSTYPES of obmc-phosphor-image has mtd-static (the .static.mtd "
                "QEMU boots), as with setup", f"kas {fst}, setup {words(s['IMAGE_FSTYPES'])}", note=" ".join(fst))
        h.check("allow-root-login" in words(k["IMAGE_FEATURES"]),
                "kas: [defect 3] IMAGE_FEATURES has allow-root-login (root logs in, for busctl)",
                f"IMAGE_FEATURES {k['IMAGE_FEATURES']}")

    def kas_qemu(self):
        """What qemu/openbmc-two-bmcs.sh relies on in the image it boots."""
        h, k = self.h, self.kas
        feats = words(k["config"]["MACHINE_FEATURES"])
        tis_i2c = [n for n, t in (k.get("kernel") or {}).get("fragments", {}).items()
                   if re.search(r"^CONFIG_TCG_TIS_I2C=y$", t, re.M)]
        h.check("tpm2" in feats and tis_i2c,
                "kas: tpm2 machine feature; the kernel gets CONFIG_TCG_TIS_I2C=y (QEMU's tpm-tis-i2c)",
                f"MACHINE_FEATURES {feats}; kernel fragments {list((k.get('kernel') or {}).get('fragments', {}))}",
                note=f"{(k.get('kernel') or {}).get('PN')}: {', '.join(tis_i2c)}")
        qb = k["image"]
        h.check("ast2600-evb" in (qb.get("QB_MACHINE") or "") and qb.get("QB_DEFAULT_FSTYPE") == "static.mtd"
                and qb.get("QB_SYSTEM_NAME") == "qemu-system-arm",
                "kas: the image's qemuboot settings are qemu-system-arm -machine ast2600-evb with static.mtd",
                f"QB_SYSTEM_NAME {qb.get('QB_SYSTEM_NAME')} QB_MACHINE {qb.get('QB_MACHINE')} "
                f"QB_DEFAULT_FSTYPE {qb.get('QB_DEFAULT_FSTYPE')}")

    def kas_externalsrc(self):
        """[defect 6] the externalsrc route: kas builds this checkout, no remote source."""
        r = (self.kas.get("ours") or {}).get(DAEMON) or {}
        remote = [u for u in words(r.get("SRC_URI")) if not u.startswith(("file://", "crate://"))]
        self.h.check(r and not r["skipped"] and r["inherits_externalsrc"]
                     and os.path.realpath(r.get("EXTERNALSRC") or "") == os.path.realpath(self.src) and not remote,
                     "kas: [defect 6] externalsrc.yml builds the checkout itself (EXTERNALSRC = the repository "
                     "root, nothing remote)", f"EXTERNALSRC {r.get('EXTERNALSRC')!r} (want {self.src}), "
                     f"skipped {r.get('skipped')!r}, remote {remote}", note=r.get("EXTERNALSRC") or "")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--setup", required=True)
    ap.add_argument("--kas", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--proposed", required=True)
    ap.add_argument("--keep-list", required=True)
    args = ap.parse_args()
    h = Harness()
    c = Checks(h, load(args.setup), load(args.kas), os.path.abspath(args.src), args.proposed, args.keep_list)
    print("\n== configuration setup: OpenBMC's setup evb-ast2600 + meta-tpm + our layer (no tpm2)")
    c.resolves(c.setup, "setup")
    c.in_image(c.setup, "setup")
    c.allarch(c.setup, "setup")
    st = c.packages()
    if st:
        c.yaml_path(st)
        c.provisioning(st)
        c.groups(c.setup, st["units"], "setup")
    c.licenses(c.setup, "setup")
    c.source()
    c.opt_in()
    c.lldpd_snippet(c.setup, "setup")
    print("\n== configuration kas: meta-bmc-pairing/kas/evb-ast2600.yml + externalsrc.yml (tpm2)")
    c.resolves(c.kas, "kas")
    c.in_image(c.kas, "kas")
    c.allarch(c.kas, "kas")
    if st:
        c.groups(c.kas, st["units"], "kas")
    c.kas_image()
    c.kas_qemu()
    c.kas_externalsrc()
    c.licenses(c.kas, "kas")
    c.lldpd_snippet(c.kas, "kas")
    print(f"\n{h.passed} passed, {h.failed} failed")
    h.exit()


if __name__ == "__main__":
    main()
