//! Exhaustion by an unauthenticated neighbour (issue 11): each test reproduces one way a
//! client that proves nothing could lock real peers out, make the TPM sign for free, or run
//! the daemon out of file descriptors, against the real daemons, and shows it no longer
//! works. Attackers connect from addresses of their own in 127.0.0.0/8
//! ([`bmc_test_support::flood`]); every flood is bounded in count and time.
#![cfg(test)]

use std::fs;
use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bmc_pairing_core::spdm::frame::{self, Frame};
use bmc_pairing_core::spdm::requester::{Action, Outcome, Requester, RequesterConfig};
use bmc_pairing_core::spdm::{MeasurementPolicy, TrustPolicy};
use bmc_pairing_manager::contract::AttestReply;
use bmc_pairing_manager::identity::cert::ChainFiles;
use bmc_pairing_manager::identity::file::FileKeyStore;
use bmc_pairing_manager::identity::{KeyStore, summarize};
use bmc_pairing_manager::link::client::{self, DialTarget};
use bmc_pairing_manager::link::session::{self, Timing};
use bmc_pairing_manager::link::tls::{self, CaptureSlot, ServerCheck};
use bmc_test_support::attestation::{ATT_BUS, ATT_ROOT, KeyKind, Node, REQUESTER_IFACE};
use bmc_test_support::flood::{self, Behaviour, Flood, SlowKeyStore};
use bmc_test_support::swtpm::Swtpm;
use bmc_test_support::*;
use rand_core::OsRng;
use rustls::pki_types::UnixTime;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// What the tests' stand-in for B says in its Hello.
const B_HELLO: session::Us<'static> = session::Us {
    name: "bmc-b",
    boot_id: 1,
};

/// The defaults of both daemons: TPM signatures for unauthenticated clients, per second in
/// all and per source address (bursts twice that).
const SIGNS_PER_SECOND: u64 = 10;
const SIGNS_PER_SOURCE_PER_SECOND: u64 = 2;

