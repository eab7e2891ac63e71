//! The trust-quorum actor: the one task that owns the core's [`Quorum`] state machine. It
//! feeds it `Initialize` calls, quorum messages from peers (through the listener) and the
//! answers to the messages it sent, and executes the [`Action`]s that come back: sealing
//! and unsealing shares ([`Vault`]), persisting `quorum.json`, sending messages over the
//! pinned channel ([`Exchange`]), delivering derived keys and running the unlocked hook.
//! It decides nothing: the facts about peers come from the pairing actor's snapshot and
//! the rules are the core's.

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bmc_pairing_core::keys::Fingerprint;
use bmc_pairing_core::pairing::{ConnState, PeerId};
use bmc_pairing_core::quorum::vss::Share;
use bmc_pairing_core::quorum::wire::{Message, RefuseReason};
use bmc_pairing_core::quorum::{
    Action, InitRefusal, PeerFacts, Persisted, Quorum, Settings, State,
};
use rand_core::OsRng;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::keys;
use super::vault::Vault;
use crate::clock;
use crate::events::Emitter;
use crate::kit::ErrorChain;
use crate::link::server::QuorumExchange;
use crate::pairing::handle::{Handle, Snapshot};
use crate::persist;

/// Sends one quorum message to a pinned peer and returns its answer.
pub trait Exchange: Send + Sync + 'static {
    /// `message` to the peer at `endpoint`, which must present `pin`; `None` if it could not
    /// be reached or did not answer.
    fn exchange(
        &self,
        endpoint: SocketAddr,
        pin: Fingerprint,
        message: Message,
    ) -> impl Future<Output = Option<Message>> + Send + 'static;
}

/// What D-Bus shows of the quorum.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumView {
    /// Its state.
    pub state: State,
    /// `k` (0 without a group).
    pub threshold: u32,
    /// Members' identity fingerprints, hex, in index order.
    pub members: Vec<String>,
    /// The group's epoch (0 without one).
    pub epoch: u64,
    /// Members whose shares rebuilt the secret at the last unlock, hex (this BMC first).
    pub contributors: Vec<String>,
}

impl Default for QuorumView {
    fn default() -> Self {
        QuorumView {
            state: State::Uninitialized,
            threshold: 0,
            members: Vec::new(),
            epoch: 0,
            contributors: Vec::new(),
        }
    }
}

/// A request from D-Bus.
#[derive(Debug)]
pub enum QuorumCommand {
    /// `Initialize(threshold)`.
    Initialize {
        /// `k`.
        threshold: u32,
        /// Started, or why nothing changed.
        reply: oneshot::Sender<Result<(), InitRefusal>>,
    },
    /// `Reshare(threshold)`.
    Reshare {
        /// `k` of the new epoch.
        threshold: u32,
        /// Started, or why nothing changed.
        reply: oneshot::Sender<Result<(), InitRefusal>>,
    },
}

/// How D-Bus reaches the quorum actor.
#[derive(Clone, Debug)]
pub struct QuorumHandle {
    /// Commands to the actor.
    pub commands: mpsc::Sender<QuorumCommand>,
    /// The latest state.
    pub view: watch::Receiver<QuorumView>,
}

impl QuorumHandle {
    /// `Initialize(threshold)`: waits until the initialization started (or was refused).
    ///
    /// # Errors
    /// The refusal; `NotAllowed` if the actor is not running.
    pub async fn initialize(&self, threshold: u32) -> Result<(), InitRefusal> {
        let (reply, answer) = oneshot::channel();
        self.ask(QuorumCommand::Initialize { threshold, reply }, answer)
            .await
    }

    /// `Reshare(threshold)`: waits until the reshare started (or was refused).
    ///
    /// # Errors
    /// As [`QuorumHandle::initialize`].
    pub async fn reshare(&self, threshold: u32) -> Result<(), InitRefusal> {
        let (reply, answer) = oneshot::channel();
        self.ask(QuorumCommand::Reshare { threshold, reply }, answer)
            .await
    }

    async fn ask(
        &self,
        command: QuorumCommand,
        answer: oneshot::Receiver<Result<(), InitRefusal>>,
    ) -> Result<(), InitRefusal> {
        let gone = || InitRefusal::NotAllowed("the trust-quorum service is not running".into());
        self.commands.send(command).await.map_err(|_| gone())?;
        tokio::time::timeout(Duration::from_secs(30), answer)
            .await
            .map_err(|_| gone())?
            .map_err(|_| gone())?
    }
}

