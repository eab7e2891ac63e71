#!/usr/bin/env python3
"""The D-Bus policies, enforced by a real dbus-daemon.

A private dbus-daemon runs with the default policy of the host's
/usr/share/dbus-1/system.conf (the stock dbus system bus policy, as on a BMC)
and our two policy files in its system.d. A stand-in daemon (dbus_echo.py,
root) owns each daemon's names on one connection and answers every call.
Then, as root and as the unprivileged user nobody, with dbus-send:
- nobody cannot own any of our names; root can;
- nobody can Introspect, Ping, Properties.Get/GetAll, GetManagedObjects;
- nobody is refused (AccessDenied) every method of dbus-restricted-methods.json
  on every name of its daemon, Properties.Set, and an unlisted method;
- root may call all of them.
It runs twice: with the stock policy, and with OpenBMC's dbus-perms
allow-all file (org.openbmc.conf: allow own="*" and send_destination="*" in
the default context) beside ours, which must not open anything up.
A self-test replaces our manager policy by one without the explicit denies
and default deny and shows that OpenBMC's allow-all then lets nobody call
ProvisionPeer. Another puts the allow-all in a file that sorts after ours and
shows that it then wins over our denies, explicit ones included: what keeps
OpenBMC's allow-all out is file order, which the policy comments say.
"""

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

from harness import Harness, PKG, REPO

POLICY_DIR = os.path.join(REPO, "recipes-phosphor", "bmc-pairing", "bmc-pairing-manager", "dbus")
SYSTEM_CONF = "/usr/share/dbus-1/system.conf"
ECHO = os.path.join(os.path.dirname(__file__), "dbus_echo.py")
OPENBMC_ALLOW_ALL = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <!-- as OpenBMC's dbus-perms installs it -->
  <policy context="default">
    <allow own="*"/>
    <allow send_destination="*"/>
  </policy>
</busconfig>
"""
READS = [("org.freedesktop.DBus.Introspectable", "Introspect", []),
         ("org.freedesktop.DBus.Peer", "Ping", []),
         ("org.freedesktop.DBus.Properties", "GetAll", ["string:x.y"]),
         ("org.freedesktop.DBus.Properties", "Get", ["string:x.y", "string:z"]),
         ("org.freedesktop.DBus.ObjectManager", "GetManagedObjects", [])]


def bus_config(sock, includedir):
    """The host system.conf's policies, with our socket and system.d."""
    src = ET.parse(SYSTEM_CONF).getroot()
    out = ET.Element("busconfig")
    ET.SubElement(out, "type").text = "system"
    ET.SubElement(out, "listen").text = f"unix:path={sock}"
    ET.SubElement(out, "auth").text = "EXTERNAL"
    for pol in src.findall("policy"):
        out.append(pol)
    ET.SubElement(out, "includedir").text = includedir
    return ('<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"\n'
            ' "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">\n' + ET.tostring(out, encoding="unicode"))


