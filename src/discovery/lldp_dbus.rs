//! LLDP neighbours from phosphor-networkd's LLDP service on D-Bus.
//!
//! The service `xyz.openbmc_project.LLDP` keeps one object per interface,
//! `/xyz/openbmc_project/network/lldp/<iface>/receive`, with the neighbour's TLVs on
//! `xyz.openbmc_project.Network.LLDP.TLVs`, under an ObjectManager at
//! `/xyz/openbmc_project/network/lldp`. It deletes and re-creates the receive object on every
//! change, so this source follows `InterfacesAdded` *and* `InterfacesRemoved`, after a
//! start-up read (`GetManagedObjects`, or `Get` on this BMC's receive object when the service
//! has no ObjectManager).
//!
//! Signals are matched by the unique name that currently owns `xyz.openbmc_project.LLDP`,
//! by the path of its ObjectManager (`path_namespace`), by interface, and then by the object
//! path they carry, never by member alone: another process on the bus cannot inject
//! neighbours, and an owner that does not run as a trusted user (root unless configured;
//! OpenBMC's bus policy lets anyone own any name) is not read at all. Owner changes
//! (`NameOwnerChanged`) are followed: the old
//! owner's neighbours are lost, and everything is read again from the new owner. IPv4 and
//! IPv6 management addresses are both reported.
//!
//! Owns one client connection to the bus. This is the only discovery file that uses zbus.
//! Discovery is a hint: nothing here decides whether to trust or pair.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::Duration;

use futures_util::StreamExt;
use rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zbus::fdo::{DBusProxy, ObjectManagerProxy};
use zbus::message::Type as MessageType;
use zbus::names::{BusName, OwnedUniqueName};
use zbus::zvariant::{OwnedObjectPath, OwnedValue};
use zbus::{MatchRule, MessageStream};

use super::{Error, Event, Neighbour, Source, SourceFuture};
use crate::dbus::owner::{self, TrustedUsers};
use bmc_pairing_core::link::heartbeat::Backoff;

/// phosphor-networkd's LLDP service name.
pub const SERVICE: &str = "xyz.openbmc_project.LLDP";
/// Where its ObjectManager and per-interface objects live.
pub const ROOT: &str = "/xyz/openbmc_project/network/lldp";
/// The interface carrying a neighbour's TLVs.
pub const TLVS_INTERFACE: &str = "xyz.openbmc_project.Network.LLDP.TLVs";
const OBJECT_MANAGER: &str = "org.freedesktop.DBus.ObjectManager";
/// Deadline for each start-up read from the service.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// First reconnect delay when the bus is unreachable.
pub const RECONNECT_INITIAL: Duration = Duration::from_millis(200);
/// Reconnect delay cap.
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// Signals queued per match before the oldest are dropped (the source reads them at once).
const QUEUE: usize = 1024;

/// The receive object of a local interface.
pub fn receive_path(interface: &str) -> String {
    format!("{ROOT}/{interface}/receive")
}

/// The local interface of a receive object path, `None` for any other path (the transmit
/// object, the per-interface settings object, anything outside the service's tree).
pub fn receive_interface(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(ROOT)?.strip_prefix('/')?;
    let iface = rest.strip_suffix("/receive")?;
    (!iface.is_empty() && !iface.contains('/')).then_some(iface)
}

/// TLVs that cannot describe a neighbour.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTlvs {
    /// `ChassisId` missing or empty: networkd has no neighbour on this interface.
    #[error("no chassis id on {interface}")]
    NoChassisId {
        /// Local interface.
        interface: String,
    },
    /// A management address property that is not an address of its family.
    #[error("{property} on {interface} is not an address: {value:?}")]
    BadAddress {
        /// Local interface.
        interface: String,
        /// `ManagementAddressIPv4` or `ManagementAddressIPv6`.
        property: &'static str,
        /// The text.
        value: String,
    },
}

/// The string TLVs this source reads; other properties (subtypes, capabilities, VLAN) are
/// ignored whatever their type.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tlvs {
    /// `ChassisId`.
    pub chassis_id: String,
    /// `SystemName`.
    pub system_name: String,
    /// `ManagementAddressIPv4`.
    pub ipv4: String,
    /// `ManagementAddressIPv6`.
    pub ipv6: String,
}

