//! The worker's parts against a real ledger file, the embedded queue and the
//! provider simulator over real HTTP. (The whole product, receiver and
//! RabbitMQ included, is tested end to end in the workspace's `tests/`.)

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use paysettle_core::clock::Clock as _;
use paysettle_core::inbound::{FORMAT_VERSION, InboundCallback, Payload, RawRequest};
use paysettle_core::portmanat::ReturnHint;
use paysettle_core::schedule::CheckPolicy;
use paysettle_core::{
    Account, Currency, Money, Observation, ObservedStatus, PaymentStatus, Provider, ProviderTxnId,
    Reference, Source,
};
use paysettle_queue::{BackendKind, Message, Queue, QueueConfig, QueueKind};
use paysettle_sim::model::{Outcome, Provider as SimProvider};
use paysettle_sim::scenario::{Faults, ScenarioPatch};
use paysettle_sim::{NewPayment, Sim, SimConfig, SimHandle};
use paysettle_store::{Ledger, LedgerOptions, PaymentRecord, Registration, Synchronous};
use paysettle_testkit::TestClock;
use paysettle_worker::{
    Applier, PaysysAccess, Poller, PortmanatAccess, ProviderLimits, Relay, StatusClient,
    WorkerSettings,
};
use secrecy::SecretString;

/// Where the simulator sends callbacks in these tests: nowhere. Every
/// payment here settles by the worker's own work.
const NOWHERE: &str = "http://127.0.0.1:9/lost";

struct World {
    _dir: tempfile::TempDir,
    ledger: Ledger,
    queue: Queue,
    sim: SimHandle,
    settings: Arc<WorkerSettings>,
    client: StatusClient,
    /// The ledger's and the worker's clock: a test moves it past deadlines
    /// and `Retry-After`s instead of waiting.
    clock: Arc<TestClock>,
}

fn test_policy(deadline: Duration) -> CheckPolicy {
    CheckPolicy {
        first: Duration::from_millis(10),
        multiplier: 2.0,
        max_interval: Duration::from_millis(150),
        jitter: 0.0,
        deadline,
    }
}

async fn world_with(deadline: Duration, tune: impl FnOnce(&mut WorkerSettings)) -> World {
    world_where(deadline, SimConfig::for_tests(), tune).await
}

/// A world whose ledger and worker read `clock`.
async fn world_clocked(
    deadline: Duration,
    clock: Arc<TestClock>,
    tune: impl FnOnce(&mut WorkerSettings),
) -> World {
    world_on(deadline, SimConfig::for_tests(), clock, tune).await
}

/// A world whose simulator runs with `sim_config`.
async fn world_where(
    deadline: Duration,
    sim_config: SimConfig,
    tune: impl FnOnce(&mut WorkerSettings),
) -> World {
    world_on(deadline, sim_config, TestClock::new(), tune).await
}

/// A world whose embedded queue leases deliveries for `lease`.
async fn world_leased(
    deadline: Duration,
    sim_config: SimConfig,
    lease: Duration,
    tune: impl FnOnce(&mut WorkerSettings),
) -> World {
    world_at(deadline, sim_config, TestClock::new(), lease, tune).await
}

async fn world_on(
    deadline: Duration,
    sim_config: SimConfig,
    clock: Arc<TestClock>,
    tune: impl FnOnce(&mut WorkerSettings),
) -> World {
    world_at(deadline, sim_config, clock, Duration::from_secs(5), tune).await
}

