//! `bmc-attestation`: this BMC's SPDM 1.2 responder and, on request over D-Bus, an SPDM
//! requester that attests peer BMCs (DESIGN.md §1.3, §2).
//!
//! - [`config`]: the JSON configuration, validated, with per-key errors.
//! - [`keys`]: the key store (the pairing manager's identity), key and certificate files.
//! - [`measurements`]: files, firmware image and TPM PCRs as MEASUREMENTS blocks.
//! - [`responder`]: the TCP listener serving SPDM, and the identity it serves.
//! - [`requester`]: attesting one peer; the [`requester::Report`] everyone gets back.
//! - [`dbus`]: the objects on `xyz.openbmc_project.attestation`.
//! - [`cli`]: the command line, including the operator subcommands `attest` and `respond`.
//!
//! [`run`] wires the daemon: key store, listener, identity watch and D-Bus, under one
//! cancellation token and task tracker. It never touches pairing state: it holds no pins
//! and writes no file; the pairing manager decides what an attestation means.

pub mod cli;
pub mod config;
pub mod dbus;
pub mod keys;
pub mod measurements;
pub mod requester;
pub mod responder;

use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::config::Config;
use crate::kit::{self, Bus, StartError};
use crate::spdm::transport::{Framing, Timeouts};
use bmc_pairing_core::budget::SignBudget;
use bmc_pairing_core::spdm::appraisal::{MAX_REFERENCE_FILE_LEN, ReferenceError};
use bmc_pairing_core::spdm::{MeasurementPolicy, ReferenceValues};

/// Why a reference-values file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceFileError {
    /// The file cannot be read.
    #[error("cannot read {path}")]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Its content was refused.
    #[error("reference values")]
    Reference(#[from] ReferenceError),
}

