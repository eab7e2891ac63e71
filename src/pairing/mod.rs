//! The pairing actor and its parts. Every pairing rule is in the core's state machine
//! ([`bmc_pairing_core::pairing`]); this module executes what it decides.
//!
//! - [`actor`]: the one task that owns the state machine and executes its actions;
//! - [`links`]: the running diallers, one per admitted peer;
//! - [`identity`]: the identity keeper (key-store work off the actor's thread, the TLS
//!   configurations built from the identity);
//! - [`attest`]: the [`attest::Attest`] trait and its D-Bus client of `bmc-attestation`;
//! - [`dial`]: the [`dial::Dial`] trait and its mutual-TLS implementation;
//! - [`handle`]: how the D-Bus layer talks to the actor;
//! - [`health`]: per-peer link health (sessions, failed dials, reconnects, last change);
//! - [`reset`]: `FactoryReset.Reset()` on disk, atomic through an intent marker.

pub mod actor;
pub mod attest;
pub mod dial;
pub mod handle;
pub mod health;
pub mod identity;
pub mod links;
pub mod reset;
