//! The shop API, on its own listener (loopback by default): register an
//! expected payment, read one with its history, list payments.
//!
//! - `POST /v1/payments` `{provider, account?, reference, amount, currency,
//!   provider_transaction_id?}` (amount in minor units) → 201 created, 200
//!   already registered, 400 naming the field (a key given twice too), 409
//!   on a conflicting re-registration, 413 over the size limit, 408 when the
//!   body does not arrive in time.
//! - `GET /v1/payments/{provider}/{reference}[?account=]` → the payment and
//!   its history, or 404. The reference is percent-encoded (it is the shop's
//!   text: `/`, `+`, spaces and non-ASCII letters occur); 400 when it does
//!   not decode to UTF-8.
//! - `GET /v1/payments?status=&provider=&account=&since=&until=&limit=` → a list.
//!   Only `status` may be given more than once; any other parameter twice is
//!   a 400.
//! - `GET /v1/events` and `GET /v1/cards`: the feeds (see [`crate::feed`]).
//! - `GET /healthz`.
//!
//! With a token configured every `/v1` request needs exactly one
//! `Authorization: Bearer` header, compared in constant time. The card feed
//! needs its own token (`card_token`), and no other.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use jiff::Timestamp;
use paysettle_core::{
    Account, Currency, Money, PaymentStatus, Provider, ProviderTxnId, Reference, form,
    json as strict_json,
};
use paysettle_store::{
    CheckState, HistoryEntry, Ledger, PaymentFilter, PaymentRecord, RegisterOutcome, Registration,
    StoreError,
};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::error::WorkerError;
use crate::feed;
use crate::settings::WorkerSettings;

/// The shop API's own settings.
#[derive(Debug, Clone)]
pub struct ShopApiSettings {
    /// When set, every `/v1` request must carry it as a bearer token.
    pub token: Option<SecretString>,
    /// The card feed's own token; without one the card feed is off.
    pub card_token: Option<SecretString>,
    /// The largest request body read.
    pub max_body_bytes: usize,
    /// How long a client may take to send its headers, and then its body.
    pub read_timeout: Duration,
    /// Time allowed for requests in flight at shutdown.
    pub shutdown_grace: Duration,
    /// Connections served at once, and per client address (see
    /// `paysettle-door`: the heaviest client gives way at the limit).
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// The oldest a connection may grow before it is closed gracefully.
    pub max_connection_age: Duration,
}

impl Default for ShopApiSettings {
    fn default() -> Self {
        ShopApiSettings {
            token: None,
            card_token: None,
            max_body_bytes: 16 * 1024,
            read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(5),
            max_connections: 256,
            max_connections_per_client: 128,
            idle_timeout: Duration::from_secs(30),
            max_connection_age: Duration::from_secs(300),
        }
    }
}

struct State {
    ledger: Ledger,
    api: ShopApiSettings,
    worker: Arc<WorkerSettings>,
    /// Ends the feeds' long polls at shutdown.
    shutdown: CancellationToken,
}

/// Serves the shop API on `listener` until `shutdown` fires, then lets
/// requests in flight finish within the grace period.
pub async fn serve(
    listener: TcpListener,
    ledger: Ledger,
    api: ShopApiSettings,
    worker: Arc<WorkerSettings>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let mut door =
        paysettle_door::DoorSettings::new("shop_api", "paysettle_shop_api", api.max_body_bytes);
    door.max_connections = api.max_connections;
    door.max_per_client = api.max_connections_per_client;
    door.first_request_timeout = api.read_timeout;
    door.idle_timeout = api.idle_timeout;
    door.max_connection_age = api.max_connection_age;
    door.close_grace = api.read_timeout;
    door.shutdown_grace = api.shutdown_grace;
    if let Some(problem) = door.problem() {
        return Err(WorkerError::Settings(format!("shop API: {problem}")));
    }
    let state = Arc::new(State {
        ledger,
        api,
        worker,
        shutdown: shutdown.clone(),
    });
    let service = |_peer| {
        let state = Arc::clone(&state);
        hyper::service::service_fn(move |request| {
            let state = Arc::clone(&state);
            async move { Ok::<_, Infallible>(handle(&state, request).await) }
        })
    };
    let drained = paysettle_door::serve(listener, door, service, shutdown).await;
    if drained.dropped > 0 {
        tracing::warn!(
            connections = drained.dropped,
            "shop API requests still running at the end of the grace period were cut off"
        );
    }
    Ok(())
}

