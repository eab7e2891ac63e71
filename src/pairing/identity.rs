//! The identity keeper: owns this BMC's loaded identity and everything built from it (the
//! listener's TLS configuration, the diallers' credentials, the trust anchors), and does all
//! key-store work on blocking threads, so a slow or hung TPM never stalls the actor. Its
//! results come back on its own channel ([`Keeper::next`]); what they mean for pairing is
//! the core's decision.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bmc_pairing_core::keys::KeyStore;
use bmc_pairing_core::pairing::TrustMode;
use rustls::ServerConfig;
use rustls::pki_types::UnixTime;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::task::TaskTracker;

use super::dial::Credentials;
use crate::identity::cert::{ChainFiles, IdentityProblem, LoadedIdentity};
use crate::identity::csr::CsrRequest;
use crate::identity::{Fingerprint, anchors};
use crate::kit::ErrorChain;
use crate::link::server::Sessions;
use crate::link::tls::{self, PinSet};
use crate::pairing::handle::IdentityView;
use crate::pairing::reset::{Reset, ResetError};

/// What the keeper found, for the actor to hand to the core.
#[derive(Debug)]
pub enum IdentityNews {
    /// `ProvisionPeer("self")` work finished: the identity exists (created or re-used).
    Ready(Fingerprint),
    /// `ProvisionPeer("self")` work failed; nothing changed.
    Failed(EnsureError),
    /// Same key, new certificates on disk: they are in use from now on.
    CertificatesChanged,
    /// The identity is gone (TPM cleared, blob or certificate corrupt or missing).
    Lost,
    /// The factory-reset erase finished (or failed; the marker then stays and the next
    /// start-up finishes it).
    Erased(Result<(), ResetError>),
}

/// Why `ProvisionPeer("self")` could not create or re-use the identity.
#[derive(Debug, thiserror::Error)]
pub enum EnsureError {
    /// The key store or certificate work failed.
    #[error("cannot create the identity")]
    Identity(#[source] crate::identity::Error),
    /// The blocking task panicked (a bug).
    #[error("the identity task panicked")]
    Panicked,
}

/// A change to the identity certificates asked for on D-Bus (or a CSR).
#[derive(Debug)]
pub enum CertificateRequest {
    /// `GenerateCSR`: a request for the CA key.
    GenerateCsr(Box<CsrRequest>),
    /// `Replace` of the CA certificate: the bytes of the file given.
    ReplaceCa(Vec<u8>),
    /// `Delete` of the CA certificate: a newly self-issued one for the same key.
    DeleteCa,
    /// `Delete` of the identity certificate: a newly issued one for the same key.
    DeleteLeaf,
}

/// What a [`CertificateRequest`] produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CertificateAnswer {
    /// The CSR, PEM.
    Csr(String),
    /// The certificates changed and are in use.
    Done,
}

/// Why a [`CertificateRequest`] changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    /// The caller's input was refused (the message says which check).
    #[error("{0}")]
    Refused(String),
    /// The request is not allowed in this state (e.g. the anchor is already installed).
    #[error("{0}")]
    NotAllowed(String),
    /// The object the request names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// There is no identity to act on.
    #[error("no identity yet: ProvisionPeer(\"self\") creates one")]
    NoIdentity,
    /// Other identity work is running, or the key store does not answer; try again.
    #[error("{0}")]
    Busy(String),
    /// A local fault.
    #[error("{0}")]
    Internal(String),
}

impl From<crate::identity::Error> for CertificateError {
    fn from(e: crate::identity::Error) -> Self {
        use crate::identity::Error as E;
        let text = format!("{}", ErrorChain(&e));
        match e {
            E::Certificate(_) | E::NotACertificate { .. } => CertificateError::Refused(text),
            E::Key(bmc_pairing_core::keys::Error::Unavailable { .. }) => {
                CertificateError::Busy(text)
            }
            E::Key(_) | E::Issue(_) | E::Persist { .. } => CertificateError::Internal(text),
        }
    }
}

