//! Where this member keeps its trust-quorum shares: each sealed to this BMC's TPM
//! ([`TpmKeyStore::seal`]) and written atomically (0600) as `<dir>/share-<epoch>.sealed`.
//! The share is never on disk in the clear. There is no file-backend equivalent: with the
//! file key backend (development only) the trust quorum is off.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bmc_pairing_core::quorum::vss::{SCALAR_LEN, Share};
use zeroize::Zeroizing;

use crate::identity::tpm::TpmKeyStore;
use crate::persist;

/// Why a share could not be stored, read or destroyed.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The TPM refused or failed.
    #[error("tpm")]
    Tpm(#[from] bmc_pairing_core::keys::Error),
    /// The file could not be written, read or removed.
    #[error("share file")]
    File(#[from] persist::Error),
    /// The unsealed bytes are not a share.
    #[error("the unsealed data is not a share")]
    NotAShare,
}

/// Shares sealed to the TPM, one file per epoch.
#[derive(Clone, Debug)]
pub struct Vault {
    tpm: Arc<TpmKeyStore>,
    dir: PathBuf,
}

impl Vault {
    /// Shares under `dir` (created 0700 on first write), sealed by `tpm`.
    pub fn new(tpm: Arc<TpmKeyStore>, dir: impl Into<PathBuf>) -> Self {
        Vault {
            tpm,
            dir: dir.into(),
        }
    }

    /// The file of `epoch`'s share.
    pub fn path(&self, epoch: u64) -> PathBuf {
        share_path(&self.dir, epoch)
    }

    /// Seals `share` and writes it (atomically; the old file, if any, stays until then).
    ///
    /// # Errors
    /// [`VaultError`].
    pub fn store(&self, epoch: u64, share: &Share) -> Result<(), VaultError> {
        let mut plain = Zeroizing::new(Vec::with_capacity(1 + SCALAR_LEN));
        plain.push(share.index());
        plain.extend_from_slice(share.value_bytes().as_slice());
        let sealed = self.tpm.seal(&plain)?;
        persist::ensure_private_dir(&self.dir)?;
        persist::write_atomic(&self.path(epoch), &sealed)?;
        Ok(())
    }

    /// Reads and unseals `epoch`'s share; `None` without a file.
    ///
    /// # Errors
    /// [`VaultError`].
    pub fn load(&self, epoch: u64) -> Result<Option<Share>, VaultError> {
        let Some(sealed) = persist::read_optional(&self.path(epoch))? else {
            return Ok(None);
        };
        let plain = self.tpm.unseal(&sealed)?;
        let (index, value) = plain.split_first().ok_or(VaultError::NotAShare)?;
        let value: Zeroizing<[u8; SCALAR_LEN]> =
            Zeroizing::new(value.try_into().map_err(|_| VaultError::NotAShare)?);
        Share::from_parts(*index, &value)
            .map(Some)
            .map_err(|_| VaultError::NotAShare)
    }

    /// Removes `epoch`'s share (nothing if there is none).
    ///
    /// # Errors
    /// [`VaultError::File`].
    pub fn destroy(&self, epoch: u64) -> Result<(), VaultError> {
        persist::remove_if_exists(&self.path(epoch))?;
        Ok(())
    }
}

impl Vault {
    /// Removes every share file whose epoch is not in `keep`; returns how many.
    ///
    /// # Errors
    /// [`VaultError::File`].
    pub fn prune(&self, keep: &[u64]) -> Result<usize, VaultError> {
        let mut removed = 0;
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return Ok(0);
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let epoch = name
                .to_str()
                .and_then(|n| n.strip_prefix("share-"))
                .and_then(|n| n.strip_suffix(".sealed"))
                .and_then(|n| n.parse::<u64>().ok());
            if let Some(epoch) = epoch
                && !keep.contains(&epoch)
            {
                self.destroy(epoch)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn share_path(dir: &Path, epoch: u64) -> PathBuf {
    dir.join(format!("share-{epoch}.sealed"))
}
