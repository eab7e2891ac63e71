//! The identity certificates as OpenBMC's certificate manager shows server certificates
//! (seed 004, phosphor-dbus-interfaces `Certs/`), under
//! [`CERTS_PATH`](crate::contract::manager::CERTS_PATH):
//!
//! - `<CERTS_PATH>` — `Certs.CSR.Create` (`GenerateCSR`, for the TPM-held per-BMC CA key,
//!   EC P-256 only) and an ObjectManager, so the CSR object is announced by InterfacesAdded;
//! - `<CERTS_PATH>/identity` — the identity leaf: `Certs.Certificate`, `Object.Delete`
//!   (re-issued for the same key);
//! - `<CERTS_PATH>/ca` — the per-BMC CA certificate: `Certs.Certificate`, `Certs.Replace`
//!   (a certificate a CA issued for our CA key), `Object.Delete` (self-issued again);
//! - `<CERTS_PATH>/csr` — after `GenerateCSR`: `Certs.CSR` and `Object.Delete`.
//!
//! The certificate objects exist while there is an identity and follow it (renewal,
//! replacement) through the actor's snapshot ([`sync`]). Methods only forward to the actor.

use std::collections::HashMap;
use std::io::Read;

use zbus::message::Message;
use zbus::names::{InterfaceName, MemberName};
use zbus::object_server::{DispatchResult2, Interface, SignalEmitter};
use zbus::zvariant::{OwnedValue, Value};
use zbus::{Connection, ObjectServer, fdo};

use super::Error;
use super::certificate::{Certificate, CertificateProperties};
use crate::contract::manager::{AUTHORITY_PATH, CERT_CA_PATH, CERT_IDENTITY_PATH, CSR_PATH};
use crate::identity::csr::CsrRequest;
use crate::pairing::handle::{
    AnchorRequest, CertificateAnswer, CertificateError, CertificateRequest, Handle, IdentityChain,
};

/// Longest `Path` argument accepted (bytes).
pub const MAX_PATH_LEN: usize = 4096;
/// Largest certificate file `Replace` or `Install` reads (bytes).
pub const MAX_FILE_LEN: u64 = 64 * 1024;

impl From<CertificateError> for Error {
    fn from(e: CertificateError) -> Self {
        let text = e.to_string();
        match e {
            CertificateError::Refused(_) => Error::InvalidArgument(text),
            CertificateError::NoIdentity | CertificateError::NotAllowed(_) => {
                Error::NotAllowed(text)
            }
            CertificateError::NotFound(_) => Error::ResourceNotFound(text),
            CertificateError::Busy(_) => Error::Unavailable(text),
            CertificateError::Internal(_) => Error::InternalFailure(text),
        }
    }
}

