//! Crash safety: a child process applies long batches to a ledger and is
//! killed with SIGKILL at random moments; every time, the reopened ledger
//! holds whole transactions only. On both backends: a SQLite file, and a
//! PostgreSQL database of the test's own (the server rolls back what the
//! killed client had not committed).
//!
//! The child is this same test binary, re-run with an environment variable
//! that turns `crash_child` from a no-op into the writer.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use paysettle_core::{
    Account, Currency, Money, Observation, ObservedStatus, Provider, ProviderTxnId, Reference,
    Source,
};
use paysettle_sqlite::rusqlite;
use paysettle_store::{ApplyRequest, Ledger, LedgerOptions, LedgerTarget, PgOptions, Registration};

mod support;

use support::{Kind, Place};

/// The SQLite file, or `postgres:` and the database's connection string.
const CHILD_LEDGER: &str = "PAYSETTLE_CRASH_CHILD_LEDGER";
const CHILD_ROUND: &str = "PAYSETTLE_CRASH_CHILD_ROUND";

fn request(reference: &Reference, status: ObservedStatus, money: Option<Money>) -> ApplyRequest {
    ApplyRequest {
        observation: Observation {
            provider: Provider::Portmanat,
            account: Account::default(),
            reference: reference.clone(),
            provider_txn_id: Some(ProviderTxnId::parse(&format!("psp-{reference}")).unwrap()),
            status,
            money,
            provider_status: format!("{status:?}"),
            provider_time: None,
            observed_at: Timestamp::now(),
            source: Source::Check,
            test: false,
            refund_part: None,
        },
        raw: Some(serde_json::json!({"status": "OK"})),
    }
}

/// The child's work: register payments and settle them in batches, forever.
#[test]
fn crash_child() {
    let (Ok(path), Ok(round)) = (std::env::var(CHILD_LEDGER), std::env::var(CHILD_ROUND)) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let target = match path.strip_prefix("postgres:") {
            Some(url) => LedgerTarget::Postgres(PgOptions {
                url: url.to_owned(),
                ..PgOptions::default()
            }),
            None => LedgerTarget::Sqlite(path.into()),
        };
        let ledger = Ledger::connect(&target, LedgerOptions::default())
            .await
            .unwrap();
        let azn = |minor| Money::from_minor(minor, Currency::Azn).unwrap();
        for batch in 0.. {
            let mut requests = Vec::new();
            for i in 0..100 {
                let reference = Reference::parse(&format!("R{round}-{batch}-{i}")).unwrap();
                ledger
                    .register(Registration {
                        provider: Provider::Portmanat,
                        account: Account::default(),
                        reference: reference.clone(),
                        money: azn(100 + i),
                        provider_txn_id: None,
                        registered_at: Timestamp::now(),
                    })
                    .await
                    .unwrap();
                requests.push(request(
                    &reference,
                    ObservedStatus::Pending,
                    Some(azn(100 + i)),
                ));
                let end = match i % 4 {
                    0 => ObservedStatus::Succeeded,
                    1 => ObservedStatus::Failed,
                    2 => ObservedStatus::Refunded {
                        total: Some(azn(50)),
                    },
                    _ => ObservedStatus::Canceled,
                };
                requests.push(request(&reference, end, None));
            }
            ledger.apply_batch(requests).await.unwrap();
        }
    });
}

/// History rows committed so far (0 while the ledger is not there yet).
async fn history_rows(place: &Place) -> i64 {
    match &place.db {
        None => {
            let Ok(conn) = rusqlite::Connection::open_with_flags(
                place.sqlite_path(),
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            ) else {
                return 0;
            };
            conn.query_row("SELECT count(*) FROM history", [], |r| r.get(0))
                .unwrap_or(0)
        }
        Some(db) => match db
            .client()
            .await
            .query_one("SELECT count(*) FROM history", &[])
            .await
        {
            Ok(row) => row.get(0),
            Err(_) => 0,
        },
    }
}

async fn sigkill_at_random_moments_leaves_whole_transactions_only(kind: Kind) {
    let place = Place::new(kind).await;
    let child_ledger = match &place.db {
        None => place.sqlite_path().display().to_string(),
        Some(db) => format!("postgres:{}", db.url),
    };
    let mut seed = Timestamp::now().as_nanosecond() as u64 | 1;
    let mut previous = 0;
    for round in 0..6 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_LEDGER, &child_ledger)
            .env(CHILD_ROUND, round.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait until the child is writing, then let it run a random while.
        let started = Instant::now();
        while history_rows(&place).await <= previous {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the child never wrote"
            );
            assert!(
                child.try_wait().unwrap().is_none(),
                "the child exited early"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        tokio::time::sleep(Duration::from_millis(seed % 300)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();

        let ledger = place.open().await;
        let problems = ledger.integrity_problems().await.unwrap();
        assert!(problems.is_empty(), "round {round}: {problems:#?}");
        let rows = history_rows(&place).await;
        assert!(rows > previous, "round {round} wrote nothing");
        previous = rows;
    }
}

#[tokio::test]
async fn sigkill_at_random_moments_leaves_whole_transactions_only_on_sqlite() {
    sigkill_at_random_moments_leaves_whole_transactions_only(Kind::Sqlite).await
}

#[tokio::test]
async fn sigkill_at_random_moments_leaves_whole_transactions_only_on_postgres() {
    sigkill_at_random_moments_leaves_whole_transactions_only(Kind::Postgres).await
}
