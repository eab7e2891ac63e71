//! The SPDM 1.2 requester: a sans-IO state machine that attests one responder.
//!
//! Flow: GET_VERSION → GET_CAPABILITIES → NEGOTIATE_ALGORITHMS → GET_DIGESTS →
//! GET_CERTIFICATE (chunk loop, slot 0) → CHALLENGE (fresh nonce, all-measurements summary) →
//! GET_MEASUREMENTS (signed, all). It checks the chain against the [`TrustPolicy`], the chain
//! digest against DIGESTS, the CHALLENGE_AUTH signature over M1, the MEASUREMENTS signature
//! over L1, the measurement summary hash, and finally the reference values.
//!
//! The driver feeds each response to [`Requester::handle`] and carries out the returned
//! [`Action`]: send bytes, wait then send (Busy / ResponseNotReady), or finish with a
//! [`Verdict`]. Nonces come from the caller's RNG; the verification time from the caller.
//! Any error is final: the state machine refuses further input.
//!
//! With a [`QuoteRequest`] in the configuration (Redfish `SPDMGetSignedMeasurements`), the
//! last step instead asks for the caller's indices with the caller's nonce: one unsigned
//! GET_MEASUREMENTS per index but the last, then a signed one for the last (or one signed
//! request for all when no index is named). The whole L1 transcript, signature included, is
//! kept in [`Verdict::signed_measurements`] so a third party can check it.

use std::time::Duration;

use rand_core::RngCore;

use super::appraisal::{MeasurementPolicy, MeasurementResult, PolicyMode, appraise};
use super::crypto::{
    AsymAlgo, CONTEXT_CHALLENGE_AUTH, CONTEXT_MEASUREMENTS, HashAlgo, signing_input,
    verify_signature,
};
use super::msgs::algorithms::{
    ASYM_ECDSA_P256, ASYM_ECDSA_P384, HASH_SHA256, HASH_SHA384, MEAS_SPEC_DMTF, OPAQUE_DATA_FMT1,
};
use super::msgs::capabilities::{CERT_CAP, CHAL_CAP, MEAS_CAP_MASK, MEAS_CAP_SIG};
use super::msgs::challenge::SUMMARY_ALL;
use super::msgs::measurements::{OPERATION_ALL, SignatureRequest, encode_record};
use super::msgs::{
    Capabilities, Challenge, Code, ErrorCode, ErrorResponse, GetCertificate, GetDigests,
    GetMeasurements, GetVersion, Message, NONCE_LEN, NegotiateAlgorithms, ParseContext, Payload,
    RespondIfReady, SPDM_VERSION_10, SPDM_VERSION_12,
};
use super::transcript::Transcript;
use super::verify::{
    ChainTime, MAX_CHAIN_LEN, TrustBasis, TrustPolicy, VerifiedChain, verify_chain,
};
use super::{Error, MAX_MESSAGE_SIZE};
use crate::keys::Fingerprint;

/// CERTIFICATE header size; a portion is at most our DataTransferSize minus this.
const CERTIFICATE_HEADER_LEN: usize = 8;

/// What the requester is configured to accept and how patient it is.
#[derive(Clone, Debug)]
pub struct RequesterConfig {
    /// Which certificate chains to trust.
    pub trust: TrustPolicy,
    /// Reference values and what a mismatch does.
    pub measurements: MeasurementPolicy,
    /// When certificate validity is checked (the daemon's clock under the time rule).
    pub verify_time: ChainTime,
    /// How many ERROR(Busy) answers to one request are retried.
    pub busy_retries: u8,
    /// How long to wait before retrying after Busy.
    pub busy_delay: Duration,
    /// How many ResponseNotReady rounds one request may take.
    pub not_ready_retries: u8,
    /// Upper bound on a peer-requested ResponseNotReady delay.
    pub max_not_ready_delay: Duration,
    /// A caller's signed-measurements request; `None` for a plain attestation.
    pub quote: Option<QuoteRequest>,
}