type Answer = Response<Full<Bytes>>;

fn json_answer(status: StatusCode, body: &Value) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Every refusal the API gives, mapped to its status in one place.
enum ApiError {
    Invalid {
        field: &'static str,
        message: String,
    },
    Conflict {
        field: &'static str,
        message: String,
    },
    NotFound,
    Unauthorized,
    /// The route exists but is switched off; the message says how to turn
    /// it on.
    Forbidden(&'static str),
    MethodNotAllowed(&'static str),
    TooLarge,
    BodyTimeout,
    Unavailable,
}

impl ApiError {
    fn invalid(field: &'static str, message: impl ToString) -> ApiError {
        ApiError::Invalid {
            field,
            message: message.to_string(),
        }
    }

    fn answer(self) -> Answer {
        match self {
            ApiError::Invalid { field, message } => json_answer(
                StatusCode::BAD_REQUEST,
                &json!({"error": "invalid", "field": field, "message": message}),
            ),
            ApiError::Conflict { field, message } => json_answer(
                StatusCode::CONFLICT,
                &json!({"error": "conflict", "field": field, "message": message}),
            ),
            ApiError::NotFound => {
                json_answer(StatusCode::NOT_FOUND, &json!({"error": "not_found"}))
            }
            ApiError::Forbidden(message) => json_answer(
                StatusCode::FORBIDDEN,
                &json!({"error": "forbidden", "message": message}),
            ),
            ApiError::Unauthorized => {
                let mut answer =
                    json_answer(StatusCode::UNAUTHORIZED, &json!({"error": "unauthorized"}));
                answer.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    header::HeaderValue::from_static("Bearer"),
                );
                answer
            }
            ApiError::MethodNotAllowed(allow) => {
                let mut answer = json_answer(
                    StatusCode::METHOD_NOT_ALLOWED,
                    &json!({"error": "method_not_allowed"}),
                );
                answer
                    .headers_mut()
                    .insert(header::ALLOW, header::HeaderValue::from_static(allow));
                answer
            }
            ApiError::TooLarge => json_answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                &json!({"error": "body_too_large"}),
            ),
            ApiError::BodyTimeout => {
                let mut answer = json_answer(
                    StatusCode::REQUEST_TIMEOUT,
                    &json!({"error": "body_timeout"}),
                );
                // The rest of the body may still arrive: not on this connection.
                answer.headers_mut().insert(
                    header::CONNECTION,
                    header::HeaderValue::from_static("close"),
                );
                answer
            }
            ApiError::Unavailable => json_answer(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({"error": "ledger_unavailable"}),
            ),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> ApiError {
        match err {
            StoreError::Conflict { field, .. } => ApiError::Conflict {
                field: conflict_field(field),
                message: err.to_string(),
            },
            other => {
                tracing::error!(error = %other, "shop API: ledger error");
                ApiError::Unavailable
            }
        }
    }
}

fn conflict_field(field: &str) -> &'static str {
    if field == "amount" {
        "amount"
    } else {
        "provider_transaction_id"
    }
}

async fn handle(state: &State, request: Request<Incoming>) -> Answer {
    let started = std::time::Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let answer = route(state, request).await.unwrap_or_else(ApiError::answer);
    tracing::info!(http.method = %method, http.path = %path, http.status = answer.status().as_u16(), latency_ms = started.elapsed().as_millis() as u64, "shop API request");
    answer
}

fn authorized(state: &State, request: &Request<Incoming>) -> bool {
    let Some(token) = &state.api.token else {
        return true;
    };
    presents(request, token)
}

/// Whether the request carries exactly one `Authorization: Bearer` header
/// with `token`.
fn presents(request: &Request<Incoming>, token: &SecretString) -> bool {
    // Exactly one Authorization header: with two, a proxy and this server
    // could each read a different one.
    let mut values = request.headers().get_all(header::AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false;
    };
    let presented = value.to_str().ok().and_then(bearer_token).unwrap_or("");
    bool::from(presented.as_bytes().ct_eq(token.expose_secret().as_bytes()))
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is
/// case-insensitive (RFC 9110, section 11.1); the token is taken as sent.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token)
}

async fn route(state: &State, request: Request<Incoming>) -> Result<Answer, ApiError> {
    let path = request.uri().path().to_owned();
    // One leading slash: `//v1/payments` is another path, not this one.
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(&path).split('/').collect();
    match segments.as_slice() {
        ["healthz"] => Ok(json_answer(StatusCode::OK, &json!({"status": "ok"}))),
        ["v1", "payments", ..] | ["v1", "events"] if !authorized(state, &request) => {
            Err(ApiError::Unauthorized)
        }
        ["v1", "events"] => match *request.method() {
            Method::GET => event_feed(state, request.uri().query().unwrap_or("")).await,
            _ => Err(ApiError::MethodNotAllowed("GET")),
        },
        ["v1", "cards"] => card_feed(state, &request).await,
        ["v1", "payments"] => match *request.method() {
            Method::POST => register(state, request).await,
            Method::GET => list(state, request.uri().query().unwrap_or("")).await,
            _ => Err(ApiError::MethodNotAllowed("GET, POST")),
        },
        ["v1", "payments", provider, reference] => match *request.method() {
            Method::GET => {
                show(
                    state,
                    provider,
                    reference,
                    request.uri().query().unwrap_or(""),
                )
                .await
            }
            _ => Err(ApiError::MethodNotAllowed("GET")),
        },
        _ => Err(ApiError::NotFound),
    }
}

/// `GET /v1/events`: the settled events, as on RabbitMQ.
async fn event_feed(state: &State, query: &str) -> Result<Answer, ApiError> {
    let pairs = query_pairs(query, &[])?;
    let query = feed::parse_query(&pairs, state.ledger.id()).map_err(feed_error)?;
    let body = feed::events(&state.ledger, &query, &state.shutdown).await?;
    Ok(raw_json_answer(body))
}

/// `GET /v1/cards`: the card registrations, behind their own token.
async fn card_feed(state: &State, request: &Request<Incoming>) -> Result<Answer, ApiError> {
    let Some(token) = &state.api.card_token else {
        return Err(ApiError::Forbidden(
            "the card feed is off: set shop_api.card_token (or card_token_file)",
        ));
    };
    if !presents(request, token) {
        return Err(ApiError::Unauthorized);
    }
    if request.method() != Method::GET {
        return Err(ApiError::MethodNotAllowed("GET"));
    }
    let Some(cards) = &state.worker.cards else {
        return Err(ApiError::NotFound);
    };
    let pairs = query_pairs(request.uri().query().unwrap_or(""), &[])?;
    let query = feed::parse_query(&pairs, cards.id()).map_err(feed_error)?;
    let body = feed::cards(cards, &query, &state.shutdown).await?;
    Ok(raw_json_answer(body))
}

fn feed_error(err: feed::BadParameter) -> ApiError {
    ApiError::Invalid {
        field: err.field,
        message: err.message,
    }
}

/// A 200 whose body is already JSON.
fn raw_json_answer(body: String) -> Answer {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// The currencies each provider settles in.
fn currency_allowed(provider: Provider, currency: Currency) -> bool {
    match provider {
        Provider::Portmanat => currency == Currency::Azn,
        Provider::Paysys => matches!(
            currency,
            Currency::Uzs | Currency::Usd | Currency::Eur | Currency::Rub
        ),
        Provider::Plutu => matches!(currency, Currency::Usd | Currency::Lyd),
    }
}

async fn register(state: &State, request: Request<Incoming>) -> Result<Answer, ApiError> {
    let body = Limited::new(request.into_body(), state.api.max_body_bytes);
    let bytes = match tokio::time::timeout(state.api.read_timeout, body.collect()).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(err))
            if err
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return Err(ApiError::TooLarge);
        }
        Ok(Err(_)) => return Err(ApiError::invalid("body", "the body could not be read")),
        Err(_) => return Err(ApiError::BodyTimeout),
    };
    // Strict: a key given twice (at any depth) is refused, because serde_json
    // keeps the last of the two and other parsers the first.
    let doc = strict_json::parse(&bytes).map_err(|e| {
        ApiError::invalid(e.top_level_key().map_or("body", field_name), e.to_string())
    })?;
    let object = doc
        .as_object()
        .ok_or_else(|| ApiError::invalid("body", "not a JSON object"))?;
    let text = |field: &'static str| -> Result<Option<&str>, ApiError> {
        match object.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(ApiError::invalid(field, "must be a string")),
        }
    };
    let required = |field: &'static str| -> Result<&str, ApiError> {
        text(field)?.ok_or_else(|| ApiError::invalid(field, "is required"))
    };
    let provider: Provider = required("provider")?
        .parse()
        .map_err(|e| ApiError::invalid("provider", e))?;
    let account = match text("account")? {
        Some(a) => Account::parse(a).map_err(|e| ApiError::invalid("account", e))?,
        None => Account::default(),
    };
    if !state.worker.knows(provider, &account) {
        return Err(ApiError::invalid(
            "account",
            format!("no {provider} account {account} is configured"),
        ));
    }
    let reference =
        Reference::parse(required("reference")?).map_err(|e| ApiError::invalid("reference", e))?;
    let currency =
        Currency::from_code(required("currency")?).map_err(|e| ApiError::invalid("currency", e))?;
    if !currency_allowed(provider, currency) {
        return Err(ApiError::invalid(
            "currency",
            format!("{provider} does not settle in {currency}"),
        ));
    }
    let amount = object
        .get("amount")
        .ok_or_else(|| ApiError::invalid("amount", "is required"))?;
    if !amount.is_number() {
        return Err(ApiError::invalid(
            "amount",
            "must be an integer number of minor units",
        ));
    }
    let money =
        Money::from_minor_json(amount, currency).map_err(|e| ApiError::invalid("amount", e))?;
    if money.minor() == 0 {
        return Err(ApiError::invalid("amount", "must be more than zero"));
    }
    let provider_txn_id = text("provider_transaction_id")?
        .map(ProviderTxnId::parse)
        .transpose()
        .map_err(|e| ApiError::invalid("provider_transaction_id", e))?;
    let registration = Registration {
        provider,
        account: account.clone(),
        reference: reference.clone(),
        money,
        provider_txn_id,
        registered_at: state.worker.clock.now(),
    };
    let outcome = state.ledger.register(registration).await?;
    let payment = state
        .ledger
        .payment_by_id(outcome.payment_id())
        .await?
        .ok_or(ApiError::Unavailable)?;
    let status = match outcome {
        RegisterOutcome::Created(_) => StatusCode::CREATED,
        RegisterOutcome::AlreadyRegistered(_) | RegisterOutcome::Adopted(_) => StatusCode::OK,
    };
    tracing::info!(payment.provider = %provider, payment.reference = %reference, outcome = ?outcome, "payment registered");
    Ok(json_answer(
        status,
        &json!({"payment": payment_view(&payment)}),
    ))
}

