//! Served D-Bus objects against their PDI YAML: every method (in and out arguments, names and
//! types), property (type and read/readwrite access) and signal (arguments, names and types)
//! must be exactly as the `*.interface.yaml` says, and nothing more.
//!
//! What is served is read with `busctl introspect --xml-interface` (the real bus, as an
//! operator sees it); the YAML with serde_norway. PDI types map to signatures as sdbus++
//! does: boolean b, byte y, int16 n, uint16 q, int32 i, uint32 u, int64 x, uint64 t,
//! size t, ssize x, double d, unixfd h, string s, object_path o, signature g, array[T] and
//! set[T] aT, struct[A,B] (AB), dict[K,V] a{KV}, variant[..] v, enum[..] s.
//!
//! Entry points: [`check_object`] (one object, one interface YAML), [`check_service`] (every
//! object of a service against YAML roots), [`object_interfaces`].
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Interfaces every object may have that no PDI YAML describes.
pub const STANDARD_INTERFACES: [&str; 4] = [
    "org.freedesktop.DBus.Introspectable",
    "org.freedesktop.DBus.Peer",
    "org.freedesktop.DBus.Properties",
    "org.freedesktop.DBus.ObjectManager",
];

/// `(name, signature)` of one argument.
pub type Arg = (String, String);

/// One interface, as served or as specified.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Interface {
    /// Method name → (in arguments, out arguments).
    pub methods: BTreeMap<String, (Vec<Arg>, Vec<Arg>)>,
    /// Property name → (signature, access: `read` or `readwrite`).
    pub properties: BTreeMap<String, (String, String)>,
    /// Signal name → arguments.
    pub signals: BTreeMap<String, Vec<Arg>>,
}

/// True if `served` arguments are those of `spec`: same types in order, and the same names
/// where the YAML names them.
fn args_match(served: &[Arg], spec: &[Arg]) -> bool {
    served.len() == spec.len()
        && served
            .iter()
            .zip(spec)
            .all(|((sn, st), (n, t))| st == t && (n.is_empty() || sn == n))
}

/// Differences between `spec` (the YAML) and `served`, one line each, prefixed with `what`.
pub fn diff(what: &str, spec: &Interface, served: &Interface) -> Vec<String> {
    fn args(list: &[Arg]) -> String {
        let inner: Vec<String> = list.iter().map(|(n, t)| format!("{t} {n}")).collect();
        format!("({})", inner.join(", "))
    }
    let mut out = Vec::new();
    for (name, (i, o)) in &spec.methods {
        match served.methods.get(name) {
            None => out.push(format!("{what}: method {name} is not served")),
            Some((si, so)) => {
                if !args_match(si, i) {
                    out.push(format!(
                        "{what}: method {name} takes {} but the YAML says {}",
                        args(si),
                        args(i)
                    ));
                }
                if !args_match(so, o) {
                    out.push(format!(
                        "{what}: method {name} returns {} but the YAML says {}",
                        args(so),
                        args(o)
                    ));
                }
            }
        }
    }
    for name in served
        .methods
        .keys()
        .filter(|n| !spec.methods.contains_key(*n))
    {
        out.push(format!(
            "{what}: method {name} is served but not in the YAML"
        ));
    }
    for (name, (t, access)) in &spec.properties {
        match served.properties.get(name) {
            None => out.push(format!("{what}: property {name} is not served")),
            Some((st, sa)) => {
                if st != t {
                    out.push(format!(
                        "{what}: property {name} has type {st} but the YAML says {t}"
                    ));
                }
                if sa != access {
                    out.push(format!(
                        "{what}: property {name} is {sa} but the YAML says {access}"
                    ));
                }
            }
        }
    }
    for name in served
        .properties
        .keys()
        .filter(|n| !spec.properties.contains_key(*n))
    {
        out.push(format!(
            "{what}: property {name} is served but not in the YAML"
        ));
    }
    for (name, a) in &spec.signals {
        match served.signals.get(name) {
            None => out.push(format!("{what}: signal {name} is not declared")),
            Some(sa) if !args_match(sa, a) => out.push(format!(
                "{what}: signal {name} carries {} but the YAML says {}",
                args(sa),
                args(a)
            )),
            Some(_) => {}
        }
    }
    for name in served
        .signals
        .keys()
        .filter(|n| !spec.signals.contains_key(*n))
    {
        out.push(format!(
            "{what}: signal {name} is declared but not in the YAML"
        ));
    }
    out
}

// --- PDI YAML ---------------------------------------------------------------------------

