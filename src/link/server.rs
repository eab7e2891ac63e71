//! The pairing-channel listener: accepts TCP, runs the TLS handshake and the opening
//! exchange under one deadline, then the session, each in its own task.
//!
//! What an unauthenticated connection can hold is bounded:
//! - **TPM signatures.** Every accepted connection may cost a signature (TLS 1.3 signs the
//!   server's CertificateVerify before the client's certificate is seen), so each is charged
//!   to a [`SignBudget`] before the handshake starts: per source, shared, and a separate
//!   share for the addresses of pinned peers, which a flood cannot spend.
//! - **Pending handshakes.** At most `max_pending` in all and `max_pending_per_source` per
//!   source address. When full, the oldest pending handshake of the source that holds the
//!   most is dropped: flooders evict each other, not a peer with one connection. A
//!   connection leaves the pending pool as soon as its TLS handshake completed with a pinned
//!   (or anchor-verified) certificate.
//! - **Sessions.** One incoming session per pinned identity (a new one replaces the old) and
//!   at most `max_sessions` in all.
//!
//! Refusals are counted and logged as one summary line per interval, not one line each: a
//! flood must not flood the journal.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bmc_pairing_core::budget::SignBudget;

use rustls::ServerConfig;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::LinkEvent;
use super::connection::Connection;
use super::session::{self, Side, Timing};
use super::tls::PinSet;
use crate::identity::Fingerprint;
use bmc_pairing_core::link::frame::{ByeReason, Frame};
use bmc_pairing_core::quorum::wire::Message as QuorumMessage;

/// Listener settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Session timing (the opening timeout doubles as the whole handshake deadline).
    pub timing: Timing,
    /// Bound on handshakes in progress.
    pub max_pending: usize,
    /// Bound on handshakes in progress from one source address.
    pub max_pending_per_source: usize,
    /// Bound on established incoming sessions.
    pub max_sessions: usize,
    /// The TPM-signature budget every accepted connection is charged to.
    pub budget: Arc<Mutex<SignBudget>>,
    /// Addresses of pinned peers: their connections are charged to the pinned share.
    pub pinned_addresses: PinnedAddresses,
    /// The pins; a client that is not pinned (anchored mode) needs admission.
    pub pins: PinSet,
    /// Identities we unpaired and have not told yet: their next session is answered with
    /// `Bye { Unpaired }` instead of `Alive`.
    pub farewells: PinSet,
    /// Where to ask for admission of an authenticated but unpinned client; without it such a
    /// client is closed.
    pub admission: Option<mpsc::Sender<Admission>>,
    /// Where heartbeat round trips are recorded.
    pub round_trips: super::RoundTrips,
    /// Where sessions register for the actor's group frames.
    pub mailboxes: super::mailbox::Mailboxes,
    /// Where trust-quorum messages go (a connection whose first frame is one is answered
    /// once and closed, without a session); without it such a connection is closed.
    pub quorum: Option<mpsc::Sender<QuorumExchange>>,
}

/// A trust-quorum message from an authenticated peer, to be answered once.
#[derive(Debug)]
pub struct QuorumExchange {
    /// The identity it proved in the TLS handshake.
    pub from: Fingerprint,
    /// Its message.
    pub message: QuorumMessage,
    /// The answer.
    pub reply: oneshot::Sender<QuorumMessage>,
}

/// The addresses of pinned (and admitted) peers. Written by the pairing actor; read by the
/// listener to give those peers precedence for TPM signatures.
#[derive(Clone, Debug, Default)]
pub struct PinnedAddresses(Arc<RwLock<HashSet<IpAddr>>>);

impl PinnedAddresses {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the whole set.
    pub fn replace(&self, addresses: impl IntoIterator<Item = IpAddr>) {
        let mut guard = self.0.write().unwrap_or_else(|p| p.into_inner());
        *guard = addresses.into_iter().map(|a| a.to_canonical()).collect();
    }

    /// True if `address` is a pinned peer's.
    pub fn contains(&self, address: IpAddr) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&address.to_canonical())
    }
}

