//! DMTF's reference implementation as test peers: the build, private key folders, the
//! emulated responder and requester, and the conformance suite.
//!
//! The emulators load libspdm's sample keys from their working directory. A [`KeyFolder`]
//! is a private working directory that links to the build's key folders, with single files
//! replaced where a test needs it: our CA as the requester's trust anchor
//! (`ecp256/ca.cert.der`), or another private key for the responder
//! (`ecp256/end_responder.key`).
//!
//! The reference requester does not enforce its trust anchor (a root mismatch is only a
//! warning, exit code 0). The trust-checking build (`TARGET=Debug`, made by
//! `scripts/dmtf-spdm.sh`) prints each of libspdm's checks; [`RequesterChecks`] reads them,
//! so a run is trusted only when the chain was verified against the folder's anchor and both
//! signatures verified, with no check failed.
#![allow(clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::OnceLock;
use std::time::Duration;

use super::process::Child;
use super::{Curve, EmuTransport};
use crate::free_port;

/// How long one emulator run may take (the emulators' own exchanges take about a second).
pub const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The DMTF build under `target/dmtf-spdm`.
#[derive(Debug)]
pub struct Reference {
    out: PathBuf,
}

impl Reference {
    /// The build, made (or found up to date) by `scripts/dmtf-spdm.sh` once per test process.
    ///
    /// # Panics
    /// When it cannot be built (the script says why: no sources, missing cmake, ...).
    pub fn get() -> &'static Reference {
        static BUILT: OnceLock<Reference> = OnceLock::new();
        BUILT.get_or_init(|| {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map_or_else(|| crate::workspace_root().join("target"), PathBuf::from);
            let out = target.join("dmtf-spdm");
            let script = crate::workspace_root().join("scripts/dmtf-spdm.sh");
            let run = Command::new("bash")
                .arg(&script)
                .arg(&out)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
            assert!(
                run.status.success(),
                "the DMTF SPDM reference is needed and could not be built ({}); run `make \
                 test`, which installs the build tools:\n{}",
                run.status,
                String::from_utf8_lossy(&run.stderr)
            );
            Reference { out }
        })
    }

    /// The folder of the Release programs and the sample keys.
    pub fn bin(&self) -> PathBuf {
        self.out.join("bin")
    }

    /// A Release program by name.
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin().join(name)
    }

    /// The requester whose log states each of libspdm's checks.
    pub fn trust_checking_requester(&self) -> PathBuf {
        self.out.join("trust-check/spdm_requester_emu")
    }

    /// A file of libspdm's sample keys for `curve`.
    pub fn sample(&self, curve: Curve, file: &str) -> PathBuf {
        self.bin().join(curve.key_dir()).join(file)
    }

    /// The sample responder chain for `curve`: CA, intermediate, leaf.
    pub fn sample_chain(&self, curve: Curve) -> [PathBuf; 3] {
        [
            self.sample(curve, "ca.cert.der"),
            self.sample(curve, "inter.cert.der"),
            self.sample(curve, "end_responder.cert.der"),
        ]
    }
}

/// A private working directory for the emulators: links to the build's key folders, with
/// the files a test replaced.
#[derive(Debug)]
pub struct KeyFolder {
    dir: PathBuf,
    bin: PathBuf,
}

