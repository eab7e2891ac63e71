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
mod tests {
    //! The responder's answers to the requests DMTF's SPDM-Responder-Validator sends, one
    //! test per rule it checks (assertion numbers in the names' comments), and a full
    //! attestation with each curve against this crate's requester.
    use std::time::{Duration, SystemTime};

    use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};

    use super::*;
    use crate::keys::{Backend, PublicKey};
    use crate::spdm::msgs::algorithms::{
        ALG_TYPE_AEAD, ALG_TYPE_DHE, ALG_TYPE_KEY_SCHEDULE, ALG_TYPE_REQ_BASE_ASYM,
        ASYM_ECDSA_P256, ASYM_ECDSA_P384, HASH_SHA256, HASH_SHA384, NegotiateAlgorithms,
    };
    use crate::spdm::msgs::capabilities::{
        CHUNK_CAP, KEY_EX_CAP, MAC_CAP, MUT_AUTH_CAP, PSK_CAP_MASK,
    };
    use crate::spdm::requester::{Action, Requester, RequesterConfig};
    use crate::spdm::{AsymAlgo, MeasurementPolicy, TrustPolicy};

    /// A deterministic RNG for nonces (the OS RNG is banned in this crate).
    struct Counter(u8);

    impl RngCore for Counter {
        fn next_u32(&mut self) -> u32 {
            self.0 = self.0.wrapping_add(1);
            u32::from(self.0)
        }
        fn next_u64(&mut self) -> u64 {
            u64::from(self.next_u32())
        }
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                self.0 = self.0.wrapping_add(1);
                *b = self.0;
            }
        }
        fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
            self.fill_bytes(dest);
            Ok(())
        }
    }

    #[derive(Debug)]
    enum TestKey {
        P256(p256::ecdsa::SigningKey),
        P384(p384::ecdsa::SigningKey),
    }

    /// An identity key in memory.
    #[derive(Debug)]
    struct MemoryKeyStore {
        key: TestKey,
    }

    impl KeyStore for MemoryKeyStore {
        fn backend(&self) -> Backend {
            Backend::File
        }
        fn generate(&self, role: KeyRole) -> Result<PublicKey, crate::keys::Error> {
            Err(crate::keys::Error::KeyMissing(role))
        }
        fn public_key(&self, _role: KeyRole) -> Result<PublicKey, crate::keys::Error> {
            let der = match &self.key {
                TestKey::P256(k) => k.verifying_key().to_public_key_der().unwrap(),
                TestKey::P384(k) => k.verifying_key().to_public_key_der().unwrap(),
            };
            Ok(PublicKey::from_spki_der(der.as_bytes().to_vec()))
        }
        fn sign_digest(
            &self,
            _role: KeyRole,
            digest: &[u8],
        ) -> Result<Vec<u8>, crate::keys::Error> {
            use p256::ecdsa::signature::hazmat::PrehashSigner as _;
            Ok(match &self.key {
                TestKey::P256(k) => {
                    let s: p256::ecdsa::Signature = k.sign_prehash(digest).unwrap();
                    s.to_bytes().to_vec()
                }
                TestKey::P384(k) => {
                    let s: p384::ecdsa::Signature = k.sign_prehash(digest).unwrap();
                    s.to_bytes().to_vec()
                }
            })
        }
        fn delete(&self, _role: KeyRole) -> Result<(), crate::keys::Error> {
            Ok(())
        }
    }

    /// A root CA and a leaf on `curve`, made now with rcgen; the leaf's key in a store.
    fn identity(curve: AsymAlgo) -> (Vec<Vec<u8>>, Arc<dyn KeyStore>) {
        let alg = match curve {
            AsymAlgo::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            AsymAlgo::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        };
        let ca_key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test root");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut leaf_params = rcgen::CertificateParams::new(vec!["bmc".to_owned()]).unwrap();
        leaf_params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test leaf");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let der = leaf_key.serialize_der();
        let key = match curve {
            AsymAlgo::EcdsaP256 => {
                TestKey::P256(p256::ecdsa::SigningKey::from_pkcs8_der(&der).unwrap())
            }
            AsymAlgo::EcdsaP384 => {
                TestKey::P384(p384::ecdsa::SigningKey::from_pkcs8_der(&der).unwrap())
            }
        };
        (
            vec![ca.der().to_vec(), leaf.der().to_vec()],
            Arc::new(MemoryKeyStore { key }),
        )
    }

    fn responder(curve: AsymAlgo) -> Responder {
        let (chain, store) = identity(curve);
        let blocks = vec![MeasurementBlock::dmtf(1, 0, &[0x11; 32])];
        Responder::new(ResponderConfig::new(chain, blocks), store).unwrap()
    }

    /// (SPDMVersion, ErrorCode) of an ERROR response.
    fn error_of(response: &[u8]) -> (u8, ErrorCode) {
        match Message::read(response, &ParseContext::default()).unwrap() {
            Message {
                version,
                payload: Payload::Error(e),
            } => (version, e.code),
            other => panic!("not an error: {other:?}"),
        }
    }

    fn get_capabilities(version: u8, flags: u32, dts: u32, max: u32) -> Vec<u8> {
        Message::new(
            version,
            Payload::GetCapabilities(Capabilities {
                ct_exponent: 0,
                flags,
                data_transfer_size: dts,
                max_spdm_msg_size: max,
            }),
        )
        .to_bytes()
    }

    fn negotiate_algorithms(asym: u32, hash: u32, alg_structs: Vec<AlgStruct>) -> Vec<u8> {
        Message::new(
            SPDM_VERSION_12,
            Payload::NegotiateAlgorithms(NegotiateAlgorithms {
                measurement_specification: MEAS_SPEC_DMTF,
                other_params_support: OPAQUE_DATA_FMT1,
                base_asym_algo: asym,
                base_hash_algo: hash,
                ext_asym: Vec::new(),
                ext_hash: Vec::new(),
                alg_structs,
            }),
        )
        .to_bytes()
    }

    const GET_VERSION: [u8; 4] = [0x10, 0x84, 0, 0];
    const SIZE: u32 = 0x1200;

    fn code_of(response: &[u8]) -> u8 {
        response[1]
    }

    #[test]
    fn version_mismatch_before_capabilities_carries_version_10() {
        // Validator 2.2.3: until GET_CAPABILITIES settles the version, ERROR(VersionMismatch)
        // is a 1.0 message; any other ERROR to a 1.2 request is 1.2 (2.4.3).
        let mut r = responder(AsymAlgo::EcdsaP256);
        let rng = &mut Counter(0);
        assert_eq!(code_of(&r.handle(&GET_VERSION, rng)), 0x04);
        for wrong in [0x11, 0x13] {
            assert_eq!(
                error_of(&r.handle(&get_capabilities(wrong, 0, SIZE, SIZE), rng)),
                (SPDM_VERSION_10, ErrorCode::VersionMismatch)
            );
        }
        assert_eq!(
            error_of(&r.handle(&get_capabilities(0x12, MAC_CAP, SIZE, SIZE), rng)),
            (SPDM_VERSION_12, ErrorCode::InvalidRequest)
        );
        assert_eq!(
            code_of(&r.handle(&get_capabilities(0x12, 0, SIZE, SIZE), rng)),
            0x61
        );
        // Settled: a mismatch is now answered in 1.2 (validator 3.2.3).
        let mut neg = negotiate_algorithms(ASYM_ECDSA_P256, HASH_SHA256, Vec::new());
        neg[0] = 0x11;
        assert_eq!(
            error_of(&r.handle(&neg, rng)),
            (SPDM_VERSION_12, ErrorCode::VersionMismatch)
        );
    }

    #[test]
    fn get_capabilities_without_chunk_cap_must_have_equal_sizes() {
        // Validator 2.4.2: MaxSPDMmsgSize != DataTransferSize without CHUNK_CAP.
        let mut r = responder(AsymAlgo::EcdsaP256);
        let rng = &mut Counter(0);
        r.handle(&GET_VERSION, rng);
        assert_eq!(
            error_of(&r.handle(&get_capabilities(0x12, 0, SIZE, SIZE + 1), rng)),
            (SPDM_VERSION_12, ErrorCode::InvalidRequest)
        );
        // With CHUNK_CAP the sizes may differ (we never send chunks, so nothing else changes).
        assert_eq!(
            code_of(&r.handle(&get_capabilities(0x12, CHUNK_CAP, SIZE, 2 * SIZE), rng)),
            0x61
        );
    }

    #[test]
    fn repeated_vca_requests_are_unexpected_whatever_their_bytes() {
        // Validator 2.6.4 and 3.7.4: a second GET_CAPABILITIES or NEGOTIATE_ALGORITHMS is
        // UnexpectedRequest even with a non-zero reserved byte (Param2), which would
        // otherwise be an InvalidRequest.
        let mut r = responder(AsymAlgo::EcdsaP256);
        let rng = &mut Counter(0);
        r.handle(&GET_VERSION, rng);
        let mut caps_with_param2 = get_capabilities(0x12, 0, SIZE, SIZE);
        caps_with_param2[3] = 1;
        assert_eq!(
            error_of(&r.handle(&caps_with_param2, rng)),
            (SPDM_VERSION_12, ErrorCode::InvalidRequest),
            "in its own state the bad byte is what is wrong"
        );
        assert_eq!(
            code_of(&r.handle(&get_capabilities(0x12, 0, SIZE, SIZE), rng)),
            0x61
        );
        assert_eq!(
            error_of(&r.handle(&caps_with_param2, rng)),
            (SPDM_VERSION_12, ErrorCode::UnexpectedRequest)
        );
        let neg = negotiate_algorithms(ASYM_ECDSA_P256, HASH_SHA256, Vec::new());
        assert_eq!(code_of(&r.handle(&neg, rng)), 0x63);
        let mut neg_with_param2 = neg.clone();
        neg_with_param2[3] = 1;
        assert_eq!(
            error_of(&r.handle(&neg_with_param2, rng)),
            (SPDM_VERSION_12, ErrorCode::UnexpectedRequest)
        );
        assert_eq!(
            error_of(&r.handle(&caps_with_param2, rng)),
            (SPDM_VERSION_12, ErrorCode::UnexpectedRequest)
        );
        // Nothing was disturbed: the connection still serves digests.
        assert_eq!(code_of(&r.handle(&[0x12, 0x81, 0, 0], rng)), 0x01);
    }

    #[test]
    fn algorithms_select_nothing_for_sessions_or_mutual_authentication() {
        // Validator 3.6.13-16: without KEY_EX_CAP, PSK_CAP and MUT_AUTH_CAP the DHE, AEAD,
        // ReqBaseAsymAlg and KeySchedule selections must be 0 (libspdm picks some anyway).
        let mut r = responder(AsymAlgo::EcdsaP256);
        let rng = &mut Counter(0);
        r.handle(&GET_VERSION, rng);
        let caps = r.handle(&get_capabilities(0x12, 0, SIZE, SIZE), rng);
        let Payload::Capabilities(c) = Message::read(&caps, &ParseContext::default())
            .unwrap()
            .payload
        else {
            panic!("not CAPABILITIES");
        };
        assert_eq!(c.flags & (KEY_EX_CAP | PSK_CAP_MASK | MUT_AUTH_CAP), 0);
        let table = |alg_type, supported| AlgStruct {
            alg_type,
            supported,
            ext: Vec::new(),
        };
        let offered = vec![
            table(ALG_TYPE_DHE, 0x0018),
            table(ALG_TYPE_AEAD, 0x0003),
            table(ALG_TYPE_REQ_BASE_ASYM, 0x0090),
            table(ALG_TYPE_KEY_SCHEDULE, 0x0001),
        ];
        let rsp = r.handle(
            &negotiate_algorithms(ASYM_ECDSA_P256, HASH_SHA256, offered),
            rng,
        );
        let Payload::Algorithms(a) = Message::read(&rsp, &ParseContext::default())
            .unwrap()
            .payload
        else {
            panic!("not ALGORITHMS: {rsp:02x?}");
        };
        assert_eq!(
            a.alg_structs,
            vec![
                table(ALG_TYPE_DHE, 0),
                table(ALG_TYPE_AEAD, 0),
                table(ALG_TYPE_REQ_BASE_ASYM, 0),
                table(ALG_TYPE_KEY_SCHEDULE, 0),
            ]
        );
        assert_eq!(
            (a.base_asym_sel, a.base_hash_sel),
            (ASYM_ECDSA_P256, HASH_SHA256)
        );
    }

    #[test]
    fn the_leaf_key_chooses_the_algorithms() {
        let p384 = responder(AsymAlgo::EcdsaP384);
        assert_eq!(
            p384.suite(),
            Suite {
                asym: AsymAlgo::EcdsaP384,
                hash: HashAlgo::Sha384
            }
        );
        // A P-384 responder refuses a requester that offers only P-256/SHA-256, and the
        // reverse.
        for (curve, asym, hash) in [
            (AsymAlgo::EcdsaP384, ASYM_ECDSA_P256, HASH_SHA256),
            (AsymAlgo::EcdsaP384, ASYM_ECDSA_P384, HASH_SHA256),
            (AsymAlgo::EcdsaP256, ASYM_ECDSA_P384, HASH_SHA384),
        ] {
            let mut r = responder(curve);
            let rng = &mut Counter(0);
            r.handle(&GET_VERSION, rng);
            r.handle(&get_capabilities(0x12, 0, SIZE, SIZE), rng);
            assert_eq!(
                error_of(&r.handle(&negotiate_algorithms(asym, hash, Vec::new()), rng)),
                (SPDM_VERSION_12, ErrorCode::InvalidRequest),
                "{curve:?} {asym:#x} {hash:#x}"
            );
        }
    }

    #[test]
    fn full_attestation_with_each_curve() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        for curve in [AsymAlgo::EcdsaP256, AsymAlgo::EcdsaP384] {
            let mut r = responder(curve);
            let rng = &mut Counter(0);
            let config =
                RequesterConfig::new(TrustPolicy::FirstContact, MeasurementPolicy::default(), at);
            let (mut requester, mut msg) = Requester::new(config, rng);
            let verdict = loop {
                let response = r.handle(&msg, rng);
                match requester.handle(&response).unwrap() {
                    Action::Send(next) => msg = next,
                    Action::Done(v) => break v,
                    Action::WaitThenSend { .. } => panic!("never busy"),
                }
            };
            assert_eq!(verdict.algorithms.base_asym, curve);
            assert_eq!(verdict.algorithms.base_hash, r.suite().hash);
            assert_eq!(verdict.measurements.len(), 1);
        }
    }
}
