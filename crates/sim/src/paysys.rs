//! PaySys (Uzbekistan) as `providers/paysys.txt` and NOTES.md describe it,
//! under `/paysys`:
//!
//! - `POST /paysys/gateway` — JSON-RPC with named params, authenticated by
//!   `Auth: {service_id}-{sha1_hex(secret_key + timestamp_ms)}-{timestamp_ms}`
//!   (a timestamp further than `auth_max_skew_ms` from now is refused).
//!   Methods: `paysys.prepare_payment`, `paysys.check_payment`,
//!   `paysys.cancel_payment`, `paysys.refund_payment`. Answers
//!   `{"id", "error": null | {"code", "message"}, "result", "mx_id"}` with
//!   HTTP 200; `status` as a string or a number as configured.
//! - `GET|POST /paysys/3ds/{token}` — the simulated 3-D Secure page behind
//!   `confirm_url`; a browser can finish the payment there.
//! - Outbound: a transaction status notification POSTed with
//!   `Authorization: Basic base64(VENDOR_METHOD:VENDOR_SECRET_KEY)` on every
//!   status change, and `partner.notify` on request of the control API.
//!
//! The document links its error-code table but does not include it. The
//! codes it shows (-32303, -32313) are used as documented; the others are
//! the simulator's, standard JSON-RPC codes where one fits:
//!
//! | code   | message |
//! |--------|---------|
//! | -32700 | Parse error |
//! | -32600 | Invalid Request |
//! | -32601 | Method not found |
//! | -32602 | Invalid params: `<name>` |
//! | -32504 | Access denied (bad or stale `Auth`) |
//! | -32305 | Transaction not found |
//! | -32306 | Transaction already exists (`partner_trans_id` reused) |
//! | -32310 | Amount out of the allowed range |
//! | -32312 | Invalid vendor_id |
//! | -32313 | Transaction status is canceled |
//! | -32314 | Refund amount exceeds payment amount |
//! | -32315 | Payment is not completed |
//! | -32316 | Currency does not match the payment |
//! | -32320 | Transaction declined (in `err_obj` of status -1) |

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{Method, StatusCode};
use jiff::tz::{Offset, TimeZone};
use rand::Rng;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::config::PaysysConfig;
use crate::engine::{
    Creation, Engine, PartnerNotifyRequest, PartnerNotifyStat, RefundError, random_hex, unix_ms,
};
use crate::error::{SimError, VerifyError};
use crate::form;
use crate::model::{Outcome, Payment, Provider, Status};
use crate::money::Currency;
use crate::server::{Answer, Req, escape_html, html, json, redirect};

/// Asia/Tashkent, UTC+5 without daylight saving (the fallback if the bundled
/// database were ever missing it).
static TASHKENT: LazyLock<TimeZone> = LazyLock::new(|| {
    TimeZone::get("Asia/Tashkent").unwrap_or_else(|_| TimeZone::fixed(Offset::constant(5)))
});

/// The `Auth` header a partner sends:
/// `{service_id}-{sha1_hex(secret_key + timestamp_ms)}-{timestamp_ms}`.
pub fn auth_header(service_id: &str, secret_key: &str, timestamp_ms: i64) -> String {
    format!(
        "{service_id}-{}-{timestamp_ms}",
        auth_digest(secret_key, &timestamp_ms.to_string())
    )
}

fn auth_digest(secret_key: &str, timestamp: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(secret_key.as_bytes());
    sha.update(timestamp.as_bytes());
    hex::encode(sha.finalize())
}

