//! rustls configurations for the pairing channel: TLS 1.3 only, mutual, pinned.
//!
//! Owns the [`KeyStore`] → rustls `SigningKey` adapter (so the TLS 1.3 CertificateVerify is
//! signed by the key store, i.e. by the TPM in production) and the two verifiers:
//!
//! - the server side accepts a client only if its chain is self-consistent (leaf signed by
//!   the CA it sent, valid now, EKU clientAuth) **and** the leaf SPKI SHA-256 is in the
//!   [`PinSet`];
//! - the client side accepts a server only if its chain is self-consistent (EKU serverAuth)
//!   and the leaf SPKI matches the one pin expected for the peer being dialled. The only
//!   exception is [`ServerCheck::Capture`], used solely when an operator named this peer with
//!   `ProvisionPeer` in first-contact mode: the chain is still fully checked and the
//!   handshake signature still verified, and the identity presented is recorded for pinning.
//!
//! Validity follows the core's time rule ([`TimeView`]): checked at the clock when it is at
//! or past the time floor; while the clock is behind the floor (a BMC at 1970 since its first
//! boot), at the earliest instant of `[floor, floor + window]` at which the chain is valid,
//! so a chain that expired before the floor, or that becomes valid only after the window,
//! is still refused. Nothing a peer sends moves the floor.
//!
//! The server side also lets through the identities we unpaired and still owe a
//! `Bye { Unpaired }` (the listener answers their Hello with it; no session opens).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, OtherError,
    ServerConfig, SignatureAlgorithm, SignatureScheme,
};

use bmc_pairing_core::pairing::{TimeView, UNTRUSTED_CLOCK_WINDOW};

use crate::identity::cert::LoadedIdentity;
use crate::identity::{Fingerprint, KeyRole, KeyStore, sign_message, signature_to_der};

/// The only signature scheme our identities use.
const SCHEME: SignatureScheme = SignatureScheme::ECDSA_NISTP256_SHA256;

static VERIFY_ALGS: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[webpki::ring::ECDSA_P256_SHA256],
    mapping: &[(SCHEME, &[webpki::ring::ECDSA_P256_SHA256])],
};

/// The pinned identities this BMC accepts as TLS clients. Written by the pairing driver,
/// read by the server-side verifier during handshakes.
#[derive(Clone, Debug, Default)]
pub struct PinSet(Arc<RwLock<BTreeSet<Fingerprint>>>);

impl PinSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the whole set.
    pub fn replace(&self, pins: impl IntoIterator<Item = Fingerprint>) {
        let mut guard = self.0.write().unwrap_or_else(|p| p.into_inner());
        *guard = pins.into_iter().collect();
    }

    /// True if `fp` is pinned.
    pub fn contains(&self, fp: &Fingerprint) -> bool {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(fp)
    }
}

/// What the client side requires of the server it dials.
#[derive(Clone, Debug)]
pub enum ServerCheck {
    /// The server's leaf SPKI must have this fingerprint. A well-formed chain with another
    /// key is refused and recorded in `refused`, so the caller can report who answered.
    Pinned {
        /// The pin.
        expected: Fingerprint,
        /// Where a refused identity is recorded.
        refused: Arc<CaptureSlot>,
    },
    /// First contact, operator-initiated: accept a self-consistent chain and record it.
    Capture(Arc<CaptureSlot>),
}

/// What a first-contact handshake saw. Only meaningful once the handshake completed,
/// because rustls verifies the server's CertificateVerify after the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapturedIdentity {
    /// SHA-256 of the leaf SPKI.
    pub fingerprint: Fingerprint,
    /// Leaf common name, if any (the peer's BMC name).
    pub common_name: Option<String>,
    /// Leaf and CA, DER.
    pub chain: Vec<Vec<u8>>,
}

/// Where a [`ServerCheck::Capture`] verifier records the identity it saw.
#[derive(Debug, Default)]
pub struct CaptureSlot(Mutex<Option<CapturedIdentity>>);

impl CaptureSlot {
    /// An empty slot.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Takes what was captured, if anything.
    pub fn take(&self) -> Option<CapturedIdentity> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    fn put(&self, id: CapturedIdentity) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(id);
    }
}

