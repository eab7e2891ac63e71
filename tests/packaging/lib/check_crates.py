#!/usr/bin/env python3
"""The committed <PN>-crates.inc is exactly what Cargo.lock generates.

- tools/crates-inc.py --check over the tracked Cargo.lock file(s) (root first,
  as bitbake's do_update_crates walks ${S} from the top) must match the
  committed recipes-phosphor/bmc-pairing/bmc-pairing-manager-crates.inc;
- every crate:// entry has its SRC_URI[<name>-<version>.sha256sum], one per
  crates.io package of the lock, and the recipe requires ${BPN}-crates.inc;
- self-tests: a temp Cargo.lock with one extra crates.io package must make
  the check fail (stale inc); a temp lock with a git source must be refused.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import tomllib

from harness import Harness, REPO

TOOL = os.path.join(REPO, "tools", "crates-inc.py")
RECIPE_DIR = os.path.join(REPO, "recipes-phosphor", "bmc-pairing")
RECIPE = os.path.join(RECIPE_DIR, "bmc-pairing-manager_git.bb")
INC = os.path.join(RECIPE_DIR, "bmc-pairing-manager-crates.inc")


def tracked_locks():
    try:
        p = subprocess.run(["git", "-C", REPO, "ls-files", "--", "Cargo.lock", "*/Cargo.lock"],
                           capture_output=True, text=True, check=True)
        locks = [l for l in p.stdout.splitlines() if l]
    except (OSError, subprocess.CalledProcessError):
        locks = []
    if not locks and os.path.exists(os.path.join(REPO, "Cargo.lock")):
        locks = ["Cargo.lock"]
    return sorted(locks, key=lambda l: (l.count("/"), l))


def tool(*args):
    return subprocess.run([sys.executable, TOOL, *args], capture_output=True, text=True, cwd=REPO)


def main():
    h = Harness()
    locks = tracked_locks()
    if not h.check("Cargo.lock" in locks, "Cargo.lock is committed", f"tracked locks: {locks}"):
        h.exit()
    p = tool("--check", "--src-dir", REPO, *locks, INC)
    h.check(p.returncode == 0, "crates.inc regenerated from Cargo.lock equals the committed file",
            p.stderr + f"\nfix: python3 tools/crates-inc.py {' '.join(locks)} "
            f"{os.path.relpath(INC, REPO)}", note=f"locks: {', '.join(locks)}")

    with open(INC, encoding="utf-8") as f:
        inc = f.read()
    uris = re.findall(r"^    crate://crates\.io/([^/\s]+)/(\S+) \\$", inc, re.M)
    sums = dict(re.findall(r'^SRC_URI\[(\S+)\.sha256sum\] = "([0-9a-f]{64})"$', inc, re.M))
    missing = [f"{n}-{v}" for n, v in uris if f"{n}-{v}" not in sums]
    n_lock = 0
    for lock in locks:
        with open(os.path.join(REPO, lock), "rb") as f:
            n_lock += sum(1 for pk in tomllib.load(f).get("package", []) if "crates.io" in pk.get("source", ""))
    h.check(uris and not missing and len(uris) == len(sums) == n_lock,
            "every crate:// entry has a sha256sum, one per crates.io package",
            f"{len(uris)} uris, {len(sums)} sums, {n_lock} crates.io packages; missing sums: {missing[:5]}",
            note=f"{len(uris)} crates")
    with open(RECIPE, encoding="utf-8") as f:
        recipe = f.read()
    h.check(re.search(r"^require \$\{BPN\}-crates\.inc$", recipe, re.M) is not None
            and os.path.basename(INC) == os.path.basename(RECIPE).split("_")[0] + "-crates.inc",
            "recipe requires ${BPN}-crates.inc and the file is named after the recipe", "")

    tmp = tempfile.mkdtemp(prefix="crates-")
    try:
        # Extra crates.io package added to the lock without regenerating.
        extra = os.path.join(tmp, "extra", "Cargo.lock")
        os.makedirs(os.path.dirname(extra))
        with open(os.path.join(REPO, "Cargo.lock"), encoding="utf-8") as f:
            text = f.read()
        text += ('\n[[package]]\nname = "zz-added-without-regeneration"\nversion = "0.1.0"\n'
                 'source = "registry+https://github.com/rust-lang/crates.io-index"\n'
                 'checksum = "' + "ab" * 32 + '"\n')
        with open(extra, "w", encoding="utf-8") as f:
            f.write(text)
        p = tool("--check", extra, INC)
        h.check(p.returncode == 1 and "zz-added-without-regeneration" in p.stderr,
                "self-test: a crate added to Cargo.lock without regenerating fails the check",
                f"rc={p.returncode}\n{p.stderr}")

        # Git dependency.
        gitlock = os.path.join(tmp, "git", "Cargo.lock")
        os.makedirs(os.path.dirname(gitlock))
        with open(gitlock, "w", encoding="utf-8") as f:
            f.write(text + '\n[[package]]\nname = "from-git"\nversion = "0.2.0"\n'
                    'source = "git+https://example.invalid/from-git.git#0123456789abcdef0123456789abcdef01234567"\n')
        out = os.path.join(tmp, "git", "x-crates.inc")
        p = tool(gitlock, out)
        h.check(p.returncode != 0 and "from-git" in p.stderr and "other than crates.io" in p.stderr
                and not os.path.exists(out),
                "self-test: a git source in Cargo.lock is refused (no inc written)",
                f"rc={p.returncode}\n{p.stderr}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    h.exit()


if __name__ == "__main__":
    main()