impl Tlvs {
    /// Picks the string properties out of a `GetAll` / `InterfacesAdded` dictionary; a
    /// property of another type counts as absent.
    pub fn from_properties(props: &HashMap<String, OwnedValue>) -> Tlvs {
        let text = |name: &str| {
            props
                .get(name)
                .and_then(|v| <&str>::try_from(v).ok())
                .unwrap_or_default()
                .trim()
                .to_owned()
        };
        Tlvs {
            chassis_id: text("ChassisId"),
            system_name: text("SystemName"),
            ipv4: text("ManagementAddressIPv4"),
            ipv6: text("ManagementAddressIPv6"),
        }
    }

    /// The neighbour these TLVs describe on `interface`.
    ///
    /// # Errors
    /// [`InvalidTlvs`] when there is no chassis id or an address does not parse as its
    /// family (an empty address property just means "not advertised").
    pub fn neighbour(&self, interface: &str) -> Result<Neighbour, InvalidTlvs> {
        if self.chassis_id.is_empty() {
            return Err(InvalidTlvs::NoChassisId {
                interface: interface.to_owned(),
            });
        }
        let mut addresses = Vec::new();
        for (property, text, v4) in [
            ("ManagementAddressIPv6", &self.ipv6, false),
            ("ManagementAddressIPv4", &self.ipv4, true),
        ] {
            if text.is_empty() {
                continue;
            }
            let bad = || InvalidTlvs::BadAddress {
                interface: interface.to_owned(),
                property,
                value: text.clone(),
            };
            let ip: IpAddr = match text.parse() {
                Ok(ip @ IpAddr::V4(_)) if v4 => ip,
                Ok(ip @ IpAddr::V6(_)) if !v4 => ip,
                _ => return Err(bad()),
            };
            addresses.push(ip);
        }
        Ok(Neighbour {
            interface: interface.to_owned(),
            chassis_id: self.chassis_id.clone(),
            system_name: (!self.system_name.is_empty()).then(|| self.system_name.clone()),
            addresses,
            port: None,
        })
    }
}

/// Reads TLVs one by one, for a service without an ObjectManager.
#[zbus::proxy(
    interface = "xyz.openbmc_project.Network.LLDP.TLVs",
    default_service = "xyz.openbmc_project.LLDP"
)]
trait TlvsObject {
    /// `ChassisId`.
    #[zbus(property, name = "ChassisId")]
    fn chassis_id(&self) -> zbus::Result<String>;
    /// `SystemName`.
    #[zbus(property, name = "SystemName")]
    fn system_name(&self) -> zbus::Result<String>;
    /// `ManagementAddressIPv4`.
    #[zbus(property, name = "ManagementAddressIPv4")]
    fn management_address_ipv4(&self) -> zbus::Result<String>;
    /// `ManagementAddressIPv6`.
    #[zbus(property, name = "ManagementAddressIPv6")]
    fn management_address_ipv6(&self) -> zbus::Result<String>;
}

/// phosphor-networkd's LLDP objects as a discovery source.
#[derive(Clone, Debug)]
pub struct LldpDbus {
    address: Option<String>,
    interface: String,
    trusted: TrustedUsers,
}

impl LldpDbus {
    /// Reads the service on the bus at `address` (`None`: the system bus); `interface` is
    /// this BMC's inter-BMC interface, read directly when the service has no ObjectManager.
    /// Only an owner of the service running as one of `trusted` is believed.
    pub fn new(address: Option<String>, interface: String, trusted: TrustedUsers) -> Self {
        LldpDbus {
            address,
            interface,
            trusted,
        }
    }

    async fn connect(&self) -> zbus::Result<zbus::Connection> {
        match &self.address {
            None => zbus::Connection::system().await,
            Some(a) => {
                zbus::connection::Builder::address(a.as_str())?
                    .build()
                    .await
            }
        }
    }

