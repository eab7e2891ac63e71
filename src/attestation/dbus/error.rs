//! How `bmc-attestation`'s failures map to the shared D-Bus errors
//! ([`crate::dbus::Error`]). Internal causes are logged where they are converted, once.

use super::super::requester::{Failure, InputError};
pub use crate::dbus::Error;

impl From<InputError> for Error {
    fn from(e: InputError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<Failure> for Error {
    fn from(f: Failure) -> Self {
        let text = crate::kit::ErrorChain(&f).to_string();
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
