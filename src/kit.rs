//! What both daemons share around their own work: start-up errors, logging and runtime
//! set-up, the bus to use, the shutdown path, and the error-chain printer. Each daemon's
//! wiring (`daemon` for the pairing manager, `attestation` for `bmc-attestation`) uses these
//! and nothing of the other.

use std::fmt;
use std::future::Future;
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Prints an error with every cause after it: `error: cause: cause`. Use it wherever an
/// error reaches a person (journal, stderr, a D-Bus error message), so no cause is lost.
#[derive(Clone, Copy)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'a));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// An error that displays with its whole chain ([`ErrorChain`]), for seams that take
/// `impl Display` and should still carry the typed error.
#[derive(Debug)]
pub struct Chained<E>(pub E);

impl<E: std::error::Error> fmt::Display for Chained<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        ErrorChain(&self.0).fmt(f)
    }
}

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The key store could not be opened.
    #[error("cannot open the key store")]
    KeyStore(#[source] bmc_pairing_core::keys::Error),
    /// A TCP port could not be bound.
    #[error("cannot listen on port {port}{}", device.as_ref().map(|d| format!(" on {d}")).unwrap_or_default())]
    Listen {
        /// The port.
        port: u16,
        /// The interface it was bound to.
        device: Option<String>,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// D-Bus set-up failed.
    #[error("cannot set up D-Bus")]
    Dbus(#[source] zbus::Error),
    /// A start-up task panicked (a bug).
    #[error("start-up task `{0}` panicked")]
    Panicked(&'static str),
}

impl StartError {
    /// True when another process owns one of our bus names.
    pub fn name_taken(&self) -> bool {
        matches!(self, StartError::Dbus(zbus::Error::NameTaken))
    }
}

/// Which bus to connect to.
#[derive(Clone, Debug)]
pub enum Bus {
    /// The system bus (honours `DBUS_SYSTEM_BUS_ADDRESS`).
    System,
    /// An explicit address (`--bus unix:path=...`), e.g. a test's private dbus-daemon.
    Address(String),
}

impl Bus {
    /// `--bus ADDRESS` if given, else the system bus.
    pub fn from_arg(address: Option<String>) -> Bus {
        address.map_or(Bus::System, Bus::Address)
    }

    /// A connection builder for this bus.
    ///
    /// # Errors
    /// zbus errors for a malformed address.
    pub fn builder(&self) -> zbus::Result<zbus::connection::Builder<'static>> {
        match self {
            Bus::System => zbus::connection::Builder::system(),
            Bus::Address(addr) => zbus::connection::Builder::address(addr.as_str()),
        }
    }

    /// A plain client connection.
    ///
    /// # Errors
    /// zbus errors.
    pub async fn connect(&self) -> zbus::Result<zbus::Connection> {
        self.builder()?.build().await
    }
}

/// Logs to stderr (journald reads it) as plain text; `RUST_LOG` overrides `default_level`
/// (see [`log_filter`]).
pub fn init_tracing(default_level: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref(), default_level);
    tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_target(false)
                .with_writer(std::io::stderr),
        )
        .with(filter)
        .init();
}

/// The log filter: `RUST_LOG` when it parses as a list of `level` and `target=level`
/// directives (e.g. `info,bmc_pairing_manager::link=debug`), else `default_level`.
///
/// This is `tracing-subscriber`'s regex-free [`Targets`](tracing_subscriber::filter::Targets):
/// no span or field filters, which the env-filter's regex engine (~0.8 MiB) would cost.
pub fn log_filter(
    rust_log: Option<&str>,
    default_level: &str,
) -> tracing_subscriber::filter::Targets {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    rust_log
        .and_then(|s| s.parse::<Targets>().ok())
        .or_else(|| default_level.parse::<Targets>().ok())
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO))
}

/// The async runtime both daemons run on, for a BMC with one or two cores: the daemon's
/// main future on the main thread, spawned tasks on **one** worker thread. It stays a
/// multi-thread runtime because rustls signs synchronously inside a handshake and a TPM
/// signature can take milliseconds (up to the key store's call timeout with a hung TPM):
/// the signer marks that `block_in_place`, and tokio hands the worker's tasks (sessions,
/// heartbeats, D-Bus) to a blocking-pool thread meanwhile; a current-thread runtime would
/// stall them all. Idle threads: main, worker, and the TPM owner thread with the TPM
/// backend; blocking-pool threads come for file and TPM work and leave after 10 s idle.
///
/// # Errors
/// The OS refused the threads or the reactor.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
}

