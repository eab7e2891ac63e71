#!/usr/bin/env bash
# Two OpenBMC evb-ast2600 images with our layer under qemu-system-arm -M ast2600-evb, each with
# its own swtpm on QEMU's tpm-tis-i2c device, their second NICs (eth1, the daemons' default
# interface_id) joined by a QEMU dgram link. Over each serial console the script logs in as
# root (the image's allow-root-login), types in qemu/openbmc/bmc-setup (host name, the TPM
# on I2C bus 12, the link's ULA through phosphor-networkd) and the Debian tier's own
# qemu/guest/usr/local/sbin/pairtest (ProvisionPeer self, then peer; an attested, TPM-keyed
# mutual-TLS pairing), and reads the PAIRTEST verdicts. Exits 0 only if both pass.
#
# The image: meta-bmc-pairing/kas/evb-ast2600.yml (with externalsrc.yml for a checkout)
# gives build/tmp/deploy/images/evb-ast2600/obmc-phosphor-image-evb-ast2600.static.mtd.
# Both VMs boot the same file (snapshot=on: nothing is written to it).
#
# Usage: qemu/openbmc-two-bmcs.sh --image FILE.static.mtd      boot both and pair
#        qemu/openbmc-two-bmcs.sh --print [--image FILE]       print what would run, run nothing
#        qemu/openbmc-two-bmcs.sh --check-qemu                 only check the QEMU
# Env:   BPM_QEMU_ARM      the QEMU binary (default qemu-system-arm)
#        BPM_QEMU_TIMEOUT  seconds both VMs may take, boot to verdict (default 1800; an OpenBMC
#                          boot under TCG takes minutes, two share the host's cores)
#        BPM_SSH_PORT_A/B  loopback ports forwarded to each VM's SSH (default 2222/2223)
# Needs QEMU 8.1 or later (tpm-tis-i2c); Debian bookworm's 7.2 is refused, with the reason.
# This was never booted in this project's CI: no OpenBMC image can be built offline there.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
qemu=${BPM_QEMU_ARM:-qemu-system-arm}
limit=${BPM_QEMU_TIMEOUT:-1800}
machine=ast2600-evb
min_qemu=8.1
tpm_device=tpm-tis-i2c tpm_bus=aspeed.i2c.bus.12 tpm_addr=0x2e
link_if=eth1
login_user=root login_password=0penBmc # OpenBMC's default (phosphor-defaults.inc)

mode=run image=""
while (($#)); do
  case $1 in
    --image) image=${2:?--image needs a file}; shift ;;
    --print) mode=print ;;
    --check-qemu) mode=check ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "openbmc-two-bmcs: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

log() { printf '[openbmc-two-bmcs %5ss] %s\n' "$SECONDS" "$*"; }

# --- QEMU: refuse clearly what cannot work --------------------------------------------------
version_ge() { [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]; }
# Prints why $qemu cannot run this test, one reason per line; prints nothing if it can.
qemu_problems() {
  local out version
  if ! command -v "$qemu" >/dev/null; then
    echo "$qemu is not installed (Debian: qemu-system-arm, 8.1 or later: bookworm-backports)"
    return
  fi
  if ! out=$("$qemu" --version 2>&1); then
    echo "cannot run $qemu --version: $out"
    return
  fi
  version=$(sed -n 's/^QEMU emulator version \([0-9][0-9.]*\).*/\1/p' <<<"$out" | head -n1)
  if [[ -z $version ]]; then
    echo "$qemu --version does not say which QEMU it is: $out"
  elif ! version_ge "$version" "$min_qemu"; then
    echo "$qemu is QEMU $version; the TPM device $tpm_device needs QEMU $min_qemu or later" \
      "(Debian bookworm has 7.2: install qemu-system-arm from bookworm-backports)"
  fi
  "$qemu" -machine help 2>/dev/null | grep -q "^$machine " ||
    echo "$qemu has no machine $machine"
  "$qemu" -device help 2>/dev/null | grep -q "^name \"$tpm_device\"" ||
    echo "$qemu has no device $tpm_device (TPM 2.0 on I2C, QEMU $min_qemu or later)"
  "$qemu" -machine none -netdev help 2>/dev/null | grep -qx dgram ||
    echo "$qemu has no dgram netdev (the link between the two BMCs)"
}

