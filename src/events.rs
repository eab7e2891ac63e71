//! The pairing manager's events: what an operator's log should say happened, as defined in
//! `dbus-interfaces-yaml/yaml/xyz/openbmc_project/BmcPairing/Pairing.events.yaml`
//! (`xyz.openbmc_project.BmcPairing.Pairing.<Name>`).
//!
//! This module owns them: which changes are events ([`changes`], a diff of two published
//! [`Snapshot`]s, plus [`Emitter::attestation_failed`] and [`Emitter::key_lost`] for what
//! the actor hears that leaves no trace in the snapshot), and where they go ([`deliver`]):
//!
//! - always to the journal, as one structured entry per event through journald's native
//!   protocol (a datagram to `journal_socket`, default `/run/systemd/journal/socket`), with
//!   `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`, `BMC_PAIRING_EVENT` (the event's full
//!   name) and one field per metadata item in `SNAKE_CASE` (`PEER_ID=bmc_b`); without that
//!   socket (not under systemd), as a log line on stderr with the same fields;
//! - and, when `xyz.openbmc_project.Logging` is on the bus, as an event-log entry through
//!   its `xyz.openbmc_project.Logging.Create.Create(ssa{ss})`: the full name as `Message`,
//!   the severity as `xyz.openbmc_project.Logging.Entry.Level.<Level>`, the metadata as
//!   `AdditionalData`.
//!
//! Rules stay in the core: an event reports a change the core already made (a pin appeared
//! or went, a peer's outcome became `Rejected`, its `IdentityMismatch` flag rose), never a
//! decision of its own. No event carries key material: peers are named by id, name,
//! address and the SHA-256 of their public key.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bmc_pairing_core::pairing::{AttestPurpose, AttestationOutcome, PeerId, RecheckCause};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::pairing::handle::{PeerView, Snapshot};

/// The namespace of our events (the YAML file's path).
pub const NAMESPACE: &str = "xyz.openbmc_project.BmcPairing.Pairing";

/// phosphor-logging's bus name, object and interface for `Create`.
pub const LOGGING_SERVICE: &str = "xyz.openbmc_project.Logging";
/// See [`LOGGING_SERVICE`].
pub const LOGGING_PATH: &str = "/xyz/openbmc_project/logging";
/// See [`LOGGING_SERVICE`].
pub const LOGGING_CREATE: &str = "xyz.openbmc_project.Logging.Create";

/// A certificate of ours that is expiring or expired has less than this left (seconds):
/// 30 days, half of the leaf's renewal margin, so a leaf that shows it has missed a month
/// of renewals.
pub const EXPIRING_WITHIN: u64 = 30 * 24 * 3600;

/// Longest `Reason` carried (bytes).
const REASON_MAX: usize = 256;

/// Severity, syslog-style as in the YAML.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// `critical`.
    Critical,
    /// `error`.
    Error,
    /// `warning`.
    Warning,
    /// `informational` (every entry of the YAML's `events:`).
    Informational,
}

impl Severity {
    /// The syslog priority (journal `PRIORITY`).
    pub fn priority(self) -> u8 {
        match self {
            Severity::Critical => 2,
            Severity::Error => 3,
            Severity::Warning => 4,
            Severity::Informational => 6,
        }
    }

    /// `xyz.openbmc_project.Logging.Entry.Level.<Level>`.
    pub fn level(self) -> &'static str {
        match self {
            Severity::Critical => "xyz.openbmc_project.Logging.Entry.Level.Critical",
            Severity::Error => "xyz.openbmc_project.Logging.Entry.Level.Error",
            Severity::Warning => "xyz.openbmc_project.Logging.Entry.Level.Warning",
            Severity::Informational => "xyz.openbmc_project.Logging.Entry.Level.Informational",
        }
    }

    /// The YAML spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Informational => "informational",
        }
    }
}

/// One event: its name in [`NAMESPACE`], its severity and its metadata (the YAML's
/// CamelCase names, in the YAML's order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// The YAML name (`PeerPaired`).
    pub name: &'static str,
    /// Its severity.
    pub severity: Severity,
    /// Metadata, `(CamelCase name, value)`.
    pub metadata: Vec<(&'static str, String)>,
}

