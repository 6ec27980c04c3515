//! The shared ledger with 1, 2 and 3 workers (issue 20): applies/s and
//! checks/s on PostgreSQL beside raw batched inserts of the same rows into
//! the same server, and the same figures on SQLite (one worker: the product
//! allows one per file) beside raw batched inserts into a file opened with
//! the ledger's own pragmas. Each figure comes with the CPU it cost, per
//! observation or check, by process, measured over the same window.
//!
//! - applies: each worker is a ledger handle of its own (its own pool, or
//!   writer thread), applying batches of distinct new payments that succeed.
//! - checks: a ledger pre-filled with N due payments (pending, on the check
//!   schedule); each worker loops `claim_due_checks` (owner of its own, a
//!   lease) and records each claimed check's result in turn, alternately
//!   `record_check` with a next time past the bench's horizon and
//!   `apply_check` with a final answer, until nothing is due. A check is one
//!   claim and its record. The bench counts payments held by two workers at
//!   once (a shared map of who holds what, set on claim, cleared after the
//!   record) and payments claimed more than once at all; both must be 0.
//! - raw: the rows one applied observation writes (a payment, a history row
//!   with its raw payload, an outbox event) inserted in batches into the
//!   ledger's own schema, with no reads, no locks, no dedupe and no decision:
//!   the storage's own limit for the same data on this machine.
//!
//! `cargo run --release -p paysettle-store --example bench_ledger_workers -- [observations] [checks]`
//! with PostgreSQL at `PAYSETTLE_BENCH_POSTGRES` (a key-value connection
//! string; default `host=127.0.0.1 port=5432 user=postgres dbname=test
//! sslmode=disable`). Each round runs in a database (or temporary file) of
//! its own, dropped after. Prints one JSON object. Not a test: it measures;
//! it stops loudly only when the ledger fails or a check was lost.

// A benchmark harness: any failure should stop it loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use paysettle_core::{
    Account, Currency, Money, Observation, ObservedStatus, Provider, ProviderTxnId, Reference,
    Source,
};
use paysettle_store::{ApplyRequest, Ledger, LedgerOptions, PaymentId, PgOptions};
#[path = "support/raw_rows.rs"]
mod raw_rows;

use paysettle_testkit::procfs::{load_average, machine_busy, process_cpu};
use serde_json::{Value, json};

const BATCH: usize = 500;
/// How many due checks a worker claims at once.
const CLAIM: usize = 50;
/// Longer than any round: a claim never ends by its lease here.
const LEASE: Duration = Duration::from_secs(600);

// --- PostgreSQL databases -----------------------------------------------------

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

async fn open_pg(url: &str) -> Ledger {
    Ledger::open_postgres(
        &PgOptions {
            url: url.to_owned(),
            ..PgOptions::default()
        },
        LedgerOptions::default(),
    )
    .await
    .unwrap()
}

// --- CPU from /proc -------------------------------------------------------------

const BENCH: &str = "bench (ledger and client)";
const BACKENDS: &str = "postgres backends (this database)";
const SERVER: &str = "postgres server (wal writer, checkpointer, ...)";
const OTHER: &str = "rest of the machine";

/// CPU seconds by role: this process, the PostgreSQL backends serving the
/// round's database, the server's own processes; and the whole machine.
struct CpuReading {
    roles: BTreeMap<&'static str, f64>,
    /// Each backend's own reading, so one that starts in the window counts
    /// from zero.
    backends: HashMap<u32, f64>,
    machine: Option<f64>,
}

fn read_cpu(database: Option<&str>) -> CpuReading {
    let mut roles = BTreeMap::new();
    roles.insert(BENCH, process_cpu(std::process::id()).unwrap_or(0.0));
    let mut backends = HashMap::new();
    if let Some(database) = database {
        let mut server = 0.0;
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
            if comm.trim() != "postgres" {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline);
            let Some(cpu) = process_cpu(pid) else {
                continue;
            };
            if cmdline.contains(database) {
                backends.insert(pid, cpu);
            } else if ["walwriter", "checkpointer", "background writer"]
                .iter()
                .any(|role| cmdline.contains(role))
            {
                server += cpu;
            }
        }
        roles.insert(SERVER, server);
    }
    CpuReading {
        roles,
        backends,
        machine: machine_busy(),
    }
}

