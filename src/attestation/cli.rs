//! The command line of `bmc-attestation`: the daemon (no subcommand) and the operator
//! subcommands `attest` (run the requester once, print the report as JSON) and `respond`
//! (serve as an SPDM responder until SIGTERM/SIGINT).
//!
//! Exit codes: [`EXIT_OK`] (attest: trusted), [`EXIT_NOT_TRUSTED`] (attest: rejected or
//! unreachable; respond: runtime failure), [`EXIT_USAGE`] (bad arguments, files or
//! configuration).

use std::future::Future;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::{self, TPM_DEVICE};
use super::keys::{self, KeyFile};
use super::measurements::Measurements;
use super::requester::{self, parse_address};
use super::responder::{self, IdentitySource};
use crate::cli::{
    DaemonLine, Parsed, UsageError, parse_choice, parse_daemon_line, parse_in, parse_value,
};
use crate::contract::TrustPolicyArg;
use crate::identity::{Fingerprint, KeyStore};
use crate::spdm::transport::{DEFAULT_PORT, Framing, Timeouts};
use bmc_pairing_core::budget::SignBudget;
use bmc_pairing_core::pairing::AttestPolicy;
use bmc_pairing_core::spdm::verify::{SpdmChain, verify_chain};
use bmc_pairing_core::spdm::{
    MeasurementPolicy, PolicyMode, ReferenceValues, ResponderConfig, TrustPolicy,
};

/// Success; for `attest`: the peer is trusted.
pub const EXIT_OK: u8 = 0;
/// `attest`: not trusted (rejected, or no answer); `respond`: runtime failure.
pub const EXIT_NOT_TRUSTED: u8 = 1;
/// Bad arguments, files or configuration.
pub const EXIT_USAGE: u8 = crate::cli::EXIT_USAGE;

/// `bmc-attestation`'s command line: the daemon's options and an operator subcommand
/// (none runs the daemon). `config` is also the identity of `respond` without --key.
pub type Args = DaemonLine<Command>;

/// Operator subcommands.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Attest the responder at HOST or HOST:PORT once; print the report as JSON on stdout.
    Attest(AttestArgs),
    /// Serve as an SPDM responder until SIGTERM or SIGINT.
    Respond(RespondArgs),
}

/// Framing on the TCP stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FramingArg {
    /// DSP0287 (BMC peers).
    Dsp0287,
    /// The DMTF spdm-emu `--trans TCP` platform header around DSP0287.
    EmuTcp,
    /// The DMTF spdm-emu `--trans NONE` platform header around bare messages.
    EmuNone,
}

/// `--framing` values, as the command line spells them.
const FRAMINGS: &[(&str, FramingArg)] = &[
    ("dsp0287", FramingArg::Dsp0287),
    ("emu-tcp", FramingArg::EmuTcp),
    ("emu-none", FramingArg::EmuNone),
];

impl From<FramingArg> for Framing {
    fn from(f: FramingArg) -> Self {
        match f {
            FramingArg::Dsp0287 => Framing::Dsp0287,
            FramingArg::EmuTcp => Framing::EmuTcp,
            FramingArg::EmuNone => Framing::EmuNone,
        }
    }
}

/// What a measurement mismatch does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyArg {
    /// Measurements are not appraised.
    Off,
    /// Mismatches are reported; the peer is still trusted.
    Audit,
    /// Any mismatch rejects the peer.
    Enforce,
}

/// `--measurement-policy` values, as the command line spells them.
const POLICIES: &[(&str, PolicyArg)] = &[
    ("off", PolicyArg::Off),
    ("audit", PolicyArg::Audit),
    ("enforce", PolicyArg::Enforce),
];

impl From<PolicyArg> for PolicyMode {
    fn from(p: PolicyArg) -> Self {
        match p {
            PolicyArg::Off => PolicyMode::Off,
            PolicyArg::Audit => PolicyMode::Audit,
            PolicyArg::Enforce => PolicyMode::Enforce,
        }
    }
}

