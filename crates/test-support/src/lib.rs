//! Test harness shared by the integration tests, the demo and the benchmarks: BMC
//! instances on this machine, each with its own private `dbus-daemon`, state directory and
//! port, driven with `busctl` exactly as an operator would.
//!
//! Every process it starts is killed by PID when its owner is dropped, also when a test
//! panics. Nothing here is a test double: real dbus-daemon, real daemon binary, real busctl.
//!
//! - [`Bmc`], built by [`BmcBuilder`]: one BMC (pairing manager and attestation daemon) on
//!   loopback or, through [`rig`], in its own network namespace;
//! - [`attestation`]: an attestation daemon alone ([`attestation::Node`]);
//! - [`dmtf`]: DMTF's SPDM reference (libspdm emulators, SPDM-Responder-Validator) as a peer;
//! - [`swtpm`], [`openssl`], [`factory`], [`netns`]: the real parts;
//! - [`flood`]: hostile neighbours (silent, churning and certificate-less TLS clients);
//! - [`fakeclock`]: the one way a test moves a BMC's wall clock (an `LD_PRELOAD` shim);
//! - [`pdi`]: reading phosphor-dbus-interfaces YAML and comparing it with introspection.

// A harness fails loudly: a broken fixture is a failed test, so it unwraps and panics.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod attestation;
pub mod dmtf;
pub mod factory;
pub mod fakeclock;
pub mod flood;
pub mod logging_double;
pub mod netns;
pub mod openssl;
pub mod pdi;
pub mod rig;
pub mod swtpm;

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Seed 000 / PDI names, as the operator types them.
pub const SEED_BUS: &str = "xyz.openbmc_project.BmcPairingManager";
/// The seed 000 object.
pub const SEED_PATH: &str = "/xyz/openbmc_project/BmcPairingManager";
/// The seed 000 interface.
pub const SEED_IFACE: &str = "xyz.openbmc_project.BmcPairingManager.BmcPairingManager";
/// The PDI Provisioning bus name.
pub const PDI_BUS: &str = "xyz.openbmc_project.Provisioning";
/// The PDI Provisioning object.
pub const PDI_PATH: &str = "/xyz/openbmc_project/Provisioning";
/// The PDI Provisioning interface.
pub const PDI_IFACE: &str = "xyz.openbmc_project.Provisioning.Provisioning";
/// The per-peer interface.
pub const PEER_IFACE: &str = "xyz.openbmc_project.BmcPairing.Peer";
/// `PeerConnected` when a session is up.
pub const CONNECTED: &str =
    "xyz.openbmc_project.Provisioning.Provisioning.PeerConnectionStatus.Connected";
/// `PeerConnected` when no session is up.
pub const NOT_CONNECTED: &str =
    "xyz.openbmc_project.Provisioning.Provisioning.PeerConnectionStatus.NotConnected";

/// A port that is free on every address now, below the kernel's ephemeral range, and not
/// handed out before by this test process. Below the ephemeral range because a daemon
/// restarted on its port (kill -9 tests) must find it free: an outgoing connection anywhere
/// in the test run may take a port from that range in the meantime.
pub fn free_port() -> u16 {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let ephemeral_low = fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let (low, high) = (10_000u16, ephemeral_low.max(10_001));
    let span = u64::from(high - low);
    // Test binaries run one after another but their tests in parallel: start each process
    // somewhere else in the range.
    let start = u64::from(std::process::id()).wrapping_mul(7919) % span;
    let mut taken = HANDED_OUT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for step in 0..span {
        let port = low + u16::try_from((start + step) % span).expect("in range");
        if taken.contains(&port) {
            continue;
        }
        // One at a time: a dual-stack [::] listener conflicts with a live 0.0.0.0 one.
        let v4_free = TcpListener::bind(("0.0.0.0", port)).is_ok();
        let v6_free = v4_free && TcpListener::bind(("::", port)).is_ok();
        if v6_free {
            taken.insert(port);
            return port;
        }
    }
    panic!("no free port in {low}..{high}");
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails the test run with a clear message if a system tool is missing; `make test`
/// installs them all. Nothing is skipped silently.
pub fn require_tool(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run `make test`, which installs what the tests need"
    );
}

/// A child process killed by PID on drop.
pub struct Proc {
    /// The process.
    pub child: Child,
    /// What it is, for messages.
    pub name: String,
}

