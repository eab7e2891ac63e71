//! `ProvisionPeer(bmcId)`: what the argument names, and why a call is refused.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use super::model::is_valid_name;

/// The peer an operator asked to pair with.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Candidate {
    /// Where to reach it.
    pub endpoint: SocketAddr,
    /// The name it was asked for by, if any.
    pub name: Option<String>,
}

/// What `ProvisionPeer(bmcId)` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// `"self"`: create or re-use this BMC's identity.
    SelfIdentity,
    /// Pair with that peer.
    Peer(Candidate),
}

/// Why a `ProvisionPeer` call is refused. Each maps to one
/// `xyz.openbmc_project.Common.Error.*` name.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The argument is malformed.
    #[error("{0}")]
    InvalidArgument(String),
    /// Not allowed in this state (e.g. not self-provisioned yet).
    #[error("{0}")]
    NotAllowed(String),
    /// The named peer is not known.
    #[error("{0}")]
    ResourceNotFound(String),
    /// Temporarily impossible (e.g. the same pairing is already running).
    #[error("{0}")]
    Unavailable(String),
}

/// Names `ProvisionPeer` can resolve: static peers and discovered neighbours.
#[derive(Clone, Debug, Default)]
pub struct NameBook {
    /// Name → endpoint, from config and discovery (discovery entries added by later code).
    pub names: BTreeMap<String, SocketAddr>,
    /// Neighbours seen by LLDP on the configured interface.
    pub neighbours: Vec<(String, SocketAddr)>,
    /// The interface `"peer"` refers to (for messages).
    pub interface: String,
}

/// Longest `bmcId` accepted.
pub const MAX_ID_LEN: usize = 255;

/// Parses a `ProvisionPeer` argument.
///
/// # Errors
/// [`Refusal`] for anything that is not `self`, `peer`, a known name, `ip` or `ip:port`.
pub fn parse_request(bmc_id: &str, default_port: u16, book: &NameBook) -> Result<Request, Refusal> {
    if bmc_id.is_empty() {
        return Err(Refusal::InvalidArgument("bmcId must not be empty".into()));
    }
    if bmc_id.len() > MAX_ID_LEN {
        return Err(Refusal::InvalidArgument(format!(
            "bmcId longer than {MAX_ID_LEN} bytes"
        )));
    }
    if bmc_id == "self" {
        return Ok(Request::SelfIdentity);
    }
    if bmc_id == "peer" {
        return match book.neighbours.as_slice() {
            [(name, endpoint)] => Ok(Request::Peer(Candidate {
                endpoint: *endpoint,
                name: Some(name.clone()),
            })),
            [] => Err(Refusal::ResourceNotFound(format!(
                "no LLDP neighbour with a management address on {}",
                book.interface
            ))),
            many => Err(Refusal::NotAllowed(format!(
                "{} LLDP neighbours on {}; name one of them",
                many.len(),
                book.interface
            ))),
        };
    }
    if let Ok(addr) = bmc_id.parse::<SocketAddr>() {
        return endpoint_target(addr);
    }
    if let Ok(ip) = bmc_id.parse::<IpAddr>() {
        return endpoint_target(SocketAddr::new(ip, default_port));
    }
    if is_valid_name(bmc_id) {
        if let Some(endpoint) = book.names.get(bmc_id) {
            return Ok(Request::Peer(Candidate {
                endpoint: *endpoint,
                name: Some(bmc_id.to_owned()),
            }));
        }
        // All-digit "names" are typos of addresses, not names.
        if !bmc_id.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Refusal::ResourceNotFound(format!(
                "no peer named {bmc_id:?} is known"
            )));
        }
    }
    Err(Refusal::InvalidArgument(format!(
        "{bmc_id:?} is not \"self\", \"peer\", a peer name, ip or ip:port"
    )))
}

fn endpoint_target(addr: SocketAddr) -> Result<Request, Refusal> {
    let ip = addr.ip();
    if addr.port() == 0 {
        return Err(Refusal::InvalidArgument("port 0 is not usable".into()));
    }
    if ip.is_unspecified() || ip.is_multicast() || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast())
    {
        return Err(Refusal::InvalidArgument(format!(
            "{ip} is not a unicast address"
        )));
    }
    Ok(Request::Peer(Candidate {
        endpoint: addr,
        name: None,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_request_covers_every_form() {
        let mut book = NameBook {
            interface: "eth1".into(),
            ..NameBook::default()
        };
        book.names
            .insert("skiboards".into(), "127.0.0.1:9000".parse().unwrap());
        let p = |s: &str| parse_request(s, 8090, &book);
        assert_eq!(p("self"), Ok(Request::SelfIdentity));
        assert_eq!(
            p("127.0.0.1"),
            Ok(Request::Peer(Candidate {
                endpoint: "127.0.0.1:8090".parse().unwrap(),
                name: None
            }))
        );
        assert_eq!(
            p("[::1]:99"),
            Ok(Request::Peer(Candidate {
                endpoint: "[::1]:99".parse().unwrap(),
                name: None
            }))
        );
        assert_eq!(
            p("skiboards"),
            Ok(Request::Peer(Candidate {
                endpoint: "127.0.0.1:9000".parse().unwrap(),
                name: Some("skiboards".into())
            }))
        );
        assert!(matches!(
            p("unknown-bmc"),
            Err(Refusal::ResourceNotFound(_))
        ));
        assert!(matches!(p("peer"), Err(Refusal::ResourceNotFound(_))));
        for bad in [
            "",
            "1.2.3.4:99999",
            "1.2.3.4:0",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
            "a b",
            "12345",
            "1.2.3",
            "x/y",
            &"a".repeat(300),
        ] {
            assert!(
                matches!(p(bad), Err(Refusal::InvalidArgument(_))),
                "{bad:?} should be InvalidArgument, got {:?}",
                p(bad)
            );
        }
        book.neighbours = vec![("b".into(), "[fd00::2]:8090".parse().unwrap())];
        assert!(matches!(
            parse_request("peer", 8090, &book),
            Ok(Request::Peer(_))
        ));
        book.neighbours
            .push(("c".into(), "[fd00::3]:8090".parse().unwrap()));
        assert!(matches!(
            parse_request("peer", 8090, &book),
            Err(Refusal::NotAllowed(_))
        ));
    }
}
