//! Applying callback messages from the queue.

use super::*;

#[tokio::test]
async fn a_plutu_callback_is_applied_acked_and_announced_once_however_often_it_arrives() {
    let w = world().await;
    w.register(Provider::Plutu, "INV-1", 1250, None).await;
    let relay = w.relay();
    let mut applier = w.applier(&relay);
    let callback = inbound(
        Provider::Plutu,
        "default",
        Payload::Observation(observation(
            Provider::Plutu,
            "INV-1",
            ObservedStatus::Succeeded,
            Some(money(Provider::Plutu, 1250)),
        )),
    );
    for _ in 0..3 {
        // The same callback three times, as separate messages.
        let mut again = callback.clone();
        again.id = uuid::Uuid::now_v7().to_string();
        publish(&w.queue, &again).await;
    }
    let round = applier.run_once().await.unwrap();
    assert_eq!((round.received, round.applied), (3, 3));
    assert_eq!(
        w.queue.message_count(QueueKind::Callbacks).await.unwrap(),
        0,
        "all acked after the commit"
    );
    relay.run_until_idle().await.unwrap();
    let events = w.events().await;
    assert_eq!(events.len(), 1, "one event for one transition: {events:#?}");
    assert_eq!(events[0]["type"], "payment.succeeded");
    assert_eq!(events[0]["source"], "callback");
}

#[tokio::test]
async fn messages_that_cannot_be_applied_are_dead_lettered_with_the_reason() {
    let w = world().await;
    let relay = w.relay();
    let mut applier = w.applier(&relay);
    w.queue
        .publish(&paysettle_testkit::handoff::sign(Message::json(
            "garbage-1",
            b"{not json".to_vec(),
        )))
        .await
        .unwrap();
    let unknown = inbound(
        Provider::Plutu,
        "other-shop",
        Payload::Observation(observation(
            Provider::Plutu,
            "INV-2",
            ObservedStatus::Failed,
            None,
        )),
    );
    publish(&w.queue, &unknown).await;
    let mut future = inbound(
        Provider::Plutu,
        "default",
        Payload::Observation(observation(
            Provider::Plutu,
            "INV-3",
            ObservedStatus::Failed,
            None,
        )),
    );
    future.format = 99;
    publish(&w.queue, &future).await;
    let round = applier.run_once().await.unwrap();
    assert_eq!(round.dead_lettered, 3);
    assert_eq!(
        w.queue.message_count(QueueKind::Callbacks).await.unwrap(),
        0
    );
    let mut dead = w.queue.consumer(QueueKind::DeadLetters).unwrap();
    let batch = dead
        .next_batch(10, Duration::from_millis(200))
        .await
        .unwrap();
    let mut reasons: Vec<String> = batch
        .iter()
        .map(|d| d.headers()[paysettle_queue::DEAD_LETTER_REASON_HEADER].clone())
        .collect();
    reasons.sort();
    assert!(
        reasons[0].starts_with("no plutu account other-shop"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].starts_with("not a callback message"),
        "{reasons:?}"
    );
    assert!(
        reasons[2].starts_with("unknown message format 99"),
        "{reasons:?}"
    );
    assert!(
        w.ledger.list(Default::default()).await.unwrap().is_empty(),
        "nothing reached the ledger"
    );
}

#[tokio::test]
async fn a_paysys_success_notification_is_held_until_check_payment_agrees() {
    let w = world().await;
    let payment = w
        .payment(
            Provider::Paysys,
            "PS-10",
            250_000,
            Outcome::Success,
            Duration::from_millis(50),
        )
        .await;
    let relay = w.relay();
    let mut applier = w.applier(&relay);
    let mut notified = observation(
        Provider::Paysys,
        "PS-10",
        ObservedStatus::Succeeded,
        Some(money(Provider::Paysys, 250_000)),
    );
    notified.provider_status = "2".into();
    // The provider's own transaction id (another one would be flagged).
    notified.provider_txn_id = payment.provider_txn_id.clone();
    publish(
        &w.queue,
        &inbound(Provider::Paysys, "default", Payload::Observation(notified)),
    )
    .await;
    applier.run_once().await.unwrap();
    assert_eq!(
        w.status(payment.id).await,
        PaymentStatus::Pending,
        "held: the notification alone does not settle it"
    );
    let mut poller = w.poller();
    assert_eq!(
        w.settle(&mut poller, payment.id).await,
        PaymentStatus::Succeeded
    );
    let history = w.ledger.history(payment.id).await.unwrap();
    let settled_by = history
        .iter()
        .find(|h| h.to_status.as_deref() == Some("succeeded"))
        .unwrap();
    assert_eq!(settled_by.source, "check");
}

