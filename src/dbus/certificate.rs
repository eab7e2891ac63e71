//! `xyz.openbmc_project.Certs.Certificate`, read-only, built from one DER certificate: the
//! property values phosphor-certificate-manager shows (PEM, Subject, Issuer, KeyUsage,
//! validity in milliseconds), computed once per certificate. Methods that change a
//! certificate (Replace, Delete, ...) are separate interfaces on the same object.

use x509_parser::prelude::{FromDer, X509Certificate};

/// The property values of one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateProperties {
    /// `CertificateString`: the certificate in PEM.
    pub certificate_string: String,
    /// `KeyUsage`: Redfish names of its key usages and extended key usages.
    pub key_usage: Vec<String>,
    /// `Issuer`, e.g. `CN=root, O=example`.
    pub issuer: String,
    /// `Subject`.
    pub subject: String,
    /// `ValidNotAfter`, milliseconds since the epoch.
    pub valid_not_after: u64,
    /// `ValidNotBefore`, milliseconds since the epoch.
    pub valid_not_before: u64,
}

/// The bytes are not exactly one DER certificate.
#[derive(Debug, thiserror::Error)]
#[error("not a DER X.509 certificate")]
pub struct NotDerCertificate;

fn millis(secs: i64) -> u64 {
    u64::try_from(secs).unwrap_or(0).saturating_mul(1000)
}

impl CertificateProperties {
    /// The properties of the certificate `der`.
    ///
    /// # Errors
    /// [`NotDerCertificate`] when `der` is not one certificate (trailing bytes included).
    pub fn from_der(der: &[u8]) -> Result<Self, NotDerCertificate> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|_| NotDerCertificate)?;
        if !rest.is_empty() {
            return Err(NotDerCertificate);
        }
        let mut key_usage = Vec::new();
        if let Ok(Some(ku)) = cert.key_usage() {
            let ku = ku.value;
            for (set, name) in [
                (ku.digital_signature(), "DigitalSignature"),
                (ku.non_repudiation(), "NonRepudiation"),
                (ku.key_encipherment(), "KeyEncipherment"),
                (ku.data_encipherment(), "DataEncipherment"),
                (ku.key_agreement(), "KeyAgreement"),
                (ku.key_cert_sign(), "KeyCertSign"),
                (ku.crl_sign(), "CRLSigning"),
                (ku.encipher_only(), "EncipherOnly"),
                (ku.decipher_only(), "DecipherOnly"),
            ] {
                if set {
                    key_usage.push(name.to_owned());
                }
            }
        }
        if let Ok(Some(eku)) = cert.extended_key_usage() {
            let eku = eku.value;
            for (set, name) in [
                (eku.server_auth, "ServerAuthentication"),
                (eku.client_auth, "ClientAuthentication"),
                (eku.code_signing, "CodeSigning"),
                (eku.email_protection, "EmailProtection"),
                (eku.time_stamping, "Timestamping"),
                (eku.ocsp_signing, "OCSPSigning"),
            ] {
                if set {
                    key_usage.push(name.to_owned());
                }
            }
        }
        Ok(CertificateProperties {
            certificate_string: pem::encode_config(
                &pem::Pem::new("CERTIFICATE", der.to_vec()),
                pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
            ),
            key_usage,
            issuer: cert.issuer().to_string(),
            subject: cert.subject().to_string(),
            valid_not_after: millis(cert.validity().not_after.timestamp()),
            valid_not_before: millis(cert.validity().not_before.timestamp()),
        })
    }
}

/// One `Certs.Certificate` object's interface.
#[derive(Debug)]
pub struct Certificate {
    properties: CertificateProperties,
}

impl Certificate {
    /// Serves `properties`.
    pub fn new(properties: CertificateProperties) -> Self {
        Certificate { properties }
    }

    /// Shows `properties` from now on and emits PropertiesChanged for what differs.
    ///
    /// # Errors
    /// zbus errors emitting the signals.
    pub async fn update(
        &mut self,
        properties: CertificateProperties,
        emitter: &zbus::object_server::SignalEmitter<'_>,
    ) -> zbus::Result<()> {
        let old = std::mem::replace(&mut self.properties, properties);
        let new = &self.properties;
        if old.certificate_string != new.certificate_string {
            self.certificate_string_changed(emitter).await?;
        }
        if old.key_usage != new.key_usage {
            self.key_usage_changed(emitter).await?;
        }
        if old.issuer != new.issuer {
            self.issuer_changed(emitter).await?;
        }
        if old.subject != new.subject {
            self.subject_changed(emitter).await?;
        }
        if old.valid_not_after != new.valid_not_after {
            self.valid_not_after_changed(emitter).await?;
        }
        if old.valid_not_before != new.valid_not_before {
            self.valid_not_before_changed(emitter).await?;
        }
        Ok(())
    }
}

