//! The group authority (issue 17; seed 002's `SignCSR`, made useful): what the authority
//! signs, and the signed group list it sends its members. Pure: the shell parses nothing
//! of this itself, signs with the group root key and moves bytes.
//!
//! One BMC of a rack is configured as the group authority. Its operator pairs it with each
//! other BMC (`ProvisionPeer`, N-1 calls); each member's operator pairs it with the
//! authority (its consent to join). Over the pinned channel the member then sends a CSR for
//! its per-BMC CA key ([`crate::link::frame::Frame::SignRequest`]); the authority signs it
//! with the group root key only under [`Pairing::may_sign`]'s rule, and the member installs
//! the certificate and the group root (its anchor). The authority's signed [`GroupList`]
//! names the members (so they pair with each other without anyone naming them) and the
//! revoked ones (so a member unpaired on the authority is refused by every other member).

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509CertificationRequest};

use super::machine::Pairing;
use super::model::PeerId;
use crate::keys::{Fingerprint, PublicKey, SHA256_LEN, verify_digest};

/// Why the authority refuses to sign (the request object's `Status` becomes `BadCSR`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignRefusal {
    /// The bytes are not one PKCS#10 request whose signature verifies with its own key.
    #[error("malformed CSR: {0}")]
    Malformed(String),
    /// The request is for something other than an EC P-256 key.
    #[error("the CSR is not for an EC P-256 key")]
    NotP256,
    /// This BMC is not configured as the group authority.
    #[error("this BMC is not the group authority")]
    NotAuthority,
    /// No paired peer has that key (or the requester) as its attested CA key.
    #[error("the CSR's key is not the attested CA key of a paired BMC")]
    UnknownKey,
    /// The requester is paired, but the CSR is for another key than its attested CA key.
    #[error("the CSR is not for the requester's attested CA key")]
    OtherKey,
    /// The peer is quarantined or unpaired us.
    #[error("the peer is not admitted (quarantined, or it unpaired us)")]
    NotAdmitted,
    /// The peer's last attestation did not vouch for it, or is older than the
    /// re-attestation interval.
    #[error("the peer is not attested now")]
    NotAttested,
    /// The group list already names [`MAX_MEMBERS`] members.
    #[error("the group is full")]
    Full,
    /// The peer's key was revoked in this group (unpaired, then paired again without a new
    /// key): a new group root is needed to take it back.
    #[error("the peer's key is revoked in this group")]
    Revoked,
}

/// The subject key of a PKCS#10 request, once its self-signature verified.
///
/// # Errors
/// [`SignRefusal::Malformed`] or [`SignRefusal::NotP256`].
pub fn csr_key(der: &[u8]) -> Result<PublicKey, SignRefusal> {
    let (rest, csr) = X509CertificationRequest::from_der(der)
        .map_err(|e| SignRefusal::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(SignRefusal::Malformed("trailing bytes".into()));
    }
    csr.verify_signature()
        .map_err(|e| SignRefusal::Malformed(format!("its signature does not verify: {e}")))?;
    let key = PublicKey::from_spki_der(csr.certification_request_info.subject_pki.raw.to_vec());
    key.p256_point().map_err(|_| SignRefusal::NotP256)?;
    Ok(key)
}

