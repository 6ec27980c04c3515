//! One request, start to finish: route, read, verify, publish, answer, and
//! the one access-log line and metrics that describe it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{Method, Request};
use hyper::body::{Body as _, Incoming};
use jiff::Timestamp;
use paysettle_core::inbound::Payload;
use paysettle_core::{Account, Provider};
use paysettle_queue::{Durable, Queue, QueueError};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::answer::{self, Answer, HttpResponse, Refusal, respond};
use crate::budget::BodyBudget;
use crate::callback::{self, Origin, Verified};
use crate::hints::HintGate;
use crate::route::{self, Route};
use crate::settings::ReceiverSettings;
use crate::{body, telemetry};

/// What every connection's service shares.
/// Why a hint was dropped when the hints queue is at its bound.
const QUEUE_FULL: &str = "queue_full";

/// What became of a publish.
enum Published {
    /// Durable: where.
    Durable(&'static str),
    /// A hint the full hints queue refused.
    HintsFull,
    /// Durable nowhere: the provider must retry (503).
    Nowhere,
}

#[derive(Debug)]
pub(crate) struct Receiver {
    pub(crate) settings: Arc<ReceiverSettings>,
    pub(crate) queue: Queue,
    /// Publishes run as their own tasks, so a provider that hangs up while
    /// its callback is being published does not cancel the publish halfway
    /// (a Plutu callback is never sent again). Shutdown waits for them.
    pub(crate) publishes: TaskTracker,
    /// Bytes of bodies being read, all connections together.
    pub(crate) budget: Arc<BodyBudget>,
    /// What Portmanat's unsigned hints may cost.
    pub(crate) hints: HintGate,
}

/// What the access log and metrics say about a request.
#[derive(Debug)]
struct Record {
    provider: &'static str,
    route: &'static str,
    account: Option<Account>,
    message_id: Option<String>,
    durable: Option<&'static str>,
    /// Refused before its body was read: the connection is closed after the
    /// answer rather than left with a body in it.
    body_unread: bool,
    /// A Portmanat hint answered but not queued, and why.
    hint_dropped: Option<&'static str>,
}

impl Receiver {
    /// Answers one request. Never fails: every failure is an answer.
    pub(crate) async fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> HttpResponse {
        let started = Instant::now();
        let received_at = Timestamp::now();
        let (parts, body) = request.into_parts();
        let mut record = Record {
            provider: "none",
            route: route::UNMATCHED,
            account: None,
            message_id: None,
            durable: None,
            body_unread: false,
            hint_dropped: None,
        };
        let answer = self
            .answer(&parts, body, peer, received_at, &mut record)
            .await;
        let mut response = respond(&answer);
        if record.body_unread {
            response = answer::closing(response);
        }
        let took = started.elapsed();
        let outcome = answer.outcome();
        telemetry::request(record.provider, record.route, outcome, took);
        if let Answer::Refused(
            refusal @ (Refusal::Unauthenticated { .. } | Refusal::Malformed(_)),
        ) = &answer
        {
            telemetry::verification_failure(record.provider, refusal.code());
        }
        access_log(
            &parts.method,
            &record,
            &answer,
            response.status().as_u16(),
            took,
            peer,
        );
        response
    }

