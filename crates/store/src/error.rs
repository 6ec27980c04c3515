//! The store's one error type.

use paysettle_sqlite::rusqlite;

/// What can go wrong with the ledger.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed.
    // The cause is in the text and deliberately not a `source`, so a chain
    // printed with `{:#}` says it once.
    #[error("ledger database error: {0}")]
    Sqlite(rusqlite::Error),
    /// PostgreSQL refused or failed (the text never carries the password:
    /// the driver's errors do not include the connection string).
    #[error("ledger database error (PostgreSQL): {}", pg_text(.0))]
    Postgres(tokio_postgres::Error),
    /// No PostgreSQL connection could be had from the pool.
    #[error("no connection to the PostgreSQL ledger: {0}")]
    Pool(String),
    /// The PostgreSQL ledger's settings cannot be used (the URL is not
    /// repeated: it may hold a password).
    #[error("the PostgreSQL ledger's settings are invalid: {0}")]
    Config(String),
    /// The file was written by a newer paysettle.
    #[error(
        "the ledger {path} has schema version {found}, newer than this paysettle understands ({supported}); \
         run the newer version or restore a backup"
    )]
    NewerSchema {
        path: String,
        found: i64,
        supported: i64,
    },
    /// The shop registered a payment again with different details.
    #[error(
        "payment {reference} is already registered with a different {field} ({existing}, not {requested})"
    )]
    Conflict {
        reference: String,
        field: &'static str,
        existing: String,
        requested: String,
    },
    /// No payment with that key.
    #[error("no {what} in the ledger")]
    NotFound { what: String },
    /// The operation is refused for what the payment is now (a resolution
    /// of a payment that is not flagged).
    #[error("refused: {reason}")]
    Refused { reason: String },
    /// A value read back from the ledger breaks its own rules (hand-edited or
    /// corrupt file).
    #[error("the ledger holds an invalid {what}: {detail}")]
    Corrupt { what: &'static str, detail: String },
    /// The writer thread is gone (the ledger was closed or the thread died).
    #[error("the ledger writer has stopped")]
    WriterGone,
    /// A read was cut off before it finished (its task panicked or the
    /// runtime is shutting down).
    #[error("a ledger read did not complete")]
    ReadFailed,
    /// Opening or creating the ledger's directory or file failed.
    #[error("cannot open the ledger at {path}: {error}")]
    Open { path: String, error: std::io::Error },
    /// Another process's worker holds the ledger.
    #[error(
        "another paysettle worker is already running on the ledger {ledger} (it holds {lock}); run one worker per ledger"
    )]
    Claimed { ledger: String, lock: String },
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Sqlite(error)
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        StoreError::Postgres(error)
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(error) => StoreError::Postgres(error),
            other => StoreError::Pool(other.to_string()),
        }
    }
}

impl StoreError {
    /// Whether the same call may succeed later (the database was busy or
    /// locked by another process, such as an operator's reconcile batch).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(err, _)) => matches!(
                err.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
            StoreError::Postgres(err) => is_pg_conflict(err) || err.is_closed(),
            StoreError::Pool(_) => true,
            _ => false,
        }
    }

    /// Whether a PostgreSQL transaction failed only because it met another
    /// one (a lock it could not take, a deadlock, a serialization failure,
    /// or a row another worker inserted first): run again, it sees the other
    /// one's work and decides anew.
    pub(crate) fn is_conflict(&self) -> bool {
        match self {
            StoreError::Postgres(err) => {
                is_pg_conflict(err)
                    || err.code() == Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
            }
            _ => false,
        }
    }

    /// Why the file at `path` (shown) could not be opened.
    pub(crate) fn opening(path: &str, error: paysettle_sqlite::OpenError) -> StoreError {
        match error {
            paysettle_sqlite::OpenError::Directory { error, .. } => StoreError::Open {
                path: path.to_owned(),
                error,
            },
            paysettle_sqlite::OpenError::Sqlite(error) => StoreError::Sqlite(error),
        }
    }

    pub(crate) fn corrupt(what: &'static str, detail: impl ToString) -> StoreError {
        StoreError::Corrupt {
            what,
            detail: detail.to_string(),
        }
    }
}

fn is_pg_conflict(err: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::SqlState;
    matches!(
        err.code(),
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE
            || *code == SqlState::T_R_DEADLOCK_DETECTED
            || *code == SqlState::LOCK_NOT_AVAILABLE
    )
}

/// The driver's error with its cause ("db error" alone says nothing; the
/// server's message, such as `ERROR: relation "x" does not exist`, is the
/// cause). Neither carries the connection string.
pub(crate) fn pg_text(err: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(inner) = cause {
        let said = inner.to_string();
        if !text.contains(&said) {
            text.push_str(": ");
            text.push_str(&said);
        }
        cause = inner.source();
    }
    text
}
