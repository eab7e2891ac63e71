//! `xyz.openbmc_project.BmcPairing.TrustQuorum` at
//! `/xyz/openbmc_project/BmcPairingManager/trust_quorum`: `Initialize(threshold)` and the
//! quorum's state. No property ever carries a share or the secret.
// The method argument's name is the YAML's (introspection shows it): `Threshold`.
#![allow(non_snake_case)]

use bmc_pairing_core::quorum::{InitRefusal, State};

use super::Error;
use crate::quorum::actor::{QuorumHandle, QuorumView};

/// D-Bus name of the interface (from the contract).
pub use crate::contract::manager::TRUST_QUORUM_INTERFACE as INTERFACE;

/// The trust-quorum object.
#[derive(Debug)]
pub struct TrustQuorum {
    handle: QuorumHandle,
}

impl TrustQuorum {
    /// Serves the quorum actor behind `handle`.
    pub fn new(handle: QuorumHandle) -> Self {
        TrustQuorum { handle }
    }

    fn view(&self) -> QuorumView {
        self.handle.view.borrow().clone()
    }
}

/// The enum string of `state`.
pub fn state_string(state: State) -> String {
    format!("{INTERFACE}.QuorumState.{}", state.as_str())
}

// The macro generates undocumented `*_changed` helpers.
#[allow(missing_docs)]
#[zbus::interface(name = "xyz.openbmc_project.BmcPairing.TrustQuorum")]
impl TrustQuorum {
    /// `Initialize(u threshold)`: starts a group of this BMC and its paired, attested,
    /// connected peers. Returns once started; the outcome shows in `State`.
    #[zbus(name = "Initialize")]
    async fn initialize(&self, Threshold: u32) -> Result<(), Error> {
        self.handle
            .initialize(Threshold)
            .await
            .map_err(|r| match r {
                InitRefusal::InvalidArgument(m) => Error::InvalidArgument(m),
                InitRefusal::NotAllowed(m) => Error::NotAllowed(m),
            })
    }

    /// `Reshare(u threshold)`: on an unlocked member, the same secret split anew for a new
    /// epoch among this BMC and its paired, attested, connected peers; old-epoch shares are
    /// destroyed at the commit. Returns once started; the outcome shows in `Epoch`.
    #[zbus(name = "Reshare")]
    async fn reshare(&self, Threshold: u32) -> Result<(), Error> {
        self.handle.reshare(Threshold).await.map_err(|r| match r {
            InitRefusal::InvalidArgument(m) => Error::InvalidArgument(m),
            InitRefusal::NotAllowed(m) => Error::NotAllowed(m),
        })
    }

    /// Uninitialized, Initializing, Locked or Unlocked, as an enum string.
    #[zbus(property(emits_changed_signal = "true"), name = "State")]
    async fn state(&self) -> String {
        state_string(self.view().state)
    }

    /// Shares needed to rebuild the secret; 0 without a group.
    #[zbus(property(emits_changed_signal = "true"), name = "Threshold")]
    async fn threshold(&self) -> u32 {
        self.view().threshold
    }

    /// The members' identity fingerprints (hex), in share-index order.
    #[zbus(property(emits_changed_signal = "true"), name = "Members")]
    async fn members(&self) -> Vec<String> {
        self.view().members
    }

    /// The group's epoch; 0 without a group.
    #[zbus(property(emits_changed_signal = "true"), name = "Epoch")]
    async fn epoch(&self) -> u64 {
        self.view().epoch
    }

    /// The members whose shares rebuilt the secret at the last unlock (this BMC first).
    #[zbus(
        property(emits_changed_signal = "true"),
        name = "LastUnlockContributors"
    )]
    async fn last_unlock_contributors(&self) -> Vec<String> {
        self.view().contributors
    }
}

