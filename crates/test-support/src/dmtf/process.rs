//! Child processes for the interop tests: each [`Child`] is killed by its PID when dropped
//! (also when the test panics), its output goes to a file the test can read, and
//! [`listens`] tells when it is ready without connecting to it (a probe connection would
//! count as a session to the emulators).
#![allow(clippy::panic)]

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A running child process with its output in a file.
#[derive(Debug)]
pub struct Child {
    label: String,
    child: Option<std::process::Child>,
    output: PathBuf,
}

impl Child {
    /// Starts `cmd` with stdout and stderr both written to `output`.
    ///
    /// # Panics
    /// When the program cannot be started.
    pub fn spawn(label: &str, mut cmd: Command, output: &Path) -> Child {
        let out = fs::File::create(output)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", output.display()));
        let err = out
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone a file handle: {e}"));
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {label} ({cmd:?}): {e}"));
        Child {
            label: label.to_owned(),
            child: Some(child),
            output: output.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, std::process::Child::id)
    }

    /// What it wrote so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// Its exit status, if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits until it exits, at most `limit`.
    ///
    /// # Panics
    /// When it is still running after `limit` (it is killed first).
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if start.elapsed() > limit {
                self.kill();
                panic!(
                    "{} still running after {limit:?}; output:\n{}",
                    self.label,
                    self.output()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL, then reap. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

/// CPU time of each live thread of process `pid`, by thread id, from the scheduler's own
/// nanosecond accounting (`/proc/<pid>/task/<tid>/schedstat`, first field). Threads that
/// exited are not in it: compare the thread sets of two readings.
///
/// # Panics
/// When the process is gone.
pub fn thread_cpu_times(pid: u32) -> std::collections::BTreeMap<u32, Duration> {
    let dir = format!("/proc/{pid}/task");
    fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{dir}: {e}"))
        .flatten()
        .filter_map(|task| {
            let tid = task.file_name().to_string_lossy().parse().ok()?;
            let text = fs::read_to_string(task.path().join("schedstat")).ok()?;
            let ns = text.split_whitespace().next()?.parse().ok()?;
            Some((tid, Duration::from_nanos(ns)))
        })
        .collect()
}

/// Runs `cmd` (program, arguments, working directory) `n` times one after another under
/// bash's `time`, and returns the user + system CPU time of all those runs (getrusage of the
/// reaped children, millisecond precision; `/proc` counts only 10 ms ticks).
///
/// # Panics
/// When a run exits non-zero, or bash's timing line does not parse.
pub fn cpu_time_of_runs(cmd: &Command, n: usize) -> Duration {
    let script = format!(
        "TIMEFORMAT='%3U %3S'; time {{ for ((i = 0; i < {n}; i++)); do \"$@\" >/dev/null 2>&1 \
         || {{ echo \"run $i failed: $*\" >&2; exit 1; }}; done; }}"
    );
    let mut bash = Command::new("bash");
    bash.arg("-c")
        .arg(script)
        .arg("bash")
        .arg(cmd.get_program());
    bash.args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        bash.current_dir(dir);
    }
    let out = bash
        .output()
        .unwrap_or_else(|e| panic!("cannot run bash: {e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let secs: Vec<f64> = stderr
        .lines()
        .last()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    match secs.as_slice() {
        [user, system] => Duration::from_secs_f64(user + system),
        _ => panic!("no timing line from bash: {stderr}"),
    }
}

/// True when process `pid` holds a socket listening on 127.0.0.1:`port`.
pub fn listens(pid: u32, port: u16) -> bool {
    let Ok(table) = fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let wanted = format!("0100007F:{port:04X}");
    let inodes: HashSet<String> = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1, state 3 (0A = LISTEN), inode 9.
            match (fields.get(1), fields.get(3), fields.get(9)) {
                (Some(local), Some(&"0A"), Some(inode)) if *local == wanted => {
                    Some(format!("socket:[{inode}]"))
                }
                _ => None,
            }
        })
        .collect();
    if inodes.is_empty() {
        return false;
    }
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        fs::read_link(fd.path())
            .map(|target| inodes.contains(target.to_string_lossy().as_ref()))
            .unwrap_or(false)
    })
}