/// Reads the certificate file a caller named, refusing a relative, oversized or
/// non-regular path. Blocking.
fn read_certificate_file(path: &str) -> Result<Vec<u8>, Error> {
    if path.len() > MAX_PATH_LEN {
        return Err(Error::InvalidArgument(format!(
            "the path is longer than {MAX_PATH_LEN} bytes"
        )));
    }
    let path = std::path::Path::new(path);
    if !path.is_absolute() {
        return Err(Error::InvalidArgument("the path must be absolute".into()));
    }
    let refuse = |e: std::io::Error| Error::InvalidArgument(format!("cannot read the file: {e}"));
    let file = std::fs::File::open(path).map_err(refuse)?;
    let meta = file.metadata().map_err(refuse)?;
    if !meta.is_file() {
        return Err(Error::InvalidArgument("not a regular file".into()));
    }
    if meta.len() > MAX_FILE_LEN {
        return Err(Error::InvalidArgument(format!(
            "the file is larger than {MAX_FILE_LEN} bytes"
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(refuse)?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(Error::InvalidArgument(format!(
            "the file is larger than {MAX_FILE_LEN} bytes"
        )));
    }
    Ok(bytes)
}

/// Reads `path` on a blocking thread.
async fn read_file_arg(path: String) -> Result<Vec<u8>, Error> {
    tokio::task::spawn_blocking(move || read_certificate_file(&path))
        .await
        .map_err(|_| Error::InternalFailure("the file reader panicked".into()))?
}

/// The arguments of `GenerateCSR` as they travel (upstream order and types).
#[derive(serde::Deserialize, zbus::zvariant::Type)]
struct GenerateCsrArgs(
    Vec<String>,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    String,
    String,
    Vec<String>,
    String,
    String,
    String,
    String,
    String,
);

impl From<GenerateCsrArgs> for CsrRequest {
    fn from(a: GenerateCsrArgs) -> Self {
        CsrRequest {
            alternative_names: a.0,
            challenge_password: a.1,
            city: a.2,
            common_name: a.3,
            contact_person: a.4,
            country: a.5,
            email: a.6,
            given_name: a.7,
            initials: a.8,
            key_bit_length: a.9,
            key_curve_id: a.10,
            key_pair_algorithm: a.11,
            key_usage: a.12,
            organization: a.13,
            organizational_unit: a.14,
            state: a.15,
            surname: a.16,
            unstructured_name: a.17,
        }
    }
}

/// `(name, signature)` of `GenerateCSR`'s in-arguments, as the Certs YAML has them.
const GENERATE_CSR_ARGS: [(&str, &str); 18] = [
    ("AlternativeNames", "as"),
    ("ChallengePassword", "s"),
    ("City", "s"),
    ("CommonName", "s"),
    ("ContactPerson", "s"),
    ("Country", "s"),
    ("Email", "s"),
    ("GivenName", "s"),
    ("Initials", "s"),
    ("KeyBitLength", "x"),
    ("KeyCurveId", "s"),
    ("KeyPairAlgorithm", "s"),
    ("KeyUsage", "as"),
    ("Organization", "s"),
    ("OrganizationalUnit", "s"),
    ("State", "s"),
    ("Surname", "s"),
    ("UnstructuredName", "s"),
];

/// `xyz.openbmc_project.Certs.CSR.Create` at
/// [`CERTS_PATH`](crate::contract::manager::CERTS_PATH).
///
/// Implemented by hand rather than with `#[zbus::interface]`: `GenerateCSR` takes 18
/// arguments, more than the macro can unpack (serde's tuples stop at 16).
#[derive(Debug)]
pub struct CsrCreate {
    handle: Handle,
}

impl CsrCreate {
    /// Serves the actor behind `handle`.
    pub fn new(handle: Handle) -> Self {
        CsrCreate { handle }
    }

    async fn generate_csr(
        handle: Handle,
        server: &ObjectServer,
        msg: &Message,
    ) -> Result<String, Error> {
        let args: GenerateCsrArgs = msg
            .body()
            .deserialize()
            .map_err(|e| Error::InvalidArgument(format!("bad arguments: {e}")))?;
        let request = CsrRequest::from(args);
        request
            .check()
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let answer = handle
            .certificates(CertificateRequest::GenerateCsr(Box::new(request)))
            .await?;
        let CertificateAnswer::Csr(pem) = answer else {
            return Err(Error::InternalFailure("no CSR came back".into()));
        };
        // A new request replaces the previous one (InterfacesRemoved, then InterfacesAdded).
        remove_csr(server).await?;
        server.at(CSR_PATH, Csr { pem }).await?;
        server.at(CSR_PATH, CsrDelete).await?;
        Ok(CSR_PATH.to_owned())
    }
}

/// Removes interface `I` from `path`; one that is not there is fine.
async fn remove<I: Interface>(server: &ObjectServer, path: &str) -> zbus::Result<()> {
    match server.remove::<I, _>(path).await {
        Ok(_) | Err(zbus::Error::InterfaceNotFound) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn remove_csr(server: &ObjectServer) -> zbus::Result<()> {
    remove::<CsrDelete>(server, CSR_PATH).await?;
    remove::<Csr>(server, CSR_PATH).await
}

#[async_trait::async_trait]
impl Interface for CsrCreate {
    fn name() -> InterfaceName<'static> {
        InterfaceName::from_static_str_unchecked("xyz.openbmc_project.Certs.CSR.Create")
    }

    async fn get(
        &self,
        _property: &str,
        _server: &ObjectServer,
        _connection: &Connection,
        _header: Option<&zbus::message::Header<'_>>,
        _emitter: &SignalEmitter<'_>,
    ) -> Option<fdo::Result<OwnedValue>> {
        None
    }

    async fn get_all(
        &self,
        _server: &ObjectServer,
        _connection: &Connection,
        _header: Option<&zbus::message::Header<'_>>,
        _emitter: &SignalEmitter<'_>,
    ) -> fdo::Result<HashMap<String, OwnedValue>> {
        Ok(HashMap::new())
    }

    async fn set_mut(
        &mut self,
        _property: &str,
        _value: &Value<'_>,
        _server: &ObjectServer,
        _connection: &Connection,
        _header: Option<&zbus::message::Header<'_>>,
        _emitter: &SignalEmitter<'_>,
    ) -> Option<fdo::Result<()>> {
        None
    }

    fn call<'call>(
        &'call self,
        server: &'call ObjectServer,
        connection: &'call Connection,
        msg: &'call Message,
        name: MemberName<'call>,
    ) -> DispatchResult2<'call> {
        if name.as_str() != "GenerateCSR" {
            return DispatchResult2::NotFound;
        }
        let handle = self.handle.clone();
        DispatchResult2::new_async(connection, msg, Self::generate_csr(handle, server, msg))
    }

    fn call_mut<'call>(
        &'call mut self,
        _server: &'call ObjectServer,
        _connection: &'call Connection,
        _msg: &'call Message,
        _name: MemberName<'call>,
    ) -> DispatchResult2<'call> {
        DispatchResult2::NotFound
    }

    fn introspect_to_writer(&self, writer: &mut dyn std::fmt::Write, level: usize) {
        let pad = |n: usize| " ".repeat(n);
        let _ = writeln!(
            writer,
            "{}<interface name=\"{}\">",
            pad(level),
            Self::name()
        );
        let _ = writeln!(writer, "{}<method name=\"GenerateCSR\">", pad(level + 2));
        for (name, signature) in GENERATE_CSR_ARGS {
            let _ = writeln!(
                writer,
                "{}<arg name=\"{name}\" type=\"{signature}\" direction=\"in\"/>",
                pad(level + 4)
            );
        }
        let _ = writeln!(
            writer,
            "{}<arg name=\"path\" type=\"s\" direction=\"out\"/>",
            pad(level + 4)
        );
        let _ = writeln!(writer, "{}</method>", pad(level + 2));
        let _ = writeln!(writer, "{}</interface>", pad(level));
    }
}