async fn world_at(
    deadline: Duration,
    sim_config: SimConfig,
    clock: Arc<TestClock>,
    lease: Duration,
    tune: impl FnOnce(&mut WorkerSettings),
) -> World {
    let dir = tempfile::tempdir().unwrap();
    let sim = Sim::start(sim_config).await.unwrap();
    let settings = test_settings(&sim, deadline, &clock, tune);
    let ledger = Ledger::open(dir.path().join("ledger.db"), ledger_options(&settings)).unwrap();
    let queue = Queue::start(QueueConfig {
        backend: BackendKind::Embedded,
        embedded_path: dir.path().join("queue.db"),
        spool_path: None,
        lease_duration: lease,
        ..QueueConfig::default()
    })
    .await
    .unwrap();
    let client = StatusClient::new(Arc::clone(&settings)).unwrap();
    World {
        _dir: dir,
        ledger,
        queue,
        sim,
        settings,
        client,
        clock,
    }
}

/// The worker's settings against `sim`, each provider at 1000 checks a
/// second, then `tune`d.
fn test_settings(
    sim: &SimHandle,
    deadline: Duration,
    clock: &Arc<TestClock>,
    tune: impl FnOnce(&mut WorkerSettings),
) -> Arc<WorkerSettings> {
    let base = sim.base_url().trim_end_matches('/').to_owned();
    let mut settings = WorkerSettings {
        batch_wait: Duration::from_millis(5),
        handoff: Some(paysettle_testkit::handoff::keys()),
        clock: clock.shared(),
        ..WorkerSettings::default()
    };
    settings.portmanat.insert(
        Account::default(),
        PortmanatAccess {
            base_url: format!("{base}/portmanat"),
            accept_test_payments: false,
        },
    );
    settings.paysys.insert(
        Account::default(),
        PaysysAccess {
            gateway_url: format!("{base}/paysys/gateway"),
            service_id: "2001".into(),
            secret_key: SecretString::from("demo-paysys-secret"),
            rules: Default::default(),
        },
    );
    settings.plutu.push(Account::default());
    for provider in Provider::ALL {
        settings.limits.insert(
            provider,
            ProviderLimits {
                concurrency: 8,
                rate_per_sec: 1000.0,
                timeout: Duration::from_millis(1500),
                policy: test_policy(deadline),
            },
        );
    }
    tune(&mut settings);
    Arc::new(settings)
}

fn ledger_options(settings: &WorkerSettings) -> LedgerOptions {
    LedgerOptions {
        synchronous: Synchronous::Normal,
        policies: settings.policies(),
        rules: settings.ledger_rules(),
        clock: settings.clock.clone(),
        ..LedgerOptions::default()
    }
}

async fn world() -> World {
    world_with(Duration::from_secs(20), |_| {}).await
}

fn money(provider: Provider, minor: i64) -> Money {
    let currency = match provider {
        Provider::Portmanat => Currency::Azn,
        Provider::Paysys => Currency::Uzs,
        Provider::Plutu => Currency::Usd,
    };
    Money::from_minor(minor, currency).unwrap()
}

fn sim_provider(provider: Provider) -> SimProvider {
    match provider {
        Provider::Portmanat => SimProvider::Portmanat,
        Provider::Paysys => SimProvider::Paysys,
        Provider::Plutu => SimProvider::Plutu,
    }
}

impl World {
    /// Creates a payment at the simulator (callbacks lost) and registers it.
    async fn payment(
        &self,
        provider: Provider,
        reference: &str,
        minor: i64,
        outcome: Outcome,
        pending: Duration,
    ) -> PaymentRecord {
        let view = self
            .sim
            .create_payment(
                NewPayment::new(sim_provider(provider), reference, minor)
                    .outcome(outcome)
                    .pending(pending)
                    .callback_url(NOWHERE),
            )
            .unwrap();
        self.register(provider, reference, minor, view.provider_txn_id.as_deref())
            .await
    }

    async fn register(
        &self,
        provider: Provider,
        reference: &str,
        minor: i64,
        txn: Option<&str>,
    ) -> PaymentRecord {
        let outcome = self
            .ledger
            .register(Registration {
                provider,
                account: Account::default(),
                reference: Reference::parse(reference).unwrap(),
                money: money(provider, minor),
                provider_txn_id: txn.map(|t| ProviderTxnId::parse(t).unwrap()),
                registered_at: self.clock.now(),
            })
            .await
            .unwrap();
        self.ledger
            .payment_by_id(outcome.payment_id())
            .await
            .unwrap()
            .unwrap()
    }

