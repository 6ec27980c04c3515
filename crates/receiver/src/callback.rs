//! From a request to the message that is published: each provider's
//! verification (all of it in `paysettle-core`), the answer it will get once
//! the message is durable, and the redacted copy of the raw request.

use std::net::IpAddr;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderMap, Method};
use jiff::Timestamp;
use paysettle_core::handoff::HandoffKeys;
use paysettle_core::inbound::{CardToken, FORMAT_VERSION, InboundCallback, Payload, RawRequest};
use paysettle_core::paysys::CardRegistration;
use paysettle_core::portmanat::{self, ReturnHint};
use paysettle_core::{Account, CallbackKind, ObservedStatus, Provider, VerifyError, form, redact};
use paysettle_queue::Message;
use secrecy::ExposeSecret;

use crate::answer::{Answer, Refusal};
use crate::settings::{PaysysAccount, PlutuAccount, PortmanatAccount};

/// A verified callback, before it is durable: what to publish and what to
/// answer once it is.
#[derive(Debug)]
pub(crate) struct Verified {
    pub(crate) payload: Payload,
    pub(crate) answer: Answer,
}

/// The `WWW-Authenticate` challenges: RFC 9110 asks every 401 to carry one.
const BASIC_CHALLENGE: &str = "Basic realm=\"paysettle\"";
const SIGNATURE_CHALLENGE: &str = "Signature realm=\"paysettle\", param=\"hashed\"";

fn refusal(error: VerifyError, challenge: &'static str) -> Refusal {
    match error {
        VerifyError::Malformed(problem) => Refusal::Malformed(problem),
        other => Refusal::Unauthenticated {
            reason: other.reason(),
            message: other.to_string(),
            challenge,
        },
    }
}

/// PaySys: the transaction status notification or `partner.notify`, both
/// Basic-authenticated JSON.
pub(crate) fn paysys(
    account_settings: &PaysysAccount,
    headers: &HeaderMap,
    body: &[u8],
    account: &Account,
    received_at: Timestamp,
) -> Result<Verified, Refusal> {
    let verified = account_settings
        .auth
        .verify(headers, body, account, received_at)
        .map_err(|e| refusal(e, BASIC_CHALLENGE))?;
    let payload = match verified.into_kind() {
        CallbackKind::Payment(observation) => Payload::Observation(observation),
        CallbackKind::CardRegistration(CardRegistration::Registered {
            card_id,
            token,
            pan_masked,
        }) => Payload::CardRegistered {
            card_id,
            // The one secret that travels: the shop needs it. `CardToken`
            // never prints it, and the raw copy below has it redacted.
            token: CardToken(token.expose_secret().to_owned()),
            pan_masked,
        },
        CallbackKind::CardRegistration(CardRegistration::Failed {
            card_id,
            code,
            message,
        }) => Payload::CardRegistrationFailed {
            card_id,
            code,
            message,
        },
    };
    Ok(Verified {
        payload,
        answer: Answer::PaysysAccepted,
    })
}

/// PaySys, from the head alone: the Basic credentials, before the body is
/// read.
pub(crate) fn paysys_head(
    account_settings: &PaysysAccount,
    headers: &HeaderMap,
) -> Result<(), Refusal> {
    account_settings
        .auth
        .check_credentials(headers)
        .map_err(|e| refusal(e, BASIC_CHALLENGE))
}

/// Portmanat, from the head alone: a POST with a body must be a form.
pub(crate) fn portmanat_head(parts: &Parts, has_body: bool) -> Result<(), Refusal> {
    if parts.method == Method::POST && has_body && !is_form(&parts.headers) {
        return Err(Refusal::UnsupportedMediaType);
    }
    Ok(())
}

/// Plutu: a card gateway's GET (signed query) or T-Lync's POST (signed JSON).
pub(crate) fn plutu(
    account_settings: &PlutuAccount,
    parts: &Parts,
    body: &[u8],
    account: &Account,
    received_at: Timestamp,
) -> Result<Verified, Refusal> {
    let query = parts.uri.query().unwrap_or_default().as_bytes();
    let browser = parts.method == Method::GET;
    let verified = if browser {
        account_settings
            .verifier
            .verify_query(query, account, received_at)
    } else {
        account_settings
            .verifier
            .verify_json(body, account, received_at)
    }
    .map_err(|e| refusal(e, SIGNATURE_CHALLENGE))?;
    let CallbackKind::Payment(observation) = verified.into_kind() else {
        // Plutu's verifier only produces payment observations.
        return Err(Refusal::Malformed("not a payment callback".to_owned()));
    };
    let outcome = match observation.status {
        ObservedStatus::Succeeded => "approved",
        ObservedStatus::Canceled => "canceled",
        ObservedStatus::Failed => "declined",
        _ => "pending",
    };
    // T-Lync's POST comes from Plutu's server, which wants a plain answer;
    // the GET is the customer's browser coming back through the gateway.
    let answer = match (&account_settings.result_page, browser) {
        (Some(page), true) => Answer::Redirect(page.with_params([
            ("invoice_no", observation.reference.as_str()),
            ("outcome", outcome),
        ])),
        _ => Answer::Accepted,
    };
    Ok(Verified {
        payload: Payload::Observation(observation),
        answer,
    })
}

