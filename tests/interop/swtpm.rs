//! One software TPM (`swtpm socket --tpm2`) on two loopback ports, the data port and the
//! control port right above it (the pair tpm2-tss's `swtpm` TCTI expects), killed by PID
//! when dropped. swtpm is mandatory: missing, it fails the test.
#![allow(clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::process::{Child, free_port};

/// A running swtpm.
#[derive(Debug)]
pub struct Swtpm {
    /// Killed by PID when dropped.
    _process: Child,
    port: u16,
}

impl Swtpm {
    /// Starts swtpm with its state in `dir` and waits until both ports listen.
    ///
    /// # Panics
    /// When swtpm is not installed or does not come up after a few port pairs.
    pub fn start(dir: &Path) -> Swtpm {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        if which("swtpm").is_none() {
            panic!("swtpm is not installed: run `make test` (scripts/install-deps.sh)");
        }
        let mut last = String::new();
        for _ in 0..8 {
            let port = free_port();
            let Some(ctrl) = port.checked_add(1) else {
                continue;
            };
            let mut cmd = Command::new("swtpm");
            cmd.arg("socket")
                .arg("--tpm2")
                .arg("--server")
                .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
                .arg("--ctrl")
                .arg(format!("type=tcp,port={ctrl},bindaddr=127.0.0.1"))
                .arg("--tpmstate")
                .arg(format!("dir={}", dir.display()))
                .arg("--flags")
                .arg("not-need-init,startup-clear");
            let mut process = Child::spawn("swtpm", cmd, &dir.join("swtpm.out"));
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(10) && process.exited().is_none() {
                if super::process::listens(process.pid(), port)
                    && super::process::listens(process.pid(), ctrl)
                {
                    return Swtpm {
                        _process: process,
                        port,
                    };
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            last = process.output();
        }
        panic!("swtpm did not start: {last}");
    }

    /// The TCTI string: `swtpm:host=127.0.0.1,port=P`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }
}

/// The path of `program` on PATH.
pub fn which(program: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(program))
            .find(|p| p.is_file())
    })
}
