//! Pure framing for SPDM over TCP: DSP0287 frames and the DMTF emulator's platform-port
//! header. Bytes in, frames out; no I/O, so it can be fuzzed and proptested.
//!
//! DSP0287 (as libspdm implements it): `PayloadLength u16 LE | BindingVersion 0x01 |
//! MessageType | payload`, where PayloadLength counts everything after itself. Discovery
//! frames (RoleInquiry 0xBF, errors 0xC0..) carry PayloadLength 0, as libspdm encodes and
//! requires them, although their two header bytes follow; we accept exactly that form.
//!
//! The emulator wraps each transport message in `Command u32 BE | TransportType u32 BE |
//! PayloadSize u32 BE | payload`.
//!
//! Every length is checked against a caller-supplied cap before anything is allocated.

use std::fmt;

/// DSP0287 BindingVersion.
pub const BINDING_VERSION: u8 = 0x01;
/// Length of the DSP0287 header (length, version, type).
pub const HEADER_LEN: usize = 4;
/// Length of the emulator's platform-port header.
pub const EMU_HEADER_LEN: usize = 12;
/// The IANA-assigned SPDM TCP port.
pub const DEFAULT_PORT: u16 = 4194;

/// Why bytes are not a valid frame. `Copy`, with a static context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidFrame {
    /// The announced length exceeds the cap.
    TooLarge(&'static str),
    /// The announced length is impossible (e.g. 1).
    BadLength(&'static str),
    /// BindingVersion is not 0x01.
    BadBindingVersion(u8),
    /// A MessageType this binding does not define, or the wrong length form for it.
    BadMessageType(u8),
    /// The emulator header names a different transport than this connection uses.
    TransportMismatch(u32),
    /// An emulator command we do not handle.
    UnknownCommand(u32),
}

impl fmt::Display for InvalidFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidFrame::TooLarge(what) => write!(f, "{what} exceeds the frame size cap"),
            InvalidFrame::BadLength(what) => write!(f, "impossible length in {what}"),
            InvalidFrame::BadBindingVersion(v) => write!(f, "dsp0287 binding version {v:#04x}"),
            InvalidFrame::BadMessageType(t) => write!(f, "dsp0287 message type {t:#04x}"),
            InvalidFrame::TransportMismatch(t) => write!(f, "emulator transport type {t}"),
            InvalidFrame::UnknownCommand(c) => write!(f, "emulator command {c:#06x}"),
        }
    }
}

impl std::error::Error for InvalidFrame {}

/// DSP0287 MessageType: an out-of-session SPDM message.
pub const TYPE_SPDM: u8 = 0x05;
/// DSP0287 MessageType: a secured (in-session) SPDM message.
pub const TYPE_SECURED: u8 = 0x06;
/// DSP0287 MessageType: RoleInquiry.
pub const TYPE_ROLE_INQUIRY: u8 = 0xBF;
/// DSP0287 error: message too large.
pub const TYPE_ERROR_TOO_LARGE: u8 = 0xC0;
/// DSP0287 error: not supported.
pub const TYPE_ERROR_NOT_SUPPORTED: u8 = 0xC1;
/// DSP0287 error: cannot operate as requester.
pub const TYPE_ERROR_CANNOT_REQUESTER: u8 = 0xC2;
/// DSP0287 error: cannot operate as responder.
pub const TYPE_ERROR_CANNOT_RESPONDER: u8 = 0xC3;

/// One DSP0287 frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// MessageType 0x05 with its SPDM message.
    Spdm(&'a [u8]),
    /// MessageType 0x06 with its secured message (we carry but never open these).
    Secured(&'a [u8]),
    /// A payload-less discovery frame: RoleInquiry or a binding error (0xBF..=0xFF).
    Discovery(u8),
}

/// What the 2-byte length prefix announces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Announced {
    /// `n` more bytes (version, type, payload) follow; `n ≥ 2`.
    Body(usize),
    /// PayloadLength 0: a discovery frame; its two header bytes follow.
    Discovery,
}

/// Interprets the length prefix.
///
/// # Errors
/// [`InvalidFrame::BadLength`] for 1, [`InvalidFrame::TooLarge`] above `max_payload + 2`.
pub fn announced(prefix: [u8; 2], max_payload: usize) -> Result<Announced, InvalidFrame> {
    match usize::from(u16::from_le_bytes(prefix)) {
        0 => Ok(Announced::Discovery),
        1 => Err(InvalidFrame::BadLength("dsp0287 PayloadLength")),
        n if n > max_payload.saturating_add(2) => {
            Err(InvalidFrame::TooLarge("dsp0287 PayloadLength"))
        }
        n => Ok(Announced::Body(n)),
    }
}

