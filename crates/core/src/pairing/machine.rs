//! The pairing state machine: every rule of pairing, and nothing else. Pure: no I/O, no
//! clock reads, no tokio.
//!
//! Owns what this BMC believes: whether it is provisioned, which peers are paired (their
//! pinned identity, name, address, last attestation) and the state of each peer's incoming
//! and outgoing sessions. Inputs are operator commands, link and discovery events, and the
//! results of work it asked for; outputs are [`Action`]s the actor carries out without
//! deciding anything itself.
//!
//! Invariants (property-tested below):
//! - a dial starts only through one gate, [`Pairing::may_dial`]: provisioned, and the peer
//!   admitted (not quarantined, not unpaired by the other side). The listener's pin set
//!   holds admitted peers only. So a quarantined peer is never dialled, probed at a new
//!   address, or accepted until a re-attestation passes, and a peer that unpaired us is
//!   never dialled or accepted until an operator pairs it anew;
//! - a pin changes only by `ProvisionPeer` (an operator-started probe that succeeded),
//!   anchored admission after attestation, `Unpair`, `FactoryReset.Reset()`, or on a group
//!   member its authority's root-signed group list (an introduced member that passed
//!   attestation and the binding check, or a revoked member dropped); no link,
//!   discovery, time or re-attestation event does (`Bye { Unpaired }` from the authenticated
//!   peer marks its record but keeps the pin);
//! - an unpaired identity is owed a `Bye { Unpaired }` ([`Pairing::farewells`]) until a
//!   session of it has been answered with one, and is never in the admitted pins meanwhile;
//! - a peer is re-attested, against its pin and with the quarantine rules of `Reattest()`,
//!   when its `Hello` shows a new boot, and every `reattest_interval`;
//! - nobody moves the time floor but this BMC's own clock, and only forward
//!   ([`TimeView`] is how certificates are checked while that clock is behind the floor);
//! - a failed probe never changes `provisioned` or the pins;
//! - the aggregate state is the best per-direction state by the explicit priority
//!   Connected > InProgress > NotConnected > NotDetermined, never by enum order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;
use std::net::SocketAddr;

use super::group::{GroupList, ListError, Member, Membership, Revoked};
use super::model::{
    AttestationOutcome, ConnState, PeerId, PeerRecord, Persisted, STATE_VERSION, TrustMode,
    is_valid_name,
};
use super::request::{Candidate, Refusal, Request};
use crate::keys::Fingerprint;

/// What the attestation service is asked to accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttestPolicy {
    /// Any self-consistent chain; the identity proven is reported for pinning.
    FirstContact,
    /// Chains to an installed trust anchor only.
    Anchored,
    /// Only the identity with this pin.
    Pinned(Fingerprint),
}

/// Why an attestation is running; its result comes back with it to [`Pairing::attested`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttestPurpose {
    /// The operator named this peer (`ProvisionPeer`).
    Probe(Candidate),
    /// An unpinned client whose chain verified to a trust anchor connected from `from`
    /// (anchored mode) and presented `fingerprint`.
    Admission {
        /// The identity it presented in TLS.
        fingerprint: Fingerprint,
        /// Where it connected from.
        from: SocketAddr,
    },
    /// The operator asked for a re-attestation (`Reattest()`).
    Reattest(PeerId),
    /// An automatic re-attestation of a pinned peer; same rules as `Reattest()`.
    Recheck(PeerId, RecheckCause),
}

/// Why a pinned peer is re-attested without an operator asking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecheckCause {
    /// Its `Hello` carried another boot identifier than before: it rebooted (possibly into
    /// other firmware).
    Rebooted,
    /// Its last attestation is older than `reattest_interval`.
    Interval,
}

/// What an attestation that ran to the end found (the attestation service's reply, read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationReport {
    /// The appraisal.
    pub outcome: AttestationOutcome,
    /// The identity the peer proved (signatures verified under its chain), if it did.
    pub fingerprint: Option<Fingerprint>,
    /// The proven leaf's common name, if any.
    pub common_name: Option<String>,
    /// Why it was refused, when it was.
    pub reason: Option<String>,
    /// The key that issued the proven leaf in the verified chain (the peer's CA key), if
    /// the chain has one.
    pub ca_key: Option<Fingerprint>,
}

/// What a TLS handshake to a peer's address found, when a specific identity was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IdentityCheck<E> {
    /// The expected identity answered and completed the handshake.
    Answered,
    /// Something answered with a well-formed chain for another key.
    OtherIdentity(Fingerprint),
    /// Nothing usable answered (refused, timed out, malformed).
    Unreached(E),
}

/// The identity a peer proved in a completed TLS handshake (pairing with
/// `"attestation": "off"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Captured {
    /// SHA-256 of its leaf SPKI.
    pub fingerprint: Fingerprint,
    /// Its leaf's common name, if any.
    pub common_name: Option<String>,
}

/// What the actor must do. It executes these in order and decides nothing itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Create the identity if absent or invalid, else re-use (and renew) it; report back with
    /// [`Pairing::identity_ready`] or [`Pairing::identity_failed`].
    EnsureIdentity,
    /// Run an SPDM attestation of the responder at `address`; report back with
    /// [`Pairing::attested`].
    Attest {
        /// Why (and what to report the result with).
        purpose: AttestPurpose,
        /// The peer's SPDM responder.
        address: SocketAddr,
        /// What to accept.
        policy: AttestPolicy,
    },
    /// Complete a TLS handshake with `candidate` and expect `fingerprint` (the binding of
    /// the attested key to the channel); report back with [`Pairing::binding_checked`].
    CheckBinding {
        /// The peer being paired.
        candidate: Candidate,
        /// The identity SPDM attested.
        fingerprint: Fingerprint,
    },
    /// `"attestation": "off"`: complete a TLS handshake with `candidate` and learn the
    /// identity it proves; report back with [`Pairing::identity_captured`].
    CaptureIdentity(Candidate),
    /// Write [`Pairing::persisted`] to disk.
    Persist,
    /// Make the listener's pin set equal [`Pairing::pins`] and its farewell set equal
    /// [`Pairing::farewells`], and cut sessions of removed pins.
    SyncPins,
    /// Start (or restart) the dialler for a peer. Only [`Pairing::may_dial`] emits it.
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
    /// Cut the backoff wait of a peer's dialler short: it was just seen.
    Wake(PeerId),
    /// A paired peer was seen at a new address: check that its pinned identity answers
    /// there; report back with [`Pairing::move_checked`].
    VerifyMove {
        /// The peer.
        id: PeerId,
        /// The new address.
        endpoint: SocketAddr,
        /// The identity that must answer there.
        fingerprint: Fingerprint,
    },
    /// Answer the listener's admission question for every connection of `fingerprint`.
    Admit {
        /// The identity the connections presented.
        fingerprint: Fingerprint,
        /// Let them in.
        admitted: bool,
    },
    /// Answer the operator's `Reattest()` of `id`.
    ReattestDone {
        /// The peer.
        id: PeerId,
        /// Recorded, or why there is nothing to record.
        result: Result<(), Refusal>,
    },
    /// Delete this BMC's identity: its keys (TPM objects and blobs) and its certificates;
    /// the operator's trust anchors stay. Part of `FactoryReset.Reset()`.
    EraseIdentity,
    /// Publish a new snapshot (properties and peer objects).
    Publish,
    /// Emit `PeerProvisioned(b)`.
    PeerProvisioned(bool),
    /// Group authority: sign this list with the group root key and send it to every
    /// session (and again at each session start).
    PublishGroupList(GroupList),
    /// Group member to be: ask `authority` (over its pinned session) to sign a CSR for our
    /// CA key; the answer comes back to [`Pairing::joined`].
    RequestSigning {
        /// The authority's identity.
        authority: Fingerprint,
    },
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

    /// Quarantined: its pinned identity proved itself but was refused by the measurement
    /// policy. Pin kept; no sessions until a `Reattest()` passes.
    pub fn quarantined(&self) -> bool {
        !self.record.attestation.admits()
    }

    /// Sessions with it are allowed: not quarantined, and it has not unpaired us.
    pub fn admitted(&self) -> bool {
        !self.quarantined() && !self.record.unpaired_by_peer
    }
}

/// What this BMC knows about the current time, for certificate validity (DESIGN.md §4:
/// validity is never disabled). `clock` is the wall clock, `floor` the time known to have
/// passed already (the build time, or the last time this BMC's own clock was believed).
///
/// The rule: a clock at or past the floor is trusted and validity is checked at `clock`. A
/// clock behind the floor (a BMC at 1970 since its first boot: no RTC, no NTP yet) is known
/// to be wrong; the true time is then somewhere in `[floor, floor + window]`, and a chain is
/// accepted if it is valid at some instant of that interval: it is checked at the earliest
/// such instant. So a chain that expired before the floor is still refused, and one that
/// only becomes valid more than `window` after the floor too; nothing a peer sends moves
/// the floor or the clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeView {
    /// The wall clock, unix seconds.
    pub clock: u64,
    /// The time floor, unix seconds.
    pub floor: u64,
    /// How far past the floor the true time may be while the clock is behind it, seconds.
    pub window: u64,
}

/// Default of [`TimeView::window`]: five years, the longest a BMC is expected to run
/// firmware built before the certificates of its peers were issued.
pub const UNTRUSTED_CLOCK_WINDOW: u64 = 5 * 365 * 24 * 3600;

impl TimeView {
    /// True when the clock is at or past the floor, so it is believed.
    pub fn trusted(&self) -> bool {
        self.clock >= self.floor
    }

    /// The instant (unix seconds) at which to check a chain whose latest `notBefore` is
    /// `latest_not_before`: the clock when it is trusted; otherwise the earliest instant of
    /// `[floor, floor + window]` at or after that `notBefore`, clamped into the interval (a
    /// chain not yet valid at its end is then refused as not yet valid, one expired before
    /// the floor as expired).
    pub fn check_instant(&self, latest_not_before: u64) -> u64 {
        if self.trusted() {
            self.clock
        } else {
            latest_not_before.clamp(self.floor, self.floor.saturating_add(self.window))
        }
    }
}

/// The fixed rules a BMC pairs by (from its configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// How peers come to be trusted.
    pub trust_mode: TrustMode,
    /// Pairing requires SPDM attestation (`false` only with `"attestation": "off"`).
    pub attestation: bool,
    /// Our pairing-channel port; an admitted peer is assumed to listen on it too.
    pub pairing_port: u16,
    /// The SPDM responder port of every peer (LLDP carries no port).
    pub attestation_port: u16,
    /// Re-attest every pinned peer whose last attestation is older than this many seconds;
    /// `None` turns the periodic re-attestation off (a reboot still triggers one).
    pub reattest_interval: Option<u64>,
}

/// Most unpaired identities kept waiting for their `Bye { Unpaired }`; the oldest is dropped
/// first (it then learns by its sessions being refused, as before).
pub const MAX_FAREWELLS: usize = 32;

/// Least time between two automatic re-attestations of a peer whose last one reached no
/// verdict (unreachable): seconds.
pub const RECHECK_RETRY: u64 = 600;

/// A probe in flight: what the attestation proved, once it has.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Probe {
    attested: Option<AttestationReport>,
    /// Started by the group list (another member), not by the operator: no
    /// `PeerProvisioned` signal, and pinned as anchored.
    introduced: bool,
}

