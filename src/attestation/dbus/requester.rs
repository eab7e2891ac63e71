//! `xyz.openbmc_project.Attestation.Requester` at `/xyz/openbmc_project/attestation`: attest
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

#[zbus::interface(name = "xyz.openbmc_project.Attestation.Requester")]
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
