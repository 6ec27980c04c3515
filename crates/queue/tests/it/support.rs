//! Test support: configs per backend with their own names, cleanup of the
//! broker topology (also when a test fails), waiting on conditions, and a TCP
//! proxy the test can cut.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use paysettle_queue::{BackendKind, QueueConfig, Topology};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// The broker the tests use; `PAYSETTLE_TEST_AMQP_URL` overrides it.
pub fn amqp_url() -> String {
    std::env::var("PAYSETTLE_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// The `host:port` of [`amqp_url`], for the proxy to forward to.
pub fn broker_addr() -> String {
    let url = amqp_url();
    let after_scheme = url.split("://").nth(1).unwrap_or("127.0.0.1:5672");
    let host_part = after_scheme.rsplit('@').next().unwrap_or(after_scheme);
    host_part
        .split('/')
        .next()
        .unwrap_or("127.0.0.1:5672")
        .to_owned()
}

/// The same URL with its host and port replaced by `addr` (the proxy).
pub fn amqp_url_via(addr: SocketAddr) -> String {
    amqp_url().replacen(&broker_addr(), &addr.to_string(), 1)
}

/// One test's private world: a temporary directory for the SQLite files and,
/// on RabbitMQ, a unique prefix whose queues and exchanges are deleted when
/// this is dropped, whether the test passed or panicked.
pub struct TestEnv {
    pub backend: BackendKind,
    pub prefix: String,
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    pub fn new(backend: BackendKind) -> Self {
        // Logs for a failing test: RUST_LOG=paysettle_queue=debug.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        Self {
            backend,
            prefix: format!("pstest-{}", uuid::Uuid::new_v4().simple()),
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// Short timeouts so failure paths stay fast.
    pub fn config(&self) -> QueueConfig {
        QueueConfig {
            backend: self.backend,
            amqp_url: amqp_url(),
            prefix: self.prefix.clone(),
            prefetch: 50,
            delivery_limit: 3,
            hints_max_length: 1000,
            confirm_timeout: Duration::from_secs(3),
            connect_timeout: Duration::from_secs(3),
            reconnect_max_delay: Duration::from_millis(500),
            recovery_grace: Duration::from_secs(3),
            spool_path: Some(self.dir.path().join("spool.sqlite")),
            forward_batch: 256,
            embedded_path: self.dir.path().join("queue.sqlite"),
            lease_duration: Duration::from_secs(30),
            finance_queue: true,
            embedded_event_queues: true,
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if self.backend == BackendKind::RabbitMq {
            let prefix = self.prefix.clone();
            // Its own thread and runtime: Drop may run inside (or after) the
            // test's runtime, and must block until the broker is clean.
            let cleaner = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(delete_topology(&prefix));
            });
            let _ = cleaner.join();
        }
    }
}

/// Deletes every queue and exchange a test with `prefix` may have declared.
pub async fn delete_topology(prefix: &str) {
    let Ok(conn) = Connection::connect(&amqp_url(), ConnectionProperties::default()).await else {
        eprintln!("cleanup: cannot connect to the broker for prefix {prefix}");
        return;
    };
    let t = Topology::new(prefix, true);
    let queues = [
        Some(t.callbacks),
        Some(t.dead_letters),
        Some(t.hints),
        t.finance,
        Some(t.shop),
    ];
    for q in queues.into_iter().flatten() {
        // A fresh channel each: a failed delete closes its channel.
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    for x in [t.events_exchange, t.dead_letter_exchange] {
        if let Ok(ch) = conn.create_channel().await {
            let _ = ch
                .exchange_delete(x.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = conn.close(200, "OK".into()).await;
}

/// Polls `check` until it is true or `within` passes; panics with `what` then.
pub async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if check().await {
            return;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A TCP forwarder on 127.0.0.1:0 in front of the broker that a test can cut:
/// [`Proxy::cut`] drops every open connection and turns new ones away (accepts
/// and closes them at once), [`Proxy::heal`] lets them through again.
pub struct Proxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    cut_all: Arc<std::sync::Mutex<CancellationToken>>,
    stop: CancellationToken,
}

impl Proxy {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let open = Arc::new(AtomicBool::new(true));
        let cut_all = Arc::new(std::sync::Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let (o, c, s) = (open.clone(), cut_all.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = s.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((client, _)) = accepted else { continue };
                if !o.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let token = c.lock().expect("lock").clone();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    pipe(client, server, token).await;
                });
            }
        });
        Self {
            addr,
            open,
            cut_all,
            stop,
        }
    }

    /// Drops every connection through the proxy and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        let mut token = self.cut_all.lock().expect("lock");
        token.cancel();
        *token = CancellationToken::new();
    }

    /// Lets connections through again.
    pub fn heal(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut_all.lock().map(|t| t.cancel()).ok();
    }
}

async fn pipe(mut client: TcpStream, mut server: TcpStream, cut: CancellationToken) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    tokio::select! {
        _ = cut.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
    // Dropping both ends closes them: the client sees its connection die.
}
