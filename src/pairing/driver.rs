//! The pairing driver: the one task that owns [`Pairing`] and carries out its actions.
//!
//! It receives operator commands (from D-Bus) and link events, feeds them to the pure state
//! machine, and executes what comes back: key-store work on a blocking thread, first-contact
//! probes and diallers as tasks, atomic persistence, the listener's pin set, and a new
//! [`Snapshot`] for D-Bus. Nothing else mutates pairing state.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::ServerConfig;
use rustls::pki_types::UnixTime;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::state::{
    Action, AttestationOutcome, ConnState, NameBook, Outgoing, Pairing, PeerId, Persisted, Proof,
    Reattestation, Refusal, Target, parse_request,
};
use crate::clock;
use crate::config::{Config, TrustMode};
use crate::dbus::attestation_client::{Attested, Attestor, Policy};
use crate::discovery::{self, Neighbour};
use crate::identity::cert::{ChainFiles, IdentityProblem, LoadedIdentity};
use crate::identity::{Backend, KeyStore};
use crate::identity::{Fingerprint, anchors};
use crate::link::LinkEvent;
use crate::link::client::{self, Retry};
use crate::link::server::Admission;
use crate::link::server::Sessions;
use crate::link::session::Timing;
use crate::link::tls::{self, CaptureSlot, PinSet, ServerCheck};
use crate::persist;

/// A request from the D-Bus layer.
#[derive(Debug)]
pub enum Command {
    /// `ProvisionPeer(bmc_id)`.
    Provision {
        /// The argument as given.
        bmc_id: String,
        /// Accepted, or why not.
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// `Unpair()` on a peer object.
    Unpair {
        /// Which peer.
        id: PeerId,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// `Reattest()` on a peer object.
    Reattest {
        /// Which peer.
        id: PeerId,
        /// Done (the result is on the peer object), or why not.
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
}

/// One-off events for D-Bus (signals, not state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// `PeerProvisioned(b)`.
    PeerProvisioned(bool),
}

/// What D-Bus shows of a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// Pinned identity, hex.
    pub fingerprint: String,
    /// `first-contact` or `anchored`.
    pub trust_mode: crate::config::TrustMode,
    /// Sessions it opened to us.
    pub incoming: ConnState,
    /// Our session to it.
    pub outgoing: ConnState,
    /// The higher of both.
    pub state: ConnState,
    /// Unix seconds of the last session opening, 0 if never.
    pub last_seen: u64,
    /// Another identity answered at its address since the last good session.
    pub identity_mismatch: bool,
    /// Its last attestation result.
    pub attestation: AttestationOutcome,
    /// Unix seconds of that attestation, 0 if never.
    pub attested_at: u64,
}

/// What D-Bus shows of this BMC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// `Provisioned`.
    pub provisioned: bool,
    /// `PeerConnected`.
    pub peer_connected: ConnState,
    /// Paired peers.
    pub peers: BTreeMap<PeerId, PeerView>,
}

