//! The sans-IO cores of bmc-pairing-manager.
//!
//! Everything here takes bytes, events, time and randomness from its caller and returns
//! bytes and actions. The crate has no async runtime, D-Bus, TLS or TPM dependency, and its
//! `clippy.toml` bans clock reads, sleeps, environment reads, the OS RNG, files and sockets,
//! so the compiler keeps it that way. The daemon crate (`bmc-pairing-manager`) drives it.
//!
//! - [`keys`]: the `KeyStore` trait every signature goes through, and the public-key types.
//! - [`budget`]: token buckets in front of work unauthenticated parties can cause (signing).
//! - [`x509`]: reading the few certificate fields the cores need.
//! - [`spdm`]: SPDM 1.2 (DSP0274) codec, requester and responder state machines, policy.
//! - [`link`]: frames, heartbeat and backoff of the pairing channel.
//! - [`pairing`]: the pairing model and the state machine that holds every pairing rule.
//! - [`quorum`]: the trust quorum: Feldman VSS, its messages and its state machine.

#![forbid(unsafe_code)]

pub mod budget;
pub mod hex;
pub mod keys;
pub mod link;
pub mod pairing;
pub mod quorum;
pub mod spdm;
pub mod x509;
