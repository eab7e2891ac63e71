//! Daemon configuration: `/etc/bmc-pairing-manager/bmc-pairing-manager.conf`, JSON.
//!
//! Owns parsing and validation only: serde types with `deny_unknown_fields`, then checks
//! that turn raw values into `Duration`s, addresses and paths. It reads nothing but the file
//! it is given, and never touches sockets or the TPM.
//!
//! A missing file means defaults. Invalid JSON, a wrong type, an unknown key or an
//! out-of-range value is one [`Error`] that names the key (`static_peers[1].port`); the
//! binary prints it and exits with [`EXIT_CONFIG`].

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bmc_pairing_core::budget::{Rate, SignLimits};
use serde::Deserialize;

/// Exit status for a bad configuration.
pub const EXIT_CONFIG: i32 = 2;
/// Default location of the configuration file.
pub const DEFAULT_PATH: &str = "/etc/bmc-pairing-manager/bmc-pairing-manager.conf";
/// Default pairing-channel port (seed 000).
pub const DEFAULT_PORT: u16 = 8090;

/// The largest configuration file either daemon reads.
pub const MAX_CONFIG_LEN: usize = 1024 * 1024;

/// A configuration that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Not a regular file (a FIFO, a device, a directory).
    #[error("{path} is not a regular file")]
    NotRegular {
        /// The config file.
        path: PathBuf,
    },
    /// Larger than [`MAX_CONFIG_LEN`].
    #[error("{path} is larger than {MAX_CONFIG_LEN} bytes")]
    TooLarge {
        /// The config file.
        path: PathBuf,
    },
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The config file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Not JSON, or JSON of the wrong shape; `key` is the path to the offending value.
    #[error("{path}: key `{key}`: {message}")]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// Path to the value, e.g. `static_peers[0].port`, or `.` for the whole document.
        key: String,
        /// What was wrong.
        message: String,
    },
    /// Well-formed, but a value is out of range or inconsistent.
    #[error("{path}: key `{key}`: {message}")]
    Invalid {
        /// The config file.
        path: PathBuf,
        /// The key at fault.
        key: String,
        /// What was wrong.
        message: String,
    },
}

pub use bmc_pairing_core::pairing::{TrustMode, is_valid_name};

/// Where the private keys live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyBackend {
    /// The TPM2 at this TCTI (`device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321`).
    Tpm {
        /// TCTI configuration string.
        tcti: String,
    },
    /// PKCS#8 files under the state directory (development only).
    File,
}

/// Whether pairing requires SPDM attestation of the peer (DESIGN.md §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Attestation {
    /// A peer is pinned only after `bmc-attestation` attested it (SPDM 1.2) and the TLS
    /// identity it presents equals the attested one. The default.
    Required,
    /// No attestation: the identity the operator-named peer presents in a completed TLS
    /// handshake is pinned (first-contact only). For laboratories without the attestation
    /// service; never silent: the daemon logs it at start-up.
    Off,
}

/// Where LLDP neighbours are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LldpSource {
    /// lldpd directly, through its own client (`lldpcli`), for images where
    /// phosphor-networkd does not serve LLDP on D-Bus.
    Lldpd,
    /// phosphor-networkd's `xyz.openbmc_project.LLDP` objects on D-Bus.
    Networkd,
    /// No LLDP: static peers and addresses only.
    None,
}

/// A peer given in the config, for racks where LLDP cannot see past a switch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticPeer {
    /// The name `ProvisionPeer` accepts for it.
    pub name: String,
    /// Its pairing-channel address.
    pub address: IpAddr,
    /// Its pairing-channel port.
    pub port: u16,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Pairing-channel TCP port we listen on.
    pub port: u16,
    /// The inter-BMC network interface: LLDP is read there and, with `bind_to_interface`,
    /// the listener and outgoing connections are bound to it.
    pub interface_id: String,
    /// Bind the pairing channel to `interface_id` (SO_BINDTODEVICE) instead of every interface.
    pub bind_to_interface: bool,
    /// Listen on (and dial from) this address only, instead of every address.
    pub listen_address: Option<IpAddr>,
    /// Whether pairing requires attestation.
    pub attestation: Attestation,
    /// TCP port of the peers' SPDM responders (`bmc-attestation`).
    pub attestation_port: u16,
    /// Deadline for one attestation through `bmc-attestation`.
    pub attestation_timeout: Duration,
    /// Prefix under which certificates live: `<cert_root>/etc/bmc-pairing-manager/certs`.
    pub identity: IdentityConfig,
    /// This BMC's name: certificate CN and SAN, and what it tells peers in `Hello`.
    pub bmc_name: String,
    /// How peers come to be trusted.
    pub trust_mode: TrustMode,
    /// This BMC is the group authority (`"group_authority": true`): it signs its paired,
    /// attested peers' CA keys under its group root and sends them the group list.
    pub group_authority: bool,
    /// Interval between our `Ping`s on an established session.
    pub heartbeat_interval: Duration,
    /// A session with no frame from the peer for this long is dead.
    pub heartbeat_timeout: Duration,
    /// Deadline for TCP connect + TLS handshake + Hello/Alive, on both sides.
    pub handshake_timeout: Duration,
    /// First reconnect delay.
    pub backoff_initial: Duration,
    /// Reconnect delay cap.
    pub backoff_max: Duration,
    /// Upper bound on TLS handshakes in progress on the listener.
    pub max_pending_handshakes: usize,
    /// Upper bound on TLS handshakes in progress from one source address.
    pub max_pending_per_source: usize,
    /// Upper bound on established incoming sessions (one per pinned peer at most).
    pub max_sessions: usize,
    /// TPM signatures unauthenticated connections may cause.
    pub sign_limits: SignLimits,
    /// Unix users whose bus services (LLDP, attestation) we believe.
    pub trusted_service_uids: Vec<u32>,
    /// How often the identity key is test-signed, so a lost key (TPM clear, corrupt blob)
    /// shows on D-Bus even while no handshake happens.
    pub identity_check_interval: Duration,
    /// Peers known by configuration.
    pub static_peers: Vec<StaticPeer>,
    /// Where LLDP neighbours come from.
    pub lldp_source: LldpSource,
    /// lldpd's control socket (`lldpcli -u`) for the lldpd source; `None` for lldpcli's
    /// built-in default (`/run/lldpd.socket` on Debian and OpenBMC).
    pub lldpd_socket: Option<PathBuf>,
    /// Re-attest a pinned peer whose last attestation is older than this; `None` (config
    /// value 0) turns the periodic re-attestation off (a peer's reboot still triggers one).
    pub reattest_interval: Option<Duration>,
    /// File whose content identifies this boot (the kernel's per-boot UUID); its digest is
    /// the boot identifier our `Hello` carries.
    pub boot_id_path: PathBuf,
    /// journald's native-protocol socket; events ([`crate::events`]) are written there as
    /// structured entries when it exists.
    pub journal_socket: PathBuf,
    /// The trust quorum (seed 003).
    pub trust_quorum: TrustQuorumConfig,
}

