//! Claims for many workers on one ledger, on both backends: leased due
//! checks, leased outbox events in each payment's order, and the
//! deployment-wide rate limit. Each "worker" is a ledger handle of its own
//! (its own pool or writer), as separate processes would have.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use paysettle_core::{
    Account, Currency, Money, Observation, ObservedStatus, Provider, ProviderTxnId, Reference,
    Source,
};
use paysettle_store::{
    ApplyRequest, Ledger, PaymentId, RateDecision, RateLimit, Registration, StoreError,
};

mod support;

use support::{Kind, Place};

const LEASE: Duration = Duration::from_secs(30);

fn usd(minor: i64) -> Money {
    Money::from_minor(minor, Currency::Usd).unwrap()
}

fn at(base: Timestamp, seconds: i64) -> Timestamp {
    base.checked_add(SignedDuration::from_secs(seconds))
        .unwrap()
}

async fn register(ledger: &Ledger, reference: &str) -> PaymentId {
    ledger
        .register(Registration {
            provider: Provider::Paysys,
            account: Account::default(),
            reference: Reference::parse(reference).unwrap(),
            money: usd(1000),
            provider_txn_id: None,
            registered_at: Timestamp::now(),
        })
        .await
        .unwrap()
        .payment_id()
}

fn observation(reference: &str, status: ObservedStatus, money: Option<Money>) -> ApplyRequest {
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
            source: Source::Check,
            test: false,
            refund_part: None,
        },
        raw: None,
    }
}

/// Two workers claiming at once, over and over, never hold one payment's
/// check together, and between them take every due check.
async fn two_claimers_never_hold_the_same_check(kind: Kind) {
    let place = Place::new(kind).await;
    let setup = place.open().await;
    let mut all = BTreeSet::new();
    for i in 0..60 {
        all.insert(register(&setup, &format!("C-{i}")).await);
    }
    let due = at(Timestamp::now(), 3600);
    let mut workers = tokio::task::JoinSet::new();
    for owner in ["worker-a", "worker-b"] {
        let ledger = place.open().await;
        workers.spawn(async move {
            let mut mine = Vec::new();
            for round in 0.. {
                assert!(round < 100, "{owner} kept getting checks: {mine:?}");
                let claimed = ledger.claim_due_checks(owner, due, LEASE, 4).await.unwrap();
                if claimed.is_empty() {
                    break;
                }
                mine.extend(claimed.into_iter().map(|c| c.payment.id));
            }
            (owner, mine)
        });
    }
    let mut holders: BTreeMap<PaymentId, Vec<&str>> = BTreeMap::new();
    let mut per_owner = Vec::new();
    while let Some(done) = workers.join_next().await {
        let (owner, mine) = done.unwrap();
        per_owner.push((owner, mine.len()));
        for id in mine {
            holders.entry(id).or_default().push(owner);
        }
    }
    let doubled: Vec<_> = holders.iter().filter(|(_, h)| h.len() > 1).collect();
    assert!(
        doubled.is_empty(),
        "checks held by two workers at once: {doubled:?}"
    );
    assert_eq!(
        holders.keys().copied().collect::<BTreeSet<_>>(),
        all,
        "every due check was claimed once ({per_owner:?})"
    );
    // Claimed is not gone: the unclaimed view still lists them all.
    assert_eq!(setup.due_checks(due, 100).await.unwrap().len(), 60);
}

