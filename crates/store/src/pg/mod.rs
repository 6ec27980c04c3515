//! The ledger on PostgreSQL, for many workers sharing one ledger.
//!
//! The same tables, transactions and decisions as the SQLite ledger, with
//! what sharing needs: every write is one transaction on a pooled
//! connection, the decision about a payment is taken under its row lock
//! (`SELECT ... FOR UPDATE`), dedupe is the history's unique constraint, and
//! a transaction that meets another one (a deadlock, a serialization
//! failure, a row another worker inserted first) is rolled back whole and
//! run again, so nothing is lost or written twice. Due checks and outbox
//! events are claimed with `FOR UPDATE SKIP LOCKED` and a lease; each
//! provider account's rate limit is a token bucket row taken under its lock.
//!
//! - `schema`: versioned migrations (a `schema_version` table).
//! - `write`: the transactions, persisting what core's `decide` decided.
//! - `rows`: reading rows back into the model's types.
//! - `integrity`: the invariants `paysettle ledger check` verifies.

mod copy;
mod integrity;
mod rows;
mod schema;
mod write;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{GenericClient, ManagerConfig, Object, Pool, RecyclingMethod};
use jiff::Timestamp;
use paysettle_core::clock::SharedClock;
use paysettle_core::decide::Resolution;
use paysettle_core::{Account, PaymentStatus, Provider, Reference};
use tokio::sync::watch;
use tokio_postgres::types::ToSql;

pub use copy::CopyCounts;
pub use schema::PG_SCHEMA_VERSION;

use crate::error::StoreError;
use crate::lease::{check_limit, take_token, until_ms};
use crate::ledger::{LedgerHealth, LedgerOptions};
use crate::model::{
    ApplyOutcome, ApplyRequest, CheckNow, CheckState, DueCheck, EventFilter, HistoryEntry,
    OutboxEvent, PaymentFilter, PaymentId, PaymentKey, PaymentRecord, RateDecision, RateLimit,
    RegisterOutcome, Registration, Resolved,
};
use crate::rows::{OUTBOX_COLUMNS, PAYMENT_COLUMNS, ms};
use crate::write::{self as sqlite_write, Rules};

/// How to reach a PostgreSQL ledger. The URL may carry a password: it is
/// never shown (`Debug` and every message show the host, port, database and
/// user only).
#[derive(Clone)]
pub struct PgOptions {
    /// `postgres://user:password@host:port/database?sslmode=require`, or the
    /// key-value form. `sslmode=require` (or `verify-full`) insists on TLS,
    /// checked against the system's trust roots.
    pub url: String,
    /// Connections kept open (a worker needs few: each write is one short
    /// transaction).
    pub pool_size: usize,
    /// How long to wait for a connection (connecting or from the pool).
    pub connect_timeout: Duration,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            url: String::new(),
            pool_size: 4,
            connect_timeout: Duration::from_secs(10),
        }
    }
}

impl PgOptions {
    /// Whether `url` is a PostgreSQL connection string, without connecting
    /// (for `paysettle config check`). The error never repeats the URL.
    pub fn check_url(url: &str) -> Result<(), StoreError> {
        parse(url).map(|_| ())
    }

    /// The database the URL names, without its password.
    pub fn shown(&self) -> String {
        parse(&self.url).map_or_else(|_| "(an invalid PostgreSQL URL)".to_owned(), |c| shown(&c))
    }
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field(
                "url",
                &parse(&self.url).map_or_else(|_| "(invalid)".to_owned(), |c| shown(&c)),
            )
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

fn parse(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    url.trim().parse::<tokio_postgres::Config>().map_err(|_| {
        StoreError::Config(
            "ledger.url is not a PostgreSQL connection string (postgres://user@host:port/database)"
                .to_owned(),
        )
    })
}

/// The connection's description without its password.
fn shown(config: &tokio_postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".to_owned());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or("")
    )
}

