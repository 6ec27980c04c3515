//! Every answer the receiver gives, and [`respond`], the one function that
//! turns an answer into HTTP.
//!
//! Bodies are short JSON naming what went wrong in stable words (`code`, also
//! the metric label) and a sentence for a person. None carries a secret, a
//! stack trace, a queue name or the value that failed to match; a malformed
//! request's message names the field and the problem, from `paysettle-core`'s
//! bounded texts, with card numbers masked.

use bytes::Bytes;
use http::header::{
    ALLOW, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, HeaderValue, LOCATION, RETRY_AFTER,
    WWW_AUTHENTICATE,
};
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use paysettle_core::redact;

/// The response type of every route.
pub(crate) type HttpResponse = Response<Full<Bytes>>;

/// How long a provider is asked to wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "5";

/// The longest problem description a 400 carries.
const MAX_PROBLEM: usize = 200;

/// What the receiver answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// A PaySys notification is durable: `{"error": null}`, what PaySys expects.
    PaysysAccepted,
    /// A callback is durable and no result page is configured.
    Accepted,
    /// A browser's callback is durable: on to the shop's page.
    Redirect(String),
    /// `/healthz`: the process is alive.
    Alive,
    /// `/readyz` with the queue durable.
    Ready,
    /// `/readyz` with the queue durable nowhere.
    NotReady,
    /// `/metrics`: the Prometheus text.
    Metrics(String),
    /// The request is refused.
    Refused(Refusal),
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotFound,
    MethodNotAllowed(&'static [Method]),
    /// Credentials or signature missing or wrong; `reason` is
    /// [`paysettle_core::VerifyError::reason`], `challenge` the
    /// `WWW-Authenticate` value.
    Unauthenticated {
        reason: &'static str,
        message: String,
        challenge: &'static str,
    },
    /// The request is authentic (or needs no authentication) but cannot be
    /// read as the provider's callback.
    Malformed(String),
    BodyTooLarge {
        limit: usize,
    },
    BodyTimeout,
    /// The client broke off while sending the body.
    BodyUnreadable,
    UnsupportedMediaType,
    /// Neither the broker nor the spool took the callback: nothing is
    /// claimed, the provider should try again.
    NotDurable,
    /// The bytes of bodies being read (all clients, or this client's
    /// share) are at their budget: the body is not read, try again.
    Busy,
}

impl Refusal {
    /// The stable word for the answer's `code`, the metric's `outcome` and
    /// the log's `outcome`.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            Refusal::NotFound => "not_found",
            Refusal::MethodNotAllowed(_) => "method_not_allowed",
            Refusal::Unauthenticated { reason, .. } => reason,
            Refusal::Malformed(_) => "malformed",
            Refusal::BodyTooLarge { .. } => "body_too_large",
            Refusal::BodyTimeout => "body_timeout",
            Refusal::BodyUnreadable => "body_unreadable",
            Refusal::UnsupportedMediaType => "unsupported_media_type",
            Refusal::NotDurable => "not_durable",
            Refusal::Busy => "busy",
        }
    }
}

impl Answer {
    /// The `outcome` label.
    pub(crate) fn outcome(&self) -> &'static str {
        match self {
            Answer::PaysysAccepted | Answer::Accepted | Answer::Redirect(_) => "accepted",
            Answer::Alive | Answer::Ready | Answer::Metrics(_) => "ok",
            Answer::NotReady => "not_ready",
            Answer::Refused(refusal) => refusal.code(),
        }
    }
}

fn json(status: StatusCode, body: &serde_json::Value) -> HttpResponse {
    json_bytes(status, Bytes::from(body.to_string()))
}

/// The answers every accepted callback gets, written once.
const PAYSYS_ACCEPTED: &[u8] = br#"{"error":null}"#;
const ACCEPTED: &[u8] = br#"{"status":"accepted"}"#;

fn json_bytes(status: StatusCode, body: Bytes) -> HttpResponse {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    json(
        status,
        &serde_json::json!({ "error": { "code": code, "message": message } }),
    )
}

/// Cuts a problem description to [`MAX_PROBLEM`] characters and masks any
/// card number in it: it may quote the request.
fn problem(text: &str) -> String {
    let masked = redact::mask_card_numbers(text);
    match masked.char_indices().nth(MAX_PROBLEM) {
        Some((cut, _)) => format!("{}…", &masked[..cut]),
        None => masked,
    }
}

