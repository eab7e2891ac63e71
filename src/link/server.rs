//! The pairing-channel listener: accepts TCP, runs the TLS handshake and the opening
//! exchange under one deadline, then the session, each in its own task.
//!
//! Handshakes in progress are bounded by `max_pending`. When the bound is reached, the
//! *oldest* pending handshake is dropped to admit the new connection: a real peer completes
//! its handshake in milliseconds, so idle or slow sockets (slowloris) are the ones evicted
//! and can never lock a paired peer out. Established sessions do not count against it;
//! they are authenticated.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
use bmc_pairing_core::link::frame::ByeReason;

/// Listener settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Session timing (the opening timeout doubles as the whole handshake deadline).
    pub timing: Timing,
    /// Bound on handshakes in progress.
    pub max_pending: usize,
    /// The pins; a client that is not pinned (anchored mode) needs admission.
    pub pins: PinSet,
    /// Identities we unpaired and have not told yet: their next session is answered with
    /// `Bye { Unpaired }` instead of `Alive`.
    pub farewells: PinSet,
    /// Where to ask for admission of an authenticated but unpinned client; without it such a
    /// client is closed.
    pub admission: Option<mpsc::Sender<Admission>>,
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

#[derive(Debug, Default)]
struct Registry {
    pending: VecDeque<(SessionId, CancellationToken)>,
    established: HashMap<SessionId, (Fingerprint, CancellationToken)>,
}

/// Live sessions and pending handshakes of the listener; the pairing driver uses it to cut
/// sessions whose pin was removed.
#[derive(Clone, Debug, Default)]
pub struct Sessions {
    inner: Arc<Mutex<Registry>>,
    next_id: Arc<AtomicU64>,
}

impl Sessions {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admit(
        &self,
        max_pending: usize,
        parent: &CancellationToken,
    ) -> (SessionId, CancellationToken) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let token = parent.child_token();
        let mut reg = self.lock();
        while reg.pending.len() >= max_pending {
            match reg.pending.pop_front() {
                Some((old, t)) => {
                    tracing::debug!(session = old, "evicting the oldest pending handshake");
                    t.cancel();
                }
                None => break,
            }
        }
        reg.pending.push_back((id, token.clone()));
        (id, token)
    }

    fn established(&self, id: SessionId, fp: Fingerprint, token: CancellationToken) {
        let mut reg = self.lock();
        reg.pending.retain(|(p, _)| *p != id);
        reg.established.insert(id, (fp, token));
    }

    fn forget(&self, id: SessionId) {
        let mut reg = self.lock();
        reg.pending.retain(|(p, _)| *p != id);
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
    let mut accept_errors = 0u32;
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            r = listener.accept() => r,
        };
        let (tcp, addr) = match accepted {
            Ok(pair) => {
                accept_errors = 0;
                pair
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                accept_errors = accept_errors.saturating_add(1);
                tracing::warn!(error = %e, "accept failed");
                let pause =
                    Duration::from_millis(10u64.saturating_mul(u64::from(accept_errors.min(100))));
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = tokio::time::sleep(pause) => continue,
                }
            }
        };
        let Some(config) = tls.borrow().clone() else {
            tracing::debug!(%addr, "no identity yet; closing incoming connection");
            continue;
        };
        let (id, token) = sessions.admit(settings.max_pending, &cancel);
        let span =
            tracing::info_span!("incoming", %addr, session = id, peer = tracing::field::Empty);
        tracker.spawn(
            handle(
                tcp,
                addr,
                config,
                settings.clone(),
                id,
                token,
                sessions.clone(),
                events.clone(),
            )
            .instrument(span),
        );
    }
}

/// How an accepted connection's handshake ended, when it ended well.
enum Handshake<S> {
    /// A session is open.
    Opened(Connection<S>, Fingerprint, session::Opened),
    /// An identity we unpaired was told so; no session.
    ToldUnpaired(Fingerprint),
}

#[allow(clippy::too_many_arguments)]
async fn handle(
    tcp: TcpStream,
    addr: SocketAddr,
    config: Arc<ServerConfig>,
    settings: Settings,
    id: SessionId,
    token: CancellationToken,
    sessions: Sessions,
    events: mpsc::UnboundedSender<LinkEvent>,
) {
    let _ = tcp.set_nodelay(true);
    let timing = settings.timing;
    let handshake = async {
        let tls = TlsAcceptor::from(config).accept(tcp).await?;
        let fp = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|c| c.first())
            .and_then(|leaf| crate::identity::summarize(leaf.as_ref()).ok())
            .map(|s| s.public_key.fingerprint())
            .ok_or_else(|| io::Error::other("no client certificate after handshake"))?;
        if !settings.pins.contains(&fp) && settings.farewells.contains(&fp) {
            // We unpaired it: its Hello is answered with the reason, once.
            let mut conn = Connection::new(tls);
            session::refuse(&mut conn, ByeReason::Unpaired, timing.open_timeout)
                .await
                .map_err(io::Error::other)?;
            return Ok(Handshake::ToldUnpaired(fp));
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
        let opened = session::open(&mut conn, Side::Acceptor, us, timing.open_timeout)
            .await
            .map_err(io::Error::other)?;
        Ok::<_, io::Error>(Handshake::Opened(conn, fp, opened))
    };
    let outcome = tokio::select! {
        () = token.cancelled() => {
            sessions.forget(id);
            return;
        }
        r = tokio::time::timeout(timing.open_timeout, handshake) => r,
    };
    let (mut conn, fp, opened) = match outcome {
        Ok(Ok(Handshake::Opened(conn, fp, opened))) => (conn, fp, opened),
        Ok(Ok(Handshake::ToldUnpaired(fp))) => {
            tracing::info!(peer = %fp, "told an unpaired identity that we unpaired it");
            sessions.forget(id);
            let _ = events.send(LinkEvent::FarewellDelivered { fingerprint: fp });
            return;
        }
        Ok(Err(e)) => {
            tracing::info!(error = %e, "incoming handshake failed");
            sessions.forget(id);
            return;
        }
        Err(_) => {
            tracing::info!("incoming handshake timed out");
            sessions.forget(id);
            return;
        }
    };
    tracing::Span::current().record("peer", tracing::field::display(&fp));
    sessions.established(id, fp, token.clone());
    let _ = events.send(LinkEvent::IncomingUp {
        session: id,
        fingerprint: fp,
        name: opened.name,
        boot_id: opened.boot_id,
    });
    let end = session::run(&mut conn, timing, &token).await;
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