/// Portmanat: the browser's unsigned return, only ever a hint.
pub(crate) fn portmanat(
    account_settings: &PortmanatAccount,
    parts: &Parts,
    body: &[u8],
) -> Result<Verified, Refusal> {
    let query = parts.uri.query().unwrap_or_default().as_bytes();
    let form_body = if parts.method == Method::POST && !body.is_empty() {
        if !is_form(&parts.headers) {
            return Err(Refusal::UnsupportedMediaType);
        }
        Some(body)
    } else {
        None
    };
    let hint: ReturnHint =
        portmanat::parse_return(query, form_body).map_err(|e| Refusal::Malformed(e.to_string()))?;
    let answer = match &account_settings.result_page {
        Some(page) => {
            let mut params = Vec::with_capacity(2);
            if let Some(client_rrn) = &hint.client_rrn {
                params.push(("client_rrn", client_rrn.as_str()));
            }
            if let Some(psp_rrn) = &hint.psp_rrn {
                params.push(("psp_rrn", psp_rrn.as_str()));
            }
            Answer::Redirect(page.with_params(params))
        }
        None => Answer::Accepted,
    };
    Ok(Verified {
        payload: Payload::PortmanatHint(hint),
        answer,
    })
}

/// A form body, as browsers post it; a missing content type is taken as one
/// (some integrations omit it).
fn is_form(headers: &HeaderMap) -> bool {
    match headers.get(CONTENT_TYPE).map(|v| v.to_str()) {
        None => true,
        Some(Ok(value)) => value.split(';').next().is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        }),
        Some(Err(_)) => false,
    }
}

/// The request as kept: Authorization and other sensitive headers dropped,
/// secret fields and card tokens replaced, full card numbers masked, in the
/// query, the headers and the body alike.
pub(crate) fn raw_request(parts: &Parts, body: &[u8]) -> RawRequest {
    let query = match parts.uri.query() {
        None => Vec::new(),
        Some(query) => match form::parse_pairs(query.as_bytes()) {
            Ok(pairs) => redact::pairs(&pairs),
            // Cannot be read, so cannot be redacted field by field: not kept.
            Err(_) => vec![("[unparsable]".to_owned(), redact::REDACTED.to_owned())],
        },
    };
    RawRequest {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query,
        headers: redact::headers(&parts.headers),
        body: raw_body(body),
    }
}

/// JSON as redacted JSON, a form as redacted `[key, value]` pairs in order,
/// anything else as text with card numbers masked.
fn raw_body(body: &[u8]) -> Option<serde_json::Value> {
    if body.is_empty() {
        return None;
    }
    if let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(body) {
        redact::json(&mut value);
        return Some(value);
    }
    if let Ok(pairs) = form::parse_pairs(body) {
        let pairs = redact::pairs(&pairs)
            .into_iter()
            .map(|(k, v)| serde_json::json!([k, v]))
            .collect();
        return Some(serde_json::Value::Array(pairs));
    }
    Some(serde_json::Value::String(redact::mask_card_numbers(
        &String::from_utf8_lossy(body),
    )))
}

/// The routing word of a payload: the `kind` header of its message.
pub(crate) fn kind(payload: &Payload) -> &'static str {
    match payload {
        Payload::Observation(_) => "observation",
        Payload::PortmanatHint(_) => "portmanat_hint",
        Payload::CardRegistered { .. } => "card.registered",
        Payload::CardRegistrationFailed { .. } => "card.registration_failed",
    }
}

/// Everything about one accepted callback but the payload and raw request.
#[derive(Debug)]
pub(crate) struct Origin {
    pub(crate) provider: Provider,
    pub(crate) account: Account,
    pub(crate) received_at: Timestamp,
    pub(crate) client: IpAddr,
}

/// The buffer a message is serialised into, at first.
const MESSAGE_CAPACITY: usize = 1536;

