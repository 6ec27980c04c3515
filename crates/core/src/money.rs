//! Money as integer minor units of an ISO 4217 currency.
//!
//! Providers send amounts three ways: decimal strings in major units
//! (Portmanat `"1.23"`, Plutu `"5.00"`), integers in minor units (PaySys `1000`),
//! and integers in minor units written as strings (PaySys `"1139000"`). Every
//! one of them is parsed exactly into [`Money`]; nothing passes through a float.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The currencies the three providers settle in. A currency outside this list is
/// refused rather than guessed at: its exponent decides what "1.23" means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Currency {
    /// Azerbaijani manat (Portmanat).
    Azn,
    /// Euro (PaySys).
    Eur,
    /// Libyan dinar (Plutu local cards); three decimals.
    Lyd,
    /// Russian ruble (PaySys).
    Rub,
    /// US dollar (PaySys, Plutu MPGS).
    Usd,
    /// Uzbek sum (PaySys).
    Uzs,
}

impl Currency {
    /// Every supported currency, for tests and validation messages.
    pub const ALL: [Currency; 6] = [
        Currency::Azn,
        Currency::Eur,
        Currency::Lyd,
        Currency::Rub,
        Currency::Usd,
        Currency::Uzs,
    ];

    /// The ISO 4217 alphabetic code.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Azn => "AZN",
            Currency::Eur => "EUR",
            Currency::Lyd => "LYD",
            Currency::Rub => "RUB",
            Currency::Usd => "USD",
            Currency::Uzs => "UZS",
        }
    }

    /// The ISO 4217 numeric code (PaySys notifications send this).
    pub fn numeric(self) -> u16 {
        match self {
            Currency::Azn => 944,
            Currency::Eur => 978,
            Currency::Lyd => 434,
            Currency::Rub => 643,
            Currency::Usd => 840,
            Currency::Uzs => 860,
        }
    }

    /// How many decimal digits the minor unit has.
    pub fn exponent(self) -> u32 {
        match self {
            Currency::Lyd => 3,
            _ => 2,
        }
    }

    /// Parses an alphabetic code in any letter case (`"usd"`, `"USD"`).
    pub fn from_code(code: &str) -> Result<Currency, MoneyError> {
        Currency::ALL
            .into_iter()
            .find(|c| c.code().eq_ignore_ascii_case(code))
            .ok_or_else(|| MoneyError::UnknownCurrency(truncate(code)))
    }

    /// Parses an ISO numeric code.
    pub fn from_numeric(numeric: u16) -> Result<Currency, MoneyError> {
        Currency::ALL
            .into_iter()
            .find(|c| c.numeric() == numeric)
            .ok_or_else(|| MoneyError::UnknownCurrency(numeric.to_string()))
    }

    /// Parses a currency as PaySys writes it: an alphabetic code (`uzs`, `usd`,
    /// `eur`, `rub`) or an ISO numeric code (`840`).
    pub fn from_paysys(value: &str) -> Result<Currency, MoneyError> {
        if !value.is_empty() && value.len() <= 3 && value.bytes().all(|b| b.is_ascii_digit()) {
            let numeric: u16 = value
                .parse()
                .map_err(|_| MoneyError::UnknownCurrency(truncate(value)))?;
            Currency::from_numeric(numeric)
        } else {
            Currency::from_code(value)
        }
    }

    fn scale(self) -> i64 {
        10_i64.pow(self.exponent())
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl TryFrom<String> for Currency {
    type Error = MoneyError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Currency::from_code(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.code().to_owned()
    }
}

/// Why an amount or currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount is empty")]
    Empty,
    #[error("amount is negative")]
    Negative,
    #[error("amount {0:?} is not a plain decimal number")]
    NotANumber(String),
    #[error("amount {amount:?} has more decimals than {currency} allows ({allowed})")]
    TooManyDecimals {
        amount: String,
        currency: Currency,
        allowed: u32,
    },
    #[error("amount is larger than paysettle accepts ({max} minor units)", max = Money::MAX_MINOR)]
    TooLarge,
    #[error("unknown currency {0:?}")]
    UnknownCurrency(String),
    #[error("amounts in {0} and {1} cannot be combined")]
    CurrencyDiffers(Currency, Currency),
}

