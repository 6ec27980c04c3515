//! Money truth: every disagreement with a provider is surfaced to finance,
//! never silently dropped. Each test is a case a hostile run against the
//! real product found broken, sent here as genuine signed callbacks over HTTP
//! through the receiver and RabbitMQ.

use super::*;

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
