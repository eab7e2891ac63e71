//! Crash-safe persistence of small state files.
//!
//! Owns the one way this project writes anything that must survive a crash or a power cut:
//! a temporary file in the same directory (mode 0600, `create_new`), `write_all`, `sync_all`,
//! `rename` over the target, then an fsync of the directory so the rename itself is durable.
//! A crash at any point leaves either the old file or the new one, never a torn one.
//!
//! It knows no schema: callers hand it bytes, or any `Serialize` value for JSON.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Mode of every file this module writes: owner read/write only.
pub const PRIVATE_MODE: u32 = 0o600;

/// Errors from reading or writing a state file.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file system refused an operation.
    #[error("i/o error on {path}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the OS reported.
        #[source]
        source: io::Error,
    },
    /// The file exists but does not hold valid JSON of the expected shape.
    #[error("{path} is corrupt")]
    Corrupt {
        /// The file that failed to parse.
        path: PathBuf,
        /// What the parser reported.
        #[source]
        source: serde_json::Error,
    },
    /// The value could not be serialised (a bug, never caused by outside input).
    #[error("cannot serialise state for {path}")]
    Serialise {
        /// The file that was to be written.
        path: PathBuf,
        /// What the serialiser reported.
        #[source]
        source: serde_json::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` (and parents) if needed, with mode 0700 for any directory it creates.
///
/// # Errors
/// [`Error::Io`] when a directory cannot be created.
pub fn ensure_private_dir(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(io_err(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))
}

/// Atomically replaces `path` with `bytes`, mode 0600, durable on return.
///
/// # Errors
/// [`Error::Io`] when any step fails; the previous content of `path` is then untouched
/// and the temporary file is removed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    ensure_private_dir(dir)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "state".to_owned());
    let tmp = dir.join(temporary_name(&file_name, std::process::id()));
    // A temporary left behind by a crash of an earlier process with the same PID would make
    // create_new fail forever; it is garbage by construction, so remove it first.
    let _ = fs::remove_file(&tmp);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_MODE)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        file.write_all(bytes).map_err(io_err(&tmp))?;
        file.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(dir))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The name [`write_atomic`] gives the temporary of `file_name` in process `pid`. It is
/// created with mode 0600 (never wider, not even for an instant), so a temporary that a
/// crash leaves behind is readable by the owner only, and [`remove_stale_temporaries`]
/// recognises it.
fn temporary_name(file_name: &str, pid: u32) -> String {
    format!(".{file_name}.tmp.{pid}")
}

/// The PID in a name [`temporary_name`] made, if it is one.
fn temporary_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?;
    let (_, pid) = rest.rsplit_once(".tmp.")?;
    pid.parse().ok()
}

/// Removes the temporaries of [`write_atomic`] in `dir` whose writing process is gone (a
/// crash or kill -9 mid-write). A living process's temporary is left alone: it may be
/// about to rename it. Returns how many were removed. A missing `dir` has none.
///
/// # Errors
/// [`Error::Io`] when `dir` exists but cannot be listed, or a stale temporary cannot be
/// removed.
pub fn remove_stale_temporaries(dir: &Path) -> Result<usize, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(temporary_pid) else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        fs::remove_file(&path).map_err(io_err(&path))?;
        removed += 1;
    }
    Ok(removed)
}

/// Serialises `value` as pretty JSON and writes it with [`write_atomic`].
///
/// # Errors
/// As [`write_atomic`], plus [`Error::Serialise`].
pub fn store_json<T: Serialize>(path: &Path, value: &T) -> Result<(), Error> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(|source| Error::Serialise {
        path: path.to_path_buf(),
        source,
    })?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

/// Reads a JSON file written by [`store_json`]; `Ok(None)` when it does not exist.
///
/// # Errors
/// [`Error::Io`] when it exists but cannot be read, [`Error::Corrupt`] when it does not parse.
pub fn load_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, Error> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| Error::Corrupt {
            path: path.to_path_buf(),
            source,
        })
}

/// Reads a whole file; `Ok(None)` when it does not exist.
///
/// # Errors
/// [`Error::Io`] for any other failure.
pub fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, Error> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Removes a file; a file that is already gone is not an error.
///
/// # Errors
/// [`Error::Io`] for any other failure.
pub fn remove_if_exists(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod stale_tests {
    use super::*;

    #[test]
    fn only_temporaries_of_dead_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        // PIDs above the kernel's maximum (4194304) cannot be running.
        let dead = dir.path().join(temporary_name("identity.p8", 4_999_999));
        let alive = dir
            .path()
            .join(temporary_name("state.json", std::process::id()));
        let other = dir.path().join(".state.json.tmp.notapid");
        let real = dir.path().join("state.json");
        for p in [&dead, &alive, &other, &real] {
            fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_stale_temporaries(dir.path()).unwrap(), 1);
        assert!(!dead.exists());
        assert!(alive.exists() && other.exists() && real.exists());
        assert_eq!(
            remove_stale_temporaries(&dir.path().join("missing")).unwrap(),
            0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn write_atomic_replaces_and_sets_private_mode() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, PRIVATE_MODE);
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left behind");
    }

    #[test]
    fn load_json_distinguishes_missing_and_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.json");
        assert!(load_json::<u32>(&path).unwrap().is_none());
        fs::write(&path, b"{not json").unwrap();
        assert!(matches!(
            load_json::<u32>(&path),
            Err(Error::Corrupt { .. })
        ));
        store_json(&path, &7u32).unwrap();
        assert_eq!(load_json::<u32>(&path).unwrap(), Some(7));
    }

    #[test]
    fn failed_write_leaves_old_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write_atomic(&path, b"old").unwrap();
        // A directory in place of the target makes rename fail.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("x"), b"").unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
    }
}
