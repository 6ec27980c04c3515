//! The ledger's contract, on both backends: a real SQLite file in a
//! temporary directory, and a real PostgreSQL database of the test's own.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::Timestamp;
use paysettle_core::{
    Account, Currency, Money, Observation, ObservedStatus, PaymentStatus, Provider, ProviderTxnId,
    Reference, Source,
};
mod support;

use support::{Kind, Place};

use paysettle_sqlite::rusqlite;
use paysettle_store::{
    ApplyOutcome, ApplyRequest, CheckNow, Ledger, LedgerOptions, PaymentFilter, PaymentKey,
    RegisterOutcome, Registration, StoreError,
};

fn usd(minor: i64) -> Money {
    Money::from_minor(minor, Currency::Usd).unwrap()
}

fn registration(reference: &str, minor: i64) -> Registration {
    Registration {
        provider: Provider::Paysys,
        account: Account::default(),
        reference: Reference::parse(reference).unwrap(),
        money: usd(minor),
        provider_txn_id: None,
        registered_at: Timestamp::now(),
    }
}

fn observation(
    reference: &str,
    status: ObservedStatus,
    money: Option<Money>,
    source: Source,
) -> ApplyRequest {
    ApplyRequest {
        observation: Observation {
            provider: Provider::Paysys,
            account: Account::default(),
            reference: Reference::parse(reference).unwrap(),
            provider_txn_id: Some(ProviderTxnId::parse(&format!("T-{reference}")).unwrap()),
            status,
            money,
            provider_status: format!("{status:?}"),
            provider_time: None,
            observed_at: Timestamp::now(),
            source,
            test: false,
            refund_part: None,
        },
        raw: Some(serde_json::json!({"body": {"card": "4111111111111111", "token": "tok_secret"}})),
    }
}

fn event_bodies(events: &[paysettle_store::OutboxEvent]) -> Vec<serde_json::Value> {
    events
        .iter()
        .map(|e| serde_json::from_str(&e.body).unwrap())
        .collect()
}

async fn migrations_are_idempotent_and_a_newer_ledger_is_refused(kind: Kind) {
    let place = Place::new(kind).await;
    let (target, supported, newer) = match kind {
        Kind::Sqlite => {
            let path = place.dir.path().join("nested/dir/ledger.db");
            (
                paysettle_store::LedgerTarget::Sqlite(path),
                paysettle_store::SCHEMA_VERSION,
                "PRAGMA user_version = 99",
            )
        }
        Kind::Postgres => (
            place.target(),
            paysettle_store::PG_SCHEMA_VERSION,
            "INSERT INTO schema_version (version) VALUES (99)",
        ),
    };
    let open = || Ledger::connect(&target, LedgerOptions::default());
    drop(open().await.unwrap());
    drop(open().await.unwrap());
    let version = match &target {
        paysettle_store::LedgerTarget::Sqlite(path) => rusqlite::Connection::open(path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap(),
        paysettle_store::LedgerTarget::Postgres(_) => {
            place.count("SELECT max(version) FROM schema_version").await
        }
    };
    assert_eq!(version, supported);
    match &target {
        paysettle_store::LedgerTarget::Sqlite(path) => rusqlite::Connection::open(path)
            .unwrap()
            .execute_batch(newer)
            .unwrap(),
        paysettle_store::LedgerTarget::Postgres(_) => place.exec(newer).await,
    }
    let err = open().await.unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("newer than this paysettle understands"),
        "{err}"
    );
    // Refused, and nothing was changed: the newer version is still there.
    let err = open().await.unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err}"
    );
}

