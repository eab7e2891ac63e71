//! A throw-away software TPM (swtpm) for tests, demos and benches.
//!
//! Owns one `swtpm socket --tpm2` process per [`Swtpm`] value, on two free loopback TCP ports
//! (data port `P`, control port `P + 1`, the pair the tpm2-tss `swtpm` TCTI expects), with its
//! state in the directory the caller gives. The process is killed by PID when the value is
//! dropped, so a panicking test does not leave it behind.
//!
//! Std-only on purpose: the library's own unit tests use it too, and it shares no type with
//! the code under test. It drives the TPM only through swtpm's own tools and tpm2-tools.
//!
//! TPM tests are mandatory: when swtpm or tpm2-tools are missing, [`Swtpm::start`] panics
//! with a message saying how to get them, rather than letting the test pass silently.

use std::collections::HashSet;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

/// How long swtpm gets to open both sockets before the attempt counts as failed.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many port pairs are tried before giving up (another process may grab a port between
/// our probe and swtpm's bind).
const START_ATTEMPTS: usize = 8;

const NOT_INSTALLED: &str = "swtpm not installed: run `make test`, which installs it";
const TOOLS_NOT_INSTALLED: &str =
    "tpm2-tools / swtpm-tools not installed: run `make test`, which installs them";

/// One running swtpm, killed by PID on drop.
#[derive(Debug)]
pub struct Swtpm {
    child: Option<Child>,
    pid: u32,
    port: u16,
    ctrl_port: u16,
    state_dir: PathBuf,
}

