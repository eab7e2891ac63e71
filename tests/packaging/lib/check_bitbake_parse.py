#!/usr/bin/env python3
"""BitBake parser smoke test, with the real `bb` of the bitbake-setup wheel.

Usage: check_bitbake_parse.py YAML_ROOT

No oe-core here, so the other layers are stubs: a core layer (minimal
bitbake.conf of our own with OE's path defaults, empty classes), and
openembedded-layer, networking-layer, phosphor-layer (lldpd.inc,
phosphor-dbus-yaml.bbclass, an obmc-phosphor-image.bb) and tpm-layer. Then,
with BitBake's own code:
- CookerDataBuilder.parseConfigurationFiles reads bblayers.conf and every
  layer.conf (LAYERSERIES compatibility is enforced there), with a local.conf
  that requires our conf/distro/include/bmc-pairing.inc;
- BBCooker.handleCollections and CookerCollectFiles.collect_bbfiles find the
  recipes and bbappends and assign them to bmc-pairing-layer;
- every recipe is fully parsed and finalised (bbappends applied, anonymous
  python run): the daemon recipe has every crate:// of its crates.inc, is
  skipped with a message while SRCREV is the placeholder and not once SRCREV
  or EXTERNALSRC is set; obmc-phosphor-image gets packagegroup-bmc-pairing
  only with the distro include;
- do_install of the daemon recipe and of bmc-pairing-lldpd-conf are emitted
  by BitBake (bb.data.emit_func) and run in a fake WORKDIR, so the recipe's
  own arguments to install-bmc-pairing.sh and the lldpd snippet are exercised.
Self-tests: a syntax error, a missing require and an incompatible
LAYERSERIES_COMPAT make it fail.
"""

import contextlib
import glob
import io
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import types

for _m in ("hashserv", "hashserv.client", "prserv", "prserv.serv"):
    sys.modules.setdefault(_m, types.ModuleType(_m))

import bb  # noqa: E402
import bb.cooker  # noqa: E402
import bb.cookerdata  # noqa: E402
import bb.data  # noqa: E402
import bb.parse  # noqa: E402

from harness import Harness, REPO  # noqa: E402

LAYER = os.path.join(REPO, "meta-bmc-pairing")
BITBAKE_CONF = """\
# Minimal stand-in for oe-core's bitbake.conf: names and OE's default paths.
PN = "${@bb.parse.vars_from_file(d.getVar('FILE', False),d)[0] or 'defaultpkgname'}"
PV = "${@bb.parse.vars_from_file(d.getVar('FILE', False),d)[1] or '1.0'}"
BPN = "${PN}"
BP = "${BPN}-${PV}"
THISDIR = "${@os.path.dirname(d.getVar('FILE'))}"
FILESPATH = "${THISDIR}/${BPN}:${THISDIR}/files"
prefix = "/usr"
exec_prefix = "/usr"
bindir = "${exec_prefix}/bin"
sysconfdir = "/etc"
datadir = "${prefix}/share"
nonarch_base_libdir = "${prefix}/lib"
systemd_unitdir = "${nonarch_base_libdir}/systemd"
systemd_system_unitdir = "${nonarch_base_libdir}/systemd/system"
WORKDIR = "${TMPDIR}/work/${PN}"
UNPACKDIR = "${WORKDIR}/sources"
S = "${UNPACKDIR}/${BP}"
B = "${S}"
D = "${WORKDIR}/image"
DISTRO = "openbmc-phosphor"
DISTROOVERRIDES ?= "${DISTRO}"
OVERRIDES = "pn-${PN}:${DISTROOVERRIDES}"
"""
LLDPD_INC = 'DISTRO_FEATURES += "lldpd"\nDISTROOVERRIDES .= ":df-lldpd"\n'
PDY_CLASS = 'yaml_dir = "${datadir}/phosphor-dbus-yaml/yaml"\nPACKAGE_BEFORE_PN += "${PN}-yaml"\nFILES:${PN}-yaml += "${yaml_dir}"\n'
CARGO_CLASS = 'B = "${WORKDIR}/build"\nCARGO_TARGET_SUBDIR = "armv7-openbmc-linux-gnueabihf/release"\n'
STUB_CLASSES = ["cargo-update-recipe-crates", "pkgconfig", "systemd", "packagegroup", "allarch"]
IMAGE_BB = 'SUMMARY = "stub"\nLICENSE = "MIT"\nOBMC_IMAGE_EXTRA_INSTALL ?= ""\n'


