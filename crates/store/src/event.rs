//! The settled-event contract finance consumes (see the README): one JSON
//! object per message, routing key `payment.<status>.<provider>`.

use jiff::Timestamp;
use paysettle_core::decide::{Event, EventKind};
use paysettle_core::{Account, Money, Provider, Reference, Source};
use serde::Serialize;

fn key_word(kind: EventKind) -> &'static str {
    kind.name().trim_start_matches("payment.")
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
    /// Minor units. For a refund, what this event refunds (`null` when the
    /// provider did not say); for a flag, what the provider reported.
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
    /// `payment.mismatch`: which disagreement.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mismatch: Option<&'a str>,
    /// `payment.refunded`: everything refunded so far (`null`: not known).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refunded_total: Option<Option<i64>>,
    /// `payment.conflict` and `payment.resolved`: the flag.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<&'a str>,
    /// `payment.resolved`: `accept_provider` or `keep_ledger`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution: Option<&'a str>,
}

/// The payment and the moment an event is about.
pub(crate) struct EventContext<'a> {
    pub event_id: &'a str,
    pub provider: Provider,
    pub account: &'a Account,
    pub reference: &'a Reference,
    pub provider_txn_id: Option<&'a str>,
    pub source: Source,
    pub occurred_at: Timestamp,
}

/// The routing key and JSON body of an event.
pub(crate) fn build(event: &Event, context: &EventContext<'_>) -> (String, String) {
    let flag = event.flag.map(|f| f.code());
    let is_flag = matches!(event.kind, EventKind::Mismatch | EventKind::Conflict);
    let body = SettledEvent {
        event_id: context.event_id,
        event_type: event.kind.name(),
        provider: context.provider.as_str(),
        account: context.account.as_str(),
        reference: context.reference.as_str(),
        provider_transaction_id: context.provider_txn_id,
        amount: event.amount.map(Money::minor),
        currency: event.amount.map(|m| m.currency().code()),
        status: event.status.as_str(),
        previous_status: event.previous_status.as_str(),
        source: context.source.as_str(),
        occurred_at: rfc3339(context.occurred_at),
        ledger_version: event.version,
        expected_amount: is_flag.then(|| event.expected.map(Money::minor)).flatten(),
        expected_currency: is_flag
            .then(|| event.expected.map(|m| m.currency().code()))
            .flatten(),
        mismatch: (event.kind == EventKind::Mismatch)
            .then_some(flag)
            .flatten(),
        refunded_total: (event.kind == EventKind::Status(paysettle_core::PaymentStatus::Refunded))
            .then(|| event.refunded_total.map(Money::minor)),
        flag: matches!(event.kind, EventKind::Conflict | EventKind::Resolved)
            .then_some(flag)
            .flatten(),
        resolution: event.resolution.map(|r| r.code()),
    };
    let routing_key = format!(
        "payment.{}.{}",
        key_word(event.kind),
        context.provider.as_str()
    );
    // Serialising a struct of strings and integers cannot fail.
    let body = serde_json::to_string(&body).unwrap_or_default();
    (routing_key, body)
}

/// RFC 3339 in UTC with millisecond precision, as every event writes times.
pub fn rfc3339(at: Timestamp) -> String {
    format!("{:.3}", at)
}
