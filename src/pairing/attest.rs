//! How the pairing actor gets attestations: the [`Attest`] trait, and its implementation on
//! D-Bus, [`BusAttestor`], a client of `bmc-attestation`'s `Attest`. The verdict comes in
//! the method reply (no signal matching needed: a reply can only come from the service that
//! was called), read strictly by the [`crate::contract`].

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bmc_pairing_core::pairing::{AttestPolicy, AttestationReport};

use zbus::fdo::DBusProxy;
use zbus::names::BusName;

use crate::contract::{self, AttestReply, MalformedReply, TrustPolicyArg};
use crate::dbus::owner::{self, TrustedUsers};

/// Runs SPDM attestations of peers for the pairing actor.
pub trait Attest: Send + Sync + 'static {
    /// Attests the SPDM responder at `address` under `policy`.
    ///
    /// # Errors
    /// [`AttestError`] when no verdict was reached.
    fn attest(
        &self,
        address: SocketAddr,
        policy: AttestPolicy,
    ) -> impl Future<Output = Result<AttestationReport, AttestError>> + Send;
}

/// Why an attestation reached no verdict.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// Attestation is off in the configuration (the core never asks then).
    #[error("attestation is off")]
    Off,
    /// The service refused or failed the call (unreachable peer, timeout, bad input).
    #[error("{service} answered {name}: {message}")]
    Refused {
        /// The service.
        service: &'static str,
        /// The D-Bus error name (`xyz.openbmc_project.Common.Error.Unavailable`, ...).
        name: String,
        /// Its message.
        message: String,
    },
    /// The call itself failed (service not running, bus gone).
    #[error("cannot call {service}")]
    Call {
        /// The service.
        service: &'static str,
        /// Why.
        #[source]
        source: zbus::Error,
    },
    /// No reply within the deadline.
    #[error("no answer from {service} within {timeout:?}")]
    Timeout {
        /// The service.
        service: &'static str,
        /// The deadline.
        timeout: Duration,
    },
    /// The service is owned by an untrusted user.
    #[error("refusing the attestation service")]
    Untrusted(#[source] owner::Untrusted),
    /// The reply breaks the contract.
    #[error("malformed reply from {service}")]
    Malformed {
        /// The service.
        service: &'static str,
        /// What is wrong with it.
        #[source]
        source: MalformedReply,
    },
}

/// The D-Bus proxy of `xyz.openbmc_project.BmcPairing.Attestation.Requester`.
#[zbus::proxy(
    interface = "xyz.openbmc_project.BmcPairing.Attestation.Requester",
    default_service = "xyz.openbmc_project.attestation",
    default_path = "/xyz/openbmc_project/attestation"
)]
pub trait Requester {
    /// Attests the SPDM responder at `address` under `trustPolicy`.
    #[zbus(name = "Attest")]
    fn attest(&self, address: &str, trust_policy: &str) -> zbus::Result<AttestReply>;
}

/// [`Attest`] through `bmc-attestation` on D-Bus. Every call goes to the unique name that
/// owns the service at that moment, after checking that the owner runs as a trusted user:
/// anyone may own the name under OpenBMC's bus policy, and a forged verdict would pin a peer
/// that was never attested.
#[derive(Clone, Debug)]
pub struct BusAttestor {
    conn: zbus::Connection,
    dbus: DBusProxy<'static>,
    trusted: TrustedUsers,
    timeout: Duration,
}

impl BusAttestor {
    /// Uses `conn` (a connection of its own, so replies come back on it whatever else the
    /// main connection does); believes only an owner running as one of `trusted`.
    ///
    /// # Errors
    /// zbus errors building the proxy.
    pub async fn new(
        conn: &zbus::Connection,
        trusted: TrustedUsers,
        timeout: Duration,
    ) -> zbus::Result<Self> {
        Ok(BusAttestor {
            conn: conn.clone(),
            dbus: DBusProxy::new(conn).await?,
            trusted,
            timeout,
        })
    }

    /// A proxy of the service's current owner, if that owner is trusted.
    async fn owner(&self) -> Result<RequesterProxy<'static>, AttestError> {
        let owner = self
            .dbus
            .get_name_owner(BusName::try_from(SERVICE).map_err(|e| AttestError::Call {
                service: SERVICE,
                source: e.into(),
            })?)
            .await
            .map_err(|e| AttestError::Call {
                service: SERVICE,
                source: e.into(),
            })?;
        owner::check(&self.dbus, SERVICE, &owner, &self.trusted)
            .await
            .map_err(AttestError::Untrusted)?;
        let call_err = |source| AttestError::Call {
            service: SERVICE,
            source,
        };
        RequesterProxy::builder(&self.conn)
            .destination(owner.into_inner())
            .map_err(call_err)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await
            .map_err(call_err)
    }
}

