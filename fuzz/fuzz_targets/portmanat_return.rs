//! Portmanat's unsigned browser return, query and form body: never a panic,
//! and a hint names a payment by values that were really given under those
//! names.
#![no_main]

use libfuzzer_sys::fuzz_target;
use paysettle_core::form;
use paysettle_core::portmanat::parse_return;

fuzz_target!(|data: &[u8]| {
    // The query is everything up to the first newline, the form body the rest.
    let (query, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], Some(&data[at + 1..])),
        None => (data, None),
    };
    let Ok(hint) = parse_return(query, body) else {
        return;
    };
    let mut pairs = form::parse_pairs(query).unwrap();
    if let Some(body) = body {
        pairs.extend(form::parse_pairs(body).unwrap());
    }
    let given = |name: &str, value: &str| pairs.iter().any(|(k, v)| k == name && v == value);
    assert!(hint.psp_rrn.is_some() || hint.client_rrn.is_some());
    if let Some(rrn) = &hint.client_rrn {
        assert!(given("client_rrn", rrn.as_str()));
    }
    if let Some(rrn) = &hint.psp_rrn {
        assert!(given("psp_rrn", rrn.as_str()));
    }
});
