//! The write side on PostgreSQL: the same persistence of core's
//! [`decide`](paysettle_core::decide) as the SQLite ledger's `write` module,
//! statement for statement, in PostgreSQL's dialect. Every function runs
//! inside one transaction, and the decision about a payment is taken under
//! that payment's row lock (`SELECT ... FOR UPDATE`), so workers sharing the
//! ledger decide about one payment one at a time. No rule about money or
//! status is made here.

use deadpool_postgres::Transaction;
use jiff::Timestamp;
use paysettle_core::decide::{self, Decision, Expectation, Resolution, Schedule};
use paysettle_core::{Account, Money, PaymentStatus, Provider, Reference, Source};

use super::rows;
use crate::error::StoreError;
use crate::event::{self, EventContext};
use crate::model::{
    ApplyOutcome, CheckNow, PaymentId, PaymentKey, PaymentRecord, RegisterOutcome, Registration,
    Resolved,
};
use crate::rows::ms;
use crate::write::{Prepared, Rules, registration_key, view};

/// The advisory lock class of payments (two-key advisory locks do not meet
/// the one-key locks migrations and outbox claims take).
const PAYMENT_LOCK_CLASS: i32 = 0x7061_7973;

/// Takes the transaction-long lock of each payment a transaction is about,
/// whether its row exists yet or not, in one order for every worker (by the
/// key's hash): two batches over the same payments in different orders
/// wait for each other instead of deadlocking, and two first observations
/// of one payment do not both insert it. The row lock (`FOR UPDATE`) is still
/// what the decision runs under; this orders who gets it.
pub(crate) async fn lock_payments(
    tx: &Transaction<'_>,
    keys: &[(Provider, &Account, &Reference)],
) -> Result<(), StoreError> {
    let keys: Vec<String> = keys
        .iter()
        .map(|(provider, account, reference)| format!("{provider}|{account}|{reference}"))
        .collect();
    let statement = tx
        .prepare_cached(
            "SELECT pg_advisory_xact_lock($1, h) FROM \
             (SELECT DISTINCT hashtext(k) AS h FROM unnest($2::text[]) AS k ORDER BY h) AS sorted",
        )
        .await?;
    tx.execute(&statement, &[&PAYMENT_LOCK_CLASS, &keys])
        .await?;
    Ok(())
}

/// The channel an event-writing transaction notifies at its commit.
pub(crate) const NOTIFY_CHANNEL: &str = "paysettle_outbox";

/// Any fixed number: the advisory lock under which outbox positions are
/// taken (see `write_events`).
const OUTBOX_WRITE_LOCK: i64 = 0x7061_7973_6f75_7477;

/// The payment a decision is about (its row, when the ledger has one), and
/// where and when what was decided came from (for its events).
struct Target<'a> {
    id: Option<PaymentId>,
    provider: Provider,
    account: &'a Account,
    reference: &'a Reference,
    source: Source,
    occurred_at: Timestamp,
}

