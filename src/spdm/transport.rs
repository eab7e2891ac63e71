//! Shell: moves SPDM messages between a byte stream and the sans-IO state machines.
//!
//! Framing is chosen by [`Framing`]: DSP0287 on TCP (production), or the DMTF emulator's
//! platform-port header around a DSP0287 frame ([`Framing::EmuTcp`]) or around a bare
//! message ([`Framing::EmuNone`]), so spdm-emu can be a peer. Every frame is written with a
//! single `write_all`; reads take exactly the header, then exactly the announced length,
//! capped before allocation. Every await has a timeout from [`Timeouts`].
//!
//! This file makes no protocol decisions: the requester and responder do. It owns the
//! randomness source (the OS RNG) and hands bytes to the cores.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand_core::OsRng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use bmc_pairing_core::keys::KeyStore;
use bmc_pairing_core::spdm::frame::{
    self, EMU_CLIENT_HELLO, EMU_CONTINUE, EMU_HEADER_LEN, EMU_NORMAL, EMU_SERVER_HELLO,
    EMU_SHUTDOWN, EMU_TEST, EMU_TRANSPORT_NONE, EMU_TRANSPORT_TCP, EmuHeader, Frame,
};
use bmc_pairing_core::spdm::requester::{Action, Requester, RequesterConfig, Verdict};
use bmc_pairing_core::spdm::responder::{Responder, ResponderConfig};
use bmc_pairing_core::spdm::{self, MAX_MESSAGE_SIZE};

pub use bmc_pairing_core::spdm::frame::DEFAULT_PORT;

/// Why an exchange over a stream ended without a result.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The protocol failed: the peer's bytes, its answers, its chain or its signatures.
    #[error(transparent)]
    Protocol(#[from] spdm::Error),
    /// Socket I/O failed.
    #[error("transport i/o")]
    Io(#[from] io::Error),
    /// An await exceeded its timeout.
    #[error("timed out while {0}")]
    Timeout(&'static str),
    /// The peer closed the connection mid-exchange.
    #[error("peer closed the connection")]
    Closed,
    /// The peer sent a DSP0287 error or discovery frame where a message was due.
    #[error("peer sent transport frame type {0:#04x}")]
    TransportFrame(u8),
    /// The signing task panicked (a bug, never caused by the peer).
    #[error("the signing task panicked")]
    Panicked,
}

impl From<frame::InvalidFrame> for Error {
    fn from(e: frame::InvalidFrame) -> Self {
        Error::Protocol(e.into())
    }
}

impl Error {
    /// The protocol error, if that is what this is.
    pub fn protocol(&self) -> Option<&spdm::Error> {
        match self {
            Error::Protocol(e) => Some(e),
            _ => None,
        }
    }
}

/// How SPDM messages are framed on the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// DSP0287: `u16 LE length | 0x01 | 0x05 | message`.
    Dsp0287,
    /// spdm-emu `--trans TCP`: platform header around a DSP0287 frame.
    EmuTcp,
    /// spdm-emu `--trans NONE`: platform header around the bare message.
    EmuNone,
}

/// Deadlines for the awaits of one exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Each read of a response and each write.
    pub io: Duration,
    /// How long [`serve`] waits for the next request.
    pub idle: Duration,
}

impl Default for Timeouts {
    /// 10 s per read/write, 60 s idle.
    fn default() -> Self {
        Timeouts {
            io: Duration::from_secs(10),
            idle: Duration::from_secs(60),
        }
    }
}

/// A stream SPDM can run over. TCP sockets get TCP_NODELAY and, for the emulator,
/// TCP_QUICKACK re-armed before every read (spdm-emu writes its header fields in separate
/// `send()` calls, and delayed ACKs then cost ~40 ms per message).
pub trait Socket: AsyncRead + AsyncWrite + Unpin + Send {
    /// Called once before the exchange.
    ///
    /// # Errors
    /// Socket option failures.
    fn configure(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// Called before each read when talking to the emulator.
    ///
    /// # Errors
    /// Socket option failures.
    fn rearm_quickack(&self) -> io::Result<()> {
        Ok(())
    }
}

impl Socket for tokio::net::TcpStream {
    fn configure(&mut self) -> io::Result<()> {
        self.set_nodelay(true)
    }

