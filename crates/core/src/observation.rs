//! The one shape every provider's callback and status answer becomes.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::ids::{Account, Provider, ProviderTxnId, Reference, Source};
use crate::money::Money;
use crate::state::ObservedStatus;

/// A time as the provider wrote it, with its UTC reading where it could be
/// read. The raw text is kept because the provider's zone is an inference for
/// PaySys (an account setting, Asia/Tashkent by default), and because a time
/// in a format or zone paysettle cannot read is still the provider's word:
/// it never costs the observation it came with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderTime {
    /// The instant, in UTC; `None` when the raw text or its zone could not
    /// be read with certainty.
    #[serde(default)]
    pub utc: Option<Timestamp>,
    /// Exactly what the provider sent.
    pub raw: String,
    /// The zone the raw text was read in (or was said to be in): an IANA
    /// name, an offset such as `+04:00`, or an abbreviation as sent.
    pub zone: String,
}

/// What one callback or status answer said about one payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Observation {
    pub provider: Provider,
    pub account: Account,
    /// The shop's order id.
    pub reference: Reference,
    pub provider_txn_id: Option<ProviderTxnId>,
    /// What the provider's answer means for the payment.
    pub status: ObservedStatus,
    /// The payment's amount as the provider reported it, if it did.
    pub money: Option<Money>,
    /// The provider's own status word (`"2"`, `"approved"`, `"code 0"`), kept
    /// for the history so an operator sees what was actually said.
    pub provider_status: String,
    /// When the provider says the transaction happened, if it says.
    pub provider_time: Option<ProviderTime>,
    /// When paysettle received the callback or the answer.
    pub observed_at: Timestamp,
    pub source: Source,
    /// The provider said this is a test payment (a Portmanat `/check` body
    /// whose `service` is in test mode). Never real money on an account not
    /// configured for test payments.
    #[serde(default)]
    pub test: bool,
    /// This refund's own amount, where the account's provider reports each
    /// refund rather than the total so far (PaySys `refund_amount =
    /// "this_refund"`); the status then says `Refunded { total: None }`,
    /// and the total is the ledger's to work out.
    #[serde(default)]
    pub refund_part: Option<Money>,
}

impl Observation {
    /// The key that makes a repeated observation a duplicate: same source,
    /// same payment, same provider transaction, same status and money. The
    /// time it was seen is deliberately not part of it, so a provider that
    /// resends a notification, or a poll that gets the same answer again,
    /// adds nothing.
    pub fn dedupe_key(&self) -> String {
        let money = |m: Option<Money>| {
            m.map_or_else(
                || "-".to_owned(),
                |m| format!("{}{}", m.minor(), m.currency()),
            )
        };
        let refund = match self.status {
            ObservedStatus::Refunded { total } => money(total),
            _ => "-".to_owned(),
        };
        let mut key = format!(
            "{}|{}|{}|{}|{}|{}|{}|{}",
            self.source,
            self.account,
            escape(self.reference.as_str()),
            escape(
                self.provider_txn_id
                    .as_ref()
                    .map_or("-", ProviderTxnId::as_str)
            ),
            escape(&self.provider_status),
            self.status.target(),
            money(self.money),
            refund,
        );
        // Appended only when present, so every key written before these
        // fields existed reads the same. Two refunds of the same amount
        // reported as "this refund" are indistinguishable from a resent
        // notification: a reason to prefer `refund_amount = "total"`.
        if let Some(part) = self.refund_part {
            key.push_str(&format!("|part:{}", money(Some(part))));
        }
        if self.test {
            key.push_str("|test");
        }
        key
    }
}

/// A field of the dedupe key, with the separator (and the escape itself)
/// percent-encoded: references and provider ids are the providers' text and
/// may hold a `|`, which would otherwise let two different observations
/// share a key. Text without `|` or `%` (every id of the old alphabet) is
/// unchanged, so keys already in a ledger still match.
fn escape(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains(['|', '%']) {
        std::borrow::Cow::Owned(text.replace('%', "%25").replace('|', "%7C"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Currency;

    fn observation() -> Observation {
        Observation {
            provider: Provider::Paysys,
            account: Account::default(),
            reference: Reference::parse("931111111").unwrap(),
            provider_txn_id: Some(ProviderTxnId::parse("44114543").unwrap()),
            status: ObservedStatus::Succeeded,
            money: Some(Money::from_minor(1000, Currency::Usd).unwrap()),
            provider_status: "2".into(),
            provider_time: None,
            observed_at: Timestamp::UNIX_EPOCH,
            source: Source::Callback,
            test: false,
            refund_part: None,
        }
    }

    #[test]
    fn the_dedupe_key_ignores_when_it_was_seen_but_not_what_was_said() {
        let a = observation();
        let mut later = a.clone();
        later.observed_at = Timestamp::from_second(60).unwrap();
        assert_eq!(a.dedupe_key(), later.dedupe_key());

        let mut other_status = a.clone();
        other_status.status = ObservedStatus::Failed;
        other_status.provider_status = "-1".into();
        assert_ne!(a.dedupe_key(), other_status.dedupe_key());

        let mut from_check = a.clone();
        from_check.source = Source::Check;
        assert_ne!(a.dedupe_key(), from_check.dedupe_key());

        let mut refund_a = a.clone();
        refund_a.status = ObservedStatus::Refunded {
            total: Some(Money::from_minor(1, Currency::Usd).unwrap()),
        };
        let mut refund_b = refund_a.clone();
        refund_b.status = ObservedStatus::Refunded {
            total: Some(Money::from_minor(2, Currency::Usd).unwrap()),
        };
        assert_ne!(refund_a.dedupe_key(), refund_b.dedupe_key());

        // A separator inside the providers' text cannot make two
        // observations of different payments share a key.
        let mut left = a.clone();
        left.reference = Reference::parse("R|T1").unwrap();
        left.provider_txn_id = Some(ProviderTxnId::parse("X").unwrap());
        let mut right = a.clone();
        right.reference = Reference::parse("R").unwrap();
        right.provider_txn_id = Some(ProviderTxnId::parse("T1|X").unwrap());
        assert_ne!(left.dedupe_key(), right.dedupe_key());

        // Keys of observations without the newer fields are unchanged.
        assert_eq!(
            a.dedupe_key(),
            "callback|default|931111111|44114543|2|failed|1000USD|-"
                .replace("failed", a.status.target().as_str())
        );
        let mut test = a.clone();
        test.test = true;
        assert_ne!(a.dedupe_key(), test.dedupe_key());
        let mut part_a = refund_a.clone();
        part_a.status = ObservedStatus::Refunded { total: None };
        part_a.refund_part = Some(Money::from_minor(1, Currency::Usd).unwrap());
        let mut part_b = part_a.clone();
        part_b.refund_part = Some(Money::from_minor(2, Currency::Usd).unwrap());
        assert_ne!(part_a.dedupe_key(), part_b.dedupe_key());
    }

    #[test]
    fn observations_round_trip_through_json() {
        let a = observation();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Observation>(&json).unwrap(), a);
    }
}