impl Proc {
    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait up to `limit` for exit; returns the exit status code.
    pub fn terminate(&mut self, limit: Duration) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill9();
        None
    }

    /// True while it has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where and how one of our daemons is started by [`start_daemon`].
pub struct DaemonLaunch<'a> {
    /// The systemd unit the recipe runs it under ([`PAIRING_UNIT`] or
    /// [`ATTESTATION_UNIT`]): its `Environment=` settings are applied, as systemd would.
    pub unit: &'static str,
    /// What the process is called in failures and teardown, e.g. `bmc-attestation bmc-a`.
    pub label: String,
    /// Its `--config`.
    pub config: &'a Path,
    /// Its `--bus` (a private bus address).
    pub bus: &'a str,
    /// File its stderr (the journal) is appended to.
    pub log: &'a Path,
    /// Bus names it must own before it counts as started.
    pub names: &'a [&'a str],
}

/// The pairing manager's systemd unit, as the recipe installs it.
pub const PAIRING_UNIT: &str = "xyz.openbmc_project.BmcPairingManager.service";
/// The attestation daemon's systemd unit, as the recipe installs it.
pub const ATTESTATION_UNIT: &str = "xyz.openbmc_project.attestation.service";

/// The `Environment=` assignments of `unit` (from the recipe's files), so the daemons under
/// test run with what systemd gives them on a BMC (the allocator settings, for one).
/// Panics on a form this reader does not handle (quotes, several assignments on a line),
/// so a unit edit cannot silently drop a setting from the tests.
pub fn unit_environment(unit: &str) -> Vec<(String, String)> {
    let path = workspace_root()
        .join("recipes-phosphor/bmc-pairing/bmc-pairing-manager/systemd")
        .join(unit);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("Environment="))
        .map(|assignment| {
            assert!(
                !assignment.contains(['"', '\'', ' ']),
                "{}: Environment={assignment}: one unquoted assignment per line, please",
                path.display()
            );
            let (key, value) = assignment
                .split_once('=')
                .unwrap_or_else(|| panic!("{}: Environment={assignment}: no '='", path.display()));
            (key.to_owned(), value.to_owned())
        })
        .collect()
}

/// Starts `command` (one of our daemons) as `launch` says and waits until it owns every
/// name; panics with its log if it exits first or is not up within `limit`.
pub fn start_daemon(mut command: Command, launch: DaemonLaunch<'_>, limit: Duration) -> Proc {
    require_tool("busctl");
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(launch.log)
        .expect("log file");
    command.envs(unit_environment(launch.unit));
    command
        .arg("--config")
        .arg(launch.config)
        .arg("--bus")
        .arg(launch.bus);
    // The caller may have chosen a default log filter of its own.
    if !command.get_envs().any(|(k, _)| k == "RUST_LOG") {
        command.env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
        );
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("start {}: {e}", launch.label));
    let mut proc = Proc {
        child,
        name: launch.label,
    };
    wait_for(
        limit,
        &format!("{} to own {:?}", proc.name, launch.names),
        || {
            assert!(
                proc.running(),
                "{} exited during start-up:\n{}",
                proc.name,
                fs::read_to_string(launch.log).unwrap_or_default()
            );
            let out = Command::new("busctl")
                .arg(format!("--address={}", launch.bus))
                .args(["list", "--acquired", "--no-pager"])
                .output()
                .expect("run busctl");
            let text = String::from_utf8_lossy(&out.stdout);
            launch.names.iter().all(|n| text.contains(n)).then_some(())
        },
    );
    proc
}

/// A private `dbus-daemon` (system-bus type, permissive policy: the test is the only user).
pub struct Bus {
    /// Its address (`unix:path=...`).
    pub address: String,
    /// Kept so that dropping the bus kills its daemon.
    _daemon: Proc,
}

impl Bus {
    /// Starts a bus on this host, its socket and config in `dir`.
    pub fn start(dir: &Path) -> Bus {
        fs::create_dir_all(dir).expect("bus dir");
        Bus::spawn(Command::new("dbus-daemon"), dir)
    }

