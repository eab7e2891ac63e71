//! The rig: N BMCs on one machine, shared by the integration tests, `examples/demo.rs` and
//! the benchmarks. Nothing in it is a test double except the networkd stand-in, which plays
//! phosphor-networkd's LLDP D-Bus service (it cannot run here) fed by a real lldpd.
//!
//! Each BMC is its own network namespace holding:
//! - `eth0`, a veth with an IPv6 ULA (`fd00:b3c::a`, `::b`, ... `/64`, `nodad`) and its
//!   link-local address; never a private IPv4 range;
//! - a private `dbus-daemon` (its socket is a file, so busctl reaches it from outside);
//! - `swtpm` on the namespace's own loopback (`swtpm:host=127.0.0.1,port=2321`);
//! - a real `lldpd` on `eth0` with its own control socket, sending every second, advertising
//!   the BMC's name as SystemName and its ULA as management address;
//! - with [`Source::Networkd`], the networkd LLDP stand-in on that bus;
//! - the daemon, with `interface_id = eth0`, TPM keys, and LLDP from lldpd or the stand-in.
//!
//! Topologies: [`Topology::Pair`] joins two BMCs with one veth pair; [`Topology::Switch`]
//! joins any number through a Linux bridge in a namespace of its own, with
//! `group_fwd_mask=0x4000` so it forwards LLDP (a bridge drops it by default).
//!
//! Taking a link down ([`Rig::set_link`]) keeps the IPv6 addresses (`keep_addr_on_down`), as
//! a pulled cable would; LLDP then reports the neighbour lost, and found again when it is up.
//!
//! Helpers: [`pair_by_lldp`] (the operator's steps), [`Watcher`] (every `PropertiesChanged`
//! on a BMC's bus, timestamped; the demo prints them), [`LldpEvents`] (lldpd's own view, for
//! timing), and [`bench_rig`] (the rig's figures for `benches/`).
//!
//! Teardown is by PID and by namespace name on drop, also when a test panics: the daemons,
//! stand-ins, lldpd, swtpm and buses are killed, then anything left inside a namespace, then
//! the namespaces are deleted. Processes are started with `ip netns exec`, which execs in
//! place, so the PID held is the program's own (`tests/rig_teardown.rs` checks it). Set
//! `BPM_RIG_LOGS=1` to print the daemons' logs when a rig is dropped (always on panic).
#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::net::{IpAddr, Ipv6Addr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::netns::{Netns, ip};
use super::{Bmc, Bus, CONNECTED, NOT_CONNECTED, PDI_BUS, PDI_IFACE, PEER_IFACE, Proc};
use super::{DaemonLaunch, SEED_BUS, require_tool, wait_for};

/// Pairing port of every rig BMC (each namespace has its own port space; LLDP carries no
/// port, so peers are dialled on ours).
pub const PORT: u16 = 8090;
/// SPDM port of every rig BMC's `bmc-attestation` (DSP0287 default).
pub const SPDM_PORT: u16 = 4194;
/// The inter-BMC interface in every BMC namespace.
pub const IFACE: &str = "eth0";
/// swtpm's data port on each namespace's loopback (control port is the next one).
pub const TPM_PORT: u16 = 2321;
/// `busctl` answers: the enum strings.
pub const IN_PROGRESS: &str =
    "xyz.openbmc_project.Provisioning.Provisioning.PeerConnectionStatus.InProgress";
/// The stand-in's well-known name.
pub const LLDP_SERVICE: &str = "xyz.openbmc_project.LLDP";

/// Where the daemons read LLDP from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// lldpd directly (`lldp_source: lldpd`).
    Lldpd,
    /// The networkd stand-in on D-Bus (`lldp_source: networkd`).
    Networkd,
}

impl Source {
    fn config(self) -> &'static str {
        match self {
            Source::Lldpd => "lldpd",
            Source::Networkd => "networkd",
        }
    }
}

/// How the BMCs are wired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topology {
    /// Exactly two BMCs, one veth pair between their `eth0`s.
    Pair,
    /// Every BMC's `eth0` on one bridge that forwards LLDP.
    Switch,
}

/// How to build a rig.
#[derive(Clone, Debug)]
pub struct Options {
    /// LLDP source of the daemons.
    pub source: Source,
    /// Wiring.
    pub topology: Topology,
    /// Start the daemons (otherwise call [`RigBmc::start_daemon`]).
    pub start_daemons: bool,
    /// Daemon configuration keys merged over the rig's defaults.
    pub config: serde_json::Value,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            source: Source::Lldpd,
            topology: Topology::Pair,
            start_daemons: true,
            config: serde_json::json!({}),
        }
    }
}

