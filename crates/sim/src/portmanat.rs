//! Portmanat (Azerbaijan) as `providers/portmanat.txt` and NOTES.md describe
//! it, under `/portmanat`:
//!
//! - `POST /portmanat/process` — the shop's auto-submitted form
//!   (`service_id, client_rrn, amount, client_ip, hash`); the hash is checked,
//!   the payment created, and the browser sent (302) to the simulated bank
//!   page `/portmanat/bank?psp_rrn=…&client_rrn=…`. A shop that posts
//!   server-side reads `psp_rrn` from that `Location`.
//! - `GET|POST /portmanat/bank` — the bank page: a real browser can pay,
//!   decline or cancel there and is then sent to the service's callback URL
//!   with `psp_rrn` and `client_rrn`. Without a browser the simulator plays
//!   it after the pending time.
//! - `POST|GET /portmanat/check` — `psp_rrn` in a form body or query string;
//!   every documented answer: OK with code 0 / 1 / -1, BAD 10 (validation
//!   error with `errors`), BAD 20 (RRN is wrong). `code` is a number or a
//!   string as configured, the date object is `created_at` or `date`, in
//!   Asia/Baku local time.
//!
//! Where the document is silent (the HTTP status of a refused `/process`, its
//! body), the simulator answers HTTP 400 with the `/check` BAD 10 shape.

use std::sync::LazyLock;

use hmac::{Hmac, Mac};
use http::{Method, StatusCode};
use jiff::tz::{Offset, TimeZone};
use rand::Rng as _;
use secrecy::ExposeSecret;
use serde_json::{Map, Value, json};
use sha2::Sha256;

use crate::config::{CallbackMethod, DateField, TimezoneStyle};
use crate::engine::{Creation, Engine};
use crate::error::{SimError, VerifyError};
use crate::form;
use crate::model::{Outcome, Provider, Status};
use crate::money::{self, Currency};
use crate::server::{Answer, Req, escape_html, html, json, redirect};

/// Asia/Baku, UTC+4 without daylight saving since 2016 (the fallback if the
/// bundled database were ever missing it).
static BAKU: LazyLock<TimeZone> = LazyLock::new(|| {
    TimeZone::get("Asia/Baku").unwrap_or_else(|_| TimeZone::fixed(Offset::constant(4)))
});

/// The `/process` hash: lowercase hex HMAC-SHA256 of
/// `service_id . client_rrn . amount`, keyed with the service's secret key,
/// over the exact amount string sent. A shop (or a test playing one) uses it
/// to build a valid form.
pub fn process_hash(service_id: &str, client_rrn: &str, amount: &str, secret_key: &str) -> String {
    hex::encode(
        process_mac(service_id, client_rrn, amount, secret_key)
            .finalize()
            .into_bytes(),
    )
}

fn process_mac(service_id: &str, client_rrn: &str, amount: &str, secret_key: &str) -> Hmac<Sha256> {
    // HMAC takes keys of any length, so this cannot fail; the fallback keeps
    // the function total without a panic path.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_key.as_bytes())
        .unwrap_or_else(|_| <Hmac<Sha256> as Mac>::new(&Default::default()));
    mac.update(service_id.as_bytes());
    mac.update(client_rrn.as_bytes());
    mac.update(amount.as_bytes());
    mac
}

/// Checks a `/process` hash in constant time.
pub fn verify_process_hash(
    service_id: &str,
    client_rrn: &str,
    amount: &str,
    secret_key: &str,
    hash: &str,
) -> Result<(), VerifyError> {
    let given = hex::decode(hash).map_err(|_| VerifyError::Malformed)?;
    if given.len() != 32 {
        return Err(VerifyError::Malformed);
    }
    process_mac(service_id, client_rrn, amount, secret_key)
        .verify_slice(&given)
        .map_err(|_| VerifyError::Mismatch)
}

fn bad_validation(status: StatusCode, errors: Map<String, Value>) -> Answer {
    json(
        status,
        &json!({"status": "BAD", "code": 10, "description": "Validation error", "errors": errors}),
    )
}

fn field_error(errors: &mut Map<String, Value>, field: &str, message: String) {
    errors.insert(field.to_owned(), json!([message]));
}

