//! The quorum machine driven in memory: three (or more) members, a message queue that can
//! drop, tamper with or cut members off, and crashes that restore from the last persisted
//! state. No sockets, no TPM: "sealed" shares are a map per member.

use std::collections::{BTreeMap, VecDeque};

use proptest::prelude::*;

use super::machine::{Action, InitRefusal, PeerFacts, Persisted, Quorum, Settings, State};
use super::vss::Share;
use super::vss::tests::TestRng;
use super::wire::{Message, RefuseReason};
use crate::keys::Fingerprint;

const NOW: u64 = 1_000_000;
const SETTINGS: Settings = Settings {
    attestation_max_age: 3600,
};

fn fp(n: u8) -> Fingerprint {
    Fingerprint([n; 32])
}

struct Node {
    q: Quorum,
    persisted: Persisted,
    sealed: BTreeMap<u64, Share>,
    up: bool,
    bad_shares: Vec<Fingerprint>,
    reattests: Vec<Fingerprint>,
    locked_reports: Vec<(usize, usize)>,
    unlocked: usize,
    ended: Vec<Option<String>>,
}

struct Net {
    nodes: BTreeMap<Fingerprint, Node>,
    queue: VecDeque<(Fingerprint, Fingerprint, Message)>,
    /// What `observer` knows of `subject` (default: admitted, attested now, connected).
    facts: BTreeMap<(Fingerprint, Fingerprint), PeerFacts>,
    /// Flip a byte of every share `from` releases.
    tamper: Option<Fingerprint>,
}

impl Net {
    fn new(n: u8) -> Self {
        let mut nodes = BTreeMap::new();
        for i in 1..=n {
            let (q, _) = Quorum::restore(fp(i), SETTINGS, Persisted::default());
            nodes.insert(
                fp(i),
                Node {
                    q,
                    persisted: Persisted::default(),
                    sealed: BTreeMap::new(),
                    up: true,
                    bad_shares: Vec::new(),
                    reattests: Vec::new(),
                    locked_reports: Vec::new(),
                    unlocked: 0,
                    ended: Vec::new(),
                },
            );
        }
        Net {
            nodes,
            queue: VecDeque::new(),
            facts: BTreeMap::new(),
            tamper: None,
        }
    }

    fn facts(&self, observer: Fingerprint, subject: Fingerprint) -> PeerFacts {
        self.facts
            .get(&(observer, subject))
            .copied()
            .unwrap_or(PeerFacts {
                fingerprint: subject,
                admitted: true,
                attestation_vouches: true,
                attested_at: NOW,
                connected: true,
            })
    }

    fn peers_of(&self, observer: Fingerprint) -> Vec<PeerFacts> {
        self.nodes
            .keys()
            .filter(|f| **f != observer)
            .map(|f| self.facts(observer, *f))
            .collect()
    }

    fn node(&mut self, who: Fingerprint) -> &mut Node {
        self.nodes.get_mut(&who).unwrap()
    }

    fn run(&mut self, who: Fingerprint, actions: Vec<Action>) {
        let mut todo: VecDeque<Action> = actions.into();
        while let Some(action) = todo.pop_front() {
            let node = self.node(who);
            match action {
                Action::SealShare { epoch, share } => {
                    node.sealed.insert(epoch, share);
                }
                Action::DestroyShare { epoch } => {
                    node.sealed.remove(&epoch);
                }
                Action::PruneShares { keep } => node.sealed.retain(|e, _| keep.contains(e)),
                Action::LoadShare { epoch } => {
                    let share = node.sealed.get(&epoch).cloned();
                    let more = node.q.share_loaded(epoch, share);
                    todo.extend(more);
                }
                Action::Persist => node.persisted = node.q.persisted(),
                Action::Send { to, message } => self.queue.push_back((who, to, message)),
                Action::Reattest(f) => node.reattests.push(f),
                Action::Unlocked => node.unlocked += 1,
                Action::StillLocked { have, need } => node.locked_reports.push((have, need)),
                Action::BadShare { from } => node.bad_shares.push(from),
                Action::InitializationEnded { failure, .. } => node.ended.push(failure),
                Action::Publish => {}
            }
        }
    }

