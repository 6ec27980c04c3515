//! `/metrics` on a listener of its own: the figures describe the shop's
//! payments (volume by provider and outcome), so they are not served on the
//! public callback port. The binary binds it to loopback by default.

use std::convert::Infallible;
use std::time::Duration;

use http::{Method, Request};
use hyper::body::Incoming;
use hyper::service::service_fn;
use paysettle_door::DoorSettings;
use paysettle_queue::Queue;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::answer::{Answer, HttpResponse, Refusal, respond};
use crate::error::ReceiverError;
use crate::telemetry;

const GET_HEAD: &[Method] = &[Method::GET, Method::HEAD];

/// Serves `GET /metrics` (the process-wide Prometheus page, queue figures
/// included) on `listener` until `shutdown`; every other path is 404.
pub async fn serve_metrics(
    listener: TcpListener,
    queue: Queue,
    shutdown: CancellationToken,
) -> Result<(), ReceiverError> {
    let handle = telemetry::install_metrics()?;
    let mut door = DoorSettings::new("metrics", "paysettle_metrics", 1024);
    door.max_connections = 32;
    door.max_per_client = 16;
    door.shutdown_grace = Duration::from_secs(2);
    let service = |_peer| {
        let (handle, queue) = (handle.clone(), queue.clone());
        service_fn(move |request: Request<Incoming>| {
            let (handle, queue) = (handle.clone(), queue.clone());
            async move { Ok::<_, Infallible>(answer(&request, &handle, &queue).await) }
        })
    };
    paysettle_door::serve(listener, door, service, shutdown).await;
    Ok(())
}

async fn answer(
    request: &Request<Incoming>,
    handle: &metrics_exporter_prometheus::PrometheusHandle,
    queue: &Queue,
) -> HttpResponse {
    let answer = if request.uri().path() != "/metrics" {
        Answer::Refused(Refusal::NotFound)
    } else if !GET_HEAD.contains(request.method()) {
        Answer::Refused(Refusal::MethodNotAllowed(GET_HEAD))
    } else {
        Answer::Metrics(telemetry::render(handle, queue).await)
    };
    respond(&answer)
}