/// A change to the trust store asked for on D-Bus.
#[derive(Debug)]
pub enum AnchorRequest {
    /// `Certs.Install`: the bytes of the file given.
    Install(Vec<u8>),
    /// `Object.Delete` of the anchor with this id.
    Delete(String),
}

/// Where the answer to a [`CertificateRequest`] goes.
pub type CertificateReply = oneshot::Sender<Result<CertificateAnswer, CertificateError>>;

/// The identity chain's certificates, for D-Bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityChain {
    /// DER of the per-BMC CA certificate.
    pub ca: Arc<[u8]>,
    /// DER of the identity leaf.
    pub leaf: Arc<[u8]>,
}

/// What a periodic check found: the identity on disk, and the outcome of a renewal if one
/// was due.
struct Checked {
    identity: LoadedIdentity,
    renewal: Option<Result<(), crate::identity::Error>>,
}

enum Work {
    Ensured(Result<(LoadedIdentity, bool), EnsureError>),
    Erased(Result<(), ResetError>),
    /// A check's result, with the certificate generation it started at.
    Checked(Result<Checked, IdentityProblem>, SystemTime, u64),
    /// A certificate request's result (with the identity as reloaded after a change).
    Certificates(
        Result<(CertificateAnswer, Option<LoadedIdentity>), CertificateError>,
        CertificateReply,
        u64,
    ),
    /// The check's blocking task panicked: a bug, which says nothing about the identity.
    CheckPanicked,
}

/// Everything the keeper needs from the daemon.
pub struct KeeperParts {
    /// The key store.
    pub store: Arc<dyn KeyStore>,
    /// The chain on disk.
    pub chain: ChainFiles,
    /// This BMC's name (certificate CN and SAN).
    pub bmc_name: String,
    /// Anchors admit peers only in anchored mode.
    pub trust_mode: TrustMode,
    /// The listener's pin set (its verifier reads it).
    pub pins: PinSet,
    /// The identities owed a goodbye (its verifier lets them through for that).
    pub farewells: PinSet,
    /// The listener's sessions (cut when our key changes).
    pub sessions: Sessions,
    /// Where the listener takes its TLS configuration from.
    pub server_tls: watch::Sender<Option<Arc<ServerConfig>>>,
    /// Where the diallers take their credentials from.
    pub credentials: watch::Sender<Option<Credentials>>,
    /// Blocking work runs under it.
    pub tracker: TaskTracker,
}

/// The identity keeper.
pub struct Keeper {
    parts: KeeperParts,
    identity: Option<LoadedIdentity>,
    anchors: Vec<Vec<u8>>,
    /// Every anchor in the trust store, whatever the trust mode (for D-Bus).
    trust_store: Vec<Arc<[u8]>>,
    /// The listener's resumable sessions, kept across rebuilds of its configuration for
    /// the same identity key (renewed certificates, a changed trust store, the floor), so
    /// those do not send every peer back to a full handshake; a new key starts afresh.
    tickets: Option<(Fingerprint, Arc<tls::Tickets>)>,
    floor: UnixTime,
    ensuring: bool,
    checking: bool,
    /// A certificate request is running.
    changing: bool,
    /// `ensure` was asked for while a certificate request ran (at this time).
    ensure_after_change: Option<SystemTime>,
    /// Counts certificate changes, so a check that read the files before one is discarded.
    generation: u64,
    /// This BMC joined a group: its trust store admits peers (the group root is in it)
    /// whatever the configured trust mode.
    group_member: bool,
    expired_reported: bool,
    done_tx: mpsc::UnboundedSender<Work>,
    done_rx: mpsc::UnboundedReceiver<Work>,
}

