SUMMARY = "BMC pairing: daemons, lldpd reception and TPM TCTI"
DESCRIPTION = "Everything a BMC image needs to pair with its peer BMC: \
               bmc-pairing-manager and bmc-attestation, lldpd with reception \
               turned on, and the TPM2 device TCTI."

inherit packagegroup

RDEPENDS:${PN} = "bmc-pairing-lldpd-conf \
                  bmc-pairing-manager \
                  libtss2-tcti-device \
                  lldpd \
                  "
