//! `form::parse_pairs`, the strict reader of every query string and form
//! body: never panics, and what it reads survives PHP's re-encoding (the
//! Plutu signature is computed over that re-encoding).
#![no_main]

use libfuzzer_sys::fuzz_target;
use paysettle_core::form;

fuzz_target!(|data: &[u8]| {
    let Ok(pairs) = form::parse_pairs(data) else {
        return;
    };
    assert!(pairs.len() <= form::MAX_PARAMS);
    let encoded = form::php_build_query(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    // Empty keys and values are dropped or merged by the segment rules
    // (`=` alone is an empty pair), so compare only when none is empty.
    if pairs.iter().all(|(k, _)| !k.is_empty()) {
        assert_eq!(form::parse_pairs(encoded.as_bytes()).as_ref(), Ok(&pairs));
    }
});
