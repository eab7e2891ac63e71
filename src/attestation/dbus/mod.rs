//! The D-Bus surface of `bmc-attestation` (bus name `xyz.openbmc_project.attestation`).
//!
//! | Path | Interface |
//! |---|---|
//! | `/xyz/openbmc_project/attestation` | `xyz.openbmc_project.BmcPairing.Attestation.Requester` ([`requester`]) |
//! | `/xyz/openbmc_project/attestation` | `xyz.openbmc_project.BmcPairing.Attestation.Responder` ([`responder`]) |
//! | `/xyz/openbmc_project/attestation` | `org.freedesktop.DBus.ObjectManager` |
//! | `/xyz/openbmc_project/attestation/peers/<id>` | `xyz.openbmc_project.BmcPairing.Attestation.Peer` ([`peer`]) |
//! | `/xyz/openbmc_project/component_integrity/<id>` | upstream `Attestation.ComponentIntegrity`, `.IdentityAuthentication`, `.MeasurementSet` ([`component_integrity`]) |
//! | `/xyz/openbmc_project/component_integrity`, `/xyz/openbmc_project/certs/devices` | `org.freedesktop.DBus.ObjectManager` (InterfacesAdded for the mapper) |
//! | `/xyz/openbmc_project/certs/devices/<id>/slot_0` | `xyz.openbmc_project.Certs.Certificate`: the peer's proven leaf, and `Association.Definitions` ([`inventory`]) |
//! | `/xyz/openbmc_project/certs/devices/<id>/slot_0_issuer_<n>` | `xyz.openbmc_project.Certs.Certificate`: the rest of its chain, `n` = 1 for the leaf's issuer up to the root |
//! | `/xyz/openbmc_project/component_integrity/<id>` | also `Association.Definitions` ([`inventory`]) |
//! | `/xyz/openbmc_project/inventory/bmc_pairing/peers/<id>` | `xyz.openbmc_project.Inventory.Item`: the peer BMC, target of `authenticating` |
//! | `/xyz/openbmc_project/inventory/bmc_pairing/tpm` | `xyz.openbmc_project.Inventory.Item`, `.Inventory.Item.TrustedComponent`: this BMC's TPM (TPM key backend only) |
//! | `/xyz/openbmc_project/inventory` | `org.freedesktop.DBus.ObjectManager` (upstream asks it of every service with inventory items) |
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
//!   The ComponentIntegrity object of the peer follows the same record (`LastUpdated`,
//!   `ResponderVerificationStatus`, `TypeVersion`); the slot-0 certificate object appears
//!   or changes when the peer proves an identity.
//! - `SPDMGetSignedMeasurements` changes nothing: it only reports.

pub mod component_integrity;
pub mod error;
pub mod inventory;
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
    let (a, h) = algorithm_names(asym, hash);
    format!("{a}/{h}")
}

