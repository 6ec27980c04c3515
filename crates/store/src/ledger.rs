//! The ledger handle: one writer thread that owns the only writing connection
//! and takes commands from a bounded channel, and read-only connections for
//! queries.
//!
//! One writer because SQLite allows one writer at a time anyway: queueing
//! writes in-process is cheaper than contending for the file lock, keeps
//! `BEGIN IMMEDIATE` from ever waiting on ourselves, and gives one place to
//! batch (group commit). The channel is bounded so a flood waits instead of
//! growing memory.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use paysettle_core::clock::SharedClock;
use paysettle_core::decide::Resolution;
use paysettle_core::schedule::CheckPolicy;
use paysettle_core::{Account, PaymentStatus, Provider, Reference};
use paysettle_sqlite::Writer;
use paysettle_sqlite::rusqlite::{self, Connection, OptionalExtension, TransactionBehavior};
use tokio::sync::{oneshot, watch};

use crate::error::StoreError;
use crate::migrate;
use crate::model::{
    ApplyOutcome, ApplyRequest, CheckNow, CheckState, DueCheck, EventFilter, HistoryEntry,
    LedgerRules, OutboxEvent, PaymentFilter, PaymentId, PaymentKey, PaymentRecord, RegisterOutcome,
    Registration, Resolved,
};
use crate::rows::{self, ms};
use crate::write::{self, Policies, Rules};

/// How durable a commit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Synchronous {
    /// Every commit reaches the disk before it returns (the default: the
    /// ledger is what finance's books rest on).
    #[default]
    Full,
    /// Commits survive a process crash but may be lost on power loss.
    Normal,
}

/// How to open a ledger.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    pub synchronous: Synchronous,
    /// Each provider's polling policy (first check, deadline).
    pub policies: Policies,
    /// The rules of the ledger's decisions besides polling.
    pub rules: LedgerRules,
    /// How many write commands may wait for the writer.
    pub queue_depth: usize,
    /// How long a write waits for another process's lock (an operator's
    /// reconcile batch) before failing as retryable.
    pub busy_timeout: Duration,
    /// Where the writer reads "now" (the wall clock; a test's own clock in
    /// tests, so deadlines and backoff move when the test says).
    pub clock: SharedClock,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        LedgerOptions {
            synchronous: Synchronous::Full,
            policies: Provider::ALL
                .into_iter()
                .map(|p| (p, CheckPolicy::default()))
                .collect(),
            rules: LedgerRules::default(),
            queue_depth: 1024,
            busy_timeout: Duration::from_secs(5),
            clock: crate::SystemClock::shared(),
        }
    }
}

type Reply<T> = oneshot::Sender<Result<T, StoreError>>;

enum Command {
    Register(Box<Registration>, Reply<RegisterOutcome>),
    Apply(Box<write::Prepared>, Reply<ApplyOutcome>),
    ApplyCheck(Box<write::Prepared>, Timestamp, Reply<ApplyOutcome>),
    ApplyBatch(
        Vec<write::Prepared>,
        Reply<Vec<Result<ApplyOutcome, StoreError>>>,
    ),
    RecordCheck(PaymentId, Option<Timestamp>, Option<String>, Reply<bool>),
    CheckNow(Provider, Account, PaymentKey, Reply<CheckNow>),
    Resolve(
        Box<(Provider, Account, Reference)>,
        Resolution,
        String,
        Reply<Resolved>,
    ),
    MarkPublished(Vec<i64>, Reply<usize>),
}

struct Inner {
    path: PathBuf,
    commands: Writer<Command>,
    readers: Mutex<Vec<Connection>>,
    /// This ledger file's id (kept in its `meta` table): the event feed's
    /// cursor carries it, so a cursor from another ledger is refused.
    id: String,
    /// Bumped after every commit of this process's writer.
    commits: watch::Sender<u64>,
}

