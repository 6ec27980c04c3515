//! The ledger handle callers use: the SQLite ledger (one file, one worker)
//! or the PostgreSQL one (one database, many workers) behind one type, so
//! the worker, the shop API and every operator command work on either.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;
use paysettle_core::decide::Resolution;
use paysettle_core::{Account, PaymentStatus, Provider, Reference};
use tokio::sync::watch;

use crate::error::StoreError;
use crate::ledger::{LedgerHealth, LedgerOptions, SqliteLedger};
use crate::model::{
    ApplyOutcome, ApplyRequest, CheckNow, CheckState, DueCheck, EventFilter, HistoryEntry,
    OutboxEvent, PaymentFilter, PaymentId, PaymentKey, PaymentRecord, RateDecision, RateLimit,
    RegisterOutcome, Registration, Resolved,
};
use crate::pg::{PgLedger, PgOptions};

/// Where the ledger is.
#[derive(Debug, Clone)]
pub enum LedgerTarget {
    /// A SQLite file (created if missing).
    Sqlite(PathBuf),
    /// A PostgreSQL database (its tables created if missing).
    Postgres(PgOptions),
}

/// The ledger. Cheap to clone; clones share the writer (SQLite) or the
/// pool (PostgreSQL).
#[derive(Debug, Clone)]
pub enum Ledger {
    Sqlite(SqliteLedger),
    Postgres(PgLedger),
}

impl From<SqliteLedger> for Ledger {
    fn from(ledger: SqliteLedger) -> Self {
        Ledger::Sqlite(ledger)
    }
}

impl From<PgLedger> for Ledger {
    fn from(ledger: PgLedger) -> Self {
        Ledger::Postgres(ledger)
    }
}

impl Ledger {
    /// Opens (creating if needed) the SQLite ledger at `path`.
    pub fn open(path: impl AsRef<Path>, options: LedgerOptions) -> Result<Ledger, StoreError> {
        SqliteLedger::open(path, options).map(Ledger::Sqlite)
    }

    /// Opens the PostgreSQL ledger `pg` describes.
    pub async fn open_postgres(
        pg: &PgOptions,
        options: LedgerOptions,
    ) -> Result<Ledger, StoreError> {
        PgLedger::open(pg, options).await.map(Ledger::Postgres)
    }

    /// Opens the ledger wherever it is.
    pub async fn connect(
        target: &LedgerTarget,
        options: LedgerOptions,
    ) -> Result<Ledger, StoreError> {
        match target {
            LedgerTarget::Sqlite(path) => Ledger::open(path, options),
            LedgerTarget::Postgres(pg) => Ledger::open_postgres(pg, options).await,
        }
    }

    /// Whether several workers may share this ledger (PostgreSQL): they
    /// then claim checks and events with leases and share the providers'
    /// rate limits through it. A SQLite ledger has one worker (its claim
    /// file sees to it).
    pub fn is_shared(&self) -> bool {
        matches!(self, Ledger::Postgres(_))
    }

