#!/usr/bin/env bash
# Our layer in OpenBMC's real tree, checked by BitBake itself (issue 16).
#
#   tests/openbmc/run.sh                    # the layer of this working tree
#   tests/openbmc/run.sh --layer-rev REV    # the layer as committed at REV (e.g. to show that
#                                           # a check fails on an old layer)
#   tests/openbmc/run.sh --full-parse       # parse all recipes (no BBMASK pruning)
#   tests/openbmc/run.sh --write-keep-list  # full parse, then rewrite keep-recipes.txt
#
# What it does, as root on Debian bookworm, offline except for Debian and PyPI:
# 1. installs BitBake's host tools, generates en_US.UTF-8 and creates the unprivileged user
#    bpm-bitbake (BitBake refuses to run as root);
# 2. unpacks ../shared/third_party/openbmc/openbmc-*-layers.tar.xz once into the cache
#    (target/openbmc by default) and makes it a git repository with the tag upstream's
#    `git describe` needs (meta-phosphor's os-release recipe runs it on every parse);
# 3. snapshots the layer under test (this working tree, or --layer-rev) into the cache as a
#    git repository: the "mirror" the recipe fetches from, and the repository kas reads;
# 4. configuration "setup": OpenBMC's own `. setup evb-ast2600`, then
#    `bitbake-layers add-layer` meta-security/meta-tpm and meta-bmc-pairing, and the lines an
#    integrator adds to local.conf as meta-bmc-pairing/README.md says (the distro include, the
#    mirror and SRCREV). No tpm2: the machine has none, which is the case where a group the
#    units need would otherwise be missing;
# 5. configuration "kas": kas itself runs meta-bmc-pairing/kas/evb-ast2600.yml with the
#    externalsrc.yml overlay, cloning "github.com/openbmc/openbmc" from the unpacked tree
#    (KAS_PREMIRRORS). This is the configuration of the QEMU images (tpm2, externalsrc);
# 6. in each, tests/openbmc/probe.py reads what BitBake makes of it (tinfoil; full parse,
#    dependency tree of obmc-phosphor-image; in "setup" also the daemon recipe's real
#    do_install and oe-core's package split) as bpm-bitbake with BB_NO_NETWORK = "1";
# 7. tests/openbmc/check.py asserts on those values; "ok"/"FAIL" per case, then
#    "N passed, N failed"; exit status 0 only if nothing failed.
#
# Test-only settings go to each build directory's conf/auto.conf (BitBake reads it after
# site.conf, before local.conf): BB_NO_NETWORK, and the BBMASK pruning of prune.py (its
# docstring says why the result is what a full parse gives).
#
# Env: BPM_OPENBMC_CACHE  cache directory (default target/openbmc; it must be reachable by
#                         bpm-bitbake, otherwise /var/tmp/bpm-openbmc-<hash> is used)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$REPO/tests/openbmc
SHARED=$(cd "$REPO/.." && pwd)/shared/third_party
TARBALL=$(echo "$SHARED"/openbmc/openbmc-*-layers.tar.xz)
PROPOSED=$SHARED/phosphor-dbus-interfaces/proposed/yaml
MACHINE=evb-ast2600
BUILD_USER=bpm-bitbake
KEEP_LIST=$HERE/keep-recipes.txt
# Debian's interpreter, not whatever python3 comes first in root's PATH: the venv must be
# usable by the build user, and python3-yaml is Debian's.
PY=/usr/bin/python3
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the repository (it is snapshotted)

layer_rev="" prune=1 write_keep=0
while (($#)); do
    case $1 in
        --layer-rev) layer_rev=${2:?--layer-rev needs a git revision}; shift ;;
        --full-parse) prune=0 ;;
        --write-keep-list) prune=0 write_keep=1 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

