//! Wiring of the `bmc-pairing-manager` daemon: key store, listener, pairing driver and
//! D-Bus, with one cancellation token and one task tracker for orderly shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Attestation, Config, KeyBackend, LldpSource, TrustMode};
use crate::dbus::attestation_client::Attestor;
use crate::dbus::{self, Bus};
use crate::discovery::lldp_dbus::LldpDbus;
use crate::discovery::lldpd::LldpdSource;
use crate::discovery::static_peers::StaticPeers;
use crate::discovery::{self, Source};
use crate::identity::KeyStore;
use crate::identity::file::FileKeyStore;
use crate::identity::tpm::TpmKeyStore;
use crate::link::server::{self, Sessions};
use crate::link::session::Timing;
use crate::link::tls::PinSet;
use crate::pairing::driver::{Driver, Parts};

/// Why the daemon could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key store could not be opened.
    #[error("cannot open the {backend} key store")]
    KeyStore {
        /// Which backend.
        backend: &'static str,
        /// Why.
        #[source]
        source: crate::identity::Error,
    },
    /// The pairing port could not be bound.
    #[error("cannot listen on port {port}{}", device.as_ref().map(|d| format!(" on {d}")).unwrap_or_default())]
    Listen {
        /// The port.
        port: u16,
        /// The interface it was bound to.
        device: Option<String>,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// D-Bus setup failed (NameTaken when another instance runs).
    #[error("cannot set up D-Bus")]
    Dbus(#[source] zbus::Error),
}

/// Opens the configured key store.
///
/// # Errors
/// [`Error::KeyStore`].
pub fn open_key_store(config: &Config) -> Result<Arc<dyn KeyStore>, Error> {
    match &config.key_backend {
        KeyBackend::File => {
            tracing::warn!(
                "using the file key backend: private keys are on disk (development only)"
            );
            Ok(Arc::new(FileKeyStore::new(config.state_dir.join("keys"))))
        }
        KeyBackend::Tpm { tcti } => {
            let store =
                TpmKeyStore::open(tcti, config.state_dir.join("keys")).map_err(|source| {
                    Error::KeyStore {
                        backend: "tpm",
                        source,
                    }
                })?;
            tracing::info!(tcti = %tcti, "using the TPM key backend: only wrapped blobs on disk");
            Ok(Arc::new(store))
        }
    }
}

/// Opens the configured key store for the daemon. Unlike [`open_key_store`], a TPM that does
/// not answer (still starting, or held by something else) is not fatal: exiting would only
/// crash-loop under systemd's `Restart=always`. The daemon serves D-Bus with `Provisioned`
/// false, and the store connects on demand once the TPM answers.
///
/// # Errors
/// [`Error::KeyStore`] for a TCTI the backend cannot use.
fn open_daemon_key_store(config: &Config) -> Result<Arc<dyn KeyStore>, Error> {
    let KeyBackend::Tpm { tcti } = &config.key_backend else {
        return open_key_store(config);
    };
    let store =
        TpmKeyStore::open_unprobed(tcti, config.state_dir.join("keys")).map_err(|source| {
            Error::KeyStore {
                backend: "tpm",
                source,
            }
        })?;
    match store.probe() {
        Ok(()) => {
            tracing::info!(tcti = %tcti, "using the TPM key backend: only wrapped blobs on disk");
        }
        Err(e) => tracing::error!(
            tcti = %tcti,
            error = %e,
            "using the TPM key backend, but the TPM does not answer: no identity until it does"
        ),
    }
    Ok(Arc::new(store))
}

/// Starts the discovery sources the configuration asks for: static peers, and lldpd or
/// phosphor-networkd's LLDP objects (read on `bus`, the daemon's own bus).
fn start_discovery(
    config: &Config,
    bus: &Bus,
    events: mpsc::Sender<discovery::Event>,
    tracker: &TaskTracker,
    cancel: &CancellationToken,
) {
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    if !config.static_peers.is_empty() {
        sources.push(Box::new(StaticPeers::new(config.static_peers.clone())));
    }
    match config.lldp_source {
        LldpSource::None => {}
        LldpSource::Lldpd => sources.push(Box::new(LldpdSource::new(config.lldpd_socket.clone()))),
        LldpSource::Networkd => {
            let address = match bus {
                Bus::System => None,
                Bus::Address(a) => Some(a.clone()),
            };
            sources.push(Box::new(LldpDbus::new(
                address,
                config.interface_id.clone(),
            )));
        }
    }
    for source in sources {
        let name = source.name();
        let run = source.run(events.clone(), cancel.child_token());
        tracker.spawn(async move {
            if let Err(e) = run.await {
                tracing::error!(source = name, error = %e, "discovery source stopped");
            }
        });
    }
}

/// Runs the daemon until `shutdown` completes or the bus connection closes.
///
/// # Errors
/// [`Error`] for start-up failures; runtime failures are logged and handled.
///
/// # Cancel safety
/// Not cancel safe: drive it to completion (pass the shutdown future instead).
pub async fn run(
    config: Config,
    bus: Bus,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let config = Arc::new(config);
    let store = {
        let config = config.clone();
        tokio::task::spawn_blocking(move || open_daemon_key_store(&config))
            .await
            .map_err(|e| Error::KeyStore {
                backend: "?",
                source: crate::identity::Error::Tpm(e.to_string()),
            })??
    };
    tracing::info!(backend = %store.backend(), "key store ready");

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let device = config
        .bind_to_interface
        .then(|| config.interface_id.clone());
    let listener =
        server::bind(config.listen_address, config.port, device.as_deref()).map_err(|source| {
            Error::Listen {
                port: config.port,
                device: device.clone(),
                source,
            }
        })?;

    let pins = PinSet::new();
    let sessions = Sessions::new();
    let (server_tls, server_tls_rx) = watch::channel(None);
    let (link_tx, link_rx) = mpsc::unbounded_channel();
    let (notices_tx, notices_rx) = mpsc::unbounded_channel();
    let (discovery_tx, discovery_rx) = mpsc::channel(64);
    start_discovery(&config, &bus, discovery_tx, &tracker, &cancel);
    let attestor = match config.attestation {
        Attestation::Required => {
            // A connection of its own: replies to our calls come back on it, from the service
            // we called, whatever else happens on the main connection.
            let conn = dbus::connect(&bus).await.map_err(Error::Dbus)?;
            Some(
                Attestor::new(&conn, config.attestation_timeout)
                    .await
                    .map_err(Error::Dbus)?,
            )
        }
        Attestation::Off => {
            tracing::warn!(
                "attestation is off: peers are pinned on the identity they present to the operator's \
                 ProvisionPeer, without SPDM attestation"
            );
            None
        }
    };
    // Only anchored mode admits unpinned peers, and only after attesting them.
    let (admission_tx, admission_rx) = mpsc::channel(16);
    let admission =
        (config.trust_mode == TrustMode::Anchored && attestor.is_some()).then_some(admission_tx);
    let parts = Parts {
        config: config.clone(),
        store,
        pins: pins.clone(),
        sessions: sessions.clone(),
        server_tls,
        link_events: link_rx,
        link_events_tx: link_tx.clone(),
        discovery: discovery_rx,
        attestor,
        admissions: admission_rx,
        notices: notices_tx,
        tracker: tracker.clone(),
        cancel: cancel.clone(),
    };
    let (driver, handle, commands) = {
        let built = tokio::task::spawn_blocking(move || Driver::new(parts)).await;
        match built {
            Ok(b) => b,
            Err(e) => {
                return Err(Error::KeyStore {
                    backend: "?",
                    source: crate::identity::Error::Tpm(e.to_string()),
                });
            }
        }
    };
    tracker.spawn(driver.run(commands));
    tracker.spawn(server::serve(
        listener,
        server_tls_rx,
        server::Settings {
            timing: Timing {
                open_timeout: config.handshake_timeout,
                heartbeat_interval: config.heartbeat_interval,
                heartbeat_timeout: config.heartbeat_timeout,
            },
            max_pending: config.max_pending_handshakes,
            pins,
            admission,
        },
        sessions,
        link_tx,
        tracker.clone(),
        cancel.clone(),
    ));

    let conn = match dbus::serve(&bus, &handle).await {
        Ok(c) => c,
        Err(e) => {
            cancel.cancel();
            tracker.close();
            tracker.wait().await;
            return Err(Error::Dbus(e));
        }
    };
    tracing::info!(port = config.port, name = %config.bmc_name, "bmc-pairing-manager ready");
    tracker.spawn(dbus::publish(
        conn.clone(),
        handle,
        notices_rx,
        cancel.clone(),
    ));

    serve_until(&conn, shutdown, &cancel, &tracker).await;
    Ok(())
}

/// Runs until `shutdown` completes or the bus connection closes, then cancels every task and
/// waits (at most 5 s) for them to stop. Both daemons end this way.
///
/// # Cancel safety
/// Not cancel safe: the tasks are only stopped if it runs to the end.
pub(crate) async fn serve_until(
    conn: &zbus::Connection,
    shutdown: impl Future<Output = ()>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) {
    let closed = async {
        // zbus ends its message stream when the bus goes away.
        use futures_util::StreamExt;
        let mut stream = zbus::MessageStream::from(conn);
        while stream.next().await.is_some() {}
    };
    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        () = closed => tracing::warn!("D-Bus connection closed; shutting down"),
    }
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 5 s");
    }
}

/// Completes on SIGTERM (systemd stopping the unit) or SIGINT, for either daemon's
/// `shutdown` future. Falls back to Ctrl-C alone if the handlers cannot be installed.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
