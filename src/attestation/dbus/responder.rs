//! `xyz.openbmc_project.BmcPairing.Attestation.Responder` at `/xyz/openbmc_project/attestation`: what
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
#[zbus::interface(name = "xyz.openbmc_project.BmcPairing.Attestation.Responder")]
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::attestation::{RESPONDER_INTERFACE, ROOT_PATH};
    use crate::dbus::p2p;

    #[tokio::test]
    async fn the_served_identity_follows_the_responder() {
        let (status, rx) = watch::channel(None);
        let (_server, client) = p2p::serve(ROOT_PATH, Responder::new(4194, rx)).await;
        let fp = || {
            p2p::get::<String>(
                &client,
                ROOT_PATH,
                RESPONDER_INTERFACE,
                "IdentityFingerprint",
            )
        };
        assert_eq!(fp().await, "", "nothing served yet");
        status.send_replace(Some(Fingerprint([0xcd; 32])));
        assert_eq!(fp().await, "cd".repeat(32));
        assert_eq!(
            p2p::get::<u16>(&client, ROOT_PATH, RESPONDER_INTERFACE, "Port").await,
            4194
        );
    }
}
