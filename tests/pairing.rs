//! Two daemons, each on its own private dbus-daemon, pair over loopback; everything is
//! asserted through busctl (and zbus for signals and error names), as an operator sees it.

#![cfg(test)]

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use bmc_test_support::*;
use futures_util::StreamExt;
use serde_json::json;
use zbus::MatchRule;
use zbus::message::Type as MessageType;

/// Seed 000 README lines, verbatim ("skiboards" is the peer's name in the README).
const SEED_000: [&str; 4] = [
    "busctl call xyz.openbmc_project.BmcPairingManager /xyz/openbmc_project/BmcPairingManager xyz.openbmc_project.BmcPairingManager.BmcPairingManager ProvisionPeer s self",
    "busctl call xyz.openbmc_project.BmcPairingManager /xyz/openbmc_project/BmcPairingManager xyz.openbmc_project.BmcPairingManager.BmcPairingManager ProvisionPeer s skiboards",
    "busctl get-property xyz.openbmc_project.BmcPairingManager /xyz/openbmc_project/BmcPairingManager xyz.openbmc_project.BmcPairingManager.BmcPairingManager provisioned",
    "busctl get-property xyz.openbmc_project.BmcPairingManager /xyz/openbmc_project/BmcPairingManager xyz.openbmc_project.BmcPairingManager.BmcPairingManager peerConnected",
];

/// Seed 001 README lines, verbatim.
const SEED_001: [&str; 4] = [
    "busctl call xyz.openbmc_project.Provisioning /xyz/openbmc_project/Provisioning xyz.openbmc_project.Provisioning.Provisioning ProvisionPeer s self",
    "busctl call xyz.openbmc_project.Provisioning /xyz/openbmc_project/Provisioning xyz.openbmc_project.Provisioning.Provisioning ProvisionPeer s skiboards",
    "busctl get-property xyz.openbmc_project.Provisioning /xyz/openbmc_project/Provisioning xyz.openbmc_project.Provisioning.Provisioning provisioned",
    "busctl get-property xyz.openbmc_project.Provisioning /xyz/openbmc_project/Provisioning xyz.openbmc_project.Provisioning.Provisioning peerConnected",
];

fn ok(out: &std::process::Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn two_bmcs(root: &Path) -> (Bmc, Bmc) {
    let mut a = Bmc::new(root, "bmc-a", json!({}));
    let mut b = Bmc::new(root, "bmc-b", json!({}));
    // Each knows the other as "skiboards", the README's example peer name.
    a.set_config(
        "static_peers",
        json!([{"name": "skiboards", "address": b.ip.to_string(), "port": b.port}]),
    );
    b.set_config(
        "static_peers",
        json!([{"name": "skiboards", "address": a.ip.to_string(), "port": a.port}]),
    );
    a.start();
    b.start();
    (a, b)
}

#[test]
fn seed_readme_busctl_lines_work_verbatim() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_bmcs(tmp.path());

    // Seed 000 on A, seed 001 on B: self, then the peer by name.
    ok(&a.busctl_line(SEED_000[0]), "seed 000 self");
    ok(&b.busctl_line(SEED_001[0]), "seed 001 self");
    assert_eq!(
        ok(&a.busctl_line(SEED_000[2]), "seed 000 provisioned"),
        "b true"
    );
    ok(&a.busctl_line(SEED_000[1]), "seed 000 skiboards");
    ok(&b.busctl_line(SEED_001[1]), "seed 001 skiboards");
    a.wait_peer_connected(CONNECTED, Duration::from_secs(20));
    b.wait_peer_connected(CONNECTED, Duration::from_secs(20));
    assert_eq!(
        ok(&a.busctl_line(SEED_000[3]), "seed 000 peerConnected"),
        format!("s \"{CONNECTED}\"")
    );

    // Seed 001's lowercase get-property lines contradict upstream PDI (Provisioned,
    // PeerConnected); they fail, and the PDI names work.
    assert!(!b.busctl_line(SEED_001[2]).status.success());
    assert!(!b.busctl_line(SEED_001[3]).status.success());
    let pdi = SEED_001[2].replace(" provisioned", " Provisioned");
    assert_eq!(ok(&b.busctl_line(&pdi), "PDI Provisioned"), "b true");
    let pdi = SEED_001[3].replace(" peerConnected", " PeerConnected");
    assert_eq!(
        ok(&b.busctl_line(&pdi), "PDI PeerConnected"),
        format!("s \"{CONNECTED}\"")
    );
}

