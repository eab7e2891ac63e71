//! Reference values and the measurement policy a requester appraises MEASUREMENTS with.
//!
//! # Reference-values file
//!
//! JSON, UTF-8, unknown fields rejected:
//!
//! ```json
//! {
//!   "version": 1,
//!   "measurements": {
//!     "1": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
//!     "2": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
//!   }
//! }
//! ```
//!
//! * `version` must be `1`.
//! * Keys of `measurements` are decimal measurement indices `1..=254` (no sign, no leading
//!   zeros). Values are lowercase or uppercase hex of the expected DMTF measurement value:
//!   for a digest block, the digest itself (32 bytes for SHA-256); for a raw bit stream
//!   block, the raw bytes. At most [`MAX_REFERENCE_VALUE_LEN`] bytes each.
//! * An index in the file that the peer does not report is a mismatch; an index the peer
//!   reports that the file does not mention is recorded as not referenced, not a mismatch.
//!
//! [`PolicyMode`] decides what a mismatch does: `Off` skips appraisal, `Audit` records
//! mismatches in the verdict and still succeeds, `Enforce` fails the attestation.
//!
//! Pure: parses text it is given; the shell ([`super::measure`]) reads the file.

use std::collections::BTreeMap;

use super::msgs::MeasurementBlock;
use crate::hex::{hex_decode, hex_encode};

/// Largest reference value, in bytes.
pub const MAX_REFERENCE_VALUE_LEN: usize = 1024;
/// Largest reference-values document we parse.
pub const MAX_REFERENCE_FILE_LEN: usize = 256 * 1024;
/// The only reference-values format version.
pub const REFERENCE_FORMAT_VERSION: u32 = 1;

/// What a measurement mismatch does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyMode {
    /// Measurements are not appraised.
    #[default]
    Off,
    /// Mismatches are recorded; the attestation still succeeds.
    Audit,
    /// Any mismatch fails the attestation.
    Enforce,
}

/// Why a reference-values document was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    /// Not valid JSON of the documented shape (unknown fields included).
    #[error("reference values are not valid json of the documented format")]
    Json(#[source] serde_json::Error),
    /// The document is larger than [`MAX_REFERENCE_FILE_LEN`].
    #[error("reference values document is too large")]
    TooLarge,
    /// `version` is not 1.
    #[error("unsupported reference values version {0}")]
    Version(u32),
    /// A key is not a decimal index in 1..=254.
    #[error("measurement index {0:?} is not a decimal number in 1..=254")]
    BadIndex(String),
    /// A value is not non-empty hex within the size limit.
    #[error("reference value for index {0} is not hex of at most 1024 bytes")]
    BadValue(u8),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReferenceFile {
    version: u32,
    measurements: BTreeMap<String, String>,
}

/// Expected measurement values by index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReferenceValues {
    values: BTreeMap<u8, Vec<u8>>,
}

fn parse_index(key: &str) -> Option<u8> {
    let canonical = !key.is_empty()
        && key.bytes().all(|b| b.is_ascii_digit())
        && !(key.len() > 1 && key.starts_with('0'));
    if !canonical {
        return None;
    }
    key.parse::<u8>().ok().filter(|i| (1..=0xFE).contains(i))
}

impl ReferenceValues {
    /// Reference values from a map (the TPM code or tests build these directly).
    pub fn new(values: BTreeMap<u8, Vec<u8>>) -> Self {
        ReferenceValues { values }
    }

    /// Parses the documented JSON format.
    ///
    /// # Errors
    /// [`ReferenceError`].
    pub fn from_json(text: &str) -> Result<Self, ReferenceError> {
        if text.len() > MAX_REFERENCE_FILE_LEN {
            return Err(ReferenceError::TooLarge);
        }
        let file: ReferenceFile = serde_json::from_str(text).map_err(ReferenceError::Json)?;
        if file.version != REFERENCE_FORMAT_VERSION {
            return Err(ReferenceError::Version(file.version));
        }
        let mut values = BTreeMap::new();
        for (key, hex) in file.measurements {
            let index = parse_index(&key).ok_or_else(|| ReferenceError::BadIndex(key.clone()))?;
            let value = hex_decode(&hex)
                .filter(|v| !v.is_empty() && v.len() <= MAX_REFERENCE_VALUE_LEN)
                .ok_or(ReferenceError::BadValue(index))?;
            values.insert(index, value);
        }
        Ok(ReferenceValues { values })
    }

    /// The documented JSON form.
    pub fn to_json(&self) -> String {
        let measurements: serde_json::Map<String, serde_json::Value> = self
            .values
            .iter()
            .map(|(i, v)| (i.to_string(), serde_json::Value::String(hex_encode(v))))
            .collect();
        serde_json::json!({ "version": REFERENCE_FORMAT_VERSION, "measurements": measurements })
            .to_string()
    }

    /// The expected value of `index`.
    pub fn get(&self, index: u8) -> Option<&[u8]> {
        self.values.get(&index).map(Vec::as_slice)
    }

    /// Number of reference values.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// The measurement policy: a mode and the values it appraises against.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MeasurementPolicy {
    /// What a mismatch does.
    pub mode: PolicyMode,
    /// Expected values.
    pub reference: ReferenceValues,
}

/// How one index compared.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum IndexStatus {
    /// The peer's value equals the reference.
    Match,
    /// The peer's value differs from the reference (or is not a DMTF block).
    Mismatch {
        /// Hex of the expected value.
        expected: String,
    },
    /// The reference names this index; the peer did not report it.
    Missing {
        /// Hex of the expected value.
        expected: String,
    },
    /// The peer reported it; the reference does not mention it.
    NotReferenced,
    /// Appraisal is off.
    NotAppraised,
}

