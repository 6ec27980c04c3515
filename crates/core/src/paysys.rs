//! PaySys (Uzbekistan): Basic-auth notifications (transaction status and
//! `partner.notify`), and the JSON-RPC `paysys.check_payment` request and
//! answer.

use http::HeaderMap;
use http::header::AUTHORIZATION;
use jiff::Timestamp;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use subtle::{Choice, ConstantTimeEq};

use base64::Engine as _;

use crate::answer::{self, ParseError};
use crate::crypto;
use crate::ids::{Account, Provider, ProviderTxnId, Reference, Source};
use crate::localtime;
use crate::money::{Currency, Money};
use crate::observation::{Observation, ProviderTime};
use crate::redact;
use crate::state::ObservedStatus;
use crate::verify::{CallbackKind, VerifiedCallback, VerifyError};

/// The zone PaySys notification dates are read in unless the account says
/// otherwise. PaySys does not say; the gateway is in Uzbekistan (an inference
/// recorded in NOTES.md).
pub const NOTIFICATION_ZONE: &str = "Asia/Tashkent";

/// What the `amount` of a refund notification (status 6) is. PaySys allows
/// any number of partial refunds and does not document which it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefundAmount {
    /// The total refunded so far: the observation says
    /// `Refunded { total: Some(amount) }`.
    #[default]
    Total,
    /// This refund alone: the observation says `Refunded { total: None }`
    /// and carries the amount as [`Observation::refund_part`]; the ledger
    /// adds it up.
    ThisRefund,
}

/// How one PaySys account's notifications and answers are read, where
/// PaySys's documents leave it open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The IANA zone of the account's `date` fields (default Asia/Tashkent).
    pub time_zone: String,
    /// What a refund notification's `amount` is (default the total).
    pub refund_amount: RefundAmount,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            time_zone: NOTIFICATION_ZONE.to_owned(),
            refund_amount: RefundAmount::Total,
        }
    }
}

impl Rules {
    /// Refuses rules that cannot be applied (a zone the bundled database
    /// does not know).
    pub fn validate(&self) -> Result<(), localtime::TimeError> {
        if localtime::known_zone(&self.time_zone) {
            Ok(())
        } else {
            Err(localtime::TimeError::UnknownZone(
                self.time_zone.chars().take(40).collect(),
            ))
        }
    }
}

const DATE_FORMAT: &str = "%d.%m.%Y %H:%M:%S";

/// The longest text field kept from a notification.
const MAX_TEXT: usize = 256;

/// Checks the `Authorization: Basic` header of PaySys notifications against
/// every configured credential pair, so a pair can be rotated by configuring
/// the new one beside the old.
///
/// Only SHA-256 digests of `user:password` are held, and every digest is
/// compared in constant time, whichever matches.
pub struct NotificationAuth {
    digests: Vec<[u8; 32]>,
    rules: Rules,
}

impl std::fmt::Debug for NotificationAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationAuth")
            .field("credential_pairs", &self.digests.len())
            .field("rules", &self.rules)
            .finish()
    }
}

/// A credential configuration that could never accept anything, or would
/// accept what it should not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    #[error("no PaySys notification credentials are configured")]
    None,
    #[error("a PaySys notification user or password is empty")]
    Empty,
    #[error("a PaySys notification user contains ':', which Basic auth cannot carry")]
    ColonInUser,
}

impl NotificationAuth {
    /// Accepts each `(VENDOR_METHOD, VENDOR_SECRET_KEY)` pair.
    pub fn new(
        pairs: &[(SecretString, SecretString)],
    ) -> Result<NotificationAuth, CredentialsError> {
        if pairs.is_empty() {
            return Err(CredentialsError::None);
        }
        let mut digests = Vec::with_capacity(pairs.len());
        for (user, password) in pairs {
            let (user, password) = (user.expose_secret(), password.expose_secret());
            if user.is_empty() || password.is_empty() {
                return Err(CredentialsError::Empty);
            }
            if user.contains(':') {
                return Err(CredentialsError::ColonInUser);
            }
            digests.push(crypto::sha256(format!("{user}:{password}").as_bytes()));
        }
        Ok(NotificationAuth {
            digests,
            rules: Rules::default(),
        })
    }

    /// Reads the account's notifications by `rules` instead of the defaults.
    pub fn with_rules(mut self, rules: Rules) -> NotificationAuth {
        self.rules = rules;
        self
    }

