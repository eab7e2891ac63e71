#!/usr/bin/env python3
"""Layer sanity for meta-bmc-pairing.

- conf/layer.conf: one collection (bmc-pairing-layer), BBFILE_PATTERN
  "^${LAYERDIR}/", LAYERSERIES_COMPAT exactly "wrynose whinlatter",
  LAYERDEPENDS core openembedded-layer networking-layer phosphor-layer
  tpm-layer, LAYERVERSION, the standard BBFILES globs;
- recipes-phosphor is a RELATIVE symlink to ../recipes-phosphor;
- BBFILES expanded as BitBake's cooker does (glob on the ${LAYERDIR}-substituted
  pattern, symlinks not resolved) finds every .bb/.bbappend we ship, and each
  found path matches BBFILE_PATTERN textually (so the collection claims it);
- every file:// of every recipe exists in its FILESPATH dir, the image
  bbappend's override is the one conf/distro/include/bmc-pairing.inc defines,
  and the lldpd snippet turns reception on;
- mutation self-tests on copies prove each assertion can fail.
"""

import glob
import os
import re
import shutil
import sys
import tempfile

import bbvars
from harness import Harness, REPO

LAYER = "meta-bmc-pairing"
COLLECTION = "bmc-pairing-layer"
SERIES = {"wrynose", "whinlatter"}
DEPENDS = {"core", "openembedded-layer", "networking-layer", "phosphor-layer", "tpm-layer"}


def layer_problems(repo):
    """Return a list of problems with the layer in checkout `repo`."""
    P = []
    layer = os.path.join(repo, LAYER)
    conf = os.path.join(layer, "conf", "layer.conf")
    with open(conf, encoding="utf-8") as f:
        values, _ = bbvars.parse(f.read())
    cols = bbvars.words(values.get("BBFILE_COLLECTIONS"))
    if cols != [COLLECTION]:
        P.append(f"BBFILE_COLLECTIONS is {cols}, expected ['{COLLECTION}']")
    c = COLLECTION
    if values.get(f"BBFILE_PATTERN_{c}") != "^${LAYERDIR}/":
        P.append(f"BBFILE_PATTERN_{c} is {values.get(f'BBFILE_PATTERN_{c}')!r}, expected '^${{LAYERDIR}}/'")
    series = set(bbvars.words(values.get(f"LAYERSERIES_COMPAT_{c}")))
    if series != SERIES:
        P.append(f"LAYERSERIES_COMPAT_{c} is {sorted(series)}, expected {sorted(SERIES)}")
    deps = set(bbvars.words(values.get(f"LAYERDEPENDS_{c}")))
    if not DEPENDS <= deps:
        P.append(f"LAYERDEPENDS_{c} lacks {sorted(DEPENDS - deps)}")
    if not re.fullmatch(r"\d+", values.get(f"LAYERVERSION_{c}", "")):
        P.append(f"LAYERVERSION_{c} is not set to a number")
    bbfiles = bbvars.words(values.get("BBFILES"))
    for want in ("${LAYERDIR}/recipes-*/*/*.bb", "${LAYERDIR}/recipes-*/*/*.bbappend"):
        if want not in bbfiles:
            P.append(f"BBFILES lacks {want}")
    if ":${LAYERDIR}" not in (values.get("BBPATH") or ""):
        P.append("BBPATH does not include ${LAYERDIR}")

    link = os.path.join(layer, "recipes-phosphor")
    if not os.path.islink(link):
        P.append(f"{LAYER}/recipes-phosphor is not a symlink")
    else:
        target = os.readlink(link)
        if target != "../recipes-phosphor":
            P.append(f"{LAYER}/recipes-phosphor -> {target}, expected the relative ../recipes-phosphor")
        elif os.path.realpath(link) != os.path.realpath(os.path.join(repo, "recipes-phosphor")):
            P.append("recipes-phosphor symlink does not reach the top-level recipes-phosphor")

    # Expand BBFILES the way bb.cooker.collect_bbfiles does: no symlink resolution.
    layerdir = layer  # absolute, as BitBake sets LAYERDIR from bblayers.conf
    found = set()
    for pat in bbfiles:
        found.update(glob.glob(pat.replace("${LAYERDIR}", layerdir)))
    pattern = re.compile(values.get(f"BBFILE_PATTERN_{c}", "").replace("${LAYERDIR}", layerdir))
    shipped = []
    for top in (layer, os.path.join(repo, "recipes-phosphor")):
        for dirpath, _dirs, files in os.walk(top):
            for fn in files:
                if fn.endswith((".bb", ".bbappend")):
                    shipped.append(os.path.join(dirpath, fn))
    found_real = {os.path.realpath(f) for f in found}
    for s in sorted(shipped):
        if os.path.realpath(s) not in found_real:
            P.append(f"{os.path.relpath(s, repo)} is not reached by BBFILES")
    for f in sorted(found):
        if not pattern.match(f):
            P.append(f"{f} is found by BBFILES but does not match BBFILE_PATTERN_{c}")
    daemon = os.path.join(layerdir, "recipes-phosphor", "bmc-pairing", "bmc-pairing-manager_git.bb")
    if daemon not in found:
        P.append("the daemon recipe is not found through the layer path (symlink)")
    return P, sorted(found)