/// Highest measurement index one can ask for by number (0 is "count", 0xFF is "all").
pub const MAX_MEASUREMENT_INDEX: u8 = 0xFE;

/// What a caller asks to have signed: measurement indices (empty = all) and its nonce.
/// Only slot 0 is attested, so only slot 0 can sign.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuoteRequest {
    indices: Vec<u8>,
    nonce: [u8; NONCE_LEN],
}

/// Why a signed-measurements request was refused. Nothing was sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// The nonce is not 32 bytes written as 64 hex digits.
    #[error("the nonce must be 32 bytes as 64 hex digits")]
    Nonce,
    /// An index outside 1..=254.
    #[error("measurement index {0} is outside 1..=254")]
    Index(u64),
    /// The same index twice.
    #[error("measurement index {0} is named twice")]
    DuplicateIndex(u64),
    /// A slot other than 0, the only one attested.
    #[error("slot {0} is unknown: only slot 0 is attested")]
    Slot(u64),
}

impl QuoteRequest {
    /// Parses the D-Bus arguments of `SPDMGetSignedMeasurements`.
    ///
    /// # Errors
    /// [`QuoteError`].
    pub fn parse(indices: &[u64], nonce_hex: &str, slot: u64) -> Result<Self, QuoteError> {
        let nonce = crate::hex::hex_decode(nonce_hex)
            .and_then(|b| <[u8; NONCE_LEN]>::try_from(b).ok())
            .ok_or(QuoteError::Nonce)?;
        if slot != 0 {
            return Err(QuoteError::Slot(slot));
        }
        // At most 254 distinct indices fit, so `out` stays small whatever the caller sends.
        let mut out: Vec<u8> = Vec::with_capacity(indices.len().min(256));
        for &i in indices {
            let index = u8::try_from(i)
                .ok()
                .filter(|b| (1..=MAX_MEASUREMENT_INDEX).contains(b))
                .ok_or(QuoteError::Index(i))?;
            if out.contains(&index) {
                return Err(QuoteError::DuplicateIndex(i));
            }
            out.push(index);
        }
        Ok(QuoteRequest {
            indices: out,
            nonce,
        })
    }

    /// The caller's nonce.
    pub fn nonce(&self) -> &[u8; NONCE_LEN] {
        &self.nonce
    }
}

/// A signed statement over measurements, as a third party checks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedMeasurements {
    /// L1: VCA || every GET_MEASUREMENTS/MEASUREMENTS pair, the last MEASUREMENTS with
    /// its signature (the final `signature_len` bytes). The signature is over
    /// `combined_spdm_prefix("responder-measurements signing") || H(L1 without signature)`.
    pub transcript: Vec<u8>,
    /// Length of the signature at the end of `transcript`.
    pub signature_len: usize,
}

impl RequesterConfig {
    /// A configuration with default retry budgets (3 Busy retries 100 ms apart, 3
    /// ResponseNotReady rounds of at most 2 s each).
    pub fn new(
        trust: TrustPolicy,
        measurements: MeasurementPolicy,
        verify_time: impl Into<ChainTime>,
    ) -> Self {
        RequesterConfig {
            trust,
            measurements,
            verify_time: verify_time.into(),
            busy_retries: 3,
            busy_delay: Duration::from_millis(100),
            not_ready_retries: 3,
            max_not_ready_delay: Duration::from_secs(2),
            quote: None,
        }
    }
}

/// What the driver must do next.
#[derive(Debug)]
pub enum Action {
    /// Send this request now.
    Send(Vec<u8>),
    /// Sleep `delay`, then send `message` (Busy retry or RESPOND_IF_READY).
    WaitThenSend {
        /// How long to wait.
        delay: Duration,
        /// What to send afterwards.
        message: Vec<u8>,
    },
    /// Attestation finished successfully.
    Done(Box<Verdict>),
}

/// The overall result of an attestation that completed the protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Outcome {
    /// Chain trusted, signatures valid, measurements matched (or were not appraised).
    Trusted,
    /// As above, but Audit mode recorded measurement mismatches.
    TrustedWithFindings,
    /// Enforce mode and measurements mismatched; returned inside
    /// [`Error::MeasurementsRejected`].
    Rejected,
}