/// Writes the payment's row as the decision left it; returns its id.
async fn write_payment(
    tx: &Transaction<'_>,
    target: &Target<'_>,
    decision: &Decision,
    now: Timestamp,
) -> Result<PaymentId, StoreError> {
    let p = &decision.payment;
    let state = &p.state;
    let currency = state
        .paid
        .or(state.refunded)
        .or(state.expected)
        .map(|m| m.currency().code());
    let expected_currency = state.expected.map(|m| m.currency().code());
    let mismatch = p.flag.as_ref().filter(|f| f.holds()).map(|f| f.summary());
    let flag = p
        .flag
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::corrupt("flag", e))?;
    let txn = p.provider_txn_id.as_ref().map(|t| t.as_str());
    let status = state.status.as_str();
    let expected = state.expected.map(Money::minor);
    let paid = state.paid.map(Money::minor);
    let refunded = state.refunded.map(Money::minor);
    let now = ms(now);
    match target.id {
        Some(id) => {
            let statement = tx
                .prepare_cached(
                    "UPDATE payments SET provider_txn_id = $2, status = $3, currency = $4, expected_minor = $5, \
                     paid_minor = $6, refunded_minor = $7, registered = $8, mismatch = $9, version = $10, \
                     updated_at_ms = $11, expected_currency = $12, flag = $13 WHERE id = $1",
                )
                .await?;
            tx.execute(
                &statement,
                &[
                    &id.0,
                    &txn,
                    &status,
                    &currency,
                    &expected,
                    &paid,
                    &refunded,
                    &p.registered,
                    &mismatch,
                    &p.version,
                    &now,
                    &expected_currency,
                    &flag,
                ],
            )
            .await?;
            Ok(id)
        }
        None => {
            let statement = tx
                .prepare_cached(
                    "INSERT INTO payments (provider, account, reference, provider_txn_id, status, currency, \
                     expected_minor, paid_minor, refunded_minor, registered, mismatch, version, created_at_ms, \
                     updated_at_ms, expected_currency, flag) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15) RETURNING id",
                )
                .await?;
            let row = tx
                .query_one(
                    &statement,
                    &[
                        &target.provider.as_str(),
                        &target.account.as_str(),
                        &target.reference.as_str(),
                        &txn,
                        &status,
                        &currency,
                        &expected,
                        &paid,
                        &refunded,
                        &p.registered,
                        &mismatch,
                        &p.version,
                        &now,
                        &expected_currency,
                        &flag,
                    ],
                )
                .await?;
            Ok(PaymentId(row.try_get(0)?))
        }
    }
}

/// Carries out the decision's schedule change.
async fn write_schedule(
    tx: &Transaction<'_>,
    payment: PaymentId,
    schedule: Schedule,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let changed = match schedule {
        Schedule::Keep => 0,
        Schedule::Remove => {
            let statement = tx
                .prepare_cached("DELETE FROM checks WHERE payment_id = $1")
                .await?;
            tx.execute(&statement, &[&payment.0]).await?
        }
        Schedule::Ensure { first, deadline } => {
            let statement = tx
                .prepare_cached(
                    "INSERT INTO checks (payment_id, next_check_at_ms, attempts, last_error, deadline_at_ms) \
                     VALUES ($1, $2, 0, NULL, $3) ON CONFLICT (payment_id) DO NOTHING",
                )
                .await?;
            tx.execute(&statement, &[&payment.0, &ms(first), &ms(deadline)])
                .await?
        }
        Schedule::Now { deadline, recheck } => {
            let statement = tx
                .prepare_cached(
                    "INSERT INTO checks (payment_id, next_check_at_ms, attempts, last_error, deadline_at_ms, recheck) \
                     VALUES ($1, $2, 0, NULL, $3, $4) \
                     ON CONFLICT (payment_id) DO UPDATE SET \
                     next_check_at_ms = LEAST(checks.next_check_at_ms, EXCLUDED.next_check_at_ms), \
                     deadline_at_ms = GREATEST(checks.deadline_at_ms, EXCLUDED.deadline_at_ms), \
                     recheck = checks.recheck OR EXCLUDED.recheck",
                )
                .await?;
            tx.execute(&statement, &[&payment.0, &ms(now), &ms(deadline), &recheck])
                .await?
        }
    };
    Ok(changed > 0)
}

