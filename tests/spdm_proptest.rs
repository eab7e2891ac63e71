//! Property tests for every SPDM codec and for the DSP0287 and emulator deframers:
//! 1. encode → decode gives back the value;
//! 2. arbitrary bytes never panic;
//! 3. any accepted input re-encodes to exactly the same bytes (checked by `fuzz_message`,
//!    which panics otherwise, and directly for the deframers).
//!
//! Also: the responder and requester state machines never panic on arbitrary input.

// Test code: fixtures and helpers panic on purpose when an expectation fails.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

use bmc_pairing_core::spdm::frame::{self, EmuHeader, Frame};
use bmc_pairing_core::spdm::msgs::measurements::SignatureRequest;
use bmc_pairing_core::spdm::msgs::{
    AlgStruct, Algorithms, Capabilities, Certificate, Challenge, ChallengeAuth, Digests, ErrorCode,
    ErrorResponse, GetCertificate, GetDigests, GetMeasurements, GetVersion, MeasurementBlock,
    Measurements, Message, NegotiateAlgorithms, Other, ParseContext, Payload, RespondIfReady,
    Version, VersionNumber, fuzz_message,
};
use bmc_pairing_core::spdm::{MeasurementPolicy, Requester, RequesterConfig, TrustPolicy};
use proptest::prelude::*;

type Case = (Message, ParseContext);

fn ctx(hash_len: usize, signature_len: usize, summary_hash: bool, signed: bool) -> ParseContext {
    ParseContext {
        hash_len,
        signature_len,
        summary_hash,
        signed_measurements: signed,
    }
}

fn plain(version: u8, payload: Payload) -> Case {
    (Message::new(version, payload), ParseContext::default())
}

fn nonce() -> impl Strategy<Value = [u8; 32]> {
    prop::array::uniform32(any::<u8>())
}

fn ext() -> impl Strategy<Value = Vec<[u8; 4]>> {
    prop::collection::vec(prop::array::uniform4(any::<u8>()), 0..3)
}

fn alg_structs() -> impl Strategy<Value = Vec<AlgStruct>> {
    prop::collection::vec(
        (any::<u8>(), any::<u16>(), ext()).prop_map(|(alg_type, supported, ext)| AlgStruct {
            alg_type,
            supported,
            ext,
        }),
        0..4,
    )
}

