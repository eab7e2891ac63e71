//! STAND-IN for phosphor-networkd's LLDP D-Bus service, for tests and the demo only.
//!
//! phosphor-networkd's LLDP service (`phosphor-lldpd`, unmerged gerrit series "LLDP: Add
//! Receive dbus object") cannot run on this machine, so this program plays its part on a
//! private bus, fed by a real lldpd through `lldpcli -f json0 watch`. It follows the real
//! layout, which is what the daemon's `networkd` discovery source is written against:
//!
//! - service `xyz.openbmc_project.LLDP`, requested after the objects exist;
//! - `org.freedesktop.DBus.ObjectManager` at `/xyz/openbmc_project/network/lldp`;
//! - per interface: `/xyz/openbmc_project/network/lldp/<iface>` with
//!   `xyz.openbmc_project.Network.LLDP.Settings` (`EnableLLDP`),
//!   `/xyz/openbmc_project/network/lldp/<iface>/transmit` (our own TLVs) and, while a
//!   neighbour is known, `/xyz/openbmc_project/network/lldp/<iface>/receive`, both with
//!   `xyz.openbmc_project.Network.LLDP.TLVs`;
//! - the receive object is deleted and re-created on every change (InterfacesRemoved, then
//!   InterfacesAdded), as networkd's `updateOrCreateReceiveObj` does;
//! - TLV properties as in the design proposal / PDI change 83533: `ChassisId`, `PortId`,
//!   `SystemName`, `SystemDescription`, `ManagementAddressIPv4`, `ManagementAddressIPv6`,
//!   `ManagementAddressMAC` (strings), `ManagementVlanId` (q), `ChassisIdSubtype` and
//!   `PortIdSubtype` (enum strings), `SystemCapabilities` (array of enum strings).
//!
//! Like networkd, one receive object per interface shows one neighbour (the latest).
//!
//! Usage: `networkd-lldp-standin --bus unix:path=... [--lldpd-socket S] --interface eth0`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;

use anyhow::{Context, bail};
use bmc_pairing_manager::discovery::lldpd::Framer;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

const SERVICE: &str = "xyz.openbmc_project.LLDP";
const ROOT: &str = "/xyz/openbmc_project/network/lldp";
const ENUM_ID: &str = "xyz.openbmc_project.Network.LLDP.TLVs.IEEE802IdSubtype";
const ENUM_CAP: &str = "xyz.openbmc_project.Network.LLDP.TLVs.SystemCapabilities";

/// Command line: `--bus ADDRESS [--lldpd-socket PATH] [--interface NAME]...`.
struct Args {
    /// D-Bus address to serve on.
    bus: String,
    /// lldpd's control socket.
    lldpd_socket: Option<PathBuf>,
    /// Interfaces to publish settings and transmit objects for.
    interfaces: Vec<String>,
}

impl Args {
    fn parse() -> anyhow::Result<Args> {
        use lexopt::prelude::*;
        let mut parser = lexopt::Parser::from_env();
        let (mut bus, mut lldpd_socket, mut interfaces) = (None, None, Vec::new());
        while let Some(arg) = parser.next()? {
            match arg {
                Long("bus") => bus = Some(parser.value()?.string()?),
                Long("lldpd-socket") => lldpd_socket = Some(parser.value()?.into()),
                Long("interface") => interfaces.push(parser.value()?.string()?),
                _ => return Err(arg.unexpected().into()),
            }
        }
        Ok(Args {
            bus: bus.context("--bus is required")?,
            lldpd_socket,
            interfaces,
        })
    }
}

/// `xyz.openbmc_project.Network.LLDP.TLVs`.
#[derive(Clone, Debug, Default, PartialEq)]
struct Tlvs {
    chassis_id: String,
    chassis_id_subtype: String,
    port_id: String,
    port_id_subtype: String,
    system_name: String,
    system_description: String,
    ipv4: String,
    ipv6: String,
    mac: String,
    vlan: u16,
    capabilities: Vec<String>,
}

