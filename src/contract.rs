//! The one contract between the two daemons and their clients: bus names, object paths,
//! interface names, the trust-policy argument, and the typed reply of `Attest`. Both
//! daemons, the tests and the demo import it; nothing spells these again.

use std::fmt;
use std::str::FromStr;

use bmc_pairing_core::keys::Fingerprint;
use bmc_pairing_core::pairing::{AttestPolicy, AttestationOutcome, UnknownOutcome};
use serde::{Deserialize, Serialize};
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Type, Value};

/// Bus names, paths and interfaces of `bmc-pairing-manager`.
pub mod manager {
    /// The seed README's bus name (seed 000).
    pub const BUS_NAME: &str = "xyz.openbmc_project.BmcPairingManager";
    /// The PDI Provisioning bus name (seed 001).
    pub const PROVISIONING_BUS_NAME: &str = "xyz.openbmc_project.Provisioning";
    /// The PDI Provisioning object.
    pub const PROVISIONING_PATH: &str = "/xyz/openbmc_project/Provisioning";
    /// The PDI Provisioning interface.
    pub const PROVISIONING_INTERFACE: &str = "xyz.openbmc_project.Provisioning.Provisioning";
    /// The seed 000 manager object, also the ObjectManager of the peer objects.
    pub const MANAGER_PATH: &str = "/xyz/openbmc_project/BmcPairingManager";
    /// The seed 000 interface.
    pub const MANAGER_INTERFACE: &str = "xyz.openbmc_project.BmcPairingManager.BmcPairingManager";
    /// Parent of the per-peer objects.
    pub const PEERS_PATH: &str = "/xyz/openbmc_project/BmcPairingManager/peers";
    /// The per-peer interface.
    pub const PEER_INTERFACE: &str = "xyz.openbmc_project.BmcPairing.Peer";
    /// Our identity-validity interface, served at [`MANAGER_PATH`].
    pub const IDENTITY_INTERFACE: &str = "xyz.openbmc_project.BmcPairing.Identity";
    /// The identity certificates' collection (`Certs.CSR.Create`, an ObjectManager), in
    /// OpenBMC's `/xyz/openbmc_project/certs/server/<service>` scheme (seed 004).
    pub const CERTS_PATH: &str = "/xyz/openbmc_project/certs/server/bmcpairing";
    /// The identity leaf's `Certs.Certificate` object.
    pub const CERT_IDENTITY_PATH: &str = "/xyz/openbmc_project/certs/server/bmcpairing/identity";
    /// The per-BMC CA certificate's `Certs.Certificate` object (Replace, Delete).
    pub const CERT_CA_PATH: &str = "/xyz/openbmc_project/certs/server/bmcpairing/ca";
    /// The `Certs.CSR` object `GenerateCSR` creates.
    pub const CSR_PATH: &str = "/xyz/openbmc_project/certs/server/bmcpairing/csr";
    /// Our trust store (`Certs.Install`, an ObjectManager): one `Certs.Certificate` object
    /// per anchor below it, named by the anchor's SHA-256.
    pub const AUTHORITY_PATH: &str = "/xyz/openbmc_project/certs/authority/bmcpairing";
    /// The group authority's `Certs.Authority` (seed 002's `SignCSR`), on a BMC configured
    /// as group authority only; its request objects are `<GROUP_AUTHORITY_PATH>/entry/<n>`.
    pub const GROUP_AUTHORITY_PATH: &str = "/xyz/openbmc_project/certs/ca/bmcpairing";
    /// The trust-quorum object (seed 003).
    pub const TRUST_QUORUM_PATH: &str = "/xyz/openbmc_project/BmcPairingManager/trust_quorum";
    /// The trust-quorum interface, served at [`TRUST_QUORUM_PATH`].
    pub const TRUST_QUORUM_INTERFACE: &str = "xyz.openbmc_project.BmcPairing.TrustQuorum";
    /// The upstream factory-reset interface, served at [`MANAGER_PATH`].
    pub const FACTORY_RESET_INTERFACE: &str = "xyz.openbmc_project.Common.FactoryReset";
}

/// Bus names, paths and interfaces of `bmc-attestation`.
pub mod attestation {
    /// The bus name (the seed's, lower case).
    pub const BUS_NAME: &str = "xyz.openbmc_project.attestation";
    /// The manager object: Requester, Responder and the ObjectManager for peers.
    pub const ROOT_PATH: &str = "/xyz/openbmc_project/attestation";
    /// Parent of the per-peer objects.
    pub const PEERS_PATH: &str = "/xyz/openbmc_project/attestation/peers";
    /// The requester interface (`Attest`).
    pub const REQUESTER_INTERFACE: &str = "xyz.openbmc_project.BmcPairing.Attestation.Requester";
    /// The responder interface.
    pub const RESPONDER_INTERFACE: &str = "xyz.openbmc_project.BmcPairing.Attestation.Responder";
    /// The per-peer interface.
    pub const PEER_INTERFACE: &str = "xyz.openbmc_project.BmcPairing.Attestation.Peer";
}

