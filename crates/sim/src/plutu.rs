//! Plutu (Libya) card gateways as `providers/plutu-mpgs.txt` and NOTES.md
//! describe them, under `/plutu`:
//!
//! - `POST /plutu/api/v1/transaction/{mpgs|localbankcards}/confirm` — form
//!   body `amount, invoice_no, return_url[, customer_ip, lang]`, headers
//!   `Authorization: Bearer <access token>` and `X-API-KEY`. Success:
//!   `{"status":200,"result":{"code":"CHECKOUT_REDIRECT","redirect_url":"…"}}`;
//!   errors: `{"error":{"status":4xx,"code":"…","message":"…","fields":{…}}}`
//!   with UNAUTHORIZED (401), INVALID_INPUTS (422, `fields` naming each bad
//!   input), INVALID_AMOUNT (422), DUPLICATED_INVOICE_NUMBER (409). The HTTP
//!   statuses are not documented; these are the simulator's choice.
//! - `GET|POST /plutu/checkout/{token}` — the simulated checkout page behind
//!   `redirect_url`; it sends the browser to `return_url` with the signed
//!   parameters.
//! - Outbound: the callback GET (to `plutu.callback_url`, or the payment's
//!   `return_url`) with `gateway, approved=1 | canceled=1, amount, currency,
//!   invoice_no, transaction_id` (mpgs order; localbankcards: `gateway,
//!   approved | canceled, invoice_no, amount, transaction_id`) and `hashed`,
//!   appended after any query parameters the shop put in its URL.

use hmac::{Hmac, Mac};
use http::{Method, StatusCode};
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::engine::{Creation, Engine};
use crate::error::{SimError, VerifyError};
use crate::form;
use crate::model::{Outcome, Payment, PlutuGateway, Provider, Status};
use crate::money::{self, Currency};
use crate::server::{Answer, Req, escape_html, html, json, redirect};

/// Parameters of an MPGS callback that `hashed` covers, in NOTES.md's order.
pub const MPGS_WHITELIST: [&str; 7] = [
    "gateway",
    "approved",
    "canceled",
    "amount",
    "currency",
    "invoice_no",
    "transaction_id",
];

/// Parameters of a local-bank-cards callback that `hashed` covers.
pub const LOCALBANKCARDS_WHITELIST: [&str; 6] = [
    "gateway",
    "approved",
    "canceled",
    "invoice_no",
    "amount",
    "transaction_id",
];

/// The whitelist of a gateway.
pub fn whitelist(gateway: PlutuGateway) -> &'static [&'static str] {
    match gateway {
        PlutuGateway::Mpgs => &MPGS_WHITELIST,
        PlutuGateway::Localbankcards => &LOCALBANKCARDS_WHITELIST,
    }
}

/// The currency a gateway settles in.
pub fn gateway_currency(gateway: PlutuGateway) -> Currency {
    match gateway {
        PlutuGateway::Mpgs => Currency::Usd,
        PlutuGateway::Localbankcards => Currency::Lyd,
    }
}

/// The message `hashed` is computed over: the parameters on the gateway's
/// whitelist, in the order they appear, encoded as PHP's `http_build_query`.
pub fn callback_message<K: AsRef<str>, V: AsRef<str>>(
    gateway: PlutuGateway,
    params: &[(K, V)],
) -> String {
    let list = whitelist(gateway);
    let kept: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .filter(|(k, _)| list.contains(k))
        .collect();
    form::http_build_query(&kept)
}

fn mac(secret_key: &str, message: &str) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; the fallback only keeps this total.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes())
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
    mac.update(message.as_bytes());
    mac
}

/// `hashed`: uppercase hex HMAC-SHA256 of `message` keyed with the secret key.
pub fn callback_hash(secret_key: &str, message: &str) -> String {
    hex::encode_upper(mac(secret_key, message).finalize().into_bytes())
}