const SERVICE: &str = contract::attestation::BUS_NAME;

impl Attest for BusAttestor {
    async fn attest(
        &self,
        address: SocketAddr,
        policy: AttestPolicy,
    ) -> Result<AttestationReport, AttestError> {
        let (address, policy) = (address.to_string(), TrustPolicyArg(policy).to_string());
        let call = async {
            let proxy = self.owner().await?;
            proxy.attest(&address, &policy).await.map_err(|e| match e {
                zbus::Error::MethodError(name, message, _) => AttestError::Refused {
                    service: SERVICE,
                    name: name.to_string(),
                    message: message.unwrap_or_default(),
                },
                source => AttestError::Call {
                    service: SERVICE,
                    source,
                },
            })
        };
        let reply = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| AttestError::Timeout {
                service: SERVICE,
                timeout: self.timeout,
            })??;
        read_reply(&reply).map_err(|source| AttestError::Malformed {
            service: SERVICE,
            source,
        })
    }
}

/// `None` is attestation switched off: every request fails with [`AttestError::Off`].
impl<T: Attest> Attest for Option<T> {
    async fn attest(
        &self,
        address: SocketAddr,
        policy: AttestPolicy,
    ) -> Result<AttestationReport, AttestError> {
        match self {
            Some(attest) => attest.attest(address, policy).await,
            None => Err(AttestError::Off),
        }
    }
}

/// Turns a reply into a report, trusting nothing the reply does not say: the outcome from
/// its outcome (checked against `trusted`), the identity only from a non-empty fingerprint,
/// the name only from a chain whose leaf is that identity.
fn read_reply(reply: &AttestReply) -> Result<AttestationReport, MalformedReply> {
    let outcome = reply.outcome()?;
    let fingerprint = reply.fingerprint()?;
    if outcome.vouches() && fingerprint.is_none() {
        return Err(MalformedReply::TrustedWithoutIdentity);
    }
    // The chain is root first; the leaf names the peer, the certificate before it is the
    // leaf's issuer (the peer's CA: what a group authority certifies for it).
    let leaf = reply
        .chain
        .last()
        .and_then(|leaf| bmc_pairing_core::x509::summarize(leaf).ok())
        .filter(|s| Some(s.public_key.fingerprint()) == fingerprint);
    let ca_key = leaf.as_ref().and_then(|_| {
        let issuer = reply.chain.len().checked_sub(2)?;
        let ca = bmc_pairing_core::x509::summarize(reply.chain.get(issuer)?).ok()?;
        Some(ca.public_key.fingerprint())
    });
    let common_name = leaf.and_then(|s| s.common_name);
    let reason = serde_json::from_str::<serde_json::Value>(&reply.verdict_json)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_owned));
    Ok(AttestationReport {
        outcome,
        fingerprint,
        common_name,
        reason,
        ca_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::outcome_to_wire;
    use bmc_pairing_core::pairing::AttestationOutcome;
    use zbus::zvariant::OwnedObjectPath;

    fn reply(trusted: bool, outcome: AttestationOutcome, fp: &str, json: &str) -> AttestReply {
        AttestReply {
            peer: OwnedObjectPath::try_from("/x").unwrap(),
            trusted,
            outcome: outcome_to_wire(outcome),
            fingerprint: fp.to_owned(),
            chain: Vec::new(),
            measurements: Vec::new(),
            verdict_json: json.to_owned(),
        }
    }

    #[test]
    fn replies_are_read_strictly() {
        use AttestationOutcome::*;
        let fp = "ab".repeat(32);
        let ok = read_reply(&reply(true, Trusted, &fp, "{}")).unwrap();
        assert_eq!(ok.outcome, Trusted);
        assert_eq!(ok.fingerprint.unwrap().to_hex(), fp);
        let audit = read_reply(&reply(true, TrustedWithFindings, &fp, "{}")).unwrap();
        assert_eq!(audit.outcome, TrustedWithFindings);
        let no = read_reply(&reply(false, Rejected, "", r#"{"error":"pin"}"#)).unwrap();
        assert!(no.fingerprint.is_none());
        assert_eq!(no.reason.as_deref(), Some("pin"));
        for bad in [
            reply(true, Trusted, "", "{}"),
            reply(true, Rejected, &fp, "{}"),
            reply(false, Trusted, &fp, "{}"),
            reply(true, Trusted, "zz", "{}"),
        ] {
            assert!(read_reply(&bad).is_err(), "{bad:?}");
        }
    }
}
