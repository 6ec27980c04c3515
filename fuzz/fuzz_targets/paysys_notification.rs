//! PaySys notifications: the Basic-auth check and the JSON parser behind it.
//! The first input byte chooses whether the genuine credentials are sent
//! (so the fuzzer reaches the body parser) or fuzzed ones; a fuzzed
//! Authorization value is never accepted unless it carries exactly the
//! configured `user:password`.
#![no_main]

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use jiff::Timestamp;
use libfuzzer_sys::fuzz_target;
use paysettle_core::paysys::NotificationAuth;
use paysettle_core::{Account, VerifyError};
use secrecy::SecretString;

const USER: &str = "vendor-method";
const PASSWORD: &str = "vendor-secret";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let auth =
        NotificationAuth::new(&[(SecretString::from(USER), SecretString::from(PASSWORD))]).unwrap();
    let mut headers = HeaderMap::new();
    let body = if mode & 1 == 0 {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
        rest
    } else {
        // The header is everything up to the first newline.
        let split = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let Ok(value) = HeaderValue::from_bytes(&rest[..split]) else {
            return;
        };
        headers.insert(AUTHORIZATION, value);
        rest.get(split + 1..).unwrap_or_default()
    };
    let result = auth.verify(&headers, body, &Account::default(), Timestamp::UNIX_EPOCH);
    match result {
        Ok(verified) => {
            if let Some(observation) = verified.observation() {
                if let Some(money) = observation.money {
                    assert!(money.minor() >= 0);
                }
                assert!(observation.provider_status.len() <= 32);
            }
        }
        Err(VerifyError::Malformed(message)) => {
            // Answers quote at most a bounded part of the request.
            assert!(message.chars().count() <= 400, "{}", message.len());
        }
        Err(_) => {}
    }
    if mode & 1 == 1 {
        // `{}` is malformed only once the credentials have passed.
        let check = auth.verify(&headers, b"{}", &Account::default(), Timestamp::UNIX_EPOCH);
        if matches!(check, Err(VerifyError::Malformed(_))) {
            let text = headers[AUTHORIZATION].to_str().unwrap().trim();
            let (scheme, encoded) = text.split_once(' ').unwrap();
            assert!(scheme.eq_ignore_ascii_case("basic"));
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .unwrap();
            assert_eq!(decoded, format!("{USER}:{PASSWORD}").as_bytes());
        }
    }
});
