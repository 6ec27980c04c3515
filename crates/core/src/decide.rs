//! What an observation, a registration or an operator's correction does to a
//! payment: one pure answer, [`Decision`], that the ledger persists as it is.
//!
//! The state machine in [`state`](crate::state) knows which status moves are
//! allowed and how money moves with them. This module adds everything else a
//! ledger finance trusts must know about one payment:
//!
//! - **Flags.** A provider that contradicts the shop or the ledger flags the
//!   payment ([`FlagKind`]): an amount, currency or transaction id other than
//!   the registered one, a final answer against a final state (`conflict`),
//!   or a test-mode payment on a live account. A flag is announced once
//!   (`payment.mismatch` or `payment.conflict`); while it stands, nothing
//!   settles the payment or changes its money. Only an operator's
//!   [`Resolution`] clears it, and that is announced too (`payment.resolved`).
//! - **One re-check before a conflict is announced**, where the provider has a
//!   status API: a callback that contradicts a final state makes the payment
//!   due for a check now; the provider's answer confirms or dismisses it, and
//!   a re-check that never gets an answer confirms it at its deadline.
//! - **Reversals only where they exist.** Succeeded → canceled is PaySys's
//!   reversal (status 3 after 2); for another provider it is a conflict.
//! - **A held success.** A PaySys "completed" notification settles nothing
//!   until `check_payment` agrees (when configured): it records the amount
//!   (so a mismatch is caught at once) and makes the check due now.
//! - **Stale is not the end.** A late final answer settles a stale payment,
//!   and a hint or a held success makes a stale payment due for a check again.
//! - **The schedule.** Every decision says what becomes of the payment's
//!   check: kept, removed, ensured, or due now.
//! - **Judged again.** A refusal that depended on the state at that moment
//!   (no amount known yet, a flag standing) is recorded without its dedupe
//!   key, so the same observation seen again is judged again.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::ids::{Provider, ProviderTxnId, Source};
use crate::money::Money;
use crate::observation::Observation;
use crate::schedule::CheckPolicy;
use crate::state::{self, ObservedStatus, PaymentState, PaymentStatus, Step, TransitionError};

/// Why a payment is flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// The provider's amount differs from the registered one.
    AmountMismatch,
    /// The provider's currency differs from the registered one.
    CurrencyMismatch,
    /// The provider's transaction id differs from the one the ledger holds.
    TxnMismatch,
    /// A refund larger than what was paid.
    RefundExceedsPaid,
    /// A provider's final answer against a final state.
    Conflict,
    /// A test-mode payment on an account not configured for test payments.
    TestPayment,
}

impl FlagKind {
    /// Every kind.
    pub const ALL: [FlagKind; 6] = [
        FlagKind::AmountMismatch,
        FlagKind::CurrencyMismatch,
        FlagKind::TxnMismatch,
        FlagKind::RefundExceedsPaid,
        FlagKind::Conflict,
        FlagKind::TestPayment,
    ];

    /// The stable name in the ledger, events and metrics.
    pub fn code(self) -> &'static str {
        match self {
            FlagKind::AmountMismatch => "amount_mismatch",
            FlagKind::CurrencyMismatch => "currency_mismatch",
            FlagKind::TxnMismatch => "txn_mismatch",
            FlagKind::RefundExceedsPaid => "refund_exceeds_paid",
            FlagKind::Conflict => "conflict",
            FlagKind::TestPayment => "test_payment",
        }
    }

    /// A conflict is announced as `payment.conflict`; every other flag as
    /// `payment.mismatch`.
    pub fn event(self) -> EventKind {
        match self {
            FlagKind::Conflict => EventKind::Conflict,
            _ => EventKind::Mismatch,
        }
    }

    fn of(refusal: &TransitionError) -> Option<FlagKind> {
        match refusal {
            TransitionError::AmountMismatch { .. } => Some(FlagKind::AmountMismatch),
            TransitionError::CurrencyMismatch { .. } => Some(FlagKind::CurrencyMismatch),
            TransitionError::RefundExceedsPaid { .. } => Some(FlagKind::RefundExceedsPaid),
            TransitionError::ConflictsWithFinal { .. } => Some(FlagKind::Conflict),
            _ => None,
        }
    }
}

/// What the provider said that the ledger did not take: what an operator
/// accepts with `--accept-provider`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub status: ObservedStatus,
    pub money: Option<Money>,
    pub provider_txn_id: Option<ProviderTxnId>,
    pub source: Source,
}

impl Claim {
    fn of(o: &Observation) -> Claim {
        Claim {
            status: o.status,
            money: o.money,
            provider_txn_id: o.provider_txn_id.clone(),
            source: o.source,
        }
    }
}

/// A standing flag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flag {
    pub kind: FlagKind,
    pub claim: Claim,
    /// For people: what disagrees with what.
    pub detail: String,
    /// A conflict waiting for its one re-check: not announced yet, and it
    /// holds nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub awaiting_recheck: bool,
}

impl Flag {
    /// Whether the flag holds the payment (every flag but one awaiting its
    /// re-check).
    pub fn holds(&self) -> bool {
        !self.awaiting_recheck
    }

    /// `amount_mismatch: amount 9.00 USD disagrees with the expected 10.00 USD`.
    pub fn summary(&self) -> String {
        format!("{}: {}", self.kind.code(), self.detail)
    }
}

/// What the ledger holds of one payment, as far as decisions go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub provider: Provider,
    /// Status and money. `expected` is the shop's registration (or, until the
    /// shop registers, the provider's first amount); `refunded` is `None`
    /// for a refunded payment whose refunded total nobody reported.
    pub state: PaymentState,
    pub registered: bool,
    pub provider_txn_id: Option<ProviderTxnId>,
    pub flag: Option<Flag>,
    /// Bumped by every change; events carry it as `ledger_version`.
    pub version: i64,
    pub created_at: Timestamp,
}

impl Payment {
    /// A payment first heard of from the provider.
    pub fn unregistered(provider: Provider, created_at: Timestamp) -> Payment {
        Payment {
            provider,
            state: PaymentState::unregistered(),
            registered: false,
            provider_txn_id: None,
            flag: None,
            version: 0,
            created_at,
        }
    }

    fn status(&self) -> PaymentStatus {
        self.state.status
    }

    fn standing_flag(&self) -> Option<&Flag> {
        self.flag.as_ref().filter(|f| f.holds())
    }
}

/// The rules of one provider account that decisions depend on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub check: CheckPolicy,
    /// Test-mode payments are real here (a test account).
    pub accepts_test: bool,
    /// A PaySys "completed" notification waits for `check_payment`.
    pub hold_success_until_checked: bool,
    /// How long a re-check of a final or stale payment may take before it
    /// is given up (a conflict is then announced without it).
    pub recheck_window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            check: CheckPolicy::default(),
            accepts_test: false,
            hold_success_until_checked: true,
            recheck_window: Duration::from_secs(60 * 60),
        }
    }
}

