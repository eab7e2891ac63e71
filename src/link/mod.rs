//! The pairing channel: mutual TLS 1.3 between pinned peers, with framed Hello/Alive and
//! Ping/Alive heartbeats.
//!
//! The frames, heartbeat schedule and backoff are the core's
//! ([`bmc_pairing_core::link`]); [`tls`] builds rustls configurations and the pin-checking
//! verifiers; [`connection`], [`session`], [`server`] and [`client`] are
//! thin tokio drivers. The link knows peers only by pinned fingerprint (incoming) or by an
//! [`LinkId`] (outgoing); pairing rules live in the core's pairing machine.

pub mod client;
pub mod connection;
pub mod mailbox;
pub mod server;
pub mod session;
pub mod tls;

use bmc_pairing_core::pairing::PeerId;

use crate::identity::Fingerprint;

/// One dialler of one peer: a peer's dialler is replaced (new generation) whenever its
/// address, pin or our certificates change, and events of a replaced one are ignored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkId {
    /// The peer.
    pub peer: PeerId,
    /// Which of its diallers.
    pub generation: u64,
}

impl std::fmt::Display for LinkId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}#{}", self.peer, self.generation)
    }
}

/// What the link reports to the pairing actor.
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
        /// The boot identifier in its Hello (0: none).
        boot_id: u64,
    },
    /// That session ended.
    IncomingDown {
        /// The listener's id for this connection.
        session: server::SessionId,
        /// The authenticated peer.
        fingerprint: Fingerprint,
    },
    /// The dialler `link` is trying to connect.
    OutgoingAttempt {
        /// The dialler.
        link: LinkId,
    },
    /// The dialler `link` has an open session.
    OutgoingUp {
        /// The dialler.
        link: LinkId,
    },
    /// The dialler's attempt failed or its session ended.
    OutgoingDown {
        /// The dialler.
        link: LinkId,
    },
    /// The pinned peer `fingerprint` said `Bye { Unpaired }` in an authenticated session
    /// (either direction): its operator unpaired us.
    ToldUnpaired {
        /// The peer.
        fingerprint: Fingerprint,
    },
    /// An identity we unpaired opened a session and was answered `Bye { Unpaired }`.
    FarewellDelivered {
        /// The identity told.
        fingerprint: Fingerprint,
    },
    /// A pinned peer sent a group frame (`SignRequest`, `SignReply`, `GroupList`) inside an
    /// authenticated session (either direction).
    Group {
        /// The authenticated peer.
        fingerprint: Fingerprint,
        /// The frame.
        frame: bmc_pairing_core::link::frame::Frame,
    },
    /// Something answered at the peer's address with a well-formed chain for another key.
    OutgoingRefused {
        /// The dialler.
        link: LinkId,
        /// The identity that answered instead.
        presented: Fingerprint,
    },
}

/// The last heartbeat round-trip time per peer identity, in either direction's session:
/// written by the sessions at each answered ping, read by the peer objects on D-Bus when
/// asked (no signal, no wake-up for it).
#[derive(Clone, Debug, Default)]
pub struct RoundTrips(
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<Fingerprint, std::time::Duration>>>,
);

impl RoundTrips {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `rtt` for `peer`.
    pub fn record(&self, peer: Fingerprint, rtt: std::time::Duration) {
        if let Ok(mut t) = self.0.lock() {
            t.insert(peer, rtt);
        }
    }

    /// The last one recorded for `peer`.
    pub fn get(&self, peer: &Fingerprint) -> Option<std::time::Duration> {
        self.0.lock().ok().and_then(|t| t.get(peer).copied())
    }

    /// Forgets every peer not in `keep` (unpaired ones).
    pub fn retain(&self, keep: impl Fn(&Fingerprint) -> bool) {
        if let Ok(mut t) = self.0.lock() {
            t.retain(|fp, _| keep(fp));
        }
    }
}
