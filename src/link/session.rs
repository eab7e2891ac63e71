//! One established session of the pairing channel: the opening `Hello`/`Alive`, then
//! `Ping`/`Alive` heartbeats in both directions until the peer goes silent, closes, or we
//! are cancelled.
//!
//! Owns nothing beyond the connection it is given; it reports only how the session ended.
//! Timing decisions come from the pure [`Heartbeat`].

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, sleep_until, timeout};
use tokio_util::sync::CancellationToken;

use tokio::sync::mpsc;

use super::LinkEvent;
use super::connection::{self, Connection};
use super::mailbox::Mailbox;
use bmc_pairing_core::link::frame::{ByeReason, Frame};
use bmc_pairing_core::link::heartbeat::{Grid, Heartbeat, Tick};

/// Timing of a session.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Deadline for the opening Hello/Alive exchange.
    pub open_timeout: Duration,
    /// Interval between our pings.
    pub heartbeat_interval: Duration,
    /// Silence after which the peer is dead.
    pub heartbeat_timeout: Duration,
}

/// Why a session ended (or never opened).
#[derive(Debug, thiserror::Error)]
pub enum End {
    /// The peer did not complete Hello/Alive in time.
    #[error("peer did not open the session in time")]
    OpenTimeout,
    /// The peer sent something other than the expected opening frame.
    #[error("unexpected opening frame {0:?}")]
    BadOpening(Frame),
    /// No frame from the peer within the heartbeat timeout.
    #[error("heartbeat timeout")]
    HeartbeatTimeout,
    /// The peer closed the connection.
    #[error("peer closed the connection")]
    Closed,
    /// The peer said goodbye.
    #[error("peer said goodbye ({0:?})")]
    Bye(ByeReason),
    /// We were cancelled (shutdown, unpair, identity change).
    #[error("cancelled")]
    Cancelled,
    /// I/O or protocol error.
    #[error("connection failed")]
    Connection(#[from] connection::Error),
}

/// Which side of the opening exchange we are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// We dialled: we send Hello and wait for Alive.
    Dialer,
    /// We accepted: we wait for Hello and answer Alive.
    Acceptor,
}

/// What the opening exchange learned of the peer.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Opened {
    /// The name in its `Hello` (acceptor side; `None` on the dialer side).
    pub name: Option<String>,
    /// The boot identifier in its `Hello` (acceptor side; 0 on the dialer side).
    pub boot_id: u64,
}

/// Who we are in our `Hello` (dialer side).
#[derive(Clone, Copy, Debug)]
pub struct Us<'a> {
    /// Our BMC name.
    pub name: &'a str,
    /// Our boot identifier.
    pub boot_id: u64,
}

/// Runs the opening exchange: the dialer sends `Hello` with `us` and waits for `Alive`, the
/// acceptor waits for `Hello` and answers `Alive`.
///
/// # Errors
/// [`End`] if the session could not be opened.
///
/// # Cancel safety
/// Not cancel safe (it writes); drop the connection if cancelled.
pub async fn open<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    side: Side,
    us: Us<'_>,
    open_timeout: Duration,
) -> Result<Opened, End> {
    let exchange = async {
        match side {
            Side::Dialer => {
                conn.write_frame(&Frame::Hello {
                    seq: 0,
                    boot_id: us.boot_id,
                    name: us.name.to_owned(),
                })
                .await?;
                match conn.read_frame().await? {
                    Some(Frame::Alive { seq: 0 }) => Ok(Opened::default()),
                    Some(Frame::Bye { reason }) => Err(End::Bye(reason)),
                    Some(other) => Err(End::BadOpening(other)),
                    None => Err(End::Closed),
                }
            }
            Side::Acceptor => match conn.read_frame().await? {
                Some(Frame::Hello { seq, boot_id, name }) => {
                    conn.write_frame(&Frame::Alive { seq }).await?;
                    Ok(Opened {
                        name: Some(name),
                        boot_id,
                    })
                }
                Some(other) => Err(End::BadOpening(other)),
                None => Err(End::Closed),
            },
        }
    };
    timeout(open_timeout, exchange)
        .await
        .map_err(|_| End::OpenTimeout)?
}

