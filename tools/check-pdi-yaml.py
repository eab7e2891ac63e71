#!/usr/bin/env python3
"""Strict checker for phosphor-dbus-interfaces (PDI) style YAML.

sdbus++ only validates what its object constructors happen to touch: it
drops unknown keys without a word, does not check that `enum[self.X]` or
`self.Error.X` are defined, and renders whatever `default:` it is given into
C++. This checker catches those, over every file of a YAML root laid out as in
PDI (`<root>/xyz/openbmc_project/<Path>/<Name>.interface.yaml` and
`<Name>.errors.yaml`):

  * unknown keys at every level (with a "did you mean" hint, e.g. flag:/flags:)
  * flags that are not valid for the element (property vs method flags)
  * types: unknown base types, wrong container arity
  * `enum[self.X]` (anywhere inside a type) that the interface does not define;
    `enum[a.b.C.X]` when a.b.C is in this tree and does not define X
  * `self.Error.X` not defined in the sibling <Name>.errors.yaml, and
    fully-qualified errors of this tree or of PDI's xyz.openbmc_project.Common
    that do not exist
  * default values of the wrong type: boolean, integers (incl. range),
    double, string, enum value not in the enum (also an unquoted Off/No/Yes that
    YAML turned into a boolean), and defaults sdbus++ cannot render
  * `service_names` in the mapping form (crashes sdbus++) and malformed names
  * paths, names and duplicates
  * `<Name>.events.yaml` (sdbusplus's event definitions, which the pinned
    sdbus++ 2.17 predates): the rules of sdbusplus's events schema (version,
    errors with severity and errno, events without, UpperCamelCase names,
    metadata names, types and flags, en.message or redfish-mapping), plus
    every `{Placeholder}` of a message naming a metadata item of its event
    and no name defined twice
  * YAML files that are neither *.interface.yaml, *.errors.yaml nor
    *.events.yaml

Usage: check-pdi-yaml.py YAML_ROOT
Exit status 0 when clean, 1 when any finding, 2 on usage errors.
Each finding is printed as `<file>:<line>: <what>: <detail>`.
"""

import difflib
import math
import os
import re
import sys

import yaml

# --- schema ---------------------------------------------------------------

TOP_KEYS = {"description", "methods", "properties", "signals", "enumerations",
            "paths", "service_names", "associations"}
METHOD_KEYS = {"name", "description", "parameters", "returns", "flags", "errors"}
PARAM_KEYS = {"name", "type", "description", "default"}
RETURN_KEYS = {"name", "type", "description"}
PROPERTY_KEYS = {"name", "type", "description", "default", "flags", "errors"}
SIGNAL_KEYS = {"name", "description", "properties"}
SIGNAL_PROP_KEYS = {"name", "type", "description", "default"}
ENUM_KEYS = {"name", "description", "values"}
ENUM_VALUE_KEYS = {"name", "description"}
PATH_KEYS_SHORT = {"instance", "namespace", "description"}
PATH_KEYS_LONG = {"name", "value", "description", "segments"}
SEGMENT_KEYS = {"name", "value", "description"}
SERVICE_KEYS_SHORT = {"default", "description"}
SERVICE_KEYS_LONG = {"name", "value", "description"}
ASSOC_KEYS = {"name", "description", "reverse_name", "required_endpoint_interfaces"}
ERROR_KEYS = {"name", "description", "errno"}
# *.events.yaml (sdbusplus tools/sdbusplus/schemas/events.schema.yaml)
EVENTS_TOP_KEYS = {"version", "errors", "events"}
EVENT_KEYS = {"name", "deprecated", "metadata", "en", "redfish-mapping"}
EVENT_ERROR_KEYS = EVENT_KEYS | {"severity", "errno"}
EVENT_META_KEYS = {"name", "description", "type", "primary"}
EVENT_LANG_KEYS = {"description", "message", "resolution"}
EVENT_SEVERITIES = {"emergency", "alert", "critical", "error", "warning", "notice",
                    "informational", "debug"}
VERSION_RE = re.compile(r"^[0-9]+\.[0-9]+\.[0-9]+$")
EVENT_NAME_RE = re.compile(r"^[A-Z][A-Za-z0-9]*$")
EVENT_META_NAME_RE = re.compile(r"^[A-Z][A-Z0-9a-z]*$")
EVENT_META_TYPE_RE = re.compile(r"^(string|size|u?int64|double|object_path|enum\[.+\])$")
ERRNO_RE = re.compile(r"^E[A-Z0-9]+$")
REDFISH_MAP_RE = re.compile(r"^[A-Z_][a-zA-Z0-9_]*(\.[A-Z_][a-zA-Z0-9_]*)*$")
PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")

