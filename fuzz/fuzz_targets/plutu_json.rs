//! T-Lync's signed JSON callback. The raw input as the body (a forged
//! `hashed` never verifies), and the input's object re-signed with the right
//! key so the parser behind the signature is reached.
#![no_main]

use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use paysettle_core::plutu::{CallbackVerifier, Gateway, sign, signed_message};
use paysettle_core::{Account, VerifyError};
use secrecy::SecretString;
use serde_json::Value;

const KEY: &str = "sk_fuzz_0123456789abcdef";

/// The pairs T-Lync's message is built from, as the verifier reads them.
fn pairs(object: &serde_json::Map<String, Value>) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (key, value) in object {
        let text = match value {
            Value::Null => continue,
            Value::String(text) => text.clone(),
            Value::Number(number) => number.to_string(),
            Value::Bool(flag) => if *flag { "1" } else { "0" }.to_owned(),
            _ => return None,
        };
        out.push((key.clone(), text));
    }
    Some(out)
}

fuzz_target!(|data: &[u8]| {
    let verifier = CallbackVerifier::new(SecretString::from(KEY)).unwrap();
    let account = Account::default();
    if verifier
        .verify_json(data, &account, Timestamp::UNIX_EPOCH)
        .is_ok()
    {
        let doc: Value = serde_json::from_slice(data).unwrap();
        let object = doc.as_object().unwrap();
        let pairs = pairs(object).unwrap();
        let gateway = Gateway::parse(object["gateway"].as_str().unwrap()).unwrap();
        let message = signed_message(gateway, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let expected = sign(&SecretString::from(KEY), &message);
        assert!(
            object["hashed"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(&expected)
        );
    }
    let Ok(Value::Object(mut object)) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    object.shift_remove("hashed");
    let Some(unsigned) = pairs(&object) else {
        return;
    };
    let gateway = unsigned
        .iter()
        .find(|(k, _)| k == "gateway")
        .and_then(|(_, v)| Gateway::parse(v))
        .unwrap_or(Gateway::Tlync);
    let hashed = sign(
        &SecretString::from(KEY),
        &signed_message(
            gateway,
            unsigned.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ),
    );
    object.insert("hashed".into(), Value::String(hashed));
    let body = serde_json::to_vec(&object).unwrap();
    if let Err(error) = verifier.verify_json(&body, &account, Timestamp::UNIX_EPOCH) {
        assert!(matches!(error, VerifyError::Malformed(_)), "{error:?}");
    }
});