    async fn answer(
        &self,
        parts: &Parts,
        body: Incoming,
        peer: SocketAddr,
        received_at: Timestamp,
        record: &mut Record,
    ) -> Answer {
        // Until the body is read, a refusal closes the connection after its
        // answer rather than leave the body in it.
        record.body_unread = !body.is_end_stream();
        let Some(route) = Route::parse(parts.uri.path()) else {
            return Answer::Refused(Refusal::NotFound);
        };
        record.route = route.label();
        let (provider, account) = match &route {
            Route::Callback {
                provider, account, ..
            } => {
                record.provider = provider.as_str();
                match account {
                    Some(account) if self.has_account(*provider, account) => {
                        record.account = Some(account.clone());
                        (*provider, account.clone())
                    }
                    _ => return Answer::Refused(Refusal::NotFound),
                }
            }
            _ => {
                if !route.allowed().contains(&parts.method) {
                    return Answer::Refused(Refusal::MethodNotAllowed(route.allowed()));
                }
                return self.operational(&route);
            }
        };
        if !route.allowed().contains(&parts.method) {
            return Answer::Refused(Refusal::MethodNotAllowed(route.allowed()));
        }
        // Everything the head alone can tell is judged before a byte of the
        // body is read, and so before hyper answers `Expect: 100-continue`:
        // a stranger's body costs nothing.
        let limit = self.settings.max_body_bytes;
        let head = self
            .check_head(provider, &account, parts, !body.is_end_stream())
            .and_then(|()| body::expected(&body, &parts.headers, limit));
        let expected = match head {
            Ok(expected) => expected,
            Err(refusal) => return Answer::Refused(refusal),
        };
        // A card gateway's GET is verified from its query: a body there
        // means nothing and is not read.
        let wants_body = !(provider == Provider::Plutu && parts.method == Method::GET);
        let _reserved = if wants_body && expected > 0 {
            match self.budget.reserve(peer.ip(), expected) {
                Ok(reserved) => Some(reserved),
                Err(exhausted) => {
                    telemetry::body_budget_exhausted(exhausted.as_str());
                    return Answer::Refused(Refusal::Busy);
                }
            }
        } else {
            None
        };
        let body = if wants_body {
            record.body_unread = false;
            match body::read(body, limit, self.settings.body_read_timeout).await {
                Ok(body) => body,
                Err(refusal) => return Answer::Refused(refusal),
            }
        } else {
            Bytes::new()
        };
        let verified = match self.verify(provider, &account, parts, &body, received_at) {
            Ok(verified) => verified,
            Err(refusal) => return Answer::Refused(refusal),
        };
        // A hint is worth one check at most: past the gate it is dropped,
        // counted, and the browser still goes on to the shop's page.
        let is_hint = matches!(verified.payload, Payload::PortmanatHint(_));
        if let Payload::PortmanatHint(hint) = &verified.payload {
            let named = hint
                .psp_rrn
                .as_ref()
                .map(|p| format!("psp_rrn:{}", p.as_str()));
            let named = named.or_else(|| {
                hint.client_rrn
                    .as_ref()
                    .map(|r| format!("client_rrn:{}", r.as_str()))
            });
            let key = format!("{account}/{}", named.unwrap_or_default());
            if let Err(dropped) = self.hints.admit(peer.ip(), &key) {
                telemetry::hint_dropped(dropped.as_str());
                record.hint_dropped = Some(dropped.as_str());
                return verified.answer;
            }
        }
        let raw = callback::raw_request(parts, &body);
        let origin = Origin {
            provider,
            account,
            received_at,
            client: peer.ip(),
        };
        let Some(keys) = &self.settings.handoff else {
            // `validate` refuses settings without keys; never publish unsigned.
            tracing::error!("no hand-off key to sign the callback message with");
            return Answer::Refused(Refusal::NotDurable);
        };
        let (id, message) = match callback::message(origin, verified.payload, raw, keys) {
            Ok(built) => built,
            Err(e) => {
                // Cannot happen with these types; if it did, claim nothing.
                tracing::error!(error = %e, "cannot serialise an inbound callback");
                return Answer::Refused(Refusal::NotDurable);
            }
        };
        record.message_id = Some(id);
        match self.publish(message, is_hint).await {
            Published::Durable(durable) => {
                record.durable = Some(durable);
                verified.answer
            }
            // The hints queue is at its bound: dropped like a hint past the
            // gate, and the browser still goes on to the shop's page.
            Published::HintsFull => {
                telemetry::hint_dropped(QUEUE_FULL);
                record.hint_dropped = Some(QUEUE_FULL);
                verified.answer
            }
            Published::Nowhere => Answer::Refused(Refusal::NotDurable),
        }
    }

    fn has_account(&self, provider: Provider, account: &Account) -> bool {
        let settings = &self.settings;
        match provider {
            Provider::Paysys => settings.paysys.contains_key(account),
            Provider::Plutu => settings.plutu.contains_key(account),
            Provider::Portmanat => settings.portmanat.contains_key(account),
        }
    }

    /// What the head alone can refuse: PaySys credentials (in the
    /// `Authorization` header), a Portmanat POST that is not a form.
    fn check_head(
        &self,
        provider: Provider,
        account: &Account,
        parts: &Parts,
        has_body: bool,
    ) -> Result<(), Refusal> {
        match provider {
            Provider::Paysys => match self.settings.paysys.get(account) {
                Some(s) => callback::paysys_head(s, &parts.headers),
                None => Err(Refusal::NotFound),
            },
            Provider::Portmanat => callback::portmanat_head(parts, has_body),
            Provider::Plutu => Ok(()),
        }
    }

