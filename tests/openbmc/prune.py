#!/usr/bin/env python3
"""What BitBake may skip parsing in the OpenBMC check, and why that stays honest.

A cold parse of the whole extract (3,155 recipes) takes six to ten minutes per
configuration on two busy cores; obmc-phosphor-image needs a few hundred of
them. keep-recipes.txt lists the recipe files BitBake's TaskData resolves for
the image (probe.py --keep-files: DEPENDS, RDEPENDS, RRECOMMENDS and every
task's [depends]/[rdepends], do_populate_sdk's too, transitively), with every
other provider of each name, taken from full parses (`run.sh
--write-keep-list`) of both configurations the check uses, for exactly one
extract (its SHA-256 is the list's first line). BBMASK then hides every other
recipe, and every bbappend that would apply to none of the kept recipes. Why
the result is the one a full parse gives:

- every recipe the image can depend on, in either configuration, is kept with
  all of its versions, and every bbappend that applies to a kept recipe is
  kept, so each kept recipe parses exactly as in the full tree;
- BitBake chooses a provider among the candidates it parsed; the candidates
  it chose in the full parse are all kept, so pruning only removes losers;
- a masked recipe that is needed after a change (a new dependency of our
  layer) is not silently replaced: "Nothing PROVIDES"/"Nothing RPROVIDES"
  makes the dependency-tree step fail, and check.py fails with it;
- the list also records which file the full parse chose for every recipe of
  the image's dependency tree ("chosen" lines); check.py compares the pruned
  parse's choices with them;
- the list is used only for the extract it was made from; for any other
  run.sh parses everything.

Usage:
  prune.py mask KEEP_LIST TREE      print BBMASK entries (one per line) for TREE
  prune.py keep-list TREE TARBALL FACTS.json... > KEEP_LIST
"""

import hashlib
import json
import os
import re
import sys

RECIPE_SUFFIXES = (".bb", ".bbappend")
# Our layer lives outside TREE and is never masked; TREE's own layers are
# reached through the top-level symlinks (meta, meta-openembedded, ...),
# which is how BBLAYERS names them and how BitBake matches BBMASK.
LAYER_ROOTS = ("meta", "meta-openembedded", "meta-security", "meta-phosphor", "meta-aspeed", "meta-evb")


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def recipe_files(tree):
    """Relative paths ('meta-oe/...') of every .bb and .bbappend, through the layer symlinks."""
    out = []
    for root in LAYER_ROOTS:
        top = os.path.join(tree, root)
        for dirpath, dirs, files in os.walk(top, followlinks=True):
            dirs.sort()
            for f in sorted(files):
                if f.endswith(RECIPE_SUFFIXES):
                    out.append(os.path.relpath(os.path.join(dirpath, f), tree))
    return out


def append_applies(append, recipe):
    """BitBake's rule: foo_1.2.bbappend applies to foo_1.2.bb; a '%' matches the rest."""
    stem = os.path.basename(append)[: -len(".bbappend")]
    name = os.path.basename(recipe)[: -len(".bb")]
    if "%" in stem:
        return name.startswith(stem[: stem.index("%")])
    return name == stem


def masked_files(tree, keep):
    files = recipe_files(tree)
    kept_bb = [f for f in files if f.endswith(".bb") and f in keep]
    masked = set()
    for f in files:
        if f.endswith(".bb"):
            if f not in keep:
                masked.add(f)
        elif not any(append_applies(f, r) for r in kept_bb):
            masked.add(f)
    return files, masked


def mask_entries(tree, keep):
    """Regular expressions for BBMASK: whole directories where nothing is kept, else files."""
    files, masked = masked_files(tree, keep)
    kept_dirs = set()
    for f in files:
        if f not in masked:
            d = os.path.dirname(f)
            while d:
                kept_dirs.add(d)
                d = os.path.dirname(d)
    entries = set()
    for f in sorted(masked):
        d, top = os.path.dirname(f), None
        while d and d not in kept_dirs:  # the highest directory with nothing kept
            top = d
            d = os.path.dirname(d)
        entries.add(f"/{re.escape(top)}/" if top else f"/{re.escape(f)}$")
    return sorted(entries), len(files), len(masked)


def read_keep_list(path):
    """(extract digest, kept relative paths, {config: {pn: chosen file}})"""
    with open(path, encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    header = [line for line in lines if line.startswith("#")]
    digest = next((line.split()[-1] for line in header if line.startswith("# extract-sha256:")), None)
    chosen = {}
    for line in lines:
        if line.startswith("chosen "):
            _, config, pn, rel = line.split()
            chosen.setdefault(config, {})[pn] = rel
    return digest, {line for line in lines if not line.startswith(("#", "chosen "))}, chosen


def relative_choice(fn, tree):
    """virtual:native:/tree/meta/x.bb -> virtual:native:meta/x.bb"""
    prefix, _, path = fn.rpartition(":") if fn.startswith("virtual:") else ("", "", fn)
    rel = os.path.relpath(path, tree)
    return f"{prefix}:{rel}" if prefix else rel


def keep_list(tree, tarball, facts_files):
    keep, chosen = set(), []
    real_tree = os.path.realpath(tree)
    for path in facts_files:
        with open(path, encoding="utf-8") as f:
            facts = json.load(f)
        graph = facts.get("depgraph") or {}
        if graph.get("failure") or not graph.get("pn") or not facts.get("keep_files"):
            sys.exit(f"prune.py: {path} has no complete dependency tree or no --keep-files; no keep list")
        tree_of_run = facts["tree"]
        config = facts["config_name"]
        for pn, fn in sorted(graph["pn"].items()):
            rel = relative_choice(fn, tree_of_run)
            if not rel.split(":")[-1].startswith(".."):
                chosen.append(f"chosen {config} {pn} {rel}")
        for fn in list(graph["pn"].values()) + facts["keep_files"]["files"]:
            fn = fn.split(":")[-1]  # virtual:native:/path/x.bb -> /path/x.bb
            rel = os.path.relpath(fn, tree_of_run)
            if not rel.startswith(".."):
                keep.add(rel)
    # every version of a kept recipe stays, so preferred-version choices are unchanged
    names = {os.path.basename(k).split("_")[0].removesuffix(".bb") for k in keep}
    for f in recipe_files(real_tree):
        if f.endswith(".bb") and os.path.basename(f).split("_")[0].removesuffix(".bb") in names:
            keep.add(f)
    lines = [f"# extract-sha256: {sha256(tarball)}",
             "# Recipe files BitBake's TaskData resolves for obmc-phosphor-image in both configurations",
             "# of tests/openbmc/run.sh (setup without tpm2, kas with tpm2 and externalsrc), from full",
             "# parses. Regenerate: tests/openbmc/run.sh --write-keep-list. See prune.py."]
    return "\n".join(lines + sorted(keep) + chosen) + "\n"


def main():
    if len(sys.argv) == 4 and sys.argv[1] == "mask":
        _digest, keep, _chosen = read_keep_list(sys.argv[2])
        entries, total, masked = mask_entries(sys.argv[3], keep)
        print(f"prune: {total} recipe files, {masked} masked in {len(entries)} BBMASK entries", file=sys.stderr)
        print("\n".join(entries))
    elif len(sys.argv) >= 5 and sys.argv[1] == "keep-list":
        sys.stdout.write(keep_list(sys.argv[2], sys.argv[3], sys.argv[4:]))
    elif len(sys.argv) == 3 and sys.argv[1] == "digest":
        print(read_keep_list(sys.argv[2])[0] or "")
    else:
        sys.exit(__doc__.split("Usage:")[1])


if __name__ == "__main__":
    main()
