//! What the pairing manager logs (issue 15, item 4): each event of
//! `Pairing.events.yaml` goes to the journal as a structured entry (journald's native
//! protocol, read back here from a datagram socket bound where the daemon is told the
//! journal is) and to `xyz.openbmc_project.Logging.Create` when that service is on the bus
//! (a faithful test double of it, on each BMC's private bus). Real daemons, real SPDM,
//! during pairing, a failed attestation (Enforce policy, changed firmware), and unpairing.
#![cfg(test)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use bmc_test_support::logging_double::{self, LoggingDouble};
use bmc_test_support::pdi;
use bmc_test_support::*;
use serde_json::json;
use sha2::{Digest, Sha256};

const NS: &str = "xyz.openbmc_project.BmcPairing.Pairing";

/// A datagram socket standing where journald's native socket would be.
struct JournalSocket {
    socket: UnixDatagram,
}

impl JournalSocket {
    fn bind(path: &Path) -> JournalSocket {
        let socket = UnixDatagram::bind(path).unwrap();
        socket.set_nonblocking(true).unwrap();
        JournalSocket { socket }
    }

    /// Every entry received so far, parsed (both encodings of the native protocol).
    fn entries(&self, into: &mut Vec<BTreeMap<String, String>>) {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = self.socket.recv(&mut buf) {
            into.push(parse_native(&buf[..n]));
        }
    }
}

/// journald's native protocol: `KEY=value\n`, or `KEY\n<u64 LE length><value>\n`.
fn parse_native(mut d: &[u8]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    while !d.is_empty() {
        let nl = d
            .iter()
            .position(|&b| b == b'\n')
            .expect("a field ends in a newline");
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.insert(
                String::from_utf8(line[..eq].to_vec()).unwrap(),
                String::from_utf8(line[eq + 1..].to_vec()).unwrap(),
            );
            d = &d[nl + 1..];
        } else {
            let key = String::from_utf8(line.to_vec()).unwrap();
            let rest = &d[nl + 1..];
            let len = usize::try_from(u64::from_le_bytes(rest[..8].try_into().unwrap())).unwrap();
            out.insert(key, String::from_utf8(rest[8..8 + len].to_vec()).unwrap());
            assert_eq!(rest[8 + len], b'\n');
            d = &rest[8 + len + 1..];
        }
    }
    for key in out.keys() {
        assert!(
            key.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "journal field names are upper case: {key}"
        );
    }
    out
}

/// One BMC's two sinks.
struct Sinks {
    journal: JournalSocket,
    logged: Vec<BTreeMap<String, String>>,
    double: LoggingDouble,
}

impl Sinks {
    /// The event names in the journal so far, in order.
    fn journal_events(&mut self) -> Vec<String> {
        self.journal.entries(&mut self.logged);
        self.logged
            .iter()
            .map(|e| e["BMC_PAIRING_EVENT"].clone())
            .collect()
    }

