SUMMARY = "lldpd snippet that turns LLDP reception on for BMC pairing"
DESCRIPTION = "phosphor-networkd rewrites lldpd.conf with the ports in tx-only \
               mode, so lldpd never learns its neighbours. lldpd reads its \
               lldpd.d directory after lldpd.conf, in alphabetical order, and \
               50-bmc-pairing.conf sets the pairing interfaces to rx-and-tx \
               again each time lldpd (re)starts."
HOMEPAGE = "https://github.com/openbmc-pairing/bmc-pairing-manager"
SECTION = "bmc"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

SRC_URI = "file://50-bmc-pairing.conf.in"

S = "${UNPACKDIR}"

inherit allarch

# Interfaces that face the peer BMC; must match "interface_id" in
# ${sysconfdir}/bmc-pairing-manager/bmc-pairing-manager.conf. Set per machine, e.g.
#   BMC_PAIRING_LLDP_INTERFACES:pn-bmc-pairing-lldpd-conf = "eth1 eth2"
BMC_PAIRING_LLDP_INTERFACES ?= "eth1"

do_install() {
    ports="$(echo ${BMC_PAIRING_LLDP_INTERFACES} | tr ' ' ',')"
    [ -n "${ports}" ] || bbfatal "BMC_PAIRING_LLDP_INTERFACES is empty"
    install -d ${D}${sysconfdir}/lldpd.d
    sed -e "s/@PORTS@/${ports}/" ${UNPACKDIR}/50-bmc-pairing.conf.in \
        > ${D}${sysconfdir}/lldpd.d/50-bmc-pairing.conf
    chmod 0644 ${D}${sysconfdir}/lldpd.d/50-bmc-pairing.conf
}

RDEPENDS:${PN} = "lldpd"
