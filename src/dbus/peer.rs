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
    if old.unpaired_by_peer != new.unpaired_by_peer {
        out.insert("UnpairedByPeer", Value::from(new.unpaired_by_peer));
    }
    let (h, was) = (&new.health, &old.health);
    if h.handshakes != was.handshakes {
        out.insert("Handshakes", Value::from(h.handshakes));
    }
    if h.failed_handshakes != was.failed_handshakes {
        out.insert("FailedHandshakes", Value::from(h.failed_handshakes));
    }
    if h.reconnects != was.reconnects {
        out.insert("Reconnects", Value::from(h.reconnects));
    }
    if h.last_state_change != was.last_state_change {
        out.insert("LastStateChange", Value::from(h.last_state_change));
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

    /// True when the peer told us (inside an authenticated session) that its operator
    /// unpaired us. It is no longer dialled or accepted; its pin is kept for the operator to
    /// see. Unpair() removes it; ProvisionPeer pairs it anew.
    #[zbus(property(emits_changed_signal = "true"), name = "UnpairedByPeer")]
    async fn unpaired_by_peer(&self) -> zbus::fdo::Result<bool> {
        self.view(|v| v.unpaired_by_peer)
    }

    /// Unix time (seconds) a session with it last opened; 0 if never.
    #[zbus(property(emits_changed_signal = "true"), name = "LastSeen")]
    async fn last_seen(&self) -> zbus::fdo::Result<u64> {
        self.view(|v| v.last_seen)
    }

    /// Sessions opened with it (either direction) since this daemon started.
    #[zbus(property(emits_changed_signal = "true"), name = "Handshakes")]
    async fn handshakes(&self) -> zbus::fdo::Result<u64> {
        self.view(|v| v.health.handshakes)
    }

    /// Our dials to it that opened no session, since this daemon started.
    #[zbus(property(emits_changed_signal = "true"), name = "FailedHandshakes")]
    async fn failed_handshakes(&self) -> zbus::fdo::Result<u64> {
        self.view(|v| v.health.failed_handshakes)
    }

    /// Times its State became Connected again after it had been lost.
    #[zbus(property(emits_changed_signal = "true"), name = "Reconnects")]
    async fn reconnects(&self) -> zbus::fdo::Result<u64> {
        self.view(|v| v.health.reconnects)
    }

    /// Unix time (seconds) of the last change of State (or of this daemon's start).
    #[zbus(property(emits_changed_signal = "true"), name = "LastStateChange")]
    async fn last_state_change(&self) -> zbus::fdo::Result<u64> {
        self.view(|v| v.health.last_state_change)
    }

    /// The last heartbeat round trip with it, in microseconds; 0 if none yet. Read on
    /// demand: it changes with every answered ping, so it is not signalled.
    #[zbus(
        property(emits_changed_signal = "false"),
        name = "LastHeartbeatRoundTrip"
    )]
    async fn last_heartbeat_round_trip(&self) -> zbus::fdo::Result<u64> {
        let hex = self.view(|v| v.fingerprint.clone())?;
        let rtt = bmc_pairing_core::keys::Fingerprint::from_hex(&hex)
            .ok()
            .and_then(|fp| self.handle.round_trips.get(&fp))
            .unwrap_or_default();
        Ok(u64::try_from(rtt.as_micros()).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bmc_pairing_core::pairing::{AttestationOutcome, Refusal};

    use super::*;
    use crate::dbus::p2p;
    use crate::pairing::handle::{Command, Snapshot};

    fn view() -> PeerView {
        PeerView {
            name: "bmc-b".into(),
            address: "fd00::2".into(),
            port: 8090,
            fingerprint: "ab".repeat(32),
            trust_mode: TrustMode::FirstContact,
            incoming: ConnState::Connected,
            outgoing: ConnState::NotConnected,
            state: ConnState::Connected,
            last_seen: 7,
            identity_mismatch: false,
            attestation: AttestationOutcome::Rejected,
            attested_at: 5,
            unpaired_by_peer: true,
            health: crate::pairing::handle::PeerHealth {
                handshakes: 3,
                failed_handshakes: 1,
                reconnects: 2,
                last_state_change: 9,
            },
        }
    }

    fn snapshot(id: &PeerId) -> Snapshot {
        Snapshot {
            chain: None,
            trust_store: Vec::new(),
            group_authority: false,
            provisioned: true,
            peer_connected: ConnState::Connected,
            peers: BTreeMap::from([(id.clone(), view())]),
            identity: Default::default(),
        }
    }

    const PATH: &str = "/xyz/openbmc_project/BmcPairingManager/peers/bmc_b";

    #[tokio::test]
    async fn properties_spell_the_peer_view() {
        let id = PeerId::from_name("bmc-b");
        let (handle, _commands, state) = p2p::handle(snapshot(&id));
        let (_server, client) = p2p::serve(PATH, Peer::new(id.clone(), handle)).await;
        let s = |name| p2p::get::<String>(&client, PATH, INTERFACE, name);
        assert_eq!(s("Name").await, "bmc-b");
        assert_eq!(s("IdentityFingerprint").await, "ab".repeat(32));
        assert_eq!(
            s("AttestationOutcome").await,
            "xyz.openbmc_project.BmcPairing.Peer.AttestationOutcome.Rejected"
        );
        assert_eq!(
            s("TrustMode").await,
            "xyz.openbmc_project.BmcPairing.Peer.TrustMode.FirstContact"
        );
        assert_eq!(
            s("OutgoingState").await,
            "xyz.openbmc_project.BmcPairing.Peer.ConnectionState.NotConnected"
        );
        assert_eq!(
            p2p::get::<u16>(&client, PATH, INTERFACE, "Port").await,
            8090
        );
        assert_eq!(
            p2p::get::<u64>(&client, PATH, INTERFACE, "LastAttested").await,
            5
        );
        assert!(p2p::get::<bool>(&client, PATH, INTERFACE, "UnpairedByPeer").await);
        let u = |name| p2p::get::<u64>(&client, PATH, INTERFACE, name);
        assert_eq!(u("Handshakes").await, 3);
        assert_eq!(u("FailedHandshakes").await, 1);
        assert_eq!(u("Reconnects").await, 2);
        assert_eq!(u("LastStateChange").await, 9);
        assert_eq!(u("LastHeartbeatRoundTrip").await, 0, "none measured yet");
        let mut told = view();
        told.unpaired_by_peer = false;
        assert_eq!(
            changed_properties(&told, &view())
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            vec!["UnpairedByPeer"]
        );
        // The peer is unpaired: its object answers with an error, not stale values.
        state.send_replace(Snapshot {
            chain: None,
            trust_store: Vec::new(),
            group_authority: false,
            peers: BTreeMap::new(),
            ..snapshot(&id)
        });
        let gone = p2p::call(
            &client,
            PATH,
            "org.freedesktop.DBus.Properties",
            "Get",
            &(INTERFACE, "Name"),
        )
        .await;
        assert!(gone.is_err());
    }

    #[tokio::test]
    async fn unpair_and_reattest_name_this_peer_and_map_refusals() {
        let id = PeerId::from_name("bmc-b");
        let (handle, mut commands, _state) = p2p::handle(snapshot(&id));
        let (_server, client) = p2p::serve(PATH, Peer::new(id.clone(), handle)).await;
        let answer = async {
            match commands.recv().await {
                Some(Command::Reattest { id: asked, reply }) => {
                    assert_eq!(asked, PeerId::from_name("bmc-b"));
                    let _ = reply.send(Err(Refusal::Unavailable("no answer".into())));
                }
                other => panic!("expected Reattest, got {other:?}"),
            }
            match commands.recv().await {
                Some(Command::Unpair { id: asked, reply }) => {
                    assert_eq!(asked, PeerId::from_name("bmc-b"));
                    let _ = reply.send(Ok(()));
                }
                other => panic!("expected Unpair, got {other:?}"),
            }
        };
        let calls = async {
            let reattest = p2p::call(&client, PATH, INTERFACE, "Reattest", &()).await;
            let unpair = p2p::call(&client, PATH, INTERFACE, "Unpair", &()).await;
            (reattest, unpair)
        };
        let ((), (reattest, unpair)) = tokio::join!(answer, calls);
        assert_eq!(
            reattest.unwrap_err().0,
            "xyz.openbmc_project.Common.Error.Unavailable"
        );
        assert!(unpair.is_ok(), "{unpair:?}");
    }
}
