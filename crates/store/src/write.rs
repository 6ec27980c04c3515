//! The write side: persisting what core's [`decide`](paysettle_core::decide)
//! decided. Every function here runs inside one transaction opened by the
//! writer thread, so a payment's change, its history row, its outbox events
//! and its schedule are committed together or not at all. No rule about
//! money or status is made here: this module reads the payment, asks
//! `decide`, and writes the [`Decision`] as it is.

use std::collections::BTreeMap;

use jiff::Timestamp;
use paysettle_core::decide::{self, Decision, Expectation, Payment, Policy, Resolution, Schedule};
use paysettle_core::schedule::CheckPolicy;
use paysettle_core::state::PaymentState;
use paysettle_core::{Account, Money, PaymentStatus, Provider, Source, redact};
use paysettle_sqlite::rusqlite::{self, OptionalExtension, Transaction};

use crate::error::StoreError;
use crate::event::{self, EventContext};
use crate::model::{
    ApplyOutcome, ApplyRequest, CheckNow, LedgerRules, PaymentId, PaymentKey, PaymentRecord,
    RegisterOutcome, Registration, Resolved,
};
use crate::rows::{self, ms};

/// The polling policy of each provider, used to schedule a payment's first
/// check and its deadline.
pub(crate) type Policies = BTreeMap<Provider, CheckPolicy>;

/// Everything the writer needs to ask `decide`: each provider's polling
/// policy and the ledger's rules.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    pub checks: Policies,
    pub ledger: LedgerRules,
}

impl Rules {
    pub(crate) fn policy(&self, provider: Provider, account: &Account) -> Policy {
        Policy {
            check: self.checks.get(&provider).copied().unwrap_or_default(),
            accepts_test: self
                .ledger
                .test_accounts
                .iter()
                .any(|(p, a)| *p == provider && a == account),
            hold_success_until_checked: self.ledger.hold_paysys_success,
            recheck_window: self.ledger.recheck_window,
        }
    }
}

/// The ledger's record as `decide` sees it.
pub(crate) fn view(record: &PaymentRecord) -> Payment {
    Payment {
        provider: record.provider,
        state: PaymentState {
            status: record.status,
            expected: record.expected,
            paid: record.paid,
            refunded: record.refunded,
        },
        registered: record.registered,
        provider_txn_id: record.provider_txn_id.clone(),
        flag: record.flag.clone(),
        version: record.version,
        created_at: record.created_at,
    }
}

/// The payment a decision is about (its row, when the ledger has one), and
/// where and when what was decided came from (for its events).
struct Target<'a> {
    id: Option<PaymentId>,
    provider: Provider,
    account: &'a Account,
    reference: &'a paysettle_core::Reference,
    source: Source,
    occurred_at: Timestamp,
}

/// Writes the payment's row as the decision left it; returns its id.
fn write_payment(
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
    let standing = p.flag.as_ref().filter(|f| f.holds());
    let flag = p
        .flag
        .as_ref()
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::corrupt("flag", e))?;
    // One list for both statements: the update leaves ?2–?4 (the payment's
    // key) unused, as it finds the row by id.
    let values = rusqlite::params![
        target.id.map(|id| id.0),
        target.provider.as_str(),
        target.account.as_str(),
        target.reference.as_str(),
        p.provider_txn_id.as_ref().map(|t| t.as_str()),
        state.status.as_str(),
        currency,
        state.expected.map(Money::minor),
        state.paid.map(Money::minor),
        state.refunded.map(Money::minor),
        p.registered,
        standing.map(|f| f.summary()),
        p.version,
        ms(now),
        expected_currency,
        flag,
    ];
    match target.id {
        Some(id) => {
            tx.prepare_cached(
                "UPDATE payments SET provider_txn_id = ?5, status = ?6, currency = ?7, expected_minor = ?8, paid_minor = ?9, \
                 refunded_minor = ?10, registered = ?11, mismatch = ?12, version = ?13, updated_at_ms = ?14, \
                 expected_currency = ?15, flag = ?16 WHERE id = ?1",
            )?
            .execute(values)?;
            Ok(id)
        }
        None => {
            tx.prepare_cached(
                "INSERT INTO payments (id, provider, account, reference, provider_txn_id, status, currency, expected_minor, \
                 paid_minor, refunded_minor, registered, mismatch, version, created_at_ms, updated_at_ms, expected_currency, flag) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15, ?16)",
            )?
            .execute(values)?;
            Ok(PaymentId(tx.last_insert_rowid()))
        }
    }
}