    /// Waits until both sinks have `name`; returns the journal entry and the Create call.
    fn wait(
        &mut self,
        name: &str,
        limit: Duration,
    ) -> (BTreeMap<String, String>, logging_double::Entry) {
        let full = format!("{NS}.{name}");
        let deadline = Instant::now() + limit;
        loop {
            self.journal.entries(&mut self.logged);
            let journal = self
                .logged
                .iter()
                .find(|e| e["BMC_PAIRING_EVENT"] == full)
                .cloned();
            let created = self
                .double
                .entries
                .all()
                .into_iter()
                .find(|e| e.message == full);
            if let (Some(j), Some(c)) = (journal, created) {
                return (j, c);
            }
            assert!(
                Instant::now() < deadline,
                "{name} not logged in time; journal {:?}, Create {:?}",
                self.journal_events(),
                self.double.entries.all()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn sinks(rt: &tokio::runtime::Runtime, bmc: &mut Bmc) -> Sinks {
    let path = bmc.dir.join("journal.socket");
    let journal = JournalSocket::bind(&path);
    bmc.set_config("journal_socket", json!(path));
    let double = rt.block_on(LoggingDouble::start(&bmc.bus.address)).unwrap();
    Sinks {
        journal,
        logged: Vec::new(),
        double,
    }
}

/// The journal entry and the Create call say the same thing, in the YAML's terms.
fn same_event(
    j: &BTreeMap<String, String>,
    c: &logging_double::Entry,
    priority: &str,
    level: &str,
) {
    assert_eq!(j["PRIORITY"], priority);
    assert_eq!(j["SYSLOG_IDENTIFIER"], "bmc-pairing-manager");
    assert_eq!(
        c.severity,
        format!("xyz.openbmc_project.Logging.Entry.Level.{level}")
    );
    for (k, v) in &c.additional_data {
        assert_eq!(j.get(k), Some(v), "journal field {k}");
    }
    assert!(!j["MESSAGE"].is_empty());
}

#[test]
fn pairing_a_failed_attestation_and_unpairing_are_logged_in_the_journal_and_the_event_log() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut a = Bmc::new(root, "bmc-a", json!({}));
    let mut b = Bmc::new(root, "bmc-b", json!({}));
    let mut a_sinks = sinks(&rt, &mut a);
    let mut b_sinks = sinks(&rt, &mut b);

    // The double is what upstream's YAML says Logging.Create is.
    let create_yaml =
        pdi::upstream_pdi_root().join("xyz/openbmc_project/Logging/Create.interface.yaml");
    pdi::check_object(
        &a.bus.address,
        logging_double::SERVICE,
        logging_double::PATH,
        &create_yaml,
    )
    .unwrap_or_else(|p| panic!("the Logging double is not upstream's interface: {p:#?}"));

    // A enforces B's measured firmware (as tests/quarantine.rs).
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

    let a_fp = {
        let peer = b.peer_paths().remove(0);
        b.get(SEED_BUS, &peer, PEER_IFACE, "IdentityFingerprint")
    };
    for (sinks, other) in [(&mut a_sinks, "bmc-b"), (&mut b_sinks, "bmc-a")] {
        let (j, c) = sinks.wait("PeerPaired", Duration::from_secs(10));
        same_event(&j, &c, "6", "Informational");
        assert_eq!(c.additional_data["PEER_NAME"], other);
        assert_eq!(c.additional_data["PEER_ID"], other.replace('-', "_"));
        assert_eq!(c.additional_data["TRUST_MODE"], "first-contact");
        assert_eq!(
            j["MESSAGE"],
            format!("Paired with '{other}' ('{}').", other.replace('-', "_"))
        );
    }
    let (j, _) = b_sinks.wait("PeerPaired", Duration::ZERO);
    assert_eq!(format!("s \"{}\"", j["IDENTITY_FINGERPRINT"]), a_fp);

    // B's firmware changes; A's re-attestation fails and quarantines B.
    let peer = a.peer_paths().remove(0);
    fs::write(&firmware, b"unapproved firmware").unwrap();
    let out = a.busctl(&["call", SEED_BUS, &peer, PEER_IFACE, "Reattest"]);
    assert!(out.status.success(), "{out:?}");
    let (j, c) = a_sinks.wait("AttestationFailed", Duration::from_secs(10));
    same_event(&j, &c, "4", "Warning");
    assert_eq!(c.additional_data["PURPOSE"], "Reattest");
    assert_eq!(c.additional_data["OUTCOME"], "Rejected");
    assert!(
        c.additional_data["ADDRESS"].contains(&b.ip.to_string()),
        "{c:?}"
    );
    let (j, c) = a_sinks.wait("PeerQuarantined", Duration::from_secs(10));
    same_event(&j, &c, "3", "Error");
    assert_eq!(c.additional_data["PEER_ID"], "bmc_b");

    // A unpairs B; B hears it at its next session to A.
    let out = a.busctl(&["call", SEED_BUS, &peer, PEER_IFACE, "Unpair"]);
    assert!(out.status.success(), "{out:?}");
    let (j, c) = a_sinks.wait("PeerUnpaired", Duration::from_secs(10));
    same_event(&j, &c, "6", "Informational");
    assert_eq!(c.additional_data["UNPAIRED_BY"], "ThisBmc");
    let (j, c) = b_sinks.wait("PeerUnpaired", Duration::from_secs(30));
    same_event(&j, &c, "6", "Informational");
    assert_eq!(c.additional_data["UNPAIRED_BY"], "Peer");
    assert_eq!(c.additional_data["PEER_NAME"], "bmc-a");

    // Each sink saw the same events in the same order, and nothing else.
    for sinks in [&mut a_sinks, &mut b_sinks] {
        let journal = sinks.journal_events();
        let created: Vec<String> = sinks
            .double
            .entries
            .all()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(journal, created);
    }
    assert_eq!(
        a_sinks.journal_events(),
        [
            "PeerPaired",
            "AttestationFailed",
            "PeerQuarantined",
            "PeerUnpaired"
        ]
        .map(|n| format!("{NS}.{n}"))
    );
    assert_eq!(
        b_sinks.journal_events(),
        ["PeerPaired", "PeerUnpaired"].map(|n| format!("{NS}.{n}"))
    );

    // No event carries key material: no line of any key file of either BMC is in any entry.
    for bmc in [&a, &b] {
        let secrets = key_lines(&bmc.state_dir());
        assert!(!secrets.is_empty(), "{} has key files", bmc.name);
        for entry in a_sinks.logged.iter().chain(&b_sinks.logged) {
            for value in entry.values() {
                for s in &secrets {
                    assert!(!value.contains(s.as_str()), "key material in {entry:?}");
                }
            }
        }
    }
}

/// Every private key of the file key store under `dir`, as it could appear in text: the
/// secret scalar in hex (both cases) and base64, and the PKCS#8 file in hex and base64.
fn key_lines(dir: &Path) -> Vec<String> {
    use base64::Engine;
    use p256::pkcs8::DecodePrivateKey;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for e in fs::read_dir(dir.join("keys"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "p8") {
            let der = fs::read(&p).unwrap();
            let key = p256::ecdsa::SigningKey::from_pkcs8_der(&der).unwrap();
            let scalar = key.to_bytes();
            let hex = bmc_pairing_core::hex::hex_encode(&scalar);
            out.push(hex.to_uppercase());
            out.push(hex);
            out.push(b64.encode(scalar));
            out.push(bmc_pairing_core::hex::hex_encode(&der));
            out.push(b64.encode(&der));
        }
    }
    out
}

#[test]
fn without_the_logging_service_or_a_journal_socket_events_go_to_stderr() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Bmc::new(tmp.path(), "bmc-a", json!({"attestation": "off"}));
    let mut b = Bmc::new(tmp.path(), "bmc-b", json!({"attestation": "off"}));
    for bmc in [&mut a, &mut b] {
        bmc.set_config("journal_socket", json!(bmc.dir.join("no-journal-here")));
        bmc.start();
    }
    pair(&a, &b);
    wait_for(Duration::from_secs(10), "PeerPaired on stderr", || {
        a.log()
            .lines()
            .find(|l| l.contains(&format!("{NS}.PeerPaired")) && l.contains("PEER_NAME=\"bmc-b\""))
            .map(|_| ())
    });
}

/// A TPM cleared under a running daemon, and one cleared while it was down: `KeyLost`
/// (critical) in the journal and the event log, once each.
#[test]
fn a_lost_tpm_key_is_logged_whether_the_daemon_ran_or_not() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tpm = bmc_test_support::swtpm::Swtpm::start(&tmp.path().join("swtpm"));
    let mut a = Bmc::new(
        tmp.path(),
        "bmc-a",
        json!({
            "key_backend": {"type": "tpm", "tcti": tpm.tcti()},
            "identity_check_interval_ms": 200,
            "attestation": "off",
        }),
    );
    let mut sinks = sinks(&rt, &mut a);
    a.start();
    a.provision("self").unwrap();

    tpm.clear();
    let (j, c) = sinks.wait("KeyLost", Duration::from_secs(15));
    same_event(&j, &c, "2", "Critical");
    assert_eq!(c.additional_data["KEY_BACKEND"], "tpm");
    assert_eq!(
        j["MESSAGE"],
        "This BMC's pairing identity key in the 'tpm' store is lost."
    );

    a.provision("self").unwrap();
    a.kill9();
    tpm.clear();
    a.start();
    assert!(!a.provisioned());
    wait_for(Duration::from_secs(10), "a second KeyLost", || {
        let lost = sinks
            .journal_events()
            .iter()
            .filter(|e| e.as_str() == format!("{NS}.KeyLost"))
            .count();
        let created = sinks
            .double
            .entries
            .all()
            .iter()
            .filter(|e| e.message == format!("{NS}.KeyLost"))
            .count();
        (lost == 2 && created == 2).then_some(())
    });
    // Once: a restart with the key still gone reports nothing new.
    a.kill9();
    a.start();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        sinks
            .journal_events()
            .iter()
            .filter(|e| e.as_str() == format!("{NS}.KeyLost"))
            .count(),
        2
    );
}

