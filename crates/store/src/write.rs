//! The write side. Every function here runs inside one transaction opened by
//! the writer thread, so a payment's change, its history row, its outbox
//! events and its schedule are committed together or not at all.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};
use paysettle_core::schedule::CheckPolicy;
use paysettle_core::state::{self, PaymentState};
use paysettle_core::{Money, ObservedStatus, PaymentStatus, Provider, TransitionError, redact};
use rusqlite::{OptionalExtension, Transaction};

use crate::error::StoreError;
use crate::event::{self, EventInput, EventType};
use crate::model::{
    ApplyOutcome, ApplyRequest, PaymentId, PaymentKey, PaymentRecord, RegisterOutcome, Registration,
};
use crate::rows::{self, ms};

/// The polling policy of each provider, used to schedule a payment's first
/// check and its deadline.
pub(crate) type Policies = BTreeMap<Provider, CheckPolicy>;

fn policy(policies: &Policies, provider: Provider) -> CheckPolicy {
    policies.get(&provider).copied().unwrap_or_default()
}

fn after(at: Timestamp, wait: std::time::Duration) -> Timestamp {
    at.checked_add(SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// Makes sure an unsettled payment is on the check schedule. A provider with
/// no status API is only "checked" at its deadline, to be marked stale.
fn ensure_scheduled(
    tx: &Transaction<'_>,
    payment: &PaymentRecord,
    policies: &Policies,
    now: Timestamp,
) -> Result<(), StoreError> {
    let policy = policy(policies, payment.provider);
    let deadline = after(payment.created_at, policy.deadline);
    let first = if payment.provider.can_be_polled() {
        after(now, policy.first).min(deadline)
    } else {
        deadline
    };
    tx.prepare_cached(
        "INSERT INTO checks (payment_id, next_check_at_ms, attempts, last_error, deadline_at_ms) VALUES (?1, ?2, 0, NULL, ?3) \
         ON CONFLICT (payment_id) DO NOTHING",
    )?
    .execute((payment.id.0, ms(first), ms(deadline)))?;
    Ok(())
}

fn unschedule(tx: &Transaction<'_>, payment: PaymentId) -> Result<(), StoreError> {
    tx.prepare_cached("DELETE FROM checks WHERE payment_id = ?1")?
        .execute([payment.0])?;
    Ok(())
}

fn currency_code(money: Option<Money>) -> Option<&'static str> {
    money.map(|m| m.currency().code())
}

pub(crate) fn register(
    tx: &Transaction<'_>,
    registration: &Registration,
    policies: &Policies,
) -> Result<RegisterOutcome, StoreError> {
    let r = registration;
    let now = r.registered_at;
    let existing = rows::payment_by_reference(tx, r.provider, &r.account, &r.reference)?;
    let conflict =
        |field: &'static str, existing: String, requested: String| StoreError::Conflict {
            reference: r.reference.to_string(),
            field,
            existing,
            requested,
        };
    let outcome = match existing {
        None => {
            tx.prepare_cached(
                "INSERT INTO payments (provider, account, reference, provider_txn_id, status, currency, expected_minor, \
                 registered, version, created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?4, 'created', ?5, ?6, 1, 1, ?7, ?7)",
            )?
            .execute((
                r.provider.as_str(),
                r.account.as_str(),
                r.reference.as_str(),
                r.provider_txn_id.as_ref().map(|t| t.as_str()),
                r.money.currency().code(),
                r.money.minor(),
                ms(now),
            ))?;
            RegisterOutcome::Created(PaymentId(tx.last_insert_rowid()))
        }
        Some(payment) => {
            if let Some(expected) = payment.expected
                && expected != r.money
            {
                if !payment.registered {
                    // The provider reported this payment before the shop
                    // registered it, with another amount: the shop's order
                    // is the expectation, so the payment is flagged.
                    return adopt_with_mismatch(tx, r, &payment, expected);
                }
                if registered_money(tx, r)? != Some(r.money) {
                    return Err(conflict(
                        "amount",
                        expected.to_string(),
                        r.money.to_string(),
                    ));
                }
                return Ok(RegisterOutcome::AlreadyRegistered(payment.id));
            }
            if let (Some(have), Some(want)) = (&payment.provider_txn_id, &r.provider_txn_id)
                && have != want
            {
                return Err(conflict(
                    "provider transaction id",
                    have.to_string(),
                    want.to_string(),
                ));
            }
            let fills_txn = payment.provider_txn_id.is_none() && r.provider_txn_id.is_some();
            if payment.registered && !fills_txn {
                return Ok(RegisterOutcome::AlreadyRegistered(payment.id));
            }
            tx.prepare_cached(
                "UPDATE payments SET registered = 1, currency = ?2, expected_minor = ?3, \
                 provider_txn_id = coalesce(provider_txn_id, ?4), updated_at_ms = ?5 WHERE id = ?1",
            )?
            .execute((
                payment.id.0,
                r.money.currency().code(),
                r.money.minor(),
                r.provider_txn_id.as_ref().map(|t| t.as_str()),
                ms(now),
            ))?;
            if payment.registered {
                return Ok(RegisterOutcome::AlreadyRegistered(payment.id));
            }
            RegisterOutcome::Adopted(payment.id)
        }
    };
    let payment = rows::payment_by_id(tx, outcome.payment_id())?
        .ok_or_else(|| StoreError::corrupt("payment", "vanished while registering"))?;
    insert_registration(tx, r, &payment, None, payment.version)?;
    if !payment.status.is_final()
        && payment.status != PaymentStatus::Stale
        && payment.mismatch.is_none()
    {
        ensure_scheduled(tx, &payment, policies, now)?;
    }
    Ok(outcome)
}

