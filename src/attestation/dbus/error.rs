//! Errors `bmc-attestation` returns over D-Bus: OpenBMC's `xyz.openbmc_project.Common.Error.*`
//! names (phosphor-dbus-interfaces `Common.errors.yaml`). Internal causes are logged where
//! they are converted, once.

use super::super::requester::{Failure, InputError, error_chain};

/// The D-Bus error of every method `bmc-attestation` serves.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "xyz.openbmc_project.Common.Error")]
pub enum Error {
    /// A zbus-level failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// `xyz.openbmc_project.Common.Error.InvalidArgument`: a malformed address or policy.
    InvalidArgument(String),
    /// `xyz.openbmc_project.Common.Error.ResourceNotFound`: `anchored` with an empty trust
    /// store.
    ResourceNotFound(String),
    /// `xyz.openbmc_project.Common.Error.Unavailable`: the peer cannot be reached or closed
    /// the connection, or too many attestations are in progress.
    Unavailable(String),
    /// `xyz.openbmc_project.Common.Error.Timeout`: the peer did not answer in time.
    Timeout(String),
    /// `xyz.openbmc_project.Common.Error.InternalFailure`: a local fault (an unreadable
    /// trust store, a task that died).
    InternalFailure(String),
}

impl From<InputError> for Error {
    fn from(e: InputError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        let text = error_chain(&f);
        match f {
            Failure::Connect { .. } | Failure::Lost { .. } => Error::Unavailable(text),
            Failure::Timeout { .. } => Error::Timeout(text),
            Failure::Local { .. } => {
                tracing::error!(error = %text, "attestation failed locally");
                Error::InternalFailure(text)
            }
        }
    }
}
