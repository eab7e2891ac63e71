//! `bmc-attestation` instances for tests, demos and benches: each [`Node`] is one BMC's
//! attestation side with its own private `dbus-daemon`, state and certificate directories,
//! SPDM port, and (for [`KeyKind::Tpm`]) its own swtpm. Identities are created with the
//! library's `ChainFiles::create`, exactly as the pairing manager's `ProvisionPeer("self")`
//! does, so the daemon serves what the pairing manager would have made.
//!
//! Also [`bench_attestation`], the benchmark figure for the full attestation time.
//! Every process started here is killed by PID when its owner is dropped.
#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bmc_pairing_core::budget::{Rate, SignBudget, SignLimits};
use bmc_pairing_core::spdm::{MeasurementPolicy, TrustPolicy};
use bmc_pairing_manager::attestation::measurements::Measurements;
use bmc_pairing_manager::attestation::requester::{self, Settings};
use bmc_pairing_manager::attestation::responder::{self, IdentitySource, Responder};
use bmc_pairing_manager::config::KeyBackend;
use bmc_pairing_manager::identity::KeyStore;
use bmc_pairing_manager::identity::cert::{ChainFiles, LoadedIdentity};
use bmc_pairing_manager::identity::file::FileKeyStore;
use bmc_pairing_manager::identity::tpm::TpmKeyStore;
use bmc_pairing_manager::spdm::transport::{Framing, Timeouts};

use super::swtpm::Swtpm;
use super::{Bus, DaemonLaunch, Proc, free_port, start_daemon};

/// A signing budget no benchmark or test loop reaches.
pub fn unlimited() -> SignLimits {
    let rate = Rate {
        per_second: 1_000_000,
        burst: 1_000_000,
    };
    SignLimits {
        global: rate,
        per_source: rate,
        pinned: rate,
    }
}

/// The attestation service's bus name.
pub const ATT_BUS: &str = "xyz.openbmc_project.attestation";
/// Its manager object.
pub const ATT_ROOT: &str = "/xyz/openbmc_project/attestation";
/// Parent of its peer objects.
pub const ATT_PEERS: &str = "/xyz/openbmc_project/attestation/peers";
/// The requester interface.
pub const REQUESTER_IFACE: &str = "xyz.openbmc_project.BmcPairing.Attestation.Requester";
/// The responder interface.
pub const RESPONDER_IFACE: &str = "xyz.openbmc_project.BmcPairing.Attestation.Responder";
/// The per-peer interface.
pub const ATT_PEER_IFACE: &str = "xyz.openbmc_project.BmcPairing.Attestation.Peer";

pub use super::attestation_daemon_binary as attestation_binary;

/// Where a node's private keys live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    /// PKCS#8 files (`"key_backend": {"type": "file"}`).
    File,
    /// Its own swtpm (`"key_backend": {"type": "tpm", "tcti": "swtpm:..."}`).
    Tpm,
}

/// One BMC's attestation side.
pub struct Node {
    /// Its name (certificate CN).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// Its private bus.
    pub bus: Bus,
    /// SPDM responder port.
    pub port: u16,
    /// Its `bmc-attestation` configuration file.
    pub config_path: PathBuf,
    /// Its swtpm, with [`KeyKind::Tpm`].
    pub tpm: Option<Swtpm>,
    /// The running daemon.
    pub daemon: Option<Proc>,
    /// The files it measures (indices 1, 2).
    pub measured: Vec<PathBuf>,
    config: serde_json::Value,
}

impl Node {
    /// A node named `name` under `root`; `extra` keys are merged into its config. Loopback,
    /// short deadlines, identity re-checked every 200 ms.
    pub fn new(root: &Path, name: &str, keys: KeyKind, extra: serde_json::Value) -> Node {
        let dir = root.join(name);
        fs::create_dir_all(dir.join("measured")).expect("node dir");
        let bus = Bus::start(&dir.join("bus"));
        let port = free_port();
        let measured = vec![
            dir.join("measured/bmc-image.bin"),
            dir.join("measured/os-release"),
        ];
        fs::write(&measured[0], format!("firmware of {name}")).expect("measured file");
        fs::write(&measured[1], "ID=openbmc\nVERSION_ID=2.18\n").expect("measured file");
        let tpm = (keys == KeyKind::Tpm).then(|| Swtpm::start(&dir.join("swtpm")));
        let key_backend = match &tpm {
            Some(t) => serde_json::json!({"type": "tpm", "tcti": t.tcti()}),
            None => serde_json::json!({"type": "file"}),
        };
        let mut config = serde_json::json!({
            "port": port,
            "interface_id": "lo",
            "bind_to_interface": false,
            "cert_root": dir.join("root"),
            "state_dir": dir.join("state"),
            "key_backend": key_backend,
            "measured_files": measured,
            "trust_anchors_dir": dir.join("anchors"),
            "connect_timeout_ms": 2000,
            "io_timeout_ms": 3000,
            "attest_timeout_ms": 10000,
            "identity_check_interval_ms": 200,
            // Tests attest in bursts from one address; the budget has a test of its own.
            "unauthenticated_signs_per_second": 50,
            "unauthenticated_signs_per_source_per_second": 50,
        });
        if let (Some(base), serde_json::Value::Object(extra)) = (config.as_object_mut(), extra) {
            base.extend(extra);
        }
        let node = Node {
            name: name.to_owned(),
            config_path: dir.join("bmc-attestation.conf"),
            dir,
            bus,
            port,
            tpm,
            daemon: None,
            measured,
            config,
        };
        node.write_config();
        node
    }

