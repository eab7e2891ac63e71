//! Keys and certificate files of `bmc-attestation`: opening the configured key store (the
//! pairing manager's identity), a read-only key from a PKCS#8 file for `respond --key`
//! (ECDSA P-256 or P-384), and certificate files in DER or PEM (trust anchors,
//! `respond --chain`).
//!
//! Blocking (files, TPM): call from a blocking thread. Nothing here writes a file.

use std::fmt;
use std::path::{Path, PathBuf};

use p256::ecdsa::signature::hazmat::PrehashSigner as _;
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey as _};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use bmc_pairing_core::keys::{Backend, Error, KeyRole, KeyStore, PublicKey};

/// Largest certificate or key file read.
pub const MAX_FILE_LEN: u64 = 256 * 1024;
/// Most certificates one file or the anchor directory may hold.
pub const MAX_CERTS: usize = 64;
/// File name extensions read from the trust-anchor directory.
pub const ANCHOR_EXTENSIONS: [&str; 4] = ["der", "pem", "crt", "cer"];

/// A certificate or key file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The file or directory cannot be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Larger than [`MAX_FILE_LEN`], or more than [`MAX_CERTS`] certificates.
    #[error("{path} is too large")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// Neither one DER certificate nor PEM holding only valid certificates.
    #[error("{path} does not hold X.509 certificates (DER or PEM)")]
    NotCertificates {
        /// The file.
        path: PathBuf,
    },
    /// Not a P-256 or P-384 private key in PKCS#8 (DER or PEM).
    #[error("{path} does not hold a P-256 or P-384 PKCS#8 private key (DER or PEM)")]
    NotKey {
        /// The file.
        path: PathBuf,
    },
}

fn read_limited(path: &Path) -> Result<Vec<u8>, FileError> {
    let io = |source| FileError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.len() > MAX_FILE_LEN {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    std::fs::read(path).map_err(io)
}

fn is_one_certificate(der: &[u8]) -> bool {
    matches!(
        x509_parser::parse_x509_certificate(der),
        Ok((rest, _)) if rest.is_empty()
    )
}

/// Parses certificate bytes: one DER certificate, or PEM with one or more `CERTIFICATE`
/// blocks (each must be a valid certificate). `path` is for messages.
///
/// # Errors
/// [`FileError::NotCertificates`], [`FileError::TooLarge`].
pub fn parse_certificates(path: &Path, bytes: &[u8]) -> Result<Vec<Vec<u8>>, FileError> {
    let not = || FileError::NotCertificates {
        path: path.to_path_buf(),
    };
    if is_one_certificate(bytes) {
        return Ok(vec![bytes.to_vec()]);
    }
    let mut out = Vec::new();
    for cert in CertificateDer::pem_slice_iter(bytes) {
        let der = cert.map_err(|_| not())?.as_ref().to_vec();
        if !is_one_certificate(&der) {
            return Err(not());
        }
        if out.len() >= MAX_CERTS {
            return Err(FileError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        out.push(der);
    }
    if out.is_empty() {
        return Err(not());
    }
    Ok(out)
}

/// Reads one certificate file (DER or PEM).
///
/// # Errors
/// [`FileError`].
pub fn read_certificates(path: &Path) -> Result<Vec<Vec<u8>>, FileError> {
    parse_certificates(path, &read_limited(path)?)
}

/// Reads every certificate in the trust-anchor directory: regular files named `*.der`,
/// `*.pem`, `*.crt` or `*.cer`, sorted by name. A missing directory holds no anchors.
///
/// # Errors
/// [`FileError`] for an unreadable directory or an anchor file that is not certificates.
pub fn read_anchor_dir(dir: &Path) -> Result<Vec<Vec<u8>>, FileError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(FileError::Io {
                path: dir.to_path_buf(),
                source,
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| ANCHOR_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
                && p.is_file()
        })
        .collect();
    files.sort();
    let mut anchors = Vec::new();
    for f in files {
        for cert in read_certificates(&f)? {
            if anchors.len() >= MAX_CERTS {
                return Err(FileError::TooLarge {
                    path: dir.to_path_buf(),
                });
            }
            anchors.push(cert);
        }
    }
    Ok(anchors)
}

/// An ECDSA identity key read from a PKCS#8 file (`respond --key`): development and tests
/// only. Read-only: it signs as [`KeyRole::Identity`] and refuses every other role and
/// every change. A P-256 key signs SHA-256 digests, a P-384 key SHA-384 digests (the SPDM
/// responder pairs them so).
pub struct KeyFile {
    key: FileKey,
    public: PublicKey,
    path: PathBuf,
}

/// The curve of a [`KeyFile`].
enum FileKey {
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
}

impl FileKey {
    /// The digest length this key signs.
    fn digest_len(&self) -> usize {
        match self {
            FileKey::P256(_) => 32,
            FileKey::P384(_) => 48,
        }
    }
}

/// Reads a PKCS#8 private key of type `K` from DER, or from PEM text.
fn pkcs8<K: DecodePrivateKey>(bytes: &[u8]) -> Option<K> {
    K::from_pkcs8_der(bytes).ok().or_else(|| {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| K::from_pkcs8_pem(text).ok())
    })
}

impl fmt::Debug for KeyFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyFile")
            .field("path", &self.path)
            .field("public", &self.public)
            .finish()
    }
}