fn endpoint(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

/// The fingerprint of the identity in `cert_dir`.
fn fingerprint_in(cert_dir: &Path) -> bmc_pairing_manager::identity::Fingerprint {
    let leaf = fs::read(cert_dir.join("identity.der")).expect("identity certificate");
    summarize(&leaf)
        .expect("certificate")
        .public_key
        .fingerprint()
}

/// A client configuration that is BMC `b` to `a`: b's chain and key (signing `delay` late),
/// and a's identity pinned.
fn impersonate(b: &Bmc, a: &Bmc, delay: Duration) -> Arc<rustls::ClientConfig> {
    let files: Arc<dyn KeyStore> = Arc::new(FileKeyStore::new(b.state_dir().join("keys")));
    let store: Arc<dyn KeyStore> = Arc::new(SlowKeyStore::new(files, delay));
    let identity = ChainFiles::new(b.cert_dir())
        .load(store.as_ref())
        .expect("b's identity");
    let check = ServerCheck::Pinned {
        expected: fingerprint_in(&a.cert_dir()),
        refused: CaptureSlot::new(),
    };
    tls::client_config(&identity, store, check, UnixTime::now()).expect("client config")
}

/// Two started BMCs without attestation, paired; then b is killed so that the test can be b.
fn paired_then_b_gone(root: &Path, a_config: serde_json::Value) -> (Bmc, Bmc) {
    let mut a_config = a_config;
    a_config["attestation"] = json!("off");
    let mut a = Bmc::new(root, "bmc-a", a_config);
    let mut b = Bmc::new(root, "bmc-b", json!({"attestation": "off"}));
    a.start();
    b.start();
    pair(&a, &b);
    b.kill9();
    (a, b)
}

fn open_fds(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// Finding 1: the SPDM responder could be held by idle connections.

async fn attest(conn: &zbus::Connection, address: &str) -> Result<AttestReply, String> {
    match conn
        .call_method(
            Some(ATT_BUS),
            ATT_ROOT,
            Some(REQUESTER_IFACE),
            "Attest",
            &(address, "first-contact"),
        )
        .await
    {
        Ok(msg) => Ok(msg.body().deserialize::<AttestReply>().expect("reply")),
        Err(e) => Err(e.to_string()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_spdm_connections_from_many_sources_do_not_lock_out_a_real_attestation() {
    let tmp = tempfile::tempdir().unwrap();
    // B runs the responder with 2 sessions (a waiting room of 64 places), 2 per source, 2 s
    // for the first request.
    let mut b = Node::new(
        tmp.path(),
        "bmc-b",
        KeyKind::File,
        json!({"max_sessions": 2}),
    );
    let b_fp = b.provision().fingerprint().to_hex();
    b.start();
    let mut a = Node::new(tmp.path(), "bmc-a", KeyKind::File, json!({}));
    a.start();
    let conn = zbus::connection::Builder::address(a.bus.address.as_str())
        .unwrap()
        .build()
        .await
        .unwrap();

    // 40 sources hold 2 silent connections each (80: forty times the session count, more
    // than the waiting room's 64 places), and reconnect whenever they are dropped.
    let target = endpoint("127.0.0.1".parse().unwrap(), b.port);
    let attackers = Flood::start(target, &flood::attacker_sources(40), 2, Behaviour::Silent);
    wait_for(Duration::from_secs(10), "the flood to connect", || {
        (attackers.connects() >= 80).then_some(())
    });

    for round in 0..3 {
        let reply = attest(&conn, &b.endpoint())
            .await
            .unwrap_or_else(|e| panic!("attestation {round} during the flood failed: {e}"));
        assert!(reply.trusted, "attestation {round}: {reply:?}");
        assert_eq!(reply.fingerprint, b_fp);
    }
    let report = attackers.stop();
    // Silent connections gave way to each other, and the attackers came back.
    assert!(report.connects > 80, "{report:?}");
    assert!(b.daemon.as_mut().unwrap().running());
}

// ---------------------------------------------------------------------------------------
// Finding 3 (SPDM side): one unauthenticated connection asking for signatures in a loop.

fn spdm_exchange(stream: &mut TcpStream, request: &[u8]) -> Vec<u8> {
    stream.write_all(&frame::frame_spdm(request)).unwrap();
    let mut prefix = [0u8; 2];
    stream.read_exact(&mut prefix).unwrap();
    let announced = frame::announced(prefix, 65536).unwrap();
    let len = match announced {
        frame::Announced::Body(n) => n,
        frame::Announced::Discovery => 2,
    };
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).unwrap();
    match frame::body(announced, &body).unwrap() {
        Frame::Spdm(m) => m.to_vec(),
        other => panic!("not an SPDM message: {other:?}"),
    }
}

/// True when `response` to `request` carries a signature: CHALLENGE_AUTH, or MEASUREMENTS
/// answering a request with the signature bit.
fn signed(request: &[u8], response: &[u8]) -> bool {
    match (request.get(1), response.get(1)) {
        (Some(0x83), Some(0x03)) => true,
        (Some(0xE0), Some(0x60)) => request.get(2).is_some_and(|p| p & 1 == 1),
        _ => false,
    }
}

#[test]
fn one_unauthenticated_spdm_connection_gets_no_more_signatures_than_its_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = Node::new(
        tmp.path(),
        "bmc-b",
        KeyKind::Tpm,
        json!({
            "unauthenticated_signs_per_second": SIGNS_PER_SECOND,
            "unauthenticated_signs_per_source_per_second": SIGNS_PER_SOURCE_PER_SECOND,
        }),
    );
    b.provision();
    b.start();
    let mut stream = TcpStream::connect(b.endpoint()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();

    // One honest attestation, its requests recorded...
    let config = RequesterConfig::new(
        TrustPolicy::FirstContact,
        MeasurementPolicy::default(),
        SystemTime::now(),
    );
    let (mut requester, mut request) = Requester::new(config, &mut OsRng);
    let mut script = Vec::new();
    let mut signatures = 0u64;
    loop {
        let response = spdm_exchange(&mut stream, &request);
        signatures += u64::from(signed(&request, &response));
        script.push(request.clone());
        match requester.handle(&response).unwrap() {
            Action::Send(next) | Action::WaitThenSend { message: next, .. } => request = next,
            Action::Done(verdict) => {
                assert_eq!(verdict.outcome, Outcome::Trusted);
                break;
            }
        }
    }
    assert_eq!(signatures, 2, "CHALLENGE_AUTH and signed MEASUREMENTS");

    // ...then replayed on the same connection, 40 times over (VCA restarts the session).
    for _ in 0..40 {
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
        for request in &script {
            let response = spdm_exchange(&mut stream, request);
            signatures += u64::from(signed(request, &response));
        }
    }
    let elapsed = started.elapsed();
    let bound = flood::bucket_bound(
        SIGNS_PER_SOURCE_PER_SECOND,
        2 * SIGNS_PER_SOURCE_PER_SECOND,
        elapsed,
    );
    assert!(
        signatures <= bound,
        "{signatures} signatures in {elapsed:?} for one source; its budget allows {bound}"
    );
    assert!(b.daemon.as_mut().unwrap().running());
}

// ---------------------------------------------------------------------------------------
// Finding 2: a reconnect flood evicted a slow-signing pinned peer's handshake.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_peer_that_signs_slowly_gets_in_during_a_reconnect_flood() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = paired_then_b_gone(tmp.path(), json!({"max_pending_handshakes": 16}));
    // B's identity, signing 20 ms late as a slow TPM does, from B's own (pinned) address.
    let config = impersonate(&b, &a, Duration::from_millis(20));
    let target = DialTarget {
        addr: endpoint(a.ip, a.port),
        device: None,
        source: Some(b.ip),
    };

    // 20 sources churn through connections, 2 at a time each, holding each for 20 ms:
    // always 40 handshakes in progress, against 16 pending slots.
    let attackers = Flood::start(
        target.addr,
        &flood::attacker_sources(20),
        2,
        Behaviour::Churn(Duration::from_millis(20)),
    );
    wait_for(Duration::from_secs(10), "the flood to get going", || {
        (attackers.connects() >= 200).then_some(())
    });
    let mut failures = Vec::new();
    for _ in 0..5 {
        if let Err(e) =
            client::connect(&target, config.clone(), B_HELLO, Duration::from_secs(5)).await
        {
            failures.push(e.to_string());
        }
    }
    let report = attackers.stop();
    assert!(
        failures.is_empty(),
        "the pinned peer was kept out: {failures:?} ({report:?})"
    );
    assert!(report.connects > 200, "{report:?}");
}

// ---------------------------------------------------------------------------------------
// Finding 3 (TLS side): every certificate-less TLS client cost a TPM signature.

#[test]
fn certificate_less_tls_clients_get_no_more_tpm_signatures_than_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let tpm = Swtpm::start(&tmp.path().join("swtpm"));
    let mut a = Bmc::new(
        tmp.path(),
        "bmc-a",
        json!({
            "attestation": "off",
            "key_backend": {"type": "tpm", "tcti": tpm.tcti()},
            "unauthenticated_signs_per_second": SIGNS_PER_SECOND,
            "unauthenticated_signs_per_source_per_second": SIGNS_PER_SOURCE_PER_SECOND,
        }),
    );
    a.start();
    a.provision("self").unwrap();

    // 150 clients: 15 sources, 10 each, all at once.
    let report = Flood::run(
        endpoint(a.ip, a.port),
        &flood::attacker_sources(15),
        10,
        Behaviour::TlsWithoutCertificate,
        1,
    );
    assert_eq!(report.connects, 150, "{report:?}");
    let global = flood::bucket_bound(SIGNS_PER_SECOND, 2 * SIGNS_PER_SECOND, report.elapsed);
    let per_source = flood::bucket_bound(
        SIGNS_PER_SOURCE_PER_SECOND,
        2 * SIGNS_PER_SOURCE_PER_SECOND,
        report.elapsed,
    );
    assert!(
        report.total_signatures() <= global,
        "{} TPM signatures in {:?}; the budget allows {global}",
        report.total_signatures(),
        report.elapsed
    );
    assert!(
        report.most_signatures_of_one_source() <= per_source,
        "{report:?}: one source got more than {per_source}"
    );
    assert!(
        report.total_signatures() > 0,
        "the flood never reached TLS: {report:?}"
    );

    // The refusals are summarised, not logged one line each.
    let mut daemon = a.daemon.take().unwrap();
    assert_eq!(daemon.terminate(Duration::from_secs(10)), Some(0));
    let log = a.log();
    assert!(log.contains("refused incoming connections"), "{log}");
    let lines = log.lines().filter(|l| l.contains("refused")).count();
    assert!(lines < 10, "{lines} lines about refusals:\n{log}");
}

// ---------------------------------------------------------------------------------------
// Finding 4: one pinned peer could open sessions until the daemon ran out of descriptors.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pinned_peer_opening_many_sessions_holds_one() {
    let tmp = tempfile::tempdir().unwrap();
    // A budget this test does not reach: the session rule is what it is about.
    let (mut a, b) = paired_then_b_gone(
        tmp.path(),
        json!({
            "unauthenticated_signs_per_second": 1000,
            "unauthenticated_signs_per_source_per_second": 1000,
        }),
    );
    let pid = a.daemon.as_ref().unwrap().pid();
    let config = impersonate(&b, &a, Duration::ZERO);
    let target = DialTarget {
        addr: endpoint(a.ip, a.port),
        device: None,
        source: Some(b.ip),
    };
    // Each session is kept alive as a real peer keeps it (heartbeats), until A ends it.
    let timing = Timing {
        open_timeout: Duration::from_secs(5),
        heartbeat_interval: Duration::from_millis(500),
        heartbeat_timeout: Duration::from_secs(3),
    };
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    let keep = |conn| {
        let stop = stop.clone();
        tracker.spawn(async move {
            let mut conn = conn;
            session::run(&mut conn, timing, &stop).await
        });
    };
    keep(
        client::connect(&target, config.clone(), B_HELLO, Duration::from_secs(5))
            .await
            .unwrap(),
    );
    let baseline = open_fds(pid);
    for i in 0..200 {
        let conn = client::connect(&target, config.clone(), B_HELLO, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("session {i}: {e}"));
        keep(conn);
    }
    // Replaced sessions are closed by A: the count of its descriptors does not grow.
    let settled = Instant::now() + Duration::from_secs(10);
    let mut fds = open_fds(pid);
    while fds > baseline + 8 && Instant::now() < settled {
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds = open_fds(pid);
    }
    let live = tracker.len();
    stop.cancel();
    tracker.close();
    tracker.wait().await;
    assert!(
        fds <= baseline + 8,
        "{fds} descriptors, {baseline} before 200 more sessions ({live} still alive)"
    );
    assert!(live <= 2, "{live} sessions of one peer still alive");
    assert!(a.daemon.as_mut().unwrap().running());
}

// ---------------------------------------------------------------------------------------
// Finding 7: temporaries left by kill -9.

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn no_stale_temporaries_survive_kill9_at_random_points() {
    let tmp = tempfile::tempdir().unwrap();
    let mut a = Bmc::new(tmp.path(), "bmc-a", json!({"attestation": "off"}));
    let address = a.bus.address.clone();
    // Random points: kill -9 at 0-149 ms into a ProvisionPeer("self"), which writes keys,
    // certificates and state.
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let mut delays = Vec::new();
    for round in 0..8u32 {
        a.start();
        let delay = Duration::from_millis(u64::from(
            seed.wrapping_mul(round + 1).wrapping_mul(2_654_435_761) % 150,
        ));
        delays.push(delay);
        let mut call = Command::new("busctl")
            .arg(format!("--address={address}"))
            .args([
                "call",
                PDI_BUS,
                PDI_PATH,
                PDI_IFACE,
                "ProvisionPeer",
                "s",
                "self",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        a.kill9();
        let _ = call.wait();
    }
    // And what a crash mid-write leaves, planted in each directory: a temporary of a process
    // that is gone (PIDs never reach 4999999), one of them a key.
    let dirs = [a.state_dir(), a.state_dir().join("keys"), a.cert_dir()];
    for dir in &dirs {
        fs::create_dir_all(dir).unwrap();
        let planted = dir.join(".identity.key.tmp.4999999");
        fs::write(&planted, b"-----BEGIN PRIVATE KEY-----\n").unwrap();
        fs::set_permissions(&planted, fs::Permissions::from_mode(0o600)).unwrap();
    }
    a.start();
    // The daemon cleans up before it takes its bus names, so before start() returns.
    let leftovers: Vec<PathBuf> = files_under(&a.dir)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".tmp."))
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "kill points {delays:?}: {leftovers:?}"
    );
    // Whatever is left in the key directory is the owner's alone.
    for file in files_under(&a.state_dir().join("keys")) {
        let mode = fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{} is mode {mode:o}", file.display());
    }
    // The daemon still works after all this.
    a.provision("self").unwrap();
    assert!(a.provisioned());
}

