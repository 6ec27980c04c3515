//! Property: observations of real payments' lives, applied with duplicates
//! and in any order, leave the same ledger as the same observations
//! deduplicated and in order, on both backends (and the PostgreSQL ledger
//! ends where the SQLite one does).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use jiff::Timestamp;
use paysettle_core::{
    Account, Currency, Money, Observation, ObservedStatus, Provider, ProviderTxnId, Reference,
    Source,
};
use paysettle_store::{ApplyRequest, LedgerOptions, PaymentFilter, Registration, Synchronous};
use proptest::prelude::*;

mod support;

use support::{Kind, Place};

fn usd(minor: i64) -> Money {
    Money::from_minor(minor, Currency::Usd).unwrap()
}

fn observation(
    payment: usize,
    status: ObservedStatus,
    money: Option<Money>,
    source: Source,
) -> ApplyRequest {
    ApplyRequest {
        observation: Observation {
            provider: Provider::Paysys,
            account: Account::default(),
            reference: Reference::parse(&format!("P{payment}")).unwrap(),
            provider_txn_id: Some(ProviderTxnId::parse(&format!("T{payment}")).unwrap()),
            status,
            money,
            provider_status: format!("{status:?}"),
            provider_time: None,
            observed_at: Timestamp::UNIX_EPOCH,
            source,
            test: false,
            refund_part: None,
        },
        raw: None,
    }
}

/// One payment's life as the provider reports it, through callbacks and checks.
fn lifecycle(payment: usize) -> impl Strategy<Value = Vec<ApplyRequest>> {
    let amount = Some(usd(1000));
    let ending = prop_oneof![
        Just(vec![(ObservedStatus::Succeeded, amount)]),
        Just(vec![(ObservedStatus::Failed, amount)]),
        Just(vec![(ObservedStatus::Canceled, amount)]),
        Just(vec![
            (ObservedStatus::Succeeded, amount),
            (ObservedStatus::Canceled, None)
        ]),
        prop::collection::vec(1i64..=1000, 1..4).prop_map(move |mut totals| {
            totals.sort_unstable();
            let mut seq = vec![(ObservedStatus::Succeeded, amount)];
            seq.extend(totals.into_iter().map(|t| {
                (
                    ObservedStatus::Refunded {
                        total: Some(usd(t)),
                    },
                    None,
                )
            }));
            seq
        }),
        Just(vec![]),
    ];
    (0usize..3, ending, prop::collection::vec(any::<bool>(), 8)).prop_map(
        move |(pendings, ending, from_check)| {
            let mut seq = vec![(ObservedStatus::Pending, amount); pendings];
            seq.extend(ending);
            seq.into_iter()
                .zip(from_check)
                .map(|((status, money), check)| {
                    observation(
                        payment,
                        status,
                        money,
                        if check {
                            Source::Check
                        } else {
                            Source::Callback
                        },
                    )
                })
                .collect()
        },
    )
}

fn run(kind: Kind, requests: Vec<ApplyRequest>) -> (Vec<String>, i64) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let options = LedgerOptions {
            synchronous: Synchronous::Normal,
            ..Default::default()
        };
        let place = Place::new(kind).await;
        let ledger = place.open_with(options).await.unwrap();
        for payment in 0..3 {
            ledger
                .register(Registration {
                    provider: Provider::Paysys,
                    account: Account::default(),
                    reference: Reference::parse(&format!("P{payment}")).unwrap(),
                    money: usd(1000),
                    provider_txn_id: None,
                    registered_at: Timestamp::UNIX_EPOCH,
                })
                .await
                .unwrap();
        }
        // Half one at a time, half as one batch: both paths must agree.
        let half = requests.len() / 2;
        let mut requests = requests;
        let rest = requests.split_off(half);
        for request in requests {
            ledger.apply(request).await.unwrap();
        }
        for outcome in ledger.apply_batch(rest).await.unwrap() {
            outcome.unwrap();
        }
        let problems = ledger.integrity_problems().await.unwrap();
        assert!(problems.is_empty(), "{problems:#?}");
        let payments = ledger.list(PaymentFilter::default()).await.unwrap();
        let state = payments
            .iter()
            .map(|p| {
                format!(
                    "{} {} expected={:?} paid={:?} refunded={:?} flagged={:?}",
                    p.reference, p.status, p.expected, p.paid, p.refunded, p.mismatch
                )
            })
            .collect();
        let mut rows = 0;
        for p in &payments {
            rows += ledger.history(p.id).await.unwrap().len() as i64;
        }
        (state, rows)
    })
}

/// Three payments' lives in order, and the same with duplicates in any order.
fn noisy_and_in_order() -> impl Strategy<Value = (Vec<ApplyRequest>, Vec<ApplyRequest>)> {
    (
        (lifecycle(0), lifecycle(1), lifecycle(2)),
        prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        any::<u64>(),
    )
        .prop_map(|(lives, duplicates, order)| {
            let in_order: Vec<ApplyRequest> = [lives.0, lives.1, lives.2].concat();
            let mut noisy = in_order.clone();
            if !in_order.is_empty() {
                for pick in &duplicates {
                    noisy.push(in_order[pick.index(in_order.len())].clone());
                }
            }
            let mut key = order;
            noisy.sort_by_cached_key(|_| {
                key = key
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                key >> 33
            });
            (noisy, in_order)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn duplicates_and_reordering_leave_the_same_ledger(
        (noisy, in_order) in noisy_and_in_order(),
    ) {
        prop_assert_eq!(run(Kind::Sqlite, noisy), run(Kind::Sqlite, in_order));
    }

    #[test]
    fn duplicates_and_reordering_leave_the_same_ledger_on_postgres_as_on_sqlite(
        (noisy, in_order) in noisy_and_in_order(),
    ) {
        prop_assert_eq!(run(Kind::Postgres, noisy), run(Kind::Sqlite, in_order));
    }
}
