//! The pairing actor driven in memory, under `tokio::time::pause()`: its [`Attest`] and
//! [`Dial`] parts are fakes (a scripted attestation service and a simulated network), the
//! rest is the real actor, identity keeper (file keys in a temporary directory), state file
//! and listener pin set. No sockets, no D-Bus: seconds of backoff pass in no time.
//!
//! Covers pairing, a peer that dies and comes back, an actor restart, quarantine (which no
//! discovery report or certificate change may get around), unpair (told to the peer, and
//! heard from it), re-attestation after a peer's reboot and on the interval, and factory
//! reset.
#![cfg(test)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bmc_pairing_core::keys::Fingerprint;
use bmc_pairing_core::pairing::{
    AttestPolicy, AttestationOutcome, AttestationReport, Captured, ConnState, IdentityCheck,
    PeerId, Settings, TrustMode,
};
use bmc_pairing_manager::discovery::{self, Neighbour};
use bmc_pairing_manager::identity::cert::ChainFiles;
use bmc_pairing_manager::identity::file::FileKeyStore;
use bmc_pairing_manager::link::server::{PinnedAddresses, Sessions};
use bmc_pairing_manager::link::tls::PinSet;
use bmc_pairing_manager::link::{LinkEvent, LinkId};
use bmc_pairing_manager::pairing::actor::{self, Actor, Listener, Parts};
use bmc_pairing_manager::pairing::attest::{Attest, AttestError};
use bmc_pairing_manager::pairing::dial::{Dial, DialFailure};
use bmc_pairing_manager::pairing::handle::{Handle, Notice, Snapshot};
use bmc_pairing_manager::pairing::identity::{Keeper, KeeperParts};
use bmc_pairing_manager::pairing::reset::Reset;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

const PORT: u16 = 8090;
const SPDM_PORT: u16 = 4194;
/// Long enough for any backoff of the fake dialler and any actor reaction.
const SETTLE: Duration = Duration::from_secs(30);

fn fp(n: u8) -> Fingerprint {
    Fingerprint([n; 32])
}

fn ip(n: u8) -> IpAddr {
    IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, u16::from(n)])
}

fn endpoint(n: u8) -> SocketAddr {
    SocketAddr::new(ip(n), PORT)
}

/// A simulated network: which identity answers the pairing channel at each address, and
/// which addresses are up. Records every dial, so a test can prove one never happened.
#[derive(Default)]
struct Net {
    answers: BTreeMap<SocketAddr, Fingerprint>,
    down: BTreeSet<SocketAddr>,
    /// Every dialler started (address, pin) and every one-off check.
    dialled: Vec<SocketAddr>,
    /// Every connection attempt of a dialler.
    attempts: Vec<SocketAddr>,
    /// Addresses whose peer answers our Hello with `Bye { Unpaired }`.
    unpaired_us: BTreeSet<SocketAddr>,
}

#[derive(Clone, Default)]
struct FakeNet {
    net: Arc<Mutex<Net>>,
    changed: Arc<Notify>,
}

impl FakeNet {
    fn lock(&self) -> std::sync::MutexGuard<'_, Net> {
        self.net.lock().unwrap()
    }

    fn host(&self, at: SocketAddr, who: Fingerprint) {
        self.lock().answers.insert(at, who);
        self.changed.notify_waiters();
    }

    fn set_down(&self, at: SocketAddr, down: bool) {
        if down {
            self.lock().down.insert(at);
        } else {
            self.lock().down.remove(&at);
        }
        self.changed.notify_waiters();
    }

    fn answering(&self, at: SocketAddr) -> Option<Fingerprint> {
        let net = self.lock();
        (!net.down.contains(&at))
            .then(|| net.answers.get(&at).copied())
            .flatten()
    }

    fn dials_to(&self, at: SocketAddr) -> usize {
        self.lock().dialled.iter().filter(|a| **a == at).count()
    }

    fn attempts_to(&self, at: SocketAddr) -> usize {
        self.lock().attempts.iter().filter(|a| **a == at).count()
    }

    /// The peer at `at` unpaired us: it answers every session with `Bye { Unpaired }`.
    fn unpairs_us(&self, at: SocketAddr) {
        self.lock().unpaired_us.insert(at);
        self.changed.notify_waiters();
    }
}