/// Splits `a, b[c, d], e` at top-level commas.
fn split_top(s: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(s[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
        if depth < 0 {
            return Err(format!("unbalanced brackets in type {s:?}"));
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced brackets in type {s:?}"));
    }
    parts.push(s[start..].trim());
    Ok(parts)
}

/// The D-Bus signature of a PDI type.
pub fn pdi_signature(t: &str) -> Result<String, String> {
    let t = t.trim();
    let simple = match t {
        "boolean" => Some("b"),
        "byte" => Some("y"),
        "int16" => Some("n"),
        "uint16" => Some("q"),
        "int32" => Some("i"),
        "uint32" => Some("u"),
        "int64" | "ssize" => Some("x"),
        "uint64" | "size" => Some("t"),
        "double" => Some("d"),
        "unixfd" => Some("h"),
        "string" => Some("s"),
        "object_path" => Some("o"),
        "signature" => Some("g"),
        _ => None,
    };
    if let Some(s) = simple {
        return Ok(s.to_owned());
    }
    let (name, inner) = t
        .split_once('[')
        .and_then(|(n, rest)| rest.strip_suffix(']').map(|i| (n.trim(), i)))
        .ok_or_else(|| format!("unknown PDI type {t:?}"))?;
    let params = split_top(inner)?;
    match (name, params.as_slice()) {
        ("array" | "set", [one]) => Ok(format!("a{}", pdi_signature(one)?)),
        ("dict", [k, v]) => Ok(format!("a{{{}{}}}", pdi_signature(k)?, pdi_signature(v)?)),
        ("struct", fields) if !fields.is_empty() => {
            let sigs: Result<Vec<String>, String> =
                fields.iter().map(|f| pdi_signature(f)).collect();
            Ok(format!("({})", sigs?.concat()))
        }
        ("variant", _) => Ok("v".to_owned()),
        ("enum", [_]) => Ok("s".to_owned()),
        _ => Err(format!("unknown PDI type {t:?}")),
    }
}

/// The interface name a YAML file defines: the path below the `yaml` or `upstream`
/// directory, `/` → `.`, without `.interface.yaml`.
pub fn interface_name_of(yaml_path: &Path) -> Result<String, String> {
    let comps: Vec<String> = yaml_path
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let start = comps
        .iter()
        .rposition(|c| c == "yaml" || c == "upstream")
        .ok_or_else(|| {
            format!(
                "{}: not under a yaml/ or upstream/ root",
                yaml_path.display()
            )
        })?;
    let mut rest: Vec<String> = comps.get(start + 1..).unwrap_or_default().to_vec();
    let last = rest
        .pop()
        .and_then(|f| f.strip_suffix(".interface.yaml").map(str::to_owned))
        .ok_or_else(|| format!("{}: not an .interface.yaml file", yaml_path.display()))?;
    rest.push(last);
    Ok(rest.join("."))
}

fn list<'a>(v: &'a serde_norway::Value, key: &str) -> Vec<&'a serde_norway::Value> {
    v.get(key)
        .and_then(|x| x.as_sequence())
        .map(|s| s.iter().collect())
        .unwrap_or_default()
}

fn text<'a>(v: &'a serde_norway::Value, key: &str, what: &str) -> Result<&'a str, String> {
    v.get(key)
        .and_then(|x| x.as_str())
        .ok_or_else(|| format!("{what}: no string `{key}`"))
}

fn yaml_args(items: Vec<&serde_norway::Value>, what: &str) -> Result<Vec<Arg>, String> {
    items
        .into_iter()
        .map(|a| {
            // PDI makes argument names optional for returns and signal properties (upstream
            // PeerProvisioned has none); an unnamed argument matches any served name.
            let name = a
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or_default()
                .to_owned();
            let sig = pdi_signature(text(a, "type", what)?)?;
            Ok((name, sig))
        })
        .collect()
}

/// Reads one `*.interface.yaml`: its interface name and members.
pub fn yaml_interface(yaml_path: &Path) -> Result<(String, Interface), String> {
    let name = interface_name_of(yaml_path)?;
    let body =
        std::fs::read_to_string(yaml_path).map_err(|e| format!("{}: {e}", yaml_path.display()))?;
    let doc: serde_norway::Value =
        serde_norway::from_str(&body).map_err(|e| format!("{}: {e}", yaml_path.display()))?;
    let mut iface = Interface::default();
    for m in list(&doc, "methods") {
        let mname = text(m, "name", "method")?.to_owned();
        let what = format!("{name}.{mname}");
        let ins = yaml_args(list(m, "parameters"), &what)?;
        let outs = yaml_args(list(m, "returns"), &what)?;
        iface.methods.insert(mname, (ins, outs));
    }
    for p in list(&doc, "properties") {
        let pname = text(p, "name", "property")?.to_owned();
        let sig = pdi_signature(text(p, "type", &pname)?)?;
        let flags: Vec<&str> = list(p, "flags")
            .into_iter()
            .filter_map(|f| f.as_str())
            .collect();
        let access = if flags.contains(&"readonly") || flags.contains(&"const") {
            "read"
        } else {
            "readwrite"
        };
        iface.properties.insert(pname, (sig, access.to_owned()));
    }
    for s in list(&doc, "signals") {
        let sname = text(s, "name", "signal")?.to_owned();
        let what = format!("{name}.{sname}");
        let args = yaml_args(list(s, "properties"), &what)?;
        iface.signals.insert(sname, args);
    }
    Ok((name, iface))
}

