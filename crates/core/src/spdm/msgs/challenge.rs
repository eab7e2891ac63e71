//! CHALLENGE / CHALLENGE_AUTH (DSP0274 §10.8): the signed proof of the slot's key.

use super::{
    Body, Code, MAX_HASH_LEN, MAX_SIGNATURE_LEN, NONCE_LEN, ParseContext, checked_size, put_opaque,
    read_opaque,
};
use crate::spdm::codec::{InvalidMessage, Reader};

/// MeasurementSummaryHashType: no summary.
pub const SUMMARY_NONE: u8 = 0x00;
/// MeasurementSummaryHashType: TCB measurements only.
pub const SUMMARY_TCB: u8 = 0x01;
/// MeasurementSummaryHashType: all measurements.
pub const SUMMARY_ALL: u8 = 0xFF;

/// CHALLENGE: asks slot `slot_id` to sign the transcript, with our fresh `nonce`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// Param1: slot 0–7, or 0xFF for a provisioned public key.
    pub slot_id: u8,
    /// Param2: MeasurementSummaryHashType.
    pub summary_hash_type: u8,
    /// The requester's nonce.
    pub nonce: [u8; NONCE_LEN],
}

impl Body for Challenge {
    const CODE: Code = Code::Challenge;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.slot_id);
        out.push(self.summary_hash_type);
        out.extend_from_slice(&self.nonce);
    }

    fn read_body(r: &mut Reader<'_>, _ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        let slot_id = r.u8("CHALLENGE SlotID")?;
        if slot_id > 7 && slot_id != 0xFF {
            return Err(InvalidMessage::InvalidValue("CHALLENGE SlotID"));
        }
        let summary_hash_type = r.u8("MeasurementSummaryHashType")?;
        if !matches!(summary_hash_type, SUMMARY_NONE | SUMMARY_TCB | SUMMARY_ALL) {
            return Err(InvalidMessage::InvalidValue("MeasurementSummaryHashType"));
        }
        Ok(Challenge {
            slot_id,
            summary_hash_type,
            nonce: r.take_array("CHALLENGE Nonce")?,
        })
    }
}

/// CHALLENGE_AUTH: the responder's signed answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChallengeAuth {
    /// Param1: SlotID[3:0], bit 7 BasicMutAuthReq (deprecated in 1.2).
    pub attributes: u8,
    /// Param2: SlotMask.
    pub slot_mask: u8,
    /// H(chain of the slot).
    pub cert_chain_hash: Vec<u8>,
    /// The responder's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// MeasurementSummaryHash, present when the CHALLENGE asked for one.
    pub summary_hash: Option<Vec<u8>>,
    /// OpaqueData.
    pub opaque: Vec<u8>,
    /// Signature, raw (`r || s` for ECDSA).
    pub signature: Vec<u8>,
}

impl ChallengeAuth {
    /// The slot the responder signed with.
    pub fn slot_id(&self) -> u8 {
        self.attributes & 0x0f
    }
}

impl Body for ChallengeAuth {
    const CODE: Code = Code::ChallengeAuth;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.attributes);
        out.push(self.slot_mask);
        out.extend_from_slice(&self.cert_chain_hash);
        out.extend_from_slice(&self.nonce);
        if let Some(h) = &self.summary_hash {
            out.extend_from_slice(h);
        }
        put_opaque(out, &self.opaque);
        out.extend_from_slice(&self.signature);
    }

    fn read_body(r: &mut Reader<'_>, ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        let hash_len = checked_size(ctx.hash_len, MAX_HASH_LEN, "hash size")?;
        let sig_len = checked_size(ctx.signature_len, MAX_SIGNATURE_LEN, "signature size")?;
        let attributes = r.u8("ResponseAttributes")?;
        if attributes & 0x70 != 0 {
            return Err(InvalidMessage::NonZeroReserved("ResponseAttributes"));
        }
        let slot_mask = r.u8("SlotMask")?;
        let cert_chain_hash = r.take(hash_len, "CertChainHash")?.to_vec();
        let nonce = r.take_array("CHALLENGE_AUTH Nonce")?;
        let summary_hash = if ctx.summary_hash {
            Some(r.take(hash_len, "MeasurementSummaryHash")?.to_vec())
        } else {
            None
        };
        let opaque = read_opaque(r)?;
        let signature = r.take(sig_len, "CHALLENGE_AUTH Signature")?.to_vec();
        Ok(ChallengeAuth {
            attributes,
            slot_mask,
            cert_chain_hash,
            nonce,
            summary_hash,
            opaque,
            signature,
        })
    }
}
