//! Frames of the pairing channel, inside TLS. Pure codec: no I/O, no tokio.
//!
//! ```text
//! +-----------------+-----------+--------+-------------------------+
//! | length u16 BE   | version   | type   | payload                 |
//! | = 2 + payload   | 0x01      |        | (type-specific, capped) |
//! +-----------------+-----------+--------+-------------------------+
//! Hello  (0x01): seq u64 BE | boot_id u64 BE | name_len u8 | name (ASCII [A-Za-z0-9-], 1..=63)
//! Alive  (0x02): seq u64 BE           (answers Hello and Ping with their seq)
//! Ping   (0x03): seq u64 BE
//! Bye    (0x04): reason u8
//! SignRequest (0x05): csr_len u16 BE | PKCS#10 DER (1..=MAX_CSR_LEN)          member → authority
//! SignReply   (0x06): status u8 (0 signed, 1 BadCSR) | cert_len u16 BE | certificate DER
//!                     | root_len u16 BE | group root DER (both 0..=MAX_CERT_LEN; empty unless signed)
//! GroupList   (0x07): list_len u16 BE | signed group list: members and revocations (1..=MAX_GROUP_LIST_LEN,
//!                     layout in `pairing::group`)                             authority → member
//! 0x10..=0x1F:    trust-quorum messages (crate::quorum::wire), each type with its own cap
//! ```
//! Types 0x05..=0x0F belong to the group authority (issue 17), 0x10..=0x1F to the trust
//! quorum. The group frames travel only inside an established, pinned session.
//! `Hello`/`Alive` open a session (seed 000); `Ping`/`Alive` are the heartbeats, sent in
//! both directions. `boot_id` is a random value the sender draws once per boot (0: none), so
//! the receiver sees when its peer rebooted and re-attests it. The length is checked against [`MAX_FRAME_LEN`] before anything is
//! buffered, so a peer cannot make us allocate more than that.

/// Wire version of this framing.
pub const VERSION: u8 = 1;
/// Bytes of the length field.
const LEN_FIELD: usize = 2;
/// Largest PKCS#10 request a `SignRequest` carries (a P-256 request with a long subject and
/// a few alternative names is well under 1 KiB).
pub const MAX_CSR_LEN: usize = 2048;
/// Largest certificate a `SignReply` carries (each of the two).
pub const MAX_CERT_LEN: usize = 2048;
/// Largest signed group list a `GroupList` frame carries.
pub const MAX_GROUP_LIST_LEN: usize = 4352;
/// Largest payload of the session frame types (`Hello` is the largest).
const MAX_SESSION_PAYLOAD: usize = 8 + 8 + 1 + 63;
/// Largest payload of any frame type: a `GroupList` or a trust-quorum share delivery.
pub const MAX_PAYLOAD: usize = max(
    max(MAX_SESSION_PAYLOAD, 2 + MAX_GROUP_LIST_LEN),
    quorum::MAX_DELIVER_PAYLOAD,
);

const fn max(a: usize, b: usize) -> usize {
    if a > b { a } else { b }
}
/// Largest whole frame, length field included.
pub const MAX_FRAME_LEN: usize = LEN_FIELD + 2 + MAX_PAYLOAD;
/// Longest name a `Hello` carries (a DNS label).
pub const MAX_NAME_LEN: usize = 63;

use crate::quorum::wire as quorum;

/// Why the sender says goodbye.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByeReason {
    /// Orderly shutdown of the daemon.
    Shutdown,
    /// The operator unpaired us on that side.
    Unpaired,
    /// Any reason this version does not know.
    Other(u8),
}

impl ByeReason {
    fn to_u8(self) -> u8 {
        match self {
            ByeReason::Shutdown => 1,
            ByeReason::Unpaired => 2,
            ByeReason::Other(v) => v,
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => ByeReason::Shutdown,
            2 => ByeReason::Unpaired,
            v => ByeReason::Other(v),
        }
    }
}

