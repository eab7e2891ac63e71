//! SPDM 1.2 messages (DSP0274), one file per request/response pair.
//!
//! Every message is `SPDMVersion | RequestResponseCode | Param1 | Param2 | body`. [`Message`]
//! owns the first two bytes and dispatches on the code; each body type reads and writes
//! `Param1 | Param2 | body`. Parsing is strict and canonical: reserved fields must be zero,
//! length and count fields must agree with the bytes present, and trailing bytes are
//! rejected, so any accepted message re-encodes to exactly the bytes it came from.
//!
//! Codes this crate does not model (KEY_EXCHANGE, encapsulated requests, ...) parse as
//! [`Other`], keeping their bytes, so a trace of a richer peer can still be walked.
//!
//! Some responses cannot be split without knowing what was negotiated and requested (hash
//! and signature sizes, whether a summary hash or signature is present); [`ParseContext`]
//! carries that.

pub mod algorithms;
pub mod capabilities;
pub mod certificate;
pub mod challenge;
pub mod digests;
pub mod error;
pub mod measurements;
pub mod version;

pub use algorithms::{AlgStruct, Algorithms, NegotiateAlgorithms};
pub use capabilities::Capabilities;
pub use certificate::{Certificate, GetCertificate};
pub use challenge::{Challenge, ChallengeAuth};
pub use digests::{Digests, GetDigests};
pub use error::{ErrorCode, ErrorResponse, NotReady, RespondIfReady};
pub use measurements::{DmtfMeasurement, GetMeasurements, MeasurementBlock, Measurements};
pub use version::{GetVersion, Version, VersionNumber};

use super::codec::{Codec, InvalidMessage, Reader};

/// Version byte of GET_VERSION and VERSION, whatever is negotiated later.
pub const SPDM_VERSION_10: u8 = 0x10;
/// Version byte of SPDM 1.2, the only version this crate negotiates.
pub const SPDM_VERSION_12: u8 = 0x12;
/// Length of every SPDM nonce.
pub const NONCE_LEN: usize = 32;
/// Upper bound on OpaqueData (DSP0274 1.2 limits it to 1024 bytes).
pub const MAX_OPAQUE_DATA: usize = 1024;
/// Upper bound on ExtendedErrorData (DSP0274: at most 32 bytes).
pub const MAX_EXTENDED_ERROR_DATA: usize = 32;
/// Upper bound on a measurement record we accept, checked before allocation.
pub const MAX_MEASUREMENT_RECORD: usize = 0xFFFF;
/// Largest hash this crate can negotiate (SHA-512 sized, to parse unknown peers safely).
pub const MAX_HASH_LEN: usize = 64;
/// Largest signature this crate can parse (P-521 sized).
pub const MAX_SIGNATURE_LEN: usize = 132;

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $( $(#[$vm:meta])* $var:ident = $val:expr ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vm])* $var, )*
            /// A value this crate does not name; kept so decoding never fails on it.
            Unknown(u8),
        }

        impl From<u8> for $name {
            fn from(v: u8) -> Self {
                match v {
                    $( $val => $name::$var, )*
                    other => $name::Unknown(other),
                }
            }
        }

        impl From<$name> for u8 {
            fn from(v: $name) -> u8 {
                match v {
                    $( $name::$var => $val, )*
                    $name::Unknown(other) => other,
                }
            }
        }
    };
}
pub(crate) use wire_enum;

