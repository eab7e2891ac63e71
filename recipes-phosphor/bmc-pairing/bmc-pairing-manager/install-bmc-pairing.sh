#!/bin/sh
# Install bmc-pairing-manager (one multi-call binary) and its bmc-attestation link
# into a staging root.
#
# Called by bmc-pairing-manager_git.bb's do_install and by
# tests/packaging/run.sh, so the recipe and the offline test stage exactly the
# same files with the same modes. POSIX sh: bitbake runs it with the build
# host's /bin/sh.
#
# Usage:
#   install-bmc-pairing.sh --destdir D --bindir /usr/bin --sysconfdir /etc \
#       --datadir /usr/share --systemd-unitdir /usr/lib/systemd/system \
#       --bin-src DIR_WITH_BINARIES --files DIR_WITH_SOURCES \
#       [--yaml-root DIR --yaml-dir /usr/share/phosphor-dbus-yaml]
#
# --files is the directory that holds this script's siblings (systemd/, dbus/,
# config/): ${UNPACKDIR} in bitbake, the recipe's files directory in tests.
# --yaml-root is the PDI YAML tree (dbus-interfaces-yaml/yaml, holding xyz/...);
# it is copied below --yaml-dir, meta-phosphor's ${yaml_dir}, so the files land
# in ${yaml_dir}/xyz/... as phosphor-dbus-interfaces installs its own (package
# ${PN}-yaml). If the directory does not exist nothing is copied and a note is
# printed.

set -eu

die() { echo "install-bmc-pairing: $*" >&2; exit 1; }

destdir='' bindir='' sysconfdir='' datadir='' unitdir='' binsrc='' files='' yamlroot='' yamldir=''
while [ $# -gt 0 ]; do
    [ $# -ge 2 ] || die "option $1 needs a value"
    case "$1" in
        --destdir) destdir=$2 ;;
        --bindir) bindir=$2 ;;
        --sysconfdir) sysconfdir=$2 ;;
        --datadir) datadir=$2 ;;
        --systemd-unitdir) unitdir=$2 ;;
        --bin-src) binsrc=$2 ;;
        --files) files=$2 ;;
        --yaml-root) yamlroot=$2 ;;
        --yaml-dir) yamldir=$2 ;;
        *) die "unknown option $1" ;;
    esac
    shift 2
done
for v in destdir bindir sysconfdir datadir unitdir binsrc files; do
    eval "val=\${$v}"
    [ -n "$val" ] || die "missing --$(echo "$v" | sed 's/unitdir/systemd-unitdir/; s/binsrc/bin-src/')"
done

# One multi-call binary serves both daemons (std, tokio, zbus and rustls on flash once);
# bmc-attestation is a relative symbolic link to it: the binary picks the daemon by argv[0].
install -d -m 0755 "${destdir}${bindir}"
[ -x "${binsrc}/bmc-pairing-manager" ] || die "${binsrc}/bmc-pairing-manager: no such executable (cargo build --release --bins?)"
install -m 0755 "${binsrc}/bmc-pairing-manager" "${destdir}${bindir}/bmc-pairing-manager"
ln -sf bmc-pairing-manager "${destdir}${bindir}/bmc-attestation"

# systemd units.
install -d -m 0755 "${destdir}${unitdir}"
for unit in xyz.openbmc_project.BmcPairingManager.service xyz.openbmc_project.attestation.service \
        bmc-trust-quorum-unlocked.target; do
    install -m 0644 "${files}/systemd/${unit}" "${destdir}${unitdir}/${unit}"
done

# D-Bus policy: one file per daemon, named after its primary bus name.
install -d -m 0755 "${destdir}${datadir}/dbus-1/system.d"
for policy in xyz.openbmc_project.BmcPairingManager.conf xyz.openbmc_project.attestation.conf; do
    install -m 0644 "${files}/dbus/${policy}" "${destdir}${datadir}/dbus-1/system.d/${policy}"
done

# Configuration (conffiles) and the certificate store the unit makes writable.
install -d -m 0755 "${destdir}${sysconfdir}/bmc-pairing-manager"
install -d -m 0700 "${destdir}${sysconfdir}/bmc-pairing-manager/certs"
for conf in bmc-pairing-manager.conf bmc-attestation.conf; do
    install -m 0644 "${files}/config/${conf}" "${destdir}${sysconfdir}/bmc-pairing-manager/${conf}"
done

# PDI YAML, laid out as phosphor-dbus-interfaces installs its own.
if [ -n "${yamlroot}" ]; then
    [ -n "${yamldir}" ] || die "--yaml-root needs --yaml-dir (\${yaml_dir} of phosphor-dbus-yaml.bbclass)"
    if [ -d "${yamlroot}" ]; then
        yamldest="${destdir}${yamldir}"
        (cd "${yamlroot}" && find . -type f \( -name '*.interface.yaml' -o -name '*.errors.yaml' -o -name '*.events.yaml' \) | LC_ALL=C sort) |
        while read -r f; do
            install -d -m 0755 "${yamldest}/$(dirname "$f")"
            install -m 0644 "${yamlroot}/$f" "${yamldest}/$f"
        done
    else
        echo "install-bmc-pairing: note: ${yamlroot} does not exist, no YAML installed" >&2
    fi
fi