/// Our leaf nears its notAfter while the TPM hangs (no renewal), then passes it:
/// `CertificateExpiring`, then `CertificateExpired`, once each; a renewal once the TPM
/// answers brings no new event.
#[test]
fn our_certificate_expiring_then_expired_is_logged_once_each() {
    const DAY: i64 = 24 * 3600;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tpm = bmc_test_support::swtpm::Swtpm::start(&tmp.path().join("swtpm"));
    let mut a = Bmc::new(
        tmp.path(),
        "bmc-a",
        json!({
            "key_backend": {"type": "tpm", "tcti": tpm.tcti()},
            "identity_check_interval_ms": 200,
            "attestation": "off",
        }),
    );
    let mut sinks = sinks(&rt, &mut a);
    let clock = a.use_clock();
    a.start();
    a.provision("self").unwrap();
    let identity = "xyz.openbmc_project.BmcPairing.Identity";
    let not_after: i64 = a
        .get(SEED_BUS, SEED_PATH, identity, "NotAfter")
        .split_whitespace()
        .last()
        .unwrap()
        .parse()
        .unwrap();

    tpm.freeze();
    clock.set_now(not_after - 20 * DAY);
    let (j, c) = sinks.wait("CertificateExpiring", Duration::from_secs(20));
    same_event(&j, &c, "4", "Warning");
    assert_eq!(c.additional_data["CERTIFICATE"], "identity");
    assert_eq!(c.additional_data["NOT_AFTER"], not_after.to_string());

    clock.set_now(not_after + DAY);
    let (j, c) = sinks.wait("CertificateExpired", Duration::from_secs(20));
    same_event(&j, &c, "3", "Error");
    assert_eq!(c.additional_data["CERTIFICATE"], "identity");

    tpm.thaw();
    wait_for(
        Duration::from_secs(40),
        "renewal once the TPM answers",
        || (a.get(SEED_BUS, SEED_PATH, identity, "Expired") == "b false").then_some(()),
    );
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        sinks.journal_events(),
        ["CertificateExpiring", "CertificateExpired"].map(|n| format!("{NS}.{n}"))
    );
}

