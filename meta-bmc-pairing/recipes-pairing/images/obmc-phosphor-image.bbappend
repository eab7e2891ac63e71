# Install the pairing stack into OpenBMC images of distros that opt in with
#   require conf/distro/include/bmc-pairing.inc
# (from this layer; it adds DISTRO_FEATURES bmc-pairing and the df-bmc-pairing
# override). Including the layer alone changes no image.
OBMC_IMAGE_EXTRA_INSTALL:append:df-bmc-pairing = " packagegroup-bmc-pairing"