/// `bmc-attestation attest`.
#[derive(Debug, PartialEq, Eq)]
pub struct AttestArgs {
    /// The responder: ip, ip:port or, for IPv6 with a port, the address in brackets then
    /// :port (port 4194 when omitted). No host names.
    pub target: String,
    /// Framing on the TCP stream.
    pub framing: FramingArg,
    /// Trust only chains that lead to these root certificates (DER or PEM).
    pub trust_anchors: Vec<PathBuf>,
    /// Trust only a leaf key with this fingerprint (SHA-256 of its SubjectPublicKeyInfo,
    /// 64 hex characters).
    pub pin: Option<String>,
    /// Reference values (JSON, format version 1) to appraise the measurements against.
    pub reference_values: Option<PathBuf>,
    /// What a measurement mismatch does (default: audit with reference values, off without).
    pub measurement_policy: Option<PolicyArg>,
    /// Deadline for the whole attestation, in milliseconds.
    pub timeout_ms: u64,
    /// Bind the connection to this network interface (SO_BINDTODEVICE).
    pub interface: Option<String>,
}

/// `bmc-attestation respond`.
#[derive(Debug, PartialEq, Eq)]
pub struct RespondArgs {
    /// Address and port to listen on.
    pub listen: SocketAddr,
    /// Framing on the TCP stream.
    pub framing: FramingArg,
    /// Identity key (development and interoperability tests only); comes with `chain`.
    pub key: Option<PathBuf>,
    /// Certificate chain for `key`, root first, leaf last.
    pub chain: Vec<PathBuf>,
    /// Files to report in MEASUREMENTS, indices 1, 2, ... in order.
    pub measure: Vec<PathBuf>,
    /// Concurrent sessions.
    pub max_sessions: u16,
    /// TPM signatures all requesters together may cause per second (twice that at once).
    pub signs_per_second: u32,
    /// TPM signatures one requester address may cause per second (twice that at once).
    pub signs_per_source_per_second: u32,
}

const HELP: &str = "\
SPDM 1.2 responder for this BMC and attestation of peer BMCs over D-Bus

SPDM 1.2 (DMTF DSP0274) over TCP (DSP0287).

Without a subcommand: the daemon. It owns xyz.openbmc_project.attestation, serves this
BMC's identity (the pairing manager's chain and TPM key) as an SPDM responder, and attests
peers when asked over D-Bus (xyz.openbmc_project.BmcPairing.Attestation.Requester.Attest).

With a subcommand: one-shot operator tools (attest, respond) that need no D-Bus.

Usage: bmc-attestation [OPTIONS] [COMMAND]

Commands:
  attest   Attest the responder at HOST or HOST:PORT once; print the report as JSON
  respond  Serve as an SPDM responder until SIGTERM or SIGINT
  help     Print this help, or a command's (help attest)

Options:
  -c, --config <FILE>     Configuration file (JSON): the daemon's, and the identity of
                          `respond` without --key. A missing file means defaults.
                          [default: /etc/bmc-pairing-manager/bmc-attestation.conf]
      --bus <ADDRESS>     D-Bus address to use instead of the system bus (daemon only)
      --check-config      Validate the configuration and the reference values it names,
                          print the result and exit (0 valid, 2 invalid)
  -h, --help              Print help (also after a command: bmc-attestation attest --help)
  -V, --version           Print version
";

const ATTEST_HELP: &str = "\
Attest the responder at HOST or HOST:PORT once; print the report as JSON on stdout.

Exit status: 0 trusted (also with audit findings), 1 not trusted or no answer, 2 bad
arguments.

Usage: bmc-attestation attest [OPTIONS] <HOST[:PORT]>

Arguments:
  <HOST[:PORT]>  The responder: ip, ip:port or, for IPv6 with a port, the address in
                 brackets then :port (port 4194 when omitted). No host names.

Options:
      --framing <FRAMING>         Framing on the TCP stream [default: dsp0287]
                                  [possible values: dsp0287, emu-tcp, emu-none]
      --trust-anchor <FILE>       Trust only chains that lead to this root certificate (DER
                                  or PEM); repeatable. Without --trust-anchor and --pin the
                                  peer is attested in first-contact mode (any
                                  self-consistent chain), and the report says so: pin its
                                  fingerprint.
      --pin <HEX>                 Trust only a leaf key with this fingerprint (SHA-256 of its
                                  SubjectPublicKeyInfo, 64 hex characters); not with
                                  --trust-anchor
      --reference-values <FILE>   Reference values (JSON, format version 1) to appraise the
                                  measurements against
      --measurement-policy <POLICY>
                                  What a measurement mismatch does [default: audit with
                                  --reference-values, off without]
                                  [possible values: off, audit, enforce]
      --timeout-ms <MS>           Deadline for the whole attestation, in milliseconds
                                  [default: 20000] [range: 100..=600000]
      --interface <IFACE>         Bind the connection to this network interface
                                  (SO_BINDTODEVICE)
  -c, --config <FILE>             The configuration file (not used by attest)
  -h, --help                      Print help
