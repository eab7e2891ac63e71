//! The pairing channel against foreign TLS peers (OpenSSL) and hostile connections.
#![cfg(test)]

use std::net::TcpStream;
use std::time::Duration;

use bmc_pairing_core::link::frame::Frame;
use bmc_test_support::openssl::{self, Pem};
use bmc_test_support::*;
use serde_json::json;

fn hello() -> Vec<u8> {
    Frame::Hello {
        seq: 0,
        boot_id: 0,
        name: "intruder".into(),
    }
    .to_bytes()
    .unwrap()
}

fn alive() -> Vec<u8> {
    Frame::Alive { seq: 0 }.to_bytes().unwrap()
}

fn paired(root: &std::path::Path) -> (Bmc, Bmc) {
    let fast = json!({"heartbeat_interval_ms": 300, "heartbeat_timeout_ms": 1000});
    let mut a = Bmc::new(root, "bmc-a", fast.clone());
    let mut b = Bmc::new(root, "bmc-b", fast);
    a.start();
    b.start();
    pair(&a, &b);
    (a, b)
}

fn b_identity_as_pem(b: &Bmc, dir: &std::path::Path) -> Pem {
    openssl::from_der(
        dir,
        "bmc-b-real",
        &b.cert_dir().join("identity.der"),
        &b.cert_dir().join("ca.der"),
        &b.state_dir().join("keys/identity.p8"),
    )
}

#[test]
fn openssl_clients_without_the_pinned_identity_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = paired(tmp.path());
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();

    // Positive control: B's real identity (the file backend keeps it in PKCS#8) is accepted
    // and A answers our Hello with Alive. Without this, "refused" below could mean "broken".
    let real = b_identity_as_pem(&b, &certs);
    let out = openssl::s_client(
        a.ip,
        a.port,
        Some(&real),
        &[],
        &hello(),
        Duration::from_secs(3),
    );
    assert!(
        openssl::contains(&out.stdout, &alive()),
        "the pinned identity must be accepted; s_client said: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cases: Vec<(&str, Option<Pem>, Vec<&str>)> = vec![
        ("no client certificate", None, vec![]),
        (
            "self-signed certificate",
            Some(openssl::self_signed(&certs, "selfie")),
            vec![],
        ),
        (
            "valid chain, not pinned",
            Some(openssl::ca_and_leaf(&certs, "stranger")),
            vec![],
        ),
        (
            "TLS 1.2 with the pinned identity",
            Some(b_identity_as_pem(&b, &certs)),
            vec!["-tls1_2"],
        ),
    ];
    for (what, pem, extra) in cases {
        let out = openssl::s_client(
            a.ip,
            a.port,
            pem.as_ref(),
            &extra,
            &hello(),
            Duration::from_secs(3),
        );
        assert!(
            !openssl::contains(&out.stdout, &alive()),
            "{what}: A answered a refused client"
        );
        let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
        assert!(
            err.contains("alert") || err.contains("error"),
            "{what}: no TLS failure reported: {err}"
        );
    }
    // None of it changed A's view of its one real peer.
    assert_eq!(a.peer_paths().len(), 1);
    a.wait_peer_connected(CONNECTED, Duration::from_secs(10));
    // A summarises its refusals (every 10 s, and at shutdown): one line with the counts and
    // the reasons, not a line per client.
    let mut a = a;
    let mut daemon = a.daemon.take().unwrap();
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    let log = a.log();
    let summaries: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused incoming connections"))
        .collect();
    assert!((1..=3).contains(&summaries.len()), "{log}");
    assert!(
        summaries.iter().any(|l| l.contains("NotPinned")),
        "{summaries:?}"
    );
}

#[test]
fn a_foreign_server_at_a_paired_address_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut b) = paired(tmp.path());
    let pins = std::fs::read(a.state_dir().join("state.json")).unwrap();
    // B goes away and an impostor takes its address and port.
    b.kill9();
    a.wait_peer_connected(NOT_CONNECTED, Duration::from_secs(10));
    let impostor = openssl::ca_and_leaf(tmp.path(), "impostor");
    let _server = openssl::s_server(b.ip, b.port, &impostor);
    wait_for(Duration::from_secs(20), "A to refuse the impostor", || {
        a.log()
            .contains("peer presented a different identity")
            .then_some(())
    });
    assert_eq!(a.peer_connected(), NOT_CONNECTED);
    assert_eq!(
        std::fs::read(a.state_dir().join("state.json")).unwrap(),
        pins,
        "pins unchanged"
    );
}

