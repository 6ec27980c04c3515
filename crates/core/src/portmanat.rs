//! Portmanat (Azerbaijan): the `/process` form hash, the customer's unsigned
//! return, and the `/check` status API.
//!
//! Portmanat's return carries no signature and no status, so it is only ever a
//! [`ReturnHint`]: it tells the worker to ask `/check` now. The payment's
//! result comes from `/check` alone.

use hmac::Mac;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::answer::{self, ParseError};
use crate::crypto;
use crate::form;
use crate::ids::{Account, Provider, ProviderTxnId, Reference, Source};
use crate::localtime;
use crate::money::{Currency, Money};
use crate::observation::{Observation, ProviderTime};
use crate::state::ObservedStatus;

/// Portmanat settles in manat only.
pub const CURRENCY: Currency = Currency::Azn;

/// The zone Portmanat's times are in when the answer does not say.
pub const DEFAULT_ZONE: &str = "Asia/Baku";

/// The `/process` hash: lowercase hex HMAC-SHA256 of `service_id . client_rrn .
/// amount`, keyed with the service's secret key, over the exact amount string
/// that is sent in the form.
pub fn process_hash(
    service_id: &str,
    client_rrn: &str,
    amount: &str,
    secret_key: &SecretString,
) -> String {
    let mut mac = crypto::hmac_sha256(secret_key.expose_secret().as_bytes());
    mac.update(service_id.as_bytes());
    mac.update(client_rrn.as_bytes());
    mac.update(amount.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

/// The form fields the shop posts (through the customer's browser) to
/// `/process`, in the order Portmanat's document lists them.
pub fn process_form(
    service_id: &str,
    client_rrn: &Reference,
    amount: Money,
    client_ip: &str,
    secret_key: &SecretString,
) -> Vec<(&'static str, String)> {
    let amount_text = amount.to_decimal_string();
    let hash = process_hash(service_id, client_rrn.as_str(), &amount_text, secret_key);
    vec![
        ("service_id", service_id.to_owned()),
        ("client_rrn", client_rrn.as_str().to_owned()),
        ("amount", amount_text),
        ("client_ip", client_ip.to_owned()),
        ("hash", hash),
    ]
}

/// The customer's browser coming back: which payment to check. Not evidence of
/// anything, and never a [`crate::verify::VerifiedCallback`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReturnHint {
    pub psp_rrn: Option<ProviderTxnId>,
    pub client_rrn: Option<Reference>,
}

/// Why a return could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HintError {
    #[error("malformed parameters: {0}")]
    Form(#[from] form::FormError),
    #[error("neither psp_rrn nor client_rrn is present")]
    Empty,
    #[error("{0} is given twice with different values")]
    Conflicting(&'static str),
    #[error("{field} is invalid: {problem}")]
    Invalid {
        field: &'static str,
        problem: String,
    },
}

/// Reads `psp_rrn` / `client_rrn` from the query string and, for a POST, the
/// form body (integrations do both). The same name given twice must agree.
pub fn parse_return(query: &[u8], form_body: Option<&[u8]>) -> Result<ReturnHint, HintError> {
    let mut pairs = form::parse_pairs(query)?;
    if let Some(body) = form_body {
        pairs.extend(form::parse_pairs(body)?);
    }
    let pick = |name: &'static str| -> Result<Option<String>, HintError> {
        let mut found: Option<&str> = None;
        for (key, value) in &pairs {
            if key == name && !value.is_empty() {
                match found {
                    Some(previous) if previous != value => {
                        return Err(HintError::Conflicting(name));
                    }
                    _ => found = Some(value),
                }
            }
        }
        Ok(found.map(str::to_owned))
    };
    let psp_rrn = pick("psp_rrn")?
        .map(|v| ProviderTxnId::parse(&v))
        .transpose()
        .map_err(|e| HintError::Invalid {
            field: "psp_rrn",
            problem: e.to_string(),
        })?;
    let client_rrn = pick("client_rrn")?
        .map(|v| Reference::parse(&v))
        .transpose()
        .map_err(|e| HintError::Invalid {
            field: "client_rrn",
            problem: e.to_string(),
        })?;
    if psp_rrn.is_none() && client_rrn.is_none() {
        return Err(HintError::Empty);
    }
    Ok(ReturnHint {
        psp_rrn,
        client_rrn,
    })
}

/// The `/check` request body: form-encoded `psp_rrn=…`.
pub fn check_request_body(psp_rrn: &ProviderTxnId) -> String {
    form::php_build_query([("psp_rrn", psp_rrn.as_str())])
}

/// The payment a `/check` was about, so the answer can be tied to it.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext<'a> {
    pub account: &'a Account,
    pub reference: &'a Reference,
    /// The `psp_rrn` asked about.
    pub psp_rrn: &'a ProviderTxnId,
    /// Whether `psp_rrn` is the ledger's own (registered by the shop or
    /// proven by an earlier answer) rather than taken from an unsigned
    /// return: then the answer must name it too.
    pub psp_rrn_known: bool,
}

