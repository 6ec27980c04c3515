//! The settled-event contract finance consumes (see the README): one JSON
//! object per message, routing key `payment.<status>.<provider>`.

use jiff::Timestamp;
use paysettle_core::{Money, Observation, PaymentStatus};
use serde::Serialize;

/// The event types finance hears about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Succeeded,
    Failed,
    Canceled,
    Refunded,
    Stale,
    Mismatch,
}

impl EventType {
    /// The event type for a payment entering `status`, if finance hears of it.
    pub fn for_status(status: PaymentStatus) -> Option<EventType> {
        match status {
            PaymentStatus::Succeeded => Some(EventType::Succeeded),
            PaymentStatus::Failed => Some(EventType::Failed),
            PaymentStatus::Canceled => Some(EventType::Canceled),
            PaymentStatus::Refunded => Some(EventType::Refunded),
            PaymentStatus::Stale => Some(EventType::Stale),
            PaymentStatus::Created | PaymentStatus::Pending => None,
        }
    }

    /// `payment.succeeded` and so on.
    pub fn name(self) -> &'static str {
        match self {
            EventType::Succeeded => "payment.succeeded",
            EventType::Failed => "payment.failed",
            EventType::Canceled => "payment.canceled",
            EventType::Refunded => "payment.refunded",
            EventType::Stale => "payment.stale",
            EventType::Mismatch => "payment.mismatch",
        }
    }

    fn key_word(self) -> &'static str {
        self.name().trim_start_matches("payment.")
    }
}

/// The published event. Field order is the contract's order.
#[derive(Debug, Clone, Serialize)]
pub struct SettledEvent<'a> {
    pub event_id: &'a str,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub provider: &'a str,
    pub account: &'a str,
    pub reference: &'a str,
    pub provider_transaction_id: Option<&'a str>,
    /// Minor units. For a refund, what this event refunds; for a mismatch,
    /// what the provider reported.
    pub amount: Option<i64>,
    pub currency: Option<&'a str>,
    pub status: &'static str,
    pub previous_status: &'static str,
    pub source: &'static str,
    pub occurred_at: String,
    pub ledger_version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_amount: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_currency: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<&'a str>,
}

/// Everything an event is built from.
pub(crate) struct EventInput<'a> {
    pub event_id: &'a str,
    pub event_type: EventType,
    pub observation: &'a Observation,
    pub provider_txn_id: Option<&'a str>,
    pub amount: Option<Money>,
    pub status: PaymentStatus,
    pub previous_status: PaymentStatus,
    pub version: i64,
    pub expected: Option<Money>,
    pub mismatch: Option<&'a str>,
}

/// The routing key and JSON body of an event.
pub(crate) fn build(input: &EventInput<'_>) -> (String, String) {
    let o = input.observation;
    let currency = input.amount.map(|m| m.currency().code());
    let event = SettledEvent {
        event_id: input.event_id,
        event_type: input.event_type.name(),
        provider: o.provider.as_str(),
        account: o.account.as_str(),
        reference: o.reference.as_str(),
        provider_transaction_id: input.provider_txn_id,
        amount: input.amount.map(Money::minor),
        currency,
        status: input.status.as_str(),
        previous_status: input.previous_status.as_str(),
        source: o.source.as_str(),
        occurred_at: rfc3339(o.observed_at),
        ledger_version: input.version,
        expected_amount: input.mismatch.and(input.expected.map(Money::minor)),
        expected_currency: input
            .mismatch
            .and(input.expected.map(|m| m.currency().code())),
        mismatch: input.mismatch,
    };
    let routing_key = format!(
        "payment.{}.{}",
        input.event_type.key_word(),
        o.provider.as_str()
    );
    // Serialising a struct of strings and integers cannot fail.
    let body = serde_json::to_string(&event).unwrap_or_default();
    (routing_key, body)
}

/// RFC 3339 in UTC with millisecond precision, as every event writes times.
pub fn rfc3339(at: Timestamp) -> String {
    format!("{:.3}", at)
}
