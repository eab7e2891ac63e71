#!/usr/bin/env python3
"""Read what BitBake itself makes of our layer in a real OpenBMC build directory.

Runs as the unprivileged build user inside an initialised build environment
(OpenBMC's `. setup` or `kas shell`), with the tree's own bitbake/lib on
sys.path. It asserts nothing: it writes facts as JSON for check.py. Everything
comes from BitBake's tinfoil API on a full parse of the configuration:

- configuration variables, and the variables the machine template sets;
- obmc-phosphor-image: IMAGE_FSTYPES, IMAGE_FEATURES, PACKAGE_INSTALL, and its
  dependency tree as `bitbake -g` computes it (generateDepTreeEvent: every
  DEPENDS/RDEPENDS must resolve or the command fails);
- our recipes, finalised with their bbappends: packages, PACKAGE_ARCH,
  inherits, RDEPENDS/FILES per package, SRC_URI, LIC_FILES_CHKSUM, skip reasons;
- the runtime closure of our packages: for every package in it, the provider
  recipe's values that decide debian.bbclass renaming and the users and
  groups useradd.bbclass creates; the same useradd values for every recipe of
  the image's dependency tree that inherits useradd;
- with --stage: the daemon recipe's real do_install (emitted and run by
  bb.build.exec_func) in a scratch WORKDIR, then oe-core's own
  perform_packagecopy and PACKAGESPLITFUNCS (systemd_populate_packages,
  populate_packages) split it into packages; per-package file lists and any
  QA error; oe-core's populate_lic_qa_checksum and license_finder on S;
- bmc-pairing-lldpd-conf's real do_install (the lldpd.d snippet);
- with --source-variants: the daemon recipe parsed again with the
  integrator's source settings removed or partly set (skip reasons, SRC_URI),
  and the image parsed again without our distro include's override;
- with --keep-files: every recipe file BitBake's TaskData resolves for the
  image (what BBMASK pruning must keep; see prune.py).

Usage (in the build environment):
  probe.py --name setup|kas --out FACTS.json --template LOCAL_CONF_SAMPLE --src SOURCE_TREE --tree OPENBMC_TREE
           [--scratch DIR] [--stage] [--source-variants] [--keep-files]
"""

import argparse
import fcntl
import importlib
import json
import logging
import os
import re
import shutil
import sys
import time

import bb.build  # the tree's bitbake/lib, put on sys.path by the caller
import bb.fetch2
import bb.tinfoil

IMAGE = "obmc-phosphor-image"
OUR_RECIPES = ("bmc-pairing-manager", "bmc-pairing-lldpd-conf", "packagegroup-bmc-pairing")
DAEMON = "bmc-pairing-manager"
CONFIG_VARS = ("TOPDIR", "MACHINE", "DISTRO", "DISTRO_FEATURES", "MACHINE_FEATURES", "IMAGE_FSTYPES",
               "EXTRA_IMAGE_FEATURES", "PACKAGE_CLASSES", "BB_NO_NETWORK", "TUNE_PKGARCH",
               "INHERIT", "INHERIT_DISTRO", "OBMC_ORG_YAML_SUBDIRS", "COMMON_LICENSE_DIR",
               "LAYERSERIES_CORENAMES", "BBFILE_COLLECTIONS")
IMAGE_VARS = ("IMAGE_FSTYPES", "IMAGE_FEATURES", "PACKAGE_INSTALL", "IMAGE_INSTALL",
              "OBMC_IMAGE_EXTRA_INSTALL", "EXTRA_USERS_PARAMS", "FLASH_SIZE", "QB_MACHINE",
              "QB_DEFAULT_FSTYPE", "QB_SYSTEM_NAME", "KERNEL_DEVICETREE")
PKG_VARS = ("RDEPENDS", "RRECOMMENDS", "RPROVIDES", "FILES", "PKG", "DEBIAN_NOAUTONAME", "DEBIANNAME",
            "USERADD_PARAM", "GROUPADD_PARAM", "GROUPMEMS_PARAM", "SYSTEMD_SERVICE", "CONFFILES")
