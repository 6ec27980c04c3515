//! The queue crate's one error type.

use std::sync::Arc;
use std::time::Duration;

use crate::fifo::FifoError;

/// Everything the queue can fail with, in terms a caller can act on: the
/// receiver answers 503 on any error from `publish`, the worker backs off and
/// retries when [`QueueError::is_retryable`] says so, and an operator fixes the
/// configuration or the broker for the others.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// The broker is not connected (never reached, or reconnecting) and the
    /// operation cannot be spooled.
    #[error("the message broker is unavailable: {0}")]
    BrokerUnavailable(String),
    /// The broker or the connection failed during the operation.
    // lapin's error is in the text and deliberately not a `source`, so a
    // chain printed with `{:#}` says it once.
    #[error("broker error during {operation}: {error}")]
    Broker {
        /// What was being done.
        operation: &'static str,
        /// What lapin reported.
        error: lapin::Error,
    },
    /// No publisher confirm arrived in time; the message may or may not have
    /// reached the broker, so it must be treated as not published.
    #[error("no publisher confirm within {0:?}")]
    ConfirmTimeout(Duration),
    /// The broker refused the message (a publisher nack): it did not store it.
    #[error("the broker refused the message (nack)")]
    Nacked,
    /// The broker could not route a `mandatory` message to any queue and returned
    /// it: nothing stored it, so this is never a success.
    #[error(
        "unroutable message to exchange '{exchange}' with routing key '{routing_key}': {reply}"
    )]
    Unroutable {
        /// The exchange published to (`""` is the default exchange).
        exchange: String,
        /// The routing key used.
        routing_key: String,
        /// The broker's reply text, e.g. `NO_ROUTE`.
        reply: String,
    },
    /// The broker's topology disagrees with what this process declares: an
    /// existing queue or exchange has other arguments. Needs an operator.
    #[error("topology conflict on {kind} '{name}' (argument {argument}): {detail}")]
    TopologyConflict {
        /// `queue` or `exchange`.
        kind: &'static str,
        /// The queue's or exchange's name.
        name: String,
        /// The argument that differs, e.g. `x-delivery-limit`, when known.
        argument: String,
        /// The broker's (or the embedded store's) own explanation.
        detail: String,
    },
    /// The embedded queue or spool file failed.
    // The FIFO's message is part of this one, not a separate `source`, so a
    // chained report says it once.
    #[error("queue storage error: {0}")]
    Storage(Arc<FifoError>),
    /// Neither the broker nor the spool took the message: it is not durable
    /// anywhere, and the caller must not acknowledge it upstream.
    #[error("message is not durable: broker: {broker}; spool: {spool}")]
    NotDurable {
        /// Why the broker did not take it.
        broker: Box<QueueError>,
        /// Why the spool did not take it.
        spool: Box<QueueError>,
    },
    /// The message cannot be sent as it is (e.g. a field longer than AMQP allows).
    #[error("invalid message: {0}")]
    InvalidMessage(String),
    /// The configuration cannot work (e.g. an empty prefix).
    #[error("invalid queue configuration: {0}")]
    InvalidConfig(String),
    /// The delivery can no longer be acknowledged: its channel or lease is gone,
    /// so the message will be (or has been) delivered again.
    #[error("the delivery's lease or channel is gone; it will be delivered again")]
    DeliveryLost,
    /// The operation does not apply here, e.g. dead-lettering from a queue that
    /// has no dead-letter queue.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
    /// The queue was shut down.
    #[error("the queue is shut down")]
    Closed,
}

impl QueueError {
    /// Whether the same operation may succeed if tried again later.
    ///
    /// Connection trouble, timeouts and nacks pass; a missing route, a topology
    /// conflict, a bad message or configuration need a change first.
    pub fn is_retryable(&self) -> bool {
        match self {
            QueueError::BrokerUnavailable(_)
            | QueueError::Broker { .. }
            | QueueError::ConfirmTimeout(_)
            | QueueError::Nacked
            | QueueError::DeliveryLost => true,
            QueueError::Storage(e) => e.is_retryable(),
            QueueError::NotDurable { broker, spool } => {
                broker.is_retryable() || spool.is_retryable()
            }
            QueueError::Unroutable { .. }
            | QueueError::TopologyConflict { .. }
            | QueueError::InvalidMessage(_)
            | QueueError::InvalidConfig(_)
            | QueueError::Unsupported(_)
            | QueueError::Closed => false,
        }
    }

    pub(crate) fn broker(operation: &'static str, source: lapin::Error) -> Self {
        QueueError::Broker {
            operation,
            error: source,
        }
    }
}

impl From<FifoError> for QueueError {
    fn from(e: FifoError) -> Self {
        match e {
            FifoError::QueueConflict {
                queue,
                argument,
                existing,
                requested,
            } => QueueError::TopologyConflict {
                kind: "queue",
                detail: format!(
                    "embedded queue '{queue}' has {argument} = {existing}, declared {requested}"
                ),
                name: queue,
                argument: argument.to_owned(),
            },
            FifoError::NoDeadLetterQueue(_) => {
                QueueError::Unsupported("this queue has no dead-letter queue")
            }
            other => QueueError::Storage(Arc::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retryable_follows_what_a_caller_can_do() {
        assert!(QueueError::ConfirmTimeout(Duration::from_secs(1)).is_retryable());
        assert!(QueueError::Nacked.is_retryable());
        assert!(!QueueError::Closed.is_retryable());
        let unroutable = QueueError::Unroutable {
            exchange: "x".into(),
            routing_key: "k".into(),
            reply: "NO_ROUTE".into(),
        };
        assert!(!unroutable.is_retryable());
        let both = QueueError::NotDurable {
            broker: Box::new(QueueError::BrokerUnavailable("down".into())),
            spool: Box::new(QueueError::InvalidConfig("no spool".into())),
        };
        assert!(both.is_retryable(), "the broker may come back");
        let conflict: QueueError = FifoError::QueueConflict {
            queue: "p.callbacks".into(),
            argument: "delivery_limit",
            existing: "3".into(),
            requested: "5".into(),
        }
        .into();
        assert!(
            matches!(&conflict, QueueError::TopologyConflict { name, argument, .. }
                if name == "p.callbacks" && argument == "delivery_limit")
        );
        assert!(!conflict.is_retryable());
    }
}
