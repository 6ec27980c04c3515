//! Money truth: every disagreement with a provider is surfaced to finance,
//! never silently dropped. Each test is a case a hostile run against the
//! real product found broken, sent here as genuine signed callbacks over HTTP
//! through the receiver and RabbitMQ.

use super::*;

use paysettle_sim::NewPayment;
use paysettle_sim::model::PlutuGateway;

const PLUTU_SECRET: &str = "sk_demo_plutu_secret";

/// Sends a genuine, signed Plutu MPGS browser return (what the customer's
/// browser holds and can load again at any time).
async fn plutu_return(app: &App, params: &[(&str, &str)]) -> reqwest::StatusCode {
    let message = paysettle_sim::plutu::callback_message(PlutuGateway::Mpgs, params);
    let hashed = paysettle_sim::plutu::callback_hash(PLUTU_SECRET, &message);
    let mut query: Vec<(&str, &str)> = params.to_vec();
    query.push(("hashed", &hashed));
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{}/callbacks/plutu", app.receiver))
        .query(&query)
        .send()
        .await
        .unwrap();
    response.status()
}

/// Waits until the payment satisfies `done`, or fails naming what it saw.
async fn until(
    app: &App,
    provider: Provider,
    reference: &str,
    what: &str,
    done: impl Fn(&PaymentRecord) -> bool,
) -> PaymentRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let payment = app.payment(provider, reference).await;
        if let Some(p) = &payment
            && done(p)
        {
            return p.clone();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{reference}: not {what} within 20 s: {payment:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn of_type<'a>(events: &'a [Value], reference: &str, kind: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| e["reference"] == reference && e["type"] == kind)
        .collect()
}

#[tokio::test]
async fn a_signed_approval_after_a_decline_is_a_conflict_finance_hears_of() {
    let mut app = spawn_app(Options::default()).await;
    app.pay(Pay {
        pending: Duration::from_millis(100),
        ..Pay::new(Provider::Plutu, "PL-RETRY", 1250, Outcome::Failure)
    })
    .await;
    let failed = until(&app, Provider::Plutu, "PL-RETRY", "failed", |p| {
        p.status == paysettle_core::PaymentStatus::Failed
    })
    .await;
    // The customer retried at the provider and was charged: a genuine
    // signed approval for the same invoice and transaction.
    let txn = failed.provider_txn_id.unwrap().as_str().to_owned();
    let status = plutu_return(
        &app,
        &[
            ("gateway", "mpgs"),
            ("approved", "1"),
            ("amount", "12.50"),
            ("currency", "USD"),
            ("invoice_no", "PL-RETRY"),
            ("transaction_id", &txn),
        ],
    )
    .await;
    assert!(status.is_redirection() || status.is_success(), "{status}");
    let flagged = until(&app, Provider::Plutu, "PL-RETRY", "flagged", |p| {
        p.mismatch.is_some()
    })
    .await;
    assert_eq!(flagged.status, paysettle_core::PaymentStatus::Failed);
    assert!(
        flagged.mismatch.as_deref().unwrap().starts_with("conflict"),
        "{flagged:?}"
    );
    let events = app.events().await;
    let conflicts = of_type(&events, "PL-RETRY", "payment.conflict");
    assert_eq!(conflicts.len(), 1, "announced once: {events:#?}");
    assert_eq!(conflicts[0]["flag"], "conflict");
    assert_eq!(conflicts[0]["amount"], 1250, "what the provider captured");
    app.stop().await;
}

