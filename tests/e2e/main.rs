//! The whole product, end to end: the provider simulator sends genuine
//! callbacks over real HTTP to the receiver, which queues them on the real
//! RabbitMQ; the worker settles every payment into a real ledger file,
//! polling the simulator; a finance consumer reads the settled events.
//! Each test has its own RabbitMQ prefix, files and ports, and cleans up.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use paysettle_core::schedule::CheckPolicy;
use paysettle_core::{Account, Provider};
use paysettle_queue::{BackendKind, Consumer, Queue, QueueKind};
use paysettle_receiver::{PaysysAccount, PlutuAccount, PortmanatAccount, ReceiverSettings};
use paysettle_sim::model::{Outcome, PaymentView, Provider as SimProvider};
use paysettle_sim::{NewPayment, Sim, SimConfig, SimHandle};
use paysettle_store::{Ledger, LedgerOptions, PaymentRecord};
use paysettle_testkit::{TestClock, TestQueue};
use paysettle_worker::{PaysysAccess, PortmanatAccess, ProviderLimits, WorkerSettings};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

mod alerts;
mod cli;
mod crash;
mod feed;
mod migrate;
mod openapi;
mod ops;
mod replicas;
mod settle;
mod trust;
mod truth;

/// A configuration file for the `paysettle` binary run by a test: the
/// ledger in `dir`, RabbitMQ under `prefix`, every provider account at the
/// simulator, polling fast.
fn product_config(
    sim_base_url: &str,
    amqp_url: &str,
    prefix: &str,
    dir: &std::path::Path,
) -> std::path::PathBuf {
    let ledger = format!("path = \"{}\"\n", dir.join("ledger.sqlite").display());
    product_config_with(sim_base_url, amqp_url, prefix, dir, &ledger, 500.0, "")
}

/// [`product_config`] with the `[ledger]` table's body given, the status
/// checks' rate per provider, and more `[worker]` keys.
fn product_config_with(
    sim_base_url: &str,
    amqp_url: &str,
    prefix: &str,
    dir: &std::path::Path,
    ledger: &str,
    rate_per_sec: f64,
    worker_extra: &str,
) -> std::path::PathBuf {
    let base = sim_base_url.trim_end_matches('/').to_owned();
    let polling = |name: &str| {
        format!(
            "[polling.{name}]\nconcurrency = 8\nrate_per_sec = {rate_per_sec:?}\ntimeout_ms = 2000\nfirst_ms = 50\nmultiplier = 2.0\n\
             max_interval_ms = 300\njitter = 0.1\ndeadline_ms = 60000\n"
        )
    };
    let text = format!(
        r#"
[ledger]
{ledger}
[queue]
backend = "rabbitmq"
amqp_url = "{url}"
prefix = "{prefix}"
delivery_limit = 5
spool_path = "{spool}"

[shop_api]
listen = "127.0.0.1:0"

[worker]
batch_size = 16
batch_wait_ms = 5
relay_batch = 8
relay_interval_ms = 50
poll_idle_ms = 25
{worker_extra}
{portmanat}{paysys}{plutu}
{accounts}"#,
        accounts = paysettle_testkit::config::sim_accounts(&base),
        url = amqp_url,
        prefix = prefix,
        spool = dir.join("worker-spool.sqlite").display(),
        portmanat = polling("portmanat"),
        paysys = polling("paysys"),
        plutu = polling("plutu"),
    );
    let path = dir.join("worker.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Where a payment's callbacks go when a test wants them lost.
const NOWHERE: &str = "http://127.0.0.1:9/lost";

struct Options {
    /// After this long without a final answer a payment is stale.
    pub deadline: Duration,
    pub paysys_confirm: bool,
    pub sim: Box<dyn FnOnce(&mut SimConfig) + Send>,
    /// Whether the worker runs in this process (the crash test runs it as a
    /// child process instead).
    pub run_worker: bool,
    /// RabbitMQ (the default) or the embedded queue.
    pub backend: BackendKind,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            deadline: Duration::from_secs(30),
            paysys_confirm: true,
            sim: Box::new(|_| {}),
            run_worker: true,
            backend: BackendKind::RabbitMq,
        }
    }
}

struct App {
    pub sim: SimHandle,
    pub queue: Queue,
    pub ledger: Ledger,
    pub receiver: SocketAddr,
    pub shop: SocketAddr,
    finance: Consumer,
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    http: reqwest::Client,
    /// The ledger's and the worker's clock (see [`App::advance`]).
    clock: Arc<TestClock>,
    // Dropped last: deletes the RabbitMQ topology and the files.
    _queue_dir: TestQueue,
}