/// The authority's answer to a `SignRequest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignStatus {
    /// Signed: the certificate and the group root follow.
    Signed,
    /// Refused (seed 002's `BadCSR`): malformed, or not for this peer's attested key.
    BadCsr,
}

/// One message of the pairing channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Opens a session; the peer answers `Alive` with the same `seq`.
    Hello {
        /// Echoed in the `Alive` answer.
        seq: u64,
        /// The sender's boot identifier: drawn at random once per boot of the sender, 0 if it
        /// has none.
        boot_id: u64,
        /// The sender's BMC name (informational; identity comes from the TLS pin).
        name: String,
    },
    /// Answers `Hello` or `Ping`.
    Alive {
        /// The `seq` of the frame answered.
        seq: u64,
    },
    /// Heartbeat request.
    Ping {
        /// Echoed in the `Alive` answer.
        seq: u64,
    },
    /// The sender is closing the session.
    Bye {
        /// Why.
        reason: ByeReason,
    },
    /// A member asks the group authority to sign a CSR for its CA key.
    SignRequest {
        /// PKCS#10 DER.
        csr: Vec<u8>,
    },
    /// The group authority's answer to a `SignRequest`.
    SignReply {
        /// Signed or refused.
        status: SignStatus,
        /// The member's new CA certificate, DER (empty when refused).
        certificate: Vec<u8>,
        /// The group root certificate, DER (empty when refused).
        root: Vec<u8>,
    },
    /// The group authority's current signed group list (members and revocations).
    GroupList {
        /// The list as signed (see `pairing::group::RevocationList`).
        list: Vec<u8>,
    },
    /// A trust-quorum message (types `0x10..=0x1F`).
    Quorum(quorum::Message),
}

const TYPE_HELLO: u8 = 1;
const TYPE_ALIVE: u8 = 2;
const TYPE_PING: u8 = 3;
const TYPE_BYE: u8 = 4;
const TYPE_SIGN_REQUEST: u8 = 5;
const TYPE_SIGN_REPLY: u8 = 6;
const TYPE_GROUP_LIST: u8 = 7;

/// A frame that can never become valid by reading more bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidFrame {
    /// The length field is below the minimum or above [`MAX_FRAME_LEN`].
    #[error("frame length {0} out of range")]
    BadLength(usize),
    /// A version this code does not speak.
    #[error("unsupported frame version {0}")]
    UnsupportedVersion(u8),
    /// A type this code does not know.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// The payload does not match its type's layout.
    #[error("malformed payload: {0}")]
    Malformed(&'static str),
}

/// Reads big-endian fields from a payload without indexing.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], InvalidFrame> {
        if self.rest.len() < n {
            return Err(InvalidFrame::Malformed("payload too short"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, InvalidFrame> {
        let b = self.take(1)?;
        b.first()
            .copied()
            .ok_or(InvalidFrame::Malformed("payload too short"))
    }

    fn u64(&mut self) -> Result<u64, InvalidFrame> {
        let b = self.take(8)?;
        let arr: [u8; 8] = b
            .try_into()
            .map_err(|_| InvalidFrame::Malformed("payload too short"))?;
        Ok(u64::from_be_bytes(arr))
    }

    fn u16(&mut self) -> Result<u16, InvalidFrame> {
        let b = self.take(2)?;
        let arr: [u8; 2] = b
            .try_into()
            .map_err(|_| InvalidFrame::Malformed("payload too short"))?;
        Ok(u16::from_be_bytes(arr))
    }

    /// A `u16`-length-prefixed byte string of `min..=max` bytes.
    fn bytes(
        &mut self,
        min: usize,
        max: usize,
        what: &'static str,
    ) -> Result<Vec<u8>, InvalidFrame> {
        let len = usize::from(self.u16()?);
        if !(min..=max).contains(&len) {
            return Err(InvalidFrame::Malformed(what));
        }
        Ok(self.take(len)?.to_vec())
    }

    fn finish(&self) -> Result<(), InvalidFrame> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(InvalidFrame::Malformed("trailing bytes"))
        }
    }
}