/// The `trust_quorum` object of the configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustQuorumConfig {
    /// Where derived keys are written: a root-only directory on a tmpfs.
    pub keys_dir: PathBuf,
    /// One derived key per purpose (`<keys_dir>/<purpose>.key`).
    pub purposes: Vec<String>,
    /// Run (argv) once unlocked; empty for nothing.
    pub unlocked_command: Vec<String>,
    /// A member's attestation counts as current for this long.
    pub attestation_max_age: Duration,
    /// How often a locked member asks again.
    pub retry_interval: Duration,
    /// Test hook (debug builds only): flip a byte of every share this BMC releases.
    pub test_tamper_shares: bool,
}

impl Config {
    /// Directory holding the identity chain and trust anchors.
    pub fn cert_dir(&self) -> PathBuf {
        self.identity.cert_dir()
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawConfig {
    port: u16,
    interface_id: String,
    bind_to_interface: bool,
    listen_address: Option<String>,
    attestation: Attestation,
    attestation_port: u16,
    attestation_timeout_ms: u64,
    cert_root: PathBuf,
    bmc_name: Option<String>,
    state_dir: PathBuf,
    key_backend: Option<RawKeyBackend>,
    trust_mode: TrustMode,
    group_authority: bool,
    heartbeat_interval_ms: u64,
    heartbeat_timeout_ms: u64,
    handshake_timeout_ms: u64,
    backoff_initial_ms: u64,
    backoff_max_ms: u64,
    max_pending_handshakes: usize,
    max_pending_per_source: usize,
    max_sessions: usize,
    unauthenticated_signs_per_second: u32,
    unauthenticated_signs_per_source_per_second: u32,
    trusted_service_uids: Vec<u32>,
    identity_check_interval_ms: u64,
    static_peers: Vec<RawStaticPeer>,
    lldp_source: LldpSource,
    lldpd_socket: Option<PathBuf>,
    reattest_interval_s: u64,
    boot_id_path: PathBuf,
    journal_socket: PathBuf,
    trust_quorum: RawTrustQuorum,
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawTrustQuorum {
    keys_dir: PathBuf,
    purposes: Vec<String>,
    unlocked_command: Vec<String>,
    attestation_max_age_s: u64,
    retry_interval_ms: u64,
    test_tamper_shares: bool,
}

/// `trust_quorum.keys_dir` default (a tmpfs on every systemd system).
pub const DEFAULT_QUORUM_KEYS_DIR: &str = "/run/bmc-pairing-manager/trust-quorum";

/// The systemd target reached when the trust quorum unlocks (shipped by the recipe).
pub const QUORUM_UNLOCKED_TARGET: &str = "bmc-trust-quorum-unlocked.target";

impl Default for RawTrustQuorum {
    fn default() -> Self {
        RawTrustQuorum {
            keys_dir: PathBuf::from(DEFAULT_QUORUM_KEYS_DIR),
            purposes: vec!["storage".to_owned()],
            unlocked_command: [
                "/bin/systemctl",
                "start",
                "--no-block",
                QUORUM_UNLOCKED_TARGET,
            ]
            .map(str::to_owned)
            .to_vec(),
            // A day and an hour: the daily re-attestation keeps a member current.
            attestation_max_age_s: 25 * 3600,
            retry_interval_ms: 10_000,
            test_tamper_shares: false,
        }
    }
}

fn trust_quorum(check: &Checker<'_>, raw: RawTrustQuorum) -> Result<TrustQuorumConfig, Error> {
    let key = |k: &str| format!("trust_quorum.{k}");
    check.absolute(&key("keys_dir"), &raw.keys_dir)?;
    if raw.purposes.len() > 16 {
        return Err(check.invalid(&key("purposes"), "at most 16 purposes".into()));
    }
    let mut seen = BTreeSet::new();
    for purpose in &raw.purposes {
        let valid = (1..=32).contains(&purpose.len())
            && purpose
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid || !seen.insert(purpose.as_str()) {
            return Err(check.invalid(
                &key("purposes"),
                format!("{purpose:?}: 1-32 characters of a-z, 0-9 and '-', each once"),
            ));
        }
    }
    if let Some(program) = raw.unlocked_command.first() {
        check.absolute(&key("unlocked_command"), Path::new(program))?;
    }
    if !(60..=30 * 24 * 3600).contains(&raw.attestation_max_age_s) {
        return Err(check.invalid(
            &key("attestation_max_age_s"),
            format!("{} must be 60..=2592000", raw.attestation_max_age_s),
        ));
    }
    let retry_interval = check.ms_in(
        &key("retry_interval_ms"),
        raw.retry_interval_ms,
        100,
        600_000,
    )?;
    if raw.test_tamper_shares && !cfg!(debug_assertions) {
        return Err(check.invalid(
            &key("test_tamper_shares"),
            "a test hook, honoured only by debug builds".into(),
        ));
    }
    Ok(TrustQuorumConfig {
        keys_dir: raw.keys_dir,
        purposes: raw.purposes,
        unlocked_command: raw.unlocked_command,
        attestation_max_age: Duration::from_secs(raw.attestation_max_age_s),
        retry_interval,
        test_tamper_shares: raw.test_tamper_shares,
    })
}

/// `journal_socket` default: systemd-journald's native-protocol socket.
pub const DEFAULT_JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// `reattest_interval_s` default: once a day.
pub const DEFAULT_REATTEST_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// `boot_id_path` default: the kernel's per-boot UUID.
pub const DEFAULT_BOOT_ID_PATH: &str = "/proc/sys/kernel/random/boot_id";

impl Default for RawConfig {
    /// The documented defaults (README, Configuration).
    fn default() -> Self {
        RawConfig {
            port: DEFAULT_PORT,
            interface_id: defaults::INTERFACE.to_owned(),
            bind_to_interface: true,
            listen_address: None,
            attestation: Attestation::Required,
            attestation_port: 4194,
            attestation_timeout_ms: 25_000,
            cert_root: PathBuf::from(defaults::CERT_ROOT),
            bmc_name: None,
            state_dir: PathBuf::from(defaults::STATE_DIR),
            key_backend: None,
            trust_mode: TrustMode::FirstContact,
            group_authority: false,
            heartbeat_interval_ms: 2000,
            heartbeat_timeout_ms: 6000,
            handshake_timeout_ms: 5000,
            backoff_initial_ms: 100,
            backoff_max_ms: 5000,
            max_pending_handshakes: 32,
            max_pending_per_source: 4,
            max_sessions: 64,
            unauthenticated_signs_per_second: defaults::SIGNS_PER_SECOND,
            unauthenticated_signs_per_source_per_second: defaults::SIGNS_PER_SOURCE_PER_SECOND,
            trusted_service_uids: vec![0],
            identity_check_interval_ms: defaults::IDENTITY_CHECK_MS,
            static_peers: Vec::new(),
            lldp_source: LldpSource::Lldpd,
            lldpd_socket: None,
            reattest_interval_s: DEFAULT_REATTEST_INTERVAL.as_secs(),
            boot_id_path: PathBuf::from(DEFAULT_BOOT_ID_PATH),
            journal_socket: PathBuf::from(DEFAULT_JOURNAL_SOCKET),
            trust_quorum: RawTrustQuorum::default(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStaticPeer {
    name: String,
    address: String,
    #[serde(default)]
    port: Option<u16>,
}

/// Defaults of the keys both daemons' configurations share.
pub(crate) mod defaults {
    /// `interface_id`.
    pub(crate) const INTERFACE: &str = "eth1";
    /// `cert_root`.
    pub(crate) const CERT_ROOT: &str = "/";
    /// `state_dir`.
    pub(crate) const STATE_DIR: &str = "/var/lib/bmc-pairing-manager";
    /// `identity_check_interval_ms`.
    pub(crate) const IDENTITY_CHECK_MS: u64 = 30_000;
    /// `unauthenticated_signs_per_second`: a few TPM signatures a second, well below what a
    /// slow TPM can do (10-30), so our own work always has room.
    pub(crate) const SIGNS_PER_SECOND: u32 = 10;
    /// `unauthenticated_signs_per_source_per_second`.
    pub(crate) const SIGNS_PER_SOURCE_PER_SECOND: u32 = 2;
}

/// Most handshakes in progress `max_pending_handshakes` allows; with [`MAX_SESSIONS`] and the
/// diallers it fits the units' `LimitNOFILE=4096`.
pub const MAX_PENDING_HANDSHAKES: usize = 1024;
/// Most established incoming sessions `max_sessions` allows.
pub const MAX_SESSIONS: usize = 1024;

fn default_tcti() -> String {
    "device:/dev/tpmrm0".to_owned()
}

/// The TPM resource-manager device whose presence selects the TPM backend by default.
pub const TPM_DEVICE: &str = "/dev/tpmrm0";

/// Reads and validates the config at `path`; a missing file gives the defaults.
///
/// `hostname` supplies the default `bmc_name`; `tpm_present` says whether
/// [`TPM_DEVICE`] exists (the default key backend depends on it).
///
/// # Errors
/// [`Error`] naming the offending key.
pub fn load(path: &Path, hostname: &str, tpm_present: bool) -> Result<Config, Error> {
    let text = read_text(path)?;
    parse(path, &text, hostname, tpm_present)
}

/// Parses and validates config text; `path` is only used in messages.
///
/// # Errors
/// [`Error`] naming the offending key.
pub fn parse(path: &Path, text: &str, hostname: &str, tpm_present: bool) -> Result<Config, Error> {
    let raw: RawConfig = deserialize(path, text)?;
    validate(path, raw, hostname, tpm_present)
}

fn validate(
    path: &Path,
    raw: RawConfig,
    hostname: &str,
    tpm_present: bool,
) -> Result<Config, Error> {
    let check = Checker::new(path);
    let invalid = |key: &str, message: String| check.invalid(key, message);
    let ms_in = |key: &str, value: u64, lo: u64, hi: u64| check.ms_in(key, value, lo, hi);

    check.port("port", raw.port)?;
    check.interface("interface_id", &raw.interface_id)?;
    if let Some(p) = &raw.lldpd_socket {
        check.absolute("lldpd_socket", p)?;
    }
    check.absolute("boot_id_path", &raw.boot_id_path)?;
    check.absolute("journal_socket", &raw.journal_socket)?;
    if raw.reattest_interval_s != 0 && raw.reattest_interval_s < 60 {
        return Err(invalid(
            "reattest_interval_s",
            format!("{} must be 0 (off) or at least 60", raw.reattest_interval_s),
        ));
    }
    let reattest_interval =
        (raw.reattest_interval_s != 0).then(|| Duration::from_secs(raw.reattest_interval_s));
    let identity = check.identity(raw.cert_root, raw.state_dir, raw.key_backend, tpm_present)?;
    let bmc_name = match raw.bmc_name {
        Some(name) if is_valid_name(&name) => name,
        Some(name) => {
            return Err(invalid(
                "bmc_name",
                format!("{name:?} must be 1-63 characters of letters, digits and '-'"),
            ));
        }
        None => {
            let host = hostname.split('.').next().unwrap_or_default();
            if is_valid_name(host) {
                host.to_owned()
            } else {
                "bmc".to_owned()
            }
        }
    };
    let heartbeat_interval = ms_in(
        "heartbeat_interval_ms",
        raw.heartbeat_interval_ms,
        50,
        60_000,
    )?;
    let heartbeat_timeout = ms_in(
        "heartbeat_timeout_ms",
        raw.heartbeat_timeout_ms,
        100,
        600_000,
    )?;
    // A quiet side pings up to a quarter interval late (the sessions' shared heartbeat
    // grid), and the answer takes a round trip: a timeout under 1.5 intervals would close
    // healthy sessions.
    if heartbeat_timeout < heartbeat_interval * 3 / 2 {
        return Err(invalid(
            "heartbeat_timeout_ms",
            format!(
                "{} must be at least 1.5 times heartbeat_interval_ms ({})",
                raw.heartbeat_timeout_ms, raw.heartbeat_interval_ms
            ),
        ));
    }
    let handshake_timeout = ms_in(
        "handshake_timeout_ms",
        raw.handshake_timeout_ms,
        100,
        120_000,
    )?;
    let backoff_initial = ms_in("backoff_initial_ms", raw.backoff_initial_ms, 10, 60_000)?;
    let backoff_max = ms_in("backoff_max_ms", raw.backoff_max_ms, 10, 3_600_000)?;
    check.not_less(
        ("backoff_max_ms", raw.backoff_max_ms),
        ("backoff_initial_ms", raw.backoff_initial_ms),
    )?;
    let max_pending_handshakes = check.count_in(
        "max_pending_handshakes",
        raw.max_pending_handshakes,
        1,
        MAX_PENDING_HANDSHAKES,
    )?;
    let max_pending_per_source =
        check.count_in("max_pending_per_source", raw.max_pending_per_source, 1, 64)?;
    let max_sessions = check.count_in("max_sessions", raw.max_sessions, 1, MAX_SESSIONS)?;
    let sign_limits = check.sign_limits(
        raw.unauthenticated_signs_per_second,
        raw.unauthenticated_signs_per_source_per_second,
    )?;
    if raw.trusted_service_uids.is_empty() || raw.trusted_service_uids.len() > 16 {
        return Err(invalid(
            "trusted_service_uids",
            "list 1 to 16 user ids (0 is root)".into(),
        ));
    }
    let trusted_service_uids = raw.trusted_service_uids;
    let listen_address = check.listen_address("listen_address", raw.listen_address.as_deref())?;
    check.port("attestation_port", raw.attestation_port)?;
    let attestation_timeout = ms_in(
        "attestation_timeout_ms",
        raw.attestation_timeout_ms,
        1000,
        300_000,
    )?;
    let identity_check_interval = ms_in(
        "identity_check_interval_ms",
        raw.identity_check_interval_ms,
        100,
        3_600_000,
    )?;
    let trust_quorum = trust_quorum(&check, raw.trust_quorum)?;
    let mut names = BTreeSet::new();
    let mut static_peers = Vec::with_capacity(raw.static_peers.len());
    for (i, peer) in raw.static_peers.into_iter().enumerate() {
        let key = |field: &str| format!("static_peers[{i}].{field}");
        if !is_valid_name(&peer.name) || peer.name == "self" || peer.name == "peer" {
            return Err(invalid(
                &key("name"),
                format!(
                    "{:?} must be 1-63 characters of letters, digits and '-', and not \"self\" or \"peer\"",
                    peer.name
                ),
            ));
        }
        if !names.insert(peer.name.clone()) {
            return Err(invalid(
                &key("name"),
                format!("{:?} is listed twice", peer.name),
            ));
        }
        let address: IpAddr = peer.address.parse().map_err(|_| {
            invalid(
                &key("address"),
                format!("{:?} is not an IPv4 or IPv6 address", peer.address),
            )
        })?;
        let port = match peer.port {
            Some(0) => {
                return Err(invalid(
                    &key("port"),
                    "0 is not a usable port (1..=65535)".into(),
                ));
            }
            Some(p) => p,
            None => raw.port,
        };
        static_peers.push(StaticPeer {
            name: peer.name,
            address,
            port,
        });
    }
    Ok(Config {
        port: raw.port,
        interface_id: raw.interface_id,
        bind_to_interface: raw.bind_to_interface,
        listen_address,
        attestation: raw.attestation,
        attestation_port: raw.attestation_port,
        attestation_timeout,
        identity,
        bmc_name,
        trust_mode: raw.trust_mode,
        group_authority: raw.group_authority,
        heartbeat_interval,
        heartbeat_timeout,
        handshake_timeout,
        backoff_initial,
        backoff_max,
        max_pending_handshakes,
        max_pending_per_source,
        max_sessions,
        sign_limits,
        trusted_service_uids,
        identity_check_interval,
        static_peers,
        lldp_source: raw.lldp_source,
        lldpd_socket: raw.lldpd_socket,
        reattest_interval,
        boot_id_path: raw.boot_id_path,
        journal_socket: raw.journal_socket,
        trust_quorum,
    })
}

/// Reads a configuration file; a missing file is the empty object (all defaults).
///
/// # Errors
/// [`Error::Read`] when it exists but cannot be read.
pub(crate) fn read_text(path: &Path) -> Result<String, Error> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let read_err = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    // Non-blocking, so that a FIFO in the config's place cannot hang the open; the type is
    // then checked on the open file itself (no window between check and read).
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok("{}".to_owned()),
        Err(e) => return Err(read_err(e)),
    };
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(Error::NotRegular {
            path: path.to_path_buf(),
        });
    }
    let mut text = String::new();
    let cap = u64::try_from(MAX_CONFIG_LEN).unwrap_or(u64::MAX);
    file.take(cap + 1)
        .read_to_string(&mut text)
        .map_err(read_err)?;
    if text.len() > MAX_CONFIG_LEN {
        return Err(Error::TooLarge {
            path: path.to_path_buf(),
        });
    }
    Ok(text)
}

/// Deserialises a configuration document, naming the key of any type error or unknown key.
///
/// # Errors
/// [`Error::Syntax`]: not a JSON object, malformed JSON (with line and column), or a value
/// of the wrong shape (with its key path, e.g. `static_peers[1].port`).
pub(crate) fn deserialize<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, Error> {
    let syntax = |key: String, err: serde_json::Error| {
        use serde_json::error::Category;
        match err.classify() {
            // Malformed JSON has no meaningful key; its line and column are what help.
            Category::Syntax | Category::Eof | Category::Io => Error::Syntax {
                path: path.to_path_buf(),
                key: ".".to_owned(),
                message: format!("not valid JSON: {err}"),
            },
            Category::Data => {
                let message = err.to_string();
                let message = message
                    .split(" at line ")
                    .next()
                    .unwrap_or(&message)
                    .to_owned();
                Error::Syntax {
                    path: path.to_path_buf(),
                    key,
                    message,
                }
            }
        }
    };
    // serde accepts a JSON array for a struct (fields by position); a config is an object.
    if !text.trim_start().starts_with('{') {
        return Err(Error::Syntax {
            path: path.to_path_buf(),
            key: ".".to_owned(),
            message: "the configuration must be a JSON object".to_owned(),
        });
    }
    let mut de = serde_json::Deserializer::from_str(text);
    let raw: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let key = e.path().to_string();
        syntax(key, e.into_inner())
    })?;
    de.end().map_err(|e| syntax(".".to_owned(), e))?;
    Ok(raw)
}

/// The `key_backend` object as written in either daemon's configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "lowercase")]
pub(crate) enum RawKeyBackend {
    Tpm {
        #[serde(default = "default_tcti")]
        tcti: String,
    },
    // A struct variant, not a unit one: serde ignores extra keys next to the tag of a unit
    // variant, so {"type": "file", "path": "/k"} would be accepted silently.
    File {},
}

/// Where this BMC's identity lives. Both daemons serve one identity, so both configurations
/// have these keys, with the same defaults and checks: `cert_root`, `state_dir`,
/// `key_backend`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityConfig {
    /// Prefix under which certificates live: `<cert_root>/etc/bmc-pairing-manager/certs`.
    pub cert_root: PathBuf,
    /// Where state, pins and key blobs are kept; the keys in `<state_dir>/keys`.
    pub state_dir: PathBuf,
    /// Where the private keys live.
    pub key_backend: KeyBackend,
}

impl IdentityConfig {
    /// Directory holding the identity chain and the trust anchors.
    pub fn cert_dir(&self) -> PathBuf {
        self.cert_root.join("etc/bmc-pairing-manager/certs")
    }

