//! The SPDM certificate chain format and the trust policy a requester applies to it.
//!
//! Chain format (per slot, SPDM 1.2): `Length u16 | Reserved u16 | RootHash[H] | DER certs`,
//! root (or first intermediate) first, leaf last; `RootHash = H(DER of the root)`.
//!
//! [`TrustPolicy`] is an explicit choice, never a silent accept: anchored to configured
//! roots, first contact (any self-consistent chain whose root is included; the caller pins
//! what is reported), or pinned to a leaf key fingerprint. Every policy checks each
//! signature, issuer/subject link, CA flag, key usage and validity period at a time the
//! caller supplies (this module reads no clock). Certificate signatures are checked by
//! x509-parser (ring); SPDM-specific DMTF OIDs and EKUs are tolerated, not required.

use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::prelude::{ASN1Time, FromDer, X509Certificate};

use super::codec::{InvalidMessage, Reader, len_u16, put_u16};
use super::crypto::{AsymAlgo, HashAlgo};
use crate::keys::Fingerprint;
use crate::pairing::TimeView;

/// Most certificates a chain may hold.
pub const MAX_CERTS: usize = 8;
/// Largest SPDM chain (the 1.2 Length field is a `u16`).
pub const MAX_CHAIN_LEN: usize = 0xFFFF;
/// Bytes before RootHash.
pub const CHAIN_HEADER_LEN: usize = 4;

/// Why a certificate chain was refused. `index` counts from the root (0) to the leaf.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// The SPDM chain framing is malformed.
    #[error("malformed spdm certificate chain: {0}")]
    Malformed(InvalidMessage),
    /// A certificate does not parse as X.509 DER.
    #[error("certificate {index} is not valid x.509 der")]
    BadCertificate {
        /// Position in the chain.
        index: usize,
    },
    /// More than [`MAX_CERTS`] certificates, or none.
    #[error("chain has an unacceptable number of certificates")]
    CertificateCount,
    /// RootHash does not name the root certificate or a trusted anchor.
    #[error("root hash does not match the root certificate")]
    RootHashMismatch,
    /// A certificate's issuer is not the previous certificate's subject.
    #[error("certificate {index} is not issued by its predecessor")]
    IssuerMismatch {
        /// Position in the chain.
        index: usize,
    },
    /// A certificate's signature does not verify under its issuer's key.
    #[error("certificate {index} signature does not verify")]
    BadSignature {
        /// Position in the chain.
        index: usize,
    },
    /// An issuing certificate is not a CA, lacks keyCertSign, or its path length is exceeded.
    #[error("certificate {index} may not issue certificates")]
    NotACa {
        /// Position in the chain.
        index: usize,
    },
    /// The leaf is a CA, or its key usage forbids signatures.
    #[error("leaf certificate is not a signing end entity")]
    BadLeaf,
    /// A certificate is outside its validity period at the verification time.
    #[error("certificate {index} is not valid at the verification time")]
    NotValidAt {
        /// Position in the chain.
        index: usize,
    },
    /// The leaf key is not of the negotiated BaseAsymAlgo.
    #[error("leaf key does not match the negotiated algorithm")]
    LeafKeyType,
    /// The chain does not lead to a configured anchor.
    #[error("chain does not lead to a trusted root")]
    UntrustedRoot,
    /// The root certificate is not in the chain, so it cannot be checked without an anchor.
    #[error("root certificate is not in the chain")]
    RootNotInChain,
    /// The leaf key is not the pinned one.
    #[error("leaf key is not the pinned key")]
    PinMismatch,
}

/// How a requester decides whether to trust a responder's chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustPolicy {
    /// The chain must lead to one of these root certificates (DER).
    Anchored(Vec<Vec<u8>>),
    /// First contact: any self-consistent chain that includes its self-signed root. The
    /// verdict reports the root hash and leaf fingerprint for the caller to pin; only use
    /// this when an operator named the peer.
    FirstContact,
    /// A self-consistent chain whose leaf key has this fingerprint (re-attesting a pin).
    Pinned(Fingerprint),
}

/// Which rule of the policy accepted the chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum TrustBasis {
    /// It leads to configured anchor number `anchor`.
    Anchored {
        /// Index into the policy's anchor list.
        anchor: usize,
    },
    /// Accepted on first contact; the caller must pin it.
    FirstContact,
    /// The leaf matched the pin.
    Pinned,
}

/// A parsed SPDM chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpdmChain {
    /// RootHash.
    pub root_hash: Vec<u8>,
    /// DER certificates, root (or first intermediate) first.
    pub certs: Vec<Vec<u8>>,
}

