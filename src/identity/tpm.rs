//! TPM2 backend of [`KeyStore`] (tss-esapi 7): the BMC's keys live inside its TPM.
//!
//! Owns: the one thread that talks to the TPM (it alone holds the `tss_esapi::Context`), the
//! key templates (submodule `device`), the wrapped-key files `<blob dir>/<role>.tpmkey`
//! (submodule `blob`), and SHA-256 PCR reads. It must not touch certificates (that is
//! [`super::cert`]), any file outside the blob directory, or the TPM from any other thread.
//!
//! # Keys
//! Each [`KeyRole`] is an ECC NIST P-256 signing key (ECDSA, SHA-256) made by TPM2_Create
//! under the storage primary. The TPM returns the public area and the private area wrapped
//! (encrypted and integrity-protected) under that primary; both are written with
//! [`persist::write_atomic`] (0600, atomic). The private key never leaves the TPM in clear.
//! The storage primary is never stored: every operation re-derives it with TPM2_CreatePrimary
//! in the owner hierarchy from the fixed template below, which yields the same key for as
//! long as the owner seed is the same. A TPM reset or reboot keeps the seed, so keys survive
//! it; TPM2_Clear replaces it, so keys wrapped before a clear are [`Error::KeyUnusable`] and
//! must be re-generated. The owner hierarchy is assumed to have an empty authorization
//! value, as on a BMC that nothing else has taken ownership of.
//!
//! # Templates
//! Storage primary: the TCG "Storage Root Key" template for ECC NIST P-256 (TCG TPM v2.0
//! Provisioning Guidance; the EK Credential Profile's storage template without a policy), so
//! any TSS tool re-derives the same parent:
//!
//! | field | storage primary | each role's key |
//! |---|---|---|
//! | type, nameAlg | ECC, SHA-256 | ECC, SHA-256 |
//! | objectAttributes | fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA, restricted, decrypt | fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, noDA, sign |
//! | authPolicy, userAuth | empty, empty | empty, empty |
//! | symmetric | AES-128-CFB | NULL |
//! | scheme | NULL | ECDSA with SHA-256 |
//! | curve, kdf | NIST P-256, NULL | NIST P-256, NULL |
//! | unique | x = y = 32 zero bytes | empty (the TPM generates the key) |
//!
//! fixedTPM makes the TPM refuse to duplicate a key, so its private part exists outside the
//! chip only wrapped for this TPM's storage primary.
//!
//! # Object slots
//! Each operation derives the primary, loads the key under it, flushes the primary, uses the
//! key and flushes it, on error paths too. At most two transient objects exist during an
//! operation and none between operations, so this works on a TPM without a resource manager
//! (raw swtpm has three object slots) and never starves other users of `/dev/tpmrm0`.
//!
//! # Threading
//! All TPM calls run on one dedicated thread. [`KeyStore`] methods (synchronous on purpose:
//! rustls calls the signer synchronously inside the handshake) send the work over a std
//! channel and block on the reply for at most the call timeout. A hung TPM therefore yields
//! [`Error::Unavailable`] rather than a hung caller; work that was still queued when its caller gave
//! up is skipped, and a `generate` that finishes late does not replace the stored key.
//!
//! # Sharing a simulator between processes
//! `/dev/tpmrm0` (the kernel resource manager) gives every process its own view of the
//! TPM's object slots. A simulator socket (`swtpm:`, `mssim:` TCTIs) has no resource
//! manager: commands of two processes interleave on one TPM with three object slots, and
//! two operations at once run out of them (TPM_RC_OBJECT_MEMORY) or worse. So for those
//! TCTIs every operation holds an exclusive `flock` on a lock file named after the TCTI in
//! the temporary directory ([`simulator_lock_path`]), and the pairing manager and
//! bmc-attestation can share one swtpm in tests. A lock file that cannot be created means
//! no lock (logged once); the device TCTI never takes one.
//!
//! # Errors
//! Missing blob → [`Error::KeyMissing`]; corrupt blob, or one the TPM no longer loads →
//! [`Error::KeyUnusable`]; TPM unreachable, hung or failing → [`Error::Unavailable`]. Nothing here
//! panics on a bad blob or a bad TPM.

mod blob;
mod device;
mod error;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use p256::pkcs8::EncodePublicKey;
use tss_esapi::TctiNameConf;
use tss_esapi::structures::{Private, Public};
use tss_esapi::traits::{Marshall, UnMarshall};

