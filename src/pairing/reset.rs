//! `xyz.openbmc_project.Common.FactoryReset.Reset()` on disk: what the core's
//! [`bmc_pairing_core::pairing::Action::EraseIdentity`] and its reset of the pairing state
//! mean for files and keys, made atomic with an intent marker.
//!
//! A reset first writes the marker `factory-reset.pending` next to the state file (temp →
//! fsync → rename → fsync of the directory). That write is the commit point: a crash before
//! it leaves the old state untouched; after it, every start-up finishes the reset
//! ([`Reset::resume_if_pending`]) before anything is loaded, so the next start shows a clean
//! state. The erase itself is idempotent (every step tolerates what is already gone) and the
//! marker is removed only once all of it is durable. Owns these files only: the chain
//! (`ca.der`, `identity.der`), the key store's identity and CA keys, `state.json`, the
//! trust quorum's directory and the marker; the operator's trust anchors are never touched.

use std::fs::File;
use std::path::{Path, PathBuf};

use bmc_pairing_core::keys::{Error as KeyError, KeyRole, KeyStore};
use bmc_pairing_core::pairing::Persisted;

use crate::identity::cert::ChainFiles;
use crate::persist;

/// Name of the intent marker, in the state directory.
pub const MARKER: &str = "factory-reset.pending";

/// Why a reset could not be completed (it is completed at the next start-up then).
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// The marker or the state file could not be written or removed.
    #[error("cannot record the factory reset")]
    Persist(#[source] persist::Error),
    /// A key could not be deleted.
    #[error("cannot delete the {role} key")]
    Key {
        /// Which key.
        role: KeyRole,
        /// Why.
        #[source]
        source: KeyError,
    },
    /// A certificate could not be deleted.
    #[error("cannot delete the identity certificates")]
    Certificates(#[source] crate::identity::Error),
    /// A directory could not be synced, so a deletion might not survive a power cut.
    #[error("cannot sync {path}")]
    Sync {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The blocking task doing the erase panicked (a bug).
    #[error("the reset task panicked")]
    Panicked,
}

/// Where a factory reset acts.
#[derive(Clone, Debug)]
pub struct Reset {
    /// The state file (`state.json`).
    pub state_path: PathBuf,
    /// The identity chain.
    pub chain: ChainFiles,
    /// Directory of the key store's files (synced after the keys are deleted).
    pub key_dir: PathBuf,
}

impl Reset {
    fn marker(&self) -> PathBuf {
        self.state_path
            .parent()
            .unwrap_or(Path::new("."))
            .join(MARKER)
    }

    /// The trust quorum's directory (its state and sealed shares), next to the state file.
    pub fn quorum_dir(&self) -> PathBuf {
        self.state_path
            .parent()
            .unwrap_or(Path::new("."))
            .join("trust-quorum")
    }

    /// True while a reset is committed but not finished.
    pub fn pending(&self) -> bool {
        self.marker().exists()
    }

    /// Commits to a reset: writes the marker durably. Blocking.
    ///
    /// # Errors
    /// [`ResetError::Persist`]; nothing has changed then.
    pub fn begin(&self) -> Result<(), ResetError> {
        persist::write_atomic(&self.marker(), b"factory reset in progress\n")
            .map_err(ResetError::Persist)
    }

    /// Deletes the keys, the certificates and the pairing state (keeping its time floor),
    /// then removes the marker. Idempotent. Blocking.
    ///
    /// # Errors
    /// [`ResetError`]; the marker then stays, and the next start-up finishes the reset.
    pub fn erase(&self, store: &dyn KeyStore) -> Result<(), ResetError> {
        self.chain.remove().map_err(ResetError::Certificates)?;
        sync_dir(self.chain.dir())?;
        for role in [KeyRole::Identity, KeyRole::Ca, KeyRole::GroupRoot] {
            match store.delete(role) {
                Ok(()) | Err(KeyError::KeyMissing(_)) => {}
                Err(source) => return Err(ResetError::Key { role, source }),
            }
        }
        sync_dir(&self.key_dir)?;
        let floor = persist::load_json::<Persisted>(&self.state_path)
            .ok()
            .flatten()
            .map(|p| p.time_floor)
            .unwrap_or(0);
        let clean = Persisted {
            version: bmc_pairing_core::pairing::STATE_VERSION,
            time_floor: floor,
            ..Persisted::default()
        };
        persist::store_json(&self.state_path, &clean).map_err(ResetError::Persist)?;
        // The trust quorum's group and sealed shares belonged to the erased identity.
        let quorum = self.quorum_dir();
        match std::fs::remove_dir_all(&quorum) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ResetError::Sync {
                    path: quorum,
                    source,
                });
            }
        }
        persist::remove_if_exists(&self.marker()).map_err(ResetError::Persist)?;
        sync_dir(self.state_path.parent().unwrap_or(Path::new(".")))
    }

    /// At start-up, before anything is loaded: finishes a reset a crash interrupted. Returns
    /// true if there was one. Blocking.
    ///
    /// # Errors
    /// [`ResetError`] when it still cannot be finished.
    pub fn resume_if_pending(&self, store: &dyn KeyStore) -> Result<bool, ResetError> {
        if !self.pending() {
            return Ok(false);
        }
        tracing::warn!("a factory reset was interrupted; finishing it");
        self.erase(store).map(|()| true)
    }
}