impl Snapshot {
    fn of(p: &Pairing) -> Self {
        Snapshot {
            provisioned: p.provisioned(),
            peer_connected: p.aggregate(),
            peers: p
                .peers()
                .iter()
                .map(|(id, peer)| {
                    (
                        id.clone(),
                        PeerView {
                            name: peer.record.name.clone(),
                            address: peer.record.address.to_string(),
                            port: peer.record.port,
                            fingerprint: peer.record.fingerprint.to_hex(),
                            trust_mode: peer.record.trust_mode,
                            incoming: peer.incoming,
                            outgoing: peer.outgoing,
                            state: peer.aggregate(),
                            last_seen: peer.last_seen.unwrap_or(0),
                            identity_mismatch: peer.identity_mismatch,
                            attestation: peer.record.attestation,
                            attested_at: peer.record.attested_at,
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Handles the D-Bus layer holds: commands in, state and signals out.
#[derive(Clone, Debug)]
pub struct Handle {
    /// Commands to the driver.
    pub commands: mpsc::Sender<Command>,
    /// The latest state.
    pub snapshot: watch::Receiver<Snapshot>,
}

impl Handle {
    /// Sends `ProvisionPeer(bmc_id)` and waits for acceptance (not for the pairing outcome).
    ///
    /// # Errors
    /// The [`Refusal`]; `Unavailable` if the driver is gone or does not answer in time.
    ///
    /// # Cancel safety
    /// Cancel safe; the driver may still act on a request whose reply is dropped.
    pub async fn provision(&self, bmc_id: String) -> Result<(), Refusal> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::Provision { bmc_id, reply }, rx).await
    }

    /// Sends `Reattest()` for `id` and waits for the result to be recorded.
    ///
    /// # Errors
    /// As [`Handle::provision`].
    ///
    /// # Cancel safety
    /// As [`Handle::provision`].
    pub async fn reattest(&self, id: PeerId) -> Result<(), Refusal> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::Reattest { id, reply }, rx).await
    }

    /// Sends `Unpair()` for `id`.
    ///
    /// # Errors
    /// As [`Handle::provision`].
    ///
    /// # Cancel safety
    /// As [`Handle::provision`].
    pub async fn unpair(&self, id: PeerId) -> Result<(), Refusal> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::Unpair { id, reply }, rx).await
    }

    async fn request(
        &self,
        cmd: Command,
        rx: oneshot::Receiver<Result<(), Refusal>>,
    ) -> Result<(), Refusal> {
        let gone = || Refusal::Unavailable("the pairing driver is not running".into());
        self.commands.send(cmd).await.map_err(|_| gone())?;
        // Identity creation on a TPM takes a few hundred milliseconds; nothing else waits.
        tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .map_err(|_| Refusal::Unavailable("the pairing driver did not answer in time".into()))?
            .map_err(|_| gone())?
    }
}

/// What a successful pairing probe proved.
#[derive(Debug)]
struct ProbeOk {
    fingerprint: Fingerprint,
    common_name: Option<String>,
    attestation: AttestationOutcome,
}

enum Internal {
    ProbeDone(Target, Result<ProbeOk, String>),
    AdmissionChecked {
        fingerprint: Fingerprint,
        peer: SocketAddr,
        result: Result<Attested, String>,
    },
    Reattested {
        id: PeerId,
        fingerprint: Fingerprint,
        result: Result<Attested, String>,
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    IdentityChecked(Result<LoadedIdentity, IdentityProblem>),
    MoveChecked {
        id: PeerId,
        endpoint: SocketAddr,
        fingerprint: crate::identity::Fingerprint,
        refused: bool,
        ok: bool,
    },
}

struct Link {
    tag: String,
    cancel: CancellationToken,
    wake: Arc<Notify>,
}

/// Everything the driver needs from the outside.
pub struct Parts {
    /// Validated configuration.
    pub config: Arc<Config>,
    /// The key store (file or TPM).
    pub store: Arc<dyn KeyStore>,
    /// The listener's pin set (the driver writes it).
    pub pins: PinSet,
    /// The listener's sessions (the driver cuts unpinned ones).
    pub sessions: Sessions,
    /// The listener's TLS configuration (the driver publishes it when the identity changes).
    pub server_tls: watch::Sender<Option<Arc<ServerConfig>>>,
    /// Link events from listener and diallers.
    pub link_events: mpsc::UnboundedReceiver<LinkEvent>,
    /// Where diallers send their events.
    pub link_events_tx: mpsc::UnboundedSender<LinkEvent>,
    /// Neighbour events from the discovery sources.
    pub discovery: mpsc::Receiver<discovery::Event>,
    /// The attestation service (`None` with `"attestation": "off"`).
    pub attestor: Option<Attestor>,
    /// Admission requests from the listener (anchored mode).
    pub admissions: mpsc::Receiver<Admission>,
    /// Signals for D-Bus.
    pub notices: mpsc::UnboundedSender<Notice>,
    /// Task tracker for everything the driver spawns.
    pub tracker: TaskTracker,
    /// Shutdown.
    pub cancel: CancellationToken,
}

/// The path of the state file.
pub fn state_path(config: &Config) -> PathBuf {
    config.state_dir.join("state.json")
}

/// Loads `state.json`. A corrupt file is moved aside (kept for inspection) and the daemon
/// starts unprovisioned rather than crash-looping.
pub fn load_state(config: &Config) -> Persisted {
    let path = state_path(config);
    match persist::load_json::<Persisted>(&path) {
        Ok(Some(p)) => p,
        Ok(None) => Persisted::default(),
        Err(e) => {
            let aside = path.with_extension(format!(
                "corrupt-{}",
                clock::unix_secs(std::time::SystemTime::now())
            ));
            tracing::error!(error = %e, moved_to = %aside.display(), "state file unusable; starting unpaired");
            let _ = std::fs::rename(&path, &aside);
            Persisted::default()
        }
    }
}

/// The driver.
pub struct Driver {
    config: Arc<Config>,
    store: Arc<dyn KeyStore>,
    chain: ChainFiles,
    pairing: Pairing,
    identity: Option<LoadedIdentity>,
    pins: PinSet,
    sessions: Sessions,
    server_tls: watch::Sender<Option<Arc<ServerConfig>>>,
    snapshot: watch::Sender<Snapshot>,
    notices: mpsc::UnboundedSender<Notice>,
    link_events: mpsc::UnboundedReceiver<LinkEvent>,
    link_events_tx: mpsc::UnboundedSender<LinkEvent>,
    discovery: mpsc::Receiver<discovery::Event>,
    attestor: Option<Attestor>,
    admissions: mpsc::Receiver<Admission>,
    admitting: HashMap<Fingerprint, Vec<oneshot::Sender<bool>>>,
    anchors: Vec<Vec<u8>>,
    neighbours: BTreeMap<(String, String), Neighbour>,
    links: HashMap<PeerId, Link>,
    link_generation: u64,
    identity_check_running: bool,
    internal_tx: mpsc::UnboundedSender<Internal>,
    internal_rx: mpsc::UnboundedReceiver<Internal>,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

impl Driver {
    /// Restores state, loads the identity (blocking: call from a blocking context or at
    /// start-up) and returns the driver plus the handle for D-Bus.
    pub fn new(parts: Parts) -> (Driver, Handle, mpsc::Receiver<Command>) {
        let chain = ChainFiles::new(parts.config.cert_dir());
        let persisted = load_state(&parts.config);
        let identity = match chain.load(parts.store.as_ref()) {
            Ok(id) => Some(id),
            Err(IdentityProblem::Absent) => {
                tracing::info!("no identity yet; ProvisionPeer(\"self\") creates one");
                None
            }
            Err(IdentityProblem::Invalid(why)) => {
                tracing::error!(reason = %why, "identity is invalid; Provisioned is false until ProvisionPeer(\"self\") re-creates it");
                None
            }
            Err(IdentityProblem::Unavailable(why)) => {
                tracing::error!(reason = %why, "key store unavailable at start-up; Provisioned is false until it answers");
                None
            }
        };
        let (pairing, actions) = Pairing::restore(
            persisted,
            identity.as_ref().map(LoadedIdentity::fingerprint),
            parts.config.trust_mode,
        );
        let (snapshot, snapshot_rx) = watch::channel(Snapshot::of(&pairing));
        let (commands_tx, commands_rx) = mpsc::channel(16);
        let (internal_tx, internal_rx) = mpsc::unbounded_channel();
        let mut driver = Driver {
            chain,
            pairing,
            identity,
            store: parts.store,
            config: parts.config,
            pins: parts.pins,
            sessions: parts.sessions,
            server_tls: parts.server_tls,
            snapshot,
            notices: parts.notices,
            link_events: parts.link_events,
            link_events_tx: parts.link_events_tx,
            discovery: parts.discovery,
            attestor: parts.attestor,
            admissions: parts.admissions,
            admitting: HashMap::new(),
            anchors: Vec::new(),
            neighbours: BTreeMap::new(),
            links: HashMap::new(),
            link_generation: 0,
            identity_check_running: false,
            internal_tx,
            internal_rx,
            tracker: parts.tracker,
            cancel: parts.cancel,
        };
        driver.anchors = driver.load_anchors();
        driver.install_server_tls();
        driver.observe_time();
        driver.execute(actions);
        let handle = Handle {
            commands: commands_tx,
            snapshot: snapshot_rx,
        };
        (driver, handle, commands_rx)
    }