/// rustls' view of a key in the [`KeyStore`].
pub struct TlsSigningKey {
    store: Arc<dyn KeyStore>,
    role: KeyRole,
}

impl TlsSigningKey {
    /// Signs with `role` of `store`.
    pub fn new(store: Arc<dyn KeyStore>, role: KeyRole) -> Self {
        TlsSigningKey { store, role }
    }
}

impl fmt::Debug for TlsSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsSigningKey({}, {})", self.store.backend(), self.role)
    }
}

impl SigningKey for TlsSigningKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered.contains(&SCHEME).then(|| {
            Box::new(TlsSigner {
                store: self.store.clone(),
                role: self.role,
            }) as Box<dyn Signer>
        })
    }

    fn public_key(&self) -> Option<SubjectPublicKeyInfoDer<'_>> {
        let key = self.store.public_key(self.role).ok()?;
        Some(SubjectPublicKeyInfoDer::from(key.spki_der().to_vec()))
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

struct TlsSigner {
    store: Arc<dyn KeyStore>,
    role: KeyRole,
}

impl fmt::Debug for TlsSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TlsSigner({})", self.role)
    }
}

impl Signer for TlsSigner {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let sign = || sign_message(self.store.as_ref(), self.role, message);
        // rustls signs synchronously inside the handshake, and a TPM signature can take
        // milliseconds (or, with a hung TPM, until the key store's call timeout). On a
        // multi-thread runtime, tell tokio this worker blocks so its other tasks (the pairing
        // driver, D-Bus) move to another worker instead of stalling behind the TPM.
        let raw = match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(sign)
            }
            _ => sign(),
        }
        .map_err(|e| rustls::Error::General(format!("key store: {e}")))?;
        signature_to_der(self.role, &raw)
            .map_err(|e| rustls::Error::General(format!("key store: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SCHEME
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn bad_cert(e: impl std::error::Error + Send + Sync + 'static) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(e))))
}

/// Why a presented chain is not acceptable, before any pin is consulted.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// Not exactly a leaf plus the CA that issued it.
    #[error("expected a leaf and its CA, got {0} certificates")]
    Shape(usize),
    /// webpki rejected the chain (bad signature, expired, wrong EKU, not a CA, ...).
    #[error("chain does not verify: {0:?}")]
    Invalid(webpki::Error),
    /// The leaf cannot be parsed.
    #[error("leaf certificate cannot be parsed")]
    Unparsable,
    /// The leaf is fine but its key is not the pinned one.
    #[error("peer identity {presented} is not pinned")]
    NotPinned {
        /// What the peer presented.
        presented: Fingerprint,
    },
}

/// Which EKU the leaf must carry.
#[derive(Clone, Copy, Debug)]
pub enum Usage {
    /// TLS server.
    Server,
    /// TLS client.
    Client,
}

/// Checks that `end_entity` is issued by the single CA in `intermediates`, valid at `now`,
/// with the EKU for `usage`; returns the leaf's identity.
///
/// # Errors
/// [`ChainError`].
pub fn check_chain(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    usage: Usage,
    now: UnixTime,
) -> Result<CapturedIdentity, ChainError> {
    let [ca] = intermediates else {
        return Err(ChainError::Shape(intermediates.len() + 1));
    };
    let anchor = webpki::anchor_from_trusted_cert(ca).map_err(ChainError::Invalid)?;
    let leaf = webpki::EndEntityCert::try_from(end_entity).map_err(ChainError::Invalid)?;
    let eku = match usage {
        Usage::Server => webpki::KeyUsage::server_auth(),
        Usage::Client => webpki::KeyUsage::client_auth(),
    };
    leaf.verify_for_usage(VERIFY_ALGS.all, &[anchor], &[], now, eku, None, None)
        .map_err(ChainError::Invalid)?;
    let summary =
        crate::identity::summarize(end_entity.as_ref()).map_err(|_| ChainError::Unparsable)?;
    Ok(CapturedIdentity {
        fingerprint: summary.public_key.fingerprint(),
        common_name: summary.common_name,
        chain: vec![end_entity.to_vec(), ca.to_vec()],
    })
}

/// The latest notBefore (unix seconds) of `certs`; certificates that do not parse count as
/// 0 here (the chain check refuses them anyway).
fn latest_not_before<'a>(certs: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> u64 {
    certs
        .into_iter()
        .filter_map(|c| x509_parser::parse_x509_certificate(c.as_ref()).ok())
        .map(|(_, c)| u64::try_from(c.validity().not_before.timestamp()).unwrap_or(0))
        .max()
        .unwrap_or(0)
}

/// The instant a presented chain is checked at, by the core's time rule: `now` (the clock)
/// against `floor`.
pub fn check_time(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    floor: UnixTime,
) -> UnixTime {
    let view = TimeView {
        clock: now.as_secs(),
        floor: floor.as_secs(),
        window: UNTRUSTED_CLOCK_WINDOW,
    };
    let latest = latest_not_before(std::iter::once(end_entity).chain(intermediates));
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(view.check_instant(latest)))
}

