//! The names and arguments of everything the queue declares, and how a
//! declaration that disagrees with the broker becomes a clear error.
//!
//! With prefix `p`:
//!
//! | name               | what                                                       |
//! |--------------------|------------------------------------------------------------|
//! | `p.callbacks`      | quorum queue, `x-delivery-limit`, dead-letters to `p.callbacks.dlx` |
//! | `p.callbacks.dlx`  | durable fanout exchange for dead letters                   |
//! | `p.callbacks.dlq`  | quorum queue bound to `p.callbacks.dlx`                    |
//! | `p.hints`          | quorum queue for Portmanat's unsigned return hints, apart from signed callbacks: `x-max-length` with `x-overflow = reject-publish` (a hint past the bound is refused and counted at the receiver), `x-delivery-limit`, dead-letters to `p.callbacks.dlx` |
//! | `p.events`         | durable topic exchange for settled events                  |
//! | `p.finance`        | quorum queue bound to `p.events` with `payment.#` (optional) |
//! | `p.shop`           | quorum queue bound to `p.events` with `card.#`: card registrations for the shop |
//!
//! The embedded backend uses the same queue names as FIFO names, so the same
//! words mean the same things in logs whichever backend runs.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ErrorKind, ExchangeKind};

use crate::{QueueError, QueueKind};

/// The binding key of the finance queue: every settled event.
pub const FINANCE_BINDING: &str = "payment.#";

/// The binding key of the shop queue: card registrations (they carry a card
/// token, so they never go to finance, and a queue always takes them, so a
/// mandatory publish of one is never unroutable).
pub const SHOP_BINDING: &str = "card.#";

/// The names derived from the configured prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    /// Inbound callbacks queue.
    pub callbacks: String,
    /// Exchange the callbacks queue dead-letters to.
    pub dead_letter_exchange: String,
    /// Queue that holds dead-lettered callbacks.
    pub dead_letters: String,
    /// Portmanat's return hints: unsigned, so never in the way of a signed
    /// callback, and bounded.
    pub hints: String,
    /// Topic exchange settled events are published to.
    pub events_exchange: String,
    /// Finance's queue, unless configured off.
    pub finance: Option<String>,
    /// The shop's queue of card registrations.
    pub shop: String,
}

impl Topology {
    /// Derives every name from `prefix`.
    pub fn new(prefix: &str, finance_queue: bool) -> Self {
        Self {
            callbacks: format!("{prefix}.callbacks"),
            dead_letter_exchange: format!("{prefix}.callbacks.dlx"),
            dead_letters: format!("{prefix}.callbacks.dlq"),
            hints: format!("{prefix}.hints"),
            events_exchange: format!("{prefix}.events"),
            finance: finance_queue.then(|| format!("{prefix}.finance")),
            shop: format!("{prefix}.shop"),
        }
    }

    /// The queue name behind `kind`, if that queue exists in this topology.
    pub fn queue(&self, kind: QueueKind) -> Option<&str> {
        match kind {
            QueueKind::Callbacks => Some(&self.callbacks),
            QueueKind::DeadLetters => Some(&self.dead_letters),
            QueueKind::Hints => Some(&self.hints),
            QueueKind::Finance => self.finance.as_deref(),
            QueueKind::Shop => Some(&self.shop),
        }
    }

    /// The queue an event with `routing_key` reaches, if any (the embedded
    /// backend's stand-in for the topic exchange's routing).
    pub(crate) fn route(&self, routing_key: &str) -> Option<&str> {
        let under =
            |word: &str| routing_key == word || routing_key.starts_with(&format!("{word}."));
        if under("payment") {
            self.finance.as_deref()
        } else if under("card") {
            Some(&self.shop)
        } else {
            None
        }
    }
}