    fn floor(&self) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(
            self.pairing.time_floor().max(clock::build_epoch()),
        ))
    }

    fn unix_now(&self) -> u64 {
        clock::unix_secs(clock::floored_now(self.pairing.time_floor()))
    }

    fn observe_time(&mut self) {
        let now = clock::unix_secs(std::time::SystemTime::now());
        // Only a clock past the build time is believed; the floor then follows it.
        if now >= clock::build_epoch() && self.pairing.observe_time(now) {
            self.persist();
        }
    }

    /// Where a neighbour's pairing channel is: its preferred address and its port (LLDP does
    /// not carry a port; peers are assumed to listen on ours).
    fn endpoint_of(&self, n: &Neighbour) -> Option<SocketAddr> {
        n.preferred_address()
            .map(|ip| SocketAddr::new(ip, n.port.unwrap_or(self.config.port)))
    }

    fn name_book(&self) -> NameBook {
        let mut book = NameBook {
            interface: self.config.interface_id.clone(),
            ..NameBook::default()
        };
        for n in self.neighbours.values() {
            let (Some(name), Some(endpoint)) = (n.system_name.as_ref(), self.endpoint_of(n)) else {
                continue;
            };
            book.names.entry(name.clone()).or_insert(endpoint);
            if n.interface == self.config.interface_id {
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

    fn target(&self, addr: SocketAddr) -> client::Target {
        client::Target {
            addr,
            device: self.device(),
            source: self.config.listen_address,
        }
    }

    fn device(&self) -> Option<String> {
        self.config
            .bind_to_interface
            .then(|| self.config.interface_id.clone())
    }

    fn timing(&self) -> Timing {
        Timing {
            open_timeout: self.config.handshake_timeout,
            heartbeat_interval: self.config.heartbeat_interval,
            heartbeat_timeout: self.config.heartbeat_timeout,
        }
    }

    /// Runs until shutdown.
    ///
    /// # Cancel safety
    /// Runs until the cancellation token fires; every spawned task stops with it.
    pub async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        let mut check = tokio::time::interval(self.config.identity_check_interval);
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.tick().await;
        loop {
            tokio::select! {
                () = self.cancel.cancelled() => break,
                Some(cmd) = commands.recv() => self.command(cmd).await,
                Some(ev) = self.link_events.recv() => self.link_event(ev),
                Some(done) = self.internal_rx.recv() => self.internal(done),
                Some(event) = self.discovery.recv() => self.discovery_event(event),
                Some(admission) = self.admissions.recv() => self.admission(admission),
                _ = check.tick() => self.check_identity(),
            }
        }
        for link in self.links.values() {
            link.cancel.cancel();
        }
    }

    async fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Provision { bmc_id, reply } => {
                let parsed = parse_request(&bmc_id, self.config.port, &self.name_book());
                let result = match parsed.and_then(|req| self.pairing.provision(&req)) {
                    Ok(actions) => {
                        if actions.contains(&Action::EnsureIdentity) {
                            self.ensure_identity().await
                        } else {
                            tracing::info!(target = %bmc_id, "pairing requested");
                            self.execute(actions);
                            Ok(())
                        }
                    }
                    Err(refusal) => {
                        tracing::info!(target = %bmc_id, reason = %refusal, "ProvisionPeer refused");
                        Err(refusal)
                    }
                };
                let _ = reply.send(result);
            }
            Command::Reattest { id, reply } => self.reattest(id, reply),
            Command::Unpair { id, reply } => {
                let result = self.pairing.unpair(&id).map(|actions| {
                    tracing::info!(peer = %id, "unpaired");
                    self.execute(actions);
                });
                let _ = reply.send(result);
            }
        }
    }

