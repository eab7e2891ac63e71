//! `cargo bench --bench pairing` (or `make bench`): prints the figures the performance
//! targets are judged by. It measures; it asserts nothing about time (CI machines are noisy).
//!
//! - Pairing (two daemons on loopback, default timing settings, file keys):
//!   ProvisionPeer -> both Connected, each side attesting the other first (target <= 250 ms),
//!   peer SIGKILL -> NotConnected
//!   (<= 3 s), peer restart -> Connected again (<= 2 s).
//! - TPM: signatures per full handshake and per reconnect (TLS 1.3 resumption, both ways;
//!   goal 0), and the median TLS handshake with keys in swtpm next to the file backend; a
//!   resumed reconnect next to the one a peer's reboot triggers (full TLS handshake, then
//!   SPDM attestation of the peer): time and signatures of the peer's TPM.
//! - SPDM: the median full attestation (VCA to signed MEASUREMENTS) on loopback, with the
//!   responder's key in a file and in swtpm.
//! - SPDM against DMTF's reference (libspdm's spdm-emu, from `make dmtf-spdm`): CPU time
//!   per attestation of our responder and requester next to libspdm's, in the same run
//!   (`spdm_reference`).
//! - Floods (issue 11): TPM signatures forced per second by certificate-less TLS clients
//!   from 20 addresses (target: at most the budget, 10/s after a burst of 20), and pairing
//!   and reconnect times while those and silent SPDM floods run, next to the quiet figures
//!   (target: within 2x), with the attacker on the BMCs' CPUs and on a CPU of its own.
//! - Idle cost (issue 14): VmRSS, anonymous memory, Pss, threads and CPU over 60 s
//!   (`BPM_BENCH_IDLE_S`) of both daemons of a BMC with one connected peer, and of a hub's
//!   pairing manager with 64 connected peers (`hub`, `BPM_BENCH_PEERS`).
//! - Rig (network namespaces, real lldpd; needs root): LLDP neighbour appears -> first dial,
//!   and link down -> NotConnected.
//!
//! Arguments select sections: `cargo bench --bench pairing -- rig`.
// A benchmark harness reports setup failures by panicking, like the tests it shares code with.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    unreachable_pub
)]

mod spdm_reference;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bmc_pairing_core::keys::Error;
use bmc_pairing_manager::identity::cert::{ChainFiles, LoadedIdentity};
use bmc_pairing_manager::identity::file::FileKeyStore;
use bmc_pairing_manager::identity::tpm::TpmKeyStore;
use bmc_pairing_manager::identity::{Backend, KeyRole, KeyStore, PublicKey};
use bmc_pairing_manager::link::tls::{self, CaptureSlot, PinSet, ServerCheck};
use bmc_test_support::attestation;
use bmc_test_support::swtpm::Swtpm;
use bmc_test_support::*;
use rustls::pki_types::{ServerName, UnixTime};
use serde_json::json;

const SAMPLES: usize = 7;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn report(name: &str, target: &str, samples: Vec<Duration>) {
    let n = samples.len();
    let min = *samples.iter().min().unwrap();
    let max = *samples.iter().max().unwrap();
    let med = median(samples);
    println!(
        "{name:<48} median {:>9.1} ms   (min {:.1}, max {:.1}, n={n})   target {target}",
        ms(med),
        ms(min),
        ms(max)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn poll_until(limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < limit,
            "condition not reached within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    start.elapsed()
}

fn pairing_figures() {
    let mut provision = Vec::new();
    let mut kill = Vec::new();
    let mut restart = Vec::new();
    for _ in 0..SAMPLES {
        let tmp = tempfile::tempdir().unwrap();
        let (a, mut b) = two_provisioned(tmp.path());
        // First contact needs the operator's word on both sides; the clock starts when both
        // have been given (the two calls back to back) and stops when both show Connected.
        let start = Instant::now();
        a.provision(&b.endpoint()).unwrap();
        b.provision(&a.endpoint()).unwrap();
        poll_until(Duration::from_secs(20), || {
            a.peer_connected() == CONNECTED && b.peer_connected() == CONNECTED
        });
        provision.push(start.elapsed());

        let start = Instant::now();
        b.kill9();
        poll_until(Duration::from_secs(20), || {
            a.peer_connected() == NOT_CONNECTED
        });
        kill.push(start.elapsed());

        let start = Instant::now();
        b.start();
        poll_until(Duration::from_secs(20), || {
            a.peer_connected() == CONNECTED && b.peer_connected() == CONNECTED
        });
        restart.push(start.elapsed());
    }
    println!(
        "== pairing (two BMCs on loopback: bmc-attestation + bmc-pairing-manager each, default settings, file keys)"
    );
    report(
        "ProvisionPeer (both sides) -> both Connected",
        "<= 250 ms",
        provision,
    );
    report("peer SIGKILL -> NotConnected", "<= 3000 ms", kill);
    report(
        "peer restart (exec) -> both Connected again",
        "<= 2000 ms",
        restart,
    );
}

/// Counts every signature a store makes.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn KeyStore>,
    signs: AtomicUsize,
}

impl KeyStore for Counting {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }
    fn generate(&self, role: KeyRole) -> Result<PublicKey, Error> {
        self.inner.generate(role)
    }
    fn public_key(&self, role: KeyRole) -> Result<PublicKey, Error> {
        self.inner.public_key(role)
    }
    fn sign_digest(&self, role: KeyRole, digest: &[u8]) -> Result<Vec<u8>, Error> {
        self.signs.fetch_add(1, Ordering::SeqCst);
        self.inner.sign_digest(role, digest)
    }
    fn delete(&self, role: KeyRole) -> Result<(), Error> {
        self.inner.delete(role)
    }
}

