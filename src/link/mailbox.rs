//! Frames the pairing actor sends into running sessions (the group frames), and the sessions'
//! registrations that receive them. A session registers under its peer's pinned identity
//! while it runs; the actor addresses a peer by that identity and reaches every session of
//! it. Holds no rule: what to send, and when, is the core's.
//!
//! A session's outbox is a queue that allocates only when a frame is queued, and a
//! [`Notify`]: group frames are rare, and a channel would allocate its first block of
//! slots (about 2 KB) up front for every session of a hub (issue 14).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use bmc_pairing_core::link::frame::Frame;
use tokio::sync::Notify;

use crate::identity::Fingerprint;

/// One session's queue of frames from the actor.
#[derive(Debug, Default)]
struct Outbox {
    frames: Mutex<VecDeque<Frame>>,
    queued: Notify,
}

impl Outbox {
    fn frames(&self) -> MutexGuard<'_, VecDeque<Frame>> {
        self.frames.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn push(&self, frame: &Frame) {
        self.frames().push_back(frame.clone());
        // Stores a permit when the session is not waiting, so no frame is missed.
        self.queued.notify_one();
    }
}

type Outboxes = HashMap<Fingerprint, Vec<(u64, Arc<Outbox>)>>;

/// The registry of running sessions' outboxes, by peer identity.
#[derive(Clone, Debug, Default)]
pub struct Mailboxes {
    inner: Arc<Mutex<(u64, Outboxes)>>,
}

/// One session's registration: frames for its peer arrive on [`Mailbox::next`]; dropping it
/// unregisters.
#[derive(Debug)]
pub struct Mailbox {
    /// The peer it is registered for.
    pub peer: Fingerprint,
    id: u64,
    outbox: Arc<Outbox>,
    boxes: Mailboxes,
}

impl Mailboxes {
    /// An empty registry.
    pub fn new() -> Self {
        Mailboxes::default()
    }

    fn lock(&self) -> MutexGuard<'_, (u64, Outboxes)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session of `peer`.
    pub fn register(&self, peer: Fingerprint) -> Mailbox {
        let outbox = Arc::new(Outbox::default());
        let mut guard = self.lock();
        guard.0 += 1;
        let id = guard.0;
        guard.1.entry(peer).or_default().push((id, outbox.clone()));
        Mailbox {
            peer,
            id,
            outbox,
            boxes: self.clone(),
        }
    }

    /// Queues `frame` for every running session of `peer`; returns how many there are.
    pub fn send(&self, peer: &Fingerprint, frame: &Frame) -> usize {
        let guard = self.lock();
        guard.1.get(peer).map_or(0, |outboxes| {
            for (_, outbox) in outboxes {
                outbox.push(frame);
            }
            outboxes.len()
        })
    }

    /// Queues `frame` for one running session of `peer` (a request that must be answered
    /// once); false if it has none.
    pub fn send_one(&self, peer: &Fingerprint, frame: &Frame) -> bool {
        let guard = self.lock();
        match guard.1.get(peer).and_then(|outboxes| outboxes.first()) {
            Some((_, outbox)) => {
                outbox.push(frame);
                true
            }
            None => false,
        }
    }
}

impl Mailbox {
    /// The next frame the actor queued for this session.
    ///
    /// # Cancel safety
    /// Cancel safe: a frame leaves the queue only when this returns it, and a cancelled
    /// wait leaves the wake-up permit for the next call.
    pub async fn next(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.outbox.frames().pop_front() {
                return frame;
            }
            self.outbox.queued.notified().await;
        }
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let mut guard = self.boxes.lock();
        if let Some(outboxes) = guard.1.get_mut(&self.peer) {
            outboxes.retain(|(id, _)| *id != self.id);
            if outboxes.is_empty() {
                guard.1.remove(&self.peer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_reach_every_session_of_a_peer_until_it_unregisters() {
        let boxes = Mailboxes::new();
        let peer = Fingerprint([1; 32]);
        let mut a = boxes.register(peer);
        let b = boxes.register(peer);
        let frame = Frame::Ping { seq: 1 };
        assert_eq!(boxes.send(&peer, &frame), 2);
        assert_eq!(a.next().await, frame);
        drop(b);
        assert_eq!(boxes.send(&peer, &frame), 1);
        drop(a);
        assert_eq!(boxes.send(&peer, &frame), 0);
        assert!(boxes.lock().1.is_empty());
    }

    #[tokio::test]
    async fn a_frame_queued_before_the_session_waits_is_not_missed() {
        let boxes = Mailboxes::new();
        let peer = Fingerprint([2; 32]);
        let mut a = boxes.register(peer);
        let _b = boxes.register(peer);
        // A wait cancelled before anything was queued loses nothing.
        let cancelled = tokio::time::timeout(std::time::Duration::from_millis(5), a.next()).await;
        assert!(cancelled.is_err());
        assert!(boxes.send_one(&peer, &Frame::Ping { seq: 7 }));
        assert!(boxes.send_one(&peer, &Frame::Ping { seq: 8 }));
        // send_one reaches one session (the first registered), in order.
        assert_eq!(a.next().await, Frame::Ping { seq: 7 });
        assert_eq!(a.next().await, Frame::Ping { seq: 8 });
        assert!(!boxes.send_one(&Fingerprint([3; 32]), &Frame::Ping { seq: 9 }));
    }
}
