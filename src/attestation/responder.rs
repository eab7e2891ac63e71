//! This BMC's SPDM responder on TCP (DSP0287): the listener, one task per session, and the
//! identity it serves.
//!
//! # Identity
//! In the daemon the identity is the pairing manager's: the chain `ca.der`, `identity.der`
//! in the certificate directory, checked against the key store by
//! [`ChainFiles::load`] (which test-signs with both keys), served as slot 0 root first.
//! The loaded chain is cached and re-loaded when either certificate file changes (device,
//! inode, size, mtime, ctime), so re-provisioning is picked up without a restart.
//!
//! **No identity yet** (the pairing manager has not run `ProvisionPeer("self")`), an invalid
//! one, or a key store that cannot be opened: the responder accepts each connection and
//! closes it at once (a requester sees the connection closed before VERSION, the D-Bus
//! service reports that as `Unavailable`). The chain files are re-checked on every
//! connection and every `identity_check_interval`, so the responder starts answering as soon
//! as the identity exists. It never exits for this, so there is no crash loop.
//!
//! # Bounds
//! Every requester is unauthenticated (no mutual authentication), so what one may hold is
//! bounded, and a legitimate requester is never locked out by idle connections:
//! - the listener accepts always, but keeps each waiting place for at least 100 ms: when the
//!   waiting room is full of younger connections it pauses until the oldest has waited that
//!   long, and pauses too once displacements and refusals pass 2,000 a second
//!   ([`books`]), so a silent flood churns at a bounded rate instead of taking the CPU. A new
//!   connection waits, costing a socket and nothing else, for its first byte (at most
//!   `first_request_timeout`) in a waiting room of `32 × max_sessions` places (at most 1024),
//!   `max_sessions_per_source` per address; a newcomer displaces the oldest waiting
//!   connection of its own address (or is closed at once if that one is younger than
//!   100 ms), or of the most crowded one;
//! - a connection that has spoken takes one of `max_sessions` sessions
//!   (`max_sessions_per_source` per address), displacing the idlest session if that one has
//!   had no request for `first_request_timeout`, and is refused only when all are working
//!   (see [`books`]);
//! - later requests must come within the idle deadline; each read and write has the I/O
//!   deadline, the whole session `session_timeout`;
//! - every signature (CHALLENGE_AUTH, signed MEASUREMENTS) is charged to a [`SignBudget`]
//!   per address and in all; a requester over budget gets an SPDM error, not a signature.

use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bmc_pairing_core::budget::SignBudget;
use bmc_pairing_core::keys::{Backend, Error as KeyError, PublicKey};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use super::measurements::Measurements;
use crate::config::KeyBackend;
use crate::identity::cert::ChainFiles;
use crate::identity::cert::IdentityProblem;
use crate::identity::store::{self, OpenedStore, Probe};
use crate::identity::{Fingerprint, KeyRole, KeyStore};
use crate::spdm::transport::{self, Activity, Framing, Timeouts};
use bmc_pairing_core::spdm::ResponderConfig;
use books::{Books, Limits};
pub use books::{MAX_WAITING, WAITING_PER_SESSION, waiting_places};

mod books;

/// Listener settings.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Framing on the stream.
    pub framing: Framing,
    /// Per read/write and idle deadlines.
    pub timeouts: Timeouts,
    /// How long a new connection may stay silent.
    pub first_request_timeout: Duration,
    /// Upper bound on one session.
    pub session_timeout: Duration,
    /// Concurrent connections.
    pub max_sessions: usize,
    /// Concurrent connections from one source address.
    pub max_sessions_per_source: usize,
    /// The TPM-signature budget every requester is charged to.
    pub budget: Arc<Mutex<SignBudget>>,
}

/// The key store as one requester's session sees it: every signature is charged to the
/// listener's budget for that requester's address first.
#[derive(Debug)]
struct Budgeted {
    inner: Arc<dyn KeyStore>,
    budget: Arc<Mutex<SignBudget>>,
    source: IpAddr,
}

impl KeyStore for Budgeted {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    fn generate(&self, role: KeyRole) -> Result<PublicKey, KeyError> {
        self.inner.generate(role)
    }

    fn public_key(&self, role: KeyRole) -> Result<PublicKey, KeyError> {
        self.inner.public_key(role)
    }