/// A request to admit a client that authenticated with a chain to a trust anchor but is not
/// pinned. The answer must come before the handshake deadline.
#[derive(Debug)]
pub struct Admission {
    /// The identity it proved in the TLS handshake.
    pub fingerprint: Fingerprint,
    /// Where it connected from.
    pub peer: SocketAddr,
    /// `true` to open its session.
    pub reply: oneshot::Sender<bool>,
}

/// Binds the listening socket on `port`: on `address` when one is configured, otherwise
/// dual-stack on every address; restricted to `device` when given (SO_BINDTODEVICE: only the
/// inter-BMC link, whatever addresses it has or gains later).
///
/// # Errors
/// The socket errors of the OS.
pub fn bind(address: Option<IpAddr>, port: u16, device: Option<&str>) -> io::Result<TcpListener> {
    let make = |domain: Domain, addr: SocketAddr| -> io::Result<Socket> {
        let socket = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
        if domain == Domain::IPV6 && addr.ip().is_unspecified() {
            socket.set_only_v6(false)?;
        }
        socket.set_reuse_address(true)?;
        if let Some(dev) = device {
            socket.bind_device(Some(dev.as_bytes()))?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        Ok(socket)
    };
    let socket = match address {
        Some(ip) => make(
            if ip.is_ipv4() {
                Domain::IPV4
            } else {
                Domain::IPV6
            },
            SocketAddr::new(ip, port),
        )?,
        None => match make(
            Domain::IPV6,
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)),
        ) {
            Ok(s) => s,
            // Kernels booted without IPv6 still get a listener.
            Err(e) if e.raw_os_error() == Some(97) => make(
                Domain::IPV4,
                SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)),
            )?,
            Err(e) => return Err(e),
        },
    };
    TcpListener::from_std(socket.into())
}

/// Identifies one accepted connection.
pub type SessionId = u64;

#[derive(Debug)]
struct Pending {
    id: SessionId,
    source: IpAddr,
    token: CancellationToken,
}

#[derive(Debug, Default)]
struct Registry {
    /// Handshakes whose client has not yet presented an accepted certificate, oldest first.
    pending: VecDeque<Pending>,
    established: HashMap<SessionId, (Fingerprint, CancellationToken)>,
}

impl Registry {
    /// Drops the oldest pending handshake of `source`, or of the source with the most
    /// pending handshakes when `source` is `None`.
    fn evict(&mut self, source: Option<IpAddr>) {
        let victim_source = source.or_else(|| {
            let mut counts: BTreeMap<IpAddr, usize> = BTreeMap::new();
            for p in &self.pending {
                *counts.entry(p.source).or_default() += 1;
            }
            counts.into_iter().max_by_key(|(_, n)| *n).map(|(s, _)| s)
        });
        let Some(victim_source) = victim_source else {
            return;
        };
        if let Some(at) = self.pending.iter().position(|p| p.source == victim_source)
            && let Some(victim) = self.pending.remove(at)
        {
            tracing::debug!(session = victim.id, source = %victim.source, "evicting a pending handshake");
            victim.token.cancel();
        }
    }
}

/// Live sessions and pending handshakes of the listener; the pairing actor uses it to cut
/// sessions whose pin was removed.
#[derive(Clone, Debug, Default)]
pub struct Sessions {
    inner: Arc<Mutex<Registry>>,
    next_id: Arc<AtomicU64>,
}

/// How many handshakes may be in progress, in all and per source address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingLimits {
    /// In all.
    pub total: usize,
    /// From one source address.
    pub per_source: usize,
}

