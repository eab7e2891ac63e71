//! The negotiated algorithms and the SPDM 1.2 signature rule, on top of RustCrypto.
//!
//! SPDM ≥ 1.2 signs `combined_spdm_prefix || H(transcript)`, where the 100-byte prefix is
//! `"dmtf-spdm-v1.2.*"` four times, zero padding, and a context string; ECDSA then hashes
//! that message again with the negotiated hash. Signatures are raw big-endian `r || s`.
//! Signing goes through [`crate::keys::KeyStore`]; nothing here holds a private key.

use p256::pkcs8::DecodePublicKey;
use sha2::{Digest as _, Sha256, Sha384};

use super::msgs::algorithms::{
    ASYM_ECDSA_P256, ASYM_ECDSA_P384, HASH_SHA256, HASH_SHA384, MEAS_HASH_SHA256, MEAS_HASH_SHA384,
};

/// Signing context of CHALLENGE_AUTH.
pub const CONTEXT_CHALLENGE_AUTH: &str = "responder-challenge_auth signing";
/// Signing context of MEASUREMENTS.
pub const CONTEXT_MEASUREMENTS: &str = "responder-measurements signing";
/// Length of `combined_spdm_prefix`.
pub const PREFIX_LEN: usize = 100;

/// A negotiated BaseHashAlgo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum HashAlgo {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
}

impl HashAlgo {
    /// The single-bit selection in ALGORITHMS, if it is one we implement.
    pub fn from_base_hash(bit: u32) -> Option<Self> {
        match bit {
            HASH_SHA256 => Some(HashAlgo::Sha256),
            HASH_SHA384 => Some(HashAlgo::Sha384),
            _ => None,
        }
    }

    /// The BaseHashAlgo bit.
    pub fn base_hash_bit(self) -> u32 {
        match self {
            HashAlgo::Sha256 => HASH_SHA256,
            HashAlgo::Sha384 => HASH_SHA384,
        }
    }

    /// The MeasurementHashAlgo bit of the same function.
    pub fn measurement_hash_bit(self) -> u32 {
        match self {
            HashAlgo::Sha256 => MEAS_HASH_SHA256,
            HashAlgo::Sha384 => MEAS_HASH_SHA384,
        }
    }

    /// Digest length in bytes.
    pub fn size(self) -> usize {
        match self {
            HashAlgo::Sha256 => 32,
            HashAlgo::Sha384 => 48,
        }
    }

    /// Hashes `data`.
    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        match self {
            HashAlgo::Sha256 => Sha256::digest(data).to_vec(),
            HashAlgo::Sha384 => Sha384::digest(data).to_vec(),
        }
    }

    /// A fresh incremental hasher.
    pub fn hasher(self) -> Hasher {
        match self {
            HashAlgo::Sha256 => Hasher::Sha256(Sha256::new()),
            HashAlgo::Sha384 => Hasher::Sha384(Sha384::new()),
        }
    }
}

/// An incremental hash of the negotiated algorithm; cloned to read a transcript's hash
/// while it keeps growing.
#[derive(Clone, Debug)]
pub enum Hasher {
    /// SHA-256 state.
    Sha256(Sha256),
    /// SHA-384 state.
    Sha384(Sha384),
}

impl Hasher {
    /// Feeds `data`.
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha384(h) => h.update(data),
        }
    }

    /// The digest so far, leaving `self` usable.
    pub fn peek(&self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.clone().finalize().to_vec(),
            Hasher::Sha384(h) => h.clone().finalize().to_vec(),
        }
    }
}

/// A negotiated BaseAsymAlgo.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum AsymAlgo {
    /// ECDSA on P-256.
    EcdsaP256,
    /// ECDSA on P-384 (verification only).
    EcdsaP384,
}

impl AsymAlgo {
    /// The single-bit selection in ALGORITHMS, if it is one we implement.
    pub fn from_base_asym(bit: u32) -> Option<Self> {
        match bit {
            ASYM_ECDSA_P256 => Some(AsymAlgo::EcdsaP256),
            ASYM_ECDSA_P384 => Some(AsymAlgo::EcdsaP384),
            _ => None,
        }
    }

