//! Versioned schema migrations, embedded in the binary and applied at open.
//!
//! The version lives in SQLite's `user_version`. Each migration runs in the
//! same transaction as the version bump, so a crash mid-migration leaves the
//! old version, and opening again simply retries. A file whose version is
//! newer than the last migration here was written by a newer paysettle and is
//! refused rather than misread.

use paysettle_sqlite::rusqlite::{self, Connection};

use crate::error::StoreError;

/// Each entry is one schema version; never edit a released one, add another.
const MIGRATIONS: &[&str] = &[
    // 1: payments, history, outbox, check schedule.
    "
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;

    CREATE TABLE payments (
        id              INTEGER PRIMARY KEY,
        provider        TEXT NOT NULL,
        account         TEXT NOT NULL,
        reference       TEXT NOT NULL,
        provider_txn_id TEXT,
        status          TEXT NOT NULL,
        currency        TEXT,
        expected_minor  INTEGER,
        paid_minor      INTEGER,
        refunded_minor  INTEGER,
        registered      INTEGER NOT NULL,
        mismatch        TEXT,
        version         INTEGER NOT NULL,
        created_at_ms   INTEGER NOT NULL,
        updated_at_ms   INTEGER NOT NULL,
        UNIQUE (provider, account, reference)
    ) STRICT;
    CREATE INDEX payments_by_txn ON payments (provider, account, provider_txn_id);
    CREATE INDEX payments_by_status ON payments (status, updated_at_ms);
    CREATE INDEX payments_by_update ON payments (updated_at_ms);

    CREATE TABLE history (
        id                 INTEGER PRIMARY KEY,
        payment_id         INTEGER NOT NULL REFERENCES payments (id),
        provider           TEXT NOT NULL,
        dedupe_key         TEXT NOT NULL,
        source             TEXT NOT NULL,
        observed_status    TEXT NOT NULL,
        provider_status    TEXT NOT NULL,
        currency           TEXT,
        minor              INTEGER,
        refund_total_minor INTEGER,
        provider_time_ms   INTEGER,
        provider_time_raw  TEXT,
        observed_at_ms     INTEGER NOT NULL,
        recorded_at_ms     INTEGER NOT NULL,
        outcome            TEXT NOT NULL,
        from_status        TEXT,
        to_status          TEXT,
        reason             TEXT,
        version            INTEGER NOT NULL,
        raw                TEXT,
        UNIQUE (provider, dedupe_key)
    ) STRICT;
    CREATE INDEX history_by_payment ON history (payment_id, id);

    CREATE TABLE outbox (
        seq             INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id        TEXT NOT NULL UNIQUE,
        payment_id      INTEGER NOT NULL REFERENCES payments (id),
        history_id      INTEGER NOT NULL REFERENCES history (id),
        event_type      TEXT NOT NULL,
        routing_key     TEXT NOT NULL,
        body            TEXT NOT NULL,
        created_at_ms   INTEGER NOT NULL,
        published_at_ms INTEGER
    ) STRICT;
    CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at_ms IS NULL;
    CREATE INDEX outbox_by_payment ON outbox (payment_id, seq);

    CREATE TABLE checks (
        payment_id       INTEGER PRIMARY KEY REFERENCES payments (id),
        next_check_at_ms INTEGER NOT NULL,
        attempts         INTEGER NOT NULL,
        last_error       TEXT,
        deadline_at_ms   INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX checks_due ON checks (next_check_at_ms);
    ",
    // 2: flags as states (core's `decide::Flag`, JSON), the shop's expected
    // currency apart from the paid one, and re-checks of settled payments.
    "
    ALTER TABLE payments ADD COLUMN expected_currency TEXT;
    UPDATE payments SET expected_currency = currency WHERE expected_minor IS NOT NULL;
    ALTER TABLE payments ADD COLUMN flag TEXT;
    UPDATE payments SET flag = json_object(
        'kind', CASE WHEN instr(mismatch, ':') > 0 THEN substr(mismatch, 1, instr(mismatch, ':') - 1) ELSE 'amount_mismatch' END,
        'claim', json_object(
            'status', json_object('status', CASE status WHEN 'created' THEN 'pending' ELSE status END),
            'money', NULL,
            'provider_txn_id', provider_txn_id,
            'source', 'callback'),
        'detail', mismatch)
    WHERE mismatch IS NOT NULL;
    ALTER TABLE checks ADD COLUMN recheck INTEGER NOT NULL DEFAULT 0;
    ",
    // 3: when the last failed status check failed (the shop API shows it).
    "
    ALTER TABLE checks ADD COLUMN last_error_at_ms INTEGER;
    ",
    // 4: claims for many workers on one ledger (leases on due checks and
    // outbox events) and the deployment-wide rate buckets; the PostgreSQL
    // ledger has the same from its version 1.
    "
    ALTER TABLE checks ADD COLUMN claimed_by TEXT;
    ALTER TABLE checks ADD COLUMN claim_until_ms INTEGER;
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    ALTER TABLE outbox ADD COLUMN claim_until_ms INTEGER;
    CREATE TABLE rate_buckets (
        provider      TEXT NOT NULL,
        account       TEXT NOT NULL,
        tokens        REAL NOT NULL,
        updated_at_ms INTEGER NOT NULL,
        PRIMARY KEY (provider, account)
    ) STRICT;
    ",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the file up to [`SCHEMA_VERSION`], or refuses a newer one.
pub(crate) fn migrate(conn: &mut Connection, path: &str) -> Result<(), StoreError> {
    loop {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let found: i64 = tx.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(StoreError::NewerSchema {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        let index =
            usize::try_from(found).map_err(|_| StoreError::corrupt("schema version", found))?;
        tx.execute_batch(MIGRATIONS[index])?;
        tx.pragma_update(None, "user_version", found + 1)?;
        tx.commit()?;
        tracing::info!(
            ledger.path = path,
            schema.version = found + 1,
            "ledger schema migrated"
        );
    }
}
