//! The SPDM 1.2 responder: a sans-IO state machine that answers one requester.
//!
//! It advertises only SPDM 1.2 and CERT_CAP | CHAL_CAP | MEAS_CAP(signed), serves slot 0
//! with the chain it is configured with, and signs CHALLENGE_AUTH and MEASUREMENTS through
//! [`KeyStore`] with [`KeyRole::Identity`]. The algorithms follow the leaf key: ECDSA P-256
//! with SHA-256, or ECDSA P-384 with SHA-384 ([`Suite`]). Measurement blocks come from the
//! caller, as SHA-256 digests (MeasurementHashAlgo is always SHA-256).
//!
//! Nothing for sessions, mutual authentication or chunking is advertised, so ALGORITHMS
//! selects nothing in the DHE, AEAD, ReqBaseAsymAlg and KeySchedule tables (each comes back
//! with AlgSupported 0).
//!
//! Each request is checked in this order: a header, a request code we implement
//! (UnsupportedRequest), allowed in the current state (UnexpectedRequest, before the body is
//! parsed, so a repeated GET_CAPABILITIES with a bad reserved byte is still unexpected), the
//! version in force (VersionMismatch), then the body (InvalidRequest).
//!
//! Every request gets exactly one response; failures become SPDM ERROR responses, mapped
//! from [`Reject`] in one place (`From<Reject> for ErrorResponse`). Until capabilities are
//! settled an ERROR carries version 0x10 where the version itself is the problem. A rejected
//! request never changes state; GET_VERSION always restarts the connection.

use std::sync::Arc;

use rand_core::RngCore;

use super::appraisal::PolicyMode;
use super::codec::InvalidMessage;
use super::crypto::{
    AsymAlgo, CONTEXT_CHALLENGE_AUTH, CONTEXT_MEASUREMENTS, HashAlgo, signing_input,
};
use super::msgs::algorithms::{MEAS_SPEC_DMTF, OPAQUE_DATA_FMT1};
use super::msgs::capabilities::{CERT_CAP, CHAL_CAP, MEAS_CAP_SIG};
use super::msgs::challenge::SUMMARY_NONE;
use super::msgs::measurements::{OPERATION_ALL, OPERATION_COUNT, encode_record};
use super::msgs::{
    AlgStruct, Algorithms, Capabilities, Certificate, ChallengeAuth, Code, Digests, ErrorCode,
    ErrorResponse, MeasurementBlock, Measurements, Message, NONCE_LEN, ParseContext, Payload,
    SPDM_VERSION_10, SPDM_VERSION_12, Version, VersionNumber,
};
use super::transcript::Transcript;
use super::verify::SpdmChain;
use super::{Error, MAX_MESSAGE_SIZE};
use crate::keys::{KeyRole, KeyStore};

/// CERTIFICATE header size (a portion must fit the requester's DataTransferSize with it).
const CERTIFICATE_HEADER_LEN: usize = 8;

/// What the responder serves.
#[derive(Clone, Debug)]
pub struct ResponderConfig {
    /// Slot-0 certificates (DER), root first, leaf last; the leaf must hold the key store's
    /// identity key.
    pub chain: Vec<Vec<u8>>,
    /// Measurement blocks with SHA-256 digests, ascending unique indices (built by the caller).
    pub measurements: Vec<MeasurementBlock>,
    /// CTExponent advertised: signing may take up to 2^ct_exponent µs (TPM signing is slow).
    pub ct_exponent: u8,
}

impl ResponderConfig {
    /// A configuration with CTExponent 20 (about one second, enough for a TPM signature).
    pub fn new(chain: Vec<Vec<u8>>, measurements: Vec<MeasurementBlock>) -> Self {
        ResponderConfig {
            chain,
            measurements,
            ct_exponent: 20,
        }
    }
}

