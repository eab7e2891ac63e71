//! `xyz.openbmc_project.Attestation.Responder` at `/xyz/openbmc_project/attestation`: what
//! this BMC's SPDM responder serves.

use tokio::sync::watch;

use crate::identity::Fingerprint;

/// The manager object's responder interface.
#[derive(Debug)]
pub struct Responder {
    port: u16,
    status: watch::Receiver<Option<Fingerprint>>,
}

impl Responder {
    /// Reports a responder on `port` serving the identity in `status`.
    pub fn new(port: u16, status: watch::Receiver<Option<Fingerprint>>) -> Self {
        Responder { port, status }
    }
}

// The macro generates undocumented `*_changed` helpers.
#[allow(missing_docs)]
#[zbus::interface(name = "xyz.openbmc_project.Attestation.Responder")]
impl Responder {
    /// TCP port of the SPDM responder (DSP0287).
    #[zbus(property(emits_changed_signal = "const"), name = "Port")]
    async fn port(&self) -> u16 {
        self.port
    }

    /// SHA-256 of the SubjectPublicKeyInfo of the identity served in slot 0, lowercase hex;
    /// empty while there is no identity to serve (connections are then closed at once).
    #[zbus(property(emits_changed_signal = "true"), name = "IdentityFingerprint")]
    async fn identity_fingerprint(&self) -> String {
        self.status.borrow().map(|f| f.to_hex()).unwrap_or_default()
    }
}
