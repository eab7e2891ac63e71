//! `xyz.openbmc_project.BmcPairingManager.BmcPairingManager` at
//! `/xyz/openbmc_project/BmcPairingManager`: the seed 000 README surface, so its busctl lines
//! work verbatim. Same state as the PDI interface; lowercase property names as in the seed.

// `bmcId` is spelled as PDI spells it: argument names are part of the introspected interface
// and zbus takes them from the Rust parameter names. The interface macro also generates
// undocumented helpers (`*_changed`, signal senders).
#![allow(non_snake_case, missing_docs)]

use super::Error;
use super::provisioning::status_string;
use crate::pairing::handle::Handle;

/// The seed 000 object.
#[derive(Debug)]
pub struct Manager {
    handle: Handle,
}

impl Manager {
    /// Serves the actor behind `handle`.
    pub fn new(handle: Handle) -> Self {
        Manager { handle }
    }
}

#[zbus::interface(name = "xyz.openbmc_project.BmcPairingManager.BmcPairingManager")]
impl Manager {
    /// Same as `Provisioning.ProvisionPeer`.
    #[zbus(name = "ProvisionPeer")]
    async fn provision_peer(&self, bmcId: String) -> Result<(), Error> {
        self.handle.provision(bmcId).await.map_err(Error::from)
    }

    /// Same as `Provisioning.Provisioned`.
    #[zbus(property(emits_changed_signal = "true"), name = "provisioned")]
    async fn provisioned(&self) -> bool {
        self.handle.snapshot.borrow().provisioned
    }

    /// Same as `Provisioning.PeerConnected` (the PDI enum string).
    #[zbus(property(emits_changed_signal = "true"), name = "peerConnected")]
    async fn peer_connected(&self) -> String {
        status_string(self.handle.snapshot.borrow().peer_connected)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bmc_pairing_core::pairing::ConnState;

    use super::*;
    use crate::contract::manager::{MANAGER_INTERFACE, MANAGER_PATH};
    use crate::dbus::p2p;
    use crate::pairing::handle::{Command, Snapshot};

    #[tokio::test]
    async fn the_seed_spelling_serves_the_same_state_and_command() {
        let (handle, mut commands, _state) = p2p::handle(Snapshot {
            chain: None,
            trust_store: Vec::new(),
            group_authority: false,
            provisioned: true,
            peer_connected: ConnState::InProgress,
            peers: BTreeMap::new(),
            identity: Default::default(),
        });
        let (_server, client) = p2p::serve(MANAGER_PATH, Manager::new(handle)).await;
        assert!(p2p::get::<bool>(&client, MANAGER_PATH, MANAGER_INTERFACE, "provisioned").await);
        let state: String =
            p2p::get(&client, MANAGER_PATH, MANAGER_INTERFACE, "peerConnected").await;
        assert!(
            state.ends_with("PeerConnectionStatus.InProgress"),
            "{state}"
        );
        let answer = async {
            match commands.recv().await {
                Some(Command::Provision { bmc_id, reply }) => {
                    assert_eq!(bmc_id, "self");
                    let _ = reply.send(Ok(()));
                }
                other => panic!("expected ProvisionPeer, got {other:?}"),
            }
        };
        let call = p2p::call(
            &client,
            MANAGER_PATH,
            MANAGER_INTERFACE,
            "ProvisionPeer",
            &("self",),
        );
        let ((), result) = tokio::join!(answer, call);
        assert!(result.is_ok(), "{result:?}");
    }
}
