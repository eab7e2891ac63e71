//! Golden vectors: wire traces of the DMTF reference implementation (libspdm spdm-emu,
//! SPDM 1.2, ECDSA P-256, SHA-256) in `tests/data/spdm/`.
//!
//! Proves that every traced SPDM message parses and re-encodes byte-identically, that our
//! transcript code reproduces M1 and L1 so the traced CHALLENGE_AUTH and MEASUREMENTS
//! signatures verify against the traced leaf key (and fail when any byte changes), that the
//! traced chain passes our trust policies, and that libspdm's requests drive our responder.

// Test code: fixtures and helpers panic on purpose when an expectation fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bmc_pairing_core::spdm::crypto::{
    AsymAlgo, CONTEXT_CHALLENGE_AUTH, CONTEXT_MEASUREMENTS, HashAlgo, signing_input,
    verify_signature,
};
use bmc_pairing_core::spdm::frame::{self, Frame};
use bmc_pairing_core::spdm::msgs::{Code, ErrorCode, Message, ParseContext, Payload};
use bmc_pairing_core::spdm::transcript::Transcript;
use bmc_pairing_core::spdm::verify::{SpdmChain, verify_chain};
use bmc_pairing_core::spdm::{
    ChainError, MeasurementBlock, Responder, ResponderConfig, TrustBasis, TrustPolicy,
};
use bmc_pairing_manager::identity::cert::ChainFiles;
use bmc_pairing_manager::identity::file::FileKeyStore;
use bmc_pairing_manager::identity::{Fingerprint, KeyRole, KeyStore};
use x509_parser::prelude::{FromDer, X509Certificate};

const TRACES: [&str; 5] = [
    "trace-req-tcp-1.2-minimal.log",
    "trace-req-tcp-1.2.log",
    "trace-rsp-tcp-1.2.log",
    "trace-req-none-1.2.log",
    "trace-rsp-none-1.2.log",
];

/// One "Platform port ... buffer" entry of a trace.
struct Entry {
    command: u32,
    transport: u32,
    payload: Vec<u8>,
}

fn hex_bytes(line: &str) -> Vec<u8> {
    line.split_whitespace()
        .map(|h| u8::from_str_radix(h, 16).unwrap())
        .collect()
}

fn be_u32(line: &str) -> u32 {
    let (_, hex) = line.split_once(':').unwrap();
    let b = hex_bytes(hex);
    u32::from_be_bytes(b.try_into().unwrap())
}

/// Parses the trace log format: for each buffer, the command, transport type and size
/// lines precede the "buffer:" line and the hex follows it.
fn parse_trace(name: &str) -> Vec<Entry> {
    let path = format!("{}/tests/data/spdm/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with("Platform port ") && line.ends_with(" buffer:") {
            assert!(lines[i - 3].contains(" command: "), "{name}:{i}");
            let command = be_u32(lines[i - 3]);
            let transport = be_u32(lines[i - 2]);
            let size = be_u32(lines[i - 1]) as usize;
            let payload = lines.get(i + 1).map(|l| hex_bytes(l)).unwrap_or_default();
            // An empty buffer prints an empty hex line.
            let payload = if size == 0 { Vec::new() } else { payload };
            assert_eq!(payload.len(), size, "{name}:{i}: size line disagrees");
            out.push(Entry {
                command,
                transport,
                payload,
            });
        }
    }
    assert!(!out.is_empty(), "{name}: no buffers");
    out
}

/// The SPDM messages of a trace (out-of-session only), in wire order, plus how many
/// secured (in-session) frames were skipped.
fn spdm_messages(name: &str) -> (Vec<Vec<u8>>, usize) {
    let mut msgs = Vec::new();
    let mut secured = 0;
    for e in parse_trace(name) {
        if e.command != frame::EMU_NORMAL {
            continue;
        }
        match e.transport {
            frame::EMU_TRANSPORT_TCP => {
                let (f, used) = frame::deframe(&e.payload, 0x1200).unwrap().unwrap();
                assert_eq!(used, e.payload.len(), "{name}: one frame per buffer");
                match f {
                    Frame::Spdm(m) => msgs.push(m.to_vec()),
                    Frame::Secured(_) => secured += 1,
                    Frame::Discovery(t) => panic!("{name}: unexpected discovery frame {t:#x}"),
                }
                // The DSP0287 framing round-trips too.
                let mut again = Vec::new();
                frame::encode(&f, &mut again);
                assert_eq!(again, e.payload);
            }
            frame::EMU_TRANSPORT_NONE => msgs.push(e.payload),
            t => panic!("{name}: transport {t}"),
        }
    }
    (msgs, secured)
}

