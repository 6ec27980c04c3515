//! The product as two real processes, and what the table needs around it:
//! raw HTTP over a socket, and a snapshot of everything a request could
//! have changed (the callbacks queue on the real RabbitMQ, the ledger file).
//!
//! `paysettle receive` serves the callback listener and publishes to this
//! test's own RabbitMQ prefix; nothing consumes it, so every message a
//! request caused stays countable. `paysettle work` serves the shop API on a
//! ledger file in the same directory; its worker is pointed at an embedded
//! queue of its own (`PAYSETTLE__QUEUE__BACKEND=embedded`), so it never takes
//! the receiver's messages, and the only payments it holds are Plutu ones,
//! which it never polls. So whatever changes in the queue or the ledger
//! during a row was caused by that row.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use paysettle_core::Account;
use paysettle_queue::{Queue, QueueKind};
use paysettle_store::{Ledger, LedgerOptions, PaymentFilter};
use paysettle_testkit::TestQueue;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long anything may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The receiver's header and body timeouts, short so slow clients are cut
/// off quickly. (The shop API's are fixed at 10 s.)
pub const RECEIVER_TIMEOUT_MS: u64 = 1000;

pub const PAYSYS_USER: &str = "hostile-vendor";
pub const PAYSYS_SECRET: &str = "hostile-vendor-secret-1";
/// The `shop2` PaySys account's own secret: the default account's
/// credentials must not open it.
pub const SHOP2_PAYSYS_SECRET: &str = "hostile-shop2-secret-2";
pub const PLUTU_SECRET: &str = "sk_hostile_plutu_secret_3";
pub const SHOP_TOKEN: &str = "hostile-shop-token-4f9c2b7e";
pub const PLUTU_PAGE: &str = "https://shop.example/plutu/result";
/// The product's hints queue bound: one, so the table's rows fill it.
pub const HINTS_MAX_LENGTH: u64 = 1;
pub const PORTMANAT_PAGE: &str = "https://shop.example/portmanat/thanks";

/// Which listener a request goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Receiver,
    Shop,
}

/// `paysettle receive` and `paysettle work`, with the test's own handles on
/// their queue and ledger.
pub struct Product {
    pub receiver: SocketAddr,
    /// `/metrics`, on its own listener.
    pub metrics: SocketAddr,
    pub shop: SocketAddr,
    pub receive: Child,
    pub work: Child,
    /// The test's own connection to the receiver's queue (no spool).
    pub queue: Queue,
    /// The test's own handle on the ledger file the shop API writes.
    pub ledger: Ledger,
    pub receive_log: PathBuf,
    pub work_log: PathBuf,
    // Dropped last: deletes the RabbitMQ topology and the directory.
    _env: TestQueue,
}

/// A port nobody listens on right now, for a child process to bind.
fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn config(env: &TestQueue, receiver: u16, shop: u16, metrics: u16) -> String {
    let dir = env.dir.path();
    format!(
        r#"
[ledger]
path = "{ledger}"
synchronous = "normal"

[queue]
backend = "rabbitmq"
amqp_url = "{url}"
prefix = "{prefix}"
spool_path = "{spool}"
embedded_path = "{embedded}"
finance_queue = false
# The same arguments as the test's own handle (TestQueue::config), or
# RabbitMQ refuses the second declaration.
delivery_limit = 3
# Small, so the table can fill it (see Product::start).
hints_max_length = {HINTS_MAX_LENGTH}

[receiver]
listen = "127.0.0.1:{receiver}"
header_timeout_ms = {timeout}
body_timeout_ms = {timeout}
shutdown_grace_ms = 3000

[shop_api]
listen = "127.0.0.1:{shop}"
token = "{token}"

[metrics]
listen = "127.0.0.1:{metrics}"

[worker]
shutdown_grace_ms = 3000
poll_idle_ms = 200

[log]
level = "info"

[portmanat.default]
base_url = "http://127.0.0.1:9/portmanat"
result_page = "{portmanat_page}"

[paysys.default]
gateway_url = "http://127.0.0.1:9/paysys/gateway"
service_id = "2001"
secret_key = "hostile-paysys-api-secret"

[[paysys.default.notify_credentials]]
user = "{user}"
password = "{secret}"

[paysys.shop2]
gateway_url = "http://127.0.0.1:9/paysys/gateway"
service_id = "2002"
secret_key = "hostile-paysys-api-secret-2"

[[paysys.shop2.notify_credentials]]
user = "{user}"
password = "{shop2_secret}"

[plutu.default]
secret_key = "{plutu}"
result_page = "{plutu_page}"

{handoff}"#,
        handoff = paysettle_testkit::config::handoff(),
        ledger = dir.join("ledger.sqlite").display(),
        url = env.amqp_url,
        prefix = env.prefix,
        spool = dir.join("spool.sqlite").display(),
        embedded = dir.join("worker-queue.sqlite").display(),
        timeout = RECEIVER_TIMEOUT_MS,
        token = SHOP_TOKEN,
        portmanat_page = PORTMANAT_PAGE,
        user = PAYSYS_USER,
        secret = PAYSYS_SECRET,
        shop2_secret = SHOP2_PAYSYS_SECRET,
        plutu = PLUTU_SECRET,
        plutu_page = PLUTU_PAGE,
    )
}