/// One BMC of the rig. Fields drop in order: daemon and bus (in `bmc`), stand-in, lldpd,
/// swtpm, then the namespace.
pub struct RigBmc {
    /// Bus, config, daemon, and the busctl helpers of the harness.
    pub bmc: Bmc,
    /// The networkd stand-in, with [`Source::Networkd`].
    pub standin: Option<Proc>,
    /// Its lldpd.
    pub lldpd: Option<Proc>,
    /// Its swtpm.
    pub tpm: Option<Proc>,
    /// Its network namespace.
    pub ns: Netns,
    /// Its ULA on `eth0`.
    pub address: Ipv6Addr,
    /// Its lldpd's control socket.
    pub lldpd_socket: PathBuf,
    /// Where its daemon reads LLDP from.
    pub source: Source,
}

/// The whole rig.
pub struct Rig {
    /// The BMCs, in the order they were named.
    pub bmcs: Vec<RigBmc>,
    /// The bridge's namespace in [`Topology::Switch`].
    pub switch: Option<Netns>,
    /// Where every BMC keeps its files (removed last).
    pub root: tempfile::TempDir,
    /// How it was built.
    pub options: Options,
    started: Instant,
}

fn open_dir(p: &Path) {
    fs::create_dir_all(p).expect("rig dir");
    // lldpd and lldpcli drop to the _lldpd user: they must reach the control socket.
    fs::set_permissions(p, fs::Permissions::from_mode(0o755)).expect("chmod rig dir");
}

/// `fd00:b3c::a` for the first BMC, `::b` for the second, ...
pub fn ula(index: usize) -> Ipv6Addr {
    let last = u16::try_from(0xa + index).expect("few BMCs");
    Ipv6Addr::new(0xfd00, 0xb3c, 0, 0, 0, 0, 0, last)
}

impl Rig {
    /// Builds and starts one BMC per name (the name is also its `bmc_name` and LLDP
    /// SystemName), wired as `options.topology` says.
    pub fn start(names: &[&str], options: Options) -> Rig {
        for tool in ["ip", "lldpd", "lldpcli", "swtpm", "dbus-daemon", "busctl"] {
            require_tool(tool);
        }
        if options.topology == Topology::Pair {
            assert_eq!(names.len(), 2, "a pair is two BMCs");
        }
        let root = tempfile::Builder::new()
            .prefix("bpm-rig-")
            .tempdir()
            .expect("rig root");
        open_dir(root.path());
        let namespaces: Vec<Netns> = names.iter().map(|n| Netns::new(n)).collect();
        let switch = match options.topology {
            Topology::Pair => {
                if let [a, b] = namespaces.as_slice() {
                    ip(&[
                        "link", "add", IFACE, "netns", &a.name, "type", "veth", "peer", "name",
                        IFACE, "netns", &b.name,
                    ]);
                }
                None
            }
            Topology::Switch => {
                let sw = Netns::new("switch");
                sw.ip(&[
                    "link",
                    "add",
                    "br0",
                    "type",
                    "bridge",
                    "group_fwd_mask",
                    "0x4000",
                    "mcast_snooping",
                    "0",
                ]);
                sw.ip(&["link", "set", "br0", "up"]);
                for (i, ns) in namespaces.iter().enumerate() {
                    let port = format!("sw{i}");
                    ip(&[
                        "link", "add", IFACE, "netns", &ns.name, "type", "veth", "peer", "name",
                        &port, "netns", &sw.name,
                    ]);
                    sw.ip(&["link", "set", &port, "master", "br0"]);
                    sw.ip(&["link", "set", &port, "up"]);
                }
                Some(sw)
            }
        };
        let mut rig = Rig {
            bmcs: Vec::new(),
            switch,
            root,
            options: options.clone(),
            started: Instant::now(),
        };
        for (i, (name, ns)) in names.iter().zip(namespaces).enumerate() {
            let address = ula(i);
            ns.ip(&[
                "addr",
                "add",
                &format!("{address}/64"),
                "dev",
                IFACE,
                "nodad",
            ]);
            ns.ip(&["link", "set", IFACE, "up"]);
            let bmc = RigBmc::build(rig.root.path(), name, ns, address, &options);
            rig.bmcs.push(bmc);
        }
        if options.start_daemons {
            for bmc in &mut rig.bmcs {
                bmc.start_daemon();
            }
        }
        rig
    }

    /// The BMC called `name`.
    pub fn bmc(&self, name: &str) -> &RigBmc {
        self.bmcs
            .iter()
            .find(|b| b.bmc.name == name)
            .unwrap_or_else(|| panic!("no BMC {name} in the rig"))
    }

