//! A durable, leased FIFO in one SQLite file: the storage behind the embedded
//! queue backend and the receiver's spool.
//!
//! Why it looks like a broker queue: the embedded backend has to keep the same
//! at-least-once contract as RabbitMQ, so the FIFO offers the same verbs. A
//! consumer *leases* messages (oldest first) for a while; an ack deletes the
//! message, a release (nack with requeue) or an expired lease makes it
//! available again, and a queue declared with a delivery limit moves a message
//! that keeps coming back to its dead-letter queue, as a RabbitMQ quorum queue
//! with `x-delivery-limit` does.
//!
//! Durability: the file is in WAL mode with `synchronous = FULL`, so a commit
//! that returned has reached the disk and a crash loses nothing. Leases are
//! stored in the file too: after a crash, a message that was leased by the dead
//! process is delivered again once its lease expires.
//!
//! A lease is identified by the message's sequence number *and* its delivery
//! count, so an ack that arrives after the lease expired and the message was
//! handed to someone else does not remove the other consumer's delivery.
//!
//! Every operation can run inside one [`FifoTx`], so a caller with many
//! concurrent producers can commit (and pay for the `fsync`) once per batch.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use paysettle_sqlite::rusqlite::{self, Connection, OptionalExtension, params};

/// The header a dead-lettered message carries with the reason it was dead-lettered.
///
/// Same name as the RabbitMQ backend uses, so the dead-letter queue reads the same
/// whichever backend wrote it.
pub const DEAD_LETTER_REASON_HEADER: &str = "x-paysettle-dead-letter-reason";

/// The reason recorded when a message exceeded its queue's delivery limit.
pub const DELIVERY_LIMIT_REASON: &str = "delivery limit exceeded";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS fifo_queue (
    name              TEXT PRIMARY KEY,
    delivery_limit    INTEGER,
    dead_letter_queue TEXT
) STRICT;
CREATE TABLE IF NOT EXISTS fifo_message (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    queue           TEXT NOT NULL,
    message_id      TEXT NOT NULL,
    content_type    TEXT NOT NULL,
    headers         TEXT NOT NULL,
    body            BLOB NOT NULL,
    enqueued_at_ms  INTEGER NOT NULL,
    delivery_count  INTEGER NOT NULL DEFAULT 0,
    leased_until_ms INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS fifo_message_by_queue ON fifo_message (queue, seq);
";

/// Everything that can go wrong with the FIFO file.
#[derive(Debug, thiserror::Error)]
pub enum FifoError {
    /// SQLite refused or failed an operation (I/O error, full disk, locked file…).
    // The message already says what failed; it is not also a `source`, so a
    // chained report does not print it twice.
    #[error("{0}")]
    Sqlite(rusqlite::Error),
    /// A stored header map is not the JSON object this module writes: the file was
    /// edited or corrupted by something else.
    #[error("fifo message {seq} has unreadable headers: {source}")]
    CorruptHeaders {
        /// The message's sequence number.
        seq: i64,
        /// What the JSON parser said.
        source: serde_json::Error,
    },
    /// The queue was declared before with a different policy. Redeclaring must not
    /// silently change how messages already in it are treated.
    #[error(
        "fifo queue '{queue}' already exists with {argument} = {existing}, \
         which differs from the requested {requested}"
    )]
    QueueConflict {
        /// The queue's name.
        queue: String,
        /// The policy argument that differs.
        argument: &'static str,
        /// The stored value.
        existing: String,
        /// The value in this declaration.
        requested: String,
    },
    /// A delivery limit without a dead-letter queue would have to drop messages.
    #[error("fifo queue '{0}' has a delivery limit but no dead-letter queue")]
    LimitWithoutDeadLetterQueue(String),
    /// The operation needs a queue that was never declared.
    #[error("fifo queue '{0}' is not declared")]
    UnknownQueue(String),
    /// Dead-lettering was asked of a queue that has no dead-letter queue.
    #[error("fifo queue '{0}' has no dead-letter queue")]
    NoDeadLetterQueue(String),
}