/// Carries out the decision's schedule change.
fn write_schedule(
    tx: &Transaction<'_>,
    payment: PaymentId,
    schedule: Schedule,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let changed = match schedule {
        Schedule::Keep => 0,
        Schedule::Remove => tx
            .prepare_cached("DELETE FROM checks WHERE payment_id = ?1")?
            .execute([payment.0])?,
        Schedule::Ensure { first, deadline } => tx
            .prepare_cached(
                "INSERT INTO checks (payment_id, next_check_at_ms, attempts, last_error, deadline_at_ms) VALUES (?1, ?2, 0, NULL, ?3) \
                 ON CONFLICT (payment_id) DO NOTHING",
            )?
            .execute((payment.0, ms(first), ms(deadline)))?,
        Schedule::Now { deadline, recheck } => tx
            .prepare_cached(
                "INSERT INTO checks (payment_id, next_check_at_ms, attempts, last_error, deadline_at_ms, recheck) \
                 VALUES (?1, ?2, 0, NULL, ?3, ?4) \
                 ON CONFLICT (payment_id) DO UPDATE SET next_check_at_ms = min(next_check_at_ms, ?2), \
                 deadline_at_ms = max(deadline_at_ms, ?3), recheck = max(recheck, ?4)",
            )?
            .execute((payment.0, ms(now), ms(deadline), recheck))?,
    };
    Ok(changed > 0)
}

/// What a history row is written from besides the decision.
enum Said<'a> {
    Observation(&'a Prepared),
    Registration(&'a Registration),
    Resolution { reason: &'a str },
}

fn write_history(
    tx: &Transaction<'_>,
    payment: PaymentId,
    provider: Provider,
    said: &Said<'_>,
    decision: &Decision,
    now: Timestamp,
) -> Result<i64, StoreError> {
    let record = &decision.record;
    let unique_suffix = || format!("~{}", uuid::Uuid::now_v7());
    match said {
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
            tx.prepare_cached(
                "INSERT INTO history (payment_id, provider, dedupe_key, source, observed_status, provider_status, currency, minor, \
                 refund_total_minor, provider_time_ms, provider_time_raw, observed_at_ms, recorded_at_ms, outcome, from_status, \
                 to_status, reason, version, raw) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
            )?
            .execute(rusqlite::params![
                payment.0,
                provider.as_str(),
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
                record.outcome.as_str(),
                record.from.map(PaymentStatus::as_str),
                record.to.map(PaymentStatus::as_str),
                record.reason,
                decision.payment.version,
                prepared.raw.as_deref(),
            ])?;
        }
        Said::Registration(r) => {
            // The shop's first registration is kept under its key (a
            // repeat with other money is judged against it); a later one
            // that adds the provider's id is history only.
            let key = registration_key(r);
            let first: bool = tx
                .prepare_cached("SELECT NOT EXISTS (SELECT 1 FROM history WHERE provider = ?1 AND dedupe_key = ?2)")?
                .query_row((provider.as_str(), &key), |row| row.get(0))?;
            let key = if first {
                key
            } else {
                format!("{key}{}", unique_suffix())
            };
            tx.prepare_cached(
                "INSERT INTO history (payment_id, provider, dedupe_key, source, observed_status, provider_status, currency, minor, \
                 observed_at_ms, recorded_at_ms, outcome, to_status, reason, version) \
                 VALUES (?1, ?2, ?3, 'shop', 'registered', '', ?4, ?5, ?6, ?6, ?7, ?8, ?9, ?10)",
            )?
            .execute(rusqlite::params![
                payment.0,
                provider.as_str(),
                key,
                r.money.currency().code(),
                r.money.minor(),
                ms(r.registered_at),
                if record.reason.is_some() { "flagged" } else { "registered" },
                decision.payment.state.status.as_str(),
                record.reason,
                decision.payment.version,
            ])?;
        }
        Said::Resolution { reason } => {
            let raw = serde_json::json!({ "operator_reason": reason, "detail": record.detail });
            tx.prepare_cached(
                "INSERT INTO history (payment_id, provider, dedupe_key, source, observed_status, provider_status, \
                 observed_at_ms, recorded_at_ms, outcome, from_status, to_status, reason, version, raw) \
                 VALUES (?1, ?2, ?3, 'reconcile', ?4, 'operator', ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(rusqlite::params![
                payment.0,
                provider.as_str(),
                format!("resolve|{}{}", payment.0, unique_suffix()),
                decision.payment.state.status.as_str(),
                ms(now),
                record.outcome.as_str(),
                record.from.map(PaymentStatus::as_str),
                record.to.map(PaymentStatus::as_str),
                record.reason,
                decision.payment.version,
                raw.to_string(),
            ])?;
        }
    }
    Ok(tx.last_insert_rowid())
}