    async fn run_inner(
        self,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) -> Result<(), Error> {
        let mut known = Known::default();
        let mut backoff = Backoff::new(RECONNECT_INITIAL, RECONNECT_MAX);
        loop {
            let outcome = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                o = self.session(&events, &mut known, &mut backoff) => o,
            };
            match outcome {
                Ok(()) => return Ok(()),
                Err(e) => {
                    tracing::warn!(error = %crate::kit::ErrorChain(&e), "LLDP D-Bus source: bus problem; reconnecting");
                    // The bus is gone: so is what we knew through it.
                    if known.clear(&events).await.is_err() {
                        return Ok(());
                    }
                }
            }
            let delay = backoff.next_delay(OsRng.next_u32());
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One bus connection: `Ok` when the event receiver is gone, `Err` when the bus is.
    async fn session(
        &self,
        events: &mpsc::Sender<Event>,
        known: &mut Known,
        backoff: &mut Backoff,
    ) -> zbus::Result<()> {
        let conn = self.connect().await?;
        backoff.reset();
        // Subscribe to owner changes before asking who the owner is, so none is missed.
        let owner_rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender("org.freedesktop.DBus")?
            .path("/org/freedesktop/DBus")?
            .interface("org.freedesktop.DBus")?
            .member("NameOwnerChanged")?
            .arg(0, SERVICE)?
            .build();
        let mut owner_changes =
            MessageStream::for_match_rule(owner_rule, &conn, Some(QUEUE)).await?;
        let dbus = DBusProxy::new(&conn).await?;
        let mut owner = match dbus.get_name_owner(BusName::try_from(SERVICE)?).await {
            Ok(o) => self.believed(&dbus, o).await,
            Err(zbus::fdo::Error::NameHasNoOwner(_)) => None,
            Err(e) => return Err(e.into()),
        };
        loop {
            let mut signals = match &owner {
                Some(o) => {
                    tracing::info!(owner = %o, "reading LLDP neighbours from {SERVICE}");
                    let s = self.subscribe(&conn, o).await?;
                    let read = self.read_all(&conn, o).await;
                    if known.replace_all(read, events).await.is_err() {
                        return Ok(());
                    }
                    Some(s)
                }
                None => {
                    tracing::info!("{SERVICE} is not running; waiting for it");
                    None
                }
            };
            // Follow this owner until it changes.
            loop {
                tokio::select! {
                    msg = owner_changes.next() => {
                        let msg = msg.ok_or(zbus::Error::InputOutput(std::sync::Arc::new(
                            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "bus connection closed"),
                        )))??;
                        let (_, _, new): (String, String, String) = msg.body().deserialize()?;
                        let new = (!new.is_empty()).then(|| OwnedUniqueName::try_from(new)).transpose()?;
                        let new = match new {
                            Some(o) => self.believed(&dbus, o).await,
                            None => None,
                        };
                        if new != owner {
                            tracing::info!(old = ?owner.as_ref().map(ToString::to_string), new = ?new.as_ref().map(ToString::to_string), "{SERVICE} changed owner");
                            owner = new;
                            if known.clear(events).await.is_err() {
                                return Ok(());
                            }
                            break;
                        }
                    }
                    msg = next_signal(&mut signals) => {
                        let Some(msg) = msg else {
                            return Err(zbus::Error::InputOutput(std::sync::Arc::new(
                                std::io::Error::new(std::io::ErrorKind::BrokenPipe, "bus connection closed"),
                            )));
                        };
                        let msg = msg?;
                        if self.signal(&msg, owner.as_ref(), known, events).await.is_err() {
                            return Ok(());
                        }
                    }
                }
            }
            drop(signals.take());
        }
    }

    /// `owner` if it runs as a trusted user; otherwise `None` (as if the service were not
    /// running), with one journal line.
    async fn believed(
        &self,
        dbus: &DBusProxy<'_>,
        owner: OwnedUniqueName,
    ) -> Option<OwnedUniqueName> {
        match owner::check(dbus, SERVICE, &owner, &self.trusted).await {
            Ok(()) => Some(owner),
            Err(e) => {
                tracing::warn!(error = %crate::kit::ErrorChain(&e), "ignoring LLDP neighbours from an untrusted owner");
                None
            }
        }
    }