    fn rearm_quickack(&self) -> io::Result<()> {
        socket2::SockRef::from(self).set_tcp_quickack(true)
    }
}

impl Socket for tokio::io::DuplexStream {}

/// One received unit, after framing.
#[derive(Debug, PartialEq, Eq)]
enum Incoming {
    Spdm(Vec<u8>),
    Secured,
    Discovery(u8),
    EmuTest,
    EmuEnd(u32),
    Eof,
}

struct Conn<'a, S> {
    stream: &'a mut S,
    framing: Framing,
    io_timeout: Duration,
}

async fn within<T>(
    limit: Duration,
    what: &'static str,
    fut: impl std::future::Future<Output = io::Result<T>>,
) -> Result<T, Error> {
    match tokio::time::timeout(limit, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Err(Error::Closed),
        Ok(Err(e)) => Err(Error::Io(e)),
        Err(_) => Err(Error::Timeout(what)),
    }
}

impl<S: Socket> Conn<'_, S> {
    fn emu_transport(&self) -> u32 {
        match self.framing {
            Framing::EmuNone => EMU_TRANSPORT_NONE,
            _ => EMU_TRANSPORT_TCP,
        }
    }

    /// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean EOF before the first byte.
    async fn read_head(&mut self, buf: &mut [u8], limit: Duration) -> Result<bool, Error> {
        let n = within(limit, "waiting for a frame", self.stream.read(buf)).await?;
        if n == 0 {
            return Ok(buf.is_empty());
        }
        if let Some(rest) = buf.get_mut(n..) {
            within(
                self.io_timeout,
                "reading a frame",
                self.stream.read_exact(rest),
            )
            .await?;
        }
        Ok(true)
    }

    async fn read_body(&mut self, len: usize) -> Result<Vec<u8>, Error> {
        let mut body = vec![0u8; len];
        within(
            self.io_timeout,
            "reading a frame",
            self.stream.read_exact(&mut body),
        )
        .await?;
        Ok(body)
    }

    async fn recv(&mut self, limit: Duration) -> Result<Incoming, Error> {
        match self.framing {
            Framing::Dsp0287 => {
                let mut prefix = [0u8; 2];
                if !self.read_head(&mut prefix, limit).await? {
                    return Ok(Incoming::Eof);
                }
                let announced = frame::announced(prefix, MAX_MESSAGE_SIZE)?;
                let len = match announced {
                    frame::Announced::Body(n) => n,
                    frame::Announced::Discovery => 2,
                };
                let body = self.read_body(len).await?;
                Ok(match frame::body(announced, &body)? {
                    Frame::Spdm(m) => Incoming::Spdm(m.to_vec()),
                    Frame::Secured(_) => Incoming::Secured,
                    Frame::Discovery(t) => Incoming::Discovery(t),
                })
            }
            Framing::EmuTcp | Framing::EmuNone => {
                self.stream.rearm_quickack()?;
                let mut head = [0u8; EMU_HEADER_LEN];
                if !self.read_head(&mut head, limit).await? {
                    return Ok(Incoming::Eof);
                }
                let cap = MAX_MESSAGE_SIZE + frame::HEADER_LEN;
                let h = EmuHeader::parse(head, self.emu_transport(), cap)?;
                self.stream.rearm_quickack()?;
                let payload = self.read_body(h.payload_len()).await?;
                match h.command {
                    EMU_TEST => Ok(Incoming::EmuTest),
                    EMU_SHUTDOWN | EMU_CONTINUE => Ok(Incoming::EmuEnd(h.command)),
                    _ if self.framing == Framing::EmuNone => Ok(Incoming::Spdm(payload)),
                    _ => match frame::deframe(&payload, MAX_MESSAGE_SIZE)? {
                        Some((f, used)) if used == payload.len() => Ok(match f {
                            Frame::Spdm(m) => Incoming::Spdm(m.to_vec()),
                            Frame::Secured(_) => Incoming::Secured,
                            Frame::Discovery(t) => Incoming::Discovery(t),
                        }),
                        _ => Err(spdm::Error::InvalidFrame(frame::InvalidFrame::BadLength(
                            "dsp0287 frame inside emulator message",
                        ))
                        .into()),
                    },
                }
            }
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        within(
            self.io_timeout,
            "writing a frame",
            self.stream.write_all(bytes),
        )
        .await?;
        within(self.io_timeout, "flushing a frame", self.stream.flush()).await
    }

    async fn send_frame(&mut self, f: Frame<'_>) -> Result<(), Error> {
        let mut inner = Vec::new();
        frame::encode(&f, &mut inner);
        let bytes = match self.framing {
            Framing::Dsp0287 => inner,
            Framing::EmuTcp => frame::frame_emu(EMU_NORMAL, EMU_TRANSPORT_TCP, &inner),
            Framing::EmuNone => match f {
                Frame::Spdm(m) => frame::frame_emu(EMU_NORMAL, EMU_TRANSPORT_NONE, m),
                // The NONE transport has no way to carry binding frames.
                _ => return Ok(()),
            },
        };
        self.write(&bytes).await
    }

    async fn send_emu(&mut self, command: u32, payload: &[u8]) -> Result<(), Error> {
        let bytes = frame::frame_emu(command, self.emu_transport(), payload);
        self.write(&bytes).await
    }
}

