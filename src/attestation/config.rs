//! `bmc-attestation` configuration: `/etc/bmc-pairing-manager/bmc-attestation.conf`, JSON.
//!
//! Owns parsing and validation only, in the style of [`crate::config`]: serde types with
//! `deny_unknown_fields`, then checks that turn raw values into `Duration`s and paths. It
//! reads nothing but the file it is given (the reference-values file it names is read by the
//! daemon, see [`super::load_measurement_policy`]), and never touches sockets or the TPM.
//!
//! The identity keys (`cert_root`, `state_dir`, `key_backend`) must be the same values as in
//! the pairing manager's configuration: both daemons serve one identity, the chain in
//! `<cert_root>/etc/bmc-pairing-manager/certs` and its keys in `<state_dir>/keys`. As there,
//! a missing `key_backend` means the TPM when `/dev/tpmrm0` exists and is an error otherwise:
//! never a silent fallback to key files.
//!
//! A missing file means defaults. Invalid JSON, a wrong type, an unknown key or an
//! out-of-range value is one [`Error`] that names the key; the binary prints it and exits
//! with [`EXIT_CONFIG`].
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `port` | 4194 | SPDM responder TCP port (DSP0287); also the port of a peer address given without one |
//! | `interface_id` | `"eth1"` | inter-BMC interface |
//! | `bind_to_interface` | true | SO_BINDTODEVICE the listener and outgoing attestations to `interface_id` |
//! | `listen_address` | all addresses | listen on this address only |
//! | `cert_root` | `"/"` | identity chain in `<cert_root>/etc/bmc-pairing-manager/certs` (same as the pairing manager) |
//! | `state_dir` | `"/var/lib/bmc-pairing-manager"` | keys in `<state_dir>/keys` (same as the pairing manager) |
//! | `key_backend` | TPM if `/dev/tpmrm0` exists, else an error | `{"type":"tpm","tcti":"device:/dev/tpmrm0"}` or `{"type":"file"}` |
//! | `measured_files` | bmc-pairing-manager, bmc-attestation binaries, `/etc/os-release` | absolute paths, at most 63, measurement indices 1.. |
//! | `firmware_image` | none | absolute path, measurement index 64 |
//! | `pcrs` | 0-7 | SHA-256 PCRs reported as indices 128 + n (TPM backend only) |
//! | `reference_values` | none | JSON reference values for peers ([`crate::spdm::appraisal`]) |
//! | `measurement_policy` | `"audit"` | `off`, `audit` or `enforce` (needs `reference_values`) |
//! | `trust_anchors_dir` | `<cert_root>/etc/bmc-pairing-manager/certs/anchors` | roots for `anchored`: `*.der`, `*.pem`, `*.crt`, `*.cer` |
//! | `connect_timeout_ms` | 3000 | TCP connect of an outgoing attestation |
//! | `io_timeout_ms` | 5000 | each SPDM read or write, both roles |
//! | `first_request_timeout_ms` | 2000 | responder wait for a new connection's first byte; also how long a session may go without a request before a newcomer may take its place |
//! | `idle_timeout_ms` | 5000 | responder wait for the next request (at least the first-request wait) |
//! | `session_timeout_ms` | 30000 | one whole responder session |
//! | `attest_timeout_ms` | 20000 | one whole outgoing attestation |
//! | `max_sessions` | 8 | concurrent responder sessions (1..=256); connections wait for their first byte in a room of 32 × this many places (at most 1024), where a newcomer displaces the oldest of its own (if that one has waited 100 ms; else the newcomer is closed) or the most crowded address; when the room is full of connections younger than 100 ms, the listener pauses until the oldest is that old |
//! | `max_sessions_per_source` | 2 | responder sessions, and waiting places, of one address |
//! | `unauthenticated_signs_per_second` | 10 | TPM signatures all requesters together may cause (burst twice that) |
//! | `unauthenticated_signs_per_source_per_second` | 2 | TPM signatures one requester address may cause (burst twice that) |
//! | `max_attestations` | 4 | concurrent outgoing attestations (1..=64) |
//! | `identity_check_interval_ms` | 30000 | how often the responder re-reads the identity when idle |
//! | `tpm_protects` | none | this BMC's own `Inventory.Item` path (platform-specific, e.g. `/xyz/openbmc_project/inventory/system/chassis/motherboard/bmc`): the TPM's TrustedComponent object then has the upstream `protecting` association to it (TPM backend only) |

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::config::{self, RawKeyBackend, defaults};
pub use crate::config::{EXIT_CONFIG, Error, IdentityConfig, KeyBackend, TPM_DEVICE};
use bmc_pairing_core::budget::SignLimits;
use bmc_pairing_core::spdm::PolicyMode;

