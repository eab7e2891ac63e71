//! Network namespaces for the rig: created with `ip netns add` under a name unique to this
//! process and call, deleted by name on drop (also when a test panics), after every process
//! still inside is killed by PID.
//!
//! Names are `bpm-<pid>-<n>-<tag>`. A namespace whose creating process is gone (a test run
//! killed with SIGKILL never runs its drops) is deleted by the next rig that starts.
#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const PREFIX: &str = "bpm-";

/// `ip <args>`, panicking with its stderr on failure.
pub fn ip(args: &[&str]) -> Output {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out
}

/// One network namespace, deleted on drop.
pub struct Netns {
    /// Its name under /run/netns.
    pub name: String,
}

impl Netns {
    /// A new namespace with `lo` up; `tag` makes the name readable (`bpm-812-3-bmc-a`).
    pub fn new(tag: &str) -> Netns {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        super::require_tool("ip");
        reap_stale();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("{PREFIX}{}-{n}-{tag}", std::process::id());
        ip(&["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        // `ip link set dev down` flushes IPv6 addresses unless this is set; keep them, so a
        // link taken down behaves like a pulled cable (the address is still there after).
        let out = ns
            .command("sysctl")
            .args(["-q", "-w", "net.ipv6.conf.all.keep_addr_on_down=1"])
            .output()
            .expect("run sysctl");
        assert!(
            out.status.success(),
            "sysctl keep_addr_on_down: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        ns
    }

    /// `ip -n <ns> <args>`, panicking on failure.
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut all = vec!["-n", self.name.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that runs `argv` inside the namespace (`ip netns exec <ns> argv...`). `ip`
    /// execs in place, so the child's PID is the program's own: killing it kills the program.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name]).arg(program);
        cmd
    }

    /// PIDs of the processes inside (`ip netns pids`).
    pub fn pids(&self) -> Vec<u32> {
        Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The link state of `dev` (`UP`, `DOWN`, `LOWERLAYERDOWN`).
    pub fn link_state(&self, dev: &str) -> String {
        let out = self.ip(&["-o", "link", "show", "dev", dev]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.split_whitespace()
            .skip_while(|w| *w != "state")
            .nth(1)
            .unwrap_or("?")
            .to_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        kill_all_in(&self.name);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// SIGKILLs every process left in namespace `name`, by PID (they are all ours: the
/// namespace was made for this run), and waits briefly for them to go.
fn kill_all_in(name: &str) {
    for _ in 0..50 {
        let pids: Vec<String> = Command::new("ip")
            .args(["netns", "pids", name])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        if pids.is_empty() {
            return;
        }
        let _ = Command::new("kill").arg("-KILL").args(&pids).status();
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Deletes namespaces left by rig runs whose process no longer exists.
fn reap_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|r| r.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            kill_all_in(name);
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}
