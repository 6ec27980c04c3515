//! The RabbitMQ backend: a supervised lapin connection, confirmed publishes
//! and consumers.
//!
//! Two layers of recovery. lapin's own auto-recovery (enabled on every
//! connection) rides out short drops in place: it reconnects, replays the
//! channels, confirm mode, QoS and consumers. When it gives up (its backoff is
//! deliberately short) or the broker was never reachable, the supervisor task
//! here makes a new connection with its own unbounded backoff and publishes it
//! as a new [`Link`] generation; consumers notice the generation change and
//! consume again. Either way the process never restarts.

pub(crate) mod consumer;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, PublisherConfirm,
};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::message::Message;
use crate::stats::{Counters, bump};
use crate::{QueueConfig, QueueError, QueueKind, Topology, topology};

/// AMQP delivery mode 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;
/// How often the supervisor looks at the connection's state.
const WATCH_EVERY: Duration = Duration::from_millis(200);

/// One live connection and its publishing channel.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) generation: u64,
    pub(crate) conn: Connection,
    publish: RwLock<Channel>,
}

impl Link {
    pub(crate) fn publish_channel(&self) -> Channel {
        self.publish
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn usable(&self) -> bool {
        let status = self.conn.status();
        status.connected() && !status.blocked() && self.publish_channel().status().connected()
    }
}

/// State shared by the publisher, the consumers, the forwarder and the supervisor.
#[derive(Debug)]
pub(crate) struct Broker {
    pub(crate) config: QueueConfig,
    pub(crate) topology: Topology,
    pub(crate) stats: Arc<Counters>,
    link: watch::Sender<Option<Arc<Link>>>,
    /// Set when a publish failed or timed out on a connection that looks up:
    /// publishes go straight to the spool until the forwarder proves the broker
    /// confirms again, instead of each waiting out the confirm timeout.
    degraded: AtomicBool,
    pub(crate) shutdown: CancellationToken,
}

impl Broker {
    pub(crate) fn new(config: QueueConfig, topology: Topology, stats: Arc<Counters>) -> Arc<Self> {
        Arc::new(Self {
            config,
            topology,
            stats,
            link: watch::Sender::new(None),
            degraded: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
        })
    }

    /// The current link, if it can take a publish right now.
    pub(crate) fn usable_link(&self) -> Option<Arc<Link>> {
        self.link.borrow().clone().filter(|l| l.usable())
    }

    pub(crate) fn links(&self) -> watch::Receiver<Option<Arc<Link>>> {
        self.link.subscribe()
    }

    pub(crate) fn is_degraded(&self) -> bool {
        self.degraded.load(Ordering::Relaxed)
    }

    pub(crate) fn set_degraded(&self, degraded: bool, why: &dyn std::fmt::Display) {
        let was = self.degraded.swap(degraded, Ordering::Relaxed);
        if was != degraded {
            if degraded {
                tracing::warn!(reason = %why, "broker publishes degraded; spooling");
            } else {
                tracing::info!(reason = %why, "broker publishes healthy again");
            }
        }
    }

    /// Whether a publish would go to the broker now.
    pub(crate) fn is_healthy(&self) -> bool {
        !self.is_degraded() && self.usable_link().is_some()
    }

    /// Sends one message without waiting for its confirm; the frames are
    /// queued in call order, which is what keeps the forwarder's order.
    pub(crate) async fn start_publish(
        &self,
        channel: &Channel,
        exchange: &str,
        routing_key: &str,
        message: &Message,
    ) -> Result<PublisherConfirm, QueueError> {
        let properties = properties(message)?;
        let exchange = short(exchange, "exchange")?;
        let routing_key = short(routing_key, "routing key")?;
        channel
            .basic_publish(
                exchange,
                routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &message.body,
                properties,
            )
            .await
            .map_err(|e| QueueError::broker("basic.publish", e))
    }