/// Whether the provider has a reversal after success (PaySys status 3
/// after 2).
pub fn has_reversal(provider: Provider) -> bool {
    matches!(provider, Provider::Paysys)
}

/// What the history row says of the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The shop's registration.
    Registered,
    /// The payment moved.
    Applied,
    /// Nothing changes; the reason says why.
    Ignored,
    /// The payment is flagged (announced unless already flagged the same way).
    Flagged,
    /// A flag holds the payment: recorded, not applied.
    Held,
    /// A conflict waits for one re-check before it is announced.
    Recheck,
    /// An operator resolved a flag.
    Resolved,
}

impl Outcome {
    /// The name in the ledger's history.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Registered => "registered",
            Outcome::Applied => "applied",
            Outcome::Ignored => "ignored",
            Outcome::Flagged => "flagged",
            Outcome::Held => "held",
            Outcome::Recheck => "recheck",
            Outcome::Resolved => "resolved",
        }
    }
}

/// The history row's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub outcome: Outcome,
    /// Set when the status moved.
    pub from: Option<PaymentStatus>,
    pub to: Option<PaymentStatus>,
    /// A stable code: the state machine's refusal, the flag, the resolution.
    pub reason: Option<&'static str>,
    /// For people.
    pub detail: Option<String>,
}

/// Which event finance hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// The payment entered an announced status.
    Status(PaymentStatus),
    /// `payment.mismatch`.
    Mismatch,
    /// `payment.conflict`.
    Conflict,
    /// `payment.resolved`.
    Resolved,
}

impl EventKind {
    /// `payment.succeeded` and so on.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::Status(PaymentStatus::Succeeded) => "payment.succeeded",
            EventKind::Status(PaymentStatus::Failed) => "payment.failed",
            EventKind::Status(PaymentStatus::Canceled) => "payment.canceled",
            EventKind::Status(PaymentStatus::Refunded) => "payment.refunded",
            EventKind::Status(PaymentStatus::Stale) => "payment.stale",
            EventKind::Status(PaymentStatus::Created | PaymentStatus::Pending) => "payment.pending",
            EventKind::Mismatch => "payment.mismatch",
            EventKind::Conflict => "payment.conflict",
            EventKind::Resolved => "payment.resolved",
        }
    }
}

/// An operator's way out of a flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The provider is right: its claim is applied.
    AcceptProvider,
    /// The ledger is right: the claim is set aside.
    KeepLedger,
}

impl Resolution {
    /// `accept_provider` or `keep_ledger`.
    pub fn code(self) -> &'static str {
        match self {
            Resolution::AcceptProvider => "accept_provider",
            Resolution::KeepLedger => "keep_ledger",
        }
    }
}

/// One event to write into the outbox with the decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub status: PaymentStatus,
    pub previous_status: PaymentStatus,
    /// For a status event, the payment's amount (a refund: what this event
    /// refunds, `None` when nobody reported it); for a flag, what the
    /// provider reported.
    pub amount: Option<Money>,
    /// For a refund, everything refunded so far, when known.
    pub refunded_total: Option<Money>,
    /// For a flag, what the ledger expected.
    pub expected: Option<Money>,
    pub flag: Option<FlagKind>,
    pub resolution: Option<Resolution>,
    pub version: i64,
}

/// What becomes of the payment's check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Leave it as it is.
    Keep,
    /// Off the schedule (final, stale or flagged).
    Remove,
    /// On the schedule if not already: first check at `first`, stale at
    /// `deadline`.
    Ensure {
        first: Timestamp,
        deadline: Timestamp,
    },
    /// Due now; a payment off the schedule comes back on it until
    /// `deadline` (a re-check of a final or stale payment).
    Now { deadline: Timestamp, recheck: bool },
}

/// Everything one decision changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The payment after the decision.
    pub payment: Payment,
    /// Whether the payment's row changes (its version with it).
    pub changed: bool,
    pub record: Record,
    pub events: Vec<Event>,
    pub schedule: Schedule,
    /// Whether the observation's dedupe key is kept, so the same observation
    /// seen again is a duplicate. `false` for a refusal that depended on the
    /// state at that moment: seen again, it is judged again.
    pub keep_dedupe: bool,
}

fn after(at: Timestamp, wait: Duration) -> Timestamp {
    at.checked_add(SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX))
        .unwrap_or(Timestamp::MAX)
}

/// The schedule of a payment that should be checked until it settles.
fn ensure(payment: &Payment, policy: &Policy, now: Timestamp) -> Schedule {
    let deadline = after(payment.created_at, policy.check.deadline);
    let first = if payment.provider.can_be_polled() {
        after(now, policy.check.first).min(deadline)
    } else {
        deadline
    };
    Schedule::Ensure { first, deadline }
}

/// What the schedule becomes when the payment is (now) `status`.
fn follow(payment: &Payment, policy: &Policy, now: Timestamp) -> Schedule {
    let status = payment.status();
    if status.is_final() || status == PaymentStatus::Stale || payment.standing_flag().is_some() {
        Schedule::Remove
    } else {
        ensure(payment, policy, now)
    }
}

/// Makes a payment due for a check now. A payment that is final or stale
/// comes back on the schedule for one re-check window; a flagged payment and
/// a provider without a status API are not checked.
pub fn check_now(payment: &Payment, policy: &Policy, now: Timestamp) -> Option<Schedule> {
    if !payment.provider.can_be_polled() || payment.standing_flag().is_some() {
        return None;
    }
    let status = payment.status();
    if status.is_final() || status == PaymentStatus::Stale {
        Some(Schedule::Now {
            deadline: after(now, policy.recheck_window),
            recheck: true,
        })
    } else {
        Some(Schedule::Now {
            deadline: after(payment.created_at, policy.check.deadline),
            recheck: false,
        })
    }
}

fn status_events(steps: &[Step], state: &PaymentState, version: i64) -> Vec<Event> {
    steps
        .iter()
        .enumerate()
        .filter(|(_, step)| step.to.is_announced())
        .map(|(index, step)| Event {
            kind: EventKind::Status(step.to),
            status: step.to,
            previous_status: step.from,
            amount: step.amount,
            refunded_total: (step.to == PaymentStatus::Refunded)
                .then_some(state.refunded)
                .flatten(),
            expected: None,
            flag: None,
            resolution: None,
            version: version + index as i64 + 1,
        })
        .collect()
}

fn unchanged(payment: Payment, record: Record, schedule: Schedule, keep_dedupe: bool) -> Decision {
    Decision {
        payment,
        changed: false,
        record,
        events: Vec::new(),
        schedule,
        keep_dedupe,
    }
}

