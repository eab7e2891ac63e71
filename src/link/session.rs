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

use super::connection::{self, Connection};
use bmc_pairing_core::link::frame::{ByeReason, Frame};
use bmc_pairing_core::link::heartbeat::{Heartbeat, Tick};

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

/// Runs the opening exchange. Returns the peer's name from its Hello (acceptor side) or
/// `None` (dialer side).
///
/// # Errors
/// [`End`] if the session could not be opened.
///
/// # Cancel safety
/// Not cancel safe (it writes); drop the connection if cancelled.
pub async fn open<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    side: Side,
    our_name: &str,
    open_timeout: Duration,
) -> Result<Option<String>, End> {
    let exchange = async {
        match side {
            Side::Dialer => {
                conn.write_frame(&Frame::Hello {
                    seq: 0,
                    name: our_name.to_owned(),
                })
                .await?;
                match conn.read_frame().await? {
                    Some(Frame::Alive { seq: 0 }) => Ok(None),
                    Some(Frame::Bye { reason }) => Err(End::Bye(reason)),
                    Some(other) => Err(End::BadOpening(other)),
                    None => Err(End::Closed),
                }
            }
            Side::Acceptor => match conn.read_frame().await? {
                Some(Frame::Hello { seq, name }) => {
                    conn.write_frame(&Frame::Alive { seq }).await?;
                    Ok(Some(name))
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

/// Runs heartbeats on an opened session until it ends; returns why it ended.
///
/// # Cancel safety
/// Not cancel safe; use `cancel` to stop it (it then sends `Bye`).
pub async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    conn: &mut Connection<S>,
    timing: Timing,
    cancel: &CancellationToken,
) -> End {
    let mut hb = Heartbeat::new(
        Instant::now().into_std(),
        timing.heartbeat_interval,
        timing.heartbeat_timeout,
    );
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
                    Ok(Some(Frame::Alive { .. })) => {}
                    Ok(Some(Frame::Bye { reason })) => return End::Bye(reason),
                    Ok(Some(other @ Frame::Hello { .. })) => return End::BadOpening(other),
                    Ok(None) => return End::Closed,
                    Err(e) => return End::Connection(e),
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
                    }
                    Tick::Wait => {}
                }
            }
        }
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
        let (opened_a, opened_b) = tokio::join!(
            open(&mut ca, Side::Dialer, "bmc-a", timing().open_timeout),
            open(&mut cb, Side::Acceptor, "bmc-b", timing().open_timeout)
        );
        assert_eq!(opened_a.unwrap(), None);
        assert_eq!(opened_b.unwrap().as_deref(), Some("bmc-a"));

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
        let end = open(&mut ca, Side::Acceptor, "x", Duration::from_millis(50)).await;
        assert!(matches!(end, Err(End::OpenTimeout)));
    }
}
