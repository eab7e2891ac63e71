//! `GenerateCSR` requests (`xyz.openbmc_project.Certs.CSR.Create`): the upstream arguments,
//! checked before any key is touched. The key is never generated here: the request is for
//! the TPM-held per-BMC CA key, an EC P-256 key, so any other algorithm, curve or size is
//! refused.

use rcgen::{DistinguishedName, DnType};

use super::Error;

/// Longest string argument accepted (bytes).
pub const MAX_FIELD_LEN: usize = 256;
/// Most entries accepted in `AlternativeNames` or `KeyUsage`.
pub const MAX_LIST_LEN: usize = 16;

/// The Redfish key usage names `KeyUsage` may hold (Certs YAML).
pub const KEY_USAGE_NAMES: [&str; 15] = [
    "ClientAuthentication",
    "CodeSigning",
    "CRLSigning",
    "DataEncipherment",
    "DecipherOnly",
    "DigitalSignature",
    "EmailProtection",
    "EncipherOnly",
    "KeyAgreement",
    "KeyCertSign",
    "KeyEncipherment",
    "NonRepudiation",
    "OCSPSigning",
    "ServerAuthentication",
    "Timestamping",
];

/// The arguments of `GenerateCSR`, in the upstream order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct CsrRequest {
    pub alternative_names: Vec<String>,
    pub challenge_password: String,
    pub city: String,
    pub common_name: String,
    pub contact_person: String,
    pub country: String,
    pub email: String,
    pub given_name: String,
    pub initials: String,
    pub key_bit_length: i64,
    pub key_curve_id: String,
    pub key_pair_algorithm: String,
    pub key_usage: Vec<String>,
    pub organization: String,
    pub organizational_unit: String,
    pub state: String,
    pub surname: String,
    pub unstructured_name: String,
}

fn refuse(why: impl Into<String>) -> Error {
    Error::Certificate(why.into())
}

// X.520 / PKCS#9 attribute types without a name in rcgen.
const OID_SURNAME: [u64; 4] = [2, 5, 4, 4];
const OID_NAME: [u64; 4] = [2, 5, 4, 41];
const OID_GIVEN_NAME: [u64; 4] = [2, 5, 4, 42];
const OID_INITIALS: [u64; 4] = [2, 5, 4, 43];
const OID_EMAIL: [u64; 7] = [1, 2, 840, 113_549, 1, 9, 1];
const OID_UNSTRUCTURED_NAME: [u64; 7] = [1, 2, 840, 113_549, 1, 9, 2];

impl CsrRequest {
    /// Checks every argument; nothing is signed or written before this passes.
    ///
    /// # Errors
    /// [`Error::Certificate`] naming the first argument refused.
    pub fn check(&self) -> Result<(), Error> {
        let algorithm = self.key_pair_algorithm.trim();
        if !(algorithm.is_empty() || algorithm.eq_ignore_ascii_case("EC")) {
            return Err(refuse(format!(
                "KeyPairAlgorithm {algorithm:?}: only EC (P-256, the TPM-held key) is supported"
            )));
        }
        let curve = self.key_curve_id.trim();
        if !(curve.is_empty()
            || ["prime256v1", "secp256r1", "P-256"]
                .iter()
                .any(|c| c.eq_ignore_ascii_case(curve)))
        {
            return Err(refuse(format!(
                "KeyCurveId {curve:?}: only prime256v1 (P-256, the TPM-held key) is supported"
            )));
        }
        if !matches!(self.key_bit_length, 0 | 256) {
            return Err(refuse(format!(
                "KeyBitLength {}: the key is EC P-256 (256 bits)",
                self.key_bit_length
            )));
        }
        for (name, value) in self.strings() {
            if value.len() > MAX_FIELD_LEN {
                return Err(refuse(format!(
                    "{name} is longer than {MAX_FIELD_LEN} bytes"
                )));
            }
            if value.chars().any(char::is_control) {
                return Err(refuse(format!("{name} holds control characters")));
            }
        }
        if !self.challenge_password.is_empty() {
            return Err(refuse("ChallengePassword is not supported"));
        }
        if !(self.country.is_empty()
            || (self.country.len() == 2 && self.country.bytes().all(|b| b.is_ascii_alphabetic())))
        {
            return Err(refuse("Country must be a two-letter code"));
        }
        if self.alternative_names.len() > MAX_LIST_LEN || self.key_usage.len() > MAX_LIST_LEN {
            return Err(refuse(format!(
                "AlternativeNames and KeyUsage hold at most {MAX_LIST_LEN} entries"
            )));
        }
        for name in &self.alternative_names {
            if name.len() > MAX_FIELD_LEN {
                return Err(refuse(format!(
                    "an alternative name is longer than {MAX_FIELD_LEN} bytes"
                )));
            }
            rcgen::string::Ia5String::try_from(name.as_str())
                .map_err(|_| refuse(format!("alternative name {name:?} is not a DNS name")))?;
        }
        for usage in &self.key_usage {
            if !KEY_USAGE_NAMES.contains(&usage.as_str()) {
                return Err(refuse(format!(
                    "KeyUsage {usage:?} is not a Redfish key usage"
                )));
            }
        }
        Ok(())
    }