/// The payload cap of frame type `ty`; `None` for a type this code does not know.
fn payload_cap(ty: u8) -> Option<usize> {
    match ty {
        TYPE_HELLO => Some(MAX_SESSION_PAYLOAD),
        TYPE_ALIVE | TYPE_PING => Some(8),
        TYPE_BYE => Some(1),
        TYPE_SIGN_REQUEST => Some(2 + MAX_CSR_LEN),
        TYPE_SIGN_REPLY => Some(1 + 2 + MAX_CERT_LEN + 2 + MAX_CERT_LEN),
        TYPE_GROUP_LIST => Some(2 + MAX_GROUP_LIST_LEN),
        quorum::FIRST_TYPE..=quorum::LAST_TYPE => quorum::payload_cap(ty),
        _ => None,
    }
}

fn valid_name(name: &[u8]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
}

/// Appends `bytes` with its `u16` length, if it is `min..=max` bytes long.
fn put_bytes(
    body: &mut Vec<u8>,
    bytes: &[u8],
    min: usize,
    max: usize,
    what: &'static str,
) -> Result<(), InvalidFrame> {
    if !(min..=max).contains(&bytes.len()) {
        return Err(InvalidFrame::Malformed(what));
    }
    let len = u16::try_from(bytes.len()).map_err(|_| InvalidFrame::Malformed(what))?;
    body.extend_from_slice(&len.to_be_bytes());
    body.extend_from_slice(bytes);
    Ok(())
}

