//! The control API under `/_sim`, which tests and the demo drive: list what
//! the simulator holds, create payments as a shop would, play the customer,
//! force outcomes, move the clock, change the scenario, send PaySys
//! `partner.notify`, read fault counters. Every route is a thin JSON wrapper
//! over the same calls [`crate::SimHandle`] makes in process.
//!
//! | method | path | body → answer |
//! |--------|------|---------------|
//! | GET | `/_sim/health` | → `{"ok":true,"base_url","now"}` |
//! | GET | `/_sim/payments[?provider=]` | → `[PaymentView]` |
//! | POST | `/_sim/payments` | `NewPayment` → 201 `PaymentView` |
//! | GET | `/_sim/payments/{id}` | → `PaymentView` |
//! | GET | `/_sim/lookup?provider=&reference=` | → `PaymentView` |
//! | POST | `/_sim/payments/{id}/pay` | `{"outcome"?}` → `PaymentView` |
//! | POST | `/_sim/payments/{id}/outcome` | `{"outcome"}` → `PaymentView` |
//! | POST | `/_sim/payments/{id}/refund` | `{"amount_minor"}` → `PaymentView` (PaySys; any number of times up to the paid amount) |
//! | POST | `/_sim/advance` | `{"ms"}` → `{"now"}` once everything then due is done |
//! | POST | `/_sim/settle` | → `{"now"}` once everything due now is done |
//! | POST | `/_sim/run-until-idle` | → `{"now"}` once nothing is left to happen |
//! | GET | `/_sim/scenario` | → `{"global","portmanat","paysys","plutu"}` (effective) |
//! | PUT | `/_sim/scenario[?provider=]` | `ScenarioPatch` → as GET |
//! | DELETE | `/_sim/scenario` | → as GET, back to the configured scenario |
//! | GET | `/_sim/paysys/partner-notify` | → `[PartnerNotifyView]` |
//! | POST | `/_sim/paysys/partner-notify` | `PartnerNotifyRequest` → `[PartnerNotifyView]` |
//! | GET | `/_sim/stats` | → `Stats` |
//! | GET | `/_sim/checks` | → when each status check began, ms from start, per provider |
//!
//! Errors answer `{"error": "…"}` with a status from [`SimError::http_status`].

use std::time::Duration;

