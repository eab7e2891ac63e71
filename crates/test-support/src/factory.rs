//! A factory CA made with OpenSSL, as manufacturing would run it, for enrolment tests.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::{Bmc, daemon_binary, require_tool};

/// Runs `cmd`, asserts success, returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The factory: an OpenSSL CA that signs a BMC's CA request, the way manufacturing would.
pub struct Factory {
    dir: std::path::PathBuf,
}

impl Factory {
    /// A factory root CA (P-256, 3 days) under `dir`.
    pub fn new(dir: &Path) -> Factory {
        require_tool("openssl");
        fs::create_dir_all(dir).unwrap();
        run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "3",
            ])
            .args([
                "-subj",
                "/CN=factory root",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ])
            .arg("-keyout")
            .arg(dir.join("root.key"))
            .arg("-out")
            .arg(dir.join("root.crt")));
        Factory {
            dir: dir.to_owned(),
        }
    }

    /// The factory root certificate (PEM).
    pub fn root(&self) -> std::path::PathBuf {
        self.dir.join("root.crt")
    }

    /// Signs the CA request in `csr` (PEM) with the factory root, as a CA certificate with
    /// path length 0 valid for 3 days, into `out` (PEM).
    pub fn sign_ca_request(&self, csr: &Path, out: &Path) {
        let ext = self.dir.join("ca.ext");
        fs::write(&ext, "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\n").unwrap();
        run(Command::new("openssl")
            .args(["x509", "-req", "-days", "3", "-CAcreateserial"])
            .arg("-in")
            .arg(csr)
            .arg("-CA")
            .arg(self.dir.join("root.crt"))
            .arg("-CAkey")
            .arg(self.dir.join("root.key"))
            .arg("-extfile")
            .arg(&ext)
            .arg("-out")
            .arg(out));
    }

    /// Brings `bmc` into anchored mode with the operator commands: its CA request signed by
    /// the factory, installed, and the factory root in its own trust store.
    pub fn enrol(&self, bmc: &Bmc) {
        let csr = run(Command::new(daemon_binary())
            .arg("--config")
            .arg(&bmc.config_path)
            .arg("csr"));
        let csr_path = self.dir.join(format!("{}.csr", bmc.name));
        fs::write(&csr_path, csr).unwrap();
        let signed = self.dir.join(format!("{}-ca.crt", bmc.name));
        self.sign_ca_request(&csr_path, &signed);
        run(Command::new(daemon_binary())
            .arg("--config")
            .arg(&bmc.config_path)
            .arg("install-ca-cert")
            .arg(&signed));
        run(Command::new(daemon_binary())
            .arg("--config")
            .arg(&bmc.config_path)
            .arg("install-anchor")
            .arg(self.dir.join("root.crt")));
    }
}
