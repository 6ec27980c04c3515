//! Settling by polling alone: the callbacks of every payment here are lost.

use super::*;

#[tokio::test]
async fn a_portmanat_payment_whose_return_is_lost_settles_by_check() {
    let w = world().await;
    let payment = w
        .payment(
            Provider::Portmanat,
            "PM-1",
            1990,
            Outcome::Success,
            Duration::from_millis(100),
        )
        .await;
    assert!(
        payment.provider_txn_id.is_some(),
        "the psp_rrn comes from /process"
    );
    let mut poller = w.poller();
    assert_eq!(
        w.settle(&mut poller, payment.id).await,
        PaymentStatus::Succeeded
    );
    let history = w.history_sources(payment.id).await;
    assert!(
        history
            .iter()
            .all(|(source, _)| source == "shop" || source == "check"),
        "{history:?}"
    );

    let relay = w.relay();
    relay.run_until_idle().await.unwrap();
    let events = w.events().await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["type"], "payment.succeeded");
    assert_eq!(events[0]["reference"], "PM-1");
    assert_eq!(events[0]["amount"], 1990);
    assert_eq!(events[0]["currency"], "AZN");
    assert_eq!(events[0]["source"], "check");
}

#[tokio::test]
async fn a_paysys_payment_pending_for_a_while_then_successful() {
    let w = world().await;
    let payment = w
        .payment(
            Provider::Paysys,
            "PS-1",
            1_139_000,
            Outcome::Success,
            Duration::from_millis(400),
        )
        .await;
    let mut poller = w.poller();
    poller.run_until_idle().await.unwrap();
    assert_eq!(
        w.settle(&mut poller, payment.id).await,
        PaymentStatus::Succeeded
    );
    let history = w.ledger.history(payment.id).await.unwrap();
    let pending_seen = history
        .iter()
        .any(|h| h.source == "check" && h.to_status.as_deref() == Some("pending"));
    assert!(
        pending_seen,
        "the checks saw it pending first: {history:#?}"
    );
}

#[tokio::test]
async fn failed_and_canceled_payments_settle_as_such() {
    let w = world().await;
    let failed = w
        .payment(
            Provider::Portmanat,
            "PM-F",
            500,
            Outcome::Failure,
            Duration::from_millis(50),
        )
        .await;
    let canceled = w
        .payment(
            Provider::Paysys,
            "PS-C",
            500_000,
            Outcome::Cancel,
            Duration::from_millis(50),
        )
        .await;
    let mut poller = w.poller();
    assert_eq!(
        w.settle(&mut poller, failed.id).await,
        PaymentStatus::Failed
    );
    assert_eq!(
        w.settle(&mut poller, canceled.id).await,
        PaymentStatus::Canceled
    );
}

#[tokio::test]
async fn a_provider_answering_500_and_429_for_a_while_is_backed_off_and_still_settles() {
    let w = world().await;
    let faults = Faults {
        http_500: 0.4,
        too_many_requests: 0.3,
        garbage: 0.1,
        retry_after_secs: 1,
        ..Faults::default()
    };
    w.sim
        .set_scenario(
            Some(SimProvider::Paysys),
            ScenarioPatch {
                faults: Some(faults),
                ..ScenarioPatch::default()
            },
        )
        .unwrap();
    let payment = w
        .payment(
            Provider::Paysys,
            "PS-2",
            700_000,
            Outcome::Success,
            Duration::from_millis(50),
        )
        .await;
    let mut poller = w.poller();
    assert_eq!(
        w.settle(&mut poller, payment.id).await,
        PaymentStatus::Succeeded
    );
    let stats = w.sim.stats().paysys;
    assert!(
        stats.http_500 + stats.too_many_requests + stats.garbage > 0,
        "faults were injected: {stats:?}"
    );
    // That a 429's Retry-After is honoured is the next test's, on a clock
    // the test moves.
}