/// `POST /portmanat/process`.
pub(crate) fn process(engine: &Engine, req: &Req) -> Answer {
    if req.method != Method::POST {
        return json(
            StatusCode::METHOD_NOT_ALLOWED,
            &json!({"status": "BAD", "code": 10, "description": "Method not allowed"}),
        );
    }
    let params = req.params();
    let mut errors = Map::new();
    let mut field = |name: &str| {
        let value = form::first(&params, name)
            .unwrap_or_default()
            .trim()
            .to_owned();
        if value.is_empty() {
            field_error(
                &mut errors,
                name,
                format!("The {} field is required.", name.replace('_', " ")),
            );
        }
        value
    };
    let service_id = field("service_id");
    let client_rrn = field("client_rrn");
    let amount = field("amount");
    let _client_ip = field("client_ip");
    let hash = field("hash");
    if !errors.is_empty() {
        return bad_validation(StatusCode::BAD_REQUEST, errors);
    }
    let config = &engine.config.portmanat;
    if service_id != config.service_id {
        field_error(
            &mut errors,
            "service_id",
            "The selected service id is invalid.".to_owned(),
        );
    }
    let amount_minor = money::parse_decimal(&amount, Currency::Azn, 2);
    if amount_minor.is_none() {
        field_error(
            &mut errors,
            "amount",
            "The amount format is invalid.".to_owned(),
        );
    }
    if client_rrn.len() > 64 {
        field_error(
            &mut errors,
            "client_rrn",
            "The client rrn may not be greater than 64 characters.".to_owned(),
        );
    }
    if !errors.is_empty() {
        return bad_validation(StatusCode::BAD_REQUEST, errors);
    }
    if let Err(err) = verify_process_hash(
        &service_id,
        &client_rrn,
        &amount,
        config.secret_key.expose_secret(),
        &hash,
    ) {
        tracing::info!(payment.reference = %client_rrn, %err, "portmanat /process refused: bad hash");
        field_error(&mut errors, "hash", "The hash is invalid.".to_owned());
        return bad_validation(StatusCode::BAD_REQUEST, errors);
    }
    let creation = Creation {
        provider: Provider::Portmanat,
        reference: client_rrn.clone(),
        amount_minor: amount_minor.unwrap_or_default(),
        currency: Currency::Azn,
        amount_text: amount,
        gateway: None,
        callback_url: config.callback_url.clone(),
        return_url: None,
        outcome: None,
        pending: None,
        card_masked: None,
        test_service: None,
    };
    match engine.create(creation) {
        Ok(view) => {
            let query = form::http_build_query(&[
                (
                    "psp_rrn",
                    view.provider_txn_id.as_deref().unwrap_or_default(),
                ),
                ("client_rrn", view.reference.as_str()),
            ]);
            let location = format!("{}/portmanat/bank?{query}", engine.base_url);
            redirect(StatusCode::FOUND, &location)
        }
        Err(SimError::DuplicateReference { .. }) => {
            field_error(
                &mut errors,
                "client_rrn",
                "The client rrn has already been taken.".to_owned(),
            );
            bad_validation(StatusCode::BAD_REQUEST, errors)
        }
        Err(err) => bad_validation(StatusCode::BAD_REQUEST, {
            let mut errors = Map::new();
            field_error(&mut errors, "request", err.to_string());
            errors
        }),
    }
}

/// Portmanat's `code` for a status.
fn code_of(status: Status) -> (i64, &'static str) {
    match status {
        Status::Created | Status::Pending => (1, "Pending"),
        Status::Succeeded | Status::Refunded => (0, "Success"),
        Status::Failed | Status::Canceled => (-1, "Request failed"),
    }
}

fn code_value(engine: &Engine, code: i64) -> Value {
    if engine.as_string(engine.config.portmanat.code_style) {
        Value::String(code.to_string())
    } else {
        Value::from(code)
    }
}