PROPERTY_FLAGS = {"const", "readonly", "emits_change", "emits_invalidation",
                  "explicit", "deprecated", "hidden", "unprivileged"}
METHOD_FLAGS = {"deprecated", "hidden", "unprivileged", "no_reply"}

INT_RANGES = {
    "byte": (0, 2**8 - 1),
    "int16": (-2**15, 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-2**31, 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-2**63, 2**63 - 1),
    "uint64": (0, 2**64 - 1),
    # size/ssize depend on the target; check against the 32-bit BMC range.
    "size": (0, 2**32 - 1),
    "ssize": (-2**31, 2**31 - 1),
}
SIMPLE_TYPES = set(INT_RANGES) | {"boolean", "double", "unixfd", "string",
                                  "object_path", "signature"}
# name -> number of type parameters (-1: one or more)
CONTAINERS = {"array": 1, "set": 1, "dict": 2, "struct": -1, "variant": -1,
              "enum": 1}
FLOAT_SPECIALS = {"nan", "infinity", "-infinity", "epsilon"}
INT_SPECIALS = {"minint", "maxint"}

# Errors of phosphor-dbus-interfaces' yaml/xyz/openbmc_project/Common.errors.yaml
# (the upstream file our interfaces reference but do not carry).
UPSTREAM_ERRORS = {
    "xyz.openbmc_project.Common.Error." + n for n in (
        "Timeout", "InternalFailure", "InvalidArgument", "InsufficientPermission",
        "NotAllowed", "NoCACertificate", "TooManyResources", "ResourceNotFound",
        "Unavailable", "UnsupportedRequest", "QuotaExceeded")
}

MEMBER_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
PATH_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_]+$")
BUS_SEGMENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ERROR_REF_RE = re.compile(r"^(?P<iface>[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+)"
                          r"\.Error\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)$")


# --- YAML loading with line numbers --------------------------------------

class LDict(dict):
    """dict that remembers the line of the mapping and of each key."""
    line = 0
    key_lines: dict


class LList(list):
    line = 0


class LineLoader(yaml.SafeLoader):
    pass


def _construct_mapping(loader, node):
    loader.flatten_mapping(node)
    d = LDict()
    d.line = node.start_mark.line + 1
    d.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in d:
            d.setdefault("__dupkeys__", []).append((key, key_node.start_mark.line + 1))
        d[key] = loader.construct_object(value_node, deep=True)
        d.key_lines[key] = key_node.start_mark.line + 1
    return d


def _construct_sequence(loader, node):
    lst = LList(loader.construct_object(n, deep=True) for n in node.value)
    lst.line = node.start_mark.line + 1
    return lst


LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def line_of(obj, key=None, fallback=0):
    if isinstance(obj, LDict):
        if key is not None and key in obj.key_lines:
            return obj.key_lines[key]
        return obj.line
    if isinstance(obj, LList):
        return obj.line
    return fallback


# --- type strings ---------------------------------------------------------

class TypeError_(Exception):
    pass


def parse_type(text):
    """Parse 'dict[string, array[enum[self.X]]]' into (name, [children])."""
    tokens = re.findall(r"[A-Za-z0-9_.\-]+|\[|\]|,|\S", text)
    pos = 0

    def node():
        nonlocal pos
        if pos >= len(tokens) or not re.match(r"^[A-Za-z0-9_.\-]+$", tokens[pos]):
            raise TypeError_(f"expected a type name at token {pos} of '{text}'")
        name = tokens[pos]
        pos += 1
        children = []
        if pos < len(tokens) and tokens[pos] == "[":
            pos += 1
            if name == "enum":
                if pos >= len(tokens):
                    raise TypeError_(f"unterminated enum[] in '{text}'")
                children.append((tokens[pos], []))
                pos += 1
            else:
                children.append(node())
                while pos < len(tokens) and tokens[pos] == ",":
                    pos += 1
                    children.append(node())
            if pos >= len(tokens) or tokens[pos] != "]":
                raise TypeError_(f"missing ']' in '{text}'")
            pos += 1
        return (name, children)

    result = node()
    if pos != len(tokens):
        raise TypeError_(f"trailing text after the type in '{text}'")
    return result


