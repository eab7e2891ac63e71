//! The D-Bus surfaces of `bmc-pairing-manager` (DESIGN.md §2).
//!
//! One file per interface; [`serve`] builds the connection (objects first, then the bus
//! names, as oo7 does, so no call can arrive before its object exists) and [`publish`]
//! turns the pairing actor's snapshots into PropertiesChanged, InterfacesAdded/Removed and
//! `PeerProvisioned`. Interface methods only forward to the actor; they hold no state.

pub mod authority;
pub mod certificate;
pub mod certs;
pub mod error;
pub mod factory_reset;
pub mod identity;
pub mod manager;
pub mod owner;
pub mod peer;
pub mod provisioning;
pub mod trust_quorum;

#[cfg(test)]
pub(crate) mod p2p;

use std::collections::HashMap;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::ObjectPath;

pub use error::Error;

use crate::kit::Bus;
use crate::pairing::handle::{Handle, Notice, Snapshot};
use bmc_pairing_core::pairing::PeerId;

use crate::contract::manager::{
    AUTHORITY_PATH, BUS_NAME, CERTS_PATH, GROUP_AUTHORITY_PATH, MANAGER_PATH, PEERS_PATH,
    PROVISIONING_BUS_NAME, PROVISIONING_PATH,
};

/// Object path of a peer.
pub fn peer_path(id: &PeerId) -> String {
    format!("{PEERS_PATH}/{id}")
}

/// Connects, serves every object, then owns both bus names.
///
/// # Errors
/// zbus errors; `zbus::Error::NameTaken` when another daemon owns a name.
pub async fn serve(
    bus: &Bus,
    handle: &Handle,
    quorum: &crate::quorum::actor::QuorumHandle,
) -> zbus::Result<zbus::Connection> {
    let group_authority = handle.snapshot.borrow().group_authority;
    let mut builder = bus.builder()?;
    if group_authority {
        builder = builder
            .serve_at(
                GROUP_AUTHORITY_PATH,
                authority::Authority::new(handle.clone()),
            )?
            .serve_at(GROUP_AUTHORITY_PATH, zbus::fdo::ObjectManager)?;
    }
    let conn = builder
        .serve_at(
            crate::contract::manager::TRUST_QUORUM_PATH,
            trust_quorum::TrustQuorum::new(quorum.clone()),
        )?
        .serve_at(
            PROVISIONING_PATH,
            provisioning::Provisioning::new(handle.clone()),
        )?
        .serve_at(MANAGER_PATH, manager::Manager::new(handle.clone()))?
        .serve_at(
            MANAGER_PATH,
            factory_reset::FactoryReset::new(handle.clone()),
        )?
        .serve_at(MANAGER_PATH, identity::Identity::new(handle.clone()))?
        .serve_at(MANAGER_PATH, zbus::fdo::ObjectManager)?
        .serve_at(CERTS_PATH, certs::CsrCreate::new(handle.clone()))?
        .serve_at(CERTS_PATH, zbus::fdo::ObjectManager)?
        .serve_at(AUTHORITY_PATH, certs::AnchorInstall::new(handle.clone()))?
        .serve_at(AUTHORITY_PATH, zbus::fdo::ObjectManager)?
        .name(BUS_NAME)?
        .name(PROVISIONING_BUS_NAME)?
        .build()
        .await?;
    let initial = handle.snapshot.borrow().clone();
    certs::sync(&conn, handle, None, initial.chain.as_ref()).await?;
    certs::sync_anchors(&conn, handle, &[], &initial.trust_store).await?;
    for id in initial.peers.keys() {
        conn.object_server()
            .at(peer_path(id), peer::Peer::new(id.clone(), handle.clone()))
            .await?;
    }
    Ok(conn)
}

