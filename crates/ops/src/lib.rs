//! Operators' batches: reconciling the ledger with what the providers say.
//!
//! Ops are called when finance's numbers and the shop's orders disagree. A
//! reconciliation batch takes payments from the ledger, asks each provider
//! again (its status API, or the report it exported), compares the ledger,
//! the provider and the events already published, and puts every payment in
//! one [`Class`]. With `apply`, the corrections go through the same ledger
//! path as the worker's, with source `reconcile`, so history is kept and
//! finance hears of them like any other transition.
//!
//! - [`reconcile`]: the batch ([`Batch`], [`Reconciler`]) and the verdicts
//!   ([`Class`], [`Finding`], [`Summary`]).
//! - [`report`]: reading a provider's exported report (CSV or JSON) through
//!   a column mapping.
//! - [`journal`]: the file that makes an interrupted batch resumable.
//! - [`render`]: the table, CSV and JSON an operator reads.

pub mod journal;
pub mod reconcile;
pub mod render;
pub mod report;

pub use journal::Journal;
pub use reconcile::{Batch, Class, Finding, Progress, Reconciler, RunOutcome, Summary};
pub use report::{Mapping, Report, ReportError, ReportRow};

/// Why a batch could not run.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error("the ledger: {0}")]
    Store(#[from] paysettle_store::StoreError),
    #[error("the journal {path}: {message}")]
    Journal { path: String, message: String },
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error("{0}")]
    Invalid(String),
}