class Bus:
    def __init__(self, tmp, policy_files, extra=None):
        self.dir = tempfile.mkdtemp(dir=tmp)
        os.chmod(self.dir, 0o755)
        sysd = os.path.join(self.dir, "system.d")
        os.makedirs(sysd)
        for p in policy_files:
            shutil.copy(p, sysd)
        for name, text in (extra or {}).items():
            with open(os.path.join(sysd, name), "w", encoding="utf-8") as f:
                f.write(text)
        self.sock = os.path.join(self.dir, "bus.sock")
        self.address = f"unix:path={self.sock}"
        conf = os.path.join(self.dir, "bus.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(bus_config(self.sock, sysd))
        self.log = open(os.path.join(self.dir, "daemon.log"), "w")
        self.proc = subprocess.Popen(["dbus-daemon", f"--config-file={conf}", "--nofork", "--nopidfile"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.echos = []
        deadline = time.time() + 10
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("dbus-daemon did not start: " + open(os.path.join(self.dir, "daemon.log")).read())
            time.sleep(0.05)
        os.chmod(self.sock, 0o777)

    def serve(self, names):
        p = subprocess.Popen(["/usr/bin/python3", ECHO, self.address, *names],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = p.stdout.readline().strip()
        if line != "ready":
            p.kill()
            raise RuntimeError(f"stand-in daemon for {names} failed: {line} {p.stdout.read()}")
        self.echos.append(p)

    def send(self, as_nobody, dest, iface, member, args=(), path="/xyz/openbmc_project/test"):
        cmd = ["dbus-send", f"--bus={self.address}", "--print-reply", "--reply-timeout=3000",
               f"--dest={dest}", path, f"{iface}.{member}", *args]
        if as_nobody:
            nb = pwd.getpwnam("nobody")
            cmd = ["setpriv", f"--reuid={nb.pw_uid}", f"--regid={nb.pw_gid}", "--clear-groups", *cmd]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
        out = p.stdout + p.stderr
        if p.returncode == 0 and "method return" in out:
            return "allowed"
        if "AccessDenied" in out:
            return "denied"
        return "other: " + out.strip().replace("\n", " ")[:200]

    def own_as_nobody(self, name):
        return self.send(True, "org.freedesktop.DBus", "org.freedesktop.DBus", "RequestName",
                         [f"string:{name}", "uint32:4"], path="/org/freedesktop/DBus")

    def close(self):
        for p in self.echos:
            p.kill()
            p.wait()
        self.proc.kill()
        self.proc.wait()
        self.log.close()


def scenario(h, tmp, label, policy_files, extra, bn, restricted):
    bus = Bus(tmp, policy_files, extra)
    try:
        for daemon, names in bn.items():
            for n in names:
                h.check(bus.own_as_nobody(n) == "denied", f"[{label}] nobody cannot own {n}",
                        bus.own_as_nobody(n))
        for daemon, names in bn.items():
            bus.serve(names)
        h.ok(f"[{label}] root owns every name (one connection per daemon)")
        for daemon, names in bn.items():
            for n in names:
                reads = {f"{i}.{m}": bus.send(True, n, i, m, a) for i, m, a in READS}
                bad = {k: v for k, v in reads.items() if v != "allowed"}
                h.check(not bad, f"[{label}] nobody may introspect/read {n}", json.dumps(bad))
                calls = [(m["interface"], m["method"], ["string:x"]) for m in restricted[daemon]]
                calls += [("org.freedesktop.DBus.Properties", "Set", ["string:x.y", "string:z", "variant:string:v"]),
                          ("xyz.openbmc_project.Unlisted.Interface", "DoSomething", [])]
                as_nobody = {f"{i}.{m}": bus.send(True, n, i, m, a) for i, m, a in calls}
                bad = {k: v for k, v in as_nobody.items() if v != "denied"}
                h.check(not bad, f"[{label}] nobody is denied restricted/other methods on {n}",
                        json.dumps(bad), note=", ".join(sorted(as_nobody)))
                as_root = {f"{i}.{m}": bus.send(False, n, i, m, a) for i, m, a in calls + READS}
                bad = {k: v for k, v in as_root.items() if v != "allowed"}
                h.check(not bad, f"[{label}] root may call everything on {n}", json.dumps(bad))
    finally:
        bus.close()


def main():
    h = Harness()
    with open(os.path.join(PKG, "busnames.json"), encoding="utf-8") as f:
        bn = json.load(f)
    with open(os.path.join(PKG, "dbus-restricted-methods.json"), encoding="utf-8") as f:
        restricted = json.load(f)
    policies = [os.path.join(POLICY_DIR, names[0] + ".conf") for names in bn.values()]
    missing = [t for t in ("dbus-daemon", "dbus-send", "setpriv") if not shutil.which(t)]
    if missing or not os.path.exists(SYSTEM_CONF) or os.geteuid() != 0:
        h.fail("prerequisites", f"missing {missing}, {SYSTEM_CONF} present: {os.path.exists(SYSTEM_CONF)}, "
               f"euid {os.geteuid()} (needs root)")
        h.exit()
    tmp = tempfile.mkdtemp(prefix="dbuspol-")
    os.chmod(tmp, 0o755)
    try:
        scenario(h, tmp, "stock system bus", policies, None, bn, restricted)
        scenario(h, tmp, "OpenBMC dbus-perms allow-all", policies, {"org.openbmc.conf": OPENBMC_ALLOW_ALL},
                 bn, restricted)
        # Self-test: a policy that only lets root own and call (the anchor's
        # shape) is opened up by OpenBMC's allow-all.
        mgr = bn["bmc-pairing-manager"]
        weak = os.path.join(tmp, mgr[0] + ".conf")
        with open(weak, "w", encoding="utf-8") as f:
            f.write("<busconfig><policy user=\"root\">" + "".join(
                f'<allow own="{n}"/><allow send_destination="{n}"/>' for n in mgr) + "</policy></busconfig>")
        bus = Bus(tmp, [weak], {"org.openbmc.conf": OPENBMC_ALLOW_ALL})
        try:
            bus.serve(mgr)
            m = restricted["bmc-pairing-manager"][0]
            r = bus.send(True, mgr[0], m["interface"], m["method"], ["string:x"])
            h.check(r == "allowed", "self-test: without our default deny, OpenBMC's allow-all lets nobody "
                    f"call {m['method']}", r)
        finally:
            bus.close()
        # Self-test of what the policy comment says: rules apply in file order and
        # the last match wins, so an allow-all that sorts after our files (unlike
        # OpenBMC's org.openbmc.conf) overrides our denies, explicit ones included.
        bus = Bus(tmp, policies, {"zz-allow-all.conf": OPENBMC_ALLOW_ALL})
        try:
            bus.serve(mgr)
            m = restricted["bmc-pairing-manager"][0]
            r = bus.send(True, mgr[0], m["interface"], m["method"], ["string:x"])
            h.check(r == "allowed", "self-test: an allow-all sorting after our files overrides our "
                    f"explicit denies (nobody may call {m['method']})", r)
        finally:
            bus.close()
    except RuntimeError as e:
        h.fail("dbus-daemon scenario", str(e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    h.exit()


if __name__ == "__main__":
    main()
