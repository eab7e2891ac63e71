//! Hostile neighbours for the exhaustion tests and the flood benchmark: clients that hold TCP
//! connections open and silent, churn through connections, or start TLS 1.3 without a
//! certificate to make the server sign. Each client connects from a source address of its own
//! in 127.0.0.0/8 (loopback, not a private range), so per-source limits see many attackers.
//!
//! Every client is a thread that stops when its [`Flood`] is stopped or dropped, and never
//! runs longer than [`MAX_FLOOD`], so a failing test cannot leave a flood behind.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bmc_pairing_manager::identity::{Backend, KeyRole, KeyStore, PublicKey};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use socket2::{Domain, SockAddr, Socket, Type};

/// The longest any flood client runs.
pub const MAX_FLOOD: Duration = Duration::from_secs(120);

/// `n` attacker source addresses, 127.0.0.100 upwards (at most 100 of them).
pub fn attacker_sources(n: u8) -> Vec<IpAddr> {
    (0..n.min(100))
        .map(|i| IpAddr::from([127, 0, 0, 100 + i]))
        .collect()
}

/// Opens a TCP connection to `to` from address `from` (any port).
///
/// # Errors
/// Socket, bind and connect failures.
pub fn connect_from(from: IpAddr, to: SocketAddr, limit: Duration) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::for_address(to), Type::STREAM, None)?;
    socket.bind(&SockAddr::from(SocketAddr::new(from, 0)))?;
    socket.connect_timeout(&SockAddr::from(to), limit)?;
    socket.set_tcp_nodelay(true)?;
    Ok(socket.into())
}

/// Pins the calling thread to `cpus` (a `taskset` CPU list such as `"0"` or `"0-1"`). Threads
/// and processes it starts afterwards inherit the mask, which is how the flood benchmark gives
/// the BMCs one CPU and the attacker the other, as if the attacker were another machine.
///
/// # Panics
/// When `/proc/thread-self` cannot be read or `taskset` fails.
pub fn pin_current_thread(cpus: &str) {
    let link = std::fs::read_link("/proc/thread-self").expect("/proc/thread-self");
    let tid = link
        .file_name()
        .and_then(|t| t.to_str())
        .expect("a thread id")
        .to_owned();
    let status = std::process::Command::new("taskset")
        .args(["-p", "-c", cpus, &tid])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("taskset runs");
    assert!(status.success(), "taskset -p -c {cpus} {tid}: {status}");
}

/// [`against`], with every attacking client confined to `cpus` (see [`pin_current_thread`]).
pub fn against_on_cpus(bmc: &crate::Bmc, pace: Duration, cpus: &str) -> [Flood; 2] {
    let (ip, port, cpus) = (bmc.ip, bmc.port, cpus.to_owned());
    std::thread::spawn(move || {
        pin_current_thread(&cpus);
        floods_of(ip, port, pace)
    })
    .join()
    .expect("the flood starter does not panic")
}

/// The hostile neighbour of one BMC used by the flood test and benchmark: 20 addresses with 2
/// certificate-less TLS clients each on its pairing port (each client pausing `pace` between
/// connections), and 40 addresses with 2 silent clients each on its SPDM port.
pub fn against(bmc: &crate::Bmc, pace: Duration) -> [Flood; 2] {
    floods_of(bmc.ip, bmc.port, pace)
}

fn floods_of(ip: IpAddr, port: u16, pace: Duration) -> [Flood; 2] {
    [
        Flood::start_paced(
            SocketAddr::new(ip, port),
            &attacker_sources(20),
            2,
            Behaviour::TlsWithoutCertificate,
            pace,
        ),
        Flood::start(
            SocketAddr::new(ip, crate::spdm_port()),
            &attacker_sources(40),
            2,
            Behaviour::Silent,
        ),
    ]
}

