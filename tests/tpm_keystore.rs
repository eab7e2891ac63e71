//! The TPM key store through its public API, against real swtpm: the identity chain signed by
//! TPM keys, no private key material on disk, no leaked TPM objects, one owner under
//! concurrent callers, and a hung TPM turning into an error instead of a hang.

// Marks the whole crate as test code, so the workspace's allow-*-in-tests clippy settings
// cover its helper functions too, not just the #[test] bodies.
#![cfg(test)]

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bmc_pairing_core::keys::Error;
use bmc_pairing_manager::identity::cert::ChainFiles;
use bmc_pairing_manager::identity::file::{FileKeyStore, looks_like_private_key, walk_files};
use bmc_pairing_manager::identity::tpm::TpmKeyStore;
use bmc_pairing_manager::identity::{KeyRole, KeyStore, sign_message, verify_digest};
use bmc_pairing_manager::kit::ErrorChain;
use bmc_test_support::swtpm::Swtpm;
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

#[test]
fn identity_chain_is_issued_and_loaded_with_tpm_keys() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&dir.path().join("swtpm"));
    let store = TpmKeyStore::open(&tpm.tcti(), dir.path().join("keys")).unwrap();
    let files = ChainFiles::new(dir.path().join("certs"));

    let created = files.create(&store, "bmc-a", now()).unwrap();
    let loaded = files.load(&store).unwrap();
    assert_eq!(loaded.fingerprint(), created.fingerprint());
    assert_eq!(
        loaded.public_key,
        store.public_key(KeyRole::Identity).unwrap()
    );

    // The TPM CA key signed the leaf, and signed its own certificate.
    let (_, ca) = X509Certificate::from_der(&loaded.ca_der).unwrap();
    let (_, leaf) = X509Certificate::from_der(&loaded.leaf_der).unwrap();
    ca.verify_signature(None).unwrap();
    leaf.verify_signature(Some(ca.public_key())).unwrap();
    assert_eq!(
        ca.public_key().raw,
        store.public_key(KeyRole::Ca).unwrap().spki_der()
    );
    assert!(tpm.transient_handles().is_empty());
}

#[test]
fn no_private_key_material_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&dir.path().join("swtpm"));
    let store = TpmKeyStore::open(&tpm.tcti(), dir.path().join("keys")).unwrap();
    ChainFiles::new(dir.path().join("certs"))
        .create(&store, "bmc-a", now())
        .unwrap();
    // A group authority's third key (issue 17): its blob must hold no key material either.
    store.generate(KeyRole::GroupRoot).unwrap();

    let files = walk_files(dir.path());
    for role in KeyRole::ALL {
        assert!(
            files.contains(&store.blob_path(role)),
            "no blob for {role}: the scan below would prove nothing"
        );
    }
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            !looks_like_private_key(&bytes),
            "{} holds a private key",
            path.display()
        );
    }

    // The same scan does find a key the file backend writes.
    let dev = FileKeyStore::new(dir.path().join("dev-keys"));
    dev.generate(KeyRole::Identity).unwrap();
    assert!(
        walk_files(dir.path())
            .iter()
            .any(|p| looks_like_private_key(&std::fs::read(p).unwrap())),
        "the private-key scan cannot see a PKCS#8 key"
    );
}

#[test]
fn fifty_signs_on_raw_swtpm_leave_no_object_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&dir.path().join("swtpm"));
    let store = TpmKeyStore::open(&tpm.tcti(), dir.path().join("keys")).unwrap();
    let key = store.generate(KeyRole::Identity).unwrap();

    // swtpm has three object slots and no resource manager: one leaked object per call
    // would fail the third call with TPM_RC_OBJECT_MEMORY.
    for i in 0..50u32 {
        let digest = Sha256::digest(i.to_be_bytes());
        let sig = store.sign_digest(KeyRole::Identity, &digest).unwrap();
        verify_digest(&key, &digest, &sig).unwrap();
    }
    assert!(tpm.transient_handles().is_empty());

    // Error paths flush too: failed loads of a damaged blob leave nothing behind.
    let path = store.blob_path(KeyRole::Identity);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x80;
    std::fs::write(&path, &bytes).unwrap();
    for _ in 0..5 {
        assert!(matches!(
            store.sign_digest(KeyRole::Identity, &[7; 32]),
            Err(Error::KeyUnusable { .. })
        ));
    }
    assert!(tpm.transient_handles().is_empty());
}

