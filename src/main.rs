//! `paysettle`: the command-line entry point of the payment-settlement sidecar.
//!
//! Each subcommand is one role of the product; the crates under `crates/` do
//! the work and this file only parses arguments, loads the configuration,
//! sets up logging, wires the parts together and maps errors to exit codes.

mod config;
mod ops;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

/// paysettle makes sure no card payment is lost, doubled or misreported.
#[derive(Debug, Parser)]
#[command(name = "paysettle", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the receiver and the worker in one process (the usual sidecar).
    #[command(
        after_help = "Examples:\n  paysettle serve                              # embedded defaults, no broker\n  paysettle serve --config deploy/demo.toml    # the demo, against `paysettle-sim`"
    )]
    Serve(ConfigArg),
    /// Run the receiver alone: authenticate provider callbacks and queue them durably.
    #[command(
        after_help = "Example:\n  PAYSETTLE__QUEUE__BACKEND=rabbitmq paysettle receive --config /etc/paysettle/paysettle.toml"
    )]
    Receive(ConfigArg),
    /// Run the worker: apply callbacks, poll providers, publish settled events, serve the shop API.
    #[command(after_help = "Example:\n  paysettle work --config /etc/paysettle/paysettle.toml")]
    Work(ConfigArg),
    /// Check a configuration and print the effective settings, secrets redacted.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Reconcile the ledger with the providers: re-check, compare, classify, and (with --apply) correct.
    #[command(after_help = ops::RECONCILE_HELP)]
    Reconcile(Box<ops::ReconcileArgs>),
    /// Find payments and show one with its history.
    #[command(subcommand)]
    Payments(ops::PaymentsCommand),
    /// Publish recorded settled events again.
    #[command(subcommand)]
    Events(ops::EventsCommand),
    /// Inspect and re-drive dead-lettered callbacks.
    #[command(subcommand)]
    Dlq(ops::DlqCommand),
    /// Check the ledger's integrity.
    #[command(subcommand)]
    Ledger(ops::LedgerCommand),
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Load and validate; report every problem with its key (exit 2), or print the settings (exit 0).
    #[command(
        after_help = "Examples:\n  paysettle config check --config deploy/paysettle.example.toml\n  PAYSETTLE__QUEUE__BACKEND=rabbitmq paysettle config check"
    )]
    Check(ConfigArg),
}

#[derive(Debug, Args)]
pub struct ConfigArg {
    /// The TOML configuration file (embedded defaults and PAYSETTLE__SECTION__KEY variables apply too).
    #[arg(long, short, env = "PAYSETTLE_CONFIG")]
    config: Option<PathBuf>,
}

/// Where log lines go: the services log to standard output; an operator's
/// command logs to standard error, so its report on standard output stays
/// clean for a script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogTo {
    Stdout,
    Stderr,
}

/// The operator's filter with [`paysettle_core::redact::LOG_CAPS`] after it: a library that
/// would log the data it carries stays quiet at any level.
fn with_log_caps(filter: tracing_subscriber::EnvFilter) -> tracing_subscriber::EnvFilter {
    paysettle_core::redact::LOG_CAPS
        .iter()
        .filter_map(|cap| cap.parse().ok())
        .fold(filter, tracing_subscriber::EnvFilter::add_directive)
}