impl KeyFile {
    /// Reads a PKCS#8 P-256 or P-384 private key, DER or PEM.
    ///
    /// # Errors
    /// [`FileError`].
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let bytes = read_limited(path)?;
        let not = || FileError::NotKey {
            path: path.to_path_buf(),
        };
        let (key, der) = if let Some(k) = pkcs8::<p256::ecdsa::SigningKey>(&bytes) {
            let der = k.verifying_key().to_public_key_der().map_err(|_| not())?;
            (FileKey::P256(k), der)
        } else if let Some(k) = pkcs8::<p384::ecdsa::SigningKey>(&bytes) {
            let der = k.verifying_key().to_public_key_der().map_err(|_| not())?;
            (FileKey::P384(k), der)
        } else {
            return Err(not());
        };
        Ok(KeyFile {
            public: PublicKey::from_spki_der(der.as_bytes().to_vec()),
            key,
            path: path.to_path_buf(),
        })
    }

    fn read_only(&self, role: KeyRole) -> Error {
        Error::KeyUnusable {
            role,
            source: Box::new(ReadOnly(self.path.clone())),
        }
    }
}

/// `respond --key` names a key file this process must not replace or delete.
#[derive(Debug, thiserror::Error)]
#[error("{} is a read-only identity key", .0.display())]
struct ReadOnly(PathBuf);

impl KeyStore for KeyFile {
    fn backend(&self) -> Backend {
        Backend::File
    }

    fn generate(&self, role: KeyRole) -> Result<PublicKey, Error> {
        Err(self.read_only(role))
    }

    fn public_key(&self, role: KeyRole) -> Result<PublicKey, Error> {
        match role {
            KeyRole::Identity => Ok(self.public.clone()),
            KeyRole::Ca | KeyRole::GroupRoot => Err(Error::KeyMissing(role)),
        }
    }

    fn sign_digest(&self, role: KeyRole, digest: &[u8]) -> Result<Vec<u8>, Error> {
        if digest.len() != self.key.digest_len() {
            return Err(Error::BadDigestLength(digest.len()));
        }
        if role != KeyRole::Identity {
            return Err(Error::KeyMissing(role));
        }
        match &self.key {
            FileKey::P256(k) => {
                let sig: p256::ecdsa::Signature =
                    k.sign_prehash(digest).map_err(|_| Error::Sign(role))?;
                Ok(sig.to_bytes().to_vec())
            }
            FileKey::P384(k) => {
                let sig: p384::ecdsa::Signature =
                    k.sign_prehash(digest).map_err(|_| Error::Sign(role))?;
                Ok(sig.to_bytes().to_vec())
            }
        }
    }

    fn delete(&self, role: KeyRole) -> Result<(), Error> {
        Err(self.read_only(role))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::cert::ChainFiles;
    use crate::identity::{self, file::FileKeyStore};
    use std::time::SystemTime;

    #[test]
    fn certificates_parse_from_der_and_pem_and_junk_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path().join("keys"));
        let id = ChainFiles::new(dir.path().join("certs"))
            .create(&store, "bmc-a", SystemTime::now())
            .unwrap();
        let p = Path::new("x");
        assert_eq!(
            parse_certificates(p, &id.ca_der).unwrap(),
            vec![id.ca_der.clone()]
        );
        let pem = format!(
            "{}{}",
            pem_of("CERTIFICATE", &id.ca_der),
            pem_of("CERTIFICATE", &id.leaf_der)
        );
        assert_eq!(
            parse_certificates(p, pem.as_bytes()).unwrap(),
            vec![id.ca_der.clone(), id.leaf_der.clone()]
        );
        for junk in [&b""[..], b"hello", &id.ca_der[..10]] {
            assert!(matches!(
                parse_certificates(p, junk),
                Err(FileError::NotCertificates { .. })
            ));
        }
        let bad_pem = pem_of("CERTIFICATE", b"not der");
        assert!(parse_certificates(p, bad_pem.as_bytes()).is_err());

        // The anchor directory reads only certificate files, and refuses a bad one.
        let anchors = dir.path().join("anchors");
        assert!(read_anchor_dir(&anchors).unwrap().is_empty());
        std::fs::create_dir(&anchors).unwrap();
        std::fs::write(anchors.join("README"), b"not read").unwrap();
        std::fs::write(anchors.join("a.der"), &id.ca_der).unwrap();
        assert_eq!(read_anchor_dir(&anchors).unwrap(), vec![id.ca_der.clone()]);
        std::fs::write(anchors.join("b.pem"), b"junk").unwrap();
        assert!(matches!(
            read_anchor_dir(&anchors),
            Err(FileError::NotCertificates { .. })
        ));
    }

    #[test]
    fn key_file_signs_as_identity_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path());
        let public = store.generate(KeyRole::Identity).unwrap();
        let key = KeyFile::load(&store.key_path(KeyRole::Identity)).unwrap();
        assert_eq!(key.public_key(KeyRole::Identity).unwrap(), public);
        let sig = key.sign_digest(KeyRole::Identity, &[7; 32]).unwrap();
        identity::verify_digest(&public, &[7; 32], &sig).unwrap();
        assert!(key.sign_digest(KeyRole::Ca, &[7; 32]).is_err());
        assert!(key.generate(KeyRole::Identity).is_err());
        assert!(key.delete(KeyRole::Identity).is_err());
        std::fs::write(dir.path().join("junk"), b"junk").unwrap();
        assert!(matches!(
            KeyFile::load(&dir.path().join("junk")),
            Err(FileError::NotKey { .. })
        ));
    }

    fn pem_of(label: &str, der: &[u8]) -> String {
        use p256::pkcs8::der::pem::{LineEnding, encode_string};
        encode_string(label, LineEnding::LF, der).unwrap()
    }
}