wire_enum! {
    /// RequestResponseCode, the second byte of every SPDM message.
    Code {
        /// GET_VERSION request.
        GetVersion = 0x84,
        /// VERSION response.
        Version = 0x04,
        /// GET_CAPABILITIES request.
        GetCapabilities = 0xE1,
        /// CAPABILITIES response.
        Capabilities = 0x61,
        /// NEGOTIATE_ALGORITHMS request.
        NegotiateAlgorithms = 0xE3,
        /// ALGORITHMS response.
        Algorithms = 0x63,
        /// GET_DIGESTS request.
        GetDigests = 0x81,
        /// DIGESTS response.
        Digests = 0x01,
        /// GET_CERTIFICATE request.
        GetCertificate = 0x82,
        /// CERTIFICATE response.
        Certificate = 0x02,
        /// CHALLENGE request.
        Challenge = 0x83,
        /// CHALLENGE_AUTH response.
        ChallengeAuth = 0x03,
        /// GET_MEASUREMENTS request.
        GetMeasurements = 0xE0,
        /// MEASUREMENTS response.
        Measurements = 0x60,
        /// ERROR response.
        Error = 0x7F,
        /// RESPOND_IF_READY request.
        RespondIfReady = 0xFF,
        /// KEY_EXCHANGE request (not implemented; carried as [`Other`]).
        KeyExchange = 0xE4,
        /// KEY_EXCHANGE_RSP response (carried as [`Other`]).
        KeyExchangeRsp = 0x64,
        /// FINISH request (carried as [`Other`]).
        Finish = 0xE5,
        /// FINISH_RSP response (carried as [`Other`]).
        FinishRsp = 0x65,
        /// PSK_EXCHANGE request (carried as [`Other`]).
        PskExchange = 0xE6,
        /// PSK_FINISH request (carried as [`Other`]).
        PskFinish = 0xE7,
        /// HEARTBEAT request (carried as [`Other`]).
        Heartbeat = 0xE8,
        /// KEY_UPDATE request (carried as [`Other`]).
        KeyUpdate = 0xE9,
        /// GET_ENCAPSULATED_REQUEST (carried as [`Other`]).
        GetEncapsulatedRequest = 0xEA,
        /// DELIVER_ENCAPSULATED_RESPONSE (carried as [`Other`]).
        DeliverEncapsulatedResponse = 0xEB,
        /// END_SESSION request (carried as [`Other`]).
        EndSession = 0xEC,
        /// ENCAPSULATED_REQUEST response (carried as [`Other`]).
        EncapsulatedRequest = 0x6A,
        /// ENCAPSULATED_RESPONSE_ACK response (carried as [`Other`]).
        EncapsulatedResponseAck = 0x6B,
        /// VENDOR_DEFINED_REQUEST (carried as [`Other`]).
        VendorDefinedRequest = 0xFE,
        /// VENDOR_DEFINED_RESPONSE (carried as [`Other`]).
        VendorDefinedResponse = 0x7E,
        /// CHUNK_SEND request (carried as [`Other`]).
        ChunkSend = 0x85,
        /// CHUNK_GET request (carried as [`Other`]).
        ChunkGet = 0x86,
    }
}

impl Code {
    /// True for request codes (bit 7 set), false for responses.
    pub fn is_request(self) -> bool {
        u8::from(self) & 0x80 != 0
    }
}

/// What the parser must know to split responses whose layout depends on negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseContext {
    /// Size of the negotiated BaseHash (digests, cert chain hash, summary hash).
    pub hash_len: usize,
    /// Size of a signature with the negotiated BaseAsym.
    pub signature_len: usize,
    /// Whether the CHALLENGE asked for a measurement summary hash (Param2 != 0).
    pub summary_hash: bool,
    /// Whether the GET_MEASUREMENTS asked for a signature.
    pub signed_measurements: bool,
}

impl Default for ParseContext {
    /// SHA-256, P-256, summary hash requested, signature requested: what our requester asks.
    fn default() -> Self {
        ParseContext {
            hash_len: 32,
            signature_len: 64,
            summary_hash: true,
            signed_measurements: true,
        }
    }
}

/// One message body: everything after the code byte.
pub trait Body: Sized {
    /// The code this body is sent under.
    const CODE: Code;

    /// Appends `Param1 | Param2 | body`.
    fn encode_body(&self, out: &mut Vec<u8>);

    /// Reads `Param1 | Param2 | body`.
    ///
    /// # Errors
    /// [`InvalidMessage`] for malformed input.
    fn read_body(r: &mut Reader<'_>, ctx: &ParseContext) -> Result<Self, InvalidMessage>;
}

/// A message whose code this crate does not model: its params and body bytes, verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Other {
    /// The RequestResponseCode (never one of the modelled codes).
    pub code: u8,
    /// Param1.
    pub param1: u8,
    /// Param2.
    pub param2: u8,
    /// Everything after Param2.
    pub body: Vec<u8>,
}