fn split_der(mut rest: &[u8]) -> Result<Vec<Vec<u8>>, ChainError> {
    let mut certs = Vec::new();
    while !rest.is_empty() {
        let index = certs.len();
        if index >= MAX_CERTS {
            return Err(ChainError::CertificateCount);
        }
        let (after, _) =
            X509Certificate::from_der(rest).map_err(|_| ChainError::BadCertificate { index })?;
        let used = rest.len().saturating_sub(after.len());
        let (der, tail) = rest
            .split_at_checked(used)
            .ok_or(ChainError::BadCertificate { index })?;
        certs.push(der.to_vec());
        rest = tail;
    }
    if certs.is_empty() {
        return Err(ChainError::CertificateCount);
    }
    Ok(certs)
}

impl SpdmChain {
    /// Builds a chain from DER certificates, root first, hashing the root with `hash`.
    ///
    /// # Errors
    /// [`ChainError`] when a certificate does not parse, the count is wrong, or the result
    /// would exceed [`MAX_CHAIN_LEN`].
    pub fn from_der_certs(certs: &[Vec<u8>], hash: HashAlgo) -> Result<Self, ChainError> {
        let joined: Vec<u8> = certs.concat();
        let parsed = split_der(&joined)?;
        if parsed.len() != certs.len() {
            return Err(ChainError::CertificateCount);
        }
        let root = parsed.first().ok_or(ChainError::CertificateCount)?;
        let chain = SpdmChain {
            root_hash: hash.digest(root),
            certs: parsed,
        };
        if chain.encoded_len() > MAX_CHAIN_LEN {
            return Err(ChainError::Malformed(InvalidMessage::TooLarge(
                "certificate chain",
            )));
        }
        Ok(chain)
    }

    fn encoded_len(&self) -> usize {
        CHAIN_HEADER_LEN + self.root_hash.len() + self.certs.iter().map(Vec::len).sum::<usize>()
    }

    /// The SPDM chain bytes (what GET_CERTIFICATE serves and DIGESTS hashes).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        put_u16(&mut out, len_u16(self.encoded_len()));
        put_u16(&mut out, 0);
        out.extend_from_slice(&self.root_hash);
        for c in &self.certs {
            out.extend_from_slice(c);
        }
        out
    }

    /// Parses SPDM chain bytes whose RootHash has `hash`'s size.
    ///
    /// # Errors
    /// [`ChainError::Malformed`], [`ChainError::BadCertificate`], [`ChainError::CertificateCount`].
    pub fn parse(bytes: &[u8], hash: HashAlgo) -> Result<Self, ChainError> {
        let mut r = Reader::new(bytes);
        let len = r.u16("chain Length").map_err(ChainError::Malformed)?;
        if usize::from(len) != bytes.len() {
            return Err(ChainError::Malformed(InvalidMessage::LengthMismatch(
                "chain Length",
            )));
        }
        r.reserved(2, "chain Reserved")
            .map_err(ChainError::Malformed)?;
        let root_hash = r
            .take(hash.size(), "RootHash")
            .map_err(ChainError::Malformed)?
            .to_vec();
        let certs = split_der(r.rest())?;
        Ok(SpdmChain { root_hash, certs })
    }
}

/// A chain the policy accepted, and what the caller needs from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedChain {
    /// DER certificates, root (or first intermediate) first.
    pub certs: Vec<Vec<u8>>,
    /// RootHash as sent.
    pub root_hash: Vec<u8>,
    /// The leaf's SubjectPublicKeyInfo DER.
    pub leaf_spki: Vec<u8>,
    /// SHA-256 of the leaf SPKI: the pin.
    pub leaf_fingerprint: Fingerprint,
    /// Which rule accepted it.
    pub basis: TrustBasis,
}

/// When a chain's validity is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainTime {
    /// At this instant.
    At(SystemTime),
    /// By the pairing core's time rule ([`TimeView::check_instant`]): at the clock when it
    /// is trusted, otherwise at the earliest instant of the plausible interval at which the
    /// chain is valid.
    View(TimeView),
}

impl From<SystemTime> for ChainTime {
    fn from(t: SystemTime) -> Self {
        ChainTime::At(t)
    }
}

impl From<TimeView> for ChainTime {
    fn from(v: TimeView) -> Self {
        ChainTime::View(v)
    }
}

fn asn1_time(t: SystemTime) -> Option<ASN1Time> {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).ok()?,
        Err(_) => 0,
    };
    ASN1Time::from_timestamp(secs).ok()
}

fn parse_at(der: &[u8], index: usize) -> Result<X509Certificate<'_>, ChainError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(ChainError::BadCertificate { index }),
    }
}

/// Checks that `issuer` may sign `below` more CA certificates under it.
fn check_issuer(
    issuer: &X509Certificate<'_>,
    index: usize,
    below: usize,
) -> Result<(), ChainError> {
    let bc = issuer
        .basic_constraints()
        .map_err(|_| ChainError::NotACa { index })?
        .ok_or(ChainError::NotACa { index })?;
    if !bc.value.ca {
        return Err(ChainError::NotACa { index });
    }
    if let Some(limit) = bc.value.path_len_constraint
        && usize::try_from(limit).is_ok_and(|l| below > l)
    {
        return Err(ChainError::NotACa { index });
    }
    match issuer.key_usage() {
        Ok(Some(ku)) if !ku.value.key_cert_sign() => Err(ChainError::NotACa { index }),
        Ok(_) => Ok(()),
        Err(_) => Err(ChainError::NotACa { index }),
    }
}

