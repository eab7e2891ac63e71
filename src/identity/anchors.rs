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

/// An anchor's id: the SHA-256 of its DER, in hex (its file name and its D-Bus object name).
pub fn id(der: &[u8]) -> String {
    bmc_pairing_core::hex::hex_encode(&<sha2::Sha256 as sha2::Digest>::digest(der))
}

/// Checks that `der` is valid at `now`: not expired, not before its notBefore.
///
/// # Errors
/// [`Error::Certificate`] saying which.
pub fn check_valid_at(der: &[u8], now: std::time::SystemTime) -> Result<(), Error> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| Error::Certificate(e.to_string()))?;
    let at = i64::try_from(
        now.duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
    .unwrap_or(i64::MAX);
    if at < cert.validity().not_before.timestamp() {
        return Err(Error::Certificate(
            "the certificate is not valid yet".into(),
        ));
    }
    if at > cert.validity().not_after.timestamp() {
        return Err(Error::Certificate("the certificate has expired".into()));
    }
    Ok(())
}

/// What [`install`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Installed {
    /// Written to this file.
    New(PathBuf),
    /// The trust store already holds it (nothing written).
    AlreadyThere,
}

/// Adds an anchor (DER or PEM) to the trust store, named by its [`id`]: a CA certificate
/// valid at `now`. The store is ours alone (never bmcweb's `/etc/ssl/certs/authority`).
///
/// # Errors
/// [`Error::Certificate`] if it is not one CA certificate valid now; [`Error::Persist`] on
/// write failure. Nothing is written then.
pub fn install(
    cert_dir: &Path,
    bytes: &[u8],
    now: std::time::SystemTime,
) -> Result<(String, Installed), Error> {
    let der = parse_certificate(bytes)?;
    check_anchor(&der)?;
    check_valid_at(&der, now)?;
    let name = id(&der);
    if load(cert_dir).iter().any(|a| id(a) == name) {
        return Ok((name, Installed::AlreadyThere));
    }
    let path = dir(cert_dir).join(format!("{name}.der"));
    persist::write_atomic(&path, &der).map_err(|source| Error::Persist {
        path: path.clone(),
        source,
    })?;
    Ok((name, Installed::New(path)))
}

/// Removes the anchor [`id`] `name` from the trust store: every file holding it, whatever
/// its name or encoding. Returns false when the store does not hold it.
///
/// # Errors
/// [`Error::Persist`] when a file cannot be removed.
pub fn remove(cert_dir: &Path, name: &str) -> Result<bool, Error> {
    let Ok(entries) = std::fs::read_dir(dir(cert_dir)) else {
        return Ok(false);
    };
    let mut found = false;
    for path in entries.flatten().map(|e| e.path()).filter(|p| p.is_file()) {
        let holds = std::fs::read(&path)
            .ok()
            .and_then(|b| parse_certificate(&b).ok())
            .is_some_and(|der| id(&der) == name);
        if holds {
            persist::remove_if_exists(&path).map_err(|source| Error::Persist {
                path: path.clone(),
                source,
            })?;
            found = true;
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::cert::ChainFiles;
    use crate::identity::file::FileKeyStore;

    fn pem_of(der: &[u8]) -> String {
        pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
    }

    #[test]
    fn only_ca_certificates_become_anchors() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(tmp.path().join("keys"));
        let id = ChainFiles::new(tmp.path().join("c"))
            .create(&store, "bmc-a", std::time::SystemTime::now())
            .unwrap();
        let certs = tmp.path().join("certs");
        let now = std::time::SystemTime::now();
        assert!(
            install(&certs, &id.leaf_der, now).is_err(),
            "a leaf is not an anchor"
        );
        assert!(install(&certs, b"garbage", now).is_err());
        assert!(
            install(
                &certs,
                &id.ca_der,
                now + std::time::Duration::from_secs(30 * 365 * 86400)
            )
            .is_err(),
            "expired"
        );
        assert!(!dir(&certs).exists(), "nothing written");
        let (name, installed) = install(&certs, &id.ca_der, now).unwrap();
        assert!(matches!(installed, Installed::New(_)));
        assert_eq!(
            install(&certs, &id.ca_der, now).unwrap(),
            (name.clone(), Installed::AlreadyThere)
        );
        std::fs::write(
            dir(&certs).join("junk.pem"),
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        std::fs::write(dir(&certs).join("leaf.der"), &id.leaf_der).unwrap();
        assert_eq!(load(&certs), vec![id.ca_der.clone()]);
        assert!(load(&tmp.path().join("nothing")).is_empty());
        // Removal finds the anchor whatever its file name or encoding.
        std::fs::write(dir(&certs).join("copy.pem"), pem_of(&id.ca_der)).unwrap();
        assert!(remove(&certs, &name).unwrap());
        assert!(load(&certs).is_empty());
        assert!(!remove(&certs, &name).unwrap());
    }
}