    fn sign_digest(&self, role: KeyRole, digest: &[u8]) -> Result<Vec<u8>, KeyError> {
        let allowed = self.budget.lock().unwrap_or_else(|p| p.into_inner()).allow(
            self.source,
            false,
            Instant::now(),
        );
        match allowed {
            Ok(()) => self.inner.sign_digest(role, digest),
            Err(refused) => Err(KeyError::Unavailable {
                backend: self.inner.backend(),
                source: Box::new(refused),
            }),
        }
    }

    fn delete(&self, role: KeyRole) -> Result<(), KeyError> {
        self.inner.delete(role)
    }
}

/// Version of a file, to notice that the chain changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: meta.dev(),
        ino: meta.ino(),
        size: meta.size(),
        mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
    })
}

/// An identity ready to serve.
#[derive(Clone, Debug)]
pub struct Served {
    /// DER certificates, root first, leaf last.
    pub chain: Vec<Vec<u8>>,
    /// SHA-256 of the leaf SubjectPublicKeyInfo.
    pub fingerprint: Fingerprint,
    /// The store that signs for it.
    pub store: Arc<dyn KeyStore>,
    /// The TPM, when the store is one (for PCR reads).
    pub tpm: Option<Arc<crate::identity::tpm::TpmKeyStore>>,
}

/// Versions of `ca.der` and `identity.der` (None: absent).
type ChainStamps = (Option<Stamp>, Option<Stamp>, Option<Stamp>);

#[derive(Debug, Default)]
struct DaemonState {
    store: Option<OpenedStore>,
    cached: Option<(ChainStamps, Served)>,
    problem: Option<String>,
}

/// Where the served identity comes from: the daemon's chain files and key store, or a
/// fixed chain and key.
#[derive(Debug)]
pub struct IdentitySource {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// The pairing manager's identity: chain files plus the configured key store, re-checked
    /// as described in the module docs.
    Daemon {
        backend: KeyBackend,
        key_dir: PathBuf,
        cert_dir: PathBuf,
        state: Box<Mutex<DaemonState>>,
    },
    /// A fixed chain and key (`respond --key --chain`).
    Fixed(Served),
}

impl IdentitySource {
    /// The daemon's source; `store` is the store opened at start-up, if that worked.
    pub fn daemon(
        backend: KeyBackend,
        key_dir: PathBuf,
        cert_dir: PathBuf,
        store: Option<OpenedStore>,
    ) -> Self {
        IdentitySource {
            kind: Kind::Daemon {
                backend,
                key_dir,
                cert_dir,
                state: Box::new(Mutex::new(DaemonState {
                    store,
                    ..DaemonState::default()
                })),
            },
        }
    }

    /// A fixed identity: `chain` root first, its leaf's key in `store`.
    ///
    /// # Errors
    /// A key-store error when the store has no identity key.
    pub fn fixed(
        chain: Vec<Vec<u8>>,
        store: Arc<dyn KeyStore>,
    ) -> Result<Self, bmc_pairing_core::keys::Error> {
        let fingerprint = store.public_key(KeyRole::Identity)?.fingerprint();
        Ok(IdentitySource {
            kind: Kind::Fixed(Served {
                chain,
                fingerprint,
                store,
                tpm: None,
            }),
        })
    }

    /// The identity to serve now, or why there is none. Blocking (files, TPM).
    ///
    /// # Errors
    /// Why nothing can be served.
    pub fn current(&self) -> Result<Served, Unservable> {
        match &self.kind {
            Kind::Fixed(served) => Ok(served.clone()),
            Kind::Daemon {
                backend,
                key_dir,
                cert_dir,
                state,
            } => {
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                let result = load_daemon_identity(&mut st, backend, key_dir, cert_dir);
                let problem = result
                    .as_ref()
                    .err()
                    .map(|e| crate::kit::ErrorChain(e).to_string());
                if problem != st.problem {
                    match (&problem, &result) {
                        (Some(why), _) => {
                            tracing::warn!(reason = %why, "no identity to serve; closing spdm connections until there is one")
                        }
                        (None, Ok(s)) => {
                            tracing::info!(fingerprint = %s.fingerprint, "serving the identity over spdm")
                        }
                        (None, Err(_)) => {}
                    }
                    st.problem = problem;
                }
                result
            }
        }
    }
}

