//! bmc-pairing-manager: unattended, attested pairing of OpenBMC BMCs.
//!
//! Module map (each module's own docs say what it owns and what it must not touch):
//! - [`persist`]: crash-safe writes of state files (temp, fsync, rename, fsync dir).
//! - [`identity`]: the `KeyStore` trait, its backends, and the identity certificate chain.

pub mod identity;
pub mod persist;