#[test]
fn idle_connections_do_not_lock_out_a_real_peer() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut b) = paired(tmp.path());
    let peer = a.peer_paths().remove(0);
    // Both aggregates can show Connected through A's outgoing session while B's dialler into
    // A is still backing off; the test is about A's listener, so start from its session up.
    wait_for(Duration::from_secs(20), "B's session into A", || {
        a.get(SEED_BUS, &peer, PEER_IFACE, "IncomingState")
            .contains(".Connected")
            .then_some(())
    });
    b.kill9();
    wait_for(Duration::from_secs(10), "A incoming down", || {
        a.get(SEED_BUS, &peer, PEER_IFACE, "IncomingState")
            .contains("NotConnected")
            .then_some(())
    });
    // 200 TCP connections that never speak, held open (more than max_pending_handshakes).
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect((a.ip, a.port)).expect("idle connection"))
        .collect();
    b.start();
    // B's dial into A's listener must get through the crowd.
    wait_for(
        Duration::from_secs(30),
        "B's session into A despite 200 idle sockets",
        || {
            a.get(SEED_BUS, &peer, PEER_IFACE, "IncomingState")
                .contains(".Connected")
                .then_some(())
        },
    );
    drop(idle);
}

/// TLS 1.3 resumption spares the TPM, but a resumed session skips the certificate verifier,
/// so A re-checks the identity against its pins as they are now. OpenSSL holding B's key
/// resumes a session A ticketed while B was pinned: after A unpaired B (B's daemon stopped,
/// so the goodbye is still owed), the first resumed session is told `Bye { Unpaired }`, the
/// next one is refused; neither gets `Alive`. Each attempt must really resume, or the
/// verifier (not the re-check) would be what refuses.
#[test]
fn a_resumed_session_of_an_unpaired_peer_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut b) = paired(tmp.path());
    let certs = tmp.path().join("certs");
    std::fs::create_dir_all(&certs).unwrap();
    let as_b = openssl::bmc_identity(&b, &certs);
    let ticket = |n: usize| certs.join(format!("ticket-{n}.pem"));
    let attempt = |n: usize| {
        let previous = n.checked_sub(1).map(ticket);
        openssl::s_client_session(
            a.ip,
            a.port,
            Some(&as_b),
            previous.as_deref(),
            &ticket(n),
            &hello(),
            Duration::from_secs(3),
        )
    };
    let said = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).into_owned();

    // While B is pinned: a full handshake, then a resumed one; both get Alive.
    let full = attempt(0);
    assert!(openssl::contains(&full.stdout, &alive()), "{}", said(&full));
    assert!(!openssl::resumed(&full), "{}", said(&full));
    let resumed = attempt(1);
    assert!(
        openssl::resumed(&resumed),
        "A must resume a pinned peer's session: {}",
        said(&resumed)
    );
    assert!(
        openssl::contains(&resumed.stdout, &alive()),
        "{}",
        said(&resumed)
    );

    let mut daemon = b.daemon.take().unwrap();
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    let peer = a.peer_paths().remove(0);
    let out = a.busctl(&["call", SEED_BUS, &peer, PEER_IFACE, "Unpair"]);
    assert!(out.status.success(), "{out:?}");

    for n in [2, 3] {
        let out = attempt(n);
        assert!(
            openssl::resumed(&out),
            "attempt {n} must resume, or the verifier refused it: {}",
            said(&out)
        );
        assert!(
            !openssl::contains(&out.stdout, &alive()),
            "attempt {n}: A opened a session for an unpaired peer on its old ticket"
        );
    }
    assert!(
        a.log()
            .contains("told an unpaired identity that we unpaired it"),
        "{}",
        a.log()
    );
    assert!(a.peer_paths().is_empty());
}