/// TLS through rustls with ring (the workspace's one crypto provider),
/// trusting the system's roots. Used when the URL's `sslmode` asks for it
/// (`prefer`, the default, tries TLS and falls back to plain text).
fn tls() -> Result<tokio_postgres_rustls::MakeRustlsConnect, StoreError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        // A certificate the store cannot use is skipped, as browsers do.
        let _ = roots.add(cert);
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| StoreError::Config(format!("TLS: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// How many times a transaction that met another one is run again.
const MAX_ATTEMPTS: u32 = 12;

/// Any fixed number: the advisory lock that makes outbox claims one at a
/// time (so a claimer sees the claims committed before it, and a payment's
/// later event is never handed out while another worker holds an earlier
/// one).
const OUTBOX_CLAIM_LOCK: i64 = 0x7061_7973_6f75_7462;

struct Inner {
    pool: Pool,
    /// The connection without its password, for messages.
    shown: String,
    id: String,
    rules: Rules,
    commits: watch::Sender<u64>,
    /// Where "now" is read: the time of each transaction's decisions.
    clock: SharedClock,
}

/// A ledger in a PostgreSQL database. Cheap to clone; clones share a pool.
#[derive(Clone)]
pub struct PgLedger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for PgLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLedger")
            .field("database", &self.inner.shown)
            .finish()
    }
}

/// Runs `$body` in a transaction (`$tx`, with `$now` the time it started),
/// again from the start when it met another transaction.
macro_rules! in_transaction {
    ($ledger:expr, |$tx:ident, $now:ident| $body:expr) => {{
        let mut attempt = 0u32;
        loop {
            let result = async {
                let mut client = $ledger.client().await?;
                #[allow(unused_mut)]
                let mut $tx = client.transaction().await?;
                let $now = $ledger.inner.clock.now();
                let value = $body;
                $tx.commit().await?;
                Ok::<_, StoreError>(value)
            }
            .await;
            match result {
                Err(error) if error.is_conflict() && attempt + 1 < MAX_ATTEMPTS => {
                    attempt += 1;
                    tracing::debug!(%error, attempt, "ledger transaction met another; running it again");
                    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 8;
                    tokio::time::sleep(Duration::from_millis(
                        u64::from(attempt.min(6)) * 5 + jitter,
                    ))
                    .await;
                }
                Err(error) => break Err(error),
                Ok(value) => {
                    $ledger.inner.commits.send_modify(|n| *n = n.wrapping_add(1));
                    break Ok(value);
                }
            }
        }
    }};
}

