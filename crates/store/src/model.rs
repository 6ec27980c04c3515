//! What goes into the ledger and what comes out of it.

use jiff::Timestamp;
use paysettle_core::decide::Flag;
use paysettle_core::{
    Account, Money, Observation, PaymentStatus, Provider, ProviderTxnId, Reference,
};
use serde::Serialize;

/// The ledger's own id of a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct PaymentId(pub i64);

/// The shop saying "expect this payment".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub provider: Provider,
    pub account: Account,
    pub reference: Reference,
    pub money: Money,
    /// The provider's id when the shop already has it (Portmanat's `psp_rrn`).
    pub provider_txn_id: Option<ProviderTxnId>,
    pub registered_at: Timestamp,
}

/// What registering did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// A new payment.
    Created(PaymentId),
    /// The same registration again: nothing changed.
    AlreadyRegistered(PaymentId),
    /// The provider spoke about it first; it is now registered too.
    Adopted(PaymentId),
}

impl RegisterOutcome {
    /// The payment, whatever happened.
    pub fn payment_id(self) -> PaymentId {
        match self {
            RegisterOutcome::Created(id)
            | RegisterOutcome::AlreadyRegistered(id)
            | RegisterOutcome::Adopted(id) => id,
        }
    }
}

/// The rules of the ledger's decisions besides each provider's polling
/// policy (see `paysettle_core::decide::Policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRules {
    /// A PaySys "completed" notification waits for `check_payment`. Off in
    /// [`Default`] (a ledger on its own has nobody to check with); the
    /// product turns it on from `worker.paysys_confirm` (default true).
    pub hold_paysys_success: bool,
    /// Accounts whose test-mode payments are real (test accounts).
    pub test_accounts: Vec<(Provider, Account)>,
    /// How long a re-check of a settled or stale payment may take.
    pub recheck_window: std::time::Duration,
}

impl Default for LedgerRules {
    fn default() -> Self {
        LedgerRules {
            hold_paysys_success: false,
            test_accounts: Vec::new(),
            recheck_window: std::time::Duration::from_secs(60 * 60),
        }
    }
}

/// One observation to apply, with the raw request or answer it came from
/// (secrets and card numbers are removed again before it is written).
#[derive(Debug, Clone)]
pub struct ApplyRequest {
    pub observation: Observation,
    pub raw: Option<serde_json::Value>,
}

/// What applying an observation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApplyOutcome {
    /// The payment moved; `events` are the outbox events written with it.
    Applied {
        payment_id: PaymentId,
        from: PaymentStatus,
        to: PaymentStatus,
        version: i64,
        events: Vec<String>,
    },
    /// The same observation was applied before; nothing was written.
    Duplicate { payment_id: PaymentId },
    /// Recorded in the history, but it changes nothing (`reason` is the
    /// state machine's code, `detail` its message).
    Ignored {
        payment_id: PaymentId,
        reason: &'static str,
        detail: String,
    },
    /// The provider contradicts the shop or the ledger: the payment is
    /// flagged (`reason` is the flag's code) and finance hears of it once
    /// (`payment.mismatch` or `payment.conflict`).
    Mismatch {
        payment_id: PaymentId,
        reason: &'static str,
        detail: String,
        event: Option<String>,
    },
    /// A flag holds the payment: recorded in the history, not applied.
    Held {
        payment_id: PaymentId,
        reason: &'static str,
    },
    /// A callback contradicts a final state; the provider is asked once more
    /// before the conflict is announced.
    Recheck { payment_id: PaymentId },
}

impl ApplyOutcome {
    /// The payment concerned.
    pub fn payment_id(&self) -> PaymentId {
        match self {
            ApplyOutcome::Applied { payment_id, .. }
            | ApplyOutcome::Duplicate { payment_id }
            | ApplyOutcome::Ignored { payment_id, .. }
            | ApplyOutcome::Mismatch { payment_id, .. }
            | ApplyOutcome::Held { payment_id, .. }
            | ApplyOutcome::Recheck { payment_id } => *payment_id,
        }
    }

    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            ApplyOutcome::Applied { .. } => "applied",
            ApplyOutcome::Duplicate { .. } => "duplicate",
            ApplyOutcome::Ignored { .. } => "ignored",
            ApplyOutcome::Mismatch { .. } => "flagged",
            ApplyOutcome::Held { .. } => "held",
            ApplyOutcome::Recheck { .. } => "recheck",
        }
    }

    /// Whether outbox events were written with it.
    pub fn wrote_events(&self) -> bool {
        match self {
            ApplyOutcome::Applied { events, .. } => !events.is_empty(),
            ApplyOutcome::Mismatch { event, .. } => event.is_some(),
            _ => false,
        }
    }
}

