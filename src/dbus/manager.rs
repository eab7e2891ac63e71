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