/// Emits change signals for every snapshot change and notice, until `cancel`.
///
/// # Cancel safety
/// Runs until `cancel`.
pub async fn publish(
    conn: zbus::Connection,
    handle: Handle,
    mut notices: mpsc::UnboundedReceiver<Notice>,
    cancel: CancellationToken,
) {
    let mut rx: watch::Receiver<Snapshot> = handle.snapshot.clone();
    let mut shown = rx.borrow_and_update().clone();
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = rx.changed() => {
                if changed.is_err() {
                    return;
                }
                let now = rx.borrow_and_update().clone();
                if let Err(e) = emit_changes(&conn, &handle, &shown, &now).await {
                    tracing::warn!(error = %crate::kit::ErrorChain(&e), "cannot publish state change");
                }
                shown = now;
            }
            Some(notice) = notices.recv() => {
                let result = match notice {
                    Notice::PeerProvisioned(ok) => emit_peer_provisioned(&conn, ok).await,
                    Notice::SignRequest { request, state, client_certificate } => {
                        authority::channel_request(&conn, request, state, client_certificate).await
                    }
                };
                if let Err(e) = result {
                    tracing::warn!(error = %crate::kit::ErrorChain(&e), "cannot publish a notice");
                }
            }
        }
    }
}

async fn emit_peer_provisioned(conn: &zbus::Connection, ok: bool) -> zbus::Result<()> {
    let emitter = SignalEmitter::new(conn, PROVISIONING_PATH)?;
    provisioning::Provisioning::peer_provisioned(&emitter, ok).await
}

async fn emit_changes(
    conn: &zbus::Connection,
    handle: &Handle,
    old: &Snapshot,
    new: &Snapshot,
) -> zbus::Result<()> {
    let server = conn.object_server();
    // Peers first: a client reacting to PeerConnected finds the peer objects in place.
    for id in old.peers.keys().filter(|id| !new.peers.contains_key(*id)) {
        server.remove::<peer::Peer, _>(peer_path(id)).await?;
    }
    for (id, view) in &new.peers {
        match old.peers.get(id) {
            None => {
                server
                    .at(peer_path(id), peer::Peer::new(id.clone(), handle.clone()))
                    .await?;
            }
            Some(before) => {
                let changed = peer::changed_properties(before, view);
                if !changed.is_empty() {
                    let path = ObjectPath::try_from(peer_path(id))?;
                    let emitter = SignalEmitter::new(conn, path)?;
                    let changed: HashMap<&str, zbus::zvariant::Value<'_>> =
                        changed.into_iter().collect();
                    zbus::fdo::Properties::properties_changed(
                        &emitter,
                        crate::contract::manager::PEER_INTERFACE.try_into()?,
                        changed,
                        std::borrow::Cow::Borrowed(&[]),
                    )
                    .await?;
                }
            }
        }
    }
    let pdi = server
        .interface::<_, provisioning::Provisioning>(PROVISIONING_PATH)
        .await?;
    let seed = server
        .interface::<_, manager::Manager>(MANAGER_PATH)
        .await?;
    if old.provisioned != new.provisioned {
        pdi.get()
            .await
            .provisioned_changed(pdi.signal_emitter())
            .await?;
        seed.get()
            .await
            .provisioned_changed(seed.signal_emitter())
            .await?;
    }
    if old.trust_store != new.trust_store {
        certs::sync_anchors(conn, handle, &old.trust_store, &new.trust_store).await?;
    }
    if old.chain != new.chain {
        certs::sync(conn, handle, old.chain.as_ref(), new.chain.as_ref()).await?;
    }
    if old.identity != new.identity {
        let id = server
            .interface::<_, identity::Identity>(MANAGER_PATH)
            .await?;
        let iface = id.get().await;
        let emitter = id.signal_emitter();
        if old.identity.not_after != new.identity.not_after {
            iface.not_after_changed(emitter).await?;
        }
        if old.identity.authority_not_after != new.identity.authority_not_after {
            iface.authority_not_after_changed(emitter).await?;
        }
        if old.identity.expired != new.identity.expired {
            iface.expired_changed(emitter).await?;
        }
    }
    if old.peer_connected != new.peer_connected {
        pdi.get()
            .await
            .peer_connected_changed(pdi.signal_emitter())
            .await?;
        seed.get()
            .await
            .peer_connected_changed(seed.signal_emitter())
            .await?;
    }
    Ok(())
}
