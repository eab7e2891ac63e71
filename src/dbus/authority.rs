//! The group authority on D-Bus (seed 002's `SignCSR`, phosphor-dbus-interfaces
//! `Certs/Authority` and `Certs/Entry`), served only on a BMC configured as group authority,
//! at [`GROUP_AUTHORITY_PATH`]:
//!
//! - `<GROUP_AUTHORITY_PATH>` — `Certs.Authority` (`SignCSR`) and an ObjectManager, so each
//!   request object is announced by InterfacesAdded;
//! - `<GROUP_AUTHORITY_PATH>/entry/<n>` — one per signed request: `Certs.Entry`
//!   (`ClientCertificate`: the member's CA certificate then the group root, PEM; `Status`
//!   Pending, then Complete) and `Object.Delete`, which the caller uses once it has read the
//!   certificate (as bmcweb does in seed 002). The oldest are removed beyond
//!   [`MAX_ENTRIES`];
//! - `<GROUP_AUTHORITY_PATH>/entry/channel_<n>` — a member's request over the pinned channel,
//!   the same interface: Pending, then Complete or BadCSR, then removed (the member got its
//!   answer in the channel).
//!
//! The rule is the core's (`Pairing::may_sign`): the CSR's key must be the attested CA key of
//! a paired, admitted, freshly attested peer. A request it refuses (seed 002's BadCSR), and
//! any malformed or oversized argument, gets `InvalidArgument` and creates nothing.

// D-Bus argument names come from parameter names: `SignCSR(CSR)` as the YAML has it.
#![allow(non_snake_case)]

use std::collections::VecDeque;
use std::sync::Mutex;

use zbus::ObjectServer;
use zbus::zvariant::OwnedObjectPath;

use super::Error;
use crate::contract::manager::GROUP_AUTHORITY_PATH;
use crate::pairing::handle::{Handle, SignRequestState};

/// Longest `CSR` argument accepted (bytes of PEM).
pub const MAX_CSR_PEM_LEN: usize = 8192;
/// Most request objects kept; the oldest goes first.
pub const MAX_ENTRIES: usize = 16;

/// The `Status` values of `Certs.Entry` (its `State` enumeration).
pub mod state {
    /// Signing request is pending.
    pub const PENDING: &str = "xyz.openbmc_project.Certs.Entry.State.Pending";
    /// The CSR was malformed.
    pub const BAD_CSR: &str = "xyz.openbmc_project.Certs.Entry.State.BadCSR";
    /// CSR signing complete.
    pub const COMPLETE: &str = "xyz.openbmc_project.Certs.Entry.State.Complete";
}

/// The DER of the one `CERTIFICATE REQUEST` in `pem_text`.
///
/// # Errors
/// [`Error::InvalidArgument`] for anything else.
pub fn parse_csr_pem(pem_text: &str) -> Result<Vec<u8>, Error> {
    if pem_text.len() > MAX_CSR_PEM_LEN {
        return Err(Error::InvalidArgument(format!(
            "the CSR is longer than {MAX_CSR_PEM_LEN} bytes"
        )));
    }
    let blocks = pem::parse_many(pem_text)
        .map_err(|e| Error::InvalidArgument(format!("malformed PEM: {e}")))?;
    match blocks.as_slice() {
        [one] if one.tag() == "CERTIFICATE REQUEST" || one.tag() == "NEW CERTIFICATE REQUEST" => {
            Ok(one.contents().to_vec())
        }
        _ => Err(Error::InvalidArgument(
            "expected exactly one PEM CERTIFICATE REQUEST".into(),
        )),
    }
}

fn to_pem(der: &[u8]) -> String {
    pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()))
}

/// `xyz.openbmc_project.Certs.Authority` at [`GROUP_AUTHORITY_PATH`].
#[derive(Debug)]
pub struct Authority {
    handle: Handle,
    entries: Mutex<(u64, VecDeque<String>)>,
}

impl Authority {
    /// Serves the actor behind `handle`.
    pub fn new(handle: Handle) -> Self {
        Authority {
            handle,
            entries: Mutex::new((0, VecDeque::new())),
        }
    }

    /// A new entry path, and the paths to remove to stay within [`MAX_ENTRIES`].
    fn next_entry(&self) -> (String, Vec<String>) {
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        guard.0 += 1;
        let path = format!("{GROUP_AUTHORITY_PATH}/entry/{}", guard.0);
        guard.1.push_back(path.clone());
        let mut evicted = Vec::new();
        while guard.1.len() > MAX_ENTRIES {
            evicted.extend(guard.1.pop_front());
        }
        (path, evicted)
    }
}

