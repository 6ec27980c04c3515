//! Where "now" comes from, as a parameter.
//!
//! Core never reads the clock: its functions take `now` as an argument. The
//! parts above it (the ledger's writer, the poller, the status client, the
//! shop API) ask a [`Clock`] they were given, so the product runs on the
//! system's wall clock and a test moves time itself: past a deadline, past
//! a provider's `Retry-After`, without waiting for it. The wall clock lives
//! in the store crate (`paysettle_store::SystemClock`); the tests' clocks in
//! `paysettle-testkit`.

use std::fmt::Debug;
use std::sync::Arc;

use jiff::Timestamp;

/// A source of the current time.
pub trait Clock: Send + Sync + Debug {
    /// The current time on this clock.
    fn now(&self) -> Timestamp;
}

/// A clock shared by the parts of one process (cheap to clone).
pub type SharedClock = Arc<dyn Clock>;