/// The algorithms the responder selected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NegotiatedAlgorithms {
    /// BaseAsymSel.
    pub base_asym: AsymAlgo,
    /// BaseHashSel.
    pub base_hash: HashAlgo,
    /// MeasurementHashAlgo bit.
    pub measurement_hash_algo: u32,
    /// MeasurementSpecificationSel.
    pub measurement_specification: u8,
}

/// What an attestation established about the responder.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// Negotiated SPDM version byte (0x12).
    pub version: u8,
    /// Negotiated algorithms.
    pub algorithms: NegotiatedAlgorithms,
    /// The responder's capability flags.
    pub peer_capabilities: u32,
    /// The responder's slot-0 certificates (DER), root (or first intermediate) first.
    #[serde(skip)]
    pub chain: Vec<Vec<u8>>,
    /// RootHash of the chain.
    #[serde(serialize_with = "hex_bytes")]
    pub root_hash: Vec<u8>,
    /// SHA-256 of the leaf SubjectPublicKeyInfo: what the TLS channel is bound to.
    pub leaf_fingerprint: Fingerprint,
    /// Which trust rule accepted the chain.
    pub trust: TrustBasis,
    /// The measurement policy mode applied.
    pub measurement_mode: PolicyMode,
    /// Per-index appraisal.
    pub measurements: Vec<MeasurementResult>,
    /// Overall outcome.
    pub outcome: Outcome,
    /// The signed statement asked for with [`RequesterConfig::quote`].
    #[serde(skip)]
    pub signed_measurements: Option<SignedMeasurements>,
}

fn hex_bytes<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&crate::hex::hex_encode(bytes))
}

#[derive(Debug)]
struct CertProgress {
    requested: usize,
    total: Option<usize>,
}

// States are named after what they wait for, as the house style asks.
#[allow(clippy::enum_variant_names)]
#[derive(Debug)]
enum State {
    ExpectVersion,
    ExpectCapabilities,
    ExpectAlgorithms,
    ExpectDigests,
    ExpectCertificate(CertProgress),
    ExpectChallengeAuth,
    ExpectMeasurements,
    Finished,
}

impl State {
    fn expected_code(&self) -> Option<Code> {
        Some(match self {
            State::ExpectVersion => Code::Version,
            State::ExpectCapabilities => Code::Capabilities,
            State::ExpectAlgorithms => Code::Algorithms,
            State::ExpectDigests => Code::Digests,
            State::ExpectCertificate(_) => Code::Certificate,
            State::ExpectChallengeAuth => Code::ChallengeAuth,
            State::ExpectMeasurements => Code::Measurements,
            State::Finished => return None,
        })
    }
}

/// The requester state machine. Create with [`Requester::new`], then feed responses.
#[derive(Debug)]
pub struct Requester {
    config: RequesterConfig,
    state: State,
    transcript: Transcript,
    challenge_nonce: [u8; NONCE_LEN],
    measurement_nonce: [u8; NONCE_LEN],
    /// The request whose response is awaited, as sent (enters the transcript).
    pending: Vec<u8>,
    /// What was last put on the wire (the pending request or a RESPOND_IF_READY).
    last_sent: Vec<u8>,
    busy_left: u8,
    not_ready_left: u8,
    peer_flags: u32,
    algorithms: Option<NegotiatedAlgorithms>,
    slot0_digest: Vec<u8>,
    chain_bytes: Vec<u8>,
    verified: Option<VerifiedChain>,
    summary_hash: Vec<u8>,
    /// Quote indices still to ask for, in order.
    quote_left: std::collections::VecDeque<u8>,
    /// The raw L1 of a quote, kept from VCA on.
    quote_l1: Option<Vec<u8>>,
    /// Whether the awaited MEASUREMENTS carries a signature.
    expect_signed: bool,
}