impl Keeper {
    /// Loads the identity, and renews what of it is due at the floored clock. Blocking
    /// (TPM): call it at start-up from a blocking context.
    pub fn load(parts: KeeperParts, floor_unix: u64) -> Self {
        let now = crate::clock::floored_now(floor_unix);
        let identity = match parts.chain.load(parts.store.as_ref()) {
            Ok(id) if id.renewal_due(now) => {
                match parts.chain.renew_if_due(
                    parts.store.as_ref(),
                    id.clone(),
                    &parts.bmc_name,
                    now,
                ) {
                    Ok(renewed) => {
                        log_renewed(&renewed);
                        Some(renewed)
                    }
                    Err(e) => {
                        log_renewal_failed(&id, &e, now);
                        Some(id)
                    }
                }
            }
            Ok(id) => Some(id),
            Err(IdentityProblem::Absent) => {
                tracing::info!("no identity yet; ProvisionPeer(\"self\") creates one");
                None
            }
            Err(problem @ IdentityProblem::Invalid(_)) => {
                tracing::error!(reason = %ErrorChain(&problem), "identity is invalid; Provisioned is false until ProvisionPeer(\"self\") re-creates it");
                None
            }
            Err(problem @ IdentityProblem::Unavailable(_)) => {
                tracing::error!(reason = %ErrorChain(&problem), "key store unavailable at start-up; Provisioned is false until it answers");
                None
            }
        };
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let mut keeper = Keeper {
            anchors: Vec::new(),
            trust_store: Vec::new(),
            tickets: None,
            identity,
            floor: unix_time(floor_unix),
            ensuring: false,
            checking: false,
            changing: false,
            ensure_after_change: None,
            generation: 0,
            group_member: false,
            expired_reported: false,
            done_tx,
            done_rx,
            parts,
        };
        keeper.anchors = keeper.load_anchors();
        keeper.trust_store = keeper.load_trust_store();
        keeper.install();
        keeper
    }

