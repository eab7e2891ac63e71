//! Pairing requires attestation (DESIGN.md §1, §4): each BMC's `bmc-attestation` attests the
//! peer over SPDM before anything is pinned, the pin is the attested identity, and the TLS
//! channel is accepted only with that very key. Real daemons on private dbus-daemons, real
//! SPDM over TCP, real OpenSSL for the factory CA.
#![cfg(test)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use bmc_pairing_manager::identity::cert::ChainFiles;
use bmc_pairing_manager::identity::file::FileKeyStore;
use bmc_pairing_manager::identity::summarize;
use bmc_test_support::factory::Factory;
use bmc_test_support::*;
use futures_util::StreamExt;
use serde_json::json;
use sha2::{Digest, Sha256};

const ATT_BUS: &str = "xyz.openbmc_project.attestation";
const TRUSTED: &str = "s \"xyz.openbmc_project.BmcPairing.Peer.AttestationOutcome.Trusted\"";

fn fingerprint_of(bmc: &Bmc) -> String {
    let leaf = fs::read(bmc.cert_dir().join("identity.der")).unwrap();
    summarize(&leaf).unwrap().public_key.fingerprint().to_hex()
}

fn started(root: &Path, name: &str, extra: serde_json::Value) -> Bmc {
    let mut bmc = Bmc::new(root, name, extra);
    bmc.start();
    bmc
}

async fn peer_provisioned_signals(bmc: &Bmc, window: Duration, act: impl FnOnce()) -> Vec<bool> {
    let conn = zbus::connection::Builder::address(bmc.bus.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();
    let owner = zbus::fdo::DBusProxy::new(&conn)
        .await
        .unwrap()
        .get_name_owner(PDI_BUS.try_into().unwrap())
        .await
        .unwrap();
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(owner.as_str())
        .unwrap()
        .path(PDI_PATH)
        .unwrap()
        .interface(PDI_IFACE)
        .unwrap()
        .member("PeerProvisioned")
        .unwrap()
        .build();
    let mut stream = zbus::MessageStream::for_match_rule(rule, &conn, None)
        .await
        .unwrap();
    act();
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, stream.next()).await {
        out.push(msg.body().deserialize::<bool>().unwrap());
    }
    out
}

