//! The queue between paysettle's receiver and worker, and the road settled
//! events take to finance.
//!
//! A callback the receiver has answered must never be lost (Plutu and
//! Portmanat never send one again), so [`Queue::publish`] returns only once the
//! message is durable somewhere: confirmed by RabbitMQ, or, when the broker is
//! unreachable or slow, written to a local spool that a forwarder drains into
//! RabbitMQ later. A shop on one box, a laptop or a test runs the embedded
//! backend instead, a SQLite file with the same at-least-once contract.
//!
//! The embedded backend and the spool store in the queue crate's own durable
//! FIFO ([`fifo`]); the SQLite plumbing under it (opening the file with its
//! pragmas, the group-commit writer thread) is `paysettle-sqlite`'s, shared
//! with the ledger. This crate never depends on rusqlite itself, and it is
//! the only one that depends on lapin (`deny.toml`).
//!
//! Modules:
//! - [`config`]: [`QueueConfig`], the plain settings struct, and [`BackendKind`].
//! - [`topology`]: the queue and exchange names under the prefix and how they
//!   are declared (RabbitMQ arguments, conflicts).
//! - `message` ([`Message`], [`Durable`], [`QueueKind`]) and [`Delivery`]: what
//!   goes in and comes out, the same on both backends.
//! - `rabbit`: the lapin connection supervisor, confirmed publishes, consumers.
//! - [`fifo`]: the durable, leased FIFO in one SQLite file, with its error
//!   [`fifo::FifoError`]: the storage behind the embedded backend and the spool.
//! - `fifo_writer`: the thread that drives a FIFO file with group commits
//!   (a `paysettle_sqlite::Writer`), and the async handle to it.
//! - `embedded`: the SQLite backend over the FIFO.
//! - `spool`: spool-and-forward for the RabbitMQ backend, over a FIFO file.
//! - `stats`: [`QueueStats`] counters for `/metrics`.
//! - [`error`]: [`QueueError`], with [`QueueError::is_retryable`].

pub mod config;
mod embedded;
pub mod error;
pub mod fifo;
mod fifo_writer;
mod full_gate;
mod message;
mod rabbit;
mod spool;
mod stats;
pub mod topology;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

pub use config::{BackendKind, QueueConfig};
pub use error::QueueError;
pub use message::{DEAD_LETTER_REASON_HEADER, Durable, Message, QueueKind};
pub use stats::QueueStats;
pub use topology::Topology;

use embedded::{EmbeddedConsumer, EmbeddedQueue, EmbeddedSettle};
use rabbit::Broker;
use rabbit::consumer::{RabbitConsumer, RabbitSettle};
use spool::Spool;
use stats::{Counters, bump};

/// RabbitMQ's default `consumer_timeout`: an unacknowledged delivery older
/// than this closes the consumer's channel.
const RABBITMQ_CONSUMER_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The queue: cheap to clone and shared by every receiver task, the worker and
/// the outbox relay. The backend is picked by [`QueueConfig::backend`]; both
/// keep the same contract, so callers never ask which one runs.
#[derive(Debug, Clone)]
pub struct Queue {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    backend: Backend,
    topology: Topology,
    stats: Arc<Counters>,
}

#[derive(Debug)]
enum Backend {
    Rabbit(RabbitBackend),
    Embedded(EmbeddedQueue),
}

#[derive(Debug)]
struct RabbitBackend {
    broker: Arc<Broker>,
    spool: Option<Spool>,
    /// Whether the broker said the hints queue was full a moment ago.
    hints_full: full_gate::FullGate,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Stops the supervisor and forwarder when the last `Queue` is dropped
    /// without `shutdown`.
    _stop_on_drop: DropGuard,
}