";

const RESPOND_HELP: &str = "\
Serve as an SPDM responder until SIGTERM or SIGINT.

With --key and --chain: that key and chain (file backend, development only). Without: the
daemon's identity from --config (chain files and key backend, the TPM in production). Prints
\"listening on ADDR:PORT\" on stdout once ready.

Usage: bmc-attestation respond [OPTIONS]

Options:
      --listen <ADDR:PORT>        Address and port to listen on [default: [::]:4194]
      --framing <FRAMING>         Framing on the TCP stream [default: dsp0287]
                                  [possible values: dsp0287, emu-tcp, emu-none]
      --key <FILE>                Identity key: an ECDSA P-256 or P-384 PKCS#8 private key,
                                  DER or PEM (development and interoperability tests only).
                                  Needs --chain. A P-256 key is served with SHA-256, a P-384
                                  key with SHA-384. Without it the daemon's identity from
                                  --config is served.
      --chain <FILE>...           Certificate chain for --key: DER or PEM files, the
                                  self-signed root first, each certificate signed by the one
                                  before it, the leaf (the key's certificate) last; a chain
                                  that does not chain, or is not valid now, is refused at
                                  start. Needs --key.
      --measure <FILE>            A file to report in MEASUREMENTS, indices 1, 2, ... in
                                  order; repeatable. Default: the configuration's
                                  measured_files, firmware_image and PCRs (without --key),
                                  none (with --key).
      --max-sessions <N>          Concurrent sessions [default: 8] [range: 1..=256]
      --signs-per-second <N>      TPM signatures all requesters together may cause per
                                  second (twice that at once) [default: 10] [range: 1..=1000]
      --signs-per-source-per-second <N>
                                  TPM signatures one requester address may cause per second
                                  (twice that at once) [default: 2] [range: 1..=1000]
  -c, --config <FILE>             Configuration file: the identity served without --key
  -h, --help                      Print help
";

/// Parses `bmc-attestation`'s command line `args` (the program name first). `--config` is
/// also accepted after a subcommand, as `respond` uses it too.
///
/// # Errors
/// [`UsageError`] for anything that is not this command line; nothing is run then.
pub fn parse_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<Parsed<Args>, UsageError> {
    parse_daemon_line(args, config::DEFAULT_PATH, HELP, |name, parser, config| {
        Ok(Some(match name {
            "attest" => AttestArgs::parse(parser, config)?.map(Command::Attest),
            "respond" => RespondArgs::parse(parser, config)?.map(Command::Respond),
            _ => return Ok(None),
        }))
    })
}

impl AttestArgs {
    /// The rest of the command line after `attest`; `config` takes a `--config` given here.
    fn parse(
        parser: &mut lexopt::Parser,
        config: &mut PathBuf,
    ) -> Result<Parsed<AttestArgs>, UsageError> {
        use lexopt::prelude::*;
        let mut target = None;
        let mut framing = FramingArg::Dsp0287;
        let mut trust_anchors = Vec::new();
        let mut pin = None;
        let mut reference_values = None;
        let mut measurement_policy = None;
        let mut timeout_ms = 20_000;
        let mut interface = None;
        while let Some(arg) = parser.next()? {
            match arg {
                Short('c') | Long("config") => *config = parser.value()?.into(),
                Long("framing") => framing = parse_choice("--framing", parser.value()?, FRAMINGS)?,
                Long("trust-anchor") => trust_anchors.push(parser.value()?.into()),
                Long("pin") => pin = Some(parse_value("--pin", parser.value()?)?),
                Long("reference-values") => reference_values = Some(parser.value()?.into()),
                Long("measurement-policy") => {
                    measurement_policy = Some(parse_choice(
                        "--measurement-policy",
                        parser.value()?,
                        POLICIES,
                    )?);
                }
                Long("timeout-ms") => {
                    timeout_ms = parse_in("--timeout-ms", parser.value()?, 100..=600_000)?;
                }
                Long("interface") => {
                    interface = Some(parse_value("--interface", parser.value()?)?);
                }
                Short('h') | Long("help") => return Ok(Parsed::Help(ATTEST_HELP)),
                Value(value) if target.is_none() => {
                    target = Some(parse_value("<HOST[:PORT]>", value)?);
                }
                _ => return Err(arg.unexpected().into()),
            }
        }
        if pin.is_some() && !trust_anchors.is_empty() {
            return Err(UsageError::Conflict(
                "--pin cannot be used with --trust-anchor",
            ));
        }
        Ok(Parsed::Run(AttestArgs {
            target: target.ok_or(UsageError::Missing("<HOST[:PORT]>"))?,
            framing,
            trust_anchors,
            pin,
            reference_values,
            measurement_policy,
            timeout_ms,
            interface,
        }))
    }
}

impl RespondArgs {
    /// The rest of the command line after `respond`; `config` takes a `--config` given here.
    fn parse(
        parser: &mut lexopt::Parser,
        config: &mut PathBuf,
    ) -> Result<Parsed<RespondArgs>, UsageError> {
        use lexopt::prelude::*;
        let mut listen = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, DEFAULT_PORT));
        let mut framing = FramingArg::Dsp0287;
        let mut key = None;
        let mut chain: Vec<PathBuf> = Vec::new();
        let mut measure = Vec::new();
        let mut max_sessions = 8;
        let mut signs_per_second = 10;
        let mut signs_per_source_per_second = 2;
        while let Some(arg) = parser.next()? {
            match arg {
                Short('c') | Long("config") => *config = parser.value()?.into(),
                Long("listen") => listen = parse_value("--listen", parser.value()?)?,
                Long("framing") => framing = parse_choice("--framing", parser.value()?, FRAMINGS)?,
                Long("key") => key = Some(parser.value()?.into()),
                // One or more files, up to the next option (as `--chain a b c`).
                Long("chain") => chain.extend(parser.values()?.map(PathBuf::from)),
                Long("measure") => measure.push(parser.value()?.into()),
                Long("max-sessions") => {
                    max_sessions = parse_in("--max-sessions", parser.value()?, 1..=256)?;
                }
                Long("signs-per-second") => {
                    signs_per_second = parse_in("--signs-per-second", parser.value()?, 1..=1000)?;
                }
                Long("signs-per-source-per-second") => {
                    signs_per_source_per_second =
                        parse_in("--signs-per-source-per-second", parser.value()?, 1..=1000)?;
                }
                Short('h') | Long("help") => return Ok(Parsed::Help(RESPOND_HELP)),
                _ => return Err(arg.unexpected().into()),
            }
        }
        match (key.is_some(), chain.is_empty()) {
            (true, true) => return Err(UsageError::Conflict("--key needs --chain")),
            (false, false) => return Err(UsageError::Conflict("--chain needs --key")),
            _ => {}
        }
        Ok(Parsed::Run(RespondArgs {
            listen,
            framing,
            key,
            chain,
            measure,
            max_sessions,
            signs_per_second,
            signs_per_source_per_second,
        }))
    }
}

