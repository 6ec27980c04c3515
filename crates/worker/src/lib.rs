//! paysettle's worker: it turns callbacks that get lost, arrive twice, arrive
//! out of order or carry no proof into a ledger finance can trust.
//!
//! - [`apply`]: [`Applier`] consumes callback messages in batches, applies
//!   them with group commit and acks after the commit.
//! - [`poll`]: [`Poller`] asks providers about every unsettled payment on its
//!   backoff schedule until it is final or stale.
//! - [`status`]: [`StatusClient`], the HTTP side of a check (Portmanat
//!   `/check`, PaySys `check_payment`) with per-provider concurrency, rate
//!   limits and `Retry-After`.
//! - [`relay`]: [`Relay`] publishes outbox events with confirms.
//! - [`shop`]: the shop API.
//! - [`settings`]: the worker's settings ([`WorkerSettings`]).
//!
//! Each part is a step (`run_once`) with a thin loop around it in
//! [`run`], so tests drive the steps until idle instead of sleeping.

pub mod apply;
mod error;
pub mod poll;
pub mod relay;
pub mod settings;
pub mod shop;
pub mod status;

use std::sync::Arc;

use paysettle_queue::Queue;
use paysettle_store::Ledger;
use tokio_util::sync::CancellationToken;

pub use apply::{Applier, ApplyRound};
pub use error::WorkerError;
pub use poll::{PollRound, Poller};
pub use relay::{Relay, RelayRound};
pub use settings::{PaysysAccess, PortmanatAccess, ProviderLimits, WorkerSettings};
pub use status::{CheckResult, StatusClient};

/// Runs the applier, the poller and the relay until `shutdown` fires, then
/// stops taking work, finishes (or abandons, unacked) the batch in hand and
/// flushes the relay within the grace period.
pub async fn run(
    ledger: Ledger,
    queue: Queue,
    settings: Arc<WorkerSettings>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let client = StatusClient::new(Arc::clone(&settings))?;
    let relay = Relay::new(ledger.clone(), queue.clone(), settings.relay_batch);
    let mut applier = Applier::new(
        ledger.clone(),
        queue.clone(),
        client.clone(),
        Arc::clone(&settings),
        relay.waker(),
    )?;
    let mut poller = Poller::new(ledger.clone(), client, Arc::clone(&settings));
    let grace = settings.shutdown_grace;

    let apply_stop = shutdown.clone();
    let apply_task = tokio::spawn(async move {
        while !apply_stop.is_cancelled() {
            // A batch in hand is finished before the token is looked at again;
            // the wait for a new one is what gets interrupted.
            match applier.run_once().await {
                Ok(_) => {}
                Err(err) => {
                    tracing::error!(error = %err, "applier step failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(std::time::Duration::from_millis(500)) => {}
                        () = apply_stop.cancelled() => {}
                    }
                }
            }
        }
    });

    let poll_stop = shutdown.clone();
    let poll_idle = settings.poll_idle;
    let poll_task = tokio::spawn(async move {
        while !poll_stop.is_cancelled() {
            match poller.run_once().await {
                Ok(round) if round.started > 0 => continue,
                Ok(_) => {}
                Err(err) => tracing::error!(error = %err, "poller step failed; retrying"),
            }
            tokio::select! {
                () = poller.wait_one(), if poller.busy() => {}
                () = tokio::time::sleep(poll_idle) => {}
                () = poll_stop.cancelled() => {}
            }
        }
        poller.drain(grace).await;
    });

    let relay_stop = shutdown.clone();
    let relay_interval = settings.relay_interval;
    let relay_loop = relay.clone();
    let relay_task = tokio::spawn(async move {
        while !relay_stop.is_cancelled() {
            match relay_loop.run_once().await {
                Ok(round) if round.published > 0 => continue,
                Ok(_) => {}
                Err(err) => tracing::error!(error = %err, "relay step failed; retrying"),
            }
            tokio::select! {
                () = relay_loop.idle(relay_interval) => {}
                () = relay_stop.cancelled() => {}
            }
        }
    });

    shutdown.cancelled().await;
    let deadline = tokio::time::Instant::now() + grace;
    for (name, task) in [("applier", apply_task), ("poller", poll_task)] {
        if tokio::time::timeout_at(deadline, task).await.is_err() {
            tracing::warn!(part = name, "did not stop within the grace period");
        }
    }
    let _ = relay_task.await;
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