impl KeyFolder {
    /// A folder at `dir` (created) linking every entry of the build's `bin/`.
    ///
    /// # Panics
    /// On file system errors.
    pub fn new(reference: &Reference, dir: &Path) -> KeyFolder {
        let bin = reference.bin();
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in fs::read_dir(&bin).unwrap_or_else(|e| panic!("{}: {e}", bin.display())) {
            let entry = entry.unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
            let link = dir.join(entry.file_name());
            std::os::unix::fs::symlink(entry.path(), &link)
                .unwrap_or_else(|e| panic!("{}: {e}", link.display()));
        }
        KeyFolder {
            dir: dir.to_path_buf(),
            bin,
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Replaces `file` in `curve`'s key folder with `bytes` (only in this folder).
    ///
    /// # Panics
    /// On file system errors.
    pub fn replace(&self, curve: Curve, file: &str, bytes: &[u8]) {
        let sub = self.dir.join(curve.key_dir());
        let meta = fs::symlink_metadata(&sub).unwrap_or_else(|e| panic!("{}: {e}", sub.display()));
        if meta.file_type().is_symlink() {
            // Make the curve's folder real, still linking every file but the replaced ones.
            fs::remove_file(&sub).unwrap_or_else(|e| panic!("{}: {e}", sub.display()));
            fs::create_dir(&sub).unwrap_or_else(|e| panic!("{}: {e}", sub.display()));
            let source = self.bin.join(curve.key_dir());
            for entry in fs::read_dir(&source).unwrap_or_else(|e| panic!("{e}")) {
                let entry = entry.unwrap_or_else(|e| panic!("{e}"));
                std::os::unix::fs::symlink(entry.path(), sub.join(entry.file_name()))
                    .unwrap_or_else(|e| panic!("{e}"));
            }
        }
        let target = sub.join(file);
        let _ = fs::remove_file(&target);
        fs::write(&target, bytes).unwrap_or_else(|e| panic!("{}: {e}", target.display()));
    }
}

/// libspdm's responder (`spdm_responder_emu`) with CERT, CHAL and signed MEASUREMENTS, as a
/// BMC's responder would be, listening on a loopback port.
#[derive(Debug)]
pub struct EmuResponder {
    process: Child,
    port: u16,
}

impl EmuResponder {
    /// Starts the responder in `folder` on `transport` with `curve`; its output goes to
    /// `log`.
    ///
    /// # Panics
    /// When it does not listen within a few seconds on any of a few ports.
    pub fn start(
        reference: &Reference,
        folder: &KeyFolder,
        transport: EmuTransport,
        curve: Curve,
        log: &Path,
    ) -> EmuResponder {
        let caps = format!("CERT,CHAL,MEAS_SIG{}", transport.extra_caps());
        Self::start_with(reference, folder, transport.emu_arg(), &caps, curve, log)
    }

    /// Starts the responder with the emulator transport `trans` (`TCP`, `NONE`, `MCTP`)
    /// and capability flags `caps`.
    ///
    /// # Panics
    /// As [`EmuResponder::start`].
    pub fn start_with(
        reference: &Reference,
        folder: &KeyFolder,
        trans: &str,
        caps: &str,
        curve: Curve,
        log: &Path,
    ) -> EmuResponder {
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new(reference.program("spdm_responder_emu"));
            cmd.current_dir(folder.path())
                .args(["--trans", trans, "--ip", "127.0.0.1", "--port"])
                .arg(port.to_string())
                .args(curve.emu_args())
                .args(["--cap", caps, "--basic_mut_auth", "NO"]);
            let mut process = Child::spawn("spdm_responder_emu", cmd, log);
            let start = std::time::Instant::now();
            while start.elapsed() < Duration::from_secs(10) && process.exited().is_none() {
                if super::process::listens(process.pid(), port) {
                    return EmuResponder { process, port };
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            last = process.output();
        }
        panic!("spdm_responder_emu did not listen: {last}");
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The process (CPU time, output, exit).
    pub fn process(&mut self) -> &mut Child {
        &mut self.process
    }
}

/// Which build of the reference requester runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequesterBuild {
    /// The Release build: exit status only.
    Release,
    /// The Debug build whose log states every check (trust anchor included).
    TrustChecking,
}

/// What the reference requester does at the end: leave the responder running for the next
/// connection, or stop it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// `--exe_mode CONTINUE`.
    Continue,
    /// `--exe_mode SHUTDOWN`.
    Shutdown,
}

/// How the reference requester runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequesterSetup {
    /// Which build.
    pub build: RequesterBuild,
    /// The emulator transport.
    pub transport: EmuTransport,
    /// The curve (and its hash) it offers.
    pub curve: Curve,
    /// What it does at the end.
    pub ending: Ending,
}

/// One run of the reference requester: VCA, GET_DIGESTS, GET_CERTIFICATE, CHALLENGE and
/// GET_MEASUREMENTS (all, signed), no sessions.
#[derive(Debug)]
pub struct RequesterRun {
    /// Its exit status (0: every request answered and every hard check passed).
    pub status: ExitStatus,
    /// Its output (the libspdm log with the trust-checking build).
    pub log: String,
}

impl RequesterRun {
    /// The command that runs the requester in `folder` against 127.0.0.1:`port`.
    pub fn command(
        reference: &Reference,
        folder: &KeyFolder,
        setup: RequesterSetup,
        port: u16,
    ) -> Command {
        let RequesterSetup {
            build,
            transport,
            curve,
            ending,
        } = setup;
        let program = match build {
            RequesterBuild::Release => reference.program("spdm_requester_emu"),
            RequesterBuild::TrustChecking => reference.trust_checking_requester(),
        };
        let mut cmd = Command::new(program);
        cmd.current_dir(folder.path())
            .args([
                "--trans",
                transport.emu_arg(),
                "--ip",
                "127.0.0.1",
                "--port",
            ])
            .arg(port.to_string())
            .args(curve.emu_args())
            .args(["--cap", &format!("CERT,CHAL{}", transport.extra_caps())])
            .args(["--meas_op", "ALL"])
            .args([
                "--exe_conn",
                "DIGEST,CERT,CHAL,MEAS",
                "--exe_session",
                "NO_END",
            ])
            .args([
                "--exe_mode",
                match ending {
                    Ending::Continue => "CONTINUE",
                    Ending::Shutdown => "SHUTDOWN",
                },
            ]);
        cmd
    }