/// What `/check` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckAnswer {
    /// `status: OK`: the payment's status (code 0, 1 or -1).
    Status(Observation),
    /// `status: BAD`, code 10: the request was invalid (`errors` as sent).
    ValidationError(Value),
    /// `status: BAD`, code 20: Portmanat does not know this `psp_rrn`.
    WrongRrn,
}

/// Parses a `/check` answer. `code` may be a number or a string; the date
/// object may be named `created_at` (live) or `date` (the document).
///
/// `/check` is unsigned and takes only a `psp_rrn`, so an `OK` answer is
/// evidence only about the payment it provably names: it must have a body
/// with the asked payment's `client_rrn` (and its `psp_rrn` when the ledger
/// knows one) and an `amount`. Anything less is an error (a failed check),
/// never an observation. A body whose `service` is in test mode gives an
/// observation marked [`Observation::test`].
pub fn parse_check(
    bytes: &[u8],
    context: CheckContext<'_>,
    observed_at: Timestamp,
) -> Result<CheckAnswer, ParseError> {
    let doc = answer::json(bytes)?;
    let status = doc
        .get("status")
        .and_then(Value::as_str)
        .ok_or(ParseError::Missing("status"))?;
    let code = doc.get("code").ok_or(ParseError::Missing("code"))?;
    let code =
        answer::integer(code).ok_or_else(|| ParseError::invalid("code", "not an integer"))?;
    match status {
        "BAD" => match code {
            10 => Ok(CheckAnswer::ValidationError(
                doc.get("errors").cloned().unwrap_or(Value::Null),
            )),
            20 => Ok(CheckAnswer::WrongRrn),
            other => Err(ParseError::invalid(
                "code",
                format!("BAD with unknown code {other}"),
            )),
        },
        "OK" => {
            let observed = match code {
                0 => ObservedStatus::Succeeded,
                1 => ObservedStatus::Pending,
                -1 => ObservedStatus::Failed,
                other => return Err(ParseError::invalid("code", format!("unknown code {other}"))),
            };
            let body = doc
                .get("body")
                .filter(|b| !b.is_null())
                .ok_or(ParseError::Missing("body"))?;
            let Evidence {
                money,
                provider_time,
                test,
            } = read_body(body, context)?;
            Ok(CheckAnswer::Status(Observation {
                provider: Provider::Portmanat,
                account: context.account.clone(),
                reference: context.reference.clone(),
                provider_txn_id: Some(context.psp_rrn.clone()),
                status: observed,
                money: Some(money),
                provider_status: code.to_string(),
                provider_time,
                observed_at,
                source: Source::Check,
                test,
                refund_part: None,
            }))
        }
        other => Err(ParseError::invalid(
            "status",
            format!("unknown status {:?}", answer::bounded(other)),
        )),
    }
}

/// What an `OK` answer's body proves about the payment asked.
struct Evidence {
    money: Money,
    provider_time: Option<ProviderTime>,
    test: bool,
}

