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
        // By path: reading a property of an object being removed would race.
        (!b.bmc.peer_paths().iter().any(|p| p.ends_with("/bmc_c"))).then_some(())
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

mod on_dbus {
    //! `Certs.Authority.SignCSR` (seed 002) on two loopback BMCs with real bmc-attestation:
    //! the introspection against the upstream YAML, a signed request, and every bad input
    //! refused with nothing changed.
    use std::path::Path;
    use std::process::Command;
    use std::time::Duration;

    use bmc_test_support::pdi::{
        check_object, object_interfaces, upstream_pdi_root, yaml_path_for,
    };
    use bmc_test_support::{Bmc, SEED_BUS, pair, wait_for};
    use serde_json::json;

    const AUTHORITY: &str = "/xyz/openbmc_project/certs/ca/bmcpairing";
    const AUTHORITY_IFACE: &str = "xyz.openbmc_project.Certs.Authority";
    const ENTRY_IFACE: &str = "xyz.openbmc_project.Certs.Entry";
    const DELETE_IFACE: &str = "xyz.openbmc_project.Object.Delete";
    const INVALID_ARGUMENT: &str = "xyz.openbmc_project.Common.Error.InvalidArgument";

    fn call(bmc: &Bmc, args: &[&str]) -> Result<String, String> {
        let out = bmc.busctl(args);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
        }
    }

    fn unquote(answer: &str) -> String {
        let inner = answer
            .trim_start_matches("s ")
            .trim_start_matches("o ")
            .trim()
            .trim_matches('"');
        inner.replace("\\n", "\n").replace("\\\"", "\"")
    }

    fn sign_csr(bmc: &Bmc, pem: &str) -> Result<String, String> {
        call(
            bmc,
            &[
                "call",
                "--",
                SEED_BUS,
                AUTHORITY,
                AUTHORITY_IFACE,
                "SignCSR",
                "s",
                pem,
            ],
        )
        .map(|o| unquote(&o))
    }

    /// A's D-Bus objects, its state (but the time floor, which follows the clock) and its
    /// certificate files.
    fn observable(a: &Bmc) -> (String, serde_json::Value, Vec<(String, Vec<u8>)>) {
        let tree =
            String::from_utf8_lossy(&a.busctl(&["tree", "--list", SEED_BUS]).stdout).into_owned();
        let mut state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(a.state_dir().join("state.json")).unwrap())
                .unwrap();
        state.as_object_mut().unwrap().remove("time_floor");
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(a.cert_dir())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.path().is_file())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
        files.sort();
        (tree, state, files)
    }

    fn openssl(args: &[&str], dir: &Path) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    }

    /// `GenerateCSR` on `bmc` with the upstream arguments (EC P-256, CN only): its CSR PEM.
    fn csr_of(bmc: &Bmc, cn: &str) -> String {
        let out = call(
            bmc,
            &[
                "call",
                SEED_BUS,
                "/xyz/openbmc_project/certs/server/bmcpairing",
                "xyz.openbmc_project.Certs.CSR.Create",
                "GenerateCSR",
                "asssssssssxssassssss",
                "0",
                "",
                "",
                cn,
                "",
                "",
                "",
                "",
                "",
                "0",
                "prime256v1",
                "EC",
                "0",
                "",
                "",
                "",
                "",
                "",
            ],
        )
        .unwrap();
        let path = unquote(&out);
        unquote(
            &call(
                bmc,
                &[
                    "call",
                    SEED_BUS,
                    &path,
                    "xyz.openbmc_project.Certs.CSR",
                    "CSR",
                ],
            )
            .unwrap(),
        )
    }

    /// What the authority's request objects did, in order: (signal, object path, Status if
    /// the signal carries it).
    type Seen = Vec<(String, String, Option<String>)>;

    /// Collects the signals `bmc`'s pairing manager emits under [`AUTHORITY`] while `act`
    /// runs and for up to `window` after, until an InterfacesRemoved.
    async fn request_signals(bmc: &Bmc, window: Duration, act: impl FnOnce()) -> Seen {
        use futures_util::StreamExt;
        use std::collections::HashMap;
        use zbus::zvariant::{OwnedObjectPath, OwnedValue};
        let conn = zbus::connection::Builder::address(bmc.bus.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap();
        let owner = zbus::fdo::DBusProxy::new(&conn)
            .await
            .unwrap()
            .get_name_owner(SEED_BUS.try_into().unwrap())
            .await
            .unwrap();
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(owner.as_str())
            .unwrap()
            .path_namespace(AUTHORITY)
            .unwrap()
            .build();
        let mut stream = zbus::MessageStream::for_match_rule(rule, &conn, None)
            .await
            .unwrap();
        act();
        let mut seen = Seen::new();
        let deadline = tokio::time::Instant::now() + window;
        while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, stream.next()).await {
            let header = msg.header();
            let member = header.member().map(|m| m.to_string()).unwrap_or_default();
            let status = |props: &HashMap<String, OwnedValue>| {
                props
                    .get("Status")
                    .and_then(|v| String::try_from(v.clone()).ok())
            };
            match member.as_str() {
                "InterfacesAdded" => {
                    let (path, ifaces): (
                        OwnedObjectPath,
                        HashMap<String, HashMap<String, OwnedValue>>,
                    ) = msg.body().deserialize().unwrap();
                    let st = ifaces.get(ENTRY_IFACE).and_then(status);
                    seen.push((member, path.to_string(), st));
                }
                "InterfacesRemoved" => {
                    let (path, _): (OwnedObjectPath, Vec<String>) =
                        msg.body().deserialize().unwrap();
                    seen.push((member, path.to_string(), None));
                    break;
                }
                "PropertiesChanged" => {
                    let (_, changed, _): (String, HashMap<String, OwnedValue>, Vec<String>) =
                        msg.body().deserialize().unwrap();
                    let path = header.path().map(|p| p.to_string()).unwrap_or_default();
                    seen.push((member, path, status(&changed)));
                }
                _ => {}
            }
        }
        seen
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sign_csr_signs_only_a_paired_attested_peers_ca_key_and_refuses_bad_input() {
        let tmp = tempfile::tempdir().unwrap();
        let mut a = Bmc::new(tmp.path(), "bmc-a", json!({"group_authority": true}));
        a.start();
        let mut b = Bmc::new(tmp.path(), "bmc-b", json!({}));
        b.start();
        // B, paired with A by its operator, sends A its CSR over the channel: A shows that
        // request as seed 002 shows one, Pending → Complete, and removes it.
        let seen = request_signals(&a, Duration::from_secs(20), || pair(&a, &b)).await;
        let channel = format!("{AUTHORITY}/entry/channel_1");
        let pending = "xyz.openbmc_project.Certs.Entry.State.Pending".to_owned();
        let complete = "xyz.openbmc_project.Certs.Entry.State.Complete".to_owned();
        let statuses: Vec<(&str, Option<&String>)> = seen
            .iter()
            .filter(|(_, path, _)| *path == channel)
            .map(|(m, _, s)| (m.as_str(), s.as_ref()))
            .filter(|(m, s)| *m != "PropertiesChanged" || s.is_some())
            .collect();
        assert_eq!(
            statuses,
            vec![
                ("InterfacesAdded", Some(&pending)),
                ("PropertiesChanged", Some(&complete)),
                ("InterfacesRemoved", None),
            ],
            "{seen:?}"
        );
        // Served on the authority only, exactly as the upstream YAML says.
        let root = upstream_pdi_root();
        check_object(
            &a.bus.address,
            SEED_BUS,
            AUTHORITY,
            &yaml_path_for(&root, AUTHORITY_IFACE),
        )
        .unwrap();
        assert!(
            object_interfaces(&b.bus.address, SEED_BUS, AUTHORITY)
                .map_or(true, |i| !i.iter().any(|n| n == AUTHORITY_IFACE)),
            "a BMC that is not the authority serves no Certs.Authority"
        );
        wait_for(Duration::from_secs(20), "the group root", || {
            a.cert_dir().join("group-root.der").exists().then_some(())
        });

        // Bad input: each refused with InvalidArgument, nothing changes.
        let work = tmp.path().join("csrs");
        std::fs::create_dir_all(&work).unwrap();
        openssl(
            &[
                "req",
                "-new",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-keyout",
                "stranger.key",
                "-subj",
                "/CN=stranger",
                "-out",
                "stranger.csr",
            ],
            &work,
        );
        openssl(
            &[
                "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "rsa.key", "-subj",
                "/CN=rsa", "-out", "rsa.csr",
            ],
            &work,
        );
        let stranger = std::fs::read_to_string(work.join("stranger.csr")).unwrap();
        let rsa = std::fs::read_to_string(work.join("rsa.csr")).unwrap();
        let b_csr = csr_of(&b, "bmc-b member");
        let own = csr_of(&a, "bmc-a");
        let mut der = pem::parse(&b_csr).unwrap().into_contents();
        let last = der.len() - 8;
        der[last] ^= 0x01;
        let forged = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
        let before = observable(&a);
        for (what, input) in [
            ("not PEM", "garbage".to_owned()),
            ("a certificate, not a request", {
                let der = std::fs::read(a.cert_dir().join("identity.der")).unwrap();
                pem::encode(&pem::Pem::new("CERTIFICATE", der))
            }),
            ("oversized", "A".repeat(9000)),
            ("a signature that does not verify", forged),
            ("a key nobody attested", stranger),
            ("an RSA key", rsa),
            ("the authority's own CA key", own),
            ("two requests", b_csr.clone() + &b_csr),
        ] {
            // dbus-send, which (unlike busctl) prints the D-Bus error name.
            let out = Command::new("dbus-send")
                .arg(format!("--bus={}", a.bus.address))
                .args([
                    "--print-reply",
                    &format!("--dest={SEED_BUS}"),
                    AUTHORITY,
                    &format!("{AUTHORITY_IFACE}.SignCSR"),
                ])
                .arg(format!("string:{input}"))
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{what} was accepted");
            assert!(
                stderr.starts_with(&format!("Error {INVALID_ARGUMENT}: ")),
                "{what}: {stderr}"
            );
            assert_eq!(observable(&a), before, "{what} changed something");
        }

        // B's own CA key, attested when A paired with it: signed.
        let entry = sign_csr(&a, &b_csr).unwrap();
        assert!(entry.starts_with(&format!("{AUTHORITY}/entry/")), "{entry}");
        for iface in [ENTRY_IFACE, DELETE_IFACE] {
            check_object(
                &a.bus.address,
                SEED_BUS,
                &entry,
                &yaml_path_for(&root, iface),
            )
            .unwrap();
        }
        assert_eq!(
            a.get(SEED_BUS, &entry, ENTRY_IFACE, "Status"),
            "s \"xyz.openbmc_project.Certs.Entry.State.Complete\""
        );
        let json = call(
            &a,
            &[
                "--json=short",
                "get-property",
                SEED_BUS,
                &entry,
                ENTRY_IFACE,
                "ClientCertificate",
            ],
        )
        .unwrap();
        let json: serde_json::Value = serde_json::from_str(&json).unwrap();
        let issued = json["data"].as_str().unwrap().to_owned();
        let blocks = pem::parse_many(&issued).unwrap();
        assert_eq!(
            blocks.len(),
            2,
            "the member's CA certificate, then the group root"
        );
        std::fs::write(work.join("member.pem"), pem::encode(&blocks[0])).unwrap();
        std::fs::write(work.join("root.pem"), pem::encode(&blocks[1])).unwrap();
        openssl(&["verify", "-CAfile", "root.pem", "member.pem"], &work);
        let member = bmc_pairing_manager::identity::summarize(blocks[0].contents()).unwrap();
        let b_ca = bmc_pairing_manager::identity::summarize(
            &std::fs::read(b.cert_dir().join("ca.der")).unwrap(),
        )
        .unwrap();
        assert_eq!(member.public_key, b_ca.public_key, "for B's CA key");
        assert_eq!(
            blocks[1].contents(),
            std::fs::read(a.cert_dir().join("group-root.der")).unwrap()
        );
        // Its properties are the authority's to write.
        assert!(
            call(
                &a,
                &[
                    "set-property",
                    SEED_BUS,
                    &entry,
                    ENTRY_IFACE,
                    "Status",
                    "s",
                    "xyz.openbmc_project.Certs.Entry.State.Pending",
                ],
            )
            .is_err()
        );
        // The caller deletes it once read.
        call(&a, &["call", SEED_BUS, &entry, DELETE_IFACE, "Delete"]).unwrap();
        assert!(
            object_interfaces(&a.bus.address, SEED_BUS, &entry)
                .map_or(true, |i| !i.iter().any(|n| n == ENTRY_IFACE))
        );
    }
}
