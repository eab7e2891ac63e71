//! `make demo`: two BMCs pair on this machine.
//!
//! Each BMC is a network namespace with its own dbus-daemon, swtpm (the daemon's keys live in
//! it), lldpd and `bmc-pairing-manager`; the two are joined by a veth pair with IPv6 ULAs
//! (see `tests/common/rig.rs`). The demo prints, with timestamps, every command an operator
//! would type (busctl against each BMC's bus, kill, ip) and every `Provisioned` /
//! `PeerConnected` change the daemons signal. It exits 0 only if every step happened; every
//! process and namespace it started is gone when it ends, also on failure.

// The shared harness reports setup failures by panicking, which ends the demo with a
// non-zero status after its drops have cleaned up.
#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use common::rig::{Options, Rig, RigBmc, Watcher};
use common::{CONNECTED, NOT_CONNECTED, PDI_BUS, PDI_IFACE, PDI_PATH};

const LIMIT: Duration = Duration::from_secs(30);

struct Demo {
    t0: Instant,
}

impl Demo {
    fn say(&self, what: &str) {
        println!("[{:>7.3}s] {what}", self.t0.elapsed().as_secs_f64());
    }

    fn step(&self, title: &str) {
        println!();
        self.say(&format!("== {title} =="));
    }

    /// Runs `busctl <args>` on `bmc`'s bus, printing it as typed and what it answered.
    fn busctl(&self, bmc: &RigBmc, args: &[&str]) -> Result<String, String> {
        self.say(&format!("{}$ busctl {}", bmc.name(), args.join(" ")));
        let out = bmc.bmc.busctl(args);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() {
            indented(&text);
            Ok(text)
        } else {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            indented(&err);
            Err(err)
        }
    }

    fn provision(&self, bmc: &RigBmc, arg: &str) {
        self.busctl(
            bmc,
            &[
                "call",
                PDI_BUS,
                PDI_PATH,
                PDI_IFACE,
                "ProvisionPeer",
                "s",
                arg,
            ],
        )
        .unwrap_or_else(|e| panic!("{}: ProvisionPeer {arg}: {e}", bmc.name()));
    }

    fn show_state(&self, bmc: &RigBmc) {
        let _ = self.busctl(
            bmc,
            &[
                "get-property",
                PDI_BUS,
                PDI_PATH,
                PDI_IFACE,
                "Provisioned",
                "PeerConnected",
            ],
        );
    }

    fn shell(&self, words: &[String]) {
        self.say(&format!("$ {}", words.join(" ")));
    }
}

fn indented(text: &str) {
    for line in text.lines() {
        println!("            {line}");
    }
}

/// Waits until `bmc`'s daemon has taken `peer` from its LLDP source (its log says so) and
/// prints what lldpd and the daemon saw.
fn discovered(demo: &Demo, bmc: &RigBmc, peer: &str) {
    let addrs = bmc.wait_lldp_neighbour(peer, LIMIT);
    let shown: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    demo.say(&format!(
        "{}: lldpd on eth0 sees neighbour {peer} (management address {})",
        bmc.name(),
        shown.join(", ")
    ));
    let line = common::wait_for(LIMIT, "the daemon to take the neighbour", || {
        bmc.bmc
            .log()
            .lines()
            .find(|l| l.contains("neighbour seen") && l.contains(&format!("\"{peer}\"")))
            .map(str::to_owned)
    });
    let detail = line
        .split("neighbour seen")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned();
    demo.say(&format!(
        "{}: daemon's LLDP source reports it: {detail}",
        bmc.name()
    ));
}

