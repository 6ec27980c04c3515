//! `spawn_receiver()` and what the tests share: a receiver on port 0 with its
//! own queue (a temporary SQLite file, or its own RabbitMQ prefix), the
//! simulator pointed at it, an HTTP client, raw sockets, draining the queue,
//! and the log scan every test ends with.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use paysettle_core::Account;
use paysettle_core::inbound::InboundCallback;
use paysettle_core::paysys::{self, NotificationAuth};
use paysettle_core::plutu::CallbackVerifier;
use paysettle_queue::{BackendKind, Queue, QueueKind};
use paysettle_receiver::{
    PaysysAccount, PlutuAccount, PortmanatAccount, ReceiverError, ReceiverSettings, ResultPage,
};
use paysettle_sim::{PlutuGateway, Sim, SimConfig, SimHandle};
use paysettle_testkit::{LogCapture, Proxy, SecretScanner, TestQueue, amqp, capture_logs};
use secrecy::SecretString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a test waits for anything before failing.
pub const DEADLINE: Duration = Duration::from_secs(15);

/// The simulator's demo credentials (crates/sim/sim.toml).
pub const PAYSYS_USER: &str = "demo-vendor";
pub const PAYSYS_SECRET: &str = "demo-vendor-secret";
pub const PLUTU_SECRET: &str = "sk_demo_plutu_secret";
/// A second PaySys pair configured beside the first, as during a rotation.
pub const PAYSYS_ROTATED: &str = "rotated-vendor-secret-2";
/// The `shop2` accounts' own credentials.
pub const SHOP2_PAYSYS_SECRET: &str = "shop2-vendor-secret";
pub const SHOP2_PLUTU_SECRET: &str = "sk_shop2_plutu_secret";
/// The shop's result pages.
pub const PLUTU_PAGE: &str = "https://shop.example/plutu/result";
pub const PORTMANAT_PAGE: &str = "https://shop.example/portmanat/thanks?lang=az";
/// Short limits so timeout paths stay fast.
pub const HEADER_TIMEOUT: Duration = Duration::from_millis(600);
pub const BODY_TIMEOUT: Duration = Duration::from_millis(600);

/// The capture every test's logs go to, installed once for this binary.
pub fn logs() -> &'static LogCapture {
    capture_logs("paysettle_receiver=trace,paysettle_queue=debug,paysettle_core=trace,paysettle_sim=off,warn")
        .expect("the log capture is this binary's only subscriber")
}

/// Card tokens and other values seen during the suite that must never be
/// logged, added by the tests that send them.
static SEEN: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

