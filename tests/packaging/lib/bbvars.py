"""Minimal reader for BitBake assignments (layer.conf, simple recipes).

Handles comments, backslash continuations and the operators = ?= ??= := +=
=+ .= =. and :append/:prepend/:remove on whole variable names. It is not
BitBake: no inline python, no overrides resolution. Good enough to read the
variables our checks assert on; the BitBake-parser smoke test does the real
parse.
"""

import re

ASSIGN = re.compile(r"^(?:export\s+)?(?P<var>[A-Za-z0-9_${}./:+-]+?)(?:\[(?P<flag>[^\]]+)\])?\s*"
                    r"(?P<op>\?\?=|\?=|:=|\+=|=\+|\.=|=\.|=)\s*(?P<q>[\"'])(?P<val>.*)(?P=q)\s*$")


def logical_lines(text):
    buf = ""
    for raw in text.splitlines():
        line = raw.rstrip("\n")
        if not buf and line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            yield buf
        buf = ""
    if buf.strip():
        yield buf


def parse(text):
    """Return (vars, assignments). vars: name -> final string value."""
    values, assigns = {}, []
    for line in logical_lines(text):
        m = ASSIGN.match(line.strip())
        if not m:
            continue
        var, op, val = m.group("var"), m.group("op"), m.group("val")
        if m.group("flag"):
            continue
        assigns.append((var, op, val))
        base = var
        if var.endswith(":append"):
            base, op = var[: -len(":append")], ".="
        elif var.endswith(":prepend"):
            base, op = var[: -len(":prepend")], "=."
        cur = values.get(base)
        if op in ("=", ":="):
            values[base] = val
        elif op == "?=" or op == "??=":
            values.setdefault(base, val)
        elif op == "+=":
            values[base] = (cur + " " + val) if cur else val
        elif op == "=+":
            values[base] = (val + " " + cur) if cur else val
        elif op == ".=":
            values[base] = (cur or "") + val
        elif op == "=.":
            values[base] = val + (cur or "")
    return values, assigns


def words(s):
    return (s or "").split()