/// Verifies a received callback's `hashed` against its parameters, in
/// constant time, as a shop must. Tests use it to check what they receive.
pub fn verify_callback<K: AsRef<str>, V: AsRef<str>>(
    gateway: PlutuGateway,
    params: &[(K, V)],
    secret_key: &str,
) -> Result<(), VerifyError> {
    let hashed = params
        .iter()
        .find(|(k, _)| k.as_ref() == "hashed")
        .map(|(_, v)| v.as_ref())
        .ok_or(VerifyError::Malformed)?;
    let given = hex::decode(hashed).map_err(|_| VerifyError::Malformed)?;
    if given.len() != 32 {
        return Err(VerifyError::Malformed);
    }
    // Plutu's SDK compares with `hash_equals` against the uppercase hex.
    if hashed.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err(VerifyError::Mismatch);
    }
    let expected = mac(secret_key, &callback_message(gateway, params))
        .finalize()
        .into_bytes();
    if bool::from(expected.as_slice().ct_eq(&given)) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// The callback's parameters for a resolved payment, without `hashed`.
pub(crate) fn callback_params(payment: &Payment) -> Vec<(String, String)> {
    let txn = payment.provider_txn_id.clone().unwrap_or_default();
    params_claiming(payment, payment.status, txn)
}

/// What a forger sends for `payment`: the parameters of a callback claiming
/// `status`, with the real transaction id if one exists yet and a made-up one
/// otherwise (a pending card payment has none).
pub(crate) fn forged_params(payment: &Payment, status: Status) -> Vec<(String, String)> {
    let txn = payment
        .provider_txn_id
        .clone()
        .unwrap_or_else(|| format!("9{}", payment.id.trim_start_matches("plutu-")));
    params_claiming(payment, status, txn)
}

fn params_claiming(payment: &Payment, status: Status, txn: String) -> Vec<(String, String)> {
    let gateway = payment.gateway.unwrap_or(PlutuGateway::Mpgs);
    let mut params = vec![("gateway".to_owned(), gateway.name().to_owned())];
    match status {
        Status::Succeeded | Status::Refunded => {
            params.push(("approved".to_owned(), "1".to_owned()))
        }
        Status::Canceled => params.push(("canceled".to_owned(), "1".to_owned())),
        Status::Failed | Status::Created | Status::Pending => {}
    }
    let amount = money::format_decimal(payment.amount_minor, payment.currency, 2);
    match gateway {
        PlutuGateway::Mpgs => {
            params.push(("amount".to_owned(), amount));
            params.push(("currency".to_owned(), payment.currency.code().to_owned()));
            params.push(("invoice_no".to_owned(), payment.reference.clone()));
        }
        PlutuGateway::Localbankcards => {
            params.push(("invoice_no".to_owned(), payment.reference.clone()));
            params.push(("amount".to_owned(), amount));
        }
    }
    params.push(("transaction_id".to_owned(), txn));
    params
}

/// The callback's query string with `hashed` last; signed with a wrong key
/// when the scenario says so.
pub(crate) fn signed_query(
    params: &[(String, String)],
    gateway: PlutuGateway,
    secret_key: &str,
    wrong: bool,
) -> String {
    let key = if wrong {
        format!("{secret_key}-wrong")
    } else {
        secret_key.to_owned()
    };
    let hashed = callback_hash(&key, &callback_message(gateway, params));
    let mut all: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    all.push(("hashed", hashed.as_str()));
    form::http_build_query(&all)
}

fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    fields: Option<Map<String, Value>>,
) -> Answer {
    let mut body = json!({"status": status.as_u16(), "code": code, "message": message});
    if let (Some(fields), Some(object)) = (fields, body.as_object_mut()) {
        object.insert("fields".to_owned(), Value::Object(fields));
    }
    json(status, &json!({"error": body}))
}

fn credential_ok(given: Option<&str>, expected: &str) -> bool {
    given.is_some_and(|given| bool::from(given.as_bytes().ct_eq(expected.as_bytes())))
}

