//! `/metrics`: the process-wide Prometheus recorder and the receiver's
//! metrics.
//!
//! The `metrics` facade has one global recorder per process. The receiver
//! installs a Prometheus recorder on first use (a `OnceLock`), and every
//! receiver in the process, several in one test binary included, records
//! into it and renders it. A binary that wants its other parts' metrics on
//! the same page calls [`install_metrics`] before starting them. Queue
//! figures are read from [`Queue`] at scrape time, since the queue crate
//! keeps plain counters rather than depend on a metrics library.

use std::sync::OnceLock;
use std::time::Duration;

use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use paysettle_queue::Queue;

use crate::error::ReceiverError;

/// Requests by `provider`, `route` and `outcome`.
pub const REQUESTS: &str = "paysettle_receiver_requests_total";
/// Request latency by `provider` and `route`, from headers read to answer
/// ready, publishing included.
pub const REQUEST_DURATION: &str = "paysettle_receiver_request_duration_seconds";
/// Refused callbacks by `provider` and `reason`.
pub const VERIFICATION_FAILURES: &str = "paysettle_receiver_verification_failures_total";
/// Publishes of accepted callbacks by `outcome` (`broker`, `spooled`,
/// `embedded`, `failed`).
pub const PUBLISHES: &str = "paysettle_receiver_publishes_total";
/// How long publishing took, by `outcome`.
pub const PUBLISH_DURATION: &str = "paysettle_receiver_publish_duration_seconds";
/// Connections being served.
pub const CONNECTIONS_OPEN: &str = "paysettle_receiver_connections_open";
/// Connections closed by the receiver, by `reason`: `first_request` (no
/// request started in time), `idle` (none in flight for the idle timeout),
/// `max_age`.
pub const CONNECTION_TIMEOUTS: &str = "paysettle_receiver_connection_timeouts_total";
/// Connections closed unanswered on arrival, by `reason`: `client_share`
/// (the address holds its share), `capacity` (full, and the newcomer is
/// among the heaviest).
pub const CONNECTIONS_REFUSED: &str = "paysettle_receiver_connections_refused_total";
/// Connections closed to make room for another client's.
pub const CONNECTIONS_EVICTED: &str = "paysettle_receiver_connections_evicted_total";
/// Portmanat hints answered (the browser redirected) but not queued, by
/// `reason`: `duplicate`, `client_rate`, `rate`.
pub const HINTS_DROPPED: &str = "paysettle_receiver_hints_dropped_total";
/// Bytes of request bodies reserved by the requests reading them.
pub const BODY_BYTES_IN_FLIGHT: &str = "paysettle_receiver_body_bytes_in_flight";
/// Requests answered 503 before their body was read because the body
/// budget was spent, by `scope` (`client`, `total`).
pub const BODY_BUDGET_EXHAUSTED: &str = "paysettle_receiver_body_budget_exhausted_total";
/// Callbacks waiting in the spool for RabbitMQ.
pub const SPOOL_DEPTH: &str = "paysettle_queue_spool_depth";
/// 1 when a publish would be durable now (broker or spool), else 0.
pub const QUEUE_DURABLE: &str = "paysettle_queue_durable";
/// 1 when RabbitMQ is connected and confirming, else 0.
pub const BROKER_HEALTHY: &str = "paysettle_queue_broker_healthy";
/// The queue's own counters, by `counter`.
pub const QUEUE_EVENTS: &str = "paysettle_queue_events_total";

/// Latency buckets in seconds: fine below 10 ms, where a healthy receiver
/// lives, coarse up to the confirm timeout.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often histogram samples are folded into buckets between scrapes, so
/// memory stays flat under load whether or not anyone scrapes.
pub(crate) const UPKEEP_INTERVAL: Duration = Duration::from_secs(1);