/// A ledger file. Cheap to clone; every clone talks to the same writer.
#[derive(Clone)]
pub struct SqliteLedger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLedger")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl SqliteLedger {
    /// Opens (creating if needed) the ledger at `path`, applies migrations,
    /// and starts the writer thread.
    pub fn open(
        path: impl AsRef<Path>,
        options: LedgerOptions,
    ) -> Result<SqliteLedger, StoreError> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let sqlite = paysettle_sqlite::Options {
            synchronous: match options.synchronous {
                Synchronous::Full => paysettle_sqlite::Synchronous::Full,
                Synchronous::Normal => paysettle_sqlite::Synchronous::Normal,
            },
            busy_timeout: options.busy_timeout,
            foreign_keys: true,
            secure_delete: false,
        };
        let mut conn =
            paysettle_sqlite::open(&path, &sqlite).map_err(|e| StoreError::opening(&shown, e))?;
        migrate::migrate(&mut conn, &shown)?;
        let id = ledger_id(&conn)?;

        let rules = Rules {
            checks: options.policies.clone(),
            ledger: options.rules.clone(),
        };
        let commits = watch::Sender::new(0);
        let bump = commits.clone();
        let clock = options.clock.clone();
        let commands = Writer::spawn(
            "ledger-writer",
            options.queue_depth,
            MAX_GROUP,
            move |group| writer(&mut conn, group, &rules, &bump, &clock),
        )
        .map_err(|error| StoreError::Open {
            path: shown.clone(),
            error,
        })?;
        Ok(SqliteLedger {
            inner: Arc::new(Inner {
                path,
                commands,
                readers: Mutex::new(Vec::new()),
                id,
                commits,
            }),
        })
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The ledger file's id: stable for the file, different for another one.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Changes after each commit of this process's writer: for waiting for
    /// new events instead of polling. (Another process's writes, such as
    /// `reconcile --apply`, do not wake it.)
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.inner.commits.subscribe()
    }

    async fn send<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, StoreError> {
        self.inner
            .commands
            .ask(make)
            .await
            .map_err(|_| StoreError::WriterGone)?
    }

    /// Registers a payment the shop expects. The same registration again is a
    /// no-op; a different amount or provider id for the same reference is a
    /// [`StoreError::Conflict`].
    pub async fn register(
        &self,
        registration: Registration,
    ) -> Result<RegisterOutcome, StoreError> {
        self.send(|reply| Command::Register(Box::new(registration), reply))
            .await
    }

    /// Applies one observation in its own transaction.
    pub async fn apply(&self, request: ApplyRequest) -> Result<ApplyOutcome, StoreError> {
        let prepared = write::prepare(request);
        self.send(|reply| Command::Apply(Box::new(prepared), reply))
            .await
    }

    /// Applies many observations in one transaction (one commit, one fsync),
    /// each with its own outcome. An observation that fails is rolled back
    /// alone and the others commit: the batch is first tried whole, and only
    /// if something in it fails is it redone with a savepoint each (savepoints
    /// cost a page copy per observation, so the common case goes without).
    pub async fn apply_batch(
        &self,
        requests: Vec<ApplyRequest>,
    ) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
        let prepared = requests.into_iter().map(write::prepare).collect();
        self.send(|reply| Command::ApplyBatch(prepared, reply))
            .await
    }

    /// Applies a status check's answer and, in the same transaction, counts
    /// the attempt and schedules the next check at `next_check_at` (which
    /// changes nothing if the answer settled the payment: settled payments
    /// leave the schedule). One commit per check instead of two.
    pub async fn apply_check(
        &self,
        request: ApplyRequest,
        next_check_at: Timestamp,
    ) -> Result<ApplyOutcome, StoreError> {
        let prepared = write::prepare(request);
        self.send(|reply| Command::ApplyCheck(Box::new(prepared), next_check_at, reply))
            .await
    }

    /// Records a status check: attempts + 1, the next check time (`None`
    /// takes the payment off the schedule) and the error if it failed.
    pub async fn record_check(
        &self,
        payment: PaymentId,
        next_check_at: Option<Timestamp>,
        error: Option<String>,
    ) -> Result<bool, StoreError> {
        self.send(|reply| Command::RecordCheck(payment, next_check_at, error, reply))
            .await
    }

    /// Makes a payment's check due now, and says whether it did: a stale or
    /// settled payment comes back for one re-check; a flagged payment, or one
    /// of a provider without a status API, is not checked.
    pub async fn check_now(
        &self,
        provider: Provider,
        account: Account,
        key: PaymentKey,
    ) -> Result<CheckNow, StoreError> {
        self.send(|reply| Command::CheckNow(provider, account, key, reply))
            .await
    }

    /// An operator's resolution of a flagged payment, decided by core's
    /// `decide_resolution`: kept in the history and announced to finance.
    pub async fn resolve(
        &self,
        provider: Provider,
        account: Account,
        reference: Reference,
        resolution: Resolution,
        reason: String,
    ) -> Result<Resolved, StoreError> {
        self.send(|reply| {
            Command::Resolve(
                Box::new((provider, account, reference)),
                resolution,
                reason,
                reply,
            )
        })
        .await
    }

    /// Marks outbox events published (after the broker confirmed them).
    pub async fn mark_published(&self, seqs: Vec<i64>) -> Result<usize, StoreError> {
        self.send(|reply| Command::MarkPublished(seqs, reply)).await
    }

    /// Runs a read on a read-only connection, off the async threads.
    pub(crate) async fn read<T: Send + 'static>(
        &self,
        query: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let pooled = inner
                .readers
                .lock()
                .map(|mut pool| pool.pop())
                .unwrap_or(None);
            let conn = match pooled {
                Some(conn) => conn,
                None => paysettle_sqlite::open_read_only(&inner.path, Duration::from_secs(5))?,
            };
            let result = query(&conn);
            if let Ok(mut pool) = inner.readers.lock()
                && pool.len() < 8
            {
                pool.push(conn);
            }
            result
        })
        .await
        .map_err(|_| StoreError::ReadFailed)?
    }

    /// One payment by the shop's reference.
    pub async fn payment(
        &self,
        provider: Provider,
        account: Account,
        reference: Reference,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        self.read(move |conn| rows::payment_by_reference(conn, provider, &account, &reference))
            .await
    }

    /// One payment by the ledger's id.
    pub async fn payment_by_id(&self, id: PaymentId) -> Result<Option<PaymentRecord>, StoreError> {
        self.read(move |conn| rows::payment_by_id(conn, id)).await
    }

    /// One payment by the shop's reference or the provider's id.
    pub async fn find(
        &self,
        provider: Provider,
        account: Account,
        key: PaymentKey,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        self.read(move |conn| match &key {
            PaymentKey::Reference(reference) => {
                rows::payment_by_reference(conn, provider, &account, reference)
            }
            PaymentKey::ProviderTxnId(txn) => rows::payment_by_txn(conn, provider, &account, txn),
        })
        .await
    }

    /// A payment's history, oldest first.
    pub async fn history(&self, payment: PaymentId) -> Result<Vec<HistoryEntry>, StoreError> {
        self.read(move |conn| rows::history(conn, payment)).await
    }

    /// Payments matching a filter, by id.
    pub async fn list(&self, filter: PaymentFilter) -> Result<Vec<PaymentRecord>, StoreError> {
        self.read(move |conn| {
            let (condition, params) = filter_sql(&filter);
            let limit = if filter.limit == 0 {
                1000
            } else {
                filter.limit.min(100_000)
            };
            let sql = format!(
                "SELECT {} FROM payments WHERE {condition} ORDER BY id LIMIT {limit}",
                rows::PAYMENT_COLUMNS
            );
            let refs: Vec<&dyn rusqlite::ToSql> = params.iter().map(|p| p.as_ref()).collect();
            rows::payments(conn, &sql, &refs)
        })
        .await
    }

    /// How many payments match a filter (its paging ignored).
    pub async fn count(&self, filter: PaymentFilter) -> Result<u64, StoreError> {
        self.read(move |conn| {
            let filter = PaymentFilter {
                after_id: None,
                ..filter
            };
            let (condition, params) = filter_sql(&filter);
            let sql = format!("SELECT count(*) FROM payments WHERE {condition}");
            let refs: Vec<&dyn rusqlite::ToSql> = params.iter().map(|p| p.as_ref()).collect();
            let n: i64 = conn
                .prepare_cached(&sql)?
                .query_row(&refs[..], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
        .await
    }

    /// For `/metrics`: per provider and account, the scheduled payments
    /// whose last status check failed; and the number of unpublished
    /// outbox events with the age of the oldest, in seconds at `now`.
    pub async fn health(&self, now: Timestamp) -> Result<LedgerHealth, StoreError> {
        self.read(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT p.provider, p.account, count(*) FROM checks c \
                 JOIN payments p ON p.id = c.payment_id \
                 WHERE c.last_error IS NOT NULL GROUP BY p.provider, p.account",
            )?;
            let failing_checks = statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<(String, String, i64)>, _>>()?;
            let (unpublished, oldest): (i64, Option<i64>) = conn.query_row(
                "SELECT count(*), min(created_at_ms) FROM outbox WHERE published_at_ms IS NULL",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let flagged: i64 = conn.query_row(
                "SELECT count(*) FROM payments WHERE mismatch IS NOT NULL",
                [],
                |r| r.get(0),
            )?;
            Ok(LedgerHealth {
                failing_checks,
                unpublished: u64::try_from(unpublished).unwrap_or(0),
                oldest_unpublished_seconds: oldest
                    .map_or(0.0, |at| ((ms(now) - at).max(0) as f64) / 1000.0),
                flagged: u64::try_from(flagged).unwrap_or(0),
            })
        })
        .await
    }

    /// A payment's place in the check schedule (`None` once it is final).
    pub async fn check_state(&self, payment: PaymentId) -> Result<Option<CheckState>, StoreError> {
        self.read(move |conn| rows::check_state(conn, payment))
            .await
    }

    /// Payments whose check is due at `now`, most overdue first.
    pub async fn due_checks(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueCheck>, StoreError> {
        self.read(move |conn| rows::due_checks(conn, ms(now), limit))
            .await
    }

    /// Events not yet confirmed by the broker, in outbox order.
    pub async fn unpublished(&self, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {} FROM outbox WHERE published_at_ms IS NULL ORDER BY seq LIMIT ?1",
                rows::OUTBOX_COLUMNS
            );
            rows::outbox(conn, &sql, &[&(limit as i64)])
        })
        .await
    }

    /// Every event of one payment, in order.
    pub async fn events_of(&self, payment: PaymentId) -> Result<Vec<OutboxEvent>, StoreError> {
        self.read(move |conn| {
            let sql = format!(
                "SELECT {} FROM outbox WHERE payment_id = ?1 ORDER BY seq",
                rows::OUTBOX_COLUMNS
            );
            rows::outbox(conn, &sql, &[&payment.0])
        })
        .await
    }

    /// The events of many payments (a page of a reconciliation batch), in
    /// outbox order.
    pub async fn events_of_payments(
        &self,
        payments: Vec<PaymentId>,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        if payments.is_empty() {
            return Ok(Vec::new());
        }
        self.read(move |conn| {
            let mut all = Vec::new();
            // SQLite's default limit on bound parameters is 32766; stay far below.
            for chunk in payments.chunks(500) {
                let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("?{i}")).collect();
                let sql = format!(
                    "SELECT {} FROM outbox WHERE payment_id IN ({}) ORDER BY seq",
                    rows::OUTBOX_COLUMNS,
                    marks.join(", ")
                );
                let ids: Vec<i64> = chunk.iter().map(|p| p.0).collect();
                let refs: Vec<&dyn rusqlite::ToSql> =
                    ids.iter().map(|i| i as &dyn rusqlite::ToSql).collect();
                all.extend(rows::outbox(conn, &sql, &refs)?);
            }
            all.sort_by_key(|e| e.seq);
            Ok(all)
        })
        .await
    }

    /// Recorded events, published or not, in outbox order: what `events
    /// replay` sends again.
    pub async fn events(&self, filter: EventFilter) -> Result<Vec<OutboxEvent>, StoreError> {
        self.read(move |conn| {
            let mut sql = format!("SELECT {} FROM outbox WHERE 1 = 1", rows::OUTBOX_COLUMNS);
            let mut params: Vec<i64> = Vec::new();
            let mut clause = |sql: &mut String, column: &str, op: &str, value: i64| {
                params.push(value);
                sql.push_str(&format!(" AND {column} {op} ?{}", params.len()));
            };
            if let Some(payment) = filter.payment {
                clause(&mut sql, "payment_id", "=", payment.0);
            }
            if let Some(since) = filter.since {
                clause(&mut sql, "created_at_ms", ">=", ms(since));
            }
            if let Some(until) = filter.until {
                clause(&mut sql, "created_at_ms", "<", ms(until));
            }
            if let Some(after) = filter.after_seq {
                clause(&mut sql, "seq", ">", after);
            }
            let limit = if filter.limit == 0 {
                1000
            } else {
                filter.limit.min(100_000)
            };
            sql.push_str(&format!(" ORDER BY seq LIMIT {limit}"));
            let refs: Vec<&dyn rusqlite::ToSql> =
                params.iter().map(|i| i as &dyn rusqlite::ToSql).collect();
            rows::outbox(conn, &sql, &refs)
        })
        .await
    }

    /// How many payments are in each status.
    pub async fn counts(&self) -> Result<Vec<(PaymentStatus, i64)>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT status, count(*) FROM payments GROUP BY status ORDER BY status",
            )?;
            let raw: Vec<(String, i64)> = statement
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<_, _>>()?;
            raw.into_iter()
                .map(|(status, n)| {
                    Ok((
                        status
                            .parse::<PaymentStatus>()
                            .map_err(|e| StoreError::corrupt("status", e))?,
                        n,
                    ))
                })
                .collect()
        })
        .await
    }

    /// Checks the ledger's own invariants; each problem is one line. Empty
    /// means whole: every applied history row has its payment change and its
    /// events, every event its history row, and each payment's status is
    /// the one its last applied history row moved it to.
    pub async fn integrity_problems(&self) -> Result<Vec<String>, StoreError> {
        self.read(crate::integrity::problems).await
    }
}

