//! `xyz.openbmc_project.BmcPairing.Peer` at `/xyz/openbmc_project/BmcPairingManager/peers/<id>`:
//! one object per paired peer, added and removed through the ObjectManager.

use std::collections::HashMap;

use zbus::zvariant::Value;

use super::Error;
use crate::config::TrustMode;
use crate::pairing::handle::{Handle, PeerView};
use bmc_pairing_core::pairing::{ConnState, PeerId};

/// D-Bus name of the interface (from the contract).
pub use crate::contract::manager::PEER_INTERFACE as INTERFACE;

/// `xyz.openbmc_project.BmcPairing.Peer.ConnectionState.<State>`.
pub fn state_string(state: ConnState) -> String {
    format!("{INTERFACE}.ConnectionState.{}", state.as_str())
}

/// `xyz.openbmc_project.BmcPairing.Peer.TrustMode.<Mode>`.
pub fn trust_string(mode: TrustMode) -> String {
    let value = match mode {
        TrustMode::FirstContact => "FirstContact",
        TrustMode::Anchored => "Anchored",
    };
    format!("{INTERFACE}.TrustMode.{value}")
}

/// `xyz.openbmc_project.BmcPairing.Peer.AttestationOutcome.<Outcome>`.
pub fn attestation_string(outcome: bmc_pairing_core::pairing::AttestationOutcome) -> String {
    format!("{INTERFACE}.AttestationOutcome.{}", outcome.as_str())
}

/// One paired peer.
#[derive(Debug)]
pub struct Peer {
    id: PeerId,
    handle: Handle,
}

impl Peer {
    /// The object for `id`.
    pub fn new(id: PeerId, handle: Handle) -> Self {
        Peer { id, handle }
    }

    fn view<T>(&self, f: impl FnOnce(&PeerView) -> T) -> zbus::fdo::Result<T> {
        self.handle
            .snapshot
            .borrow()
            .peers
            .get(&self.id)
            .map(f)
            .ok_or_else(|| zbus::fdo::Error::UnknownObject(format!("peer {} is gone", self.id)))
    }
}

/// The properties whose values differ between `old` and `new`, for PropertiesChanged.
pub fn changed_properties(old: &PeerView, new: &PeerView) -> HashMap<&'static str, Value<'static>> {
    let mut out = HashMap::new();
    if old.name != new.name {
        out.insert("Name", Value::from(new.name.clone()));
    }
    if old.address != new.address {
        out.insert("Address", Value::from(new.address.clone()));
    }
    if old.port != new.port {
        out.insert("Port", Value::from(new.port));
    }
    if old.fingerprint != new.fingerprint {
        out.insert("IdentityFingerprint", Value::from(new.fingerprint.clone()));
    }
    if old.trust_mode != new.trust_mode {
        out.insert("TrustMode", Value::from(trust_string(new.trust_mode)));
    }
    if old.incoming != new.incoming {
        out.insert("IncomingState", Value::from(state_string(new.incoming)));
    }
    if old.outgoing != new.outgoing {
        out.insert("OutgoingState", Value::from(state_string(new.outgoing)));
    }
    if old.state != new.state {
        out.insert("State", Value::from(state_string(new.state)));
    }
    if old.last_seen != new.last_seen {
        out.insert("LastSeen", Value::from(new.last_seen));
    }
    if old.attestation != new.attestation {
        out.insert(
            "AttestationOutcome",
            Value::from(attestation_string(new.attestation)),
        );
    }
    if old.attested_at != new.attested_at {
        out.insert("LastAttested", Value::from(new.attested_at));
    }
    if old.identity_mismatch != new.identity_mismatch {
        out.insert("IdentityMismatch", Value::from(new.identity_mismatch));
    }
    out
}

