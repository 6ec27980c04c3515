//! paysettle's receiver: the door the payment providers knock on.
//!
//! It says yes only to genuine callbacks, answers each provider in the shape
//! it expects, never loses what it said yes to, and stays up under floods and
//! garbage. Each accepted callback becomes one
//! [`InboundCallback`](paysettle_core::inbound::InboundCallback) message,
//! published through `paysettle-queue` and durable (broker confirm, spool or
//! embedded file) before the provider hears "yes"; when it cannot be made
//! durable anywhere the answer is 503 and nothing is claimed.
//!
//! Routes (`{account}` selects one of the shop's accounts with a provider;
//! without it, the `default` account):
//!
//! | route | methods | answer once durable |
//! |---|---|---|
//! | `/callbacks/paysys[/{account}]` | POST | `{"error": null}` |
//! | `/callbacks/plutu[/{account}]` | GET (card gateways), POST (T-Lync JSON) | GET: 303 to the result page with `invoice_no` and `outcome`, or 200; POST: 200 |
//! | `/callbacks/portmanat[/{account}]` | GET, POST (query or form) | 303 to the result page with `client_rrn`/`psp_rrn`, or 200 |
//! | `/healthz`, `/readyz` | GET, HEAD | alive; queue durable |
//!
//! `GET /metrics` (Prometheus text) is served by [`serve_metrics`] on a
//! listener of its own, never on the callback port.
//!
//! Refusals are short JSON, `{"error": {"code": …, "message": …}}`: 401
//! (`missing_credentials`, `wrong_credentials`, `missing_signature`,
//! `bad_signature`, with `WWW-Authenticate`), 400 `malformed` naming the
//! problem, 404 for an unknown path or an account not configured, 405 with
//! `Allow`, 408 `body_timeout`, 413 `body_too_large`, 415 for a Portmanat
//! POST that is not a form, 503 `not_durable` and 503 `busy` (the body
//! budget is spent) with `Retry-After`. Whatever the head can tell (the
//! route, the method, PaySys credentials, a Portmanat POST's content type)
//! is judged before the body is read, and before `100 Continue`. A request
//! head that does not arrive within the header timeout gets no answer: the
//! connection is closed. Connections are kept by `paysettle-door`: a share
//! per client address, idle and age timeouts, HTTP/2 limits.
//!
//! Modules:
//! - `server`: [`run`], the callback listener behind `paysettle-door`, and drain.
//! - `scrape`: [`serve_metrics`], `/metrics` on its own listener.
//! - `service`: one request from route to answer, its access-log line and metrics.
//! - `route`: paths to routes, the allowed methods.
//! - `body`: reading a body within the size and time limits.
//! - `budget`: the bytes of bodies read at once, in all and per client.
//! - `hints`: the gate Portmanat's unsigned hints pass: one per payment in a
//!   window, rate-limited per client and overall.
//! - `callback`: each provider's verification (in `paysettle-core`), the
//!   redacted raw request, and the queue message.
//! - `answer`: every answer and the one function that maps them to HTTP.
//! - [`settings`]: [`ReceiverSettings`] and the per-account settings.
//! - [`telemetry`]: the process-wide Prometheus recorder and metric names.
//! - [`error`]: the crate's one error type, [`ReceiverError`].

mod answer;
mod body;
mod budget;
mod callback;
pub mod error;
mod hints;
mod route;
mod scrape;
mod server;
mod service;
pub mod settings;
pub mod telemetry;

pub use error::ReceiverError;
pub use hints::HintLimits;
pub use scrape::serve_metrics;
pub use server::run;
pub use settings::{PaysysAccount, PlutuAccount, PortmanatAccount, ReceiverSettings, ResultPage};
pub use telemetry::install_metrics;
