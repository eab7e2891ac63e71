//! Attesting a peer: parsing what a D-Bus client or the operator asks for, connecting,
//! running the SPDM requester ([`crate::spdm::transport::attest`]) under one deadline, and
//! the [`Report`] both the D-Bus service and `bmc-attestation attest` give back.
//!
//! Results are sorted in one place, [`attest`]:
//! - the protocol ran to the end: a [`Report`], trusted or not. A peer that proved its
//!   identity (signatures checked against its chain) but whose measurements failed in
//!   Enforce mode is `authenticated`; a peer whose chain, pin or signatures were refused,
//!   or that broke the protocol, is not, and its report carries no identity;
//! - the peer could not be reached or stopped answering: a [`Failure`], no report.
//!
//! Parsing is pure; only [`attest`] does I/O.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::net::{TcpSocket, TcpStream};

use bmc_pairing_core::pairing::AttestationOutcome;

use crate::identity::Fingerprint;
use crate::kit::ErrorChain;
use crate::spdm::transport::{self, Error, Framing, Timeouts};
use bmc_pairing_core::spdm::requester::Outcome;
use bmc_pairing_core::spdm::{
    self, MeasurementPolicy, QuoteRequest, RequesterConfig, TrustPolicy, Verdict,
};

/// Longest address string accepted.
pub const MAX_ADDRESS_LEN: usize = 128;

/// Input that names no peer or no policy. Nothing is done with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Not `ip`, `ip:port`, `[ipv6]:port` or `[ipv6%scope]:port`.
    #[error("{0:?} is not an address of the form ip, ip:port or [ipv6]:port")]
    Address(String),
    /// A port of 0.
    #[error("port 0 is not usable")]
    Port,
    /// An address no peer can have (unspecified, multicast, broadcast).
    #[error("{0} cannot be a peer address")]
    Unusable(IpAddr),
    /// Not `first-contact`, `anchored` or `pinned:<64 hex characters>`.
    #[error(transparent)]
    Policy(#[from] crate::contract::UnknownPolicy),
}

/// Parses a peer address: `ip` (then `default_port`), `ip:port`, `[ipv6]:port` or
/// `[ipv6%scope-index]:port`. Host names are refused: nothing here resolves names.
///
/// # Errors
/// [`InputError`].
pub fn parse_address(text: &str, default_port: u16) -> Result<SocketAddr, InputError> {
    let bad = || InputError::Address(text.chars().take(MAX_ADDRESS_LEN).collect());
    if text.is_empty() || text.len() > MAX_ADDRESS_LEN || text.trim() != text {
        return Err(bad());
    }
    let addr = match text.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, default_port),
        Err(_) => text.parse::<SocketAddr>().map_err(|_| bad())?,
    };
    if addr.port() == 0 {
        return Err(InputError::Port);
    }
    let ip = addr.ip();
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if ip.is_unspecified() || ip.is_multicast() || broadcast {
        return Err(InputError::Unusable(ip));
    }
    Ok(addr)
}

/// How an attestation is carried out.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Framing on the TCP stream (DSP0287 for BMC peers).
    pub framing: Framing,
    /// Per read/write deadline (`idle` is unused by the requester).
    pub timeouts: Timeouts,
    /// Deadline for the TCP connect.
    pub connect_timeout: Duration,
    /// Deadline for the whole attestation, connect included.
    pub attest_timeout: Duration,
    /// Interface to bind the socket to (SO_BINDTODEVICE), if any.
    pub device: Option<String>,
    /// Reference values and mode.
    pub measurements: MeasurementPolicy,
}