/// CPU microseconds per unit of work by role over a window, with the rest of
/// the machine (work that is not this benchmark's) and how busy it was.
fn cpu_per(before: &CpuReading, after: &CpuReading, units: usize, seconds: f64) -> Value {
    let mut spent: BTreeMap<&str, f64> = after
        .roles
        .iter()
        .filter_map(|(k, v)| Some((*k, v - before.roles.get(k)?)))
        .collect();
    if !after.backends.is_empty() {
        let backends: f64 = after
            .backends
            .iter()
            .map(|(pid, cpu)| cpu - before.backends.get(pid).copied().unwrap_or(0.0))
            .sum();
        spent.insert(BACKENDS, backends);
    }
    let known: f64 = spent.values().sum();
    let per = |cpu: f64| (cpu * 1e7 / units.max(1) as f64).round() / 10.0;
    let mut out = serde_json::Map::new();
    for (name, cpu) in &spent {
        out.insert((*name).to_owned(), json!(per(*cpu)));
    }
    out.insert("total_measured".to_owned(), json!(per(known)));
    if let (Some(b), Some(a)) = (before.machine, after.machine) {
        out.insert(OTHER.to_owned(), json!(per((a - b - known).max(0.0))));
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        out.insert(
            "machine_busy_percent".to_owned(),
            json!(((a - b) / (seconds * cores) * 1000.0).round() / 10.0),
        );
    }
    Value::Object(out)
}

/// A measured window: the rate of `units` over it and their CPU.
struct Measured {
    rate: f64,
    cpu: Value,
}

impl Measured {
    fn json(&self) -> Value {
        json!({"per_s": self.rate.round(), "cpu_us_per_unit": self.cpu})
    }
}

// --- what is written -----------------------------------------------------------

fn observation(
    tag: &str,
    worker: usize,
    i: usize,
    status: ObservedStatus,
    source: Source,
) -> ApplyRequest {
    ApplyRequest {
        observation: Observation {
            provider: Provider::Paysys,
            account: Account::default(),
            reference: Reference::parse(&format!("{tag}-{worker}-{i}")).unwrap(),
            provider_txn_id: ProviderTxnId::parse(&format!("T-{tag}-{worker}-{i}")).ok(),
            status,
            money: Money::from_minor(1000 + i as i64, Currency::Usd).ok(),
            provider_status: "2".into(),
            provider_time: None,
            observed_at: Timestamp::now(),
            source,
            test: false,
            refund_part: None,
        },
        raw: Some(
            json!({"id": i, "account": format!("{tag}-{worker}-{i}"), "amount": 1000 + i, "currency": 840, "status": 2}),
        ),
    }
}

fn event_body() -> String {
    json!({"event_id": "0190e0f0-0000-7000-8000-000000000000", "type": "payment.succeeded", "provider": "paysys",
        "account": "default", "reference": "B-0", "provider_transaction_id": "T-0", "amount": 1000, "currency": "USD",
        "status": "succeeded", "previous_status": "created", "source": "callback", "occurred_at": "2026-11-21T00:00:00.000Z",
        "ledger_version": 1}).to_string()
}

fn raw_payload() -> String {
    json!({"id": 0, "account": "B-0", "amount": 1000, "currency": 840, "status": 2}).to_string()
}

// --- applies --------------------------------------------------------------------