use http::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::engine::{Engine, PartnerNotifyRequest};
use crate::error::SimError;
use crate::form;
use crate::model::{Outcome, Provider};
use crate::scenario::ScenarioPatch;
use crate::server::{Answer, Req, json};
use crate::sim::{NewPayment, creation};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PayBody {
    #[serde(default)]
    outcome: Option<Outcome>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefundBody {
    amount_minor: i64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeBody {
    outcome: Outcome,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvanceBody {
    ms: u64,
}

fn failure(err: &SimError) -> Answer {
    json(err.http_status(), &json!({"error": err.to_string()}))
}

fn body<T: DeserializeOwned>(req: &Req, empty: &str) -> Result<T, SimError> {
    let bytes: &[u8] = if req.body.iter().all(u8::is_ascii_whitespace) {
        empty.as_bytes()
    } else {
        &req.body
    };
    serde_json::from_slice(bytes).map_err(|err| SimError::InvalidRequest(err.to_string()))
}

fn provider_param(req: &Req) -> Result<Option<Provider>, SimError> {
    let pairs = req.query_pairs();
    match form::first(&pairs, "provider") {
        None | Some("") => Ok(None),
        Some(name) => Provider::parse(name)
            .map(Some)
            .ok_or_else(|| SimError::InvalidRequest(format!("unknown provider {name:?}"))),
    }
}

fn scenarios(engine: &Engine) -> Answer {
    json(
        StatusCode::OK,
        &json!({
            "global": engine.global_scenario(),
            "portmanat": engine.scenario(Provider::Portmanat),
            "paysys": engine.scenario(Provider::Paysys),
            "plutu": engine.scenario(Provider::Plutu),
        }),
    )
}

fn now(engine: &Engine) -> Answer {
    json(StatusCode::OK, &json!({"now": engine.clock.wall_now()}))
}

/// Serves `/_sim/{rest}`.
pub(crate) async fn handle(engine: &Engine, req: &Req, rest: &[&str]) -> Answer {
    match dispatch(engine, req, rest).await {
        Ok(answer) => answer,
        Err(err) => failure(&err),
    }
}

async fn dispatch(engine: &Engine, req: &Req, rest: &[&str]) -> Result<Answer, SimError> {
    let method = &req.method;
    let answer = match (method, rest) {
        (&Method::GET, [] | ["health"]) => json(
            StatusCode::OK,
            &json!({"ok": true, "base_url": engine.base_url, "now": engine.clock.wall_now()}),
        ),
        (&Method::GET, ["payments"]) => {
            let filter = provider_param(req)?;
            let views: Vec<_> = engine
                .state()
                .store
                .payments
                .iter()
                .filter(|p| filter.is_none_or(|f| p.provider == f))
                .map(|p| p.view())
                .collect();
            json(StatusCode::OK, &views)
        }
        (&Method::POST, ["payments"]) => {
            let new: NewPayment = body(req, "")?;
            let view = engine.create(creation(engine, new)?)?;
            json(StatusCode::CREATED, &view)
        }
        (&Method::GET, ["payments", id]) => {
            let slot = engine.slot(id)?;
            json(StatusCode::OK, &engine.view(slot))
        }
        (&Method::GET, ["lookup"]) => {
            let provider = provider_param(req)?
                .ok_or_else(|| SimError::InvalidRequest("provider is required".to_owned()))?;
            let pairs = req.query_pairs();
            let reference = form::first(&pairs, "reference").unwrap_or_default();
            let slot = engine
                .state()
                .store
                .slot_by_reference(provider, reference)
                .ok_or_else(|| SimError::UnknownPayment(format!("{provider} {reference}")))?;
            json(StatusCode::OK, &engine.view(slot))
        }
        (&Method::POST, ["payments", id, "pay"]) => {
            let pay: PayBody = body(req, "{}")?;
            let slot = engine.slot(id)?;
            json(
                StatusCode::OK,
                &engine.pay(slot, pay.outcome, "customer", false)?,
            )
        }
        (&Method::POST, ["payments", id, "refund"]) => {
            let refund: RefundBody = body(req, "")?;
            let slot = engine.slot(id)?;
            json(StatusCode::OK, &engine.refund(slot, refund.amount_minor)?)
        }
        (&Method::POST, ["payments", id, "outcome"]) => {
            let forced: OutcomeBody = body(req, "")?;
            let slot = engine.slot(id)?;
            json(StatusCode::OK, &engine.force_outcome(slot, forced.outcome)?)
        }
        (&Method::POST, ["advance"]) => {
            let advance: AdvanceBody = body(req, "")?;
            engine.advance(Duration::from_millis(advance.ms)).await?;
            now(engine)
        }
        (&Method::POST, ["settle"]) => {
            engine.settle().await?;
            now(engine)
        }
        (&Method::POST, ["run-until-idle"]) => {
            engine.run_until_idle().await?;
            now(engine)
        }
        (&Method::GET, ["scenario"]) => scenarios(engine),
        (&Method::PUT, ["scenario"]) => {
            let provider = provider_param(req)?;
            let patch: ScenarioPatch = body(req, "")?;
            engine.set_scenario(provider, &patch)?;
            scenarios(engine)
        }
        (&Method::DELETE, ["scenario"]) => {
            engine.reset_scenario();
            scenarios(engine)
        }
        (&Method::GET, ["paysys", "partner-notify"]) => {
            json(StatusCode::OK, &engine.state().store.partner_notifies)
        }
        (&Method::POST, ["paysys", "partner-notify"]) => {
            let request: PartnerNotifyRequest = body(req, "")?;
            json(StatusCode::OK, &engine.partner_notify(&request)?)
        }
        (&Method::GET, ["stats"]) => json(StatusCode::OK, &engine.stats()),
        // When each status check began (milliseconds from the simulator's
        // start), per provider: whether the workers kept the rate.
        (&Method::GET, ["checks"]) => {
            let millis = |provider: Provider| {
                engine
                    .check_starts(provider)
                    .into_iter()
                    .map(|d| d.as_secs_f64() * 1000.0)
                    .collect::<Vec<f64>>()
            };
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "portmanat": millis(Provider::Portmanat),
                    "paysys": millis(Provider::Paysys),
                }),
            )
        }
        _ => json(
            StatusCode::NOT_FOUND,
            &json!({"error": "no such control route"}),
        ),
    };
    Ok(answer)
}
