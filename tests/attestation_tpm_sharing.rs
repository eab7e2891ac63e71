//! Two key stores on one raw swtpm, as the pairing manager and bmc-attestation share a TPM
//! in tests. swtpm has no resource manager (three object slots, shared by every client) and
//! its TCTI connects for each command, so without the cross-process simulator lock two
//! operations at once interleave and run out of object memory (TPM_RC 0x902); with it,
//! both stores sign from two threads, interleaved, without a failure.
#![cfg(test)]

use std::sync::Arc;
use std::time::Duration;

use bmc_pairing_manager::identity::tpm::{PcrBank, TpmKeyStore};
use bmc_pairing_manager::identity::{KeyRole, KeyStore, verify_digest};
use bmc_test_support::swtpm::Swtpm;
use sha2::{Digest as _, Sha256};

#[test]
fn two_stores_on_one_swtpm_interleave_signatures() {
    let tmp = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&tmp.path().join("swtpm"));
    let keys = tmp.path().join("keys");
    // A short call timeout, so a lock that were never released fails the test, not hangs it.
    let timeout = Duration::from_secs(3);
    let manager = Arc::new(TpmKeyStore::open_with_timeout(&tpm.tcti(), &keys, timeout).unwrap());
    let public = manager.generate(KeyRole::Identity).unwrap();
    let attestation =
        Arc::new(TpmKeyStore::open_with_timeout(&tpm.tcti(), &keys, timeout).unwrap());
    assert_eq!(attestation.public_key(KeyRole::Identity).unwrap(), public);

    let rounds = 40;
    let workers: Vec<_> = [
        ("manager", manager.clone()),
        ("attestation", attestation.clone()),
    ]
    .into_iter()
    .map(|(who, store)| {
        let public = public.clone();
        std::thread::spawn(move || {
            for i in 0..rounds {
                let digest = Sha256::digest(format!("{who} {i}"));
                let sig = store
                    .sign_digest(KeyRole::Identity, &digest)
                    .unwrap_or_else(|e| panic!("{who} sign {i}: {e}"));
                verify_digest(&public, &digest, &sig).unwrap();
                if i % 5 == 0 {
                    // PCR reads are TPM operations too (bmc-attestation's measurements).
                    store.read_pcrs(PcrBank::Sha256, &[0, 7]).unwrap();
                }
            }
        })
    })
    .collect();
    for w in workers {
        w.join().expect("worker");
    }
    // The TPM tools get their turn as well, and nothing was left loaded.
    assert!(tpm.transient_handles().is_empty());
    manager.sign_digest(KeyRole::Identity, &[3; 32]).unwrap();
}