/// Attests the responder at the other end of `stream`.
///
/// Runs the whole requester flow (see [`super::requester`]) with nonces from the OS RNG.
/// With emulator framing it first exchanges the TEST hello (TCP only, as spdm-emu does) and
/// ends with CONTINUE, which leaves the emulator serving further connections.
///
/// # Errors
/// Transport failures, timeouts, and every requester error, including
/// [`Error::MeasurementsRejected`] carrying the verdict in Enforce mode.
///
/// # Cancel safety
/// Not cancel safe: dropping the future mid-exchange leaves the stream at an unknown frame
/// boundary; close it.
#[tracing::instrument(name = "spdm_attest", skip_all, fields(framing = ?framing))]
pub async fn attest<S: Socket>(
    stream: &mut S,
    framing: Framing,
    config: RequesterConfig,
    timeouts: &Timeouts,
) -> Result<Verdict, Error> {
    stream.configure()?;
    let mut conn = Conn {
        stream,
        framing,
        io_timeout: timeouts.io,
    };
    if framing == Framing::EmuTcp {
        conn.send_emu(EMU_TEST, EMU_CLIENT_HELLO).await?;
        match conn.recv(timeouts.io).await? {
            Incoming::EmuTest => {}
            _ => {
                return Err(
                    spdm::Error::PeerMisbehaved("emulator did not answer the hello").into(),
                );
            }
        }
    }
    let (mut requester, first) = Requester::new(config, &mut OsRng);
    conn.send_frame(Frame::Spdm(&first)).await?;
    let result = loop {
        let response = match conn.recv(timeouts.io).await? {
            Incoming::Spdm(bytes) => bytes,
            Incoming::Eof => break Err(Error::Closed),
            Incoming::Discovery(t) => break Err(Error::TransportFrame(t)),
            Incoming::Secured => {
                break Err(spdm::Error::PeerMisbehaved("secured message outside a session").into());
            }
            Incoming::EmuTest | Incoming::EmuEnd(_) => {
                break Err(
                    spdm::Error::PeerMisbehaved("emulator command in place of a response").into(),
                );
            }
        };
        let outcome = {
            let code = response.get(1).copied().unwrap_or_default();
            let _exchange = tracing::debug_span!("spdm_exchange", response = code).entered();
            requester.handle(&response)
        };
        match outcome {
            Ok(Action::Send(bytes)) => conn.send_frame(Frame::Spdm(&bytes)).await?,
            Ok(Action::WaitThenSend { delay, message }) => {
                tokio::time::sleep(delay).await;
                conn.send_frame(Frame::Spdm(&message)).await?;
            }
            Ok(Action::Done(verdict)) => break Ok(*verdict),
            Err(e) => break Err(e.into()),
        }
    };
    if framing != Framing::Dsp0287 {
        // Best effort: the verdict does not depend on the emulator acknowledging the end.
        if conn.send_emu(EMU_CONTINUE, &[]).await.is_ok() {
            let _ = conn.recv(timeouts.io).await;
        }
    }
    result
}