/// An amount of money: integer minor units of one currency, never negative.
///
/// Deserialising goes through [`Money::from_minor`], so money read from a
/// queue message or a file keeps the same rules as money parsed at the edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "MoneyFields")]
pub struct Money {
    minor: i64,
    currency: Currency,
}

/// `Money` as serialised, before its rules are checked.
#[derive(Deserialize)]
struct MoneyFields {
    minor: i64,
    currency: Currency,
}

impl TryFrom<MoneyFields> for Money {
    type Error = MoneyError;
    fn try_from(fields: MoneyFields) -> Result<Money, MoneyError> {
        Money::from_minor(fields.minor, fields.currency)
    }
}

impl Money {
    /// The largest amount accepted: 10^15 − 1 minor units. Far above any card
    /// payment, and low enough that sums over a ledger cannot overflow `i64`.
    pub const MAX_MINOR: i64 = 999_999_999_999_999;

    /// Money from minor units the caller already holds as an integer.
    pub fn from_minor(minor: i64, currency: Currency) -> Result<Money, MoneyError> {
        if minor < 0 {
            return Err(MoneyError::Negative);
        }
        if minor > Money::MAX_MINOR {
            return Err(MoneyError::TooLarge);
        }
        Ok(Money { minor, currency })
    }

    /// Parses a decimal string in major units exactly ("1.23", "5.00", "19.9").
    ///
    /// Digits, at most one dot, and at least one digit on each side of it.
    /// Decimals beyond the currency's exponent are refused unless they are
    /// zeros ("5.000" is five dollars exactly; "5.001" is not a dollar amount).
    pub fn parse_decimal(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        if text.is_empty() {
            return Err(MoneyError::Empty);
        }
        if text.starts_with('-') {
            return Err(MoneyError::Negative);
        }
        if text.len() > 40 {
            return Err(MoneyError::TooLarge);
        }
        let (whole, fraction) = match text.split_once('.') {
            Some((whole, fraction)) => (whole, Some(fraction)),
            None => (text, None),
        };
        let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(whole) || fraction.is_some_and(|f| !all_digits(f)) {
            return Err(MoneyError::NotANumber(truncate(text)));
        }
        let exponent = currency.exponent() as usize;
        let fraction = fraction.unwrap_or("");
        let (kept, excess) = fraction.split_at(fraction.len().min(exponent));
        if excess.bytes().any(|b| b != b'0') {
            return Err(MoneyError::TooManyDecimals {
                amount: truncate(text),
                currency,
                allowed: currency.exponent(),
            });
        }
        let whole = whole.trim_start_matches('0');
        if whole.len() > 18 {
            return Err(MoneyError::TooLarge);
        }
        let whole: i64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| MoneyError::TooLarge)?
        };
        let mut minor_part: i64 = if kept.is_empty() {
            0
        } else {
            kept.parse().map_err(|_| MoneyError::TooLarge)?
        };
        for _ in kept.len()..exponent {
            minor_part *= 10;
        }
        let minor = whole
            .checked_mul(currency.scale())
            .and_then(|m| m.checked_add(minor_part))
            .ok_or(MoneyError::TooLarge)?;
        Money::from_minor(minor, currency)
    }

    /// Parses minor units written as a string of digits ("1139000").
    pub fn parse_minor(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        if text.is_empty() {
            return Err(MoneyError::Empty);
        }
        if text.starts_with('-') {
            return Err(MoneyError::Negative);
        }
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MoneyError::NotANumber(truncate(text)));
        }
        let digits = text.trim_start_matches('0');
        if digits.len() > 18 {
            return Err(MoneyError::TooLarge);
        }
        let minor: i64 = if digits.is_empty() {
            0
        } else {
            digits.parse().map_err(|_| MoneyError::TooLarge)?
        };
        Money::from_minor(minor, currency)
    }

    /// Parses minor units from a JSON value that is an integer or a string of
    /// digits, as PaySys sends them. Fractions and exponents are refused: a
    /// minor unit has no fraction.
    pub fn from_minor_json(
        value: &serde_json::Value,
        currency: Currency,
    ) -> Result<Money, MoneyError> {
        match value {
            serde_json::Value::String(text) => Money::parse_minor(text, currency),
            serde_json::Value::Number(number) => {
                if let Some(minor) = number.as_i64() {
                    Money::from_minor(minor, currency)
                } else if number.as_u64().is_some() {
                    Err(MoneyError::TooLarge)
                } else {
                    Err(MoneyError::NotANumber(truncate(&number.to_string())))
                }
            }
            other => Err(MoneyError::NotANumber(truncate(&other.to_string()))),
        }
    }

    /// The amount in minor units.
    pub fn minor(self) -> i64 {
        self.minor
    }

    /// The currency.
    pub fn currency(self) -> Currency {
        self.currency
    }

    /// The amount in major units as a decimal string with exactly the
    /// currency's number of decimals ("19.90").
    pub fn to_decimal_string(self) -> String {
        let exponent = self.currency.exponent() as usize;
        let scale = self.currency.scale();
        let whole = self.minor / scale;
        let fraction = self.minor % scale;
        format!("{whole}.{fraction:0exponent$}")
    }

    /// Adds two amounts of the same currency.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyDiffers(self.currency, other.currency));
        }
        let minor = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::TooLarge)?;
        Money::from_minor(minor, self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_decimal_string(), self.currency)
    }
}

