//! A quarantined peer (its pinned identity proved itself, but an Enforce measurement policy
//! rejected it) is never dialled or accepted until a `Reattest()` passes: not when discovery
//! reports it at a new address, not when our own certificates change, not after a restart.
//! Real daemons on private dbus-daemons, real SPDM, real OpenSSL for the factory CA.
#![cfg(test)]

use std::fs;
use std::path::Path;
use std::time::Duration;

use bmc_test_support::factory::Factory;
use bmc_test_support::*;
use serde_json::json;
use sha2::{Digest, Sha256};

const REJECTED: &str = "s \"xyz.openbmc_project.BmcPairing.Peer.AttestationOutcome.Rejected\"";

/// How long a quarantined peer is watched for a session that must not come.
const QUIET: Duration = Duration::from_secs(6);

/// A enforces B's measured firmware; B listens on every loopback address (so it also answers
/// where discovery may later report it). They pair, then B's firmware changes and A's
/// `Reattest()` quarantines B. Returns both, and the path of B's object on A.
fn quarantined_pair(root: &Path) -> (Bmc, Bmc, String) {
    quarantined_pair_after(root, |_, _| {})
}

/// [`quarantined_pair`], running `while_admitted` once they are paired, before the
/// quarantine.
fn quarantined_pair_after(
    root: &Path,
    while_admitted: impl FnOnce(&Bmc, &Bmc),
) -> (Bmc, Bmc, String) {
    let mut a = Bmc::new(root, "bmc-a", json!({"identity_check_interval_ms": 200}));
    let mut b = Bmc::new(root, "bmc-b", json!({"listen_address": null}));
    b.start();
    let firmware = b.measured_files().remove(0);
    let reference = root.join("reference.json");
    let digest = bmc_pairing_core::hex::hex_encode(&Sha256::digest(fs::read(&firmware).unwrap()));
    fs::write(
        &reference,
        format!(r#"{{"version": 1, "measurements": {{"1": "{digest}"}}}}"#),
    )
    .unwrap();
    a.set_attestation_config("measurement_policy", json!("enforce"));
    a.set_attestation_config("reference_values", json!(reference));
    a.start();
    pair(&a, &b);
    let peer = a.peer_paths().remove(0);
    while_admitted(&a, &b);

    fs::write(&firmware, b"unapproved firmware").unwrap();
    let out = a.busctl(&["call", SEED_BUS, &peer, PEER_IFACE, "Reattest"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        a.get(SEED_BUS, &peer, PEER_IFACE, "AttestationOutcome"),
        REJECTED
    );
    a.wait_peer_connected(NOT_CONNECTED, Duration::from_secs(15));
    b.wait_peer_connected(NOT_CONNECTED, Duration::from_secs(15));
    (a, b, peer)
}

/// Asserts that for `QUIET` neither side shows a session and A starts no dial to B.
fn stays_apart(a: &Bmc, b: &Bmc, peer: &str, why: &str) {
    let deadline = std::time::Instant::now() + QUIET;
    while std::time::Instant::now() < deadline {
        let outgoing = a.get(SEED_BUS, peer, PEER_IFACE, "OutgoingState");
        assert!(
            outgoing.ends_with(".NotConnected\"") || outgoing.ends_with(".NotDetermined\""),
            "{why}: A dialled its quarantined peer (OutgoingState {outgoing})"
        );
        assert_ne!(b.peer_connected(), CONNECTED, "{why}: B got a session");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_quarantined_peer_reported_at_a_new_address_is_not_dialled() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut a, b, peer) = quarantined_pair(tmp.path());
    // Discovery (a static peer) now reports B, by its certificate name, at another address
    // where B's pinned identity answers.
    a.kill9();
    a.set_config(
        "static_peers",
        json!([{"name": "bmc-b", "address": "127.0.0.1", "port": b.port}]),
    );
    a.start();
    stays_apart(&a, &b, &peer, "after discovery moved the peer");
    assert_eq!(
        a.get(SEED_BUS, &peer, PEER_IFACE, "AttestationOutcome"),
        REJECTED
    );
}

#[test]
fn a_quarantined_peer_is_not_dialled_when_our_certificates_change() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, peer) = quarantined_pair(tmp.path());
    // A's CA certificate is replaced by one the factory signed (same keys): the daemon picks
    // up the new chain at its next identity check and restarts its diallers.
    let factory = Factory::new(&tmp.path().join("factory"));
    factory.enrol(&a);
    wait_for(Duration::from_secs(10), "A to use its new chain", || {
        a.log()
            .contains("identity certificates changed on disk")
            .then_some(())
    });
    stays_apart(&a, &b, &peer, "after our certificates changed");
}

/// A resumed TLS session skips the certificate verifier; A re-checks the identity against
/// its pins as they are now, which leave a quarantined peer out. OpenSSL holding B's key
/// resumes a session A ticketed before the quarantine: the session resumes (so the re-check,
/// not the verifier, decides) and gets no `Alive`.
#[test]
fn a_resumed_session_of_a_quarantined_peer_is_refused() {
    use bmc_pairing_core::link::frame::Frame;
    use bmc_test_support::openssl;
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    fs::create_dir_all(&certs).unwrap();
    let hello = Frame::Hello {
        seq: 0,
        boot_id: 0,
        name: "bmc-b".into(),
    }
    .to_bytes()
    .unwrap();
    let alive = Frame::Alive { seq: 0 }.to_bytes().unwrap();
    let before = certs.join("ticket-before.pem");
    let (a, b, _peer) = quarantined_pair_after(tmp.path(), |a, b| {
        let as_b = openssl::bmc_identity(b, &certs);
        let first = certs.join("ticket-first.pem");
        let out = openssl::s_client_session(
            a.ip,
            a.port,
            Some(&as_b),
            None,
            &first,
            &hello,
            Duration::from_secs(3),
        );
        assert!(
            openssl::contains(&out.stdout, &alive),
            "the admitted B must get a session: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        // Positive control: while admitted, B's ticket resumes (and yields the next one).
        let out = openssl::s_client_session(
            a.ip,
            a.port,
            Some(&as_b),
            Some(&first),
            &before,
            &hello,
            Duration::from_secs(3),
        );
        assert!(
            openssl::resumed(&out) && openssl::contains(&out.stdout, &alive),
            "the admitted B must resume: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            a.log()
        );
    });
    let as_b = openssl::bmc_identity(&b, &certs);
    let out = openssl::s_client_session(
        a.ip,
        a.port,
        Some(&as_b),
        Some(&before),
        &certs.join("ticket-after.pem"),
        &hello,
        Duration::from_secs(3),
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        openssl::resumed(&out),
        "the attempt must resume: {said} {:?} {}",
        fs::metadata(&before),
        a.log()
    );
    assert!(
        !openssl::contains(&out.stdout, &alive),
        "A opened a session for its quarantined peer on an old ticket: {said}"
    );
    assert_ne!(b.peer_connected(), CONNECTED);
    drop(a);
}
