//! GET_CERTIFICATE / CERTIFICATE (DSP0274 §10.7): one portion of a slot's chain per exchange.

use super::{Body, Code, ParseContext};
use crate::spdm::codec::{InvalidMessage, Reader, len_u16, put_u16};

/// Slot ids occupy Param1 bits [3:0]; SPDM 1.2 has slots 0–7.
const MAX_SLOT: u8 = 7;

fn read_slot(r: &mut Reader<'_>) -> Result<u8, InvalidMessage> {
    let slot = r.u8("SlotID")?;
    if slot > MAX_SLOT {
        return Err(InvalidMessage::InvalidValue("SlotID"));
    }
    Ok(slot)
}

/// GET_CERTIFICATE: asks for `length` bytes of slot `slot_id`'s chain from `offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetCertificate {
    /// Slot 0–7.
    pub slot_id: u8,
    /// Byte offset into the SPDM chain.
    pub offset: u16,
    /// Bytes wanted (the responder may send fewer).
    pub length: u16,
}

impl Body for GetCertificate {
    const CODE: Code = Code::GetCertificate;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.slot_id);
        out.push(0);
        put_u16(out, self.offset);
        put_u16(out, self.length);
    }

    fn read_body(r: &mut Reader<'_>, _ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        let slot_id = read_slot(r)?;
        r.reserved(1, "GET_CERTIFICATE Param2")?;
        Ok(GetCertificate {
            slot_id,
            offset: r.u16("Offset")?,
            length: r.u16("Length")?,
        })
    }
}

/// CERTIFICATE: a portion of the chain and how much remains after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// Slot 0–7.
    pub slot_id: u8,
    /// The bytes of this portion (PortionLength is its length).
    pub portion: Vec<u8>,
    /// RemainderLength: bytes of the chain after this portion.
    pub remainder_length: u16,
}

impl Body for Certificate {
    const CODE: Code = Code::Certificate;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.slot_id);
        out.push(0);
        put_u16(out, len_u16(self.portion.len()));
        put_u16(out, self.remainder_length);
        out.extend_from_slice(&self.portion);
    }

    fn read_body(r: &mut Reader<'_>, _ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        let slot_id = read_slot(r)?;
        r.reserved(1, "CERTIFICATE Param2")?;
        let portion_len = usize::from(r.u16("PortionLength")?);
        let remainder_length = r.u16("RemainderLength")?;
        let portion = r.take(portion_len, "CertChain portion")?.to_vec();
        Ok(Certificate {
            slot_id,
            portion,
            remainder_length,
        })
    }
}
