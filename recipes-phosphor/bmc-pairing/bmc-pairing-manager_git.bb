SUMMARY = "Attested, TPM-backed pairing of OpenBMC BMCs"
DESCRIPTION = "bmc-pairing-manager pairs BMCs: LLDP discovery, SPDM attestation \
               of the peer, TPM2-held identity keys and a mutual TLS 1.3 channel \
               between pinned peers, controlled over D-Bus. bmc-attestation is \
               its SPDM requester and responder."
HOMEPAGE = "https://github.com/openbmc-pairing/bmc-pairing-manager"
BUGTRACKER = "https://github.com/openbmc-pairing/bmc-pairing-manager/issues"
SECTION = "bmc"
# Cargo.toml says Apache-2.0; LICENSE at the top of the source tree is its text.
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57"

# tss-esapi links tss2-esys/-sys/-mu/-tctildr (found through pkg-config).
DEPENDS = "tpm2-tss"

PV = "0.1.0+git"

# The source is this repository, which has no public home to default to:
# fetch it from your own mirror, pinned to a commit, e.g. in local.conf
#   BMC_PAIRING_SRC_URI = "git://git.example.com/bmc/bmc-pairing-manager.git;protocol=https;branch=main"
#   SRCREV:pn-bmc-pairing-manager = "<40-hex commit>"
# (or set both in a bbappend). Until both are set the recipe is skipped with a
# message that says so, instead of failing later in do_fetch; an image that
# needs it then stops at parse time with that message.
#
# For a local checkout build the working tree instead (externalsrc keeps the
# crate:// and file:// entries, so crates are still fetched and vendored):
#   INHERIT += "externalsrc"
#   EXTERNALSRC:pn-bmc-pairing-manager = "/path/to/bmc-pairing-manager"
# meta-bmc-pairing/kas/externalsrc.yml does exactly that for kas users.
BMC_PAIRING_SRC_URI ??= ""
SRC_URI = "${BMC_PAIRING_SRC_URI} \
           file://install-bmc-pairing.sh \
           file://systemd/xyz.openbmc_project.BmcPairingManager.service \
           file://systemd/xyz.openbmc_project.attestation.service \
           file://systemd/bmc-trust-quorum-unlocked.target \
           file://dbus/xyz.openbmc_project.BmcPairingManager.conf \
           file://dbus/xyz.openbmc_project.attestation.conf \
           file://config/bmc-pairing-manager.conf \
           file://config/bmc-attestation.conf \
           "
SRCREV = "0000000000000000000000000000000000000000"

inherit cargo cargo-update-recipe-crates pkgconfig systemd phosphor-dbus-yaml

# Every crate of Cargo.lock as crate:// + checksum; regenerate with
#   bitbake -c update_crates bmc-pairing-manager
# or, without bitbake, from the repository root:
#   python3 tools/crates-inc.py Cargo.lock recipes-phosphor/bmc-pairing/bmc-pairing-manager-crates.inc
require ${BPN}-crates.inc

# A BMC reaches its TPM at /dev/tpmrm0 (device TCTI). TCTI strings for a TPM over the
# network or D-Bus (swtpm:, mssim:, tabrmd:) need tss-esapi's parser and with it the regex
# engine, about 1 MB of the binary: opt in with PACKAGECONFIG:append:pn-bmc-pairing-manager
# = " network-tcti".
CARGO_BUILD_FLAGS:append = " --no-default-features"
PACKAGECONFIG ??= ""
PACKAGECONFIG[network-tcti] = "--features network-tcti,,"

SYSTEMD_SERVICE:${PN} = "xyz.openbmc_project.BmcPairingManager.service \
                         xyz.openbmc_project.attestation.service"

# One script does the whole install, so tests/packaging/run.sh stages the very
# same layout without bitbake. It installs the multi-call binary and its
# bmc-attestation link, the units, the D-Bus
# policies, the default configuration and the PDI YAML, the latter into
# ${yaml_dir} (phosphor-dbus-yaml.bbclass) as ${yaml_dir}/xyz/..., where
# phosphor-dbus-interfaces puts its own and where consumers look.
do_install() {
    sh ${UNPACKDIR}/install-bmc-pairing.sh \
        --destdir "${D}" \
        --bindir "${bindir}" \
        --sysconfdir "${sysconfdir}" \
        --datadir "${datadir}" \
        --systemd-unitdir "${systemd_system_unitdir}" \
        --bin-src "${B}/target/${CARGO_TARGET_SUBDIR}" \
        --files "${UNPACKDIR}" \
        --yaml-root "${S}/dbus-interfaces-yaml/yaml" \
        --yaml-dir "${yaml_dir}"
}

FILES:${PN} += "${datadir}/dbus-1/system.d"
# The trust quorum's target: started by the daemon when unlocked, never enabled.
FILES:${PN} += "${systemd_system_unitdir}/bmc-trust-quorum-unlocked.target"
CONFFILES:${PN} = "${sysconfdir}/bmc-pairing-manager/bmc-pairing-manager.conf \
                   ${sysconfdir}/bmc-pairing-manager/bmc-attestation.conf"

# The units' SupplementaryGroups= must exist in every image that has the
# daemons, so the packages that create them come with the daemons:
# - tpm2-tss (the package, not the libraries) creates the tss group and ships
#   the udev rule that makes /dev/tpmrm0 tss:tss 0660. Otherwise it arrives
#   only through systemd's tpm2 PACKAGECONFIG, i.e. only when the distro has
#   tpm2, and the units would fail with 216/GROUP;
# - lldpd creates the lldpd group (its --with-privsep-group, which owns the
#   control socket lldpcli connects to); it is also the discovery source.
# libtss2-tcti-device is dlopen()ed by the TSS TCTI loader, so shlibdeps
# cannot see it.
RDEPENDS:${PN} += "libtss2-tcti-device lldpd tpm2-tss"

# A parse-time guard is worth the anonymous python: without a source the image
# build stops at once with this message instead of in do_fetch hours later.
# nooelint: oelint.task.noanonpython
python () {
    if d.getVar('EXTERNALSRC'):
        return
    missing = []
    if not d.getVar('BMC_PAIRING_SRC_URI'):
        missing.append('BMC_PAIRING_SRC_URI (the fetcher URL of your mirror of the bmc-pairing-manager repository)')
    if d.getVar('SRCREV') == '0' * 40:
        missing.append('SRCREV:pn-bmc-pairing-manager (a commit of that repository)')
    if missing:
        raise bb.parse.SkipRecipe("no source: set " + " and ".join(missing) +
                                  ", or build a checkout with externalsrc (see meta-bmc-pairing/README.md)")
}