impl From<rusqlite::Error> for FifoError {
    fn from(err: rusqlite::Error) -> Self {
        FifoError::Sqlite(err)
    }
}

impl FifoError {
    /// Whether trying the same operation again later may succeed: a busy or
    /// locked database, a full disk or an I/O error may clear; a conflict or a
    /// missing queue will not.
    pub fn is_retryable(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            FifoError::Sqlite(e) => matches!(
                e.sqlite_error_code(),
                Some(C::DatabaseBusy | C::DatabaseLocked | C::DiskFull | C::SystemIoFailure)
            ),
            _ => false,
        }
    }
}

/// How a queue treats messages that keep coming back, mirroring RabbitMQ's
/// `x-delivery-limit` and `x-dead-letter-exchange` on the embedded side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueuePolicy {
    /// How many times a message may be returned (released, or its lease expired)
    /// before it is moved to the dead-letter queue; `None` is unlimited. As in
    /// RabbitMQ, a limit of `n` allows `n + 1` deliveries.
    pub delivery_limit: Option<u32>,
    /// Where dead-lettered messages go. Required when `delivery_limit` is set.
    pub dead_letter_queue: Option<String>,
}

/// A message as stored: the same fields a RabbitMQ message carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FifoMessage {
    /// The producer's id for the message; consumers dedupe on it.
    pub message_id: String,
    /// The MIME type of `body`.
    pub content_type: String,
    /// Application headers.
    pub headers: BTreeMap<String, String>,
    /// The payload.
    pub body: Vec<u8>,
}

/// Identifies one delivery of one message, so a late ack cannot remove a
/// message that has since been delivered to someone else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    seq: i64,
    delivery: u32,
}

impl Lease {
    /// The message's position in arrival order (unique in the file, never reused).
    pub fn seq(&self) -> i64 {
        self.seq
    }

    /// Which delivery of the message this lease is (1 for the first).
    pub fn delivery(&self) -> u32 {
        self.delivery
    }
}

/// A message handed to a consumer until its lease expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeasedMessage {
    /// What to pass to ack, release or dead-letter.
    pub lease: Lease,
    /// The message.
    pub message: FifoMessage,
    /// When the message was first stored.
    pub enqueued_at: SystemTime,
}

impl LeasedMessage {
    /// How many times the message has been delivered, this delivery included.
    pub fn delivery_count(&self) -> u32 {
        self.lease.delivery
    }
}

/// One SQLite file holding any number of named FIFO queues.
#[derive(Debug)]
pub struct Fifo {
    conn: Connection,
}

impl Fifo {
    /// Opens (creating if needed) the FIFO file at `path`, in WAL mode with full
    /// synchronous commits and `secure_delete`: a message removed (acknowledged,
    /// or forwarded from the spool) is overwritten with zeros, so a card token
    /// does not stay readable in the file's free pages. Its old copies in the
    /// write-ahead log go at the next [`Fifo::truncate_log`].
    pub fn open(path: &Path) -> Result<Self, FifoError> {
        let options = paysettle_sqlite::Options {
            synchronous: paysettle_sqlite::Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            foreign_keys: false,
            secure_delete: true,
        };
        let conn = paysettle_sqlite::open(path, &options).map_err(|e| match e {
            paysettle_sqlite::OpenError::Directory { dir, error } => FifoError::Sqlite(
                rusqlite::Error::InvalidPath(format!("{}: {error}", dir.display()).into()),
            ),
            paysettle_sqlite::OpenError::Sqlite(e) => FifoError::Sqlite(e),
        })?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    /// Copies the write-ahead log into the file and empties it, so what
    /// `secure_delete` overwrote in the file has no older copy left in the
    /// log. Returns whether the log was emptied (not while another
    /// connection reads).
    pub fn truncate_log(&mut self) -> Result<bool, FifoError> {
        let busy: i64 = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        Ok(busy == 0)
    }

    /// Starts a transaction; nothing in it is durable until [`FifoTx::commit`].
    pub fn transaction(&mut self) -> Result<FifoTx<'_>, FifoError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        Ok(FifoTx { tx })
    }

