//! Requester against responder: in memory (with a rustls-style `transfer_altered` tamper
//! filter), over `tokio::io::duplex` with each framing, and over real TCP on 127.0.0.1:0.
//!
//! Covers the full flow under each trust policy and measurement mode, and the negative
//! cases: wrong version, out-of-order, unsupported and malformed requests (with the ERROR
//! code and no state corruption), truncated and oversized frames, bad and replayed
//! signatures, an untrusted root, Busy and ResponseNotReady handling.

// Test code: fixtures and helpers panic on purpose when an expectation fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bmc_pairing_core::spdm::appraisal::IndexStatus;
use bmc_pairing_core::spdm::msgs::{
    ErrorCode, ErrorResponse, Message, NotReady, ParseContext, Payload,
};
use bmc_pairing_core::spdm::requester::Outcome;
use bmc_pairing_core::spdm::{
    Action, ChainError, Error, HashAlgo, MeasurementBlock, MeasurementPolicy, PolicyMode,
    ReferenceValues, Requester, RequesterConfig, Responder, ResponderConfig, TrustBasis,
    TrustPolicy, Verdict,
};
use bmc_pairing_manager::identity::cert::{ChainFiles, LoadedIdentity};
use bmc_pairing_manager::identity::file::FileKeyStore;
use bmc_pairing_manager::identity::{KeyRole, KeyStore};
use bmc_pairing_manager::spdm::transport::{self, Framing, Timeouts};
use rand_core::OsRng;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<FileKeyStore>,
    id: LoadedIdentity,
    blocks: Vec<MeasurementBlock>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(FileKeyStore::new(dir.path().join("keys")));
        let id = ChainFiles::new(dir.path().join("certs"))
            .create(store.as_ref(), "bmc-b", now())
            .unwrap();
        let blocks = vec![
            MeasurementBlock::dmtf(1, 0, &[0x11; 32]),
            MeasurementBlock::dmtf(2, 1, &[0x22; 32]),
            MeasurementBlock::dmtf(5, 3, &[0x55; 32]),
        ];
        Fixture {
            _dir: dir,
            store,
            id,
            blocks,
        }
    }

    fn responder_config(&self) -> ResponderConfig {
        ResponderConfig::new(
            vec![self.id.ca_der.clone(), self.id.leaf_der.clone()],
            self.blocks.clone(),
        )
    }

    fn responder(&self) -> Responder {
        Responder::new(self.responder_config(), self.store.clone()).unwrap()
    }

    fn reference(&self, mode: PolicyMode, wrong_index: Option<u8>) -> MeasurementPolicy {
        let values: BTreeMap<u8, Vec<u8>> = self
            .blocks
            .iter()
            .map(|b| {
                let mut v = b.dmtf_value().unwrap().value;
                if Some(b.index) == wrong_index {
                    v[0] ^= 0xff;
                }
                (b.index, v)
            })
            .collect();
        MeasurementPolicy {
            mode,
            reference: ReferenceValues::new(values),
        }
    }
}

fn config(trust: TrustPolicy, measurements: MeasurementPolicy) -> RequesterConfig {
    RequesterConfig::new(trust, measurements, now())
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    ToResponder,
    ToRequester,
}

/// Runs a requester against `responder` in memory. `alter` sees every message in flight
/// (direction, index of the exchange, bytes) and returns what is delivered; the waits the
/// requester asks for are recorded instead of slept.
fn transfer_altered(
    cfg: RequesterConfig,
    responder: &mut Responder,
    mut alter: impl FnMut(Dir, usize, Vec<u8>) -> Vec<u8>,
) -> (Result<Verdict, Error>, Vec<Duration>) {
    let (mut requester, mut msg) = Requester::new(cfg, &mut OsRng);
    let mut waits = Vec::new();
    for i in 0..64 {
        let delivered = alter(Dir::ToResponder, i, msg);
        let rsp = responder.handle(&delivered, &mut OsRng);
        let rsp = alter(Dir::ToRequester, i, rsp);
        match requester.handle(&rsp) {
            Ok(Action::Send(next)) => msg = next,
            Ok(Action::WaitThenSend { delay, message }) => {
                waits.push(delay);
                msg = message;
            }
            Ok(Action::Done(v)) => return (Ok(*v), waits),
            Err(e) => {
                assert!(requester.is_finished());
                assert!(matches!(
                    requester.handle(&[0x12, 0x7f, 0x05, 0x00]),
                    Err(Error::ApiMisuse(_))
                ));
                return (Err(e), waits);
            }
        }
    }
    panic!("exchange did not finish");
}