async fn signal_stream(bus: &str, member: &str) -> (zbus::Connection, zbus::MessageStream) {
    let conn = zbus::connection::Builder::address(bus)
        .unwrap()
        .build()
        .await
        .unwrap();
    // The sender is matched by the unique name that owns the well-known name.
    let owner = zbus::fdo::DBusProxy::new(&conn)
        .await
        .unwrap()
        .get_name_owner(PDI_BUS.try_into().unwrap())
        .await
        .unwrap();
    let rule = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .sender(owner.as_str())
        .unwrap()
        .path(PDI_PATH)
        .unwrap()
        .interface(PDI_IFACE)
        .unwrap()
        .member(member)
        .unwrap()
        .build();
    let stream = zbus::MessageStream::for_match_rule(rule, &conn, None)
        .await
        .unwrap();
    (conn, stream)
}

async fn collect_bools(stream: &mut zbus::MessageStream, window: Duration) -> Vec<bool> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, stream.next()).await {
        out.push(msg.body().deserialize::<bool>().unwrap());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairing_reports_on_both_surfaces_and_signals_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_bmcs(tmp.path());
    let (_conn, mut signals) = signal_stream(&a.bus.address, "PeerProvisioned").await;
    let (_conn2, mut props) = {
        let conn = zbus::connection::Builder::address(a.bus.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let rule = MatchRule::builder()
            .msg_type(MessageType::Signal)
            .interface("org.freedesktop.DBus.Properties")
            .unwrap()
            .member("PropertiesChanged")
            .unwrap()
            .path(PDI_PATH)
            .unwrap()
            .build();
        let s = zbus::MessageStream::for_match_rule(rule, &conn, None)
            .await
            .unwrap();
        (conn, s)
    };

    assert!(!a.provisioned());
    assert_eq!(
        a.peer_connected(),
        "xyz.openbmc_project.Provisioning.Provisioning.PeerConnectionStatus.NotDetermined"
    );
    pair(&a, &b);

    // Exactly one PeerProvisioned(true) for A's one ProvisionPeer(peer).
    assert_eq!(
        collect_bools(&mut signals, Duration::from_millis(700)).await,
        vec![true]
    );
    // PropertiesChanged was emitted for Provisioned and PeerConnected.
    let mut seen = BTreeMap::new();
    while let Ok(Some(Ok(msg))) =
        tokio::time::timeout(Duration::from_millis(200), props.next()).await
    {
        let (iface, changed, _): (
            String,
            BTreeMap<String, zbus::zvariant::OwnedValue>,
            Vec<String>,
        ) = msg.body().deserialize().unwrap();
        assert_eq!(iface, PDI_IFACE);
        for (k, v) in changed {
            seen.insert(k, v);
        }
    }
    assert!(
        seen.contains_key("Provisioned"),
        "PropertiesChanged(Provisioned) missing: {seen:?}"
    );
    assert_eq!(
        seen.get("PeerConnected")
            .map(|v| String::try_from(v.clone()).unwrap()),
        Some(CONNECTED.to_owned())
    );

    // Both surfaces agree on both BMCs.
    for bmc in [&a, &b] {
        assert_eq!(
            bmc.get(SEED_BUS, SEED_PATH, SEED_IFACE, "provisioned"),
            "b true"
        );
        assert_eq!(
            bmc.get(SEED_BUS, SEED_PATH, SEED_IFACE, "peerConnected"),
            format!("s \"{CONNECTED}\"")
        );
        // The PDI object answers under either bus name (one connection owns both).
        assert_eq!(
            bmc.get(SEED_BUS, PDI_PATH, PDI_IFACE, "Provisioned"),
            "b true"
        );
    }

    // The per-peer object is in the ObjectManager, with the pinned fingerprint of B.
    let paths = a.peer_paths();
    assert_eq!(
        paths,
        vec!["/xyz/openbmc_project/BmcPairingManager/peers/bmc_b".to_owned()]
    );
    let managed = ok(
        &a.busctl(&[
            "call",
            SEED_BUS,
            SEED_PATH,
            "org.freedesktop.DBus.ObjectManager",
            "GetManagedObjects",
            "--json=short",
        ]),
        "GetManagedObjects",
    );
    assert!(
        managed.contains(PEER_IFACE) && managed.contains("bmc_b"),
        "{managed}"
    );
    let fp_on_a = a.get(SEED_BUS, &paths[0], PEER_IFACE, "IdentityFingerprint");
    let b_leaf = fs::read(b.cert_dir().join("identity.der")).unwrap();
    let b_fp = bmc_pairing_manager::identity::summarize(&b_leaf)
        .unwrap()
        .public_key
        .fingerprint();
    assert_eq!(fp_on_a, format!("s \"{}\"", b_fp.to_hex()));
    assert_eq!(
        a.get(SEED_BUS, &paths[0], PEER_IFACE, "State"),
        "s \"xyz.openbmc_project.BmcPairing.Peer.ConnectionState.Connected\""
    );
    assert_eq!(
        a.get(SEED_BUS, &paths[0], PEER_IFACE, "TrustMode"),
        "s \"xyz.openbmc_project.BmcPairing.Peer.TrustMode.FirstContact\""
    );
}

#[test]
fn kill9_and_restart_reconnects_without_provisioning_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, b) = two_bmcs(tmp.path());
    pair(&a, &b);
    // What A learns of B after pairing (B's boot id, from its Hello on B's session to A) is
    // persisted a moment after both show Connected; the pins to compare are those.
    let state_before =
        bmc_test_support::wait_for(Duration::from_secs(10), "A to persist B's boot id", || {
            let bytes = fs::read(a.state_dir().join("state.json")).ok()?;
            let state: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
            (state["peers"][0]["boot_id"].as_u64().unwrap_or(0) != 0).then_some(bytes)
        });

    a.kill9();
    b.wait_peer_connected(NOT_CONNECTED, Duration::from_secs(15));
    a.start();
    // No ProvisionPeer: the persisted pins and identity bring both sides back.
    assert!(a.provisioned());
    a.wait_peer_connected(CONNECTED, Duration::from_secs(20));
    b.wait_peer_connected(CONNECTED, Duration::from_secs(20));
    let state_after: serde_json::Value =
        serde_json::from_slice(&fs::read(a.state_dir().join("state.json")).unwrap()).unwrap();
    let state_before: serde_json::Value = serde_json::from_slice(&state_before).unwrap();
    assert_eq!(
        state_after["peers"], state_before["peers"],
        "pins survive the crash unchanged"
    );
}

