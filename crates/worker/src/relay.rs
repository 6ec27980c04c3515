//! The outbox relay: settled events leave the ledger's outbox for the events
//! exchange with publisher confirms, and are marked sent only after the
//! confirm. A crash between the two sends the event again with the same
//! `event_id` (at-least-once; finance dedupes on it).
//!
//! A payment's events go out in `ledger_version` order: each payment's
//! events of a round are published one after another (payments side by
//! side), and a payment's chain stops at its first unconfirmed event, so a
//! later one is never marked sent before an earlier one. On a shared ledger
//! (several workers) the relay claims the events it sends, with a lease,
//! and is never handed a payment's event while another relay holds an
//! earlier one of that payment.
//!
//! With hand-off keys, every event carries the `paysettle-key-id` and
//! `paysettle-signature` headers: HMAC-SHA256 over the exact body bytes
//! (see `paysettle_core::handoff` and the README), so finance can tell
//! paysettle's events from anyone else's.

use std::sync::Arc;
use std::time::Duration;

use paysettle_core::clock::SharedClock;
use paysettle_core::handoff::HandoffKeys;
use paysettle_queue::{Message, Queue};
use paysettle_store::{Ledger, OutboxEvent};
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
    /// Who this relay is in outbox claims, for how long it holds them, and
    /// the clock their leases are read on (used on a shared ledger only).
    claim: (String, Duration, SharedClock),
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
            claim: (
                "relay".to_owned(),
                Duration::from_secs(60),
                paysettle_store::SystemClock::shared(),
            ),
        }
    }

    /// Names this relay `owner` in the outbox claims it takes on a shared
    /// ledger, each held for `lease` (a relay that dies gives its events
    /// back when the lease ends), on `clock`.
    #[must_use]
    pub fn claiming(mut self, owner: String, lease: Duration, clock: SharedClock) -> Relay {
        self.claim = (owner, lease, clock);
        self
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

    /// Publishes the oldest unsent events (payments side by side, each
    /// payment's events in order) and marks the confirmed ones sent.
    pub async fn run_once(&self) -> Result<RelayRound, WorkerError> {
        let events = if self.ledger.is_shared() {
            let (owner, lease, clock) = &self.claim;
            self.ledger
                .claim_unpublished(owner, clock.now(), *lease, self.batch)
                .await?
        } else {
            self.ledger.unpublished(self.batch).await?
        };
        if events.is_empty() {
            return Ok(RelayRound::default());
        }
        let mut publishes = JoinSet::new();
        for chain in chains(events) {
            let queue = self.queue.clone();
            let keys = self.keys.clone();
            publishes.spawn(async move {
                let mut confirmed = Vec::new();
                let mut left = chain.len();
                for event in chain {
                    left -= 1;
                    match publish(&queue, keys.as_deref(), &event).await {
                        Ok(()) => confirmed.push(event.seq),
                        // The rest of this payment's events wait for this one.
                        Err(err) => return (confirmed, Some((event.event_id, err)), 1 + left),
                    }
                }
                (confirmed, None, 0)
            });
        }
        let mut confirmed = Vec::new();
        let mut failed = 0;
        // One line per round, however many events failed: with the broker
        // away every event of the round fails the same way.
        let mut first_failure: Option<(String, String)> = None;
        while let Some(done) = publishes.join_next().await {
            match done {
                Ok((seqs, failure, unsent)) => {
                    confirmed.extend(seqs);
                    failed += unsent;
                    if let Some((event_id, err)) = failure {
                        first_failure.get_or_insert_with(|| (event_id, err.to_string()));
                    }
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

/// The round's events as one chain per payment, each in outbox order (the
/// outbox order of one payment is its `ledger_version` order).
fn chains(events: Vec<OutboxEvent>) -> Vec<Vec<OutboxEvent>> {
    let mut by_payment: std::collections::BTreeMap<i64, Vec<OutboxEvent>> =
        std::collections::BTreeMap::new();
    let mut order = Vec::new();
    for event in events {
        let chain = by_payment.entry(event.payment_id.0).or_default();
        if chain.is_empty() {
            order.push(event.payment_id.0);
        }
        chain.push(event);
    }
    for chain in by_payment.values_mut() {
        chain.sort_by_key(|e| e.seq);
    }
    order
        .into_iter()
        .filter_map(|id| by_payment.remove(&id))
        .collect()
}

/// Publishes one event, signed when there are keys, and waits for the
/// broker's confirm.
async fn publish(
    queue: &Queue,
    keys: Option<&HandoffKeys>,
    event: &OutboxEvent,
) -> Result<(), paysettle_queue::QueueError> {
    let mut message = Message::json(event.event_id.clone(), event.body.clone().into_bytes())
        .with_header("event-type", event.event_type.clone());
    if let Some(keys) = keys {
        for (name, value) in keys.sign(&message.body) {
            message = message.with_header(name, value);
        }
    }
    queue.publish_event(&event.routing_key, &message).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::Timestamp;
    use paysettle_store::PaymentId;

    fn event(seq: i64, payment: i64) -> OutboxEvent {
        OutboxEvent {
            seq,
            event_id: format!("e{seq}"),
            payment_id: PaymentId(payment),
            event_type: "payment.succeeded".into(),
            routing_key: "payment.succeeded.plutu".into(),
            body: "{}".into(),
            created_at: Timestamp::UNIX_EPOCH,
            published_at: None,
        }
    }

    #[test]
    fn a_round_is_one_ordered_chain_per_payment_in_order_of_first_event() {
        let round = vec![
            event(1, 7),
            event(2, 9),
            event(3, 7),
            event(5, 9),
            event(4, 7),
        ];
        let chains: Vec<Vec<i64>> = chains(round)
            .into_iter()
            .map(|c| c.into_iter().map(|e| e.seq).collect())
            .collect();
        assert_eq!(chains, vec![vec![1, 3, 4], vec![2, 5]]);
    }
}
