//! The simulator's clock and event queue. Everything that happens later — a
//! customer finishing, a refund, a callback going out — is an event due at a
//! time on a clock that tests can move forward ([`Clock::advance`]) instead of
//! sleeping. One scheduler task fires due events; events of one payment run
//! one at a time in due order (so a held-back callback really arrives after
//! the one it was held behind), different payments concurrently.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use tokio::time::Instant;

/// Real time plus an offset that only grows.
#[derive(Debug)]
pub(crate) struct Clock {
    start: Instant,
    start_wall: Timestamp,
    offset_ms: AtomicU64,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            start: Instant::now(),
            start_wall: Timestamp::now(),
            offset_ms: AtomicU64::new(0),
        }
    }

    /// Time since start on the simulator's clock.
    pub fn now(&self) -> Duration {
        self.start.elapsed() + Duration::from_millis(self.offset_ms.load(Ordering::Acquire))
    }

    /// Wall-clock time of a point on the simulator's clock.
    pub fn wall_at(&self, at: Duration) -> Timestamp {
        SignedDuration::try_from(at)
            .ok()
            .and_then(|d| self.start_wall.checked_add(d).ok())
            .unwrap_or(self.start_wall)
    }

    /// Wall-clock time now on the simulator's clock.
    pub fn wall_now(&self) -> Timestamp {
        self.wall_at(self.now())
    }

    /// The real instant at which a point on the simulator's clock arrives.
    pub fn real_instant(&self, at: Duration) -> Instant {
        let offset = Duration::from_millis(self.offset_ms.load(Ordering::Acquire));
        self.start + at.saturating_sub(offset)
    }

    /// Moves the clock forward by at least `by`. The offset is kept in whole
    /// milliseconds, so a fraction is rounded up: rounding down would leave
    /// an event due a fraction of a millisecond ahead not yet due.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_nanos().div_ceil(1_000_000)).unwrap_or(u64::MAX / 2);
        self.offset_ms.fetch_add(ms, Ordering::AcqRel);
    }
}

/// Something due at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// The customer finishes paying the payment in this slot.
    Resolve(usize),
    /// The succeeded payment in this slot is refunded (outcome "refund").
    Refund(usize),
    /// Callback `.1` of the payment in slot `.0` goes out.
    Deliver(usize, usize),
    /// `partner.notify` number `.0` goes out.
    PartnerNotify(usize),
}

impl Event {
    /// Events in one lane run one at a time, in due order.
    fn lane(self) -> u64 {
        const PARTNER: u64 = 1 << 62;
        match self {
            Event::Resolve(slot) | Event::Refund(slot) | Event::Deliver(slot, _) => slot as u64,
            Event::PartnerNotify(n) => PARTNER | n as u64,
        }
    }
}

/// Events due together in one lane.
#[derive(Debug)]
pub(crate) struct Batch {
    pub lane: u64,
    pub events: Vec<Event>,
}

/// Due events, and which lanes are busy running.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    events: BTreeMap<(Duration, u64), Event>,
    next_seq: u64,
    busy: HashSet<u64>,
    in_flight: usize,
}

impl Queue {
    pub fn push(&mut self, due: Duration, event: Event) {
        self.next_seq += 1;
        self.events.insert((due, self.next_seq), event);
    }

    /// Takes every due event whose lane is idle, grouped by lane in due order,
    /// and marks those lanes busy. Also returns when the next not-yet-due
    /// event is due.
    pub fn take_due(&mut self, now: Duration) -> (Vec<Batch>, Option<Duration>) {
        let mut batches: Vec<Batch> = Vec::new();
        let mut lane_batch: HashMap<u64, usize> = HashMap::new();
        let mut taken = Vec::new();
        let mut next = None;
        for (&key, &event) in &self.events {
            if key.0 > now {
                next = Some(key.0);
                break;
            }
            let lane = event.lane();
            if self.busy.contains(&lane) {
                continue;
            }
            let index = *lane_batch.entry(lane).or_insert_with(|| {
                batches.push(Batch {
                    lane,
                    events: Vec::new(),
                });
                batches.len() - 1
            });
            if let Some(batch) = batches.get_mut(index) {
                batch.events.push(event);
            }
            taken.push(key);
        }
        for key in taken {
            self.events.remove(&key);
        }
        for batch in &batches {
            self.busy.insert(batch.lane);
        }
        self.in_flight += batches.len();
        (batches, next)
    }

    /// A batch has run; its lane may take the next events.
    pub fn finish(&mut self, lane: u64) {
        self.busy.remove(&lane);
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Nothing is due by `now` and nothing is running.
    pub fn settled(&self, now: Duration) -> bool {
        self.in_flight == 0 && self.events.keys().next().is_none_or(|&(due, _)| due > now)
    }

    /// The latest due time of anything queued.
    pub fn last_due(&self) -> Option<Duration> {
        self.events.keys().next_back().map(|&(due, _)| due)
    }

    /// How many events are queued.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.events.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn takes_due_events_by_lane_in_order() {
        let mut queue = Queue::default();
        queue.push(ms(20), Event::Deliver(1, 1));
        queue.push(ms(10), Event::Deliver(1, 0));
        queue.push(ms(10), Event::Resolve(2));
        queue.push(ms(50), Event::Resolve(3));
        let (batches, next) = queue.take_due(ms(30));
        assert_eq!(next, Some(ms(50)));
        assert_eq!(batches.len(), 2);
        assert_eq!(
            batches[0].events,
            vec![Event::Deliver(1, 0), Event::Deliver(1, 1)]
        );
        assert_eq!(batches[1].events, vec![Event::Resolve(2)]);
        assert!(!queue.settled(ms(30)), "two batches are running");
    }

    #[test]
    fn a_busy_lane_waits_for_its_batch() {
        let mut queue = Queue::default();
        queue.push(ms(1), Event::Deliver(7, 0));
        let (first, _) = queue.take_due(ms(1));
        assert_eq!(first.len(), 1);
        queue.push(ms(1), Event::Deliver(7, 1));
        let (blocked, next) = queue.take_due(ms(2));
        assert!(blocked.is_empty());
        assert_eq!(next, None, "a blocked event is not a wake-up time");
        queue.finish(7);
        let (second, _) = queue.take_due(ms(2));
        assert_eq!(second[0].events, vec![Event::Deliver(7, 1)]);
        queue.finish(7);
        assert!(queue.settled(ms(2)));
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn partner_notifications_have_their_own_lanes() {
        assert_ne!(Event::PartnerNotify(0).lane(), Event::Resolve(0).lane());
        assert_ne!(
            Event::PartnerNotify(0).lane(),
            Event::PartnerNotify(1).lane()
        );
    }

    #[test]
    fn the_clock_advances() {
        let clock = Clock::new();
        let before = clock.now();
        clock.advance(Duration::from_secs(60));
        assert!(clock.now() >= before + Duration::from_secs(60));
        assert!(clock.wall_now() >= clock.wall_at(before) + SignedDuration::from_secs(60));
    }
}