    /// Delivers one queued message and its answer; false when the queue is empty.
    fn step(&mut self) -> bool {
        let Some((from, to, message)) = self.queue.pop_front() else {
            return false;
        };
        if !self.nodes[&from].up {
            return true;
        }
        let answer = if self.nodes[&to].up {
            let facts = self.facts(to, from);
            let (actions, mut reply) =
                self.node(to)
                    .q
                    .received(from, Some(&facts), message.clone(), NOW);
            self.run(to, actions);
            if self.tamper == Some(to)
                && let Message::Release { share, .. } = &mut reply
            {
                let mut bytes = *share.value_bytes();
                bytes[31] ^= 1;
                *share = Share::from_parts(share.index(), &bytes).unwrap();
            }
            Some(reply)
        } else {
            None
        };
        let actions = self.node(from).q.answered(to, &message, answer);
        self.run(from, actions);
        true
    }

    fn settle(&mut self) {
        let mut n = 0;
        while self.step() {
            n += 1;
            assert!(n < 10_000, "no quiescence");
        }
    }

    fn initialize(&mut self, who: Fingerprint, k: u32) -> Result<(), InitRefusal> {
        let peers = self.peers_of(who);
        let mut rng = TestRng::new(7);
        let actions = self.node(who).q.initialize(k, &peers, NOW, &mut rng)?;
        self.run(who, actions);
        Ok(())
    }

    fn reshare(&mut self, who: Fingerprint, k: u32) -> Result<(), InitRefusal> {
        let peers = self.peers_of(who);
        let mut rng = TestRng::new(11);
        let actions = self.node(who).q.reshare(k, &peers, NOW, &mut rng)?;
        self.run(who, actions);
        Ok(())
    }

    fn set_facts(
        &mut self,
        observer: Fingerprint,
        subject: Fingerprint,
        edit: impl Fn(&mut PeerFacts),
    ) {
        let mut f = self.facts(observer, subject);
        edit(&mut f);
        self.facts.insert((observer, subject), f);
    }

    /// Kills `who` (memory lost) and starts it again from what it persisted and sealed.
    fn restart(&mut self, who: Fingerprint) {
        let node = self.node(who);
        let (q, actions) = Quorum::restore(who, SETTINGS, node.persisted.clone());
        node.q = q;
        node.up = true;
        self.run(who, actions);
    }

    fn down(&mut self, who: Fingerprint) {
        self.node(who).up = false;
    }

    fn state(&self, who: Fingerprint) -> State {
        self.nodes[&who].q.state()
    }
}

fn initialized_2_of_3() -> Net {
    let mut net = Net::new(3);
    net.initialize(fp(1), 2).unwrap();
    net.settle();
    net
}