/// The YAML declares the properties writable (as sdbus++ generates them); what a write
/// would say about the certificate is never true, so every write is refused.
fn read_only() -> zbus::fdo::Error {
    zbus::fdo::Error::PropertyReadOnly(
        "the certificate changes through Replace, Install or Delete".into(),
    )
}

// The macro generates undocumented `*_changed` helpers.
#[allow(missing_docs)]
#[zbus::interface(name = "xyz.openbmc_project.Certs.Certificate")]
impl Certificate {
    /// The certificate in PEM.
    #[zbus(property(emits_changed_signal = "true"), name = "CertificateString")]
    async fn certificate_string(&self) -> String {
        self.properties.certificate_string.clone()
    }

    /// Refused: the certificate changes through its methods, never by writing a property.
    #[zbus(property, name = "CertificateString")]
    async fn set_certificate_string(&mut self, _value: String) -> zbus::fdo::Result<()> {
        Err(read_only())
    }

    /// Redfish names of the key usages.
    #[zbus(property(emits_changed_signal = "true"), name = "KeyUsage")]
    async fn key_usage(&self) -> Vec<String> {
        self.properties.key_usage.clone()
    }

    /// Refused: the certificate changes through its methods, never by writing a property.
    #[zbus(property, name = "KeyUsage")]
    async fn set_key_usage(&mut self, _value: Vec<String>) -> zbus::fdo::Result<()> {
        Err(read_only())
    }

    /// The issuer's name.
    #[zbus(property(emits_changed_signal = "true"), name = "Issuer")]
    async fn issuer(&self) -> String {
        self.properties.issuer.clone()
    }

    /// Refused: the certificate changes through its methods, never by writing a property.
    #[zbus(property, name = "Issuer")]
    async fn set_issuer(&mut self, _value: String) -> zbus::fdo::Result<()> {
        Err(read_only())
    }

    /// The subject's name.
    #[zbus(property(emits_changed_signal = "true"), name = "Subject")]
    async fn subject(&self) -> String {
        self.properties.subject.clone()
    }

    /// Refused: the certificate changes through its methods, never by writing a property.
    #[zbus(property, name = "Subject")]
    async fn set_subject(&mut self, _value: String) -> zbus::fdo::Result<()> {
        Err(read_only())
    }

    /// notAfter, milliseconds since the epoch.
    #[zbus(property(emits_changed_signal = "true"), name = "ValidNotAfter")]
    async fn valid_not_after(&self) -> u64 {
        self.properties.valid_not_after
    }

    /// Refused: the certificate changes through its methods, never by writing a property.
    #[zbus(property, name = "ValidNotAfter")]
    async fn set_valid_not_after(&mut self, _value: u64) -> zbus::fdo::Result<()> {
        Err(read_only())
    }

    /// notBefore, milliseconds since the epoch.
    #[zbus(property(emits_changed_signal = "true"), name = "ValidNotBefore")]
    async fn valid_not_before(&self) -> u64 {
        self.properties.valid_not_before
    }

    /// Refused: the certificate changes through its methods, never by writing a property.
    #[zbus(property, name = "ValidNotBefore")]
    async fn set_valid_not_before(&mut self, _value: u64) -> zbus::fdo::Result<()> {
        Err(read_only())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_of_a_ca_and_a_tls_leaf() {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "group root");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        ca.not_before = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        ca.not_after = time::OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let props = CertificateProperties::from_der(ca_cert.der()).unwrap();
        assert_eq!(props.subject, "CN=group root");
        assert_eq!(props.issuer, "CN=group root");
        assert_eq!(props.key_usage, ["KeyCertSign", "CRLSigning"]);
        assert_eq!(props.valid_not_before, 1_700_000_000_000);
        assert_eq!(props.valid_not_after, 1_900_000_000_000);
        assert_eq!(
            props.certificate_string.trim_end(),
            ca_cert.pem().trim_end()
        );

        let issuer = rcgen::Issuer::new(ca, &ca_key);
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::new(vec!["bmc-a".to_owned()]).unwrap();
        leaf.distinguished_name
            .push(rcgen::DnType::CommonName, "bmc-a");
        leaf.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let leaf_cert = leaf.signed_by(&leaf_key, &issuer).unwrap();
        let props = CertificateProperties::from_der(leaf_cert.der()).unwrap();
        assert_eq!(props.subject, "CN=bmc-a");
        assert_eq!(props.issuer, "CN=group root");
        assert_eq!(
            props.key_usage,
            [
                "DigitalSignature",
                "ServerAuthentication",
                "ClientAuthentication"
            ]
        );
    }

    #[test]
    fn garbage_and_trailing_bytes_are_refused() {
        assert!(CertificateProperties::from_der(b"not a certificate").is_err());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["x".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let mut der = cert.der().to_vec();
        der.push(0);
        assert!(CertificateProperties::from_der(&der).is_err());
    }
}