impl Frame {
    /// Appends the encoding of `self` to `out`.
    ///
    /// # Errors
    /// [`InvalidFrame::Malformed`] if a `Hello` name is not a valid name or a byte string is
    /// outside its type's bounds (a refused `SignReply` must carry none); nothing is appended.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), InvalidFrame> {
        // Sized for the heartbeats; the rare group frames grow it.
        let mut body = Vec::with_capacity(32);
        body.push(VERSION);
        match self {
            Frame::Hello { seq, boot_id, name } => {
                if !valid_name(name.as_bytes()) {
                    return Err(InvalidFrame::Malformed("invalid hello name"));
                }
                body.push(TYPE_HELLO);
                body.extend_from_slice(&seq.to_be_bytes());
                body.extend_from_slice(&boot_id.to_be_bytes());
                body.push(
                    u8::try_from(name.len())
                        .map_err(|_| InvalidFrame::Malformed("invalid hello name"))?,
                );
                body.extend_from_slice(name.as_bytes());
            }
            Frame::Alive { seq } => {
                body.push(TYPE_ALIVE);
                body.extend_from_slice(&seq.to_be_bytes());
            }
            Frame::Ping { seq } => {
                body.push(TYPE_PING);
                body.extend_from_slice(&seq.to_be_bytes());
            }
            Frame::Bye { reason } => {
                body.push(TYPE_BYE);
                body.push(reason.to_u8());
            }
            Frame::SignRequest { csr } => {
                body.push(TYPE_SIGN_REQUEST);
                put_bytes(&mut body, csr, 1, MAX_CSR_LEN, "bad csr length")?;
            }
            Frame::SignReply {
                status,
                certificate,
                root,
            } => {
                body.push(TYPE_SIGN_REPLY);
                let (min, max) = sign_reply_bounds(*status);
                body.push(match status {
                    SignStatus::Signed => 0,
                    SignStatus::BadCsr => 1,
                });
                put_bytes(&mut body, certificate, min, max, "bad certificate length")?;
                put_bytes(&mut body, root, min, max, "bad root length")?;
            }
            Frame::GroupList { list } => {
                body.push(TYPE_GROUP_LIST);
                put_bytes(&mut body, list, 1, MAX_GROUP_LIST_LEN, "bad list length")?;
            }
            Frame::Quorum(message) => {
                body.push(message.frame_type());
                message
                    .encode_payload(&mut body)
                    .map_err(|e| InvalidFrame::Malformed(e.0))?;
            }
        }
        let len = u16::try_from(body.len()).map_err(|_| InvalidFrame::BadLength(body.len()))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&body);
        Ok(())
    }

    /// The encoding of `self` as a new buffer.
    ///
    /// # Errors
    /// As [`Frame::encode`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, InvalidFrame> {
        let mut out = Vec::with_capacity(32);
        self.encode(&mut out)?;
        Ok(out)
    }

    /// Decodes one frame from the start of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a frame (read more and call again),
    /// `Ok(Some((frame, consumed)))` for a whole frame.
    ///
    /// # Errors
    /// [`InvalidFrame`] when the bytes can never form a valid frame; the connection should
    /// be closed.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, InvalidFrame> {
        let Some(len_bytes) = buf.get(..LEN_FIELD) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([
            len_bytes.first().copied().unwrap_or(0),
            len_bytes.get(1).copied().unwrap_or(0),
        ]));
        if !(2..=MAX_FRAME_LEN - LEN_FIELD).contains(&len) {
            return Err(InvalidFrame::BadLength(len));
        }
        // Each type has its own cap, checked as soon as the type byte is here (before the
        // rest is buffered).
        if let Some(ty) = buf.get(LEN_FIELD + 1).copied()
            && buf.get(LEN_FIELD).copied() == Some(VERSION)
            && len - 2 > payload_cap(ty).ok_or(InvalidFrame::UnknownType(ty))?
        {
            return Err(InvalidFrame::BadLength(len));
        }
        let Some(body) = buf.get(LEN_FIELD..LEN_FIELD + len) else {
            return Ok(None);
        };
        let mut r = Reader { rest: body };
        let version = r.u8()?;
        if version != VERSION {
            return Err(InvalidFrame::UnsupportedVersion(version));
        }
        let frame = match r.u8()? {
            TYPE_HELLO => {
                let seq = r.u64()?;
                let boot_id = r.u64()?;
                let name_len = usize::from(r.u8()?);
                let name = r.take(name_len)?;
                if !valid_name(name) {
                    return Err(InvalidFrame::Malformed("invalid hello name"));
                }
                let name = String::from_utf8(name.to_vec())
                    .map_err(|_| InvalidFrame::Malformed("invalid hello name"))?;
                Frame::Hello { seq, boot_id, name }
            }
            TYPE_ALIVE => Frame::Alive { seq: r.u64()? },
            TYPE_PING => Frame::Ping { seq: r.u64()? },
            TYPE_BYE => Frame::Bye {
                reason: ByeReason::from_u8(r.u8()?),
            },
            TYPE_SIGN_REQUEST => Frame::SignRequest {
                csr: r.bytes(1, MAX_CSR_LEN, "bad csr length")?,
            },
            TYPE_SIGN_REPLY => {
                let status = match r.u8()? {
                    0 => SignStatus::Signed,
                    1 => SignStatus::BadCsr,
                    _ => return Err(InvalidFrame::Malformed("unknown sign status")),
                };
                let (min, max) = sign_reply_bounds(status);
                Frame::SignReply {
                    status,
                    certificate: r.bytes(min, max, "bad certificate length")?,
                    root: r.bytes(min, max, "bad root length")?,
                }
            }
            TYPE_GROUP_LIST => Frame::GroupList {
                list: r.bytes(1, MAX_GROUP_LIST_LEN, "bad list length")?,
            },
            ty @ quorum::FIRST_TYPE..=quorum::LAST_TYPE => {
                let payload = r.take(r.rest.len())?;
                Frame::Quorum(
                    quorum::Message::decode_payload(ty, payload)
                        .map_err(|e| InvalidFrame::Malformed(e.0))?,
                )
            }
            other => return Err(InvalidFrame::UnknownType(other)),
        };
        r.finish()?;
        Ok(Some((frame, LEN_FIELD + len)))
    }
}

