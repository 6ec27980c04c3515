//! The PostgreSQL ledger's throughput with 1, 2 and 3 workers (ledger
//! handles of their own, each with its pool, applying batches of distinct
//! payments at once), beside raw batched inserts of the same rows into the
//! same server: the storage cost of the same data, so the ratio shows what
//! the ledger's logic and locking cost.
//!
//! `cargo run --release -p paysettle-store --example bench_ledger_pg -- [observations]`
//! with the server at `PAYSETTLE_BENCH_POSTGRES` (a key-value connection
//! string; default `host=127.0.0.1 port=5432 user=postgres dbname=test
//! sslmode=disable`). Each round runs in a database of its own, dropped
//! after. Prints one JSON object. Not a test: it measures, it asserts nothing.

// A benchmark harness: any failure should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use jiff::Timestamp;
use paysettle_core::{
    Account, Currency, Money, Observation, ObservedStatus, Provider, ProviderTxnId, Reference,
    Source,
};
use paysettle_store::{ApplyRequest, Ledger, LedgerOptions, PgOptions};

const BATCH: usize = 500;

fn admin_url() -> String {
    std::env::var("PAYSETTLE_BENCH_POSTGRES").unwrap_or_else(|_| {
        "host=127.0.0.1 port=5432 user=postgres dbname=test sslmode=disable".to_owned()
    })
}

async fn admin() -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// A database of the round's own; `drop_database` removes it.
async fn create_database() -> (String, String) {
    let name = format!("paysettle_bench_{}", uuid::Uuid::new_v4().simple());
    admin()
        .await
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    let url = format!("{} dbname={name}", admin_url());
    (name, url)
}

async fn drop_database(name: &str) {
    admin()
        .await
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .await
        .unwrap();
}

fn request(worker: usize, i: usize) -> ApplyRequest {
    ApplyRequest {
        observation: Observation {
            provider: Provider::Paysys,
            account: Account::default(),
            reference: Reference::parse(&format!("B-{worker}-{i}")).unwrap(),
            provider_txn_id: ProviderTxnId::parse(&format!("T-{worker}-{i}")).ok(),
            status: ObservedStatus::Succeeded,
            money: Money::from_minor(1000 + i as i64, Currency::Usd).ok(),
            provider_status: "2".into(),
            provider_time: None,
            observed_at: Timestamp::now(),
            source: Source::Callback,
            test: false,
            refund_part: None,
        },
        raw: Some(
            serde_json::json!({"id": i, "account": format!("B-{worker}-{i}"), "amount": 1000 + i, "currency": 840, "status": 2}),
        ),
    }
}

/// Applies/s with `workers` handles applying `observations` between them.
async fn ledger_round(workers: usize, observations: usize) -> f64 {
    let (name, url) = create_database().await;
    let pg = PgOptions {
        url,
        ..PgOptions::default()
    };
    let mut handles = Vec::new();
    for _ in 0..workers {
        handles.push(
            Ledger::open_postgres(&pg, LedgerOptions::default())
                .await
                .unwrap(),
        );
    }
    let each = observations / workers;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, ledger) in handles.into_iter().enumerate() {
        tasks.spawn(async move {
            let requests: Vec<_> = (0..each).map(|i| request(worker, i)).collect();
            for chunk in requests.chunks(BATCH) {
                for outcome in ledger.apply_batch(chunk.to_vec()).await.unwrap() {
                    outcome.unwrap();
                }
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let rate = (each * workers) as f64 / started.elapsed().as_secs_f64();
    drop_database(&name).await;
    rate
}

/// Raw batched inserts of the rows one applied observation writes (a
/// payment, a history row with its raw payload, an outbox event), into the
/// ledger's own schema, with no reads, no locks, no dedupe and no decision.
async fn raw_round(observations: usize) -> f64 {
    let (name, url) = create_database().await;
    drop(
        Ledger::open_postgres(
            &PgOptions {
                url: url.clone(),
                ..PgOptions::default()
            },
            LedgerOptions::default(),
        )
        .await
        .unwrap(),
    );
    // Planned as the ledger plans (see `PgLedger::open`).
    let url = format!("{url} options='-c plan_cache_mode=force_custom_plan'");
    let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let body = serde_json::json!({"event_id": "0190e0f0-0000-7000-8000-000000000000", "type": "payment.succeeded", "provider": "paysys",
        "account": "default", "reference": "B-0", "provider_transaction_id": "T-0", "amount": 1000, "currency": "USD",
        "status": "succeeded", "previous_status": "created", "source": "callback", "occurred_at": "2026-11-21T00:00:00.000Z",
        "ledger_version": 1}).to_string();
    let raw = serde_json::json!({"id": 0, "account": "B-0", "amount": 1000, "currency": 840, "status": 2}).to_string();
    let payment = client.prepare("INSERT INTO payments (provider, account, reference, provider_txn_id, status, currency, \
        expected_minor, paid_minor, registered, version, created_at_ms, updated_at_ms) \
        VALUES ('paysys', 'default', $1, $2, 'succeeded', 'USD', 1000, 1000, false, 1, 0, 0) RETURNING id").await.unwrap();
    let history = client.prepare("INSERT INTO history (payment_id, provider, dedupe_key, source, observed_status, \
        provider_status, currency, minor, observed_at_ms, recorded_at_ms, outcome, from_status, to_status, version, raw) \
        VALUES ($1, 'paysys', $2, 'callback', 'succeeded', '2', 'USD', 1000, 0, 0, 'applied', 'created', 'succeeded', 1, $3) \
        RETURNING id").await.unwrap();
    let outbox = client.prepare("INSERT INTO outbox (event_id, payment_id, history_id, event_type, routing_key, body, created_at_ms) \
        VALUES ($1, $2, $3, 'payment.succeeded', 'payment.succeeded.paysys', $4, 0)").await.unwrap();
    let started = Instant::now();
    let mut done = 0;
    while done < observations {
        let tx = client.transaction().await.unwrap();
        for i in done..(done + BATCH).min(observations) {
            let payment_id: i64 = tx
                .query_one(&payment, &[&format!("B-{i}"), &format!("T-{i}")])
                .await
                .unwrap()
                .get(0);
            let history_id: i64 = tx
                .query_one(
                    &history,
                    &[
                        &payment_id,
                        &format!("callback|default|B-{i}|T-{i}|2|succeeded|1000USD|-"),
                        &raw,
                    ],
                )
                .await
                .unwrap()
                .get(0);
            tx.execute(
                &outbox,
                &[
                    &uuid::Uuid::now_v7().to_string(),
                    &payment_id,
                    &history_id,
                    &body,
                ],
            )
            .await
            .unwrap();
        }
        tx.commit().await.unwrap();
        done += BATCH;
    }
    let rate = observations as f64 / started.elapsed().as_secs_f64();
    drop(client);
    drop_database(&name).await;
    rate
}

fn main() {
    let observations: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(12_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(async {
        let raw = raw_round(observations).await;
        let mut rates = Vec::new();
        for workers in 1..=3 {
            rates.push(ledger_round(workers, observations).await);
        }
        serde_json::json!({
            "observations": observations,
            "batch": BATCH,
            "raw_batched_inserts_per_s": raw.round(),
            "ledger_batched_applies_per_s_1_2_3_workers": rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
            "ratio_3_workers_to_raw": (rates[2] / raw * 1000.0).round() / 1000.0,
        })
    });
    println!("{report}");
}
