//! Harness for running our SPDM ends against DMTF's reference implementation (libspdm's
//! spdm-emu and SPDM-Responder-Validator), used by `tests/spdm_interop.rs`,
//! `tests/spdm_validator.rs` and the benchmark.
//!
//! - [`reference`]: the DMTF build (made by `scripts/dmtf-spdm.sh`, cached under
//!   `target/dmtf-spdm`), private key folders for the emulators, and the emulators and the
//!   validator as processes, with the reference requester's checks read from its debug log.
//! - [`ours`]: `bmc-attestation respond` and `attest` as processes, and the identities they
//!   serve: the daemon's own (TPM key in swtpm, chain as `ProvisionPeer("self")` makes it) and
//!   a P-384 one made here.
//! - [`relay`]: a TCP relay in front of a responder that ACKs at once (the emulators write
//!   each header field with its own `send()`, so Nagle plus delayed ACKs would cost ~40 ms
//!   per message) and can tamper with chosen responses.
//! - [`process`]: children killed by PID when dropped, their output in a file, and
//!   listening-socket checks.
//!
//! Every missing part (the DMTF build, its build tools, swtpm) fails the test that needs it
//! with a message saying how to get it; nothing is skipped.

pub mod ours;
pub mod process;
pub mod reference;
pub mod relay;

/// The two curves both ends support, each with the hash it is paired with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    /// ECDSA P-256 with SHA-256.
    P256,
    /// ECDSA P-384 with SHA-384.
    P384,
}

impl Curve {
    /// Both curves, in the order the tests run them.
    pub const ALL: [Curve; 2] = [Curve::P256, Curve::P384];

    /// The folder of libspdm's sample keys for this curve.
    pub fn key_dir(self) -> &'static str {
        match self {
            Curve::P256 => "ecp256",
            Curve::P384 => "ecp384",
        }
    }

    /// The emulators' algorithm arguments (SPDM 1.2, this curve and its hash for signatures
    /// and measurements).
    pub fn emu_args(self) -> [&'static str; 8] {
        let (asym, hash) = match self {
            Curve::P256 => ("ECDSA_P256", "SHA_256"),
            Curve::P384 => ("ECDSA_P384", "SHA_384"),
        };
        [
            "--ver",
            "1.2",
            "--asym",
            asym,
            "--hash",
            hash,
            "--meas_hash",
            hash,
        ]
    }

    /// The name our requester's report gives the curve (`algorithms.base_asym`).
    pub fn report_name(self) -> &'static str {
        match self {
            Curve::P256 => "EcdsaP256",
            Curve::P384 => "EcdsaP384",
        }
    }
}

/// The emulators' own socket protocols (a 12-byte platform header around each message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmuTransport {
    /// `--trans TCP`: a DSP0287 frame inside the platform header.
    Tcp,
    /// `--trans NONE`: the bare SPDM message inside the platform header.
    None,
}

impl EmuTransport {
    /// Both, in the order the tests run them.
    pub const ALL: [EmuTransport; 2] = [EmuTransport::Tcp, EmuTransport::None];

    /// The emulators' `--trans` value.
    pub fn emu_arg(self) -> &'static str {
        match self {
            EmuTransport::Tcp => "TCP",
            EmuTransport::None => "NONE",
        }
    }

    /// Capability flags the emulators need beyond the test's own on this transport. On NONE
    /// (no transport header) libspdm's DataTransferSize, its whole receive buffer, exceeds
    /// its MaxSPDMmsgSize unless CHUNK_CAP is set, and `libspdm_check_context` refuses to
    /// start. CHUNK_CAP only allows chunking: every message of these runs fits one transfer,
    /// and our side, which does not chunk, never advertises it.
    pub fn extra_caps(self) -> &'static str {
        match self {
            EmuTransport::Tcp => "",
            EmuTransport::None => ",CHUNK",
        }
    }

    /// Our `--framing` value.
    pub fn framing_arg(self) -> &'static str {
        match self {
            EmuTransport::Tcp => "emu-tcp",
            EmuTransport::None => "emu-none",
        }
    }
}
