//! The on-disk form of one TPM-wrapped key: pure bytes in, bytes out, no TPM and no I/O.
//!
//! Layout of `<blob dir>/<role>.tpmkey`:
//!
//! ```text
//! "BPMTPMK1"      8-byte magic and format version
//! TPM2B_PUBLIC    u16 big-endian size, then the marshalled TPMT_PUBLIC
//! TPM2B_PRIVATE   u16 big-endian size, then the TPM's opaque wrapped private area
//! ```
//!
//! After the magic, the bytes are exactly what `tpm2_create -u key.pub -r key.priv` writes,
//! concatenated, so an operator can split a blob and inspect or load it with tpm2-tools.
//! The private area is encrypted and integrity-protected by the TPM under the storage
//! primary; it is useless without that TPM's owner seed.
//!
//! This module only frames the two areas; whether they are a valid key is the TPM's call.

/// Magic and version at the start of every blob.
pub(super) const MAGIC: &[u8; 8] = b"BPMTPMK1";

/// Larger files are rejected before parsing; a real blob is a few hundred bytes
/// (TPMT_PUBLIC of a P-256 key ~90 bytes, the wrapped private ~130).
pub(super) const MAX_BLOB_LEN: usize = 4096;

/// Why bytes are not a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub(super) enum InvalidBlob {
    /// The file is larger than [`MAX_BLOB_LEN`].
    #[error("blob is larger than {MAX_BLOB_LEN} bytes")]
    TooLarge,
    /// The file does not start with [`MAGIC`].
    #[error("blob does not start with the expected magic")]
    BadMagic,
    /// A field ends past the end of the file.
    #[error("blob is truncated in {0}")]
    Truncated(&'static str),
    /// A field is empty.
    #[error("blob has an empty {0}")]
    Empty(&'static str),
    /// Bytes follow the private area.
    #[error("blob has trailing bytes")]
    Trailing,
}

/// The two areas TPM2_Create returned, as marshalled bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Blob {
    /// Marshalled TPMT_PUBLIC (without the TPM2B size prefix).
    pub(super) public: Vec<u8>,
    /// Contents of the TPM2B_PRIVATE (without its size prefix).
    pub(super) private: Vec<u8>,
}

impl Blob {
    /// Serialises the blob.
    ///
    /// # Errors
    /// [`InvalidBlob::TooLarge`] when an area does not fit a u16 size or the whole exceeds
    /// [`MAX_BLOB_LEN`]; [`InvalidBlob::Empty`] for an empty area. Either means the TPM
    /// returned something no TPM returns.
    pub(super) fn encode(&self) -> Result<Vec<u8>, InvalidBlob> {
        let mut out = Vec::with_capacity(MAGIC.len() + 4 + self.public.len() + self.private.len());
        out.extend_from_slice(MAGIC);
        put_sized(&mut out, &self.public, "public area")?;
        put_sized(&mut out, &self.private, "private area")?;
        if out.len() > MAX_BLOB_LEN {
            return Err(InvalidBlob::TooLarge);
        }
        Ok(out)
    }

    /// Parses a blob; rejects anything but exactly one well-framed blob.
    ///
    /// # Errors
    /// Every [`InvalidBlob`] variant.
    pub(super) fn decode(bytes: &[u8]) -> Result<Blob, InvalidBlob> {
        if bytes.len() > MAX_BLOB_LEN {
            return Err(InvalidBlob::TooLarge);
        }
        let rest = bytes.strip_prefix(MAGIC).ok_or(InvalidBlob::BadMagic)?;
        let (public, rest) = take_sized(rest, "public area")?;
        let (private, rest) = take_sized(rest, "private area")?;
        if !rest.is_empty() {
            return Err(InvalidBlob::Trailing);
        }
        Ok(Blob {
            public: public.to_vec(),
            private: private.to_vec(),
        })
    }
}

fn put_sized(out: &mut Vec<u8>, area: &[u8], what: &'static str) -> Result<(), InvalidBlob> {
    if area.is_empty() {
        return Err(InvalidBlob::Empty(what));
    }
    let len = u16::try_from(area.len()).map_err(|_| InvalidBlob::TooLarge)?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(area);
    Ok(())
}

fn take_sized<'a>(
    bytes: &'a [u8],
    what: &'static str,
) -> Result<(&'a [u8], &'a [u8]), InvalidBlob> {
    let (len, rest) = bytes
        .split_first_chunk::<2>()
        .ok_or(InvalidBlob::Truncated(what))?;
    let len = usize::from(u16::from_be_bytes(*len));
    if len == 0 {
        return Err(InvalidBlob::Empty(what));
    }
    rest.split_at_checked(len)
        .ok_or(InvalidBlob::Truncated(what))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Blob {
        Blob {
            public: vec![0x00, 0x23, 0x00, 0x0b, 1, 2, 3],
            private: vec![9; 126],
        }
    }

    #[test]
    fn layout_is_magic_then_two_tpm2b() {
        let bytes = sample().encode().unwrap();
        assert_eq!(&bytes[..8], MAGIC);
        assert_eq!(&bytes[8..10], &[0, 7]);
        assert_eq!(&bytes[10..17], &sample().public[..]);
        assert_eq!(&bytes[17..19], &[0, 126]);
        assert_eq!(bytes.len(), 19 + 126);
    }

    #[test]
    fn malformed_blobs_are_typed_errors() {
        let good = sample().encode().unwrap();
        assert_eq!(Blob::decode(b"garbage"), Err(InvalidBlob::BadMagic));
        assert_eq!(Blob::decode(b""), Err(InvalidBlob::BadMagic));
        assert_eq!(
            Blob::decode(&good[..good.len() - 1]),
            Err(InvalidBlob::Truncated("private area"))
        );
        assert_eq!(
            Blob::decode(&good[..9]),
            Err(InvalidBlob::Truncated("public area"))
        );
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(Blob::decode(&trailing), Err(InvalidBlob::Trailing));
        let mut empty = MAGIC.to_vec();
        empty.extend_from_slice(&[0, 0]);
        assert_eq!(Blob::decode(&empty), Err(InvalidBlob::Empty("public area")));
        assert_eq!(
            Blob::decode(&vec![0u8; MAX_BLOB_LEN + 1]),
            Err(InvalidBlob::TooLarge)
        );
        let huge = Blob {
            public: vec![1; 70_000],
            private: vec![1],
        };
        assert_eq!(huge.encode(), Err(InvalidBlob::TooLarge));
    }

    proptest! {
        #[test]
        fn round_trips(public in prop::collection::vec(any::<u8>(), 1..600),
                       private in prop::collection::vec(any::<u8>(), 1..600)) {
            let blob = Blob { public, private };
            let bytes = blob.encode().unwrap();
            prop_assert_eq!(Blob::decode(&bytes).unwrap(), blob);
        }

        #[test]
        fn arbitrary_bytes_never_panic_and_accepted_input_re_encodes(
            tail in prop::collection::vec(any::<u8>(), 0..300),
            with_magic in any::<bool>(),
        ) {
            let mut bytes = if with_magic { MAGIC.to_vec() } else { Vec::new() };
            bytes.extend_from_slice(&tail);
            if let Ok(blob) = Blob::decode(&bytes) {
                prop_assert_eq!(blob.encode().unwrap(), bytes);
            }
        }
    }
}
