//! Consuming from RabbitMQ in batches, across reconnections.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use lapin::Acker;
use lapin::Channel;
use lapin::message::Delivery as LapinDelivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use tokio::time::Instant;

use super::{Broker, Link};
use crate::message::{DEAD_LETTER_REASON_HEADER, Message};
use crate::stats::bump;
use crate::{Delivery, QueueError, QueueKind, Settle};

/// Header RabbitMQ's quorum queues put on a message that was returned before.
const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";
/// Header telling which queue a dead-lettered copy came from.
const DEAD_LETTERED_FROM_HEADER: &str = "x-paysettle-dead-lettered-from";
/// How often a consumer waiting for the broker looks whether it is back
/// (lapin's in-place recovery announces nothing the consumer can await).
const RECONNECT_POLL: Duration = Duration::from_millis(100);

struct Active {
    generation: u64,
    channel: Channel,
    consumer: lapin::Consumer,
}

/// A manual-ack consumer with a prefetch, re-created on every new connection.
pub(crate) struct RabbitConsumer {
    broker: Arc<Broker>,
    queue: String,
    dead_letter_exchange: Option<String>,
    /// Unacknowledged deliveries the broker sends ahead at most.
    prefetch: u16,
    active: Option<Active>,
}

impl std::fmt::Debug for RabbitConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitConsumer")
            .field("queue", &self.queue)
            .field("active", &self.active.as_ref().map(|a| a.generation))
            .finish()
    }
}

impl RabbitConsumer {
    /// `max_held` overrides `queue.prefetch` for this consumer's channel.
    pub(crate) fn new(
        broker: Arc<Broker>,
        kind: QueueKind,
        max_held: Option<u16>,
    ) -> Result<Self, QueueError> {
        let queue = broker
            .topology
            .queue(kind)
            .ok_or(QueueError::Unsupported(
                "the finance queue is configured off",
            ))?
            .to_owned();
        // Only the callbacks and hints queues have somewhere to dead-letter to.
        let dead_letter_exchange = matches!(kind, QueueKind::Callbacks | QueueKind::Hints)
            .then(|| broker.topology.dead_letter_exchange.clone());
        let prefetch = max_held.unwrap_or(broker.config.prefetch).max(1);
        Ok(Self {
            broker,
            queue,
            dead_letter_exchange,
            prefetch,
            active: None,
        })
    }

    /// Makes sure a consumer runs on the current connection; `false` if the
    /// broker did not come back before `deadline`.
    async fn ensure(&mut self, deadline: Instant) -> Result<bool, QueueError> {
        let current = self.broker.links().borrow().as_ref().map(|l| l.generation);
        if let Some(active) = &self.active
            && Some(active.generation) == current
        {
            return Ok(true);
        }
        // Closing the old channel (by dropping it) returns its unacked messages.
        self.active = None;
        let link = loop {
            if let Some(link) = self.broker.usable_link() {
                break link;
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::select! {
                _ = self.broker.shutdown.cancelled() => return Err(QueueError::Closed),
                _ = tokio::time::sleep_until(deadline.min(Instant::now() + RECONNECT_POLL)) => {}
            }
        };
        self.active = Some(self.consume_on(&link).await?);
        Ok(true)
    }

    async fn consume_on(&self, link: &Link) -> Result<Active, QueueError> {
        let channel = link
            .conn
            .create_channel()
            .await
            .map_err(|e| QueueError::broker("channel.open", e))?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| QueueError::broker("basic.qos", e))?;
        let consumer = channel
            .basic_consume(
                ShortString::from(self.queue.as_str()),
                ShortString::from(""),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| QueueError::broker("basic.consume", e))?;
        tracing::debug!(queue = %self.queue, generation = link.generation, "consuming");
        Ok(Active {
            generation: link.generation,
            channel,
            consumer,
        })
    }

    pub(crate) async fn next_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>, QueueError> {
        let deadline = Instant::now() + wait;
        let max = max.max(1);
        let mut out = Vec::new();
        loop {
            if !self.ensure(deadline).await? {
                return if out.is_empty() {
                    Err(QueueError::BrokerUnavailable(
                        "not connected to the broker".to_owned(),
                    ))
                } else {
                    Ok(out)
                };
            }
            let Some(active) = self.active.as_mut() else {
                continue;
            };
            // Wait for the first delivery; after that take only what is already here.
            let next = if out.is_empty() {
                match tokio::time::timeout_at(deadline, next_item(&mut active.consumer)).await {
                    Ok(item) => item,
                    Err(_) => return Ok(out),
                }
            } else {
                match ready_item(&mut active.consumer) {
                    Some(item) => item,
                    None => return Ok(out),
                }
            };
            match next {
                Some(Ok(delivery)) => {
                    out.push(self.convert(delivery));
                    if out.len() >= max {
                        return Ok(out);
                    }
                }
                Some(Err(error)) => {
                    if !out.is_empty() {
                        return Ok(out);
                    }
                    tracing::warn!(queue = %self.queue, %error, "consumer interrupted; waiting for recovery");
                    let channel = active.channel.clone();
                    match tokio::time::timeout_at(deadline, channel.wait_for_recovery(error)).await
                    {
                        Ok(Ok(())) => {}
                        // lapin cannot recover this one: a new connection will come.
                        Ok(Err(_)) => self.active = None,
                        Err(_) => {
                            return Err(QueueError::BrokerUnavailable(
                                "the broker connection is recovering".to_owned(),
                            ));
                        }
                    }
                }
                None => {
                    // The consumer was cancelled (queue deleted, channel closed).
                    self.active = None;
                    if !out.is_empty() {
                        return Ok(out);
                    }
                }
            }
        }
    }