use self::blob::Blob;
use self::device::{Device, describe, p256_point, parse_tcti};
use bmc_pairing_core::keys::{Backend, Error, KeyRole, KeyStore, PublicKey, SHA256_LEN};

pub use self::error::TpmError;
use crate::persist;

/// Number of PCRs a TPM 2.0 (PC Client and server profiles) has per bank.
pub const PCR_COUNT: u8 = 24;

/// How long a caller waits for the TPM by default before getting [`Error::Unavailable`]. Generous:
/// one operation is CreatePrimary + Load + Sign, which a slow discrete TPM does in well
/// under a second.
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// File name extension of a wrapped key: `<blob dir>/<role>.tpmkey`.
pub const BLOB_EXTENSION: &str = "tpmkey";

/// A PCR bank [`TpmKeyStore::read_pcrs`] can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PcrBank {
    /// The SHA-256 bank: 32-byte values.
    Sha256,
}

/// One unit of work for the owner thread.
type Job = Box<dyn FnOnce(&mut Owner) + Send>;

/// Keys held by a TPM2, reached through one owner thread. See the module docs.
///
/// Per [`KeyStore`] method: `generate` is TPM2_CreatePrimary + TPM2_Create, then an atomic
/// blob write; `public_key` and `sign_digest` are TPM2_CreatePrimary + TPM2_Load (+
/// TPM2_Sign), so `public_key` reports only a key the TPM can still use; `delete` removes
/// the blob. Dropping the store stops its owner thread once queued work is done.
pub struct TpmKeyStore {
    jobs: mpsc::Sender<Job>,
    tcti: String,
    dir: PathBuf,
    call_timeout: Duration,
}

impl fmt::Debug for TpmKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TpmKeyStore")
            .field("tcti", &self.tcti)
            .field("dir", &self.dir)
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

impl TpmKeyStore {
    /// Opens the TPM at `tcti` (`device:/dev/tpmrm0` on a BMC, `swtpm:host=...,port=...` in
    /// tests) with blobs under `blob_dir` (created 0700 on first write), and checks that the
    /// TPM answers and can derive the storage primary.
    ///
    /// # Errors
    /// [`Error::Unavailable`] when the TCTI string is invalid, the TPM cannot be reached, or it
    /// cannot create the storage primary (owner hierarchy disabled or protected by a
    /// password, no ECC P-256).
    ///
    /// # Panics
    /// Never.
    pub fn open(tcti: &str, blob_dir: impl Into<PathBuf>) -> Result<Self, Error> {
        Self::open_with_timeout(tcti, blob_dir, DEFAULT_CALL_TIMEOUT)
    }

    /// As [`TpmKeyStore::open`], with `call_timeout` instead of [`DEFAULT_CALL_TIMEOUT`] for
    /// every call, including the availability check.
    ///
    /// # Errors
    /// As [`TpmKeyStore::open`].
    pub fn open_with_timeout(
        tcti: &str,
        blob_dir: impl Into<PathBuf>,
        call_timeout: Duration,
    ) -> Result<Self, Error> {
        let store = Self::start(tcti, blob_dir.into(), call_timeout)?;
        store.probe()?;
        Ok(store)
    }

    /// As [`TpmKeyStore::open`], without proving the TPM usable first: for a daemon that
    /// must keep serving (and report the missing identity) while the TPM is not answering
    /// yet. Every operation connects on demand, so the store works once the TPM does.
    ///
    /// # Errors
    /// [`Error::Unavailable`] for a TCTI string this backend cannot use, or when the owner thread
    /// cannot be started.
    pub fn open_unprobed(tcti: &str, blob_dir: impl Into<PathBuf>) -> Result<Self, Error> {
        Self::start(tcti, blob_dir.into(), DEFAULT_CALL_TIMEOUT)
    }

    /// Starts the owner thread for `tcti`; nothing is sent to the TPM yet.
    fn start(tcti: &str, dir: PathBuf, call_timeout: Duration) -> Result<Self, Error> {
        let conf = parse_tcti(tcti)?;
        let (jobs, queue) = mpsc::channel::<Job>();
        let owner_dir = dir.clone();
        let tcti_text = tcti.to_owned();
        thread::Builder::new()
            .name("tpm-owner".into())
            .spawn(move || owner_loop(conf, tcti_text, owner_dir, queue))
            .map_err(|e| TpmError::Thread(e).unavailable())?;
        Ok(TpmKeyStore {
            jobs,
            tcti: tcti.to_owned(),
            dir,
            call_timeout,
        })
    }

