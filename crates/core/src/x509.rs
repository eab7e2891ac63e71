//! The few fields of an X.509 certificate that pairing and attestation act on.

use std::time::{Duration, SystemTime};

use x509_parser::prelude::{FromDer, X509Certificate};

use crate::keys::PublicKey;

/// Bytes that are not exactly one DER X.509 certificate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotACertificate {
    /// The parser refused it (its message, which is all x509-parser gives).
    #[error("malformed certificate: {0}")]
    Malformed(String),
    /// A certificate followed by more bytes.
    #[error("trailing bytes after the certificate")]
    TrailingBytes,
}

/// What an X.509 certificate says that we act on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSummary {
    /// The subject public key.
    pub public_key: PublicKey,
    /// Subject common name, if any.
    pub common_name: Option<String>,
    /// notBefore.
    pub not_before: SystemTime,
    /// notAfter.
    pub not_after: SystemTime,
    /// Subject, RFC 4514-ish, for display.
    pub subject: String,
}

/// Parses the fields of `der` that we act on.
///
/// # Errors
/// [`NotACertificate`] when `der` is not exactly one X.509 certificate.
pub fn summarize(der: &[u8]) -> Result<CertSummary, NotACertificate> {
    let (rest, cert) =
        X509Certificate::from_der(der).map_err(|e| NotACertificate::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(NotACertificate::TrailingBytes);
    }
    let to_system = |t: x509_parser::time::ASN1Time| {
        let secs = t.timestamp();
        if secs >= 0 {
            SystemTime::UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
        } else {
            SystemTime::UNIX_EPOCH
        }
    };
    Ok(CertSummary {
        public_key: PublicKey::from_spki_der(cert.public_key().raw.to_vec()),
        common_name: cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_owned),
        not_before: to_system(cert.validity().not_before),
        not_after: to_system(cert.validity().not_after),
        subject: cert.subject().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_and_trailing_bytes_are_refused() {
        assert!(matches!(
            summarize(b"\x30\x03abc"),
            Err(NotACertificate::Malformed(_))
        ));
        assert!(matches!(summarize(&[]), Err(NotACertificate::Malformed(_))));
    }
}