fn usage(what: impl std::fmt::Display) -> u8 {
    eprintln!("bmc-attestation: {what}");
    EXIT_USAGE
}

fn print_json(value: &impl serde::Serialize) {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "{}".to_owned());
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// `attest`: parses everything first (exit 2 on any bad input, nothing sent), then runs the
/// requester once and prints the report.
///
/// # Cancel safety
/// Cancel safe.
pub async fn attest_command(args: AttestArgs) -> u8 {
    let addr = match parse_address(&args.target, DEFAULT_PORT) {
        Ok(a) => a,
        Err(e) => return usage(e),
    };
    let (choice, trust) = if let Some(pin) = &args.pin {
        match Fingerprint::from_hex(pin) {
            Ok(fp) => (AttestPolicy::Pinned(fp), TrustPolicy::Pinned(fp)),
            Err(e) => return usage(format_args!("--pin: {e}")),
        }
    } else if !args.trust_anchors.is_empty() {
        let mut anchors = Vec::new();
        for f in &args.trust_anchors {
            match keys::read_certificates(f) {
                Ok(certs) => anchors.extend(certs),
                Err(e) => return usage(format_args!("--trust-anchor: {e}")),
            }
        }
        (AttestPolicy::Anchored, TrustPolicy::Anchored(anchors))
    } else {
        eprintln!(
            "bmc-attestation: no --trust-anchor or --pin: attesting in first-contact mode; \
             the fingerprint in the report is the identity to pin"
        );
        (AttestPolicy::FirstContact, TrustPolicy::FirstContact)
    };
    let reference = match &args.reference_values {
        None => ReferenceValues::default(),
        Some(p) => match super::load_reference_values(p) {
            Ok(r) => r,
            Err(e) => {
                return usage(format_args!(
                    "--reference-values: {}",
                    crate::kit::ErrorChain(&e)
                ));
            }
        },
    };
    let mode = match (args.measurement_policy, &args.reference_values) {
        (Some(PolicyArg::Enforce), None) => {
            return usage("--measurement-policy enforce needs --reference-values");
        }
        (Some(p), _) => PolicyMode::from(p),
        (None, Some(_)) => PolicyMode::Audit,
        (None, None) => PolicyMode::Off,
    };
    let limit = Duration::from_millis(args.timeout_ms);
    let settings = requester::Settings {
        framing: args.framing.into(),
        timeouts: Timeouts {
            io: limit,
            idle: limit,
        },
        connect_timeout: limit,
        attest_timeout: limit,
        device: args.interface.clone(),
        measurements: MeasurementPolicy { mode, reference },
    };
    let verify_time = crate::clock::time_view(0).into();
    match requester::attest(
        addr,
        TrustPolicyArg(choice).to_string(),
        trust,
        &settings,
        verify_time,
    )
    .await
    {
        Ok(report) => {
            print_json(&report);
            if report.trusted {
                EXIT_OK
            } else {
                EXIT_NOT_TRUSTED
            }
        }
        Err(failure) => {
            print_json(&serde_json::json!({
                "address": addr.ip().to_string(),
                "port": addr.port(),
                "trust_policy": TrustPolicyArg(choice).to_string(),
                "trusted": false,
                "outcome": "NotAttested",
                "authenticated": false,
                "error": crate::kit::ErrorChain(&failure).to_string(),
            }));
            EXIT_NOT_TRUSTED
        }
    }
}