# --- what runs ------------------------------------------------------------------------------
run=${BPM_OPENBMC_RUN_DIR:-}
vm_name=(a b)
declare -A other=([a]=b [b]=a) link_mac=([a]=52:54:00:00:00:0a [b]=52:54:00:00:00:0b) \
  mgmt_mac=([a]=52:54:00:00:01:0a [b]=52:54:00:00:01:0b) ula=([a]=fd00:b3c::a [b]=fd00:b3c::b) \
  ssh_port=([a]=${BPM_SSH_PORT_A:-2222} [b]=${BPM_SSH_PORT_B:-2223})

swtpm_args() { # swtpm_args <vm>
  args=(swtpm socket --tpm2 --tpmstate "dir=$run/tpm-$1" --ctrl "type=unixio,path=$run/tpm-$1/ctrl.sock"
    --terminate --log "file=$run/tpm-$1/swtpm.log" --pid "file=$run/tpm-$1/swtpm.pid" --daemon)
}

qemu_args() { # qemu_args <vm>
  local vm=$1
  args=("$qemu" -machine "$machine" -accel tcg -m 1G
    -display none -monitor none -nodefaults -no-reboot
    # UART5 (the console, ttyS4) is the machine's first serial port: <run>/<vm>.serial.{in,out}
    -serial "pipe:$run/$vm.serial"
    -drive "file=$image,if=mtd,format=raw,snapshot=on"
    -chardev "socket,id=chrtpm,path=$run/tpm-$vm/ctrl.sock"
    -tpmdev "emulator,id=tpm0,chardev=chrtpm"
    -device "$tpm_device,tpmdev=tpm0,bus=$tpm_bus,address=$tpm_addr"
    # eth0: management, loopback-only SSH; restrict=on keeps the guest off the host's network
    -netdev "user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:${ssh_port[$vm]}-:22"
    -net "nic,model=ftgmac100,netdev=mgmt,macaddr=${mgmt_mac[$vm]}"
    # eth1: the link to the other BMC, a datagram socket pair (LLDP passes)
    -netdev "dgram,id=link,local.type=unix,local.path=$run/$vm.dgram,remote.type=unix,remote.path=$run/${other[$vm]}.dgram"
    -net "nic,model=ftgmac100,netdev=link,macaddr=${link_mac[$vm]}")
}

# What is typed on each console after the login.
guest_files=("$here/openbmc/bmc-setup:/tmp/bpm-setup"
  "$here/guest/etc/lldpd.d/60-two-vm.conf:/etc/lldpd.d/60-two-vm.conf"
  "$here/guest/usr/local/sbin/pairtest:/tmp/bpm-pairtest")
guest_commands() { # guest_commands <vm>
  printf '%s\n' "sh /tmp/bpm-setup ${1} ${ula[$1]} $link_if && PAIRTEST_LINK=$link_if sh /tmp/bpm-pairtest"
}

# One command line, quoted for a POSIX shell only where a word needs it.
print_args() {
  local a out=()
  for a in "$@"; do
    if [[ $a =~ ^[A-Za-z0-9_,.:=/@%+-]+$ ]]; then out+=("$a"); else out+=("$(printf '%q' "$a")"); fi
  done
  echo "${out[*]}"
}

if [[ $mode == print ]]; then
  run=${run:-/tmp/bpm-openbmc-qemu}
  image=${image:-obmc-phosphor-image-evb-ast2600.static.mtd}
  echo "# run directory: $run (both VMs boot $image)"
  for vm in "${vm_name[@]}"; do
    echo "# bmc-$vm"
    swtpm_args "$vm"
    print_args "${args[@]}"
    qemu_args "$vm"
    print_args "${args[@]}"
    echo "# console of bmc-$vm: log in as $login_user, stty -echo, then type in:"
    for f in "${guest_files[@]}"; do echo "#   ${f%%:*} as ${f#*:}"; done
    echo "#   $(guest_commands "$vm")"
  done
  exit 0
fi

