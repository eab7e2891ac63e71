//! The pairing model: what a BMC knows about a peer, as persisted and as published.
//!
//! Plain data with its own validation; the rules that change it are in
//! [`super::machine`].

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::keys::Fingerprint;

/// How peers come to be trusted (DESIGN.md §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum TrustMode {
    /// Self-provisioned BMCs: a peer is accepted only after an operator named it on this
    /// BMC, and the identity it presents then is pinned. Never silent trust-on-first-use.
    #[serde(rename = "first-contact")]
    FirstContact,
    /// A peer whose chain verifies to an installed anchor (and passes attestation) is
    /// accepted from either side.
    #[serde(rename = "anchored")]
    Anchored,
}

impl TrustMode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TrustMode::FirstContact => "first-contact",
            TrustMode::Anchored => "anchored",
        }
    }
}

/// True if `name` is usable as a BMC or peer name: 1–63 characters of `[A-Za-z0-9-]`, not
/// starting or ending with `-` (a DNS label, so it can be a certificate SAN).
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The PDI `PeerConnectionStatus` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConnState {
    /// Nothing known yet.
    NotDetermined,
    /// Trying to establish the session.
    InProgress,
    /// A session is up and heartbeats flow.
    Connected,
    /// No session.
    NotConnected,
}

impl ConnState {
    /// Explicit ranking for aggregation; the enum order (PDI's YAML order) is not a ranking.
    pub fn priority(self) -> u8 {
        match self {
            ConnState::Connected => 3,
            ConnState::InProgress => 2,
            ConnState::NotConnected => 1,
            ConnState::NotDetermined => 0,
        }
    }

    /// The higher-priority of two states.
    pub fn best(self, other: ConnState) -> ConnState {
        if other.priority() > self.priority() {
            other
        } else {
            self
        }
    }

    /// The value name (`Connected`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::NotDetermined => "NotDetermined",
            ConnState::InProgress => "InProgress",
            ConnState::Connected => "Connected",
            ConnState::NotConnected => "NotConnected",
        }
    }
}

/// The last SPDM attestation result for a peer (as `bmc-attestation` reports it). The D-Bus
/// spelling is [`AttestationOutcome::as_str`]; [`FromStr`] reads it back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttestationOutcome {
    /// Paired without attestation (`"attestation": "off"`), or not yet attested.
    #[default]
    NotAttested,
    /// Identity proven, chain trusted, measurements matched or not appraised.
    Trusted,
    /// As Trusted, but the Audit policy recorded measurement mismatches.
    TrustedWithFindings,
    /// The pinned identity proved itself but was refused (Enforce-mode measurement
    /// mismatch). The peer is quarantined: pin kept, no sessions, until a Reattest passes.
    Rejected,
}

impl AttestationOutcome {
    /// The value name (`Trusted`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AttestationOutcome::NotAttested => "NotAttested",
            AttestationOutcome::Trusted => "Trusted",
            AttestationOutcome::TrustedWithFindings => "TrustedWithFindings",
            AttestationOutcome::Rejected => "Rejected",
        }
    }

    /// True unless the peer is quarantined by an authenticated rejection.
    pub fn admits(self) -> bool {
        self != AttestationOutcome::Rejected
    }

    /// True for a verdict that may pin a new peer: identity proven and appraisal passed (or
    /// only recorded, in Audit mode). `NotAttested` admits a pinned peer but pins nobody.
    pub fn vouches(self) -> bool {
        matches!(
            self,
            AttestationOutcome::Trusted | AttestationOutcome::TrustedWithFindings
        )
    }

    /// Every value, in declaration order.
    pub const ALL: [AttestationOutcome; 4] = [
        AttestationOutcome::NotAttested,
        AttestationOutcome::Trusted,
        AttestationOutcome::TrustedWithFindings,
        AttestationOutcome::Rejected,
    ];
}

/// An attestation outcome name that is not one of [`AttestationOutcome::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown attestation outcome {0:?}")]
pub struct UnknownOutcome(pub String);

impl FromStr for AttestationOutcome {
    type Err = UnknownOutcome;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AttestationOutcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| UnknownOutcome(s.to_owned()))
    }
}

