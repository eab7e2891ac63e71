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
