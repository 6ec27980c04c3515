//! The hint lane: Portmanat's return hints from the hints queue, apart from
//! signed callbacks (issue 17), so a callback never waits behind a hint.
//!
//! A hint is checked as the applier checks one found on the callbacks queue
//! (see [`crate::apply`]): concurrently within Portmanat's limits, one check
//! per payment at a time (a second hint for a payment being checked is
//! acknowledged and counted as dropped, `reason="duplicate"`). The lane
//! takes from the queue only what it has room for, so it never holds work
//! it cannot finish before its delivery would be handed to someone else:
//! the rest waits in the queue, whose bound the receiver meets first.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use paysettle_core::redact;
use paysettle_queue::Consumer;
use tokio::task::JoinSet;

use crate::apply::{
    ApplyRound, HINTS_DROPPED, HintContext, REFUSED_METRIC, Work, authentic, decode, hint_key,
    spawn_hint,
};
use crate::error::WorkerError;
use crate::settings::WorkerSettings;

/// How long a step waits for hints when the lane is empty.
const IDLE_WAIT: Duration = Duration::from_millis(250);
/// How long it waits while checks are in flight, before it looks at them
/// again.
const BUSY_WAIT: Duration = Duration::from_millis(20);

/// Consumes the hints queue. Made by [`crate::Applier::hint_lane`].
#[derive(Debug)]
pub struct HintLane {
    consumer: Consumer,
    settings: Arc<WorkerSettings>,
    context: HintContext,
    hinted: Arc<Mutex<HashSet<String>>>,
    bound: usize,
    lane: JoinSet<()>,
}

impl HintLane {
    pub(crate) fn new(
        consumer: Consumer,
        settings: Arc<WorkerSettings>,
        context: HintContext,
        hinted: Arc<Mutex<HashSet<String>>>,
        bound: usize,
    ) -> HintLane {
        HintLane {
            consumer,
            settings,
            context,
            hinted,
            bound: bound.max(1),
            lane: JoinSet::new(),
        }
    }

    /// Hints being checked now.
    pub fn in_flight(&self) -> usize {
        self.lane.len()
    }

    /// Takes as many hints as the lane has room for (waiting for room
    /// first), starts their checks and returns; the checks settle their own
    /// deliveries. `received` 0 means nothing came within the wait.
    pub async fn run_once(&mut self) -> Result<ApplyRound, WorkerError> {
        while self.lane.try_join_next().is_some() {}
        while self.lane.len() >= self.bound {
            self.lane.join_next().await;
        }
        let room = self.bound - self.lane.len();
        let wait = if self.lane.is_empty() {
            IDLE_WAIT
        } else {
            BUSY_WAIT
        };
        let batch = self.consumer.next_batch(room, wait).await?;
        let mut round = ApplyRound {
            received: batch.len(),
            ..ApplyRound::default()
        };
        for delivery in batch {
            if let Err(reason) = authentic(&self.settings, &delivery) {
                metrics::counter!(REFUSED_METRIC).increment(1);
                round.refused += 1;
                round.dead_lettered += 1;
                tracing::warn!(message.id = %redact::mask_card_numbers(delivery.message_id()), reason = %reason, "dead-lettering a hint message without a valid signature");
                settle(delivery.dead_letter(&reason).await);
                continue;
            }
            let (message, hint) = match decode(&self.settings, &delivery) {
                Ok(Work::Hint(message, hint)) => (message, hint),
                Ok(_) => {
                    round.dead_lettered += 1;
                    crate::telemetry::dead_lettered("unreadable");
                    tracing::warn!(
                        message.id = delivery.message_id(),
                        "dead-lettering a message on the hints queue that is not a hint"
                    );
                    settle(
                        delivery
                            .dead_letter(
                                "not a hint: the hints queue carries Portmanat return hints only",
                            )
                            .await,
                    );
                    continue;
                }
                Err(reason) => {
                    let reason = redact::mask_card_numbers(&reason);
                    round.dead_lettered += 1;
                    crate::telemetry::dead_lettered("unreadable");
                    tracing::warn!(message.id = delivery.message_id(), reason = %reason, "dead-lettering a hint message");
                    settle(delivery.dead_letter(&reason).await);
                    continue;
                }
            };
            let key = hint_key(&message, &hint);
            let fresh = self
                .hinted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key.clone());
            if !fresh {
                metrics::counter!(HINTS_DROPPED, "reason" => "duplicate").increment(1);
                tracing::info!(message.id = %message.id, reason = "duplicate", "return hint dropped; the payment is checked on its schedule");
                round.hints_dropped += 1;
                settle(delivery.ack().await);
                continue;
            }
            round.hints += 1;
            spawn_hint(
                &mut self.lane,
                self.context.clone(),
                Arc::clone(&self.hinted),
                delivery,
                (message, hint, key),
            );
        }
        Ok(round)
    }

    /// Waits for every check in flight to settle its delivery.
    pub async fn finish(&mut self) {
        while self.lane.join_next().await.is_some() {}
    }
}

fn settle(result: Result<(), paysettle_queue::QueueError>) {
    if let Err(err) = result {
        tracing::warn!(error = %err, "could not settle a hint delivery; it will be delivered again");
    }
}