    /// The BMC called `name`, mutably.
    pub fn bmc_mut(&mut self, name: &str) -> &mut RigBmc {
        self.bmcs
            .iter_mut()
            .find(|b| b.bmc.name == name)
            .unwrap_or_else(|| panic!("no BMC {name} in the rig"))
    }

    /// The command that takes `name`'s link down or up: its own `eth0` in a pair, its
    /// switch port on a switch (either way its peers lose carrier).
    pub fn link_command(&self, name: &str, up: bool) -> Vec<String> {
        let state = if up { "up" } else { "down" };
        match &self.switch {
            None => {
                let b = self.bmc(name);
                ["ip", "-n", &b.ns.name, "link", "set", IFACE, state]
                    .map(str::to_owned)
                    .to_vec()
            }
            Some(sw) => {
                let i = self
                    .bmcs
                    .iter()
                    .position(|b| b.bmc.name == name)
                    .expect("BMC index");
                let port = format!("sw{i}");
                ["ip", "-n", &sw.name, "link", "set", &port, state]
                    .map(str::to_owned)
                    .to_vec()
            }
        }
    }

    /// Takes `name`'s link down (`up = false`) or up.
    pub fn set_link(&self, name: &str, up: bool) {
        let cmd = self.link_command(name, up);
        let args: Vec<&str> = cmd.iter().skip(1).map(String::as_str).collect();
        ip(&args);
    }

    /// Time since the rig was built.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The tail of every daemon's log.
    pub fn logs(&self) -> String {
        let mut out = String::new();
        for b in &self.bmcs {
            let log = b.bmc.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            out.push_str(&format!("===== {} daemon log (tail) =====\n", b.bmc.name));
            for line in tail.iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("BPM_RIG_LOGS").is_some() {
            eprintln!("{}", self.logs());
        }
    }
}

impl RigBmc {
    fn build(root: &Path, name: &str, ns: Netns, address: Ipv6Addr, options: &Options) -> RigBmc {
        let dir = root.join(name);
        open_dir(&dir);
        let bus = start_bus(&ns, &dir.join("bus"));
        let tpm = start_swtpm(&ns, &dir.join("tpm"));
        let lldpd_socket = dir.join("lldpd.socket");
        let lldpd = start_lldpd(&ns, &dir, name, address, &lldpd_socket);
        let standin = (options.source == Source::Networkd)
            .then(|| start_standin(&ns, &dir, &bus.address, &lldpd_socket));
        let bmc = Bmc::builder(root, name)
            .ip(IpAddr::V6(address))
            .port(PORT)
            .bus(bus)
            .config(serde_json::json!({
                "interface_id": IFACE,
                // Every address of its namespace, bound to the inter-BMC link.
                "listen_address": null,
                "key_backend": {"type": "tpm", "tcti": format!("swtpm:host=127.0.0.1,port={TPM_PORT}")},
                "lldp_source": options.source.config(),
                "lldpd_socket": lldpd_socket,
                "heartbeat_interval_ms": 300,
                "heartbeat_timeout_ms": 1000,
                "handshake_timeout_ms": 3000,
                "backoff_initial_ms": 100,
                "backoff_max_ms": 2000,
                "attestation_port": SPDM_PORT,
            }))
            .config(options.config.clone())
            .build();
        RigBmc {
            bmc,
            standin,
            lldpd: Some(lldpd),
            tpm: Some(tpm),
            ns,
            address,
            lldpd_socket,
            source: options.source,
        }
    }

    /// Kills lldpd (SIGKILL, its privilege-separated child too) and starts a fresh one with
    /// the same configuration.
    pub fn restart_lldpd(&mut self) {
        if let Some(mut old) = self.lldpd.take() {
            old.kill9();
        }
        // The unprivileged child outlives a killed monitor briefly and still answers on the
        // control socket; lldpd refuses to start while it does.
        let ns = &self.ns;
        wait_for(Duration::from_secs(10), "the old lldpd to go", || {
            let left: Vec<String> = ns
                .pids()
                .into_iter()
                .filter(|p| read(Path::new(&format!("/proc/{p}/comm"))).trim() == "lldpd")
                .map(|p| p.to_string())
                .collect();
            if left.is_empty() {
                return Some(());
            }
            let _ = Command::new("kill").arg("-KILL").args(&left).status();
            None
        });

        self.lldpd = Some(start_lldpd(
            &self.ns,
            &self.bmc.dir,
            &self.bmc.name,
            self.address,
            &self.lldpd_socket,
        ));
    }

