//! SHA-256 PCR reads (for SPDM measurements) against real swtpm: all 24 or a subset, and the
//! values follow `tpm2_pcrextend` exactly (new = SHA-256(old || digest)).

// Marks the whole crate as test code, so the workspace's allow-*-in-tests clippy settings
// cover its helper functions too, not just the #[test] bodies.
#![cfg(test)]

use bmc_pairing_core::keys::Error;
use bmc_pairing_manager::identity::tpm::{PCR_COUNT, PcrBank, TpmKeyStore};
use bmc_test_support::swtpm::Swtpm;
use sha2::{Digest, Sha256};

fn extended(old: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(old);
    h.update(digest);
    h.finalize().into()
}

#[test]
fn all_pcrs_are_read_and_follow_extends() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&dir.path().join("swtpm"));
    let store = TpmKeyStore::open(&tpm.tcti(), dir.path().join("keys")).unwrap();

    let before = store.read_all_pcrs(PcrBank::Sha256).unwrap();
    assert_eq!(before.len(), usize::from(PCR_COUNT));
    let indices: Vec<u8> = before.iter().map(|(i, _)| *i).collect();
    assert_eq!(indices, (0..PCR_COUNT).collect::<Vec<_>>());
    // Nothing measured into a fresh swtpm: PCR 0 is still all zeros.
    assert_eq!(before[0].1, [0u8; 32]);

    let d10 = <[u8; 32]>::from(Sha256::digest(b"kernel"));
    let d16 = <[u8; 32]>::from(Sha256::digest(b"debug"));
    tpm.pcr_extend(10, &d10);
    tpm.pcr_extend(16, &d16);
    tpm.pcr_extend(16, &d10);

    let after = store.read_all_pcrs(PcrBank::Sha256).unwrap();
    for ((i, old), (j, new)) in before.iter().zip(&after) {
        assert_eq!(i, j);
        match i {
            10 => assert_eq!(*new, extended(old, &d10)),
            16 => assert_eq!(*new, extended(&extended(old, &d16), &d10)),
            _ => assert_eq!(new, old, "pcr {i} changed without an extend"),
        }
    }
}

#[test]
fn a_subset_is_returned_sorted_and_matches_the_full_read() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&dir.path().join("swtpm"));
    let store = TpmKeyStore::open(&tpm.tcti(), dir.path().join("keys")).unwrap();
    tpm.pcr_extend(23, &[0xab; 32]);

    let all = store.read_all_pcrs(PcrBank::Sha256).unwrap();
    let subset = store.read_pcrs(PcrBank::Sha256, &[23, 0, 17]).unwrap();
    assert_eq!(
        subset,
        vec![all[0], all[17], all[23]],
        "subset must equal the same PCRs of a full read"
    );
    assert_eq!(subset[2].1, extended(&[0; 32], &[0xab; 32]));

    assert!(matches!(
        store.read_pcrs(PcrBank::Sha256, &[PCR_COUNT]),
        Err(Error::Unavailable { .. })
    ));
}