/// The [`Dial`] fake: a dialler that is up while its peer answers with the pin, and retries
/// every second (or when woken) otherwise.
impl Dial for FakeNet {
    fn link(
        &self,
        link: LinkId,
        endpoint: SocketAddr,
        pin: Fingerprint,
        wake: Arc<Notify>,
        events: mpsc::UnboundedSender<LinkEvent>,
        cancel: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let net = self.clone();
        net.lock().dialled.push(endpoint);
        async move {
            loop {
                let _ = events.send(LinkEvent::OutgoingAttempt { link: link.clone() });
                net.lock().attempts.push(endpoint);
                if net.lock().unpaired_us.contains(&endpoint) {
                    // As the TLS dialler does: report, and stop.
                    let _ = events.send(LinkEvent::OutgoingDown { link: link.clone() });
                    let _ = events.send(LinkEvent::ToldUnpaired { fingerprint: pin });
                    return;
                }
                match net.answering(endpoint) {
                    Some(who) if who == pin => {
                        let _ = events.send(LinkEvent::OutgoingUp { link: link.clone() });
                        loop {
                            let changed = net.changed.notified();
                            if net.lock().unpaired_us.contains(&endpoint) {
                                // An established session ended by `Bye { Unpaired }`.
                                let _ = events.send(LinkEvent::OutgoingDown { link: link.clone() });
                                let _ = events.send(LinkEvent::ToldUnpaired { fingerprint: pin });
                                return;
                            }
                            if net.answering(endpoint) != Some(pin) {
                                break;
                            }
                            tokio::select! {
                                () = cancel.cancelled() => return,
                                () = changed => {}
                            }
                        }
                        let _ = events.send(LinkEvent::OutgoingDown { link: link.clone() });
                    }
                    Some(other) => {
                        let _ = events.send(LinkEvent::OutgoingRefused {
                            link: link.clone(),
                            presented: other,
                        });
                        let _ = events.send(LinkEvent::OutgoingDown { link: link.clone() });
                    }
                    None => {
                        let _ = events.send(LinkEvent::OutgoingDown { link: link.clone() });
                    }
                }
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }

    fn check(
        &self,
        endpoint: SocketAddr,
        expected: Fingerprint,
    ) -> impl Future<Output = IdentityCheck<DialFailure>> + Send + 'static {
        self.lock().dialled.push(endpoint);
        let result = match self.answering(endpoint) {
            Some(who) if who == expected => IdentityCheck::Answered,
            Some(other) => IdentityCheck::OtherIdentity(other),
            None => IdentityCheck::Unreached(DialFailure::NoIdentity),
        };
        async move { result }
    }

    fn capture(
        &self,
        endpoint: SocketAddr,
    ) -> impl Future<Output = Result<Captured, DialFailure>> + Send + 'static {
        self.lock().dialled.push(endpoint);
        let result = self
            .answering(endpoint)
            .map(|fingerprint| Captured {
                fingerprint,
                common_name: None,
            })
            .ok_or(DialFailure::NoIdentity);
        async move { result }
    }
}

/// The [`Attest`] fake: what each peer's SPDM responder proves, and the measurement verdict
/// this BMC's policy gives it. Records every request.
/// What a responder proves, its name, and the verdict our policy gives it.
type Responder = (Fingerprint, String, AttestationOutcome);

#[derive(Clone, Default)]
struct FakeAttestor {
    peers: Arc<Mutex<BTreeMap<IpAddr, Responder>>>,
    asked: Arc<Mutex<Vec<(SocketAddr, AttestPolicy)>>>,
}

impl FakeAttestor {
    fn responder(&self, at: IpAddr, who: Fingerprint, name: &str, outcome: AttestationOutcome) {
        self.peers
            .lock()
            .unwrap()
            .insert(at, (who, name.to_owned(), outcome));
    }
}