struct Side {
    store: Arc<Counting>,
    identity: LoadedIdentity,
}

fn side(store: Arc<dyn KeyStore>, dir: &Path, name: &str) -> Side {
    let identity = ChainFiles::new(dir.join(format!("{name}-certs")))
        .create(store.as_ref(), name, SystemTime::now())
        .unwrap();
    Side {
        store: Arc::new(Counting {
            inner: store,
            signs: AtomicUsize::new(0),
        }),
        identity,
    }
}

/// What a series of TLS 1.3 handshakes cost: per handshake, its duration, whether it
/// resumed, and the signatures each side's key store made.
struct Handshake {
    time: Duration,
    resumed: bool,
    client_signs: usize,
    server_signs: usize,
}

/// `n` TLS 1.3 handshakes between a pinned client and server over loopback TCP, with the
/// daemon's configurations. `resume`: one client configuration (its session cache) for the
/// series, as a dialler keeps, so every handshake after the first may resume; otherwise a
/// fresh one per handshake, so each is full.
fn handshakes(client: &Side, server: &Side, n: usize, resume: bool) -> Vec<Handshake> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let floor = UnixTime::since_unix_epoch(Duration::from_secs(0));
        let pins = PinSet::new();
        pins.replace([client.identity.fingerprint()]);
        let server_cfg = tls::server_config(
            &server.identity,
            server.store.clone(),
            pins,
            PinSet::new(),
            floor,
            Vec::new(),
            Arc::new(tls::Tickets::new(
                tls::TICKET_CAPACITY,
                tls::TICKET_LIFETIME,
            )),
        )
        .unwrap();
        let client_cfg = || {
            let check = ServerCheck::Pinned {
                expected: server.identity.fingerprint(),
                refused: CaptureSlot::new(),
            };
            tls::client_config(&client.identity, client.store.clone(), check, floor).unwrap()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(server_cfg);
        let mut connector = tokio_rustls::TlsConnector::from(client_cfg());
        let mut out = Vec::new();
        for _ in 0..n {
            if !resume {
                connector = tokio_rustls::TlsConnector::from(client_cfg());
            }
            let (c0, s0) = (
                client.store.signs.load(Ordering::SeqCst),
                server.store.signs.load(Ordering::SeqCst),
            );
            let start = Instant::now();
            let accept = async {
                let (tcp, _) = listener.accept().await.unwrap();
                // As the daemon does: without it Nagle + delayed ACK add ~40 ms per handshake.
                tcp.set_nodelay(true).unwrap();
                let mut tls = acceptor.accept(tcp).await.unwrap();
                // The server has verified the client once it reads application data.
                let mut byte = [0u8; 1];
                tokio::io::AsyncReadExt::read_exact(&mut tls, &mut byte)
                    .await
                    .unwrap();
                // The ticket goes out with the first flight after the handshake; answer
                // so the client reads it before the next connection.
                tokio::io::AsyncWriteExt::write_all(&mut tls, b"y")
                    .await
                    .unwrap();
                tokio::io::AsyncWriteExt::flush(&mut tls).await.unwrap();
                tls
            };
            let connect = async {
                let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let mut tls = connector
                    .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                    .await
                    .unwrap();
                tokio::io::AsyncWriteExt::write_all(&mut tls, b"x")
                    .await
                    .unwrap();
                tokio::io::AsyncWriteExt::flush(&mut tls).await.unwrap();
                let mut byte = [0u8; 1];
                tokio::io::AsyncReadExt::read_exact(&mut tls, &mut byte)
                    .await
                    .unwrap();
                tls
            };
            let (_server_side, client_side) = tokio::join!(accept, connect);
            let time = start.elapsed();
            out.push(Handshake {
                time,
                resumed: client_side.get_ref().1.handshake_kind()
                    == Some(rustls::HandshakeKind::Resumed),
                client_signs: client.store.signs.load(Ordering::SeqCst) - c0,
                server_signs: server.store.signs.load(Ordering::SeqCst) - s0,
            });
        }
        out
    })
}