/// The part both verifiers share: the chain checked for `usage` at the instant the time
/// rule gives ([`check_time`]), refused with a log line naming the side.
fn verified_chain(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    usage: Usage,
    at: UnixTime,
) -> Result<CapturedIdentity, rustls::Error> {
    check_chain(end_entity, intermediates, usage, at).map_err(|e| {
        // Any client can cause this once per handshake: debug only; the listener logs a
        // summary of its refusals (with example reasons) every few seconds.
        tracing::debug!(error = %crate::kit::ErrorChain(&e), side = ?usage, "refused certificate");
        bad_cert(e)
    })
}

/// The handshake-signature half of both verifiers (identical for client and server): TLS 1.2
/// refused (only 1.3 is enabled, so reaching it would be a rustls bug), TLS 1.3 always
/// verified with the one scheme our identities use.
macro_rules! handshake_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::PeerIncompatible(
                rustls::PeerIncompatible::Tls13RequiredForQuic,
            ))
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &VERIFY_ALGS)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            VERIFY_ALGS.supported_schemes()
        }
    };
}

#[derive(Debug)]
struct PinnedClientVerifier {
    pins: PinSet,
    farewells: PinSet,
    floor: UnixTime,
    /// Manufacturing CA certificates (anchored mode only; empty otherwise).
    anchors: Vec<Vec<u8>>,
}

/// True if `end_entity` (with the CA certificates it sent) verifies to one of `anchors` for
/// TLS client use at `now`.
fn chains_to_anchor(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    anchors: &[Vec<u8>],
    now: UnixTime,
) -> bool {
    let roots: Vec<CertificateDer<'_>> = anchors
        .iter()
        .map(|a| CertificateDer::from(a.as_slice()))
        .collect();
    let trust: Vec<_> = roots
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    let Ok(leaf) = webpki::EndEntityCert::try_from(end_entity) else {
        return false;
    };
    !trust.is_empty()
        && leaf
            .verify_for_usage(
                VERIFY_ALGS.all,
                &trust,
                intermediates,
                now,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .is_ok()
}

impl ClientCertVerifier for PinnedClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let at = check_time(end_entity, intermediates, now, self.floor);
        let id = verified_chain(end_entity, intermediates, Usage::Client, at)?;
        if self.pins.contains(&id.fingerprint) || self.farewells.contains(&id.fingerprint) {
            Ok(ClientCertVerified::assertion())
        } else if !self.anchors.is_empty()
            && chains_to_anchor(end_entity, intermediates, &self.anchors, at)
        {
            // Anchored mode: a manufacturing CA vouches for the chain. The listener still
            // attests the peer before its session opens, and pins it only if the attested
            // identity is this one.
            tracing::info!(fingerprint = %id.fingerprint, "unpinned client chains to a trust anchor; attestation decides");
            Ok(ClientCertVerified::assertion())
        } else {
            // As above: per handshake, so debug; summarised by the listener.
            tracing::debug!(fingerprint = %id.fingerprint, "refused unpinned client");
            Err(bad_cert(ChainError::NotPinned {
                presented: id.fingerprint,
            }))
        }
    }

    handshake_signature_checks!();
}

#[derive(Debug)]
struct PinnedServerVerifier {
    check: ServerCheck,
    floor: UnixTime,
}