/// What each flood client does, over and over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Connects, sends nothing, and holds the connection until the server closes it.
    Silent,
    /// Connects, holds the connection this long without sending, and resets it.
    Churn(Duration),
    /// Starts a TLS 1.3 handshake without a client certificate and aborts it once the
    /// server's certificate arrives. A TLS 1.3 server signs its CertificateVerify in the
    /// same flight, so every certificate seen is one signature the server made.
    TlsWithoutCertificate,
}

/// What a flood achieved.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// TCP connections established.
    pub connects: u64,
    /// Server certificates seen ([`Behaviour::TlsWithoutCertificate`]), by source address.
    pub server_signatures: BTreeMap<IpAddr, u64>,
    /// From start to stop.
    pub elapsed: Duration,
}

impl Report {
    /// Server signatures from all sources together.
    pub fn total_signatures(&self) -> u64 {
        self.server_signatures.values().sum()
    }

    /// The most server signatures one source obtained.
    pub fn most_signatures_of_one_source(&self) -> u64 {
        self.server_signatures.values().copied().max().unwrap_or(0)
    }
}

/// The most a token bucket of `per_second` and `burst` can grant in `elapsed`.
pub fn bucket_bound(per_second: u64, burst: u64, elapsed: Duration) -> u64 {
    let refilled_millis = u128::from(per_second) * elapsed.as_millis();
    burst + u64::try_from(refilled_millis.div_ceil(1000)).unwrap_or(u64::MAX)
}

#[derive(Debug, Default)]
struct Shared {
    stop: AtomicBool,
    connects: AtomicU64,
    signatures: Mutex<BTreeMap<IpAddr, u64>>,
}

impl Shared {
    fn stopping(&self, deadline: Instant) -> bool {
        self.stop.load(Ordering::Relaxed) || Instant::now() >= deadline
    }
}

/// A running flood against one address.
#[derive(Debug)]
pub struct Flood {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
    started: Instant,
}

impl Flood {
    /// Starts `per_source` clients from each of `sources` against `to`; they repeat
    /// `behaviour` until [`Flood::stop`].
    pub fn start(
        to: SocketAddr,
        sources: &[IpAddr],
        per_source: usize,
        behaviour: Behaviour,
    ) -> Flood {
        Self::spawn(to, sources, per_source, behaviour, None, Duration::ZERO)
    }

    /// As [`Flood::start`], each client pausing `pace` between connections (a benchmark's
    /// attacker shares this machine's CPUs with the daemons it attacks; pacing keeps its own
    /// cost from dominating what is measured).
    pub fn start_paced(
        to: SocketAddr,
        sources: &[IpAddr],
        per_source: usize,
        behaviour: Behaviour,
        pace: Duration,
    ) -> Flood {
        Self::spawn(to, sources, per_source, behaviour, None, pace)
    }

    /// Runs `per_source` clients from each of `sources` against `to`, each repeating
    /// `behaviour` `rounds` times, and waits for all of them.
    pub fn run(
        to: SocketAddr,
        sources: &[IpAddr],
        per_source: usize,
        behaviour: Behaviour,
        rounds: usize,
    ) -> Report {
        Self::spawn(
            to,
            sources,
            per_source,
            behaviour,
            Some(rounds),
            Duration::ZERO,
        )
        .stop_when_done()
    }

    fn spawn(
        to: SocketAddr,
        sources: &[IpAddr],
        per_source: usize,
        behaviour: Behaviour,
        rounds: Option<usize>,
        pace: Duration,
    ) -> Flood {
        let shared = Arc::new(Shared::default());
        let deadline = Instant::now() + MAX_FLOOD;
        let mut threads = Vec::new();
        for &source in sources {
            let tls = Arc::new(counting_client(source, shared.clone()));
            for _ in 0..per_source {
                let (shared, tls) = (shared.clone(), tls.clone());
                threads.push(std::thread::spawn(move || {
                    let mut done = 0usize;
                    while !shared.stopping(deadline) && rounds.is_none_or(|r| done < r) {
                        if done > 0 && !pace.is_zero() {
                            std::thread::sleep(pace);
                        }
                        done += 1;
                        let Ok(stream) = connect_from(source, to, Duration::from_millis(500))
                        else {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        };
                        shared.connects.fetch_add(1, Ordering::Relaxed);
                        match behaviour {
                            Behaviour::Silent => hold_until_closed(stream, &shared, deadline),
                            Behaviour::Churn(hold) => churn(stream, hold, &shared, deadline),
                            Behaviour::TlsWithoutCertificate => {
                                tls_without_certificate(stream, &tls)
                            }
                        }
                    }
                }));
            }
        }
        Flood {
            shared,
            threads,
            started: Instant::now(),
        }
    }

