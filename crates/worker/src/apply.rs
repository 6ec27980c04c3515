//! The applier: callback messages from the queue, applied to the ledger in
//! batches (one transaction each), acknowledged only after the commit.
//!
//! - An observation goes to the ledger as it came; what it does to the
//!   payment is core's `decide` (a PaySys "completed" notification, for one,
//!   is held there until `check_payment` agrees, and makes the check due now).
//! - A Portmanat return hint makes the payment's check due now; for a payment
//!   the ledger does not hold, `/check` is asked at once, and only the
//!   provider's answer creates it. Hints come on a queue of their own,
//!   consumed by [`crate::hints::HintLane`] (issue 17); one found on the
//!   callbacks queue (queued by an earlier version, or replayed from the
//!   dead-letter queue) goes to this applier's own lane beside the batches:
//!   a batch never waits for a hint's `/check`, the lane runs them
//!   concurrently within Portmanat's limits, one per payment at a time, and
//!   is bounded (Portmanat's concurrency times four, and on RabbitMQ no more
//!   than it can check within half the consumer timeout at Portmanat's
//!   rate); a hint past the bound, or for a payment already being checked,
//!   is acknowledged and counted as dropped
//!   (`paysettle_worker_hints_dropped_total{reason}`).
//! - A card registration is kept for the shop API's card feed (a file of its
//!   own, see `paysettle_store::cards`) and forwarded to the shop on the
//!   events exchange (`card.registered.paysys`); it never touches the ledger.
//! - A message whose hand-off signature does not verify (see
//!   `paysettle_core::handoff`) is not read at all: it is counted
//!   ([`REFUSED_METRIC`]) and dead-lettered with the reason.
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

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use paysettle_core::handoff::{self, HandoffError};
use paysettle_core::inbound::{FORMAT_VERSION, InboundCallback, Payload};
use paysettle_core::portmanat::ReturnHint;
use paysettle_core::redact;
use paysettle_core::{Account, Provider, ProviderTxnId, Reference};
use paysettle_queue::{Consumer, Delivery, Message, Queue, QueueKind};
use paysettle_store::{ApplyRequest, CheckNow, Ledger, PaymentKey};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::error::WorkerError;
use crate::settings::WorkerSettings;
use crate::status::{CheckResult, StatusClient};

/// How often a step with nothing ahead looks at the queue while the hint
/// lane finishes.
const HINT_LANE_LOOK: Duration = Duration::from_millis(20);

/// What one applier step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyRound {
    /// Messages taken from the queue.
    pub received: usize,
    /// Observations committed to the ledger (any outcome).
    pub applied: usize,
    /// Hints handed to the hint lane.
    pub hints: usize,
    /// Hints dropped: a check of the same payment in flight, or the lane
    /// full.
    pub hints_dropped: usize,
    /// Card registrations forwarded.
    pub forwarded: usize,
    /// Messages dead-lettered.
    pub dead_lettered: usize,
    /// Messages handed back for a later try.
    pub requeued: usize,
    /// Messages refused (and dead-lettered) for want of a valid signature.
    pub refused: usize,
}

/// The counter of callback messages refused for want of a valid signature.
pub const REFUSED_METRIC: &str = "paysettle_worker_unsigned_refused_total";

/// The applier. One active per ledger.
#[derive(Debug)]
pub struct Applier {
    ledger: Ledger,
    queue: Queue,
    consumer: Consumer,
    settings: Arc<WorkerSettings>,
    relay_wake: Arc<Notify>,
    /// The next batch, taken while the one before it was being committed.
    ahead: Vec<Delivery>,
    /// The last batch's acknowledgements, finishing while the next batch is
    /// committed.
    settling: JoinSet<()>,
    /// Hints being handled, each settling its own delivery.
    hint_lane: JoinSet<()>,
    /// The payments those hints name.
    hinted: Arc<Mutex<HashSet<String>>>,
    hints: HintContext,
    /// Hints a lane holds at most (see `hint_bound`).
    hint_bound: usize,
}

/// What a hint needs, cloned into the hint lane.
#[derive(Debug, Clone)]
pub(crate) struct HintContext {
    ledger: Ledger,
    client: StatusClient,
    relay_wake: Arc<Notify>,
    settings: Arc<WorkerSettings>,
}

/// Metric: hints acknowledged without a check, by `reason`.
pub const HINTS_DROPPED: &str = "paysettle_worker_hints_dropped_total";

