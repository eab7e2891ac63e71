//! The identity certificate chain, issued with rcgen through the [`KeyStore`].
//!
//! Self-provisioning ("self") makes a self-signed per-BMC CA whose key is the store's
//! [`KeyRole::Ca`], then an identity leaf for [`KeyRole::Identity`] with EKU
//! serverAuth+clientAuth and a DNS SAN with the BMC's name. Serials come from the OS CSPRNG
//! (127 bits), SKI/AKI are set, and notBefore is the caller's clock (already floored, see
//! the time floor) minus a small margin, never the epoch.
//!
//! The rcgen adapter [`RcgenSigner`] is how rcgen reaches the key: rcgen hands it the TBS
//! bytes, it hashes them with SHA-256 and asks the store to sign the digest.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rand_core::{OsRng, RngCore};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, SanType, SerialNumber,
};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::csr::CsrRequest;
use super::{
    Error, Fingerprint, KeyRole, KeyStore, PublicKey, sign_message, signature_to_der, summarize,
    verify_digest,
};
use crate::persist;

/// How far notBefore is set before "now", so a peer whose clock is slightly behind accepts it.
pub const NOT_BEFORE_MARGIN: Duration = Duration::from_secs(10 * 60);
/// Lifetime of the self-signed CA.
pub const CA_LIFETIME: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Lifetime of the identity leaf.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
/// A leaf with less than this left is re-issued (same key, so pins survive rotation).
pub const RENEW_BEFORE: Duration = Duration::from_secs(60 * 24 * 3600);
/// A self-signed CA with less than this left is re-issued for the same CA key and subject
/// (and the leaf with it), so chains keep verifying and pins survive.
pub const CA_RENEW_BEFORE: Duration = Duration::from_secs(365 * 24 * 3600);

/// rcgen's view of a key held by a [`KeyStore`].
pub struct RcgenSigner<'a> {
    store: &'a dyn KeyStore,
    role: KeyRole,
    point: Vec<u8>,
}

impl<'a> RcgenSigner<'a> {
    /// Binds `role` of `store`; reads its public key once.
    ///
    /// # Errors
    /// As [`KeyStore::public_key`].
    pub fn new(store: &'a dyn KeyStore, role: KeyRole) -> Result<Self, Error> {
        let point = store.public_key(role)?.p256_point()?;
        Ok(RcgenSigner { store, role, point })
    }
}

impl rcgen::PublicKeyData for RcgenSigner<'_> {
    fn der_bytes(&self) -> &[u8] {
        &self.point
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for RcgenSigner<'_> {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let raw =
            sign_message(self.store, self.role, msg).map_err(|_| rcgen::Error::RemoteKeyError)?;
        signature_to_der(self.role, &raw).map_err(|_| rcgen::Error::RemoteKeyError)
    }
}

pub(crate) fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    // Positive, and never a leading zero byte, so the DER INTEGER keeps all 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

fn to_offset(t: SystemTime) -> OffsetDateTime {
    OffsetDateTime::from(t)
}

fn cert_err(e: impl std::fmt::Display) -> Error {
    Error::Certificate(e.to_string())
}

fn not_a_certificate(what: &'static str) -> impl FnOnce(super::NotACertificate) -> Error {
    move |source| Error::NotACertificate { what, source }
}

