//! `xyz.openbmc_project.Common.FactoryReset` at `/xyz/openbmc_project/BmcPairingManager`:
//! served exactly as phosphor-dbus-interfaces defines it (one method, `Reset`, whose only
//! error is `InternalFailure`). The reset itself is the pairing actor's
//! ([`crate::pairing::reset`]); this object only forwards the call.

use super::Error;
use crate::pairing::handle::Handle;

/// The FactoryReset object of the pairing manager.
#[derive(Debug)]
pub struct FactoryReset {
    handle: Handle,
}

impl FactoryReset {
    /// Serves the actor behind `handle`.
    pub fn new(handle: Handle) -> Self {
        FactoryReset { handle }
    }
}

#[zbus::interface(name = "xyz.openbmc_project.Common.FactoryReset")]
impl FactoryReset {
    /// Drops every pin and peer, deletes this BMC's keys (TPM objects and blobs) and
    /// certificates, keeps the operator's trust anchors; `Provisioned` becomes false.
    /// Atomic: after a crash midway, the next start-up finishes it. Returns once done.
    #[zbus(name = "Reset")]
    async fn reset(&self) -> Result<(), Error> {
        self.handle
            .factory_reset()
            .await
            .map_err(Error::InternalFailure)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bmc_pairing_core::pairing::ConnState;

    use super::*;
    use crate::contract::manager::{FACTORY_RESET_INTERFACE, MANAGER_PATH};
    use crate::dbus::p2p;
    use crate::pairing::handle::{Command, Snapshot};

    #[tokio::test]
    async fn reset_forwards_to_the_actor_and_failures_are_internal_failures() {
        let (handle, mut commands, _state) = p2p::handle(Snapshot {
            chain: None,
            trust_store: Vec::new(),
            group_authority: false,
            provisioned: true,
            peer_connected: ConnState::Connected,
            peers: BTreeMap::new(),
            identity: Default::default(),
        });
        let (_server, client) = p2p::serve(MANAGER_PATH, FactoryReset::new(handle)).await;
        let answer = async {
            for outcome in [Ok(()), Err("the key store does not answer".to_owned())] {
                match commands.recv().await {
                    Some(Command::FactoryReset { reply }) => {
                        let _ = reply.send(outcome);
                    }
                    other => panic!("expected FactoryReset, got {other:?}"),
                }
            }
        };
        let calls = async {
            let ok = p2p::call(&client, MANAGER_PATH, FACTORY_RESET_INTERFACE, "Reset", &()).await;
            let failed =
                p2p::call(&client, MANAGER_PATH, FACTORY_RESET_INTERFACE, "Reset", &()).await;
            (ok, failed)
        };
        let ((), (ok, failed)) = tokio::join!(answer, calls);
        assert!(ok.is_ok(), "{ok:?}");
        let (name, text) = failed.unwrap_err();
        assert_eq!(name, "xyz.openbmc_project.Common.Error.InternalFailure");
        assert!(text.contains("does not answer"), "{text}");
    }
}
