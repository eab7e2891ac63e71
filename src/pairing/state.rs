//! The pairing state machine. Pure: no I/O, no clock reads, no tokio.
//!
//! Owns what this BMC believes: whether it is provisioned, which peers are paired (their
//! pinned identity, name, address) and the state of each peer's incoming and outgoing
//! sessions. Inputs are operator commands and link/identity events; outputs are
//! [`Action`]s the driver carries out (persist, dial, probe, publish, signal).
//!
//! Invariants (property-tested below):
//! - only an operator command ([`Pairing::provision`], [`Pairing::unpair`]) or a probe the
//!   operator started can add or change a pin; no link event ever does;
//! - a failed probe never changes `provisioned` or the pins;
//! - the aggregate state is the best per-direction state by the explicit priority
//!   Connected > InProgress > NotConnected > NotDetermined, never by enum order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::config::{TrustMode, is_valid_name};
use crate::identity::Fingerprint;

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

/// The last SPDM attestation result for a peer (as `bmc-attestation` reports it).
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
}

/// Current schema version of [`Persisted`].
pub const STATE_VERSION: u32 = 1;

/// The peer an operator asked to pair with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
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
    Peer(Target),
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
            [(name, endpoint)] => Ok(Request::Peer(Target {
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
            return Ok(Request::Peer(Target {
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
    Ok(Request::Peer(Target {
        endpoint: addr,
        name: None,
    }))
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the identity if absent or invalid, else re-use it; report back with
    /// [`Pairing::identity_ready`] or [`Pairing::identity_failed`].
    EnsureIdentity,
    /// First contact with `target`: learn the identity it proves; report back with
    /// [`Pairing::probe_succeeded`] or [`Pairing::probe_failed`].
    Probe(Target),
    /// Write [`Pairing::persisted`] to disk.
    Persist,
    /// Make the listener's pin set equal [`Pairing::pins`] and cut sessions of removed pins.
    SyncPins,
    /// Start (or restart) the dialler for a peer.
    StartLink {
        /// The peer.
        id: PeerId,
        /// Where.
        endpoint: SocketAddr,
        /// The identity it must present.
        fingerprint: Fingerprint,
    },
    /// Stop a peer's dialler.
    StopLink(PeerId),
    /// Cut the backoff wait of a peer's dialler short: it was just seen on the link.
    Wake(PeerId),
    /// A paired peer was seen at a new address: check that its pinned identity answers
    /// there; report back with [`Pairing::peer_moved`] or [`Pairing::outgoing_refused`].
    VerifyMove {
        /// The peer.
        id: PeerId,
        /// The new address.
        endpoint: SocketAddr,
        /// The identity that must answer there.
        fingerprint: Fingerprint,
    },
    /// Publish a new snapshot (properties and peer objects).
    Publish,
    /// Emit `PeerProvisioned(b)`.
    PeerProvisioned(bool),
}

/// Live state of one paired peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// What is persisted.
    pub record: PeerRecord,
    /// State of sessions the peer opened to us.
    pub incoming: ConnState,
    /// State of our session to the peer.
    pub outgoing: ConnState,
    /// Number of incoming sessions currently up.
    pub incoming_sessions: u32,
    /// Unix seconds of the last session opening in either direction.
    pub last_seen: Option<u64>,
    /// Something answered at this peer's address with another identity, and no session with
    /// the pinned identity has opened since.
    pub identity_mismatch: bool,
}

impl Peer {
    fn new(record: PeerRecord) -> Self {
        Peer {
            record,
            incoming: ConnState::NotDetermined,
            outgoing: ConnState::NotDetermined,
            incoming_sessions: 0,
            last_seen: None,
            identity_mismatch: false,
        }
    }

    /// The higher of the two directions.
    pub fn aggregate(&self) -> ConnState {
        self.incoming.best(self.outgoing)
    }
}

/// The whole pairing state.
#[derive(Clone, Debug)]
pub struct Pairing {
    provisioned: bool,
    identity_valid: bool,
    own_fingerprint: Option<Fingerprint>,
    trust_mode: TrustMode,
    time_floor: u64,
    peers: BTreeMap<PeerId, Peer>,
    probing: BTreeSet<SocketAddr>,
}

impl Pairing {
    /// Restores state. `identity` is the fingerprint of a loaded, valid identity, or `None`
    /// when it is absent or lost; in that case the BMC is not provisioned, whatever was
    /// persisted. Returns the actions to resume (diallers for paired peers).
    pub fn restore(
        persisted: Persisted,
        identity: Option<Fingerprint>,
        trust_mode: TrustMode,
    ) -> (Self, Vec<Action>) {
        let mut pairing = Pairing {
            provisioned: persisted.provisioned && identity.is_some(),
            identity_valid: identity.is_some(),
            own_fingerprint: identity,
            trust_mode,
            time_floor: persisted.time_floor,
            peers: persisted
                .peers
                .into_iter()
                .map(|r| (r.id.clone(), Peer::new(r)))
                .collect(),
            probing: BTreeSet::new(),
        };
        let mut actions = vec![Action::SyncPins, Action::Publish];
        if persisted.provisioned && identity.is_none() {
            // The identity was lost while we were down: record it so it survives restarts.
            actions.push(Action::Persist);
        }
        actions.extend(pairing.start_links());
        if pairing.provisioned {
            for p in pairing.peers.values_mut() {
                p.outgoing = ConnState::InProgress;
            }
        }
        (pairing, actions)
    }

    fn start_links(&self) -> Vec<Action> {
        if !self.provisioned {
            return Vec::new();
        }
        self.peers
            .values()
            .filter(|p| p.record.attestation.admits())
            .map(|p| Action::StartLink {
                id: p.record.id.clone(),
                endpoint: p.record.endpoint(),
                fingerprint: p.record.fingerprint,
            })
            .collect()
    }

    /// The state to persist.
    pub fn persisted(&self) -> Persisted {
        Persisted {
            version: STATE_VERSION,
            provisioned: self.provisioned,
            time_floor: self.time_floor,
            peers: self.peers.values().map(|p| p.record.clone()).collect(),
        }
    }

    /// Raises the clock floor (never lowers it). Returns true if it moved.
    pub fn observe_time(&mut self, unix_now: u64) -> bool {
        if unix_now > self.time_floor {
            self.time_floor = unix_now;
            true
        } else {
            false
        }
    }

    /// The clock floor, unix seconds.
    pub fn time_floor(&self) -> u64 {
        self.time_floor
    }

    /// `Provisioned`.
    pub fn provisioned(&self) -> bool {
        self.provisioned
    }

    /// Paired peers.
    pub fn peers(&self) -> &BTreeMap<PeerId, Peer> {
        &self.peers
    }

    /// Every pinned identity that is admitted (a quarantined peer keeps its pin but is not
    /// accepted until it passes attestation again).
    pub fn pins(&self) -> BTreeSet<Fingerprint> {
        self.peers
            .values()
            .filter(|p| p.record.attestation.admits())
            .map(|p| p.record.fingerprint)
            .collect()
    }

    /// Every pinned identity, quarantined or not.
    pub fn all_pins(&self) -> BTreeSet<Fingerprint> {
        self.peers.values().map(|p| p.record.fingerprint).collect()
    }

    /// The PDI `PeerConnected`: the best peer's aggregate; `NotDetermined` with no peers.
    pub fn aggregate(&self) -> ConnState {
        self.peers
            .values()
            .map(Peer::aggregate)
            .fold(ConnState::NotDetermined, ConnState::best)
    }

    /// Handles `ProvisionPeer`. `Ok` means the call is accepted (its outcome follows as
    /// actions and, for peers, a `PeerProvisioned` signal); `Err` changes nothing.
    ///
    /// # Errors
    /// [`Refusal`].
    pub fn provision(&mut self, request: &Request) -> Result<Vec<Action>, Refusal> {
        match request {
            Request::SelfIdentity => Ok(vec![Action::EnsureIdentity]),
            Request::Peer(target) => {
                if !self.provisioned {
                    return Err(Refusal::NotAllowed(
                        "this BMC is not provisioned: call ProvisionPeer(\"self\") first".into(),
                    ));
                }
                if self.probing.contains(&target.endpoint) {
                    return Err(Refusal::Unavailable(format!(
                        "pairing with {} is already in progress",
                        target.endpoint
                    )));
                }
                self.probing.insert(target.endpoint);
                Ok(vec![Action::Probe(target.clone())])
            }
        }
    }

    /// The identity exists and is valid (after `EnsureIdentity` or a reload).
    pub fn identity_ready(&mut self, fingerprint: Fingerprint) -> Vec<Action> {
        let changed = self.own_fingerprint != Some(fingerprint);
        let was = self.provisioned;
        self.identity_valid = true;
        self.own_fingerprint = Some(fingerprint);
        self.provisioned = true;
        let mut actions = Vec::new();
        if !was || changed {
            actions.push(Action::Persist);
            // A new identity changes our TLS certificate: restart every dialler.
            actions.extend(self.peers.keys().map(|id| Action::StopLink(id.clone())));
            actions.extend(self.start_links());
            for p in self.peers.values_mut() {
                p.outgoing = ConnState::InProgress;
            }
        }
        actions.push(Action::Publish);
        actions
    }

    /// The identity could not be created.
    pub fn identity_failed(&mut self) -> Vec<Action> {
        vec![Action::Publish]
    }

    /// The identity was found lost or invalid (TPM cleared, blob corrupt, ...).
    pub fn identity_lost(&mut self) -> Vec<Action> {
        if !self.identity_valid && !self.provisioned {
            return Vec::new();
        }
        self.identity_valid = false;
        self.own_fingerprint = None;
        self.provisioned = false;
        let mut actions = vec![Action::Persist];
        for p in self.peers.values_mut() {
            actions.push(Action::StopLink(p.record.id.clone()));
            p.outgoing = ConnState::NotConnected;
        }
        actions.push(Action::Publish);
        actions
    }

    /// Pairing with `target` succeeded: it proved `proof` (attested, or for
    /// `"attestation": "off"` a completed TLS handshake). Pins it and reports once.
    pub fn probe_succeeded(
        &mut self,
        target: &Target,
        proof: Proof<'_>,
        unix_now: u64,
    ) -> Vec<Action> {
        self.probing.remove(&target.endpoint);
        if !self.provisioned
            || self.own_fingerprint == Some(proof.fingerprint)
            || !proof.attestation.admits()
        {
            // Provisioning was lost meanwhile, the "peer" is this BMC itself, or it was refused.
            return vec![Action::PeerProvisioned(false)];
        }
        let mut actions = self.pin(
            target.endpoint,
            target.name.as_deref(),
            &proof,
            self.trust_mode,
            unix_now,
        );
        actions.push(Action::PeerProvisioned(true));
        actions
    }

    /// `anchored` mode: an unpinned peer whose chain verified to an installed anchor
    /// connected to us from `endpoint`'s address, and attestation proved `proof`. Pins it
    /// (its pairing port is assumed to be ours). Refused in `first-contact` mode, where only
    /// the operator names peers.
    pub fn admit_incoming(
        &mut self,
        endpoint: SocketAddr,
        proof: Proof<'_>,
        unix_now: u64,
    ) -> Option<Vec<Action>> {
        if !self.provisioned
            || self.trust_mode != TrustMode::Anchored
            || self.own_fingerprint == Some(proof.fingerprint)
            || !proof.attestation.admits()
        {
            return None;
        }
        if self
            .peers
            .values()
            .any(|p| p.record.fingerprint == proof.fingerprint)
        {
            // Pinned meanwhile (or quarantined): nothing to add.
            return self.pins().contains(&proof.fingerprint).then(Vec::new);
        }
        Some(self.pin(endpoint, None, &proof, TrustMode::Anchored, unix_now))
    }

    /// Records a pin for the peer at `endpoint` (replacing the record with that endpoint,
    /// else that name) and starts its dialler.
    fn pin(
        &mut self,
        endpoint: SocketAddr,
        name_hint: Option<&str>,
        proof: &Proof<'_>,
        trust_mode: TrustMode,
        unix_now: u64,
    ) -> Vec<Action> {
        let fingerprint = proof.fingerprint;
        let name = proof
            .common_name
            .filter(|n| is_valid_name(n))
            .or(name_hint)
            .map(str::to_owned)
            .unwrap_or_else(|| endpoint.ip().to_string());
        let existing = self
            .peers
            .values()
            .find(|p| p.record.endpoint() == endpoint)
            .or_else(|| self.peers.values().find(|p| p.record.name == name))
            .map(|p| p.record.id.clone());
        let id = existing.clone().unwrap_or_else(|| self.fresh_id(&name));
        let record = PeerRecord {
            id: id.clone(),
            name,
            address: endpoint.ip(),
            port: endpoint.port(),
            fingerprint,
            trust_mode,
            paired_at: unix_now,
            attestation: proof.attestation,
            attested_at: if proof.attestation == AttestationOutcome::NotAttested {
                0
            } else {
                unix_now
            },
        };
        let mut actions = Vec::new();
        if existing.is_some() {
            actions.push(Action::StopLink(id.clone()));
        }
        // Another record pinning the same key under a different endpoint is the same BMC
        // that moved: keep one record.
        let duplicates: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| p.record.fingerprint == fingerprint && p.record.id != id)
            .map(|p| p.record.id.clone())
            .collect();
        for dup in duplicates {
            self.peers.remove(&dup);
            actions.push(Action::StopLink(dup));
        }
        let mut peer = Peer::new(record);
        peer.outgoing = ConnState::InProgress;
        self.peers.insert(id.clone(), peer);
        actions.extend([
            Action::Persist,
            Action::SyncPins,
            Action::StartLink {
                id,
                endpoint,
                fingerprint,
            },
            Action::Publish,
        ]);
        actions
    }

    /// The result of an operator's `Reattest()` of `id`. Only a result in which the pinned
    /// identity proved itself changes anything: an authenticated rejection quarantines the
    /// peer (pin kept, sessions closed, not accepted), a pass lifts it. Someone else
    /// answering is an identity mismatch; a peer that does not answer changes nothing.
    pub fn reattested(&mut self, id: &PeerId, result: Reattestation, unix_now: u64) -> Vec<Action> {
        let Some(peer) = self.peers.get_mut(id) else {
            return Vec::new();
        };
        match result {
            Reattestation::OtherIdentity => self.outgoing_refused(id),
            Reattestation::Proved(outcome) => {
                let was = peer.record.attestation;
                peer.record.attestation = outcome;
                peer.record.attested_at = unix_now;
                let mut actions = vec![Action::Persist, Action::SyncPins];
                if !outcome.admits() {
                    peer.outgoing = ConnState::NotConnected;
                    actions.push(Action::StopLink(id.clone()));
                } else if !was.admits() && self.provisioned {
                    actions.push(Action::StartLink {
                        id: id.clone(),
                        endpoint: peer.record.endpoint(),
                        fingerprint: peer.record.fingerprint,
                    });
                }
                actions.push(Action::Publish);
                actions
            }
        }
    }

    /// A first-contact probe failed: nothing changes but the signal.
    pub fn probe_failed(&mut self, target: &Target) -> Vec<Action> {
        self.probing.remove(&target.endpoint);
        vec![Action::PeerProvisioned(false)]
    }

    fn fresh_id(&self, name: &str) -> PeerId {
        let base = PeerId::from_name(name);
        if !self.peers.contains_key(&base) {
            return base;
        }
        (2u32..)
            .map(|n| PeerId(format!("{}_{n}", base.as_str())))
            .find(|id| !self.peers.contains_key(id))
            .unwrap_or(base)
    }

    /// `Unpair()` on a peer object.
    ///
    /// # Errors
    /// [`Refusal::ResourceNotFound`] if the peer does not exist.
    pub fn unpair(&mut self, id: &PeerId) -> Result<Vec<Action>, Refusal> {
        if self.peers.remove(id).is_none() {
            return Err(Refusal::ResourceNotFound(format!("no paired peer {id}")));
        }
        Ok(vec![
            Action::StopLink(id.clone()),
            Action::Persist,
            Action::SyncPins,
            Action::Publish,
        ])
    }

    fn find_by_fingerprint(&mut self, fp: &Fingerprint) -> Option<&mut Peer> {
        self.peers
            .values_mut()
            .find(|p| p.record.fingerprint == *fp)
    }

    fn publish_if(
        &self,
        before: ConnState,
        id_state_before: Option<(ConnState, ConnState)>,
        id: Option<&PeerId>,
    ) -> Vec<Action> {
        let after = self.aggregate();
        let peer_after = id
            .and_then(|id| self.peers.get(id))
            .map(|p| (p.incoming, p.outgoing));
        if before != after || id_state_before != peer_after {
            vec![Action::Publish]
        } else {
            Vec::new()
        }
    }

    /// A pinned peer opened a session to us. Unknown fingerprints (a pin removed during the
    /// handshake) change nothing.
    pub fn incoming_up(&mut self, fp: &Fingerprint, unix_now: u64) -> Vec<Action> {
        let before = self.aggregate();
        let Some(peer) = self.find_by_fingerprint(fp) else {
            return Vec::new();
        };
        let snapshot = (peer.incoming, peer.outgoing);
        let id = peer.record.id.clone();
        peer.incoming_sessions = peer.incoming_sessions.saturating_add(1);
        peer.incoming = ConnState::Connected;
        peer.last_seen = Some(unix_now);
        peer.identity_mismatch = false;
        let mut actions = self.publish_if(before, Some(snapshot), Some(&id));
        if actions.is_empty() {
            // last_seen changed even if nothing else did.
            actions.push(Action::Publish);
        }
        // The peer just proved it is up and accepts us: a dialler waiting out its backoff
        // (typically refused moments ago, before the peer pinned us) tries again now.
        if snapshot.1 != ConnState::Connected {
            actions.push(Action::Wake(id));
        }
        actions
    }

    /// One of a peer's incoming sessions ended; the direction is down only when the last did.
    pub fn incoming_down(&mut self, fp: &Fingerprint) -> Vec<Action> {
        let before = self.aggregate();
        let Some(peer) = self.find_by_fingerprint(fp) else {
            return Vec::new();
        };
        let snapshot = (peer.incoming, peer.outgoing);
        let id = peer.record.id.clone();
        peer.incoming_sessions = peer.incoming_sessions.saturating_sub(1);
        if peer.incoming_sessions == 0 {
            peer.incoming = ConnState::NotConnected;
        }
        self.publish_if(before, Some(snapshot), Some(&id))
    }

    /// Outgoing link news for `id`.
    pub fn outgoing(&mut self, id: &PeerId, event: Outgoing, unix_now: u64) -> Vec<Action> {
        let before = self.aggregate();
        let Some(peer) = self.peers.get_mut(id) else {
            return Vec::new();
        };
        let snapshot = (peer.incoming, peer.outgoing);
        peer.outgoing = match (event, peer.outgoing) {
            // Only the first attempt shows as InProgress; retries after a loss stay
            // NotConnected, so the property does not flap with every backoff step.
            (Outgoing::Attempt, ConnState::NotDetermined) => ConnState::InProgress,
            (Outgoing::Attempt, s) => s,
            (Outgoing::Up, _) => {
                peer.last_seen = Some(unix_now);
                peer.identity_mismatch = false;
                ConnState::Connected
            }
            (Outgoing::Down, _) => ConnState::NotConnected,
        };
        let mut actions = self.publish_if(before, Some(snapshot), Some(id));
        if event == Outgoing::Up && actions.is_empty() {
            actions.push(Action::Publish);
        }
        actions
    }
}

impl Pairing {
    /// A neighbour named `name` (LLDP SystemName or static peer name) is reachable at
    /// `endpoint`. A paired peer seen where we already dial it is woken; one seen at a new
    /// address is only moved there after its pinned identity answers ([`Action::VerifyMove`]).
    /// Discovery never changes a pin.
    pub fn neighbour_seen(&self, name: Option<&str>, endpoint: SocketAddr) -> Vec<Action> {
        if !self.provisioned {
            return Vec::new();
        }
        let by_name = name.and_then(|n| self.peers.values().find(|p| p.record.name == n));
        if let Some(peer) = by_name {
            return if peer.record.endpoint() == endpoint {
                vec![Action::Wake(peer.record.id.clone())]
            } else {
                vec![Action::VerifyMove {
                    id: peer.record.id.clone(),
                    endpoint,
                    fingerprint: peer.record.fingerprint,
                }]
            };
        }
        self.peers
            .values()
            .filter(|p| p.record.endpoint() == endpoint)
            .map(|p| Action::Wake(p.record.id.clone()))
            .collect()
    }

    /// The pinned identity of `id` answered at `endpoint`: dial it there from now on.
    pub fn peer_moved(
        &mut self,
        id: &PeerId,
        endpoint: SocketAddr,
        fingerprint: Fingerprint,
    ) -> Vec<Action> {
        let Some(peer) = self.peers.get_mut(id) else {
            return Vec::new();
        };
        // Re-paired or moved meanwhile: this verdict is about an older state.
        if peer.record.fingerprint != fingerprint || peer.record.endpoint() == endpoint {
            return Vec::new();
        }
        peer.record.address = endpoint.ip();
        peer.record.port = endpoint.port();
        vec![
            Action::Persist,
            Action::StartLink {
                id: id.clone(),
                endpoint,
                fingerprint,
            },
            Action::Publish,
        ]
    }

    /// Something with another identity answered where `id` was expected. Pins stay; the
    /// peer object shows the mismatch until the pinned identity is seen again.
    pub fn outgoing_refused(&mut self, id: &PeerId) -> Vec<Action> {
        match self.peers.get_mut(id) {
            Some(peer) if !peer.identity_mismatch => {
                peer.identity_mismatch = true;
                vec![Action::Publish]
            }
            _ => Vec::new(),
        }
    }
}

/// What a peer proved when it was paired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Proof<'a> {
    /// SHA-256 of its leaf SPKI: the pin.
    pub fingerprint: Fingerprint,
    /// Its certificate's common name, if any.
    pub common_name: Option<&'a str>,
    /// The attestation result (`NotAttested` with attestation off).
    pub attestation: AttestationOutcome,
}

/// What a re-attestation of a paired peer found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reattestation {
    /// The pinned identity proved itself; this is the appraisal.
    Proved(AttestationOutcome),
    /// A different identity answered at the peer's address.
    OtherIdentity,
}

/// Outgoing link events, as the pairing core sees them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outgoing {
    /// A dial attempt started.
    Attempt,
    /// The session is up.
    Up,
    /// The attempt failed or the session ended.
    Down,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint([n; 32])
    }

    fn proof(fingerprint: Fingerprint, common_name: Option<&str>) -> Proof<'_> {
        Proof {
            fingerprint,
            common_name,
            attestation: AttestationOutcome::Trusted,
        }
    }

    fn target(port: u16) -> Target {
        Target {
            endpoint: SocketAddr::from(([127, 0, 0, 1], port)),
            name: None,
        }
    }

    fn provisioned() -> Pairing {
        let (mut p, _) = Pairing::restore(Persisted::default(), None, TrustMode::FirstContact);
        p.provision(&Request::SelfIdentity).unwrap();
        p.identity_ready(fp(0));
        p
    }

    #[test]
    fn priority_is_explicit_not_enum_order() {
        use ConnState::*;
        assert_eq!(NotConnected.best(InProgress), InProgress);
        assert_eq!(Connected.best(NotConnected), Connected);
        assert_eq!(NotDetermined.best(NotConnected), NotConnected);
        assert_eq!(InProgress.best(Connected), Connected);
    }

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
            Ok(Request::Peer(Target {
                endpoint: "127.0.0.1:8090".parse().unwrap(),
                name: None
            }))
        );
        assert_eq!(
            p("[::1]:99"),
            Ok(Request::Peer(Target {
                endpoint: "[::1]:99".parse().unwrap(),
                name: None
            }))
        );
        assert_eq!(
            p("skiboards"),
            Ok(Request::Peer(Target {
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

    #[test]
    fn peers_need_self_provisioning_first_and_refusal_changes_nothing() {
        let (mut p, _) = Pairing::restore(Persisted::default(), None, TrustMode::FirstContact);
        let before = p.persisted();
        assert!(matches!(
            p.provision(&Request::Peer(target(1))),
            Err(Refusal::NotAllowed(_))
        ));
        assert_eq!(p.persisted(), before);
        assert!(!p.provisioned());
    }

    #[test]
    fn self_is_idempotent() {
        let mut p = provisioned();
        let again = p.identity_ready(fp(0));
        assert_eq!(again, vec![Action::Publish], "no persist, no link restarts");
    }

    #[test]
    fn duplicate_probe_is_unavailable() {
        let mut p = provisioned();
        p.provision(&Request::Peer(target(1))).unwrap();
        assert!(matches!(
            p.provision(&Request::Peer(target(1))),
            Err(Refusal::Unavailable(_))
        ));
        p.probe_failed(&target(1));
        assert!(p.provision(&Request::Peer(target(1))).is_ok());
    }

    #[test]
    fn successful_probe_pins_and_signals_once() {
        let mut p = provisioned();
        p.provision(&Request::Peer(target(1))).unwrap();
        let actions = p.probe_succeeded(&target(1), proof(fp(7), Some("bmc-b")), 100);
        assert_eq!(
            actions
                .iter()
                .filter(|a| matches!(a, Action::PeerProvisioned(_)))
                .count(),
            1
        );
        assert!(actions.contains(&Action::PeerProvisioned(true)));
        assert!(actions.contains(&Action::Persist));
        assert_eq!(p.pins(), [fp(7)].into());
        let peer = p.peers().get(&PeerId::from_name("bmc-b")).unwrap();
        assert_eq!(peer.outgoing, ConnState::InProgress);
        assert_eq!(p.aggregate(), ConnState::InProgress);
    }

    #[test]
    fn probing_ourselves_is_refused() {
        let mut p = provisioned();
        p.provision(&Request::Peer(target(1))).unwrap();
        assert_eq!(
            p.probe_succeeded(&target(1), proof(fp(0), Some("me")), 1),
            vec![Action::PeerProvisioned(false)]
        );
        assert!(p.pins().is_empty());
    }

    #[test]
    fn repairing_replaces_the_pin_and_keeps_the_id() {
        let mut p = provisioned();
        p.provision(&Request::Peer(target(1))).unwrap();
        p.probe_succeeded(&target(1), proof(fp(7), Some("bmc-b")), 1);
        p.provision(&Request::Peer(target(1))).unwrap();
        p.probe_succeeded(&target(1), proof(fp(8), Some("bmc-b")), 2);
        assert_eq!(p.pins(), [fp(8)].into());
        assert_eq!(p.peers().len(), 1);
    }

    #[test]
    fn anchored_admission_pins_only_in_anchored_mode() {
        let mut p = provisioned();
        let from = target(7).endpoint;
        assert!(
            p.admit_incoming(from, proof(fp(9), Some("bmc-c")), 1)
                .is_none(),
            "first-contact never admits"
        );
        assert!(p.pins().is_empty());
        let (mut a, _) = Pairing::restore(Persisted::default(), None, TrustMode::Anchored);
        a.identity_ready(fp(0));
        let actions = a
            .admit_incoming(from, proof(fp(9), Some("bmc-c")), 1)
            .unwrap();
        assert!(actions.contains(&Action::Persist) && actions.contains(&Action::SyncPins));
        assert!(
            !actions
                .iter()
                .any(|x| matches!(x, Action::PeerProvisioned(_))),
            "no operator call to answer"
        );
        assert_eq!(a.pins(), [fp(9)].into());
        assert_eq!(
            a.peers()[&PeerId::from_name("bmc-c")].record.trust_mode,
            TrustMode::Anchored
        );
        assert_eq!(
            a.admit_incoming(from, proof(fp(9), None), 2),
            Some(Vec::new()),
            "already pinned"
        );
        let mut rejected = proof(fp(8), None);
        rejected.attestation = AttestationOutcome::Rejected;
        assert!(a.admit_incoming(target(8).endpoint, rejected, 2).is_none());
        assert!(
            a.admit_incoming(target(8).endpoint, proof(fp(0), None), 2)
                .is_none(),
            "ourselves"
        );
    }

    #[test]
    fn authenticated_rejection_quarantines_and_a_pass_restores() {
        let mut p = provisioned();
        p.provision(&Request::Peer(target(1))).unwrap();
        p.probe_succeeded(&target(1), proof(fp(7), Some("bmc-b")), 1);
        let id = PeerId::from_name("bmc-b");
        let actions = p.reattested(&id, Reattestation::Proved(AttestationOutcome::Rejected), 5);
        assert!(
            actions.contains(&Action::StopLink(id.clone())) && actions.contains(&Action::SyncPins)
        );
        assert!(p.pins().is_empty(), "not accepted while quarantined");
        assert_eq!(p.all_pins(), [fp(7)].into(), "the pin itself is kept");
        let (restored, resumed) =
            Pairing::restore(p.persisted(), Some(fp(0)), TrustMode::FirstContact);
        assert!(
            !resumed
                .iter()
                .any(|a| matches!(a, Action::StartLink { .. })),
            "quarantine survives restart"
        );
        assert!(restored.pins().is_empty());
        let actions = p.reattested(&id, Reattestation::Proved(AttestationOutcome::Trusted), 6);
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::StartLink { .. }))
        );
        assert_eq!(p.pins(), [fp(7)].into());
        assert_eq!(
            p.reattested(&id, Reattestation::OtherIdentity, 7),
            vec![Action::Publish]
        );
        assert_eq!(p.pins(), [fp(7)].into(), "an impostor changes no pin");
    }

    #[test]
    fn an_incoming_session_wakes_a_backing_off_dialler() {
        let mut p = provisioned();
        p.provision(&Request::Peer(target(1))).unwrap();
        p.probe_succeeded(&target(1), proof(fp(7), Some("bmc-b")), 1);
        let id = PeerId::from_name("bmc-b");
        p.outgoing(&id, Outgoing::Down, 2);
        assert!(p.incoming_up(&fp(7), 3).contains(&Action::Wake(id.clone())));
        p.outgoing(&id, Outgoing::Up, 4);
        assert!(
            !p.incoming_up(&fp(7), 5).contains(&Action::Wake(id)),
            "nothing to wake"
        );
    }

    #[test]
    fn multiple_incoming_sessions_count() {
        let mut p = provisioned();
        p.provision(&Request::Peer(target(1))).unwrap();
        p.probe_succeeded(&target(1), proof(fp(7), Some("bmc-b")), 1);
        p.incoming_up(&fp(7), 2);
        p.incoming_up(&fp(7), 2);
        p.incoming_down(&fp(7));
        let id = PeerId::from_name("bmc-b");
        assert_eq!(
            p.peers()[&id].incoming,
            ConnState::Connected,
            "one session is still up"
        );
        p.incoming_down(&fp(7));
        assert_eq!(p.peers()[&id].incoming, ConnState::NotConnected);
    }

    #[test]
    fn identity_loss_unprovisions_and_keeps_pins() {
        let mut p = provisioned();
        p.provision(&Request::Peer(target(1))).unwrap();
        p.probe_succeeded(&target(1), proof(fp(7), Some("bmc-b")), 1);
        let actions = p.identity_lost();
        assert!(!p.provisioned());
        assert!(actions.contains(&Action::Persist));
        assert!(actions.contains(&Action::StopLink(PeerId::from_name("bmc-b"))));
        assert_eq!(p.pins(), [fp(7)].into());
        let (restored, _) = Pairing::restore(p.persisted(), Some(fp(0)), TrustMode::FirstContact);
        assert!(
            !restored.provisioned(),
            "loss persists until self is provisioned again"
        );
    }

    #[test]
    fn restore_resumes_links_only_when_provisioned() {
        let mut p = provisioned();
        p.provision(&Request::Peer(target(1))).unwrap();
        p.probe_succeeded(&target(1), proof(fp(7), Some("bmc-b")), 1);
        let (_, actions) = Pairing::restore(p.persisted(), Some(fp(0)), TrustMode::FirstContact);
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::StartLink { .. }))
        );
        let (q, actions) = Pairing::restore(p.persisted(), None, TrustMode::FirstContact);
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::StartLink { .. }))
        );
        assert!(!q.provisioned());
    }

    #[test]
    fn discovery_wakes_verifies_moves_and_never_repins() {
        let mut p = provisioned();
        p.provision(&Request::Peer(target(1))).unwrap();
        p.probe_succeeded(&target(1), proof(fp(7), Some("bmc-b")), 1);
        let id = PeerId::from_name("bmc-b");
        let pins = p.pins();
        assert_eq!(
            p.neighbour_seen(Some("bmc-b"), target(1).endpoint),
            vec![Action::Wake(id.clone())]
        );
        let moved_to = target(2).endpoint;
        assert_eq!(
            p.neighbour_seen(Some("bmc-b"), moved_to),
            vec![Action::VerifyMove {
                id: id.clone(),
                endpoint: moved_to,
                fingerprint: fp(7)
            }]
        );
        assert!(
            p.neighbour_seen(Some("stranger"), target(3).endpoint)
                .is_empty()
        );
        // A stale verdict (the peer was re-paired meanwhile) changes nothing.
        assert!(p.peer_moved(&id, moved_to, fp(9)).is_empty());
        let actions = p.peer_moved(&id, moved_to, fp(7));
        assert!(actions.contains(&Action::Persist));
        assert_eq!(p.peers()[&id].record.endpoint(), moved_to);
        assert_eq!(p.pins(), pins, "discovery never changes a pin");
        assert_eq!(p.outgoing_refused(&id), vec![Action::Publish]);
        assert!(p.peers()[&id].identity_mismatch);
        assert!(p.outgoing_refused(&id).is_empty(), "published once");
        p.outgoing(&id, Outgoing::Up, 5);
        assert!(
            !p.peers()[&id].identity_mismatch,
            "cleared by a good session"
        );
        assert_eq!(p.pins(), pins);
    }

    #[derive(Clone, Debug)]
    enum Ev {
        Provision(u16),
        ProbeOk(u16, u8),
        ProbeFail(u16),
        InUp(u8),
        InDown(u8),
        Out(u8, Outgoing),
        Unpair(u8),
        Lost,
        SelfReady,
    }

    fn ev() -> impl Strategy<Value = Ev> {
        let port = 1u16..4;
        let key = 1u8..5;
        let out = prop_oneof![
            Just(Outgoing::Attempt),
            Just(Outgoing::Up),
            Just(Outgoing::Down)
        ];
        prop_oneof![
            port.clone().prop_map(Ev::Provision),
            (port.clone(), key.clone()).prop_map(|(a, b)| Ev::ProbeOk(a, b)),
            port.prop_map(Ev::ProbeFail),
            key.clone().prop_map(Ev::InUp),
            key.clone().prop_map(Ev::InDown),
            (key.clone(), out).prop_map(|(k, o)| Ev::Out(k, o)),
            key.prop_map(Ev::Unpair),
            Just(Ev::Lost),
            Just(Ev::SelfReady),
        ]
    }

    proptest! {
        #[test]
        fn invariants_hold_for_any_event_sequence(events in proptest::collection::vec(ev(), 0..60)) {
            let mut p = provisioned();
            let mut requested: BTreeSet<u16> = BTreeSet::new();
            for e in events {
                let pins_before = p.pins();
                let prov_before = p.provisioned();
                match e {
                    Ev::Provision(port) => {
                        if p.provision(&Request::Peer(target(port))).is_ok() {
                            requested.insert(port);
                        }
                        prop_assert_eq!(p.pins(), pins_before);
                    }
                    Ev::ProbeOk(port, k) => {
                        // Only a probe the operator started can report success.
                        if requested.remove(&port) {
                            let a = p.probe_succeeded(&target(port), proof(fp(k), Some(&format!("b{k}"))), 1);
                            prop_assert_eq!(a.iter().filter(|x| matches!(x, Action::PeerProvisioned(_))).count(), 1);
                        }
                    }
                    Ev::ProbeFail(port) => {
                        if requested.remove(&port) {
                            p.probe_failed(&target(port));
                        }
                        prop_assert_eq!(p.pins(), pins_before);
                        prop_assert_eq!(p.provisioned(), prov_before);
                    }
                    Ev::InUp(k) => { p.incoming_up(&fp(k), 1); prop_assert_eq!(p.pins(), pins_before); prop_assert_eq!(p.provisioned(), prov_before); }
                    Ev::InDown(k) => { p.incoming_down(&fp(k)); prop_assert_eq!(p.pins(), pins_before); prop_assert_eq!(p.provisioned(), prov_before); }
                    Ev::Out(k, o) => {
                        let id = p.peers().values().find(|x| x.record.fingerprint == fp(k)).map(|x| x.record.id.clone());
                        if let Some(id) = id { p.outgoing(&id, o, 1); }
                        prop_assert_eq!(p.pins(), pins_before);
                        prop_assert_eq!(p.provisioned(), prov_before);
                    }
                    Ev::Unpair(k) => {
                        let id = p.peers().values().find(|x| x.record.fingerprint == fp(k)).map(|x| x.record.id.clone());
                        if let Some(id) = id { p.unpair(&id).unwrap(); prop_assert!(!p.pins().contains(&fp(k))); }
                    }
                    Ev::Lost => { p.identity_lost(); prop_assert!(!p.provisioned()); }
                    Ev::SelfReady => { p.identity_ready(fp(0)); prop_assert!(p.provisioned()); }
                }
                let expected = p.peers().values()
                    .flat_map(|x| [x.incoming, x.outgoing])
                    .max_by_key(|s| s.priority())
                    .unwrap_or(ConnState::NotDetermined);
                prop_assert_eq!(p.aggregate().priority(), expected.priority());
                for peer in p.peers().values() {
                    prop_assert_eq!(peer.incoming == ConnState::Connected, peer.incoming_sessions > 0);
                }
                // Persisted state always round-trips through JSON.
                let json = serde_json::to_string(&p.persisted()).unwrap();
                prop_assert_eq!(serde_json::from_str::<Persisted>(&json).unwrap(), p.persisted());
            }
        }
    }
}