/// What `/metrics` shows of the ledger (see [`SqliteLedger::health`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LedgerHealth {
    /// (provider, account, payments whose last check failed).
    pub failing_checks: Vec<(String, String, i64)>,
    pub unpublished: u64,
    pub oldest_unpublished_seconds: f64,
    /// Payments carrying a mismatch flag.
    pub flagged: u64,
}

/// The file's id, made on first open. Not a schema change: the `meta` table
/// is there since version 1. A file paysettle may not write keeps working
/// (its writes fail later, each with its own error) under a fixed id.
fn ledger_id(conn: &Connection) -> Result<String, StoreError> {
    if let Err(err) = conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('ledger_id', lower(hex(randomblob(8))))",
        [],
    ) {
        tracing::debug!(error = %err, "the ledger's id could not be written");
    }
    let id: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'ledger_id'", [], |r| {
            r.get(0)
        })
        .optional()?;
    Ok(id.unwrap_or_else(|| "0".repeat(16)))
}

/// The `WHERE` condition of a payment filter, with its parameters.
fn filter_sql(filter: &PaymentFilter) -> (String, Vec<Box<dyn rusqlite::ToSql>>) {
    let mut sql = String::from("1 = 1");
    let mut params: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    if let Some(provider) = filter.provider {
        params.push(Box::new(provider.as_str()));
        sql.push_str(&format!(" AND provider = ?{}", params.len()));
    }
    if let Some(account) = &filter.account {
        params.push(Box::new(account.as_str().to_owned()));
        sql.push_str(&format!(" AND account = ?{}", params.len()));
    }
    if let Some(after) = filter.after_id {
        params.push(Box::new(after.0));
        sql.push_str(&format!(" AND id > ?{}", params.len()));
    }
    // What follows is the status-and-time part, which `or_unsettled`
    // widens.
    sql.push_str(" AND ((1 = 1");
    if !filter.statuses.is_empty() {
        let mut marks = Vec::new();
        for status in &filter.statuses {
            params.push(Box::new(status.as_str()));
            marks.push(format!("?{}", params.len()));
        }
        sql.push_str(&format!(" AND status IN ({})", marks.join(", ")));
    }
    if filter.mismatched {
        sql.push_str(" AND mismatch IS NOT NULL");
    }
    if let Some(since) = filter.since {
        params.push(Box::new(ms(since)));
        sql.push_str(&format!(" AND updated_at_ms >= ?{}", params.len()));
    }
    if let Some(until) = filter.until {
        params.push(Box::new(ms(until)));
        sql.push_str(&format!(" AND updated_at_ms < ?{}", params.len()));
    }
    if let Some(since) = filter.created_since {
        params.push(Box::new(ms(since)));
        sql.push_str(&format!(" AND created_at_ms >= ?{}", params.len()));
    }
    if let Some(until) = filter.created_until {
        params.push(Box::new(ms(until)));
        sql.push_str(&format!(" AND created_at_ms < ?{}", params.len()));
    }
    sql.push(')');
    if filter.or_unsettled {
        sql.push_str(" OR status IN ('created', 'pending', 'stale')");
    }
    sql.push(')');
    (sql, params)
}

