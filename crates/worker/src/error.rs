//! The worker's one error type.

use paysettle_queue::QueueError;
use paysettle_store::StoreError;

/// What can stop a worker step.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Ledger(#[from] StoreError),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("cannot start the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
    #[error("cannot serve the shop API: {0}")]
    Serve(#[from] std::io::Error),
    #[error("invalid settings: {0}")]
    Settings(String),
}

impl WorkerError {
    /// Whether the same step may succeed if tried again.
    pub fn is_retryable(&self) -> bool {
        match self {
            WorkerError::Ledger(e) => e.is_retryable(),
            WorkerError::Queue(e) => e.is_retryable(),
            WorkerError::Http(_) | WorkerError::Serve(_) | WorkerError::Settings(_) => false,
        }
    }
}
