//! `make demo`: two BMCs pair on this machine.
//!
//! Each BMC is a network namespace with its own dbus-daemon, swtpm (the daemons' keys live
//! in it), lldpd, `bmc-attestation` (SPDM responder and requester) and `bmc-pairing-manager`;
//! the two are joined by a veth pair with IPv6 ULAs (see `crates/test-support/src/rig.rs`). The demo
//! prints, with timestamps, every command an operator would type (busctl against each BMC's
//! bus, kill, ip, the certificate commands) and every `Provisioned` / `PeerConnected` change
//! the daemons signal.
//!
//! Part 1 pairs them in first-contact mode (each side names the other; each attests the
//! other over SPDM first) and shows the attestation, a killed daemon, a restart and a link
//! cut. Part 2 enrols both with a manufacturing CA (OpenSSL plays the factory) and pairs them
//! again in anchored mode, named on one side only. It exits 0 only if every step happened;
//! every process and namespace it started is gone when it ends, also on failure.

// The shared harness reports setup failures by panicking, which ends the demo with a
// non-zero status after its drops have cleaned up.
#![allow(
    clippy::expect_used,
    clippy::panic,
    clippy::unwrap_used,
    clippy::indexing_slicing
)]

use std::process::ExitCode;
use std::time::{Duration, Instant};

use bmc_test_support::rig::{Options, Rig, RigBmc, Watcher};
use bmc_test_support::{
    CONNECTED, NOT_CONNECTED, PDI_BUS, PDI_IFACE, PDI_PATH, PEER_IFACE, SEED_BUS,
};
use sha2::{Digest, Sha256};

const ATT_BUS: &str = "xyz.openbmc_project.attestation";
const ATT_PEER_IFACE: &str = "xyz.openbmc_project.BmcPairing.Attestation.Peer";

const LIMIT: Duration = Duration::from_secs(30);

struct Demo {
    t0: Instant,
}

impl Demo {
    fn say(&self, what: &str) {
        println!("[{:>7.3}s] {what}", self.t0.elapsed().as_secs_f64());
    }

    fn step(&self, title: &str) {
        println!();
        self.say(&format!("== {title} =="));
    }

    /// Runs `busctl <args>` on `bmc`'s bus, printing it as typed and what it answered.
    fn busctl(&self, bmc: &RigBmc, args: &[&str]) -> Result<String, String> {
        self.say(&format!("{}$ busctl {}", bmc.name(), args.join(" ")));
        let out = bmc.bmc.busctl(args);
        let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if out.status.success() {
            indented(&text);
            Ok(text)
        } else {
            let err = String::from_utf8_lossy(&out.stderr).trim().to_owned();
            indented(&err);
            Err(err)
        }
    }

    fn provision(&self, bmc: &RigBmc, arg: &str) {
        self.busctl(
            bmc,
            &[
                "call",
                PDI_BUS,
                PDI_PATH,
                PDI_IFACE,
                "ProvisionPeer",
                "s",
                arg,
            ],
        )
        .unwrap_or_else(|e| panic!("{}: ProvisionPeer {arg}: {e}", bmc.name()));
    }

    fn show_state(&self, bmc: &RigBmc) {
        let _ = self.busctl(
            bmc,
            &[
                "get-property",
                PDI_BUS,
                PDI_PATH,
                PDI_IFACE,
                "Provisioned",
                "PeerConnected",
            ],
        );
    }

    fn shell(&self, words: &[String]) {
        self.say(&format!("$ {}", words.join(" ")));
    }
}

fn indented(text: &str) {
    for line in text.lines() {
        println!("            {line}");
    }
}