/// Why a request is refused. Mapped to an ERROR response by the one `From` impl below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// Malformed or semantically invalid request.
    Invalid(&'static str),
    /// Not allowed in the current state.
    Unexpected,
    /// A request code we do not implement.
    Unsupported(u8),
    /// The request's SPDMVersion is not the one in force.
    VersionMismatch,
    /// The response would not fit the requester's DataTransferSize.
    ResponseTooLarge,
    /// A local failure (key store); not the requester's fault.
    Internal,
}

impl From<InvalidMessage> for Reject {
    fn from(e: InvalidMessage) -> Self {
        Reject::Invalid(match e {
            InvalidMessage::Truncated(w)
            | InvalidMessage::TrailingData(w)
            | InvalidMessage::NonZeroReserved(w)
            | InvalidMessage::InvalidValue(w)
            | InvalidMessage::TooLarge(w)
            | InvalidMessage::LengthMismatch(w) => w,
        })
    }
}

impl From<Reject> for ErrorResponse {
    fn from(r: Reject) -> Self {
        match r {
            Reject::Invalid(_) => ErrorResponse::new(ErrorCode::InvalidRequest, 0),
            Reject::Unexpected => ErrorResponse::new(ErrorCode::UnexpectedRequest, 0),
            Reject::Unsupported(code) => ErrorResponse::new(ErrorCode::UnsupportedRequest, code),
            Reject::VersionMismatch => ErrorResponse::new(ErrorCode::VersionMismatch, 0),
            Reject::ResponseTooLarge => ErrorResponse::new(ErrorCode::ResponseTooLarge, 0),
            Reject::Internal => ErrorResponse::new(ErrorCode::Unspecified, 0),
        }
    }
}

/// The algorithms a responder signs with, fixed by its leaf key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Suite {
    /// BaseAsymAlgo: the leaf key's curve.
    pub asym: AsymAlgo,
    /// BaseHashAlgo paired with that curve.
    pub hash: HashAlgo,
}

impl Suite {
    /// The suite for a leaf key (SubjectPublicKeyInfo DER): P-256 signs with SHA-256, P-384
    /// with SHA-384. None for any other key.
    pub fn for_key(spki_der: &[u8]) -> Option<Self> {
        [
            Suite {
                asym: AsymAlgo::EcdsaP256,
                hash: HashAlgo::Sha256,
            },
            Suite {
                asym: AsymAlgo::EcdsaP384,
                hash: HashAlgo::Sha384,
            },
        ]
        .into_iter()
        .find(|s| s.asym.matches_key(spki_der))
    }
}

/// MeasurementHashAlgo: the digests in the caller's measurement blocks are SHA-256.
const MEASUREMENT_HASH: HashAlgo = HashAlgo::Sha256;

// States are named after what they wait for, as the house style asks.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    ExpectGetVersion,
    ExpectGetCapabilities,
    ExpectNegotiateAlgorithms { peer_dts: usize },
    ExpectAttestationRequests { peer_dts: usize, measurements: bool },
}

impl State {
    /// Whether a request with `code` may come now. GET_VERSION always may (it restarts the
    /// connection); GET_MEASUREMENTS only after a measurement specification was agreed.
    fn admits(self, code: Code) -> bool {
        match (self, code) {
            (_, Code::GetVersion)
            | (State::ExpectGetCapabilities, Code::GetCapabilities)
            | (State::ExpectNegotiateAlgorithms { .. }, Code::NegotiateAlgorithms)
            | (
                State::ExpectAttestationRequests { .. },
                Code::GetDigests | Code::GetCertificate | Code::Challenge,
            )
            | (
                State::ExpectAttestationRequests {
                    measurements: true, ..
                },
                Code::GetMeasurements,
            ) => true,
            // RESPOND_IF_READY included: we never answer ResponseNotReady, so nothing is
            // ever pending.
            _ => false,
        }
    }

