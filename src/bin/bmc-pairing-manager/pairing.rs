//! `bmc-pairing-manager`: pairs this BMC with its peers (DESIGN.md §1) and reports on D-Bus.

use std::path::PathBuf;
use std::process::ExitCode;

use bmc_pairing_manager::cli::{self, DaemonLine, Parsed, UsageError};
use bmc_pairing_manager::config::{self, EXIT_CONFIG, TPM_DEVICE};
use bmc_pairing_manager::daemon;
use bmc_pairing_manager::identity::store::{self, Probe};
use bmc_pairing_manager::kit::{self, Bus, ErrorChain};

/// Command line: the daemon's options and a certificate operation for anchored mode (none
/// runs the daemon).
type Args = DaemonLine<Command>;

/// Operator commands (the daemon may be running; keys are reached through the same backend).
#[derive(Debug, PartialEq, Eq)]
enum Command {
    /// Print a PKCS#10 request (PEM) for this BMC's CA key, for a manufacturing CA to sign.
    Csr,
    /// Install the CA certificate a manufacturing CA issued for that request (DER or PEM).
    /// The identity key and every peer's pin stay as they are.
    InstallCaCert {
        /// The signed certificate.
        file: PathBuf,
    },
    /// Add a manufacturing CA certificate (DER or PEM) to this BMC's own trust store; peers
    /// whose chains verify to it can pair in anchored mode after attestation.
    InstallAnchor {
        /// The CA certificate.
        file: PathBuf,
    },
}

const HELP: &str = "\
Unattended, pinned mutual-TLS pairing of OpenBMC BMCs

Usage: bmc-pairing-manager [OPTIONS] [COMMAND]

Without a command: the daemon. Called as bmc-attestation, or with the first argument
`attestation`, this binary is the attestation daemon (bmc-attestation --help).

Commands:
  csr                     Print a PKCS#10 request (PEM) for this BMC's CA key, for a
                          manufacturing CA to sign
  install-ca-cert <FILE>  Install the CA certificate a manufacturing CA issued for that
                          request (DER or PEM). The identity key and every peer's pin stay
                          as they are.
  install-anchor <FILE>   Add a manufacturing CA certificate (DER or PEM) to this BMC's own
                          trust store; peers whose chains verify to it can pair in anchored
                          mode after attestation
  help [COMMAND]          Print this help (the same for every command)

Options:
  -c, --config <FILE>     Configuration file (JSON). A missing file means defaults.
                          [default: /etc/bmc-pairing-manager/bmc-pairing-manager.conf]
      --bus <ADDRESS>     D-Bus address to use instead of the system bus
                          (e.g. unix:path=/run/test/bus)
      --check-config      Validate the configuration, print the result and exit (0 valid,
                          2 invalid)
  -h, --help              Print help
  -V, --version           Print version
";

/// Parses `args` (the program name first); options may come before or after the command.
fn parse_args(
    args: impl IntoIterator<Item = std::ffi::OsString>,
) -> Result<Parsed<Args>, UsageError> {
    cli::parse_daemon_line(args, config::DEFAULT_PATH, HELP, |name, parser, _| {
        // The FILE operand. `-h`/`--help` in its place asks for help, as it did under clap
        // (`install-anchor --help` printed help and exited 0, not a usage error).
        let mut file = || -> Result<Parsed<PathBuf>, UsageError> {
            use lexopt::Arg::{Long, Short, Value};
            match parser.next()? {
                Some(Value(file)) => Ok(Parsed::Run(file.into())),
                Some(Short('h') | Long("help")) => Ok(Parsed::Help(HELP)),
                Some(other) => Err(other.unexpected().into()),
                None => Err(UsageError::Missing("<FILE>")),
            }
        };
        Ok(Some(match name {
            "csr" => Parsed::Run(Command::Csr),
            "install-ca-cert" => file()?.map(|file| Command::InstallCaCert { file }),
            "install-anchor" => file()?.map(|file| Command::InstallAnchor { file }),
            _ => return Ok(None),
        }))
    })
}