/// Verifies SPDM chain bytes under `policy` at time `at`.
///
/// # Errors
/// [`ChainError`] naming the first failed check.
pub fn verify_chain(
    bytes: &[u8],
    hash: HashAlgo,
    asym: AsymAlgo,
    policy: &TrustPolicy,
    at: impl Into<ChainTime>,
) -> Result<VerifiedChain, ChainError> {
    let chain = SpdmChain::parse(bytes, hash)?;
    let parsed = chain
        .certs
        .iter()
        .enumerate()
        .map(|(i, der)| parse_at(der, i))
        .collect::<Result<Vec<_>, _>>()?;
    let time = match at.into() {
        ChainTime::At(t) => asn1_time(t),
        ChainTime::View(view) => {
            let latest = parsed
                .iter()
                .map(|c| u64::try_from(c.validity().not_before.timestamp()).unwrap_or(0))
                .max()
                .unwrap_or(0);
            i64::try_from(view.check_instant(latest))
                .ok()
                .and_then(|secs| ASN1Time::from_timestamp(secs).ok())
        }
    }
    .ok_or(ChainError::NotValidAt { index: 0 })?;
    let n = parsed.len();

    for (i, cert) in parsed.iter().enumerate() {
        if !cert.validity().is_valid_at(time) {
            return Err(ChainError::NotValidAt { index: i });
        }
    }
    for (i, pair) in parsed.windows(2).enumerate() {
        let [issuer, subject] = pair else { continue };
        let index = i + 1;
        if subject.issuer() != issuer.subject() {
            return Err(ChainError::IssuerMismatch { index });
        }
        check_issuer(issuer, i, n.saturating_sub(i + 2))?;
        subject
            .verify_signature(Some(issuer.public_key()))
            .map_err(|_| ChainError::BadSignature { index })?;
    }

    let first = parsed.first().ok_or(ChainError::CertificateCount)?;
    let first_der = chain.certs.first().ok_or(ChainError::CertificateCount)?;
    let root_in_chain = hash.digest(first_der) == chain.root_hash;
    if root_in_chain {
        if first.issuer() != first.subject() {
            return Err(ChainError::IssuerMismatch { index: 0 });
        }
        check_issuer(first, 0, n.saturating_sub(2))?;
        first
            .verify_signature(None)
            .map_err(|_| ChainError::BadSignature { index: 0 })?;
    }

    let leaf = parsed.last().ok_or(ChainError::CertificateCount)?;
    if (n > 1 || !root_in_chain) && leaf.is_ca() {
        return Err(ChainError::BadLeaf);
    }
    match leaf.key_usage() {
        Ok(Some(ku)) if !ku.value.digital_signature() => return Err(ChainError::BadLeaf),
        Ok(_) => {}
        Err(_) => return Err(ChainError::BadLeaf),
    }
    let leaf_spki = leaf.public_key().raw.to_vec();
    if !asym.matches_key(&leaf_spki) {
        return Err(ChainError::LeafKeyType);
    }
    let leaf_fingerprint = Fingerprint::of_spki(&leaf_spki);

    let basis = match policy {
        TrustPolicy::Anchored(anchors) => {
            let anchor = anchors
                .iter()
                .position(|a| hash.digest(a) == chain.root_hash)
                .ok_or(ChainError::UntrustedRoot)?;
            let anchor_der = anchors.get(anchor).ok_or(ChainError::UntrustedRoot)?;
            if root_in_chain {
                if anchor_der != first_der {
                    return Err(ChainError::UntrustedRoot);
                }
            } else {
                let root = parse_at(anchor_der, 0).map_err(|_| ChainError::UntrustedRoot)?;
                if !root.validity().is_valid_at(time) {
                    return Err(ChainError::NotValidAt { index: 0 });
                }
                if first.issuer() != root.subject() {
                    return Err(ChainError::IssuerMismatch { index: 0 });
                }
                check_issuer(&root, 0, n.saturating_sub(1))?;
                first
                    .verify_signature(Some(root.public_key()))
                    .map_err(|_| ChainError::BadSignature { index: 0 })?;
            }
            TrustBasis::Anchored { anchor }
        }
        TrustPolicy::FirstContact => {
            if !root_in_chain {
                return Err(ChainError::RootNotInChain);
            }
            TrustBasis::FirstContact
        }
        TrustPolicy::Pinned(pin) => {
            if !root_in_chain {
                return Err(ChainError::RootNotInChain);
            }
            if *pin != leaf_fingerprint {
                return Err(ChainError::PinMismatch);
            }
            TrustBasis::Pinned
        }
    };

    Ok(VerifiedChain {
        certs: chain.certs,
        root_hash: chain.root_hash,
        leaf_spki,
        leaf_fingerprint,
        basis,
    })
}