async fn spawn_app(options: Options) -> App {
    let test_queue = TestQueue::new(options.backend).unwrap();
    let receiver_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = receiver_listener.local_addr().unwrap();
    let shop = shop_listener.local_addr().unwrap();

    let mut sim_config = SimConfig::for_tests();
    sim_config.portmanat.callback_url = format!("http://{receiver}/callbacks/portmanat");
    sim_config.paysys.notify_url = format!("http://{receiver}/callbacks/paysys");
    sim_config.plutu.callback_url = format!("http://{receiver}/callbacks/plutu");
    sim_config.plutu.default_return_url = format!("http://{receiver}/callbacks/plutu");
    (options.sim)(&mut sim_config);
    let sim = Sim::start(sim_config).await.unwrap();
    let base = sim.base_url().trim_end_matches('/').to_owned();

    let policy = CheckPolicy {
        first: Duration::from_millis(50),
        multiplier: 2.0,
        max_interval: Duration::from_millis(300),
        jitter: 0.1,
        deadline: options.deadline,
    };
    let clock = TestClock::new();
    let mut worker = WorkerSettings {
        clock: clock.shared(),
        batch_wait: Duration::from_millis(5),
        relay_interval: Duration::from_millis(50),
        poll_idle: Duration::from_millis(25),
        paysys_confirm: options.paysys_confirm,
        shutdown_grace: Duration::from_secs(3),
        handoff: Some(paysettle_testkit::handoff::keys()),
        ..WorkerSettings::default()
    };
    worker.portmanat.insert(
        Account::default(),
        PortmanatAccess {
            base_url: format!("{base}/portmanat"),
            accept_test_payments: false,
        },
    );
    worker.paysys.insert(
        Account::default(),
        PaysysAccess {
            gateway_url: format!("{base}/paysys/gateway"),
            service_id: "2001".into(),
            secret_key: SecretString::from("demo-paysys-secret"),
            rules: Default::default(),
        },
    );
    worker.plutu.push(Account::default());
    for provider in Provider::ALL {
        worker.limits.insert(
            provider,
            ProviderLimits {
                concurrency: 8,
                rate_per_sec: 500.0,
                timeout: Duration::from_secs(2),
                policy,
            },
        );
    }
    let worker = Arc::new(worker);

    let mut queue_config = test_queue.config();
    queue_config.finance_queue = true;
    queue_config.delivery_limit = 5;
    let queue = Queue::start(queue_config).await.unwrap();
    let ledger = Ledger::open(
        test_queue.dir.path().join("ledger.sqlite"),
        LedgerOptions {
            policies: worker.policies(),
            rules: worker.ledger_rules(),
            clock: worker.clock.clone(),
            ..LedgerOptions::default()
        },
    )
    .unwrap();
    let finance = queue.consumer(QueueKind::Finance).unwrap();

    // Every browser return here comes from the simulator at one address,
    // as through a proxy: its hints are genuine traffic, not one client's
    // (the door's per-client limits are tested in tests/hostile and the
    // receiver's own tests).
    let mut receiver_settings = ReceiverSettings {
        hints: paysettle_receiver::HintLimits {
            per_sec: 10_000.0,
            per_client_per_sec: 10_000.0,
            ..paysettle_receiver::HintLimits::default()
        },
        handoff: Some(paysettle_testkit::handoff::keys()),
        ..ReceiverSettings::default()
    };
    receiver_settings.paysys.insert(
        Account::default(),
        PaysysAccount {
            auth: paysettle_core::paysys::NotificationAuth::new(&[(
                SecretString::from("demo-vendor"),
                SecretString::from("demo-vendor-secret"),
            )])
            .unwrap(),
        },
    );
    receiver_settings.plutu.insert(
        Account::default(),
        PlutuAccount {
            verifier: paysettle_core::plutu::CallbackVerifier::new(SecretString::from(
                "sk_demo_plutu_secret",
            ))
            .unwrap(),
            result_page: None,
        },
    );
    receiver_settings
        .portmanat
        .insert(Account::default(), PortmanatAccount::default());

    let shutdown = CancellationToken::new();
    let mut tasks = Vec::new();
    {
        let (queue, stop, settings) =
            (queue.clone(), shutdown.clone(), Arc::new(receiver_settings));
        tasks.push(tokio::spawn(async move {
            paysettle_receiver::run(receiver_listener, settings, queue, stop)
                .await
                .unwrap()
        }));
    }
    {
        let (ledger, settings, stop) = (ledger.clone(), Arc::clone(&worker), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            paysettle_worker::shop::serve(
                shop_listener,
                ledger,
                paysettle_worker::shop::ShopApiSettings::default(),
                settings,
                stop,
            )
            .await
            .unwrap()
        }));
    }
    if options.run_worker {
        let (ledger, queue, settings, stop) = (
            ledger.clone(),
            queue.clone(),
            Arc::clone(&worker),
            shutdown.clone(),
        );
        tasks.push(tokio::spawn(async move {
            paysettle_worker::run(ledger, queue, settings, stop)
                .await
                .unwrap()
        }));
    }
    App {
        sim,
        queue,
        ledger,
        receiver,
        shop,
        finance,
        shutdown,
        tasks,
        http: reqwest::Client::new(),
        clock,
        _queue_dir: test_queue,
    }
}

fn sim_provider(provider: Provider) -> SimProvider {
    match provider {
        Provider::Portmanat => SimProvider::Portmanat,
        Provider::Paysys => SimProvider::Paysys,
        Provider::Plutu => SimProvider::Plutu,
    }
}