def layer_conf(c, extra):
    return (f'BBPATH .= ":${{LAYERDIR}}"\nBBFILES += "${{LAYERDIR}}/recipes-*/*/*.bb"\n'
            f'BBFILE_COLLECTIONS += "{c}"\nBBFILE_PATTERN_{c} = "^${{LAYERDIR}}/"\n'
            f'LAYERVERSION_{c} = "1"\n' + extra)


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def make_world(tmp, our_layer, local_conf):
    stubs = {
        "meta": ("core", 'LAYERSERIES_CORENAMES = "wrynose blacksail"\nLAYERSERIES_COMPAT_core = "wrynose"\n'),
        "meta-oe": ("openembedded-layer", 'LAYERSERIES_COMPAT_openembedded-layer = "wrynose"\n'),
        "meta-networking": ("networking-layer", 'LAYERSERIES_COMPAT_networking-layer = "wrynose"\n'),
        "meta-phosphor": ("phosphor-layer", 'LAYERSERIES_COMPAT_phosphor-layer = "wrynose whinlatter"\n'),
        "meta-tpm": ("tpm-layer", 'LAYERSERIES_COMPAT_tpm-layer = "wrynose"\n'),
    }
    layers = []
    for d, (c, extra) in stubs.items():
        write(os.path.join(tmp, d, "conf", "layer.conf"), layer_conf(c, extra))
        layers.append(os.path.join(tmp, d))
    write(os.path.join(tmp, "meta", "conf", "bitbake.conf"), BITBAKE_CONF + f'TMPDIR = "{tmp}/tmp"\n')
    write(os.path.join(tmp, "meta", "classes-global", "base.bbclass"), "")
    write(os.path.join(tmp, "meta", "classes-recipe", "cargo.bbclass"), CARGO_CLASS)
    for c in STUB_CLASSES:
        write(os.path.join(tmp, "meta", "classes-recipe", f"{c}.bbclass"), "")
    write(os.path.join(tmp, "meta-phosphor", "classes", "phosphor-dbus-yaml.bbclass"), PDY_CLASS)
    write(os.path.join(tmp, "meta-phosphor", "conf", "distro", "include", "lldpd.inc"), LLDPD_INC)
    write(os.path.join(tmp, "meta-phosphor", "recipes-phosphor", "images", "obmc-phosphor-image.bb"), IMAGE_BB)
    layers.append(our_layer)
    build = os.path.join(tmp, "build")
    write(os.path.join(build, "conf", "bblayers.conf"),
          'BBPATH = "${TOPDIR}"\nBBLAYERS = "' + " ".join(layers) + '"\n')
    local = os.path.join(build, "conf", "local.conf")
    write(local, local_conf)
    return build, local


class Cfg:
    def __init__(self, postfile):
        self.prefile = []
        self.postfile = [postfile]
        self.tracking = False
        self.skip_fragments = False
        self.env = {}