/// The typed body of a [`Message`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is the DSP0274 message of the same name
pub enum Payload {
    GetVersion(GetVersion),
    Version(Version),
    GetCapabilities(Capabilities),
    Capabilities(Capabilities),
    NegotiateAlgorithms(NegotiateAlgorithms),
    Algorithms(Algorithms),
    GetDigests(GetDigests),
    Digests(Digests),
    GetCertificate(GetCertificate),
    Certificate(Certificate),
    Challenge(Challenge),
    ChallengeAuth(ChallengeAuth),
    GetMeasurements(GetMeasurements),
    Measurements(Measurements),
    Error(ErrorResponse),
    RespondIfReady(RespondIfReady),
    Other(Other),
}

/// A whole SPDM message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// SPDMVersion byte (`major << 4 | minor`).
    pub version: u8,
    /// The typed rest.
    pub payload: Payload,
}

fn read_as<B: Body>(
    r: &mut Reader<'_>,
    ctx: &ParseContext,
    wrap: fn(B) -> Payload,
) -> Result<Payload, InvalidMessage> {
    B::read_body(r, ctx).map(wrap)
}

impl Message {
    /// Wraps `payload` under `version`.
    pub fn new(version: u8, payload: Payload) -> Self {
        Message { version, payload }
    }

    /// The RequestResponseCode of this message.
    pub fn code(&self) -> Code {
        match &self.payload {
            Payload::GetVersion(_) => Code::GetVersion,
            Payload::Version(_) => Code::Version,
            Payload::GetCapabilities(_) => Code::GetCapabilities,
            Payload::Capabilities(_) => Code::Capabilities,
            Payload::NegotiateAlgorithms(_) => Code::NegotiateAlgorithms,
            Payload::Algorithms(_) => Code::Algorithms,
            Payload::GetDigests(_) => Code::GetDigests,
            Payload::Digests(_) => Code::Digests,
            Payload::GetCertificate(_) => Code::GetCertificate,
            Payload::Certificate(_) => Code::Certificate,
            Payload::Challenge(_) => Code::Challenge,
            Payload::ChallengeAuth(_) => Code::ChallengeAuth,
            Payload::GetMeasurements(_) => Code::GetMeasurements,
            Payload::Measurements(_) => Code::Measurements,
            Payload::Error(_) => Code::Error,
            Payload::RespondIfReady(_) => Code::RespondIfReady,
            Payload::Other(o) => Code::from(o.code),
        }
    }

    /// Parses one whole message; `ctx` is consulted only by context-dependent responses.
    ///
    /// # Errors
    /// [`InvalidMessage`] for malformed, truncated or over-long input.
    pub fn read(bytes: &[u8], ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        let mut r = Reader::new(bytes);
        let version = r.u8("SPDMVersion")?;
        let code = Code::from(r.u8("RequestResponseCode")?);
        let payload = match code {
            Code::GetVersion => read_as(&mut r, ctx, Payload::GetVersion)?,
            Code::Version => read_as(&mut r, ctx, Payload::Version)?,
            Code::GetCapabilities => {
                Payload::GetCapabilities(capabilities::read_fields(&mut r, "GET_CAPABILITIES")?)
            }
            Code::Capabilities => read_as(&mut r, ctx, Payload::Capabilities)?,
            Code::NegotiateAlgorithms => read_as(&mut r, ctx, Payload::NegotiateAlgorithms)?,
            Code::Algorithms => read_as(&mut r, ctx, Payload::Algorithms)?,
            Code::GetDigests => read_as(&mut r, ctx, Payload::GetDigests)?,
            Code::Digests => read_as(&mut r, ctx, Payload::Digests)?,
            Code::GetCertificate => read_as(&mut r, ctx, Payload::GetCertificate)?,
            Code::Certificate => read_as(&mut r, ctx, Payload::Certificate)?,
            Code::Challenge => read_as(&mut r, ctx, Payload::Challenge)?,
            Code::ChallengeAuth => read_as(&mut r, ctx, Payload::ChallengeAuth)?,
            Code::GetMeasurements => read_as(&mut r, ctx, Payload::GetMeasurements)?,
            Code::Measurements => read_as(&mut r, ctx, Payload::Measurements)?,
            Code::Error => read_as(&mut r, ctx, Payload::Error)?,
            Code::RespondIfReady => read_as(&mut r, ctx, Payload::RespondIfReady)?,
            other => Payload::Other(Other {
                code: u8::from(other),
                param1: r.u8("Param1")?,
                param2: r.u8("Param2")?,
                body: r.rest().to_vec(),
            }),
        };
        r.expect_empty("message")?;
        Ok(Message { version, payload })
    }