    fn convert(&self, d: LapinDelivery) -> Delivery {
        let props = &d.properties;
        let headers = props
            .headers()
            .as_ref()
            .map(string_headers)
            .unwrap_or_default();
        let returned = props
            .headers()
            .as_ref()
            .and_then(|h| h.inner().get(DELIVERY_COUNT_HEADER))
            .and_then(as_u32);
        let delivery_count = match returned {
            Some(n) => n.saturating_add(1),
            None if d.redelivered => 2,
            None => 1,
        };
        let message = Message {
            message_id: props
                .message_id()
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            content_type: props
                .content_type()
                .as_ref()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            headers,
            body: d.data.into(),
        };
        Delivery::new(
            message,
            delivery_count,
            d.redelivered,
            Settle::Rabbit(RabbitSettle {
                acker: d.acker,
                broker: self.broker.clone(),
                queue: self.queue.clone(),
                dead_letter_exchange: self.dead_letter_exchange.clone(),
            }),
        )
    }
}

async fn next_item(consumer: &mut lapin::Consumer) -> Option<lapin::Result<LapinDelivery>> {
    std::future::poll_fn(|cx| Pin::new(&mut *consumer).poll_next(cx)).await
}

/// The next delivery if lapin already has it, without waiting.
fn ready_item(consumer: &mut lapin::Consumer) -> Option<Option<lapin::Result<LapinDelivery>>> {
    let mut cx = Context::from_waker(Waker::noop());
    match Pin::new(consumer).poll_next(&mut cx) {
        Poll::Ready(item) => Some(item),
        Poll::Pending => None,
    }
}

fn as_u32(v: &AMQPValue) -> Option<u32> {
    let n: i64 = match v {
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        _ => return None,
    };
    u32::try_from(n).ok()
}

/// Scalar headers as strings; RabbitMQ's structured ones (`x-death`) are left
/// out, since a message's headers are a string map on both backends.
fn string_headers(table: &FieldTable) -> BTreeMap<String, String> {
    table
        .inner()
        .iter()
        .filter_map(|(k, v)| {
            let s = match v {
                AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                AMQPValue::ShortString(s) => s.as_str().to_owned(),
                AMQPValue::Boolean(b) => b.to_string(),
                AMQPValue::Timestamp(t) => t.to_string(),
                other => as_u32(other)?.to_string(),
            };
            Some((k.as_str().to_owned(), s))
        })
        .collect()
}

/// How a RabbitMQ delivery is settled.
pub(crate) struct RabbitSettle {
    acker: Acker,
    broker: Arc<Broker>,
    queue: String,
    dead_letter_exchange: Option<String>,
}

impl std::fmt::Debug for RabbitSettle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitSettle")
            .field("queue", &self.queue)
            .finish()
    }
}

impl RabbitSettle {
    fn done(result: lapin::Result<bool>, what: &'static str) -> Result<(), QueueError> {
        match result {
            Ok(true) => Ok(()),
            // Used already, or its channel is gone: the broker redelivers it.
            Ok(false) => Err(QueueError::DeliveryLost),
            Err(e) => Err(QueueError::broker(what, e)),
        }
    }

    pub(crate) async fn ack(&self) -> Result<(), QueueError> {
        Self::done(
            self.acker.ack(BasicAckOptions::default()).await,
            "basic.ack",
        )?;
        bump(&self.broker.stats.acked, 1);
        Ok(())
    }

    pub(crate) async fn nack_requeue(&self) -> Result<(), QueueError> {
        let options = BasicNackOptions {
            multiple: false,
            requeue: true,
        };
        Self::done(self.acker.nack(options).await, "basic.nack")?;
        bump(&self.broker.stats.requeued, 1);
        Ok(())
    }

    /// Publishes a copy carrying the reason to the dead-letter exchange, waits
    /// for its confirm, then acks the original. (A plain reject would dead-letter
    /// too, but RabbitMQ would record only "rejected", not why.) If the process
    /// dies between the two, the message is in the dead-letter queue and will
    /// also be delivered again: a duplicate with the same `message_id`, never a loss.
    pub(crate) async fn dead_letter(
        &self,
        message: &Message,
        reason: &str,
    ) -> Result<(), QueueError> {
        let exchange = self
            .dead_letter_exchange
            .as_deref()
            .ok_or(QueueError::Unsupported(
                "this queue has no dead-letter queue",
            ))?;
        let mut copy = message.clone();
        copy.headers
            .insert(DEAD_LETTER_REASON_HEADER.to_owned(), reason.to_owned());
        copy.headers
            .insert(DEAD_LETTERED_FROM_HEADER.to_owned(), self.queue.clone());
        self.broker
            .publish_confirmed(exchange, &self.queue, &copy)
            .await?;
        Self::done(
            self.acker.ack(BasicAckOptions::default()).await,
            "basic.ack",
        )?;
        bump(&self.broker.stats.dead_lettered, 1);
        tracing::warn!(message_id = %message.message_id, queue = %self.queue, reason, "dead-lettered");
        Ok(())
    }
}
