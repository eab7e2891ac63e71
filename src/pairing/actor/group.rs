//! The actor's side of the group authority (issue 17): it moves group frames between the
//! sessions and the core, and runs the group root's signatures and the member's
//! certificate changes on blocking threads. Every decision (what to sign, whom to join,
//! which list to believe) is the core's ([`bmc_pairing_core::pairing::group`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use bmc_pairing_core::link::frame::{Frame, SignStatus};
use bmc_pairing_core::pairing::group::{GroupList, csr_key};
use bmc_pairing_core::pairing::{Action, PeerId};
use tokio::sync::oneshot;

use super::{Actor, Done};
use crate::clock;
use crate::identity::{Fingerprint, group as root};
use crate::kit::ErrorChain;
use crate::link::mailbox::Mailboxes;
use crate::pairing::attest::Attest;
use crate::pairing::dial::Dial;
use crate::pairing::identity::{
    AnchorRequest, CertificateAnswer, CertificateError, CertificateRequest,
};

use crate::pairing::handle::{Notice, SignCsrReply, SignRequestState};

/// How long a member waits for the authority's answer before it may ask again.
const JOIN_RETRY: Duration = Duration::from_secs(30);

/// What the actor holds for the group.
pub(super) struct GroupState {
    mailboxes: Mailboxes,
    /// Authority: the newest signed list (its version and bytes).
    signed: Option<(u64, Vec<u8>)>,
    /// Authority: the group root certificate, DER.
    root: Option<Arc<[u8]>>,
    /// Member to be: the authority asked, and when.
    joining: Option<(Fingerprint, Instant)>,
    /// Authority: the number of the last channel request.
    requests: u64,
}

impl GroupState {
    pub(super) fn new(mailboxes: Mailboxes) -> Self {
        GroupState {
            mailboxes,
            signed: None,
            root: None,
            joining: None,
            requests: 0,
        }
    }
}

/// Group work that finished on another thread.
pub(super) enum GroupDone {
    /// The group list was signed (with the root certificate, created if it was absent).
    ListSigned {
        version: u64,
        result: Result<(Vec<u8>, Vec<u8>), String>,
    },
    /// A member's CA certificate was issued (or not).
    Signed {
        requester: Fingerprint,
        request: u64,
        id: PeerId,
        root: Arc<[u8]>,
        result: Result<Vec<u8>, String>,
    },
    /// A `SignCSR` call's certificate was issued (or not).
    SignedLocally {
        id: PeerId,
        root: Arc<[u8]>,
        result: Result<Vec<u8>, String>,
        reply: SignCsrReply,
    },
    /// Our CSR for the authority is ready (or not).
    CsrReady {
        authority: Fingerprint,
        result: Result<CertificateAnswer, CertificateError>,
    },
    /// The certificate the authority issued replaced our CA certificate (or not).
    CaInstalled {
        authority: Fingerprint,
        root: Vec<u8>,
        result: Result<CertificateAnswer, CertificateError>,
    },
}

fn refused() -> Frame {
    Frame::SignReply {
        status: SignStatus::BadCsr,
        certificate: Vec::new(),
        root: Vec::new(),
    }
}

impl<A: Attest, D: Dial> Actor<A, D> {
    /// A session with `peer` opened: the authority sends it the current list (members that
    /// were offline catch up, BMCs not yet in the group see the offer).
    pub(super) fn group_session_up(&mut self, peer: &Fingerprint) {
        if let (true, Some((_, bytes))) = (self.pairing.group_authority(), &self.group.signed) {
            self.group.mailboxes.send(
                peer,
                &Frame::GroupList {
                    list: bytes.clone(),
                },
            );
        }
    }

    /// `FactoryReset.Reset()`: the group root (erased with the keys) and the signed list
    /// are forgotten, and a member no longer admits by its trust store. An authority signs
    /// nothing until its next start, which creates a new group root.
    pub(super) fn forget_group(&mut self) {
        self.group.root = None;
        self.group.signed = None;
        self.group.joining = None;
        self.keeper.set_group_member(false);
    }

    /// Signs `list` with the group root key (creating the root first if needed).
    pub(super) fn publish_group_list(&mut self, list: GroupList) {
        let store = self.keeper.store();
        let dir = self.keeper.cert_dir();
        let name = self.keeper.bmc_name().to_owned();
        let now = clock::floored_now(self.pairing.time_floor());
        let version = list.version;
        self.spawn_work(async move {
            let work = tokio::task::spawn_blocking(move || {
                let root = root::ensure_root(store.as_ref(), &dir, &name, now)?;
                let bytes = root::sign_list(store.as_ref(), &list)?;
                Ok::<_, crate::identity::Error>((root, bytes))
            });
            let result = match work.await {
                Ok(r) => r.map_err(|e| ErrorChain(&e).to_string()),
                Err(_) => Err("the signing task panicked".into()),
            };
            Done::Group(GroupDone::ListSigned { version, result })
        });
    }