/// Why `respond --key/--chain` cannot serve.
#[derive(Debug, thiserror::Error)]
enum FixedIdentityError {
    /// The key file.
    #[error("--key")]
    Key(#[source] keys::FileError),
    /// A chain file.
    #[error("--chain")]
    Chain(#[source] keys::FileError),
    /// The chain does not fit the key, or does not parse as an SPDM chain.
    #[error("--chain/--key")]
    Mismatch(#[source] bmc_pairing_core::spdm::Error),
    /// The certificates do not form a chain from a self-signed root to the leaf, valid now:
    /// a requester would refuse it.
    #[error(
        "--chain is not a valid certificate chain from a self-signed root to the --key certificate"
    )]
    NotAChain(#[source] bmc_pairing_core::spdm::ChainError),
    /// The key cannot be read as the identity key.
    #[error("--key")]
    Store(#[source] bmc_pairing_core::keys::Error),
}

/// The identity of `respond --key --chain`, checked once at start: the leaf must be the
/// key's certificate, and the chain must verify from its self-signed root down at `now`
/// (each signature, issuer link, CA flag and validity period), as a requester will check it.
fn fixed_identity(
    key: &Path,
    chain_files: &[PathBuf],
    now: std::time::SystemTime,
) -> Result<IdentitySource, FixedIdentityError> {
    let store: Arc<dyn KeyStore> = Arc::new(KeyFile::load(key).map_err(FixedIdentityError::Key)?);
    let mut chain = Vec::new();
    for f in chain_files {
        chain.extend(keys::read_certificates(f).map_err(FixedIdentityError::Chain)?);
    }
    // The responder refuses a chain whose leaf is not the key's certificate.
    let suite = bmc_pairing_core::spdm::Responder::new(
        ResponderConfig::new(chain.clone(), Vec::new()),
        store.clone(),
    )
    .map_err(FixedIdentityError::Mismatch)?
    .suite();
    let spdm_chain = SpdmChain::from_der_certs(&chain, suite.hash)
        .map_err(FixedIdentityError::NotAChain)?
        .encode();
    verify_chain(
        &spdm_chain,
        suite.hash,
        suite.asym,
        &TrustPolicy::FirstContact,
        now,
    )
    .map_err(FixedIdentityError::NotAChain)?;
    IdentitySource::fixed(chain, store).map_err(FixedIdentityError::Store)
}

/// `respond`: serves until `shutdown`.
///
/// # Cancel safety
/// Not cancel safe: drive it to completion (pass the shutdown future instead).
pub async fn respond_command(
    args: RespondArgs,
    config_path: &Path,
    shutdown: impl Future<Output = ()>,
) -> u8 {
    if args.measure.len() > config::MAX_MEASURED_FILES {
        return usage(format_args!(
            "at most {} --measure files",
            config::MAX_MEASURED_FILES
        ));
    }
    let sign_limits = {
        let check = crate::config::Checker::new(config_path);
        match check.sign_limits(args.signs_per_second, args.signs_per_source_per_second) {
            Ok(l) => l,
            Err(e) => return usage(e),
        }
    };
    let (identity, measurements, timeouts) = match &args.key {
        Some(key) => match fixed_identity(key, &args.chain, crate::clock::floored_now(0)) {
            Ok(id) => (
                id,
                Measurements::new(&args.measure, None, &[]),
                Timeouts::default(),
            ),
            Err(e) => return usage(crate::kit::ErrorChain(&e)),
        },
        None => {
            let tpm_present = Path::new(TPM_DEVICE).exists();
            // The daemon's checks, reference values included, so a file the daemon refuses
            // is refused here too.
            let config = match config::load(config_path, tpm_present)
                .and_then(|c| super::load_measurement_policy(config_path, &c).map(|_| c))
            {
                Ok(c) => c,
                Err(e) => return usage(format_args!("invalid configuration: {e}")),
            };
            let store = match crate::identity::store::open(
                &config.identity.key_backend,
                &config.identity.key_dir(),
                crate::identity::store::Probe::Now,
            ) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %crate::kit::ErrorChain(&e), "cannot open the key store; will retry");
                    None
                }
            };
            let measurements = if args.measure.is_empty() {
                Measurements::new(
                    &config.measured_files,
                    config.firmware_image.as_deref(),
                    &config.pcrs,
                )
            } else {
                Measurements::new(&args.measure, None, &config.pcrs)
            };
            let id = IdentitySource::daemon(
                config.identity.key_backend.clone(),
                config.identity.key_dir(),
                config.identity.cert_dir(),
                store,
            );
            let timeouts = Timeouts {
                io: config.io_timeout,
                idle: config.idle_timeout,
            };
            (id, measurements, timeouts)
        }
    };
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("bmc-attestation: cannot listen on {}: {e}", args.listen);
            return EXIT_NOT_TRUSTED;
        }
    };
    let (status, _status_rx) = watch::channel(None);
    let responder = Arc::new(responder::Responder::new(identity, measurements, status));
    {
        let r = responder.clone();
        match tokio::task::spawn_blocking(move || r.refresh()).await {
            Ok(Some(fp)) => tracing::info!(fingerprint = %fp, "serving identity"),
            _ => tracing::warn!(
                "no identity to serve yet; connections are closed until there is one"
            ),
        }
    }
    match listener.local_addr() {
        Ok(local) => {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on {local}");
            let _ = out.flush();
        }
        Err(e) => {
            tracing::warn!(error = %crate::kit::ErrorChain(&e), "cannot read the listening address")
        }
    }
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    tracker.spawn(responder::serve(
        listener,
        responder,
        responder::Settings {
            framing: args.framing.into(),
            timeouts,
            first_request_timeout: timeouts.idle,
            session_timeout: timeouts.io.saturating_mul(2).max(Duration::from_secs(30)),
            max_sessions: usize::from(args.max_sessions),
            max_sessions_per_source: usize::from(args.max_sessions),
            budget: Arc::new(std::sync::Mutex::new(SignBudget::new(
                sign_limits,
                std::time::Instant::now(),
            ))),
        },
        tracker.clone(),
        cancel.clone(),
    ));
    shutdown.await;
    tracing::info!("shutting down");
    cancel.cancel();
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(5), tracker.wait()).await;
    EXIT_OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::KeyRole;
    use crate::identity::cert::{ChainFiles, LoadedIdentity};
    use crate::identity::file::FileKeyStore;
    use bmc_pairing_core::spdm::ChainError;
    use std::time::SystemTime;

    struct Made {
        identity: LoadedIdentity,
        key: PathBuf,
    }

    fn parse(args: &[&str]) -> Result<Parsed<Args>, UsageError> {
        parse_args(
            std::iter::once("bmc-attestation")
                .chain(args.iter().copied())
                .map(std::ffi::OsString::from),
        )
    }

    fn command(args: &[&str]) -> Command {
        match parse(args) {
            Ok(Parsed::Run(Args {
                command: Some(c), ..
            })) => c,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn the_daemon_line_parses_with_its_defaults_and_config_anywhere() {
        match parse(&[]).unwrap() {
            Parsed::Run(a) => {
                assert_eq!(a.config, PathBuf::from(config::DEFAULT_PATH));
                assert_eq!((a.bus, a.check_config, a.command), (None, false, None));
            }
            other => panic!("{other:?}"),
        }
        for line in [
            &["-c", "/a.conf", "respond"][..],
            &["respond", "--config", "/a.conf"],
            &["respond", "--config=/a.conf"],
        ] {
            match parse(line).unwrap() {
                Parsed::Run(a) => assert_eq!(a.config, PathBuf::from("/a.conf"), "{line:?}"),
                other => panic!("{other:?}"),
            }
        }
        assert!(HELP.contains(config::DEFAULT_PATH));
    }

    #[test]
    fn attest_parses_every_option_and_enforces_ranges_and_conflicts() {
        let Command::Attest(a) = command(&["attest", "127.0.0.1"]) else {
            panic!("not attest")
        };
        assert_eq!(a.target, "127.0.0.1");
        assert_eq!((a.framing, a.timeout_ms), (FramingArg::Dsp0287, 20_000));
        assert_eq!((a.pin, a.measurement_policy), (None, None));
        let Command::Attest(a) = command(&[
            "attest",
            "--framing",
            "emu-tcp",
            "[::1]:4194",
            "--trust-anchor",
            "/a.pem",
            "--trust-anchor=/b.pem",
            "--reference-values",
            "/r.json",
            "--measurement-policy",
            "enforce",
            "--timeout-ms",
            "600000",
            "--interface",
            "eth1",
        ]) else {
            panic!("not attest")
        };
        assert_eq!(a.target, "[::1]:4194");
        assert_eq!(a.framing, FramingArg::EmuTcp);
        assert_eq!(a.trust_anchors, [PathBuf::from("/a.pem"), "/b.pem".into()]);
        assert_eq!(a.reference_values, Some("/r.json".into()));
        assert_eq!(a.measurement_policy, Some(PolicyArg::Enforce));
        assert_eq!(
            (a.timeout_ms, a.interface.as_deref()),
            (600_000, Some("eth1"))
        );
        let Command::Attest(a) = command(&["attest", "h", "--timeout-ms", "100"]) else {
            panic!("not attest")
        };
        assert_eq!(a.timeout_ms, 100);
        for bad in [
            &["attest"][..],
            &["attest", "a", "b"],
            &["attest", "a", "--timeout-ms", "99"],
            &["attest", "a", "--timeout-ms", "600001"],
            &["attest", "a", "--framing", "mctp"],
            &["attest", "a", "--measurement-policy", "strict"],
            &["attest", "a", "--pin", "ab", "--trust-anchor", "/a.pem"],
            &["attest", "a", "--bus", "x"],
            &["attest", "a", "--pin"],
            &["bogus"],
            &["--bogus"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            parse(&["attest", "--help"]),
            Ok(Parsed::Help(ATTEST_HELP))
        ));
        assert!(matches!(parse(&["--version"]), Ok(Parsed::Version)));
        assert!(matches!(parse(&["help"]), Ok(Parsed::Help(HELP))));
        assert!(matches!(
            parse(&["help", "attest"]),
            Ok(Parsed::Help(ATTEST_HELP))
        ));
        assert!(matches!(
            parse(&["-c", "/a.conf", "help", "respond"]),
            Ok(Parsed::Help(RESPOND_HELP))
        ));
        for bad in [
            &["help", "bogus"][..],
            &["help", "attest", "respond"],
            &["respond", "help"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn respond_parses_every_option_and_enforces_ranges_and_requirements() {
        let Command::Respond(r) = command(&["respond"]) else {
            panic!("not respond")
        };
        assert_eq!(r.listen, "[::]:4194".parse().unwrap());
        assert_eq!((r.key, r.chain.len(), r.measure.len()), (None, 0, 0));
        assert_eq!(
            (
                r.max_sessions,
                r.signs_per_second,
                r.signs_per_source_per_second
            ),
            (8, 10, 2)
        );
        let Command::Respond(r) = command(&[
            "respond",
            "--listen",
            "127.0.0.1:9",
            "--framing",
            "emu-none",
            "--key",
            "/k.pem",
            "--chain",
            "/root.pem",
            "/leaf.pem",
            "--measure",
            "/m1",
            "--measure",
            "/m2",
            "--max-sessions",
            "256",
            "--signs-per-second",
            "1000",
            "--signs-per-source-per-second",
            "1",
        ]) else {
            panic!("not respond")
        };
        assert_eq!(r.listen, "127.0.0.1:9".parse().unwrap());
        assert_eq!(r.framing, FramingArg::EmuNone);
        assert_eq!(r.key, Some("/k.pem".into()));
        assert_eq!(r.chain, [PathBuf::from("/root.pem"), "/leaf.pem".into()]);
        assert_eq!(r.measure, [PathBuf::from("/m1"), "/m2".into()]);
        assert_eq!(
            (
                r.max_sessions,
                r.signs_per_second,
                r.signs_per_source_per_second
            ),
            (256, 1000, 1)
        );
        for bad in [
            &["respond", "--key", "/k.pem"][..],
            &["respond", "--chain", "/c.pem"],
            &["respond", "--key", "/k.pem", "--chain"],
            &["respond", "--listen", "nowhere"],
            &["respond", "--max-sessions", "0"],
            &["respond", "--max-sessions", "257"],
            &["respond", "--signs-per-second", "1001"],
            &["respond", "--signs-per-source-per-second", "0"],
            &["respond", "extra"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            parse(&["respond", "-h"]),
            Ok(Parsed::Help(RESPOND_HELP))
        ));
    }

    fn identity(dir: &Path, name: &str) -> Made {
        let store = FileKeyStore::new(dir.join("keys"));
        let identity = ChainFiles::new(dir.join("certs"))
            .create(&store, name, SystemTime::now())
            .unwrap();
        Made {
            identity,
            key: store.key_path(KeyRole::Identity),
        }
    }

    /// Writes `certs` as `<dir>/<name>-<i>.der`.
    fn files(dir: &Path, name: &str, certs: &[&[u8]]) -> Vec<PathBuf> {
        std::fs::create_dir_all(dir).unwrap();
        certs
            .iter()
            .enumerate()
            .map(|(i, der)| {
                let p = dir.join(format!("{name}-{i}.der"));
                std::fs::write(&p, der).unwrap();
                p
            })
            .collect()
    }

    #[test]
    fn respond_refuses_at_start_a_chain_that_does_not_chain() {
        let tmp = tempfile::tempdir().unwrap();
        let ours = identity(&tmp.path().join("a"), "bmc-a");
        // Same names, other keys: only the signatures tell the two CAs apart.
        let twin = identity(&tmp.path().join("b"), "bmc-a");
        let now = SystemTime::now();
        let (ca, leaf) = (&ours.identity.ca_der, &ours.identity.leaf_der);

        let dir = tmp.path().join("chains");
        let good = files(&dir, "good", &[ca, leaf]);
        assert!(fixed_identity(&ours.key, &good, now).is_ok());

        // Another CA in front of our leaf: the leaf's signature does not verify under it.
        let foreign_root = files(&dir, "foreign", &[&twin.identity.ca_der, leaf]);
        assert!(matches!(
            fixed_identity(&ours.key, &foreign_root, now),
            Err(FixedIdentityError::NotAChain(ChainError::BadSignature {
                index: 1
            }))
        ));
        // The leaf alone: it is not a self-signed root.
        let leaf_only = files(&dir, "leaf", &[leaf]);
        assert!(matches!(
            fixed_identity(&ours.key, &leaf_only, now),
            Err(FixedIdentityError::NotAChain(ChainError::IssuerMismatch {
                index: 0
            }))
        ));
        // A chain that is not valid yet.
        let long_ago = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        assert!(matches!(
            fixed_identity(&ours.key, &good, long_ago),
            Err(FixedIdentityError::NotAChain(ChainError::NotValidAt { .. }))
        ));
        // Another key than the leaf's: refused before the chain is looked at.
        assert!(matches!(
            fixed_identity(&twin.key, &good, now),
            Err(FixedIdentityError::Mismatch(_))
        ));
        // The message names the flag and the broken link.
        let err = fixed_identity(&ours.key, &foreign_root, now).err().unwrap();
        let text = crate::kit::ErrorChain(&err).to_string();
        assert!(
            text.contains("--chain is not a valid certificate chain")
                && text.contains("certificate 1 signature does not verify"),
            "{text}"
        );
    }
}
