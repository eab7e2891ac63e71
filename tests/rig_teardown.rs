//! The rig cleans up after itself: every process it started inside a namespace is started
//! through `ip netns exec`, which execs in place (the PID the rig holds is the program's
//! own), and dropping the rig, also while a test panics, leaves no process and no
//! namespace behind.
#![cfg(test)]

use std::time::Duration;

use bmc_test_support::rig::{Options, Rig, Source};

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn namespaces() -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn alive(pid: u32) -> bool {
    // A zombie (reaped later by init) has no namespace and runs nothing.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
}

#[test]
fn ip_netns_exec_keeps_the_pid_and_drop_removes_everything_even_on_panic() {
    let mut pids = Vec::new();
    let mut names = Vec::new();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let rig = Rig::start(
            &["bmc-a", "bmc-b"],
            Options {
                source: Source::Networkd,
                ..Options::default()
            },
        );
        for b in &rig.bmcs {
            names.push(b.ns.name.clone());
            let held = [
                (b.daemon_pid().unwrap(), "bmc-pairing-man"),
                (b.lldpd.as_ref().unwrap().pid(), "lldpd"),
                (b.tpm.as_ref().unwrap().pid(), "swtpm"),
                (b.standin.as_ref().unwrap().pid(), "networkd-lldp-s"),
            ];
            for (pid, program) in held {
                assert_eq!(comm(pid), program, "the held PID is the program, not `ip`");
            }
            // Everything in the namespace, including lldpd's own child and the daemon's
            // lldpcli, which the rig never held.
            pids.extend(b.ns.pids());
        }
        assert!(pids.len() >= 10, "{pids:?}");
        panic!("a failing test");
    }));
    assert!(result.is_err());
    bmc_test_support::wait_for(
        Duration::from_secs(10),
        "every rig process to be gone",
        || pids.iter().all(|p| !alive(*p)).then_some(()),
    );
    let listed = namespaces();
    for n in &names {
        assert!(!listed.contains(n.as_str()), "{n} left behind");
    }
}