impl Event {
    fn new(name: &'static str, severity: Severity, metadata: Vec<(&'static str, String)>) -> Self {
        Event {
            name,
            severity,
            metadata,
        }
    }

    /// `xyz.openbmc_project.BmcPairing.Pairing.<Name>`.
    pub fn full_name(&self) -> String {
        format!("{NAMESPACE}.{}", self.name)
    }

    /// A metadata value by its CamelCase name.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The English message (the YAML's `en.message`, filled in).
    pub fn message(&self) -> String {
        let g = |k| self.get(k).unwrap_or("");
        match self.name {
            "PeerPaired" => format!("Paired with '{}' ('{}').", g("PeerName"), g("PeerId")),
            "PeerUnpaired" => format!(
                "The pairing with '{}' ('{}') ended, by {}.",
                g("PeerName"),
                g("PeerId"),
                g("UnpairedBy")
            ),
            "AttestationFailed" => format!(
                "The attestation of the BMC at '{}' ({}) failed with '{}'.",
                g("Address"),
                g("Purpose"),
                g("Outcome")
            ),
            "IdentityMismatch" => format!(
                "Another identity answered at '{}' ('{}')'s address; possible board swap.",
                g("PeerName"),
                g("PeerId")
            ),
            "PeerQuarantined" => format!(
                "The paired peer '{}' ('{}') is quarantined.",
                g("PeerName"),
                g("PeerId")
            ),
            "CertificateExpiring" => format!(
                "This BMC's pairing certificate '{}' expires at '{}'.",
                g("Certificate"),
                g("NotAfter")
            ),
            "CertificateExpired" => format!(
                "This BMC's pairing certificate '{}' expired at '{}'.",
                g("Certificate"),
                g("NotAfter")
            ),
            "KeyLost" => format!(
                "This BMC's pairing identity key in the '{}' store is lost.",
                g("KeyBackend")
            ),
            "QuorumUnlocked" => format!("The trust quorum is unlocked (epoch {}).", g("Epoch")),
            "QuorumUnlockFailed" => format!(
                "The trust quorum stays locked with {} of {} shares.",
                g("Have"),
                g("Need")
            ),
            "QuorumBadShare" => format!(
                "A trust-quorum share from '{}' does not match the commitment.",
                g("IdentityFingerprint")
            ),
            other => other.to_owned(),
        }
    }

    /// `AdditionalData` for `Logging.Create`: metadata keyed in SNAKE_CASE.
    pub fn additional_data(&self) -> BTreeMap<String, String> {
        self.metadata
            .iter()
            .map(|(k, v)| (snake_case(k), v.clone()))
            .collect()
    }
}

/// `PeerId` → `PEER_ID` (sdbusplus's metadata spelling in the journal and AdditionalData).
pub fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn peer_fields(id: &PeerId, v: &PeerView) -> Vec<(&'static str, String)> {
    vec![("PeerId", id.to_string()), ("PeerName", v.name.clone())]
}

/// Edge state that a snapshot diff cannot hold: whether our certificates were already
/// reported expiring or expired (each is reported once per crossing).
#[derive(Debug, Default)]
pub struct Watch {
    expiring: [bool; 2],
    expired: bool,
}

