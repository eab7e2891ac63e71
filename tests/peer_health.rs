//! Per-peer link health on each peer object (issue 15, item 5), read from the real daemon
//! over its bus: sessions opened, dials that failed, reconnects, the time of the last state
//! change (a timestamp, not a counter that would need a timer) and the last heartbeat round
//! trip (read on demand, not signalled).
#![cfg(test)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bmc_test_support::*;
use serde_json::json;

fn u64_of(bmc: &Bmc, peer: &str, prop: &str) -> u64 {
    let text = bmc.get(SEED_BUS, peer, PEER_IFACE, prop);
    text.strip_prefix("t ")
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{prop}: {text}"))
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn a_peer_object_counts_sessions_failures_and_reconnects_and_shows_its_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let quick = json!({"heartbeat_interval_ms": 100, "heartbeat_timeout_ms": 600,
                       "backoff_initial_ms": 50, "backoff_max_ms": 200});
    let mut a = Bmc::new(tmp.path(), "bmc-a", quick.clone());
    let mut b = Bmc::new(tmp.path(), "bmc-b", quick);
    a.start();
    b.start();
    let before = now();
    pair(&a, &b);
    let peer = a.peer_paths().remove(0);
    assert!(u64_of(&a, &peer, "Handshakes") >= 1);
    assert_eq!(u64_of(&a, &peer, "Reconnects"), 0);
    let connected_at = u64_of(&a, &peer, "LastStateChange");
    assert!(
        connected_at >= before && connected_at <= now(),
        "{connected_at}"
    );
    // Heartbeats flow (each side pings after an interval without a frame): a round trip is
    // measured, in microseconds, and is well under the heartbeat timeout.
    let rtt = wait_for(Duration::from_secs(5), "a heartbeat round trip", || {
        Some(u64_of(&a, &peer, "LastHeartbeatRoundTrip")).filter(|&r| r > 0)
    });
    assert!(rtt < 600_000, "{rtt} us");
    // The timestamp stays put while nothing changes: it is not a ticking age.
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(u64_of(&a, &peer, "LastStateChange"), connected_at);

    // B's pairing manager dies: A loses the peer and its dials fail until B is back.
    b.kill9();
    a.wait_peer_connected(NOT_CONNECTED, Duration::from_secs(10));
    let lost_at = u64_of(&a, &peer, "LastStateChange");
    assert!(lost_at >= connected_at);
    wait_for(Duration::from_secs(10), "failed dials counted", || {
        Some(()).filter(|()| u64_of(&a, &peer, "FailedHandshakes") >= 2)
    });
    let handshakes = u64_of(&a, &peer, "Handshakes");
    b.start();
    a.wait_peer_connected(CONNECTED, Duration::from_secs(20));
    wait_for(Duration::from_secs(5), "one reconnect", || {
        Some(()).filter(|()| u64_of(&a, &peer, "Reconnects") == 1)
    });
    assert!(u64_of(&a, &peer, "Handshakes") > handshakes);
    assert!(u64_of(&a, &peer, "LastStateChange") >= lost_at);

    // Introspection says which are signalled: all but the round trip.
    let xml = a.busctl(&["introspect", "--xml-interface", SEED_BUS, &peer]);
    let xml = String::from_utf8_lossy(&xml.stdout);
    let rtt_decl = xml
        .split("<property ")
        .find(|p| p.contains("name=\"LastHeartbeatRoundTrip\""))
        .unwrap();
    let rtt_decl = rtt_decl.split("</property>").next().unwrap();
    assert!(
        rtt_decl.contains("org.freedesktop.DBus.Property.EmitsChangedSignal\" value=\"false\""),
        "{rtt_decl}"
    );
}
