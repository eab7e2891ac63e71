//! The upstream Attestation interfaces bmcweb reads for `/redfish/v1/ComponentIntegrity`, at
//! `/xyz/openbmc_project/component_integrity/<id>`, one object per attested peer (same `<id>`
//! as its `Attestation.Peer` object), exactly as phosphor-dbus-interfaces' YAML defines them:
//!
//! - `xyz.openbmc_project.Attestation.ComponentIntegrity`: `Type` SPDM, `TypeVersion` the
//!   version negotiated when the peer last proved its identity, `LastUpdated` the last
//!   attestation in milliseconds since the epoch, `Enabled` (writable; when false,
//!   `SPDMGetSignedMeasurements` is refused).
//! - `xyz.openbmc_project.Attestation.IdentityAuthentication`: `ResponderVerificationStatus`
//!   Success when the last attestation proved the peer's identity (chain accepted, both
//!   signatures valid), Failed when it did not.
//! - `xyz.openbmc_project.Attestation.MeasurementSet`: `SPDMGetSignedMeasurements` runs a
//!   fresh attestation of the peer, pinned to the identity it last proved, ending with the
//!   caller's indices and nonce, and returns the signed L1 transcript for a third party.
//!
//! The leaf certificate of slot 0 is served as a read-only `xyz.openbmc_project.Certs.
//! Certificate` at [`slot_certificate_path`]: the `Certificate` the method returns.

// The interface macro generates undocumented helpers (`*_changed`).
#![allow(missing_docs)]
// `SPDMGetSignedMeasurements` takes the YAML's argument names (zbus introspects the Rust
// names of the arguments), which are not snake case; the attribute does not reach them
// through the macro from anywhere narrower.
#![allow(non_snake_case)]

use std::net::SocketAddr;

use base64::Engine as _;
use zbus::zvariant::OwnedObjectPath;

use super::{Error, PeerAttestation, Service, SharedRecord, lock};
use bmc_pairing_core::spdm::QuoteRequest;

/// Where the ComponentIntegrity objects live (the YAML's `paths` namespace).
pub const COMPONENT_INTEGRITY_PATH: &str = "/xyz/openbmc_project/component_integrity";
/// Where the peers' device certificates live (upstream Redfish SPDM design).
pub const DEVICE_CERTS_PATH: &str = "/xyz/openbmc_project/certs/devices";

/// The ComponentIntegrity object of peer `id`.
pub fn component_path(id: &str) -> String {
    format!("{COMPONENT_INTEGRITY_PATH}/{id}")
}

/// The certificate object of slot 0 of peer `id`.
pub fn slot_certificate_path(id: &str) -> String {
    format!("{DEVICE_CERTS_PATH}/{id}/slot_0")
}

/// PEM `PUBLIC KEY` of the SubjectPublicKeyInfo in certificate `der`.
pub fn public_key_pem(der: &[u8]) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let spki = cert.public_key().raw.to_vec();
    Some(pem::encode_config(
        &pem::Pem::new("PUBLIC KEY", spki),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    ))
}

fn enum_value(interface: &str, enumeration: &str, value: &str) -> String {
    format!("xyz.openbmc_project.Attestation.{interface}.{enumeration}.{value}")
}

/// `xyz.openbmc_project.Attestation.ComponentIntegrity` of one peer.
#[derive(Debug)]
pub struct ComponentIntegrity {
    record: SharedRecord,
}

impl ComponentIntegrity {
    /// The interface showing `record`.
    pub fn new(record: SharedRecord) -> Self {
        ComponentIntegrity { record }
    }

    fn read<T>(&self, f: impl FnOnce(&PeerAttestation) -> T) -> T {
        f(&lock(&self.record))
    }
}

#[zbus::interface(name = "xyz.openbmc_project.Attestation.ComponentIntegrity")]
impl ComponentIntegrity {
    /// Whether SPDM is in use with this peer; set false to refuse signed measurements.
    #[zbus(property(emits_changed_signal = "true"), name = "Enabled")]
    async fn enabled(&self) -> bool {
        self.read(|r| r.enabled)
    }

    #[zbus(property, name = "Enabled")]
    async fn set_enabled(&mut self, value: bool) {
        lock(&self.record).enabled = value;
    }

    /// Always SPDM.
    #[zbus(property(emits_changed_signal = "const"), name = "Type")]
    async fn security_type(&self) -> String {
        enum_value("ComponentIntegrity", "SecurityTechnologyType", "SPDM")
    }

    /// The SPDM version negotiated when the peer last proved its identity (`1.2`).
    #[zbus(property(emits_changed_signal = "true"), name = "TypeVersion")]
    async fn type_version(&self) -> String {
        self.read(|r| r.version.clone())
    }