fn transfer(cfg: RequesterConfig, responder: &mut Responder) -> Result<Verdict, Error> {
    transfer_altered(cfg, responder, |_, _, m| m).0
}

#[test]
fn full_flow_first_contact_reports_what_to_pin() {
    let fx = Fixture::new();
    let v = transfer(
        config(TrustPolicy::FirstContact, MeasurementPolicy::default()),
        &mut fx.responder(),
    )
    .unwrap();
    assert_eq!(v.outcome, Outcome::Trusted);
    assert_eq!(v.version, 0x12);
    assert_eq!(v.trust, TrustBasis::FirstContact);
    assert_eq!(
        v.leaf_fingerprint,
        fx.store
            .public_key(KeyRole::Identity)
            .unwrap()
            .fingerprint()
    );
    assert_eq!(v.leaf_fingerprint, fx.id.fingerprint());
    assert_eq!(v.chain, vec![fx.id.ca_der.clone(), fx.id.leaf_der.clone()]);
    assert_eq!(v.root_hash, HashAlgo::Sha256.digest(&fx.id.ca_der));
    assert_eq!(v.algorithms.base_hash, HashAlgo::Sha256);
    assert_eq!(v.algorithms.measurement_hash_algo, 0x02);
    assert_eq!(v.peer_capabilities, 0x16);
    assert_eq!(v.measurement_mode, PolicyMode::Off);
    assert_eq!(
        v.measurements.iter().map(|m| m.index).collect::<Vec<_>>(),
        [1, 2, 5]
    );
    assert!(
        v.measurements
            .iter()
            .all(|m| m.status == IndexStatus::NotAppraised)
    );
}

#[test]
fn full_flow_anchored_and_pinned_with_enforced_measurements() {
    let fx = Fixture::new();
    let enforce = fx.reference(PolicyMode::Enforce, None);
    let v = transfer(
        config(
            TrustPolicy::Anchored(vec![fx.id.ca_der.clone()]),
            enforce.clone(),
        ),
        &mut fx.responder(),
    )
    .unwrap();
    assert_eq!(v.trust, TrustBasis::Anchored { anchor: 0 });
    assert_eq!(v.outcome, Outcome::Trusted);
    assert!(
        v.measurements
            .iter()
            .all(|m| m.status == IndexStatus::Match)
    );

    let v = transfer(
        config(TrustPolicy::Pinned(fx.id.fingerprint()), enforce),
        &mut fx.responder(),
    )
    .unwrap();
    assert_eq!(v.trust, TrustBasis::Pinned);
}

#[test]
fn enforce_fails_and_audit_records_a_measurement_mismatch() {
    let fx = Fixture::new();
    let err = transfer(
        config(
            TrustPolicy::FirstContact,
            fx.reference(PolicyMode::Enforce, Some(2)),
        ),
        &mut fx.responder(),
    )
    .unwrap_err();
    let Error::MeasurementsRejected(v) = err else {
        panic!("{err:?}")
    };
    assert_eq!(v.outcome, Outcome::Rejected);
    let failed: Vec<u8> = v
        .measurements
        .iter()
        .filter(|m| m.is_failure())
        .map(|m| m.index)
        .collect();
    assert_eq!(failed, [2]);

    let audited = transfer(
        config(
            TrustPolicy::FirstContact,
            fx.reference(PolicyMode::Audit, Some(2)),
        ),
        &mut fx.responder(),
    )
    .unwrap();
    assert_eq!(audited.outcome, Outcome::TrustedWithFindings);
    assert_eq!(
        audited.measurements, v.measurements,
        "audit records the same findings"
    );
}