#[zbus::interface(name = "xyz.openbmc_project.Network.LLDP.TLVs")]
impl Tlvs {
    #[zbus(property, name = "ChassisId")]
    fn chassis_id(&self) -> String {
        self.chassis_id.clone()
    }
    #[zbus(property, name = "ChassisIdSubtype")]
    fn chassis_id_subtype(&self) -> String {
        self.chassis_id_subtype.clone()
    }
    #[zbus(property, name = "PortId")]
    fn port_id(&self) -> String {
        self.port_id.clone()
    }
    #[zbus(property, name = "PortIdSubtype")]
    fn port_id_subtype(&self) -> String {
        self.port_id_subtype.clone()
    }
    #[zbus(property, name = "SystemName")]
    fn system_name(&self) -> String {
        self.system_name.clone()
    }
    #[zbus(property, name = "SystemDescription")]
    fn system_description(&self) -> String {
        self.system_description.clone()
    }
    #[zbus(property, name = "ManagementAddressIPv4")]
    fn management_address_ipv4(&self) -> String {
        self.ipv4.clone()
    }
    #[zbus(property, name = "ManagementAddressIPv6")]
    fn management_address_ipv6(&self) -> String {
        self.ipv6.clone()
    }
    #[zbus(property, name = "ManagementAddressMAC")]
    fn management_address_mac(&self) -> String {
        self.mac.clone()
    }
    #[zbus(property, name = "ManagementVlanId")]
    fn management_vlan_id(&self) -> u16 {
        self.vlan
    }
    #[zbus(property, name = "SystemCapabilities")]
    fn system_capabilities(&self) -> Vec<String> {
        self.capabilities.clone()
    }
}

/// `xyz.openbmc_project.Network.LLDP.Settings`.
struct Settings;

#[zbus::interface(name = "xyz.openbmc_project.Network.LLDP.Settings")]
impl Settings {
    #[zbus(property, name = "EnableLLDP")]
    fn enable_lldp(&self) -> bool {
        true
    }
}

fn first<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key)?.as_array()?.first()
}

