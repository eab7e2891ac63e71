#!/usr/bin/env bash
# The two-VM tier: two Debian/systemd VMs under QEMU (TCG), each with its own swtpm as a TPM
# (tpm-tis, /dev/tpmrm0 in the guest), their NICs joined by a QEMU dgram link (LLDP passes,
# nothing touches the host network). In each VM systemd starts lldpd and our two daemons from
# the units, D-Bus policy and config the Yocto recipe installs; a oneshot unit then runs the
# operator's busctl commands (ProvisionPeer self, then peer) and waits for the attested,
# TPM-keyed mutual-TLS pairing to come up. Exits 0 only if both VMs report PASS.
#
# Usage: qemu/two-bmcs.sh        (as root; installs what it needs on Debian bookworm)
# Env:   BPM_QEMU_CACHE  cache for the kernel, Debian root and images (default target/qemu)
#        BPM_QEMU_TIMEOUT seconds both VMs may take, boot to PASS (default 420)
#        BPM_QEMU_PROFILE cargo profile of the daemons put in the VMs: release (default) or
#                         debug (unoptimised; it did not pair within the limit under TCG here)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
cache=${BPM_QEMU_CACHE:-$repo/target/qemu}
limit=${BPM_QEMU_TIMEOUT:-420}

log() { printf '[two-bmcs %5ss] %s\n' "$SECONDS" "$*"; }

packages=(qemu-system-x86 mmdebstrap busybox-static cpio kmod e2fsprogs swtpm swtpm-tools)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || { echo "two-bmcs: missing ${missing[*]}; run as root" >&2; exit 1; }
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[[ $(id -u) -eq 0 ]] || { echo "two-bmcs: needs root (the guest root tree keeps its owners)" >&2; exit 1; }

profile=${BPM_QEMU_PROFILE:-release}
case $profile in
  release) flags=(--release) ;;
  debug) flags=() ;;
  *) echo "two-bmcs: BPM_QEMU_PROFILE must be release or debug" >&2; exit 2 ;;
esac
log "building the daemons ($profile, as the recipe builds them: without network-tcti)"
# The same build scripts/size-budget.sh measures (make test runs it after this tier).
(cd "$repo" && cargo build "${flags[@]}" --locked --bins --no-default-features --quiet)
bash "$here/build-image.sh" "$cache" "$repo/target/$profile"

run=$(mktemp -d /tmp/bpm-qemu.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  { wait; } 2>/dev/null || true
  if ((rc != 0)); then
    for vm in a b; do
      [[ -f $run/$vm.console ]] || continue
      echo "---- last console lines of bmc-$vm ----"
      tail -n 60 "$run/$vm.console" | tr -d '\r'
    done
  fi
  rm -rf "$run"
  exit "$rc"
}
trap cleanup EXIT INT TERM

start_vm() {
  local vm=$1 other=$2 mac=$3 ula=$4
  mkdir -p "$run/tpm-$vm"
  # --daemon returns once the socket listens; --terminate ends it when QEMU goes.
  swtpm socket --tpm2 --tpmstate "dir=$run/tpm-$vm" \
    --ctrl "type=unixio,path=$run/tpm-$vm/ctrl.sock" --terminate \
    --log "file=$run/tpm-$vm/swtpm.log" --pid "file=$run/tpm-$vm/swtpm.pid" --daemon
  pids+=("$(cat "$run/tpm-$vm/swtpm.pid")")
  # Started directly (no `timeout` wrapper) so that the PID recorded is QEMU's own: killing
  # a wrapper would orphan the VM. The time limit is enforced by the wait loop below.
  qemu-system-x86_64 -M q35 -accel tcg -m 512 -smp 1 \
    -display none -monitor none -no-reboot -nodefaults -serial stdio \
    -kernel "$cache/vmlinuz" -initrd "$cache/initrd.gz" \
    -append "console=ttyS0 quiet panic=-1 systemd.hostname=bmc-$vm net.ifnames=0 bpm.ula=$ula" \
    -drive "file=$cache/rootfs.ext4,if=virtio,format=raw,snapshot=on" \
    -chardev "socket,id=chrtpm,path=$run/tpm-$vm/ctrl.sock" \
    -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0 \
    -netdev "dgram,id=n0,local.type=unix,local.path=$run/$vm.dgram,remote.type=unix,remote.path=$run/$other.dgram" \
    -device "e1000,netdev=n0,mac=$mac" \
    </dev/null >"$run/$vm.console" 2>&1 &
  pids+=($!)
}

log "booting bmc-a and bmc-b"
start_vm a b 52:54:00:00:00:0a fd00:b3c::a
start_vm b a 52:54:00:00:00:0b fd00:b3c::b

started=$SECONDS
verdict() { grep -a -o -m1 'PAIRTEST: \(PASS\|FAIL\).*' "$run/$1.console" 2>/dev/null || true; }
shown_a=0 shown_b=0
while :; do
  for vm in a b; do
    var=shown_$vm
    lines=$(grep -a 'PAIRTEST' "$run/$vm.console" 2>/dev/null | tr -d '\r' || true)
    n=$(printf '%s' "$lines" | grep -c . || true)
    if ((n > ${!var})); then
      printf '%s\n' "$lines" | tail -n $((n - ${!var})) | sed "s/^/  bmc-$vm | /"
      printf -v "$var" '%s' "$n"
    fi
  done
  va=$(verdict a) vb=$(verdict b)
  if [[ $va == *FAIL* || $vb == *FAIL* ]]; then
    log "a VM reported FAIL"
    exit 1
  fi
  if [[ $va == *PASS* && $vb == *PASS* ]]; then
    log "both VMs paired: 2 passed, 0 failed"
    exit 0
  fi
  for pid in "${pids[@]}"; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "a VM or swtpm exited before both reported"
      exit 1
    fi
  done
  if ((SECONDS - started > limit)); then
    log "no verdict from both VMs within ${limit}s"
    exit 1
  fi
  sleep 1
done
