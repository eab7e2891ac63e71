//! Moving a BMC's wall clock: the one way every test does it. An `LD_PRELOAD` shim
//! (`fakeclock.c`, compiled here with the system C compiler on first use) adds an offset to
//! `CLOCK_REALTIME` in the daemons it is preloaded into; the offset is read from a file at
//! every call, so a test moves the clock of a running daemon by rewriting that file
//! ([`FakeClock::set_now`]). Monotonic clocks are untouched, so timers and deadlines behave.
//! Nothing in the daemons knows about it: the production code reads its clock as usual.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{require_tool, workspace_root};

/// The environment variable the shim reads the offset file name from.
pub const OFFSET_FILE_VAR: &str = "BMC_FAKE_CLOCK_FILE";

/// The shim's shared library, built once per test process (atomically: processes may race).
///
/// # Panics
/// When the C compiler is missing or fails.
pub fn library() -> PathBuf {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        require_tool("cc");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fakeclock.c");
        let dir = workspace_root().join("target/fakeclock");
        fs::create_dir_all(&dir).expect("fakeclock dir");
        let lib = dir.join("libbmcfakeclock.so");
        let tmp = dir.join(format!("libbmcfakeclock.so.{}", std::process::id()));
        let out = Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&tmp)
            .arg(&source)
            .arg("-ldl")
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "cannot build the clock shim: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        fs::rename(&tmp, &lib).expect("install the clock shim");
        lib
    })
    .clone()
}

/// One BMC's wall clock, as its daemons see it.
#[derive(Clone, Debug)]
pub struct FakeClock {
    file: PathBuf,
}

fn real_now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    i64::try_from(secs).unwrap_or(i64::MAX)
}

impl FakeClock {
    /// A clock with its offset file in `dir`, showing the real time until moved.
    pub fn new(dir: &Path) -> FakeClock {
        fs::create_dir_all(dir).expect("clock dir");
        let clock = FakeClock {
            file: dir.join("clock-offset"),
        };
        clock.set_offset(0);
        clock
    }

    /// A clock that reads `unix` now and runs on from there.
    pub fn set_now(&self, unix: i64) {
        self.set_offset(unix - real_now());
    }

    /// A clock at 1970: as a BMC without RTC and NTP since its first boot (it started at 0
    /// and has run for `uptime` seconds).
    pub fn at_1970(&self, uptime: i64) {
        self.set_now(uptime);
    }

    /// Moves the clock by `secs` relative to the real time.
    pub fn set_offset(&self, secs: i64) {
        // Atomic, so a daemon never reads half a number.
        let tmp = self.file.with_extension("tmp");
        fs::write(&tmp, secs.to_string()).expect("write clock offset");
        fs::rename(&tmp, &self.file).expect("install clock offset");
    }

    /// What the clock reads now, unix seconds.
    pub fn now(&self) -> i64 {
        let offset: i64 = fs::read_to_string(&self.file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        real_now() + offset
    }

    /// The environment that puts a daemon on this clock.
    pub fn env(&self) -> [(&'static str, PathBuf); 2] {
        [
            ("LD_PRELOAD", library()),
            (OFFSET_FILE_VAR, self.file.clone()),
        ]
    }
}