#[tokio::test]
async fn a_429_leaves_the_payment_alone_until_its_retry_after_has_passed_on_the_clock() {
    // The clock moves only when this test says; the deadline is far.
    let clock = TestClock::stopped();
    let w = world_clocked(Duration::from_secs(3600), Arc::clone(&clock), |_| {}).await;
    let faults = Faults {
        too_many_requests: 1.0,
        retry_after_secs: 30,
        ..Faults::default()
    };
    w.sim
        .set_scenario(
            Some(SimProvider::Portmanat),
            ScenarioPatch {
                faults: Some(faults),
                ..ScenarioPatch::default()
            },
        )
        .unwrap();
    let payment = w
        .payment(
            Provider::Portmanat,
            "PM-429",
            1990,
            Outcome::Success,
            Duration::from_millis(10),
        )
        .await;
    let mut poller = w.poller();
    assert_eq!(poller.run_until_idle().await.unwrap(), 0, "not due yet");
    // Past the first interval (10 ms): one check, answered 429.
    clock.advance(Duration::from_millis(10));
    assert_eq!(poller.run_until_idle().await.unwrap(), 1);
    assert_eq!(w.sim.stats().portmanat.too_many_requests, 1);
    let asked_at = clock.now();
    let state = w.ledger.payment_by_id(payment.id).await.unwrap().unwrap();
    let far = asked_at + jiff::SignedDuration::from_hours(2);
    let scheduled = w
        .ledger
        .due_checks(far, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.payment.id == payment.id)
        .unwrap_or_else(|| panic!("the payment left the schedule: {state:?}"));
    // (The ledger keeps milliseconds.)
    let wait = scheduled.next_check_at.duration_since(asked_at);
    assert!(
        (wait - jiff::SignedDuration::from_secs(30)).abs() < jiff::SignedDuration::from_millis(1),
        "the next check waits for Retry-After: {wait:?}"
    );
    assert!(
        scheduled
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("429")),
        "{scheduled:?}"
    );
    // However often the poller looks before then, nobody asks again.
    clock.advance(Duration::from_secs(29));
    for _ in 0..3 {
        assert_eq!(poller.run_until_idle().await.unwrap(), 0);
    }
    assert_eq!(w.sim.stats().portmanat.requests, 1);
    // Once the clock has passed it, the check is due again.
    clock.advance(Duration::from_secs(1));
    let due = w.ledger.due_checks(clock.now(), 10).await.unwrap();
    assert!(
        due.iter().any(|c| c.payment.id == payment.id),
        "due once Retry-After has passed: {due:?}"
    );
}