async fn show(
    state: &State,
    provider: &str,
    reference: &str,
    query: &str,
) -> Result<Answer, ApiError> {
    let provider: Provider = provider.parse().map_err(|_| ApiError::NotFound)?;
    // The reference is the shop's own text, percent-encoded in the path
    // (`/` as `%2F`); one that is not UTF-8 is refused, one that no payment
    // could have (a control character) is simply not found.
    let reference = form::decode_path_segment(reference)
        .map_err(|_| ApiError::invalid("reference", "is not percent-encoded UTF-8"))?;
    let reference = Reference::parse(&reference).map_err(|_| ApiError::NotFound)?;
    let pairs = query_pairs(query, &["account"])?;
    let account = match pairs.iter().find(|(k, _)| k == "account") {
        Some((_, a)) => Account::parse(a).map_err(|e| ApiError::invalid("account", e))?,
        None => Account::default(),
    };
    let payment = state
        .ledger
        .payment(provider, account, reference)
        .await?
        .ok_or(ApiError::NotFound)?;
    let history = state.ledger.history(payment.id).await?;
    let check = state.ledger.check_state(payment.id).await?;
    Ok(json_answer(
        StatusCode::OK,
        &json!({
            "payment": payment_view(&payment),
            "history": history.iter().map(history_view).collect::<Vec<_>>(),
            "check": check.as_ref().map(check_view),
        }),
    ))
}

