//! Property-based fuzzing of every parser and verifier that reads bytes from
//! outside, inside the normal test suite: the same parsers `fuzz/` runs under
//! libFuzzer, thrown arbitrary bytes and genuine inputs mutated byte by
//! byte. They never panic; whatever a verifier accepts is exactly what the
//! key signed; what is read prints back to itself. The regressions at the
//! end are inputs the fuzzers found, kept.

// Test code: a failed unwrap or assertion is how a test fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use jiff::Timestamp;
use paysettle_core::inbound::{InboundCallback, Payload};
use paysettle_core::paysys::{self, NotificationAuth};
use paysettle_core::plutu::{CallbackVerifier, Gateway, sign, signed_message};
use paysettle_core::portmanat;
use paysettle_core::schedule::retry_after;
use paysettle_core::{
    Account, Currency, Money, ObservedStatus, ProviderTxnId, Reference, VerifyError, form,
    localtime, redact,
};
use proptest::prelude::*;
use secrecy::SecretString;
use serde_json::{Value, json};

const PLUTU_KEY: &str = "sk_props_0123456789abcdef";
const PAYSYS_USER: &str = "vendor-method";
const PAYSYS_PASSWORD: &str = "vendor-secret";

/// A genuine MPGS callback's query, signed.
fn genuine_plutu_query() -> String {
    let pairs = [
        ("gateway", "mpgs"),
        ("approved", "1"),
        ("amount", "12.50"),
        ("currency", "USD"),
        ("invoice_no", "INV-1001"),
        ("transaction_id", "200431"),
    ];
    let hashed = sign(
        &SecretString::from(PLUTU_KEY),
        &signed_message(Gateway::Mpgs, pairs),
    );
    format!("{}&lang=ar&hashed={hashed}", form::php_build_query(pairs))
}

/// A genuine T-Lync callback body, signed.
fn genuine_tlync_body() -> String {
    let pairs = [
        ("gateway", "tlync"),
        ("approved", "1"),
        ("invoice_no", "INV-7"),
        ("amount", "5.000"),
        ("transaction_id", "T-1"),
        ("payment_method", "tlync"),
    ];
    let hashed = sign(
        &SecretString::from(PLUTU_KEY),
        &signed_message(Gateway::Tlync, pairs),
    );
    let mut object = serde_json::Map::new();
    for (k, v) in pairs {
        object.insert(k.into(), Value::String(v.into()));
    }
    object.insert("hashed".into(), Value::String(hashed));
    Value::Object(object).to_string()
}

const PAYSYS_NOTIFICATION: &str = r#"{"id":"44114543","account":"931111111","amount":1000,"card_masked":"222222******2222","currency":840,"currency_name":"usd","status":2,"date":"24.06.2022 07:49:16"}"#;

const PORTMANAT_CHECK: &str = r#"{"status":"OK","code":0,"description":"Success","body":{"amount":"5.23","client_rrn":"ORDER-42","psp_rrn":"1471851442-lfI7yG","bank_rrn":"x","created_at":{"date":"2017-05-19 17:15:26.000000","timezone_type":3,"timezone":"Asia/Baku"}}}"#;

const PAYSYS_CHECK: &str = r#"{"id":"r1","error":null,"result":{"partner_trans_id":"ORDER-42","status":"2","transaction_id":"1485295","err_obj":null}}"#;

fn inbound_message() -> String {
    json!({
        "format": 1,
        "id": "m-1",
        "provider": "plutu",
        "account": "default",
        "received_at": "2026-01-01T00:00:00Z",
        "client_addr": "127.0.0.1",
        "payload": {
            "kind": "observation",
            "provider": "plutu",
            "account": "default",
            "reference": "INV-1",
            "provider_txn_id": "200431",
            "status": {"status": "refunded", "total": {"minor": 500, "currency": "USD"}},
            "money": {"minor": 1250, "currency": "USD"},
            "provider_status": "mpgs:approved",
            "provider_time": null,
            "observed_at": "2026-01-01T00:00:00Z",
            "source": "callback"
        },
        "raw": {"method": "GET", "path": "/callbacks/plutu", "query": [["gateway", "mpgs"]], "headers": [], "body": null}
    })
    .to_string()
}

