//! Client of `bmc-attestation`: `xyz.openbmc_project.Attestation.Requester.Attest` on
//! `xyz.openbmc_project.attestation`. The pairing manager asks it to attest a peer and gets
//! the verdict in the method reply (no signal matching needed: a reply can only come from
//! the service that was called).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use zbus::zvariant::OwnedObjectPath;

use crate::identity::Fingerprint;
use crate::pairing::state::AttestationOutcome;

/// Bus name of the attestation service.
pub const SERVICE: &str = "xyz.openbmc_project.attestation";

/// One measurement index as reported: `(index, value hex, status, expected hex)`.
pub type MeasurementEntry = (u8, String, String, String);

/// The reply of `Attest`.
pub type AttestReply = (
    OwnedObjectPath,
    bool,
    String,
    Vec<Vec<u8>>,
    Vec<MeasurementEntry>,
    String,
);

/// The D-Bus proxy.
#[zbus::proxy(
    interface = "xyz.openbmc_project.Attestation.Requester",
    default_service = "xyz.openbmc_project.attestation",
    default_path = "/xyz/openbmc_project/attestation"
)]
pub trait Requester {
    /// Attests the SPDM responder at `address` under `trustPolicy`.
    #[zbus(name = "Attest")]
    fn attest(&self, address: &str, trust_policy: &str) -> zbus::Result<AttestReply>;
}

/// Which chains the attestation accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    /// Any self-consistent chain (the identity proven is reported for pinning).
    FirstContact,
    /// Chains to an installed trust anchor only.
    Anchored,
    /// Only the identity with this pin.
    Pinned(Fingerprint),
}

impl Policy {
    fn as_arg(&self) -> String {
        match self {
            Policy::FirstContact => "first-contact".to_owned(),
            Policy::Anchored => "anchored".to_owned(),
            Policy::Pinned(fp) => format!("pinned:{fp}"),
        }
    }
}

/// What an attestation that ran to the end found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attested {
    /// The appraisal.
    pub outcome: AttestationOutcome,
    /// The identity the peer proved (signatures verified under its chain), if it did.
    pub fingerprint: Option<Fingerprint>,
    /// The leaf's common name, if it proved an identity.
    pub common_name: Option<String>,
    /// Why it was refused, when it was.
    pub reason: Option<String>,
}

impl Attested {
    /// True for an outcome that admits the peer.
    pub fn trusted(&self) -> bool {
        matches!(
            self.outcome,
            AttestationOutcome::Trusted | AttestationOutcome::TrustedWithFindings
        )
    }
}

/// Why there is no verdict at all.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service refused or failed the call (unreachable peer, timeout, bad input, service
    /// not running): `name` is the D-Bus error name.
    #[error("{name}: {message}")]
    Call {
        /// D-Bus error name (`xyz.openbmc_project.Common.Error.Unavailable`, ...).
        name: String,
        /// Its message.
        message: String,
    },
    /// No reply within the deadline.
    #[error("no answer from {SERVICE} within {0:?}")]
    Timeout(Duration),
    /// The reply does not have the documented shape.
    #[error("malformed reply from {SERVICE}: {0}")]
    Malformed(String),
}

#[derive(Deserialize)]
struct ReportJson {
    outcome: String,
    #[serde(default)]
    error: Option<String>,
}

/// A connection to the attestation service.
#[derive(Clone, Debug)]
pub struct Attestor {
    proxy: RequesterProxy<'static>,
    timeout: Duration,
}

impl Attestor {
    /// Uses `conn` (any connection to the bus the service is on).
    ///
    /// # Errors
    /// zbus errors building the proxy.
    pub async fn new(conn: &zbus::Connection, timeout: Duration) -> zbus::Result<Self> {
        Ok(Attestor {
            proxy: RequesterProxy::new(conn).await?,
            timeout,
        })
    }

