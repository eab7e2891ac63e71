//! Our side as the DMTF peers meet it: `bmc-attestation respond` and `bmc-attestation
//! attest` run as processes (the binaries under test), and the identities they serve.
//!
//! [`Identity::daemon`] is this BMC's identity exactly as the daemon creates it on
//! `ProvisionPeer("self")`: the library's `ChainFiles::create` with the identity and CA keys
//! in a TPM (swtpm), served by `respond` from the daemon's configuration file, with the
//! configured files and PCRs 0-7 as measurements. It is P-256, as every daemon identity is.
//! [`Identity::p384`] is a P-384 CA and leaf made here with rcgen, served with `--key` and
//! `--chain`. Neither is libspdm's, so the reference requester's trust anchor must be
//! replaced by our CA for it to trust them.
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bmc_pairing_manager::attestation::config;
use bmc_pairing_manager::identity::KeyStore;
use bmc_pairing_manager::identity::cert::ChainFiles;
use bmc_pairing_manager::identity::tpm::TpmKeyStore;

use super::process::Child;
use super::{Curve, EmuTransport};
use crate::swtpm::Swtpm;

/// The `bmc-attestation` binary under test.
pub fn attestation_binary() -> PathBuf {
    crate::attestation_daemon_binary()
}

/// An identity our responder serves.
#[derive(Debug)]
pub struct Identity {
    /// Its curve.
    pub curve: Curve,
    /// The root CA certificate (DER).
    pub ca_der: Vec<u8>,
    /// The arguments that make `respond` serve it.
    pub respond_args: Vec<String>,
    /// The TPM holding its keys, if any (kept running as long as the identity).
    pub tpm: Option<Swtpm>,
}

impl Identity {
    /// The daemon's own identity in `dir`: swtpm, configuration file, `ChainFiles::create`
    /// with the TPM key store, two measured files.
    ///
    /// # Panics
    /// When swtpm or the TPM key store fails.
    pub fn daemon(dir: &Path) -> Identity {
        fs::create_dir_all(dir.join("measured")).unwrap();
        let tpm = Swtpm::start(&dir.join("swtpm"));
        let measured = [
            dir.join("measured/bmc-image.bin"),
            dir.join("measured/os-release"),
        ];
        fs::write(&measured[0], b"firmware image of bmc-interop").unwrap();
        fs::write(&measured[1], b"ID=openbmc\nVERSION_ID=2.18\n").unwrap();
        let config_path = dir.join("bmc-attestation.conf");
        let text = serde_json::json!({
            "cert_root": dir.join("root"),
            "state_dir": dir.join("state"),
            "key_backend": {"type": "tpm", "tcti": tpm.tcti()},
            "measured_files": measured,
            "measurement_policy": "off",
        });
        fs::write(&config_path, serde_json::to_vec_pretty(&text).unwrap()).unwrap();
        // The paths the daemon derives from its configuration, from the daemon's own code.
        let cfg = config::load(&config_path, false)
            .unwrap_or_else(|e| panic!("our interop configuration is refused: {e}"));
        let store: Arc<dyn KeyStore> = Arc::new(
            TpmKeyStore::open(&tpm.tcti(), cfg.identity.key_dir())
                .unwrap_or_else(|e| panic!("TPM key store on swtpm: {e}")),
        );
        let created = ChainFiles::new(cfg.identity.cert_dir())
            .create(store.as_ref(), "bmc-interop", SystemTime::now())
            .unwrap_or_else(|e| panic!("identity creation as ProvisionPeer(\"self\"): {e}"));
        Identity {
            curve: Curve::P256,
            ca_der: created.ca_der,
            respond_args: vec!["--config".into(), config_path.display().to_string()],
            tpm: Some(tpm),
        }
    }