    /// The rules notifications are read by.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Authenticates a notification, then parses it.
    pub fn verify(
        &self,
        headers: &HeaderMap,
        body: &[u8],
        account: &Account,
        received_at: Timestamp,
    ) -> Result<VerifiedCallback, VerifyError> {
        self.check_credentials(headers)?;
        parse_notification(body, account, &self.rules, received_at).map(VerifiedCallback::new)
    }

    /// The Basic credentials alone: what the receiver checks before it
    /// reads a body.
    pub fn check_credentials(&self, headers: &HeaderMap) -> Result<(), VerifyError> {
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let value = values.next().ok_or(VerifyError::MissingCredentials)?;
        if values.next().is_some() {
            return Err(VerifyError::WrongCredentials);
        }
        let value = value.to_str().map_err(|_| VerifyError::WrongCredentials)?;
        let (scheme, encoded) = value
            .trim()
            .split_once(' ')
            .ok_or(VerifyError::WrongCredentials)?;
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(VerifyError::WrongCredentials);
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|_| VerifyError::WrongCredentials)?;
        let presented = crypto::sha256(&decoded);
        let matched = self.digests.iter().fold(Choice::from(0), |any, digest| {
            any | digest.ct_eq(&presented)
        });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(VerifyError::WrongCredentials)
        }
    }
}

/// PaySys `partner.notify`: the result of registering a card, for the shop.
/// The token is a secret: it is never logged and never written to the ledger.
#[derive(Debug, Clone)]
pub enum CardRegistration {
    Registered {
        card_id: String,
        token: SecretString,
        pan_masked: String,
    },
    Failed {
        card_id: String,
        code: String,
        message: String,
    },
}

fn parse_notification(
    body: &[u8],
    account: &Account,
    rules: &Rules,
    received_at: Timestamp,
) -> Result<CallbackKind, VerifyError> {
    let doc = crate::json::parse_callback(body)?;
    let object = doc
        .as_object()
        .ok_or_else(|| VerifyError::malformed("body is not a JSON object"))?;
    match object.get("method") {
        None => parse_status_notification(object, account, rules, received_at)
            .map(CallbackKind::Payment),
        Some(Value::String(method)) if method == "partner.notify" => {
            parse_partner_notify(object).map(CallbackKind::CardRegistration)
        }
        Some(other) => Err(VerifyError::malformed(format!(
            "unknown method {}",
            answer::bounded(&other.to_string())
        ))),
    }
}

fn field<'a>(object: &'a Map<String, Value>, name: &'static str) -> Result<&'a Value, VerifyError> {
    object
        .get(name)
        .filter(|v| !v.is_null())
        .ok_or_else(|| VerifyError::malformed(format!("{name} is missing")))
}

fn text_field(object: &Map<String, Value>, name: &'static str) -> Result<String, VerifyError> {
    let text = answer::text_or_number(field(object, name)?)
        .ok_or_else(|| VerifyError::malformed(format!("{name} is not text")))?;
    if text.len() > MAX_TEXT {
        return Err(VerifyError::malformed(format!("{name} is too long")));
    }
    Ok(text)
}

fn parse_status_notification(
    object: &Map<String, Value>,
    account: &Account,
    rules: &Rules,
    received_at: Timestamp,
) -> Result<Observation, VerifyError> {
    let bad = |name: &str, problem: &dyn std::fmt::Display| {
        VerifyError::malformed(format!("{name}: {problem}"))
    };
    let txn = ProviderTxnId::parse(&text_field(object, "id")?).map_err(|e| bad("id", &e))?;
    let reference =
        Reference::parse(&text_field(object, "account")?).map_err(|e| bad("account", &e))?;
    let currency = currency(object)?;
    let amount = Money::from_minor_json(field(object, "amount")?, currency)
        .map_err(|e| bad("amount", &e))?;
    let status_code = answer::integer(field(object, "status")?)
        .ok_or_else(|| VerifyError::malformed("status is not an integer"))?;
    let observed = status_from_code(status_code, Some(amount))
        .ok_or_else(|| VerifyError::malformed(format!("unknown status {status_code}")))?;
    let provider_time = provider_time(object, rules);
    // A refund's amount is the refund, not the payment: the total so far or
    // this refund alone, as the account says.
    let (observed, money, refund_part) = match observed {
        ObservedStatus::Refunded { .. } => match rules.refund_amount {
            RefundAmount::Total => (
                ObservedStatus::Refunded {
                    total: Some(amount),
                },
                None,
                None,
            ),
            RefundAmount::ThisRefund => {
                (ObservedStatus::Refunded { total: None }, None, Some(amount))
            }
        },
        other => (other, Some(amount), None),
    };
    Ok(Observation {
        provider: Provider::Paysys,
        account: account.clone(),
        reference,
        provider_txn_id: Some(txn),
        status: observed,
        money,
        provider_status: status_code.to_string(),
        provider_time,
        observed_at: received_at,
        source: Source::Callback,
        test: false,
        refund_part,
    })
}

