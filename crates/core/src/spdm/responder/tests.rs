//! The responder's answers to the requests DMTF's SPDM-Responder-Validator sends, one
//! test per rule it checks (assertion numbers in the names' comments), and a full
//! attestation with each curve against this crate's requester.
use std::time::{Duration, SystemTime};

use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _};

use super::*;
use crate::keys::{Backend, PublicKey};
use crate::spdm::msgs::algorithms::{
    ALG_TYPE_AEAD, ALG_TYPE_DHE, ALG_TYPE_KEY_SCHEDULE, ALG_TYPE_REQ_BASE_ASYM, ASYM_ECDSA_P256,
    ASYM_ECDSA_P384, HASH_SHA256, HASH_SHA384, NegotiateAlgorithms,
};
use crate::spdm::msgs::capabilities::{CHUNK_CAP, KEY_EX_CAP, MAC_CAP, MUT_AUTH_CAP, PSK_CAP_MASK};
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
    fn sign_digest(&self, _role: KeyRole, digest: &[u8]) -> Result<Vec<u8>, crate::keys::Error> {
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