/// `xyz.openbmc_project.Certs.CSR` at [`CSR_PATH`]: the last request made.
#[derive(Debug)]
pub struct Csr {
    pem: String,
}

#[zbus::interface(name = "xyz.openbmc_project.Certs.CSR")]
impl Csr {
    /// The request, PEM.
    #[zbus(name = "CSR", out_args("CSRString"))]
    async fn csr(&self) -> String {
        self.pem.clone()
    }
}

/// `xyz.openbmc_project.Object.Delete` on the CSR object: forgets it.
#[derive(Debug)]
pub struct CsrDelete;

#[zbus::interface(name = "xyz.openbmc_project.Object.Delete")]
impl CsrDelete {
    /// Removes the CSR object (the key stays: it is the CA key).
    #[zbus(name = "Delete")]
    async fn delete(&self, #[zbus(object_server)] server: &ObjectServer) -> Result<(), Error> {
        remove_csr(server).await?;
        Ok(())
    }
}

pub use path_args::{AnchorInstall, CaReplace};

/// `Certs.Replace` and `Certs.Install`, apart because D-Bus argument names come from
/// parameter names (`Path`).
#[allow(non_snake_case)]
mod path_args {
    use super::{AnchorRequest, CertificateRequest, Error, Handle, anchor_path, read_file_arg};

    /// `xyz.openbmc_project.Certs.Install` on our trust store.
    #[derive(Debug)]
    pub struct AnchorInstall {
        handle: Handle,
    }

