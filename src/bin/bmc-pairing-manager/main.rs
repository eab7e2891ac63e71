//! One multi-call binary for both daemons (README "Size on flash"): std, tokio, zbus and
//! rustls are on flash once. It runs as
//! - `bmc-attestation` when called by that name (the recipe installs a symbolic link), or as
//!   `bmc-pairing-manager attestation [ARGS]`;
//! - `bmc-pairing-manager` otherwise.

mod attestation;
mod pairing;

use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::ExitCode;

/// The name that selects the attestation daemon, as program name or first argument.
const ATTESTATION: &str = "bmc-attestation";
/// The first argument that selects the attestation daemon under the pairing manager's name.
const ATTESTATION_SUBCOMMAND: &str = "attestation";

/// Which daemon `args` (program name first) ask for, and its arguments (program name first).
fn dispatch(args: Vec<OsString>) -> (Daemon, Vec<OsString>) {
    let called = args
        .first()
        .map(Path::new)
        .and_then(Path::file_name)
        .unwrap_or_default();
    if called == OsStr::new(ATTESTATION) {
        return (Daemon::Attestation, args);
    }
    if args.get(1).map(OsString::as_os_str) == Some(OsStr::new(ATTESTATION_SUBCOMMAND)) {
        let rest = std::iter::once(OsString::from(ATTESTATION)).chain(args.into_iter().skip(2));
        return (Daemon::Attestation, rest.collect());
    }
    (Daemon::Pairing, args)
}

/// The two daemons of this binary.
#[derive(Debug, PartialEq, Eq)]
enum Daemon {
    Pairing,
    Attestation,
}

fn main() -> ExitCode {
    match dispatch(std::env::args_os().collect()) {
        (Daemon::Attestation, args) => attestation::main(args),
        (Daemon::Pairing, args) => pairing::main(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_program_name_or_the_first_argument_picks_the_daemon() {
        assert_eq!(
            dispatch(os(&["/usr/bin/bmc-attestation", "--check-config"])),
            (
                Daemon::Attestation,
                os(&["/usr/bin/bmc-attestation", "--check-config"])
            )
        );
        assert_eq!(
            dispatch(os(&["bmc-pairing-manager", "attestation", "attest", "x"])),
            (Daemon::Attestation, os(&["bmc-attestation", "attest", "x"]))
        );
        assert_eq!(
            dispatch(os(&["/usr/bin/bmc-pairing-manager", "-c", "attestation"])),
            (
                Daemon::Pairing,
                os(&["/usr/bin/bmc-pairing-manager", "-c", "attestation"])
            )
        );
        assert_eq!(dispatch(Vec::new()), (Daemon::Pairing, Vec::new()));
    }
}
