//! Removing secrets and card data from what paysettle keeps.
//!
//! The ledger keeps each callback's raw request for audit, and the queue
//! carries it to the worker; neither may hold a card number, a card token, a
//! secret or an Authorization header in clear. Everything raw passes through
//! here first: known sensitive fields are replaced, and any run of 13–19
//! digits that passes the Luhn check is masked wherever it appears, so a card
//! number in a field nobody anticipated is caught too.

use http::HeaderMap;
use serde_json::Value;

/// What replaces a removed secret.
pub const REDACTED: &str = "[redacted]";

/// Log directives every subscriber of paysettle's adds after the operator's
/// own (`PAYSETTLE_LOG`, `log.level`), so they hold at any level: libraries
/// that write the data they carry into their debug lines. The PostgreSQL
/// client logs each statement with its parameters (raw callbacks, amounts,
/// references) at debug.
pub const LOG_CAPS: &[&str] = &["tokio_postgres=info"];

/// Headers that are dropped from anything kept.
const SENSITIVE_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "auth",
    "card-token",
];

/// Fields whose value is a secret or a card credential, whatever it looks like.
const SECRET_FIELDS: &[&str] = &[
    "token",
    "card_token",
    "card_cvc",
    "cvc",
    "cvv",
    "card_expire",
    "secret",
    "secret_key",
    "password",
    "authorization",
    "access_token",
    "api_key",
];

fn is_secret_field(key: &str) -> bool {
    SECRET_FIELDS.iter().any(|f| f.eq_ignore_ascii_case(key))
}

/// Whether a header must not be kept.
pub fn is_sensitive_header(name: &str) -> bool {
    SENSITIVE_HEADERS
        .iter()
        .any(|h| h.eq_ignore_ascii_case(name))
}

/// The headers worth keeping, sensitive ones dropped, values as lossy text.
/// Names are masked too: a header name is whatever token the client sent.
pub fn headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(name, _)| !is_sensitive_header(name.as_str()))
        .map(|(name, value)| {
            (
                mask_card_numbers(name.as_str()),
                mask_card_numbers(&String::from_utf8_lossy(value.as_bytes())),
            )
        })
        .collect()
}

/// Redacts a JSON document in place: secret fields replaced, card numbers
/// masked in keys, strings and numbers alike.
pub fn json(value: &mut Value) {
    walk(value, true);
}

/// Masks card numbers in a JSON document in place, in keys, strings and
/// numbers alike, and leaves every other value as it is: for what
/// paysettle sends out (events, card registrations for the shop), whose
/// fields are all meant to be read, a card token in its own field included.
pub fn mask_json(value: &mut Value) {
    walk(value, false);
}

