//! A BMC pair over months, with real daemons on private dbus-daemons: automatic renewal
//! picked up by the peer, an expiry shown while renewal cannot happen, clocks at 1970 since
//! the first boot, Unpair heard by the other side, re-attestation after a peer's reboot, and
//! a factory reset interrupted by kill -9.
//!
//! Every clock move goes through one mechanism: the `LD_PRELOAD` shim of
//! [`bmc_test_support::fakeclock`], which shifts `CLOCK_REALTIME` of the moved BMC's two
//! daemons (and nothing else). The daemons read their clock as in production.
#![cfg(test)]

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use bmc_test_support::swtpm::Swtpm;
use bmc_test_support::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, X509Certificate};

const IDENTITY_IFACE: &str = "xyz.openbmc_project.BmcPairing.Identity";
const FACTORY_RESET_IFACE: &str = "xyz.openbmc_project.Common.FactoryReset";
const DAY: i64 = 24 * 3600;

fn fast() -> Value {
    json!({
        "identity_check_interval_ms": 200,
        "heartbeat_interval_ms": 300,
        "heartbeat_timeout_ms": 1000,
        "backoff_initial_ms": 100,
        "backoff_max_ms": 400,
    })
}

fn number(text: &str) -> i64 {
    text.split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {text}"))
}

/// `NotAfter` of our identity leaf, from D-Bus.
fn leaf_not_after(bmc: &Bmc) -> i64 {
    number(&bmc.get(SEED_BUS, SEED_PATH, IDENTITY_IFACE, "NotAfter"))
}

fn expired(bmc: &Bmc) -> bool {
    bmc.get(SEED_BUS, SEED_PATH, IDENTITY_IFACE, "Expired") == "b true"
}

fn peer_property(bmc: &Bmc, name: &str) -> String {
    let path = bmc.peer_paths().remove(0);
    bmc.get(SEED_BUS, &path, PEER_IFACE, name)
}

fn occurrences(text: &str, needles: &[&str]) -> usize {
    needles.iter().map(|n| text.matches(n).count()).sum()
}

#[test]
fn the_leaf_is_renewed_before_expiry_and_the_peer_reconnects_on_the_renewed_chain() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Bmc::new(tmp.path(), "bmc-a", fast());
    let mut b = Bmc::new(tmp.path(), "bmc-b", fast());
    let (clock_a, clock_b) = (a.use_clock(), b.use_clock());
    a.start();
    b.start();
    pair(&a, &b);
    let not_after = leaf_not_after(&a);
    let pinned = peer_property(&b, "IdentityFingerprint");

    // Ten days before the leaf expires, on both BMCs: A renews on its timer, unasked.
    clock_a.set_now(not_after - 10 * DAY);
    clock_b.set_now(not_after - 10 * DAY);
    let renewed = wait_for(Duration::from_secs(20), "A to renew its leaf", || {
        let now = leaf_not_after(&a);
        (now > not_after).then_some(now)
    });
    assert!(
        renewed >= not_after - 10 * DAY + 700 * DAY,
        "a full lifetime"
    );
    assert!(a.log().contains("identity certificate renewed"), "journal");
    assert_eq!(
        peer_property(&b, "IdentityFingerprint"),
        pinned,
        "same key, same pin"
    );

    // A day past the old notAfter only the renewed chain is valid. B starts over (fresh
    // handshakes both ways) and pairs up again with no ProvisionPeer.
    clock_a.set_now(not_after + DAY);
    clock_b.set_now(not_after + DAY);
    b.kill9();
    b.start();
    a.wait_peer_connected(CONNECTED, Duration::from_secs(30));
    b.wait_peer_connected(CONNECTED, Duration::from_secs(30));
    assert!(!expired(&a) && !expired(&b));
}