#[tokio::test]
async fn with_confirmation_off_a_paysys_notification_settles_at_once() {
    let w = world_with(Duration::from_secs(20), |s| s.paysys_confirm = false).await;
    let payment = w.register(Provider::Paysys, "PS-11", 250_000, None).await;
    let relay = w.relay();
    let mut applier = w.applier(&relay);
    let notified = observation(
        Provider::Paysys,
        "PS-11",
        ObservedStatus::Succeeded,
        Some(money(Provider::Paysys, 250_000)),
    );
    publish(
        &w.queue,
        &inbound(Provider::Paysys, "default", Payload::Observation(notified)),
    )
    .await;
    applier.run_once().await.unwrap();
    assert_eq!(w.status(payment.id).await, PaymentStatus::Succeeded);
}

#[tokio::test]
async fn an_amount_that_disagrees_is_a_mismatch_never_a_success() {
    let w = world().await;
    let payment = w.register(Provider::Plutu, "INV-M", 1250, None).await;
    let relay = w.relay();
    let mut applier = w.applier(&relay);
    let wrong = observation(
        Provider::Plutu,
        "INV-M",
        ObservedStatus::Succeeded,
        Some(money(Provider::Plutu, 125)),
    );
    publish(
        &w.queue,
        &inbound(Provider::Plutu, "default", Payload::Observation(wrong)),
    )
    .await;
    applier.run_once().await.unwrap();
    assert_eq!(w.status(payment.id).await, PaymentStatus::Created);
    relay.run_until_idle().await.unwrap();
    let events = w.events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "payment.mismatch");
    assert_eq!(events[0]["amount"], 125);
    assert_eq!(events[0]["expected_amount"], 1250);
}

#[tokio::test]
async fn a_portmanat_return_hint_makes_the_check_due_at_once() {
    // A long first interval: without the hint, nothing would be checked.
    let w = world_with(Duration::from_secs(20), |s| {
        let limits = s.limits.get_mut(&Provider::Portmanat).unwrap();
        limits.policy.first = Duration::from_secs(3600);
        limits.policy.max_interval = Duration::from_secs(3600);
    })
    .await;
    let view = w
        .sim
        .create_payment(
            NewPayment::new(SimProvider::Portmanat, "PM-H", 990)
                .outcome(Outcome::Success)
                .pending(Duration::from_millis(10))
                .callback_url(NOWHERE),
        )
        .unwrap();
    let payment = w
        .register(
            Provider::Portmanat,
            "PM-H",
            990,
            view.provider_txn_id.as_deref(),
        )
        .await;
    let mut poller = w.poller();
    // The customer pays at the simulator.
    w.sim.advance(Duration::from_millis(10)).await.unwrap();
    assert_eq!(
        poller.run_until_idle().await.unwrap(),
        0,
        "nothing is due yet"
    );

    let relay = w.relay();
    let mut applier = w.applier(&relay);
    let hint = ReturnHint {
        psp_rrn: view
            .provider_txn_id
            .as_deref()
            .map(|t| ProviderTxnId::parse(t).unwrap()),
        client_rrn: Some(Reference::parse("PM-H").unwrap()),
    };
    publish(
        &w.queue,
        &inbound(Provider::Portmanat, "default", Payload::PortmanatHint(hint)),
    )
    .await;
    assert_eq!(applier.run_once().await.unwrap().hints, 1);
    assert_eq!(
        poller.run_until_idle().await.unwrap(),
        1,
        "the hint made it due"
    );
    assert_eq!(w.status(payment.id).await, PaymentStatus::Succeeded);
}

