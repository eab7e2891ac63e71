//! The group root of a BMC configured as group authority (issue 17): its own key
//! ([`KeyRole::GroupRoot`], in the TPM when the identity is), never the authority's pairing
//! key; its self-signed certificate in `<cert dir>/group-root.der`; and what it signs:
//! members' CA certificates (from their CSRs) and the group list.
//!
//! What may be signed is the core's decision ([`bmc_pairing_core::pairing::Pairing::may_sign`]);
//! this module only issues.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use bmc_pairing_core::pairing::group::GroupList;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyUsagePurpose,
    SubjectPublicKeyInfo,
};
use time::OffsetDateTime;

use super::cert::{CA_LIFETIME, NOT_BEFORE_MARGIN, RcgenSigner, copy_name, random_serial};
use super::{Error, KeyRole, KeyStore, summarize};
use crate::persist;

/// Where the group root certificate lives.
pub fn root_path(cert_dir: &Path) -> PathBuf {
    cert_dir.join("group-root.der")
}

fn cert_err(e: impl std::fmt::Display) -> Error {
    Error::Certificate(e.to_string())
}

/// Loads the group root certificate, or creates the key (if absent) and a self-signed root
/// for it. A certificate on disk for another key than the store's is replaced. Blocking.
///
/// # Errors
/// Key-store, certificate and file errors.
pub fn ensure_root(
    store: &dyn KeyStore,
    cert_dir: &Path,
    bmc_name: &str,
    now: SystemTime,
) -> Result<Vec<u8>, Error> {
    let path = root_path(cert_dir);
    let key = match store.public_key(KeyRole::GroupRoot) {
        Ok(key) => key,
        Err(bmc_pairing_core::keys::Error::KeyMissing(_)) => store.generate(KeyRole::GroupRoot)?,
        Err(e) => return Err(e.into()),
    };
    let existing = persist::read_optional(&path).map_err(|source| Error::Persist {
        path: path.clone(),
        source,
    })?;
    if let Some(der) = existing
        && summarize(&der).is_ok_and(|s| s.public_key == key)
    {
        return Ok(der);
    }
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "bmc-pairing-manager");
    dn.push(DnType::CommonName, format!("{bmc_name} group root"));
    params.distinguished_name = dn;
    // Root → member CA (path length 0) → member identity.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = OffsetDateTime::from(now - NOT_BEFORE_MARGIN);
    params.not_after = OffsetDateTime::from(now + CA_LIFETIME);
    params.serial_number = Some(random_serial());
    let signer = RcgenSigner::new(store, KeyRole::GroupRoot)?;
    let der = params
        .self_signed(&signer)
        .map_err(cert_err)?
        .der()
        .to_vec();
    persist::write_atomic(&path, &der).map_err(|source| Error::Persist { path, source })?;
    tracing::info!(fingerprint = %key.fingerprint(), "group root created");
    Ok(der)
}

/// Issues a member's CA certificate for the key of `csr_der` (whose signature the caller's
/// core check verified), under the group root `root_der`: the CSR's subject, and our
/// profile whatever the CSR asks (CA with path length 0, keyCertSign, cRLSign,
/// digitalSignature; no other extension). Blocking.
///
/// # Errors
/// [`Error::Certificate`] for a CSR rcgen cannot read; key-store errors.
pub fn sign_member_ca(
    store: &dyn KeyStore,
    root_der: &[u8],
    csr_der: &[u8],
    now: SystemTime,
) -> Result<Vec<u8>, Error> {
    // Only the subject and the key are taken from the request (read with x509-parser, as
    // the core's check did; rcgen's own CSR reader would also parse extensions we ignore).
    use x509_parser::prelude::{FromDer, X509CertificationRequest};
    let (_, csr) = X509CertificationRequest::from_der(csr_der).map_err(cert_err)?;
    let info = &csr.certification_request_info;
    let public_key = SubjectPublicKeyInfo::from_der(info.subject_pki.raw).map_err(cert_err)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = copy_name(&info.subject)?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = OffsetDateTime::from(now - NOT_BEFORE_MARGIN);
    params.not_after = OffsetDateTime::from(now + CA_LIFETIME);
    params.serial_number = Some(random_serial());
    params.use_authority_key_identifier_extension = true;
    let signer = RcgenSigner::new(store, KeyRole::GroupRoot)?;
    let issuer = Issuer::from_ca_cert_der(&root_der.to_vec().into(), signer).map_err(cert_err)?;
    Ok(params
        .signed_by(&public_key, &issuer)
        .map_err(cert_err)?
        .der()
        .to_vec())
}

