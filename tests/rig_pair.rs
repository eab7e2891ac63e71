//! Two BMCs end to end in the rig: each in its own network namespace with its own
//! dbus-daemon, swtpm (TPM keys) and lldpd, joined by a veth pair. They discover each other
//! by LLDP, pair with `ProvisionPeer self` then `ProvisionPeer peer` on both, and keep the
//! channel through link loss and a daemon killed with SIGKILL. Once with the lldpd source,
//! once with the phosphor-networkd D-Bus source (through the networkd stand-in). Timings are
//! asserted loosely: each step within 30 s.
#![cfg(test)]

use std::time::{Duration, Instant};

use bmc_test_support::rig::{Options, Rig, Source, Watcher, pair_by_lldp};
use bmc_test_support::{CONNECTED, NOT_CONNECTED};

const LIMIT: Duration = Duration::from_secs(30);

fn pair_then_lose_and_regain(source: Source) {
    let mut rig = Rig::start(
        &["bmc-a", "bmc-b"],
        Options {
            source,
            ..Options::default()
        },
    );
    let a = rig.bmc("bmc-a");
    let b = rig.bmc("bmc-b");
    let watch_a = Watcher::start(&a.bmc.bus.address, None);

    // Discovery, then first contact (needs both sides), then the channel.
    let t = Instant::now();
    pair_by_lldp(a, b, LIMIT);
    assert!(t.elapsed() < LIMIT, "paired in {:?}", t.elapsed());
    assert!(a.bmc.provisioned() && b.bmc.provisioned());
    assert_eq!(a.peer_state("bmc-b").as_deref(), Some("Connected"));
    assert_eq!(b.peer_state("bmc-a").as_deref(), Some("Connected"));
    assert_eq!(
        a.peer_prop("bmc-b", "Address").as_deref(),
        Some("s \"fd00:b3c::b\"")
    );
    let pin_on_a = a.peer_prop("bmc-b", "IdentityFingerprint");
    let log_lines = |bmc: &bmc_test_support::Bmc| bmc.log().matches("pairing requested").count();
    let requests = (log_lines(&a.bmc), log_lines(&b.bmc));

    // Link down: both sides notice through their heartbeats.
    rig.set_link("bmc-a", false);
    a.bmc.wait_peer_connected(NOT_CONNECTED, LIMIT);
    b.bmc.wait_peer_connected(NOT_CONNECTED, LIMIT);
    // Link up: LLDP brings the neighbour back and the pinned peers reconnect by themselves.
    let up = Instant::now();
    rig.set_link("bmc-a", true);
    a.bmc.wait_peer_connected(CONNECTED, LIMIT);
    b.bmc.wait_peer_connected(CONNECTED, LIMIT);
    assert!(up.elapsed() < LIMIT);
    assert_eq!(
        (log_lines(&a.bmc), log_lines(&b.bmc)),
        requests,
        "no new ProvisionPeer was needed"
    );

    // B's daemon is killed outright, then restarted with the same TPM and state.
    rig.bmc_mut("bmc-b").kill9();
    let a = rig.bmc("bmc-a");
    a.bmc.wait_peer_connected(NOT_CONNECTED, LIMIT);
    rig.bmc_mut("bmc-b").start_daemon();
    let (a, b) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"));
    a.bmc.wait_peer_connected(CONNECTED, LIMIT);
    b.bmc.wait_peer_connected(CONNECTED, LIMIT);
    assert!(b.bmc.provisioned(), "B's TPM identity survived the kill");
    assert_eq!(a.peer_prop("bmc-b", "IdentityFingerprint"), pin_on_a);
    assert_eq!(a.bmc.peer_paths().len(), 1);

    // A's bus saw every transition, in order (InProgress between them left out).
    let seen: Vec<String> = watch_a
        .changes()
        .into_iter()
        .filter(|c| c.property == "PeerConnected" && c.value != "InProgress")
        .map(|c| c.value)
        .collect();
    let mut flips = seen.clone();
    flips.dedup();
    let want = [
        "Connected",
        "NotConnected",
        "Connected",
        "NotConnected",
        "Connected",
    ];
    assert!(
        flips.ends_with(&want.map(String::from)),
        "PeerConnected transitions on A: {seen:?}"
    );
}

#[test]
fn two_bmcs_pair_by_lldpd_and_survive_link_loss_and_a_killed_daemon() {
    pair_then_lose_and_regain(Source::Lldpd);
}

#[test]
fn two_bmcs_pair_by_networkd_lldp_and_survive_link_loss_and_a_killed_daemon() {
    pair_then_lose_and_regain(Source::Networkd);
}

/// The benchmark figures the lead's bench prints come from `bench_rig`; it must keep working.
#[test]
fn bench_rig_measures_every_figure() {
    use bmc_test_support::rig::{
        LINK_DOWN_TO_NOT_CONNECTED, LINK_UP_TO_CONNECTED, LINK_UP_TO_LLDP,
    };
    let samples = bmc_test_support::rig::bench_rig(2);
    eprintln!("bench_rig samples: {samples:?}");
    for name in [
        LINK_DOWN_TO_NOT_CONNECTED,
        LINK_UP_TO_LLDP,
        LINK_UP_TO_CONNECTED,
    ] {
        let got: Vec<Duration> = samples
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, d)| *d)
            .collect();
        assert_eq!(got.len(), 2, "{name}: {samples:?}");
        assert!(got.iter().all(|d| *d < LIMIT), "{name}: {got:?}");
    }
}
