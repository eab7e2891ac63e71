//! The pairing actor: the one task that owns the core's [`Pairing`] state machine. It feeds
//! it operator commands, link, discovery and admission events and the results of work it
//! ran, and executes the [`Action`]s that come back. It decides nothing: every rule is in
//! the core. Its parts each own their state: the diallers ([`Links`]), the identity
//! ([`Keeper`]), and the work in flight (attestations through [`Attest`], handshakes
//! through [`Dial`]) whose results come back on one channel.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bmc_pairing_core::pairing::{
    Action, AttestPurpose, AttestationReport, Candidate, Captured, IdentityCheck, NameBook,
    Outgoing, Pairing, PeerId, Persisted, Refusal, Settings, parse_request,
};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::attest::{Attest, AttestError};
use super::dial::{Dial, DialFailure};
use super::handle::{Command, Handle, Notice, Snapshot};
use super::health::Health;
use super::identity::{IdentityNews, Keeper};
use super::links::Links;
use super::reset::Reset;
use crate::clock;
use crate::discovery::{self, Neighbour};
use crate::events::{self, Emitter};
use crate::identity::Fingerprint;
use crate::kit::{Chained, ErrorChain};
use crate::link::LinkEvent;
use crate::link::server::{Admission, PinnedAddresses, Sessions};
use crate::link::tls::PinSet;
use crate::persist;

mod group;

/// The result of work the actor ran for the core.
enum Done {
    /// Group work (signing, joining) finished.
    Group(group::GroupDone),
    Attested {
        purpose: AttestPurpose,
        address: SocketAddr,
        result: Result<AttestationReport, AttestError>,
    },
    Binding {
        candidate: Candidate,
        check: IdentityCheck<DialFailure>,
    },
    Captured {
        candidate: Candidate,
        result: Result<Captured, DialFailure>,
    },
    Moved {
        id: PeerId,
        endpoint: SocketAddr,
        fingerprint: Fingerprint,
        check: IdentityCheck<DialFailure>,
    },
}

/// Where the actor reaches the listener.
pub struct Listener {
    /// The listener's pin set (the actor keeps it equal to the core's pins).
    pub pins: PinSet,
    /// The identities owed a goodbye (the actor keeps it equal to the core's farewells).
    pub farewells: PinSet,
    /// The listener's sessions (the actor cuts unpinned ones).
    pub sessions: Sessions,
    /// The pinned peers' addresses (precedence for TPM signatures).
    pub pinned_addresses: PinnedAddresses,
    /// Admission questions from the listener.
    pub admissions: mpsc::Receiver<Admission>,
}

/// Everything the actor needs from the daemon.
pub struct Parts<A, D> {
    /// The core's fixed rules.
    pub settings: Settings,
    /// The persisted state ([`load_state`]).
    pub persisted: Persisted,
    /// The state file.
    pub state_path: PathBuf,
    /// Where `FactoryReset.Reset()` acts.
    pub reset: Reset,
    /// The interface `"peer"` refers to; neighbours seen elsewhere are only names.
    pub interface: String,
    /// Our pairing port, assumed for neighbours (LLDP carries no port).
    pub port: u16,
    /// How often the identity is checked and the time floor advanced.
    pub check_interval: Duration,
    /// The attestation service.
    pub attest: Arc<A>,
    /// Dials peers.
    pub dial: Arc<D>,
    /// The identity keeper.
    pub keeper: Keeper,
    /// The listener.
    pub listener: Listener,
    /// Link events from the listener and the diallers.
    pub link_events: mpsc::UnboundedReceiver<LinkEvent>,
    /// Where diallers send their events.
    pub link_events_tx: mpsc::UnboundedSender<LinkEvent>,
    /// Neighbour events from the discovery sources.
    pub discovery: mpsc::Receiver<discovery::Event>,
    /// Signals for D-Bus.
    pub notices: mpsc::UnboundedSender<Notice>,
    /// Where events go ([`crate::events`]).
    pub events: Emitter,
    /// The sessions' heartbeat round trips, shown on the peer objects.
    pub round_trips: crate::link::RoundTrips,
    /// Every task the actor starts runs under it.
    pub tracker: TaskTracker,
    /// Shutdown.
    pub cancel: CancellationToken,
    /// This BMC is the group authority.
    pub group_authority: bool,
    /// Where the actor reaches running sessions with group frames.
    pub mailboxes: crate::link::mailbox::Mailboxes,
}

