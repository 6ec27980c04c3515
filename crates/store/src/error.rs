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

impl StoreError {
    /// Whether the same call may succeed later (the database was busy or
    /// locked by another process, such as an operator's reconcile batch).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(err, _)) => matches!(
                err.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ),
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