#[tokio::test]
async fn a_payment_that_never_settles_goes_stale_and_finance_hears_of_it() {
    let clock = TestClock::new();
    let w = world_clocked(Duration::from_secs(60), Arc::clone(&clock), |_| {}).await;
    let paysys = w
        .payment(
            Provider::Paysys,
            "PS-3",
            100_000,
            Outcome::Success,
            Duration::from_secs(600),
        )
        .await;
    let plutu = w.register(Provider::Plutu, "INV-3", 500, None).await;
    let mut poller = w.poller();
    // A few checks find PaySys's payment pending; then the deadline passes.
    poller.run_until_idle().await.unwrap();
    assert_eq!(w.status(plutu.id).await, PaymentStatus::Created);
    clock.advance(Duration::from_secs(61));
    assert_eq!(w.settle(&mut poller, paysys.id).await, PaymentStatus::Stale);
    assert_eq!(
        w.settle(&mut poller, plutu.id).await,
        PaymentStatus::Stale,
        "Plutu has no status API: stale at its deadline"
    );
    w.relay().run_until_idle().await.unwrap();
    let events = w.events().await;
    let mut types: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e["reference"].as_str().unwrap().to_owned(),
                e["type"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    types.sort();
    assert_eq!(
        types,
        [
            ("INV-3".to_owned(), "payment.stale".to_owned()),
            ("PS-3".to_owned(), "payment.stale".to_owned())
        ]
    );
    assert_eq!(w.sim.stats().plutu.requests, 0, "Plutu is never polled");
}

#[tokio::test]
async fn a_portmanat_date_with_an_offset_or_an_abbreviation_still_settles() {
    use paysettle_sim::config::TimezoneStyle;
    for (style, reference) in [
        (TimezoneStyle::Offset, "PM-TZ1"),
        (TimezoneStyle::Abbreviation, "PM-TZ2"),
    ] {
        let mut config = SimConfig::for_tests();
        config.portmanat.timezone_style = style;
        let w = world_where(Duration::from_secs(20), config, |_| {}).await;
        let payment = w
            .payment(
                Provider::Portmanat,
                reference,
                1990,
                Outcome::Success,
                Duration::from_millis(50),
            )
            .await;
        let mut poller = w.poller();
        assert_eq!(
            w.settle(&mut poller, payment.id).await,
            PaymentStatus::Succeeded,
            "{style:?}"
        );
        let history = w.ledger.history(payment.id).await.unwrap();
        let answer = history
            .iter()
            .find(|h| h.source == "check" && h.to_status.as_deref() == Some("succeeded"))
            .unwrap();
        let raw = answer.provider_time_raw.as_deref().unwrap();
        let utc = answer.provider_time.unwrap();
        // The raw text is Baku time, four hours ahead of its UTC reading.
        let civil = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S%.f", raw).unwrap();
        assert_eq!(
            civil.to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp(),
            utc + jiff::SignedDuration::from_hours(4),
            "{style:?}"
        );
    }
}

/// Sets the simulator's Portmanat `/check` answer shapes.
fn portmanat_answers(w: &World, answers: paysettle_sim::scenario::Answers) {
    w.sim
        .set_scenario(
            Some(SimProvider::Portmanat),
            ScenarioPatch {
                answers: Some(answers),
                ..ScenarioPatch::default()
            },
        )
        .unwrap();
}

/// Waits until the simulator has finished the payment `reference`.
async fn sim_final(w: &World, reference: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !w
        .sim
        .payments()
        .iter()
        .any(|p| p.reference == reference && p.status.is_final())
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the simulator never finished {reference}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_portmanat_check_answer_without_a_body_is_a_failed_check_not_a_settlement() {
    let w = world().await;
    portmanat_answers(
        &w,
        paysettle_sim::scenario::Answers {
            without_body: 1.0,
            ..Default::default()
        },
    );
    let payment = w
        .payment(
            Provider::Portmanat,
            "PM-NB",
            1990,
            Outcome::Success,
            Duration::from_millis(10),
        )
        .await;
    sim_final(&w, "PM-NB").await;
    let mut poller = w.poller();
    // Several checks, each answered OK/0 without a body.
    let far = Timestamp::now() + jiff::SignedDuration::from_hours(1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let check = loop {
        poller.run_until_idle().await.unwrap();
        let due = w.ledger.due_checks(far, 10).await.unwrap();
        let check = due.into_iter().find(|c| c.payment.id == payment.id);
        match check {
            Some(c) if c.attempts >= 3 => break c,
            Some(_) => {}
            None => panic!(
                "the payment left the schedule: {}",
                w.status(payment.id).await
            ),
        }
        assert!(tokio::time::Instant::now() < deadline, "too few checks ran");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        matches!(
            w.status(payment.id).await,
            PaymentStatus::Created | PaymentStatus::Pending
        ),
        "an answer that names no payment settled one"
    );
    let error = check.last_error.unwrap_or_default();
    assert!(error.contains("body"), "{error}");
    // With the body back, the same payment settles.
    portmanat_answers(&w, Default::default());
    assert_eq!(
        w.settle(&mut poller, payment.id).await,
        PaymentStatus::Succeeded
    );
}

#[tokio::test]
async fn a_hint_naming_a_victim_with_a_bodyless_answer_books_nothing() {
    let w = world().await;
    portmanat_answers(
        &w,
        paysettle_sim::scenario::Answers {
            without_body: 1.0,
            ..Default::default()
        },
    );
    // The attacker's own small payment, paid: its /check says OK/0.
    let attacker = w
        .sim
        .create_payment(
            NewPayment::new(SimProvider::Portmanat, "ATTACKER-1", 100)
                .outcome(Outcome::Success)
                .pending(Duration::from_millis(10))
                .callback_url(NOWHERE),
        )
        .unwrap();
    sim_final(&w, "ATTACKER-1").await;
    // The victim's order is registered, its psp_rrn not yet known.
    let victim = w
        .register(Provider::Portmanat, "VICTIM-1", 199_000, None)
        .await;
    let relay = w.relay();
    let mut applier = w.applier(&relay);
    let hint = ReturnHint {
        psp_rrn: Some(ProviderTxnId::parse(attacker.provider_txn_id.as_deref().unwrap()).unwrap()),
        client_rrn: Some(Reference::parse("VICTIM-1").unwrap()),
    };
    publish(
        &w.queue,
        &inbound(Provider::Portmanat, "default", Payload::PortmanatHint(hint)),
    )
    .await;
    assert_eq!(applier.run_once().await.unwrap().hints, 1);
    let after = w.ledger.payment_by_id(victim.id).await.unwrap().unwrap();
    assert_eq!(after.status, PaymentStatus::Created, "{after:#?}");
    assert_eq!(after.paid, None);
    assert_eq!(after.provider_txn_id, None);
}

#[tokio::test]
async fn a_check_answer_from_a_service_in_test_mode_is_marked_as_a_test() {
    let w = world().await;
    let payment = w
        .payment(
            Provider::Portmanat,
            "PM-T",
            500,
            Outcome::Success,
            Duration::from_millis(10),
        )
        .await;
    sim_final(&w, "PM-T").await;
    for test_service in [false, true] {
        portmanat_answers(
            &w,
            paysettle_sim::scenario::Answers {
                test_service,
                ..Default::default()
            },
        );
        let paysettle_worker::status::CheckResult::Answer { observation, raw } =
            w.client.check(&payment).await
        else {
            panic!("no answer")
        };
        assert_eq!(observation.test, test_service);
        assert_eq!(raw["body"]["service"]["test"], i32::from(test_service));
        assert_eq!(observation.money, Some(money(Provider::Portmanat, 500)));
    }
    // Per payment, whatever the scenario says.
    portmanat_answers(&w, Default::default());
    let view = w
        .sim
        .create_payment(
            NewPayment::new(SimProvider::Portmanat, "PM-T2", 700)
                .outcome(Outcome::Success)
                .pending(Duration::from_millis(10))
                .callback_url(NOWHERE)
                .test_service(true),
        )
        .unwrap();
    sim_final(&w, "PM-T2").await;
    let one = w
        .register(
            Provider::Portmanat,
            "PM-T2",
            700,
            view.provider_txn_id.as_deref(),
        )
        .await;
    let paysettle_worker::status::CheckResult::Answer { observation, .. } =
        w.client.check(&one).await
    else {
        panic!("no answer")
    };
    assert!(observation.test);
    assert!(
        !w.settings
            .accepts_test(Provider::Portmanat, &Account::default())
    );
}
