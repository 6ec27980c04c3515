//! paysettle's ledger: the truth finance's books rest on. Every change to a
//! payment is committed in one transaction with the history row that says
//! why and the outbox event that tells finance, so a crash at any instant
//! leaves all of them or none.
//!
//! The ledger is this crate's one concept (the embedded queue's FIFO lives in
//! `paysettle-queue`). It stores in SQLite through `paysettle-sqlite`, which
//! opens the files with their pragmas and runs the group-commit writer
//! thread; this crate never depends on rusqlite itself (`deny.toml`).
//!
//! - [`Ledger`]: the handle. One writer thread owns the writing connection
//!   (commands over a bounded channel); reads use read-only connections.
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

pub mod cards;
mod claim;
mod clock;
mod error;
pub mod event;
mod integrity;
mod ledger;
mod migrate;
pub mod model;
mod rows;
mod write;

pub use cards::{CardEntry, CardFeed};
pub use claim::WorkerClaim;
pub use clock::SystemClock;
pub use error::StoreError;
pub use ledger::{Ledger, LedgerHealth, LedgerOptions, Synchronous};
pub use migrate::SCHEMA_VERSION;
pub use model::{
    ApplyOutcome, ApplyRequest, CheckNow, CheckState, DueCheck, EventFilter, HistoryEntry,
    LedgerRules, OutboxEvent, PaymentFilter, PaymentId, PaymentKey, PaymentRecord, RegisterOutcome,
    Registration, Resolved,
};