    /// Sets one configuration key (applied at the next start).
    pub fn set_config(&mut self, key: &str, value: serde_json::Value) {
        if let Some(obj) = self.config.as_object_mut() {
            obj.insert(key.to_owned(), value);
        }
        self.write_config();
    }

    fn write_config(&self) {
        fs::write(
            &self.config_path,
            serde_json::to_vec_pretty(&self.config).expect("json"),
        )
        .expect("write config");
    }

    /// Where its identity chain is.
    pub fn cert_dir(&self) -> PathBuf {
        self.dir.join("root/etc/bmc-pairing-manager/certs")
    }

    /// Where its keys are.
    pub fn key_dir(&self) -> PathBuf {
        self.dir.join("state/keys")
    }

    /// Its trust-anchor directory.
    pub fn anchors_dir(&self) -> PathBuf {
        self.dir.join("anchors")
    }

    /// The key backend of its config.
    pub fn key_backend(&self) -> KeyBackend {
        match &self.tpm {
            Some(t) => KeyBackend::Tpm { tcti: t.tcti() },
            None => KeyBackend::File,
        }
    }

    /// Opens its key store (a TPM store shares the swtpm with a running daemon).
    pub fn key_store(&self) -> Arc<dyn KeyStore> {
        match &self.tpm {
            Some(t) => Arc::new(TpmKeyStore::open(&t.tcti(), self.key_dir()).expect("tpm store")),
            None => Arc::new(FileKeyStore::new(self.key_dir())),
        }
    }

    /// Creates its identity as `ProvisionPeer("self")` does.
    pub fn provision(&self) -> LoadedIdentity {
        let store = self.key_store();
        ChainFiles::new(self.cert_dir())
            .create(store.as_ref(), &self.name, SystemTime::now())
            .expect("create identity")
    }

    /// Its daemon's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    /// Its daemon's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Starts `bmc-attestation` and waits until it owns its bus name.
    pub fn start(&mut self) {
        let log = self.log_path();
        let launch = DaemonLaunch {
            unit: crate::ATTESTATION_UNIT,
            label: format!("bmc-attestation {}", self.name),
            config: &self.config_path,
            bus: &self.bus.address,
            log: &log,
            names: &[ATT_BUS],
        };
        let daemon = start_daemon(
            Command::new(attestation_binary()),
            launch,
            Duration::from_secs(20),
        );
        self.daemon = Some(daemon);
    }

    /// `busctl --address=<its bus> <args>`.
    pub fn busctl(&self, args: &[&str]) -> Output {
        Command::new("busctl")
            .arg(format!("--address={}", self.bus.address))
            .args(args)
            .output()
            .expect("run busctl")
    }