    /// The loaded identity's pin, if there is one.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.identity.as_ref().map(LoadedIdentity::fingerprint)
    }

    /// Raises the time floor certificates are checked against (from the core's floor).
    pub fn set_floor(&mut self, floor_unix: u64) {
        let floor = unix_time(floor_unix);
        if floor != self.floor {
            self.floor = floor;
            self.publish_credentials();
        }
    }

    /// Starts creating or re-using (and renewing) the identity; [`IdentityNews::Ready`] or
    /// [`IdentityNews::Failed`] follows. Returns false if that work is already running.
    pub fn ensure(&mut self, now: SystemTime) -> bool {
        if self.ensuring || self.ensure_after_change.is_some() {
            return false;
        }
        if self.changing {
            // Started when the certificate request is done, so it reads the new files.
            self.ensure_after_change = Some(now);
            return true;
        }
        self.ensuring = true;
        let store = self.parts.store.clone();
        let chain = self.parts.chain.clone();
        let name = self.parts.bmc_name.clone();
        let tx = self.done_tx.clone();
        self.parts.tracker.spawn(async move {
            let work =
                tokio::task::spawn_blocking(move || ensure(&chain, store.as_ref(), &name, now));
            let result = work.await.unwrap_or(Err(EnsureError::Panicked));
            let _ = tx.send(Work::Ensured(result));
        });
        true
    }

    /// Starts a check of the identity (a test signature, the files on disk, the anchors)
    /// and renews what of it is due at `now` (the floored clock): the leaf before its
    /// notAfter, a self-signed CA too. [`IdentityNews::CertificatesChanged`] (renewed, or
    /// changed on disk) or [`IdentityNews::Lost`] may follow.
    pub fn check(&mut self, now: SystemTime) {
        if self.identity.is_none() || self.checking || self.ensuring || self.changing {
            return;
        }
        if let Some(id) = &self.identity
            && id.expired(now)
            && !self.expired_reported
        {
            tracing::error!(
                not_after = %crate::clock::unix_secs(id.leaf_not_after),
                ca_not_after = %crate::clock::unix_secs(id.ca_not_after),
                "our identity certificate has expired: peers refuse it until it is renewed"
            );
            self.expired_reported = true;
        }
        self.checking = true;
        let generation = self.generation;
        let store = self.parts.store.clone();
        let chain = self.parts.chain.clone();
        let name = self.parts.bmc_name.clone();
        let tx = self.done_tx.clone();
        self.parts.tracker.spawn(async move {
            let work = tokio::task::spawn_blocking(move || {
                let identity = chain.load(store.as_ref())?;
                if !identity.renewal_due(now) {
                    return Ok(Checked {
                        identity,
                        renewal: None,
                    });
                }
                Ok(
                    match chain.renew_if_due(store.as_ref(), identity.clone(), &name, now) {
                        Ok(renewed) => Checked {
                            identity: renewed,
                            renewal: Some(Ok(())),
                        },
                        Err(e) => Checked {
                            identity,
                            renewal: Some(Err(e)),
                        },
                    },
                )
            });
            let _ = tx.send(
                work.await
                    .map_or(Work::CheckPanicked, |r| Work::Checked(r, now, generation)),
            );
        });
    }

    /// The identity chain's certificates, if there is an identity.
    pub fn chain(&self) -> Option<IdentityChain> {
        self.identity.as_ref().map(|id| IdentityChain {
            ca: id.ca_der.as_slice().into(),
            leaf: id.leaf_der.as_slice().into(),
        })
    }

    /// Runs a certificate request on a blocking thread; the answer goes to `reply` when it
    /// is done, and [`IdentityNews::CertificatesChanged`] follows a change, so peers get the
    /// new chain as they get a renewed one. Refused at once without an identity or while
    /// other identity work runs.
    pub fn certificates(
        &mut self,
        request: CertificateRequest,
        now: SystemTime,
        reply: CertificateReply,
    ) {
        if self.identity.is_none() {
            let _ = reply.send(Err(CertificateError::NoIdentity));
            return;
        }
        if self.ensuring || self.changing {
            let _ = reply.send(Err(CertificateError::Busy(
                "other identity work is running; try again".into(),
            )));
            return;
        }
        self.changing = true;
        self.generation += 1;
        let generation = self.generation;
        let store = self.parts.store.clone();
        let chain = self.parts.chain.clone();
        let name = self.parts.bmc_name.clone();
        let tx = self.done_tx.clone();
        self.parts.tracker.spawn(async move {
            let work = tokio::task::spawn_blocking(move || {
                run_certificate_request(&chain, store.as_ref(), &name, request, now)
            });
            let result = work.await.unwrap_or_else(|_| {
                Err(CertificateError::Internal(
                    "the certificate task panicked".into(),
                ))
            });
            let _ = tx.send(Work::Certificates(result, reply, generation));
        });
    }

    /// What D-Bus shows of our identity's validity at `now`.
    pub fn view(&self, now: SystemTime) -> IdentityView {
        match &self.identity {
            Some(id) => IdentityView {
                not_after: crate::clock::unix_secs(id.leaf_not_after),
                authority_not_after: crate::clock::unix_secs(id.ca_not_after),
                expired: id.expired(now),
            },
            None => IdentityView::default(),
        }
    }

    /// `FactoryReset.Reset()`: forgets the identity at once (no TLS configuration, sessions
    /// cut), then erases it as `reset` says, on a blocking thread;
    /// [`IdentityNews::Erased`] follows. The caller has committed the reset
    /// ([`Reset::begin`]) before.
    pub fn erase(&mut self, reset: Reset) {
        self.identity = None;
        self.generation += 1;
        self.install();
        self.parts.sessions.cancel_unless(|_| false);
        let store = self.parts.store.clone();
        let tx = self.done_tx.clone();
        self.parts.tracker.spawn(async move {
            let work = tokio::task::spawn_blocking(move || reset.erase(store.as_ref()));
            let result = work.await.unwrap_or(Err(ResetError::Panicked));
            let _ = tx.send(Work::Erased(result));
        });
    }

    /// The next finished piece of work, as news for the core (`None` when it changed
    /// nothing).
    ///
    /// # Cancel safety
    /// Cancel safe.
    pub async fn next(&mut self) -> Option<IdentityNews> {
        let work = self.done_rx.recv().await?;
        Some(match work {
            Work::Ensured(result) => self.ensured(result),
            Work::Erased(result) => {
                self.identity = None;
                self.install();
                IdentityNews::Erased(result)
            }
            Work::Checked(_, _, generation) if generation != self.generation => {
                // It read the files before a certificate request changed them.
                self.checking = false;
                return None;
            }
            Work::Checked(result, now, _) => self.checked(result, now)?,
            Work::Certificates(result, reply, generation) => {
                self.changing = false;
                if let Some(at) = self.ensure_after_change.take() {
                    self.ensure(at);
                }
                match result {
                    Ok(_) if generation != self.generation => {
                        // A factory reset erased the identity meanwhile.
                        let _ = reply.send(Err(CertificateError::Busy(
                            "the identity was reset meanwhile".into(),
                        )));
                        return None;
                    }
                    Ok((answer, Some(identity))) => {
                        tracing::info!(
                            fingerprint = %identity.fingerprint(),
                            not_after = %crate::clock::unix_secs(identity.leaf_not_after),
                            ca_not_after = %crate::clock::unix_secs(identity.ca_not_after),
                            "identity certificates changed on request (same keys: pins unchanged)"
                        );
                        self.identity = Some(identity);
                        self.install();
                        let _ = reply.send(Ok(answer));
                        IdentityNews::CertificatesChanged
                    }
                    other => {
                        if let Err(e) = &other {
                            tracing::info!(reason = %e, "certificate request changed nothing");
                        }
                        let _ = reply.send(other.map(|(answer, _)| answer));
                        return None;
                    }
                }
            }
            Work::CheckPanicked => {
                self.checking = false;
                tracing::error!("the identity check panicked; state kept, checking again later");
                return None;
            }
        })
    }

    fn ensured(&mut self, result: Result<(LoadedIdentity, bool), EnsureError>) -> IdentityNews {
        self.ensuring = false;
        match result {
            Ok((identity, created)) => {
                let fp = identity.fingerprint();
                if created {
                    tracing::info!(fingerprint = %fp, backend = %self.parts.store.backend(), "identity created");
                    // A new key makes every existing session stale.
                    self.parts.sessions.cancel_unless(|_| false);
                }
                self.identity = Some(identity);
                self.install();
                IdentityNews::Ready(fp)
            }
            Err(e) => {
                tracing::error!(error = %ErrorChain(&e), "cannot create the identity");
                IdentityNews::Failed(e)
            }
        }
    }

    fn checked(
        &mut self,
        result: Result<Checked, IdentityProblem>,
        now: SystemTime,
    ) -> Option<IdentityNews> {
        self.checking = false;
        self.trust_store = self.load_trust_store();
        let anchors = self.load_anchors();
        if anchors != self.anchors {
            tracing::info!(count = anchors.len(), "trust store changed");
            self.anchors = anchors;
            self.install();
        }
        match result {
            Ok(Checked { identity, renewal }) => {
                match &renewal {
                    Some(Ok(())) => log_renewed(&identity),
                    Some(Err(e)) => log_renewal_failed(&identity, e, now),
                    None => {}
                }
                if !identity.expired(now) {
                    self.expired_reported = false;
                }
                let loaded = identity;
                let current = self.identity.as_ref()?;
                let changed = current.fingerprint() == loaded.fingerprint()
                    && (current.ca_der != loaded.ca_der || current.leaf_der != loaded.leaf_der);
                if !changed {
                    return None;
                }
                tracing::info!("identity certificates changed on disk; using them");
                self.identity = Some(loaded);
                self.install();
                Some(IdentityNews::CertificatesChanged)
            }
            // A hung or restarting TPM is not a lost key: keep the state, check again later.
            Err(problem @ IdentityProblem::Unavailable(_)) => {
                tracing::warn!(reason = %ErrorChain(&problem), "key store did not answer the identity check");
                if self.identity.as_ref().is_some_and(|id| id.expired(now)) {
                    tracing::error!(reason = %ErrorChain(&problem), "our identity certificate has expired and cannot be renewed while the key store does not answer");
                }
                None
            }
            // `ensure` may have replaced the identity while this check ran.
            Err(_) if self.identity.is_none() || self.ensuring => None,
            Err(problem) => {
                tracing::error!(reason = %ErrorChain(&problem), backend = %self.parts.store.backend(), "identity lost; Provisioned is now false");
                self.identity = None;
                self.install();
                self.parts.sessions.cancel_unless(|_| false);
                Some(IdentityNews::Lost)
            }
        }
    }

    /// Every anchor of the trust store (shown on D-Bus in both modes).
    fn load_trust_store(&self) -> Vec<Arc<[u8]>> {
        anchors::load(self.parts.chain.dir())
            .into_iter()
            .map(Arc::from)
            .collect()
    }

    /// The trust store's anchors, for D-Bus.
    pub fn trust_store(&self) -> Vec<Arc<[u8]>> {
        self.trust_store.clone()
    }

    /// Installs or removes an anchor (a file write, no key-store work) and puts the trust
    /// store in use at once. Returns the anchor's id.
    ///
    /// # Errors
    /// [`CertificateError::Refused`] for a file that is not one CA certificate valid now,
    /// [`CertificateError::NotAllowed`] for one already installed,
    /// [`CertificateError::NotFound`] for an unknown id; nothing changes then.
    pub fn anchors_request(
        &mut self,
        request: AnchorRequest,
        now: SystemTime,
    ) -> Result<String, CertificateError> {
        let dir = self.parts.chain.dir().to_path_buf();
        let id = match request {
            AnchorRequest::Install(bytes) => match anchors::install(&dir, &bytes, now)? {
                (id, anchors::Installed::New(_)) => {
                    tracing::info!(anchor = %id, "trust anchor installed");
                    id
                }
                (id, anchors::Installed::AlreadyThere) => {
                    return Err(CertificateError::NotAllowed(format!(
                        "trust anchor {id} is already installed"
                    )));
                }
            },
            AnchorRequest::Delete(id) => {
                if !anchors::remove(&dir, &id)? {
                    return Err(CertificateError::NotFound(format!("no trust anchor {id}")));
                }
                tracing::info!(anchor = %id, "trust anchor removed");
                id
            }
        };
        self.trust_store = self.load_trust_store();
        self.anchors = self.load_anchors();
        self.install();
        Ok(id)
    }

    /// The trust store, in anchored mode or on a group member (in first-contact mode
    /// outside a group no anchor admits anyone).
    fn load_anchors(&self) -> Vec<Vec<u8>> {
        match self.parts.trust_mode {
            TrustMode::Anchored => anchors::load(self.parts.chain.dir()),
            TrustMode::FirstContact if self.group_member => anchors::load(self.parts.chain.dir()),
            TrustMode::FirstContact => Vec::new(),
        }
    }

    /// This BMC is (or is no longer) a group member: its trust store admits peers from now
    /// on (or only in anchored mode again).
    pub fn set_group_member(&mut self, member: bool) {
        if self.group_member == member {
            return;
        }
        self.group_member = member;
        self.anchors = self.load_anchors();
        self.install();
    }

    /// The key store (for the group root's work, on blocking threads).
    pub fn store(&self) -> Arc<dyn KeyStore> {
        self.parts.store.clone()
    }

    /// The directory of the identity chain (the group root certificate lives there too).
    pub fn cert_dir(&self) -> std::path::PathBuf {
        self.parts.chain.dir().to_path_buf()
    }

    /// This BMC's name.
    pub fn bmc_name(&self) -> &str {
        &self.parts.bmc_name
    }

    /// Whether identity work (creation, a certificate change) is running now.
    pub fn busy(&self) -> bool {
        self.ensuring || self.changing
    }

    /// Publishes the listener's TLS configuration and the diallers' credentials for the
    /// current identity (none without one).
    fn install(&mut self) {
        let fingerprint = self.identity.as_ref().map(LoadedIdentity::fingerprint);
        let tickets = match (&self.tickets, fingerprint) {
            (Some((kept, tickets)), Some(fp)) if *kept == fp => Some(tickets.clone()),
            (_, Some(fp)) => Some(Arc::new(tls::Tickets::new(
                tls::TICKET_CAPACITY,
                tls::TICKET_LIFETIME,
            )))
            .inspect(|t| self.tickets = Some((fp, t.clone()))),
            (_, None) => {
                self.tickets = None;
                None
            }
        };
        let config = self.identity.as_ref().zip(tickets).and_then(|(id, tickets)| {
            tls::server_config(
                id,
                self.parts.store.clone(),
                self.parts.pins.clone(),
                self.parts.farewells.clone(),
                self.floor,
                self.anchors.clone(),
                tickets,
            )
            .map_err(|e| tracing::error!(error = %ErrorChain(&e), "cannot build the TLS server configuration"))
            .ok()
        });
        self.parts.server_tls.send_replace(config);
        self.publish_credentials();
    }

    fn publish_credentials(&self) {
        self.parts
            .credentials
            .send_replace(self.identity.as_ref().map(|identity| Credentials {
                identity: identity.clone(),
                store: self.parts.store.clone(),
                floor: self.floor,
            }));
    }
}