    /// The SPDMVersion of an ERROR answering a request with `code` refused for `reject`:
    /// 0x10 while no version is in force (before VERSION, and for GET_VERSION itself), and
    /// for a version mismatch before capabilities settle the version; 0x12 otherwise.
    fn error_version(self, code: Option<Code>, reject: Reject) -> u8 {
        match (self, code, reject) {
            (_, Some(Code::GetVersion), _)
            | (State::ExpectGetVersion, _, _)
            | (State::ExpectGetCapabilities, _, Reject::VersionMismatch) => SPDM_VERSION_10,
            _ => SPDM_VERSION_12,
        }
    }
}

/// The responder state machine for one connection.
#[derive(Debug)]
pub struct Responder {
    keystore: Arc<dyn KeyStore>,
    suite: Suite,
    chain: Vec<u8>,
    chain_digest: Vec<u8>,
    measurements: Vec<MeasurementBlock>,
    ct_exponent: u8,
    state: State,
    transcript: Transcript,
}

impl Responder {
    /// A responder serving `config` and signing with `keystore`'s identity key.
    ///
    /// It does not check that the chain chains (each certificate signed by the one before):
    /// that costs signature verifications per connection, so callers check once when they
    /// load a chain (see [`super::verify::verify_chain`]).
    ///
    /// # Errors
    /// [`Error::Config`] when the chain does not parse, its leaf is not the identity key or
    /// not a P-256 or P-384 key, or the measurement blocks are unusable;
    /// [`Error::KeyStore`] when the identity key is missing.
    pub fn new(config: ResponderConfig, keystore: Arc<dyn KeyStore>) -> Result<Self, Error> {
        let leaf = config
            .chain
            .last()
            .ok_or(Error::Config("certificate chain is empty"))?;
        let leaf_key = crate::x509::summarize(leaf)
            .map_err(|_| Error::Config("leaf certificate does not parse"))?
            .public_key;
        let suite = Suite::for_key(leaf_key.spki_der()).ok_or(Error::Config(
            "leaf key is neither an ECDSA P-256 nor a P-384 key",
        ))?;
        let chain = SpdmChain::from_der_certs(&config.chain, suite.hash)
            .map_err(|_| Error::Config("certificate chain does not parse"))?;
        if leaf_key != keystore.public_key(KeyRole::Identity)? {
            return Err(Error::Config(
                "leaf certificate is not for the identity key",
            ));
        }
        let mut last = 0u8;
        for b in &config.measurements {
            if b.index == 0 || b.index == 0xFF || b.index <= last {
                return Err(Error::Config(
                    "measurement indices must ascend within 1..=254",
                ));
            }
            last = b.index;
        }
        if encode_record(&config.measurements).len() > MAX_MESSAGE_SIZE {
            return Err(Error::Config("measurement record is too large"));
        }
        let bytes = chain.encode();
        Ok(Responder {
            keystore,
            suite,
            chain_digest: suite.hash.digest(&bytes),
            chain: bytes,
            measurements: config.measurements,
            ct_exponent: config.ct_exponent,
            state: State::ExpectGetVersion,
            transcript: Transcript::new(),
        })
    }

    /// The algorithms this responder signs with.
    pub fn suite(&self) -> Suite {
        self.suite
    }

    /// Answers one request. Always returns a response (possibly an ERROR).
    pub fn handle(&mut self, request: &[u8], rng: &mut dyn RngCore) -> Vec<u8> {
        // A rejected request leaves the state as it was, so it decides the ERROR's version.
        let state = self.state;
        match self.respond(request, rng) {
            Ok(bytes) => bytes,
            Err(reject) => {
                tracing::debug!(?reject, "spdm request rejected");
                let code = request.get(1).map(|c| Code::from(*c));
                let version = state.error_version(code, reject);
                Message::new(version, Payload::Error(ErrorResponse::from(reject))).to_bytes()
            }
        }
    }

