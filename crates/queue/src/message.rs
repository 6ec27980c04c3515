//! What goes in and what comes out: [`Message`], [`Durable`] and [`QueueKind`].

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::fifo::FifoMessage;

/// The header a dead-lettered message carries with the reason the worker gave.
pub use crate::fifo::DEAD_LETTER_REASON_HEADER;

/// One message, the same on both backends: what the receiver wraps a callback
/// in and what the outbox relay wraps a settled event in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Stable id chosen by the producer; consumers dedupe on it, because the
    /// queue delivers at least once (a spooled message may arrive twice).
    pub message_id: String,
    /// MIME type of `body`, e.g. `application/json`.
    pub content_type: String,
    /// Application headers (provider, received-at…); string values only, so
    /// both backends carry them the same way.
    pub headers: BTreeMap<String, String>,
    /// The payload.
    pub body: Bytes,
}

impl Message {
    /// A JSON message with no headers: the common case for callbacks and events.
    pub fn json(message_id: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            message_id: message_id.into(),
            content_type: "application/json".to_owned(),
            headers: BTreeMap::new(),
            body: body.into(),
        }
    }

    /// Adds a header; for building messages in one expression.
    #[must_use]
    pub fn with_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    pub(crate) fn to_fifo(&self) -> FifoMessage {
        FifoMessage {
            message_id: self.message_id.clone(),
            content_type: self.content_type.clone(),
            headers: self.headers.clone(),
            body: self.body.to_vec(),
        }
    }

    pub(crate) fn from_fifo(m: FifoMessage) -> Self {
        Self {
            message_id: m.message_id,
            content_type: m.content_type,
            headers: m.headers,
            body: Bytes::from(m.body),
        }
    }
}

/// Where a published message became durable. Every variant is a success the
/// receiver may acknowledge to the provider; only an error is not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durable {
    /// RabbitMQ confirmed it.
    Broker,
    /// The broker was unreachable or slow; the message is in the local spool and
    /// the forwarder will move it to RabbitMQ.
    Spooled,
    /// Committed to the embedded queue's file.
    Embedded,
}

/// Which of the topology's queues to consume from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueKind {
    /// Inbound provider callbacks: what the worker consumes.
    Callbacks,
    /// Callbacks that were dead-lettered (poison, or over the delivery limit),
    /// for an operator to inspect.
    DeadLetters,
    /// Settled events as finance receives them (when the finance queue is on).
    Finance,
    /// Card registrations for the shop (`card.#`).
    Shop,
}