#[test]
fn chain_to_an_untrusted_root_is_refused() {
    let fx = Fixture::new();
    let other = Fixture::new();
    let err = transfer(
        config(
            TrustPolicy::Anchored(vec![other.id.ca_der.clone()]),
            MeasurementPolicy::default(),
        ),
        &mut fx.responder(),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Chain(ChainError::UntrustedRoot)),
        "{err:?}"
    );
    let err = transfer(
        config(
            TrustPolicy::Pinned(other.id.fingerprint()),
            MeasurementPolicy::default(),
        ),
        &mut fx.responder(),
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::Chain(ChainError::PinMismatch)),
        "{err:?}"
    );
}

/// Index of the exchange whose request has `code`, in an untampered run.
fn exchange_of(code: u8) -> usize {
    // GET_VERSION, GET_CAPABILITIES, NEGOTIATE_ALGORITHMS, GET_DIGESTS, GET_CERTIFICATE,
    // CHALLENGE, GET_MEASUREMENTS (the test chain fits one CERTIFICATE).
    [0x84, 0xe1, 0xe3, 0x81, 0x82, 0x83, 0xe0]
        .iter()
        .position(|c| *c == code)
        .unwrap()
}

#[test]
fn bad_signatures_are_refused() {
    let fx = Fixture::new();
    let first_contact = || config(TrustPolicy::FirstContact, MeasurementPolicy::default());
    for (code, name) in [(0x83, "CHALLENGE_AUTH"), (0xe0, "MEASUREMENTS")] {
        let target = exchange_of(code);
        let (res, _) = transfer_altered(first_contact(), &mut fx.responder(), |dir, i, mut m| {
            if dir == Dir::ToRequester && i == target {
                let last = m.len() - 1;
                m[last] ^= 0x01;
            }
            m
        });
        match res {
            Err(Error::BadSignature(what)) => assert_eq!(what, name),
            other => panic!("{name}: {other:?}"),
        }
    }
    // A changed measurement value breaks the MEASUREMENTS signature, not just appraisal.
    let target = exchange_of(0xe0);
    let (res, _) = transfer_altered(first_contact(), &mut fx.responder(), |dir, i, mut m| {
        if dir == Dir::ToRequester && i == target {
            m[20] ^= 0x01;
        }
        m
    });
    assert!(
        matches!(res, Err(Error::BadSignature("MEASUREMENTS"))),
        "{res:?}"
    );
}

#[test]
fn replayed_signed_responses_fail_against_fresh_nonces() {
    let fx = Fixture::new();
    let cfg = || config(TrustPolicy::FirstContact, MeasurementPolicy::default());
    let mut recorded = BTreeMap::new();
    let (first, _) = transfer_altered(cfg(), &mut fx.responder(), |dir, i, m| {
        if dir == Dir::ToRequester {
            recorded.insert(i, m.clone());
        }
        m
    });
    first.unwrap();
    for code in [0x83, 0xe0] {
        let target = exchange_of(code);
        let (res, _) = transfer_altered(cfg(), &mut fx.responder(), |dir, i, m| {
            if dir == Dir::ToRequester && i == target {
                recorded[&i].clone()
            } else {
                m
            }
        });
        assert!(
            matches!(res, Err(Error::BadSignature(_))),
            "{code:#x}: {res:?}"
        );
    }
}