/// The DSP0274/Redfish names of a signing and a hash algorithm
/// (`TPM_ALG_ECDSA_ECC_NIST_P256`, `TPM_ALG_SHA_256`).
pub fn algorithm_names(asym: AsymAlgo, hash: HashAlgo) -> (&'static str, &'static str) {
    let a = match asym {
        AsymAlgo::EcdsaP256 => "TPM_ALG_ECDSA_ECC_NIST_P256",
        AsymAlgo::EcdsaP384 => "TPM_ALG_ECDSA_ECC_NIST_P384",
    };
    let h = match hash {
        HashAlgo::Sha256 => "TPM_ALG_SHA_256",
        HashAlgo::Sha384 => "TPM_ALG_SHA_384",
    };
    (a, h)
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
    /// Milliseconds since the epoch of the last attestation (ComponentIntegrity).
    pub last_attested_ms: u64,
    /// Whether the last attestation proved the peer's identity.
    pub authenticated: bool,
    /// ComponentIntegrity `Enabled`: signed measurements may be asked for.
    pub enabled: bool,
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
            last_attested_ms: 0,
            authenticated: false,
            enabled: true,
        }
    }

    fn apply(&mut self, report: &Report, now_ms: u64) {
        self.trust_policy = report.trust_policy.clone();
        self.outcome = report.outcome;
        self.last_attested = now_ms / 1000;
        self.last_attested_ms = now_ms;
        self.authenticated = report.authenticated;
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

    /// ComponentIntegrity and IdentityAuthentication properties whose values differ from
    /// `old`.
    fn component_changes(&self, old: &PeerAttestation) -> (PropertyMap, PropertyMap) {
        let mut integrity = HashMap::new();
        if self.version != old.version {
            integrity.insert("TypeVersion", Value::from(self.version.clone()));
        }
        if self.last_attested_ms != old.last_attested_ms {
            integrity.insert("LastUpdated", Value::from(self.last_attested_ms));
        }
        let mut identity = HashMap::new();
        if self.authenticated != old.authenticated {
            let status = if self.authenticated {
                "Success"
            } else {
                "Failed"
            };
            identity.insert(
                "ResponderVerificationStatus",
                Value::from(format!(
                    "xyz.openbmc_project.Attestation.IdentityAuthentication.VerificationStatus.{status}"
                )),
            );
        }
        (integrity, identity)
    }
}

type PropertyMap = HashMap<&'static str, Value<'static>>;

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
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let used = self.inner.seq.fetch_add(1, Ordering::Relaxed);
        let (created, evicted, changes, component) = {
            let mut peers = self.peers();
            match peers.get_mut(&id) {
                Some(slot) => {
                    slot.used = used;
                    let mut rec = lock(&slot.record);
                    let old = rec.clone();
                    rec.apply(report, now_ms);
                    (
                        None,
                        None,
                        rec.changed_since(&old),
                        rec.component_changes(&old),
                    )
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
                    rec.apply(report, now_ms);
                    let record = Arc::new(Mutex::new(rec));
                    peers.insert(
                        id.clone(),
                        Slot {
                            record: record.clone(),
                            used,
                        },
                    );
                    (
                        Some(record),
                        evicted,
                        HashMap::new(),
                        (HashMap::new(), HashMap::new()),
                    )
                }
            }
        };
        if let Some(old_id) = evicted {
            let old_path = format!("{PEERS_PATH}/{old_id}");
            tracing::info!(path = %old_path, "too many peer objects; removing the least recently attested");
            server.remove::<peer::Peer, _>(old_path.as_str()).await?;
            remove_component(server, &old_id).await?;
        }
        let emitter = SignalEmitter::new(conn, ObjectPath::from(&path).to_owned())?;
        match created {
            Some(record) => {
                // InterfacesAdded carries the recorded values.
                server
                    .at(&path, peer::Peer::new(self.clone(), *addr, record.clone()))
                    .await?;
                self.add_component(server, addr, &id, record).await?;
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
        let (integrity, identity) = component;
        let component_emitter = SignalEmitter::new(
            conn,
            ObjectPath::try_from(component_integrity::component_path(&id))
                .map_err(zbus::Error::from)?
                .to_owned(),
        )?;
        for (iface, changes) in [
            (COMPONENT_INTEGRITY_INTERFACE, integrity),
            (IDENTITY_AUTHENTICATION_INTERFACE, identity),
        ] {
            if !changes.is_empty() {
                zbus::fdo::Properties::properties_changed(
                    &component_emitter,
                    iface.try_into().map_err(zbus::Error::from)?,
                    changes,
                    std::borrow::Cow::Borrowed(&[]),
                )
                .await?;
            }
        }
        if let Some(v) = &report.verdict {
            self.publish_certificate(server, conn, &id, &v.chain)
                .await?;
        }
        peer::Peer::attested(&emitter, report.trusted).await?;
        Ok(path)
    }
}