/// The D-Bus spelling of an attestation outcome:
/// `xyz.openbmc_project.BmcPairing.Attestation.Peer.Outcome.<Value>`.
pub fn outcome_to_wire(outcome: AttestationOutcome) -> String {
    format!(
        "{}.Outcome.{}",
        attestation::PEER_INTERFACE,
        outcome.as_str()
    )
}

/// Reads [`outcome_to_wire`]'s spelling back.
///
/// # Errors
/// [`UnknownOutcome`] for anything else.
pub fn outcome_from_wire(text: &str) -> Result<AttestationOutcome, UnknownOutcome> {
    text.strip_prefix(attestation::PEER_INTERFACE)
        .and_then(|rest| rest.strip_prefix(".Outcome."))
        .ok_or_else(|| UnknownOutcome(text.to_owned()))?
        .parse()
}

/// The `trustPolicy` argument of `Attest`: `first-contact`, `anchored` or
/// `pinned:<64 lowercase hex characters>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TrustPolicyArg(pub AttestPolicy);

/// A `trustPolicy` argument that is none of the three forms.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown trust policy {0:?}: expected first-contact, anchored or pinned:<64 hex>")]
pub struct UnknownPolicy(pub String);

impl fmt::Display for TrustPolicyArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            AttestPolicy::FirstContact => f.write_str("first-contact"),
            AttestPolicy::Anchored => f.write_str("anchored"),
            AttestPolicy::Pinned(fp) => write!(f, "pinned:{fp}"),
        }
    }
}

impl FromStr for TrustPolicyArg {
    type Err = UnknownPolicy;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "first-contact" => Ok(TrustPolicyArg(AttestPolicy::FirstContact)),
            "anchored" => Ok(TrustPolicyArg(AttestPolicy::Anchored)),
            _ => text
                .strip_prefix("pinned:")
                .and_then(|hex| Fingerprint::from_hex(hex).ok())
                .map(|fp| TrustPolicyArg(AttestPolicy::Pinned(fp)))
                .ok_or_else(|| UnknownPolicy(text.chars().take(80).collect())),
        }
    }
}

/// One measurement index of an `Attest` reply: `(index, value hex, status, expected hex)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type, Value, OwnedValue)]
pub struct MeasurementEntry {
    /// Measurement index.
    pub index: u8,
    /// Reported value, hex.
    pub value: String,
    /// `Match`, `Mismatch`, `Missing`, `NotReferenced` or `NotAppraised`.
    pub status: String,
    /// Expected value, hex; empty without a reference value.
    pub expected: String,
}

/// The reply of both `Attest` methods (Requester and Peer), in the order of their out
/// arguments: `(o peer, b trusted, s outcome, s fingerprint, aay chain, a(ysss)
/// measurements, s verdictJson)`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct AttestReply {
    /// The peer's object on the attestation service.
    pub peer: OwnedObjectPath,
    /// True for `Trusted` and `TrustedWithFindings`.
    pub trusted: bool,
    /// [`outcome_to_wire`] of the outcome.
    pub outcome: String,
    /// The proven identity, lowercase hex; empty when the peer proved none.
    pub fingerprint: String,
    /// The proven chain, DER, root first; empty when the peer proved none.
    pub chain: Vec<Vec<u8>>,
    /// Per-index results; empty when the peer proved no identity.
    pub measurements: Vec<MeasurementEntry>,
    /// The whole report as JSON, for people and logs (programs read the fields above).
    pub verdict_json: String,
}

/// The out arguments of `Attest` as zbus serves them (a tuple: zbus takes multiple out
/// arguments only from a tuple).
pub type AttestReplyArgs = (
    OwnedObjectPath,
    bool,
    String,
    String,
    Vec<Vec<u8>>,
    Vec<MeasurementEntry>,
    String,
);

impl From<AttestReply> for AttestReplyArgs {
    fn from(r: AttestReply) -> Self {
        (
            r.peer,
            r.trusted,
            r.outcome,
            r.fingerprint,
            r.chain,
            r.measurements,
            r.verdict_json,
        )
    }
}