mapfile -t problems < <(qemu_problems)
if ((${#problems[@]})); then
  echo "openbmc-two-bmcs: refusing to start: this QEMU cannot run two OpenBMC BMCs with TPMs:" >&2
  printf '  - %s\n' "${problems[@]}" >&2
  exit 3
fi
if [[ $mode == check ]]; then
  echo "openbmc-two-bmcs: $("$qemu" --version | head -n1): $machine, $tpm_device and dgram are there"
  exit 0
fi
[[ -n $image ]] || { echo "openbmc-two-bmcs: --image FILE.static.mtd is required (see --help)" >&2; exit 2; }
[[ -f $image ]] || { echo "openbmc-two-bmcs: $image: no such file" >&2; exit 2; }
image=$(cd "$(dirname "$image")" && pwd)/$(basename "$image")
command -v swtpm >/dev/null || { echo "openbmc-two-bmcs: swtpm is missing (apt-get install swtpm)" >&2; exit 2; }

# --- boot, log in, type in, wait ------------------------------------------------------------
run=$(mktemp -d /tmp/bpm-openbmc-qemu.XXXXXX)
pids=()
cleanup() {
  local rc=$?
  for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  { wait; } 2>/dev/null || true
  if ((rc != 0)); then
    for vm in "${vm_name[@]}"; do
      [[ -f $run/$vm.console ]] || continue
      echo "---- last console lines of bmc-$vm ----"
      tail -n 60 "$run/$vm.console" | tr -d '\r'
    done
  fi
  rm -rf "$run"
  exit "$rc"
}
trap cleanup EXIT INT TERM

declare -A console_in
for vm in "${vm_name[@]}"; do
  mkdir -p "$run/tpm-$vm"
  swtpm_args "$vm"
  "${args[@]}"
  pids+=("$(cat "$run/tpm-$vm/swtpm.pid")")
  mkfifo "$run/$vm.serial.in" "$run/$vm.serial.out"
  qemu_args "$vm"
  "${args[@]}" </dev/null >"$run/$vm.qemu.log" 2>&1 &
  pids+=($!)
  cat "$run/$vm.serial.out" >"$run/$vm.console" &
  pids+=($!)
  exec {fd}>"$run/$vm.serial.in"
  console_in[$vm]=$fd
  log "bmc-$vm: booting ($(basename "$image"))"
done

send() { printf '%s\r' "$2" >&"${console_in[$1]}"; }
# expect <vm> <extended regex> <seconds>: waits for the pattern in the console output that
# came after the last expect on that VM.
declare -A seen=([a]=0 [b]=0)
expect() {
  local vm=$1 re=$2 deadline=$((SECONDS + $3)) size
  while ((SECONDS < deadline)); do
    size=$(stat -c %s "$run/$vm.console")
    if tail -c +"$((seen[$vm] + 1))" "$run/$vm.console" | tr -d '\r' | grep -Eq "$re"; then
      seen[$vm]=$size
      return 0
    fi
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { log "bmc-$vm: a VM, swtpm or console reader exited"; return 1; }
    done
    sleep 2
  done
  log "bmc-$vm: no '$re' on the console within $3 s"
  return 1
}

for vm in "${vm_name[@]}"; do
  expect "$vm" 'login: *$' "$limit" || exit 1
  log "bmc-$vm: login prompt"
  send "$vm" "$login_user"
  expect "$vm" 'Password: *$' 60 || exit 1
  send "$vm" "$login_password"
  expect "$vm" '# *$' 120 || exit 1
  # No echo (the typed scripts stay off the console log), no bash history expansion (an
  # error in busybox ash, whose line editing is harmless: the typed files have no TABs).
  send "$vm" "stty -echo; set +H 2>/dev/null"
  for f in "${guest_files[@]}"; do
    send "$vm" "cat >${f#*:} <<'BPM_EOF'"
    while IFS= read -r line; do send "$vm" "$line"; done <"${f%%:*}"
    send "$vm" "BPM_EOF"
  done
  send "$vm" "$(guest_commands "$vm")"
  log "bmc-$vm: logged in, setup and pairtest typed in"
done

started=$SECONDS
verdict() { tr -d '\r' <"$run/$1.console" | grep -a -o -m1 'PAIRTEST: \(PASS\|FAIL\).*' || true; }
while :; do
  va=$(verdict a) vb=$(verdict b)
  if [[ $va == *FAIL* || $vb == *FAIL* ]]; then
    log "a VM reported FAIL: ${va:-no verdict} / ${vb:-no verdict}"
    exit 1
  fi
  if [[ $va == *PASS* && $vb == *PASS* ]]; then
    tr -d '\r' <"$run/a.console" | grep -a 'PAIRTEST' | sed 's/^/  bmc-a | /'
    tr -d '\r' <"$run/b.console" | grep -a 'PAIRTEST' | sed 's/^/  bmc-b | /'
    log "both OpenBMC VMs paired: 2 passed, 0 failed"
    exit 0
  fi
  if ((SECONDS - started > limit)); then
    log "no verdict from both VMs within ${limit}s of the login"
    exit 1
  fi
  sleep 2
done
