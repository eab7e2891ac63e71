//! Errors returned over D-Bus: OpenBMC's `xyz.openbmc_project.Common.Error.*` names.

use crate::pairing::state::Refusal;

/// The D-Bus error of every method we serve.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "xyz.openbmc_project.Common.Error")]
pub enum Error {
    /// A zbus-level failure.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// `xyz.openbmc_project.Common.Error.InvalidArgument`.
    InvalidArgument(String),
    /// `xyz.openbmc_project.Common.Error.NotAllowed`.
    NotAllowed(String),
    /// `xyz.openbmc_project.Common.Error.ResourceNotFound`.
    ResourceNotFound(String),
    /// `xyz.openbmc_project.Common.Error.Unavailable`.
    Unavailable(String),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::InvalidArgument(m) => Error::InvalidArgument(m),
            Refusal::NotAllowed(m) => Error::NotAllowed(m),
            Refusal::ResourceNotFound(m) => Error::ResourceNotFound(m),
            Refusal::Unavailable(m) => Error::Unavailable(m),
        }
    }
}