    /// Runs the requester in `folder` against 127.0.0.1:`port`.
    ///
    /// # Panics
    /// When it cannot start or runs longer than [`RUN_LIMIT`].
    pub fn run(
        reference: &Reference,
        folder: &KeyFolder,
        setup: RequesterSetup,
        port: u16,
        log: &Path,
    ) -> RequesterRun {
        let cmd = Self::command(reference, folder, setup, port);
        let mut process = Child::spawn("spdm_requester_emu", cmd, log);
        let status = process.wait(RUN_LIMIT);
        RequesterRun {
            status,
            log: process.output(),
        }
    }

    /// libspdm's checks as its log states them (trust-checking build only).
    pub fn checks(&self) -> RequesterChecks {
        RequesterChecks::from_log(self.status.success(), &self.log)
    }
}

/// The reference requester's verdict on a responder, from its exit status and the checks
/// its debug log reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequesterChecks {
    /// It exited 0.
    pub exit_ok: bool,
    /// "verify_peer_cert_chain_buffer - PASS": the chain verified to the folder's trust
    /// anchor (`<curve>/ca.cert.der`).
    pub chain_trusted: bool,
    /// "verify_challenge_signature - PASS".
    pub challenge_signature: bool,
    /// "verify_measurement_signature - PASS".
    pub measurement_signature: bool,
    /// Every check the log reports as failed, verbatim.
    pub failures: Vec<String>,
}

impl RequesterChecks {
    /// The checks in `log` of a run that exited successfully or not.
    pub fn from_log(exit_ok: bool, log: &str) -> RequesterChecks {
        let passed = |what: &str| log.lines().any(|l| l.contains(&format!("{what} - PASS")));
        RequesterChecks {
            exit_ok,
            chain_trusted: passed("verify_peer_cert_chain_buffer"),
            challenge_signature: passed("verify_challenge_signature"),
            measurement_signature: passed("verify_measurement_signature"),
            failures: log
                .lines()
                .filter(|l| l.contains(" - FAIL"))
                .map(|l| l.trim().to_owned())
                .collect(),
        }
    }

    /// The responder is trusted: chain to the anchor, both signatures, nothing failed.
    pub fn trusted(&self) -> bool {
        self.exit_ok
            && self.chain_trusted
            && self.challenge_signature
            && self.measurement_signature
            && self.failures.is_empty()
    }
}

/// One assertion of the conformance suite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assertion {
    /// `group.case.assertion`, e.g. `2.2.3`.
    pub id: String,
    /// `PASS`, `FAIL` or `NOT_TESTED`.
    pub result: String,
    /// The rest of the line.
    pub message: String,
}

/// One test case's totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseTotals {
    /// `group.case`, e.g. `2.2`.
    pub id: String,
    /// The case's function name.
    pub name: String,
    /// Assertions passed.
    pub pass: u32,
    /// Assertions failed.
    pub fail: u32,
}