    /// Declares `queue` with `policy`, or checks that it already has that policy.
    pub fn declare_queue(&mut self, queue: &str, policy: &QueuePolicy) -> Result<(), FifoError> {
        let tx = self.transaction()?;
        tx.declare_queue(queue, policy)?;
        tx.commit()
    }

    /// Appends one message to `queue` and commits; returns its sequence number.
    pub fn push(
        &mut self,
        queue: &str,
        message: &FifoMessage,
        now: SystemTime,
    ) -> Result<i64, FifoError> {
        let tx = self.transaction()?;
        let seq = tx.push(queue, message, now)?;
        tx.commit()?;
        Ok(seq)
    }

    /// Leases up to `max` of the oldest available messages of `queue` and commits.
    pub fn lease(
        &mut self,
        queue: &str,
        max: usize,
        lease_for: Duration,
        now: SystemTime,
    ) -> Result<Vec<LeasedMessage>, FifoError> {
        let tx = self.transaction()?;
        let leased = tx.lease(queue, max, lease_for, now)?;
        tx.commit()?;
        Ok(leased)
    }

    /// Deletes the leased message and commits; `false` if the lease was lost.
    pub fn ack(&mut self, lease: Lease) -> Result<bool, FifoError> {
        let tx = self.transaction()?;
        let done = tx.ack(lease)?;
        tx.commit()?;
        Ok(done)
    }

    /// Makes the leased message available again and commits; `false` if the
    /// lease was lost.
    pub fn release(&mut self, lease: Lease) -> Result<bool, FifoError> {
        let tx = self.transaction()?;
        let done = tx.release(lease)?;
        tx.commit()?;
        Ok(done)
    }

    /// Moves the leased message to its queue's dead-letter queue with `reason`
    /// and commits; `false` if the lease was lost.
    pub fn dead_letter(&mut self, lease: Lease, reason: &str) -> Result<bool, FifoError> {
        let tx = self.transaction()?;
        let done = tx.dead_letter(lease, reason)?;
        tx.commit()?;
        Ok(done)
    }

    /// How many messages `queue` holds, leased or not.
    pub fn depth(&self, queue: &str) -> Result<u64, FifoError> {
        depth(&self.conn, queue)
    }
}

/// A batch of FIFO operations committed (and synced to disk) together.
#[derive(Debug)]
pub struct FifoTx<'a> {
    tx: rusqlite::Transaction<'a>,
}

