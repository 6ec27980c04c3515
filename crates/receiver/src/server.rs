//! The listener: accepting within the connection limit, serving each
//! connection with hyper's auto (HTTP/1 and HTTP/2) builder under a timer so
//! header-read timeouts really fire, and draining on shutdown with a
//! deadline.

use std::convert::Infallible;
use std::future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use paysettle_queue::Queue;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::error::ReceiverError;
use crate::service::Receiver;
use crate::settings::ReceiverSettings;
use crate::telemetry;

/// HTTP/1 read buffer: bounds a request head (a larger one gets 431). The
/// body limit is separate and enforced while reading the body.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// How long to wait after an accept error (out of file descriptors, say)
/// before accepting again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

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
        metrics: metrics.clone(),
        publishes: TaskTracker::new(),
    });
    let builder = Arc::new(http_builder(&settings));
    let permits = Arc::new(Semaphore::new(settings.max_connections));
    let connections = TaskTracker::new();
    let hard_stop = CancellationToken::new();
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

    loop {
        // Wait for a free slot before accepting: over the limit, new
        // connections wait in the kernel's backlog, costing us nothing.
        let permit = tokio::select! {
            () = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break, // never closed; here for completeness
            },
        };
        let (stream, peer) = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed; backing off");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        let connection = Connection {
            builder: builder.clone(),
            receiver: receiver.clone(),
            header_timeout: settings.header_read_timeout,
            shutdown: shutdown.clone(),
            hard_stop: hard_stop.clone(),
            _permit: permit,
        };
        connections.spawn(
            connection
                .serve(stream, peer)
                .instrument(tracing::debug_span!("connection", peer = %peer)),
        );
    }

    drop(listener);
    connections.close();
    receiver.publishes.close();
    tracing::info!(
        connections = connections.len(),
        publishes = receiver.publishes.len(),
        grace_ms = u64::try_from(settings.shutdown_grace.as_millis()).unwrap_or(u64::MAX),
        "receiver draining"
    );
    let drained = tokio::time::timeout(settings.shutdown_grace, async {
        connections.wait().await;
        receiver.publishes.wait().await;
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            publishes = receiver.publishes.len(),
            "grace period over; dropping the connections left (their callbacks were not answered)"
        );
        hard_stop.cancel();
        connections.wait().await;
    }
    upkeep.abort();
    tracing::info!("receiver stopped");
    Ok(())
}

fn http_builder(settings: &ReceiverSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .max_header_list_size(u32::try_from(MAX_HEAD_BYTES).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(10));
    builder
}

/// One accepted connection and what it needs.
struct Connection {
    builder: Arc<auto::Builder<TokioExecutor>>,
    receiver: Arc<Receiver>,
    header_timeout: Duration,
    shutdown: CancellationToken,
    hard_stop: CancellationToken,
    /// Returned to the connection limit when the connection ends.
    _permit: OwnedSemaphorePermit,
}

impl Connection {
    async fn serve(self, stream: TcpStream, peer: SocketAddr) {
        let _ = stream.set_nodelay(true);
        telemetry::connection_opened();
        let _closed = OnDrop(telemetry::connection_closed);

        // hyper's header-read timeout starts only once the auto builder has
        // seen enough bytes to pick HTTP/1; a client that connects and sends
        // nothing would sit in that detection forever. This watchdog closes
        // a connection whose first request head has not arrived within the
        // same timeout; after that, hyper's own timer covers every idle
        // keep-alive wait.
        let first_request = Arc::new(Notify::new());
        let service = {
            let (receiver, first_request) = (self.receiver.clone(), first_request.clone());
            service_fn(move |request| {
                first_request.notify_one();
                let receiver = receiver.clone();
                async move { Ok::<_, Infallible>(receiver.handle(request, peer).await) }
            })
        };
        let conn = self.builder.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        let watchdog = async {
            tokio::select! {
                () = first_request.notified() => future::pending::<()>().await,
                () = tokio::time::sleep(self.header_timeout) => {}
            }
        };
        tokio::pin!(watchdog);
        let mut draining = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    break;
                }
                () = &mut watchdog => {
                    telemetry::connection_timed_out();
                    tracing::debug!("no request head within the header timeout; closing");
                    break;
                }
                () = self.shutdown.cancelled(), if !draining => {
                    // Finish the request in flight, then close; idle
                    // connections close at once.
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = self.hard_stop.cancelled() => break,
            }
        }
    }
}

/// Runs a function when dropped: the open-connections gauge goes down
/// however the connection ends.
struct OnDrop(fn());

impl Drop for OnDrop {
    fn drop(&mut self) {
        (self.0)();
    }
}
