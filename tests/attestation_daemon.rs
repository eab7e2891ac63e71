//! `bmc-attestation` daemons on private dbus-daemons attest each other over real TCP on
//! loopback, driven through D-Bus as the pairing manager and an operator would (busctl, and
//! zbus for error names and signals).
//!
//! The main scenario runs BMC B as it runs in production: the pairing manager creates the
//! identity in B's swtpm with `ProvisionPeer("self")`, and B's attestation daemon serves it
//! from the same swtpm while the pairing manager keeps using it.
#![cfg(test)]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use bmc_pairing_manager::identity::summarize;
use bmc_test_support::attestation::*;
use bmc_test_support::swtpm::Swtpm;
use bmc_test_support::{Bmc, free_port, wait_for};
use futures_util::StreamExt;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use zbus::MatchRule;
use zbus::message::Type as MessageType;

const INVALID_ARGUMENT: &str = "xyz.openbmc_project.Common.Error.InvalidArgument";
const UNAVAILABLE: &str = "xyz.openbmc_project.Common.Error.Unavailable";
const RESOURCE_NOT_FOUND: &str = "xyz.openbmc_project.Common.Error.ResourceNotFound";

use bmc_pairing_manager::contract::{AttestReply as Reply, MeasurementEntry};

async fn connect(node: &Node) -> zbus::Connection {
    zbus::connection::Builder::address(node.bus.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap()
}

/// `Requester.Attest(address, policy)`: the reply, or (error name, message).
async fn attest(
    conn: &zbus::Connection,
    address: &str,
    policy: &str,
) -> Result<Reply, (String, String)> {
    call(conn, ATT_ROOT, REQUESTER_IFACE, &(address, policy)).await
}

async fn call<B: serde::Serialize + zbus::zvariant::DynamicType>(
    conn: &zbus::Connection,
    path: &str,
    iface: &str,
    body: &B,
) -> Result<Reply, (String, String)> {
    match conn
        .call_method(Some(ATT_BUS), path, Some(iface), "Attest", body)
        .await
    {
        Ok(msg) => Ok(msg.body().deserialize::<Reply>().unwrap()),
        Err(zbus::Error::MethodError(name, text, _)) => {
            Err((name.to_string(), text.unwrap_or_default()))
        }
        Err(e) => panic!("Attest failed outside D-Bus errors: {e}"),
    }
}

/// All `Attested` signals of the attestation service, matched by the unique name that owns
/// the bus name, the interface and the member (and `path` when given).
async fn attested_signals(
    node: &Node,
    path: Option<&str>,
) -> (zbus::Connection, zbus::MessageStream) {
    let conn = connect(node).await;
    let owner = zbus::fdo::DBusProxy::new(&conn)
        .await
        .unwrap()
        .get_name_owner(ATT_BUS.try_into().unwrap())
        .await
        .unwrap();
    let mut rule = MatchRule::builder()
        .msg_type(MessageType::Signal)
        .sender(owner.as_str())
        .unwrap()
        .interface(ATT_PEER_IFACE)
        .unwrap()
        .member("Attested")
        .unwrap();
    if let Some(p) = path {
        rule = rule.path(p.to_owned()).unwrap();
    }
    let stream = zbus::MessageStream::for_match_rule(rule.build(), &conn, None)
        .await
        .unwrap();
    (conn, stream)
}

/// `(path, value)` of every signal received within `window`.
async fn collect(stream: &mut zbus::MessageStream, window: Duration) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + window;
    while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, stream.next()).await {
        let path = msg
            .header()
            .path()
            .map(|p| p.to_string())
            .unwrap_or_default();
        out.push((path, msg.body().deserialize::<bool>().unwrap()));
    }
    out
}

fn peer_path_of(endpoint: &str) -> String {
    let (ip, port) = endpoint.rsplit_once(':').unwrap();
    format!("{ATT_PEERS}/ipv4_{}_{port}", ip.replace('.', "_"))
}