def integration_problems(repo):
    P = []
    layer = os.path.join(repo, LAYER)
    # file:// entries exist (FILESPATH: ${THISDIR}/${BPN}, ${THISDIR}/files).
    recipes = glob.glob(os.path.join(layer, "recipes-*/*/*.bb"))
    for r in recipes:
        with open(r, encoding="utf-8") as f:
            values, _ = bbvars.parse(f.read())
        bpn = os.path.basename(r).split("_")[0]
        for uri in bbvars.words(values.get("SRC_URI")):
            if uri.startswith("file://"):
                rel = uri[len("file://"):].split(";")[0]
                cands = [os.path.join(os.path.dirname(r), d, rel) for d in (bpn, "files")]
                if not any(os.path.isfile(c) for c in cands):
                    P.append(f"{os.path.relpath(r, repo)}: {uri} not found in {bpn}/ or files/")
    # Image bbappend override is defined by the distro include.
    with open(os.path.join(layer, "recipes-pairing/images/obmc-phosphor-image.bbappend"), encoding="utf-8") as f:
        _, assigns = bbvars.parse(f.read())
    overrides = {v.split(":append:")[1] for v, _op, _val in assigns
                 if v.startswith("OBMC_IMAGE_EXTRA_INSTALL:append:")}
    inst = [val for v, _op, val in assigns if v.startswith("OBMC_IMAGE_EXTRA_INSTALL")]
    if not overrides or not any("packagegroup-bmc-pairing" in v for v in inst):
        P.append("obmc-phosphor-image.bbappend does not add packagegroup-bmc-pairing under an override")
    inc = os.path.join(layer, "conf/distro/include/bmc-pairing.inc")
    with open(inc, encoding="utf-8") as f:
        inc_text = f.read()
    for o in overrides:
        if f'DISTROOVERRIDES .= ":{o}"' not in inc_text:
            P.append(f"override {o} used by the image bbappend is not defined in bmc-pairing.inc")
    if "require conf/distro/include/lldpd.inc" not in inc_text:
        P.append("bmc-pairing.inc does not turn on OpenBMC's lldpd distro feature")
    # Packagegroup pulls the daemon and the lldpd snippet.
    with open(os.path.join(layer, "recipes-pairing/packagegroups/packagegroup-bmc-pairing.bb"), encoding="utf-8") as f:
        values, _ = bbvars.parse(f.read())
    rdeps = set(bbvars.words(values.get("RDEPENDS:${PN}")))
    for need in ("bmc-pairing-manager", "bmc-pairing-lldpd-conf", "lldpd"):
        if need not in rdeps:
            P.append(f"packagegroup-bmc-pairing does not RDEPEND on {need}")
    snippet = glob.glob(os.path.join(layer, "recipes-pairing/bmc-pairing-lldpd-conf/*/50-bmc-pairing.conf.in"))
    if len(snippet) != 1:
        P.append("lldpd snippet template 50-bmc-pairing.conf.in not found")
    else:
        with open(snippet[0], encoding="utf-8") as f:
            lines = [l.strip() for l in f if l.strip() and not l.startswith("#")]
        if lines != ["configure ports @PORTS@ lldp status rx-and-tx"]:
            P.append(f"lldpd snippet is {lines}, expected one 'configure ports @PORTS@ lldp status rx-and-tx'")
    return P