#[tokio::test]
async fn a_hint_for_an_unregistered_portmanat_payment_is_believed_only_through_check() {
    let w = world().await;
    let view = w
        .sim
        .create_payment(
            NewPayment::new(SimProvider::Portmanat, "PM-U", 1500)
                .outcome(Outcome::Success)
                .pending(Duration::from_millis(10))
                .callback_url(NOWHERE),
        )
        .unwrap();
    // The customer pays at the simulator.
    w.sim.advance(Duration::from_millis(10)).await.unwrap();
    let relay = w.relay();
    let mut applier = w.applier(&relay);
    let psp = view.provider_txn_id.clone().unwrap();
    // A forged hint naming a psp_rrn that does not exist creates nothing.
    let forged = ReturnHint {
        psp_rrn: Some(ProviderTxnId::parse("forged-123").unwrap()),
        client_rrn: Some(Reference::parse("PM-X").unwrap()),
    };
    publish(
        &w.queue,
        &inbound(
            Provider::Portmanat,
            "default",
            Payload::PortmanatHint(forged),
        ),
    )
    .await;
    // A genuine one creates the payment from /check's answer.
    let genuine = ReturnHint {
        psp_rrn: Some(ProviderTxnId::parse(&psp).unwrap()),
        client_rrn: Some(Reference::parse("PM-U").unwrap()),
    };
    publish(
        &w.queue,
        &inbound(
            Provider::Portmanat,
            "default",
            Payload::PortmanatHint(genuine),
        ),
    )
    .await;
    applier.run_once().await.unwrap();
    let payments = w.ledger.list(Default::default()).await.unwrap();
    assert_eq!(payments.len(), 1, "{payments:#?}");
    assert_eq!(payments[0].reference.as_str(), "PM-U");
    assert_eq!(payments[0].status, PaymentStatus::Succeeded);
    assert_eq!(payments[0].paid, Some(money(Provider::Portmanat, 1500)));
    assert!(!payments[0].registered);
}