/// What becomes of a delivery.
#[derive(Debug, Clone)]
enum Settlement {
    Ack,
    Requeue,
    DeadLetter(String),
    /// Handed to the hint lane, which settles it.
    Hint(Box<(InboundCallback, ReturnHint, String)>),
}

/// A decoded message and what to do with it.
pub(crate) enum Work {
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
        let hints = HintContext {
            ledger: ledger.clone(),
            client,
            relay_wake: relay_wake.clone(),
            settings: Arc::clone(&settings),
        };
        let hint_bound = hint_bound(&settings, queue.delivery_deadline());
        Ok(Applier {
            hint_bound,
            ledger,
            queue,
            consumer,
            settings,
            relay_wake,
            ahead: Vec::new(),
            settling: JoinSet::new(),
            hint_lane: JoinSet::new(),
            hinted: Arc::new(Mutex::new(HashSet::new())),
            hints,
        })
    }

    /// The lane of hints that come on the hints queue, sharing this
    /// applier's record of the payments being checked (so a hint on either
    /// queue is one check) and its bound. With RabbitMQ the broker sends it
    /// no more hints than the bound, so nothing waits unacknowledged in the
    /// consumer toward RabbitMQ's consumer timeout.
    pub fn hint_lane(&self) -> Result<crate::hints::HintLane, WorkerError> {
        let max_held = u16::try_from(self.hint_bound).unwrap_or(u16::MAX);
        let consumer = self
            .queue
            .consumer_holding(QueueKind::Hints, Some(max_held))?;
        Ok(crate::hints::HintLane::new(
            consumer,
            Arc::clone(&self.settings),
            self.hints.clone(),
            Arc::clone(&self.hinted),
            self.hint_bound,
        ))
    }

    /// Waits for every acknowledgement still in flight and hands back the
    /// batch taken ahead, unprocessed, for redelivery. For shutdown: after
    /// it, nothing this applier took is left unsettled.
    pub async fn finish(&mut self) {
        while self.settling.join_next().await.is_some() {}
        while self.hint_lane.join_next().await.is_some() {}
        for delivery in std::mem::take(&mut self.ahead) {
            settle(delivery.nack_requeue().await);
        }
    }

    fn authentic(&self, delivery: &Delivery) -> Result<(), String> {
        authentic(&self.settings, delivery)
    }

    fn decode(&self, delivery: &Delivery) -> Result<Work, String> {
        decode(&self.settings, delivery)
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
            self.drain_hints().await?;
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
            if let Err(reason) = self.authentic(delivery) {
                // Nothing of an unsigned message is read, let alone applied.
                metrics::counter!(REFUSED_METRIC).increment(1);
                round.refused += 1;
                tracing::warn!(message.id = %redact::mask_card_numbers(delivery.message_id()), reason = %reason, "dead-lettering a callback message without a valid signature");
                fate[index] = Settlement::DeadLetter(reason);
                continue;
            }
            match self.decode(delivery) {
                Ok(Work::Observe(request)) => {
                    requests.push(request);
                    owners.push(index);
                }
                Ok(work) => others.push((index, work)),
                Err(reason) => {
                    // The reason may quote the message: no card number in it.
                    let reason = redact::mask_card_numbers(&reason);
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
                                Settlement::DeadLetter(redact::mask_card_numbers(&format!(
                                    "cannot be applied: {err}"
                                )))
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
            fate[index] = match work {
                Work::Hint(message, hint) => self.send_to_lane(message, hint, &mut round),
                Work::Card(message) => self.forward_card(&message, &mut round).await,
                Work::Observe(..) => Settlement::Requeue,
            };
        }

        for (delivery, settlement) in batch.into_iter().zip(fate) {
            match &settlement {
                Settlement::Requeue => round.requeued += 1,
                Settlement::DeadLetter(_) => round.dead_lettered += 1,
                Settlement::Ack => {}
                Settlement::Hint(work) => {
                    let (message, hint, key) = (**work).clone();
                    spawn_hint(
                        &mut self.hint_lane,
                        self.hints.clone(),
                        self.hinted.clone(),
                        delivery,
                        (message, hint, key),
                    );
                    continue;
                }
            }
            self.settling.spawn(async move {
                let result = match &settlement {
                    Settlement::Ack => delivery.ack().await,
                    Settlement::Requeue => delivery.nack_requeue().await,
                    Settlement::DeadLetter(reason) => delivery.dead_letter(reason).await,
                    Settlement::Hint(_) => Ok(()),
                };
                settle(result);
            });
        }
        if self.ahead.is_empty() {
            while self.settling.join_next().await.is_some() {}
            self.drain_hints().await?;
        }
        match failure {
            Some(err) => Err(err.into()),
            None => Ok(round),
        }
    }

    /// Hands a hint to the lane, or drops it (acknowledged, counted) when a
    /// check of the same payment is in flight or the lane is full.
    fn send_to_lane(
        &mut self,
        message: InboundCallback,
        hint: ReturnHint,
        round: &mut ApplyRound,
    ) -> Settlement {
        let key = hint_key(&message, &hint);
        let bound = self.hint_bound;
        let dropped = {
            let mut hinted = self.hinted.lock().unwrap_or_else(PoisonError::into_inner);
            if hinted.contains(&key) {
                Some("duplicate")
            } else if hinted.len() >= bound {
                // The keys held are the lane's hints, those of this batch
                // not yet spawned included.
                Some("lane_full")
            } else {
                hinted.insert(key.clone());
                None
            }
        };
        match dropped {
            Some(reason) => {
                metrics::counter!(HINTS_DROPPED, "reason" => reason).increment(1);
                tracing::info!(message.id = %message.id, reason, "return hint dropped; the payment is checked on its schedule");
                round.hints_dropped += 1;
                Settlement::Ack
            }
            None => {
                round.hints += 1;
                Settlement::Hint(Box::new((message, hint, key)))
            }
        }
    }

    /// With nothing taken ahead: waits for the hints in the lane to settle,
    /// unless new messages arrive first (then they are the next batch, and
    /// the lane goes on beside it). `join_next` is cancel-safe; the queue is
    /// only asked without waiting, so no delivery is lost in a race.
    async fn drain_hints(&mut self) -> Result<(), WorkerError> {
        while !self.hint_lane.is_empty() {
            let _ = tokio::time::timeout(HINT_LANE_LOOK, self.hint_lane.join_next()).await;
            while self.hint_lane.try_join_next().is_some() {}
            if self.hint_lane.is_empty() {
                break;
            }
            let batch = self
                .consumer
                .next_batch(self.settings.batch_size, Duration::ZERO)
                .await?;
            if !batch.is_empty() {
                self.ahead = batch;
                break;
            }
        }
        Ok(())
    }

    /// Forwards a card registration to the shop's queue.
    async fn forward_card(&self, message: &InboundCallback, round: &mut ApplyRound) -> Settlement {
        let Some(word) = message.card_event() else {
            return Settlement::Ack;
        };
        let routing_key = format!("{word}.{}", message.provider);
        // Masked again here, whatever the receiver did: card numbers never
        // reach the shop, only the token in its own field.
        let body = serde_json::to_vec(&message.payload.clone().masked()).unwrap_or_default();
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
        let mut event = Message::json(message.id.clone(), body).with_header("event-type", word);
        if let Some(keys) = &self.settings.handoff {
            for (name, value) in keys.sign(&event.body) {
                event = event.with_header(name, value);
            }
        }
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
}

/// Whether the receiver signed this message: only then is it read.
pub(crate) fn authentic(settings: &WorkerSettings, delivery: &Delivery) -> Result<(), String> {
    let Some(keys) = &settings.handoff else {
        return Err(HandoffError::NoKeys.to_string());
    };
    let header = |name: &str| delivery.headers().get(name).map(String::as_str);
    keys.verify(
        header(handoff::KEY_ID_HEADER),
        header(handoff::SIGNATURE_HEADER),
        delivery.body(),
    )
    .map_err(|e| format!("refused: {e}"))
}

/// What a message is, read; the reason to dead-letter it if it cannot be.
pub(crate) fn decode(settings: &WorkerSettings, delivery: &Delivery) -> Result<Work, String> {
    let message: InboundCallback = serde_json::from_slice(delivery.body())
        .map_err(|e| format!("not a callback message: {e}"))?;
    if message.format != FORMAT_VERSION {
        return Err(format!("unknown message format {}", message.format));
    }
    if !settings.knows(message.provider, &message.account) {
        return Err(format!(
            "no {} account {} is configured",
            message.provider, message.account
        ));
    }
    match &message.payload {
        Payload::Observation(observation) => {
            if observation.provider != message.provider || observation.account != message.account {
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

impl HintContext {
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
        // No check claim covers this question: on a shared ledger a lease on
        // it does, so copies of one hint handed to two workers are asked
        // once (a single worker's record of the hints in hand does that
        // alone). The request must be over before the lease is.
        let asking = format!("{provider}/{account}/psp_rrn:{}", psp_rrn.as_str());
        let owner = &self.settings.owner;
        let until = tokio::time::Instant::now() + self.settings.claim_lease;
        if !self
            .ledger
            .lease_asking(
                &asking,
                owner,
                self.settings.clock.now(),
                self.settings.claim_lease,
            )
            .await?
        {
            metrics::counter!(HINTS_DROPPED, "reason" => "duplicate").increment(1);
            tracing::info!(message.id = %message.id, reason = "duplicate", "return hint dropped; another worker is asking /check about it");
            return Ok(());
        }
        let asked = self
            .ask_by_ids(message, account, reference, psp_rrn, until)
            .await;
        if let Err(err) = self.ledger.end_asking(&asking, owner).await {
            tracing::warn!(error = %err, "the lease on a hint's /check was not ended; it ends by itself");
        }
        asked
    }

    /// Asks `/check` about a hint's ids and applies a confirmed answer.
    async fn ask_by_ids(
        &self,
        message: &InboundCallback,
        account: &Account,
        reference: &Reference,
        psp_rrn: &ProviderTxnId,
        until: tokio::time::Instant,
    ) -> Result<(), WorkerError> {
        match self
            .client
            .portmanat_by_ids(account, reference, psp_rrn, until)
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

/// The payment a hint names, for telling two hints of one payment apart
/// from two hints of two.
pub(crate) fn hint_key(message: &InboundCallback, hint: &ReturnHint) -> String {
    let (_, account) = message.origin();
    let named = match (&hint.psp_rrn, &hint.client_rrn) {
        (Some(psp_rrn), _) => format!("psp_rrn:{}", psp_rrn.as_str()),
        (None, Some(reference)) => format!("client_rrn:{}", reference.as_str()),
        (None, None) => String::new(),
    };
    format!("{account}/{named}")
}

/// Handles a hint on the lane: its `/check` (or `check_now`), then its
/// delivery acknowledged (or handed back when the ledger failed), then the
/// payment free to be hinted again.
pub(crate) fn spawn_hint(
    lane: &mut JoinSet<()>,
    context: HintContext,
    hinted: Arc<Mutex<HashSet<String>>>,
    delivery: Delivery,
    (message, hint, key): (InboundCallback, ReturnHint, String),
) {
    lane.spawn(async move {
        let result = match context.hint(&message, &hint).await {
            Ok(()) => delivery.ack().await,
            Err(err) => {
                tracing::warn!(message.id = %message.id, error = %err, "hint not handled; it will come back");
                delivery.nack_requeue().await
            }
        };
        settle(result);
        hinted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&key);
    });
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

/// How many hints the lane may hold: Portmanat's concurrency times four,
/// and, where the queue has a delivery deadline (RabbitMQ's consumer
/// timeout), no more than it can check within half of it at Portmanat's
/// rate, the slowest check (its timeout) included. Work held longer would
/// be delivered again (and counted toward the delivery limit) while still
/// being checked: slowness alone must never dead-letter a hint. The
/// embedded queue has no deadline: its consumer renews what it holds.
fn hint_bound(settings: &WorkerSettings, deadline: Option<Duration>) -> usize {
    let limits = settings.limits(Provider::Portmanat);
    let by_concurrency = limits.concurrency.saturating_mul(4).max(1);
    let Some(deadline) = deadline else {
        return by_concurrency;
    };
    let spare = (deadline / 2).saturating_sub(limits.timeout).as_secs_f64();
    let by_rate = (spare * limits.rate_per_sec).floor();
    let by_rate = if by_rate.is_finite() && by_rate >= 1.0 {
        by_rate as usize
    } else {
        1
    };
    by_concurrency.min(by_rate).max(1)
}

/// Settling a delivery can fail when the connection dropped meanwhile; the
/// broker then delivers the message again, which the ledger's dedupe absorbs.
fn settle(result: Result<(), paysettle_queue::QueueError>) {
    if let Err(err) = result {
        tracing::warn!(error = %err, "could not settle a delivery; it will be delivered again");
    }
}
