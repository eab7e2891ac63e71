//! The D-Bus surface of `bmc-attestation` (bus name `xyz.openbmc_project.attestation`).
//!
//! | Path | Interface |
//! |---|---|
//! | `/xyz/openbmc_project/attestation` | `xyz.openbmc_project.Attestation.Requester` ([`requester`]) |
//! | `/xyz/openbmc_project/attestation` | `xyz.openbmc_project.Attestation.Responder` ([`responder`]) |
//! | `/xyz/openbmc_project/attestation` | `org.freedesktop.DBus.ObjectManager` |
//! | `/xyz/openbmc_project/attestation/peers/<id>` | `xyz.openbmc_project.Attestation.Peer` ([`peer`]) |
//!
//! One file per interface. [`serve`] builds the connection with every root object served
//! before the bus name is owned. [`Service`] holds what the methods share: the requester
//! settings, a bound on concurrent attestations, and the per-peer records. A peer object is
//! created by its first attestation that reaches a result and is updated by later ones; at
//! most [`MAX_PEERS`] exist, the least recently attested is removed to make room.
//!
//! # What an attestation changes
//! - Bad input, an unreachable or silent peer, or a local fault: a D-Bus error, and nothing
//!   changes (no object, no property, no signal).
//! - A result (trusted or not): the peer object's `Outcome`, `TrustPolicy`, `LastAttested`,
//!   `LastError` and `Verdict`. Its identity properties (`IdentityFingerprint`, `Version`,
//!   `Algorithms`, `Chain`, `Measurements`) change only when the peer proved its identity in
//!   this attestation; an unauthenticated answer never changes what the object says about
//!   the peer's identity. Then `Attested(b)` is emitted from the peer's path, once.

pub mod error;
pub mod peer;
pub mod requester;
pub mod responder;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, watch};
use zbus::object_server::{ObjectServer, SignalEmitter};
use zbus::zvariant::{ObjectPath, OwnedObjectPath, Value};

pub use error::Error;

use super::keys;
use super::requester::{self as attest, Report, Settings};
use crate::contract::{AttestReply, MeasurementEntry, TrustPolicyArg, outcome_to_wire};
use crate::identity::Fingerprint;
use crate::kit::Bus;
use bmc_pairing_core::pairing::{AttestPolicy, AttestationOutcome};
use bmc_pairing_core::spdm::TrustPolicy;
use bmc_pairing_core::spdm::appraisal::IndexStatus;
use bmc_pairing_core::spdm::crypto::{AsymAlgo, HashAlgo};

pub use crate::contract::attestation::{BUS_NAME, PEERS_PATH, ROOT_PATH};
/// Most peer objects kept.
pub const MAX_PEERS: usize = 64;

/// The object-path element for a peer address: `ipv4_<a>_<b>_<c>_<d>_<port>` or
/// `ipv6_<8 groups in hex>[_s<scope>]_<port>`; distinct addresses give distinct ids.
pub fn peer_id(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => {
            let [b0, b1, b2, b3] = a.ip().octets();
            format!("ipv4_{b0}_{b1}_{b2}_{b3}_{}", a.port())
        }
        SocketAddr::V6(a) => {
            let groups: Vec<String> = a.ip().segments().iter().map(|g| format!("{g:x}")).collect();
            let scope = match a.scope_id() {
                0 => String::new(),
                s => format!("_s{s}"),
            };
            format!("ipv6_{}{scope}_{}", groups.join("_"), a.port())
        }
    }
}

/// The object path of a peer.
pub fn peer_path(addr: &SocketAddr) -> String {
    format!("{PEERS_PATH}/{}", peer_id(addr))
}

/// `TPM_ALG_ECDSA_ECC_NIST_P256/TPM_ALG_SHA_256`: the negotiated algorithms in DSP0274
/// names.
pub fn algorithms_text(asym: AsymAlgo, hash: HashAlgo) -> String {
    let a = match asym {
        AsymAlgo::EcdsaP256 => "TPM_ALG_ECDSA_ECC_NIST_P256",
        AsymAlgo::EcdsaP384 => "TPM_ALG_ECDSA_ECC_NIST_P384",
    };
    let h = match hash {
        HashAlgo::Sha256 => "TPM_ALG_SHA_256",
        HashAlgo::Sha384 => "TPM_ALG_SHA_384",
    };
    format!("{a}/{h}")
}

