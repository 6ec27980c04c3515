//! The identifiers read at the edge (references, provider transaction ids,
//! accounts, providers): what parses is exactly what was given, survives a
//! JSON round trip, and holds no byte outside its alphabet.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paysettle_core::{Account, Provider, ProviderTxnId, Reference};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reference) = Reference::parse(text) {
        assert_eq!(reference.as_str(), text);
        assert!(!text.contains('/') && !text.contains('%') && !text.is_empty());
        let json = serde_json::to_string(&reference).unwrap();
        assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), reference);
    }
    if let Ok(txn) = ProviderTxnId::parse(text) {
        assert_eq!(txn.as_str(), text);
        assert!(text.bytes().all(|b| b.is_ascii_graphic()));
    }
    if let Ok(account) = Account::parse(text) {
        assert_eq!(account.as_str(), text);
        assert!(!text.contains('/'));
    }
    if let Ok(provider) = text.parse::<Provider>() {
        assert_eq!(provider.as_str(), text);
    }
    // Deserialising runs the same rules.
    let quoted = serde_json::Value::String(text.to_owned()).to_string();
    assert_eq!(
        serde_json::from_str::<Reference>(&quoted).is_ok(),
        Reference::parse(text).is_ok()
    );
});