impl Pairing {
    /// The authority's rule: sign a CSR for `csr_key` only for a BMC that is paired with us,
    /// admitted (not quarantined, has not unpaired us), attested now (its last attestation
    /// vouched and is not older than the re-attestation interval), not revoked, and whose
    /// attested CA key (from the chain SPDM verified) is exactly `csr_key`. `requester` is
    /// the identity that sent the request over the pinned channel; `None` for a local
    /// `SignCSR` call, where the peer is found by its key. Returns the peer signed for.
    ///
    /// # Errors
    /// [`SignRefusal`]; nothing changes either way.
    pub fn may_sign(
        &self,
        requester: Option<&Fingerprint>,
        csr_key: &Fingerprint,
        unix_now: u64,
    ) -> Result<PeerId, SignRefusal> {
        if !self.group_authority() {
            return Err(SignRefusal::NotAuthority);
        }
        let peer = match requester {
            Some(fp) => {
                let peer = self
                    .peers()
                    .values()
                    .find(|p| p.record.fingerprint == *fp)
                    .ok_or(SignRefusal::UnknownKey)?;
                if peer.record.ca_key.as_ref() != Some(csr_key) {
                    return Err(SignRefusal::OtherKey);
                }
                peer
            }
            None => self
                .peers()
                .values()
                .find(|p| p.record.ca_key.as_ref() == Some(csr_key))
                .ok_or(SignRefusal::UnknownKey)?,
        };
        if !peer.admitted() {
            return Err(SignRefusal::NotAdmitted);
        }
        let fresh = self
            .settings()
            .reattest_interval
            .is_none_or(|i| unix_now < peer.record.attested_at.saturating_add(i));
        if !peer.record.attestation.vouches() || !fresh {
            return Err(SignRefusal::NotAttested);
        }
        if self
            .issued_list()
            .is_some_and(|l| l.revokes(&peer.record.fingerprint, Some(csr_key)))
        {
            return Err(SignRefusal::Revoked);
        }
        if self.issued_list().is_some_and(|l| {
            l.members.len() >= MAX_MEMBERS
                && !l
                    .members
                    .iter()
                    .any(|m| m.identity == peer.record.fingerprint)
        }) {
            return Err(SignRefusal::Full);
        }
        Ok(peer.record.id.clone())
    }
}

/// Domain separation of the signed group list: a signature over it is never a valid
/// signature of anything else the group root signs (certificates).
pub const GROUP_LIST_DOMAIN: &[u8] = b"bmc-pairing-manager group list v1\0";
/// Most members a group list names.
pub const MAX_MEMBERS: usize = 32;
/// Most revoked members a group list names. A full list refuses further revocations: the
/// authority's operator then starts a new group (a new root).
pub const MAX_REVOKED: usize = 24;
/// Bytes of a raw P-256 signature (`r || s`).
const SIG_LEN: usize = 64;

/// A member of the group, as the authority signed it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Its identity (the pin: SHA-256 of its leaf SPKI).
    pub identity: Fingerprint,
    /// Its CA key, which the authority certified.
    pub ca_key: Fingerprint,
    /// Its pairing-channel endpoint, as the authority knows it.
    pub endpoint: SocketAddr,
}

/// A revoked member: refused by its identity and by its CA key (which could issue it a
/// new identity).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revoked {
    /// Its identity.
    pub identity: Fingerprint,
    /// Its CA key.
    pub ca_key: Fingerprint,
}

/// The authority's list: who is in the group, and who was revoked; versioned, signed by
/// the group root key.
///
/// ```text
/// version u64 BE | n_members u8 | n_members × (identity 32 | ca_key 32 | ipv6 16 | port u16 BE)
///                | n_revoked u8 | n_revoked × (identity 32 | ca_key 32)
///                | signature 64 (raw P-256 r||s over SHA-256(GROUP_LIST_DOMAIN || all before))
/// ```
/// IPv4 addresses travel IPv4-mapped.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupList {
    /// Strictly increases with every change; a member never goes back to a lower one.
    pub version: u64,
    /// The members.
    pub members: Vec<Member>,
    /// The revoked members.
    pub revoked: Vec<Revoked>,
}

/// Why a group list was refused (nothing changes).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// The bytes do not follow the layout.
    #[error("malformed group list: {0}")]
    Malformed(&'static str),
    /// The signature does not verify with the group root key.
    #[error("the group list is not signed by the group root")]
    BadSignature,
    /// Not newer than the list already held.
    #[error("group list version {got} is not newer than {held}")]
    Stale {
        /// The version received.
        got: u64,
        /// The version held.
        held: u64,
    },
    /// More members or revocations than the layout allows.
    #[error("the group list is full")]
    Full,
}

struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ListError> {
        if self.0.len() < n {
            return Err(ListError::Malformed("too short"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], ListError> {
        self.take(N)?
            .try_into()
            .map_err(|_| ListError::Malformed("too short"))
    }
    fn fingerprint(&mut self) -> Result<Fingerprint, ListError> {
        Ok(Fingerprint(self.array::<SHA256_LEN>()?))
    }
}

impl GroupList {
    /// The bytes the signature covers, without the domain.
    pub fn body(&self) -> Result<Vec<u8>, ListError> {
        if self.members.len() > MAX_MEMBERS || self.revoked.len() > MAX_REVOKED {
            return Err(ListError::Full);
        }
        let mut out =
            Vec::with_capacity(8 + 2 + self.members.len() * 82 + self.revoked.len() * 64 + SIG_LEN);
        out.extend_from_slice(&self.version.to_be_bytes());
        out.push(u8::try_from(self.members.len()).map_err(|_| ListError::Full)?);
        for m in &self.members {
            out.extend_from_slice(&m.identity.0);
            out.extend_from_slice(&m.ca_key.0);
            let v6 = match m.endpoint.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.extend_from_slice(&v6.octets());
            out.extend_from_slice(&m.endpoint.port().to_be_bytes());
        }
        out.push(u8::try_from(self.revoked.len()).map_err(|_| ListError::Full)?);
        for r in &self.revoked {
            out.extend_from_slice(&r.identity.0);
            out.extend_from_slice(&r.ca_key.0);
        }
        Ok(out)
    }

    /// The SHA-256 digest the group root key signs.
    pub fn digest(&self) -> Result<[u8; SHA256_LEN], ListError> {
        let mut h = Sha256::new();
        h.update(GROUP_LIST_DOMAIN);
        h.update(self.body()?);
        Ok(h.finalize().into())
    }

    /// The list as sent: body, then the raw signature.
    pub fn signed(&self, raw_signature: &[u8]) -> Result<Vec<u8>, ListError> {
        if raw_signature.len() != SIG_LEN {
            return Err(ListError::Malformed("signature length"));
        }
        let mut out = self.body()?;
        out.extend_from_slice(raw_signature);
        Ok(out)
    }

    /// Reads a signed list and checks its signature against `root`.
    ///
    /// # Errors
    /// [`ListError::Malformed`] or [`ListError::BadSignature`].
    pub fn verify(bytes: &[u8], root: &PublicKey) -> Result<GroupList, ListError> {
        let mut c = Cursor(bytes);
        let version = u64::from_be_bytes(c.array::<8>()?);
        let n_members = usize::from(c.array::<1>()?[0]);
        if n_members > MAX_MEMBERS {
            return Err(ListError::Malformed("too many members"));
        }
        let mut members = Vec::with_capacity(n_members);
        for _ in 0..n_members {
            let identity = c.fingerprint()?;
            let ca_key = c.fingerprint()?;
            let v6 = Ipv6Addr::from(c.array::<16>()?);
            let port = u16::from_be_bytes(c.array::<2>()?);
            let ip = v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4);
            members.push(Member {
                identity,
                ca_key,
                endpoint: SocketAddr::new(ip, port),
            });
        }
        let n_revoked = usize::from(c.array::<1>()?[0]);
        if n_revoked > MAX_REVOKED {
            return Err(ListError::Malformed("too many revocations"));
        }
        let mut revoked = Vec::with_capacity(n_revoked);
        for _ in 0..n_revoked {
            revoked.push(Revoked {
                identity: c.fingerprint()?,
                ca_key: c.fingerprint()?,
            });
        }
        let signature = c.take(SIG_LEN)?;
        if !c.0.is_empty() {
            return Err(ListError::Malformed("trailing bytes"));
        }
        let list = GroupList {
            version,
            members,
            revoked,
        };
        verify_digest(root, &list.digest()?, signature).map_err(|_| ListError::BadSignature)?;
        Ok(list)
    }

    /// True if the identity, or the CA key, is revoked.
    pub fn revokes(&self, identity: &Fingerprint, ca_key: Option<&Fingerprint>) -> bool {
        self.revoked
            .iter()
            .any(|r| r.identity == *identity || Some(&r.ca_key) == ca_key)
    }

    /// Every revoked identity and CA key.
    pub fn revoked_keys(&self) -> BTreeSet<Fingerprint> {
        self.revoked
            .iter()
            .flat_map(|r| [r.identity, r.ca_key])
            .collect()
    }
}

/// What a member holds of its group (persisted in `state.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    /// The authority's identity (its pin on this BMC).
    pub authority: Fingerprint,
    /// The group root's SPKI, hex (the key that signs the list).
    pub root_spki: String,
    /// The newest list received and verified (version 0: none yet).
    #[serde(default)]
    pub list: GroupList,
}

