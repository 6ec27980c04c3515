//! The one HTTP listener: the accept loop with graceful shutdown, the router
//! that mounts each provider under its own prefix and the control API under
//! `/_sim`, and the fault injector that stands between a provider API request
//! and its handler (latency, 500, 429 + Retry-After, timeouts, garbage).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use rand::Rng;
use serde::Serialize;
use tokio::net::TcpListener;
use tracing::{debug, info, warn};

use crate::engine::Engine;
use crate::model::Provider;
use crate::scenario::Fault;
use crate::{control, form, paysys, plutu, portmanat};

/// Largest request body read; anything bigger is refused with 413.
const MAX_BODY: usize = 1 << 20;

/// How long open connections may take to finish after shutdown begins.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// Every answer the simulator gives.
pub(crate) type Answer = Response<Full<Bytes>>;

/// Returned by the service to make hyper close the connection without an
/// answer: that is how an injected timeout ends.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped on purpose (injected timeout or shutdown)")]
pub(crate) struct Dropped;

/// A request, read whole.
#[derive(Debug)]
pub(crate) struct Req {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Req {
    /// Decoded query-string pairs.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form::parse_pairs(&self.query)
    }

    /// Decoded form-body pairs (empty unless the body is a form).
    pub fn form_pairs(&self) -> Vec<(String, String)> {
        let is_form = self
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        if is_form {
            form::parse_pairs(&String::from_utf8_lossy(&self.body))
        } else {
            Vec::new()
        }
    }

    /// Form body pairs first, then query pairs: what a PHP handler reading
    /// `$_REQUEST`-style input would see.
    pub fn params(&self) -> Vec<(String, String)> {
        let mut pairs = self.form_pairs();
        pairs.extend(self.query_pairs());
        pairs
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

fn response(status: StatusCode, content_type: &'static str, body: Bytes) -> Answer {
    let mut answer = Response::new(Full::new(body));
    *answer.status_mut() = status;
    answer
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    answer
}

/// A JSON answer.
pub(crate) fn json<T: Serialize>(status: StatusCode, value: &T) -> Answer {
    match serde_json::to_vec(value) {
        Ok(body) => response(status, "application/json", body.into()),
        Err(err) => {
            warn!(%err, "cannot serialise an answer");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot serialise the answer",
            )
        }
    }
}

/// A plain-text answer.
pub(crate) fn text(status: StatusCode, body: &str) -> Answer {
    response(
        status,
        "text/plain; charset=utf-8",
        Bytes::copy_from_slice(body.as_bytes()),
    )
}

/// An HTML answer.
pub(crate) fn html(status: StatusCode, body: String) -> Answer {
    response(status, "text/html; charset=utf-8", body.into())
}

/// A redirect (302 or 303) to `location`.
pub(crate) fn redirect(status: StatusCode, location: &str) -> Answer {
    let mut answer = text(status, "");
    match HeaderValue::from_str(location) {
        Ok(value) => {
            answer.headers_mut().insert(header::LOCATION, value);
            answer
        }
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "redirect target is not a valid header",
        ),
    }
}

/// Escapes text for HTML.
pub(crate) fn escape_html(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    for c in input.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Serves connections on `listener` until the engine is cancelled, then
/// drains open connections for at most [`DRAIN_GRACE`].
pub(crate) async fn serve(listener: TcpListener, engine: Arc<Engine>) {
    let graceful = GracefulShutdown::new();
    loop {
        tokio::select! {
            () = engine.cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    let engine_for_conn = Arc::clone(&engine);
                    let service = service_fn(move |request| {
                        let engine = Arc::clone(&engine_for_conn);
                        async move { handle(engine, request).await }
                    });
                    let connection = http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    let watched = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(err) = watched.await {
                            debug!(%peer, %err, "connection ended with an error");
                        }
                    });
                }
                Err(err) => {
                    // Out of file descriptors and the like: back off briefly
                    // instead of spinning.
                    warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => debug!("all connections closed"),
        () = tokio::time::sleep(DRAIN_GRACE) => warn!("connections still open after the grace period; closing"),
    }
    info!("listener stopped");
}

async fn handle(engine: Arc<Engine>, request: Request<Incoming>) -> Result<Answer, Dropped> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) => {
            debug!(%err, "request body refused");
            return Ok(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large or cut short",
            ));
        }
    };
    let req = Req {
        method: parts.method,
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().unwrap_or_default().to_owned(),
        headers: parts.headers,
        body,
    };
    debug!(method = %req.method, path = %req.path, "request");
    route(&engine, &req).await
}