async fn registration_is_idempotent_and_conflicts_are_refused(kind: Kind) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    let created = ledger
        .register(registration("ORDER-1", 1000))
        .await
        .unwrap();
    assert!(matches!(created, RegisterOutcome::Created(_)));
    assert_eq!(
        ledger
            .register(registration("ORDER-1", 1000))
            .await
            .unwrap(),
        RegisterOutcome::AlreadyRegistered(created.payment_id())
    );
    let err = ledger
        .register(registration("ORDER-1", 999))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::Conflict {
                field: "amount",
                ..
            }
        ),
        "{err}"
    );
    let mut with_txn = registration("ORDER-1", 1000);
    with_txn.provider_txn_id = Some(ProviderTxnId::parse("A").unwrap());
    assert_eq!(
        ledger.register(with_txn.clone()).await.unwrap(),
        RegisterOutcome::AlreadyRegistered(created.payment_id())
    );
    with_txn.provider_txn_id = Some(ProviderTxnId::parse("B").unwrap());
    assert!(matches!(
        ledger.register(with_txn).await.unwrap_err(),
        StoreError::Conflict {
            field: "provider transaction id",
            ..
        }
    ));

    let payment = ledger
        .payment(
            Provider::Paysys,
            Account::default(),
            Reference::parse("ORDER-1").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(payment.status, PaymentStatus::Created);
    assert_eq!(payment.expected, Some(usd(1000)));
    assert!(payment.registered);
    let history = ledger.history(payment.id).await.unwrap();
    // The registration, and the one that added the provider's id.
    assert_eq!(history.len(), 2);
    assert!(history.iter().all(|h| h.outcome == "registered"));
    assert_eq!(payment.provider_txn_id.as_ref().unwrap().as_str(), "A");
    assert!(ledger.integrity_problems().await.unwrap().is_empty());
}

async fn every_apply_outcome_is_recorded_with_its_event(kind: Kind) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    let id = ledger
        .register(registration("ORDER-2", 1000))
        .await
        .unwrap()
        .payment_id();

    let pending = ledger
        .apply(observation(
            "ORDER-2",
            ObservedStatus::Pending,
            Some(usd(1000)),
            Source::Callback,
        ))
        .await
        .unwrap();
    assert!(
        matches!(pending, ApplyOutcome::Applied { from: PaymentStatus::Created, to: PaymentStatus::Pending, ref events, .. } if events.is_empty())
    );

    let success = observation(
        "ORDER-2",
        ObservedStatus::Succeeded,
        Some(usd(1000)),
        Source::Callback,
    );
    let ApplyOutcome::Applied {
        to,
        events,
        version,
        ..
    } = ledger.apply(success.clone()).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(to, PaymentStatus::Succeeded);
    assert_eq!(events.len(), 1);
    assert_eq!(version, 3);

    assert_eq!(
        ledger.apply(success.clone()).await.unwrap(),
        ApplyOutcome::Duplicate { payment_id: id }
    );

    let late = ledger
        .apply(observation(
            "ORDER-2",
            ObservedStatus::Pending,
            Some(usd(1000)),
            Source::Check,
        ))
        .await
        .unwrap();
    assert!(
        matches!(
            late,
            ApplyOutcome::Ignored {
                reason: "would_regress",
                ..
            }
        ),
        "{late:?}"
    );

    let outbox = ledger.unpublished(100).await.unwrap();
    assert_eq!(outbox.len(), 1);
    let body: serde_json::Value = serde_json::from_str(&outbox[0].body).unwrap();
    assert_eq!(outbox[0].routing_key, "payment.succeeded.paysys");
    assert_eq!(body["event_id"], outbox[0].event_id);
    assert_eq!(body["type"], "payment.succeeded");
    assert_eq!(body["provider"], "paysys");
    assert_eq!(body["reference"], "ORDER-2");
    assert_eq!(body["provider_transaction_id"], "T-ORDER-2");
    assert_eq!(body["amount"], 1000);
    assert_eq!(body["currency"], "USD");
    assert_eq!(body["status"], "succeeded");
    assert_eq!(body["previous_status"], "pending");
    assert_eq!(body["source"], "callback");
    assert_eq!(body["ledger_version"], 3);
    assert!(body["occurred_at"].as_str().unwrap().ends_with('Z'));

    let history = ledger.history(id).await.unwrap();
    let outcomes: Vec<_> = history.iter().map(|h| h.outcome.as_str()).collect();
    assert_eq!(outcomes, ["registered", "applied", "applied", "ignored"]);
    let raw = history[1].raw.as_ref().unwrap().to_string();
    assert!(
        !raw.contains("4111111111111111") && !raw.contains("tok_secret"),
        "the ledger keeps no card number or token: {raw}"
    );
    assert!(ledger.integrity_problems().await.unwrap().is_empty());
}