/// One byte-level edit of a genuine input: replace, insert or delete at a
/// position, the way a mutating fuzzer (or a tampering proxy) changes it.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, u8),
    Insert(usize, u8),
    Delete(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Replace(i, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
        any::<usize>().prop_map(Edit::Delete),
    ];
    prop::collection::vec(edit, 1..4)
}

fn mutate(input: &str, edits: &[Edit]) -> Vec<u8> {
    let mut bytes = input.as_bytes().to_vec();
    for edit in edits {
        let len = bytes.len().max(1);
        match *edit {
            Edit::Replace(i, b) if !bytes.is_empty() => bytes[i % len] = b,
            Edit::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Edit::Delete(i) if !bytes.is_empty() => {
                bytes.remove(i % len);
            }
            _ => {}
        }
    }
    bytes
}

fn plutu_verifier() -> CallbackVerifier {
    CallbackVerifier::new(SecretString::from(PLUTU_KEY)).unwrap()
}

/// What a query's signature covers, recomputed: the gateway's whitelisted
/// pairs in order, PHP-encoded.
fn signed_content(query: &[u8]) -> String {
    let pairs = form::parse_pairs(query).unwrap();
    let gateway = pairs
        .iter()
        .find(|(k, _)| k == "gateway")
        .and_then(|(_, v)| Gateway::parse(v))
        .unwrap();
    signed_message(gateway, pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

fn paysys_auth() -> NotificationAuth {
    NotificationAuth::new(&[(
        SecretString::from(PAYSYS_USER),
        SecretString::from(PAYSYS_PASSWORD),
    )])
    .unwrap()
}

fn basic_headers(value: &[u8]) -> Option<HeaderMap> {
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, HeaderValue::from_bytes(value).ok()?);
    Some(headers)
}

fn genuine_basic() -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{PAYSYS_USER}:{PAYSYS_PASSWORD}"))
    )
}

/// Whether text holds no run of 13–19 digits that passes the Luhn check.
fn no_card_number(text: &str) -> bool {
    redact::mask_card_numbers(text) == text
}

