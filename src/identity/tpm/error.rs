//! What goes wrong with a TPM, as a typed cause under a `keys::Error`.

use std::path::PathBuf;
use std::time::Duration;

use bmc_pairing_core::keys::{Backend, Error, KeyRole};

use super::device::describe;

/// A TPM failure. It reaches callers as the `source` of [`Error::Unavailable`] (the TPM did
/// not answer or failed; keys are not lost) or of [`Error::KeyUnusable`] (this key is gone).
#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    /// A TPM command or the TSS library failed while doing `what`. The display adds the raw
    /// response code, which tss-esapi's own text omits.
    #[error("{what}: {}", describe(*error))]
    Tss {
        /// What was being done (`TPM2_Load`, `cannot reach the tpm at ...`).
        what: String,
        /// What tss-esapi reported.
        error: tss_esapi::Error,
    },
    /// The TPM answered with something this backend cannot use.
    #[error("{0}")]
    Unexpected(String),
    /// The link to the TPM broke, and broke again on a fresh connection.
    #[error("lost the link to the tpm at {tcti}")]
    LinkLost {
        /// The TCTI.
        tcti: String,
        /// The last failure.
        #[source]
        last: Box<TpmError>,
    },
    /// A stored blob is not a key this backend can use.
    #[error("{path}: {reason}")]
    Blob {
        /// The blob file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A PCR index outside the bank.
    #[error("pcr index {0} is out of range")]
    PcrIndex(u8),
    /// The owner thread could not be started.
    #[error("cannot start the tpm owner thread")]
    Thread(#[source] std::io::Error),
    /// The owner thread is gone.
    #[error("the tpm owner thread has stopped")]
    OwnerGone,
    /// The call panicked inside the TSS library; the owner thread reconnected.
    #[error("the tpm call panicked inside the tpm library")]
    Panicked,
    /// No answer within the call timeout.
    #[error("no answer from the tpm at {tcti} within {timeout:?}")]
    Timeout {
        /// The TCTI.
        tcti: String,
        /// The call timeout.
        timeout: Duration,
    },
}

impl TpmError {
    /// As [`Error::Unavailable`] from the TPM backend.
    pub(super) fn unavailable(self) -> Error {
        Error::Unavailable {
            backend: Backend::Tpm,
            source: Box::new(self),
        }
    }

    /// As [`Error::KeyUnusable`] for `role`.
    pub(super) fn unusable(self, role: KeyRole) -> Error {
        Error::KeyUnusable {
            role,
            source: Box::new(self),
        }
    }

    /// A [`TpmError::Tss`].
    pub(super) fn tss(what: impl Into<String>, error: tss_esapi::Error) -> TpmError {
        TpmError::Tss {
            what: what.into(),
            error,
        }
    }
}
