//! How the D-Bus layer talks to the pairing actor: commands in ([`Handle`]), state out
//! ([`Snapshot`], through a watch channel) and one-off signals ([`Notice`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bmc_pairing_core::pairing::{
    AttestationOutcome, ConnState, Pairing, PeerId, Refusal, TrustMode,
};
use tokio::sync::{mpsc, oneshot, watch};

pub use super::identity::{
    AnchorRequest, CertificateAnswer, CertificateError, CertificateReply, CertificateRequest,
    IdentityChain,
};

/// A request from the D-Bus layer.
#[derive(Debug)]
pub enum Command {
    /// `ProvisionPeer(bmc_id)`.
    Provision {
        /// The argument as given.
        bmc_id: String,
        /// Accepted, or why not.
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// `Unpair()` on a peer object.
    Unpair {
        /// Which peer.
        id: PeerId,
        /// Done, or why not.
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// `Reattest()` on a peer object.
    Reattest {
        /// Which peer.
        id: PeerId,
        /// Done (the result is on the peer object), or why not.
        reply: oneshot::Sender<Result<(), Refusal>>,
    },
    /// A change to the identity certificates, or a CSR (`Certs.*` methods).
    Certificates {
        /// What to do.
        request: CertificateRequest,
        /// The result.
        reply: CertificateReply,
    },
    /// A change to the trust store (`Certs.Install`, `Object.Delete` of an anchor).
    Anchors {
        /// What to do.
        request: AnchorRequest,
        /// The anchor's id, or why nothing changed.
        reply: oneshot::Sender<Result<String, CertificateError>>,
    },
    /// `Certs.Authority.SignCSR` on the group authority: a PKCS#10 request (DER).
    SignCsr {
        /// The request.
        csr: Vec<u8>,
        /// The member's CA certificate and the group root (DER), or why nothing was signed.
        reply: SignCsrReply,
    },
    /// `FactoryReset.Reset()`.
    FactoryReset {
        /// Done, or why it could not be finished now (the next start-up finishes it).
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// Where a `SignCSR` call's answer goes: the member's CA certificate and the group root
/// (DER), or why nothing was signed.
pub type SignCsrReply = oneshot::Sender<Result<(Vec<u8>, Vec<u8>), CertificateError>>;

/// One-off events for D-Bus (signals, not state).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// `PeerProvisioned(b)`.
    PeerProvisioned(bool),
    /// A member's `SignRequest` over the channel (group authority), as a `Certs.Entry`
    /// object: created Pending, then Complete or BadCSR, then removed.
    SignRequest {
        /// Which request (the authority numbers them).
        request: u64,
        /// Where it stands.
        state: SignRequestState,
        /// The member's CA certificate then the group root, PEM, once Complete.
        client_certificate: String,
    },
}

/// The `Certs.Entry` `Status` of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignRequestState {
    /// Received, being decided or signed.
    Pending,
    /// Signed.
    Complete,
    /// Refused.
    BadCsr,
}

/// What D-Bus shows of a peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    /// Its name.
    pub name: String,
    /// Its address.
    pub address: String,
    /// Its port.
    pub port: u16,
    /// Pinned identity, hex.
    pub fingerprint: String,
    /// `first-contact` or `anchored`.
    pub trust_mode: TrustMode,
    /// Sessions it opened to us.
    pub incoming: ConnState,
    /// Our session to it.
    pub outgoing: ConnState,
    /// The higher of both.
    pub state: ConnState,
    /// Unix seconds of the last session opening, 0 if never.
    pub last_seen: u64,
    /// Another identity answered at its address since the last good session.
    pub identity_mismatch: bool,
    /// Its last attestation result.
    pub attestation: AttestationOutcome,
    /// Unix seconds of that attestation, 0 if never.
    pub attested_at: u64,
    /// It told us its operator unpaired us; it is no longer dialled or accepted.
    pub unpaired_by_peer: bool,
    /// Its link's health since this daemon started ([`super::health`]).
    pub health: PeerHealth,
}

/// A peer's link health since this daemon started (not persisted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerHealth {
    /// Sessions opened with it, either direction.
    pub handshakes: u64,
    /// Our dials to it that did not open a session.
    pub failed_handshakes: u64,
    /// Times its `State` became Connected again after a session was lost.
    pub reconnects: u64,
    /// Unix seconds of the last change of its `State` (or of the daemon's start).
    pub last_state_change: u64,
}

