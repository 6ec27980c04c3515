//! `paysettle`: the command-line entry point of the payment-settlement sidecar.
//!
//! Each subcommand is one role of the product; the crates under `crates/` do the
//! work and this file only parses arguments, sets up logging and maps errors to
//! exit codes.

use clap::{Parser, Subcommand};

/// paysettle makes sure no card payment is lost, doubled or misreported.
#[derive(Debug, Parser)]
#[command(name = "paysettle", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the provider simulator (Portmanat, PaySys and Plutu on one port).
    Sim(paysettle_sim::SimArgs),
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAYSETTLE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("paysettle: cannot start the async runtime: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Sim(args) => paysettle_sim::run_cli(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("paysettle: {err:#}");
            std::process::ExitCode::from(2)
        }
    }
}