    /// The last attestation, milliseconds since the epoch.
    #[zbus(property(emits_changed_signal = "true"), name = "LastUpdated")]
    async fn last_updated(&self) -> u64 {
        self.read(|r| r.last_attested_ms)
    }
}

/// `xyz.openbmc_project.Attestation.IdentityAuthentication` of one peer.
#[derive(Debug)]
pub struct IdentityAuthentication {
    record: SharedRecord,
}

impl IdentityAuthentication {
    /// The interface showing `record`.
    pub fn new(record: SharedRecord) -> Self {
        IdentityAuthentication { record }
    }
}

#[zbus::interface(name = "xyz.openbmc_project.Attestation.IdentityAuthentication")]
impl IdentityAuthentication {
    /// Success when the last attestation proved the peer's identity, else Failed. Set by
    /// attestations only: a client's write is refused.
    #[zbus(
        property(emits_changed_signal = "true"),
        name = "ResponderVerificationStatus"
    )]
    async fn responder_verification_status(&self) -> String {
        let proven = lock(&self.record).authenticated;
        let value = if proven { "Success" } else { "Failed" };
        enum_value("IdentityAuthentication", "VerificationStatus", value)
    }

    // The YAML does not mark it readonly, so it is writable in introspection; only our
    // own attestation may decide it.
    #[zbus(property, name = "ResponderVerificationStatus")]
    async fn set_responder_verification_status(&mut self, _value: String) -> zbus::fdo::Result<()> {
        Err(zbus::fdo::Error::PropertyReadOnly(
            "the verification status is set by attestation".into(),
        ))
    }
}

/// `xyz.openbmc_project.Attestation.MeasurementSet` of one peer.
#[derive(Debug)]
pub struct MeasurementSet {
    service: Service,
    addr: SocketAddr,
    id: String,
    record: SharedRecord,
}

impl MeasurementSet {
    /// The interface of peer `addr` (object id `id`) showing `record`.
    pub fn new(service: Service, addr: SocketAddr, id: String, record: SharedRecord) -> Self {
        MeasurementSet {
            service,
            addr,
            id,
            record,
        }
    }
}

#[zbus::interface(name = "xyz.openbmc_project.Attestation.MeasurementSet")]
impl MeasurementSet {
    /// Signs the caller's nonce and measurement indices (empty = all) with the key of
    /// `SlotId` (only slot 0 is attested) in a fresh SPDM exchange with the peer, pinned
    /// to the identity it last proved. Returns the certificate object, the hash and
    /// signing algorithms, the PEM public key, the base64 L1 transcript ending with the
    /// signature, and the SPDM version.
    #[zbus(
        name = "SPDMGetSignedMeasurements",
        out_args(
            "Certificate",
            "HashingAlgorithm",
            "PublicKey",
            "SignedMeasurements",
            "SigningAlgorithm",
            "Version"
        )
    )]
    async fn spdm_get_signed_measurements(
        &self,
        MeasurementIndices: Vec<u64>,
        Nonce: String,
        SlotId: u64,
    ) -> Result<(OwnedObjectPath, String, String, String, String, String), Error> {
        let quote = QuoteRequest::parse(&MeasurementIndices, &Nonce, SlotId)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let (enabled, fingerprint) = {
            let r = lock(&self.record);
            (r.enabled, r.fingerprint.clone())
        };
        if !enabled {
            return Err(Error::InvalidArgument(
                "security protocols are disabled for this component (Enabled is false)".into(),
            ));
        }
        let verdict = self.service.quote(self.addr, &fingerprint, quote).await?;
        let internal = |what: &str| Error::InternalFailure(what.to_owned());
        let signed = verdict
            .signed_measurements
            .as_ref()
            .ok_or_else(|| internal("the peer returned no signed measurements"))?;
        let leaf = verdict
            .chain
            .last()
            .ok_or_else(|| internal("the peer's chain is empty"))?;
        let public_key =
            public_key_pem(leaf).ok_or_else(|| internal("the peer's leaf is not X.509"))?;
        let path = OwnedObjectPath::try_from(slot_certificate_path(&self.id))
            .map_err(zbus::Error::from)?;
        let (signing, hashing) =
            super::algorithm_names(verdict.algorithms.base_asym, verdict.algorithms.base_hash);
        Ok((
            path,
            hashing.to_owned(),
            public_key,
            base64::engine::general_purpose::STANDARD.encode(&signed.transcript),
            signing.to_owned(),
            format!("{}.{}", verdict.version >> 4, verdict.version & 0x0f),
        ))
    }
}