/// Writes the decision's events into the outbox; returns their ids.
fn write_events(
    tx: &Transaction<'_>,
    payment: PaymentId,
    target: &Target<'_>,
    history_id: i64,
    decision: &Decision,
    now: Timestamp,
) -> Result<Vec<String>, StoreError> {
    let mut ids = Vec::with_capacity(decision.events.len());
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
        tx.prepare_cached(
            "INSERT INTO outbox (event_id, payment_id, history_id, event_type, routing_key, body, created_at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute((&event_id, payment.0, history_id, event.kind.name(), routing_key, body, ms(now)))?;
        ids.push(event_id);
    }
    Ok(ids)
}

/// Persists one decision: the payment's row, its history row, its events
/// and its schedule. Returns the payment's id, the history row and the
/// event ids.
fn persist(
    tx: &Transaction<'_>,
    target: &Target<'_>,
    said: &Said<'_>,
    decision: &Decision,
    now: Timestamp,
) -> Result<(PaymentId, Vec<String>), StoreError> {
    let id = match target.id {
        Some(id) if !decision.changed => id,
        _ => write_payment(tx, target, decision, now)?,
    };
    let history_id = write_history(tx, id, target.provider, said, decision, now)?;
    let events = write_events(tx, id, target, history_id, decision, now)?;
    write_schedule(tx, id, decision.schedule, now)?;
    Ok((id, events))
}

pub(crate) fn register(
    tx: &Transaction<'_>,
    registration: &Registration,
    rules: &Rules,
) -> Result<RegisterOutcome, StoreError> {
    let r = registration;
    let now = r.registered_at;
    let existing = rows::payment_by_reference(tx, r.provider, &r.account, &r.reference)?;
    let before = match &existing {
        Some(p) if p.registered => registered_money(tx, r)?,
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
        source: reported_by(tx, existing.as_ref())?,
        occurred_at: now,
    };
    let (id, _) = persist(tx, &target, &Said::Registration(r), &decision, now)?;
    Ok(match existing {
        None => RegisterOutcome::Created(id),
        Some(p) if p.registered => RegisterOutcome::AlreadyRegistered(id),
        Some(_) => RegisterOutcome::Adopted(id),
    })
}

