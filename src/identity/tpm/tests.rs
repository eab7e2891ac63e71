//! Unit tests of the TPM backend against a real swtpm (one per test, killed by PID on drop).

use super::*;
use crate::kit::ErrorChain;
use bmc_pairing_core::keys::contract;
use bmc_test_support::swtpm::Swtpm;
use sha2::{Digest as _, Sha256};

fn fresh() -> (tempfile::TempDir, Swtpm, TpmKeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&dir.path().join("swtpm"));
    let store = TpmKeyStore::open(&tpm.tcti(), dir.path().join("keys")).unwrap();
    (dir, tpm, store)
}

#[test]
fn tpm_store_meets_the_contract() {
    let (_dir, tpm, store) = fresh();
    assert_eq!(store.backend(), Backend::Tpm);
    contract::run(&store);
    assert!(
        tpm.transient_handles().is_empty(),
        "objects left loaded after the contract"
    );
}

#[test]
fn blob_is_private_framed_and_survives_a_new_store() {
    let (dir, tpm, store) = fresh();
    let key = store.generate(KeyRole::Identity).unwrap();
    let path = store.blob_path(KeyRole::Identity);
    assert_eq!(path, dir.path().join("keys/identity.tpmkey"));
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(blob::MAGIC));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().mode() & 0o777,
        persist::PRIVATE_MODE
    );
    drop(store);

    // A second store (a daemon restart) re-derives the primary and uses the same key.
    let again = TpmKeyStore::open(&tpm.tcti(), dir.path().join("keys")).unwrap();
    assert_eq!(again.public_key(KeyRole::Identity).unwrap(), key);
    let digest = Sha256::digest(b"after restart");
    let sig = again.sign_digest(KeyRole::Identity, &digest).unwrap();
    crate::identity::verify_digest(&key, &digest, &sig).unwrap();
}

#[test]
fn damaged_private_area_is_rejected_by_the_tpm_as_unusable() {
    let (_dir, _tpm, store) = fresh();
    store.generate(KeyRole::Ca).unwrap();
    let path = store.blob_path(KeyRole::Ca);
    let mut bytes = std::fs::read(&path).unwrap();
    // The framing stays valid; only the TPM's integrity check can notice this flip.
    let last = bytes.len() - 5;
    bytes[last] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    match store.sign_digest(KeyRole::Ca, &[1; 32]) {
        Err(e @ Error::KeyUnusable { role, .. }) => {
            assert_eq!(role, KeyRole::Ca);
            let chain = ErrorChain(&e).to_string();
            assert!(chain.contains("refuses to load"), "{chain}");
        }
        other => panic!("expected KeyUnusable, got {other:?}"),
    }
    assert!(matches!(
        store.public_key(KeyRole::Ca),
        Err(Error::KeyUnusable { .. })
    ));
}

#[test]
fn blob_of_a_non_signing_key_is_unusable() {
    let (_dir, _tpm, store) = fresh();
    store.generate(KeyRole::Identity).unwrap();
    let path = store.blob_path(KeyRole::Identity);
    let stored = Blob::decode(&std::fs::read(&path).unwrap()).unwrap();
    // Swap in the storage primary's template as the public area.
    let wrong = Blob {
        public: device::primary_template().unwrap().marshall().unwrap(),
        private: stored.private,
    };
    std::fs::write(&path, wrong.encode().unwrap()).unwrap();
    assert!(matches!(
        store.public_key(KeyRole::Identity),
        Err(Error::KeyUnusable { .. })
    ));
}

#[test]
fn pcr_indices_are_checked_before_the_tpm_is_asked() {
    let (_dir, _tpm, store) = fresh();
    assert!(matches!(
        store.read_pcrs(PcrBank::Sha256, &[3, 24]),
        Err(ref e @ Error::Unavailable { .. }) if ErrorChain(e).to_string().contains("24")
    ));
    assert!(store.read_pcrs(PcrBank::Sha256, &[]).unwrap().is_empty());
    let dup = store.read_pcrs(PcrBank::Sha256, &[7, 2, 7]).unwrap();
    assert_eq!(dup.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [2, 7]);
}

#[test]
fn bad_tcti_and_unreachable_tpm_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        TpmKeyStore::open("no-such-tcti:foo", dir.path()),
        Err(Error::Unavailable { .. })
    ));
    // A port nothing listens on: bind, read the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    match TpmKeyStore::open(&format!("swtpm:host=127.0.0.1,port={port}"), dir.path()) {
        Err(e @ Error::Unavailable { .. }) => {
            let chain = ErrorChain(&e).to_string();
            assert!(chain.contains("cannot reach"), "{chain}");
        }
        other => panic!("expected Error::Unavailable, got {other:?}"),
    }
}
