//! Names with rules: providers, accounts, the shop's references and the
//! providers' transaction ids. Each is parsed once, at the edge, so everything
//! inside can rely on it.
//!
//! Providers, accounts and sources are paysettle's own names, with an
//! alphabet of ours. References and provider transaction ids are not: they
//! are whatever the shop and the providers chose (base64-like characters,
//! `/`, `+`, `=`, `:`, spaces and non-ASCII letters occur), so they are
//! refused only for being empty, too long, or for a control character
//! (which could split or disguise a log line). Everything that puts one
//! somewhere with an alphabet encodes it there: percent-encoding in URL
//! paths and forms, JSON in bodies and logs.

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
    ok: impl Fn(char) -> bool,
) -> Result<(), IdError> {
    if text.is_empty() {
        return Err(IdError::Empty { what });
    }
    if text.chars().count() > max {
        return Err(IdError::TooLong { what, max });
    }
    if !text.chars().all(ok) {
        return Err(IdError::BadCharacter {
            what,
            value: shorten(text),
            allowed,
        });
    }
    Ok(())
}

/// Whether a character may appear in someone else's identifier: anything but
/// a control character (C0, DEL, C1), a line or paragraph separator, or a
/// bidirectional override that would make a log line read differently from
/// what it holds.
fn foreign_char(c: char) -> bool {
    !(c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
        ))
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

id_type!(
    /// The shop's order id for a payment: Portmanat's `client_rrn`, PaySys's
    /// `partner_trans_id` (`account` in notifications), Plutu's `invoice_no`.
    /// At most 64 characters (Portmanat's limit), no control characters;
    /// any other character is the shop's business. In the shop API's URL
    /// path it is percent-encoded.
    Reference, "reference", 64, "printable characters", foreign_char
);

id_type!(
    /// The provider's own id of a transaction (Portmanat `psp_rrn`, PaySys
    /// transaction id, Plutu `transaction_id`). At most 128 characters, no
    /// control characters; no alphabet is assumed.
    ProviderTxnId, "provider transaction id", 128, "printable characters", foreign_char
);

id_type!(
    /// A provider account of the shop (one shop may hold several merchant
    /// accounts with one provider). `default` when it has one.
    Account, "account", 32, "a-z 0-9 _ -", |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-'
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
    fn references_are_refused_only_when_empty_too_long_or_controlling() {
        assert_eq!(
            Reference::parse(""),
            Err(IdError::Empty { what: "reference" })
        );
        assert!(matches!(
            Reference::parse(&"x".repeat(65)),
            Err(IdError::TooLong { max: 64, .. })
        ));
        // 64 characters of two bytes each are 64 characters.
        assert!(Reference::parse(&"ü".repeat(64)).is_ok());
        assert!(ProviderTxnId::parse(&"x".repeat(129)).is_err());
        for bad in [
            "a\nb",
            "a\rb",
            "a\tb",
            "\0",
            "a\u{7f}",
            "a\u{85}b",
            "a\u{2028}b",
            "a\u{202E}b",
            "a\u{2066}b",
        ] {
            assert!(
                matches!(Reference::parse(bad), Err(IdError::BadCharacter { .. })),
                "{bad:?}"
            );
            assert!(ProviderTxnId::parse(bad).is_err(), "{bad:?}");
        }
        // The refusal shows the character escaped, never raw.
        let err = Reference::parse("a\nb").unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn identifiers_of_any_alphabet_are_the_providers_and_kept_exactly() {
        for ok in [
            "../etc",
            "a/b",
            "a%2Fb",
            "a b",
            " leading",
            "ü",
            "Заказ-7",
            "a?b#c&d=e",
            "gV1Pwgz6HmXJphEMVLEUUnp+sD8=",
            "1471851442-lfI7yG-vTuaxI-x87xAS",
            "ORDER:42/1+2",
            "\"quoted\"",
        ] {
            assert_eq!(Reference::parse(ok).unwrap().as_str(), ok, "{ok:?}");
            assert_eq!(ProviderTxnId::parse(ok).unwrap().as_str(), ok, "{ok:?}");
            let json = serde_json::to_string(&Reference::parse(ok).unwrap()).unwrap();
            assert_eq!(
                serde_json::from_str::<Reference>(&json).unwrap().as_str(),
                ok
            );
        }
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
        assert!(serde_json::from_str::<Reference>(r#""a/b""#).is_ok());
        assert!(serde_json::from_str::<Reference>(r#""a\nb""#).is_err());
        assert!(Account::parse("a/b").is_err());
    }
}