/// Why the responder has nothing to serve.
#[derive(Debug, thiserror::Error)]
pub enum Unservable {
    /// The key store cannot be opened.
    #[error("cannot open the key store")]
    KeyStore(#[source] bmc_pairing_core::keys::Error),
    /// There is no usable identity.
    #[error("no usable identity")]
    Identity(#[source] IdentityProblem),
    /// The measurements cannot be read.
    #[error("cannot build the measurements")]
    Measurements(#[source] super::measurements::Error),
}

fn load_daemon_identity(
    st: &mut DaemonState,
    backend: &KeyBackend,
    key_dir: &Path,
    cert_dir: &Path,
) -> Result<Served, Unservable> {
    let opened = match &st.store {
        Some(s) => s.clone(),
        None => {
            let s = store::open(backend, key_dir, Probe::Now).map_err(Unservable::KeyStore)?;
            st.store = Some(s.clone());
            s
        }
    };
    // The anchors directory is part of the key: a manufacturing root installed after the
    // CA certificate changes the chain served.
    let stamps = (
        stamp(&cert_dir.join("ca.der")),
        stamp(&cert_dir.join("identity.der")),
        stamp(&crate::identity::anchors::dir(cert_dir)),
    );
    if let Some((cached_stamps, served)) = &st.cached
        && *cached_stamps == stamps
    {
        return Ok(served.clone());
    }
    st.cached = None;
    let loaded = ChainFiles::new(cert_dir)
        .load(opened.store.as_ref())
        .map_err(Unservable::Identity)?;
    let served = Served {
        fingerprint: loaded.fingerprint(),
        chain: loaded.spdm_chain(&crate::identity::anchors::load(cert_dir)),
        store: opened.store,
        tpm: opened.tpm,
    };
    st.cached = Some((stamps, served.clone()));
    Ok(served)
}

/// What the responder serves: an identity and measurements.
#[derive(Debug)]
pub struct Responder {
    identity: IdentitySource,
    measurements: Measurements,
    status: watch::Sender<Option<Fingerprint>>,
}

impl Responder {
    /// A responder; `status` receives the fingerprint served (None while there is none).
    pub fn new(
        identity: IdentitySource,
        measurements: Measurements,
        status: watch::Sender<Option<Fingerprint>>,
    ) -> Self {
        Responder {
            identity,
            measurements,
            status,
        }
    }

    fn publish(&self, fp: Option<Fingerprint>) {
        self.status.send_if_modified(|old| {
            let changed = *old != fp;
            *old = fp;
            changed
        });
    }

    /// Re-checks the identity and publishes it. Blocking.
    pub fn refresh(&self) -> Option<Fingerprint> {
        let fp = self.identity.current().ok().map(|s| s.fingerprint);
        self.publish(fp);
        fp
    }

    /// Builds the configuration for one session. Blocking.
    ///
    /// # Errors
    /// Why nothing can be served (no identity, unreadable PCRs).
    pub fn prepare(&self) -> Result<(ResponderConfig, Arc<dyn KeyStore>), Unservable> {
        let served = self.identity.current();
        self.publish(served.as_ref().ok().map(|s| s.fingerprint));
        let served = served?;
        let blocks = self
            .measurements
            .blocks(served.tpm.as_deref())
            .map_err(Unservable::Measurements)?;
        Ok((ResponderConfig::new(served.chain, blocks), served.store))
    }
}

/// Serves SPDM on `listener` until `cancel`; each connection runs on `tracker`. Accepts
/// always; see [`books`] for who waits, who works, and who gives way.
///
/// # Cancel safety
/// Runs until `cancel`; sessions stop on `cancel` too.
pub async fn serve(
    listener: TcpListener,
    responder: Arc<Responder>,
    settings: Settings,
    tracker: TaskTracker,
    cancel: CancellationToken,
) {
    let books = Arc::new(Mutex::new(Books::default()));
    let limits = Limits {
        sessions: settings.max_sessions,
        per_source: settings.max_sessions_per_source,
        waiting: waiting_places(settings.max_sessions),
        idle_allowance: settings.first_request_timeout,
        min_wait: books::MIN_WAIT,
    };
    let listener = match crate::kit::Listener::new(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %crate::kit::ErrorChain(&e), "cannot take over the spdm listener");
            return;
        }
    };
    let mut acceptor = crate::kit::Acceptor::default();
    loop {
        let paused_until = lock(&books).paused_until(limits, Instant::now());
        if let Some(until) = paused_until {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep_until(until.into()) => {}
            }
        }
        let Some((accepted, addr)) = acceptor.next(&listener, "spdm", &cancel).await else {
            return;
        };
        let source = addr.ip().to_canonical();
        let Some((id, token)) = lock(&books).wait(source, limits, &cancel, Instant::now()) else {
            tracing::debug!(%addr, "its address reconnects faster than its places free; closed");
            continue;
        };
        let tcp = match accepted.register() {
            Ok(tcp) => tcp,
            Err(e) => {
                tracing::debug!(%addr, error = %crate::kit::ErrorChain(&e), "cannot register an spdm connection");
                lock(&books).close(id);
                continue;
            }
        };
        let span = tracing::info_span!("spdm_session", %addr);
        let connection = Connection {
            id,
            source,
            books: books.clone(),
            limits,
        };
        let session = connection.run(tcp, addr, responder.clone(), settings.clone());
        let books = books.clone();
        tracker.spawn(
            async move {
                tokio::select! {
                    () = token.cancelled() => {}
                    () = session => {}
                }
                lock(&books).close(id);
            }
            .instrument(span),
        );
    }
}