    async fn status(&self, id: paysettle_store::PaymentId) -> PaymentStatus {
        self.ledger.payment_by_id(id).await.unwrap().unwrap().status
    }

    /// Runs the poller until the payment leaves `created`/`pending`, or
    /// fails after ten seconds.
    async fn settle(&self, poller: &mut Poller, id: paysettle_store::PaymentId) -> PaymentStatus {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            poller.run_until_idle().await.unwrap();
            let status = self.status(id).await;
            if !matches!(status, PaymentStatus::Created | PaymentStatus::Pending) {
                return status;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "payment {id:?} still {status} after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn poller(&self) -> Poller {
        Poller::new(
            self.ledger.clone(),
            self.client.clone(),
            Arc::clone(&self.settings),
        )
    }

    fn applier(&self, relay: &Relay) -> Applier {
        Applier::new(
            self.ledger.clone(),
            self.queue.clone(),
            self.client.clone(),
            Arc::clone(&self.settings),
            relay.waker(),
        )
        .unwrap()
    }

    fn relay(&self) -> Relay {
        Relay::new(self.ledger.clone(), self.queue.clone(), 64)
    }

    async fn events(&self) -> Vec<serde_json::Value> {
        let mut consumer = self.queue.consumer(QueueKind::Finance).unwrap();
        let mut events = Vec::new();
        loop {
            let batch = consumer
                .next_batch(100, Duration::from_millis(50))
                .await
                .unwrap();
            if batch.is_empty() {
                return events;
            }
            for delivery in batch {
                let body: serde_json::Value = serde_json::from_slice(delivery.body()).unwrap();
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

    async fn history_sources(&self, id: paysettle_store::PaymentId) -> Vec<(String, String)> {
        self.ledger
            .history(id)
            .await
            .unwrap()
            .into_iter()
            .map(|h| (h.source, h.outcome))
            .collect()
    }
}

fn inbound(provider: Provider, account: &str, payload: Payload) -> InboundCallback {
    InboundCallback {
        format: FORMAT_VERSION,
        id: uuid::Uuid::now_v7().to_string(),
        provider,
        account: Account::parse(account).unwrap(),
        received_at: Timestamp::now(),
        client_addr: Some("127.0.0.1:5555".into()),
        payload,
        raw: RawRequest {
            method: "GET".into(),
            path: format!("/callbacks/{provider}"),
            query: vec![],
            headers: vec![],
            body: None,
        },
    }
}

fn observation(
    provider: Provider,
    reference: &str,
    status: ObservedStatus,
    money: Option<Money>,
) -> Observation {
    Observation {
        provider,
        account: Account::default(),
        reference: Reference::parse(reference).unwrap(),
        provider_txn_id: Some(ProviderTxnId::parse(&format!("T-{reference}")).unwrap()),
        status,
        money,
        provider_status: format!("{status:?}"),
        provider_time: None,
        observed_at: Timestamp::now(),
        source: Source::Callback,
        test: false,
        refund_part: None,
    }
}

/// Publishes to the hints queue, signed, as the receiver does a hint.
async fn publish_hint(queue: &Queue, message: &InboundCallback) {
    let body = serde_json::to_vec(message).unwrap();
    queue
        .publish_hint(&paysettle_testkit::handoff::sign(Message::json(
            message.id.clone(),
            body,
        )))
        .await
        .unwrap();
}

async fn publish(queue: &Queue, message: &InboundCallback) {
    let body = serde_json::to_vec(message).unwrap();
    queue
        .publish(&paysettle_testkit::handoff::sign(Message::json(
            message.id.clone(),
            body,
        )))
        .await
        .unwrap();
}

mod apply;
mod poll;
mod shared;
