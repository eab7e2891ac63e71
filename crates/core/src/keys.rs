//! The BMC's keys as the cores see them: the [`KeyStore`] trait, through which every
//! signature of this project is made (TLS CertificateVerify, certificate issuance, SPDM
//! CHALLENGE_AUTH and MEASUREMENTS), and the public-key types: [`PublicKey`] and the pin,
//! [`Fingerprint`].
//!
//! The backends (a TPM2 through tss-esapi, PKCS#8 files for development) live in the daemon
//! crate; they report their own failures as the `source` of [`Error`].

use std::fmt;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};

use crate::hex::{hex_decode, hex_encode};

/// Length of a SHA-256 digest, the only digest our P-256 keys sign.
pub const SHA256_LEN: usize = 32;
/// Length of a raw P-256 ECDSA signature, `r || s`, each 32 bytes big-endian.
pub const P256_SIGNATURE_LEN: usize = 64;

/// Which of the BMC's keys an operation refers to.
///
/// Each role is one ECC P-256 signing key. The CA key signs only certificates; the identity
/// key signs TLS handshakes and SPDM responses and is the key peers pin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyRole {
    /// The per-BMC self-signed CA ("self-provisioning").
    Ca,
    /// The identity leaf: TLS client and server, SPDM responder.
    Identity,
    /// The group root, on a BMC configured as group authority: signs members' CA
    /// certificates and the group list, nothing else.
    GroupRoot,
}

impl KeyRole {
    /// Every role, in creation order.
    pub const ALL: [KeyRole; 3] = [KeyRole::Ca, KeyRole::Identity, KeyRole::GroupRoot];

    /// A short stable name, used in file names and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Ca => "ca",
            KeyRole::Identity => "identity",
            KeyRole::GroupRoot => "group-root",
        }
    }
}

impl fmt::Display for KeyRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which backend holds the keys; logged at start-up and shown on D-Bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// Private keys in PKCS#8 files (development only).
    File,
    /// Private keys inside a TPM2; only wrapped blobs on disk.
    Tpm,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::File => "file",
            Backend::Tpm => "tpm",
        })
    }
}

/// A DER-encoded X.509 SubjectPublicKeyInfo.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(Vec<u8>);

impl PublicKey {
    /// Wraps SPKI DER bytes. The caller vouches that they are an SPKI.
    pub fn from_spki_der(der: Vec<u8>) -> Self {
        PublicKey(der)
    }

    /// The SPKI DER bytes.
    pub fn spki_der(&self) -> &[u8] {
        &self.0
    }

