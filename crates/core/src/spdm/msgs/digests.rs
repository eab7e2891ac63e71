//! GET_DIGESTS / DIGESTS (DSP0274 §10.6): the hash of each provisioned slot's chain.

use super::{Body, Code, MAX_HASH_LEN, ParseContext, checked_size};
use crate::spdm::codec::{InvalidMessage, Reader};

/// GET_DIGESTS: no fields; Param1 and Param2 are reserved in 1.2.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GetDigests;

impl Body for GetDigests {
    const CODE: Code = Code::GetDigests;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[0, 0]);
    }

    fn read_body(r: &mut Reader<'_>, _ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        r.reserved(2, "GET_DIGESTS params")?;
        Ok(GetDigests)
    }
}

/// DIGESTS: one digest per bit set in `slot_mask`, in ascending slot order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    /// Param2: bit n set means slot n holds a chain.
    pub slot_mask: u8,
    /// H(chain) of each populated slot, ascending.
    pub digests: Vec<Vec<u8>>,
}

impl Digests {
    /// The digest of `slot`, if that slot is populated.
    pub fn for_slot(&self, slot: u8) -> Option<&[u8]> {
        if slot > 7 || self.slot_mask & (1 << slot) == 0 {
            return None;
        }
        let below = (self.slot_mask & ((1u8 << slot) - 1)).count_ones();
        self.digests
            .get(usize::try_from(below).ok()?)
            .map(Vec::as_slice)
    }
}

impl Body for Digests {
    const CODE: Code = Code::Digests;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(0);
        out.push(self.slot_mask);
        for d in &self.digests {
            out.extend_from_slice(d);
        }
    }

    fn read_body(r: &mut Reader<'_>, ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        let hash_len = checked_size(ctx.hash_len, MAX_HASH_LEN, "hash size")?;
        r.reserved(1, "DIGESTS Param1")?;
        let slot_mask = r.u8("SlotMask")?;
        let digests = (0..slot_mask.count_ones())
            .map(|_| r.take(hash_len, "Digest").map(<[u8]>::to_vec))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Digests { slot_mask, digests })
    }
}
