//! ERROR (DSP0274 §10.12) and RESPOND_IF_READY (§10.13).

use super::{Body, Code, MAX_EXTENDED_ERROR_DATA, ParseContext, wire_enum};
use crate::spdm::codec::{InvalidMessage, Reader};

wire_enum! {
    /// ERROR ErrorCode (Param1).
    ErrorCode {
        /// The request was malformed.
        InvalidRequest = 0x01,
        /// Busy; retry later.
        Busy = 0x03,
        /// The request is not allowed in the current state.
        UnexpectedRequest = 0x04,
        /// Unspecified error.
        Unspecified = 0x05,
        /// Decryption failed.
        DecryptError = 0x06,
        /// The request code is not supported (ErrorData = that code).
        UnsupportedRequest = 0x07,
        /// A request is already in flight.
        RequestInFlight = 0x08,
        /// The response code was invalid.
        InvalidResponseCode = 0x09,
        /// Too many sessions.
        SessionLimitExceeded = 0x0A,
        /// The request needs a session.
        SessionRequired = 0x0B,
        /// The device must be reset.
        ResetRequired = 0x0C,
        /// The response would not fit the requester's DataTransferSize.
        ResponseTooLarge = 0x0D,
        /// The request was too large.
        RequestTooLarge = 0x0E,
        /// The response is large; fetch it with CHUNK_GET.
        LargeResponse = 0x0F,
        /// The message was lost.
        MessageLost = 0x10,
        /// The requested version is not supported.
        VersionMismatch = 0x41,
        /// The response is not ready; retry with RESPOND_IF_READY.
        ResponseNotReady = 0x42,
        /// Restart at GET_VERSION.
        RequestResynch = 0x43,
        /// Vendor-defined error.
        VendorDefined = 0xFF,
    }
}

/// ERROR: `ErrorCode | ErrorData | ExtendedErrorData`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorResponse {
    /// Param1.
    pub code: ErrorCode,
    /// Param2.
    pub data: u8,
    /// ExtendedErrorData (at most 32 bytes).
    pub extended: Vec<u8>,
}

/// The ExtendedErrorData of ResponseNotReady.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotReady {
    /// RDTExponent: the wait is 2^RDTExponent µs × RDTM.
    pub rdt_exponent: u8,
    /// The request code whose response is pending.
    pub request_code: u8,
    /// The token to echo in RESPOND_IF_READY.
    pub token: u8,
    /// RDTM multiplier.
    pub rdtm: u8,
}

impl NotReady {
    /// How long to wait before RESPOND_IF_READY, in µs (saturating).
    pub fn wait_micros(&self) -> u64 {
        let base = 1u64
            .checked_shl(u32::from(self.rdt_exponent))
            .unwrap_or(u64::MAX);
        base.saturating_mul(u64::from(self.rdtm.max(1)))
    }
}

impl ErrorResponse {
    /// An ERROR with no extended data.
    pub fn new(code: ErrorCode, data: u8) -> Self {
        ErrorResponse {
            code,
            data,
            extended: Vec::new(),
        }
    }

    /// A ResponseNotReady ERROR.
    pub fn not_ready(nr: NotReady) -> Self {
        ErrorResponse {
            code: ErrorCode::ResponseNotReady,
            data: 0,
            extended: vec![nr.rdt_exponent, nr.request_code, nr.token, nr.rdtm],
        }
    }

    /// The ResponseNotReady data, when this is one and it is well-formed.
    pub fn not_ready_data(&self) -> Option<NotReady> {
        match (self.code, self.extended.as_slice()) {
            (ErrorCode::ResponseNotReady, &[rdt_exponent, request_code, token, rdtm]) => {
                Some(NotReady {
                    rdt_exponent,
                    request_code,
                    token,
                    rdtm,
                })
            }
            _ => None,
        }
    }
}

impl Body for ErrorResponse {
    const CODE: Code = Code::Error;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(u8::from(self.code));
        out.push(self.data);
        out.extend_from_slice(&self.extended);
    }

    fn read_body(r: &mut Reader<'_>, _ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        let code = ErrorCode::from(r.u8("ErrorCode")?);
        let data = r.u8("ErrorData")?;
        if r.left() > MAX_EXTENDED_ERROR_DATA {
            return Err(InvalidMessage::TooLarge("ExtendedErrorData"));
        }
        Ok(ErrorResponse {
            code,
            data,
            extended: r.rest().to_vec(),
        })
    }
}

/// RESPOND_IF_READY: `RequestCode | Token` echoed from ResponseNotReady.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RespondIfReady {
    /// Param1: the original request code.
    pub request_code: u8,
    /// Param2: the token.
    pub token: u8,
}

impl Body for RespondIfReady {
    const CODE: Code = Code::RespondIfReady;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.request_code);
        out.push(self.token);
    }

    fn read_body(r: &mut Reader<'_>, _ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        Ok(RespondIfReady {
            request_code: r.u8("RequestCode")?,
            token: r.u8("Token")?,
        })
    }
}
