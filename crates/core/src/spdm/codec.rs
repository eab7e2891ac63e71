//! The wire codec: the [`Codec`] trait every SPDM structure implements, the [`Reader`] cursor
//! decoders use instead of slice indexing, and [`InvalidMessage`], the one decode error.
//!
//! Shaped like the TLS stack's `msgs/codec.rs`: `encode` appends, `read` consumes, and
//! [`Codec::read_bytes`] rejects trailing data. All SPDM integers are little-endian.
//! This file does no I/O and knows nothing of SPDM semantics.

use std::fmt;

/// Why bytes could not be decoded. `Copy`, with a static context string naming the field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidMessage {
    /// The input ended before the named field was complete.
    Truncated(&'static str),
    /// Bytes were left over after a complete structure.
    TrailingData(&'static str),
    /// A field that must be zero in SPDM 1.2 was not.
    NonZeroReserved(&'static str),
    /// A field holds a value this codec cannot represent or the spec forbids.
    InvalidValue(&'static str),
    /// A length field exceeds its named limit (checked before anything is allocated).
    TooLarge(&'static str),
    /// A length or count field disagrees with the bytes actually present.
    LengthMismatch(&'static str),
}

impl fmt::Display for InvalidMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidMessage::Truncated(what) => write!(f, "truncated {what}"),
            InvalidMessage::TrailingData(what) => write!(f, "trailing data after {what}"),
            InvalidMessage::NonZeroReserved(what) => write!(f, "reserved field not zero in {what}"),
            InvalidMessage::InvalidValue(what) => write!(f, "invalid value in {what}"),
            InvalidMessage::TooLarge(what) => write!(f, "{what} exceeds its limit"),
            InvalidMessage::LengthMismatch(what) => write!(f, "length mismatch in {what}"),
        }
    }
}

impl std::error::Error for InvalidMessage {}

/// A cursor over borrowed bytes. Every accessor checks bounds and returns
/// [`InvalidMessage::Truncated`] with the caller's field name instead of panicking.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    used: usize,
}

impl<'a> Reader<'a> {
    /// A reader positioned at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, used: 0 }
    }

    /// Takes the next `len` bytes.
    ///
    /// # Errors
    /// [`InvalidMessage::Truncated`] naming `what` when fewer remain.
    pub fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], InvalidMessage> {
        let end = self
            .used
            .checked_add(len)
            .ok_or(InvalidMessage::Truncated(what))?;
        let out = self
            .buf
            .get(self.used..end)
            .ok_or(InvalidMessage::Truncated(what))?;
        self.used = end;
        Ok(out)
    }

    /// Takes the next `N` bytes as an array.
    ///
    /// # Errors
    /// [`InvalidMessage::Truncated`] naming `what` when fewer remain.
    pub fn take_array<const N: usize>(
        &mut self,
        what: &'static str,
    ) -> Result<[u8; N], InvalidMessage> {
        let bytes = self.take(N, what)?;
        bytes
            .try_into()
            .map_err(|_| InvalidMessage::Truncated(what))
    }

    /// A child reader over the next `len` bytes (a length-prefixed body).
    ///
    /// # Errors
    /// [`InvalidMessage::Truncated`] naming `what` when fewer remain.
    pub fn sub(&mut self, len: usize, what: &'static str) -> Result<Reader<'a>, InvalidMessage> {
        self.take(len, what).map(Reader::new)
    }

    /// Everything not yet consumed.
    pub fn rest(&mut self) -> &'a [u8] {
        let out = self.buf.get(self.used..).unwrap_or_default();
        self.used = self.buf.len();
        out
    }

    /// True while unread bytes remain.
    pub fn any_left(&self) -> bool {
        self.used < self.buf.len()
    }

    /// How many bytes remain.
    pub fn left(&self) -> usize {
        self.buf.len().saturating_sub(self.used)
    }

    /// Reads a `u8`.
    ///
    /// # Errors
    /// [`InvalidMessage::Truncated`].
    pub fn u8(&mut self, what: &'static str) -> Result<u8, InvalidMessage> {
        let [b] = self.take_array::<1>(what)?;
        Ok(b)
    }

    /// Reads a little-endian `u16`.
    ///
    /// # Errors
    /// [`InvalidMessage::Truncated`].
    pub fn u16(&mut self, what: &'static str) -> Result<u16, InvalidMessage> {
        Ok(u16::from_le_bytes(self.take_array(what)?))
    }

    /// Reads a little-endian 24-bit integer (measurement record length).
    ///
    /// # Errors
    /// [`InvalidMessage::Truncated`].
    pub fn u24(&mut self, what: &'static str) -> Result<u32, InvalidMessage> {
        let [a, b, c] = self.take_array::<3>(what)?;
        Ok(u32::from_le_bytes([a, b, c, 0]))
    }

    /// Reads a little-endian `u32`.
    ///
    /// # Errors
    /// [`InvalidMessage::Truncated`].
    pub fn u32(&mut self, what: &'static str) -> Result<u32, InvalidMessage> {
        Ok(u32::from_le_bytes(self.take_array(what)?))
    }

    /// Reads a byte that SPDM 1.2 reserves; it must be zero.
    ///
    /// # Errors
    /// [`InvalidMessage::NonZeroReserved`] or [`InvalidMessage::Truncated`].
    pub fn reserved(&mut self, len: usize, what: &'static str) -> Result<(), InvalidMessage> {
        if self.take(len, what)?.iter().all(|b| *b == 0) {
            Ok(())
        } else {
            Err(InvalidMessage::NonZeroReserved(what))
        }
    }

    /// Fails unless every byte has been consumed.
    ///
    /// # Errors
    /// [`InvalidMessage::TrailingData`] naming `what`.
    pub fn expect_empty(&self, what: &'static str) -> Result<(), InvalidMessage> {
        if self.any_left() {
            Err(InvalidMessage::TrailingData(what))
        } else {
            Ok(())
        }
    }
}