impl Queue {
    /// Opens the backend and declares the topology (idempotently).
    ///
    /// With RabbitMQ, a topology conflict fails here, naming the queue and the
    /// argument. An unreachable broker fails here only when there is no spool;
    /// with a spool the queue starts on it and connects in the background.
    #[tracing::instrument(skip_all, fields(prefix = %config.prefix, backend = ?config.backend))]
    pub async fn start(config: QueueConfig) -> Result<Queue, QueueError> {
        config.validate()?;
        let topology = Topology::new(&config.prefix, config.finance_queue);
        let stats = Arc::new(Counters::default());
        let backend = match config.backend {
            BackendKind::Embedded => Backend::Embedded(
                EmbeddedQueue::start(&config, topology.clone(), stats.clone()).await?,
            ),
            BackendKind::RabbitMq => {
                Backend::Rabbit(start_rabbit(config, topology.clone(), stats.clone()).await?)
            }
        };
        Ok(Queue {
            inner: Arc::new(Inner {
                backend,
                topology,
                stats,
            }),
        })
    }

    /// Makes `message` durable on the callbacks queue, for the receiver to
    /// answer the provider after. Safe to call from many tasks at once; each
    /// call waits only for its own confirm, so publishes are pipelined.
    ///
    /// Returns where it became durable. An error means it is durable nowhere
    /// and the provider must be told to retry (503).
    pub async fn publish(&self, message: &Message) -> Result<Durable, QueueError> {
        validate(message)?;
        match &self.inner.backend {
            Backend::Embedded(e) => e.publish(message).await,
            Backend::Rabbit(r) => r.publish_to(QueueKind::Callbacks, message).await,
        }
    }

    /// Makes a Portmanat return hint durable on the hints queue, apart from
    /// signed callbacks, so a callback never waits behind one. The hints
    /// queue is bounded: past its bound the hint is refused with
    /// [`QueueError::Full`] (counted in [`QueueStats::hints_refused`]), and
    /// the receiver drops it, counted, and still redirects the browser. With
    /// RabbitMQ away, a hint is spooled as a callback is.
    pub async fn publish_hint(&self, message: &Message) -> Result<Durable, QueueError> {
        validate(message)?;
        match &self.inner.backend {
            Backend::Embedded(e) => e.publish_hint(message).await,
            Backend::Rabbit(r) => r.publish_to(QueueKind::Hints, message).await,
        }
    }

    /// Publishes a settled event to the events exchange with `routing_key`
    /// (`payment.<status>.<provider>`) and returns only after the broker
    /// confirmed it; a returned (unroutable) message, a nack or a timeout is an
    /// error. Never spooled: the outbox is the event's durable home, and the
    /// relay marks it sent only after this returns `Ok`.
    pub async fn publish_event(
        &self,
        routing_key: &str,
        message: &Message,
    ) -> Result<(), QueueError> {
        validate(message)?;
        let result = match &self.inner.backend {
            Backend::Embedded(e) => return e.publish_event(routing_key, message).await,
            Backend::Rabbit(r) => {
                r.broker
                    .publish_confirmed(&self.inner.topology.events_exchange, routing_key, message)
                    .await
            }
        };
        match &result {
            Ok(()) => bump(&self.inner.stats.events_published, 1),
            Err(e) => {
                bump(&self.inner.stats.events_failed, 1);
                // The caller (the relay) reports failures once per round, not
                // once per event: a broker away would otherwise flood the log.
                tracing::debug!(routing_key, message_id = %message.message_id, error = %e, "event not published");
            }
        }
        result
    }

    /// A consumer of one of the topology's queues (the worker takes
    /// [`QueueKind::Callbacks`]). Manual acknowledgement: nothing leaves the
    /// queue until [`Delivery::ack`].
    pub fn consumer(&self, kind: QueueKind) -> Result<Consumer, QueueError> {
        self.consumer_holding(kind, None)
    }

    /// A consumer that is never handed more than `max_held` unsettled
    /// deliveries: with RabbitMQ, its channel's prefetch is that (instead
    /// of `queue.prefetch`), so the broker keeps nothing waiting in the
    /// consumer that it could not settle before the consumer timeout; the
    /// embedded backend leases only what a batch asks for anyway.
    pub fn consumer_holding(
        &self,
        kind: QueueKind,
        max_held: Option<u16>,
    ) -> Result<Consumer, QueueError> {
        let inner = match &self.inner.backend {
            Backend::Embedded(e) => ConsumerInner::Embedded(e.consumer(kind)?),
            Backend::Rabbit(r) => ConsumerInner::Rabbit(Box::new(RabbitConsumer::new(
                r.broker.clone(),
                kind,
                max_held,
            )?)),
        };
        Ok(Consumer { inner })
    }

