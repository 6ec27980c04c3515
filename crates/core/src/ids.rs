//! Names with rules: providers, accounts, the shop's references and the
//! providers' transaction ids. Each is parsed once, at the edge, so everything
//! inside can rely on it (no empty reference, no `/` in a path segment, no
//! control characters in a log line).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The three payment providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Portmanat (Azerbaijan): unsigned browser redirect, `/check` status API.
    Portmanat,
    /// PaySys (Uzbekistan): Basic-auth notifications, `paysys.check_payment`.
    Paysys,
    /// Plutu (Libya): HMAC-signed callbacks, no status API.
    Plutu,
}

impl Provider {
    /// Every provider.
    pub const ALL: [Provider; 3] = [Provider::Portmanat, Provider::Paysys, Provider::Plutu];

    /// The lowercase name used in routes, routing keys and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Portmanat => "portmanat",
            Provider::Paysys => "paysys",
            Provider::Plutu => "plutu",
        }
    }

    /// Whether the provider has a status API that the worker can poll.
    pub fn can_be_polled(self) -> bool {
        !matches!(self, Provider::Plutu)
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| IdError::UnknownProvider(shorten(s)))
    }
}

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("unknown provider {0:?} (expected portmanat, paysys or plutu)")]
    UnknownProvider(String),
    #[error("{what} is empty")]
    Empty { what: &'static str },
    #[error("{what} is longer than {max} characters")]
    TooLong { what: &'static str, max: usize },
    #[error("{what} {value:?} has a character outside {allowed}")]
    BadCharacter {
        what: &'static str,
        value: String,
        allowed: &'static str,
    },
}

fn shorten(text: &str) -> String {
    text.chars().take(32).collect()
}

fn check(
    what: &'static str,
    text: &str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(u8) -> bool,
) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty { what });
    }
    if text.len() > max {
        return Err(IdError::TooLong { what, max });
    }
    if !text.bytes().all(ok) {
        return Err(IdError::BadCharacter {
            what,
            value: shorten(text),
            allowed,
        });
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal, $allowed:literal, $ok:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses and validates.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                check($what, text, $max, $allowed, $ok)?;
                Ok(Self(text.to_owned()))
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, Self::Error> {
                check($what, &value, $max, $allowed, $ok)?;
                Ok(Self(value))
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }
    };
}

fn reference_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':')
}

fn txn_byte(b: u8) -> bool {
    reference_byte(b) || matches!(b, b'+' | b'=' | b'/')
}

id_type!(
    /// The shop's order id for a payment: Portmanat's `client_rrn`, PaySys's
    /// `partner_trans_id` (`account` in notifications), Plutu's `invoice_no`.
    /// It appears in URL paths of the shop API, so `/` and `%` are refused.
    Reference, "reference", 64, "A-Z a-z 0-9 . _ - :", reference_byte
);

id_type!(
    /// The provider's own id of a transaction (Portmanat `psp_rrn`, PaySys
    /// transaction id, Plutu `transaction_id`).
    ProviderTxnId, "provider transaction id", 128, "A-Z a-z 0-9 . _ - : + = /", txn_byte
);

id_type!(
    /// A provider account of the shop (one shop may hold several merchant
    /// accounts with one provider). `default` when it has one.
    Account, "account", 32, "a-z 0-9 _ -", |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
);

impl Account {
    /// The account a provider's route without an account segment maps to.
    pub fn default_account() -> Account {
        Account("default".to_owned())
    }
}

impl Default for Account {
    fn default() -> Self {
        Account::default_account()
    }
}

/// Where an observation of a payment came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The provider (or the customer's browser) called us.
    Callback,
    /// We asked the provider's status API (or a deadline passed while asking).
    Check,
    /// An operator's reconciliation batch.
    Reconcile,
}

impl Source {
    /// The lowercase name used in events and the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Callback => "callback",
            Source::Check => "check",
            Source::Reconcile => "reconcile",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Source {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "callback" => Ok(Source::Callback),
            "check" => Ok(Source::Check),
            "reconcile" => Ok(Source::Reconcile),
            other => Err(IdError::BadCharacter {
                what: "source",
                value: shorten(other),
                allowed: "callback, check, reconcile",
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_from_all_three_providers_parse() {
        for ok in [
            "1471855074",
            "ORDER-42",
            "INV-1001",
            "167075",
            "39888c6d-bbb9-4044-97a6-bec2d85dd6c10",
            "a.b_c:d",
        ] {
            assert!(Reference::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn references_that_could_play_tricks_are_refused() {
        assert_eq!(
            Reference::parse(""),
            Err(IdError::Empty { what: "reference" })
        );
        assert!(matches!(
            Reference::parse(&"x".repeat(65)),
            Err(IdError::TooLong { max: 64, .. })
        ));
        for bad in ["../etc", "a/b", "a%2Fb", "a b", "a\nb", "ü", "a?b", "a#b"] {
            assert!(
                matches!(Reference::parse(bad), Err(IdError::BadCharacter { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn provider_transaction_ids_allow_base64ish_text() {
        assert!(ProviderTxnId::parse("1471851442-lfI7yG-vTuaxI-x87xAS").is_ok());
        assert!(ProviderTxnId::parse("gV1Pwgz6HmXJphEMVLEUUnp+sD8=").is_ok());
        assert!(ProviderTxnId::parse("a b").is_err());
    }

    #[test]
    fn providers_and_accounts_parse() {
        assert_eq!("paysys".parse::<Provider>(), Ok(Provider::Paysys));
        assert!("PaySys".parse::<Provider>().is_err());
        assert!(Account::parse("default").is_ok());
        assert!(Account::parse("Shop-1").is_err());
        assert_eq!(
            serde_json::to_string(&Provider::Plutu).unwrap(),
            r#""plutu""#
        );
        assert!(serde_json::from_str::<Reference>(r#""a/b""#).is_err());
    }
}
