//! `xyz.openbmc_project.BmcPairing.Identity` at `/xyz/openbmc_project/BmcPairingManager`:
//! the validity of this BMC's identity certificates, so an expiry (renewal failing, the key
//! store not answering) shows on D-Bus, not only in the journal.

use crate::pairing::handle::{Handle, IdentityView};

/// D-Bus name of the interface (from the contract).
pub use crate::contract::manager::IDENTITY_INTERFACE as INTERFACE;

/// The identity object.
#[derive(Debug)]
pub struct Identity {
    handle: Handle,
}

impl Identity {
    /// Serves the actor behind `handle`.
    pub fn new(handle: Handle) -> Self {
        Identity { handle }
    }

    fn view(&self) -> IdentityView {
        self.handle.snapshot.borrow().identity
    }
}

// The macro generates undocumented `*_changed` helpers.
#[allow(missing_docs)]
#[zbus::interface(name = "xyz.openbmc_project.BmcPairing.Identity")]
impl Identity {
    /// notAfter of the identity leaf, unix seconds; 0 without an identity.
    #[zbus(property(emits_changed_signal = "true"), name = "NotAfter")]
    async fn not_after(&self) -> u64 {
        self.view().not_after
    }

    /// notAfter of the CA certificate that issued the leaf, unix seconds; 0 without one.
    #[zbus(property(emits_changed_signal = "true"), name = "AuthorityNotAfter")]
    async fn authority_not_after(&self) -> u64 {
        self.view().authority_not_after
    }

    /// True when the leaf or its CA certificate has expired: peers refuse this BMC until it
    /// is renewed (automatically, once the key store answers).
    #[zbus(property(emits_changed_signal = "true"), name = "Expired")]
    async fn expired(&self) -> bool {
        self.view().expired
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bmc_pairing_core::pairing::ConnState;

    use super::*;
    use crate::contract::manager::MANAGER_PATH;
    use crate::dbus::p2p;
    use crate::pairing::handle::Snapshot;

    #[tokio::test]
    async fn properties_show_the_validity_and_follow_the_snapshot() {
        let snapshot = Snapshot {
            chain: None,
            trust_store: Vec::new(),
            group_authority: false,
            provisioned: true,
            peer_connected: ConnState::NotDetermined,
            peers: BTreeMap::new(),
            identity: IdentityView {
                not_after: 1_900_000_000,
                authority_not_after: 2_400_000_000,
                expired: false,
            },
        };
        let (handle, _commands, state) = p2p::handle(snapshot.clone());
        let (_server, client) = p2p::serve(MANAGER_PATH, Identity::new(handle)).await;
        assert_eq!(
            p2p::get::<u64>(&client, MANAGER_PATH, INTERFACE, "NotAfter").await,
            1_900_000_000
        );
        assert_eq!(
            p2p::get::<u64>(&client, MANAGER_PATH, INTERFACE, "AuthorityNotAfter").await,
            2_400_000_000
        );
        assert!(!p2p::get::<bool>(&client, MANAGER_PATH, INTERFACE, "Expired").await);
        state.send_replace(Snapshot {
            chain: None,
            trust_store: Vec::new(),
            group_authority: false,
            identity: IdentityView {
                expired: true,
                ..snapshot.identity
            },
            ..snapshot
        });
        assert!(p2p::get::<bool>(&client, MANAGER_PATH, INTERFACE, "Expired").await);
    }
}