    /// A group frame from the authenticated peer `from`.
    pub(super) fn group_frame(&mut self, from: Fingerprint, frame: Frame) -> Vec<Action> {
        match frame {
            Frame::GroupList { list } => match self.pairing.group_list_received(&from, &list) {
                Ok(actions) => actions,
                Err(e) => {
                    tracing::warn!(peer = %from, reason = %e, "group list refused; nothing changed");
                    Vec::new()
                }
            },
            Frame::SignRequest { csr } => {
                self.sign_request(from, csr);
                Vec::new()
            }
            Frame::SignReply {
                status,
                certificate,
                root,
            } => {
                self.sign_reply(from, status, certificate, root);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// Shows channel request `request` on D-Bus (a `Certs.Entry` object).
    fn show_request(&self, request: u64, state: SignRequestState, client_certificate: String) {
        let _ = self.notices.send(Notice::SignRequest {
            request,
            state,
            client_certificate,
        });
    }

    fn sign_request(&mut self, from: Fingerprint, csr: Vec<u8>) {
        if !self.pairing.group_authority() {
            // Not ours to answer beyond "no": no object, no signature.
            self.group.mailboxes.send_one(&from, &refused());
            return;
        }
        self.group.requests += 1;
        let request = self.group.requests;
        self.show_request(request, SignRequestState::Pending, String::new());
        let now = self.unix_now();
        let decision = csr_key(&csr)
            .and_then(|key| self.pairing.may_sign(Some(&from), &key.fingerprint(), now));
        let id = match (decision, self.group.root.clone()) {
            (Ok(id), Some(root)) => (id, root),
            (Err(why), _) => {
                tracing::warn!(peer = %from, reason = %why, "SignRequest refused (BadCSR)");
                self.group.mailboxes.send_one(&from, &refused());
                self.show_request(request, SignRequestState::BadCsr, String::new());
                return;
            }
            (Ok(_), None) => {
                tracing::warn!(peer = %from, "SignRequest refused: the group root is not ready");
                self.group.mailboxes.send_one(&from, &refused());
                self.show_request(request, SignRequestState::BadCsr, String::new());
                return;
            }
        };
        let (id, root) = id;
        let store = self.keeper.store();
        let at = clock::floored_now(self.pairing.time_floor());
        self.spawn_work(async move {
            let issuer = root.clone();
            let work = tokio::task::spawn_blocking(move || {
                root::sign_member_ca(store.as_ref(), &issuer, &csr, at)
            });
            let result = match work.await {
                Ok(r) => r.map_err(|e| ErrorChain(&e).to_string()),
                Err(_) => Err("the signing task panicked".into()),
            };
            Done::Group(GroupDone::Signed {
                requester: from,
                request,
                id,
                root,
                result,
            })
        });
    }

    /// `Certs.Authority.SignCSR`: the same rule as a request over the channel, the peer
    /// found by the CSR's key. A refusal is answered at once and changes nothing.
    pub(super) fn sign_csr_locally(&mut self, csr: Vec<u8>, reply: SignCsrReply) {
        let now = self.unix_now();
        let decision =
            csr_key(&csr).and_then(|key| self.pairing.may_sign(None, &key.fingerprint(), now));
        let (id, root) = match (decision, self.group.root.clone()) {
            (Ok(id), Some(root)) => (id, root),
            (Err(why), _) => {
                tracing::info!(reason = %why, "SignCSR refused");
                let _ = reply.send(Err(CertificateError::Refused(format!("BadCSR: {why}"))));
                return;
            }
            (Ok(_), None) => {
                let _ = reply.send(Err(CertificateError::Busy(
                    "the group root is not ready yet".into(),
                )));
                return;
            }
        };
        let store = self.keeper.store();
        let at = clock::floored_now(self.pairing.time_floor());
        self.spawn_work(async move {
            let issuer = root.clone();
            let work = tokio::task::spawn_blocking(move || {
                root::sign_member_ca(store.as_ref(), &issuer, &csr, at)
            });
            let result = match work.await {
                Ok(r) => r.map_err(|e| ErrorChain(&e).to_string()),
                Err(_) => Err("the signing task panicked".into()),
            };
            Done::Group(GroupDone::SignedLocally {
                id,
                root,
                result,
                reply,
            })
        });
    }

    /// Asks `authority` to sign our CA key: a CSR first (through the keeper).
    pub(super) fn request_signing(&mut self, authority: Fingerprint) {
        if self
            .group
            .joining
            .is_some_and(|(_, at)| at.elapsed() < JOIN_RETRY)
            || self.keeper.busy()
        {
            return;
        }
        self.group.joining = Some((authority, Instant::now()));
        let (reply, answer) = oneshot::channel();
        let now = clock::floored_now(self.pairing.time_floor());
        self.keeper
            .certificates(CertificateRequest::GenerateCsr(Box::default()), now, reply);
        self.spawn_work(async move {
            let result = answer
                .await
                .unwrap_or_else(|_| Err(CertificateError::Internal("keeper gone".into())));
            Done::Group(GroupDone::CsrReady { authority, result })
        });
    }

    fn sign_reply(
        &mut self,
        from: Fingerprint,
        status: SignStatus,
        certificate: Vec<u8>,
        root: Vec<u8>,
    ) {
        if self.group.joining.map(|(a, _)| a) != Some(from) {
            tracing::debug!(peer = %from, "SignReply nobody asked for; ignored");
            return;
        }
        if status != SignStatus::Signed {
            tracing::warn!(peer = %from, "the group authority refused our CSR (BadCSR)");
            return;
        }
        if let Err(e) = root::check_issued(&certificate, &root) {
            tracing::warn!(peer = %from, error = %ErrorChain(&e), "the group authority's answer does not verify; not installed");
            return;
        }
        let (reply, answer) = oneshot::channel();
        let now = clock::floored_now(self.pairing.time_floor());
        self.keeper
            .certificates(CertificateRequest::ReplaceCa(certificate), now, reply);
        self.spawn_work(async move {
            let result = answer
                .await
                .unwrap_or_else(|_| Err(CertificateError::Internal("keeper gone".into())));
            Done::Group(GroupDone::CaInstalled {
                authority: from,
                root,
                result,
            })
        });
    }

    pub(super) fn group_done(&mut self, done: GroupDone) -> Vec<Action> {
        match done {
            GroupDone::ListSigned { version, result } => {
                match result {
                    Ok((root, bytes)) => {
                        self.group.root = Some(root.into());
                        if self
                            .group
                            .signed
                            .as_ref()
                            .is_none_or(|(v, _)| *v <= version)
                        {
                            tracing::info!(
                                version,
                                "group list signed; sending it to every session"
                            );
                            self.group.signed = Some((version, bytes.clone()));
                            let frame = Frame::GroupList { list: bytes };
                            for peer in self.pairing.all_pins() {
                                self.group.mailboxes.send(&peer, &frame);
                            }
                        }
                    }
                    Err(e) => tracing::error!(version, error = %e, "cannot sign the group list"),
                }
                Vec::new()
            }
            GroupDone::Signed {
                requester,
                request,
                id,
                root,
                result,
            } => match result {
                Ok(certificate) => {
                    tracing::info!(peer = %id, "signed a member's CA certificate under the group root");
                    let pem = |der: &[u8]| pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()));
                    self.show_request(
                        request,
                        SignRequestState::Complete,
                        pem(&certificate) + &pem(&root),
                    );
                    self.group.mailboxes.send_one(
                        &requester,
                        &Frame::SignReply {
                            status: SignStatus::Signed,
                            certificate,
                            root: root.to_vec(),
                        },
                    );
                    self.pairing.signed(&id)
                }
                Err(e) => {
                    tracing::error!(peer = %id, error = %e, "cannot sign the member's CA certificate");
                    self.group.mailboxes.send_one(&requester, &refused());
                    self.show_request(request, SignRequestState::BadCsr, String::new());
                    Vec::new()
                }
            },
            GroupDone::SignedLocally {
                id,
                root,
                result,
                reply,
            } => match result {
                Ok(certificate) => {
                    tracing::info!(peer = %id, "SignCSR: signed a member's CA certificate under the group root");
                    let _ = reply.send(Ok((certificate, root.to_vec())));
                    self.pairing.signed(&id)
                }
                Err(e) => {
                    tracing::error!(peer = %id, error = %e, "SignCSR: cannot sign");
                    let _ = reply.send(Err(CertificateError::Internal(e)));
                    Vec::new()
                }
            },
            GroupDone::CsrReady { authority, result } => {
                let csr = match result {
                    Ok(CertificateAnswer::Csr(pem)) => pem::parse(pem).map(pem::Pem::into_contents),
                    other => {
                        tracing::warn!(result = ?other, "no CSR for the group authority; asked again at its next list");
                        self.group.joining = None;
                        return Vec::new();
                    }
                };
                // One session carries it: one request, one answer.
                let sent = csr.is_ok_and(|csr| {
                    self.group
                        .mailboxes
                        .send_one(&authority, &Frame::SignRequest { csr })
                });
                if sent {
                    tracing::info!(authority = %authority, "asked the group authority to sign our CA key");
                } else {
                    self.group.joining = None;
                }
                Vec::new()
            }
            GroupDone::CaInstalled {
                authority,
                root,
                result,
            } => {
                self.group.joining = None;
                if let Err(e) = result {
                    tracing::warn!(error = %e, "the group certificate was not installed");
                    return Vec::new();
                }
                let now = clock::floored_now(self.pairing.time_floor());
                match self
                    .keeper
                    .anchors_request(AnchorRequest::Install(root.clone()), now)
                {
                    Ok(_) | Err(CertificateError::NotAllowed(_)) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "cannot install the group root as our anchor");
                        return Vec::new();
                    }
                }
                let Ok(summary) = crate::identity::summarize(&root) else {
                    return Vec::new();
                };
                self.keeper.set_group_member(true);
                tracing::info!(authority = %authority, root = %summary.public_key.fingerprint(), "joined the group: CA certificate and group root installed");
                let mut actions = self
                    .pairing
                    .joined(authority, summary.public_key.spki_der());
                actions.push(Action::Publish);
                actions
            }
        }
    }
}
