//! Redaction of what is kept (queue messages' raw part, the ledger's
//! history): no run of 13–19 digits that passes the Luhn check survives,
//! wherever it is in a JSON document, a form or text, and masking is
//! idempotent and keeps the text's length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paysettle_core::{form, redact};

fn clean(text: &str) -> bool {
    redact::mask_card_numbers(text) == text
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let masked = redact::mask_card_numbers(&text);
    assert_eq!(masked.len(), text.len());
    assert!(clean(&masked), "masking is idempotent");
    for (a, b) in text.chars().zip(masked.chars()) {
        assert!(a == b || (a.is_ascii_digit() && b == '*'));
    }
    if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(data) {
        redact::json(&mut value);
        let kept = value.to_string();
        assert!(clean(&kept), "a card number survived in {kept}");
    }
    if let Ok(pairs) = form::parse_pairs(data) {
        for (key, value) in redact::pairs(&pairs) {
            assert!(clean(&key) && clean(&value));
        }
    }
});