    /// Proves the TPM usable for this backend: it answers, and it can derive our storage
    /// primary.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub fn probe(&self) -> Result<(), Error> {
        self.call(|owner, _| owner.device.probe())
    }

    /// The TCTI string this store was opened with.
    pub fn tcti(&self) -> &str {
        &self.tcti
    }

    /// The directory that holds the wrapped keys.
    pub fn blob_dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds `role`'s wrapped key.
    pub fn blob_path(&self, role: KeyRole) -> PathBuf {
        blob_path(&self.dir, role)
    }

    /// Reads PCRs `indices` of `bank` in one consistent snapshot; returns `(index, value)`
    /// pairs sorted by index, each index once. An empty `indices` reads nothing.
    ///
    /// Runs on the owner thread, like every other TPM call.
    ///
    /// # Errors
    /// [`Error::Unavailable`] for an index of [`PCR_COUNT`] or more, a bank the TPM does not have,
    /// or any TPM failure.
    pub fn read_pcrs(&self, bank: PcrBank, indices: &[u8]) -> Result<Vec<(u8, [u8; 32])>, Error> {
        let PcrBank::Sha256 = bank;
        let mut wanted = BTreeSet::new();
        for &index in indices {
            if index >= PCR_COUNT {
                return Err(TpmError::PcrIndex(index).unavailable());
            }
            wanted.insert(index);
        }
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        self.call(move |owner, _| owner.device.read_pcrs(&wanted))
    }

    /// Reads all [`PCR_COUNT`] PCRs of `bank`; see [`TpmKeyStore::read_pcrs`].
    ///
    /// # Errors
    /// As [`TpmKeyStore::read_pcrs`].
    pub fn read_all_pcrs(&self, bank: PcrBank) -> Result<Vec<(u8, [u8; 32])>, Error> {
        let all: Vec<u8> = (0..PCR_COUNT).collect();
        self.read_pcrs(bank, &all)
    }

    /// Seals `data` (at most 128 bytes) to this TPM: a sealed-data object under the storage
    /// primary, returned as blob bytes (same framing as a wrapped key) for the caller to
    /// store. Only this TPM, with the same owner seed, can unseal it.
    ///
    /// # Errors
    /// [`Error::Unavailable`].
    pub fn seal(&self, data: &[u8]) -> Result<Vec<u8>, Error> {
        let data = zeroize::Zeroizing::new(data.to_vec());
        self.call(move |owner, _| {
            let (public, private) = owner.device.seal(&data)?;
            let public_area = public
                .marshall()
                .map_err(|e| TpmError::tss("cannot marshal the public area", e).unavailable())?;
            Blob {
                public: public_area,
                private: private.value().to_vec(),
            }
            .encode()
            .map_err(|e| {
                TpmError::Unexpected(format!("the tpm returned an unstorable object: {e}"))
                    .unavailable()
            })
        })
    }

    /// Unseals blob bytes made by [`TpmKeyStore::seal`].
    ///
    /// # Errors
    /// [`Error::Unavailable`] for a damaged blob, one this TPM refuses, or any TPM failure.
    pub fn unseal(&self, blob: &[u8]) -> Result<zeroize::Zeroizing<Vec<u8>>, Error> {
        let blob = Blob::decode(blob).map_err(|e| {
            TpmError::Unexpected(format!("sealed blob unusable: {e}")).unavailable()
        })?;
        let public = Public::unmarshall(&blob.public).map_err(|e| {
            TpmError::Unexpected(format!("sealed blob: bad public area: {}", describe(e)))
                .unavailable()
        })?;
        let private = Private::try_from(blob.private).map_err(|e| {
            TpmError::Unexpected(format!("sealed blob: bad private area: {}", describe(e)))
                .unavailable()
        })?;
        self.call(move |owner, _| owner.device.unseal(&public, &private))
    }

    /// Sends `op` to the owner thread and waits for its answer, at most `call_timeout`.
    fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Owner, Option<Instant>) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let timeout = self.call_timeout;
        // None only for absurd timeouts that overflow Instant: such a call never expires.
        let deadline = Instant::now().checked_add(timeout);
        let (reply, answer) = mpsc::sync_channel(1);
        let tcti = self.tcti.clone();
        let job: Job = Box::new(move |owner: &mut Owner| {
            let result = if deadline.is_some_and(|d| Instant::now() >= d) {
                // The caller has given up; doing the work now could only surprise it.
                Err(timed_out(&tcti, timeout))
            } else {
                op(owner, deadline)
            };
            // The caller may have stopped listening; nothing else wants the answer.
            let _ = reply.send(result);
        });
        self.jobs
            .send(job)
            .map_err(|_| TpmError::OwnerGone.unavailable())?;
        match answer.recv_timeout(timeout) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Timeout) => Err(timed_out(&self.tcti, timeout)),
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(TpmError::Panicked.unavailable()),
        }
    }
}