/// JSON documents with card-number-like digits in keys, strings and numbers.
fn json_values() -> impl Strategy<Value = Value> {
    let digits = prop_oneof![
        Just("4111111111111111".to_owned()),
        Just("5500005555555559".to_owned()),
        "[0-9]{12,20}",
        "\\PC{0,12}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<u64>().prop_map(|n| json!(n)),
        digits.clone().prop_map(Value::String),
        (digits.clone(), digits.clone()).prop_map(|(a, b)| Value::String(format!("{a} {b}"))),
    ];
    leaf.prop_recursive(4, 32, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop_oneof![
                        Just("pan".to_owned()),
                        Just("token".to_owned()),
                        Just("4111111111111111".to_owned()),
                        "[a-z0-9_]{1,20}",
                    ],
                    inner
                ),
                0..6
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    // ---- Plutu ---------------------------------------------------------------

    #[test]
    fn a_mutated_plutu_query_verifies_only_if_its_signed_content_is_unchanged(edits in edits()) {
        let genuine = genuine_plutu_query();
        let mutated = mutate(&genuine, &edits);
        let verifier = plutu_verifier();
        if verifier
            .verify_query(&mutated, &Account::default(), Timestamp::UNIX_EPOCH)
            .is_ok()
        {
            prop_assert_eq!(signed_content(&mutated), signed_content(genuine.as_bytes()));
        }
    }

    #[test]
    fn arbitrary_plutu_queries_never_panic_and_never_verify(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let result = plutu_verifier().verify_query(&bytes, &Account::default(), Timestamp::UNIX_EPOCH);
        prop_assert!(result.is_err());
    }

    #[test]
    fn any_pairs_signed_with_the_key_are_never_refused_as_unauthentic(
        pairs in prop::collection::vec(
            (prop_oneof![Just("gateway"), Just("approved"), Just("amount"), Just("currency"), Just("invoice_no"), Just("transaction_id"), Just("lang")], "\\PC{0,12}"),
            0..8,
        )
    ) {
        let mut pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
        pairs.insert(0, ("gateway", "mpgs"));
        let hashed = sign(&SecretString::from(PLUTU_KEY), &signed_message(Gateway::Mpgs, pairs.iter().copied()));
        let query = format!("{}&hashed={hashed}", form::php_build_query(pairs.iter().copied()));
        match plutu_verifier().verify_query(query.as_bytes(), &Account::default(), Timestamp::UNIX_EPOCH) {
            Ok(verified) => {
                let observation = verified.observation().unwrap();
                prop_assert!(observation.money.is_some_and(|m| m.minor() >= 0));
            }
            Err(error) => prop_assert!(matches!(error, VerifyError::Malformed(_)), "{:?} for {}", error, query),
        }
    }

    #[test]
    fn a_mutated_tlync_body_verifies_only_if_its_signed_content_is_unchanged(edits in edits()) {
        let genuine = genuine_tlync_body();
        let mutated = mutate(&genuine, &edits);
        if let Ok(verified) = plutu_verifier().verify_json(&mutated, &Account::default(), Timestamp::UNIX_EPOCH) {
            let observation = verified.observation().unwrap();
            prop_assert_eq!(observation.reference.as_str(), "INV-7");
            prop_assert_eq!(observation.money, Some(Money::from_minor(5000, Currency::Lyd).unwrap()));
            prop_assert_eq!(observation.status, ObservedStatus::Succeeded);
        }
    }

    // ---- PaySys --------------------------------------------------------------

    #[test]
    fn only_the_configured_basic_credentials_open_a_paysys_notification(edits in edits()) {
        let mutated = mutate(&genuine_basic(), &edits);
        let Some(headers) = basic_headers(&mutated) else { return Ok(()) };
        let result = paysys_auth().verify(&headers, PAYSYS_NOTIFICATION.as_bytes(), &Account::default(), Timestamp::UNIX_EPOCH);
        if result.is_ok() {
            let text = std::str::from_utf8(&mutated).unwrap().trim();
            let (_, encoded) = text.split_once(' ').unwrap();
            let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).unwrap();
            prop_assert_eq!(decoded, format!("{PAYSYS_USER}:{PAYSYS_PASSWORD}").into_bytes());
        }
    }

    #[test]
    fn a_mutated_paysys_notification_never_panics_and_keeps_money_rules(edits in edits()) {
        let headers = basic_headers(genuine_basic().as_bytes()).unwrap();
        let body = mutate(PAYSYS_NOTIFICATION, &edits);
        if let Ok(verified) = paysys_auth().verify(&headers, &body, &Account::default(), Timestamp::UNIX_EPOCH)
            && let Some(observation) = verified.observation()
        {
            prop_assert!(observation.money.is_some_and(|m| (0..=Money::MAX_MINOR).contains(&m.minor())));
        }
    }

    #[test]
    fn arbitrary_paysys_bodies_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let headers = basic_headers(genuine_basic().as_bytes()).unwrap();
        let _ = paysys_auth().verify(&headers, &bytes, &Account::default(), Timestamp::UNIX_EPOCH);
    }

    #[test]
    fn a_mutated_check_payment_answer_is_about_the_payment_asked_or_refused(edits in edits()) {
        let account = Account::default();
        let reference = Reference::parse("ORDER-42").unwrap();
        let bytes = mutate(PAYSYS_CHECK, &edits);
        let rules = paysys::Rules::default();
        let context = paysys::CheckContext { account: &account, reference: &reference, rules: &rules };
        if let Ok(paysys::CheckAnswer::Status { observation, .. }) = paysys::parse_check_payment(&bytes, context, Timestamp::UNIX_EPOCH) {
            prop_assert_eq!(&observation.reference, &reference);
        }
    }

    // ---- Portmanat -----------------------------------------------------------

    #[test]
    fn a_mutated_check_answer_is_about_the_payment_asked_or_refused(edits in edits()) {
        let account = Account::default();
        let reference = Reference::parse("ORDER-42").unwrap();
        let psp_rrn = ProviderTxnId::parse("1471851442-lfI7yG").unwrap();
        let context = portmanat::CheckContext { account: &account, reference: &reference, psp_rrn: &psp_rrn, psp_rrn_known: true };
        let bytes = mutate(PORTMANAT_CHECK, &edits);
        if let Ok(portmanat::CheckAnswer::Status(observation)) = portmanat::parse_check(&bytes, context, Timestamp::UNIX_EPOCH) {
            prop_assert_eq!(&observation.reference, &reference);
            prop_assert!(observation.money.is_some_and(|m| m.currency() == Currency::Azn));
        }
    }

    #[test]
    fn arbitrary_returns_never_panic_and_name_only_what_was_given(
        query in prop::collection::vec(any::<u8>(), 0..120),
        body in prop::option::of(prop::collection::vec(any::<u8>(), 0..120)),
    ) {
        if let Ok(hint) = portmanat::parse_return(&query, body.as_deref()) {
            let mut pairs = form::parse_pairs(&query).unwrap();
            if let Some(body) = &body {
                pairs.extend(form::parse_pairs(body).unwrap());
            }
            if let Some(rrn) = &hint.client_rrn {
                prop_assert!(pairs.iter().any(|(k, v)| k == "client_rrn" && v == rrn.as_str()));
            }
        }
    }

    // ---- The queue message ---------------------------------------------------

    #[test]
    fn a_mutated_queue_message_decodes_only_with_money_that_keeps_its_rules(edits in edits()) {
        let bytes = mutate(&inbound_message(), &edits);
        if let Ok(message) = serde_json::from_slice::<InboundCallback>(&bytes) {
            if let Payload::Observation(observation) = &message.payload {
                let refund = match observation.status {
                    ObservedStatus::Refunded { total } => total,
                    _ => None,
                };
                for money in observation.money.iter().chain(refund.iter()) {
                    prop_assert!((0..=Money::MAX_MINOR).contains(&money.minor()), "{:?}", money);
                }
            }
            let again: InboundCallback = serde_json::from_slice(&serde_json::to_vec(&message).unwrap()).unwrap();
            prop_assert_eq!(again.payload, message.payload);
        }
    }

    #[test]
    fn a_queue_message_with_any_amount_decodes_only_within_money_rules(minor in any::<i64>(), refund in any::<i64>()) {
        let text = inbound_message()
            .replace("\"minor\":1250", &format!("\"minor\":{minor}"))
            .replace("\"minor\":500", &format!("\"minor\":{refund}"));
        let allowed = |n: i64| (0..=Money::MAX_MINOR).contains(&n);
        prop_assert_eq!(
            serde_json::from_str::<InboundCallback>(&text).is_ok(),
            allowed(minor) && allowed(refund)
        );
    }

    // ---- Money, ids, times -----------------------------------------------------

    #[test]
    fn money_text_never_panics_and_what_parses_prints_back(text in "[-+0-9.eE ]{0,24}|\\PC{0,24}") {
        for currency in Currency::ALL {
            if let Ok(money) = Money::parse_decimal(&text, currency) {
                prop_assert_eq!(Money::parse_decimal(&money.to_decimal_string(), currency), Ok(money));
            }
            if let Ok(money) = Money::parse_minor(&text, currency) {
                prop_assert_eq!(Money::parse_minor(&money.minor().to_string(), currency), Ok(money));
                prop_assert!((0..=Money::MAX_MINOR).contains(&money.minor()));
            }
        }
    }

    #[test]
    fn ids_are_exactly_what_was_given(text in "\\PC{0,70}") {
        if let Ok(reference) = Reference::parse(&text) {
            prop_assert_eq!(reference.as_str(), text.as_str());
            let json = serde_json::to_string(&reference).unwrap();
            prop_assert_eq!(serde_json::from_str::<Reference>(&json).unwrap(), reference);
        }
        let quoted = Value::String(text.clone()).to_string();
        prop_assert_eq!(serde_json::from_str::<ProviderTxnId>(&quoted).is_ok(), ProviderTxnId::parse(&text).is_ok());
        prop_assert_eq!(serde_json::from_str::<Account>(&quoted).is_ok(), Account::parse(&text).is_ok());
    }

    #[test]
    fn provider_times_and_zones_never_panic(raw in "\\PC{0,30}", zone in "\\PC{0,30}|Asia/Baku|Etc/GMT[+-][0-9]{1,2}|[A-Za-z/_+-]{1,20}") {
        for format in ["%d.%m.%Y %H:%M:%S", "%Y-%m-%d %H:%M:%S%.f"] {
            if let Ok(time) = localtime::read(&raw, format, &zone) {
                prop_assert_eq!(&time.raw, &raw);
            }
        }
    }

    #[test]
    fn retry_after_never_panics(text in "\\PC{0,40}|[0-9]{1,12}", now in any::<i64>()) {
        let now = Timestamp::from_second(now.rem_euclid(253_402_300_799)).unwrap_or(Timestamp::UNIX_EPOCH);
        let _ = retry_after(&text, now);
    }

    // ---- Redaction -------------------------------------------------------------

    #[test]
    fn no_card_number_survives_json_redaction(mut value in json_values()) {
        redact::json(&mut value);
        let kept = value.to_string();
        prop_assert!(no_card_number(&kept), "{}", kept);
    }

    #[test]
    fn masking_is_idempotent_and_keeps_length(text in "\\PC{0,80}|[0-9 -]{0,40}") {
        let masked = redact::mask_card_numbers(&text);
        prop_assert_eq!(masked.len(), text.len());
        prop_assert!(no_card_number(&masked));
    }
}