#[test]
fn no_single_flipped_byte_goes_unnoticed() {
    let fx = Fixture::new();
    let mut lens = Vec::new();
    let (ok, _) = transfer_altered(
        config(TrustPolicy::FirstContact, MeasurementPolicy::default()),
        &mut fx.responder(),
        |dir, i, m| {
            lens.push((dir, i, m.len()));
            m
        },
    );
    ok.unwrap();
    let mut runs = 0;
    for (dir, i, len) in lens {
        let positions: Vec<usize> = {
            let mut p: Vec<usize> = (0..5).map(|k| k * (len - 1) / 4).collect();
            p.dedup();
            p
        };
        for pos in positions {
            let (res, _) = transfer_altered(
                config(TrustPolicy::FirstContact, MeasurementPolicy::default()),
                &mut fx.responder(),
                |d, j, mut m| {
                    if d == dir && j == i {
                        m[pos] ^= 0x01;
                    }
                    m
                },
            );
            assert!(
                res.is_err(),
                "{dir:?} exchange {i} byte {pos}: tampering accepted"
            );
            runs += 1;
        }
    }
    assert!(runs > 50, "{runs}");
}

fn error_of(rsp: &[u8]) -> (u8, ErrorCode, u8) {
    match Message::read(rsp, &ParseContext::default()).unwrap() {
        Message {
            version,
            payload: Payload::Error(e),
        } => (version, e.code, e.data),
        other => panic!("not an error: {other:?}"),
    }
}

#[test]
fn responder_rejects_bad_requests_without_corrupting_state() {
    let fx = Fixture::new();
    let mut responder = fx.responder();
    let mut rng = OsRng;
    // Before VCA: anything but GET_VERSION is out of order; a 1.2 GET_VERSION is the wrong version.
    assert_eq!(
        error_of(&responder.handle(&[0x12, 0x81, 0, 0], &mut rng)),
        (0x10, ErrorCode::UnexpectedRequest, 0)
    );
    assert_eq!(
        error_of(&responder.handle(&[0x12, 0x84, 0, 0], &mut rng)).1,
        ErrorCode::VersionMismatch
    );
    // Unsupported codes name themselves in ErrorData.
    assert_eq!(
        error_of(&responder.handle(&[0x12, 0xe4, 0, 0], &mut rng)),
        (0x10, ErrorCode::UnsupportedRequest, 0xe4)
    );
    assert_eq!(
        error_of(&responder.handle(&[0x12, 0xf0, 0, 0], &mut rng)),
        (0x10, ErrorCode::UnsupportedRequest, 0xf0)
    );
    assert_eq!(
        error_of(&responder.handle(&[0x10], &mut rng)).1,
        ErrorCode::InvalidRequest
    );

    // Drive a real requester against the same responder; before some of its requests,
    // throw bad ones at the responder. The attestation must still succeed: rejected
    // requests never touch state or transcripts.
    let mut bad_answers = Vec::new();
    let answers =
        |responder: &mut Responder, req: &[u8]| error_of(&responder.handle(req, &mut OsRng));
    let (mut requester, mut msg) = Requester::new(
        config(TrustPolicy::FirstContact, MeasurementPolicy::default()),
        &mut OsRng,
    );
    for i in 0.. {
        match i {
            // After GET_VERSION: GET_DIGESTS skips VCA; a 1.1 GET_CAPABILITIES is the wrong version.
            1 => {
                bad_answers.push(answers(&mut responder, &[0x12, 0x81, 0, 0]).1);
                bad_answers.push(answers(&mut responder, &[0x11, 0xe1, 0, 0]).1);
            }
            // After capabilities: malformed NEGOTIATE_ALGORITHMS (Length lies).
            2 => {
                let mut neg = msg.clone();
                neg[4] ^= 0x04;
                bad_answers.push(answers(&mut responder, &neg).1);
            }
            // Negotiated: GET_CAPABILITIES again is out of order; truncated and
            // wrong-slot GET_CERTIFICATE are invalid; a 1.0 request is the wrong version.
            4 => {
                let get_caps = [
                    0x12, 0xe1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0, 0, 0, 0x12, 0, 0,
                ];
                bad_answers.push(answers(&mut responder, &get_caps).1);
                bad_answers.push(answers(&mut responder, &[0x12, 0x82, 0, 0, 0, 0]).1);
                bad_answers.push(answers(&mut responder, &[0x12, 0x82, 3, 0, 0, 0, 0, 1]).1);
                bad_answers.push(answers(&mut responder, &[0x10, 0x81, 0, 0]).1);
                bad_answers.push(answers(&mut responder, &[0x12, 0xff, 0x83, 0]).1);
            }
            _ => {}
        }
        let rsp = responder.handle(&msg, &mut OsRng);
        match requester.handle(&rsp).unwrap() {
            Action::Send(next) => msg = next,
            Action::Done(v) => {
                assert_eq!(v.outcome, Outcome::Trusted);
                break;
            }
            Action::WaitThenSend { .. } => panic!("responder is never busy"),
        }
    }
    use ErrorCode::*;
    assert_eq!(
        bad_answers,
        [
            UnexpectedRequest,
            VersionMismatch,
            InvalidRequest,
            UnexpectedRequest,
            InvalidRequest,
            InvalidRequest,
            VersionMismatch,
            UnexpectedRequest
        ]
    );
}