/// Error messages quote what was sent; a hostile sender must not be able to
/// make them unbounded.
fn truncate(text: &str) -> String {
    const LIMIT: usize = 32;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd(text: &str) -> Result<i64, MoneyError> {
        Money::parse_decimal(text, Currency::Usd).map(Money::minor)
    }

    #[test]
    fn decimal_strings_parse_exactly_by_the_currency_exponent() {
        assert_eq!(usd("1.23"), Ok(123));
        assert_eq!(usd("5.00"), Ok(500));
        assert_eq!(usd("19.9"), Ok(1990));
        assert_eq!(usd("7"), Ok(700));
        assert_eq!(usd("0.01"), Ok(1));
        assert_eq!(usd("007.50"), Ok(750));
        assert_eq!(usd("5.000"), Ok(500));
        assert_eq!(
            Money::parse_decimal("1.234", Currency::Lyd).map(Money::minor),
            Ok(1234)
        );
        assert_eq!(
            Money::parse_decimal("1.2", Currency::Lyd).map(Money::minor),
            Ok(1200)
        );
    }

    #[test]
    fn bad_decimal_strings_are_refused_with_the_reason() {
        assert_eq!(usd(""), Err(MoneyError::Empty));
        assert_eq!(usd("-1.00"), Err(MoneyError::Negative));
        assert!(matches!(
            usd("1.234"),
            Err(MoneyError::TooManyDecimals { allowed: 2, .. })
        ));
        for garbage in [
            "1,23", "1.2.3", ".5", "5.", "+5", "1e3", " 5", "5 ", "0x10", "١٢", "NaN",
        ] {
            assert!(
                matches!(usd(garbage), Err(MoneyError::NotANumber(_))),
                "{garbage}"
            );
        }
        assert_eq!(usd("99999999999999999999999"), Err(MoneyError::TooLarge));
        assert_eq!(usd("10000000000000.00"), Err(MoneyError::TooLarge));
        assert_eq!(usd("9999999999999.99"), Ok(Money::MAX_MINOR));
    }

    #[test]
    fn minor_units_parse_from_numbers_and_strings() {
        let uzs = Currency::Uzs;
        assert_eq!(
            Money::from_minor_json(&serde_json::json!(1000), uzs).map(Money::minor),
            Ok(1000)
        );
        assert_eq!(
            Money::from_minor_json(&serde_json::json!("1139000"), uzs).map(Money::minor),
            Ok(1_139_000)
        );
        assert_eq!(
            Money::from_minor_json(&serde_json::json!(-5), uzs),
            Err(MoneyError::Negative)
        );
        assert_eq!(
            Money::from_minor_json(&serde_json::json!("-5"), uzs),
            Err(MoneyError::Negative)
        );
        assert!(matches!(
            Money::from_minor_json(&serde_json::json!(10.5), uzs),
            Err(MoneyError::NotANumber(_))
        ));
        assert!(matches!(
            Money::from_minor_json(&serde_json::json!("10.5"), uzs),
            Err(MoneyError::NotANumber(_))
        ));
        assert!(matches!(
            Money::from_minor_json(&serde_json::json!(null), uzs),
            Err(MoneyError::NotANumber(_))
        ));
        assert_eq!(
            Money::from_minor_json(&serde_json::json!(u64::MAX), uzs),
            Err(MoneyError::TooLarge)
        );
        assert_eq!(
            Money::from_minor_json(&serde_json::json!(""), uzs),
            Err(MoneyError::Empty)
        );
    }

    #[test]
    fn paysys_currencies_map_to_iso() {
        assert_eq!(Currency::from_paysys("uzs"), Ok(Currency::Uzs));
        assert_eq!(Currency::from_paysys("usd"), Ok(Currency::Usd));
        assert_eq!(Currency::from_paysys("eur"), Ok(Currency::Eur));
        assert_eq!(Currency::from_paysys("rub"), Ok(Currency::Rub));
        assert_eq!(Currency::from_paysys("RUB"), Ok(Currency::Rub));
        assert_eq!(Currency::from_paysys("840"), Ok(Currency::Usd));
        assert_eq!(Currency::from_paysys("860"), Ok(Currency::Uzs));
        assert_eq!(Currency::from_paysys("643"), Ok(Currency::Rub));
        assert_eq!(Currency::from_paysys("978"), Ok(Currency::Eur));
        assert!(matches!(
            Currency::from_paysys("999"),
            Err(MoneyError::UnknownCurrency(_))
        ));
        assert!(matches!(
            Currency::from_paysys("xyz"),
            Err(MoneyError::UnknownCurrency(_))
        ));
        assert!(matches!(
            Currency::from_paysys(""),
            Err(MoneyError::UnknownCurrency(_))
        ));
    }

    #[test]
    fn display_and_serde_use_iso_codes() {
        let money = Money::parse_decimal("19.9", Currency::Azn).unwrap();
        assert_eq!(money.to_string(), "19.90 AZN");
        let json = serde_json::to_string(&money).unwrap();
        assert_eq!(json, r#"{"minor":1990,"currency":"AZN"}"#);
        assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), money);
        assert!(serde_json::from_str::<Currency>(r#""XXX""#).is_err());
    }

    #[test]
    fn error_messages_stay_short_whatever_is_sent() {
        let long = "9".repeat(10_000) + "x";
        let err = usd(&long).unwrap_err();
        assert!(err.to_string().len() < 100, "{err}");
    }

    proptest! {
        #[test]
        fn decimal_round_trips(minor in 0..=Money::MAX_MINOR, pick in 0usize..6) {
            let currency = Currency::ALL[pick];
            let money = Money::from_minor(minor, currency).unwrap();
            let text = money.to_decimal_string();
            prop_assert_eq!(Money::parse_decimal(&text, currency), Ok(money));
        }

        #[test]
        fn minor_strings_round_trip(minor in 0..=Money::MAX_MINOR) {
            let money = Money::parse_minor(&minor.to_string(), Currency::Uzs).unwrap();
            prop_assert_eq!(money.minor(), minor);
        }

        #[test]
        fn arbitrary_text_never_panics_and_never_goes_negative(text in "\\PC{0,30}") {
            if let Ok(money) = Money::parse_decimal(&text, Currency::Usd) {
                prop_assert!(money.minor() >= 0);
                // Whatever parsed is exactly what the digits said.
                prop_assert_eq!(Money::parse_decimal(&money.to_decimal_string(), Currency::Usd), Ok(money));
            }
        }
    }
}