#[test]
fn initialization_commits_on_every_member_and_each_unlocks() {
    let net = initialized_2_of_3();
    for i in 1..=3 {
        let node = &net.nodes[&fp(i)];
        assert_eq!(node.q.state(), State::Unlocked, "member {i}");
        assert_eq!(node.q.epoch(), 1);
        assert_eq!(node.q.threshold(), 2);
        assert_eq!(node.q.members(), vec![fp(1), fp(2), fp(3)]);
        assert_eq!(node.sealed.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert!(node.persisted.outbox.is_empty());
    }
    let secrets: Vec<_> = (1..=3)
        .map(|i| *net.nodes[&fp(i)].q.secret().unwrap().to_bytes())
        .collect();
    assert!(secrets.iter().all(|s| *s == secrets[0]));
    assert_eq!(net.nodes[&fp(1)].ended, vec![None]);
}

#[test]
fn bad_arguments_change_nothing() {
    let mut net = Net::new(3);
    for k in [0, 1, 4, u32::MAX] {
        assert!(matches!(
            net.initialize(fp(1), k),
            Err(InitRefusal::InvalidArgument(_))
        ));
    }
    // One peer not connected: 2 eligible members.
    let mut f = net.facts(fp(1), fp(3));
    f.connected = false;
    net.facts.insert((fp(1), fp(3)), f);
    assert!(matches!(
        net.initialize(fp(1), 2),
        Err(InitRefusal::InvalidArgument(_))
    ));
    // Stale attestation and quarantine do not count either.
    f.connected = true;
    f.attested_at = NOW - 3601;
    net.facts.insert((fp(1), fp(3)), f);
    assert!(net.initialize(fp(1), 2).is_err());
    f.attested_at = NOW;
    f.admitted = false;
    net.facts.insert((fp(1), fp(3)), f);
    assert!(net.initialize(fp(1), 2).is_err());
    let node = &net.nodes[&fp(1)];
    assert_eq!(node.q.state(), State::Uninitialized);
    assert_eq!(node.persisted, Persisted::default());
    assert!(net.queue.is_empty());

    let mut net = initialized_2_of_3();
    assert!(matches!(
        net.initialize(fp(2), 2),
        Err(InitRefusal::NotAllowed(_))
    ));
}

#[test]
fn after_a_full_restart_each_unlocks_once_one_peer_is_back_and_alone_stays_locked() {
    let mut net = initialized_2_of_3();
    for i in 1..=3 {
        net.down(fp(i));
    }
    net.restart(fp(1));
    net.settle();
    assert_eq!(net.state(fp(1)), State::Locked);
    assert_eq!(net.nodes[&fp(1)].locked_reports, vec![(1, 2)]);
    assert!(net.nodes[&fp(1)].q.secret().is_none());

    net.restart(fp(2));
    net.settle();
    assert_eq!(net.state(fp(2)), State::Unlocked);
    assert_eq!(net.nodes[&fp(2)].q.contributors(), &[fp(2), fp(1)]);
    // The first one asks again (the driver retries) and now gets a share.
    let again = net.node(fp(1)).q.start_unlock();
    net.run(fp(1), again);
    net.settle();
    assert_eq!(net.state(fp(1)), State::Unlocked);
    assert_eq!(net.nodes[&fp(1)].q.contributors(), &[fp(1), fp(2)]);
    assert_eq!(
        *net.nodes[&fp(1)].q.secret().unwrap().to_bytes(),
        *net.nodes[&fp(2)].q.secret().unwrap().to_bytes()
    );
}

#[test]
fn a_quarantined_member_gets_no_share() {
    let mut net = initialized_2_of_3();
    for i in 1..=3 {
        net.down(fp(i));
    }
    net.restart(fp(1));
    net.restart(fp(3));
    // Both peers see member 1 quarantined.
    for observer in [fp(2), fp(3)] {
        let mut f = net.facts(observer, fp(1));
        f.admitted = false;
        net.facts.insert((observer, fp(1)), f);
    }
    net.restart(fp(2));
    net.settle();
    assert_eq!(net.state(fp(1)), State::Locked);
    assert_eq!(net.state(fp(2)), State::Unlocked);
    assert_eq!(net.state(fp(3)), State::Unlocked);
    // Asked directly, the answer is a refusal without a share.
    let facts = net.facts(fp(2), fp(1));
    let (_, answer) =
        net.node(fp(2))
            .q
            .received(fp(1), Some(&facts), Message::Request { epoch: 1 }, NOW);
    assert_eq!(
        answer,
        Message::Refuse {
            epoch: 1,
            reason: RefuseReason::NotAdmitted
        }
    );
    // Neither does an identity that is not a member (or not paired at all).
    let (_, answer) = net
        .node(fp(2))
        .q
        .received(fp(9), None, Message::Request { epoch: 1 }, NOW);
    assert_eq!(
        answer,
        Message::Refuse {
            epoch: 1,
            reason: RefuseReason::NotMember
        }
    );
}

#[test]
fn a_stale_attestation_is_renewed_before_a_share_is_released() {
    let mut net = initialized_2_of_3();
    let mut f = net.facts(fp(2), fp(1));
    f.attested_at = NOW - 3601;
    let (actions, answer) =
        net.node(fp(2))
            .q
            .received(fp(1), Some(&f), Message::Request { epoch: 1 }, NOW);
    assert_eq!(actions, vec![Action::Reattest(fp(1))]);
    assert_eq!(
        answer,
        Message::Refuse {
            epoch: 1,
            reason: RefuseReason::AttestationStale
        }
    );
    f.attested_at = NOW - 10;
    let (_, answer) =
        net.node(fp(2))
            .q
            .received(fp(1), Some(&f), Message::Request { epoch: 1 }, NOW);
    assert!(matches!(answer, Message::Release { epoch: 1, .. }));
}

#[test]
fn a_tampered_share_is_refused_and_the_honest_ones_unlock() {
    let mut net = initialized_2_of_3();
    for i in 1..=3 {
        net.down(fp(i));
    }
    net.tamper = Some(fp(2));
    net.restart(fp(2));
    net.restart(fp(3));
    net.restart(fp(1));
    net.settle();
    let node = &net.nodes[&fp(1)];
    assert_eq!(node.bad_shares, vec![fp(2)]);
    assert_eq!(node.q.state(), State::Unlocked);
    assert_eq!(node.q.contributors(), &[fp(1), fp(3)]);
}

#[test]
fn a_member_that_is_down_rolls_the_initialization_back_everywhere() {
    let mut net = Net::new(3);
    net.down(fp(3));
    net.initialize(fp(1), 2).unwrap();
    net.settle();
    for i in 1..=2 {
        let node = &net.nodes[&fp(i)];
        assert_eq!(node.q.state(), State::Uninitialized, "member {i}");
        assert!(node.sealed.is_empty(), "member {i} keeps no share");
        assert!(node.persisted.committed.is_none() && node.persisted.staged.is_none());
    }
    assert!(net.nodes[&fp(1)].ended[0].is_some());
    // The abort owed to member 3 is kept until it acknowledges.
    assert_eq!(net.nodes[&fp(1)].persisted.outbox.len(), 1);
    net.restart(fp(3));
    let owed = net.node(fp(1)).q.resend_owed();
    net.run(fp(1), owed);
    net.settle();
    assert!(net.nodes[&fp(1)].persisted.outbox.is_empty());
    // A new attempt takes a new epoch.
    net.initialize(fp(1), 3).unwrap();
    net.settle();
    assert_eq!(net.state(fp(3)), State::Unlocked);
    assert_eq!(net.nodes[&fp(3)].q.epoch(), 2);
}

#[test]
fn a_delivery_that_does_not_match_its_commitment_is_refused() {
    let mut net = Net::new(3);
    net.initialize(fp(1), 2).unwrap();
    // Tamper with the share to member 2 in flight.
    for (_, to, message) in net.queue.iter_mut() {
        if *to == fp(2)
            && let Message::Deliver(d) = message
        {
            let mut bytes = *d.share.value_bytes();
            bytes[0] ^= 0x01;
            d.share = Share::from_parts(d.share.index(), &bytes).unwrap();
        }
    }
    net.settle();
    assert_eq!(net.nodes[&fp(2)].bad_shares, vec![fp(1)]);
    for i in 1..=3 {
        assert_eq!(net.state(fp(i)), State::Uninitialized, "member {i}");
        assert!(net.nodes[&fp(i)].sealed.is_empty());
    }
}

#[test]
fn a_reshare_adds_a_member_then_removes_one_and_the_removed_one_cannot_contribute() {
    let mut net = Net::new(4);
    // D is not connected to A yet: a group of three.
    net.set_facts(fp(1), fp(4), |f| f.connected = false);
    net.initialize(fp(1), 2).unwrap();
    net.settle();
    assert_eq!(net.nodes[&fp(1)].q.members(), vec![fp(1), fp(2), fp(3)]);
    assert_eq!(net.state(fp(4)), State::Uninitialized);
    let secret = *net.nodes[&fp(1)].q.secret().unwrap().to_bytes();
    // Only an unlocked member reshares.
    assert!(matches!(
        net.reshare(fp(4), 2),
        Err(InitRefusal::NotAllowed(_))
    ));

    // D joins: the same secret, reshared to four for epoch 2; every epoch-1 share is gone.
    net.set_facts(fp(1), fp(4), |f| f.connected = true);
    net.reshare(fp(1), 3).unwrap();
    net.settle();
    for i in 1..=4 {
        let node = &net.nodes[&fp(i)];
        assert_eq!(node.q.epoch(), 2, "member {i}");
        assert_eq!(node.q.threshold(), 3);
        assert_eq!(node.q.members(), vec![fp(1), fp(2), fp(3), fp(4)]);
        assert_eq!(
            node.sealed.keys().copied().collect::<Vec<_>>(),
            vec![2],
            "member {i}"
        );
        assert_eq!(node.q.state(), State::Unlocked, "member {i}");
        assert_eq!(*node.q.secret().unwrap().to_bytes(), secret, "member {i}");
    }

    // C leaves (A no longer counts it): epoch 3 among A, B, D; C is told and destroys its share.
    net.set_facts(fp(1), fp(3), |f| f.connected = false);
    net.reshare(fp(1), 2).unwrap();
    net.settle();
    for i in [1, 2, 4] {
        let node = &net.nodes[&fp(i)];
        assert_eq!(node.q.epoch(), 3, "member {i}");
        assert_eq!(node.q.members(), vec![fp(1), fp(2), fp(4)]);
        assert_eq!(
            node.sealed.keys().copied().collect::<Vec<_>>(),
            vec![3],
            "member {i}"
        );
        assert_eq!(*node.q.secret().unwrap().to_bytes(), secret, "member {i}");
    }
    assert_eq!(net.state(fp(3)), State::Uninitialized);
    assert!(net.nodes[&fp(3)].sealed.is_empty());
    assert!(net.nodes[&fp(1)].persisted.outbox.is_empty());

    // Even with its old share, C cannot help: its epoch is refused, and it is no member.
    for epoch in [2, 3] {
        let facts = net.facts(fp(2), fp(3));
        let (_, answer) =
            net.node(fp(2))
                .q
                .received(fp(3), Some(&facts), Message::Request { epoch }, NOW);
        assert!(
            matches!(answer, Message::Refuse { .. }),
            "epoch {epoch}: {answer:?}"
        );
    }
    for i in 1..=4 {
        net.down(fp(i));
    }
    net.restart(fp(1));
    net.restart(fp(3));
    net.settle();
    assert_eq!(net.state(fp(1)), State::Locked, "C's answer is no share");
    net.restart(fp(4));
    let again = net.node(fp(1)).q.start_unlock();
    net.run(fp(1), again);
    net.settle();
    assert_eq!(net.state(fp(1)), State::Unlocked);
    assert_eq!(*net.nodes[&fp(1)].q.secret().unwrap().to_bytes(), secret);
}

#[test]
fn a_reshare_that_a_new_member_refuses_leaves_the_old_group_everywhere() {
    let mut net = initialized_2_of_3();
    let secret = *net.nodes[&fp(1)].q.secret().unwrap().to_bytes();
    net.down(fp(3));
    net.reshare(fp(1), 2).unwrap();
    net.settle();
    for i in 1..=2 {
        let node = &net.nodes[&fp(i)];
        assert_eq!(node.q.epoch(), 1, "member {i}");
        assert_eq!(
            node.sealed.keys().copied().collect::<Vec<_>>(),
            vec![1],
            "member {i}"
        );
        assert!(node.persisted.staged.is_none());
    }
    assert_eq!(*net.nodes[&fp(1)].q.secret().unwrap().to_bytes(), secret);
    // A delivery of another secret under a higher epoch is refused by a member.
    let mut rng = TestRng::new(99);
    let other = super::vss::Secret::random(&mut rng);
    let (commitment, shares) = super::vss::split(&other, 2, 3, &mut rng).unwrap();
    let d = super::wire::Delivery {
        epoch: 9,
        members: vec![fp(1), fp(2), fp(3)],
        share: shares[1].clone(),
        commitment,
    };
    let facts = net.facts(fp(2), fp(1));
    let (actions, answer) =
        net.node(fp(2))
            .q
            .received(fp(1), Some(&facts), Message::Deliver(Box::new(d)), NOW);
    assert!(actions.is_empty());
    assert!(matches!(answer, Message::Refuse { .. }));
}

#[test]
fn a_share_sealed_but_not_recorded_before_a_crash_is_pruned_at_restart() {
    let mut net = Net::new(3);
    let peers = net.peers_of(fp(1));
    let actions = net
        .node(fp(1))
        .q
        .initialize(2, &peers, NOW, &mut TestRng::new(3))
        .unwrap();
    // Only the first action (the seal) runs before kill -9.
    assert!(matches!(actions[0], Action::SealShare { .. }));
    net.run(fp(1), actions[..1].to_vec());
    assert_eq!(net.nodes[&fp(1)].sealed.len(), 1);
    net.restart(fp(1));
    assert!(net.nodes[&fp(1)].sealed.is_empty());
    assert_eq!(net.state(fp(1)), State::Uninitialized);
}

#[test]
fn at_the_reshare_commit_the_new_group_is_recorded_before_the_old_share_goes() {
    let mut net = initialized_2_of_3();
    net.reshare(fp(1), 3).unwrap();
    // Deliver everything to the members, and capture the coordinator's commit actions
    // instead of running them.
    let mut commit_actions = Vec::new();
    while let Some((from, to, message)) = net.queue.pop_front() {
        let facts = net.facts(to, from);
        let (actions, reply) = net
            .node(to)
            .q
            .received(from, Some(&facts), message.clone(), NOW);
        net.run(to, actions);
        let actions = net.node(from).q.answered(to, &message, Some(reply));
        if actions
            .iter()
            .any(|a| matches!(a, Action::DestroyShare { .. }))
        {
            commit_actions = actions;
            break;
        }
        net.run(from, actions);
    }
    let persist = commit_actions.iter().position(|a| *a == Action::Persist);
    let destroy = commit_actions
        .iter()
        .position(|a| matches!(a, Action::DestroyShare { epoch: 1 }));
    assert!(persist.is_some() && persist < destroy, "{commit_actions:?}");
}

#[test]
fn a_delivery_that_arrives_after_its_abort_is_refused() {
    let mut net = Net::new(3);
    net.initialize(fp(1), 2).unwrap();
    // The coordinator dies with its deliveries in flight; it restarts and aborts first.
    let in_flight: Vec<_> = net.queue.drain(..).collect();
    net.restart(fp(1));
    net.settle();
    assert!(
        net.nodes[&fp(1)].persisted.outbox.is_empty(),
        "every abort acknowledged"
    );
    // Now the old deliveries land: refused, nothing staged.
    for (from, to, message) in in_flight {
        let facts = net.facts(to, from);
        let (actions, answer) = net.node(to).q.received(from, Some(&facts), message, NOW);
        assert!(actions.is_empty(), "{actions:?}");
        assert!(
            matches!(
                answer,
                Message::Refuse {
                    reason: RefuseReason::WrongEpoch,
                    ..
                }
            ),
            "{answer:?}"
        );
        assert_eq!(net.state(to), State::Uninitialized);
    }
    // A new initialization takes the next epoch and succeeds.
    net.initialize(fp(1), 2).unwrap();
    net.settle();
    for i in 1..=3 {
        assert_eq!(net.state(fp(i)), State::Unlocked);
        assert_eq!(net.nodes[&fp(i)].q.epoch(), 2);
    }
}

/// Where the coordinator crashes: after this many message exchanges.
fn crash_and_recover(crash_after: usize, member_down: Option<u8>) -> Net {
    let mut net = Net::new(3);
    if let Some(m) = member_down {
        net.down(fp(m));
    }
    net.initialize(fp(1), 2).unwrap();
    for _ in 0..crash_after {
        if !net.step() {
            break;
        }
    }
    // kill -9: the coordinator's memory and its unsent messages are gone.
    net.down(fp(1));
    net.queue.retain(|(from, _, _)| *from != fp(1));
    net.settle();
    for i in 1..=3 {
        net.down(fp(i));
    }
    for i in 1..=3 {
        net.restart(fp(i));
    }
    net.settle();
    // The driver resends what is owed until it is acknowledged.
    let owed = net.node(fp(1)).q.resend_owed();
    net.run(fp(1), owed);
    net.settle();
    // And each locked member asks again (the driver retries while locked).
    for i in 1..=3 {
        let again = net.node(fp(i)).q.start_unlock();
        net.run(fp(i), again);
    }
    net.settle();
    net
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_crash_of_the_coordinator_leaves_the_old_or_the_new_state_never_a_mix(
        crash_after in 0usize..12,
        member_down in prop_oneof![Just(None), (2u8..=3).prop_map(Some)],
    ) {
        let net = crash_and_recover(crash_after, member_down);
        let committed: Vec<bool> = (1..=3).map(|i| net.nodes[&fp(i)].persisted.committed.is_some()).collect();
        let staged: Vec<bool> = (1..=3).map(|i| net.nodes[&fp(i)].persisted.staged.is_some()).collect();
        prop_assert!(staged.iter().all(|s| !s), "nothing stays staged: {staged:?}");
        prop_assert!(committed.iter().all(|c| *c) || committed.iter().all(|c| !c), "a mix: {committed:?}");
        for i in 1..=3 {
            let node = &net.nodes[&fp(i)];
            prop_assert_eq!(node.sealed.is_empty(), !committed[0], "member {}: shares iff committed", i);
        }
        if committed[0] {
            for i in 1..=3 {
                prop_assert_eq!(net.state(fp(i)), State::Unlocked);
            }
        }
    }
}

/// A reshare of a 2-of-3 group to four members (epoch 2) whose coordinator is killed after
/// `crash_after` exchanges, then everyone restarts and owed decisions are delivered.
fn reshare_crash_and_recover(crash_after: usize) -> Net {
    let mut net = Net::new(4);
    net.set_facts(fp(1), fp(4), |f| f.connected = false);
    net.initialize(fp(1), 2).unwrap();
    net.settle();
    net.set_facts(fp(1), fp(4), |f| f.connected = true);
    net.reshare(fp(1), 3).unwrap();
    for _ in 0..crash_after {
        if !net.step() {
            break;
        }
    }
    net.down(fp(1));
    net.queue.retain(|(from, _, _)| *from != fp(1));
    net.settle();
    for i in 1..=4 {
        net.down(fp(i));
    }
    for i in 1..=4 {
        net.restart(fp(i));
    }
    net.settle();
    let owed = net.node(fp(1)).q.resend_owed();
    net.run(fp(1), owed);
    net.settle();
    for i in 1..=4 {
        let again = net.node(fp(i)).q.start_unlock();
        net.run(fp(i), again);
    }
    net.settle();
    net
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn a_crash_during_a_reshare_leaves_the_old_epoch_or_the_new_one_never_a_mix(crash_after in 0usize..14) {
        let net = reshare_crash_and_recover(crash_after);
        let epochs: Vec<u64> = (1..=4).map(|i| net.nodes[&fp(i)].q.epoch()).collect();
        for i in 1..=4 {
            prop_assert!(net.nodes[&fp(i)].persisted.staged.is_none(), "member {i} left staged");
        }
        if epochs[0] == 2 {
            for i in 1..=4 {
                let node = &net.nodes[&fp(i)];
                prop_assert_eq!(node.q.epoch(), 2);
                prop_assert_eq!(node.sealed.keys().copied().collect::<Vec<_>>(), vec![2]);
                prop_assert_eq!(node.q.state(), State::Unlocked);
            }
        } else {
            prop_assert_eq!(epochs[0], 1);
            for i in 1..=3 {
                let node = &net.nodes[&fp(i)];
                prop_assert_eq!(node.q.epoch(), 1, "member {}", i);
                prop_assert_eq!(node.sealed.keys().copied().collect::<Vec<_>>(), vec![1]);
                prop_assert_eq!(node.q.state(), State::Unlocked);
            }
            prop_assert_eq!(net.state(fp(4)), State::Uninitialized);
            prop_assert!(net.nodes[&fp(4)].sealed.is_empty());
        }
    }
}