fn read_body(body: &Value, context: CheckContext<'_>) -> Result<Evidence, ParseError> {
    if !body.is_object() {
        return Err(ParseError::invalid("body", "not an object"));
    }
    let named = |field: &'static str, expected: &str, required: bool| match body
        .get(field)
        .and_then(answer::text_or_number)
    {
        Some(found) if found != expected => Err(ParseError::OtherPayment {
            field,
            expected: answer::bounded(expected),
            found: answer::bounded(&found),
        }),
        Some(_) => Ok(()),
        None if required => Err(ParseError::Missing(match field {
            "psp_rrn" => "body.psp_rrn",
            _ => "body.client_rrn",
        })),
        None => Ok(()),
    };
    named("client_rrn", context.reference.as_str(), true)?;
    named("psp_rrn", context.psp_rrn.as_str(), context.psp_rrn_known)?;
    let amount = body
        .get("amount")
        .filter(|a| !a.is_null())
        .ok_or(ParseError::Missing("body.amount"))?;
    let text = answer::text_or_number(amount)
        .ok_or_else(|| ParseError::invalid("amount", "not a decimal"))?;
    let money =
        Money::parse_decimal(&text, CURRENCY).map_err(|e| ParseError::invalid("amount", e))?;
    let date = body
        .get("created_at")
        .or_else(|| body.get("date"))
        .filter(|d| !d.is_null());
    let provider_time = date.map(read_date);
    Ok(Evidence {
        money,
        provider_time,
        test: test_service(body)?,
    })
}

/// Whether the body's `service` object marks the merchant's test mode
/// (`"test": 1`, `"1"` or `true`). A value that is neither clearly on nor
/// clearly off makes the answer unreadable rather than guessed either way.
fn test_service(body: &Value) -> Result<bool, ParseError> {
    let Some(flag) = body.get("service").and_then(|s| s.get("test")) else {
        return Ok(false);
    };
    match flag {
        Value::Null | Value::Bool(false) => Ok(false),
        Value::Bool(true) => Ok(true),
        other => match answer::integer(other) {
            Some(0) => Ok(false),
            Some(1) => Ok(true),
            _ => Err(ParseError::invalid(
                "service.test",
                format!(
                    "neither on nor off: {}",
                    answer::bounded(&other.to_string())
                ),
            )),
        },
    }
}

/// A PHP `DateTime` as `json_encode` writes it: `{"date": "2017-05-19
/// 17:15:26.000000", "timezone_type": 3, "timezone": "Asia/Baku"}`. What
/// cannot be read with certainty (an unknown format, an ambiguous zone
/// abbreviation) is kept as sent with no UTC reading, never an error: the
/// answer's status and amount do not depend on it.
fn read_date(date: &Value) -> ProviderTime {
    let zone = date
        .get("timezone")
        .and_then(Value::as_str)
        .unwrap_or(DEFAULT_ZONE);
    let Some(raw) = date.get("date").and_then(Value::as_str) else {
        return localtime::unread(&date.to_string(), zone);
    };
    let timezone_type = date.get("timezone_type").and_then(answer::integer);
    let utc = localtime::php_zone(timezone_type, zone)
        .and_then(|tz| localtime::read_in(raw, DATE_FORMAT, &tz).ok());
    ProviderTime {
        utc,
        ..localtime::unread(raw, zone)
    }
}

