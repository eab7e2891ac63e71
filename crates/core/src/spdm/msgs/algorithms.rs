//! NEGOTIATE_ALGORITHMS / ALGORITHMS (DSP0274 §10.5) and the algorithm bit values.

use super::{Body, Code, ParseContext};
use crate::spdm::codec::{InvalidMessage, Reader, len_u8, len_u16, put_u16, put_u32};

/// MeasurementSpecification: DMTF.
pub const MEAS_SPEC_DMTF: u8 = 0x01;
/// OtherParamsSupport: OpaqueDataFmt1 (what libspdm offers).
pub const OPAQUE_DATA_FMT1: u8 = 0x02;
/// BaseAsymAlgo: ECDSA P-256.
pub const ASYM_ECDSA_P256: u32 = 0x10;
/// BaseAsymAlgo: ECDSA P-384.
pub const ASYM_ECDSA_P384: u32 = 0x80;
/// BaseHashAlgo: SHA-256.
pub const HASH_SHA256: u32 = 0x01;
/// BaseHashAlgo: SHA-384.
pub const HASH_SHA384: u32 = 0x02;
/// MeasurementHashAlgo: raw bit stream only.
pub const MEAS_HASH_RAW: u32 = 0x01;
/// MeasurementHashAlgo: SHA-256 (one bit above BaseHashAlgo's SHA-256).
pub const MEAS_HASH_SHA256: u32 = 0x02;
/// MeasurementHashAlgo: SHA-384.
pub const MEAS_HASH_SHA384: u32 = 0x04;
/// AlgType of the DHE table.
pub const ALG_TYPE_DHE: u8 = 2;
/// AlgType of the AEAD table.
pub const ALG_TYPE_AEAD: u8 = 3;
/// AlgType of the ReqBaseAsymAlg table.
pub const ALG_TYPE_REQ_BASE_ASYM: u8 = 4;
/// AlgType of the KeySchedule table.
pub const ALG_TYPE_KEY_SCHEDULE: u8 = 5;
/// NEGOTIATE_ALGORITHMS may be at most 128 bytes in SPDM 1.2.
pub const MAX_NEGOTIATE_ALGORITHMS_LEN: usize = 128;
/// ExtAsymCount + ExtHashCount ≤ 20, and each table has at most 15 extended entries.
const MAX_EXT_ENTRIES: u8 = 20;

const FIXED_ALG_COUNT: u8 = 2;

/// One AlgStruct: a table of supported (request) or selected (response) algorithms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AlgStruct {
    /// AlgType (2 DHE, 3 AEAD, 4 ReqBaseAsymAlg, 5 KeySchedule).
    pub alg_type: u8,
    /// AlgSupported / AlgSelected bit mask (FixedAlgCount is always 2 in SPDM 1.2).
    pub supported: u16,
    /// Extended algorithm entries, verbatim (at most 15).
    pub ext: Vec<[u8; 4]>,
}

impl AlgStruct {
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.alg_type);
        out.push((FIXED_ALG_COUNT << 4) | (len_u8(self.ext.len()) & 0x0f));
        put_u16(out, self.supported);
        for e in &self.ext {
            out.extend_from_slice(e);
        }
    }

    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        let alg_type = r.u8("AlgType")?;
        let count = r.u8("AlgCount")?;
        if count >> 4 != FIXED_ALG_COUNT {
            return Err(InvalidMessage::InvalidValue("FixedAlgCount"));
        }
        let supported = r.u16("AlgSupported")?;
        let ext = read_ext(r, count & 0x0f, "AlgExternal")?;
        Ok(AlgStruct {
            alg_type,
            supported,
            ext,
        })
    }

    fn encoded_len(&self) -> usize {
        4 + 4 * self.ext.len()
    }
}

fn read_ext(r: &mut Reader<'_>, n: u8, what: &'static str) -> Result<Vec<[u8; 4]>, InvalidMessage> {
    (0..n).map(|_| r.take_array::<4>(what)).collect()
}

fn read_structs(r: &mut Reader<'_>, n: u8) -> Result<Vec<AlgStruct>, InvalidMessage> {
    (0..n).map(|_| AlgStruct::read(r)).collect()
}

fn check_length(field: u16, actual: usize, what: &'static str) -> Result<(), InvalidMessage> {
    if usize::from(field) == actual {
        Ok(())
    } else {
        Err(InvalidMessage::LengthMismatch(what))
    }
}

/// NEGOTIATE_ALGORITHMS: what the requester supports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NegotiateAlgorithms {
    /// MeasurementSpecification bit mask.
    pub measurement_specification: u8,
    /// OtherParamsSupport (opaque data format).
    pub other_params_support: u8,
    /// BaseAsymAlgo bit mask.
    pub base_asym_algo: u32,
    /// BaseHashAlgo bit mask.
    pub base_hash_algo: u32,
    /// ExtAsym entries, verbatim.
    pub ext_asym: Vec<[u8; 4]>,
    /// ExtHash entries, verbatim.
    pub ext_hash: Vec<[u8; 4]>,
    /// ReqAlgStruct tables.
    pub alg_structs: Vec<AlgStruct>,
}

impl NegotiateAlgorithms {
    /// Total message length, as carried in the Length field.
    pub fn message_len(&self) -> usize {
        32 + 4 * (self.ext_asym.len() + self.ext_hash.len())
            + self
                .alg_structs
                .iter()
                .map(AlgStruct::encoded_len)
                .sum::<usize>()
    }
}

