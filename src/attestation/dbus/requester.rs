//! `xyz.openbmc_project.BmcPairing.Attestation.Requester` at `/xyz/openbmc_project/attestation`: attest
//! a peer address on request and reply with the verdict.

// `trustPolicy` is spelled as the YAML spells it: argument names are part of the
// introspected interface and zbus takes them from the Rust parameter names.
#![allow(non_snake_case)]

use zbus::object_server::ObjectServer;

use super::super::requester::{InputError, parse_address};
use crate::contract::{MeasurementEntry, TrustPolicyArg};
use zbus::zvariant::OwnedObjectPath;

use super::{Error, Service};

/// The manager object's requester interface.
#[derive(Debug)]
pub struct Requester {
    service: Service,
}

impl Requester {
    /// Serves `service`.
    pub fn new(service: Service) -> Self {
        Requester { service }
    }
}

#[zbus::interface(name = "xyz.openbmc_project.BmcPairing.Attestation.Requester")]
impl Requester {
    /// Attests the SPDM responder at `address` (`ip`, `ip:port`, `[ipv6]:port`) under
    /// `trustPolicy` (`first-contact`, `anchored`, `pinned:<hex fingerprint>`), creates or
    /// updates its peer object and replies with the verdict.
    #[zbus(
        name = "Attest",
        out_args(
            "peer",
            "trusted",
            "outcome",
            "fingerprint",
            "chain",
            "measurements",
            "verdictJson"
        )
    )]
    async fn attest(
        &self,
        address: String,
        trustPolicy: String,
        #[zbus(object_server)] server: &ObjectServer,
        #[zbus(connection)] conn: &zbus::Connection,
    ) -> Result<
        // `AttestReplyArgs`, spelled out: zbus takes the out arguments from the tuple's
        // syntax (an alias would introspect as one struct argument).
        (
            OwnedObjectPath,
            bool,
            String,
            String,
            Vec<Vec<u8>>,
            Vec<MeasurementEntry>,
            String,
        ),
        Error,
    > {
        let addr = parse_address(&address, self.service.default_port())?;
        let TrustPolicyArg(choice) = trustPolicy.parse().map_err(InputError::from)?;
        let reply = self.service.attest(server, conn, addr, choice).await?;
        Ok(reply.into())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use bmc_pairing_core::spdm::MeasurementPolicy;

    use super::*;
    use crate::attestation::requester::Settings;
    use crate::contract::attestation::{REQUESTER_INTERFACE, ROOT_PATH};
    use crate::dbus::p2p;
    use crate::spdm::transport::{Framing, Timeouts};

    fn service(anchors: &std::path::Path) -> Service {
        let settings = Settings {
            framing: Framing::Dsp0287,
            timeouts: Timeouts {
                io: Duration::from_millis(500),
                idle: Duration::from_millis(500),
            },
            connect_timeout: Duration::from_millis(500),
            attest_timeout: Duration::from_secs(2),
            device: None,
            measurements: MeasurementPolicy::default(),
        };
        Service::new(settings, 4194, anchors.to_path_buf(), 1)
    }

    #[tokio::test]
    async fn bad_input_is_refused_with_typed_errors_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let (_server, client) = p2p::serve(ROOT_PATH, Requester::new(service(dir.path()))).await;
        let attest = |address: &'static str, policy: &'static str| {
            let client = client.clone();
            async move {
                p2p::call(
                    &client,
                    ROOT_PATH,
                    REQUESTER_INTERFACE,
                    "Attest",
                    &(address, policy),
                )
                .await
                .map(|_| ())
                .map_err(|(name, _)| name)
            }
        };
        let invalid = Err("xyz.openbmc_project.Common.Error.InvalidArgument".to_owned());
        assert_eq!(attest("bmc-b.example", "first-contact").await, invalid);
        assert_eq!(attest("127.0.0.1:0", "first-contact").await, invalid);
        assert_eq!(attest("224.0.0.1", "first-contact").await, invalid);
        assert_eq!(attest("127.0.0.1", "trust-me").await, invalid);
        assert_eq!(attest("127.0.0.1", "pinned:abcd").await, invalid);
        assert_eq!(
            attest("127.0.0.1", "anchored").await,
            Err("xyz.openbmc_project.Common.Error.ResourceNotFound".to_owned()),
            "anchored with an empty trust store"
        );
    }
}
