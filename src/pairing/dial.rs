//! How the pairing actor reaches peers' pairing channels: the [`Dial`] trait, and its
//! implementation over mutual TLS, [`TlsDialer`].

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bmc_pairing_core::keys::KeyStore;
use bmc_pairing_core::pairing::{Captured, IdentityCheck};
use rustls::pki_types::UnixTime;
use tokio::sync::{Notify, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::identity::Fingerprint;
use crate::identity::cert::LoadedIdentity;
use crate::link::client::{self, DialError, DialTarget, Retry};
use crate::link::session::Timing;
use crate::link::tls::{self, CaptureSlot, ServerCheck};
use crate::link::{LinkEvent, LinkId};

/// Dials peers' pairing channels for the pairing actor.
pub trait Dial: Send + Sync + 'static {
    /// Keeps an outgoing session to `endpoint`, which must present `pin`, alive until
    /// `cancel`; reports on `events` as `link`; `wake` cuts a backoff wait short.
    fn link(
        &self,
        link: LinkId,
        endpoint: SocketAddr,
        pin: Fingerprint,
        wake: Arc<Notify>,
        events: mpsc::UnboundedSender<LinkEvent>,
        cancel: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static;

    /// One handshake with `endpoint`, which must present `expected`.
    fn check(
        &self,
        endpoint: SocketAddr,
        expected: Fingerprint,
    ) -> impl Future<Output = IdentityCheck<DialFailure>> + Send + 'static;

    /// One handshake with `endpoint`, learning the identity it proves (pairing with
    /// `"attestation": "off"`).
    fn capture(
        &self,
        endpoint: SocketAddr,
    ) -> impl Future<Output = Result<Captured, DialFailure>> + Send + 'static;
}

/// Why a one-off handshake did not complete.
#[derive(Debug, thiserror::Error)]
pub enum DialFailure {
    /// This BMC has no identity to dial with.
    #[error("no identity to dial with")]
    NoIdentity,
    /// The TLS configuration could not be built.
    #[error("cannot build the TLS client configuration")]
    Config(#[source] rustls::Error),
    /// The dial failed.
    #[error(transparent)]
    Dial(#[from] DialError),
}

/// Our side of a TLS client: the identity to present and the time floor to check the
/// peer's certificates against. Published by the identity keeper.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// Our identity chain.
    pub identity: LoadedIdentity,
    /// The key store that holds its key.
    pub store: Arc<dyn KeyStore>,
    /// Validity is checked against `max(now, floor)`.
    pub floor: UnixTime,
}

/// How to dial, from the configuration.
#[derive(Clone, Debug)]
pub struct DialSettings {
    /// Interface to bind to (SO_BINDTODEVICE), if configured.
    pub device: Option<String>,
    /// Local address to dial from, if configured.
    pub source: Option<std::net::IpAddr>,
    /// The name we send in `Hello`.
    pub our_name: String,
    /// The boot identifier we send in `Hello`.
    pub boot_id: u64,
    /// Session deadlines.
    pub timing: Timing,
    /// Reconnect backoff.
    pub retry: Retry,
    /// Where heartbeat round trips are recorded.
    pub round_trips: crate::link::RoundTrips,
    /// Where sessions register for the actor's group frames.
    pub mailboxes: crate::link::mailbox::Mailboxes,
}

/// [`Dial`] over mutual TLS 1.3 with the current [`Credentials`].
#[derive(Clone, Debug)]
pub struct TlsDialer {
    settings: DialSettings,
    credentials: watch::Receiver<Option<Credentials>>,
}

impl TlsDialer {
    /// Dials with `settings`, presenting whatever `credentials` holds at each dial.
    pub fn new(settings: DialSettings, credentials: watch::Receiver<Option<Credentials>>) -> Self {
        TlsDialer {
            settings,
            credentials,
        }
    }

    fn target(&self, addr: SocketAddr) -> DialTarget {
        DialTarget {
            addr,
            device: self.settings.device.clone(),
            source: self.settings.source,
        }
    }

    fn config(&self, check: ServerCheck) -> Result<Arc<rustls::ClientConfig>, DialFailure> {
        let current = self.credentials.borrow().clone();
        let c = current.ok_or(DialFailure::NoIdentity)?;
        tls::client_config(&c.identity, c.store, check, c.floor).map_err(DialFailure::Config)
    }

    fn deadline(&self) -> Duration {
        self.settings.timing.open_timeout
    }
}

impl crate::quorum::actor::Exchange for TlsDialer {
    fn exchange(
        &self,
        endpoint: SocketAddr,
        pin: Fingerprint,
        message: bmc_pairing_core::quorum::wire::Message,
    ) -> impl Future<Output = Option<bmc_pairing_core::quorum::wire::Message>> + Send + 'static
    {
        let config = self.config(ServerCheck::Pinned {
            expected: pin,
            refused: CaptureSlot::new(),
        });
        let target = self.target(endpoint);
        let deadline = self.deadline();
        async move {
            let answer = client::exchange(&target, config.ok()?, message, deadline).await;
            if let Err(e) = &answer {
                tracing::debug!(%endpoint, error = %crate::kit::ErrorChain(e), "trust-quorum exchange failed");
            }
            answer.ok()
        }
    }
}

impl Dial for TlsDialer {
    fn link(
        &self,
        link: LinkId,
        endpoint: SocketAddr,
        pin: Fingerprint,
        wake: Arc<Notify>,
        events: mpsc::UnboundedSender<LinkEvent>,
        cancel: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let refused = CaptureSlot::new();
        let config = self.config(ServerCheck::Pinned {
            expected: pin,
            refused: refused.clone(),
        });
        let target = self.target(endpoint);
        let settings = self.settings.clone();
        async move {
            let config = match config {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(%link, error = %crate::kit::ErrorChain(&e), "cannot dial");
                    return;
                }
            };
            client::run_outgoing(
                link,
                target,
                config,
                refused,
                client::Parties {
                    our_name: settings.our_name,
                    boot_id: settings.boot_id,
                    pin,
                    round_trips: settings.round_trips,
                    mailboxes: settings.mailboxes,
                },
                settings.timing,
                settings.retry,
                wake,
                events,
                cancel,
            )
            .await;
        }
    }

    fn check(
        &self,
        endpoint: SocketAddr,
        expected: Fingerprint,
    ) -> impl Future<Output = IdentityCheck<DialFailure>> + Send + 'static {
        let refused = CaptureSlot::new();
        let config = self.config(ServerCheck::Pinned {
            expected,
            refused: refused.clone(),
        });
        let target = self.target(endpoint);
        let deadline = self.deadline();
        async move {
            let config = match config {
                Ok(c) => c,
                Err(e) => return IdentityCheck::Unreached(e),
            };
            match client::verify(&target, config, deadline).await {
                Ok(()) => IdentityCheck::Answered,
                Err(e) => match refused.take() {
                    Some(other) => IdentityCheck::OtherIdentity(other.fingerprint),
                    None => IdentityCheck::Unreached(e.into()),
                },
            }
        }
    }

    fn capture(
        &self,
        endpoint: SocketAddr,
    ) -> impl Future<Output = Result<Captured, DialFailure>> + Send + 'static {
        let slot = CaptureSlot::new();
        let config = self.config(ServerCheck::Capture(slot.clone()));
        let target = self.target(endpoint);
        let deadline = self.deadline();
        async move {
            let captured = client::probe(&target, config?, slot, deadline).await?;
            Ok(Captured {
                fingerprint: captured.fingerprint,
                common_name: captured.common_name,
            })
        }
    }
}