// ---- Regressions: inputs the fuzzers found -----------------------------------

/// `fuzz/ redact`: a card number used as a JSON object key was kept in
/// clear; keys are masked like values now.
#[test]
fn a_card_number_as_a_json_key_is_masked() {
    let mut value = json!({"4111111111111111": "x", "nested": [{"5500005555555559": 1}]});
    redact::json(&mut value);
    let kept = value.to_string();
    assert!(no_card_number(&kept), "{kept}");
    assert!(kept.contains("411111******1111"), "{kept}");
}

/// `fuzz/ inbound_message`: `Money` was deserialised field by field, so a
/// queue message could carry a negative amount (or one past the ledger's
/// bound) that no constructor allows.
#[test]
fn money_from_json_keeps_the_constructors_rules() {
    for (minor, ok) in [
        (json!(1250), true),
        (json!(0), true),
        (json!(-1), false),
        (json!(Money::MAX_MINOR), true),
        (json!(Money::MAX_MINOR + 1), false),
    ] {
        let text = json!({"minor": minor, "currency": "USD"}).to_string();
        assert_eq!(serde_json::from_str::<Money>(&text).is_ok(), ok, "{text}");
    }
    let negative = inbound_message().replace("\"minor\":1250", "\"minor\":-1250");
    assert!(serde_json::from_str::<InboundCallback>(&negative).is_err());
    let negative_refund = inbound_message().replace("\"minor\":500", "\"minor\":-500");
    assert!(serde_json::from_str::<InboundCallback>(&negative_refund).is_err());
    // The genuine message still decodes.
    assert!(serde_json::from_str::<InboundCallback>(&inbound_message()).is_ok());
}
