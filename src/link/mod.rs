//! The pairing channel: mutual TLS 1.3 between pinned peers, with framed Hello/Alive and
//! Ping/Alive heartbeats.
//!
//! [`frame`] and [`heartbeat`] are pure (no tokio); [`tls`] builds rustls configurations and
//! the pin-checking verifiers; [`connection`], [`session`], [`server`] and [`client`] are
//! thin tokio drivers. The link knows peers only by pinned fingerprint (incoming) or by an
//! opaque tag (outgoing); pairing rules live in `pairing`.

pub mod client;
pub mod connection;
pub mod frame;
pub mod heartbeat;
pub mod server;
pub mod session;
pub mod tls;

use crate::identity::Fingerprint;

/// What the link reports to the pairing driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    /// A pinned peer connected to us and opened a session.
    IncomingUp {
        /// The listener's id for this connection.
        session: server::SessionId,
        /// The authenticated peer.
        fingerprint: Fingerprint,
        /// The name in its Hello (informational).
        name: Option<String>,
    },
    /// That session ended.
    IncomingDown {
        /// The listener's id for this connection.
        session: server::SessionId,
        /// The authenticated peer.
        fingerprint: Fingerprint,
    },
    /// The dialler for `tag` is trying to connect.
    OutgoingAttempt {
        /// The peer.
        tag: String,
    },
    /// The dialler for `tag` has an open session.
    OutgoingUp {
        /// The peer.
        tag: String,
    },
    /// The dialler's attempt failed or its session ended.
    OutgoingDown {
        /// The peer.
        tag: String,
    },
    /// Something answered at the peer's address with a well-formed chain for another key.
    OutgoingRefused {
        /// The peer.
        tag: String,
        /// The identity that answered instead.
        presented: Fingerprint,
    },
}