fn ignored(reason: &TransitionError) -> Record {
    Record {
        outcome: Outcome::Ignored,
        from: None,
        to: None,
        reason: Some(reason.code()),
        detail: Some(reason.to_string()),
    }
}

/// Flags `payment` with `flag` and announces it (callers have held a
/// payment whose flag stands before getting here).
fn flag(mut payment: Payment, flag: Flag, reported: Option<Money>) -> Decision {
    let version = payment.version + 1;
    let status = payment.status();
    let event = Event {
        kind: flag.kind.event(),
        status,
        previous_status: status,
        amount: reported,
        refunded_total: None,
        expected: payment.state.expected.or(payment.state.paid),
        flag: Some(flag.kind),
        resolution: None,
        version,
    };
    let record = Record {
        outcome: Outcome::Flagged,
        from: None,
        to: None,
        reason: Some(flag.kind.code()),
        detail: Some(flag.detail.clone()),
    };
    payment.flag = Some(flag);
    payment.version = version;
    Decision {
        payment,
        changed: true,
        record,
        events: vec![event],
        schedule: Schedule::Remove,
        keep_dedupe: true,
    }
}

/// Decides what observation `o` does to `payment` (`None`: the ledger has
/// never heard of it).
pub fn decide(
    payment: Option<&Payment>,
    o: &Observation,
    policy: &Policy,
    now: Timestamp,
) -> Decision {
    let is_new = payment.is_none();
    let mut payment = payment
        .cloned()
        .unwrap_or_else(|| Payment::unregistered(o.provider, now));
    if is_new {
        payment.provider_txn_id = o.provider_txn_id.clone();
    }

    // A standing flag holds the payment: nothing settles it or changes its
    // money until an operator resolves it.
    if let Some(standing) = payment.standing_flag() {
        let record = Record {
            outcome: Outcome::Held,
            from: None,
            to: None,
            reason: Some(standing.kind.code()),
            detail: Some(format!("held by {}", standing.summary())),
        };
        return unchanged(payment, record, Schedule::Remove, false);
    }

    // The deadline of a re-check passed without an answer: the conflict is
    // announced as the callback said it.
    if o.status == ObservedStatus::Stale
        && let Some(pending) = payment.flag.take()
    {
        let mut confirmed = pending;
        confirmed.awaiting_recheck = false;
        confirmed.detail = format!("{} (the re-check got no answer)", confirmed.detail);
        let reported = confirmed.claim.money;
        return flag(payment, confirmed, reported);
    }

    if o.test && !policy.accepts_test {
        let detail = format!(
            "the provider reports a test-mode payment ({} {}) on a live account",
            o.status.target(),
            money_text(o.money)
        );
        let claim = Claim::of(o);
        return flag(
            payment,
            Flag {
                kind: FlagKind::TestPayment,
                claim,
                detail,
                awaiting_recheck: false,
            },
            o.money,
        );
    }

    if let (Some(ours), Some(theirs)) = (&payment.provider_txn_id, &o.provider_txn_id)
        && ours != theirs
    {
        let detail = format!("transaction id {theirs} disagrees with the ledger's {ours}");
        return flag(
            payment,
            Flag {
                kind: FlagKind::TxnMismatch,
                claim: Claim::of(o),
                detail,
                awaiting_recheck: false,
            },
            o.money,
        );
    }

    let held = policy.hold_success_until_checked
        && o.provider == Provider::Paysys
        && o.source == Source::Callback
        && o.status == ObservedStatus::Succeeded;
    // A held success against a final state is a conflict like any other:
    // the check it asks for is its re-check.
    if held
        && matches!(
            state::apply(&payment.state, o.status, o.money),
            Err(TransitionError::ConflictsWithFinal { .. })
        )
        && !payment.flag.as_ref().is_some_and(|f| f.awaiting_recheck)
    {
        return recheck(payment, o, policy, now);
    }
    let observed = if held {
        ObservedStatus::Pending
    } else {
        o.status
    };
    let observed = with_refund_part(observed, o, &payment.state);

    let from = payment.status();
    let result = state::apply(&payment.state, observed, o.money).and_then(|t| {
        if from == PaymentStatus::Succeeded
            && t.to() == PaymentStatus::Canceled
            && !has_reversal(o.provider)
        {
            Err(TransitionError::ConflictsWithFinal {
                from,
                to: PaymentStatus::Canceled,
            })
        } else {
            Ok(t)
        }
    });

    // A held success also makes the check due now, whatever the payment's
    // state (a stale payment included).
    let held_schedule = |payment: &Payment| check_now(payment, policy, now);

    match result {
        Ok(transition) => {
            let version = payment.version + transition.steps.len() as i64;
            let events = status_events(&transition.steps, &transition.state, payment.version);
            payment.state = transition.state;
            payment.version = version;
            if payment.provider_txn_id.is_none() {
                payment.provider_txn_id = o.provider_txn_id.clone();
            }
            // A re-check that found the payment moving on (a refund, a
            // reversal) dismisses the conflict it was looking for.
            if o.source == Source::Check && payment.flag.is_some() {
                payment.flag = None;
            }
            let schedule = match held.then(|| held_schedule(&payment)).flatten() {
                Some(now) => now,
                None => follow(&payment, policy, now),
            };
            Decision {
                record: Record {
                    outcome: Outcome::Applied,
                    from: Some(from),
                    to: Some(payment.status()),
                    reason: held.then_some("held_until_checked"),
                    detail: None,
                },
                payment,
                changed: true,
                events,
                schedule,
                keep_dedupe: true,
            }
        }
        Err(refusal) => match FlagKind::of(&refusal) {
            Some(FlagKind::Conflict) => {
                let awaiting = payment.flag.as_ref().is_some_and(|f| f.awaiting_recheck);
                if o.provider.can_be_polled() && o.source != Source::Reconcile && !awaiting {
                    // The provider can be asked: it is, once, before anyone
                    // is told (an answer that crossed a newer one in flight
                    // is not a conflict).
                    recheck(payment, o, policy, now)
                } else if awaiting && o.source == Source::Callback {
                    unchanged(payment, ignored(&refusal), Schedule::Keep, true)
                } else {
                    let detail = format!(
                        "the provider says {} ({:?}), the ledger {from}",
                        o.status.target(),
                        o.provider_status
                    );
                    flag(
                        payment,
                        Flag {
                            kind: FlagKind::Conflict,
                            claim: Claim::of(o),
                            detail,
                            awaiting_recheck: false,
                        },
                        o.money,
                    )
                }
            }
            Some(kind) => {
                let reported = match refusal {
                    TransitionError::AmountMismatch { observed, .. } => Some(observed),
                    TransitionError::RefundExceedsPaid { refund, .. } => Some(refund),
                    _ => o.money,
                };
                let detail = refusal.to_string();
                flag(
                    payment,
                    Flag {
                        kind,
                        claim: Claim::of(o),
                        detail,
                        awaiting_recheck: false,
                    },
                    reported,
                )
            }
            None => {
                // The re-check's answer agrees with the ledger (or is older
                // than it): the conflict the callback claimed is dismissed.
                if o.source == Source::Check
                    && payment.flag.as_ref().is_some_and(|f| f.awaiting_recheck)
                {
                    payment.flag = None;
                    payment.version += 1;
                    let schedule = follow(&payment, policy, now);
                    return Decision {
                        payment,
                        changed: true,
                        record: Record {
                            outcome: Outcome::Ignored,
                            from: None,
                            to: None,
                            reason: Some("conflict_not_confirmed"),
                            detail: Some(format!("the re-check agrees with the ledger: {refusal}")),
                        },
                        events: Vec::new(),
                        schedule,
                        keep_dedupe: true,
                    };
                }
                // Refusals that depend on what the ledger knows now are
                // judged again when seen again.
                let depends_on_state = matches!(refusal, TransitionError::UnknownAmount);
                let schedule = if held {
                    held_schedule(&payment).unwrap_or(Schedule::Keep)
                } else if is_new {
                    ensure(&payment, policy, now)
                } else if from.is_final() || from == PaymentStatus::Stale {
                    if payment.flag.is_some() {
                        Schedule::Keep
                    } else {
                        Schedule::Remove
                    }
                } else {
                    Schedule::Keep
                };
                Decision {
                    changed: is_new,
                    payment,
                    record: ignored(&refusal),
                    events: Vec::new(),
                    schedule,
                    keep_dedupe: !depends_on_state,
                }
            }
        },
    }
}