    /// Kills the networkd stand-in (SIGKILL) and starts a fresh one.
    pub fn restart_standin(&mut self) {
        if let Some(mut old) = self.standin.take() {
            old.kill9();
        }
        self.standin = Some(start_standin(
            &self.ns,
            &self.bmc.dir,
            &self.bmc.bus.address,
            &self.lldpd_socket,
        ));
    }

    /// `lldpcli -u <its socket> <args>` (e.g. `configure system hostname x`).
    pub fn lldpcli(&self, args: &[&str]) {
        let out = Command::new("lldpcli")
            .arg("-u")
            .arg(&self.lldpd_socket)
            .args(args)
            .output()
            .expect("run lldpcli");
        assert!(
            out.status.success(),
            "lldpcli {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Its name (`bmc_name`, LLDP SystemName).
    pub fn name(&self) -> &str {
        &self.bmc.name
    }

    /// `[fd00:b3c::a]:8090`.
    pub fn endpoint(&self) -> String {
        format!("[{}]:{PORT}", self.address)
    }

    /// Starts `bmc-attestation` inside the namespace (SPDM on the link, port 4194).
    pub fn start_attestation(&mut self) {
        let config = self.bmc.write_attestation_config(serde_json::json!({
            "port": SPDM_PORT,
            "interface_id": IFACE,
            "bind_to_interface": true,
            "listen_address": null,
        }));
        let command = self.ns.command(attestation_binary());
        self.bmc.spawn_attestation(command, &config);
    }

    /// Starts the daemons inside the namespace (attestation first, unless off or running)
    /// and waits until the pairing manager owns both bus names.
    pub fn start_daemon(&mut self) {
        if self.bmc.attestation_needed() {
            self.start_attestation();
        }
        let mut command = self.ns.command(daemon_binary());
        command.env(
            "RUST_LOG",
            std::env::var("RUST_LOG")
                .unwrap_or_else(|_| "info,bmc_pairing_manager::pairing::actor=debug".into()),
        );
        let log = self.bmc.log_path();
        let launch = DaemonLaunch {
            unit: super::PAIRING_UNIT,
            label: format!("bmc-pairing-manager {}", self.bmc.name),
            config: &self.bmc.config_path,
            bus: &self.bmc.bus.address,
            log: &log,
            names: &[SEED_BUS, PDI_BUS],
        };
        let daemon = super::start_daemon(command, launch, Duration::from_secs(30));
        self.bmc.daemon = Some(daemon);
    }

    /// SIGKILL of the daemon (nothing else).
    pub fn kill9(&mut self) {
        self.bmc.kill9();
    }

    /// The daemon's PID, if running.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.bmc.daemon.as_ref().map(Proc::pid)
    }

    /// Neighbours its lldpd knows now: `(SystemName, addresses)`.
    pub fn lldp_neighbours(&self) -> Vec<(String, Vec<IpAddr>)> {
        use bmc_pairing_manager::discovery::lldpd::{Change, parse};
        let out = Command::new("lldpcli")
            .arg("-u")
            .arg(&self.lldpd_socket)
            .args(["-f", "json0", "show", "neighbors", "details"])
            .output()
            .expect("run lldpcli");
        match parse(&out.stdout) {
            Ok(Change::Snapshot(list)) => list
                .into_iter()
                .map(|n| (n.system_name.unwrap_or_default(), n.addresses))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Waits until its lldpd has a neighbour called `name`; returns its addresses.
    pub fn wait_lldp_neighbour(&self, name: &str, limit: Duration) -> Vec<IpAddr> {
        wait_for(
            limit,
            &format!("{} to see {name} by LLDP", self.bmc.name),
            || {
                self.lldp_neighbours()
                    .into_iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, a)| a)
            },
        )
    }

    /// `busctl get-property` of a per-peer property on the object whose `Name` is `peer`.
    pub fn peer_prop(&self, peer: &str, prop: &str) -> Option<String> {
        self.bmc.peer_paths().into_iter().find_map(|path| {
            let name = self.bmc.get(SEED_BUS, &path, PEER_IFACE, "Name");
            (name == format!("s \"{peer}\""))
                .then(|| self.bmc.get(SEED_BUS, &path, PEER_IFACE, prop))
        })
    }

    /// The `State` of the per-peer object named `peer`: the last segment of the enum string
    /// (`Connected`, `NotConnected`, ...).
    pub fn peer_state(&self, peer: &str) -> Option<String> {
        self.peer_prop(peer, "State").map(|v| {
            let v = v.trim_start_matches("s ").trim_matches('"');
            v.rsplit('.').next().unwrap_or(v).to_owned()
        })
    }

    /// Waits until the per-peer object named `peer` has `State == value` (last segment).
    pub fn wait_peer_state(&self, peer: &str, value: &str, limit: Duration) {
        let me = self.bmc.name.clone();
        wait_for(limit, &format!("{me}: peer {peer} State = {value}"), || {
            (self.peer_state(peer).as_deref() == Some(value)).then_some(())
        });
    }
}

pub use super::{attestation_daemon_binary as attestation_binary, daemon_binary};

/// A private system-type bus whose dbus-daemon runs inside `ns`.
fn start_bus(ns: &Netns, dir: &Path) -> Bus {
    open_dir(dir);
    Bus::spawn(ns.command("dbus-daemon"), dir)
}

/// True if process `pid` (in its own network namespace) listens on 127.0.0.1:`port`.
fn listens_in_ns(pid: u32, port: u16) -> bool {
    let wanted = format!("0100007F:{port:04X}");
    fs::read_to_string(format!("/proc/{pid}/net/tcp"))
        .map(|t| {
            t.lines().skip(1).any(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.get(1) == Some(&wanted.as_str()) && f.get(3) == Some(&"0A")
            })
        })
        .unwrap_or(false)
}

/// swtpm on the namespace's loopback; the daemon reaches it as
/// `swtpm:host=127.0.0.1,port=2321` (tss-esapi 7's swtpm TCTI takes no socket path).
fn start_swtpm(ns: &Netns, dir: &Path) -> Proc {
    open_dir(dir);
    let stderr = fs::File::create(dir.join("swtpm.stderr")).expect("swtpm stderr");
    let child = ns
        .command("swtpm")
        .args(["socket", "--tpm2", "--server"])
        .arg(format!("type=tcp,port={TPM_PORT},bindaddr=127.0.0.1"))
        .arg("--ctrl")
        .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", TPM_PORT + 1))
        .arg("--tpmstate")
        .arg(format!("dir={}", dir.display()))
        .args(["--flags", "not-need-init,startup-clear"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start swtpm");
    let mut proc = Proc {
        child,
        name: "swtpm".into(),
    };
    let pid = proc.pid();
    wait_for(Duration::from_secs(10), "swtpm to listen", || {
        assert!(
            proc.running(),
            "swtpm exited: {}",
            read(&dir.join("swtpm.stderr"))
        );
        (listens_in_ns(pid, TPM_PORT) && listens_in_ns(pid, TPM_PORT + 1)).then_some(())
    });
    proc
}

fn read(p: &Path) -> String {
    fs::read_to_string(p).unwrap_or_default()
}

/// A real lldpd on `eth0` of `ns`, configured at start (`-O`): one frame a second, the
/// BMC's name as SystemName and its ULA as management address. (An exact address pattern
/// is sent unchecked only when it is the sole pattern: tests that need an IPv4 management
/// address without a private range set `127.0.0.1` alone with [`RigBmc::lldpcli`].)
fn start_lldpd(ns: &Netns, dir: &Path, name: &str, address: Ipv6Addr, socket: &Path) -> Proc {
    let conf = dir.join("lldpd.conf");
    fs::write(
        &conf,
        format!(
            "configure lldp tx-interval 1\n\
             configure system hostname {name}\n\
             configure system description bmc-pairing-manager-rig\n\
             configure system ip management pattern {address}\n"
        ),
    )
    .expect("lldpd conf");
    fs::set_permissions(&conf, fs::Permissions::from_mode(0o644)).expect("chmod conf");
    // A socket left by a killed lldpd can still take a connection for a moment, and lldpd
    // refuses to start while one does: start from a clean path.
    let _ = fs::remove_file(socket);
    let log = fs::File::create(dir.join("lldpd.log")).expect("lldpd log");
    let child = ns
        .command("lldpd")
        .arg("-d")
        .arg("-u")
        .arg(socket)
        .args(["-I", IFACE])
        .arg("-O")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start lldpd");
    let mut proc = Proc {
        child,
        name: "lldpd".into(),
    };
    // Configured (and resumed) once its configuration and chassis say so.
    let compact = |args: &[&str]| -> String {
        Command::new("lldpcli")
            .arg("-u")
            .arg(socket)
            .args(["-f", "json0"])
            .args(args)
            .output()
            .ok()
            .and_then(|o| serde_json::from_slice::<serde_json::Value>(&o.stdout).ok())
            .map(|v| v.to_string())
            .unwrap_or_default()
    };
    wait_for(Duration::from_secs(10), "lldpd to apply its config", || {
        assert!(
            proc.running(),
            "lldpd exited: {}",
            read(&dir.join("lldpd.log"))
        );
        let config = compact(&["show", "configuration"]);
        let chassis = compact(&["show", "chassis"]);
        (config.contains(r#""tx-delay":[{"value":"1"}]"#)
            && chassis.contains(&format!(r#""name":[{{"value":"{name}"}}]"#)))
        .then_some(())
    });
    proc
}

/// The networkd LLDP stand-in, built once per process.
pub fn standin_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if let Ok(p) = std::env::var("NETWORKD_LLDP_STANDIN_BIN") {
                return PathBuf::from(p);
            }
            let release = !cfg!(debug_assertions);
            let target = std::env::var("CARGO_TARGET_DIR")
                .map_or_else(|_| super::workspace_root().join("target"), PathBuf::from);
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = Command::new(cargo);
            cmd.args(["build", "--quiet", "-p", "bmc-pairing-manager"])
                .args(["--example", "networkd-lldp-standin"])
                .current_dir(super::workspace_root());
            // The variables cargo sets for a running test (CARGO_MANIFEST_DIR, OUT_DIR, ...)
            // would leak into build scripts that watch them (ring's) and rebuild everything.
            for (key, _) in std::env::vars_os() {
                let k = key.to_string_lossy();
                if (k.starts_with("CARGO_") && k != "CARGO_HOME" && k != "CARGO_TARGET_DIR")
                    || k == "OUT_DIR"
                {
                    cmd.env_remove(&key);
                }
            }
            if release {
                cmd.arg("--release");
            }
            let status = cmd.status().expect("run cargo build for the stand-in");
            assert!(status.success(), "cannot build networkd-lldp-standin");
            target
                .join(if release { "release" } else { "debug" })
                .join("examples/networkd-lldp-standin")
        })
        .clone()
}

fn start_standin(ns: &Netns, dir: &Path, bus: &str, lldpd_socket: &Path) -> Proc {
    let log = fs::File::create(dir.join("standin.log")).expect("stand-in log");
    let child = ns
        .command(standin_binary())
        .arg("--bus")
        .arg(bus)
        .arg("--lldpd-socket")
        .arg(lldpd_socket)
        .args(["--interface", IFACE])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start networkd-lldp-standin");
    let mut proc = Proc {
        child,
        name: "networkd-lldp-standin".into(),
    };
    wait_for(
        Duration::from_secs(30),
        "the stand-in to own its name",
        || {
            assert!(
                proc.running(),
                "stand-in exited: {}",
                read(&dir.join("standin.log"))
            );
            let out = Command::new("busctl")
                .arg(format!("--address={bus}"))
                .args(["list", "--acquired", "--no-pager"])
                .output()
                .ok()?;
            String::from_utf8_lossy(&out.stdout)
                .contains(LLDP_SERVICE)
                .then_some(())
        },
    );
    proc
}

/// One observed property change on a BMC's bus.
#[derive(Clone, Debug)]
pub struct Change {
    /// When it arrived.
    pub at: Instant,
    /// The object.
    pub path: String,
    /// The property.
    pub property: String,
    /// Its new value (an enum string's last segment, `true`/`false`, ...).
    pub value: String,
}

/// Records every `PropertiesChanged` the daemon emits on one bus, with the time it arrived,
/// from a thread of its own. Optionally prints each as it comes (the demo's transcript).
#[derive(Clone)]
pub struct Watcher {
    changes: Arc<Mutex<Vec<Change>>>,
    quiet: Arc<std::sync::atomic::AtomicBool>,
}

impl Watcher {
    /// Watches the bus at `address`; with `print = Some((label, t0))`, prints the PDI
    /// `Provisioned` and `PeerConnected` changes as `[  s.mmms] label: ...`. Returns once
    /// subscribed.
    pub fn start(address: &str, print: Option<(String, Instant)>) -> Watcher {
        let changes = Arc::new(Mutex::new(Vec::new()));
        let sink = changes.clone();
        let quiet = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let hush = quiet.clone();
        let address = address.to_owned();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                use futures_util::StreamExt;
                let Ok(builder) = zbus::connection::Builder::address(address.as_str()) else {
                    return;
                };
                let Ok(conn) = builder.build().await else {
                    return;
                };
                let rule = zbus::MatchRule::builder()
                    .msg_type(zbus::message::Type::Signal)
                    .interface("org.freedesktop.DBus.Properties")
                    .and_then(|r| r.member("PropertiesChanged"))
                    .map(|r| r.build());
                let Ok(rule) = rule else { return };
                let Ok(mut stream) =
                    zbus::MessageStream::for_match_rule(rule, &conn, Some(4096)).await
                else {
                    return;
                };
                let _ = ready_tx.send(());
                while let Some(Ok(msg)) = stream.next().await {
                    let at = Instant::now();
                    let path = msg
                        .header()
                        .path()
                        .map(|p| p.to_string())
                        .unwrap_or_default();
                    type Body = (
                        String,
                        std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
                        Vec<String>,
                    );
                    let Ok((iface, props, _)) = msg.body().deserialize::<Body>() else {
                        continue;
                    };
                    for (property, value) in props {
                        let value = show_value(&value);
                        if let Some((label, t0)) = &print
                            && is_transition(&iface, &property)
                            && !hush.load(std::sync::atomic::Ordering::Relaxed)
                        {
                            println!(
                                "[{:>7.3}s] {label}: {} {property} = {value}",
                                at.duration_since(*t0).as_secs_f64(),
                                short_path(&path),
                            );
                        }
                        if let Ok(mut c) = sink.lock() {
                            c.push(Change {
                                at,
                                path: path.clone(),
                                property,
                                value,
                            });
                        }
                    }
                }
            });
        });
        let _ = ready_rx.recv_timeout(Duration::from_secs(10));
        Watcher { changes, quiet }
    }