async fn a_mismatch_is_flagged_and_announced_once_and_never_succeeds(kind: Kind) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    let id = ledger
        .register(registration("ORDER-3", 1000))
        .await
        .unwrap()
        .payment_id();
    let wrong = observation(
        "ORDER-3",
        ObservedStatus::Succeeded,
        Some(usd(10)),
        Source::Callback,
    );
    let ApplyOutcome::Mismatch { reason, event, .. } = ledger.apply(wrong.clone()).await.unwrap()
    else {
        panic!()
    };
    assert_eq!(reason, "amount_mismatch");
    assert!(event.is_some());
    let from_check = observation(
        "ORDER-3",
        ObservedStatus::Succeeded,
        Some(usd(10)),
        Source::Check,
    );
    let ApplyOutcome::Held { reason, .. } = ledger.apply(from_check).await.unwrap() else {
        panic!()
    };
    assert_eq!(
        reason, "amount_mismatch",
        "the flag holds the payment; it is announced once"
    );

    let payment = ledger.payment_by_id(id).await.unwrap().unwrap();
    assert_eq!(payment.status, PaymentStatus::Created);
    assert!(
        payment
            .mismatch
            .as_deref()
            .unwrap()
            .starts_with("amount_mismatch")
    );
    let events = event_bodies(&ledger.unpublished(10).await.unwrap());
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "payment.mismatch");
    assert_eq!(events[0]["amount"], 10);
    assert_eq!(events[0]["expected_amount"], 1000);
    assert_eq!(events[0]["mismatch"], "amount_mismatch");
    let flagged = ledger
        .list(PaymentFilter {
            mismatched: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(flagged.len(), 1);
    assert!(
        ledger
            .due_checks(Timestamp::MAX, 10)
            .await
            .unwrap()
            .is_empty(),
        "a flagged payment waits for ops"
    );
    assert!(ledger.integrity_problems().await.unwrap().is_empty());
}

async fn an_unregistered_payment_is_created_from_what_the_provider_said(kind: Kind) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    let outcome = ledger
        .apply(observation(
            "ORDER-4",
            ObservedStatus::Succeeded,
            Some(usd(250)),
            Source::Callback,
        ))
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        ApplyOutcome::Applied {
            from: PaymentStatus::Created,
            to: PaymentStatus::Succeeded,
            ..
        }
    ));
    let payment = ledger
        .payment_by_id(outcome.payment_id())
        .await
        .unwrap()
        .unwrap();
    assert!(!payment.registered);
    assert_eq!(payment.paid, Some(usd(250)));
    assert_eq!(payment.provider_txn_id.unwrap().as_str(), "T-ORDER-4");
    // The shop registering it afterwards with the same amount adopts it.
    assert!(matches!(
        ledger.register(registration("ORDER-4", 250)).await.unwrap(),
        RegisterOutcome::Adopted(_)
    ));
    assert!(ledger.integrity_problems().await.unwrap().is_empty());
}