/// A dead worker's claims come back when its lease ends; recording a check
/// ends its claim at once.
async fn a_lease_that_ends_gives_the_checks_back(kind: Kind) {
    let place = Place::new(kind).await;
    let (a, b) = (place.open().await, place.open().await);
    let first = register(&a, "L-1").await;
    let second = register(&a, "L-2").await;
    let now = at(Timestamp::now(), 3600);
    let held = a.claim_due_checks("a", now, LEASE, 10).await.unwrap();
    assert_eq!(held.len(), 2);
    assert!(
        b.claim_due_checks("b", now, LEASE, 10)
            .await
            .unwrap()
            .is_empty(),
        "both are held by a"
    );
    // a records the first check (due again at once): the claim ends with it.
    assert!(a.record_check(first, Some(now), None).await.unwrap());
    let taken = b.claim_due_checks("b", now, LEASE, 10).await.unwrap();
    assert_eq!(
        taken.iter().map(|c| c.payment.id).collect::<Vec<_>>(),
        vec![first]
    );
    assert_eq!(taken[0].attempts, 1);
    // a dies holding the second; past its lease, b gets it.
    let before_end = at(now, 29);
    assert!(
        b.claim_due_checks("b", before_end, LEASE, 10)
            .await
            .unwrap()
            .iter()
            .all(|c| c.payment.id != second),
        "a's lease has not ended"
    );
    let after_end = at(now, 31);
    let taken = b.claim_due_checks("b", after_end, LEASE, 10).await.unwrap();
    assert!(
        taken.iter().any(|c| c.payment.id == second),
        "a's claim came back: {taken:?}"
    );
}

/// A payment's events are handed out in order: never a later one while
/// another worker holds an earlier unpublished one of the same payment.
async fn outbox_claims_keep_each_payments_events_in_order(kind: Kind) {
    let place = Place::new(kind).await;
    let (a, b) = (place.open().await, place.open().await);
    for reference in ["X", "Y"] {
        register(&a, reference).await;
        a.apply(observation(
            reference,
            ObservedStatus::Succeeded,
            Some(usd(1000)),
        ))
        .await
        .unwrap();
        a.apply(observation(
            reference,
            ObservedStatus::Refunded {
                total: Some(usd(1000)),
            },
            None,
        ))
        .await
        .unwrap();
    }
    let all = a.unpublished(100).await.unwrap();
    assert_eq!(all.len(), 4, "{all:#?}");
    let x = all[0].payment_id;
    let now = Timestamp::now();
    // a takes X's first event only.
    let held = a.claim_unpublished("a", now, LEASE, 1).await.unwrap();
    assert_eq!(
        held.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![all[0].seq]
    );
    // b may take Y's events, in order, but not X's second.
    let taken = b.claim_unpublished("b", now, LEASE, 10).await.unwrap();
    assert!(
        taken.iter().all(|e| e.payment_id != x),
        "X's later event was handed out while a holds its first: {taken:#?}"
    );
    let seqs: Vec<i64> = taken.iter().map(|e| e.seq).collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(seqs, sorted);
    assert_eq!(taken.len(), 2);
    // Once a's event is published, X's second is free.
    assert_eq!(a.mark_published(vec![all[0].seq]).await.unwrap(), 1);
    let next = b.claim_unpublished("b", now, LEASE, 10).await.unwrap();
    assert_eq!(
        next.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![all[1].seq],
        "X's second event after its first was published (and not b's own held ones again)"
    );
    // A lease that ends hands the event to another worker.
    let later = at(now, 31);
    let retaken = a.claim_unpublished("a", later, LEASE, 10).await.unwrap();
    assert_eq!(
        retaken.len(),
        3,
        "b's three unpublished events come back to a after b's lease"
    );
}