/// Interprets the bytes after the prefix: `version | type | payload` for [`Announced::Body`],
/// exactly `version | type` for [`Announced::Discovery`].
///
/// # Errors
/// [`InvalidFrame`] for a wrong binding version, or a type that does not fit the length form.
pub fn body(announced: Announced, bytes: &[u8]) -> Result<Frame<'_>, InvalidFrame> {
    let (version, kind, payload) = match bytes {
        [version, kind, payload @ ..] => (*version, *kind, payload),
        _ => return Err(InvalidFrame::BadLength("dsp0287 header")),
    };
    if version != BINDING_VERSION {
        return Err(InvalidFrame::BadBindingVersion(version));
    }
    match (announced, kind) {
        (Announced::Body(_), TYPE_SPDM) => Ok(Frame::Spdm(payload)),
        (Announced::Body(_), TYPE_SECURED) => Ok(Frame::Secured(payload)),
        (Announced::Discovery, k) if k >= TYPE_ROLE_INQUIRY && payload.is_empty() => {
            Ok(Frame::Discovery(k))
        }
        (_, k) => Err(InvalidFrame::BadMessageType(k)),
    }
}

/// Splits one frame off the front of `buf`: `Ok(None)` when more bytes are needed, else the
/// frame and how many bytes it used.
///
/// # Errors
/// [`InvalidFrame`] as soon as the prefix or header is known to be bad.
pub fn deframe(buf: &[u8], max_payload: usize) -> Result<Option<(Frame<'_>, usize)>, InvalidFrame> {
    let Some((prefix, rest)) = buf.split_first_chunk::<2>() else {
        return Ok(None);
    };
    let kind = announced(*prefix, max_payload)?;
    let n = match kind {
        Announced::Body(n) => n,
        Announced::Discovery => 2,
    };
    match rest.get(..n) {
        Some(bytes) => Ok(Some((body(kind, bytes)?, n + 2))),
        None => Ok(None),
    }
}

/// Appends `frame` in DSP0287 form.
pub fn encode(frame: &Frame<'_>, out: &mut Vec<u8>) {
    let (kind, payload): (u8, &[u8]) = match frame {
        Frame::Spdm(p) => (TYPE_SPDM, p),
        Frame::Secured(p) => (TYPE_SECURED, p),
        Frame::Discovery(k) => (*k, &[]),
    };
    let len = match frame {
        Frame::Discovery(_) => 0,
        _ => u16::try_from(payload.len().saturating_add(2)).unwrap_or(u16::MAX),
    };
    out.extend_from_slice(&len.to_le_bytes());
    out.push(BINDING_VERSION);
    out.push(kind);
    out.extend_from_slice(payload);
}

/// An SPDM message in a fresh DSP0287 frame.
pub fn frame_spdm(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + HEADER_LEN);
    encode(&Frame::Spdm(message), &mut out);
    out
}

/// Emulator command: a transport message.
pub const EMU_NORMAL: u32 = 0x0001;
/// Emulator command: connection test ("Client Hello!" / "Server Hello!").
pub const EMU_TEST: u32 = 0xDEAD;
/// Emulator command: stop the peer.
pub const EMU_SHUTDOWN: u32 = 0xFFFE;
/// Emulator command: end this connection, keep serving.
pub const EMU_CONTINUE: u32 = 0xFFFD;
/// Emulator transport type: raw SPDM.
pub const EMU_TRANSPORT_NONE: u32 = 0;
/// Emulator transport type: DSP0287 frames inside.
pub const EMU_TRANSPORT_TCP: u32 = 3;
/// Payload of the requester's TEST command.
pub const EMU_CLIENT_HELLO: &[u8] = b"Client Hello!\0";
/// Payload of the responder's TEST answer.
pub const EMU_SERVER_HELLO: &[u8] = b"Server Hello!\0";

/// The emulator's 12-byte platform-port header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmuHeader {
    /// Command (`EMU_*`).
    pub command: u32,
    /// TransportType (`EMU_TRANSPORT_*`).
    pub transport: u32,
    /// PayloadSize.
    pub size: u32,
}

impl EmuHeader {
    /// Parses a header, checking the transport type and the size cap.
    ///
    /// # Errors
    /// [`InvalidFrame::TransportMismatch`], [`InvalidFrame::TooLarge`],
    /// [`InvalidFrame::UnknownCommand`].
    pub fn parse(
        bytes: [u8; EMU_HEADER_LEN],
        transport: u32,
        max_payload: usize,
    ) -> Result<Self, InvalidFrame> {
        let word = |i: usize| -> u32 {
            let mut w = [0u8; 4];
            if let Some(src) = bytes.get(i..i + 4) {
                w.copy_from_slice(src);
            }
            u32::from_be_bytes(w)
        };
        let h = EmuHeader {
            command: word(0),
            transport: word(4),
            size: word(8),
        };
        if !matches!(
            h.command,
            EMU_NORMAL | EMU_TEST | EMU_SHUTDOWN | EMU_CONTINUE
        ) {
            return Err(InvalidFrame::UnknownCommand(h.command));
        }
        if h.transport != transport {
            return Err(InvalidFrame::TransportMismatch(h.transport));
        }
        if usize::try_from(h.size).map_or(true, |s| s > max_payload) {
            return Err(InvalidFrame::TooLarge("emulator PayloadSize"));
        }
        Ok(h)
    }