/// Why a certificate subcommand failed.
#[derive(Debug, thiserror::Error)]
enum CommandError {
    /// The input file cannot be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The key store cannot be opened.
    #[error("cannot open the key store")]
    KeyStore(#[source] bmc_pairing_core::keys::Error),
    /// The certificate work failed.
    #[error(transparent)]
    Identity(#[from] bmc_pairing_manager::identity::Error),
}

fn read_file(path: &std::path::Path) -> Result<Vec<u8>, CommandError> {
    std::fs::read(path).map_err(|source| CommandError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Runs a certificate subcommand; prints what it did, or the whole error chain.
fn certificate_command(config: &config::Config, command: Command) -> ExitCode {
    use bmc_pairing_manager::identity::{anchors, cert::ChainFiles};
    let chain = ChainFiles::new(config.identity.cert_dir());
    let open = || {
        store::open(
            &config.identity.key_backend,
            &config.identity.key_dir(),
            Probe::Now,
        )
        .map(|opened| opened.store)
        .map_err(CommandError::KeyStore)
    };
    let result = match command {
        Command::InstallAnchor { file } => read_file(&file).and_then(|bytes| {
            let now = bmc_pairing_manager::clock::floored_now(0);
            match anchors::install(&config.identity.cert_dir(), &bytes, now)? {
                (_, anchors::Installed::New(path)) => {
                    println!("installed trust anchor {}", path.display());
                }
                (id, anchors::Installed::AlreadyThere) => {
                    println!("trust anchor {id} is already installed");
                }
            }
            Ok(())
        }),
        Command::Csr => open().and_then(|store| {
            print!("{}", chain.ca_csr(store.as_ref())?);
            Ok(())
        }),
        Command::InstallCaCert { file } => open().and_then(|store| {
            let bytes = read_file(&file)?;
            let now = bmc_pairing_manager::clock::floored_now(0);
            chain.install_ca_cert(store.as_ref(), &bytes, &config.bmc_name, now)?;
            println!(
                "installed the CA certificate; the daemon uses it from its next identity check"
            );
            Ok(())
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bmc-pairing-manager: {}", ErrorChain(&e));
            ExitCode::FAILURE
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Runs `bmc-pairing-manager` with `args` (the first one is the program name).
pub(crate) fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args = match cli::finish("bmc-pairing-manager", parse_args(args)) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let tpm_present = std::path::Path::new(TPM_DEVICE).exists();
    let config = match config::load(&args.config, &hostname(), tpm_present) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("bmc-pairing-manager: invalid configuration: {e}");
            return ExitCode::from(u8::try_from(EXIT_CONFIG).unwrap_or(2));
        }
    };
    if args.check_config {
        println!("{}: configuration is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    if let Some(command) = args.command {
        return certificate_command(&config, command);
    }
    kit::init_tracing("info");
    let bus = Bus::from_arg(args.bus);
    kit::run_daemon("bmc-pairing-manager", |rt| {
        rt.block_on(daemon::run(config, bus, kit::shutdown_signal()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Parsed<Args>, UsageError> {
        parse_args(
            std::iter::once("bmc-pairing-manager")
                .chain(args.iter().copied())
                .map(std::ffi::OsString::from),
        )
    }

    fn run(args: &[&str]) -> Args {
        match parse(args) {
            Ok(Parsed::Run(args)) => args,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    #[test]
    fn options_and_commands_parse_with_their_defaults() {
        assert_eq!(
            run(&[]),
            Args {
                config: PathBuf::from(config::DEFAULT_PATH),
                bus: None,
                check_config: false,
                command: None,
            }
        );
        let a = run(&["-c", "/x.conf", "--bus=unix:path=/b", "--check-config"]);
        assert_eq!(a.config, PathBuf::from("/x.conf"));
        assert_eq!(a.bus.as_deref(), Some("unix:path=/b"));
        assert!(a.check_config);
        assert_eq!(run(&["csr"]).command, Some(Command::Csr));
        let a = run(&["install-anchor", "/ca.pem", "--config", "/y.conf"]);
        assert_eq!(
            a.command,
            Some(Command::InstallAnchor {
                file: "/ca.pem".into()
            })
        );
        assert_eq!(a.config, PathBuf::from("/y.conf"));
        assert_eq!(
            run(&["install-ca-cert", "/ca.der"]).command,
            Some(Command::InstallCaCert {
                file: "/ca.der".into()
            })
        );
    }

    #[test]
    fn help_and_version_are_outcomes_and_bad_lines_are_usage_errors() {
        assert!(matches!(parse(&["--help"]), Ok(Parsed::Help(HELP))));
        assert!(matches!(parse(&["csr", "-h"]), Ok(Parsed::Help(HELP))));
        assert!(matches!(
            parse(&["install-anchor", "-h"]),
            Ok(Parsed::Help(HELP))
        ));
        assert!(matches!(
            parse(&["install-ca-cert", "--help"]),
            Ok(Parsed::Help(HELP))
        ));
        assert!(matches!(
            parse(&["install-anchor", "/ca.pem", "--help"]),
            Ok(Parsed::Help(HELP))
        ));
        assert!(matches!(parse(&["-V"]), Ok(Parsed::Version)));
        for help in [
            &["help"][..],
            &["help", "csr"],
            &["help", "install-anchor"],
            &["-c", "/x.conf", "help", "install-ca-cert"],
        ] {
            assert!(matches!(parse(help), Ok(Parsed::Help(HELP))), "{help:?}");
        }
        assert!(HELP.contains(config::DEFAULT_PATH));
        for bad in [
            &["--bogus"][..],
            &["-c"],
            &["bogus"],
            &["install-anchor"],
            &["install-anchor", "--check-config"],
            &["csr", "extra"],
            &["csr", "csr"],
            &["csr", "help"],
            &["help", "bogus"],
            &["help", "csr", "extra"],
            &["help", "--check-config"],
            &["--check-config=yes"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }
}
