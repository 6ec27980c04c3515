//! `paysettle-sim`: the provider simulator as its own program, for the demo,
//! the tests and the benchmarks. It is deliberately not part of the
//! `paysettle` binary, which carries no code that forges callbacks.

use std::process::ExitCode;

use clap::Parser;

/// The provider simulator: Portmanat, PaySys and Plutu on one port, with a
/// control API under /_sim.
#[derive(Debug, Parser)]
#[command(name = "paysettle-sim", version, about, long_about = None)]
#[command(
    after_help = "Examples:\n  paysettle-sim --port 8090                    # the demo's simulator\n  paysettle-sim --autopilot-rate 1             # and a payment a second\n  paysettle-sim --print-config > sim.toml      # every setting, explained"
)]
struct Cli {
    #[command(flatten)]
    sim: paysettle_sim::SimArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PAYSETTLE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_target(false)
        .init();
    let result = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::new)
        .and_then(|runtime| runtime.block_on(paysettle_sim::run_cli(cli.sim)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("paysettle-sim: {err:#}");
            ExitCode::from(2)
        }
    }
}