impl PgLedger {
    /// Connects to the database at `pg.url`, applies migrations (refusing a
    /// database written by a newer paysettle), and keeps a small pool.
    pub async fn open(pg: &PgOptions, options: LedgerOptions) -> Result<PgLedger, StoreError> {
        let mut config = parse(&pg.url)?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(pg.connect_timeout);
        }
        config.application_name("paysettle");
        // Every statement is planned for the table as it is now, not by a
        // generic plan a long-lived pooled connection made while the ledger
        // was nearly empty. These queries are small: planning each costs
        // little.
        let session = match config.get_options() {
            Some(given) if !given.trim().is_empty() => {
                format!("{given} -c plan_cache_mode=force_custom_plan")
            }
            _ => "-c plan_cache_mode=force_custom_plan".to_owned(),
        };
        config.options(&session);
        let shown = shown(&config);
        let listener_config = config.clone();
        let manager = deadpool_postgres::Manager::from_config(
            config,
            tls()?,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pg.pool_size.max(1))
            .wait_timeout(Some(pg.connect_timeout))
            .create_timeout(Some(pg.connect_timeout))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Config(format!("the connection pool: {e}")))?;
        let mut client = pool.get().await.map_err(|e| {
            let text = match StoreError::from(e) {
                StoreError::Postgres(e) => crate::error::pg_text(&e),
                StoreError::Pool(e) => e,
                other => return other,
            };
            let hint = if text.contains("TLS") {
                " (the server's certificate is checked against the system's trust roots; \
                 sslmode=disable in ledger.url turns TLS off, for a server on the same host only)"
            } else {
                ""
            };
            StoreError::Pool(format!("{text}{hint}"))
        })?;
        schema::migrate(&mut client, &shown).await?;
        let id = ledger_id(&client).await?;
        drop(client);
        let inner = Arc::new(Inner {
            pool,
            shown,
            id,
            rules: Rules {
                checks: options.policies.clone(),
                ledger: options.rules.clone(),
            },
            commits: watch::Sender::new(0),
            clock: options.clock.clone(),
        });
        tokio::spawn(listen(listener_config, tls()?, Arc::downgrade(&inner)));
        Ok(PgLedger { inner })
    }

    /// The database, without the password (for logs and messages).
    pub fn shown(&self) -> &str {
        &self.inner.shown
    }

    /// The ledger's id: stable for the database, different for another one.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Changes after each commit of this process's writes, and after each
    /// commit of another process's that wrote events (every worker sharing
    /// the ledger: PostgreSQL's `NOTIFY`), so the event feed's long poll
    /// wakes on any replica.
    pub fn commits(&self) -> watch::Receiver<u64> {
        self.inner.commits.subscribe()
    }

    async fn client(&self) -> Result<Object, StoreError> {
        Ok(self.inner.pool.get().await?)
    }

    /// Registers a payment the shop expects (see the SQLite ledger's).
    pub async fn register(
        &self,
        registration: Registration,
    ) -> Result<RegisterOutcome, StoreError> {
        let rules = &self.inner.rules;
        let r = &registration;
        in_transaction!(self, |tx, _now| {
            write::lock_payments(&tx, &[(r.provider, &r.account, &r.reference)]).await?;
            write::register(&tx, r, rules).await?
        })
    }

    /// Applies one observation in its own transaction.
    pub async fn apply(&self, request: ApplyRequest) -> Result<ApplyOutcome, StoreError> {
        let prepared = sqlite_write::prepare(request);
        let rules = &self.inner.rules;
        let keys = [key_of(&prepared)];
        in_transaction!(self, |tx, now| {
            write::lock_payments(&tx, &keys).await?;
            write::apply(&tx, &prepared, rules, now).await?
        })
    }

    /// Applies many observations in one transaction, each with its own
    /// outcome: tried whole first; if an observation fails on its own, the
    /// batch is redone with a savepoint each so only it is lost. A batch that
    /// meets another worker's transaction (a deadlock between two batches
    /// locking the same payments in another order) is run again whole.
    pub async fn apply_batch(
        &self,
        requests: Vec<ApplyRequest>,
    ) -> Result<Vec<Result<ApplyOutcome, StoreError>>, StoreError> {
        let prepared: Vec<_> = requests.into_iter().map(sqlite_write::prepare).collect();
        let rules = &self.inner.rules;
        let keys: Vec<_> = prepared.iter().map(key_of).collect();
        let whole = in_transaction!(self, |tx, now| {
            write::lock_payments(&tx, &keys).await?;
            let mut outcomes = Vec::with_capacity(prepared.len());
            for request in &prepared {
                outcomes.push(write::apply(&tx, request, rules, now).await?);
            }
            outcomes
        });
        match whole {
            Ok(outcomes) => Ok(outcomes.into_iter().map(Ok).collect()),
            Err(error) if error.is_conflict() || error.is_retryable() => Err(error),
            Err(_) => in_transaction!(self, |tx, now| {
                write::lock_payments(&tx, &keys).await?;
                let mut outcomes = Vec::with_capacity(prepared.len());
                for request in &prepared {
                    let savepoint = tx.savepoint("observation").await?;
                    match write::apply(&savepoint, request, rules, now).await {
                        Ok(outcome) => {
                            savepoint.commit().await?;
                            outcomes.push(Ok(outcome));
                        }
                        Err(error) if error.is_conflict() => return Err(error),
                        Err(error) => {
                            savepoint.rollback().await?;
                            outcomes.push(Err(error));
                        }
                    }
                }
                outcomes
            }),
        }
    }

    /// Applies a status check's answer, counts the attempt and schedules
    /// the next check, in one transaction (which ends the check's claim).
    pub async fn apply_check(
        &self,
        request: ApplyRequest,
        next_check_at: Timestamp,
    ) -> Result<ApplyOutcome, StoreError> {
        let prepared = sqlite_write::prepare(request);
        let rules = &self.inner.rules;
        let keys = [key_of(&prepared)];
        in_transaction!(self, |tx, now| {
            write::lock_payments(&tx, &keys).await?;
            let outcome = write::apply(&tx, &prepared, rules, now).await?;
            write::record_check(&tx, outcome.payment_id(), Some(next_check_at), None, now).await?;
            outcome
        })
    }

    /// Records a status check (and ends its claim).
    pub async fn record_check(
        &self,
        payment: PaymentId,
        next_check_at: Option<Timestamp>,
        error: Option<String>,
    ) -> Result<bool, StoreError> {
        in_transaction!(self, |tx, now| write::record_check(
            &tx,
            payment,
            next_check_at,
            error.as_deref(),
            now
        )
        .await?)
    }

    /// Makes a payment's check due now, and says whether it did.
    pub async fn check_now(
        &self,
        provider: Provider,
        account: Account,
        key: PaymentKey,
    ) -> Result<CheckNow, StoreError> {
        let rules = &self.inner.rules;
        in_transaction!(self, |tx, now| {
            if let PaymentKey::Reference(reference) = &key {
                write::lock_payments(&tx, &[(provider, &account, reference)]).await?;
            }
            write::check_now(&tx, provider, &account, &key, rules, now).await?
        })
    }

    /// An operator's resolution of a flagged payment.
    pub async fn resolve(
        &self,
        provider: Provider,
        account: Account,
        reference: Reference,
        resolution: Resolution,
        reason: String,
    ) -> Result<Resolved, StoreError> {
        let rules = &self.inner.rules;
        let key = (provider, account, reference);
        in_transaction!(self, |tx, now| {
            write::lock_payments(&tx, &[(key.0, &key.1, &key.2)]).await?;
            write::resolve(&tx, &key, resolution, &reason, rules, now).await?
        })
    }

    /// Marks outbox events published (after the broker confirmed them).
    pub async fn mark_published(&self, seqs: Vec<i64>) -> Result<usize, StoreError> {
        in_transaction!(self, |tx, now| write::mark_published(&tx, &seqs, now)
            .await?)
    }

    /// One payment by the shop's reference.
    pub async fn payment(
        &self,
        provider: Provider,
        account: Account,
        reference: Reference,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        let client = self.client().await?;
        rows::payment_by_reference(&client, provider, &account, &reference, false).await
    }

    /// One payment by the ledger's id.
    pub async fn payment_by_id(&self, id: PaymentId) -> Result<Option<PaymentRecord>, StoreError> {
        let client = self.client().await?;
        rows::payment_by_id(&client, id).await
    }

    /// One payment by the shop's reference or the provider's id.
    pub async fn find(
        &self,
        provider: Provider,
        account: Account,
        key: PaymentKey,
    ) -> Result<Option<PaymentRecord>, StoreError> {
        let client = self.client().await?;
        match &key {
            PaymentKey::Reference(reference) => {
                rows::payment_by_reference(&client, provider, &account, reference, false).await
            }
            PaymentKey::ProviderTxnId(txn) => {
                rows::payment_by_txn(&client, provider, &account, txn, false).await
            }
        }
    }

    /// A payment's history, oldest first.
    pub async fn history(&self, payment: PaymentId) -> Result<Vec<HistoryEntry>, StoreError> {
        let client = self.client().await?;
        rows::history(&client, payment).await
    }

    /// Payments matching a filter, by id.
    pub async fn list(&self, filter: PaymentFilter) -> Result<Vec<PaymentRecord>, StoreError> {
        let (condition, params) = filter_sql(&filter);
        let limit = if filter.limit == 0 {
            1000
        } else {
            filter.limit.min(100_000)
        };
        let sql = format!(
            "SELECT {PAYMENT_COLUMNS} FROM payments WHERE {condition} ORDER BY id LIMIT {limit}"
        );
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let client = self.client().await?;
        rows::payments(&client, &sql, &refs).await
    }

    /// How many payments match a filter (its paging ignored).
    pub async fn count(&self, filter: PaymentFilter) -> Result<u64, StoreError> {
        let filter = PaymentFilter {
            after_id: None,
            ..filter
        };
        let (condition, params) = filter_sql(&filter);
        let sql = format!("SELECT count(*) FROM payments WHERE {condition}");
        let refs: Vec<&(dyn ToSql + Sync)> = params
            .iter()
            .map(|p| p.as_ref() as &(dyn ToSql + Sync))
            .collect();
        let client = self.client().await?;
        let n: i64 = client.query_one(sql.as_str(), &refs).await?.try_get(0)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// For `/metrics` (see the SQLite ledger's).
    pub async fn health(&self, now: Timestamp) -> Result<LedgerHealth, StoreError> {
        let client = self.client().await?;
        let failing_checks = client
            .query(
                "SELECT p.provider, p.account, count(*) FROM checks c JOIN payments p ON p.id = c.payment_id \
                 WHERE c.last_error IS NOT NULL GROUP BY p.provider, p.account ORDER BY p.provider, p.account",
                &[],
            )
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<Vec<(String, String, i64)>, StoreError>>()?;
        let row = client
            .query_one(
                "SELECT count(*), min(created_at_ms) FROM outbox WHERE published_at_ms IS NULL",
                &[],
            )
            .await?;
        let unpublished: i64 = row.try_get(0)?;
        let oldest: Option<i64> = row.try_get(1)?;
        let flagged: i64 = client
            .query_one(
                "SELECT count(*) FROM payments WHERE mismatch IS NOT NULL",
                &[],
            )
            .await?
            .try_get(0)?;
        Ok(LedgerHealth {
            failing_checks,
            unpublished: u64::try_from(unpublished).unwrap_or(0),
            oldest_unpublished_seconds: oldest
                .map_or(0.0, |at| ((ms(now) - at).max(0) as f64) / 1000.0),
            flagged: u64::try_from(flagged).unwrap_or(0),
        })
    }

    /// A payment's place in the check schedule (`None` once it is final).
    pub async fn check_state(&self, payment: PaymentId) -> Result<Option<CheckState>, StoreError> {
        let client = self.client().await?;
        rows::check_state(&client, payment).await
    }

    /// Payments whose check is due at `now`, most overdue first (claimed or
    /// not: see [`PgLedger::claim_due_checks`] for workers sharing it).
    pub async fn due_checks(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<DueCheck>, StoreError> {
        let sql = format!(
            "SELECT {PAYMENT_COLUMNS}, {} FROM checks c JOIN payments ON payments.id = c.payment_id \
             WHERE c.next_check_at_ms <= $1 ORDER BY c.next_check_at_ms LIMIT $2",
            rows::CHECK_COLUMNS
        );
        let client = self.client().await?;
        rows::due_checks(&client, &sql, &[&ms(now), &(limit as i64)]).await
    }

    /// Events not yet confirmed by the broker, in outbox order.
    pub async fn unpublished(&self, limit: usize) -> Result<Vec<OutboxEvent>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE published_at_ms IS NULL ORDER BY seq LIMIT $1"
        );
        let client = self.client().await?;
        rows::outbox(&client, &sql, &[&(limit as i64)]).await
    }

    /// Every event of one payment, in order.
    pub async fn events_of(&self, payment: PaymentId) -> Result<Vec<OutboxEvent>, StoreError> {
        let sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE payment_id = $1 ORDER BY seq");
        let client = self.client().await?;
        rows::outbox(&client, &sql, &[&payment.0]).await
    }

    /// The events of many payments, in outbox order.
    pub async fn events_of_payments(
        &self,
        payments: Vec<PaymentId>,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        if payments.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<i64> = payments.iter().map(|p| p.0).collect();
        let sql =
            format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE payment_id = ANY($1) ORDER BY seq");
        let client = self.client().await?;
        rows::outbox(&client, &sql, &[&ids]).await
    }

    /// Recorded events, published or not, in outbox order.
    pub async fn events(&self, filter: EventFilter) -> Result<Vec<OutboxEvent>, StoreError> {
        let mut sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE 1 = 1");
        let mut params: Vec<i64> = Vec::new();
        let mut clause = |sql: &mut String, column: &str, op: &str, value: i64| {
            params.push(value);
            sql.push_str(&format!(" AND {column} {op} ${}", params.len()));
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
        let refs: Vec<&(dyn ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn ToSql + Sync)).collect();
        let client = self.client().await?;
        rows::outbox(&client, &sql, &refs).await
    }

    /// How many payments are in each status.
    pub async fn counts(&self) -> Result<Vec<(PaymentStatus, i64)>, StoreError> {
        let client = self.client().await?;
        client
            .query(
                "SELECT status, count(*) FROM payments GROUP BY status ORDER BY status",
                &[],
            )
            .await?
            .iter()
            .map(|r| {
                let status: String = r.try_get(0)?;
                Ok((
                    status
                        .parse::<PaymentStatus>()
                        .map_err(|e| StoreError::corrupt("status", e))?,
                    r.try_get(1)?,
                ))
            })
            .collect()
    }

    /// Checks the ledger's own invariants; each problem is one line.
    pub async fn integrity_problems(&self) -> Result<Vec<String>, StoreError> {
        let client = self.client().await?;
        integrity::problems(&client).await
    }

    /// Claims up to `limit` due checks for `owner` until `now + lease`
    /// (`FOR UPDATE SKIP LOCKED`): checks held under a live lease are left
    /// alone, so two owners never hold one payment's check at once; an owner that dies gives its claims back when the lease
    /// ends; recording the check's result ends the claim.
    pub async fn claim_due_checks(
        &self,
        owner: &str,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<DueCheck>, StoreError> {
        let sql = format!(
            "WITH picked AS (SELECT payment_id AS picked_id FROM checks WHERE next_check_at_ms <= $1 \
             AND (claim_until_ms IS NULL OR claim_until_ms <= $1) \
             ORDER BY next_check_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE checks c SET claimed_by = $3, claim_until_ms = $4 FROM picked, payments \
             WHERE c.payment_id = picked.picked_id AND payments.id = c.payment_id \
             RETURNING {PAYMENT_COLUMNS}, {}",
            rows::CHECK_COLUMNS
        );
        let (at, until) = (ms(now), until_ms(now, lease));
        let limit = limit as i64;
        let mut claimed = in_transaction!(self, |tx, _now| rows::due_checks(
            &tx,
            &sql,
            &[&at, &limit, &owner, &until]
        )
        .await?)?;
        claimed.sort_by_key(|c| (c.next_check_at, c.payment.id));
        Ok(claimed)
    }

    /// Claims up to `limit` unpublished events for `owner` until
    /// `now + lease`, in outbox order, never an event held under a live lease
    /// nor one of a payment whose earlier unpublished event is held: a
    /// payment's events leave in `ledger_version` order. Marking them published ends the
    /// claim.
    pub async fn claim_unpublished(
        &self,
        owner: &str,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let sql = format!(
            "WITH picked AS (SELECT o.seq AS picked_seq FROM outbox o WHERE o.published_at_ms IS NULL \
             AND (o.claim_until_ms IS NULL OR o.claim_until_ms <= $1) \
             AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.payment_id = o.payment_id AND e.seq < o.seq \
             AND e.published_at_ms IS NULL AND e.claim_until_ms > $1) \
             ORDER BY o.seq LIMIT $2 FOR UPDATE SKIP LOCKED) \
             UPDATE outbox SET claimed_by = $3, claim_until_ms = $4 FROM picked \
             WHERE outbox.seq = picked.picked_seq RETURNING {OUTBOX_COLUMNS}"
        );
        let (at, until) = (ms(now), until_ms(now, lease));
        let limit = limit as i64;
        let mut events = in_transaction!(self, |tx, _now| {
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&OUTBOX_CLAIM_LOCK])
                .await?;
            rows::outbox(&tx, &sql, &[&at, &limit, &owner, &until]).await?
        })?;
        events.sort_by_key(|e| e.seq);
        Ok(events)
    }

    /// Takes one request from the provider account's bucket (one row for
    /// the whole deployment, taken under its lock), or says when to ask
    /// again.
    pub async fn take_rate(
        &self,
        provider: Provider,
        account: &Account,
        limit: RateLimit,
        now: Timestamp,
    ) -> Result<RateDecision, StoreError> {
        check_limit(limit)?;
        let now = ms(now);
        let burst = f64::from(limit.burst.max(1));
        in_transaction!(self, |tx, _now| {
            tx.execute(
                "INSERT INTO rate_buckets (provider, account, tokens, updated_at_ms) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (provider, account) DO NOTHING",
                &[&provider.as_str(), &account.as_str(), &burst, &now],
            )
            .await?;
            let row = tx
                .query_one(
                    "SELECT tokens, updated_at_ms FROM rate_buckets WHERE provider = $1 AND account = $2 FOR UPDATE",
                    &[&provider.as_str(), &account.as_str()],
                )
                .await?;
            let (tokens, at, decision) = take_token(row.try_get(0)?, row.try_get(1)?, now, limit);
            tx.execute(
                "UPDATE rate_buckets SET tokens = $3, updated_at_ms = $4 WHERE provider = $1 AND account = $2",
                &[&provider.as_str(), &account.as_str(), &tokens, &at],
            )
            .await?;
            decision
        })
    }
}