    fn respond(&mut self, request: &[u8], rng: &mut dyn RngCore) -> Result<Vec<u8>, Reject> {
        let (version, code) = match request {
            [v, c, _, _, ..] => (*v, Code::from(*c)),
            _ => return Err(Reject::Invalid("shorter than a header")),
        };
        if !matches!(
            code,
            Code::GetVersion
                | Code::GetCapabilities
                | Code::NegotiateAlgorithms
                | Code::GetDigests
                | Code::GetCertificate
                | Code::Challenge
                | Code::GetMeasurements
                | Code::RespondIfReady
        ) {
            return Err(Reject::Unsupported(u8::from(code)));
        }
        // The state decides before the body is parsed: a request that may not come now is
        // unexpected whatever its bytes hold.
        if !self.state.admits(code) {
            return Err(Reject::Unexpected);
        }
        let expected_version = match code {
            Code::GetVersion => SPDM_VERSION_10,
            _ => SPDM_VERSION_12,
        };
        if version != expected_version {
            return Err(Reject::VersionMismatch);
        }
        let msg = Message::read(request, &ParseContext::default())?;
        match (self.state, msg.payload) {
            (_, Payload::GetVersion(_)) => {
                self.transcript.reset();
                self.state = State::ExpectGetVersion;
                let rsp = Message::new(
                    SPDM_VERSION_10,
                    Payload::Version(Version {
                        entries: vec![VersionNumber::V1_2],
                    }),
                )
                .to_bytes();
                self.vca(request, &rsp)?;
                self.state = State::ExpectGetCapabilities;
                Ok(rsp)
            }
            (State::ExpectGetCapabilities, Payload::GetCapabilities(c)) => {
                c.check_requester()?;
                let rsp = reply(Payload::Capabilities(Capabilities {
                    ct_exponent: self.ct_exponent,
                    flags: CERT_CAP | CHAL_CAP | MEAS_CAP_SIG,
                    data_transfer_size: len_u32(MAX_MESSAGE_SIZE),
                    max_spdm_msg_size: len_u32(MAX_MESSAGE_SIZE),
                }));
                self.vca(request, &rsp)?;
                self.state = State::ExpectNegotiateAlgorithms {
                    peer_dts: usize::try_from(c.data_transfer_size).unwrap_or(usize::MAX),
                };
                Ok(rsp)
            }
            (State::ExpectNegotiateAlgorithms { peer_dts }, Payload::NegotiateAlgorithms(n)) => {
                if n.base_asym_algo & self.suite.asym.base_asym_bit() == 0
                    || n.base_hash_algo & self.suite.hash.base_hash_bit() == 0
                {
                    return Err(Reject::Invalid("no common base algorithm"));
                }
                if !n.alg_structs.windows(2).all(|w| match w {
                    [a, b] => a.alg_type < b.alg_type,
                    _ => true,
                }) {
                    return Err(Reject::Invalid("AlgStruct tables out of order"));
                }
                let measurements = n.measurement_specification & MEAS_SPEC_DMTF != 0;
                let rsp = reply(Payload::Algorithms(Algorithms {
                    measurement_specification_sel: if measurements { MEAS_SPEC_DMTF } else { 0 },
                    other_params_selection: n.other_params_support & OPAQUE_DATA_FMT1,
                    measurement_hash_algo: if measurements {
                        MEASUREMENT_HASH.measurement_hash_bit()
                    } else {
                        0
                    },
                    base_asym_sel: self.suite.asym.base_asym_bit(),
                    base_hash_sel: self.suite.hash.base_hash_bit(),
                    ext_asym_sel: Vec::new(),
                    ext_hash_sel: Vec::new(),
                    alg_structs: n.alg_structs.iter().map(select_nothing).collect(),
                }));
                self.vca(request, &rsp)?;
                self.transcript.negotiated(self.suite.hash);
                self.state = State::ExpectAttestationRequests {
                    peer_dts,
                    measurements,
                };
                Ok(rsp)
            }
            (State::ExpectAttestationRequests { peer_dts, .. }, Payload::GetDigests(_)) => {
                let rsp = reply(Payload::Digests(Digests {
                    slot_mask: 1,
                    digests: vec![self.chain_digest.clone()],
                }));
                fits(&rsp, peer_dts)?;
                self.b(request, &rsp)?;
                Ok(rsp)
            }
            (State::ExpectAttestationRequests { peer_dts, .. }, Payload::GetCertificate(g)) => {
                if g.slot_id != 0 {
                    return Err(Reject::Invalid("only slot 0 is provisioned"));
                }
                let offset = usize::from(g.offset);
                let left = self
                    .chain
                    .len()
                    .checked_sub(offset)
                    .filter(|l| *l > 0)
                    .ok_or(Reject::Invalid("offset beyond the chain"))?;
                if g.length == 0 {
                    return Err(Reject::Invalid("zero length"));
                }
                let room = peer_dts
                    .min(MAX_MESSAGE_SIZE)
                    .checked_sub(CERTIFICATE_HEADER_LEN)
                    .ok_or(Reject::ResponseTooLarge)?;
                let n = usize::from(g.length).min(left).min(room);
                let portion = self
                    .chain
                    .get(offset..offset + n)
                    .ok_or(Reject::Invalid("offset beyond the chain"))?
                    .to_vec();
                let rsp = reply(Payload::Certificate(Certificate {
                    slot_id: 0,
                    portion,
                    remainder_length: u16::try_from(left - n).unwrap_or(u16::MAX),
                }));
                self.b(request, &rsp)?;
                Ok(rsp)
            }
            (
                State::ExpectAttestationRequests {
                    peer_dts,
                    measurements,
                },
                Payload::Challenge(c),
            ) => {
                if c.slot_id != 0 {
                    return Err(Reject::Invalid("only slot 0 is provisioned"));
                }
                if c.summary_hash_type != SUMMARY_NONE && !measurements {
                    return Err(Reject::Invalid("summary hash without measurements"));
                }
                // Every block we serve is firmware or configuration of the TCB, so the TCB
                // summary and the all-measurements summary cover the same blocks.
                let summary_hash = (c.summary_hash_type != SUMMARY_NONE)
                    .then(|| self.suite.hash.digest(&encode_record(&self.measurements)));
                let mut auth = ChallengeAuth {
                    attributes: 0,
                    slot_mask: 1,
                    cert_chain_hash: self.chain_digest.clone(),
                    nonce: fresh_nonce(rng),
                    summary_hash,
                    opaque: Vec::new(),
                    signature: Vec::new(),
                };
                let unsigned = reply(Payload::ChallengeAuth(auth.clone()));
                fits_signed(&unsigned, self.suite, peer_dts)?;
                let m1 = self
                    .transcript
                    .finish_m1(request, &unsigned)
                    .map_err(|_| Reject::Internal)?;
                auth.signature = self.sign(CONTEXT_CHALLENGE_AUTH, &m1)?;
                Ok(reply(Payload::ChallengeAuth(auth)))
            }
            (State::ExpectAttestationRequests { peer_dts, .. }, Payload::GetMeasurements(g)) => {
                let (param1, blocks) = match g.operation {
                    OPERATION_COUNT => (len_u8(self.measurements.len()), Vec::new()),
                    OPERATION_ALL => (0, self.measurements.clone()),
                    index => {
                        let block = self
                            .measurements
                            .iter()
                            .find(|b| b.index == index)
                            .ok_or(Reject::Invalid("no such measurement index"))?;
                        (0, vec![block.clone()])
                    }
                };
                let slot = match g.signature {
                    Some(s) if s.slot_id != 0 => {
                        return Err(Reject::Invalid("only slot 0 is provisioned"));
                    }
                    Some(_) => 0,
                    None => 0,
                };
                let mut rsp = Measurements {
                    param1,
                    param2: slot,
                    blocks,
                    nonce: fresh_nonce(rng),
                    opaque: Vec::new(),
                    signature: None,
                };
                let unsigned = reply(Payload::Measurements(rsp.clone()));
                if g.signature.is_none() {
                    fits(&unsigned, peer_dts)?;
                    self.transcript
                        .append_l(request, &unsigned)
                        .map_err(|_| Reject::Internal)?;
                    return Ok(unsigned);
                }
                fits_signed(&unsigned, self.suite, peer_dts)?;
                let l1 = self
                    .transcript
                    .finish_l1(request, &unsigned)
                    .map_err(|_| Reject::Internal)?;
                rsp.signature = Some(self.sign(CONTEXT_MEASUREMENTS, &l1)?);
                Ok(reply(Payload::Measurements(rsp)))
            }
            // `State::admits` let through only what the arms above take.
            _ => Err(Reject::Unexpected),
        }
    }