/// The pairing actor.
pub struct Actor<A, D> {
    pairing: Pairing,
    state_path: PathBuf,
    reset: Reset,
    reset_replies: Vec<oneshot::Sender<Result<(), String>>>,
    interface: String,
    port: u16,
    check_interval: Duration,
    attest: Arc<A>,
    dial: Arc<D>,
    keeper: Keeper,
    links: Links,
    listener: Listener,
    link_events: mpsc::UnboundedReceiver<LinkEvent>,
    discovery: mpsc::Receiver<discovery::Event>,
    neighbours: BTreeMap<(String, String), Neighbour>,
    snapshot: watch::Sender<Snapshot>,
    notices: mpsc::UnboundedSender<Notice>,
    events: Emitter,
    event_watch: events::Watch,
    health: Health,
    round_trips: crate::link::RoundTrips,
    self_replies: Vec<oneshot::Sender<Result<(), Refusal>>>,
    admission_replies: HashMap<Fingerprint, Vec<oneshot::Sender<bool>>>,
    reattest_replies: HashMap<PeerId, oneshot::Sender<Result<(), Refusal>>>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    group: group::GroupState,
}

/// Loads `state.json`. A corrupt file is moved aside (kept for inspection) and the daemon
/// starts unpaired rather than crash-looping.
pub fn load_state(path: &std::path::Path) -> Persisted {
    match persist::load_json::<Persisted>(path) {
        Ok(Some(p)) => p,
        Ok(None) => Persisted::default(),
        Err(e) => {
            let aside =
                path.with_extension(format!("corrupt-{}", clock::unix_secs(SystemTime::now())));
            tracing::error!(error = %ErrorChain(&e), moved_to = %aside.display(), "state file unusable; starting unpaired");
            let _ = std::fs::rename(path, &aside);
            Persisted::default()
        }
    }
}

impl<A: Attest, D: Dial> Actor<A, D> {
    /// Restores the state and resumes what it says (diallers of paired peers). Returns the
    /// actor, the handle for D-Bus and the receiver of its commands.
    pub fn new(parts: Parts<A, D>) -> (Self, Handle, mpsc::Receiver<Command>) {
        // The core records an identity lost while we were down (as `Provisioned` false).
        let lost_while_down = parts.persisted.provisioned && parts.keeper.fingerprint().is_none();
        let (mut pairing, mut actions) =
            Pairing::restore(parts.persisted, parts.keeper.fingerprint(), parts.settings);
        if lost_while_down {
            parts.events.key_lost();
        }
        if parts.group_authority {
            actions.extend(pairing.enable_group_authority());
        }
        let mut keeper = parts.keeper;
        keeper.set_group_member(pairing.membership().is_some());
        let identity = keeper.view(clock::floored_now(pairing.time_floor()));
        let (snapshot, snapshot_rx) = watch::channel(Snapshot::of(
            &pairing,
            identity,
            keeper.chain(),
            keeper.trust_store(),
        ));
        let (commands_tx, commands_rx) = mpsc::channel(16);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let links = Links::new(
            parts.link_events_tx,
            parts.tracker.clone(),
            parts.cancel.clone(),
        );
        let mut actor = Actor {
            pairing,
            state_path: parts.state_path,
            reset: parts.reset,
            reset_replies: Vec::new(),
            interface: parts.interface,
            port: parts.port,
            check_interval: parts.check_interval,
            attest: parts.attest,
            dial: parts.dial,
            keeper,
            links,
            listener: parts.listener,
            link_events: parts.link_events,
            discovery: parts.discovery,
            neighbours: BTreeMap::new(),
            snapshot,
            notices: parts.notices,
            events: parts.events,
            event_watch: events::Watch::default(),
            health: Health::default(),
            round_trips: parts.round_trips.clone(),
            self_replies: Vec::new(),
            admission_replies: HashMap::new(),
            reattest_replies: HashMap::new(),
            done_tx,
            done_rx,
            tracker: parts.tracker,
            cancel: parts.cancel,
            group: group::GroupState::new(parts.mailboxes),
        };
        actor.observe_time();
        actor.execute(actions);
        let handle = Handle {
            commands: commands_tx,
            snapshot: snapshot_rx,
            round_trips: parts.round_trips,
        };
        (actor, handle, commands_rx)
    }

