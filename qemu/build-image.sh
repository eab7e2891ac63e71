#!/usr/bin/env bash
# Builds what the two-VM tier boots: a Debian bookworm kernel, a busybox initramfs that loads
# the modules the guest needs and switches to the root disk, and an ext4 root filesystem with
# systemd, dbus, lldpd and tpm2-tss plus our daemons installed exactly as the recipe installs
# them (recipes-phosphor/.../install-bmc-pairing.sh: units, D-Bus policy, config).
#
# Usage: qemu/build-image.sh OUT_DIR BIN_DIR
#   OUT_DIR  cache and output (vmlinuz, initrd.gz, rootfs.ext4); the kernel and the Debian
#            root tarball are reused while the package list is unchanged
#   BIN_DIR  where the multi-call bmc-pairing-manager was built (target/release); the install
#            script links bmc-attestation to it
#
# Needs root (the root tree keeps its owners), mmdebstrap, busybox-static, cpio, kmod and
# e2fsprogs; qemu/two-bmcs.sh installs them.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
out=${1:?usage: build-image.sh OUT_DIR BIN_DIR}
bins=${2:?usage: build-image.sh OUT_DIR BIN_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# What the guest runs besides our daemons. tpm2-tss's ESYS and TCTI loader are what the
# binaries link; the device TCTI reaches /dev/tpmrm0.
packages=systemd-sysv,udev,dbus,lldpd,iproute2,kmod,tpm2-tools,libtss2-esys-3.0.2-0,libtss2-tctildr0,libtss2-tcti-device0,libssl3
# Modules the initramfs loads, in this order (dependencies are resolved by modprobe).
modules=(virtio_pci virtio_blk ext4 e1000)
key=$(printf '%s\n' "$packages" "${modules[@]}" | sha256sum | cut -c1-16)

log() { printf '[build-image] %s\n' "$*" >&2; }

# 1. Kernel and its modules, from the Debian package (no host kernel is used).
if [[ ! -s $out/kernel-$key/vmlinuz ]]; then
  log "downloading the Debian kernel"
  rm -rf "$out/kernel-$key" && mkdir -p "$out/kernel-$key/deb"
  pkg=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  [[ -n $pkg ]] || { echo "build-image: cannot resolve linux-image-amd64" >&2; exit 1; }
  (cd "$out/kernel-$key/deb" && apt-get download -q -o APT::Sandbox::User=root "$pkg" >/dev/null)
  dpkg -x "$out/kernel-$key"/deb/*.deb "$out/kernel-$key/root"
  cp "$out/kernel-$key"/root/boot/vmlinuz-* "$out/kernel-$key/vmlinuz"
fi
kroot=$out/kernel-$key/root
kver=$(ls "$kroot/lib/modules")

# 2. Initramfs: busybox, the modules, and an init that mounts /dev/vda and switches to it.
if [[ ! -s $out/kernel-$key/initrd.gz ]]; then
  log "building the initramfs for $kver"
  depmod -b "$kroot" "$kver"
  ird=$(mktemp -d)
  trap 'rm -rf "$ird"' EXIT
  mkdir -p "$ird"/{bin,dev,proc,sys,newroot,modules}
  cp /bin/busybox "$ird/bin/busybox"
  ln -s busybox "$ird/bin/sh"
  : >"$ird/modules/order"
  for m in "${modules[@]}"; do
    modprobe -d "$kroot" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" {print $2}' |
      while read -r ko; do
        base=$(basename "$ko")
        if ! grep -qx "$base" "$ird/modules/order"; then
          cp "$ko" "$ird/modules/$base"
          echo "$base" >>"$ird/modules/order"
        fi
      done
  done
  cat >"$ird/init" <<'EOF'
#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
while read -r m; do
  case "$m" in
    *.ko.xz) /bin/busybox xz -dc "/modules/$m" > /tmp.ko && /bin/busybox insmod /tmp.ko ;;
    *) /bin/busybox insmod "/modules/$m" ;;
  esac
done < /modules/order
/bin/busybox mount -t ext4 /dev/vda /newroot || { echo "INITRD: cannot mount /dev/vda"; exec /bin/sh; }
/bin/busybox umount /proc /sys
/bin/busybox mount --move /dev /newroot/dev
exec /bin/busybox switch_root /newroot /sbin/init
EOF
  chmod 0755 "$ird/init"
  (cd "$ird" && find . | cpio -o -H newc --quiet | gzip -1) >"$out/kernel-$key/initrd.gz"
  rm -rf "$ird"
  trap - EXIT
fi

# 3. The Debian root, once per package list.
if [[ ! -s $out/rootfs-$key.tar ]]; then
  log "building the Debian root (mmdebstrap, about half a minute)"
  mmdebstrap --quiet --format=tar --variant=minbase --include="$packages" bookworm \
    "$out/rootfs-$key.tar.tmp" http://deb.debian.org/debian
  mv "$out/rootfs-$key.tar.tmp" "$out/rootfs-$key.tar"
fi

# 4. This build's root disk: the Debian root, our daemons as the recipe installs them, and
#    the guest glue from qemu/guest/.
log "assembling rootfs.ext4"
tree=$(mktemp -d)
trap 'rm -rf "$tree"' EXIT
tar -C "$tree" -xf "$out/rootfs-$key.tar"
files=$repo/recipes-phosphor/bmc-pairing/bmc-pairing-manager
sh "$files/install-bmc-pairing.sh" --destdir "$tree" --bindir /usr/bin --sysconfdir /etc \
  --datadir /usr/share --systemd-unitdir /usr/lib/systemd/system \
  --bin-src "$bins" --files "$files"
cp -a "$here/guest/." "$tree/"
# The lldpd.d snippet the layer ships, for the guest's link interface.
sed 's/@PORTS@/eth0/' \
  "$repo/meta-bmc-pairing/recipes-pairing/bmc-pairing-lldpd-conf/bmc-pairing-lldpd-conf/50-bmc-pairing.conf.in" \
  >"$tree/etc/lldpd.d/50-bmc-pairing.conf"
systemctl --root="$tree" enable --quiet \
  xyz.openbmc_project.attestation.service xyz.openbmc_project.BmcPairingManager.service \
  bmc-guest-setup.service pairtest.service lldpd.service
# A root login on the console, for debugging a run by hand.
passwd --root "$tree" -d root >/dev/null
rm -f "$out/rootfs.ext4"
mkfs.ext4 -q -F -L root -d "$tree" "$out/rootfs.ext4" 1G
ln -sf "kernel-$key/vmlinuz" "$out/vmlinuz"
ln -sf "kernel-$key/initrd.gz" "$out/initrd.gz"
log "ready: $out/{vmlinuz,initrd.gz,rootfs.ext4}"
