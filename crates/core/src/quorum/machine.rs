//! The trust-quorum state machine: every quorum rule, events in, actions out.
//!
//! States (published on D-Bus): `Uninitialized` (no group), `Initializing` (a staged group
//! whose initialization is not decided yet), `Locked` (a group, no secret in memory),
//! `Unlocked` (the secret rebuilt from `k` verified shares, in memory only).
//!
//! Initialization is a two-phase commit run by the member where `Initialize` was called
//! (the coordinator): it sends each member its share (`Deliver`); a member checks the share
//! against the commitment, seals it to its TPM, records the group as *staged* and answers
//! `Ack`. Only when all `n - 1` others acknowledged does the coordinator record the group
//! as committed (its commit point) and send `Commit`; any refusal or silence rolls back:
//! `Abort` to every member, each drops its staged share. `Commit`/`Abort` decisions are
//! persisted in an outbox and sent again until acknowledged, so a crash at any point ends
//! with every member in the old state or the new one. A coordinator that restarts with a
//! staged group and no decision aborts it.
//!
//! A share is released (`Request` → `Release`) only to a member of the group that is
//! paired, admitted (not quarantined, has not unpaired us) and whose attestation is current
//! (at most `attestation_max_age` old and vouching); a stale attestation starts a
//! re-attestation and the asker is told to ask again. The caller supplies those facts
//! ([`PeerFacts`]); this machine decides.

use std::collections::{BTreeMap, BTreeSet};

use rand_core::CryptoRngCore;
use serde::{Deserialize, Serialize};

use super::vss::{self, Commitment, MAX_MEMBERS, Secret, Share};
use super::wire::{AckOf, Delivery, Message, RefuseReason};
use crate::hex::{hex_decode, hex_encode};
use crate::keys::Fingerprint;

/// Published state of the quorum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No group.
    Uninitialized,
    /// A group is being initialized.
    Initializing,
    /// A group, and fewer than `k` shares so far.
    Locked,
    /// The secret is rebuilt (in memory).
    Unlocked,
}

impl State {
    /// The D-Bus enumeration value's last element.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Uninitialized => "Uninitialized",
            State::Initializing => "Initializing",
            State::Locked => "Locked",
            State::Unlocked => "Unlocked",
        }
    }
}

/// What the pairing state says of a peer, as the quorum needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerFacts {
    /// Its pinned identity.
    pub fingerprint: Fingerprint,
    /// Not quarantined, and it has not unpaired us.
    pub admitted: bool,
    /// Its last attestation vouches for it.
    pub attestation_vouches: bool,
    /// Unix seconds of that attestation (0: never).
    pub attested_at: u64,
    /// A session with it is up (either direction).
    pub connected: bool,
}

impl PeerFacts {
    /// Admitted and attested within `max_age` seconds of `now`.
    pub fn attestation_current(&self, now: u64, max_age: u64) -> bool {
        self.attestation_vouches
            && self.attested_at != 0
            && now.saturating_sub(self.attested_at) <= max_age
    }
}

/// The quorum's fixed rules (from the configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// A member's attestation is current for this many seconds.
    pub attestation_max_age: u64,
}

/// A group as a member records it: nothing secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// Its epoch.
    pub epoch: u64,
    /// The members in index order (member `i` is `members[i - 1]`).
    pub members: Vec<Fingerprint>,
    /// The Feldman commitment, hex of compressed points.
    pub commitment: String,
    /// The member that initialized it.
    pub coordinator: Fingerprint,
}

impl Group {
    /// The decoded commitment.
    ///
    /// # Errors
    /// [`vss::VssError::Malformed`] for a damaged record.
    pub fn commitment(&self) -> Result<Commitment, vss::VssError> {
        let bytes = hex_decode(&self.commitment).ok_or(vss::VssError::Malformed("commitment"))?;
        Commitment::from_bytes(&bytes)
    }

