//! What this BMC reports in MEASUREMENTS: configured files, the firmware image and TPM PCRs,
//! turned into DMTF digest blocks through [`crate::spdm::measure::build_blocks`].
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

use crate::identity::tpm::{PcrBank, TpmKeyStore};
use crate::spdm::MeasurementBlock;
use crate::spdm::measure::{
    ExtraMeasurement, TYPE_FIRMWARE_CONFIG, TYPE_MUTABLE_FIRMWARE, build_blocks,
};

/// Measurement index of the firmware image.
pub const FIRMWARE_INDEX: u8 = 64;
/// Measurement index of PCR 0; PCR n is `PCR_INDEX_BASE + n`.
pub const PCR_INDEX_BASE: u8 = 128;

/// Why the blocks could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The PCRs could not be read.
    #[error("cannot read the pcrs")]
    Pcr(#[source] crate::identity::Error),
    /// The configured blocks are unusable (never caused by a peer).
    #[error("measurement blocks")]
    Blocks(#[source] crate::spdm::Error),
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
    /// [`Error::Pcr`] when the TPM cannot be read; [`Error::Blocks`] never for a valid
    /// configuration.
    pub fn blocks(&self, tpm: Option<&TpmKeyStore>) -> Result<Vec<MeasurementBlock>, Error> {
        let mut extra = Vec::new();
        let mut unreadable = BTreeSet::new();
        for (index, path) in &self.files {
            match self.digest(path) {
                Ok(digest) => extra.push(ExtraMeasurement {
                    index: *index,
                    value_type: TYPE_MUTABLE_FIRMWARE,
                    digest: digest.to_vec(),
                }),
                Err(e) => {
                    tracing::debug!(path = %path.display(), error = %e, "cannot measure");
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
                extra.push(ExtraMeasurement {
                    index: PCR_INDEX_BASE.saturating_add(pcr),
                    value_type: TYPE_FIRMWARE_CONFIG,
                    digest: value.to_vec(),
                });
            }
        }
        build_blocks(&[], &extra).map_err(Error::Blocks)
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