impl Membership {
    /// The group root's public key.
    pub fn root(&self) -> Option<PublicKey> {
        crate::hex::hex_decode(&self.root_spki).map(PublicKey::from_spki_der)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pairing::machine::{Action, AttestPolicy, Settings};
    use crate::pairing::model::{AttestationOutcome, PeerRecord, Persisted, TrustMode};
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::pkcs8::EncodePublicKey;

    const NOW: u64 = 1_000_000;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint([n; 32])
    }

    fn settings() -> Settings {
        Settings {
            trust_mode: TrustMode::FirstContact,
            attestation: true,
            pairing_port: 8090,
            attestation_port: 4194,
            reattest_interval: Some(1000),
        }
    }

    fn record(n: u8, ca_key: Option<Fingerprint>) -> PeerRecord {
        PeerRecord {
            id: PeerId::try_from(format!("bmc{n}")).unwrap(),
            name: format!("bmc{n}"),
            address: IpAddr::from([127, 0, 0, n]),
            port: 8090,
            fingerprint: fp(n),
            trust_mode: TrustMode::FirstContact,
            paired_at: NOW - 10,
            attestation: AttestationOutcome::Trusted,
            attested_at: NOW - 10,
            unpaired_by_peer: false,
            boot_id: 0,
            ca_key,
        }
    }

    /// A provisioned BMC (identity `fp(own)`) with `peers` paired.
    fn bmc(own: u8, peers: Vec<PeerRecord>) -> Pairing {
        let persisted = Persisted {
            provisioned: true,
            peers,
            ..Persisted::default()
        };
        Pairing::restore(persisted, Some(fp(own)), settings()).0
    }

    fn authority(peers: Vec<PeerRecord>) -> Pairing {
        let mut p = bmc(1, peers);
        p.enable_group_authority();
        p
    }