    fn verify(
        &self,
        provider: Provider,
        account: &Account,
        parts: &Parts,
        body: &[u8],
        received_at: Timestamp,
    ) -> Result<Verified, Refusal> {
        let settings = &self.settings;
        match provider {
            Provider::Paysys => match settings.paysys.get(account) {
                Some(s) => callback::paysys(s, &parts.headers, body, account, received_at),
                None => Err(Refusal::NotFound),
            },
            Provider::Plutu => match settings.plutu.get(account) {
                Some(s) => callback::plutu(s, parts, body, account, received_at),
                None => Err(Refusal::NotFound),
            },
            Provider::Portmanat => match settings.portmanat.get(account) {
                Some(s) => callback::portmanat(s, parts, body),
                None => Err(Refusal::NotFound),
            },
        }
    }

    /// Publishes on its own task (a hint to the hints queue, anything else
    /// to the callbacks queue) and waits for the outcome.
    async fn publish(&self, message: paysettle_queue::Message, hint: bool) -> Published {
        let queue = self.queue.clone();
        let task = self.publishes.spawn(async move {
            let started = Instant::now();
            let result = if hint {
                queue.publish_hint(&message).await
            } else {
                queue.publish(&message).await
            };
            let outcome = match &result {
                Ok(Durable::Broker) => "broker",
                Ok(Durable::Spooled) => "spooled",
                Ok(Durable::Embedded) => "embedded",
                Err(QueueError::Full(_)) => "full",
                Err(_) => "failed",
            };
            telemetry::publish(outcome, started.elapsed());
            match result {
                Ok(_) => Published::Durable(outcome),
                Err(QueueError::Full(_)) => Published::HintsFull,
                Err(e) => {
                    tracing::error!(message_id = %message.message_id, error = %e, "callback durable nowhere; answering 503");
                    Published::Nowhere
                }
            }
        });
        task.await.unwrap_or(Published::Nowhere)
    }

    fn operational(&self, route: &Route) -> Answer {
        match route {
            Route::Healthz => Answer::Alive,
            Route::Readyz if self.queue.is_durable() => Answer::Ready,
            Route::Readyz => Answer::NotReady,
            Route::Callback { .. } => Answer::Refused(Refusal::NotFound),
        }
    }
}

/// The one line per request. Fields only, and only these: the route
/// template (never the raw path), the provider and account, the outcome, the
/// status, the latency, the message id and where it became durable. The
/// problem of a malformed request is the verifier's bounded text with card
/// numbers masked. Probes log at debug, refusals of authentication at warn.
fn access_log(
    method: &Method,
    record: &Record,
    answer: &Answer,
    status: u16,
    took: Duration,
    peer: SocketAddr,
) {
    let account = record.account.as_ref().map(Account::as_str);
    let problem = match answer {
        Answer::Refused(Refusal::Malformed(p)) => {
            Some(paysettle_core::redact::mask_card_numbers(p))
        }
        _ => None,
    };
    let outcome = answer.outcome();
    // An extension method is whatever token the client sent: not logged.
    let method = match *method {
        Method::GET
        | Method::POST
        | Method::HEAD
        | Method::PUT
        | Method::DELETE
        | Method::OPTIONS
        | Method::PATCH
        | Method::TRACE
        | Method::CONNECT => method.as_str(),
        _ => "other",
    };
    let latency_us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    macro_rules! line {
        ($level:expr) => {
            tracing::event!(
                target: "paysettle_receiver::access",
                $level,
                provider = record.provider,
                account,
                route = record.route,
                method,
                status,
                outcome,
                latency_us,
                message_id = record.message_id.as_deref(),
                durable = record.durable,
                hint_dropped = record.hint_dropped,
                problem = problem.as_deref(),
                peer = %peer.ip(),
                "request"
            )
        };
    }
    match answer {
        Answer::Alive | Answer::Ready | Answer::Metrics(_) => line!(tracing::Level::DEBUG),
        Answer::Refused(Refusal::NotDurable) | Answer::NotReady => line!(tracing::Level::ERROR),
        Answer::Refused(Refusal::Unauthenticated { .. }) => line!(tracing::Level::WARN),
        _ => line!(tracing::Level::INFO),
    }
}