/// The source of the observation that reported the provider's amount: a
/// flag raised by a registration is announced as coming from it.
fn reported_by(
    tx: &Transaction<'_>,
    payment: Option<&PaymentRecord>,
) -> Result<Source, StoreError> {
    let Some(payment) = payment else {
        return Ok(Source::Callback);
    };
    let source: Option<String> = tx
        .prepare_cached(
            "SELECT source FROM history WHERE payment_id = ?1 AND source <> 'shop' AND minor IS NOT NULL \
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row([payment.id.0], |row| row.get(0))
        .optional()?;
    Ok(match source.as_deref() {
        Some("check") => Source::Check,
        Some("reconcile") => Source::Reconcile,
        _ => Source::Callback,
    })
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

pub(crate) fn registration_key(r: &Registration) -> String {
    format!("shop|{}|{}", r.account, r.reference)
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
    rules: &Rules,
    now: Timestamp,
) -> Result<ApplyOutcome, StoreError> {
    let o = &prepared.request.observation;
    let seen: Option<i64> = tx
        .prepare_cached("SELECT payment_id FROM history WHERE provider = ?1 AND dedupe_key = ?2")?
        .query_row((o.provider.as_str(), &prepared.dedupe_key), |row| {
            row.get(0)
        })
        .optional()?;
    if let Some(payment_id) = seen {
        return Ok(ApplyOutcome::Duplicate {
            payment_id: PaymentId(payment_id),
        });
    }
    let existing = rows::payment_by_reference(tx, o.provider, &o.account, &o.reference)?;
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
    let (payment_id, events) = persist(tx, &target, &Said::Observation(prepared), &decision, now)?;
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
pub(crate) fn resolve(
    tx: &Transaction<'_>,
    key: &(Provider, Account, paysettle_core::Reference),
    resolution: Resolution,
    reason: &str,
    rules: &Rules,
    now: Timestamp,
) -> Result<Resolved, StoreError> {
    let (provider, account, reference) = key;
    let payment =
        rows::payment_by_reference(tx, *provider, account, reference)?.ok_or_else(|| {
            StoreError::NotFound {
                what: format!("{provider} payment {reference} (account {account})"),
            }
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
    let (payment_id, events) = persist(tx, &target, &Said::Resolution { reason }, &decision, now)?;
    Ok(Resolved {
        payment_id,
        from: payment.status,
        to: decision.payment.state.status,
        events,
    })
}

/// Records a check attempt (which ends the payment's check claim): when to check next (`None` leaves the payment off
/// the schedule) and the error, if the check failed.
pub(crate) fn record_check(
    tx: &Transaction<'_>,
    payment: PaymentId,
    next_check_at: Option<Timestamp>,
    error: Option<&str>,
) -> Result<bool, StoreError> {
    let changed = match next_check_at {
        Some(at) => tx
            .prepare_cached("UPDATE checks SET attempts = attempts + 1, next_check_at_ms = ?2, last_error = ?3, \
                 claimed_by = NULL, claim_until_ms = NULL WHERE payment_id = ?1")?
            .execute((payment.0, ms(at), error))?,
        None => tx.prepare_cached("DELETE FROM checks WHERE payment_id = ?1")?.execute([payment.0])?,
    };
    Ok(changed > 0)
}

/// Makes a payment's check due now (Portmanat's return hint), through
/// `decide`: a stale or settled payment comes back on the schedule for one
/// re-check; a flagged one, or one of a provider without a status API, does
/// not.
pub(crate) fn check_now(
    tx: &Transaction<'_>,
    provider: Provider,
    account: &paysettle_core::Account,
    key: &PaymentKey,
    rules: &Rules,
    now: Timestamp,
) -> Result<CheckNow, StoreError> {
    let payment = match key {
        PaymentKey::Reference(reference) => {
            rows::payment_by_reference(tx, provider, account, reference)?
        }
        PaymentKey::ProviderTxnId(txn) => rows::payment_by_txn(tx, provider, account, txn)?,
    };
    let Some(payment) = payment else {
        return Ok(CheckNow::Unknown);
    };
    let policy = rules.policy(provider, account);
    match decide::check_now(&view(&payment), &policy, now) {
        Some(schedule) => {
            write_schedule(tx, payment.id, schedule, now)?;
            Ok(CheckNow::Scheduled(payment.id))
        }
        None => Ok(CheckNow::NotScheduled(payment.id)),
    }
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