    /// Stops printing (changes are still recorded).
    pub fn mute(&self) {
        self.quiet.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Every change so far.
    pub fn changes(&self) -> Vec<Change> {
        self.changes.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The first change of `property` to `value` (the last segment of an enum string), at or
    /// after `since`.
    pub fn first_after(&self, since: Instant, property: &str, value: &str) -> Option<Instant> {
        self.changes()
            .into_iter()
            .find(|c| c.at >= since && c.property == property && c.value == value)
            .map(|c| c.at)
    }
}

fn is_transition(iface: &str, property: &str) -> bool {
    iface == PDI_IFACE && (property == "Provisioned" || property == "PeerConnected")
}

fn short_path(path: &str) -> &str {
    path.strip_prefix("/xyz/openbmc_project/").unwrap_or(path)
}

fn show_value(v: &zbus::zvariant::OwnedValue) -> String {
    if let Ok(s) = <&str>::try_from(v) {
        return s.rsplit('.').next().unwrap_or(s).to_owned();
    }
    if let Ok(b) = bool::try_from(v) {
        return b.to_string();
    }
    format!("{:?}", &**v)
}

/// Pairs two rig BMCs by LLDP, as an operator would: both see each other, `self` on both,
/// then `peer` on both; waits until both are Connected.
pub fn pair_by_lldp(a: &RigBmc, b: &RigBmc, limit: Duration) {
    a.wait_lldp_neighbour(b.name(), limit);
    b.wait_lldp_neighbour(a.name(), limit);
    a.bmc.provision("self").expect("A self");
    b.bmc.provision("self").expect("B self");
    provision_until_accepted(a, "peer", limit);
    provision_until_accepted(b, "peer", limit);
    a.bmc.wait_peer_connected(CONNECTED, limit);
    b.bmc.wait_peer_connected(CONNECTED, limit);
}

/// `ProvisionPeer s <arg>`, retried while the daemon has not yet learnt the neighbour
/// (ResourceNotFound: busctl prints only its message); any other error fails.
pub fn provision_until_accepted(b: &RigBmc, arg: &str, limit: Duration) {
    wait_for(
        limit,
        &format!("{}: ProvisionPeer {arg} accepted", b.name()),
        || match b.bmc.provision(arg) {
            Ok(()) => Some(()),
            Err(e) if not_learnt_yet(&e) => None,
            Err(e) => panic!("{}: ProvisionPeer {arg}: {e}", b.name()),
        },
    );
}

/// The ResourceNotFound texts of `ProvisionPeer` for a neighbour not (yet) discovered.
pub fn not_learnt_yet(busctl_error: &str) -> bool {
    busctl_error.contains("no LLDP neighbour") || busctl_error.contains("is known")
}

/// `bench_rig` figure: link down until A reports B NotConnected.
pub const LINK_DOWN_TO_NOT_CONNECTED: &str = "link down -> NotConnected";
/// `bench_rig` figure: link up until the first lldpd (either side) reports its neighbour.
pub const LINK_UP_TO_LLDP: &str = "link up -> lldpd reports the neighbour";
/// `bench_rig` figure: link up until both sides report Connected.
pub const LINK_UP_TO_CONNECTED: &str = "link up -> both Connected";

/// Builds a fresh two-BMC rig (lldpd source, TPM keys, attestation), pairs it by LLDP, then
/// repeats `samples` times: bring A's link down, wait for A to give up on B and for A's lldpd
/// to forget B, bring the link up again. Every sample of the three figures named by the
/// constants above is returned; medians are the caller's. Backoff is 60 s (heartbeat 300 ms,
/// timeout 1 s), so the rig reconnects without waiting out a backoff only when discovery
/// (or a dial already in flight) brings it back.
pub fn bench_rig(samples: usize) -> Vec<(String, Duration)> {
    let options = Options {
        config: serde_json::json!({"backoff_initial_ms": 60_000, "backoff_max_ms": 60_000}),
        ..Options::default()
    };
    let rig = Rig::start(&["bmc-a", "bmc-b"], options);
    let limit = Duration::from_secs(30);
    let (a, b) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"));
    pair_by_lldp(a, b, limit);
    let watchers = [
        Watcher::start(&a.bmc.bus.address, None),
        Watcher::start(&b.bmc.bus.address, None),
    ];
    let lldp = [LldpEvents::start(a), LldpEvents::start(b)];
    let mut out = Vec::new();
    for _ in 0..samples {
        // Down: measure until A gives up on B.
        let t0 = Instant::now();
        rig.set_link("bmc-a", false);
        a.bmc.wait_peer_connected(NOT_CONNECTED, limit);
        let t1 = wait_for(limit, "NotConnected change", || {
            watchers[0].first_after(t0, "PeerConnected", "NotConnected")
        });
        out.push((LINK_DOWN_TO_NOT_CONNECTED.to_owned(), t1 - t0));
        // lldpd forgets B when the carrier goes.
        wait_for(limit, "A's lldpd to forget B", || {
            a.lldp_neighbours().is_empty().then_some(())
        });
        // Up: figures are taken from link up, which is unambiguous. Which dial reconnects
        // is not: one side's LLDP report, the other side's incoming session, or a dial left
        // in flight while the link was down (its SYN retransmitted) can each get there first.
        let t2 = Instant::now();
        rig.set_link("bmc-a", true);
        let reported = wait_for(limit, "either lldpd to report its neighbour", || {
            let x = lldp[0].added_after(t2, b.name());
            let y = lldp[1].added_after(t2, a.name());
            x.into_iter().chain(y).min()
        });
        out.push((LINK_UP_TO_LLDP.to_owned(), reported - t2));
        a.bmc.wait_peer_connected(CONNECTED, limit);
        b.bmc.wait_peer_connected(CONNECTED, limit);
        let both = wait_for(limit, "both Connected changes", || {
            let at = |w: &Watcher| w.first_after(t2, "PeerConnected", "Connected");
            Some(at(&watchers[0])?.max(at(&watchers[1])?))
        });
        out.push((LINK_UP_TO_CONNECTED.to_owned(), both - t2));
    }
    out
}

/// `lldpcli watch` on one BMC's lldpd, from outside the daemon: when each neighbour was
/// reported added or updated (what the daemon's source turns into `Seen`). Killed on drop.
pub struct LldpEvents {
    added: Arc<Mutex<Vec<(Instant, String)>>>,
    watch: Proc,
}

impl LldpEvents {
    /// Starts watching `bmc`'s lldpd.
    pub fn start(bmc: &RigBmc) -> LldpEvents {
        use bmc_pairing_manager::discovery::lldpd::{Change, Framer, parse};
        let mut child = Command::new("lldpcli")
            .arg("-u")
            .arg(&bmc.lldpd_socket)
            .args(["-f", "json0", "watch"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("lldpcli watch");
        let mut stdout = child.stdout.take().expect("watch stdout");
        let added = Arc::new(Mutex::new(Vec::new()));
        let sink = added.clone();
        std::thread::spawn(move || {
            use std::io::Read;
            let mut framer = Framer::new();
            let mut buf = vec![0u8; 16 * 1024];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                let at = Instant::now();
                framer.push(&buf[..n]);
                while let Ok(Some(doc)) = framer.next_document() {
                    if let Ok(Change::Added(list) | Change::Updated(list)) = parse(&doc)
                        && let Ok(mut a) = sink.lock()
                    {
                        a.extend(
                            list.into_iter()
                                .map(|n| (at, n.system_name.unwrap_or_default())),
                        );
                    }
                }
            }
        });
        LldpEvents {
            added,
            watch: Proc {
                child,
                name: "lldpcli watch".into(),
            },
        }
    }

    /// When lldpd first reported neighbour `name` as added or updated, at or after `since`.
    pub fn added_after(&self, since: Instant, name: &str) -> Option<Instant> {
        self.added
            .lock()
            .ok()?
            .iter()
            .find(|(at, n)| *at >= since && n == name)
            .map(|(at, _)| *at)
    }
}