// --- introspection XML ------------------------------------------------------------------

#[derive(Debug)]
struct Tag {
    name: String,
    attrs: BTreeMap<String, String>,
    closing: bool,
    self_closing: bool,
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The tags of an XML document (comments, declarations and text skipped).
fn tags(xml: &str) -> Result<Vec<Tag>, String> {
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(open) = rest.find('<') {
        rest = &rest[open..];
        if let Some(after) = rest.strip_prefix("<!--") {
            let end = after.find("-->").ok_or("unterminated comment")?;
            rest = &after[end + 3..];
            continue;
        }
        let end = rest.find('>').ok_or("unterminated tag")?;
        let inner = &rest[1..end];
        rest = &rest[end + 1..];
        if inner.starts_with('!') || inner.starts_with('?') {
            continue;
        }
        let closing = inner.starts_with('/');
        let self_closing = inner.ends_with('/');
        let body = inner.trim_start_matches('/').trim_end_matches('/').trim();
        let (name, mut attrs_text) = match body.find(char::is_whitespace) {
            Some(i) => (&body[..i], &body[i..]),
            None => (body, ""),
        };
        let mut attrs = BTreeMap::new();
        loop {
            attrs_text = attrs_text.trim_start();
            if attrs_text.is_empty() {
                break;
            }
            let eq = attrs_text.find('=').ok_or("attribute without value")?;
            let key = attrs_text[..eq].trim().to_owned();
            let after = attrs_text[eq + 1..].trim_start();
            let quote = after.chars().next().ok_or("attribute without value")?;
            if quote != '"' && quote != '\'' {
                return Err(format!("unquoted attribute {key}"));
            }
            let close = after[1..].find(quote).ok_or("unterminated attribute")?;
            attrs.insert(key, unescape(&after[1..1 + close]));
            attrs_text = &after[close + 2..];
        }
        out.push(Tag {
            name: name.to_owned(),
            attrs,
            closing,
            self_closing,
        });
    }
    Ok(out)
}

/// The interfaces of one introspected object (child nodes ignored).
pub fn parse_introspection(xml: &str) -> Result<BTreeMap<String, Interface>, String> {
    let mut ifaces = BTreeMap::new();
    let mut depth = 0usize; // node nesting: only depth 1 is this object
    let mut iface: Option<(String, Interface)> = None;
    let mut member: Option<Member> = None;
    for tag in tags(xml)? {
        let attr = |k: &str| tag.attrs.get(k).cloned().unwrap_or_default();
        match (tag.name.as_str(), tag.closing) {
            ("node", false) if !tag.self_closing => depth += 1,
            ("node", true) => depth = depth.saturating_sub(1),
            _ if depth != 1 => {}
            ("interface", false) => iface = Some((attr("name"), Interface::default())),
            ("interface", true) => {
                if let Some((n, i)) = iface.take() {
                    ifaces.insert(n, i);
                }
            }
            ("method" | "signal", false) => {
                member = Some((tag.name.clone(), attr("name"), Vec::new()));
                if tag.self_closing {
                    finish_member(&mut iface, member.take());
                }
            }
            ("method" | "signal", true) => finish_member(&mut iface, member.take()),
            ("arg", false) => {
                if let Some((_, _, args)) = member.as_mut() {
                    args.push((attr("name"), attr("type"), attr("direction")));
                }
            }
            ("property", false) => {
                if let Some((_, i)) = iface.as_mut() {
                    i.properties
                        .insert(attr("name"), (attr("type"), attr("access")));
                }
            }
            _ => {}
        }
    }
    Ok(ifaces)
}

/// A method or signal being read: kind, name, arguments (name, type, direction).
type Member = (String, String, Vec<(String, String, String)>);

fn finish_member(iface: &mut Option<(String, Interface)>, member: Option<Member>) {
    let (Some((_, i)), Some((kind, name, args))) = (iface.as_mut(), member) else {
        return;
    };
    if kind == "method" {
        let ins = args
            .iter()
            .filter(|(_, _, d)| d != "out")
            .map(|(n, t, _)| (n.clone(), t.clone()))
            .collect();
        let outs = args
            .iter()
            .filter(|(_, _, d)| d == "out")
            .map(|(n, t, _)| (n.clone(), t.clone()))
            .collect();
        i.methods.insert(name, (ins, outs));
    } else {
        i.signals
            .insert(name, args.into_iter().map(|(n, t, _)| (n, t)).collect());
    }
}

/// `busctl --address=<bus> introspect --xml-interface <service> <path>`, parsed.
pub fn introspect(
    bus_address: &str,
    service: &str,
    path: &str,
) -> Result<BTreeMap<String, Interface>, String> {
    let out = Command::new("busctl")
        .arg(format!("--address={bus_address}"))
        .args(["introspect", "--xml-interface", service, path])
        .output()
        .map_err(|e| format!("cannot run busctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "busctl introspect {service} {path}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    parse_introspection(&String::from_utf8_lossy(&out.stdout))
}

/// The non-standard interfaces `path` serves.
pub fn object_interfaces(
    bus_address: &str,
    service: &str,
    path: &str,
) -> Result<Vec<String>, String> {
    Ok(introspect(bus_address, service, path)?
        .into_keys()
        .filter(|n| !STANDARD_INTERFACES.contains(&n.as_str()))
        .collect())
}

/// Checks the interface defined by `yaml_path` on `path` of `service`: served exactly as
/// the YAML says.
pub fn check_object(
    bus_address: &str,
    service: &str,
    path: &str,
    yaml_path: &Path,
) -> Result<(), Vec<String>> {
    let (name, spec) = yaml_interface(yaml_path).map_err(|e| vec![e])?;
    let served = introspect(bus_address, service, path).map_err(|e| vec![e])?;
    let what = format!("{path} {name}");
    let Some(iface) = served.get(&name) else {
        return Err(vec![format!("{what}: interface is not served")]);
    };
    let problems = diff(&what, &spec, iface);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Where the YAML of `interface` would be under `root`.
pub fn yaml_path_for(root: &Path, interface: &str) -> PathBuf {
    let mut p = root.to_path_buf();
    let parts: Vec<&str> = interface.split('.').collect();
    if let Some((last, dirs)) = parts.split_last() {
        for d in dirs {
            p.push(d);
        }
        p.push(format!("{last}.interface.yaml"));
    }
    p
}

/// Every object of `service` (from `busctl tree`): each non-standard interface must have a
/// YAML file under one of `yaml_roots` and match it. Returns the objects checked.
pub fn check_service(
    bus_address: &str,
    service: &str,
    yaml_roots: &[&Path],
) -> Result<Vec<String>, Vec<String>> {
    let out = Command::new("busctl")
        .arg(format!("--address={bus_address}"))
        .args(["tree", "--list", service])
        .output()
        .map_err(|e| vec![format!("cannot run busctl: {e}")])?;
    if !out.status.success() {
        return Err(vec![String::from_utf8_lossy(&out.stderr).trim().to_owned()]);
    }
    let paths: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with('/'))
        .map(str::to_owned)
        .collect();
    let mut problems = Vec::new();
    for path in &paths {
        let ifaces = match object_interfaces(bus_address, service, path) {
            Ok(i) => i,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        for iface in ifaces {
            let Some(yaml) = yaml_roots
                .iter()
                .map(|r| yaml_path_for(r, &iface))
                .find(|p| p.is_file())
            else {
                problems.push(format!("{path}: interface {iface} has no YAML"));
                continue;
            };
            if let Err(p) = check_object(bus_address, service, path, &yaml) {
                problems.extend(p);
            }
        }
    }
    if problems.is_empty() {
        Ok(paths)
    } else {
        Err(problems)
    }
}

/// The upstream phosphor-dbus-interfaces `yaml/` directory: `$PDI_YAML_DIR`, else
/// `../shared/third_party/phosphor-dbus-interfaces/yaml` next to the workspace (as
/// `scripts/dmtf-spdm.sh` finds the DMTF sources). Panics if it is missing: a comparison
/// with YAML that is not there would prove nothing.
pub fn upstream_pdi_root() -> PathBuf {
    let root = std::env::var_os("PDI_YAML_DIR").map_or_else(
        || crate::workspace_root().join("../shared/third_party/phosphor-dbus-interfaces/yaml"),
        PathBuf::from,
    );
    assert!(
        root.join("xyz/openbmc_project/Certs/Certificate.interface.yaml")
            .is_file(),
        "upstream phosphor-dbus-interfaces YAML not found at {} (set PDI_YAML_DIR)",
        root.display()
    );
    root
}