/// Another BMC answers at a paired peer's address (a swapped board): A refuses it, raises
/// `IdentityMismatch` on the peer object and logs `IdentityMismatch` once.
#[test]
fn another_identity_at_a_peers_address_is_logged_as_an_identity_mismatch() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let quick = json!({"attestation": "off", "backoff_initial_ms": 50, "backoff_max_ms": 200,
                       "heartbeat_interval_ms": 200, "heartbeat_timeout_ms": 600});
    let mut a = Bmc::new(tmp.path(), "bmc-a", quick.clone());
    let mut b = Bmc::new(tmp.path(), "bmc-b", quick.clone());
    let mut sinks = sinks(&rt, &mut a);
    a.start();
    b.start();
    pair(&a, &b);
    sinks.wait("PeerPaired", Duration::from_secs(10));

    // B's board is swapped: another BMC, with its own identity, at B's address and port.
    b.kill9();
    let mut c = Bmc::builder(tmp.path(), "bmc-c")
        .ip(b.ip)
        .port(b.port)
        .config(quick)
        .build();
    c.start();
    c.provision("self").unwrap();
    let (j, c_entry) = sinks.wait("IdentityMismatch", Duration::from_secs(20));
    same_event(&j, &c_entry, "4", "Warning");
    assert_eq!(c_entry.additional_data["PEER_ID"], "bmc_b");
    assert_eq!(c_entry.additional_data["ADDRESS"], b.ip.to_string());
    let peer = a.peer_paths().remove(0);
    assert_eq!(
        a.get(SEED_BUS, &peer, PEER_IFACE, "IdentityMismatch"),
        "b true"
    );
    // Refused again at every dial, reported once.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        sinks.journal_events(),
        ["PeerPaired", "IdentityMismatch"].map(|n| format!("{NS}.{n}"))
    );
}