/// Runs a daemon to its end and turns the result into the exit status, logging a start-up
/// failure with its whole chain.
pub fn run_daemon(
    daemon: &str,
    run: impl FnOnce(&tokio::runtime::Runtime) -> Result<(), StartError>,
) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %ErrorChain(&e), "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match run(&rt) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let hint = if e.name_taken() {
                format!(" (is another {daemon} running on this bus?)")
            } else {
                String::new()
            };
            tracing::error!("{}{hint}", ErrorChain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Runs until `shutdown` completes or the bus connection closes, then cancels every task and
/// waits (at most 5 s) for them to stop. Both daemons end this way.
///
/// # Cancel safety
/// Not cancel safe: the tasks are only stopped if it runs to the end.
pub async fn serve_until(
    conn: &zbus::Connection,
    shutdown: impl Future<Output = ()>,
    cancel: &CancellationToken,
    tracker: &TaskTracker,
) {
    let closed = async {
        // zbus ends its message stream when the bus goes away.
        use futures_util::StreamExt;
        let mut stream = zbus::MessageStream::from(conn);
        while stream.next().await.is_some() {}
    };
    tokio::select! {
        () = shutdown => tracing::info!("shutting down"),
        () = closed => tracing::warn!("D-Bus connection closed; shutting down"),
    }
    stop(cancel, tracker).await;
}

/// Cancels every task and waits (at most 5 s) for them to stop.
pub async fn stop(cancel: &CancellationToken, tracker: &TaskTracker) {
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(5), tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!("some tasks did not stop within 5 s");
    }
}