/// The events between two published snapshots, at `now` (unix seconds).
pub fn changes(old: &Snapshot, new: &Snapshot, now: u64, watch: &mut Watch) -> Vec<Event> {
    let mut out = Vec::new();
    for (id, v) in &new.peers {
        let before = old.peers.get(id);
        let repinned = before.is_some_and(|b| b.fingerprint != v.fingerprint);
        let paired_anew = before.is_some_and(|b| b.unpaired_by_peer && !v.unpaired_by_peer);
        if before.is_none() || repinned || paired_anew {
            let mut m = peer_fields(id, v);
            m.push(("Address", v.address.clone()));
            m.push(("IdentityFingerprint", v.fingerprint.clone()));
            m.push(("TrustMode", v.trust_mode.as_str().to_owned()));
            out.push(Event::new("PeerPaired", Severity::Informational, m));
        }
        let b = before.filter(|_| !repinned);
        if v.unpaired_by_peer && !b.is_some_and(|b| b.unpaired_by_peer) {
            let mut m = peer_fields(id, v);
            m.push(("UnpairedBy", "Peer".to_owned()));
            m.push(("IdentityFingerprint", v.fingerprint.clone()));
            out.push(Event::new("PeerUnpaired", Severity::Informational, m));
        }
        if v.identity_mismatch && !b.is_some_and(|b| b.identity_mismatch) {
            let mut m = peer_fields(id, v);
            m.push(("Address", v.address.clone()));
            m.push(("IdentityFingerprint", v.fingerprint.clone()));
            out.push(Event::new("IdentityMismatch", Severity::Warning, m));
        }
        if v.attestation == AttestationOutcome::Rejected
            && !b.is_some_and(|b| b.attestation == AttestationOutcome::Rejected)
        {
            let mut m = peer_fields(id, v);
            m.push(("IdentityFingerprint", v.fingerprint.clone()));
            out.push(Event::new("PeerQuarantined", Severity::Error, m));
        }
    }
    for (id, v) in &old.peers {
        if !new.peers.contains_key(id) {
            let mut m = peer_fields(id, v);
            m.push(("UnpairedBy", "ThisBmc".to_owned()));
            m.push(("IdentityFingerprint", v.fingerprint.clone()));
            out.push(Event::new("PeerUnpaired", Severity::Informational, m));
        }
    }
    let identity = &new.identity;
    let certs = [
        ("identity", identity.not_after),
        ("ca", identity.authority_not_after),
    ];
    if identity.expired && !watch.expired {
        // The one that is past its notAfter (the leaf when both are).
        let (which, not_after) = certs
            .into_iter()
            .find(|(_, t)| *t != 0 && *t <= now)
            .unwrap_or(certs[0]);
        out.push(Event::new(
            "CertificateExpired",
            Severity::Error,
            vec![
                ("Certificate", which.to_owned()),
                ("NotAfter", not_after.to_string()),
            ],
        ));
    }
    watch.expired = identity.expired;
    for (i, (which, not_after)) in certs.into_iter().enumerate() {
        let expiring =
            not_after != 0 && !identity.expired && not_after.saturating_sub(now) < EXPIRING_WITHIN;
        let Some(seen) = watch.expiring.get_mut(i) else {
            continue;
        };
        if expiring && !*seen {
            out.push(Event::new(
                "CertificateExpiring",
                Severity::Warning,
                vec![
                    ("Certificate", which.to_owned()),
                    ("NotAfter", not_after.to_string()),
                ],
            ));
        }
        *seen = expiring;
    }
    out
}

/// The `Purpose` metadata of an attestation.
pub fn purpose_name(purpose: &AttestPurpose) -> &'static str {
    match purpose {
        AttestPurpose::Probe(_) => "Pairing",
        AttestPurpose::Admission { .. } => "Admission",
        AttestPurpose::Reattest(_) => "Reattest",
        AttestPurpose::Recheck(_, RecheckCause::Rebooted) => "Reboot",
        AttestPurpose::Recheck(_, RecheckCause::Interval) => "Interval",
    }
}

/// Where the actor hands events (never blocks: delivery runs in [`deliver`]).
#[derive(Clone, Debug)]
pub struct Emitter {
    tx: mpsc::UnboundedSender<Event>,
    key_backend: String,
}

impl Emitter {
    /// An emitter feeding `tx`; `key_backend` names the key store in `KeyLost`.
    pub fn new(tx: mpsc::UnboundedSender<Event>, key_backend: impl Into<String>) -> Self {
        Emitter {
            tx,
            key_backend: key_backend.into(),
        }
    }