/// A signed reply carries both certificates; a refusal carries neither.
fn sign_reply_bounds(status: SignStatus) -> (usize, usize) {
    match status {
        SignStatus::Signed => (1, MAX_CERT_LEN),
        SignStatus::BadCsr => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn name_strategy() -> impl Strategy<Value = String> {
        "[A-Za-z0-9-]{1,63}"
    }

    fn frame_strategy() -> impl Strategy<Value = Frame> {
        prop_oneof![
            (any::<u64>(), any::<u64>(), name_strategy())
                .prop_map(|(seq, boot_id, name)| Frame::Hello { seq, boot_id, name }),
            any::<u64>().prop_map(|seq| Frame::Alive { seq }),
            any::<u64>().prop_map(|seq| Frame::Ping { seq }),
            any::<u8>().prop_map(|r| Frame::Bye {
                reason: ByeReason::from_u8(r)
            }),
            proptest::collection::vec(any::<u8>(), 1..=MAX_CSR_LEN)
                .prop_map(|csr| Frame::SignRequest { csr }),
            (
                proptest::collection::vec(any::<u8>(), 1..=MAX_CERT_LEN),
                proptest::collection::vec(any::<u8>(), 1..=MAX_CERT_LEN)
            )
                .prop_map(|(certificate, root)| Frame::SignReply {
                    status: SignStatus::Signed,
                    certificate,
                    root
                }),
            Just(Frame::SignReply {
                status: SignStatus::BadCsr,
                certificate: Vec::new(),
                root: Vec::new()
            }),
            proptest::collection::vec(any::<u8>(), 1..=MAX_GROUP_LIST_LEN)
                .prop_map(|list| Frame::GroupList { list }),
            quorum_strategy().prop_map(Frame::Quorum),
        ]
    }

    fn quorum_strategy() -> impl Strategy<Value = quorum::Message> {
        use quorum::{AckOf, Message, RefuseReason};
        prop_oneof![
            any::<u64>().prop_map(|epoch| Message::Abort { epoch }),
            any::<u64>().prop_map(|epoch| Message::Request { epoch }),
            any::<u64>().prop_map(|epoch| Message::Commit { epoch }),
            (any::<u64>(), 1u8..=3).prop_map(|(epoch, of)| Message::Ack {
                epoch,
                of: [AckOf::Delivery, AckOf::Commit, AckOf::Abort][usize::from(of - 1)],
            }),
            (any::<u64>(), 1u8..=255).prop_map(|(epoch, r)| Message::Refuse {
                epoch,
                reason: match r {
                    1 => RefuseReason::NotMember,
                    2 => RefuseReason::NotAdmitted,
                    3 => RefuseReason::AttestationStale,
                    4 => RefuseReason::WrongEpoch,
                    5 => RefuseReason::NoShare,
                    6 => RefuseReason::State,
                    7 => RefuseReason::BadDelivery,
                    8 => RefuseReason::StorageFailed,
                    v => RefuseReason::Other(v),
                },
            }),
            (any::<u64>(), 1u8..=16, any::<[u8; 31]>()).prop_map(|(epoch, index, v)| {
                let mut value = [0u8; 32];
                value[1..].copy_from_slice(&v);
                Message::Release {
                    epoch,
                    share: crate::quorum::vss::Share::from_parts(index, &value).unwrap(),
                }
            }),
        ]
    }

    #[test]
    fn a_share_delivery_round_trips_at_the_largest_group() {
        use crate::quorum::vss::{self, MAX_MEMBERS, Secret, tests::TestRng};
        let mut rng = TestRng::new(5);
        let (commitment, shares) = vss::split(
            &Secret::random(&mut rng),
            MAX_MEMBERS,
            MAX_MEMBERS,
            &mut rng,
        )
        .unwrap();
        let members = (0..MAX_MEMBERS)
            .map(|i| crate::keys::Fingerprint([u8::try_from(i).unwrap(); 32]))
            .collect();
        let frame = Frame::Quorum(quorum::Message::Deliver(Box::new(quorum::Delivery {
            epoch: 3,
            members,
            share: shares[15].clone(),
            commitment,
        })));
        let bytes = frame.to_bytes().unwrap();
        assert_eq!(
            bytes.len(),
            LEN_FIELD + 2 + quorum::MAX_DELIVER_PAYLOAD,
            "the largest share delivery fills its cap"
        );
        assert!(bytes.len() <= MAX_FRAME_LEN);
        let (decoded, used) = Frame::decode(&bytes).unwrap().unwrap();
        assert_eq!((decoded, used), (frame, bytes.len()));
        // Every prefix is incomplete, not an error.
        for cut in 0..bytes.len() {
            assert_eq!(Frame::decode(&bytes[..cut]), Ok(None));
        }
    }

    #[test]
    fn each_type_has_its_own_cap_checked_before_the_body_arrives() {
        // A Ping announcing 1000 bytes is refused from its first four bytes.
        assert_eq!(
            Frame::decode(&[0x03, 0xe8, VERSION, TYPE_PING]),
            Err(InvalidFrame::BadLength(1000))
        );
        // So is a quorum Request (8 bytes) announcing 10.
        assert_eq!(
            Frame::decode(&[0, 12, VERSION, 0x13]),
            Err(InvalidFrame::BadLength(12))
        );
        // An unassigned type in the quorum range is unknown.
        assert_eq!(
            Frame::decode(&[0, 10, VERSION, 0x1f]),
            Err(InvalidFrame::UnknownType(0x1f))
        );
        // A release whose share is not a scalar is malformed.
        let mut bytes = vec![0, 43, VERSION, 0x14];
        bytes.extend_from_slice(&[0; 8]);
        bytes.push(1);
        bytes.extend_from_slice(&[0xff; 32]);
        assert!(matches!(
            Frame::decode(&bytes),
            Err(InvalidFrame::Malformed(_))
        ));
    }

    proptest! {
        #[test]
        fn round_trip(frame in frame_strategy()) {
            let bytes = frame.to_bytes().unwrap();
            prop_assert!(bytes.len() <= MAX_FRAME_LEN);
            let (decoded, used) = Frame::decode(&bytes).unwrap().unwrap();
            prop_assert_eq!(used, bytes.len());
            prop_assert_eq!(decoded, frame);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_accepted_input_reencodes(bytes in proptest::collection::vec(any::<u8>(), 0..160)) {
            if let Ok(Some((frame, used))) = Frame::decode(&bytes) {
                prop_assert_eq!(frame.to_bytes().unwrap(), bytes[..used].to_vec());
            }
        }

        #[test]
        fn every_prefix_is_incomplete_not_an_error(frame in frame_strategy()) {
            let bytes = frame.to_bytes().unwrap();
            for cut in 0..bytes.len() {
                prop_assert_eq!(Frame::decode(&bytes[..cut]), Ok(None));
            }
        }
    }

    #[test]
    fn oversized_length_is_rejected_before_buffering() {
        assert_eq!(
            Frame::decode(&[0xff, 0xff]),
            Err(InvalidFrame::BadLength(0xffff))
        );
        assert_eq!(
            Frame::decode(&[0x00, 0x01]),
            Err(InvalidFrame::BadLength(1))
        );
    }

    #[test]
    fn wrong_version_type_and_trailing_bytes_are_rejected() {
        assert_eq!(
            Frame::decode(&[0, 2, 9, 1]),
            Err(InvalidFrame::UnsupportedVersion(9))
        );
        assert_eq!(
            Frame::decode(&[0, 2, 1, 99]),
            Err(InvalidFrame::UnknownType(99))
        );
        // A Ping one byte longer than a Ping is over its type's cap.
        let mut ping = Frame::Ping { seq: 1 }.to_bytes().unwrap();
        ping[1] += 1;
        ping.push(0);
        assert_eq!(Frame::decode(&ping), Err(InvalidFrame::BadLength(11)));
        // Within the cap, bytes after the layout are trailing bytes.
        let mut hello = Frame::Hello {
            seq: 1,
            boot_id: 2,
            name: "a".into(),
        }
        .to_bytes()
        .unwrap();
        hello[1] += 1;
        hello.push(0);
        assert_eq!(
            Frame::decode(&hello),
            Err(InvalidFrame::Malformed("trailing bytes"))
        );
    }

    #[test]
    fn hello_name_is_validated_both_ways() {
        assert!(
            Frame::Hello {
                seq: 0,
                boot_id: 0,
                name: "a b".into()
            }
            .to_bytes()
            .is_err()
        );
        assert!(
            Frame::Hello {
                seq: 0,
                boot_id: 0,
                name: String::new()
            }
            .to_bytes()
            .is_err()
        );
        let mut bytes = Frame::Hello {
            seq: 0,
            boot_id: 9,
            name: "ab".into(),
        }
        .to_bytes()
        .unwrap();
        let last = bytes.len() - 1;
        bytes[last] = b'/';
        assert_eq!(
            Frame::decode(&bytes),
            Err(InvalidFrame::Malformed("invalid hello name"))
        );
    }

    #[test]
    fn hello_carries_the_boot_id_after_the_seq() {
        let bytes = Frame::Hello {
            seq: 1,
            boot_id: 0x0102_0304_0506_0708,
            name: "b".into(),
        }
        .to_bytes()
        .unwrap();
        assert_eq!(
            bytes,
            [
                0, 20, VERSION, TYPE_HELLO, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 1, b'b'
            ]
        );
    }

    #[test]
    fn group_frames_respect_their_caps_both_ways() {
        let too_long = Frame::SignRequest {
            csr: vec![0; MAX_CSR_LEN + 1],
        };
        assert!(too_long.to_bytes().is_err());
        assert!(Frame::SignRequest { csr: Vec::new() }.to_bytes().is_err());
        // A refusal that smuggles a certificate, and a "signed" reply without one.
        for bad in [
            Frame::SignReply {
                status: SignStatus::BadCsr,
                certificate: vec![1],
                root: Vec::new(),
            },
            Frame::SignReply {
                status: SignStatus::Signed,
                certificate: vec![1],
                root: Vec::new(),
            },
        ] {
            assert!(bad.to_bytes().is_err(), "{bad:?}");
        }
        // Decoding: a CSR length field above the cap inside a frame of legal size.
        let mut bytes = Frame::SignRequest { csr: vec![7; 4] }.to_bytes().unwrap();
        bytes[4..6].copy_from_slice(&u16::try_from(MAX_CSR_LEN + 1).unwrap().to_be_bytes());
        assert_eq!(
            Frame::decode(&bytes),
            Err(InvalidFrame::Malformed("bad csr length"))
        );
        // An unknown status byte.
        let mut reply = Frame::SignReply {
            status: SignStatus::BadCsr,
            certificate: Vec::new(),
            root: Vec::new(),
        }
        .to_bytes()
        .unwrap();
        reply[4] = 9;
        assert_eq!(
            Frame::decode(&reply),
            Err(InvalidFrame::Malformed("unknown sign status"))
        );
        // The largest frame of all fits the length field and the global cap.
        let biggest = Frame::GroupList {
            list: vec![0; MAX_GROUP_LIST_LEN],
        }
        .to_bytes()
        .unwrap();
        assert_eq!(biggest.len(), MAX_FRAME_LEN);
        assert!(MAX_FRAME_LEN - 2 <= usize::from(u16::MAX));
    }

    #[test]
    fn seed_hello_alive_layout() {
        assert_eq!(
            Frame::Alive { seq: 7 }.to_bytes().unwrap(),
            [0, 10, VERSION, TYPE_ALIVE, 0, 0, 0, 0, 0, 0, 0, 7]
        );
    }
}