/// The whole pairing state.
#[derive(Clone, Debug)]
pub struct Pairing {
    settings: Settings,
    provisioned: bool,
    identity_valid: bool,
    own_fingerprint: Option<Fingerprint>,
    time_floor: u64,
    peers: BTreeMap<PeerId, Peer>,
    probing: BTreeMap<SocketAddr, Probe>,
    admitting: BTreeSet<Fingerprint>,
    reattesting: BTreeSet<PeerId>,
    farewells: Vec<Fingerprint>,
    recheck_attempts: BTreeMap<PeerId, u64>,
    group_authority: bool,
    group_list: Option<GroupList>,
    membership: Option<Membership>,
}

impl Pairing {
    /// Restores state. `identity` is the fingerprint of a loaded, valid identity, or `None`
    /// when it is absent or lost; in that case the BMC is not provisioned, whatever was
    /// persisted. Returns the actions to resume (diallers for paired peers).
    pub fn restore(
        persisted: Persisted,
        identity: Option<Fingerprint>,
        settings: Settings,
    ) -> (Self, Vec<Action>) {
        let mut pairing = Pairing {
            settings,
            provisioned: persisted.provisioned && identity.is_some(),
            identity_valid: identity.is_some(),
            own_fingerprint: identity,
            time_floor: persisted.time_floor,
            peers: persisted
                .peers
                .into_iter()
                .map(|r| (r.id.clone(), Peer::new(r)))
                .collect(),
            probing: BTreeMap::new(),
            admitting: BTreeSet::new(),
            reattesting: BTreeSet::new(),
            farewells: persisted.farewells,
            recheck_attempts: BTreeMap::new(),
            group_authority: false,
            group_list: persisted.group_list,
            membership: persisted.membership,
        };
        let mut actions = vec![Action::SyncPins];
        if persisted.provisioned && identity.is_none() {
            // The identity was lost while we were down: record it so it survives restarts.
            actions.push(Action::Persist);
        }
        actions.extend(pairing.start_links());
        actions.push(Action::Publish);
        (pairing, actions)
    }

    /// The one gate every dial passes: this BMC has an identity to dial with, and the peer is
    /// admitted (not quarantined, and it has not unpaired us).
    pub fn may_dial(&self, peer: &Peer) -> bool {
        self.provisioned && peer.admitted()
    }

    /// A `StartLink` for `id` if the gate lets it through (and marks the direction as in
    /// progress); nothing otherwise.
    fn start_link(&mut self, id: &PeerId) -> Option<Action> {
        let peer = self.peers.get(id)?;
        if !self.may_dial(peer) {
            return None;
        }
        let action = Action::StartLink {
            id: id.clone(),
            endpoint: peer.record.endpoint(),
            fingerprint: peer.record.fingerprint,
        };
        if let Some(peer) = self.peers.get_mut(id) {
            peer.outgoing = ConnState::InProgress;
        }
        Some(action)
    }

    /// Diallers for every peer the gate admits.
    fn start_links(&mut self) -> Vec<Action> {
        let ids: Vec<PeerId> = self.peers.keys().cloned().collect();
        ids.iter().filter_map(|id| self.start_link(id)).collect()
    }

    /// The state to persist.
    pub fn persisted(&self) -> Persisted {
        Persisted {
            version: STATE_VERSION,
            provisioned: self.provisioned,
            time_floor: self.time_floor,
            peers: self.peers.values().map(|p| p.record.clone()).collect(),
            farewells: self.farewells.clone(),
            group_list: self.group_list.clone(),
            membership: self.membership.clone(),
        }
    }

    /// What this BMC knows about the time now, for certificate checks: its clock `clock`
    /// against the floor (the persisted floor, never below `build_epoch`).
    pub fn time_view(&self, clock: u64, build_epoch: u64) -> TimeView {
        TimeView {
            clock,
            floor: self.time_floor.max(build_epoch),
            window: UNTRUSTED_CLOCK_WINDOW,
        }
    }

    /// Identities we unpaired that are still owed a `Bye { Unpaired }`.
    pub fn farewells(&self) -> BTreeSet<Fingerprint> {
        self.farewells.iter().copied().collect()
    }

