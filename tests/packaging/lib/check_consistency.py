#!/usr/bin/env python3
"""Bus names, units, D-Bus policy, YAML and recipe agree with each other.

Usage: check_consistency.py YAML_ROOT

Sources of truth: tests/packaging/busnames.json (daemon -> bus names, the
first one is the unit's BusName) and tests/packaging/dbus-restricted-methods.json
(daemon -> root-only methods). Asserts:
- unit BusName= == first name; unit name == <BusName>.service; ExecStart is
  /usr/bin/<daemon> --config /etc/bmc-pairing-manager/<daemon>.conf and that
  config file ships; SYSTEMD_SERVICE in the recipe == the unit files;
- policy <BusName>.conf: root may own exactly the daemon's names, the default
  context denies owning them, denies every call to them and re-allows only
  Introspectable, Peer, Properties.Get/GetAll and ObjectManager.GetManagedObjects,
  and explicitly denies every restricted method (and nothing else);
- YAML service_names (under YAML_ROOT) are names of busnames.json, and every
  method declared in the YAML is listed in dbus-restricted-methods.json;
- the units keep the hardening the design asks for (see unit_problems).
Self-tests mutate copies and expect each kind of drift to be caught.
"""

import copy
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET

import bbvars
import units
from harness import Harness, PKG, REPO

FILES = os.path.join(REPO, "recipes-phosphor", "bmc-pairing", "bmc-pairing-manager")
RECIPE = os.path.join(REPO, "recipes-phosphor", "bmc-pairing", "bmc-pairing-manager_git.bb")
BUSNAMES = os.path.join(PKG, "busnames.json")
RESTRICTED = os.path.join(PKG, "dbus-restricted-methods.json")
READ_ONLY = {("org.freedesktop.DBus.Introspectable", None), ("org.freedesktop.DBus.Peer", None),
             ("org.freedesktop.DBus.Properties", "Get"), ("org.freedesktop.DBus.Properties", "GetAll"),
             ("org.freedesktop.DBus.ObjectManager", "GetManagedObjects")}