started=$SECONDS
say() { printf '[openbmc %4ss] %s\n' "$((SECONDS - started))" "$*"; }
die() { echo "tests/openbmc/run.sh: $*" >&2; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (apt-get, and the unprivileged build user)"
[[ -f $TARBALL ]] || die "no OpenBMC extract at $SHARED/openbmc/"

# --- 1. host tools, locale, user --------------------------------------------------------
apt_updated=0
need_deb() { # need_deb <package> <test command...>
    local pkg=$1; shift
    if "$@" >/dev/null 2>&1; then return 0; fi
    say "installing Debian package $pkg"
    if [[ $apt_updated == 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
        apt_updated=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
}
# BitBake's HOSTTOOLS and sanity checks (oe-core meta/conf/bitbake.conf, sanity.bbclass).
for tool in gawk chrpath cpio diffstat lz4c:lz4 zstd socat makeinfo:texinfo unzip file wget \
    xz:xz-utils bzip2 patch git gcc g++ make rpcgen perl; do
    need_deb "${tool#*:}" command -v "${tool%%:*}"
done
need_deb locales test -f /usr/sbin/locale-gen
need_deb python3 test -x $PY
need_deb python3-yaml $PY -c 'import yaml'
need_deb python3-venv $PY -c 'import ensurepip, venv'
if ! locale -a 2>/dev/null | grep -Eqix 'en_US\.utf-?8'; then
    say "generating the en_US.UTF-8 locale"
    sed -i 's/^# *\(en_US.UTF-8 UTF-8\)/\1/' /etc/locale.gen
    grep -q '^en_US.UTF-8 UTF-8' /etc/locale.gen || echo 'en_US.UTF-8 UTF-8' >>/etc/locale.gen
    locale-gen >/dev/null
fi
if ! id "$BUILD_USER" >/dev/null 2>&1; then
    say "creating the unprivileged user $BUILD_USER"
    useradd --system --create-home --home-dir "/var/lib/$BUILD_USER" --shell /bin/bash "$BUILD_USER"
fi
as_user() { runuser -u "$BUILD_USER" -- env -i HOME="/var/lib/$BUILD_USER" LANG=en_US.UTF-8 \
    LC_ALL=en_US.UTF-8 PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin "$@"; }

# --- 2. cache and the unpacked tree -----------------------------------------------------
cache=${BPM_OPENBMC_CACHE:-$REPO/target/openbmc}
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)
if ! runuser -u "$BUILD_USER" -- test -x "$cache"; then
    fallback=/var/tmp/bpm-openbmc-$(printf '%s' "$cache" | sha256sum | cut -c1-12)
    say "$BUILD_USER cannot reach $cache (a parent directory is private); using $fallback"
    cache=$fallback
    mkdir -p "$cache"
fi
chown "$BUILD_USER:" "$cache"
digest=$(sha256sum "$TARBALL" | cut -d' ' -f1)
tree=$cache/openbmc-${digest:0:12}
if [[ ! -f $tree.ready ]]; then
    say "unpacking $(basename "$TARBALL") into $tree"
    rm -rf "$tree" "$cache"/kas "$cache"/build-*
    as_user mkdir "$tree"
    as_user tar -C "$tree" -xJf "$TARBALL"
    # meta-phosphor's os-release runs `git describe --dirty` on the tree; upstream gives
    # 3.1.0-dev-998-g8e3322f34f at this commit, so an annotated 3.1.0-dev tag is enough.
    as_user git -C "$tree" init -q -b master
    as_user git -C "$tree" add -A
    as_user git -C "$tree" -c user.name=bpm -c user.email=bpm@localhost commit -q -m "OpenBMC extract $digest"
    as_user git -C "$tree" -c user.name=bpm -c user.email=bpm@localhost tag -a 3.1.0-dev -m openbmc
    touch "$tree.ready"
fi

# --- 3. the layer under test ------------------------------------------------------------
src=$cache/src
tools=$cache/tools
rm -rf "$src" "$tools"
as_user mkdir "$src" "$tools"
if [[ -n $layer_rev ]]; then
    say "layer under test: $layer_rev ($(git -C "$REPO" rev-parse --short "$layer_rev"))"
    git -C "$REPO" archive "$layer_rev" | as_user tar -C "$src" -xf -
else
    say "layer under test: this working tree"
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard |
        tar --null --ignore-failed-read -T - -cf -) | as_user tar -C "$src" -xf -
fi
# A commit whose id depends on the content only: the same layer gives the same SRCREV, hence
# the same configuration, and BitBake's parse cache stays valid between runs.
as_user git -C "$src" init -q -b main
as_user git -C "$src" add -A
as_user env GIT_AUTHOR_DATE=2000-01-01T00:00:00Z GIT_COMMITTER_DATE=2000-01-01T00:00:00Z \
    git -C "$src" -c user.name=bpm -c user.email=bpm@localhost commit -q -m "layer under test"
src_rev=$(as_user git -C "$src" rev-parse HEAD)
# The probe is always this working tree's, whatever layer is under test.
install -o "$BUILD_USER" -m 0644 "$HERE/probe.py" "$tools/probe.py"

# kas, in a venv of its own (tests/openbmc/requirements.txt).
kas_pin=$(grep -E '^kas==' "$HERE/requirements.txt")
venv=$cache/venv
if [[ "$(cat "$venv/.pin" 2>/dev/null || true)" != "$kas_pin" ]]; then
    say "installing $kas_pin into $venv"
    rm -rf "$venv"
    $PY -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check "$kas_pin"
    echo "$kas_pin" >"$venv/.pin"
fi

# --- test-only settings (conf/auto.conf) --------------------------------------------------
mask_file=$cache/bbmask.txt
: >"$mask_file"
if ((prune)); then
    if [[ "$($PY "$HERE/prune.py" digest "$KEEP_LIST")" == "$digest" ]]; then
        $PY "$HERE/prune.py" mask "$KEEP_LIST" "$tree" >"$mask_file"
    else
        say "NOTE: $(basename "$KEEP_LIST") was made for another extract: parsing every recipe"
    fi
fi
write_auto_conf() { # write_auto_conf <build dir>
    local conf=$1/conf/auto.conf
    as_user mkdir -p "$1/conf"
    {
        echo "# tests/openbmc/run.sh: offline, and (if any) the BBMASK pruning of prune.py."
        echo 'BB_NO_NETWORK = "1"'
        if [[ -s $mask_file ]]; then
            printf 'BBMASK += " \\\n'
            sed 's/$/ \\/' "$mask_file"
            echo '"'
        fi
    } | as_user tee "$conf" >/dev/null
}

# --- 4. configuration "setup" -----------------------------------------------------------
template=$tree/meta-evb/meta-evb-aspeed/meta-$MACHINE/conf/templates/default/local.conf.sample
build_setup=$cache/build-setup
say "configuration setup: . setup $MACHINE, bitbake-layers add-layer meta-tpm meta-bmc-pairing"
as_user rm -rf "$build_setup/conf"
# shellcheck disable=SC2016 # the script is expanded by the user's shell, with arguments
as_user bash -c '
    set -e
    cd "$1"
    . ./setup "$2" "$3" >/dev/null
    bitbake-layers add-layer "$1/meta-security/meta-tpm" "$4/meta-bmc-pairing"
    cat >>conf/local.conf <<EOF

# meta-bmc-pairing, as its README tells an integrator (added by tests/openbmc/run.sh)
require conf/distro/include/bmc-pairing.inc
BMC_PAIRING_SRC_URI = "git://$4;protocol=file;branch=main"
SRCREV:pn-bmc-pairing-manager = "$5"
EOF
' _ "$tree" "$MACHINE" "$build_setup" "$src" "$src_rev" >"$cache/setup.log" 2>&1 ||
    { tail -n 40 "$cache/setup.log"; die "setting up the build directory failed"; }
write_auto_conf "$build_setup"

probe_args=(--template "$template" --src "$src" --tree "$tree")
keep_arg=()
((write_keep)) && keep_arg=(--keep-files)
say "configuration setup: parse and probe (bitbake as $BUILD_USER)"
# shellcheck disable=SC2016 # as above
as_user bash -c '
    set -e
    cd "$1"
    . ./setup "$2" "$3" >/dev/null
    shift 3
    PYTHONPATH="$OLDPWD/bitbake/lib" python3 "$@"
' _ "$tree" "$MACHINE" "$build_setup" "$tools/probe.py" --name setup --out "$cache/facts-setup.json" \
    --scratch "$cache/scratch-setup" --stage --source-variants "${probe_args[@]}" "${keep_arg[@]}" \
    >"$cache/probe-setup.log" 2>&1 || { tail -n 40 "$cache/probe-setup.log"; die "probe (setup) failed"; }

# --- 5. configuration "kas" -------------------------------------------------------------
kas_files=meta-bmc-pairing/kas/evb-ast2600.yml:meta-bmc-pairing/kas/externalsrc.yml
build_kas=$cache/build-kas
write_auto_conf "$build_kas"
say "configuration kas: kas shell $kas_files"
# shellcheck disable=SC2016 # as above
as_user env KAS_WORK_DIR="$cache/kas" KAS_BUILD_DIR="$build_kas" \
    KAS_PREMIRRORS="^https://github.com/openbmc/openbmc$ $tree" \
    bash -c 'cd "$1" && shift && "$@"' _ "$src" \
    "$venv/bin/kas" shell "$kas_files" -c "PYTHONPATH=$cache/kas/openbmc/bitbake/lib python3 $tools/probe.py --name kas \
        --out $cache/facts-kas.json --scratch $cache/scratch-kas --template $template --src $src \
        --tree $cache/kas/openbmc ${keep_arg[*]}" >"$cache/probe-kas.log" 2>&1 ||
    { tail -n 40 "$cache/probe-kas.log"; die "probe (kas) failed"; }

# --- 6. assertions ----------------------------------------------------------------------
if ((write_keep)); then
    $PY "$HERE/prune.py" keep-list "$tree" "$TARBALL" "$cache/facts-setup.json" "$cache/facts-kas.json" \
        >"$KEEP_LIST.tmp"
    mv "$KEEP_LIST.tmp" "$KEEP_LIST"
    say "wrote $KEEP_LIST ($(grep -vEc "^(#|chosen )" "$KEEP_LIST") recipe files)"
fi
say "checks"
set +e
$PY "$HERE/check.py" --setup "$cache/facts-setup.json" --kas "$cache/facts-kas.json" \
    --src "$src" --proposed "$PROPOSED" --keep-list "$KEEP_LIST"
rc=$?
set -e
say "done (cache: $cache)"
exit "$rc"