fn run(demo: &Demo) -> Vec<String> {
    demo.step("two BMCs, each in its own network namespace");
    let mut rig = Rig::start(&["bmc-a", "bmc-b"], Options::default());
    for b in &rig.bmcs {
        demo.say(&format!(
            "{}: netns {}, eth0 {}/64, dbus-daemon {}, swtpm on its own 127.0.0.1:2321, \
             lldpd (tx every 1 s), bmc-pairing-manager pid {} (TPM keys, lldp_source=lldpd)",
            b.name(),
            b.ns.name,
            b.address,
            b.bmc.bus.address,
            b.daemon_pid().unwrap_or_default(),
        ));
    }
    demo.say("busctl lines below run against that BMC's bus (--address=<its dbus-daemon>)");
    let mut watchers = Vec::new();
    for b in &rig.bmcs {
        watchers.push(Watcher::start(
            &b.bmc.bus.address,
            Some((b.name().to_owned(), demo.t0)),
        ));
    }
    let mut done = Vec::new();

    demo.step("discovery by LLDP");
    {
        let (a, b) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"));
        discovered(demo, a, "bmc-b");
        discovered(demo, b, "bmc-a");
    }
    done.push("both BMCs discovered each other by LLDP".to_owned());

    demo.step("pairing: self on both, then each names the other");
    {
        let (a, b) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"));
        demo.provision(a, "self");
        demo.provision(b, "self");
        a.bmc.wait_for_provisioned();
        b.bmc.wait_for_provisioned();
        demo.provision(a, "peer");
        demo.provision(b, &a.address.to_string());
        a.bmc.wait_peer_connected(CONNECTED, LIMIT);
        b.bmc.wait_peer_connected(CONNECTED, LIMIT);
        demo.show_state(a);
        demo.show_state(b);
        let path = a
            .bmc
            .peer_paths()
            .into_iter()
            .next()
            .expect("a peer object");
        let _ = demo.busctl(
            a,
            &["introspect", common::SEED_BUS, &path, common::PEER_IFACE],
        );
    }
    done.push("paired: ProvisionPeer self, peer (A) and A's address (B); both Connected".into());

    demo.step("kill -9 bmc-b's daemon");
    let pid = rig.bmc("bmc-b").daemon_pid().unwrap_or_default();
    demo.shell(&["kill".into(), "-9".into(), pid.to_string()]);
    rig.bmc_mut("bmc-b").kill9();
    rig.bmc("bmc-a")
        .bmc
        .wait_peer_connected(NOT_CONNECTED, LIMIT);
    demo.show_state(rig.bmc("bmc-a"));
    done.push("bmc-a went NotConnected when bmc-b was killed".into());

    demo.step("restart bmc-b's daemon (same TPM, same state)");
    {
        let b = rig.bmc("bmc-b");
        demo.shell(&[
            "ip".into(),
            "netns".into(),
            "exec".into(),
            b.ns.name.clone(),
            common::rig::daemon_binary().display().to_string(),
            "--config".into(),
            b.bmc.config_path.display().to_string(),
            "--bus".into(),
            b.bmc.bus.address.clone(),
        ]);
    }
    rig.bmc_mut("bmc-b").start_daemon();
    {
        let (a, b) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"));
        a.bmc.wait_peer_connected(CONNECTED, LIMIT);
        b.bmc.wait_peer_connected(CONNECTED, LIMIT);
        demo.show_state(a);
        demo.show_state(b);
    }
    done.push("after the restart both reconnected without a new ProvisionPeer".into());

    demo.step("link down");
    demo.shell(&rig.link_command("bmc-a", false));
    rig.set_link("bmc-a", false);
    {
        let (a, b) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"));
        a.bmc.wait_peer_connected(NOT_CONNECTED, LIMIT);
        b.bmc.wait_peer_connected(NOT_CONNECTED, LIMIT);
        demo.show_state(a);
    }
    done.push("link down: both NotConnected".into());

    demo.step("link up");
    demo.shell(&rig.link_command("bmc-a", true));
    rig.set_link("bmc-a", true);
    {
        let (a, b) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"));
        a.bmc.wait_peer_connected(CONNECTED, LIMIT);
        b.bmc.wait_peer_connected(CONNECTED, LIMIT);
        demo.show_state(a);
        demo.show_state(b);
    }
    done.push("link up: both Connected again".into());

    demo.step("cleaning up");
    for w in &watchers {
        w.mute();
    }
    let namespaces: Vec<String> = rig.bmcs.iter().map(|b| b.ns.name.clone()).collect();
    drop(rig);
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for ns in &namespaces {
        assert!(!listed.contains(ns.as_str()), "namespace {ns} left behind");
    }
    demo.say(&format!(
        "every process killed, namespaces {} deleted",
        namespaces.join(", ")
    ));
    done
}

trait Provisioned {
    fn wait_for_provisioned(&self);
}

impl Provisioned for common::Bmc {
    fn wait_for_provisioned(&self) {
        common::wait_for(LIMIT, "Provisioned", || self.provisioned().then_some(()));
    }
}

fn main() -> ExitCode {
    let demo = Demo { t0: Instant::now() };
    println!("bmc-pairing-manager demo: two BMCs on one machine, discovered by LLDP, paired, kept");
    let done = run(&demo);
    println!();
    demo.say(&format!("demo passed: {} steps", done.len()));
    for (i, d) in done.iter().enumerate() {
        println!("  {}. {d}", i + 1);
    }
    ExitCode::SUCCESS
}
