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
    // Serialising a struct of strings and integers cannot fail. Card
    // numbers are masked in every field, as in the ledger's raw payloads:
    // whatever a provider put in a reference or a status text, no full card
    // number leaves in an event.
    let mut value = serde_json::to_value(&body).unwrap_or_default();
    paysettle_core::redact::mask_json(&mut value);
    let body = serde_json::to_string(&value).unwrap_or_default();
    (routing_key, body)
}

/// RFC 3339 in UTC with millisecond precision, as every event writes times.
pub fn rfc3339(at: Timestamp) -> String {
    format!("{:.3}", at)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use paysettle_core::decide::FlagKind;
    use paysettle_core::{Currency, PaymentStatus};

    use super::*;

    #[test]
    fn no_full_card_number_leaves_in_an_event_whatever_field_it_stands_in() {
        let account = Account::default();
        let reference = Reference::parse("4111111111111111").unwrap();
        let event = Event {
            kind: EventKind::Mismatch,
            status: PaymentStatus::Succeeded,
            previous_status: PaymentStatus::Succeeded,
            amount: Some(Money::from_minor(1250, Currency::Usd).unwrap()),
            refunded_total: None,
            expected: Some(Money::from_minor(1300, Currency::Usd).unwrap()),
            flag: Some(FlagKind::AmountMismatch),
            resolution: None,
            version: 2,
        };
        let (routing_key, body) = build(
            &event,
            &EventContext {
                event_id: "e-1",
                provider: Provider::Plutu,
                account: &account,
                reference: &reference,
                provider_txn_id: Some("T-5555555555554444"),
                source: Source::Callback,
                occurred_at: Timestamp::UNIX_EPOCH,
            },
        );
        assert_eq!(routing_key, "payment.mismatch.plutu");
        for pan in ["4111111111111111", "5555555555554444"] {
            assert!(!body.contains(pan), "{body}");
        }
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["reference"], "411111******1111");
        assert_eq!(value["provider_transaction_id"], "T-555555******4444");
        assert_eq!(value["amount"], 1250, "numbers stay numbers");
        // The contract's field order is kept.
        assert!(
            body.starts_with(r#"{"event_id":"e-1","type":"payment.mismatch""#),
            "{body}"
        );
    }
}