    /// How long a delivery may stay unsettled before the queue hands it to
    /// someone else: RabbitMQ's consumer acknowledgement timeout (its
    /// default, 30 minutes; RabbitMQ 3.10 has no per-queue setting); a
    /// consumer that holds work longer sees its channel closed and the work
    /// delivered again, counted against the delivery limit, so it takes no
    /// more than it can settle within it. Embedded, `None`: a consumer
    /// renews the leases of what it holds for as long as it holds it.
    pub fn delivery_deadline(&self) -> Option<Duration> {
        match &self.inner.backend {
            Backend::Embedded(_) => None,
            Backend::Rabbit(_) => Some(RABBITMQ_CONSUMER_TIMEOUT),
        }
    }

    /// Whether a publish would be durable now (broker healthy, or spool
    /// writable): what `/readyz` reports.
    pub fn is_durable(&self) -> bool {
        match &self.inner.backend {
            Backend::Embedded(e) => e.is_durable(),
            Backend::Rabbit(r) => {
                r.broker.is_healthy() || r.spool.as_ref().is_some_and(Spool::is_writable)
            }
        }
    }

    /// Whether RabbitMQ is connected and confirming (always `false` embedded).
    pub fn is_broker_healthy(&self) -> bool {
        match &self.inner.backend {
            Backend::Embedded(_) => false,
            Backend::Rabbit(r) => r.broker.is_healthy(),
        }
    }

    /// Messages waiting in the spool for the broker (0 without a spool): the
    /// gauge that tells an operator the broker has been away.
    pub async fn spool_depth(&self) -> Result<u64, QueueError> {
        match &self.inner.backend {
            Backend::Rabbit(RabbitBackend {
                spool: Some(spool), ..
            }) => spool.depth().await,
            _ => Ok(0),
        }
    }

    /// Messages in one of the topology's queues (ready and unacknowledged on
    /// the embedded backend; ready only on RabbitMQ).
    pub async fn message_count(&self, kind: QueueKind) -> Result<u64, QueueError> {
        match &self.inner.backend {
            Backend::Embedded(e) => e.message_count(kind).await,
            Backend::Rabbit(r) => r.broker.message_count(kind).await,
        }
    }

    /// Counters since start, for `/metrics`.
    pub fn stats(&self) -> QueueStats {
        self.inner.stats.snapshot()
    }

    /// The names in use.
    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// Stops reconnecting and forwarding and closes the broker connection,
    /// waiting at most `grace`. Safe while the broker is away. Publishes after
    /// this fail (RabbitMQ) or still work (embedded, which has nothing to stop).
    pub async fn shutdown(&self, grace: Duration) {
        if let Backend::Rabbit(r) = &self.inner.backend {
            r.broker.shutdown.cancel();
            let tasks: Vec<_> =
                std::mem::take(&mut *r.tasks.lock().unwrap_or_else(PoisonError::into_inner));
            for task in tasks {
                if tokio::time::timeout(grace, task).await.is_err() {
                    tracing::warn!("a queue task did not stop within the grace period");
                }
            }
        }
    }
}

async fn start_rabbit(
    config: QueueConfig,
    topology: Topology,
    stats: Arc<Counters>,
) -> Result<RabbitBackend, QueueError> {
    let spool = match &config.spool_path {
        Some(path) => Some(Spool::open(path, &topology).await?),
        None => None,
    };
    let wait = config.connect_timeout + Duration::from_secs(1);
    let broker = Broker::new(config, topology, stats);
    let stop_on_drop = broker.shutdown.clone().drop_guard();
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let mut tasks = vec![tokio::spawn(rabbit::supervise(broker.clone(), first_tx))];
    let first = tokio::time::timeout(wait, first_rx).await;
    let stop = |e: QueueError, shutdown: &CancellationToken| {
        shutdown.cancel();
        Err(e)
    };
    match first {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e @ QueueError::TopologyConflict { .. }))) => return stop(e, &broker.shutdown),
        other => {
            let why = match other {
                Ok(Ok(Err(e))) => e,
                _ => QueueError::BrokerUnavailable(
                    "no connection within the connect timeout".to_owned(),
                ),
            };
            if spool.is_none() {
                return stop(why, &broker.shutdown);
            }
            tracing::warn!(error = %why, "starting on the spool; the broker is unreachable");
            broker.set_degraded(true, &why);
        }
    }
    if let Some(spool) = &spool {
        tasks.push(tokio::spawn(spool::forward(broker.clone(), spool.clone())));
    }
    Ok(RabbitBackend {
        broker,
        spool,
        hints_full: full_gate::FullGate::default(),
        tasks: Mutex::new(tasks),
        _stop_on_drop: stop_on_drop,
    })
}

