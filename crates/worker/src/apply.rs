//! The applier: callback messages from the queue, applied to the ledger in
//! batches (one transaction each), acknowledged only after the commit.
//!
//! - An observation goes to the ledger as it came; what it does to the
//!   payment is core's `decide` (a PaySys "completed" notification, for one,
//!   is held there until `check_payment` agrees, and makes the check due now).
//! - A Portmanat return hint makes the payment's check due now; for a payment
//!   the ledger does not hold, `/check` is asked at once, and only the
//!   provider's answer creates it.
//! - A card registration is kept for the shop API's card feed (a file of its
//!   own, see `paysettle_store::cards`) and forwarded to the shop on the
//!   events exchange (`card.registered.paysys`); it never touches the ledger.
//! - A message that cannot be read, or names an account nobody configured,
//!   is dead-lettered with the reason; a ledger that is busy gets the message
//!   back for later, never dropped.
//!
//! Under load the stages overlap: while one batch is committed to the ledger,
//! the previous batch's acknowledgements finish and the next batch is taken
//! from the queue (only what is already there; the wait for new messages
//! happens between batches). A message is still acknowledged only after its
//! commit, and when the queue runs dry a step returns only once everything it
//! took is settled. With RabbitMQ this needs `queue.prefetch` of at least
//! twice `worker.batch_size`, or the next batch finds nothing delivered yet.

use std::sync::Arc;
use std::time::Duration;

use paysettle_core::inbound::{FORMAT_VERSION, InboundCallback, Payload};
use paysettle_core::portmanat::ReturnHint;
use paysettle_queue::{Consumer, Delivery, Message, Queue, QueueKind};
use paysettle_store::{ApplyRequest, CheckNow, Ledger, PaymentKey};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::error::WorkerError;
use crate::settings::WorkerSettings;
use crate::status::{CheckResult, StatusClient};

/// What one applier step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyRound {
    /// Messages taken from the queue.
    pub received: usize,
    /// Observations committed to the ledger (any outcome).
    pub applied: usize,
    /// Hints that made a check due.
    pub hints: usize,
    /// Card registrations forwarded.
    pub forwarded: usize,
    /// Messages dead-lettered.
    pub dead_lettered: usize,
    /// Messages handed back for a later try.
    pub requeued: usize,
}

/// The applier. One active per ledger.
#[derive(Debug)]
pub struct Applier {
    ledger: Ledger,
    queue: Queue,
    consumer: Consumer,
    client: StatusClient,
    settings: Arc<WorkerSettings>,
    relay_wake: Arc<Notify>,
    /// The next batch, taken while the one before it was being committed.
    ahead: Vec<Delivery>,
    /// The last batch's acknowledgements, finishing while the next batch is
    /// committed.
    settling: JoinSet<()>,
}

/// What becomes of a delivery.
#[derive(Debug, Clone)]
enum Settlement {
    Ack,
    Requeue,
    DeadLetter(String),
}

/// A decoded message and what to do with it.
enum Work {
    Observe(ApplyRequest),
    Hint(InboundCallback, ReturnHint),
    Card(InboundCallback),
}

impl Applier {
    /// An applier consuming the callbacks queue.
    pub fn new(
        ledger: Ledger,
        queue: Queue,
        client: StatusClient,
        settings: Arc<WorkerSettings>,
        relay_wake: Arc<Notify>,
    ) -> Result<Applier, WorkerError> {
        let consumer = queue.consumer(QueueKind::Callbacks)?;
        Ok(Applier {
            ledger,
            queue,
            consumer,
            client,
            settings,
            relay_wake,
            ahead: Vec::new(),
            settling: JoinSet::new(),
        })
    }

    /// Waits for every acknowledgement still in flight and hands back the
    /// batch taken ahead, unprocessed, for redelivery. For shutdown: after
    /// it, nothing this applier took is left unsettled.
    pub async fn finish(&mut self) {
        while self.settling.join_next().await.is_some() {}
        for delivery in std::mem::take(&mut self.ahead) {
            settle(delivery.nack_requeue().await);
        }
    }

    fn decode(&self, delivery: &Delivery) -> Result<Work, String> {
        let message: InboundCallback = serde_json::from_slice(delivery.body())
            .map_err(|e| format!("not a callback message: {e}"))?;
        if message.format != FORMAT_VERSION {
            return Err(format!("unknown message format {}", message.format));
        }
        if !self.settings.knows(message.provider, &message.account) {
            return Err(format!(
                "no {} account {} is configured",
                message.provider, message.account
            ));
        }
        match &message.payload {
            Payload::Observation(observation) => {
                if observation.provider != message.provider
                    || observation.account != message.account
                {
                    return Err(
                        "the observation's provider or account differs from the message's".into(),
                    );
                }
                let raw = serde_json::json!({ "message_id": message.id, "client_addr": message.client_addr, "request": message.raw });
                Ok(Work::Observe(ApplyRequest {
                    observation: observation.clone(),
                    raw: Some(raw),
                }))
            }
            Payload::PortmanatHint(hint) => {
                let hint = hint.clone();
                Ok(Work::Hint(message, hint))
            }
            Payload::CardRegistered { .. } | Payload::CardRegistrationFailed { .. } => {
                Ok(Work::Card(message))
            }
        }
    }

