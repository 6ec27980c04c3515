//! Money parsing: decimal strings (Portmanat, Plutu), minor units as text or
//! JSON (PaySys), currency codes. Never a panic, never a negative or
//! oversized amount, and every amount read prints back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paysettle_core::{Currency, Money};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for currency in Currency::ALL {
        for parsed in [
            Money::parse_decimal(text, currency),
            Money::parse_minor(text, currency),
        ] {
            if let Ok(money) = parsed {
                assert!((0..=Money::MAX_MINOR).contains(&money.minor()));
                assert_eq!(money.currency(), currency);
                let printed = money.to_decimal_string();
                assert_eq!(Money::parse_decimal(&printed, currency), Ok(money));
                assert_eq!(
                    Money::parse_minor(&money.minor().to_string(), currency),
                    Ok(money)
                );
            }
        }
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(text)
            && let Ok(money) = Money::from_minor_json(&value, currency)
        {
            assert!((0..=Money::MAX_MINOR).contains(&money.minor()));
        }
    }
    if let Ok(currency) = Currency::from_code(text) {
        assert!(currency.code().eq_ignore_ascii_case(text));
    }
    if let Ok(currency) = Currency::from_paysys(text) {
        assert!(
            currency.code().eq_ignore_ascii_case(text)
                || text.parse::<u16>() == Ok(currency.numeric())
        );
    }
});