/// Reads and parses a reference-values file (format in [`bmc_pairing_core::spdm::appraisal`]).
///
/// # Errors
/// [`ReferenceFileError::File`], or [`ReferenceFileError::Reference`] for bad content.
pub fn load_reference_values(
    path: &std::path::Path,
) -> Result<ReferenceValues, ReferenceFileError> {
    let file_err = |source| ReferenceFileError::File {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(file_err)?;
    if meta.len() > u64::try_from(MAX_REFERENCE_FILE_LEN).unwrap_or(u64::MAX) {
        return Err(ReferenceFileError::Reference(ReferenceError::TooLarge));
    }
    let text = std::fs::read_to_string(path).map_err(file_err)?;
    Ok(ReferenceValues::from_json(&text)?)
}

/// Reads the configured reference values into the measurement policy.
///
/// # Errors
/// [`config::Error::Invalid`] naming `reference_values` when the file cannot be read or
/// is not in the documented format ([`crate::spdm::appraisal`]).
pub fn load_measurement_policy(
    config_path: &std::path::Path,
    config: &Config,
) -> Result<MeasurementPolicy, config::Error> {
    let reference = match &config.reference_values {
        None => ReferenceValues::default(),
        Some(path) => load_reference_values(path).map_err(|e| config::Error::Invalid {
            path: config_path.to_path_buf(),
            key: "reference_values".to_owned(),
            message: crate::kit::ErrorChain(&e).to_string(),
        })?,
    };
    Ok(MeasurementPolicy {
        mode: config.measurement_policy,
        reference,
    })
}

/// The requester settings of the daemon.
pub fn requester_settings(config: &Config, measurements: MeasurementPolicy) -> requester::Settings {
    requester::Settings {
        framing: Framing::Dsp0287,
        timeouts: Timeouts {
            io: config.io_timeout,
            idle: config.idle_timeout,
        },
        connect_timeout: config.connect_timeout,
        attest_timeout: config.attest_timeout,
        device: config
            .bind_to_interface
            .then(|| config.interface_id.clone()),
        measurements,
    }
}

/// Runs the daemon until `shutdown` completes or the bus connection closes.
///
/// A key store that cannot be opened at start (TPM unreachable) is not fatal: the requester
/// works without it and the responder keeps trying (see [`responder`]).
///
/// # Errors
/// [`StartError`] for start-up failures; runtime failures are logged and handled.
///
/// # Cancel safety
/// Not cancel safe: drive it to completion (pass the shutdown future instead).
pub async fn run(
    config: Config,
    measurements: MeasurementPolicy,
    bus: Bus,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    let device = config
        .bind_to_interface
        .then(|| config.interface_id.clone());
    let opened = {
        let backend = config.identity.key_backend.clone();
        let key_dir = config.identity.key_dir();
        tokio::task::spawn_blocking(move || {
            crate::identity::store::open(&backend, &key_dir, crate::identity::store::Probe::Now)
        })
        .await
    };
    let store = match opened {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::error!(error = %crate::kit::ErrorChain(&e), "cannot open the key store; will retry");
            None
        }
        Err(e) => {
            tracing::error!(error = %crate::kit::ErrorChain(&e), "cannot open the key store; will retry");
            None
        }
    };
    let (status_tx, status_rx) = watch::channel(None);
    let responder = Arc::new(responder::Responder::new(
        responder::IdentitySource::daemon(
            config.identity.key_backend.clone(),
            config.identity.key_dir(),
            config.identity.cert_dir(),
            store,
        ),
        measurements::Measurements::new(
            &config.measured_files,
            config.firmware_image.as_deref(),
            &config.pcrs,
        ),
        status_tx,
    ));
    let listener = crate::link::server::bind(config.listen_address, config.port, device.as_deref())
        .map_err(|source| StartError::Listen {
            port: config.port,
            device: device.clone(),
            source,
        })?;

    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(responder::serve(
        listener,
        responder.clone(),
        responder::Settings {
            framing: Framing::Dsp0287,
            timeouts: Timeouts {
                io: config.io_timeout,
                idle: config.idle_timeout,
            },
            first_request_timeout: config.first_request_timeout,
            session_timeout: config.session_timeout,
            max_sessions: config.max_sessions,
            max_sessions_per_source: config.max_sessions_per_source,
            budget: Arc::new(std::sync::Mutex::new(SignBudget::new(
                config.sign_limits,
                std::time::Instant::now(),
            ))),
        },
        tracker.clone(),
        cancel.clone(),
    ));
    tracker.spawn(responder::watch_identity(
        responder,
        config.identity_check_interval,
        cancel.clone(),
    ));

    let service = dbus::Service::new(
        requester_settings(&config, measurements),
        config.port,
        config.trust_anchors_dir.clone(),
        config.max_attestations,
    );
    let tpm = matches!(
        config.identity.key_backend,
        crate::config::KeyBackend::Tpm { .. }
    )
    .then(|| dbus::TpmObject {
        protects: config.tpm_protects.clone(),
    });
    let conn = match dbus::serve(&bus, service, config.port, status_rx.clone(), tpm).await {
        Ok(c) => c,
        Err(e) => {
            kit::stop(&cancel, &tracker).await;
            return Err(StartError::Dbus(e));
        }
    };
    tracing::info!(port = config.port, "bmc-attestation ready");
    {
        let conn = conn.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = dbus::publish_responder(conn, status_rx) => {}
            }
        });
    }

    kit::serve_until(&conn, shutdown, &cancel, &tracker).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_file_errors_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ref.json");
        std::fs::write(&p, r#"{"version":1,"measurements":{"1":"00ff"}}"#).unwrap();
        assert_eq!(
            load_reference_values(&p).unwrap().get(1),
            Some(&[0, 0xff][..])
        );
        std::fs::write(&p, r#"{"version":1,"measurements":{"x":"00"}}"#).unwrap();
        assert!(matches!(
            load_reference_values(&p),
            Err(ReferenceFileError::Reference(_))
        ));
        assert!(matches!(
            load_reference_values(&dir.path().join("none")),
            Err(ReferenceFileError::File { .. })
        ));
    }
}