impl Sessions {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a new pending handshake from `source`, evicting to stay within `limits`.
    pub fn admit(
        &self,
        source: IpAddr,
        limits: PendingLimits,
        parent: &CancellationToken,
    ) -> (SessionId, CancellationToken) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let token = parent.child_token();
        let source = source.to_canonical();
        let mut reg = self.lock();
        while reg.pending.iter().filter(|p| p.source == source).count() >= limits.per_source.max(1)
        {
            reg.evict(Some(source));
        }
        while reg.pending.len() >= limits.total.max(1) {
            reg.evict(None);
        }
        reg.pending.push_back(Pending {
            id,
            source,
            token: token.clone(),
        });
        (id, token)
    }

    /// The handshake's client presented an accepted certificate: it leaves the pending pool
    /// and can no longer be evicted by newcomers.
    pub fn authenticated(&self, id: SessionId) {
        self.lock().pending.retain(|p| p.id != id);
    }

    /// The session opened. An older session of the same identity is cut (one session per
    /// peer). Refused, and nothing recorded, when `max_sessions` other sessions are up.
    fn established(
        &self,
        id: SessionId,
        fp: Fingerprint,
        token: CancellationToken,
        max_sessions: usize,
    ) -> Result<(), TooManySessions> {
        let mut reg = self.lock();
        reg.pending.retain(|p| p.id != id);
        let older: Vec<SessionId> = reg
            .established
            .iter()
            .filter(|(_, (f, _))| *f == fp)
            .map(|(sid, _)| *sid)
            .collect();
        for sid in older {
            if let Some((_, t)) = reg.established.remove(&sid) {
                tracing::info!(session = sid, peer = %fp, "a new session of this peer replaces the old one");
                t.cancel();
            }
        }
        if reg.established.len() >= max_sessions.max(1) {
            return Err(TooManySessions(max_sessions));
        }
        reg.established.insert(id, (fp, token));
        Ok(())
    }

    fn forget(&self, id: SessionId) {
        let mut reg = self.lock();
        reg.pending.retain(|p| p.id != id);
        reg.established.remove(&id);
    }

    /// Ends every established session whose peer identity `keep` rejects.
    pub fn cancel_unless(&self, keep: impl Fn(&Fingerprint) -> bool) {
        let reg = self.lock();
        for (fp, token) in reg.established.values() {
            if !keep(fp) {
                token.cancel();
            }
        }
    }

    /// Number of handshakes in progress (for tests and diagnostics).
    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Number of established sessions (for tests and diagnostics).
    pub fn established_count(&self) -> usize {
        self.lock().established.len()
    }
}

/// `max_sessions` sessions are already up.
#[derive(Debug, thiserror::Error)]
#[error("{0} incoming sessions are up already")]
struct TooManySessions(usize);

/// Refused connections, counted by reason and logged as one line per interval.
#[derive(Debug, Default)]
struct Refusals {
    counts: BTreeMap<&'static str, u64>,
    /// The first few distinct reasons, in full.
    examples: Vec<String>,
}

/// How many distinct reasons a summary quotes.
const REFUSAL_EXAMPLES: usize = 4;

/// How often the refusal summary is logged.
const REFUSAL_SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, Default)]
struct RefusalLog(Arc<Mutex<Refusals>>);

impl RefusalLog {
    fn note(&self, kind: &'static str, why: &dyn std::fmt::Display) {
        tracing::debug!(kind, reason = %why, "incoming connection refused");
        let mut r = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *r.counts.entry(kind).or_default() += 1;
        if r.examples.len() < REFUSAL_EXAMPLES {
            let why = why.to_string();
            if !r.examples.contains(&why) {
                r.examples.push(why);
            }
        }
    }

    fn flush(&self) {
        let r = std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()));
        if r.counts.is_empty() {
            return;
        }
        let total: u64 = r.counts.values().sum();
        let by_kind: Vec<String> = r.counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
        tracing::info!(
            total,
            by_reason = %by_kind.join(", "),
            examples = %r.examples.join("; "),
            "refused incoming connections in the last {}s",
            REFUSAL_SUMMARY_INTERVAL.as_secs()
        );
    }
}