    /// The BaseAsymAlgo bit.
    pub fn base_asym_bit(self) -> u32 {
        match self {
            AsymAlgo::EcdsaP256 => ASYM_ECDSA_P256,
            AsymAlgo::EcdsaP384 => ASYM_ECDSA_P384,
        }
    }

    /// Raw signature length.
    pub fn signature_len(self) -> usize {
        match self {
            AsymAlgo::EcdsaP256 => 64,
            AsymAlgo::EcdsaP384 => 96,
        }
    }

    /// True when `spki_der` is a key of this algorithm.
    pub fn matches_key(self, spki_der: &[u8]) -> bool {
        match self {
            AsymAlgo::EcdsaP256 => p256::PublicKey::from_public_key_der(spki_der).is_ok(),
            AsymAlgo::EcdsaP384 => p384::PublicKey::from_public_key_der(spki_der).is_ok(),
        }
    }
}

/// `combined_spdm_prefix || transcript_hash`: the message SPDM ≥ 1.2 signs.
pub fn signing_input(version: u8, context: &str, transcript_hash: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(PREFIX_LEN + transcript_hash.len());
    let tag = format!("dmtf-spdm-v{}.{}.*", version >> 4, version & 0x0f);
    for _ in 0..4 {
        out.extend_from_slice(tag.as_bytes());
    }
    let pad = 36usize.saturating_sub(context.len());
    out.resize(out.len() + pad, 0);
    out.extend_from_slice(context.as_bytes());
    out.extend_from_slice(transcript_hash);
    out
}

/// Why a signature was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The public key does not parse as a key of the negotiated algorithm.
    #[error("public key does not match the negotiated algorithm")]
    BadKey,
    /// The signature is malformed or does not verify.
    #[error("signature does not verify")]
    Invalid,
}

/// Verifies a raw `r || s` ECDSA signature over `message` (hashed with `hash`) by the key in
/// `spki_der`.
///
/// # Errors
/// [`SignatureError`].
pub fn verify_signature(
    asym: AsymAlgo,
    hash: HashAlgo,
    spki_der: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), SignatureError> {
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    let prehash = hash.digest(message);
    match asym {
        AsymAlgo::EcdsaP256 => {
            let vk = p256::ecdsa::VerifyingKey::from_public_key_der(spki_der)
                .map_err(|_| SignatureError::BadKey)?;
            let sig = p256::ecdsa::Signature::from_slice(signature)
                .map_err(|_| SignatureError::Invalid)?;
            vk.verify_prehash(&prehash, &sig)
                .map_err(|_| SignatureError::Invalid)
        }
        AsymAlgo::EcdsaP384 => {
            let vk = p384::ecdsa::VerifyingKey::from_public_key_der(spki_der)
                .map_err(|_| SignatureError::BadKey)?;
            let sig = p384::ecdsa::Signature::from_slice(signature)
                .map_err(|_| SignatureError::Invalid)?;
            vk.verify_prehash(&prehash, &sig)
                .map_err(|_| SignatureError::Invalid)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_layout_matches_dsp0274() {
        let m = signing_input(0x12, CONTEXT_CHALLENGE_AUTH, &[0xaa; 32]);
        assert_eq!(m.len(), PREFIX_LEN + 32);
        assert_eq!(&m[..16], b"dmtf-spdm-v1.2.*");
        assert_eq!(&m[48..64], b"dmtf-spdm-v1.2.*");
        // 36 - 32 = 4 zero bytes, then the 32-byte context.
        assert_eq!(&m[64..68], &[0, 0, 0, 0]);
        assert_eq!(&m[68..100], CONTEXT_CHALLENGE_AUTH.as_bytes());
        let m = signing_input(0x12, CONTEXT_MEASUREMENTS, &[]);
        assert_eq!(&m[64..70], &[0; 6]);
        assert_eq!(&m[70..100], CONTEXT_MEASUREMENTS.as_bytes());
    }
}