/// The money of the shop's registration row, if the shop registered it.
fn registered_money(tx: &Transaction<'_>, r: &Registration) -> Result<Option<Money>, StoreError> {
    let row: Option<(Option<String>, Option<i64>)> = tx
        .prepare_cached(
            "SELECT currency, minor FROM history WHERE provider = ?1 AND dedupe_key = ?2",
        )?
        .query_row((r.provider.as_str(), registration_key(r)), |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()?;
    Ok(match row {
        Some((Some(code), Some(minor))) => paysettle_core::Currency::from_code(&code)
            .ok()
            .and_then(|c| Money::from_minor(minor, c).ok()),
        _ => None,
    })
}

/// The history row of the shop's registration: outcome `registered`, or
/// `mismatch` with the reason when it disagrees with the provider's report.
fn insert_registration(
    tx: &Transaction<'_>,
    r: &Registration,
    payment: &PaymentRecord,
    mismatch: Option<&str>,
    version: i64,
) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO history (payment_id, provider, dedupe_key, source, observed_status, provider_status, currency, minor, \
         observed_at_ms, recorded_at_ms, outcome, to_status, reason, version) \
         VALUES (?1, ?2, ?3, 'shop', 'registered', '', ?4, ?5, ?6, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(rusqlite::params![
        payment.id.0,
        r.provider.as_str(),
        registration_key(r),
        r.money.currency().code(),
        r.money.minor(),
        ms(r.registered_at),
        if mismatch.is_some() { "mismatch" } else { "registered" },
        payment.status.as_str(),
        mismatch,
        version,
    ])?;
    Ok(tx.last_insert_rowid())
}

fn registration_key(r: &Registration) -> String {
    format!("shop|{}|{}", r.account, r.reference)
}

/// The shop registers a payment the provider already reported with another
/// amount or currency. The registration is recorded, the payment flagged
/// and taken off the check schedule (it waits for ops, as any mismatch),
/// and finance hears of it with a `payment.mismatch` event whose `source`
/// is that of the observation that reported the provider's amount. A
/// different amount in the same currency becomes the payment's expected
/// amount; a different currency is kept in the history only, as the
/// payment's amounts share one currency.
fn adopt_with_mismatch(
    tx: &Transaction<'_>,
    r: &Registration,
    payment: &PaymentRecord,
    reported: Money,
) -> Result<RegisterOutcome, StoreError> {
    let now = r.registered_at;
    let refusal = if reported.currency() != r.money.currency() {
        TransitionError::CurrencyMismatch {
            expected: r.money.currency(),
            observed: reported.currency(),
        }
    } else {
        TransitionError::AmountMismatch {
            expected: r.money,
            observed: reported,
        }
    };
    let flag = format!("{}: {refusal}", refusal.code());
    let version = payment.version + 1;
    let expected = match refusal {
        TransitionError::AmountMismatch { .. } => Some(r.money.minor()),
        _ => payment.expected.map(Money::minor),
    };
    tx.prepare_cached(
        "UPDATE payments SET registered = 1, expected_minor = ?2, provider_txn_id = coalesce(provider_txn_id, ?3), \
         mismatch = ?4, version = ?5, updated_at_ms = ?6 WHERE id = ?1",
    )?
    .execute((
        payment.id.0,
        expected,
        r.provider_txn_id.as_ref().map(|t| t.as_str()),
        &flag,
        version,
        ms(now),
    ))?;
    let history_id = insert_registration(tx, r, payment, Some(refusal.code()), version)?;
    let reported_by: Option<String> = tx
        .prepare_cached(
            "SELECT source FROM history WHERE payment_id = ?1 AND source <> 'shop' AND minor IS NOT NULL \
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row([payment.id.0], |row| row.get(0))
        .optional()?;
    let source = match reported_by.as_deref() {
        Some("check") => paysettle_core::Source::Check,
        Some("reconcile") => paysettle_core::Source::Reconcile,
        _ => paysettle_core::Source::Callback,
    };
    let provider_txn_id = payment
        .provider_txn_id
        .as_ref()
        .or(r.provider_txn_id.as_ref())
        .map(|t| t.as_str().to_owned());
    let observation = paysettle_core::Observation {
        provider: r.provider,
        account: r.account.clone(),
        reference: r.reference.clone(),
        provider_txn_id: None,
        status: ObservedStatus::Pending,
        money: Some(reported),
        provider_status: String::new(),
        provider_time: None,
        observed_at: now,
        source,
        test: false,
        refund_part: None,
    };
    insert_event(
        tx,
        payment.id,
        history_id,
        &EventInput {
            event_id: &new_event_id(),
            event_type: EventType::Mismatch,
            observation: &observation,
            provider_txn_id: provider_txn_id.as_deref(),
            amount: Some(reported),
            status: payment.status,
            previous_status: payment.status,
            version,
            expected: Some(r.money),
            mismatch: Some(refusal.code()),
        },
        now,
    )?;
    unschedule(tx, payment.id)?;
    tracing::warn!(
        payment.id = payment.id.0,
        payment.provider = %r.provider,
        payment.reference = %r.reference,
        mismatch = refusal.code(),
        "registered payment disagrees with what the provider reported; flagged"
    );
    Ok(RegisterOutcome::Adopted(payment.id))
}

/// What one history row records.
struct HistoryRow<'a> {
    outcome: &'static str,
    from: Option<PaymentStatus>,
    to: Option<PaymentStatus>,
    reason: Option<&'a str>,
    version: i64,
}

fn insert_history(
    tx: &Transaction<'_>,
    payment: PaymentId,
    dedupe_key: &str,
    request: &ApplyRequest,
    raw: Option<&str>,
    row: &HistoryRow<'_>,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let o = &request.observation;
    let refund_total = match o.status {
        ObservedStatus::Refunded { total } => total,
        _ => None,
    };
    // The history's currency column serves both amounts; they share a currency
    // whenever both exist (a refund observation carries no payment amount).
    let currency = currency_code(o.money.or(refund_total));
    tx.prepare_cached(
        "INSERT INTO history (payment_id, provider, dedupe_key, source, observed_status, provider_status, currency, minor, \
         refund_total_minor, provider_time_ms, provider_time_raw, observed_at_ms, recorded_at_ms, outcome, from_status, \
         to_status, reason, version, raw) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?
    .execute(rusqlite::params![
        payment.0,
        o.provider.as_str(),
        dedupe_key,
        o.source.as_str(),
        o.status.target().as_str(),
        o.provider_status,
        currency,
        o.money.map(Money::minor),
        refund_total.map(Money::minor),
        o.provider_time.as_ref().and_then(|t| t.utc.map(ms)),
        o.provider_time.as_ref().map(|t| t.raw.as_str()),
        ms(o.observed_at),
        ms(now),
        row.outcome,
        row.from.map(PaymentStatus::as_str),
        row.to.map(PaymentStatus::as_str),
        row.reason,
        row.version,
        raw,
    ])?;
    Ok(tx.last_insert_rowid())
}

fn insert_event(
    tx: &Transaction<'_>,
    payment: PaymentId,
    history_id: i64,
    input: &EventInput<'_>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let (routing_key, body) = event::build(input);
    tx.prepare_cached(
        "INSERT INTO outbox (event_id, payment_id, history_id, event_type, routing_key, body, created_at_ms) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute((input.event_id, payment.0, history_id, input.event_type.name(), routing_key, body, ms(now)))?;
    Ok(())
}

fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// An observation made ready for the writer: its dedupe key and its raw
/// payload, redacted and serialised. Done on the caller's thread, so the one
/// writer thread spends its time in SQLite.
pub(crate) struct Prepared {
    pub request: ApplyRequest,
    pub dedupe_key: String,
    pub raw: Option<String>,
}

pub(crate) fn prepare(mut request: ApplyRequest) -> Prepared {
    let dedupe_key = request.observation.dedupe_key();
    let raw = request.raw.take().map(|mut value| {
        redact::json(&mut value);
        value.to_string()
    });
    Prepared {
        request,
        dedupe_key,
        raw,
    }
}

pub(crate) fn apply(
    tx: &Transaction<'_>,
    prepared: &Prepared,
    policies: &Policies,
    now: Timestamp,
) -> Result<ApplyOutcome, StoreError> {
    let request = &prepared.request;
    let o = &request.observation;
    let dedupe_key = &prepared.dedupe_key;
    let seen: Option<i64> = tx
        .prepare_cached("SELECT payment_id FROM history WHERE provider = ?1 AND dedupe_key = ?2")?
        .query_row((o.provider.as_str(), dedupe_key), |row| row.get(0))
        .optional()?;
    if let Some(payment_id) = seen {
        return Ok(ApplyOutcome::Duplicate {
            payment_id: PaymentId(payment_id),
        });
    }

    // A payment the shop never registered is created from what the provider
    // said; it is written once, below, with the state this observation gives it.
    let existing = rows::payment_by_reference(tx, o.provider, &o.account, &o.reference)?;
    let is_new = existing.is_none();
    let mut payment = existing.unwrap_or_else(|| PaymentRecord {
        id: PaymentId(0),
        provider: o.provider,
        account: o.account.clone(),
        reference: o.reference.clone(),
        provider_txn_id: o.provider_txn_id.clone(),
        status: PaymentStatus::Created,
        expected: None,
        paid: None,
        refunded: None,
        registered: false,
        mismatch: None,
        version: 0,
        created_at: now,
        updated_at: now,
    });

    let raw = prepared.raw.as_deref();
    let current = PaymentState {
        status: payment.status,
        expected: payment.expected,
        paid: payment.paid,
        refunded: payment.refunded,
    };
    let provider_txn_id = payment
        .provider_txn_id
        .as_ref()
        .or(o.provider_txn_id.as_ref())
        .map(|t| t.as_str().to_owned());

    match state::apply(&current, o.status, o.money) {
        Ok(transition) => {
            let next = transition.state;
            let version = payment.version + transition.steps.len() as i64;
            let from = payment.status;
            let to = next.status;
            let currency = next.expected.or(next.paid).map(|m| m.currency().code());
            let values = rusqlite::params![
                payment.id.0,
                to.as_str(),
                currency,
                next.expected.map(Money::minor),
                next.paid.map(Money::minor),
                next.refunded.map(Money::minor),
                version,
                ms(now),
                o.provider_txn_id.as_ref().map(|t| t.as_str()),
            ];
            if is_new {
                tx.prepare_cached(
                    "INSERT INTO payments (provider, account, reference, provider_txn_id, status, currency, expected_minor, \
                     paid_minor, refunded_minor, registered, version, created_at_ms, updated_at_ms) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 0, ?10, ?11, ?11)",
                )?
                .execute(rusqlite::params![
                    o.provider.as_str(),
                    o.account.as_str(),
                    o.reference.as_str(),
                    o.provider_txn_id.as_ref().map(|t| t.as_str()),
                    to.as_str(),
                    currency,
                    next.expected.map(Money::minor),
                    next.paid.map(Money::minor),
                    next.refunded.map(Money::minor),
                    version,
                    ms(now),
                ])?;
                payment.id = PaymentId(tx.last_insert_rowid());
            } else {
                tx.prepare_cached(
                    "UPDATE payments SET status = ?2, currency = coalesce(?3, currency), expected_minor = ?4, paid_minor = ?5, \
                     refunded_minor = ?6, version = ?7, updated_at_ms = ?8, provider_txn_id = coalesce(provider_txn_id, ?9) WHERE id = ?1",
                )?
                .execute(values)?;
            }
            let history_id = insert_history(
                tx,
                payment.id,
                dedupe_key,
                request,
                raw,
                &HistoryRow {
                    outcome: "applied",
                    from: Some(from),
                    to: Some(to),
                    reason: None,
                    version,
                },
                now,
            )?;
            let mut events = Vec::new();
            for (index, step) in transition.steps.iter().enumerate() {
                if let Some(event_type) = EventType::for_status(step.to) {
                    let event_id = new_event_id();
                    insert_event(
                        tx,
                        payment.id,
                        history_id,
                        &EventInput {
                            event_id: &event_id,
                            event_type,
                            observation: o,
                            provider_txn_id: provider_txn_id.as_deref(),
                            amount: step.amount,
                            status: step.to,
                            previous_status: step.from,
                            version: payment.version + index as i64 + 1,
                            expected: next.expected,
                            mismatch: None,
                        },
                        now,
                    )?;
                    events.push(event_id);
                }
            }
            if to.is_final() || to == PaymentStatus::Stale {
                if !is_new {
                    unschedule(tx, payment.id)?;
                }
            } else {
                let payment = PaymentRecord {
                    status: to,
                    ..payment
                };
                ensure_scheduled(tx, &payment, policies, now)?;
            }
            Ok(ApplyOutcome::Applied {
                payment_id: payment.id,
                from,
                to,
                version,
                events,
            })
        }
        Err(refusal) if refusal.is_mismatch() => {
            // A new payment has nothing expected yet, so this is not expected
            // to happen; if it ever does, the payment is still written first.
            if is_new {
                payment.id = insert_created(tx, &payment, now)?;
            }
            let flag = format!("{}: {refusal}", refusal.code());
            let detail = refusal.to_string();
            if payment.mismatch.as_deref() == Some(flag.as_str()) {
                let row = HistoryRow {
                    outcome: "mismatch",
                    from: None,
                    to: None,
                    reason: Some(refusal.code()),
                    version: payment.version,
                };
                insert_history(tx, payment.id, dedupe_key, request, raw, &row, now)?;
                return Ok(ApplyOutcome::Mismatch {
                    payment_id: payment.id,
                    reason: refusal.code(),
                    detail,
                    event: None,
                });
            }
            let version = payment.version + 1;
            let row = HistoryRow {
                outcome: "mismatch",
                from: None,
                to: None,
                reason: Some(refusal.code()),
                version,
            };
            let history_id = insert_history(tx, payment.id, dedupe_key, request, raw, &row, now)?;
            tx.prepare_cached(
                "UPDATE payments SET mismatch = ?2, version = ?3, updated_at_ms = ?4 WHERE id = ?1",
            )?
            .execute((payment.id.0, &flag, version, ms(now)))?;
            let reported = match refusal {
                TransitionError::AmountMismatch { observed, .. } => Some(observed),
                TransitionError::RefundExceedsPaid { refund, .. } => Some(refund),
                _ => o.money,
            };
            let event_id = new_event_id();
            insert_event(
                tx,
                payment.id,
                history_id,
                &EventInput {
                    event_id: &event_id,
                    event_type: EventType::Mismatch,
                    observation: o,
                    provider_txn_id: provider_txn_id.as_deref(),
                    amount: reported,
                    status: payment.status,
                    previous_status: payment.status,
                    version,
                    expected: payment.expected.or(payment.paid),
                    mismatch: Some(refusal.code()),
                },
                now,
            )?;
            // A flagged payment waits for ops; polling it would only repeat the
            // contradiction.
            unschedule(tx, payment.id)?;
            Ok(ApplyOutcome::Mismatch {
                payment_id: payment.id,
                reason: refusal.code(),
                detail,
                event: Some(event_id),
            })
        }
        Err(refusal) => {
            if is_new {
                payment.id = insert_created(tx, &payment, now)?;
            }
            let row = HistoryRow {
                outcome: "ignored",
                from: None,
                to: None,
                reason: Some(refusal.code()),
                version: payment.version,
            };
            insert_history(tx, payment.id, dedupe_key, request, raw, &row, now)?;
            if is_new {
                ensure_scheduled(tx, &payment, policies, now)?;
            }
            Ok(ApplyOutcome::Ignored {
                payment_id: payment.id,
                reason: refusal.code(),
                detail: refusal.to_string(),
            })
        }
    }
}

/// Writes a payment first heard of from an observation that changed nothing.
fn insert_created(
    tx: &Transaction<'_>,
    payment: &PaymentRecord,
    now: Timestamp,
) -> Result<PaymentId, StoreError> {
    tx.prepare_cached(
        "INSERT INTO payments (provider, account, reference, provider_txn_id, status, registered, version, \
         created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?4, 'created', 0, 0, ?5, ?5)",
    )?
    .execute((
        payment.provider.as_str(),
        payment.account.as_str(),
        payment.reference.as_str(),
        payment.provider_txn_id.as_ref().map(|t| t.as_str()),
        ms(now),
    ))?;
    Ok(PaymentId(tx.last_insert_rowid()))
}

/// Records a check attempt: when to check next (`None` leaves the payment off
/// the schedule) and the error, if the check failed.
pub(crate) fn record_check(
    tx: &Transaction<'_>,
    payment: PaymentId,
    next_check_at: Option<Timestamp>,
    error: Option<&str>,
) -> Result<bool, StoreError> {
    let changed = match next_check_at {
        Some(at) => tx
            .prepare_cached("UPDATE checks SET attempts = attempts + 1, next_check_at_ms = ?2, last_error = ?3 WHERE payment_id = ?1")?
            .execute((payment.0, ms(at), error))?,
        None => tx.prepare_cached("DELETE FROM checks WHERE payment_id = ?1")?.execute([payment.0])?,
    };
    Ok(changed > 0)
}

/// Moves a scheduled payment's next check to `now` (Portmanat's return hint).
pub(crate) fn check_now(
    tx: &Transaction<'_>,
    provider: Provider,
    account: &paysettle_core::Account,
    key: &PaymentKey,
    now: Timestamp,
) -> Result<Option<PaymentId>, StoreError> {
    let payment = match key {
        PaymentKey::Reference(reference) => {
            rows::payment_by_reference(tx, provider, account, reference)?
        }
        PaymentKey::ProviderTxnId(txn) => rows::payment_by_txn(tx, provider, account, txn)?,
    };
    let Some(payment) = payment else {
        return Ok(None);
    };
    tx.prepare_cached(
        "UPDATE checks SET next_check_at_ms = min(next_check_at_ms, ?2) WHERE payment_id = ?1",
    )?
    .execute((payment.id.0, ms(now)))?;
    Ok(Some(payment.id))
}

/// Marks outbox events as published.
pub(crate) fn mark_published(
    tx: &Transaction<'_>,
    seqs: &[i64],
    at: Timestamp,
) -> Result<usize, StoreError> {
    let mut statement = tx.prepare_cached(
        "UPDATE outbox SET published_at_ms = ?2 WHERE seq = ?1 AND published_at_ms IS NULL",
    )?;
    let mut changed = 0;
    for seq in seqs {
        changed += statement.execute((seq, ms(at)))?;
    }
    Ok(changed)
}
