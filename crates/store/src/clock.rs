//! The product's clock: the system's wall clock, what the ledger and the
//! worker read unless a test gives them another [`Clock`].

use jiff::Timestamp;
use paysettle_core::clock::{Clock, SharedClock};

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl SystemClock {
    /// The wall clock as a [`SharedClock`].
    pub fn shared() -> SharedClock {
        std::sync::Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}