/// `workers` handles applying `observations` distinct new payments between
/// them, in batches, all at once.
async fn applies(handles: Vec<Ledger>, observations: usize, database: Option<&str>) -> Measured {
    let workers = handles.len();
    let each = observations / workers;
    let before = read_cpu(database);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, ledger) in handles.iter().cloned().enumerate() {
        tasks.spawn(async move {
            let requests: Vec<_> = (0..each)
                .map(|i| observation("B", worker, i, ObservedStatus::Succeeded, Source::Callback))
                .collect();
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
    let seconds = started.elapsed().as_secs_f64();
    // Read while the pools' connections (and so their backends) live.
    let after = read_cpu(database);
    drop(handles);
    Measured {
        rate: (each * workers) as f64 / seconds,
        cpu: cpu_per(&before, &after, each * workers, seconds),
    }
}

// --- checks ---------------------------------------------------------------------

/// What a checks round saw besides its rate.
struct ChecksRound {
    measured: Measured,
    checked: usize,
    claim_calls: usize,
    held_by_two_at_once: usize,
    claimed_more_than_once: usize,
    still_due_after: usize,
}

/// Fills `setup` with `payments` pending payments, each on the check
/// schedule, and returns the horizon at which they are all due.
async fn prefill_due(setup: &Ledger, payments: usize) -> Timestamp {
    let requests: Vec<_> = (0..payments)
        .map(|i| observation("C", 0, i, ObservedStatus::Pending, Source::Callback))
        .collect();
    for chunk in requests.chunks(BATCH) {
        for outcome in setup.apply_batch(chunk.to_vec()).await.unwrap() {
            outcome.unwrap();
        }
    }
    // The first check is seconds after a payment is first heard of; an hour
    // on, every one is due.
    let horizon = Timestamp::now()
        .checked_add(SignedDuration::from_hours(1))
        .unwrap();
    let due = setup.due_checks(horizon, payments + 1).await.unwrap().len();
    assert_eq!(
        due, payments,
        "every pre-filled payment is due at the horizon"
    );
    horizon
}

/// `handles` as workers checking everything due at `horizon` until nothing is.
async fn checks(
    handles: Vec<Ledger>,
    setup: &Ledger,
    horizon: Timestamp,
    payments: usize,
    database: Option<&str>,
) -> ChecksRound {
    // Past the horizon: a recorded check is never due again in this round.
    let later = horizon.checked_add(SignedDuration::from_hours(24)).unwrap();
    let held: Arc<Mutex<HashMap<PaymentId, usize>>> = Arc::default();
    let claims: Arc<Mutex<HashMap<PaymentId, usize>>> = Arc::default();
    let overlaps = Arc::new(Mutex::new(0usize));
    let before = read_cpu(database);
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (worker, ledger) in handles.iter().cloned().enumerate() {
        let (held, claims, overlaps) = (held.clone(), claims.clone(), overlaps.clone());
        tasks.spawn(async move {
            let owner = format!("bench-worker-{worker}");
            let (mut checked, mut calls) = (0usize, 0usize);
            loop {
                let claimed = ledger
                    .claim_due_checks(&owner, horizon, LEASE, CLAIM)
                    .await
                    .unwrap();
                calls += 1;
                if claimed.is_empty() {
                    break;
                }
                {
                    let mut held = held.lock().unwrap();
                    let mut claims = claims.lock().unwrap();
                    for check in &claimed {
                        if held.insert(check.payment.id, worker).is_some() {
                            *overlaps.lock().unwrap() += 1;
                        }
                        *claims.entry(check.payment.id).or_default() += 1;
                    }
                }
                for check in claimed {
                    let payment = check.payment;
                    if checked % 2 == 0 {
                        ledger
                            .record_check(payment.id, Some(later), None)
                            .await
                            .unwrap();
                    } else {
                        let mut answer =
                            observation("C", 0, 0, ObservedStatus::Succeeded, Source::Check);
                        answer.observation.reference = payment.reference.clone();
                        answer.observation.provider_txn_id = payment.provider_txn_id.clone();
                        answer.observation.money = payment.expected.or(payment.paid);
                        ledger.apply_check(answer, later).await.unwrap();
                    }
                    held.lock().unwrap().remove(&payment.id);
                    checked += 1;
                }
            }
            (checked, calls)
        });
    }
    let (mut checked, mut claim_calls) = (0, 0);
    while let Some(done) = tasks.join_next().await {
        let (c, k) = done.unwrap();
        checked += c;
        claim_calls += k;
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = read_cpu(database);
    drop(handles);
    let still_due_after = setup.due_checks(horizon, payments + 1).await.unwrap().len();
    let claimed_more_than_once = claims.lock().unwrap().values().filter(|n| **n > 1).count();
    let held_by_two_at_once = *overlaps.lock().unwrap();
    ChecksRound {
        measured: Measured {
            rate: checked as f64 / seconds,
            cpu: cpu_per(&before, &after, checked, seconds),
        },
        checked,
        claim_calls,
        held_by_two_at_once,
        claimed_more_than_once,
        still_due_after,
    }
}

impl ChecksRound {
    fn json(&self, workers: usize) -> Value {
        json!({
            "workers": workers,
            "checks_per_s": self.measured.rate.round(),
            "checked": self.checked,
            "claim_calls": self.claim_calls,
            "held_by_two_workers_at_once": self.held_by_two_at_once,
            "claimed_more_than_once": self.claimed_more_than_once,
            "still_due_after": self.still_due_after,
            "cpu_us_per_check": self.measured.cpu,
        })
    }
}

// --- raw inserts ------------------------------------------------------------------

/// Raw batched inserts into the ledger's own PostgreSQL schema.
async fn raw_pg(observations: usize) -> Measured {
    let (name, url) = create_database().await;
    drop(open_pg(&url).await);
    // Planned as the ledger plans (see `PgLedger::open`).
    let url = format!("{url} options='-c plan_cache_mode=force_custom_plan'");
    let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let (body, raw) = (event_body(), raw_payload());
    let payment = client.prepare("INSERT INTO payments (provider, account, reference, provider_txn_id, status, currency, \
        expected_minor, paid_minor, registered, version, created_at_ms, updated_at_ms) \
        VALUES ('paysys', 'default', $1, $2, 'succeeded', 'USD', 1000, 1000, false, 1, 0, 0) RETURNING id").await.unwrap();
    let history = client.prepare("INSERT INTO history (payment_id, provider, dedupe_key, source, observed_status, \
        provider_status, currency, minor, observed_at_ms, recorded_at_ms, outcome, from_status, to_status, version, raw) \
        VALUES ($1, 'paysys', $2, 'callback', 'succeeded', '2', 'USD', 1000, 0, 0, 'applied', 'created', 'succeeded', 1, $3) \
        RETURNING id").await.unwrap();
    let outbox = client.prepare("INSERT INTO outbox (event_id, payment_id, history_id, event_type, routing_key, body, created_at_ms) \
        VALUES ($1, $2, $3, 'payment.succeeded', 'payment.succeeded.paysys', $4, 0)").await.unwrap();
    let before = read_cpu(Some(&name));
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
    let seconds = started.elapsed().as_secs_f64();
    let after = read_cpu(Some(&name));
    drop(client);
    drop_database(&name).await;
    Measured {
        rate: observations as f64 / seconds,
        cpu: cpu_per(&before, &after, observations, seconds),
    }
}

/// Raw batched inserts into the SQLite ledger's own schema, in a file
/// opened with the ledger's pragmas (`paysettle_sqlite::open` with the
/// options `SqliteLedger::open` gives it).
fn raw_sqlite(path: &Path, observations: usize) -> Measured {
    drop(Ledger::open(path, LedgerOptions::default()).unwrap());
    let options = paysettle_sqlite::Options {
        synchronous: paysettle_sqlite::Synchronous::Full,
        busy_timeout: Duration::from_secs(5),
        foreign_keys: true,
        secure_delete: false,
    };
    let conn = paysettle_sqlite::open(path, &options).unwrap();
    let (body, raw) = (event_body(), raw_payload());
    let before = read_cpu(None);
    let started = Instant::now();
    raw_rows::insert_same_rows(&conn, observations, BATCH, &raw, &body);
    let seconds = started.elapsed().as_secs_f64();
    let after = read_cpu(None);
    Measured {
        rate: observations as f64 / seconds,
        cpu: cpu_per(&before, &after, observations, seconds),
    }
}

// --- the rounds ---------------------------------------------------------------------

async fn pg_applies(workers: usize, observations: usize) -> Measured {
    let (name, url) = create_database().await;
    let mut handles = Vec::new();
    for _ in 0..workers {
        handles.push(open_pg(&url).await);
    }
    let measured = applies(handles, observations, Some(&name)).await;
    drop_database(&name).await;
    measured
}

async fn pg_checks(workers: usize, payments: usize) -> ChecksRound {
    let (name, url) = create_database().await;
    let setup = open_pg(&url).await;
    let horizon = prefill_due(&setup, payments).await;
    let mut handles = Vec::new();
    for _ in 0..workers {
        handles.push(open_pg(&url).await);
    }
    let round = checks(handles, &setup, horizon, payments, Some(&name)).await;
    drop(setup);
    drop_database(&name).await;
    round
}

/// The ratio `a / b`, to three places.
fn ratio(a: f64, b: f64) -> f64 {
    (a / b * 1000.0).round() / 1000.0
}

fn with_workers(mut value: Value, workers: usize) -> Value {
    value["workers"] = json!(workers);
    value
}

fn total_cpu(measured: &Measured) -> f64 {
    measured.cpu["total_measured"].as_f64().unwrap_or(f64::NAN)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let observations: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(12_000);
    let payments: usize = args
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(observations / 4);
    let load_before = load_average();
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = runtime.block_on(async {
        // PostgreSQL.
        let raw = raw_pg(observations).await;
        let mut pg_apply = Vec::new();
        let mut pg_check = Vec::new();
        for workers in 1..=3 {
            pg_apply.push(pg_applies(workers, observations).await);
            pg_check.push(pg_checks(workers, payments).await);
        }
        // SQLite: one worker per file.
        let dir = tempfile::tempdir().unwrap();
        let sqlite_raw = raw_sqlite(&dir.path().join("raw.db"), observations);
        let ledger = Ledger::open(dir.path().join("applies.db"), LedgerOptions::default()).unwrap();
        let sqlite_apply = applies(vec![ledger], observations, None).await;
        let setup = Ledger::open(dir.path().join("checks.db"), LedgerOptions::default()).unwrap();
        let horizon = prefill_due(&setup, payments).await;
        let sqlite_check = checks(vec![setup.clone()], &setup, horizon, payments, None).await;
        drop(setup);

        let apply_rates: Vec<f64> = pg_apply.iter().map(|m| m.rate.round()).collect();
        let check_rates: Vec<f64> = pg_check.iter().map(|c| c.measured.rate.round()).collect();
        let doubles: usize = pg_check
            .iter()
            .chain([&sqlite_check])
            .map(|c| c.held_by_two_at_once + c.claimed_more_than_once)
            .sum();
        let pg_applies_json: Vec<Value> = pg_apply
            .iter()
            .enumerate()
            .map(|(i, m)| with_workers(m.json(), i + 1))
            .collect();
        let sqlite_applies_json = with_workers(sqlite_apply.json(), 1);
        json!({
            "observations": observations,
            "check_payments": payments,
            "batch": BATCH,
            "claim_limit": CLAIM,
            "lease_s": LEASE.as_secs(),
            "postgres": {
                "raw_batched_inserts": raw.json(),
                "applies": pg_applies_json,
                "checks": pg_check.iter().enumerate().map(|(i, c)| c.json(i + 1)).collect::<Vec<_>>(),
                "applies_per_s_1_2_3_workers": apply_rates,
                "checks_per_s_1_2_3_workers": check_rates,
                "ratio_3_workers_to_raw": ratio(pg_apply[2].rate, raw.rate),
                // What a raw row costs ÷ what an applied observation costs:
                // the share of the machine's own limit the ledger's CPU allows.
                "cpu_ratio_raw_to_applied_1_2_3_workers": pg_apply.iter()
                    .map(|m| ratio(total_cpu(&raw), total_cpu(m))).collect::<Vec<_>>(),
            },
            "sqlite": {
                "raw_batched_inserts": sqlite_raw.json(),
                "applies": sqlite_applies_json,
                "checks": sqlite_check.json(1),
                "ratio_1_worker_to_raw": ratio(sqlite_apply.rate, sqlite_raw.rate),
                "cpu_ratio_raw_to_applied": ratio(total_cpu(&sqlite_raw), total_cpu(&sqlite_apply)),
                "workers_2_and_3": "not applicable: an SQLite ledger takes one worker per file (the worker holds the file's WorkerClaim; a second is refused), so more workers mean PostgreSQL",
            },
            "doubled_claims_total": doubles,
            "seconds": started.elapsed().as_secs(),
            "load_before": load_before,
            "load_after": load_average(),
        })
    });
    println!("{report}");
}