/// The most commands committed together.
const MAX_GROUP: usize = 256;

/// A command's result, held until its transaction commits.
enum Output {
    Register(RegisterOutcome),
    Apply(ApplyOutcome),
    RecordCheck(bool),
    CheckNow(CheckNow),
    Resolve(Resolved),
    MarkPublished(usize),
}

impl Command {
    /// Runs a single command's writes inside `tx` (not `ApplyBatch`, which
    /// is a group of its own).
    fn execute(
        &self,
        tx: &rusqlite::Transaction<'_>,
        rules: &Rules,
        now: Timestamp,
    ) -> Result<Output, StoreError> {
        match self {
            Command::Register(registration, _) => {
                write::register(tx, registration, rules).map(Output::Register)
            }
            Command::Apply(request, _) => write::apply(tx, request, rules, now).map(Output::Apply),
            Command::ApplyCheck(request, next, _) => {
                let outcome = write::apply(tx, request, rules, now)?;
                write::record_check(tx, outcome.payment_id(), Some(*next), None)?;
                Ok(Output::Apply(outcome))
            }
            Command::RecordCheck(payment, next, error, _) => {
                let recorded = write::record_check(tx, *payment, *next, error.as_deref())?;
                if error.is_some() && next.is_some() {
                    // When it failed, for the shop API (schema version 3).
                    tx.prepare_cached(
                        "UPDATE checks SET last_error_at_ms = ?2 WHERE payment_id = ?1",
                    )?
                    .execute((payment.0, rows::ms(now)))?;
                }
                Ok(Output::RecordCheck(recorded))
            }
            Command::CheckNow(provider, account, key, _) => {
                write::check_now(tx, *provider, account, key, rules, now).map(Output::CheckNow)
            }
            Command::Resolve(key, resolution, reason, _) => {
                write::resolve(tx, key, *resolution, reason, rules, now).map(Output::Resolve)
            }
            Command::MarkPublished(seqs, _) => {
                write::mark_published(tx, seqs, now).map(Output::MarkPublished)
            }
            Command::ApplyBatch(..) => Err(StoreError::corrupt(
                "command",
                "a batch is not a single command",
            )),
        }
    }

