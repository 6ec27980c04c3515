//! The gate Portmanat's return hints pass before they are queued.
//!
//! A hint is unsigned: anyone can send one, and each queued hint costs the
//! worker a `/check` at Portmanat's rate. So a hint is never worth more than
//! one check: the same `psp_rrn` (or, without one, `client_rrn`) within the
//! window is one hint, and hints are rate-limited per client address and
//! overall. A hint the gate drops is counted by reason; the browser still
//! gets its redirect to the shop's result page (the payment is checked on
//! its schedule all the same).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// Why a hint was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// The same payment was hinted within the window.
    Duplicate,
    /// This client address sent hints faster than its rate.
    ClientRate,
    /// Hints arrive faster than the overall rate.
    Rate,
}

impl Dropped {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Dropped::Duplicate => "duplicate",
            Dropped::ClientRate => "client_rate",
            Dropped::Rate => "rate",
        }
    }
}

/// The gate's limits.
#[derive(Debug, Clone, Copy)]
pub struct HintLimits {
    /// Within this window one payment is hinted once.
    pub dedupe_window: Duration,
    /// Hints queued per second, all clients together (and twice as many in a
    /// burst).
    pub per_sec: f64,
    /// Hints queued per second from one client address (a browser returns
    /// once; five in a burst).
    pub per_client_per_sec: f64,
}

impl Default for HintLimits {
    fn default() -> Self {
        HintLimits {
            dedupe_window: Duration::from_secs(600),
            per_sec: 20.0,
            per_client_per_sec: 1.0,
        }
    }
}

/// Client buckets kept at most; beyond, full (idle) ones are forgotten.
const MAX_CLIENTS: usize = 16_384;
/// A client's burst, at least (twice its rate when that is more).
const CLIENT_BURST: f64 = 5.0;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(burst: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: burst,
            at: now,
        }
    }

    fn refill(&mut self, rate: f64, burst: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(burst);
        self.at = now;
    }
}

#[derive(Debug)]
struct State {
    /// Hinted keys and when, oldest first.
    seen: HashMap<String, Instant>,
    order: VecDeque<(Instant, String)>,
    clients: HashMap<IpAddr, Bucket>,
    overall: Bucket,
}

/// The gate, shared by every connection.
#[derive(Debug)]
pub(crate) struct HintGate {
    limits: HintLimits,
    /// Keys remembered at most: what the overall rate can admit in a window.
    max_seen: usize,
    state: Mutex<State>,
}

impl HintGate {
    pub(crate) fn new(limits: HintLimits) -> HintGate {
        let now = Instant::now();
        let in_window = limits.per_sec * limits.dedupe_window.as_secs_f64() + 2.0 * limits.per_sec;
        HintGate {
            limits,
            max_seen: (in_window as usize).clamp(1024, 1 << 20),
            state: Mutex::new(State {
                seen: HashMap::new(),
                order: VecDeque::new(),
                clients: HashMap::new(),
                overall: Bucket::full(2.0 * limits.per_sec, now),
            }),
        }
    }

    /// Whether a hint for `key` from `client` is queued; a queued key is
    /// remembered for the window.
    pub(crate) fn admit(&self, client: IpAddr, key: &str) -> Result<(), Dropped> {
        let now = Instant::now();
        let limits = self.limits;
        let client_burst = CLIENT_BURST.max(2.0 * limits.per_client_per_sec);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        // Forget what has left the window.
        while let Some((at, _)) = state.order.front() {
            if now.saturating_duration_since(*at) < limits.dedupe_window
                && state.order.len() < self.max_seen
            {
                break;
            }
            if let Some((at, old)) = state.order.pop_front()
                && state.seen.get(&old) == Some(&at)
            {
                state.seen.remove(&old);
            }
        }
        if state.seen.contains_key(key) {
            return Err(Dropped::Duplicate);
        }
        if state.clients.len() >= MAX_CLIENTS && !state.clients.contains_key(&client) {
            let rate = limits.per_client_per_sec;
            state.clients.retain(|_, bucket| {
                bucket.refill(rate, client_burst, now);
                bucket.tokens < client_burst
            });
            if state.clients.len() >= MAX_CLIENTS {
                return Err(Dropped::ClientRate);
            }
        }
        let mut mine = state
            .clients
            .get(&client)
            .copied()
            .unwrap_or_else(|| Bucket::full(client_burst, now));
        mine.refill(limits.per_client_per_sec, client_burst, now);
        if mine.tokens < 1.0 {
            state.clients.insert(client, mine);
            return Err(Dropped::ClientRate);
        }
        let mut overall = state.overall;
        overall.refill(limits.per_sec, 2.0 * limits.per_sec, now);
        if overall.tokens < 1.0 {
            state.overall = overall;
            state.clients.insert(client, mine);
            return Err(Dropped::Rate);
        }
        mine.tokens -= 1.0;
        overall.tokens -= 1.0;
        state.overall = overall;
        state.clients.insert(client, mine);
        state.seen.insert(key.to_owned(), now);
        state.order.push_back((now, key.to_owned()));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, n])
    }

    #[tokio::test(start_paused = true)]
    async fn one_payment_is_hinted_once_per_window() {
        let gate = HintGate::new(HintLimits::default());
        gate.admit(ip(1), "P-1").unwrap();
        assert_eq!(gate.admit(ip(2), "P-1"), Err(Dropped::Duplicate));
        tokio::time::advance(Duration::from_secs(601)).await;
        gate.admit(ip(2), "P-1").unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_client_and_everyone_are_rate_limited() {
        let gate = HintGate::new(HintLimits {
            per_sec: 10.0,
            ..HintLimits::default()
        });
        for n in 0..5 {
            gate.admit(ip(1), &format!("A-{n}")).unwrap();
        }
        assert_eq!(gate.admit(ip(1), "A-5"), Err(Dropped::ClientRate));
        // Others share the overall burst of 20: 15 more, then none.
        let mut admitted = 0;
        for n in 0..40u8 {
            if gate.admit(ip(10 + n), &format!("B-{n}")).is_ok() {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 15);
        assert_eq!(gate.admit(ip(100), "C-1"), Err(Dropped::Rate));
        tokio::time::advance(Duration::from_secs(1)).await;
        gate.admit(ip(1), "A-6").unwrap();
    }
}
