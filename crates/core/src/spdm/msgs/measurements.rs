//! GET_MEASUREMENTS / MEASUREMENTS (DSP0274 §10.11) and the measurement block format.

use super::{
    Body, Code, MAX_MEASUREMENT_RECORD, MAX_SIGNATURE_LEN, NONCE_LEN, ParseContext, checked_size,
    put_opaque, read_opaque,
};
use crate::spdm::codec::{InvalidMessage, Reader, len_u8, len_u16, put_u16, put_u24};

/// Operation: return the number of measurement indices only.
pub const OPERATION_COUNT: u8 = 0x00;
/// Operation: return every measurement block.
pub const OPERATION_ALL: u8 = 0xFF;
/// MeasurementSpecification of DMTF-format blocks.
pub const BLOCK_SPEC_DMTF: u8 = 0x01;
/// DMTFSpecMeasurementValueType bit 7: the value is a raw bit stream, not a digest.
pub const VALUE_TYPE_RAW: u8 = 0x80;

const ATTR_SIGNATURE: u8 = 1 << 0;
const ATTR_RAW: u8 = 1 << 1;
const ATTR_NEW: u8 = 1 << 2;

/// The signature part of a signed GET_MEASUREMENTS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignatureRequest {
    /// The requester's nonce.
    pub nonce: [u8; NONCE_LEN],
    /// SlotIDParam: which slot's key should sign.
    pub slot_id: u8,
}

/// GET_MEASUREMENTS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GetMeasurements {
    /// Attributes bit 1: RawBitStreamRequested.
    pub raw_bitstream: bool,
    /// Attributes bit 2: NewMeasurementRequested.
    pub new_measurement: bool,
    /// Param2: 0 = count, 1..=0xFE = one index, 0xFF = all.
    pub operation: u8,
    /// Present (and Attributes bit 0 set) when a signature is requested.
    pub signature: Option<SignatureRequest>,
}

impl Body for GetMeasurements {
    const CODE: Code = Code::GetMeasurements;

    fn encode_body(&self, out: &mut Vec<u8>) {
        let mut attrs = 0;
        if self.signature.is_some() {
            attrs |= ATTR_SIGNATURE;
        }
        if self.raw_bitstream {
            attrs |= ATTR_RAW;
        }
        if self.new_measurement {
            attrs |= ATTR_NEW;
        }
        out.push(attrs);
        out.push(self.operation);
        if let Some(s) = &self.signature {
            out.extend_from_slice(&s.nonce);
            out.push(s.slot_id);
        }
    }

    fn read_body(r: &mut Reader<'_>, _ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        let attrs = r.u8("GET_MEASUREMENTS Attributes")?;
        if attrs & !(ATTR_SIGNATURE | ATTR_RAW | ATTR_NEW) != 0 {
            return Err(InvalidMessage::NonZeroReserved(
                "GET_MEASUREMENTS Attributes",
            ));
        }
        let operation = r.u8("MeasurementOperation")?;
        let signature = if attrs & ATTR_SIGNATURE != 0 {
            let nonce = r.take_array("GET_MEASUREMENTS Nonce")?;
            let slot_id = r.u8("SlotIDParam")?;
            if slot_id > 7 && slot_id != 0xFF {
                return Err(InvalidMessage::InvalidValue("SlotIDParam"));
            }
            Some(SignatureRequest { nonce, slot_id })
        } else {
            None
        };
        Ok(GetMeasurements {
            raw_bitstream: attrs & ATTR_RAW != 0,
            new_measurement: attrs & ATTR_NEW != 0,
            operation,
            signature,
        })
    }
}

/// The DMTF-format content of a measurement block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DmtfMeasurement {
    /// DMTFSpecMeasurementValueType (bit 7: raw bit stream; bits 6:0: what was measured).
    pub value_type: u8,
    /// DMTFSpecMeasurementValue: a digest, or the raw bit stream.
    pub value: Vec<u8>,
}

impl DmtfMeasurement {
    /// True when the value is a digest (bit 7 clear).
    pub fn is_digest(&self) -> bool {
        self.value_type & VALUE_TYPE_RAW == 0
    }
}

/// One measurement block: `Index | MeasurementSpecification | MeasurementSize u16 | Measurement`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeasurementBlock {
    /// Index, 1..=0xFE.
    pub index: u8,
    /// MeasurementSpecification (0x01 DMTF).
    pub spec: u8,
    /// Measurement bytes, verbatim (for DMTF: value type, value size, value).
    pub measurement: Vec<u8>,
}

impl MeasurementBlock {
    /// A DMTF block holding `value` of `value_type`.
    pub fn dmtf(index: u8, value_type: u8, value: &[u8]) -> Self {
        let mut measurement = Vec::with_capacity(3 + value.len());
        measurement.push(value_type);
        put_u16(&mut measurement, len_u16(value.len()));
        measurement.extend_from_slice(value);
        MeasurementBlock {
            index,
            spec: BLOCK_SPEC_DMTF,
            measurement,
        }
    }