async fn list(state: &State, query: &str) -> Result<Answer, ApiError> {
    // `status` may repeat (the statuses add up); every other one may not.
    let pairs = query_pairs(
        query,
        &["provider", "account", "since", "until", "limit", "after"],
    )?;
    let mut filter = PaymentFilter {
        limit: 100,
        ..PaymentFilter::default()
    };
    for (key, value) in &pairs {
        match key.as_str() {
            "status" => {
                for status in value.split(',').filter(|s| !s.is_empty()) {
                    filter.statuses.push(
                        status
                            .parse::<PaymentStatus>()
                            .map_err(|e| ApiError::invalid("status", e))?,
                    );
                }
            }
            "provider" => {
                filter.provider = Some(
                    value
                        .parse()
                        .map_err(|e| ApiError::invalid("provider", e))?,
                )
            }
            "account" => {
                filter.account =
                    Some(Account::parse(value).map_err(|e| ApiError::invalid("account", e))?)
            }
            "since" => {
                filter.since = Some(
                    value
                        .parse::<Timestamp>()
                        .map_err(|_| ApiError::invalid("since", "must be an RFC 3339 time"))?,
                )
            }
            "until" => {
                filter.until = Some(
                    value
                        .parse::<Timestamp>()
                        .map_err(|_| ApiError::invalid("until", "must be an RFC 3339 time"))?,
                )
            }
            "limit" => {
                filter.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=1000).contains(n))
                    .ok_or_else(|| ApiError::invalid("limit", "must be 1 to 1000"))?;
            }
            "after" => {
                filter.after_id =
                    Some(paysettle_store::PaymentId(value.parse().map_err(|_| {
                        ApiError::invalid("after", "must be a payment id")
                    })?))
            }
            other => {
                return Err(ApiError::invalid(
                    "query",
                    format!(
                        "unknown parameter {}",
                        other.chars().take(32).collect::<String>()
                    ),
                ));
            }
        }
    }
    let payments = state.ledger.list(filter).await?;
    Ok(json_answer(
        StatusCode::OK,
        &json!({"payments": payments.iter().map(payment_view).collect::<Vec<_>>()}),
    ))
}

