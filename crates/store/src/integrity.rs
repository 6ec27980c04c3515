//! The ledger's invariants, checked by reading it (`paysettle ledger check`,
//! and the crash tests).

use paysettle_sqlite::rusqlite::{self, Connection};

use crate::error::StoreError;

/// Each query returns one text column per violation.
const CHECKS: &[(&str, &str)] = &[
    (
        "payment whose version is not that of its last history row",
        "SELECT p.id || ' (version ' || p.version || ', history ' || coalesce(h.v, 'none') || ')' FROM payments p \
         LEFT JOIN (SELECT payment_id, max(version) AS v FROM history GROUP BY payment_id) h ON h.payment_id = p.id \
         WHERE h.v IS NULL OR h.v != p.version",
    ),
    (
        "payment whose status is not where its history moved it",
        "SELECT p.id || ' (' || p.status || ', history says ' || coalesce(last.to_status, 'created') || ')' FROM payments p \
         LEFT JOIN history last ON last.id = (SELECT max(id) FROM history WHERE payment_id = p.id AND outcome IN ('applied', 'resolved')) \
         WHERE p.status != coalesce(last.to_status, 'created')",
    ),
    (
        "applied history row whose event is missing",
        "SELECT h.id FROM history h WHERE h.outcome = 'applied' \
         AND h.to_status IN ('succeeded', 'failed', 'canceled', 'refunded', 'stale') \
         AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.history_id = h.id)",
    ),
    (
        "event without its history row",
        "SELECT o.event_id FROM outbox o LEFT JOIN history h ON h.id = o.history_id \
         WHERE h.id IS NULL OR h.payment_id != o.payment_id",
    ),
    (
        "settled payment still on the check schedule (not for a re-check)",
        "SELECT p.id FROM checks c JOIN payments p ON p.id = c.payment_id \
         WHERE p.status IN ('succeeded', 'failed', 'canceled', 'refunded', 'stale') AND c.recheck = 0",
    ),
    (
        "flagged payment still on the check schedule",
        "SELECT p.id FROM checks c JOIN payments p ON p.id = c.payment_id WHERE p.mismatch IS NOT NULL",
    ),
    (
        "flag the ledger cannot read",
        "SELECT id FROM payments WHERE flag IS NOT NULL AND json_valid(flag) = 0",
    ),
    (
        "refund larger than the payment",
        "SELECT id FROM payments WHERE refunded_minor > paid_minor OR (refunded_minor IS NOT NULL AND paid_minor IS NULL)",
    ),
];

pub(crate) fn problems(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut found = Vec::new();
    for (what, sql) in CHECKS {
        let mut statement = conn.prepare(sql)?;
        let rows = statement.query_map([], |row| {
            Ok(match row.get_ref(0)? {
                rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                rusqlite::types::ValueRef::Text(text) => String::from_utf8_lossy(text).into_owned(),
                other => format!("{other:?}"),
            })
        })?;
        for row in rows {
            found.push(format!("{what}: {}", row?));
        }
    }
    Ok(found)
}