impl Attest for FakeAttestor {
    async fn attest(
        &self,
        address: SocketAddr,
        policy: AttestPolicy,
    ) -> Result<AttestationReport, AttestError> {
        self.asked.lock().unwrap().push((address, policy));
        assert_eq!(
            address.port(),
            SPDM_PORT,
            "attestation goes to the SPDM port"
        );
        let found = self.peers.lock().unwrap().get(&address.ip()).cloned();
        let (who, name, outcome) = found.ok_or(AttestError::Off)?;
        if let AttestPolicy::Pinned(pin) = policy
            && pin != who
        {
            return Ok(AttestationReport {
                outcome: AttestationOutcome::Rejected,
                fingerprint: None,
                common_name: None,
                reason: Some("pin mismatch".into()),
                ca_key: None,
            });
        }
        Ok(AttestationReport {
            outcome,
            fingerprint: Some(who),
            common_name: Some(name),
            reason: None,
            ca_key: None,
        })
    }
}

/// One BMC's actor with its fakes, state in `dir`.
struct Bmc {
    handle: Handle,
    notices: mpsc::UnboundedReceiver<Notice>,
    discovery: mpsc::Sender<discovery::Event>,
    pins: PinSet,
    farewells: PinSet,
    link_events: mpsc::UnboundedSender<LinkEvent>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    chain: ChainFiles,
    store: Arc<FileKeyStore>,
    events: mpsc::UnboundedReceiver<bmc_pairing_manager::events::Event>,
}

impl Bmc {
    fn start(dir: &std::path::Path, net: &FakeNet, attestor: &FakeAttestor) -> Bmc {
        Bmc::start_with(dir, net, attestor, None)
    }

    /// A BMC that re-attests its peers every `reattest_interval` seconds.
    fn start_with(
        dir: &std::path::Path,
        net: &FakeNet,
        attestor: &FakeAttestor,
        reattest_interval: Option<u64>,
    ) -> Bmc {
        let store = Arc::new(FileKeyStore::new(dir.join("keys")));
        let chain = ChainFiles::new(dir.join("certs"));
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let pins = PinSet::new();
        let farewells = PinSet::new();
        let sessions = Sessions::new();
        let (server_tls, _server_tls_rx) = watch::channel(None);
        let (credentials, _credentials_rx) = watch::channel(None);
        let (link_tx, link_rx) = mpsc::unbounded_channel();
        let (notices_tx, notices) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let (discovery_tx, discovery_rx) = mpsc::channel(16);
        let (_admission_tx, admission_rx) = mpsc::channel(16);
        let state_path = dir.join("state.json");
        let persisted = actor::load_state(&state_path);
        let keeper = Keeper::load(
            KeeperParts {
                store: store.clone(),
                chain: chain.clone(),
                bmc_name: "bmc-a".into(),
                trust_mode: TrustMode::FirstContact,
                pins: pins.clone(),
                farewells: farewells.clone(),
                sessions: sessions.clone(),
                server_tls,
                credentials,
                tracker: tracker.clone(),
            },
            persisted.time_floor,
        );
        let (actor, handle, commands) = Actor::new(Parts {
            settings: Settings {
                trust_mode: TrustMode::FirstContact,
                attestation: true,
                pairing_port: PORT,
                attestation_port: SPDM_PORT,
                reattest_interval,
            },
            persisted,
            reset: Reset {
                state_path: state_path.clone(),
                chain: chain.clone(),
                key_dir: dir.join("keys"),
            },
            state_path,
            interface: "eth1".into(),
            port: PORT,
            check_interval: Duration::from_secs(5),
            attest: Arc::new(attestor.clone()),
            dial: Arc::new(net.clone()),
            keeper,
            listener: Listener {
                pins: pins.clone(),
                farewells: farewells.clone(),
                sessions,
                pinned_addresses: PinnedAddresses::new(),
                admissions: admission_rx,
            },
            link_events: link_rx,
            link_events_tx: link_tx.clone(),
            discovery: discovery_rx,
            notices: notices_tx,
            events: bmc_pairing_manager::events::Emitter::new(events_tx, "file"),
            round_trips: bmc_pairing_manager::link::RoundTrips::new(),
            tracker: tracker.clone(),
            cancel: cancel.clone(),
            group_authority: false,
            mailboxes: bmc_pairing_manager::link::mailbox::Mailboxes::new(),
        });
        tracker.spawn(actor.run(commands));
        Bmc {
            handle,
            notices,
            discovery: discovery_tx,
            pins,
            farewells,
            link_events: link_tx,
            cancel,
            tracker,
            chain,
            store,
            events,
        }
    }

