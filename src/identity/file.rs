//! File backend for [`KeyStore`]: P-256 keys as PKCS#8 DER files, mode 0600, written atomically.
//!
//! For development and tests only. Production keys live in the TPM, where the private part
//! never exists in clear outside the chip. The daemon uses this backend only when the config
//! says `"key_backend": {"type": "file"}`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::hazmat::PrehashSigner;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey, EncodePublicKey};
use rand_core::OsRng;

use crate::persist;
use bmc_pairing_core::keys::{Backend, Error, KeyRole, KeyStore, PublicKey, SHA256_LEN};

/// Keys as files in one directory: `<dir>/<role>.p8`.
#[derive(Debug)]
pub struct FileKeyStore {
    dir: PathBuf,
    // Serialises generate/delete against sign so a reader never sees a half-replaced key
    // (the file itself is replaced atomically; this keeps load-then-use consistent too).
    lock: Mutex<()>,
}

impl FileKeyStore {
    /// A store rooted at `dir` (created 0700 on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileKeyStore {
            dir: dir.into(),
            lock: Mutex::new(()),
        }
    }

    /// The file that holds `role`'s key.
    pub fn key_path(&self, role: KeyRole) -> PathBuf {
        self.dir.join(format!("{}.p8", role.as_str()))
    }

    fn load(&self, role: KeyRole) -> Result<SigningKey, Error> {
        let path = self.key_path(role);
        let der = persist::read_optional(&path)
            .map_err(|source| Error::Storage {
                path: path.clone(),
                source: Box::new(source),
            })?
            .ok_or(Error::KeyMissing(role))?;
        SigningKey::from_pkcs8_der(&der).map_err(|e| Error::KeyUnusable {
            role,
            source: Box::new(NotAKey {
                path,
                reason: e.to_string(),
            }),
        })
    }

    fn guard(&self) -> std::sync::MutexGuard<'_, ()> {
        // A poisoned lock only means another thread panicked while holding it; the files
        // are still consistent because every write is atomic.
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn public_of(role: KeyRole, key: &SigningKey) -> Result<PublicKey, Error> {
    let der = key
        .verifying_key()
        .to_public_key_der()
        .map_err(|_| Error::Sign(role))?;
    Ok(PublicKey::from_spki_der(der.as_bytes().to_vec()))
}

impl KeyStore for FileKeyStore {
    fn backend(&self) -> Backend {
        Backend::File
    }

    fn generate(&self, role: KeyRole) -> Result<PublicKey, Error> {
        let _g = self.guard();
        let key = SigningKey::random(&mut OsRng);
        let der = key.to_pkcs8_der().map_err(|_| Error::Sign(role))?;
        let path = self.key_path(role);
        persist::write_atomic(&path, der.as_bytes()).map_err(|source| Error::Storage {
            path: path.clone(),
            source: Box::new(source),
        })?;
        public_of(role, &key)
    }

    fn public_key(&self, role: KeyRole) -> Result<PublicKey, Error> {
        let _g = self.guard();
        public_of(role, &self.load(role)?)
    }

    fn sign_digest(&self, role: KeyRole, digest: &[u8]) -> Result<Vec<u8>, Error> {
        if digest.len() != SHA256_LEN {
            return Err(Error::BadDigestLength(digest.len()));
        }
        let _g = self.guard();
        let key = self.load(role)?;
        let sig: p256::ecdsa::Signature =
            key.sign_prehash(digest).map_err(|_| Error::Sign(role))?;
        Ok(sig.to_bytes().to_vec())
    }

    fn delete(&self, role: KeyRole) -> Result<(), Error> {
        let _g = self.guard();
        let path = self.key_path(role);
        persist::remove_if_exists(&path).map_err(|source| Error::Storage {
            path,
            source: Box::new(source),
        })
    }
}

/// A key file that does not hold a P-256 PKCS#8 key.
#[derive(Debug, thiserror::Error)]
#[error("{path} does not hold a P-256 PKCS#8 key: {reason}")]
struct NotAKey {
    path: PathBuf,
    reason: String,
}

/// True if `bytes` parse as a private key in any encoding this project could have written
/// (PKCS#8 DER or PEM, SEC1). Used by tests that assert no private key is on disk.
pub fn looks_like_private_key(bytes: &[u8]) -> bool {
    if SigningKey::from_pkcs8_der(bytes).is_ok() || p256::SecretKey::from_sec1_der(bytes).is_ok() {
        return true;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => text.contains("PRIVATE KEY") || SigningKey::from_pkcs8_pem(text).is_ok(),
        Err(_) => false,
    }
}

/// Lists every regular file under `dir`, recursively.
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn file_store_meets_the_contract() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path().join("keys"));
        bmc_pairing_core::keys::contract::run(&store);
    }

    #[test]
    fn keys_are_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path().join("keys"));
        store.generate(KeyRole::Ca).unwrap();
        let meta = std::fs::metadata(store.key_path(KeyRole::Ca)).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert!(looks_like_private_key(
            &std::fs::read(store.key_path(KeyRole::Ca)).unwrap()
        ));
    }

    #[test]
    fn corrupt_key_is_unusable_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path());
        std::fs::write(store.key_path(KeyRole::Identity), b"garbage").unwrap();
        assert!(matches!(
            store.public_key(KeyRole::Identity),
            Err(Error::KeyUnusable { .. })
        ));
    }
}