impl KeyStore for TpmKeyStore {
    fn backend(&self) -> Backend {
        Backend::Tpm
    }

    fn generate(&self, role: KeyRole) -> Result<PublicKey, Error> {
        self.call(move |owner, deadline| owner.generate(role, deadline))
    }

    fn public_key(&self, role: KeyRole) -> Result<PublicKey, Error> {
        self.call(move |owner, _| owner.public_key(role))
    }

    fn sign_digest(&self, role: KeyRole, digest: &[u8]) -> Result<Vec<u8>, Error> {
        let digest: [u8; SHA256_LEN] = digest
            .try_into()
            .map_err(|_| Error::BadDigestLength(digest.len()))?;
        self.call(move |owner, _| owner.sign(role, &digest))
    }

    fn delete(&self, role: KeyRole) -> Result<(), Error> {
        self.call(move |owner, _| owner.delete(role))
    }
}

fn timed_out(tcti: &str, timeout: Duration) -> Error {
    TpmError::Timeout {
        tcti: tcti.to_owned(),
        timeout,
    }
    .unavailable()
}

fn blob_path(dir: &Path, role: KeyRole) -> PathBuf {
    dir.join(format!("{}.{BLOB_EXTENSION}", role.as_str()))
}

/// The lock file serialising operations of every process on the simulator at `tcti`, or
/// `None` for a TCTI that needs none (a device behind the resource manager).
pub fn simulator_lock_path(tcti: &str) -> Option<PathBuf> {
    let name = tcti.split(':').next().unwrap_or_default();
    if !matches!(name, "swtpm" | "mssim") {
        return None;
    }
    let safe: String = tcti
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    Some(std::env::temp_dir().join(format!("bmc-pairing-tpm-{safe}.lock")))
}

/// An open lock file; [`SimulatorLock::hold`] takes the lock for one operation.
struct SimulatorLock(std::fs::File);

impl SimulatorLock {
    fn open(tcti: &str) -> Option<SimulatorLock> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = simulator_lock_path(tcti)?;
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
        {
            Ok(file) => Some(SimulatorLock(file)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %crate::kit::ErrorChain(&e), "cannot open the tpm simulator lock; operations of other processes may interleave");
                None
            }
        }
    }

    /// Blocks until this process holds the lock; released when the guard drops.
    fn hold(&self) -> Option<SimulatorGuard<'_>> {
        use rustix::fs::{FlockOperation, flock};
        match flock(&self.0, FlockOperation::LockExclusive) {
            Ok(()) => Some(SimulatorGuard(&self.0)),
            Err(e) => {
                tracing::warn!(error = %crate::kit::ErrorChain(&e), "cannot take the tpm simulator lock");
                None
            }
        }
    }
}

struct SimulatorGuard<'a>(&'a std::fs::File);

impl Drop for SimulatorGuard<'_> {
    fn drop(&mut self) {
        // Closing the file would release it too; the file is kept for the next operation.
        let _ = rustix::fs::flock(self.0, rustix::fs::FlockOperation::Unlock);
    }
}

/// The owner thread: runs jobs until the store (the only sender) is dropped.
fn owner_loop(tcti: TctiNameConf, tcti_text: String, dir: PathBuf, queue: mpsc::Receiver<Job>) {
    let lock = SimulatorLock::open(&tcti_text);
    let mut owner = Owner {
        device: Device::new(tcti, tcti_text),
        dir,
    };
    for job in queue {
        let held = lock.as_ref().and_then(SimulatorLock::hold);
        owner.device.set_exclusive(held.is_some());
        if panic::catch_unwind(AssertUnwindSafe(|| job(&mut owner))).is_err() {
            // tss-esapi has internal unwraps; after one fired, the ESAPI context is in an
            // unknown state, so start over with a fresh connection.
            tracing::error!("tpm call panicked inside the tpm library; reconnecting");
            owner.device.reset();
        }
    }
}