/// Where `tpm_protects` must point: an inventory item.
const INVENTORY_PREFIX: &str = "/xyz/openbmc_project/inventory/";
/// Default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/bmc-pairing-manager/bmc-attestation.conf";
/// Most files `measured_files` may list (they take measurement indices 1..=63).
pub const MAX_MEASURED_FILES: usize = 63;
/// Number of PCRs of a TPM 2.0 bank (valid `pcrs` entries are 0..24).
pub const PCR_COUNT: u8 = crate::identity::tpm::PCR_COUNT;
/// Most responder sessions `max_sessions` allows. With the waiting room
/// ([`super::responder::waiting_places`]) it fits the unit's `LimitNOFILE=4096`.
pub const MAX_SESSIONS: usize = 256;

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// TCP port of the SPDM responder (DSP0287 framing); also the port assumed for a peer
    /// address given without one.
    pub port: u16,
    /// The inter-BMC network interface.
    pub interface_id: String,
    /// Bind the responder and outgoing attestations to `interface_id` (SO_BINDTODEVICE).
    pub bind_to_interface: bool,
    /// Listen on this address only, instead of every address.
    pub listen_address: Option<std::net::IpAddr>,
    /// Where the identity lives (the same values as in the pairing manager's configuration).
    pub identity: IdentityConfig,
    /// Files whose SHA-256 this BMC reports, measurement indices 1, 2, ... in order.
    pub measured_files: Vec<PathBuf>,
    /// The firmware image reported as measurement index 64, if configured.
    pub firmware_image: Option<PathBuf>,
    /// SHA-256 PCRs reported as indices 128 + n (TPM backend only).
    pub pcrs: Vec<u8>,
    /// Reference values peers' measurements are appraised against.
    pub reference_values: Option<PathBuf>,
    /// What a measurement mismatch of a peer does.
    pub measurement_policy: PolicyMode,
    /// Our own trust store for `anchored` attestations (DER or PEM certificates).
    pub trust_anchors_dir: PathBuf,
    /// Deadline for the TCP connect of an outgoing attestation.
    pub connect_timeout: Duration,
    /// Deadline for each SPDM read and write, both roles.
    pub io_timeout: Duration,
    /// How long the responder waits for a requester's next request.
    pub idle_timeout: Duration,
    /// Upper bound on one whole responder session.
    pub session_timeout: Duration,
    /// Upper bound on one whole outgoing attestation (connect to signed MEASUREMENTS).
    pub attest_timeout: Duration,
    /// Concurrent responder sessions; the listener takes a slot before it accepts.
    pub max_sessions: usize,
    /// Concurrent outgoing attestations; further D-Bus requests wait for a slot.
    pub max_attestations: usize,
    /// TPM signatures requesters may cause (every requester is unauthenticated: SPDM here
    /// has no mutual authentication).
    pub sign_limits: SignLimits,
    /// How long a new connection may stay silent before its first request.
    pub first_request_timeout: Duration,
    /// Connections from one source address at once.
    pub max_sessions_per_source: usize,
    /// How often the responder re-reads the identity chain when nothing connects.
    pub identity_check_interval: Duration,
    /// This BMC's own inventory item, which the TPM protects (upstream `protecting`).
    pub tpm_protects: Option<String>,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    port: u16,
    interface_id: String,
    bind_to_interface: bool,
    listen_address: Option<String>,
    cert_root: PathBuf,
    state_dir: PathBuf,
    key_backend: Option<RawKeyBackend>,
    measured_files: Vec<PathBuf>,
    firmware_image: Option<PathBuf>,
    pcrs: Vec<u8>,
    reference_values: Option<PathBuf>,
    measurement_policy: PolicyMode,
    trust_anchors_dir: Option<PathBuf>,
    connect_timeout_ms: u64,
    io_timeout_ms: u64,
    idle_timeout_ms: u64,
    session_timeout_ms: u64,
    attest_timeout_ms: u64,
    max_sessions: usize,
    max_attestations: usize,
    identity_check_interval_ms: u64,
    unauthenticated_signs_per_second: u32,
    unauthenticated_signs_per_source_per_second: u32,
    first_request_timeout_ms: u64,
    max_sessions_per_source: usize,
    tpm_protects: Option<String>,
}

