//! `xyz.openbmc_project.Attestation.Requester` at `/xyz/openbmc_project/attestation`: attest
//! a peer address on request and reply with the verdict.

// `trustPolicy` is spelled as the YAML spells it: argument names are part of the
// introspected interface and zbus takes them from the Rust parameter names.
#![allow(non_snake_case)]

use zbus::object_server::ObjectServer;

use super::super::requester::{PolicyChoice, parse_address};
use zbus::zvariant::OwnedObjectPath;

use super::{Error, MeasurementEntry, Service};

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
        // Spelled out (not `AttestReply`): zbus derives the out arguments from the tuple.
        (
            OwnedObjectPath,
            bool,
            String,
            Vec<Vec<u8>>,
            Vec<MeasurementEntry>,
            String,
        ),
        Error,
    > {
        let addr = parse_address(&address, self.service.default_port())?;
        let choice = PolicyChoice::parse(&trustPolicy)?;
        self.service.attest(server, conn, addr, choice).await
    }
}