    /// Appends the encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.version);
        out.push(u8::from(self.code()));
        match &self.payload {
            Payload::GetVersion(b) => b.encode_body(out),
            Payload::Version(b) => b.encode_body(out),
            Payload::GetCapabilities(b) | Payload::Capabilities(b) => b.encode_body(out),
            Payload::NegotiateAlgorithms(b) => b.encode_body(out),
            Payload::Algorithms(b) => b.encode_body(out),
            Payload::GetDigests(b) => b.encode_body(out),
            Payload::Digests(b) => b.encode_body(out),
            Payload::GetCertificate(b) => b.encode_body(out),
            Payload::Certificate(b) => b.encode_body(out),
            Payload::Challenge(b) => b.encode_body(out),
            Payload::ChallengeAuth(b) => b.encode_body(out),
            Payload::GetMeasurements(b) => b.encode_body(out),
            Payload::Measurements(b) => b.encode_body(out),
            Payload::Error(b) => b.encode_body(out),
            Payload::RespondIfReady(b) => b.encode_body(out),
            Payload::Other(o) => {
                out.push(o.param1);
                out.push(o.param2);
                out.extend_from_slice(&o.body);
            }
        }
    }

    /// The encoding as a fresh vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Decodes `bytes` under `ctx` and, when accepted, re-encodes and compares: the round-trip
/// property the fuzz target and proptests check. Returns whether the input was accepted.
///
/// # Panics
/// When an accepted input does not re-encode to itself; that is a codec bug the fuzzer
/// must report, never reachable from a correct codec.
#[allow(clippy::panic)]
pub fn fuzz_message(bytes: &[u8], ctx: &ParseContext) -> bool {
    match Message::read(bytes, ctx) {
        Ok(msg) => {
            let again = msg.to_bytes();
            if again != bytes {
                panic!("codec is not canonical for {:?}", msg.code());
            }
            true
        }
        Err(_) => false,
    }
}

/// Reads a `u16`-length-prefixed opaque data field, bounded by [`MAX_OPAQUE_DATA`].
pub(crate) fn read_opaque(r: &mut Reader<'_>) -> Result<Vec<u8>, InvalidMessage> {
    let len = usize::from(r.u16("OpaqueDataLength")?);
    if len > MAX_OPAQUE_DATA {
        return Err(InvalidMessage::TooLarge("OpaqueData"));
    }
    Ok(r.take(len, "OpaqueData")?.to_vec())
}

/// Writes a `u16`-length-prefixed opaque data field.
pub(crate) fn put_opaque(out: &mut Vec<u8>, data: &[u8]) {
    super::codec::put_u16(out, super::codec::len_u16(data.len()));
    out.extend_from_slice(data);
}

/// Checks a context-supplied size before it is used to slice the input.
pub(crate) fn checked_size(
    len: usize,
    max: usize,
    what: &'static str,
) -> Result<usize, InvalidMessage> {
    if len == 0 || len > max {
        Err(InvalidMessage::InvalidValue(what))
    } else {
        Ok(len)
    }
}

impl Codec for Message {
    fn encode(&self, out: &mut Vec<u8>) {
        Message::encode(self, out);
    }

    /// Reads with [`ParseContext::default`]: right for every request and for responses
    /// to our own requester's P-256/SHA-256 flow.
    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        Message::read(r.rest(), &ParseContext::default())
    }
}