BUS_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
ALLOWED_FAMILIES = {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
ALLOWED_CAPS = {"CAP_NET_RAW"}

_spec = importlib.util.spec_from_file_location("checkpdi", os.path.join(REPO, "tools", "check-pdi-yaml.py"))
checkpdi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(checkpdi)


def load_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def busnames_problems(bn):
    P = []
    if not isinstance(bn, dict) or set(bn) != {"bmc-pairing-manager", "bmc-attestation"}:
        return [f"busnames.json must map exactly bmc-pairing-manager and bmc-attestation, got {bn!r}"]
    for d, names in bn.items():
        if not isinstance(names, list) or not names or not all(isinstance(n, str) and BUS_RE.match(n) for n in names):
            P.append(f"busnames.json[{d}] must be a non-empty list of bus names: {names!r}")
    return P


def unit_problems(files, bn):
    P = []
    for daemon, names in bn.items():
        unit_path = os.path.join(files, "systemd", names[0] + ".service")
        if not os.path.isfile(unit_path):
            P.append(f"no unit {names[0]}.service for {daemon}")
            continue
        u = units.parse_unit(unit_path)
        S = "Service"
        busname = units.last(u, S, "BusName")
        if busname != names[0]:
            P.append(f"{names[0]}.service: BusName={busname}, expected {names[0]}")
        if units.last(u, S, "Type") != "dbus":
            P.append(f"{names[0]}.service: Type is not dbus")
        exe = f"/usr/bin/{daemon} --config /etc/bmc-pairing-manager/{daemon}.conf"
        if units.values(u, S, "ExecStart") != [exe]:
            P.append(f"{names[0]}.service: ExecStart={units.values(u, S, 'ExecStart')}, expected [{exe!r}]")
        if not os.path.isfile(os.path.join(files, "config", f"{daemon}.conf")):
            P.append(f"config/{daemon}.conf (ExecStart --config) is not shipped")
        exact = {"Restart": "always", "ProtectSystem": "strict", "NoNewPrivileges": "yes",
                 "PrivateTmp": "yes", "ProtectKernelTunables": "yes", "ProtectKernelModules": "yes",
                 "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "ProtectHome": "yes",
                 "DevicePolicy": "closed"}
        for k, v in exact.items():
            if units.last(u, S, k) != v:
                P.append(f"{names[0]}.service: {k}={units.last(u, S, k)}, expected {v}")
        if not units.last(u, S, "RestartSec"):
            P.append(f"{names[0]}.service: no RestartSec")
        if units.last(u, S, "PrivateDevices") in ("yes", "true", "1", "on"):
            P.append(f"{names[0]}.service: PrivateDevices=yes hides /dev/tpmrm0")
        if "/dev/tpmrm0 rw" not in units.values(u, S, "DeviceAllow"):
            P.append(f"{names[0]}.service: no DeviceAllow=/dev/tpmrm0 rw")
        caps = set(units.words(u, S, "CapabilityBoundingSet"))
        if S not in u or "CapabilityBoundingSet" not in u[S]:
            P.append(f"{names[0]}.service: no CapabilityBoundingSet (all capabilities kept)")
        elif not caps <= ALLOWED_CAPS:
            P.append(f"{names[0]}.service: CapabilityBoundingSet has {sorted(caps - ALLOWED_CAPS)}; "
                     f"only {sorted(ALLOWED_CAPS)} is needed (ports 8090/4194 need no CAP_NET_BIND_SERVICE)")
        fams = set(units.words(u, S, "RestrictAddressFamilies"))
        if not fams or not fams <= ALLOWED_FAMILIES:
            P.append(f"{names[0]}.service: RestrictAddressFamilies={sorted(fams)}, allowed {sorted(ALLOWED_FAMILIES)}")
        if "multi-user.target" not in units.words(u, "Install", "WantedBy"):
            P.append(f"{names[0]}.service: not WantedBy=multi-user.target")
    # The pairing manager specifics.
    mgr = bn.get("bmc-pairing-manager", [None])[0]
    att = bn.get("bmc-attestation", [None])[0]
    path = os.path.join(files, "systemd", f"{mgr}.service")
    if mgr and att and os.path.isfile(path):
        u = units.parse_unit(path)
        if f"{att}.service" not in units.words(u, "Unit", "Wants") or \
                f"{att}.service" not in units.words(u, "Unit", "After"):
            P.append(f"{mgr}.service: does not Want= and After= {att}.service")
        after = units.words(u, "Unit", "After")
        for need in ("dbus.service", "network.target"):
            if need not in after:
                P.append(f"{mgr}.service: not After={need}")
        if units.values(u, "Service", "StateDirectory") != ["bmc-pairing-manager"]:
            P.append(f"{mgr}.service: StateDirectory is not bmc-pairing-manager")
        if "/etc/bmc-pairing-manager/certs" not in units.words(u, "Service", "ReadWritePaths"):
            P.append(f"{mgr}.service: /etc/bmc-pairing-manager/certs is not in ReadWritePaths")
    return P


def policy_rules(path):
    root = ET.parse(path).getroot()
    out = {"root": [], "default": [], "other": []}
    for pol in root.findall("policy"):
        key = "root" if pol.get("user") == "root" else "default" if pol.get("context") == "default" else "other"
        for rule in pol:
            out[key].append((rule.tag, dict(rule.attrib)))
    return out


def policy_problems(files, bn, restricted):
    P = []
    for daemon, names in bn.items():
        path = os.path.join(files, "dbus", names[0] + ".conf")
        if not os.path.isfile(path):
            P.append(f"no D-Bus policy {names[0]}.conf for {daemon}")
            continue
        try:
            r = policy_rules(path)
        except ET.ParseError as e:
            P.append(f"{names[0]}.conf: not well-formed XML: {e}")
            continue
        tag = os.path.basename(path)
        if r["other"]:
            P.append(f"{tag}: policies other than user=root and context=default: {r['other']}")
        root_own = {a["own"] for t, a in r["root"] if t == "allow" and "own" in a}
        if root_own != set(names):
            P.append(f"{tag}: root may own {sorted(root_own)}, busnames.json says {sorted(names)}")
        root_send = {a["send_destination"] for t, a in r["root"] if t == "allow" and set(a) == {"send_destination"}}
        if root_send != set(names):
            P.append(f"{tag}: root may call {sorted(root_send)}, expected {sorted(names)}")
        d = r["default"]
        own_denied = {a["own"] for t, a in d if t == "deny" and set(a) == {"own"}}
        if own_denied != set(names):
            P.append(f"{tag}: default context denies owning {sorted(own_denied)}, expected {sorted(names)}")
        if any(t == "allow" and "own" in a for t, a in d):
            P.append(f"{tag}: default context allows owning a name")
        for n in names:
            blanket = [i for i, (t, a) in enumerate(d) if t == "deny" and a == {"send_destination": n}]
            if not blanket:
                P.append(f"{tag}: default context has no blanket <deny send_destination=\"{n}\"/>")
                continue
            allows = [(i, a) for i, (t, a) in enumerate(d) if t == "allow" and a.get("send_destination") == n]
            for i, a in allows:
                key = (a.get("send_interface"), a.get("send_member"))
                if i < blanket[0]:
                    P.append(f"{tag}: allow {a} comes before the blanket deny and is overridden")
                if key not in READ_ONLY or set(a) - {"send_destination", "send_interface", "send_member"}:
                    P.append(f"{tag}: default context allows {a}, which is not read-only")
            got = {(a.get("send_interface"), a.get("send_member")) for _i, a in allows}
            if got != READ_ONLY:
                P.append(f"{tag}: read-only allows for {n} are {sorted(map(str, got))}, expected {sorted(map(str, READ_ONLY))}")
        explicit = {(a.get("send_interface"), a.get("send_member")) for t, a in d
                    if t == "deny" and "send_member" in a and a.get("send_destination") in names}
        want = {(m["interface"], m["method"]) for m in restricted.get(daemon, [])}
        if explicit != want:
            P.append(f"{tag}: explicit denies {sorted(explicit)} differ from dbus-restricted-methods.json {sorted(want)}")
    for daemon in restricted:
        if daemon not in bn:
            P.append(f"dbus-restricted-methods.json names unknown daemon {daemon}")
    return P


def yaml_problems(yaml_root, bn, restricted):
    P = []
    all_names = {n for names in bn.values() for n in names}
    sn = checkpdi.service_names_of(yaml_root)
    if not sn:
        return [f"no interface YAML under {yaml_root}"]
    for iface, names in sorted(sn.items()):
        for n in names:
            if n not in all_names:
                P.append(f"{iface}: service_names default {n} is not a bus name of busnames.json")
    if not any(bn["bmc-pairing-manager"][0] in names for names in sn.values()):
        P.append(f"no YAML interface declares service_names default {bn['bmc-pairing-manager'][0]}")
    listed = {(m["interface"], m["method"]) for ms in restricted.values() for m in ms}
    c = checkpdi.Checker(yaml_root)
    c.load_all()
    for iface, (_path, data) in sorted(c.interfaces.items()):
        for m in (data or {}).get("methods", []) or []:
            if isinstance(m, dict) and (iface, m.get("name")) not in listed:
                P.append(f"method {iface}.{m.get('name')} is not in dbus-restricted-methods.json "
                         "(every method is root-only by the policy's default deny; list it so "
                         "the policy and its tests cover it)")
    return P


def recipe_problems(files, bn):
    with open(RECIPE, encoding="utf-8") as f:
        values, _ = bbvars.parse(f.read())
    svc = set(bbvars.words(values.get("SYSTEMD_SERVICE:${PN}")))
    want = {names[0] + ".service" for names in bn.values()}
    shipped = {f for f in os.listdir(os.path.join(files, "systemd")) if f.endswith(".service")}
    P = []
    if svc != want:
        P.append(f"SYSTEMD_SERVICE:${{PN}} is {sorted(svc)}, expected {sorted(want)}")
    if shipped != want:
        P.append(f"unit files shipped {sorted(shipped)}, expected {sorted(want)}")
    srcs = {u[len('file://'):] for u in bbvars.words(values.get("SRC_URI")) if u.startswith("file://")}
    for s in want:
        if f"systemd/{s}" not in srcs:
            P.append(f"SRC_URI lacks file://systemd/{s}")
    for names in bn.values():
        if f"dbus/{names[0]}.conf" not in srcs:
            P.append(f"SRC_URI lacks file://dbus/{names[0]}.conf")
    return P


def all_problems(files, yaml_root, bn, restricted):
    P = busnames_problems(bn)
    if P:
        return P
    return (unit_problems(files, bn) + policy_problems(files, bn, restricted)
            + yaml_problems(yaml_root, bn, restricted) + recipe_problems(files, bn))


def main():
    h = Harness()
    yaml_root = sys.argv[1]
    bn, restricted = load_json(BUSNAMES), load_json(RESTRICTED)
    h.check(not busnames_problems(bn), "busnames.json is the agreed simple JSON", "\n".join(busnames_problems(bn)),
            note=json.dumps(bn))
    for label, P in (("units: BusName, ExecStart, hardening", unit_problems(FILES, bn)),
                     ("D-Bus policies: owners, default deny, read-only allows, restricted methods",
                      policy_problems(FILES, bn, restricted)),
                     (f"YAML service_names and methods ({os.path.relpath(os.path.abspath(yaml_root), REPO)})",
                      yaml_problems(yaml_root, bn, restricted)),
                     ("recipe SYSTEMD_SERVICE and SRC_URI", recipe_problems(FILES, bn))):
        h.check(not P, label, "\n".join(P))

    tmp = tempfile.mkdtemp(prefix="consist-")
    try:
        def case(name, expect, edit_files=None, bn_edit=None, restricted_edit=None, yaml_edit=None):
            work = os.path.join(tmp, name.replace(" ", "_"))
            files = os.path.join(work, "files")
            shutil.copytree(FILES, files)
            yroot = os.path.join(work, "yaml")
            shutil.copytree(yaml_root, yroot)
            b, r = copy.deepcopy(bn), copy.deepcopy(restricted)
            if edit_files:
                path, old, new = edit_files
                p = os.path.join(files, path)
                with open(p, encoding="utf-8") as f:
                    t = f.read()
                assert old in t, (old, p)
                with open(p, "w", encoding="utf-8") as f:
                    f.write(t.replace(old, new, 1))
            if bn_edit:
                bn_edit(b)
            if restricted_edit:
                restricted_edit(r)
            if yaml_edit:
                yaml_edit(yroot)
            P = all_problems(files, yroot, b, r)
            h.check(any(expect in x for x in P), f"self-test: {name} is caught", "problems:\n" + "\n".join(P))

        mgr = bn["bmc-pairing-manager"][0]
        case("unit BusName drift", "BusName=",
             edit_files=(f"systemd/{mgr}.service", f"BusName={mgr}", "BusName=xyz.openbmc_project.Pairing"))
        case("policy loses a name", "root may own",
             edit_files=(f"dbus/{mgr}.conf", '<allow own="xyz.openbmc_project.Provisioning"/>', ""))
        case("restricted method not denied", "differ from dbus-restricted-methods.json",
             edit_files=(f"dbus/{mgr}.conf", 'send_member="Unpair"', 'send_member="Unpaired"'))
        case("read-only allow widened", "which is not read-only",
             edit_files=(f"dbus/{mgr}.conf", 'send_interface="org.freedesktop.DBus.Properties" send_member="GetAll"',
                         'send_interface="org.freedesktop.DBus.Properties"'))
        case("CAP_NET_BIND_SERVICE added", "CAP_NET_BIND_SERVICE",
             edit_files=(f"systemd/{mgr}.service", "CapabilityBoundingSet=CAP_NET_RAW",
                         "CapabilityBoundingSet=CAP_NET_RAW CAP_NET_BIND_SERVICE"))
        case("PrivateDevices=yes", "hides /dev/tpmrm0",
             edit_files=(f"systemd/{mgr}.service", "PrivateDevices=no", "PrivateDevices=yes"))
        case("certs not writable", "ReadWritePaths",
             edit_files=(f"systemd/{mgr}.service", "ReadWritePaths=/etc/bmc-pairing-manager/certs", ""))
        case("busnames.json changed alone", "no unit xyz.openbmc_project.Attestation.service",
             bn_edit=lambda b: b["bmc-attestation"].__setitem__(0, "xyz.openbmc_project.Attestation"))

        def yaml_unknown_service(root):
            for dirpath, _d, fs in os.walk(root):
                for f in fs:
                    if f.endswith(".interface.yaml"):
                        p = os.path.join(dirpath, f)
                        with open(p, encoding="utf-8") as fh:
                            t = fh.read()
                        if "service_names:" in t:
                            with open(p, "w", encoding="utf-8") as fh:
                                fh.write(re.sub(r"default: \S+", "default: xyz.openbmc_project.Unknown", t))
                            return
        case("YAML service name not in busnames.json", "is not a bus name of busnames.json",
             yaml_edit=yaml_unknown_service)
        case("YAML method not classified", "is not in dbus-restricted-methods.json",
             restricted_edit=lambda r: r["bmc-pairing-manager"].pop())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    h.exit()


if __name__ == "__main__":
    main()