fn capabilities() -> impl Strategy<Value = Capabilities> {
    (any::<u8>(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(ct, f, d, m)| Capabilities {
        ct_exponent: ct,
        flags: f,
        data_transfer_size: d,
        max_spdm_msg_size: m,
    })
}

fn blocks() -> impl Strategy<Value = Vec<MeasurementBlock>> {
    prop::collection::vec(
        (
            1u8..=254,
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(index, spec, measurement)| MeasurementBlock {
                index,
                spec,
                measurement,
            }),
        0..5,
    )
}

fn hash_len() -> impl Strategy<Value = usize> {
    prop_oneof![Just(32usize), Just(48usize), Just(64usize)]
}

fn sig_len() -> impl Strategy<Value = usize> {
    prop_oneof![Just(64usize), Just(96usize), Just(132usize)]
}

/// Codes this crate models; [`Other`] must never carry one of them.
const MODELLED: [u8; 16] = [
    0x84, 0x04, 0xe1, 0x61, 0xe3, 0x63, 0x81, 0x01, 0x82, 0x02, 0x83, 0x03, 0xe0, 0x60, 0x7f, 0xff,
];

fn any_case() -> impl Strategy<Value = Case> {
    let v = any::<u8>();
    prop_oneof![
        v.prop_map(|v| plain(v, Payload::GetVersion(GetVersion))),
        (v, prop::collection::vec(any::<u16>(), 0..10)).prop_map(|(v, e)| plain(
            v,
            Payload::Version(Version {
                entries: e.into_iter().map(VersionNumber).collect()
            })
        )),
        (v, capabilities()).prop_map(|(v, c)| plain(v, Payload::GetCapabilities(c))),
        (v, capabilities()).prop_map(|(v, c)| plain(v, Payload::Capabilities(c))),
        (
            v,
            any::<u8>(),
            any::<u8>(),
            any::<u32>(),
            any::<u32>(),
            ext(),
            ext(),
            alg_structs()
        )
            .prop_map(|(v, ms, op, asym, hash, ea, eh, s)| plain(
                v,
                Payload::NegotiateAlgorithms(NegotiateAlgorithms {
                    measurement_specification: ms,
                    other_params_support: op,
                    base_asym_algo: asym,
                    base_hash_algo: hash,
                    ext_asym: ea,
                    ext_hash: eh,
                    alg_structs: s,
                })
            )),
        (
            v,
            (
                any::<u8>(),
                any::<u8>(),
                any::<u32>(),
                any::<u32>(),
                any::<u32>()
            ),
            ext(),
            ext(),
            alg_structs()
        )
            .prop_map(|(v, (ms, op, mh, asym, hash), ea, eh, s)| plain(
                v,
                Payload::Algorithms(Algorithms {
                    measurement_specification_sel: ms,
                    other_params_selection: op,
                    measurement_hash_algo: mh,
                    base_asym_sel: asym,
                    base_hash_sel: hash,
                    ext_asym_sel: ea,
                    ext_hash_sel: eh,
                    alg_structs: s,
                })
            )),
        v.prop_map(|v| plain(v, Payload::GetDigests(GetDigests))),
        (v, hash_len(), any::<u8>(), any::<u8>()).prop_map(|(v, h, mask, fill)| {
            let digests = (0..mask.count_ones())
                .map(|i| vec![fill ^ i as u8; h])
                .collect();
            (
                Message::new(
                    v,
                    Payload::Digests(Digests {
                        slot_mask: mask,
                        digests,
                    }),
                ),
                ctx(h, 64, true, true),
            )
        }),
        (v, 0u8..8, any::<u16>(), any::<u16>()).prop_map(|(v, slot_id, offset, length)| plain(
            v,
            Payload::GetCertificate(GetCertificate {
                slot_id,
                offset,
                length
            })
        )),
        (
            v,
            0u8..8,
            prop::collection::vec(any::<u8>(), 0..300),
            any::<u16>()
        )
            .prop_map(|(v, slot_id, portion, remainder_length)| plain(
                v,
                Payload::Certificate(Certificate {
                    slot_id,
                    portion,
                    remainder_length
                })
            )),
        (
            v,
            prop_oneof![0u8..8, Just(0xffu8)],
            prop_oneof![Just(0u8), Just(1), Just(0xff)],
            nonce()
        )
            .prop_map(|(v, slot_id, summary_hash_type, nonce)| plain(
                v,
                Payload::Challenge(Challenge {
                    slot_id,
                    summary_hash_type,
                    nonce
                })
            )),
        (
            v,
            (0u8..16, any::<bool>(), any::<u8>()),
            (hash_len(), sig_len(), any::<bool>()),
            nonce(),
            prop::collection::vec(any::<u8>(), 0..50),
            any::<u8>()
        )
            .prop_map(
                |(v, (slot, mut_auth, mask), (h, s, summary), nonce, opaque, fill)| {
                    let auth = ChallengeAuth {
                        attributes: slot | if mut_auth { 0x80 } else { 0 },
                        slot_mask: mask,
                        cert_chain_hash: vec![fill; h],
                        nonce,
                        summary_hash: summary.then(|| vec![fill ^ 1; h]),
                        opaque,
                        signature: vec![fill ^ 2; s],
                    };
                    (
                        Message::new(v, Payload::ChallengeAuth(auth)),
                        ctx(h, s, summary, true),
                    )
                }
            ),
        (
            v,
            any::<bool>(),
            any::<bool>(),
            any::<u8>(),
            prop::option::of((nonce(), prop_oneof![0u8..8, Just(0xffu8)]))
        )
            .prop_map(|(v, raw, new, op, sig)| plain(
                v,
                Payload::GetMeasurements(GetMeasurements {
                    raw_bitstream: raw,
                    new_measurement: new,
                    operation: op,
                    signature: sig.map(|(nonce, slot_id)| SignatureRequest { nonce, slot_id }),
                })
            )),
        (
            v,
            (any::<u8>(), 0u8..0x40),
            blocks(),
            nonce(),
            prop::collection::vec(any::<u8>(), 0..50),
            prop::option::of(sig_len())
        )
            .prop_map(|(v, (p1, p2), blocks, nonce, opaque, sig)| {
                let m = Measurements {
                    param1: p1,
                    param2: p2,
                    blocks,
                    nonce,
                    opaque,
                    signature: sig.map(|s| vec![0x5a; s]),
                };
                (
                    Message::new(v, Payload::Measurements(m)),
                    ctx(32, sig.unwrap_or(64), true, sig.is_some()),
                )
            }),
        (
            v,
            any::<u8>(),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..=32)
        )
            .prop_map(|(v, code, data, extended)| plain(
                v,
                Payload::Error(ErrorResponse {
                    code: ErrorCode::from(code),
                    data,
                    extended
                })
            )),
        (v, any::<u8>(), any::<u8>()).prop_map(|(v, request_code, token)| plain(
            v,
            Payload::RespondIfReady(RespondIfReady {
                request_code,
                token
            })
        )),
        (
            v,
            any::<u8>().prop_filter("modelled", |c| !MODELLED.contains(c)),
            any::<u8>(),
            any::<u8>(),
            prop::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(|(v, code, param1, param2, body)| plain(
                v,
                Payload::Other(Other {
                    code,
                    param1,
                    param2,
                    body
                })
            )),
    ]
}

fn any_ctx() -> impl Strategy<Value = ParseContext> {
    (
        prop_oneof![
            Just(0usize),
            Just(1),
            Just(32),
            Just(48),
            Just(64),
            Just(65),
            Just(usize::MAX)
        ],
        prop_oneof![Just(0usize), Just(64), Just(96), Just(132), Just(133)],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(h, s, a, b)| ctx(h, s, a, b))
}

/// Bytes that start like a modelled message, so the fuzzing reaches the body parsers.
fn message_like() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<u8>(),
        prop::sample::select(MODELLED.to_vec()),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(|(v, code, tail)| [vec![v, code], tail].concat())
}