    /// The names of the events emitted so far and not yet taken.
    fn take_events(&mut self) -> Vec<bmc_pairing_manager::events::Event> {
        let mut out = Vec::new();
        while let Ok(e) = self.events.try_recv() {
            out.push(e);
        }
        out
    }

    /// Stops the actor and every task it started (a kill, as far as state goes: only what
    /// was persisted survives).
    async fn stop(self) {
        self.cancel.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    async fn wait(&self, what: &str, mut ok: impl FnMut(&Snapshot) -> bool) -> Snapshot {
        let mut rx = self.handle.snapshot.clone();
        let reached = tokio::time::timeout(SETTLE, rx.wait_for(|s| ok(s)))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|s| s.clone());
        reached.unwrap_or_else(|| panic!("{what}: not reached; last {:?}", *rx.borrow()))
    }

    async fn peer_state(&self, id: &PeerId, state: ConnState) -> Snapshot {
        self.wait(&format!("{id} {state:?}"), |s| {
            s.peers.get(id).is_some_and(|p| p.state == state)
        })
        .await
    }

    async fn next_notice(&mut self) -> Notice {
        tokio::time::timeout(SETTLE, self.notices.recv())
            .await
            .expect("a notice")
            .expect("actor running")
    }

    /// Lets everything that is due happen (timers included).
    async fn settle() {
        tokio::time::sleep(SETTLE).await;
    }
}

/// Pairs a fresh BMC with peer `n` (named `bmc-b`), which attests with `outcome`.
async fn paired(
    dir: &std::path::Path,
    net: &FakeNet,
    attestor: &FakeAttestor,
    outcome: AttestationOutcome,
) -> (Bmc, PeerId) {
    net.host(endpoint(2), fp(2));
    attestor.responder(ip(2), fp(2), "bmc-b", outcome);
    let mut bmc = Bmc::start(dir, net, attestor);
    bmc.handle.provision("self".into()).await.unwrap();
    bmc.handle.provision(endpoint(2).to_string()).await.unwrap();
    assert_eq!(bmc.next_notice().await, Notice::PeerProvisioned(true));
    let id = PeerId::from_name("bmc-b");
    bmc.peer_state(&id, ConnState::Connected).await;
    (bmc, id)
}

/// Re-attests `id` against a responder that now fails `outcome`; returns the reply.
async fn reattest_as(
    bmc: &Bmc,
    attestor: &FakeAttestor,
    id: &PeerId,
    outcome: AttestationOutcome,
) -> Result<(), bmc_pairing_core::pairing::Refusal> {
    attestor.responder(ip(2), fp(2), "bmc-b", outcome);
    bmc.handle.reattest(id.clone()).await
}

