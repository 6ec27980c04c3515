//! `paysettle-sim`: Portmanat, PaySys and Plutu simulated on one HTTP port,
//! so tests, the demo and benchmarks can run paysettle against something that
//! behaves like the real providers, bad days included. It depends on nothing
//! of paysettle's own: it signs and checks signatures with its own code,
//! written from `shared/providers`, so a mistake shared with `paysettle-core`
//! shows up as a failing test instead of hiding in both.
//!
//! Modules:
//! - [`portmanat`], [`paysys`], [`plutu`] — one per provider: its routes
//!   (under `/portmanat`, `/paysys`, `/plutu`), its wire shapes and its
//!   signature algorithm, each with the NOTES.md worked examples as tests.
//! - [`control`] — the `/_sim` control API that tests and the demo drive.
//! - [`scenario`] — latency, injected errors, pending times, outcome mix and
//!   callback misbehaviour; [`config`] — the TOML file that sets them and the
//!   credentials ([`config::DEFAULT_CONFIG`] is the commented reference).
//! - `server` — the listener, router and fault injector; `engine` — payments
//!   and the logic that moves them; `schedule` — the clock tests can advance
//!   and the event queue; `callback` — the outbound HTTP client; `autopilot`
//!   — the demo's steady stream of payments.
//! - [`model`], [`money`], [`form`] — payments and their views, minor-unit
//!   money, and URL-encoding including PHP's `http_build_query`.
//!
//! In-process use: [`Sim::start`] returns a [`SimHandle`]; from the command
//! line, the `paysettle-sim` binary ([`SimArgs`], [`run_cli`]).

#![warn(missing_docs)]

mod autopilot;
mod callback;
pub mod config;
pub mod control;
mod engine;
mod error;
pub mod form;
pub mod model;
pub mod money;
pub mod paysys;
pub mod plutu;
pub mod portmanat;
pub mod scenario;
mod schedule;
mod server;
mod sim;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;

pub use config::SimConfig;
pub use engine::{PartnerNotifyRequest, PartnerNotifyStat, ProviderStats, Stats};
pub use error::{SimError, VerifyError};
pub use model::{
    CallbackFate, CallbackKind, CallbackRecord, Outcome, PartnerNotifyView, PaymentView,
    PlutuGateway, Provider, Status, StatusChange,
};
pub use money::Currency;
pub use scenario::{Scenario, ScenarioPatch};
pub use sim::{NewPayment, Sim, SimHandle};

/// Runs the provider simulator: Portmanat under /portmanat, PaySys under
/// /paysys, Plutu under /plutu and the control API under /_sim, all on one
/// port, until Ctrl-C or SIGTERM.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Address to listen on [default: the config file's `bind`, else 127.0.0.1:8090].
    #[arg(long, short = 'b', value_name = "ADDR", env = "PAYSETTLE_SIM_BIND")]
    pub bind: Option<SocketAddr>,

    /// Port to listen on at 127.0.0.1 (shorthand for --bind 127.0.0.1:PORT).
    #[arg(long, short = 'p', value_name = "PORT", conflicts_with = "bind")]
    pub port: Option<u16>,

    /// TOML config file: credentials, callback URLs, scenario (see --print-config).
    #[arg(long, short = 'c', value_name = "FILE", env = "PAYSETTLE_SIM_CONFIG")]
    pub config: Option<PathBuf>,

    /// Seed of every random draw, so a run can be repeated [default: the config's `seed`, else 1].
    #[arg(long, value_name = "N", env = "PAYSETTLE_SIM_SEED")]
    pub seed: Option<u64>,

    /// Create N payments per second across the three providers (the demo's traffic).
    #[arg(long, value_name = "N")]
    pub autopilot_rate: Option<f64>,

    /// Print the default configuration file, with every key explained, and exit.
    #[arg(long)]
    pub print_config: bool,
}

impl SimArgs {
    /// The configuration these arguments describe: the file (or the
    /// defaults), then the flags.
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        let mut config = match &self.config {
            Some(path) => SimConfig::load(path)?,
            None => SimConfig::default(),
        };
        if let Some(bind) = self.bind {
            config.bind = bind;
        }
        if let Some(port) = self.port {
            config.bind = SocketAddr::from(([127, 0, 0, 1], port));
        }
        if let Some(seed) = self.seed {
            config.seed = seed;
        }
        if let Some(rate) = self.autopilot_rate {
            config.autopilot.rate_per_sec = rate;
        }
        config.validate()?;
        Ok(config)
    }
}

/// `paysettle-sim`: starts the simulator and serves until Ctrl-C or SIGTERM,
/// then shuts down cleanly.
pub async fn run_cli(args: SimArgs) -> anyhow::Result<()> {
    if args.print_config {
        print!("{}", config::DEFAULT_CONFIG);
        return Ok(());
    }
    let config = args.to_config().context("cannot configure the simulator")?;
    let handle = Sim::start(config)
        .await
        .context("cannot start the simulator")?;
    tracing::info!(base_url = %handle.base_url(), "simulator ready; Ctrl-C stops it");
    shutdown_signal().await?;
    tracing::info!("stopping the simulator");
    handle.shutdown().await;
    Ok(())
}

async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .context("cannot listen for SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("cannot listen for Ctrl-C")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot listen for Ctrl-C")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimArgs,
    }

    #[test]
    fn flags_override_the_defaults() {
        let cli = Cli::try_parse_from([
            "sim",
            "--port",
            "9999",
            "--seed",
            "7",
            "--autopilot-rate",
            "2.5",
        ])
        .unwrap();
        let config = cli.sim.to_config().unwrap();
        assert_eq!(config.bind, SocketAddr::from(([127, 0, 0, 1], 9999)));
        assert_eq!(config.seed, 7);
        assert_eq!(config.autopilot.rate_per_sec, 2.5);
    }

    #[test]
    fn bind_and_port_conflict() {
        assert!(Cli::try_parse_from(["sim", "--port", "1", "--bind", "127.0.0.1:2"]).is_err());
    }

    #[test]
    fn a_negative_rate_is_refused() {
        let cli = Cli::try_parse_from(["sim", "--autopilot-rate=-1"]).unwrap();
        assert!(cli.sim.to_config().is_err());
    }

    #[test]
    fn help_documents_every_flag() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        for flag in [
            "--bind",
            "--port",
            "--config",
            "--seed",
            "--autopilot-rate",
            "--print-config",
        ] {
            assert!(help.contains(flag), "{flag} missing from:\n{help}");
        }
        assert!(help.contains("127.0.0.1:8090"));
    }

    #[test]
    fn defaults_without_flags() {
        let cli = Cli::try_parse_from(["sim"]).unwrap();
        let config = cli.sim.to_config().unwrap();
        assert_eq!(config.bind, SocketAddr::from(([127, 0, 0, 1], 8090)));
    }
}