proptest! {
    #[test]
    fn every_message_round_trips((msg, ctx) in any_case()) {
        let bytes = msg.to_bytes();
        let back = Message::read(&bytes, &ctx).expect("own encoding must parse");
        prop_assert_eq!(&back, &msg);
        prop_assert!(fuzz_message(&bytes, &ctx));
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_accepted_input_is_canonical(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        ctx in any_ctx(),
    ) {
        fuzz_message(&bytes, &ctx);
    }

    #[test]
    fn message_like_bytes_never_panic_and_are_canonical(bytes in message_like(), ctx in any_ctx()) {
        fuzz_message(&bytes, &ctx);
    }

    #[test]
    fn mutated_valid_messages_never_panic(
        (msg, ctx) in any_case(),
        pos in any::<prop::sample::Index>(),
        xor in 1u8..,
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = msg.to_bytes();
        let i = pos.index(bytes.len());
        bytes[i] ^= xor;
        fuzz_message(&bytes, &ctx);
        let keep = cut.index(bytes.len() + 1);
        fuzz_message(&bytes[..keep], &ctx);
    }

    #[test]
    fn dsp0287_frames_round_trip(kind in 0u8..3, payload in prop::collection::vec(any::<u8>(), 0..600), t in 0xbfu8..) {
        let f = match kind {
            0 => Frame::Spdm(&payload),
            1 => Frame::Secured(&payload),
            _ => Frame::Discovery(t),
        };
        let mut bytes = Vec::new();
        frame::encode(&f, &mut bytes);
        let (back, used) = frame::deframe(&bytes, 0x1200).unwrap().unwrap();
        prop_assert_eq!(back, f);
        prop_assert_eq!(used, bytes.len());
        // Every strict prefix is "need more", never an error or a frame.
        for cut in 0..bytes.len() {
            prop_assert_eq!(frame::deframe(&bytes[..cut], 0x1200), Ok(None));
        }
    }

    #[test]
    fn dsp0287_deframer_never_panics_and_is_canonical(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        cap in 0usize..80,
    ) {
        if let Ok(Some((f, used))) = frame::deframe(&bytes, cap) {
            let mut again = Vec::new();
            frame::encode(&f, &mut again);
            prop_assert_eq!(&again[..], &bytes[..used]);
        }
    }

    #[test]
    fn dsp0287_deframer_handles_plausible_headers(
        len in 0u16..80,
        version in prop_oneof![Just(1u8), any::<u8>()],
        kind in prop_oneof![Just(5u8), Just(6u8), Just(0xbfu8), any::<u8>()],
        tail in prop::collection::vec(any::<u8>(), 0..90),
    ) {
        let bytes = [&len.to_le_bytes()[..], &[version, kind], &tail].concat();
        if let Ok(Some((f, used))) = frame::deframe(&bytes, 64) {
            let mut again = Vec::new();
            frame::encode(&f, &mut again);
            prop_assert_eq!(&again[..], &bytes[..used]);
        }
    }

    #[test]
    fn emulator_frames_round_trip_and_never_panic(
        command in prop_oneof![Just(frame::EMU_NORMAL), Just(frame::EMU_TEST), Just(frame::EMU_SHUTDOWN), Just(frame::EMU_CONTINUE)],
        transport in prop_oneof![Just(frame::EMU_TRANSPORT_NONE), Just(frame::EMU_TRANSPORT_TCP)],
        payload in prop::collection::vec(any::<u8>(), 0..100),
        junk in prop::collection::vec(any::<u8>(), 0..40),
    ) {
        let bytes = frame::frame_emu(command, transport, &payload);
        let (h, p, used) = frame::deframe_emu(&bytes, transport, 100).unwrap().unwrap();
        prop_assert_eq!(h, EmuHeader { command, transport, size: payload.len() as u32 });
        prop_assert_eq!(p, &payload[..]);
        prop_assert_eq!(used, bytes.len());
        if let Ok(Some((h, p, used))) = frame::deframe_emu(&junk, transport, 16) {
            prop_assert_eq!(frame::frame_emu(h.command, h.transport, p), &junk[..used]);
        }
    }

    #[test]
    fn requester_never_panics_on_arbitrary_responses(
        responses in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..80), 1..4),
    ) {
        let cfg = RequesterConfig::new(
            TrustPolicy::FirstContact,
            MeasurementPolicy::default(),
            std::time::SystemTime::UNIX_EPOCH,
        );
        let (mut req, _) = Requester::new(cfg, &mut rand_core::OsRng);
        for r in responses {
            if req.handle(&r).is_err() {
                break;
            }
        }
    }
}