    impl AnchorInstall {
        /// Serves the actor behind `handle`.
        pub fn new(handle: Handle) -> Self {
            AnchorInstall { handle }
        }
    }

    #[zbus::interface(name = "xyz.openbmc_project.Certs.Install")]
    impl AnchorInstall {
        /// Adds the CA certificate in the file `Path` (PEM or DER, valid now) to our own
        /// trust store (never bmcweb's) and returns its object. An anchor already there:
        /// NotAllowed; anything else refused: InvalidArgument; nothing changes then.
        #[zbus(name = "Install", out_args("ObjectPath"))]
        async fn install(&self, Path: String) -> Result<String, Error> {
            let bytes = read_file_arg(Path).await?;
            let id = self.handle.anchors(AnchorRequest::Install(bytes)).await?;
            Ok(anchor_path(&id))
        }
    }

    /// `xyz.openbmc_project.Certs.Replace` on the CA certificate.
    #[derive(Debug)]
    pub struct CaReplace {
        handle: Handle,
    }

    #[zbus::interface(name = "xyz.openbmc_project.Certs.Replace")]
    impl CaReplace {
        /// Installs the CA certificate in the file `Path` (PEM or DER): issued by a CA for this
        /// BMC's CA key and valid now. The keys, and so every pin, stay; peers get the new
        /// chain at once. Anything else is refused with InvalidArgument and changes nothing.
        #[zbus(name = "Replace")]
        async fn replace(&self, Path: String) -> Result<(), Error> {
            let bytes = read_file_arg(Path).await?;
            self.handle
                .certificates(CertificateRequest::ReplaceCa(bytes))
                .await?;
            Ok(())
        }
    }

    impl CaReplace {
        /// Serves the actor behind `handle`.
        pub fn new(handle: Handle) -> Self {
            CaReplace { handle }
        }
    }
}

/// Which of our own two certificates a [`CertificateDelete`] object stands for.
#[derive(Clone, Copy, Debug)]
enum OwnCertificate {
    /// The per-BMC CA certificate.
    Ca,
    /// The identity leaf.
    Leaf,
}

/// `xyz.openbmc_project.Object.Delete` on the CA certificate or the identity leaf.
#[derive(Debug)]
pub struct CertificateDelete {
    handle: Handle,
    of: OwnCertificate,
}

#[zbus::interface(name = "xyz.openbmc_project.Object.Delete")]
impl CertificateDelete {
    /// Falls back to a newly issued certificate for the same key (seed 004: a deleted
    /// server certificate is replaced by a self-signed one): a self-issued CA certificate,
    /// or a new leaf under the current CA certificate. The object stays.
    #[zbus(name = "Delete")]
    async fn delete(&self) -> Result<(), Error> {
        let request = match self.of {
            OwnCertificate::Ca => CertificateRequest::DeleteCa,
            OwnCertificate::Leaf => CertificateRequest::DeleteLeaf,
        };
        self.handle.certificates(request).await?;
        Ok(())
    }
}

/// Object path of the anchor with id `id`.
pub fn anchor_path(id: &str) -> String {
    format!("{AUTHORITY_PATH}/{id}")
}

/// `xyz.openbmc_project.Object.Delete` on an anchor.
#[derive(Debug)]
pub struct AnchorDelete {
    handle: Handle,
    id: String,
}

#[zbus::interface(name = "xyz.openbmc_project.Object.Delete")]
impl AnchorDelete {
    /// Removes the anchor from our trust store; peers it vouched for in anchored mode are
    /// no longer admitted by it (pinned peers stay pinned).
    #[zbus(name = "Delete")]
    async fn delete(&self) -> Result<(), Error> {
        self.handle
            .anchors(AnchorRequest::Delete(self.id.clone()))
            .await?;
        Ok(())
    }
}

