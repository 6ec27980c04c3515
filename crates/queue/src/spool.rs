//! Spool-and-forward: where a callback goes when RabbitMQ cannot confirm it,
//! and the task that moves it to RabbitMQ, oldest first, once it can.
//!
//! The spool is a FIFO file of its own (not the embedded backend's), holding
//! messages for the callbacks queue. The forwarder leases a batch, publishes it
//! in order on the publish channel, waits for the confirms, and acks in the
//! spool only what the broker confirmed; the rest is released and tried again.
//! A crash after a confirm and before the spool ack sends that message twice:
//! consumers dedupe on `message_id`.
//!
//! Ordering across the spool boundary is by arrival within the spool; a fresh
//! publish that reaches a healthy broker while older spooled messages are still
//! being forwarded may overtake them. The worker's state machine does not
//! depend on callback order.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::QueueError;
use crate::fifo::{Lease, QueuePolicy};
use crate::fifo_writer::FifoHandle;
use crate::message::Message;
use crate::rabbit::Broker;
use crate::stats::bump;

/// How long the forwarder waits before looking again after a failed round.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// How often an idle forwarder looks anyway (for leases that expired).
const IDLE_LOOK: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub(crate) struct Spool {
    store: FifoHandle,
    queue: String,
}

impl Spool {
    pub(crate) async fn open(path: &std::path::Path, queue: &str) -> Result<Self, QueueError> {
        let store = FifoHandle::open(path).await?;
        store.declare(queue, QueuePolicy::default()).await?;
        Ok(Self {
            store,
            queue: queue.to_owned(),
        })
    }

    pub(crate) async fn push(&self, message: &Message) -> Result<(), QueueError> {
        self.store.push(&self.queue, message.to_fifo()).await
    }

    pub(crate) async fn depth(&self) -> Result<u64, QueueError> {
        self.store.depth(&self.queue).await
    }

    pub(crate) fn is_writable(&self) -> bool {
        self.store.is_writable()
    }
}

/// Forwards until shutdown.
pub(crate) async fn forward(broker: Arc<Broker>, spool: Spool) {
    let mut changes = spool.store.changes();
    let mut links = broker.links();
    loop {
        let wait = match forward_round(&broker, &spool).await {
            Ok(0) => IDLE_LOOK,
            Ok(_) => continue,
            Err(e) => {
                tracing::debug!(error = %e, "forwarding paused");
                RETRY_AFTER
            }
        };
        tokio::select! {
            _ = broker.shutdown.cancelled() => break,
            _ = changes.changed() => {}
            _ = links.changed() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
    tracing::debug!("spool forwarder stopped");
}

/// One batch; returns how many messages reached the broker.
async fn forward_round(broker: &Broker, spool: &Spool) -> Result<usize, QueueError> {
    let Some(link) = broker.usable_link() else {
        return Err(QueueError::BrokerUnavailable("not connected".to_owned()));
    };
    let confirm_timeout = broker.config.confirm_timeout;
    // Long enough that a lease never expires while its batch is in flight.
    let lease_for = confirm_timeout * 2 + Duration::from_secs(10);
    let batch = spool
        .store
        .lease(&spool.queue, broker.config.forward_batch, lease_for)
        .await?;
    if batch.is_empty() {
        if broker.is_degraded() {
            broker.set_degraded(false, &"spool empty and broker connected");
        }
        return Ok(0);
    }
    let exchange = "";
    let routing_key = broker.topology.callbacks.as_str();
    let channel = link.publish_channel();
    let deadline = Instant::now() + confirm_timeout;
    let mut in_flight = Vec::with_capacity(batch.len());
    let mut failed: Vec<Lease> = Vec::new();
    let mut error = None;
    for m in batch {
        if error.is_some() {
            failed.push(m.lease);
            continue;
        }
        let message = Message::from_fifo(m.message);
        // Bounded too: a channel caught in a stalled recovery never sends.
        let sent = tokio::time::timeout_at(
            deadline,
            broker.start_publish(&channel, exchange, routing_key, &message),
        )
        .await
        .unwrap_or(Err(QueueError::ConfirmTimeout(confirm_timeout)));
        match sent {
            Ok(confirm) => in_flight.push((m.lease, message.message_id, confirm)),
            Err(e) => {
                failed.push(m.lease);
                error = Some(e);
            }
        }
    }
    let mut confirmed = Vec::with_capacity(in_flight.len());
    for (lease, message_id, confirm) in in_flight {
        match broker
            .finish_publish(confirm, deadline, exchange, routing_key)
            .await
        {
            Ok(()) => confirmed.push(lease),
            Err(e) => {
                tracing::debug!(%message_id, error = %e, "forward not confirmed");
                failed.push(lease);
                error.get_or_insert(e);
            }
        }
    }
    // Counted once confirmed (before the spool forgets them, so the counter
    // never lags the spool depth).
    bump(&broker.stats.forwarded, confirmed.len() as u64);
    // A failure here only means those messages are forwarded once more later.
    if let Err(e) = spool.store.settle_many(&confirmed, &failed).await {
        tracing::warn!(error = %e, "cannot settle forwarded messages in the spool");
    }
    if !confirmed.is_empty() {
        tracing::info!(
            forwarded = confirmed.len(),
            failed = failed.len(),
            "forwarded spooled messages"
        );
    }
    match error {
        Some(e) => {
            broker.set_degraded(true, &e);
            Err(e)
        }
        None => {
            broker.set_degraded(false, &"forwarded a spooled batch");
            Ok(confirmed.len())
        }
    }
}