fn text(v: Option<&Value>, key: &str) -> String {
    v.and_then(|v| v.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn subtype(kind: &str) -> String {
    let name = match kind {
        "mac" => "MacAddr",
        "ifname" => "IfName",
        "ifalias" => "IfAlias",
        "local" => "LocalAssign",
        "ip" => "NetworkAddr",
        _ => "NotTransmitted",
    };
    format!("{ENUM_ID}.{name}")
}

/// The TLVs of one json0 chassis (+ port) object.
fn tlvs(chassis: Option<&Value>, port: Option<&Value>) -> Tlvs {
    let id = chassis.and_then(|c| first(c, "id"));
    let port_id = port.and_then(|p| first(p, "id"));
    let mut t = Tlvs {
        chassis_id: text(id, "value"),
        chassis_id_subtype: subtype(&text(id, "type")),
        port_id: text(port_id, "value"),
        port_id_subtype: subtype(&text(port_id, "type")),
        system_name: text(chassis.and_then(|c| first(c, "name")), "value"),
        system_description: text(chassis.and_then(|c| first(c, "descr")), "value"),
        ..Tlvs::default()
    };
    let addresses = chassis
        .and_then(|c| c.get("mgmt-ip"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.get("value").and_then(Value::as_str));
    for a in addresses {
        match a.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) if t.ipv4.is_empty() => t.ipv4 = a.to_owned(),
            Ok(std::net::IpAddr::V6(_)) if t.ipv6.is_empty() => t.ipv6 = a.to_owned(),
            _ => {}
        }
    }
    if id.and_then(|i| i.get("type")).and_then(Value::as_str) == Some("mac") {
        t.mac = t.chassis_id.clone();
    }
    t.capabilities = chassis
        .and_then(|c| c.get("capability"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| c.get("enabled").and_then(Value::as_bool) == Some(true))
        .filter_map(|c| c.get("type").and_then(Value::as_str))
        .map(|c| format!("{ENUM_CAP}.{c}"))
        .collect();
    t
}

/// What one lldpcli document says: (kind, [(iface, tlvs)]).
fn neighbours(doc: &Value) -> anyhow::Result<(String, Vec<(String, Tlvs)>)> {
    let Some((kind, body)) = doc.as_object().and_then(|o| o.iter().next()) else {
        bail!("not an lldpcli document: {doc}");
    };
    let mut out = Vec::new();
    for entry in body.as_array().into_iter().flatten() {
        for iface in entry
            .get("interface")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = text(Some(iface), "name");
            let t = tlvs(first(iface, "chassis"), first(iface, "port"));
            if !name.is_empty() && !t.chassis_id.is_empty() {
                out.push((name, t));
            }
        }
    }
    Ok((kind.clone(), out))
}

struct Service {
    conn: zbus::Connection,
    /// Per interface: neighbours by chassis id, most recent last.
    neighbours: BTreeMap<String, Vec<Tlvs>>,
}

impl Service {
    /// Applies one document and re-creates the receive objects of the interfaces it touched.
    async fn apply(&mut self, doc: &Value) -> anyhow::Result<()> {
        let (kind, list) = neighbours(doc)?;
        let mut touched: Vec<String> = Vec::new();
        if kind == "lldp" {
            touched.extend(self.neighbours.keys().cloned());
            self.neighbours.clear();
        }
        for (iface, t) in list {
            let entry = self.neighbours.entry(iface.clone()).or_default();
            entry.retain(|n| n.chassis_id != t.chassis_id);
            if kind != "lldp-deleted" {
                entry.push(t);
            }
            touched.push(iface);
        }
        touched.sort();
        touched.dedup();
        for iface in touched {
            self.recreate(&iface).await?;
        }
        Ok(())
    }

    /// Deletes the receive object and, if a neighbour remains, creates it anew.
    async fn recreate(&mut self, iface: &str) -> anyhow::Result<()> {
        let path = format!("{ROOT}/{iface}/receive");
        let server = self.conn.object_server();
        match server.remove::<Tlvs, _>(path.as_str()).await {
            Ok(_) | Err(zbus::Error::InterfaceNotFound) => {}
            Err(e) => return Err(e).context("removing the receive object"),
        }
        if let Some(latest) = self.neighbours.get(iface).and_then(|n| n.last()) {
            server
                .at(path.as_str(), latest.clone())
                .await
                .context("creating the receive object")?;
            eprintln!(
                "networkd-lldp-standin: {path}: {} {} {}",
                latest.system_name, latest.ipv6, latest.ipv4
            );
        } else {
            eprintln!("networkd-lldp-standin: {path}: removed");
        }
        Ok(())
    }
}

fn lldpcli(socket: Option<&PathBuf>, args: &[&str]) -> Command {
    let mut cmd = Command::new("lldpcli");
    if let Some(s) = socket {
        cmd.arg("-u").arg(s);
    }
    cmd.args(["-f", "json0"])
        .args(args)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

async fn json_of(socket: Option<&PathBuf>, args: &[&str]) -> anyhow::Result<Value> {
    let out = lldpcli(socket, args)
        .output()
        .await
        .context("running lldpcli")?;
    if !out.status.success() {
        bail!(
            "lldpcli {args:?}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    serde_json::from_slice(&out.stdout).context("lldpcli output is not JSON")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse()?;
    let socket = args.lldpd_socket.as_ref();
    let local = json_of(socket, &["show", "chassis"]).await?;
    let local_chassis = first(&local, "local-chassis").and_then(|c| first(c, "chassis"));

    let mut builder = zbus::connection::Builder::address(args.bus.as_str())?
        .serve_at(ROOT, zbus::fdo::ObjectManager)?;
    for iface in &args.interfaces {
        let port = serde_json::json!({"id": [{"type": "ifname", "value": iface}]});
        builder = builder
            .serve_at(format!("{ROOT}/{iface}"), Settings)?
            .serve_at(
                format!("{ROOT}/{iface}/transmit"),
                tlvs(local_chassis, Some(&port)),
            )?;
    }
    // Objects first, then the name: a client that sees the name finds the objects.
    let conn = builder.build().await.context("connecting to the bus")?;

    // Watch first, then the snapshot, so no change is missed.
    let mut watch = lldpcli(socket, &["watch"])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting lldpcli watch")?;
    let mut stdout = watch.stdout.take().context("watch stdout")?;
    let mut service = Service {
        conn: conn.clone(),
        neighbours: BTreeMap::new(),
    };
    let snapshot = json_of(socket, &["show", "neighbors", "details"]).await?;
    service.apply(&snapshot).await?;
    conn.request_name(SERVICE)
        .await
        .context("requesting the name")?;
    eprintln!("networkd-lldp-standin: serving {SERVICE}");

    let mut framer = Framer::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = stdout.read(&mut buf).await.context("reading the watch")?;
        if n == 0 {
            bail!("lldpcli watch ended: {:?}", watch.wait().await);
        }
        framer.push(buf.get(..n).unwrap_or_default());
        while let Some(doc) = framer.next_document()? {
            let doc: Value = serde_json::from_slice(&doc)?;
            service.apply(&doc).await?;
        }
    }
}
