//! bmc-pairing-manager: unattended, attested pairing of OpenBMC BMCs.
//!
//! Module map (each module's own docs say what it owns and what it must not touch):
//! - [`persist`]: crash-safe writes of state files (temp, fsync, rename, fsync dir).
//! - [`identity`]: the `KeyStore` trait, its backends, and the identity certificate chain.
//! - [`spdm`]: SPDM 1.2 codec, requester/responder state machines, DSP0287 TCP transport.

pub mod identity;
pub mod persist;
pub mod spdm;
