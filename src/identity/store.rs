//! Opening the configured key store: one path for both daemons and the operator commands.

use std::path::Path;
use std::sync::Arc;

use bmc_pairing_core::keys::{Error, KeyStore};

use super::file::FileKeyStore;
use super::tpm::TpmKeyStore;
use crate::config::KeyBackend;

/// The configured key store, and the TPM behind it when there is one (for PCR reads).
#[derive(Clone, Debug)]
pub struct OpenedStore {
    /// Every signature goes through it.
    pub store: Arc<dyn KeyStore>,
    /// The same store as a TPM, when the backend is the TPM.
    pub tpm: Option<Arc<TpmKeyStore>>,
}

/// Whether opening proves the TPM usable first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// Fail now if the TPM does not answer (operator commands).
    Now,
    /// Open anyway and log it: a daemon serves D-Bus and reports the missing identity, and
    /// the store connects on demand once the TPM answers. Exiting would only crash-loop
    /// under systemd's `Restart=always`.
    Deferred,
}

/// Opens the store of `backend` with its keys under `key_dir` (`<state_dir>/keys`). Blocking
/// (it may talk to the TPM): call it from a blocking context.
///
/// # Errors
/// [`Error::Unavailable`] for a TCTI the TPM backend cannot use, or, with [`Probe::Now`], a
/// TPM that does not answer.
pub fn open(backend: &KeyBackend, key_dir: &Path, probe: Probe) -> Result<OpenedStore, Error> {
    match backend {
        KeyBackend::File => {
            tracing::warn!(
                "using the file key backend: private keys are on disk (development only)"
            );
            Ok(OpenedStore {
                store: Arc::new(FileKeyStore::new(key_dir)),
                tpm: None,
            })
        }
        KeyBackend::Tpm { tcti } => {
            let tpm = Arc::new(TpmKeyStore::open_unprobed(tcti, key_dir)?);
            match tpm.probe() {
                Ok(()) => {
                    tracing::info!(%tcti, "using the TPM key backend: only wrapped blobs on disk");
                }
                Err(e) if probe == Probe::Deferred => tracing::error!(
                    %tcti,
                    error = %crate::kit::ErrorChain(&e),
                    "using the TPM key backend, but the TPM does not answer: no identity until it does"
                ),
                Err(e) => return Err(e),
            }
            Ok(OpenedStore {
                store: tpm.clone(),
                tpm: Some(tpm),
            })
        }
    }
}
