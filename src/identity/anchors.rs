//! This project's own trust store: manufacturing CA certificates for `anchored` mode, in
//! `<cert_dir>/anchors/` (one certificate per file, DER or PEM). Never bmcweb's
//! `/etc/ssl/certs/authority`: a CA installed for Redfish client logins must not be able to
//! vouch for a peer BMC.

use std::path::{Path, PathBuf};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::Error;
use crate::persist;

/// Directory of the trust store under a certificate directory.
pub fn dir(cert_dir: &Path) -> PathBuf {
    cert_dir.join("anchors")
}

/// Parses one certificate from DER or PEM bytes.
///
/// # Errors
/// [`Error::Certificate`] if `bytes` are neither one DER certificate nor PEM holding exactly
/// one certificate.
pub fn parse_certificate(bytes: &[u8]) -> Result<Vec<u8>, Error> {
    let is_pem = bytes.windows(10).any(|w| w == b"-----BEGIN");
    let der = if is_pem {
        let mut certs = CertificateDer::pem_slice_iter(bytes);
        let first = certs
            .next()
            .ok_or_else(|| Error::Certificate("no certificate in PEM".into()))?
            .map_err(|e| Error::Certificate(format!("bad PEM: {e}")))?;
        if certs.next().is_some() {
            return Err(Error::Certificate("one certificate per file".into()));
        }
        first.to_vec()
    } else {
        bytes.to_vec()
    };
    let (rest, _) = X509Certificate::from_der(&der)
        .map_err(|e| Error::Certificate(format!("not an X.509 certificate: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::Certificate(
            "trailing bytes after the certificate".into(),
        ));
    }
    Ok(der)
}

/// Checks that `der` can serve as a trust anchor: a CA certificate.
///
/// # Errors
/// [`Error::Certificate`] otherwise.
pub fn check_anchor(der: &[u8]) -> Result<(), Error> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| Error::Certificate(e.to_string()))?;
    if !cert.is_ca() {
        return Err(Error::Certificate(
            "a trust anchor must be a CA certificate".into(),
        ));
    }
    Ok(())
}

/// Loads every anchor in `cert_dir`'s trust store. Files that are not CA certificates are
/// skipped with a warning (never trusted by accident); a missing directory is an empty store.
pub fn load(cert_dir: &Path) -> Vec<Vec<u8>> {
    let dir = dir(cert_dir);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let mut anchors = Vec::new();
    for path in paths {
        let parsed = std::fs::read(&path)
            .map_err(|e| Error::Certificate(e.to_string()))
            .and_then(|b| parse_certificate(&b))
            .and_then(|der| check_anchor(&der).map(|()| der));
        match parsed {
            Ok(der) => anchors.push(der),
            Err(e) => {
                tracing::warn!(file = %path.display(), error = %crate::kit::ErrorChain(&e), "ignoring file in the trust store")
            }
        }
    }
    anchors
}

/// Adds an anchor (DER or PEM) to the trust store, named by its SHA-256.
///
/// # Errors
/// [`Error::Certificate`] if it is not a CA certificate; [`Error::Persist`] on write failure.
pub fn install(cert_dir: &Path, bytes: &[u8]) -> Result<PathBuf, Error> {
    let der = parse_certificate(bytes)?;
    check_anchor(&der)?;
    let name = bmc_pairing_core::hex::hex_encode(&<sha2::Sha256 as sha2::Digest>::digest(&der));
    let path = dir(cert_dir).join(format!("{name}.der"));
    persist::write_atomic(&path, &der).map_err(|source| Error::Persist {
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::cert::ChainFiles;
    use crate::identity::file::FileKeyStore;

    #[test]
    fn only_ca_certificates_become_anchors() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(tmp.path().join("keys"));
        let id = ChainFiles::new(tmp.path().join("c"))
            .create(&store, "bmc-a", std::time::SystemTime::now())
            .unwrap();
        let certs = tmp.path().join("certs");
        assert!(
            install(&certs, &id.leaf_der).is_err(),
            "a leaf is not an anchor"
        );
        assert!(install(&certs, b"garbage").is_err());
        install(&certs, &id.ca_der).unwrap();
        std::fs::write(
            dir(&certs).join("junk.pem"),
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(dir(&certs).join("leaf.der"), &id.leaf_der).unwrap();
        assert_eq!(load(&certs), vec![id.ca_der.clone()]);
        assert!(load(&tmp.path().join("nothing")).is_empty());
    }
}