/// `POST /plutu/api/v1/transaction/{gateway}/confirm`.
pub(crate) fn confirm(engine: &Engine, req: &Req, gateway: &str) -> Answer {
    let Some(gateway) = PlutuGateway::parse(gateway) else {
        return error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Unknown payment gateway",
            None,
        );
    };
    if req.method != Method::POST {
        return error(
            StatusCode::METHOD_NOT_ALLOWED,
            "METHOD_NOT_ALLOWED",
            "Use POST",
            None,
        );
    }
    let config = &engine.config.plutu;
    let bearer = req
        .header("authorization")
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    if !credential_ok(bearer, config.access_token.expose_secret())
        || !credential_ok(req.header("x-api-key"), config.api_key.expose_secret())
    {
        tracing::info!(
            gateway = gateway.name(),
            "plutu confirm refused: credentials"
        );
        return error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "Unauthorized",
            None,
        );
    }
    let params = req.form_pairs();
    let value = |name: &str| {
        form::first(&params, name)
            .map(str::trim)
            .unwrap_or_default()
            .to_owned()
    };
    let (amount, invoice_no, return_url, lang) = (
        value("amount"),
        value("invoice_no"),
        value("return_url"),
        value("lang"),
    );
    let mut fields = Map::new();
    for (name, given) in [
        ("amount", &amount),
        ("invoice_no", &invoice_no),
        ("return_url", &return_url),
    ] {
        if given.is_empty() {
            fields.insert(
                name.to_owned(),
                json!(format!("The {} field is required.", name.replace('_', " "))),
            );
        }
    }
    let invoice_ok = invoice_no.len() <= 64
        && invoice_no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !invoice_no.is_empty() && !invoice_ok {
        fields.insert(
            "invoice_no".to_owned(),
            json!("The invoice no may contain only letters, digits, dot, underscore and dash."),
        );
    }
    if !return_url.is_empty() && !crate::config::is_http_url(&return_url) {
        fields.insert(
            "return_url".to_owned(),
            json!("The return url must be a valid URL."),
        );
    }
    if !lang.is_empty() && lang != "ar" && lang != "en" {
        fields.insert("lang".to_owned(), json!("The selected lang is invalid."));
    }
    if !fields.is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_INPUTS",
            "Invalid inputs",
            Some(fields),
        );
    }
    let currency = gateway_currency(gateway);
    let Some(amount_minor) = money::parse_decimal(&amount, currency, 2) else {
        let mut fields = Map::new();
        fields.insert(
            "amount".to_owned(),
            json!("The amount must be a number with at most two decimal places."),
        );
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_AMOUNT",
            "Invalid amount",
            Some(fields),
        );
    };
    let callback_url = if config.callback_url.is_empty() {
        return_url.clone()
    } else {
        config.callback_url.clone()
    };
    let creation = Creation {
        provider: Provider::Plutu,
        reference: invoice_no,
        amount_minor,
        currency,
        amount_text: money::format_decimal(amount_minor, currency, 2),
        gateway: Some(gateway),
        callback_url,
        return_url: Some(return_url),
        outcome: None,
        pending: None,
        card_masked: None,
        test_service: None,
    };
    match engine.create(creation) {
        Ok(view) => {
            let token = page_token(engine, &view.id);
            json(
                StatusCode::OK,
                &json!({
                    "status": 200,
                    "result": {
                        "code": "CHECKOUT_REDIRECT",
                        "redirect_url": format!("{}/plutu/checkout/{token}", engine.base_url),
                    }
                }),
            )
        }
        Err(SimError::DuplicateReference { .. }) => error(
            StatusCode::CONFLICT,
            "DUPLICATED_INVOICE_NUMBER",
            "Invoice number already exists",
            None,
        ),
        Err(err) => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "INVALID_INPUTS",
            &err.to_string(),
            None,
        ),
    }
}

pub(crate) fn page_token(engine: &Engine, id: &str) -> String {
    let state = engine.state();
    state
        .store
        .slot_by_id(id)
        .and_then(|slot| state.store.payments.get(slot))
        .map(|p| p.page_token.clone())
        .unwrap_or_default()
}

