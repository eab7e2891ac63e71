SUMMARY = "BMC pairing: daemons, lldpd reception and TPM2 access"
DESCRIPTION = "Everything a BMC image needs to pair with its peer BMC: \
               bmc-pairing-manager and bmc-attestation (which bring the TPM2 \
               device TCTI and the tss group), and lldpd with reception \
               turned on."

# Stays allarch, so it names only packages that keep their names. Library
# packages such as libtss2-tcti-device are renamed by debian.bbclass
# (libtss2-tcti-device0), and oe-core stops an allarch packagegroup that
# depends on one ("An allarch packagegroup shouldn't depend on packages which
# are dynamically renamed"). The daemon package, which is built per
# architecture, RDEPENDS on them instead. A packagegroup that must name such a
# package sets PACKAGE_ARCH = "${TUNE_PKGARCH}" before the inherit, as
# meta-phosphor's packagegroup-openbmc-tpm does.
inherit packagegroup

RDEPENDS:${PN} = "bmc-pairing-lldpd-conf \
                  bmc-pairing-manager \
                  lldpd \
                  "
