//! The BMC's identity: its key-store backends and the certificate chain that names its keys.
//!
//! The [`KeyStore`] trait and the public-key types are the core's
//! ([`bmc_pairing_core::keys`]); this module holds what needs I/O: the backends [`file`]
//! (development only) and [`tpm`] (production), the identity chain on disk ([`cert`], issued
//! with rcgen through the trait), and our own trust store ([`anchors`]).
//!
//! It knows nothing of peers, D-Bus or sockets.

pub mod anchors;
pub mod cert;
pub mod csr;
pub mod file;
pub mod group;
pub mod store;
pub mod tpm;

use std::path::PathBuf;

pub use bmc_pairing_core::keys::{
    Backend, Fingerprint, KeyRole, KeyStore, PublicKey, SHA256_LEN, sign_message, signature_to_der,
    verify_digest,
};
pub use bmc_pairing_core::x509::{CertSummary, NotACertificate, summarize};

/// Errors of certificate work on top of a key store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key store failed.
    #[error("key store")]
    Key(#[from] bmc_pairing_core::keys::Error),
    /// A certificate was refused by our own checks (the message says which).
    #[error("{0}")]
    Certificate(String),
    /// A certificate does not parse.
    #[error("{what}")]
    NotACertificate {
        /// Which certificate.
        what: &'static str,
        /// Why.
        #[source]
        source: NotACertificate,
    },
    /// rcgen could not build or sign a certificate or request.
    #[error("cannot issue the certificate")]
    Issue(#[from] rcgen::Error),
    /// A certificate file could not be read or written.
    #[error("certificate file {path}")]
    Persist {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::persist::Error,
    },
}