fn walk(value: &mut Value, secrets: bool) {
    match value {
        Value::Object(map) => {
            if map.keys().any(|key| !is_masked(key)) {
                // Rebuilt in order with masked keys. Two keys that mask alike
                // keep the later one's value: this is an audit copy, and a
                // card number must not survive in it.
                *map = std::mem::take(map)
                    .into_iter()
                    .map(|(key, field)| (mask_card_numbers(&key), field))
                    .collect();
            }
            for (key, field) in map.iter_mut() {
                if secrets && is_secret_field(key) && !field.is_null() {
                    *field = Value::String(REDACTED.to_owned());
                } else {
                    walk(field, secrets);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| walk(item, secrets)),
        Value::String(text) => {
            let masked = mask_card_numbers(text);
            if masked != *text {
                *text = masked;
            }
        }
        Value::Number(number) => {
            let text = number.to_string();
            if mask_card_numbers(&text) != text {
                *value = Value::String(mask_card_numbers(&text));
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

/// Whether masking would leave the text as it is.
fn is_masked(text: &str) -> bool {
    !text.bytes().any(|b| b.is_ascii_digit()) || mask_card_numbers(text) == text
}

/// Redacts ordered query or form pairs.
pub fn pairs(pairs: &[(String, String)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(key, value)| {
            let value = if is_secret_field(key) {
                REDACTED.to_owned()
            } else {
                mask_card_numbers(value)
            };
            (mask_card_numbers(key), value)
        })
        .collect()
}

/// Masks every run of 13–19 digits that passes the Luhn check as
/// `first six ****** last four`, the form the providers use themselves.
pub fn mask_card_numbers(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let run = &text[start..i];
            if looks_like_card_number(run) {
                out.push_str(&mask_pan(run));
            } else {
                out.push_str(run);
            }
        } else {
            let start = i;
            while i < bytes.len() && !bytes[i].is_ascii_digit() {
                i += 1;
            }
            out.push_str(&text[start..i]);
        }
    }
    out
}

/// Whether a run of digits is plausibly a card number (length and Luhn).
pub fn looks_like_card_number(digits: &str) -> bool {
    (13..=19).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && luhn(digits)
}

fn luhn(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// `427831******5400` from `4278310000275400`.
pub fn mask_pan(pan: &str) -> String {
    if pan.len() < 10 {
        return "*".repeat(pan.len());
    }
    format!(
        "{}{}{}",
        &pan[..6],
        "*".repeat(pan.len() - 10),
        &pan[pan.len() - 4..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const VISA_TEST: &str = "4111111111111111";

    #[test]
    fn card_numbers_are_masked_wherever_they_stand() {
        assert!(looks_like_card_number(VISA_TEST));
        assert_eq!(
            mask_card_numbers("card 4111111111111111 ok"),
            "card 411111******1111 ok"
        );
        assert_eq!(
            mask_card_numbers("222222******2222"),
            "222222******2222",
            "already masked stays"
        );
        assert_eq!(
            mask_card_numbers("order 1471855074"),
            "order 1471855074",
            "ten digits is no card"
        );
        assert_eq!(
            mask_card_numbers("4111111111111112"),
            "4111111111111112",
            "fails Luhn"
        );
    }

    #[test]
    fn secret_fields_and_card_numbers_leave_json() {
        let mut doc = serde_json::json!({
            "method": "partner.notify",
            "params": {"stat": "SUCCESS", "id": "d553", "token": "0b6227c70d365255176cb6c3b9b6cccfd3aa17b0", "pan": "222222******2222"},
            "nested": [{"card_number": "4111111111111111", "note": "paid with 4111111111111111"}],
            "n": 4111111111111111u64
        });
        json(&mut doc);
        let text = doc.to_string();
        assert!(!text.contains("0b6227c7"), "{text}");
        assert!(!text.contains("4111111111111111"), "{text}");
        assert!(text.contains(REDACTED));
        assert!(text.contains("222222******2222"));
        assert_eq!(doc["params"]["stat"], "SUCCESS");
    }

    #[test]
    fn outbound_documents_keep_their_fields_but_not_card_numbers() {
        let mut doc = serde_json::json!({
            "token": "tok_1",
            "card_id": "4111111111111111",
            "message": "card 5555555555554444 declined",
            "n": 4111111111111111u64,
            "4111111111111111": 1,
            "amount": 1500
        });
        mask_json(&mut doc);
        let text = doc.to_string();
        assert!(!text.contains("4111111111111111"), "{text}");
        assert!(!text.contains("5555555555554444"), "{text}");
        assert_eq!(doc["token"], "tok_1");
        assert_eq!(doc["card_id"], "411111******1111");
        assert_eq!(doc["n"], "411111******1111");
        assert_eq!(doc["amount"], 1500);
    }

    #[test]
    fn sensitive_headers_are_dropped() {
        let mut map = HeaderMap::new();
        map.insert("authorization", "Basic dXNlcjpwYXNz".parse().unwrap());
        map.insert("x-api-key", "key".parse().unwrap());
        map.insert("content-type", "application/json".parse().unwrap());
        let kept = headers(&map);
        assert_eq!(
            kept,
            vec![("content-type".to_owned(), "application/json".to_owned())]
        );
    }

    #[test]
    fn query_pairs_are_redacted() {
        let kept = pairs(&[
            ("token".into(), "abc".into()),
            ("pan".into(), VISA_TEST.into()),
            ("amount".into(), "5.00".into()),
        ]);
        assert_eq!(kept[0].1, REDACTED);
        assert_eq!(kept[1].1, "411111******1111");
        assert_eq!(kept[2].1, "5.00");
    }
}
