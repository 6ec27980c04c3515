//! What the simulator holds: payments with their status timelines and the
//! callbacks sent for them, and the views of them that the control API and
//! [`crate::SimHandle`] hand out so a test can compare them with the ledger.

use std::collections::HashMap;
use std::fmt;

use jiff::Timestamp;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::money::Currency;

/// The simulated providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Portmanat (Azerbaijan): browser redirect plus `/check` polling.
    Portmanat,
    /// PaySys (Uzbekistan): JSON-RPC gateway plus Basic-auth notifications.
    Paysys,
    /// Plutu (Libya): card gateways with an HMAC-signed GET callback.
    Plutu,
}

impl Provider {
    /// Every provider, in the order the autopilot cycles through them.
    pub const ALL: [Provider; 3] = [Provider::Portmanat, Provider::Paysys, Provider::Plutu];

    /// The lowercase name used in paths, config sections and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Provider::Portmanat => "portmanat",
            Provider::Paysys => "paysys",
            Provider::Plutu => "plutu",
        }
    }

    /// Parses [`Provider::name`].
    pub fn parse(name: &str) -> Option<Provider> {
        Provider::ALL.into_iter().find(|p| p.name() == name)
    }

    /// Whether the provider can report a refund (only PaySys has the status).
    pub fn can_refund(self) -> bool {
        self == Provider::Paysys
    }

    pub(crate) fn index(self) -> usize {
        match self {
            Provider::Portmanat => 0,
            Provider::Paysys => 1,
            Provider::Plutu => 2,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Plutu's card gateways that the simulator speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlutuGateway {
    /// Mastercard Payment Gateway Services, in USD.
    Mpgs,
    /// Libyan local bank cards.
    Localbankcards,
}

impl PlutuGateway {
    /// The name in the confirm path and in the callback's `gateway`.
    pub fn name(self) -> &'static str {
        match self {
            PlutuGateway::Mpgs => "mpgs",
            PlutuGateway::Localbankcards => "localbankcards",
        }
    }

    /// Parses [`PlutuGateway::name`].
    pub fn parse(name: &str) -> Option<PlutuGateway> {
        match name {
            "mpgs" => Some(PlutuGateway::Mpgs),
            "localbankcards" => Some(PlutuGateway::Localbankcards),
            _ => None,
        }
    }
}

/// How a payment ends, as drawn from the outcome mix or forced by a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Approved.
    Success,
    /// Declined by the bank.
    Failure,
    /// Abandoned or cancelled by the customer.
    Cancel,
    /// Approved, then fully refunded (PaySys only).
    Refund,
}

/// The provider-neutral status of a simulated payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Registered, the customer has not reached the payment page (PaySys 0).
    Created,
    /// Waiting for the customer (Portmanat 1, PaySys 1, Plutu before its callback).
    Pending,
    /// Approved (Portmanat 0, PaySys 2, Plutu `approved=1`).
    Succeeded,
    /// Declined (Portmanat -1, PaySys -1, Plutu without approved/canceled).
    Failed,
    /// Cancelled (Portmanat -1, PaySys 3, Plutu `canceled=1`).
    Canceled,
    /// Refunded after success (PaySys 6).
    Refunded,
}

impl Status {
    /// Whether the customer can no longer change it (a refund still can).
    pub fn is_final(self) -> bool {
        !matches!(self, Status::Created | Status::Pending)
    }

    /// The status as the provider itself would state it.
    pub fn provider_form(self, provider: Provider) -> &'static str {
        match provider {
            Provider::Portmanat => match self {
                Status::Created | Status::Pending => "code 1",
                Status::Succeeded | Status::Refunded => "code 0",
                Status::Failed | Status::Canceled => "code -1",
            },
            Provider::Paysys => match self {
                Status::Created => "status 0",
                Status::Pending => "status 1",
                Status::Succeeded => "status 2",
                Status::Canceled => "status 3",
                Status::Refunded => "status 6",
                Status::Failed => "status -1",
            },
            Provider::Plutu => match self {
                Status::Created | Status::Pending => "no callback yet",
                Status::Succeeded | Status::Refunded => "approved=1",
                Status::Canceled => "canceled=1",
                Status::Failed => "neither approved nor canceled",
            },
        }
    }
}

/// One entry of a payment's status timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusChange {
    /// When the simulator's clock saw the change (advances included).
    pub at: Timestamp,
    /// The new status.
    pub status: Status,
    /// The same status in the provider's words, e.g. `status 2`.
    pub provider_status: String,
    /// What caused it: `created`, `customer`, `forced`, `cancel_payment`, …
    pub cause: String,
}

/// What a callback is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallbackKind {
    /// The customer's browser returning to Portmanat's callback URL.
    BrowserRedirect,
    /// A PaySys transaction status notification.
    StatusNotification,
    /// A Plutu callback GET.
    PlutuCallback,
    /// A PaySys `partner.notify` card-registration notification.
    PartnerNotify,
}