/// The query's pairs, refusing any of `single` given more than once: which
/// of two values counts is a guess this API does not make.
fn query_pairs(query: &str, single: &[&'static str]) -> Result<Vec<(String, String)>, ApiError> {
    let pairs = form::parse_pairs(query.as_bytes()).map_err(|e| ApiError::invalid("query", e))?;
    for &name in single {
        if pairs.iter().filter(|(k, _)| k == name).count() > 1 {
            return Err(ApiError::invalid(
                name,
                format!("{name} is given more than once"),
            ));
        }
    }
    Ok(pairs)
}

/// The field a repeated key names, for the 400's `field`.
fn field_name(key: &str) -> &'static str {
    const FIELDS: [&str; 6] = [
        "provider",
        "account",
        "reference",
        "amount",
        "currency",
        "provider_transaction_id",
    ];
    FIELDS.into_iter().find(|f| *f == key).unwrap_or("body")
}

fn money_minor(money: Option<Money>) -> Value {
    money.map_or(Value::Null, |m| json!(m.minor()))
}

/// A payment as the shop sees it.
pub fn payment_view(p: &PaymentRecord) -> Value {
    json!({
        "id": p.id.0,
        "provider": p.provider,
        "account": p.account,
        "reference": p.reference,
        "provider_transaction_id": p.provider_txn_id,
        "status": p.status,
        "amount": money_minor(p.expected),
        "currency": p.expected.or(p.paid).map(|m| m.currency().code()),
        "paid": money_minor(p.paid),
        "refunded": money_minor(p.refunded),
        "paid_currency": p.paid.or(p.refunded).map(|m| m.currency().code()),
        "registered": p.registered,
        "mismatch": p.mismatch,
        "flag": p.flag.as_ref().map(flag_view),
        "ledger_version": p.version,
        "created_at": p.created_at.to_string(),
        "updated_at": p.updated_at.to_string(),
    })
}

