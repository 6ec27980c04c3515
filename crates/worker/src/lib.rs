//! paysettle's worker: it turns callbacks that get lost, arrive twice, arrive
//! out of order or carry no proof into a ledger finance can trust.
//!
//! - [`apply`]: [`Applier`] consumes callback messages in batches, applies
//!   them with group commit and acks after the commit.
//! - [`hints`]: [`HintLane`] consumes the hints queue: Portmanat's return
//!   hints, checked concurrently apart from signed callbacks.
//! - [`poll`]: [`Poller`] asks providers about every unsettled payment on its
//!   backoff schedule until it is final or stale.
//! - [`status`]: [`StatusClient`], the HTTP side of a check (Portmanat
//!   `/check`, PaySys `check_payment`) with per-provider concurrency, rate
//!   limits and `Retry-After`.
//! - [`relay`]: [`Relay`] publishes outbox events with confirms.
//! - [`shop`]: the shop API.
//! - [`outcome`]: what the ledger made of an observation, logged at the
//!   level it deserves (a flag or a conflict is WARN).
//! - [`feed`]: the shop API's feeds of settled events and card registrations.
//! - [`telemetry`]: the worker's figures for `/metrics`.
//! - [`settings`]: the worker's settings ([`WorkerSettings`]).
//!
//! Each part is a step (`run_once`) with a thin loop around it in
//! [`run`], so tests drive the steps until idle instead of sleeping.

pub mod apply;
mod error;
pub mod feed;
pub mod hints;
pub mod outcome;
pub mod poll;
pub mod relay;
pub mod settings;
pub mod shop;
pub mod status;
pub mod telemetry;

use std::sync::Arc;

use paysettle_queue::Queue;
use paysettle_store::Ledger;
use tokio_util::sync::CancellationToken;

pub use apply::{Applier, ApplyRound};
pub use error::WorkerError;
pub use hints::HintLane;
pub use poll::{PollRound, Poller};
pub use relay::{Relay, RelayRound};
pub use settings::{PaysysAccess, PortmanatAccess, ProviderLimits, WorkerSettings};
pub use status::{CheckResult, StatusClient};

/// Paces the retries of a loop step that keeps failing (the ledger or the
/// broker away): exponential with jitter, from 100 ms to 10 s, back to the
/// start after a success. Not for provider polling, whose schedule must
/// survive restarts and so lives in the ledger.
struct StepBackoff {
    builder: backon::ExponentialBuilder,
    current: backon::ExponentialBackoff,
}

impl StepBackoff {
    fn new() -> StepBackoff {
        use backon::BackoffBuilder as _;
        let builder = backon::ExponentialBuilder::default()
            .with_min_delay(std::time::Duration::from_millis(100))
            .with_max_delay(std::time::Duration::from_secs(10))
            .with_jitter()
            .without_max_times();
        StepBackoff {
            current: builder.build(),
            builder,
        }
    }

    /// The wait before the next try.
    fn failed(&mut self) -> std::time::Duration {
        self.current
            .next()
            .unwrap_or(std::time::Duration::from_secs(10))
    }

    fn succeeded(&mut self) {
        use backon::BackoffBuilder as _;
        self.current = self.builder.build();
    }
}