    /// Waits for one confirm until `deadline`; a returned message, a nack or
    /// the deadline are errors.
    pub(crate) async fn finish_publish(
        &self,
        confirm: PublisherConfirm,
        deadline: Instant,
        exchange: &str,
        routing_key: &str,
    ) -> Result<(), QueueError> {
        match tokio::time::timeout_at(deadline, confirm).await {
            Err(_) => Err(QueueError::ConfirmTimeout(self.config.confirm_timeout)),
            Ok(Err(e)) => Err(QueueError::broker("publisher confirm", e)),
            Ok(Ok(Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)))) => {
                Err(QueueError::Unroutable {
                    exchange: exchange.to_owned(),
                    routing_key: routing_key.to_owned(),
                    reply: format!("{} {}", returned.reply_code, returned.reply_text),
                })
            }
            Ok(Ok(Confirmation::Nack(None))) => Err(QueueError::Nacked),
            Ok(Ok(Confirmation::NotRequested)) => Err(QueueError::InvalidConfig(
                "publisher confirms are not enabled on the publish channel".to_owned(),
            )),
        }
    }

    /// Publishes with `mandatory` and returns only after the broker confirmed;
    /// everything else is an error.
    pub(crate) async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        message: &Message,
    ) -> Result<(), QueueError> {
        let link = self
            .usable_link()
            .ok_or_else(|| QueueError::BrokerUnavailable("not connected".to_owned()))?;
        let deadline = Instant::now() + self.config.confirm_timeout;
        let channel = link.publish_channel();
        let confirm = tokio::time::timeout_at(
            deadline,
            self.start_publish(&channel, exchange, routing_key, message),
        )
        .await
        .map_err(|_| QueueError::ConfirmTimeout(self.config.confirm_timeout))??;
        self.finish_publish(confirm, deadline, exchange, routing_key)
            .await
    }

    /// Messages in one of the topology's queues, by a passive declare on a
    /// channel of its own (a missing queue closes the channel it is asked on).
    pub(crate) async fn message_count(&self, kind: QueueKind) -> Result<u64, QueueError> {
        let queue = self.topology.queue(kind).ok_or(QueueError::Unsupported(
            "the finance queue is configured off",
        ))?;
        let link = self
            .usable_link()
            .ok_or_else(|| QueueError::BrokerUnavailable("not connected".to_owned()))?;
        let channel = link
            .conn
            .create_channel()
            .await
            .map_err(|e| QueueError::broker("channel.open", e))?;
        let declared = channel
            .queue_declare(
                short(queue, "queue")?,
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| QueueError::broker("queue.declare passive", e));
        let _ = channel.close(200, "OK".into()).await;
        Ok(u64::from(declared?.message_count()))
    }

    async fn connect(&self) -> Result<Link, QueueError> {
        let max_delay = self.config.reconnect_max_delay;
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from(format!(
                "paysettle {}",
                self.config.prefix
            )))
            .enable_auto_recover()
            // Short on purpose: lapin recovers blips in place; a longer outage is
            // the supervisor's, which can also replace a connection lapin gave up on.
            .configure_backoff(move |b| {
                b.with_min_delay(Duration::from_millis(100))
                    .with_max_delay(max_delay)
                    .with_max_times(5)
                    .with_jitter()
            });
        let conn = tokio::time::timeout(
            self.config.connect_timeout,
            Connection::connect(&self.config.amqp_url, properties),
        )
        .await
        .map_err(|_| QueueError::BrokerUnavailable("connect timed out".to_owned()))?
        .map_err(|e| QueueError::broker("connect", e))?;
        let setup = async {
            // A declaration conflict closes its channel, so it gets its own.
            let declaring = conn
                .create_channel()
                .await
                .map_err(|e| QueueError::broker("channel.open", e))?;
            topology::declare(
                &declaring,
                &self.topology,
                self.config.delivery_limit,
                self.config.hints_max_length,
            )
            .await?;
            let _ = declaring.close(200, "OK".into()).await;
            open_publish_channel(&conn).await
        };
        match setup.await {
            Ok(publish) => Ok(Link {
                generation: 0,
                conn,
                publish: RwLock::new(publish),
            }),
            Err(e) => {
                let _ = conn.close(200, "OK".into()).await;
                Err(e)
            }
        }
    }
}

async fn open_publish_channel(conn: &Connection) -> Result<Channel, QueueError> {
    let channel = conn
        .create_channel()
        .await
        .map_err(|e| QueueError::broker("channel.open", e))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| QueueError::broker("confirm.select", e))?;
    Ok(channel)
}

