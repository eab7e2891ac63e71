#!/usr/bin/env bash
# Installs the system packages the tests and the demo need, only those that are missing, on
# Debian bookworm (as root). Used by `make test` and `make demo`; CI starts from a fresh
# machine, so nothing may rely on packages installed by hand.
set -euo pipefail

packages=(
  dbus-daemon dbus-bin systemd          # private buses, busctl, systemd-analyze
  openssl                               # foreign TLS peers and test certificates
  swtpm swtpm-tools tpm2-tools          # a TPM per test BMC; swtpm_ioctl, tpm2_clear
  libtss2-dev pkg-config                # tss-esapi links tpm2-tss
  lldpd iproute2 procps                 # LLDP, network namespaces and sysctl for the rig
  python3-venv                          # packaging checks (sdbus++, oelint-adv, kas)
  python3-cryptography                  # checks SPDMGetSignedMeasurements apart from our SPDM code
  cmake build-essential libssl-dev      # the DMTF SPDM reference (libspdm, spdm-emu, validator)
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "install-deps: missing packages ${missing[*]}; run as root (or install them)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# lldpd's package starts a system-wide daemon; tests run their own per namespace.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet lldpd 2>/dev/null; then
  systemctl stop lldpd || true
fi
command -v cargo >/dev/null 2>&1 || { echo "install-deps: cargo (Rust stable) is required" >&2; exit 1; }