#[zbus::interface(name = "xyz.openbmc_project.Certs.Authority")]
impl Authority {
    /// Signs `CSR` (PEM) with the group root if the core's rule allows it, and returns the
    /// request object (`Certs.Entry` and `Object.Delete`). Refused or malformed:
    /// InvalidArgument, nothing created.
    #[zbus(name = "SignCSR", out_args("path"))]
    async fn sign_csr(
        &self,
        CSR: String,
        #[zbus(object_server)] server: &ObjectServer,
    ) -> Result<OwnedObjectPath, Error> {
        let der = parse_csr_pem(&CSR)?;
        let (certificate, root) = self.handle.sign_csr(der).await?;
        let (path, evicted) = self.next_entry();
        for old in evicted {
            remove_entry(server, &old).await?;
        }
        // Announced Pending (InterfacesAdded), then Complete (PropertiesChanged), as seed
        // 002's clients expect.
        server
            .at(
                path.as_str(),
                Entry {
                    client_certificate: String::new(),
                    status: state::PENDING,
                },
            )
            .await?;
        server.at(path.as_str(), EntryDelete).await?;
        let iface = server.interface::<_, Entry>(path.as_str()).await?;
        let emitter = iface.signal_emitter().clone();
        {
            let mut entry = iface.get_mut().await;
            entry.client_certificate = to_pem(&certificate) + &to_pem(&root);
            entry.status = state::COMPLETE;
            entry.client_certificate_changed(&emitter).await?;
            entry.status_changed(&emitter).await?;
        }
        OwnedObjectPath::try_from(path).map_err(|e| Error::InternalFailure(e.to_string()))
    }
}

async fn remove_entry(server: &ObjectServer, path: &str) -> zbus::Result<()> {
    for r in [
        server.remove::<EntryDelete, _>(path).await,
        server.remove::<Entry, _>(path).await,
    ] {
        match r {
            Ok(_) | Err(zbus::Error::InterfaceNotFound) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `xyz.openbmc_project.Certs.Entry` of one request.
#[derive(Debug)]
pub struct Entry {
    client_certificate: String,
    status: &'static str,
}

fn written_by_us() -> zbus::fdo::Error {
    zbus::fdo::Error::PropertyReadOnly("the group authority writes its request objects".into())
}

// The macro generates undocumented `*_changed` helpers.
#[allow(missing_docs)]
#[zbus::interface(name = "xyz.openbmc_project.Certs.Entry")]
impl Entry {
    /// The member's CA certificate then the group root, PEM (empty until Complete).
    #[zbus(property(emits_changed_signal = "true"), name = "ClientCertificate")]
    async fn client_certificate(&self) -> String {
        self.client_certificate.clone()
    }

    /// Refused: the authority fills it in.
    #[zbus(property, name = "ClientCertificate")]
    async fn set_client_certificate(&mut self, _value: String) -> zbus::fdo::Result<()> {
        Err(written_by_us())
    }

    /// Pending, then Complete.
    #[zbus(property(emits_changed_signal = "true"), name = "Status")]
    async fn status(&self) -> String {
        self.status.to_owned()
    }

    /// Refused: the authority sets it.
    #[zbus(property, name = "Status")]
    async fn set_status(&mut self, _value: String) -> zbus::fdo::Result<()> {
        Err(written_by_us())
    }
}

/// `xyz.openbmc_project.Object.Delete` on a request object: the caller is done with it.
#[derive(Debug)]
pub struct EntryDelete;

#[zbus::interface(name = "xyz.openbmc_project.Object.Delete")]
impl EntryDelete {
    /// Removes the request object (the certificate issued stays valid).
    #[zbus(name = "Delete")]
    async fn delete(
        &self,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(header)] header: zbus::message::Header<'_>,
    ) -> Result<(), Error> {
        let path = header
            .path()
            .ok_or_else(|| Error::InternalFailure("no object path".into()))?
            .to_string();
        remove_entry(server, &path).await?;
        Ok(())
    }
}

/// Object path of the channel request `request`.
pub fn channel_request_path(request: u64) -> String {
    format!("{GROUP_AUTHORITY_PATH}/entry/channel_{request}")
}

/// Shows a member's `SignRequest` over the channel as seed 002 shows a request: its
/// `Certs.Entry` object appears Pending (InterfacesAdded), turns Complete or BadCSR
/// (PropertiesChanged), and is removed once complete (InterfacesRemoved): the member has
/// its answer, nobody else reads it.
///
/// # Errors
/// zbus errors.
pub async fn channel_request(
    conn: &zbus::Connection,
    request: u64,
    state: SignRequestState,
    client_certificate: String,
) -> zbus::Result<()> {
    let server = conn.object_server();
    let path = channel_request_path(request);
    match state {
        SignRequestState::Pending => {
            server
                .at(
                    path.as_str(),
                    Entry {
                        client_certificate: String::new(),
                        status: state::PENDING,
                    },
                )
                .await?;
        }
        SignRequestState::Complete | SignRequestState::BadCsr => {
            let iface = server.interface::<_, Entry>(path.as_str()).await?;
            let emitter = iface.signal_emitter().clone();
            {
                let mut entry = iface.get_mut().await;
                entry.status = if state == SignRequestState::Complete {
                    state::COMPLETE
                } else {
                    state::BAD_CSR
                };
                if !client_certificate.is_empty() {
                    entry.client_certificate = client_certificate;
                    entry.client_certificate_changed(&emitter).await?;
                }
                entry.status_changed(&emitter).await?;
            }
            remove_entry(server, &path).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csr_arguments_are_one_bounded_pem_request() {
        let ok = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", vec![1, 2, 3]));
        assert_eq!(parse_csr_pem(&ok).unwrap(), vec![1, 2, 3]);
        for bad in [
            String::new(),
            "not pem".to_owned(),
            pem::encode(&pem::Pem::new("CERTIFICATE", vec![1])),
            ok.clone() + &ok,
            "A".repeat(MAX_CSR_PEM_LEN + 1),
        ] {
            assert!(
                matches!(parse_csr_pem(&bad), Err(Error::InvalidArgument(_))),
                "{bad:?}"
            );
        }
    }
}
