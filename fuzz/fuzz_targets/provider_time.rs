//! Provider local times (PaySys notification dates, Portmanat `/check`
//! dates with the zone the answer names): never a panic, and the raw text
//! is kept exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paysettle_core::localtime;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (raw, zone) = text.split_once('\n').unwrap_or((text, "Asia/Baku"));
    for format in ["%d.%m.%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S%.f"] {
        if let Ok(time) = localtime::read(raw, format, zone) {
            assert_eq!(time.raw, raw);
            assert_eq!(time.zone, zone);
        }
    }
});