    /// ObjectManager signals from `owner`'s manager at (or under) [`ROOT`]; the object path
    /// they carry is checked with [`receive_interface`]. (`arg0path='{ROOT}/'` would say the
    /// same to the bus, but zbus matches `arg0path` locally by equality, so it would drop
    /// every signal.)
    async fn subscribe(
        &self,
        conn: &zbus::Connection,
        owner: &OwnedUniqueName,
    ) -> zbus::Result<MessageStream> {
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .sender(owner.as_ref())?
            .path_namespace(ROOT)?
            .interface(OBJECT_MANAGER)?
            .build();
        MessageStream::for_match_rule(rule, conn, Some(QUEUE)).await
    }

    /// Every receive object `owner` has now. A read that fails is logged and counts as no
    /// neighbours: the signals that follow fill them in.
    async fn read_all(&self, conn: &zbus::Connection, owner: &OwnedUniqueName) -> Vec<Neighbour> {
        let managed = async {
            let om = ObjectManagerProxy::builder(conn)
                .destination(owner.as_ref())?
                .path(ROOT)?
                .build()
                .await?;
            om.get_managed_objects().await.map_err(zbus::Error::from)
        };
        match tokio::time::timeout(READ_TIMEOUT, managed).await {
            Ok(Ok(objects)) => objects
                .iter()
                .filter_map(|(path, ifaces)| {
                    let iface = receive_interface(path.as_str())?;
                    let props = ifaces.get(TLVS_INTERFACE)?;
                    // zbus gives interface names as keys of their own type.
                    let props: HashMap<String, OwnedValue> = props
                        .iter()
                        .filter_map(|(k, v)| v.try_clone().ok().map(|v| (k.clone(), v)))
                        .collect();
                    usable(iface, &props)
                })
                .collect(),
            Ok(Err(e)) => {
                tracing::info!(error = %crate::kit::ErrorChain(&e), "GetManagedObjects failed; reading this BMC's receive object");
                self.read_one(conn, owner).await.into_iter().collect()
            }
            Err(_) => {
                tracing::warn!("{SERVICE} did not answer GetManagedObjects in time");
                Vec::new()
            }
        }
    }

    async fn read_one(
        &self,
        conn: &zbus::Connection,
        owner: &OwnedUniqueName,
    ) -> Option<Neighbour> {
        let path = receive_path(&self.interface);
        let read = async {
            let proxy = TlvsObjectProxy::builder(conn)
                .destination(owner.as_ref())?
                .path(path.as_str())?
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await?;
            zbus::Result::Ok(Tlvs {
                chassis_id: proxy.chassis_id().await?.trim().to_owned(),
                system_name: proxy
                    .system_name()
                    .await
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
                ipv4: proxy
                    .management_address_ipv4()
                    .await
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
                ipv6: proxy
                    .management_address_ipv6()
                    .await
                    .unwrap_or_default()
                    .trim()
                    .to_owned(),
            })
        };
        match tokio::time::timeout(READ_TIMEOUT, read).await {
            Ok(Ok(tlvs)) => match tlvs.neighbour(&self.interface) {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::debug!(error = %crate::kit::ErrorChain(&e), "no usable neighbour at {path}");
                    None
                }
            },
            Ok(Err(e)) => {
                tracing::debug!(error = %crate::kit::ErrorChain(&e), "no receive object at {path}");
                None
            }
            Err(_) => {
                tracing::warn!("{SERVICE} did not answer for {path} in time");
                None
            }
        }
    }

    /// Applies one ObjectManager signal; `Err` only when the event receiver is gone.
    async fn signal(
        &self,
        msg: &zbus::Message,
        owner: Option<&OwnedUniqueName>,
        known: &mut Known,
        events: &mpsc::Sender<Event>,
    ) -> Result<(), Closed> {
        let header = msg.header();
        // The match rule already names the owner; a message from anyone else is dropped here
        // too, in case a rule was shared or the owner changed in between.
        let from_owner = matches!((header.sender(), owner), (Some(s), Some(o)) if s == o.inner());
        if !from_owner {
            return Ok(());
        }
        match header.member().map(|m| m.as_str()) {
            Some("InterfacesAdded") => {
                type Added = (
                    OwnedObjectPath,
                    HashMap<String, HashMap<String, OwnedValue>>,
                );
                let Ok((path, ifaces)) = msg.body().deserialize::<Added>() else {
                    tracing::warn!("ignoring a malformed InterfacesAdded from {SERVICE}");
                    return Ok(());
                };
                let Some(iface) = receive_interface(path.as_str()) else {
                    return Ok(());
                };
                let Some(props) = ifaces.get(TLVS_INTERFACE) else {
                    return Ok(());
                };
                match usable(iface, props) {
                    Some(n) => known.seen(n, events).await,
                    None => known.lost(iface, events).await,
                }
            }
            Some("InterfacesRemoved") => {
                let Ok((path, ifaces)) = msg.body().deserialize::<(OwnedObjectPath, Vec<String>)>()
                else {
                    tracing::warn!("ignoring a malformed InterfacesRemoved from {SERVICE}");
                    return Ok(());
                };
                match receive_interface(path.as_str()) {
                    Some(iface) if ifaces.iter().any(|i| i == TLVS_INTERFACE) => {
                        known.lost(iface, events).await
                    }
                    _ => Ok(()),
                }
            }
            _ => Ok(()),
        }
    }
}

