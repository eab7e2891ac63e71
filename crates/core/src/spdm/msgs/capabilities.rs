//! GET_CAPABILITIES / CAPABILITIES (DSP0274 §10.4), the 20-byte SPDM 1.2 layout both use.

use super::{Body, Code, ParseContext};
use crate::spdm::codec::{InvalidMessage, Reader, put_u32};

/// CACHE_CAP: the responder can cache negotiated state across resets.
pub const CACHE_CAP: u32 = 1 << 0;
/// CERT_CAP: certificate chains (for a requester: it can be authenticated).
pub const CERT_CAP: u32 = 1 << 1;
/// CHAL_CAP: CHALLENGE.
pub const CHAL_CAP: u32 = 1 << 2;
/// MEAS_CAP field mask (bits 3–4).
pub const MEAS_CAP_MASK: u32 = 0b11 << 3;
/// MEAS_CAP = 01b: measurements without signature.
pub const MEAS_CAP_NO_SIG: u32 = 0b01 << 3;
/// MEAS_CAP = 10b: signed measurements.
pub const MEAS_CAP_SIG: u32 = 0b10 << 3;
/// MEAS_FRESH_CAP.
pub const MEAS_FRESH_CAP: u32 = 1 << 5;
/// ENCRYPT_CAP.
pub const ENCRYPT_CAP: u32 = 1 << 6;
/// MAC_CAP.
pub const MAC_CAP: u32 = 1 << 7;
/// MUT_AUTH_CAP.
pub const MUT_AUTH_CAP: u32 = 1 << 8;
/// KEY_EX_CAP.
pub const KEY_EX_CAP: u32 = 1 << 9;
/// PSK_CAP field mask (bits 10–11).
pub const PSK_CAP_MASK: u32 = 0b11 << 10;
/// ENCAP_CAP.
pub const ENCAP_CAP: u32 = 1 << 12;
/// HBEAT_CAP.
pub const HBEAT_CAP: u32 = 1 << 13;
/// KEY_UPD_CAP.
pub const KEY_UPD_CAP: u32 = 1 << 14;
/// HANDSHAKE_IN_THE_CLEAR_CAP.
pub const HANDSHAKE_IN_THE_CLEAR_CAP: u32 = 1 << 15;
/// PUB_KEY_ID_CAP.
pub const PUB_KEY_ID_CAP: u32 = 1 << 16;
/// CHUNK_CAP (1.2).
pub const CHUNK_CAP: u32 = 1 << 17;
/// SPDM_MIN_DATA_TRANSFER_SIZE_VERSION_12.
pub const MIN_DATA_TRANSFER_SIZE: u32 = 42;

/// The fields of GET_CAPABILITIES and CAPABILITIES (identical in SPDM 1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capabilities {
    /// CT = 2^CTExponent µs, the sender's cryptographic timeout.
    pub ct_exponent: u8,
    /// Capability flags (`*_CAP` constants).
    pub flags: u32,
    /// DataTransferSize: the largest single message the sender can receive.
    pub data_transfer_size: u32,
    /// MaxSPDMmsgSize: the largest assembled message (equal to the above without chunking).
    pub max_spdm_msg_size: u32,
}

pub(super) fn read_fields(
    r: &mut Reader<'_>,
    what: &'static str,
) -> Result<Capabilities, InvalidMessage> {
    r.reserved(3, what)?;
    let ct_exponent = r.u8("CTExponent")?;
    r.reserved(2, what)?;
    Ok(Capabilities {
        ct_exponent,
        flags: r.u32("Flags")?,
        data_transfer_size: r.u32("DataTransferSize")?,
        max_spdm_msg_size: r.u32("MaxSPDMmsgSize")?,
    })
}

impl Body for Capabilities {
    /// The response code; the request shares the layout and is dispatched by [`super::Message`].
    const CODE: Code = Code::Capabilities;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 0, 0, self.ct_exponent, 0, 0]);
        put_u32(out, self.flags);
        put_u32(out, self.data_transfer_size);
        put_u32(out, self.max_spdm_msg_size);
    }

    fn read_body(r: &mut Reader<'_>, _ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        read_fields(r, "CAPABILITIES")
    }
}

