//! Three BMCs on one LLDP-forwarding bridge, each in its own network namespace with its own
//! dbus-daemon, swtpm and lldpd.
//!
//! - A pairs with B and C at the same time, naming each by its LLDP SystemName (`"peer"` is
//!   ambiguous with two neighbours and is refused); the per-peer objects show both and the
//!   PDI aggregate follows the best peer.
//! - A third BMC that advertises itself by LLDP, then claims B's name, then takes B's
//!   address, is refused every time: A's pins, `Provisioned` and peer list do not change,
//!   `IdentityMismatch` on B's object turns true, and `PeerConnected` never shows it. When the
//!   real B is back, A reconnects to it.
#![cfg(test)]

use std::time::{Duration, Instant};

use bmc_test_support::rig::{Options, Rig, Topology, Watcher, provision_until_accepted};
use bmc_test_support::{CONNECTED, NOT_CONNECTED};

const LIMIT: Duration = Duration::from_secs(30);

fn switch() -> Options {
    Options {
        topology: Topology::Switch,
        ..Options::default()
    }
}

#[test]
fn a_pairs_with_b_and_c_at_once_by_name() {
    let rig = Rig::start(&["bmc-a", "bmc-b", "bmc-c"], switch());
    let (a, b, c) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"), rig.bmc("bmc-c"));
    a.wait_lldp_neighbour("bmc-b", LIMIT);
    a.wait_lldp_neighbour("bmc-c", LIMIT);
    for x in [a, b, c] {
        x.bmc.provision("self").expect("self");
    }
    // Two neighbours on A's interface: "peer" does not say which.
    bmc_test_support::wait_for(LIMIT, "A to know both neighbours", || {
        match a.bmc.provision("peer") {
            Err(e) if e.contains("2 LLDP neighbours on eth0; name one of them") => Some(()),
            Err(e) if bmc_test_support::rig::not_learnt_yet(&e) => None,
            other => panic!("\"peer\" with two neighbours: {other:?}"),
        }
    });
    let t = Instant::now();
    provision_until_accepted(a, "bmc-b", LIMIT);
    provision_until_accepted(a, "bmc-c", LIMIT);
    provision_until_accepted(b, "bmc-a", LIMIT);
    provision_until_accepted(c, "bmc-a", LIMIT);
    a.wait_peer_state("bmc-b", "Connected", LIMIT);
    a.wait_peer_state("bmc-c", "Connected", LIMIT);
    assert!(t.elapsed() < LIMIT);
    b.bmc.wait_peer_connected(CONNECTED, LIMIT);
    c.bmc.wait_peer_connected(CONNECTED, LIMIT);
    assert_eq!(a.bmc.peer_paths().len(), 2, "one object per peer");
    assert_eq!(b.bmc.peer_paths().len(), 1, "B paired only with A");
    assert_eq!(
        a.peer_prop("bmc-c", "Address").as_deref(),
        Some("s \"fd00:b3c::c\"")
    );
    assert_eq!(a.bmc.peer_connected(), CONNECTED);

    // C drops off: its object says so, B's does not, and the aggregate is the best peer.
    rig.set_link("bmc-c", false);
    a.wait_peer_state("bmc-c", "NotConnected", LIMIT);
    assert_eq!(a.peer_state("bmc-b").as_deref(), Some("Connected"));
    assert_eq!(a.bmc.peer_connected(), CONNECTED);
    // B too: now nothing is connected.
    rig.set_link("bmc-b", false);
    a.bmc.wait_peer_connected(NOT_CONNECTED, LIMIT);
    // Both back, without a new ProvisionPeer.
    rig.set_link("bmc-b", true);
    rig.set_link("bmc-c", true);
    a.wait_peer_state("bmc-b", "Connected", LIMIT);
    a.wait_peer_state("bmc-c", "Connected", LIMIT);
    assert_eq!(a.bmc.peer_connected(), CONNECTED);
}

