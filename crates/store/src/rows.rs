//! Reading the ledger's rows back into typed values. A value that breaks its
//! type's rules is reported as a corrupt ledger, never passed on.

use jiff::Timestamp;
use paysettle_core::{Account, Currency, Money, PaymentStatus, Provider, ProviderTxnId, Reference};
use paysettle_sqlite::rusqlite::{self, Connection, OptionalExtension, Row};

use crate::error::StoreError;
use crate::model::{HistoryEntry, OutboxEvent, PaymentId, PaymentRecord};

pub(crate) const PAYMENT_COLUMNS: &str = "id, provider, account, reference, provider_txn_id, status, currency, \
     expected_minor, paid_minor, refunded_minor, registered, mismatch, version, created_at_ms, updated_at_ms, \
     expected_currency, flag";

pub(crate) fn ms(at: Timestamp) -> i64 {
    at.as_millisecond()
}

pub(crate) fn timestamp(ms: i64) -> Result<Timestamp, StoreError> {
    Timestamp::from_millisecond(ms).map_err(|e| StoreError::corrupt("timestamp", e))
}

pub(crate) fn money(
    currency: Option<Currency>,
    minor: Option<i64>,
) -> Result<Option<Money>, StoreError> {
    match (currency, minor) {
        (Some(currency), Some(minor)) => Money::from_minor(minor, currency)
            .map(Some)
            .map_err(|e| StoreError::corrupt("amount", e)),
        (_, None) => Ok(None),
        (None, Some(_)) => Err(StoreError::corrupt(
            "amount",
            "an amount without a currency",
        )),
    }
}

pub(crate) fn currency(text: Option<String>) -> Result<Option<Currency>, StoreError> {
    text.map(|c| Currency::from_code(&c).map_err(|e| StoreError::corrupt("currency", e)))
        .transpose()
}

/// Raw columns of a payment row; converted outside rusqlite's closure so the
/// conversion errors keep their type.
pub(crate) struct PaymentRow {
    pub(crate) id: i64,
    pub(crate) provider: String,
    pub(crate) account: String,
    pub(crate) reference: String,
    pub(crate) provider_txn_id: Option<String>,
    pub(crate) status: String,
    pub(crate) currency: Option<String>,
    pub(crate) expected: Option<i64>,
    pub(crate) paid: Option<i64>,
    pub(crate) refunded: Option<i64>,
    pub(crate) registered: bool,
    pub(crate) mismatch: Option<String>,
    pub(crate) version: i64,
    pub(crate) created_at: i64,
    pub(crate) updated_at: i64,
    pub(crate) expected_currency: Option<String>,
    pub(crate) flag: Option<String>,
}

fn payment_row(row: &Row<'_>) -> rusqlite::Result<PaymentRow> {
    Ok(PaymentRow {
        id: row.get(0)?,
        provider: row.get(1)?,
        account: row.get(2)?,
        reference: row.get(3)?,
        provider_txn_id: row.get(4)?,
        status: row.get(5)?,
        currency: row.get(6)?,
        expected: row.get(7)?,
        paid: row.get(8)?,
        refunded: row.get(9)?,
        registered: row.get(10)?,
        mismatch: row.get(11)?,
        version: row.get(12)?,
        created_at: row.get(13)?,
        updated_at: row.get(14)?,
        expected_currency: row.get(15)?,
        flag: row.get(16)?,
    })
}

impl PaymentRow {
    pub(crate) fn into_record(self) -> Result<PaymentRecord, StoreError> {
        let currency = currency(self.currency)?;
        let expected_currency = match self.expected_currency {
            Some(code) => {
                Some(Currency::from_code(&code).map_err(|e| StoreError::corrupt("currency", e))?)
            }
            None => currency,
        };
        let flag = self
            .flag
            .map(|json| serde_json::from_str(&json).map_err(|e| StoreError::corrupt("flag", e)))
            .transpose()?;
        Ok(PaymentRecord {
            id: PaymentId(self.id),
            provider: self
                .provider
                .parse::<Provider>()
                .map_err(|e| StoreError::corrupt("provider", e))?,
            account: Account::parse(&self.account)
                .map_err(|e| StoreError::corrupt("account", e))?,
            reference: Reference::parse(&self.reference)
                .map_err(|e| StoreError::corrupt("reference", e))?,
            provider_txn_id: self
                .provider_txn_id
                .map(|t| {
                    ProviderTxnId::parse(&t)
                        .map_err(|e| StoreError::corrupt("provider transaction id", e))
                })
                .transpose()?,
            status: self
                .status
                .parse::<PaymentStatus>()
                .map_err(|e| StoreError::corrupt("status", e))?,
            expected: money(expected_currency, self.expected)?,
            paid: money(currency, self.paid)?,
            refunded: money(currency, self.refunded)?,
            registered: self.registered,
            mismatch: self.mismatch,
            flag,
            version: self.version,
            created_at: timestamp(self.created_at)?,
            updated_at: timestamp(self.updated_at)?,
        })
    }
}

