//! The dialler: one long-lived task per paired peer that connects, opens a session, keeps
//! it alive, and reconnects with jittered exponential backoff when it ends. Also the
//! one-shot first-contact probe used when an operator names a peer.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand_core::{OsRng, RngCore};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_util::sync::CancellationToken;

use super::connection::Connection;
use super::session::{self, Side, Timing, Us};
use super::tls::{CaptureSlot, CapturedIdentity};
use super::{LinkEvent, LinkId};
use bmc_pairing_core::link::frame::ByeReason;
use bmc_pairing_core::link::heartbeat::Backoff;

/// Why a dial failed.
#[derive(Debug, thiserror::Error)]
pub enum DialError {
    /// TCP connect or TLS handshake failed.
    #[error("connect to {addr} failed")]
    Io {
        /// The address dialled.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The whole attempt exceeded its deadline.
    #[error("connect to {0} timed out")]
    Timeout(SocketAddr),
    /// The handshake completed but the verifier recorded nothing (cannot happen with a
    /// capture configuration; reported rather than assumed).
    #[error("no identity captured from {0}")]
    NothingCaptured(SocketAddr),
    /// The session could not be opened.
    #[error("session with {addr} did not open")]
    Open {
        /// The address dialled.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: session::End,
    },
}

/// Where and how to dial.
#[derive(Clone, Debug)]
pub struct DialTarget {
    /// The peer's pairing-channel address.
    pub addr: SocketAddr,
    /// Interface to bind the socket to (SO_BINDTODEVICE), if configured.
    pub device: Option<String>,
    /// Local address to dial from (the configured listen address), if any.
    pub source: Option<std::net::IpAddr>,
}

/// The interface index of `device`, for IPv6 link-local scope ids.
pub fn interface_index(device: &str) -> Option<u32> {
    if device.is_empty() || device.contains('/') || device.contains("..") {
        return None;
    }
    std::fs::read_to_string(format!("/sys/class/net/{device}/ifindex"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

/// `addr` with the scope of `device` added when it is an IPv6 link-local address without
/// one (an LLDP management address or an operator's `fe80::...` cannot carry it).
pub fn scoped(addr: SocketAddr, device: Option<&str>) -> SocketAddr {
    match (addr, device) {
        (SocketAddr::V6(mut v6), Some(dev))
            if v6.ip().is_unicast_link_local() && v6.scope_id() == 0 =>
        {
            if let Some(index) = interface_index(dev) {
                v6.set_scope_id(index);
            }
            SocketAddr::V6(v6)
        }
        _ => addr,
    }
}

async fn connect_tls(
    target: &DialTarget,
    config: Arc<ClientConfig>,
) -> Result<TlsStream<TcpStream>, DialError> {
    let io_err = |source| DialError::Io {
        addr: target.addr,
        source,
    };
    let addr = scoped(target.addr, target.device.as_deref());
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io_err)?;
    if let Some(dev) = &target.device {
        socket.bind_device(Some(dev.as_bytes())).map_err(io_err)?;
    }
    // Same family only: an IPv4 listen address cannot source an IPv6 connection.
    if let Some(src) = target.source.filter(|s| s.is_ipv4() == addr.is_ipv4()) {
        socket.bind(SocketAddr::new(src, 0)).map_err(io_err)?;
    }
    let tcp = socket.connect(addr).await.map_err(io_err)?;
    tcp.set_nodelay(true).map_err(io_err)?;
    // Peers are identified by pinned keys, not names; the address is only used because
    // rustls needs some ServerName (no SNI is sent for IP addresses).
    let name = ServerName::IpAddress(addr.ip().into());
    TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(io_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reset(addr: SocketAddr) -> DialError {
        DialError::Io {
            addr,
            source: io::Error::from(io::ErrorKind::ConnectionReset),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_connection_is_tried_again_until_the_deadline() {
        let addr: SocketAddr = "127.0.0.1:8090".parse().unwrap();
        let mut tries = 0;
        let got = patiently(addr, Duration::from_secs(5), Duration::ZERO, || {
            tries += 1;
            let n = tries;
            async move { if n < 3 { Err(reset(addr)) } else { Ok(n) } }
        })
        .await;
        assert_eq!(got.unwrap(), 3);

        // Always dropped: it gives up at the deadline, having backed off (10, 20, 40, ...
        // 640, 1000 ms: tries at 0, 10, 30, 70, 150, 310, 630, 1270 and 2270 ms).
        let mut tries = 0;
        let got: Result<(), _> = patiently(addr, Duration::from_secs(3), Duration::ZERO, || {
            tries += 1;
            async move { Err(reset(addr)) }
        })
        .await;
        assert!(matches!(got, Err(DialError::Io { .. })), "{got:?}");
        assert_eq!(tries, 9);

        // Anything else ends it at once.
        let mut tries = 0;
        let got: Result<(), _> = patiently(addr, Duration::from_secs(3), Duration::ZERO, || {
            tries += 1;
            async move {
                Err(DialError::Io {
                    addr,
                    source: io::Error::from(io::ErrorKind::ConnectionRefused),
                })
            }
        })
        .await;
        assert!(got.is_err());
        assert_eq!(tries, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_busy_signing_for_others_longer_than_one_deadline_is_still_reached() {
        // The peer's budget refuses us for 8 s (other peers pair with it); each attempt has
        // the 5 s handshake deadline, the whole the patience.
        let addr: SocketAddr = "127.0.0.1:8090".parse().unwrap();
        let start = tokio::time::Instant::now();
        let got = patiently(
            addr,
            Duration::from_secs(5),
            DROPPED_PATIENCE,
            || async move {
                if start.elapsed() < Duration::from_secs(8) {
                    Err(reset(addr))
                } else {
                    Ok(())
                }
            },
        )
        .await;
        assert!(got.is_ok(), "{got:?}");

        // A peer that accepts but never answers still fails after one deadline.
        let start = tokio::time::Instant::now();
        let got: Result<(), _> = patiently(
            addr,
            Duration::from_secs(5),
            DROPPED_PATIENCE,
            std::future::pending,
        )
        .await;
        assert!(matches!(got, Err(DialError::Timeout(_))), "{got:?}");
        assert_eq!(start.elapsed(), Duration::from_secs(5));
    }

    #[test]
    fn link_local_addresses_get_the_interface_scope() {
        let ll: SocketAddr = "[fe80::1]:8090".parse().unwrap();
        let SocketAddr::V6(v6) = scoped(ll, Some("lo")) else {
            panic!("v6")
        };
        assert_eq!(Some(v6.scope_id()), interface_index("lo"));
        let ula: SocketAddr = "[fd00::1]:8090".parse().unwrap();
        assert_eq!(
            scoped(ula, Some("lo")),
            ula,
            "only link-local addresses are scoped"
        );
        assert_eq!(scoped(ll, None), ll);
        assert_eq!(interface_index("../etc"), None);
    }
}

/// How long first contact and identity checks keep trying a peer that drops them before the
/// handshake. Its signing budget may be spent by other peers pairing at the same moment: a
/// hub that pairs 64 peers at once signs about 128 times, 13 s of the default budget, and a
/// pairing that gave up after one handshake deadline was lost for good on that side.
pub const DROPPED_PATIENCE: Duration = Duration::from_secs(30);

/// Repeats `attempt` (each bounded by `deadline`) while the server drops the connection
/// before the handshake (reset or closed: a listener over its signing budget does that to
/// everyone not yet known to it, for instance during a flood while the operator has not yet
/// named us on the other side, or while other peers pair with it), pausing 10 ms, then
/// twice as long each time up to 1 s, for at most `patience` in all. The first pause is
/// short because the usual cause clears quickly: the other side is named by its operator
/// moments after us. Any other failure, a refused identity, or an attempt that exceeds
/// `deadline` ends it at once.
async fn patiently<T, Fut>(
    addr: SocketAddr,
    deadline: Duration,
    patience: Duration,
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, DialError>
where
    Fut: std::future::Future<Output = Result<T, DialError>>,
{
    let until = tokio::time::Instant::now() + patience.max(deadline);
    let mut pause = Duration::from_millis(10);
    loop {
        let attempt_until = (tokio::time::Instant::now() + deadline).min(until);
        match tokio::time::timeout_at(attempt_until, attempt()).await {
            Err(_) => return Err(DialError::Timeout(addr)),
            Ok(Err(DialError::Io { source, .. }))
                if dropped_before_handshake(&source)
                    && tokio::time::Instant::now() + pause < until =>
            {
                tracing::debug!(%addr, error = %source, ?pause, "dropped before the handshake; trying again");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Ok(result) => return result,
        }
    }
}

/// A server that closed or reset the connection before answering.
fn dropped_before_handshake(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
    )
}

/// First contact: completes a TLS handshake with `target` using a capture configuration
/// (see [`super::tls::ServerCheck::Capture`]) and returns the identity it proved.
///
/// # Errors
/// [`DialError`] when the handshake does not complete within `deadline`.
///
/// # Cancel safety
/// Cancel safe: nothing is recorded until it returns.
pub async fn probe(
    target: &DialTarget,
    config: Arc<ClientConfig>,
    slot: Arc<CaptureSlot>,
    deadline: Duration,
) -> Result<CapturedIdentity, DialError> {
    let mut tls = patiently(target.addr, deadline, DROPPED_PATIENCE, || {
        connect_tls(target, config.clone())
    })
    .await?;
    // The handshake is complete, so the server's CertificateVerify has been checked: the
    // peer holds the key of the chain the verifier saw.
    let captured = slot.take().ok_or(DialError::NothingCaptured(target.addr))?;
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        tokio::io::AsyncWriteExt::shutdown(&mut tls),
    )
    .await;
    Ok(captured)
}

/// Completes a TLS handshake with `target` (checked by `config`'s verifier) and closes it:
/// proves that the identity `config` requires answers at that address.
///
/// # Errors
/// [`DialError`].
///
/// # Cancel safety
/// Cancel safe.
pub async fn verify(
    target: &DialTarget,
    config: Arc<ClientConfig>,
    deadline: Duration,
) -> Result<(), DialError> {
    let mut tls = patiently(target.addr, deadline, DROPPED_PATIENCE, || {
        connect_tls(target, config.clone())
    })
    .await?;
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        tokio::io::AsyncWriteExt::shutdown(&mut tls),
    )
    .await;
    Ok(())
}

/// Dials `target`, then opens a session; both under `deadline`.
///
/// # Errors
/// [`DialError`].
///
/// # Cancel safety
/// Cancel safe (nothing is shared until it returns).
pub async fn connect(
    target: &DialTarget,
    config: Arc<ClientConfig>,
    us: Us<'_>,
    deadline: Duration,
) -> Result<Connection<TlsStream<TcpStream>>, DialError> {
    let attempt = async {
        let tls = connect_tls(target, config).await?;
        let mut conn = Connection::new(tls);
        session::open(&mut conn, Side::Dialer, us, deadline)
            .await
            .map_err(|source| DialError::Open {
                addr: target.addr,
                source,
            })?;
        Ok(conn)
    };
    tokio::time::timeout(deadline, attempt)
        .await
        .map_err(|_| DialError::Timeout(target.addr))?
}

/// One trust-quorum exchange: dials `target` (which `config` pins), sends `message` as the
/// first frame instead of `Hello` (the listener answers it without opening a heartbeat
/// session, so the peer's session with us is not replaced), reads the one answer and closes.
///
/// # Errors
/// [`DialError`]; an answer that is not a quorum message is [`DialError::Open`].
///
/// # Cancel safety
/// Cancel safe (nothing is shared).
pub async fn exchange(
    target: &DialTarget,
    config: Arc<ClientConfig>,
    message: bmc_pairing_core::quorum::wire::Message,
    deadline: Duration,
) -> Result<bmc_pairing_core::quorum::wire::Message, DialError> {
    use bmc_pairing_core::link::frame::Frame;
    let open_err = |source| DialError::Open {
        addr: target.addr,
        source,
    };
    let attempt = async {
        let tls = connect_tls(target, config).await?;
        let mut conn = Connection::new(tls);
        conn.write_frame(&Frame::Quorum(message))
            .await
            .map_err(|e| open_err(session::End::Connection(e)))?;
        let answer = conn
            .read_frame()
            .await
            .map_err(|e| open_err(session::End::Connection(e)))?;
        let _ = conn.shutdown().await;
        match answer {
            Some(Frame::Quorum(reply)) => Ok(reply),
            Some(Frame::Bye { reason }) => Err(open_err(session::End::Bye(reason))),
            Some(other) => Err(open_err(session::End::BadOpening(other))),
            None => Err(open_err(session::End::Closed)),
        }
    };
    tokio::time::timeout(deadline, attempt)
        .await
        .map_err(|_| DialError::Timeout(target.addr))?
}

/// Reconnect policy of the dialler.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// First delay.
    pub initial: Duration,
    /// Cap.
    pub max: Duration,
}

/// Who dials, and whom: what our `Hello` says, and the pin the peer must present.
#[derive(Clone, Debug)]
pub struct Parties {
    /// Our BMC name.
    pub our_name: String,
    /// Our boot identifier.
    pub boot_id: u64,
    /// The peer's pinned identity.
    pub pin: crate::identity::Fingerprint,
    /// Where heartbeat round trips are recorded.
    pub round_trips: super::RoundTrips,
    /// Where the session registers for the actor's group frames.
    pub mailboxes: super::mailbox::Mailboxes,
}

/// Keeps an outgoing session to one peer alive until `cancel`. `link` identifies this
/// dialler in the events it sends; `wake` cuts a backoff wait short (e.g. the peer was just seen on
/// the link again); `refused` is the slot `config`'s pinned verifier records a wrong
/// identity in, reported as [`LinkEvent::OutgoingRefused`]. A peer that answers (or ends a
/// session) with `Bye { Unpaired }` is reported as [`LinkEvent::ToldUnpaired`], and the
/// dialler stops: the peer no longer pins us.
///
/// # Cancel safety
/// Runs until `cancel`.
#[allow(clippy::too_many_arguments)]
pub async fn run_outgoing(
    link: LinkId,
    target: DialTarget,
    config: Arc<ClientConfig>,
    refused: Arc<CaptureSlot>,
    parties: Parties,
    timing: Timing,
    retry: Retry,
    wake: Arc<Notify>,
    events: mpsc::UnboundedSender<LinkEvent>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(retry.initial, retry.max);
    loop {
        let _ = events.send(LinkEvent::OutgoingAttempt { link: link.clone() });
        let us = Us {
            name: &parties.our_name,
            boot_id: parties.boot_id,
        };
        let attempt = tokio::select! {
            () = cancel.cancelled() => return,
            // Boxed: the dial's state is freed once it is done, instead of sizing the
            // long-lived link task for it (issue 14, a hub's memory).
            r = Box::pin(connect(&target, config.clone(), us, timing.open_timeout)) => r,
        };
        let told_unpaired = || {
            tracing::warn!(peer = %link, "the peer unpaired us; no longer dialling it");
            let _ = events.send(LinkEvent::OutgoingDown { link: link.clone() });
            let _ = events.send(LinkEvent::ToldUnpaired {
                fingerprint: parties.pin,
            });
        };
        match attempt {
            Ok(mut conn) => {
                backoff.reset();
                // Registered before the actor hears of the session, so what it sends at
                // session start arrives.
                let mut mailbox = parties.mailboxes.register(parties.pin);
                let _ = events.send(LinkEvent::OutgoingUp { link: link.clone() });
                let port = session::GroupPort {
                    mailbox: &mut mailbox,
                    events: &events,
                };
                let end = session::run_with(&mut conn, timing, &cancel, Some(port), |rtt| {
                    parties.round_trips.record(parties.pin, rtt);
                })
                .await;
                drop(mailbox);
                tracing::info!(peer = %link, reason = %end, "outgoing session ended");
                if matches!(end, session::End::Bye(ByeReason::Unpaired)) {
                    told_unpaired();
                    return;
                }
                let _ = events.send(LinkEvent::OutgoingDown { link: link.clone() });
                if cancel.is_cancelled() {
                    return;
                }
            }
            Err(DialError::Open {
                source: session::End::Bye(ByeReason::Unpaired),
                ..
            }) => {
                told_unpaired();
                return;
            }
            Err(e) => {
                tracing::debug!(peer = %link, error = %crate::kit::ErrorChain(&e), "dial failed");
                if let Some(other) = refused.take() {
                    let _ = events.send(LinkEvent::OutgoingRefused {
                        link: link.clone(),
                        presented: other.fingerprint,
                    });
                }
                let _ = events.send(LinkEvent::OutgoingDown { link: link.clone() });
            }
        }
        let delay = backoff.next_delay(OsRng.next_u32());
        tokio::select! {
            () = cancel.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(delay) => {}
        }
    }
}