/// The inbound callback and its queue message (id = the callback's uuid v7,
/// so the worker dedupes a message the spool may deliver twice).
///
/// Card numbers in a card registration's fields are masked first (the
/// token stays in its own field), and the message is signed with the
/// hand-off key (`paysettle-key-id`, `paysettle-signature`): the worker
/// applies nothing else.
pub(crate) fn message(
    origin: Origin,
    payload: Payload,
    raw: RawRequest,
    keys: &HandoffKeys,
) -> Result<(String, Message), serde_json::Error> {
    let payload = payload.masked();
    let kind = kind(&payload);
    let inbound = InboundCallback {
        format: FORMAT_VERSION,
        id: uuid::Uuid::now_v7().to_string(),
        provider: origin.provider,
        account: origin.account,
        received_at: origin.received_at,
        client_addr: Some(origin.client.to_string()),
        payload,
        raw,
    };
    // Sized for a typical message (about 800 bytes, more with a JSON body),
    // so serialising does not grow the buffer step by step.
    let mut json = Vec::with_capacity(MESSAGE_CAPACITY);
    serde_json::to_writer(&mut json, &inbound)?;
    let body = Bytes::from(json);
    let mut message = Message::json(inbound.id.clone(), body)
        .with_header("provider", inbound.provider.as_str())
        .with_header("account", inbound.account.as_str())
        .with_header("kind", kind)
        .with_header("format", FORMAT_VERSION.to_string());
    for (name, value) in keys.sign(&message.body) {
        message = message.with_header(name, value);
    }
    Ok((inbound.id, message))
}

#[cfg(test)]
mod tests {
    use http::Request;

    use super::*;

    fn request_parts(method: &str, uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        builder.body(()).unwrap().into_parts().0
    }

    #[test]
    fn the_raw_request_keeps_no_secret_token_or_card_number() {
        let parts = request_parts(
            "POST",
            "/callbacks/paysys?token=abc&note=4111111111111111",
            &[
                ("authorization", "Basic ZGVtbzpzZWNyZXQ="),
                ("cookie", "s=1"),
                ("content-type", "application/json"),
            ],
        );
        let body = br#"{"method":"partner.notify","params":{"stat":"SUCCESS","id":"c1","token":"0b6227c70d365255","pan":"4111111111111111"}}"#;
        let raw = raw_request(&parts, body);
        let text = serde_json::to_string(&raw).unwrap();
        for leaked in [
            "ZGVtbzpzZWNyZXQ",
            "0b6227c70d365255",
            "4111111111111111",
            "abc",
            "s=1",
        ] {
            assert!(!text.contains(leaked), "{leaked} in {text}");
        }
        assert_eq!(
            raw.headers,
            vec![("content-type".to_owned(), "application/json".to_owned())]
        );
        assert_eq!(raw.query[0], ("token".to_owned(), "[redacted]".to_owned()));
        assert_eq!(raw.body.unwrap()["params"]["pan"], "411111******1111");
    }

    #[test]
    fn form_bodies_keep_their_order_and_text_is_masked() {
        let parts = request_parts("POST", "/callbacks/portmanat", &[]);
        let raw = raw_request(&parts, b"psp_rrn=P-1&client_rrn=R-1&cvv=123");
        assert_eq!(
            raw.body.unwrap(),
            serde_json::json!([
                ["psp_rrn", "P-1"],
                ["client_rrn", "R-1"],
                ["cvv", "[redacted]"]
            ])
        );
        let raw = raw_request(&parts, b"\xffcard 4111111111111111");
        assert_eq!(
            raw.body.unwrap(),
            serde_json::json!("\u{fffd}card 411111******1111")
        );
        let raw = raw_request(
            &request_parts("GET", "/callbacks/plutu?a=%zz&token=t", &[]),
            b"",
        );
        assert_eq!(
            raw.query,
            vec![("[unparsable]".to_owned(), "[redacted]".to_owned())]
        );
        assert_eq!(raw.body, None);
    }

    #[test]
    fn portmanat_posts_must_be_forms() {
        let settings = PortmanatAccount::default();
        let json = request_parts(
            "POST",
            "/callbacks/portmanat",
            &[("content-type", "application/json")],
        );
        assert_eq!(
            portmanat(&settings, &json, b"{}").unwrap_err(),
            Refusal::UnsupportedMediaType
        );
        let form = request_parts(
            "POST",
            "/callbacks/portmanat",
            &[(
                "content-type",
                "application/x-www-form-urlencoded; charset=UTF-8",
            )],
        );
        let verified = portmanat(&settings, &form, b"client_rrn=R-1").unwrap();
        assert_eq!(verified.answer, Answer::Accepted);
        assert!(matches!(
            portmanat(&settings, &form, b"shop=1"),
            Err(Refusal::Malformed(p)) if p.contains("neither psp_rrn nor client_rrn")
        ));
    }
}