fn usable(iface: &str, props: &HashMap<String, OwnedValue>) -> Option<Neighbour> {
    match Tlvs::from_properties(props).neighbour(iface) {
        Ok(n) => Some(n),
        Err(e @ InvalidTlvs::NoChassisId { .. }) => {
            tracing::debug!(error = %crate::kit::ErrorChain(&e), "receive object without a neighbour");
            None
        }
        Err(e) => {
            tracing::warn!(error = %crate::kit::ErrorChain(&e), "ignoring unusable LLDP TLVs");
            None
        }
    }
}

async fn next_signal(signals: &mut Option<MessageStream>) -> Option<zbus::Result<zbus::Message>> {
    match signals {
        Some(s) => s.next().await,
        None => std::future::pending().await,
    }
}

type Closed = mpsc::error::SendError<Event>;

/// One neighbour per interface, as networkd models it.
#[derive(Default)]
struct Known(BTreeMap<String, Neighbour>);

impl Known {
    async fn seen(&mut self, n: Neighbour, events: &mpsc::Sender<Event>) -> Result<(), Closed> {
        if let Some(old) = self.0.get(&n.interface)
            && old.chassis_id != n.chassis_id
        {
            events
                .send(Event::Lost {
                    interface: old.interface.clone(),
                    chassis_id: old.chassis_id.clone(),
                })
                .await?;
        }
        self.0.insert(n.interface.clone(), n.clone());
        events.send(Event::Seen(n)).await
    }

    async fn lost(&mut self, iface: &str, events: &mpsc::Sender<Event>) -> Result<(), Closed> {
        match self.0.remove(iface) {
            Some(old) => {
                events
                    .send(Event::Lost {
                        interface: old.interface,
                        chassis_id: old.chassis_id,
                    })
                    .await
            }
            None => Ok(()),
        }
    }

    async fn clear(&mut self, events: &mpsc::Sender<Event>) -> Result<(), Closed> {
        let ifaces: Vec<String> = self.0.keys().cloned().collect();
        for iface in ifaces {
            self.lost(&iface, events).await?;
        }
        Ok(())
    }

    async fn replace_all(
        &mut self,
        now: Vec<Neighbour>,
        events: &mpsc::Sender<Event>,
    ) -> Result<(), Closed> {
        let gone: Vec<String> = self
            .0
            .keys()
            .filter(|i| !now.iter().any(|n| &n.interface == *i))
            .cloned()
            .collect();
        for iface in gone {
            self.lost(&iface, events).await?;
        }
        for n in now {
            self.seen(n, events).await?;
        }
        Ok(())
    }
}