/// Many workers taking from one provider account's bucket at one instant
/// get its burst between them, no more; the rate refills it.
async fn the_rate_limit_holds_for_every_worker_together(kind: Kind) {
    let place = Place::new(kind).await;
    let limit = RateLimit {
        per_second: 2.0,
        burst: 3,
    };
    // Whole milliseconds, as the ledger keeps time.
    let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..3 {
        let ledger = place.open().await;
        workers.spawn(async move {
            let mut decisions = Vec::new();
            for _ in 0..4 {
                decisions.push(
                    ledger
                        .take_rate(Provider::Paysys, &Account::default(), limit, now)
                        .await
                        .unwrap(),
                );
            }
            decisions
        });
    }
    let mut decisions = Vec::new();
    while let Some(done) = workers.join_next().await {
        decisions.extend(done.unwrap());
    }
    let go = decisions.iter().filter(|d| **d == RateDecision::Go).count();
    assert_eq!(go, 3, "{decisions:?}");
    assert!(
        decisions
            .iter()
            .all(|d| *d == RateDecision::Go || *d == RateDecision::WaitUntil(at_ms(now, 500))),
        "{decisions:?}"
    );
    let ledger = place.open().await;
    // Another account has a bucket of its own.
    let other = Account::parse("other").unwrap();
    assert_eq!(
        ledger
            .take_rate(Provider::Paysys, &other, limit, now)
            .await
            .unwrap(),
        RateDecision::Go
    );
    // Half a second later, one more request may go.
    let later = at_ms(now, 500);
    assert_eq!(
        ledger
            .take_rate(Provider::Paysys, &Account::default(), limit, later)
            .await
            .unwrap(),
        RateDecision::Go
    );
    assert!(matches!(
        ledger
            .take_rate(Provider::Paysys, &Account::default(), limit, later)
            .await
            .unwrap(),
        RateDecision::WaitUntil(_)
    ));
}

fn at_ms(base: Timestamp, ms: i64) -> Timestamp {
    base.checked_add(SignedDuration::from_millis(ms)).unwrap()
}

/// A rate that is not positive is refused and writes nothing.
async fn a_rate_limit_that_allows_nothing_is_refused(kind: Kind) {
    let place = Place::new(kind).await;
    let ledger = place.open().await;
    let err = ledger
        .take_rate(
            Provider::Paysys,
            &Account::default(),
            RateLimit {
                per_second: 0.0,
                burst: 1,
            },
            Timestamp::now(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Refused { .. }), "{err}");
    assert!(err.to_string().contains("positive"), "{err}");
    assert_eq!(place.count("SELECT count(*) FROM rate_buckets").await, 0);
}

/// A lease on asking about one thing (a hint's `/check`): one owner at a
/// time on a shared ledger, renewable by its owner, free again when ended
/// by its owner or when it runs out. An SQLite ledger has one worker and
/// always grants it.
async fn one_owner_at_a_time_asks_about_one_thing(kind: Kind) {
    let place = Place::new(kind).await;
    let (a, b) = (place.open().await, place.open().await);
    let now = Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap();
    let key = "portmanat/default/psp_rrn:P-1";
    let shared = a.is_shared();
    assert!(a.lease_asking(key, "a", now, LEASE).await.unwrap());
    assert_eq!(b.lease_asking(key, "b", now, LEASE).await.unwrap(), !shared);
    // Another question is free; the owner may renew its own.
    assert!(
        b.lease_asking("portmanat/default/psp_rrn:P-2", "b", now, LEASE)
            .await
            .unwrap()
    );
    assert!(a.lease_asking(key, "a", at(now, 1), LEASE).await.unwrap());
    // Only the owner ends it.
    b.end_asking(key, "b").await.unwrap();
    assert_eq!(
        b.lease_asking(key, "b", at(now, 2), LEASE).await.unwrap(),
        !shared
    );
    a.end_asking(key, "a").await.unwrap();
    assert!(b.lease_asking(key, "b", at(now, 3), LEASE).await.unwrap());
    // An owner that died: its lease runs out and another takes the question.
    let lease = i64::try_from(LEASE.as_secs()).unwrap();
    assert_eq!(
        a.lease_asking(key, "a", at(now, 3 + lease - 1), LEASE)
            .await
            .unwrap(),
        !shared
    );
    assert!(
        a.lease_asking(key, "a", at(now, 3 + lease), LEASE)
            .await
            .unwrap()
    );
}

on_both_backends!(
    one_owner_at_a_time_asks_about_one_thing,
    two_claimers_never_hold_the_same_check,
    a_lease_that_ends_gives_the_checks_back,
    outbox_claims_keep_each_payments_events_in_order,
    the_rate_limit_holds_for_every_worker_together,
    a_rate_limit_that_allows_nothing_is_refused,
);