#[tokio::test]
async fn a_card_registration_reaches_the_shop_queue_and_never_the_ledger_or_finance() {
    let w = world().await;
    let relay = w.relay();
    let mut applier = w.applier(&relay);
    let card = Payload::CardRegistered {
        card_id: "d553921350e68a6af96d63a544720f9c".into(),
        token: paysettle_core::inbound::CardToken(
            "0b6227c70d365255176cb6c3b9b6cccfd3aa17b0".into(),
        ),
        pan_masked: "222222******2222".into(),
    };
    publish(&w.queue, &inbound(Provider::Paysys, "default", card)).await;
    assert_eq!(applier.run_once().await.unwrap().forwarded, 1);
    let mut shop = w.queue.consumer(QueueKind::Shop).unwrap();
    let batch = shop
        .next_batch(10, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(batch.len(), 1);
    let body: serde_json::Value = serde_json::from_slice(batch[0].body()).unwrap();
    assert_eq!(body["kind"], "card_registered");
    assert_eq!(
        body["token"], "0b6227c70d365255176cb6c3b9b6cccfd3aa17b0",
        "the shop needs the token"
    );
    assert!(
        w.events().await.is_empty(),
        "finance never sees a card token"
    );
    assert!(w.ledger.list(Default::default()).await.unwrap().is_empty());
    let dir = w._dir.path().join("ledger.db");
    let ledger_bytes = std::fs::read(&dir).unwrap();
    assert!(
        !String::from_utf8_lossy(&ledger_bytes).contains("0b6227c7"),
        "the token never reaches the ledger file"
    );
}

fn succeeded_callback(reference: &str) -> InboundCallback {
    inbound(
        Provider::Plutu,
        "default",
        Payload::Observation(observation(
            Provider::Plutu,
            reference,
            ObservedStatus::Succeeded,
            Some(money(Provider::Plutu, 1250)),
        )),
    )
}

#[tokio::test]
async fn under_load_the_next_batch_is_taken_while_one_commits_and_every_message_is_settled() {
    let w = world_with(Duration::from_secs(20), |s| s.batch_size = 2).await;
    let relay = w.relay();
    let mut applier = w.applier(&relay);
    for i in 0..5 {
        let reference = format!("PIPE-{i}");
        w.register(Provider::Plutu, &reference, 1250, None).await;
        publish(&w.queue, &succeeded_callback(&reference)).await;
    }
    let mut rounds = Vec::new();
    loop {
        let round = applier.run_once().await.unwrap();
        if round.received == 0 {
            break;
        }
        rounds.push((round.received, round.applied));
    }
    // Batches of two, in order; the last step found nothing ahead and
    // returned only once its acks were done.
    assert_eq!(rounds, [(2, 2), (2, 2), (1, 1)]);
    assert_eq!(
        w.queue.message_count(QueueKind::Callbacks).await.unwrap(),
        0
    );
    relay.run_until_idle().await.unwrap();
    let mut references: Vec<String> = w
        .events()
        .await
        .iter()
        .map(|e| e["reference"].as_str().unwrap().to_owned())
        .collect();
    references.sort();
    assert_eq!(
        references,
        ["PIPE-0", "PIPE-1", "PIPE-2", "PIPE-3", "PIPE-4"],
        "one event per payment, none lost or doubled"
    );
}

#[tokio::test]
async fn finishing_hands_back_the_batch_taken_ahead_at_once() {
    let w = world_with(Duration::from_secs(20), |s| s.batch_size = 2).await;
    let relay = w.relay();
    let mut applier = w.applier(&relay);
    for i in 0..3 {
        let reference = format!("AHEAD-{i}");
        w.register(Provider::Plutu, &reference, 1250, None).await;
        publish(&w.queue, &succeeded_callback(&reference)).await;
    }
    let round = applier.run_once().await.unwrap();
    assert_eq!((round.received, round.applied), (2, 2));
    applier.finish().await;
    drop(applier);
    // The one taken ahead is back and deliverable now, not after its lease
    // (5 s here) runs out.
    assert_eq!(
        w.queue.message_count(QueueKind::Callbacks).await.unwrap(),
        1
    );
    let mut next = w.applier(&relay);
    let round = tokio::time::timeout(Duration::from_secs(2), next.run_once())
        .await
        .expect("the message taken ahead was not deliverable at once (its lease is 5 s)")
        .unwrap();
    assert_eq!((round.received, round.applied), (1, 1));
    assert_eq!(
        w.queue.message_count(QueueKind::Callbacks).await.unwrap(),
        0
    );
    for i in 0..3 {
        let payment = w
            .ledger
            .find(
                Provider::Plutu,
                Account::default(),
                paysettle_store::PaymentKey::Reference(
                    Reference::parse(&format!("AHEAD-{i}")).unwrap(),
                ),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(payment.status, PaymentStatus::Succeeded, "AHEAD-{i}");
    }
}

/// Issue 17: a hint is never worth more than one `/check`. Hints naming
/// one payment that arrive together (a browser reloading, or a stranger
/// replaying a forged one) cost one check, not one each: the others are
/// acknowledged and counted as dropped while it is in flight. A forged
/// psp_rrn creates nothing.
#[tokio::test]
async fn hints_for_one_payment_cost_one_check() {
    let w = world().await;
    let relay = w.relay();
    let mut applier = w.applier(&relay);
    let forged = ReturnHint {
        psp_rrn: Some(ProviderTxnId::parse("forged-once").unwrap()),
        client_rrn: Some(Reference::parse("PM-FORGED").unwrap()),
    };
    for _ in 0..6 {
        publish(
            &w.queue,
            &inbound(
                Provider::Portmanat,
                "default",
                Payload::PortmanatHint(forged.clone()),
            ),
        )
        .await;
    }
    let before = w.sim.stats().portmanat.requests;
    let round = applier.run_once().await.unwrap();
    assert_eq!(round.received, 6, "{round:?}");
    assert_eq!((round.hints, round.hints_dropped), (1, 5), "{round:?}");
    assert_eq!(round.dead_lettered + round.requeued, 0, "{round:?}");
    assert_eq!(
        w.sim.stats().portmanat.requests - before,
        1,
        "one /check for six hints"
    );
    assert!(
        w.ledger
            .find(
                Provider::Portmanat,
                Account::default(),
                paysettle_store::PaymentKey::Reference(Reference::parse("PM-FORGED").unwrap()),
            )
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        w.queue.message_count(QueueKind::Callbacks).await.unwrap(),
        0
    );
}

/// Issue 17: with Portmanat answering in 350 ms at 5 checks a second, a
/// burst of distinct hints taken in one batch outlived its lease and was
/// delivered again and again (more checks than hints, and dead letters for
/// "delivery limit exceeded"). Now the hint lane holds no more than it can
/// check within half a lease: every hint is delivered once, checked or
/// dropped and counted, and slowness dead-letters nothing.
#[tokio::test]
async fn slow_checks_never_outlive_the_lease_or_dead_letter_a_hint() {
    let w = world_with(Duration::from_secs(20), |s| {
        let limits = s.limits.get_mut(&Provider::Portmanat).unwrap();
        limits.rate_per_sec = 5.0;
        limits.concurrency = 2;
        limits.timeout = Duration::from_millis(1000);
        // Two batches: the second is taken ahead while the first is worked.
        s.batch_size = 30;
    })
    .await;
    w.sim
        .set_scenario(
            Some(SimProvider::Portmanat),
            ScenarioPatch {
                latency: Some(paysettle_sim::scenario::Latency::Fixed { ms: 350 }),
                ..ScenarioPatch::default()
            },
        )
        .unwrap();
    const HINTS: usize = 60;
    for n in 0..HINTS {
        let forged = ReturnHint {
            psp_rrn: Some(ProviderTxnId::parse(&format!("slow-{n}")).unwrap()),
            client_rrn: Some(Reference::parse(&format!("PM-SLOW-{n}")).unwrap()),
        };
        publish(
            &w.queue,
            &inbound(
                Provider::Portmanat,
                "default",
                Payload::PortmanatHint(forged),
            ),
        )
        .await;
    }
    let before = w.sim.stats().portmanat.requests;
    let relay = w.relay();
    let mut applier = w.applier(&relay);
    let mut total = paysettle_worker::ApplyRound::default();
    let started = std::time::Instant::now();
    // Every step returns with its work settled once the queue is empty;
    // a redelivered hint would show as more received than published.
    while total.received < HINTS || w.queue.message_count(QueueKind::Callbacks).await.unwrap() > 0 {
        let round = applier.run_once().await.unwrap();
        total.received += round.received;
        total.hints += round.hints;
        total.hints_dropped += round.hints_dropped;
        total.dead_lettered += round.dead_lettered;
        total.requeued += round.requeued;
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not settled: {total:?}"
        );
    }
    applier.finish().await;
    assert_eq!(total.received, HINTS, "delivered once each: {total:?}");
    assert_eq!(total.hints + total.hints_dropped, HINTS, "{total:?}");
    assert_eq!((total.dead_lettered, total.requeued), (0, 0), "{total:?}");
    assert_eq!(
        w.queue.message_count(QueueKind::DeadLetters).await.unwrap(),
        0
    );
    assert!(total.hints >= 1, "{total:?}");
    assert_eq!(
        w.sim.stats().portmanat.requests - before,
        total.hints as u64,
        "one /check per hint handled, none for a dropped one"
    );
}

#[tokio::test]
async fn a_message_without_a_valid_signature_is_refused_dead_lettered_and_changes_nothing() {
    let w = world().await;
    w.register(Provider::Plutu, "INV-F", 1250, None).await;
    let relay = w.relay();
    let mut applier = w.applier(&relay);
    let forged = inbound(
        Provider::Plutu,
        "default",
        Payload::Observation(observation(
            Provider::Plutu,
            "INV-F",
            ObservedStatus::Succeeded,
            Some(money(Provider::Plutu, 1250)),
        )),
    );
    let body = serde_json::to_vec(&forged).unwrap();
    let plain = || Message::json(uuid::Uuid::now_v7().to_string(), body.clone());
    // Unsigned; signed with a key the worker does not have; under the
    // worker's key id but another secret; genuine but a byte changed after.
    let other = paysettle_testkit::handoff::ring(
        &[("other", "someone-elses-secret-of-32-bytes-or-more")],
        "other",
    );
    let impostor = paysettle_testkit::handoff::ring(
        &[(
            paysettle_testkit::handoff::KEY_ID,
            "a-guessed-secret-of-thirty-two-bytes-plus",
        )],
        paysettle_testkit::handoff::KEY_ID,
    );
    let mut tampered = paysettle_testkit::handoff::sign(plain());
    let mut bytes = tampered.body.to_vec();
    let at = bytes.len() - 2;
    bytes[at] ^= 1;
    tampered.body = bytes.into();
    for message in [
        plain(),
        paysettle_testkit::handoff::sign_with(&other, plain()),
        paysettle_testkit::handoff::sign_with(&impostor, plain()),
        tampered,
    ] {
        w.queue.publish(&message).await.unwrap();
    }
    let round = applier.run_once().await.unwrap();
    assert_eq!(
        (
            round.received,
            round.refused,
            round.dead_lettered,
            round.applied
        ),
        (4, 4, 4, 0)
    );
    let mut dead = w.queue.consumer(QueueKind::DeadLetters).unwrap();
    let batch = dead
        .next_batch(10, Duration::from_millis(200))
        .await
        .unwrap();
    let mut reasons: Vec<String> = batch
        .iter()
        .map(|d| d.headers()[paysettle_queue::DEAD_LETTER_REASON_HEADER].clone())
        .collect();
    reasons.sort();
    assert_eq!(reasons.len(), 4, "{reasons:?}");
    assert!(
        reasons.iter().all(|r| r.starts_with("refused: ")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("carries no paysettle-key-id")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("key \"other\", which is not configured")),
        "{reasons:?}"
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.contains("does not verify"))
            .count(),
        2,
        "{reasons:?}"
    );
    let payment = w
        .ledger
        .payment(
            Provider::Plutu,
            Account::default(),
            Reference::parse("INV-F").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payment.status, PaymentStatus::Created, "nothing applied");
    relay.run_until_idle().await.unwrap();
    assert!(w.events().await.is_empty(), "nothing announced");
}

