//! CPU time per SPDM attestation, ours against DMTF's reference (libspdm's spdm-emu), in
//! the same run, with the same algorithms (P-256/SHA-256), the same identity (libspdm's
//! sample key and three-certificate chain), the same number of measurement blocks (8) and
//! the same framing (the emulator's TCP protocol), on loopback:
//!
//! - responders: `bmc-attestation respond` and `spdm_responder_emu`, each driven by the
//!   same requester (`spdm_requester_emu`, Release); the responder process's own CPU time
//!   over the runs, from the scheduler's nanosecond accounting of its threads;
//! - requesters: `bmc-attestation attest` and `spdm_requester_emu`, one process per
//!   attestation (start-up included for both), against the same responder (ours); the CPU
//!   time of those processes (getrusage, by bash's `time`).
//!
//! CPU time, not wall time: the emulators write each header field with its own `send()`,
//! so their wall time is mostly Nagle and delayed-ACK waiting (about a second per
//! emulator-to-emulator run). Every connection goes through a relay that acknowledges at
//! once, which keeps the runs short and costs the measured processes nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use bmc_test_support::dmtf::ours::{AttestRun, OurResponder, fixed_args};
use bmc_test_support::dmtf::process::{Child, cpu_time_of_runs, thread_cpu_times};
use bmc_test_support::dmtf::reference::{
    EmuResponder, Ending, KeyFolder, Reference, RequesterBuild, RequesterRun, RequesterSetup,
};
use bmc_test_support::dmtf::relay::Relay;
use bmc_test_support::dmtf::{Curve, EmuTransport};

const TRANSPORT: EmuTransport = EmuTransport::Tcp;
const CURVE: Curve = Curve::P256;

fn reference_requester() -> RequesterSetup {
    RequesterSetup {
        build: RequesterBuild::Release,
        transport: TRANSPORT,
        curve: CURVE,
        ending: Ending::Continue,
    }
}

/// Runs the reference requester `n` times against `port`; panics on a failed run.
fn drive_with_reference_requester(folder: &KeyFolder, port: u16, n: usize, log: &Path) {
    let reference = Reference::get();
    for _ in 0..n {
        let run = RequesterRun::run(reference, folder, reference_requester(), port, log);
        assert!(
            run.status.success(),
            "reference requester failed:\n{}",
            run.log
        );
    }
}

/// CPU time of `process` while `work` runs; warns when one of its threads ended meanwhile
/// (its time would be missing).
fn responder_cpu(process: &Child, work: impl FnOnce()) -> Duration {
    let before = thread_cpu_times(process.pid());
    work();
    let after = thread_cpu_times(process.pid());
    if before.keys().any(|tid| !after.contains_key(tid)) {
        println!(
            "  (warning: a thread of pid {} ended during the runs; its CPU time is missing)",
            process.pid()
        );
    }
    after
        .iter()
        .map(|(tid, t)| t.saturating_sub(before.get(tid).copied().unwrap_or_default()))
        .sum()
}

fn per_run(total: Duration, n: usize) -> f64 {
    total.as_secs_f64() * 1000.0 / n as f64
}

fn verdict(ours: f64, theirs: f64) -> String {
    if ours < theirs {
        format!(
            "ours ahead, {:.1}x less CPU",
            theirs / ours.max(f64::EPSILON)
        )
    } else {
        format!("OURS BEHIND by {:.1}x", ours / theirs.max(f64::EPSILON))
    }
}

/// Prints the four figures; `n` attestations each.
pub fn cpu_figures(n: usize) {
    let reference = Reference::get();
    let tmp = tempfile::tempdir().expect("tempdir");
    let folder = KeyFolder::new(reference, &tmp.path().join("keys"));
    let log = tmp.path().join("requester.log");

    // Ours serves what libspdm's responder serves: its sample identity and 8 blocks.
    let mut args = fixed_args(
        &reference.sample(CURVE, "end_responder.key.p8"),
        &reference.sample_chain(CURVE),
    );
    std::fs::create_dir_all(tmp.path().join("measured")).expect("dir");
    for i in 0..8 {
        let f = tmp.path().join(format!("measured/file{i}"));
        std::fs::write(&f, vec![0x5a; 4096]).expect("measured file");
        args.extend(["--measure".to_owned(), f.display().to_string()]);
    }
    let ours = OurResponder::start(
        TRANSPORT.framing_arg(),
        &args,
        &tmp.path().join("respond.log"),
    );
    let mut theirs = EmuResponder::start(
        reference,
        &folder,
        TRANSPORT,
        CURVE,
        &tmp.path().join("responder-emu.log"),
    );
    let ours_relay = Relay::plain(ours.port());
    let theirs_relay = Relay::plain(theirs.port());

    // Warm-up (page cache, our file digest cache), not counted.
    drive_with_reference_requester(&folder, ours_relay.port(), 2, &log);
    drive_with_reference_requester(&folder, theirs_relay.port(), 2, &log);

    let wall = Instant::now();
    let ours_rsp = responder_cpu(ours.process(), || {
        drive_with_reference_requester(&folder, ours_relay.port(), n, &log);
    });
    let ours_rsp_wall = wall.elapsed();
    let wall = Instant::now();
    let theirs_rsp = responder_cpu(theirs.process(), || {
        drive_with_reference_requester(&folder, theirs_relay.port(), n, &log);
    });
    let theirs_rsp_wall = wall.elapsed();

    // Requesters, one process per attestation, against our responder. `attest` exits 0
    // only when it trusts the responder, so every counted run is a full attestation.
    let anchor = reference.sample(CURVE, "ca.cert.der");
    let ours_req = cpu_time_of_runs(
        &AttestRun::command(ours_relay.port(), TRANSPORT, &anchor),
        n,
    );
    let theirs_req = cpu_time_of_runs(
        &RequesterRun::command(reference, &folder, reference_requester(), ours_relay.port()),
        n,
    );

    let (a, b, c, d) = (
        per_run(ours_rsp, n),
        per_run(theirs_rsp, n),
        per_run(ours_req, n),
        per_run(theirs_req, n),
    );
    println!(
        "== SPDM CPU time per attestation, ours vs DMTF libspdm in this run (P-256/SHA-256, \
         libspdm's sample identity, 8 blocks, spdm-emu TCP framing, loopback, n={n})"
    );
    println!(
        "{:<48} ours {a:>6.2} ms   libspdm {b:>6.2} ms   {}",
        "responder CPU (driven by spdm_requester_emu)",
        verdict(a, b)
    );
    println!(
        "{:<48} ours {c:>6.2} ms   libspdm {d:>6.2} ms   {}",
        "requester CPU, whole process (against ours)",
        verdict(c, d)
    );
    println!(
        "{:<48} ours {:>6.2} ms   libspdm {:>6.2} ms   (wall, for reference only)",
        "one attestation by spdm_requester_emu, wall",
        per_run(ours_rsp_wall, n),
        per_run(theirs_rsp_wall, n)
    );
    assert!(
        theirs.process().exited().is_none(),
        "the reference responder stopped:\n{}",
        theirs.process().output()
    );
}
