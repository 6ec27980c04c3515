//! paysettle's ledger: the truth finance's books rest on, on SQLite or
//! PostgreSQL. Every change to a payment is committed in one transaction with
//! the history row that says why and the outbox event that tells finance, so
//! a crash at any instant leaves all of them or none.
//!
//! The ledger is this crate's one concept (the embedded queue's FIFO lives in
//! `paysettle-queue`). It stores in SQLite through `paysettle-sqlite`, which
//! opens the files with their pragmas and runs the group-commit writer
//! thread (this crate never depends on rusqlite itself), or in PostgreSQL,
//! whose client only this crate may use (`deny.toml`).
//!
//! - [`Ledger`]: the handle callers use, over either backend ([`LedgerTarget`]).
//! - [`SqliteLedger`] (`ledger`): one file. One writer thread owns the writing
//!   connection (commands over a bounded channel); reads use read-only
//!   connections.
//! - [`PgLedger`] (`pg`): one PostgreSQL database shared by many workers:
//!   row locks, retried conflicts, its own migrations, rows and integrity.
//! - `lease`: claims for many workers (leased due checks and outbox events,
//!   a rate bucket per provider account), and SQLite's implementation.
//! - [`model`]: what goes in ([`Registration`], [`ApplyRequest`]) and comes
//!   out ([`ApplyOutcome`], [`PaymentRecord`], [`HistoryEntry`], [`OutboxEvent`]).
//! - `write`: the transactions: dedupe, state machine, history, outbox, schedule.
//! - `rows`: reading rows back into the model.
//! - [`event`]: the settled-event contract's JSON.
//! - `migrate`: versioned, embedded schema migrations.
//! - `integrity`: the invariants `paysettle ledger check` verifies.
//! - [`WorkerClaim`]: one worker per ledger.
//! - [`SystemClock`]: the wall clock the ledger and the worker read in the
//!   product (tests give them their own `Clock`).
//! - [`cards`]: the shop's card registrations for the card feed, in a file of
//!   their own beside the ledger (a card token never enters the ledger).

mod backend;
pub mod cards;
mod claim;
mod clock;
mod error;
pub mod event;
mod integrity;
mod lease;
mod ledger;
mod migrate;
pub mod model;
mod pg;
mod rows;
mod write;

pub use backend::{Ledger, LedgerTarget};
pub use cards::{CardEntry, CardFeed};
pub use claim::WorkerClaim;
pub use clock::SystemClock;
pub use error::StoreError;
pub use ledger::{LedgerHealth, LedgerOptions, SqliteLedger, Synchronous};
pub use migrate::SCHEMA_VERSION;
pub use model::{
    ApplyOutcome, ApplyRequest, CheckNow, CheckState, DueCheck, EventFilter, HistoryEntry,
    LedgerRules, OutboxEvent, PaymentFilter, PaymentId, PaymentKey, PaymentRecord, RateDecision,
    RateLimit, RegisterOutcome, Registration, Resolved,
};
pub use pg::{CopyCounts, PG_SCHEMA_VERSION, PgLedger, PgOptions};