/// `/portmanat/check`.
pub(crate) fn check(engine: &Engine, req: &Req) -> Answer {
    let params = req.params();
    let psp_rrn = form::first(&params, "psp_rrn")
        .map(str::trim)
        .unwrap_or_default();
    if psp_rrn.is_empty() {
        let mut errors = Map::new();
        field_error(
            &mut errors,
            "psp_rrn",
            "The psp rrn field is required.".to_owned(),
        );
        let body = json!({
            "status": "BAD",
            "code": code_value(engine, 10),
            "description": "Validation error",
            "errors": errors,
        });
        return json(StatusCode::OK, &body);
    }
    let found = {
        let state = engine.state();
        state
            .store
            .slot_by_txn(Provider::Portmanat, psp_rrn)
            .and_then(|slot| state.store.payments.get(slot))
            .map(|p| {
                let amount = money::format_decimal(p.amount_minor, Currency::Azn, 2);
                (
                    p.status,
                    amount,
                    p.reference.clone(),
                    p.details.bank_rrn.clone(),
                    p.created_at,
                    p.test_service,
                )
            })
    };
    let Some((status, amount, client_rrn, bank_rrn, created_at, test_service)) = found else {
        let body =
            json!({"status": "BAD", "code": code_value(engine, 20), "description": "RRN is wrong"});
        return json(StatusCode::OK, &body);
    };
    let (code, description) = code_of(status);
    let answers = engine.scenario(Provider::Portmanat).answers;
    if answers.without_body > 0.0 && engine.with_rng(|rng| rng.random_bool(answers.without_body)) {
        return json(
            StatusCode::OK,
            &json!({"status": "OK", "code": code_value(engine, code), "description": description}),
        );
    }
    let date_name = match engine.config.portmanat.date_field {
        DateField::CreatedAt => "created_at",
        DateField::Date => "date",
    };
    let local = created_at.to_zoned(BAKU.clone());
    let mut body = Map::new();
    body.insert("amount".to_owned(), Value::String(amount));
    if answers.without_client_rrn <= 0.0
        || !engine.with_rng(|rng| rng.random_bool(answers.without_client_rrn))
    {
        body.insert("client_rrn".to_owned(), Value::String(client_rrn));
    }
    body.insert("psp_rrn".to_owned(), Value::String(psp_rrn.to_owned()));
    body.insert("bank_rrn".to_owned(), Value::String(bank_rrn));
    // Live answers carry the merchant's service; `test` 1 is its test mode.
    body.insert(
        "service".to_owned(),
        json!({
            "id": engine.config.portmanat.service_id,
            "title": "Simulated shop",
            "test": i32::from(test_service.unwrap_or(answers.test_service)),
            "status": 1,
        }),
    );
    let (timezone_type, timezone) = match engine.config.portmanat.timezone_style {
        TimezoneStyle::Name => (3, "Asia/Baku".to_owned()),
        TimezoneStyle::Offset => (1, local.strftime("%:z").to_string()),
        // Baku is a whole number of hours from UTC.
        TimezoneStyle::Abbreviation => (2, format!("{:+03}", local.offset().seconds() / 3600)),
    };
    body.insert(
        date_name.to_owned(),
        json!({
            "date": format!("{}.000000", local.strftime("%Y-%m-%d %H:%M:%S")),
            "timezone_type": timezone_type,
            "timezone": timezone,
        }),
    );
    json(
        StatusCode::OK,
        &json!({"status": "OK", "code": code_value(engine, code), "description": description, "body": body}),
    )
}

/// Where the customer's browser goes after the bank page: a 303 for a GET
/// return, an auto-submitting form for a POST return.
fn browser_return(engine: &Engine, callback_url: &str, psp_rrn: &str, client_rrn: &str) -> Answer {
    match engine.config.portmanat.callback_method {
        CallbackMethod::Get => {
            let query = form::http_build_query(&[("psp_rrn", psp_rrn), ("client_rrn", client_rrn)]);
            redirect(
                StatusCode::SEE_OTHER,
                &form::append_query(callback_url, &query),
            )
        }
        CallbackMethod::Post => html(
            StatusCode::OK,
            format!(
                "<!doctype html><html><body onload=\"document.forms[0].submit()\">\
                 <form method=\"post\" action=\"{}\">\
                 <input type=\"hidden\" name=\"psp_rrn\" value=\"{}\">\
                 <input type=\"hidden\" name=\"client_rrn\" value=\"{}\">\
                 <noscript><button>Return to the shop</button></noscript></form></body></html>",
                escape_html(callback_url),
                escape_html(psp_rrn),
                escape_html(client_rrn)
            ),
        ),
    }
}