/// Checks an `Auth` header: the service id, the digest (in constant time)
/// and the timestamp's distance from `now_ms`.
pub fn verify_auth(
    header: &str,
    service_id: &str,
    secret_key: &str,
    now_ms: i64,
    max_skew_ms: u64,
) -> Result<(), VerifyError> {
    let (rest, timestamp) = header.rsplit_once('-').ok_or(VerifyError::Malformed)?;
    let (given_service, digest) = rest.rsplit_once('-').ok_or(VerifyError::Malformed)?;
    let ts: i64 = timestamp.parse().map_err(|_| VerifyError::Malformed)?;
    if digest.len() != 40 || !timestamp.bytes().all(|b| b.is_ascii_digit()) {
        return Err(VerifyError::Malformed);
    }
    let expected = auth_digest(secret_key, timestamp);
    let service_ok = given_service.as_bytes().ct_eq(service_id.as_bytes());
    let digest_ok = digest
        .to_ascii_lowercase()
        .as_bytes()
        .ct_eq(expected.as_bytes());
    if !bool::from(service_ok & digest_ok) {
        return Err(VerifyError::Mismatch);
    }
    if now_ms.abs_diff(ts) > max_skew_ms {
        return Err(VerifyError::Stale);
    }
    Ok(())
}

/// `Basic base64(VENDOR_METHOD:VENDOR_SECRET_KEY)`, or with a wrong secret
/// when a callback is to be wrongly signed.
pub(crate) fn basic_authorization(config: &PaysysConfig, wrong: bool) -> String {
    let secret = config.vendor_secret_key.expose_secret();
    let secret = if wrong {
        format!("{secret}-wrong")
    } else {
        secret.to_owned()
    };
    format!(
        "Basic {}",
        BASE64.encode(format!("{}:{secret}", config.vendor_method.expose_secret()))
    )
}

/// PaySys's numeric status.
pub fn status_code(status: Status) -> i64 {
    match status {
        Status::Created => 0,
        Status::Pending => 1,
        Status::Succeeded => 2,
        Status::Canceled => 3,
        Status::Refunded => 6,
        Status::Failed => -1,
    }
}

/// The `date` of notifications: `dd.mm.yyyy HH:MM:SS` in Asia/Tashkent.
pub fn notification_date(at: jiff::Timestamp) -> String {
    at.to_zoned(TASHKENT.clone())
        .strftime("%d.%m.%Y %H:%M:%S")
        .to_string()
}

/// The body of a transaction status notification carrying `status`; `amount`
/// is the payment's unless the callback reports another (a refund's total
/// so far, or this refund, as `paysys.refund_amount` says).
pub(crate) fn notification_body(payment: &Payment, status: Status, amount: Option<i64>) -> Value {
    json!({
        "id": payment.provider_txn_id.clone().unwrap_or_default(),
        "account": payment.reference,
        "amount": amount.unwrap_or(payment.amount_minor),
        "card_masked": payment.details.card_masked,
        "currency": payment.currency.numeric(),
        "currency_name": payment.currency.code().to_ascii_lowercase(),
        "status": status_code(status),
        "date": notification_date(payment.created_at),
    })
}

/// The JSON-RPC body of a `partner.notify`.
pub(crate) fn partner_notify_body<R: Rng + ?Sized>(
    request: &PartnerNotifyRequest,
    rng: &mut R,
) -> Value {
    let request_id = {
        let h = random_hex(rng, 16);
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    };
    let card_id = request
        .card_id
        .clone()
        .unwrap_or_else(|| random_hex(rng, 16));
    let params = match request.stat {
        PartnerNotifyStat::Success => json!({
            "stat": "SUCCESS",
            "id": card_id,
            "token": request.token.clone().unwrap_or_else(|| random_hex(rng, 20)),
            "pan": request.pan.clone().unwrap_or_else(|| "222222******2222".to_owned()),
        }),
        PartnerNotifyStat::Error => json!({
            "stat": "ERROR",
            "id": card_id,
            "code": request.code.clone().unwrap_or_else(|| "-34000".to_owned()),
            "message": request.message.clone().unwrap_or_else(|| "Card registration failed".to_owned()),
        }),
    };
    json!({"id": request_id, "method": "partner.notify", "params": params})
}