    /// Sends `event` on.
    pub fn emit(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    /// The events between two snapshots ([`changes`]), sent on.
    pub fn published(&self, old: &Snapshot, new: &Snapshot, now: u64, watch: &mut Watch) {
        for e in changes(old, new, now, watch) {
            self.emit(e);
        }
    }

    /// An attestation that did not vouch for the BMC at `address`: `outcome` is its
    /// verdict (`None`: no verdict was reached), `reason` what was said about it.
    pub fn attestation_failed(
        &self,
        purpose: &AttestPurpose,
        address: std::net::SocketAddr,
        outcome: Option<AttestationOutcome>,
        reason: &str,
    ) {
        let mut reason = reason.to_owned();
        if reason.len() > REASON_MAX {
            let mut cut = REASON_MAX;
            while !reason.is_char_boundary(cut) {
                cut -= 1;
            }
            reason.truncate(cut);
        }
        self.emit(Event::new(
            "AttestationFailed",
            Severity::Warning,
            vec![
                ("Address", address.to_string()),
                ("Purpose", purpose_name(purpose).to_owned()),
                (
                    "Outcome",
                    outcome
                        .map_or("NoVerdict", AttestationOutcome::as_str)
                        .to_owned(),
                ),
                ("Reason", reason),
            ],
        ));
    }

    /// The trust quorum unlocked in `epoch` with the shares of `contributors` (hex
    /// fingerprints).
    pub fn quorum_unlocked(&self, epoch: u64, contributors: &[String]) {
        self.emit(Event::new(
            "QuorumUnlocked",
            Severity::Informational,
            vec![
                ("Epoch", epoch.to_string()),
                ("Contributors", contributors.join(",")),
            ],
        ));
    }

    /// The trust quorum stays locked with `have` of `need` shares.
    pub fn quorum_unlock_failed(&self, have: usize, need: usize) {
        self.emit(Event::new(
            "QuorumUnlockFailed",
            Severity::Warning,
            vec![("Have", have.to_string()), ("Need", need.to_string())],
        ));
    }

    /// The member pinned as `from` released a share that does not match the commitment.
    pub fn quorum_bad_share(&self, from: &str) {
        self.emit(Event::new(
            "QuorumBadShare",
            Severity::Error,
            vec![("IdentityFingerprint", from.to_owned())],
        ));
    }

    /// The identity key is gone.
    pub fn key_lost(&self) {
        self.emit(Event::new(
            "KeyLost",
            Severity::Critical,
            vec![("KeyBackend", self.key_backend.clone())],
        ));
    }
}

/// journald's native protocol: one datagram per entry, `KEY=value\n` per field, or
/// `KEY\n<u64 LE length><value>\n` when the value holds a newline.
pub fn journal_entry(event: &Event, identifier: &str) -> Vec<u8> {
    let mut fields: Vec<(String, String)> = vec![
        ("MESSAGE".into(), event.message()),
        ("PRIORITY".into(), event.severity.priority().to_string()),
        ("SYSLOG_IDENTIFIER".into(), identifier.to_owned()),
        ("BMC_PAIRING_EVENT".into(), event.full_name()),
    ];
    fields.extend(
        event
            .metadata
            .iter()
            .map(|(k, v)| (snake_case(k), v.clone())),
    );
    let mut out = Vec::new();
    for (k, v) in fields {
        out.extend_from_slice(k.as_bytes());
        if v.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(v.len() as u64).to_le_bytes());
            out.extend_from_slice(v.as_bytes());
        } else {
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
        out.push(b'\n');
    }
    out
}

/// The journal's native socket, if it is there.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    socket: Option<std::os::unix::net::UnixDatagram>,
}

impl Journal {
    /// Writes to `path` when it exists (it is checked again at each event).
    pub fn new(path: &Path) -> Self {
        Journal {
            path: path.to_owned(),
            socket: None,
        }
    }

    /// Sends one entry; false if there is no journal socket or it refused it.
    fn send(&mut self, entry: &[u8]) -> bool {
        if self.socket.is_none() {
            if !self.path.exists() {
                return false;
            }
            match std::os::unix::net::UnixDatagram::unbound() {
                Ok(s) => {
                    // Never block the runtime on a full journal.
                    let _ = s.set_nonblocking(true);
                    self.socket = Some(s);
                }
                Err(_) => return false,
            }
        }
        let Some(socket) = &self.socket else {
            return false;
        };
        socket.send_to(entry, &self.path).is_ok()
    }
}