fn ca_params(bmc_name: &str, now: SystemTime) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "bmc-pairing-manager");
    dn.push(DnType::CommonName, format!("{bmc_name} pairing CA"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = to_offset(now - NOT_BEFORE_MARGIN);
    params.not_after = to_offset(now + CA_LIFETIME);
    params.serial_number = Some(random_serial());
    params
}

/// Issues the self-signed CA certificate for `store`'s CA key.
///
/// # Errors
/// [`Error::Certificate`] or a key-store error.
pub fn issue_ca(store: &dyn KeyStore, bmc_name: &str, now: SystemTime) -> Result<Vec<u8>, Error> {
    let signer = RcgenSigner::new(store, KeyRole::Ca)?;
    let cert = ca_params(bmc_name, now)
        .self_signed(&signer)
        .map_err(cert_err)?;
    Ok(cert.der().to_vec())
}

/// Issues the identity leaf for `store`'s identity key, signed by the CA in `ca_der`
/// (whose key must be `store`'s CA key).
///
/// # Errors
/// [`Error::Certificate`] or a key-store error.
pub fn issue_leaf(
    store: &dyn KeyStore,
    ca_der: &[u8],
    bmc_name: &str,
    now: SystemTime,
) -> Result<Vec<u8>, Error> {
    let ca_signer = RcgenSigner::new(store, KeyRole::Ca)?;
    let issuer = Issuer::from_ca_cert_der(&ca_der.into(), ca_signer).map_err(cert_err)?;
    let subject = RcgenSigner::new(store, KeyRole::Identity)?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "bmc-pairing-manager");
    dn.push(DnType::CommonName, bmc_name);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::DnsName(bmc_name.try_into().map_err(cert_err)?)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = to_offset(now - NOT_BEFORE_MARGIN);
    params.not_after = to_offset(now + LEAF_LIFETIME);
    params.serial_number = Some(random_serial());
    let cert = params.signed_by(&subject, &issuer).map_err(cert_err)?;
    Ok(cert.der().to_vec())
}

/// True when the leaf `leaf_der` names the subject of `ca_der` as its issuer (unparsable
/// certificates do not).
fn leaf_names_issuer(leaf_der: &[u8], ca_der: &[u8]) -> bool {
    match (
        X509Certificate::from_der(leaf_der),
        X509Certificate::from_der(ca_der),
    ) {
        (Ok((_, leaf)), Ok((_, ca))) => leaf.issuer().as_raw() == ca.subject().as_raw(),
        _ => false,
    }
}

/// The subject attributes of an existing certificate, for a CSR that keeps its name.
pub(crate) fn copy_name(
    name: &x509_parser::x509::X509Name<'_>,
) -> Result<DistinguishedName, Error> {
    let mut dn = DistinguishedName::new();
    for attr in name.iter_attributes() {
        let oid: Vec<u64> = attr
            .attr_type()
            .iter()
            .ok_or_else(|| {
                Error::Certificate("unsupported attribute type in the CA subject".into())
            })?
            .collect();
        let value = attr
            .as_str()
            .map_err(|_| Error::Certificate("non-string attribute in the CA subject".into()))?;
        dn.push(DnType::from_oid(&oid), value);
    }
    Ok(dn)
}

/// The identity chain on disk, next to the keys it names: `<dir>/ca.der`, `<dir>/identity.der`.
#[derive(Clone, Debug)]
pub struct ChainFiles {
    dir: PathBuf,
}

/// A loaded, self-consistent identity: certificates that match the store's keys.
#[derive(Clone, Debug)]
pub struct LoadedIdentity {
    /// DER of the CA certificate.
    pub ca_der: Vec<u8>,
    /// DER of the identity leaf.
    pub leaf_der: Vec<u8>,
    /// The identity public key (the one peers pin).
    pub public_key: PublicKey,
    /// The leaf's notAfter.
    pub leaf_not_after: SystemTime,
    /// The CA certificate's notAfter.
    pub ca_not_after: SystemTime,
}

impl LoadedIdentity {
    /// The pin peers hold for this BMC.
    pub fn fingerprint(&self) -> Fingerprint {
        self.public_key.fingerprint()
    }

    /// True when the CA certificate is self-signed (self-provisioned), so this BMC can renew
    /// it; false when a manufacturing CA issued it.
    pub fn ca_self_signed(&self) -> bool {
        X509Certificate::from_der(&self.ca_der)
            .map(|(_, ca)| ca.issuer() == ca.subject())
            .unwrap_or(false)
    }

    /// True when [`ChainFiles::renew_if_due`] would re-issue something at `now` (also when
    /// the leaf names another issuer than the CA certificate's subject, as a crash while a
    /// CA certificate was replaced can leave it).
    pub fn renewal_due(&self, now: SystemTime) -> bool {
        !leaf_names_issuer(&self.leaf_der, &self.ca_der)
            || self.leaf_not_after <= now + RENEW_BEFORE
            || (self.ca_self_signed() && self.ca_not_after <= now + CA_RENEW_BEFORE)
    }