pub(crate) fn init_logging(json: bool, level: &str, to: LogTo) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PAYSETTLE_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let filter = with_log_caps(filter);
    // Colour only for a person at a terminal, never into a file or a pipe.
    let ansi = match to {
        LogTo::Stdout => std::io::IsTerminal::is_terminal(&std::io::stdout()),
        LogTo::Stderr => std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_target(false)
        .with_writer(move || -> Box<dyn std::io::Write> {
            match to {
                LogTo::Stdout => Box::new(std::io::stdout()),
                LogTo::Stderr => Box::new(std::io::stderr()),
            }
        });
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Loads and resolves the configuration, or explains every problem.
pub(crate) fn resolve(arg: &ConfigArg) -> anyhow::Result<(config::Config, config::Resolved)> {
    let loaded = config::load(arg.config.as_deref()).map_err(problems)?;
    let resolved = loaded.resolve().map_err(problems)?;
    Ok((loaded, resolved))
}

fn problems(list: Vec<config::Problem>) -> anyhow::Error {
    let lines: Vec<String> = list.iter().map(|p| format!("  {p}")).collect();
    anyhow::anyhow!(
        "the configuration has {} problem(s):\n{}",
        list.len(),
        lines.join("\n")
    )
}

/// Resolves when Ctrl-C or SIGTERM arrives.
pub(crate) async fn stop_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// The receiver's settings from the configuration.
fn receiver_settings(
    resolved: &config::Resolved,
) -> anyhow::Result<paysettle_receiver::ReceiverSettings> {
    use paysettle_core::Provider;
    use paysettle_receiver::{
        PaysysAccount, PlutuAccount, PortmanatAccount, ReceiverSettings, ResultPage,
    };
    let limits = &resolved.receiver;
    let mut settings = ReceiverSettings {
        max_body_bytes: limits.max_body_bytes,
        header_read_timeout: limits.header_timeout,
        body_read_timeout: limits.body_timeout,
        max_connections: limits.max_connections,
        max_connections_per_client: limits.max_connections_per_client,
        idle_timeout: limits.idle_timeout,
        max_connection_age: limits.max_connection_age,
        http2_max_concurrent_streams: limits.http2_max_concurrent_streams,
        body_budget_bytes: limits.body_budget_bytes,
        body_budget_per_client: limits.body_budget_per_client,
        hints: limits.hints,
        shutdown_grace: limits.shutdown_grace,
        handoff: resolved.worker.handoff.clone(),
        ..ReceiverSettings::default()
    };
    let page = |provider: Provider,
                account: &paysettle_core::Account|
     -> anyhow::Result<Option<ResultPage>> {
        resolved
            .result_pages
            .get(&(provider, account.clone()))
            .map(|url| ResultPage::parse(url))
            .transpose()
            .map_err(Into::into)
    };
    for (account, pairs) in &resolved.paysys_auth {
        let rules = resolved
            .worker
            .paysys
            .get(account)
            .map(|access| access.rules.clone())
            .unwrap_or_default();
        let auth = paysettle_core::paysys::NotificationAuth::new(pairs)
            .with_context(|| format!("paysys.{account}.notify_credentials"))?
            .with_rules(rules);
        settings
            .paysys
            .insert(account.clone(), PaysysAccount { auth });
    }
    for (account, key) in &resolved.plutu_keys {
        let verifier = paysettle_core::plutu::CallbackVerifier::new(key.clone())
            .with_context(|| format!("plutu.{account}.secret_key"))?;
        settings.plutu.insert(
            account.clone(),
            PlutuAccount {
                verifier,
                result_page: page(Provider::Plutu, account)?,
            },
        );
    }
    for account in resolved.worker.portmanat.keys() {
        settings.portmanat.insert(
            account.clone(),
            PortmanatAccount {
                result_page: page(Provider::Portmanat, account)?,
            },
        );
    }
    Ok(settings)
}

/// Which roles a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Roles {
    Receiver,
    Worker,
    Both,
}