/// Runs the applier, the poller and the relay until `shutdown` fires, then
/// stops taking work, finishes (or abandons, unacked) the batch in hand and
/// flushes the relay within the grace period.
pub async fn run(
    ledger: Ledger,
    queue: Queue,
    settings: Arc<WorkerSettings>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let mut client = StatusClient::new(Arc::clone(&settings))?;
    if ledger.is_shared() {
        client = client.sharing_rate_with(ledger.clone());
    }
    let relay = Relay::new(ledger.clone(), queue.clone(), settings.relay_batch)
        .signing(settings.handoff.clone())
        .claiming(
            settings.owner.clone(),
            settings.claim_lease,
            settings.clock.clone(),
        );
    let mut applier = Applier::new(
        ledger.clone(),
        queue.clone(),
        client.clone(),
        Arc::clone(&settings),
        relay.waker(),
    )?;
    let mut hint_lane = applier.hint_lane()?;
    let mut poller = Poller::new(ledger.clone(), client, Arc::clone(&settings));
    let grace = settings.shutdown_grace;

    let hint_stop = shutdown.clone();
    let hint_task = tokio::spawn(async move {
        let mut backoff = StepBackoff::new();
        while !hint_stop.is_cancelled() {
            match hint_lane.run_once().await {
                Ok(_) => backoff.succeeded(),
                Err(err) => {
                    let wait = backoff.failed();
                    tracing::error!(error = %err, retry_in_ms = wait.as_millis() as u64, "hint lane step failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = hint_stop.cancelled() => {}
                    }
                }
            }
        }
        hint_lane.finish().await;
    });

    let apply_stop = shutdown.clone();
    let apply_task = tokio::spawn(async move {
        let mut backoff = StepBackoff::new();
        while !apply_stop.is_cancelled() {
            // A batch in hand is finished before the token is looked at again;
            // the wait for a new one is what gets interrupted.
            match applier.run_once().await {
                Ok(_) => backoff.succeeded(),
                Err(err) => {
                    let wait = backoff.failed();
                    tracing::error!(error = %err, retry_in_ms = wait.as_millis() as u64, "applier step failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = apply_stop.cancelled() => {}
                    }
                }
            }
        }
        applier.finish().await;
    });

    let poll_stop = shutdown.clone();
    let poll_idle = settings.poll_idle;
    let poll_task = tokio::spawn(async move {
        let mut backoff = StepBackoff::new();
        while !poll_stop.is_cancelled() {
            let pause = match poller.run_once().await {
                Ok(round) if round.started > 0 => {
                    backoff.succeeded();
                    continue;
                }
                Ok(_) => {
                    backoff.succeeded();
                    poll_idle
                }
                Err(err) => {
                    let wait = backoff.failed();
                    tracing::error!(error = %err, retry_in_ms = wait.as_millis() as u64, "poller step failed; retrying");
                    wait
                }
            };
            tokio::select! {
                () = poller.wait_one(), if poller.busy() => {}
                () = tokio::time::sleep(pause) => {}
                () = poll_stop.cancelled() => {}
            }
        }
        poller.drain(grace).await;
    });

    let figures = tokio::spawn(telemetry::run(
        ledger.clone(),
        settings.clock.clone(),
        shutdown.clone(),
    ));

    let relay_stop = shutdown.clone();
    let relay_interval = settings.relay_interval;
    let relay_loop = relay.clone();
    let relay_task = tokio::spawn(async move {
        let mut backoff = StepBackoff::new();
        while !relay_stop.is_cancelled() {
            let pause = match relay_loop.run_once().await {
                Ok(round) if round.published > 0 && round.failed == 0 => {
                    backoff.succeeded();
                    continue;
                }
                Ok(round) if round.failed > 0 => {
                    let wait = backoff.failed();
                    // The relay has said what failed; this says when it retries.
                    tracing::info!(
                        failed = round.failed,
                        retry_in_ms = wait.as_millis() as u64,
                        "relay retrying"
                    );
                    wait
                }
                Ok(_) => {
                    backoff.succeeded();
                    relay_interval
                }
                Err(err) => {
                    let wait = backoff.failed();
                    tracing::error!(error = %err, retry_in_ms = wait.as_millis() as u64, "relay step failed; retrying");
                    wait
                }
            };
            tokio::select! {
                () = relay_loop.idle(pause) => {}
                () = relay_stop.cancelled() => {}
            }
        }
    });

    shutdown.cancelled().await;
    let deadline = tokio::time::Instant::now() + grace;
    for (name, task) in [
        ("applier", apply_task),
        ("hint lane", hint_task),
        ("poller", poll_task),
    ] {
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            tracing::warn!(part = name, "did not stop within the grace period");
        }
    }
    let _ = relay_task.await;
    let _ = figures.await;
    // Flush what the last batches wrote, within what is left of the grace.
    match tokio::time::timeout_at(deadline, relay.run_until_idle()).await {
        Ok(Ok(sent)) => tracing::info!(events = sent, "relay flushed at shutdown"),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "relay flush at shutdown failed; events stay in the outbox")
        }
        Err(_) => {
            tracing::warn!("relay flush cut off by the grace period; events stay in the outbox")
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn step_retries_grow_to_a_cap_and_start_over_after_a_success() {
        let mut backoff = StepBackoff::new();
        let waits: Vec<Duration> = (0..12).map(|_| backoff.failed()).collect();
        assert!(
            waits[0] >= Duration::from_millis(100) && waits[0] <= Duration::from_millis(200),
            "{waits:?}"
        );
        assert!(waits[5] > waits[0], "{waits:?}");
        assert!(
            waits.iter().all(|w| *w <= Duration::from_secs(20)),
            "capped (jitter may add up to one delay): {waits:?}"
        );
        backoff.succeeded();
        assert!(backoff.failed() <= Duration::from_millis(200));
    }
}