fn log_renewed(identity: &LoadedIdentity) {
    tracing::info!(
        fingerprint = %identity.fingerprint(),
        not_after = %crate::clock::unix_secs(identity.leaf_not_after),
        ca_not_after = %crate::clock::unix_secs(identity.ca_not_after),
        "identity certificate renewed (same key: pins unchanged)"
    );
}

fn log_renewal_failed(identity: &LoadedIdentity, e: &crate::identity::Error, now: SystemTime) {
    if identity.expired(now) {
        tracing::error!(error = %ErrorChain(e), "our identity certificate has expired and cannot be renewed: peers refuse it");
    } else {
        tracing::warn!(error = %ErrorChain(e), not_after = %crate::clock::unix_secs(identity.leaf_not_after), "identity certificate renewal failed; tried again at the next check");
    }
}

fn unix_time(secs: u64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(secs.max(crate::clock::build_epoch())))
}

/// Does what `request` asks, then reloads the identity when certificates changed. Blocking.
fn run_certificate_request(
    chain: &ChainFiles,
    store: &dyn KeyStore,
    name: &str,
    request: CertificateRequest,
    now: SystemTime,
) -> Result<(CertificateAnswer, Option<LoadedIdentity>), CertificateError> {
    match request {
        CertificateRequest::GenerateCsr(request) => {
            return Ok((CertificateAnswer::Csr(chain.csr(store, &request)?), None));
        }
        CertificateRequest::ReplaceCa(bytes) => chain.install_ca_cert(store, &bytes, name, now)?,
        CertificateRequest::DeleteCa => chain.self_issue_ca(store, name, now)?,
        CertificateRequest::DeleteLeaf => chain.reissue_leaf(store, name, now)?,
    }
    let identity = chain.load(store).map_err(|problem| {
        CertificateError::Internal(format!(
            "the new certificates do not load: {}",
            ErrorChain(&problem)
        ))
    })?;
    Ok((CertificateAnswer::Done, Some(identity)))
}

/// Re-uses (renewing when due) or creates the identity. Blocking.
fn ensure(
    chain: &ChainFiles,
    store: &dyn KeyStore,
    name: &str,
    now: SystemTime,
) -> Result<(LoadedIdentity, bool), EnsureError> {
    let result = match chain.load(store) {
        Ok(id) => chain
            .renew_if_due(store, id, name, now)
            .map(|id| (id, false)),
        // Never replace an identity just because the TPM is slow to answer.
        Err(IdentityProblem::Unavailable(e)) => Err(e.into()),
        Err(problem) => {
            if let IdentityProblem::Invalid(_) = &problem {
                tracing::warn!(reason = %ErrorChain(&problem), "re-creating the invalid identity; peers must pair again");
            }
            chain.create(store, name, now).map(|id| (id, true))
        }
    };
    result.map_err(EnsureError::Identity)
}