impl ServerCertVerifier for PinnedServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Names are not checked: peers are identified by their pinned key, and addresses come
        // from untrusted discovery anyway.
        let at = check_time(end_entity, intermediates, now, self.floor);
        let id = verified_chain(end_entity, intermediates, Usage::Server, at)?;
        match &self.check {
            ServerCheck::Pinned { expected, .. } if *expected == id.fingerprint => {
                Ok(ServerCertVerified::assertion())
            }
            ServerCheck::Pinned { expected, refused } => {
                tracing::warn!(expected = %expected, presented = %id.fingerprint, "peer presented a different identity");
                let presented = id.fingerprint;
                refused.put(id);
                Err(bad_cert(ChainError::NotPinned { presented }))
            }
            ServerCheck::Capture(slot) => {
                slot.put(id);
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    handshake_signature_checks!();
}

#[derive(Debug)]
struct OurCert(Arc<CertifiedKey>);

impl ResolvesServerCert for OurCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl ResolvesClientCert for OurCert {
    fn resolve(&self, _hints: &[&[u8]], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        schemes.contains(&SCHEME).then(|| self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn certified_key(identity: &LoadedIdentity, store: Arc<dyn KeyStore>) -> Arc<CertifiedKey> {
    let chain = identity
        .chain_leaf_first()
        .into_iter()
        .map(CertificateDer::from)
        .collect();
    Arc::new(CertifiedKey::new(
        chain,
        Arc::new(TlsSigningKey::new(store, KeyRole::Identity)),
    ))
}

/// Builds the listener's configuration: TLS 1.3, client certificate mandatory and pinned
/// (or owed a goodbye: `farewells`). With `anchors` (anchored mode), a client whose chain
/// verifies to one of them is accepted too, for the listener to attest before anything else
/// happens. Resumable sessions live in `tickets` (see [`Tickets`]).
///
/// # Errors
/// rustls configuration errors (none expected with the ring provider).
pub fn server_config(
    identity: &LoadedIdentity,
    store: Arc<dyn KeyStore>,
    pins: PinSet,
    farewells: PinSet,
    floor: UnixTime,
    anchors: Vec<Vec<u8>>,
    tickets: Arc<Tickets>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(PinnedClientVerifier {
            pins,
            farewells,
            floor,
            anchors,
        }))
        .with_cert_resolver(Arc::new(OurCert(certified_key(identity, store))));
    // TLS 1.3 resumption (PSK with (EC)DHE): a reconnect within TICKET_LIFETIME signs
    // nothing with the TPM. A resumed session skips this verifier, so the listener checks
    // every session's identity against the current pins (which leave out quarantined peers)
    // and farewells after the handshake, before Hello (link::server). Tickets are handles
    // into the bounded, in-memory, single-use `tickets`, which the caller keeps across
    // rebuilds for the same key; a new key or a restart means a full handshake.
    config.session_storage = tickets;
    config.send_tls13_tickets = 1;
    Ok(Arc::new(config))
}

/// How long after its full handshake a session may be resumed; later, a full handshake
/// (one TPM signature per side) re-verifies the chain against the time rule.
pub const TICKET_LIFETIME: std::time::Duration = std::time::Duration::from_secs(3600);

/// Sessions a dialler keeps for resuming (one peer; the server issues one ticket per
/// handshake and each is used once).
const CLIENT_SESSIONS: usize = 2;

/// Sessions the listener keeps for resumption (about 1.5 KB each with the client's
/// chain); the oldest goes first. Only clients that passed the verifier get one.
pub const TICKET_CAPACITY: usize = 128;

/// The listener's resumption store: at most `capacity` sessions, oldest evicted first, each
/// resumable once and only within `lifetime` of being stored. rustls's own stateful store
/// has no age bound (it advertises 24 h and accepts any ticket it still holds).
#[derive(Debug)]
pub struct Tickets {
    capacity: usize,
    lifetime: std::time::Duration,
    sessions: Mutex<std::collections::VecDeque<StoredTicket>>,
}

#[derive(Debug)]
struct StoredTicket {
    id: Vec<u8>,
    value: Vec<u8>,
    stored: std::time::Instant,
}

impl Tickets {
    /// An empty store.
    pub fn new(capacity: usize, lifetime: std::time::Duration) -> Self {
        Tickets {
            capacity,
            lifetime,
            sessions: Mutex::new(std::collections::VecDeque::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, std::collections::VecDeque<StoredTicket>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sessions held (expired ones included until they are evicted or looked up).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True if no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl rustls::server::StoresServerSessions for Tickets {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        if self.capacity == 0 {
            return false;
        }
        let mut sessions = self.lock();
        let now = std::time::Instant::now();
        sessions.retain(|t| now.duration_since(t.stored) < self.lifetime && t.id != key);
        while sessions.len() >= self.capacity {
            sessions.pop_front();
        }
        sessions.push_back(StoredTicket {
            id: key,
            value,
            stored: now,
        });
        true
    }

    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        // TLS 1.3 resumption uses `take`; `get` is TLS 1.2's, which is not enabled. Answer
        // with the same rules anyway, without consuming.
        let now = std::time::Instant::now();
        self.lock()
            .iter()
            .find(|t| t.id == key && now.duration_since(t.stored) < self.lifetime)
            .map(|t| t.value.clone())
    }

    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let mut sessions = self.lock();
        let index = sessions.iter().position(|t| t.id == key)?;
        let ticket = sessions.remove(index)?;
        (ticket.stored.elapsed() < self.lifetime).then_some(ticket.value)
    }

    fn can_cache(&self) -> bool {
        self.capacity > 0
    }
}

/// Builds a dialler's configuration: TLS 1.3, our identity as client certificate, and the
/// server checked by `check`.
///
/// # Errors
/// rustls configuration errors (none expected with the ring provider).
pub fn client_config(
    identity: &LoadedIdentity,
    store: Arc<dyn KeyStore>,
    check: ServerCheck,
    floor: UnixTime,
) -> Result<Arc<ClientConfig>, rustls::Error> {
    let resumes = matches!(check, ServerCheck::Pinned { .. });
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        // rustls gates every custom verifier behind `dangerous()`. Ours is stricter than
        // webpki's default: it checks the chain (against the time floor) and the SPKI pin.
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedServerVerifier { check, floor }))
        .with_client_cert_resolver(Arc::new(OurCert(certified_key(identity, store))));
    // A dialler of a pinned peer resumes its sessions (no TPM signature on either side);
    // its configuration, and so its session cache, lives as long as the dialler, whose pin
    // is fixed. A first-contact probe must see the server's chain, so it never resumes.
    config.resumption = if resumes {
        rustls::client::Resumption::in_memory_sessions(CLIENT_SESSIONS)
            .tls12_resumption(rustls::client::Tls12Resumption::Disabled)
    } else {
        rustls::client::Resumption::disabled()
    };
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::StoresServerSessions;
    use std::time::Duration;

    #[test]
    fn a_ticket_resumes_once_and_only_within_its_lifetime() {
        let store = Tickets::new(4, Duration::from_secs(3600));
        assert!(store.can_cache());
        assert!(store.put(b"t1".to_vec(), b"session".to_vec()));
        assert_eq!(store.get(b"t1"), Some(b"session".to_vec()));
        assert_eq!(store.take(b"t1"), Some(b"session".to_vec()));
        assert_eq!(store.take(b"t1"), None, "single use");
        assert_eq!(store.take(b"unknown"), None);

        let expired = Tickets::new(4, Duration::ZERO);
        assert!(expired.put(b"t".to_vec(), b"session".to_vec()));
        assert_eq!(expired.get(b"t"), None);
        assert_eq!(expired.take(b"t"), None, "past its lifetime");
        assert!(expired.is_empty());
    }

    #[test]
    fn the_store_is_bounded_oldest_first() {
        let store = Tickets::new(2, Duration::from_secs(3600));
        for id in [b"a", b"b", b"c"] {
            assert!(store.put(id.to_vec(), id.to_vec()));
        }
        assert_eq!(store.len(), 2);
        assert_eq!(store.take(b"a"), None);
        assert_eq!(store.take(b"c"), Some(b"c".to_vec()));
        let none = Tickets::new(0, Duration::from_secs(3600));
        assert!(!none.can_cache());
        assert!(!none.put(b"a".to_vec(), b"a".to_vec()));
    }
}
