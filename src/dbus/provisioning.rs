//! `xyz.openbmc_project.Provisioning.Provisioning` at `/xyz/openbmc_project/Provisioning`:
//! the upstream phosphor-dbus-interfaces interface, exactly (seed 001).

// `bmcId` is spelled as PDI spells it: argument names are part of the introspected interface
// and zbus takes them from the Rust parameter names. The interface macro also generates
// undocumented helpers (`*_changed`, signal senders).
#![allow(non_snake_case, missing_docs)]

use zbus::object_server::SignalEmitter;

use super::Error;
use crate::pairing::handle::Handle;
use bmc_pairing_core::pairing::ConnState;

/// Prefix of the PDI enum strings.
pub const PEER_CONNECTION_STATUS: &str =
    "xyz.openbmc_project.Provisioning.Provisioning.PeerConnectionStatus";

/// The PDI string for a state, e.g. `...PeerConnectionStatus.Connected`.
pub fn status_string(state: ConnState) -> String {
    format!("{PEER_CONNECTION_STATUS}.{}", state.as_str())
}

/// The PDI Provisioning object.
#[derive(Debug)]
pub struct Provisioning {
    handle: Handle,
}

impl Provisioning {
    /// Serves the actor behind `handle`.
    pub fn new(handle: Handle) -> Self {
        Provisioning { handle }
    }
}

#[zbus::interface(name = "xyz.openbmc_project.Provisioning.Provisioning")]
impl Provisioning {
    /// `ProvisionPeer(s bmcId)`: "self", a peer name, "peer", ip or ip:port. Returns at once;
    /// the outcome for a peer comes as `PeerProvisioned(b)`.
    #[zbus(name = "ProvisionPeer")]
    async fn provision_peer(&self, bmcId: String) -> Result<(), Error> {
        self.handle.provision(bmcId).await.map_err(Error::from)
    }

    /// True once this BMC has a valid identity ("self" provisioned).
    #[zbus(property(emits_changed_signal = "true"), name = "Provisioned")]
    async fn provisioned(&self) -> bool {
        self.handle.snapshot.borrow().provisioned
    }

    /// The best peer's connection state, as a PDI enum string.
    #[zbus(property(emits_changed_signal = "true"), name = "PeerConnected")]
    async fn peer_connected(&self) -> String {
        status_string(self.handle.snapshot.borrow().peer_connected)
    }

    /// Emitted once per `ProvisionPeer(peer)`: whether pairing with the peer succeeded.
    #[zbus(signal, name = "PeerProvisioned")]
    pub async fn peer_provisioned(emitter: &SignalEmitter<'_>, result: bool) -> zbus::Result<()>;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bmc_pairing_core::pairing::Refusal;

    use super::*;
    use crate::contract::manager::{PROVISIONING_INTERFACE, PROVISIONING_PATH};
    use crate::dbus::p2p;
    use crate::pairing::handle::{Command, Snapshot};

    fn snapshot(provisioned: bool, peer_connected: ConnState) -> Snapshot {
        Snapshot {
            chain: None,
            trust_store: Vec::new(),
            group_authority: false,
            provisioned,
            peer_connected,
            peers: BTreeMap::new(),
            identity: Default::default(),
        }
    }

    #[tokio::test]
    async fn properties_show_the_snapshot_in_pdi_spelling() {
        let (handle, _commands, state) = p2p::handle(snapshot(false, ConnState::NotDetermined));
        let (_server, client) = p2p::serve(PROVISIONING_PATH, Provisioning::new(handle)).await;
        let get = |name| p2p::get::<bool>(&client, PROVISIONING_PATH, PROVISIONING_INTERFACE, name);
        assert!(!get("Provisioned").await);
        state.send_replace(snapshot(true, ConnState::Connected));
        assert!(get("Provisioned").await);
        let connected: String = p2p::get(
            &client,
            PROVISIONING_PATH,
            PROVISIONING_INTERFACE,
            "PeerConnected",
        )
        .await;
        assert_eq!(
            connected,
            "xyz.openbmc_project.Provisioning.Provisioning.PeerConnectionStatus.Connected"
        );
    }

    #[tokio::test]
    async fn provision_peer_forwards_the_argument_and_maps_each_refusal() {
        let (handle, mut commands, _state) = p2p::handle(snapshot(true, ConnState::NotDetermined));
        let (_server, client) = p2p::serve(PROVISIONING_PATH, Provisioning::new(handle)).await;
        let refusals = [
            (None, None),
            (
                Some(Refusal::InvalidArgument("bad".into())),
                Some("xyz.openbmc_project.Common.Error.InvalidArgument"),
            ),
            (
                Some(Refusal::NotAllowed("not yet".into())),
                Some("xyz.openbmc_project.Common.Error.NotAllowed"),
            ),
            (
                Some(Refusal::ResourceNotFound("who".into())),
                Some("xyz.openbmc_project.Common.Error.ResourceNotFound"),
            ),
            (
                Some(Refusal::Unavailable("busy".into())),
                Some("xyz.openbmc_project.Common.Error.Unavailable"),
            ),
        ];
        for (refusal, expected) in refusals {
            let answer = async {
                match commands.recv().await {
                    Some(Command::Provision { bmc_id, reply }) => {
                        assert_eq!(bmc_id, "bmc-b");
                        let _ = reply.send(refusal.clone().map_or(Ok(()), Err));
                    }
                    other => panic!("expected ProvisionPeer, got {other:?}"),
                }
            };
            let call = p2p::call(
                &client,
                PROVISIONING_PATH,
                PROVISIONING_INTERFACE,
                "ProvisionPeer",
                &("bmc-b",),
            );
            let ((), result) = tokio::join!(answer, call);
            match (result, expected) {
                (Ok(_), None) => {}
                (Err((name, _)), Some(expected)) => assert_eq!(name, expected),
                (other, _) => panic!("{refusal:?} gave {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn a_wrong_argument_type_is_refused_before_the_actor_sees_it() {
        let (handle, mut commands, _state) = p2p::handle(snapshot(true, ConnState::NotDetermined));
        let (_server, client) = p2p::serve(PROVISIONING_PATH, Provisioning::new(handle)).await;
        let result = p2p::call(
            &client,
            PROVISIONING_PATH,
            PROVISIONING_INTERFACE,
            "ProvisionPeer",
            &(42u32,),
        )
        .await;
        // zbus answers argument-decoding failures itself, with its own error name
        // (org.freedesktop.zbus.Error, not InvalidArgs); what matters here is that the actor
        // never sees the call.
        assert!(result.is_err());
        assert!(commands.try_recv().is_err(), "nothing reached the actor");
    }
}
