//! Plutu's signed GET callbacks. Two ways in: the raw input as the query
//! (a forged `hashed` must never verify), and the input's pairs signed with
//! the right key (so the fuzzer reaches everything read after the
//! signature). Whatever verifies, its signed message is exactly what the
//! key signed.
#![no_main]

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use paysettle_core::plutu::{CallbackVerifier, Gateway, sign, signed_message};
use paysettle_core::{Account, VerifyError, form};
use secrecy::SecretString;

const KEY: &str = "sk_fuzz_0123456789abcdef";

fn check(verifier: &CallbackVerifier, query: &[u8]) {
    let Ok(verified) = verifier.verify_query(query, &Account::default(), Timestamp::UNIX_EPOCH)
    else {
        return;
    };
    // Accepted: recompute what was signed and compare with `hashed`.
    let pairs = form::parse_pairs(query).unwrap();
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let gateway = Gateway::parse(get("gateway").unwrap()).unwrap();
    let message = signed_message(gateway, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let expected = sign(&SecretString::from(KEY), &message);
    assert!(get("hashed").unwrap().eq_ignore_ascii_case(&expected));
    let observation = verified.observation().unwrap();
    assert_eq!(Some(observation.reference.as_str()), get("invoice_no"));
    assert!(observation.money.is_some());
}

fuzz_target!(|data: &[u8]| {
    let verifier = CallbackVerifier::new(SecretString::from(KEY)).unwrap();
    check(&verifier, data);
    // The same pairs, signed as Plutu would sign them.
    let Ok(pairs) = form::parse_pairs(data) else {
        return;
    };
    let gateway = pairs
        .iter()
        .find(|(k, _)| k == "gateway")
        .and_then(|(_, v)| Gateway::parse(v))
        .unwrap_or(Gateway::Mpgs);
    let unsigned: Vec<(&str, &str)> = pairs
        .iter()
        .filter(|(k, _)| k != "hashed")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let hashed = sign(
        &SecretString::from(KEY),
        &signed_message(gateway, unsigned.iter().copied()),
    );
    let query = format!(
        "{}&hashed={hashed}",
        form::php_build_query(unsigned.iter().copied())
    );
    let result =
        verifier.verify_query(query.as_bytes(), &Account::default(), Timestamp::UNIX_EPOCH);
    // Signed with the right key: never an authentication failure, unless a
    // whitelisted name is given twice (refused before the signature).
    if let Err(error) = &result {
        assert!(
            matches!(error, VerifyError::Malformed(_)),
            "{error:?} for {query}"
        );
    }
    check(&verifier, query.as_bytes());
});