class World:
    """Configuration parsed by BitBake for one set of layers."""

    def __init__(self, tmp, our_layer=LAYER, local_conf=""):
        self.build, local = make_world(tmp, our_layer, local_conf)
        cwd = os.getcwd()
        os.chdir(self.build)
        try:
            self.d = bb.cookerdata.CookerDataBuilder(Cfg(local)).parseConfigurationFiles([], [local])
        finally:
            os.chdir(cwd)
        self.d.setVar("__bbclasstype", "recipe")
        bb.parse.init_parser(self.d)

        class Holder:
            pass
        h = Holder()
        h.data = self.d
        bb.cooker.BBCooker.handleCollections(h, self.d.getVar("BBFILE_COLLECTIONS"))
        self.collector = bb.cooker.CookerCollectFiles(h.bbfile_config_priorities)
        self.bbfiles, _masked, _dirs = self.collector.collect_bbfiles(self.d, None)

    def layer_of(self, fn):
        return self.collector.calc_bbfile_priority(fn)[2]

    def parse(self, fn, extra=None):
        dd = bb.data.createCopy(self.d)
        for k, v in (extra or {}).items():
            dd.setVar(k, v)
        appends = self.collector.get_file_appends(fn)
        return bb.cookerdata.CookerDataBuilder._parse_recipe(dd, fn, appends, "", self.layer_of(fn))[""]


def run_shell_func(d, func, workdir):
    """Emit a shell task with BitBake's emit_func and run it with /bin/sh."""
    script = io.StringIO()
    script.write("set -e\nbbfatal() { echo \"bbfatal: $*\" >&2; exit 1; }\n"
                 "bbnote() { echo \"$*\"; }\n")
    bb.data.emit_func(func, script, d)
    script.write(f"\ncd {workdir}\n{func}\n")
    return subprocess.run(["sh", "-c", script.getvalue()], capture_output=True, text=True)


def quiet():
    logging.getLogger("BitBake").setLevel(logging.CRITICAL)


