//! The embedded backend: the topology's queues as FIFOs in one SQLite file,
//! with the same at-least-once contract as RabbitMQ (leases stand in for
//! unacked deliveries, a queue policy for `x-delivery-limit`).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::fifo::{Lease, QueuePolicy};
use crate::fifo_writer::FifoHandle;
use crate::message::Message;
use crate::stats::{Counters, bump};
use crate::{Delivery, Durable, QueueConfig, QueueError, QueueKind, Topology};

/// How often an idle consumer looks again for leases that expired: pushes and
/// releases wake it at once, expiries have no one to announce them.
const EXPIRY_POLL: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub(crate) struct EmbeddedQueue {
    store: FifoHandle,
    topology: Topology,
    lease_duration: Duration,
    stats: Arc<Counters>,
    /// Whether events go to embedded finance and shop queues (see
    /// [`QueueConfig::embedded_event_queues`]).
    event_queues: bool,
}

/// Why an embedded finance or shop queue cannot be consumed.
const NO_EVENT_QUEUES: &str = "the embedded backend keeps no finance or shop queue: settled events and card registrations are read from the shop API's feeds";

impl EmbeddedQueue {
    /// How long a delivery stays leased.
    pub(crate) fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    pub(crate) async fn start(
        config: &QueueConfig,
        topology: Topology,
        stats: Arc<Counters>,
    ) -> Result<Self, QueueError> {
        let store = FifoHandle::open(&config.embedded_path).await?;
        store
            .declare(&topology.dead_letters, QueuePolicy::default())
            .await?;
        store
            .declare(
                &topology.callbacks,
                QueuePolicy {
                    delivery_limit: Some(config.delivery_limit),
                    dead_letter_queue: Some(topology.dead_letters.clone()),
                },
            )
            .await?;
        if config.embedded_event_queues {
            if let Some(finance) = &topology.finance {
                store.declare(finance, QueuePolicy::default()).await?;
            }
            store
                .declare(&topology.shop, QueuePolicy::default())
                .await?;
        }
        tracing::info!(
            path = %config.embedded_path.display(),
            queue = %topology.callbacks,
            "embedded queue ready"
        );
        Ok(Self {
            store,
            topology,
            lease_duration: config.lease_duration,
            stats,
            event_queues: config.embedded_event_queues,
        })
    }

    pub(crate) async fn publish(&self, message: &Message) -> Result<Durable, QueueError> {
        match self
            .store
            .push(&self.topology.callbacks, message.to_fifo())
            .await
        {
            Ok(()) => {
                bump(&self.stats.published_embedded, 1);
                Ok(Durable::Embedded)
            }
            Err(e) => {
                bump(&self.stats.publish_failed, 1);
                Err(e)
            }
        }
    }

    pub(crate) async fn publish_event(
        &self,
        routing_key: &str,
        message: &Message,
    ) -> Result<(), QueueError> {
        if !self.event_queues {
            // The event's durable home is the ledger's outbox (or the card
            // feed), which the shop API serves: there is nothing to copy it
            // to, and it counts as published.
            bump(&self.stats.events_published, 1);
            return Ok(());
        }
        let Some(queue) = self.topology.route(routing_key) else {
            bump(&self.stats.events_failed, 1);
            return Err(QueueError::Unroutable {
                exchange: self.topology.events_exchange.clone(),
                routing_key: routing_key.to_owned(),
                reply: "NO_ROUTE".to_owned(),
            });
        };
        let res = self.store.push(queue, message.to_fifo()).await;
        bump(
            if res.is_ok() {
                &self.stats.events_published
            } else {
                &self.stats.events_failed
            },
            1,
        );
        res
    }

    pub(crate) fn consumer(&self, kind: QueueKind) -> Result<EmbeddedConsumer, QueueError> {
        self.event_queue_kind(kind)?;
        let queue = self.topology.queue(kind).ok_or(QueueError::Unsupported(
            "the finance queue is configured off",
        ))?;
        Ok(EmbeddedConsumer {
            store: self.store.clone(),
            queue: queue.to_owned(),
            lease_duration: self.lease_duration,
            changes: self.store.changes(),
            outstanding: Arc::new(Mutex::new(HashSet::new())),
            stats: self.stats.clone(),
        })
    }

