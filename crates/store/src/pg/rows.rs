//! Reading the PostgreSQL ledger's rows back into typed values, through the
//! same conversions as the SQLite ledger's (a value that breaks its type's
//! rules is a corrupt ledger, never passed on).

use deadpool_postgres::GenericClient;
use paysettle_core::{Account, Provider, ProviderTxnId, Reference};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

use crate::error::StoreError;
use crate::model::{CheckState, DueCheck, HistoryEntry, OutboxEvent, PaymentId, PaymentRecord};
use crate::rows::{PAYMENT_COLUMNS, PaymentRow, currency, money, timestamp};

pub(crate) type Params<'a> = [&'a (dyn ToSql + Sync)];

fn payment_row(row: &Row) -> Result<PaymentRow, StoreError> {
    Ok(PaymentRow {
        id: row.try_get(0)?,
        provider: row.try_get(1)?,
        account: row.try_get(2)?,
        reference: row.try_get(3)?,
        provider_txn_id: row.try_get(4)?,
        status: row.try_get(5)?,
        currency: row.try_get(6)?,
        expected: row.try_get(7)?,
        paid: row.try_get(8)?,
        refunded: row.try_get(9)?,
        registered: row.try_get(10)?,
        mismatch: row.try_get(11)?,
        version: row.try_get(12)?,
        created_at: row.try_get(13)?,
        updated_at: row.try_get(14)?,
        expected_currency: row.try_get(15)?,
        flag: row.try_get(16)?,
    })
}

async fn one_payment<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &Params<'_>,
) -> Result<Option<PaymentRecord>, StoreError> {
    let statement = client.prepare_cached(sql).await?;
    client
        .query_opt(&statement, params)
        .await?
        .map(|row| payment_row(&row)?.into_record())
        .transpose()
}

/// One payment by its natural key, locked for the rest of the transaction
/// when `lock` (the decision about it is taken under this lock).
pub(crate) async fn payment_by_reference<C: GenericClient>(
    client: &C,
    provider: Provider,
    account: &Account,
    reference: &Reference,
    lock: bool,
) -> Result<Option<PaymentRecord>, StoreError> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE provider = $1 AND account = $2 AND reference = $3{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    one_payment(
        client,
        &sql,
        &[&provider.as_str(), &account.as_str(), &reference.as_str()],
    )
    .await
}

/// One payment by the provider's transaction id (the first, if several),
/// locked when `lock`.
pub(crate) async fn payment_by_txn<C: GenericClient>(
    client: &C,
    provider: Provider,
    account: &Account,
    txn: &ProviderTxnId,
    lock: bool,
) -> Result<Option<PaymentRecord>, StoreError> {
    let sql = format!(
        "SELECT {PAYMENT_COLUMNS} FROM payments WHERE provider = $1 AND account = $2 AND provider_txn_id = $3 \
         ORDER BY id LIMIT 1{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    one_payment(
        client,
        &sql,
        &[&provider.as_str(), &account.as_str(), &txn.as_str()],
    )
    .await
}

/// One payment by id.
pub(crate) async fn payment_by_id<C: GenericClient>(
    client: &C,
    id: PaymentId,
) -> Result<Option<PaymentRecord>, StoreError> {
    let sql = format!("SELECT {PAYMENT_COLUMNS} FROM payments WHERE id = $1");
    one_payment(client, &sql, &[&id.0]).await
}

/// Payments from any query that selects [`PAYMENT_COLUMNS`] first.
pub(crate) async fn payments<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &Params<'_>,
) -> Result<Vec<PaymentRecord>, StoreError> {
    let statement = client.prepare_cached(sql).await?;
    client
        .query(&statement, params)
        .await?
        .iter()
        .map(|row| payment_row(row)?.into_record())
        .collect()
}

/// The columns after [`PAYMENT_COLUMNS`] in a due-check query.
pub(crate) const CHECK_COLUMNS: &str =
    "c.attempts, c.next_check_at_ms, c.deadline_at_ms, c.last_error";

