//! `Retry-After` as providers send it (delay-seconds or an HTTP-date):
//! never a panic, and delay-seconds are read exactly.
#![no_main]

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use paysettle_core::schedule::retry_after;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let now = Timestamp::from_second(1_800_000_000).unwrap();
    let wait = retry_after(text, now);
    let trimmed = text.trim();
    if !trimmed.is_empty() && trimmed.len() <= 10 && trimmed.bytes().all(|b| b.is_ascii_digit()) {
        assert_eq!(
            wait,
            Some(std::time::Duration::from_secs(trimmed.parse().unwrap()))
        );
    }
    let _ = retry_after(text, Timestamp::MIN);
    let _ = retry_after(text, Timestamp::MAX);
});
