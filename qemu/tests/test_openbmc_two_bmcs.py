#!/usr/bin/env python3
"""What can be tested of qemu/openbmc-two-bmcs.sh without an OpenBMC image.

No evb-ast2600 image can be built offline, so the two BMCs are never booted
here. This checks, as root on Debian bookworm (it installs qemu-system-arm and
swtpm from Debian if they are missing):

- the dry run (--print): both command lines, taken apart word by word: the
  machine, one image for both with snapshot=on, each VM's swtpm wired through
  chardev -> tpmdev -> tpm-tis-i2c on I2C bus 12 at 0x2e, eth0 management with
  loopback-only SSH, eth1 the dgram link crosswise to the other VM, MAC
  addresses and ports distinct; eth1 is the interface the recipe's defaults
  use (interface_id, BMC_PAIRING_LLDP_INTERFACES); the files typed into the
  guests exist and can be typed (no TAB for the shell's line editing);
- the generated command line against the real Debian QEMU 7.2: every option
  but the TPM device is accepted and the machine is built (-S, nothing
  executes), with a real swtpm behind the chardev and a 64 MiB flash file; and
  the TPM device itself is rejected by 7.2, which is why the script refuses it;
- the refusal: with Debian's 7.2 the script exits 3 before starting anything
  and says why; with stand-in QEMU binaries (shell scripts that answer
  --version, -machine help, -device help, -netdev help as QEMU does) it
  refuses a new QEMU without tpm-tis-i2c, an 8.0 with it, one without the
  machine, and accepts a complete 8.2.
Prints "ok"/"FAIL" per case and "N passed, N failed"; exit status 0 only if
nothing failed.
"""

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
SCRIPT = os.path.join(REPO, "qemu", "openbmc-two-bmcs.sh")
sys.path.insert(0, os.path.join(REPO, "tests", "packaging", "lib"))
from harness import Harness  # noqa: E402

FLASH_BYTES = 65536 * 1024  # evb-ast2600.conf: FLASH_SIZE = "65536" (KiB)


def ensure_debs(pkgs):
    missing = [p for p in pkgs if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p], capture_output=True,
                                                 text=True).stdout != "install ok installed"]
    if missing:
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, stdout=subprocess.DEVNULL)
        subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + missing, check=True,
                       env=env, stdout=subprocess.DEVNULL)


def run_script(*args, env=None):
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


def options(words):
    """{option: [values]} of a QEMU command line (every option here takes one value or none)."""
    flags = {"-nodefaults", "-no-reboot", "-S"}
    out, i = {}, 1
    while i < len(words):
        w = words[i]
        if w in flags:
            out.setdefault(w, []).append(None)
            i += 1
        else:
            out.setdefault(w, []).append(words[i + 1])
            i += 2
    return out


def props(value):
    head, *rest = value.split(",")
    kv = dict(p.split("=", 1) if "=" in p else (p, None) for p in rest)
    return head, kv


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fake_qemu(directory, name, version, machines, devices, netdevs):
    """A stand-in that answers the questions the script asks, in QEMU's own formats."""
    path = os.path.join(directory, re.sub(r"[^A-Za-z0-9.-]", "_", name))
    answers = {
        "--version": f"QEMU emulator version {version}\nCopyright (c) 2003-2024 Fabrice Bellard",
        "-machine help": "Supported machines are:\n" + "\n".join(f"{m:<20} some board" for m in machines),
        "-device help": "Misc devices:\n" + "\n".join(f'name "{d}", bus i2c-bus' for d in devices),
        "-machine none -netdev help": "Available netdev backend types:\n" + "\n".join(netdevs),
    }
    cases = "".join(f'  "{q}") cat <<\'EOF\'\n{a}\nEOF\n    ;;\n' for q, a in answers.items())
    with open(path, "w", encoding="utf-8") as f:
        f.write(f'#!/bin/sh\ncase "$*" in\n{cases}  *) echo "stand-in qemu: unexpected $*" >&2; exit 1 ;;\nesac\n')
    os.chmod(path, 0o755)
    return path


