//! paysettle's storage: the ledger, on SQLite or PostgreSQL. The only crate
//! that depends on rusqlite or the PostgreSQL client.
//!
//! The ledger is the truth finance's books rest on: every change to a payment
//! is committed in one transaction with the history row that says why and the
//! outbox event that tells finance, so a crash at any instant leaves all of
//! them or none.
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
//! - [`event`]: the settled-event contract's JSON.
//! - `migrate`: versioned, embedded schema migrations.
//! - `integrity`: the invariants `paysettle ledger check` verifies.
//! - [`fifo`]: the durable, leased FIFO behind the embedded queue and the spool.
//! - [`WorkerClaim`]: one worker per ledger.
//! - [`cards`]: the shop's card registrations for the card feed, in a file of
//!   their own beside the ledger (a card token never enters the ledger).

mod backend;
pub mod cards;
mod claim;
mod error;
pub mod event;
pub mod fifo;
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
pub use error::StoreError;
pub use ledger::{LedgerHealth, LedgerOptions, SqliteLedger, Synchronous};
pub use migrate::SCHEMA_VERSION;
pub use model::{
    ApplyOutcome, ApplyRequest, CheckNow, CheckState, DueCheck, EventFilter, HistoryEntry,
    LedgerRules, OutboxEvent, PaymentFilter, PaymentId, PaymentKey, PaymentRecord, RateDecision,
    RateLimit, RegisterOutcome, Registration, Resolved,
};
pub use pg::{PG_SCHEMA_VERSION, PgLedger, PgOptions};
