//! Opening SQLite files the way paysettle needs them.
//!
//! Every file paysettle writes (the ledger, the card feed, the FIFO of the
//! embedded queue and of the spool) is in WAL mode, so readers never block the
//! writer, and waits a while for another process's lock (an operator's
//! reconcile batch) before failing as busy. How durable a commit is, whether
//! foreign keys are enforced and whether deleted rows are overwritten are the
//! file's choice ([`Options`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

/// How durable a commit is (SQLite's `synchronous` pragma, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit reaches the disk before it returns.
    #[default]
    Full,
    /// Commits survive a process crash but may be lost on power loss.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

/// How to open a writing connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// How durable a commit is.
    pub synchronous: Synchronous,
    /// How long a statement waits for another connection's lock before it
    /// fails with `SQLITE_BUSY`.
    pub busy_timeout: Duration,
    /// Enforce `REFERENCES` constraints (`PRAGMA foreign_keys`). As with
    /// `secure_delete`, `false` leaves SQLite's build default (on in
    /// rusqlite's bundled build) and `true` holds whatever SQLite is linked.
    pub foreign_keys: bool,
    /// Overwrite deleted content with zeros (`PRAGMA secure_delete`), for
    /// files that hold something that must not stay readable in free pages
    /// once deleted (a card token). `false` leaves SQLite's build default
    /// (rusqlite's bundled build has it on); `true` holds whatever SQLite is
    /// linked.
    pub secure_delete: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            foreign_keys: false,
            secure_delete: false,
        }
    }
}

/// Why a file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file's directory did not exist and could not be created.
    // The cause is in the text and deliberately not a `source`, so a chain
    // printed with `{:#}` says it once.
    #[error("cannot create the directory {}: {error}", dir.display())]
    Directory { dir: PathBuf, error: std::io::Error },
    /// SQLite could not open the file or refused a pragma.
    #[error("{0}")]
    Sqlite(rusqlite::Error),
}

impl From<rusqlite::Error> for OpenError {
    fn from(error: rusqlite::Error) -> Self {
        OpenError::Sqlite(error)
    }
}

/// Opens (creating if needed, with its directory) the file at `path` for
/// reading and writing, in WAL mode with `options`. A file system that cannot
/// do WAL keeps SQLite's own journal, with a warning.
pub fn open(path: &Path, options: &Options) -> Result<Connection, OpenError> {
    if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|error| OpenError::Directory {
            dir: dir.to_path_buf(),
            error,
        })?;
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(options.busy_timeout)?;
    if options.foreign_keys {
        conn.pragma_update(None, "foreign_keys", "ON")?;
    }
    // `journal_mode` answers with the mode now in force, so it is a query.
    let journal: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    if !journal.eq_ignore_ascii_case("wal") {
        tracing::warn!(sqlite.path = %path.display(), journal, "the file could not switch to WAL mode");
    }
    conn.pragma_update(None, "synchronous", options.synchronous.pragma())?;
    if options.secure_delete {
        conn.pragma_update(None, "secure_delete", "ON")?;
    }
    Ok(conn)
}

/// Opens the existing file at `path` for queries only: it never creates the
/// file, and a write on it fails (`SQLITE_READONLY`).
pub fn open_read_only(path: &Path, busy_timeout: Duration) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(busy_timeout)?;
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pragma(conn: &Connection, name: &str) -> i64 {
        conn.query_row(&format!("PRAGMA {name}"), [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn open_applies_every_pragma_and_creates_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/file.sqlite");
        let options = Options {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_millis(1234),
            foreign_keys: true,
            secure_delete: true,
        };
        let conn = open(&path, &options).unwrap();
        assert!(path.exists(), "the file and its directories are created");
        let journal: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
        assert_eq!(pragma(&conn, "synchronous"), 2, "FULL is 2");
        assert_eq!(pragma(&conn, "busy_timeout"), 1234);
        assert_eq!(pragma(&conn, "foreign_keys"), 1);
        assert_eq!(pragma(&conn, "secure_delete"), 1);
    }

    #[test]
    fn normal_durability_and_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            synchronous: Synchronous::Normal,
            ..Options::default()
        };
        let conn = open(&dir.path().join("f.sqlite"), &options).unwrap();
        assert_eq!(pragma(&conn, "synchronous"), 1, "NORMAL is 1");
        assert_eq!(pragma(&conn, "busy_timeout"), 5000, "the default timeout");
    }

    #[test]
    fn foreign_keys_are_enforced_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let options = Options {
            foreign_keys: true,
            ..Options::default()
        };
        let conn = open(&dir.path().join("f.sqlite"), &options).unwrap();
        conn.execute_batch(
            "CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE child (parent INTEGER REFERENCES parent (id));",
        )
        .unwrap();
        let orphan = conn.execute("INSERT INTO child (parent) VALUES (7)", []);
        assert!(orphan.is_err(), "a row pointing at no parent is refused");
    }

    #[test]
    fn a_directory_that_cannot_be_made_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("plain-file");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let err = open(&blocker.join("ledger.sqlite"), &Options::default()).unwrap_err();
        assert!(
            matches!(&err, OpenError::Directory { dir, .. } if *dir == blocker),
            "{err:?}"
        );
        assert!(err.to_string().contains("plain-file"), "{err}");
    }

    #[test]
    fn something_that_is_not_a_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("text.sqlite");
        std::fs::write(&path, vec![b'x'; 4096]).unwrap();
        let err = open(&path, &Options::default()).unwrap_err();
        assert!(matches!(err, OpenError::Sqlite(_)), "{err:?}");
        assert!(err.to_string().contains("not a database"), "{err}");
    }

    #[test]
    fn a_read_only_connection_reads_the_writers_commits_and_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.sqlite");
        let writer = open(&path, &Options::default()).unwrap();
        writer
            .execute_batch("CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (42);")
            .unwrap();
        let reader = open_read_only(&path, Duration::from_millis(250)).unwrap();
        assert_eq!(pragma(&reader, "busy_timeout"), 250);
        let v: i64 = reader
            .query_row("SELECT v FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, 42);
        let err = reader
            .execute("INSERT INTO t VALUES (1)", [])
            .expect_err("a read-only connection must not write");
        assert_eq!(
            err.sqlite_error_code(),
            Some(rusqlite::ErrorCode::ReadOnly),
            "{err}"
        );
    }

    #[test]
    fn a_read_only_connection_never_creates_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.sqlite");
        assert!(open_read_only(&path, Duration::from_secs(1)).is_err());
        assert!(!path.exists());
    }
}