    /// Directory holding the key files or TPM blobs.
    pub fn key_dir(&self) -> PathBuf {
        self.state_dir.join("keys")
    }
}

/// Validation of single values, each error naming its key; shared by both daemons'
/// configurations so that the same key means and checks the same thing in both.
pub(crate) struct Checker<'a> {
    path: &'a Path,
}

impl<'a> Checker<'a> {
    /// Checks for the file at `path` (used in messages only).
    pub(crate) fn new(path: &'a Path) -> Self {
        Checker { path }
    }

    /// An [`Error::Invalid`] for `key`.
    pub(crate) fn invalid(&self, key: &str, message: String) -> Error {
        Error::Invalid {
            path: self.path.to_path_buf(),
            key: key.to_owned(),
            message,
        }
    }

    /// `value` milliseconds, within `lo..=hi`.
    pub(crate) fn ms_in(&self, key: &str, value: u64, lo: u64, hi: u64) -> Result<Duration, Error> {
        if (lo..=hi).contains(&value) {
            Ok(Duration::from_millis(value))
        } else {
            Err(self.invalid(key, format!("{value} is out of range {lo}..={hi}")))
        }
    }

    /// A count within `lo..=hi`.
    pub(crate) fn count_in(
        &self,
        key: &str,
        value: usize,
        lo: usize,
        hi: usize,
    ) -> Result<usize, Error> {
        if (lo..=hi).contains(&value) {
            Ok(value)
        } else {
            Err(self.invalid(key, format!("{value} is out of range {lo}..={hi}")))
        }
    }