/// A peer's id: the last element of its D-Bus object path (`[A-Za-z0-9_]`, 1..=64).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PeerId(String);

impl PeerId {
    /// Derives an id from a peer name: `-` becomes `_`, anything else non-alphanumeric is
    /// dropped; empty results become `peer`.
    pub fn from_name(name: &str) -> PeerId {
        let mut id: String = name
            .chars()
            .filter_map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '_' => Some(c),
                '-' | '.' | ':' => Some('_'),
                _ => None,
            })
            .take(48)
            .collect();
        if id.is_empty() {
            id.push_str("peer");
        }
        PeerId(id)
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PeerId {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        if !s.is_empty()
            && s.len() <= 64
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            Ok(PeerId(s))
        } else {
            Err(format!("invalid peer id {s:?}"))
        }
    }
}

impl From<PeerId> for String {
    fn from(id: PeerId) -> String {
        id.0
    }
}

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is persisted about a paired peer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRecord {
    /// Object-path id.
    pub id: PeerId,
    /// The peer's name (its certificate CN, or the name the operator used).
    pub name: String,
    /// Pairing-channel address.
    pub address: IpAddr,
    /// Pairing-channel port.
    pub port: u16,
    /// The pinned identity: SHA-256 of its leaf SPKI.
    pub fingerprint: Fingerprint,
    /// How it came to be trusted.
    pub trust_mode: TrustMode,
    /// Unix seconds when it was paired.
    pub paired_at: u64,
    /// The last attestation result.
    #[serde(default)]
    pub attestation: AttestationOutcome,
    /// Unix seconds of that attestation, 0 if never.
    #[serde(default)]
    pub attested_at: u64,
    /// The peer said `Bye { Unpaired }` in an authenticated session: its operator unpaired
    /// us. Kept (with the pin) for the operator to see; never dialled or accepted again until
    /// an operator pairs it anew.
    #[serde(default)]
    pub unpaired_by_peer: bool,
    /// The boot identifier in the peer's last `Hello`, 0 if none was seen yet. Another value
    /// in a later `Hello` means the peer rebooted, which asks for a re-attestation.
    #[serde(default)]
    pub boot_id: u64,
    /// The key that issued its identity in the chain SPDM last verified (its per-BMC CA
    /// key): what a group authority certifies for it, and nothing else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_key: Option<Fingerprint>,
}

impl PeerRecord {
    /// Its pairing-channel endpoint.
    pub fn endpoint(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

/// The persisted state file, `state.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persisted {
    /// Schema version.
    pub version: u32,
    /// `ProvisionPeer("self")` has succeeded and the identity has not been lost since.
    pub provisioned: bool,
    /// Last known good wall-clock time (unix seconds): the clock floor after a reboot.
    pub time_floor: u64,
    /// Paired peers.
    pub peers: Vec<PeerRecord>,
    /// Identities we unpaired that have not been told yet: the next session they open to us
    /// is answered with `Bye { Unpaired }` instead of `Alive`, and they leave this list.
    #[serde(default)]
    pub farewells: Vec<Fingerprint>,
    /// Group authority: the group list as last issued (members and revocations).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_list: Option<super::group::GroupList>,
    /// Group member: the group this BMC joined, and the newest list it verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub membership: Option<super::group::Membership>,
}

/// Current schema version of [`Persisted`].
pub const STATE_VERSION: u32 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_through_their_names() {
        for o in AttestationOutcome::ALL {
            assert_eq!(o.as_str().parse::<AttestationOutcome>(), Ok(o));
        }
        assert!("trusted".parse::<AttestationOutcome>().is_err());
        assert!("".parse::<AttestationOutcome>().is_err());
    }

    #[test]
    fn peer_ids_are_object_path_elements() {
        assert_eq!(PeerId::from_name("bmc-b.lab:1").as_str(), "bmc_b_lab_1");
        assert_eq!(PeerId::from_name("***").as_str(), "peer");
        assert!(PeerId::try_from("a/b".to_owned()).is_err());
        assert!(PeerId::try_from(String::new()).is_err());
        assert!(PeerId::try_from("x".repeat(65)).is_err());
    }
}