/// The per-index results of a report, as D-Bus structs.
pub fn measurement_entries(report: &Report) -> Vec<MeasurementEntry> {
    let Some(verdict) = &report.verdict else {
        return Vec::new();
    };
    verdict
        .measurements
        .iter()
        .map(|m| {
            let (status, expected) = match &m.status {
                IndexStatus::Match => ("Match", String::new()),
                IndexStatus::Mismatch { expected } => ("Mismatch", expected.clone()),
                IndexStatus::Missing { expected } => ("Missing", expected.clone()),
                IndexStatus::NotReferenced => ("NotReferenced", String::new()),
                IndexStatus::NotAppraised => ("NotAppraised", String::new()),
            };
            MeasurementEntry {
                index: m.index,
                value: m.value.clone(),
                status: status.to_owned(),
                expected,
            }
        })
        .collect()
}

/// What a peer object shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerAttestation {
    /// IP address.
    pub address: String,
    /// SPDM port.
    pub port: u16,
    /// The policy of the last attestation (used again by `Peer.Attest()`).
    pub trust_policy: String,
    /// Outcome of the last attestation.
    pub outcome: AttestationOutcome,
    /// Unix seconds of the last attestation.
    pub last_attested: u64,
    /// Why the last attestation rejected the peer; empty otherwise.
    pub last_error: String,
    /// JSON report of the last attestation.
    pub verdict: String,
    /// Proven identity: leaf SPKI SHA-256, hex.
    pub fingerprint: String,
    /// Proven identity: SPDM version, `1.2`.
    pub version: String,
    /// Proven identity: negotiated algorithms.
    pub algorithms: String,
    /// Proven identity: DER certificates, root first.
    pub chain: Vec<Vec<u8>>,
    /// Proven identity: per-index measurement results.
    pub measurements: Vec<MeasurementEntry>,
}

impl PeerAttestation {
    fn new(addr: &SocketAddr) -> Self {
        PeerAttestation {
            address: addr.ip().to_string(),
            port: addr.port(),
            trust_policy: String::new(),
            outcome: AttestationOutcome::NotAttested,
            last_attested: 0,
            last_error: String::new(),
            verdict: String::new(),
            fingerprint: String::new(),
            version: String::new(),
            algorithms: String::new(),
            chain: Vec::new(),
            measurements: Vec::new(),
        }
    }

    fn apply(&mut self, report: &Report, now: u64) {
        self.trust_policy = report.trust_policy.clone();
        self.outcome = report.outcome;
        self.last_attested = now;
        self.last_error = report.error.clone().unwrap_or_default();
        self.verdict = report.to_json();
        if let Some(v) = &report.verdict {
            self.fingerprint = v.leaf_fingerprint.to_hex();
            self.version = format!("{}.{}", v.version >> 4, v.version & 0x0f);
            self.algorithms = algorithms_text(v.algorithms.base_asym, v.algorithms.base_hash);
            self.chain = v.chain.clone();
            self.measurements = measurement_entries(report);
        }
    }

    /// Properties whose values differ from `old`, for PropertiesChanged.
    pub fn changed_since(&self, old: &PeerAttestation) -> HashMap<&'static str, Value<'static>> {
        let mut out = HashMap::new();
        let mut put = |name, changed: bool, value: Value<'static>| {
            if changed {
                out.insert(name, value);
            }
        };
        put(
            "TrustPolicy",
            self.trust_policy != old.trust_policy,
            Value::from(self.trust_policy.clone()),
        );
        put(
            "Outcome",
            self.outcome != old.outcome,
            Value::from(outcome_to_wire(self.outcome)),
        );
        put(
            "LastAttested",
            self.last_attested != old.last_attested,
            Value::from(self.last_attested),
        );
        put(
            "LastError",
            self.last_error != old.last_error,
            Value::from(self.last_error.clone()),
        );
        put(
            "Verdict",
            self.verdict != old.verdict,
            Value::from(self.verdict.clone()),
        );
        put(
            "IdentityFingerprint",
            self.fingerprint != old.fingerprint,
            Value::from(self.fingerprint.clone()),
        );
        put(
            "Version",
            self.version != old.version,
            Value::from(self.version.clone()),
        );
        put(
            "Algorithms",
            self.algorithms != old.algorithms,
            Value::from(self.algorithms.clone()),
        );
        put(
            "Chain",
            self.chain != old.chain,
            Value::from(self.chain.clone()),
        );
        put(
            "Measurements",
            self.measurements != old.measurements,
            Value::from(self.measurements.clone()),
        );
        out
    }
}