/// `/portmanat/bank`: the simulated bank page.
pub(crate) fn bank_page(engine: &Engine, req: &Req) -> Answer {
    let params = req.params();
    let psp_rrn = form::first(&params, "psp_rrn")
        .unwrap_or_default()
        .to_owned();
    let found = {
        let state = engine.state();
        state
            .store
            .slot_by_txn(Provider::Portmanat, &psp_rrn)
            .and_then(|slot| {
                state.store.payments.get(slot).map(|p| {
                    (
                        slot,
                        p.status,
                        p.reference.clone(),
                        p.amount_text.clone(),
                        p.callback_url.clone(),
                    )
                })
            })
    };
    let Some((slot, status, client_rrn, amount, callback_url)) = found else {
        return html(
            StatusCode::NOT_FOUND,
            "<!doctype html><h1>Unknown payment</h1>".to_owned(),
        );
    };
    if req.method == Method::POST && !status.is_final() {
        let outcome = match form::first(&params, "outcome") {
            Some("success") => Some(Outcome::Success),
            Some("failure") => Some(Outcome::Failure),
            Some("cancel") => Some(Outcome::Cancel),
            _ => None,
        };
        if let Err(err) = engine.pay(slot, outcome, "browser", true) {
            tracing::debug!(%err, "bank page: payment already ended");
        }
        return browser_return(engine, &callback_url, &psp_rrn, &client_rrn);
    }
    if status.is_final() {
        return browser_return(engine, &callback_url, &psp_rrn, &client_rrn);
    }
    html(
        StatusCode::OK,
        format!(
            "<!doctype html><html><head><title>Bank (simulated)</title></head><body>\
             <h1>Simulated bank page</h1><p>Order {} — {} AZN</p>\
             <form method=\"post\" action=\"/portmanat/bank\">\
             <input type=\"hidden\" name=\"psp_rrn\" value=\"{}\">\
             <button name=\"outcome\" value=\"success\">Pay</button>\
             <button name=\"outcome\" value=\"failure\">Decline</button>\
             <button name=\"outcome\" value=\"cancel\">Cancel</button>\
             </form></body></html>",
            escape_html(&client_rrn),
            escape_html(&amount),
            escape_html(&psp_rrn)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked example in providers/NOTES.md.
    #[test]
    fn notes_worked_example() {
        assert_eq!(
            process_hash("777", "ORDER-42", "19.90", "example-secret"),
            "2d468aba7aab970e32f46c7bc70c22e9adb36545db9312e158c0fa2f7d6e2135"
        );
        assert_eq!(
            verify_process_hash(
                "777",
                "ORDER-42",
                "19.90",
                "example-secret",
                "2d468aba7aab970e32f46c7bc70c22e9adb36545db9312e158c0fa2f7d6e2135"
            ),
            Ok(())
        );
    }

    #[test]
    fn wrong_cases_are_refused() {
        let good = process_hash("777", "ORDER-42", "19.90", "example-secret");
        // The exact amount string matters: 19.9 is another message.
        assert_eq!(
            verify_process_hash("777", "ORDER-42", "19.9", "example-secret", &good),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_process_hash("777", "ORDER-42", "19.90", "other-secret", &good),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_process_hash("777", "ORDER-42", "19.90", "example-secret", "zz"),
            Err(VerifyError::Malformed)
        );
        assert_eq!(
            verify_process_hash("777", "ORDER-42", "19.90", "example-secret", &good[..62]),
            Err(VerifyError::Malformed)
        );
    }

    #[test]
    fn codes() {
        assert_eq!(code_of(Status::Pending), (1, "Pending"));
        assert_eq!(code_of(Status::Succeeded), (0, "Success"));
        assert_eq!(code_of(Status::Canceled), (-1, "Request failed"));
    }

    #[test]
    fn baku_is_utc_plus_four() {
        let at: jiff::Timestamp = "2024-07-01T10:00:00Z".parse().unwrap();
        assert_eq!(
            at.to_zoned(BAKU.clone()).strftime("%H:%M").to_string(),
            "14:00"
        );
    }
}