/// What `spdm_device_validator_sample` reported (`test.log`).
#[derive(Clone, Debug)]
pub struct ValidatorReport {
    /// Every assertion, in order.
    pub assertions: Vec<Assertion>,
    /// Per-case totals.
    pub cases: Vec<CaseTotals>,
    /// Suite totals (pass, fail).
    pub totals: (u32, u32),
    /// The whole log.
    pub log: String,
}

impl ValidatorReport {
    /// Runs the validator in `dir` (it writes `test.log` there) against 127.0.0.1:`port`
    /// with the emulator transport `trans`.
    ///
    /// # Panics
    /// When it cannot run, or its log has no suite totals.
    pub fn run(reference: &Reference, dir: &Path, trans: &str, port: u16) -> ValidatorReport {
        fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let mut cmd = Command::new(reference.program("spdm_device_validator_sample"));
        cmd.current_dir(dir)
            .args(["--trans", trans, "--ip", "127.0.0.1", "--port"])
            .arg(port.to_string());
        let mut process = Child::spawn(
            "spdm_device_validator_sample",
            cmd,
            &dir.join("validator.out"),
        );
        let status = process.wait(Duration::from_secs(300));
        let log = fs::read_to_string(dir.join("test.log")).unwrap_or_else(|e| {
            panic!(
                "the validator ({status}) wrote no test.log: {e}\n{}",
                process.output()
            )
        });
        ValidatorReport::parse(&log)
            .unwrap_or_else(|| panic!("no suite totals in the validator's log:\n{log}"))
    }

    /// Reads `test.log`.
    pub fn parse(log: &str) -> Option<ValidatorReport> {
        let mut assertions = Vec::new();
        let mut cases = Vec::new();
        let mut totals = None;
        for line in log.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("test assertion ") {
                // "2.2.3 - FAIL response version - 0x12"
                let (id, rest) = rest.split_once(" - ")?;
                let (result, message) = rest.split_once(' ').unwrap_or((rest, ""));
                assertions.push(Assertion {
                    id: id.to_owned(),
                    result: result.to_owned(),
                    message: message.to_owned(),
                });
            } else if let Some(rest) = line.strip_prefix("test case ")
                && let Some((head, counts)) = rest.split_once(") - pass: ")
            {
                // "2.1 (spdm_test_case_capabilities_success_10) - pass: 0, fail: 0"
                let (id, name) = head.split_once(" (")?;
                let (pass, fail) = counts.split_once(", fail: ")?;
                cases.push(CaseTotals {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    pass: pass.parse().ok()?,
                    fail: fail.parse().ok()?,
                });
            } else if let Some(rest) = line.strip_prefix("test suite ")
                && let Some((_, counts)) = rest.split_once(" - pass: ")
            {
                let (pass, fail) = counts.split_once(", fail: ")?;
                totals = Some((pass.parse().ok()?, fail.parse().ok()?));
            }
        }
        Some(ValidatorReport {
            assertions,
            cases,
            totals: totals?,
            log: log.to_owned(),
        })
    }

    /// The failed assertions (id, message), each id once.
    pub fn failures(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for a in self.assertions.iter().filter(|a| a.result == "FAIL") {
            if !out.iter().any(|(id, _)| *id == a.id) {
                out.push((a.id.clone(), a.message.clone()));
            }
        }
        out
    }

    /// The cases that ran no assertion (pass 0, fail 0), with the first NOT_TESTED reason.
    pub fn not_exercised(&self) -> Vec<(String, String, String)> {
        self.cases
            .iter()
            .filter(|c| c.pass == 0 && c.fail == 0)
            .map(|c| {
                let why = self
                    .assertions
                    .iter()
                    .find(|a| a.id.starts_with(&format!("{}.", c.id)) && a.result == "NOT_TESTED")
                    .map_or_else(|| "skipped".to_owned(), |a| a.message.clone());
                (c.id.clone(), c.name.clone(), why)
            })
            .collect()
    }

    /// Assertions passed in case `id`.
    pub fn passed_in(&self, id: &str) -> u32 {
        self.cases.iter().find(|c| c.id == id).map_or(0, |c| c.pass)
    }
}