/// A refund reported as "this refund" becomes a total on top of what the
/// ledger knows; with no known total there is nothing to add it to.
fn with_refund_part(
    observed: ObservedStatus,
    o: &Observation,
    state: &PaymentState,
) -> ObservedStatus {
    match (observed, o.refund_part) {
        (ObservedStatus::Refunded { total: None }, Some(part)) => {
            let before = match state.status {
                PaymentStatus::Refunded => state.refunded,
                _ => Money::from_minor(0, part.currency()).ok(),
            };
            let total = before
                .filter(|b| b.currency() == part.currency())
                .and_then(|b| {
                    Money::from_minor(b.minor().saturating_add(part.minor()), part.currency()).ok()
                });
            ObservedStatus::Refunded { total }
        }
        _ => observed,
    }
}

/// A conflict from a callback, where the provider can be asked: checked once
/// before it is announced.
fn recheck(mut payment: Payment, o: &Observation, policy: &Policy, now: Timestamp) -> Decision {
    let from = payment.status();
    let detail = format!(
        "the provider says {} ({:?}), the ledger {from}",
        o.status.target(),
        o.provider_status
    );
    payment.flag = Some(Flag {
        kind: FlagKind::Conflict,
        claim: Claim::of(o),
        detail: detail.clone(),
        awaiting_recheck: true,
    });
    payment.version += 1;
    let schedule = Schedule::Now {
        deadline: after(now, policy.recheck_window),
        recheck: true,
    };
    Decision {
        payment,
        changed: true,
        record: Record {
            outcome: Outcome::Recheck,
            from: None,
            to: None,
            reason: Some("conflicts_with_final"),
            detail: Some(detail),
        },
        events: Vec::new(),
        schedule,
        keep_dedupe: true,
    }
}

fn money_text(money: Option<Money>) -> String {
    money.map_or_else(|| "no amount".to_owned(), |m| m.to_string())
}

/// The shop saying "expect this payment".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expectation {
    pub provider: Provider,
    pub money: Money,
    pub provider_txn_id: Option<ProviderTxnId>,
}

/// Why a registration is refused: the shop contradicts its own earlier
/// registration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the payment is registered with {field} {existing}, not {requested}")]
pub struct RegistrationConflict {
    pub field: &'static str,
    pub existing: String,
    pub requested: String,
}

/// What a registration does. `Ok(None)`: the same registration again,
/// nothing changes.
pub fn decide_registration(
    payment: Option<&Payment>,
    shop: &Expectation,
    registered_before: Option<Money>,
    policy: &Policy,
    now: Timestamp,
) -> Result<Option<Decision>, RegistrationConflict> {
    let registered = Record {
        outcome: Outcome::Registered,
        from: None,
        to: None,
        reason: None,
        detail: None,
    };
    let Some(existing) = payment else {
        let mut payment = Payment::unregistered(shop.provider, now);
        payment.state = PaymentState::registered(shop.money);
        payment.registered = true;
        payment.provider_txn_id = shop.provider_txn_id.clone();
        payment.version = 1;
        return Ok(Some(Decision {
            schedule: follow(&payment, policy, now),
            payment,
            changed: true,
            record: registered,
            events: Vec::new(),
            keep_dedupe: true,
        }));
    };
    let mut payment = existing.clone();
    if payment.registered {
        let before = registered_before.or(payment.state.expected);
        if before.is_some_and(|b| b != shop.money) {
            return Err(RegistrationConflict {
                field: "amount",
                existing: money_text(before),
                requested: shop.money.to_string(),
            });
        }
    }
    if let (Some(have), Some(want)) = (&payment.provider_txn_id, &shop.provider_txn_id)
        && have != want
        && payment.registered
    {
        return Err(RegistrationConflict {
            field: "provider transaction id",
            existing: have.to_string(),
            requested: want.to_string(),
        });
    }
    let fills_txn = payment.provider_txn_id.is_none() && shop.provider_txn_id.is_some();
    if payment.registered && !fills_txn {
        return Ok(None);
    }

    // The provider spoke first (or the shop adds the provider's id).
    let reported = payment.state.expected;
    let txn_differs =
        matches!((&payment.provider_txn_id, &shop.provider_txn_id), (Some(a), Some(b)) if a != b);
    payment.registered = true;
    payment.state.expected = Some(shop.money);
    if payment.provider_txn_id.is_none() {
        payment.provider_txn_id = shop.provider_txn_id.clone();
    }
    payment.version += 1;
    let claim = |money| Claim {
        status: observed_of(existing.state.status, existing.state.refunded),
        money,
        provider_txn_id: existing.provider_txn_id.clone(),
        source: Source::Callback,
    };
    let flagged = match reported {
        Some(reported) if reported.currency() != shop.money.currency() => Some(Flag {
            kind: FlagKind::CurrencyMismatch,
            claim: claim(Some(reported)),
            detail: format!(
                "currency {} disagrees with the expected {}",
                reported.currency(),
                shop.money.currency()
            ),
            awaiting_recheck: false,
        }),
        Some(reported) if reported != shop.money => Some(Flag {
            kind: FlagKind::AmountMismatch,
            claim: claim(Some(reported)),
            detail: format!(
                "amount {reported} disagrees with the expected {}",
                shop.money
            ),
            awaiting_recheck: false,
        }),
        _ if txn_differs => Some(Flag {
            kind: FlagKind::TxnMismatch,
            claim: claim(reported),
            detail: format!(
                "transaction id {} disagrees with the shop's {}",
                existing
                    .provider_txn_id
                    .as_ref()
                    .map_or("-", |t| t.as_str()),
                shop.provider_txn_id.as_ref().map_or("-", |t| t.as_str())
            ),
            awaiting_recheck: false,
        }),
        _ => None,
    };
    match flagged {
        Some(new_flag) if payment.standing_flag().is_none() => {
            let status = payment.status();
            let reported_money = new_flag.claim.money;
            let kind = new_flag.kind;
            let record = Record {
                outcome: Outcome::Registered,
                from: None,
                to: None,
                reason: Some(kind.code()),
                detail: Some(new_flag.detail.clone()),
            };
            payment.flag = Some(new_flag);
            let event = Event {
                kind: kind.event(),
                status,
                previous_status: status,
                amount: reported_money,
                refunded_total: None,
                expected: Some(shop.money),
                flag: Some(kind),
                resolution: None,
                version: payment.version,
            };
            Ok(Some(Decision {
                payment,
                changed: true,
                record,
                events: vec![event],
                schedule: Schedule::Remove,
                keep_dedupe: true,
            }))
        }
        _ => {
            let schedule = follow(&payment, policy, now);
            Ok(Some(Decision {
                payment,
                changed: true,
                record: registered,
                events: Vec::new(),
                schedule,
                keep_dedupe: true,
            }))
        }
    }
}