#[test]
fn an_impostor_by_lldp_by_name_or_by_address_is_refused() {
    let rig = Rig::start(&["bmc-a", "bmc-b", "bmc-c"], switch());
    {
        let (a, b, c) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"), rig.bmc("bmc-c"));
        a.wait_lldp_neighbour("bmc-b", LIMIT);
        for x in [a, b, c] {
            x.bmc.provision("self").expect("self");
        }
        provision_until_accepted(a, "bmc-b", LIMIT);
        provision_until_accepted(b, "bmc-a", LIMIT);
        a.wait_peer_state("bmc-b", "Connected", LIMIT);
    }
    let a = rig.bmc("bmc-a");
    let watch = Watcher::start(&a.bmc.bus.address, None);
    let paths = a.bmc.peer_paths();
    let pin = a.peer_prop("bmc-b", "IdentityFingerprint");
    let pinned = |a: &bmc_test_support::rig::RigBmc| -> serde_json::Value {
        let text = std::fs::read(a.bmc.state_dir().join("state.json")).unwrap();
        let state: serde_json::Value = serde_json::from_slice(&text).unwrap();
        serde_json::json!([state["provisioned"], state["peers"]])
    };
    let state_file = pinned(a);
    let unchanged = |a: &bmc_test_support::rig::RigBmc| {
        assert!(a.bmc.provisioned(), "Provisioned unchanged");
        assert_eq!(a.bmc.peer_paths(), paths, "no new peer object");
        assert_eq!(
            a.peer_prop("bmc-b", "IdentityFingerprint"),
            pin,
            "pin unchanged"
        );
        assert_eq!(
            a.peer_prop("bmc-b", "Address").as_deref(),
            Some("s \"fd00:b3c::b\""),
            "B's address not moved"
        );
    };

    // 1. C, self-provisioned, is just another LLDP neighbour to A: nothing happens.
    a.wait_lldp_neighbour("bmc-c", LIMIT);
    unchanged(a);
    assert_eq!(a.peer_state("bmc-b").as_deref(), Some("Connected"));
    assert_eq!(
        a.peer_prop("bmc-b", "IdentityMismatch").as_deref(),
        Some("b false")
    );

    // 2. B goes away; C claims B's name by LLDP (at its own address). A checks who answers
    //    there before following, finds another identity, and does not follow.
    rig.set_link("bmc-b", false);
    let a = rig.bmc("bmc-a");
    a.bmc.wait_peer_connected(NOT_CONNECTED, LIMIT);
    let gone = Instant::now();
    let c = rig.bmc("bmc-c");
    c.lldpcli(&["configure", "system", "hostname", "bmc-b"]);
    bmc_test_support::wait_for(LIMIT, "A to see C as bmc-b", || {
        a.lldp_neighbours()
            .iter()
            .any(|(n, ips)| n == "bmc-b" && ips.contains(&"fd00:b3c::c".parse().unwrap()))
            .then_some(())
    });
    bmc_test_support::wait_for(LIMIT, "IdentityMismatch on B's object", || {
        (a.peer_prop("bmc-b", "IdentityMismatch").as_deref() == Some("b true")).then_some(())
    });
    unchanged(a);

    // 3. C takes B's address too (B is unplugged). A's dialler reaches C and refuses it.
    c.ns.ip(&["addr", "add", "fd00:b3c::b/64", "dev", "eth0", "nodad"]);
    c.lldpcli(&[
        "configure",
        "system",
        "ip",
        "management",
        "pattern",
        "fd00:b3c::b",
    ]);
    // A still has B's MAC for that address; a real impostor would announce itself with an
    // unsolicited neighbour advertisement. Forget it so the next dial resolves afresh.
    a.ns.ip(&["neigh", "flush", "dev", "eth0"]);
    bmc_test_support::wait_for(LIMIT, "A to see C at B's address", || {
        a.lldp_neighbours()
            .iter()
            .any(|(n, ips)| n == "bmc-b" && ips.contains(&"fd00:b3c::b".parse().unwrap()))
            .then_some(())
    });
    let refused_before = a.bmc.log().matches("refused another identity").count();
    bmc_test_support::wait_for(LIMIT, "A's dialler to meet C at B's address", || {
        (a.bmc.log().matches("refused another identity").count() > refused_before).then_some(())
    });
    assert_eq!(
        a.peer_prop("bmc-b", "IdentityMismatch").as_deref(),
        Some("b true")
    );
    assert_eq!(a.bmc.peer_connected(), NOT_CONNECTED);
    unchanged(a);
    assert_eq!(pinned(a), state_file, "persisted pins unchanged");

    // 4. C gives the address back, the real B returns: A reconnects to B, and only to B.
    c.ns.ip(&["addr", "del", "fd00:b3c::b/64", "dev", "eth0"]);
    c.lldpcli(&["configure", "system", "hostname", "bmc-c"]);
    c.lldpcli(&[
        "configure",
        "system",
        "ip",
        "management",
        "pattern",
        "fd00:b3c::c",
    ]);
    a.ns.ip(&["neigh", "flush", "dev", "eth0"]);
    let back = Instant::now();
    rig.set_link("bmc-b", true);
    let a = rig.bmc("bmc-a");
    a.bmc.wait_peer_connected(CONNECTED, LIMIT);
    a.wait_peer_state("bmc-b", "Connected", LIMIT);
    bmc_test_support::wait_for(LIMIT, "IdentityMismatch to clear", || {
        (a.peer_prop("bmc-b", "IdentityMismatch").as_deref() == Some("b false")).then_some(())
    });
    unchanged(a);
    let connected_while_away = watch
        .changes()
        .into_iter()
        .filter(|ch| ch.at > gone && ch.at < back)
        .any(|ch| ch.property == "PeerConnected" && ch.value == "Connected");
    assert!(!connected_while_away, "PeerConnected never showed C");
}