/// Brings the anchor objects from `old` to `new` (added or removed by id).
///
/// # Errors
/// zbus errors.
pub async fn sync_anchors(
    conn: &Connection,
    handle: &Handle,
    old: &[std::sync::Arc<[u8]>],
    new: &[std::sync::Arc<[u8]>],
) -> zbus::Result<()> {
    use crate::identity::anchors::id;
    let server = conn.object_server();
    let before: std::collections::BTreeSet<String> = old.iter().map(|d| id(d)).collect();
    let after: std::collections::BTreeMap<String, &[u8]> =
        new.iter().map(|d| (id(d), &d[..])).collect();
    for gone in before.iter().filter(|i| !after.contains_key(*i)) {
        let path = anchor_path(gone);
        remove::<AnchorDelete>(server, &path).await?;
        remove::<Certificate>(server, &path).await?;
    }
    for (name, der) in after.iter().filter(|(i, _)| !before.contains(*i)) {
        let path = anchor_path(name);
        server
            .at(path.as_str(), Certificate::new(properties(der)?))
            .await?;
        server
            .at(
                path.as_str(),
                AnchorDelete {
                    handle: handle.clone(),
                    id: name.clone(),
                },
            )
            .await?;
    }
    Ok(())
}

fn properties(der: &[u8]) -> zbus::Result<CertificateProperties> {
    CertificateProperties::from_der(der).map_err(|e| zbus::Error::Failure(e.to_string()))
}

/// Brings the certificate objects from `old` to `new` (added, updated with
/// PropertiesChanged, or removed with the CSR).
///
/// # Errors
/// zbus errors.
pub async fn sync(
    conn: &Connection,
    handle: &Handle,
    old: Option<&IdentityChain>,
    new: Option<&IdentityChain>,
) -> zbus::Result<()> {
    let server = conn.object_server();
    match (old, new) {
        (None, None) => {}
        (Some(_), None) => {
            remove::<Certificate>(server, CERT_CA_PATH).await?;
            remove::<CaReplace>(server, CERT_CA_PATH).await?;
            remove::<CertificateDelete>(server, CERT_CA_PATH).await?;
            remove::<Certificate>(server, CERT_IDENTITY_PATH).await?;
            remove::<CertificateDelete>(server, CERT_IDENTITY_PATH).await?;
            remove_csr(server).await?;
        }
        (None, Some(chain)) => {
            server
                .at(CERT_CA_PATH, Certificate::new(properties(&chain.ca)?))
                .await?;
            server
                .at(CERT_CA_PATH, CaReplace::new(handle.clone()))
                .await?;
            server
                .at(
                    CERT_CA_PATH,
                    CertificateDelete {
                        handle: handle.clone(),
                        of: OwnCertificate::Ca,
                    },
                )
                .await?;
            server
                .at(
                    CERT_IDENTITY_PATH,
                    Certificate::new(properties(&chain.leaf)?),
                )
                .await?;
            server
                .at(
                    CERT_IDENTITY_PATH,
                    CertificateDelete {
                        handle: handle.clone(),
                        of: OwnCertificate::Leaf,
                    },
                )
                .await?;
        }
        (Some(old), Some(new)) => {
            for (path, before, after) in [
                (CERT_CA_PATH, &old.ca, &new.ca),
                (CERT_IDENTITY_PATH, &old.leaf, &new.leaf),
            ] {
                if before == after {
                    continue;
                }
                let iface = server.interface::<_, Certificate>(path).await?;
                let emitter = iface.signal_emitter().clone();
                iface
                    .get_mut()
                    .await
                    .update(properties(after)?, &emitter)
                    .await?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_arguments_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            read_certificate_file(&"/x".repeat(MAX_PATH_LEN)),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            read_certificate_file("relative.pem"),
            Err(Error::InvalidArgument(_))
        ));
        assert!(matches!(
            read_certificate_file(dir.path().to_str().unwrap()),
            Err(Error::InvalidArgument(_))
        ));
        let big = dir.path().join("big.pem");
        std::fs::write(&big, vec![b'A'; usize::try_from(MAX_FILE_LEN).unwrap() + 1]).unwrap();
        assert!(matches!(
            read_certificate_file(big.to_str().unwrap()),
            Err(Error::InvalidArgument(_))
        ));
        let ok = dir.path().join("ok.pem");
        std::fs::write(&ok, b"bytes").unwrap();
        assert_eq!(
            read_certificate_file(ok.to_str().unwrap()).unwrap(),
            b"bytes"
        );
    }
}