/// `date` in the account's zone. A date in another format (or not text at
/// all) is kept as sent with no UTC reading: it never rejects the money it
/// came with.
fn provider_time(object: &Map<String, Value>, rules: &Rules) -> Option<ProviderTime> {
    let date = object.get("date").filter(|d| !d.is_null())?;
    Some(match date {
        Value::String(raw) => localtime::read_or_keep(raw, DATE_FORMAT, &rules.time_zone),
        other => localtime::unread(&other.to_string(), &rules.time_zone),
    })
}

/// Notifications send `currency` as ISO numeric (`840`) or a code, and may add
/// `currency_name` (`usd`); when both are there they must agree.
fn currency(object: &Map<String, Value>) -> Result<Currency, VerifyError> {
    let read = |name: &'static str| -> Result<Option<Currency>, VerifyError> {
        match object.get(name).filter(|v| !v.is_null()) {
            None => Ok(None),
            Some(value) => {
                let text = answer::text_or_number(value)
                    .ok_or_else(|| VerifyError::malformed(format!("{name} is not text")))?;
                Currency::from_paysys(&text)
                    .map(Some)
                    .map_err(|e| VerifyError::malformed(format!("{name}: {e}")))
            }
        }
    };
    match (read("currency")?, read("currency_name")?) {
        (Some(a), Some(b)) if a != b => Err(VerifyError::malformed(format!(
            "currency {a} and currency_name {b} disagree"
        ))),
        (Some(c), _) | (None, Some(c)) => Ok(c),
        (None, None) => Err(VerifyError::malformed("currency is missing")),
    }
}

/// PaySys status codes: 6 refund, 3 canceled, 2 completed, 1 awaiting,
/// 0 created, any negative an error. A refund's amount, where one is given, is
/// taken as the total refunded (notifications then apply the account's
/// [`RefundAmount`]); `check_payment` gives none.
fn status_from_code(code: i64, amount: Option<Money>) -> Option<ObservedStatus> {
    match code {
        6 => Some(ObservedStatus::Refunded { total: amount }),
        3 => Some(ObservedStatus::Canceled),
        2 => Some(ObservedStatus::Succeeded),
        0 | 1 => Some(ObservedStatus::Pending),
        c if c < 0 => Some(ObservedStatus::Failed),
        _ => None,
    }
}

fn parse_partner_notify(object: &Map<String, Value>) -> Result<CardRegistration, VerifyError> {
    let params = field(object, "params")?
        .as_object()
        .ok_or_else(|| VerifyError::malformed("params is not an object"))?;
    let card_id = text_field(params, "id")?;
    match text_field(params, "stat")?.as_str() {
        "SUCCESS" => {
            let token = text_field(params, "token")?;
            let pan = text_field(params, "pan")?;
            // A full card number must never be kept, whatever PaySys sends.
            let pan_masked = if redact::looks_like_card_number(&pan) {
                redact::mask_pan(&pan)
            } else {
                redact::mask_card_numbers(&pan)
            };
            Ok(CardRegistration::Registered {
                card_id,
                token: SecretString::from(token),
                pan_masked,
            })
        }
        "ERROR" => Ok(CardRegistration::Failed {
            card_id,
            code: text_field(params, "code").unwrap_or_default(),
            message: text_field(params, "message").unwrap_or_default(),
        }),
        other => Err(VerifyError::malformed(format!(
            "unknown stat {}",
            answer::bounded(other)
        ))),
    }
}

/// The `Auth` header of a request to the gateway:
/// `{service_id}-{sha1_hex(secret_key + timestamp_ms)}-{timestamp_ms}`.
pub fn auth_header(service_id: &str, secret_key: &SecretString, now: Timestamp) -> String {
    let millis = now.as_millisecond();
    let digest = crypto::sha1_hex(format!("{}{millis}", secret_key.expose_secret()).as_bytes());
    format!("{service_id}-{digest}-{millis}")
}

/// The JSON-RPC body of `paysys.check_payment` (named params only).
pub fn check_payment_body(partner_trans_id: &Reference, request_id: &str) -> Vec<u8> {
    let body = serde_json::json!({
        "method": "paysys.check_payment",
        "params": { "partner_trans_id": partner_trans_id.as_str() },
        "id": request_id,
    });
    body.to_string().into_bytes()
}