/// Tracks what the parser must know as a flow proceeds.
fn advance_context(ctx: &mut ParseContext, msg: &Message) {
    match &msg.payload {
        Payload::Algorithms(a) => {
            ctx.hash_len = HashAlgo::from_base_hash(a.base_hash_sel).unwrap().size();
            ctx.signature_len = AsymAlgo::from_base_asym(a.base_asym_sel)
                .unwrap()
                .signature_len();
        }
        Payload::Challenge(c) => ctx.summary_hash = c.summary_hash_type != 0,
        Payload::GetMeasurements(g) => ctx.signed_measurements = g.signature.is_some(),
        _ => {}
    }
}

#[test]
fn every_traced_message_round_trips_byte_identically() {
    for name in TRACES {
        let (msgs, secured) = spdm_messages(name);
        let mut ctx = ParseContext::default();
        let mut typed = 0;
        let mut other = Vec::new();
        for raw in &msgs {
            let msg = Message::read(raw, &ctx)
                .unwrap_or_else(|e| panic!("{name}: {e} in {:02x?}", &raw[..4.min(raw.len())]));
            assert_eq!(
                &msg.to_bytes(),
                raw,
                "{name}: {:?} re-encodes differently",
                msg.code()
            );
            advance_context(&mut ctx, &msg);
            match msg.payload {
                Payload::Other(o) => other.push(o.code),
                _ => typed += 1,
            }
        }
        if name.contains("minimal") {
            assert!(other.is_empty(), "{name}: minimal flow is fully modelled");
            assert_eq!(typed, 22);
        } else {
            // Session and encapsulated messages we carry verbatim.
            assert!(typed >= 22, "{name}: {typed}");
            for code in &other {
                assert!(
                    [0xea, 0x6a, 0xeb, 0x6b, 0xe4, 0x64, 0xe5, 0x65].contains(code),
                    "{name}: unexpected unmodelled code {code:#x}"
                );
            }
        }
        if name.contains("tcp") && !name.contains("minimal") {
            assert_eq!(secured, 8, "{name}: two sessions, four secured frames each");
        }
    }
}

/// The pieces of a traced attestation that the signatures cover.
struct Flow {
    vca: Vec<Vec<u8>>,
    b: Vec<Vec<u8>>,
    challenge: Vec<u8>,
    challenge_auth: Vec<u8>,
    measurements_req: Vec<u8>,
    measurements_rsp: Vec<u8>,
    chains: [Vec<u8>; 2],
    digests: Vec<Vec<u8>>,
}

fn flow(name: &str) -> Flow {
    let (msgs, _) = spdm_messages(name);
    let mut ctx = ParseContext::default();
    let parsed: Vec<Message> = msgs
        .iter()
        .map(|raw| {
            let m = Message::read(raw, &ctx).unwrap();
            advance_context(&mut ctx, &m);
            m
        })
        .collect();
    let vca = msgs[..6].to_vec();
    let mut b = Vec::new();
    let mut chains = [Vec::new(), Vec::new()];
    let mut digests = Vec::new();
    let mut i = 6;
    while parsed[i].code() != Code::Challenge {
        b.push(msgs[i].clone());
        match &parsed[i].payload {
            Payload::Certificate(c) => chains[c.slot_id as usize].extend_from_slice(&c.portion),
            Payload::Digests(d) => digests = d.digests.clone(),
            _ => {}
        }
        i += 1;
    }
    let challenge = msgs[i].clone();
    let challenge_auth = msgs[i + 1].clone();
    let m = parsed
        .iter()
        .position(|m| m.code() == Code::GetMeasurements)
        .unwrap();
    Flow {
        vca,
        b,
        challenge,
        challenge_auth,
        measurements_req: msgs[m].clone(),
        measurements_rsp: msgs[m + 1].clone(),
        chains,
        digests,
    }
}