impl Swtpm {
    /// Starts swtpm with its state in `state_dir` (created if needed) and waits until both
    /// of its sockets listen.
    ///
    /// # Panics
    /// When swtpm is not installed ("swtpm not installed: run `make test`, which installs
    /// it") or does not come up.
    pub fn start(state_dir: &Path) -> Swtpm {
        std::fs::create_dir_all(state_dir)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", state_dir.display()));
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let Some((port, ctrl_port)) = free_port_pair() else {
                last_failure = "no free pair of loopback ports".into();
                continue;
            };
            match spawn(state_dir, port, ctrl_port) {
                Ok(swtpm) => return swtpm,
                Err(why) => last_failure = why,
            }
        }
        panic!("swtpm did not start after {START_ATTEMPTS} attempts: {last_failure}");
    }

    /// The TCTI string for this TPM: `swtpm:host=127.0.0.1,port=P`.
    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The data port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The control port (data port + 1).
    pub fn ctrl_port(&self) -> u16 {
        self.ctrl_port
    }

    /// The swtpm process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Where swtpm keeps its state.
    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// A TPM reset, as on a host reboot: `_TPM_Init` over the control channel
    /// (`swtpm_ioctl -i`), then `TPM2_Startup(CLEAR)`. Transient objects and sessions are
    /// gone afterwards; the seeds, and so every primary key, are unchanged.
    ///
    /// # Panics
    /// When either step fails.
    pub fn reboot(&self) {
        let ctrl = format!("127.0.0.1:{}", self.ctrl_port);
        check(
            "swtpm_ioctl -i",
            run(Command::new("swtpm_ioctl").args(["--tcp", &ctrl, "-i"])),
        );
        self.tool("tpm2_startup", &["-c"]);
    }

    /// `TPM2_Clear` through the lockout hierarchy (`tpm2_clear`): new owner seed, so every
    /// key wrapped under the old storage primary becomes unloadable.
    ///
    /// # Panics
    /// When the command fails.
    pub fn clear(&self) {
        self.tool("tpm2_clear", &[]);
    }

    /// Extends SHA-256 PCR `index` with `digest` (`tpm2_pcrextend`).
    ///
    /// # Panics
    /// When the command fails.
    pub fn pcr_extend(&self, index: u8, digest: &[u8; 32]) {
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        self.tool("tpm2_pcrextend", &[&format!("{index}:sha256={hex}")]);
    }

    /// Runs a tpm2-tools command against this TPM (`<tool> -T <tcti> <args>`) and returns
    /// its stdout.
    ///
    /// # Panics
    /// When the tool is missing or exits non-zero.
    pub fn tool(&self, tool: &str, args: &[&str]) -> String {
        let tcti = self.tcti();
        let out = check(
            tool,
            run(Command::new(tool).arg("-T").arg(&tcti).args(args)),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Handles of the transient objects currently loaded in the TPM
    /// (`tpm2_getcap handles-transient`). Raw swtpm has no resource manager, so anything a
    /// client forgot to flush shows up here.
    ///
    /// # Panics
    /// When the command fails.
    pub fn transient_handles(&self) -> Vec<String> {
        self.tool("tpm2_getcap", &["handles-transient"])
            .lines()
            .map(|l| l.trim().trim_start_matches("- ").to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    }

    /// Leaves at least `count` transient objects loaded in the TPM, as a process killed
    /// between its TPM2_CreatePrimary and its TPM2_FlushContext does (raw swtpm has no
    /// resource manager to flush them): `tpm2_createprimary` exits without flushing what it
    /// created. Objects already loaded (left by a killed daemon, or held for a moment by
    /// another user of the TPM) count, so the TPM's three object slots never overflow here.
    ///
    /// # Panics
    /// When the command fails.
    pub fn leak_objects(&self, count: usize) {
        for n in 0..count {
            if self.transient_handles().len() >= count {
                return;
            }
            let context = self.state_dir.join(format!("leaked-{n}.ctx"));
            self.tool(
                "tpm2_createprimary",
                &["-C", "o", "-G", "ecc256", "-c", &context.to_string_lossy()],
            );
        }
    }

    /// Stops the process with SIGSTOP, so the TPM hangs mid-conversation.
    ///
    /// # Panics
    /// When `kill -STOP` fails.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Resumes a process stopped by [`Swtpm::freeze`].
    ///
    /// # Panics
    /// When `kill -CONT` fails.
    pub fn thaw(&self) {
        self.signal("-CONT");
    }

    /// Kills the process (SIGKILL to its PID) and reaps it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A stopped process still dies on SIGKILL; errors mean it is already gone.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts swtpm again after [`Swtpm::kill`], on the same ports and state: a TPM that
    /// comes up after its user started.
    ///
    /// # Panics
    /// When it does not come up (another process took a port meanwhile).
    pub fn restart(&mut self) {
        self.kill();
        let again = spawn(&self.state_dir, self.port, self.ctrl_port)
            .unwrap_or_else(|why| panic!("swtpm restart: {why}"));
        *self = again;
    }

    fn signal(&self, sig: &str) {
        check(
            "kill",
            run(Command::new("kill").arg(sig).arg(self.pid.to_string())),
        );
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(state_dir: &Path, port: u16, ctrl_port: u16) -> Result<Swtpm, String> {
    let log = state_dir.join("swtpm.log");
    // A file, not a pipe: nobody reads swtpm's stderr while it runs, and a full pipe would
    // block it.
    let stderr_path = state_dir.join("swtpm.stderr");
    let stderr = std::fs::File::create(&stderr_path)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", stderr_path.display()));
    let child = Command::new("swtpm")
        .arg("socket")
        .arg("--tpm2")
        .arg("--server")
        .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
        .arg("--ctrl")
        .arg(format!("type=tcp,port={ctrl_port},bindaddr=127.0.0.1"))
        .arg("--tpmstate")
        .arg(format!("dir={}", state_dir.display()))
        .arg("--flags")
        .arg("not-need-init,startup-clear")
        .arg("--log")
        .arg(format!("file={},level=1", log.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!("{NOT_INSTALLED}"),
        Err(e) => panic!("cannot run swtpm: {e}"),
    };
    let mut swtpm = Swtpm {
        pid: child.id(),
        child: Some(child),
        port,
        ctrl_port,
        state_dir: state_dir.to_path_buf(),
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(child) = swtpm.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            swtpm.child = None;
            return Err(format!(
                "swtpm on ports {port}/{ctrl_port} exited with {status}: {} {}",
                stderr.trim(),
                log.trim()
            ));
        }
        // Listening alone is not enough: another process may own the port if swtpm lost the
        // race for it. Only sockets held by our own PID count.
        if listens(swtpm.pid, port) && listens(swtpm.pid, ctrl_port) {
            return Ok(swtpm);
        }
        if Instant::now() > deadline {
            return Err(format!(
                "swtpm on ports {port}/{ctrl_port} did not listen within {START_TIMEOUT:?}"
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Ports handed out by this process, so parallel tests never race each other for a pair.
fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A port `P` such that `P` and `P + 1` are free on 127.0.0.1 right now.
fn free_port_pair() -> Option<(u16, u16)> {
    let mut taken = handed_out().lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..64 {
        let Ok(first) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = first.local_addr() else {
            continue;
        };
        let port = addr.port();
        let Some(ctrl) = port.checked_add(1) else {
            continue;
        };
        if taken.contains(&port) || taken.contains(&ctrl) {
            continue;
        }
        if TcpListener::bind(("127.0.0.1", ctrl)).is_ok() {
            taken.insert(port);
            taken.insert(ctrl);
            return Some((port, ctrl));
        }
    }
    None
}

/// True if process `pid` holds a socket listening on 127.0.0.1:`port` (from /proc).
fn listens(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
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
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .map(|target| inodes.contains(target.to_string_lossy().as_ref()))
            .unwrap_or(false)
    })
}

fn run(cmd: &mut Command) -> (String, std::io::Result<Output>) {
    let shown = format!("{cmd:?}");
    // tpm2-tss logs every TPM error to stderr; keep it for the panic message only.
    (
        shown,
        cmd.env("TSS2_LOG", "all+none")
            .stdin(Stdio::null())
            .output(),
    )
}

fn check(what: &str, (shown, result): (String, std::io::Result<Output>)) -> Output {
    match result {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("{what}: {TOOLS_NOT_INSTALLED}")
        }
        Err(e) => panic!("{what}: cannot run {shown}: {e}"),
        Ok(out) if !out.status.success() => panic!(
            "{what} failed ({}): {shown}\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Ok(out) => out,
    }
}