// The macro generates undocumented `*_changed` helpers.
#[allow(missing_docs)]
#[zbus::interface(name = "xyz.openbmc_project.BmcPairing.Peer")]
impl Peer {
    /// Forgets this peer: removes its pin and closes its sessions. Pairing again needs a new
    /// `ProvisionPeer`.
    #[zbus(name = "Unpair")]
    async fn unpair(&self) -> Result<(), Error> {
        self.handle
            .unpair(self.id.clone())
            .await
            .map_err(Error::from)
    }

    /// Attests the peer again, against its pin. An authenticated rejection (its measurements
    /// fail an Enforce policy) quarantines it until a later Reattest passes; a peer that does
    /// not answer, or answers with another identity, changes nothing (error `Unavailable`).
    #[zbus(name = "Reattest")]
    async fn reattest(&self) -> Result<(), Error> {
        self.handle
            .reattest(self.id.clone())
            .await
            .map_err(Error::from)
    }

    /// The last attestation result.
    #[zbus(property(emits_changed_signal = "true"), name = "AttestationOutcome")]
    async fn attestation_outcome(&self) -> zbus::fdo::Result<String> {
        self.view(|v| attestation_string(v.attestation))
    }

    /// Unix time (seconds) of the last attestation; 0 if never.
    #[zbus(property(emits_changed_signal = "true"), name = "LastAttested")]
    async fn last_attested(&self) -> zbus::fdo::Result<u64> {
        self.view(|v| v.attested_at)
    }

    /// The peer's BMC name.
    #[zbus(property(emits_changed_signal = "true"), name = "Name")]
    async fn name(&self) -> zbus::fdo::Result<String> {
        self.view(|v| v.name.clone())
    }

    /// Its pairing-channel address (a hint: the pinned identity decides).
    #[zbus(property(emits_changed_signal = "true"), name = "Address")]
    async fn address(&self) -> zbus::fdo::Result<String> {
        self.view(|v| v.address.clone())
    }

    /// Its pairing-channel port.
    #[zbus(property(emits_changed_signal = "true"), name = "Port")]
    async fn port(&self) -> zbus::fdo::Result<u16> {
        self.view(|v| v.port)
    }

    /// SHA-256 of its pinned leaf SubjectPublicKeyInfo, hex.
    #[zbus(property(emits_changed_signal = "true"), name = "IdentityFingerprint")]
    async fn identity_fingerprint(&self) -> zbus::fdo::Result<String> {
        self.view(|v| v.fingerprint.clone())
    }

    /// How it came to be trusted.
    #[zbus(property(emits_changed_signal = "true"), name = "TrustMode")]
    async fn trust_mode(&self) -> zbus::fdo::Result<String> {
        self.view(|v| trust_string(v.trust_mode))
    }

    /// State of the sessions it opened to us.
    #[zbus(property(emits_changed_signal = "true"), name = "IncomingState")]
    async fn incoming_state(&self) -> zbus::fdo::Result<String> {
        self.view(|v| state_string(v.incoming))
    }

    /// State of our session to it.
    #[zbus(property(emits_changed_signal = "true"), name = "OutgoingState")]
    async fn outgoing_state(&self) -> zbus::fdo::Result<String> {
        self.view(|v| state_string(v.outgoing))
    }

    /// The higher of the two directions.
    #[zbus(property(emits_changed_signal = "true"), name = "State")]
    async fn state(&self) -> zbus::fdo::Result<String> {
        self.view(|v| state_string(v.state))
    }

    /// True when something with another identity answered at the peer's address since the
    /// last session with the pinned identity. Pins are never changed by it.
    #[zbus(property(emits_changed_signal = "true"), name = "IdentityMismatch")]
    async fn identity_mismatch(&self) -> zbus::fdo::Result<bool> {
        self.view(|v| v.identity_mismatch)
    }

    /// Unix time (seconds) a session with it last opened; 0 if never.
    #[zbus(property(emits_changed_signal = "true"), name = "LastSeen")]
    async fn last_seen(&self) -> zbus::fdo::Result<u64> {
        self.view(|v| v.last_seen)
    }
}
