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
        deadline: Duration::from_secs(60),
        ..Options::default()
    })
    .await;
    app.pay(Pay {
        pending: Duration::from_secs(120),
        ..Pay::new(Provider::Paysys, "PS-SLOW", 1_139_000, Outcome::Success)
    })
    .await;
    // The deadline passes with the customer still on the payment page.
    app.advance(Duration::from_secs(61)).await;
    until(&app, Provider::Paysys, "PS-SLOW", "stale", |p| {
        p.status == paysettle_core::PaymentStatus::Stale
    })
    .await;
    // The customer pays after the deadline; PaySys notifies "completed",
    // which is held until check_payment agrees.
    app.advance(Duration::from_secs(60)).await;
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
    // A status check already on its way when a refund happened may
    // announce it first without an amount (check_payment carries none):
    // finance is told the amount is unknown, and the reported amount
    // follows. Only reported amounts are booked.
    let (reported, unknown): (Vec<&Value>, Vec<&Value>) =
        of_type(&events, "PS-REFUND", "payment.refunded")
            .into_iter()
            .partition(|e| !e["amount"].is_null());
    assert!(
        unknown.len() <= 2 && unknown.iter().all(|e| e["amount"].is_null()),
        "{events:#?}"
    );
    let refunds: Vec<(i64, i64)> = reported
        .iter()
        .map(|e| {
            (
                e["amount"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("{events:#?}")),
                e["refunded_total"]
                    .as_i64()
                    .unwrap_or_else(|| panic!("{events:#?}")),
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

/// Sets the simulator's Portmanat `/check` answer shapes.
fn portmanat_answers(app: &App, answers: paysettle_sim::scenario::Answers) {
    app.sim
        .set_scenario(
            Some(SimProvider::Portmanat),
            paysettle_sim::ScenarioPatch {
                answers: Some(answers),
                ..paysettle_sim::ScenarioPatch::default()
            },
        )
        .unwrap();
}

/// Sends a Portmanat browser return: unsigned, anyone can send one naming
/// any payment.
async fn portmanat_return(app: &App, psp_rrn: &str, client_rrn: &str) -> reqwest::StatusCode {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{}/callbacks/portmanat", app.receiver))
        .query(&[("psp_rrn", psp_rrn), ("client_rrn", client_rrn)])
        .send()
        .await
        .unwrap()
        .status()
}

/// A forged Portmanat return names the victim's registered order with the
/// attacker's own paid psp_rrn, and Portmanat's `/check` answers OK/0 in
/// `answers`' shape; then the victim pays for real. The victim's order is
/// settled by the victim's payment alone.
async fn forged_return_then_the_genuine_payment(
    shape: &str,
    answers: paysettle_sim::scenario::Answers,
    attacker: &str,
    victim: &str,
) {
    use paysettle_sim::scenario::Answers;
    let mut app = spawn_app(Options::default()).await;
    portmanat_answers(&app, answers);
    // The attacker's own small payment, paid at Portmanat (its return
    // never reaches paysettle, and the shop never registered it).
    let own = app
        .sim
        .create_payment(
            NewPayment::new(SimProvider::Portmanat, attacker, 100)
                .outcome(Outcome::Success)
                .pending(Duration::from_millis(10))
                .callback_url(NOWHERE),
        )
        .unwrap();
    app.advance(Duration::from_millis(10)).await;
    let own_psp_rrn = own.provider_txn_id.clone().unwrap();
    // The victim's order, 1,990.00 AZN, registered by the shop; the
    // customer has not paid yet, so its psp_rrn is unknown.
    let response = app
        .http
        .post(format!("http://{}/v1/payments", app.shop))
        .json(&json!({
            "provider": "portmanat",
            "reference": victim,
            "amount": 199_000,
            "currency": "AZN",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{shape}");
    // The attacker's forged return: its own psp_rrn, the victim's order.
    let status = portmanat_return(&app, &own_psp_rrn, victim).await;
    assert!(status.is_redirection() || status.is_success(), "{status}");
    // Portmanat is asked about the attacker's psp_rrn and answers OK/0,
    // with no body or a body that names no order.
    paysettle_testkit::eventually(
        Duration::from_secs(20),
        "Portmanat asked about the forged return",
        || async { app.sim.stats().portmanat.requests >= 1 },
    )
    .await;
    // Then the victim pays for real, and comes back from the bank page.
    // (Through the receiver, RabbitMQ and the worker: long after the
    // worker has done whatever it does with the answer it already has.)
    portmanat_answers(&app, Answers::default());
    let genuine = app
        .sim
        .create_payment(
            NewPayment::new(SimProvider::Portmanat, victim, 199_000)
                .outcome(Outcome::Success)
                .pending(Duration::from_millis(10)),
        )
        .unwrap();
    app.advance(Duration::from_millis(10)).await;
    let genuine_psp_rrn = genuine.provider_txn_id.clone().unwrap();
    let settled = until(&app, Provider::Portmanat, victim, "final", |p| {
        p.status.is_final() || p.mismatch.is_some()
    })
    .await;
    assert_eq!(
        (
            settled.status,
            settled.provider_txn_id.as_ref().map(|t| t.as_str()),
            settled.mismatch.as_deref()
        ),
        (
            paysettle_core::PaymentStatus::Succeeded,
            Some(genuine_psp_rrn.as_str()),
            None
        ),
        "{shape}: settled by the victim's own payment, never by the attacker's: {settled:#?}"
    );
    assert_eq!(settled.paid.map(|m| m.minor()), Some(199_000), "{shape}");
    let events = app.events().await;
    let succeeded = of_type(&events, victim, "payment.succeeded");
    assert_eq!(succeeded.len(), 1, "{shape}: {events:#?}");
    assert_eq!(
        succeeded[0]["provider_transaction_id"],
        genuine_psp_rrn.as_str(),
        "{shape}"
    );
    let history = app.ledger.history(settled.id).await.unwrap();
    assert!(
        history.iter().filter(|h| h.to_status.is_some()).all(|h| !h
            .raw
            .as_ref()
            .is_some_and(|r| r.to_string().contains(&own_psp_rrn))),
        "{shape}: nothing of the attacker's answer moved the payment: {history:#?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_check_answer_without_a_body_never_settles_the_payment_a_forged_return_named() {
    forged_return_then_the_genuine_payment(
        "no body",
        paysettle_sim::scenario::Answers {
            without_body: 1.0,
            ..Default::default()
        },
        "ATTACKER-NB",
        "VICTIM-NB",
    )
    .await;
}

#[tokio::test]
async fn a_check_answer_without_its_client_rrn_never_settles_the_payment_a_forged_return_named() {
    forged_return_then_the_genuine_payment(
        "no client_rrn",
        paysettle_sim::scenario::Answers {
            without_client_rrn: 1.0,
            ..Default::default()
        },
        "ATTACKER-NC",
        "VICTIM-NC",
    )
    .await;
}

/// A Portmanat payment whose `/check` dates name their zone in `style`
/// settles, and the provider's time is read (its raw text kept beside it).
async fn portmanat_date_settles(style: paysettle_sim::config::TimezoneStyle, reference: &str) {
    let mut app = spawn_app(Options {
        sim: Box::new(move |config| config.portmanat.timezone_style = style),
        ..Options::default()
    })
    .await;
    app.pay(Pay {
        pending: Duration::from_millis(100),
        ..Pay::new(Provider::Portmanat, reference, 1990, Outcome::Success)
    })
    .await;
    let settled = until(&app, Provider::Portmanat, reference, "succeeded", |p| {
        p.status == paysettle_core::PaymentStatus::Succeeded
    })
    .await;
    assert_eq!(settled.paid.map(|m| m.minor()), Some(1990), "{style:?}");
    let history = app.ledger.history(settled.id).await.unwrap();
    let answer = history
        .iter()
        .find(|h| h.source == "check" && h.to_status.as_deref() == Some("succeeded"))
        .unwrap_or_else(|| panic!("{style:?}: no settling check: {history:#?}"));
    // The provider's time is read: its raw text is Baku time, four
    // hours ahead of the UTC kept beside it.
    let raw = answer.provider_time_raw.as_deref().unwrap();
    let utc = answer
        .provider_time
        .unwrap_or_else(|| panic!("{style:?}: {raw} was not read"));
    let civil = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S%.f", raw).unwrap();
    assert_eq!(
        civil.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp(),
        utc + jiff::SignedDuration::from_hours(4),
        "{style:?}"
    );
    let events = app.events().await;
    assert_eq!(of_type(&events, reference, "payment.succeeded").len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn a_portmanat_date_with_an_offset_timezone_type_1_settles_and_is_read() {
    portmanat_date_settles(paysettle_sim::config::TimezoneStyle::Offset, "PM-TZ1").await;
}

#[tokio::test]
async fn a_portmanat_date_with_an_abbreviation_timezone_type_2_settles_and_is_read() {
    portmanat_date_settles(paysettle_sim::config::TimezoneStyle::Abbreviation, "PM-TZ2").await;
}

/// Runs `paysettle ARGS --config <a configuration for app's ledger>`.
fn paysettle_on(app: &App, args: &[&str]) -> std::process::Output {
    let config = product_config(
        app.sim.base_url(),
        app.amqp_url(),
        app.prefix(),
        app._queue_dir.dir.path(),
    );
    std::process::Command::new(env!("CARGO_BIN_EXE_paysettle"))
        .args(args)
        .arg("--config")
        .arg(&config)
        .env_remove("PAYSETTLE_CONFIG")
        .env("PAYSETTLE_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

#[tokio::test]
async fn an_approval_held_while_a_flag_stands_is_judged_again_after_the_operator_resolves_it() {
    let mut app = spawn_app(Options::default()).await;
    let response = app
        .http
        .post(format!("http://{}/v1/payments", app.shop))
        .json(&json!({
            "provider": "plutu",
            "reference": "PL-HOLD",
            "amount": 1250,
            "currency": "USD",
            "provider_transaction_id": "TXN-A",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
    let approval = |txn: &'static str| {
        [
            ("gateway", "mpgs"),
            ("approved", "1"),
            ("amount", "12.50"),
            ("currency", "USD"),
            ("invoice_no", "PL-HOLD"),
            ("transaction_id", txn),
        ]
    };
    // An approval for another transaction than the registered one: flagged.
    plutu_return(&app, &approval("TXN-B")).await;
    let flagged = until(&app, Provider::Plutu, "PL-HOLD", "flagged", |p| {
        p.mismatch.is_some()
    })
    .await;
    // The approval for the registered transaction comes while the flag
    // stands: held, judged on the state of that moment.
    let status = plutu_return(&app, &approval("TXN-A")).await;
    assert!(status.is_redirection() || status.is_success(), "{status}");
    paysettle_testkit::eventually(
        Duration::from_secs(20),
        "the approval for TXN-A held by the flag",
        || async {
            app.ledger
                .history(flagged.id)
                .await
                .unwrap()
                .iter()
                .any(|h| h.source == "callback" && h.outcome == "held")
        },
    )
    .await;
    let held = app.payment(Provider::Plutu, "PL-HOLD").await.unwrap();
    assert_eq!(
        held.status, flagged.status,
        "nothing settles a flagged payment"
    );
    assert_eq!(held.paid, None);
    // The operator finds TXN-B was another order's and keeps the ledger's.
    let out = paysettle_on(
        &app,
        &[
            "payments",
            "resolve",
            "plutu",
            "PL-HOLD",
            "--keep-ledger",
            "--reason",
            "TXN-B is another order's payment",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let resolved = app.payment(Provider::Plutu, "PL-HOLD").await.unwrap();
    assert!(resolved.mismatch.is_none(), "{resolved:?}");
    // The customer's browser loads the same approval again: judged again
    // now, not taken for a duplicate of the refusal, and it settles.
    let status = plutu_return(&app, &approval("TXN-A")).await;
    assert!(status.is_redirection() || status.is_success(), "{status}");
    let settled = until(&app, Provider::Plutu, "PL-HOLD", "succeeded", |p| {
        p.status == paysettle_core::PaymentStatus::Succeeded
    })
    .await;
    assert_eq!(settled.paid.map(|m| m.minor()), Some(1250));
    assert_eq!(
        settled.provider_txn_id.as_ref().map(|t| t.as_str()),
        Some("TXN-A")
    );
    let events = by_reference(&app.events().await);
    assert_eq!(
        events["PL-HOLD"],
        ["payment.mismatch", "payment.resolved", "payment.succeeded"],
        "finance hears the flag, its resolution and the settlement, in ledger order"
    );
    app.stop().await;
}
