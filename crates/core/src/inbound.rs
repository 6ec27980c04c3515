//! The message the receiver publishes for each accepted callback and the
//! worker consumes: the one contract between the two processes.
//!
//! It carries the parsed result (an observation, Portmanat's hint, or a card
//! registration) and the raw request for the audit trail, with Authorization
//! headers, secrets, card tokens and full card numbers already removed from the
//! raw part. The card token of a registration is the one secret that travels
//! (the shop needs it); its type never prints it.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ids::{Account, Provider};
use crate::observation::Observation;
use crate::portmanat::ReturnHint;

/// The version of this message's format; a worker refuses (dead-letters) a
/// message of a version it does not know rather than misreading it.
pub const FORMAT_VERSION: u32 = 1;

/// One accepted callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboundCallback {
    pub format: u32,
    /// The receiver's own id for it (also the queue message id).
    pub id: String,
    pub provider: Provider,
    pub account: Account,
    pub received_at: Timestamp,
    /// The peer address the request came from.
    pub client_addr: Option<String>,
    pub payload: Payload,
    pub raw: RawRequest,
}

/// What the callback said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Payload {
    /// A verified observation of a payment (PaySys notification, Plutu callback).
    Observation(Observation),
    /// Portmanat's unsigned return: check `/check` for this payment now.
    PortmanatHint(ReturnHint),
    /// PaySys `partner.notify` SUCCESS, for the shop.
    CardRegistered {
        card_id: String,
        token: CardToken,
        pan_masked: String,
    },
    /// PaySys `partner.notify` ERROR, for the shop.
    CardRegistrationFailed {
        card_id: String,
        code: String,
        message: String,
    },
}

impl Payload {
    /// The payload with every card number masked in the fields a card
    /// registration carries as text (`card_id`, `code`, `message`,
    /// `pan_masked`): the form in which it leaves the receiver and reaches
    /// the shop. The token, the one secret the shop needs, stays in its own
    /// field as it is; a payment observation is left as it is (its fields
    /// are the payment's identity in the ledger).
    #[must_use]
    pub fn masked(self) -> Payload {
        use crate::redact::mask_card_numbers as mask;
        match self {
            Payload::CardRegistered {
                card_id,
                token,
                pan_masked,
            } => Payload::CardRegistered {
                card_id: mask(&card_id),
                token,
                pan_masked: mask(&pan_masked),
            },
            Payload::CardRegistrationFailed {
                card_id,
                code,
                message,
            } => Payload::CardRegistrationFailed {
                card_id: mask(&card_id),
                code: mask(&code),
                message: mask(&message),
            },
            other @ (Payload::Observation(_) | Payload::PortmanatHint(_)) => other,
        }
    }
}

/// A card token: serialised as itself for the shop, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CardToken(pub String);

impl fmt::Debug for CardToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CardToken([redacted])")
    }
}

/// The request as received, minus what must not be kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawRequest {
    pub method: String,
    pub path: String,
    /// Query parameters in order, redacted.
    pub query: Vec<(String, String)>,
    /// Headers, sensitive ones dropped.
    pub headers: Vec<(String, String)>,
    /// The body: JSON redacted as JSON, form bodies as redacted pairs, anything
    /// else as redacted text.
    pub body: Option<serde_json::Value>,
}

impl InboundCallback {
    /// The routing word of a message about a card (`card.registered`,
    /// `card.registration_failed`), or `None` for a payment callback.
    pub fn card_event(&self) -> Option<&'static str> {
        match self.payload {
            Payload::CardRegistered { .. } => Some("card.registered"),
            Payload::CardRegistrationFailed { .. } => Some("card.registration_failed"),
            Payload::Observation(_) | Payload::PortmanatHint(_) => None,
        }
    }

    /// The account and provider, for routing the message to its settings.
    pub fn origin(&self) -> (Provider, &Account) {
        (self.provider, &self.account)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_card_token_travels_but_never_prints() {
        let message = InboundCallback {
            format: FORMAT_VERSION,
            id: "m-1".into(),
            provider: Provider::Paysys,
            account: Account::default(),
            received_at: Timestamp::UNIX_EPOCH,
            client_addr: None,
            payload: Payload::CardRegistered {
                card_id: "c".into(),
                token: CardToken("tok_0b6227c7".into()),
                pan_masked: "222222******2222".into(),
            },
            raw: RawRequest {
                method: "POST".into(),
                path: "/callbacks/paysys".into(),
                query: vec![],
                headers: vec![],
                body: None,
            },
        };
        assert!(!format!("{message:?}").contains("tok_0b6227c7"));
        let json = serde_json::to_string(&message).unwrap();
        assert!(json.contains("tok_0b6227c7"), "the shop needs the token");
        assert_eq!(
            serde_json::from_str::<InboundCallback>(&json).unwrap(),
            message
        );
        assert_eq!(message.card_event(), Some("card.registered"));
    }

    #[test]
    fn card_payloads_leave_with_card_numbers_masked_and_the_token_intact() {
        let registered = Payload::CardRegistered {
            card_id: "4111111111111111".into(),
            token: CardToken("5555555555554444".into()),
            pan_masked: "4111111111111111".into(),
        }
        .masked();
        let json = serde_json::to_string(&registered).unwrap();
        assert!(!json.contains("4111111111111111"), "{json}");
        assert!(json.contains("5555555555554444"), "the token is the shop's");
        let failed = Payload::CardRegistrationFailed {
            card_id: "c-4111111111111111".into(),
            code: "4111111111111111".into(),
            message: "card 4111 1111 1111 1111 / 4111111111111111 refused".into(),
        }
        .masked();
        let json = serde_json::to_string(&failed).unwrap();
        assert!(!json.contains("4111111111111111"), "{json}");
        assert!(json.contains("c-411111******1111"), "{json}");
    }
}