impl Default for RawConfig {
    /// The documented defaults (the table in the module docs).
    fn default() -> Self {
        RawConfig {
            port: crate::spdm::transport::DEFAULT_PORT,
            interface_id: defaults::INTERFACE.to_owned(),
            bind_to_interface: true,
            listen_address: None,
            cert_root: PathBuf::from(defaults::CERT_ROOT),
            state_dir: PathBuf::from(defaults::STATE_DIR),
            key_backend: None,
            measured_files: default_measured_files(),
            firmware_image: None,
            pcrs: (0..8).collect(),
            reference_values: None,
            measurement_policy: PolicyMode::Audit,
            trust_anchors_dir: None,
            connect_timeout_ms: 3000,
            io_timeout_ms: 5000,
            idle_timeout_ms: 5000,
            session_timeout_ms: 30_000,
            attest_timeout_ms: 20_000,
            max_sessions: 8,
            max_attestations: 4,
            identity_check_interval_ms: defaults::IDENTITY_CHECK_MS,
            unauthenticated_signs_per_second: defaults::SIGNS_PER_SECOND,
            unauthenticated_signs_per_source_per_second: defaults::SIGNS_PER_SOURCE_PER_SECOND,
            first_request_timeout_ms: 2000,
            max_sessions_per_source: 2,
            tpm_protects: None,
        }
    }
}