    fn vca(&mut self, request: &[u8], response: &[u8]) -> Result<(), Reject> {
        self.transcript
            .append_vca(request)
            .and_then(|()| self.transcript.append_vca(response))
            .map_err(|_| Reject::Internal)
    }

    fn b(&mut self, request: &[u8], response: &[u8]) -> Result<(), Reject> {
        self.transcript
            .append_b(request)
            .and_then(|()| self.transcript.append_b(response))
            .map_err(|_| Reject::Internal)
    }

    fn sign(&self, context: &str, transcript_hash: &[u8]) -> Result<Vec<u8>, Reject> {
        let message = signing_input(SPDM_VERSION_12, context, transcript_hash);
        let digest = self.suite.hash.digest(&message);
        let signature = self
            .keystore
            .sign_digest(KeyRole::Identity, &digest)
            .map_err(|e| {
                tracing::warn!(error = %e, "spdm signing failed");
                Reject::Internal
            })?;
        if signature.len() != self.suite.asym.signature_len() {
            tracing::warn!(
                len = signature.len(),
                "key store returned a signature of the wrong size"
            );
            return Err(Reject::Internal);
        }
        Ok(signature)
    }

    /// The measurement policy a requester should use to accept exactly this responder's
    /// measurements: handy for tests and for printing reference values.
    pub fn reference_policy(&self, mode: PolicyMode) -> super::MeasurementPolicy {
        let values = self
            .measurements
            .iter()
            .filter_map(|b| Some((b.index, b.dmtf_value().ok()?.value)))
            .collect();
        super::MeasurementPolicy {
            mode,
            reference: super::ReferenceValues::new(values),
        }
    }
}