    async fn ensure_identity(&mut self) -> Result<(), Refusal> {
        let store = self.store.clone();
        let chain = self.chain.clone();
        let name = self.config.bmc_name.clone();
        let now = clock::floored_now(self.pairing.time_floor());
        let outcome = tokio::task::spawn_blocking(move || match chain.load(store.as_ref()) {
            Ok(id) => chain.renew_if_due(store.as_ref(), id, &name, now).map(|id| (id, false)),
            // Never replace an identity just because the TPM is slow to answer.
            Err(IdentityProblem::Unavailable(why)) => Err(crate::identity::Error::Tpm(why)),
            Err(problem) => {
                if let IdentityProblem::Invalid(why) = &problem {
                    tracing::warn!(reason = %why, "re-creating the invalid identity; peers must pair again");
                }
                chain.create(store.as_ref(), &name, now).map(|id| (id, true))
            }
        })
        .await;
        match outcome {
            Ok(Ok((identity, created))) => {
                if created {
                    tracing::info!(fingerprint = %identity.fingerprint(), backend = %self.store.backend(), "identity created");
                }
                let fp = identity.fingerprint();
                self.identity = Some(identity);
                self.install_server_tls();
                // A new key makes every existing session stale.
                if created {
                    self.sessions.cancel_unless(|_| false);
                }
                let actions = self.pairing.identity_ready(fp);
                self.execute(actions);
                Ok(())
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "cannot create the identity");
                let actions = self.pairing.identity_failed();
                self.execute(actions);
                Err(Refusal::Unavailable(format!(
                    "cannot create the identity: {e}"
                )))
            }
            Err(e) => Err(Refusal::Unavailable(format!("identity task failed: {e}"))),
        }
    }

    /// Starts a test signature with the identity keys on a blocking thread; the verdict comes
    /// back as an internal event, so a hung TPM never stalls the driver.
    fn check_identity(&mut self) {
        self.observe_time();
        if self.identity.is_none() || self.identity_check_running {
            return;
        }
        self.identity_check_running = true;
        let store = self.store.clone();
        let chain = self.chain.clone();
        let tx = self.internal_tx.clone();
        self.tracker.spawn(async move {
            let result = tokio::task::spawn_blocking(move || chain.load(store.as_ref()))
                .await
                .unwrap_or_else(|e| Err(IdentityProblem::Unavailable(e.to_string())));
            let _ = tx.send(Internal::IdentityChecked(result));
        });
    }