fn leaf_spki(chain: &[u8]) -> Vec<u8> {
    let parsed = SpdmChain::parse(chain, HashAlgo::Sha256).unwrap();
    let leaf = parsed.certs.last().unwrap();
    let (_, cert) = X509Certificate::from_der(leaf).unwrap();
    cert.public_key().raw.to_vec()
}

fn m1_verifies(spki: &[u8], vca: &[Vec<u8>], b: &[Vec<u8>], c: &[u8], auth: &[u8]) -> bool {
    let mut t = Transcript::new();
    for m in vca {
        t.append_vca(m).unwrap();
    }
    t.negotiated(HashAlgo::Sha256);
    for m in b {
        t.append_b(m).unwrap();
    }
    let (unsigned, sig) = auth.split_at(auth.len() - 64);
    let h = t.finish_m1(c, unsigned).unwrap();
    let msg = signing_input(0x12, CONTEXT_CHALLENGE_AUTH, &h);
    verify_signature(AsymAlgo::EcdsaP256, HashAlgo::Sha256, spki, &msg, sig).is_ok()
}

fn l1_verifies(spki: &[u8], vca: &[Vec<u8>], req: &[u8], rsp: &[u8]) -> bool {
    let mut t = Transcript::new();
    for m in vca {
        t.append_vca(m).unwrap();
    }
    t.negotiated(HashAlgo::Sha256);
    let (unsigned, sig) = rsp.split_at(rsp.len() - 64);
    let h = t.finish_l1(req, unsigned).unwrap();
    let msg = signing_input(0x12, CONTEXT_MEASUREMENTS, &h);
    verify_signature(AsymAlgo::EcdsaP256, HashAlgo::Sha256, spki, &msg, sig).is_ok()
}

/// First, last and evenly spread positions of a message of `len` bytes.
fn spread(len: usize) -> Vec<usize> {
    let mut p: Vec<usize> = (0..8).map(|k| k * (len - 1) / 7).collect();
    p.dedup();
    p
}

#[test]
fn traced_signatures_verify_over_m1_and_l1() {
    for name in TRACES {
        let f = flow(name);
        let spki = leaf_spki(&f.chains[0]);
        assert!(
            m1_verifies(&spki, &f.vca, &f.b, &f.challenge, &f.challenge_auth),
            "{name}: CHALLENGE_AUTH"
        );
        assert!(
            l1_verifies(&spki, &f.vca, &f.measurements_req, &f.measurements_rsp),
            "{name}: MEASUREMENTS"
        );
        // B must hold every digest/certificate exchange, other slots included.
        assert!(!m1_verifies(
            &spki,
            &f.vca,
            &[],
            &f.challenge,
            &f.challenge_auth
        ));
        let slot0_only: Vec<_> =
            f.b.iter()
                .filter(|m| !(matches!(m[1], 0x82 | 0x02) && m[2] == 1))
                .cloned()
                .collect();
        assert!(slot0_only.len() < f.b.len());
        assert!(!m1_verifies(
            &spki,
            &f.vca,
            &slot0_only,
            &f.challenge,
            &f.challenge_auth
        ));
    }
}

#[test]
fn flipping_any_traced_byte_breaks_verification() {
    let f = flow("trace-req-tcp-1.2-minimal.log");
    let spki = leaf_spki(&f.chains[0]);
    // Every message M1 covers: VCA, B, CHALLENGE, CHALLENGE_AUTH (signature included).
    let mut m1: Vec<Vec<u8>> = f.vca.clone();
    m1.extend(f.b.iter().cloned());
    m1.push(f.challenge.clone());
    m1.push(f.challenge_auth.clone());
    let (nv, nb) = (f.vca.len(), f.b.len());
    let mut checked = 0;
    for msg_index in 0..m1.len() {
        for pos in spread(m1[msg_index].len()) {
            let mut all = m1.clone();
            all[msg_index][pos] ^= 0x01;
            let ok = m1_verifies(
                &spki,
                &all[..nv],
                &all[nv..nv + nb],
                &all[nv + nb],
                &all[nv + nb + 1],
            );
            assert!(
                !ok,
                "M1 still verifies with message {msg_index} byte {pos} flipped"
            );
            checked += 1;
        }
    }
    // L1: VCA, GET_MEASUREMENTS, MEASUREMENTS.
    let mut l1: Vec<Vec<u8>> = f.vca.clone();
    l1.push(f.measurements_req.clone());
    l1.push(f.measurements_rsp.clone());
    for msg_index in 0..l1.len() {
        for pos in spread(l1[msg_index].len()) {
            let mut all = l1.clone();
            all[msg_index][pos] ^= 0x80;
            assert!(
                !l1_verifies(&spki, &all[..nv], &all[nv], &all[nv + 1]),
                "L1 still verifies with message {msg_index} byte {pos} flipped"
            );
            checked += 1;
        }
    }
    assert!(checked > 100, "{checked}");
}