    /// Parses the DMTF content.
    ///
    /// # Errors
    /// [`InvalidMessage`] when the block is not DMTF-format or is malformed.
    pub fn dmtf_value(&self) -> Result<DmtfMeasurement, InvalidMessage> {
        if self.spec != BLOCK_SPEC_DMTF {
            return Err(InvalidMessage::InvalidValue("MeasurementSpecification"));
        }
        let mut r = Reader::new(&self.measurement);
        let value_type = r.u8("DMTFSpecMeasurementValueType")?;
        let len = usize::from(r.u16("DMTFSpecMeasurementValueSize")?);
        let value = r.take(len, "DMTFSpecMeasurementValue")?.to_vec();
        r.expect_empty("DMTF measurement")?;
        Ok(DmtfMeasurement { value_type, value })
    }

    /// Appends the block encoding.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(self.index);
        out.push(self.spec);
        put_u16(out, len_u16(self.measurement.len()));
        out.extend_from_slice(&self.measurement);
    }

    /// Reads one block.
    ///
    /// # Errors
    /// [`InvalidMessage`] for a truncated block or an index of 0 or 0xFF.
    pub fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
        let index = r.u8("measurement Index")?;
        if index == 0 || index == 0xFF {
            return Err(InvalidMessage::InvalidValue("measurement Index"));
        }
        let spec = r.u8("MeasurementSpecification")?;
        let size = usize::from(r.u16("MeasurementSize")?);
        let measurement = r.take(size, "Measurement")?.to_vec();
        Ok(MeasurementBlock {
            index,
            spec,
            measurement,
        })
    }
}

/// Concatenates block encodings: the MeasurementRecord, and the input of the summary hash.
pub fn encode_record(blocks: &[MeasurementBlock]) -> Vec<u8> {
    let mut out = Vec::new();
    for b in blocks {
        b.encode(&mut out);
    }
    out
}

/// MEASUREMENTS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Measurements {
    /// Param1: number of indices when the request's operation was 0, else reserved.
    pub param1: u8,
    /// Param2: SlotID[3:0], ContentChanged[5:4].
    pub param2: u8,
    /// The measurement record.
    pub blocks: Vec<MeasurementBlock>,
    /// The responder's nonce (present in 1.2 even when unsigned).
    pub nonce: [u8; NONCE_LEN],
    /// OpaqueData.
    pub opaque: Vec<u8>,
    /// The signature, when the request asked for one.
    pub signature: Option<Vec<u8>>,
}

impl Body for Measurements {
    const CODE: Code = Code::Measurements;

    fn encode_body(&self, out: &mut Vec<u8>) {
        out.push(self.param1);
        out.push(self.param2);
        out.push(len_u8(self.blocks.len()));
        let record = encode_record(&self.blocks);
        put_u24(out, u32::try_from(record.len()).unwrap_or(u32::MAX));
        out.extend_from_slice(&record);
        out.extend_from_slice(&self.nonce);
        put_opaque(out, &self.opaque);
        if let Some(sig) = &self.signature {
            out.extend_from_slice(sig);
        }
    }

    fn read_body(r: &mut Reader<'_>, ctx: &ParseContext) -> Result<Self, InvalidMessage> {
        let param1 = r.u8("MEASUREMENTS Param1")?;
        let param2 = r.u8("MEASUREMENTS Param2")?;
        if param2 & 0xc0 != 0 {
            return Err(InvalidMessage::NonZeroReserved("MEASUREMENTS Param2"));
        }
        let count = r.u8("NumberOfBlocks")?;
        let record_len = usize::try_from(r.u24("MeasurementRecordLength")?)
            .map_err(|_| InvalidMessage::TooLarge("MeasurementRecord"))?;
        if record_len > MAX_MEASUREMENT_RECORD {
            return Err(InvalidMessage::TooLarge("MeasurementRecord"));
        }
        let mut record = r.sub(record_len, "MeasurementRecord")?;
        let mut blocks = Vec::new();
        while record.any_left() {
            blocks.push(MeasurementBlock::read(&mut record)?);
        }
        if blocks.len() != usize::from(count) {
            return Err(InvalidMessage::LengthMismatch("NumberOfBlocks"));
        }
        let nonce = r.take_array("MEASUREMENTS Nonce")?;
        let opaque = read_opaque(r)?;
        let signature = if ctx.signed_measurements {
            let len = checked_size(ctx.signature_len, MAX_SIGNATURE_LEN, "signature size")?;
            Some(r.take(len, "MEASUREMENTS Signature")?.to_vec())
        } else {
            None
        };
        Ok(Measurements {
            param1,
            param2,
            blocks,
            nonce,
            opaque,
            signature,
        })
    }
}