/// The `date` text of Portmanat's date objects.
const DATE_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.f";

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(
        account: &'a Account,
        reference: &'a Reference,
        psp: &'a ProviderTxnId,
    ) -> CheckContext<'a> {
        CheckContext {
            account,
            reference,
            psp_rrn: psp,
            psp_rrn_known: true,
        }
    }

    #[test]
    fn the_process_hash_matches_the_worked_example() {
        let key = SecretString::from("example-secret");
        assert_eq!(
            process_hash("777", "ORDER-42", "19.90", &key),
            "2d468aba7aab970e32f46c7bc70c22e9adb36545db9312e158c0fa2f7d6e2135"
        );
        // The exact amount string matters: "19.9" is another message.
        assert_ne!(
            process_hash("777", "ORDER-42", "19.9", &key),
            process_hash("777", "ORDER-42", "19.90", &key)
        );
        assert_ne!(
            process_hash("777", "ORDER-42", "19.90", &SecretString::from("other")),
            process_hash("777", "ORDER-42", "19.90", &key)
        );
        let form = process_form(
            "777",
            &Reference::parse("ORDER-42").unwrap(),
            Money::parse_decimal("19.9", CURRENCY).unwrap(),
            "10.0.0.1",
            &key,
        );
        assert_eq!(form[2], ("amount", "19.90".to_owned()));
        assert_eq!(
            form[4].1,
            "2d468aba7aab970e32f46c7bc70c22e9adb36545db9312e158c0fa2f7d6e2135"
        );
    }

    #[test]
    fn the_return_hint_reads_query_or_form() {
        let hint = parse_return(
            b"psp_rrn=1471851442-lfI7yG-vTuaxI-x87xAS&client_rrn=1471855074",
            None,
        )
        .unwrap();
        assert_eq!(
            hint.psp_rrn.unwrap().as_str(),
            "1471851442-lfI7yG-vTuaxI-x87xAS"
        );
        assert_eq!(hint.client_rrn.unwrap().as_str(), "1471855074");
        let hint = parse_return(b"", Some(b"client_rrn=ORDER-42")).unwrap();
        assert_eq!(hint.client_rrn.unwrap().as_str(), "ORDER-42");
        assert_eq!(hint.psp_rrn, None);
        assert_eq!(parse_return(b"shop=1", None), Err(HintError::Empty));
        assert_eq!(
            parse_return(b"psp_rrn=a", Some(b"psp_rrn=b")),
            Err(HintError::Conflicting("psp_rrn"))
        );
        assert!(parse_return(b"psp_rrn=a", Some(b"psp_rrn=a")).is_ok());
        assert!(matches!(
            parse_return(b"client_rrn=%0Ax", None),
            Err(HintError::Invalid {
                field: "client_rrn",
                ..
            })
        ));
        assert!(matches!(
            parse_return(b"psp_rrn=%zz", None),
            Err(HintError::Form(_))
        ));
    }

    #[test]
    fn the_check_request_is_form_encoded() {
        assert_eq!(
            check_request_body(&ProviderTxnId::parse("1471851442-lfI7yG+x=").unwrap()),
            "psp_rrn=1471851442-lfI7yG%2Bx%3D"
        );
        // The provider's text, whatever its alphabet, is encoded exactly and
        // reads back the same.
        let odd = ProviderTxnId::parse("gV1P/wg+z6 H=:ü&x").unwrap();
        let body = check_request_body(&odd);
        assert_eq!(body, "psp_rrn=gV1P%2Fwg%2Bz6+H%3D%3A%C3%BC%26x");
        assert_eq!(
            form::parse_pairs(body.as_bytes()).unwrap(),
            [("psp_rrn".to_owned(), odd.as_str().to_owned())]
        );
    }

    const DOCUMENT_EXAMPLE: &str = r#"{