    /// Attests the responder at `addr` under `policy`.
    ///
    /// # Errors
    /// [`Error`] when no verdict was reached.
    ///
    /// # Cancel safety
    /// Cancel safe; the service finishes the attestation on its own.
    pub async fn attest(&self, addr: SocketAddr, policy: Policy) -> Result<Attested, Error> {
        let (address, policy) = (addr.to_string(), policy.as_arg());
        let call = self.proxy.attest(&address, &policy);
        let reply = tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| Error::Timeout(self.timeout))?
            .map_err(|e| match e {
                zbus::Error::MethodError(name, message, _) => Error::Call {
                    name: name.to_string(),
                    message: message.unwrap_or_default(),
                },
                other => Error::Call {
                    name: "zbus".into(),
                    message: other.to_string(),
                },
            })?;
        interpret(reply)
    }
}

/// Turns a reply into a verdict, trusting nothing the reply does not say: the outcome comes
/// from the report, the identity only from a non-empty fingerprint.
fn interpret(reply: AttestReply) -> Result<Attested, Error> {
    let (_, trusted, fingerprint, chain, _, report) = reply;
    let report: ReportJson =
        serde_json::from_str(&report).map_err(|e| Error::Malformed(e.to_string()))?;
    let outcome = match report.outcome.as_str() {
        "Trusted" => AttestationOutcome::Trusted,
        "TrustedWithFindings" => AttestationOutcome::TrustedWithFindings,
        "Rejected" => AttestationOutcome::Rejected,
        other => return Err(Error::Malformed(format!("outcome {other:?}"))),
    };
    if trusted
        != matches!(
            outcome,
            AttestationOutcome::Trusted | AttestationOutcome::TrustedWithFindings
        )
    {
        return Err(Error::Malformed("`trusted` contradicts the outcome".into()));
    }
    let fingerprint = if fingerprint.is_empty() {
        None
    } else {
        Some(Fingerprint::from_hex(&fingerprint).map_err(|e| Error::Malformed(e.to_string()))?)
    };
    if trusted && fingerprint.is_none() {
        return Err(Error::Malformed("trusted without a proven identity".into()));
    }
    // The chain is root first; the leaf names the peer.
    let common_name = chain
        .last()
        .and_then(|leaf| crate::identity::cert::summarize(leaf).ok())
        .filter(|s| Some(s.public_key.fingerprint()) == fingerprint)
        .and_then(|s| s.common_name);
    Ok(Attested {
        outcome,
        fingerprint,
        common_name,
        reason: report.error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(trusted: bool, fp: &str, report: &str) -> AttestReply {
        (
            OwnedObjectPath::try_from("/x").unwrap(),
            trusted,
            fp.to_owned(),
            Vec::new(),
            Vec::new(),
            report.to_owned(),
        )
    }

    #[test]
    fn replies_are_read_strictly() {
        let fp = "ab".repeat(32);
        let ok = interpret(reply(true, &fp, r#"{"outcome":"Trusted"}"#)).unwrap();
        assert!(ok.trusted());
        assert_eq!(ok.fingerprint.unwrap().to_hex(), fp);
        let audit = interpret(reply(true, &fp, r#"{"outcome":"TrustedWithFindings"}"#)).unwrap();
        assert_eq!(audit.outcome, AttestationOutcome::TrustedWithFindings);
        let no = interpret(reply(false, "", r#"{"outcome":"Rejected","error":"pin"}"#)).unwrap();
        assert!(!no.trusted() && no.fingerprint.is_none());
        assert_eq!(no.reason.as_deref(), Some("pin"));
        for bad in [
            reply(true, "", r#"{"outcome":"Trusted"}"#),
            reply(true, &fp, r#"{"outcome":"Rejected"}"#),
            reply(false, &fp, r#"{"outcome":"Trusted"}"#),
            reply(true, "zz", r#"{"outcome":"Trusted"}"#),
            reply(true, &fp, r#"{"outcome":"Maybe"}"#),
            reply(true, &fp, "not json"),
        ] {
            assert!(interpret(bad).is_err());
        }
    }

    #[test]
    fn policies_are_spelled_as_the_service_expects() {
        assert_eq!(Policy::FirstContact.as_arg(), "first-contact");
        assert_eq!(Policy::Anchored.as_arg(), "anchored");
        assert_eq!(
            Policy::Pinned(Fingerprint([1; 32])).as_arg(),
            format!("pinned:{}", "01".repeat(32))
        );
    }
}