    /// The payload length as `usize` (already capped by [`EmuHeader::parse`]).
    pub fn payload_len(&self) -> usize {
        usize::try_from(self.size).unwrap_or(usize::MAX)
    }

    /// Appends the header.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.command.to_be_bytes());
        out.extend_from_slice(&self.transport.to_be_bytes());
        out.extend_from_slice(&self.size.to_be_bytes());
    }
}

/// One emulator message split off a buffer: header, payload, bytes used.
pub type EmuFrame<'a> = (EmuHeader, &'a [u8], usize);

/// Splits one emulator message off `buf` (see [`deframe`] for the return convention).
///
/// # Errors
/// As [`EmuHeader::parse`].
pub fn deframe_emu(
    buf: &[u8],
    transport: u32,
    max_payload: usize,
) -> Result<Option<EmuFrame<'_>>, InvalidFrame> {
    let Some((head, rest)) = buf.split_first_chunk::<EMU_HEADER_LEN>() else {
        return Ok(None);
    };
    let h = EmuHeader::parse(*head, transport, max_payload)?;
    let n = h.payload_len();
    Ok(rest
        .get(..n)
        .map(|payload| (h, payload, n + EMU_HEADER_LEN)))
}

/// An emulator message: header plus payload.
pub fn frame_emu(command: u32, transport: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(EMU_HEADER_LEN + payload.len());
    EmuHeader {
        command,
        transport,
        size: u32::try_from(payload.len()).unwrap_or(u32::MAX),
    }
    .encode(&mut out);
    out.extend_from_slice(payload);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traced_get_version_frame() {
        let bytes = [0x06, 0x00, 0x01, 0x05, 0x10, 0x84, 0x00, 0x00];
        let (frame, used) = deframe(&bytes, 64).unwrap().unwrap();
        assert_eq!(used, 8);
        assert_eq!(frame, Frame::Spdm(&[0x10, 0x84, 0x00, 0x00]));
        assert_eq!(frame_spdm(&[0x10, 0x84, 0x00, 0x00]), bytes);
    }

    #[test]
    fn incomplete_is_none_and_bad_input_is_typed() {
        assert_eq!(deframe(&[0x06], 64), Ok(None));
        assert_eq!(deframe(&[0x06, 0x00, 0x01], 64), Ok(None));
        assert_eq!(
            deframe(&[0x01, 0x00, 0x01], 64),
            Err(InvalidFrame::BadLength("dsp0287 PayloadLength"))
        );
        assert_eq!(
            deframe(&[0xff, 0xff], 64),
            Err(InvalidFrame::TooLarge("dsp0287 PayloadLength"))
        );
        assert_eq!(
            deframe(&[0x02, 0x00, 0x02, 0x05], 64),
            Err(InvalidFrame::BadBindingVersion(2))
        );
        assert_eq!(
            deframe(&[0x02, 0x00, 0x01, 0xbf], 64),
            Err(InvalidFrame::BadMessageType(0xbf))
        );
        assert_eq!(
            deframe(&[0x00, 0x00, 0x01, 0x05], 64),
            Err(InvalidFrame::BadMessageType(0x05))
        );
    }

    #[test]
    fn libspdm_role_inquiry_form() {
        let bytes = [0x00, 0x00, 0x01, 0xbf];
        let (frame, used) = deframe(&bytes, 64).unwrap().unwrap();
        assert_eq!((frame, used), (Frame::Discovery(0xbf), 4));
        let mut out = Vec::new();
        encode(&frame, &mut out);
        assert_eq!(out, bytes);
    }

    #[test]
    fn emulator_header_round_trip_and_checks() {
        let msg = frame_emu(EMU_NORMAL, EMU_TRANSPORT_TCP, &[1, 2, 3]);
        assert_eq!(&msg[..12], &[0, 0, 0, 1, 0, 0, 0, 3, 0, 0, 0, 3]);
        let (h, payload, used) = deframe_emu(&msg, EMU_TRANSPORT_TCP, 16).unwrap().unwrap();
        assert_eq!(
            (h.command, payload, used),
            (EMU_NORMAL, &[1u8, 2, 3][..], 15)
        );
        assert_eq!(
            deframe_emu(&msg, EMU_TRANSPORT_NONE, 16),
            Err(InvalidFrame::TransportMismatch(3))
        );
        assert_eq!(
            deframe_emu(&msg, EMU_TRANSPORT_TCP, 2),
            Err(InvalidFrame::TooLarge("emulator PayloadSize"))
        );
        assert_eq!(deframe_emu(&msg[..14], EMU_TRANSPORT_TCP, 16), Ok(None));
    }
}