/// Due checks from a query selecting [`PAYMENT_COLUMNS`] (of `payments`)
/// then [`CHECK_COLUMNS`].
pub(crate) async fn due_checks<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &Params<'_>,
) -> Result<Vec<DueCheck>, StoreError> {
    let statement = client.prepare_cached(sql).await?;
    client
        .query(&statement, params)
        .await?
        .iter()
        .map(|row| {
            let attempts: i64 = row.try_get(17)?;
            Ok(DueCheck {
                payment: payment_row(row)?.into_record()?,
                attempts: u32::try_from(attempts)
                    .map_err(|e| StoreError::corrupt("attempts", e))?,
                next_check_at: timestamp(row.try_get(18)?)?,
                deadline_at: timestamp(row.try_get(19)?)?,
                last_error: row.try_get(20)?,
            })
        })
        .collect()
}

/// A payment's place in the check schedule, if it has one.
pub(crate) async fn check_state<C: GenericClient>(
    client: &C,
    payment: PaymentId,
) -> Result<Option<CheckState>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT attempts, next_check_at_ms, deadline_at_ms, last_error, last_error_at_ms \
             FROM checks WHERE payment_id = $1",
        )
        .await?;
    let Some(row) = client.query_opt(&statement, &[&payment.0]).await? else {
        return Ok(None);
    };
    let attempts: i64 = row.try_get(0)?;
    let last_error: Option<String> = row.try_get(3)?;
    let at: Option<i64> = row.try_get(4)?;
    Ok(Some(CheckState {
        attempts: u32::try_from(attempts).map_err(|e| StoreError::corrupt("attempts", e))?,
        next_check_at: timestamp(row.try_get(1)?)?,
        deadline_at: timestamp(row.try_get(2)?)?,
        last_error_at: match (&last_error, at) {
            (Some(_), Some(at)) => Some(timestamp(at)?),
            _ => None,
        },
        last_error,
    }))
}

pub(crate) async fn history<C: GenericClient>(
    client: &C,
    payment: PaymentId,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let statement = client
        .prepare_cached(
            "SELECT id, source, observed_status, provider_status, currency, minor, refund_total_minor, \
             provider_time_ms, provider_time_raw, observed_at_ms, recorded_at_ms, outcome, from_status, \
             to_status, reason, version, raw FROM history WHERE payment_id = $1 ORDER BY id",
        )
        .await?;
    client
        .query(&statement, &[&payment.0])
        .await?
        .iter()
        .map(|r| {
            let currency = currency(r.try_get(4)?)?;
            let raw: Option<String> = r.try_get(16)?;
            let provider_time: Option<i64> = r.try_get(7)?;
            Ok(HistoryEntry {
                id: r.try_get(0)?,
                source: r.try_get(1)?,
                observed_status: r.try_get(2)?,
                provider_status: r.try_get(3)?,
                money: money(currency, r.try_get(5)?)?,
                refund_total: money(currency, r.try_get(6)?)?,
                provider_time: provider_time.map(timestamp).transpose()?,
                provider_time_raw: r.try_get(8)?,
                observed_at: timestamp(r.try_get(9)?)?,
                recorded_at: timestamp(r.try_get(10)?)?,
                outcome: r.try_get(11)?,
                from_status: r.try_get(12)?,
                to_status: r.try_get(13)?,
                reason: r.try_get(14)?,
                version: r.try_get(15)?,
                raw: raw
                    .map(|text| {
                        serde_json::from_str(&text)
                            .map_err(|e| StoreError::corrupt("raw payload", e))
                    })
                    .transpose()?,
            })
        })
        .collect()
}

/// Outbox events from a query selecting `rows::OUTBOX_COLUMNS`.
pub(crate) async fn outbox<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &Params<'_>,
) -> Result<Vec<OutboxEvent>, StoreError> {
    let statement = client.prepare_cached(sql).await?;
    client
        .query(&statement, params)
        .await?
        .iter()
        .map(|r| {
            let published: Option<i64> = r.try_get(7)?;
            Ok(OutboxEvent {
                seq: r.try_get(0)?,
                event_id: r.try_get(1)?,
                payment_id: PaymentId(r.try_get(2)?),
                event_type: r.try_get(3)?,
                routing_key: r.try_get(4)?,
                body: r.try_get(5)?,
                created_at: timestamp(r.try_get(6)?)?,
                published_at: published.map(timestamp).transpose()?,
            })
        })
        .collect()
}
