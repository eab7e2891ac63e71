//! bmc-pairing-manager: unattended, attested pairing of OpenBMC BMCs.
//!
//! The protocol cores (SPDM, link framing and timing, the pairing state machine, the
//! `KeyStore` trait) are the sans-IO crate [`bmc_pairing_core`]; this crate is the shells
//! around them.
//!
//! Module map (each module's own docs say what it owns and what it must not touch):
//! - [`attestation`]: the `bmc-attestation` daemon: SPDM responder, peer attestation on D-Bus.
//! - [`clock`]: wall-clock time with a persisted floor (BMC clocks start at the epoch).
//! - [`config`]: the JSON configuration file, validated, with per-key errors.
//! - [`contract`]: bus names, paths and the `Attest` reply: what the two daemons agree on.
//! - [`kit`]: what both daemons share: start-up errors, logging, runtime, bus, shutdown.
//! - [`link`]: the mutual-TLS pairing channel: TLS configuration, listener and diallers.
//! - [`pairing`]: the actor that owns the pairing state machine and executes its actions.
//! - [`persist`]: crash-safe writes of state files (temp, fsync, rename, fsync dir).
//! - [`quorum`]: the trust quorum: its actor, TPM-sealed shares, derived keys.
//! - [`daemon`]: wiring of the `bmc-pairing-manager` daemon.
//! - [`dbus`]: the D-Bus objects (PDI Provisioning, seed 000 manager, per-peer objects).
//! - [`events`]: the pairing events, to the journal and to phosphor-logging's `Create`.
//! - [`discovery`]: where peers can be reached (LLDP, static); a hint, never trust.
//! - [`identity`]: the `KeyStore` trait, its backends, and the identity certificate chain.
//! - [`spdm`]: the SPDM transport (DSP0287 and emulator framing) and measured files.

pub mod attestation;
pub mod cli;
pub mod clock;
pub mod config;
pub mod contract;
pub mod daemon;
pub mod dbus;
pub mod discovery;
pub mod events;
pub mod identity;
pub mod kit;
pub mod link;
pub mod pairing;
pub mod persist;
pub mod quorum;
pub mod spdm;