    /// Takes one batch, applies it, settles every message. When no further
    /// batch was waiting, it returns only after every settlement is done.
    pub async fn run_once(&mut self) -> Result<ApplyRound, WorkerError> {
        let batch = if self.ahead.is_empty() {
            self.consumer
                .next_batch(self.settings.batch_size, self.settings.batch_wait)
                .await?
        } else {
            std::mem::take(&mut self.ahead)
        };
        let mut round = ApplyRound {
            received: batch.len(),
            ..ApplyRound::default()
        };
        if batch.is_empty() {
            while self.settling.join_next().await.is_some() {}
            return Ok(round);
        }
        // What becomes of each delivery, decided first and carried out after
        // the ledger commit, all at once (so the queue commits the acks
        // together instead of one by one).
        let mut fate: Vec<Settlement> = vec![Settlement::Requeue; batch.len()];
        let mut requests = Vec::new();
        let mut owners = Vec::new();
        let mut others = Vec::new();
        for (index, delivery) in batch.iter().enumerate() {
            match self.decode(delivery) {
                Ok(Work::Observe(request)) => {
                    requests.push(request);
                    owners.push(index);
                }
                Ok(work) => others.push((index, work)),
                Err(reason) => {
                    tracing::warn!(message.id = delivery.message_id(), reason = %reason, "dead-lettering a callback message");
                    crate::telemetry::dead_lettered("unreadable");
                    fate[index] = Settlement::DeadLetter(reason);
                }
            }
        }

        // The commit, and beside it the last batch's settlements and then
        // the next batch (only what is already there).
        let committed = async {
            if requests.is_empty() {
                None
            } else {
                Some(self.ledger.apply_batch(requests).await)
            }
        };
        let settling = &mut self.settling;
        let consumer = &mut self.consumer;
        let batch_size = self.settings.batch_size;
        let take_ahead = async move {
            while settling.join_next().await.is_some() {}
            match consumer.next_batch(batch_size, Duration::ZERO).await {
                Ok(batch) => batch,
                Err(err) => {
                    // The next step's own wait meets the same error and reports it.
                    tracing::debug!(error = %err, "could not take the next batch ahead");
                    Vec::new()
                }
            }
        };
        let (committed, ahead) = tokio::join!(committed, take_ahead);
        self.ahead = ahead;

        let mut failure = None;
        if let Some(committed) = committed {
            match committed {
                Ok(outcomes) => {
                    let mut wrote_events = false;
                    for (outcome, index) in outcomes.into_iter().zip(owners) {
                        let delivery = &batch[index];
                        fate[index] = match outcome {
                            Ok(outcome) => {
                                tracing::info_span!("callback", message.id = delivery.message_id())
                                    .in_scope(|| crate::outcome::log(&outcome, "callback applied"));
                                wrote_events |= outcome.wrote_events();
                                round.applied += 1;
                                Settlement::Ack
                            }
                            Err(err) if err.is_retryable() => {
                                tracing::warn!(message.id = delivery.message_id(), error = %err, "ledger busy; the callback will be applied later");
                                Settlement::Requeue
                            }
                            Err(err) => {
                                tracing::error!(message.id = delivery.message_id(), error = %err, "callback cannot be applied; dead-lettering");
                                crate::telemetry::dead_lettered("cannot_apply");
                                Settlement::DeadLetter(format!("cannot be applied: {err}"))
                            }
                        };
                    }
                    if wrote_events {
                        self.relay_wake.notify_one();
                    }
                }
                Err(err) => {
                    // Nothing committed: every message goes back (its fate
                    // is still Requeue).
                    tracing::warn!(error = %err, "ledger batch failed; handing the batch back");
                    if !err.is_retryable() {
                        failure = Some(err);
                    }
                }
            }
        }

        for (index, work) in others {
            let delivery = &batch[index];
            fate[index] = match work {
                Work::Hint(message, hint) => match self.hint(&message, &hint).await {
                    Ok(()) => {
                        round.hints += 1;
                        Settlement::Ack
                    }
                    Err(err) => {
                        tracing::warn!(message.id = delivery.message_id(), error = %err, "hint not handled; it will come back");
                        Settlement::Requeue
                    }
                },
                Work::Card(message) => self.forward_card(&message, &mut round).await,
                Work::Observe(..) => Settlement::Requeue,
            };
        }

        for (delivery, settlement) in batch.into_iter().zip(fate) {
            match &settlement {
                Settlement::Requeue => round.requeued += 1,
                Settlement::DeadLetter(_) => round.dead_lettered += 1,
                Settlement::Ack => {}
            }
            self.settling.spawn(async move {
                let result = match &settlement {
                    Settlement::Ack => delivery.ack().await,
                    Settlement::Requeue => delivery.nack_requeue().await,
                    Settlement::DeadLetter(reason) => delivery.dead_letter(reason).await,
                };
                settle(result);
            });
        }
        if self.ahead.is_empty() {
            while self.settling.join_next().await.is_some() {}
        }
        match failure {
            Some(err) => Err(err.into()),
            None => Ok(round),
        }
    }