async fn refunds_and_stale_verdicts_are_announced_with_their_amounts(kind: Kind) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    ledger
        .register(registration("ORDER-5", 1000))
        .await
        .unwrap();
    // A refund seen before the success settles both.
    let refund = observation(
        "ORDER-5",
        ObservedStatus::Refunded {
            total: Some(usd(300)),
        },
        None,
        Source::Callback,
    );
    let ApplyOutcome::Applied { events, .. } = ledger.apply(refund).await.unwrap() else {
        panic!()
    };
    assert_eq!(events.len(), 2);
    // A refund answer without an amount (PaySys check_payment) books
    // nothing: the known total stands.
    let no_amount = observation(
        "ORDER-5",
        ObservedStatus::Refunded { total: None },
        None,
        Source::Check,
    );
    assert!(matches!(
        ledger.apply(no_amount).await.unwrap(),
        ApplyOutcome::Ignored {
            reason: "already_in_state",
            ..
        }
    ));
    let full = observation(
        "ORDER-5",
        ObservedStatus::Refunded {
            total: Some(usd(1000)),
        },
        None,
        Source::Check,
    );
    ledger.apply(full).await.unwrap();
    let bodies = event_bodies(&ledger.unpublished(10).await.unwrap());
    let summary: Vec<_> = bodies
        .iter()
        .map(|b| {
            (
                b["type"].as_str().unwrap(),
                b["amount"].as_i64().unwrap(),
                b["ledger_version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("payment.succeeded", 1000, 2),
            ("payment.refunded", 300, 3),
            ("payment.refunded", 700, 4)
        ]
    );

    ledger.register(registration("ORDER-6", 500)).await.unwrap();
    let stale = observation("ORDER-6", ObservedStatus::Stale, None, Source::Check);
    ledger.apply(stale).await.unwrap();
    let bodies = event_bodies(&ledger.unpublished(10).await.unwrap());
    assert_eq!(bodies.last().unwrap()["type"], "payment.stale");
    assert_eq!(bodies.last().unwrap()["previous_status"], "created");
    assert!(ledger.integrity_problems().await.unwrap().is_empty());
}

async fn the_schedule_and_the_outbox_are_queried_and_updated(kind: Kind) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    let id = ledger
        .register(registration("ORDER-7", 1000))
        .await
        .unwrap()
        .payment_id();
    let later = Timestamp::now()
        .checked_add(jiff::SignedDuration::from_secs(60))
        .unwrap();
    assert!(
        ledger
            .due_checks(Timestamp::now(), 10)
            .await
            .unwrap()
            .is_empty(),
        "the first check is a few seconds away"
    );
    let due = ledger.due_checks(later, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].payment.id, id);
    assert_eq!(due[0].attempts, 0);

    let far = Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(1))
        .unwrap();
    assert!(
        ledger
            .record_check(id, Some(far), Some("HTTP 500".into()))
            .await
            .unwrap()
    );
    assert!(ledger.due_checks(later, 10).await.unwrap().is_empty());
    let found = ledger
        .check_now(
            Provider::Paysys,
            Account::default(),
            PaymentKey::Reference(Reference::parse("ORDER-7").unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(found, CheckNow::Scheduled(id));
    let due = ledger.due_checks(Timestamp::now(), 10).await.unwrap();
    assert_eq!(
        (due[0].attempts, due[0].last_error.as_deref()),
        (1, Some("HTTP 500"))
    );
    assert_eq!(
        ledger
            .check_now(
                Provider::Paysys,
                Account::default(),
                PaymentKey::Reference(Reference::parse("NOPE").unwrap())
            )
            .await
            .unwrap(),
        CheckNow::Unknown
    );

    ledger
        .apply(observation(
            "ORDER-7",
            ObservedStatus::Succeeded,
            None,
            Source::Check,
        ))
        .await
        .unwrap();
    assert!(
        ledger
            .due_checks(Timestamp::MAX, 10)
            .await
            .unwrap()
            .is_empty(),
        "settled payments leave the schedule"
    );
    let outbox = ledger.unpublished(10).await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert_eq!(ledger.mark_published(vec![outbox[0].seq]).await.unwrap(), 1);
    assert_eq!(ledger.mark_published(vec![outbox[0].seq]).await.unwrap(), 0);
    assert!(ledger.unpublished(10).await.unwrap().is_empty());
    assert_eq!(ledger.events_of(id).await.unwrap().len(), 1);

    let succeeded = ledger
        .list(PaymentFilter {
            statuses: vec![PaymentStatus::Succeeded],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(succeeded.len(), 1);
    let none = ledger
        .list(PaymentFilter {
            provider: Some(Provider::Plutu),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(none.is_empty());
}

async fn plutu_payments_are_scheduled_only_for_their_deadline(kind: Kind) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    let mut r = registration("INV-1", 500);
    r.provider = Provider::Plutu;
    ledger.register(r).await.unwrap();
    let in_a_day = Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(24))
        .unwrap();
    assert!(
        ledger.due_checks(in_a_day, 10).await.unwrap().is_empty(),
        "no status API: nothing to poll"
    );
    let past_deadline = Timestamp::now()
        .checked_add(jiff::SignedDuration::from_hours(49))
        .unwrap();
    let due = ledger.due_checks(past_deadline, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].next_check_at, due[0].deadline_at);
}

async fn a_batch_commits_many_observations_with_the_outcomes_of_single_applies(kind: Kind) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    let mut batch = Vec::new();
    for i in 0..50 {
        let reference = format!("B-{i}");
        batch.push(observation(
            &reference,
            ObservedStatus::Succeeded,
            Some(usd(100 + i)),
            Source::Callback,
        ));
        batch.push(observation(
            &reference,
            ObservedStatus::Succeeded,
            Some(usd(100 + i)),
            Source::Callback,
        ));
    }
    let outcomes = ledger.apply_batch(batch).await.unwrap();
    assert_eq!(outcomes.len(), 100);
    for pair in outcomes.chunks(2) {
        assert!(matches!(pair[0], Ok(ApplyOutcome::Applied { .. })));
        assert!(matches!(pair[1], Ok(ApplyOutcome::Duplicate { .. })));
    }
    assert_eq!(ledger.unpublished(1000).await.unwrap().len(), 50);
    assert!(ledger.integrity_problems().await.unwrap().is_empty());
}

async fn the_ledger_can_be_reopened_and_read_by_another_handle(kind: Kind) {
    let place = Place::new(kind).await;
    {
        let ledger = place.open().await;
        ledger
            .register(registration("ORDER-8", 1000))
            .await
            .unwrap();
    }
    let ledger = place.open().await;
    let counts = ledger.counts().await.unwrap();
    assert_eq!(counts, vec![(PaymentStatus::Created, 1)]);
}

async fn the_integrity_check_finds_a_broken_ledger(kind: Kind) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    ledger
        .register(registration("ORDER-9", 1000))
        .await
        .unwrap();
    ledger
        .apply(observation(
            "ORDER-9",
            ObservedStatus::Succeeded,
            None,
            Source::Check,
        ))
        .await
        .unwrap();
    assert!(ledger.integrity_problems().await.unwrap().is_empty());
    place
        .exec("DELETE FROM outbox; UPDATE payments SET status = 'pending'")
        .await;
    let problems = ledger.integrity_problems().await.unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("applied history row whose event is missing")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("payment whose status is not where its history moved it")),
        "{problems:#?}"
    );
}