/// What a history row is written from besides the decision.
enum Said<'a> {
    Observation(&'a Prepared),
    Registration(&'a Registration),
    Resolution { reason: &'a str },
}

async fn write_history(
    tx: &Transaction<'_>,
    payment: PaymentId,
    provider: Provider,
    said: &Said<'_>,
    decision: &Decision,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let record = &decision.record;
    let unique_suffix = || format!("~{}", uuid::Uuid::now_v7());
    let from = record.from.map(PaymentStatus::as_str);
    let to = record.to.map(PaymentStatus::as_str);
    let version = decision.payment.version;
    let row = match said {
        Said::Observation(prepared) => {
            let o = &prepared.request.observation;
            let refund_total = match o.status {
                paysettle_core::ObservedStatus::Refunded { total } => total,
                _ => None,
            };
            // A refusal that depended on the state is kept without its key,
            // so the same observation seen again is judged again.
            let dedupe_key = if decision.keep_dedupe {
                prepared.dedupe_key.clone()
            } else {
                format!("{}{}", prepared.dedupe_key, unique_suffix())
            };
            let currency = o.money.or(refund_total).map(|m| m.currency().code());
            let statement = tx
                .prepare_cached(
                    "INSERT INTO history (payment_id, provider, dedupe_key, source, observed_status, provider_status, \
                     currency, minor, refund_total_minor, provider_time_ms, provider_time_raw, observed_at_ms, \
                     recorded_at_ms, outcome, from_status, to_status, reason, version, raw) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19) \
                     RETURNING id",
                )
                .await?;
            tx.query_one(
                &statement,
                &[
                    &payment.0,
                    &provider.as_str(),
                    &dedupe_key,
                    &o.source.as_str(),
                    &o.status.target().as_str(),
                    &o.provider_status,
                    &currency,
                    &o.money.map(Money::minor),
                    &refund_total.map(Money::minor),
                    &o.provider_time.as_ref().and_then(|t| t.utc.map(ms)),
                    &o.provider_time.as_ref().map(|t| t.raw.as_str()),
                    &ms(o.observed_at),
                    &ms(now),
                    &record.outcome.as_str(),
                    &from,
                    &to,
                    &record.reason,
                    &version,
                    &prepared.raw.as_deref(),
                ],
            )
            .await?
        }
        Said::Registration(r) => {
            // The shop's first registration is kept under its key (a
            // repeat with other money is judged against it); a later one
            // that adds the provider's id is history only.
            let key = registration_key(r);
            let statement = tx
                .prepare_cached(
                    "SELECT NOT EXISTS (SELECT 1 FROM history WHERE provider = $1 AND dedupe_key = $2)",
                )
                .await?;
            let first: bool = tx
                .query_one(&statement, &[&provider.as_str(), &key])
                .await?
                .try_get(0)?;
            let key = if first {
                key
            } else {
                format!("{key}{}", unique_suffix())
            };
            let outcome = if record.reason.is_some() {
                "flagged"
            } else {
                "registered"
            };
            let statement = tx
                .prepare_cached(
                    "INSERT INTO history (payment_id, provider, dedupe_key, source, observed_status, provider_status, \
                     currency, minor, observed_at_ms, recorded_at_ms, outcome, to_status, reason, version) \
                     VALUES ($1, $2, $3, 'shop', 'registered', '', $4, $5, $6, $6, $7, $8, $9, $10) RETURNING id",
                )
                .await?;
            tx.query_one(
                &statement,
                &[
                    &payment.0,
                    &provider.as_str(),
                    &key,
                    &r.money.currency().code(),
                    &r.money.minor(),
                    &ms(r.registered_at),
                    &outcome,
                    &decision.payment.state.status.as_str(),
                    &record.reason,
                    &version,
                ],
            )
            .await?
        }
        Said::Resolution { reason } => {
            let raw = serde_json::json!({ "operator_reason": reason, "detail": record.detail })
                .to_string();
            let statement = tx
                .prepare_cached(
                    "INSERT INTO history (payment_id, provider, dedupe_key, source, observed_status, provider_status, \
                     observed_at_ms, recorded_at_ms, outcome, from_status, to_status, reason, version, raw) \
                     VALUES ($1, $2, $3, 'reconcile', $4, 'operator', $5, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
                )
                .await?;
            tx.query_one(
                &statement,
                &[
                    &payment.0,
                    &provider.as_str(),
                    &format!("resolve|{}{}", payment.0, unique_suffix()),
                    &decision.payment.state.status.as_str(),
                    &ms(now),
                    &record.outcome.as_str(),
                    &from,
                    &to,
                    &record.reason,
                    &version,
                    &raw,
                ],
            )
            .await?
        }
    };
    Ok(row.try_get(0)?)
}

/// Writes the decision's events into the outbox; returns their ids.
async fn write_events(
    tx: &Transaction<'_>,
    payment: PaymentId,
    target: &Target<'_>,
    history_id: i64,
    decision: &Decision,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::with_capacity(decision.events.len());
    if decision.events.is_empty() {
        return Ok(ids);
    }
    // Outbox positions are handed out in commit order: a transaction takes
    // them under this lock, held until it commits, so a reader following
    // the outbox by position (the event feed's cursor) never passes an event
    // that commits behind it later.
    // The notification (delivered at commit) wakes every process's event
    // feed.
    let statement = tx
        .prepare_cached(&format!(
            "SELECT pg_advisory_xact_lock($1), pg_notify('{NOTIFY_CHANNEL}', '')"
        ))
        .await?;
    tx.execute(&statement, &[&OUTBOX_WRITE_LOCK]).await?;
    let provider_txn_id = decision
        .payment
        .provider_txn_id
        .as_ref()
        .map(|t| t.as_str());
    for event in &decision.events {
        let event_id = uuid::Uuid::now_v7().to_string();
        let context = EventContext {
            event_id: &event_id,
            provider: target.provider,
            account: target.account,
            reference: target.reference,
            provider_txn_id,
            source: target.source,
            occurred_at: target.occurred_at,
        };
        let (routing_key, body) = event::build(event, &context);
        let statement = tx
            .prepare_cached(
                "INSERT INTO outbox (event_id, payment_id, history_id, event_type, routing_key, body, created_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .await?;
        tx.execute(
            &statement,
            &[
                &event_id,
                &payment.0,
                &history_id,
                &event.kind.name(),
                &routing_key,
                &body,
                &ms(now),
            ],
        )
        .await?;
        ids.push(event_id);
    }
    Ok(ids)
}

/// Persists one decision: the payment's row, its history row, its events
/// and its schedule.
async fn persist(
    tx: &Transaction<'_>,
    target: &Target<'_>,
    said: &Said<'_>,
    decision: &Decision,
    now: Timestamp,
) -> Result<(PaymentId, Vec<String>), StoreError> {
    let id = match target.id {
        Some(id) if !decision.changed => id,
        _ => write_payment(tx, target, decision, now).await?,
    };
    let history_id = write_history(tx, id, target.provider, said, decision, now).await?;
    let events = write_events(tx, id, target, history_id, decision, now).await?;
    write_schedule(tx, id, decision.schedule, now).await?;
    Ok((id, events))
}

pub(crate) async fn register(
    tx: &Transaction<'_>,
    r: &Registration,
    rules: &Rules,
) -> Result<RegisterOutcome, StoreError> {
    let now = r.registered_at;
    let existing =
        rows::payment_by_reference(tx, r.provider, &r.account, &r.reference, true).await?;
    let before = match &existing {
        Some(p) if p.registered => registered_money(tx, r).await?,
        _ => None,
    };
    let shop = Expectation {
        provider: r.provider,
        money: r.money,
        provider_txn_id: r.provider_txn_id.clone(),
    };
    let policy = rules.policy(r.provider, &r.account);
    let decision = decide::decide_registration(
        existing.as_ref().map(view).as_ref(),
        &shop,
        before,
        &policy,
        now,
    )
    .map_err(|conflict| StoreError::Conflict {
        reference: r.reference.to_string(),
        field: conflict.field,
        existing: conflict.existing,
        requested: conflict.requested,
    })?;
    let Some(decision) = decision else {
        let id = existing.map_or(PaymentId(0), |p| p.id);
        return Ok(RegisterOutcome::AlreadyRegistered(id));
    };
    let target = Target {
        id: existing.as_ref().map(|p| p.id),
        provider: r.provider,
        account: &r.account,
        reference: &r.reference,
        source: reported_by(tx, existing.as_ref()).await?,
        occurred_at: now,
    };
    let (id, _) = persist(tx, &target, &Said::Registration(r), &decision, now).await?;
    Ok(match existing {
        None => RegisterOutcome::Created(id),
        Some(p) if p.registered => RegisterOutcome::AlreadyRegistered(id),
        Some(_) => RegisterOutcome::Adopted(id),
    })
}

/// The source of the observation that reported the provider's amount.
async fn reported_by(
    tx: &Transaction<'_>,
    payment: Option<&PaymentRecord>,
) -> Result<Source, StoreError> {
    let Some(payment) = payment else {
        return Ok(Source::Callback);
    };
    let statement = tx
        .prepare_cached(
            "SELECT source FROM history WHERE payment_id = $1 AND source <> 'shop' AND minor IS NOT NULL \
             ORDER BY id DESC LIMIT 1",
        )
        .await?;
    let source: Option<String> = tx
        .query_opt(&statement, &[&payment.id.0])
        .await?
        .map(|row| row.try_get(0))
        .transpose()?;
    Ok(match source.as_deref() {
        Some("check") => Source::Check,
        Some("reconcile") => Source::Reconcile,
        _ => Source::Callback,
    })
}

/// The money of the shop's registration row, if the shop registered it.
async fn registered_money(
    tx: &Transaction<'_>,
    r: &Registration,
) -> Result<Option<Money>, StoreError> {
    let statement = tx
        .prepare_cached(
            "SELECT currency, minor FROM history WHERE provider = $1 AND dedupe_key = $2",
        )
        .await?;
    let row = tx
        .query_opt(&statement, &[&r.provider.as_str(), &registration_key(r)])
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let code: Option<String> = row.try_get(0)?;
    let minor: Option<i64> = row.try_get(1)?;
    Ok(match (code, minor) {
        (Some(code), Some(minor)) => paysettle_core::Currency::from_code(&code)
            .ok()
            .and_then(|c| Money::from_minor(minor, c).ok()),
        _ => None,
    })
}

pub(crate) async fn apply(
    tx: &Transaction<'_>,
    prepared: &Prepared,
    rules: &Rules,
    now: Timestamp,
) -> Result<ApplyOutcome, StoreError> {
    let o = &prepared.request.observation;
    // The payment's lock first: the dedupe check below then sees whatever
    // another worker committed about this payment before us.
    let existing =
        rows::payment_by_reference(tx, o.provider, &o.account, &o.reference, true).await?;
    let statement = tx
        .prepare_cached("SELECT payment_id FROM history WHERE provider = $1 AND dedupe_key = $2")
        .await?;
    let seen = tx
        .query_opt(&statement, &[&o.provider.as_str(), &prepared.dedupe_key])
        .await?;
    if let Some(row) = seen {
        return Ok(ApplyOutcome::Duplicate {
            payment_id: PaymentId(row.try_get(0)?),
        });
    }
    let policy = rules.policy(o.provider, &o.account);
    let decision = decide::decide(existing.as_ref().map(view).as_ref(), o, &policy, now);
    let target = Target {
        id: existing.as_ref().map(|p| p.id),
        provider: o.provider,
        account: &o.account,
        reference: &o.reference,
        source: o.source,
        occurred_at: o.observed_at,
    };
    let (payment_id, events) =
        persist(tx, &target, &Said::Observation(prepared), &decision, now).await?;
    let record = &decision.record;
    let reason = record.reason.unwrap_or("");
    Ok(match record.outcome {
        decide::Outcome::Applied => ApplyOutcome::Applied {
            payment_id,
            from: record.from.unwrap_or(PaymentStatus::Created),
            to: decision.payment.state.status,
            version: decision.payment.version,
            events,
        },
        decide::Outcome::Flagged => ApplyOutcome::Mismatch {
            payment_id,
            reason,
            detail: record.detail.clone().unwrap_or_default(),
            event: events.into_iter().next(),
        },
        decide::Outcome::Held => ApplyOutcome::Held { payment_id, reason },
        decide::Outcome::Recheck => ApplyOutcome::Recheck { payment_id },
        decide::Outcome::Ignored | decide::Outcome::Registered | decide::Outcome::Resolved => {
            ApplyOutcome::Ignored {
                payment_id,
                reason,
                detail: record.detail.clone().unwrap_or_default(),
            }
        }
    })
}

/// An operator's resolution of a payment's flag, through `decide`.
pub(crate) async fn resolve(
    tx: &Transaction<'_>,
    key: &(Provider, Account, Reference),
    resolution: Resolution,
    reason: &str,
    rules: &Rules,
    now: Timestamp,
) -> Result<Resolved, StoreError> {
    let (provider, account, reference) = key;
    let payment = rows::payment_by_reference(tx, *provider, account, reference, true)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: format!("{provider} payment {reference} (account {account})"),
        })?;
    let policy = rules.policy(*provider, account);
    let decision = decide::decide_resolution(&view(&payment), resolution, reason, &policy, now)
        .map_err(|e| StoreError::Refused {
            reason: e.to_string(),
        })?;
    let target = Target {
        id: Some(payment.id),
        provider: *provider,
        account,
        reference,
        source: Source::Reconcile,
        occurred_at: now,
    };
    let (payment_id, events) =
        persist(tx, &target, &Said::Resolution { reason }, &decision, now).await?;
    Ok(Resolved {
        payment_id,
        from: payment.status,
        to: decision.payment.state.status,
        events,
    })
}

/// Records a check attempt and releases the payment's check claim: when to
/// check next (`None` leaves the payment off the schedule) and the error.
pub(crate) async fn record_check(
    tx: &Transaction<'_>,
    payment: PaymentId,
    next_check_at: Option<Timestamp>,
    error: Option<&str>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let changed = match next_check_at {
        Some(at) => {
            // When it failed, for the shop API.
            let failed_at = error.map(|_| ms(now));
            let statement = tx
                .prepare_cached(
                    "UPDATE checks SET attempts = attempts + 1, next_check_at_ms = $2, last_error = $3, \
                     last_error_at_ms = CASE WHEN $4::BIGINT IS NULL THEN last_error_at_ms ELSE $4 END, \
                     claimed_by = NULL, claim_until_ms = NULL WHERE payment_id = $1",
                )
                .await?;
            tx.execute(&statement, &[&payment.0, &ms(at), &error, &failed_at])
                .await?
        }
        None => {
            let statement = tx
                .prepare_cached("DELETE FROM checks WHERE payment_id = $1")
                .await?;
            tx.execute(&statement, &[&payment.0]).await?
        }
    };
    Ok(changed > 0)
}

/// Makes a payment's check due now, through `decide`.
pub(crate) async fn check_now(
    tx: &Transaction<'_>,
    provider: Provider,
    account: &Account,
    key: &PaymentKey,
    rules: &Rules,
    now: Timestamp,
) -> Result<CheckNow, StoreError> {
    let payment = match key {
        PaymentKey::Reference(reference) => {
            rows::payment_by_reference(tx, provider, account, reference, true).await?
        }
        PaymentKey::ProviderTxnId(txn) => {
            rows::payment_by_txn(tx, provider, account, txn, true).await?
        }
    };
    let Some(payment) = payment else {
        return Ok(CheckNow::Unknown);
    };
    let policy = rules.policy(provider, account);
    match decide::check_now(&view(&payment), &policy, now) {
        Some(schedule) => {
            write_schedule(tx, payment.id, schedule, now).await?;
            Ok(CheckNow::Scheduled(payment.id))
        }
        None => Ok(CheckNow::NotScheduled(payment.id)),
    }
}

/// Marks outbox events as published (which ends their claims).
pub(crate) async fn mark_published(
    tx: &Transaction<'_>,
    seqs: &[i64],
    at: Timestamp,
) -> Result<usize, StoreError> {
    let statement = tx
        .prepare_cached(
            "UPDATE outbox SET published_at_ms = $2, claimed_by = NULL, claim_until_ms = NULL \
             WHERE seq = ANY($1) AND published_at_ms IS NULL",
        )
        .await?;
    let changed = tx.execute(&statement, &[&seqs, &ms(at)]).await?;
    Ok(usize::try_from(changed).unwrap_or(usize::MAX))
}