    /// True when the leaf or the CA certificate has expired at `now`: peers refuse it.
    pub fn expired(&self, now: SystemTime) -> bool {
        self.leaf_not_after < now || self.ca_not_after < now
    }

    /// The chain as sent in TLS: leaf first, then the CA.
    pub fn chain_leaf_first(&self) -> Vec<Vec<u8>> {
        vec![self.leaf_der.clone(), self.ca_der.clone()]
    }

    /// The chain as SPDM serves it: root first. A self-signed CA is the root. A CA issued by
    /// a manufacturing CA is preceded by that issuer, taken from `anchors` (our trust store),
    /// so the SPDM RootHash names the root a peer can anchor to; without it the chain starts
    /// at our CA and only first-contact or pinned peers accept it.
    pub fn spdm_chain(&self, anchors: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let mut chain = vec![self.ca_der.clone(), self.leaf_der.clone()];
        let Ok((_, ca)) = X509Certificate::from_der(&self.ca_der) else {
            return chain;
        };
        if ca.issuer() == ca.subject() {
            return chain;
        }
        let issuer = anchors.iter().find(|a| {
            X509Certificate::from_der(a)
                .map(|(_, root)| {
                    root.subject() == ca.issuer()
                        && ca.verify_signature(Some(root.public_key())).is_ok()
                })
                .unwrap_or(false)
        });
        if let Some(root) = issuer {
            chain.insert(0, root.clone());
        }
        chain
    }
}

