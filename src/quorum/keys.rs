//! What an unlock gives local consumers: one key per configured purpose, derived from the
//! group secret with HKDF-SHA256, written as a root-only file (0600, in a 0700 directory,
//! atomically) under a tmpfs such as `/run`, and a hook that tells systemd (by default
//! `systemctl start bmc-trust-quorum-unlocked.target`, so a unit can order itself after
//! it). The secret itself is never written.

use std::path::{Path, PathBuf};

use bmc_pairing_core::quorum::vss::Secret;
use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::persist;

/// HKDF salt: names the scheme and its version, so keys of another use of the same secret
/// can never collide with these.
const SALT: &[u8] = b"bmc-pairing-manager trust quorum v1";

/// Bytes of every derived key.
pub const KEY_LEN: usize = 32;

/// The key for `purpose`: HKDF-SHA256(salt, secret) expanded with info = `purpose`.
pub fn derive(secret: &Secret, purpose: &str) -> Zeroizing<[u8; KEY_LEN]> {
    let ikm = secret.to_bytes();
    let hk = Hkdf::<Sha256>::new(Some(SALT), ikm.as_slice());
    let mut okm = Zeroizing::new([0u8; KEY_LEN]);
    // 32 bytes is far below HKDF-SHA256's 8160-byte limit: expand cannot fail.
    let _ = hk.expand(purpose.as_bytes(), okm.as_mut_slice());
    okm
}

/// The file of `purpose`'s key in `dir`.
pub fn key_path(dir: &Path, purpose: &str) -> PathBuf {
    dir.join(format!("{purpose}.key"))
}

/// Writes every purpose's key into `dir` (created 0700), each file 0600, atomically.
///
/// # Errors
/// The first file that could not be written.
pub fn deliver(secret: &Secret, dir: &Path, purposes: &[String]) -> Result<(), persist::Error> {
    persist::ensure_private_dir(dir)?;
    for purpose in purposes {
        let key = derive(secret, purpose);
        persist::write_atomic(&key_path(dir, purpose), key.as_slice())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bmc_pairing_core::quorum::vss::{self, Share};
    use std::os::unix::fs::PermissionsExt;

    fn secret() -> Secret {
        // A fixed secret, rebuilt from two shares of a known polynomial: f(x) = 7 + 3x.
        let s1 = Share::from_parts(1, &scalar(10)).unwrap();
        let s2 = Share::from_parts(2, &scalar(13)).unwrap();
        let commitment = commitment_of(7, 3);
        vss::combine(&[s1, s2], &commitment).unwrap()
    }

    fn scalar(v: u8) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[31] = v;
        b
    }

    fn commitment_of(a0: u64, a1: u64) -> vss::Commitment {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        use p256::{ProjectivePoint, Scalar};
        let mut bytes = Vec::new();
        for a in [a0, a1] {
            let p = (ProjectivePoint::GENERATOR * Scalar::from(a)).to_affine();
            bytes.extend_from_slice(p.to_encoded_point(true).as_bytes());
        }
        vss::Commitment::from_bytes(&bytes).unwrap()
    }

    #[test]
    fn keys_differ_by_purpose_are_stable_and_are_not_the_secret() {
        let s = secret();
        let a = derive(&s, "volume");
        assert_eq!(*a, *derive(&s, "volume"));
        assert_ne!(*a, *derive(&s, "backup"));
        assert_ne!(*a, *s.to_bytes());
    }

    #[test]
    fn delivered_files_are_root_only_and_hold_the_derived_keys() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("quorum-keys");
        let s = secret();
        deliver(&s, &out, &["volume".to_owned(), "backup".to_owned()]).unwrap();
        for purpose in ["volume", "backup"] {
            let path = key_path(&out, purpose);
            assert_eq!(std::fs::read(&path).unwrap(), derive(&s, purpose).to_vec());
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