fn start(role: &str, config: &Path, log: &Path, env: &[(&str, &str)]) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paysettle"));
    command
        .args([role, "--config"])
        .arg(config)
        .env_remove("PAYSETTLE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::from(
            std::fs::File::create(log.with_extension("out")).unwrap(),
        ))
        .stderr(Stdio::from(std::fs::File::create(log).unwrap()));
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn().unwrap()
}

/// Waits until `GET /healthz` answers 200, or fails with the child's log.
async fn until_healthy(addr: SocketAddr, child: &mut Child, log: &Path) {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!(
                "{addr}: the process exited ({status}):\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if let Ok(reply) = exchange(addr, &get("/healthz", &[]), Pace::AllAtOnce).await
            && reply.status == Some(200)
        {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "{addr} never became healthy:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Product {
    pub async fn start() -> Product {
        let env = TestQueue::new(paysettle_queue::BackendKind::RabbitMq).unwrap();
        let (receiver_port, shop_port, metrics_port) = (free_port(), free_port(), free_port());
        let path = env.dir.path().join("paysettle.toml");
        std::fs::write(&path, config(&env, receiver_port, shop_port, metrics_port)).unwrap();
        let receive_log = env.dir.path().join("receive.log");
        let work_log = env.dir.path().join("work.log");
        let mut receive = start("receive", &path, &receive_log, &[]);
        // The worker's own queue is embedded: it must not consume what the
        // receiver publishes (see the module's comment).
        let mut work = start(
            "work",
            &path,
            &work_log,
            &[("PAYSETTLE__QUEUE__BACKEND", "embedded")],
        );
        let receiver: SocketAddr = ([127, 0, 0, 1], receiver_port).into();
        let shop: SocketAddr = ([127, 0, 0, 1], shop_port).into();
        until_healthy(receiver, &mut receive, &receive_log).await;
        until_healthy(shop, &mut work, &work_log).await;

        let mut queue_config = env.config();
        queue_config.spool_path = None;
        queue_config.hints_max_length = HINTS_MAX_LENGTH;
        let queue = Queue::start(queue_config).await.unwrap();
        let ledger = Ledger::open(
            env.dir.path().join("ledger.sqlite"),
            LedgerOptions::default(),
        )
        .unwrap();
        Product {
            receiver,
            metrics: ([127, 0, 0, 1], metrics_port).into(),
            shop,
            receive,
            work,
            queue,
            ledger,
            receive_log,
            work_log,
            _env: env,
        }
    }

    pub fn addr(&self, listener: Listener) -> SocketAddr {
        match listener {
            Listener::Receiver => self.receiver,
            Listener::Shop => self.shop,
        }
    }

    /// Messages waiting in the callbacks and hints queues, and in the
    /// dead-letter queue.
    pub async fn queued(&self) -> (u64, u64) {
        (
            self.queue
                .message_count(QueueKind::Callbacks)
                .await
                .unwrap()
                + self.queue.message_count(QueueKind::Hints).await.unwrap(),
            self.queue
                .message_count(QueueKind::DeadLetters)
                .await
                .unwrap(),
        )
    }

    /// Everything in the ledger a request could have changed: every payment
    /// with its full history and its events.
    pub async fn ledger_snapshot(&self) -> String {
        let payments = self
            .ledger
            .list(PaymentFilter {
                limit: 100_000,
                ..PaymentFilter::default()
            })
            .await
            .unwrap();
        let mut out = String::new();
        for payment in payments {
            out.push_str(&format!("{payment:?}\n"));
            for entry in self.ledger.history(payment.id).await.unwrap() {
                out.push_str(&format!("  {entry:?}\n"));
            }
            for event in self.ledger.events_of(payment.id).await.unwrap() {
                out.push_str(&format!("  {event:?}\n"));
            }
        }
        out
    }

    /// Both processes are still running.
    pub fn assert_running(&mut self) {
        for (name, child, log) in [
            ("receive", &mut self.receive, &self.receive_log),
            ("work", &mut self.work, &self.work_log),
        ] {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "paysettle {name} exited ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }

    /// Asks a child to stop as an orchestrator would (SIGTERM) and waits for
    /// a clean exit.
    pub async fn stop(child: &mut Child, log: &Path) {
        let pid = child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let started = std::time::Instant::now();
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > DEADLINE {
                let _ = child.kill();
                panic!("pid {pid} did not stop on SIGTERM");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(
            status.success(),
            "exited with {status}:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }

    /// The account names the worker's settings know, for the test's applier.
    pub fn worker_settings() -> paysettle_worker::WorkerSettings {
        let mut settings = paysettle_worker::WorkerSettings {
            batch_wait: Duration::from_millis(5),
            handoff: Some(paysettle_testkit::handoff::keys()),
            ..paysettle_worker::WorkerSettings::default()
        };
        settings.plutu.push(Account::default());
        for account in [Account::default(), Account::parse("shop2").unwrap()] {
            settings.paysys.insert(
                account,
                paysettle_worker::PaysysAccess {
                    gateway_url: "http://127.0.0.1:9/paysys/gateway".into(),
                    service_id: "2001".into(),
                    secret_key: secrecy::SecretString::from("hostile-paysys-api-secret"),
                    rules: Default::default(),
                },
            );
        }
        settings.portmanat.insert(
            Account::default(),
            paysettle_worker::PortmanatAccess {
                base_url: "http://127.0.0.1:9/portmanat".into(),
                accept_test_payments: false,
            },
        );
        settings
    }
}

impl Drop for Product {
    fn drop(&mut self) {
        // A failed test must not leave processes behind; these are ours, by id.
        for child in [&mut self.receive, &mut self.work] {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// How the request's bytes are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Everything at once, then read the answer.
    AllAtOnce,
    /// Everything given, then nothing more: the connection stays open until
    /// the server acts (slow headers, a body that stops short).
    Stall,
    /// The bytes given, then one more byte every 100 ms, never finishing
    /// (a body that keeps moving but never arrives).
    Trickle,
}

/// What came back.
#[derive(Debug, Clone)]
pub struct Reply {
    /// `None`: the server closed the connection without answering.
    pub status: Option<u16>,
    /// Header lines, names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends raw bytes and reads until the server closes the connection (every
/// request here says `Connection: close`, and every refusal of a broken
/// request closes it too).
pub async fn exchange(addr: SocketAddr, request: &[u8], pace: Pace) -> std::io::Result<Reply> {
    let stream = TcpStream::connect(addr).await?;
    let (mut read, mut write) = stream.into_split();
    // The server may answer and close before it has read everything (a
    // declared body over the limit): a failed write is not the test's end.
    let _ = write.write_all(request).await;
    let trickle = match pace {
        Pace::AllAtOnce | Pace::Stall => None,
        Pace::Trickle => Some(tokio::spawn(async move {
            for _ in 0..400 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if write.write_all(b" ").await.is_err() {
                    return None;
                }
            }
            Some(write)
        })),
    };
    let mut raw = Vec::new();
    let result = tokio::time::timeout(DEADLINE, read.read_to_end(&mut raw)).await;
    if let Some(trickle) = trickle {
        trickle.abort();
    }
    match result {
        Err(_) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer and no close: {}", String::from_utf8_lossy(&raw)),
            ));
        }
        // A reset after a complete answer still leaves the answer to read.
        Ok(Err(e)) if raw.is_empty() && e.kind() != std::io::ErrorKind::ConnectionReset => {
            return Err(e);
        }
        Ok(_) => {}
    }
    Ok(parse(&raw))
}

fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .and_then(|code| code.parse().ok());
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// An HTTP/1.1 request with `Host`, `Connection: close` and, when there is a
/// body, its `Content-Length`.
pub fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("{method} {target} HTTP/1.1\r\nHost: paysettle.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

pub fn get(target: &str, headers: &[(&str, &str)]) -> Vec<u8> {
    request("GET", target, headers, b"")
}

pub fn post(target: &str, headers: &[(&str, &str)], body: impl AsRef<[u8]>) -> Vec<u8> {
    request("POST", target, headers, body.as_ref())
}