pub fn remember_secret(kind: &str, value: &str) {
    SEEN.lock()
        .unwrap()
        .push((kind.to_owned(), value.to_owned()));
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The `Authorization` value PaySys sends with the demo credentials.
pub fn paysys_authorization() -> String {
    basic(PAYSYS_USER, PAYSYS_SECRET)
}

/// Every secret the receiver is configured with or handles, and the shapes
/// of Authorization values and card numbers.
pub fn scanner() -> SecretScanner {
    let mut scanner = SecretScanner::new()
        .needle("paysys_secret", PAYSYS_SECRET)
        .needle("paysys_secret", PAYSYS_ROTATED)
        .needle("paysys_secret", SHOP2_PAYSYS_SECRET)
        .needle("plutu_secret", PLUTU_SECRET)
        .needle("plutu_secret", SHOP2_PLUTU_SECRET)
        .needle("authorization_value", paysys_authorization())
        .needle(
            "authorization_value",
            basic(PAYSYS_USER, SHOP2_PAYSYS_SECRET),
        );
    for (kind, value) in SEEN.lock().unwrap().iter() {
        scanner.add(kind.clone(), value.clone());
    }
    scanner
}

/// Fails the test if anything logged so far reveals a secret.
pub fn assert_logs_clean() {
    let findings = scanner().scan(&logs().contents());
    assert!(
        findings.is_empty(),
        "secrets in the logs:\n{}",
        findings
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// How to start one test's receiver.
pub struct Options {
    pub backend: BackendKind,
    /// Connect to RabbitMQ through a [`Proxy`] the test can cut.
    pub proxy: bool,
    /// Configure the RabbitMQ spool (on by default).
    pub spool: bool,
    /// Adjusts the settings before the receiver starts.
    pub settings: fn(&mut ReceiverSettings),
    /// Adjusts the queue's settings before it starts.
    pub queue: fn(&mut paysettle_queue::QueueConfig),
}

impl Options {
    pub fn new(backend: BackendKind) -> Options {
        Options {
            backend,
            proxy: false,
            spool: true,
            settings: |_| {},
            queue: |_| {},
        }
    }
}

/// The settings every test starts from: the demo credentials on the
/// default accounts (PaySys with a rotated pair beside), `shop2` accounts
/// with their own credentials, `nopage` accounts without result pages.
pub fn settings() -> ReceiverSettings {
    let secret = |s: &str| SecretString::from(s.to_owned());
    let paysys = |pairs: &[(&str, &str)]| PaysysAccount {
        auth: NotificationAuth::new(
            &pairs
                .iter()
                .map(|(u, p)| (secret(u), secret(p)))
                .collect::<Vec<_>>(),
        )
        .unwrap(),
    };
    let plutu = |key: &str, page: Option<&str>| PlutuAccount {
        verifier: CallbackVerifier::new(secret(key)).unwrap(),
        result_page: page.map(|p| ResultPage::parse(p).unwrap()),
    };
    let account = |name: &str| Account::parse(name).unwrap();
    ReceiverSettings {
        header_read_timeout: HEADER_TIMEOUT,
        body_read_timeout: BODY_TIMEOUT,
        shutdown_grace: Duration::from_secs(5),
        paysys: BTreeMap::from([
            (
                Account::default(),
                paysys(&[(PAYSYS_USER, PAYSYS_SECRET), (PAYSYS_USER, PAYSYS_ROTATED)]),
            ),
            (account("shop2"), {
                // shop2's PaySys dates are read in Baku time.
                let mut shop2 = paysys(&[(PAYSYS_USER, SHOP2_PAYSYS_SECRET)]);
                shop2.auth = shop2.auth.with_rules(paysys::Rules {
                    time_zone: "Asia/Baku".into(),
                    ..paysys::Rules::default()
                });
                shop2
            }),
        ]),
        plutu: BTreeMap::from([
            (Account::default(), plutu(PLUTU_SECRET, Some(PLUTU_PAGE))),
            (
                account("shop2"),
                plutu(SHOP2_PLUTU_SECRET, Some(PLUTU_PAGE)),
            ),
            (account("nopage"), plutu(PLUTU_SECRET, None)),
        ]),
        portmanat: BTreeMap::from([
            (
                Account::default(),
                PortmanatAccount {
                    result_page: Some(ResultPage::parse(PORTMANAT_PAGE).unwrap()),
                },
            ),
            (account("nopage"), PortmanatAccount { result_page: None }),
        ]),
        handoff: Some(paysettle_testkit::handoff::keys()),
        ..ReceiverSettings::default()
    }
}

/// A running receiver with its own queue.
pub struct TestReceiver {
    pub addr: SocketAddr,
    /// `/metrics`, on its own listener.
    pub metrics_addr: SocketAddr,
    pub queue: Queue,
    pub proxy: Option<Proxy>,
    pub shutdown: CancellationToken,
    pub task: Option<JoinHandle<Result<(), ReceiverError>>>,
    // Dropped last: deletes the RabbitMQ topology and the temporary files.
    pub _env: TestQueue,
}

pub async fn spawn_receiver(backend: BackendKind) -> TestReceiver {
    spawn_with(Options::new(backend)).await
}

pub async fn spawn_with(options: Options) -> TestReceiver {
    logs();
    let env = TestQueue::new(options.backend).unwrap();
    let mut config = env.config();
    if !options.spool {
        config.spool_path = None;
    }
    (options.queue)(&mut config);
    let proxy = if options.proxy {
        let proxy = Proxy::start(amqp::broker_addr(&env.amqp_url))
            .await
            .unwrap();
        config.amqp_url = amqp::url_via(&env.amqp_url, proxy.addr());
        Some(proxy)
    } else {
        None
    };
    let queue = Queue::start(config).await.unwrap();
    let mut settings = settings();
    (options.settings)(&mut settings);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    let metrics_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = metrics_listener.local_addr().unwrap();
    tokio::spawn(paysettle_receiver::serve_metrics(
        metrics_listener,
        queue.clone(),
        shutdown.clone(),
    ));
    let task = tokio::spawn(paysettle_receiver::run(
        listener,
        Arc::new(settings),
        queue.clone(),
        shutdown.clone(),
    ));
    TestReceiver {
        addr,
        metrics_addr,
        queue,
        proxy,
        shutdown,
        task: Some(task),
        _env: env,
    }
}

impl TestReceiver {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// A URL on the metrics listener.
    pub fn metrics_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.metrics_addr)
    }

    /// A simulator whose callbacks all come here.
    pub async fn sim(&self) -> SimHandle {
        self.sim_with(|_| {}).await
    }

    pub async fn sim_with(&self, adjust: impl FnOnce(&mut SimConfig)) -> SimHandle {
        let mut config = SimConfig::for_tests();
        config.portmanat.callback_url = self.url("/callbacks/portmanat");
        config.paysys.notify_url = self.url("/callbacks/paysys");
        config.plutu.default_return_url = self.url("/callbacks/plutu");
        adjust(&mut config);
        Sim::start(config).await.unwrap()
    }

    /// Takes (and acks) every message, callbacks and hints (which have a
    /// queue of their own), until `expected` arrived, then makes sure no
    /// more come within a short look; returns them all in arrival order
    /// (message ids are UUIDv7, ordered in this process).
    pub async fn drain(&self, expected: usize) -> Vec<Queued> {
        let mut consumers = [
            self.queue.consumer(QueueKind::Callbacks).unwrap(),
            self.queue.consumer(QueueKind::Hints).unwrap(),
        ];
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + DEADLINE;
        while got.len() < expected {
            assert!(
                tokio::time::Instant::now() < deadline,
                "expected {expected} messages, got {}: {got:#?}",
                got.len()
            );
            for consumer in &mut consumers {
                let batch = consumer
                    .next_batch(256, Duration::from_millis(250))
                    .await
                    .unwrap();
                for delivery in batch {
                    got.push(Queued::from(&delivery));
                    delivery.ack().await.unwrap();
                }
            }
        }
        // Anything beyond what was expected is a duplicate or a stray.
        let mut extra = Vec::new();
        for consumer in &mut consumers {
            extra.extend(
                consumer
                    .next_batch(256, Duration::from_millis(300))
                    .await
                    .unwrap(),
            );
        }
        assert!(
            extra.is_empty(),
            "{} unexpected extra messages: {:?}",
            extra.len(),
            extra
                .iter()
                .map(|d| d.message_id().to_owned())
                .collect::<Vec<_>>()
        );
        got.sort_by(|a, b| a.message_id.cmp(&b.message_id));
        got
    }

    /// How many hints the hints queue holds.
    pub async fn hints_queued(&self) -> u64 {
        self.queue.message_count(QueueKind::Hints).await.unwrap()
    }

    /// Stops the receiver (it must return Ok within its grace), stops the
    /// queue, and checks the logs so far reveal nothing.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(DEADLINE, task)
                .await
                .expect("the receiver stops within its grace")
                .unwrap()
                .unwrap();
        }
        self.queue.shutdown(Duration::from_secs(3)).await;
        assert_logs_clean();
    }
}

