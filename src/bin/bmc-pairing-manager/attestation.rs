//! `bmc-attestation` (this binary called by that name, or `bmc-pairing-manager attestation`):
//! this BMC's SPDM responder and the attestation of peers on request over D-Bus
//! (DESIGN.md §1.3), plus the operator subcommands `attest` and `respond`.

use std::path::Path;
use std::process::ExitCode;

use bmc_pairing_manager::attestation::cli::{self, Command, EXIT_USAGE};
use bmc_pairing_manager::attestation::config::{self, TPM_DEVICE};
use bmc_pairing_manager::attestation::{self, load_measurement_policy};
use bmc_pairing_manager::kit::{self, Bus, ErrorChain};

fn runtime() -> Option<tokio::runtime::Runtime> {
    kit::runtime()
        .map_err(|e| {
            eprintln!(
                "bmc-attestation: cannot start the async runtime: {}",
                ErrorChain(&e)
            )
        })
        .ok()
}

/// Runs `bmc-attestation` with `args` (the first one is the program name).
pub(crate) fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args = match bmc_pairing_manager::cli::finish("bmc-attestation", cli::parse_args(args)) {
        Ok(args) => args,
        Err(code) => return code,
    };
    if !args.check_config {
        match args.command {
            Some(Command::Attest(a)) => {
                kit::init_tracing("warn");
                let Some(rt) = runtime() else {
                    return ExitCode::FAILURE;
                };
                return ExitCode::from(rt.block_on(cli::attest_command(a)));
            }
            Some(Command::Respond(r)) => {
                kit::init_tracing("info");
                let Some(rt) = runtime() else {
                    return ExitCode::FAILURE;
                };
                let code = rt.block_on(cli::respond_command(
                    r,
                    &args.config,
                    kit::shutdown_signal(),
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
    kit::init_tracing("info");
    let bus = Bus::from_arg(args.bus);
    kit::run_daemon("bmc-attestation", |rt| {
        rt.block_on(attestation::run(
            config,
            policy,
            bus,
            kit::shutdown_signal(),
        ))
    })
}