fn reply(payload: Payload) -> Vec<u8> {
    Message::new(SPDM_VERSION_12, payload).to_bytes()
}

fn fits(response: &[u8], peer_dts: usize) -> Result<(), Reject> {
    if response.len() > peer_dts.min(MAX_MESSAGE_SIZE) {
        Err(Reject::ResponseTooLarge)
    } else {
        Ok(())
    }
}

fn fits_signed(unsigned: &[u8], suite: Suite, peer_dts: usize) -> Result<(), Reject> {
    let signed_len = unsigned.len().saturating_add(suite.asym.signature_len());
    if signed_len > peer_dts.min(MAX_MESSAGE_SIZE) {
        Err(Reject::ResponseTooLarge)
    } else {
        Ok(())
    }
}

fn fresh_nonce(rng: &mut dyn RngCore) -> [u8; NONCE_LEN] {
    let mut n = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut n);
    n
}

/// The answer to one ReqAlgStruct table. Every table (DHE, AEAD, ReqBaseAsymAlg,
/// KeySchedule) serves sessions or mutual authentication, which we never advertise
/// (KEY_EX_CAP, PSK_CAP and MUT_AUTH_CAP are 0), so DSP0274 wants no selection: the table
/// comes back with AlgSupported 0.
fn select_nothing(s: &AlgStruct) -> AlgStruct {
    AlgStruct {
        alg_type: s.alg_type,
        supported: 0,
        ext: Vec::new(),
    }
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn len_u8(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests;
