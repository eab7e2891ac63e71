//! The trust-quorum messages carried by the pairing channel (frame types `0x10..=0x1F`,
//! see [`crate::link::frame`]). Pure codec with a cap per type.
//!
//! ```text
//! Deliver (0x10): epoch u64 | n u8 | n × member SPKI fingerprint (32) | index u8 |
//!                 share (32) | k u8 | k × commitment point (33, compressed SEC1)
//! Ack     (0x11): epoch u64 | what u8 (1 delivery, 2 commit, 3 abort)
//! Abort   (0x12): epoch u64
//! Request (0x13): epoch u64
//! Release (0x14): epoch u64 | index u8 | share (32)
//! Commit  (0x15): epoch u64
//! Refuse  (0x16): epoch u64 | reason u8
//! ```
//! Member `i` (1-based) of a group is the `i`-th fingerprint of its `Deliver`; the share's
//! index names its recipient. Every quorum message is answered by exactly one other.

use super::vss::{Commitment, MAX_MEMBERS, POINT_LEN, SCALAR_LEN, Share};
use crate::keys::Fingerprint;

/// First frame type of the quorum range.
pub const FIRST_TYPE: u8 = 0x10;
/// Last frame type of the quorum range.
pub const LAST_TYPE: u8 = 0x1F;

const T_DELIVER: u8 = 0x10;
const T_ACK: u8 = 0x11;
const T_ABORT: u8 = 0x12;
const T_REQUEST: u8 = 0x13;
const T_RELEASE: u8 = 0x14;
const T_COMMIT: u8 = 0x15;
const T_REFUSE: u8 = 0x16;

const FP_LEN: usize = 32;

/// Largest payload of a `Deliver` (the largest quorum message).
pub const MAX_DELIVER_PAYLOAD: usize =
    8 + 1 + MAX_MEMBERS * FP_LEN + 1 + SCALAR_LEN + 1 + MAX_MEMBERS * POINT_LEN;

/// The payload cap of quorum frame type `ty`; `None` for a type outside the known ones.
pub fn payload_cap(ty: u8) -> Option<usize> {
    match ty {
        T_DELIVER => Some(MAX_DELIVER_PAYLOAD),
        T_ACK | T_REFUSE => Some(9),
        T_ABORT | T_REQUEST | T_COMMIT => Some(8),
        T_RELEASE => Some(8 + 1 + SCALAR_LEN),
        _ => None,
    }
}

/// What an `Ack` acknowledges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckOf {
    /// The share was sealed and the staged group recorded.
    Delivery,
    /// The staged group is now the group.
    Commit,
    /// Nothing of the aborted initialization is left.
    Abort,
}

/// Why a quorum request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// The asker is not a member of the group (or unknown here).
    NotMember,
    /// The asker is paired but not admitted: quarantined, or it unpaired us.
    NotAdmitted,
    /// The asker's attestation is not current; a re-attestation was started, ask again.
    AttestationStale,
    /// Another epoch than ours.
    WrongEpoch,
    /// We have no share to give (not initialized, or our sealed share is unreadable).
    NoShare,
    /// Not possible in our current state (initialized already, another initialization).
    State,
    /// The delivered share does not match its commitment, or the delivery is inconsistent.
    BadDelivery,
    /// Sealing or storing the share failed here.
    StorageFailed,
    /// A reason this version does not know.
    Other(u8),
}

impl RefuseReason {
    fn to_u8(self) -> u8 {
        match self {
            RefuseReason::NotMember => 1,
            RefuseReason::NotAdmitted => 2,
            RefuseReason::AttestationStale => 3,
            RefuseReason::WrongEpoch => 4,
            RefuseReason::NoShare => 5,
            RefuseReason::State => 6,
            RefuseReason::BadDelivery => 7,
            RefuseReason::StorageFailed => 8,
            RefuseReason::Other(v) => v,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => RefuseReason::NotMember,
            2 => RefuseReason::NotAdmitted,
            3 => RefuseReason::AttestationStale,
            4 => RefuseReason::WrongEpoch,
            5 => RefuseReason::NoShare,
            6 => RefuseReason::State,
            7 => RefuseReason::BadDelivery,
            8 => RefuseReason::StorageFailed,
            v => RefuseReason::Other(v),
        }
    }
}

/// A share handed to its member at initialization, with what it needs to check it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The group's epoch.
    pub epoch: u64,
    /// The members in index order (member `i` is `members[i - 1]`).
    pub members: Vec<Fingerprint>,
    /// The recipient's share; its index names the recipient.
    pub share: Share,
    /// The public commitment; its length is the threshold.
    pub commitment: Commitment,
}

/// One trust-quorum message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A share for its recipient (initialization); boxed, it is by far the largest.
    Deliver(Box<Delivery>),
    /// Acknowledges a `Deliver`, `Commit` or `Abort` of `epoch`.
    Ack {
        /// The epoch acknowledged.
        epoch: u64,
        /// What is acknowledged.
        of: AckOf,
    },
    /// The initialization of `epoch` is abandoned: drop its staged share.
    Abort {
        /// The epoch abandoned.
        epoch: u64,
    },
    /// Asks for the recipient's share of `epoch` (unlock).
    Request {
        /// The epoch asked for.
        epoch: u64,
    },
    /// The sender's share of `epoch`.
    Release {
        /// The epoch.
        epoch: u64,
        /// The sender's share.
        share: Share,
    },
    /// Every member acknowledged: the staged group of `epoch` is the group.
    Commit {
        /// The epoch committed.
        epoch: u64,
    },
    /// The request about `epoch` was refused.
    Refuse {
        /// The epoch of the request.
        epoch: u64,
        /// Why.
        reason: RefuseReason,
    },
}

