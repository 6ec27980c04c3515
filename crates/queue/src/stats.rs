//! Counters for `/metrics`: plain atomics read through [`QueueStats`], so the
//! crate needs no metrics library and the binary exports them how it likes.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the queue's counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Publishes confirmed by RabbitMQ.
    pub published_broker: u64,
    /// Publishes that went to the spool instead.
    pub published_spooled: u64,
    /// Publishes committed to the embedded queue.
    pub published_embedded: u64,
    /// Publishes that were durable nowhere (the receiver answered 503).
    pub publish_failed: u64,
    /// Hints refused because the hints queue was full.
    pub hints_refused: u64,
    /// Of those, refused without asking RabbitMQ again: it had said full a
    /// moment before.
    pub hints_refused_unasked: u64,
    /// Events confirmed on the events exchange (or embedded finance queue).
    pub events_published: u64,
    /// Event publishes that failed (the outbox relay retries them).
    pub events_failed: u64,
    /// Spooled messages moved to RabbitMQ.
    pub forwarded: u64,
    /// Deliveries acknowledged.
    pub acked: u64,
    /// Deliveries returned with requeue.
    pub requeued: u64,
    /// Deliveries dead-lettered by the consumer.
    pub dead_lettered: u64,
    /// Times the broker connection was lost and a new one had to be made.
    pub reconnects: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published_broker: AtomicU64,
    pub(crate) published_spooled: AtomicU64,
    pub(crate) published_embedded: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) hints_refused: AtomicU64,
    pub(crate) hints_refused_unasked: AtomicU64,
    pub(crate) events_published: AtomicU64,
    pub(crate) events_failed: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) acked: AtomicU64,
    pub(crate) requeued: AtomicU64,
    pub(crate) dead_lettered: AtomicU64,
    pub(crate) reconnects: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> QueueStats {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        QueueStats {
            published_broker: r(&self.published_broker),
            published_spooled: r(&self.published_spooled),
            published_embedded: r(&self.published_embedded),
            publish_failed: r(&self.publish_failed),
            hints_refused: r(&self.hints_refused),
            hints_refused_unasked: r(&self.hints_refused_unasked),
            events_published: r(&self.events_published),
            events_failed: r(&self.events_failed),
            forwarded: r(&self.forwarded),
            acked: r(&self.acked),
            requeued: r(&self.requeued),
            dead_lettered: r(&self.dead_lettered),
            reconnects: r(&self.reconnects),
        }
    }
}