/// How a test payment is made.
struct Pay {
    pub provider: Provider,
    pub reference: String,
    pub minor: i64,
    pub outcome: Outcome,
    pub pending: Duration,
    /// The amount the shop registers, when it differs from what is paid.
    pub registered_minor: Option<i64>,
    /// Where the provider's callbacks go (default: the receiver).
    pub callback_url: Option<String>,
}

impl Pay {
    pub fn new(provider: Provider, reference: &str, minor: i64, outcome: Outcome) -> Pay {
        Pay {
            provider,
            reference: reference.into(),
            minor,
            outcome,
            pending: Duration::from_millis(300),
            registered_minor: None,
            callback_url: None,
        }
    }
}

impl App {
    /// Starts a payment at the provider and registers it through the shop API.
    pub async fn pay(&self, pay: Pay) -> PaymentView {
        let mut new = NewPayment::new(sim_provider(pay.provider), pay.reference.clone(), pay.minor)
            .outcome(pay.outcome)
            .pending(pay.pending);
        if let Some(url) = &pay.callback_url {
            new = new.callback_url(url.clone());
        }
        let view = self.sim.create_payment(new).unwrap();
        let mut body = json!({
            "provider": pay.provider,
            "reference": pay.reference,
            "amount": pay.registered_minor.unwrap_or(pay.minor),
            "currency": view.currency,
        });
        if let Some(txn) = &view.provider_txn_id
            && pay.provider == Provider::Portmanat
        {
            body["provider_transaction_id"] = json!(txn);
        }
        let response = self
            .http
            .post(format!("http://{}/v1/payments", self.shop))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            201,
            "registering {}: {}",
            pay.reference,
            response.text().await.unwrap()
        );
        view
    }

    /// Starts a payment at the provider that the shop never registers: the
    /// ledger learns of it from the provider alone.
    pub async fn pay_unregistered(
        &self,
        provider: Provider,
        reference: &str,
        minor: i64,
        outcome: Outcome,
        pending: Duration,
    ) -> PaymentView {
        let new = NewPayment::new(sim_provider(provider), reference, minor)
            .outcome(outcome)
            .pending(pending);
        self.sim.create_payment(new).unwrap()
    }

    /// Moves time forward by `by` for the provider (the simulator's
    /// `advance()`, which returns once what then falls due is done) and for
    /// paysettle (its clock): past a deadline or a pending period without
    /// waiting for it.
    pub async fn advance(&self, by: Duration) {
        self.clock.advance(by);
        self.sim.advance(by).await.unwrap();
    }

    pub fn amqp_url(&self) -> &str {
        &self._queue_dir.amqp_url
    }

    pub fn prefix(&self) -> &str {
        &self._queue_dir.prefix
    }

    pub async fn payment(&self, provider: Provider, reference: &str) -> Option<PaymentRecord> {
        self.ledger
            .payment(
                provider,
                Account::default(),
                paysettle_core::Reference::parse(reference).unwrap(),
            )
            .await
            .unwrap()
    }

    /// Waits until every named payment has left created/pending.
    pub async fn settled(&self, payments: &[(Provider, &str)], within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let mut waiting = Vec::new();
            for (provider, reference) in payments {
                let status = self.payment(*provider, reference).await.map(|p| p.status);
                if !matches!(status, Some(s) if !matches!(s, paysettle_core::PaymentStatus::Created | paysettle_core::PaymentStatus::Pending))
                {
                    waiting.push(format!("{reference}: {status:?}"));
                }
            }
            if waiting.is_empty() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "not settled within {within:?}: {waiting:?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Every event finance received so far, once the outbox is empty (so
    /// every event written is confirmed in RabbitMQ and nothing is missed).
    pub async fn events(&mut self) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !self.ledger.unpublished(1).await.unwrap().is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the outbox did not drain"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut events = Vec::new();
        loop {
            let batch = self
                .finance
                .next_batch(256, Duration::from_millis(1000))
                .await
                .unwrap();
            if batch.is_empty() {
                return events;
            }
            for delivery in batch {
                let body: Value = serde_json::from_slice(delivery.body()).unwrap();
                assert_eq!(
                    body["event_id"],
                    delivery.message_id(),
                    "message_id is the event_id"
                );
                events.push(body);
                delivery.ack().await.unwrap();
            }
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("a part did not stop")
                .unwrap();
        }
        self.queue.shutdown(Duration::from_secs(3)).await;
        self.sim.shutdown().await;
    }
}

/// Events by reference: the types finance saw for each payment, in order.
fn by_reference(events: &[Value]) -> BTreeMap<String, Vec<String>> {
    let mut map: BTreeMap<String, Vec<(i64, String)>> = BTreeMap::new();
    for event in events {
        map.entry(event["reference"].as_str().unwrap().to_owned())
            .or_default()
            .push((
                event["ledger_version"].as_i64().unwrap(),
                event["type"].as_str().unwrap().to_owned(),
            ));
    }
    map.into_iter()
        .map(|(reference, mut list)| {
            list.sort();
            (reference, list.into_iter().map(|(_, t)| t).collect())
        })
        .collect()
}