/// The one payment a query selecting [`PAYMENT_COLUMNS`] finds, if any.
fn one_payment(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<PaymentRecord>, StoreError> {
    conn.prepare_cached(sql)?
        .query_row(params, payment_row)
        .optional()?
        .map(PaymentRow::into_record)
        .transpose()
}

/// One payment by its natural key.
pub(crate) fn payment_by_reference(
    conn: &Connection,
    provider: Provider,
    account: &Account,
    reference: &Reference,
) -> Result<Option<PaymentRecord>, StoreError> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE provider = ?1 AND account = ?2 AND reference = ?3"
    );
    one_payment(
        conn,
        &sql,
        (provider.as_str(), account.as_str(), reference.as_str()),
    )
}

/// One payment by the provider's transaction id (the first, if several).
pub(crate) fn payment_by_txn(
    conn: &Connection,
    provider: Provider,
    account: &Account,
    txn: &ProviderTxnId,
) -> Result<Option<PaymentRecord>, StoreError> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE provider = ?1 AND account = ?2 AND provider_txn_id = ?3 ORDER BY id LIMIT 1"
    );
    one_payment(
        conn,
        &sql,
        (provider.as_str(), account.as_str(), txn.as_str()),
    )
}

/// One payment by id.
pub(crate) fn payment_by_id(
    conn: &Connection,
    id: PaymentId,
) -> Result<Option<PaymentRecord>, StoreError> {
    let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = ?1");
    one_payment(conn, &sql, [id.0])
}