impl Requester {
    /// A requester and its first message (GET_VERSION). Both nonces are drawn from `rng`
    /// now, so each attestation uses fresh ones.
    pub fn new(config: RequesterConfig, rng: &mut dyn RngCore) -> (Self, Vec<u8>) {
        let mut challenge_nonce = [0u8; NONCE_LEN];
        let mut measurement_nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut challenge_nonce);
        rng.fill_bytes(&mut measurement_nonce);
        let quote_left = config
            .quote
            .as_ref()
            .map(|q| q.indices.iter().copied().collect())
            .unwrap_or_default();
        if let Some(q) = &config.quote {
            measurement_nonce = q.nonce;
        }
        let mut req = Requester {
            config,
            state: State::ExpectVersion,
            transcript: Transcript::new(),
            challenge_nonce,
            measurement_nonce,
            pending: Vec::new(),
            last_sent: Vec::new(),
            busy_left: 0,
            not_ready_left: 0,
            peer_flags: 0,
            algorithms: None,
            slot0_digest: Vec::new(),
            chain_bytes: Vec::new(),
            verified: None,
            summary_hash: Vec::new(),
            quote_left,
            quote_l1: None,
            expect_signed: true,
        };
        let first = req.send(Message::new(
            SPDM_VERSION_10,
            Payload::GetVersion(GetVersion),
        ));
        (req, first)
    }

    /// True once the attestation finished, successfully or not.
    pub fn is_finished(&self) -> bool {
        matches!(self.state, State::Finished)
    }

    /// Consumes one response and says what to do next.
    ///
    /// # Errors
    /// Any protocol, signature, chain or policy failure; after an error the requester is
    /// finished and further calls return [`Error::ApiMisuse`].
    pub fn handle(&mut self, response: &[u8]) -> Result<Action, Error> {
        if self.is_finished() {
            return Err(Error::ApiMisuse("requester already finished"));
        }
        let result = self.step(response);
        if result.is_err() {
            self.state = State::Finished;
        }
        result
    }

    fn send(&mut self, msg: Message) -> Vec<u8> {
        let bytes = msg.to_bytes();
        self.pending = bytes.clone();
        self.last_sent = bytes.clone();
        self.busy_left = self.config.busy_retries;
        self.not_ready_left = self.config.not_ready_retries;
        bytes
    }

    fn send12(&mut self, payload: Payload) -> Action {
        Action::Send(self.send(Message::new(SPDM_VERSION_12, payload)))
    }

    fn parse_context(&self) -> ParseContext {
        let (hash_len, signature_len) = match &self.algorithms {
            Some(a) => (a.base_hash.size(), a.base_asym.signature_len()),
            None => (32, 64),
        };
        ParseContext {
            hash_len,
            signature_len,
            summary_hash: true,
            signed_measurements: self.expect_signed,
        }
    }

    fn algorithms(&self) -> Result<NegotiatedAlgorithms, Error> {
        self.algorithms
            .ok_or(Error::ApiMisuse("algorithms not negotiated"))
    }

    fn step(&mut self, response: &[u8]) -> Result<Action, Error> {
        let expected_code = self
            .state
            .expected_code()
            .ok_or(Error::ApiMisuse("requester already finished"))?;
        let msg = Message::read(response, &self.parse_context())?;
        let expected_version = match self.state {
            State::ExpectVersion => SPDM_VERSION_10,
            _ => SPDM_VERSION_12,
        };
        if msg.version != expected_version {
            return Err(Error::WrongVersion {
                expected: expected_version,
                got: msg.version,
            });
        }
        if let Payload::Error(e) = &msg.payload {
            return self.on_error(e);
        }
        if msg.code() != expected_code {
            return Err(Error::UnexpectedResponse {
                expected: expected_code,
                got: msg.code(),
            });
        }
        let state = std::mem::replace(&mut self.state, State::Finished);
        match (state, msg.payload) {
            (State::ExpectVersion, Payload::Version(v)) => {
                if !v
                    .entries
                    .iter()
                    .any(|e| e.version_byte() == SPDM_VERSION_12)
                {
                    return Err(Error::PeerIncompatible("responder does not offer spdm 1.2"));
                }
                self.vca(response)?;
                self.state = State::ExpectCapabilities;
                Ok(self.send12(Payload::GetCapabilities(Capabilities {
                    ct_exponent: 0,
                    flags: 0,
                    data_transfer_size: len_u32(MAX_MESSAGE_SIZE),
                    max_spdm_msg_size: len_u32(MAX_MESSAGE_SIZE),
                })))
            }
            (State::ExpectCapabilities, Payload::Capabilities(c)) => {
                c.check_sizes()?;
                if c.flags & CERT_CAP == 0 || c.flags & CHAL_CAP == 0 {
                    return Err(Error::PeerIncompatible(
                        "responder lacks CERT_CAP or CHAL_CAP",
                    ));
                }
                if c.flags & MEAS_CAP_MASK != MEAS_CAP_SIG {
                    return Err(Error::PeerIncompatible(
                        "responder cannot sign measurements",
                    ));
                }
                self.peer_flags = c.flags;
                self.vca(response)?;
                self.state = State::ExpectAlgorithms;
                Ok(
                    self.send12(Payload::NegotiateAlgorithms(NegotiateAlgorithms {
                        measurement_specification: MEAS_SPEC_DMTF,
                        other_params_support: OPAQUE_DATA_FMT1,
                        base_asym_algo: ASYM_ECDSA_P256 | ASYM_ECDSA_P384,
                        base_hash_algo: HASH_SHA256 | HASH_SHA384,
                        ext_asym: Vec::new(),
                        ext_hash: Vec::new(),
                        alg_structs: Vec::new(),
                    })),
                )
            }
            (State::ExpectAlgorithms, Payload::Algorithms(a)) => {
                let base_asym = AsymAlgo::from_base_asym(a.base_asym_sel).ok_or(
                    Error::PeerMisbehaved("BaseAsymSel is not one offered algorithm"),
                )?;
                let base_hash = HashAlgo::from_base_hash(a.base_hash_sel).ok_or(
                    Error::PeerMisbehaved("BaseHashSel is not one offered algorithm"),
                )?;
                if a.measurement_specification_sel != MEAS_SPEC_DMTF {
                    return Err(Error::PeerIncompatible("no DMTF measurement specification"));
                }
                if a.measurement_hash_algo.count_ones() != 1 {
                    return Err(Error::PeerMisbehaved("MeasurementHashAlgo is not one bit"));
                }
                if !a.ext_asym_sel.is_empty() || !a.ext_hash_sel.is_empty() {
                    return Err(Error::PeerMisbehaved("extended algorithm selected unasked"));
                }
                self.vca(response)?;
                self.transcript.negotiated(base_hash);
                self.algorithms = Some(NegotiatedAlgorithms {
                    base_asym,
                    base_hash,
                    measurement_hash_algo: a.measurement_hash_algo,
                    measurement_specification: a.measurement_specification_sel,
                });
                self.state = State::ExpectDigests;
                Ok(self.send12(Payload::GetDigests(GetDigests)))
            }
            (State::ExpectDigests, Payload::Digests(d)) => {
                self.slot0_digest = d
                    .for_slot(0)
                    .ok_or(Error::PeerIncompatible(
                        "responder has no certificate in slot 0",
                    ))?
                    .to_vec();
                self.b(response)?;
                Ok(self.request_certificate(None))
            }
            (State::ExpectCertificate(progress), Payload::Certificate(c)) => {
                self.on_certificate(progress, c, response)
            }
            (State::ExpectChallengeAuth, Payload::ChallengeAuth(auth)) => {
                let algs = self.algorithms()?;
                if auth.slot_id() != 0 || auth.slot_mask & 1 == 0 {
                    return Err(Error::PeerMisbehaved("CHALLENGE_AUTH names another slot"));
                }
                if auth.cert_chain_hash != self.slot0_digest {
                    return Err(Error::PeerMisbehaved("CHALLENGE_AUTH chain hash differs"));
                }
                let unsigned = strip_signature(response, auth.signature.len())?;
                let pending = self.pending.clone();
                let m1 = self
                    .transcript
                    .finish_m1(&pending, unsigned)
                    .map_err(|_| Error::ApiMisuse("transcript"))?;
                self.check_signature(algs, CONTEXT_CHALLENGE_AUTH, &m1, &auth.signature)
                    .map_err(|()| Error::BadSignature("CHALLENGE_AUTH"))?;
                self.summary_hash = auth.summary_hash.unwrap_or_default();
                self.state = State::ExpectMeasurements;
                if self.config.quote.is_some() {
                    self.quote_l1 = Some(self.transcript.vca().to_vec());
                }
                Ok(self.request_measurements())
            }
            (State::ExpectMeasurements, Payload::Measurements(m)) => {
                let algs = self.algorithms()?;
                if m.param2 & 0x0f != 0 {
                    return Err(Error::PeerMisbehaved("MEASUREMENTS names another slot"));
                }
                let mut seen = [false; 256];
                for b in &m.blocks {
                    let slot = seen
                        .get_mut(usize::from(b.index))
                        .ok_or(Error::PeerMisbehaved("measurement index"))?;
                    if *slot {
                        return Err(Error::PeerMisbehaved("duplicate measurement index"));
                    }
                    *slot = true;
                }
                let pending = self.pending.clone();
                if let Some(l1) = &mut self.quote_l1 {
                    l1.extend_from_slice(&pending);
                    l1.extend_from_slice(response);
                }
                if !self.expect_signed {
                    self.transcript
                        .append_l(&pending, response)
                        .map_err(|_| Error::ApiMisuse("transcript"))?;
                    self.state = State::ExpectMeasurements;
                    return Ok(self.request_measurements());
                }
                let signature = m
                    .signature
                    .as_deref()
                    .ok_or(Error::PeerMisbehaved("MEASUREMENTS is unsigned"))?;
                let unsigned = strip_signature(response, signature.len())?;
                let l1 = self
                    .transcript
                    .finish_l1(&pending, unsigned)
                    .map_err(|_| Error::ApiMisuse("transcript"))?;
                self.check_signature(algs, CONTEXT_MEASUREMENTS, &l1, signature)
                    .map_err(|()| Error::BadSignature("MEASUREMENTS"))?;
                // The summary hash covers all blocks; a quote of some indices cannot be
                // checked against it (its signature over L1 already binds what it says).
                let all = self
                    .config
                    .quote
                    .as_ref()
                    .is_none_or(|q| q.indices.is_empty());
                if all && algs.base_hash.digest(&encode_record(&m.blocks)) != self.summary_hash {
                    return Err(Error::PeerMisbehaved(
                        "measurement summary hash does not match the measurements",
                    ));
                }
                self.finish(algs, &m.blocks)
            }
            _ => Err(Error::ApiMisuse("state and response disagree")),
        }
    }

    /// The next GET_MEASUREMENTS: signed for all (no quote, or a quote of all), else one
    /// index, signed when it is the last one.
    fn request_measurements(&mut self) -> Action {
        let (operation, signed) = match self.quote_left.pop_front() {
            None => (OPERATION_ALL, true),
            Some(index) => (index, self.quote_left.is_empty()),
        };
        self.expect_signed = signed;
        self.send12(Payload::GetMeasurements(GetMeasurements {
            raw_bitstream: false,
            new_measurement: false,
            operation,
            signature: signed.then_some(SignatureRequest {
                nonce: self.measurement_nonce,
                slot_id: 0,
            }),
        }))
    }

    fn vca(&mut self, response: &[u8]) -> Result<(), Error> {
        let pending = self.pending.clone();
        self.transcript
            .append_vca(&pending)
            .and_then(|()| self.transcript.append_vca(response))
            .map_err(|_| Error::PeerMisbehaved("version/capabilities/algorithms too large"))
    }

    fn b(&mut self, response: &[u8]) -> Result<(), Error> {
        let pending = self.pending.clone();
        self.transcript
            .append_b(&pending)
            .and_then(|()| self.transcript.append_b(response))
            .map_err(|_| Error::ApiMisuse("transcript"))
    }

    fn request_certificate(&mut self, remainder: Option<usize>) -> Action {
        let cap = MAX_MESSAGE_SIZE - CERTIFICATE_HEADER_LEN;
        let requested = remainder.map_or(cap, |r| r.min(cap));
        let offset = self.chain_bytes.len();
        self.state = State::ExpectCertificate(CertProgress {
            requested,
            total: remainder.map(|r| r + offset),
        });
        self.send12(Payload::GetCertificate(GetCertificate {
            slot_id: 0,
            offset: u16::try_from(offset).unwrap_or(u16::MAX),
            length: u16::try_from(requested).unwrap_or(u16::MAX),
        }))
    }

    fn on_certificate(
        &mut self,
        progress: CertProgress,
        c: super::msgs::Certificate,
        response: &[u8],
    ) -> Result<Action, Error> {
        if c.slot_id != 0 {
            return Err(Error::PeerMisbehaved("CERTIFICATE for another slot"));
        }
        if c.portion.is_empty() || c.portion.len() > progress.requested {
            return Err(Error::PeerMisbehaved("CERTIFICATE portion length"));
        }
        let remainder = usize::from(c.remainder_length);
        let total = self.chain_bytes.len() + c.portion.len() + remainder;
        if total > MAX_CHAIN_LEN || progress.total.is_some_and(|t| t != total) {
            return Err(Error::PeerMisbehaved(
                "CERTIFICATE lengths are inconsistent",
            ));
        }
        self.chain_bytes.extend_from_slice(&c.portion);
        self.b(response)?;
        if remainder > 0 {
            return Ok(self.request_certificate(Some(remainder)));
        }
        let algs = self.algorithms()?;
        if algs.base_hash.digest(&self.chain_bytes) != self.slot0_digest {
            return Err(Error::PeerMisbehaved(
                "certificate chain does not match its digest",
            ));
        }
        let verified = verify_chain(
            &self.chain_bytes,
            algs.base_hash,
            algs.base_asym,
            &self.config.trust,
            self.config.verify_time,
        )?;
        tracing::debug!(leaf = %verified.leaf_fingerprint, "spdm chain accepted");
        self.verified = Some(verified);
        self.state = State::ExpectChallengeAuth;
        Ok(self.send12(Payload::Challenge(Challenge {
            slot_id: 0,
            summary_hash_type: SUMMARY_ALL,
            nonce: self.challenge_nonce,
        })))
    }

    fn check_signature(
        &self,
        algs: NegotiatedAlgorithms,
        context: &str,
        transcript_hash: &[u8],
        signature: &[u8],
    ) -> Result<(), ()> {
        let leaf = self.verified.as_ref().ok_or(())?;
        let message = signing_input(SPDM_VERSION_12, context, transcript_hash);
        verify_signature(
            algs.base_asym,
            algs.base_hash,
            &leaf.leaf_spki,
            &message,
            signature,
        )
        .map_err(|_| ())
    }

    fn on_error(&mut self, e: &ErrorResponse) -> Result<Action, Error> {
        match e.code {
            ErrorCode::Busy => {
                self.busy_left = self
                    .busy_left
                    .checked_sub(1)
                    .ok_or(Error::RetriesExhausted)?;
                Ok(Action::WaitThenSend {
                    delay: self.config.busy_delay,
                    message: self.last_sent.clone(),
                })
            }
            ErrorCode::ResponseNotReady => {
                let nr = e
                    .not_ready_data()
                    .ok_or(Error::PeerMisbehaved("ResponseNotReady without its data"))?;
                let pending_code = self.pending.get(1).copied();
                if pending_code != Some(nr.request_code) {
                    return Err(Error::PeerMisbehaved(
                        "ResponseNotReady for another request",
                    ));
                }
                self.not_ready_left = self
                    .not_ready_left
                    .checked_sub(1)
                    .ok_or(Error::RetriesExhausted)?;
                let delay =
                    Duration::from_micros(nr.wait_micros()).min(self.config.max_not_ready_delay);
                let version = match self.state {
                    State::ExpectVersion => SPDM_VERSION_10,
                    _ => SPDM_VERSION_12,
                };
                let message = Message::new(
                    version,
                    Payload::RespondIfReady(RespondIfReady {
                        request_code: nr.request_code,
                        token: nr.token,
                    }),
                )
                .to_bytes();
                self.last_sent = message.clone();
                Ok(Action::WaitThenSend { delay, message })
            }
            code => Err(Error::Peer { code, data: e.data }),
        }
    }

    fn finish(
        &mut self,
        algs: NegotiatedAlgorithms,
        blocks: &[super::msgs::MeasurementBlock],
    ) -> Result<Action, Error> {
        let chain = self
            .verified
            .take()
            .ok_or(Error::ApiMisuse("chain not verified"))?;
        let results = appraise(blocks, &self.config.measurements);
        let failures = results.iter().filter(|r| r.is_failure()).count();
        let mode = self.config.measurements.mode;
        let outcome = match (mode, failures) {
            (_, 0) | (PolicyMode::Off, _) => Outcome::Trusted,
            (PolicyMode::Audit, _) => Outcome::TrustedWithFindings,
            (PolicyMode::Enforce, _) => Outcome::Rejected,
        };
        let verdict = Box::new(Verdict {
            version: SPDM_VERSION_12,
            algorithms: algs,
            peer_capabilities: self.peer_flags,
            chain: chain.certs,
            root_hash: chain.root_hash,
            leaf_fingerprint: chain.leaf_fingerprint,
            trust: chain.basis,
            measurement_mode: mode,
            measurements: results,
            outcome,
            signed_measurements: self.quote_l1.take().map(|transcript| SignedMeasurements {
                transcript,
                signature_len: algs.base_asym.signature_len(),
            }),
        });
        self.state = State::Finished;
        if outcome == Outcome::Rejected {
            return Err(Error::MeasurementsRejected(verdict));
        }
        Ok(Action::Done(verdict))
    }
}