fn default_measured_files() -> Vec<PathBuf> {
    [
        "/usr/bin/bmc-pairing-manager",
        "/usr/bin/bmc-attestation",
        "/etc/os-release",
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// Reads and validates the config at `path`; a missing file gives the defaults.
/// `tpm_present` says whether [`TPM_DEVICE`] exists (the default key backend depends on it).
///
/// # Errors
/// [`Error`] naming the offending key.
pub fn load(path: &Path, tpm_present: bool) -> Result<Config, Error> {
    let text = config::read_text(path)?;
    parse(path, &text, tpm_present)
}

/// Parses and validates config text; `path` is only used in messages.
///
/// # Errors
/// [`Error`] naming the offending key.
pub fn parse(path: &Path, text: &str, tpm_present: bool) -> Result<Config, Error> {
    let raw: RawConfig = config::deserialize(path, text)?;
    validate(path, raw, tpm_present)
}

fn validate(path: &Path, raw: RawConfig, tpm_present: bool) -> Result<Config, Error> {
    let check = config::Checker::new(path);
    let invalid = |key: &str, message: String| check.invalid(key, message);
    let ms_in = |key: &str, value: u64, lo: u64, hi: u64| check.ms_in(key, value, lo, hi);
    let absolute = |key: &str, p: &Path| check.absolute(key, p);

    check.port("port", raw.port)?;
    check.interface("interface_id", &raw.interface_id)?;
    let listen_address = check.listen_address("listen_address", raw.listen_address.as_deref())?;
    let identity = check.identity(raw.cert_root, raw.state_dir, raw.key_backend, tpm_present)?;
    if raw.measured_files.len() > MAX_MEASURED_FILES {
        return Err(invalid(
            "measured_files",
            format!(
                "{} files listed, at most {MAX_MEASURED_FILES}",
                raw.measured_files.len()
            ),
        ));
    }
    let mut seen = BTreeSet::new();
    for (i, f) in raw.measured_files.iter().enumerate() {
        let key = format!("measured_files[{i}]");
        absolute(&key, f)?;
        if !seen.insert(f.clone()) {
            return Err(invalid(&key, format!("{} is listed twice", f.display())));
        }
    }
    if let Some(f) = &raw.firmware_image {
        absolute("firmware_image", f)?;
    }
    let mut pcr_set = BTreeSet::new();
    for (i, &pcr) in raw.pcrs.iter().enumerate() {
        let key = format!("pcrs[{i}]");
        if pcr >= PCR_COUNT {
            return Err(invalid(
                &key,
                format!("{pcr} is not a PCR index (0..{PCR_COUNT})"),
            ));
        }
        if !pcr_set.insert(pcr) {
            return Err(invalid(&key, format!("PCR {pcr} is listed twice")));
        }
    }
    if let Some(f) = &raw.reference_values {
        absolute("reference_values", f)?;
    }
    if raw.measurement_policy == PolicyMode::Enforce && raw.reference_values.is_none() {
        return Err(invalid(
            "measurement_policy",
            "\"enforce\" needs reference_values to enforce".into(),
        ));
    }
    let trust_anchors_dir = match raw.trust_anchors_dir {
        Some(dir) => {
            absolute("trust_anchors_dir", &dir)?;
            dir
        }
        None => identity.cert_dir().join("anchors"),
    };
    let connect_timeout = ms_in("connect_timeout_ms", raw.connect_timeout_ms, 50, 60_000)?;
    let io_timeout = ms_in("io_timeout_ms", raw.io_timeout_ms, 50, 60_000)?;
    let idle_timeout = ms_in("idle_timeout_ms", raw.idle_timeout_ms, 100, 600_000)?;
    let session_timeout = ms_in("session_timeout_ms", raw.session_timeout_ms, 100, 600_000)?;
    let attest_timeout = ms_in("attest_timeout_ms", raw.attest_timeout_ms, 100, 600_000)?;
    for (key, value) in [
        ("attest_timeout_ms", raw.attest_timeout_ms),
        ("session_timeout_ms", raw.session_timeout_ms),
    ] {
        check.not_less((key, value), ("io_timeout_ms", raw.io_timeout_ms))?;
    }
    let first_request_timeout = ms_in(
        "first_request_timeout_ms",
        raw.first_request_timeout_ms,
        50,
        60_000,
    )?;
    // Coherent deadlines: a silent connection is dropped before an idle one, an idle one
    // before a whole session ends; a requester (ours included) sends its next request as soon
    // as a response arrives, so the idle deadline never needs to exceed its io timeout.
    check.not_less(
        ("idle_timeout_ms", raw.idle_timeout_ms),
        ("first_request_timeout_ms", raw.first_request_timeout_ms),
    )?;
    check.not_less(
        ("session_timeout_ms", raw.session_timeout_ms),
        ("idle_timeout_ms", raw.idle_timeout_ms),
    )?;
    let max_sessions = check.count_in("max_sessions", raw.max_sessions, 1, MAX_SESSIONS)?;
    let max_sessions_per_source = check.count_in(
        "max_sessions_per_source",
        raw.max_sessions_per_source,
        1,
        max_sessions,
    )?;
    let max_attestations = check.count_in("max_attestations", raw.max_attestations, 1, 64)?;
    let sign_limits = check.sign_limits(
        raw.unauthenticated_signs_per_second,
        raw.unauthenticated_signs_per_source_per_second,
    )?;
    let identity_check_interval = ms_in(
        "identity_check_interval_ms",
        raw.identity_check_interval_ms,
        100,
        3_600_000,
    )?;
    if let Some(item) = &raw.tpm_protects {
        let valid = item.starts_with(INVENTORY_PREFIX)
            && zbus::zvariant::ObjectPath::try_from(item.as_str()).is_ok();
        if !valid {
            return Err(invalid(
                "tpm_protects",
                format!("{item:?} is not an object path under {INVENTORY_PREFIX}"),
            ));
        }
    }
    Ok(Config {
        port: raw.port,
        interface_id: raw.interface_id,
        bind_to_interface: raw.bind_to_interface,
        listen_address,
        identity,
        measured_files: raw.measured_files,
        firmware_image: raw.firmware_image,
        pcrs: raw.pcrs,
        reference_values: raw.reference_values,
        measurement_policy: raw.measurement_policy,
        trust_anchors_dir,
        connect_timeout,
        io_timeout,
        idle_timeout,
        session_timeout,
        attest_timeout,
        max_sessions,
        max_attestations,
        sign_limits,
        first_request_timeout,
        max_sessions_per_source,
        identity_check_interval,
        tpm_protects: raw.tpm_protects,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Config {
        parse(Path::new("t.conf"), text, false).unwrap()
    }

    fn key_of(text: &str) -> String {
        match parse(Path::new("t.conf"), text, false).unwrap_err() {
            Error::Syntax { key, .. } | Error::Invalid { key, .. } => key,
            other => panic!("not a key error: {other}"),
        }
    }

    #[test]
    fn defaults_match_the_pairing_manager_and_the_design() {
        let c = parse_ok(r#"{"key_backend": {"type": "file"}}"#);
        assert_eq!(c.port, 4194);
        assert_eq!(c.interface_id, "eth1");
        assert!(c.bind_to_interface);
        assert_eq!(
            c.identity.cert_dir(),
            PathBuf::from("/etc/bmc-pairing-manager/certs")
        );
        assert_eq!(
            c.identity.key_dir(),
            PathBuf::from("/var/lib/bmc-pairing-manager/keys")
        );
        assert_eq!(
            c.trust_anchors_dir,
            PathBuf::from("/etc/bmc-pairing-manager/certs/anchors")
        );
        assert_eq!(c.measured_files.len(), 3);
        assert_eq!(c.pcrs, (0..8).collect::<Vec<u8>>());
        assert_eq!(c.measurement_policy, PolicyMode::Audit);
        assert_eq!(c.firmware_image, None);
    }

    #[test]
    fn anchors_follow_cert_root_unless_set() {
        let c = parse_ok(r#"{"key_backend": {"type": "file"}, "cert_root": "/tmp/r"}"#);
        assert_eq!(
            c.trust_anchors_dir,
            PathBuf::from("/tmp/r/etc/bmc-pairing-manager/certs/anchors")
        );
        let c = parse_ok(r#"{"key_backend": {"type": "file"}, "trust_anchors_dir": "/a"}"#);
        assert_eq!(c.trust_anchors_dir, PathBuf::from("/a"));
    }

    #[test]
    fn tpm_is_the_default_only_when_present() {
        let c = parse(Path::new("t"), "{}", true).unwrap();
        assert_eq!(
            c.identity.key_backend,
            KeyBackend::Tpm {
                tcti: "device:/dev/tpmrm0".into()
            }
        );
        assert_eq!(key_of("{}"), "key_backend");
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let fb = r#""key_backend": {"type": "file"}"#;
        let cases = [
            (format!(r#"{{{fb}, "port": "4194"}}"#), "port"),
            (format!(r#"{{{fb}, "port": 0}}"#), "port"),
            (format!(r#"{{{fb}, "bogus": 1}}"#), "bogus"),
            (format!(r#"{{{fb}, "interface_id": ""}}"#), "interface_id"),
            (
                format!(r#"{{{fb}, "listen_address": "nowhere"}}"#),
                "listen_address",
            ),
            (format!(r#"{{{fb}, "cert_root": "rel"}}"#), "cert_root"),
            (format!(r#"{{{fb}, "state_dir": "rel"}}"#), "state_dir"),
            (
                format!(r#"{{{fb}, "measured_files": ["/a", "b"]}}"#),
                "measured_files[1]",
            ),
            (
                format!(r#"{{{fb}, "measured_files": ["/a", "/a"]}}"#),
                "measured_files[1]",
            ),
            (
                format!(r#"{{{fb}, "measured_files": "/a"}}"#),
                "measured_files",
            ),
            (
                format!(r#"{{{fb}, "firmware_image": "x"}}"#),
                "firmware_image",
            ),
            (
                format!(r#"{{{fb}, "tpm_protects": "/xyz/openbmc_project/bmc"}}"#),
                "tpm_protects",
            ),
            (
                format!(r#"{{{fb}, "tpm_protects": "/xyz/openbmc_project/inventory/a b"}}"#),
                "tpm_protects",
            ),
            (format!(r#"{{{fb}, "pcrs": [0, 24]}}"#), "pcrs[1]"),
            (format!(r#"{{{fb}, "pcrs": [3, 3]}}"#), "pcrs[1]"),
            (format!(r#"{{{fb}, "pcrs": [-1]}}"#), "pcrs[0]"),
            (
                format!(r#"{{{fb}, "reference_values": "r.json"}}"#),
                "reference_values",
            ),
            (
                format!(r#"{{{fb}, "measurement_policy": "strict"}}"#),
                "measurement_policy",
            ),
            (
                format!(r#"{{{fb}, "measurement_policy": "enforce"}}"#),
                "measurement_policy",
            ),
            (
                format!(r#"{{{fb}, "trust_anchors_dir": "anchors"}}"#),
                "trust_anchors_dir",
            ),
            (
                format!(r#"{{{fb}, "connect_timeout_ms": 1}}"#),
                "connect_timeout_ms",
            ),
            (format!(r#"{{{fb}, "io_timeout_ms": 0}}"#), "io_timeout_ms"),
            (
                format!(r#"{{{fb}, "idle_timeout_ms": 99999999}}"#),
                "idle_timeout_ms",
            ),
            (
                format!(r#"{{{fb}, "attest_timeout_ms": 1000, "io_timeout_ms": 2000}}"#),
                "attest_timeout_ms",
            ),
            (
                format!(r#"{{{fb}, "session_timeout_ms": 1000, "io_timeout_ms": 2000}}"#),
                "session_timeout_ms",
            ),
            (format!(r#"{{{fb}, "max_sessions": 0}}"#), "max_sessions"),
            (
                format!(r#"{{{fb}, "max_attestations": 65}}"#),
                "max_attestations",
            ),
            (
                format!(r#"{{{fb}, "identity_check_interval_ms": 5}}"#),
                "identity_check_interval_ms",
            ),
            (
                r#"{"key_backend": {"type": "hsm"}}"#.to_owned(),
                "key_backend.type",
            ),
            (
                r#"{"key_backend": {"type": "tpm", "tcti": ""}}"#.to_owned(),
                "key_backend.tcti",
            ),
            (
                // Internally tagged: serde reports the enclosing key (message: unknown field).
                r#"{"key_backend": {"type": "file", "path": "/k"}}"#.to_owned(),
                "key_backend",
            ),
            ("[]".to_owned(), "."),
            ("{".to_owned(), "."),
            (format!(r#"{{{fb}}} {{}}"#), "."),
        ];
        for (text, key) in cases {
            let r = parse(Path::new("t.conf"), &text, false);
            assert!(r.is_err(), "accepted: {text}");
            assert_eq!(key_of(&text), key, "for {text}");
        }
    }

    #[test]
    fn too_many_measured_files_is_an_error() {
        let files: Vec<String> = (0..=MAX_MEASURED_FILES).map(|i| format!("/f{i}")).collect();
        let text = serde_json::json!({"key_backend": {"type": "file"}, "measured_files": files})
            .to_string();
        assert_eq!(key_of(&text), "measured_files");
    }

    #[test]
    fn missing_file_means_defaults() {
        let c = load(Path::new("/nonexistent/bmc-attestation.conf"), true).unwrap();
        assert_eq!(c.port, 4194);
    }
}