/// Acceptor side, for a peer whose session must not open: waits for its `Hello` and answers
/// `Bye { reason }` instead of `Alive`, so the peer learns why (an identity we unpaired is
/// told `Unpaired` and stops dialling).
///
/// # Errors
/// [`End`] if no `Hello` came in time or the answer could not be written.
///
/// # Cancel safety
/// Not cancel safe (it writes); drop the connection if cancelled.
pub async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    reason: ByeReason,
    open_timeout: Duration,
) -> Result<(), End> {
    let exchange = async {
        match conn.read_frame().await? {
            Some(Frame::Hello { .. }) => {
                conn.write_frame(&Frame::Bye { reason }).await?;
                let _ = conn.shutdown().await;
                Ok(())
            }
            Some(other) => Err(End::BadOpening(other)),
            None => Err(End::Closed),
        }
    };
    timeout(open_timeout, exchange)
        .await
        .map_err(|_| End::OpenTimeout)?
}

/// Runs heartbeats on an opened session until it ends; returns why it ended.
///
/// # Cancel safety
/// Not cancel safe; use `cancel` to stop it (it then sends `Bye`).
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    timing: Timing,
    cancel: &CancellationToken,
) -> End {
    run_with(conn, timing, cancel, None, |_| {}).await
}

/// Where a session hands the group frames it receives, and takes those to send.
#[derive(Debug)]
pub struct GroupPort<'a> {
    /// Frames the actor queued for this peer.
    pub mailbox: &'a mut Mailbox,
    /// Where received group frames go (as [`LinkEvent::Group`]).
    pub events: &'a mpsc::UnboundedSender<LinkEvent>,
}

/// As [`run`], carrying group frames both ways through `port`, and telling `round_trip` the
/// time from each of our pings to the peer's `Alive` for it (the same sequence number).
/// Nothing extra is sent or awaited for the measurement.
///
/// # Cancel safety
/// Not cancel safe; use `cancel` to stop it (it then sends `Bye`).
pub async fn run_with<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    timing: Timing,
    cancel: &CancellationToken,
    mut port: Option<GroupPort<'_>>,
    round_trip: impl Fn(Duration),
) -> End {
    // Our last ping not yet answered: its sequence number and when it left.
    let mut pending: Option<(u64, Instant)> = None;
    let mut hb = Heartbeat::new(
        Instant::now().into_std(),
        timing.heartbeat_interval,
        timing.heartbeat_timeout,
    )
    .on_grid(heartbeat_grid(timing.heartbeat_interval));
    let mut seq: u64 = 0;
    loop {
        let deadline = Instant::from_std(hb.next_deadline());
        tokio::select! {
            biased;
            () = cancel.cancelled() => {
                // Best effort: the peer learns at once instead of after its timeout.
                let _ = timeout(Duration::from_millis(200), conn.write_frame(&Frame::Bye { reason: ByeReason::Shutdown })).await;
                return End::Cancelled;
            }
            frame = conn.read_frame() => {
                hb.on_received(Instant::now().into_std());
                match frame {
                    Ok(Some(Frame::Ping { seq })) => {
                        if let Err(e) = conn.write_frame(&Frame::Alive { seq }).await {
                            return End::Connection(e);
                        }
                    }
                    Ok(Some(Frame::Alive { seq: answered })) => {
                        if let Some((sent_seq, sent_at)) = pending
                            && sent_seq == answered
                        {
                            pending = None;
                            round_trip(sent_at.elapsed());
                        }
                    }
                    Ok(Some(
                        group @ (Frame::SignRequest { .. }
                        | Frame::SignReply { .. }
                        | Frame::GroupList { .. }),
                    )) => {
                        // Without a port (tests, a daemon without the group) they are
                        // ignored like any frame this side has no use for.
                        if let Some(port) = &port {
                            let _ = port.events.send(LinkEvent::Group {
                                fingerprint: port.mailbox.peer,
                                frame: group,
                            });
                        }
                    }
                    Ok(Some(Frame::Bye { reason })) => return End::Bye(reason),
                    Ok(Some(other @ (Frame::Hello { .. } | Frame::Quorum(_)))) => return End::BadOpening(other),
                    Ok(None) => return End::Closed,
                    Err(e) => return End::Connection(e),
                }
            }
            Some(out) = next_outgoing(&mut port) => {
                if let Err(e) = conn.write_frame(&out).await {
                    return End::Connection(e);
                }
            }
            () = sleep_until(deadline) => {
                match hb.poll(Instant::now().into_std()) {
                    Tick::Expired => return End::HeartbeatTimeout,
                    Tick::SendPing => {
                        seq = seq.wrapping_add(1);
                        if let Err(e) = conn.write_frame(&Frame::Ping { seq }).await {
                            return End::Connection(e);
                        }
                        pending = Some((seq, Instant::now()));
                    }
                    Tick::Wait => {}
                }
            }
        }
    }
}