    /// TCP connections established so far.
    pub fn connects(&self) -> u64 {
        self.shared.connects.load(Ordering::Relaxed)
    }

    /// Stops every client, waits for them, and reports.
    pub fn stop(self) -> Report {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.stop_when_done()
    }

    fn stop_when_done(mut self) -> Report {
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        Report {
            connects: self.connects(),
            server_signatures: self
                .shared
                .signatures
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            elapsed: self.started.elapsed(),
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn hold_until_closed(mut stream: TcpStream, shared: &Shared, deadline: Instant) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 512];
    while !shared.stopping(deadline) {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

fn churn(stream: TcpStream, hold: Duration, shared: &Shared, deadline: Instant) {
    let until = Instant::now() + hold;
    while Instant::now() < until && !shared.stopping(deadline) {
        std::thread::sleep(
            until
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(20)),
        );
    }
    // A reset, not a FIN: a flood must not run the client out of ports in TIME_WAIT.
    let _ = Socket::from(stream).set_linger(Some(Duration::ZERO));
}

fn tls_without_certificate(mut stream: TcpStream, config: &Arc<rustls::ClientConfig>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let Ok(name) = ServerName::try_from("bmc") else {
        return;
    };
    let Ok(mut tls) = rustls::ClientConnection::new(config.clone(), name) else {
        return;
    };
    // Ends with the verifier's refusal once the certificate arrives, or when the server
    // closes the connection first.
    while tls.is_handshaking() {
        if tls.complete_io(&mut stream).is_err() {
            break;
        }
    }
    let _ = Socket::from(stream).set_linger(Some(Duration::ZERO));
}

/// A TLS 1.3 client without a certificate whose verifier counts the server certificates it
/// sees (for `source`) and refuses them, which aborts the handshake.
fn counting_client(source: IpAddr, shared: Arc<Shared>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(CountingVerifier {
            source,
            shared,
            provider,
        }))
        .with_no_client_auth()
}

#[derive(Debug)]
struct CountingVerifier {
    source: IpAddr,
    shared: Arc<Shared>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for CountingVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        *self
            .shared
            .signatures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(self.source)
            .or_default() += 1;
        Err(rustls::Error::General("counted, and refused".into()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General(
            "never reached: the certificate is refused".into(),
        ))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A key store that signs `delay` late, as a slow TPM does (real TPMs take 30-100 ms).
#[derive(Debug)]
pub struct SlowKeyStore {
    inner: Arc<dyn KeyStore>,
    delay: Duration,
}

impl SlowKeyStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn KeyStore>, delay: Duration) -> Self {
        SlowKeyStore { inner, delay }
    }
}

impl KeyStore for SlowKeyStore {
    fn backend(&self) -> Backend {
        self.inner.backend()
    }

    fn generate(&self, role: KeyRole) -> Result<PublicKey, bmc_pairing_core::keys::Error> {
        self.inner.generate(role)
    }

    fn public_key(&self, role: KeyRole) -> Result<PublicKey, bmc_pairing_core::keys::Error> {
        self.inner.public_key(role)
    }

    fn sign_digest(
        &self,
        role: KeyRole,
        digest: &[u8],
    ) -> Result<Vec<u8>, bmc_pairing_core::keys::Error> {
        std::thread::sleep(self.delay);
        self.inner.sign_digest(role, digest)
    }

    fn delete(&self, role: KeyRole) -> Result<(), bmc_pairing_core::keys::Error> {
        self.inner.delete(role)
    }
}