#[test]
fn harness_sees_an_object_left_loaded() {
    // Control for the leak checks above: transient_handles must report what a careless
    // client leaves behind on raw swtpm.
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&dir.path().join("swtpm"));
    let ctx = dir.path().join("primary.ctx");
    tpm.tool(
        "tpm2_createprimary",
        &["-C", "o", "-c", ctx.to_str().unwrap()],
    );
    assert_eq!(tpm.transient_handles().len(), 1);
    tpm.tool("tpm2_flushcontext", &["-t"]);
    assert!(tpm.transient_handles().is_empty());
}

#[test]
fn concurrent_callers_are_serialised_by_the_owner_thread() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&dir.path().join("swtpm"));
    let store = Arc::new(TpmKeyStore::open(&tpm.tcti(), dir.path().join("keys")).unwrap());
    let ca = store.generate(KeyRole::Ca).unwrap();
    let id = store.generate(KeyRole::Identity).unwrap();

    let workers: Vec<_> = (0..4u8)
        .map(|t| {
            let store = Arc::clone(&store);
            let (ca, id) = (ca.clone(), id.clone());
            std::thread::spawn(move || {
                for i in 0..8u8 {
                    let (role, key) = if (t + i) % 2 == 0 {
                        (KeyRole::Ca, &ca)
                    } else {
                        (KeyRole::Identity, &id)
                    };
                    let msg = [t, i];
                    let sig = sign_message(store.as_ref(), role, &msg).unwrap();
                    verify_digest(key, &Sha256::digest(msg), &sig).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert!(tpm.transient_handles().is_empty());
}

#[test]
fn hung_tpm_is_an_error_not_a_hang_and_late_work_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&dir.path().join("swtpm"));
    let timeout = Duration::from_millis(800);
    let store =
        TpmKeyStore::open_with_timeout(&tpm.tcti(), dir.path().join("keys"), timeout).unwrap();
    let key = store.generate(KeyRole::Identity).unwrap();

    tpm.freeze();
    let started = Instant::now();
    match store.sign_digest(KeyRole::Identity, &[1; 32]) {
        Err(e @ Error::Unavailable { .. }) => {
            let msg = ErrorChain(&e).to_string();
            assert!(msg.contains("no answer"), "{msg}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    // Queued behind the hung sign: it must not replace the key once the TPM is back.
    assert!(matches!(
        store.generate(KeyRole::Identity),
        Err(Error::Unavailable { .. })
    ));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "callers waited {:?}",
        started.elapsed()
    );
    tpm.thaw();

    // The owner thread drains the stale work and serves new calls again.
    let sig = store.sign_digest(KeyRole::Identity, &[2; 32]).unwrap();
    verify_digest(&key, &[2; 32], &sig).unwrap();
    assert_eq!(store.public_key(KeyRole::Identity).unwrap(), key);
    assert!(tpm.transient_handles().is_empty());
}

#[test]
fn killed_tpm_is_a_tpm_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut tpm = Swtpm::start(&dir.path().join("swtpm"));
    let store = TpmKeyStore::open(&tpm.tcti(), dir.path().join("keys")).unwrap();
    store.generate(KeyRole::Identity).unwrap();
    tpm.kill();
    assert!(matches!(
        store.sign_digest(KeyRole::Identity, &[3; 32]),
        Err(Error::Unavailable { .. })
    ));
    assert!(matches!(
        store.generate(KeyRole::Ca),
        Err(Error::Unavailable { .. })
    ));
    assert!(!store.blob_path(KeyRole::Ca).exists());
}

/// A trust-quorum share sealed to one TPM: the blob does not contain the data, the same TPM
/// unseals it, another TPM (another owner seed) cannot, and a damaged blob is an error.
#[test]
fn sealed_data_opens_only_in_its_own_tpm() {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&dir.path().join("swtpm-a"));
    let other = Swtpm::start(&dir.path().join("swtpm-b"));
    let store = TpmKeyStore::open(&tpm.tcti(), dir.path().join("keys-a")).unwrap();
    let elsewhere = TpmKeyStore::open(&other.tcti(), dir.path().join("keys-b")).unwrap();
    let secret: Vec<u8> = (0u8..33).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();

    let blob = store.seal(&secret).unwrap();
    assert!(
        !blob.windows(8).any(|w| secret.windows(8).any(|s| s == w)),
        "no 8 bytes of the data appear in the sealed blob"
    );
    assert_eq!(store.unseal(&blob).unwrap().as_slice(), secret.as_slice());
    assert!(
        elsewhere.unseal(&blob).is_err(),
        "another TPM cannot unseal it"
    );
    let mut damaged = blob.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    assert!(store.unseal(&damaged).is_err());
    assert!(store.unseal(b"not a blob").is_err());
    assert!(tpm.transient_handles().is_empty(), "no object left loaded");
}
