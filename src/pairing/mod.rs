//! Pairing: what this BMC trusts and how its sessions stand.
//!
//! [`state`] is the pure state machine; [`driver`] is the actor that owns it and carries
//! out its actions (keys, probes, diallers, persistence, D-Bus snapshots).

pub mod driver;
pub mod state;