    /// The threshold (0 for a damaged record).
    pub fn threshold(&self) -> usize {
        self.commitment().map(|c| c.threshold()).unwrap_or(0)
    }

    /// The 1-based index of `fp`.
    pub fn index_of(&self, fp: &Fingerprint) -> Option<u8> {
        let at = self.members.iter().position(|m| m == fp)?;
        u8::try_from(at + 1).ok()
    }

    fn others<'a>(&'a self, us: &'a Fingerprint) -> impl Iterator<Item = Fingerprint> + 'a {
        self.members.iter().filter(move |m| *m != us).copied()
    }
}

/// A decision the coordinator owes a member until it is acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decision {
    /// `Commit`.
    Commit,
    /// `Abort`.
    Abort,
}

/// One undelivered decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Owed {
    /// To whom.
    pub to: Fingerprint,
    /// Of which epoch.
    pub epoch: u64,
    /// What.
    pub decision: Decision,
}

/// The persisted quorum state (`quorum.json`); the shares are sealed apart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Persisted {
    /// Schema version.
    pub version: u32,
    /// The group in force.
    pub committed: Option<Group>,
    /// A group being initialized (its share sealed, not yet committed).
    pub staged: Option<Group>,
    /// Decisions owed to members (coordinator only).
    #[serde(default)]
    pub outbox: Vec<Owed>,
    /// The highest epoch ever used here; a new group takes the next.
    #[serde(default)]
    pub last_epoch: u64,
}

/// Current schema version of [`Persisted`].
pub const QUORUM_STATE_VERSION: u32 = 1;

/// What the driver must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Seal `share` of `epoch` to our TPM and store it (atomically). Before `Persist`.
    SealShare {
        /// The epoch.
        epoch: u64,
        /// The share.
        share: Share,
    },
    /// Unseal our share of `epoch` and report it with [`Quorum::share_loaded`].
    LoadShare {
        /// The epoch.
        epoch: u64,
    },
    /// Destroy every sealed share whose epoch is not in `keep`: at start-up, shares a crash
    /// left behind between sealing and recording them.
    PruneShares {
        /// The epochs the state refers to.
        keep: Vec<u64>,
    },
    /// Destroy the sealed share of `epoch`.
    DestroyShare {
        /// The epoch.
        epoch: u64,
    },
    /// Write [`Quorum::persisted`].
    Persist,
    /// Send `message` to the member `to` and report its answer.
    Send {
        /// The member.
        to: Fingerprint,
        /// The message.
        message: Message,
    },
    /// Re-attest the member (its attestation is not current).
    Reattest(Fingerprint),
    /// The secret was rebuilt: derive and deliver the keys ([`Quorum::secret`]).
    Unlocked,
    /// An unlock round ended without `k` shares.
    StillLocked {
        /// Valid shares held (ours included).
        have: usize,
        /// Shares needed.
        need: usize,
    },
    /// A share that does not match the commitment came from `from`.
    BadShare {
        /// The sender.
        from: Fingerprint,
    },
    /// The initialization of `epoch` ended.
    InitializationEnded {
        /// The epoch.
        epoch: u64,
        /// `None`: committed; otherwise why it was rolled back.
        failure: Option<String>,
    },
    /// Publish the state.
    Publish,
}

/// Why an `Initialize` was refused; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InitRefusal {
    /// Bad arguments for the current members (D-Bus `InvalidArgument`).
    #[error("{0}")]
    InvalidArgument(String),
    /// Not in a state that allows it (D-Bus `NotAllowed`).
    #[error("{0}")]
    NotAllowed(String),
}

/// The initialization this coordinator is running.
struct Run {
    epoch: u64,
    secret: Secret,
    awaiting: BTreeSet<Fingerprint>,
}