#[test]
fn requester_refuses_wrong_versions_and_peer_errors() {
    let fx = Fixture::new();
    let cfg = || config(TrustPolicy::FirstContact, MeasurementPolicy::default());
    // A responder that only offers 1.1.
    let (res, _) = transfer_altered(cfg(), &mut fx.responder(), |dir, i, m| {
        if dir == Dir::ToRequester && i == 0 {
            vec![0x10, 0x04, 0, 0, 0, 1, 0x00, 0x11]
        } else {
            m
        }
    });
    assert!(matches!(res, Err(Error::PeerIncompatible(_))), "{res:?}");
    // A 1.1 version byte on a later response.
    let (res, _) = transfer_altered(cfg(), &mut fx.responder(), |dir, i, mut m| {
        if dir == Dir::ToRequester && i == 3 {
            m[0] = 0x11;
        }
        m
    });
    assert!(
        matches!(
            res,
            Err(Error::WrongVersion {
                expected: 0x12,
                got: 0x11
            })
        ),
        "{res:?}"
    );
    // An unrecoverable ERROR.
    let (res, _) = transfer_altered(cfg(), &mut fx.responder(), |dir, i, m| {
        if dir == Dir::ToRequester && i == 4 {
            Message::new(
                0x12,
                Payload::Error(ErrorResponse::new(ErrorCode::Unspecified, 0)),
            )
            .to_bytes()
        } else {
            m
        }
    });
    assert!(
        matches!(
            res,
            Err(Error::Peer {
                code: ErrorCode::Unspecified,
                ..
            })
        ),
        "{res:?}"
    );
    // A response of the wrong kind.
    let (res, _) = transfer_altered(cfg(), &mut fx.responder(), |dir, i, m| {
        if dir == Dir::ToRequester && i == 3 {
            vec![0x12, 0x02, 0, 0, 0, 0, 0, 0]
        } else {
            m
        }
    });
    assert!(
        matches!(res, Err(Error::UnexpectedResponse { .. })),
        "{res:?}"
    );
}