def main():
    h = Harness()
    quiet()
    yaml_root = os.path.abspath(sys.argv[1])
    tmp = tempfile.mkdtemp(prefix="bbparse-")
    try:
        checks(h, tmp, yaml_root)
    except Exception as e:  # a parse error in our files: report it as a case
        h.fail("BitBake parses the layer and its recipes", f"{type(e).__name__}: {e}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    h.exit()


def checks(h, tmp, yaml_root):
    if True:
        w = World(os.path.join(tmp, "w"), local_conf="require conf/distro/include/bmc-pairing.inc\n")
        d = w.d
        h.check(d.getVar("LAYERSERIES_COMPAT_bmc-pairing-layer") == "whinlatter wrynose",
                "bitbake reads layer.conf (collections, series accepted by the core stub)",
                d.getVar("BBFILE_COLLECTIONS"))
        ours = [f for f in w.bbfiles if f.startswith(LAYER + os.sep)]
        names = sorted(os.path.basename(f) for f in ours)
        want = ["bmc-pairing-lldpd-conf_1.0.bb", "bmc-pairing-manager_git.bb", "packagegroup-bmc-pairing.bb"]
        h.check(names == want and all(w.layer_of(f) == "bmc-pairing-layer" for f in ours),
                "collect_bbfiles finds our recipes (through the symlink) in bmc-pairing-layer",
                f"{names} layers {[w.layer_of(f) for f in ours]}")
        appends = [a for _b, a in w.collector.bbappends]
        h.check(any(a.endswith("obmc-phosphor-image.bbappend") for a in appends),
                "collect_bbfiles finds the image bbappend", f"{appends}")

        daemon = next(f for f in ours if f.endswith("bmc-pairing-manager_git.bb"))
        inc = os.path.join(os.path.dirname(daemon), "bmc-pairing-manager-crates.inc")
        with open(inc, encoding="utf-8") as f:
            n_inc = f.read().count("crate://crates.io/")
        rd = w.parse(daemon, {"SRCREV:pn-bmc-pairing-manager": "1" * 40})
        crates = [u for u in rd.getVar("SRC_URI").split() if u.startswith("crate://")]
        h.check(not rd.getVar("__SKIPPED") and len(crates) == n_inc and n_inc > 0,
                "daemon recipe parses and finalises with every crate:// of its crates.inc",
                f"skipped={rd.getVar('__SKIPPED')} crates={len(crates)} inc={n_inc}", note=f"{len(crates)} crates")
        h.check(rd.getVar("SYSTEMD_SERVICE:bmc-pairing-manager").split() ==
                ["xyz.openbmc_project.BmcPairingManager.service", "xyz.openbmc_project.attestation.service"]
                and "lldpd" in rd.getVar("RDEPENDS:bmc-pairing-manager").split()
                and "tpm2-tss" in rd.getVar("DEPENDS").split()
                and rd.getVar("FILES:bmc-pairing-manager-yaml").split() == ["/usr/share/phosphor-dbus-yaml/yaml"],
                "daemon recipe: SYSTEMD_SERVICE, DEPENDS, RDEPENDS, ${PN}-yaml FILES expand as intended",
                f"{rd.getVar('SYSTEMD_SERVICE:bmc-pairing-manager')} | {rd.getVar('RDEPENDS:bmc-pairing-manager')} "
                f"| {rd.getVar('DEPENDS')} | {rd.getVar('FILES:bmc-pairing-manager-yaml')}")
        skipped = w.parse(daemon).getVar("__SKIPPED") or ""
        h.check("SRCREV is the placeholder" in skipped, "placeholder SRCREV: recipe skipped with a message",
                f"__SKIPPED={skipped!r}")
        ext = w.parse(daemon, {"EXTERNALSRC:pn-bmc-pairing-manager": REPO}).getVar("__SKIPPED")
        h.check(not ext, "with EXTERNALSRC the placeholder SRCREV is fine", f"__SKIPPED={ext!r}")

        # do_install exactly as the recipe calls the install script.
        work = rd.getVar("WORKDIR")
        unpack, src, bdir = rd.getVar("UNPACKDIR"), rd.getVar("S"), rd.getVar("B")
        shutil.copytree(os.path.join(REPO, "recipes-phosphor", "bmc-pairing", "bmc-pairing-manager"), unpack)
        os.makedirs(os.path.join(src, "dbus-interfaces-yaml"))
        os.symlink(yaml_root, os.path.join(src, "dbus-interfaces-yaml", "yaml"))
        bins = os.path.join(bdir, "target", rd.getVar("CARGO_TARGET_SUBDIR"))
        os.makedirs(bins)
        for b in ("bmc-pairing-manager", "bmc-attestation"):
            write(os.path.join(bins, b), "#!/bin/sh\nexit 0\n")
            os.chmod(os.path.join(bins, b), 0o755)
        p = run_shell_func(rd, "do_install", work)
        image = rd.getVar("D")
        staged = sorted(os.path.relpath(os.path.join(dp, f), image)
                        for dp, _d, fs in os.walk(image) for f in fs)
        expect = {"usr/bin/bmc-pairing-manager", "usr/bin/bmc-attestation",
                  "usr/lib/systemd/system/xyz.openbmc_project.BmcPairingManager.service",
                  "usr/share/dbus-1/system.d/xyz.openbmc_project.attestation.conf",
                  "etc/bmc-pairing-manager/bmc-pairing-manager.conf"}
        h.check(p.returncode == 0 and expect <= set(staged)
                and any(s.startswith("usr/share/phosphor-dbus-yaml/yaml/") for s in staged),
                "the recipe's do_install (emitted by BitBake) stages the package",
                p.stderr + "\n" + "\n".join(staged), note=f"{len(staged)} files")

        lldp = next(f for f in ours if "lldpd-conf" in f)
        ld = w.parse(lldp, {"BMC_PAIRING_LLDP_INTERFACES:pn-bmc-pairing-lldpd-conf": "eth1 eth2"})
        shutil.copytree(os.path.join(os.path.dirname(lldp), "bmc-pairing-lldpd-conf"), ld.getVar("UNPACKDIR"))
        p = run_shell_func(ld, "do_install", ld.getVar("WORKDIR"))
        out = os.path.join(ld.getVar("D"), "etc", "lldpd.d", "50-bmc-pairing.conf")
        text = open(out, encoding="utf-8").read() if os.path.exists(out) else ""
        lines = [l for l in text.splitlines() if l and not l.startswith("#")]
        h.check(p.returncode == 0 and lines == ["configure ports eth1,eth2 lldp status rx-and-tx"],
                "bmc-pairing-lldpd-conf do_install writes /etc/lldpd.d/50-bmc-pairing.conf",
                p.stderr + f"\n{lines}", note=lines[0] if lines else "")

        image_bb = next(f for f in w.bbfiles if f.endswith("obmc-phosphor-image.bb"))
        with_inc = w.parse(image_bb).getVar("OBMC_IMAGE_EXTRA_INSTALL").split()
        w2 = World(os.path.join(tmp, "w2"))
        without = w2.parse(next(f for f in w2.bbfiles if f.endswith("obmc-phosphor-image.bb"))).getVar(
            "OBMC_IMAGE_EXTRA_INSTALL").split()
        h.check("packagegroup-bmc-pairing" in with_inc and "packagegroup-bmc-pairing" not in without
                and "lldpd" in (w.d.getVar("DISTRO_FEATURES") or "").split(),
                "image gets packagegroup-bmc-pairing only with conf/distro/include/bmc-pairing.inc",
                f"with: {with_inc} without: {without} DISTRO_FEATURES: {w.d.getVar('DISTRO_FEATURES')}")
        for fn in ours:
            if fn != daemon and fn != lldp:
                pd = w.parse(fn)
                h.check(not pd.getVar("__SKIPPED"), f"{os.path.basename(fn)} parses and finalises",
                        pd.getVar("__SKIPPED"))

        # --- self-tests on a copy of the layer ------------------------------
        def copy_layer(name):
            root = os.path.join(tmp, name)
            shutil.copytree(LAYER, os.path.join(root, "meta-bmc-pairing"), symlinks=True)
            shutil.copytree(os.path.join(REPO, "recipes-phosphor"), os.path.join(root, "recipes-phosphor"))
            return os.path.join(root, "meta-bmc-pairing")

        def edit(path, old, new):
            with open(path, encoding="utf-8") as f:
                t = f.read()
            assert old in t, (old, path)
            with open(path, "w", encoding="utf-8") as f:
                f.write(t.replace(old, new))

        bad = copy_layer("syntax")
        edit(os.path.join(bad, "recipes-phosphor/bmc-pairing/bmc-pairing-manager_git.bb"),
             'PV = "0.1.0+git"', 'PV == "0.1.0+git"')
        wb = World(os.path.join(tmp, "wsyntax"), bad)
        try:
            wb.parse(next(f for f in wb.bbfiles if f.endswith("bmc-pairing-manager_git.bb")))
            h.fail("self-test: a syntax error in the recipe fails the parse", "parsed fine")
        except bb.parse.ParseError:
            h.ok("self-test: a syntax error in the recipe fails the parse")
        bad = copy_layer("noinc")
        os.remove(os.path.join(bad, "recipes-phosphor/bmc-pairing/bmc-pairing-manager-crates.inc"))
        wb = World(os.path.join(tmp, "wnoinc"), bad)
        try:
            wb.parse(next(f for f in wb.bbfiles if f.endswith("bmc-pairing-manager_git.bb")))
            h.fail("self-test: a missing crates.inc fails the parse", "parsed fine")
        except bb.parse.ParseError:
            h.ok("self-test: a missing crates.inc fails the parse")
        bad = copy_layer("series")
        edit(os.path.join(bad, "conf/layer.conf"), '"wrynose whinlatter"', '"scarthgap styhead"')
        logged = []

        class Catch(logging.Handler):
            def emit(self, record):
                logged.append(record.getMessage())
        catcher = Catch()
        logging.getLogger("BitBake").addHandler(catcher)
        try:
            with contextlib.redirect_stderr(io.StringIO()):
                World(os.path.join(tmp, "wseries"), bad)
            h.fail("self-test: LAYERSERIES_COMPAT without wrynose is refused by bitbake", "accepted")
        except bb.BBHandledException:  # bb.fatal
            h.check(any("is not compatible with the core layer" in m for m in logged),
                    "self-test: LAYERSERIES_COMPAT without wrynose is refused by bitbake", "\n".join(logged))
        finally:
            logging.getLogger("BitBake").removeHandler(catcher)


if __name__ == "__main__":
    main()