/// The trust-quorum state of this member.
pub struct Quorum {
    us: Fingerprint,
    settings: Settings,
    record: Persisted,
    /// Our share of the committed group, once unsealed.
    own: Option<Share>,
    /// Our share of the staged group (member side), until commit or abort.
    staged_share: Option<Share>,
    /// Valid shares received in the current unlock, by sender.
    received: BTreeMap<Fingerprint, Share>,
    /// Members asked in the current unlock round who have not answered.
    asked: BTreeSet<Fingerprint>,
    secret: Option<Secret>,
    contributors: Vec<Fingerprint>,
    run: Option<Run>,
}

impl std::fmt::Debug for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quorum")
            .field("state", &self.state())
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

fn refuse(epoch: u64, reason: RefuseReason) -> Message {
    Message::Refuse { epoch, reason }
}

impl Quorum {
    /// Restores from `record`. A staged group this member coordinated without a decision
    /// is rolled back; a committed group's share is loaded; owed decisions are sent again.
    pub fn restore(us: Fingerprint, settings: Settings, record: Persisted) -> (Self, Vec<Action>) {
        let mut q = Quorum {
            us,
            settings,
            record,
            own: None,
            staged_share: None,
            received: BTreeMap::new(),
            asked: BTreeSet::new(),
            secret: None,
            contributors: Vec::new(),
            run: None,
        };
        // A share is sealed before the state records it: one that a crash left unrecorded
        // is garbage.
        let keep = [&q.record.committed, &q.record.staged]
            .into_iter()
            .flatten()
            .map(|g| g.epoch)
            .collect();
        let mut actions = vec![Action::PruneShares { keep }];
        if let Some(staged) = q.record.staged.clone()
            && staged.coordinator == us
        {
            actions.extend(q.roll_back(&staged, "the coordinator restarted before deciding"));
        }
        if let Some(g) = &q.record.committed {
            actions.push(Action::LoadShare { epoch: g.epoch });
        }
        actions.extend(q.resend_owed());
        actions.push(Action::Publish);
        (q, actions)
    }

    /// The member this state belongs to.
    pub fn us(&self) -> Fingerprint {
        self.us
    }

    /// The persisted form.
    pub fn persisted(&self) -> Persisted {
        let mut p = self.record.clone();
        p.version = QUORUM_STATE_VERSION;
        p
    }

    /// The published state.
    pub fn state(&self) -> State {
        match (&self.record.committed, &self.record.staged) {
            (Some(_), _) if self.secret.is_some() => State::Unlocked,
            (Some(_), _) => State::Locked,
            (None, Some(_)) => State::Initializing,
            (None, None) => State::Uninitialized,
        }
    }

    /// The group in force, if any.
    pub fn group(&self) -> Option<&Group> {
        self.record.committed.as_ref()
    }

    /// The epoch of the group in force (or being initialized); 0 without one.
    pub fn epoch(&self) -> u64 {
        self.record
            .committed
            .as_ref()
            .or(self.record.staged.as_ref())
            .map_or(0, |g| g.epoch)
    }

    /// The threshold of the group in force (or being initialized); 0 without one.
    pub fn threshold(&self) -> usize {
        self.record
            .committed
            .as_ref()
            .or(self.record.staged.as_ref())
            .map_or(0, Group::threshold)
    }

    /// The members of the group in force (or being initialized).
    pub fn members(&self) -> Vec<Fingerprint> {
        self.record
            .committed
            .as_ref()
            .or(self.record.staged.as_ref())
            .map(|g| g.members.clone())
            .unwrap_or_default()
    }

    /// The members whose shares rebuilt the secret at the last unlock (us first).
    pub fn contributors(&self) -> &[Fingerprint] {
        &self.contributors
    }

    /// The secret, when unlocked.
    pub fn secret(&self) -> Option<&Secret> {
        self.secret.as_ref()
    }