    fn identity_checked(&mut self, result: Result<LoadedIdentity, IdentityProblem>) {
        self.identity_check_running = false;
        let anchors = self.load_anchors();
        if anchors != self.anchors {
            tracing::info!(count = anchors.len(), "trust store changed");
            self.anchors = anchors;
            self.install_server_tls();
        }
        match result {
            // Same key, new certificates (a manufacturing CA certificate was installed, or the
            // leaf renewed): present them from now on. Pins are unaffected.
            Ok(loaded) => {
                let changed = self.identity.as_ref().is_some_and(|current| {
                    current.fingerprint() == loaded.fingerprint()
                        && (current.ca_der != loaded.ca_der || current.leaf_der != loaded.leaf_der)
                });
                if changed {
                    tracing::info!("identity certificates changed on disk; using them");
                    self.identity = Some(loaded);
                    self.install_server_tls();
                    if self.pairing.provisioned() {
                        let restart: Vec<Action> = self
                            .pairing
                            .peers()
                            .values()
                            .map(|p| Action::StartLink {
                                id: p.record.id.clone(),
                                endpoint: p.record.endpoint(),
                                fingerprint: p.record.fingerprint,
                            })
                            .collect();
                        self.execute(restart);
                    }
                }
            }
            // A hung or restarting TPM is not a lost key: keep the state, check again later.
            Err(IdentityProblem::Unavailable(why)) => {
                tracing::warn!(reason = %why, "key store did not answer the identity check");
            }
            // `ensure_identity` may have replaced the identity while this check ran.
            Err(_) if self.identity.is_none() => {}
            Err(problem) => {
                tracing::error!(reason = %problem, backend = %self.store.backend(), "identity lost; Provisioned is now false");
                self.identity = None;
                self.install_server_tls();
                self.sessions.cancel_unless(|_| false);
                let actions = self.pairing.identity_lost();
                self.execute(actions);
            }
        }
    }

    /// The trust store, in anchored mode (in first-contact mode no anchor admits anyone).
    fn load_anchors(&self) -> Vec<Vec<u8>> {
        match self.config.trust_mode {
            TrustMode::Anchored => anchors::load(&self.config.cert_dir()),
            TrustMode::FirstContact => Vec::new(),
        }
    }

    fn install_server_tls(&mut self) {
        let config = self.identity.as_ref().and_then(|id| {
            tls::server_config(
                id,
                self.store.clone(),
                self.pins.clone(),
                self.floor(),
                self.anchors.clone(),
            )
            .map_err(|e| tracing::error!(error = %e, "cannot build the TLS server configuration"))
            .ok()
        });
        self.server_tls.send_replace(config);
    }

    fn link_event(&mut self, ev: LinkEvent) {
        let now = self.unix_now();
        let actions = match ev {
            LinkEvent::IncomingUp {
                fingerprint, name, ..
            } => {
                tracing::info!(peer = %fingerprint, name = ?name, "incoming session up");
                self.pairing.incoming_up(&fingerprint, now)
            }
            LinkEvent::IncomingDown { fingerprint, .. } => self.pairing.incoming_down(&fingerprint),
            LinkEvent::OutgoingAttempt { tag } => self.outgoing(&tag, Outgoing::Attempt, now),
            LinkEvent::OutgoingUp { tag } => self.outgoing(&tag, Outgoing::Up, now),
            LinkEvent::OutgoingDown { tag } => self.outgoing(&tag, Outgoing::Down, now),
            LinkEvent::OutgoingRefused { tag, presented } => match self.link_peer(&tag) {
                Some(id) => {
                    tracing::warn!(peer = %id, %presented, "refused another identity at the peer's address; pins unchanged");
                    self.pairing.outgoing_refused(&id)
                }
                None => Vec::new(),
            },
        };
        self.execute(actions);
    }

    fn outgoing(&mut self, tag: &str, event: Outgoing, now: u64) -> Vec<Action> {
        // Events from a dialler that was since replaced carry a stale tag and are dropped.
        let Some(id) = self.link_peer(tag) else {
            return Vec::new();
        };
        if event == Outgoing::Up {
            tracing::info!(peer = %id, "outgoing session up");
        }
        self.pairing.outgoing(&id, event, now)
    }

    fn link_peer(&self, tag: &str) -> Option<PeerId> {
        self.links
            .iter()
            .find(|(_, l)| l.tag == tag)
            .map(|(id, _)| id.clone())
    }