#[tokio::test]
async fn a_key_rotation_with_two_keys_loses_nothing() {
    const OLD: (&str, &str) = ("2026-10", "the-old-hand-off-secret-of-32-bytes-or-more");
    const NEW: (&str, &str) = ("2026-11", "the-new-hand-off-secret-of-32-bytes-or-more");
    // Step 2 of the rotation: every process knows both keys, the new one signs.
    let w = world_with(Duration::from_secs(20), |s| {
        s.handoff = Some(paysettle_testkit::handoff::ring(&[OLD, NEW], NEW.0));
    })
    .await;
    let old_receiver = paysettle_testkit::handoff::ring(&[OLD], OLD.0);
    let new_receiver = paysettle_testkit::handoff::ring(&[OLD, NEW], NEW.0);
    let mut references = Vec::new();
    for (i, keys) in [&old_receiver, &new_receiver, &old_receiver, &new_receiver]
        .into_iter()
        .enumerate()
    {
        let reference = format!("INV-R{i}");
        w.register(Provider::Plutu, &reference, 1000 + i as i64, None)
            .await;
        let callback = inbound(
            Provider::Plutu,
            "default",
            Payload::Observation(observation(
                Provider::Plutu,
                &reference,
                ObservedStatus::Succeeded,
                Some(money(Provider::Plutu, 1000 + i as i64)),
            )),
        );
        let body = serde_json::to_vec(&callback).unwrap();
        w.queue
            .publish(&paysettle_testkit::handoff::sign_with(
                keys,
                Message::json(callback.id.clone(), body),
            ))
            .await
            .unwrap();
        references.push(reference);
    }
    let relay = w.relay().signing(w.settings.handoff.clone());
    let mut applier = w.applier(&relay);
    let round = applier.run_once().await.unwrap();
    assert_eq!(
        (round.applied, round.refused, round.dead_lettered),
        (4, 0, 0)
    );
    for reference in &references {
        let payment = w
            .ledger
            .payment(
                Provider::Plutu,
                Account::default(),
                Reference::parse(reference).unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(payment.status, PaymentStatus::Succeeded, "{reference}");
    }
    // The events are signed with the new key, and verify with both rings
    // finance may hold during the rotation.
    relay.run_until_idle().await.unwrap();
    let mut finance = w.queue.consumer(QueueKind::Finance).unwrap();
    let batch = finance
        .next_batch(10, Duration::from_millis(500))
        .await
        .unwrap();
    assert_eq!(batch.len(), 4);
    for delivery in &batch {
        let header = |n: &str| delivery.headers().get(n).map(String::as_str);
        assert_eq!(header("paysettle-key-id"), Some(NEW.0));
        new_receiver
            .verify(
                header("paysettle-key-id"),
                header("paysettle-signature"),
                delivery.body(),
            )
            .unwrap();
    }
}

/// The captured log lines that mention `needle`.
fn log_lines(needle: &str) -> Vec<serde_json::Value> {
    let capture = paysettle_testkit::capture_logs("paysettle_worker=info,warn").unwrap();
    capture
        .contents()
        .lines()
        .filter(|line| line.contains(needle))
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

#[tokio::test]
async fn a_flag_and_a_conflict_are_logged_as_warnings_with_their_reason() {
    paysettle_testkit::capture_logs("paysettle_worker=info,warn").unwrap();
    let w = world().await;
    w.register(Provider::Plutu, "INV-LOG-M", 1250, None).await;
    w.register(Provider::Plutu, "INV-LOG-C", 1250, None).await;
    let relay = w.relay();
    let mut applier = w.applier(&relay);
    let callback = |reference: &str, status, minor| {
        inbound(
            Provider::Plutu,
            "default",
            Payload::Observation(observation(
                Provider::Plutu,
                reference,
                status,
                Some(money(Provider::Plutu, minor)),
            )),
        )
    };
    let flagged = callback("INV-LOG-M", ObservedStatus::Succeeded, 125);
    let paid = callback("INV-LOG-C", ObservedStatus::Succeeded, 1250);
    publish(&w.queue, &flagged).await;
    publish(&w.queue, &paid).await;
    applier.run_once().await.unwrap();
    let contradiction = callback("INV-LOG-C", ObservedStatus::Failed, 1250);
    publish(&w.queue, &contradiction).await;
    applier.run_once().await.unwrap();

    let level = |id: &str| {
        let lines = log_lines(id);
        assert_eq!(lines.len(), 1, "one line for {id}: {lines:#?}");
        lines[0].clone()
    };
    let line = level(&flagged.id);
    assert_eq!(line["level"], "WARN", "{line:#}");
    assert_eq!(line["fields"]["outcome"], "mismatch");
    assert_eq!(line["fields"]["reason"], "amount_mismatch");
    let line = level(&contradiction.id);
    assert_eq!(line["level"], "WARN", "{line:#}");
    assert_eq!(line["fields"]["outcome"], "conflict");
    assert_eq!(line["fields"]["reason"], "conflict");
    // A plain success is news, not a problem.
    assert_eq!(level(&paid.id)["level"], "INFO");
}
