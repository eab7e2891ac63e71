//! Errors both daemons return over D-Bus: OpenBMC's `xyz.openbmc_project.Common.Error.*`
//! names (phosphor-dbus-interfaces `Common.errors.yaml`).

use bmc_pairing_core::pairing::Refusal;

/// The D-Bus error of every method either daemon serves.
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
    /// `xyz.openbmc_project.Common.Error.Timeout`.
    Timeout(String),
    /// `xyz.openbmc_project.Common.Error.InternalFailure`: a local fault, never the caller's.
    InternalFailure(String),
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
