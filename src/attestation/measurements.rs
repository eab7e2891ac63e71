//! What this BMC reports in MEASUREMENTS: configured files, the firmware image and TPM PCRs,
//! as DMTF digest blocks sorted by index.
//!
//! # Index layout
//! | index | value | DMTF value type |
//! |---|---|---|
//! | 1..=63 | SHA-256 of `measured_files[index - 1]` | 1, mutable firmware |
//! | 64 | SHA-256 of `firmware_image` | 1, mutable firmware |
//! | 128 + n | SHA-256 bank value of PCR n (TPM backend only) | 3, firmware configuration |
//!
//! A file that cannot be read is left out (a peer with reference values sees it as
//! `Missing`) and logged once each time the set of unreadable files changes. File digests
//! are cached by (device, inode, size, mtime, ctime), so a multi-megabyte binary is hashed
//! again only when it changes; PCRs are read from the TPM for every session.
//!
//! Blocking (file reads, TPM): call from a blocking thread.

use std::collections::{BTreeSet, HashMap};
use std::io::Read as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use bmc_pairing_core::spdm::MeasurementBlock;

use crate::identity::tpm::{PcrBank, TpmKeyStore};

/// DMTFSpecMeasurementValueType: mutable firmware (the usual type for a BMC image).
pub const TYPE_MUTABLE_FIRMWARE: u8 = 1;
/// DMTFSpecMeasurementValueType: firmware configuration (PCRs).
pub const TYPE_FIRMWARE_CONFIG: u8 = 3;

/// Measurement index of the firmware image.
pub const FIRMWARE_INDEX: u8 = 64;
/// Measurement index of PCR 0; PCR n is `PCR_INDEX_BASE + n`.
pub const PCR_INDEX_BASE: u8 = 128;

/// Why the blocks could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The PCRs could not be read.
    #[error("cannot read the pcrs")]
    Pcr(#[source] bmc_pairing_core::keys::Error),
}

/// Identity of a file version, for the digest cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

#[derive(Debug, Default)]
struct Cache {
    digests: HashMap<PathBuf, (Stamp, [u8; 32])>,
    unreadable: BTreeSet<PathBuf>,
}

/// The source of this BMC's measurement blocks.
#[derive(Debug)]
pub struct Measurements {
    files: Vec<(u8, PathBuf)>,
    pcrs: Vec<u8>,
    cache: Mutex<Cache>,
}

impl Measurements {
    /// Files get indices 1, 2, ... in order, the firmware image [`FIRMWARE_INDEX`], and
    /// `pcrs` are read from the TPM given to [`Measurements::blocks`] (none without one).
    pub fn new(measured_files: &[PathBuf], firmware_image: Option<&Path>, pcrs: &[u8]) -> Self {
        // At most 63 files (the config checks it); any beyond are ignored.
        let mut files: Vec<(u8, PathBuf)> = (1..FIRMWARE_INDEX)
            .zip(measured_files.iter().cloned())
            .collect();
        if let Some(fw) = firmware_image {
            files.push((FIRMWARE_INDEX, fw.to_path_buf()));
        }
        Measurements {
            files,
            pcrs: pcrs.to_vec(),
            cache: Mutex::new(Cache::default()),
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The blocks as of now, sorted by index; PCRs only when `tpm` is given.
    ///
    /// # Errors
    /// [`Error::Pcr`] when the TPM cannot be read.
    pub fn blocks(&self, tpm: Option<&TpmKeyStore>) -> Result<Vec<MeasurementBlock>, Error> {
        // (index, value type, digest); indices are distinct by construction: files 1..=63,
        // the image 64, PCRs 128..152.
        let mut blocks: Vec<(u8, u8, Vec<u8>)> = Vec::new();
        let mut unreadable = BTreeSet::new();
        for (index, path) in &self.files {
            match self.digest(path) {
                Ok(digest) => blocks.push((*index, TYPE_MUTABLE_FIRMWARE, digest.to_vec())),
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %crate::kit::ErrorChain(&e), "cannot measure");
                    unreadable.insert(path.clone());
                }
            }
        }
        {
            let mut cache = self.cache();
            if cache.unreadable != unreadable {
                for path in unreadable.difference(&cache.unreadable) {
                    tracing::warn!(path = %path.display(), "measured file is unreadable; left out of MEASUREMENTS");
                }
                cache.unreadable = unreadable;
            }
        }
        if let Some(tpm) = tpm
            && !self.pcrs.is_empty()
        {
            for (pcr, value) in tpm
                .read_pcrs(PcrBank::Sha256, &self.pcrs)
                .map_err(Error::Pcr)?
            {
                let index = PCR_INDEX_BASE.saturating_add(pcr);
                blocks.push((index, TYPE_FIRMWARE_CONFIG, value.to_vec()));
            }
        }
        blocks.sort_by_key(|(index, _, _)| *index);
        Ok(blocks
            .iter()
            .map(|(index, value_type, digest)| MeasurementBlock::dmtf(*index, *value_type, digest))
            .collect())
    }

    /// SHA-256 of `path`, from the cache while the file is unchanged.
    fn digest(&self, path: &Path) -> std::io::Result<[u8; 32]> {
        let mut file = std::fs::File::open(path)?;
        let before = Stamp::of(&file.metadata()?);
        if let Some((stamp, digest)) = self.cache().digests.get(path)
            && *stamp == before
        {
            return Ok(*digest);
        }
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = file.read(&mut buf)?;
            match buf.get(..n) {
                Some(chunk) if !chunk.is_empty() => hasher.update(chunk),
                _ => break,
            }
        }
        let digest: [u8; 32] = hasher.finalize().into();
        // Cached only if the file did not change while it was read.
        if Stamp::of(&file.metadata()?) == before {
            self.cache()
                .digests
                .insert(path.to_path_buf(), (before, digest));
        }
        Ok(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_firmware_take_documented_indices_and_missing_files_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let fw = dir.path().join("fw.bin");
        std::fs::write(&a, b"one").unwrap();
        std::fs::write(&fw, b"image").unwrap();
        let m = Measurements::new(&[a.clone(), dir.path().join("missing")], Some(&fw), &[0, 1]);
        let blocks = m.blocks(None).unwrap();
        let got: Vec<(u8, Vec<u8>)> = blocks
            .iter()
            .map(|b| (b.index, b.dmtf_value().unwrap().value))
            .collect();
        assert_eq!(
            got,
            vec![
                (1, Sha256::digest(b"one").to_vec()),
                (FIRMWARE_INDEX, Sha256::digest(b"image").to_vec()),
            ]
        );
        // A changed file is hashed again (the cache is keyed by the file's metadata).
        std::fs::write(&a, b"two, longer").unwrap();
        let again = m.blocks(None).unwrap();
        assert_eq!(
            again[0].dmtf_value().unwrap().value,
            Sha256::digest(b"two, longer").to_vec()
        );
    }
}