/// What became of a callback.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fate", rename_all = "snake_case")]
pub enum CallbackFate {
    /// Waiting for its due time.
    Scheduled,
    /// Held back to be sent after a later one (out of order).
    Held,
    /// Dropped on purpose: never sent.
    Lost,
    /// Sent and answered.
    Delivered {
        /// The receiver's HTTP status.
        http_status: u16,
    },
    /// Sent, but no HTTP answer came (refused, timed out, bad URL).
    Failed {
        /// Why, in a few words.
        error: String,
    },
    /// A real browser followed the simulated bank page's redirect itself.
    FollowedByBrowser,
}

/// One callback the simulator sent, dropped or still holds for a payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackRecord {
    /// Position in the payment's callback list.
    pub index: usize,
    /// What it is.
    pub kind: CallbackKind,
    /// The status it reports (for an unsigned redirect: the status at the time).
    pub status: Status,
    /// Where it goes.
    pub url: String,
    /// `GET` or `POST`.
    pub method: String,
    /// This is the extra copy of a duplicated callback.
    pub duplicate: bool,
    /// Signed with the wrong key on purpose.
    pub wrongly_signed: bool,
    /// Not the provider's at all: a forger's, claiming a status the payment
    /// was not heading for (`wrongly_signed` is set too).
    #[serde(default)]
    pub forged: bool,
    /// Extra delay added on purpose, in milliseconds.
    pub delayed_ms: u64,
    /// Held back and sent after a later callback on purpose.
    pub out_of_order: bool,
    /// When it is or was due on the simulator's clock.
    pub due_at: Option<Timestamp>,
    /// The amount it reports when that is not the payment's (a PaySys
    /// refund notification: the total refunded so far or this refund).
    #[serde(default)]
    pub amount_minor: Option<i64>,
    /// When it was actually sent.
    pub sent_at: Option<Timestamp>,
    /// What became of it.
    #[serde(flatten)]
    pub fate: CallbackFate,
}

/// A payment as the simulator holds it, for tests and the control API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentView {
    /// The simulator's own id (`paysys-3`), used by the control API.
    pub id: String,
    /// Which provider holds it.
    pub provider: Provider,
    /// The shop's order id: `client_rrn`, `partner_trans_id` or `invoice_no`.
    pub reference: String,
    /// The provider's id: `psp_rrn`, PaySys `transaction_id`, or Plutu's
    /// `transaction_id` (which first appears in the callback).
    pub provider_txn_id: Option<String>,
    /// Plutu's gateway.
    pub gateway: Option<PlutuGateway>,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// ISO 4217 currency.
    pub currency: Currency,
    /// The amount as the provider states it (`"19.90"`, `1139000`).
    pub amount_text: String,
    /// Status now.
    pub status: Status,
    /// Status now, in the provider's words.
    pub provider_status: String,
    /// The outcome the payment is heading for (drawn or forced).
    pub planned_outcome: Outcome,
    /// Whether a test forced the outcome.
    pub forced: bool,
    /// Minor units refunded so far (PaySys).
    pub refunded_minor: i64,
    /// When it was created, on the simulator's clock.
    pub created_at: Timestamp,
    /// Every status it has had, oldest first.
    pub timeline: Vec<StatusChange>,
    /// Every callback sent, dropped or pending for it.
    pub callbacks: Vec<CallbackRecord>,
}

/// A `partner.notify` the simulator sent or dropped, with what it said.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartnerNotifyView {
    /// Position in the simulator's list of them.
    pub index: usize,
    /// The JSON-RPC body that was (or would have been) sent.
    pub body: serde_json::Value,
    /// Delivery record.
    pub callback: CallbackRecord,
}

/// The simulator's state of one payment.
#[derive(Debug)]
pub(crate) struct Payment {
    pub id: String,
    pub provider: Provider,
    pub reference: String,
    pub provider_txn_id: Option<String>,
    pub gateway: Option<PlutuGateway>,
    pub amount_minor: i64,
    pub currency: Currency,
    pub amount_text: String,
    pub status: Status,
    pub planned: Outcome,
    pub forced: bool,
    pub refunded_minor: i64,
    /// Portmanat: `/check` says the service is in test mode for this payment
    /// (`None`: as the scenario says).
    pub test_service: Option<bool>,
    pub created_at: Timestamp,
    pub timeline: Vec<StatusChange>,
    pub callbacks: Vec<CallbackRecord>,
    /// Per-payment RNG seeded from the run's seed and the reference, so a
    /// payment's fate does not depend on what other requests came first.
    pub rng: StdRng,
    /// Where callbacks for it go (Portmanat callback URL, PaySys notify URL,
    /// Plutu callback or return URL).
    pub callback_url: String,
    /// Where a browser goes after paying (PaySys `redirect_url`, Plutu `return_url`).
    pub return_url: Option<String>,
    /// Token in the simulated payment page's URL.
    pub page_token: String,
    /// Provider-specific details the wire formats need.
    pub details: Details,
    /// Callback indexes held back until after the final callback.
    pub held: Vec<usize>,
}