    /// A P-384 CA and leaf made with rcgen in `dir`, served with `--key` and `--chain`.
    ///
    /// # Panics
    /// On rcgen or file errors.
    pub fn p384(dir: &Path) -> Identity {
        fs::create_dir_all(dir).unwrap();
        let alg = &rcgen::PKCS_ECDSA_P384_SHA384;
        let ca_key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bmc-interop P-384 CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut leaf_params =
            rcgen::CertificateParams::new(vec!["bmc-interop".to_owned()]).unwrap();
        leaf_params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        leaf_params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        leaf_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "bmc-interop P-384 identity");
        let issuer = rcgen::Issuer::from_params(&ca_params, &ca_key);
        let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
        let (key, ca_file, leaf_file) = (
            dir.join("identity.p8"),
            dir.join("ca.der"),
            dir.join("identity.der"),
        );
        fs::write(&key, leaf_key.serialize_der()).unwrap();
        fs::write(&ca_file, ca.der()).unwrap();
        fs::write(&leaf_file, leaf.der()).unwrap();
        Identity {
            curve: Curve::P384,
            ca_der: ca.der().to_vec(),
            respond_args: fixed_args(&key, &[ca_file, leaf_file]),
            tpm: None,
        }
    }
}

/// `respond` arguments for a key file and its chain files.
pub fn fixed_args(key: &Path, chain: &[PathBuf]) -> Vec<String> {
    let mut args = vec![
        "--key".to_owned(),
        key.display().to_string(),
        "--chain".to_owned(),
    ];
    args.extend(chain.iter().map(|p| p.display().to_string()));
    args
}

/// `bmc-attestation respond` listening on a loopback port chosen by the kernel.
#[derive(Debug)]
pub struct OurResponder {
    process: Child,
    port: u16,
}

impl OurResponder {
    /// Starts `respond` with `framing` and `args` (identity, measurements); its output
    /// goes to `log`. Returns once it printed its address.
    ///
    /// # Panics
    /// When it exits or does not listen within 20 s.
    pub fn start(framing: &str, args: &[String], log: &Path) -> OurResponder {
        let mut cmd = Command::new(attestation_binary());
        cmd.args(["respond", "--listen", "127.0.0.1:0", "--framing", framing])
            // The conformance suite and the loops here sign hundreds of times from one
            // address; the signing budget is tested on its own.
            .args([
                "--signs-per-second",
                "1000",
                "--signs-per-source-per-second",
                "1000",
            ])
            .args(args)
            .env("RUST_LOG", "warn");
        let mut process = Child::spawn("bmc-attestation respond", cmd, log);
        let start = std::time::Instant::now();
        loop {
            let out = process.output();
            if let Some(port) = out
                .lines()
                .find_map(|l| l.strip_prefix("listening on 127.0.0.1:"))
                .and_then(|p| p.trim().parse().ok())
            {
                return OurResponder { process, port };
            }
            if let Some(status) = process.exited() {
                panic!("respond exited ({status}) before listening:\n{out}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "respond does not listen:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process (CPU time, output).
    pub fn process(&self) -> &Child {
        &self.process
    }
}

/// One run of `bmc-attestation attest`.
#[derive(Debug)]
pub struct AttestRun {
    /// Its exit code (0 trusted, 1 not trusted, 2 usage).
    pub code: Option<i32>,
    /// The JSON report on stdout.
    pub report: serde_json::Value,
    /// Everything it wrote.
    pub output: String,
}

impl AttestRun {
    /// Attests 127.0.0.1:`port` over `transport`, trusting only `anchor` (a DER file).
    ///
    /// # Panics
    /// When it cannot run or prints no JSON report.
    pub fn run(port: u16, transport: EmuTransport, anchor: &Path) -> AttestRun {
        let out = Self::command(port, transport, anchor)
            .output()
            .unwrap_or_else(|e| panic!("cannot run attest: {e}"));
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let output = format!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
        let report = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("attest printed no JSON report ({e}):\n{output}"));
        AttestRun {
            code: out.status.code(),
            report,
            output,
        }
    }

    /// The command that attests 127.0.0.1:`port` over `transport`, trusting only `anchor`.
    pub fn command(port: u16, transport: EmuTransport, anchor: &Path) -> Command {
        let mut cmd = Command::new(attestation_binary());
        cmd.args(["attest", &format!("127.0.0.1:{port}")])
            .args(["--framing", transport.framing_arg(), "--trust-anchor"])
            .arg(anchor)
            .args(["--timeout-ms", "20000"]);
        cmd
    }

    /// Trusted: exit 0 and `"trusted": true`.
    pub fn trusted(&self) -> bool {
        self.code == Some(0) && self.report["trusted"] == serde_json::Value::Bool(true)
    }

    /// The error chain of a failed attestation (empty when there is none).
    pub fn error(&self) -> String {
        self.report["error"].as_str().unwrap_or_default().to_owned()
    }
}