/// What D-Bus shows of this BMC's identity certificates (all 0 / false without one).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdentityView {
    /// The leaf's notAfter, unix seconds.
    pub not_after: u64,
    /// The CA certificate's notAfter, unix seconds.
    pub authority_not_after: u64,
    /// The leaf or the CA certificate has expired (and could not be renewed in time).
    pub expired: bool,
}

/// What D-Bus shows of this BMC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// `Provisioned`.
    pub provisioned: bool,
    /// `PeerConnected`.
    pub peer_connected: ConnState,
    /// Paired peers.
    pub peers: BTreeMap<PeerId, PeerView>,
    /// Our identity's validity.
    pub identity: IdentityView,
    /// Our identity's certificates (none without an identity).
    pub chain: Option<IdentityChain>,
    /// The trust store's anchors (DER).
    pub trust_store: Vec<Arc<[u8]>>,
    /// This BMC is the group authority (it serves `Certs.Authority`).
    pub group_authority: bool,
}

impl Snapshot {
    /// What D-Bus shows of `p`, with `identity` from the identity keeper.
    pub fn of(
        p: &Pairing,
        identity: IdentityView,
        chain: Option<IdentityChain>,
        trust_store: Vec<Arc<[u8]>>,
    ) -> Self {
        Snapshot {
            identity,
            chain,
            trust_store,
            group_authority: p.group_authority(),
            provisioned: p.provisioned(),
            peer_connected: p.aggregate(),
            peers: p
                .peers()
                .iter()
                .map(|(id, peer)| {
                    (
                        id.clone(),
                        PeerView {
                            name: peer.record.name.clone(),
                            address: peer.record.address.to_string(),
                            port: peer.record.port,
                            fingerprint: peer.record.fingerprint.to_hex(),
                            trust_mode: peer.record.trust_mode,
                            incoming: peer.incoming,
                            outgoing: peer.outgoing,
                            state: peer.aggregate(),
                            last_seen: peer.last_seen.unwrap_or(0),
                            identity_mismatch: peer.identity_mismatch,
                            attestation: peer.record.attestation,
                            attested_at: peer.record.attested_at,
                            unpaired_by_peer: peer.record.unpaired_by_peer,
                            health: PeerHealth::default(),
                        },
                    )
                })
                .collect(),
        }
    }
}

/// Handles the D-Bus layer holds: commands in, state and signals out.
#[derive(Clone, Debug)]
pub struct Handle {
    /// Commands to the actor.
    pub commands: mpsc::Sender<Command>,
    /// The latest state.
    pub snapshot: watch::Receiver<Snapshot>,
    /// The peers' last heartbeat round trips (read on demand, not in the snapshot).
    pub round_trips: crate::link::RoundTrips,
}