    #[test]
    fn the_authority_signs_only_the_attested_ca_key_of_an_admitted_attested_peer() {
        let a = authority(vec![record(2, Some(fp(0xc2))), record(3, None)]);
        let id2 = PeerId::try_from("bmc2".to_owned()).unwrap();
        assert_eq!(a.may_sign(Some(&fp(2)), &fp(0xc2), NOW), Ok(id2.clone()));
        assert_eq!(a.may_sign(None, &fp(0xc2), NOW), Ok(id2));
        // Another key from the right peer; the right key from a peer with no attested CA
        // key; a key nobody has; a stranger.
        assert_eq!(
            a.may_sign(Some(&fp(2)), &fp(0xc3), NOW),
            Err(SignRefusal::OtherKey)
        );
        assert_eq!(
            a.may_sign(Some(&fp(3)), &fp(0xc2), NOW),
            Err(SignRefusal::OtherKey)
        );
        assert_eq!(
            a.may_sign(None, &fp(0xc9), NOW),
            Err(SignRefusal::UnknownKey)
        );
        assert_eq!(
            a.may_sign(Some(&fp(9)), &fp(0xc2), NOW),
            Err(SignRefusal::UnknownKey)
        );
        // Its attestation is older than the re-attestation interval.
        assert_eq!(
            a.may_sign(Some(&fp(2)), &fp(0xc2), NOW + 1000),
            Err(SignRefusal::NotAttested)
        );
        // Not the authority.
        let plain = bmc(1, vec![record(2, Some(fp(0xc2)))]);
        assert_eq!(
            plain.may_sign(Some(&fp(2)), &fp(0xc2), NOW),
            Err(SignRefusal::NotAuthority)
        );
        // Quarantined, unpaired us, never attested.
        let mut quarantined = record(2, Some(fp(0xc2)));
        quarantined.attestation = AttestationOutcome::Rejected;
        let mut gone = record(2, Some(fp(0xc2)));
        gone.unpaired_by_peer = true;
        let mut unattested = record(2, Some(fp(0xc2)));
        unattested.attestation = AttestationOutcome::NotAttested;
        for (r, why) in [
            (quarantined, SignRefusal::NotAdmitted),
            (gone, SignRefusal::NotAdmitted),
            (unattested, SignRefusal::NotAttested),
        ] {
            let a = authority(vec![r]);
            assert_eq!(a.may_sign(Some(&fp(2)), &fp(0xc2), NOW), Err(why));
        }
    }

    #[test]
    fn signing_makes_a_member_and_unpairing_it_revokes_it() {
        let mut a = authority(vec![record(2, Some(fp(0xc2))), record(3, Some(fp(0xc3)))]);
        let id2 = PeerId::try_from("bmc2".to_owned()).unwrap();
        let actions = a.signed(&id2);
        let Some(Action::PublishGroupList(list)) = actions.last() else {
            panic!("{actions:?}")
        };
        assert_eq!(list.version, 2);
        assert_eq!(list.members.len(), 1);
        // Signing again changes nothing.
        assert!(a.signed(&id2).is_empty());
        let actions = a.unpair(&id2).unwrap();
        let Some(Action::PublishGroupList(list)) = actions.last() else {
            panic!("{actions:?}")
        };
        assert_eq!(list.version, 3);
        assert!(list.members.is_empty());
        assert!(list.revokes(&fp(2), None) && list.revokes(&fp(99), Some(&fp(0xc2))));
        // Paired again with the same keys: never signed again in this group.
        let mut again = a.persisted();
        again.peers.push(record(2, Some(fp(0xc2))));
        let mut a2 = Pairing::restore(again, Some(fp(1)), settings()).0;
        a2.enable_group_authority();
        assert_eq!(
            a2.may_sign(Some(&fp(2)), &fp(0xc2), NOW),
            Err(SignRefusal::Revoked)
        );
        // A full group signs nobody new.
        let mut full = authority(vec![record(2, Some(fp(0xc2)))]);
        let mut persisted = full.persisted();
        persisted.group_list = Some(GroupList {
            version: 5,
            members: (20..20 + u8::try_from(MAX_MEMBERS).unwrap())
                .map(member)
                .collect(),
            revoked: Vec::new(),
        });
        full = Pairing::restore(persisted, Some(fp(1)), settings()).0;
        full.enable_group_authority();
        assert_eq!(
            full.may_sign(Some(&fp(2)), &fp(0xc2), NOW),
            Err(SignRefusal::Full)
        );
        // Unpairing a peer that was never a member publishes nothing.
        let id3 = PeerId::try_from("bmc3".to_owned()).unwrap();
        assert!(
            !a.unpair(&id3)
                .unwrap()
                .iter()
                .any(|x| matches!(x, Action::PublishGroupList(_)))
        );
    }

    fn root() -> (SigningKey, Vec<u8>) {
        let key = SigningKey::random(&mut rand_core::OsRng);
        let spki = key
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec();
        (key, spki)
    }

    fn sign(list: &GroupList, key: &SigningKey) -> Vec<u8> {
        let sig: p256::ecdsa::Signature = key.sign_prehash(&list.digest().unwrap()).unwrap();
        list.signed(&sig.to_bytes()).unwrap()
    }

