//! Driving the load: as fast as the server answers (closed loop), or on a
//! fixed schedule (open loop), over many keep-alive connections, recording
//! each answer's latency in an HDR histogram.
//!
//! Latency at a fixed rate is counted the way a provider would see it. Request
//! `i` is due at `start + i / rate` on connection `i mod connections`. When the
//! connection is still busy at that moment, the request's latency runs from
//! when it was due, so waiting behind a slow answer counts (no coordinated
//! omission). When the connection is free, it runs from when the request was
//! written: the generator's timer wakes up to a millisecond late, and that
//! lateness is the generator's, not the server's.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::conn::Conn;

/// The requests to send, built and signed before the clock starts, sent
/// round robin.
#[derive(Debug)]
pub struct Requests(pub Vec<Vec<u8>>);

impl Requests {
    fn get(&self, n: u64) -> &[u8] {
        let len = self.0.len().max(1) as u64;
        self.0.get((n % len) as usize).map_or(&[], Vec::as_slice)
    }
}

/// How to load the server.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub addr: SocketAddr,
    pub connections: usize,
    /// `None`: as fast as answered; `Some(r)`: `r` requests per second.
    pub rate: Option<f64>,
    /// Sent but not recorded, before the measured window.
    pub warmup: Duration,
    pub measure: Duration,
}

/// What one connection (or the whole run) saw in the measured window.
#[derive(Debug)]
pub struct Tally {
    /// Latencies in microseconds.
    pub histogram: Histogram<u64>,
    pub statuses: BTreeMap<u16, u64>,
    /// Connections that broke or could not be opened, requests lost with them.
    pub errors: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            histogram: new_histogram(),
            statuses: BTreeMap::new(),
            errors: 0,
        }
    }

    fn merge(&mut self, other: Tally) {
        // Same bounds on both sides: adding cannot fail.
        let _ = self.histogram.add(other.histogram);
        for (status, n) in other.statuses {
            *self.statuses.entry(status).or_insert(0) += n;
        }
        self.errors += other.errors;
    }

    /// Answers that mean "accepted and durable": 200 and 303.
    pub fn ok(&self) -> u64 {
        self.statuses
            .iter()
            .filter(|(status, _)| matches!(status, 200 | 303))
            .map(|(_, n)| n)
            .sum()
    }

    pub fn completed(&self) -> u64 {
        self.statuses.values().sum()
    }

    fn record(&mut self, status: u16, latency: Duration) {
        *self.statuses.entry(status).or_insert(0) += 1;
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros.max(1));
    }
}

// Constant bounds that hdrhistogram accepts: this cannot fail.
#[allow(clippy::expect_used)]
fn new_histogram() -> Histogram<u64> {
    // 1 µs to 60 s at three significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Opens the connections, runs the plan, and returns what was seen in the
/// measured window, with the instant the window started.
pub async fn run(plan: Plan, requests: Arc<Requests>) -> std::io::Result<(Tally, Instant)> {
    let mut conns = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections {
        conns.push(Conn::open(plan.addr).await?);
    }
    let start = Instant::now();
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.measure;
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for (index, conn) in conns.into_iter().enumerate() {
        let requests = requests.clone();
        let window = (measure_from, end);
        match plan.rate {
            None => {
                let next = next.clone();
                tasks.spawn(closed_loop(conn, requests, next, window));
            }
            Some(rate) => {
                let schedule = Schedule {
                    start,
                    first: index as u64,
                    every: plan.connections as u64,
                    rate,
                };
                tasks.spawn(open_loop(conn, requests, schedule, window));
            }
        }
    }
    let mut tally = Tally::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(connection_tally) = done {
            tally.merge(connection_tally);
        }
    }
    Ok((tally, measure_from))
}

/// Sends back to back until `end`; records the requests written inside the
/// window.
async fn closed_loop(
    mut conn: Conn,
    requests: Arc<Requests>,
    next: Arc<AtomicU64>,
    (measure_from, end): (Instant, Instant),
) -> Tally {
    let mut tally = Tally::new();
    loop {
        let sent = Instant::now();
        if sent >= end {
            return tally;
        }
        let n = next.fetch_add(1, Ordering::Relaxed);
        let result = conn.exchange(requests.get(n)).await;
        let measured = sent >= measure_from;
        match result {
            Ok(status) if measured => tally.record(status, sent.elapsed()),
            Ok(_) => {}
            Err(_) => {
                if measured {
                    tally.errors += 1;
                }
                // Do not spin on a server that refuses connections.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// One connection's share of a fixed-rate schedule: requests `first`,
/// `first + every`, … each due at `start + n / rate`.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    first: u64,
    every: u64,
    rate: f64,
}

impl Schedule {
    fn due(&self, n: u64) -> Instant {
        self.start + Duration::from_secs_f64(n as f64 / self.rate)
    }
}

async fn open_loop(
    mut conn: Conn,
    requests: Arc<Requests>,
    schedule: Schedule,
    (measure_from, end): (Instant, Instant),
) -> Tally {
    let mut tally = Tally::new();
    let mut n = schedule.first;
    loop {
        let due = schedule.due(n);
        if due >= end {
            return tally;
        }
        let free_at_due = Instant::now() <= due;
        if free_at_due {
            tokio::time::sleep_until(due).await;
        }
        let written = Instant::now();
        let result = conn.exchange(requests.get(n)).await;
        let from = if free_at_due { written } else { due };
        match result {
            Ok(status) if due >= measure_from => tally.record(status, from.elapsed()),
            Ok(_) => {}
            Err(_) if due >= measure_from => tally.errors += 1,
            Err(_) => {}
        }
        n += schedule.every;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_only_200_and_303_as_accepted() {
        let mut tally = Tally::new();
        tally.record(200, Duration::from_micros(900));
        tally.record(303, Duration::from_millis(2));
        tally.record(401, Duration::from_millis(1));
        let mut other = Tally::new();
        other.record(503, Duration::from_millis(30));
        other.errors = 2;
        tally.merge(other);
        assert_eq!((tally.ok(), tally.completed(), tally.errors), (2, 4, 2));
        assert_eq!(tally.histogram.len(), 4);
        assert!(tally.histogram.max() >= 29_000);
    }

    #[test]
    fn a_connection_takes_every_nth_request_on_time() {
        let start = Instant::now();
        let schedule = Schedule {
            start,
            first: 3,
            every: 4,
            rate: 1000.0,
        };
        assert_eq!(schedule.due(3) - start, Duration::from_millis(3));
        assert_eq!(schedule.due(7) - start, Duration::from_millis(7));
    }
}
