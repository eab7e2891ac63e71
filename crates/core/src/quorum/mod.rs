//! Trust quorum (seed 003): a group secret that only `k` of the `n` paired, attested BMCs of
//! a group can rebuild.
//!
//! - [`vss`]: Feldman verifiable secret sharing over P-256 (split, verify, combine).
//! - [`wire`]: the quorum messages of the pairing channel (frame types `0x10..=0x1F`).
//! - [`machine`]: every quorum rule (initialization, rollback, release, unlock).

pub mod machine;
pub mod vss;
pub mod wire;

pub use machine::{
    Action, Decision, Group, InitRefusal, Owed, PeerFacts, Persisted, QUORUM_STATE_VERSION, Quorum,
    Settings, State,
};

#[cfg(test)]
mod tests;
