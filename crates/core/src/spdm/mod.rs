//! SPDM 1.2 (DMTF DSP0274) on the wire, byte for byte: codec, requester and responder state
//! machines, chain policy and measurement appraisal.
//!
//! The core is sans-IO: it takes bytes (and caller-supplied randomness and time) and returns
//! bytes and actions. It imports no async runtime, sockets, files or clocks:
//! - [`codec`]: the `Codec` trait, `Reader`, `InvalidMessage`.
//! - [`msgs`]: one file per request/response pair.
//! - [`frame`]: DSP0287 and emulator framing, pure (fuzzed).
//! - [`crypto`]: negotiated algorithms and the 1.2 signature rule.
//! - [`transcript`]: M1 and L1, hashed incrementally.
//! - [`verify`]: SPDM chain format and [`TrustPolicy`].
//! - [`appraisal`]: reference values and [`PolicyMode`].
//! - [`requester`]: the attesting side; its result is a [`Verdict`].
//! - [`responder`]: the attested side; signs through [`crate::keys::KeyStore`].
//!
//! The shells that move these bytes over TCP and read measured files live in the daemon
//! crate (`bmc_pairing_manager::spdm`).
//!
//! Scope: SPDM 1.2 only; ECDSA P-256 with SHA-256 and ECDSA P-384 with SHA-384 both ways
//! (the responder signs with whichever curve its leaf key is on). No sessions
//! (KEY_EXCHANGE, PSK), no mutual authentication, no chunking.

pub mod appraisal;
pub mod codec;
pub mod crypto;
pub mod frame;
pub mod msgs;
pub mod requester;
pub mod responder;
pub mod transcript;
pub mod verify;

pub use appraisal::{MeasurementPolicy, PolicyMode, ReferenceValues};
pub use codec::{Codec, InvalidMessage, Reader};
pub use crypto::{AsymAlgo, HashAlgo};
pub use frame::InvalidFrame;
pub use msgs::{ErrorCode, MeasurementBlock, Message};
pub use requester::{
    Action, Outcome, QuoteError, QuoteRequest, Requester, RequesterConfig, SignedMeasurements,
    Verdict,
};
pub use responder::{Responder, ResponderConfig};
pub use verify::{ChainError, ChainTime, TrustBasis, TrustPolicy};

/// The largest SPDM message either side sends or accepts (our DataTransferSize and
/// MaxSPDMmsgSize; libspdm's default as well).
pub const MAX_MESSAGE_SIZE: usize = 0x1200;

/// Errors of the SPDM layer. Variants say who is at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The peer sent bytes that do not decode.
    #[error("malformed spdm message")]
    InvalidMessage(#[from] InvalidMessage),
    /// The peer sent a malformed transport frame.
    #[error("malformed transport frame")]
    InvalidFrame(#[from] InvalidFrame),
    /// The peer answered with a different message than the request calls for.
    #[error("expected {expected:?}, got {got:?}")]
    UnexpectedResponse {
        /// What the request calls for.
        expected: msgs::Code,
        /// What arrived.
        got: msgs::Code,
    },
    /// The response carried the wrong SPDMVersion byte.
    #[error("response has version {got:#04x}, expected {expected:#04x}")]
    WrongVersion {
        /// The version in force.
        expected: u8,
        /// The version received.
        got: u8,
    },
    /// The peer answered with an SPDM ERROR we cannot recover from.
    #[error("peer answered error {code:?} (data {data:#04x})")]
    Peer {
        /// ErrorCode.
        code: ErrorCode,
        /// ErrorData.
        data: u8,
    },
    /// The peer lacks something we require (version, capability, algorithm).
    #[error("peer is incompatible: {0}")]
    PeerIncompatible(&'static str),
    /// The peer broke a protocol rule.
    #[error("peer misbehaved: {0}")]
    PeerMisbehaved(&'static str),
    /// A CHALLENGE_AUTH or MEASUREMENTS signature did not verify.
    #[error("{0} signature does not verify")]
    BadSignature(&'static str),
    /// The certificate chain was refused by the trust policy.
    #[error("certificate chain rejected")]
    Chain(#[from] ChainError),
    /// The peer stayed Busy or not ready beyond our retry budget.
    #[error("peer stayed busy or not ready too long")]
    RetriesExhausted,
    /// Enforce mode and at least one measurement mismatched; the verdict says which.
    #[error("measurements do not match the reference values")]
    MeasurementsRejected(Box<Verdict>),
    /// The key store failed to sign or to give the public key.
    #[error("key store")]
    KeyStore(#[from] crate::keys::Error),
    /// The local responder configuration is unusable (never caused by the peer).
    #[error("invalid responder configuration: {0}")]
    Config(&'static str),
    /// The reference-values document was refused.
    #[error("reference values")]
    Reference(#[from] appraisal::ReferenceError),
    /// The state machine was driven after it finished (a caller bug, never peer-caused).
    #[error("api misuse: {0}")]
    ApiMisuse(&'static str),
}
