//! Ledger throughput beside plain SQLite on the same disk, same settings.
//!
//! `cargo run --release -p paysettle-store --example bench_ledger -- [observations]`
//! prints one JSON object. Not a test: it measures, it asserts nothing.

// A benchmark harness: any failure should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use jiff::Timestamp;
use paysettle_core::{
    Account, Currency, Money, Observation, ObservedStatus, Provider, ProviderTxnId, Reference,
    Source,
};
use paysettle_sqlite::rusqlite;

#[path = "support/raw_rows.rs"]
mod raw_rows;
use paysettle_store::{ApplyRequest, Ledger, LedgerOptions};

const BATCH: usize = 500;

fn request(i: usize) -> ApplyRequest {
    ApplyRequest {
        observation: Observation {
            provider: Provider::Paysys,
            account: Account::default(),
            reference: Reference::parse(&format!("B-{i}")).unwrap(),
            provider_txn_id: ProviderTxnId::parse(&format!("T-{i}")).ok(),
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
            serde_json::json!({"id": i, "account": format!("B-{i}"), "amount": 1000 + i, "currency": 840, "status": 2}),
        ),
    }
}

fn raw_sqlite(path: &std::path::Path, rows: usize, batch: usize) -> f64 {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").ok();
    conn.pragma_update(None, "synchronous", "FULL").ok();
    conn.execute_batch(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, k TEXT NOT NULL UNIQUE, v TEXT NOT NULL)",
    )
    .ok();
    let started = Instant::now();
    let mut done = 0;
    while done < rows {
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO t (k, v) VALUES (?1, ?2)")
                .unwrap();
            for i in done..(done + batch).min(rows) {
                insert
                    .execute((format!("k-{i}"), "{\"status\":2,\"amount\":1000}"))
                    .unwrap();
            }
        }
        tx.commit().unwrap();
        done += batch;
    }
    rows as f64 / started.elapsed().as_secs_f64()
}

/// Plain inserts of the rows one applied observation writes (a payment, a
/// history row with its raw payload, an outbox event), into the ledger's own
/// schema, with no reads, no dedupe and no state machine: the storage cost
/// of the same data, so the ratio shows what the ledger's logic costs.
fn raw_same_rows(path: &std::path::Path, observations: usize, batch: usize) -> f64 {
    drop(Ledger::open(path, LedgerOptions::default()).unwrap());
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "synchronous", "FULL").ok();
    let body = serde_json::json!({"event_id": "0190e0f0-0000-7000-8000-000000000000", "type": "payment.succeeded", "provider": "paysys",
        "account": "default", "reference": "B-0", "provider_transaction_id": "T-0", "amount": 1000, "currency": "USD",
        "status": "succeeded", "previous_status": "created", "source": "callback", "occurred_at": "2026-11-21T00:00:00.000Z",
        "ledger_version": 1}).to_string();
    let raw = serde_json::json!({"id": 0, "account": "B-0", "amount": 1000, "currency": 840, "status": 2}).to_string();
    let started = Instant::now();
    raw_rows::insert_same_rows(&conn, observations, batch, &raw, &body);
    observations as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let observations: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let singles = (observations / 10).max(100);
    let dir = tempfile::tempdir().unwrap();
    let raw_single = raw_sqlite(&dir.path().join("raw1.db"), singles, 1);
    let raw_batched = raw_sqlite(&dir.path().join("raw2.db"), observations, BATCH);
    let raw_rows = raw_same_rows(&dir.path().join("rows.db"), observations, BATCH);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ledger_single, ledger_batched) = runtime.block_on(async {
        let ledger = Ledger::open(dir.path().join("single.db"), LedgerOptions::default()).unwrap();
        let started = Instant::now();
        for i in 0..singles {
            ledger.apply(request(i)).await.unwrap();
        }
        let single = singles as f64 / started.elapsed().as_secs_f64();

        let ledger = Ledger::open(dir.path().join("batched.db"), LedgerOptions::default()).unwrap();
        let requests: Vec<_> = (0..observations).map(request).collect();
        let started = Instant::now();
        for chunk in requests.chunks(BATCH) {
            ledger.apply_batch(chunk.to_vec()).await.unwrap();
        }
        (
            single,
            observations as f64 / started.elapsed().as_secs_f64(),
        )
    });
    let report = serde_json::json!({
        "observations": observations,
        "batch": BATCH,
        "raw_single_inserts_per_s": raw_single.round(),
        "ledger_single_applies_per_s": ledger_single.round(),
        "raw_batched_inserts_per_s": raw_batched.round(),
        "ledger_batched_applies_per_s": ledger_batched.round(),
        "raw_same_rows_batched_per_s": raw_rows.round(),
        "batched_ratio": (ledger_batched / raw_batched * 1000.0).round() / 1000.0,
        "batched_ratio_same_rows": (ledger_batched / raw_rows * 1000.0).round() / 1000.0,
        "single_ratio": (ledger_single / raw_single * 1000.0).round() / 1000.0,
    });
    println!("{report}");
}