/// Serves SPDM requests from the requester at the other end of `stream` until it closes
/// the connection (or, with emulator framing, sends SHUTDOWN or CONTINUE).
///
/// Signing runs on the blocking pool, since a TPM-backed [`KeyStore`] blocks.
///
/// # Errors
/// [`Error::Config`] / [`Error::KeyStore`] for an unusable configuration, transport
/// failures, idle or I/O timeouts, and binding error frames from the peer.
///
/// # Cancel safety
/// Not cancel safe (as [`attest`]); drop the stream after cancelling.
pub async fn serve<S: Socket>(
    stream: &mut S,
    framing: Framing,
    config: ResponderConfig,
    keystore: Arc<dyn KeyStore>,
    timeouts: &Timeouts,
) -> Result<(), Error> {
    serve_watched(
        stream,
        framing,
        config,
        keystore,
        timeouts,
        &Activity::new(),
    )
    .await
}

/// When a session last received a request; a listener reads it to find the idlest session.
#[derive(Debug)]
pub struct Activity {
    epoch: Instant,
    /// Milliseconds after `epoch` of the last request (0: none yet).
    last: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

impl Activity {
    /// No request yet: idle since now.
    pub fn new() -> Self {
        Activity {
            epoch: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    /// A request arrived now.
    pub fn touch(&self) {
        self.touch_at(Instant::now());
    }

    /// A request arrived at `at`.
    pub fn touch_at(&self, at: Instant) {
        let ms =
            u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX);
        self.last.store(ms, Ordering::Relaxed);
    }

    /// How long before `now` the last request (or, with none, the start) was.
    pub fn idle(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.epoch)
            .saturating_sub(Duration::from_millis(self.last.load(Ordering::Relaxed)))
    }
}

/// As [`serve`], recording in `activity` when each request arrives, for a listener that lets
/// idle sessions give way.
///
/// # Errors
/// As [`serve`].
///
/// # Cancel safety
/// As [`serve`].
#[tracing::instrument(name = "spdm_serve", skip_all, fields(framing = ?framing))]
pub async fn serve_watched<S: Socket>(
    stream: &mut S,
    framing: Framing,
    config: ResponderConfig,
    keystore: Arc<dyn KeyStore>,
    timeouts: &Timeouts,
    activity: &Activity,
) -> Result<(), Error> {
    stream.configure()?;
    let mut responder = Some(Responder::new(config, keystore)?);
    let mut conn = Conn {
        stream,
        framing,
        io_timeout: timeouts.io,
    };
    loop {
        let incoming = conn.recv(timeouts.idle).await?;
        activity.touch();
        match incoming {
            Incoming::Spdm(request) => {
                tracing::debug!(
                    request = request.get(1).copied().unwrap_or_default(),
                    "spdm request"
                );
                let mut r = responder
                    .take()
                    .ok_or(spdm::Error::ApiMisuse("responder lost"))?;
                let task = tokio::task::spawn_blocking(move || {
                    let response = r.handle(&request, &mut OsRng);
                    (r, response)
                });
                let (r, response) = match tokio::time::timeout(timeouts.io, task).await {
                    Ok(Ok(done)) => done,
                    Ok(Err(_)) => return Err(Error::Panicked),
                    Err(_) => return Err(Error::Timeout("signing a response")),
                };
                responder = Some(r);
                conn.send_frame(Frame::Spdm(&response)).await?;
            }
            Incoming::EmuTest => conn.send_emu(EMU_TEST, EMU_SERVER_HELLO).await?,
            Incoming::EmuEnd(command) => {
                conn.send_emu(command, &[]).await?;
                return Ok(());
            }
            Incoming::Eof => return Ok(()),
            Incoming::Discovery(frame::TYPE_ROLE_INQUIRY) => {
                conn.send_frame(Frame::Discovery(frame::TYPE_ERROR_CANNOT_REQUESTER))
                    .await?;
            }
            Incoming::Discovery(t) => return Err(Error::TransportFrame(t)),
            Incoming::Secured => {
                conn.send_frame(Frame::Discovery(frame::TYPE_ERROR_NOT_SUPPORTED))
                    .await?;
            }
        }
    }
}
