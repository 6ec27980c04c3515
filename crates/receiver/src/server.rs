//! The listener: the receiver's service behind `paysettle-door` (connection
//! limits per listener and per client, idle and age timeouts, HTTP/2 limits
//! sized to the body limit), draining on shutdown with a deadline.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::service::service_fn;
use paysettle_door::DoorSettings;
use paysettle_door::settings::Http2Limits;
use paysettle_queue::Queue;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::budget::BodyBudget;
use crate::error::ReceiverError;
use crate::hints::HintGate;
use crate::service::Receiver;
use crate::settings::ReceiverSettings;
use crate::telemetry;

/// HTTP/1 read buffer: bounds a request head (a larger one gets 431). The
/// body limit is separate and enforced while reading the body.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Serves callbacks on `listener` until `shutdown` is cancelled, then stops
/// accepting, lets requests in flight finish and publishes in flight become
/// durable within `settings.shutdown_grace`, drops whatever is left, and
/// returns.
///
/// Every accepted callback is published to `queue` and durable (broker
/// confirm, spool or embedded file) before it is answered; when it cannot be
/// made durable anywhere the answer is 503 and nothing is claimed.
#[tracing::instrument(name = "receiver", skip_all, fields(addr))]
pub async fn run(
    listener: TcpListener,
    settings: Arc<ReceiverSettings>,
    queue: Queue,
    shutdown: CancellationToken,
) -> Result<(), ReceiverError> {
    settings.validate()?;
    let metrics = telemetry::install_metrics()?;
    let addr = listener.local_addr().map_err(ReceiverError::Listener)?;
    tracing::Span::current().record("addr", tracing::field::display(addr));
    let receiver = Arc::new(Receiver {
        settings: settings.clone(),
        queue,
        publishes: TaskTracker::new(),
        budget: BodyBudget::new(settings.body_budget_bytes, settings.body_budget_per_client),
        hints: HintGate::new(settings.hints),
    });
    let upkeep = tokio::spawn({
        let stop = shutdown.clone();
        async move {
            let mut tick = tokio::time::interval(telemetry::UPKEEP_INTERVAL);
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    // Off the workers: folding a second of histogram
                    // samples must not stall a request behind it.
                    _ = tick.tick() => {
                        let metrics = metrics.clone();
                        let _ = tokio::task::spawn_blocking(move || metrics.run_upkeep()).await;
                    }
                }
            }
        }
    });
    tracing::info!(
        %addr,
        paysys_accounts = settings.paysys.len(),
        plutu_accounts = settings.plutu.len(),
        portmanat_accounts = settings.portmanat.len(),
        "receiver listening"
    );

    let service = |peer: SocketAddr| {
        let receiver = receiver.clone();
        service_fn(move |request| {
            let receiver = receiver.clone();
            async move { Ok::<_, Infallible>(receiver.handle(request, peer).await) }
        })
    };
    let drained =
        paysettle_door::serve(listener, door_settings(&settings), service, shutdown).await;
    // What the connections left running: publishes of callbacks whose
    // provider hung up, given a grace period of their own.
    receiver.publishes.close();
    let published = tokio::time::timeout(settings.shutdown_grace, receiver.publishes.wait()).await;
    if drained.dropped > 0 || published.is_err() {
        tracing::warn!(
            connections = drained.dropped,
            publishes = receiver.publishes.len(),
            "grace period over; what was left was dropped (those callbacks were not answered)"
        );
    }
    upkeep.abort();
    tracing::info!("receiver stopped");
    Ok(())
}

/// The door's limits from the receiver's settings: HTTP/2 windows sized to
/// the body limit, metrics under `paysettle_receiver_`.
fn door_settings(settings: &ReceiverSettings) -> DoorSettings {
    let mut door = DoorSettings::new("receiver", "paysettle_receiver", settings.max_body_bytes);
    door.max_connections = settings.max_connections;
    door.max_per_client = settings.max_connections_per_client;
    door.first_request_timeout = settings.header_read_timeout;
    door.idle_timeout = settings.idle_timeout;
    door.max_connection_age = settings.max_connection_age;
    door.close_grace = settings.body_read_timeout;
    door.shutdown_grace = settings.shutdown_grace;
    door.max_head_bytes = MAX_HEAD_BYTES;
    door.http2 = Http2Limits::for_body_limit(
        settings.max_body_bytes,
        settings.http2_max_concurrent_streams,
    );
    door
}