/// The configuration of the quorum driver.
#[derive(Clone, Debug)]
pub struct QuorumConfig {
    /// The core's rules.
    pub settings: Settings,
    /// `quorum.json`.
    pub state_path: PathBuf,
    /// Where derived keys are written (a tmpfs under `/run`).
    pub keys_dir: PathBuf,
    /// One key per purpose.
    pub purposes: Vec<String>,
    /// Run when unlocked (argv); empty: nothing.
    pub unlocked_command: Vec<String>,
    /// How often a locked member asks again and owed decisions are resent.
    pub retry_interval: Duration,
    /// Test hook (debug builds only, see the config): flip a byte of every share released.
    pub tamper_releases: bool,
}

/// Everything the actor needs.
pub struct QuorumParts<X> {
    /// Configuration.
    pub config: QuorumConfig,
    /// The sealed shares; `None` (file key backend) turns the quorum off.
    pub vault: Option<Vault>,
    /// Sends messages to peers.
    pub exchange: Arc<X>,
    /// The pairing actor: facts about peers, and re-attestation.
    pub pairing: Handle,
    /// Quorum messages from the listener.
    pub incoming: mpsc::Receiver<QuorumExchange>,
    /// Where unlocked, unlock-failed and bad-share events go (`Pairing.events.yaml`).
    pub events: Emitter,
    /// Every task it starts runs under it.
    pub tracker: TaskTracker,
    /// Shutdown.
    pub cancel: CancellationToken,
}

/// The trust-quorum actor.
pub struct QuorumActor<X> {
    core: Option<Quorum>,
    config: QuorumConfig,
    vault: Option<Vault>,
    exchange: Arc<X>,
    pairing: Handle,
    incoming: mpsc::Receiver<QuorumExchange>,
    events: Emitter,
    /// The last "stays locked" count reported, so a locked member that keeps asking
    /// reports each count once, not every retry.
    locked_reported: Option<(usize, usize)>,
    answers_tx: mpsc::UnboundedSender<(Fingerprint, Message, Option<Message>)>,
    answers: mpsc::UnboundedReceiver<(Fingerprint, Message, Option<Message>)>,
    view: watch::Sender<QuorumView>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

/// Loads `quorum.json`; a corrupt file is kept aside and the member starts uninitialized.
pub fn load_state(path: &std::path::Path) -> Persisted {
    match persist::load_json::<Persisted>(path) {
        Ok(Some(p)) => p,
        Ok(None) => Persisted::default(),
        Err(e) => {
            let aside =
                path.with_extension(format!("corrupt-{}", clock::unix_secs(SystemTime::now())));
            tracing::error!(error = %ErrorChain(&e), moved_to = %aside.display(), "trust-quorum state unusable; starting uninitialized");
            let _ = std::fs::rename(path, &aside);
            Persisted::default()
        }
    }
}

fn our_fingerprint(s: &Snapshot) -> Option<Fingerprint> {
    let chain = s.chain.as_ref()?;
    crate::identity::summarize(&chain.leaf)
        .ok()
        .map(|summary| summary.public_key.fingerprint())
}

fn facts_of(s: &Snapshot) -> Vec<(PeerFacts, SocketAddr, PeerId)> {
    s.peers
        .iter()
        .filter_map(|(id, v)| {
            let fingerprint = Fingerprint::from_hex(&v.fingerprint).ok()?;
            let address = v.address.parse().ok()?;
            Some((
                PeerFacts {
                    fingerprint,
                    admitted: v.attestation.admits() && !v.unpaired_by_peer,
                    attestation_vouches: v.attestation.vouches(),
                    attested_at: v.attested_at,
                    connected: v.state == ConnState::Connected,
                },
                SocketAddr::new(address, v.port),
                id.clone(),
            ))
        })
        .collect()
}

/// Now, for attestation ages: never before the build time nor before the latest
/// attestation of any peer (those were recorded on the pairing actor's floored clock). A
/// clock at 1970 would otherwise make every attestation look current.
fn unix_now(s: &Snapshot) -> u64 {
    let latest = s.peers.values().map(|v| v.attested_at).max().unwrap_or(0);
    clock::unix_secs(clock::floored_now(latest))
}

impl<X: Exchange> QuorumActor<X> {
    /// The actor and the handle D-Bus uses.
    pub fn new(parts: QuorumParts<X>) -> (Self, QuorumHandle, mpsc::Receiver<QuorumCommand>) {
        let (commands_tx, commands) = mpsc::channel(8);
        let (view, view_rx) = watch::channel(QuorumView::default());
        let (answers_tx, answers) = mpsc::unbounded_channel();
        let actor = QuorumActor {
            core: None,
            config: parts.config,
            vault: parts.vault,
            exchange: parts.exchange,
            pairing: parts.pairing,
            incoming: parts.incoming,
            events: parts.events,
            locked_reported: None,
            answers_tx,
            answers,
            view,
            tracker: parts.tracker,
            cancel: parts.cancel,
        };
        (
            actor,
            QuorumHandle {
                commands: commands_tx,
                view: view_rx,
            },
            commands,
        )
    }