fn observed_of(status: PaymentStatus, refunded: Option<Money>) -> ObservedStatus {
    match status {
        PaymentStatus::Created | PaymentStatus::Pending => ObservedStatus::Pending,
        PaymentStatus::Succeeded => ObservedStatus::Succeeded,
        PaymentStatus::Failed => ObservedStatus::Failed,
        PaymentStatus::Canceled => ObservedStatus::Canceled,
        PaymentStatus::Refunded => ObservedStatus::Refunded { total: refunded },
        PaymentStatus::Stale => ObservedStatus::Stale,
    }
}

/// Why a resolution is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("the payment is not flagged")]
    NotFlagged,
    #[error("the reason is empty")]
    NoReason,
}

/// An operator's resolution of a flag: `AcceptProvider` applies the
/// provider's claim (its amount, currency and transaction id become the
/// ledger's, and its status is taken even against a final state);
/// `KeepLedger` sets the claim aside. Either way the flag is cleared, the
/// history keeps the reason, and finance hears `payment.resolved` (and the
/// status events of any move).
pub fn decide_resolution(
    payment: &Payment,
    resolution: Resolution,
    reason: &str,
    policy: &Policy,
    now: Timestamp,
) -> Result<Decision, ResolveError> {
    if reason.trim().is_empty() {
        return Err(ResolveError::NoReason);
    }
    let Some(flag) = payment.flag.clone() else {
        return Err(ResolveError::NotFlagged);
    };
    let mut next = payment.clone();
    next.flag = None;
    let from = payment.status();
    let mut steps = Vec::new();
    if resolution == Resolution::AcceptProvider {
        if let Some(txn) = &flag.claim.provider_txn_id {
            next.provider_txn_id = Some(txn.clone());
        }
        let mut state = next.state;
        if let Some(money) = flag.claim.money
            && !matches!(flag.claim.status, ObservedStatus::Refunded { .. })
        {
            state.expected = Some(money);
            if state.paid.is_some() {
                state.paid = Some(money);
            }
        }
        match state::apply(&state, flag.claim.status, flag.claim.money) {
            Ok(t) => {
                steps = t.steps;
                next.state = t.state;
            }
            Err(_) => {
                // Against a final state: the operator's word moves it.
                let to = flag.claim.status.target();
                if to != from && to != PaymentStatus::Stale {
                    let (state, amount) = forced(state, flag.claim.status);
                    steps.push(Step { from, to, amount });
                    next.state = state;
                } else {
                    next.state = state;
                }
            }
        }
    }
    let version = payment.version + 1;
    let mut events = vec![Event {
        kind: EventKind::Resolved,
        status: next.status(),
        previous_status: from,
        amount: next.state.paid.or(next.state.expected),
        refunded_total: None,
        expected: payment.state.expected,
        flag: Some(flag.kind),
        resolution: Some(resolution),
        version,
    }];
    events.extend(status_events(&steps, &next.state, version));
    next.version = version + steps.len() as i64;
    let schedule = follow(&next, policy, now);
    Ok(Decision {
        record: Record {
            outcome: Outcome::Resolved,
            from: Some(from),
            to: Some(next.status()),
            reason: Some(resolution.code()),
            detail: Some(format!("{}: {reason}", flag.summary())),
        },
        payment: next,
        changed: true,
        events,
        schedule,
        keep_dedupe: true,
    })
}