async fn one_failing_observation_in_a_batch_does_not_take_the_others_down(kind: Kind) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    ledger.register(registration("GOOD", 1000)).await.unwrap();
    ledger.register(registration("BAD", 1000)).await.unwrap();
    // A hand-edited row the ledger cannot read: applying to it fails.
    place
        .exec("UPDATE payments SET status = 'bogus' WHERE reference = 'BAD'")
        .await;
    let outcomes = ledger
        .apply_batch(vec![
            observation("GOOD", ObservedStatus::Pending, None, Source::Check),
            observation("BAD", ObservedStatus::Succeeded, None, Source::Check),
            observation("GOOD", ObservedStatus::Succeeded, None, Source::Check),
        ])
        .await
        .unwrap();
    assert!(matches!(
        outcomes[0],
        Ok(ApplyOutcome::Applied {
            to: PaymentStatus::Pending,
            ..
        })
    ));
    assert!(
        matches!(outcomes[1], Err(StoreError::Corrupt { what: "status", .. })),
        "{:?}",
        outcomes[1]
    );
    assert!(matches!(
        outcomes[2],
        Ok(ApplyOutcome::Applied {
            to: PaymentStatus::Succeeded,
            ..
        })
    ));
    let good = ledger
        .payment(
            Provider::Paysys,
            Account::default(),
            Reference::parse("GOOD").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(good.status, PaymentStatus::Succeeded);
    assert_eq!(
        ledger.unpublished(10).await.unwrap().len(),
        1,
        "only the good payment's event"
    );
}

async fn concurrent_writes_commit_together_and_a_conflict_fails_only_its_own_caller(kind: Kind) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    ledger.register(registration("TAKEN", 1000)).await.unwrap();
    let mut writes = tokio::task::JoinSet::new();
    for i in 0..60 {
        let ledger = ledger.clone();
        writes.spawn(async move {
            // Every tenth write conflicts with the registration above.
            let (reference, minor) = if i % 10 == 0 {
                ("TAKEN".to_owned(), 999)
            } else {
                (format!("C-{i}"), 1000 + i)
            };
            (i, ledger.register(registration(&reference, minor)).await)
        });
    }
    let mut conflicts = 0;
    while let Some(done) = writes.join_next().await {
        let (i, result) = done.unwrap();
        if i % 10 == 0 {
            assert!(
                matches!(result, Err(StoreError::Conflict { .. })),
                "{i}: {result:?}"
            );
            conflicts += 1;
        } else {
            assert!(
                matches!(result, Ok(RegisterOutcome::Created(_))),
                "{i}: {result:?}"
            );
        }
    }
    assert_eq!(conflicts, 6);
    let payments = ledger.list(PaymentFilter::default()).await.unwrap();
    assert_eq!(
        payments.len(),
        55,
        "every write that did not conflict is there"
    );
    assert!(ledger.integrity_problems().await.unwrap().is_empty());
}