/// A payment as the ledger holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PaymentRecord {
    pub id: PaymentId,
    pub provider: Provider,
    pub account: Account,
    pub reference: Reference,
    pub provider_txn_id: Option<ProviderTxnId>,
    pub status: PaymentStatus,
    /// What the shop registered (or, until it does, the provider's first
    /// amount).
    pub expected: Option<Money>,
    pub paid: Option<Money>,
    /// Everything refunded so far; `None` for a refunded payment whose
    /// refunded total nobody reported.
    pub refunded: Option<Money>,
    /// Whether the shop registered it (otherwise the provider spoke first).
    pub registered: bool,
    /// The standing flag's summary, if one holds the payment
    /// (`amount_mismatch: …`).
    pub mismatch: Option<String>,
    /// The flag, with the provider's claim (also one awaiting its re-check).
    pub flag: Option<Flag>,
    /// Bumped by every change; events carry it as `ledger_version`.
    pub version: i64,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One row of a payment's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    pub id: i64,
    /// `callback`, `check`, `reconcile`, or `shop` for the registration.
    pub source: String,
    pub observed_status: String,
    pub provider_status: String,
    pub money: Option<Money>,
    pub refund_total: Option<Money>,
    pub provider_time: Option<Timestamp>,
    pub provider_time_raw: Option<String>,
    pub observed_at: Timestamp,
    pub recorded_at: Timestamp,
    /// `registered`, `applied`, `ignored`, `flagged`, `held`, `recheck` or
    /// `resolved` (`mismatch` in ledgers written before flags).
    pub outcome: String,
    pub from_status: Option<String>,
    pub to_status: Option<String>,
    pub reason: Option<String>,
    pub version: i64,
    pub raw: Option<serde_json::Value>,
}

/// An event waiting in (or sent from) the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxEvent {
    /// The outbox order: events are published in this order.
    pub seq: i64,
    pub event_id: String,
    pub payment_id: PaymentId,
    pub event_type: String,
    pub routing_key: String,
    /// The event's JSON, exactly as it will be published.
    pub body: String,
    pub created_at: Timestamp,
    pub published_at: Option<Timestamp>,
}

/// Where a payment not yet final stands in the check schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckState {
    /// Checks made so far.
    pub attempts: u32,
    pub next_check_at: Timestamp,
    /// Past it, the payment is marked stale.
    pub deadline_at: Timestamp,
    /// The last check's error, if the last check failed.
    pub last_error: Option<String>,
    /// When that check failed (unknown for a failure recorded before
    /// schema version 2).
    pub last_error_at: Option<Timestamp>,
}

/// A payment whose status check is due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueCheck {
    pub payment: PaymentRecord,
    pub attempts: u32,
    pub next_check_at: Timestamp,
    pub deadline_at: Timestamp,
    pub last_error: Option<String>,
}

/// Which payments to list. `since`/`until` bound the last update,
/// `created_since`/`created_until` the creation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PaymentFilter {
    pub provider: Option<Provider>,
    pub account: Option<Account>,
    /// Any of these statuses; empty means all.
    pub statuses: Vec<PaymentStatus>,
    /// Only flagged payments.
    pub mismatched: bool,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    pub created_since: Option<Timestamp>,
    pub created_until: Option<Timestamp>,
    /// Also every payment not final (created, pending, stale) of the
    /// provider and account, whatever its status filter and times say: a
    /// reconciliation batch's default selection.
    pub or_unsettled: bool,
    /// Paging: only ids greater than this.
    pub after_id: Option<PaymentId>,
    pub limit: usize,
}

/// Which outbox events to read. Times bound the event's creation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub payment: Option<PaymentId>,
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// Paging: only events after this outbox position.
    pub after_seq: Option<i64>,
    pub limit: usize,
}

/// What asking for a check now did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckNow {
    /// The payment's check is due now (a stale or settled payment is back on
    /// the schedule for one re-check).
    Scheduled(PaymentId),
    /// The payment is known but not checked: flagged, or its provider has
    /// no status API.
    NotScheduled(PaymentId),
    /// No such payment.
    Unknown,
}

impl CheckNow {
    /// The payment, when known.
    pub fn payment_id(self) -> Option<PaymentId> {
        match self {
            CheckNow::Scheduled(id) | CheckNow::NotScheduled(id) => Some(id),
            CheckNow::Unknown => None,
        }
    }
}

/// What an operator's resolution of a flag did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub payment_id: PaymentId,
    pub from: PaymentStatus,
    pub to: PaymentStatus,
    pub events: Vec<String>,
}

/// How to find one payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentKey {
    Reference(Reference),
    ProviderTxnId(ProviderTxnId),
}

/// A deployment-wide rate limit of one provider account, kept in the ledger
/// so every worker draws from the same bucket: on average `per_second`
/// requests, at most `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

/// What asking the rate limit for one request said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateDecision {
    /// Ask the provider now (a token was taken).
    Go,
    /// No token: ask again at this time.
    WaitUntil(Timestamp),
}