impl FifoTx<'_> {
    /// Makes everything done in this transaction durable.
    pub fn commit(self) -> Result<(), FifoError> {
        self.tx.commit()?;
        Ok(())
    }

    /// See [`Fifo::declare_queue`].
    pub fn declare_queue(&self, queue: &str, policy: &QueuePolicy) -> Result<(), FifoError> {
        if policy.delivery_limit.is_some() && policy.dead_letter_queue.is_none() {
            return Err(FifoError::LimitWithoutDeadLetterQueue(queue.to_owned()));
        }
        if let Some(existing) = self.policy(queue)? {
            if existing.delivery_limit != policy.delivery_limit {
                return Err(FifoError::QueueConflict {
                    queue: queue.to_owned(),
                    argument: "delivery_limit",
                    existing: show(existing.delivery_limit),
                    requested: show(policy.delivery_limit),
                });
            }
            if existing.dead_letter_queue != policy.dead_letter_queue {
                return Err(FifoError::QueueConflict {
                    queue: queue.to_owned(),
                    argument: "dead_letter_queue",
                    existing: show(existing.dead_letter_queue),
                    requested: show(policy.dead_letter_queue.clone()),
                });
            }
            return Ok(());
        }
        self.tx.execute(
            "INSERT INTO fifo_queue (name, delivery_limit, dead_letter_queue) VALUES (?1, ?2, ?3)",
            params![queue, policy.delivery_limit, policy.dead_letter_queue],
        )?;
        Ok(())
    }

    fn policy(&self, queue: &str) -> Result<Option<QueuePolicy>, FifoError> {
        let row = self
            .tx
            .prepare_cached(
                "SELECT delivery_limit, dead_letter_queue FROM fifo_queue WHERE name = ?1",
            )?
            .query_row(params![queue], |r| {
                Ok(QueuePolicy {
                    delivery_limit: r.get(0)?,
                    dead_letter_queue: r.get(1)?,
                })
            })
            .optional()?;
        Ok(row)
    }

    fn require_policy(&self, queue: &str) -> Result<QueuePolicy, FifoError> {
        self.policy(queue)?
            .ok_or_else(|| FifoError::UnknownQueue(queue.to_owned()))
    }

    /// See [`Fifo::push`]. The queue must have been declared.
    pub fn push(
        &self,
        queue: &str,
        message: &FifoMessage,
        now: SystemTime,
    ) -> Result<i64, FifoError> {
        self.require_policy(queue)?;
        let headers = headers_to_json(&message.headers);
        self.tx
            .prepare_cached(
                "INSERT INTO fifo_message
                     (queue, message_id, content_type, headers, body, enqueued_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                queue,
                message.message_id,
                message.content_type,
                headers,
                message.body,
                unix_ms(now)
            ])?;
        Ok(self.tx.last_insert_rowid())
    }

    /// See [`Fifo::lease`]. A message that has been returned more often than the
    /// queue's delivery limit is dead-lettered here instead of being handed out.
    pub fn lease(
        &self,
        queue: &str,
        max: usize,
        lease_for: Duration,
        now: SystemTime,
    ) -> Result<Vec<LeasedMessage>, FifoError> {
        let policy = self.require_policy(queue)?;
        let now_ms = unix_ms(now);
        let until_ms =
            now_ms.saturating_add(i64::try_from(lease_for.as_millis()).unwrap_or(i64::MAX));
        let mut leased = Vec::new();
        let mut after_seq = 0_i64;
        while leased.len() < max {
            let want = i64::try_from(max - leased.len()).unwrap_or(i64::MAX);
            let rows = {
                let mut stmt = self.tx.prepare_cached(
                    "SELECT seq, message_id, content_type, headers, body, enqueued_at_ms, delivery_count
                       FROM fifo_message
                      WHERE queue = ?1 AND seq > ?2
                        AND (leased_until_ms IS NULL OR leased_until_ms <= ?3)
                      ORDER BY seq
                      LIMIT ?4",
                )?;
                stmt.query_map(params![queue, after_seq, now_ms, want], |r| {
                    Ok(Row {
                        seq: r.get(0)?,
                        message_id: r.get(1)?,
                        content_type: r.get(2)?,
                        headers: r.get(3)?,
                        body: r.get(4)?,
                        enqueued_at_ms: r.get(5)?,
                        delivery_count: r.get(6)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?
            };
            if rows.is_empty() {
                break;
            }
            for row in rows {
                after_seq = row.seq;
                if let (Some(limit), Some(dlq)) =
                    (policy.delivery_limit, policy.dead_letter_queue.as_deref())
                    && row.delivery_count > limit
                {
                    // Its previous lease expired once too often: the consumer keeps
                    // dying on it, which is what a poison message looks like.
                    self.move_to_dead_letter(row.seq, &row.headers, dlq, DELIVERY_LIMIT_REASON)?;
                    tracing::warn!(
                        fifo.queue = queue,
                        fifo.seq = row.seq,
                        message_id = %row.message_id,
                        "dead-lettered after exceeding the delivery limit"
                    );
                    continue;
                }
                let delivery = row.delivery_count.saturating_add(1);
                self.tx
                    .prepare_cached(
                        "UPDATE fifo_message SET delivery_count = ?2, leased_until_ms = ?3
                          WHERE seq = ?1",
                    )?
                    .execute(params![row.seq, delivery, until_ms])?;
                let headers = headers_from_json(row.seq, &row.headers)?;
                leased.push(LeasedMessage {
                    lease: Lease {
                        seq: row.seq,
                        delivery,
                    },
                    message: FifoMessage {
                        message_id: row.message_id,
                        content_type: row.content_type,
                        headers,
                        body: row.body,
                    },
                    enqueued_at: from_unix_ms(row.enqueued_at_ms),
                });
            }
        }
        Ok(leased)
    }

    /// See [`Fifo::ack`].
    pub fn ack(&self, lease: Lease) -> Result<bool, FifoError> {
        let n = self
            .tx
            .prepare_cached(
                "DELETE FROM fifo_message
                  WHERE seq = ?1 AND delivery_count = ?2 AND leased_until_ms IS NOT NULL",
            )?
            .execute(params![lease.seq, lease.delivery])?;
        Ok(n == 1)
    }

    /// See [`Fifo::release`]. A message returned more often than its queue's
    /// delivery limit goes to the dead-letter queue now, as RabbitMQ does.
    pub fn release(&self, lease: Lease) -> Result<bool, FifoError> {
        let Some((queue, headers)) = self.leased_row(lease)? else {
            return Ok(false);
        };
        let policy = self.require_policy(&queue)?;
        if let (Some(limit), Some(dlq)) = (policy.delivery_limit, policy.dead_letter_queue)
            && lease.delivery > limit
        {
            self.move_to_dead_letter(lease.seq, &headers, &dlq, DELIVERY_LIMIT_REASON)?;
            tracing::warn!(
                fifo.queue = %queue,
                fifo.seq = lease.seq,
                "dead-lettered after exceeding the delivery limit"
            );
            return Ok(true);
        }
        self.tx
            .prepare_cached("UPDATE fifo_message SET leased_until_ms = NULL WHERE seq = ?1")?
            .execute(params![lease.seq])?;
        Ok(true)
    }

    /// See [`Fifo::dead_letter`].
    pub fn dead_letter(&self, lease: Lease, reason: &str) -> Result<bool, FifoError> {
        let Some((queue, headers)) = self.leased_row(lease)? else {
            return Ok(false);
        };
        let policy = self.require_policy(&queue)?;
        let dlq = policy
            .dead_letter_queue
            .ok_or_else(|| FifoError::NoDeadLetterQueue(queue.clone()))?;
        self.move_to_dead_letter(lease.seq, &headers, &dlq, reason)?;
        Ok(true)
    }

    /// See [`Fifo::depth`].
    pub fn depth(&self, queue: &str) -> Result<u64, FifoError> {
        depth(&self.tx, queue)
    }

    fn leased_row(&self, lease: Lease) -> Result<Option<(String, String)>, FifoError> {
        let row = self
            .tx
            .prepare_cached(
                "SELECT queue, headers FROM fifo_message
                  WHERE seq = ?1 AND delivery_count = ?2 AND leased_until_ms IS NOT NULL",
            )?
            .query_row(params![lease.seq, lease.delivery], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        Ok(row)
    }

    fn move_to_dead_letter(
        &self,
        seq: i64,
        headers_json: &str,
        dlq: &str,
        reason: &str,
    ) -> Result<(), FifoError> {
        let mut headers = headers_from_json(seq, headers_json)?;
        headers.insert(DEAD_LETTER_REASON_HEADER.to_owned(), reason.to_owned());
        // The message keeps its sequence number, so the dead-letter queue is in
        // arrival order too; its deliveries there start from zero.
        self.tx
            .prepare_cached(
                "UPDATE fifo_message
                    SET queue = ?2, headers = ?3, delivery_count = 0, leased_until_ms = NULL
                  WHERE seq = ?1",
            )?
            .execute(params![seq, dlq, headers_to_json(&headers)])?;
        Ok(())
    }
}

struct Row {
    seq: i64,
    message_id: String,
    content_type: String,
    headers: String,
    body: Vec<u8>,
    enqueued_at_ms: i64,
    delivery_count: u32,
}

fn depth(conn: &Connection, queue: &str) -> Result<u64, FifoError> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM fifo_message WHERE queue = ?1")?
        .query_row(params![queue], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

fn show<T: std::fmt::Debug>(value: Option<T>) -> String {
    match value {
        Some(v) => format!("{v:?}"),
        None => "none".to_owned(),
    }
}

fn headers_to_json(headers: &BTreeMap<String, String>) -> String {
    // A map of strings always serialises; the fallback only keeps clippy's
    // no-unwrap rule without a panic path.
    serde_json::to_string(headers).unwrap_or_else(|_| "{}".to_owned())
}

fn headers_from_json(seq: i64, json: &str) -> Result<BTreeMap<String, String>, FifoError> {
    serde_json::from_str(json).map_err(|source| FifoError::CorruptHeaders { seq, source })
}

fn unix_ms(t: SystemTime) -> i64 {
    let ms = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const Q: &str = "callbacks";
    const DLQ: &str = "callbacks.dlq";

    fn t(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs)
    }

    fn msg(id: &str) -> FifoMessage {
        FifoMessage {
            message_id: id.to_owned(),
            content_type: "application/json".to_owned(),
            headers: BTreeMap::from([("provider".to_owned(), "plutu".to_owned())]),
            body: format!("{{\"id\":\"{id}\"}}").into_bytes(),
        }
    }

    fn open(dir: &tempfile::TempDir, limit: Option<u32>) -> Fifo {
        let mut fifo = Fifo::open(&dir.path().join("fifo.sqlite")).unwrap();
        fifo.declare_queue(DLQ, &QueuePolicy::default()).unwrap();
        fifo.declare_queue(
            Q,
            &QueuePolicy {
                delivery_limit: limit,
                dead_letter_queue: Some(DLQ.to_owned()),
            },
        )
        .unwrap();
        fifo
    }

    fn ids(leased: &[LeasedMessage]) -> Vec<&str> {
        leased
            .iter()
            .map(|m| m.message.message_id.as_str())
            .collect()
    }

    #[test]
    fn delivers_in_arrival_order_with_all_fields() {
        let dir = tempfile::tempdir().unwrap();
        let mut fifo = open(&dir, None);
        for id in ["a", "b", "c"] {
            fifo.push(Q, &msg(id), t(0)).unwrap();
        }
        let leased = fifo.lease(Q, 2, Duration::from_secs(30), t(1)).unwrap();
        assert_eq!(ids(&leased), ["a", "b"]);
        assert_eq!(leased[0].message, msg("a"));
        assert_eq!(leased[0].delivery_count(), 1);
        assert_eq!(leased[0].enqueued_at, t(0));
        // Leased messages are not handed out twice while the lease holds.
        let rest = fifo.lease(Q, 10, Duration::from_secs(30), t(2)).unwrap();
        assert_eq!(ids(&rest), ["c"]);
        assert!(
            fifo.lease(Q, 10, Duration::from_secs(30), t(3))
                .unwrap()
                .is_empty()
        );
        assert_eq!(fifo.depth(Q).unwrap(), 3);
    }

    #[test]
    fn ack_removes_and_a_stale_ack_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let mut fifo = open(&dir, None);
        fifo.push(Q, &msg("a"), t(0)).unwrap();
        let first = fifo.lease(Q, 1, Duration::from_secs(10), t(0)).unwrap();
        // The lease expires and someone else gets the message.
        let second = fifo.lease(Q, 1, Duration::from_secs(10), t(11)).unwrap();
        assert_eq!(ids(&second), ["a"]);
        assert_eq!(second[0].delivery_count(), 2);
        assert!(
            !fifo.ack(first[0].lease).unwrap(),
            "a stale lease must not ack"
        );
        assert_eq!(fifo.depth(Q).unwrap(), 1);
        assert!(fifo.ack(second[0].lease).unwrap());
        assert_eq!(fifo.depth(Q).unwrap(), 0);
        assert!(
            !fifo.ack(second[0].lease).unwrap(),
            "an ack is not counted twice"
        );
    }

    #[test]
    fn release_makes_the_message_available_first_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut fifo = open(&dir, None);
        fifo.push(Q, &msg("a"), t(0)).unwrap();
        fifo.push(Q, &msg("b"), t(0)).unwrap();
        let leased = fifo.lease(Q, 1, Duration::from_secs(60), t(0)).unwrap();
        assert!(fifo.release(leased[0].lease).unwrap());
        let again = fifo.lease(Q, 2, Duration::from_secs(60), t(1)).unwrap();
        assert_eq!(ids(&again), ["a", "b"]);
        assert_eq!(again[0].delivery_count(), 2);
        assert!(!fifo.release(leased[0].lease).unwrap());
    }

    #[test]
    fn delivery_limit_dead_letters_like_a_quorum_queue() {
        let dir = tempfile::tempdir().unwrap();
        let mut fifo = open(&dir, Some(2));
        fifo.push(Q, &msg("poison"), t(0)).unwrap();
        fifo.push(Q, &msg("fine"), t(0)).unwrap();
        // Limit 2: three deliveries, the third return dead-letters it.
        for delivery in 1..=3 {
            let leased = fifo
                .lease(Q, 1, Duration::from_secs(60), t(delivery))
                .unwrap();
            assert_eq!(ids(&leased), ["poison"]);
            assert_eq!(leased[0].delivery_count(), u32::try_from(delivery).unwrap());
            assert!(fifo.release(leased[0].lease).unwrap());
        }
        assert_eq!(fifo.depth(DLQ).unwrap(), 1);
        let next = fifo.lease(Q, 10, Duration::from_secs(60), t(10)).unwrap();
        assert_eq!(ids(&next), ["fine"]);
        let dead = fifo.lease(DLQ, 10, Duration::from_secs(60), t(10)).unwrap();
        assert_eq!(ids(&dead), ["poison"]);
        assert_eq!(
            dead[0]
                .message
                .headers
                .get(DEAD_LETTER_REASON_HEADER)
                .map(String::as_str),
            Some(DELIVERY_LIMIT_REASON)
        );
        assert_eq!(
            dead[0].message.headers.get("provider").map(String::as_str),
            Some("plutu")
        );
    }

    #[test]
    fn expired_leases_count_towards_the_delivery_limit() {
        let dir = tempfile::tempdir().unwrap();
        let mut fifo = open(&dir, Some(1));
        fifo.push(Q, &msg("a"), t(0)).unwrap();
        assert_eq!(
            fifo.lease(Q, 1, Duration::from_secs(5), t(0))
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            fifo.lease(Q, 1, Duration::from_secs(5), t(10))
                .unwrap()
                .len(),
            1
        );
        // Second lease expired too: the next lease attempt dead-letters instead.
        assert!(
            fifo.lease(Q, 1, Duration::from_secs(5), t(20))
                .unwrap()
                .is_empty()
        );
        assert_eq!(fifo.depth(Q).unwrap(), 0);
        assert_eq!(fifo.depth(DLQ).unwrap(), 1);
    }

    #[test]
    fn dead_letter_with_reason_keeps_the_message() {
        let dir = tempfile::tempdir().unwrap();
        let mut fifo = open(&dir, None);
        fifo.push(Q, &msg("a"), t(0)).unwrap();
        let leased = fifo.lease(Q, 1, Duration::from_secs(60), t(0)).unwrap();
        assert!(
            fifo.dead_letter(leased[0].lease, "amount is not a number")
                .unwrap()
        );
        assert!(!fifo.dead_letter(leased[0].lease, "again").unwrap());
        let dead = fifo.lease(DLQ, 1, Duration::from_secs(60), t(1)).unwrap();
        assert_eq!(dead[0].message.body, msg("a").body);
        assert_eq!(
            dead[0]
                .message
                .headers
                .get(DEAD_LETTER_REASON_HEADER)
                .map(String::as_str),
            Some("amount is not a number")
        );
        // The dead-letter queue itself has nowhere to dead-letter to.
        let err = fifo.dead_letter(dead[0].lease, "x").unwrap_err();
        assert!(matches!(err, FifoError::NoDeadLetterQueue(q) if q == DLQ));
    }

    #[test]
    fn redeclaring_with_another_policy_names_the_argument() {
        let dir = tempfile::tempdir().unwrap();
        let mut fifo = open(&dir, Some(3));
        // Same policy: fine.
        fifo.declare_queue(
            Q,
            &QueuePolicy {
                delivery_limit: Some(3),
                dead_letter_queue: Some(DLQ.to_owned()),
            },
        )
        .unwrap();
        let err = fifo
            .declare_queue(
                Q,
                &QueuePolicy {
                    delivery_limit: Some(5),
                    dead_letter_queue: Some(DLQ.to_owned()),
                },
            )
            .unwrap_err();
        assert!(
            matches!(&err, FifoError::QueueConflict { queue, argument: "delivery_limit", .. } if queue == Q),
            "{err}"
        );
        assert!(err.to_string().contains("callbacks"), "{err}");
        assert!(!err.is_retryable());
        let err = fifo
            .declare_queue(
                "other",
                &QueuePolicy {
                    delivery_limit: Some(1),
                    dead_letter_queue: None,
                },
            )
            .unwrap_err();
        assert!(matches!(err, FifoError::LimitWithoutDeadLetterQueue(_)));
    }

    #[test]
    fn unknown_queue_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut fifo = open(&dir, None);
        let err = fifo.push("nope", &msg("a"), t(0)).unwrap_err();
        assert!(matches!(err, FifoError::UnknownQueue(q) if q == "nope"));
    }

    #[test]
    fn a_reopened_file_still_has_everything_and_uncommitted_work_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut fifo = open(&dir, None);
            fifo.push(Q, &msg("a"), t(0)).unwrap();
            fifo.push(Q, &msg("b"), t(0)).unwrap();
            // Leased by a process that then dies without acking.
            fifo.lease(Q, 1, Duration::from_secs(30), t(0)).unwrap();
            let tx = fifo.transaction().unwrap();
            tx.push(Q, &msg("never-committed"), t(0)).unwrap();
            drop(tx);
        }
        let mut fifo = open(&dir, None);
        assert_eq!(fifo.depth(Q).unwrap(), 2);
        // While the dead process's lease holds, only "b" is available…
        assert_eq!(
            ids(&fifo.lease(Q, 10, Duration::from_secs(30), t(1)).unwrap()),
            ["b"]
        );
        // …and once it expires, "a" comes back, marked as a second delivery.
        let again = fifo.lease(Q, 10, Duration::from_secs(30), t(30)).unwrap();
        assert_eq!(ids(&again), ["a"]);
        assert_eq!(again[0].delivery_count(), 2);
    }

    #[test]
    fn one_transaction_commits_many_operations_together() {
        let dir = tempfile::tempdir().unwrap();
        let mut fifo = open(&dir, None);
        let tx = fifo.transaction().unwrap();
        for i in 0..100 {
            tx.push(Q, &msg(&i.to_string()), t(0)).unwrap();
        }
        assert_eq!(tx.depth(Q).unwrap(), 100);
        tx.commit().unwrap();
        let leased = fifo.lease(Q, 1000, Duration::from_secs(30), t(1)).unwrap();
        assert_eq!(leased.len(), 100);
        let order: Vec<i64> = leased.iter().map(|m| m.lease.seq()).collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]));
        let tx = fifo.transaction().unwrap();
        for m in &leased {
            assert!(tx.ack(m.lease).unwrap());
        }
        tx.commit().unwrap();
        assert_eq!(fifo.depth(Q).unwrap(), 0);
    }
}