/// What one attestation established. Serialised as the `verdictJson` of the D-Bus reply and
/// the output of `bmc-attestation attest`.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Report {
    /// The peer's IP address.
    pub address: String,
    /// Its SPDM port.
    pub port: u16,
    /// The policy applied (`first-contact`, `anchored`, `pinned:<hex>`).
    pub trust_policy: String,
    /// True for [`AttestationOutcome::Trusted`] and [`AttestationOutcome::TrustedWithFindings`].
    pub trusted: bool,
    /// The outcome.
    pub outcome: AttestationOutcome,
    /// True when the peer proved its identity (both signatures verified under its chain),
    /// whether or not it was then trusted.
    pub authenticated: bool,
    /// SHA-256 of the proven leaf SubjectPublicKeyInfo (absent when not authenticated).
    pub fingerprint: Option<Fingerprint>,
    /// Why it was rejected, when it was.
    pub error: Option<String>,
    /// The full SPDM verdict (absent when not authenticated).
    pub verdict: Option<Verdict>,
}

impl Report {
    /// The proven chain, DER, root first (empty when not authenticated).
    pub fn chain(&self) -> &[Vec<u8>] {
        self.verdict.as_ref().map_or(&[], |v| v.chain.as_slice())
    }

    /// JSON text of the report.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }
}

/// Why no report could be made. The peer's state is unknown; nothing was learnt.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The TCP connection could not be made.
    #[error("cannot connect to {addr}")]
    Connect {
        /// The peer.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The peer closed the connection or the link failed mid-exchange (a responder with no
    /// identity yet closes at once).
    #[error("{addr} closed the connection or the link failed")]
    Lost {
        /// The peer.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: Error,
    },
    /// A deadline passed.
    #[error("{addr} did not answer in time ({what})")]
    Timeout {
        /// The peer.
        addr: SocketAddr,
        /// What was awaited.
        what: &'static str,
    },
    /// A local fault, never caused by the peer.
    #[error("local failure while attesting {addr}")]
    Local {
        /// The peer.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: Error,
    },
}

async fn connect(addr: SocketAddr, device: Option<&str>) -> io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(dev) = device {
        socket2::SockRef::from(&socket).bind_device(Some(dev.as_bytes()))?;
    }
    socket.connect(addr).await
}

/// Connects to `addr` and attests it under `trust` and `settings.measurements`, checking
/// certificate validity at `verify_time`. `policy_text` is recorded in the report.
///
/// # Errors
/// [`Failure`] when the peer cannot be reached, stops answering, or a local fault occurs.
/// Every protocol, trust or measurement refusal is a [`Report`] with `trusted == false`.
///
/// # Cancel safety
/// Cancel safe: dropping the future closes the connection; nothing else is changed.
pub async fn attest(
    addr: SocketAddr,
    policy_text: String,
    trust: TrustPolicy,
    settings: &Settings,
    verify_time: bmc_pairing_core::spdm::ChainTime,
) -> Result<Report, Failure> {
    attest_with(addr, policy_text, trust, settings, verify_time, None).await
}

