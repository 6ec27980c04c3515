//! The shop's card registrations, kept for the shop API's card feed.
//!
//! A card registration carries a card token, which must never reach the
//! ledger (the ledger is backed up, copied and read by operators), so the
//! feed has a small SQLite file of its own beside it. Entries are kept for a
//! retention period and then deleted with `secure_delete` on, so a token does
//! not stay readable in the file's free pages. The file's id is part of the
//! feed's cursor: a cursor from another file is refused, never misread.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use paysettle_sqlite::rusqlite::{self, Connection, OptionalExtension};
use tokio::sync::watch;

use crate::error::StoreError;
use crate::rows::ms;

/// One card registration as the shop receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardEntry {
    /// The feed order.
    pub seq: i64,
    /// The receiver's id of the callback (the queue message id on RabbitMQ).
    pub message_id: String,
    /// `card.registered.paysys` or `card.registration_failed.paysys`.
    pub routing_key: String,
    /// The JSON body, exactly as published to the shop queue.
    pub body: String,
    pub recorded_at: Timestamp,
}

struct Inner {
    path: PathBuf,
    conn: Mutex<Connection>,
    id: String,
    changes: watch::Sender<u64>,
}

/// The card feed's file. Cheap to clone.
#[derive(Clone)]
pub struct CardFeed {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for CardFeed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CardFeed")
            .field("path", &self.inner.path)
            .finish()
    }
}

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    ) STRICT;
    CREATE TABLE IF NOT EXISTS cards (
        seq            INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id     TEXT NOT NULL UNIQUE,
        routing_key    TEXT NOT NULL,
        body           TEXT NOT NULL,
        recorded_at_ms INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX IF NOT EXISTS cards_by_time ON cards (recorded_at_ms);
    INSERT OR IGNORE INTO meta (key, value) VALUES ('feed_id', lower(hex(randomblob(8))));
";

impl CardFeed {
    /// The card feed file that belongs to the ledger at `ledger`:
    /// `<ledger>.cards` beside it.
    pub fn path_for(ledger: &Path) -> PathBuf {
        let mut name = ledger.as_os_str().to_owned();
        name.push(".cards");
        PathBuf::from(name)
    }

    /// Opens (creating if needed) the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<CardFeed, StoreError> {
        let path = path.as_ref().to_path_buf();
        let shown = path.display().to_string();
        let options = paysettle_sqlite::Options {
            synchronous: paysettle_sqlite::Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            foreign_keys: false,
            // Deleted tokens are overwritten, not left in free pages.
            secure_delete: true,
        };
        let conn =
            paysettle_sqlite::open(&path, &options).map_err(|e| StoreError::opening(&shown, e))?;
        conn.execute_batch(SCHEMA)?;
        let id: String =
            conn.query_row("SELECT value FROM meta WHERE key = 'feed_id'", [], |r| {
                r.get(0)
            })?;
        Ok(CardFeed {
            inner: Arc::new(Inner {
                path,
                conn: Mutex::new(conn),
                id,
                changes: watch::Sender::new(0),
            }),
        })
    }

    /// The file's id, which the feed's cursor carries.
    pub fn id(&self) -> &str {
        &self.inner.id
    }

    /// Wakes whoever waits for a new entry.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    async fn with<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.conn.lock().unwrap_or_else(PoisonError::into_inner);
            work(&mut conn)
        })
        .await
        .map_err(|_| StoreError::ReadFailed)?
    }

    /// Records a registration (once per `message_id`: a redelivered message
    /// is not recorded twice) and deletes the entries older than `retention`.
    /// `true` when it was new.
    pub async fn record(
        &self,
        message_id: String,
        routing_key: String,
        body: String,
        retention: Duration,
    ) -> Result<bool, StoreError> {
        let now = Timestamp::now();
        let cutoff =
            ms(now).saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let inserted = self
            .with(move |conn| {
                let tx = conn.transaction()?;
                let inserted = tx.execute(
                    "INSERT OR IGNORE INTO cards (message_id, routing_key, body, recorded_at_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![message_id, routing_key, body, ms(now)],
                )?;
                let deleted =
                    tx.execute("DELETE FROM cards WHERE recorded_at_ms < ?1", [cutoff])?;
                tx.commit()?;
                if deleted > 0 {
                    checkpoint(conn)?;
                }
                Ok(inserted == 1)
            })
            .await?;
        self.inner.changes.send_modify(|n| *n += 1);
        Ok(inserted)
    }

    /// Deletes the entries recorded before `before`; how many.
    pub async fn prune(&self, before: Timestamp) -> Result<usize, StoreError> {
        self.with(move |conn| {
            let deleted =
                conn.execute("DELETE FROM cards WHERE recorded_at_ms < ?1", [ms(before)])?;
            if deleted > 0 {
                checkpoint(conn)?;
            }
            Ok(deleted)
        })
        .await
    }

    /// Up to `limit` entries after `after` (a `seq`), in order.
    pub async fn after(&self, after: i64, limit: usize) -> Result<Vec<CardEntry>, StoreError> {
        self.with(move |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT seq, message_id, routing_key, body, recorded_at_ms FROM cards
                 WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = statement.query_map(
                rusqlite::params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                    ))
                },
            )?;
            let mut entries = Vec::new();
            for row in rows {
                let (seq, message_id, routing_key, body, at) = row?;
                entries.push(CardEntry {
                    seq,
                    message_id,
                    routing_key,
                    body,
                    recorded_at: Timestamp::from_millisecond(at)
                        .map_err(|e| StoreError::corrupt("card time", e))?,
                });
            }
            Ok(entries)
        })
        .await
    }

    /// The last `seq` recorded (0 when none ever was).
    pub async fn last_seq(&self) -> Result<i64, StoreError> {
        self.with(|conn| {
            Ok(conn
                .query_row("SELECT max(seq) FROM cards", [], |r| {
                    r.get::<_, Option<i64>>(0)
                })
                .optional()?
                .flatten()
                .unwrap_or(0))
        })
        .await
    }
}