/// The upstream ComponentIntegrity interface name.
pub const COMPONENT_INTEGRITY_INTERFACE: &str =
    "xyz.openbmc_project.Attestation.ComponentIntegrity";
/// The upstream IdentityAuthentication interface name.
pub const IDENTITY_AUTHENTICATION_INTERFACE: &str =
    "xyz.openbmc_project.Attestation.IdentityAuthentication";

async fn remove_component(server: &ObjectServer, id: &str) -> Result<(), Error> {
    let path = component_integrity::component_path(id);
    server
        .remove::<component_integrity::MeasurementSet, _>(path.as_str())
        .await?;
    server
        .remove::<component_integrity::IdentityAuthentication, _>(path.as_str())
        .await?;
    server
        .remove::<component_integrity::ComponentIntegrity, _>(path.as_str())
        .await?;
    server
        .remove::<inventory::Definitions, _>(path.as_str())
        .await?;
    server
        .remove::<inventory::Item, _>(inventory::peer_item_path(id).as_str())
        .await?;
    // A peer that never proved an identity has no certificate objects.
    let cert = component_integrity::slot_certificate_path(id);
    gone(
        server
            .remove::<inventory::Definitions, _>(cert.as_str())
            .await,
    )?;
    remove_certificates_from(server, id, 0).await
}

