//! The worker's throughput, beside its bounds, measured in one run.
//!
//! - poll: status checks/s against the simulator answering with a set
//!   latency, beside concurrency ÷ latency (what the limits allow at best);
//! - apply: callback messages applied to the ledger per second end to end
//!   (queue → applier → ledger commit → ack), on the embedded queue.
//!
//! `cargo run --release -p paysettle-worker --example bench_worker -- [seconds] [latency_ms] [concurrency]`
//! prints one JSON object. Not a test: it measures, it asserts nothing.

// A benchmark harness: any failure should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use paysettle_core::inbound::{FORMAT_VERSION, InboundCallback, Payload, RawRequest};
use paysettle_core::schedule::CheckPolicy;
use paysettle_core::{
    Account, Currency, Money, Observation, ObservedStatus, Provider, ProviderTxnId, Reference,
    Source,
};
use paysettle_queue::{BackendKind, Message, Queue, QueueConfig, QueueKind};
use paysettle_sim::model::{Outcome, Provider as SimProvider};
use paysettle_sim::scenario::{Latency, ScenarioPatch};
use paysettle_sim::{NewPayment, Sim, SimConfig};
use paysettle_store::{Ledger, LedgerOptions, Registration};
use paysettle_worker::{
    Applier, Poller, PortmanatAccess, ProviderLimits, Relay, StatusClient, WorkerSettings,
};