/// Bytes that are not a valid quorum message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed quorum message: {0}")]
pub struct Malformed(pub &'static str);

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.0.len() < n {
            return Err(Malformed("too short"));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        self.take(1)?.first().copied().ok_or(Malformed("too short"))
    }
    fn u64(&mut self) -> Result<u64, Malformed> {
        let b: [u8; 8] = self
            .take(8)?
            .try_into()
            .map_err(|_| Malformed("too short"))?;
        Ok(u64::from_be_bytes(b))
    }
    fn array32(&mut self) -> Result<[u8; 32], Malformed> {
        self.take(32)?
            .try_into()
            .map_err(|_| Malformed("too short"))
    }
    fn finish(&self) -> Result<(), Malformed> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Malformed("trailing bytes"))
        }
    }
}

fn share_of(index: u8, value: &[u8; 32]) -> Result<Share, Malformed> {
    Share::from_parts(index, value).map_err(|_| Malformed("share"))
}

impl Message {
    /// The frame type byte of this message.
    pub fn frame_type(&self) -> u8 {
        match self {
            Message::Deliver(_) => T_DELIVER,
            Message::Ack { .. } => T_ACK,
            Message::Abort { .. } => T_ABORT,
            Message::Request { .. } => T_REQUEST,
            Message::Release { .. } => T_RELEASE,
            Message::Commit { .. } => T_COMMIT,
            Message::Refuse { .. } => T_REFUSE,
        }
    }

    /// Appends the payload (without type) to `out`.
    ///
    /// # Errors
    /// [`Malformed`] for a `Deliver` whose member list or commitment is out of range.
    pub fn encode_payload(&self, out: &mut Vec<u8>) -> Result<(), Malformed> {
        match self {
            Message::Deliver(d) => {
                let n = d.members.len();
                let k = d.commitment.threshold();
                if !(2..=MAX_MEMBERS).contains(&n) || k > n {
                    return Err(Malformed("member count"));
                }
                out.extend_from_slice(&d.epoch.to_be_bytes());
                out.push(u8::try_from(n).map_err(|_| Malformed("member count"))?);
                for m in &d.members {
                    out.extend_from_slice(&m.0);
                }
                out.push(d.share.index());
                out.extend_from_slice(d.share.value_bytes().as_slice());
                out.push(u8::try_from(k).map_err(|_| Malformed("threshold"))?);
                out.extend_from_slice(&d.commitment.to_bytes());
            }
            Message::Ack { epoch, of } => {
                out.extend_from_slice(&epoch.to_be_bytes());
                out.push(match of {
                    AckOf::Delivery => 1,
                    AckOf::Commit => 2,
                    AckOf::Abort => 3,
                });
            }
            Message::Abort { epoch } | Message::Request { epoch } | Message::Commit { epoch } => {
                out.extend_from_slice(&epoch.to_be_bytes());
            }
            Message::Release { epoch, share } => {
                out.extend_from_slice(&epoch.to_be_bytes());
                out.push(share.index());
                out.extend_from_slice(share.value_bytes().as_slice());
            }
            Message::Refuse { epoch, reason } => {
                out.extend_from_slice(&epoch.to_be_bytes());
                out.push(reason.to_u8());
            }
        }
        Ok(())
    }

    /// Decodes the payload of quorum frame type `ty`.
    ///
    /// # Errors
    /// [`Malformed`] for an unknown type, a payload over its cap, or bad contents.
    pub fn decode_payload(ty: u8, payload: &[u8]) -> Result<Self, Malformed> {
        let cap = payload_cap(ty).ok_or(Malformed("unknown quorum type"))?;
        if payload.len() > cap {
            return Err(Malformed("payload over its cap"));
        }
        let mut r = Reader(payload);
        let epoch = r.u64()?;
        let message = match ty {
            T_DELIVER => {
                let n = usize::from(r.u8()?);
                if !(2..=MAX_MEMBERS).contains(&n) {
                    return Err(Malformed("member count"));
                }
                let mut members = Vec::with_capacity(n);
                for _ in 0..n {
                    let fp = Fingerprint(r.array32()?);
                    if members.contains(&fp) {
                        return Err(Malformed("duplicate member"));
                    }
                    members.push(fp);
                }
                let index = r.u8()?;
                if index == 0 || usize::from(index) > n {
                    return Err(Malformed("share index"));
                }
                let value = zeroize::Zeroizing::new(r.array32()?);
                let share = share_of(index, &value)?;
                let k = usize::from(r.u8()?);
                if !(2..=n).contains(&k) {
                    return Err(Malformed("threshold"));
                }
                let commitment = Commitment::from_bytes(r.take(k * POINT_LEN)?)
                    .map_err(|_| Malformed("commitment"))?;
                Message::Deliver(Box::new(Delivery {
                    epoch,
                    members,
                    share,
                    commitment,
                }))
            }
            T_ACK => Message::Ack {
                epoch,
                of: match r.u8()? {
                    1 => AckOf::Delivery,
                    2 => AckOf::Commit,
                    3 => AckOf::Abort,
                    _ => return Err(Malformed("ack kind")),
                },
            },
            T_ABORT => Message::Abort { epoch },
            T_REQUEST => Message::Request { epoch },
            T_COMMIT => Message::Commit { epoch },
            T_RELEASE => {
                let index = r.u8()?;
                let value = zeroize::Zeroizing::new(r.array32()?);
                Message::Release {
                    epoch,
                    share: share_of(index, &value)?,
                }
            }
            T_REFUSE => Message::Refuse {
                epoch,
                reason: RefuseReason::from_u8(r.u8()?),
            },
            _ => return Err(Malformed("unknown quorum type")),
        };
        r.finish()?;
        Ok(message)
    }
}
