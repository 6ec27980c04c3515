//! Money as the simulator keeps it: integer minor units and an ISO 4217
//! currency, with the conversions to and from each provider's own amount string.

use serde::{Deserialize, Serialize};

/// The currencies the three providers use; each knows its minor-unit exponent
/// and its ISO numeric code (PaySys notifications send the numeric one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Currency {
    /// Azerbaijani manat (Portmanat).
    Azn,
    /// US dollar (Plutu MPGS, PaySys `usd`).
    Usd,
    /// Euro (PaySys `eur`).
    Eur,
    /// Russian ruble (PaySys `rub`).
    Rub,
    /// Uzbek sum (PaySys `uzs`, its default).
    Uzs,
    /// Libyan dinar (Plutu local bank cards), three decimals.
    Lyd,
}

impl Currency {
    /// ISO 4217 alphabetic code, as the settled events carry it.
    pub fn code(self) -> &'static str {
        match self {
            Currency::Azn => "AZN",
            Currency::Usd => "USD",
            Currency::Eur => "EUR",
            Currency::Rub => "RUB",
            Currency::Uzs => "UZS",
            Currency::Lyd => "LYD",
        }
    }

    /// ISO 4217 numeric code (PaySys notifications' `currency`).
    pub fn numeric(self) -> u16 {
        match self {
            Currency::Azn => 944,
            Currency::Usd => 840,
            Currency::Eur => 978,
            Currency::Rub => 643,
            Currency::Uzs => 860,
            Currency::Lyd => 434,
        }
    }

    /// Digits after the decimal point of the minor unit.
    pub fn exponent(self) -> u32 {
        match self {
            Currency::Lyd => 3,
            _ => 2,
        }
    }

    /// Parses a code in any letter case (`uzs`, `USD`).
    pub fn parse(code: &str) -> Option<Currency> {
        match code.to_ascii_uppercase().as_str() {
            "AZN" => Some(Currency::Azn),
            "USD" => Some(Currency::Usd),
            "EUR" => Some(Currency::Eur),
            "RUB" => Some(Currency::Rub),
            "UZS" => Some(Currency::Uzs),
            "LYD" => Some(Currency::Lyd),
            _ => None,
        }
    }
}

/// Parses a decimal amount string with at most `max_decimals` digits after
/// the point (`"5"`, `"5.5"`, `"19.90"`) into minor units of `currency`.
///
/// Returns `None` for anything else (signs, exponents, spaces, a bare point,
/// zero, overflow): the providers reject those, and so does the simulator.
pub fn parse_decimal(text: &str, currency: Currency, max_decimals: u32) -> Option<i64> {
    let (whole, fraction) = match text.split_once('.') {
        Some((whole, fraction)) => (whole, fraction),
        None => (text, ""),
    };
    let digits_only = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || whole.len() > 12
        || !digits_only(whole)
        || !digits_only(fraction)
        || (text.contains('.') && fraction.is_empty())
        || fraction.len() as u32 > max_decimals.min(currency.exponent())
    {
        return None;
    }
    let scale = 10_i64.pow(currency.exponent());
    let whole: i64 = whole.parse().ok()?;
    let mut fraction_minor: i64 = 0;
    if !fraction.is_empty() {
        let padded = format!("{fraction:0<width$}", width = currency.exponent() as usize);
        fraction_minor = padded.parse().ok()?;
    }
    let minor = whole.checked_mul(scale)?.checked_add(fraction_minor)?;
    (minor > 0).then_some(minor)
}

/// Formats minor units as a decimal string with `decimals` digits after the
/// point (`500` USD cents, 2 → `"5.00"`), dropping digits finer than that.
pub fn format_decimal(minor: i64, currency: Currency, decimals: u32) -> String {
    let scale = 10_i64.pow(currency.exponent());
    let whole = minor / scale;
    let fraction = minor % scale;
    if decimals == 0 {
        return whole.to_string();
    }
    let shown = decimals.min(currency.exponent());
    let fraction = fraction / 10_i64.pow(currency.exponent() - shown);
    format!("{whole}.{fraction:0width$}", width = shown as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_shapes() {
        assert_eq!(parse_decimal("19.90", Currency::Azn, 2), Some(1990));
        assert_eq!(parse_decimal("5", Currency::Usd, 2), Some(500));
        assert_eq!(parse_decimal("5.5", Currency::Usd, 2), Some(550));
        assert_eq!(parse_decimal("12.50", Currency::Lyd, 2), Some(12_500));
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "", ".5", "5.", "-1", "+1", "1e3", "1.234", " 1", "1,00", "0", "0.00", "abc",
        ] {
            assert_eq!(parse_decimal(bad, Currency::Usd, 2), None, "{bad:?}");
        }
        assert_eq!(parse_decimal("9999999999999", Currency::Usd, 2), None);
    }

    #[test]
    fn formats_with_fixed_decimals() {
        assert_eq!(format_decimal(500, Currency::Usd, 2), "5.00");
        assert_eq!(format_decimal(1990, Currency::Azn, 2), "19.90");
        assert_eq!(format_decimal(5, Currency::Usd, 2), "0.05");
        assert_eq!(format_decimal(12_500, Currency::Lyd, 2), "12.50");
        assert_eq!(format_decimal(1_139_000, Currency::Uzs, 0), "11390");
    }

    #[test]
    fn codes_round_trip() {
        for currency in [
            Currency::Azn,
            Currency::Usd,
            Currency::Eur,
            Currency::Rub,
            Currency::Uzs,
            Currency::Lyd,
        ] {
            assert_eq!(Currency::parse(currency.code()), Some(currency));
            assert_eq!(
                Currency::parse(&currency.code().to_lowercase()),
                Some(currency)
            );
        }
        assert_eq!(Currency::Usd.numeric(), 840);
        assert_eq!(Currency::Uzs.numeric(), 860);
    }
}