/// A wire structure: appends itself to a buffer and reads itself from a [`Reader`].
pub trait Codec: Sized {
    /// Appends the encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Reads one value, consuming exactly its bytes.
    ///
    /// # Errors
    /// [`InvalidMessage`] for malformed or truncated input.
    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage>;

    /// The encoding as a fresh vector.
    fn get_encoding(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Reads one value that must span all of `bytes`.
    ///
    /// # Errors
    /// [`InvalidMessage`], including [`InvalidMessage::TrailingData`].
    fn read_bytes(bytes: &[u8]) -> Result<Self, InvalidMessage> {
        let mut r = Reader::new(bytes);
        let v = Self::read(&mut r)?;
        r.expect_empty("message")?;
        Ok(v)
    }
}

/// Appends a little-endian `u16`.
pub fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Appends a little-endian 24-bit integer; values are limited to 24 bits by their producers,
/// and the top byte is dropped by construction here.
pub fn put_u24(out: &mut Vec<u8>, v: u32) {
    let [a, b, c, _] = v.to_le_bytes();
    out.extend_from_slice(&[a, b, c]);
}

/// Appends a little-endian `u32`.
pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// A length as `u16`, saturating. Producers check lengths against their `MAX_*` limits
/// before encoding, so saturation never happens for values this crate builds.
pub fn len_u16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

/// A count as `u8`, saturating (see [`len_u16`]).
pub fn len_u8(len: usize) -> u8 {
    u8::try_from(len).unwrap_or(u8::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_truncation_with_the_field_name() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16("a").unwrap(), 0x0201);
        assert_eq!(r.u16("b"), Err(InvalidMessage::Truncated("b")));
        // A failed read consumes nothing.
        assert_eq!(r.u8("c").unwrap(), 3);
        assert!(!r.any_left());
        assert_eq!(
            r.take(usize::MAX, "huge"),
            Err(InvalidMessage::Truncated("huge"))
        );
    }

    #[test]
    fn u24_round_trip_and_reserved_check() {
        let mut out = Vec::new();
        put_u24(&mut out, 0x00ab_cdef);
        assert_eq!(out, [0xef, 0xcd, 0xab]);
        assert_eq!(Reader::new(&out).u24("x").unwrap(), 0x00ab_cdef);
        assert_eq!(
            Reader::new(&[0, 1]).reserved(2, "r"),
            Err(InvalidMessage::NonZeroReserved("r"))
        );
        assert!(Reader::new(&[0, 0]).reserved(2, "r").is_ok());
    }
}
