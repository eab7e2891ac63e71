//! The trust quorum on the netns rig: three BMCs (own namespace, dbus-daemon, swtpm, lldpd,
//! bmc-attestation), paired with each other, initialize a 2-of-3 group; then every daemon
//! is killed and they come back one by one. A lone member stays locked, each unlocks once
//! one peer with an honest share is back, and a tampered share is detected and refused.
#![cfg(test)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bmc_test_support::rig::{Options, Rig, RigBmc, Topology, provision_until_accepted};
use bmc_test_support::{SEED_BUS, wait_for};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(45);
const PATH: &str = "/xyz/openbmc_project/BmcPairingManager/trust_quorum";
const IFACE: &str = "xyz.openbmc_project.BmcPairing.TrustQuorum";
const NAMES: [&str; 3] = ["bmc-a", "bmc-b", "bmc-c"];

fn keys_dir(bmc: &RigBmc) -> PathBuf {
    bmc.bmc.dir.join("run").join("trust-quorum")
}

fn target_marker(bmc: &RigBmc) -> PathBuf {
    bmc.bmc.dir.join("run").join("unlocked.target-reached")
}

fn quorum_config(bmc: &RigBmc, tamper: bool) -> serde_json::Value {
    json!({
        "keys_dir": keys_dir(bmc),
        "purposes": ["storage", "backup"],
        // Stands in for `systemctl start bmc-trust-quorum-unlocked.target` (no systemd here).
        "unlocked_command": ["/usr/bin/touch", target_marker(bmc)],
        "retry_interval_ms": 500,
        "test_tamper_shares": tamper,
    })
}