struct RpcError {
    code: i64,
    message: String,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }

    fn invalid(param: &str) -> RpcError {
        RpcError::new(-32602, format!("Invalid params: {param}"))
    }
}

fn envelope(engine: &Engine, id: Value, outcome: Result<Value, RpcError>) -> Answer {
    let mx_id = engine.with_rng(|rng| random_hex(rng, 16));
    let body = match outcome {
        Ok(result) => json!({"id": id, "error": null, "result": result, "mx_id": mx_id}),
        Err(err) => json!({
            "id": id,
            "error": {"code": err.code, "message": err.message},
            "result": null,
            "mx_id": mx_id,
        }),
    };
    json(StatusCode::OK, &body)
}

/// A param that may arrive as a string or a number.
fn text_param(params: &Map<String, Value>, name: &str) -> Option<String> {
    match params.get(name)? {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn required(params: &Map<String, Value>, name: &str) -> Result<String, RpcError> {
    text_param(params, name)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| RpcError::invalid(name))
}

fn minor_units(params: &Map<String, Value>) -> Result<i64, RpcError> {
    let amount = required(params, "amount")?;
    amount
        .parse::<i64>()
        .ok()
        .filter(|a| *a > 0)
        .ok_or_else(|| RpcError::invalid("amount"))
}

fn currency_param(params: &Map<String, Value>) -> Result<Currency, RpcError> {
    match text_param(params, "currency").filter(|c| !c.is_empty()) {
        None => Ok(Currency::Uzs),
        Some(code) => match Currency::parse(&code) {
            Some(c @ (Currency::Uzs | Currency::Usd | Currency::Eur | Currency::Rub)) => Ok(c),
            _ => Err(RpcError::invalid("currency")),
        },
    }
}

/// The documented amount limits, in minor units.
pub fn amount_allowed(amount_minor: i64, currency: Currency) -> bool {
    match currency {
        Currency::Uzs => (100_000..=7_500_000_000).contains(&amount_minor),
        Currency::Usd | Currency::Eur => (100..=500_000).contains(&amount_minor),
        Currency::Rub => amount_minor >= 100,
        Currency::Azn | Currency::Lyd => false,
    }
}

fn status_value(engine: &Engine, status: Status) -> Value {
    let code = status_code(status);
    if engine.as_string(engine.config.paysys.status_style) {
        Value::String(code.to_string())
    } else {
        Value::from(code)
    }
}

/// `POST /paysys/gateway`.
pub(crate) fn gateway(engine: &Engine, req: &Req) -> Answer {
    if req.method != Method::POST {
        return envelope(
            engine,
            Value::Null,
            Err(RpcError::new(-32600, "Invalid Request")),
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(&req.body) else {
        return envelope(
            engine,
            Value::Null,
            Err(RpcError::new(-32700, "Parse error")),
        );
    };
    let id = request.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = request.get("method").and_then(Value::as_str) else {
        return envelope(engine, id, Err(RpcError::new(-32600, "Invalid Request")));
    };
    let config = &engine.config.paysys;
    let auth = verify_auth(
        req.header("auth").unwrap_or_default(),
        &config.service_id,
        config.secret_key.expose_secret(),
        unix_ms(jiff::Timestamp::now()),
        config.auth_max_skew_ms,
    );
    if let Err(err) = auth {
        tracing::info!(method, %err, "paysys request refused: Auth");
        return envelope(engine, id, Err(RpcError::new(-32504, "Access denied")));
    }
    let empty = Map::new();
    let params = match request.get("params") {
        Some(Value::Object(params)) => params,
        None => &empty,
        Some(_) => return envelope(engine, id, Err(RpcError::new(-32602, "Invalid params"))),
    };
    let outcome = match method {
        "paysys.prepare_payment" => prepare(engine, params),
        "paysys.check_payment" => check(engine, params),
        "paysys.cancel_payment" => cancel(engine, params),
        "paysys.refund_payment" => refund(engine, params),
        _ => Err(RpcError::new(-32601, "Method not found")),
    };
    envelope(engine, id, outcome)
}

fn mask_card(number: &str) -> String {
    let len = number.len();
    format!("{}******{}", &number[..6], &number[len - 4..])
}

fn prepare(engine: &Engine, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let holder = required(params, "card_holder_name")?;
    let holder_ok = holder.len() <= 26
        && holder
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-/ _.".contains(&b));
    if !holder_ok {
        return Err(RpcError::invalid("card_holder_name"));
    }
    let card = required(params, "card_number")?;
    if !(12..=19).contains(&card.len()) || !card.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RpcError::invalid("card_number"));
    }
    let expire = required(params, "card_expire")?;
    let month: Option<u32> = expire.get(2..4).and_then(|m| m.parse().ok());
    if expire.len() != 4
        || !expire.bytes().all(|b| b.is_ascii_digit())
        || !matches!(month, Some(1..=12))
    {
        return Err(RpcError::invalid("card_expire"));
    }
    let cvc = required(params, "card_cvc")?;
    if cvc.len() != 3 || !cvc.bytes().all(|b| b.is_ascii_digit()) {
        return Err(RpcError::invalid("card_cvc"));
    }
    let amount = minor_units(params)?;
    let currency = currency_param(params)?;
    if !amount_allowed(amount, currency) {
        return Err(RpcError::new(-32310, "Amount out of the allowed range"));
    }
    let vendor_id = required(params, "vendor_id")?;
    if vendor_id != engine.config.paysys.vendor_id {
        return Err(RpcError::new(-32312, "Invalid vendor_id"));
    }
    let partner_trans_id = required(params, "partner_trans_id")?;
    if text_param(params, "description").is_some_and(|d| d.chars().count() > 125) {
        return Err(RpcError::invalid("description"));
    }
    let redirect_url = text_param(params, "redirect_url").filter(|u| !u.is_empty());
    if redirect_url
        .as_deref()
        .is_some_and(|u| !crate::config::is_http_url(u))
    {
        return Err(RpcError::invalid("redirect_url"));
    }
    let creation = Creation {
        provider: Provider::Paysys,
        reference: partner_trans_id,
        amount_minor: amount,
        currency,
        amount_text: amount.to_string(),
        gateway: None,
        callback_url: engine.config.paysys.notify_url.clone(),
        return_url: redirect_url,
        outcome: None,
        pending: None,
        card_masked: Some(mask_card(&card)),
        test_service: None,
    };
    match engine.create(creation) {
        Ok(view) => {
            let token = {
                let state = engine.state();
                state
                    .store
                    .slot_by_id(&view.id)
                    .and_then(|slot| state.store.payments.get(slot))
                    .map(|p| p.page_token.clone())
                    .unwrap_or_default()
            };
            Ok(json!({
                "transaction_id": view.provider_txn_id.unwrap_or_default(),
                "confirm_url": format!("{}/paysys/3ds/{token}", engine.base_url),
            }))
        }
        Err(SimError::DuplicateReference { .. }) => {
            Err(RpcError::new(-32306, "Transaction already exists"))
        }
        Err(err) => Err(RpcError::new(-32602, err.to_string())),
    }
}

fn paysys_slot(engine: &Engine, params: &Map<String, Value>) -> Result<usize, RpcError> {
    let partner_trans_id = required(params, "partner_trans_id")?;
    engine
        .state()
        .store
        .slot_by_reference(Provider::Paysys, &partner_trans_id)
        .ok_or_else(|| RpcError::new(-32305, "Transaction not found"))
}

fn check(engine: &Engine, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let slot = paysys_slot(engine, params)?;
    let state = engine.state();
    let payment = state
        .store
        .payments
        .get(slot)
        .ok_or_else(|| RpcError::new(-32305, "Transaction not found"))?;
    let reached_bank = payment
        .timeline
        .iter()
        .any(|c| matches!(c.status, Status::Succeeded | Status::Failed));
    let data = if reached_bank {
        let ok = payment.status != Status::Failed;
        json!({
            "RESULT": if ok { "OK" } else { "FAILED" },
            "RESULT_CODE": if ok { "000" } else { "116" },
            "3DSECURE": "AUTHENTICATED",
            "RRN": payment.details.rrn,
            "APPROVAL_CODE": if ok { payment.details.approval_code.as_str() } else { "" },
            "CARD_NUMBER": payment.details.card_masked,
        })
    } else {
        json!({})
    };
    let err_obj = if payment.status == Status::Failed {
        json!({"code": -32320, "message": "Transaction declined"})
    } else {
        Value::Null
    };
    let (txn, reference, status) = (
        payment.provider_txn_id.clone().unwrap_or_default(),
        payment.reference.clone(),
        payment.status,
    );
    drop(state);
    Ok(json!({
        "transaction_id": txn,
        "partner_trans_id": reference,
        "status": status_value(engine, status),
        "data": data,
        "err_obj": err_obj,
    }))
}

fn refund_error(err: RefundError) -> RpcError {
    match err {
        RefundError::NotFound => RpcError::new(-32305, "Transaction not found"),
        RefundError::Canceled => RpcError::new(-32313, "Transaction status is canceled"),
        RefundError::NotCompleted => RpcError::new(-32315, "Payment is not completed"),
        RefundError::TooMuch => RpcError::new(-32314, "Refund amount exceeds payment amount"),
    }
}

fn after_change(engine: &Engine, slot: usize, status: Status) -> Result<Value, RpcError> {
    let (txn, reference) = {
        let state = engine.state();
        let payment = state
            .store
            .payments
            .get(slot)
            .ok_or_else(|| RpcError::new(-32305, "Transaction not found"))?;
        (
            payment.provider_txn_id.clone().unwrap_or_default(),
            payment.reference.clone(),
        )
    };
    engine.wake_scheduler();
    Ok(json!({
        "transaction_id": txn,
        "partner_trans_id": reference,
        "status": status_value(engine, status),
        "data": {},
    }))
}

fn cancel(engine: &Engine, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let slot = paysys_slot(engine, params)?;
    engine
        .cancel_locked(&mut engine.state(), slot)
        .map_err(refund_error)?;
    after_change(engine, slot, Status::Canceled)
}

fn refund(engine: &Engine, params: &Map<String, Value>) -> Result<Value, RpcError> {
    let slot = paysys_slot(engine, params)?;
    let amount = minor_units(params)?;
    let currency = currency_param(params)?;
    {
        let mut state = engine.state();
        let matches = state
            .store
            .payments
            .get(slot)
            .is_some_and(|p| p.currency == currency);
        if !matches {
            return Err(RpcError::new(-32316, "Currency does not match the payment"));
        }
        engine
            .refund_locked(&mut state, slot, amount, "refund_payment")
            .map_err(refund_error)?;
    }
    after_change(engine, slot, Status::Refunded)
}

/// `/paysys/3ds/{token}`: the simulated 3-D Secure page.
pub(crate) fn secure_page(engine: &Engine, req: &Req, token: &str) -> Answer {
    let found = {
        let state = engine.state();
        state.store.slot_by_page(token).and_then(|slot| {
            state
                .store
                .payments
                .get(slot)
                .filter(|p| p.provider == Provider::Paysys)
                .map(|p| {
                    (
                        slot,
                        p.status,
                        p.reference.clone(),
                        p.amount_minor,
                        p.currency,
                        p.return_url.clone(),
                    )
                })
        })
    };
    let Some((slot, status, reference, amount, currency, return_url)) = found else {
        return html(
            StatusCode::NOT_FOUND,
            "<!doctype html><h1>Unknown payment</h1>".to_owned(),
        );
    };
    let finished = |engine: &Engine| match &return_url {
        Some(url) => redirect(StatusCode::SEE_OTHER, url),
        None => {
            let status = engine.view(slot).map(|v| v.status).unwrap_or(status);
            html(
                StatusCode::OK,
                format!("<!doctype html><h1>Payment finished: {status:?}</h1>"),
            )
        }
    };
    if req.method == Method::POST && !status.is_final() {
        let params = req.params();
        let outcome = match form::first(&params, "outcome") {
            Some("success") => Some(Outcome::Success),
            Some("failure") => Some(Outcome::Failure),
            Some("cancel") => Some(Outcome::Cancel),
            _ => None,
        };
        if let Err(err) = engine.pay(slot, outcome, "browser", false) {
            tracing::debug!(%err, "3ds page: payment already ended");
        }
        return finished(engine);
    }
    if status.is_final() {
        return finished(engine);
    }
    html(
        StatusCode::OK,
        format!(
            "<!doctype html><html><head><title>3-D Secure (simulated)</title></head><body>\
             <h1>Simulated 3-D Secure</h1><p>Order {} — {} {}</p>\
             <form method=\"post\">\
             <button name=\"outcome\" value=\"success\">Confirm</button>\
             <button name=\"outcome\" value=\"failure\">Decline</button>\
             <button name=\"outcome\" value=\"cancel\">Cancel</button>\
             </form></body></html>",
            escape_html(&reference),
            crate::money::format_decimal(amount, currency, 2),
            currency.code()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_header_is_sha1_of_secret_then_timestamp() {
        // sha1("secret1700000000000"), computed independently with `sha1sum`.
        let header = auth_header("2001", "secret", 1_700_000_000_000);
        assert_eq!(
            header,
            "2001-a3e1cf3a11523ba7da903d56534ddd3f1089cef6-1700000000000"
        );
    }

    #[test]
    fn verify_auth_right_and_wrong() {
        let now = 1_700_000_000_000;
        let header = auth_header("2001", "secret", now);
        assert_eq!(
            verify_auth(&header, "2001", "secret", now + 1_000, 300_000),
            Ok(())
        );
        assert_eq!(
            verify_auth(&header, "2001", "other", now, 300_000),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_auth(&header, "2002", "secret", now, 300_000),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_auth(&header, "2001", "secret", now + 300_001, 300_000),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify_auth(&header, "2001", "secret", now - 300_001, 300_000),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify_auth("garbage", "2001", "secret", now, 1),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify_auth("2001-abc-12", "2001", "secret", now, 1),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify_auth("", "2001", "secret", now, 1),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn a_service_id_with_dashes_still_parses() {
        let header = auth_header("svc-1", "secret", 5);
        assert_eq!(verify_auth(&header, "svc-1", "secret", 5, 0), Ok(()));
    }

    #[test]
    fn basic_credentials() {
        let config = PaysysConfig::default();
        assert_eq!(
            basic_authorization(&config, false),
            format!("Basic {}", BASE64.encode("demo-vendor:demo-vendor-secret"))
        );
        assert_ne!(
            basic_authorization(&config, true),
            basic_authorization(&config, false)
        );
    }

    #[test]
    fn tashkent_date_format() {
        let at: jiff::Timestamp = "2022-06-24T02:49:16Z".parse().unwrap();
        assert_eq!(notification_date(at), "24.06.2022 07:49:16");
    }

    #[test]
    fn limits_and_masking() {
        assert!(amount_allowed(1_139_000, Currency::Uzs));
        assert!(!amount_allowed(99_999, Currency::Uzs));
        assert!(amount_allowed(100, Currency::Usd));
        assert!(!amount_allowed(500_001, Currency::Eur));
        assert_eq!(mask_card("4278000000275400"), "427800******5400");
    }

    #[test]
    fn status_codes() {
        assert_eq!(status_code(Status::Pending), 1);
        assert_eq!(status_code(Status::Refunded), 6);
        assert_eq!(status_code(Status::Failed), -1);
    }
}