#[tokio::test]
async fn a_late_signed_cancel_url_never_cancels_a_paid_plutu_payment() {
    let mut app = spawn_app(Options::default()).await;
    app.pay(Pay {
        pending: Duration::from_millis(100),
        ..Pay::new(Provider::Plutu, "PL-PAID", 1250, Outcome::Success)
    })
    .await;
    let paid = until(&app, Provider::Plutu, "PL-PAID", "succeeded", |p| {
        p.status == paysettle_core::PaymentStatus::Succeeded
    })
    .await;
    // An old `canceled=1` URL from an abandoned attempt, loaded again.
    let status = plutu_return(
        &app,
        &[
            ("gateway", "mpgs"),
            ("canceled", "1"),
            ("amount", "12.50"),
            ("currency", "USD"),
            ("invoice_no", "PL-PAID"),
        ],
    )
    .await;
    assert!(status.is_redirection() || status.is_success(), "{status}");
    let flagged = until(&app, Provider::Plutu, "PL-PAID", "flagged", |p| {
        p.mismatch.is_some()
    })
    .await;
    assert_eq!(flagged.status, paysettle_core::PaymentStatus::Succeeded);
    assert_eq!(flagged.paid, paid.paid, "what was paid stays paid");
    let events = app.events().await;
    assert!(of_type(&events, "PL-PAID", "payment.canceled").is_empty());
    assert_eq!(of_type(&events, "PL-PAID", "payment.conflict").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn another_provider_transaction_id_than_the_registered_one_is_flagged() {
    let mut app = spawn_app(Options::default()).await;
    let response = app
        .http
        .post(format!("http://{}/v1/payments", app.shop))
        .json(&json!({
            "provider": "plutu",
            "reference": "PL-TXN",
            "amount": 1250,
            "currency": "USD",
            "provider_transaction_id": "TXN-A",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    plutu_return(
        &app,
        &[
            ("gateway", "mpgs"),
            ("approved", "1"),
            ("amount", "12.50"),
            ("currency", "USD"),
            ("invoice_no", "PL-TXN"),
            ("transaction_id", "TXN-B"),
        ],
    )
    .await;
    let flagged = until(&app, Provider::Plutu, "PL-TXN", "flagged", |p| {
        p.mismatch.is_some()
    })
    .await;
    assert_ne!(flagged.status, paysettle_core::PaymentStatus::Succeeded);
    assert!(
        flagged
            .mismatch
            .as_deref()
            .unwrap()
            .starts_with("txn_mismatch"),
        "{flagged:?}"
    );
    let events = app.events().await;
    assert!(of_type(&events, "PL-TXN", "payment.succeeded").is_empty());
    let mismatch = of_type(&events, "PL-TXN", "payment.mismatch");
    assert_eq!(mismatch.len(), 1, "{events:#?}");
    assert_eq!(mismatch[0]["mismatch"], "txn_mismatch");
    app.stop().await;
}

#[tokio::test]
async fn a_late_final_answer_settles_a_stale_payment() {
    let mut app = spawn_app(Options {
        deadline: Duration::from_millis(1500),
        ..Options::default()
    })
    .await;
    app.pay(Pay {
        pending: Duration::from_millis(4000),
        ..Pay::new(Provider::Paysys, "PS-SLOW", 1_139_000, Outcome::Success)
    })
    .await;
    until(&app, Provider::Paysys, "PS-SLOW", "stale", |p| {
        p.status == paysettle_core::PaymentStatus::Stale
    })
    .await;
    // The customer pays after the deadline; PaySys notifies "completed",
    // which is held until check_payment agrees.
    let settled = until(&app, Provider::Paysys, "PS-SLOW", "succeeded", |p| {
        p.status == paysettle_core::PaymentStatus::Succeeded
    })
    .await;
    assert_eq!(settled.paid.map(|m| m.minor()), Some(1_139_000));
    let events = by_reference(&app.events().await);
    assert_eq!(
        events["PS-SLOW"],
        ["payment.stale", "payment.succeeded"],
        "finance hears both, in ledger order"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_shop_sees_the_money_it_registered_when_the_provider_reported_another_currency() {
    let mut app = spawn_app(Options::default()).await;
    app.pay_unregistered(
        Provider::Paysys,
        "PS-CUR",
        1_139_000,
        Outcome::Success,
        Duration::from_millis(100),
    )
    .await;
    until(&app, Provider::Paysys, "PS-CUR", "succeeded", |p| {
        p.status == paysettle_core::PaymentStatus::Succeeded
    })
    .await;
    // The shop registers the order in another currency than the provider
    // reported.
    let response = app
        .http
        .post(format!("http://{}/v1/payments", app.shop))
        .json(&json!({
            "provider": "paysys",
            "reference": "PS-CUR",
            "amount": 1_139_000,
            "currency": "USD",
        }))
        .send()
        .await
        .unwrap();
    let status = response.status();
    assert!(
        status.is_success(),
        "{status}: {}",
        response.text().await.unwrap()
    );
    let shown: Value = app
        .http
        .get(format!("http://{}/v1/payments/paysys/PS-CUR", app.shop))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let payment = &shown["payment"];
    assert_eq!(
        payment["currency"], "USD",
        "what the shop registered: {shown}"
    );
    assert_eq!(payment["amount"], 1_139_000);
    assert!(
        payment["mismatch"]
            .as_str()
            .is_some_and(|m| m.starts_with("currency_mismatch")),
        "{shown}"
    );
    let events = app.events().await;
    assert_eq!(of_type(&events, "PS-CUR", "payment.mismatch").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_test_mode_answer_on_a_live_account_is_flagged_not_booked() {
    let mut app = spawn_app(Options::default()).await;
    let view = app
        .sim
        .create_payment(
            NewPayment::new(SimProvider::Portmanat, "PM-TEST", 1990)
                .outcome(Outcome::Success)
                .pending(Duration::from_millis(100))
                .test_service(true),
        )
        .unwrap();
    let response = app
        .http
        .post(format!("http://{}/v1/payments", app.shop))
        .json(&json!({
            "provider": "portmanat",
            "reference": "PM-TEST",
            "amount": 1990,
            "currency": "AZN",
            "provider_transaction_id": view.provider_txn_id,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let flagged = until(&app, Provider::Portmanat, "PM-TEST", "flagged", |p| {
        p.mismatch.is_some()
    })
    .await;
    assert!(
        flagged
            .mismatch
            .as_deref()
            .unwrap()
            .starts_with("test_payment"),
        "{flagged:?}"
    );
    assert_eq!(flagged.paid, None, "no real money booked");
    let events = app.events().await;
    assert!(of_type(&events, "PM-TEST", "payment.succeeded").is_empty());
    assert_eq!(of_type(&events, "PM-TEST", "payment.mismatch").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn two_partial_paysys_refunds_are_booked_as_reported_and_an_amountless_answer_books_nothing()
{
    let mut app = spawn_app(Options::default()).await;
    let view = app
        .pay(Pay {
            pending: Duration::from_millis(100),
            ..Pay::new(Provider::Paysys, "PS-REFUND", 1_000_000, Outcome::Success)
        })
        .await;
    until(&app, Provider::Paysys, "PS-REFUND", "succeeded", |p| {
        p.status == paysettle_core::PaymentStatus::Succeeded
    })
    .await;
    app.sim.refund(&view.id, 300_000).unwrap();
    app.sim.settle().await.unwrap();
    until(
        &app,
        Provider::Paysys,
        "PS-REFUND",
        "refunded 3,000.00",
        |p| p.refunded.map(|m| m.minor()) == Some(300_000),
    )
    .await;
    app.sim.refund(&view.id, 200_000).unwrap();
    app.sim.settle().await.unwrap();
    let refunded = until(
        &app,
        Provider::Paysys,
        "PS-REFUND",
        "refunded 5,000.00",
        |p| p.refunded.map(|m| m.minor()) == Some(500_000),
    )
    .await;
    assert_eq!(refunded.paid.map(|m| m.minor()), Some(1_000_000));
    let events = app.events().await;
    let refunds: Vec<(i64, i64)> = of_type(&events, "PS-REFUND", "payment.refunded")
        .iter()
        .map(|e| {
            (
                e["amount"].as_i64().unwrap(),
                e["refunded_total"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(refunds, [(300_000, 300_000), (200_000, 500_000)]);
    app.stop().await;
}

/// Sends PaySys's transaction status notification with the demo vendor's
/// Basic credentials, the body exactly as given.
async fn paysys_notify(app: &App, body: &str) -> (reqwest::StatusCode, String) {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode("demo-vendor:demo-vendor-secret");
    let response = app
        .http
        .post(format!("http://{}/callbacks/paysys", app.receiver))
        .header("Authorization", format!("Basic {auth}"))
        .header("Content-Type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn a_paysys_notification_with_a_key_given_twice_is_refused_and_changes_nothing() {
    let app = spawn_app(Options::default()).await;
    let view = app
        .pay(Pay {
            callback_url: Some(NOWHERE.into()),
            pending: Duration::from_secs(600),
            ..Pay::new(Provider::Paysys, "PS-DUP", 1_139_000, Outcome::Failure)
        })
        .await;
    let txn = view.provider_txn_id.unwrap();
    // "status" twice: read last-wins, this said "completed".
    let body = format!(
        r#"{{"id":"{txn}","account":"PS-DUP","amount":1139000,"currency":860,"currency_name":"uzs","status":-1,"status":2,"date":"24.06.2022 07:49:16"}}"#
    );
    let (status, answer) = paysys_notify(&app, &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(answer.contains("status"), "names the key: {answer}");
    let payment = app.payment(Provider::Paysys, "PS-DUP").await.unwrap();
    let history = app.ledger.history(payment.id).await.unwrap();
    assert!(
        history.iter().all(|h| h.source != "callback"),
        "nothing of it reached the ledger: {history:#?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_paysys_date_in_another_format_keeps_the_notification_and_its_money() {
    let app = spawn_app(Options {
        paysys_confirm: false,
        ..Options::default()
    })
    .await;
    let view = app
        .pay(Pay {
            callback_url: Some(NOWHERE.into()),
            pending: Duration::from_secs(600),
            ..Pay::new(Provider::Paysys, "PS-DATE", 1_139_000, Outcome::Success)
        })
        .await;
    let txn = view.provider_txn_id.unwrap();
    let body = format!(
        r#"{{"id":"{txn}","account":"PS-DATE","amount":1139000,"currency":860,"currency_name":"uzs","status":2,"date":"2022-06-24T07:49:16"}}"#
    );
    let (status, answer) = paysys_notify(&app, &body).await;
    assert_eq!(status, 200, "{answer}");
    let settled = until(&app, Provider::Paysys, "PS-DATE", "succeeded", |p| {
        p.status == paysettle_core::PaymentStatus::Succeeded
    })
    .await;
    assert_eq!(settled.paid.map(|m| m.minor()), Some(1_139_000));
    let history = app.ledger.history(settled.id).await.unwrap();
    let from_callback = history.iter().find(|h| h.source == "callback").unwrap();
    assert_eq!(
        from_callback.provider_time_raw.as_deref(),
        Some("2022-06-24T07:49:16"),
        "the provider's text is kept"
    );
    app.stop().await;
}