    fn internal(&mut self, done: Internal) {
        match done {
            Internal::MoveChecked {
                id,
                endpoint,
                fingerprint,
                refused,
                ok,
            } => {
                let actions = if ok {
                    tracing::info!(peer = %id, %endpoint, "peer moved; its pinned identity answers at the new address");
                    self.pairing.peer_moved(&id, endpoint, fingerprint)
                } else if refused {
                    tracing::warn!(peer = %id, %endpoint, "another identity answers at the peer's advertised address; not following");
                    self.pairing.outgoing_refused(&id)
                } else {
                    Vec::new()
                };
                self.execute(actions);
            }
            Internal::ProbeDone(target, Ok(ok)) => {
                tracing::info!(target = %target.endpoint, fingerprint = %ok.fingerprint, name = ?ok.common_name,
                    attestation = ok.attestation.as_str(), "pinning the identity the named peer proved");
                let now = self.unix_now();
                let proof = Proof {
                    fingerprint: ok.fingerprint,
                    common_name: ok.common_name.as_deref(),
                    attestation: ok.attestation,
                };
                let actions = self.pairing.probe_succeeded(&target, proof, now);
                self.execute(actions);
            }
            Internal::AdmissionChecked {
                fingerprint,
                peer,
                result,
            } => self.admission_checked(fingerprint, peer, result),
            Internal::Reattested {
                id,
                fingerprint,
                result,
                reply,
            } => {
                let outcome = self.reattested(&id, fingerprint, result);
                let _ = reply.send(outcome);
            }
            Internal::IdentityChecked(result) => self.identity_checked(result),
            Internal::ProbeDone(target, Err(why)) => {
                tracing::warn!(target = %target.endpoint, reason = %why, "pairing failed");
                let actions = self.pairing.probe_failed(&target);
                self.execute(actions);
            }
        }
    }