    fn member(n: u8) -> Member {
        Member {
            identity: fp(n),
            ca_key: fp(0xc0 + n),
            endpoint: SocketAddr::from(([127, 0, 0, n], 8090)),
        }
    }

    #[test]
    fn group_lists_verify_only_under_the_root_and_unchanged() {
        let (key, spki) = root();
        let (other, _) = root();
        let list = GroupList {
            version: 7,
            members: vec![
                member(2),
                Member {
                    endpoint: "[fd00::5]:9000".parse().unwrap(),
                    ..member(5)
                },
            ],
            revoked: vec![Revoked {
                identity: fp(3),
                ca_key: fp(0xc3),
            }],
        };
        let bytes = sign(&list, &key);
        let root_key = PublicKey::from_spki_der(spki);
        assert_eq!(GroupList::verify(&bytes, &root_key), Ok(list.clone()));
        assert!(bytes.len() <= crate::link::frame::MAX_GROUP_LIST_LEN);
        assert_eq!(
            GroupList::verify(&sign(&list, &other), &root_key),
            Err(ListError::BadSignature)
        );
        for i in [0, 9, 20, bytes.len() - 1] {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(GroupList::verify(&bad, &root_key).is_err(), "byte {i}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            GroupList::verify(&long, &root_key),
            Err(ListError::Malformed("trailing bytes"))
        );
        for cut in 0..bytes.len() {
            assert!(GroupList::verify(&bytes[..cut], &root_key).is_err());
        }
        // The largest list fits a frame.
        let full = GroupList {
            version: u64::MAX,
            members: (0..u8::try_from(MAX_MEMBERS).unwrap())
                .map(member)
                .collect(),
            revoked: (0..u8::try_from(MAX_REVOKED).unwrap())
                .map(|n| Revoked {
                    identity: fp(n),
                    ca_key: fp(n),
                })
                .collect(),
        };
        assert!(sign(&full, &key).len() <= crate::link::frame::MAX_GROUP_LIST_LEN);
        let over = GroupList {
            revoked: full.revoked.iter().chain(&full.revoked).cloned().collect(),
            ..full
        };
        assert_eq!(over.body(), Err(ListError::Full));
    }

    #[test]
    fn a_member_joins_with_consent_then_follows_only_its_authoritys_newer_lists() {
        let (key, spki) = root();
        // BMC 2: its operator paired it with the authority (1) by name; a member (3) and a
        // stranger (9) come later.
        let mut m = bmc(2, vec![record(1, Some(fp(0xc1)))]);
        // An offer from a peer paired by name: ask it to sign.
        assert_eq!(
            m.group_list_received(&fp(1), b"anything"),
            Ok(vec![Action::RequestSigning { authority: fp(1) }])
        );
        // From an unknown peer, or one admitted by anchor (no operator consent): nothing.
        assert_eq!(m.group_list_received(&fp(9), b"x"), Ok(vec![]));
        let mut anchored = record(1, None);
        anchored.trust_mode = TrustMode::Anchored;
        let mut m2 = bmc(2, vec![anchored]);
        assert_eq!(m2.group_list_received(&fp(1), b"x"), Ok(vec![]));
        // Joined.
        assert!(!m.anchored());
        assert_eq!(
            m.joined(fp(1), &spki),
            vec![Action::Persist, Action::Publish]
        );
        assert!(m.anchored());
        // A list: 3 (above us) is introduced, 0 (below us: it dials us) is not.
        let v2 = GroupList {
            version: 2,
            members: vec![member(2), member(3), member(0)],
            revoked: vec![],
        };
        let actions = m.group_list_received(&fp(1), &sign(&v2, &key)).unwrap();
        let attests: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Attest { policy, .. } => Some(*policy),
                _ => None,
            })
            .collect();
        assert_eq!(attests, vec![AttestPolicy::Pinned(fp(3))]);
        assert!(actions.contains(&Action::Persist));
        assert_eq!(m.membership().unwrap().list, v2);
        // Bad input changes nothing: a forged list, a stale one, one from another peer.
        let before = m.persisted();
        let forged = sign(
            &GroupList {
                version: 9,
                ..v2.clone()
            },
            &root().0,
        );
        assert_eq!(
            m.group_list_received(&fp(1), &forged),
            Err(ListError::BadSignature)
        );
        let stale = GroupList {
            version: 1,
            ..v2.clone()
        };
        assert!(matches!(
            m.group_list_received(&fp(1), &sign(&stale, &key)),
            Err(ListError::Stale { got: 1, held: 2 })
        ));
        assert_eq!(m.group_list_received(&fp(3), &sign(&v2, &key)), Ok(vec![]));
        assert_eq!(m.persisted(), before);
    }

    #[test]
    fn a_revoked_member_loses_its_pin_and_is_refused_admission() {
        let (key, spki) = root();
        let mut three = record(3, Some(fp(0xc3)));
        three.trust_mode = TrustMode::Anchored;
        let mut m = bmc(2, vec![record(1, None), three]);
        m.joined(fp(1), &spki);
        let v3 = GroupList {
            version: 3,
            members: vec![member(2)],
            revoked: vec![Revoked {
                identity: fp(3),
                ca_key: fp(0xc3),
            }],
        };
        let actions = m.group_list_received(&fp(1), &sign(&v3, &key)).unwrap();
        assert!(actions.contains(&Action::StopLink(
            PeerId::try_from("bmc3".to_owned()).unwrap()
        )));
        assert!(!m.all_pins().contains(&fp(3)));
        assert!(m.all_pins().contains(&fp(1)), "the authority stays");
        // Its identity is refused without an attestation.
        assert_eq!(
            m.admission_requested(fp(3), SocketAddr::from(([127, 0, 0, 3], 5555))),
            vec![Action::Admit {
                fingerprint: fp(3),
                admitted: false
            }]
        );
        // A new identity under its old CA key is attested, then refused by the CA key.
        let from = SocketAddr::from(([127, 0, 0, 3], 5555));
        let actions = m.admission_requested(fp(33), from);
        let Some(Action::Attest { purpose, .. }) = actions.first() else {
            panic!("{actions:?}")
        };
        let report = crate::pairing::machine::AttestationReport {
            outcome: AttestationOutcome::Trusted,
            fingerprint: Some(fp(33)),
            common_name: None,
            reason: None,
            ca_key: Some(fp(0xc3)),
        };
        let actions = m.attested::<&str>(purpose.clone(), Ok(report), NOW);
        assert_eq!(
            actions,
            vec![Action::Admit {
                fingerprint: fp(33),
                admitted: false
            }]
        );
    }

    #[test]
    fn csr_keys_are_read_from_verified_p256_requests_only() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::new(vec!["m".into()])
            .unwrap()
            .serialize_request(&key)
            .unwrap();
        let der = csr.der().to_vec();
        let got = csr_key(&der).unwrap();
        assert_eq!(
            got.spki_der(),
            rcgen::PublicKeyData::subject_public_key_info(&key)
        );
        let mut tampered = der.clone();
        let last = tampered.len() - 10;
        tampered[last] ^= 1;
        assert!(matches!(csr_key(&tampered), Err(SignRefusal::Malformed(_))));
        assert!(matches!(
            csr_key(b"not a csr"),
            Err(SignRefusal::Malformed(_))
        ));
        let mut trailing = der.clone();
        trailing.push(0);
        assert!(matches!(csr_key(&trailing), Err(SignRefusal::Malformed(_))));
        let p384 = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
        let csr = rcgen::CertificateParams::new(vec!["m".into()])
            .unwrap()
            .serialize_request(&p384)
            .unwrap();
        assert_eq!(csr_key(csr.der()), Err(SignRefusal::NotP256));
    }
}