/// The state an operator's acceptance of `claim` gives, outside the table.
fn forced(mut state: PaymentState, claim: ObservedStatus) -> (PaymentState, Option<Money>) {
    let to = claim.target();
    let amount = match to {
        PaymentStatus::Succeeded => {
            state.paid = state.expected;
            state.refunded = None;
            state.paid
        }
        PaymentStatus::Failed | PaymentStatus::Canceled => {
            state.refunded = None;
            state.paid.take().or(state.expected)
        }
        PaymentStatus::Refunded => {
            state.paid = state.paid.or(state.expected);
            if let ObservedStatus::Refunded { total } = claim {
                state.refunded = total;
            }
            state.refunded
        }
        _ => state.expected,
    };
    state.status = to;
    (state, amount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{Account, Reference};
    use crate::money::Currency;

    pub(super) fn usd(minor: i64) -> Money {
        Money::from_minor(minor, Currency::Usd).unwrap()
    }

    pub(super) fn at(second: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + second).unwrap()
    }

    fn registered(provider: Provider, status: PaymentStatus) -> Payment {
        let paid =
            matches!(status, PaymentStatus::Succeeded | PaymentStatus::Refunded).then(|| usd(1000));
        Payment {
            provider,
            state: PaymentState {
                status,
                expected: Some(usd(1000)),
                paid,
                refunded: (status == PaymentStatus::Refunded).then(|| usd(300)),
            },
            registered: true,
            provider_txn_id: Some(ProviderTxnId::parse("T-1").unwrap()),
            flag: None,
            version: 3,
            created_at: at(0),
        }
    }

    fn seen(
        provider: Provider,
        status: ObservedStatus,
        money: Option<Money>,
        source: Source,
    ) -> Observation {
        Observation {
            provider,
            account: Account::default(),
            reference: Reference::parse("ORDER-1").unwrap(),
            provider_txn_id: Some(ProviderTxnId::parse("T-1").unwrap()),
            status,
            money,
            provider_status: format!("{status:?}"),
            provider_time: None,
            observed_at: at(10),
            source,
            test: false,
            refund_part: None,
        }
    }

    fn policy() -> Policy {
        Policy {
            hold_success_until_checked: false,
            ..Policy::default()
        }
    }

    fn flag_of(kind: FlagKind, awaiting_recheck: bool) -> Flag {
        Flag {
            kind,
            claim: Claim {
                status: ObservedStatus::Succeeded,
                money: Some(usd(999)),
                provider_txn_id: None,
                source: Source::Callback,
            },
            detail: "test".into(),
            awaiting_recheck,
        }
    }

    fn observed_kinds() -> [ObservedStatus; 7] {
        [
            ObservedStatus::Pending,
            ObservedStatus::Succeeded,
            ObservedStatus::Failed,
            ObservedStatus::Canceled,
            ObservedStatus::Refunded { total: None },
            ObservedStatus::Stale,
            ObservedStatus::Refunded {
                total: Some(usd(500)),
            },
        ]
    }

    /// Every (status, flag, observation kind, source, provider): the
    /// decision keeps the rules whatever the combination.
    #[test]
    fn every_status_flag_and_observation_keeps_the_rules() {
        let mut flags: Vec<Option<Flag>> = vec![None];
        for kind in FlagKind::ALL {
            flags.push(Some(flag_of(kind, false)));
        }
        flags.push(Some(flag_of(FlagKind::Conflict, true)));
        let mut cases = 0;
        for provider in Provider::ALL {
            for status in PaymentStatus::ALL {
                for flag in &flags {
                    for observed in observed_kinds() {
                        for source in [Source::Callback, Source::Check, Source::Reconcile] {
                            for money in [None, Some(usd(1000)), Some(usd(10))] {
                                cases += 1;
                                let mut payment = registered(provider, status);
                                payment.flag = flag.clone();
                                let o = seen(provider, observed, money, source);
                                let d = decide(Some(&payment), &o, &policy(), at(20));
                                let why = format!(
                                    "{provider} {status} {flag:?} {observed:?} {source} {money:?} -> {d:?}"
                                );
                                // A standing flag holds: nothing moves, nobody is told.
                                if flag.as_ref().is_some_and(|f| f.holds()) {
                                    assert_eq!(d.record.outcome, Outcome::Held, "{why}");
                                    assert!(!d.changed && d.events.is_empty(), "{why}");
                                    assert_eq!(d.payment, payment, "{why}");
                                    assert!(
                                        !d.keep_dedupe,
                                        "{why}: judged again after the resolution"
                                    );
                                    continue;
                                }
                                // Money never changes without a move.
                                if d.payment.state.status == status {
                                    assert_eq!(d.payment.state.paid, payment.state.paid, "{why}");
                                }
                                // Every move is in the table, or an announced flag.
                                if d.record.outcome == Outcome::Applied {
                                    let to = d.payment.state.status;
                                    assert!(to == status || allowed_path(status, to), "{why}");
                                    if status == PaymentStatus::Succeeded
                                        && to == PaymentStatus::Canceled
                                    {
                                        assert!(
                                            has_reversal(provider),
                                            "{why}: a reversal only where one exists"
                                        );
                                    }
                                    for event in &d.events {
                                        assert!(event.status.is_announced(), "{why}");
                                    }
                                }
                                if d.record.outcome == Outcome::Flagged {
                                    assert_eq!(d.events.len(), 1, "{why}: each flag is one event");
                                    assert!(
                                        d.payment.flag.as_ref().is_some_and(|f| f.holds()),
                                        "{why}"
                                    );
                                    assert_eq!(d.payment.state, payment.state, "{why}");
                                    assert_eq!(d.schedule, Schedule::Remove, "{why}");
                                }
                                if d.record.outcome == Outcome::Recheck {
                                    assert!(provider.can_be_polled(), "{why}");
                                    assert!(
                                        d.events.is_empty(),
                                        "{why}: not announced before the re-check"
                                    );
                                    assert!(
                                        matches!(d.schedule, Schedule::Now { recheck: true, .. }),
                                        "{why}"
                                    );
                                }
                                // A final state never goes back.
                                if status.is_final() {
                                    assert!(d.payment.state.status.is_final(), "{why}");
                                }
                                // A conflict of a final answer is never silently ignored.
                                if status.is_final()
                                    && observed.target().is_final()
                                    && matches!(
                                        state::apply(&payment.state, observed, money),
                                        Err(TransitionError::ConflictsWithFinal { .. })
                                    )
                                {
                                    assert!(
                                        matches!(
                                            d.record.outcome,
                                            Outcome::Flagged | Outcome::Recheck
                                        ) || flag.as_ref().is_some_and(|f| f.awaiting_recheck),
                                        "{why}"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(cases > 3000, "{cases}");
    }

    fn allowed_path(from: PaymentStatus, to: PaymentStatus) -> bool {
        state::allowed(from, to)
            || (state::allowed(from, PaymentStatus::Succeeded)
                && state::allowed(PaymentStatus::Succeeded, to))
    }

    #[test]
    fn declined_then_approved_is_a_conflict_announced_for_plutu_and_rechecked_for_paysys() {
        let failed = registered(Provider::Plutu, PaymentStatus::Failed);
        let approval = seen(
            Provider::Plutu,
            ObservedStatus::Succeeded,
            Some(usd(1000)),
            Source::Callback,
        );
        let d = decide(Some(&failed), &approval, &policy(), at(20));
        assert_eq!(d.record.outcome, Outcome::Flagged);
        assert_eq!(d.events[0].kind, EventKind::Conflict);
        assert_eq!(d.payment.state.status, PaymentStatus::Failed);

        let failed = registered(Provider::Paysys, PaymentStatus::Failed);
        let approval = seen(
            Provider::Paysys,
            ObservedStatus::Succeeded,
            Some(usd(1000)),
            Source::Callback,
        );
        let d = decide(Some(&failed), &approval, &policy(), at(20));
        assert_eq!(d.record.outcome, Outcome::Recheck);
        assert!(d.events.is_empty());
        // The check agrees with the callback: announced.
        let check = seen(
            Provider::Paysys,
            ObservedStatus::Succeeded,
            None,
            Source::Check,
        );
        let confirmed = decide(Some(&d.payment), &check, &policy(), at(30));
        assert_eq!(confirmed.record.outcome, Outcome::Flagged);
        assert_eq!(confirmed.events[0].kind, EventKind::Conflict);
        // The check agrees with the ledger: dismissed, nobody told.
        let check = seen(
            Provider::Paysys,
            ObservedStatus::Failed,
            None,
            Source::Check,
        );
        let dismissed = decide(Some(&d.payment), &check, &policy(), at(30));
        assert_eq!(dismissed.record.reason, Some("conflict_not_confirmed"));
        assert!(dismissed.payment.flag.is_none() && dismissed.events.is_empty());
        // No answer before the re-check's deadline: announced anyway.
        let stale = seen(Provider::Paysys, ObservedStatus::Stale, None, Source::Check);
        let unanswered = decide(Some(&d.payment), &stale, &policy(), at(30));
        assert_eq!(unanswered.events[0].kind, EventKind::Conflict);
    }

    #[test]
    fn success_to_canceled_is_a_reversal_only_for_paysys() {
        for provider in Provider::ALL {
            let paid = registered(provider, PaymentStatus::Succeeded);
            let cancel = seen(provider, ObservedStatus::Canceled, None, Source::Check);
            let d = decide(Some(&paid), &cancel, &policy(), at(20));
            if provider == Provider::Paysys {
                assert_eq!(d.payment.state.status, PaymentStatus::Canceled);
            } else {
                assert_eq!(
                    d.payment.state.status,
                    PaymentStatus::Succeeded,
                    "{provider}"
                );
                assert_eq!(d.payment.state.paid, Some(usd(1000)), "{provider}");
                if provider.can_be_polled() {
                    assert_eq!(d.record.outcome, Outcome::Recheck, "{provider}");
                } else {
                    assert_eq!(d.events.len(), 1);
                    assert_eq!(d.events[0].kind, EventKind::Conflict);
                }
            }
        }
    }

    #[test]
    fn a_flagged_payment_never_settles_from_an_answer_without_an_amount() {
        let created = registered(Provider::Paysys, PaymentStatus::Created);
        let wrong = seen(
            Provider::Paysys,
            ObservedStatus::Succeeded,
            Some(usd(10)),
            Source::Callback,
        );
        let flagged = decide(Some(&created), &wrong, &policy(), at(20));
        assert_eq!(flagged.events[0].flag, Some(FlagKind::AmountMismatch));
        let amountless = seen(
            Provider::Paysys,
            ObservedStatus::Succeeded,
            None,
            Source::Check,
        );
        let d = decide(Some(&flagged.payment), &amountless, &policy(), at(30));
        assert_eq!(d.record.outcome, Outcome::Held);
        assert_eq!(d.payment.state.status, PaymentStatus::Created);
    }

    #[test]
    fn another_transaction_id_is_flagged() {
        let created = registered(Provider::Plutu, PaymentStatus::Created);
        let mut other = seen(
            Provider::Plutu,
            ObservedStatus::Succeeded,
            Some(usd(1000)),
            Source::Callback,
        );
        other.provider_txn_id = Some(ProviderTxnId::parse("T-2").unwrap());
        let d = decide(Some(&created), &other, &policy(), at(20));
        assert_eq!(d.events[0].flag, Some(FlagKind::TxnMismatch));
        assert_eq!(d.payment.state.status, PaymentStatus::Created);
    }

    #[test]
    fn stale_is_not_the_end() {
        let stale = registered(Provider::Paysys, PaymentStatus::Stale);
        let late = seen(
            Provider::Plutu,
            ObservedStatus::Succeeded,
            Some(usd(1000)),
            Source::Callback,
        );
        let d = decide(Some(&stale), &late, &policy(), at(20));
        assert_eq!(d.payment.state.status, PaymentStatus::Succeeded);
        // A held PaySys success and a hint make the check due again.
        let held = Policy {
            hold_success_until_checked: true,
            ..Policy::default()
        };
        let completed = seen(
            Provider::Paysys,
            ObservedStatus::Succeeded,
            Some(usd(1000)),
            Source::Callback,
        );
        let d = decide(Some(&stale), &completed, &held, at(20));
        assert!(
            matches!(d.schedule, Schedule::Now { recheck: true, .. }),
            "{d:?}"
        );
        assert!(matches!(
            check_now(&stale, &held, at(20)),
            Some(Schedule::Now { recheck: true, .. })
        ));
        let mut flagged = stale.clone();
        flagged.flag = Some(flag_of(FlagKind::AmountMismatch, false));
        assert_eq!(check_now(&flagged, &held, at(20)), None);
    }

    #[test]
    fn a_refusal_that_depended_on_the_state_is_judged_again() {
        let unregistered = Payment::unregistered(Provider::Paysys, at(0));
        let no_amount = seen(
            Provider::Paysys,
            ObservedStatus::Succeeded,
            None,
            Source::Check,
        );
        let d = decide(Some(&unregistered), &no_amount, &policy(), at(20));
        assert_eq!(d.record.reason, Some("unknown_amount"));
        assert!(!d.keep_dedupe);
    }

    #[test]
    fn a_registration_that_disagrees_with_the_provider_flags_and_keeps_the_shops_money() {
        let mut first = Payment::unregistered(Provider::Portmanat, at(0));
        first.state.status = PaymentStatus::Pending;
        first.state.expected = Some(Money::from_minor(500, Currency::Azn).unwrap());
        let shop = Expectation {
            provider: Provider::Portmanat,
            money: usd(500),
            provider_txn_id: None,
        };
        let d = decide_registration(Some(&first), &shop, None, &policy(), at(5))
            .unwrap()
            .unwrap();
        assert_eq!(
            d.payment.state.expected,
            Some(usd(500)),
            "the shop's money, as registered"
        );
        assert_eq!(d.events[0].flag, Some(FlagKind::CurrencyMismatch));
        assert_eq!(
            d.payment.flag.as_ref().unwrap().claim.money,
            Some(Money::from_minor(500, Currency::Azn).unwrap())
        );
    }

    #[test]
    fn resolutions_clear_the_flag_and_are_announced() {
        let created = registered(Provider::Paysys, PaymentStatus::Created);
        let wrong = seen(
            Provider::Paysys,
            ObservedStatus::Succeeded,
            Some(usd(900)),
            Source::Check,
        );
        let flagged = decide(Some(&created), &wrong, &policy(), at(20)).payment;
        assert_eq!(
            decide_resolution(&created, Resolution::KeepLedger, "x", &policy(), at(30)),
            Err(ResolveError::NotFlagged)
        );
        assert_eq!(
            decide_resolution(&flagged, Resolution::KeepLedger, " ", &policy(), at(30)),
            Err(ResolveError::NoReason)
        );
        let kept = decide_resolution(
            &flagged,
            Resolution::KeepLedger,
            "shop confirms",
            &policy(),
            at(30),
        )
        .unwrap();
        assert!(kept.payment.flag.is_none());
        assert_eq!(kept.payment.state.status, PaymentStatus::Created);
        assert_eq!(kept.events.len(), 1);
        assert_eq!(kept.events[0].kind, EventKind::Resolved);
        assert!(matches!(kept.schedule, Schedule::Ensure { .. }));

        let accepted = decide_resolution(
            &flagged,
            Resolution::AcceptProvider,
            "bank statement",
            &policy(),
            at(30),
        )
        .unwrap();
        assert_eq!(accepted.payment.state.status, PaymentStatus::Succeeded);
        assert_eq!(accepted.payment.state.paid, Some(usd(900)));
        let kinds: Vec<_> = accepted.events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [
                EventKind::Resolved,
                EventKind::Status(PaymentStatus::Succeeded)
            ]
        );
        assert_eq!(accepted.events[1].amount, Some(usd(900)));

        // Accepting a conflict moves a final state, as the operator said.
        let failed = registered(Provider::Plutu, PaymentStatus::Failed);
        let approval = seen(
            Provider::Plutu,
            ObservedStatus::Succeeded,
            Some(usd(1000)),
            Source::Callback,
        );
        let conflict = decide(Some(&failed), &approval, &policy(), at(20)).payment;
        let accepted = decide_resolution(
            &conflict,
            Resolution::AcceptProvider,
            "captured",
            &policy(),
            at(30),
        )
        .unwrap();
        assert_eq!(accepted.payment.state.status, PaymentStatus::Succeeded);
        assert_eq!(accepted.payment.state.paid, Some(usd(1000)));
        assert_eq!(
            accepted.events.last().unwrap().previous_status,
            PaymentStatus::Failed
        );
    }
}

#[cfg(test)]
mod properties {
    use super::tests::{at, usd};
    use super::*;
    use crate::ids::{Account, Reference};
    use proptest::prelude::*;

    fn observation(
        provider: Provider,
        status: ObservedStatus,
        money: Option<Money>,
        check: bool,
    ) -> Observation {
        Observation {
            provider,
            account: Account::default(),
            reference: Reference::parse("ORDER-1").unwrap(),
            provider_txn_id: None,
            status,
            money,
            provider_status: format!("{status:?}"),
            provider_time: None,
            observed_at: at(1),
            source: if check {
                Source::Check
            } else {
                Source::Callback
            },
            test: false,
            refund_part: None,
        }
    }

    /// Runs observations through `decide` as the ledger would: a repeat of
    /// an observation whose key was kept changes nothing.
    fn run(provider: Provider, seq: &[(ObservedStatus, Option<Money>, bool)]) -> Payment {
        let policy = Policy {
            hold_success_until_checked: false,
            ..Policy::default()
        };
        let mut payment = Payment::unregistered(provider, at(0));
        payment.state = PaymentState::registered(usd(1000));
        payment.registered = true;
        let mut seen = Vec::new();
        for (status, money, check) in seq {
            let o = observation(provider, *status, *money, *check);
            let key = o.dedupe_key();
            if seen.contains(&key) {
                continue;
            }
            let d = decide(Some(&payment), &o, &policy, at(2));
            if d.keep_dedupe {
                seen.push(key);
            }
            // Nothing moves money while a flag stands.
            if payment.flag.as_ref().is_some_and(|f| f.holds()) {
                assert_eq!(d.payment.state, payment.state);
            }
            payment = d.payment;
        }
        payment
    }

    fn lifecycle() -> impl Strategy<Value = (Provider, Vec<(ObservedStatus, Option<Money>, bool)>)>
    {
        let amount = Some(usd(1000));
        let provider = prop::sample::select(Provider::ALL.to_vec());
        let ending = prop_oneof![
            Just(vec![(ObservedStatus::Succeeded, amount)]),
            Just(vec![(ObservedStatus::Failed, amount)]),
            Just(vec![(ObservedStatus::Canceled, amount)]),
            prop::collection::vec(1i64..=1000, 1..4).prop_map(move |mut totals| {
                totals.sort_unstable();
                let mut seq = vec![(ObservedStatus::Succeeded, amount)];
                seq.extend(totals.into_iter().map(|t| {
                    (
                        ObservedStatus::Refunded {
                            total: Some(usd(t)),
                        },
                        None,
                    )
                }));
                // A refund answer without an amount (PaySys check_payment).
                seq.push((ObservedStatus::Refunded { total: None }, None));
                seq
            }),
            Just(vec![]),
        ];
        (
            provider,
            0usize..3,
            any::<bool>(),
            ending,
            prop::collection::vec(any::<bool>(), 8),
        )
            .prop_map(move |(provider, pendings, stale, ending, checks)| {
                let mut seq = vec![(ObservedStatus::Pending, amount); pendings];
                if stale {
                    seq.push((ObservedStatus::Stale, None));
                }
                seq.extend(ending);
                let seq = seq
                    .into_iter()
                    .zip(checks)
                    .map(|((s, m), c)| (s, m, c && provider.can_be_polled()))
                    .collect();
                (provider, seq)
            })
    }

    proptest! {
        /// One real payment's life, with duplicates and in any order,
        /// including stale verdicts, late answers and partial refunds:
        /// the same status and money as in order, and never a standing flag
        /// (nothing in a genuine life disagrees; an answer that crossed a
        /// newer one is at most re-checked, which announces nothing).
        #[test]
        fn a_genuine_life_converges_in_any_order(
            (provider, seq) in lifecycle(),
            duplicates in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            order in any::<u64>(),
        ) {
            let in_order = run(provider, &seq);
            let mut noisy = seq.clone();
            for pick in &duplicates {
                if !seq.is_empty() {
                    noisy.push(seq[pick.index(seq.len())]);
                }
            }
            let mut key = order;
            noisy.sort_by_cached_key(|_| { key = key.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); key >> 33 });
            let shuffled = run(provider, &noisy);
            let stale_and_final = in_order.state.status.is_final();
            prop_assert_eq!(shuffled.state.status, in_order.state.status, "{:?}", noisy);
            prop_assert_eq!(shuffled.state.paid, in_order.state.paid);
            if stale_and_final {
                prop_assert!(shuffled.flag.as_ref().is_none_or(|f| f.awaiting_recheck), "{:?}", shuffled.flag);
            }
        }

        /// A provider that reports another amount, anywhere in a life,
        /// flags the payment, and no money is booked after it.
        #[test]
        fn another_amount_anywhere_flags_and_books_nothing_after(
            (provider, seq) in lifecycle(),
            at_index in any::<prop::sample::Index>(),
        ) {
            let mut seq = seq;
            let wrong = (ObservedStatus::Succeeded, Some(usd(999)), false);
            let index = at_index.index(seq.len() + 1);
            seq.insert(index, wrong);
            let before = run(provider, &seq[..index]);
            let end = run(provider, &seq);
            if before.flag.is_none() && before.state.status != PaymentStatus::Failed && before.state.status != PaymentStatus::Canceled {
                prop_assert!(end.flag.as_ref().is_some_and(|f| f.holds()), "{:?}", end);
                prop_assert_eq!(end.state, before.state, "nothing booked after the flag");
            }
        }
    }
}
