//! Wiring of the `bmc-pairing-manager` daemon: key store, identity keeper, listener, the
//! pairing actor, discovery and D-Bus, under one cancellation token and one task tracker
//! for orderly shutdown (see [`crate::kit`]).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bmc_pairing_core::budget::SignBudget;

use bmc_pairing_core::pairing::Settings;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{Attestation, Config, LldpSource};
use crate::dbus;
use crate::dbus::owner::TrustedUsers;
use crate::discovery::lldp_dbus::LldpDbus;
use crate::discovery::lldpd::LldpdSource;
use crate::discovery::static_peers::StaticPeers;
use crate::discovery::{self, Source};
use crate::events::{self, Emitter, Journal};
use crate::identity::cert::ChainFiles;
use crate::identity::store::{self, Probe};
use crate::kit::{self, Bus, StartError};
use crate::link::client::Retry;
use crate::link::server::{self, PinnedAddresses, Sessions};
use crate::link::session::Timing;
use crate::link::tls::PinSet;
use crate::pairing::actor::{self, Actor, Listener, Parts};
use crate::pairing::attest::BusAttestor;
use crate::pairing::dial::{DialSettings, TlsDialer};
use crate::pairing::identity::{Keeper, KeeperParts};
use crate::pairing::reset::Reset;
use crate::persist;
use crate::quorum::actor::{QuorumActor, QuorumConfig, QuorumParts};
use crate::quorum::vault::Vault;

/// The path of the state file.
pub fn state_path(config: &Config) -> std::path::PathBuf {
    config.identity.state_dir.join("state.json")
}

/// Session timing from the configuration.
fn timing(config: &Config) -> Timing {
    Timing {
        open_timeout: config.handshake_timeout,
        heartbeat_interval: config.heartbeat_interval,
        heartbeat_timeout: config.heartbeat_timeout,
    }
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
                TrustedUsers::new(config.trusted_service_uids.iter().copied()),
            )));
        }
    }
    for source in sources {
        let name = source.name();
        let run = source.run(events.clone(), cancel.child_token());
        tracker.spawn(async move {
            if let Err(e) = run.await {
                tracing::error!(source = name, error = %crate::kit::ErrorChain(&e), "discovery source stopped");
            }
        });
    }
}

/// Removes what a crash mid-write left behind in the directories this daemon writes (state,
/// keys, certificates, trust anchors); see [`persist::remove_stale_temporaries`].
fn remove_stale_temporaries(config: &Config) {
    let identity = &config.identity;
    let cert_dir = identity.cert_dir();
    let anchors = crate::identity::anchors::dir(&cert_dir);
    let quorum = identity.state_dir.join("trust-quorum");
    for dir in [
        &identity.state_dir,
        &quorum,
        &identity.key_dir(),
        &cert_dir,
        &anchors,
    ] {
        match persist::remove_stale_temporaries(dir) {
            Ok(0) => {}
            Ok(n) => {
                tracing::warn!(dir = %dir.display(), removed = n, "removed temporaries a crash left behind")
            }
            Err(e) => {
                tracing::warn!(error = %kit::ErrorChain(&e), "cannot clean stale temporaries")
            }
        }
    }
}

/// The trust-quorum actor's configuration and vault: the vault only with the TPM key
/// backend (its shares are sealed to the TPM; the file backend has no equivalent, so the
/// quorum is off without it).
fn quorum_setup(
    config: &Config,
    tpm: Option<Arc<crate::identity::tpm::TpmKeyStore>>,
) -> (QuorumConfig, Option<Vault>) {
    let tq = &config.trust_quorum;
    let dir = config.identity.state_dir.join("trust-quorum");
    let vault = tpm.map(|tpm| Vault::new(tpm, &dir));
    if vault.is_none() {
        tracing::warn!("trust quorum off: it needs the TPM key backend to seal its shares");
    }
    if tq.test_tamper_shares {
        tracing::warn!("TEST HOOK: this BMC tampers with every trust-quorum share it releases");
    }
    let quorum = QuorumConfig {
        settings: bmc_pairing_core::quorum::Settings {
            attestation_max_age: tq.attestation_max_age.as_secs(),
        },
        state_path: dir.join("quorum.json"),
        keys_dir: tq.keys_dir.clone(),
        purposes: tq.purposes.clone(),
        unlocked_command: tq.unlocked_command.clone(),
        retry_interval: tq.retry_interval,
        tamper_releases: tq.test_tamper_shares,
    };
    (quorum, vault)
}