impl PgLedger {
    /// See [`crate::Ledger::lease_asking`]. Expired leases (of owners that
    /// died asking) are cleared on the way.
    pub async fn lease_asking(
        &self,
        key: &str,
        owner: &str,
        now: Timestamp,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        let (now, until) = (ms(now), until_ms(now, lease));
        in_transaction!(self, |tx, _now| {
            tx.execute("DELETE FROM asking WHERE until_ms <= $1", &[&now])
                .await?;
            let taken = tx
                .execute(
                    "INSERT INTO asking (key, owner, until_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (key) DO UPDATE SET until_ms = EXCLUDED.until_ms \
                     WHERE asking.owner = EXCLUDED.owner",
                    &[&key, &owner, &until],
                )
                .await?;
            taken == 1
        })
    }

    /// See [`crate::Ledger::end_asking`].
    pub async fn end_asking(&self, key: &str, owner: &str) -> Result<(), StoreError> {
        in_transaction!(self, |tx, _now| {
            tx.execute(
                "DELETE FROM asking WHERE key = $1 AND owner = $2",
                &[&key, &owner],
            )
            .await?;
        })
    }
}

/// Keeps a connection of its own listening on [`write::NOTIFY_CHANNEL`]
/// and bumps the ledger's commit counter at each notification, for as long
/// as the ledger is open; a lost connection is made again.
async fn listen(
    config: tokio_postgres::Config,
    tls: tokio_postgres_rustls::MakeRustlsConnect,
    ledger: std::sync::Weak<Inner>,
) {
    use tokio_postgres::AsyncMessage;
    let mut failures = 0u32;
    while ledger.strong_count() > 0 {
        let (client, mut connection) = match config.connect(tls.clone()).await {
            Ok(pair) => pair,
            Err(error) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %crate::error::pg_text(&error),
                        "the ledger's listener cannot connect; the event feed wakes on this process's commits only until it does");
                }
                tokio::time::sleep(Duration::from_secs(u64::from(failures.min(30)))).await;
                continue;
            }
        };
        failures = 0;
        let statement = format!("LISTEN {}", write::NOTIFY_CHANNEL);
        let listening = client.batch_execute(&statement);
        tokio::pin!(listening);
        let mut listened = false;
        loop {
            let message = tokio::select! {
                done = &mut listening, if !listened => {
                    listened = true;
                    if done.is_err() {
                        break;
                    }
                    continue;
                }
                message = tokio::time::timeout(
                    Duration::from_secs(5),
                    std::future::poll_fn(|cx| connection.poll_message(cx)),
                ) => message,
            };
            let Some(inner) = ledger.upgrade() else {
                return;
            };
            match message {
                // Quiet: only to look whether the ledger is still open.
                Err(_) => {}
                Ok(Some(Ok(AsyncMessage::Notification(_)))) => {
                    inner.commits.send_modify(|n| *n = n.wrapping_add(1));
                }
                Ok(Some(Ok(_))) => {}
                Ok(Some(Err(_)) | None) => break,
            }
        }
    }
}