impl Capabilities {
    /// Checks a requester's flags the way libspdm does
    /// (`libspdm_check_request_flag_compatibility`), plus the 1.2 size rules.
    ///
    /// # Errors
    /// [`InvalidMessage::InvalidValue`] naming the broken rule.
    pub fn check_requester(&self) -> Result<(), InvalidMessage> {
        let f = self.flags;
        let has = |bit: u32| f & bit != 0;
        let psk = (f & PSK_CAP_MASK) >> 10;
        if psk >= 2 {
            return Err(InvalidMessage::InvalidValue("requester PSK_CAP"));
        }
        let session = has(KEY_EX_CAP) || psk != 0;
        if session && !(has(MAC_CAP) || has(ENCRYPT_CAP)) {
            return Err(InvalidMessage::InvalidValue(
                "KEY_EX/PSK without MAC or ENCRYPT",
            ));
        }
        let session_only =
            MAC_CAP | ENCRYPT_CAP | HANDSHAKE_IN_THE_CLEAR_CAP | HBEAT_CAP | KEY_UPD_CAP;
        if !session && f & session_only != 0 {
            return Err(InvalidMessage::InvalidValue(
                "session flags without KEY_EX or PSK",
            ));
        }
        if has(CERT_CAP) && has(PUB_KEY_ID_CAP) {
            return Err(InvalidMessage::InvalidValue("CERT_CAP with PUB_KEY_ID_CAP"));
        }
        let key_source = has(CERT_CAP) || has(PUB_KEY_ID_CAP);
        if key_source && !(has(CHAL_CAP) || has(KEY_EX_CAP)) {
            return Err(InvalidMessage::InvalidValue(
                "CERT/PUB_KEY_ID without CHAL or KEY_EX",
            ));
        }
        if !key_source && (has(CHAL_CAP) || has(MUT_AUTH_CAP)) {
            return Err(InvalidMessage::InvalidValue(
                "CHAL or MUT_AUTH without a key",
            ));
        }
        if has(MUT_AUTH_CAP) && !(has(CHAL_CAP) || has(KEY_EX_CAP)) {
            return Err(InvalidMessage::InvalidValue(
                "MUT_AUTH without CHAL or KEY_EX",
            ));
        }
        self.check_sizes()
    }

    /// The SPDM 1.2 size rules, for either side: DataTransferSize ≥ 42, MaxSPDMmsgSize ≥
    /// DataTransferSize, and without CHUNK_CAP the two are equal (a message larger than one
    /// transfer could only arrive in chunks).
    ///
    /// # Errors
    /// [`InvalidMessage::InvalidValue`].
    pub fn check_sizes(&self) -> Result<(), InvalidMessage> {
        if self.data_transfer_size < MIN_DATA_TRANSFER_SIZE {
            return Err(InvalidMessage::InvalidValue("DataTransferSize below 42"));
        }
        if self.max_spdm_msg_size < self.data_transfer_size {
            return Err(InvalidMessage::InvalidValue(
                "MaxSPDMmsgSize below DataTransferSize",
            ));
        }
        if self.flags & CHUNK_CAP == 0 && self.max_spdm_msg_size != self.data_transfer_size {
            return Err(InvalidMessage::InvalidValue(
                "MaxSPDMmsgSize differs from DataTransferSize without CHUNK_CAP",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(flags: u32, data_transfer_size: u32, max_spdm_msg_size: u32) -> Capabilities {
        Capabilities {
            ct_exponent: 0,
            flags,
            data_transfer_size,
            max_spdm_msg_size,
        }
    }

    #[test]
    fn without_chunk_cap_the_largest_message_is_one_transfer() {
        // Validator assertion 2.4.2: DataTransferSize != MaxSPDMmsgSize without CHUNK_CAP is
        // an invalid request; with CHUNK_CAP a larger MaxSPDMmsgSize is the point of it.
        let plain = CERT_CAP | CHAL_CAP;
        assert_eq!(request(plain, 0x1200, 0x1200).check_requester(), Ok(()));
        assert_eq!(
            request(plain, 0x1200, 0x1201).check_requester(),
            Err(InvalidMessage::InvalidValue(
                "MaxSPDMmsgSize differs from DataTransferSize without CHUNK_CAP"
            ))
        );
        assert_eq!(
            request(plain | CHUNK_CAP, 0x1200, 0x1_0000).check_requester(),
            Ok(())
        );
        // The older rules still hold, with or without chunking.
        assert!(
            request(plain | CHUNK_CAP, 41, 0x1200)
                .check_requester()
                .is_err()
        );
        assert!(
            request(plain | CHUNK_CAP, 0x1200, 0x1000)
                .check_requester()
                .is_err()
        );
        // A responder's CAPABILITIES is held to the same size rule.
        assert!(
            request(plain | MEAS_CAP_SIG, 0x1200, 0x2000)
                .check_sizes()
                .is_err()
        );
    }
}