/// Accepts connections until `cancel`. TLS configuration comes from `tls`; while it holds
/// `None` (no identity yet) connections are closed at once.
///
/// # Cancel safety
/// Runs until `cancel`; dropping it stops accepting but leaves spawned sessions on
/// `tracker` (they stop on `cancel`).
pub async fn serve(
    listener: TcpListener,
    tls: watch::Receiver<Option<Arc<ServerConfig>>>,
    settings: Settings,
    sessions: Sessions,
    events: mpsc::UnboundedSender<LinkEvent>,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let listener = match crate::kit::Listener::new(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %crate::kit::ErrorChain(&e), "cannot take over the pairing listener");
            return;
        }
    };
    let mut acceptor = crate::kit::Acceptor::default();
    let refusals = RefusalLog::default();
    let mut summary = tokio::time::interval(REFUSAL_SUMMARY_INTERVAL);
    summary.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let limits = PendingLimits {
        total: settings.max_pending,
        per_source: settings.max_pending_per_source,
    };
    loop {
        let (tcp, addr) = tokio::select! {
            _ = summary.tick() => {
                refusals.flush();
                continue;
            }
            next = acceptor.next(&listener, "pairing", &cancel) => match next {
                Some(pair) => pair,
                None => {
                    refusals.flush();
                    return;
                }
            },
        };
        let Some(config) = tls.borrow().clone() else {
            tracing::debug!(%addr, "no identity yet; closing incoming connection");
            continue;
        };
        let source = addr.ip().to_canonical();
        let pinned = settings.pinned_addresses.contains(source);
        let charged = settings
            .budget
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .allow(source, pinned, Instant::now());
        if let Err(why) = charged {
            refusals.note("signing budget", &why);
            continue;
        }
        let tcp = match tcp.register() {
            Ok(tcp) => tcp,
            Err(e) => {
                refusals.note("register", &crate::kit::ErrorChain(&e));
                continue;
            }
        };
        let (id, token) = sessions.admit(source, limits, &cancel);
        let span = tracing::info_span!("incoming", %addr, session = id, peer = tracing::field::Empty, resumed = tracing::field::Empty);
        tracker.spawn(
            handle(
                tcp,
                addr,
                config,
                settings.clone(),
                Registration {
                    id,
                    token,
                    sessions: sessions.clone(),
                    refusals: refusals.clone(),
                },
                events.clone(),
            )
            .instrument(span),
        );
    }
}

/// One accepted connection's place in the listener's books.
struct Registration {
    id: SessionId,
    token: CancellationToken,
    sessions: Sessions,
    refusals: RefusalLog,
}

/// How an accepted connection's handshake ended, when it ended well.
enum Handshake<S> {
    /// A session is open.
    Opened(Connection<S>, Fingerprint, session::Opened),
    /// An identity we unpaired was told so; no session.
    ToldUnpaired(Fingerprint),
    /// The first frame was a trust-quorum message: answered once, no session.
    Quorum(Connection<S>, Fingerprint, QuorumMessage),
}

/// Hands `message` to the quorum driver and writes its answer, all within `deadline`.
async fn answer_quorum<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    quorum: &mpsc::Sender<QuorumExchange>,
    from: Fingerprint,
    message: QuorumMessage,
    deadline: Duration,
) {
    let exchange = async {
        let (reply, answer) = oneshot::channel();
        quorum
            .send(QuorumExchange {
                from,
                message,
                reply,
            })
            .await
            .ok()?;
        let answer = answer.await.ok()?;
        conn.write_frame(&Frame::Quorum(answer)).await.ok()?;
        let _ = conn.shutdown().await;
        Some(())
    };
    if tokio::time::timeout(deadline, exchange)
        .await
        .ok()
        .flatten()
        .is_none()
    {
        tracing::debug!(peer = %from, "trust-quorum message not answered");
    }
}