    /// Sends the result to whoever asked.
    fn reply(self, result: Result<Output, StoreError>) {
        let mismatch = || StoreError::corrupt("command", "a result of another kind");
        match self {
            Command::Register(_, reply) => {
                let _ = reply.send(result.and_then(|o| {
                    if let Output::Register(v) = o {
                        Ok(v)
                    } else {
                        Err(mismatch())
                    }
                }));
            }
            Command::Apply(_, reply) | Command::ApplyCheck(_, _, reply) => {
                let _ = reply.send(result.and_then(|o| {
                    if let Output::Apply(v) = o {
                        Ok(v)
                    } else {
                        Err(mismatch())
                    }
                }));
            }
            Command::RecordCheck(.., reply) => {
                let _ = reply.send(result.and_then(|o| {
                    if let Output::RecordCheck(v) = o {
                        Ok(v)
                    } else {
                        Err(mismatch())
                    }
                }));
            }
            Command::CheckNow(.., reply) => {
                let _ = reply.send(result.and_then(|o| {
                    if let Output::CheckNow(v) = o {
                        Ok(v)
                    } else {
                        Err(mismatch())
                    }
                }));
            }
            Command::Resolve(.., reply) => {
                let _ = reply.send(result.and_then(|o| {
                    if let Output::Resolve(v) = o {
                        Ok(v)
                    } else {
                        Err(mismatch())
                    }
                }));
            }
            Command::MarkPublished(_, reply) => {
                let _ = reply.send(result.and_then(|o| {
                    if let Output::MarkPublished(v) = o {
                        Ok(v)
                    } else {
                        Err(mismatch())
                    }
                }));
            }
            Command::ApplyBatch(_, reply) => {
                let _ = reply.send(result.and(Err(mismatch())));
            }
        }
    }
}