    /// Runs `command` (`dbus-daemon`, possibly wrapped, e.g. in `ip netns exec`) as a bus
    /// whose socket and config live in the existing directory `dir`.
    pub fn spawn(mut command: Command, dir: &Path) -> Bus {
        require_tool("dbus-daemon");
        let socket = dir.join("bus.sock");
        let conf = dir.join("bus.conf");
        fs::write(
            &conf,
            format!(
                r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/><allow own="*"/><allow send_destination="*"/><allow receive_sender="*"/>
  </policy>
</busconfig>
"#,
                socket.display()
            ),
        )
        .expect("bus conf");
        let child = command
            .arg(format!("--config-file={}", conf.display()))
            .arg("--nofork")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon");
        let proc = Proc {
            child,
            name: "dbus-daemon".into(),
        };
        let address = format!("unix:path={}", socket.display());
        wait_for(Duration::from_secs(10), "dbus-daemon socket", || {
            socket.exists().then_some(())
        });
        Bus {
            address,
            _daemon: proc,
        }
    }
}

/// The workspace's root directory (where `Cargo.toml` and `target/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Where to find a daemon binary: `$<env_var>`; else the profile directory of the running
/// test, bench or example (`target/<profile>/deps/<test>` and `target/<profile>/examples/<demo>`
/// sit next to the binaries cargo built with them); else `target/<this build's profile>`,
/// then the other profile.
fn find_binary(name: &str, env_var: &str) -> PathBuf {
    if let Ok(p) = std::env::var(env_var) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().ok();
    let beside = exe
        .as_deref()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .map(|profile_dir| profile_dir.join(name));
    if let Some(p) = beside.filter(|p| p.exists()) {
        return p;
    }
    let root = workspace_root().join("target");
    let own = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    for profile in [own, "release", "debug"] {
        let p = root.join(profile).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} binary not found; build it first");
}

/// The `bmc-pairing-manager` binary (`$BMC_PAIRING_MANAGER_BIN` overrides).
pub fn daemon_binary() -> PathBuf {
    find_binary("bmc-pairing-manager", "BMC_PAIRING_MANAGER_BIN")
}

/// A loopback address of its own for each BMC of this process (127.0.0.0/8 is loopback,
/// not a private range), so every BMC can use the same ports, as on real hardware.
pub fn loopback_ip() -> std::net::IpAddr {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let [_, _, p1, p0] = pid.to_be_bytes();
    // 127.<pid mixed>.<counter high>.<counter low, never 0 or 255>
    let second = 64 + (p0 ^ p1) % 160;
    std::net::IpAddr::from([
        127,
        second,
        u8::try_from(n / 250).unwrap_or(255),
        u8::try_from(n % 250 + 2).unwrap_or(254),
    ])
}

/// The SPDM port every test BMC of this process listens on (on its own address).
pub fn spdm_port() -> u16 {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    *PORT.get_or_init(free_port)
}

