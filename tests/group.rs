//! The group authority (issue 17, items 3-4) on three BMCs in network namespaces (real
//! lldpd, swtpm, bmc-attestation, private dbus-daemon each):
//!
//! - A is configured as group authority. A's operator pairs A with B and with C; B's and
//!   C's operators each pair with A (their consent). Nobody names B on C or C on B.
//! - B and C send A a CSR for their CA key over the pinned channel; A signs it under its
//!   group root; they install the certificate and the root. From A's group list, B and C
//!   pair with each other (attested, anchored): every pair is Connected.
//! - `openssl verify -CAfile group-root` accepts every chain A issued.
//! - A unpairs C: A's next list revokes it, B drops C's pin and refuses it from then on.
#![cfg(test)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bmc_test_support::rig::{Options, Rig, RigBmc, Topology, provision_until_accepted};
use bmc_test_support::{PEER_IFACE, SEED_BUS, wait_for};

const LIMIT: Duration = Duration::from_secs(60);

fn state(bmc: &RigBmc) -> serde_json::Value {
    let text = std::fs::read(bmc.bmc.state_dir().join("state.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn der_to_pem(der_path: &Path, pem_path: &Path) {
    let out = Command::new("openssl")
        .args(["x509", "-inform", "DER", "-in"])
        .arg(der_path)
        .arg("-out")
        .arg(pem_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// `openssl verify -CAfile <root> -untrusted <member CA> <member leaf>`.
fn openssl_verifies(root_der: &Path, member: &RigBmc, scratch: &Path) -> (bool, String) {
    let root = scratch.join("root.pem");
    let ca = scratch.join(format!("{}-ca.pem", member.name()));
    let leaf = scratch.join(format!("{}-leaf.pem", member.name()));
    der_to_pem(root_der, &root);
    der_to_pem(&member.bmc.cert_dir().join("ca.der"), &ca);
    der_to_pem(&member.bmc.cert_dir().join("identity.der"), &leaf);
    let out = Command::new("openssl")
        .arg("verify")
        .arg("-CAfile")
        .arg(&root)
        .arg("-untrusted")
        .arg(&ca)
        .arg(&leaf)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn three_bmcs_pair_from_the_authority_and_an_unpaired_member_is_refused_by_the_others() {
    let mut rig = Rig::start(
        &["bmc-a", "bmc-b", "bmc-c"],
        Options {
            topology: Topology::Switch,
            start_daemons: false,
            ..Options::default()
        },
    );
    rig.bmc_mut("bmc-a")
        .bmc
        .set_config("group_authority", serde_json::json!(true));
    for name in ["bmc-a", "bmc-b", "bmc-c"] {
        rig.bmc_mut(name).start_daemon();
    }
    let (a, b, c) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"), rig.bmc("bmc-c"));
    a.wait_lldp_neighbour("bmc-b", LIMIT);
    a.wait_lldp_neighbour("bmc-c", LIMIT);
    for x in [a, b, c] {
        x.bmc.provision("self").expect("self");
    }
    let scratch = tempfile::tempdir().unwrap();
    // Before joining, a member's chain does not verify to the group root (there is none).
    assert!(
        !a.bmc.cert_dir().join("group-root.der").exists() || {
            !openssl_verifies(&a.bmc.cert_dir().join("group-root.der"), b, scratch.path()).0
        }
    );

    // N-1 operations on the authority, one consent on each member.
    provision_until_accepted(a, "bmc-b", LIMIT);
    provision_until_accepted(a, "bmc-c", LIMIT);
    provision_until_accepted(b, "bmc-a", LIMIT);
    provision_until_accepted(c, "bmc-a", LIMIT);

    // B and C join and pair with each other, named by nobody.
    b.wait_peer_state("bmc-c", "Connected", LIMIT);
    c.wait_peer_state("bmc-b", "Connected", LIMIT);
    for (x, peers) in [
        (a, ["bmc-b", "bmc-c"]),
        (b, ["bmc-a", "bmc-c"]),
        (c, ["bmc-a", "bmc-b"]),
    ] {
        for p in peers {
            x.wait_peer_state(p, "Connected", LIMIT);
            assert_eq!(
                x.peer_prop(p, "AttestationOutcome").as_deref(),
                Some("s \"xyz.openbmc_project.BmcPairing.Peer.AttestationOutcome.Trusted\""),
                "{} attested {p}",
                x.name()
            );
        }
    }
    assert_eq!(
        b.peer_prop("bmc-c", "TrustMode").as_deref(),
        Some("s \"xyz.openbmc_project.BmcPairing.Peer.TrustMode.Anchored\"")
    );
    assert_eq!(
        c.peer_prop("bmc-b", "TrustMode").as_deref(),
        Some("s \"xyz.openbmc_project.BmcPairing.Peer.TrustMode.Anchored\"")
    );

    // Every chain A issued verifies with OpenSSL under the group root; the root is each
    // member's anchor, not A's pairing key.
    let root = a.bmc.cert_dir().join("group-root.der");
    for m in [b, c] {
        let (ok, out) = openssl_verifies(&root, m, scratch.path());
        assert!(ok, "{}: {out}", m.name());
        let a_pin = state(m)["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "bmc-a")
            .unwrap()["fingerprint"]
            .clone();
        assert_eq!(state(m)["membership"]["authority"], a_pin);
    }
    let a_ca = std::fs::read(a.bmc.cert_dir().join("ca.der")).unwrap();
    assert_ne!(
        std::fs::read(&root).unwrap(),
        a_ca,
        "the root is a key of its own"
    );

    // A unpairs C: B refuses C from then on.
    let version_before = state(b)["membership"]["list"]["version"].as_u64().unwrap();
    let c_on_a = a
        .bmc
        .peer_paths()
        .into_iter()
        .find(|p| a.bmc.get(SEED_BUS, p, PEER_IFACE, "Name") == "s \"bmc-c\"")
        .expect("C's object on A");
    let out = a
        .bmc
        .busctl(&["call", SEED_BUS, &c_on_a, PEER_IFACE, "Unpair"]);
    assert!(out.status.success(), "{out:?}");
    wait_for(LIMIT, "B to drop C", || {
        b.peer_state("bmc-c").is_none().then_some(())
    });
    let held = state(b);
    assert!(held["membership"]["list"]["version"].as_u64().unwrap() > version_before);
    assert_eq!(
        held["membership"]["list"]["revoked"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    c.wait_peer_state("bmc-b", "NotConnected", LIMIT);
    // C keeps dialling B and is refused: it never gets back in.
    std::thread::sleep(Duration::from_secs(5));
    assert!(b.peer_state("bmc-c").is_none(), "B pinned C again");
    assert_ne!(c.peer_state("bmc-b").as_deref(), Some("Connected"));
    assert_eq!(b.peer_state("bmc-a").as_deref(), Some("Connected"));
}