impl RabbitBackend {
    /// Publishes to the callbacks or the hints queue, spooling when the
    /// broker cannot confirm.
    async fn publish_to(&self, kind: QueueKind, message: &Message) -> Result<Durable, QueueError> {
        let stats = &self.broker.stats;
        let queue = match kind {
            QueueKind::Hints => &self.broker.topology.hints,
            _ => &self.broker.topology.callbacks,
        };
        if kind == QueueKind::Hints && self.hints_full.refuses(Instant::now()) {
            bump(&stats.hints_refused, 1);
            bump(&stats.hints_refused_unasked, 1);
            return Err(QueueError::Full(queue.clone()));
        }
        let broker_error = if self.spool.is_some() && self.broker.is_degraded() {
            QueueError::BrokerUnavailable("broker degraded; spooling".to_owned())
        } else {
            match self.broker.publish_confirmed("", queue, message).await {
                Ok(()) => {
                    if kind == QueueKind::Hints {
                        self.hints_full.room();
                    }
                    bump(&stats.published_broker, 1);
                    return Ok(Durable::Broker);
                }
                // The hints queue is full (`x-overflow = reject-publish`
                // nacks): spooling would only bring it back to a full queue,
                // and asking again for the next hints would only cost the
                // broker (see `full_gate`).
                Err(QueueError::Nacked) if kind == QueueKind::Hints => {
                    self.hints_full.full(Instant::now());
                    bump(&stats.hints_refused, 1);
                    return Err(QueueError::Full(queue.clone()));
                }
                // Spooling would not help: the broker would return it again.
                Err(e @ (QueueError::Unroutable { .. } | QueueError::InvalidMessage(_))) => {
                    bump(&stats.publish_failed, 1);
                    tracing::error!(message_id = %message.message_id, error = %e, "callback not publishable");
                    return Err(e);
                }
                Err(e) => e,
            }
        };
        let Some(spool) = &self.spool else {
            bump(&stats.publish_failed, 1);
            return Err(broker_error);
        };
        if !self.broker.is_degraded() {
            self.broker.set_degraded(true, &broker_error);
        }
        match spool.push(kind, message).await {
            Ok(()) => {
                bump(&stats.published_spooled, 1);
                tracing::debug!(message_id = %message.message_id, reason = %broker_error, "spooled");
                Ok(Durable::Spooled)
            }
            Err(spool_error) => {
                bump(&stats.publish_failed, 1);
                tracing::error!(
                    message_id = %message.message_id,
                    broker = %broker_error,
                    spool = %spool_error,
                    "callback durable nowhere"
                );
                Err(QueueError::NotDurable {
                    broker: Box::new(broker_error),
                    spool: Box::new(spool_error),
                })
            }
        }
    }
}

/// AMQP short strings are at most 255 bytes; refusing here keeps a message
/// that could never be sent out of the spool.
fn validate(message: &Message) -> Result<(), QueueError> {
    let long = |s: &str| s.len() > 255;
    if long(&message.message_id) || long(&message.content_type) {
        return Err(QueueError::InvalidMessage(
            "message_id and content_type must be at most 255 bytes".to_owned(),
        ));
    }
    if message.headers.keys().any(|k| long(k)) {
        return Err(QueueError::InvalidMessage(
            "header names must be at most 255 bytes".to_owned(),
        ));
    }
    Ok(())
}