/// One message taken from the callbacks queue.
#[derive(Debug, Clone)]
pub struct Queued {
    pub message_id: String,
    pub content_type: String,
    pub headers: BTreeMap<String, String>,
    pub callback: InboundCallback,
}

impl From<&paysettle_queue::Delivery> for Queued {
    fn from(d: &paysettle_queue::Delivery) -> Self {
        let m = d.message();
        Queued {
            message_id: m.message_id.clone(),
            content_type: m.content_type.clone(),
            headers: m.headers.clone(),
            callback: serde_json::from_slice(&m.body).unwrap(),
        }
    }
}

/// The answer to a request.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }

    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// A client per request: each test has its own runtime, and a pooled
/// connection must not outlive the runtime that drives it.
fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one request.
pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Answer {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let response = client()
        .request(builder.body(Full::new(body.into())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body,
    }
}

pub async fn get(url: &str) -> Answer {
    send(Method::GET, url, &[], Bytes::new()).await
}

/// A PaySys notification with the demo credentials.
pub async fn post_paysys(url: &str, body: impl Into<Bytes>) -> Answer {
    let auth = paysys_authorization();
    send(
        Method::POST,
        url,
        &[
            (header::AUTHORIZATION.as_str(), auth.as_str()),
            ("content-type", "application/json"),
        ],
        body,
    )
    .await
}

/// A Plutu callback query for `pairs` in order, signed with `secret` by the
/// simulator's own implementation (not the product's).
pub fn plutu_query(pairs: &[(&str, &str)], gateway: PlutuGateway, secret: &str) -> String {
    let message = paysettle_sim::plutu::callback_message(gateway, pairs);
    let hashed = paysettle_sim::plutu::callback_hash(secret, &message);
    format!(
        "{}&hashed={hashed}",
        paysettle_sim::form::http_build_query(pairs)
    )
}

/// Writes `bytes` on a fresh connection and reads until the server closes
/// it or `within` passes; returns what was read and whether it closed.
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8], within: Duration) -> (String, bool) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    read_until_closed(&mut stream, within).await
}

pub async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return (String::from_utf8_lossy(&got).into_owned(), false),
            Ok(Ok(0) | Err(_)) => return (String::from_utf8_lossy(&got).into_owned(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The value of one Prometheus series, by name and label subset.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (series_name, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            if series_name != name {
                return None;
            }
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .reduce(|a, b| a + b)
}
