//! Every payment settled, and announced exactly as it happened.

use super::*;

fn expect(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(r, types)| (r.to_string(), types.iter().map(|t| t.to_string()).collect()))
        .collect()
}

#[tokio::test]
async fn every_provider_settles_successes_failures_cancels_late_successes_and_lost_callbacks() {
    let mut app = spawn_app(Options::default()).await;
    let mut payments = Vec::new();
    for (provider, tag, minor) in [
        (Provider::Portmanat, "PM", 1990),
        (Provider::Paysys, "PS", 1_139_000),
        (Provider::Plutu, "PL", 1250),
    ] {
        for (kind, outcome, pending) in [
            ("OK", Outcome::Success, 200),
            ("FAIL", Outcome::Failure, 200),
            ("CANCEL", Outcome::Cancel, 200),
            ("LATE", Outcome::Success, 1500),
        ] {
            let reference = format!("{tag}-{kind}");
            app.pay(Pay {
                pending: Duration::from_millis(pending),
                ..Pay::new(provider, &reference, minor, outcome)
            })
            .await;
            payments.push((provider, reference));
        }
    }
    // Lost callbacks: settled by polling alone where the provider can be polled.
    for (provider, reference) in [
        (Provider::Portmanat, "PM-LOST"),
        (Provider::Paysys, "PS-LOST"),
    ] {
        app.pay(Pay {
            callback_url: Some(NOWHERE.into()),
            ..Pay::new(provider, reference, 500_000, Outcome::Success)
        })
        .await;
        payments.push((provider, reference.to_owned()));
    }
    let names: Vec<(Provider, &str)> = payments.iter().map(|(p, r)| (*p, r.as_str())).collect();
    app.settled(&names, Duration::from_secs(20)).await;

    let events = by_reference(&app.events().await);
    let mut expected = Vec::new();
    for tag in ["PM", "PS", "PL"] {
        expected.push((format!("{tag}-OK"), vec!["payment.succeeded"]));
        expected.push((format!("{tag}-FAIL"), vec!["payment.failed"]));
        // Portmanat's /check has no cancel code: a cancelled payment is -1,
        // which is all paysettle can honestly report.
        expected.push((
            format!("{tag}-CANCEL"),
            vec![if tag == "PM" {
                "payment.failed"
            } else {
                "payment.canceled"
            }],
        ));
        expected.push((format!("{tag}-LATE"), vec!["payment.succeeded"]));
    }
    expected.push(("PM-LOST".into(), vec!["payment.succeeded"]));
    expected.push(("PS-LOST".into(), vec!["payment.succeeded"]));
    let expected: BTreeMap<String, Vec<String>> = expected
        .into_iter()
        .map(|(r, t)| (r, t.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(
        events, expected,
        "finance receives exactly these events, no more, no fewer"
    );

    // The ledger matches the simulator's truth, amount included.
    for view in app.sim.payments() {
        let provider = match view.provider {
            SimProvider::Portmanat => Provider::Portmanat,
            SimProvider::Paysys => Provider::Paysys,
            SimProvider::Plutu => Provider::Plutu,
        };
        let record = app.payment(provider, &view.reference).await.unwrap();
        let mut truth = format!("{:?}", view.status).to_lowercase();
        if provider == Provider::Portmanat && truth == "canceled" {
            truth = "failed".into();
        }
        assert_eq!(record.status.as_str(), truth, "{}", view.reference);
        assert_eq!(
            record.expected.unwrap().minor(),
            view.amount_minor,
            "{}",
            view.reference
        );
        assert_eq!(
            record.expected.unwrap().currency().code(),
            format!("{:?}", view.currency).to_uppercase(),
            "{}",
            view.reference
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn duplicated_and_out_of_order_callbacks_are_announced_once_and_never_regress() {
    let mut app = spawn_app(Options {
        sim: Box::new(|config| {
            config.scenario.callbacks.duplicated = 1.0;
            config.scenario.callbacks.out_of_order = 1.0;
            config.scenario.callbacks.reorder_gap_ms = 100;
        }),
        ..Options::default()
    })
    .await;
    let paysys = app
        .pay(Pay::new(
            Provider::Paysys,
            "PS-DUP",
            100_000,
            Outcome::Success,
        ))
        .await;
    let plutu = app
        .pay(Pay::new(Provider::Plutu, "PL-DUP", 700, Outcome::Success))
        .await;
    let portmanat = app
        .pay(Pay::new(
            Provider::Portmanat,
            "PM-DUP",
            700,
            Outcome::Success,
        ))
        .await;
    app.settled(
        &[
            (Provider::Paysys, "PS-DUP"),
            (Provider::Plutu, "PL-DUP"),
            (Provider::Portmanat, "PM-DUP"),
        ],
        Duration::from_secs(20),
    )
    .await;

    // A third copy of each provider's final callback, sent by hand as the
    // provider would (same credentials, same signed parameters).
    let plutu_view = app.sim.payment(&plutu.id).unwrap();
    let txn = plutu_view
        .provider_txn_id
        .clone()
        .expect("the callback carried a transaction id");
    let params = [
        ("gateway", "mpgs"),
        ("approved", "1"),
        ("amount", plutu_view.amount_text.as_str()),
        ("currency", "USD"),
        ("invoice_no", "PL-DUP"),
        ("transaction_id", txn.as_str()),
    ];
    let message =
        paysettle_sim::plutu::callback_message(paysettle_sim::model::PlutuGateway::Mpgs, &params);
    let hashed = paysettle_sim::plutu::callback_hash("sk_demo_plutu_secret", &message);
    let again = reqwest::get(format!(
        "http://{}/callbacks/plutu?{message}&hashed={hashed}",
        app.receiver
    ))
    .await
    .unwrap();
    assert!(
        again.status().is_success() || again.status().is_redirection(),
        "{}",
        again.status()
    );
    let paysys_view = app.sim.payment(&paysys.id).unwrap();
    let notification = json!({
        "id": paysys_view.provider_txn_id, "account": "PS-DUP", "amount": 100_000, "card_masked": "222222******2222",
        "currency": 860, "currency_name": "uzs", "status": 2, "date": "24.06.2026 07:49:16"
    });
    let again = reqwest::Client::new()
        .post(format!("http://{}/callbacks/paysys", app.receiver))
        .basic_auth("demo-vendor", Some("demo-vendor-secret"))
        .json(&notification)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);

    // And a third return of the customer's browser to Portmanat's route.
    let psp_rrn = portmanat.provider_txn_id.clone().unwrap();
    let again = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!(
            "http://{}/callbacks/portmanat?psp_rrn={psp_rrn}&client_rrn=PM-DUP",
            app.receiver
        ))
        .send()
        .await
        .unwrap();
    assert!(
        again.status().is_success() || again.status().is_redirection(),
        "{}",
        again.status()
    );

    // The late "awaiting" notification arrived after the final one: it is
    // recorded and ignored, no regression.
    let paysys_id = app.payment(Provider::Paysys, "PS-DUP").await.unwrap().id;
    paysettle_testkit::eventually(
        Duration::from_secs(20),
        "the late pending of PS-DUP recorded as ignored (would_regress)",
        || async {
            app.ledger
                .history(paysys_id)
                .await
                .unwrap()
                .iter()
                .any(|h| h.outcome == "ignored" && h.reason.as_deref() == Some("would_regress"))
        },
    )
    .await;
    assert_eq!(
        app.payment(Provider::Paysys, "PS-DUP")
            .await
            .unwrap()
            .status,
        paysettle_core::PaymentStatus::Succeeded
    );
    let events = by_reference(&app.events().await);
    assert_eq!(
        events,
        expect(&[
            ("PL-DUP", &["payment.succeeded"]),
            ("PM-DUP", &["payment.succeeded"]),
            ("PS-DUP", &["payment.succeeded"])
        ])
    );
    let history = app
        .ledger
        .history(app.payment(Provider::Paysys, "PS-DUP").await.unwrap().id)
        .await
        .unwrap();
    assert!(
        history
            .iter()
            .any(|h| h.outcome == "ignored" && h.reason.as_deref() == Some("would_regress")),
        "the late pending was recorded and ignored: {history:#?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_amount_that_disagrees_with_the_registration_is_a_mismatch_never_a_success() {
    let mut app = spawn_app(Options::default()).await;
    for (provider, reference, paid) in [
        (Provider::Portmanat, "PM-MIS", 1990),
        (Provider::Paysys, "PS-MIS", 1_000_000),
        (Provider::Plutu, "PL-MIS", 1250),
    ] {
        app.pay(Pay {
            registered_minor: Some(paid + 100),
            // The registration must land before the provider pays, even on
            // a loaded machine: a payment the provider reports first is
            // adopted, and reconciliation (not this path) flags it.
            pending: Duration::from_secs(2),
            ..Pay::new(provider, reference, paid, Outcome::Success)
        })
        .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let mut flagged = 0;
        for (provider, reference) in [
            (Provider::Portmanat, "PM-MIS"),
            (Provider::Paysys, "PS-MIS"),
            (Provider::Plutu, "PL-MIS"),
        ] {
            let p = app.payment(provider, reference).await.unwrap();
            assert_ne!(
                p.status,
                paysettle_core::PaymentStatus::Succeeded,
                "{reference} must never succeed"
            );
            flagged += usize::from(p.mismatch.is_some());
        }
        if flagged == 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "mismatches not flagged"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let events = app.events().await;
    assert_eq!(
        by_reference(&events),
        expect(&[
            ("PL-MIS", &["payment.mismatch"]),
            ("PM-MIS", &["payment.mismatch"]),
            ("PS-MIS", &["payment.mismatch"])
        ])
    );
    for event in &events {
        assert_eq!(
            event["expected_amount"].as_i64().unwrap(),
            event["amount"].as_i64().unwrap() + 100,
            "{event}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn a_paysys_refund_after_success_is_announced_after_the_success() {
    let mut app = spawn_app(Options::default()).await;
    app.pay(Pay::new(
        Provider::Paysys,
        "PS-REF",
        450_000,
        Outcome::Refund,
    ))
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app
        .payment(Provider::Paysys, "PS-REF")
        .await
        .unwrap()
        .status
        != paysettle_core::PaymentStatus::Refunded
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the refund never arrived"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let events = app.events().await;
    assert_eq!(
        by_reference(&events),
        expect(&[("PS-REF", &["payment.succeeded", "payment.refunded"])])
    );
    let refund = events
        .iter()
        .find(|e| e["type"] == "payment.refunded")
        .unwrap();
    assert_eq!(refund["amount"], 450_000);
    assert_eq!(refund["previous_status"], "succeeded");
    app.stop().await;
}

#[tokio::test]
async fn providers_answering_500_and_429_for_a_while_are_backed_off_and_still_settle() {
    let mut app = spawn_app(Options {
        sim: Box::new(|config| {
            config.scenario.faults.http_500 = 0.35;
            config.scenario.faults.too_many_requests = 0.25;
            config.scenario.faults.garbage = 0.1;
            config.scenario.faults.retry_after_secs = 1;
        }),
        ..Options::default()
    })
    .await;
    for (provider, reference) in [
        (Provider::Portmanat, "PM-ERR"),
        (Provider::Paysys, "PS-ERR"),
    ] {
        app.pay(Pay {
            callback_url: Some(NOWHERE.into()),
            ..Pay::new(provider, reference, 300_000, Outcome::Success)
        })
        .await;
    }
    app.settled(
        &[
            (Provider::Portmanat, "PM-ERR"),
            (Provider::Paysys, "PS-ERR"),
        ],
        Duration::from_secs(30),
    )
    .await;
    let stats = app.sim.stats();
    let injected = stats.portmanat.http_500
        + stats.portmanat.too_many_requests
        + stats.paysys.http_500
        + stats.paysys.too_many_requests;
    assert!(injected > 0, "faults were injected: {stats:?}");
    assert_eq!(
        by_reference(&app.events().await),
        expect(&[
            ("PM-ERR", &["payment.succeeded"]),
            ("PS-ERR", &["payment.succeeded"])
        ])
    );
    app.stop().await;
}

#[tokio::test]
async fn payments_that_never_settle_go_stale_and_finance_hears_of_it() {
    let mut app = spawn_app(Options {
        deadline: Duration::from_secs(60),
        ..Options::default()
    })
    .await;
    for (provider, reference) in [
        (Provider::Portmanat, "PM-STALE"),
        (Provider::Paysys, "PS-STALE"),
        (Provider::Plutu, "PL-STALE"),
    ] {
        app.pay(Pay {
            pending: Duration::from_secs(600),
            ..Pay::new(provider, reference, 100_000, Outcome::Success)
        })
        .await;
    }
    // A minute passes, for the providers and for paysettle, with no answer.
    app.advance(Duration::from_secs(61)).await;
    app.settled(
        &[
            (Provider::Portmanat, "PM-STALE"),
            (Provider::Paysys, "PS-STALE"),
            (Provider::Plutu, "PL-STALE"),
        ],
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(
        by_reference(&app.events().await),
        expect(&[
            ("PL-STALE", &["payment.stale"]),
            ("PM-STALE", &["payment.stale"]),
            ("PS-STALE", &["payment.stale"])
        ])
    );
    app.stop().await;
}

/// A path segment percent-encoded: everything but RFC 3986's unreserved
/// characters.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn identifiers_of_any_alphabet_settle_end_to_end_and_read_back_through_the_shop_api() {
    let mut app = spawn_app(Options::default()).await;
    // The shop's and the providers' own text: slashes, plus, equals, colon,
    // spaces, non-ASCII letters. (Plutu itself allows only
    // `[A-Za-z0-9._-]` in `invoice_no`, which the simulator enforces.)
    let payments = [
        (Provider::Portmanat, "PM/1 +=:ü", 1990),
        (Provider::Paysys, "PS/2 +=:Зк", 1_139_000),
        (Provider::Plutu, "PL_3.x-y", 1250),
    ];
    for (provider, reference, minor) in payments {
        app.pay(Pay::new(provider, reference, minor, Outcome::Success))
            .await;
    }
    let named: Vec<(Provider, &str)> = payments.iter().map(|(p, r, _)| (*p, *r)).collect();
    app.settled(&named, Duration::from_secs(30)).await;
    for (provider, reference, minor) in payments {
        let url = format!(
            "http://{}/v1/payments/{provider}/{}",
            app.shop,
            path_segment(reference)
        );
        let response = app.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["payment"]["reference"], reference);
        assert_eq!(body["payment"]["status"], "succeeded", "{body:#}");
        assert_eq!(body["payment"]["paid"], minor);
    }
    // A reference that is not UTF-8 once decoded is refused, not guessed.
    let response = app
        .http
        .get(format!("http://{}/v1/payments/paysys/%FF", app.shop))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let events = app.events().await;
    assert_eq!(
        by_reference(&events),
        expect(&[
            ("PL_3.x-y", &["payment.succeeded"]),
            ("PM/1 +=:ü", &["payment.succeeded"]),
            ("PS/2 +=:Зк", &["payment.succeeded"]),
        ])
    );
    app.stop().await;
}