def main():
    h = Harness()
    ensure_debs(["qemu-system-arm", "swtpm", "swtpm-tools"])
    tmp = tempfile.mkdtemp(prefix="openbmc-qemu-test-")
    procs = []
    try:
        checks(h, tmp, procs)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{h.passed} passed, {h.failed} failed")
    h.exit()


def checks(h, tmp, procs):
    run_dir = os.path.join(tmp, "run")
    image = os.path.join(tmp, "obmc-phosphor-image-evb-ast2600.static.mtd")
    ports = {"a": free_port(), "b": free_port()}
    env = {"BPM_OPENBMC_RUN_DIR": run_dir, "BPM_SSH_PORT_A": str(ports["a"]), "BPM_SSH_PORT_B": str(ports["b"])}

    print("\n== dry run (--print)")
    p = run_script("--print", "--image", image, env=env)
    lines = [ln for ln in p.stdout.splitlines() if ln and not ln.startswith("#")]
    cmds = [shlex.split(ln) for ln in lines]
    swtpms = [c for c in cmds if c[0] == "swtpm"]
    qemus = [c for c in cmds if c[0] == "qemu-system-arm"]
    if not h.check(p.returncode == 0 and len(swtpms) == 2 and len(qemus) == 2,
                   "--print gives one swtpm and one qemu-system-arm command line per BMC",
                   f"rc={p.returncode}\n{p.stdout}{p.stderr}"):
        return
    vms = {}
    for vm, sw, qm in zip("ab", swtpms, qemus):
        o = options(qm)
        ctrl = next(v for k, v in zip(sw, sw[1:]) if k == "--ctrl")
        vms[vm] = {"o": o, "ctrl": props(ctrl)[1]["path"], "state": next(v for k, v in zip(sw, sw[1:])
                                                                         if k == "--tpmstate")}
    for vm, v in vms.items():
        o = v["o"]
        drive = dict(part.split("=", 1) for part in o["-drive"][0].split(","))
        h.check(o["-machine"] == ["ast2600-evb"] and o["-accel"] == ["tcg"] and o["-m"] == ["1G"]
                and drive == {"file": image, "if": "mtd", "format": "raw", "snapshot": "on"},
                f"bmc-{vm}: -machine ast2600-evb under TCG, 1 GiB, the image as its SPI flash, read-only (snapshot)",
                json.dumps(o, indent=1))
        chardev = props(o["-chardev"][0])
        tpmdev = props(o["-tpmdev"][0])
        device = props(o["-device"][0])
        h.check(chardev[0] == "socket" and chardev[1]["path"] == v["ctrl"]
                and tpmdev == ("emulator", {"id": tpmdev[1]["id"], "chardev": chardev[1]["id"]})
                and device == ("tpm-tis-i2c", {"tpmdev": tpmdev[1]["id"], "bus": "aspeed.i2c.bus.12",
                                               "address": "0x2e"}),
                f"bmc-{vm}: its own swtpm -> chardev -> tpmdev emulator -> tpm-tis-i2c on aspeed.i2c.bus.12 at 0x2e",
                f"swtpm ctrl {v['ctrl']}\n{chardev}\n{tpmdev}\n{device}")
        netdevs = [props(n) for n in o["-netdev"]]
        nics = [props(n) for n in o["-net"]]
        mgmt, link = netdevs
        h.check([n[0] for n in nics] == ["nic", "nic"] and all(n[1]["model"] == "ftgmac100" for n in nics)
                and [n[1]["netdev"] for n in nics] == [mgmt[1]["id"], link[1]["id"]]
                and mgmt[0] == "user" and mgmt[1].get("restrict") == "on"
                and mgmt[1]["hostfwd"] == f"tcp:127.0.0.1:{ports[vm]}-:22" and link[0] == "dgram",
                f"bmc-{vm}: eth0 = management (user, restrict=on, SSH on 127.0.0.1:{ports[vm]}), eth1 = the dgram link",
                f"{netdevs}\n{nics}")
        h.check(o["-serial"] == [f"pipe:{run_dir}/{vm}.serial"] and "-nodefaults" in o and "-no-reboot" in o,
                f"bmc-{vm}: the console (first serial port, UART5) on pipes the script types into and reads",
                json.dumps(o.get("-serial")))
    la = props(vms["a"]["o"]["-netdev"][1])[1]
    lb = props(vms["b"]["o"]["-netdev"][1])[1]
    h.check(la["local.path"] == lb["remote.path"] and lb["local.path"] == la["remote.path"]
            and la["local.path"] != lb["local.path"] and la["local.type"] == la["remote.type"] == "unix",
            "the link: each VM's local dgram socket is the other's remote", f"a {la}\nb {lb}")
    macs = [props(n)[1]["macaddr"] for v in vms.values() for n in v["o"]["-net"]]
    h.check(len(set(macs)) == 4 and vms["a"]["ctrl"] != vms["b"]["ctrl"] and vms["a"]["state"] != vms["b"]["state"],
            "four distinct MAC addresses; two distinct TPMs (state and socket)", f"{macs}")

    conf = os.path.join(REPO, "recipes-phosphor", "bmc-pairing", "bmc-pairing-manager", "config")
    ifaces = {json.load(open(os.path.join(conf, c), encoding="utf-8"))["interface_id"]
              for c in ("bmc-pairing-manager.conf", "bmc-attestation.conf")}
    lldp_bb = open(os.path.join(REPO, "meta-bmc-pairing", "recipes-pairing", "bmc-pairing-lldpd-conf",
                                "bmc-pairing-lldpd-conf_1.0.bb"), encoding="utf-8").read()
    lldp_default = re.search(r'^BMC_PAIRING_LLDP_INTERFACES \?= "([^"]*)"', lldp_bb, re.M).group(1).split()
    typed = re.findall(r"^#\s+(sh /tmp/bpm-setup .*)$", p.stdout, re.M)
    h.check(ifaces == {"eth1"} and lldp_default == ["eth1"] and len(typed) == 2
            and all(" eth1 && PAIRTEST_LINK=eth1 " in t for t in typed),
            "eth1, the second NIC, is the interface the image's defaults use (interface_id, "
            "BMC_PAIRING_LLDP_INTERFACES) and the one the guest commands set up",
            f"interface_id {ifaces}; lldpd-conf default {lldp_default}; typed {typed}")
    files = re.findall(r"^#\s+(/\S+) as (/\S+)$", p.stdout, re.M)
    bad = [f for f, _dest in files if not os.path.isfile(f) or "\t" in open(f, encoding="utf-8").read()]
    h.check(len(files) == 6 and not bad and any(f.endswith("guest/usr/local/sbin/pairtest") for f, _ in files),
            "the files typed into each guest exist, have no TABs, and include the Debian tier's pairtest",
            f"{files}\nmissing or with TABs: {bad}")
    for f in ("openbmc/bmc-setup", "guest/usr/local/sbin/pairtest"):
        sh = subprocess.run(["sh", "-n", os.path.join(REPO, "qemu", f)], capture_output=True, text=True)
        h.check(sh.returncode == 0, f"qemu/{f} is valid sh (sh -n)", sh.stderr)

    print("\n== the generated command line against Debian's qemu-system-arm")
    version = subprocess.run(["qemu-system-arm", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    h.note(version)
    os.makedirs(os.path.join(run_dir, "tpm-a"))
    with open(image, "wb") as f:
        f.truncate(FLASH_BYTES)
    swtpm = swtpms[0]
    sp = subprocess.run(swtpm, capture_output=True, text=True)
    if not h.check(sp.returncode == 0 and os.path.exists(vms["a"]["ctrl"]),
                   "the printed swtpm command line starts a TPM", sp.stderr):
        return
    with open(os.path.join(run_dir, "tpm-a", "swtpm.pid"), encoding="utf-8") as f:
        swtpm_pid = int(f.read())
    try:
        for suffix in ("in", "out"):
            os.mkfifo(os.path.join(run_dir, f"a.serial.{suffix}"))
        qm = qemus[0]
        i = qm.index("-device")
        without_tpm = qm[:i] + qm[i + 2:] + ["-S"]  # -S: the machine is built, no CPU runs
        reader = subprocess.Popen(["cat", os.path.join(run_dir, "a.serial.out")], stdout=subprocess.DEVNULL)
        procs.append(reader)
        q = subprocess.Popen(without_tpm, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        procs.append(q)
        time.sleep(4)
        alive = q.poll() is None
        if alive:
            q.kill()
        _out, err = q.communicate()
        h.check(alive, "QEMU 7.2 accepts every option of bmc-a's command line but the TPM device, and builds "
                       "the machine (-S; real swtpm, 64 MiB flash file)", f"exited {q.returncode}:\n{err}")
        sp = subprocess.run(swtpm, capture_output=True, text=True)  # --terminate ended the first
        with open(os.path.join(run_dir, "tpm-a", "swtpm.pid"), encoding="utf-8") as f:
            swtpm_pid = int(f.read())
        with_tpm = qm + ["-S"]
        q2 = subprocess.run(with_tpm, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        h.check(q2.returncode != 0 and "tpm-tis-i2c" in q2.stderr,
                "QEMU 7.2 rejects the tpm-tis-i2c device (why the script refuses this QEMU)",
                f"rc={q2.returncode} {q2.stderr}", note=q2.stderr.strip().splitlines()[-1] if q2.stderr else "")
    finally:
        try:
            os.kill(swtpm_pid, 9)
        except ProcessLookupError:
            pass

    print("\n== refusal")
    for args in (["--check-qemu"], ["--image", image]):
        r = run_script(*args, env=env)
        h.check(r.returncode == 3 and "tpm-tis-i2c" in r.stderr and "8.1" in r.stderr and "7.2" in r.stderr
                and not os.path.exists(os.path.join(run_dir, "b.serial.in")),
                f"{' '.join(args)} with Debian's QEMU 7.2: refused (exit 3) before starting anything, saying why",
                f"rc={r.returncode}\n{r.stdout}{r.stderr}", note=r.stderr.strip().splitlines()[1].strip()
                if r.stderr.count("\n") > 1 else "")
    fakes = os.path.join(tmp, "fakes")
    os.makedirs(fakes)
    full = dict(machines=["ast2600-evb", "ast2500-evb"], devices=["tpm-tis-i2c", "tpm-tis-device"],
                netdevs=["socket", "stream", "dgram", "user"])
    cases = [
        ("8.2.0, complete", dict(full, version="8.2.0"), 0, "tpm-tis-i2c and dgram are there"),
        ("9.1.0 without tpm-tis-i2c", dict(full, version="9.1.0", devices=["tpm-tis-device"]), 3,
         "has no device tpm-tis-i2c"),
        ("8.0.5 with the device", dict(full, version="8.0.5"), 3, "is QEMU 8.0.5; the TPM device tpm-tis-i2c needs"),
        ("10.0.2 without ast2600-evb", dict(full, version="10.0.2", machines=["romulus-bmc"]), 3,
         "has no machine ast2600-evb"),
        ("8.1.0 without dgram", dict(full, version="8.1.0", netdevs=["socket", "user"]), 3, "has no dgram netdev"),
    ]
    for name, spec, rc, text in cases:
        binary = fake_qemu(fakes, name, **spec)
        r = run_script("--check-qemu", env=dict(env, BPM_QEMU_ARM=binary))
        h.check(r.returncode == rc and text in (r.stdout + r.stderr),
                f"stand-in QEMU {name}: {'accepted' if rc == 0 else 'refused'}",
                f"rc={r.returncode} (want {rc}), want {text!r} in:\n{r.stdout}{r.stderr}")
    good = fake_qemu(fakes, "good", **dict(full, version="8.2.0"))
    r = run_script("--image", os.path.join(tmp, "missing.static.mtd"), env=dict(env, BPM_QEMU_ARM=good))
    h.check(r.returncode == 2 and "no such file" in r.stderr, "a usable QEMU but no image: exit 2, saying so",
            f"rc={r.returncode} {r.stderr}")


if __name__ == "__main__":
    main()