/// The process's heartbeat grid: steps of a quarter interval from the first session, so the
/// sessions of a hub wake it together (at most four instants per interval) and each ping is
/// due at most a quarter interval late.
fn heartbeat_grid(interval: Duration) -> Grid {
    static ORIGIN: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    Grid::new(*ORIGIN.get_or_init(std::time::Instant::now), interval / 4)
}

/// The next frame queued for the session; never ready without a port.
async fn next_outgoing(port: &mut Option<GroupPort<'_>>) -> Option<Frame> {
    match port {
        Some(port) => Some(port.mailbox.next().await),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timing() -> Timing {
        Timing {
            open_timeout: Duration::from_secs(1),
            heartbeat_interval: Duration::from_millis(100),
            heartbeat_timeout: Duration::from_millis(300),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn both_sides_keep_each_other_alive_then_detect_silence() {
        let (a, b) = tokio::io::duplex(1024);
        let (mut ca, mut cb) = (Connection::new(a), Connection::new(b));
        let a_us = Us {
            name: "bmc-a",
            boot_id: 77,
        };
        let b_us = Us {
            name: "bmc-b",
            boot_id: 88,
        };
        let (opened_a, opened_b) = tokio::join!(
            open(&mut ca, Side::Dialer, a_us, timing().open_timeout),
            open(&mut cb, Side::Acceptor, b_us, timing().open_timeout)
        );
        assert_eq!(opened_a.unwrap(), Opened::default());
        assert_eq!(
            opened_b.unwrap(),
            Opened {
                name: Some("bmc-a".into()),
                boot_id: 77
            }
        );

        let cancel_b = CancellationToken::new();
        let cancel_a = CancellationToken::new();
        let run_b = {
            let cancel_b = cancel_b.clone();
            tokio::spawn(async move {
                let end = run(&mut cb, timing(), &cancel_b).await;
                (end, cb)
            })
        };
        let run_a = tokio::spawn(async move { run(&mut ca, timing(), &cancel_a).await });
        // Ten timeouts' worth of time pass with both alive.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(!run_a.is_finished() && !run_b.is_finished());
        // B stops (says Bye): A learns at once.
        cancel_b.cancel();
        let (end_b, _cb) = run_b.await.unwrap();
        assert!(matches!(end_b, End::Cancelled));
        assert!(matches!(
            run_a.await.unwrap(),
            End::Bye(ByeReason::Shutdown)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_peer_times_out() {
        let (a, _b_held_open_but_silent) = tokio::io::duplex(1024);
        let mut ca = Connection::new(a);
        let cancel = CancellationToken::new();
        let started = Instant::now();
        let end = run(&mut ca, timing(), &cancel).await;
        assert!(matches!(end, End::HeartbeatTimeout));
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn opening_needs_hello_within_the_deadline() {
        let (a, _b) = tokio::io::duplex(1024);
        let mut ca = Connection::new(a);
        let us = Us {
            name: "x",
            boot_id: 0,
        };
        let end = open(&mut ca, Side::Acceptor, us, Duration::from_millis(50)).await;
        assert!(matches!(end, Err(End::OpenTimeout)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_dialer_is_told_why() {
        let (a, b) = tokio::io::duplex(1024);
        let (mut ca, mut cb) = (Connection::new(a), Connection::new(b));
        let us = Us {
            name: "bmc-a",
            boot_id: 1,
        };
        let (dialed, refused) = tokio::join!(
            open(&mut ca, Side::Dialer, us, timing().open_timeout),
            refuse(&mut cb, ByeReason::Unpaired, timing().open_timeout)
        );
        refused.unwrap();
        assert!(matches!(dialed, Err(End::Bye(ByeReason::Unpaired))));
    }
}