fn sync_dir(dir: &Path) -> Result<(), ResetError> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Ok(()) => Ok(()),
        // Nothing there: nothing to make durable.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ResetError::Sync {
            path: dir.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::file::FileKeyStore;
    use std::time::{Duration, SystemTime};

    fn fixture(dir: &Path) -> (Reset, FileKeyStore) {
        let store = FileKeyStore::new(dir.join("keys"));
        let chain = ChainFiles::new(dir.join("certs"));
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        chain.create(&store, "bmc-a", now).unwrap();
        std::fs::write(dir.join("certs/anchor-1.pem"), b"operator anchor").unwrap();
        let state = Persisted {
            version: 1,
            provisioned: true,
            time_floor: 1_790_000_000,
            ..Persisted::default()
        };
        persist::store_json(&dir.join("state/state.json"), &state).unwrap();
        std::fs::create_dir_all(dir.join("state/trust-quorum")).unwrap();
        std::fs::write(dir.join("state/trust-quorum/share-1.sealed"), b"wrapped").unwrap();
        let reset = Reset {
            state_path: dir.join("state/state.json"),
            chain,
            key_dir: dir.join("keys"),
        };
        (reset, store)
    }

    #[test]
    fn a_committed_reset_is_finished_at_the_next_start_and_keeps_anchors_and_floor() {
        let dir = tempfile::tempdir().unwrap();
        let (reset, store) = fixture(dir.path());
        assert!(!reset.resume_if_pending(&store).unwrap(), "nothing pending");
        assert!(reset.chain.load(&store).is_ok());
        reset.begin().unwrap();
        assert!(reset.pending());
        // "Crash": the next start-up finishes it.
        assert!(reset.resume_if_pending(&store).unwrap());
        assert!(!reset.pending());
        assert!(matches!(
            reset.chain.load(&store),
            Err(crate::identity::cert::IdentityProblem::Absent)
        ));
        assert!(dir.path().join("certs/anchor-1.pem").exists());
        let state: Persisted = persist::load_json(&reset.state_path).unwrap().unwrap();
        assert!(!state.provisioned && state.peers.is_empty());
        assert_eq!(state.time_floor, 1_790_000_000);
        assert!(
            !reset.quorum_dir().exists(),
            "the trust quorum's shares are gone"
        );
        // Idempotent.
        reset.begin().unwrap();
        reset.erase(&store).unwrap();
        assert!(!reset.pending());
    }
}
