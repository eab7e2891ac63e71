#!/usr/bin/env bash
# Offline checks for the OpenBMC packaging of bmc-pairing-manager.
#
#   tests/packaging/run.sh                       # YAML from dbus-interfaces-yaml/yaml
#   YAML_ROOT=tests/packaging/fixtures/good tests/packaging/run.sh
#
# Sets up .venv/ (gitignored) with the pinned tools of requirements.txt,
# installs missing Debian tools (systemd-analyze, dbus-daemon, python3-dbus,
# ...) with apt-get, runs every check, prints each case as "ok"/"FAIL" and
# ends with "N passed, N failed". Exit status 0 only if nothing failed.
# Needs root (apt-get, and the D-Bus policy check switches to user nobody).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$REPO"
PKG=tests/packaging
YAML_ROOT=${YAML_ROOT:-dbus-interfaces-yaml/yaml}
VENV=$REPO/.venv
PASSED=0
FAILED=0

say() { printf '%s\n' "$*"; }

# --- tools ------------------------------------------------------------------
apt_updated=0
need_deb() { # need_deb <package> <test command...>
    local pkg=$1; shift
    if "$@" >/dev/null 2>&1; then return 0; fi
    say "-- installing Debian package $pkg"
    if [ "$apt_updated" = 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
}
need_deb python3-venv python3 -c 'import ensurepip, venv'
need_deb systemd command -v systemd-analyze
need_deb dbus-daemon command -v dbus-daemon
need_deb dbus-bin command -v dbus-send
need_deb dbus test -f /usr/share/dbus-1/system.conf
need_deb python3-dbus /usr/bin/python3 -c 'import dbus'
need_deb python3-gi /usr/bin/python3 -c 'from gi.repository import GLib'
need_deb util-linux command -v setpriv
need_deb git command -v git

REQ=$PKG/requirements.txt
STAMP=$VENV/.packaging-requirements.sha256
want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
    say "-- creating $VENV"
    python3 -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$want" ]; then
    say "-- pip install -r $REQ"
    "$VENV/bin/pip" install -q --disable-pip-version-check -r "$REQ"
    printf '%s\n' "$want" > "$STAMP"
fi
export PATH=$VENV/bin:$PATH
PY=$VENV/bin/python

# --- checks -----------------------------------------------------------------
run_check() { # run_check <title> <command...>
    local title=$1; shift
    say ""
    say "== $title"
    local out rc p f
    set +e
    out=$("$@" 2>&1)
    rc=$?
    set -e
    printf '%s\n' "$out"
    p=$(grep -c '^  ok ' <<<"$out" || true)
    f=$(grep -c '^  FAIL ' <<<"$out" || true)
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
        say "  FAIL $title: exited $rc without reporting a case"
        f=1
    fi
    PASSED=$((PASSED + p))
    FAILED=$((FAILED + f))
}

if [ -d "$YAML_ROOT" ]; then
    say "YAML root: $YAML_ROOT"
    yaml_ok=1
else
    say "YAML root: $YAML_ROOT does not exist"
    say "  (set YAML_ROOT=$PKG/fixtures/good until dbus-interfaces-yaml/ lands)"
    yaml_ok=0
fi

start=$SECONDS
if [ "$yaml_ok" = 1 ]; then
    run_check "sdbus++ generators over $YAML_ROOT" "$PY" $PKG/lib/check_sdbus.py "$YAML_ROOT"
    run_check "strict PDI YAML checker (tools/check-pdi-yaml.py) and its fixtures" \
        "$PY" $PKG/lib/check_pdi_strict.py "$YAML_ROOT"
    run_check "bus names: units, D-Bus policy, YAML, recipe" "$PY" $PKG/lib/check_consistency.py "$YAML_ROOT"
    run_check "staging install (install-bmc-pairing.sh) and systemd-analyze" \
        "$PY" $PKG/lib/check_staging.py "$YAML_ROOT"
else
    say "  FAIL YAML root $YAML_ROOT missing: YAML, consistency and staging checks not run"
    FAILED=$((FAILED + 1))
fi
run_check "oelint-adv (curated rules, --release wrynose)" "$PY" $PKG/lib/check_oelint.py
run_check "crates.inc equals Cargo.lock" "$PY" $PKG/lib/check_crates.py
run_check "layer sanity (layer.conf, symlink, BBFILES)" "$PY" $PKG/lib/check_layer.py
run_check "D-Bus policy enforced by a real dbus-daemon" "$PY" $PKG/lib/check_dbus_policy.py

say ""
say "packaging checks took $((SECONDS - start)) s"
say "$PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