impl Source for LldpDbus {
    fn name(&self) -> &'static str {
        "networkd"
    }

    fn run(
        self: Box<Self>,
        events: mpsc::Sender<Event>,
        cancel: CancellationToken,
    ) -> SourceFuture {
        Box::pin(self.run_inner(events, cancel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zbus::zvariant::Value;

    fn props(pairs: &[(&str, Value<'_>)]) -> HashMap<String, OwnedValue> {
        pairs
            .iter()
            .map(|(k, v)| {
                (
                    (*k).to_owned(),
                    OwnedValue::try_from(v.try_clone().unwrap()).unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn receive_paths_only() {
        assert_eq!(
            receive_interface("/xyz/openbmc_project/network/lldp/eth1/receive"),
            Some("eth1")
        );
        assert_eq!(
            receive_path("eth0"),
            "/xyz/openbmc_project/network/lldp/eth0/receive"
        );
        for other in [
            "/xyz/openbmc_project/network/lldp/eth1/transmit",
            "/xyz/openbmc_project/network/lldp/eth1",
            "/xyz/openbmc_project/network/lldp//receive",
            "/xyz/openbmc_project/network/lldp/a/b/receive",
            "/xyz/openbmc_project/network/lldpx/eth1/receive",
            "/evil/xyz/openbmc_project/network/lldp/eth1/receive",
        ] {
            assert_eq!(receive_interface(other), None, "{other}");
        }
    }

    #[test]
    fn tlvs_with_both_families_and_other_typed_properties() {
        let p = props(&[
            ("ChassisId", Value::from("de:6e:6b:dc:74:90")),
            (
                "ChassisIdSubtype",
                Value::from("xyz.openbmc_project.Network.LLDP.TLVs.IEEE802IdSubtype.MacAddr"),
            ),
            ("SystemName", Value::from("bmc-b")),
            ("ManagementAddressIPv4", Value::from("127.0.0.1")),
            ("ManagementAddressIPv6", Value::from("fd00:b3c::b")),
            ("ManagementVlanId", Value::from(0u16)),
            ("SystemCapabilities", Value::from(vec!["Station"])),
        ]);
        let n = Tlvs::from_properties(&p).neighbour("eth0").unwrap();
        assert_eq!(n.system_name.as_deref(), Some("bmc-b"));
        assert_eq!(
            n.addresses,
            vec![
                "fd00:b3c::b".parse::<IpAddr>().unwrap(),
                "127.0.0.1".parse().unwrap()
            ]
        );
        assert_eq!(n.preferred_address(), Some("fd00:b3c::b".parse().unwrap()));
    }

    #[test]
    fn ipv4_only_neighbour_as_the_anchor_knew_it() {
        let p = props(&[
            ("ChassisId", Value::from("c")),
            ("SystemName", Value::from("")),
            ("ManagementAddressIPv4", Value::from("127.0.0.1")),
        ]);
        let n = Tlvs::from_properties(&p).neighbour("eth1").unwrap();
        assert_eq!(n.system_name, None);
        assert_eq!(n.preferred_address(), Some("127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn bad_tlvs_are_typed_errors() {
        let no_chassis = props(&[("SystemName", Value::from("b"))]);
        assert!(matches!(
            Tlvs::from_properties(&no_chassis).neighbour("e"),
            Err(InvalidTlvs::NoChassisId { .. })
        ));
        // A chassis id of the wrong type counts as absent.
        let wrong_type = props(&[("ChassisId", Value::from(7u32))]);
        assert!(matches!(
            Tlvs::from_properties(&wrong_type).neighbour("e"),
            Err(InvalidTlvs::NoChassisId { .. })
        ));
        for (prop, value) in [
            ("ManagementAddressIPv4", "fd00::1"),
            ("ManagementAddressIPv6", "127.0.0.1"),
            ("ManagementAddressIPv4", "not an address"),
        ] {
            let p = props(&[("ChassisId", Value::from("c")), (prop, Value::from(value))]);
            assert!(
                matches!(
                    Tlvs::from_properties(&p).neighbour("e"),
                    Err(InvalidTlvs::BadAddress { .. })
                ),
                "{prop}={value}"
            );
        }
    }
}