RECIPE_VARS = ("FILE", "PN", "PV", "PACKAGES", "PACKAGE_ARCH", "SRC_URI", "SRCREV", "S", "B",
               "EXTERNALSRC", "LICENSE", "LIC_FILES_CHKSUM", "DEPENDS", "AUTO_LIBNAME_PKGS",
               "USERADD_PACKAGES", "EXTRA_OECONF", "yaml_dir", "datadir", "bindir", "sbindir",
               "base_bindir", "base_sbindir", "libdir", "base_libdir", "sysconfdir",
               "systemd_system_unitdir", "BMC_PAIRING_SRC_URI")
ASSIGN = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_-]*)(?::[A-Za-z0-9_:${}.-]+)?\s*"
                    r"(?:\?\?=|\?=|:=|\+=|=\+|\.=|=\.|=)")


class LogCollector(logging.Handler):
    """Keeps BitBake's warnings and errors (QA issues among them)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append({"level": record.levelname, "msg": record.getMessage()})


def assigned_names(path):
    """Variable names a configuration file assigns (its overrides dropped)."""
    names = []
    with open(path, encoding="utf-8") as f:
        text = re.sub(r"\\\n", " ", f.read())
    for line in text.splitlines():
        m = ASSIGN.match(line)
        if m and m.group(1) not in names:
            names.append(m.group(1))
    return names


def words(value):
    return (value or "").split()


def explode(value):
    return list(bb.utils.explode_dep_versions2(value or "").keys())


def inherits(d, cls):
    return bool(bb.data.inherits_class(cls, d))


class Probe:
    def __init__(self, tf, args):
        self.tf = tf
        self.args = args
        self.recipes = {}  # fn -> datastore
        self.variants_of = {}  # pn -> (recipe file, bbappends) for the variant parses
        self.facts = {"errors": []}

    # --- helpers ---------------------------------------------------------------
    def parse(self, fn):
        if fn not in self.recipes:
            self.recipes[fn] = self.tf.parse_recipe_file(fn)
        return self.recipes[fn]

    def recipe_facts(self, d):
        r = {v: d.getVar(v) for v in RECIPE_VARS}
        r["inherits_allarch"] = inherits(d, "allarch")
        r["inherits_packagegroup"] = inherits(d, "packagegroup")
        r["inherits_debian"] = inherits(d, "debian")
        r["inherits_useradd"] = inherits(d, "useradd")
        r["inherits_externalsrc"] = inherits(d, "externalsrc")
        r["skipped"] = d.getVar("__SKIPPED") or None
        r["packages"] = {}
        for pkg in words(d.getVar("PACKAGES")):
            r["packages"][pkg] = {v: d.getVar(f"{v}:{pkg}") for v in PKG_VARS}
        return r

    def runtime_provider(self, name):
        """(recipe file, package) that provides runtime name `name`, or None."""
        _all, fn = self.tf.get_runtime_providers(name)  # BitBake's preferred provider
        if not fn:
            return None
        d = self.parse(fn)
        pkgs = words(d.getVar("PACKAGES"))
        if name in pkgs:
            return fn, name
        for pkg in pkgs:
            if name in explode(d.getVar(f"RPROVIDES:{pkg}")):
                return fn, pkg
        return fn, None

    # --- facts -----------------------------------------------------------------
    def config(self):
        c = self.tf.config_data
        self.facts["config"] = {v: c.getVar(v) for v in CONFIG_VARS}
        tmpl = self.args.template
        bsp = bb.utils.which(c.getVar("BBPATH"), "conf/machine/include/obmc-bsp-common.inc")
        names = assigned_names(tmpl) + [n for n in assigned_names(bsp) if n not in assigned_names(tmpl)]
        self.facts["template"] = {"file": tmpl, "bsp_file": bsp, "names": names}
        self.facts["parse"] = {
            "recipes": len(list(self.tf.all_recipe_files(variants=False))),
            "bbmask_entries": len(words(c.getVar("BBMASK"))),
        }

    def image(self):
        d = self.parse(self.tf.get_recipe_file(IMAGE))
        img = {v: d.getVar(v) for v in IMAGE_VARS}
        img["template_values"] = {n: d.getVar(n) for n in self.facts["template"]["names"]}
        self.facts["image"] = img

    def depgraph(self):
        self.tf.set_event_mask(["bb.event.DepTreeGenerated", "bb.command.CommandCompleted",
                                "bb.command.CommandFailed", "bb.command.CommandExit", "logging.LogRecord"])
        graph, failure, errors = None, None, []
        if not self.tf.run_command("generateDepTreeEvent", [IMAGE], "do_build"):
            failure = "generateDepTreeEvent was refused"
        while failure is None:
            ev = self.tf.wait_event(1)
            if ev is None:
                continue
            if isinstance(ev, bb.event.DepTreeGenerated):
                graph = ev._depgraph
            elif isinstance(ev, bb.command.CommandCompleted):
                break
            elif isinstance(ev, (bb.command.CommandFailed, bb.command.CommandExit)):
                failure = str(getattr(ev, "error", ev))
            elif isinstance(ev, logging.LogRecord) and ev.levelno >= logging.ERROR:
                errors.append(ev.getMessage())
        out = {"failure": failure, "errors": errors}
        if graph:
            out["pn"] = {pn: info["filename"] for pn, info in graph["pn"].items()}
            out["inherits"] = {pn: [os.path.basename(c) for c in (info.get("inherits") or [])]
                               for pn, info in graph["pn"].items()}
            out["packages"] = {p: info["pn"] for p, info in graph["packages"].items()}
            out["rdepends_pkg"] = graph["rdepends-pkg"]
            out["rrecs_pkg"] = graph["rrecs-pkg"]
        self.facts["depgraph"] = out

    def ours(self):
        src = os.path.realpath(self.args.src)
        found = {}
        for fn in self.tf.all_recipe_files(variants=False):
            if os.path.realpath(fn).startswith(src + os.sep):
                found[os.path.basename(fn).split("_")[0].removesuffix(".bb")] = fn
        for fn, info in self.tf.get_skipped_recipes().items():
            if os.path.realpath(fn).startswith(src + os.sep):
                found.setdefault(info.pn, fn)
        self.facts["ours"] = {}
        for pn in OUR_RECIPES:
            fn = found.get(pn)
            if fn is None:
                self.facts["ours"][pn] = None
                continue
            d = self.parse(fn)
            r = self.recipe_facts(d)
            r["appends"] = list(self.tf.get_file_appends(fn))
            self.facts["ours"][pn] = r

    def closure(self):
        """Runtime closure of our packages (parse-time RDEPENDS), with provider facts."""
        start = []
        for r in self.facts["ours"].values():
            if r and not r["skipped"]:
                start += [p for p in r["packages"] if not p.endswith(("-dbg", "-dev", "-src", "-staticdev",
                                                                      "-doc", "-locale", "-ptest"))]
        providers, edges, unresolved = {}, {}, []
        todo, seen = list(start), set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            prov = self.runtime_provider(name)
            if prov is None or prov[1] is None:
                unresolved.append(name)
                continue
            fn, pkg = prov
            d = self.parse(fn)
            rdeps = explode(d.getVar(f"RDEPENDS:{pkg}"))
            edges[name] = {"package": pkg, "rdepends": rdeps}
            if pkg not in providers:
                rf = self.recipe_facts(d)
                providers[pkg] = {"recipe": {k: rf[k] for k in (
                    "FILE", "PN", "AUTO_LIBNAME_PKGS", "USERADD_PACKAGES", "EXTRA_OECONF", "libdir",
                    "base_libdir", "bindir", "sbindir", "base_bindir", "base_sbindir", "inherits_debian",
                    "inherits_useradd")}, **rf["packages"][pkg]}
            todo += rdeps
        self.facts["closure"] = {"start": start, "edges": edges, "providers": providers,
                                 "unresolved": sorted(unresolved)}

    def taskdata_closure(self):
        """Every recipe file BitBake's TaskData resolves for the image, which a keep list must
        keep: DEPENDS, RDEPENDS/RRECOMMENDS and every task's [depends]/[rdepends] (also of tasks
        `bitbake -g` later drops, such as do_populate_sdk), transitively, followed through the
        preferred provider; all other providers of each name are kept too (not followed), so
        the choice among them is BitBake's as in the full tree. Slow (one parse per recipe):
        only for --keep-files, i.e. run.sh --write-keep-list."""
        rc = self.tf.cooker.recipecaches[""]
        providers = self.tf.get_all_providers()
        keep, seen, unresolved = set(), set(), set()
        todo = [self.tf.get_recipe_file(IMAGE)]
        while todo:
            fn = todo.pop()
            if fn in seen:
                continue
            seen.add(fn)
            keep.add(fn)
            d = self.tf.parse_recipe_file(fn)
            build = set(rc.deps.get(fn, []))
            run = {r for rdeps in list(rc.rundeps.get(fn, {}).values()) + list(rc.runrecs.get(fn, {}).values())
                   for r in rdeps}
            for task in d.getVar("__BBTASKS", False) or []:
                for flag, names in (("depends", build), ("rdepends", run)):
                    names.update(dep.split(":")[0] for dep in words(d.getVarFlag(task, flag)))
            for name in build:
                keep.update(f for _ver, f in providers.get(name, []))
                best = self.tf.find_best_provider(name)
                if best and best[3]:
                    todo.append(best[3])
                else:
                    unresolved.add(name)
            for name in run:
                all_fns, best = self.tf.get_runtime_providers(name)
                keep.update(all_fns or [])
                if best:
                    todo.append(best)
                else:
                    unresolved.add(name)
        self.facts["keep_files"] = {"files": sorted({f.split(":")[-1] for f in keep}),
                                    "unresolved": sorted(unresolved)}

    def image_closure(self):
        """The packages the image installs: PACKAGE_INSTALL and, transitively, their parse-time
        RDEPENDS and RRECOMMENDS (shlib dependencies appear only when packaging, so this is a
        lower bound). For each package: how it was reached and its recipe. Unresolved names
        (no runtime provider at all) are listed; the dependency-tree step fails on them too."""
        graph = self.facts["depgraph"]
        if not graph.get("packages"):
            return
        pkg_pn = dict(graph["packages"])
        names = {}

        def resolve(name):
            if name in pkg_pn:
                return name
            if name not in names:
                prov = self.runtime_provider(name)
                # A name no PACKAGES entry has: another package's RPROVIDES, or one of the
                # recipe's PACKAGES_DYNAMIC (libsystemd, kernel-module-*), kept under its own name.
                pkg = (prov[1] or name) if prov else None
                names[name] = pkg
                if pkg:
                    pkg_pn[pkg] = self.parse(prov[0]).getVar("PN")
            return names[name]

        via, unresolved = {}, set()
        queue = [(n, None, "PACKAGE_INSTALL") for n in explode(self.facts["image"]["PACKAGE_INSTALL"])]
        while queue:
            name, parent, kind = queue.pop(0)
            pkg = resolve(name)
            if pkg is None:
                unresolved.add(name)
                continue
            if pkg in via:
                continue
            via[pkg] = {"parent": parent, "kind": kind, "name": name, "pn": pkg_pn.get(pkg)}
            queue += [(r, pkg, "RDEPENDS") for r in graph["rdepends_pkg"].get(pkg, [])]
            queue += [(r, pkg, "RRECOMMENDS") for r in graph["rrecs_pkg"].get(pkg, [])]
        self.facts["image_closure"] = {"via": via, "unresolved": sorted(unresolved)}

    def image_users(self):
        """useradd values of the recipes whose packages the image installs."""
        out = {}
        graph = self.facts["depgraph"]
        installed = self.facts.get("image_closure", {}).get("via", {})
        pns = {info["pn"] for info in installed.values()}
        for pn in sorted(pns):
            if "useradd.bbclass" not in (graph.get("inherits") or {}).get(pn, []):
                continue
            d = self.parse(graph["pn"][pn])
            out[pn] = {"USERADD_PACKAGES": d.getVar("USERADD_PACKAGES"), "packages": {
                p: {v: d.getVar(f"{v}:{p}") for v in ("USERADD_PARAM", "GROUPADD_PARAM", "GROUPMEMS_PARAM")}
                for p in words(d.getVar("USERADD_PACKAGES")) if p in installed}}
        self.facts["image_useradd"] = out

    def kernel(self):
        """The kernel's local configuration fragments (the TPM I2C driver for QEMU)."""
        fn = self.tf.get_recipe_file("virtual/kernel")
        d = self.parse(fn)
        frags = {}
        for url in words(d.getVar("SRC_URI")):
            if url.startswith("file://") and url.split(";")[0].endswith(".cfg"):
                try:
                    path = bb.fetch2.Fetch([url], d).localpath(url)
                    with open(path, encoding="utf-8") as f:
                        frags[url.split(";")[0][len("file://"):]] = f.read()
                except Exception as e:  # a fragment the fetcher cannot find is a fact too
                    frags[url] = f"unreadable: {e}"
        self.facts["kernel"] = {"FILE": fn, "PN": d.getVar("PN"), "fragments": frags}

    # --- the daemon recipe's real do_install and package split ------------------
    def load_python_context(self, d):
        """What a BitBake worker has and a tinfoil client lacks: oe.* and the classes' defs."""
        for layer in words(self.tf.config_data.getVar("BBLAYERS")):  # addpylib ${LAYERDIR}/lib
            if os.path.isdir(os.path.join(layer, "lib")) and os.path.join(layer, "lib") not in sys.path:
                sys.path.append(os.path.join(layer, "lib"))
        oe = importlib.import_module("oe")
        for m in oe.BBIMPORTS:
            importlib.import_module("oe." + m)
        bb.utils._context["oe"] = oe
        for name in list(d.keys()):
            if d.getVarFlag(name, "python", False) and not d.getVarFlag(name, "task", False):
                text = d.getVar(name, False) or ""
                if text.startswith("def "):
                    exec(compile(text, f"<{name}>", "exec"), bb.utils._context)

    def stage(self, log):
        fn = (self.facts["ours"].get(DAEMON) or {}).get("FILE")
        if not fn:
            self.facts["stage"] = {"error": "the daemon recipe was not parsed"}
            return
        scratch = os.path.abspath(self.args.scratch)
        shutil.rmtree(scratch, ignore_errors=True)
        d = self.tf.parse_recipe_file(fn)  # a datastore of its own: it is modified below
        d.setVar("WORKDIR", os.path.join(scratch, "work"))
        d.setVar("DEPLOY_DIR", os.path.join(scratch, "deploy"))
        d.setVar("QA_LOGFILE", os.path.join(scratch, "qa.log"))
        st = {"error": None}
        mark = len(log.records)
        try:
            self.load_python_context(d)
            unpack = d.getVar("UNPACKDIR")
            os.makedirs(unpack)
            local = [u for u in words(d.getVar("SRC_URI")) if u.startswith("file://")]
            bb.fetch2.Fetch(local, d).unpack(unpack)  # FILESPATH as do_fetch/do_unpack use it
            src = d.getVar("S")
            if not d.getVar("EXTERNALSRC"):
                # What the git fetcher would check out: the source tree under test.
                shutil.copytree(self.args.src, src, symlinks=True,
                                ignore=shutil.ignore_patterns(".git", "target"))
            bins = os.path.join(d.getVar("B"), "target", d.getVar("CARGO_TARGET_SUBDIR"))
            os.makedirs(bins)
            for b in ("bmc-pairing-manager",):  # cargo's output (one multi-call binary), not built here
                with open(os.path.join(bins, b), "w", encoding="utf-8") as f:
                    f.write("#!/bin/sh\nexit 0\n")
                os.chmod(os.path.join(bins, b), 0o755)
            os.makedirs(d.getVar("T"), exist_ok=True)
            bb.build.exec_func("do_install", d)
            image = d.getVar("D")
            st["installed"] = sorted("/" + os.path.relpath(os.path.join(r, f), image)
                                     for r, ds, fs in os.walk(image) for f in fs + ds)
            units = {}
            unitdir = image + d.getVar("systemd_system_unitdir")
            for u in sorted(os.listdir(unitdir)) if os.path.isdir(unitdir) else []:
                with open(os.path.join(unitdir, u), encoding="utf-8") as f:
                    units[u] = f.read()
            st["units"] = units
            bb.build.exec_func("perform_packagecopy", d)
            for func in words(d.getVar("PACKAGESPLITFUNCS")):
                bb.build.exec_func(func, d)
            pkgdest = d.getVar("PKGDEST")
            st["packages"] = {}
            for pkg in words(d.getVar("PACKAGES")):
                root = os.path.join(pkgdest, pkg)
                st["packages"][pkg] = sorted(
                    "/" + os.path.relpath(os.path.join(r, f), root)
                    for r, ds, fs in os.walk(root) for f in fs) if os.path.isdir(root) else []
            st["qa_errors_found"] = bool(d.getVar("QA_ERRORS_FOUND"))
            st["S"] = src
            self.licenses(d, log)
        except Exception as e:  # report, do not hide: check.py fails on it
            st["error"] = f"{type(e).__name__}: {e}"
        st["log"] = log.records[mark:]
        self.facts["stage"] = st

    def stage_lldpd_conf(self):
        """bmc-pairing-lldpd-conf's real do_install: the /etc/lldpd.d snippet it writes."""
        fn = (self.facts["ours"].get("bmc-pairing-lldpd-conf") or {}).get("FILE")
        if not fn:
            return
        d = self.tf.parse_recipe_file(fn)
        work = os.path.join(os.path.abspath(self.args.scratch), "lldpd-conf")
        shutil.rmtree(work, ignore_errors=True)
        d.setVar("WORKDIR", work)
        os.makedirs(d.getVar("UNPACKDIR"))
        os.makedirs(d.getVar("T"))
        local = [u for u in words(d.getVar("SRC_URI")) if u.startswith("file://")]
        bb.fetch2.Fetch(local, d).unpack(d.getVar("UNPACKDIR"))
        bb.build.exec_func("do_install", d)
        image = d.getVar("D")
        files = {}
        for r, _ds, fs in os.walk(image):
            for f in fs:
                with open(os.path.join(r, f), encoding="utf-8") as fh:
                    files["/" + os.path.relpath(os.path.join(r, f), image)] = fh.read()
        self.facts["lldpd_conf"] = {"interfaces": d.getVar("BMC_PAIRING_LLDP_INTERFACES"), "files": files}

    def variant_inputs(self):
        """The recipe files (and bbappends) the variant parses need, from the full parse."""
        image = self.tf.get_recipe_file(IMAGE)
        self.variants_of = {IMAGE: (image, list(self.tf.get_file_appends(image)))}
        daemon = (self.facts["ours"].get(DAEMON) or {}).get("FILE")
        if daemon:
            self.variants_of[DAEMON] = (daemon, list(self.tf.get_file_appends(daemon)))

    def image_without_include(self):
        """obmc-phosphor-image parsed again with the distro include's override taken away:
        the layer alone must change no image."""
        cd = bb.data.createCopy(self.tf.config_data)
        overrides = [o for o in (cd.getVar("DISTROOVERRIDES") or "").split(":") if o != "df-bmc-pairing"]
        cd.setVar("DISTROOVERRIDES", ":".join(overrides))
        fn, appends = self.variants_of[IMAGE]
        d = self.tf.parse_recipe_file(fn, appendlist=appends, config_data=cd)
        self.facts["image_without_include"] = {"DISTROOVERRIDES": d.getVar("DISTROOVERRIDES"),
                                               "PACKAGE_INSTALL": d.getVar("PACKAGE_INSTALL")}

    def licenses(self, d=None, log=None):
        """oe-core's populate_lic_qa_checksum (the do_populate_lic QA) and license_finder on S:
        the staged source tree, or EXTERNALSRC. Without either there is nothing to read."""
        if d is None:
            fn = (self.facts["ours"].get(DAEMON) or {}).get("FILE")
            if not fn:
                return
            d = self.tf.parse_recipe_file(fn)
            if not os.path.isdir(d.getVar("S")):
                self.facts["licenses"] = {"S": d.getVar("S"), "error": "S does not exist (no source here)"}
                return
            self.load_python_context(d)
        mark = len(log.records) if log else 0
        d.delVar("QA_ERRORS_FOUND")
        bb.build.exec_func("populate_lic_qa_checksum", d)
        self.facts["licenses"] = {
            "S": d.getVar("S"), "LICENSE": d.getVar("LICENSE"),
            "qa_errors_found": bool(d.getVar("QA_ERRORS_FOUND")),
            "files": self.license_files(d), "log": log.records[mark:] if log else []}

    def license_files(self, d):
        """LIC_FILES_CHKSUM entries: where they point and what oe-core's license_finder makes of them."""
        import oe.license_finder
        srcdir = d.getVar("S")
        out = []
        for url in words(d.getVar("LIC_FILES_CHKSUM")):
            path = bb.fetch.decodeurl(url)[2]
            full = os.path.normpath(os.path.join(srcdir, path))
            entry = {"url": url, "path": full, "in_source": full.startswith(os.path.normpath(srcdir) + os.sep)}
            if os.path.isfile(full):
                entry["identified_as"] = [lic for lic, _rel, _md5 in
                                          oe.license_finder.match_licenses([full], os.path.dirname(full), d)]
            out.append(entry)
        return out

    def source_variants(self):
        if DAEMON not in self.variants_of:
            return
        fn, appends = self.variants_of[DAEMON]
        sentinel = "git://mirror.invalid/bmc/bmc-pairing-manager.git;protocol=https;branch=main"
        variants = {
            "nothing set": {},
            "only BMC_PAIRING_SRC_URI": {"BMC_PAIRING_SRC_URI": sentinel},
            "only SRCREV": {"SRCREV:pn-bmc-pairing-manager": "1" * 40},
            "both set": {"BMC_PAIRING_SRC_URI": sentinel, "SRCREV:pn-bmc-pairing-manager": "1" * 40},
        }
        out = {"sentinel": sentinel}
        for name, settings in variants.items():
            cd = bb.data.createCopy(self.tf.config_data)
            for var in ("BMC_PAIRING_SRC_URI", "SRCREV:pn-bmc-pairing-manager", "EXTERNALSRC:pn-bmc-pairing-manager"):
                cd.delVar(var)
            for k, v in settings.items():
                cd.setVar(k, v)
            d = self.tf.parse_recipe_file(fn, appendlist=appends, config_data=cd)
            remote = [u for u in words(d.getVar("SRC_URI"))
                      if not u.startswith(("file://", "crate://"))]
            out[name] = {"skipped": d.getVar("__SKIPPED") or None, "remote": remote}
            if remote and not out[name]["skipped"]:
                try:
                    fd = bb.fetch2.Fetch(remote, d)  # parses URL and SRCREV; fetches nothing
                    out[name]["fetcher"] = {u: fd.ud[u].type for u in remote}
                except Exception as e:
                    out[name]["fetcher_error"] = f"{type(e).__name__}: {e}"
        self.facts["source_variants"] = out