/// Emits PropertiesChanged for what differs between `old` and `new`.
///
/// # Errors
/// zbus errors.
pub async fn emit_changes(
    iface: &zbus::object_server::InterfaceRef<TrustQuorum>,
    old: &QuorumView,
    new: &QuorumView,
) -> zbus::Result<()> {
    let me = iface.get().await;
    let emitter = iface.signal_emitter();
    if old.state != new.state {
        me.state_changed(emitter).await?;
    }
    if old.threshold != new.threshold {
        me.threshold_changed(emitter).await?;
    }
    if old.members != new.members {
        me.members_changed(emitter).await?;
    }
    if old.epoch != new.epoch {
        me.epoch_changed(emitter).await?;
    }
    if old.contributors != new.contributors {
        me.last_unlock_contributors_changed(emitter).await?;
    }
    Ok(())
}

/// Emits the quorum's property changes until `cancel`.
///
/// # Cancel safety
/// Runs until `cancel`.
pub async fn publish(
    conn: zbus::Connection,
    mut view: tokio::sync::watch::Receiver<QuorumView>,
    cancel: tokio_util::sync::CancellationToken,
) {
    let mut shown = view.borrow_and_update().clone();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = view.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = view.borrow_and_update().clone();
                let iface = conn
                    .object_server()
                    .interface::<_, TrustQuorum>(crate::contract::manager::TRUST_QUORUM_PATH)
                    .await;
                let result = match iface {
                    Ok(iface) => emit_changes(&iface, &shown, &now).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    tracing::warn!(error = %crate::kit::ErrorChain(&e), "cannot publish the trust-quorum state");
                }
                shown = now;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::sync::{mpsc, watch};

    use super::*;
    use crate::contract::manager::TRUST_QUORUM_PATH;
    use crate::dbus::p2p;
    use crate::quorum::actor::QuorumCommand;

    #[tokio::test]
    async fn initialize_maps_refusals_and_properties_show_the_view() {
        let view = QuorumView {
            state: State::Locked,
            threshold: 2,
            members: vec!["aa".into(), "bb".into(), "cc".into()],
            epoch: 4,
            contributors: vec!["aa".into(), "cc".into()],
        };
        let (commands, mut rx) = mpsc::channel(4);
        let (_tx, view_rx) = watch::channel(view);
        let handle = QuorumHandle {
            commands,
            view: view_rx,
        };
        let (_server, client) = p2p::serve(TRUST_QUORUM_PATH, TrustQuorum::new(handle)).await;
        tokio::spawn(async move {
            while let Some(cmd) = rx.recv().await {
                let (QuorumCommand::Initialize { threshold, reply }
                | QuorumCommand::Reshare { threshold, reply }) = cmd;
                let _ = reply.send(match threshold {
                    1 => Err(InitRefusal::InvalidArgument("threshold 1".into())),
                    9 => Err(InitRefusal::NotAllowed("initialized".into())),
                    _ => Ok(()),
                });
            }
        });
        let call = |method: &'static str, k: u32| {
            let client = client.clone();
            async move {
                p2p::call(&client, TRUST_QUORUM_PATH, INTERFACE, method, &(k,))
                    .await
                    .map(|_| ())
                    .map_err(|(name, _)| name)
            }
        };
        for method in ["Initialize", "Reshare"] {
            assert_eq!(call(method, 2).await, Ok(()));
            assert_eq!(
                call(method, 1).await,
                Err("xyz.openbmc_project.Common.Error.InvalidArgument".to_owned())
            );
            assert_eq!(
                call(method, 9).await,
                Err("xyz.openbmc_project.Common.Error.NotAllowed".to_owned())
            );
        }
        assert_eq!(
            p2p::get::<String>(&client, TRUST_QUORUM_PATH, INTERFACE, "State").await,
            "xyz.openbmc_project.BmcPairing.TrustQuorum.QuorumState.Locked"
        );
        assert_eq!(
            p2p::get::<u32>(&client, TRUST_QUORUM_PATH, INTERFACE, "Threshold").await,
            2
        );
        assert_eq!(
            p2p::get::<u64>(&client, TRUST_QUORUM_PATH, INTERFACE, "Epoch").await,
            4
        );
        assert_eq!(
            p2p::get::<Vec<String>>(
                &client,
                TRUST_QUORUM_PATH,
                INTERFACE,
                "LastUnlockContributors"
            )
            .await,
            vec!["aa".to_owned(), "cc".to_owned()]
        );
    }
}