/// Mean signatures per handshake of `series`: (client, server).
fn signs_per(series: &[Handshake]) -> (f64, f64) {
    let n = series.len().max(1) as f64;
    (
        series.iter().map(|h| h.client_signs).sum::<usize>() as f64 / n,
        series.iter().map(|h| h.server_signs).sum::<usize>() as f64 / n,
    )
}

fn tpm_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let tpm_a = Swtpm::start(&tmp.path().join("tpm-a"));
    let tpm_b = Swtpm::start(&tmp.path().join("tpm-b"));
    let a = side(
        Arc::new(TpmKeyStore::open(&tpm_a.tcti(), tmp.path().join("a-keys")).unwrap()),
        tmp.path(),
        "bmc-a",
    );
    let b = side(
        Arc::new(TpmKeyStore::open(&tpm_b.tcti(), tmp.path().join("b-keys")).unwrap()),
        tmp.path(),
        "bmc-b",
    );
    let fa = side(
        Arc::new(FileKeyStore::new(tmp.path().join("fa-keys"))),
        tmp.path(),
        "file-a",
    );
    let fb = side(
        Arc::new(FileKeyStore::new(tmp.path().join("fb-keys"))),
        tmp.path(),
        "file-b",
    );

    // Full handshakes (a fresh client configuration each time, as after a restart), then
    // reconnects of one dialler (its session cache: TLS 1.3 resumption), both ways.
    let n = 30;
    let full = handshakes(&a, &b, n, false);
    let (full_c, full_s) = signs_per(&full);
    let file_full = handshakes(&fa, &fb, n, false);
    println!("== TPM (swtpm) and TLS");
    println!(
        "{:<48} client {full_c:.1} + server {full_s:.1} (CertificateVerify on each side)   goal 1 + 1",
        "TPM signs per full handshake"
    );
    let mut resumed_a_to_b = Vec::new();
    for (label, client, server) in [("A dials B", &a, &b), ("B dials A", &b, &a)] {
        let series = handshakes(client, server, n + 1, true);
        // The first is the full handshake that gets the ticket.
        let reconnects: Vec<Handshake> = series.into_iter().skip(1).collect();
        let resumed = reconnects.iter().filter(|h| h.resumed).count();
        let (c, s) = signs_per(&reconnects);
        println!(
            "{:<48} client {c:.1} + server {s:.1} ({resumed}/{} resumed)   goal 0 + 0",
            format!("TPM signs per reconnect, {label}"),
            reconnects.len()
        );
        let times: Vec<Duration> = reconnects.iter().map(|h| h.time).collect();
        if resumed_a_to_b.is_empty() {
            resumed_a_to_b = times.clone();
        }
        report(
            &format!("TLS 1.3 resumed reconnect, swtpm, {label}"),
            "(figure)",
            times,
        );
    }
    let tpm_times: Vec<Duration> = full.iter().map(|h| h.time).collect();
    report(
        "TLS 1.3 full mutual handshake, keys in swtpm",
        "(figure)",
        tpm_times.clone(),
    );
    report(
        "TLS 1.3 full mutual handshake, file keys",
        "(figure)",
        file_full.iter().map(|h| h.time).collect(),
    );

    // A reconnect after the peer rebooted: a full handshake (its session cache is gone),
    // then one SPDM attestation of the peer (its responder signs with the same TPM key).
    let before = b.store.signs.load(Ordering::SeqCst);
    let spdm_times = attestation::attest_responder(b.identity.spdm_chain(&[]), b.store.clone(), 30);
    let spdm_signs = (b.store.signs.load(Ordering::SeqCst) - before) as f64 / 30.0;
    let with_reattestation: Vec<Duration> = tpm_times
        .iter()
        .zip(&spdm_times)
        .map(|(tls, spdm)| *tls + *spdm)
        .collect();
    println!("== reconnect without and with re-attestation (swtpm keys)");
    println!(
        "{:<48} ours {full_c:.0} + peer's {:.0} (TLS {full_s:.0} + SPDM {spdm_signs:.0})",
        "TPM signs per reconnect after a peer reboot",
        full_s + spdm_signs
    );
    report("reconnect, resumed (TLS)", "(figure)", resumed_a_to_b);
    report(
        "reconnect after a peer reboot (full TLS + SPDM)",
        "(figure)",
        with_reattestation,
    );
}

