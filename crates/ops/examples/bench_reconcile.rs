//! Reconciliation throughput: the real `paysettle reconcile` binary checks
//! N payments (half Portmanat, half PaySys) against the simulator, which
//! answers every status request after a fixed latency. The ceiling is the
//! concurrency ÷ latency bound; the figure is payments judged per second
//! from the command's start to its exit, beside the command's peak RSS.
//!
//! `cargo build --release --bin paysettle -p paysettle-ops --examples &&
//!  target/release/examples/bench_reconcile [PAYMENTS LATENCY_MS CONCURRENCY]`
//!
//! The simulator runs in this process, the command in its own, so the RSS
//! is the command's alone. Every payment must come back judged `ok` (all are
//! pending at the provider and created in the ledger): a fast but wrong run
//! does not score. Prints one JSON object. Not a test: nothing asserts a
//! figure.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use paysettle_core::money::Currency;
use paysettle_core::{Account, Money, Provider, ProviderTxnId, Reference};
use paysettle_sim::scenario::Latency;
use paysettle_sim::{NewPayment, Provider as SimProvider, ScenarioPatch, Sim, SimConfig};
use paysettle_store::{Ledger, LedgerOptions, Registration};
use tokio::task::JoinSet;

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn binary() -> PathBuf {
    if let Ok(path) = std::env::var("PAYSETTLE_BIN") {
        return PathBuf::from(path);
    }
    let mut path = std::env::current_exe().unwrap();
    path.pop(); // examples/
    path.pop(); // release/
    path.push("paysettle");
    path
}

/// The kernel's high-water mark of a live process's resident set, in KiB.
fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::main]
async fn main() {
    let payments = arg(1, 100_000) as usize;
    let latency_ms = arg(2, 50);
    let concurrency = arg(3, 32) as usize;

    let mut config = SimConfig::for_tests();
    // Pending for the whole run and silent: the figure is the checks alone.
    config.scenario.pending.min_ms = 3_600_000;
    config.scenario.pending.max_ms = 3_600_000;
    config.paysys.notify_pending = false;
    let sim = Sim::start(config).await.unwrap();
    sim.set_scenario(
        None,
        ScenarioPatch {
            latency: Some(Latency::Fixed { ms: latency_ms }),
            ..ScenarioPatch::default()
        },
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ledger_path = dir.path().join("ledger.sqlite");
    let ledger = Ledger::open(&ledger_path, LedgerOptions::default()).unwrap();
    let started = Instant::now();
    let mut registering = JoinSet::new();
    for n in 0..payments {
        let (provider, sim_provider, money) = if n % 2 == 0 {
            (
                Provider::Portmanat,
                SimProvider::Portmanat,
                Money::from_minor(1000, Currency::Azn).unwrap(),
            )
        } else {
            (
                Provider::Paysys,
                SimProvider::Paysys,
                Money::from_minor(100_000, Currency::Uzs).unwrap(),
            )
        };
        let reference = format!("B-{n}");
        let view = sim
            .create_payment(NewPayment::new(sim_provider, &reference, money.minor()))
            .unwrap();
        let registration = Registration {
            provider,
            account: Account::default(),
            reference: Reference::parse(&reference).unwrap(),
            money,
            provider_txn_id: match provider {
                Provider::Portmanat => view
                    .provider_txn_id
                    .as_deref()
                    .map(|t| ProviderTxnId::parse(t).unwrap()),
                _ => None,
            },
            registered_at: Timestamp::now(),
        };
        let ledger = ledger.clone();
        registering.spawn(async move { ledger.register(registration).await.unwrap() });
        if registering.len() >= 512 {
            registering.join_next().await.unwrap().unwrap();
        }
    }
    while let Some(done) = registering.join_next().await {
        done.unwrap();
    }
    drop(ledger);
    eprintln!(
        "bench_reconcile: {payments} payments set up in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let base = sim.base_url().trim_end_matches('/').to_owned();
    let limits = |name: &str| {
        format!(
            "[polling.{name}]\nconcurrency = {concurrency}\nrate_per_sec = 1000000.0\ntimeout_ms = 30000\n"
        )
    };
    let config_path = dir.path().join("paysettle.toml");
    std::fs::write(
        &config_path,
        format!(
            "[ledger]\npath = \"{}\"\n\n{}{}\n[portmanat.default]\nbase_url = \"{base}/portmanat\"\n\n\
             [paysys.default]\ngateway_url = \"{base}/paysys/gateway\"\nservice_id = \"2001\"\nsecret_key = \"demo-paysys-secret\"\n\n\
             [[paysys.default.notify_credentials]]\nuser = \"demo-vendor\"\npassword = \"demo-vendor-secret\"\n",
            ledger_path.display(),
            limits("portmanat"),
            limits("paysys"),
        ),
    )
    .unwrap();
    let report = dir.path().join("report.json");

    let started = Instant::now();
    let mut child = Command::new(binary())
        .arg("reconcile")
        .arg("--config")
        .arg(&config_path)
        .args(["--since", "1d", "--stuck-after", "1d", "--format", "json"])
        .args(["--concurrency", &concurrency.to_string(), "--output"])
        .arg(&report)
        .env("PAYSETTLE_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut peak_kib = 0;
    let status = loop {
        if let Some(kib) = peak_rss_kib(pid) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(status.code(), Some(0), "every payment should be ok");

    let judged: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(judged["summary"]["payments"], payments);
    assert_eq!(judged["summary"]["by_class"]["ok"], payments);
    let requests = {
        let stats = sim.stats();
        stats.portmanat.requests + stats.paysys.requests
    };
    assert_eq!(requests, payments as u64, "one check per payment");

    let per_sec = payments as f64 / seconds;
    let bound = concurrency as f64 * 1000.0 / latency_ms as f64;
    println!(
        "{}",
        serde_json::json!({
            "payments": payments,
            "latency_ms": latency_ms,
            "concurrency": concurrency,
            "seconds": (seconds * 100.0).round() / 100.0,
            "per_sec": per_sec.round(),
            "bound_per_sec": bound.round(),
            "ratio": (per_sec / bound * 1000.0).round() / 1000.0,
            "peak_rss_mb": (peak_kib as f64 / 1024.0 * 10.0).round() / 10.0,
        })
    );
    sim.shutdown().await;
}