impl Handle {
    /// Sends `ProvisionPeer(bmc_id)` and waits for acceptance (not for the pairing outcome).
    ///
    /// # Errors
    /// The [`Refusal`]; `Unavailable` if the driver is gone or does not answer in time.
    ///
    /// # Cancel safety
    /// Cancel safe; the driver may still act on a request whose reply is dropped.
    pub async fn provision(&self, bmc_id: String) -> Result<(), Refusal> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::Provision { bmc_id, reply }, rx).await
    }

    /// Sends `Reattest()` for `id` and waits for the result to be recorded.
    ///
    /// # Errors
    /// As [`Handle::provision`].
    ///
    /// # Cancel safety
    /// As [`Handle::provision`].
    pub async fn reattest(&self, id: PeerId) -> Result<(), Refusal> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::Reattest { id, reply }, rx).await
    }

    /// Sends `Unpair()` for `id`.
    ///
    /// # Errors
    /// As [`Handle::provision`].
    ///
    /// # Cancel safety
    /// As [`Handle::provision`].
    pub async fn unpair(&self, id: PeerId) -> Result<(), Refusal> {
        let (reply, rx) = oneshot::channel();
        self.request(Command::Unpair { id, reply }, rx).await
    }

    /// Sends a certificate request and waits for its result.
    ///
    /// # Errors
    /// Why nothing changed; [`CertificateError::Busy`] if the actor is gone or does not
    /// answer in time.
    ///
    /// # Cancel safety
    /// As [`Handle::provision`].
    pub async fn certificates(
        &self,
        request: CertificateRequest,
    ) -> Result<CertificateAnswer, CertificateError> {
        let (reply, rx) = oneshot::channel();
        self.ask(Command::Certificates { request, reply }, rx, |why| {
            CertificateError::Busy(why.into())
        })
        .await
    }

    /// Sends a trust-store request and waits for its result (the anchor's id).
    ///
    /// # Errors
    /// As [`Handle::certificates`].
    ///
    /// # Cancel safety
    /// As [`Handle::provision`].
    pub async fn anchors(&self, request: AnchorRequest) -> Result<String, CertificateError> {
        let (reply, rx) = oneshot::channel();
        self.ask(Command::Anchors { request, reply }, rx, |why| {
            CertificateError::Busy(why.into())
        })
        .await
    }

    /// Asks the group authority to sign the PKCS#10 request `csr` (DER): the member's CA
    /// certificate and the group root, DER.
    ///
    /// # Errors
    /// [`CertificateError::Refused`] when the core's rule refuses it; as
    /// [`Handle::certificates`] otherwise.
    ///
    /// # Cancel safety
    /// As [`Handle::provision`].
    pub async fn sign_csr(&self, csr: Vec<u8>) -> Result<(Vec<u8>, Vec<u8>), CertificateError> {
        let (reply, rx) = oneshot::channel();
        self.ask(Command::SignCsr { csr, reply }, rx, |why| {
            CertificateError::Busy(why.into())
        })
        .await
    }

    /// Sends `FactoryReset.Reset()` and waits until the reset is done.
    ///
    /// # Errors
    /// Why it could not be finished (the next start-up finishes it), or that the actor is
    /// gone or did not answer in time.
    ///
    /// # Cancel safety
    /// As [`Handle::provision`].
    pub async fn factory_reset(&self) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.ask(Command::FactoryReset { reply }, rx, str::to_owned)
            .await
    }

    async fn request(
        &self,
        cmd: Command,
        rx: oneshot::Receiver<Result<(), Refusal>>,
    ) -> Result<(), Refusal> {
        self.ask(cmd, rx, |why| Refusal::Unavailable(why.into()))
            .await
    }

    /// Sends `cmd` and waits for its reply on `rx`; a gone or silent actor becomes the
    /// error `unavailable` makes of the reason.
    async fn ask<T, E>(
        &self,
        cmd: Command,
        rx: oneshot::Receiver<Result<T, E>>,
        unavailable: impl Fn(&'static str) -> E,
    ) -> Result<T, E> {
        const GONE: &str = "the pairing actor is not running";
        self.commands
            .send(cmd)
            .await
            .map_err(|_| unavailable(GONE))?;
        // Identity creation on a TPM takes a few hundred milliseconds; nothing else waits.
        tokio::time::timeout(Duration::from_secs(30), rx)
            .await
            .map_err(|_| unavailable("the pairing actor did not answer in time"))?
            .map_err(|_| unavailable(GONE))?
    }
}