/// The payment a check was about.
#[derive(Debug, Clone, Copy)]
pub struct CheckContext<'a> {
    pub account: &'a Account,
    pub reference: &'a Reference,
    /// The account's rules (its time zone).
    pub rules: &'a Rules,
}

/// What `paysys.check_payment` answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckAnswer {
    /// The payment's status (`result.status`), with `err_obj` as the detail.
    Status {
        observation: Box<Observation>,
        error: Option<(i64, String)>,
    },
    /// A JSON-RPC error object instead of a result.
    RpcError { code: i64, message: String },
}

/// Parses a `paysys.check_payment` answer; `status` may be a string or a
/// number.
pub fn parse_check_payment(
    bytes: &[u8],
    context: CheckContext<'_>,
    observed_at: Timestamp,
) -> Result<CheckAnswer, ParseError> {
    let doc = answer::json(bytes)?;
    if let Some(error) = doc.get("error").filter(|e| !e.is_null()) {
        let code = error
            .get("code")
            .and_then(answer::integer)
            .ok_or_else(|| ParseError::invalid("error.code", "not an integer"))?;
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map(answer::bounded)
            .unwrap_or_default();
        return Ok(CheckAnswer::RpcError { code, message });
    }
    let result = doc
        .get("result")
        .filter(|r| r.is_object())
        .ok_or(ParseError::Missing("result"))?;
    if let Some(found) = result
        .get("partner_trans_id")
        .and_then(answer::text_or_number)
        && found != context.reference.as_str()
    {
        return Err(ParseError::OtherPayment {
            field: "partner_trans_id",
            expected: context.reference.as_str().to_owned(),
            found: answer::bounded(&found),
        });
    }
    let status = result
        .get("status")
        .ok_or(ParseError::Missing("result.status"))?;
    let code = answer::integer(status)
        .ok_or_else(|| ParseError::invalid("result.status", "not an integer"))?;
    let observed = status_from_code(code, None)
        .ok_or_else(|| ParseError::invalid("result.status", format!("unknown status {code}")))?;
    let txn = match result
        .get("transaction_id")
        .and_then(answer::text_or_number)
    {
        Some(text) => Some(
            ProviderTxnId::parse(&text)
                .map_err(|e| ParseError::invalid("result.transaction_id", e))?,
        ),
        None => None,
    };
    let error = result.get("err_obj").filter(|e| !e.is_null()).map(|e| {
        (
            e.get("code").and_then(answer::integer).unwrap_or_default(),
            e.get("message")
                .and_then(Value::as_str)
                .map(answer::bounded)
                .unwrap_or_default(),
        )
    });
    Ok(CheckAnswer::Status {
        observation: Box::new(Observation {
            provider: Provider::Paysys,
            account: context.account.clone(),
            reference: context.reference.clone(),
            provider_txn_id: txn,
            status: observed,
            money: None,
            provider_status: code.to_string(),
            // The document's answer has no date; one that does is read like
            // a notification's, in the account's zone.
            provider_time: result
                .as_object()
                .and_then(|r| provider_time(r, context.rules)),
            observed_at,
            source: Source::Check,
            test: false,
            refund_part: None,
        }),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn auth() -> NotificationAuth {
        NotificationAuth::new(&[
            (
                SecretString::from("vendor-method"),
                SecretString::from("vendor-secret"),
            ),
            (
                SecretString::from("vendor-method"),
                SecretString::from("rotated-secret"),
            ),
        ])
        .unwrap()
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {token}")).unwrap(),
        );
        headers
    }

    const DOCUMENT_NOTIFICATION: &str = r#"{
"id": "44114543",
"account": "931111111",
"amount": 1000,
"card_masked": "222222******2222",
"currency": 840,
"currency_name": "usd",
"status": -1,
"date": "24.06.2022 07:49:16"
}"#;

    #[test]
    fn the_documents_notification_is_a_failed_ten_dollar_payment() {
        let now = Timestamp::from_second(1_656_000_000).unwrap();
        let verified = auth()
            .verify(
                &basic("vendor-method", "vendor-secret"),
                DOCUMENT_NOTIFICATION.as_bytes(),
                &Account::default(),
                now,
            )
            .unwrap();
        let o = verified.observation().unwrap();
        assert_eq!(o.provider, Provider::Paysys);
        assert_eq!(o.reference.as_str(), "931111111");
        assert_eq!(o.provider_txn_id.as_ref().unwrap().as_str(), "44114543");
        assert_eq!(o.status, ObservedStatus::Failed);
        assert_eq!(
            o.money,
            Some(Money::from_minor(1000, Currency::Usd).unwrap())
        );
        assert_eq!(o.provider_status, "-1");
        assert_eq!(o.source, Source::Callback);
        assert_eq!(o.observed_at, now);
        let time = o.provider_time.as_ref().unwrap();
        assert_eq!(time.utc.unwrap().to_string(), "2022-06-24T02:49:16Z");
        assert_eq!(time.zone, "Asia/Tashkent");
    }

    #[test]
    fn a_rotated_secret_is_accepted_beside_the_old_one() {
        let body = DOCUMENT_NOTIFICATION.as_bytes();
        assert!(
            auth()
                .verify(
                    &basic("vendor-method", "rotated-secret"),
                    body,
                    &Account::default(),
                    Timestamp::UNIX_EPOCH
                )
                .is_ok()
        );
    }

    #[test]
    fn credentials_are_checked_before_anything_is_read() {
        let body = DOCUMENT_NOTIFICATION.as_bytes();
        let t = Timestamp::UNIX_EPOCH;
        let a = Account::default();
        let verify = |headers: &HeaderMap, body: &[u8]| {
            auth().verify(headers, body, &a, t).map(|_| ()).unwrap_err()
        };
        assert_eq!(
            verify(&HeaderMap::new(), body),
            VerifyError::MissingCredentials
        );
        assert_eq!(
            verify(&basic("vendor-method", "wrong"), body),
            VerifyError::WrongCredentials
        );
        assert_eq!(
            verify(&basic("vendor-method", "vendor-secre"), body),
            VerifyError::WrongCredentials,
            "a prefix is not enough"
        );
        assert_eq!(
            verify(&basic("other", "vendor-secret"), body),
            VerifyError::WrongCredentials
        );
        assert_eq!(
            verify(&basic("vendor-method", "vendor-secret"), b"not json"),
            VerifyError::Malformed("body is not JSON: expected ident at line 1 column 2".into())
        );
        let mut bearer = HeaderMap::new();
        bearer.insert(AUTHORIZATION, HeaderValue::from_static("Bearer abc"));
        assert_eq!(verify(&bearer, body), VerifyError::WrongCredentials);
        let mut garbage = HeaderMap::new();
        garbage.insert(AUTHORIZATION, HeaderValue::from_static("Basic !!!"));
        assert_eq!(verify(&garbage, body), VerifyError::WrongCredentials);
        let mut twice = basic("vendor-method", "vendor-secret");
        twice.append(AUTHORIZATION, HeaderValue::from_static("Basic eA=="));
        assert_eq!(verify(&twice, body), VerifyError::WrongCredentials);
        // A wrong body with wrong credentials says nothing about the body.
        assert_eq!(
            verify(&basic("x", "y"), b"not json"),
            VerifyError::WrongCredentials
        );
    }

    #[test]
    fn configurations_that_could_not_work_are_refused() {
        assert_eq!(
            NotificationAuth::new(&[]).unwrap_err(),
            CredentialsError::None
        );
        assert_eq!(
            NotificationAuth::new(&[(SecretString::from(""), SecretString::from("x"))])
                .unwrap_err(),
            CredentialsError::Empty
        );
        assert_eq!(
            NotificationAuth::new(&[(SecretString::from("a:b"), SecretString::from("x"))])
                .unwrap_err(),
            CredentialsError::ColonInUser
        );
        assert!(!format!("{:?}", auth()).contains("secret"));
    }

    fn notification(patch: Value) -> Result<Observation, VerifyError> {
        let mut doc: Value = serde_json::from_str(DOCUMENT_NOTIFICATION).unwrap();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                doc.as_object_mut().unwrap().remove(k);
            } else {
                doc[k] = v.clone();
            }
        }
        let verified = auth().verify(
            &basic("vendor-method", "vendor-secret"),
            doc.to_string().as_bytes(),
            &Account::default(),
            Timestamp::UNIX_EPOCH,
        )?;
        Ok(verified.observation().unwrap().clone())
    }

    #[test]
    fn every_status_code_maps_and_strings_work_like_numbers() {
        let usd = |m| Money::from_minor(m, Currency::Usd).unwrap();
        assert_eq!(
            notification(serde_json::json!({"status": 2}))
                .unwrap()
                .status,
            ObservedStatus::Succeeded
        );
        assert_eq!(
            notification(serde_json::json!({"status": "2", "amount": "1000"}))
                .unwrap()
                .money,
            Some(usd(1000))
        );
        assert_eq!(
            notification(serde_json::json!({"status": 3}))
                .unwrap()
                .status,
            ObservedStatus::Canceled
        );
        assert_eq!(
            notification(serde_json::json!({"status": 1}))
                .unwrap()
                .status,
            ObservedStatus::Pending
        );
        assert_eq!(
            notification(serde_json::json!({"status": 0}))
                .unwrap()
                .status,
            ObservedStatus::Pending
        );
        assert_eq!(
            notification(serde_json::json!({"status": -7}))
                .unwrap()
                .status,
            ObservedStatus::Failed
        );
        let refund = notification(serde_json::json!({"status": 6, "amount": 400})).unwrap();
        assert_eq!(
            refund.status,
            ObservedStatus::Refunded {
                total: Some(usd(400))
            }
        );
        assert_eq!(
            refund.money, None,
            "a refund's amount is the refund, not the payment"
        );
        assert!(matches!(
            notification(serde_json::json!({"status": 4})),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn currencies_arrive_numeric_or_by_name_and_must_agree() {
        assert_eq!(
            notification(serde_json::json!({"currency": "uzs", "currency_name": null}))
                .unwrap()
                .money
                .unwrap()
                .currency(),
            Currency::Uzs
        );
        assert_eq!(
            notification(serde_json::json!({"currency": "860", "currency_name": "uzs"}))
                .unwrap()
                .money
                .unwrap()
                .currency(),
            Currency::Uzs
        );
        assert_eq!(
            notification(serde_json::json!({"currency": null, "currency_name": "rub"}))
                .unwrap()
                .money
                .unwrap()
                .currency(),
            Currency::Rub
        );
        for bad in [
            serde_json::json!({"currency": 978}),
            serde_json::json!({"currency": 999, "currency_name": null}),
            serde_json::json!({"currency": null, "currency_name": null}),
            serde_json::json!({"amount": -1000}),
            serde_json::json!({"amount": 10.5}),
            serde_json::json!({"amount": "1e3"}),
            serde_json::json!({"amount": 99999999999999999999u128.to_string()}),
            serde_json::json!({"account": "a\nb"}),
            serde_json::json!({"id": "1\u{202E}2"}),
            serde_json::json!({"account": null}),
            serde_json::json!({"id": {"nested": true}}),
            serde_json::json!({"status": "two"}),
        ] {
            assert!(
                matches!(notification(bad.clone()), Err(VerifyError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_key_given_twice_is_refused_naming_the_key() {
        let verify = |body: &str| {
            auth()
                .verify(
                    &basic("vendor-method", "vendor-secret"),
                    body.as_bytes(),
                    &Account::default(),
                    Timestamp::UNIX_EPOCH,
                )
                .map(|_| ())
        };
        let twice = DOCUMENT_NOTIFICATION.replacen("\"status\"", "\"status\": 2, \"status\"", 1);
        assert_eq!(
            verify(&twice),
            Err(VerifyError::Malformed(
                "status is given more than once".into()
            ))
        );
        let nested = r#"{"method":"partner.notify","params":{"stat":"SUCCESS","id":"d5","token":"a","token":"b","pan":"222222******2222"}}"#;
        assert_eq!(
            verify(nested),
            Err(VerifyError::Malformed(
                "params.token is given more than once".into()
            ))
        );
    }

    #[test]
    fn a_date_in_another_format_keeps_the_notification_and_its_raw_text() {
        for (date, raw) in [
            (
                serde_json::json!("2022-06-24 07:49:16"),
                "2022-06-24 07:49:16",
            ),
            (
                serde_json::json!("31.02.2022 00:00:00"),
                "31.02.2022 00:00:00",
            ),
            (serde_json::json!(1656407767), "1656407767"),
        ] {
            let o = notification(serde_json::json!({ "date": date })).unwrap();
            assert_eq!(o.status, ObservedStatus::Failed);
            assert_eq!(o.money.unwrap().minor(), 1000);
            let time = o.provider_time.unwrap();
            assert_eq!((time.utc, time.raw.as_str()), (None, raw));
            assert_eq!(time.zone, NOTIFICATION_ZONE);
        }
    }

    #[test]
    fn the_accounts_time_zone_reads_the_date() {
        let rules = Rules {
            time_zone: "Asia/Baku".into(),
            ..Rules::default()
        };
        assert_eq!(rules.validate(), Ok(()));
        let verified = auth()
            .with_rules(rules)
            .verify(
                &basic("vendor-method", "vendor-secret"),
                DOCUMENT_NOTIFICATION.as_bytes(),
                &Account::default(),
                Timestamp::UNIX_EPOCH,
            )
            .unwrap();
        let time = verified
            .observation()
            .unwrap()
            .provider_time
            .clone()
            .unwrap();
        assert_eq!(time.utc.unwrap().to_string(), "2022-06-24T03:49:16Z");
        assert_eq!(time.zone, "Asia/Baku");
        assert!(
            Rules {
                time_zone: "Mars/Olympus".into(),
                ..Rules::default()
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn partner_notify_carries_the_card_registration_and_keeps_the_token_secret() {
        let success = r#"{"id":"34a83544-81f8-4804-b6b7-07044a1600ca","method":"partner.notify","params":{"stat":"SUCCESS","id":"d553921350e68a6af96d63a544720f9c","token":"0b6227c70d365255176cb6c3b9b6cccfd3aa17b0","pan":"222222******2222"}}"#;
        let verified = auth()
            .verify(
                &basic("vendor-method", "vendor-secret"),
                success.as_bytes(),
                &Account::default(),
                Timestamp::UNIX_EPOCH,
            )
            .unwrap();
        let CallbackKind::CardRegistration(CardRegistration::Registered {
            card_id,
            token,
            pan_masked,
        }) = verified.kind()
        else {
            panic!()
        };
        assert_eq!(card_id, "d553921350e68a6af96d63a544720f9c");
        assert_eq!(
            token.expose_secret(),
            "0b6227c70d365255176cb6c3b9b6cccfd3aa17b0"
        );
        assert_eq!(pan_masked, "222222******2222");
        assert!(
            !format!("{verified:?}").contains("0b6227c7"),
            "Debug must not show the token"
        );

        let full_pan = success.replace("222222******2222", "4111111111111111");
        let verified = auth()
            .verify(
                &basic("vendor-method", "vendor-secret"),
                full_pan.as_bytes(),
                &Account::default(),
                Timestamp::UNIX_EPOCH,
            )
            .unwrap();
        let CallbackKind::CardRegistration(CardRegistration::Registered { pan_masked, .. }) =
            verified.kind()
        else {
            panic!()
        };
        assert_eq!(pan_masked, "411111******1111");

        let error = r#"{"id":"34a83544-81f8-4804-b6b7-07044a1600ca","method":"partner.notify","params":{"stat":"ERROR","id":"d553921350e68a6af96d63a544720f9c","code":"-34000","message":"Описание ошибки"}}"#;
        let verified = auth()
            .verify(
                &basic("vendor-method", "vendor-secret"),
                error.as_bytes(),
                &Account::default(),
                Timestamp::UNIX_EPOCH,
            )
            .unwrap();
        let CallbackKind::CardRegistration(CardRegistration::Failed { code, message, .. }) =
            verified.kind()
        else {
            panic!()
        };
        assert_eq!(
            (code.as_str(), message.as_str()),
            ("-34000", "Описание ошибки")
        );

        let unknown = r#"{"method":"partner.other","params":{}}"#;
        assert!(matches!(
            auth().verify(
                &basic("vendor-method", "vendor-secret"),
                unknown.as_bytes(),
                &Account::default(),
                Timestamp::UNIX_EPOCH
            ),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn the_gateway_auth_header_is_sha1_of_secret_and_milliseconds() {
        let now = Timestamp::from_millisecond(1_656_407_767_123).unwrap();
        let header = auth_header("100381", &SecretString::from("s3cret"), now);
        // sha1("s3cret1656407767123"), computed independently with sha1sum.
        assert_eq!(
            header,
            "100381-fad234ae82044198e3039745b42cb764af50ed8e-1656407767123"
        );
    }

    #[test]
    fn an_odd_reference_is_sent_back_as_json_exactly() {
        let reference = Reference::parse("PS/2 +=:\"Зк\"").unwrap();
        let body = check_payment_body(&reference, "r1");
        let doc: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(doc["params"]["partner_trans_id"], reference.as_str());
    }

    #[test]
    fn a_refunds_amount_means_what_the_account_says() {
        let usd = |m| Money::from_minor(m, Currency::Usd).unwrap();
        let body = DOCUMENT_NOTIFICATION
            .replace("\"status\": -1", "\"status\": 6")
            .replace("\"amount\": 1000", "\"amount\": 300");
        let read = |refund_amount| {
            let verified = auth()
                .with_rules(Rules {
                    refund_amount,
                    ..Rules::default()
                })
                .verify(
                    &basic("vendor-method", "vendor-secret"),
                    body.as_bytes(),
                    &Account::default(),
                    Timestamp::UNIX_EPOCH,
                )
                .unwrap();
            verified.observation().unwrap().clone()
        };
        let total = read(RefundAmount::Total);
        assert_eq!(
            total.status,
            ObservedStatus::Refunded {
                total: Some(usd(300))
            }
        );
        assert_eq!((total.money, total.refund_part), (None, None));
        let part = read(RefundAmount::ThisRefund);
        assert_eq!(part.status, ObservedStatus::Refunded { total: None });
        assert_eq!((part.money, part.refund_part), (None, Some(usd(300))));
        assert_ne!(total.dedupe_key(), part.dedupe_key());
        assert_eq!(RefundAmount::default(), RefundAmount::Total);
        assert_eq!(
            serde_json::from_str::<RefundAmount>(r#""this_refund""#).unwrap(),
            RefundAmount::ThisRefund
        );
    }

    #[test]
    fn the_check_payment_request_is_json_rpc_with_named_params() {
        let body = check_payment_body(&Reference::parse("167075").unwrap(), "f23eb612");
        let doc: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            doc,
            serde_json::json!({"method": "paysys.check_payment", "params": {"partner_trans_id": "167075"}, "id": "f23eb612"})
        );
    }

    const CHECK_EXAMPLE: &str = r#"{
"id": "f23eb612-9ea6-4ee2-97c3-33f6b5f38c17",
"error": null,
"result": {
"transaction_id": "1485295",
"partner_trans_id": "167075",
"status": "2",
"data": {
"RESULT": "OK",
"RESULT_CODE": "000",
"3DSECURE": "AUTHENTICATED",
"RRN": "207011889463",
"APPROVAL_CODE": "155427",
"CARD_NUMBER": "427831******5400"
},
"err_obj": null
},
"mx_id": "8e23e530e81f6b777efa19f4c7e1e007"
}"#;

    #[test]
    fn the_documents_check_answer_is_a_completed_payment() {
        let (account, reference) = (Account::default(), Reference::parse("167075").unwrap());
        let rules = Rules::default();
        let ctx = CheckContext {
            account: &account,
            reference: &reference,
            rules: &rules,
        };
        let CheckAnswer::Status { observation, error } =
            parse_check_payment(CHECK_EXAMPLE.as_bytes(), ctx, Timestamp::UNIX_EPOCH).unwrap()
        else {
            panic!()
        };
        assert_eq!(observation.status, ObservedStatus::Succeeded);
        assert_eq!(observation.provider_txn_id.unwrap().as_str(), "1485295");
        assert_eq!(observation.source, Source::Check);
        assert_eq!(observation.money, None);
        assert_eq!(error, None);
    }

    #[test]
    fn check_answers_with_errors_numbers_and_other_payments() {
        let (account, reference) = (Account::default(), Reference::parse("167075").unwrap());
        let rules = Rules::default();
        let ctx = CheckContext {
            account: &account,
            reference: &reference,
            rules: &rules,
        };
        let t = Timestamp::UNIX_EPOCH;
        let failed = r#"{"error":null,"result":{"transaction_id":"1","partner_trans_id":"167075","status":-1,"err_obj":{"code":-32313,"message":"Transaction status is canceled"}}}"#;
        let CheckAnswer::Status { observation, error } =
            parse_check_payment(failed.as_bytes(), ctx, t).unwrap()
        else {
            panic!()
        };
        assert_eq!(observation.status, ObservedStatus::Failed);
        assert_eq!(
            error,
            Some((-32313, "Transaction status is canceled".to_owned()))
        );
        let refunded = r#"{"error":null,"result":{"partner_trans_id":"167075","status":"6"}}"#;
        let CheckAnswer::Status { observation, .. } =
            parse_check_payment(refunded.as_bytes(), ctx, t).unwrap()
        else {
            panic!()
        };
        assert_eq!(observation.status, ObservedStatus::Refunded { total: None });
        let rpc = r#"{"error":{"code":-32303,"message":"Invalid phone format"},"result":null}"#;
        assert_eq!(
            parse_check_payment(rpc.as_bytes(), ctx, t),
            Ok(CheckAnswer::RpcError {
                code: -32303,
                message: "Invalid phone format".into()
            })
        );
        let other = r#"{"error":null,"result":{"partner_trans_id":"999","status":"2"}}"#;
        assert!(matches!(
            parse_check_payment(other.as_bytes(), ctx, t),
            Err(ParseError::OtherPayment { .. })
        ));
        assert!(matches!(
            parse_check_payment(br#"{"error":null,"result":{"status":"9"}}"#, ctx, t),
            Err(ParseError::Invalid { .. })
        ));
        assert_eq!(
            parse_check_payment(br#"{"error":null,"result":null}"#, ctx, t),
            Err(ParseError::Missing("result"))
        );
        assert!(matches!(
            parse_check_payment(b"garbage", ctx, t),
            Err(ParseError::NotJson(_))
        ));
    }
}