impl Body for NegotiateAlgorithms {
    const CODE: Code = Code::NegotiateAlgorithms;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(len_u8(self.alg_structs.len()));
        out.push(0);
        put_u16(out, len_u16(self.message_len()));
        out.push(self.measurement_specification);
        out.push(self.other_params_support);
        put_u32(out, self.base_asym_algo);
        put_u32(out, self.base_hash_algo);
        out.extend_from_slice(&[0; 12]);
        out.push(len_u8(self.ext_asym.len()));
        out.push(len_u8(self.ext_hash.len()));
        out.extend_from_slice(&[0, 0]);
        for e in self.ext_asym.iter().chain(&self.ext_hash) {
            out.extend_from_slice(e);
        }
        for s in &self.alg_structs {
            s.encode(out);
        }
    }

    fn read_body(r: &mut Reader<'_>, _ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        let n_structs = r.u8("Param1")?;
        r.reserved(1, "NEGOTIATE_ALGORITHMS Param2")?;
        let length = r.u16("Length")?;
        if usize::from(length) > MAX_NEGOTIATE_ALGORITHMS_LEN {
            return Err(InvalidMessage::TooLarge("NEGOTIATE_ALGORITHMS Length"));
        }
        let measurement_specification = r.u8("MeasurementSpecification")?;
        let other_params_support = r.u8("OtherParamsSupport")?;
        let base_asym_algo = r.u32("BaseAsymAlgo")?;
        let base_hash_algo = r.u32("BaseHashAlgo")?;
        r.reserved(12, "NEGOTIATE_ALGORITHMS reserved")?;
        let n_asym = r.u8("ExtAsymCount")?;
        let n_hash = r.u8("ExtHashCount")?;
        if n_asym.saturating_add(n_hash) > MAX_EXT_ENTRIES {
            return Err(InvalidMessage::TooLarge("ExtAsymCount + ExtHashCount"));
        }
        r.reserved(2, "NEGOTIATE_ALGORITHMS reserved")?;
        let msg = NegotiateAlgorithms {
            measurement_specification,
            other_params_support,
            base_asym_algo,
            base_hash_algo,
            ext_asym: read_ext(r, n_asym, "ExtAsym")?,
            ext_hash: read_ext(r, n_hash, "ExtHash")?,
            alg_structs: read_structs(r, n_structs)?,
        };
        check_length(length, msg.message_len(), "NEGOTIATE_ALGORITHMS Length")?;
        Ok(msg)
    }
}

/// ALGORITHMS: what the responder selected (exactly one bit per field in a valid answer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Algorithms {
    /// MeasurementSpecificationSel.
    pub measurement_specification_sel: u8,
    /// OtherParamsSelection.
    pub other_params_selection: u8,
    /// MeasurementHashAlgo (the bits are shifted by one against BaseHashAlgo).
    pub measurement_hash_algo: u32,
    /// BaseAsymSel.
    pub base_asym_sel: u32,
    /// BaseHashSel.
    pub base_hash_sel: u32,
    /// ExtAsymSel entries, verbatim.
    pub ext_asym_sel: Vec<[u8; 4]>,
    /// ExtHashSel entries, verbatim.
    pub ext_hash_sel: Vec<[u8; 4]>,
    /// RespAlgStruct tables.
    pub alg_structs: Vec<AlgStruct>,
}

impl Algorithms {
    /// Total message length, as carried in the Length field.
    pub fn message_len(&self) -> usize {
        36 + 4 * (self.ext_asym_sel.len() + self.ext_hash_sel.len())
            + self
                .alg_structs
                .iter()
                .map(AlgStruct::encoded_len)
                .sum::<usize>()
    }
}

impl Body for Algorithms {
    const CODE: Code = Code::Algorithms;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(len_u8(self.alg_structs.len()));
        out.push(0);
        put_u16(out, len_u16(self.message_len()));
        out.push(self.measurement_specification_sel);
        out.push(self.other_params_selection);
        put_u32(out, self.measurement_hash_algo);
        put_u32(out, self.base_asym_sel);
        put_u32(out, self.base_hash_sel);
        out.extend_from_slice(&[0; 12]);
        out.push(len_u8(self.ext_asym_sel.len()));
        out.push(len_u8(self.ext_hash_sel.len()));
        out.extend_from_slice(&[0, 0]);
        for e in self.ext_asym_sel.iter().chain(&self.ext_hash_sel) {
            out.extend_from_slice(e);
        }
        for s in &self.alg_structs {
            s.encode(out);
        }
    }

    fn read_body(r: &mut Reader<'_>, _ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        let n_structs = r.u8("Param1")?;
        r.reserved(1, "ALGORITHMS Param2")?;
        let length = r.u16("Length")?;
        let measurement_specification_sel = r.u8("MeasurementSpecificationSel")?;
        let other_params_selection = r.u8("OtherParamsSelection")?;
        let measurement_hash_algo = r.u32("MeasurementHashAlgo")?;
        let base_asym_sel = r.u32("BaseAsymSel")?;
        let base_hash_sel = r.u32("BaseHashSel")?;
        r.reserved(12, "ALGORITHMS reserved")?;
        let n_asym = r.u8("ExtAsymSelCount")?;
        let n_hash = r.u8("ExtHashSelCount")?;
        if n_asym.saturating_add(n_hash) > MAX_EXT_ENTRIES {
            return Err(InvalidMessage::TooLarge(
                "ExtAsymSelCount + ExtHashSelCount",
            ));
        }
        r.reserved(2, "ALGORITHMS reserved")?;
        let msg = Algorithms {
            measurement_specification_sel,
            other_params_selection,
            measurement_hash_algo,
            base_asym_sel,
            base_hash_sel,
            ext_asym_sel: read_ext(r, n_asym, "ExtAsymSel")?,
            ext_hash_sel: read_ext(r, n_hash, "ExtHashSel")?,
            alg_structs: read_structs(r, n_structs)?,
        };
        check_length(length, msg.message_len(), "ALGORITHMS Length")?;
        Ok(msg)
    }
}