#[tokio::test(start_paused = true)]
async fn pairing_attests_binds_pins_and_connects() {
    let dir = tempfile::tempdir().unwrap();
    let (net, attestor) = (FakeNet::default(), FakeAttestor::default());
    let (bmc, id) = paired(dir.path(), &net, &attestor, AttestationOutcome::Trusted).await;
    let snap = bmc.handle.snapshot.borrow().clone();
    assert!(snap.provisioned);
    assert_eq!(snap.peer_connected, ConnState::Connected);
    let peer = &snap.peers[&id];
    assert_eq!(peer.fingerprint, fp(2).to_hex());
    assert_eq!(peer.attestation, AttestationOutcome::Trusted);
    assert!(
        bmc.pins.contains(&fp(2)),
        "the listener accepts the pinned peer"
    );
    assert_eq!(
        attestor.asked.lock().unwrap().as_slice(),
        [(
            SocketAddr::new(ip(2), SPDM_PORT),
            AttestPolicy::FirstContact
        )]
    );
    bmc.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_channel_with_another_key_than_the_attested_one_pins_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (net, attestor) = (FakeNet::default(), FakeAttestor::default());
    // SPDM proves key 2, but key 3 answers the pairing channel.
    net.host(endpoint(2), fp(3));
    attestor.responder(ip(2), fp(2), "bmc-b", AttestationOutcome::Trusted);
    let mut bmc = Bmc::start(dir.path(), &net, &attestor);
    bmc.handle.provision("self".into()).await.unwrap();
    bmc.handle.provision(endpoint(2).to_string()).await.unwrap();
    assert_eq!(bmc.next_notice().await, Notice::PeerProvisioned(false));
    assert!(bmc.handle.snapshot.borrow().peers.is_empty());
    assert!(!bmc.pins.contains(&fp(2)) && !bmc.pins.contains(&fp(3)));
    bmc.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_dies_is_reconnected_and_a_restart_resumes_without_provisioning() {
    let dir = tempfile::tempdir().unwrap();
    let (net, attestor) = (FakeNet::default(), FakeAttestor::default());
    let (bmc, id) = paired(dir.path(), &net, &attestor, AttestationOutcome::Trusted).await;

    net.set_down(endpoint(2), true);
    bmc.peer_state(&id, ConnState::NotConnected).await;
    net.set_down(endpoint(2), false);
    bmc.peer_state(&id, ConnState::Connected).await;

    // Our daemon restarts: the persisted pin is dialled again, nothing is attested again.
    bmc.stop().await;
    let asked = attestor.asked.lock().unwrap().len();
    let again = Bmc::start(dir.path(), &net, &attestor);
    let snap = again.peer_state(&id, ConnState::Connected).await;
    assert!(snap.provisioned);
    assert_eq!(attestor.asked.lock().unwrap().len(), asked);
    again.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_quarantined_peer_is_never_dialled_until_a_reattestation_passes() {
    let dir = tempfile::tempdir().unwrap();
    let (net, attestor) = (FakeNet::default(), FakeAttestor::default());
    let (bmc, id) = paired(dir.path(), &net, &attestor, AttestationOutcome::Trusted).await;

    reattest_as(&bmc, &attestor, &id, AttestationOutcome::Rejected)
        .await
        .unwrap();
    let snap = bmc.peer_state(&id, ConnState::NotConnected).await;
    assert_eq!(snap.peers[&id].attestation, AttestationOutcome::Rejected);
    assert!(!bmc.pins.contains(&fp(2)), "not accepted while quarantined");
    Bmc::settle().await;
    let dials = net.dials_to(endpoint(2));

    // Discovery reports it at a new address where its pinned identity answers.
    let moved = SocketAddr::new(ip(9), PORT);
    net.host(moved, fp(2));
    bmc.discovery
        .send(discovery::Event::Seen(Neighbour {
            interface: "eth1".into(),
            chassis_id: "b".into(),
            system_name: Some("bmc-b".into()),
            addresses: vec![ip(9)],
            port: None,
        }))
        .await
        .unwrap();
    // Our certificates change (the leaf is re-issued for the same key).
    let loaded = bmc.chain.load(bmc.store.as_ref()).unwrap();
    let renew_at = loaded.leaf_not_after - Duration::from_secs(24 * 3600);
    bmc.chain
        .renew_if_due(bmc.store.as_ref(), loaded, "bmc-a", renew_at)
        .unwrap();
    Bmc::settle().await;
    assert_eq!(
        net.dials_to(endpoint(2)),
        dials,
        "dialled at its old address"
    );
    assert_eq!(net.dials_to(moved), 0, "dialled at its new address");
    let snap = bmc.handle.snapshot.borrow().clone();
    assert_eq!(snap.peers[&id].state, ConnState::NotConnected);

    // A restart keeps the quarantine.
    bmc.stop().await;
    let bmc = Bmc::start(dir.path(), &net, &attestor);
    Bmc::settle().await;
    assert_eq!(net.dials_to(endpoint(2)), dials);
    assert!(!bmc.pins.contains(&fp(2)));

    // A pass lifts it.
    reattest_as(&bmc, &attestor, &id, AttestationOutcome::Trusted)
        .await
        .unwrap();
    bmc.peer_state(&id, ConnState::Connected).await;
    assert!(bmc.pins.contains(&fp(2)));
    bmc.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_reattestation_that_proves_nothing_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (net, attestor) = (FakeNet::default(), FakeAttestor::default());
    let (bmc, id) = paired(dir.path(), &net, &attestor, AttestationOutcome::Trusted).await;
    attestor.peers.lock().unwrap().clear();
    assert!(bmc.handle.reattest(id.clone()).await.is_err());
    // Another identity at its SPDM port.
    attestor.responder(ip(2), fp(7), "impostor", AttestationOutcome::Trusted);
    assert!(bmc.handle.reattest(id.clone()).await.is_err());
    let snap = bmc.peer_state(&id, ConnState::Connected).await;
    assert_eq!(snap.peers[&id].attestation, AttestationOutcome::Trusted);
    bmc.stop().await;
}

#[tokio::test(start_paused = true)]
async fn unpair_forgets_the_peer_and_stops_dialling_it() {
    let dir = tempfile::tempdir().unwrap();
    let (net, attestor) = (FakeNet::default(), FakeAttestor::default());
    let (bmc, id) = paired(dir.path(), &net, &attestor, AttestationOutcome::Trusted).await;
    bmc.handle.unpair(id.clone()).await.unwrap();
    bmc.wait("peer gone", |s| s.peers.is_empty()).await;
    assert!(!bmc.pins.contains(&fp(2)));
    let dials = net.dials_to(endpoint(2));
    net.set_down(endpoint(2), true);
    net.set_down(endpoint(2), false);
    Bmc::settle().await;
    assert_eq!(net.dials_to(endpoint(2)), dials);
    assert!(bmc.handle.unpair(id.clone()).await.is_err(), "already gone");
    // And it stays forgotten across a restart.
    bmc.stop().await;
    let bmc = Bmc::start(dir.path(), &net, &attestor);
    Bmc::settle().await;
    assert!(bmc.handle.snapshot.borrow().peers.is_empty());
    assert_eq!(net.dials_to(endpoint(2)), dials);
    bmc.stop().await;
}

/// What `paired` leaves: the peer at `endpoint(2)`, key 2.
fn incoming_from_b(boot_id: u64) -> LinkEvent {
    LinkEvent::IncomingUp {
        session: boot_id,
        fingerprint: fp(2),
        name: Some("bmc-b".into()),
        boot_id,
    }
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_unpaired_us_is_marked_and_no_longer_dialled() {
    let dir = tempfile::tempdir().unwrap();
    let (net, attestor) = (FakeNet::default(), FakeAttestor::default());
    let (bmc, id) = paired(dir.path(), &net, &attestor, AttestationOutcome::Trusted).await;
    // Its operator unpairs us: its side ends our session with Bye { Unpaired }.
    net.unpairs_us(endpoint(2));
    let snap = bmc
        .wait("marked unpaired by the peer", |s| {
            s.peers.get(&id).is_some_and(|p| p.unpaired_by_peer)
        })
        .await;
    assert_eq!(snap.peers[&id].fingerprint, fp(2).to_hex(), "pin kept");
    assert!(!bmc.pins.contains(&fp(2)), "not accepted any more");
    let attempts = net.attempts_to(endpoint(2));
    net.set_down(endpoint(2), true);
    net.set_down(endpoint(2), false);
    Bmc::settle().await;
    assert_eq!(net.attempts_to(endpoint(2)), attempts, "dialled again");
    // Across a restart too.
    bmc.stop().await;
    let bmc = Bmc::start(dir.path(), &net, &attestor);
    Bmc::settle().await;
    assert!(bmc.handle.snapshot.borrow().peers[&id].unpaired_by_peer);
    assert_eq!(net.attempts_to(endpoint(2)), attempts);
    // Its operator and ours pair again: a new ProvisionPeer clears the mark.
    net.lock().unpaired_us.clear();
    bmc.handle.provision(endpoint(2).to_string()).await.unwrap();
    let snap = bmc.peer_state(&id, ConnState::Connected).await;
    assert!(!snap.peers[&id].unpaired_by_peer);
    bmc.stop().await;
}

#[tokio::test(start_paused = true)]
async fn an_unpaired_peer_is_owed_a_goodbye_until_one_of_its_sessions_got_it() {
    let dir = tempfile::tempdir().unwrap();
    let (net, attestor) = (FakeNet::default(), FakeAttestor::default());
    let (bmc, id) = paired(dir.path(), &net, &attestor, AttestationOutcome::Trusted).await;
    // Unreachable when we unpair it.
    net.set_down(endpoint(2), true);
    bmc.handle.unpair(id.clone()).await.unwrap();
    bmc.wait("peer gone", |s| s.peers.is_empty()).await;
    assert!(
        bmc.farewells.contains(&fp(2)),
        "the listener lets it in to be told"
    );
    assert!(!bmc.pins.contains(&fp(2)), "but opens no session for it");
    // Still owed after a restart.
    bmc.stop().await;
    let bmc = Bmc::start(dir.path(), &net, &attestor);
    Bmc::settle().await;
    assert!(bmc.farewells.contains(&fp(2)));
    // Its next session is answered with the goodbye (the listener reports it).
    bmc.link_events
        .send(LinkEvent::FarewellDelivered { fingerprint: fp(2) })
        .unwrap();
    Bmc::settle().await;
    assert!(!bmc.farewells.contains(&fp(2)), "told once");
    bmc.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_peer_back_from_a_reboot_with_other_measurements_is_quarantined_under_enforce() {
    let dir = tempfile::tempdir().unwrap();
    let (net, attestor) = (FakeNet::default(), FakeAttestor::default());
    let (bmc, id) = paired(dir.path(), &net, &attestor, AttestationOutcome::Trusted).await;
    let asked = || attestor.asked.lock().unwrap().len();
    let before = asked();
    bmc.link_events.send(incoming_from_b(11)).unwrap();
    Bmc::settle().await;
    assert_eq!(asked(), before, "the first boot id seen is only recorded");
    // Reflashed and rebooted: new boot id, measurements our Enforce policy rejects.
    attestor.responder(ip(2), fp(2), "bmc-b", AttestationOutcome::Rejected);
    bmc.link_events.send(incoming_from_b(12)).unwrap();
    let snap = bmc
        .wait("quarantined", |s| {
            s.peers[&id].attestation == AttestationOutcome::Rejected
        })
        .await;
    assert_eq!(asked(), before + 1);
    assert_eq!(
        attestor.asked.lock().unwrap().last().unwrap().1,
        AttestPolicy::Pinned(fp(2))
    );
    assert_eq!(snap.peers[&id].outgoing, ConnState::NotConnected);
    assert!(!bmc.pins.contains(&fp(2)), "not accepted while quarantined");
    let attempts = net.attempts_to(endpoint(2));
    Bmc::settle().await;
    assert_eq!(net.attempts_to(endpoint(2)), attempts, "not dialled");
    bmc.stop().await;
}

#[tokio::test(start_paused = true)]
async fn peers_are_reattested_on_the_interval_and_audit_findings_show() {
    let dir = tempfile::tempdir().unwrap();
    let (net, attestor) = (FakeNet::default(), FakeAttestor::default());
    net.host(endpoint(2), fp(2));
    attestor.responder(ip(2), fp(2), "bmc-b", AttestationOutcome::Trusted);
    let mut bmc = Bmc::start_with(dir.path(), &net, &attestor, Some(1));
    bmc.handle.provision("self".into()).await.unwrap();
    bmc.handle.provision(endpoint(2).to_string()).await.unwrap();
    assert_eq!(bmc.next_notice().await, Notice::PeerProvisioned(true));
    let id = PeerId::from_name("bmc-b");
    // The interval is one second of the wall clock (attestation times are unix seconds).
    attestor.responder(
        ip(2),
        fp(2),
        "bmc-b",
        AttestationOutcome::TrustedWithFindings,
    );
    std::thread::sleep(Duration::from_millis(1100));
    let snap = bmc
        .wait("re-attested on the interval", |s| {
            s.peers[&id].attestation == AttestationOutcome::TrustedWithFindings
        })
        .await;
    assert_eq!(
        snap.peers[&id].state,
        ConnState::Connected,
        "Audit does not block"
    );
    bmc.stop().await;
}

#[tokio::test(start_paused = true)]
async fn factory_reset_forgets_peers_and_erases_the_identity_for_good() {
    let dir = tempfile::tempdir().unwrap();
    let (net, attestor) = (FakeNet::default(), FakeAttestor::default());
    let (bmc, _id) = paired(dir.path(), &net, &attestor, AttestationOutcome::Trusted).await;
    bmc.handle.unpair(PeerId::from_name("bmc-b")).await.unwrap();
    let (bmc, _id) = {
        bmc.stop().await;
        paired(dir.path(), &net, &attestor, AttestationOutcome::Trusted).await
    };
    std::fs::write(dir.path().join("certs/anchor-factory.pem"), b"anchor").unwrap();
    bmc.handle.factory_reset().await.unwrap();
    let snap = bmc.handle.snapshot.borrow().clone();
    assert!(!snap.provisioned);
    assert!(snap.peers.is_empty());
    assert!(!bmc.pins.contains(&fp(2)));
    assert!(matches!(
        bmc.chain.load(bmc.store.as_ref()),
        Err(bmc_pairing_manager::identity::cert::IdentityProblem::Absent)
    ));
    assert!(
        dir.path().join("certs/anchor-factory.pem").exists(),
        "anchors kept"
    );
    assert!(!dir.path().join("factory-reset.pending").exists());
    let attempts = net.attempts_to(endpoint(2));
    Bmc::settle().await;
    assert_eq!(net.attempts_to(endpoint(2)), attempts, "nobody dialled");
    // A restart shows the same clean state, and a new identity is a different one.
    bmc.stop().await;
    let bmc = Bmc::start(dir.path(), &net, &attestor);
    assert!(!bmc.handle.snapshot.borrow().provisioned);
    assert!(bmc.handle.snapshot.borrow().peers.is_empty());
    bmc.stop().await;
}

#[tokio::test(start_paused = true)]
async fn events_follow_pairing_quarantine_and_unpairing_and_health_counts_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let (net, attestor) = (FakeNet::default(), FakeAttestor::default());
    let (mut bmc, id) = paired(dir.path(), &net, &attestor, AttestationOutcome::Trusted).await;
    let names = |events: &[bmc_pairing_manager::events::Event]| {
        events.iter().map(|e| e.name).collect::<Vec<_>>()
    };
    let paired = bmc.take_events();
    assert_eq!(names(&paired), ["PeerPaired"]);
    assert_eq!(paired[0].get("PeerId"), Some("bmc_b"));
    assert_eq!(
        paired[0].get("IdentityFingerprint"),
        Some(fp(2).to_hex().as_str())
    );
    let health = bmc.handle.snapshot.borrow().peers[&id].health;
    assert!(health.handshakes >= 1, "{health:?}");
    assert_eq!(health.reconnects, 0);
    assert_ne!(health.last_state_change, 0);

    // The link drops and comes back: a reconnect, and the dials that failed meanwhile.
    net.set_down(endpoint(2), true);
    bmc.peer_state(&id, ConnState::NotConnected).await;
    Bmc::settle().await;
    net.set_down(endpoint(2), false);
    let snap = bmc.peer_state(&id, ConnState::Connected).await;
    let health = snap.peers[&id].health;
    assert_eq!(health.reconnects, 1, "{health:?}");
    assert!(health.failed_handshakes >= 1, "{health:?}");
    assert!(health.handshakes >= 2, "{health:?}");
    assert!(bmc.take_events().is_empty(), "a reconnect is no event");

    // A failed re-attestation quarantines it: both are reported.
    reattest_as(&bmc, &attestor, &id, AttestationOutcome::Rejected)
        .await
        .unwrap();
    let quarantined = bmc.take_events();
    assert_eq!(
        names(&quarantined),
        ["AttestationFailed", "PeerQuarantined"]
    );
    assert_eq!(quarantined[0].get("Purpose"), Some("Reattest"));
    assert_eq!(quarantined[0].get("Outcome"), Some("Rejected"));

    bmc.handle.unpair(id.clone()).await.unwrap();
    let unpaired = bmc.take_events();
    assert_eq!(names(&unpaired), ["PeerUnpaired"]);
    assert_eq!(unpaired[0].get("UnpairedBy"), Some("ThisBmc"));
    // No event carries key material: only ids, names, addresses and public-key hashes.
    for e in paired.iter().chain(&quarantined).chain(&unpaired) {
        for (k, v) in &e.metadata {
            assert!(
                !v.contains("PRIVATE KEY") && !v.contains("-----BEGIN"),
                "{k}={v}"
            );
        }
    }
    bmc.stop().await;
}