    /// Runs until shutdown.
    ///
    /// # Cancel safety
    /// Runs until the cancellation token fires.
    pub async fn run(mut self, mut commands: mpsc::Receiver<QuorumCommand>) {
        let mut snapshot = self.pairing.snapshot.clone();
        let mut retry = tokio::time::interval(self.config.retry_interval);
        retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        self.start_if_identified().await;
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => break,
                Some(cmd) = commands.recv() => self.command(cmd).await,
                Some(ex) = self.incoming.recv() => self.incoming(ex).await,
                Some((from, sent, answer)) = self.answers.recv() => {
                    if let Some(core) = self.core.as_mut() {
                        let actions = core.answered(from, &sent, answer);
                        self.execute(actions).await;
                    }
                }
                changed = snapshot.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    self.start_if_identified().await;
                }
                _ = retry.tick() => {
                    if let Some(core) = self.core.as_mut() {
                        let mut actions = core.resend_owed();
                        if core.state() == State::Locked {
                            actions.extend(core.start_unlock());
                        }
                        self.execute(actions).await;
                    }
                }
            }
        }
    }

    /// Restores the core once our identity is known (and the quorum is on); drops it (and
    /// the secret with it) when the identity goes or changes (a factory reset erases the
    /// quorum's files with the identity).
    async fn start_if_identified(&mut self) {
        if self.vault.is_none() {
            return;
        }
        let us = our_fingerprint(&self.pairing.snapshot.borrow());
        if let Some(core) = &self.core {
            if Some(core.us()) == us {
                return;
            }
            tracing::warn!(
                "our identity is gone or changed: the trust quorum leaves memory (and is read again from disk for the identity that comes)"
            );
            self.core = None;
            self.view.send_replace(QuorumView::default());
        }
        let Some(us) = us else {
            return;
        };
        let (core, actions) = Quorum::restore(
            us,
            self.config.settings,
            load_state(&self.config.state_path),
        );
        tracing::info!(
            state = core.state().as_str(),
            epoch = core.epoch(),
            "trust quorum restored"
        );
        self.core = Some(core);
        self.execute(actions).await;
    }

    async fn command(&mut self, cmd: QuorumCommand) {
        let (threshold, reply, reshare) = match cmd {
            QuorumCommand::Initialize { threshold, reply } => (threshold, reply, false),
            QuorumCommand::Reshare { threshold, reply } => (threshold, reply, true),
        };
        let what = if reshare { "Reshare" } else { "Initialize" };
        let Some(core) = self.core.as_mut() else {
            let why = if self.vault.is_none() {
                "the trust quorum needs the TPM key backend"
            } else {
                "this BMC has no identity yet"
            };
            let _ = reply.send(Err(InitRefusal::NotAllowed(why.into())));
            return;
        };
        let (peers, now) = {
            let snapshot = self.pairing.snapshot.borrow();
            let peers: Vec<PeerFacts> =
                facts_of(&snapshot).into_iter().map(|(f, _, _)| f).collect();
            (peers, unix_now(&snapshot))
        };
        let started = if reshare {
            core.reshare(threshold, &peers, now, &mut OsRng)
        } else {
            core.initialize(threshold, &peers, now, &mut OsRng)
        };
        match started {
            Ok(actions) => {
                tracing::info!(threshold, "trust-quorum {what} started");
                let _ = reply.send(Ok(()));
                self.execute(actions).await;
            }
            Err(refusal) => {
                tracing::info!(threshold, reason = %refusal, "{what} refused");
                let _ = reply.send(Err(refusal));
            }
        }
    }

    async fn incoming(&mut self, ex: QuorumExchange) {
        let QuorumExchange {
            from,
            message,
            reply,
        } = ex;
        let epoch = match &message {
            Message::Deliver(d) => d.epoch,
            Message::Ack { epoch, .. }
            | Message::Abort { epoch }
            | Message::Request { epoch }
            | Message::Release { epoch, .. }
            | Message::Commit { epoch }
            | Message::Refuse { epoch, .. } => *epoch,
        };
        let Some(core) = self.core.as_mut() else {
            let _ = reply.send(Message::Refuse {
                epoch,
                reason: RefuseReason::NoShare,
            });
            return;
        };
        let (facts, now) = {
            let snapshot = self.pairing.snapshot.borrow();
            let facts = facts_of(&snapshot)
                .into_iter()
                .map(|(f, _, _)| f)
                .find(|f| f.fingerprint == from);
            (facts, unix_now(&snapshot))
        };
        let (actions, mut answer) = core.received(from, facts.as_ref(), message, now);
        if let Message::Refuse { reason, .. } = &answer {
            tracing::info!(peer = %from, ?reason, "trust-quorum request refused");
        }
        if !self.execute(actions).await {
            answer = Message::Refuse {
                epoch,
                reason: RefuseReason::StorageFailed,
            };
        }
        if self.config.tamper_releases
            && let Message::Release { share, .. } = &mut answer
        {
            tamper(share);
        }
        let _ = reply.send(answer);
    }

    /// Executes `actions` in order; false if sealing a share failed (its rollback is done).
    async fn execute(&mut self, actions: Vec<Action>) -> bool {
        let mut todo: VecDeque<Action> = actions.into();
        let mut sealed = true;
        while let Some(action) = todo.pop_front() {
            let Some(core) = self.core.as_mut() else {
                return false;
            };
            match action {
                Action::SealShare { epoch, share } => {
                    let result = match self.vault.clone() {
                        Some(vault) => tokio::task::spawn_blocking(move || {
                            vault
                                .store(epoch, &share)
                                .map_err(|e| ErrorChain(&e).to_string())
                        })
                        .await
                        .unwrap_or_else(|_| Err("sealing panicked".into())),
                        None => Err("no vault".into()),
                    };
                    if let Err(e) = result {
                        tracing::error!(epoch, error = %e, "cannot seal the trust-quorum share");
                        sealed = false;
                        // What was queued after the seal belongs to the failed step.
                        todo.clear();
                        todo.extend(core.seal_failed(epoch));
                    }
                }
                Action::LoadShare { epoch } => {
                    let loaded = match self.vault.clone() {
                        Some(vault) => tokio::task::spawn_blocking(move || vault.load(epoch))
                            .await
                            .ok(),
                        None => None,
                    };
                    let share = match loaded {
                        Some(Ok(share)) => share,
                        Some(Err(e)) => {
                            tracing::error!(epoch, error = %ErrorChain(&e), "cannot unseal our trust-quorum share");
                            None
                        }
                        None => None,
                    };
                    let Some(core) = self.core.as_mut() else {
                        return false;
                    };
                    todo.extend(core.share_loaded(epoch, share));
                }
                Action::PruneShares { keep } => {
                    if let Some(vault) = &self.vault {
                        match vault.prune(&keep) {
                            Ok(0) => {}
                            Ok(n) => tracing::warn!(
                                removed = n,
                                "removed trust-quorum shares a crash left unrecorded"
                            ),
                            Err(e) => {
                                tracing::error!(error = %ErrorChain(&e), "cannot prune trust-quorum shares")
                            }
                        }
                    }
                }
                Action::DestroyShare { epoch } => {
                    if let Some(vault) = &self.vault
                        && let Err(e) = vault.destroy(epoch)
                    {
                        tracing::error!(epoch, error = %ErrorChain(&e), "cannot destroy a trust-quorum share");
                    }
                }
                Action::Persist => {
                    if let Err(e) = persist::store_json(&self.config.state_path, &core.persisted())
                    {
                        tracing::error!(error = %ErrorChain(&e), "cannot persist the trust-quorum state");
                    }
                }
                Action::Send { to, message } => self.send(to, message),
                Action::Reattest(fp) => self.reattest(fp),
                Action::Unlocked => {
                    self.locked_reported = None;
                    self.unlocked();
                }
                Action::StillLocked { have, need } => {
                    tracing::warn!(
                        have,
                        need,
                        "trust quorum stays locked: {have} of {need} shares"
                    );
                    if self.locked_reported != Some((have, need)) {
                        self.locked_reported = Some((have, need));
                        self.events.quorum_unlock_failed(have, need);
                    }
                }
                Action::BadShare { from } => {
                    tracing::error!(peer = %from, "a trust-quorum share does not match the commitment; refused");
                    self.events.quorum_bad_share(&from.to_hex());
                }
                Action::InitializationEnded { epoch, failure } => match failure {
                    None => {
                        tracing::info!(epoch, "trust quorum initialized: every member acknowledged")
                    }
                    Some(why) => {
                        tracing::warn!(epoch, reason = %why, "trust-quorum initialization rolled back")
                    }
                },
                Action::Publish => self.publish(),
            }
        }
        sealed
    }

    fn send(&self, to: Fingerprint, message: Message) {
        let endpoint = facts_of(&self.pairing.snapshot.borrow())
            .into_iter()
            .find(|(f, _, _)| f.fingerprint == to)
            .map(|(_, e, _)| e);
        let answers = self.answers_tx.clone();
        let Some(endpoint) = endpoint else {
            let _ = answers.send((to, message, None));
            return;
        };
        let exchange = self.exchange.exchange(endpoint, to, message.clone());
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                answer = exchange => { let _ = answers.send((to, message, answer)); }
            }
        });
    }

    fn reattest(&self, fp: Fingerprint) {
        let id = facts_of(&self.pairing.snapshot.borrow())
            .into_iter()
            .find(|(f, _, _)| f.fingerprint == fp)
            .map(|(_, _, id)| id);
        if let Some(id) = id {
            tracing::info!(peer = %id, "re-attesting a member before releasing our share");
            let pairing = self.pairing.clone();
            self.tracker.spawn(async move {
                let _ = pairing.reattest(id).await;
            });
        }
    }

    fn unlocked(&self) {
        let Some(core) = self.core.as_ref() else {
            return;
        };
        let Some(secret) = core.secret() else {
            return;
        };
        let contributors: Vec<String> = core.contributors().iter().map(|f| f.to_hex()).collect();
        tracing::info!(epoch = core.epoch(), contributors = %contributors.join(","), "trust quorum unlocked");
        self.events.quorum_unlocked(core.epoch(), &contributors);
        if let Err(e) = keys::deliver(secret, &self.config.keys_dir, &self.config.purposes) {
            tracing::error!(error = %ErrorChain(&e), "cannot write the trust-quorum keys");
            return;
        }
        let Some((program, args)) = self.config.unlocked_command.split_first() else {
            return;
        };
        let mut command = tokio::process::Command::new(program);
        command.args(args).kill_on_drop(true);
        self.tracker.spawn(async move {
            match command.status().await {
                Ok(status) if status.success() => {}
                Ok(status) => tracing::error!(%status, "the trust-quorum unlocked command failed"),
                Err(e) => tracing::error!(error = %ErrorChain(&e), "cannot run the trust-quorum unlocked command"),
            }
        });
    }

    fn publish(&self) {
        let Some(core) = self.core.as_ref() else {
            return;
        };
        let new = QuorumView {
            state: core.state(),
            threshold: u32::try_from(core.threshold()).unwrap_or(0),
            members: core.members().iter().map(|f| f.to_hex()).collect(),
            epoch: core.epoch(),
            contributors: core.contributors().iter().map(|f| f.to_hex()).collect(),
        };
        self.view.send_if_modified(|v| {
            let changed = *v != new;
            *v = new;
            changed
        });
    }
}

/// The test hook: flips the lowest bit of the share's last byte.
fn tamper(share: &mut Share) {
    let mut bytes = share.value_bytes();
    if let Some(last) = bytes.last_mut() {
        *last ^= 1;
    }
    if let Ok(bad) = Share::from_parts(share.index(), &bytes) {
        tracing::warn!("test hook: releasing a tampered share");
        *share = bad;
    }
}
