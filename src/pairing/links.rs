//! The diallers: one per peer the core lets through its gate, each a task under its own
//! cancellation token. Owns nothing but the running diallers; which peer gets one is the
//! core's decision ([`bmc_pairing_core::pairing::Action::StartLink`]).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bmc_pairing_core::pairing::PeerId;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::dial::Dial;
use crate::identity::Fingerprint;
use crate::link::{LinkEvent, LinkId};

struct Running {
    generation: u64,
    cancel: CancellationToken,
    wake: Arc<Notify>,
}

/// The running diallers, by peer.
pub struct Links {
    running: HashMap<PeerId, Running>,
    next_generation: u64,
    events: mpsc::UnboundedSender<LinkEvent>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Links {
    /// Diallers report on `events`, run on `tracker` and stop with `cancel`.
    pub fn new(
        events: mpsc::UnboundedSender<LinkEvent>,
        tracker: TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        Links {
            running: HashMap::new(),
            next_generation: 0,
            events,
            tracker,
            cancel,
        }
    }

    /// Starts a dialler for `peer` (replacing a running one).
    pub fn start(
        &mut self,
        dial: &impl Dial,
        peer: PeerId,
        endpoint: SocketAddr,
        pin: Fingerprint,
    ) {
        self.stop(&peer);
        self.next_generation = self.next_generation.wrapping_add(1);
        let link = LinkId {
            peer: peer.clone(),
            generation: self.next_generation,
        };
        let cancel = self.cancel.child_token();
        let wake = Arc::new(Notify::new());
        self.tracker.spawn(dial.link(
            link,
            endpoint,
            pin,
            wake.clone(),
            self.events.clone(),
            cancel.clone(),
        ));
        self.running.insert(
            peer,
            Running {
                generation: self.next_generation,
                cancel,
                wake,
            },
        );
    }

    /// Stops `peer`'s dialler, if any.
    pub fn stop(&mut self, peer: &PeerId) {
        if let Some(old) = self.running.remove(peer) {
            old.cancel.cancel();
        }
    }

    /// Cuts `peer`'s backoff wait short, if it has a dialler.
    pub fn wake(&self, peer: &PeerId) {
        if let Some(running) = self.running.get(peer) {
            running.wake.notify_one();
        }
    }

    /// The peer `link` dials, if it is still that peer's current dialler (events of a
    /// replaced dialler are stale).
    pub fn current(&self, link: &LinkId) -> Option<&PeerId> {
        self.running
            .get_key_value(&link.peer)
            .filter(|(_, r)| r.generation == link.generation)
            .map(|(peer, _)| peer)
    }

    /// True if `peer` has a dialler.
    pub fn is_running(&self, peer: &PeerId) -> bool {
        self.running.contains_key(peer)
    }

    /// Stops every dialler.
    pub fn stop_all(&mut self) {
        for (_, r) in self.running.drain() {
            r.cancel.cancel();
        }
    }
}