async fn call_error(bus: &str, path: &str, iface: &str, member: &str, arg: &str) -> Option<String> {
    let conn = zbus::connection::Builder::address(bus)
        .unwrap()
        .build()
        .await
        .unwrap();
    match conn
        .call_method(Some(PDI_BUS), path, Some(iface), member, &(arg,))
        .await
    {
        Ok(_) => None,
        Err(zbus::Error::MethodError(name, _, _)) => Some(name.to_string()),
        Err(e) => Some(format!("{e}")),
    }
}

/// Everything a refused call must leave untouched: state file, certificates, Provisioned, peers.
#[derive(Debug, PartialEq)]
struct Observable {
    state: Option<Vec<u8>>,
    certs: Vec<(String, Vec<u8>)>,
    provisioned: bool,
    peers: Vec<String>,
}

fn state_fingerprint(bmc: &Bmc) -> Observable {
    let state = fs::read(bmc.state_dir().join("state.json")).ok();
    let mut certs: Vec<(String, Vec<u8>)> = fs::read_dir(bmc.cert_dir())
        .map(|d| {
            d.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().into_owned(),
                        fs::read(e.path()).unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    certs.sort();
    Observable {
        state,
        certs,
        provisioned: bmc.provisioned(),
        peers: bmc.peer_paths(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_dbus_arguments_are_refused_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, _b) = two_bmcs(tmp.path());
    let inv = "xyz.openbmc_project.Common.Error.InvalidArgument";
    let not_found = "xyz.openbmc_project.Common.Error.ResourceNotFound";
    let not_allowed = "xyz.openbmc_project.Common.Error.NotAllowed";

    // Before "self": naming a peer is not allowed, and nothing is created.
    let before = state_fingerprint(&a);
    for iface in [PDI_IFACE, SEED_IFACE] {
        let path = if iface == PDI_IFACE {
            PDI_PATH
        } else {
            SEED_PATH
        };
        assert_eq!(
            call_error(&a.bus.address, path, iface, "ProvisionPeer", "127.0.0.1:1")
                .await
                .as_deref(),
            Some(not_allowed)
        );
        assert_eq!(
            call_error(&a.bus.address, path, iface, "ProvisionPeer", "skiboards")
                .await
                .as_deref(),
            Some(not_allowed)
        );
    }
    assert_eq!(state_fingerprint(&a), before);

    a.provision("self").unwrap();
    let before = state_fingerprint(&a);
    let long = "x".repeat(1000);
    let cases: Vec<(&str, &str)> = vec![
        ("", inv),
        (" ", inv),
        ("1.2.3.4:99999", inv),
        ("[::1]:0", inv),
        ("0.0.0.0", inv),
        ("224.0.0.1", inv),
        ("a/b", inv),
        ("../../etc/passwd", inv),
        ("12345", inv),
        (&long, inv),
        ("unknown-bmc", not_found),
        ("peer", not_found),
    ];
    for (arg, expected) in cases {
        for (path, iface) in [(PDI_PATH, PDI_IFACE), (SEED_PATH, SEED_IFACE)] {
            let got = call_error(&a.bus.address, path, iface, "ProvisionPeer", arg).await;
            assert_eq!(
                got.as_deref(),
                Some(expected),
                "ProvisionPeer({arg:?}) on {iface}"
            );
        }
    }
    // A wrong signature is rejected by the bus binding before any code of ours runs.
    let out = a.busctl(&[
        "call",
        PDI_BUS,
        PDI_PATH,
        PDI_IFACE,
        "ProvisionPeer",
        "i",
        "5",
    ]);
    assert!(!out.status.success());
    // "self" again is idempotent: same identity, same files.
    a.provision("self").unwrap();
    assert_eq!(state_fingerprint(&a), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_pairing_signals_false_and_pins_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Bmc::new(tmp.path(), "bmc-a", json!({"handshake_timeout_ms": 1000}));
    a.start();
    a.provision("self").unwrap();
    let (_conn, mut signals) = signal_stream(&a.bus.address, "PeerProvisioned").await;
    let before = state_fingerprint(&a);
    // Nothing listens on this port.
    a.provision(&format!("127.0.0.1:{}", free_port())).unwrap();
    assert_eq!(
        collect_bools(&mut signals, Duration::from_millis(2500)).await,
        vec![false]
    );
    assert_eq!(state_fingerprint(&a), before);
    assert!(a.provisioned());
}

#[test]
fn unpair_removes_the_peer_and_its_pin() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_bmcs(tmp.path());
    pair(&a, &b);
    let path = a.peer_paths().remove(0);
    ok(
        &a.busctl(&["call", SEED_BUS, &path, PEER_IFACE, "Unpair"]),
        "Unpair",
    );
    assert!(a.peer_paths().is_empty());
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(a.state_dir().join("state.json")).unwrap()).unwrap();
    assert_eq!(state["peers"], json!([]));
    // B can no longer get in: A has no pin for it, so B's side stays down. Its next
    // connection is answered with the goodbye instead of a session.
    b.wait_peer_connected(NOT_CONNECTED, Duration::from_secs(15));
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(b.peer_connected(), NOT_CONNECTED);
    wait_for(Duration::from_secs(15), "A to tell B", || {
        a.log()
            .contains("told an unpaired identity that we unpaired it")
            .then_some(())
    });
}