/// An `Attest` reply that breaks the contract.
#[derive(Debug, thiserror::Error)]
pub enum MalformedReply {
    /// The outcome is not one of ours.
    #[error("bad outcome")]
    Outcome(#[from] UnknownOutcome),
    /// `trusted` says otherwise than the outcome.
    #[error("`trusted` contradicts the outcome {0:?}")]
    Contradiction(AttestationOutcome),
    /// The fingerprint is not 64 hex characters.
    #[error("bad fingerprint")]
    Fingerprint(#[source] bmc_pairing_core::keys::Error),
    /// A trusted outcome without a proven identity.
    #[error("trusted without a proven identity")]
    TrustedWithoutIdentity,
}

impl AttestReply {
    /// The outcome, checked against `trusted`.
    ///
    /// # Errors
    /// [`MalformedReply`].
    pub fn outcome(&self) -> Result<AttestationOutcome, MalformedReply> {
        let outcome = outcome_from_wire(&self.outcome)?;
        if self.trusted != outcome.vouches() {
            return Err(MalformedReply::Contradiction(outcome));
        }
        Ok(outcome)
    }

    /// The proven identity, if any.
    ///
    /// # Errors
    /// [`MalformedReply::Fingerprint`].
    pub fn fingerprint(&self) -> Result<Option<Fingerprint>, MalformedReply> {
        if self.fingerprint.is_empty() {
            return Ok(None);
        }
        Fingerprint::from_hex(&self.fingerprint)
            .map(Some)
            .map_err(MalformedReply::Fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_round_trip_on_the_wire() {
        for o in AttestationOutcome::ALL {
            assert_eq!(outcome_from_wire(&outcome_to_wire(o)), Ok(o));
        }
        for bad in [
            "Trusted",
            "xyz.openbmc_project.BmcPairing.Attestation.Peer.Outcome.",
            "xyz.openbmc_project.BmcPairing.Peer.AttestationOutcome.Trusted",
        ] {
            assert!(outcome_from_wire(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn policies_round_trip_and_bad_ones_are_refused() {
        let fp = Fingerprint([0xab; 32]);
        for p in [
            AttestPolicy::FirstContact,
            AttestPolicy::Anchored,
            AttestPolicy::Pinned(fp),
        ] {
            assert_eq!(TrustPolicyArg(p).to_string().parse(), Ok(TrustPolicyArg(p)));
        }
        assert_eq!(
            TrustPolicyArg(AttestPolicy::Pinned(fp)).to_string(),
            format!("pinned:{}", "ab".repeat(32))
        );
        let upper = TrustPolicyArg::from_str(&format!("pinned:{}", "AB".repeat(32))).unwrap();
        assert_eq!(
            upper.to_string(),
            format!("pinned:{}", "ab".repeat(32)),
            "canonical"
        );
        for bad in [
            "",
            "tofu",
            "Anchored",
            "first-contact ",
            "first_contact",
            "pinned:",
            "pinned:abc",
            &format!("pinned:{}", "ab".repeat(33)),
            &format!("pinned:{}", "zz".repeat(32)),
        ] {
            assert!(bad.parse::<TrustPolicyArg>().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_reply_signature_is_the_documented_one() {
        assert_eq!(AttestReply::SIGNATURE.to_string(), "(obssaaya(ysss)s)");
        assert_eq!(<AttestReplyArgs as Type>::SIGNATURE, AttestReply::SIGNATURE);
    }

    #[test]
    fn replies_are_read_strictly() {
        let reply = |trusted: bool, outcome: AttestationOutcome, fp: &str| AttestReply {
            peer: OwnedObjectPath::try_from("/x").unwrap(),
            trusted,
            outcome: outcome_to_wire(outcome),
            fingerprint: fp.to_owned(),
            chain: Vec::new(),
            measurements: Vec::new(),
            verdict_json: "{}".into(),
        };
        let fp = "ab".repeat(32);
        let ok = reply(true, AttestationOutcome::Trusted, &fp);
        assert_eq!(ok.outcome().unwrap(), AttestationOutcome::Trusted);
        assert_eq!(ok.fingerprint().unwrap(), Some(Fingerprint([0xab; 32])));
        assert!(
            reply(true, AttestationOutcome::Rejected, &fp)
                .outcome()
                .is_err()
        );
        assert!(
            reply(false, AttestationOutcome::Trusted, &fp)
                .outcome()
                .is_err()
        );
        assert!(
            reply(true, AttestationOutcome::Trusted, "zz")
                .fingerprint()
                .is_err()
        );
        let mut bad = ok.clone();
        bad.outcome = "Maybe".into();
        assert!(bad.outcome().is_err());
    }
}