    /// Runs until shutdown.
    ///
    /// # Cancel safety
    /// Runs until the cancellation token fires; every task it started stops with it.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut check = tokio::time::interval(self.check_interval);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.tick().await;
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => break,
                Some(cmd) = commands.recv() => self.command(cmd),
                Some(ev) = self.link_events.recv() => self.link_event(ev),
                Some(done) = self.done_rx.recv() => self.done(done),
                Some(news) = self.keeper.next() => self.identity_news(news),
                Some(event) = self.discovery.recv() => self.discovery_event(event),
                Some(admission) = self.listener.admissions.recv() => self.admission(admission),
                _ = check.tick() => {
                    self.observe_time();
                    self.keeper.check(clock::floored_now(self.pairing.time_floor()));
                    let mut actions = self.pairing.tick(self.unix_now());
                    // Expiry comes with time, not with an event.
                    actions.push(Action::Publish);
                    self.execute(actions);
                }
            }
        }
        self.links.stop_all();
    }

    fn unix_now(&self) -> u64 {
        clock::unix_secs(clock::floored_now(self.pairing.time_floor()))
    }

    fn observe_time(&mut self) {
        let now = clock::unix_secs(SystemTime::now());
        // Only a clock past the build time is believed; the floor then follows it.
        if now >= clock::build_epoch() {
            let actions = self.pairing.observe_time(now);
            self.keeper.set_floor(self.pairing.time_floor());
            self.execute(actions);
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Provision { bmc_id, reply } => {
                let book = self.name_book();
                let parsed = parse_request(&bmc_id, self.port, &book);
                match parsed.and_then(|req| self.pairing.provision(&req)) {
                    Ok(actions) if actions.contains(&Action::EnsureIdentity) => {
                        // Answered when the identity work finishes (`identity_news`).
                        self.self_replies.push(reply);
                        self.execute(actions);
                    }
                    Ok(actions) => {
                        tracing::info!(target = %bmc_id, "pairing requested");
                        self.execute(actions);
                        let _ = reply.send(Ok(()));
                    }
                    Err(refusal) => {
                        tracing::info!(target = %bmc_id, reason = %refusal, "ProvisionPeer refused");
                        let _ = reply.send(Err(refusal));
                    }
                }
            }
            Command::Reattest { id, reply } => match self.pairing.reattest(&id) {
                Ok(actions) => {
                    // Answered by the core's `ReattestDone`.
                    self.reattest_replies.insert(id, reply);
                    self.execute(actions);
                }
                Err(refusal) => {
                    let _ = reply.send(Err(refusal));
                }
            },
            Command::Unpair { id, reply } => {
                let result = self.pairing.unpair(&id).map(|actions| {
                    tracing::info!(peer = %id, "unpaired; the peer is told at its next session");
                    self.execute(actions);
                });
                let _ = reply.send(result);
            }
            Command::Certificates { request, reply } => {
                let now = clock::floored_now(self.pairing.time_floor());
                self.keeper.certificates(request, now, reply);
            }
            Command::SignCsr { csr, reply } => self.sign_csr_locally(csr, reply),
            Command::Anchors { request, reply } => {
                let now = clock::floored_now(self.pairing.time_floor());
                let result = self.keeper.anchors_request(request, now);
                let _ = reply.send(result);
                self.execute(vec![Action::Publish]);
            }
            Command::FactoryReset { reply } => {
                if !self.reset_replies.is_empty() {
                    // One erase at a time; this caller learns with the running one.
                    self.reset_replies.push(reply);
                    return;
                }
                // The commit point: from here on the old state is gone, now or at the next
                // start-up.
                if let Err(e) = self.reset.begin() {
                    tracing::error!(error = %ErrorChain(&e), "factory reset refused: cannot record it");
                    let _ = reply.send(Err(format!("{}", ErrorChain(&e))));
                    return;
                }
                tracing::warn!("factory reset: dropping every pin, peer, key and certificate");
                self.reset_replies.push(reply);
                let actions = self.pairing.factory_reset();
                self.execute(actions);
            }
        }
    }

    fn identity_news(&mut self, news: IdentityNews) {
        let actions = match news {
            IdentityNews::Ready(fp) => {
                let actions = self.pairing.identity_ready(fp);
                for reply in self.self_replies.drain(..) {
                    let _ = reply.send(Ok(()));
                }
                actions
            }
            IdentityNews::Failed(e) => {
                let text = format!("{}", ErrorChain(&e));
                for reply in self.self_replies.drain(..) {
                    let _ = reply.send(Err(Refusal::Unavailable(text.clone())));
                }
                self.pairing.identity_failed()
            }
            IdentityNews::CertificatesChanged => {
                // D-Bus shows the new certificates whether or not a link restarts.
                let mut actions = self.pairing.certificates_changed();
                if !actions.contains(&Action::Publish) {
                    actions.push(Action::Publish);
                }
                actions
            }
            IdentityNews::Lost => {
                self.events.key_lost();
                self.pairing.identity_lost()
            }
            IdentityNews::Erased(result) => {
                let result = result.map_err(|e| {
                    tracing::error!(error = %ErrorChain(&e), "factory reset not finished; the next start-up finishes it");
                    format!("{}", ErrorChain(&e))
                });
                if result.is_ok() {
                    tracing::warn!(
                        "factory reset done: unprovisioned, no peers, trust anchors kept"
                    );
                }
                for reply in self.reset_replies.drain(..) {
                    let _ = reply.send(result.clone());
                }
                vec![Action::Publish]
            }
        };
        self.execute(actions);
    }

    fn link_event(&mut self, ev: LinkEvent) {
        let now = self.unix_now();
        let actions = match ev {
            LinkEvent::IncomingUp {
                fingerprint,
                name,
                boot_id,
                ..
            } => {
                tracing::info!(peer = %fingerprint, name = ?name, "incoming session up");
                if let Some(id) = self.peer_of(&fingerprint) {
                    self.health.incoming_up(&id);
                }
                self.group_session_up(&fingerprint);
                let mut actions = self.pairing.incoming_up(&fingerprint, now);
                let booted = self.pairing.peer_booted(&fingerprint, boot_id);
                if booted.iter().any(|a| matches!(a, Action::Attest { .. })) {
                    tracing::info!(peer = %fingerprint, "the peer rebooted; re-attesting it");
                }
                actions.extend(booted);
                actions
            }
            LinkEvent::ToldUnpaired { fingerprint } => {
                let actions = self.pairing.peer_unpaired_us(&fingerprint);
                if !actions.is_empty() {
                    tracing::warn!(peer = %fingerprint, "the peer unpaired us: no longer dialled or accepted until paired anew");
                }
                actions
            }
            LinkEvent::FarewellDelivered { fingerprint } => {
                self.pairing.farewell_delivered(&fingerprint)
            }
            LinkEvent::IncomingDown { fingerprint, .. } => self.pairing.incoming_down(&fingerprint),
            LinkEvent::OutgoingAttempt { link } => self.outgoing(&link, Outgoing::Attempt, now),
            LinkEvent::OutgoingUp { link } => self.outgoing(&link, Outgoing::Up, now),
            LinkEvent::OutgoingDown { link } => self.outgoing(&link, Outgoing::Down, now),
            LinkEvent::Group { fingerprint, frame } => self.group_frame(fingerprint, frame),
            LinkEvent::OutgoingRefused { link, presented } => match self.links.current(&link) {
                Some(id) => {
                    let id = id.clone();
                    tracing::warn!(peer = %id, %presented, "refused another identity at the peer's address; pins unchanged");
                    self.pairing.outgoing_refused(&id)
                }
                None => Vec::new(),
            },
        };
        self.execute(actions);
    }

    fn outgoing(&mut self, link: &crate::link::LinkId, event: Outgoing, now: u64) -> Vec<Action> {
        // Events from a dialler that was since replaced are stale.
        let Some(id) = self.links.current(link).cloned() else {
            return Vec::new();
        };
        if event == Outgoing::Up {
            tracing::info!(peer = %id, "outgoing session up");
            if let Some(peer) = self.pairing.peers().get(&id) {
                let fingerprint = peer.record.fingerprint;
                self.group_session_up(&fingerprint);
            }
        }
        let counted = self.health.outgoing(&id, event);
        let mut actions = self.pairing.outgoing(&id, event, now);
        if counted && !actions.contains(&Action::Publish) {
            actions.push(Action::Publish);
        }
        actions
    }

    /// The paired peer whose pin is `fingerprint`.
    fn peer_of(&self, fingerprint: &Fingerprint) -> Option<PeerId> {
        self.pairing
            .peers()
            .iter()
            .find(|(_, p)| p.record.fingerprint == *fingerprint)
            .map(|(id, _)| id.clone())
    }

    /// Where a neighbour's pairing channel is: its preferred address and its port (LLDP does
    /// not carry a port; peers are assumed to listen on ours).
    fn endpoint_of(&self, n: &Neighbour) -> Option<SocketAddr> {
        n.preferred_address()
            .map(|ip| SocketAddr::new(ip, n.port.unwrap_or(self.port)))
    }

    fn name_book(&self) -> NameBook {
        let mut book = NameBook {
            interface: self.interface.clone(),
            ..NameBook::default()
        };
        for n in self.neighbours.values() {
            let (Some(name), Some(endpoint)) = (n.system_name.as_ref(), self.endpoint_of(n)) else {
                continue;
            };
            book.names.entry(name.clone()).or_insert(endpoint);
            if n.interface == self.interface {
                book.neighbours.push((name.clone(), endpoint));
            }
        }
        book
    }

    fn discovery_event(&mut self, event: discovery::Event) {
        match event {
            discovery::Event::Seen(n) => {
                let endpoint = self.endpoint_of(&n);
                tracing::debug!(interface = %n.interface, chassis = %n.chassis_id, name = ?n.system_name, endpoint = ?endpoint, "neighbour seen");
                let actions = endpoint
                    .map(|e| self.pairing.neighbour_seen(n.system_name.as_deref(), e))
                    .unwrap_or_default();
                self.neighbours
                    .insert((n.interface.clone(), n.chassis_id.clone()), n);
                self.execute(actions);
            }
            discovery::Event::Lost {
                interface,
                chassis_id,
            } => {
                tracing::debug!(%interface, chassis = %chassis_id, "neighbour lost");
                self.neighbours.remove(&(interface, chassis_id));
            }
        }
    }

    fn admission(&mut self, request: Admission) {
        let Admission {
            fingerprint,
            peer,
            reply,
        } = request;
        self.admission_replies
            .entry(fingerprint)
            .or_default()
            .push(reply);
        let actions = self.pairing.admission_requested(fingerprint, peer);
        self.execute(actions);
    }

    fn done(&mut self, done: Done) {
        let now = self.unix_now();
        let actions = match done {
            Done::Group(done) => self.group_done(done),
            Done::Attested {
                purpose,
                address,
                result,
            } => {
                match &result {
                    Ok(r) if r.outcome.vouches() => {
                        tracing::info!(?purpose, outcome = r.outcome.as_str(), fingerprint = ?r.fingerprint, "peer attested");
                    }
                    Ok(r) => {
                        let reason = r.reason.as_deref().unwrap_or("no reason given");
                        tracing::warn!(
                            ?purpose,
                            "attestation refused the peer ({}): {reason}",
                            r.outcome.as_str(),
                        );
                        self.events
                            .attestation_failed(&purpose, address, Some(r.outcome), reason);
                    }
                    Err(e) => {
                        tracing::warn!(?purpose, error = %ErrorChain(e), "attestation reached no verdict");
                        self.events.attestation_failed(
                            &purpose,
                            address,
                            None,
                            &ErrorChain(e).to_string(),
                        );
                    }
                }
                self.pairing.attested(purpose, result.map_err(Chained), now)
            }
            Done::Binding { candidate, check } => {
                match &check {
                    IdentityCheck::Answered => {}
                    IdentityCheck::OtherIdentity(other) => {
                        tracing::warn!(target = %candidate.endpoint, presented = %other, "the TLS identity is not the attested identity");
                    }
                    IdentityCheck::Unreached(e) => {
                        tracing::warn!(target = %candidate.endpoint, error = %ErrorChain(e), "the pairing channel did not answer");
                    }
                }
                self.pairing.binding_checked(&candidate, check, now)
            }
            Done::Captured { candidate, result } => {
                if let Err(e) = &result {
                    tracing::warn!(target = %candidate.endpoint, error = %ErrorChain(e), "pairing failed");
                }
                self.pairing.identity_captured(&candidate, result, now)
            }
            Done::Moved {
                id,
                endpoint,
                fingerprint,
                check,
            } => {
                match &check {
                    IdentityCheck::Answered => {
                        tracing::info!(peer = %id, %endpoint, "its pinned identity answers at a new address");
                    }
                    IdentityCheck::OtherIdentity(_) => {
                        tracing::warn!(peer = %id, %endpoint, "another identity answers at the peer's advertised address; not following");
                    }
                    IdentityCheck::Unreached(_) => {}
                }
                self.pairing.move_checked(&id, endpoint, fingerprint, check)
            }
        };
        self.execute(actions);
    }

    /// Runs `work` under the tracker (unless shut down) and reports its result.
    fn spawn_work(&self, work: impl Future<Output = Done> + Send + 'static) {
        let tx = self.done_tx.clone();
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                done = work => { let _ = tx.send(done); }
            }
        });
    }

    fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            self.execute_one(action);
        }
    }

    fn execute_one(&mut self, action: Action) {
        match action {
            Action::EnsureIdentity => {
                let now = clock::floored_now(self.pairing.time_floor());
                self.keeper.ensure(now);
            }
            Action::Attest {
                purpose,
                address,
                policy,
            } => {
                let attest = self.attest.clone();
                self.spawn_work(async move {
                    let result = attest.attest(address, policy).await;
                    Done::Attested {
                        purpose,
                        address,
                        result,
                    }
                });
            }
            Action::CheckBinding {
                candidate,
                fingerprint,
            } => {
                let check = self.dial.check(candidate.endpoint, fingerprint);
                self.spawn_work(async move {
                    Done::Binding {
                        candidate,
                        check: check.await,
                    }
                });
            }
            Action::CaptureIdentity(candidate) => {
                let capture = self.dial.capture(candidate.endpoint);
                self.spawn_work(async move {
                    Done::Captured {
                        candidate,
                        result: capture.await,
                    }
                });
            }
            Action::VerifyMove {
                id,
                endpoint,
                fingerprint,
            } => {
                let check = self.dial.check(endpoint, fingerprint);
                self.spawn_work(async move {
                    Done::Moved {
                        id,
                        endpoint,
                        fingerprint,
                        check: check.await,
                    }
                });
            }
            Action::Persist => {
                if let Err(e) = persist::store_json(&self.state_path, &self.pairing.persisted()) {
                    tracing::error!(error = %ErrorChain(&e), "cannot persist pairing state");
                }
            }
            Action::SyncPins => {
                let pins = self.pairing.pins();
                let paired: Vec<Fingerprint> = self
                    .pairing
                    .peers()
                    .values()
                    .map(|p| p.record.fingerprint)
                    .collect();
                self.round_trips.retain(|fp| paired.contains(fp));
                self.listener.pins.replace(pins.iter().copied());
                self.listener
                    .pinned_addresses
                    .replace(self.pairing.preferred_addresses());
                self.listener.farewells.replace(self.pairing.farewells());
                self.listener.sessions.cancel_unless(|fp| pins.contains(fp));
            }
            Action::StartLink {
                id,
                endpoint,
                fingerprint,
            } => self
                .links
                .start(self.dial.as_ref(), id, endpoint, fingerprint),
            Action::StopLink(id) => self.links.stop(&id),
            Action::Wake(id) => self.links.wake(&id),
            Action::Admit {
                fingerprint,
                admitted,
            } => {
                if admitted {
                    tracing::info!(%fingerprint, "anchored peer attested and pinned");
                }
                for reply in self
                    .admission_replies
                    .remove(&fingerprint)
                    .unwrap_or_default()
                {
                    let _ = reply.send(admitted);
                }
            }
            Action::ReattestDone { id, result } => {
                match &result {
                    Ok(()) => tracing::info!(peer = %id, "re-attestation recorded"),
                    Err(refusal) => {
                        tracing::warn!(peer = %id, reason = %refusal, "re-attestation changed nothing")
                    }
                }
                if let Some(reply) = self.reattest_replies.remove(&id) {
                    let _ = reply.send(result);
                }
            }
            Action::EraseIdentity => {
                self.forget_group();
                self.keeper.erase(self.reset.clone());
            }
            Action::Publish => {
                let now = clock::floored_now(self.pairing.time_floor());
                let identity = self.keeper.view(now);
                let now = clock::unix_secs(now);
                self.snapshot.send_if_modified(|s| {
                    let mut new = Snapshot::of(
                        &self.pairing,
                        identity,
                        self.keeper.chain(),
                        self.keeper.trust_store(),
                    );
                    self.health.fill(&mut new, now);
                    // Events are what changed between two published states.
                    self.events.published(s, &new, now, &mut self.event_watch);
                    let changed = *s != new;
                    *s = new;
                    changed
                });
            }
            Action::PeerProvisioned(ok) => {
                let _ = self.notices.send(Notice::PeerProvisioned(ok));
            }
            Action::PublishGroupList(list) => self.publish_group_list(list),
            Action::RequestSigning { authority } => self.request_signing(authority),
        }
    }
}