#[test]
fn pairing_attests_both_ways_and_pins_the_attested_identity() {
    let tmp = tempfile::tempdir().unwrap();
    let a = started(tmp.path(), "bmc-a", json!({}));
    let b = started(tmp.path(), "bmc-b", json!({}));
    pair(&a, &b);
    for (me, other) in [(&a, &b), (&b, &a)] {
        let peer = me.peer_paths().remove(0);
        assert_eq!(
            me.get(SEED_BUS, &peer, PEER_IFACE, "AttestationOutcome"),
            TRUSTED
        );
        assert_eq!(
            me.get(SEED_BUS, &peer, PEER_IFACE, "IdentityFingerprint"),
            format!("s \"{}\"", fingerprint_of(other))
        );
        assert_ne!(me.get(SEED_BUS, &peer, PEER_IFACE, "LastAttested"), "t 0");
        // Its attestation daemon attested the other's SPDM responder: the object it keeps
        // for that address reports the same identity.
        let tree = me.busctl(&["tree", "--list", ATT_BUS]);
        let att_peer = String::from_utf8_lossy(&tree.stdout)
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with("/xyz/openbmc_project/attestation/peers/"))
            .unwrap_or_else(|| panic!("{} attested nothing", me.name))
            .to_owned();
        let fp = me.get(
            ATT_BUS,
            &att_peer,
            "xyz.openbmc_project.BmcPairing.Attestation.Peer",
            "IdentityFingerprint",
        );
        assert_eq!(fp, format!("s \"{}\"", fingerprint_of(other)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_key_that_differs_from_the_attested_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let a = started(tmp.path(), "bmc-a", json!({}));
    let mut b = Bmc::new(tmp.path(), "bmc-b", json!({}));
    // B's SPDM responder serves another identity than its pairing channel: a proxy in front
    // of B, or a misconfiguration. Attestation alone must not be enough.
    let decoy = tmp.path().join("decoy");
    ChainFiles::new(decoy.join("root/etc/bmc-pairing-manager/certs"))
        .create(
            &FileKeyStore::new(decoy.join("state/keys")),
            "bmc-b",
            std::time::SystemTime::now(),
        )
        .unwrap();
    b.set_attestation_config("cert_root", json!(decoy.join("root")));
    b.set_attestation_config("state_dir", json!(decoy.join("state")));
    b.start();
    a.provision("self").unwrap();
    b.provision("self").unwrap();
    let before = fs::read(a.state_dir().join("state.json")).unwrap();
    let signals = peer_provisioned_signals(&a, Duration::from_secs(5), || {
        a.provision(&b.endpoint()).unwrap()
    })
    .await;
    assert_eq!(signals, vec![false]);
    assert!(a.peer_paths().is_empty());
    assert_eq!(
        fs::read(a.state_dir().join("state.json")).unwrap(),
        before,
        "no pin"
    );
    assert!(
        a.log().contains("is not the attested identity"),
        "{}",
        a.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_attestation_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Bmc::new(tmp.path(), "bmc-a", json!({}));
    // A enforces reference values B does not meet.
    let reference = tmp.path().join("reference.json");
    fs::write(
        &reference,
        format!(
            r#"{{"version": 1, "measurements": {{"1": "{}"}}}}"#,
            "00".repeat(32)
        ),
    )
    .unwrap();
    a.set_attestation_config("measurement_policy", json!("enforce"));
    a.set_attestation_config("reference_values", json!(reference));
    a.start();
    let b = started(tmp.path(), "bmc-b", json!({}));
    a.provision("self").unwrap();
    b.provision("self").unwrap();
    let before = fs::read(a.state_dir().join("state.json")).unwrap();
    let signals = peer_provisioned_signals(&a, Duration::from_secs(5), || {
        a.provision(&b.endpoint()).unwrap()
    })
    .await;
    assert_eq!(signals, vec![false]);
    assert!(a.provisioned());
    assert!(a.peer_paths().is_empty());
    assert_eq!(fs::read(a.state_dir().join("state.json")).unwrap(), before);
    assert!(
        a.log().contains("refused the peer (Rejected)"),
        "{}",
        a.log()
    );
}

#[test]
fn anchored_peers_pair_from_one_side_and_strangers_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let anchored = json!({"trust_mode": "anchored", "identity_check_interval_ms": 200});
    let a = started(tmp.path(), "bmc-a", anchored.clone());
    let b = started(tmp.path(), "bmc-b", anchored.clone());
    a.provision("self").unwrap();
    b.provision("self").unwrap();
    let pins_before = (fingerprint_of(&a), fingerprint_of(&b));
    let factory = Factory::new(&tmp.path().join("factory"));
    factory.enrol(&a);
    factory.enrol(&b);
    assert_eq!(
        (fingerprint_of(&a), fingerprint_of(&b)),
        pins_before,
        "enrolment keeps the identity keys"
    );

    // Only A's operator names the other BMC: B attests A when A connects, then pins it.
    // Each attestation daemon picks up the enrolled chain at its next connection; until B's
    // has, attesting B under the anchored policy fails and is simply asked again.
    wait_for(
        Duration::from_secs(30),
        "A to pair with B by attestation",
        || {
            let _ = a.provision(&b.endpoint());
            std::thread::sleep(Duration::from_millis(500));
            (!a.peer_paths().is_empty()).then_some(())
        },
    );
    a.wait_peer_connected(CONNECTED, Duration::from_secs(30));
    b.wait_peer_connected(CONNECTED, Duration::from_secs(30));
    let on_b = b.peer_paths().remove(0);
    assert_eq!(
        b.get(SEED_BUS, &on_b, PEER_IFACE, "TrustMode"),
        "s \"xyz.openbmc_project.BmcPairing.Peer.TrustMode.Anchored\""
    );
    assert_eq!(
        b.get(SEED_BUS, &on_b, PEER_IFACE, "AttestationOutcome"),
        TRUSTED
    );
    assert_eq!(
        b.get(SEED_BUS, &on_b, PEER_IFACE, "IdentityFingerprint"),
        format!("s \"{}\"", fingerprint_of(&a))
    );
    assert!(b.log().contains("anchored peer attested and pinned"));

    // A self-provisioned stranger (no factory certificate) naming B gets nowhere: B's
    // listener refuses a chain that neither is pinned nor verifies to B's anchor.
    let c = started(tmp.path(), "bmc-c", anchored);
    c.provision("self").unwrap();
    let _ = c.provision(&b.endpoint());
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(b.peer_paths().len(), 1, "B pinned nobody else");
    assert_ne!(c.peer_connected(), CONNECTED);
}

/// The trust store on D-Bus decides anchored admission at once: with the factory root
/// deleted (`Object.Delete`), B's listener refuses A's factory chain; installed again
/// (`Certs.Install`), A pairs from its side alone.
#[test]
fn an_anchor_deleted_on_dbus_stops_admitting_and_one_installed_admits() {
    const AUTHORITY: &str = "/xyz/openbmc_project/certs/authority/bmcpairing";
    let tmp = tempfile::tempdir().unwrap();
    let anchored = json!({"trust_mode": "anchored", "identity_check_interval_ms": 200});
    let a = started(tmp.path(), "bmc-a", anchored.clone());
    let b = started(tmp.path(), "bmc-b", anchored);
    a.provision("self").unwrap();
    b.provision("self").unwrap();
    let factory = Factory::new(&tmp.path().join("factory"));
    factory.enrol(&a);
    factory.enrol(&b);
    let anchor = wait_for(Duration::from_secs(10), "B's anchor on D-Bus", || {
        let tree = b.busctl(&["tree", "--list", SEED_BUS]);
        String::from_utf8_lossy(&tree.stdout)
            .lines()
            .map(str::trim)
            .find(|l| l.starts_with(&format!("{AUTHORITY}/")))
            .map(str::to_owned)
    });
    let out = b.busctl(&[
        "call",
        SEED_BUS,
        &anchor,
        "xyz.openbmc_project.Object.Delete",
        "Delete",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for _ in 0..4 {
        let _ = a.provision(&b.endpoint());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(b.peer_paths().is_empty(), "B admitted A without an anchor");
    assert!(
        a.peer_paths().is_empty(),
        "A pinned B without being admitted"
    );

    let out = b.busctl(&[
        "call",
        SEED_BUS,
        AUTHORITY,
        "xyz.openbmc_project.Certs.Install",
        "Install",
        "s",
        factory.root().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for(
        Duration::from_secs(30),
        "A to pair with B once B anchors the factory again",
        || {
            let _ = a.provision(&b.endpoint());
            std::thread::sleep(Duration::from_millis(500));
            (!b.peer_paths().is_empty()).then_some(())
        },
    );
    a.wait_peer_connected(CONNECTED, Duration::from_secs(30));
    b.wait_peer_connected(CONNECTED, Duration::from_secs(30));
}

fn sha256_hex(path: &Path) -> String {
    bmc_pairing_core::hex::hex_encode(&Sha256::digest(fs::read(path).unwrap()))
}

#[test]
fn reattest_quarantines_on_an_authenticated_rejection_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Bmc::new(tmp.path(), "bmc-a", json!({}));
    let b = {
        let mut b = Bmc::new(tmp.path(), "bmc-b", json!({}));
        b.start();
        b
    };
    // A enforces B's measured firmware as it is now.
    let firmware = b.measured_files().remove(0);
    let reference = tmp.path().join("reference.json");
    fs::write(
        &reference,
        format!(
            r#"{{"version": 1, "measurements": {{"1": "{}"}}}}"#,
            sha256_hex(&firmware)
        ),
    )
    .unwrap();
    a.set_attestation_config("measurement_policy", json!("enforce"));
    a.set_attestation_config("reference_values", json!(reference));
    a.start();
    pair(&a, &b);
    let peer = a.peer_paths().remove(0);
    let reattest = |bmc: &Bmc| bmc.busctl(&["call", SEED_BUS, &peer, PEER_IFACE, "Reattest"]);

    // B's firmware changes: its identity still proves itself, its measurement does not match.
    fs::write(&firmware, b"unapproved firmware").unwrap();
    assert!(reattest(&a).status.success());
    assert_eq!(
        a.get(SEED_BUS, &peer, PEER_IFACE, "AttestationOutcome"),
        "s \"xyz.openbmc_project.BmcPairing.Peer.AttestationOutcome.Rejected\""
    );
    // Quarantined: no session either way, but the pin is kept.
    a.wait_peer_connected(NOT_CONNECTED, Duration::from_secs(15));
    b.wait_peer_connected(NOT_CONNECTED, Duration::from_secs(15));
    let state: serde_json::Value =
        serde_json::from_slice(&fs::read(a.state_dir().join("state.json")).unwrap()).unwrap();
    assert_eq!(state["peers"][0]["fingerprint"], json!(fingerprint_of(&b)));
    assert_eq!(state["peers"][0]["attestation"], json!("Rejected"));

    // Approved firmware again: a Reattest lifts the quarantine.
    fs::write(&firmware, format!("firmware of {}", b.name)).unwrap();
    assert!(reattest(&a).status.success());
    assert_eq!(
        a.get(SEED_BUS, &peer, PEER_IFACE, "AttestationOutcome"),
        TRUSTED
    );
    a.wait_peer_connected(CONNECTED, Duration::from_secs(20));
    b.wait_peer_connected(CONNECTED, Duration::from_secs(20));

    // A peer that does not answer changes nothing.
    let mut b = b;
    b.attestation.take();
    let out = reattest(&a);
    assert!(!out.status.success());
    assert_eq!(
        a.get(SEED_BUS, &peer, PEER_IFACE, "AttestationOutcome"),
        TRUSTED
    );
}