fn at(unix: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(unix)
}

#[test]
fn traced_chain_passes_and_fails_the_trust_policies() {
    let f = flow("trace-req-tcp-1.2-minimal.log");
    // DIGESTS carries H(chain) of both slots.
    for slot in 0..2 {
        assert_eq!(HashAlgo::Sha256.digest(&f.chains[slot]), f.digests[slot]);
    }
    let chain = SpdmChain::parse(&f.chains[0], HashAlgo::Sha256).unwrap();
    assert_eq!(chain.certs.len(), 3);
    assert_eq!(chain.root_hash, HashAlgo::Sha256.digest(&chain.certs[0]));
    let root = chain.certs[0].clone();
    let spki = leaf_spki(&f.chains[0]);
    let fp = Fingerprint::of_spki(&spki);
    let when = at(1_750_000_000); // 2025, inside the libspdm sample certificates' validity
    let verify = |policy: &TrustPolicy, t| {
        verify_chain(
            &f.chains[0],
            HashAlgo::Sha256,
            AsymAlgo::EcdsaP256,
            policy,
            t,
        )
    };

    let v = verify(&TrustPolicy::FirstContact, when).unwrap();
    assert_eq!(v.basis, TrustBasis::FirstContact);
    assert_eq!(v.leaf_fingerprint, fp);
    assert_eq!(v.root_hash, chain.root_hash);
    let v = verify(
        &TrustPolicy::Anchored(vec![vec![0; 10], root.clone()]),
        when,
    )
    .unwrap();
    assert_eq!(v.basis, TrustBasis::Anchored { anchor: 1 });
    assert_eq!(
        verify(&TrustPolicy::Pinned(fp), when).unwrap().basis,
        TrustBasis::Pinned
    );

    // A different root, a different pin, a bad time, the wrong key type.
    let other_root = {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path().join("k"));
        ChainFiles::new(dir.path().join("c"))
            .create(&store, "other", when)
            .unwrap()
            .ca_der
    };
    assert_eq!(
        verify(&TrustPolicy::Anchored(vec![other_root]), when),
        Err(ChainError::UntrustedRoot)
    );
    assert_eq!(
        verify(&TrustPolicy::Pinned(Fingerprint([7; 32])), when),
        Err(ChainError::PinMismatch)
    );
    assert!(matches!(
        verify(&TrustPolicy::FirstContact, at(0)),
        Err(ChainError::NotValidAt { .. })
    ));
    assert!(matches!(
        verify(&TrustPolicy::FirstContact, at(2_200_000_000)),
        Err(ChainError::NotValidAt { .. })
    ));
    assert_eq!(
        verify_chain(
            &f.chains[0],
            HashAlgo::Sha256,
            AsymAlgo::EcdsaP384,
            &TrustPolicy::FirstContact,
            when
        ),
        Err(ChainError::LeafKeyType)
    );

    // Tampering inside a certificate breaks its signature; with the root hash, the root.
    let leaf_start = f.chains[0].len() - chain.certs[2].len();
    let mut bad = f.chains[0].clone();
    bad[leaf_start + 200] ^= 1;
    assert!(matches!(
        verify_chain(
            &bad,
            HashAlgo::Sha256,
            AsymAlgo::EcdsaP256,
            &TrustPolicy::FirstContact,
            when
        ),
        Err(ChainError::BadSignature { index: 2 }) | Err(ChainError::BadCertificate { .. })
    ));
    let mut bad = f.chains[0].clone();
    bad[4] ^= 1;
    assert_eq!(
        verify_chain(
            &bad,
            HashAlgo::Sha256,
            AsymAlgo::EcdsaP256,
            &TrustPolicy::FirstContact,
            when
        ),
        Err(ChainError::RootNotInChain)
    );
    // Without the root in the chain, an anchor can still vouch for it.
    let without_root = SpdmChain {
        root_hash: chain.root_hash.clone(),
        certs: chain.certs[1..].to_vec(),
    }
    .encode();
    assert_eq!(
        verify_chain(
            &without_root,
            HashAlgo::Sha256,
            AsymAlgo::EcdsaP256,
            &TrustPolicy::Anchored(vec![root]),
            when
        )
        .unwrap()
        .basis,
        TrustBasis::Anchored { anchor: 0 }
    );
}