    /// `Initialize(threshold)`: a new group of us and every peer in `peers` that is admitted,
    /// attested (current) and connected. Returns the actions, or why nothing changed.
    ///
    /// # Errors
    /// [`InitRefusal`]: not uninitialized; fewer than 3 members; threshold outside `2..=n`.
    pub fn initialize(
        &mut self,
        threshold: u32,
        peers: &[PeerFacts],
        now: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<Action>, InitRefusal> {
        if self.state() != State::Uninitialized || self.run.is_some() {
            return Err(InitRefusal::NotAllowed(format!(
                "the trust quorum is {}",
                self.state().as_str()
            )));
        }
        let secret = Secret::random(rng);
        self.start_group(threshold, peers, now, secret, rng)
    }

    /// Splits `secret` for a new epoch among us and the eligible `peers` and stages it.
    fn start_group(
        &mut self,
        threshold: u32,
        peers: &[PeerFacts],
        now: u64,
        secret: Secret,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<Action>, InitRefusal> {
        let mut members: BTreeSet<Fingerprint> = peers
            .iter()
            .filter(|p| {
                p.fingerprint != self.us
                    && p.admitted
                    && p.connected
                    && p.attestation_current(now, self.settings.attestation_max_age)
            })
            .map(|p| p.fingerprint)
            .collect();
        members.insert(self.us);
        let n = members.len();
        if n < 3 {
            return Err(InitRefusal::InvalidArgument(format!(
                "{n} eligible members (this BMC and its paired, attested, connected peers); 3 needed"
            )));
        }
        if n > MAX_MEMBERS {
            return Err(InitRefusal::InvalidArgument(format!(
                "{n} eligible members; at most {MAX_MEMBERS}"
            )));
        }
        let k = usize::try_from(threshold).unwrap_or(usize::MAX);
        if !(2..=n).contains(&k) {
            return Err(InitRefusal::InvalidArgument(format!(
                "threshold {threshold} outside 2..={n}"
            )));
        }
        let members: Vec<Fingerprint> = members.into_iter().collect();
        let (commitment, shares) = vss::split(&secret, k, n, rng)
            .map_err(|e| InitRefusal::InvalidArgument(e.to_string()))?;
        let epoch = self.record.last_epoch.saturating_add(1);
        let group = Group {
            epoch,
            members: members.clone(),
            commitment: hex_encode(&commitment.to_bytes()),
            coordinator: self.us,
        };
        let mut actions = Vec::new();
        let mut awaiting = BTreeSet::new();
        for (member, share) in members.iter().zip(shares) {
            if *member == self.us {
                self.staged_share = Some(share.clone());
                actions.insert(0, Action::SealShare { epoch, share });
            } else {
                awaiting.insert(*member);
                actions.push(Action::Send {
                    to: *member,
                    message: Message::Deliver(Box::new(Delivery {
                        epoch,
                        members: members.clone(),
                        share,
                        commitment: commitment.clone(),
                    })),
                });
            }
        }
        // Sealed and recorded before any share leaves: a crash then finds the staged group
        // and rolls it back.
        actions.insert(1, Action::Persist);
        actions.insert(2, Action::Publish);
        self.record.last_epoch = epoch;
        self.record.staged = Some(group);
        self.run = Some(Run {
            epoch,
            secret,
            awaiting,
        });
        Ok(actions)
    }

    /// `Reshare(threshold)`: the same secret, split anew for a new epoch among us and every
    /// peer in `peers` that is admitted, attested (current) and connected. Needs the secret
    /// (unlocked: `k` members of the old epoch took part in rebuilding it). Members of the old
    /// group left out are told at the commit to destroy their old share; every member of
    /// the new group destroys its old-epoch share then. A failure leaves the old group.
    ///
    /// # Errors
    /// [`InitRefusal`]: not unlocked, or a change is in progress; as
    /// [`Quorum::initialize`] for the members and the threshold.
    pub fn reshare(
        &mut self,
        threshold: u32,
        peers: &[PeerFacts],
        now: u64,
        rng: &mut impl CryptoRngCore,
    ) -> Result<Vec<Action>, InitRefusal> {
        if self.state() != State::Unlocked || self.record.staged.is_some() || self.run.is_some() {
            return Err(InitRefusal::NotAllowed(format!(
                "a reshare needs the secret and no change in progress; the trust quorum is {}",
                self.state().as_str()
            )));
        }
        let Some(secret) = self.secret.clone() else {
            return Err(InitRefusal::NotAllowed("not unlocked".into()));
        };
        self.start_group(threshold, peers, now, secret, rng)
    }

    /// Sealing our share of `epoch` failed: the staged group is dropped (coordinator: the
    /// whole initialization rolls back). Returns the actions.
    pub fn seal_failed(&mut self, epoch: u64) -> Vec<Action> {
        match self.record.staged.clone() {
            Some(g) if g.epoch == epoch => {
                if g.coordinator == self.us {
                    self.roll_back(&g, "sealing our share failed")
                } else {
                    self.record.staged = None;
                    self.staged_share = None;
                    vec![
                        Action::DestroyShare { epoch },
                        Action::Persist,
                        Action::Publish,
                    ]
                }
            }
            _ => Vec::new(),
        }
    }

    fn roll_back(&mut self, staged: &Group, why: &str) -> Vec<Action> {
        let epoch = staged.epoch;
        self.run = None;
        self.record.staged = None;
        self.staged_share = None;
        self.record.outbox.retain(|o| o.epoch != epoch);
        for m in staged.others(&self.us) {
            self.record.outbox.push(Owed {
                to: m,
                epoch,
                decision: Decision::Abort,
            });
        }
        let mut actions = vec![
            Action::DestroyShare { epoch },
            Action::Persist,
            Action::InitializationEnded {
                epoch,
                failure: Some(why.to_owned()),
            },
            Action::Publish,
        ];
        actions.extend(self.resend_owed());
        actions
    }

    /// The messages for every decision still owed (sent at start-up and periodically).
    pub fn resend_owed(&self) -> Vec<Action> {
        self.record
            .outbox
            .iter()
            .map(|o| Action::Send {
                to: o.to,
                message: match o.decision {
                    Decision::Commit => Message::Commit { epoch: o.epoch },
                    Decision::Abort => Message::Abort { epoch: o.epoch },
                },
            })
            .collect()
    }

    /// The answer of `from` to a message we sent (`None`: unreachable, or no valid answer).
    pub fn answered(
        &mut self,
        from: Fingerprint,
        sent: &Message,
        answer: Option<Message>,
    ) -> Vec<Action> {
        match sent {
            Message::Deliver(d) => self.delivery_answered(from, d.epoch, answer),
            Message::Commit { epoch } | Message::Abort { epoch } => {
                let of = if matches!(sent, Message::Commit { .. }) {
                    AckOf::Commit
                } else {
                    AckOf::Abort
                };
                if answer == Some(Message::Ack { epoch: *epoch, of }) {
                    let before = self.record.outbox.len();
                    self.record
                        .outbox
                        .retain(|o| !(o.to == from && o.epoch == *epoch));
                    if self.record.outbox.len() != before {
                        return vec![Action::Persist];
                    }
                }
                Vec::new()
            }
            Message::Request { epoch } => self.request_answered(from, *epoch, answer),
            _ => Vec::new(),
        }
    }

    fn delivery_answered(
        &mut self,
        from: Fingerprint,
        epoch: u64,
        answer: Option<Message>,
    ) -> Vec<Action> {
        let Some(run) = self.run.as_mut() else {
            return Vec::new();
        };
        if run.epoch != epoch || !run.awaiting.contains(&from) {
            return Vec::new();
        }
        if answer
            == Some(Message::Ack {
                epoch,
                of: AckOf::Delivery,
            })
        {
            run.awaiting.remove(&from);
            if !run.awaiting.is_empty() {
                return Vec::new();
            }
            // Every member holds its share: the commit point.
            let Some(run) = self.run.take() else {
                return Vec::new();
            };
            let Some(group) = self.record.staged.take() else {
                return Vec::new();
            };
            let old = self.record.committed.take();
            // Every new member, and every member the reshare leaves out (it destroys its
            // old share on this Commit).
            let removed: Vec<Fingerprint> = old
                .iter()
                .flat_map(|o| o.others(&self.us).collect::<Vec<_>>())
                .filter(|m| !group.members.contains(m))
                .collect();
            for m in group.others(&self.us).chain(removed) {
                self.record.outbox.push(Owed {
                    to: m,
                    epoch,
                    decision: Decision::Commit,
                });
            }
            self.own = self.staged_share.take();
            self.record.committed = Some(group);
            self.secret = Some(run.secret);
            if old.is_none() {
                self.contributors = Vec::new();
            }
            // Recorded first (the commit point), and only then the old share destroyed: a
            // crash between the two must not leave the old group without its share.
            let mut actions = vec![Action::Persist];
            if let Some(old) = old {
                actions.push(Action::DestroyShare { epoch: old.epoch });
            }
            actions.extend([
                Action::InitializationEnded {
                    epoch,
                    failure: None,
                },
                Action::Unlocked,
                Action::Publish,
            ]);
            actions.extend(self.resend_owed());
            return actions;
        }
        let why = match answer {
            Some(Message::Refuse { reason, .. }) => format!("member {from} refused: {reason:?}"),
            Some(_) => format!("member {from} answered out of turn"),
            None => format!("member {from} did not answer"),
        };
        match self.record.staged.clone() {
            Some(g) if g.epoch == epoch => self.roll_back(&g, &why),
            _ => Vec::new(),
        }
    }

    /// A message from `from` (an authenticated pinned identity; `facts` is what pairing says
    /// of it, `None` if it is not a paired peer). Returns the actions and the answer.
    pub fn received(
        &mut self,
        from: Fingerprint,
        facts: Option<&PeerFacts>,
        message: Message,
        now: u64,
    ) -> (Vec<Action>, Message) {
        match message {
            Message::Deliver(d) => self.delivery_received(from, facts, *d),
            Message::Commit { epoch } => self.commit_received(from, epoch),
            Message::Abort { epoch } => self.abort_received(from, epoch),
            Message::Request { epoch } => self.share_requested(from, facts, epoch, now),
            Message::Ack { epoch, .. }
            | Message::Release { epoch, .. }
            | Message::Refuse { epoch, .. } => (Vec::new(), refuse(epoch, RefuseReason::State)),
        }
    }

    fn delivery_received(
        &mut self,
        from: Fingerprint,
        facts: Option<&PeerFacts>,
        d: Delivery,
    ) -> (Vec<Action>, Message) {
        let epoch = d.epoch;
        if !facts.is_some_and(|f| f.admitted) {
            return (Vec::new(), refuse(epoch, RefuseReason::NotAdmitted));
        }
        let ack = Message::Ack {
            epoch,
            of: AckOf::Delivery,
        };
        if let Some(staged) = &self.record.staged {
            // The same delivery again (our Ack was lost): acknowledged again.
            let same = staged.epoch == epoch
                && staged.coordinator == from
                && self.staged_share.as_ref() == Some(&d.share);
            return if same {
                (Vec::new(), ack)
            } else {
                (Vec::new(), refuse(epoch, RefuseReason::State))
            };
        }
        if let Some(current) = &self.record.committed {
            // A reshare: a higher epoch, from a member of our group, of the same secret.
            let same_secret = current
                .commitment()
                .is_ok_and(|c| c.same_secret(&d.commitment));
            if epoch <= current.epoch || !current.members.contains(&from) || !same_secret {
                return (Vec::new(), refuse(epoch, RefuseReason::State));
            }
        }
        if epoch <= self.record.last_epoch {
            // An epoch already used or aborted here.
            return (Vec::new(), refuse(epoch, RefuseReason::WrongEpoch));
        }
        let index_ok = d
            .members
            .get(usize::from(d.share.index()).wrapping_sub(1))
            .is_some_and(|m| *m == self.us);
        let consistent = index_ok
            && d.members.contains(&from)
            && d.members.len() >= 3
            && d.commitment.threshold() <= d.members.len();
        if !consistent {
            return (Vec::new(), refuse(epoch, RefuseReason::BadDelivery));
        }
        if !d.commitment.verify(&d.share) {
            return (
                vec![Action::BadShare { from }],
                refuse(epoch, RefuseReason::BadDelivery),
            );
        }
        self.record.last_epoch = self.record.last_epoch.max(epoch);
        self.record.staged = Some(Group {
            epoch,
            members: d.members,
            commitment: hex_encode(&d.commitment.to_bytes()),
            coordinator: from,
        });
        self.staged_share = Some(d.share.clone());
        (
            vec![
                Action::SealShare {
                    epoch,
                    share: d.share,
                },
                Action::Persist,
                Action::Publish,
            ],
            ack,
        )
    }

    fn commit_received(&mut self, from: Fingerprint, epoch: u64) -> (Vec<Action>, Message) {
        let ack = Message::Ack {
            epoch,
            of: AckOf::Commit,
        };
        if let Some(g) = &self.record.committed
            && g.epoch == epoch
            && g.coordinator == from
        {
            return (Vec::new(), ack);
        }
        match self.record.staged.take() {
            Some(g) if g.epoch == epoch && g.coordinator == from => {
                let epoch = g.epoch;
                self.own = self.staged_share.take();
                let old = self.record.committed.replace(g);
                self.received.clear();
                let mut actions = vec![Action::Persist, Action::Publish];
                // A reshare: the old epoch's share is destroyed once the new one is in force.
                if let Some(old) = old {
                    actions.push(Action::DestroyShare { epoch: old.epoch });
                }
                if self.own.is_some() {
                    actions.extend(self.start_unlock());
                } else {
                    // Restarted since the delivery: the share is only in the TPM now.
                    actions.push(Action::LoadShare { epoch });
                }
                (actions, ack)
            }
            other => {
                self.record.staged = other;
                // Removed from the group by a reshare: our share of the old epoch goes.
                if let Some(g) = &self.record.committed
                    && epoch > g.epoch
                    && g.members.contains(&from)
                    && self.record.staged.is_none()
                {
                    let old = g.epoch;
                    self.record.committed = None;
                    self.own = None;
                    self.secret = None;
                    self.contributors.clear();
                    self.record.last_epoch = self.record.last_epoch.max(epoch);
                    return (
                        vec![
                            Action::Persist,
                            Action::DestroyShare { epoch: old },
                            Action::Publish,
                        ],
                        ack,
                    );
                }
                (Vec::new(), refuse(epoch, RefuseReason::WrongEpoch))
            }
        }
    }

    fn abort_received(&mut self, from: Fingerprint, epoch: u64) -> (Vec<Action>, Message) {
        let ack = Message::Ack {
            epoch,
            of: AckOf::Abort,
        };
        match &self.record.staged {
            Some(g) if g.epoch == epoch && g.coordinator == from => {
                self.record.staged = None;
                self.staged_share = None;
                (
                    vec![
                        Action::DestroyShare { epoch },
                        Action::Persist,
                        Action::Publish,
                    ],
                    ack,
                )
            }
            _ if self
                .record
                .committed
                .as_ref()
                .is_some_and(|g| g.epoch == epoch) =>
            {
                (Vec::new(), refuse(epoch, RefuseReason::State))
            }
            // Nothing of that initialization is here; its epoch is spent, so a delivery of it
            // still in flight (the coordinator died while sending it) is refused later.
            _ if epoch > self.record.last_epoch => {
                self.record.last_epoch = epoch;
                (vec![Action::Persist], ack)
            }
            _ => (Vec::new(), ack),
        }
    }

    fn share_requested(
        &mut self,
        from: Fingerprint,
        facts: Option<&PeerFacts>,
        epoch: u64,
        now: u64,
    ) -> (Vec<Action>, Message) {
        let Some(group) = &self.record.committed else {
            return (Vec::new(), refuse(epoch, RefuseReason::NoShare));
        };
        if group.epoch != epoch {
            return (Vec::new(), refuse(epoch, RefuseReason::WrongEpoch));
        }
        if from == self.us || group.index_of(&from).is_none() {
            return (Vec::new(), refuse(epoch, RefuseReason::NotMember));
        }
        let Some(facts) = facts.filter(|f| f.fingerprint == from) else {
            return (Vec::new(), refuse(epoch, RefuseReason::NotMember));
        };
        if !facts.admitted {
            return (Vec::new(), refuse(epoch, RefuseReason::NotAdmitted));
        }
        if !facts.attestation_current(now, self.settings.attestation_max_age) {
            return (
                vec![Action::Reattest(from)],
                refuse(epoch, RefuseReason::AttestationStale),
            );
        }
        match &self.own {
            Some(share) => (
                Vec::new(),
                Message::Release {
                    epoch,
                    share: share.clone(),
                },
            ),
            None => (Vec::new(), refuse(epoch, RefuseReason::NoShare)),
        }
    }

    /// Our sealed share of `epoch` was read (or could not be: `None`).
    pub fn share_loaded(&mut self, epoch: u64, share: Option<Share>) -> Vec<Action> {
        let Some(group) = &self.record.committed else {
            return Vec::new();
        };
        if group.epoch != epoch {
            return Vec::new();
        }
        let valid = share.filter(|s| {
            group.index_of(&self.us) == Some(s.index())
                && group.commitment().is_ok_and(|c| c.verify(s))
        });
        if valid.is_none() {
            return vec![Action::BadShare { from: self.us }];
        }
        self.own = valid;
        self.start_unlock()
    }

    /// Starts an unlock round: asks every other member for its share. Nothing when
    /// unlocked, without a group, or without our own share.
    pub fn start_unlock(&mut self) -> Vec<Action> {
        if self.secret.is_some() || self.own.is_none() {
            return Vec::new();
        }
        let Some(group) = &self.record.committed else {
            return Vec::new();
        };
        let epoch = group.epoch;
        self.asked = group
            .others(&self.us)
            .filter(|m| !self.received.contains_key(m))
            .collect();
        self.asked
            .iter()
            .map(|m| Action::Send {
                to: *m,
                message: Message::Request { epoch },
            })
            .collect()
    }

    fn request_answered(
        &mut self,
        from: Fingerprint,
        epoch: u64,
        answer: Option<Message>,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if !self.asked.remove(&from) || self.secret.is_some() {
            return actions;
        }
        let Some(group) = self.record.committed.clone() else {
            return actions;
        };
        if group.epoch != epoch {
            return actions;
        }
        if let Some(Message::Release { epoch: e, share }) = answer {
            let good = e == epoch
                && group.index_of(&from) == Some(share.index())
                && group.commitment().is_ok_and(|c| c.verify(&share));
            if good {
                self.received.insert(from, share);
            } else {
                actions.push(Action::BadShare { from });
            }
        }
        actions.extend(self.try_unlock(&group));
        actions
    }

    fn try_unlock(&mut self, group: &Group) -> Vec<Action> {
        let Ok(commitment) = group.commitment() else {
            return Vec::new();
        };
        let need = commitment.threshold();
        let Some(own) = &self.own else {
            return Vec::new();
        };
        let have = 1 + self.received.len();
        if have >= need {
            let mut shares = vec![own.clone()];
            let mut who = vec![self.us];
            for (fp, s) in self.received.iter().take(need - 1) {
                shares.push(s.clone());
                who.push(*fp);
            }
            if let Ok(secret) = vss::combine(&shares, &commitment) {
                self.secret = Some(secret);
                self.contributors = who;
                self.received.clear();
                self.asked.clear();
                return vec![Action::Unlocked, Action::Publish];
            }
        }
        if self.asked.is_empty() {
            return vec![Action::StillLocked { have, need }, Action::Publish];
        }
        Vec::new()
    }
}