    /// The pin of this key: SHA-256 over the SPKI DER.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of_spki(&self.0)
    }

    /// The uncompressed EC point (`04 || X || Y`) inside the SPKI.
    ///
    /// # Errors
    /// [`Error::BadPublicKey`] if the SPKI is not a P-256 key.
    pub fn p256_point(&self) -> Result<Vec<u8>, Error> {
        use p256::pkcs8::DecodePublicKey;
        let key = p256::PublicKey::from_public_key_der(&self.0).map_err(|_| Error::BadPublicKey)?;
        Ok(p256::EncodedPoint::from(key).as_bytes().to_vec())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// SHA-256 of a DER SubjectPublicKeyInfo: the identity a peer is pinned to.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub [u8; SHA256_LEN]);

impl Fingerprint {
    /// Hashes SPKI DER bytes.
    pub fn of_spki(spki_der: &[u8]) -> Self {
        Fingerprint(Sha256::digest(spki_der).into())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex_encode(&self.0)
    }

    /// Parses 64 hex characters.
    ///
    /// # Errors
    /// [`Error::BadFingerprint`] for anything else.
    pub fn from_hex(s: &str) -> Result<Self, Error> {
        let bytes = hex_decode(s).ok_or(Error::BadFingerprint)?;
        let arr: [u8; SHA256_LEN] = bytes.try_into().map_err(|_| Error::BadFingerprint)?;
        Ok(Fingerprint(arr))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Fingerprint::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// A backend's own error, kept as the cause of an [`Error`].
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Errors of a key store and of the key types.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The key for this role does not exist (never generated, deleted, or lost with the TPM).
    #[error("no {0} key")]
    KeyMissing(KeyRole),
    /// The stored key exists but cannot be used: corrupt file or blob, or a TPM that no longer
    /// holds the parent it was wrapped under. The key is lost; waiting will not bring it back.
    #[error("the {role} key is unusable")]
    KeyUnusable {
        /// Which key.
        role: KeyRole,
        /// Why.
        #[source]
        source: BackendError,
    },
    /// A digest of the wrong length for the key was handed to `sign_digest` (32 bytes,
    /// SHA-256, for P-256 keys; 48 bytes, SHA-384, for P-384 keys).
    #[error("a digest of {0} bytes does not fit the key")]
    BadDigestLength(usize),
    /// Bytes that should be a P-256 SubjectPublicKeyInfo are not.
    #[error("not a P-256 public key")]
    BadPublicKey,
    /// A fingerprint string is not 64 hex characters.
    #[error("fingerprint must be 64 hex characters")]
    BadFingerprint,
    /// The signing operation itself failed, or a signature does not verify.
    #[error("signing with the {0} key failed")]
    Sign(KeyRole),
    /// The backend's files could not be read or written.
    #[error("key store storage at {path}")]
    Storage {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: BackendError,
    },
    /// The backend did not answer or failed (a TPM that is unreachable, hung or restarting).
    /// Keys are not lost: the same call may succeed later.
    #[error("the {backend} key store is unavailable")]
    Unavailable {
        /// Which backend.
        backend: Backend,
        /// Why.
        #[source]
        source: BackendError,
    },
}

impl Error {
    /// True when the key itself is gone or broken (as opposed to a backend that does not
    /// answer right now).
    pub fn key_lost(&self) -> bool {
        matches!(self, Error::KeyMissing(_) | Error::KeyUnusable { .. })
    }
}

/// A store of the BMC's signing keys. Every signature in the project goes through it.
///
/// Implementations are synchronous: rustls calls the signer synchronously inside the
/// handshake. A TPM backend serialises its calls internally (one ESAPI context, one owner)
/// and never waits on the async runtime.
pub trait KeyStore: Send + Sync + fmt::Debug {
    /// Which backend this is.
    fn backend(&self) -> Backend;

    /// Creates a new ECC P-256 key for `role`, replacing any existing one, and returns its
    /// public key. The replacement is atomic: a crash leaves the old key or the new one.
    ///
    /// # Errors
    /// Backend failures.
    fn generate(&self, role: KeyRole) -> Result<PublicKey, Error>;

    /// The public key of `role`.
    ///
    /// # Errors
    /// [`Error::KeyMissing`] when it was never generated; [`Error::KeyUnusable`] when it is
    /// stored but cannot be loaded.
    fn public_key(&self, role: KeyRole) -> Result<PublicKey, Error>;

    /// Signs a digest with `role`'s key; returns the raw signature `r || s` (big-endian
    /// halves), the form SPDM uses. Keys made by [`KeyStore::generate`] are P-256: they sign
    /// SHA-256 digests into 64 bytes, and TLS and X.509 callers convert that to DER with
    /// [`signature_to_der`]. A store holding a P-384 key (only `bmc-attestation respond
    /// --key`) signs SHA-384 digests into 96 bytes.
    ///
    /// # Errors
    /// [`Error::BadDigestLength`], [`Error::KeyMissing`], [`Error::KeyUnusable`],
    /// [`Error::Sign`].
    fn sign_digest(&self, role: KeyRole, digest: &[u8]) -> Result<Vec<u8>, Error>;

    /// Deletes `role`'s key. Deleting a missing key succeeds.
    ///
    /// # Errors
    /// Backend failures.
    fn delete(&self, role: KeyRole) -> Result<(), Error>;
}

/// Hashes `message` with SHA-256 and signs it with `role`'s key; returns raw `r || s`.
///
/// # Errors
/// As [`KeyStore::sign_digest`].
pub fn sign_message(store: &dyn KeyStore, role: KeyRole, message: &[u8]) -> Result<Vec<u8>, Error> {
    let digest = Sha256::digest(message);
    store.sign_digest(role, &digest)
}

/// Converts a raw P-256 `r || s` signature to the DER `Ecdsa-Sig-Value` used by X.509 and TLS.
///
/// # Errors
/// [`Error::Sign`] (attributed to `role`) when the input is not a valid signature.
pub fn signature_to_der(role: KeyRole, raw: &[u8]) -> Result<Vec<u8>, Error> {
    let sig = p256::ecdsa::Signature::from_slice(raw).map_err(|_| Error::Sign(role))?;
    Ok(sig.to_der().as_bytes().to_vec())
}

/// Verifies a raw P-256 `r || s` signature over a SHA-256 digest.
///
/// # Errors
/// [`Error::BadPublicKey`] for a bad key, [`Error::Sign`] (as "verification failed") for a
/// bad signature.
pub fn verify_digest(key: &PublicKey, digest: &[u8], raw_sig: &[u8]) -> Result<(), Error> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::pkcs8::DecodePublicKey;
    let vk = p256::ecdsa::VerifyingKey::from_public_key_der(key.spki_der())
        .map_err(|_| Error::BadPublicKey)?;
    let sig =
        p256::ecdsa::Signature::from_slice(raw_sig).map_err(|_| Error::Sign(KeyRole::Identity))?;
    vk.verify_prehash(digest, &sig)
        .map_err(|_| Error::Sign(KeyRole::Identity))
}

#[cfg(any(test, feature = "contract"))]
pub mod contract {
    //! One contract every [`KeyStore`] backend must meet; each backend's tests call it.
    use super::*;

    /// Runs the whole contract against a fresh, empty store.
    ///
    /// # Panics
    /// On the first rule the store breaks.
    #[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
    pub fn run(store: &dyn KeyStore) {
        for role in KeyRole::ALL {
            assert!(matches!(store.public_key(role), Err(Error::KeyMissing(r)) if r == role));
            assert!(matches!(
                store.sign_digest(role, &[0u8; 32]),
                Err(Error::KeyMissing(_))
            ));
        }
        let ca = store.generate(KeyRole::Ca).unwrap();
        let id = store.generate(KeyRole::Identity).unwrap();
        assert_ne!(ca, id, "roles must have distinct keys");
        assert_eq!(store.public_key(KeyRole::Identity).unwrap(), id);

        let digest = Sha256::digest(b"contract");
        let sig = store.sign_digest(KeyRole::Identity, &digest).unwrap();
        assert_eq!(sig.len(), P256_SIGNATURE_LEN);
        verify_digest(&id, &digest, &sig).unwrap();
        assert!(
            verify_digest(&ca, &digest, &sig).is_err(),
            "signed with the wrong role"
        );
        let mut flipped = sig.clone();
        flipped[10] ^= 1;
        assert!(verify_digest(&id, &digest, &flipped).is_err());

        assert!(matches!(
            store.sign_digest(KeyRole::Identity, &[0u8; 31]),
            Err(Error::BadDigestLength(31))
        ));

        let id2 = store.generate(KeyRole::Identity).unwrap();
        assert_ne!(id, id2, "generate must replace the key");
        assert_eq!(store.public_key(KeyRole::Identity).unwrap(), id2);
        assert_eq!(
            store.public_key(KeyRole::Ca).unwrap(),
            ca,
            "other roles untouched"
        );

        store.delete(KeyRole::Identity).unwrap();
        store.delete(KeyRole::Identity).unwrap();
        assert!(matches!(
            store.public_key(KeyRole::Identity),
            Err(Error::KeyMissing(_))
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_hex_round_trip() {
        let fp = Fingerprint::of_spki(b"abc");
        assert_eq!(Fingerprint::from_hex(&fp.to_hex()).unwrap(), fp);
        assert!(Fingerprint::from_hex("zz").is_err());
        assert!(Fingerprint::from_hex(&"0".repeat(63)).is_err());
    }
}
