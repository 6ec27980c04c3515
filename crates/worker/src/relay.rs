//! The outbox relay: settled events leave the ledger's outbox for the events
//! exchange with publisher confirms, and are marked sent only after the
//! confirm. A crash between the two sends the event again with the same
//! `event_id` (at-least-once; finance dedupes on it).
//!
//! With hand-off keys, every event carries the `paysettle-key-id` and
//! `paysettle-signature` headers: HMAC-SHA256 over the exact body bytes
//! (see `paysettle_core::handoff` and the README), so finance can tell
//! paysettle's events from anyone else's.

use std::sync::Arc;

use paysettle_core::handoff::HandoffKeys;
use paysettle_queue::{Message, Queue};
use paysettle_store::Ledger;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::error::WorkerError;

/// What one relay step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RelayRound {
    pub published: usize,
    pub failed: usize,
}

/// The relay.
#[derive(Debug, Clone)]
pub struct Relay {
    ledger: Ledger,
    queue: Queue,
    batch: usize,
    wake: Arc<Notify>,
    keys: Option<Arc<HandoffKeys>>,
}

impl Relay {
    /// A relay from `ledger`'s outbox to `queue`'s events exchange.
    pub fn new(ledger: Ledger, queue: Queue, batch: usize) -> Relay {
        Relay {
            ledger,
            queue,
            batch: batch.max(1),
            wake: Arc::new(Notify::new()),
            keys: None,
        }
    }

    /// Signs every event with `keys`' signing key (`None`: unsigned).
    #[must_use]
    pub fn signing(mut self, keys: Option<HandoffKeys>) -> Relay {
        self.keys = keys.map(Arc::new);
        self
    }

    /// A handle that wakes the relay (the applier pokes it after a commit
    /// that wrote events).
    pub fn waker(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    /// Publishes the oldest unsent events, all in flight at once, and marks
    /// the confirmed ones sent.
    pub async fn run_once(&self) -> Result<RelayRound, WorkerError> {
        let events = self.ledger.unpublished(self.batch).await?;
        if events.is_empty() {
            return Ok(RelayRound::default());
        }
        let mut publishes = JoinSet::new();
        for event in events {
            let queue = self.queue.clone();
            let keys = self.keys.clone();
            publishes.spawn(async move {
                let mut message = Message::json(event.event_id.clone(), event.body.into_bytes())
                    .with_header("event-type", event.event_type.clone());
                if let Some(keys) = keys {
                    for (name, value) in keys.sign(&message.body) {
                        message = message.with_header(name, value);
                    }
                }
                let result = queue.publish_event(&event.routing_key, &message).await;
                (event.seq, event.event_id, result)
            });
        }
        let mut confirmed = Vec::new();
        let mut failed = 0;
        // One line per round, however many events failed: with the broker
        // away every event of the round fails the same way.
        let mut first_failure: Option<(String, String)> = None;
        while let Some(done) = publishes.join_next().await {
            match done {
                Ok((seq, _, Ok(()))) => confirmed.push(seq),
                Ok((_, event_id, Err(err))) => {
                    failed += 1;
                    first_failure.get_or_insert_with(|| (event_id, err.to_string()));
                }
                Err(err) => {
                    failed += 1;
                    tracing::error!(error = %err, "an event publish task failed");
                }
            }
        }
        if let Some((event_id, error)) = first_failure {
            tracing::warn!(
                failed,
                confirmed = confirmed.len(),
                first.event.id = %event_id,
                first.error = %error,
                "events not confirmed; they stay in the outbox and will be sent again"
            );
        }
        confirmed.sort_unstable();
        let published = self.ledger.mark_published(confirmed).await?;
        Ok(RelayRound { published, failed })
    }

    /// Sends until the outbox is empty or a round fails entirely.
    pub async fn run_until_idle(&self) -> Result<usize, WorkerError> {
        let mut total = 0;
        loop {
            let round = self.run_once().await?;
            total += round.published;
            if round.published == 0 {
                return Ok(total);
            }
        }
    }

    /// Waits until woken or `interval` passes.
    pub async fn idle(&self, interval: std::time::Duration) {
        let _ = tokio::time::timeout(interval, self.wake.notified()).await;
    }
}
