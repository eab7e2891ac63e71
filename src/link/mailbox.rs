//! Frames the pairing actor sends into running sessions (the group frames), and the sessions'
//! registrations that receive them. A session registers under its peer's pinned identity
//! while it runs; the actor addresses a peer by that identity and reaches every session of
//! it. Holds no rule: what to send, and when, is the core's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bmc_pairing_core::link::frame::Frame;
use tokio::sync::mpsc;

use crate::identity::Fingerprint;

type Senders = HashMap<Fingerprint, Vec<(u64, mpsc::UnboundedSender<Frame>)>>;

/// The registry of running sessions' outboxes, by peer identity.
#[derive(Clone, Debug, Default)]
pub struct Mailboxes {
    inner: Arc<Mutex<(u64, Senders)>>,
}

/// One session's registration: frames for its peer arrive on [`Mailbox::next`]; dropping it
/// unregisters.
#[derive(Debug)]
pub struct Mailbox {
    /// The peer it is registered for.
    pub peer: Fingerprint,
    id: u64,
    rx: mpsc::UnboundedReceiver<Frame>,
    boxes: Mailboxes,
}

impl Mailboxes {
    /// An empty registry.
    pub fn new() -> Self {
        Mailboxes::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Senders)> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session of `peer`.
    pub fn register(&self, peer: Fingerprint) -> Mailbox {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut guard = self.lock();
        guard.0 += 1;
        let id = guard.0;
        guard.1.entry(peer).or_default().push((id, tx));
        Mailbox {
            peer,
            id,
            rx,
            boxes: self.clone(),
        }
    }

    /// Queues `frame` for every running session of `peer`; returns how many there are.
    pub fn send(&self, peer: &Fingerprint, frame: &Frame) -> usize {
        let guard = self.lock();
        guard.1.get(peer).map_or(0, |senders| {
            senders
                .iter()
                .filter(|(_, tx)| tx.send(frame.clone()).is_ok())
                .count()
        })
    }
}

impl Mailboxes {
    /// Queues `frame` for one running session of `peer` (a request that must be answered
    /// once); false if it has none.
    pub fn send_one(&self, peer: &Fingerprint, frame: &Frame) -> bool {
        let guard = self.lock();
        guard
            .1
            .get(peer)
            .is_some_and(|senders| senders.iter().any(|(_, tx)| tx.send(frame.clone()).is_ok()))
    }
}

impl Mailbox {
    /// The next frame the actor queued for this session.
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn next(&mut self) -> Option<Frame> {
        self.rx.recv().await
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let mut guard = self.boxes.lock();
        if let Some(senders) = guard.1.get_mut(&self.peer) {
            senders.retain(|(id, _)| *id != self.id);
            if senders.is_empty() {
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
        assert_eq!(a.next().await, Some(frame.clone()));
        drop(b);
        assert_eq!(boxes.send(&peer, &frame), 1);
        drop(a);
        assert_eq!(boxes.send(&peer, &frame), 0);
        assert!(boxes.lock().1.is_empty());
    }
}
