//! The raw rows of the ledger benchmarks: plain inserts of what one applied
//! observation writes (a payment, a history row with its raw payload, an
//! outbox event) into the ledger's own SQLite schema, with no reads, no
//! dedupe and no decision: the storage cost of the same data, so a ratio
//! against it shows what the ledger's logic costs.

use paysettle_sqlite::rusqlite::Connection;

/// Inserts the rows of `observations` observations in transactions of
/// `batch`, each payment `B-<i>` with provider id `T-<i>`.
pub fn insert_same_rows(
    conn: &Connection,
    observations: usize,
    batch: usize,
    raw: &str,
    body: &str,
) {
    let mut done = 0;
    while done < observations {
        let tx = conn.unchecked_transaction().unwrap();
        {
            let mut payment = tx.prepare_cached("INSERT INTO payments (provider, account, reference, provider_txn_id, status, currency, \
                expected_minor, paid_minor, registered, version, created_at_ms, updated_at_ms) \
                VALUES ('paysys', 'default', ?1, ?2, 'succeeded', 'USD', 1000, 1000, 0, 1, 0, 0)").unwrap();
            let mut history = tx.prepare_cached("INSERT INTO history (payment_id, provider, dedupe_key, source, observed_status, \
                provider_status, currency, minor, observed_at_ms, recorded_at_ms, outcome, from_status, to_status, version, raw) \
                VALUES (?1, 'paysys', ?2, 'callback', 'succeeded', '2', 'USD', 1000, 0, 0, 'applied', 'created', 'succeeded', 1, ?3)").unwrap();
            let mut outbox = tx.prepare_cached("INSERT INTO outbox (event_id, payment_id, history_id, event_type, routing_key, body, created_at_ms) \
                VALUES (?1, ?2, ?3, 'payment.succeeded', 'payment.succeeded.paysys', ?4, 0)").unwrap();
            for i in done..(done + batch).min(observations) {
                payment
                    .execute((format!("B-{i}"), format!("T-{i}")))
                    .unwrap();
                let payment_id = tx.last_insert_rowid();
                history
                    .execute((
                        payment_id,
                        format!("callback|default|B-{i}|T-{i}|2|succeeded|1000USD|-"),
                        raw,
                    ))
                    .unwrap();
                let history_id = tx.last_insert_rowid();
                outbox
                    .execute((
                        uuid::Uuid::now_v7().to_string(),
                        payment_id,
                        history_id,
                        body,
                    ))
                    .unwrap();
            }
        }
        tx.commit().unwrap();
        done += batch;
    }
}