    /// Raises the clock floor (never lowers it). Returns [`Action::Persist`] if it moved.
    pub fn observe_time(&mut self, unix_now: u64) -> Vec<Action> {
        if unix_now > self.time_floor {
            self.time_floor = unix_now;
            vec![Action::Persist]
        } else {
            Vec::new()
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

    /// The rules in force.
    pub fn settings(&self) -> Settings {
        self.settings
    }

    /// Paired peers.
    pub fn peers(&self) -> &BTreeMap<PeerId, Peer> {
        &self.peers
    }

    /// Every pinned identity that is admitted (a quarantined peer keeps its pin but is not
    /// accepted until it passes attestation again; a peer that unpaired us is not accepted
    /// until an operator pairs it anew).
    pub fn pins(&self) -> BTreeSet<Fingerprint> {
        self.peers
            .values()
            .filter(|p| p.admitted())
            .map(|p| p.record.fingerprint)
            .collect()
    }

    /// The addresses of the admitted peers and of the peers the operator asked to pair with
    /// (while that is in progress): the listener gives their connections precedence for TPM
    /// signatures, so a flood cannot starve a pairing or a reconnect. An address is a hint,
    /// so the most a spoofer gains is a share of that precedence, never a session.
    pub fn preferred_addresses(&self) -> BTreeSet<std::net::IpAddr> {
        self.peers
            .values()
            .filter(|p| !p.quarantined())
            .map(|p| p.record.address)
            .chain(self.probing.keys().map(SocketAddr::ip))
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

    fn spdm_address(&self, endpoint: SocketAddr) -> SocketAddr {
        SocketAddr::new(endpoint.ip(), self.settings.attestation_port)
    }

    /// Handles `ProvisionPeer`. `Ok` means the call is accepted (its outcome follows as
    /// actions and, for peers, a `PeerProvisioned` signal); `Err` changes nothing.
    ///
    /// # Errors
    /// [`Refusal`].
    pub fn provision(&mut self, request: &Request) -> Result<Vec<Action>, Refusal> {
        match request {
            Request::SelfIdentity => Ok(vec![Action::EnsureIdentity]),
            Request::Peer(candidate) => {
                if !self.provisioned {
                    return Err(Refusal::NotAllowed(
                        "this BMC is not provisioned: call ProvisionPeer(\"self\") first".into(),
                    ));
                }
                if self.probing.contains_key(&candidate.endpoint) {
                    return Err(Refusal::Unavailable(format!(
                        "pairing with {} is already in progress",
                        candidate.endpoint
                    )));
                }
                self.probing.insert(
                    candidate.endpoint,
                    Probe {
                        attested: None,
                        introduced: false,
                    },
                );
                let first = if self.settings.attestation {
                    let policy = match self.settings.trust_mode {
                        TrustMode::FirstContact => AttestPolicy::FirstContact,
                        TrustMode::Anchored => AttestPolicy::Anchored,
                    };
                    Action::Attest {
                        purpose: AttestPurpose::Probe(candidate.clone()),
                        address: self.spdm_address(candidate.endpoint),
                        policy,
                    }
                } else {
                    Action::CaptureIdentity(candidate.clone())
                };
                // SyncPins: the candidate's address now has precedence (see
                // `preferred_addresses`).
                Ok(vec![Action::SyncPins, first])
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

    /// Same key, new certificates (a CA certificate was installed, or the leaf renewed): our
    /// diallers must present them, so each admitted peer's dialler restarts. Pins are
    /// unaffected, and a quarantined peer stays undialled.
    pub fn certificates_changed(&mut self) -> Vec<Action> {
        if !self.provisioned {
            return Vec::new();
        }
        let mut actions = self.start_links();
        if !actions.is_empty() {
            actions.push(Action::Publish);
        }
        actions
    }

    /// The result of an attestation this machine asked for. `Err` means no verdict was
    /// reached (unreachable, timed out, the service failed); it changes no pin.
    pub fn attested<E: Display>(
        &mut self,
        purpose: AttestPurpose,
        result: Result<AttestationReport, E>,
        unix_now: u64,
    ) -> Vec<Action> {
        match purpose {
            AttestPurpose::Probe(candidate) => self.probe_attested(&candidate, result),
            AttestPurpose::Admission { fingerprint, from } => {
                self.admission_attested(fingerprint, from, result, unix_now)
            }
            AttestPurpose::Reattest(id) => self.reattested(&id, result, unix_now, true),
            AttestPurpose::Recheck(id, _) => self.reattested(&id, result, unix_now, false),
        }
    }

    fn probe_failed(&mut self, candidate: &Candidate) -> Vec<Action> {
        let introduced = self
            .probing
            .remove(&candidate.endpoint)
            .is_some_and(|p| p.introduced);
        if introduced {
            return vec![Action::SyncPins];
        }
        vec![Action::SyncPins, Action::PeerProvisioned(false)]
    }

    fn probe_attested<E: Display>(
        &mut self,
        candidate: &Candidate,
        result: Result<AttestationReport, E>,
    ) -> Vec<Action> {
        let report = match result {
            Ok(report) => report,
            Err(_) => return self.probe_failed(candidate),
        };
        let fingerprint = match report.fingerprint {
            Some(fp) if report.outcome.vouches() && self.own_fingerprint != Some(fp) => fp,
            // Refused, nothing proven, or the "peer" is this BMC itself.
            _ => return self.probe_failed(candidate),
        };
        let Some(probe) = self.probing.get_mut(&candidate.endpoint) else {
            return Vec::new();
        };
        probe.attested = Some(report);
        // The binding: the pairing channel must present the very key SPDM attested.
        vec![Action::CheckBinding {
            candidate: candidate.clone(),
            fingerprint,
        }]
    }

    /// The pairing channel at `candidate` was checked against the attested identity.
    pub fn binding_checked<E: Display>(
        &mut self,
        candidate: &Candidate,
        check: IdentityCheck<E>,
        unix_now: u64,
    ) -> Vec<Action> {
        let Some(report) = self
            .probing
            .get(&candidate.endpoint)
            .and_then(|p| p.attested.clone())
        else {
            return Vec::new();
        };
        match (check, report.fingerprint) {
            (IdentityCheck::Answered, Some(fingerprint)) => {
                let proof = Proof {
                    fingerprint,
                    common_name: report.common_name.as_deref(),
                    attestation: report.outcome,
                    ca_key: report.ca_key,
                };
                self.probe_succeeded(candidate, &proof, unix_now)
            }
            _ => self.probe_failed(candidate),
        }
    }

    /// `"attestation": "off"`: the identity `candidate` proved in a TLS handshake, or why
    /// there is none.
    pub fn identity_captured<E: Display>(
        &mut self,
        candidate: &Candidate,
        result: Result<Captured, E>,
        unix_now: u64,
    ) -> Vec<Action> {
        if !self.probing.contains_key(&candidate.endpoint) {
            return Vec::new();
        }
        match result {
            Ok(captured) => {
                let proof = Proof {
                    fingerprint: captured.fingerprint,
                    common_name: captured.common_name.as_deref(),
                    attestation: AttestationOutcome::NotAttested,
                    ca_key: None,
                };
                self.probe_succeeded(candidate, &proof, unix_now)
            }
            Err(_) => self.probe_failed(candidate),
        }
    }

    /// Pairing with `candidate` succeeded: it proved `proof`. Pins it and reports once.
    fn probe_succeeded(
        &mut self,
        candidate: &Candidate,
        proof: &Proof<'_>,
        unix_now: u64,
    ) -> Vec<Action> {
        let introduced = self
            .probing
            .remove(&candidate.endpoint)
            .is_some_and(|p| p.introduced);
        let signal = |ok| (!introduced).then_some(Action::PeerProvisioned(ok));
        if !self.provisioned
            || self.own_fingerprint == Some(proof.fingerprint)
            || !proof.attestation.admits()
            || (introduced && self.revoked(&proof.fingerprint, proof.ca_key.as_ref()))
        {
            // Provisioning was lost meanwhile, the "peer" is this BMC itself, it was refused,
            // or (introduced) revoked meanwhile.
            return [Action::SyncPins]
                .into_iter()
                .chain(signal(false))
                .collect();
        }
        let trust_mode = if introduced {
            TrustMode::Anchored
        } else {
            self.settings.trust_mode
        };
        let mut actions = self.pin(
            candidate.endpoint,
            candidate.name.as_deref(),
            proof,
            trust_mode,
            unix_now,
        );
        actions.extend(signal(true));
        actions
    }

    /// The listener asks whether to let in a connection that presented `fingerprint` from
    /// `from`: pinned and admitted peers yes; in anchored mode an unpinned client whose chain
    /// verified to an anchor only after attestation (concurrent connections of one identity
    /// share it); anyone else no. The answer comes as [`Action::Admit`].
    pub fn admission_requested(
        &mut self,
        fingerprint: Fingerprint,
        from: SocketAddr,
    ) -> Vec<Action> {
        if self.admitting.contains(&fingerprint) {
            return Vec::new();
        }
        if self.pins().contains(&fingerprint) {
            return vec![Action::Admit {
                fingerprint,
                admitted: true,
            }];
        }
        let known = self.all_pins().contains(&fingerprint);
        if known
            || !self.provisioned
            || !self.settings.attestation
            || !self.anchored()
            || self.revoked(&fingerprint, None)
            || self.own_fingerprint == Some(fingerprint)
        {
            // Quarantined, not ready, or not a mode that admits anyone unnamed.
            return vec![Action::Admit {
                fingerprint,
                admitted: false,
            }];
        }
        self.admitting.insert(fingerprint);
        vec![Action::Attest {
            purpose: AttestPurpose::Admission { fingerprint, from },
            address: self.spdm_address(from),
            policy: AttestPolicy::Anchored,
        }]
    }

    fn admission_attested<E: Display>(
        &mut self,
        fingerprint: Fingerprint,
        from: SocketAddr,
        result: Result<AttestationReport, E>,
        unix_now: u64,
    ) -> Vec<Action> {
        if !self.admitting.remove(&fingerprint) {
            // Not an admission this machine asked for.
            return Vec::new();
        }
        let mut actions = match result {
            Ok(report)
                if report.outcome.vouches()
                    && report.fingerprint == Some(fingerprint)
                    && !self.revoked(&fingerprint, report.ca_key.as_ref()) =>
            {
                let proof = Proof {
                    fingerprint,
                    common_name: report.common_name.as_deref(),
                    attestation: report.outcome,
                    ca_key: report.ca_key,
                };
                // Its pairing port is assumed to be ours (the connection came from an
                // ephemeral port); discovery corrects the address if it differs.
                let endpoint = SocketAddr::new(from.ip(), self.settings.pairing_port);
                self.admit_incoming(endpoint, &proof, unix_now)
                    .unwrap_or_default()
            }
            _ => Vec::new(),
        };
        let admitted = self.pins().contains(&fingerprint);
        actions.push(Action::Admit {
            fingerprint,
            admitted,
        });
        actions
    }

    /// `anchored` mode: pins a peer whose attestation vouched for the identity it presented
    /// in TLS. `None` when the rules refuse it.
    fn admit_incoming(
        &mut self,
        endpoint: SocketAddr,
        proof: &Proof<'_>,
        unix_now: u64,
    ) -> Option<Vec<Action>> {
        if !self.provisioned
            || !self.anchored()
            || self.own_fingerprint == Some(proof.fingerprint)
            || !proof.attestation.vouches()
        {
            return None;
        }
        if self.all_pins().contains(&proof.fingerprint) {
            // Pinned meanwhile (or quarantined): nothing to add.
            return Some(Vec::new());
        }
        Some(self.pin(endpoint, None, proof, TrustMode::Anchored, unix_now))
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
            unpaired_by_peer: false,
            boot_id: 0,
            ca_key: proof.ca_key,
        };
        // Paired anew: it is no longer owed a goodbye.
        self.farewells.retain(|f| *f != fingerprint);
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
        self.peers.insert(id.clone(), Peer::new(record));
        actions.extend([Action::Persist, Action::SyncPins]);
        actions.extend(self.start_link(&id));
        actions.push(Action::Publish);
        actions
    }

    /// `Reattest()` on a peer object: attest it again against its pin.
    ///
    /// # Errors
    /// [`Refusal::ResourceNotFound`] for an unknown peer, [`Refusal::NotAllowed`] with
    /// attestation off, [`Refusal::Unavailable`] while one is already running.
    pub fn reattest(&mut self, id: &PeerId) -> Result<Vec<Action>, Refusal> {
        let Some(peer) = self.peers.get(id) else {
            return Err(Refusal::ResourceNotFound(format!("no paired peer {id}")));
        };
        if !self.settings.attestation {
            return Err(Refusal::NotAllowed(
                "attestation is off in the configuration".into(),
            ));
        }
        if self.reattesting.contains(id) {
            return Err(Refusal::Unavailable(format!(
                "a re-attestation of {id} is already running"
            )));
        }
        let action = Action::Attest {
            purpose: AttestPurpose::Reattest(id.clone()),
            address: self.spdm_address(peer.record.endpoint()),
            policy: AttestPolicy::Pinned(peer.record.fingerprint),
        };
        self.reattesting.insert(id.clone());
        Ok(vec![action])
    }

    /// The result of `Reattest()`. Only a result in which the pinned identity proved itself
    /// changes anything: an authenticated rejection quarantines the peer (pin kept, sessions
    /// closed, not accepted), a pass lifts it. A peer that does not answer, or answers with
    /// another identity, changes nothing.
    fn reattested<E: Display>(
        &mut self,
        id: &PeerId,
        result: Result<AttestationReport, E>,
        unix_now: u64,
        operator: bool,
    ) -> Vec<Action> {
        self.reattesting.remove(id);
        let actions = self.record_reattestation(id, result, unix_now);
        if operator {
            return actions;
        }
        // Nobody waits for an automatic one: its verdict is recorded or dropped alike.
        actions
            .into_iter()
            .filter(|a| !matches!(a, Action::ReattestDone { .. }))
            .collect()
    }

    fn record_reattestation<E: Display>(
        &mut self,
        id: &PeerId,
        result: Result<AttestationReport, E>,
        unix_now: u64,
    ) -> Vec<Action> {
        let done = |result| Action::ReattestDone {
            id: id.clone(),
            result,
        };
        let Some(peer) = self.peers.get_mut(id) else {
            return vec![done(Err(Refusal::ResourceNotFound(format!(
                "{id} was unpaired during its re-attestation"
            ))))];
        };
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                return vec![done(Err(Refusal::Unavailable(format!(
                    "re-attestation failed: {e}"
                ))))];
            }
        };
        match report.fingerprint {
            Some(fp) if fp == peer.record.fingerprint => {}
            // Nothing about the pinned identity was proven (nothing, or another identity):
            // no state change.
            _ => {
                return vec![done(Err(Refusal::Unavailable(format!(
                    "the peer did not prove its pinned identity ({}): {}",
                    report.outcome.as_str(),
                    report.reason.as_deref().unwrap_or("no reason given")
                ))))];
            }
        }
        let was_quarantined = peer.quarantined();
        peer.record.attestation = report.outcome;
        peer.record.attested_at = unix_now;
        if report.ca_key.is_some() {
            peer.record.ca_key = report.ca_key;
        }
        let mut actions = vec![Action::Persist, Action::SyncPins];
        if peer.quarantined() {
            peer.outgoing = ConnState::NotConnected;
            actions.push(Action::StopLink(id.clone()));
        } else if was_quarantined {
            actions.extend(self.start_link(id));
        }
        actions.push(Action::Publish);
        actions.push(done(Ok(())));
        actions
    }

    fn fresh_id(&self, name: &str) -> PeerId {
        let base = PeerId::from_name(name);
        if !self.peers.contains_key(&base) {
            return base;
        }
        (2u32..)
            .filter_map(|n| PeerId::try_from(format!("{}_{n}", base.as_str())).ok())
            .find(|id| !self.peers.contains_key(id))
            .unwrap_or(base)
    }

    /// `Unpair()` on a peer object.
    ///
    /// # Errors
    /// [`Refusal::ResourceNotFound`] if the peer does not exist.
    pub fn unpair(&mut self, id: &PeerId) -> Result<Vec<Action>, Refusal> {
        let Some(peer) = self.peers.get(id) else {
            return Err(Refusal::ResourceNotFound(format!("no paired peer {id}")));
        };
        if self.is_member(&peer.record.fingerprint)
            && self
                .group_list
                .as_ref()
                .is_some_and(|l| l.revoked.len() >= super::group::MAX_REVOKED)
        {
            return Err(Refusal::NotAllowed(
                "the group's revocation list is full: start a new group (new root) first".into(),
            ));
        }
        let Some(peer) = self.peers.remove(id) else {
            return Err(Refusal::ResourceNotFound(format!("no paired peer {id}")));
        };
        self.recheck_attempts.remove(id);
        let fingerprint = peer.record.fingerprint;
        let revocation = self.revoke_member(&peer.record);
        // Tell it at its next session, unless it is the one that unpaired us first, or another
        // record still pins the same identity.
        if !peer.record.unpaired_by_peer
            && !self.all_pins().contains(&fingerprint)
            && !self.farewells.contains(&fingerprint)
        {
            if self.farewells.len() >= MAX_FAREWELLS {
                self.farewells.remove(0);
            }
            self.farewells.push(fingerprint);
        }
        let mut actions = vec![
            Action::StopLink(id.clone()),
            Action::Persist,
            Action::SyncPins,
            Action::Publish,
        ];
        actions.extend(revocation);
        Ok(actions)
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

    /// A pinned peer opened a session to us. Unknown or quarantined fingerprints (a pin
    /// removed or quarantined during the handshake) change nothing.
    pub fn incoming_up(&mut self, fp: &Fingerprint, unix_now: u64) -> Vec<Action> {
        let before = self.aggregate();
        let Some(peer) = self.find_by_fingerprint(fp) else {
            return Vec::new();
        };
        if !peer.admitted() {
            return Vec::new();
        }
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
        let dialled = self.peers.get(&id).is_some_and(|p| self.may_dial(p));
        if snapshot.1 != ConnState::Connected && dialled {
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

    /// A neighbour named `name` (LLDP SystemName or static peer name) is reachable at
    /// `endpoint`. A paired peer seen where we already dial it is woken; one seen at a new
    /// address is only moved there after its pinned identity answers ([`Action::VerifyMove`]).
    /// Discovery never changes a pin, and never reaches a peer the gate does not let through.
    pub fn neighbour_seen(&self, name: Option<&str>, endpoint: SocketAddr) -> Vec<Action> {
        let by_name = name.and_then(|n| self.peers.values().find(|p| p.record.name == n));
        if let Some(peer) = by_name {
            if !self.may_dial(peer) {
                return Vec::new();
            }
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
            .filter(|p| p.record.endpoint() == endpoint && self.may_dial(p))
            .map(|p| Action::Wake(p.record.id.clone()))
            .collect()
    }

    /// The result of [`Action::VerifyMove`]: if the pinned identity of `id` answered at
    /// `endpoint`, dial it there from now on (through the gate); if another identity
    /// answered, flag the mismatch; if nothing answered, change nothing.
    pub fn move_checked<E>(
        &mut self,
        id: &PeerId,
        endpoint: SocketAddr,
        fingerprint: Fingerprint,
        check: IdentityCheck<E>,
    ) -> Vec<Action> {
        match check {
            IdentityCheck::Answered => self.peer_moved(id, endpoint, fingerprint),
            IdentityCheck::OtherIdentity(_) => self.outgoing_refused(id),
            IdentityCheck::Unreached(_) => Vec::new(),
        }
    }

    fn peer_moved(
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
        let mut actions = vec![Action::Persist];
        actions.extend(self.start_link(id));
        actions.push(Action::Publish);
        actions
    }

    /// The peer with pin `fp` said `Bye { Unpaired }` inside an authenticated session: its
    /// operator unpaired us. Its record is marked (and kept, pin included, for the operator to
    /// see); it is no longer dialled or accepted until an operator pairs it anew
    /// (`ProvisionPeer`, or anchored admission of its identity after attestation).
    pub fn peer_unpaired_us(&mut self, fp: &Fingerprint) -> Vec<Action> {
        let Some(peer) = self.find_by_fingerprint(fp) else {
            return Vec::new();
        };
        if peer.record.unpaired_by_peer {
            return Vec::new();
        }
        peer.record.unpaired_by_peer = true;
        peer.outgoing = ConnState::NotConnected;
        let id = peer.record.id.clone();
        vec![
            Action::StopLink(id),
            Action::Persist,
            Action::SyncPins,
            Action::Publish,
        ]
    }

    /// A session of `fp`, which we unpaired, was answered with `Bye { Unpaired }`: it knows.
    pub fn farewell_delivered(&mut self, fp: &Fingerprint) -> Vec<Action> {
        let before = self.farewells.len();
        self.farewells.retain(|f| f != fp);
        if self.farewells.len() == before {
            return Vec::new();
        }
        vec![Action::Persist, Action::SyncPins]
    }

    /// The `Hello` of a session `fp` opened to us carried `boot_id`. Another value than the
    /// last one seen means the peer rebooted since, perhaps into other firmware: it is
    /// re-attested against its pin (under the rules of `Reattest()`: an authenticated
    /// rejection quarantines it). The first value seen is only recorded.
    pub fn peer_booted(&mut self, fp: &Fingerprint, boot_id: u64) -> Vec<Action> {
        if boot_id == 0 {
            return Vec::new();
        }
        let Some(peer) = self.find_by_fingerprint(fp) else {
            return Vec::new();
        };
        if !peer.admitted() || peer.record.boot_id == boot_id {
            return Vec::new();
        }
        let rebooted = peer.record.boot_id != 0;
        peer.record.boot_id = boot_id;
        let id = peer.record.id.clone();
        let mut actions = vec![Action::Persist];
        if rebooted {
            actions.extend(self.recheck(&id, RecheckCause::Rebooted));
        }
        actions
    }

    /// The periodic timer: re-attests every pinned peer (quarantined ones too, so a peer
    /// whose measurements are good again is let back in) whose last attestation is older
    /// than `reattest_interval`; a peer whose last try reached no verdict is tried again
    /// after [`RECHECK_RETRY`] (or the interval, if shorter).
    pub fn tick(&mut self, unix_now: u64) -> Vec<Action> {
        let Some(interval) = self.settings.reattest_interval else {
            return Vec::new();
        };
        let retry = interval.min(RECHECK_RETRY);
        let due: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| !p.record.unpaired_by_peer)
            .filter(|p| unix_now >= p.record.attested_at.saturating_add(interval))
            .filter(|p| {
                self.recheck_attempts
                    .get(&p.record.id)
                    .is_none_or(|tried| unix_now >= tried.saturating_add(retry))
            })
            .map(|p| p.record.id.clone())
            .collect();
        let mut actions = Vec::new();
        for id in due {
            self.recheck_attempts.insert(id.clone(), unix_now);
            actions.extend(self.recheck(&id, RecheckCause::Interval));
        }
        actions
    }

    /// An automatic re-attestation of `id` against its pin, unless attestation is off, this
    /// BMC is unprovisioned, or one is already running.
    fn recheck(&mut self, id: &PeerId, cause: RecheckCause) -> Vec<Action> {
        let Some(peer) = self.peers.get(id) else {
            return Vec::new();
        };
        if !self.settings.attestation || !self.provisioned || self.reattesting.contains(id) {
            return Vec::new();
        }
        let action = Action::Attest {
            purpose: AttestPurpose::Recheck(id.clone(), cause),
            address: self.spdm_address(peer.record.endpoint()),
            policy: AttestPolicy::Pinned(peer.record.fingerprint),
        };
        self.reattesting.insert(id.clone());
        vec![action]
    }

    /// `FactoryReset.Reset()`: every pin and peer, every owed goodbye and our identity go;
    /// `Provisioned` becomes false. The time floor stays (it is knowledge about time, not
    /// about anyone), and so do the operator's trust anchors (the shell's erase keeps them).
    pub fn factory_reset(&mut self) -> Vec<Action> {
        let mut actions: Vec<Action> = self.peers.keys().cloned().map(Action::StopLink).collect();
        self.peers.clear();
        self.farewells.clear();
        self.probing.clear();
        self.admitting.clear();
        self.reattesting.clear();
        self.recheck_attempts.clear();
        // An authority's group ends (its root key is erased with the identity; a new group
        // starts at the next start of the daemon); a member leaves its group.
        self.group_list = None;
        self.membership = None;
        self.provisioned = false;
        self.identity_valid = false;
        self.own_fingerprint = None;
        actions.extend([
            Action::EraseIdentity,
            Action::SyncPins,
            Action::Persist,
            Action::Publish,
        ]);
        actions
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

/// The group authority and group membership (see [`super::group`]).
impl Pairing {
    /// Makes this BMC the group authority (configuration). Returns the actions that put its
    /// group list in force: signed anew at every start, so sessions can be sent it.
    pub fn enable_group_authority(&mut self) -> Vec<Action> {
        self.group_authority = true;
        let list = self.group_list.get_or_insert_with(|| GroupList {
            version: 1,
            ..GroupList::default()
        });
        vec![Action::PublishGroupList(list.clone())]
    }

    /// True when this BMC is configured as the group authority.
    pub fn group_authority(&self) -> bool {
        self.group_authority
    }

    /// The authority's current list, if it is one.
    pub fn issued_list(&self) -> Option<&GroupList> {
        self.group_list.as_ref().filter(|_| self.group_authority)
    }

    /// The group this BMC joined, if any.
    pub fn membership(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }

    /// Peers chaining to a trust anchor are admitted (after attestation): in anchored mode,
    /// and on a group member (its anchor is the group root).
    pub fn anchored(&self) -> bool {
        self.settings.trust_mode == TrustMode::Anchored || self.membership.is_some()
    }

    fn is_member(&self, identity: &Fingerprint) -> bool {
        self.issued_list()
            .is_some_and(|l| l.members.iter().any(|m| m.identity == *identity))
    }

    /// Revoked by the list this BMC holds (as member) or issued (as authority).
    fn revoked(&self, identity: &Fingerprint, ca_key: Option<&Fingerprint>) -> bool {
        self.membership
            .as_ref()
            .is_some_and(|m| m.list.revokes(identity, ca_key))
            || self
                .issued_list()
                .is_some_and(|l| l.revokes(identity, ca_key))
    }

    /// Authority: `record` was unpaired; if it was a member, it leaves the list and is
    /// revoked (identity and CA key), in a new version. The caller checked the capacity.
    fn revoke_member(&mut self, record: &PeerRecord) -> Option<Action> {
        if !self.is_member(&record.fingerprint) {
            return None;
        }
        let list = self.group_list.as_mut()?;
        let member = list
            .members
            .iter()
            .position(|m| m.identity == record.fingerprint)?;
        let gone = list.members.remove(member);
        if list.revoked.len() < super::group::MAX_REVOKED {
            list.revoked.push(Revoked {
                identity: gone.identity,
                ca_key: gone.ca_key,
            });
        }
        list.version = list.version.saturating_add(1);
        Some(Action::PublishGroupList(list.clone()))
    }

    /// Authority: the CSR of `id`, allowed by [`Pairing::may_sign`], was signed. The peer
    /// becomes a member of the list (a new version), so the other members pair with it.
    pub fn signed(&mut self, id: &PeerId) -> Vec<Action> {
        let Some(peer) = self.peers.get(id) else {
            return Vec::new();
        };
        let (Some(ca_key), true) = (peer.record.ca_key, self.group_authority) else {
            return Vec::new();
        };
        let member = Member {
            identity: peer.record.fingerprint,
            ca_key,
            endpoint: peer.record.endpoint(),
        };
        let Some(list) = self.group_list.as_mut() else {
            return Vec::new();
        };
        if list.members.contains(&member) {
            return Vec::new();
        }
        if list.members.len() >= super::group::MAX_MEMBERS {
            return Vec::new();
        }
        list.members.retain(|m| m.identity != member.identity);
        list.members.push(member);
        list.version = list.version.saturating_add(1);
        vec![Action::Persist, Action::PublishGroupList(list.clone())]
    }

    /// A group list arrived from the peer `from` over its pinned session.
    ///
    /// Not yet a member: a list from a peer this BMC's operator paired with by name
    /// (`ProvisionPeer`, first contact) is that authority's offer, and the operator's call
    /// was the consent: ask it to sign ([`Action::RequestSigning`]). A member: only its
    /// authority's list counts, only if the group root signed it and it is newer than the
    /// one held; it then replaces it (persisted), revoked peers lose their pins and
    /// sessions, and members not yet paired are introduced (attested against the identity
    /// the list names, then pinned as anchored). Only the member with the lower identity
    /// dials, the other admits it by its chain to the group root.
    ///
    /// # Errors
    /// [`ListError`]: nothing changes.
    pub fn group_list_received(
        &mut self,
        from: &Fingerprint,
        bytes: &[u8],
    ) -> Result<Vec<Action>, ListError> {
        let Some(membership) = &self.membership else {
            let offer = self.peers.values().any(|p| {
                p.record.fingerprint == *from
                    && p.admitted()
                    && p.record.trust_mode == TrustMode::FirstContact
            });
            return Ok(if offer && self.provisioned && !self.group_authority {
                vec![Action::RequestSigning { authority: *from }]
            } else {
                Vec::new()
            });
        };
        if membership.authority != *from {
            return Ok(Vec::new());
        }
        let root = membership
            .root()
            .ok_or(ListError::Malformed("stored root key"))?;
        let list = GroupList::verify(bytes, &root)?;
        if list.version <= membership.list.version {
            if list.version == membership.list.version && list == membership.list {
                // The same list again (every session start): only the introductions.
                return Ok(self.introduce());
            }
            return Err(ListError::Stale {
                got: list.version,
                held: membership.list.version,
            });
        }
        let revoked = list.revoked_keys();
        if let Some(m) = self.membership.as_mut() {
            m.list = list;
        }
        let mut actions = vec![Action::Persist];
        let gone: Vec<PeerId> = self
            .peers
            .values()
            .filter(|p| p.record.fingerprint != *from)
            .filter(|p| {
                revoked.contains(&p.record.fingerprint)
                    || p.record.ca_key.is_some_and(|k| revoked.contains(&k))
            })
            .map(|p| p.record.id.clone())
            .collect();
        for id in gone {
            self.peers.remove(&id);
            self.recheck_attempts.remove(&id);
            actions.push(Action::StopLink(id));
        }
        actions.push(Action::SyncPins);
        actions.extend(self.introduce());
        actions.push(Action::Publish);
        Ok(actions)
    }

    /// Probes of the members of the held list that are not paired yet, not revoked, not
    /// this BMC, and whose identity is above ours (the lower one dials).
    fn introduce(&mut self) -> Vec<Action> {
        let (Some(membership), Some(own)) = (&self.membership, self.own_fingerprint) else {
            return Vec::new();
        };
        if !self.provisioned || !self.settings.attestation {
            return Vec::new();
        }
        let due: Vec<Member> = membership
            .list
            .members
            .iter()
            .filter(|m| m.identity != own && own < m.identity)
            .filter(|m| !membership.list.revokes(&m.identity, Some(&m.ca_key)))
            .filter(|m| !self.all_pins().contains(&m.identity))
            // Unpaired here by this BMC's operator: not brought back by the list.
            .filter(|m| !self.farewells.contains(&m.identity))
            .filter(|m| !self.probing.contains_key(&m.endpoint))
            .cloned()
            .collect();
        let mut actions = Vec::new();
        for m in due {
            let candidate = Candidate {
                endpoint: m.endpoint,
                name: None,
            };
            self.probing.insert(
                m.endpoint,
                Probe {
                    attested: None,
                    introduced: true,
                },
            );
            actions.push(Action::Attest {
                purpose: AttestPurpose::Probe(candidate),
                address: self.spdm_address(m.endpoint),
                policy: AttestPolicy::Pinned(m.identity),
            });
        }
        actions
    }

    /// The authority `authority` signed our CA key and the shell installed the certificate
    /// and the group root (`root_spki` is its key) as our anchor: this BMC is a member now,
    /// and admits peers chaining to that root. The authority's list comes at its next
    /// session (it sends it at every session start).
    pub fn joined(&mut self, authority: Fingerprint, root_spki: &[u8]) -> Vec<Action> {
        let is_paired = self
            .peers
            .values()
            .any(|p| p.record.fingerprint == authority && p.admitted());
        if !is_paired || self.group_authority {
            return Vec::new();
        }
        self.membership = Some(Membership {
            authority,
            root_spki: crate::hex::hex_encode(root_spki),
            list: GroupList::default(),
        });
        vec![Action::Persist, Action::Publish]
    }
}

/// What a peer proved when it was paired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Proof<'a> {
    fingerprint: Fingerprint,
    common_name: Option<&'a str>,
    attestation: AttestationOutcome,
    ca_key: Option<Fingerprint>,
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
    use std::convert::Infallible;

    use super::*;
    use proptest::prelude::*;

    /// No verdict was reached (as the actor reports an unreachable attestation service).
    const UNREACHED: Result<AttestationReport, &str> = Err("unreachable");

    fn fp(n: u8) -> Fingerprint {
        Fingerprint([n; 32])
    }

    fn candidate(port: u16) -> Candidate {
        Candidate {
            endpoint: SocketAddr::from(([127, 0, 0, 1], port)),
            name: None,
        }
    }

    fn report(
        outcome: AttestationOutcome,
        key: Option<u8>,
        name: Option<&str>,
    ) -> AttestationReport {
        AttestationReport {
            outcome,
            fingerprint: key.map(fp),
            common_name: name.map(str::to_owned),
            reason: None,
            ca_key: None,
        }
    }

    fn trusted(key: u8, name: &str) -> Result<AttestationReport, &'static str> {
        Ok(report(AttestationOutcome::Trusted, Some(key), Some(name)))
    }

    fn settings(trust_mode: TrustMode) -> Settings {
        Settings {
            trust_mode,
            attestation: true,
            pairing_port: 8090,
            attestation_port: 4194,
            reattest_interval: Some(1000),
        }
    }

    fn provisioned_in(trust_mode: TrustMode) -> Pairing {
        let (mut p, _) = Pairing::restore(Persisted::default(), None, settings(trust_mode));
        assert_eq!(
            p.provision(&Request::SelfIdentity).unwrap(),
            vec![Action::EnsureIdentity]
        );
        p.identity_ready(fp(0));
        p
    }

    fn provisioned() -> Pairing {
        provisioned_in(TrustMode::FirstContact)
    }

    fn probe(c: &Candidate) -> AttestPurpose {
        AttestPurpose::Probe(c.clone())
    }

    /// The operator names the peer on `port`; it attests as `key`/`name` and its channel
    /// presents that key. Returns the actions of the last step.
    fn pair_with(p: &mut Pairing, port: u16, key: u8, name: &str) -> Vec<Action> {
        let c = candidate(port);
        p.provision(&Request::Peer(c.clone())).unwrap();
        let check = p.attested(probe(&c), trusted(key, name), 1);
        assert_eq!(
            check,
            vec![Action::CheckBinding {
                candidate: c.clone(),
                fingerprint: fp(key)
            }]
        );
        p.binding_checked(&c, IdentityCheck::<Infallible>::Answered, 1)
    }

    fn quarantine(p: &mut Pairing, id: &PeerId) -> Vec<Action> {
        let attest = p.reattest(id).unwrap();
        assert!(matches!(
            attest.as_slice(),
            [Action::Attest {
                policy: AttestPolicy::Pinned(_),
                ..
            }]
        ));
        let key = p.peers()[id].record.fingerprint;
        let rejected = AttestationReport {
            outcome: AttestationOutcome::Rejected,
            fingerprint: Some(key),
            common_name: None,
            reason: Some("measurement 1 mismatched".into()),
            ca_key: None,
        };
        p.attested(
            AttestPurpose::Reattest(id.clone()),
            Ok::<_, Infallible>(rejected),
            5,
        )
    }

    fn dials(actions: &[Action]) -> Vec<&PeerId> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::StartLink { id, .. } => Some(id),
                Action::VerifyMove { id, .. } => Some(id),
                Action::Wake(id) => Some(id),
                _ => None,
            })
            .collect()
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
    fn peers_need_self_provisioning_first_and_refusal_changes_nothing() {
        let (mut p, _) = Pairing::restore(
            Persisted::default(),
            None,
            settings(TrustMode::FirstContact),
        );
        let before = p.persisted();
        assert!(matches!(
            p.provision(&Request::Peer(candidate(1))),
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
    fn a_probe_attests_under_the_trust_mode_at_the_spdm_port() {
        let mut p = provisioned();
        let c = candidate(9000);
        assert_eq!(
            p.provision(&Request::Peer(c.clone())).unwrap(),
            vec![
                Action::SyncPins,
                Action::Attest {
                    purpose: probe(&c),
                    address: SocketAddr::from(([127, 0, 0, 1], 4194)),
                    policy: AttestPolicy::FirstContact,
                }
            ]
        );
        // The candidate's address has precedence while the pairing runs.
        assert!(p.preferred_addresses().contains(&c.endpoint.ip()));
        let mut a = provisioned_in(TrustMode::Anchored);
        assert!(matches!(
            a.provision(&Request::Peer(c)).unwrap().as_slice(),
            [
                Action::SyncPins,
                Action::Attest {
                    policy: AttestPolicy::Anchored,
                    ..
                }
            ]
        ));
    }

    #[test]
    fn duplicate_probe_is_unavailable() {
        let mut p = provisioned();
        p.provision(&Request::Peer(candidate(1))).unwrap();
        assert!(matches!(
            p.provision(&Request::Peer(candidate(1))),
            Err(Refusal::Unavailable(_))
        ));
        assert_eq!(
            p.attested(probe(&candidate(1)), UNREACHED, 1),
            vec![Action::SyncPins, Action::PeerProvisioned(false)]
        );
        assert!(p.preferred_addresses().is_empty());
        assert!(p.provision(&Request::Peer(candidate(1))).is_ok());
    }

    #[test]
    fn successful_probe_pins_and_signals_once() {
        let mut p = provisioned();
        let actions = pair_with(&mut p, 1, 7, "bmc-b");
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
        assert_eq!(peer.record.attestation, AttestationOutcome::Trusted);
        assert_eq!(p.aggregate(), ConnState::InProgress);
    }

    #[test]
    fn verdicts_that_do_not_vouch_pin_nothing() {
        let refusals = [
            Ok(report(AttestationOutcome::Rejected, Some(7), None)),
            Ok(report(AttestationOutcome::NotAttested, Some(7), None)),
            Ok(report(AttestationOutcome::Trusted, None, None)),
            Ok(report(AttestationOutcome::Trusted, Some(0), Some("me"))),
            UNREACHED,
        ];
        for verdict in refusals {
            let mut p = provisioned();
            let c = candidate(1);
            p.provision(&Request::Peer(c.clone())).unwrap();
            assert_eq!(
                p.attested(probe(&c), verdict.clone(), 1),
                vec![Action::SyncPins, Action::PeerProvisioned(false)],
                "{verdict:?}"
            );
            assert!(p.all_pins().is_empty());
        }
    }

    #[test]
    fn a_channel_with_another_key_than_the_attested_one_pins_nothing() {
        for check in [
            IdentityCheck::OtherIdentity(fp(8)),
            IdentityCheck::Unreached("refused"),
        ] {
            let mut p = provisioned();
            let c = candidate(1);
            p.provision(&Request::Peer(c.clone())).unwrap();
            p.attested(probe(&c), trusted(7, "bmc-b"), 1);
            assert_eq!(
                p.binding_checked(&c, check, 1),
                vec![Action::SyncPins, Action::PeerProvisioned(false)]
            );
            assert!(p.all_pins().is_empty());
        }
    }

    #[test]
    fn a_binding_check_nobody_asked_for_changes_nothing() {
        let mut p = provisioned();
        let c = candidate(1);
        assert!(
            p.binding_checked(&c, IdentityCheck::<Infallible>::Answered, 1)
                .is_empty()
        );
        p.provision(&Request::Peer(c.clone())).unwrap();
        // Not attested yet: a binding check cannot short-cut the attestation.
        assert!(
            p.binding_checked(&c, IdentityCheck::<Infallible>::Answered, 1)
                .is_empty()
        );
        assert!(p.all_pins().is_empty());
    }

    #[test]
    fn attestation_off_pins_the_captured_identity_unattested() {
        let (mut p, _) = Pairing::restore(
            Persisted::default(),
            Some(fp(0)),
            Settings {
                attestation: false,
                ..settings(TrustMode::FirstContact)
            },
        );
        p.identity_ready(fp(0));
        let c = candidate(1);
        assert_eq!(
            p.provision(&Request::Peer(c.clone())).unwrap(),
            vec![Action::SyncPins, Action::CaptureIdentity(c.clone())]
        );
        let captured = Captured {
            fingerprint: fp(7),
            common_name: Some("bmc-b".into()),
        };
        let actions = p.identity_captured(&c, Ok::<_, Infallible>(captured), 3);
        assert!(actions.contains(&Action::PeerProvisioned(true)));
        let peer = &p.peers()[&PeerId::from_name("bmc-b")];
        assert_eq!(peer.record.attestation, AttestationOutcome::NotAttested);
        assert_eq!(peer.record.attested_at, 0);
        assert!(matches!(
            p.reattest(&PeerId::from_name("bmc-b")),
            Err(Refusal::NotAllowed(_))
        ));
    }

    #[test]
    fn repairing_replaces_the_pin_and_keeps_the_id() {
        let mut p = provisioned();
        pair_with(&mut p, 1, 7, "bmc-b");
        pair_with(&mut p, 1, 8, "bmc-b");
        assert_eq!(p.pins(), [fp(8)].into());
        assert_eq!(p.peers().len(), 1);
    }

    #[test]
    fn anchored_admission_attests_then_pins_only_in_anchored_mode() {
        let from = SocketAddr::from(([127, 0, 0, 7], 40000));
        let mut p = provisioned();
        assert_eq!(
            p.admission_requested(fp(9), from),
            vec![Action::Admit {
                fingerprint: fp(9),
                admitted: false
            }],
            "first-contact never admits"
        );
        let mut a = provisioned_in(TrustMode::Anchored);
        assert_eq!(
            a.admission_requested(fp(9), from),
            vec![Action::Attest {
                purpose: AttestPurpose::Admission {
                    fingerprint: fp(9),
                    from
                },
                address: SocketAddr::from(([127, 0, 0, 7], 4194)),
                policy: AttestPolicy::Anchored,
            }]
        );
        assert!(
            a.admission_requested(fp(9), from).is_empty(),
            "a second connection waits for the same attestation"
        );
        let purpose = AttestPurpose::Admission {
            fingerprint: fp(9),
            from,
        };
        let actions = a.attested(purpose, trusted(9, "bmc-c"), 1);
        assert!(actions.contains(&Action::Persist) && actions.contains(&Action::SyncPins));
        assert!(actions.contains(&Action::Admit {
            fingerprint: fp(9),
            admitted: true
        }));
        assert!(
            !actions
                .iter()
                .any(|x| matches!(x, Action::PeerProvisioned(_))),
            "no operator call to answer"
        );
        assert_eq!(a.pins(), [fp(9)].into());
        let peer = &a.peers()[&PeerId::from_name("bmc-c")];
        assert_eq!(peer.record.trust_mode, TrustMode::Anchored);
        assert_eq!(peer.record.port, 8090, "assumed to listen on our port");
        assert_eq!(
            a.admission_requested(fp(9), from),
            vec![Action::Admit {
                fingerprint: fp(9),
                admitted: true
            }],
            "already pinned"
        );
    }

    #[test]
    fn anchored_admission_refuses_what_attestation_does_not_vouch_for() {
        let from = SocketAddr::from(([127, 0, 0, 7], 40000));
        let verdicts = [
            Ok(report(AttestationOutcome::Rejected, Some(9), None)),
            Ok(report(AttestationOutcome::Trusted, Some(8), None)),
            Ok(report(AttestationOutcome::Trusted, None, None)),
            UNREACHED,
        ];
        for verdict in verdicts {
            let mut a = provisioned_in(TrustMode::Anchored);
            a.admission_requested(fp(9), from);
            let purpose = AttestPurpose::Admission {
                fingerprint: fp(9),
                from,
            };
            assert_eq!(
                a.attested(purpose, verdict.clone(), 1),
                vec![Action::Admit {
                    fingerprint: fp(9),
                    admitted: false
                }],
                "{verdict:?}"
            );
            assert!(a.all_pins().is_empty());
        }
        let mut a = provisioned_in(TrustMode::Anchored);
        assert_eq!(
            a.admission_requested(fp(0), from),
            vec![Action::Admit {
                fingerprint: fp(0),
                admitted: false
            }],
            "ourselves"
        );
    }

    #[test]
    fn authenticated_rejection_quarantines_and_a_pass_restores() {
        let mut p = provisioned();
        pair_with(&mut p, 1, 7, "bmc-b");
        let id = PeerId::from_name("bmc-b");
        let actions = quarantine(&mut p, &id);
        assert!(
            actions.contains(&Action::StopLink(id.clone())) && actions.contains(&Action::SyncPins)
        );
        assert!(actions.contains(&Action::ReattestDone {
            id: id.clone(),
            result: Ok(())
        }));
        assert!(p.pins().is_empty(), "not accepted while quarantined");
        assert_eq!(p.all_pins(), [fp(7)].into(), "the pin itself is kept");
        let (restored, resumed) = Pairing::restore(
            p.persisted(),
            Some(fp(0)),
            settings(TrustMode::FirstContact),
        );
        assert!(dials(&resumed).is_empty(), "quarantine survives restart");
        assert!(restored.pins().is_empty());
        assert_eq!(
            restored.peers()[&id].outgoing,
            ConnState::NotDetermined,
            "nothing is in progress for a quarantined peer"
        );
        p.reattest(&id).unwrap();
        let actions = p.attested(AttestPurpose::Reattest(id.clone()), trusted(7, "bmc-b"), 6);
        assert_eq!(dials(&actions), vec![&id]);
        assert_eq!(p.pins(), [fp(7)].into());
    }

    #[test]
    fn a_reattestation_that_proves_nothing_about_the_pin_changes_nothing() {
        for verdict in [
            trusted(8, "impostor"),
            Ok(report(AttestationOutcome::Rejected, None, None)),
            UNREACHED,
        ] {
            let mut p = provisioned();
            pair_with(&mut p, 1, 7, "bmc-b");
            let id = PeerId::from_name("bmc-b");
            let before = p.persisted();
            p.reattest(&id).unwrap();
            let actions = p.attested(AttestPurpose::Reattest(id.clone()), verdict.clone(), 7);
            assert!(
                matches!(
                    actions.as_slice(),
                    [Action::ReattestDone {
                        result: Err(Refusal::Unavailable(_)),
                        ..
                    }]
                ),
                "{verdict:?}: {actions:?}"
            );
            assert_eq!(p.persisted(), before, "{verdict:?}");
        }
    }

    #[test]
    fn one_reattestation_per_peer_at_a_time() {
        let mut p = provisioned();
        pair_with(&mut p, 1, 7, "bmc-b");
        let id = PeerId::from_name("bmc-b");
        p.reattest(&id).unwrap();
        assert!(matches!(p.reattest(&id), Err(Refusal::Unavailable(_))));
        p.attested(AttestPurpose::Reattest(id.clone()), UNREACHED, 1);
        assert!(p.reattest(&id).is_ok());
        assert!(matches!(
            p.reattest(&PeerId::from_name("nobody")),
            Err(Refusal::ResourceNotFound(_))
        ));
    }

    /// Bug: `peer_moved` started a dial without the quarantine check.
    #[test]
    fn a_quarantined_peer_is_not_dialled_when_discovery_moves_it() {
        let mut p = provisioned();
        pair_with(&mut p, 1, 7, "bmc-b");
        let id = PeerId::from_name("bmc-b");
        let moved_to = candidate(2).endpoint;
        // Quarantined while a move check was already running.
        let verify = p.neighbour_seen(Some("bmc-b"), moved_to);
        assert_eq!(dials(&verify), vec![&id]);
        quarantine(&mut p, &id);
        let actions = p.move_checked(&id, moved_to, fp(7), IdentityCheck::<Infallible>::Answered);
        assert!(dials(&actions).is_empty(), "{actions:?}");
        // Discovery reports it again: not even a move check dials it now.
        assert!(p.neighbour_seen(Some("bmc-b"), moved_to).is_empty());
        assert!(
            p.neighbour_seen(None, p.peers()[&id].record.endpoint())
                .is_empty()
        );
    }

    /// Bug: a certificate change restarted every peer's dialler without the quarantine check.
    #[test]
    fn a_quarantined_peer_is_not_dialled_when_our_certificates_change() {
        let mut p = provisioned();
        pair_with(&mut p, 1, 7, "bmc-b");
        pair_with(&mut p, 2, 8, "bmc-c");
        let b = PeerId::from_name("bmc-b");
        quarantine(&mut p, &b);
        let actions = p.certificates_changed();
        assert_eq!(dials(&actions), vec![&PeerId::from_name("bmc-c")]);
        assert!(actions.contains(&Action::Publish));
    }

    #[test]
    fn a_quarantined_peer_is_not_dialled_when_the_identity_is_recreated() {
        let mut p = provisioned();
        pair_with(&mut p, 1, 7, "bmc-b");
        let b = PeerId::from_name("bmc-b");
        quarantine(&mut p, &b);
        assert!(dials(&p.identity_ready(fp(1))).is_empty());
        p.identity_lost();
        assert!(dials(&p.identity_ready(fp(2))).is_empty());
    }

    #[test]
    fn a_quarantined_peer_is_not_accepted() {
        let mut p = provisioned_in(TrustMode::Anchored);
        let from = SocketAddr::from(([127, 0, 0, 7], 40000));
        p.admission_requested(fp(9), from);
        let purpose = AttestPurpose::Admission {
            fingerprint: fp(9),
            from,
        };
        p.attested(purpose, trusted(9, "bmc-c"), 1);
        let id = PeerId::from_name("bmc-c");
        quarantine(&mut p, &id);
        assert_eq!(
            p.admission_requested(fp(9), from),
            vec![Action::Admit {
                fingerprint: fp(9),
                admitted: false
            }],
            "no re-admission around the quarantine"
        );
        assert!(p.incoming_up(&fp(9), 3).is_empty());
        assert_eq!(p.peers()[&id].incoming, ConnState::NotDetermined);
    }

    #[test]
    fn an_incoming_session_wakes_a_backing_off_dialler() {
        let mut p = provisioned();
        pair_with(&mut p, 1, 7, "bmc-b");
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
        pair_with(&mut p, 1, 7, "bmc-b");
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
        pair_with(&mut p, 1, 7, "bmc-b");
        let actions = p.identity_lost();
        assert!(!p.provisioned());
        assert!(actions.contains(&Action::Persist));
        assert!(actions.contains(&Action::StopLink(PeerId::from_name("bmc-b"))));
        assert_eq!(p.pins(), [fp(7)].into());
        assert!(p.certificates_changed().is_empty(), "nothing to dial with");
        let (restored, _) = Pairing::restore(
            p.persisted(),
            Some(fp(0)),
            settings(TrustMode::FirstContact),
        );
        assert!(
            !restored.provisioned(),
            "loss persists until self is provisioned again"
        );
    }

    #[test]
    fn restore_resumes_links_only_when_provisioned() {
        let mut p = provisioned();
        pair_with(&mut p, 1, 7, "bmc-b");
        let (_, actions) = Pairing::restore(
            p.persisted(),
            Some(fp(0)),
            settings(TrustMode::FirstContact),
        );
        assert_eq!(dials(&actions), vec![&PeerId::from_name("bmc-b")]);
        let (q, actions) = Pairing::restore(p.persisted(), None, settings(TrustMode::FirstContact));
        assert!(dials(&actions).is_empty());
        assert!(!q.provisioned());
    }

    #[test]
    fn discovery_wakes_verifies_moves_and_never_repins() {
        let mut p = provisioned();
        pair_with(&mut p, 1, 7, "bmc-b");
        let id = PeerId::from_name("bmc-b");
        let pins = p.pins();
        assert_eq!(
            p.neighbour_seen(Some("bmc-b"), candidate(1).endpoint),
            vec![Action::Wake(id.clone())]
        );
        let moved_to = candidate(2).endpoint;
        assert_eq!(
            p.neighbour_seen(Some("bmc-b"), moved_to),
            vec![Action::VerifyMove {
                id: id.clone(),
                endpoint: moved_to,
                fingerprint: fp(7)
            }]
        );
        assert!(
            p.neighbour_seen(Some("stranger"), candidate(3).endpoint)
                .is_empty()
        );
        let answered = IdentityCheck::<Infallible>::Answered;
        // A stale verdict (the peer was re-paired meanwhile) changes nothing.
        assert!(
            p.move_checked(&id, moved_to, fp(9), answered.clone())
                .is_empty()
        );
        assert!(
            p.move_checked(&id, moved_to, fp(7), IdentityCheck::Unreached("timeout"))
                .is_empty()
        );
        let actions = p.move_checked(&id, moved_to, fp(7), answered);
        assert!(actions.contains(&Action::Persist));
        assert_eq!(dials(&actions), vec![&id]);
        assert_eq!(p.peers()[&id].record.endpoint(), moved_to);
        assert_eq!(p.pins(), pins, "discovery never changes a pin");
        let other = IdentityCheck::<Infallible>::OtherIdentity(fp(3));
        assert_eq!(
            p.move_checked(&id, candidate(4).endpoint, fp(7), other),
            vec![Action::Publish]
        );
        assert!(p.peers()[&id].identity_mismatch);
        assert!(p.outgoing_refused(&id).is_empty(), "published once");
        p.outgoing(&id, Outgoing::Up, 5);
        assert!(
            !p.peers()[&id].identity_mismatch,
            "cleared by a good session"
        );
        assert_eq!(p.pins(), pins);
    }

    #[test]
    fn the_clock_floor_only_rises() {
        let mut p = provisioned();
        assert_eq!(p.observe_time(100), vec![Action::Persist]);
        assert!(p.observe_time(50).is_empty());
        assert_eq!(p.time_floor(), 100);
    }

    #[test]
    fn unpair_owes_the_peer_a_goodbye_until_told_or_paired_anew() {
        let mut p = provisioned();
        pair_with(&mut p, 1, 7, "bmc-b");
        let id = PeerId::from_name("bmc-b");
        p.unpair(&id).unwrap();
        assert_eq!(p.farewells(), [fp(7)].into());
        assert!(!p.pins().contains(&fp(7)));
        let (restored, _) = Pairing::restore(
            p.persisted(),
            Some(fp(0)),
            settings(TrustMode::FirstContact),
        );
        assert_eq!(restored.farewells(), [fp(7)].into(), "owed across restarts");
        assert_eq!(
            p.farewell_delivered(&fp(7)),
            vec![Action::Persist, Action::SyncPins]
        );
        assert!(p.farewells().is_empty());
        assert!(p.farewell_delivered(&fp(7)).is_empty(), "once");
        // Paired again before it was told: nothing is owed any more.
        pair_with(&mut p, 1, 7, "bmc-b");
        p.unpair(&id).unwrap();
        pair_with(&mut p, 1, 7, "bmc-b");
        assert!(p.farewells().is_empty());
        // Bounded.
        for key in 10..(10 + u8::try_from(MAX_FAREWELLS).unwrap() + 3) {
            pair_with(&mut p, 2, key, "bmc-x");
            p.unpair(&PeerId::from_name("bmc-x")).unwrap();
        }
        assert_eq!(p.farewells().len(), MAX_FAREWELLS);
    }

    #[test]
    fn a_peer_that_unpaired_us_keeps_its_pin_and_is_neither_dialled_nor_accepted() {
        let mut p = provisioned();
        pair_with(&mut p, 1, 7, "bmc-b");
        let id = PeerId::from_name("bmc-b");
        p.outgoing(&id, Outgoing::Up, 2);
        let actions = p.peer_unpaired_us(&fp(7));
        assert!(actions.contains(&Action::StopLink(id.clone())));
        assert!(actions.contains(&Action::Persist));
        assert!(actions.contains(&Action::SyncPins));
        let peer = &p.peers()[&id];
        assert!(peer.record.unpaired_by_peer);
        assert_eq!(peer.outgoing, ConnState::NotConnected);
        assert_eq!(p.all_pins(), [fp(7)].into(), "pin kept");
        assert!(p.pins().is_empty(), "not accepted");
        assert!(p.peer_unpaired_us(&fp(7)).is_empty(), "once");
        assert!(p.incoming_up(&fp(7), 3).is_empty());
        assert!(dials(&p.neighbour_seen(Some("bmc-b"), candidate(1).endpoint)).is_empty());
        assert!(dials(&p.certificates_changed()).is_empty());
        assert!(dials(&p.identity_ready(fp(1))).is_empty());
        let (_, resumed) = Pairing::restore(
            p.persisted(),
            Some(fp(1)),
            settings(TrustMode::FirstContact),
        );
        assert!(dials(&resumed).is_empty(), "not after a restart either");
        assert!(p.tick(1_000_000).is_empty(), "not re-attested");
        // The operator pairs it anew: a fresh record, dialled and accepted again.
        let actions = pair_with(&mut p, 1, 7, "bmc-b");
        assert_eq!(dials(&actions), vec![&id]);
        assert!(!p.peers()[&id].record.unpaired_by_peer);
        assert_eq!(p.pins(), [fp(7)].into());
        // A peer that unpaired us first is owed no goodbye when we unpair it in turn.
        p.peer_unpaired_us(&fp(7));
        p.unpair(&id).unwrap();
        assert!(
            p.farewells().is_empty(),
            "it unpaired us first: nothing to tell"
        );
    }

    fn recheck_result(p: &mut Pairing, id: &PeerId, outcome: AttestationOutcome) -> Vec<Action> {
        let key = p.peers()[id].record.fingerprint;
        let report = AttestationReport {
            outcome,
            fingerprint: Some(key),
            common_name: None,
            reason: None,
            ca_key: None,
        };
        p.attested(
            AttestPurpose::Recheck(id.clone(), RecheckCause::Rebooted),
            Ok::<_, Infallible>(report),
            50,
        )
    }

    #[test]
    fn a_new_boot_reattests_the_peer_and_a_rejection_quarantines_it() {
        let mut p = provisioned();
        pair_with(&mut p, 1, 7, "bmc-b");
        let id = PeerId::from_name("bmc-b");
        p.incoming_up(&fp(7), 2);
        assert_eq!(
            p.peer_booted(&fp(7), 0xb001),
            vec![Action::Persist],
            "the first boot id seen is only recorded"
        );
        assert!(p.peer_booted(&fp(7), 0xb001).is_empty(), "same boot");
        let actions = p.peer_booted(&fp(7), 0xb002);
        assert_eq!(
            actions,
            vec![
                Action::Persist,
                Action::Attest {
                    purpose: AttestPurpose::Recheck(id.clone(), RecheckCause::Rebooted),
                    address: SocketAddr::from(([127, 0, 0, 1], 4194)),
                    policy: AttestPolicy::Pinned(fp(7)),
                }
            ]
        );
        assert!(
            matches!(p.reattest(&id), Err(Refusal::Unavailable(_))),
            "one at a time"
        );
        let actions = recheck_result(&mut p, &id, AttestationOutcome::Rejected);
        assert!(actions.contains(&Action::StopLink(id.clone())));
        assert!(actions.contains(&Action::SyncPins));
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::ReattestDone { .. })),
            "nobody waits for an automatic one"
        );
        assert!(p.peers()[&id].quarantined());
        assert!(p.pins().is_empty());
        assert_eq!(p.all_pins(), [fp(7)].into(), "pin kept");
        // Audit findings are recorded and admit.
        let (mut q, _) = Pairing::restore(
            p.persisted(),
            Some(fp(0)),
            settings(TrustMode::FirstContact),
        );
        recheck_result(&mut q, &id, AttestationOutcome::TrustedWithFindings);
        assert_eq!(
            q.peers()[&id].record.attestation,
            AttestationOutcome::TrustedWithFindings
        );
        assert!(q.pins().contains(&fp(7)), "a pass lifts the quarantine");
        // A verdict about another identity changes nothing.
        let other = AttestationReport {
            outcome: AttestationOutcome::Rejected,
            fingerprint: Some(fp(8)),
            common_name: None,
            reason: None,
            ca_key: None,
        };
        q.attested(
            AttestPurpose::Recheck(id.clone(), RecheckCause::Interval),
            Ok::<_, Infallible>(other),
            60,
        );
        assert!(!q.peers()[&id].quarantined());
    }

    #[test]
    fn the_interval_reattests_and_an_unreachable_peer_is_retried_slowly() {
        let mut p = provisioned();
        pair_with(&mut p, 1, 7, "bmc-b");
        let id = PeerId::from_name("bmc-b");
        // Attested at 1; interval 1000.
        assert!(p.tick(500).is_empty());
        let due = p.tick(1001);
        assert!(matches!(
            due.as_slice(),
            [Action::Attest { purpose: AttestPurpose::Recheck(x, RecheckCause::Interval), .. }] if *x == id
        ));
        assert!(p.tick(1002).is_empty(), "one at a time");
        p.attested(
            AttestPurpose::Recheck(id.clone(), RecheckCause::Interval),
            UNREACHED,
            1002,
        );
        assert!(
            p.tick(1003).is_empty(),
            "no verdict: wait before trying again"
        );
        assert_eq!(p.tick(1001 + RECHECK_RETRY.min(1000)).len(), 1);
        recheck_result(&mut p, &id, AttestationOutcome::Trusted);
        assert!(p.tick(1100).is_empty(), "attested at 50+: next due later");
        // Off: nothing periodic.
        let (mut off, _) = Pairing::restore(
            p.persisted(),
            Some(fp(0)),
            Settings {
                reattest_interval: None,
                ..settings(TrustMode::FirstContact)
            },
        );
        assert!(off.tick(u64::MAX).is_empty());
    }

    #[test]
    fn factory_reset_drops_pins_peers_goodbyes_and_identity_but_not_the_floor() {
        let mut p = provisioned();
        pair_with(&mut p, 1, 7, "bmc-b");
        pair_with(&mut p, 2, 8, "bmc-c");
        p.unpair(&PeerId::from_name("bmc-c")).unwrap();
        p.observe_time(5000);
        let actions = p.factory_reset();
        assert!(actions.contains(&Action::StopLink(PeerId::from_name("bmc-b"))));
        assert!(actions.contains(&Action::EraseIdentity));
        assert!(actions.contains(&Action::Persist));
        assert!(!p.provisioned());
        assert!(p.all_pins().is_empty() && p.farewells().is_empty());
        assert_eq!(
            p.persisted(),
            Persisted {
                version: STATE_VERSION,
                provisioned: false,
                time_floor: 5000,
                peers: Vec::new(),
                farewells: Vec::new(),
                group_list: None,
                membership: None,
            }
        );
        assert!(matches!(
            p.provision(&Request::Peer(candidate(1))),
            Err(Refusal::NotAllowed(_))
        ));
        assert!(p.identity_ready(fp(9)).contains(&Action::Persist));
        assert!(p.provisioned(), "a new identity provisions again");
    }

    #[test]
    fn a_clock_behind_the_floor_checks_validity_over_the_plausible_interval() {
        let trusted = TimeView {
            clock: 2_000,
            floor: 1_000,
            window: 500,
        };
        assert!(trusted.trusted());
        assert_eq!(
            trusted.check_instant(1_900),
            2_000,
            "a trusted clock decides"
        );
        assert_eq!(
            trusted.check_instant(3_000),
            2_000,
            "not yet valid stays so"
        );
        let at_1970 = TimeView {
            clock: 3,
            floor: 1_000,
            window: 500,
        };
        assert!(!at_1970.trusted());
        assert_eq!(
            at_1970.check_instant(1_200),
            1_200,
            "issued after the floor"
        );
        assert_eq!(at_1970.check_instant(10), 1_000, "issued before the floor");
        assert_eq!(
            at_1970.check_instant(9_999),
            1_500,
            "issued past the window: checked at its end, so refused as not yet valid"
        );
        let p = provisioned();
        assert_eq!(
            p.time_view(3, 1_000).floor,
            1_000,
            "the build time at least"
        );
    }

    /// Every input the machine takes, over a small space of ports, keys and peers.
    #[derive(Clone, Debug)]
    enum Ev {
        Provision(u16),
        Attested(u16, u8, AttestationOutcome),
        AttestFailed(u16),
        Binding(u16, Option<u8>),
        Admission(u8),
        Admitted(u8, Option<u8>, AttestationOutcome),
        Reattest(u8),
        Reattested(u8, Option<u8>, AttestationOutcome),
        InUp(u8),
        InDown(u8),
        Out(u8, Outgoing),
        Seen(u8, u16),
        MoveChecked(u8, u16, bool),
        CertsChanged,
        Unpair(u8),
        Lost,
        SelfReady(u8),
        SaidBye(u8),
        FarewellDone(u8),
        Booted(u8, u8),
        Tick(u16),
        Rechecked(u8, Option<u8>, AttestationOutcome),
        Reset,
    }

    fn ev() -> impl Strategy<Value = Ev> {
        let port = 1u16..4;
        let key = 1u8..5;
        let outcome = prop_oneof![
            Just(AttestationOutcome::Trusted),
            Just(AttestationOutcome::TrustedWithFindings),
            Just(AttestationOutcome::Rejected),
            Just(AttestationOutcome::NotAttested),
        ];
        let out = prop_oneof![
            Just(Outgoing::Attempt),
            Just(Outgoing::Up),
            Just(Outgoing::Down)
        ];
        prop_oneof![
            port.clone().prop_map(Ev::Provision),
            (port.clone(), key.clone(), outcome.clone())
                .prop_map(|(a, b, o)| Ev::Attested(a, b, o)),
            port.clone().prop_map(Ev::AttestFailed),
            (port.clone(), proptest::option::of(key.clone())).prop_map(|(a, k)| Ev::Binding(a, k)),
            key.clone().prop_map(Ev::Admission),
            (
                key.clone(),
                proptest::option::of(key.clone()),
                outcome.clone()
            )
                .prop_map(|(k, p, o)| Ev::Admitted(k, p, o)),
            key.clone().prop_map(Ev::Reattest),
            (
                key.clone(),
                proptest::option::of(key.clone()),
                outcome.clone()
            )
                .prop_map(|(k, p, o)| Ev::Reattested(k, p, o)),
            key.clone().prop_map(Ev::InUp),
            key.clone().prop_map(Ev::InDown),
            (key.clone(), out).prop_map(|(k, o)| Ev::Out(k, o)),
            (key.clone(), port.clone()).prop_map(|(k, p)| Ev::Seen(k, p)),
            (key.clone(), port, any::<bool>()).prop_map(|(k, p, ok)| Ev::MoveChecked(k, p, ok)),
            Just(Ev::CertsChanged),
            key.clone().prop_map(Ev::Unpair),
            Just(Ev::Lost),
            (0u8..2).prop_map(Ev::SelfReady),
            key.clone().prop_map(Ev::SaidBye),
            key.clone().prop_map(Ev::FarewellDone),
            (key.clone(), 0u8..3).prop_map(|(k, b)| Ev::Booted(k, b)),
            any::<u16>().prop_map(Ev::Tick),
            (
                key.clone(),
                proptest::option::of(key.clone()),
                outcome.clone()
            )
                .prop_map(|(k, p, o)| Ev::Rechecked(k, p, o)),
            Just(Ev::Reset),
        ]
    }

    fn id_of(p: &Pairing, key: u8) -> Option<PeerId> {
        p.peers()
            .values()
            .find(|x| x.record.fingerprint == fp(key))
            .map(|x| x.record.id.clone())
    }

    fn from(key: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 1, key], 40000))
    }

    proptest! {
        #[test]
        fn invariants_hold_for_any_event_sequence(
            anchored in any::<bool>(),
            events in proptest::collection::vec(ev(), 0..80),
        ) {
            let mode = if anchored { TrustMode::Anchored } else { TrustMode::FirstContact };
            let mut p = provisioned_in(mode);
            for e in events {
                let pins_before = p.all_pins();
                let prov_before = p.provisioned();
                let quarantined_before: BTreeSet<PeerId> = p.peers().values()
                    .filter(|x| x.quarantined()).map(|x| x.record.id.clone()).collect();
                // Which inputs may change a pin: the end of an operator's probe, anchored
                // admission after attestation, unpair.
                let mut may_repin = false;
                let identity_event = matches!(e, Ev::Lost | Ev::SelfReady(_) | Ev::Reset);
                let unpaired_before: BTreeSet<PeerId> = p.peers().values()
                    .filter(|x| x.record.unpaired_by_peer).map(|x| x.record.id.clone()).collect();
                let actions = match e {
                    Ev::Provision(port) => p.provision(&Request::Peer(candidate(port))).unwrap_or_default(),
                    Ev::Attested(port, k, o) => {
                        let r = Ok::<_, Infallible>(report(o, Some(k), Some(&format!("b{k}"))));
                        p.attested(probe(&candidate(port)), r, 1)
                    }
                    Ev::AttestFailed(port) => p.attested(probe(&candidate(port)), UNREACHED, 1),
                    Ev::Binding(port, k) => {
                        may_repin = true;
                        let check = match k {
                            None => IdentityCheck::Unreached("refused"),
                            Some(k) if Some(fp(k)) == p.probing.get(&candidate(port).endpoint)
                                .and_then(|x| x.attested.as_ref()).and_then(|r| r.fingerprint) => IdentityCheck::Answered,
                            Some(k) => IdentityCheck::OtherIdentity(fp(k)),
                        };
                        let actions = p.binding_checked(&candidate(port), check, 1);
                        if actions.contains(&Action::PeerProvisioned(true)) {
                            prop_assert_eq!(actions.iter().filter(|x| matches!(x, Action::PeerProvisioned(_))).count(), 1);
                        }
                        actions
                    }
                    Ev::Admission(k) => p.admission_requested(fp(k), from(k)),
                    Ev::Admitted(k, proven, o) => {
                        may_repin = p.admitting.contains(&fp(k));
                        let purpose = AttestPurpose::Admission { fingerprint: fp(k), from: from(k) };
                        p.attested(purpose, Ok::<_, Infallible>(report(o, proven, None)), 1)
                    }
                    Ev::Reattest(k) => match id_of(&p, k) {
                        Some(id) => p.reattest(&id).unwrap_or_default(),
                        None => Vec::new(),
                    },
                    Ev::Reattested(k, proven, o) => match id_of(&p, k) {
                        Some(id) => p.attested(AttestPurpose::Reattest(id), Ok::<_, Infallible>(report(o, proven, None)), 1),
                        None => Vec::new(),
                    },
                    Ev::InUp(k) => p.incoming_up(&fp(k), 1),
                    Ev::InDown(k) => p.incoming_down(&fp(k)),
                    Ev::Out(k, o) => match id_of(&p, k) {
                        Some(id) => p.outgoing(&id, o, 1),
                        None => Vec::new(),
                    },
                    Ev::Seen(k, port) => p.neighbour_seen(Some(&format!("b{k}")), candidate(port).endpoint),
                    Ev::MoveChecked(k, port, ok) => match id_of(&p, k) {
                        Some(id) => {
                            let check = if ok { IdentityCheck::Answered } else { IdentityCheck::Unreached("no") };
                            p.move_checked(&id, candidate(port).endpoint, fp(k), check)
                        }
                        None => Vec::new(),
                    },
                    Ev::CertsChanged => p.certificates_changed(),
                    Ev::Unpair(k) => match id_of(&p, k) {
                        Some(id) => {
                            may_repin = true;
                            let a = p.unpair(&id).unwrap();
                            prop_assert!(!p.all_pins().contains(&fp(k)));
                            a
                        }
                        None => Vec::new(),
                    },
                    Ev::Lost => { let a = p.identity_lost(); prop_assert!(!p.provisioned()); a }
                    Ev::SelfReady(k) => { let a = p.identity_ready(fp(k)); prop_assert!(p.provisioned()); a }
                    Ev::SaidBye(k) => p.peer_unpaired_us(&fp(k)),
                    Ev::FarewellDone(k) => p.farewell_delivered(&fp(k)),
                    Ev::Booted(k, b) => p.peer_booted(&fp(k), u64::from(b)),
                    Ev::Tick(t) => p.tick(u64::from(t)),
                    Ev::Rechecked(k, proven, o) => match id_of(&p, k) {
                        Some(id) => {
                            let q_before = p.peers()[&id].quarantined();
                            let a = p.attested(AttestPurpose::Recheck(id.clone(), RecheckCause::Rebooted), Ok::<_, Infallible>(report(o, proven, None)), 1);
                            if proven != Some(k) {
                                prop_assert_eq!(p.peers()[&id].quarantined(), q_before, "a verdict about another identity");
                            }
                            a
                        }
                        None => Vec::new(),
                    },
                    Ev::Reset => {
                        may_repin = true;
                        let a = p.factory_reset();
                        prop_assert!(p.all_pins().is_empty() && p.farewells().is_empty());
                        a
                    }
                };
                // A goodbye is owed only to identities nobody pins.
                prop_assert!(p.farewells().is_disjoint(&p.all_pins()));
                prop_assert!(p.farewells().len() <= MAX_FAREWELLS);
                // A peer that unpaired us stays so until an operator or admission re-pins it.
                if !may_repin {
                    for id in &unpaired_before {
                        prop_assert!(p.peers()[id].record.unpaired_by_peer, "{} forgot it was unpaired", id);
                    }
                }
                for peer in p.peers().values().filter(|x| x.record.unpaired_by_peer) {
                    prop_assert!(!p.pins().contains(&peer.record.fingerprint));
                }
                if !may_repin {
                    prop_assert_eq!(p.all_pins(), pins_before.clone(), "pin changed by {:?}", actions);
                }
                // A quarantined peer never gets a dial, a move check, a wake or an accept.
                for a in &actions {
                    match a {
                        Action::StartLink { id, .. } | Action::VerifyMove { id, .. } | Action::Wake(id) => {
                            let peer = &p.peers()[id];
                            prop_assert!(peer.admitted(), "{:?} for unadmitted {}", a, id);
                            prop_assert!(p.provisioned(), "{:?} while unprovisioned", a);
                        }
                        Action::Admit { fingerprint, admitted: true } => {
                            prop_assert!(p.pins().contains(fingerprint));
                        }
                        Action::Attest { purpose: AttestPurpose::Recheck(id, _), policy, .. } => {
                            let peer = &p.peers()[id];
                            prop_assert_eq!(*policy, AttestPolicy::Pinned(peer.record.fingerprint));
                            prop_assert!(!peer.record.unpaired_by_peer && p.provisioned());
                        }
                        _ => {}
                    }
                }
                for peer in p.peers().values().filter(|x| x.quarantined()) {
                    prop_assert!(!p.pins().contains(&peer.record.fingerprint));
                    if quarantined_before.contains(&peer.record.id) {
                        prop_assert_ne!(peer.incoming, ConnState::Connected);
                    }
                }
                if !identity_event {
                    prop_assert_eq!(p.provisioned(), prov_before, "provisioned changed by {:?}", actions);
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