fn quorum_args(extra: &[(&str, AMQPValue)]) -> FieldTable {
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    for (k, v) in extra {
        args.insert(ShortString::from(*k), v.clone());
    }
    args
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

/// Declares the whole topology on `channel`. Declaring is idempotent: against
/// an identical topology nothing changes. Against a different one, RabbitMQ
/// closes the channel with `PRECONDITION_FAILED`, which becomes
/// [`QueueError::TopologyConflict`] naming the queue or exchange and argument;
/// the channel is unusable afterwards, so pass one made for this.
pub(crate) async fn declare(
    channel: &Channel,
    topology: &Topology,
    delivery_limit: u32,
    hints_max_length: u64,
) -> Result<(), QueueError> {
    let exchange = |name: &str, kind: ExchangeKind| {
        let name = name.to_owned();
        async move {
            channel
                .exchange_declare(
                    ShortString::from(name.as_str()),
                    kind,
                    durable_exchange(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| conflict_or_broker(e, "exchange", &name))
        }
    };
    let queue = |name: &str, args: FieldTable| {
        let name = name.to_owned();
        async move {
            channel
                .queue_declare(ShortString::from(name.as_str()), durable_queue(), args)
                .await
                .map(|_| ())
                .map_err(|e| conflict_or_broker(e, "queue", &name))
        }
    };
    let bind = |queue: &str, exchange: &str, key: &str| {
        let (queue, exchange, key) = (queue.to_owned(), exchange.to_owned(), key.to_owned());
        async move {
            channel
                .queue_bind(
                    ShortString::from(queue.as_str()),
                    ShortString::from(exchange.as_str()),
                    ShortString::from(key.as_str()),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(|e| QueueError::broker("queue.bind", e))
        }
    };

    exchange(&topology.dead_letter_exchange, ExchangeKind::Fanout).await?;
    queue(&topology.dead_letters, quorum_args(&[])).await?;
    bind(&topology.dead_letters, &topology.dead_letter_exchange, "").await?;
    let limit = i64::from(delivery_limit);
    queue(
        &topology.callbacks,
        quorum_args(&[
            ("x-delivery-limit", AMQPValue::LongLongInt(limit)),
            (
                "x-dead-letter-exchange",
                AMQPValue::LongString(LongString::from(topology.dead_letter_exchange.as_str())),
            ),
        ]),
    )
    .await?;
    queue(
        &topology.hints,
        quorum_args(&[
            ("x-delivery-limit", AMQPValue::LongLongInt(limit)),
            (
                "x-dead-letter-exchange",
                AMQPValue::LongString(LongString::from(topology.dead_letter_exchange.as_str())),
            ),
            (
                "x-max-length",
                AMQPValue::LongLongInt(i64::try_from(hints_max_length).unwrap_or(i64::MAX)),
            ),
            // Refused, so the publisher (the receiver) knows and counts it;
            // drop-head would drop the oldest silently.
            (
                "x-overflow",
                AMQPValue::LongString(LongString::from("reject-publish")),
            ),
        ]),
    )
    .await?;
    exchange(&topology.events_exchange, ExchangeKind::Topic).await?;
    if let Some(finance) = &topology.finance {
        queue(finance, quorum_args(&[])).await?;
        bind(finance, &topology.events_exchange, FINANCE_BINDING).await?;
    }
    queue(&topology.shop, quorum_args(&[])).await?;
    bind(&topology.shop, &topology.events_exchange, SHOP_BINDING).await?;
    Ok(())
}

fn conflict_or_broker(e: lapin::Error, kind: &'static str, name: &str) -> QueueError {
    if let ErrorKind::ProtocolError(amqp) = e.kind()
        && matches!(
            amqp.kind(),
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED)
        )
    {
        let detail = amqp.get_message().as_str().to_owned();
        return QueueError::TopologyConflict {
            kind,
            name: name.to_owned(),
            argument: inequivalent_argument(&detail).unwrap_or_else(|| "unknown".to_owned()),
            detail,
        };
    }
    QueueError::broker(
        if kind == "queue" {
            "queue.declare"
        } else {
            "exchange.declare"
        },
        e,
    )
}

/// RabbitMQ says `inequivalent arg 'x-delivery-limit' for queue 'p.callbacks'
/// in vhost '/': received … but current is …`; the quoted argument is the
/// part an operator needs first.
fn inequivalent_argument(detail: &str) -> Option<String> {
    let rest = detail.split("inequivalent arg '").nth(1)?;
    Some(rest.split('\'').next()?.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prefix() {
        let t = Topology::new("shop1", true);
        assert_eq!(t.callbacks, "shop1.callbacks");
        assert_eq!(t.dead_letters, "shop1.callbacks.dlq");
        assert_eq!(t.queue(QueueKind::Hints), Some("shop1.hints"));
        assert_eq!(t.finance.as_deref(), Some("shop1.finance"));
        assert_eq!(t.queue(QueueKind::Finance), Some("shop1.finance"));
        assert_eq!(
            Topology::new("shop1", false).queue(QueueKind::Finance),
            None
        );
    }

    #[test]
    fn finance_routing_is_payment_hash() {
        let t = Topology::new("p", true);
        assert_eq!(t.route("payment.succeeded.plutu"), Some("p.finance"));
        assert_eq!(t.route("payment"), Some("p.finance"));
        assert_eq!(t.route("payments.x"), None);
        assert_eq!(t.route("refund.x"), None);
        assert_eq!(t.route("card.registered.paysys"), Some("p.shop"));
        assert_eq!(t.route("cards.x"), None);
        assert_eq!(Topology::new("p", false).route("payment.x"), None);
    }

    #[test]
    fn the_conflicting_argument_is_read_from_the_broker_text() {
        let text = "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for queue \
                    'p.callbacks' in vhost '/': received the value '5' of type 'long' but \
                    current is none";
        assert_eq!(
            inequivalent_argument(text).as_deref(),
            Some("x-delivery-limit")
        );
        assert_eq!(inequivalent_argument("something else"), None);
    }
}