/// Runs the daemon until `shutdown` completes or the bus connection closes.
///
/// # Errors
/// [`StartError`] for start-up failures; runtime failures are logged and handled.
///
/// # Cancel safety
/// Not cancel safe: drive it to completion (pass the shutdown future instead).
pub async fn run(
    config: Config,
    bus: Bus,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let config = Arc::new(config);
    remove_stale_temporaries(&config);
    let opened = {
        let (backend, key_dir) = (
            config.identity.key_backend.clone(),
            config.identity.key_dir(),
        );
        tokio::task::spawn_blocking(move || store::open(&backend, &key_dir, Probe::Deferred))
            .await
            .map_err(|_| StartError::Panicked("opening the key store"))?
            .map_err(StartError::KeyStore)?
    };
    tracing::info!(backend = %opened.store.backend(), "key store ready");

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let device = config
        .bind_to_interface
        .then(|| config.interface_id.clone());
    let listener =
        server::bind(config.listen_address, config.port, device.as_deref()).map_err(|source| {
            StartError::Listen {
                port: config.port,
                device: device.clone(),
                source,
            }
        })?;

    let pins = PinSet::new();
    let farewells = PinSet::new();
    let sessions = Sessions::new();
    let pinned_addresses = PinnedAddresses::new();
    let (server_tls, server_tls_rx) = watch::channel(None);
    let (credentials, credentials_rx) = watch::channel(None);
    let (link_tx, link_rx) = mpsc::unbounded_channel();
    let (notices_tx, notices_rx) = mpsc::unbounded_channel();
    // Events queue from the start; they are delivered once the bus connection exists.
    let (events_tx, events_rx) = mpsc::unbounded_channel();
    let events = Emitter::new(events_tx, opened.store.backend().to_string());
    let round_trips = crate::link::RoundTrips::new();
    let (discovery_tx, discovery_rx) = mpsc::channel(64);
    let (admission_tx, admission_rx) = mpsc::channel(16);
    let (quorum_tx, quorum_rx) = mpsc::channel(16);
    start_discovery(&config, &bus, discovery_tx, &tracker, &cancel);
    let attest = match config.attestation {
        Attestation::Required => {
            // A connection of its own: replies to our calls come back on it, from the service
            // we called, whatever else happens on the main connection.
            let conn = bus.connect().await.map_err(StartError::Dbus)?;
            Some(
                BusAttestor::new(
                    &conn,
                    TrustedUsers::new(config.trusted_service_uids.iter().copied()),
                    config.attestation_timeout,
                )
                .await
                .map_err(StartError::Dbus)?,
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
    let reset = Reset {
        state_path: state_path(&config),
        chain: ChainFiles::new(config.identity.cert_dir()),
        key_dir: config.identity.key_dir(),
    };
    {
        // Before anything is loaded: a factory reset that a crash interrupted is finished.
        let (reset, store) = (reset.clone(), opened.store.clone());
        match tokio::task::spawn_blocking(move || reset.resume_if_pending(store.as_ref())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::error!(error = %kit::ErrorChain(&e), "cannot finish an interrupted factory reset; retried at the next start")
            }
            Err(_) => return Err(StartError::Panicked("finishing a factory reset")),
        }
    }
    let persisted = actor::load_state(&state_path(&config));
    let keeper = {
        let parts = KeeperParts {
            store: opened.store.clone(),
            chain: ChainFiles::new(config.identity.cert_dir()),
            bmc_name: config.bmc_name.clone(),
            trust_mode: config.trust_mode,
            pins: pins.clone(),
            farewells: farewells.clone(),
            sessions: sessions.clone(),
            server_tls,
            credentials,
            tracker: tracker.clone(),
        };
        let floor = persisted.time_floor;
        tokio::task::spawn_blocking(move || Keeper::load(parts, floor))
            .await
            .map_err(|_| StartError::Panicked("loading the identity"))?
    };
    let mailboxes = crate::link::mailbox::Mailboxes::new();
    let dial = TlsDialer::new(
        DialSettings {
            device: device.clone(),
            source: config.listen_address,
            our_name: config.bmc_name.clone(),
            boot_id: kit::boot_id(&config.boot_id_path),
            timing: timing(&config),
            retry: Retry {
                initial: config.backoff_initial,
                max: config.backoff_max,
            },
            round_trips: round_trips.clone(),
            mailboxes: mailboxes.clone(),
        },
        credentials_rx,
    );
    let exchange = Arc::new(dial.clone());
    let (actor, handle, commands) = Actor::new(Parts {
        settings: Settings {
            trust_mode: config.trust_mode,
            attestation: attest.is_some(),
            pairing_port: config.port,
            attestation_port: config.attestation_port,
            reattest_interval: config.reattest_interval.map(|d| d.as_secs()),
        },
        persisted,
        state_path: state_path(&config),
        reset,
        interface: config.interface_id.clone(),
        port: config.port,
        check_interval: config.identity_check_interval,
        attest: Arc::new(attest),
        dial: Arc::new(dial),
        keeper,
        listener: Listener {
            pins: pins.clone(),
            farewells: farewells.clone(),
            sessions: sessions.clone(),
            pinned_addresses: pinned_addresses.clone(),
            admissions: admission_rx,
        },
        link_events: link_rx,
        link_events_tx: link_tx.clone(),
        discovery: discovery_rx,
        notices: notices_tx,
        events: events.clone(),
        round_trips: round_trips.clone(),
        tracker: tracker.clone(),
        cancel: cancel.clone(),
        group_authority: config.group_authority,
        mailboxes: mailboxes.clone(),
    });
    tracker.spawn(actor.run(commands));
    let (quorum_config, vault) = quorum_setup(&config, opened.tpm.clone());
    let (quorum, quorum_handle, quorum_commands) = QuorumActor::new(QuorumParts {
        config: quorum_config,
        vault,
        exchange,
        pairing: handle.clone(),
        incoming: quorum_rx,
        events,
        tracker: tracker.clone(),
        cancel: cancel.clone(),
    });
    tracker.spawn(quorum.run(quorum_commands));
    tracker.spawn(server::serve(
        listener,
        server_tls_rx,
        server::Settings {
            timing: timing(&config),
            max_pending: config.max_pending_handshakes,
            max_pending_per_source: config.max_pending_per_source,
            max_sessions: config.max_sessions,
            budget: Arc::new(Mutex::new(SignBudget::new(
                config.sign_limits,
                Instant::now(),
            ))),
            pinned_addresses,
            pins,
            farewells,
            admission: Some(admission_tx),
            round_trips,
            mailboxes,
            quorum: Some(quorum_tx),
        },
        sessions,
        link_tx,
        tracker.clone(),
        cancel.clone(),
    ));

    let conn = match dbus::serve(&bus, &handle, &quorum_handle).await {
        Ok(c) => c,
        Err(e) => {
            kit::stop(&cancel, &tracker).await;
            return Err(StartError::Dbus(e));
        }
    };
    tracing::info!(port = config.port, name = %config.bmc_name, "bmc-pairing-manager ready");
    tracker.spawn(events::deliver(
        events_rx,
        Journal::new(&config.journal_socket),
        Some(conn.clone()),
        cancel.clone(),
    ));
    tracker.spawn(dbus::publish(
        conn.clone(),
        handle,
        notices_rx,
        cancel.clone(),
    ));

    tracker.spawn(dbus::trust_quorum::publish(
        conn.clone(),
        quorum_handle.view.clone(),
        cancel.clone(),
    ));

    kit::serve_until(&conn, shutdown, &cancel, &tracker).await;
    Ok(())
}
