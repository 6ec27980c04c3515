//! The worker's figures for `/metrics` (served by the receiver's listener
//! in the same process; see `paysettle_receiver::install_metrics`): what the
//! alert rules in `deploy/observability/` watch.
//!
//! Gauges are read from the ledger every few seconds; counters are bumped
//! where things happen. Without a recorder installed (the worker alone)
//! they cost nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use jiff::Timestamp;
use metrics::{counter, gauge};
use paysettle_core::clock::SharedClock;
use paysettle_store::Ledger;
use tokio_util::sync::CancellationToken;

/// Payments by `status`.
pub const PAYMENTS: &str = "paysettle_payments";
/// Payments carrying a mismatch flag.
pub const FLAGGED: &str = "paysettle_payments_flagged";
/// Scheduled payments whose last status check failed, by `provider` and `account`.
pub const CHECKS_FAILING: &str = "paysettle_checks_failing";
/// Outbox events not yet confirmed by the broker.
pub const OUTBOX_UNPUBLISHED: &str = "paysettle_outbox_unpublished";
/// Age of the oldest unpublished outbox event, in seconds (0 when none).
pub const OUTBOX_OLDEST: &str = "paysettle_outbox_oldest_unpublished_seconds";
/// 1 when the ledger could be read at the last look, else 0.
pub const LEDGER_UP: &str = "paysettle_ledger_up";
/// Observations that need a person, by `kind` (`mismatch`, `conflict`).
pub const ATTENTION: &str = "paysettle_worker_attention_total";
/// Callback messages the worker dead-lettered, by `reason` (`unreadable`,
/// `cannot_apply`).
pub const DEAD_LETTERED: &str = "paysettle_worker_dead_lettered_total";

/// How often the gauges are read from the ledger.
pub const REFRESH: Duration = Duration::from_secs(5);

pub(crate) fn attention(kind: &'static str) {
    counter!(ATTENTION, "kind" => kind).increment(1);
}

pub(crate) fn dead_lettered(reason: &'static str) {
    counter!(DEAD_LETTERED, "reason" => reason).increment(1);
}

/// Reads the ledger's figures into the gauges once. `seen` holds the
/// provider/account pairs shown before, so a pair whose checks recovered
/// goes back to 0 instead of keeping its last figure.
pub async fn refresh(ledger: &Ledger, now: Timestamp, seen: &mut BTreeSet<(String, String)>) {
    let counts = ledger.counts().await;
    let health = ledger.health(now).await;
    match (counts, health) {
        (Ok(counts), Ok(health)) => {
            for status in paysettle_core::PaymentStatus::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == status)
                    .map_or(0, |(_, n)| *n);
                gauge!(PAYMENTS, "status" => status.as_str()).set(n as f64);
            }
            gauge!(FLAGGED).set(health.flagged as f64);
            gauge!(OUTBOX_UNPUBLISHED).set(health.unpublished as f64);
            gauge!(OUTBOX_OLDEST).set(health.oldest_unpublished_seconds);
            let mut now_failing = BTreeSet::new();
            for (provider, account, n) in health.failing_checks {
                gauge!(CHECKS_FAILING, "provider" => provider.clone(), "account" => account.clone())
                    .set(n as f64);
                now_failing.insert((provider, account));
            }
            for (provider, account) in seen.difference(&now_failing) {
                gauge!(CHECKS_FAILING, "provider" => provider.clone(), "account" => account.clone())
                    .set(0.0);
            }
            seen.extend(now_failing);
            gauge!(LEDGER_UP).set(1.0);
        }
        (Err(err), _) | (_, Err(err)) => {
            tracing::warn!(error = %err, "cannot read the ledger for /metrics");
            gauge!(LEDGER_UP).set(0.0);
        }
    }
}

/// Refreshes the gauges until `shutdown`.
pub(crate) async fn run(ledger: Ledger, clock: SharedClock, shutdown: CancellationToken) {
    let mut seen = BTreeSet::new();
    loop {
        refresh(&ledger, clock.now(), &mut seen).await;
        tokio::select! {
            () = tokio::time::sleep(REFRESH) => {}
            () = shutdown.cancelled() => return,
        }
    }
}
