//! The pairing channel's pure parts: its frames ([`frame`]), and the heartbeat schedule and
//! reconnect backoff ([`heartbeat`]). The tokio drivers that use them are in the daemon
//! crate.

pub mod frame;
pub mod heartbeat;