/// Runs until shutdown: connects, declares, publishes the link, watches it,
/// and starts over when it is gone. The first outcome goes to `first`, so
/// `Queue::start` can report a topology conflict or an unreachable broker.
pub(crate) async fn supervise(broker: Arc<Broker>, first: oneshot::Sender<Result<(), QueueError>>) {
    let mut first = Some(first);
    let mut generation = 0_u64;
    let mut failures = 0_u32;
    loop {
        let attempt = tokio::select! {
            _ = broker.shutdown.cancelled() => break,
            attempt = broker.connect() => attempt,
        };
        match attempt {
            Ok(mut link) => {
                generation += 1;
                failures = 0;
                link.generation = generation;
                let link = Arc::new(link);
                broker.link.send_replace(Some(link.clone()));
                tracing::info!(generation, prefix = %broker.config.prefix, "connected to the broker");
                if let Some(first) = first.take() {
                    let _ = first.send(Ok(()));
                }
                watch_link(&broker, &link).await;
                broker.link.send_replace(None);
                if broker.shutdown.is_cancelled() {
                    close_quietly(&link.conn).await;
                    break;
                }
                bump(&broker.stats.reconnects, 1);
                tracing::warn!(generation, "broker connection lost for good; reconnecting");
                close_quietly(&link.conn).await;
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                if matches!(e, QueueError::TopologyConflict { .. }) {
                    tracing::error!(error = %e, "the broker's topology conflicts with ours");
                } else {
                    tracing::warn!(error = %e, failures, "cannot reach the broker");
                }
                if let Some(first) = first.take() {
                    let _ = first.send(Err(e));
                }
                let delay = backoff(failures, broker.config.reconnect_max_delay);
                tokio::select! {
                    _ = broker.shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    tracing::debug!("broker supervisor stopped");
}

/// Returns when the link cannot come back by itself (lapin gave up, or the
/// connection was closed) or on shutdown. Replaces a publish channel the
/// broker closed (e.g. after a publish to a missing exchange) on the way.
///
/// lapin's in-place recovery is given `recovery_grace` to finish: a recovery
/// that stalls (seen when the reconnect handshake itself is cut through the
/// fault test's proxy) must not keep the process off the broker, so the link
/// is abandoned for a new connection.
async fn watch_link(broker: &Broker, link: &Link) {
    let mut down_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            _ = tokio::time::sleep(WATCH_EVERY) => {}
        }
        let status = link.conn.status();
        if status.errored() || status.closed() {
            return;
        }
        // Down unless both the connection and its publish channel are up: a
        // recovery can also stall with only the channel left behind.
        if status.connected() && link.publish_channel().status().connected() {
            down_since = None;
        } else {
            let since = *down_since.get_or_insert_with(Instant::now);
            if since.elapsed() > broker.config.recovery_grace {
                tracing::warn!(
                    generation = link.generation,
                    reconnecting = status.reconnecting(),
                    "lapin's recovery did not finish in time; replacing the connection"
                );
                return;
            }
        }
        let publish = link.publish_channel();
        let channel = publish.status();
        if status.connected() && !channel.connected() && !channel.initializing() {
            tracing::warn!("publish channel closed by the broker; opening a new one");
            match open_publish_channel(&link.conn).await {
                Ok(channel) => {
                    *link.publish.write().unwrap_or_else(PoisonError::into_inner) = channel;
                }
                Err(e) => tracing::warn!(error = %e, "cannot reopen the publish channel"),
            }
        }
    }
}

async fn close_quietly(conn: &Connection) {
    // Closing a connection that is not connected (recovering, failed) has
    // nothing to say to the broker; dropping it is all there is to do.
    if conn.status().connected() {
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.close(200, "OK".into())).await;
    }
}

fn backoff(failures: u32, max: Duration) -> Duration {
    let exp = Duration::from_millis(100).saturating_mul(1_u32 << failures.min(10));
    exp.min(max)
}

fn short(value: &str, what: &str) -> Result<ShortString, QueueError> {
    ShortString::try_new(value)
        .map_err(|_| QueueError::InvalidMessage(format!("{what} is longer than 255 bytes")))
}

/// Every message: persistent, with `message_id`, `content_type` and headers.
pub(crate) fn properties(message: &Message) -> Result<BasicProperties, QueueError> {
    let mut headers = FieldTable::default();
    for (k, v) in &message.headers {
        headers.insert(
            short(k, "header name")?,
            AMQPValue::LongString(LongString::from(v.as_str())),
        );
    }
    Ok(BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(short(&message.message_id, "message_id")?)
        .with_content_type(short(&message.content_type, "content_type")?)
        .with_headers(headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_carry_everything_and_reject_overlong_fields() {
        let m = Message::json("id-1", "{}").with_header("provider", "plutu");
        let p = properties(&m).unwrap();
        assert_eq!(p.delivery_mode(), &Some(PERSISTENT));
        assert_eq!(p.message_id().as_ref().map(|s| s.as_str()), Some("id-1"));
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json")
        );
        assert!(p.headers().as_ref().unwrap().contains_key("provider"));
        let long = Message::json("x".repeat(256), "{}");
        assert!(matches!(
            properties(&long),
            Err(QueueError::InvalidMessage(_))
        ));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let max = Duration::from_secs(5);
        assert_eq!(backoff(1, max), Duration::from_millis(200));
        assert!(backoff(3, max) > backoff(2, max));
        assert_eq!(backoff(30, max), max);
    }
}