/// The `bmc-attestation` binary (`$BMC_ATTESTATION_BIN` overrides): a symbolic link named
/// `bmc-attestation` to the multi-call [`daemon_binary`], beside it, as the recipe installs
/// it. The link is (re)made here when it is missing or is anything else (e.g. a separate
/// binary left in `target/` by an older build), atomically, so parallel tests can race.
pub fn attestation_daemon_binary() -> PathBuf {
    if let Ok(p) = std::env::var("BMC_ATTESTATION_BIN") {
        return PathBuf::from(p);
    }
    let multi_call = daemon_binary();
    let Some(dir) = multi_call.parent() else {
        panic!("{} has no directory", multi_call.display());
    };
    let link = dir.join("bmc-attestation");
    let Some(target) = multi_call.file_name() else {
        panic!("{} has no file name", multi_call.display());
    };
    if std::fs::read_link(&link).is_ok_and(|t| t.as_os_str() == target) {
        return link;
    }
    static ATTEMPT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let attempt = ATTEMPT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temporary = dir.join(format!(".bmc-attestation.{}.{attempt}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    if let Err(e) = std::os::unix::fs::symlink(target, &temporary)
        .and_then(|()| std::fs::rename(&temporary, &link))
    {
        panic!(
            "cannot link {} to {}: {e}",
            link.display(),
            multi_call.display()
        );
    }
    link
}

/// One BMC: a bus, an address, a state directory, configs, and (when started) its daemons:
/// `bmc-attestation` (unless the config says `"attestation": "off"`) and
/// `bmc-pairing-manager`, sharing the identity and keys as on a real BMC.
pub struct Bmc {
    /// Its name (`bmc_name`, certificate CN).
    pub name: String,
    /// Its pairing-channel address.
    pub ip: std::net::IpAddr,
    /// Its pairing-channel port.
    pub port: u16,
    /// Its directory.
    pub dir: PathBuf,
    /// Its `bmc-pairing-manager` configuration file.
    pub config_path: PathBuf,
    /// Its private bus.
    pub bus: Bus,
    /// The running pairing manager.
    pub daemon: Option<Proc>,
    /// The running attestation daemon.
    pub attestation: Option<Proc>,
    /// The wall clock its daemons run on, when a test moves it.
    pub clock: Option<fakeclock::FakeClock>,
    config: serde_json::Value,
    attestation_extra: serde_json::Value,
}

impl Bmc {
    /// A BMC named `name` under `root` on loopback, with `extra` merged into its config
    /// (see [`BmcBuilder`]).
    pub fn new(root: &Path, name: &str, extra: serde_json::Value) -> Bmc {
        Bmc::builder(root, name).config(extra).build()
    }

    /// How to make a BMC named `name` under `root`.
    pub fn builder(root: &Path, name: &str) -> BmcBuilder {
        BmcBuilder {
            dir: root.join(name),
            name: name.to_owned(),
            ip: None,
            port: None,
            bus: None,
            config: serde_json::json!({}),
        }
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

    /// Its state directory (`state.json`, keys).
    pub fn state_dir(&self) -> PathBuf {
        self.dir.join("state")
    }

    /// Where its identity chain is.
    pub fn cert_dir(&self) -> PathBuf {
        self.dir.join("root/etc/bmc-pairing-manager/certs")
    }

    /// The pairing manager's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("daemon.log")
    }

    /// The pairing manager's log so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// `<ip>:<port>`, what the other BMC passes to ProvisionPeer.
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.ip, self.port)
    }

    /// Extra keys for this BMC's `bmc-attestation` config (measurement policy, reference
    /// values, identity from elsewhere, ...), applied at the next start.
    pub fn set_attestation_config(&mut self, key: &str, value: serde_json::Value) {
        if let Some(obj) = self.attestation_extra.as_object_mut() {
            obj.insert(key.to_owned(), value);
        }
    }

    /// The files its `bmc-attestation` measures (indices 1 and 2).
    pub fn measured_files(&self) -> Vec<PathBuf> {
        vec![
            self.dir.join("measured/firmware.bin"),
            self.dir.join("measured/os-release"),
        ]
    }

    /// The attestation daemon's log file.
    pub fn attestation_log_path(&self) -> PathBuf {
        self.dir.join("attestation.log")
    }

    /// The attestation daemon's log so far.
    pub fn attestation_log(&self) -> String {
        fs::read_to_string(self.attestation_log_path()).unwrap_or_default()
    }

    fn attestation_wanted(&self) -> bool {
        self.config.get("attestation").and_then(|v| v.as_str()) != Some("off")
    }

    /// Writes this BMC's `bmc-attestation` config (same identity and keys as the pairing
    /// manager; measurement policy off unless set) with `overrides` applied last; returns
    /// its path.
    pub fn write_attestation_config(&self, overrides: serde_json::Value) -> PathBuf {
        let measured = self.measured_files();
        fs::create_dir_all(self.dir.join("measured")).expect("measured dir");
        for (file, text) in measured.iter().zip([
            format!("firmware of {}", self.name),
            "ID=openbmc\n".to_owned(),
        ]) {
            if !file.exists() {
                fs::write(file, text).expect("measured file");
            }
        }
        let mut config = serde_json::json!({
            "port": spdm_port(),
            "interface_id": "lo",
            "bind_to_interface": false,
            "listen_address": self.ip.to_string(),
            "cert_root": self.config["cert_root"],
            "state_dir": self.config["state_dir"],
            "key_backend": self.config["key_backend"],
            "measured_files": measured,
            "measurement_policy": "off",
            "connect_timeout_ms": 2000,
            "io_timeout_ms": 3000,
            "attest_timeout_ms": 10000,
            "identity_check_interval_ms": 200,
            // Tests attest in bursts from one address; the budget has a test of its own.
            "unauthenticated_signs_per_second": 50,
            "unauthenticated_signs_per_source_per_second": 50,
        });
        if let Some(base) = config.as_object_mut() {
            for extra in [&self.attestation_extra, &overrides] {
                if let serde_json::Value::Object(extra) = extra {
                    base.extend(extra.clone());
                }
            }
        }
        let path = self.dir.join("bmc-attestation.conf");
        fs::write(&path, serde_json::to_vec_pretty(&config).expect("json"))
            .expect("attestation config");
        path
    }

    /// Runs `command` (the `bmc-attestation` binary, possibly wrapped, e.g. in `ip netns
    /// exec`) with this BMC's attestation config and bus, and waits until it owns its name.
    pub fn spawn_attestation(&mut self, command: Command, config: &Path) {
        let log = self.attestation_log_path();
        let launch = DaemonLaunch {
            unit: ATTESTATION_UNIT,
            label: format!("bmc-attestation {}", self.name),
            config,
            bus: &self.bus.address,
            log: &log,
            names: &["xyz.openbmc_project.attestation"],
        };
        self.attestation = Some(start_daemon(command, launch, Duration::from_secs(30)));
    }

    /// True when the config wants attestation and its daemon is not running.
    pub fn attestation_needed(&mut self) -> bool {
        self.attestation_wanted() && self.attestation.as_mut().is_none_or(|p| !p.running())
    }

    /// Starts this BMC's `bmc-attestation` on loopback.
    pub fn start_attestation(&mut self) {
        let config = self.write_attestation_config(serde_json::json!({}));
        let mut command = Command::new(attestation_daemon_binary());
        self.put_on_clock(&mut command);
        self.spawn_attestation(command, &config);
    }

    /// Starts the daemons (attestation first, unless off or already running) and waits until
    /// the pairing manager owns both bus names.
    pub fn start(&mut self) {
        if self.attestation_needed() {
            self.start_attestation();
        }
        let log = self.log_path();
        let launch = DaemonLaunch {
            unit: PAIRING_UNIT,
            label: format!("bmc-pairing-manager {}", self.name),
            config: &self.config_path,
            bus: &self.bus.address,
            log: &log,
            names: &[SEED_BUS, PDI_BUS],
        };
        let mut command = Command::new(daemon_binary());
        self.put_on_clock(&mut command);
        let daemon = start_daemon(command, launch, Duration::from_secs(20));
        self.daemon = Some(daemon);
    }

    /// Puts `command` on this BMC's moved clock, if it has one.
    fn put_on_clock(&self, command: &mut Command) {
        if let Some(clock) = &self.clock {
            command.envs(clock.env());
        }
    }

    /// Runs this BMC's daemons on a clock the test moves (from their next start).
    pub fn use_clock(&mut self) -> fakeclock::FakeClock {
        let clock = fakeclock::FakeClock::new(&self.dir.join("clock"));
        self.clock = Some(clock.clone());
        clock
    }

    /// Kills the pairing manager (SIGKILL).
    pub fn kill9(&mut self) {
        if let Some(mut d) = self.daemon.take() {
            d.kill9();
        }
    }

    /// `busctl --address=<this BMC's bus> <args>`.
    pub fn busctl(&self, args: &[&str]) -> Output {
        Command::new("busctl")
            .arg(format!("--address={}", self.bus.address))
            .args(args)
            .output()
            .expect("run busctl")
    }

    /// Runs a whole operator command line (`busctl call ...`, as in the seed READMEs)
    /// against this BMC's bus.
    pub fn busctl_line(&self, line: &str) -> Output {
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words.first(), Some(&"busctl"), "not a busctl line: {line}");
        self.busctl(&words[1..])
    }

    /// `busctl get-property` output, trimmed (`b true`, `s "..."`); panics on failure.
    pub fn get(&self, service: &str, path: &str, iface: &str, prop: &str) -> String {
        let out = self.busctl(&["get-property", service, path, iface, prop]);
        assert!(
            out.status.success(),
            "get-property {prop} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `Provisioned` on the PDI surface.
    pub fn provisioned(&self) -> bool {
        self.get(PDI_BUS, PDI_PATH, PDI_IFACE, "Provisioned") == "b true"
    }

    /// The PDI `PeerConnected` string without quotes.
    pub fn peer_connected(&self) -> String {
        let v = self.get(PDI_BUS, PDI_PATH, PDI_IFACE, "PeerConnected");
        v.trim_start_matches("s ").trim_matches('"').to_owned()
    }

    /// `ProvisionPeer s <arg>` on the PDI surface; Ok(()) or the busctl error text.
    pub fn provision(&self, arg: &str) -> Result<(), String> {
        let out = self.busctl(&[
            "call",
            PDI_BUS,
            PDI_PATH,
            PDI_IFACE,
            "ProvisionPeer",
            "s",
            arg,
        ]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    /// Waits until `PeerConnected` is `value`; panics after `limit`.
    pub fn wait_peer_connected(&self, value: &str, limit: Duration) {
        let name = self.name.clone();
        wait_for(limit, &format!("{name} PeerConnected = {value}"), || {
            (self.peer_connected() == value).then_some(())
        });
    }

    /// Paths of the per-peer objects.
    pub fn peer_paths(&self) -> Vec<String> {
        let out = self.busctl(&["tree", "--list", SEED_BUS]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|l| l.starts_with("/xyz/openbmc_project/BmcPairingManager/peers/"))
            .map(str::to_owned)
            .collect()
    }
}

/// The one way to make a [`Bmc`]. By default it is a host BMC: its own loopback address and
/// free port, its own private bus, file keys, no LLDP, fast timers. The rig gives it a
/// namespace's address, port and bus instead.
pub struct BmcBuilder {
    dir: PathBuf,
    name: String,
    ip: Option<std::net::IpAddr>,
    port: Option<u16>,
    bus: Option<Bus>,
    config: serde_json::Value,
}

impl BmcBuilder {
    /// Its pairing-channel address (default: a loopback address of its own, listened on).
    pub fn ip(mut self, ip: std::net::IpAddr) -> Self {
        self.ip = Some(ip);
        self
    }

    /// Its pairing-channel port (default: a free one).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// Its bus (default: a new private dbus-daemon in its directory).
    pub fn bus(mut self, bus: Bus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// Configuration keys merged over the defaults (`null` removes a default). Later calls
    /// win.
    pub fn config(mut self, extra: serde_json::Value) -> Self {
        if let (Some(keys), serde_json::Value::Object(extra)) = (self.config.as_object_mut(), extra)
        {
            // Nulls are kept here: they remove the default when the config is built.
            keys.extend(extra);
        }
        self
    }

    /// Writes its configuration; nothing runs yet ([`Bmc::start`]).
    pub fn build(self) -> Bmc {
        let dir = self.dir;
        fs::create_dir_all(&dir).expect("bmc dir");
        let bus = self.bus.unwrap_or_else(|| Bus::start(&dir.join("bus")));
        let ip = self.ip.unwrap_or_else(loopback_ip);
        let port = self.port.unwrap_or_else(free_port);
        let mut config = serde_json::json!({
            "port": port,
            "interface_id": "lo",
            "listen_address": ip.to_string(),
            "bmc_name": self.name,
            "state_dir": dir.join("state"),
            "cert_root": dir.join("root"),
            "key_backend": {"type": "file"},
            "attestation_port": spdm_port(),
            "attestation_timeout_ms": 15000,
            // No lldpd on loopback; the rig tests LLDP in network namespaces.
            "lldp_source": "none",
        });
        merge(&mut config, self.config);
        let bmc = Bmc {
            name: self.name,
            ip,
            port,
            config_path: dir.join("bmc-pairing-manager.conf"),
            dir,
            bus,
            daemon: None,
            attestation: None,
            clock: None,
            config,
            attestation_extra: serde_json::json!({}),
        };
        bmc.write_config();
        bmc
    }
}

/// Merges the keys of `extra` into `base`; a `null` value removes the key.
fn merge(base: &mut serde_json::Value, extra: serde_json::Value) {
    let (Some(base), serde_json::Value::Object(extra)) = (base.as_object_mut(), extra) else {
        return;
    };
    for (key, value) in extra {
        if value.is_null() {
            base.remove(&key);
        } else {
            base.insert(key, value);
        }
    }
}

/// Two started BMCs named `bmc-a` and `bmc-b` under `root` with default settings, each with
/// its identity (`ProvisionPeer("self")`), not paired yet.
pub fn two_provisioned(root: &Path) -> (Bmc, Bmc) {
    let mut a = Bmc::new(root, "bmc-a", serde_json::json!({}));
    let mut b = Bmc::new(root, "bmc-b", serde_json::json!({}));
    a.start();
    b.start();
    a.provision("self").expect("A self");
    b.provision("self").expect("B self");
    (a, b)
}

/// Waits up to `limit` until both show Connected; false if they did not.
pub fn both_connected_within(a: &Bmc, b: &Bmc, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if a.peer_connected() == CONNECTED && b.peer_connected() == CONNECTED {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Pairs two started BMCs in first-contact mode (self on both, then each names the other)
/// and waits until both show Connected.
pub fn pair(a: &Bmc, b: &Bmc) {
    a.provision("self").expect("A self");
    b.provision("self").expect("B self");
    a.provision(&b.endpoint()).expect("A names B");
    b.provision(&a.endpoint()).expect("B names A");
    a.wait_peer_connected(CONNECTED, Duration::from_secs(20));
    b.wait_peer_connected(CONNECTED, Duration::from_secs(20));
}
