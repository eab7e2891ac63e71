//! Shell: builds the responder's measurement blocks from files, and loads reference values.
//!
//! Each configured file becomes one DMTF block whose value is the SHA-256 digest of the
//! file's contents. Extra blocks (the TPM code will supply PCR values) come in as plain
//! `(index, digest)` pairs. This is the only SPDM file besides [`super::transport`] that
//! touches the file system.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::Error;
use super::measurement::{MAX_REFERENCE_FILE_LEN, ReferenceValues};
use super::msgs::MeasurementBlock;

/// DMTFSpecMeasurementValueType: immutable ROM.
pub const TYPE_IMMUTABLE_ROM: u8 = 0;
/// DMTFSpecMeasurementValueType: mutable firmware (the usual type for a BMC image).
pub const TYPE_MUTABLE_FIRMWARE: u8 = 1;
/// DMTFSpecMeasurementValueType: hardware configuration.
pub const TYPE_HARDWARE_CONFIG: u8 = 2;
/// DMTFSpecMeasurementValueType: firmware configuration.
pub const TYPE_FIRMWARE_CONFIG: u8 = 3;

/// One file to measure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMeasurement {
    /// Measurement index, 1..=254.
    pub index: u8,
    /// DMTFSpecMeasurementValueType (`TYPE_*`), digest form.
    pub value_type: u8,
    /// The file whose SHA-256 is the value.
    pub path: PathBuf,
}

/// An extra digest block supplied as data (e.g. a TPM PCR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExtraMeasurement {
    /// Measurement index, 1..=254.
    pub index: u8,
    /// DMTFSpecMeasurementValueType, digest form.
    pub value_type: u8,
    /// The digest.
    pub digest: Vec<u8>,
}

fn sha256_file(path: &Path) -> Result<[u8; 32], Error> {
    use std::io::Read;
    let file_err = |source| Error::File {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(file_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf).map_err(file_err)?;
        let Some(chunk) = buf.get(..n) else { break };
        if chunk.is_empty() {
            break;
        }
        hasher.update(chunk);
    }
    Ok(hasher.finalize().into())
}

/// Measures `files`, adds `extra`, and returns blocks sorted by index.
///
/// # Errors
/// [`Error::File`] when a file cannot be read; [`Error::Config`] for an index outside
/// 1..=254, a duplicate index, a digest-type with bit 7 set, or an empty digest.
pub fn build_blocks(
    files: &[FileMeasurement],
    extra: &[ExtraMeasurement],
) -> Result<Vec<MeasurementBlock>, Error> {
    let mut entries: Vec<(u8, u8, Vec<u8>)> = Vec::new();
    for f in files {
        entries.push((f.index, f.value_type, sha256_file(&f.path)?.to_vec()));
    }
    for e in extra {
        if e.digest.is_empty() || e.digest.len() > 64 {
            return Err(Error::Config("extra measurement digest size"));
        }
        entries.push((e.index, e.value_type, e.digest.clone()));
    }
    entries.sort_by_key(|(index, _, _)| *index);
    let mut blocks: Vec<MeasurementBlock> = Vec::with_capacity(entries.len());
    for (index, value_type, digest) in entries {
        if index == 0 || index == 0xFF {
            return Err(Error::Config("measurement index must be within 1..=254"));
        }
        if value_type & super::msgs::measurements::VALUE_TYPE_RAW != 0 {
            return Err(Error::Config(
                "digest measurements must not set the raw bit",
            ));
        }
        if blocks.last().is_some_and(|b| b.index == index) {
            return Err(Error::Config("duplicate measurement index"));
        }
        blocks.push(MeasurementBlock::dmtf(index, value_type, &digest));
    }
    Ok(blocks)
}

/// Reads and parses a reference-values file (format in [`super::measurement`]).
///
/// # Errors
/// [`Error::File`], or [`Error::Reference`] for bad content.
pub fn load_reference_values(path: &Path) -> Result<ReferenceValues, Error> {
    let file_err = |source| Error::File {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(file_err)?;
    if meta.len() > u64::try_from(MAX_REFERENCE_FILE_LEN).unwrap_or(u64::MAX) {
        return Err(Error::Reference(
            super::measurement::ReferenceError::TooLarge,
        ));
    }
    let text = std::fs::read_to_string(path).map_err(file_err)?;
    Ok(ReferenceValues::from_json(&text)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_file_digests_sorted_with_extras() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        std::fs::write(&a, b"abc").unwrap();
        let blocks = build_blocks(
            &[FileMeasurement {
                index: 3,
                value_type: TYPE_MUTABLE_FIRMWARE,
                path: a.clone(),
            }],
            &[ExtraMeasurement {
                index: 1,
                value_type: TYPE_FIRMWARE_CONFIG,
                digest: vec![7; 32],
            }],
        )
        .unwrap();
        assert_eq!(blocks.iter().map(|b| b.index).collect::<Vec<_>>(), [1, 3]);
        let v = blocks[1].dmtf_value().unwrap();
        assert_eq!(v.value, Sha256::digest(b"abc").to_vec());
        assert_eq!(v.value_type, TYPE_MUTABLE_FIRMWARE);

        let dup = build_blocks(
            &[FileMeasurement {
                index: 1,
                value_type: 0,
                path: a,
            }],
            &[ExtraMeasurement {
                index: 1,
                value_type: 0,
                digest: vec![0; 32],
            }],
        );
        assert!(matches!(dup, Err(Error::Config(_))));
        let missing = build_blocks(
            &[FileMeasurement {
                index: 2,
                value_type: 0,
                path: dir.path().join("nope"),
            }],
            &[],
        );
        assert!(matches!(missing, Err(Error::File { .. })));
    }

    #[test]
    fn reference_file_errors_are_typed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ref.json");
        std::fs::write(&p, r#"{"version":1,"measurements":{"1":"00ff"}}"#).unwrap();
        assert_eq!(
            load_reference_values(&p).unwrap().get(1),
            Some(&[0, 0xff][..])
        );
        std::fs::write(&p, r#"{"version":1,"measurements":{"x":"00"}}"#).unwrap();
        assert!(matches!(
            load_reference_values(&p),
            Err(Error::Reference(_))
        ));
        assert!(matches!(
            load_reference_values(&dir.path().join("none")),
            Err(Error::File { .. })
        ));
    }
}