/// `Ok` for a removal that found nothing to remove.
fn gone(result: zbus::Result<bool>) -> Result<(), Error> {
    match result {
        Ok(_) | Err(zbus::Error::InterfaceNotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// The certificate object of position `n` of peer `id`'s chain, counted from the leaf
/// (`slot_0`) towards the root (`slot_0_issuer_<n>`).
pub fn chain_certificate_path(id: &str, n: usize) -> String {
    match n {
        0 => component_integrity::slot_certificate_path(id),
        n => format!(
            "{}_issuer_{n}",
            component_integrity::slot_certificate_path(id)
        ),
    }
}

/// Removes the certificate objects of peer `id` from position `from` (leaf = 0) on.
async fn remove_certificates_from(
    server: &ObjectServer,
    id: &str,
    from: usize,
) -> Result<(), Error> {
    // A chain is at most a few certificates; stop at the first position with none.
    for n in from.. {
        let path = chain_certificate_path(id, n);
        match server
            .remove::<crate::dbus::certificate::Certificate, _>(path.as_str())
            .await
        {
            Ok(_) => {}
            Err(zbus::Error::InterfaceNotFound) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

impl Service {
    async fn add_component(
        &self,
        server: &ObjectServer,
        addr: &SocketAddr,
        id: &str,
        record: SharedRecord,
    ) -> Result<(), Error> {
        let path = component_integrity::component_path(id);
        server
            .at(
                path.as_str(),
                component_integrity::ComponentIntegrity::new(record.clone()),
            )
            .await?;
        server
            .at(
                path.as_str(),
                component_integrity::IdentityAuthentication::new(record.clone()),
            )
            .await?;
        server
            .at(
                path.as_str(),
                component_integrity::MeasurementSet::new(
                    self.clone(),
                    *addr,
                    id.to_owned(),
                    record,
                ),
            )
            .await?;
        // The peer BMC as the inventory item this object authenticates (before the
        // association that names it).
        server
            .at(
                inventory::peer_item_path(id).as_str(),
                inventory::Item::new(format!("Peer BMC at {addr}")),
            )
            .await?;
        server
            .at(
                path.as_str(),
                inventory::Definitions::new(inventory::component_associations(id, None)),
            )
            .await?;
        Ok(())
    }

    /// Serves (or updates) the proven chain (root first) of `id`: the leaf as the slot-0
    /// certificate, its issuers after it, and the associations between the leaf and the
    /// ComponentIntegrity object.
    async fn publish_certificate(
        &self,
        server: &ObjectServer,
        conn: &zbus::Connection,
        id: &str,
        chain: &[Vec<u8>],
    ) -> Result<(), Error> {
        use crate::dbus::certificate::{Certificate, CertificateProperties};
        let parsed: Option<Vec<CertificateProperties>> = chain
            .iter()
            .rev()
            .map(|der| CertificateProperties::from_der(der).ok())
            .collect();
        let Some(parsed) = parsed.filter(|p| !p.is_empty()) else {
            return Ok(());
        };
        let count = parsed.len();
        for (n, props) in parsed.into_iter().enumerate() {
            let path = chain_certificate_path(id, n);
            let emitter = SignalEmitter::new(
                conn,
                ObjectPath::try_from(path.as_str()).map_err(zbus::Error::from)?,
            )?;
            match server.interface::<_, Certificate>(path.as_str()).await {
                Ok(iface) => iface.get_mut().await.update(props, &emitter).await?,
                Err(_) => {
                    server.at(path.as_str(), Certificate::new(props)).await?;
                }
            }
        }
        // A shorter chain than before: its old issuers go.
        remove_certificates_from(server, id, count).await?;
        let leaf = chain_certificate_path(id, 0);
        let component = component_integrity::component_path(id);
        if server
            .interface::<_, inventory::Definitions>(leaf.as_str())
            .await
            .is_err()
        {
            server
                .at(
                    leaf.as_str(),
                    inventory::Definitions::new(inventory::leaf_associations(&component)),
                )
                .await?;
        }
        if let Ok(iface) = server
            .interface::<_, inventory::Definitions>(component.as_str())
            .await
        {
            let emitter = SignalEmitter::new(
                conn,
                ObjectPath::try_from(component.as_str()).map_err(zbus::Error::from)?,
            )?;
            iface
                .get_mut()
                .await
                .update(inventory::component_associations(id, Some(&leaf)), &emitter)
                .await?;
        }
        Ok(())
    }

    /// A fresh attestation of `addr` pinned to `fingerprint_hex` (the identity it last
    /// proved) that ends with the signed measurements `quote` asks for. Records nothing.
    ///
    /// # Errors
    /// `InternalFailure` when the peer never proved an identity, cannot be reached, or
    /// does not prove the pinned identity again (the YAML allows only that and
    /// `InvalidArgument`).
    pub async fn quote(
        &self,
        addr: SocketAddr,
        fingerprint_hex: &str,
        quote: bmc_pairing_core::spdm::QuoteRequest,
    ) -> Result<bmc_pairing_core::spdm::Verdict, Error> {
        let fingerprint = Fingerprint::from_hex(fingerprint_hex).map_err(|_| {
            Error::InternalFailure("the peer has not proved an identity yet".into())
        })?;
        let settings = Settings {
            measurements: bmc_pairing_core::spdm::MeasurementPolicy::default(),
            ..self.inner.settings.clone()
        };
        let _permit = tokio::time::timeout(
            settings.attest_timeout,
            self.inner.permits.clone().acquire_owned(),
        )
        .await
        .map_err(|_| Error::InternalFailure("too many attestations in progress".into()))?
        .map_err(|_| Error::InternalFailure("shutting down".into()))?;
        let verify_time = crate::clock::time_view(0).into();
        let report = attest::attest_with(
            addr,
            format!("pinned:{fingerprint_hex}"),
            TrustPolicy::Pinned(fingerprint),
            &settings,
            verify_time,
            Some(quote),
        )
        .await
        .map_err(|f| Error::InternalFailure(crate::kit::ErrorChain(&f).to_string()))?;
        match report.verdict {
            Some(v) if report.authenticated => Ok(v),
            _ => Err(Error::InternalFailure(format!(
                "the peer did not prove its identity again: {}",
                report.error.unwrap_or_default()
            ))),
        }
    }
}

/// This BMC's TPM as an inventory object (TPM key backend only).
#[derive(Clone, Debug, Default)]
pub struct TpmObject {
    /// This BMC's own inventory item, which the TPM protects (`tpm_protects`).
    pub protects: Option<String>,
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
    tpm: Option<TpmObject>,
) -> zbus::Result<zbus::Connection> {
    let builder = match bus {
        Bus::System => zbus::connection::Builder::system()?,
        Bus::Address(addr) => zbus::connection::Builder::address(addr.as_str())?,
    };
    let builder = match tpm {
        Some(tpm) => {
            let builder = builder
                .serve_at(
                    inventory::TPM_PATH,
                    inventory::Item::new(
                        "TPM 2.0 holding this BMC's pairing and SPDM identity keys",
                    ),
                )?
                .serve_at(inventory::TPM_PATH, inventory::TrustedComponent)?;
            let associations = inventory::tpm_associations(tpm.protects.as_deref());
            if associations.is_empty() {
                builder
            } else {
                builder.serve_at(
                    inventory::TPM_PATH,
                    inventory::Definitions::new(associations),
                )?
            }
        }
        None => builder,
    };
    builder
        .serve_at(ROOT_PATH, requester::Requester::new(service))?
        .serve_at(
            ROOT_PATH,
            responder::Responder::new(responder_port, responder_status),
        )?
        .serve_at(ROOT_PATH, zbus::fdo::ObjectManager)?
        // The mapper learns of objects made later only from InterfacesAdded, which is
        // emitted from an ObjectManager above them.
        .serve_at(
            component_integrity::COMPONENT_INTEGRITY_PATH,
            zbus::fdo::ObjectManager,
        )?
        .serve_at(
            component_integrity::DEVICE_CERTS_PATH,
            zbus::fdo::ObjectManager,
        )?
        .serve_at(inventory::INVENTORY_ROOT, zbus::fdo::ObjectManager)?
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

    /// The 65th peer evicts the least recently attested one with all its objects, also
    /// when that peer never proved an identity (so it has no certificate object).
    #[tokio::test]
    async fn eviction_removes_every_object_of_the_oldest_peer() {
        let settings = Settings {
            framing: crate::spdm::transport::Framing::Dsp0287,
            timeouts: crate::spdm::transport::Timeouts::default(),
            connect_timeout: std::time::Duration::from_millis(200),
            attest_timeout: std::time::Duration::from_secs(1),
            device: None,
            measurements: bmc_pairing_core::spdm::MeasurementPolicy::default(),
        };
        let service = Service::new(settings, 4194, "/nonexistent".into(), 1);
        let (server, _client) = crate::dbus::p2p::serve("/", zbus::fdo::ObjectManager).await;
        let objects = server.object_server();
        let report = |addr: &SocketAddr| Report {
            address: addr.ip().to_string(),
            port: addr.port(),
            trust_policy: "first-contact".into(),
            trusted: false,
            outcome: AttestationOutcome::Rejected,
            authenticated: false,
            fingerprint: None,
            error: Some("refused".into()),
            verdict: None,
        };
        let addrs: Vec<SocketAddr> = (0..=MAX_PEERS)
            .map(|i| SocketAddr::from(([127, 0, 0, 1], 1000 + u16::try_from(i).unwrap())))
            .collect();
        for addr in &addrs {
            service
                .record(objects, &server, addr, &report(addr))
                .await
                .unwrap();
        }
        assert_eq!(service.peers().len(), MAX_PEERS);
        let first = component_integrity::component_path(&peer_id(&addrs[0]));
        let last = component_integrity::component_path(&peer_id(&addrs[MAX_PEERS]));
        type Ci = component_integrity::ComponentIntegrity;
        type Ms = component_integrity::MeasurementSet;
        assert!(objects.interface::<_, Ci>(first.as_str()).await.is_err());
        assert!(objects.interface::<_, Ms>(first.as_str()).await.is_err());
        assert!(objects.interface::<_, Ci>(last.as_str()).await.is_ok());
        assert!(objects.interface::<_, Ms>(last.as_str()).await.is_ok());
    }

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