mod responder_fuzz {
    use super::*;
    use bmc_pairing_core::spdm::{Responder, ResponderConfig};
    use bmc_pairing_manager::identity::cert::ChainFiles;
    use bmc_pairing_manager::identity::file::FileKeyStore;
    use std::sync::{Arc, OnceLock};

    fn fixture() -> &'static (tempfile::TempDir, Arc<FileKeyStore>, Vec<Vec<u8>>) {
        static F: OnceLock<(tempfile::TempDir, Arc<FileKeyStore>, Vec<Vec<u8>>)> = OnceLock::new();
        F.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(FileKeyStore::new(dir.path().join("k")));
            let id = ChainFiles::new(dir.path().join("c"))
                .create(store.as_ref(), "fuzz", std::time::SystemTime::now())
                .unwrap();
            (dir, store, vec![id.ca_der, id.leaf_der])
        })
    }

    /// Valid VCA first, so later garbage reaches the negotiated-state handlers.
    const VCA: [&[u8]; 3] = [
        &[0x10, 0x84, 0, 0],
        &[
            0x12, 0xe1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0, 0, 0, 0x12, 0, 0,
        ],
        &[
            0x12, 0xe3, 0, 0, 0x20, 0, 1, 0, 0x10, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0,
        ],
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn responder_answers_every_input_with_a_parseable_message(
            negotiate_first in any::<bool>(),
            requests in prop::collection::vec(message_like(), 1..6),
        ) {
            let (_, store, chain) = fixture();
            let mut r = Responder::new(
                ResponderConfig::new(chain.clone(), vec![MeasurementBlock::dmtf(1, 0, &[1; 32])]),
                store.clone(),
            )
            .unwrap();
            if negotiate_first {
                for m in VCA {
                    let rsp = r.handle(m, &mut rand_core::OsRng);
                    prop_assert_ne!(rsp[1], 0x7f, "VCA step refused: {:02x?}", rsp);
                }
            }
            for req in requests {
                let rsp = r.handle(&req, &mut rand_core::OsRng);
                let parsed = Message::read(&rsp, &ParseContext::default());
                prop_assert!(parsed.is_ok() || rsp[1] == 0x03 || rsp[1] == 0x60,
                    "unparseable response {:02x?}", rsp);
            }
        }
    }
}