/// The one mapping from answers to HTTP.
pub(crate) fn respond(answer: &Answer) -> HttpResponse {
    match answer {
        Answer::PaysysAccepted => json_bytes(StatusCode::OK, Bytes::from_static(PAYSYS_ACCEPTED)),
        Answer::Accepted => json_bytes(StatusCode::OK, Bytes::from_static(ACCEPTED)),
        Answer::Redirect(location) => {
            let mut response = json_bytes(StatusCode::SEE_OTHER, Bytes::from_static(ACCEPTED));
            match HeaderValue::from_str(location) {
                Ok(value) => {
                    response.headers_mut().insert(LOCATION, value);
                    response
                }
                // Built from a validated page and encoded parameters, so this
                // cannot happen; if it did, the callback is stored all the same.
                Err(_) => json_bytes(StatusCode::OK, Bytes::from_static(ACCEPTED)),
            }
        }
        Answer::Alive => json(StatusCode::OK, &serde_json::json!({ "status": "alive" })),
        Answer::Ready => json(StatusCode::OK, &serde_json::json!({ "status": "ready" })),
        Answer::NotReady => json(
            StatusCode::SERVICE_UNAVAILABLE,
            &serde_json::json!({ "status": "not_ready" }),
        ),
        Answer::Metrics(text) => {
            let mut response = Response::new(Full::new(Bytes::from(text.clone())));
            response.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        Answer::Refused(refusal) => refuse(refusal),
    }
}

fn refuse(refusal: &Refusal) -> HttpResponse {
    let code = refusal.code();
    match refusal {
        Refusal::NotFound => error(StatusCode::NOT_FOUND, code, "no such route"),
        Refusal::MethodNotAllowed(allowed) => {
            let mut response = error(StatusCode::METHOD_NOT_ALLOWED, code, "method not allowed");
            let allow = allowed
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            if let Ok(value) = HeaderValue::from_str(&allow) {
                response.headers_mut().insert(ALLOW, value);
            }
            response
        }
        Refusal::Unauthenticated {
            message, challenge, ..
        } => {
            let mut response = error(StatusCode::UNAUTHORIZED, code, message);
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
            response
        }
        Refusal::Malformed(text) => error(StatusCode::BAD_REQUEST, code, &problem(text)),
        Refusal::BodyTooLarge { limit } => closing(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            code,
            &format!("the body is larger than {limit} bytes"),
        )),
        Refusal::BodyTimeout => closing(error(
            StatusCode::REQUEST_TIMEOUT,
            code,
            "the body did not arrive in time",
        )),
        Refusal::BodyUnreadable => closing(error(
            StatusCode::BAD_REQUEST,
            code,
            "the body could not be read",
        )),
        Refusal::UnsupportedMediaType => error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code,
            "expected application/x-www-form-urlencoded",
        ),
        Refusal::NotDurable => {
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                code,
                "the callback could not be stored; try again later",
            );
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            response
        }
        Refusal::Busy => {
            let mut response = closing(error(
                StatusCode::SERVICE_UNAVAILABLE,
                code,
                "too many request bodies in flight; try again later",
            ));
            response
                .headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
            response
        }
    }
}

/// A body left unread (too large, too slow) leaves the connection in an
/// unknown place: close it after the answer rather than read the rest.
pub(crate) fn closing(mut response: HttpResponse) -> HttpResponse {
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    async fn body(response: HttpResponse) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn paysys_gets_its_documented_answer() {
        let response = respond(&Answer::PaysysAccepted);
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(body(response).await, serde_json::json!({"error": null}));
    }

    #[tokio::test]
    async fn refusals_carry_status_code_and_headers() {
        let cases = [
            (Refusal::NotFound, 404, "not_found"),
            (
                Refusal::MethodNotAllowed(&[Method::GET, Method::POST]),
                405,
                "method_not_allowed",
            ),
            (
                Refusal::Unauthenticated {
                    reason: "wrong_credentials",
                    message: "the credentials are not valid".into(),
                    challenge: "Basic realm=\"paysettle\"",
                },
                401,
                "wrong_credentials",
            ),
            (Refusal::Malformed("amount: x".into()), 400, "malformed"),
            (Refusal::BodyTooLarge { limit: 10 }, 413, "body_too_large"),
            (Refusal::BodyTimeout, 408, "body_timeout"),
            (Refusal::NotDurable, 503, "not_durable"),
        ];
        for (refusal, status, code) in cases {
            let response = respond(&Answer::Refused(refusal.clone()));
            assert_eq!(response.status().as_u16(), status, "{refusal:?}");
            let headers = response.headers().clone();
            assert_eq!(body(response).await["error"]["code"], code);
            match status {
                405 => assert_eq!(headers[ALLOW], "GET, POST"),
                401 => assert_eq!(headers[WWW_AUTHENTICATE], "Basic realm=\"paysettle\""),
                503 => assert_eq!(headers[RETRY_AFTER], "5"),
                408 | 413 => assert_eq!(headers[CONNECTION], "close"),
                _ => {}
            }
        }
    }

    #[tokio::test]
    async fn problems_are_short_and_mask_card_numbers() {
        let response = respond(&Answer::Refused(Refusal::Malformed(format!(
            "unknown gateway 4111111111111111{}",
            "x".repeat(500)
        ))));
        let message = body(response).await["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(message.contains("411111******1111"), "{message}");
        assert!(message.chars().count() <= MAX_PROBLEM + 1);
    }

    #[tokio::test]
    async fn a_redirect_carries_its_location() {
        let response = respond(&Answer::Redirect("https://shop.example/r?x=1".into()));
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[LOCATION], "https://shop.example/r?x=1");
    }
}