#[test]
fn an_expired_leaf_that_cannot_be_renewed_shows_on_dbus_and_in_the_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&tmp.path().join("swtpm"));
    let mut a = Bmc::new(
        tmp.path(),
        "bmc-a",
        json!({
            "key_backend": {"type": "tpm", "tcti": tpm.tcti()},
            "identity_check_interval_ms": 200,
            "attestation": "off",
        }),
    );
    let clock = a.use_clock();
    a.start();
    a.provision("self").unwrap();
    assert!(!expired(&a));
    let not_after = leaf_not_after(&a);

    // The TPM hangs, and time passes the leaf's notAfter: no renewal is possible.
    tpm.freeze();
    clock.set_now(not_after + DAY);
    wait_for(Duration::from_secs(20), "Expired on D-Bus", || {
        expired(&a).then_some(())
    });
    wait_for(Duration::from_secs(20), "the journal to say so", || {
        a.log()
            .contains("our identity certificate has expired")
            .then_some(())
    });
    assert_eq!(leaf_not_after(&a), not_after);

    // The TPM answers again: renewed at the next check, no operator needed.
    tpm.thaw();
    wait_for(
        Duration::from_secs(40),
        "renewal once the TPM answers",
        || (!expired(&a)).then_some(()),
    );
    assert!(leaf_not_after(&a) > not_after + DAY);
    assert!(a.provisioned());
}

/// Pairs `a` and `b` (already on their clocks) and checks what the 1970 side `a` did: its
/// certificate does not start in 1970, and no peer moved its time floor.
fn pairs_with_a_clock_at_1970(a: &mut Bmc, b: &mut Bmc) {
    a.start();
    b.start();
    pair(a, b);
    let leaf = fs::read(a.cert_dir().join("identity.der")).unwrap();
    let (_, cert) = X509Certificate::from_der(&leaf).unwrap();
    assert!(
        cert.validity().not_before.timestamp() > 1_600_000_000,
        "a certificate issued at 1970 starts at the floor, not in 1970"
    );
    let state: Value =
        serde_json::from_slice(&fs::read(a.state_dir().join("state.json")).unwrap()).unwrap();
    assert_eq!(
        state["time_floor"], 0,
        "nobody moved the floor of the BMC whose clock is at 1970"
    );
}

#[test]
fn two_bmcs_at_1970_since_first_boot_pair() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Bmc::new(tmp.path(), "bmc-a", fast());
    let mut b = Bmc::new(tmp.path(), "bmc-b", fast());
    a.use_clock().at_1970(3600);
    b.use_clock().at_1970(120);
    pairs_with_a_clock_at_1970(&mut a, &mut b);
}

#[test]
fn a_bmc_at_1970_pairs_with_a_bmc_at_real_time_weeks_after_the_build() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Bmc::new(tmp.path(), "bmc-a", fast());
    let mut b = Bmc::new(tmp.path(), "bmc-b", fast());
    a.use_clock().at_1970(600);
    // B's clock is right, and its certificate is issued weeks after the firmware build
    // that is A's only idea of the time.
    b.use_clock().set_offset(30 * DAY);
    pairs_with_a_clock_at_1970(&mut a, &mut b);
}

#[test]
fn unpair_is_heard_by_the_other_side_which_stops_dialling() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Bmc::new(tmp.path(), "bmc-a", fast());
    let mut b = Bmc::new(tmp.path(), "bmc-b", fast());
    a.start();
    b.start();
    pair(&a, &b);
    let b_on_a = a.peer_paths().remove(0);
    let out = a.busctl(&["call", SEED_BUS, &b_on_a, PEER_IFACE, "Unpair"]);
    assert!(out.status.success(), "{out:?}");
    wait_for(Duration::from_secs(15), "B to hear it was unpaired", || {
        (peer_property(&b, "UnpairedByPeer") == "b true").then_some(())
    });
    assert!(b.log().contains("the peer unpaired us"));
    b.wait_peer_connected(NOT_CONNECTED, Duration::from_secs(10));
    // Every connection B makes costs A a handshake (a TPM signature on a board); A's
    // journal names each one it refuses or answers with the goodbye.
    let seen = [
        "refused unpinned client",
        "told an unpaired identity that we unpaired it",
    ];
    let before = occurrences(&a.log(), &seen);
    std::thread::sleep(Duration::from_secs(4)); // ten of B's backoff periods
    assert_eq!(
        occurrences(&a.log(), &seen),
        before,
        "B kept dialling A after it was told"
    );
    assert_eq!(
        peer_property(&b, "IdentityFingerprint").len(),
        64 + 4,
        "B keeps the pin"
    );

    // Across a restart of B, still not dialled.
    b.kill9();
    b.start();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(occurrences(&a.log(), &seen), before);
    assert_eq!(peer_property(&b, "UnpairedByPeer"), "b true");
}

