"""Read systemd unit files (INI with repeated keys) into {section: {key: [values]}}."""


def parse_unit(path):
    sections, cur = {}, None
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    buf = ""
    for raw in lines:
        line = raw.rstrip()
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        line, buf = buf + line, ""
        s = line.strip()
        if not s or s.startswith(("#", ";")):
            continue
        if s.startswith("[") and s.endswith("]"):
            cur = sections.setdefault(s[1:-1], {})
            continue
        if "=" in s and cur is not None:
            k, v = s.split("=", 1)
            cur.setdefault(k.strip(), []).append(v.strip())
    return sections


def values(unit, section, key):
    """All values of key, with an empty assignment resetting the list (systemd semantics)."""
    out = []
    for v in unit.get(section, {}).get(key, []):
        if v == "":
            out = []
        else:
            out.append(v)
    return out


def words(unit, section, key):
    return [w for v in values(unit, section, key) for w in v.split()]


def last(unit, section, key):
    v = unit.get(section, {}).get(key, [])
    return v[-1] if v else None