/// A stored key, parsed and checked to be a P-256 signing key (not yet loaded).
struct StoredKey {
    public: Public,
    private: Private,
    key: PublicKey,
}

/// State of the owner thread.
struct Owner {
    device: Device,
    dir: PathBuf,
}

impl Owner {
    fn generate(&mut self, role: KeyRole, deadline: Option<Instant>) -> Result<PublicKey, Error> {
        let (public, private) = self.device.create_key()?;
        let key = p256_point(&public)
            .and_then(|point| spki_of(&point))
            .map_err(|why| {
                TpmError::Unexpected(format!("the tpm created an unexpected key: {why}"))
                    .unavailable()
            })?;
        let public_area = public
            .marshall()
            .map_err(|e| TpmError::tss("cannot marshal the public area", e).unavailable())?;
        let bytes = Blob {
            public: public_area,
            private: private.value().to_vec(),
        }
        .encode()
        .map_err(|e| {
            TpmError::Unexpected(format!("the tpm returned an unstorable key: {e}")).unavailable()
        })?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            // The caller already got a timeout; replacing its key behind its back would
            // leave certificates that name the old key.
            return Err(TpmError::Unexpected(
                "timed out before the new key was stored; the old key is unchanged".into(),
            )
            .unavailable());
        }
        let path = blob_path(&self.dir, role);
        persist::write_atomic(&path, &bytes).map_err(|source| Error::Storage {
            path,
            source: Box::new(source),
        })?;
        tracing::info!(%role, fingerprint = %key.fingerprint(), "generated tpm key");
        Ok(key)
    }

    fn public_key(&mut self, role: KeyRole) -> Result<PublicKey, Error> {
        let stored = self.read_stored(role)?;
        // The public area alone could outlive the TPM state it was made with; only a key the
        // TPM still loads is reported.
        self.device
            .check_loads(role, &stored.public, &stored.private)?;
        Ok(stored.key)
    }

    fn sign(&mut self, role: KeyRole, digest: &[u8; SHA256_LEN]) -> Result<Vec<u8>, Error> {
        let stored = self.read_stored(role)?;
        let signature = self
            .device
            .sign(role, &stored.public, &stored.private, digest)?;
        Ok(signature.to_vec())
    }

    fn delete(&mut self, role: KeyRole) -> Result<(), Error> {
        let path = blob_path(&self.dir, role);
        persist::remove_if_exists(&path).map_err(|source| Error::Storage {
            path,
            source: Box::new(source),
        })?;
        tracing::info!(%role, "deleted tpm key");
        Ok(())
    }

    fn read_stored(&self, role: KeyRole) -> Result<StoredKey, Error> {
        let path = blob_path(&self.dir, role);
        let bytes = persist::read_optional(&path)
            .map_err(|source| Error::Storage {
                path: path.clone(),
                source: Box::new(source),
            })?
            .ok_or(Error::KeyMissing(role))?;
        let unusable = |reason: String| {
            TpmError::Blob {
                path: path.clone(),
                reason,
            }
            .unusable(role)
        };
        let blob = Blob::decode(&bytes).map_err(|e| unusable(e.to_string()))?;
        let public = Public::unmarshall(&blob.public)
            .map_err(|e| unusable(format!("bad public area: {}", describe(e))))?;
        // Unmarshalling ignores trailing bytes; a canonical re-encoding proves there are none.
        if public.marshall().ok().as_deref() != Some(blob.public.as_slice()) {
            return Err(unusable("public area is not canonical".into()));
        }
        let private = Private::try_from(blob.private)
            .map_err(|e| unusable(format!("bad private area: {}", describe(e))))?;
        let key = p256_point(&public)
            .and_then(|point| spki_of(&point))
            .map_err(|why| unusable(why.into()))?;
        Ok(StoredKey {
            public,
            private,
            key,
        })
    }
}

/// The SPKI of an uncompressed P-256 point; rejects points not on the curve.
fn spki_of(point: &[u8]) -> Result<PublicKey, &'static str> {
    let key =
        p256::PublicKey::from_sec1_bytes(point).map_err(|_| "public point is not on P-256")?;
    let der = key
        .to_public_key_der()
        .map_err(|_| "cannot encode the public key")?;
    Ok(PublicKey::from_spki_der(der.as_bytes().to_vec()))
}