/// Moves the write-ahead log into the file and empties it: with
/// `secure_delete` the deleted rows' pages are zeroed in the file, and the
/// log's older copies of them go with the log.
fn checkpoint(conn: &Connection) -> Result<(), StoreError> {
    let _busy: (i64, i64, i64) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_are_kept_once_in_order_and_pruned_after_the_retention() {
        let dir = tempfile::tempdir().unwrap();
        let feed = CardFeed::open(dir.path().join("ledger.sqlite.cards")).unwrap();
        let week = Duration::from_secs(7 * 24 * 3600);
        assert!(
            feed.record(
                "m-1".into(),
                "card.registered.paysys".into(),
                "{}".into(),
                week
            )
            .await
            .unwrap()
        );
        assert!(
            !feed
                .record(
                    "m-1".into(),
                    "card.registered.paysys".into(),
                    "{}".into(),
                    week
                )
                .await
                .unwrap(),
            "a redelivered message is recorded once"
        );
        feed.record(
            "m-2".into(),
            "card.registered.paysys".into(),
            "{}".into(),
            week,
        )
        .await
        .unwrap();
        let all = feed.after(0, 10).await.unwrap();
        assert_eq!(
            all.iter()
                .map(|e| e.message_id.as_str())
                .collect::<Vec<_>>(),
            ["m-1", "m-2"]
        );
        assert_eq!(feed.after(all[0].seq, 10).await.unwrap().len(), 1);
        assert_eq!(feed.last_seq().await.unwrap(), all[1].seq);
        // Past the retention, entries go.
        assert_eq!(
            feed.prune(Timestamp::now() + jiff::SignedDuration::from_secs(1))
                .await
                .unwrap(),
            2
        );
        assert!(feed.after(0, 10).await.unwrap().is_empty());
        for file in ["ledger.sqlite.cards", "ledger.sqlite.cards-wal"] {
            let bytes = std::fs::read(dir.path().join(file)).unwrap_or_default();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("card.registered"),
                "deleted entries are overwritten in {file}"
            );
        }
        // The same file keeps its id.
        let id = feed.id().to_owned();
        drop(feed);
        let again = CardFeed::open(dir.path().join("ledger.sqlite.cards")).unwrap();
        assert_eq!(again.id(), id);
    }
}