async fn route(engine: &Engine, req: &Req) -> Result<Answer, Dropped> {
    let segments: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["_sim", rest @ ..] => Ok(control::handle(engine, req, rest).await),
        ["portmanat", "process"] => {
            faulted(engine, Provider::Portmanat, req, portmanat::process).await
        }
        ["portmanat", "check"] => faulted(engine, Provider::Portmanat, req, portmanat::check).await,
        ["portmanat", "bank"] => Ok(portmanat::bank_page(engine, req)),
        ["paysys", "gateway"] => faulted(engine, Provider::Paysys, req, paysys::gateway).await,
        ["paysys", "3ds", token] => Ok(paysys::secure_page(engine, req, token)),
        ["plutu", "api", "v1", "transaction", gateway, "confirm"] => {
            let gateway = (*gateway).to_owned();
            faulted(engine, Provider::Plutu, req, move |engine, req| {
                plutu::confirm(engine, req, &gateway)
            })
            .await
        }
        ["plutu", "checkout", token] => Ok(plutu::checkout_page(engine, req, token)),
        [""] => Ok(text(
            StatusCode::OK,
            "paysettle provider simulator: /portmanat, /paysys, /plutu; control API under /_sim\n",
        )),
        _ => Ok(text(StatusCode::NOT_FOUND, "not found")),
    }
}

/// The payment a status check asks about: Portmanat's `/check` names its
/// psp_rrn, PaySys's `paysys.check_payment` its partner_trans_id. `None`
/// for any other request.
fn status_check_key(provider: Provider, req: &Req) -> Option<String> {
    match provider {
        Provider::Portmanat if req.path.trim_matches('/').ends_with("check") => req
            .params()
            .into_iter()
            .find(|(name, _)| name == "psp_rrn")
            .map(|(_, value)| value),
        Provider::Paysys => {
            let request: serde_json::Value = serde_json::from_slice(&req.body).ok()?;
            (request.get("method")?.as_str()? == "paysys.check_payment")
                .then(|| request.get("params")?.get("partner_trans_id"))
                .flatten()
                .map(|id| id.as_str().map_or_else(|| id.to_string(), str::to_owned))
        }
        _ => None,
    }
}

const ERROR_PAGE_500: &str = "<html><head><title>500 Internal Server Error</title></head>\
<body><center><h1>500 Internal Server Error</h1></center><hr><center>nginx</center></body></html>";

/// Runs a provider API handler under the scenario: waits the drawn latency,
/// then answers with the drawn fault or the handler's answer.
async fn faulted<F>(
    engine: &Engine,
    provider: Provider,
    req: &Req,
    handler: F,
) -> Result<Answer, Dropped>
where
    F: FnOnce(&Engine, &Req) -> Answer,
{
    let plan = engine.plan_request(provider);
    let _check = status_check_key(provider, req).map(|key| engine.begin_check(provider, key));
    if !plan.latency.is_zero() {
        let started = tokio::time::Instant::now();
        tokio::select! {
            () = tokio::time::sleep(plan.latency) => {}
            () = engine.cancel.cancelled() => return Err(Dropped),
        }
        engine.record_delay(provider, started.elapsed());
    }
    match plan.fault {
        None => Ok(handler(engine, req)),
        Some(Fault::Http500) => {
            debug!(%provider, "injected 500");
            Ok(html(
                StatusCode::INTERNAL_SERVER_ERROR,
                ERROR_PAGE_500.to_owned(),
            ))
        }
        Some(Fault::TooManyRequests) => {
            debug!(%provider, "injected 429");
            let mut answer = text(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
            answer.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(plan.retry_after_secs),
            );
            Ok(answer)
        }
        Some(Fault::Timeout) => {
            // The request is not processed: it is lost before the provider
            // sees it, and the client waits for nothing.
            debug!(%provider, hold_ms = plan.timeout_hold.as_millis() as u64, "injected timeout");
            tokio::select! {
                () = tokio::time::sleep(plan.timeout_hold) => {}
                () = engine.cancel.cancelled() => {}
            }
            Err(Dropped)
        }
        Some(Fault::Garbage) => {
            // The request is processed (a payment may be created), but the
            // answer cannot be read: the worst case for a client.
            let real = handler(engine, req);
            debug!(%provider, "injected garbage");
            Ok(garble(engine, real))
        }
    }
}

fn garble(engine: &Engine, real: Answer) -> Answer {
    let truncate = engine.with_rng(|rng| rng.random_bool(0.5));
    let body = real.into_body();
    let bytes = body_bytes(body);
    let garbage: Bytes = if truncate && bytes.len() > 2 {
        bytes.slice(..bytes.len() / 2)
    } else {
        Bytes::from_static(
            b"<html><body><h1>502 Bad Gateway</h1>upstream sent an invalid response</body></html>",
        )
    };
    // Claims JSON whatever it holds, as a misbehaving proxy would.
    response(StatusCode::OK, "application/json", garbage)
}

/// The bytes of a complete in-memory body.
fn body_bytes(body: Full<Bytes>) -> Bytes {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use hyper::body::Body;

    // `Full` yields its one frame immediately, so a no-op waker suffices.
    let mut body = pin!(body);
    let mut context = Context::from_waker(Waker::noop());
    match body.as_mut().poll_frame(&mut context) {
        Poll::Ready(Some(Ok(frame))) => frame.into_data().unwrap_or_default(),
        Poll::Ready(Some(Err(never))) => match never {},
        Poll::Ready(None) | Poll::Pending => Bytes::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn reads_a_full_body() {
        assert_eq!(
            body_bytes(Full::new(Bytes::from_static(b"abc"))),
            Bytes::from_static(b"abc")
        );
    }
}