async fn run(arg: ConfigArg, roles: Roles) -> anyhow::Result<()> {
    let (_, mut resolved) = resolve(&arg)?;
    init_logging(resolved.log_json, &resolved.log_level, LogTo::Stdout);
    let handoff = resolved.handoff.keys()?;
    resolved.worker.handoff = Some(handoff.clone());
    // Claimed before anything starts and held until the process ends: one
    // worker per SQLite ledger. (Workers sharing a PostgreSQL ledger take
    // per-payment locks and claims there instead.)
    let _claim = match &resolved.ledger_target {
        paysettle_store::LedgerTarget::Sqlite(path) if roles != Roles::Receiver => {
            Some(paysettle_store::WorkerClaim::acquire(path)?)
        }
        _ => None,
    };
    let queue = paysettle_queue::Queue::start(resolved.queue.clone())
        .await
        .context("starting the queue")?;
    let shutdown = CancellationToken::new();
    let mut tasks: Vec<(&str, tokio::task::JoinHandle<anyhow::Result<()>>)> = Vec::new();

    if roles != Roles::Worker {
        let settings = Arc::new(receiver_settings(&resolved)?);
        let listener = tokio::net::TcpListener::bind(resolved.receiver_listen)
            .await
            .with_context(|| {
                format!(
                    "binding the callback listener to {}",
                    resolved.receiver_listen
                )
            })?;
        tracing::info!(listen = %resolved.receiver_listen, "receiver listening");
        // Metrics are not worth a lost callback: a metrics port that cannot
        // be bound (another process on it) is logged, and callbacks are
        // served all the same.
        match resolved.metrics_listen {
            Some(addr) => match tokio::net::TcpListener::bind(addr).await {
                Ok(metrics) => {
                    tracing::info!(listen = %addr, "metrics listening");
                    let (queue, stop) = (queue.clone(), shutdown.clone());
                    tasks.push((
                        "metrics listener",
                        tokio::spawn(async move {
                            Ok(paysettle_receiver::serve_metrics(metrics, queue, stop).await?)
                        }),
                    ));
                }
                Err(e) => tracing::error!(
                    listen = %addr,
                    error = %e,
                    "cannot bind the metrics listener; /metrics is not served"
                ),
            },
            None => tracing::info!("metrics.listen is empty; /metrics is not served"),
        }
        let (queue, stop) = (queue.clone(), shutdown.clone());
        tasks.push((
            "receiver",
            tokio::spawn(async move {
                Ok(paysettle_receiver::run(listener, settings, queue, stop).await?)
            }),
        ));
    }
    if roles != Roles::Receiver {
        let ledger = ops::open_ledger(&resolved, true).await?;
        let shop = tokio::net::TcpListener::bind(resolved.shop_listen)
            .await
            .with_context(|| format!("binding the shop API to {}", resolved.shop_listen))?;
        tracing::info!(shop_api = %resolved.shop_listen, ledger = %ledger.describe(), "worker starting");
        let mut worker = resolved.worker;
        let cards = paysettle_store::CardFeed::path_for(&resolved.ledger_path);
        worker.cards = Some(
            paysettle_store::CardFeed::open(&cards)
                .with_context(|| format!("opening the card feed {}", cards.display()))?,
        );
        let settings = Arc::new(worker);
        let (l, s, stop) = (ledger.clone(), Arc::clone(&settings), shutdown.clone());
        let api = resolved.shop_api;
        tasks.push((
            "shop API",
            tokio::spawn(
                async move { Ok(paysettle_worker::shop::serve(shop, l, api, s, stop).await?) },
            ),
        ));
        let (q, stop) = (queue.clone(), shutdown.clone());
        tasks.push((
            "worker",
            tokio::spawn(
                async move { Ok(paysettle_worker::run(ledger, q, settings, stop).await?) },
            ),
        ));
    }

    stop_signal().await;
    tracing::info!("stopping: finishing the work in hand");
    shutdown.cancel();
    let mut failed = None;
    for (name, task) in tasks {
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => failed = Some(err.context(format!("the {name} failed"))),
            Err(err) => {
                failed = Some(anyhow::Error::new(err).context(format!("the {name} task failed")))
            }
        }
    }
    queue.shutdown(std::time::Duration::from_secs(5)).await;
    tracing::info!("stopped");
    failed.map_or(Ok(()), Err)
}

fn config_check(arg: ConfigArg) -> anyhow::Result<()> {
    let (loaded, _) = resolve(&arg)?;
    print!("{}", loaded.redacted_toml());
    eprintln!("paysettle: the configuration is valid");
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: anyhow::Result<ops::Exit> = match cli.command {
        Command::Config(ConfigCommand::Check(arg)) => config_check(arg).map(|()| 0),
        command => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(async move {
                match command {
                    Command::Serve(arg) => run(arg, Roles::Both).await.map(|()| 0),
                    Command::Receive(arg) => run(arg, Roles::Receiver).await.map(|()| 0),
                    Command::Work(arg) => run(arg, Roles::Worker).await.map(|()| 0),
                    Command::Reconcile(args) => ops::reconcile(*args).await,
                    Command::Payments(command) => ops::payments(command).await,
                    Command::Events(command) => ops::events(command).await,
                    Command::Dlq(command) => ops::dlq(command).await,
                    Command::Ledger(command) => ops::ledger(command).await,
                    Command::Config(_) => Ok(0),
                }
            }),
            Err(err) => Err(anyhow::Error::new(err).context("starting the async runtime")),
        },
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("paysettle: {err:#}");
            ExitCode::from(2)
        }
    }
}