async fn handle(
    tcp: TcpStream,
    addr: SocketAddr,
    config: Arc<ServerConfig>,
    settings: Settings,
    registration: Registration,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    let Registration {
        id,
        token,
        sessions,
        refusals,
    } = registration;
    let _ = tcp.set_nodelay(true);
    let timing = settings.timing;
    let handshake = async {
        let tls = TlsAcceptor::from(config).accept(tcp).await?;
        // The client's certificate was accepted by the verifier (pinned, or anchored).
        sessions.authenticated(id);
        let fp = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|leaf| crate::identity::summarize(leaf.as_ref()).ok())
            .map(|s| s.public_key.fingerprint())
            .ok_or_else(|| io::Error::other("no client certificate after handshake"))?;
        // A resumed session skipped the certificate verifier: this check, against the pins
        // as they are now, is what keeps out a peer unpaired or quarantined after its
        // ticket was issued. A resumed session of an unpinned identity is refused here
        // (anchored admission needs the verifier's chain check, i.e. a full handshake).
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        tracing::Span::current().record("resumed", resumed);
        if !settings.pins.contains(&fp) && settings.farewells.contains(&fp) {
            // We unpaired it: its Hello is answered with the reason, once.
            let mut conn = Connection::new(tls);
            session::refuse(&mut conn, ByeReason::Unpaired, timing.open_timeout)
                .await
                .map_err(io::Error::other)?;
            return Ok(Handshake::ToldUnpaired(fp));
        }
        if resumed && !settings.pins.contains(&fp) {
            return Err(io::Error::other(
                "resumed session of an identity that is no longer pinned",
            ));
        }
        if !settings.pins.contains(&fp) {
            // Only anchored mode lets an unpinned chain through the verifier; attestation
            // (through the pairing driver) decides before the session opens.
            let Some(admission) = &settings.admission else {
                return Err(io::Error::other("unpinned client and no admission"));
            };
            let (reply, answer) = oneshot::channel();
            admission
                .send(Admission {
                    fingerprint: fp,
                    peer: addr,
                    reply,
                })
                .await
                .map_err(|_| io::Error::other("admission is not running"))?;
            if !answer.await.unwrap_or(false) {
                return Err(io::Error::other(
                    "not admitted: attestation did not vouch for this identity",
                ));
            }
        }
        let mut conn = Connection::new(tls);
        // The acceptor sends no Hello: its name and boot id are not used.
        let us = session::Us {
            name: "-",
            boot_id: 0,
        };
        let opened = match session::open(&mut conn, Side::Acceptor, us, timing.open_timeout).await {
            Ok(opened) => opened,
            Err(session::End::BadOpening(Frame::Quorum(message))) if settings.quorum.is_some() => {
                return Ok(Handshake::Quorum(conn, fp, message));
            }
            Err(e) => return Err(io::Error::other(e)),
        };
        Ok::<_, io::Error>(Handshake::Opened(conn, fp, opened))
    };
    let outcome = tokio::select! {
        () = token.cancelled() => {
            sessions.forget(id);
            return;
        }
        // Boxed: the handshake's state (TLS, admission) is freed once it is done, instead
        // of sizing every long-lived session task for it (issue 14, a hub's memory).
        r = tokio::time::timeout(timing.open_timeout, Box::pin(handshake)) => r,
    };
    let (mut conn, fp, opened) = match outcome {
        Ok(Ok(Handshake::Opened(conn, fp, opened))) => (conn, fp, opened),
        Ok(Ok(Handshake::Quorum(mut conn, fp, message))) => {
            tracing::Span::current().record("peer", tracing::field::display(&fp));
            if let Some(quorum) = &settings.quorum {
                answer_quorum(&mut conn, quorum, fp, message, timing.open_timeout).await;
            }
            sessions.forget(id);
            return;
        }
        Ok(Ok(Handshake::ToldUnpaired(fp))) => {
            tracing::info!(peer = %fp, "told an unpaired identity that we unpaired it");
            sessions.forget(id);
            let _ = events.send(LinkEvent::FarewellDelivered { fingerprint: fp });
            return;
        }
        Ok(Err(e)) => {
            refusals.note("handshake", &crate::kit::ErrorChain(&e));
            sessions.forget(id);
            return;
        }
        Err(_) => {
            refusals.note("handshake timeout", &"no Hello within the deadline");
            sessions.forget(id);
            return;
        }
    };
    tracing::Span::current().record("peer", tracing::field::display(&fp));
    if let Err(e) = sessions.established(id, fp, token.clone(), settings.max_sessions) {
        refusals.note("session cap", &e);
        return;
    }
    // Registered before the actor hears of the session, so what it sends at session start
    // arrives.
    let mut mailbox = settings.mailboxes.register(fp);
    let _ = events.send(LinkEvent::IncomingUp {
        session: id,
        fingerprint: fp,
        name: opened.name,
        boot_id: opened.boot_id,
    });
    let round_trips = settings.round_trips.clone();
    let port = session::GroupPort {
        mailbox: &mut mailbox,
        events: &events,
    };
    let end = session::run_with(&mut conn, timing, &token, Some(port), |rtt| {
        round_trips.record(fp, rtt);
    })
    .await;
    drop(mailbox);
    tracing::info!(reason = %end, "incoming session ended");
    if matches!(end, session::End::Bye(ByeReason::Unpaired)) {
        let _ = events.send(LinkEvent::ToldUnpaired { fingerprint: fp });
    }
    sessions.forget(id);
    let _ = events.send(LinkEvent::IncomingDown {
        session: id,
        fingerprint: fp,
    });
}