"status": "OK",
"code": "-1",
"description": "Request failed",
"body": {
"amount": "1.23",
"client_rrn": "1471855074",
"psp_rrn": "1471851442-lfI7yG-vTuaxI-x87xAS",
"bank_rrn": "gV1Pwgz6HmXJphEMVLEUUnp+sD8=",
"date": {
"date": "2016-08-22 11:37:23.000000",
"timezone_type": 3,
"timezone": "Asia/Baku"
}
}
}"#;

    #[test]
    fn the_documents_example_is_a_failed_payment_of_1_23_azn() {
        let (account, reference, psp) = (
            Account::default(),
            Reference::parse("1471855074").unwrap(),
            ProviderTxnId::parse("1471851442-lfI7yG-vTuaxI-x87xAS").unwrap(),
        );
        let now = Timestamp::from_second(1_700_000_000).unwrap();
        let CheckAnswer::Status(o) = parse_check(
            DOCUMENT_EXAMPLE.as_bytes(),
            ctx(&account, &reference, &psp),
            now,
        )
        .unwrap() else {
            panic!("expected a status")
        };
        assert_eq!(o.status, ObservedStatus::Failed);
        assert_eq!(
            o.money,
            Some(Money::from_minor(123, Currency::Azn).unwrap())
        );
        assert_eq!(o.provider_status, "-1");
        assert_eq!(o.source, Source::Check);
        assert_eq!(o.observed_at, now);
        let time = o.provider_time.unwrap();
        assert_eq!(time.utc.unwrap().to_string(), "2016-08-22T07:37:23Z");
        assert_eq!(time.raw, "2016-08-22 11:37:23.000000");
    }

    #[test]
    fn the_notes_live_example_with_created_at_and_a_numeric_code_succeeds() {
        let live = r#"{"status":"OK","code":0,"description":"Success","body":{"amount":"5.23","client_rrn":"ORDER-42","psp_rrn":"P-1","bank_rrn":"x","created_at":{"date":"2017-05-19 17:15:26.000000","timezone_type":3,"timezone":"Asia/Baku"}}}"#;
        let (account, reference, psp) = (
            Account::default(),
            Reference::parse("ORDER-42").unwrap(),
            ProviderTxnId::parse("P-1").unwrap(),
        );
        let CheckAnswer::Status(o) = parse_check(
            live.as_bytes(),
            ctx(&account, &reference, &psp),
            Timestamp::UNIX_EPOCH,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(o.status, ObservedStatus::Succeeded);
        assert_eq!(o.money.unwrap().minor(), 523);
        assert_eq!(
            o.provider_time.unwrap().utc.unwrap().to_string(),
            "2017-05-19T13:15:26Z"
        );
        let pending = r#"{"status":"OK","code":"1","description":"Pending","body":{"amount":"5.23","client_rrn":"ORDER-42","psp_rrn":"P-1"}}"#;
        let CheckAnswer::Status(o) = parse_check(
            pending.as_bytes(),
            ctx(&account, &reference, &psp),
            Timestamp::UNIX_EPOCH,
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(o.status, ObservedStatus::Pending);
        assert_eq!(o.money.unwrap().minor(), 523);
    }

    #[test]
    fn bad_answers_are_the_documented_refusals() {
        let (account, reference, psp) = (
            Account::default(),
            Reference::parse("R").unwrap(),
            ProviderTxnId::parse("P").unwrap(),
        );
        let c = ctx(&account, &reference, &psp);
        assert_eq!(
            parse_check(
                br#"{"status":"BAD","code":20,"description":"RRN is wrong"}"#,
                c,
                Timestamp::UNIX_EPOCH
            ),
            Ok(CheckAnswer::WrongRrn)
        );
        let validation = r#"{"status":"BAD","code":10,"description":"Validation error","errors":{"psp_rrn":["The psp rrn field is required."]}}"#;
        let Ok(CheckAnswer::ValidationError(errors)) =
            parse_check(validation.as_bytes(), c, Timestamp::UNIX_EPOCH)
        else {
            panic!()
        };
        assert_eq!(errors["psp_rrn"][0], "The psp rrn field is required.");
    }

    #[test]
    fn answers_that_cannot_be_trusted_are_errors() {
        let (account, reference, psp) = (
            Account::default(),
            Reference::parse("R").unwrap(),
            ProviderTxnId::parse("P").unwrap(),
        );
        let c = ctx(&account, &reference, &psp);
        let t = Timestamp::UNIX_EPOCH;
        assert!(matches!(
            parse_check(b"<html>502</html>", c, t),
            Err(ParseError::NotJson(_))
        ));
        assert_eq!(
            parse_check(br#"{"code":0}"#, c, t),
            Err(ParseError::Missing("status"))
        );
        assert!(matches!(
            parse_check(br#"{"status":"OK","code":7}"#, c, t),
            Err(ParseError::Invalid { field: "code", .. })
        ));
        assert!(matches!(
            parse_check(br#"{"status":"OK","code":"x"}"#, c, t),
            Err(ParseError::Invalid { field: "code", .. })
        ));
        assert!(matches!(
            parse_check(br#"{"status":"MAYBE","code":0}"#, c, t),
            Err(ParseError::Invalid {
                field: "status",
                ..
            })
        ));
        assert!(matches!(
            parse_check(
                br#"{"status":"OK","code":0,"body":{"client_rrn":"R","psp_rrn":"OTHER","amount":"1.00"}}"#,
                c,
                t
            ),
            Err(ParseError::OtherPayment {
                field: "psp_rrn",
                ..
            })
        ));
        assert!(matches!(
            parse_check(
                br#"{"status":"OK","code":0,"body":{"client_rrn":"R","psp_rrn":"P","amount":"1.234"}}"#,
                c,
                t
            ),
            Err(ParseError::Invalid {
                field: "amount",
                ..
            })
        ));
        assert!(matches!(
            parse_check(
                br#"{"status":"OK","code":0,"body":{"client_rrn":"R","psp_rrn":"P","amount":"-1.00"}}"#,
                c,
                t
            ),
            Err(ParseError::Invalid {
                field: "amount",
                ..
            })
        ));
    }

    /// The time of a `/check` answer whose date object is `date`.
    fn time_of(date: &str) -> Result<ProviderTime, ParseError> {
        let (account, reference, psp) = (
            Account::default(),
            Reference::parse("ORDER-42").unwrap(),
            ProviderTxnId::parse("P-1").unwrap(),
        );
        let answer = format!(
            r#"{{"status":"OK","code":0,"body":{{"amount":"5.23","client_rrn":"ORDER-42","psp_rrn":"P-1","created_at":{date}}}}}"#
        );
        match parse_check(
            answer.as_bytes(),
            ctx(&account, &reference, &psp),
            Timestamp::UNIX_EPOCH,
        )? {
            CheckAnswer::Status(o) => {
                assert_eq!(o.status, ObservedStatus::Succeeded);
                assert_eq!(o.money.unwrap().minor(), 523);
                Ok(o.provider_time.unwrap())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn dates_with_an_offset_or_an_abbreviation_are_read_where_certain() {
        let utc = |date: &str| time_of(date).unwrap().utc.map(|t| t.to_string());
        let baku = Some("2017-05-19T13:15:26Z".to_owned());
        assert_eq!(
            utc(r#"{"date":"2017-05-19 17:15:26.000000","timezone_type":1,"timezone":"+04:00"}"#),
            baku
        );
        assert_eq!(
            utc(r#"{"date":"2017-05-19 17:15:26.000000","timezone_type":"2","timezone":"AZT"}"#),
            baku
        );
        assert_eq!(
            utc(r#"{"date":"2017-05-19 17:15:26.000000","timezone_type":2,"timezone":"+04"}"#),
            baku
        );
        let kept =
            time_of(r#"{"date":"2017-05-19 17:15:26.000000","timezone_type":2,"timezone":"IST"}"#)
                .unwrap();
        assert_eq!(kept.utc, None, "IST is three different offsets");
        assert_eq!(
            (kept.raw.as_str(), kept.zone.as_str()),
            ("2017-05-19 17:15:26.000000", "IST")
        );
    }

    #[test]
    fn an_unreadable_date_keeps_the_answer_and_the_raw_text() {
        let kept =
            time_of(r#"{"date":"yesterday","timezone_type":3,"timezone":"Asia/Baku"}"#).unwrap();
        assert_eq!((kept.utc, kept.raw.as_str()), (None, "yesterday"));
        let kept = time_of(
            r#"{"date":"2017-05-19 17:15:26.000000","timezone_type":3,"timezone":"Mars/Olympus"}"#,
        )
        .unwrap();
        assert_eq!((kept.utc, kept.zone.as_str()), (None, "Mars/Olympus"));
        let kept = time_of(r#"{"timezone":"Asia/Baku"}"#).unwrap();
        assert_eq!(kept.utc, None);
        assert_eq!(kept.raw, r#"{"timezone":"Asia/Baku"}"#);
    }

    #[test]
    fn an_ok_answer_counts_only_for_the_payment_it_provably_names() {
        let (account, reference, psp) = (
            Account::default(),
            Reference::parse("ORDER-42").unwrap(),
            ProviderTxnId::parse("P-1").unwrap(),
        );
        let known = ctx(&account, &reference, &psp);
        let hinted = CheckContext {
            psp_rrn_known: false,
            ..known
        };
        let t = Timestamp::UNIX_EPOCH;
        let check = |c: CheckContext<'_>, answer: &str| parse_check(answer.as_bytes(), c, t);
        // What the issue saw: OK/0 with no body booked a victim's order.
        for (answer, missing) in [
            (
                r#"{"status":"OK","code":0,"description":"Success"}"#,
                "body",
            ),
            (r#"{"status":"OK","code":0,"body":null}"#, "body"),
            (
                r#"{"status":"OK","code":0,"body":{"amount":"1990.00","psp_rrn":"P-1"}}"#,
                "body.client_rrn",
            ),
            (
                r#"{"status":"OK","code":0,"body":{"client_rrn":"ORDER-42","psp_rrn":"P-1"}}"#,
                "body.amount",
            ),
            (
                r#"{"status":"OK","code":-1,"body":{"client_rrn":"ORDER-42","psp_rrn":"P-1","amount":null}}"#,
                "body.amount",
            ),
            (
                r#"{"status":"OK","code":0,"body":{"client_rrn":"ORDER-42","amount":"1990.00"}}"#,
                "body.psp_rrn",
            ),
        ] {
            assert_eq!(
                check(known, answer),
                Err(ParseError::Missing(missing)),
                "{answer}"
            );
        }
        assert!(matches!(
            check(
                known,
                r#"{"status":"OK","code":0,"body":{"client_rrn":"VICTIM-1","psp_rrn":"P-1","amount":"1990.00"}}"#
            ),
            Err(ParseError::OtherPayment {
                field: "client_rrn",
                ..
            })
        ));
        // A psp_rrn from an unsigned return need not be repeated, but the
        // reference and the amount must be there.
        let no_psp =
            r#"{"status":"OK","code":0,"body":{"client_rrn":"ORDER-42","amount":"1990.00"}}"#;
        let Ok(CheckAnswer::Status(o)) = check(hinted, no_psp) else {
            panic!()
        };
        assert_eq!(o.money.unwrap().minor(), 199_000);
        assert_eq!(o.provider_txn_id.unwrap(), psp);
        assert!(matches!(
            check(
                hinted,
                r#"{"status":"OK","code":0,"body":{"client_rrn":"ORDER-42","psp_rrn":"P-2","amount":"1.00"}}"#
            ),
            Err(ParseError::OtherPayment {
                field: "psp_rrn",
                ..
            })
        ));
        assert_eq!(
            check(hinted, r#"{"status":"OK","code":0}"#),
            Err(ParseError::Missing("body"))
        );
    }

    #[test]
    fn a_service_in_test_mode_marks_the_observation() {
        let (account, reference, psp) = (
            Account::default(),
            Reference::parse("ORDER-42").unwrap(),
            ProviderTxnId::parse("P-1").unwrap(),
        );
        let test_of = |service: &str| {
            let answer = format!(
                r#"{{"status":"OK","code":0,"body":{{"amount":"5.00","client_rrn":"ORDER-42","psp_rrn":"P-1","service":{service}}}}}"#
            );
            parse_check(
                answer.as_bytes(),
                ctx(&account, &reference, &psp),
                Timestamp::UNIX_EPOCH,
            )
            .map(|a| match a {
                CheckAnswer::Status(o) => o.test,
                other => panic!("{other:?}"),
            })
        };
        for on in [
            r#"{"id":7,"title":"Shop","test":1,"status":1}"#,
            r#"{"test":"1"}"#,
            r#"{"test":true}"#,
        ] {
            assert_eq!(test_of(on), Ok(true), "{on}");
        }
        for off in [
            r#"{"id":7,"test":0}"#,
            r#"{"test":"0"}"#,
            r#"{"test":false}"#,
            r#"{"test":null}"#,
            r#"{"id":7}"#,
            "null",
        ] {
            assert_eq!(test_of(off), Ok(false), "{off}");
        }
        assert!(matches!(
            test_of(r#"{"test":"yes"}"#),
            Err(ParseError::Invalid {
                field: "service.test",
                ..
            })
        ));
        assert!(matches!(
            test_of(r#"{"test":2}"#),
            Err(ParseError::Invalid { .. })
        ));
    }
}