// ---------------------------------------------------------------------------------------
// Finding 4 (units): the descriptor limit fits what the configuration may allow.

fn limit_nofile(unit: &Path) -> usize {
    let text = fs::read_to_string(unit).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .unwrap_or_else(|| panic!("{} sets no LimitNOFILE", unit.display()))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_units_descriptor_limits_fit_the_largest_configurable_caps() {
    use bmc_pairing_manager::attestation;
    let units = workspace_root().join("recipes-phosphor/bmc-pairing/bmc-pairing-manager/systemd");
    // Outgoing sessions, listeners, bus, TPM, journal and configuration files.
    let headroom = 512;
    let pairing = limit_nofile(&units.join("xyz.openbmc_project.BmcPairingManager.service"));
    let pairing_caps = bmc_pairing_manager::config::MAX_PENDING_HANDSHAKES
        + bmc_pairing_manager::config::MAX_SESSIONS;
    assert!(
        pairing_caps + headroom <= pairing,
        "{pairing_caps} + {headroom} > {pairing}"
    );
    let responder = limit_nofile(&units.join("xyz.openbmc_project.attestation.service"));
    let responder_caps = attestation::config::MAX_SESSIONS
        + attestation::responder::waiting_places(attestation::config::MAX_SESSIONS);
    assert!(
        responder_caps + headroom <= responder,
        "{responder_caps} + {headroom} > {responder}"
    );
}

// ---------------------------------------------------------------------------------------
// Findings 1-3 together: pairing and reconnecting while both BMCs are flooded.

#[test]
fn two_bmcs_pair_and_reconnect_while_both_are_flooded() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, mut b) = two_provisioned(tmp.path());
    let floods: Vec<Flood> = [&a, &b]
        .into_iter()
        .flat_map(|bmc| flood::against(bmc, Duration::ZERO))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    a.provision(&b.endpoint()).unwrap();
    b.provision(&a.endpoint()).unwrap();
    let journals = |a: &Bmc, b: &Bmc| format!("A:\n{}\nB:\n{}", a.log(), b.log());
    assert!(
        both_connected_within(&a, &b, Duration::from_secs(30)),
        "no pairing under the flood\n{}",
        journals(&a, &b)
    );
    b.kill9();
    b.start();
    assert!(
        both_connected_within(&a, &b, Duration::from_secs(30)),
        "no reconnect under the flood\n{}",
        journals(&a, &b)
    );
    // [A TLS, A SPDM, B TLS, B SPDM]; B's pairing manager ran twice, each with a full
    // bucket at start.
    let reports: Vec<_> = floods.into_iter().map(Flood::stop).collect();
    for (r, bursts) in [(&reports[0], 1), (&reports[2], 2)] {
        let bound = flood::bucket_bound(SIGNS_PER_SECOND, bursts * 2 * SIGNS_PER_SECOND, r.elapsed);
        assert!(r.total_signatures() <= bound, "{r:?}: more than {bound}");
        assert!(r.total_signatures() > 0, "{r:?}");
    }
}