    /// `busctl --json=short <args>`, parsed; Err(stderr) when busctl fails.
    pub fn busctl_json(&self, args: &[&str]) -> Result<serde_json::Value, String> {
        let mut all = vec!["--json=short"];
        all.extend_from_slice(args);
        let out = self.busctl(&all);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
        }
        serde_json::from_slice(&out.stdout).map_err(|e| format!("busctl json: {e}"))
    }

    /// A property of one of its objects, as JSON `data`.
    pub fn property(&self, path: &str, iface: &str, name: &str) -> serde_json::Value {
        let v = self
            .busctl_json(&["get-property", ATT_BUS, path, iface, name])
            .unwrap_or_else(|e| panic!("get-property {path} {name}: {e}"));
        v["data"].clone()
    }

    /// Object paths of the peers it holds.
    pub fn peer_paths(&self) -> Vec<String> {
        let out = self.busctl(&["tree", "--list", ATT_BUS]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with(&format!("{ATT_PEERS}/")))
            .map(str::to_owned)
            .collect()
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// Full attestation time (TCP connect, VCA, DIGESTS, CERTIFICATE, CHALLENGE, signed
/// MEASUREMENTS, every signature verified) on loopback, requester and responder in this
/// process through the daemon's own code paths: the responder reads its identity from chain
/// files and signs through the key store, and with swtpm also reads PCRs 0-7 for every
/// session. Returns `(label, median)` for the file backend and for swtpm, and prints them.
///
/// # Panics
/// When swtpm is missing or an attestation is not trusted.
pub fn bench_attestation(samples: usize) -> Vec<(String, Duration)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = tempfile::tempdir().expect("tempdir");
    let samples = samples.max(1);
    let mut figures = Vec::new();
    for (label, kind) in [
        ("spdm attestation, file key (median)", KeyKind::File),
        ("spdm attestation, swtpm key + PCRs (median)", KeyKind::Tpm),
    ] {
        let dir = tmp.path().join(format!("{kind:?}"));
        fs::create_dir_all(&dir).expect("dir");
        let tpm = (kind == KeyKind::Tpm).then(|| Swtpm::start(&dir.join("swtpm")));
        let (backend, store): (KeyBackend, Arc<dyn KeyStore>) = match &tpm {
            Some(t) => (
                KeyBackend::Tpm { tcti: t.tcti() },
                Arc::new(TpmKeyStore::open(&t.tcti(), dir.join("keys")).expect("tpm store")),
            ),
            None => (
                KeyBackend::File,
                Arc::new(FileKeyStore::new(dir.join("keys"))),
            ),
        };
        ChainFiles::new(dir.join("certs"))
            .create(store.as_ref(), "bench", SystemTime::now())
            .expect("identity");
        drop(store);
        let measured = dir.join("image.bin");
        fs::write(&measured, vec![0x5a; 1 << 20]).expect("measured file");
        let (status, _rx) = tokio::sync::watch::channel(None);
        let responder = Arc::new(Responder::new(
            IdentitySource::daemon(backend, dir.join("keys"), dir.join("certs"), None),
            Measurements::new(&[measured], None, &(0..8).collect::<Vec<u8>>()),
            status,
        ));
        // One warm-up run (identity load, file digest cache), not counted.
        let mut durations = rt.block_on(time_attestations(responder, samples + 1));
        durations.remove(0);
        let m = median(durations);
        figures.push((label.to_owned(), m));
        drop(tpm);
    }
    figures
}

/// Serves `responder` on loopback and attests it `samples` times in a row with the daemon's
/// requester; returns each attestation's duration.
///
/// # Panics
/// When an attestation does not run or is not trusted.
async fn time_attestations(responder: Arc<Responder>, samples: usize) -> Vec<Duration> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("addr");
    let cancel = tokio_util::sync::CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let timeouts = Timeouts {
        io: Duration::from_secs(10),
        idle: Duration::from_secs(10),
    };
    tracker.spawn(responder::serve(
        listener,
        responder,
        bench_responder_settings(timeouts),
        tracker.clone(),
        cancel.clone(),
    ));
    let settings = Settings {
        framing: Framing::Dsp0287,
        timeouts,
        connect_timeout: Duration::from_secs(5),
        attest_timeout: Duration::from_secs(30),
        device: None,
        measurements: MeasurementPolicy::default(),
    };
    let mut durations = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = std::time::Instant::now();
        let report = requester::attest(
            addr,
            "first-contact".into(),
            TrustPolicy::FirstContact,
            &settings,
            SystemTime::now().into(),
        )
        .await
        .expect("attestation ran");
        durations.push(start.elapsed());
        assert!(report.trusted, "attestation not trusted: {report:?}");
    }
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    durations
}

/// The responder settings of the benchmarks: they measure signing, so the budget never
/// refuses.
fn bench_responder_settings(timeouts: Timeouts) -> responder::Settings {
    responder::Settings {
        framing: Framing::Dsp0287,
        timeouts,
        first_request_timeout: Duration::from_secs(2),
        session_timeout: Duration::from_secs(30),
        max_sessions: 4,
        max_sessions_per_source: 4,
        budget: Arc::new(std::sync::Mutex::new(SignBudget::new(
            unlimited(),
            std::time::Instant::now(),
        ))),
    }
}

/// Attests `samples` times, over loopback, an SPDM responder serving `chain` (root first)
/// with its identity key in `store` (which the caller may wrap to count signatures); one
/// measured file, no PCRs. Returns each attestation's duration.
///
/// # Panics
/// When an attestation does not run or is not trusted.
pub fn attest_responder(
    chain: Vec<Vec<u8>>,
    store: Arc<dyn KeyStore>,
    samples: usize,
) -> Vec<Duration> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let tmp = tempfile::tempdir().expect("tempdir");
    let measured = tmp.path().join("image.bin");
    fs::write(&measured, vec![0x5a; 1 << 20]).expect("measured file");
    let (status, _rx) = tokio::sync::watch::channel(None);
    let responder = Arc::new(Responder::new(
        IdentitySource::fixed(chain, store).expect("identity key"),
        Measurements::new(&[measured], None, &[]),
        status,
    ));
    rt.block_on(time_attestations(responder, samples))
}
