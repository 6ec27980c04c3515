//! One connection under its timers: first request, idle, age, eviction and
//! shutdown, for HTTP/1 and HTTP/2 alike.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::BoxError;
use crate::registry::{Slot, Ticket};
use crate::settings::DoorSettings;

/// A service that tells its connection's watchdog when requests start and
/// end.
#[derive(Debug)]
pub(crate) struct Tracked<S> {
    inner: S,
    slot: Arc<Slot>,
}

impl<S> Tracked<S> {
    pub(crate) fn new(inner: S, ticket: &Ticket) -> Tracked<S> {
        Tracked {
            inner,
            slot: ticket.slot.clone(),
        }
    }
}

impl<S> Service<Request<Incoming>> for Tracked<S>
where
    S: Service<Request<Incoming>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let guard = self.slot.begin();
        let answer = self.inner.call(request);
        Box::pin(async move {
            let answer = answer.await;
            drop(guard);
            answer
        })
    }
}

/// Why a connection was closed by the door rather than by its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    /// No request started within the first-request timeout.
    FirstRequest,
    /// No request in flight for the idle timeout.
    Idle,
}

impl Closed {
    fn as_str(self) -> &'static str {
        match self {
            Closed::FirstRequest => "first_request",
            Closed::Idle => "idle",
        }
    }
}

/// One accepted connection and what it needs.
pub(crate) struct Connection {
    pub(crate) builder: Arc<auto::Builder<TokioExecutor>>,
    pub(crate) settings: Arc<DoorSettings>,
    pub(crate) ticket: Ticket,
    pub(crate) shutdown: CancellationToken,
    pub(crate) hard_stop: CancellationToken,
}

impl Connection {
    pub(crate) async fn serve<S, B>(self, stream: TcpStream, service: Tracked<S>)
    where
        S: Service<Request<Incoming>, Response = Response<B>> + Send + Sync + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let _ = stream.set_nodelay(true);
        let slot = self.ticket.slot.clone();
        let conn = self.builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let idle = watch_idle(&slot, &self.settings);
        tokio::pin!(idle);
        let old = tokio::time::sleep_until(slot.opened + self.settings.max_connection_age);
        tokio::pin!(old);
        // Once closing (age, eviction, shutdown): the requests in flight get
        // this long to finish.
        let mut closing: Option<Instant> = None;
        let far = Instant::now() + self.settings.max_connection_age + self.settings.close_grace;
        loop {
            let grace_over = tokio::time::sleep_until(closing.unwrap_or(far));
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                closed = &mut idle => {
                    self.settings.metrics.timed_out(closed.as_str());
                    tracing::debug!(reason = closed.as_str(), "closing an idle connection");
                    break;
                }
                () = &mut old, if closing.is_none() => {
                    self.settings.metrics.timed_out("max_age");
                    closing = Some(Instant::now() + self.settings.close_grace);
                    conn.as_mut().graceful_shutdown();
                }
                () = slot.evict.cancelled(), if closing.is_none() => {
                    tracing::debug!("giving way to another client's connection");
                    if slot.is_idle() {
                        break;
                    }
                    closing = Some(Instant::now() + self.settings.close_grace);
                    conn.as_mut().graceful_shutdown();
                }
                () = self.shutdown.cancelled(), if closing.is_none() => {
                    // Finish the requests in flight, then close; the
                    // listener's shutdown grace bounds the wait.
                    closing = Some(far);
                    conn.as_mut().graceful_shutdown();
                }
                () = grace_over, if closing.is_some() => break,
                () = self.hard_stop.cancelled() => break,
            }
        }
        drop(self.ticket);
    }
}

/// Resolves when the connection has had no request in flight for its
/// timeout: the first-request timeout before any request, the idle timeout
/// after.
async fn watch_idle(slot: &Slot, settings: &DoorSettings) -> Closed {
    let mut activity = slot.activity.subscribe();
    loop {
        let now = *activity.borrow_and_update();
        if now.in_flight > 0 {
            // Wait for the requests to end; the sender lives in the slot.
            if activity.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
            continue;
        }
        let (limit, why) = if now.served {
            (settings.idle_timeout, Closed::Idle)
        } else {
            (settings.first_request_timeout, Closed::FirstRequest)
        };
        tokio::select! {
            () = tokio::time::sleep_until(now.idle_since + limit) => return why,
            changed = activity.changed() => {
                if changed.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        }
    }
}
