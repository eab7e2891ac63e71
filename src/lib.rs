//! bmc-pairing-manager: unattended, attested pairing of OpenBMC BMCs.
//!
//! Module map (each module's own docs say what it owns and what it must not touch):
//! - [`attestation`]: the `bmc-attestation` daemon: SPDM responder, peer attestation on D-Bus.
//! - [`clock`]: wall-clock time with a persisted floor (BMC clocks start at the epoch).
//! - [`config`]: the JSON configuration file, validated, with per-key errors.
//! - [`link`]: the mutual-TLS pairing channel, its framing, heartbeats and backoff.
//! - [`pairing`]: the pairing state machine (pure) and the driver that owns it.
//! - [`persist`]: crash-safe writes of state files (temp, fsync, rename, fsync dir).
//! - [`daemon`]: wiring of the `bmc-pairing-manager` daemon.
//! - [`dbus`]: the D-Bus objects (PDI Provisioning, seed 000 manager, per-peer objects).
//! - [`discovery`]: where peers can be reached (LLDP, static); a hint, never trust.
//! - [`identity`]: the `KeyStore` trait, its backends, and the identity certificate chain.
//! - [`spdm`]: SPDM 1.2 codec, requester/responder state machines, DSP0287 TCP transport.

pub mod attestation;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod dbus;
pub mod discovery;
pub mod identity;
pub mod link;
pub mod pairing;
pub mod persist;
pub mod spdm;
