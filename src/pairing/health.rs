//! Per-peer link health for D-Bus: sessions opened, dials that failed, reconnects, and when
//! the peer's `State` last changed. Counted from the link events the actor already gets and
//! from the published snapshots; nothing here decides anything, and nothing runs on a timer
//! (the time of the last change is published, not a ticking age). Since this daemon
//! started; not persisted.

use std::collections::HashMap;

use bmc_pairing_core::pairing::{ConnState, Outgoing, PeerId};

use super::handle::{PeerHealth, Snapshot};

#[derive(Debug, Default)]
struct Peer {
    health: PeerHealth,
    /// An outgoing attempt is under way and has not opened a session.
    dialling: bool,
    /// The state last published, and whether it was ever Connected.
    state: Option<ConnState>,
    was_connected: bool,
}

/// The counters of every peer.
#[derive(Debug, Default)]
pub struct Health {
    peers: HashMap<PeerId, Peer>,
}

impl Health {
    /// An outgoing link event of `id`'s current dialler. True if a counter changed.
    pub fn outgoing(&mut self, id: &PeerId, event: Outgoing) -> bool {
        let p = self.peers.entry(id.clone()).or_default();
        match event {
            Outgoing::Attempt => {
                p.dialling = true;
                false
            }
            Outgoing::Up => {
                p.dialling = false;
                p.health.handshakes = p.health.handshakes.saturating_add(1);
                true
            }
            Outgoing::Down => {
                let failed = std::mem::take(&mut p.dialling);
                if failed {
                    p.health.failed_handshakes = p.health.failed_handshakes.saturating_add(1);
                }
                failed
            }
        }
    }

    /// `id` opened a session to us.
    pub fn incoming_up(&mut self, id: &PeerId) {
        let p = self.peers.entry(id.clone()).or_default();
        p.health.handshakes = p.health.handshakes.saturating_add(1);
    }

    /// Fills in the health of every peer of `new` (about to be published at `now`, unix
    /// seconds): a changed `State` is stamped, and Connected again after a loss counts as a
    /// reconnect. Peers no longer in it are forgotten.
    pub fn fill(&mut self, new: &mut Snapshot, now: u64) {
        self.peers.retain(|id, _| new.peers.contains_key(id));
        for (id, view) in new.peers.iter_mut() {
            let p = self.peers.entry(id.clone()).or_default();
            if p.state != Some(view.state) {
                p.health.last_state_change = now;
                if view.state == ConnState::Connected {
                    if p.was_connected {
                        p.health.reconnects = p.health.reconnects.saturating_add(1);
                    }
                    p.was_connected = true;
                }
                p.state = Some(view.state);
            }
            view.health = p.health;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::handle::{IdentityView, PeerView};
    use bmc_pairing_core::pairing::{AttestationOutcome, TrustMode};

    fn snapshot(state: Option<ConnState>) -> Snapshot {
        let view = |state| PeerView {
            name: "bmc-b".into(),
            address: "fd00::2".into(),
            port: 8090,
            fingerprint: "ab".repeat(32),
            trust_mode: TrustMode::FirstContact,
            incoming: ConnState::NotDetermined,
            outgoing: state,
            state,
            last_seen: 0,
            identity_mismatch: false,
            attestation: AttestationOutcome::Trusted,
            attested_at: 0,
            unpaired_by_peer: false,
            health: PeerHealth::default(),
        };
        Snapshot {
            provisioned: true,
            peer_connected: ConnState::NotDetermined,
            peers: state
                .map(|s| (PeerId::from_name("bmc-b"), view(s)))
                .into_iter()
                .collect(),
            identity: IdentityView::default(),
            chain: None,
            trust_store: Vec::new(),
            group_authority: false,
        }
    }

    #[test]
    fn dials_sessions_and_reconnects_are_counted_and_state_changes_stamped() {
        let id = PeerId::from_name("bmc-b");
        let mut h = Health::default();
        let published = |h: &mut Health, state, now| {
            let mut s = snapshot(Some(state));
            h.fill(&mut s, now);
            s.peers[&id].health
        };
        assert_eq!(
            published(&mut h, ConnState::InProgress, 10).last_state_change,
            10
        );
        assert!(!h.outgoing(&id, Outgoing::Attempt));
        assert!(
            h.outgoing(&id, Outgoing::Down),
            "a dial that opened nothing"
        );
        assert!(!h.outgoing(&id, Outgoing::Attempt));
        assert!(h.outgoing(&id, Outgoing::Up));
        let up = published(&mut h, ConnState::Connected, 12);
        assert_eq!(
            (
                up.handshakes,
                up.failed_handshakes,
                up.reconnects,
                up.last_state_change
            ),
            (1, 1, 0, 12)
        );
        assert!(
            !h.outgoing(&id, Outgoing::Down),
            "a session that ended is no failed dial"
        );
        assert_eq!(
            published(&mut h, ConnState::NotConnected, 20).last_state_change,
            20
        );
        assert_eq!(
            published(&mut h, ConnState::NotConnected, 25).last_state_change,
            20
        );
        h.incoming_up(&id);
        let back = published(&mut h, ConnState::Connected, 30);
        assert_eq!(
            (back.handshakes, back.reconnects, back.last_state_change),
            (2, 1, 30)
        );
        // Unpaired: forgotten.
        h.fill(&mut snapshot(None), 40);
        assert_eq!(published(&mut h, ConnState::Connected, 50).reconnects, 0);
    }
}
