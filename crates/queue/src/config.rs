//! What the queue is told at start. A plain struct: the product's TOML
//! configuration fills it; tests build it directly.

use std::path::PathBuf;
use std::time::Duration;

use crate::QueueError;

/// Which backend carries the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendKind {
    /// RabbitMQ through lapin: production, where finance reads the events.
    RabbitMq,
    /// A SQLite file: a shop on one box, a laptop or a test, with no broker.
    #[default]
    Embedded,
}

/// The queue's settings, with defaults that run on one machine without a broker.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Which backend to use.
    pub backend: BackendKind,
    /// The broker's AMQP URL (`amqp://user:pass@host:port/vhost`). It carries a
    /// password, so it is never logged.
    pub amqp_url: String,
    /// Prefix of every queue and exchange name, so several sidecars (or tests)
    /// share one broker without touching each other's topology.
    pub prefix: String,
    /// How many unacknowledged messages the broker sends a consumer ahead: the
    /// worker's batch size is bounded by it.
    pub prefetch: u16,
    /// How many hints the hints queue holds at most; a hint past it is
    /// refused ([`QueueError::Full`]), and the receiver counts it dropped.
    pub hints_max_length: u64,
    /// How many times a message may be returned (nacked with requeue, or left
    /// unacked by a consumer that died) before it is dead-lettered; a limit of
    /// `n` allows `n + 1` deliveries. Keeps one poison message from looping forever.
    pub delivery_limit: u32,
    /// How long a publish waits for the broker's confirm before it is treated as
    /// failed (and spooled). Bounds how long the receiver keeps a provider waiting.
    pub confirm_timeout: Duration,
    /// How long `Queue::start` waits for the broker before starting on the spool
    /// alone (or failing, when there is no spool).
    pub connect_timeout: Duration,
    /// The longest pause between two reconnection attempts.
    pub reconnect_max_delay: Duration,
    /// How long lapin's in-place recovery of a dropped connection may take
    /// before the connection is abandoned and a new one made.
    pub recovery_grace: Duration,
    /// The spool file used when the broker is unreachable (RabbitMQ backend only);
    /// `None` turns spooling off, so an unreachable broker fails publishes.
    pub spool_path: Option<PathBuf>,
    /// How many spooled messages the forwarder sends to the broker per round.
    pub forward_batch: usize,
    /// The embedded backend's queue file.
    pub embedded_path: PathBuf,
    /// How long an embedded delivery stays leased to its consumer before it is
    /// delivered again: longer than the worker's longest batch.
    pub lease_duration: Duration,
    /// Whether to declare the finance queue bound to `payment.#`. Off when
    /// finance binds its own queue to the events exchange.
    pub finance_queue: bool,
    /// Embedded backend only: whether settled events and card registrations
    /// are also written to embedded finance and shop queues. Off in the
    /// product, where finance and the shop read them from the shop API's
    /// feeds (the ledger's outbox and the card feed) and nothing would ever
    /// take them out of those queues.
    pub embedded_event_queues: bool,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            backend: BackendKind::Embedded,
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            prefix: "paysettle".to_owned(),
            prefetch: 64,
            delivery_limit: 5,
            hints_max_length: 1000,
            confirm_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            reconnect_max_delay: Duration::from_secs(5),
            recovery_grace: Duration::from_secs(15),
            spool_path: Some(PathBuf::from("paysettle-spool.sqlite")),
            forward_batch: 256,
            embedded_path: PathBuf::from("paysettle-queue.sqlite"),
            lease_duration: Duration::from_secs(60),
            finance_queue: true,
            embedded_event_queues: true,
        }
    }
}

impl QueueConfig {
    /// Refuses settings that cannot work, before anything is opened or declared.
    pub fn validate(&self) -> Result<(), QueueError> {
        let bad = |why: &str| Err(QueueError::InvalidConfig(why.to_owned()));
        if self.prefix.is_empty() {
            return bad("prefix must not be empty");
        }
        // The longest derived name is "<prefix>.callbacks.dlq"; AMQP names are
        // short strings of at most 255 bytes.
        if self.prefix.len() > 200 {
            return bad("prefix must be at most 200 bytes");
        }
        if self.prefetch == 0 {
            return bad("prefetch must be at least 1 (0 means unlimited to RabbitMQ)");
        }
        if self.confirm_timeout.is_zero() {
            return bad("confirm_timeout must be positive");
        }
        if self.lease_duration.is_zero() {
            return bad("lease_duration must be positive");
        }
        if self.hints_max_length == 0 {
            return bad("hints_max_length must be at least 1");
        }
        if i64::try_from(self.hints_max_length).is_err() {
            return bad("hints_max_length is too large");
        }
        if self.forward_batch == 0 {
            return bad("forward_batch must be at least 1");
        }
        if i64::from(self.delivery_limit) > i64::from(i32::MAX) {
            return bad("delivery_limit is too large");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        QueueConfig::default().validate().unwrap();
        let err = QueueConfig {
            prefix: String::new(),
            ..QueueConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("prefix"), "{err}");
        let err = QueueConfig {
            prefetch: 0,
            ..QueueConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("prefetch"), "{err}");
        let err = QueueConfig {
            hints_max_length: 0,
            ..QueueConfig::default()
        }
        .validate()
        .unwrap_err();
        assert!(err.to_string().contains("hints_max_length"), "{err}");
    }
}