#[test]
fn a_peer_unreachable_at_unpair_time_is_told_at_its_next_contact() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Bmc::new(tmp.path(), "bmc-a", fast());
    let mut b = Bmc::new(tmp.path(), "bmc-b", fast());
    a.start();
    b.start();
    pair(&a, &b);
    b.kill9();
    let b_on_a = a.peer_paths().remove(0);
    let out = a.busctl(&["call", SEED_BUS, &b_on_a, PEER_IFACE, "Unpair"]);
    assert!(out.status.success(), "{out:?}");
    // A restart of A in between: the goodbye it owes survives it.
    a.kill9();
    a.start();
    b.start();
    wait_for(
        Duration::from_secs(15),
        "B to be told at its next contact",
        || (peer_property(&b, "UnpairedByPeer") == "b true").then_some(()),
    );
    assert!(
        a.log()
            .contains("told an unpaired identity that we unpaired it")
    );
}

/// A enforces B's firmware measurement; B's Hello carries the boot id in `boot_file`.
fn enforcing_pair(root: &Path, policy: &str) -> (Bmc, Bmc, std::path::PathBuf) {
    let boot_file = root.join("bmc-b-boot-id");
    fs::write(&boot_file, "first boot").unwrap();
    let mut a = Bmc::new(root, "bmc-a", fast());
    let mut b = Bmc::builder(root, "bmc-b")
        .config(fast())
        .config(json!({"boot_id_path": boot_file}))
        .build();
    b.start();
    let firmware = b.measured_files().remove(0);
    let reference = root.join("reference.json");
    let digest = bmc_pairing_core::hex::hex_encode(&Sha256::digest(fs::read(&firmware).unwrap()));
    fs::write(
        &reference,
        format!(r#"{{"version": 1, "measurements": {{"1": "{digest}"}}}}"#),
    )
    .unwrap();
    a.set_attestation_config("measurement_policy", json!(policy));
    a.set_attestation_config("reference_values", json!(reference));
    a.start();
    pair(&a, &b);
    // B's session into A has carried its first boot id.
    wait_for(Duration::from_secs(10), "B's session into A", || {
        (peer_property(&a, "IncomingState").ends_with(".Connected\"")).then_some(())
    });
    (a, b, boot_file)
}

/// B reboots into other firmware: its daemons restart with a new boot id and another
/// firmware measurement.
fn reboot_into_other_firmware(b: &mut Bmc, boot_file: &Path) {
    b.kill9();
    fs::write(b.measured_files().remove(0), b"reflashed firmware").unwrap();
    fs::write(boot_file, "second boot").unwrap();
    b.start();
}

#[test]
fn a_peer_back_from_a_reboot_with_other_measurements_is_quarantined_under_enforce() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut b, boot_file) = enforcing_pair(tmp.path(), "enforce");
    let started = Instant::now();
    reboot_into_other_firmware(&mut b, &boot_file);
    wait_for(Duration::from_secs(30), "A to quarantine B", || {
        peer_property(&a, "AttestationOutcome")
            .ends_with(".Rejected\"")
            .then_some(())
    });
    eprintln!("quarantined {:?} after the reboot", started.elapsed());
    assert!(a.log().contains("the peer rebooted; re-attesting it"));
    a.wait_peer_connected(NOT_CONNECTED, Duration::from_secs(15));
    b.wait_peer_connected(NOT_CONNECTED, Duration::from_secs(15));
}

#[test]
fn under_audit_a_rebooted_peer_with_other_measurements_shows_findings_and_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut b, boot_file) = enforcing_pair(tmp.path(), "audit");
    reboot_into_other_firmware(&mut b, &boot_file);
    wait_for(
        Duration::from_secs(30),
        "the findings on A's peer object",
        || {
            peer_property(&a, "AttestationOutcome")
                .ends_with(".TrustedWithFindings\"")
                .then_some(())
        },
    );
    a.wait_peer_connected(CONNECTED, Duration::from_secs(15));
}

/// What a restart after a reset that was killed midway may show: exactly the old state or
/// exactly a clean one.
#[derive(Debug, PartialEq)]
enum After {
    Old,
    Clean,
}

