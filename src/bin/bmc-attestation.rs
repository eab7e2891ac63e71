//! `bmc-attestation`: this BMC's SPDM responder and the attestation of peers on request over
//! D-Bus (DESIGN.md §1.3), plus the operator subcommands `attest` and `respond`.

use std::path::Path;
use std::process::ExitCode;

use bmc_pairing_manager::attestation::cli::{self, Args, Command, EXIT_USAGE};
use bmc_pairing_manager::attestation::config::{self, TPM_DEVICE};
use bmc_pairing_manager::attestation::{self, load_measurement_policy};
use bmc_pairing_manager::daemon;
use bmc_pairing_manager::dbus::Bus;
use clap::Parser;

fn init_tracing(default_level: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_target(false)
        .with_writer(std::io::stderr)
        // journald and test logs read plain text; colours only on a terminal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("bmc-attestation: cannot start the async runtime: {e}");
            None
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.check_config {
        match args.command {
            Some(Command::Attest(a)) => {
                init_tracing("warn");
                let Some(rt) = runtime() else {
                    return ExitCode::FAILURE;
                };
                return ExitCode::from(rt.block_on(cli::attest_command(a)));
            }
            Some(Command::Respond(r)) => {
                init_tracing("info");
                let Some(rt) = runtime() else {
                    return ExitCode::FAILURE;
                };
                let code = rt.block_on(cli::respond_command(
                    r,
                    &args.config,
                    daemon::shutdown_signal(),
                ));
                return ExitCode::from(code);
            }
            None => {}
        }
    }
    let tpm_present = Path::new(TPM_DEVICE).exists();
    let loaded = config::load(&args.config, tpm_present)
        .and_then(|c| load_measurement_policy(&args.config, &c).map(|p| (c, p)));
    let (config, policy) = match loaded {
        Ok(v) => v,
        Err(e) => {
            eprintln!("bmc-attestation: invalid configuration: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    if args.check_config {
        println!("{}: configuration is valid", args.config.display());
        return ExitCode::SUCCESS;
    }
    init_tracing("info");
    let Some(rt) = runtime() else {
        return ExitCode::FAILURE;
    };
    let bus = args.bus.map_or(Bus::System, Bus::Address);
    match rt.block_on(attestation::run(
        config,
        policy,
        bus,
        daemon::shutdown_signal(),
    )) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = attestation::requester::error_chain(&e);
            if msg.contains("NameTaken") || msg.contains("name already taken") {
                msg.push_str(" (is another bmc-attestation running on this bus?)");
            }
            tracing::error!("{msg}");
            ExitCode::FAILURE
        }
    }
}