/// Waits until `bmc`'s daemon has taken `peer` from its LLDP source (its log says so) and
/// prints what lldpd and the daemon saw.
fn discovered(demo: &Demo, bmc: &RigBmc, peer: &str) {
    let addrs = bmc.wait_lldp_neighbour(peer, LIMIT);
    let shown: Vec<String> = addrs.iter().map(ToString::to_string).collect();
    demo.say(&format!(
        "{}: lldpd on eth0 sees neighbour {peer} (management address {})",
        bmc.name(),
        shown.join(", ")
    ));
    let line = bmc_test_support::wait_for(LIMIT, "the daemon to take the neighbour", || {
        bmc.bmc
            .log()
            .lines()
            .find(|l| l.contains("neighbour seen") && l.contains(&format!("\"{peer}\"")))
            .map(str::to_owned)
    });
    let detail = line
        .split("neighbour seen")
        .nth(1)
        .unwrap_or_default()
        .trim()
        .to_owned();
    demo.say(&format!(
        "{}: daemon's LLDP source reports it: {detail}",
        bmc.name()
    ));
}

/// The attestation A's `bmc-attestation` made of B: SPDM version, algorithms, the chain's
/// subjects and the per-index measurement verdicts, as an operator reads them.
fn show_attestation(demo: &Demo, a: &RigBmc) {
    let tree = a.bmc.busctl(&["tree", "--list", ATT_BUS]);
    let path = String::from_utf8_lossy(&tree.stdout)
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("/xyz/openbmc_project/attestation/peers/"))
        .expect("an attestation object")
        .to_owned();
    let _ = demo.busctl(
        a,
        &[
            "get-property",
            ATT_BUS,
            &path,
            ATT_PEER_IFACE,
            "Version",
            "Algorithms",
            "Outcome",
            "IdentityFingerprint",
        ],
    );
    let json = |prop: &str| -> serde_json::Value {
        let out = a.bmc.busctl(&[
            "--json=short",
            "get-property",
            ATT_BUS,
            &path,
            ATT_PEER_IFACE,
            prop,
        ]);
        serde_json::from_slice(&out.stdout).expect("busctl json")
    };
    demo.say(&format!(
        "{}$ busctl --json=short get-property {ATT_BUS} {path} {ATT_PEER_IFACE} Chain Measurements",
        a.name()
    ));
    for (i, cert) in json("Chain")["data"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let der: Vec<u8> = cert
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|b| b.as_u64())
            .filter_map(|b| u8::try_from(b).ok())
            .collect();
        let subject = bmc_pairing_manager::identity::summarize(&der)
            .map(|s| s.subject)
            .unwrap_or_default();
        indented(&format!("chain[{i}] subject: {subject}"));
    }
    for m in json("Measurements")["data"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let entry = m.as_array().cloned().unwrap_or_default();
        let index = entry.first().and_then(|v| v.as_u64()).unwrap_or_default();
        let what = match index {
            1 => "firmware image".to_owned(),
            2 => "os-release".to_owned(),
            i if i >= 128 => format!("TPM PCR {}", i - 128),
            i => format!("index {i}"),
        };
        let status = entry.get(2).and_then(|v| v.as_str()).unwrap_or_default();
        indented(&format!("measurement {index:>3} ({what}): {status}"));
    }
    let peer = a
        .bmc
        .peer_paths()
        .into_iter()
        .next()
        .expect("a peer object");
    let _ = demo.busctl(
        a,
        &[
            "get-property",
            SEED_BUS,
            &peer,
            PEER_IFACE,
            "AttestationOutcome",
            "TrustMode",
            "IdentityFingerprint",
        ],
    );
}

