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
    // Serialising a struct of strings and integers cannot fail. Card
    // numbers are masked in every field, as in the ledger's raw payloads:
    // whatever a provider put in a reference or a status text, no full card
    // number leaves in an event.
    let mut value = serde_json::to_value(&event).unwrap_or_default();
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

    use paysettle_core::{
        Account, Currency, ObservedStatus, Provider, ProviderTxnId, Reference, Source,
    };

    use super::*;

    #[test]
    fn no_full_card_number_leaves_in_an_event_whatever_field_it_stands_in() {
        let observation = Observation {
            provider: Provider::Plutu,
            account: Account::default(),
            reference: Reference::parse("4111111111111111").unwrap(),
            provider_txn_id: Some(ProviderTxnId::parse("T-5555555555554444").unwrap()),
            status: ObservedStatus::Succeeded,
            money: None,
            provider_status: "approved".into(),
            provider_time: None,
            observed_at: Timestamp::UNIX_EPOCH,
            source: Source::Callback,
        };
        let (routing_key, body) = build(&EventInput {
            event_id: "e-1",
            event_type: EventType::Mismatch,
            observation: &observation,
            provider_txn_id: Some("T-5555555555554444"),
            amount: Some(Money::from_minor(1250, Currency::Usd).unwrap()),
            status: PaymentStatus::Succeeded,
            previous_status: PaymentStatus::Pending,
            version: 2,
            expected: Some(Money::from_minor(1300, Currency::Usd).unwrap()),
            mismatch: Some("card 4012888888881881 amount"),
        });
        assert_eq!(routing_key, "payment.mismatch.plutu");
        for pan in ["4111111111111111", "5555555555554444", "4012888888881881"] {
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
