//! The /_sim control API over HTTP, and the autopilot.

use http::{Method, StatusCode};
use paysettle_sim::{PaymentView, Provider, SimConfig, Status};
use serde_json::{Value, json};

use crate::common::*;
use crate::paysys::rpc;

async fn control(
    sim: &paysettle_sim::SimHandle,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Answer {
    let url = format!("{}/_sim{path}", sim.base_url());
    let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
    send(method, &url, &[], body).await
}

#[tokio::test]
async fn drive_a_payment_through_the_control_api() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;

    let health = control(&sim, Method::GET, "/health", None).await.json();
    assert_eq!(health["ok"], true);
    assert_eq!(health["base_url"], sim.base_url());

    let created = control(
        &sim,
        Method::POST,
        "/payments",
        Some(json!({"provider": "paysys", "reference": "CTL-1", "amount_minor": 150000, "pending_ms": 60000})),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let view: PaymentView = serde_json::from_slice(&created.body).unwrap();
    assert_eq!(
        (view.provider, view.status, view.currency.code()),
        (Provider::Paysys, Status::Pending, "UZS")
    );
    assert_eq!(view.amount_text, "150000");

    // The provider's own status API agrees, and changes with time.
    let checked = rpc(
        &sim,
        "paysys.check_payment",
        json!({"partner_trans_id": "CTL-1"}),
    )
    .await;
    assert_eq!(
        checked["result"]["status"].to_string().trim_matches('"'),
        "1"
    );
    let forced = control(
        &sim,
        Method::POST,
        &format!("/payments/{}/outcome", view.id),
        Some(json!({"outcome": "failure"})),
    )
    .await;
    assert_eq!(forced.status, StatusCode::OK);
    assert_eq!(forced.json()["planned_outcome"], "failure");
    let advanced = control(&sim, Method::POST, "/advance", Some(json!({"ms": 61000}))).await;
    assert_eq!(advanced.status, StatusCode::OK);
    let checked = rpc(
        &sim,
        "paysys.check_payment",
        json!({"partner_trans_id": "CTL-1"}),
    )
    .await;
    assert_eq!(
        checked["result"]["status"].to_string().trim_matches('"'),
        "-1"
    );

    let one = control(&sim, Method::GET, &format!("/payments/{}", view.id), None)
        .await
        .json();
    assert_eq!(one["status"], "failed");
    assert_eq!(one["provider_status"], "status -1");
    let timeline: Vec<&str> = one["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(timeline, vec!["created", "pending", "failed"]);
    let fates: Vec<&str> = one["callbacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["fate"].as_str().unwrap())
        .collect();
    assert_eq!(fates, vec!["delivered", "delivered"]);
    assert_eq!(receiver.received().len(), 2);

    let looked_up = control(
        &sim,
        Method::GET,
        "/lookup?provider=paysys&reference=CTL-1",
        None,
    )
    .await
    .json();
    assert_eq!(looked_up["id"], view.id.as_str());
    let listed = control(&sim, Method::GET, "/payments?provider=paysys", None)
        .await
        .json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let none = control(&sim, Method::GET, "/payments?provider=plutu", None)
        .await
        .json();
    assert_eq!(none.as_array().unwrap().len(), 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn pay_now_and_run_until_idle() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    let created = control(
        &sim,
        Method::POST,
        "/payments",
        Some(json!({"provider": "plutu", "reference": "CTL-P", "amount_minor": 2500, "gateway": "localbankcards"})),
    )
    .await
    .json();
    let id = created["id"].as_str().unwrap();
    let paid = control(
        &sim,
        Method::POST,
        &format!("/payments/{id}/pay"),
        Some(json!({"outcome": "cancel"})),
    )
    .await
    .json();
    assert_eq!(paid["status"], "canceled");
    assert_eq!(
        control(&sim, Method::POST, "/run-until-idle", None)
            .await
            .status,
        StatusCode::OK
    );
    let got = receiver.wait_for(1).await;
    assert!(got[0].query.contains("canceled=1"));
    // Paying twice is a conflict.
    let again = control(&sim, Method::POST, &format!("/payments/{id}/pay"), None).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert!(again.json()["error"].as_str().unwrap().contains("already"));
    sim.shutdown().await;
}

#[tokio::test]
async fn control_errors_are_clear() {
    let sim = start(SimConfig::for_tests()).await;
    let missing = control(&sim, Method::GET, "/payments/nope-1", None).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let bad = control(
        &sim,
        Method::POST,
        "/payments",
        Some(json!({"provider": "paysys"})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let refund = control(
        &sim,
        Method::POST,
        "/payments",
        Some(json!({"provider": "portmanat", "reference": "R", "amount_minor": 100, "outcome": "refund"})),
    )
    .await;
    assert_eq!(refund.status, StatusCode::UNPROCESSABLE_ENTITY);
    let limits = control(
        &sim,
        Method::POST,
        "/payments",
        Some(json!({"provider": "paysys", "reference": "R", "amount_minor": 5})),
    )
    .await;
    assert_eq!(limits.status, StatusCode::BAD_REQUEST);
    let scenario = control(
        &sim,
        Method::PUT,
        "/scenario",
        Some(json!({"faults": {"http_500": 2.0}})),
    )
    .await;
    assert_eq!(scenario.status, StatusCode::BAD_REQUEST);
    let unknown = control(&sim, Method::GET, "/nothing", None).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(sim.payments().is_empty());
    sim.shutdown().await;
}

#[tokio::test]
async fn scenario_over_http_takes_effect_and_resets() {
    let sim = start(SimConfig::for_tests()).await;
    let put = control(
        &sim,
        Method::PUT,
        "/scenario?provider=portmanat",
        Some(json!({"faults": {"http_500": 1.0}})),
    )
    .await;
    assert_eq!(put.status, StatusCode::OK);
    let body = put.json();
    assert_eq!(body["portmanat"]["faults"]["http_500"], 1.0);
    assert_eq!(body["paysys"]["faults"]["http_500"], 0.0);
    assert_eq!(body["global"]["faults"]["http_500"], 0.0);
    let check = get(&format!("{}/portmanat/check?psp_rrn=x", sim.base_url())).await;
    assert_eq!(check.status, StatusCode::INTERNAL_SERVER_ERROR);
    let stats = control(&sim, Method::GET, "/stats", None).await.json();
    assert_eq!(stats["portmanat"]["http_500"], 1);

    let reset = control(&sim, Method::DELETE, "/scenario", None)
        .await
        .json();
    assert_eq!(reset["portmanat"]["faults"]["http_500"], 0.0);
    let check = get(&format!("{}/portmanat/check?psp_rrn=x", sim.base_url())).await;
    assert_eq!(check.status, StatusCode::OK);
    sim.shutdown().await;
}

#[tokio::test]
async fn partner_notify_over_http() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    let sent = control(
        &sim,
        Method::POST,
        "/paysys/partner-notify",
        Some(json!({"stat": "ERROR", "message": "declined"})),
    )
    .await;
    assert_eq!(sent.status, StatusCode::OK);
    control(&sim, Method::POST, "/settle", None).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].json()["params"]["message"], "declined");
    let listed = control(&sim, Method::GET, "/paysys/partner-notify", None)
        .await
        .json();
    assert_eq!(listed[0]["callback"]["fate"], "delivered");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_autopilot_creates_payments_at_every_provider() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config.autopilot.rate_per_sec = 200.0;
    let sim = start(config).await;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let payments = sim.payments();
        let all = Provider::ALL
            .iter()
            .all(|p| payments.iter().filter(|x| x.provider == *p).count() >= 2);
        if all {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "autopilot made {} payments",
            payments.len()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let payments = sim.payments();
    assert!(
        payments
            .iter()
            .any(|p| p.gateway == Some(paysettle_sim::PlutuGateway::Localbankcards))
    );
    assert!(payments.iter().all(|p| p.reference.starts_with("auto-")));
    sim.shutdown().await;
}