/// What /proc says about one process: (VmRSS, RssAnon, Pss, threads), bytes and count.
fn memory_of(pid: u32) -> (u64, u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |text: &str, name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    (
        field(&status, "VmRSS:") * 1024,
        field(&status, "RssAnon:") * 1024,
        field(&rollup, "Pss:") * 1024,
        field(&status, "Threads:"),
    )
}

/// CPU time (user + system) a process has used so far.
fn cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces) start at ") ".
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line: 11 and 12 after the name.
    let ticks = f[11] + f[12];
    Duration::from_millis(ticks * 1000 / 100)
}

/// Idle memory, threads and CPU of both daemons of a BMC with one connected peer (default
/// settings, file keys), as the installed binary runs them. CPU over `idle`.
fn memory_figures() {
    let idle = Duration::from_secs(
        std::env::var("BPM_BENCH_IDLE_S")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(60),
    );
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = two_provisioned(tmp.path());
    a.provision(&b.endpoint()).unwrap();
    b.provision(&a.endpoint()).unwrap();
    wait_both(&a, &b, "pairing for the memory figures");
    std::thread::sleep(Duration::from_secs(5));
    println!(
        "== idle cost, one connected peer (default settings, file keys, {} s)",
        idle.as_secs()
    );
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let daemons = [
        ("bmc-pairing-manager", a.daemon.as_ref().unwrap().pid()),
        ("bmc-attestation", a.attestation.as_ref().unwrap().pid()),
    ];
    let before: Vec<Duration> = daemons.iter().map(|(_, pid)| cpu_of(*pid)).collect();
    std::thread::sleep(idle);
    for ((name, pid), cpu0) in daemons.iter().zip(before) {
        let (rss, anon, pss, threads) = memory_of(*pid);
        let cpu = cpu_of(*pid) - cpu0;
        println!(
            "{:<48} VmRSS {:.1} MiB, anonymous {:.1} MiB, Pss {:.1} MiB   goal Pss <= 6 MiB",
            format!("{name}, 1 peer"),
            mib(rss),
            mib(anon),
            mib(pss)
        );
        println!(
            "{:<48} {threads} threads; CPU {:.2} % of a core over {} s   goal: fit 1-2 cores, <= 0.5 % (64 peers)",
            format!("{name}, 1 peer"),
            cpu.as_secs_f64() * 100.0 / idle.as_secs_f64(),
            idle.as_secs()
        );
    }
}