/// The payment an observation is about.
fn key_of(prepared: &sqlite_write::Prepared) -> (Provider, &Account, &Reference) {
    let o = &prepared.request.observation;
    (o.provider, &o.account, &o.reference)
}

/// The database's ledger id, made on first open.
async fn ledger_id(client: &Object) -> Result<String, StoreError> {
    let fresh = uuid::Uuid::new_v4().simple().to_string()[..16].to_owned();
    client
        .execute(
            "INSERT INTO meta (key, value) VALUES ('ledger_id', $1) ON CONFLICT (key) DO NOTHING",
            &[&fresh],
        )
        .await?;
    Ok(client
        .query_one("SELECT value FROM meta WHERE key = 'ledger_id'", &[])
        .await?
        .try_get(0)?)
}

type Param = Box<dyn ToSql + Sync + Send>;

/// The `WHERE` condition of a payment filter, with its parameters (the
/// SQLite ledger's, in PostgreSQL's placeholders).
fn filter_sql(filter: &PaymentFilter) -> (String, Vec<Param>) {
    let mut sql = String::from("1 = 1");
    let mut params: Vec<Param> = Vec::new();
    let push = |params: &mut Vec<Param>, value: Param| {
        params.push(value);
        format!("${}", params.len())
    };
    if let Some(provider) = filter.provider {
        let mark = push(&mut params, Box::new(provider.as_str()));
        sql.push_str(&format!(" AND provider = {mark}"));
    }
    if let Some(account) = &filter.account {
        let mark = push(&mut params, Box::new(account.as_str().to_owned()));
        sql.push_str(&format!(" AND account = {mark}"));
    }
    if let Some(after) = filter.after_id {
        let mark = push(&mut params, Box::new(after.0));
        sql.push_str(&format!(" AND id > {mark}"));
    }
    sql.push_str(" AND ((1 = 1");
    if !filter.statuses.is_empty() {
        let statuses: Vec<String> = filter
            .statuses
            .iter()
            .map(|s| s.as_str().to_owned())
            .collect();
        let mark = push(&mut params, Box::new(statuses));
        sql.push_str(&format!(" AND status = ANY({mark})"));
    }
    if filter.mismatched {
        sql.push_str(" AND mismatch IS NOT NULL");
    }
    for (value, clause) in [
        (filter.since, "updated_at_ms >="),
        (filter.until, "updated_at_ms <"),
        (filter.created_since, "created_at_ms >="),
        (filter.created_until, "created_at_ms <"),
    ] {
        if let Some(at) = value {
            let mark = push(&mut params, Box::new(ms(at)));
            sql.push_str(&format!(" AND {clause} {mark}"));
        }
    }
    sql.push(')');
    if filter.or_unsettled {
        sql.push_str(" OR status IN ('created', 'pending', 'stale')");
    }
    sql.push(')');
    (sql, params)
}