def type_problems(t):
    """Yield problems with a parsed type and collect enum references."""
    name, children = t
    if name in SIMPLE_TYPES:
        if children:
            yield f"type '{name}' takes no parameters"
        return
    if name not in CONTAINERS:
        yield f"unknown type '{name}'"
        return
    want = CONTAINERS[name]
    if want == -1 and not children:
        yield f"'{name}' needs at least one type parameter"
    elif want != -1 and len(children) != want:
        yield f"'{name}' takes {want} type parameter(s), got {len(children)}"
    if name != "enum":
        for c in children:
            yield from type_problems(c)


def enum_refs(t):
    name, children = t
    if name == "enum":
        if children:
            yield children[0][0]
        return
    for c in children:
        yield from enum_refs(c)


# --- the checker ----------------------------------------------------------

class Checker:
    def __init__(self, root):
        self.root = root
        self.findings = []
        self.interfaces = {}   # iface name -> (path, data)
        self.errors = {}       # iface name -> set of error names

    def report(self, path, line, what, detail):
        rel = os.path.relpath(path, self.root)
        self.findings.append(f"{rel}:{line}: {what}: {detail}")

    # -- loading
    def load_all(self):
        for dirpath, dirnames, filenames in os.walk(self.root):
            dirnames.sort()
            for fn in sorted(filenames):
                path = os.path.join(dirpath, fn)
                rel = os.path.relpath(path, self.root)
                if not (fn.endswith(".yaml") or fn.endswith(".yml")):
                    continue
                if fn.endswith(".interface.yaml"):
                    kind, stem = "interface", fn[: -len(".interface.yaml")]
                elif fn.endswith(".errors.yaml"):
                    kind, stem = "errors", fn[: -len(".errors.yaml")]
                elif fn.endswith(".events.yaml"):
                    kind, stem = "events", fn[: -len(".events.yaml")]
                else:
                    self.report(path, 1, "unrecognized file name",
                                f"'{fn}' is neither <Name>.interface.yaml, <Name>.errors.yaml "
                                "nor <Name>.events.yaml; sdbus++ and meson would ignore it")
                    continue
                parts = os.path.dirname(rel).split(os.sep) if os.path.dirname(rel) else []
                parts.append(stem)
                bad = [p for p in parts if not BUS_SEGMENT_RE.match(p)]
                if bad or len(parts) < 2:
                    self.report(path, 1, "bad interface path",
                                f"'{'.'.join(parts)}' is not a valid D-Bus interface name")
                    continue
                iface = ".".join(parts)
                try:
                    with open(path, encoding="utf-8") as f:
                        data = yaml.load(f, Loader=LineLoader)
                except yaml.YAMLError as e:
                    self.report(path, getattr(getattr(e, "problem_mark", None), "line", 0) + 1,
                                "YAML syntax error", str(e).replace("\n", " "))
                    continue
                if kind == "interface":
                    self.interfaces[iface] = (path, data)
                elif kind == "events":
                    self.check_events(iface, path, data)
                else:
                    self.load_errors(iface, path, data)

    def load_errors(self, iface, path, data):
        names = set()
        if data is None:
            data = LList()
        if not isinstance(data, list):
            self.report(path, line_of(data, fallback=1), "errors file is not a list",
                        "an *.errors.yaml holds a list of '- name: X' entries")
            self.errors[iface] = names
            return
        for i, e in enumerate(data):
            where = f"errors[{i}]"
            if not isinstance(e, dict):
                self.report(path, line_of(data), "error entry is not a mapping", where)
                continue
            self.keys(path, e, ERROR_KEYS, where)
            n = e.get("name")
            if not isinstance(n, str) or not MEMBER_RE.match(n):
                self.report(path, line_of(e, "name"), "bad error name", f"{where}: {n!r}")
                continue
            if n in names:
                self.report(path, line_of(e, "name"), "duplicate error", f"{n}")
            names.add(n)
            if "errno" in e and not isinstance(e["errno"], str):
                self.report(path, line_of(e, "errno"), "bad errno", f"{n}: {e['errno']!r} is not a string")
        self.errors[iface] = names

    # -- events (sdbusplus events schema)
    def check_events(self, ns, path, data):
        if not isinstance(data, dict):
            self.report(path, line_of(data, fallback=1), "events file is not a mapping",
                        "an *.events.yaml holds 'version' and 'errors' / 'events' lists")
            return
        self.keys(path, data, EVENTS_TOP_KEYS, ns)
        v = data.get("version")
        if not isinstance(v, str) or not VERSION_RE.match(v):
            self.report(path, line_of(data, "version", fallback=1), "bad version",
                        f"{ns}: version must be a string X.Y.Z (the Redfish registry version), got {v!r}")
        seen = set()
        for section, is_error in (("errors", True), ("events", False)):
            if section in data and (not isinstance(data[section], list) or not data[section]):
                self.report(path, line_of(data, section), "empty or not a list",
                            f"{ns}: '{section}' must be a non-empty list")
                continue
            for i, e in self.as_list(path, data, section, ns):
                self.check_event(ns, path, e, f"{section}[{i}]", is_error, seen)

    def check_event(self, ns, path, e, where, is_error, seen):
        n = e.get("name")
        if not isinstance(n, str) or not EVENT_NAME_RE.match(n):
            self.report(path, line_of(e, "name"), "bad event name",
                        f"{where}: {n!r} is not UpperCamelCase")
            n = None
        elif n in seen:
            self.report(path, line_of(e, "name"), "duplicate event", f"{ns}.{n}")
        else:
            seen.add(n)
        where = f"{ns}.{n}" if n else where
        self.keys(path, e, EVENT_ERROR_KEYS if is_error else EVENT_KEYS, where)
        if is_error:
            sev = e.get("severity")
            if sev not in EVENT_SEVERITIES:
                self.report(path, line_of(e, "severity", fallback=line_of(e)), "bad severity",
                            f"{where}: {sev!r} (an error needs one of {', '.join(sorted(EVENT_SEVERITIES))})")
            errno = e.get("errno")
            if not isinstance(errno, str) or not ERRNO_RE.match(errno):
                self.report(path, line_of(e, "errno", fallback=line_of(e)), "bad errno",
                            f"{where}: {errno!r} (an error needs an errno such as EIO)")
        names = set()
        meta = e.get("metadata")
        if meta is not None and (not isinstance(meta, list) or not meta):
            self.report(path, line_of(e, "metadata"), "empty or not a list",
                        f"{where}: 'metadata' must be a non-empty list (or absent)")
        for i, m in self.as_list(path, e, "metadata", where):
            mw = f"{where}.metadata[{i}]"
            self.keys(path, m, EVENT_META_KEYS, mw)
            mn = m.get("name")
            if not isinstance(mn, str) or not EVENT_META_NAME_RE.match(mn):
                self.report(path, line_of(m, "name", fallback=line_of(m)), "bad metadata name",
                            f"{mw}: {mn!r} is not CamelCase")
            elif mn in names:
                self.report(path, line_of(m, "name"), "duplicate metadata", f"{where}: {mn}")
            else:
                names.add(mn)
            t = m.get("type")
            if not isinstance(t, str) or not EVENT_META_TYPE_RE.match(t):
                self.report(path, line_of(m, "type", fallback=line_of(m)), "bad metadata type",
                            f"{mw}: {t!r} (string, size, int64, uint64, double, object_path or enum[...])")
            if not isinstance(m.get("description"), str):
                self.report(path, line_of(m), "missing description", f"{mw} has no description")
            if "primary" in m and not isinstance(m["primary"], bool):
                self.report(path, line_of(m, "primary"), "bad primary",
                            f"{mw}: {m['primary']!r} is not a boolean")
        has_en, has_map = "en" in e, "redfish-mapping" in e
        if has_en == has_map:
            self.report(path, line_of(e), "message or mapping",
                        f"{where}: needs exactly one of 'en' and 'redfish-mapping'")
        if has_map and (not isinstance(e["redfish-mapping"], str)
                        or not REDFISH_MAP_RE.match(e["redfish-mapping"])):
            self.report(path, line_of(e, "redfish-mapping"), "bad redfish-mapping",
                        f"{where}: {e['redfish-mapping']!r}")
        if has_en:
            en = e["en"]
            if not isinstance(en, dict):
                self.report(path, line_of(e, "en"), "en is not a mapping", where)
                return
            self.keys(path, en, EVENT_LANG_KEYS, f"{where}.en")
            msg = en.get("message")
            if not isinstance(msg, str) or not msg.strip():
                self.report(path, line_of(en, "message", fallback=line_of(en)), "missing message",
                            f"{where}.en needs a message")
                return
            for ph in PLACEHOLDER_RE.findall(msg):
                if ph not in names:
                    self.report(path, line_of(en, "message"), "undefined placeholder",
                                f"{where}: '{{{ph}}}' in the message is not a metadata name of the event")

    # -- generic helpers
    def keys(self, path, obj, allowed, where):
        for k in obj:
            if k == "__dupkeys__":
                for key, ln in obj[k]:
                    self.report(path, ln, "duplicate key", f"'{key}' appears twice in {where}")
                continue
            if k not in allowed:
                hint = difflib.get_close_matches(str(k), sorted(allowed), n=1, cutoff=0.6)
                extra = f" (did you mean '{hint[0]}'?)" if hint else ""
                self.report(path, line_of(obj, k), "unknown key",
                            f"'{k}' in {where}{extra}; sdbus++ silently ignores it")

    def as_list(self, path, parent, key, where):
        v = parent.get(key)
        if v is None:
            return []
        if not isinstance(v, list):
            self.report(path, line_of(parent, key), "not a list",
                        f"'{key}' in {where} must be a YAML list")
            return []
        out = []
        for i, item in enumerate(v):
            if not isinstance(item, dict):
                self.report(path, line_of(v), "not a mapping", f"{where}.{key}[{i}] must be a mapping")
                continue
            out.append((i, item))
        return out

    def name(self, path, obj, where, required=True):
        n = obj.get("name")
        if n is None:
            if required:
                self.report(path, line_of(obj), "missing name", f"{where} has no 'name'")
            return None
        if not isinstance(n, str):
            self.report(path, line_of(obj, "name"), "name is not a string",
                        f"{where}: YAML read {n!r} ({type(n).__name__}); quote it")
            return None
        if not MEMBER_RE.match(n):
            self.report(path, line_of(obj, "name"), "bad name", f"{where}: '{n}'")
        return n

    def flags(self, path, obj, valid, kind, where):
        fl = obj.get("flags")
        if fl is None:
            return []
        if not isinstance(fl, list):
            self.report(path, line_of(obj, "flags"), "flags not a list", f"{where}: {fl!r}")
            return []
        for f in fl:
            if f not in valid:
                self.report(path, line_of(obj, "flags"), "invalid flag",
                            f"'{f}' is not a {kind} flag in {where} (valid: {', '.join(sorted(valid))})")
        return fl

    # -- interface
    def check_interface(self, iface, path, data):
        if data is None:
            self.report(path, 1, "empty interface", iface)
            return
        if not isinstance(data, dict):
            self.report(path, line_of(data, fallback=1), "interface is not a mapping", iface)
            return
        self.keys(path, data, TOP_KEYS, "the interface")
        if "description" in data and not isinstance(data["description"], str):
            self.report(path, line_of(data, "description"), "description is not a string", "interface")

        enums = {}
        for i, e in self.as_list(path, data, "enumerations", "interface"):
            where = f"enumerations[{i}]"
            self.keys(path, e, ENUM_KEYS, where)
            n = self.name(path, e, where)
            values = []
            vals = self.as_list(path, e, "values", where)
            if "values" not in e or not vals:
                self.report(path, line_of(e), "enum without values", f"{where} ({n})")
            for j, v in vals:
                vwhere = f"{where}.values[{j}]"
                self.keys(path, v, ENUM_VALUE_KEYS, vwhere)
                vn = self.name(path, v, vwhere)
                if vn in values:
                    self.report(path, line_of(v, "name"), "duplicate enum value", f"{n}.{vn}")
                if vn:
                    values.append(vn)
            if n:
                if n in enums:
                    self.report(path, line_of(e, "name"), "duplicate enumeration", n)
                enums[n] = values
        ctx = {"iface": iface, "path": path, "enums": enums}

        seen = set()
        for i, p in self.as_list(path, data, "properties", "interface"):
            where = f"properties[{i}]"
            self.keys(path, p, PROPERTY_KEYS, where)
            n = self.name(path, p, where)
            if n in seen:
                self.report(path, line_of(p, "name"), "duplicate property", n)
            seen.add(n)
            self.flags(path, p, PROPERTY_FLAGS, "property", f"{where} ({n})")
            self.typed(ctx, p, f"{where} ({n})", require_type=True)
            self.error_list(ctx, p, f"{where} ({n})")

        seen = set()
        for i, m in self.as_list(path, data, "methods", "interface"):
            where = f"methods[{i}]"
            self.keys(path, m, METHOD_KEYS, where)
            n = self.name(path, m, where)
            if n in seen:
                self.report(path, line_of(m, "name"), "duplicate method", n)
            seen.add(n)
            self.flags(path, m, METHOD_FLAGS, "method", f"{where} ({n})")
            self.error_list(ctx, m, f"{where} ({n})")
            for j, a in self.as_list(path, m, "parameters", where):
                awhere = f"{where} ({n}).parameters[{j}]"
                self.keys(path, a, PARAM_KEYS, awhere)
                self.name(path, a, awhere)
                self.typed(ctx, a, awhere, require_type=True)
            for j, r in self.as_list(path, m, "returns", where):
                rwhere = f"{where} ({n}).returns[{j}]"
                self.keys(path, r, RETURN_KEYS, rwhere)
                self.name(path, r, rwhere, required=False)
                self.typed(ctx, r, rwhere, require_type=True)

        seen = set()
        for i, s in self.as_list(path, data, "signals", "interface"):
            where = f"signals[{i}]"
            self.keys(path, s, SIGNAL_KEYS, where)
            n = self.name(path, s, where)
            if n in seen:
                self.report(path, line_of(s, "name"), "duplicate signal", n)
            seen.add(n)
            for j, a in self.as_list(path, s, "properties", where):
                awhere = f"{where} ({n}).properties[{j}]"
                self.keys(path, a, SIGNAL_PROP_KEYS, awhere)
                self.name(path, a, awhere, required=False)
                self.typed(ctx, a, awhere, require_type=True)

        self.check_paths(path, data)
        self.check_service_names(path, data)
        for i, a in self.as_list(path, data, "associations", "interface"):
            where = f"associations[{i}]"
            self.keys(path, a, ASSOC_KEYS, where)
            for k in ("name", "reverse_name"):
                if not isinstance(a.get(k), str):
                    self.report(path, line_of(a, k), "bad association", f"{where}: '{k}' must be a string")
            req = a.get("required_endpoint_interfaces", [])
            if not isinstance(req, list) or not all(isinstance(x, str) for x in req):
                self.report(path, line_of(a, "required_endpoint_interfaces"), "bad association",
                            f"{where}: required_endpoint_interfaces must be a list of strings")

    def typed(self, ctx, obj, where, require_type):
        path = ctx["path"]
        t = obj.get("type")
        if t is None:
            if require_type:
                self.report(path, line_of(obj), "missing type", f"{where} has no 'type'")
            return
        if not isinstance(t, str):
            self.report(path, line_of(obj, "type"), "type is not a string", f"{where}: {t!r}")
            return
        try:
            parsed = parse_type(t.replace(" ", ""))
        except TypeError_ as e:
            self.report(path, line_of(obj, "type"), "bad type", f"{where}: {e}")
            return
        problems = list(type_problems(parsed))
        for pr in problems:
            self.report(path, line_of(obj, "type"), "bad type", f"{where}: {pr}")
        for ref in enum_refs(parsed):
            self.check_enum_ref(ctx, obj, where, ref)
        if "default" in obj and not problems:
            self.check_default(ctx, obj, where, parsed)

    def enum_values(self, ctx, ref):
        """Values of the enum a reference names, or None when unknown here."""
        if ref.startswith("self."):
            return ctx["enums"].get(ref[len("self."):])
        iface, _, name = ref.rpartition(".")
        if iface in self.interfaces:
            _, data = self.interfaces[iface]
            for e in (data or {}).get("enumerations", []) or []:
                if isinstance(e, dict) and e.get("name") == name:
                    return [v.get("name") for v in e.get("values", []) or [] if isinstance(v, dict)]
        return None

    def check_enum_ref(self, ctx, obj, where, ref):
        path = ctx["path"]
        if ref.startswith("self."):
            n = ref[len("self."):]
            if n not in ctx["enums"]:
                known = ", ".join(sorted(ctx["enums"])) or "none"
                self.report(path, line_of(obj, "type"), "undefined enum",
                            f"{where}: enum[{ref}] but {ctx['iface']} defines no enumeration "
                            f"'{n}' (defined: {known})")
            return
        iface, _, name = ref.rpartition(".")
        if not iface or not all(BUS_SEGMENT_RE.match(s) for s in ref.split(".")):
            self.report(path, line_of(obj, "type"), "bad enum reference", f"{where}: enum[{ref}]")
            return
        if iface in self.interfaces and self.enum_values(ctx, ref) is None:
            self.report(path, line_of(obj, "type"), "undefined enum",
                        f"{where}: enum[{ref}] but {iface} (in this tree) defines no enumeration '{name}'")

    def check_default(self, ctx, obj, where, parsed):
        path = ctx["path"]
        ln = line_of(obj, "default")
        v = obj["default"]
        base, _children = parsed
        bad = lambda msg: self.report(path, ln, "bad default", f"{where}: {msg}")  # noqa: E731

        if base == "boolean":
            if not isinstance(v, bool):
                bad(f"{v!r} is not a boolean (write true or false, unquoted)")
        elif base in INT_RANGES:
            if isinstance(v, str) and v.lower() in INT_SPECIALS:
                return
            if isinstance(v, bool) or not isinstance(v, int):
                bad(f"{v!r} is not an integer for type {base}")
                return
            lo, hi = INT_RANGES[base]
            if not lo <= v <= hi:
                bad(f"{v} is out of range for {base} ({lo}..{hi})")
        elif base == "double":
            if isinstance(v, str) and v.lower() in FLOAT_SPECIALS:
                return
            if isinstance(v, bool) or not isinstance(v, (int, float)) or \
                    (isinstance(v, float) and not math.isfinite(v)):
                bad(f"{v!r} is not a number (or NaN/Infinity/-Infinity/Epsilon)")
        elif base == "string":
            if not isinstance(v, str):
                kind = {bool: "a boolean", int: "an integer", float: "a number"}.get(type(v), "not text")
                bad(f"{v!r} is {kind}, not a string (quote it)")
            elif '"' in v or "\\" in v or "\n" in v:
                bad(f"{v!r}: sdbus++ pastes string defaults into C++ between quotes; "
                    "quotes, backslashes and newlines break it")
        elif base == "enum":
            ref = _children[0][0]
            values = self.enum_values(ctx, ref)
            if not isinstance(v, str):
                hint = " (YAML reads unquoted yes/no/on/off/true/false as booleans; quote it)" \
                    if isinstance(v, bool) else ""
                bad(f"{v!r} is not an enum value name of {ref}{hint}")
            elif values is not None and v not in values:
                bad(f"'{v}' is not a value of enum {ref} (values: {', '.join(values)})")
        else:
            bad(f"sdbus++ cannot render a default for type '{base}' "
                "(only booleans, numbers, strings and enums)")

    def error_list(self, ctx, obj, where):
        path = ctx["path"]
        errs = obj.get("errors")
        if errs is None:
            return
        if not isinstance(errs, list):
            self.report(path, line_of(obj, "errors"), "errors not a list", f"{where}: {errs!r}")
            return
        for e in errs:
            if not isinstance(e, str):
                self.report(path, line_of(obj, "errors"), "bad error reference", f"{where}: {e!r}")
                continue
            if e.startswith("self.Error."):
                n = e[len("self.Error."):]
                defined = self.errors.get(ctx["iface"])
                if defined is None:
                    self.report(path, line_of(obj, "errors"), "undefined error",
                                f"{where}: {e} but there is no {os.path.basename(path).replace('.interface.yaml', '.errors.yaml')}")
                elif n not in defined:
                    self.report(path, line_of(obj, "errors"), "undefined error",
                                f"{where}: {e} is not in {ctx['iface']}'s errors.yaml "
                                f"(defined: {', '.join(sorted(defined)) or 'none'})")
                continue
            m = ERROR_REF_RE.match(e)
            if not m:
                self.report(path, line_of(obj, "errors"), "bad error reference",
                            f"{where}: '{e}' is not self.Error.<Name> or <interface>.Error.<Name>")
                continue
            owner, n = m.group("iface"), m.group("name")
            if owner in self.errors:
                if n not in self.errors[owner]:
                    self.report(path, line_of(obj, "errors"), "undefined error",
                                f"{where}: {e} is not defined in {owner}'s errors.yaml (in this tree)")
            elif owner == "xyz.openbmc_project.Common":
                if e not in UPSTREAM_ERRORS:
                    close = difflib.get_close_matches(e, sorted(UPSTREAM_ERRORS), n=1)
                    hint = f" (did you mean {close[0]}?)" if close else ""
                    self.report(path, line_of(obj, "errors"), "undefined error",
                                f"{where}: {e} is not an error of phosphor-dbus-interfaces' "
                                f"Common.errors.yaml{hint}")

    def check_paths(self, path, data):
        for i, p in self.as_list(path, data, "paths", "interface"):
            where = f"paths[{i}]"
            if "instance" in p or "namespace" in p:
                self.keys(path, p, PATH_KEYS_SHORT, where)
                if "instance" in p and "namespace" in p:
                    self.report(path, line_of(p), "bad path", f"{where}: both instance and namespace")
                key = "instance" if "instance" in p else "namespace"
                self.object_path(path, p, key, where)
            else:
                self.keys(path, p, PATH_KEYS_LONG, where)
                self.name(path, p, where)
                self.object_path(path, p, "value", where)
                for j, s in self.as_list(path, p, "segments", where):
                    swhere = f"{where}.segments[{j}]"
                    self.keys(path, s, SEGMENT_KEYS, swhere)
                    self.name(path, s, swhere)
                    sv = s.get("value")
                    if sv is not None and (not isinstance(sv, str) or not all(
                            PATH_SEGMENT_RE.match(x) for x in sv.split("/"))):
                        self.report(path, line_of(s, "value"), "bad path segment", f"{swhere}: {sv!r}")

    def object_path(self, path, obj, key, where):
        v = obj.get(key)
        if not isinstance(v, str) or not v:
            self.report(path, line_of(obj, key), "bad path", f"{where}: '{key}' must be a non-empty string")
            return
        if v == "/":
            return
        if not v.startswith("/") or not all(PATH_SEGMENT_RE.match(s) for s in v[1:].split("/")):
            self.report(path, line_of(obj, key), "bad path",
                        f"{where}: '{v}' is not an absolute D-Bus object path")

    def check_service_names(self, path, data):
        if "service_names" not in data:
            return
        sn = data["service_names"]
        if isinstance(sn, dict):
            self.report(path, line_of(data, "service_names"), "service_names is a mapping",
                        "write it as a list ('- default: a.b.c'); the mapping form from the "
                        "sdbusplus doc crashes sdbus++")
            return
        for i, s in self.as_list(path, data, "service_names", "interface"):
            where = f"service_names[{i}]"
            if "default" in s:
                self.keys(path, s, SERVICE_KEYS_SHORT, where)
                key = "default"
            else:
                self.keys(path, s, SERVICE_KEYS_LONG, where)
                self.name(path, s, where)
                key = "value"
            v = s.get(key)
            if not isinstance(v, str) or len(v.split(".")) < 2 or not all(
                    BUS_SEGMENT_RE.match(x) for x in v.split(".")):
                self.report(path, line_of(s, key), "bad service name", f"{where}: {v!r}")

    def run(self):
        self.load_all()
        for iface, (path, data) in sorted(self.interfaces.items()):
            self.check_interface(iface, path, data)
        return self.findings


def service_names_of(root):
    """Map interface -> list of service_names defaults/values (used by tests)."""
    c = Checker(root)
    c.load_all()
    out = {}
    for iface, (_path, data) in c.interfaces.items():
        names = []
        for s in (data or {}).get("service_names", []) or []:
            if isinstance(s, dict):
                names.append(s.get("default", s.get("value")))
        out[iface] = names
    return out


def main(argv):
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__.strip().splitlines()[0])
        print("usage: check-pdi-yaml.py YAML_ROOT", file=sys.stderr)
        return 2
    root = argv[1]
    if not os.path.isdir(root):
        print(f"check-pdi-yaml: {root}: not a directory", file=sys.stderr)
        return 2
    findings = Checker(root).run()
    for f in findings:
        print(f)
    n_if = sum(1 for _ in _yaml_files(root))
    print(f"check-pdi-yaml: {root}: {n_if} file(s), {len(findings)} finding(s)",
          file=sys.stderr)
    return 1 if findings else 0


def _yaml_files(root):
    for dirpath, _d, files in os.walk(root):
        for f in files:
            if f.endswith((".yaml", ".yml")):
                yield os.path.join(dirpath, f)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