    /// The SQLite file, when the ledger is one.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            Ledger::Sqlite(l) => Some(l.path()),
            Ledger::Postgres(_) => None,
        }
    }

    /// Where the ledger is, for logs and messages (never a password).
    pub fn describe(&self) -> String {
        match self {
            Ledger::Sqlite(l) => l.path().display().to_string(),
            Ledger::Postgres(l) => l.shown().to_owned(),
        }
    }

    /// The ledger's id: stable for the ledger, different for another one.
    pub fn id(&self) -> &str {
        match self {
            Ledger::Sqlite(l) => l.id(),
            Ledger::Postgres(l) => l.id(),
        }
    }

    /// Changes after each commit of this process's writes: for waiting for
    /// new events instead of polling. On PostgreSQL another process's
    /// commits of events wake it too (`NOTIFY`); on SQLite they do not.
    pub fn commits(&self) -> watch::Receiver<u64> {
        match self {
            Ledger::Sqlite(l) => l.commits(),
            Ledger::Postgres(l) => l.commits(),
        }
    }

    /// Registers a payment the shop expects. The same registration again is a
    /// no-op; a different amount or provider id for the same reference is a
    /// [`StoreError::Conflict`].
    pub async fn register(
        &self,
        registration: Registration,
    ) -> Result<RegisterOutcome, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.register(registration).await,
            Ledger::Postgres(l) => l.register(registration).await,
        }
    }

    /// Applies one observation in its own transaction.
    pub async fn apply(&self, request: ApplyRequest) -> Result<ApplyOutcome, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.apply(request).await,
            Ledger::Postgres(l) => l.apply(request).await,
        }
    }

    /// Applies many observations in one transaction, each with its own
    /// outcome: an observation that fails is rolled back alone.
    pub async fn apply_batch(
        &self,
        requests: Vec<ApplyRequest>,
    ) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.apply_batch(requests).await,
            Ledger::Postgres(l) => l.apply_batch(requests).await,
        }
    }

    /// Applies a status check's answer and, in the same transaction, counts
    /// the attempt, schedules the next check and ends the check's claim.
    pub async fn apply_check(
        &self,
        request: ApplyRequest,
        next_check_at: Timestamp,
    ) -> Result<ApplyOutcome, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.apply_check(request, next_check_at).await,
            Ledger::Postgres(l) => l.apply_check(request, next_check_at).await,
        }
    }

    /// Records a status check: attempts + 1, the next check time (`None`
    /// takes the payment off the schedule), the error if it failed; ends the
    /// check's claim.
    pub async fn record_check(
        &self,
        payment: PaymentId,
        next_check_at: Option<Timestamp>,
        error: Option<String>,
    ) -> Result<bool, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.record_check(payment, next_check_at, error).await,
            Ledger::Postgres(l) => l.record_check(payment, next_check_at, error).await,
        }
    }

    /// Makes a payment's check due now, and says whether it did.
    pub async fn check_now(
        &self,
        provider: Provider,
        account: Account,
        key: PaymentKey,
    ) -> Result<CheckNow, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.check_now(provider, account, key).await,
            Ledger::Postgres(l) => l.check_now(provider, account, key).await,
        }
    }

    /// An operator's resolution of a flagged payment, decided by core's
    /// `decide_resolution`.
    pub async fn resolve(
        &self,
        provider: Provider,
        account: Account,
        reference: Reference,
        resolution: Resolution,
        reason: String,
    ) -> Result<Resolved, StoreError> {
        match self {
            Ledger::Sqlite(l) => {
                l.resolve(provider, account, reference, resolution, reason)
                    .await
            }
            Ledger::Postgres(l) => {
                l.resolve(provider, account, reference, resolution, reason)
                    .await
            }
        }
    }

    /// Marks outbox events published (after the broker confirmed them).
    pub async fn mark_published(&self, seqs: Vec<i64>) -> Result<usize, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.mark_published(seqs).await,
            Ledger::Postgres(l) => l.mark_published(seqs).await,
        }
    }

    /// One payment by the shop's reference.
    pub async fn payment(
        &self,
        provider: Provider,
        account: Account,
        reference: Reference,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.payment(provider, account, reference).await,
            Ledger::Postgres(l) => l.payment(provider, account, reference).await,
        }
    }

    /// One payment by the ledger's id.
    pub async fn payment_by_id(&self, id: PaymentId) -> Result<Option<PaymentRecord>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.payment_by_id(id).await,
            Ledger::Postgres(l) => l.payment_by_id(id).await,
        }
    }

    /// One payment by the shop's reference or the provider's id.
    pub async fn find(
        &self,
        provider: Provider,
        account: Account,
        key: PaymentKey,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.find(provider, account, key).await,
            Ledger::Postgres(l) => l.find(provider, account, key).await,
        }
    }

    /// A payment's history, oldest first.
    pub async fn history(&self, payment: PaymentId) -> Result<Vec<HistoryEntry>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.history(payment).await,
            Ledger::Postgres(l) => l.history(payment).await,
        }
    }

    /// Payments matching a filter, by id.
    pub async fn list(&self, filter: PaymentFilter) -> Result<Vec<PaymentRecord>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.list(filter).await,
            Ledger::Postgres(l) => l.list(filter).await,
        }
    }

    /// How many payments match a filter (its paging ignored).
    pub async fn count(&self, filter: PaymentFilter) -> Result<u64, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.count(filter).await,
            Ledger::Postgres(l) => l.count(filter).await,
        }
    }

    /// For `/metrics`: failing checks per provider and account, unpublished
    /// events and the age of the oldest, flagged payments.
    pub async fn health(&self, now: Timestamp) -> Result<LedgerHealth, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.health(now).await,
            Ledger::Postgres(l) => l.health(now).await,
        }
    }

    /// A payment's place in the check schedule (`None` once it is final).
    pub async fn check_state(&self, payment: PaymentId) -> Result<Option<CheckState>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.check_state(payment).await,
            Ledger::Postgres(l) => l.check_state(payment).await,
        }
    }

    /// Payments whose check is due at `now`, most overdue first (claimed or
    /// not; workers sharing a ledger use [`Ledger::claim_due_checks`]).
    pub async fn due_checks(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueCheck>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.due_checks(now, limit).await,
            Ledger::Postgres(l) => l.due_checks(now, limit).await,
        }
    }

    /// Events not yet confirmed by the broker, in outbox order (claimed or
    /// not; relays sharing a ledger use [`Ledger::claim_unpublished`]).
    pub async fn unpublished(&self, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.unpublished(limit).await,
            Ledger::Postgres(l) => l.unpublished(limit).await,
        }
    }

    /// Every event of one payment, in order.
    pub async fn events_of(&self, payment: PaymentId) -> Result<Vec<OutboxEvent>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.events_of(payment).await,
            Ledger::Postgres(l) => l.events_of(payment).await,
        }
    }

    /// The events of many payments, in outbox order.
    pub async fn events_of_payments(
        &self,
        payments: Vec<PaymentId>,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.events_of_payments(payments).await,
            Ledger::Postgres(l) => l.events_of_payments(payments).await,
        }
    }

    /// Recorded events, published or not, in outbox order.
    pub async fn events(&self, filter: EventFilter) -> Result<Vec<OutboxEvent>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.events(filter).await,
            Ledger::Postgres(l) => l.events(filter).await,
        }
    }

    /// How many payments are in each status.
    pub async fn counts(&self) -> Result<Vec<(PaymentStatus, i64)>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.counts().await,
            Ledger::Postgres(l) => l.counts().await,
        }
    }

    /// Checks the ledger's own invariants (`paysettle ledger check`); each
    /// problem is one line, empty means whole.
    pub async fn integrity_problems(&self) -> Result<Vec<String>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.integrity_problems().await,
            Ledger::Postgres(l) => l.integrity_problems().await,
        }
    }

    /// Claims up to `limit` due checks for `owner` until `now + lease`: two
    /// owners never hold one payment's check at once, a dead owner's claims
    /// come back when the lease ends, recording the check ends the claim.
    pub async fn claim_due_checks(
        &self,
        owner: &str,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<DueCheck>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.claim_due_checks(owner, now, lease, limit).await,
            Ledger::Postgres(l) => l.claim_due_checks(owner, now, lease, limit).await,
        }
    }

    /// Claims up to `limit` unpublished events for `owner` until
    /// `now + lease`, never a payment's event while an earlier one of it is
    /// held; marking them published ends the claim.
    pub async fn claim_unpublished(
        &self,
        owner: &str,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.claim_unpublished(owner, now, lease, limit).await,
            Ledger::Postgres(l) => l.claim_unpublished(owner, now, lease, limit).await,
        }
    }

    /// Takes the deployment-wide lease on asking a provider about `key` for
    /// `owner` until `now + lease`: for a question no check claim covers (a
    /// return hint's `/check` of a payment the ledger cannot check itself),
    /// so two workers handed copies of one hint ask once. `false` when
    /// another owner holds it. An SQLite ledger has one worker, whose own
    /// record of what it is asking is enough: always `true` there.
    pub async fn lease_asking(
        &self,
        key: &str,
        owner: &str,
        now: Timestamp,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        match self {
            Ledger::Sqlite(_) => Ok(true),
            Ledger::Postgres(l) => l.lease_asking(key, owner, now, lease).await,
        }
    }

    /// Ends `owner`'s lease on asking about `key` (one another owner took
    /// since is left alone).
    pub async fn end_asking(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        match self {
            Ledger::Sqlite(_) => Ok(()),
            Ledger::Postgres(l) => l.end_asking(key, owner).await,
        }
    }

    /// Takes one request from the provider account's deployment-wide bucket,
    /// or says when to ask again.
    pub async fn take_rate(
        &self,
        provider: Provider,
        account: &Account,
        limit: RateLimit,
        now: Timestamp,
    ) -> Result<RateDecision, StoreError> {
        match self {
            Ledger::Sqlite(l) => l.take_rate(provider, account, limit, now).await,
            Ledger::Postgres(l) => l.take_rate(provider, account, limit, now).await,
        }
    }
}
