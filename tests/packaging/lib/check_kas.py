#!/usr/bin/env python3
"""kas files under meta-bmc-pairing/kas/: valid against kas's CONFIGSCHEMA.

Offline: kas itself cannot run here (it clones openbmc), so this checks the
schema (jsonschema + kas.configschema.CONFIGSCHEMA of the installed kas), that
repo-relative includes exist, that our repo entry's layers exist, and that the
`require`d files of our layer exist. A self-test shows a misspelt key
("layerz") is rejected by the schema.
"""

import copy
import glob
import os
import re

import jsonschema
import yaml
from kas.configschema import CONFIGSCHEMA

from harness import Harness, REPO


def problems(path, cfg):
    P = []
    try:
        jsonschema.validate(cfg, CONFIGSCHEMA)
    except jsonschema.ValidationError as e:
        P.append(f"schema: {e.message} at {'/'.join(map(str, e.absolute_path))}")
    for inc in cfg.get("header", {}).get("includes", []):
        if isinstance(inc, str) and not os.path.isfile(os.path.join(REPO, inc)):
            P.append(f"include {inc} does not exist (kas includes are repo-relative)")
    for name, repo in (cfg.get("repos") or {}).items():
        if repo and not repo.get("url") and not repo.get("path"):
            for layer in (repo.get("layers") or {}):
                if not os.path.isfile(os.path.join(REPO, layer, "conf", "layer.conf")):
                    P.append(f"repos.{name}: layer {layer} has no conf/layer.conf in this repository")
    for key, text in (cfg.get("local_conf_header") or {}).items():
        for req in re.findall(r"^\s*require\s+(conf/\S+)", text, re.M):
            if req.startswith("conf/distro/include/bmc-pairing") and \
                    not os.path.isfile(os.path.join(REPO, "meta-bmc-pairing", req)):
                P.append(f"local_conf_header.{key}: {req} is not in meta-bmc-pairing")
    return P


def main():
    h = Harness()
    files = sorted(glob.glob(os.path.join(REPO, "meta-bmc-pairing", "kas", "*.yml")))
    h.check(bool(files), "kas files present", "none under meta-bmc-pairing/kas/")
    for f in files:
        with open(f, encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh)
        P = problems(f, cfg)
        h.check(not P, f"kas {os.path.relpath(f, REPO)}", "\n".join(P))
    if files:
        with open(files[0], encoding="utf-8") as fh:
            cfg = yaml.safe_load(fh)
        bad = copy.deepcopy(cfg)
        repo = next(iter(bad["repos"].values()))
        repo["layerz"] = repo.pop("layers")
        P = problems(files[0], bad)
        h.check(any("layerz" in p for p in P), "self-test: a misspelt kas key is rejected", f"{P}")
    h.exit()


if __name__ == "__main__":
    main()