fn arg(n: usize, default: u64) -> u64 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let seconds = arg(1, 10);
    let latency_ms = arg(2, 20);
    let concurrency = arg(3, 32) as usize;
    let dir = tempfile::tempdir().unwrap();

    // --- poll ---------------------------------------------------------------
    let sim = Sim::start(SimConfig::for_tests()).await.unwrap();
    sim.set_scenario(
        None,
        ScenarioPatch {
            latency: Some(Latency::Fixed { ms: latency_ms }),
            ..ScenarioPatch::default()
        },
    )
    .unwrap();
    let base = sim.base_url().trim_end_matches('/').to_owned();
    let mut settings = WorkerSettings::default();
    settings.portmanat.insert(
        Account::default(),
        PortmanatAccess {
            base_url: format!("{base}/portmanat"),
        },
    );
    // Always due again: every payment is checked as often as the limits allow.
    let policy = CheckPolicy {
        first: Duration::from_millis(1),
        multiplier: 1.0,
        max_interval: Duration::from_millis(1),
        jitter: 0.0,
        deadline: Duration::from_secs(3600),
    };
    settings.limits.insert(
        Provider::Portmanat,
        ProviderLimits {
            concurrency,
            rate_per_sec: 1e9,
            timeout: Duration::from_secs(5),
            policy,
        },
    );
    let settings = Arc::new(settings);
    let ledger = Ledger::open(
        dir.path().join("poll.sqlite"),
        LedgerOptions {
            policies: settings.policies(),
            rules: settings.ledger_rules(),
            ..LedgerOptions::default()
        },
    )
    .unwrap();
    let payments = concurrency * 8;
    for i in 0..payments {
        let reference = format!("B-{i}");
        let view = sim
            .create_payment(
                NewPayment::new(SimProvider::Portmanat, reference.clone(), 1000)
                    .outcome(Outcome::Success)
                    .pending(Duration::from_secs(3600))
                    .callback_url("http://127.0.0.1:9/"),
            )
            .unwrap();
        ledger
            .register(Registration {
                provider: Provider::Portmanat,
                account: Account::default(),
                reference: Reference::parse(&reference).unwrap(),
                money: Money::from_minor(1000, Currency::Azn).unwrap(),
                provider_txn_id: view
                    .provider_txn_id
                    .as_deref()
                    .map(|t| ProviderTxnId::parse(t).unwrap()),
                registered_at: Timestamp::now(),
            })
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    let client = StatusClient::new(Arc::clone(&settings)).unwrap();
    let mut poller = Poller::new(ledger.clone(), client, Arc::clone(&settings));
    // Warm up the connection pool, then measure.
    let warm = Instant::now() + Duration::from_secs(1);
    while Instant::now() < warm {
        poller.run_once().await.unwrap();
        if poller.busy() {
            poller.wait_one().await;
        }
    }
    let before = sim.stats().portmanat;
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    while Instant::now() < until {
        poller.run_once().await.unwrap();
        if poller.busy() {
            poller.wait_one().await;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = sim.stats().portmanat;
    let checks = after.requests - before.requests;
    // What latency the simulator really served: its timer is never early and
    // usually late, so the bound at the set latency is out of reach by that much.
    let served_ms = (after.delayed_micros - before.delayed_micros) as f64
        / (after.delayed - before.delayed).max(1) as f64
        / 1000.0;
    poller.drain(Duration::from_secs(5)).await;
    let checks_per_sec = checks as f64 / elapsed;
    let bound = concurrency as f64 / (latency_ms as f64 / 1000.0);
    let bound_served = concurrency as f64 / (served_ms / 1000.0);
    sim.shutdown().await;

    // --- apply end to end ----------------------------------------------------
    let messages = 20_000usize;
    let queue = Queue::start(QueueConfig {
        backend: BackendKind::Embedded,
        embedded_path: dir.path().join("queue.sqlite"),
        spool_path: None,
        ..QueueConfig::default()
    })
    .await
    .unwrap();
    let mut apply_settings = WorkerSettings {
        batch_size: 512,
        batch_wait: Duration::from_millis(2),
        ..WorkerSettings::default()
    };
    apply_settings.plutu.push(Account::default());
    let apply_settings = Arc::new(apply_settings);
    let ledger = Ledger::open(dir.path().join("apply.sqlite"), LedgerOptions::default()).unwrap();
    let mut bodies = Vec::with_capacity(messages);
    for i in 0..messages {
        let reference = Reference::parse(&format!("INV-{i}")).unwrap();
        let observation = Observation {
            provider: Provider::Plutu,
            account: Account::default(),
            reference,
            provider_txn_id: ProviderTxnId::parse(&format!("{}", 100_000 + i)).ok(),
            status: ObservedStatus::Succeeded,
            money: Money::from_minor(1250, Currency::Usd).ok(),
            provider_status: "mpgs:approved".into(),
            provider_time: None,
            observed_at: Timestamp::now(),
            source: Source::Callback,
        };
        let message = InboundCallback {
            format: FORMAT_VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            provider: Provider::Plutu,
            account: Account::default(),
            received_at: Timestamp::now(),
            client_addr: Some("127.0.0.1:40000".into()),
            payload: Payload::Observation(observation),
            raw: RawRequest {
                method: "GET".into(),
                path: "/callbacks/plutu".into(),
                query: vec![
                    ("gateway".into(), "mpgs".into()),
                    ("approved".into(), "1".into()),
                    ("invoice_no".into(), format!("INV-{i}")),
                ],
                headers: vec![("user-agent".into(), "plutu".into())],
                body: None,
            },
        };
        bodies.push((message.id.clone(), serde_json::to_vec(&message).unwrap()));
    }
    // Fill the queue first, so the figure is the applier's alone.
    let mut publishes = tokio::task::JoinSet::new();
    for chunk in bodies.chunks(messages / 16) {
        let queue = queue.clone();
        let chunk = chunk.to_vec();
        publishes.spawn(async move {
            for (id, body) in chunk {
                queue.publish(&Message::json(id, body)).await.unwrap();
            }
        });
    }
    publishes.join_all().await;
    let relay = Relay::new(ledger.clone(), queue.clone(), 256);
    let client = StatusClient::new(Arc::clone(&apply_settings)).unwrap();
    let mut applier = Applier::new(
        ledger.clone(),
        queue.clone(),
        client,
        Arc::clone(&apply_settings),
        relay.waker(),
    )
    .unwrap();
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let mut applied = 0;
    while applied < messages {
        applied += applier.run_once().await.unwrap().applied;
    }
    let apply_elapsed = started.elapsed().as_secs_f64();
    let apply_cpu = cpu_before
        .zip(cpu_seconds())
        .map(|(before, after)| after - before);
    assert_eq!(queue.message_count(QueueKind::Callbacks).await.unwrap(), 0);

    let report = serde_json::json!({
        "poll": {
            "latency_ms": latency_ms,
            "concurrency": concurrency,
            "payments": payments,
            "checks": checks,
            "seconds": (elapsed * 100.0).round() / 100.0,
            "checks_per_sec": checks_per_sec.round(),
            "bound_per_sec": bound.round(),
            "ratio": (checks_per_sec / bound * 1000.0).round() / 1000.0,
            "served_latency_ms": (served_ms * 1000.0).round() / 1000.0,
            "bound_at_served_latency_per_sec": bound_served.round(),
            "ratio_at_served_latency": (checks_per_sec / bound_served * 1000.0).round() / 1000.0,
        },
        "apply": {
            "messages": messages,
            "batch_size": apply_settings.batch_size,
            "applied_per_sec": (messages as f64 / apply_elapsed).round(),
            // The whole process (applier, ledger writer, queue writer): how
            // busy the cores were, and the CPU each message cost.
            "cpu_busy_percent": apply_cpu.map(|cpu| (cpu / apply_elapsed * 1000.0).round() / 10.0),
            "cpu_us_per_message": apply_cpu.map(|cpu| (cpu / messages as f64 * 1e7).round() / 10.0),
            "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        },
    });
    println!("{report}");
}

/// This process's CPU time (user + system) in seconds, where `/proc` tells.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}
