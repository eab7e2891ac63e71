//! `bmc-pairing-manager`: pairs this BMC with its peers (DESIGN.md §1) and reports on D-Bus.

use std::path::PathBuf;
use std::process::ExitCode;

use bmc_pairing_manager::attestation::requester::error_chain;
use bmc_pairing_manager::config::{self, EXIT_CONFIG, TPM_DEVICE};
use bmc_pairing_manager::daemon;
use bmc_pairing_manager::dbus::Bus;
use clap::{Parser, Subcommand};

/// Command line.
#[derive(Parser, Debug)]
#[command(
    version,
    about = "Unattended, pinned mutual-TLS pairing of OpenBMC BMCs"
)]
struct Args {
    /// Configuration file (JSON). A missing file means defaults.
    #[arg(long, short = 'c', default_value = config::DEFAULT_PATH)]
    config: PathBuf,
    /// D-Bus address to use instead of the system bus (e.g. unix:path=/run/test/bus).
    #[arg(long, value_name = "ADDRESS")]
    bus: Option<String>,
    /// Validate the configuration, print the result and exit (0 valid, 2 invalid).
    #[arg(long)]
    check_config: bool,
    /// Certificate operations for anchored mode; without one, run the daemon.
    #[command(subcommand)]
    command: Option<Command>,
}

/// Operator commands (the daemon may be running; keys are reached through the same backend).
#[derive(Subcommand, Debug)]
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

/// Runs a certificate subcommand; returns the exit code.
fn certificate_command(config: &config::Config, command: Command) -> ExitCode {
    use bmc_pairing_manager::identity::{anchors, cert::ChainFiles};
    let chain = ChainFiles::new(config.cert_dir());
    let result = match command {
        Command::InstallAnchor { file } => std::fs::read(&file)
            .map_err(|e| format!("{}: {e}", file.display()))
            .and_then(|b| anchors::install(&config.cert_dir(), &b).map_err(|e| e.to_string()))
            .map(|path| println!("installed trust anchor {}", path.display())),
        Command::Csr | Command::InstallCaCert { .. } => match daemon::open_key_store(config) {
            Err(e) => Err(e.to_string()),
            Ok(store) => match command {
                Command::Csr => chain.ca_csr(store.as_ref()).map(|pem| print!("{pem}")).map_err(|e| e.to_string()),
                Command::InstallCaCert { file } => std::fs::read(&file)
                    .map_err(|e| format!("{}: {e}", file.display()))
                    .and_then(|b| {
                        let now = bmc_pairing_manager::clock::floored_now(0);
                        chain.install_ca_cert(store.as_ref(), &b, now).map_err(|e| e.to_string())
                    })
                    .map(|()| println!("installed the CA certificate; the daemon uses it from its next identity check")),
                Command::InstallAnchor { .. } => Ok(()),
            },
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bmc-pairing-manager: {e}");
            ExitCode::FAILURE
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

fn main() -> ExitCode {
    let args = Args::parse();
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        // journald and test logs read plain text; colours only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let bus = args.bus.map_or(Bus::System, Bus::Address);
    let result = runtime.block_on(daemon::run(config, bus, daemon::shutdown_signal()));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = error_chain(&e);
            if msg.contains("NameTaken") || msg.contains("name already taken") {
                msg.push_str(" (is another bmc-pairing-manager running on this bus?)");
            }
            tracing::error!("{msg}");
            ExitCode::FAILURE
        }
    }
}