    fn execute(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                // Only produced by `provision`, which the command handler intercepts.
                Action::EnsureIdentity => {}
                Action::Probe(target) => self.probe(target),
                Action::Persist => self.persist(),
                Action::SyncPins => {
                    let pins = self.pairing.pins();
                    self.pins.replace(pins.iter().copied());
                    self.sessions.cancel_unless(|fp| pins.contains(fp));
                }
                Action::StartLink {
                    id,
                    endpoint,
                    fingerprint,
                } => self.start_link(id, endpoint, fingerprint),
                Action::StopLink(id) => {
                    if let Some(link) = self.links.remove(&id) {
                        link.cancel.cancel();
                    }
                }
                Action::Wake(id) => {
                    if let Some(link) = self.links.get(&id) {
                        link.wake.notify_one();
                    }
                }
                Action::VerifyMove {
                    id,
                    endpoint,
                    fingerprint,
                } => self.verify_move(id, endpoint, fingerprint),
                Action::Publish => {
                    self.snapshot.send_if_modified(|s| {
                        let new = Snapshot::of(&self.pairing);
                        let changed = *s != new;
                        *s = new;
                        changed
                    });
                }
                Action::PeerProvisioned(ok) => {
                    let _ = self.notices.send(Notice::PeerProvisioned(ok));
                }
            }
        }
    }

    fn persist(&mut self) {
        let path = state_path(&self.config);
        if let Err(e) = persist::store_json(&path, &self.pairing.persisted()) {
            tracing::error!(error = %e, "cannot persist pairing state");
        }
    }

    fn policy(&self) -> Policy {
        match self.config.trust_mode {
            TrustMode::FirstContact => Policy::FirstContact,
            TrustMode::Anchored => Policy::Anchored,
        }
    }

    /// The SPDM responder of the peer at `ip`.
    fn spdm_endpoint(&self, ip: std::net::IpAddr) -> SocketAddr {
        SocketAddr::new(ip, self.config.attestation_port)
    }

    /// Pairing with an operator-named peer: attest it (unless attestation is off), then
    /// check that the TLS identity at its pairing port is the attested one.
    fn probe(&mut self, target: Target) {
        let Some(identity) = self.identity.clone() else {
            let _ = self
                .internal_tx
                .send(Internal::ProbeDone(target, Err("no identity".into())));
            return;
        };
        let store = self.store.clone();
        let floor = self.floor();
        let dial = self.target(target.endpoint);
        let deadline = self.config.handshake_timeout;
        let attestor = self.attestor.clone();
        let spdm = self.spdm_endpoint(target.endpoint.ip());
        let policy = self.policy();
        let tx = self.internal_tx.clone();
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            let work = async {
                let Some(attestor) = attestor else {
                    // "attestation": "off": the identity proven in a completed handshake.
                    let slot = CaptureSlot::new();
                    let config = tls::client_config(&identity, store, ServerCheck::Capture(slot.clone()), floor)
                        .map_err(|e| e.to_string())?;
                    let captured = client::probe(&dial, config, slot, deadline).await.map_err(|e| error_chain(&e))?;
                    return Ok(ProbeOk {
                        fingerprint: captured.fingerprint,
                        common_name: captured.common_name,
                        attestation: AttestationOutcome::NotAttested,
                    });
                };
                let attested = attestor.attest(spdm, policy).await.map_err(|e| format!("attestation of {spdm} failed: {e}"))?;
                let fingerprint = match attested.fingerprint {
                    Some(fp) if attested.trusted() => fp,
                    _ => {
                        return Err(format!(
                            "attestation of {spdm} refused the peer ({}): {}",
                            attested.outcome.as_str(),
                            attested.reason.as_deref().unwrap_or("no reason given")
                        ));
                    }
                };
                tracing::info!(%spdm, %fingerprint, outcome = attested.outcome.as_str(), "peer attested");
                // The binding: the pairing channel must present the very key SPDM attested.
                let refused = CaptureSlot::new();
                let check = ServerCheck::Pinned { expected: fingerprint, refused: refused.clone() };
                let config = tls::client_config(&identity, store, check, floor).map_err(|e| e.to_string())?;
                if let Err(e) = client::verify(&dial, config, deadline).await {
                    return Err(match refused.take() {
                        Some(other) => format!(
                            "the TLS identity at {} ({}) is not the attested identity ({fingerprint})",
                            dial.addr, other.fingerprint
                        ),
                        None => error_chain(&e),
                    });
                }
                Ok(ProbeOk {
                    fingerprint,
                    common_name: attested.common_name,
                    attestation: attested.outcome,
                })
            };
            let result = tokio::select! {
                () = cancel.cancelled() => return,
                r = work => r,
            };
            let _ = tx.send(Internal::ProbeDone(target, result));
        });
    }

    /// The listener asks to admit an unpinned client whose chain verified to a trust anchor
    /// (anchored mode): attest it first; concurrent connections of one identity share one
    /// attestation.
    fn admission(&mut self, request: Admission) {
        let Admission {
            fingerprint,
            peer,
            reply,
        } = request;
        if let Some(waiting) = self.admitting.get_mut(&fingerprint) {
            waiting.push(reply);
            return;
        }
        if self.pairing.pins().contains(&fingerprint) {
            let _ = reply.send(true);
            return;
        }
        let (Some(attestor), TrustMode::Anchored) = (self.attestor.clone(), self.config.trust_mode)
        else {
            let _ = reply.send(false);
            return;
        };
        tracing::info!(%peer, %fingerprint, "attesting an anchored peer before admitting it");
        self.admitting.insert(fingerprint, vec![reply]);
        let spdm = self.spdm_endpoint(peer.ip());
        let tx = self.internal_tx.clone();
        self.tracker.spawn(async move {
            let result = attestor
                .attest(spdm, Policy::Anchored)
                .await
                .map_err(|e| e.to_string());
            let _ = tx.send(Internal::AdmissionChecked {
                fingerprint,
                peer,
                result,
            });
        });
    }

    fn admission_checked(
        &mut self,
        fingerprint: Fingerprint,
        peer: SocketAddr,
        result: Result<Attested, String>,
    ) {
        let admitted = match result {
            Ok(att) if att.trusted() && att.fingerprint == Some(fingerprint) => {
                let now = self.unix_now();
                let proof = Proof {
                    fingerprint,
                    common_name: att.common_name.as_deref(),
                    attestation: att.outcome,
                };
                // Its pairing port is assumed to be ours (the connection came from an
                // ephemeral port); discovery corrects the address if it differs.
                let endpoint = SocketAddr::new(peer.ip(), self.config.port);
                match self.pairing.admit_incoming(endpoint, proof, now) {
                    Some(actions) => {
                        tracing::info!(%peer, %fingerprint, "anchored peer attested and pinned");
                        self.execute(actions);
                        true
                    }
                    None => false,
                }
            }
            Ok(att) => {
                tracing::warn!(%peer, %fingerprint, proven = ?att.fingerprint, outcome = att.outcome.as_str(),
                    "not admitting: attestation did not vouch for the identity presented in TLS");
                false
            }
            Err(e) => {
                tracing::warn!(%peer, %fingerprint, error = %e, "not admitting: attestation failed");
                false
            }
        };
        for waiter in self.admitting.remove(&fingerprint).unwrap_or_default() {
            let _ = waiter.send(admitted);
        }
    }

    /// `Reattest()`: attest a paired peer again against its pin.
    fn reattest(&mut self, id: PeerId, reply: oneshot::Sender<Result<(), Refusal>>) {
        let Some(peer) = self.pairing.peers().get(&id) else {
            let _ = reply.send(Err(Refusal::ResourceNotFound(format!(
                "no paired peer {id}"
            ))));
            return;
        };
        let Some(attestor) = self.attestor.clone() else {
            let _ = reply.send(Err(Refusal::NotAllowed(
                "attestation is off in the configuration".into(),
            )));
            return;
        };
        let fingerprint = peer.record.fingerprint;
        let spdm = self.spdm_endpoint(peer.record.address);
        let tx = self.internal_tx.clone();
        self.tracker.spawn(async move {
            let result = attestor
                .attest(spdm, Policy::Pinned(fingerprint))
                .await
                .map_err(|e| e.to_string());
            let _ = tx.send(Internal::Reattested {
                id,
                fingerprint,
                result,
                reply,
            });
        });
    }

    fn reattested(
        &mut self,
        id: &PeerId,
        fingerprint: Fingerprint,
        result: Result<Attested, String>,
    ) -> Result<(), Refusal> {
        let attested =
            result.map_err(|e| Refusal::Unavailable(format!("re-attestation failed: {e}")))?;
        if attested.fingerprint != Some(fingerprint) {
            // Nothing about the pinned identity was proven: no state change.
            return Err(Refusal::Unavailable(format!(
                "the peer did not prove its pinned identity ({}): {}",
                attested.outcome.as_str(),
                attested.reason.as_deref().unwrap_or("no reason given")
            )));
        }
        tracing::info!(peer = %id, outcome = attested.outcome.as_str(), "peer re-attested");
        if !attested.outcome.admits() {
            tracing::warn!(peer = %id, "re-attestation rejected the peer: quarantined until a Reattest passes");
        }
        let now = self.unix_now();
        let actions = self
            .pairing
            .reattested(id, Reattestation::Proved(attested.outcome), now);
        self.execute(actions);
        Ok(())
    }

    fn verify_move(
        &mut self,
        id: PeerId,
        endpoint: SocketAddr,
        fingerprint: crate::identity::Fingerprint,
    ) {
        let Some(identity) = self.identity.as_ref() else {
            return;
        };
        let refused = CaptureSlot::new();
        let check = ServerCheck::Pinned {
            expected: fingerprint,
            refused: refused.clone(),
        };
        let Ok(config) = tls::client_config(identity, self.store.clone(), check, self.floor())
        else {
            return;
        };
        let target = self.target(endpoint);
        let deadline = self.config.handshake_timeout;
        let tx = self.internal_tx.clone();
        let cancel = self.cancel.clone();
        self.tracker.spawn(async move {
            let ok = tokio::select! {
                () = cancel.cancelled() => return,
                r = client::verify(&target, config, deadline) => r.is_ok(),
            };
            let refused = refused.take().is_some();
            let _ = tx.send(Internal::MoveChecked {
                id,
                endpoint,
                fingerprint,
                refused,
                ok,
            });
        });
    }

    fn start_link(
        &mut self,
        id: PeerId,
        endpoint: SocketAddr,
        fingerprint: crate::identity::Fingerprint,
    ) {
        if let Some(old) = self.links.remove(&id) {
            old.cancel.cancel();
        }
        let Some(identity) = self.identity.as_ref() else {
            return;
        };
        let refused = CaptureSlot::new();
        let config = match tls::client_config(
            identity,
            self.store.clone(),
            ServerCheck::Pinned {
                expected: fingerprint,
                refused: refused.clone(),
            },
            self.floor(),
        ) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "cannot build the TLS client configuration");
                return;
            }
        };
        self.link_generation = self.link_generation.wrapping_add(1);
        let tag = format!("{id}#{}", self.link_generation);
        let cancel = self.cancel.child_token();
        let wake = Arc::new(Notify::new());
        self.tracker.spawn(client::run_outgoing(
            tag.clone(),
            self.target(endpoint),
            config,
            refused,
            self.config.bmc_name.clone(),
            self.timing(),
            Retry {
                initial: self.config.backoff_initial,
                max: self.config.backoff_max,
            },
            wake.clone(),
            self.link_events_tx.clone(),
            cancel.clone(),
        ));
        self.links.insert(id, Link { tag, cancel, wake });
    }

    /// Which backend holds the keys (for start-up logs).
    pub fn backend(&self) -> Backend {
        self.store.backend()
    }
}

/// `error: cause: cause` for the journal.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