    /// The signing budget from its two rates (bursts are twice the rates; pinned peers get a
    /// share as large as the shared one, for themselves).
    pub(crate) fn sign_limits(
        &self,
        per_second: u32,
        per_source: u32,
    ) -> Result<SignLimits, Error> {
        let in_range = |key: &str, v: u32| {
            if (1..=1000).contains(&v) {
                Ok(v)
            } else {
                Err(self.invalid(key, format!("{v} is out of range 1..=1000")))
            }
        };
        let global = in_range("unauthenticated_signs_per_second", per_second)?;
        let source = in_range("unauthenticated_signs_per_source_per_second", per_source)?;
        if source > global {
            return Err(self.invalid(
                "unauthenticated_signs_per_source_per_second",
                format!(
                    "{source} must not be more than unauthenticated_signs_per_second ({global})"
                ),
            ));
        }
        let rate = |per_second: u32| Rate {
            per_second,
            burst: per_second.saturating_mul(2),
        };
        Ok(SignLimits {
            global: rate(global),
            per_source: rate(source),
            pinned: rate(global),
        })
    }

    /// `key` (`value` ms) must not be less than `other` (`other_value` ms).
    pub(crate) fn not_less(
        &self,
        (key, value): (&str, u64),
        (other, other_value): (&str, u64),
    ) -> Result<(), Error> {
        if value < other_value {
            return Err(self.invalid(
                key,
                format!("{value} must not be less than {other} ({other_value})"),
            ));
        }
        Ok(())
    }