/// One index of the appraisal.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct MeasurementResult {
    /// Measurement index.
    pub index: u8,
    /// DMTFSpecMeasurementValueType, when the block is DMTF-format.
    pub value_type: Option<u8>,
    /// Hex of the reported value (empty when missing or not DMTF-format).
    pub value: String,
    /// How it compared.
    pub status: IndexStatus,
}

impl MeasurementResult {
    /// True for [`IndexStatus::Mismatch`] and [`IndexStatus::Missing`].
    pub fn is_failure(&self) -> bool {
        matches!(
            self.status,
            IndexStatus::Mismatch { .. } | IndexStatus::Missing { .. }
        )
    }
}

/// Compares reported blocks with the policy's reference values, index by index.
pub fn appraise(blocks: &[MeasurementBlock], policy: &MeasurementPolicy) -> Vec<MeasurementResult> {
    let mut out = Vec::new();
    for block in blocks {
        let dmtf = block.dmtf_value().ok();
        let value_type = dmtf.as_ref().map(|d| d.value_type);
        let value = dmtf
            .as_ref()
            .map(|d| hex_encode(&d.value))
            .unwrap_or_default();
        let status = match (policy.mode, policy.reference.get(block.index)) {
            (PolicyMode::Off, _) => IndexStatus::NotAppraised,
            (_, None) => IndexStatus::NotReferenced,
            (_, Some(expected)) => match &dmtf {
                Some(d) if d.value == expected => IndexStatus::Match,
                _ => IndexStatus::Mismatch {
                    expected: hex_encode(expected),
                },
            },
        };
        out.push(MeasurementResult {
            index: block.index,
            value_type,
            value,
            status,
        });
    }
    if policy.mode != PolicyMode::Off {
        for (index, expected) in &policy.reference.values {
            if !blocks.iter().any(|b| b.index == *index) {
                out.push(MeasurementResult {
                    index: *index,
                    value_type: None,
                    value: String::new(),
                    status: IndexStatus::Missing {
                        expected: hex_encode(expected),
                    },
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: PolicyMode, json: &str) -> MeasurementPolicy {
        MeasurementPolicy {
            mode,
            reference: ReferenceValues::from_json(json).unwrap(),
        }
    }

    #[test]
    fn parses_and_round_trips_the_documented_format() {
        let json = r#"{"version":1,"measurements":{"1":"AABB","254":"01"}}"#;
        let rv = ReferenceValues::from_json(json).unwrap();
        assert_eq!(rv.get(1), Some(&[0xaa, 0xbb][..]));
        assert_eq!(rv.get(254), Some(&[0x01][..]));
        assert_eq!(ReferenceValues::from_json(&rv.to_json()).unwrap(), rv);
    }

    #[test]
    fn rejects_bad_documents_with_typed_errors() {
        let cases = [
            (r#"{"version":2,"measurements":{}}"#, "version"),
            (r#"{"version":1,"measurements":{"0":"aa"}}"#, "index"),
            (r#"{"version":1,"measurements":{"255":"aa"}}"#, "index"),
            (r#"{"version":1,"measurements":{"01":"aa"}}"#, "index"),
            (r#"{"version":1,"measurements":{"+1":"aa"}}"#, "index"),
            (r#"{"version":1,"measurements":{"1":"abc"}}"#, "value"),
            (r#"{"version":1,"measurements":{"1":""}}"#, "value"),
            (r#"{"version":1,"measurements":{"1":"zz"}}"#, "value"),
            (r#"{"version":1,"measurements":{},"extra":1}"#, "json"),
            (r#"{"version":1}"#, "json"),
            ("not json", "json"),
        ];
        for (text, kind) in cases {
            let err = ReferenceValues::from_json(text).unwrap_err();
            let ok = match kind {
                "version" => matches!(err, ReferenceError::Version(2)),
                "index" => matches!(err, ReferenceError::BadIndex(_)),
                "value" => matches!(err, ReferenceError::BadValue(1)),
                _ => matches!(err, ReferenceError::Json(_)),
            };
            assert!(ok, "{text}: {err:?}");
        }
        let big = format!(
            r#"{{"version":1,"measurements":{{"1":"{}"}}}}"#,
            "00".repeat(MAX_REFERENCE_VALUE_LEN + 1)
        );
        assert!(matches!(
            ReferenceValues::from_json(&big),
            Err(ReferenceError::BadValue(1))
        ));
    }

    #[test]
    fn appraisal_classifies_every_index() {
        let blocks = [
            MeasurementBlock::dmtf(1, 0, &[1; 32]),
            MeasurementBlock::dmtf(2, 1, &[2; 32]),
            MeasurementBlock::dmtf(3, 2, &[3; 32]),
        ];
        let json = format!(
            r#"{{"version":1,"measurements":{{"1":"{}","2":"{}","9":"aa"}}}}"#,
            "01".repeat(32),
            "ff".repeat(32)
        );
        let results = appraise(&blocks, &policy(PolicyMode::Enforce, &json));
        let statuses: Vec<_> = results.iter().map(|r| (r.index, r.is_failure())).collect();
        assert_eq!(statuses, [(1, false), (2, true), (3, false), (9, true)]);
        assert_eq!(results[2].status, IndexStatus::NotReferenced);
        let off = appraise(&blocks, &policy(PolicyMode::Off, &json));
        assert!(off.iter().all(|r| r.status == IndexStatus::NotAppraised));
        assert_eq!(off.len(), 3);
    }
}