/// `/plutu/checkout/{token}`: the simulated checkout page.
pub(crate) fn checkout_page(engine: &Engine, req: &Req, token: &str) -> Answer {
    let found = {
        let state = engine.state();
        state.store.slot_by_page(token).and_then(|slot| {
            state
                .store
                .payments
                .get(slot)
                .filter(|p| p.provider == Provider::Plutu)
                .map(|p| {
                    (
                        slot,
                        p.status,
                        p.reference.clone(),
                        p.amount_text.clone(),
                        p.currency,
                    )
                })
        })
    };
    let Some((slot, status, reference, amount, currency)) = found else {
        return html(
            StatusCode::NOT_FOUND,
            "<!doctype html><h1>Unknown payment</h1>".to_owned(),
        );
    };
    let back = |engine: &Engine| {
        let state = engine.state();
        let Some(payment) = state.store.payments.get(slot) else {
            return html(
                StatusCode::NOT_FOUND,
                "<!doctype html><h1>Unknown payment</h1>".to_owned(),
            );
        };
        let query = signed_query(
            &payment.details.plutu_params,
            payment.gateway.unwrap_or(PlutuGateway::Mpgs),
            engine.config.plutu.secret_key.expose_secret(),
            false,
        );
        let url = payment.return_url.clone().unwrap_or_default();
        redirect(StatusCode::SEE_OTHER, &form::append_query(&url, &query))
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
            tracing::debug!(%err, "checkout page: payment already ended");
        }
        return back(engine);
    }
    if status.is_final() {
        return back(engine);
    }
    html(
        StatusCode::OK,
        format!(
            "<!doctype html><html><head><title>Plutu checkout (simulated)</title></head><body>\
             <h1>Simulated Plutu checkout</h1><p>Invoice {} — {} {}</p>\
             <form method=\"post\">\
             <button name=\"outcome\" value=\"success\">Pay</button>\
             <button name=\"outcome\" value=\"failure\">Decline</button>\
             <button name=\"outcome\" value=\"cancel\">Cancel</button>\
             </form></body></html>",
            escape_html(&reference),
            escape_html(&amount),
            currency.code()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sk_example_0123456789abcdef";
    const MESSAGE: &str = "gateway=mpgs&approved=1&amount=12.50&currency=USD&invoice_no=INV-1001&transaction_id=200431";
    const HASHED: &str = "F1BC626CFDC4E6A5A464570053B42F5673F431950BDE64665EC3A56B33A2F681";

    fn worked_params() -> Vec<(String, String)> {
        form::parse_pairs(MESSAGE)
    }

    /// The worked example in providers/NOTES.md.
    #[test]
    fn notes_worked_example() {
        assert_eq!(callback_hash(KEY, MESSAGE), HASHED);
        assert_eq!(
            callback_message(PlutuGateway::Mpgs, &worked_params()),
            MESSAGE
        );
    }

    #[test]
    fn the_signed_query_carries_the_worked_hash() {
        let query = signed_query(&worked_params(), PlutuGateway::Mpgs, KEY, false);
        assert_eq!(query, format!("{MESSAGE}&hashed={HASHED}"));
        let wrong = signed_query(&worked_params(), PlutuGateway::Mpgs, KEY, true);
        assert!(!wrong.contains(HASHED));
    }

    #[test]
    fn verify_right_and_wrong() {
        let mut params = worked_params();
        params.push(("hashed".to_owned(), HASHED.to_owned()));
        assert_eq!(verify_callback(PlutuGateway::Mpgs, &params, KEY), Ok(()));
        // Lowercase hex is refused, as Plutu's SDK refuses it.
        let mut lower = worked_params();
        lower.push(("hashed".to_owned(), HASHED.to_lowercase()));
        assert_eq!(
            verify_callback(PlutuGateway::Mpgs, &lower, KEY),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_callback(PlutuGateway::Mpgs, &params, "sk_other"),
            Err(VerifyError::Mismatch)
        );
        // A changed amount breaks it.
        let mut tampered = params.clone();
        tampered[2].1 = "12.5".to_owned();
        assert_eq!(
            verify_callback(PlutuGateway::Mpgs, &tampered, KEY),
            Err(VerifyError::Mismatch)
        );
        // Order matters: the message is over the order received.
        let mut swapped = params.clone();
        swapped.swap(2, 3);
        assert_eq!(
            verify_callback(PlutuGateway::Mpgs, &swapped, KEY),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_callback(PlutuGateway::Mpgs, &worked_params(), KEY),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn parameters_off_the_whitelist_are_left_out() {
        let mut params = vec![
            ("order".to_owned(), "77".to_owned()),
            ("lang".to_owned(), "en".to_owned()),
        ];
        params.extend(worked_params());
        assert_eq!(callback_message(PlutuGateway::Mpgs, &params), MESSAGE);
        // localbankcards has no currency in its whitelist.
        let local = callback_message(PlutuGateway::Localbankcards, &params);
        assert_eq!(
            local,
            "gateway=mpgs&approved=1&amount=12.50&invoice_no=INV-1001&transaction_id=200431"
        );
    }

    #[test]
    fn values_are_encoded_as_php_does() {
        let params = vec![("invoice_no", "A B*~")];
        assert_eq!(
            callback_message(PlutuGateway::Mpgs, &params),
            "invoice_no=A+B%2A%7E"
        );
    }
}