fn strip_signature(response: &[u8], sig_len: usize) -> Result<&[u8], Error> {
    response
        .len()
        .checked_sub(sig_len)
        .and_then(|n| response.get(..n))
        .ok_or(Error::ApiMisuse("signature longer than message"))
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod quote_tests {
    use super::*;

    #[test]
    fn quote_requests_parse_or_are_refused() {
        let nonce = "ab".repeat(32);
        let q = QuoteRequest::parse(&[3, 1, 254], &nonce.to_uppercase(), 0).unwrap();
        assert_eq!(q.indices, vec![3, 1, 254]);
        assert_eq!(q.nonce(), &[0xab; 32]);
        assert!(
            QuoteRequest::parse(&[], &nonce, 0)
                .unwrap()
                .indices
                .is_empty()
        );
        let bad = [
            (vec![], "ab".repeat(31), 0, QuoteError::Nonce),
            (vec![], "ab".repeat(33), 0, QuoteError::Nonce),
            (
                vec![],
                format!("{}g0", "ab".repeat(31)),
                0,
                QuoteError::Nonce,
            ),
            (vec![], String::new(), 0, QuoteError::Nonce),
            (vec![0], nonce.clone(), 0, QuoteError::Index(0)),
            (vec![255], nonce.clone(), 0, QuoteError::Index(255)),
            (vec![1 << 40], nonce.clone(), 0, QuoteError::Index(1 << 40)),
            (vec![2, 2], nonce.clone(), 0, QuoteError::DuplicateIndex(2)),
            (vec![], nonce.clone(), 1, QuoteError::Slot(1)),
        ];
        for (indices, n, slot, want) in bad {
            assert_eq!(QuoteRequest::parse(&indices, &n, slot), Err(want));
        }
    }
}