#[test]
fn busy_is_retried_a_bounded_number_of_times() {
    let fx = Fixture::new();
    let busy =
        Message::new(0x12, Payload::Error(ErrorResponse::new(ErrorCode::Busy, 0))).to_bytes();
    let target = exchange_of(0x83);
    // Busy twice, then the real answer: success after two waits, the retry resends CHALLENGE.
    let mut n = 0;
    let mut cfg = config(TrustPolicy::FirstContact, MeasurementPolicy::default());
    cfg.busy_delay = Duration::from_millis(7);
    let mut responder = fx.responder();
    let (mut requester, mut msg) = Requester::new(cfg.clone(), &mut OsRng);
    let mut waits = Vec::new();
    let verdict = loop {
        // A busy responder has not processed the request.
        let rsp = if msg[1] == 0x83 && n < 2 {
            n += 1;
            busy.clone()
        } else {
            responder.handle(&msg, &mut OsRng)
        };
        match requester.handle(&rsp).unwrap() {
            Action::Send(next) => msg = next,
            Action::WaitThenSend { delay, message } => {
                assert_eq!(message[1], 0x83);
                waits.push(delay);
                msg = message;
            }
            Action::Done(v) => break v,
        }
    };
    assert_eq!(verdict.outcome, Outcome::Trusted);
    assert_eq!(waits, [Duration::from_millis(7); 2]);
    // Always busy: the budget runs out.
    let (res, waits) = transfer_altered(cfg, &mut fx.responder(), |dir, i, m| {
        if dir == Dir::ToRequester && i >= target {
            busy.clone()
        } else {
            m
        }
    });
    assert!(matches!(res, Err(Error::RetriesExhausted)), "{res:?}");
    assert_eq!(waits.len(), 3);
}

#[test]
fn response_not_ready_waits_then_respond_if_ready() {
    let fx = Fixture::new();
    let cfg = config(TrustPolicy::FirstContact, MeasurementPolicy::default());
    let mut responder = fx.responder();
    let (mut requester, mut msg) = Requester::new(cfg, &mut OsRng);
    let mut held: Option<Vec<u8>> = None;
    let mut waits = Vec::new();
    let verdict = loop {
        let rsp = if msg[1] == 0xff {
            // RESPOND_IF_READY for our token: deliver the held MEASUREMENTS.
            assert_eq!(msg, [0x12, 0xff, 0xe0, 0x5a]);
            held.take().unwrap()
        } else if msg[1] == 0xe0 && held.is_none() && waits.is_empty() {
            held = Some(responder.handle(&msg, &mut OsRng));
            Message::new(
                0x12,
                Payload::Error(ErrorResponse::not_ready(NotReady {
                    rdt_exponent: 10,
                    request_code: 0xe0,
                    token: 0x5a,
                    rdtm: 3,
                })),
            )
            .to_bytes()
        } else {
            responder.handle(&msg, &mut OsRng)
        };
        match requester.handle(&rsp).unwrap() {
            Action::Send(next) => msg = next,
            Action::WaitThenSend { delay, message } => {
                waits.push(delay);
                msg = message;
            }
            Action::Done(v) => break v,
        }
    };
    assert_eq!(verdict.outcome, Outcome::Trusted);
    assert_eq!(waits, [Duration::from_micros(1024 * 3)]);

    // ResponseNotReady naming a different request is misbehaviour.
    let target = exchange_of(0x83);
    let (res, _) = transfer_altered(
        config(TrustPolicy::FirstContact, MeasurementPolicy::default()),
        &mut fx.responder(),
        |dir, i, m| {
            if dir == Dir::ToRequester && i == target {
                Message::new(
                    0x12,
                    Payload::Error(ErrorResponse::not_ready(NotReady {
                        rdt_exponent: 1,
                        request_code: 0xe0,
                        token: 1,
                        rdtm: 1,
                    })),
                )
                .to_bytes()
            } else {
                m
            }
        },
    );
    assert!(matches!(res, Err(Error::PeerMisbehaved(_))), "{res:?}");
}

async fn duplex_run(framing: Framing) -> Verdict {
    let fx = Fixture::new();
    let (mut client, mut server) = tokio::io::duplex(64 * 1024);
    let cfg = fx.responder_config();
    let store: Arc<dyn KeyStore> = fx.store.clone();
    let timeouts = Timeouts::default();
    let server_task =
        tokio::spawn(
            async move { transport::serve(&mut server, framing, cfg, store, &timeouts).await },
        );
    let verdict = transport::attest(
        &mut client,
        framing,
        config(
            TrustPolicy::Anchored(vec![fx.id.ca_der.clone()]),
            fx.reference(PolicyMode::Enforce, None),
        ),
        &timeouts,
    )
    .await
    .unwrap();
    drop(client);
    server_task.await.unwrap().unwrap();
    verdict
}