fn classify(a: &Bmc, old_fingerprint: &str) -> After {
    let certs = [
        a.cert_dir().join("identity.der"),
        a.cert_dir().join("ca.der"),
    ];
    let keys = a.state_dir().join("keys");
    let key_files = fs::read_dir(&keys).map(|d| d.count()).unwrap_or(0);
    let peers = a.peer_paths();
    assert!(
        a.cert_dir().join("anchors/operator.pem").exists(),
        "the operator's trust anchor is kept"
    );
    assert!(
        !a.state_dir().join("factory-reset.pending").exists(),
        "a started daemon has finished any reset"
    );
    if a.provisioned() {
        assert!(
            certs.iter().all(|c| c.exists()),
            "provisioned without certificates"
        );
        assert_eq!(peers.len(), 1, "provisioned but the peer is gone");
        let leaf = fs::read(&certs[0]).unwrap();
        let fp = bmc_pairing_manager::identity::summarize(&leaf)
            .unwrap()
            .public_key
            .fingerprint()
            .to_hex();
        assert_eq!(fp, old_fingerprint, "a third identity");
        After::Old
    } else {
        assert!(peers.is_empty(), "unprovisioned but peers kept: {peers:?}");
        assert!(
            certs.iter().all(|c| !c.exists()),
            "unprovisioned but certificates kept"
        );
        assert_eq!(key_files, 0, "unprovisioned but keys kept");
        After::Clean
    }
}

#[test]
fn factory_reset_killed_at_any_point_restarts_to_the_old_or_a_clean_state() {
    let mut outcomes = Vec::new();
    // Kill points from before the call reaches the daemon to after it answered.
    for (round, delay_ms) in [0u64, 5, 10, 20, 40, 80, 400].into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let mut a = Bmc::new(tmp.path(), "bmc-a", fast());
        let mut b = Bmc::new(tmp.path(), "bmc-b", fast());
        a.start();
        b.start();
        pair(&a, &b);
        let anchors = a.cert_dir().join("anchors");
        fs::create_dir_all(&anchors).unwrap();
        fs::write(
            anchors.join("operator.pem"),
            b"kept as the operator left it",
        )
        .unwrap();
        let leaf = fs::read(a.cert_dir().join("identity.der")).unwrap();
        let old = bmc_pairing_manager::identity::summarize(&leaf)
            .unwrap()
            .public_key
            .fingerprint()
            .to_hex();
        let bus = a.bus.address.clone();
        let call = std::thread::spawn(move || {
            std::process::Command::new("busctl")
                .arg(format!("--address={bus}"))
                .args(["call", SEED_BUS, SEED_PATH, FACTORY_RESET_IFACE, "Reset"])
                .output()
                .unwrap()
        });
        std::thread::sleep(Duration::from_millis(delay_ms));
        a.kill9();
        let _ = call.join();
        a.start();
        let after = classify(&a, &old);
        eprintln!("round {round}: killed {delay_ms} ms after Reset(): {after:?}");
        outcomes.push(after);
    }
    // The commit point itself: the marker is written, nothing else happened yet.
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Bmc::new(tmp.path(), "bmc-a", fast());
    let mut b = Bmc::new(tmp.path(), "bmc-b", fast());
    a.start();
    b.start();
    pair(&a, &b);
    fs::create_dir_all(a.cert_dir().join("anchors")).unwrap();
    fs::write(a.cert_dir().join("anchors/operator.pem"), b"anchor").unwrap();
    a.kill9();
    fs::write(a.state_dir().join("factory-reset.pending"), b"").unwrap();
    a.start();
    assert_eq!(classify(&a, ""), After::Clean);
    assert!(
        a.log()
            .contains("a factory reset was interrupted; finishing it")
    );
    // And a reset that ran to the end, answered on D-Bus.
    a.kill9();
    let mut a2 = Bmc::new(tmp.path(), "bmc-c", fast());
    a2.start();
    a2.provision("self").unwrap();
    fs::create_dir_all(a2.cert_dir().join("anchors")).unwrap();
    fs::write(a2.cert_dir().join("anchors/operator.pem"), b"anchor").unwrap();
    let out = a2.busctl(&["call", SEED_BUS, SEED_PATH, FACTORY_RESET_IFACE, "Reset"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!a2.provisioned());
    assert_eq!(classify(&a2, ""), After::Clean);
    a2.provision("self").unwrap();
    assert!(a2.provisioned(), "a new identity after the reset");
    eprintln!("outcomes of the killed resets: {outcomes:?}");
}
