//! `xyz.openbmc_project.Attestation.Peer` at `/xyz/openbmc_project/attestation/peers/<id>`:
//! the last attestation of one peer address, `Attest()` to run it again with the same
//! policy, and the `Attested(b)` signal (the seed's signal-driven flow).

// The interface macro generates undocumented helpers (`*_changed`, the signal sender).
#![allow(missing_docs)]

use std::net::SocketAddr;

use zbus::object_server::{ObjectServer, SignalEmitter};

use crate::contract::{MeasurementEntry, TrustPolicyArg};
use zbus::zvariant::OwnedObjectPath;

use super::{Error, PeerAttestation, Service, SharedRecord, lock};

/// One attested peer address.
#[derive(Debug)]
pub struct Peer {
    service: Service,
    addr: SocketAddr,
    record: SharedRecord,
}

impl Peer {
    /// The object for `addr`, showing `record`.
    pub fn new(service: Service, addr: SocketAddr, record: SharedRecord) -> Self {
        Peer {
            service,
            addr,
            record,
        }
    }

    fn read<T>(&self, f: impl FnOnce(&PeerAttestation) -> T) -> T {
        f(&lock(&self.record))
    }
}

#[zbus::interface(name = "xyz.openbmc_project.Attestation.Peer")]
impl Peer {
    /// Attests the peer again with the policy of its last attestation; same reply and
    /// errors as `Requester.Attest`.
    #[zbus(
        name = "Attest",
        out_args(
            "peer",
            "trusted",
            "outcome",
            "fingerprint",
            "chain",
            "measurements",
            "verdictJson"
        )
    )]
    async fn attest(
        &self,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<
        // `AttestReplyArgs`, spelled out: zbus takes the out arguments from the tuple's
        // syntax (an alias would introspect as one struct argument).
        (
            OwnedObjectPath,
            bool,
            String,
            String,
            Vec<Vec<u8>>,
            Vec<MeasurementEntry>,
            String,
        ),
        Error,
    > {
        let policy = self.read(|r| r.trust_policy.clone());
        let TrustPolicyArg(choice) = policy
            .parse()
            .map_err(super::super::requester::InputError::from)?;
        let reply = self.service.attest(server, conn, self.addr, choice).await?;
        Ok(reply.into())
    }

    /// The peer's IP address.
    #[zbus(property(emits_changed_signal = "const"), name = "Address")]
    async fn address(&self) -> String {
        self.read(|r| r.address.clone())
    }

    /// The peer's SPDM port.
    #[zbus(property(emits_changed_signal = "const"), name = "Port")]
    async fn port(&self) -> u16 {
        self.read(|r| r.port)
    }

    /// Outcome of the last attestation.
    #[zbus(property(emits_changed_signal = "true"), name = "Outcome")]
    async fn outcome(&self) -> String {
        self.read(|r| crate::contract::outcome_to_wire(r.outcome))
    }

    /// The trust policy of the last attestation.
    #[zbus(property(emits_changed_signal = "true"), name = "TrustPolicy")]
    async fn trust_policy(&self) -> String {
        self.read(|r| r.trust_policy.clone())
    }

    /// SHA-256 of the leaf SubjectPublicKeyInfo the peer last proved, lowercase hex.
    #[zbus(property(emits_changed_signal = "true"), name = "IdentityFingerprint")]
    async fn identity_fingerprint(&self) -> String {
        self.read(|r| r.fingerprint.clone())
    }

    /// SPDM version negotiated when the identity was last proved (`1.2`).
    #[zbus(property(emits_changed_signal = "true"), name = "Version")]
    async fn version(&self) -> String {
        self.read(|r| r.version.clone())
    }

    /// Algorithms negotiated when the identity was last proved.
    #[zbus(property(emits_changed_signal = "true"), name = "Algorithms")]
    async fn algorithms(&self) -> String {
        self.read(|r| r.algorithms.clone())
    }

    /// The peer's proven certificate chain, DER, root first.
    #[zbus(property(emits_changed_signal = "true"), name = "Chain")]
    async fn chain(&self) -> Vec<Vec<u8>> {
        self.read(|r| r.chain.clone())
    }

    /// Per-index measurement results `(index, value, status, expected)`.
    #[zbus(property(emits_changed_signal = "true"), name = "Measurements")]
    async fn measurements(&self) -> Vec<MeasurementEntry> {
        self.read(|r| r.measurements.clone())
    }

    /// Unix time in seconds of the last attestation.
    #[zbus(property(emits_changed_signal = "true"), name = "LastAttested")]
    async fn last_attested(&self) -> u64 {
        self.read(|r| r.last_attested)
    }

    /// Why the last attestation rejected the peer; empty when it did not.
    #[zbus(property(emits_changed_signal = "true"), name = "LastError")]
    async fn last_error(&self) -> String {
        self.read(|r| r.last_error.clone())
    }

    /// JSON report of the last attestation.
    #[zbus(property(emits_changed_signal = "true"), name = "Verdict")]
    async fn verdict(&self) -> String {
        self.read(|r| r.verdict.clone())
    }

    /// Emitted once per attestation of this peer that reaches a result: true when trusted.
    #[zbus(signal, name = "Attested")]
    pub async fn attested(emitter: &SignalEmitter<'_>, trusted: bool) -> zbus::Result<()>;
}