/// Runs an operator command inside `bmc`'s namespace, printing it; returns its output.
fn ns_run(demo: &Demo, bmc: &RigBmc, program: &std::path::Path, args: &[&str]) -> String {
    let mut words = vec![
        "ip".to_owned(),
        "netns".into(),
        "exec".into(),
        bmc.ns.name.clone(),
        program.display().to_string(),
    ];
    words.extend(args.iter().map(|s| (*s).to_owned()));
    demo.say(&format!("$ {}", words.join(" ")));
    let out = bmc.ns.command(program).args(args).output().expect("run");
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn openssl(demo: &Demo, args: &[&str]) {
    demo.say(&format!("$ openssl {}", args.join(" ")));
    let out = std::process::Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run(demo: &Demo) -> Vec<String> {
    demo.step("two BMCs, each in its own network namespace");
    let mut rig = Rig::start(
        &["bmc-a", "bmc-b"],
        Options {
            start_daemons: false,
            ..Options::default()
        },
    );
    // bmc-a audits what bmc-b measures against reference values: bmc-b's firmware image and
    // os-release as they are now (TPM PCRs are reported but not referenced).
    let reference = rig.root.path().join("reference-values.json");
    {
        let b = rig.bmc("bmc-b");
        let files = b.bmc.measured_files();
        std::fs::create_dir_all(files[0].parent().unwrap()).unwrap();
        std::fs::write(&files[0], "firmware of bmc-b").unwrap();
        std::fs::write(&files[1], "ID=openbmc\n").unwrap();
        let hex = |p: &std::path::Path| {
            bmc_pairing_core::hex::hex_encode(&Sha256::digest(std::fs::read(p).unwrap()))
        };
        std::fs::write(
            &reference,
            format!(
                r#"{{"version": 1, "measurements": {{"1": "{}", "2": "{}"}}}}"#,
                hex(&files[0]),
                hex(&files[1])
            ),
        )
        .unwrap();
    }
    rig.bmc_mut("bmc-a")
        .bmc
        .set_attestation_config("measurement_policy", serde_json::json!("audit"));
    rig.bmc_mut("bmc-a")
        .bmc
        .set_attestation_config("reference_values", serde_json::json!(reference));
    for name in ["bmc-a", "bmc-b"] {
        rig.bmc_mut(name).start_daemon();
    }
    for b in &rig.bmcs {
        demo.say(&format!(
            "{}: netns {}, eth0 {}/64, dbus-daemon {}, swtpm on its own 127.0.0.1:2321, \
             lldpd (tx every 1 s), bmc-attestation (SPDM on [{}]:4194), bmc-pairing-manager pid {} \
             (TPM keys, lldp_source=lldpd)",
            b.name(),
            b.ns.name,
            b.address,
            b.bmc.bus.address,
            b.address,
            b.daemon_pid().unwrap_or_default(),
        ));
    }
    demo.say("busctl lines below run against that BMC's bus (--address=<its dbus-daemon>)");
    let mut watchers = Vec::new();
    for b in &rig.bmcs {
        watchers.push(Watcher::start(
            &b.bmc.bus.address,
            Some((b.name().to_owned(), demo.t0)),
        ));
    }
    let mut done = Vec::new();

    demo.step("discovery by LLDP");
    {
        let (a, b) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"));
        discovered(demo, a, "bmc-b");
        discovered(demo, b, "bmc-a");
    }
    done.push("both BMCs discovered each other by LLDP".to_owned());

    demo.step("pairing (first-contact): self on both, then each names the other; each attests the other first");
    {
        let (a, b) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"));
        demo.provision(a, "self");
        demo.provision(b, "self");
        a.bmc.wait_for_provisioned();
        b.bmc.wait_for_provisioned();
        demo.provision(a, "peer");
        demo.provision(b, &a.address.to_string());
        a.bmc.wait_peer_connected(CONNECTED, LIMIT);
        b.bmc.wait_peer_connected(CONNECTED, LIMIT);
        demo.show_state(a);
        demo.show_state(b);
        let path = a
            .bmc
            .peer_paths()
            .into_iter()
            .next()
            .expect("a peer object");
        let _ = demo.busctl(
            a,
            &[
                "introspect",
                bmc_test_support::SEED_BUS,
                &path,
                bmc_test_support::PEER_IFACE,
            ],
        );
    }
    done.push("paired: ProvisionPeer self, peer (A) and A's address (B); both Connected".into());

    demo.step("what bmc-a's attestation of bmc-b found (SPDM 1.2: VCA, DIGESTS, CERTIFICATE, CHALLENGE, signed MEASUREMENTS)");
    show_attestation(demo, rig.bmc("bmc-a"));
    done.push("bmc-a attested bmc-b over SPDM (version, algorithms, chain, measurements audited) before pinning it".into());

    demo.step("kill -9 bmc-b's daemon");
    let pid = rig.bmc("bmc-b").daemon_pid().unwrap_or_default();
    demo.shell(&["kill".into(), "-9".into(), pid.to_string()]);
    rig.bmc_mut("bmc-b").kill9();
    rig.bmc("bmc-a")
        .bmc
        .wait_peer_connected(NOT_CONNECTED, LIMIT);
    demo.show_state(rig.bmc("bmc-a"));
    done.push("bmc-a went NotConnected when bmc-b was killed".into());

    demo.step("restart bmc-b's daemon (same TPM, same state)");
    {
        let b = rig.bmc("bmc-b");
        demo.shell(&[
            "ip".into(),
            "netns".into(),
            "exec".into(),
            b.ns.name.clone(),
            bmc_test_support::rig::daemon_binary().display().to_string(),
            "--config".into(),
            b.bmc.config_path.display().to_string(),
            "--bus".into(),
            b.bmc.bus.address.clone(),
        ]);
    }
    rig.bmc_mut("bmc-b").start_daemon();
    {
        let (a, b) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"));
        a.bmc.wait_peer_connected(CONNECTED, LIMIT);
        b.bmc.wait_peer_connected(CONNECTED, LIMIT);
        demo.show_state(a);
        demo.show_state(b);
    }
    done.push("after the restart both reconnected without a new ProvisionPeer".into());

    demo.step("link down");
    demo.shell(&rig.link_command("bmc-a", false));
    rig.set_link("bmc-a", false);
    {
        let (a, b) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"));
        a.bmc.wait_peer_connected(NOT_CONNECTED, LIMIT);
        b.bmc.wait_peer_connected(NOT_CONNECTED, LIMIT);
        demo.show_state(a);
    }
    done.push("link down: both NotConnected".into());

    demo.step("link up");
    demo.shell(&rig.link_command("bmc-a", true));
    rig.set_link("bmc-a", true);
    {
        let (a, b) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"));
        a.bmc.wait_peer_connected(CONNECTED, LIMIT);
        b.bmc.wait_peer_connected(CONNECTED, LIMIT);
        demo.show_state(a);
        demo.show_state(b);
    }
    done.push("link up: both Connected again".into());

    demo.step("part 2: anchored mode. Unpair, and enrol both BMCs with a manufacturing CA");
    // bmc-a unpairs first; bmc-b hears it (its next dial is told so: UnpairedByPeer) before
    // its own Unpair, which then owes bmc-a no goodbye. Had bmc-b unpaired before hearing,
    // its goodbye would still be owed, and would end bmc-a's new pairing below when bmc-a
    // dials it.
    for name in ["bmc-a", "bmc-b"] {
        if name == "bmc-b" {
            bmc_test_support::wait_for(LIMIT, "bmc-b to hear that bmc-a unpaired it", || {
                (rig.bmc("bmc-b")
                    .peer_prop("bmc-a", "UnpairedByPeer")
                    .as_deref()
                    == Some("b true"))
                .then_some(())
            });
        }
        let b = rig.bmc(name);
        let peer = b
            .bmc
            .peer_paths()
            .into_iter()
            .next()
            .expect("a peer object");
        demo.busctl(b, &["call", SEED_BUS, &peer, PEER_IFACE, "Unpair"])
            .expect("Unpair");
    }
    let factory = rig.root.path().join("factory");
    std::fs::create_dir_all(&factory).unwrap();
    let f = |n: &str| factory.join(n).display().to_string();
    openssl(
        demo,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "3",
            "-subj",
            "/CN=demo factory root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            &f("root.key"),
            "-out",
            &f("root.crt"),
        ],
    );
    std::fs::write(factory.join("ca.ext"), "basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\n").unwrap();
    let manager = bmc_test_support::rig::daemon_binary();
    for name in ["bmc-a", "bmc-b"] {
        let b = rig.bmc(name);
        let config = b.bmc.config_path.display().to_string();
        let csr = ns_run(demo, b, &manager, &["--config", &config, "csr"]);
        std::fs::write(factory.join(format!("{name}.csr")), &csr).unwrap();
        openssl(
            demo,
            &[
                "x509",
                "-req",
                "-days",
                "3",
                "-CAcreateserial",
                "-in",
                &f(&format!("{name}.csr")),
                "-CA",
                &f("root.crt"),
                "-CAkey",
                &f("root.key"),
                "-extfile",
                &f("ca.ext"),
                "-out",
                &f(&format!("{name}-ca.crt")),
            ],
        );
        indented(&ns_run(
            demo,
            b,
            &manager,
            &[
                "--config",
                &config,
                "install-ca-cert",
                &f(&format!("{name}-ca.crt")),
            ],
        ));
        indented(&ns_run(
            demo,
            b,
            &manager,
            &["--config", &config, "install-anchor", &f("root.crt")],
        ));
    }
    done.push("both BMCs enrolled: CA certificate from the factory CA, factory root in their own trust store".into());

    demo.step("restart both pairing managers with \"trust_mode\": \"anchored\"");
    for name in ["bmc-a", "bmc-b"] {
        let b = rig.bmc_mut(name);
        b.kill9();
        b.bmc
            .set_config("trust_mode", serde_json::json!("anchored"));
        b.start_daemon();
    }
    demo.step(
        "anchored pairing, named on bmc-a only: bmc-b attests bmc-a when it connects, then pins it",
    );
    {
        let (a, b) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"));
        // bmc-b's responder serves the enrolled chain from its next connection; a refused
        // try (PeerProvisioned false) is asked again too.
        // The restarted daemon needs its LLDP source's first read before "peer" resolves;
        // until then the call is refused with a clear error and asked again.
        bmc_test_support::wait_for(LIMIT, "bmc-a to pin bmc-b", || {
            let _ = demo.busctl(
                a,
                &[
                    "call",
                    PDI_BUS,
                    PDI_PATH,
                    PDI_IFACE,
                    "ProvisionPeer",
                    "s",
                    "peer",
                ],
            );
            std::thread::sleep(Duration::from_millis(700));
            (!a.bmc.peer_paths().is_empty()).then_some(())
        });
        a.bmc.wait_peer_connected(CONNECTED, LIMIT);
        b.bmc.wait_peer_connected(CONNECTED, LIMIT);
        demo.show_state(a);
        demo.show_state(b);
        let peer = b
            .bmc
            .peer_paths()
            .into_iter()
            .next()
            .expect("bmc-b pinned bmc-a");
        let _ = demo.busctl(
            b,
            &[
                "get-property",
                SEED_BUS,
                &peer,
                PEER_IFACE,
                "Name",
                "TrustMode",
                "AttestationOutcome",
            ],
        );
        assert!(
            b.bmc
                .get(SEED_BUS, &peer, PEER_IFACE, "TrustMode")
                .ends_with("TrustMode.Anchored\"")
        );
    }
    done.push(
        "anchored: ProvisionPeer on bmc-a only; bmc-b attested and pinned bmc-a; both Connected"
            .into(),
    );

    demo.step("cleaning up");
    for w in &watchers {
        w.mute();
    }
    let mut namespaces: Vec<String> = rig.bmcs.iter().map(|b| b.ns.name.clone()).collect();
    drop(rig);
    namespaces.extend(group_authority(demo, &mut done));
    let listed = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    for ns in &namespaces {
        assert!(!listed.contains(ns.as_str()), "namespace {ns} left behind");
    }
    demo.say(&format!(
        "every process killed, namespaces {} deleted",
        namespaces.join(", ")
    ));
    done
}

/// Three BMCs, one of them the group authority: N-1 ProvisionPeer calls on the authority,
/// one consent on each member, and the members pair with each other unnamed; then a member
/// unpaired on the authority is refused by the other. Returns the namespaces it used.
fn group_authority(demo: &Demo, done: &mut Vec<String>) -> Vec<String> {
    demo.step("a group authority: three BMCs on one switch, bmc-a configured group_authority");
    let mut rig = Rig::start(
        &["bmc-a", "bmc-b", "bmc-c"],
        Options {
            topology: bmc_test_support::rig::Topology::Switch,
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
    {
        let (a, b, c) = (rig.bmc("bmc-a"), rig.bmc("bmc-b"), rig.bmc("bmc-c"));
        a.wait_lldp_neighbour("bmc-b", LIMIT);
        a.wait_lldp_neighbour("bmc-c", LIMIT);
        for x in [a, b, c] {
            demo.provision(x, "self");
        }
        demo.say("two ProvisionPeer calls on the authority, one consent on each member");
        for (x, peer) in [(a, "bmc-b"), (a, "bmc-c"), (b, "bmc-a"), (c, "bmc-a")] {
            bmc_test_support::rig::provision_until_accepted(x, peer, LIMIT);
            demo.say(&format!("{}: ProvisionPeer s {peer}", x.name()));
        }
        b.wait_peer_state("bmc-c", "Connected", LIMIT);
        c.wait_peer_state("bmc-b", "Connected", LIMIT);
        for line in b
            .bmc
            .log()
            .lines()
            .filter(|l| l.contains("joined the group"))
        {
            demo.say(&format!("bmc-b log: {}", line.trim()));
        }
        for x in [b, c] {
            let paths = x.bmc.peer_paths();
            for p in &paths {
                let _ = demo.busctl(
                    x,
                    &[
                        "get-property",
                        SEED_BUS,
                        p,
                        PEER_IFACE,
                        "Name",
                        "TrustMode",
                        "AttestationOutcome",
                        "State",
                    ],
                );
            }
        }
        let root = a.bmc.cert_dir().join("group-root.der");
        for m in [b, c] {
            for (der, pem) in [
                (root.clone(), "group-root.pem"),
                (m.bmc.cert_dir().join("ca.der"), "member-ca.pem"),
                (m.bmc.cert_dir().join("identity.der"), "member-leaf.pem"),
            ] {
                let out = std::process::Command::new("openssl")
                    .args(["x509", "-inform", "DER", "-in"])
                    .arg(&der)
                    .arg("-out")
                    .arg(rig.root.path().join(pem))
                    .output()
                    .unwrap();
                assert!(out.status.success());
            }
            let dir = rig.root.path().to_str().unwrap().to_owned();
            openssl(
                demo,
                &[
                    "verify",
                    "-CAfile",
                    &format!("{dir}/group-root.pem"),
                    "-untrusted",
                    &format!("{dir}/member-ca.pem"),
                    &format!("{dir}/member-leaf.pem"),
                ],
            );
        }
        done.push(
            "group: 2 ProvisionPeer on the authority + 1 consent per member; members joined by \
             SignRequest over the pinned channel, paired with each other unnamed (anchored, \
             attested); openssl verifies their chains under the group root"
                .into(),
        );

        demo.say("bmc-a unpairs bmc-c: its next group list revokes it");
        let c_on_a = a
            .bmc
            .peer_paths()
            .into_iter()
            .find(|p| a.bmc.get(SEED_BUS, p, PEER_IFACE, "Name") == "s \"bmc-c\"")
            .expect("bmc-c on bmc-a");
        let _ = demo.busctl(a, &["call", SEED_BUS, &c_on_a, PEER_IFACE, "Unpair"]);
        bmc_test_support::wait_for(LIMIT, "bmc-b to drop bmc-c", || {
            // By path: reading a property of an object being removed would race.
            (!b.bmc.peer_paths().iter().any(|p| p.ends_with("/bmc_c"))).then_some(())
        });
        c.wait_peer_state("bmc-b", "NotConnected", LIMIT);
        demo.say("bmc-b dropped bmc-c's pin and refuses it; bmc-c's session to bmc-b is down");
        done.push("group revocation: bmc-c unpaired on the authority, refused by bmc-b".into());
    }
    let namespaces = rig.bmcs.iter().map(|b| b.ns.name.clone()).collect();
    drop(rig);
    namespaces
}

trait Provisioned {
    fn wait_for_provisioned(&self);
}

impl Provisioned for bmc_test_support::Bmc {
    fn wait_for_provisioned(&self) {
        bmc_test_support::wait_for(LIMIT, "Provisioned", || self.provisioned().then_some(()));
    }
}

fn main() -> ExitCode {
    let demo = Demo { t0: Instant::now() };
    println!("bmc-pairing-manager demo: two BMCs on one machine, discovered by LLDP, paired, kept");
    let done = run(&demo);
    println!();
    demo.say(&format!("demo passed: {} steps", done.len()));
    for (i, d) in done.iter().enumerate() {
        println!("  {}. {d}", i + 1);
    }
    ExitCode::SUCCESS
}