fn sha256_hex(path: &Path) -> String {
    hex(&Sha256::digest(std::fs::read(path).unwrap()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The leaf fingerprint and chain of an identity in `cert_dir`.
fn identity_of(cert_dir: &Path) -> (String, Vec<Vec<u8>>) {
    let ca = std::fs::read(cert_dir.join("ca.der")).unwrap();
    let leaf = std::fs::read(cert_dir.join("identity.der")).unwrap();
    let fp = summarize(&leaf).unwrap().public_key.fingerprint().to_hex();
    (fp, vec![ca, leaf])
}

/// B as in production: the pairing manager made its identity in swtpm, the attestation
/// daemon serves it from the same swtpm.
struct TpmPeer {
    pairing: Bmc,
    attestation: Node,
    tpm: Swtpm,
}

fn tpm_peer(root: &Path) -> TpmPeer {
    let tpm = Swtpm::start(&root.join("bmc-b-swtpm"));
    let backend = json!({"type": "tpm", "tcti": tpm.tcti()});
    let mut pairing = Bmc::new(
        root,
        "bmc-b",
        json!({"key_backend": backend, "identity_check_interval_ms": 200}),
    );
    pairing.start();
    pairing.provision("self").expect("ProvisionPeer self");
    wait_for(Duration::from_secs(20), "B self-provisioned", || {
        pairing.provisioned().then_some(())
    });
    let mut attestation = Node::new(
        root,
        "bmc-b-attestation",
        KeyKind::File,
        json!({
            "cert_root": pairing.dir.join("root"),
            "state_dir": pairing.state_dir(),
            "key_backend": backend,
        }),
    );
    attestation.start();
    TpmPeer {
        pairing,
        attestation,
        tpm,
    }
}

/// Measurement entries from busctl's JSON (`[[index, value, status, expected], ...]`).
fn entries_from_json(v: Value) -> Vec<MeasurementEntry> {
    let raw: Vec<(u8, String, String, String)> = serde_json::from_value(v).unwrap();
    raw.into_iter()
        .map(|(index, value, status, expected)| MeasurementEntry {
            index,
            value,
            status,
            expected,
        })
        .collect()
}

fn entries_by_index(m: &[MeasurementEntry]) -> BTreeMap<u8, (String, String, String)> {
    m.iter()
        .map(|e| {
            (
                e.index,
                (e.value.clone(), e.status.clone(), e.expected.clone()),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attests_a_tpm_backed_peer_and_records_every_result() {
    let tmp = tempfile::tempdir().unwrap();
    let b = tpm_peer(tmp.path());
    let mut a = Node::new(tmp.path(), "bmc-a", KeyKind::File, json!({}));
    a.start();
    let b_addr = b.attestation.endpoint();
    let peer = peer_path_of(&b_addr);
    let (b_fp, b_chain) = identity_of(&b.pairing.cert_dir());
    wait_for(
        Duration::from_secs(10),
        "B's responder to serve its identity",
        || {
            (b.attestation
                .property(ATT_ROOT, RESPONDER_IFACE, "IdentityFingerprint")
                == json!(b_fp))
            .then_some(())
        },
    );
    b.tpm.pcr_extend(3, &[0xab; 32]);
    let (_c, mut signals) = attested_signals(&a, Some(&peer)).await;
    let (_c2, mut any_signal) = attested_signals(&a, None).await;

    // The operator's line, verbatim.
    let reply = a
        .busctl_json(&[
            "call",
            ATT_BUS,
            ATT_ROOT,
            REQUESTER_IFACE,
            "Attest",
            "ss",
            &b_addr,
            "first-contact",
        ])
        .unwrap();
    assert_eq!(reply["type"], json!("obssaaya(ysss)s"));
    let data = reply["data"].as_array().unwrap();
    assert_eq!(data[0], json!(peer));
    assert_eq!(data[1], json!(true), "{}", a.log());
    assert_eq!(
        data[2],
        json!("xyz.openbmc_project.BmcPairing.Attestation.Peer.Outcome.Trusted")
    );
    assert_eq!(
        data[3],
        json!(b_fp),
        "fingerprint is SHA-256 of B's leaf SPKI"
    );
    let chain: Vec<Vec<u8>> = serde_json::from_value(data[4].clone()).unwrap();
    assert_eq!(chain, b_chain, "chain is B's, root first");
    let measurements = entries_from_json(data[5].clone());
    let by_index = entries_by_index(&measurements);
    let indices: Vec<u8> = by_index.keys().copied().collect();
    assert_eq!(
        indices,
        [1, 2, 128, 129, 130, 131, 132, 133, 134, 135],
        "files 1-2 and PCRs 0-7 of B's TPM"
    );
    assert_eq!(by_index[&1].0, sha256_hex(&b.attestation.measured[0]));
    assert_eq!(by_index[&2].0, sha256_hex(&b.attestation.measured[1]));
    let mut extended = [0u8; 64];
    extended[32..].copy_from_slice(&[0xab; 32]);
    assert_eq!(
        by_index[&131].0,
        hex(&Sha256::digest(extended)),
        "PCR 3 as extended in B's TPM"
    );
    assert!(
        by_index
            .values()
            .all(|(_, s, e)| s == "NotReferenced" && e.is_empty()),
        "audit without reference values: {by_index:?}"
    );
    let verdict: Value = serde_json::from_str(data[6].as_str().unwrap()).unwrap();
    assert_eq!(verdict["outcome"], json!("Trusted"));
    assert_eq!(verdict["trust_policy"], json!("first-contact"));
    assert_eq!(verdict["verdict"]["trust"], json!("FirstContact"));
    assert_eq!(verdict["verdict"]["leaf_fingerprint"], json!(b_fp));

    // The peer object, with its properties.
    assert_eq!(a.peer_paths(), vec![peer.clone()]);
    let prop = |name: &str| a.property(&peer, ATT_PEER_IFACE, name);
    assert_eq!(prop("Address"), json!("127.0.0.1"));
    assert_eq!(prop("Port"), json!(b.attestation.port));
    assert_eq!(
        prop("Outcome"),
        json!("xyz.openbmc_project.BmcPairing.Attestation.Peer.Outcome.Trusted")
    );
    assert_eq!(prop("IdentityFingerprint"), json!(b_fp));
    assert_eq!(prop("TrustPolicy"), json!("first-contact"));
    assert_eq!(prop("Version"), json!("1.2"));
    assert_eq!(
        prop("Algorithms"),
        json!("TPM_ALG_ECDSA_ECC_NIST_P256/TPM_ALG_SHA_256")
    );
    let prop_chain: Vec<Vec<u8>> = serde_json::from_value(prop("Chain")).unwrap();
    assert_eq!(prop_chain, b_chain);
    assert_eq!(entries_from_json(prop("Measurements")), measurements);
    assert_eq!(prop("LastError"), json!(""));
    let first_time = prop("LastAttested").as_u64().unwrap();
    assert!(first_time > 1_700_000_000);

    // Exactly one Attested(true), from that path.
    assert_eq!(
        collect(&mut signals, Duration::from_millis(500)).await,
        vec![(peer.clone(), true)]
    );
    assert_eq!(
        collect(&mut any_signal, Duration::from_millis(10))
            .await
            .len(),
        1
    );

    // The pairing manager still uses the shared swtpm: its identity stays valid.
    assert!(b.pairing.provisioned(), "{}", b.pairing.log());

    // Pinned to the wrong key: not trusted, Rejected, no identity change, no new object.
    let conn = connect(&a).await;
    let wrong = format!("pinned:{}", "00".repeat(32));
    let Reply {
        peer: path,
        trusted,
        fingerprint: fp,
        chain,
        measurements: meas,
        verdict_json: json_text,
        ..
    } = attest(&conn, &b_addr, &wrong).await.unwrap();
    assert_eq!(path.as_str(), peer);
    assert!(!trusted);
    assert_eq!(fp, "", "an unauthenticated answer reports no identity");
    assert!(chain.is_empty() && meas.is_empty());
    let report: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(report["outcome"], json!("Rejected"));
    assert!(
        report["error"].as_str().unwrap().contains("pinned"),
        "{report}"
    );
    assert_eq!(
        prop("Outcome"),
        json!("xyz.openbmc_project.BmcPairing.Attestation.Peer.Outcome.Rejected")
    );
    assert_eq!(prop("TrustPolicy"), json!(wrong));
    assert!(prop("LastError").as_str().unwrap().contains("pinned"));
    assert_eq!(
        prop("IdentityFingerprint"),
        json!(b_fp),
        "identity unchanged"
    );
    assert_eq!(
        serde_json::from_value::<Vec<Vec<u8>>>(prop("Chain")).unwrap(),
        b_chain
    );
    assert_eq!(a.peer_paths(), vec![peer.clone()], "no other object");
    assert_eq!(
        collect(&mut signals, Duration::from_millis(500)).await,
        vec![(peer.clone(), false)]
    );

    // Pinned to the right key: trusted again; Peer.Attest() re-attests with that policy.
    let right = format!("pinned:{b_fp}");
    let r = attest(&conn, &b_addr, &right).await.unwrap();
    assert!(r.trusted);
    let again = call(&conn, &peer, ATT_PEER_IFACE, &()).await.unwrap();
    assert!(again.trusted, "{}", again.verdict_json);
    assert_eq!(again.peer.as_str(), peer);
    let report: Value = serde_json::from_str(&again.verdict_json).unwrap();
    assert_eq!(report["trust_policy"], json!(right));
    assert_eq!(report["verdict"]["trust"], json!("Pinned"));
    assert_eq!(
        collect(&mut signals, Duration::from_millis(500)).await,
        vec![(peer.clone(), true), (peer.clone(), true)]
    );

    // Anchored: empty store → ResourceNotFound; A's own CA → untrusted root; B's CA → trusted.
    let err = attest(&conn, &b_addr, "anchored").await.unwrap_err();
    assert_eq!(err.0, RESOURCE_NOT_FOUND, "{err:?}");
    std::fs::create_dir_all(a.anchors_dir()).unwrap();
    let a_id = a.provision();
    std::fs::write(a.anchors_dir().join("other.der"), &a_id.ca_der).unwrap();
    let Reply {
        trusted,
        fingerprint: fp,
        verdict_json: json_text,
        ..
    } = attest(&conn, &b_addr, "anchored").await.unwrap();
    assert!(!trusted);
    assert_eq!(fp, "");
    assert!(json_text.contains("trusted root"), "{json_text}");
    assert_eq!(
        prop("Outcome"),
        json!("xyz.openbmc_project.BmcPairing.Attestation.Peer.Outcome.Rejected")
    );
    std::fs::write(a.anchors_dir().join("b.der"), &b_chain[0]).unwrap();
    let Reply {
        trusted,
        fingerprint: fp,
        verdict_json: json_text,
        ..
    } = attest(&conn, &b_addr, "anchored").await.unwrap();
    assert!(trusted, "{json_text}");
    assert_eq!(fp, b_fp);
    let report: Value = serde_json::from_str(&json_text).unwrap();
    // Anchors are read in file-name order: b.der is anchor 0.
    assert_eq!(
        report["verdict"]["trust"],
        json!({"Anchored": {"anchor": 0}})
    );
    assert_eq!(a.peer_paths(), vec![peer.clone()]);
    assert!(b.pairing.provisioned(), "{}", b.pairing.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_rejects_a_measurement_mismatch_and_audit_only_records_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Node::new(tmp.path(), "bmc-b", KeyKind::File, json!({}));
    let b_id = b.provision();
    b.start();
    let b_fp = b_id.fingerprint().to_hex();
    // Index 1 expected wrong, index 2 right, index 9 missing at B.
    let wrong = "11".repeat(32);
    let refs = tmp.path().join("reference.json");
    std::fs::write(
        &refs,
        json!({"version": 1, "measurements": {
            "1": wrong,
            "2": sha256_hex(&b.measured[1]),
            "9": "22".repeat(32),
        }})
        .to_string(),
    )
    .unwrap();
    let mut enforce = Node::new(
        tmp.path(),
        "bmc-a-enforce",
        KeyKind::File,
        json!({"measurement_policy": "enforce", "reference_values": refs}),
    );
    let mut audit = Node::new(
        tmp.path(),
        "bmc-a-audit",
        KeyKind::File,
        json!({"measurement_policy": "audit", "reference_values": refs}),
    );
    enforce.start();
    audit.start();
    let peer = peer_path_of(&b.endpoint());

    let conn = connect(&enforce).await;
    let (_c, mut signals) = attested_signals(&enforce, Some(&peer)).await;
    let Reply {
        peer: path,
        trusted,
        fingerprint: fp,
        chain,
        measurements: meas,
        verdict_json: json_text,
        ..
    } = attest(&conn, &b.endpoint(), "first-contact").await.unwrap();
    assert_eq!(path.as_str(), peer);
    assert!(!trusted, "{json_text}");
    assert_eq!(fp, b_fp, "B proved its identity; its measurements failed");
    assert_eq!(chain.len(), 2);
    let by_index = entries_by_index(&meas);
    assert_eq!(
        by_index[&1],
        (
            sha256_hex(&b.measured[0]),
            "Mismatch".to_owned(),
            wrong.clone()
        )
    );
    assert_eq!(
        by_index[&2],
        (
            sha256_hex(&b.measured[1]),
            "Match".to_owned(),
            String::new()
        )
    );
    assert_eq!(
        by_index[&9],
        (String::new(), "Missing".to_owned(), "22".repeat(32))
    );
    let report: Value = serde_json::from_str(&json_text).unwrap();
    assert_eq!(report["outcome"], json!("Rejected"));
    assert_eq!(report["authenticated"], json!(true));
    assert_eq!(report["verdict"]["measurement_mode"], json!("enforce"));
    assert_eq!(
        enforce.property(&peer, ATT_PEER_IFACE, "Outcome"),
        json!("xyz.openbmc_project.BmcPairing.Attestation.Peer.Outcome.Rejected")
    );
    assert_eq!(
        collect(&mut signals, Duration::from_millis(500)).await,
        vec![(peer.clone(), false)]
    );

    // The same mismatch in audit mode: trusted, with findings.
    let conn = connect(&audit).await;
    let Reply {
        trusted,
        fingerprint: fp,
        measurements: meas,
        ..
    } = attest(&conn, &b.endpoint(), "first-contact").await.unwrap();
    assert!(trusted);
    assert_eq!(fp, b_fp);
    assert_eq!(entries_by_index(&meas)[&1].1, "Mismatch");
    assert_eq!(
        audit.property(&peer, ATT_PEER_IFACE, "Outcome"),
        json!("xyz.openbmc_project.BmcPairing.Attestation.Peer.Outcome.TrustedWithFindings")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_unreachable_peers_and_missing_identity_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Node::new(tmp.path(), "bmc-a", KeyKind::File, json!({}));
    a.start();
    let mut b = Node::new(tmp.path(), "bmc-b", KeyKind::File, json!({}));
    b.start();
    let conn = connect(&a).await;
    let (_c, mut signals) = attested_signals(&a, None).await;

    let ok_addr = b.endpoint();
    let bad = [
        ("localhost", "first-contact"),
        ("bmc-b:4194", "first-contact"),
        ("", "first-contact"),
        ("127.0.0.1:0", "first-contact"),
        ("127.0.0.1:99999", "first-contact"),
        ("0.0.0.0", "first-contact"),
        ("[::1]", "first-contact"),
        (" 127.0.0.1", "first-contact"),
        (ok_addr.as_str(), "tofu"),
        (ok_addr.as_str(), ""),
        (ok_addr.as_str(), "Anchored"),
        (ok_addr.as_str(), "pinned:abc"),
        (ok_addr.as_str(), "pinned:"),
    ];
    for (address, policy) in bad {
        let err = attest(&conn, address, policy).await.unwrap_err();
        assert_eq!(err.0, INVALID_ARGUMENT, "{address:?} {policy:?}: {err:?}");
    }
    // A wrong argument type is refused by zbus before our code runs.
    let err = call(&conn, ATT_ROOT, REQUESTER_IFACE, &(7u32,))
        .await
        .unwrap_err();
    assert!(err.1.contains("Signature mismatch"), "{err:?}");

    // Nothing listens there: Unavailable, quickly.
    let silent = format!("127.0.0.1:{}", free_port());
    let start = Instant::now();
    let err = attest(&conn, &silent, "first-contact").await.unwrap_err();
    assert_eq!(err.0, UNAVAILABLE, "{err:?}");
    // Loose on purpose (CI is noisy): a refused connection answers in milliseconds; the
    // error name above already tells it from a timeout.
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // B's pairing manager has not self-provisioned: B's responder closes connections, A
    // reports Unavailable, and B says it serves no identity.
    assert_eq!(
        b.property(ATT_ROOT, RESPONDER_IFACE, "IdentityFingerprint"),
        json!("")
    );
    assert_eq!(b.property(ATT_ROOT, RESPONDER_IFACE, "Port"), json!(b.port));
    let start = Instant::now();
    let err = attest(&conn, &ok_addr, "first-contact").await.unwrap_err();
    assert_eq!(err.0, UNAVAILABLE, "{err:?}");
    assert!(start.elapsed() < Duration::from_secs(5));

    // Nothing changed: no object, no signal.
    assert!(a.peer_paths().is_empty(), "{:?}", a.peer_paths());
    assert!(
        collect(&mut signals, Duration::from_millis(300))
            .await
            .is_empty()
    );

    // B self-provisions while its daemon runs: it serves the identity without a restart.
    let b_id = b.provision();
    let b_fp = b_id.fingerprint().to_hex();
    wait_for(
        Duration::from_secs(5),
        "B to pick up its new identity",
        || {
            (b.property(ATT_ROOT, RESPONDER_IFACE, "IdentityFingerprint") == json!(b_fp))
                .then_some(())
        },
    );
    let Reply {
        trusted,
        fingerprint: fp,
        ..
    } = attest(&conn, &ok_addr, "first-contact").await.unwrap();
    assert!(trusted);
    assert_eq!(fp, b_fp);
    assert!(b.daemon.as_mut().unwrap().running());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responder_connections_are_bounded_and_silent_ones_evicted_or_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    // Both daemons bound to the loopback device (SO_BINDTODEVICE), B with one session slot.
    let bound = json!({"bind_to_interface": true, "interface_id": "lo"});
    let mut b = Node::new(
        tmp.path(),
        "bmc-b",
        KeyKind::File,
        json!({
            "bind_to_interface": true,
            "interface_id": "lo",
            "max_sessions": 1,
            "max_sessions_per_source": 1,
            "first_request_timeout_ms": 700,
            "idle_timeout_ms": 5000,
            "io_timeout_ms": 700,
        }),
    );
    let b_fp = b.provision().fingerprint().to_hex();
    b.start();
    let mut a = Node::new(tmp.path(), "bmc-a", KeyKind::File, bound);
    a.start();
    let conn = connect(&a).await;

    // A silent client waits in B's waiting room (one place for its address); A's
    // attestation, from the same address, takes its place at once, and B closes the silent
    // client.
    let idle = std::net::TcpStream::connect(b.endpoint()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let Reply {
        trusted,
        fingerprint: fp,
        ..
    } = attest(&conn, &b.endpoint(), "first-contact").await.unwrap();
    assert!(trusted);
    assert_eq!(fp, b_fp);
    let mut buf = [0u8; 1];
    idle.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    assert_eq!(std::io::Read::read(&mut &idle, &mut buf).unwrap_or(0), 0);
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the attestation waited for the idle client: {:?}",
        start.elapsed()
    );

    // A client that sends a request and then idles holds its session until it has been idle
    // for the allowance (the first-request deadline); then a newcomer takes its place.
    let mut idler = std::net::TcpStream::connect(b.endpoint()).unwrap();
    let get_version = [0x10, 0x84, 0x00, 0x00];
    std::io::Write::write_all(
        &mut idler,
        &bmc_pairing_core::spdm::frame::frame_spdm(&get_version),
    )
    .unwrap();
    idler
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let mut version = [0u8; 4];
    std::io::Read::read_exact(&mut idler, &mut version).unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    let Reply { trusted, .. } = attest(&conn, &b.endpoint(), "first-contact").await.unwrap();
    assert!(trusted);
    // Closed (end of stream), not merely quiet until the read timeout.
    let mut rest = Vec::new();
    assert!(
        std::io::Read::read_to_end(&mut idler, &mut rest).is_ok(),
        "the idle session was kept"
    );

    // A client that sends half a DSP0287 frame and stops is closed at the I/O deadline.
    let mut half = std::net::TcpStream::connect(b.endpoint()).unwrap();
    std::io::Write::write_all(&mut half, &[0x04]).unwrap();
    let start = Instant::now();
    half.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(std::io::Read::read(&mut half, &mut buf).unwrap_or(0), 0);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "half a frame was waited for {:?}",
        start.elapsed()
    );

    // Alone, a silent client is dropped at the first-request deadline.
    let lone = std::net::TcpStream::connect(b.endpoint()).unwrap();
    let start = Instant::now();
    lone.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(std::io::Read::read(&mut &lone, &mut buf).unwrap_or(0), 0);
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "a silent client was kept {:?}",
        start.elapsed()
    );
}
