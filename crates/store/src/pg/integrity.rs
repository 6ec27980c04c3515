//! The PostgreSQL ledger's invariants: the same checks as the SQLite
//! ledger's `integrity` module, in PostgreSQL's dialect.

use deadpool_postgres::GenericClient;

use crate::error::StoreError;

/// Each query returns one text column per violation.
const CHECKS: &[(&str, &str)] = &[
    (
        "payment whose version is not that of its last history row",
        "SELECT p.id::text || ' (version ' || p.version::text || ', history ' || coalesce(h.v::text, 'none') || ')' \
         FROM payments p \
         LEFT JOIN (SELECT payment_id, max(version) AS v FROM history GROUP BY payment_id) h ON h.payment_id = p.id \
         WHERE h.v IS NULL OR h.v <> p.version",
    ),
    (
        "payment whose status is not where its history moved it",
        "SELECT p.id::text || ' (' || p.status || ', history says ' || coalesce(last.to_status, 'created') || ')' \
         FROM payments p \
         LEFT JOIN history last ON last.id = (SELECT max(id) FROM history WHERE payment_id = p.id AND outcome IN ('applied', 'resolved')) \
         WHERE p.status <> coalesce(last.to_status, 'created')",
    ),
    (
        "applied history row whose event is missing",
        "SELECT h.id::text FROM history h WHERE h.outcome = 'applied' \
         AND h.to_status IN ('succeeded', 'failed', 'canceled', 'refunded', 'stale') \
         AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.history_id = h.id)",
    ),
    (
        "event without its history row",
        "SELECT o.event_id FROM outbox o LEFT JOIN history h ON h.id = o.history_id \
         WHERE h.id IS NULL OR h.payment_id <> o.payment_id",
    ),
    (
        "settled payment still on the check schedule (not for a re-check)",
        "SELECT p.id::text FROM checks c JOIN payments p ON p.id = c.payment_id \
         WHERE p.status IN ('succeeded', 'failed', 'canceled', 'refunded', 'stale') AND NOT c.recheck",
    ),
    (
        "flagged payment still on the check schedule",
        "SELECT p.id::text FROM checks c JOIN payments p ON p.id = c.payment_id WHERE p.mismatch IS NOT NULL",
    ),
    (
        "refund larger than the payment",
        "SELECT id::text FROM payments WHERE refunded_minor > paid_minor OR (refunded_minor IS NOT NULL AND paid_minor IS NULL)",
    ),
];

pub(crate) async fn problems<C: GenericClient>(client: &C) -> Result<Vec<String>, StoreError> {
    let mut found = Vec::new();
    for (what, sql) in CHECKS {
        for row in client.query(*sql, &[]).await? {
            let text: String = row.try_get(0)?;
            found.push(format!("{what}: {text}"));
        }
    }
    // JSON validity is checked here rather than in SQL (PostgreSQL 15 has
    // no `pg_input_is_valid`): the flag is read as the ledger reads it.
    for row in client
        .query(
            "SELECT id, flag FROM payments WHERE flag IS NOT NULL ORDER BY id",
            &[],
        )
        .await?
    {
        let id: i64 = row.try_get(0)?;
        let flag: String = row.try_get(1)?;
        if serde_json::from_str::<serde_json::Value>(&flag).is_err() {
            found.push(format!("flag the ledger cannot read: {id}"));
        }
    }
    Ok(found)
}