    /// A usable TCP port (not 0).
    pub(crate) fn port(&self, key: &str, port: u16) -> Result<u16, Error> {
        if port == 0 {
            Err(self.invalid(key, "0 is not a usable port (1..=65535)".into()))
        } else {
            Ok(port)
        }
    }

    /// An absolute path.
    pub(crate) fn absolute(&self, key: &str, p: &Path) -> Result<(), Error> {
        if p.is_absolute() {
            Ok(())
        } else {
            Err(self.invalid(key, format!("{} must be an absolute path", p.display())))
        }
    }

    /// A network interface name: 1-15 characters, no '/' or white space.
    pub(crate) fn interface(&self, key: &str, iface: &str) -> Result<(), Error> {
        if iface.is_empty()
            || iface.len() > 15
            || iface.contains('/')
            || iface.chars().any(char::is_whitespace)
        {
            return Err(self.invalid(
                key,
                format!(
                    "{iface:?} is not a network interface name (1-15 characters, no '/' or spaces)"
                ),
            ));
        }
        Ok(())
    }

    /// An optional unicast listen address.
    pub(crate) fn listen_address(
        &self,
        key: &str,
        text: Option<&str>,
    ) -> Result<Option<IpAddr>, Error> {
        let Some(text) = text else {
            return Ok(None);
        };
        let ip: IpAddr = text
            .parse()
            .map_err(|_| self.invalid(key, format!("{text:?} is not an IPv4 or IPv6 address")))?;
        if ip.is_multicast() || ip.is_unspecified() {
            return Err(self.invalid(
                key,
                format!("{ip} is not a unicast address; omit the key to listen on all"),
            ));
        }
        Ok(Some(ip))
    }

