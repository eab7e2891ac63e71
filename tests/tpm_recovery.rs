//! Key loss and TPM state changes are error states, never panics: a TPM reboot keeps the
//! keys, a TPM clear makes them unusable until `create` runs again, and a corrupt or missing
//! blob gives a typed error that `create` recovers from. Against real swtpm.

// Marks the whole crate as test code, so the workspace's allow-*-in-tests clippy settings
// cover its helper functions too, not just the #[test] bodies.
#![cfg(test)]

use std::path::Path;
use std::time::{Duration, SystemTime};

use bmc_pairing_core::keys::Error;
use bmc_pairing_manager::identity::cert::{ChainFiles, IdentityProblem};
use bmc_pairing_manager::identity::tpm::TpmKeyStore;
use bmc_pairing_manager::identity::{KeyRole, KeyStore, verify_digest};
use bmc_pairing_manager::kit::ErrorChain;
use bmc_test_support::swtpm::Swtpm;

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000)
}

struct Bmc {
    // Field order is drop order: the store lets go of the TPM before swtpm is killed.
    store: TpmKeyStore,
    files: ChainFiles,
    tpm: Swtpm,
    _dir: tempfile::TempDir,
}

fn provisioned() -> Bmc {
    let dir = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&dir.path().join("swtpm"));
    let store = TpmKeyStore::open(&tpm.tcti(), dir.path().join("keys")).unwrap();
    let files = ChainFiles::new(dir.path().join("certs"));
    files.create(&store, "bmc-a", now()).unwrap();
    files.load(&store).unwrap();
    // Every role, the group authority's root (issue 17) included, so each loop below meets
    // a real key.
    store.generate(KeyRole::GroupRoot).unwrap();
    Bmc {
        store,
        files,
        tpm,
        _dir: dir,
    }
}

fn signs_with(store: &TpmKeyStore, role: KeyRole) {
    let key = store.public_key(role).unwrap();
    let sig = store.sign_digest(role, &[0x42; 32]).unwrap();
    verify_digest(&key, &[0x42; 32], &sig).unwrap();
}

fn assert_invalid(files: &ChainFiles, store: &TpmKeyStore) {
    match files.load(store) {
        Err(IdentityProblem::Invalid(_)) => {}
        other => panic!("expected IdentityProblem::Invalid, got {other:?}"),
    }
}

fn recreate_and_load(bmc: &Bmc) {
    let fresh = bmc.files.create(&bmc.store, "bmc-a", now()).unwrap();
    let loaded = bmc.files.load(&bmc.store).unwrap();
    assert_eq!(loaded.fingerprint(), fresh.fingerprint());
    signs_with(&bmc.store, KeyRole::Identity);
    signs_with(&bmc.store, KeyRole::Ca);
}

#[test]
fn keys_survive_a_tpm_reboot() {
    let bmc = provisioned();
    let before = bmc.files.load(&bmc.store).unwrap();

    bmc.tpm.reboot();
    let after = bmc.files.load(&bmc.store).unwrap();
    assert_eq!(after.fingerprint(), before.fingerprint());
    signs_with(&bmc.store, KeyRole::Identity);

    // And through a fresh store, as after a BMC reboot that restarts the daemon too.
    bmc.tpm.reboot();
    let dir = bmc.store.blob_dir().to_path_buf();
    let reopened = TpmKeyStore::open(&bmc.tpm.tcti(), &dir).unwrap();
    assert_eq!(
        bmc.files.load(&reopened).unwrap().fingerprint(),
        before.fingerprint()
    );
    assert!(bmc.tpm.transient_handles().is_empty());
}

#[test]
fn tpm_clear_makes_keys_unusable_until_recreated() {
    let bmc = provisioned();
    let old = bmc.store.public_key(KeyRole::Identity).unwrap();

    bmc.tpm.clear();
    for role in KeyRole::ALL {
        match bmc.store.public_key(role) {
            Err(Error::KeyUnusable { role: r, .. }) => assert_eq!(r, role),
            other => panic!("{role} after clear: expected KeyUnusable, got {other:?}"),
        }
        assert!(matches!(
            bmc.store.sign_digest(role, &[1; 32]),
            Err(Error::KeyUnusable { .. })
        ));
    }
    assert_invalid(&bmc.files, &bmc.store);

    recreate_and_load(&bmc);
    assert_ne!(bmc.store.public_key(KeyRole::Identity).unwrap(), old);
    assert!(bmc.tpm.transient_handles().is_empty());
}

#[test]
fn corrupt_blob_is_unusable_and_create_recovers() {
    let bmc = provisioned();
    let path = bmc.store.blob_path(KeyRole::Identity);
    std::fs::write(&path, b"this is not a TPM blob at all").unwrap();

    match bmc.store.public_key(KeyRole::Identity) {
        Err(e @ Error::KeyUnusable { role, .. }) => {
            assert_eq!(role, KeyRole::Identity);
            let reason = ErrorChain(&e).to_string();
            assert!(reason.contains(path.to_str().unwrap()), "{reason}");
        }
        other => panic!("expected KeyUnusable, got {other:?}"),
    }
    assert!(matches!(
        bmc.store.sign_digest(KeyRole::Identity, &[1; 32]),
        Err(Error::KeyUnusable { .. })
    ));
    // The other role is untouched.
    signs_with(&bmc.store, KeyRole::Ca);
    assert_invalid(&bmc.files, &bmc.store);

    // Truncated and empty blobs take the same path.
    for bytes in [&std::fs::read(&path).unwrap()[..3], &[][..]] {
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(
            bmc.store.sign_digest(KeyRole::Identity, &[1; 32]),
            Err(Error::KeyUnusable { .. })
        ));
    }

    recreate_and_load(&bmc);
}

#[test]
fn missing_blob_is_key_missing_and_create_recovers() {
    let bmc = provisioned();
    remove(&bmc.store.blob_path(KeyRole::Ca));

    assert!(matches!(
        bmc.store.public_key(KeyRole::Ca),
        Err(Error::KeyMissing(KeyRole::Ca))
    ));
    assert!(matches!(
        bmc.store.sign_digest(KeyRole::Ca, &[1; 32]),
        Err(Error::KeyMissing(KeyRole::Ca))
    ));
    assert_invalid(&bmc.files, &bmc.store);

    // A whole lost blob directory is the same story.
    remove(bmc.store.blob_dir());
    assert!(matches!(
        bmc.store.public_key(KeyRole::Identity),
        Err(Error::KeyMissing(KeyRole::Identity))
    ));
    assert_invalid(&bmc.files, &bmc.store);

    recreate_and_load(&bmc);
}

fn remove(path: &Path) {
    if path.is_dir() {
        std::fs::remove_dir_all(path).unwrap();
    } else {
        std::fs::remove_file(path).unwrap();
    }
}