/// [`attest`], ending with the signed measurements `quote` asks for when it is given
/// (then in [`Verdict::signed_measurements`]).
///
/// # Errors
/// As [`attest`].
///
/// # Cancel safety
/// Cancel safe, as [`attest`].
#[tracing::instrument(name = "attest", skip_all, fields(peer = %addr, policy = %policy_text))]
pub async fn attest_with(
    addr: SocketAddr,
    policy_text: String,
    trust: TrustPolicy,
    settings: &Settings,
    verify_time: bmc_pairing_core::spdm::ChainTime,
    quote: Option<QuoteRequest>,
) -> Result<Report, Failure> {
    let mut config = RequesterConfig::new(trust, settings.measurements.clone(), verify_time);
    config.quote = quote;
    let run = async {
        let mut stream = tokio::time::timeout(
            settings.connect_timeout,
            connect(addr, settings.device.as_deref()),
        )
        .await
        .map_err(|_| Failure::Timeout {
            addr,
            what: "connecting",
        })?
        .map_err(|source| Failure::Connect { addr, source })?;
        Ok::<_, Failure>(
            transport::attest(&mut stream, settings.framing, config, &settings.timeouts).await,
        )
    };
    let result = tokio::time::timeout(settings.attest_timeout, run)
        .await
        .map_err(|_| Failure::Timeout {
            addr,
            what: "the whole attestation",
        })??;
    let report = |outcome, error: Option<String>, verdict: Option<Verdict>| {
        let authenticated = verdict.is_some();
        Report {
            address: addr.ip().to_string(),
            port: addr.port(),
            trust_policy: policy_text.clone(),
            trusted: matches!(
                outcome,
                AttestationOutcome::Trusted | AttestationOutcome::TrustedWithFindings
            ),
            outcome,
            authenticated,
            fingerprint: verdict.as_ref().map(|v| v.leaf_fingerprint),
            error,
            verdict,
        }
    };
    let done = match result {
        Ok(verdict) => {
            let outcome = match verdict.outcome {
                Outcome::Trusted => AttestationOutcome::Trusted,
                Outcome::TrustedWithFindings => AttestationOutcome::TrustedWithFindings,
                Outcome::Rejected => AttestationOutcome::Rejected,
            };
            report(outcome, None, Some(verdict))
        }
        Err(Error::Protocol(spdm::Error::MeasurementsRejected(verdict))) => {
            let e = spdm::Error::MeasurementsRejected(verdict.clone());
            report(
                AttestationOutcome::Rejected,
                Some(ErrorChain(&e).to_string()),
                Some(*verdict),
            )
        }
        Err(Error::Timeout(what)) => return Err(Failure::Timeout { addr, what }),
        Err(source @ (Error::Io(_) | Error::Closed)) => {
            return Err(Failure::Lost { addr, source });
        }
        Err(
            source @ (Error::Panicked
            | Error::Protocol(
                spdm::Error::KeyStore(_)
                | spdm::Error::Config(_)
                | spdm::Error::Reference(_)
                | spdm::Error::ApiMisuse(_),
            )),
        ) => return Err(Failure::Local { addr, source }),
        Err(e) => report(
            AttestationOutcome::Rejected,
            Some(ErrorChain(&e).to_string()),
            None,
        ),
    };
    match done.outcome {
        AttestationOutcome::Rejected => tracing::warn!(
            error = done.error.as_deref().unwrap_or_default(),
            "peer rejected"
        ),
        outcome => tracing::info!(
            outcome = outcome.as_str(),
            fingerprint = %done.fingerprint.map(|f| f.to_hex()).unwrap_or_default(),
            "peer attested"
        ),
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_or_are_refused() {
        let ok = [
            ("127.0.0.1", "127.0.0.1:4194"),
            ("127.0.0.1:99", "127.0.0.1:99"),
            ("::1", "[::1]:4194"),
            ("[::1]:99", "[::1]:99"),
            ("fd00::2", "[fd00::2]:4194"),
            ("[fe80::1%2]:99", "[fe80::1%2]:99"),
        ];
        for (text, want) in ok {
            assert_eq!(
                parse_address(text, 4194).unwrap().to_string(),
                want,
                "{text}"
            );
        }
        let bad = [
            "",
            " 127.0.0.1",
            "127.0.0.1 ",
            "localhost",
            "bmc-b:4194",
            "127.0.0.1:",
            "127.0.0.1:70000",
            "[::1]",
            "1.2.3",
            "http://127.0.0.1",
        ];
        for text in bad {
            assert!(
                matches!(parse_address(text, 4194), Err(InputError::Address(_))),
                "{text}"
            );
        }
        assert_eq!(parse_address("127.0.0.1:0", 1), Err(InputError::Port));
        for text in [
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
            "[ff02::1]:5",
        ] {
            assert!(
                matches!(parse_address(text, 4194), Err(InputError::Unusable(_))),
                "{text}"
            );
        }
        assert!(parse_address(&"1".repeat(MAX_ADDRESS_LEN + 1), 1).is_err());
    }
}
