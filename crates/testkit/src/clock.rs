//! A clock a test moves: what the ledger and the worker read "now" from in
//! tests, so a test goes past a deadline or a `Retry-After` by saying so
//! instead of waiting for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use paysettle_core::clock::{Clock, SharedClock};
use tokio::time::Instant;

/// A test's clock. It starts at the wall time it was made at and moves
/// forward by what the test [`advance`](TestClock::advance)s it, and, unless
/// [`stopped`](TestClock::stopped), with tokio's clock: real time in a
/// running runtime, the paused clock under `tokio::time::pause()`. Like the
/// simulator's clock (whose `advance()` a test calls together with this
/// one), so the provider's time and the ledger's stay together.
#[derive(Debug)]
pub struct TestClock {
    start: Instant,
    start_wall: Timestamp,
    follows_tokio: bool,
    advanced_ns: AtomicU64,
}

impl TestClock {
    /// A clock that follows tokio's time, plus what the test advances.
    pub fn new() -> Arc<TestClock> {
        Arc::new(TestClock::starting(true))
    }

    /// A clock that moves only when the test advances it.
    pub fn stopped() -> Arc<TestClock> {
        Arc::new(TestClock::starting(false))
    }

    fn starting(follows_tokio: bool) -> TestClock {
        TestClock {
            start: Instant::now(),
            start_wall: Timestamp::now(),
            follows_tokio,
            advanced_ns: AtomicU64::new(0),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX / 4);
        self.advanced_ns.fetch_add(ns, Ordering::AcqRel);
    }

    /// This clock as the ledger's and the worker's [`SharedClock`].
    pub fn shared(self: &Arc<Self>) -> SharedClock {
        Arc::clone(self) as SharedClock
    }
}

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        let followed = if self.follows_tokio {
            self.start.elapsed()
        } else {
            Duration::ZERO
        };
        let since = followed + Duration::from_nanos(self.advanced_ns.load(Ordering::Acquire));
        SignedDuration::try_from(since)
            .ok()
            .and_then(|d| self.start_wall.checked_add(d).ok())
            .unwrap_or(Timestamp::MAX)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn follows_tokio_paused_time_and_what_the_test_advances() {
        let clock = TestClock::new();
        let start = clock.now();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(
            clock.now().duration_since(start),
            SignedDuration::from_secs(5)
        );
        clock.advance(Duration::from_secs(60));
        assert_eq!(
            clock.now().duration_since(start),
            SignedDuration::from_secs(65)
        );
        let shared = clock.shared();
        assert_eq!(shared.now(), clock.now());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopped_clock_moves_only_when_advanced() {
        let clock = TestClock::stopped();
        let start = clock.now();
        tokio::time::advance(Duration::from_secs(5)).await;
        assert_eq!(clock.now(), start);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(
            clock.now().duration_since(start),
            SignedDuration::from_millis(1500)
        );
    }
}