/// Payments whose check is due, with their schedule, in one query.
pub(crate) fn due_checks(
    conn: &Connection,
    now: i64,
    limit: usize,
) -> Result<Vec<crate::model::DueCheck>, StoreError> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS}, c.attempts, c.next_check_at_ms, c.deadline_at_ms, c.last_error \
         FROM checks c JOIN payments ON payments.id = c.payment_id \
         WHERE c.next_check_at_ms <= ?1 ORDER BY c.next_check_at_ms LIMIT ?2"
    );
    let mut statement = conn.prepare_cached(&sql)?;
    let rows: Vec<(PaymentRow, u32, i64, i64, Option<String>)> = statement
        .query_map((now, limit as i64), |r| {
            Ok((
                payment_row(r)?,
                r.get(17)?,
                r.get(18)?,
                r.get(19)?,
                r.get(20)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|(payment, attempts, next, deadline, last_error)| {
            Ok(crate::model::DueCheck {
                payment: payment.into_record()?,
                attempts,
                next_check_at: timestamp(next)?,
                deadline_at: timestamp(deadline)?,
                last_error,
            })
        })
        .collect()
}

/// A payment's place in the check schedule, if it has one.
pub(crate) fn check_state(
    conn: &Connection,
    payment: crate::model::PaymentId,
) -> Result<Option<crate::model::CheckState>, StoreError> {
    // attempts, next check, deadline, last error, when it failed.
    type CheckRow = (u32, i64, i64, Option<String>, Option<i64>);
    let row: Option<CheckRow> = conn
        .prepare_cached(
            "SELECT attempts, next_check_at_ms, deadline_at_ms, last_error, last_error_at_ms \
             FROM checks WHERE payment_id = ?1",
        )?
        .query_row([payment.0], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .optional()?;
    row.map(|(attempts, next, deadline, last_error, at)| {
        Ok(crate::model::CheckState {
            attempts,
            next_check_at: timestamp(next)?,
            deadline_at: timestamp(deadline)?,
            last_error_at: match (&last_error, at) {
                (Some(_), Some(at)) => Some(timestamp(at)?),
                _ => None,
            },
            last_error,
        })
    })
    .transpose()
}

/// Payments from any query that selects [`PAYMENT_COLUMNS`] first.
pub(crate) fn payments(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<PaymentRecord>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows = statement
        .query_map(params, payment_row)?
        .collect::<Result<Vec<_>, _>>()?;
    rows.into_iter().map(PaymentRow::into_record).collect()
}

pub(crate) fn history(
    conn: &Connection,
    payment: PaymentId,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let mut statement = conn.prepare_cached(
        "SELECT id, source, observed_status, provider_status, currency, minor, refund_total_minor, provider_time_ms, \
         provider_time_raw, observed_at_ms, recorded_at_ms, outcome, from_status, to_status, reason, version, raw \
         FROM history WHERE payment_id = ?1 ORDER BY id",
    )?;
    type Raw = (
        i64,
        String,
        String,
        String,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
        Option<String>,
        i64,
        i64,
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        i64,
        Option<String>,
    );
    let rows: Vec<Raw> = statement
        .query_map([payment.0], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
                r.get(13)?,
                r.get(14)?,
                r.get(15)?,
                r.get(16)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|r| {
            let currency = currency(r.4)?;
            Ok(HistoryEntry {
                id: r.0,
                source: r.1,
                observed_status: r.2,
                provider_status: r.3,
                money: money(currency, r.5)?,
                refund_total: money(currency, r.6)?,
                provider_time: r.7.map(timestamp).transpose()?,
                provider_time_raw: r.8,
                observed_at: timestamp(r.9)?,
                recorded_at: timestamp(r.10)?,
                outcome: r.11,
                from_status: r.12,
                to_status: r.13,
                reason: r.14,
                version: r.15,
                raw: r
                    .16
                    .map(|text| {
                        serde_json::from_str(&text)
                            .map_err(|e| StoreError::corrupt("raw payload", e))
                    })
                    .transpose()?,
            })
        })
        .collect()
}

pub(crate) const OUTBOX_COLUMNS: &str =
    "seq, event_id, payment_id, event_type, routing_key, body, created_at_ms, published_at_ms";

/// seq, event_id, payment_id, event_type, routing_key, body, created, published.
type OutboxRaw = (i64, String, i64, String, String, String, i64, Option<i64>);

pub(crate) fn outbox(
    conn: &Connection,
    sql: &str,
    params: &[&dyn rusqlite::ToSql],
) -> Result<Vec<OutboxEvent>, StoreError> {
    let mut statement = conn.prepare_cached(sql)?;
    let rows: Vec<OutboxRaw> = statement
        .query_map(params, |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
            ))
        })?
        .collect::<Result<_, _>>()?;
    rows.into_iter()
        .map(|r| {
            Ok(OutboxEvent {
                seq: r.0,
                event_id: r.1,
                payment_id: PaymentId(r.2),
                event_type: r.3,
                routing_key: r.4,
                body: r.5,
                created_at: timestamp(r.6)?,
                published_at: r.7.map(timestamp).transpose()?,
            })
        })
        .collect()
}

/// One payment's due check with its schedule, whether due or not (a claimed
/// check, read back in the claim's transaction).
pub(crate) fn due_check_of(
    conn: &Connection,
    payment: i64,
) -> Result<Option<crate::model::DueCheck>, StoreError> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS}, c.attempts, c.next_check_at_ms, c.deadline_at_ms, c.last_error \
         FROM checks c JOIN payments ON payments.id = c.payment_id WHERE c.payment_id = ?1"
    );
    let row: Option<(PaymentRow, u32, i64, i64, Option<String>)> = conn
        .prepare_cached(&sql)?
        .query_row([payment], |r| {
            Ok((
                payment_row(r)?,
                r.get(17)?,
                r.get(18)?,
                r.get(19)?,
                r.get(20)?,
            ))
        })
        .optional()?;
    row.map(|(payment, attempts, next, deadline, last_error)| {
        Ok(crate::model::DueCheck {
            payment: payment.into_record()?,
            attempts,
            next_check_at: timestamp(next)?,
            deadline_at: timestamp(deadline)?,
            last_error,
        })
    })
    .transpose()
}
