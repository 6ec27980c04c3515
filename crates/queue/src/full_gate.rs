//! A full hints queue is not asked again for every hint.
//!
//! RabbitMQ refuses a publish to a full quorum queue (`x-overflow =
//! reject-publish`) only after the publish has gone through the queue's
//! log: each refused hint costs the broker about what a stored callback
//! does. Under a flood of unsigned hints that work is taken from the
//! genuine callbacks sharing the broker (the "under attack" benchmark saw
//! the broker's CPU per genuine callback go from 56 to 136 µs). So once
//! the broker has said the hints queue is full, the hints that come within
//! [`FullGate::HOLD`] are refused here, counted as refused, without a
//! publish; the first one after it asks the broker again. A hint is only a
//! reason to check a payment sooner, and a refused one still redirects the
//! browser, so refusing a few more of them, at most `HOLD` after the queue
//! had room again, costs nothing that matters.

use std::sync::Mutex;
use std::sync::PoisonError;
use std::time::Duration;

use tokio::time::Instant;

/// Whether the hints queue was full a moment ago.
#[derive(Debug, Default)]
pub(crate) struct FullGate {
    until: Mutex<Option<Instant>>,
}

impl FullGate {
    /// How long a "full" answer is believed.
    pub(crate) const HOLD: Duration = Duration::from_millis(250);

    /// Whether a hint arriving at `now` is refused without asking.
    pub(crate) fn refuses(&self, now: Instant) -> bool {
        self.until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| now < until)
    }

    /// The broker said full at `now`.
    pub(crate) fn full(&self, now: Instant) {
        *self.until.lock().unwrap_or_else(PoisonError::into_inner) = Some(now + Self::HOLD);
    }

    /// The broker took a hint: there is room.
    pub(crate) fn room(&self) {
        *self.until.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_answer_is_believed_for_the_hold_then_asked_again() {
        let gate = FullGate::default();
        let t0 = Instant::now();
        assert!(!gate.refuses(t0), "nothing known: ask");
        gate.full(t0);
        assert!(gate.refuses(t0));
        assert!(gate.refuses(t0 + FullGate::HOLD - Duration::from_millis(1)));
        assert!(!gate.refuses(t0 + FullGate::HOLD), "after the hold: ask");
        // Full again when asked: another hold from then.
        gate.full(t0 + FullGate::HOLD);
        assert!(gate.refuses(t0 + FullGate::HOLD + Duration::from_millis(100)));
        // Room: ask at once.
        gate.room();
        assert!(!gate.refuses(t0 + FullGate::HOLD + Duration::from_millis(100)));
    }
}
