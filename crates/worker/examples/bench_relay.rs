//! The relay's throughput beside its ceiling, in one run on RabbitMQ:
//!
//! - relay: settled events published per second from the ledger's outbox
//!   to the events exchange (read a batch, publish it with confirms, mark
//!   it sent), `Relay::run_until_idle` over `events` outbox rows;
//! - ceiling: the same events published with confirms through
//!   `Queue::publish_event` alone, as many in flight as the relay's batch,
//!   no ledger (the queue crate adds nothing measurable to raw lapin: see
//!   `bench_publish`).
//!
//! Both go to the same exchange and the same quorum queue (the finance
//! queue, bound to `payment.#`). They run in turn for `rounds` rounds, the
//! order swapped each round so neither always meets the fuller queue;
//! medians are reported.
//!
//! `cargo run --release -p paysettle-worker --example bench_relay -- [events] [rounds] [batch]`
//! prints one JSON object. Needs RabbitMQ (`PAYSETTLE_BENCH_AMQP_URL`). The
//! topology is left under the printed `queue_prefix` (this crate has no
//! broker client to delete it): `bench_publish --delete-prefix` removes it,
//! as `scripts/bench.sh` does. Not a test: it measures, it asserts nothing
//! about the figures.

// A benchmark harness: any failure should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use paysettle_core::{
    Account, Currency, Money, Observation, ObservedStatus, Provider, ProviderTxnId, Reference,
    Source,
};
use paysettle_queue::{BackendKind, Message, Queue, QueueConfig};
use paysettle_store::{ApplyRequest, Ledger, LedgerOptions, OutboxEvent};
use paysettle_worker::Relay;

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn observation(round: usize, i: usize) -> ApplyRequest {
    ApplyRequest {
        observation: Observation {
            provider: Provider::Paysys,
            account: Account::default(),
            reference: Reference::parse(&format!("R{round}-{i}")).unwrap(),
            provider_txn_id: ProviderTxnId::parse(&format!("T{round}-{i}")).ok(),
            status: ObservedStatus::Succeeded,
            money: Money::from_minor(1000 + i as i64, Currency::Usd).ok(),
            provider_status: "2".into(),
            provider_time: None,
            observed_at: Timestamp::now(),
            source: Source::Callback,
            test: false,
            refund_part: None,
        },
        raw: None,
    }
}

/// Fills the outbox with `events` settled events (one per applied payment).
async fn fill(ledger: &Ledger, round: usize, events: usize) {
    let requests: Vec<_> = (0..events).map(|i| observation(round, i)).collect();
    for chunk in requests.chunks(500) {
        ledger.apply_batch(chunk.to_vec()).await.unwrap();
    }
}

/// The same events published with confirms, `batch` in flight, no ledger.
async fn ceiling(queue: &Queue, outbox: &Arc<Vec<OutboxEvent>>, batch: usize) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..batch {
        let (queue, outbox, next) = (queue.clone(), outbox.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(event) = outbox.get(i) else { return };
                let message = Message::json(event.event_id.clone(), event.body.clone())
                    .with_header("event-type", event.event_type.clone());
                queue
                    .publish_event(&event.routing_key, &message)
                    .await
                    .unwrap();
            }
        });
    }
    tasks.join_all().await;
    outbox.len() as f64 / started.elapsed().as_secs_f64()
}

/// The relay emptying the outbox.
async fn relay(ledger: &Ledger, queue: &Queue, batch: usize, events: usize) -> f64 {
    let relay = Relay::new(ledger.clone(), queue.clone(), batch);
    let started = Instant::now();
    let published = relay.run_until_idle().await.unwrap();
    let rate = published as f64 / started.elapsed().as_secs_f64();
    assert_eq!(published, events, "the relay sent every event");
    assert!(ledger.unpublished(1).await.unwrap().is_empty());
    rate
}

#[tokio::main]
async fn main() {
    let events = arg(1, 20_000);
    let rounds = arg(2, 3);
    let batch = arg(3, paysettle_worker::WorkerSettings::default().relay_batch);
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let queue = Queue::start(QueueConfig {
        backend: BackendKind::RabbitMq,
        amqp_url: std::env::var("PAYSETTLE_BENCH_AMQP_URL")
            .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned()),
        prefix: prefix.clone(),
        spool_path: None,
        confirm_timeout: Duration::from_secs(30),
        ..QueueConfig::default()
    })
    .await
    .unwrap();

    let (mut relay_rates, mut raw_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let ledger = Ledger::open(
            dir.path().join(format!("ledger-{round}.sqlite")),
            LedgerOptions::default(),
        )
        .unwrap();
        fill(&ledger, round, events).await;
        // The same bodies and routing keys the relay is about to send.
        let outbox = Arc::new(ledger.unpublished(events).await.unwrap());
        assert_eq!(outbox.len(), events, "one event per applied payment");

        let (raw, relayed) = if round % 2 == 0 {
            let raw = ceiling(&queue, &outbox, batch).await;
            (raw, relay(&ledger, &queue, batch, events).await)
        } else {
            let relayed = relay(&ledger, &queue, batch, events).await;
            (ceiling(&queue, &outbox, batch).await, relayed)
        };
        raw_rates.push(raw);
        relay_rates.push(relayed);
        ratios.push(relayed / raw);
    }
    queue.shutdown(Duration::from_secs(5)).await;
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let report = serde_json::json!({
        "queue_prefix": prefix,
        "events": events,
        "rounds": rounds,
        "batch": batch,
        "relay_events_per_sec": median(relay_rates.clone()).round(),
        "relay_events_per_sec_each_round": relay_rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        "raw_confirmed_publishes_per_sec": median(raw_rates.clone()).round(),
        "raw_each_round": raw_rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
        "ratio": (median(ratios) * 1000.0).round() / 1000.0,
        "raw_note": "Queue::publish_event of the same events, routing keys and headers, `batch` in flight, no ledger",
    });
    println!("{report}");
}
