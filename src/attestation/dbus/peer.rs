//! `xyz.openbmc_project.BmcPairing.Attestation.Peer` at `/xyz/openbmc_project/attestation/peers/<id>`:
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

#[zbus::interface(name = "xyz.openbmc_project.BmcPairing.Attestation.Peer")]
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use bmc_pairing_core::pairing::AttestationOutcome;
    use bmc_pairing_core::spdm::MeasurementPolicy;

    use super::*;
    use crate::attestation::requester::Settings;
    use crate::contract::attestation::PEER_INTERFACE;
    use crate::dbus::p2p;
    use crate::spdm::transport::{Framing, Timeouts};

    #[tokio::test]
    async fn properties_show_the_record_and_a_stored_bad_policy_is_refused() {
        let addr: SocketAddr = "127.0.0.1:4194".parse().unwrap();
        let mut record = PeerAttestation::new(&addr);
        record.outcome = AttestationOutcome::TrustedWithFindings;
        record.trust_policy = "not a policy".into();
        record.measurements = vec![MeasurementEntry {
            index: 1,
            value: "aa".into(),
            status: "Mismatch".into(),
            expected: "bb".into(),
        }];
        let record = Arc::new(Mutex::new(record));
        let settings = Settings {
            framing: Framing::Dsp0287,
            timeouts: Timeouts::default(),
            connect_timeout: Duration::from_millis(200),
            attest_timeout: Duration::from_secs(1),
            device: None,
            measurements: MeasurementPolicy::default(),
        };
        let service = Service::new(settings, 4194, "/nonexistent".into(), 1);
        let path = "/xyz/openbmc_project/attestation/peers/ipv4_127_0_0_1_4194";
        let (_server, client) = p2p::serve(path, Peer::new(service, addr, record)).await;
        assert_eq!(
            p2p::get::<String>(&client, path, PEER_INTERFACE, "Outcome").await,
            "xyz.openbmc_project.BmcPairing.Attestation.Peer.Outcome.TrustedWithFindings"
        );
        assert_eq!(
            p2p::get::<String>(&client, path, PEER_INTERFACE, "Address").await,
            "127.0.0.1"
        );
        let entries: Vec<MeasurementEntry> =
            p2p::get(&client, path, PEER_INTERFACE, "Measurements").await;
        assert_eq!(entries[0].status, "Mismatch");
        let again = p2p::call(&client, path, PEER_INTERFACE, "Attest", &()).await;
        assert_eq!(
            again.unwrap_err().0,
            "xyz.openbmc_project.Common.Error.InvalidArgument"
        );
    }
}