/// Why a stored identity cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IdentityProblem {
    /// Nothing was ever created (a fresh BMC).
    #[error("no identity has been created")]
    Absent,
    /// Certificates or keys are missing or unusable, or do not match each other.
    #[error("the identity is invalid")]
    Invalid(#[source] Error),
    /// The key store cannot answer right now (TPM unreachable or hung). Says nothing about
    /// the identity itself; try again later.
    #[error("the key store does not answer")]
    Unavailable(#[source] bmc_pairing_core::keys::Error),
}

/// Sorts a key-store error into lost (invalid) or transient (unavailable).
fn key_problem(e: bmc_pairing_core::keys::Error) -> IdentityProblem {
    match e {
        e @ bmc_pairing_core::keys::Error::Unavailable { .. } => IdentityProblem::Unavailable(e),
        other => IdentityProblem::Invalid(Error::Key(other)),
    }
}

fn invalid(why: impl Into<String>) -> IdentityProblem {
    IdentityProblem::Invalid(Error::Certificate(why.into()))
}

impl ChainFiles {
    /// Certificates under `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        ChainFiles { dir: dir.into() }
    }

    /// Directory holding the chain.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.der")
    }

    fn leaf_path(&self) -> PathBuf {
        self.dir.join("identity.der")
    }

    fn read(&self, path: &Path) -> Result<Option<Vec<u8>>, IdentityProblem> {
        persist::read_optional(path).map_err(|source| {
            IdentityProblem::Invalid(Error::Persist {
                path: path.to_path_buf(),
                source,
            })
        })
    }

    /// Loads the chain and checks it against the store's keys.
    ///
    /// # Errors
    /// [`IdentityProblem::Absent`] when neither certificate exists and the store has no
    /// identity key; [`IdentityProblem::Invalid`] for every other inconsistency (lost TPM
    /// key, corrupt blob, certificate for another key, ...).
    pub fn load(&self, store: &dyn KeyStore) -> Result<LoadedIdentity, IdentityProblem> {
        let ca = self.read(&self.ca_path())?;
        let leaf = self.read(&self.leaf_path())?;
        let (ca_der, leaf_der) = match (ca, leaf) {
            (Some(ca), Some(leaf)) => (ca, leaf),
            (None, None) => {
                return match store.public_key(KeyRole::Identity) {
                    Err(bmc_pairing_core::keys::Error::KeyMissing(_)) => {
                        Err(IdentityProblem::Absent)
                    }
                    Err(e @ bmc_pairing_core::keys::Error::Unavailable { .. }) => {
                        Err(key_problem(e))
                    }
                    _ => Err(invalid("certificates are missing")),
                };
            }
            _ => {
                return Err(invalid("one certificate of the chain is missing"));
            }
        };
        let ca = summarize(&ca_der)
            .map_err(not_a_certificate("the CA certificate"))
            .map_err(IdentityProblem::Invalid)?;
        let leaf = summarize(&leaf_der)
            .map_err(not_a_certificate("the identity certificate"))
            .map_err(IdentityProblem::Invalid)?;
        for (role, cert_key) in [
            (KeyRole::Ca, &ca.public_key),
            (KeyRole::Identity, &leaf.public_key),
        ] {
            let key = store.public_key(role).map_err(key_problem)?;
            if &key != cert_key {
                return Err(invalid(format!(
                    "the {role} certificate does not match the {role} key"
                )));
            }
            // The public part can survive in a blob whose private part the TPM can no longer
            // load; a test signature proves the key is really usable.
            let digest = [0x5au8; super::SHA256_LEN];
            let sig = store.sign_digest(role, &digest).map_err(key_problem)?;
            verify_digest(&key, &digest, &sig)
                .map_err(|_| invalid(format!("the {role} key signs wrongly")))?;
        }
        Ok(LoadedIdentity {
            public_key: leaf.public_key,
            leaf_not_after: leaf.not_after,
            ca_not_after: ca.not_after,
            ca_der,
            leaf_der,
        })
    }

    /// Deletes both certificates of the chain (leaf first); files already gone are fine.
    /// Trust anchors in the same directory are not touched.
    ///
    /// # Errors
    /// [`Error::Persist`] when a file cannot be removed.
    pub fn remove(&self) -> Result<(), Error> {
        for path in [self.leaf_path(), self.ca_path()] {
            persist::remove_if_exists(&path).map_err(|source| Error::Persist { path, source })?;
        }
        Ok(())
    }

    /// Creates a new identity: fresh CA and identity keys, CA certificate, leaf.
    ///
    /// Files are written leaf-last, each atomically; a crash midway leaves a chain that
    /// [`ChainFiles::load`] reports as invalid, and the next `create` starts over.
    ///
    /// # Errors
    /// Key-store and certificate errors.
    pub fn create(
        &self,
        store: &dyn KeyStore,
        bmc_name: &str,
        now: SystemTime,
    ) -> Result<LoadedIdentity, Error> {
        persist::remove_if_exists(&self.leaf_path()).map_err(|source| Error::Persist {
            path: self.leaf_path(),
            source,
        })?;
        store.generate(KeyRole::Ca)?;
        let public_key = store.generate(KeyRole::Identity)?;
        let ca_der = issue_ca(store, bmc_name, now)?;
        let leaf_der = issue_leaf(store, &ca_der, bmc_name, now)?;
        self.write(&self.ca_path(), &ca_der)?;
        self.write(&self.leaf_path(), &leaf_der)?;
        let leaf = summarize(&leaf_der).map_err(not_a_certificate("the new leaf"))?;
        let ca = summarize(&ca_der).map_err(not_a_certificate("the new CA certificate"))?;
        Ok(LoadedIdentity {
            ca_der,
            leaf_der,
            public_key,
            leaf_not_after: leaf.not_after,
            ca_not_after: ca.not_after,
        })
    }

    /// Renews what is due at `now` ([`LoadedIdentity::renewal_due`]): a self-signed CA within
    /// [`CA_RENEW_BEFORE`] of its notAfter is re-issued for the same key and subject, and the
    /// leaf is re-issued for the same identity key when it is within [`RENEW_BEFORE`] of
    /// its notAfter or its CA was renewed. Pins are unchanged. Returns the identity
    /// unchanged when nothing is due. A CA a manufacturing CA issued is never re-issued here
    /// (its expiry is shown, and a new one is installed as it was first).
    ///
    /// Files are written CA first: after a crash in between, the old leaf still verifies
    /// under the new CA (same key, same subject), and the next check renews the leaf.
    ///
    /// # Errors
    /// Key-store and certificate errors.
    pub fn renew_if_due(
        &self,
        store: &dyn KeyStore,
        identity: LoadedIdentity,
        bmc_name: &str,
        now: SystemTime,
    ) -> Result<LoadedIdentity, Error> {
        if !identity.renewal_due(now) {
            return Ok(identity);
        }
        let ca_due = identity.ca_self_signed() && identity.ca_not_after <= now + CA_RENEW_BEFORE;
        let (ca_der, ca_not_after) = if ca_due {
            let ca_der = issue_ca(store, bmc_name, now)?;
            let ca = summarize(&ca_der).map_err(not_a_certificate("the new CA certificate"))?;
            self.write(&self.ca_path(), &ca_der)?;
            (ca_der, ca.not_after)
        } else {
            (identity.ca_der.clone(), identity.ca_not_after)
        };
        let leaf_der = issue_leaf(store, &ca_der, bmc_name, now)?;
        self.write(&self.leaf_path(), &leaf_der)?;
        let leaf = summarize(&leaf_der).map_err(not_a_certificate("the new leaf"))?;
        Ok(LoadedIdentity {
            leaf_der,
            leaf_not_after: leaf.not_after,
            ca_der,
            ca_not_after,
            ..identity
        })
    }

    /// A PKCS#10 request (PEM) for the BMC's CA key, with the subject of the current CA
    /// certificate: what a manufacturing CA signs to bring this BMC into `anchored` mode
    /// (the `csr` command). The same as [`ChainFiles::csr`] with no subject given.
    ///
    /// # Errors
    /// As [`ChainFiles::csr`].
    pub fn ca_csr(&self, store: &dyn KeyStore) -> Result<String, Error> {
        self.csr(store, &CsrRequest::default())
    }

    /// A PKCS#10 request (PEM) for the BMC's CA key (`GenerateCSR`): the subject and
    /// alternative names of `request`, or the current CA subject when it names none. The
    /// request asks for the per-BMC CA's profile (CA, path length 0, keyCertSign, cRLSign,
    /// digitalSignature) whatever `KeyUsage` says, and is signed by the CA key through the
    /// key store. Nothing is written.
    ///
    /// # Errors
    /// [`Error::Certificate`] for a refused argument or when there is no identity yet;
    /// key-store errors.
    pub fn csr(&self, store: &dyn KeyStore, request: &CsrRequest) -> Result<String, Error> {
        request.check()?;
        let ca_der = self.read_existing(&self.ca_path())?;
        let (_, ca) = X509Certificate::from_der(&ca_der).map_err(cert_err)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = match request.subject() {
            Some(dn) => dn,
            None => copy_name(ca.subject())?,
        };
        params.subject_alt_names = request
            .alternative_names
            .iter()
            .map(|n| n.as_str().try_into().map(SanType::DnsName))
            .collect::<Result<_, _>>()
            .map_err(cert_err)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let signer = RcgenSigner::new(store, KeyRole::Ca)?;
        params
            .serialize_request(&signer)
            .and_then(|csr| csr.pem())
            .map_err(cert_err)
    }

    fn read_existing(&self, path: &Path) -> Result<Vec<u8>, Error> {
        persist::read_optional(path)
            .map_err(|source| Error::Persist {
                path: path.to_path_buf(),
                source,
            })?
            .ok_or_else(|| {
                Error::Certificate("no identity yet: run ProvisionPeer(\"self\") first".into())
            })
    }

    /// Installs a CA certificate that a CA issued for this BMC's CA key (see
    /// [`ChainFiles::csr`]; `install-ca-cert` and `Certs.Replace`). It must be one CA
    /// certificate for exactly our CA key, valid at `now`; the identity key and therefore
    /// every peer's pin stay as they are. When its subject is not the issuer the identity
    /// leaf names (a request with a subject of its own), the leaf is re-issued under it for
    /// the same identity key.
    ///
    /// # Errors
    /// [`Error::Certificate`] naming the first check that failed; nothing is written then.
    pub fn install_ca_cert(
        &self,
        store: &dyn KeyStore,
        bytes: &[u8],
        bmc_name: &str,
        now: SystemTime,
    ) -> Result<(), Error> {
        let der = super::anchors::parse_certificate(bytes)?;
        let (_, new_ca) = X509Certificate::from_der(&der).map_err(cert_err)?;
        if !new_ca.is_ca() {
            return Err(Error::Certificate("not a CA certificate".into()));
        }
        let ours = store.public_key(KeyRole::Ca)?;
        if new_ca.public_key().raw != ours.spki_der() {
            return Err(Error::Certificate(
                "the certificate is not for this BMC's CA key".into(),
            ));
        }
        // Refused before anything is read or signed: no identity, nothing to replace.
        self.read_existing(&self.leaf_path())?;
        super::anchors::check_valid_at(&der, now)?;
        self.write_ca_and_align_leaf(store, &der, bmc_name, now)
    }

    /// Replaces the CA certificate with a newly self-issued one for the same CA key
    /// (`Delete` of the CA certificate: back to self-provisioned). The leaf is re-issued
    /// only if the subject changes.
    ///
    /// # Errors
    /// Key-store and certificate errors; [`Error::Certificate`] without an identity.
    pub fn self_issue_ca(
        &self,
        store: &dyn KeyStore,
        bmc_name: &str,
        now: SystemTime,
    ) -> Result<(), Error> {
        self.read_existing(&self.leaf_path())?;
        let ca_der = issue_ca(store, bmc_name, now)?;
        self.write_ca_and_align_leaf(store, &ca_der, bmc_name, now)
    }

    /// Re-issues the identity leaf for the same identity key under the current CA
    /// certificate (`Delete` of the identity certificate).
    ///
    /// # Errors
    /// Key-store and certificate errors; [`Error::Certificate`] without an identity.
    pub fn reissue_leaf(
        &self,
        store: &dyn KeyStore,
        bmc_name: &str,
        now: SystemTime,
    ) -> Result<(), Error> {
        self.read_existing(&self.leaf_path())?;
        let ca_der = self.read_existing(&self.ca_path())?;
        let leaf_der = issue_leaf(store, &ca_der, bmc_name, now)?;
        self.write(&self.leaf_path(), &leaf_der)
    }

    /// Writes `ca_der`, then a leaf re-issued under it if the current leaf names another
    /// issuer. A crash in between leaves a leaf whose issuer is not the CA subject:
    /// [`LoadedIdentity::renewal_due`] says so, and the next check re-issues it.
    fn write_ca_and_align_leaf(
        &self,
        store: &dyn KeyStore,
        ca_der: &[u8],
        bmc_name: &str,
        now: SystemTime,
    ) -> Result<(), Error> {
        let leaf_der = self.read_existing(&self.leaf_path())?;
        let new_leaf = if leaf_names_issuer(&leaf_der, ca_der) {
            None
        } else {
            Some(issue_leaf(store, ca_der, bmc_name, now)?)
        };
        self.write(&self.ca_path(), ca_der)?;
        if let Some(leaf) = new_leaf {
            self.write(&self.leaf_path(), &leaf)?;
        }
        Ok(())
    }

    fn write(&self, path: &Path, der: &[u8]) -> Result<(), Error> {
        persist::write_atomic(path, der).map_err(|source| Error::Persist {
            path: path.to_path_buf(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::file::FileKeyStore;
    use x509_parser::extensions::ParsedExtension;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000)
    }

    #[test]
    fn chain_has_the_required_profile() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path().join("keys"));
        let files = ChainFiles::new(dir.path().join("certs"));
        let id = files.create(&store, "bmc-a", now()).unwrap();

        let (_, ca) = X509Certificate::from_der(&id.ca_der).unwrap();
        let (_, leaf) = X509Certificate::from_der(&id.leaf_der).unwrap();
        assert!(ca.is_ca());
        assert!(!leaf.is_ca());
        assert_eq!(leaf.issuer(), ca.subject());
        // Signatures chain: CA self-signed, leaf signed by CA.
        ca.verify_signature(None).unwrap();
        leaf.verify_signature(Some(ca.public_key())).unwrap();
        // Serials: at least 64 bits, and different.
        assert!(leaf.raw_serial().len() >= 8);
        assert_ne!(leaf.raw_serial(), ca.raw_serial());
        // notBefore is "now" minus the margin, not the epoch.
        let nb = leaf.validity().not_before.timestamp();
        assert_eq!(nb, 1_790_000_000 - NOT_BEFORE_MARGIN.as_secs() as i64);

        let mut saw = (false, false, false, false);
        for ext in leaf.extensions() {
            match ext.parsed_extension() {
                ParsedExtension::ExtendedKeyUsage(eku) => {
                    assert!(eku.server_auth && eku.client_auth);
                    saw.0 = true;
                }
                ParsedExtension::SubjectAlternativeName(san) => {
                    assert_eq!(format!("{:?}", san.general_names), "[DNSName(\"bmc-a\")]");
                    saw.1 = true;
                }
                ParsedExtension::SubjectKeyIdentifier(_) => saw.2 = true,
                ParsedExtension::AuthorityKeyIdentifier(_) => saw.3 = true,
                _ => {}
            }
        }
        assert_eq!(saw, (true, true, true, true), "EKU, SAN, SKI, AKI");
        assert_eq!(id.public_key, store.public_key(KeyRole::Identity).unwrap());
    }

    #[test]
    fn load_detects_absent_valid_and_lost_keys() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path().join("keys"));
        let files = ChainFiles::new(dir.path().join("certs"));
        assert!(matches!(files.load(&store), Err(IdentityProblem::Absent)));
        let created = files.create(&store, "bmc-a", now()).unwrap();
        let loaded = files.load(&store).unwrap();
        assert_eq!(loaded.fingerprint(), created.fingerprint());

        store.generate(KeyRole::Identity).unwrap();
        assert!(matches!(
            files.load(&store),
            Err(IdentityProblem::Invalid(_))
        ));
        store.delete(KeyRole::Identity).unwrap();
        assert!(matches!(
            files.load(&store),
            Err(IdentityProblem::Invalid(_))
        ));
    }

    #[test]
    fn a_manufacturing_signed_ca_certificate_replaces_the_self_signed_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path().join("keys"));
        let files = ChainFiles::new(dir.path().join("certs"));
        let id = files.create(&store, "bmc-a", now()).unwrap();
        let csr_pem = files.ca_csr(&store).unwrap();
        // The factory: its own CA signs the request.
        let factory_key = rcgen::KeyPair::generate().unwrap();
        let mut factory_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        factory_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        factory_params
            .distinguished_name
            .push(DnType::CommonName, "factory root");
        let factory_cert = factory_params.self_signed(&factory_key).unwrap();
        let factory = Issuer::new(factory_params, &factory_key);
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(&csr_pem).unwrap();
        csr.params.not_before = to_offset(now() - Duration::from_secs(60));
        csr.params.not_after = to_offset(now() + CA_LIFETIME);
        let signed = csr.signed_by(&factory).unwrap();

        // Wrong inputs are refused and change nothing.
        let before = std::fs::read(dir.path().join("certs/ca.der")).unwrap();
        assert!(
            files
                .install_ca_cert(&store, factory_cert.der(), "bmc-a", now())
                .is_err(),
            "someone else's CA"
        );
        assert!(
            files
                .install_ca_cert(&store, &id.leaf_der, "bmc-a", now())
                .is_err(),
            "not a CA"
        );
        assert!(
            files
                .install_ca_cert(&store, signed.der(), "bmc-a", now() + CA_LIFETIME * 2)
                .is_err(),
            "expired"
        );
        assert_eq!(
            std::fs::read(dir.path().join("certs/ca.der")).unwrap(),
            before
        );

        files
            .install_ca_cert(&store, signed.pem().as_bytes(), "bmc-a", now())
            .unwrap();
        let loaded = files.load(&store).unwrap();
        assert_eq!(
            loaded.fingerprint(),
            id.fingerprint(),
            "the pin is unchanged"
        );
        let (_, ca) = X509Certificate::from_der(&loaded.ca_der).unwrap();
        let (_, leaf) = X509Certificate::from_der(&loaded.leaf_der).unwrap();
        let (_, factory) = X509Certificate::from_der(factory_cert.der()).unwrap();
        ca.verify_signature(Some(factory.public_key())).unwrap();
        leaf.verify_signature(Some(ca.public_key())).unwrap();
        // SPDM serves it root first, with the factory root from the trust store.
        let root = factory_cert.der().to_vec();
        assert_eq!(
            loaded.spdm_chain(&[id.ca_der.clone(), root.clone()]),
            vec![root, loaded.ca_der.clone(), loaded.leaf_der.clone()]
        );
        assert_eq!(
            loaded.spdm_chain(&[]),
            vec![loaded.ca_der.clone(), loaded.leaf_der.clone()]
        );
        assert_eq!(
            id.spdm_chain(&[factory_cert.der().to_vec()]),
            vec![id.ca_der.clone(), id.leaf_der.clone()],
            "a self-signed CA is the root"
        );
    }

    #[test]
    fn renewal_keeps_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path().join("keys"));
        let files = ChainFiles::new(dir.path().join("certs"));
        let id = files.create(&store, "bmc-a", now()).unwrap();
        let same = files
            .renew_if_due(&store, id.clone(), "bmc-a", now())
            .unwrap();
        assert_eq!(same.leaf_der, id.leaf_der);
        let later = now() + LEAF_LIFETIME - Duration::from_secs(3600);
        let renewed = files
            .renew_if_due(&store, id.clone(), "bmc-a", later)
            .unwrap();
        assert_ne!(renewed.leaf_der, id.leaf_der);
        assert_eq!(renewed.fingerprint(), id.fingerprint());
        assert!(renewed.leaf_not_after > id.leaf_not_after);
        assert_eq!(renewed.ca_der, id.ca_der, "the CA is far from expiry");
        assert_eq!(files.load(&store).unwrap().leaf_der, renewed.leaf_der);
    }

    #[test]
    fn a_self_signed_ca_near_expiry_is_renewed_with_the_same_key_and_subject() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileKeyStore::new(dir.path().join("keys"));
        let files = ChainFiles::new(dir.path().join("certs"));
        let id = files.create(&store, "bmc-a", now()).unwrap();
        let late = now() + CA_LIFETIME - Duration::from_secs(30 * 24 * 3600);
        assert!(id.renewal_due(late));
        assert!(id.expired(now() + CA_LIFETIME + Duration::from_secs(1)));
        assert!(!id.expired(now()));
        let renewed = files
            .renew_if_due(&store, id.clone(), "bmc-a", late)
            .unwrap();
        assert!(renewed.ca_not_after > id.ca_not_after);
        assert_eq!(renewed.fingerprint(), id.fingerprint());
        let (_, old_ca) = X509Certificate::from_der(&id.ca_der).unwrap();
        let (_, new_ca) = X509Certificate::from_der(&renewed.ca_der).unwrap();
        let (_, old_leaf) = X509Certificate::from_der(&id.leaf_der).unwrap();
        let (_, new_leaf) = X509Certificate::from_der(&renewed.leaf_der).unwrap();
        assert_eq!(new_ca.subject(), old_ca.subject());
        assert_eq!(new_ca.public_key().raw, old_ca.public_key().raw);
        new_leaf
            .verify_signature(Some(new_ca.public_key()))
            .unwrap();
        // A crash between the two writes leaves the old leaf: it verifies under the new CA.
        old_leaf
            .verify_signature(Some(new_ca.public_key()))
            .unwrap();
        assert!(!renewed.renewal_due(late));
        let loaded = files.load(&store).unwrap();
        assert_eq!(loaded.ca_der, renewed.ca_der);
        assert_eq!(loaded.leaf_der, renewed.leaf_der);
    }
}