/// A record shared between the registry and its peer object.
pub type SharedRecord = Arc<Mutex<PeerAttestation>>;

fn lock(record: &SharedRecord) -> std::sync::MutexGuard<'_, PeerAttestation> {
    record.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
struct Slot {
    record: SharedRecord,
    used: u64,
}

#[derive(Debug)]
struct Inner {
    settings: Settings,
    default_port: u16,
    anchors_dir: PathBuf,
    permits: Arc<Semaphore>,
    peers: Mutex<BTreeMap<String, Slot>>,
    seq: AtomicU64,
}

/// What the interfaces share. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Service {
    inner: Arc<Inner>,
}

impl Service {
    /// A service attesting with `settings`; addresses without a port get `default_port`;
    /// `anchored` reads `anchors_dir`; at most `max_attestations` run at once.
    pub fn new(
        settings: Settings,
        default_port: u16,
        anchors_dir: PathBuf,
        max_attestations: usize,
    ) -> Self {
        Service {
            inner: Arc::new(Inner {
                settings,
                default_port,
                anchors_dir,
                permits: Arc::new(Semaphore::new(max_attestations.max(1))),
                peers: Mutex::new(BTreeMap::new()),
                seq: AtomicU64::new(0),
            }),
        }
    }

    /// The port assumed for addresses given without one.
    pub fn default_port(&self) -> u16 {
        self.inner.default_port
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Slot>> {
        self.inner.peers.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn trust_policy(&self, choice: AttestPolicy) -> Result<TrustPolicy, Error> {
        match choice {
            AttestPolicy::FirstContact => Ok(TrustPolicy::FirstContact),
            AttestPolicy::Pinned(fp) => Ok(TrustPolicy::Pinned(fp)),
            AttestPolicy::Anchored => {
                let dir = self.inner.anchors_dir.clone();
                let shown = dir.display().to_string();
                let anchors = tokio::task::spawn_blocking(move || keys::read_anchor_dir(&dir))
                    .await
                    .map_err(|e| Error::InternalFailure(e.to_string()))?
                    .map_err(|e| {
                        let text = crate::kit::ErrorChain(&e).to_string();
                        tracing::error!(error = %text, "cannot read the trust anchors");
                        Error::InternalFailure(text)
                    })?;
                if anchors.is_empty() {
                    return Err(Error::ResourceNotFound(format!(
                        "no trust anchors in {shown}"
                    )));
                }
                Ok(TrustPolicy::Anchored(anchors))
            }
        }
    }

    /// Attests `addr` under `choice`, records the result on the peer's object and emits
    /// `Attested(b)` from it. See the module docs for what changes when.
    ///
    /// # Errors
    /// [`Error`]; on error nothing changed.
    ///
    /// # Cancel safety
    /// Not cancel safe once the result is being recorded (zbus drives it to completion).
    pub async fn attest(
        &self,
        server: &ObjectServer,
        conn: &zbus::Connection,
        addr: SocketAddr,
        choice: AttestPolicy,
    ) -> Result<AttestReply, Error> {
        let trust = self.trust_policy(choice).await?;
        let settings = &self.inner.settings;
        let _permit = tokio::time::timeout(
            settings.attest_timeout,
            self.inner.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| Error::Unavailable("too many attestations in progress".into()))?
        .map_err(|_| Error::Unavailable("shutting down".into()))?;
        let verify_time = crate::clock::time_view(0).into();
        let report = attest::attest(
            addr,
            TrustPolicyArg(choice).to_string(),
            trust,
            settings,
            verify_time,
        )
        .await?;
        let peer = self.record(server, conn, &addr, &report).await?;
        Ok(AttestReply {
            peer,
            trusted: report.trusted,
            outcome: outcome_to_wire(report.outcome),
            fingerprint: report
                .fingerprint
                .map(|f: Fingerprint| f.to_hex())
                .unwrap_or_default(),
            chain: report.chain().to_vec(),
            measurements: measurement_entries(&report),
            verdict_json: report.to_json(),
        })
    }

    async fn record(
        &self,
        server: &ObjectServer,
        conn: &zbus::Connection,
        addr: &SocketAddr,
        report: &Report,
    ) -> Result<OwnedObjectPath, Error> {
        let id = peer_id(addr);
        let path = OwnedObjectPath::try_from(peer_path(addr)).map_err(zbus::Error::from)?;
        let now = crate::clock::unix_secs(std::time::SystemTime::now());
        let used = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let (created, evicted, changes) = {
            let mut peers = self.peers();
            match peers.get_mut(&id) {
                Some(slot) => {
                    slot.used = used;
                    let mut rec = lock(&slot.record);
                    let old = rec.clone();
                    rec.apply(report, now);
                    (None, None, rec.changed_since(&old))
                }
                None => {
                    let evicted = if peers.len() >= MAX_PEERS {
                        let oldest = peers
                            .iter()
                            .min_by_key(|(_, s)| s.used)
                            .map(|(k, _)| k.clone());
                        oldest.and_then(|k| peers.remove_entry(&k)).map(|(k, _)| k)
                    } else {
                        None
                    };
                    let mut rec = PeerAttestation::new(addr);
                    rec.apply(report, now);
                    let record = Arc::new(Mutex::new(rec));
                    peers.insert(
                        id.clone(),
                        Slot {
                            record: record.clone(),
                            used,
                        },
                    );
                    (Some(record), evicted, HashMap::new())
                }
            }
        };
        if let Some(old_id) = evicted {
            let old_path = format!("{PEERS_PATH}/{old_id}");
            tracing::info!(path = %old_path, "too many peer objects; removing the least recently attested");
            server.remove::<peer::Peer, _>(old_path.as_str()).await?;
        }
        let emitter = SignalEmitter::new(conn, ObjectPath::from(&path).to_owned())?;
        match created {
            Some(record) => {
                // InterfacesAdded carries the recorded values.
                server
                    .at(&path, peer::Peer::new(self.clone(), *addr, record))
                    .await?;
            }
            None if !changes.is_empty() => {
                zbus::fdo::Properties::properties_changed(
                    &emitter,
                    crate::contract::attestation::PEER_INTERFACE
                        .try_into()
                        .map_err(zbus::Error::from)?,
                    changes,
                    std::borrow::Cow::Borrowed(&[]),
                )
                .await?;
            }
            None => {}
        }
        peer::Peer::attested(&emitter, report.trusted).await?;
        Ok(path)
    }
}

/// Connects to `bus`, serves the root objects, then owns [`BUS_NAME`].
///
/// # Errors
/// zbus errors; `NameTaken` when another instance runs.
///
/// # Cancel safety
/// Cancel safe: dropping the future drops the half-built connection.
pub async fn serve(
    bus: &Bus,
    service: Service,
    responder_port: u16,
    responder_status: watch::Receiver<Option<Fingerprint>>,
) -> zbus::Result<zbus::Connection> {
    let builder = match bus {
        Bus::System => zbus::connection::Builder::system()?,
        Bus::Address(addr) => zbus::connection::Builder::address(addr.as_str())?,
    };
    builder
        .serve_at(ROOT_PATH, requester::Requester::new(service))?
        .serve_at(
            ROOT_PATH,
            responder::Responder::new(responder_port, responder_status),
        )?
        .serve_at(ROOT_PATH, zbus::fdo::ObjectManager)?
        .name(BUS_NAME)?
        .build()
        .await
}

/// Emits PropertiesChanged for `IdentityFingerprint` whenever the served identity changes,
/// until the sender side of `status` is gone.
///
/// # Cancel safety
/// Cancel safe.
pub async fn publish_responder(
    conn: zbus::Connection,
    mut status: watch::Receiver<Option<Fingerprint>>,
) {
    while status.changed().await.is_ok() {
        let iface = conn
            .object_server()
            .interface::<_, responder::Responder>(ROOT_PATH)
            .await;
        if let Ok(iface) = iface {
            let r = iface
                .get()
                .await
                .identity_fingerprint_changed(iface.signal_emitter())
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %crate::kit::ErrorChain(&e), "cannot publish the responder identity");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_ids_are_valid_path_elements_and_distinct() {
        let cases = [
            ("127.0.0.1:4194", "ipv4_127_0_0_1_4194"),
            ("[::1]:4194", "ipv6_0_0_0_0_0_0_0_1_4194"),
            ("[::ffff:1.2.3.4]:1", "ipv6_0_0_0_0_0_ffff_102_304_1"),
            ("[::ffff:1:2:3:4]:1", "ipv6_0_0_0_ffff_1_2_3_4_1"),
            ("[fe80::1%3]:9", "ipv6_fe80_0_0_0_0_0_0_1_s3_9"),
        ];
        for (addr, want) in cases {
            let a: SocketAddr = addr.parse().unwrap();
            let id = peer_id(&a);
            assert_eq!(id, want);
            assert!(ObjectPath::try_from(format!("{PEERS_PATH}/{id}")).is_ok());
        }
    }
}