/// A flag as the shop sees it: what disagrees, and what the provider said.
fn flag_view(flag: &paysettle_core::decide::Flag) -> Value {
    json!({
        "kind": flag.kind.code(),
        "detail": flag.detail,
        "awaiting_recheck": flag.awaiting_recheck,
        "provider_said": {
            "status": flag.claim.status.target(),
            "amount": money_minor(flag.claim.money),
            "currency": flag.claim.money.map(|m| m.currency().code()),
            "provider_transaction_id": flag.claim.provider_txn_id,
            "source": flag.claim.source,
        },
    })
}

fn history_view(h: &HistoryEntry) -> Value {
    json!({
        "source": h.source,
        "observed_status": h.observed_status,
        "provider_status": h.provider_status,
        "amount": money_minor(h.money),
        "refund_total": money_minor(h.refund_total),
        "provider_time": h.provider_time.map(|t| t.to_string()),
        "provider_time_raw": h.provider_time_raw,
        "observed_at": h.observed_at.to_string(),
        "recorded_at": h.recorded_at.to_string(),
        "outcome": h.outcome,
        "from": h.from_status,
        "to": h.to_status,
        "reason": h.reason,
        "ledger_version": h.version,
    })
}

/// Where a payment not yet final stands with the provider's status API: the
/// next check, the deadline, and the last failed check (when and why).
fn check_view(c: &CheckState) -> Value {
    json!({
        "attempts": c.attempts,
        "next_check_at": c.next_check_at.to_string(),
        "deadline_at": c.deadline_at.to_string(),
        "last_failure": c.last_error.as_ref().map(|error| json!({
            "at": c.last_error_at.map(|t| t.to_string()),
            "error": error,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_the_token_exact() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc"), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Bearer  abc"), Some(" abc"), "not trimmed");
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearerabc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn a_repeated_key_names_its_top_level_field() {
        let field = |body: &[u8]| {
            strict_json::parse(body)
                .unwrap_err()
                .top_level_key()
                .map_or("body", field_name)
        };
        assert_eq!(
            field(br#"{"amount":1250,"currency":"USD","amount":1}"#),
            "amount"
        );
        // Nested repeats are refused too; the field is the top-level one.
        assert_eq!(field(br#"{"meta":{"a":1,"a":2}}"#), "body");
        assert_eq!(field(br#"{"reference":{"a":1,"a":2}}"#), "reference");
        assert_eq!(field(b"{\"a\":"), "body");
        assert_eq!(field_name("amount"), "amount");
        assert_eq!(field_name("something-else"), "body");
    }

    #[test]
    fn single_parameters_given_twice_are_refused() {
        assert!(query_pairs("status=pending&status=stale", &["limit"]).is_ok());
        let Err(ApiError::Invalid { field, message }) =
            query_pairs("limit=1&status=x&limit=1000", &["limit"])
        else {
            panic!("a repeated limit must be refused");
        };
        assert_eq!(field, "limit");
        assert_eq!(message, "limit is given more than once");
        assert!(matches!(
            query_pairs("a=%zz", &[]),
            Err(ApiError::Invalid { field: "query", .. })
        ));
    }
}