async fn a_reconciliation_selection_takes_the_unsettled_and_the_final_ones_in_its_window(
    kind: Kind,
) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    let long_ago = Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(48))
        .unwrap();
    let mut old = registration("OLD-PENDING", 100);
    old.registered_at = long_ago;
    ledger.register(old).await.unwrap();
    let mut old_paid = registration("OLD-PAID", 100);
    old_paid.registered_at = long_ago;
    ledger.register(old_paid).await.unwrap();
    ledger
        .apply(observation(
            "OLD-PAID",
            ObservedStatus::Succeeded,
            Some(usd(100)),
            Source::Check,
        ))
        .await
        .unwrap();
    ledger
        .register(registration("NEW-PAID", 200))
        .await
        .unwrap();
    ledger
        .apply(observation(
            "NEW-PAID",
            ObservedStatus::Succeeded,
            Some(usd(200)),
            Source::Check,
        ))
        .await
        .unwrap();

    let a_day_ago = Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_hours(24))
        .unwrap();
    let selection = PaymentFilter {
        created_since: Some(a_day_ago),
        or_unsettled: true,
        limit: 10,
        ..Default::default()
    };
    let chosen: Vec<String> = ledger
        .list(selection.clone())
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.reference.to_string())
        .collect();
    assert_eq!(chosen, ["OLD-PENDING", "NEW-PAID"]);
    assert_eq!(ledger.count(selection.clone()).await.unwrap(), 2);
    let first = ledger
        .list(PaymentFilter {
            limit: 1,
            ..selection.clone()
        })
        .await
        .unwrap();
    let rest = ledger
        .list(PaymentFilter {
            after_id: Some(first[0].id),
            ..selection.clone()
        })
        .await
        .unwrap();
    assert_eq!(rest.len(), 1, "paging goes on after the last id");
    let window_only = PaymentFilter {
        or_unsettled: false,
        ..selection
    };
    assert_eq!(ledger.count(window_only).await.unwrap(), 1);

    // Events: by payment, by window, paged by outbox position.
    let paid = ledger
        .payment(
            Provider::Paysys,
            Account::default(),
            Reference::parse("NEW-PAID").unwrap(),
        )
        .await
        .unwrap()
        .unwrap();
    let all = ledger
        .events(paysettle_store::EventFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 2);
    let of_one = ledger
        .events(paysettle_store::EventFilter {
            payment: Some(paid.id),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(of_one.len(), 1);
    assert_eq!(of_one[0].payment_id, paid.id);
    let after = ledger
        .events(paysettle_store::EventFilter {
            after_seq: Some(all[0].seq),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(after, all[1..]);
    let future = ledger
        .events(paysettle_store::EventFilter {
            since: Some(
                Timestamp::now()
                    .checked_add(jiff::SignedDuration::from_hours(1))
                    .unwrap(),
            ),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(future.is_empty());
    let many = ledger
        .events_of_payments(all.iter().map(|e| e.payment_id).collect())
        .await
        .unwrap();
    assert_eq!(many, all);
}

async fn a_registration_disagreeing_with_what_the_provider_already_reported_is_flagged_and_announced(
    kind: Kind,
) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    // The provider's callback arrives before the shop registers the order.
    ledger
        .apply(observation(
            "ORDER-7",
            ObservedStatus::Succeeded,
            Some(usd(250)),
            Source::Callback,
        ))
        .await
        .unwrap();
    let before = ledger.unpublished(10).await.unwrap().len();
    // The shop expected 3.00, the customer paid 2.50.
    let outcome = ledger.register(registration("ORDER-7", 300)).await.unwrap();
    assert!(
        matches!(outcome, RegisterOutcome::Adopted(_)),
        "{outcome:?}"
    );
    let payment = ledger
        .payment_by_id(outcome.payment_id())
        .await
        .unwrap()
        .unwrap();
    assert!(payment.registered);
    assert_eq!(payment.status, PaymentStatus::Succeeded);
    assert_eq!(payment.expected, Some(usd(300)));
    assert_eq!(payment.paid, Some(usd(250)));
    assert!(
        payment
            .mismatch
            .as_deref()
            .is_some_and(|m| m.starts_with("amount_mismatch")),
        "{payment:?}"
    );
    let events = event_bodies(&ledger.unpublished(10).await.unwrap());
    assert_eq!(events.len(), before + 1);
    let mismatch = events.last().unwrap();
    assert_eq!(mismatch["type"], "payment.mismatch");
    assert_eq!(mismatch["amount"], 250);
    assert_eq!(mismatch["currency"], "USD");
    assert_eq!(mismatch["expected_amount"], 300);
    assert_eq!(mismatch["mismatch"], "amount_mismatch");
    assert_eq!(mismatch["source"], "callback", "who reported the 2.50");
    assert_eq!(mismatch["ledger_version"], payment.version);
    // The same registration again is a no-op; another amount is refused.
    assert!(matches!(
        ledger.register(registration("ORDER-7", 300)).await.unwrap(),
        RegisterOutcome::AlreadyRegistered(_)
    ));
    assert!(matches!(
        ledger.register(registration("ORDER-7", 400)).await,
        Err(StoreError::Conflict {
            field: "amount",
            ..
        })
    ));
    assert_eq!(
        event_bodies(&ledger.unpublished(10).await.unwrap()).len(),
        before + 1
    );
    assert!(ledger.integrity_problems().await.unwrap().is_empty());
}

async fn a_registration_in_another_currency_than_the_provider_reported_is_flagged_and_idempotent(
    kind: Kind,
) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    ledger
        .apply(observation(
            "ORDER-8",
            ObservedStatus::Pending,
            Some(usd(500)),
            Source::Check,
        ))
        .await
        .unwrap();
    let mut in_euros = registration("ORDER-8", 500);
    in_euros.money = Money::from_minor(500, Currency::Eur).unwrap();
    let outcome = ledger.register(in_euros.clone()).await.unwrap();
    let payment = ledger
        .payment_by_id(outcome.payment_id())
        .await
        .unwrap()
        .unwrap();
    assert!(
        payment
            .mismatch
            .as_deref()
            .is_some_and(|m| m.starts_with("currency_mismatch")),
        "{payment:?}"
    );
    // The payment shows what the shop registered; the provider's money is
    // the flag's claim.
    assert_eq!(
        payment.expected,
        Some(Money::from_minor(500, Currency::Eur).unwrap())
    );
    assert_eq!(payment.flag.as_ref().unwrap().claim.money, Some(usd(500)));
    let events = event_bodies(&ledger.unpublished(10).await.unwrap());
    let mismatch = events.last().unwrap();
    assert_eq!(mismatch["type"], "payment.mismatch");
    assert_eq!(mismatch["currency"], "USD");
    assert_eq!(mismatch["expected_currency"], "EUR");
    assert_eq!(mismatch["source"], "check");
    // Flagged payments wait for ops: no more checks.
    assert!(
        ledger
            .due_checks(Timestamp::MAX, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        ledger.register(in_euros).await.unwrap(),
        RegisterOutcome::AlreadyRegistered(_)
    ));
    assert!(ledger.integrity_problems().await.unwrap().is_empty());
}

/// Workers applying batches over the same payments in opposite orders (on
/// PostgreSQL they deadlock and are run again) lose nothing and write
/// nothing twice: every payment ends succeeded with one event.
async fn concurrent_batches_over_the_same_payments_lose_and_double_nothing(kind: Kind) {
    let place = Place::new(kind).await;
    let setup = place.open().await;
    let references: Vec<String> = (0..30).map(|i| format!("B-{i}")).collect();
    for reference in &references {
        setup.register(registration(reference, 1000)).await.unwrap();
    }
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..3 {
        let ledger = place.open().await;
        let mut order = references.clone();
        if worker % 2 == 1 {
            order.reverse();
        }
        workers.spawn(async move {
            let mut requests = Vec::new();
            for reference in &order {
                requests.push(observation(
                    reference,
                    ObservedStatus::Pending,
                    None,
                    Source::Callback,
                ));
                requests.push(observation(
                    reference,
                    ObservedStatus::Succeeded,
                    Some(usd(1000)),
                    Source::Callback,
                ));
            }
            ledger.apply_batch(requests).await
        });
    }
    while let Some(done) = workers.join_next().await {
        for outcome in done.unwrap().unwrap() {
            outcome.unwrap();
        }
    }
    for reference in &references {
        let payment = setup
            .payment(
                Provider::Paysys,
                Account::default(),
                Reference::parse(reference).unwrap(),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!(payment.status, PaymentStatus::Succeeded, "{reference}");
        let events = setup.events_of(payment.id).await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(kinds, vec!["payment.succeeded"], "{reference}");
    }
    let problems = setup.integrity_problems().await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
}

/// A reader following the outbox by position (the event feed's cursor)
/// while several writers commit at once misses no event: an event never
/// becomes visible behind a position the reader has passed.
async fn a_reader_following_the_outbox_by_position_misses_no_event(kind: Kind) {
    let place = Place::new(kind).await;
    let reader = place.open().await;
    let mut writers = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let ledger = place.open().await;
        writers.spawn(async move {
            for i in 0..60 {
                let reference = format!("F-{worker}-{i}");
                ledger
                    .apply(observation(
                        &reference,
                        ObservedStatus::Succeeded,
                        Some(usd(1000)),
                        Source::Callback,
                    ))
                    .await
                    .unwrap();
            }
        });
    }
    let mut seen = std::collections::BTreeSet::new();
    let mut cursor = None;
    let mut writing = true;
    loop {
        let page = reader
            .events(paysettle_store::EventFilter {
                after_seq: cursor,
                limit: 7,
                ..Default::default()
            })
            .await
            .unwrap();
        for event in &page {
            seen.insert(event.event_id.clone());
        }
        if let Some(last) = page.last() {
            cursor = Some(last.seq);
        } else if !writing {
            break;
        }
        if writing && writers.is_empty() {
            writing = false;
        }
        while let Some(done) = writers.try_join_next() {
            done.unwrap();
        }
    }
    let all: std::collections::BTreeSet<String> = reader
        .events(paysettle_store::EventFilter {
            limit: 10_000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert_eq!(all.len(), 240);
    let missed: Vec<_> = all.difference(&seen).collect();
    assert!(
        missed.is_empty(),
        "the reader passed {} event(s) that were committed behind its position",
        missed.len()
    );
}

/// Another handle's commit of an event wakes a handle's `commits()` on
/// PostgreSQL (workers on other replicas): the event feed's long poll does
/// not wait out its timeout for an event written elsewhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_workers_event_wakes_the_feed_on_postgres() {
    let place = Place::new(Kind::Postgres).await;
    let (writer, follower) = (place.open().await, place.open().await);
    let mut commits = follower.commits();
    commits.borrow_and_update();
    // The listener connects in the background: write until it hears one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut i = 0;
    loop {
        writer
            .apply(observation(
                &format!("N-{i}"),
                ObservedStatus::Succeeded,
                Some(usd(1000)),
                Source::Callback,
            ))
            .await
            .unwrap();
        i += 1;
        if tokio::time::timeout(std::time::Duration::from_millis(200), commits.changed())
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the follower never heard of {i} commits of events"
        );
    }
}

on_both_backends!(
    a_reader_following_the_outbox_by_position_misses_no_event,
    concurrent_batches_over_the_same_payments_lose_and_double_nothing,
    migrations_are_idempotent_and_a_newer_ledger_is_refused,
    registration_is_idempotent_and_conflicts_are_refused,
    every_apply_outcome_is_recorded_with_its_event,
    a_mismatch_is_flagged_and_announced_once_and_never_succeeds,
    an_unregistered_payment_is_created_from_what_the_provider_said,
    refunds_and_stale_verdicts_are_announced_with_their_amounts,
    the_schedule_and_the_outbox_are_queried_and_updated,
    plutu_payments_are_scheduled_only_for_their_deadline,
    a_batch_commits_many_observations_with_the_outcomes_of_single_applies,
    the_ledger_can_be_reopened_and_read_by_another_handle,
    the_integrity_check_finds_a_broken_ledger,
    one_failing_observation_in_a_batch_does_not_take_the_others_down,
    concurrent_writes_commit_together_and_a_conflict_fails_only_its_own_caller,
    a_reconciliation_selection_takes_the_unsettled_and_the_final_ones_in_its_window,
    a_registration_disagreeing_with_what_the_provider_already_reported_is_flagged_and_announced,
    a_registration_in_another_currency_than_the_provider_reported_is_flagged_and_idempotent,
);
