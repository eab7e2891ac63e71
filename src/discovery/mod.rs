//! Peer discovery: where paired (or to-be-paired) BMCs can be reached.
//!
//! Three sources feed one [`Event`] type: phosphor-networkd's LLDP objects on D-Bus, lldpd
//! directly, and static peers from the config. Discovery is a hint, never trust: an address
//! learnt here only tells the pairing driver where to dial; the pinned identity decides
//! whether what answers is accepted. This module decides nothing about pairing.

pub mod lldp_dbus;
pub mod lldpd;
pub mod static_peers;

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// An LLDP (or configured) neighbour.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neighbour {
    /// Local interface it was seen on.
    pub interface: String,
    /// LLDP chassis id (for static peers: `static:<name>`); with `interface`, the key.
    pub chassis_id: String,
    /// LLDP SystemName, if advertised.
    pub system_name: Option<String>,
    /// Management addresses it advertises (IPv4 and/or IPv6), in advertised order.
    pub addresses: Vec<IpAddr>,
    /// Pairing-channel port, when known (static peers); LLDP does not carry it.
    pub port: Option<u16>,
}

impl Neighbour {
    /// The address to dial: a routable IPv6 (ULA or global) first, then IPv4, then IPv6
    /// link-local (which needs the interface as scope).
    pub fn preferred_address(&self) -> Option<IpAddr> {
        let v6 = |a: &&IpAddr| matches!(a, IpAddr::V6(v) if !v.is_unicast_link_local() && !v.is_loopback() && !v.is_unspecified());
        let v4 = |a: &&IpAddr| matches!(a, IpAddr::V4(v) if !v.is_unspecified() && !v.is_broadcast() && !v.is_multicast());
        let ll = |a: &&IpAddr| matches!(a, IpAddr::V6(v) if v.is_unicast_link_local());
        self.addresses
            .iter()
            .find(v6)
            .or_else(|| self.addresses.iter().find(v4))
            .or_else(|| self.addresses.iter().find(ll))
            .copied()
    }
}

/// What a source reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A neighbour appeared, or something it advertises changed.
    Seen(Neighbour),
    /// A neighbour is gone (LLDP TTL expired, interface down, receive object removed).
    Lost {
        /// Local interface.
        interface: String,
        /// Its chassis id.
        chassis_id: String,
    },
}

/// Why a source stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The source's backend (lldpd, the LLDP D-Bus service) cannot be used.
    #[error("{source_name} discovery unavailable: {reason}")]
    Unavailable {
        /// Which source.
        source_name: &'static str,
        /// Why.
        reason: String,
    },
}

/// The future a [`Source`] runs as.
pub type SourceFuture = Pin<Box<dyn Future<Output = Result<(), Error>> + Send>>;

/// A discovery source: reports neighbours until cancelled. Sources only describe what they
/// see; deciding anything is the pairing driver's job.
pub trait Source: Send {
    /// Short name for logs (`lldpd`, `networkd`, `static`).
    fn name(&self) -> &'static str;

    /// Runs until `cancel`, sending [`Event`]s. Returns an error only when the source cannot
    /// work at all (its backend is missing); transient failures are retried inside.
    fn run(self: Box<Self>, events: mpsc::Sender<Event>, cancel: CancellationToken)
    -> SourceFuture;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferred_address_order() {
        let n = |addrs: &[&str]| Neighbour {
            interface: "eth1".into(),
            chassis_id: "c".into(),
            system_name: None,
            addresses: addrs.iter().map(|a| a.parse().unwrap()).collect(),
            port: None,
        };
        assert_eq!(
            n(&["fe80::1", "192.0.2.1", "fd00::2"]).preferred_address(),
            Some("fd00::2".parse().unwrap())
        );
        assert_eq!(
            n(&["fe80::1", "192.0.2.1"]).preferred_address(),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            n(&["fe80::1"]).preferred_address(),
            Some("fe80::1".parse().unwrap())
        );
        assert_eq!(n(&["0.0.0.0", "::"]).preferred_address(), None);
    }
}