#[test]
fn libspdm_requests_drive_our_responder() {
    // The requests libspdm's requester sent, replayed against our responder.
    let (msgs, _) = spdm_messages("trace-req-tcp-1.2-minimal.log");
    let requests: Vec<&Vec<u8>> = msgs.iter().filter(|m| m[1] & 0x80 != 0).collect();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FileKeyStore::new(dir.path().join("k")));
    let id = ChainFiles::new(dir.path().join("c"))
        .create(store.as_ref(), "bmc-a", at(1_750_000_000))
        .unwrap();
    let blocks = vec![
        MeasurementBlock::dmtf(1, 0, &[0x11; 32]),
        MeasurementBlock::dmtf(2, 1, &[0x22; 32]),
    ];
    let mut responder = Responder::new(
        ResponderConfig::new(vec![id.ca_der.clone(), id.leaf_der.clone()], blocks),
        store.clone(),
    )
    .unwrap();
    let spki = store
        .public_key(KeyRole::Identity)
        .unwrap()
        .spki_der()
        .to_vec();
    let mut rng = rand_core::OsRng;

    let mut t = Transcript::new();
    let mut answers = Vec::new();
    for (i, req) in requests.iter().enumerate() {
        let rsp = responder.handle(req, &mut rng);
        let code = Code::from(rsp[1]);
        let ctx = ParseContext::default();
        let msg = Message::read(&rsp, &ctx).unwrap();
        answers.push(code);
        match Code::from(req[1]) {
            Code::GetVersion | Code::GetCapabilities | Code::NegotiateAlgorithms => {
                t.append_vca(req).unwrap();
                t.append_vca(&rsp).unwrap();
                if code == Code::Algorithms {
                    t.negotiated(HashAlgo::Sha256);
                }
            }
            // libspdm also asks for slot 1, which we do not provision.
            Code::GetCertificate if req[2] == 1 => {
                assert!(matches!(
                    msg.payload,
                    Payload::Error(ref e) if e.code == ErrorCode::InvalidRequest
                ));
            }
            Code::GetDigests | Code::GetCertificate => {
                t.append_b(req).unwrap();
                t.append_b(&rsp).unwrap();
            }
            Code::Challenge => {
                let (unsigned, sig) = rsp.split_at(rsp.len() - 64);
                let h = t.finish_m1(req, unsigned).unwrap();
                let m = signing_input(0x12, CONTEXT_CHALLENGE_AUTH, &h);
                verify_signature(AsymAlgo::EcdsaP256, HashAlgo::Sha256, &spki, &m, sig)
                    .unwrap_or_else(|e| panic!("request {i}: {e}"));
            }
            Code::GetMeasurements => {
                let (unsigned, sig) = rsp.split_at(rsp.len() - 64);
                let h = t.finish_l1(req, unsigned).unwrap();
                let m = signing_input(0x12, CONTEXT_MEASUREMENTS, &h);
                verify_signature(AsymAlgo::EcdsaP256, HashAlgo::Sha256, &spki, &m, sig).unwrap();
            }
            other => panic!("unexpected request {other:?}"),
        }
    }
    use Code::*;
    assert_eq!(
        answers,
        [
            Version,
            Capabilities,
            Algorithms,
            Digests,
            Certificate,
            Error,
            ChallengeAuth,
            Digests,
            Certificate,
            Digests,
            Measurements
        ]
    );
}
