//! `paysettle-loadgen`: load for paysettle's receiver, from a process of its
//! own, as providers would send it.
//!
//! - `callbacks`: genuine, correctly signed callbacks of PaySys, Plutu and
//!   Portmanat in turn, over many keep-alive connections, as fast as the
//!   server answers or at a fixed rate; prints one JSON object with the
//!   rate, the answers by status and the latency percentiles (HDR
//!   histogram), and the generator's own CPU time.
//! - `bare`: a bare hyper server that only reads the body, to measure what
//!   HTTP alone costs on the same machine (`callbacks` against it).
//!
//! The work is in the library (`paysettle_loadgen`); this file parses the
//! arguments and prints the report.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use paysettle_loadgen::bare;
use paysettle_loadgen::callbacks::{self, Credentials, Provider};
use paysettle_loadgen::load::{self, Plan, Requests};

#[derive(Debug, Parser)]
#[command(name = "paysettle-loadgen", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send signed provider callbacks to a receiver and report rate and latency as JSON.
    #[command(
        after_help = "Examples:\n  paysettle-loadgen callbacks --target 127.0.0.1:8080 --connections 64 --seconds 10\n  paysettle-loadgen callbacks --target 127.0.0.1:8080 --rate 5000 --seconds 10"
    )]
    Callbacks(CallbacksArgs),
    /// Serve a bare HTTP endpoint that reads the body and answers 200 (prints `listening on ADDR`).
    Bare(BareArgs),
}

#[derive(Debug, Args)]
struct CallbacksArgs {
    /// The receiver's address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    target: SocketAddr,
    /// Keep-alive connections, each with one request in flight.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Requests per second in total; without it, as fast as answered.
    #[arg(long)]
    rate: Option<f64>,
    /// The measured window.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Load sent before the measured window, not recorded.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// The providers to take turns with.
    #[arg(long, value_delimiter = ',', default_value = "paysys,plutu,portmanat")]
    providers: Vec<String>,
    /// A named account (`/callbacks/{provider}/{account}`); the default account without it.
    #[arg(long)]
    account: Option<String>,
    /// PaySys's Basic-auth user (VENDOR_METHOD).
    #[arg(
        long,
        env = "PAYSETTLE_LOADGEN_PAYSYS_USER",
        default_value = "demo-vendor"
    )]
    paysys_user: String,
    /// PaySys's Basic-auth password (VENDOR_SECRET_KEY).
    #[arg(
        long,
        env = "PAYSETTLE_LOADGEN_PAYSYS_PASSWORD",
        default_value = "demo-vendor-secret",
        hide_default_value = true
    )]
    paysys_password: String,
    /// Plutu's merchant secret key, which signs callbacks.
    #[arg(
        long,
        env = "PAYSETTLE_LOADGEN_PLUTU_SECRET",
        default_value = "sk_demo_plutu_secret",
        hide_default_value = true
    )]
    plutu_secret: String,
    /// Distinct callbacks built and signed before the clock starts, then sent round robin.
    #[arg(long, default_value_t = 50_000)]
    requests: u64,
    /// The generator's threads (1: a single-threaded runtime, the cheapest).
    #[arg(long, default_value_t = 1)]
    threads: usize,
}

#[derive(Debug, Args)]
struct BareArgs {
    /// Where to listen (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Runtime worker threads (default: one per core, as the product's runtime).
    #[arg(long)]
    threads: Option<usize>,
}

fn runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    match threads {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
        None => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build(),
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Callbacks(args) => {
            runtime(Some(args.threads.max(1)))?.block_on(callbacks(args))?;
        }
        Command::Bare(args) => {
            runtime(args.threads)?.block_on(async {
                let listener = tokio::net::TcpListener::bind(args.listen).await?;
                println!("listening on {}", listener.local_addr()?);
                bare::serve(listener).await
            })?;
        }
    }
    Ok(())
}

async fn callbacks(args: CallbacksArgs) -> anyhow::Result<()> {
    let providers = args
        .providers
        .iter()
        .map(|name| Provider::parse(name).with_context(|| format!("unknown provider {name}")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!providers.is_empty(), "--providers names none");
    anyhow::ensure!(args.connections > 0, "--connections must be positive");
    anyhow::ensure!(args.seconds > 0.0, "--seconds must be positive");
    anyhow::ensure!(args.warmup >= 0.0, "--warmup cannot be negative");
    anyhow::ensure!(args.requests > 0, "--requests must be positive");
    if let Some(rate) = args.rate {
        anyhow::ensure!(rate > 0.0, "--rate must be positive");
    }
    let credentials = Credentials {
        paysys_user: args.paysys_user.clone(),
        paysys_password: args.paysys_password.clone(),
        plutu_secret: args.plutu_secret.clone(),
        account: args.account.clone(),
    };
    let host = args.target.to_string();
    let requests = Arc::new(Requests(
        (0..args.requests)
            .map(|n| {
                let provider = providers[(n % providers.len() as u64) as usize];
                callbacks::request(provider, n, &credentials, &host)
            })
            .collect(),
    ));
    let plan = Plan {
        addr: args.target,
        connections: args.connections,
        rate: args.rate,
        warmup: Duration::from_secs_f64(args.warmup),
        measure: Duration::from_secs_f64(args.seconds),
    };

    // The generator's CPU over the measured window, read when it starts and
    // when the last answer is in. The window's start is announced on a line
    // of its own, so a harness can read other processes' CPU at the same
    // moment.
    let cpu_at_window = tokio::spawn(async move {
        tokio::time::sleep(plan.warmup).await;
        println!("{{\"event\":\"window_start\"}}");
        cpu_seconds()
    });
    let (tally, measure_from) = load::run(plan, requests)
        .await
        .with_context(|| format!("connecting to {}", args.target))?;
    let elapsed = measure_from.elapsed().as_secs_f64();
    let cpu = match (cpu_at_window.await.ok().flatten(), cpu_seconds()) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };

    let h = &tally.histogram;
    let ms = |micros: u64| micros as f64 / 1000.0;
    let ok = tally.ok();
    let report = serde_json::json!({
        "target": args.target.to_string(),
        "mode": if args.rate.is_some() { "fixed_rate" } else { "max" },
        "offered_rate_per_sec": args.rate,
        "connections": args.connections,
        "threads": args.threads,
        "providers": args.providers,
        "distinct_requests": args.requests,
        "seconds": args.seconds,
        "warmup_seconds": args.warmup,
        "completed": tally.completed(),
        "ok": ok,
        "failed": tally.completed() - ok,
        "connection_errors": tally.errors,
        "statuses": tally.statuses,
        "ok_per_sec": (ok as f64 / args.seconds).round(),
        "latency_ms": {
            "p50": ms(h.value_at_quantile(0.50)),
            "p90": ms(h.value_at_quantile(0.90)),
            "p99": ms(h.value_at_quantile(0.99)),
            "p999": ms(h.value_at_quantile(0.999)),
            "max": ms(h.max()),
            "mean": (h.mean() / 10.0).round() / 100.0,
        },
        "measured_seconds_to_last_answer": (elapsed * 1000.0).round() / 1000.0,
        "cpu_seconds": cpu.map(|c| (c * 1000.0).round() / 1000.0),
        "cpu_us_per_request": cpu.map(|c| (c * 1e6 / tally.completed().max(1) as f64).round()),
    });
    println!("{report}");
    Ok(())
}

/// This process's CPU time (user + system) in seconds, where `/proc` tells.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // utime and stime are the 12th and 13th fields after the command name.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}