    /// Forwards a card registration to the shop's queue.
    async fn forward_card(&self, message: &InboundCallback, round: &mut ApplyRound) -> Settlement {
        let Some(word) = message.card_event() else {
            return Settlement::Ack;
        };
        let routing_key = format!("{word}.{}", message.provider);
        let body = serde_json::to_vec(&message.payload).unwrap_or_default();
        // Kept for the card feed first: a message is acknowledged only once
        // the registration is on the feed and (where there is one) on the
        // shop queue. A redelivery is recorded once.
        if let Some(cards) = &self.settings.cards {
            let text = String::from_utf8_lossy(&body).into_owned();
            if let Err(err) = cards
                .record(
                    message.id.clone(),
                    routing_key.clone(),
                    text,
                    self.settings.card_retention,
                )
                .await
            {
                tracing::warn!(message.id = %message.id, error = %err, "card registration not kept for the card feed; it will come back");
                return Settlement::Requeue;
            }
        }
        let event = Message::json(message.id.clone(), body).with_header("event-type", word);
        match self.queue.publish_event(&routing_key, &event).await {
            Ok(()) => {
                tracing::info!(message.id = %message.id, routing_key, "card registration forwarded to the shop");
                round.forwarded += 1;
                Settlement::Ack
            }
            Err(err) => {
                tracing::warn!(message.id = %message.id, error = %err, "card registration not forwarded; it will come back");
                Settlement::Requeue
            }
        }
    }

    /// Makes the hinted payment's check due now; asks `/check` at once for a
    /// payment the ledger does not hold.
    async fn hint(&self, message: &InboundCallback, hint: &ReturnHint) -> Result<(), WorkerError> {
        let (provider, account) = message.origin();
        if let Some(psp_rrn) = &hint.psp_rrn {
            let done = self
                .ledger
                .check_now(
                    provider,
                    account.clone(),
                    PaymentKey::ProviderTxnId(psp_rrn.clone()),
                )
                .await?;
            if log_check_now(done) {
                return Ok(());
            }
        }
        let Some(reference) = &hint.client_rrn else {
            tracing::warn!(message.id = %message.id, "return hint names no payment the ledger holds; nothing to check");
            return Ok(());
        };
        let known = self
            .ledger
            .find(
                provider,
                account.clone(),
                PaymentKey::Reference(reference.clone()),
            )
            .await?;
        if let Some(payment) = &known
            && payment.provider_txn_id.is_some()
        {
            let done = self
                .ledger
                .check_now(
                    provider,
                    account.clone(),
                    PaymentKey::Reference(reference.clone()),
                )
                .await?;
            log_check_now(done);
            return Ok(());
        }
        // The ledger has no psp_rrn for this payment (or no payment at all).
        // The hint is unsigned, so its psp_rrn is only used to ask /check, and
        // only the answer, which must name the same client_rrn, is recorded.
        let Some(psp_rrn) = &hint.psp_rrn else {
            tracing::warn!(message.id = %message.id, "return hint without psp_rrn for a payment the ledger cannot check");
            return Ok(());
        };
        match self
            .client
            .portmanat_by_ids(account, reference, psp_rrn)
            .await
        {
            CheckResult::Answer { observation, raw } => {
                let outcome = self
                    .ledger
                    .apply(ApplyRequest {
                        observation: *observation,
                        raw: Some(raw),
                    })
                    .await?;
                crate::outcome::log(&outcome, "return hint confirmed by /check");
                self.relay_wake.notify_one();
            }
            other => {
                tracing::warn!(message.id = %message.id, result = other.kind(), "return hint not confirmed by /check");
            }
        }
        Ok(())
    }
}

/// Logs what a hint's `check_now` did; `true` when the ledger knows the
/// payment.
fn log_check_now(done: CheckNow) -> bool {
    match done {
        CheckNow::Scheduled(id) => {
            tracing::info!(payment.id = id.0, "return hint: checking now");
            true
        }
        CheckNow::NotScheduled(id) => {
            tracing::info!(
                payment.id = id.0,
                "return hint: the payment is flagged or cannot be checked; no check"
            );
            true
        }
        CheckNow::Unknown => false,
    }
}

/// Settling a delivery can fail when the connection dropped meanwhile; the
/// broker then delivers the message again, which the ledger's dedupe absorbs.
fn settle(result: Result<(), paysettle_queue::QueueError>) {
    if let Err(err) = result {
        tracing::warn!(error = %err, "could not settle a delivery; it will be delivered again");
    }
}