def wait_for_server_exit(topdir, seconds=120):
    with open(os.path.join(topdir, "bitbake.lock"), "a+", encoding="utf-8") as lock:
        deadline = time.monotonic() + seconds
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(lock, fcntl.LOCK_UN)
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("the BitBake server did not exit")
                time.sleep(0.5)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--template", required=True)
    ap.add_argument("--src", required=True)
    ap.add_argument("--tree", required=True, help="the OpenBMC tree (for keep lists)")
    ap.add_argument("--name", required=True, help="the configuration's name: setup or kas")
    ap.add_argument("--scratch", default="probe-scratch")
    ap.add_argument("--stage", action="store_true")
    ap.add_argument("--source-variants", action="store_true")
    ap.add_argument("--keep-files", action="store_true", help="what a BBMASK keep list must keep (slow)")
    args = ap.parse_args()

    log = LogCollector()
    logging.getLogger("BitBake").addHandler(log)
    started = time.monotonic()
    with bb.tinfoil.Tinfoil() as tf:
        tf.prepare(config_only=False, quiet=2)
        parsed = time.monotonic()
        p = Probe(tf, args)
        steps = [p.config, p.image, p.depgraph, p.ours, p.closure, p.image_closure, p.image_users, p.kernel,
                 p.stage_lldpd_conf]
        if args.source_variants:
            steps.append(p.variant_inputs)
        if args.keep_files:
            steps.append(p.taskdata_closure)
        for step in steps:
            try:
                step()
            except Exception as e:  # a step that cannot run is a finding, not a crash
                p.facts["errors"].append(f"{step.__name__}: {type(e).__name__}: {e}")
        if args.stage:
            p.stage(log)
        elif p.facts.get("ours", {}).get(DAEMON):
            try:
                p.licenses(log=log)
            except Exception as e:
                p.facts["errors"].append(f"licenses: {type(e).__name__}: {e}")
        p.facts["seconds"] = {"parse": round(parsed - started, 1), "total": round(time.monotonic() - started, 1)}
        p.facts["log"] = log.records
        p.facts["tree"] = os.path.abspath(args.tree)
        p.facts["config_name"] = args.name
    if args.source_variants:
        # Recipes parsed again with another configuration, by a server of their own that has
        # parsed nothing else: the full-parse server would compare their task hashes with
        # the ones it has and log "the metadata is not deterministic". Wait for that server
        # to go (it holds bitbake.lock until it has), so that a new one starts.
        wait_for_server_exit(p.facts["config"]["TOPDIR"])
        with bb.tinfoil.Tinfoil() as tf:
            tf.prepare(config_only=True, quiet=2)
            p.tf = tf
            for step in (p.source_variants, p.image_without_include):
                try:
                    step()
                except Exception as e:
                    p.facts["errors"].append(f"{step.__name__}: {type(e).__name__}: {e}")
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(p.facts, f, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