/// Completes on SIGTERM (systemd stopping the unit) or SIGINT, for either daemon's
/// `shutdown` future. Falls back to Ctrl-C alone if the handlers cannot be installed.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// This boot's identifier, for the `Hello` frame: the first 8 bytes of the SHA-256 of the
/// content of `path` (the kernel's per-boot UUID by default), never 0. When the file cannot
/// be read, a random value for this process's lifetime (logged): a restart then looks like
/// a reboot to peers, which costs a re-attestation and nothing else.
pub fn boot_id(path: &std::path::Path) -> u64 {
    use sha2::Digest;
    let from_file = std::fs::read(path).ok().and_then(|text| {
        let digest = sha2::Sha256::digest(text.trim_ascii());
        let first: [u8; 8] = digest.get(..8)?.try_into().ok()?;
        Some(u64::from_be_bytes(first))
    });
    match from_file {
        Some(id) if id != 0 => id,
        _ => {
            tracing::warn!(path = %path.display(), "cannot read the boot id; using a random one for this run");
            rand_core::RngCore::next_u64(&mut rand_core::OsRng).max(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn log_filter_takes_rust_log_levels_and_targets_without_regex() {
        use tracing::Level;
        let default = log_filter(None, "info");
        assert!(default.would_enable("bmc_pairing_manager::link", &Level::INFO));
        assert!(!default.would_enable("bmc_pairing_manager::link", &Level::DEBUG));
        let warn = log_filter(Some("warn"), "info");
        assert!(!warn.would_enable("bmc_pairing_manager", &Level::INFO));
        let per_target = log_filter(Some("warn,bmc_pairing_manager::link=debug"), "info");
        assert!(per_target.would_enable("bmc_pairing_manager::link::tls", &Level::DEBUG));
        assert!(!per_target.would_enable("zbus", &Level::INFO));
        // Not a directive list (a span filter is env-filter syntax): the default applies.
        let bad = log_filter(Some("[span{x=1}]=debug"), "info");
        assert!(bad.would_enable("zbus", &Level::INFO));
        assert!(!bad.would_enable("zbus", &Level::DEBUG));
    }

    #[test]
    fn the_chain_prints_every_cause() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(ErrorChain(&e).to_string(), "outer: inner");
    }

    #[test]
    fn name_taken_is_matched_by_type() {
        assert!(StartError::Dbus(zbus::Error::NameTaken).name_taken());
        assert!(!StartError::Dbus(zbus::Error::InvalidReply).name_taken());
    }

    #[test]
    fn the_boot_id_follows_the_file_and_is_never_zero() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("boot_id");
        std::fs::write(&file, "6c2f1a\n").unwrap();
        let first = boot_id(&file);
        assert_eq!(first, boot_id(&file), "same boot, same id");
        assert_ne!(first, 0);
        std::fs::write(&file, "9e81bd\n").unwrap();
        assert_ne!(boot_id(&file), first, "another boot");
        assert_ne!(boot_id(&dir.path().join("missing")), 0);
    }
}

/// A TCP listener whose connections are taken without registering them with the runtime:
/// a connection that is refused at once (a flood) costs an `accept` and a `close`, not also
/// an `epoll_ctl` in and out and the runtime's bookkeeping. Only connections that are kept
/// are [`Accepted::register`]ed.
#[derive(Debug)]
pub struct Listener(tokio::io::unix::AsyncFd<std::net::TcpListener>);

impl Listener {
    /// Takes over a bound, listening socket.
    ///
    /// # Errors
    /// When the socket cannot be moved out of the runtime's registration or into this one.
    pub fn new(listener: tokio::net::TcpListener) -> std::io::Result<Listener> {
        // `AsyncFd::new` is deprecated in favour of the `unsafe` `register` (this crate
        // forbids `unsafe`), because an arbitrary `AsRawFd` may close or swap its descriptor
        // while registered. A `std::net::TcpListener` owns its descriptor until it is dropped,
        // which the `AsyncFd` does only after deregistering it, so the condition holds here.
        #[allow(deprecated)]
        tokio::io::unix::AsyncFd::new(listener.into_std()?).map(Listener)
    }
}

/// A connection just taken from a [`Listener`]: not yet known to the runtime, so dropping it
/// is only a `close`.
#[derive(Debug)]
pub struct Accepted(std::net::TcpStream);

impl Accepted {
    /// True when the client has sent something already (a requester sends its first
    /// request with the handshake; a silent flooder has not), without waiting.
    pub fn has_data(&self) -> bool {
        let socket = socket2::SockRef::from(&self.0);
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        matches!(
            socket.recv_with_flags(&mut byte, libc_flags::PEEK_DONTWAIT),
            Ok(n) if n > 0
        )
    }

    /// Hands the connection to the runtime, to be read and written asynchronously.
    ///
    /// # Errors
    /// When it cannot be made non-blocking or registered.
    pub fn register(self) -> std::io::Result<tokio::net::TcpStream> {
        self.0.set_nonblocking(true)?;
        tokio::net::TcpStream::from_std(self.0)
    }
}

/// `MSG_PEEK | MSG_DONTWAIT`, spelled here because std has no name for them.
mod libc_flags {
    /// Look at the data without taking it, and do not wait for it.
    pub(super) const PEEK_DONTWAIT: std::ffi::c_int = 0x02 | 0x40;
}

/// The accept side of a TCP listener, shared by both daemons' listeners.
#[derive(Debug, Default)]
pub struct Acceptor {
    /// Consecutive accept failures.
    failures: u32,
}

impl Acceptor {
    /// The next connection on `listener`, or `None` once `cancel` fires. An accept failure
    /// (EMFILE and friends) is logged (`what` names the listener) and followed by a pause of
    /// 10 ms per consecutive failure, at most 1 s, instead of a spin.
    ///
    /// # Cancel safety
    /// Cancel safe: a connection is only taken when it is returned.
    pub async fn next(
        &mut self,
        listener: &Listener,
        what: &'static str,
        cancel: &CancellationToken,
    ) -> Option<(Accepted, std::net::SocketAddr)> {
        loop {
            let accepted = tokio::select! {
                () = cancel.cancelled() => return None,
                ready = listener.0.readable() => match ready {
                    Ok(mut guard) => match guard.try_io(|l| l.get_ref().accept()) {
                        Ok(accepted) => accepted,
                        Err(_would_block) => continue,
                    },
                    Err(e) => Err(e),
                },
            };
            match accepted {
                Ok((stream, addr)) => {
                    self.failures = 0;
                    return Some((Accepted(stream), addr));
                }
                Err(e) => {
                    self.failures = self.failures.saturating_add(1);
                    tracing::warn!(listener = what, error = %ErrorChain(&e), "accept failed");
                    let pause = Duration::from_millis(
                        10u64.saturating_mul(u64::from(self.failures.min(100))),
                    );
                    tokio::select! {
                        () = cancel.cancelled() => return None,
                        () = tokio::time::sleep(pause) => {}
                    }
                }
            }
        }
    }
}