/// The group list signed with the group root key, as sent. Blocking.
///
/// # Errors
/// Key-store errors, or a list too large for its layout.
pub fn sign_list(store: &dyn KeyStore, list: &GroupList) -> Result<Vec<u8>, Error> {
    let digest = list.digest().map_err(cert_err)?;
    let raw = store.sign_digest(KeyRole::GroupRoot, &digest)?;
    list.signed(&raw).map_err(cert_err)
}

/// Checks what a group authority answered: `root` a self-signed CA certificate, and
/// `certificate` a CA certificate it issued (issuer name and signature).
///
/// # Errors
/// [`Error::Certificate`] naming the failed check.
pub fn check_issued(certificate: &[u8], root: &[u8]) -> Result<(), Error> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let parse = |der| {
        X509Certificate::from_der(der)
            .ok()
            .filter(|(rest, _)| rest.is_empty())
            .map(|(_, c)| c)
    };
    let root = parse(root).ok_or_else(|| cert_err("the group root is not one certificate"))?;
    let cert =
        parse(certificate).ok_or_else(|| cert_err("the certificate is not one certificate"))?;
    if !root.is_ca() || root.issuer() != root.subject() || root.verify_signature(None).is_err() {
        return Err(cert_err(
            "the group root is not a self-signed CA certificate",
        ));
    }
    if !cert.is_ca()
        || cert.issuer() != root.subject()
        || cert.verify_signature(Some(root.public_key())).is_err()
    {
        return Err(cert_err("the certificate was not issued by the group root"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::file::FileKeyStore;
    use std::time::Duration;

    #[test]
    fn the_root_is_a_key_of_its_own_and_signs_only_what_it_issued() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path().join("keys"));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let root = ensure_root(&store, dir.path(), "auth", now).unwrap();
        assert_eq!(ensure_root(&store, dir.path(), "auth", now).unwrap(), root);
        let root_key = summarize(&root).unwrap().public_key;
        assert_eq!(root_key, store.public_key(KeyRole::GroupRoot).unwrap());
        assert!(store.public_key(KeyRole::Ca).is_err(), "no other key made");

        let member = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(vec!["ignored.example".into()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "bmc-b pairing CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = params.serialize_request(&member).unwrap();
        let cert = sign_member_ca(&store, &root, csr.der(), now).unwrap();
        check_issued(&cert, &root).unwrap();
        let (_, parsed) =
            <x509_parser::prelude::X509Certificate as x509_parser::prelude::FromDer<_>>::from_der(
                &cert,
            )
            .unwrap();
        assert_eq!(
            parsed.public_key().raw,
            rcgen::PublicKeyData::subject_public_key_info(&member).as_slice()
        );
        // Our profile, not the request's: path length 0, no SAN.
        let bc = parsed.basic_constraints().unwrap().unwrap().value;
        assert_eq!((bc.ca, bc.path_len_constraint), (true, Some(0)));
        assert!(parsed.subject_alternative_name().unwrap().is_none());
        assert!(
            parsed
                .subject()
                .iter_common_name()
                .any(|cn| cn.as_str() == Ok("bmc-b pairing CA"))
        );

        // Another root, a swapped pair, garbage: refused.
        let other_dir = tempfile::tempdir().unwrap();
        let other_store = FileKeyStore::new(other_dir.path().join("keys"));
        let other = ensure_root(&other_store, other_dir.path(), "auth", now).unwrap();
        assert!(check_issued(&cert, &other).is_err());
        assert!(check_issued(&root, &cert).is_err());
        assert!(check_issued(b"x", &root).is_err());
        // A certificate on disk for another key is replaced.
        std::fs::write(root_path(dir.path()), &other).unwrap();
        assert_ne!(ensure_root(&store, dir.path(), "auth", now).unwrap(), other);
    }
}