    pub(crate) async fn message_count(&self, kind: QueueKind) -> Result<u64, QueueError> {
        self.event_queue_kind(kind)?;
        let queue = self.topology.queue(kind).ok_or(QueueError::Unsupported(
            "the finance queue is configured off",
        ))?;
        self.store.depth(queue).await
    }

    fn event_queue_kind(&self, kind: QueueKind) -> Result<(), QueueError> {
        if !self.event_queues && matches!(kind, QueueKind::Finance | QueueKind::Shop) {
            return Err(QueueError::Unsupported(NO_EVENT_QUEUES));
        }
        Ok(())
    }

    pub(crate) fn is_durable(&self) -> bool {
        self.store.is_writable()
    }
}

type Outstanding = Arc<Mutex<HashSet<Lease>>>;

/// Consumes one embedded queue. Dropping it returns its unsettled deliveries to
/// the queue at once, as closing a RabbitMQ channel does.
#[derive(Debug)]
pub(crate) struct EmbeddedConsumer {
    store: FifoHandle,
    queue: String,
    lease_duration: Duration,
    changes: watch::Receiver<u64>,
    outstanding: Outstanding,
    stats: Arc<Counters>,
}

impl EmbeddedConsumer {
    pub(crate) async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let deadline = Instant::now() + wait;
        loop {
            // Mark the current state seen before looking, so a push that lands
            // between the lease and the wait still wakes us.
            self.changes.borrow_and_update();
            let leased = self
                .store
                .lease(&self.queue, max.max(1), self.lease_duration)
                .await?;
            if !leased.is_empty() {
                let mut outstanding = self
                    .outstanding
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                return Ok(leased
                    .into_iter()
                    .map(|m| {
                        outstanding.insert(m.lease);
                        let delivery = m.delivery_count();
                        Delivery::new(
                            Message::from_fifo(m.message),
                            delivery,
                            delivery > 1,
                            crate::Settle::Embedded(EmbeddedSettle {
                                store: self.store.clone(),
                                lease: m.lease,
                                outstanding: self.outstanding.clone(),
                                stats: self.stats.clone(),
                            }),
                        )
                    })
                    .collect());
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let nap = (deadline - now).min(EXPIRY_POLL);
            // Either something was pushed or released, or it is time to look for
            // expired leases; both mean "look again".
            let _ = tokio::time::timeout(nap, self.changes.changed()).await;
        }
    }
}

impl Drop for EmbeddedConsumer {
    fn drop(&mut self) {
        let leases: Vec<Lease> = self
            .outstanding
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain()
            .collect();
        for lease in leases {
            self.store.release_detached(lease);
        }
    }
}

/// How an embedded delivery is settled.
#[derive(Debug)]
pub(crate) struct EmbeddedSettle {
    store: FifoHandle,
    lease: Lease,
    outstanding: Outstanding,
    stats: Arc<Counters>,
}

impl EmbeddedSettle {
    fn forget(&self) {
        self.outstanding
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.lease);
    }

    fn lost_if_not(done: bool) -> Result<(), QueueError> {
        if done {
            Ok(())
        } else {
            Err(QueueError::DeliveryLost)
        }
    }

    pub(crate) async fn ack(&self) -> Result<(), QueueError> {
        let done = self.store.ack(self.lease).await?;
        self.forget();
        bump(&self.stats.acked, u64::from(done));
        Self::lost_if_not(done)
    }

    pub(crate) async fn nack_requeue(&self) -> Result<(), QueueError> {
        let done = self.store.release(self.lease).await?;
        self.forget();
        bump(&self.stats.requeued, u64::from(done));
        Self::lost_if_not(done)
    }

    pub(crate) async fn dead_letter(&self, reason: &str) -> Result<(), QueueError> {
        let done = self.store.dead_letter(self.lease, reason).await?;
        self.forget();
        bump(&self.stats.dead_lettered, u64::from(done));
        Self::lost_if_not(done)
    }
}