/// One group of the writer thread ([`paysettle_sqlite::Writer`]: every
/// command waiting, up to [`MAX_GROUP`]), committed in one transaction, so
/// concurrent callers (the poller's checks, the relay, the shop API) share
/// one fsync. If anything in a group fails, the group is rolled back and each
/// command redone on its own, so one failure never takes another caller's
/// write with it.
fn writer(
    conn: &mut Connection,
    group: Vec<Command>,
    rules: &Rules,
    commits: &watch::Sender<u64>,
    clock: &SharedClock,
) {
    let now = clock.now();
    let mut singles = Vec::new();
    for command in group {
        if let Command::ApplyBatch(requests, reply) = command {
            commit_group(conn, std::mem::take(&mut singles), rules, now);
            let _ = reply.send(apply_batch(conn, &requests, rules, now));
        } else {
            singles.push(command);
        }
    }
    commit_group(conn, singles, rules, now);
    commits.send_modify(|n| *n = n.wrapping_add(1));
}

fn commit_group(conn: &mut Connection, group: Vec<Command>, rules: &Rules, now: Timestamp) {
    if group.is_empty() {
        return;
    }
    if group.len() > 1 {
        let together = in_transaction(conn, |tx| {
            group
                .iter()
                .map(|c| c.execute(tx, rules, now))
                .collect::<Result<Vec<_>, _>>()
        });
        if let Ok(outputs) = together {
            for (command, output) in group.into_iter().zip(outputs) {
                command.reply(Ok(output));
            }
            return;
        }
    }
    for command in group {
        let result = in_transaction(conn, |tx| command.execute(tx, rules, now));
        command.reply(result);
    }
}

/// A batch: tried whole first; if anything in it fails, redone with a
/// savepoint each, so only what fails is lost.
fn apply_batch(
    conn: &mut Connection,
    requests: &[write::Prepared],
    rules: &Rules,
    now: Timestamp,
) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
    let whole = in_transaction(conn, |tx| {
        requests
            .iter()
            .map(|request| write::apply(tx, request, rules, now))
            .collect::<Result<Vec<_>, _>>()
    });
    match whole {
        Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
        Err(_) => in_transaction(conn, |tx| {
            let mut outcomes = Vec::with_capacity(requests.len());
            for request in requests {
                tx.execute_batch("SAVEPOINT observation")?;
                let outcome = write::apply(tx, request, rules, now);
                if outcome.is_ok() {
                    tx.execute_batch("RELEASE observation")?;
                } else {
                    tx.execute_batch("ROLLBACK TO observation; RELEASE observation")?;
                }
                outcomes.push(outcome);
            }
            Ok(outcomes)
        }),
    }
}

fn in_transaction<T>(
    conn: &mut Connection,
    work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let value = work(&tx)?;
    tx.commit()?;
    Ok(value)
}