static RECORDER: OnceLock<Result<PrometheusHandle, String>> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once) and returns its
/// handle. Fails if another global recorder was installed first.
pub fn install_metrics() -> Result<PrometheusHandle, ReceiverError> {
    RECORDER
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|e| e.to_string())?;
            describe();
            Ok(handle)
        })
        .clone()
        .map_err(ReceiverError::Metrics)
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS, "Requests by provider, route and outcome.");
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "Request latency, publishing included."
    );
    describe_counter!(
        VERIFICATION_FAILURES,
        "Refused callbacks by provider and reason."
    );
    describe_counter!(PUBLISHES, "Publishes of accepted callbacks by outcome.");
    describe_histogram!(
        PUBLISH_DURATION,
        Unit::Seconds,
        "Publish latency by outcome."
    );
    describe_gauge!(CONNECTIONS_OPEN, "Connections being served.");
    describe_counter!(
        CONNECTION_TIMEOUTS,
        "Connections closed by the receiver, by reason."
    );
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections closed unanswered on arrival, by reason."
    );
    describe_counter!(
        CONNECTIONS_EVICTED,
        "Connections closed to make room for another client's."
    );
    describe_counter!(
        HINTS_DROPPED,
        "Portmanat hints answered but not queued, by reason."
    );
    describe_gauge!(
        BODY_BYTES_IN_FLIGHT,
        "Bytes of request bodies reserved by the requests reading them."
    );
    describe_counter!(
        BODY_BUDGET_EXHAUSTED,
        "Requests refused before their body was read: the body budget was spent."
    );
    describe_gauge!(SPOOL_DEPTH, "Callbacks waiting in the spool for RabbitMQ.");
    describe_gauge!(QUEUE_DURABLE, "1 when a publish would be durable now.");
    describe_gauge!(
        BROKER_HEALTHY,
        "1 when RabbitMQ is connected and confirming."
    );
    describe_counter!(QUEUE_EVENTS, "The queue's counters since start.");
}

pub(crate) fn request(
    provider: &'static str,
    route: &'static str,
    outcome: &'static str,
    took: Duration,
) {
    counter!(REQUESTS, "provider" => provider, "route" => route, "outcome" => outcome).increment(1);
    histogram!(REQUEST_DURATION, "provider" => provider, "route" => route).record(took);
}

pub(crate) fn verification_failure(provider: &'static str, reason: &'static str) {
    counter!(VERIFICATION_FAILURES, "provider" => provider, "reason" => reason).increment(1);
}

pub(crate) fn publish(outcome: &'static str, took: Duration) {
    counter!(PUBLISHES, "outcome" => outcome).increment(1);
    histogram!(PUBLISH_DURATION, "outcome" => outcome).record(took);
}

pub(crate) fn hint_dropped(reason: &'static str) {
    counter!(HINTS_DROPPED, "reason" => reason).increment(1);
}

pub(crate) fn body_bytes_reserved(bytes: usize, reserved: bool) {
    if reserved {
        gauge!(BODY_BYTES_IN_FLIGHT).increment(bytes as f64);
    } else {
        gauge!(BODY_BYTES_IN_FLIGHT).decrement(bytes as f64);
    }
}

pub(crate) fn body_budget_exhausted(scope: &'static str) {
    counter!(BODY_BUDGET_EXHAUSTED, "scope" => scope).increment(1);
}

/// Reads the queue's state into gauges and renders the page.
pub(crate) async fn render(handle: &PrometheusHandle, queue: &Queue) -> String {
    match queue.spool_depth().await {
        Ok(depth) => gauge!(SPOOL_DEPTH).set(depth as f64),
        Err(e) => tracing::warn!(error = %e, "cannot read the spool depth"),
    }
    gauge!(QUEUE_DURABLE).set(if queue.is_durable() { 1.0 } else { 0.0 });
    gauge!(BROKER_HEALTHY).set(if queue.is_broker_healthy() { 1.0 } else { 0.0 });
    let stats = queue.stats();
    for (name, value) in [
        ("published_broker", stats.published_broker),
        ("published_spooled", stats.published_spooled),
        ("published_embedded", stats.published_embedded),
        ("publish_failed", stats.publish_failed),
        ("hints_refused", stats.hints_refused),
        ("hints_refused_unasked", stats.hints_refused_unasked),
        ("forwarded", stats.forwarded),
        ("reconnects", stats.reconnects),
        ("events_published", stats.events_published),
        ("events_failed", stats.events_failed),
        ("dead_lettered", stats.dead_lettered),
    ] {
        counter!(QUEUE_EVENTS, "counter" => name).absolute(value);
    }
    handle.run_upkeep();
    handle.render()
}