/// Takes deliveries from one queue in batches.
#[derive(Debug)]
pub struct Consumer {
    inner: ConsumerInner,
}

#[derive(Debug)]
enum ConsumerInner {
    // Boxed: one consumer per worker, so the allocation is nothing, and the
    // enum stays small.
    Rabbit(Box<RabbitConsumer>),
    Embedded(EmbeddedConsumer),
}

impl Consumer {
    /// Up to `max` deliveries: waits up to `wait` for the first, then takes only
    /// what is already there, so a quiet queue costs latency `wait` at most and a
    /// busy one fills the batch at once. An empty batch means nothing arrived.
    ///
    /// Dropping the consumer returns its unsettled deliveries to the queue, as a
    /// consumer that dies does.
    pub async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        match &mut self.inner {
            ConsumerInner::Rabbit(c) => c.next_batch(max, wait).await,
            ConsumerInner::Embedded(c) => c.next_batch(max, wait).await,
        }
    }
}

/// One delivered message, to be settled exactly once with [`Delivery::ack`],
/// [`Delivery::nack_requeue`] or [`Delivery::dead_letter`]. One that is never
/// settled is delivered again (when its consumer goes away, or its embedded
/// lease expires).
#[derive(Debug)]
pub struct Delivery {
    message: Message,
    delivery_count: u32,
    redelivered: bool,
    settle: Settle,
    settled: AtomicBool,
}

#[derive(Debug)]
enum Settle {
    Rabbit(RabbitSettle),
    Embedded(EmbeddedSettle),
}

impl Delivery {
    fn new(message: Message, delivery_count: u32, redelivered: bool, settle: Settle) -> Self {
        Self {
            message,
            delivery_count,
            redelivered,
            settle,
            settled: AtomicBool::new(false),
        }
    }

    /// The whole message.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The producer's id: what the worker dedupes on.
    pub fn message_id(&self) -> &str {
        &self.message.message_id
    }

    /// The message's headers.
    pub fn headers(&self) -> &BTreeMap<String, String> {
        &self.message.headers
    }

    /// The payload.
    pub fn body(&self) -> &[u8] {
        &self.message.body
    }

    /// Which delivery of this message this is, 1 for the first: how close it is
    /// to the delivery limit.
    pub fn delivery_count(&self) -> u32 {
        self.delivery_count
    }

    /// Whether the message was delivered before (to this or another consumer).
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    fn claim(&self) -> Result<(), QueueError> {
        if self.settled.swap(true, Ordering::AcqRel) {
            return Err(QueueError::DeliveryLost);
        }
        Ok(())
    }

    fn unclaim_unless_lost<T>(&self, result: Result<T, QueueError>) -> Result<T, QueueError> {
        if let Err(e) = &result
            && !matches!(e, QueueError::DeliveryLost)
        {
            self.settled.store(false, Ordering::Release);
        }
        result
    }

    /// Done with it: removes it from the queue. After the ledger commit, never before.
    pub async fn ack(&self) -> Result<(), QueueError> {
        self.claim()?;
        let result = match &self.settle {
            Settle::Rabbit(s) => s.ack().await,
            Settle::Embedded(s) => s.ack().await,
        };
        self.unclaim_unless_lost(result)
    }

    /// A transient failure: puts it back to be delivered again (counting
    /// towards the delivery limit).
    pub async fn nack_requeue(&self) -> Result<(), QueueError> {
        self.claim()?;
        let result = match &self.settle {
            Settle::Rabbit(s) => s.nack_requeue().await,
            Settle::Embedded(s) => s.nack_requeue().await,
        };
        self.unclaim_unless_lost(result)
    }

    /// A poison message: moves it to the dead-letter queue with `reason` in the
    /// [`DEAD_LETTER_REASON_HEADER`] header. Only callbacks have a dead-letter queue.
    pub async fn dead_letter(&self, reason: &str) -> Result<(), QueueError> {
        self.claim()?;
        let result = match &self.settle {
            Settle::Rabbit(s) => s.dead_letter(&self.message, reason).await,
            Settle::Embedded(s) => s.dead_letter(reason).await,
        };
        self.unclaim_unless_lost(result)
    }
}