def copy_repo(dst):
    for d in (LAYER, "recipes-phosphor"):
        shutil.copytree(os.path.join(REPO, d), os.path.join(dst, d), symlinks=True)


def edit(path, old, new):
    with open(path, encoding="utf-8") as f:
        t = f.read()
    assert old in t, (old, path)
    with open(path, "w", encoding="utf-8") as f:
        f.write(t.replace(old, new))


def main():
    h = Harness()
    problems, found = layer_problems(REPO)
    h.check(not problems, "layer.conf, symlink and BBFILES/BBFILE_PATTERN", "\n".join(problems),
            note=f"{len(found)} files via BBFILES")
    for f in found:
        h.note(os.path.relpath(f, REPO))
    ip = integration_problems(REPO)
    h.check(not ip, "file:// entries, image override, packagegroup, lldpd snippet", "\n".join(ip))

    conf = os.path.join(LAYER, "conf", "layer.conf")
    mutations = [
        ("series scarthgap", conf, 'LAYERSERIES_COMPAT_bmc-pairing-layer = "wrynose whinlatter"',
         'LAYERSERIES_COMPAT_bmc-pairing-layer = "scarthgap"', "LAYERSERIES_COMPAT"),
        ("tpm-layer dependency dropped", conf, "phosphor-layer tpm-layer", "phosphor-layer", "LAYERDEPENDS"),
        ("pattern narrowed", conf, 'BBFILE_PATTERN_bmc-pairing-layer = "^${LAYERDIR}/"',
         'BBFILE_PATTERN_bmc-pairing-layer = "^${LAYERDIR}/recipes-pairing/"', "BBFILE_PATTERN"),
        ("bbappend glob dropped", conf, "\\\n            ${LAYERDIR}/recipes-*/*/*.bbappend", "",
         "is not reached by BBFILES"),
    ]
    tmp = tempfile.mkdtemp(prefix="layer-")
    try:
        for i, (name, path, old, new, expect) in enumerate(mutations):
            work = os.path.join(tmp, str(i))
            copy_repo(work)
            edit(os.path.join(work, path), old, new)
            p, _ = layer_problems(work)
            h.check(any(expect in x for x in p), f"self-test: {name} is caught", f"problems: {p}")
        # absolute symlink
        work = os.path.join(tmp, "abs")
        copy_repo(work)
        link = os.path.join(work, LAYER, "recipes-phosphor")
        os.remove(link)
        os.symlink(os.path.join(work, "recipes-phosphor"), link)
        p, _ = layer_problems(work)
        h.check(any("relative" in x for x in p), "self-test: absolute symlink is caught", f"problems: {p}")
        # recipe nested one level too deep is not reached by the globs
        work = os.path.join(tmp, "deep")
        copy_repo(work)
        os.makedirs(os.path.join(work, "recipes-phosphor", "bmc-pairing", "extra"))
        shutil.copy(os.path.join(REPO, "recipes-phosphor/bmc-pairing/bmc-pairing-manager_git.bb"),
                    os.path.join(work, "recipes-phosphor/bmc-pairing/extra/deep_git.bb"))
        p, _ = layer_problems(work)
        h.check(any("deep_git.bb is not reached" in x for x in p), "self-test: unreachable recipe is caught",
                f"problems: {p}")
        # missing file:// and undefined override
        work = os.path.join(tmp, "files")
        copy_repo(work)
        os.remove(os.path.join(work, "recipes-phosphor/bmc-pairing/bmc-pairing-manager/config/bmc-attestation.conf"))
        edit(os.path.join(work, LAYER, "recipes-pairing/images/obmc-phosphor-image.bbappend"),
             ":append:df-bmc-pairing", ":append:df-something-else")
        p = integration_problems(work)
        h.check(any("bmc-attestation.conf not found" in x for x in p) and any("df-something-else" in x for x in p),
                "self-test: missing file:// and undefined image override are caught", f"problems: {p}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    h.exit()


if __name__ == "__main__":
    main()