fn lock(books: &Mutex<Books>) -> std::sync::MutexGuard<'_, Books> {
    books.lock().unwrap_or_else(|p| p.into_inner())
}

/// One accepted connection's place in the listener's books.
struct Connection {
    id: u64,
    source: IpAddr,
    books: Arc<Mutex<Books>>,
    limits: Limits,
}

impl Connection {
    async fn run(
        self,
        tcp: TcpStream,
        addr: SocketAddr,
        responder: Arc<Responder>,
        settings: Settings,
    ) {
        // Waiting: nothing is prepared (identity, measurements, TPM PCR reads) for a
        // connection that has not sent a byte within its first-request deadline.
        let mut probe = [0u8; 1];
        match tokio::time::timeout(settings.first_request_timeout, tcp.peek(&mut probe)).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => {
                tracing::debug!("no request within the first-request deadline; closed");
                return;
            }
        }
        let activity =
            match lock(&self.books).work(self.id, self.source, self.limits, Instant::now()) {
                Ok(activity) => activity,
                Err(why) => {
                    tracing::debug!(reason = %why, "spdm connection refused");
                    return;
                }
            };
        if tokio::time::timeout(
            settings.session_timeout,
            session(tcp, addr, responder, &settings, &activity),
        )
        .await
        .is_err()
        {
            tracing::debug!("spdm session exceeded its deadline; closed");
        }
    }
}

async fn session(
    mut tcp: TcpStream,
    addr: SocketAddr,
    responder: Arc<Responder>,
    settings: &Settings,
    activity: &Activity,
) {
    let (config, store) = match tokio::task::spawn_blocking(move || responder.prepare()).await {
        Ok(Ok(p)) => p,
        Ok(Err(why)) => {
            tracing::debug!(reason = %crate::kit::ErrorChain(&why), "nothing to serve; closing");
            return;
        }
        Err(_) => {
            tracing::error!("preparing a session panicked; closing");
            return;
        }
    };
    let store: Arc<dyn KeyStore> = Arc::new(Budgeted {
        inner: store,
        budget: settings.budget.clone(),
        source: addr.ip().to_canonical(),
    });
    match transport::serve_watched(
        &mut tcp,
        settings.framing,
        config,
        store,
        &settings.timeouts,
        activity,
    )
    .await
    {
        Ok(()) => tracing::debug!("spdm session ended"),
        Err(e) => tracing::debug!(
            error = %crate::kit::ErrorChain(&e),
            "spdm session ended with an error"
        ),
    }
}

/// Re-checks the identity every `interval` until `cancel`, so the D-Bus status follows the
/// chain files even when no requester connects.
///
/// # Cancel safety
/// Runs until `cancel`.
pub async fn watch_identity(
    responder: Arc<Responder>,
    interval: Duration,
    cancel: CancellationToken,
) {
    loop {
        let r = responder.clone();
        let check = tokio::task::spawn_blocking(move || r.refresh());
        tokio::select! {
            () = cancel.cancelled() => return,
            _ = check => {}
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
    }
}