/// Logs `event` on stderr (no journal socket).
fn log_line(event: &Event) {
    let mut fields = String::new();
    for (k, v) in &event.metadata {
        let _ = write!(fields, " {}={v:?}", snake_case(k));
    }
    let name = event.full_name();
    let message = event.message();
    match event.severity {
        Severity::Critical | Severity::Error => {
            tracing::error!(event = %name, "{message}{fields}")
        }
        Severity::Warning => tracing::warn!(event = %name, "{message}{fields}"),
        Severity::Informational => tracing::info!(event = %name, "{message}{fields}"),
    }
}

/// Calls `Logging.Create` for `event` if the logging service is on the bus (never starts
/// it: its name must have an owner); false when it is not there or refused.
async fn create_entry(conn: &zbus::Connection, event: &Event) -> bool {
    let call = async {
        let present: bool = conn
            .call_method(
                Some("org.freedesktop.DBus"),
                "/org/freedesktop/DBus",
                Some("org.freedesktop.DBus"),
                "NameHasOwner",
                &LOGGING_SERVICE,
            )
            .await
            .ok()?
            .body()
            .deserialize()
            .ok()?;
        if !present {
            return None;
        }
        conn.call_method(
            Some(LOGGING_SERVICE),
            LOGGING_PATH,
            Some(LOGGING_CREATE),
            "Create",
            &(
                event.full_name(),
                event.severity.level(),
                event.additional_data(),
            ),
        )
        .await
        .ok()
    };
    tokio::time::timeout(std::time::Duration::from_secs(5), call)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// Delivers events until `cancel`: to the journal (or stderr), and to `Logging.Create`
/// when that service is on `bus`.
///
/// # Cancel safety
/// Runs until `cancel`; events still queued then are logged on stderr.
pub async fn deliver(
    mut events: mpsc::UnboundedReceiver<Event>,
    mut journal: Journal,
    bus: Option<zbus::Connection>,
    cancel: CancellationToken,
) {
    loop {
        let event = tokio::select! {
            () = cancel.cancelled() => break,
            e = events.recv() => match e { Some(e) => e, None => return },
        };
        if !journal.send(&journal_entry(&event, "bmc-pairing-manager")) {
            log_line(&event);
        }
        if let Some(conn) = &bus
            && !create_entry(conn, &event).await
        {
            tracing::debug!(event = %event.full_name(), "no event-log entry (xyz.openbmc_project.Logging is not on the bus)");
        }
    }
    while let Ok(event) = events.try_recv() {
        if !journal.send(&journal_entry(&event, "bmc-pairing-manager")) {
            log_line(&event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::handle::IdentityView;
    use bmc_pairing_core::pairing::{ConnState, TrustMode};

    fn view() -> PeerView {
        PeerView {
            name: "bmc-b".into(),
            address: "fd00::2".into(),
            port: 8090,
            fingerprint: "ab".repeat(32),
            trust_mode: TrustMode::FirstContact,
            incoming: ConnState::Connected,
            outgoing: ConnState::Connected,
            state: ConnState::Connected,
            last_seen: 7,
            identity_mismatch: false,
            attestation: AttestationOutcome::Trusted,
            attested_at: 5,
            unpaired_by_peer: false,
            health: Default::default(),
        }
    }

    fn snapshot(peers: Vec<PeerView>) -> Snapshot {
        Snapshot {
            provisioned: true,
            peer_connected: ConnState::Connected,
            peers: peers
                .into_iter()
                .map(|v| (PeerId::from_name(&v.name), v))
                .collect(),
            identity: IdentityView::default(),
            chain: None,
            trust_store: Vec::new(),
            group_authority: false,
        }
    }

    fn names(events: &[Event]) -> Vec<&'static str> {
        events.iter().map(|e| e.name).collect()
    }

    #[test]
    fn pins_coming_and_going_are_paired_and_unpaired() {
        let mut w = Watch::default();
        let (empty, one) = (snapshot(vec![]), snapshot(vec![view()]));
        let paired = changes(&empty, &one, 10, &mut w);
        assert_eq!(names(&paired), ["PeerPaired"]);
        assert_eq!(paired[0].get("PeerId"), Some("bmc_b"));
        assert_eq!(paired[0].get("TrustMode"), Some("first-contact"));
        assert!(changes(&one, &one, 10, &mut w).is_empty());
        let gone = changes(&one, &empty, 10, &mut w);
        assert_eq!(names(&gone), ["PeerUnpaired"]);
        assert_eq!(gone[0].get("UnpairedBy"), Some("ThisBmc"));
        let mut told = view();
        told.unpaired_by_peer = true;
        let by_peer = changes(&one, &snapshot(vec![told.clone()]), 10, &mut w);
        assert_eq!(names(&by_peer), ["PeerUnpaired"]);
        assert_eq!(by_peer[0].get("UnpairedBy"), Some("Peer"));
        // Paired anew by ProvisionPeer.
        let again = changes(&snapshot(vec![told]), &one, 10, &mut w);
        assert_eq!(names(&again), ["PeerPaired"]);
    }

    #[test]
    fn mismatch_and_quarantine_are_reported_when_they_begin() {
        let mut w = Watch::default();
        let one = snapshot(vec![view()]);
        let mut bad = view();
        bad.identity_mismatch = true;
        bad.attestation = AttestationOutcome::Rejected;
        let bad = snapshot(vec![bad]);
        assert_eq!(
            names(&changes(&one, &bad, 10, &mut w)),
            ["IdentityMismatch", "PeerQuarantined"]
        );
        assert!(changes(&bad, &bad, 10, &mut w).is_empty());
    }

    #[test]
    fn our_certificates_are_reported_once_per_crossing() {
        let day = 24 * 3600;
        let mut w = Watch::default();
        let at = |not_after: u64, expired: bool| Snapshot {
            identity: IdentityView {
                not_after,
                authority_not_after: 1000 * day,
                expired,
            },
            ..snapshot(vec![])
        };
        let now = 100 * day;
        assert!(changes(&at(0, false), &at(200 * day, false), now, &mut w).is_empty());
        let soon = changes(&at(200 * day, false), &at(120 * day, false), now, &mut w);
        assert_eq!(names(&soon), ["CertificateExpiring"]);
        assert_eq!(soon[0].get("Certificate"), Some("identity"));
        assert!(changes(&at(120 * day, false), &at(120 * day, false), now, &mut w).is_empty());
        let past = changes(&at(120 * day, false), &at(90 * day, true), now, &mut w);
        assert_eq!(names(&past), ["CertificateExpired"]);
        assert_eq!(
            past[0].get("NotAfter"),
            Some((90 * day).to_string().as_str())
        );
        assert!(changes(&at(90 * day, true), &at(90 * day, true), now, &mut w).is_empty());
    }

    #[test]
    fn the_journal_entry_is_native_protocol() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let emitter = Emitter::new(tx, "tpm");
        emitter.attestation_failed(
            &AttestPurpose::Reattest(PeerId::from_name("bmc-b")),
            "[fd00::2]:4194".parse().unwrap(),
            None,
            "line one\nline two",
        );
        let event = rx.try_recv().unwrap();
        let entry = journal_entry(&event, "bmc-pairing-manager");
        let text = String::from_utf8_lossy(&entry);
        assert!(text.starts_with(
            "MESSAGE=The attestation of the BMC at '[fd00::2]:4194' (Reattest) failed with 'NoVerdict'.\n"
        ));
        assert!(text.contains("\nPRIORITY=4\n"));
        assert!(text.contains(
            "\nBMC_PAIRING_EVENT=xyz.openbmc_project.BmcPairing.Pairing.AttestationFailed\n"
        ));
        assert!(text.contains("\nPURPOSE=Reattest\n"));
        let mut binary = b"REASON\n".to_vec();
        binary.extend_from_slice(&17u64.to_le_bytes());
        binary.extend_from_slice(b"line one\nline two\n");
        assert!(entry.ends_with(&binary));
        emitter.key_lost();
        assert_eq!(
            rx.try_recv().unwrap().additional_data(),
            BTreeMap::from([("KEY_BACKEND".to_owned(), "tpm".to_owned())])
        );
    }

    /// Every event the code makes is in the YAML with its severity and metadata names,
    /// and the YAML's messages are what [`Event::message`] says.
    #[test]
    fn events_match_the_yaml() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("dbus-interfaces-yaml/yaml/xyz/openbmc_project/BmcPairing/Pairing.events.yaml");
        let yaml: serde_norway::Value =
            serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let mut defined = BTreeMap::new();
        for (section, default) in [("errors", None), ("events", Some("informational"))] {
            for e in yaml[section].as_sequence().unwrap() {
                let severity = e["severity"].as_str().or(default).unwrap().to_owned();
                let meta: Vec<String> = e["metadata"]
                    .as_sequence()
                    .map(|m| {
                        m.iter()
                            .map(|x| x["name"].as_str().unwrap().to_owned())
                            .collect()
                    })
                    .unwrap_or_default();
                let message = e["en"]["message"].as_str().unwrap().to_owned();
                defined.insert(
                    e["name"].as_str().unwrap().to_owned(),
                    (severity, meta, message),
                );
            }
        }
        let mut made = Vec::new();
        let mut w = Watch::default();
        let mut v = view();
        v.identity_mismatch = true;
        v.attestation = AttestationOutcome::Rejected;
        made.extend(changes(
            &snapshot(vec![]),
            &snapshot(vec![v.clone()]),
            0,
            &mut w,
        ));
        v.unpaired_by_peer = true;
        made.extend(changes(&snapshot(vec![]), &snapshot(vec![v]), 0, &mut w));
        made.extend(changes(
            &snapshot(vec![view()]),
            &snapshot(vec![]),
            0,
            &mut w,
        ));
        let ident = |expired| Snapshot {
            identity: IdentityView {
                not_after: 10,
                authority_not_after: 10,
                expired,
            },
            ..snapshot(vec![])
        };
        made.extend(changes(&snapshot(vec![]), &ident(false), 5, &mut w));
        made.extend(changes(&ident(false), &ident(true), 20, &mut w));
        let (tx, mut rx) = mpsc::unbounded_channel();
        let emitter = Emitter::new(tx, "tpm");
        emitter.attestation_failed(
            &AttestPurpose::Reattest(PeerId::from_name("x")),
            "[::1]:1".parse().unwrap(),
            Some(AttestationOutcome::Rejected),
            "r",
        );
        emitter.key_lost();
        emitter.quorum_unlocked(2, &["aa".to_owned(), "bb".to_owned()]);
        emitter.quorum_unlock_failed(1, 2);
        emitter.quorum_bad_share("cc");
        while let Ok(e) = rx.try_recv() {
            made.push(e);
        }
        let mut seen = std::collections::BTreeSet::new();
        for e in &made {
            let (severity, meta, message) = defined
                .get(e.name)
                .unwrap_or_else(|| panic!("{} is not in the YAML", e.name));
            assert_eq!(e.severity.as_str(), severity, "{}", e.name);
            let ours: Vec<String> = e.metadata.iter().map(|(k, _)| (*k).to_owned()).collect();
            assert_eq!(&ours, meta, "{}: metadata", e.name);
            let mut filled = message.split_whitespace().collect::<Vec<_>>().join(" ");
            for (k, v) in &e.metadata {
                filled = filled.replace(&format!("{{{k}}}"), v);
            }
            assert_eq!(e.message(), filled, "{}: message", e.name);
            seen.insert(e.name);
        }
        assert_eq!(
            seen.into_iter().collect::<Vec<_>>(),
            defined.keys().map(String::as_str).collect::<Vec<_>>(),
            "every YAML event is made"
        );
    }
}