/// Provider-specific facts that appear on the wire.
#[derive(Debug, Default)]
pub(crate) struct Details {
    /// Portmanat's `bank_rrn`.
    pub bank_rrn: String,
    /// PaySys: the masked card, the bank's RRN and approval code.
    pub card_masked: String,
    pub rrn: String,
    pub approval_code: String,
    /// Plutu: the callback's parameters (without `hashed`), fixed when the
    /// payment resolves.
    pub plutu_params: Vec<(String, String)>,
}

impl Payment {
    pub fn view(&self) -> PaymentView {
        PaymentView {
            id: self.id.clone(),
            provider: self.provider,
            reference: self.reference.clone(),
            provider_txn_id: self.provider_txn_id.clone(),
            gateway: self.gateway,
            amount_minor: self.amount_minor,
            currency: self.currency,
            amount_text: self.amount_text.clone(),
            status: self.status,
            provider_status: self.status.provider_form(self.provider).to_owned(),
            planned_outcome: self.planned,
            forced: self.forced,
            refunded_minor: self.refunded_minor,
            created_at: self.created_at,
            timeline: self.timeline.clone(),
            callbacks: self.callbacks.clone(),
        }
    }

    pub fn set_status(&mut self, status: Status, at: Timestamp, cause: &str) {
        self.status = status;
        self.timeline.push(StatusChange {
            at,
            status,
            provider_status: status.provider_form(self.provider).to_owned(),
            cause: cause.to_owned(),
        });
    }
}

/// Every payment, with the indexes the protocols look them up by.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub payments: Vec<Payment>,
    by_id: HashMap<String, usize>,
    by_reference: HashMap<(Provider, String), usize>,
    by_txn: HashMap<(Provider, String), usize>,
    by_page: HashMap<String, usize>,
    pub counters: [u64; 3],
    pub partner_notifies: Vec<PartnerNotifyView>,
}

impl Store {
    pub fn insert(&mut self, payment: Payment) -> usize {
        let slot = self.payments.len();
        self.by_id.insert(payment.id.clone(), slot);
        self.by_reference
            .insert((payment.provider, payment.reference.clone()), slot);
        if let Some(txn) = &payment.provider_txn_id {
            self.by_txn.insert((payment.provider, txn.clone()), slot);
        }
        self.by_page.insert(payment.page_token.clone(), slot);
        self.payments.push(payment);
        slot
    }

    /// Records a provider id that appears after creation (Plutu's).
    pub fn index_txn(&mut self, slot: usize) {
        if let Some(payment) = self.payments.get(slot)
            && let Some(txn) = &payment.provider_txn_id
        {
            self.by_txn.insert((payment.provider, txn.clone()), slot);
        }
    }

    pub fn slot_by_id(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub fn slot_by_reference(&self, provider: Provider, reference: &str) -> Option<usize> {
        self.by_reference
            .get(&(provider, reference.to_owned()))
            .copied()
    }

    pub fn slot_by_txn(&self, provider: Provider, txn: &str) -> Option<usize> {
        self.by_txn.get(&(provider, txn.to_owned())).copied()
    }

    pub fn slot_by_page(&self, token: &str) -> Option<usize> {
        self.by_page.get(token).copied()
    }

    pub fn next_number(&mut self, provider: Provider) -> u64 {
        let counter = &mut self.counters[provider.index()];
        *counter += 1;
        *counter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for provider in Provider::ALL {
            assert_eq!(Provider::parse(provider.name()), Some(provider));
        }
        assert_eq!(Provider::parse("stripe"), None);
        for gateway in [PlutuGateway::Mpgs, PlutuGateway::Localbankcards] {
            assert_eq!(PlutuGateway::parse(gateway.name()), Some(gateway));
        }
        assert_eq!(PlutuGateway::parse("tlync"), None);
    }

    #[test]
    fn provider_forms() {
        assert_eq!(Status::Pending.provider_form(Provider::Portmanat), "code 1");
        assert_eq!(
            Status::Canceled.provider_form(Provider::Portmanat),
            "code -1"
        );
        assert_eq!(Status::Refunded.provider_form(Provider::Paysys), "status 6");
        assert_eq!(
            Status::Canceled.provider_form(Provider::Plutu),
            "canceled=1"
        );
        assert!(!Status::Pending.is_final());
        assert!(Status::Failed.is_final());
    }
}