fn state(bmc: &RigBmc) -> String {
    let v = bmc.bmc.get(SEED_BUS, PATH, IFACE, "State");
    v.trim_start_matches("s ")
        .trim_matches('"')
        .rsplit('.')
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn wait_state(bmc: &RigBmc, want: &str) {
    wait_for(
        LIMIT,
        &format!("{} trust quorum {want}", bmc.name()),
        || (state(bmc) == want).then_some(()),
    );
}

fn initialize(bmc: &RigBmc, threshold: &str) -> Result<(), String> {
    let out = bmc
        .bmc
        .busctl(&["call", SEED_BUS, PATH, IFACE, "Initialize", "u", threshold]);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn key(bmc: &RigBmc, purpose: &str) -> Option<Vec<u8>> {
    fs::read(keys_dir(bmc).join(format!("{purpose}.key"))).ok()
}

fn fingerprint_of(rig: &Rig, name: &str, seen_by: &str) -> String {
    let v = rig
        .bmc(seen_by)
        .peer_prop(name, "IdentityFingerprint")
        .expect("paired");
    v.trim_start_matches("s ").trim_matches('"').to_owned()
}

fn every_file(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            every_file(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Starts the three BMCs with the quorum configured and pairs each with every other.
fn paired_mesh() -> Rig {
    paired_mesh_with(|_, _| {})
}

/// [`paired_mesh`], with `prepare` applied to each BMC (and the rig's root) before its
/// daemons start.
fn paired_mesh_with(prepare: impl Fn(&mut RigBmc, &Path)) -> Rig {
    let mut rig = Rig::start(
        &NAMES,
        Options {
            topology: Topology::Switch,
            start_daemons: false,
            ..Options::default()
        },
    );
    let root = rig.root.path().to_path_buf();
    for name in NAMES {
        let bmc = rig.bmc_mut(name);
        let config = quorum_config(bmc, false);
        bmc.bmc.set_config("trust_quorum", config);
        prepare(bmc, &root);
        bmc.start_daemon();
    }
    for name in NAMES {
        let bmc = rig.bmc(name);
        for other in NAMES.iter().filter(|o| **o != name) {
            bmc.wait_lldp_neighbour(other, LIMIT);
        }
        bmc.bmc.provision("self").expect("self");
    }
    // A full mesh: every member paired with (and attested by) every other.
    for name in NAMES {
        for other in NAMES.iter().filter(|o| **o != name) {
            provision_until_accepted(rig.bmc(name), other, LIMIT);
        }
    }
    for name in NAMES {
        for other in NAMES.iter().filter(|o| **o != name) {
            rig.bmc(name).wait_peer_state(other, "Connected", LIMIT);
        }
    }
    rig
}

/// The sealed share files of `bmc`, by epoch.
fn sealed_epochs(bmc: &RigBmc) -> Vec<u64> {
    let mut epochs: Vec<u64> = fs::read_dir(bmc.bmc.state_dir().join("trust-quorum"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix("share-")?
                .strip_suffix(".sealed")?
                .parse()
                .ok()
        })
        .collect();
    epochs.sort_unstable();
    epochs
}

fn epoch(bmc: &RigBmc) -> u64 {
    let v = bmc.bmc.get(SEED_BUS, PATH, IFACE, "Epoch");
    v.trim_start_matches("t ").parse().expect("epoch")
}

/// kill -9 of the initiator (and, every other round, of a member too) at a different moment
/// of each initialization; after restarts every member ends in the old state (no group, no
/// share) or the new one (the same epoch, its share sealed), never a mix.
#[test]
fn kill_9_during_initialization_leaves_the_old_or_the_new_state_everywhere() {
    let mut rig = paired_mesh();
    let mut committed = false;
    for (round, delay_ms) in [0u64, 15, 40, 80, 150, 300].into_iter().enumerate() {
        if committed {
            break;
        }
        initialize(rig.bmc("bmc-a"), "2").expect("Initialize(2)");
        std::thread::sleep(Duration::from_millis(delay_ms));
        rig.bmc_mut("bmc-a").kill9();
        let member = if round % 2 == 1 { Some("bmc-c") } else { None };
        if let Some(m) = member {
            rig.bmc_mut(m).kill9();
        }
        rig.bmc_mut("bmc-a").start_daemon();
        if let Some(m) = member {
            rig.bmc_mut(m).start_daemon();
        }
        // Settled: every member Uninitialized, or every member in the group of one epoch;
        // and still so a moment later (nothing in flight changes it).
        let settled = |rig: &Rig| -> Option<bool> {
            let states: Vec<String> = NAMES.iter().map(|n| state(rig.bmc(n))).collect();
            if states.iter().all(|s| s == "Uninitialized") {
                return Some(false);
            }
            let epochs: Vec<u64> = NAMES.iter().map(|n| epoch(rig.bmc(n))).collect();
            (states.iter().all(|s| s == "Unlocked") && epochs.iter().all(|e| *e == epochs[0]))
                .then_some(true)
        };
        let outcome = wait_for(
            LIMIT,
            &format!("round {round}: the members to agree"),
            || settled(&rig),
        );
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            settled(&rig),
            Some(outcome),
            "round {round}: changed after settling"
        );
        eprintln!(
            "round {round}: killed after {delay_ms} ms{}: {}",
            member.map(|m| format!(" (and {m})")).unwrap_or_default(),
            if outcome { "committed" } else { "rolled back" }
        );
        for name in NAMES {
            let sealed = sealed_epochs(rig.bmc(name));
            if outcome {
                assert_eq!(sealed, vec![epoch(rig.bmc(name))], "{name}: round {round}");
            } else {
                assert!(
                    sealed.is_empty(),
                    "{name}: round {round}: {sealed:?} left behind"
                );
            }
        }
        committed = outcome;
    }
    // The keys agree wherever the group exists.
    if committed {
        let storage = key(rig.bmc("bmc-a"), "storage");
        assert!(storage.is_some());
        for name in NAMES {
            assert_eq!(key(rig.bmc(name), "storage"), storage, "{name}");
        }
    }
}

#[test]
fn two_of_three_unlocks_with_one_peer_stays_locked_alone_and_refuses_a_tampered_share() {
    let mut rig = paired_mesh();
    for name in NAMES {
        assert_eq!(state(rig.bmc(name)), "Uninitialized");
    }

    // Bad thresholds change nothing.
    let a = rig.bmc("bmc-a");
    for bad in ["0", "1", "4"] {
        let err = initialize(a, bad).unwrap_err();
        assert!(
            err.contains("InvalidArgument") || err.contains("outside 2..=3"),
            "threshold {bad}: {err}"
        );
    }
    assert_eq!(state(a), "Uninitialized");
    assert!(!a.bmc.state_dir().join("trust-quorum/quorum.json").exists());

    initialize(a, "2").expect("Initialize(2)");
    for name in NAMES {
        wait_state(rig.bmc(name), "Unlocked");
    }
    let storage = key(rig.bmc("bmc-a"), "storage").expect("storage key");
    assert_eq!(storage.len(), 32);
    assert_ne!(key(rig.bmc("bmc-a"), "backup"), Some(storage.clone()));
    for name in NAMES {
        let bmc = rig.bmc(name);
        assert_eq!(
            key(bmc, "storage").as_ref(),
            Some(&storage),
            "{name}: one secret"
        );
        assert!(target_marker(bmc).exists(), "{name}: unlocked hook ran");
        assert_eq!(bmc.bmc.get(SEED_BUS, PATH, IFACE, "Threshold"), "u 2");
        assert_eq!(bmc.bmc.get(SEED_BUS, PATH, IFACE, "Epoch"), "t 1");
        let members = bmc.bmc.get(SEED_BUS, PATH, IFACE, "Members");
        assert!(members.starts_with("as 3 "), "{name}: {members}");
        assert!(
            bmc.bmc
                .state_dir()
                .join("trust-quorum/share-1.sealed")
                .exists(),
            "{name}: its share is sealed"
        );
        // A second initialization is refused.
        let again = initialize(bmc, "2").unwrap_err();
        assert!(again.contains("Unlocked"), "{name}: {again}");
    }

    // Every daemon dies; the tmpfs (keys, hook marker) does not survive a reboot either.
    for name in NAMES {
        let bmc = rig.bmc_mut(name);
        bmc.kill9();
        let _ = fs::remove_dir_all(bmc.bmc.dir.join("run"));
    }
    // A alone: locked, and it says so. Its events go to its log (no journal socket), where
    // the test reads them: each is a line ending in `event=<full name>`.
    // What A logged before this restart (its first unlock) is not read below.
    let a_log_from = {
        let a = rig.bmc_mut("bmc-a");
        let nowhere = a.bmc.dir.join("no-journal-here");
        a.bmc.set_config("journal_socket", json!(nowhere));
        let from = a.bmc.log().len();
        a.start_daemon();
        from
    };
    let a = rig.bmc("bmc-a");
    wait_state(a, "Locked");
    wait_for(LIMIT, "A to log that it stays locked", || {
        a.bmc
            .log()
            .contains("stays locked: 1 of 2 shares")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(state(a), "Locked");
    assert_eq!(key(a, "storage"), None);
    // It asked every 500 ms; the event says it once per count, not once per attempt.
    let failed = events(a, "QuorumUnlockFailed", a_log_from);
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert!(failed[0].contains(r#"HAVE="1" NEED="2""#), "{failed:?}");

    // B comes back, tampering with every share it releases: B unlocks with A's honest
    // share; A detects B's bad one, refuses it, and stays locked.
    {
        let b = rig.bmc_mut("bmc-b");
        let config = quorum_config(b, true);
        b.bmc.set_config("trust_quorum", config);
        b.start_daemon();
    }
    wait_state(rig.bmc("bmc-b"), "Unlocked");
    assert_eq!(key(rig.bmc("bmc-b"), "storage").as_ref(), Some(&storage));
    let a = rig.bmc("bmc-a");
    wait_for(LIMIT, "A to refuse B's tampered share", || {
        a.bmc
            .log()
            .contains("does not match the commitment; refused")
            .then_some(())
    });
    assert_eq!(state(a), "Locked");

    // C comes back: A unlocks with C's honest share, C with A's (or B's... B tampers, so A's).
    rig.bmc_mut("bmc-c").start_daemon();
    wait_state(rig.bmc("bmc-c"), "Unlocked");
    wait_state(rig.bmc("bmc-a"), "Unlocked");
    let a = rig.bmc("bmc-a");
    assert_eq!(key(a, "storage").as_ref(), Some(&storage));
    let contributors = a.bmc.get(SEED_BUS, PATH, IFACE, "LastUnlockContributors");
    let (fa, fc) = (
        fingerprint_of(&rig, "bmc-a", "bmc-b"),
        fingerprint_of(&rig, "bmc-c", "bmc-a"),
    );
    assert_eq!(contributors, format!("as 2 \"{fa}\" \"{fc}\""));
    // The events: B's bad share named by B's pinned identity, then the unlock.
    let fb = fingerprint_of(&rig, "bmc-b", "bmc-a");
    let bad = events(a, "QuorumBadShare", a_log_from);
    assert!(!bad.is_empty(), "no QuorumBadShare event");
    assert!(
        bad.iter()
            .all(|e| e.contains(&format!(r#"IDENTITY_FINGERPRINT="{fb}""#))),
        "{bad:?}"
    );
    let unlocked = events(a, "QuorumUnlocked", a_log_from);
    assert_eq!(unlocked.len(), 1, "{unlocked:?}");
    assert!(
        unlocked[0].contains(r#"EPOCH="1""#) && unlocked[0].contains(&fc),
        "{unlocked:?}"
    );

    // Neither the derived key nor (so far as a test can see) anything secret is on disk in
    // the state directory or in a daemon's environment.
    for name in NAMES {
        let bmc = rig.bmc(name);
        let mut files = Vec::new();
        every_file(&bmc.bmc.dir.join("state"), &mut files);
        assert!(!files.is_empty());
        let hex = bmc_pairing_core::hex::hex_encode(&storage);
        for file in files {
            let bytes = fs::read(&file).unwrap();
            assert!(
                !contains(&bytes, &storage) && !contains(&bytes, hex.as_bytes()),
                "{} holds the key",
                file.display()
            );
        }
        let pid = bmc.daemon_pid().expect("running");
        let environ = fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(!contains(&environ, &storage) && !contains(&environ, hex.as_bytes()));
        let log = bmc.bmc.log();
        assert!(!log.contains(&hex), "{name}: the key is not logged");
    }
}

/// The lines of `bmc`'s log that carry the event `name` (`Pairing.events.yaml`).
/// `from` is a length of the log: earlier lines are not read.
fn events(bmc: &RigBmc, name: &str, from: usize) -> Vec<String> {
    let tail = format!("event=xyz.openbmc_project.BmcPairing.Pairing.{name}");
    let log = bmc.bmc.log();
    log.get(from..)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.trim_end().ends_with(&tail))
        .map(str::to_owned)
        .collect()
}

/// The path of `peer`'s object on `bmc`.
fn peer_path(bmc: &RigBmc, peer: &str) -> String {
    bmc.bmc
        .peer_paths()
        .into_iter()
        .find(|p| {
            bmc.bmc
                .get(SEED_BUS, p, bmc_test_support::PEER_IFACE, "Name")
                == format!("s \"{peer}\"")
        })
        .expect("peer object")
}

fn reattest(bmc: &RigBmc, peer: &str) {
    let path = peer_path(bmc, peer);
    let out = bmc.bmc.busctl(&[
        "call",
        SEED_BUS,
        &path,
        bmc_test_support::PEER_IFACE,
        "Reattest",
    ]);
    assert!(out.status.success(), "{out:?}");
}

/// C is quarantined by A and B (its measured os-release changed; they enforce it): after a
/// restart it asks both for shares and gets none, so it stays locked while they stay
/// unlocked. Once its measurement is right again and A re-attests it, A's share unlocks it.
#[test]
fn a_quarantined_member_gets_no_share() {
    // os-release (measurement index 2) is the same on every rig BMC: A and B enforce it.
    let os_release = b"ID=openbmc\n";
    let digest =
        bmc_pairing_core::hex::hex_encode(&<sha2::Sha256 as sha2::Digest>::digest(os_release));
    let mut rig = paired_mesh_with(|bmc, root| {
        if bmc.name() == "bmc-c" {
            return;
        }
        let reference = root.join("reference.json");
        fs::write(
            &reference,
            format!(r#"{{"version": 1, "measurements": {{"2": "{digest}"}}}}"#),
        )
        .unwrap();
        bmc.bmc
            .set_attestation_config("measurement_policy", json!("enforce"));
        bmc.bmc
            .set_attestation_config("reference_values", json!(reference));
    });
    initialize(rig.bmc("bmc-a"), "2").expect("Initialize(2)");
    for name in NAMES {
        wait_state(rig.bmc(name), "Unlocked");
    }
    let storage = key(rig.bmc("bmc-a"), "storage").expect("key");

    // C's os-release changes; A and B re-attest it and quarantine it.
    let os_file = rig.bmc("bmc-c").bmc.measured_files().remove(1);
    fs::write(&os_file, b"ID=something-else\n").unwrap();
    for name in ["bmc-a", "bmc-b"] {
        reattest(rig.bmc(name), "bmc-c");
        assert!(
            rig.bmc(name)
                .peer_prop("bmc-c", "AttestationOutcome")
                .unwrap()
                .ends_with(".Rejected\""),
            "{name} quarantined C"
        );
    }
    // C restarts (its tmpfs gone) and asks: no share from anyone.
    {
        let c = rig.bmc_mut("bmc-c");
        c.kill9();
        let _ = fs::remove_dir_all(c.bmc.dir.join("run"));
        c.start_daemon();
    }
    let c = rig.bmc("bmc-c");
    wait_state(c, "Locked");
    wait_for(LIMIT, "C to log that it stays locked", || {
        c.bmc
            .log()
            .contains("stays locked: 1 of 2 shares")
            .then_some(())
    });
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(state(c), "Locked");
    assert_eq!(key(c, "storage"), None);
    assert_eq!(state(rig.bmc("bmc-a")), "Unlocked");
    assert_eq!(state(rig.bmc("bmc-b")), "Unlocked");

    // Its measurement is right again and A re-attests it: A's share unlocks it.
    fs::write(&os_file, os_release).unwrap();
    reattest(rig.bmc("bmc-a"), "bmc-c");
    wait_state(rig.bmc("bmc-c"), "Unlocked");
    assert_eq!(key(rig.bmc("bmc-c"), "storage"), Some(storage));
}

fn unpair(bmc: &RigBmc, peer: &str) {
    let path = peer_path(bmc, peer);
    let out = bmc.bmc.busctl(&[
        "call",
        SEED_BUS,
        &path,
        bmc_test_support::PEER_IFACE,
        "Unpair",
    ]);
    assert!(out.status.success(), "{out:?}");
}

fn reshare(bmc: &RigBmc, threshold: &str) -> Result<(), String> {
    let out = bmc
        .bmc
        .busctl(&["call", SEED_BUS, PATH, IFACE, "Reshare", "u", threshold]);
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

fn wait_epoch(bmc: &RigBmc, want: u64) {
    wait_for(LIMIT, &format!("{} at epoch {want}", bmc.name()), || {
        (epoch(bmc) == want && state(bmc) == "Unlocked").then_some(())
    });
}

/// Four BMCs: a 2-of-3 group of A, B, C; D is paired and the group reshared to four (epoch
/// 2, same secret, epoch-1 shares gone); C is unpaired everywhere and the group reshared to
/// A, B, D (epoch 3). After every daemon restarts, A with only C beside it stays locked (C's
/// epoch-2 share is worth nothing and C is no longer accepted), and unlocks once D is back.
#[test]
fn four_bmcs_add_a_member_then_remove_one_which_can_no_longer_contribute() {
    const FOUR: [&str; 4] = ["bmc-a", "bmc-b", "bmc-c", "bmc-d"];
    let mut rig = Rig::start(
        &FOUR,
        Options {
            topology: Topology::Switch,
            start_daemons: false,
            ..Options::default()
        },
    );
    for name in FOUR {
        let bmc = rig.bmc_mut(name);
        let config = quorum_config(bmc, false);
        bmc.bmc.set_config("trust_quorum", config);
        bmc.start_daemon();
    }
    for name in FOUR {
        let bmc = rig.bmc(name);
        for other in FOUR.iter().filter(|o| **o != name) {
            bmc.wait_lldp_neighbour(other, LIMIT);
        }
        bmc.bmc.provision("self").expect("self");
    }
    let mesh = |rig: &Rig, among: &[&str]| {
        for x in among {
            for y in among.iter().filter(|y| *y != x) {
                provision_until_accepted(rig.bmc(x), y, LIMIT);
            }
        }
        for x in among {
            for y in among.iter().filter(|y| *y != x) {
                rig.bmc(x).wait_peer_state(y, "Connected", LIMIT);
            }
        }
    };
    mesh(&rig, &["bmc-a", "bmc-b", "bmc-c"]);
    initialize(rig.bmc("bmc-a"), "2").expect("Initialize(2)");
    for name in ["bmc-a", "bmc-b", "bmc-c"] {
        wait_epoch(rig.bmc(name), 1);
    }
    assert_eq!(state(rig.bmc("bmc-d")), "Uninitialized");
    let storage = key(rig.bmc("bmc-a"), "storage").expect("key");

    // D joins.
    mesh(&rig, &FOUR);
    reshare(rig.bmc("bmc-a"), "2").expect("Reshare(2)");
    for name in FOUR {
        let bmc = rig.bmc(name);
        wait_epoch(bmc, 2);
        assert!(
            bmc.bmc
                .get(SEED_BUS, PATH, IFACE, "Members")
                .starts_with("as 4 ")
        );
        wait_for(LIMIT, &format!("{name}: only the epoch-2 share"), || {
            (sealed_epochs(bmc) == vec![2]).then_some(())
        });
    }
    assert_eq!(key(rig.bmc("bmc-d"), "storage").as_ref(), Some(&storage));

    // C leaves: unpaired on the others, then the group is reshared without it.
    for name in ["bmc-a", "bmc-b", "bmc-d"] {
        unpair(rig.bmc(name), "bmc-c");
    }
    reshare(rig.bmc("bmc-a"), "2").expect("Reshare(2) without C");
    for name in ["bmc-a", "bmc-b", "bmc-d"] {
        let bmc = rig.bmc(name);
        wait_epoch(bmc, 3);
        assert!(
            bmc.bmc
                .get(SEED_BUS, PATH, IFACE, "Members")
                .starts_with("as 3 ")
        );
        wait_for(LIMIT, &format!("{name}: only the epoch-3 share"), || {
            (sealed_epochs(bmc) == vec![3]).then_some(())
        });
    }

    // Every daemon restarts; A has only C beside it: locked.
    for name in FOUR {
        let bmc = rig.bmc_mut(name);
        bmc.kill9();
        let _ = fs::remove_dir_all(bmc.bmc.dir.join("run"));
    }
    rig.bmc_mut("bmc-a").start_daemon();
    rig.bmc_mut("bmc-c").start_daemon();
    let a = rig.bmc("bmc-a");
    wait_state(a, "Locked");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(state(a), "Locked", "C cannot help A");
    assert_eq!(state(rig.bmc("bmc-c")), "Locked", "nobody helps C");
    assert_eq!(key(rig.bmc("bmc-c"), "storage"), None);

    // D back: A unlocks with D's share.
    rig.bmc_mut("bmc-d").start_daemon();
    wait_state(rig.bmc("bmc-a"), "Unlocked");
    assert_eq!(key(rig.bmc("bmc-a"), "storage").as_ref(), Some(&storage));
    let contributors = rig
        .bmc("bmc-a")
        .bmc
        .get(SEED_BUS, PATH, IFACE, "LastUnlockContributors");
    let fd = fingerprint_of(&rig, "bmc-d", "bmc-a");
    assert!(
        contributors.ends_with(&format!("\"{fd}\"")),
        "{contributors}"
    );
}

/// kill -9 of the coordinator (and, every other round, of a member) at a different moment of
/// each reshare of a 2-of-3 group (alternately to 3-of-3 and back to 2-of-3, the same three
/// members): afterwards every member is at the old epoch with only its old share, or at the
/// new epoch with only its new share, and all hold the same secret.
#[test]
fn kill_9_during_resharing_leaves_the_old_epoch_or_the_new_one_everywhere() {
    let mut rig = paired_mesh();
    initialize(rig.bmc("bmc-a"), "2").expect("Initialize(2)");
    for name in NAMES {
        wait_epoch(rig.bmc(name), 1);
    }
    let storage = key(rig.bmc("bmc-a"), "storage").expect("key");
    let mut moved = 0;
    for (round, delay_ms) in [0u64, 20, 50, 100, 200, 400].into_iter().enumerate() {
        let before = epoch(rig.bmc("bmc-a"));
        let threshold = if round % 2 == 0 { "3" } else { "2" };
        reshare(rig.bmc("bmc-a"), threshold).expect("Reshare");
        std::thread::sleep(Duration::from_millis(delay_ms));
        rig.bmc_mut("bmc-a").kill9();
        let member = (round % 2 == 1).then_some("bmc-b");
        if let Some(m) = member {
            rig.bmc_mut(m).kill9();
        }
        rig.bmc_mut("bmc-a").start_daemon();
        if let Some(m) = member {
            rig.bmc_mut(m).start_daemon();
        }
        let agreed = |rig: &Rig| -> Option<u64> {
            let epochs: Vec<u64> = NAMES.iter().map(|n| epoch(rig.bmc(n))).collect();
            let all_unlocked = NAMES.iter().all(|n| state(rig.bmc(n)) == "Unlocked");
            let shares_match = NAMES
                .iter()
                .zip(&epochs)
                .all(|(n, e)| sealed_epochs(rig.bmc(n)) == vec![*e]);
            (all_unlocked && shares_match && epochs.iter().all(|e| *e == epochs[0]))
                .then_some(epochs[0])
        };
        let after = wait_for(
            LIMIT,
            &format!("round {round}: the members to agree"),
            || agreed(&rig),
        );
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(
            agreed(&rig),
            Some(after),
            "round {round}: changed after settling"
        );
        // Aborted attempts spend epochs, so a committed one may be more than one ahead.
        assert!(after >= before, "round {round}: epoch {before} -> {after}");
        for name in NAMES {
            assert_eq!(
                key(rig.bmc(name), "storage").as_ref(),
                Some(&storage),
                "{name}"
            );
        }
        eprintln!(
            "round {round}: killed after {delay_ms} ms{}: epoch {before} -> {after}",
            member.map(|m| format!(" (and {m})")).unwrap_or_default()
        );
        if after != before {
            moved += 1;
        }
    }
    assert!(
        moved > 0,
        "no reshare ever committed: the rounds tested only one side"
    );
}