/// A hub BMC paired with `BPM_BENCH_PEERS` (default 64) peer BMCs, each a real pair of
/// daemons on its own loopback address: the hub's idle memory, fds, threads and CPU over
/// `BPM_BENCH_IDLE_S` (default 60 s) once every peer shows Connected.
fn hub_figures() {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let peers_wanted = env("BPM_BENCH_PEERS", 64);
    let idle = Duration::from_secs(env("BPM_BENCH_IDLE_S", 60));
    let tmp = tempfile::tempdir().unwrap();
    let mut hub = Bmc::new(tmp.path(), "hub", json!({}));
    hub.start();
    hub.provision("self").unwrap();
    let mut peers = Vec::new();
    for i in 0..peers_wanted {
        let mut peer = Bmc::new(tmp.path(), &format!("peer-{i}"), json!({}));
        peer.start();
        peer.provision("self").unwrap();
        hub.provision(&peer.endpoint()).unwrap();
        peer.provision(&hub.endpoint()).unwrap();
        peers.push(peer);
    }
    let connected = || {
        peers
            .iter()
            .filter(|p| p.peer_connected() == CONNECTED)
            .count()
    };
    // The hub's own view: both of its sessions with every peer up. A peer that shows
    // Connected may still have the other session in backoff (the signing budget refuses part
    // of 64 simultaneous first handshakes); its reconnect would be counted as idle cost.
    // One GetManagedObjects per look (not two property reads per peer), so the looks do not
    // load the hub they wait for; every Incoming/OutgoingState that reads Connected counts.
    let hub_sessions_up = || {
        let out = hub.busctl(&[
            "call",
            SEED_BUS,
            SEED_PATH,
            "org.freedesktop.DBus.ObjectManager",
            "GetManagedObjects",
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        ["IncomingState", "OutgoingState"]
            .iter()
            .map(|prop| {
                text.matches(&format!(
                    "\"{prop}\" s \"{PEER_IFACE}.ConnectionState.Connected\""
                ))
                .count()
            })
            .sum::<usize>()
    };
    let start = Instant::now();
    while (connected() < peers.len() || hub_sessions_up() < 2 * peers.len())
        && start.elapsed() < Duration::from_secs(300)
    {
        std::thread::sleep(Duration::from_secs(1));
    }
    let waited = start.elapsed();
    std::thread::sleep(Duration::from_secs(5));
    let pid = hub.daemon.as_ref().unwrap().pid();
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let log_len = hub.log().len();
    let cpu0 = cpu_of(pid);
    std::thread::sleep(idle);
    let cpu = cpu_of(pid) - cpu0;
    // Sessions opened during the idle window (each a handshake): 0 when the figure is clean.
    let reopened = hub
        .log()
        .get(log_len..)
        .map_or(0, |tail| tail.matches("session up").count());
    let (rss, anon, pss, threads) = memory_of(pid);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "== hub with {} peers ({} connected after {:.0} s; default settings, file keys, {} s idle)",
        peers.len(),
        connected(),
        waited.as_secs_f64(),
        idle.as_secs()
    );
    println!(
        "{:<48} VmRSS {:.1} MiB, anonymous {:.1} MiB, Pss {:.1} MiB (code shared with the peers' processes here)   goal <= 12 MiB",
        "bmc-pairing-manager, hub",
        mib(rss),
        mib(anon),
        mib(pss)
    );
    println!(
        "{:<48} {fds} fds, {threads} threads; CPU {:.2} % of a core over {} s ({} of {} sessions up, {reopened} reopened while idle)   goal <= 0.5 %",
        "bmc-pairing-manager, hub",
        cpu.as_secs_f64() * 100.0 / idle.as_secs_f64(),
        idle.as_secs(),
        hub_sessions_up(),
        2 * peers.len()
    );
    drop(peers);
}

fn attestation_figures() {
    let samples = SAMPLES * 4;
    println!("== SPDM attestation (loopback, VCA to signed MEASUREMENTS, n={samples} each)");
    for (name, median) in bmc_test_support::attestation::bench_attestation(samples) {
        println!("{name:<48} median {:>9.1} ms   target (figure)", ms(median));
    }
}

fn rig_figures() {
    use std::collections::BTreeMap;
    let mut by_name: BTreeMap<String, Vec<Duration>> = BTreeMap::new();
    for (name, d) in bmc_test_support::rig::bench_rig(SAMPLES) {
        by_name.entry(name).or_default().push(d);
    }
    println!(
        "== two-BMC rig (network namespaces, real lldpd, swtpm; heartbeat 300 ms / timeout 1 s)"
    );
    for (name, samples) in by_name {
        report(&name, "(figure)", samples);
    }
}

// Issue 11's figures: what certificate-less TLS clients force each daemon to sign, and the
// pairing and reconnect times while floods run, next to the same figures without them.

/// Waits up to a minute for both to show Connected; panics with both journals otherwise.
fn wait_both(a: &Bmc, b: &Bmc, what: &str) {
    assert!(
        both_connected_within(a, b, Duration::from_secs(60)),
        "no {what} within 60 s\nA:\n{}\nB:\n{}",
        a.log(),
        b.log()
    );
}

/// Reads both BMCs' `PeerConnected` over one D-Bus connection per bus, from this process.
///
/// The flood figures time how long the daemons take. Polling with a `busctl` process per
/// read (as the tests do) costs milliseconds of the very CPU the flood contends for, so
/// under flood the tool's own start-up would be timed with the daemons; one long-lived
/// connection per bus costs a D-Bus round trip per read.
struct ConnectedProbe {
    rt: tokio::runtime::Runtime,
    buses: [zbus::Connection; 2],
}

impl ConnectedProbe {
    fn new(a: &Bmc, b: &Bmc) -> ConnectedProbe {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the probe");
        let connect = |address: &str| {
            rt.block_on(async {
                zbus::connection::Builder::address(address)
                    .expect("a bus address")
                    .build()
                    .await
                    .expect("connect to the test bus")
            })
        };
        let buses = [connect(&a.bus.address), connect(&b.bus.address)];
        ConnectedProbe { rt, buses }
    }

    /// True when both report Connected; a daemon not (yet) on its bus counts as not.
    fn both_connected(&self) -> bool {
        self.rt.block_on(async {
            for bus in &self.buses {
                let reply = bus
                    .call_method(
                        Some(PDI_BUS),
                        PDI_PATH,
                        Some("org.freedesktop.DBus.Properties"),
                        "Get",
                        &(PDI_IFACE, "PeerConnected"),
                    )
                    .await;
                let connected = reply.ok().is_some_and(|reply| {
                    reply
                        .body()
                        .deserialize::<zbus::zvariant::OwnedValue>()
                        .ok()
                        .and_then(|v| String::try_from(v).ok())
                        .is_some_and(|s| s == CONNECTED)
                });
                if !connected {
                    return false;
                }
            }
            true
        })
    }

    /// Waits up to a minute for both to show Connected; panics with both journals otherwise.
    fn wait_both(&self, a: &Bmc, b: &Bmc, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.both_connected() {
            assert!(
                Instant::now() < deadline,
                "no {what} within 60 s\nA:\n{}\nB:\n{}",
                a.log(),
                b.log()
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Issue 11's figures: pairing and reconnect times while floods run, next to the same
/// figures without them, and the signatures a sustained flood forces.
fn flood_figures() {
    // Each attacking client pauses between connections, at two intensities. With the
    // attacker on the same two CPUs as both BMCs, unpaced it would mostly measure its own CPU
    // use; so each intensity also runs with the BMCs (daemons, TPMs, buses) on CPU 0 and the
    // attacker on CPU 1, as if the attacker were another machine. The quiet figure of each
    // layout is taken with the same CPUs, so the ratio is the flood's alone.
    for pace in [Duration::from_millis(20), Duration::from_millis(2)] {
        for layout in [CpuLayout::Shared, CpuLayout::Separated] {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            if layout == CpuLayout::Separated && cpus < 2 {
                println!("(the separated-CPU flood figures need 2 CPUs; this machine has 1)");
                continue;
            }
            flood_pairing_figures(pace, layout);
        }
    }
    flood_signature_figures();
}

/// Where the BMCs and the attacker run in [`flood_pairing_figures`].
#[derive(Clone, Copy, PartialEq, Eq)]
enum CpuLayout {
    /// Everything on both CPUs.
    Shared,
    /// The BMCs on CPU 0, the attacker on CPU 1.
    Separated,
}

fn flood_pairing_figures(pace: Duration, layout: CpuLayout) {
    use bmc_test_support::flood::{self, Flood};
    if layout == CpuLayout::Separated {
        // Everything this thread starts from here (daemons, swtpm, dbus-daemon, busctl)
        // inherits CPU 0.
        flood::pin_current_thread("0");
    }
    let (mut quiet_pair, mut quiet_restart) = (Vec::new(), Vec::new());
    let (mut flood_pair, mut flood_restart) = (Vec::new(), Vec::new());
    let mut flood_rate = Vec::new();
    for _ in 0..SAMPLES {
        for under_flood in [false, true] {
            let tmp = tempfile::tempdir().unwrap();
            let (a, mut b) = two_provisioned(tmp.path());
            let floods: Vec<Flood> = if under_flood {
                let v = [&a, &b]
                    .into_iter()
                    .flat_map(|bmc| match layout {
                        CpuLayout::Shared => flood::against(bmc, pace),
                        CpuLayout::Separated => flood::against_on_cpus(bmc, pace, "1"),
                    })
                    .collect();
                std::thread::sleep(Duration::from_millis(300));
                v
            } else {
                Vec::new()
            };
            let probe = ConnectedProbe::new(&a, &b);
            let start = Instant::now();
            a.provision(&b.endpoint()).unwrap();
            b.provision(&a.endpoint()).unwrap();
            probe.wait_both(&a, &b, "pairing");
            let paired = start.elapsed();
            b.kill9();
            poll_until(Duration::from_secs(20), || {
                a.peer_connected() == NOT_CONNECTED
            });
            let start = Instant::now();
            b.start();
            probe.wait_both(&a, &b, "reconnect");
            let restarted = start.elapsed();
            for report in floods.into_iter().map(Flood::stop) {
                if !report.server_signatures.is_empty() {
                    flood_rate.push(report.connects as f64 / report.elapsed.as_secs_f64());
                }
            }
            if under_flood {
                flood_pair.push(paired);
                flood_restart.push(restarted);
            } else {
                quiet_pair.push(paired);
                quiet_restart.push(restarted);
            }
        }
    }
    if layout == CpuLayout::Separated {
        flood::pin_current_thread("0-1");
    }
    flood_rate.sort_by(f64::total_cmp);
    println!(
        "== floods (per daemon: 20 addresses x 2 certificate-less TLS clients on the pairing port, each pausing {} ms, {} connections/s median; 40 x 2 silent clients on the SPDM port; {})",
        pace.as_millis(),
        flood_rate
            .get(flood_rate.len() / 2)
            .copied()
            .unwrap_or_default()
            .round(),
        match layout {
            CpuLayout::Shared => "BMCs and attacker share both CPUs",
            CpuLayout::Separated => "BMCs on CPU 0, attacker on CPU 1",
        }
    );
    let quiet_pair_median = median(quiet_pair.clone());
    let quiet_restart_median = median(quiet_restart.clone());
    report(
        "ProvisionPeer -> both Connected, quiet",
        "(figure)",
        quiet_pair,
    );
    report(
        "ProvisionPeer -> both Connected, under flood",
        &format!("<= {:.0} ms (2x quiet)", 2.0 * ms(quiet_pair_median)),
        flood_pair,
    );
    report(
        "peer restart -> both Connected, quiet",
        "(figure)",
        quiet_restart,
    );
    report(
        "peer restart -> both Connected, under flood",
        &format!("<= {:.0} ms (2x quiet)", 2.0 * ms(quiet_restart_median)),
        flood_restart,
    );
}

/// What refusing a flood costs: one provisioned BMC on CPU 0 flooded from CPU 1 (as in the
/// separated layout), the CPU time of each daemon over 10 s next to the connections it
/// refused. The share of CPU 0 the flood takes is the share a legitimate handshake loses.
/// `BPM_BENCH_PERF=1` records the pairing manager with `perf record -g` meanwhile (into
/// `target/flood.perf.data`; the binary needs symbols: point `BMC_PAIRING_MANAGER_BIN` at an
/// unstripped build).
fn flood_cpu_figures() {
    use bmc_test_support::flood::{self, Flood};
    const WINDOW: Duration = Duration::from_secs(10);
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        println!("(the flood CPU figures need 2 CPUs; this machine has 1)");
        return;
    }
    println!("== what refusing a flood costs each daemon (BMC on CPU 0, attacker on CPU 1)");
    for pace in [Duration::from_millis(20), Duration::from_millis(2)] {
        flood::pin_current_thread("0");
        let tmp = tempfile::tempdir().unwrap();
        let (a, _b) = two_provisioned(tmp.path());
        let pm = a.daemon.as_ref().expect("the pairing manager runs").pid();
        let att = a.attestation.as_ref().map(|p| p.pid());
        let floods = flood::against_on_cpus(&a, pace, "1");
        std::thread::sleep(Duration::from_millis(500));
        let perf = (std::env::var("BPM_BENCH_PERF").as_deref() == Ok("1")).then(|| {
            std::process::Command::new("perf")
                .args(["record", "-g", "-o"])
                .arg(workspace_root().join("target/flood.perf.data"))
                .args(["-p", &pm.to_string(), "--", "sleep"])
                .arg(WINDOW.as_secs().to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("perf runs")
        });
        let (pm0, att0) = (cpu_of(pm), att.map(cpu_of));
        std::thread::sleep(WINDOW);
        let (pm1, att1) = (cpu_of(pm), att.map(cpu_of));
        if let Some(mut perf) = perf {
            let _ = perf.wait();
        }
        let reports: Vec<_> = floods.into_iter().map(Flood::stop).collect();
        flood::pin_current_thread("0-1");
        let share = |d: Duration| 100.0 * d.as_secs_f64() / WINDOW.as_secs_f64();
        let tls = &reports[0];
        println!(
            "pace {:>2} ms: pairing manager {:5.1} % of a core for {:.0} TLS connections/s ({:.1} us each); bmc-attestation {:5.1} % for {:.0} SPDM connections/s",
            pace.as_millis(),
            share(pm1 - pm0),
            tls.connects as f64 / tls.elapsed.as_secs_f64(),
            (pm1 - pm0).as_secs_f64() * 1e6 * tls.elapsed.as_secs_f64()
                / WINDOW.as_secs_f64()
                / (tls.connects.max(1) as f64),
            att0.zip(att1).map_or(0.0, |(x, y)| share(y - x)),
            reports[1].connects as f64 / reports[1].elapsed.as_secs_f64(),
        );
    }
    // A silent flood larger than the SPDM waiting room (256 places with the default 8
    // sessions): 100 addresses with 3 connections each, one more than an address's share.
    flood::pin_current_thread("0");
    let tmp = tempfile::tempdir().unwrap();
    let (a, _b) = two_provisioned(tmp.path());
    let att = a.attestation.as_ref().expect("bmc-attestation runs").pid();
    flood::pin_current_thread("1");
    let silent = Flood::start(
        std::net::SocketAddr::new(a.ip, spdm_port()),
        &flood::attacker_sources(100),
        3,
        flood::Behaviour::Silent,
    );
    flood::pin_current_thread("0");
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_of(att);
    std::thread::sleep(WINDOW);
    let used = cpu_of(att) - before;
    let report = silent.stop();
    flood::pin_current_thread("0-1");
    println!(
        "300 silent SPDM clients from 100 addresses (more than the 256 waiting places): bmc-attestation {:5.1} % of a core for {:.0} connections/s",
        100.0 * used.as_secs_f64() / WINDOW.as_secs_f64(),
        report.connects as f64 / report.elapsed.as_secs_f64()
    );
}

/// The signatures a sustained, unpaced flood forces: one provisioned BMC, 10 s, no restarts.
fn flood_signature_figures() {
    use bmc_test_support::flood::{self, Behaviour, Flood};
    use std::net::SocketAddr;
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Bmc::new(tmp.path(), "bmc-a", json!({"attestation": "off"}));
    a.start();
    a.provision("self").unwrap();
    let attack = Flood::start(
        SocketAddr::new(a.ip, a.port),
        &flood::attacker_sources(20),
        2,
        Behaviour::TlsWithoutCertificate,
    );
    std::thread::sleep(Duration::from_secs(10));
    let r = attack.stop();
    let secs = r.elapsed.as_secs_f64();
    let signed = r.total_signatures();
    println!(
        "{:<48} {:>9.1} /s   ({signed} in {secs:.1} s from {} connections; a 10/s bucket with burst 20 allows {})   target <= 10/s",
        "TPM signatures forced by an unpaced TLS flood",
        signed.saturating_sub(20) as f64 / secs,
        r.connects,
        flood::bucket_bound(10, 20, r.elapsed)
    );
}

fn main() {
    // `cargo bench` passes --bench; any other argument filters sections.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |name: &str| args.is_empty() || args.iter().any(|a| name.contains(a.as_str()));
    require_tool("swtpm");
    if want("pairing") {
        pairing_figures();
    }
    if want("tpm") {
        tpm_figures();
    }
    if want("memory") {
        memory_figures();
    }
    if want("hub") {
        hub_figures();
    }
    if want("attestation") {
        attestation_figures();
    }
    if want("spdm-reference") {
        spdm_reference::cpu_figures(SAMPLES * 4);
    }
    if want("flood-cpu") {
        flood_cpu_figures();
    }
    if want("flood") {
        flood_figures();
    }
    if want("rig") {
        rig_figures();
    }
    // Last: it rebuilds target/release with the recipe's features, which the sections above
    // would then run.
    if want("size") {
        size_figures();
    }
}

/// Issue 14's flash figures: what the recipe installs, stripped and xz-compressed, against
/// the 4 MB goal. The same script asserts the budget in `make test`.
fn size_figures() {
    println!("== size on flash (the recipe's build: release, no network-tcti; stripped)");
    let script = bmc_test_support::workspace_root().join("scripts/size-budget.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .output()
        .expect("run scripts/size-budget.sh");
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
}