    /// The identity section ([`IdentityConfig`]).
    pub(crate) fn identity(
        &self,
        cert_root: PathBuf,
        state_dir: PathBuf,
        key_backend: Option<RawKeyBackend>,
        tpm_present: bool,
    ) -> Result<IdentityConfig, Error> {
        self.absolute("cert_root", &cert_root)?;
        self.absolute("state_dir", &state_dir)?;
        Ok(IdentityConfig {
            cert_root,
            state_dir,
            key_backend: self.key_backend(key_backend, tpm_present)?,
        })
    }

    /// The key backend: as configured, else the TPM when `tpm_present`, else an error (never
    /// a silent fallback to keys on disk).
    fn key_backend(
        &self,
        raw: Option<RawKeyBackend>,
        tpm_present: bool,
    ) -> Result<KeyBackend, Error> {
        match raw {
            Some(RawKeyBackend::File {}) => Ok(KeyBackend::File),
            Some(RawKeyBackend::Tpm { tcti }) if tcti.trim().is_empty() => {
                Err(self.invalid("key_backend.tcti", "must not be empty".into()))
            }
            Some(RawKeyBackend::Tpm { tcti }) => Ok(KeyBackend::Tpm { tcti }),
            None if tpm_present => Ok(KeyBackend::Tpm { tcti: default_tcti() }),
            None => Err(self.invalid(
                "key_backend",
                format!(
                    "not set and {TPM_DEVICE} does not exist; configure {{\"type\": \"tpm\", \"tcti\": ...}} \
                     or, for development only, {{\"type\": \"file\"}}"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Config {
        parse(Path::new("t.conf"), text, "bmc-a.example", false).unwrap()
    }

    fn key_of(text: &str) -> String {
        match parse(Path::new("t.conf"), text, "bmc-a", false).unwrap_err() {
            Error::Syntax { key, .. } | Error::Invalid { key, .. } => key,
            other => panic!("not a key error: {other}"),
        }
    }

    #[test]
    fn trust_quorum_keys_are_checked_one_by_one() {
        let c = parse_ok(r#"{"key_backend": {"type": "file"}}"#);
        assert_eq!(
            c.trust_quorum.keys_dir,
            PathBuf::from("/run/bmc-pairing-manager/trust-quorum")
        );
        assert_eq!(c.trust_quorum.purposes, vec!["storage".to_owned()]);
        assert_eq!(
            c.trust_quorum.unlocked_command.last().map(String::as_str),
            Some(QUORUM_UNLOCKED_TARGET)
        );
        let base = r#"{"key_backend": {"type": "file"}, "trust_quorum": "#;
        for (tq, key) in [
            (r#"{"keys_dir": "run/keys"}"#, "trust_quorum.keys_dir"),
            (r#"{"purposes": ["Storage"]}"#, "trust_quorum.purposes"),
            (r#"{"purposes": ["a", "a"]}"#, "trust_quorum.purposes"),
            (r#"{"purposes": [""]}"#, "trust_quorum.purposes"),
            (
                r#"{"unlocked_command": ["systemctl"]}"#,
                "trust_quorum.unlocked_command",
            ),
            (
                r#"{"attestation_max_age_s": 5}"#,
                "trust_quorum.attestation_max_age_s",
            ),
            (
                r#"{"retry_interval_ms": 1}"#,
                "trust_quorum.retry_interval_ms",
            ),
        ] {
            assert_eq!(key_of(&format!("{base}{tq}}}")), key, "{tq}");
        }
        assert!(key_of(&format!("{base}{{\"unknown\": 1}}}}")).starts_with("trust_quorum"));
        let c = parse_ok(&format!(
            "{base}{{\"purposes\": [], \"unlocked_command\": [], \"test_tamper_shares\": true}}}}"
        ));
        // Debug builds (the tests) honour the hook; release builds refuse the key.
        assert!(c.trust_quorum.test_tamper_shares);
        assert!(c.trust_quorum.unlocked_command.is_empty());
    }

    #[test]
    fn defaults_follow_the_seed() {
        let c = parse_ok(r#"{"key_backend": {"type": "file"}}"#);
        assert_eq!(c.port, 8090);
        assert_eq!(c.interface_id, "eth1");
        assert_eq!(c.identity.cert_root, PathBuf::from("/"));
        assert_eq!(c.bmc_name, "bmc-a");
        assert_eq!(c.trust_mode, TrustMode::FirstContact);
        assert_eq!(
            c.cert_dir(),
            PathBuf::from("/etc/bmc-pairing-manager/certs")
        );
    }

    #[test]
    fn seed_example_parses_when_a_tpm_is_present() {
        let c = parse(
            Path::new("t"),
            r#"{"port": 8090, "cert_root": "/", "interface_id": "eth1"}"#,
            "h",
            true,
        )
        .unwrap();
        assert_eq!(
            c.identity.key_backend,
            KeyBackend::Tpm {
                tcti: "device:/dev/tpmrm0".into()
            }
        );
    }

    #[test]
    fn no_tpm_and_no_backend_is_an_error_not_a_silent_file_fallback() {
        assert_eq!(key_of("{}"), "key_backend");
    }

    #[test]
    fn each_bad_value_names_its_key() {
        let fb = r#""key_backend": {"type": "file"}"#;
        let cases = [
            (format!(r#"{{{fb}, "port": "8080"}}"#), "port"),
            (format!(r#"{{{fb}, "port": 70000}}"#), "port"),
            (format!(r#"{{{fb}, "port": 0}}"#), "port"),
            (format!(r#"{{{fb}, "bogus": 1}}"#), "bogus"),
            (
                format!(r#"{{{fb}, "interface_id": "a/b"}}"#),
                "interface_id",
            ),
            (format!(r#"{{{fb}, "state_dir": "rel/dir"}}"#), "state_dir"),
            (format!(r#"{{{fb}, "bmc_name": "no spaces"}}"#), "bmc_name"),
            (format!(r#"{{{fb}, "trust_mode": "tofu"}}"#), "trust_mode"),
            (
                format!(r#"{{{fb}, "heartbeat_interval_ms": 5}}"#),
                "heartbeat_interval_ms",
            ),
            (
                format!(r#"{{{fb}, "heartbeat_interval_ms": 2000, "heartbeat_timeout_ms": 1000}}"#),
                "heartbeat_timeout_ms",
            ),
            (
                format!(r#"{{{fb}, "heartbeat_interval_ms": 2000, "heartbeat_timeout_ms": 2999}}"#),
                "heartbeat_timeout_ms",
            ),
            (
                format!(r#"{{{fb}, "backoff_initial_ms": 500, "backoff_max_ms": 100}}"#),
                "backoff_max_ms",
            ),
            (
                format!(r#"{{{fb}, "max_pending_handshakes": 0}}"#),
                "max_pending_handshakes",
            ),
            (
                format!(r#"{{{fb}, "identity_check_interval_ms": 1}}"#),
                "identity_check_interval_ms",
            ),
            (format!(r#"{{{fb}, "lldp_source": "snmp"}}"#), "lldp_source"),
            (
                format!(r#"{{{fb}, "listen_address": "example"}}"#),
                "listen_address",
            ),
            (
                format!(r#"{{{fb}, "listen_address": "::"}}"#),
                "listen_address",
            ),
            (
                format!(r#"{{{fb}, "attestation": "maybe"}}"#),
                "attestation",
            ),
            (
                format!(r#"{{{fb}, "attestation_port": 0}}"#),
                "attestation_port",
            ),
            (
                format!(r#"{{{fb}, "attestation_timeout_ms": 5}}"#),
                "attestation_timeout_ms",
            ),
            (
                r#"{"key_backend": {"type": "file", "path": "/k"}}"#.to_owned(),
                "key_backend",
            ),
            (
                format!(r#"{{{fb}, "lldpd_socket": "run/lldpd.socket"}}"#),
                "lldpd_socket",
            ),
            (format!(r#"{{{fb}, "lldpd_socket": 5}}"#), "lldpd_socket"),
            (
                format!(
                    r#"{{{fb}, "static_peers": [{{"name": "b", "address": "::1"}}, {{"name": "c", "address": "x"}}]}}"#
                ),
                "static_peers[1].address",
            ),
            (
                format!(
                    r#"{{{fb}, "static_peers": [{{"name": "b", "address": "::1", "port": 0}}]}}"#
                ),
                "static_peers[0].port",
            ),
            (
                format!(r#"{{{fb}, "static_peers": [{{"name": "self", "address": "::1"}}]}}"#),
                "static_peers[0].name",
            ),
            (
                format!(
                    r#"{{{fb}, "static_peers": [{{"name": "b", "address": "::1", "extra": 1}}]}}"#
                ),
                "static_peers[0].extra",
            ),
            (
                r#"{"key_backend": {"type": "hsm"}}"#.to_owned(),
                "key_backend.type",
            ),
            (
                r#"{"key_backend": {"type": "tpm", "tcti": " "}}"#.to_owned(),
                "key_backend.tcti",
            ),
        ];
        for (text, key) in cases {
            assert_eq!(key_of(&text), key, "for {text}");
        }
    }

    #[test]
    fn invalid_json_is_an_error() {
        assert!(matches!(
            parse(Path::new("t"), "{", "h", true),
            Err(Error::Syntax { .. })
        ));
        assert!(matches!(
            parse(Path::new("t"), "[]", "h", true),
            Err(Error::Syntax { .. })
        ));
        assert!(matches!(
            parse(Path::new("t"), "{} {}", "h", true),
            Err(Error::Syntax { .. })
        ));
    }

    #[test]
    fn lldpd_socket_defaults_to_lldpcli_s_own() {
        assert_eq!(
            parse_ok(r#"{"key_backend": {"type": "file"}}"#).lldpd_socket,
            None
        );
        let c = parse_ok(
            r#"{"key_backend": {"type": "file"}, "lldpd_socket": "/run/rig/lldpd.socket"}"#,
        );
        assert_eq!(c.lldpd_socket, Some(PathBuf::from("/run/rig/lldpd.socket")));
    }

    #[test]
    fn static_peer_port_defaults_to_ours() {
        let c = parse_ok(
            r#"{"key_backend": {"type": "file"}, "port": 9000, "static_peers": [{"name": "skiboards", "address": "127.0.0.1"}]}"#,
        );
        assert_eq!(c.static_peers[0].port, 9000);
    }

    #[test]
    fn missing_file_means_defaults() {
        let c = load(Path::new("/nonexistent/x.conf"), "h", true).unwrap();
        assert_eq!(c.port, 8090);
    }
}
