//! paysettle's door: how both HTTP listeners (the providers' callback port and
//! the shop API) take connections, so that no stranger can hold them.
//!
//! [`serve`] accepts without waiting for a free slot (a connection that waits
//! in the kernel's backlog is a genuine callback that cannot get in) and
//! decides per connection, by client address:
//! - a client already at its share ([`DoorSettings::max_per_client`]) is
//!   refused at once: the new connection is closed unanswered;
//! - at the listener's limit ([`DoorSettings::max_connections`]) the heaviest
//!   client gives way: one of its connections, idle first, is closed to make
//!   room, and a newcomer that is itself the heaviest is refused instead;
//! - every connection is closed when no request is in flight for
//!   [`DoorSettings::idle_timeout`] (the first request must start within
//!   [`DoorSettings::first_request_timeout`]), whatever the protocol: an
//!   HTTP/2 client answering pings is idle all the same;
//! - every connection is closed gracefully at
//!   [`DoorSettings::max_connection_age`], its requests in flight finished
//!   within [`DoorSettings::close_grace`].
//!
//! HTTP/2 streams per connection and flow-control windows come from the
//! settings, sized by the caller to its body limit, so what a client can make
//! the server buffer is bounded per connection and per client.
//!
//! Modules:
//! - `settings`: [`DoorSettings`] and the HTTP/2 limits.
//! - `registry`: who holds which connections, admission and eviction.
//! - `connection`: one connection under its timers.

mod connection;
mod registry;
pub mod settings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

pub use registry::Refused;
pub use settings::DoorSettings;

use connection::Tracked;
use registry::Registry;

/// The error type hyper accepts from services and bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long to wait after an accept error (out of file descriptors, say)
/// before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// How the listener ended: connections still open when the grace period
/// ran out were dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    /// Connections dropped at the end of the grace period.
    pub dropped: usize,
}

/// Serves `listener` until `shutdown` is cancelled, building one service per
/// connection with `make_service(peer)`; then stops accepting, lets the
/// requests in flight finish within `settings.shutdown_grace`, drops what is
/// left and returns.
pub async fn serve<M, S, B>(
    listener: TcpListener,
    settings: DoorSettings,
    make_service: M,
    shutdown: CancellationToken,
) -> Drained
where
    M: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let settings = Arc::new(settings);
    let builder = Arc::new(http_builder(&settings));
    let registry = Arc::new(Registry::new(&settings));
    let connections = TaskTracker::new();
    let hard_stop = CancellationToken::new();
    let metrics = settings.metrics.clone();
    loop {
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(listener = settings.name, error = %e, "accept failed; backing off");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        let ticket = match registry.admit(peer.ip()) {
            Ok(ticket) => ticket,
            Err(refused) => {
                metrics.refused(refused);
                tracing::debug!(listener = settings.name, %peer, reason = refused.as_str(), "connection refused");
                drop(stream);
                continue;
            }
        };
        let service = Tracked::new(make_service(peer), &ticket);
        let connection = connection::Connection {
            builder: builder.clone(),
            settings: settings.clone(),
            ticket,
            shutdown: shutdown.clone(),
            hard_stop: hard_stop.clone(),
        };
        connections.spawn(connection.serve(stream, service).instrument(
            tracing::debug_span!("connection", listener = settings.name, peer = %peer),
        ));
    }
    drop(listener);
    connections.close();
    let drained = tokio::time::timeout(settings.shutdown_grace, connections.wait()).await;
    let mut dropped = 0;
    if drained.is_err() {
        dropped = connections.len();
        tracing::warn!(
            listener = settings.name,
            connections = dropped,
            "grace period over; dropping the connections left (their requests were not answered)"
        );
        hard_stop.cancel();
        connections.wait().await;
    }
    Drained { dropped }
}

fn http_builder(settings: &DoorSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.first_request_timeout)
        .max_buf_size(settings.max_head_bytes.max(8192))
        .keep_alive(true);
    let head = u32::try_from(settings.max_head_bytes).unwrap_or(u32::MAX);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.http2.max_concurrent_streams)
        .initial_stream_window_size(settings.http2.stream_window)
        .initial_connection_window_size(settings.http2.connection_window)
        .adaptive_window(false)
        .max_header_list_size(head)
        .max_send_buf_size(settings.http2.max_send_buf)
        .max_pending_accept_reset_streams(Some(32))
        .max_local_error_reset_streams(Some(64))
        .keep_alive_interval(Some(settings.http2.ping_interval))
        .keep_alive_timeout(settings.http2.ping_timeout);
    builder
}