#[tokio::test]
async fn duplex_with_every_framing() {
    for framing in [Framing::Dsp0287, Framing::EmuTcp, Framing::EmuNone] {
        let v = duplex_run(framing).await;
        assert_eq!(v.outcome, Outcome::Trusted, "{framing:?}");
    }
}

#[tokio::test]
async fn attest_over_real_tcp_with_dsp0287() {
    let fx = Fixture::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cfg = fx.responder_config();
    let store: Arc<dyn KeyStore> = fx.store.clone();
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        transport::serve(
            &mut stream,
            Framing::Dsp0287,
            cfg,
            store,
            &Timeouts::default(),
        )
        .await
    });
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let v = transport::attest(
        &mut stream,
        Framing::Dsp0287,
        config(TrustPolicy::FirstContact, MeasurementPolicy::default()),
        &Timeouts::default(),
    )
    .await
    .unwrap();
    assert!(stream.nodelay().unwrap());
    assert_eq!(v.leaf_fingerprint, fx.id.fingerprint());
    drop(stream);
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn truncated_and_oversized_frames_are_refused() {
    use tokio::io::AsyncWriteExt;
    let fx = Fixture::new();
    let timeouts = Timeouts {
        io: Duration::from_secs(2),
        idle: Duration::from_secs(2),
    };
    // Announces 6 bytes, sends 3, closes: a mid-frame EOF.
    let (mut client, mut server) = tokio::io::duplex(1024);
    client
        .write_all(&[0x06, 0x00, 0x01, 0x05, 0x10])
        .await
        .unwrap();
    drop(client);
    let store: Arc<dyn KeyStore> = fx.store.clone();
    let res = transport::serve(
        &mut server,
        Framing::Dsp0287,
        fx.responder_config(),
        store,
        &timeouts,
    )
    .await;
    assert!(matches!(res, Err(transport::Error::Closed)), "{res:?}");

    // Announces 0xFFFF bytes: refused from the prefix alone, nothing more is read.
    let (mut client, mut server) = tokio::io::duplex(1024);
    client.write_all(&[0xff, 0xff]).await.unwrap();
    let store: Arc<dyn KeyStore> = fx.store.clone();
    let res = transport::serve(
        &mut server,
        Framing::Dsp0287,
        fx.responder_config(),
        store,
        &timeouts,
    )
    .await;
    assert!(
        matches!(
            res,
            Err(transport::Error::Protocol(Error::InvalidFrame(
                bmc_pairing_core::spdm::InvalidFrame::TooLarge(_)
            )))
        ),
        "{res:?}"
    );
    drop(client);

    // Emulator header announcing more than the cap.
    let (mut client, mut server) = tokio::io::duplex(1024);
    client
        .write_all(&[0, 0, 0, 1, 0, 0, 0, 3, 0, 1, 0, 0])
        .await
        .unwrap();
    let store: Arc<dyn KeyStore> = fx.store.clone();
    let res = transport::serve(
        &mut server,
        Framing::EmuTcp,
        fx.responder_config(),
        store,
        &timeouts,
    )
    .await;
    assert!(
        matches!(res, Err(transport::Error::Protocol(Error::InvalidFrame(_)))),
        "{res:?}"
    );
    drop(client);

    // A requester whose peer goes silent times out instead of hanging.
    let (mut client, _server) = tokio::io::duplex(1024);
    let res = transport::attest(
        &mut client,
        Framing::Dsp0287,
        config(TrustPolicy::FirstContact, MeasurementPolicy::default()),
        &Timeouts {
            io: Duration::from_millis(50),
            idle: Duration::from_millis(50),
        },
    )
    .await;
    assert!(matches!(res, Err(transport::Error::Timeout(_))), "{res:?}");
}