    fn strings(&self) -> [(&'static str, &str); 14] {
        [
            ("City", &self.city),
            ("CommonName", &self.common_name),
            ("ContactPerson", &self.contact_person),
            ("Country", &self.country),
            ("Email", &self.email),
            ("GivenName", &self.given_name),
            ("Initials", &self.initials),
            ("KeyCurveId", &self.key_curve_id),
            ("KeyPairAlgorithm", &self.key_pair_algorithm),
            ("Organization", &self.organization),
            ("OrganizationalUnit", &self.organizational_unit),
            ("State", &self.state),
            ("Surname", &self.surname),
            ("UnstructuredName", &self.unstructured_name),
        ]
        .map(|(n, v)| (n, v.as_str()))
    }

    /// The subject the request names, or `None` when it names nothing (the current CA
    /// subject is kept then). Call [`CsrRequest::check`] first.
    pub fn subject(&self) -> Option<DistinguishedName> {
        let mut dn = DistinguishedName::new();
        let custom = |oid: &[u64]| DnType::CustomDnType(oid.to_vec());
        for (kind, value) in [
            (DnType::CountryName, &self.country),
            (DnType::StateOrProvinceName, &self.state),
            (DnType::LocalityName, &self.city),
            (DnType::OrganizationName, &self.organization),
            (DnType::OrganizationalUnitName, &self.organizational_unit),
            (DnType::CommonName, &self.common_name),
            (custom(&OID_SURNAME), &self.surname),
            (custom(&OID_GIVEN_NAME), &self.given_name),
            (custom(&OID_INITIALS), &self.initials),
            (custom(&OID_NAME), &self.contact_person),
            (custom(&OID_EMAIL), &self.email),
            (custom(&OID_UNSTRUCTURED_NAME), &self.unstructured_name),
        ] {
            if !value.is_empty() {
                dn.push(kind, value.as_str());
            }
        }
        (dn.iter().next().is_some()).then_some(dn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> CsrRequest {
        CsrRequest {
            common_name: "bmc-a pairing CA".into(),
            country: "US".into(),
            key_pair_algorithm: "EC".into(),
            key_curve_id: "prime256v1".into(),
            alternative_names: vec!["bmc-a.example".into()],
            key_usage: vec!["KeyCertSign".into()],
            ..CsrRequest::default()
        }
    }

    #[test]
    fn ec_p256_and_defaults_pass() {
        ok().check().unwrap();
        CsrRequest::default().check().unwrap();
        assert!(CsrRequest::default().subject().is_none());
        assert!(ok().subject().is_some());
    }

    #[test]
    fn everything_but_ec_p256_and_sane_sizes_is_refused() {
        let bad = [
            CsrRequest {
                key_pair_algorithm: "RSA".into(),
                ..ok()
            },
            CsrRequest {
                key_curve_id: "secp384r1".into(),
                ..ok()
            },
            CsrRequest {
                key_bit_length: 2048,
                ..ok()
            },
            CsrRequest {
                common_name: "x".repeat(MAX_FIELD_LEN + 1),
                ..ok()
            },
            CsrRequest {
                alternative_names: vec!["a".into(); MAX_LIST_LEN + 1],
                ..ok()
            },
            CsrRequest {
                alternative_names: vec!["é".into()],
                ..ok()
            },
            CsrRequest {
                key_usage: vec!["Everything".into()],
                ..ok()
            },
            CsrRequest {
                country: "USA".into(),
                ..ok()
            },
            CsrRequest {
                challenge_password: "secret".into(),
                ..ok()
            },
            CsrRequest {
                city: "a\nb".into(),
                ..ok()
            },
        ];
        for request in bad {
            assert!(request.check().is_err(), "{request:?} was accepted");
        }
    }
}
