//! The payment state machine: one table of allowed transitions and a pure
//! [`apply`].
//!
//! Observations arrive late, twice and out of order, so the machine is built to
//! converge: observations of one real payment's life, in any order and with
//! any repetition, end in the same state as the same observations in order.
//! That holds because every allowed move goes "up" a fixed order
//! (created → pending → stale → a final state; succeeded → refunded with a
//! growing total; succeeded → canceled for a reversal) and everything else is
//! refused with a reason and changes nothing.
//!
//! Refund observations carry the *total* refunded so far, never an increment,
//! so seeing one twice cannot count it twice; a refund whose amount nobody
//! reported moves the payment to refunded with its refunded total unknown,
//! and never books an amount. A refund seen before the success it implies
//! settles both: the provider saying "refunded" is the provider saying "it
//! was paid".
//!
//! Flags, re-checks, holds and the schedule are layered on top of this table
//! in [`decide`](crate::decide).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};

/// A payment's status in the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    /// The shop registered it; nothing heard from the provider yet.
    Created,
    /// The provider knows it and has not decided.
    Pending,
    /// Paid.
    Succeeded,
    /// Declined or errored; no money moved.
    Failed,
    /// Cancelled by the customer, or reversed by the merchant after success.
    Canceled,
    /// Paid, then refunded in part or in full.
    Refunded,
    /// Its deadline passed without a final answer; ops must look. A late final
    /// answer still settles it.
    Stale,
}

impl PaymentStatus {
    /// Every status.
    pub const ALL: [PaymentStatus; 7] = [
        PaymentStatus::Created,
        PaymentStatus::Pending,
        PaymentStatus::Succeeded,
        PaymentStatus::Failed,
        PaymentStatus::Canceled,
        PaymentStatus::Refunded,
        PaymentStatus::Stale,
    ];

    /// The lowercase name used in the ledger, events and routing keys.
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Created => "created",
            PaymentStatus::Pending => "pending",
            PaymentStatus::Succeeded => "succeeded",
            PaymentStatus::Failed => "failed",
            PaymentStatus::Canceled => "canceled",
            PaymentStatus::Refunded => "refunded",
            PaymentStatus::Stale => "stale",
        }
    }

    /// Settled: the provider has decided and the payment is never polled again.
    /// (Succeeded can still be refunded or reversed; it never goes back.)
    pub fn is_final(self) -> bool {
        matches!(
            self,
            PaymentStatus::Succeeded
                | PaymentStatus::Failed
                | PaymentStatus::Canceled
                | PaymentStatus::Refunded
        )
    }

    /// Whether finance hears about a payment entering this status.
    pub fn is_announced(self) -> bool {
        !matches!(self, PaymentStatus::Created | PaymentStatus::Pending)
    }
}

impl fmt::Display for PaymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown status name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown payment status {0:?}")]
pub struct UnknownStatus(pub String);

impl FromStr for PaymentStatus {
    type Err = UnknownStatus;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PaymentStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownStatus(s.chars().take(32).collect()))
    }
}

/// What one observation says about a payment's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum ObservedStatus {
    /// Known to the provider, not decided (PaySys 0 and 1, Portmanat 1).
    Pending,
    /// Paid.
    Succeeded,
    /// Declined or errored.
    Failed,
    /// Cancelled or reversed.
    Canceled,
    /// Refunded; `total` is everything refunded so far, `None` when the
    /// provider did not say how much (PaySys `check_payment` never does).
    Refunded {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<Money>,
    },
    /// The worker's verdict that the deadline passed with no final answer.
    Stale,
}

impl ObservedStatus {
    /// The status a payment would take from this observation.
    pub fn target(self) -> PaymentStatus {
        match self {
            ObservedStatus::Pending => PaymentStatus::Pending,
            ObservedStatus::Succeeded => PaymentStatus::Succeeded,
            ObservedStatus::Failed => PaymentStatus::Failed,
            ObservedStatus::Canceled => PaymentStatus::Canceled,
            ObservedStatus::Refunded { .. } => PaymentStatus::Refunded,
            ObservedStatus::Stale => PaymentStatus::Stale,
        }
    }
}

/// What the ledger knows of one payment, as far as the state machine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentState {
    /// The status now.
    pub status: PaymentStatus,
    /// What the shop registered, or else what the provider first said.
    pub expected: Option<Money>,
    /// What was paid, once the payment succeeded (kept through refunds, cleared
    /// by a reversal).
    pub paid: Option<Money>,
    /// Everything refunded so far (`None` for a refunded payment whose
    /// refunded total nobody reported).
    pub refunded: Option<Money>,
}

impl PaymentState {
    /// A payment the shop registered and the provider has not spoken about.
    pub fn registered(expected: Money) -> PaymentState {
        PaymentState {
            status: PaymentStatus::Created,
            expected: Some(expected),
            paid: None,
            refunded: None,
        }
    }

    /// A payment first heard of from the provider.
    pub fn unregistered() -> PaymentState {
        PaymentState {
            status: PaymentStatus::Created,
            expected: None,
            paid: None,
            refunded: None,
        }
    }
}

/// One step of a transition: the status it left, the one it entered, and the
/// money that moved with it (the payment's amount; for a refund, the amount
/// this step refunded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    pub from: PaymentStatus,
    pub to: PaymentStatus,
    pub amount: Option<Money>,
}

/// An accepted observation: the steps it made (one, or two when a refund
/// implies the success it follows) and the state it leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub steps: Vec<Step>,
    pub state: PaymentState,
}

impl Transition {
    /// The status before.
    pub fn from(&self) -> Option<PaymentStatus> {
        self.steps.first().map(|s| s.from)
    }

    /// The status after.
    pub fn to(&self) -> PaymentStatus {
        self.state.status
    }
}

/// Why an observation changes nothing. Each variant is a different thing for
/// the ledger to record and for ops to act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// Nothing new: the payment is already there.
    #[error("already {0}")]
    AlreadyInState(PaymentStatus),
    /// An older observation arriving late (pending after succeeded).
    #[error("{to} would move {from} backwards")]
    WouldRegress {
        from: PaymentStatus,
        to: PaymentStatus,
    },
    /// A different final answer than the one recorded (failed after succeeded).
    #[error("{to} conflicts with the recorded final status {from}")]
    ConflictsWithFinal {
        from: PaymentStatus,
        to: PaymentStatus,
    },
    /// The provider reports an amount other than the expected one.
    #[error("amount {observed} disagrees with the expected {expected}")]
    AmountMismatch { expected: Money, observed: Money },
    /// The provider reports a currency other than the expected one.
    #[error("currency {observed} disagrees with the expected {expected}")]
    CurrencyMismatch {
        expected: Currency,
        observed: Currency,
    },
    /// A refund larger than what was paid.
    #[error("refund total {refund} exceeds the {paid} paid")]
    RefundExceedsPaid { paid: Money, refund: Money },
    /// A refund of nothing.
    #[error("a refund of zero")]
    EmptyRefund,
    /// A success or refund with no amount from the provider and none expected.
    #[error("no amount is known for this payment")]
    UnknownAmount,
}

impl TransitionError {
    /// The provider contradicts the expected payment: the ledger flags it and
    /// finance hears of it (`payment.mismatch`).
    pub fn is_mismatch(&self) -> bool {
        matches!(
            self,
            TransitionError::AmountMismatch { .. }
                | TransitionError::CurrencyMismatch { .. }
                | TransitionError::RefundExceedsPaid { .. }
        )
    }

    /// A short stable name, for the ledger's history and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            TransitionError::AlreadyInState(_) => "already_in_state",
            TransitionError::WouldRegress { .. } => "would_regress",
            TransitionError::ConflictsWithFinal { .. } => "conflicts_with_final",
            TransitionError::AmountMismatch { .. } => "amount_mismatch",
            TransitionError::CurrencyMismatch { .. } => "currency_mismatch",
            TransitionError::RefundExceedsPaid { .. } => "refund_exceeds_paid",
            TransitionError::EmptyRefund => "empty_refund",
            TransitionError::UnknownAmount => "unknown_amount",
        }
    }
}

/// The one table of allowed status moves. Refund totals and money checks are
/// layered on top in [`apply`]; a move not in this table never happens.
pub fn allowed(from: PaymentStatus, to: PaymentStatus) -> bool {
    use PaymentStatus::*;
    matches!(
        (from, to),
        (Created, Pending | Stale | Succeeded | Failed | Canceled)
            | (Pending, Stale | Succeeded | Failed | Canceled)
            | (Stale, Succeeded | Failed | Canceled)
            | (Succeeded, Refunded | Canceled)
            | (Refunded, Refunded)
    )
}

/// Applies one observation (`observed`, with the payment amount the provider
/// reported, if any) to a payment.
pub fn apply(
    state: &PaymentState,
    observed: ObservedStatus,
    money: Option<Money>,
) -> Result<Transition, TransitionError> {
    use PaymentStatus::*;
    let mut next = *state;

    if let Some(money) = money {
        match state.expected {
            Some(expected) if expected.currency() != money.currency() => {
                return Err(TransitionError::CurrencyMismatch {
                    expected: expected.currency(),
                    observed: money.currency(),
                });
            }
            Some(expected) if expected != money => {
                return Err(TransitionError::AmountMismatch {
                    expected,
                    observed: money,
                });
            }
            Some(_) => {}
            None => next.expected = Some(money),
        }
    }

    let from = state.status;
    let to = observed.target();

    if let ObservedStatus::Refunded { total } = observed {
        return apply_refund(state, next, total);
    }

    if from == to {
        return Err(TransitionError::AlreadyInState(from));
    }
    if !allowed(from, to) {
        return Err(refusal(state, to));
    }

    let amount = match to {
        Succeeded => {
            let paid = next.expected.ok_or(TransitionError::UnknownAmount)?;
            next.paid = Some(paid);
            Some(paid)
        }
        Canceled if from == Succeeded => next.paid.take(),
        _ => next.expected,
    };
    next.status = to;
    Ok(Transition {
        steps: vec![Step { from, to, amount }],
        state: next,
    })
}

fn apply_refund(
    state: &PaymentState,
    mut next: PaymentState,
    total: Option<Money>,
) -> Result<Transition, TransitionError> {
    use PaymentStatus::*;
    let from = state.status;
    let mut steps = Vec::with_capacity(2);
    let paid = match from {
        Succeeded | Refunded => state.paid.ok_or(TransitionError::UnknownAmount)?,
        // A refund seen first: the success it follows happened too.
        Created | Pending | Stale => {
            let paid = next
                .expected
                .or(total)
                .ok_or(TransitionError::UnknownAmount)?;
            steps.push(Step {
                from,
                to: Succeeded,
                amount: Some(paid),
            });
            paid
        }
        Failed | Canceled => {
            return Err(TransitionError::ConflictsWithFinal { from, to: Refunded });
        }
    };
    let Some(refund) = total else {
        // Refunded, by an amount nobody reported: what is known of the
        // refunded total is kept, and nothing is booked.
        if from == Refunded {
            return Err(TransitionError::AlreadyInState(Refunded));
        }
        let step_from = steps.last().map_or(from, |s: &Step| s.to);
        steps.push(Step {
            from: step_from,
            to: Refunded,
            amount: None,
        });
        next.paid = Some(paid);
        next.refunded = None;
        next.status = Refunded;
        return Ok(Transition { steps, state: next });
    };
    if refund.currency() != paid.currency() {
        return Err(TransitionError::CurrencyMismatch {
            expected: paid.currency(),
            observed: refund.currency(),
        });
    }
    if refund.minor() > paid.minor() {
        return Err(TransitionError::RefundExceedsPaid { paid, refund });
    }
    if refund.minor() == 0 {
        return Err(TransitionError::EmptyRefund);
    }
    let before = state.refunded.map_or(0, Money::minor);
    if refund.minor() <= before {
        return Err(TransitionError::AlreadyInState(Refunded));
    }
    let increment = Money::from_minor(refund.minor() - before, refund.currency())
        .map_err(|_| TransitionError::RefundExceedsPaid { paid, refund })?;
    let step_from = steps.last().map_or(from, |s: &Step| s.to);
    steps.push(Step {
        from: step_from,
        to: Refunded,
        amount: Some(increment),
    });
    next.paid = Some(paid);
    next.refunded = Some(refund);
    next.status = Refunded;
    Ok(Transition { steps, state: next })
}

/// Names the refusal of a move the table does not allow.
fn refusal(state: &PaymentState, to: PaymentStatus) -> TransitionError {
    use PaymentStatus::*;
    let from = state.status;
    let older = match (from, to) {
        // Anything not final is older than a final answer or a stale verdict.
        (_, Created | Pending) => true,
        (f, Stale) if f.is_final() => true,
        // A success seen after the refund that followed it.
        (Refunded, Succeeded) => true,
        _ => false,
    };
    if older {
        TransitionError::WouldRegress { from, to }
    } else {
        TransitionError::ConflictsWithFinal { from, to }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd(minor: i64) -> Money {
        Money::from_minor(minor, Currency::Usd).unwrap()
    }

    fn registered() -> PaymentState {
        PaymentState::registered(usd(1000))
    }

    fn run(start: PaymentState, observations: &[(ObservedStatus, Option<Money>)]) -> PaymentState {
        observations.iter().fold(start, |state, (observed, money)| {
            apply(&state, *observed, *money)
                .map(|t| t.state)
                .unwrap_or(state)
        })
    }

    #[test]
    fn the_table_allows_only_forward_moves() {
        use PaymentStatus::*;
        for to in PaymentStatus::ALL {
            assert!(!allowed(to, Created), "nothing returns to created");
            if to != Pending {
                assert!(!allowed(Pending, Created));
            }
        }
        for from in [Succeeded, Failed, Canceled, Refunded, Stale] {
            assert!(!allowed(from, Pending), "{from} never returns to pending");
        }
        for to in PaymentStatus::ALL {
            assert!(!allowed(Failed, to));
            assert!(!allowed(Canceled, to));
        }
        for from in PaymentStatus::ALL {
            assert_eq!(
                allowed(from, Refunded),
                matches!(from, Succeeded | Refunded),
                "{from}"
            );
        }
    }

    #[test]
    fn a_success_records_what_was_paid() {
        let t = apply(&registered(), ObservedStatus::Succeeded, Some(usd(1000))).unwrap();
        assert_eq!(
            t.steps,
            vec![Step {
                from: PaymentStatus::Created,
                to: PaymentStatus::Succeeded,
                amount: Some(usd(1000))
            }]
        );
        assert_eq!(t.state.paid, Some(usd(1000)));
        // A status answer without an amount settles at the expected amount.
        let t = apply(&registered(), ObservedStatus::Succeeded, None).unwrap();
        assert_eq!(t.state.paid, Some(usd(1000)));
    }

    #[test]
    fn the_same_observation_twice_changes_nothing_the_second_time() {
        let once = apply(&registered(), ObservedStatus::Succeeded, None)
            .unwrap()
            .state;
        assert_eq!(
            apply(&once, ObservedStatus::Succeeded, None),
            Err(TransitionError::AlreadyInState(PaymentStatus::Succeeded))
        );
        let pending = apply(&registered(), ObservedStatus::Pending, None)
            .unwrap()
            .state;
        assert_eq!(
            apply(&pending, ObservedStatus::Pending, None),
            Err(TransitionError::AlreadyInState(PaymentStatus::Pending))
        );
    }

    #[test]
    fn a_final_state_never_returns_to_pending() {
        for final_observation in [
            ObservedStatus::Succeeded,
            ObservedStatus::Failed,
            ObservedStatus::Canceled,
        ] {
            let state = apply(&registered(), final_observation, None).unwrap().state;
            let err = apply(&state, ObservedStatus::Pending, None).unwrap_err();
            assert!(
                matches!(
                    err,
                    TransitionError::WouldRegress {
                        to: PaymentStatus::Pending,
                        ..
                    }
                ),
                "{err}"
            );
            assert!(matches!(
                apply(&state, ObservedStatus::Stale, None),
                Err(TransitionError::WouldRegress { .. })
            ));
        }
    }

    #[test]
    fn conflicting_final_answers_are_refused() {
        let succeeded = apply(&registered(), ObservedStatus::Succeeded, None)
            .unwrap()
            .state;
        assert_eq!(
            apply(&succeeded, ObservedStatus::Failed, None),
            Err(TransitionError::ConflictsWithFinal {
                from: PaymentStatus::Succeeded,
                to: PaymentStatus::Failed
            })
        );
        let failed = apply(&registered(), ObservedStatus::Failed, None)
            .unwrap()
            .state;
        assert!(matches!(
            apply(&failed, ObservedStatus::Succeeded, None),
            Err(TransitionError::ConflictsWithFinal { .. })
        ));
        assert!(matches!(
            apply(&failed, ObservedStatus::Refunded { total: None }, None),
            Err(TransitionError::ConflictsWithFinal { .. })
        ));
    }

    #[test]
    fn a_reversal_after_success_cancels_and_clears_what_was_paid() {
        let succeeded = apply(&registered(), ObservedStatus::Succeeded, None)
            .unwrap()
            .state;
        let t = apply(&succeeded, ObservedStatus::Canceled, None).unwrap();
        assert_eq!(t.state.status, PaymentStatus::Canceled);
        assert_eq!(t.state.paid, None);
        assert_eq!(t.steps[0].amount, Some(usd(1000)));
    }

    #[test]
    fn refunds_follow_a_success_and_never_exceed_it() {
        let succeeded = apply(&registered(), ObservedStatus::Succeeded, None)
            .unwrap()
            .state;
        let partial = apply(
            &succeeded,
            ObservedStatus::Refunded {
                total: Some(usd(300)),
            },
            None,
        )
        .unwrap();
        assert_eq!(
            partial.steps,
            vec![Step {
                from: PaymentStatus::Succeeded,
                to: PaymentStatus::Refunded,
                amount: Some(usd(300))
            }]
        );
        assert_eq!(partial.state.refunded, Some(usd(300)));
        let more = apply(
            &partial.state,
            ObservedStatus::Refunded {
                total: Some(usd(1000)),
            },
            None,
        )
        .unwrap();
        assert_eq!(
            more.steps[0].amount,
            Some(usd(700)),
            "the step carries the increment"
        );
        assert_eq!(more.state.refunded, Some(usd(1000)));
        assert_eq!(
            apply(
                &more.state,
                ObservedStatus::Refunded {
                    total: Some(usd(300))
                },
                None
            ),
            Err(TransitionError::AlreadyInState(PaymentStatus::Refunded)),
            "an older, smaller total changes nothing"
        );
        assert_eq!(
            apply(
                &succeeded,
                ObservedStatus::Refunded {
                    total: Some(usd(1001))
                },
                None
            ),
            Err(TransitionError::RefundExceedsPaid {
                paid: usd(1000),
                refund: usd(1001)
            })
        );
        assert_eq!(
            apply(
                &succeeded,
                ObservedStatus::Refunded {
                    total: Some(usd(0))
                },
                None
            ),
            Err(TransitionError::EmptyRefund)
        );
        let unknown = apply(&succeeded, ObservedStatus::Refunded { total: None }, None).unwrap();
        assert_eq!(unknown.state.status, PaymentStatus::Refunded);
        assert_eq!(
            unknown.state.refunded, None,
            "no amount is booked that nobody reported"
        );
        assert_eq!(unknown.steps[0].amount, None);
        assert_eq!(
            apply(
                &partial.state,
                ObservedStatus::Refunded { total: None },
                None
            ),
            Err(TransitionError::AlreadyInState(PaymentStatus::Refunded)),
            "a refund without an amount keeps the known total"
        );
    }

    #[test]
    fn a_refund_seen_before_its_success_settles_both() {
        let pending = apply(&registered(), ObservedStatus::Pending, None)
            .unwrap()
            .state;
        let t = apply(
            &pending,
            ObservedStatus::Refunded {
                total: Some(usd(400)),
            },
            None,
        )
        .unwrap();
        let path: Vec<_> = t.steps.iter().map(|s| (s.from, s.to, s.amount)).collect();
        assert_eq!(
            path,
            vec![
                (
                    PaymentStatus::Pending,
                    PaymentStatus::Succeeded,
                    Some(usd(1000))
                ),
                (
                    PaymentStatus::Succeeded,
                    PaymentStatus::Refunded,
                    Some(usd(400))
                ),
            ]
        );
        assert_eq!(
            apply(
                &PaymentState::unregistered(),
                ObservedStatus::Refunded { total: None },
                None
            ),
            Err(TransitionError::UnknownAmount)
        );
    }

    #[test]
    fn amounts_and_currencies_that_disagree_are_refused_as_mismatches() {
        let err = apply(&registered(), ObservedStatus::Succeeded, Some(usd(999))).unwrap_err();
        assert_eq!(
            err,
            TransitionError::AmountMismatch {
                expected: usd(1000),
                observed: usd(999)
            }
        );
        assert!(err.is_mismatch());
        let azn = Money::from_minor(1000, Currency::Azn).unwrap();
        let err = apply(&registered(), ObservedStatus::Succeeded, Some(azn)).unwrap_err();
        assert_eq!(
            err,
            TransitionError::CurrencyMismatch {
                expected: Currency::Usd,
                observed: Currency::Azn
            }
        );
        assert!(!TransitionError::AlreadyInState(PaymentStatus::Pending).is_mismatch());
    }

    #[test]
    fn an_unregistered_payment_takes_the_providers_amount() {
        let t = apply(
            &PaymentState::unregistered(),
            ObservedStatus::Succeeded,
            Some(usd(250)),
        )
        .unwrap();
        assert_eq!(t.state.expected, Some(usd(250)));
        assert_eq!(t.state.paid, Some(usd(250)));
        assert_eq!(
            apply(
                &PaymentState::unregistered(),
                ObservedStatus::Succeeded,
                None
            ),
            Err(TransitionError::UnknownAmount)
        );
    }

    #[test]
    fn stale_payments_still_settle_late() {
        let stale = apply(&registered(), ObservedStatus::Stale, None)
            .unwrap()
            .state;
        assert_eq!(stale.status, PaymentStatus::Stale);
        assert!(matches!(
            apply(&stale, ObservedStatus::Pending, None),
            Err(TransitionError::WouldRegress { .. })
        ));
        assert_eq!(
            apply(&stale, ObservedStatus::Succeeded, None)
                .unwrap()
                .state
                .status,
            PaymentStatus::Succeeded
        );
    }

    /// One real payment's life, as a provider would report it.
    fn lifecycle() -> impl Strategy<Value = Vec<(ObservedStatus, Option<Money>)>> {
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
        (0usize..3, any::<bool>(), ending).prop_map(move |(pendings, stale, ending)| {
            let mut seq = vec![(ObservedStatus::Pending, amount); pendings];
            if stale {
                seq.push((ObservedStatus::Stale, None));
            }
            seq.extend(ending);
            seq
        })
    }

    fn rank(status: PaymentStatus) -> u8 {
        match status {
            PaymentStatus::Created => 0,
            PaymentStatus::Pending => 1,
            PaymentStatus::Stale => 2,
            _ => 3,
        }
    }

    proptest! {
        #[test]
        fn duplicates_and_reordering_reach_the_in_order_end_state(
            seq in lifecycle(),
            duplicates in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
            order in any::<u64>(),
        ) {
            let in_order = run(registered(), &seq);

            let mut noisy = seq.clone();
            for pick in &duplicates {
                if !seq.is_empty() {
                    noisy.push(seq[pick.index(seq.len())]);
                }
            }
            // A deterministic shuffle from the drawn seed.
            let mut key = order;
            noisy.sort_by_cached_key(|_| { key = key.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407); key >> 33 });

            let mut state = registered();
            for (observed, money) in &noisy {
                let before = state;
                if let Ok(t) = apply(&state, *observed, *money) {
                    prop_assert!(rank(t.state.status) >= rank(before.status), "moved backwards: {:?} -> {:?}", before.status, t.state.status);
                    if before.status.is_final() {
                        prop_assert!(t.state.status.is_final());
                    }
                    for step in &t.steps {
                        prop_assert!(allowed(step.from, step.to), "step outside the table: {:?}", step);
                    }
                    state = t.state;
                }
            }
            prop_assert_eq!(state, in_order);
        }

        #[test]
        fn any_observation_on_any_state_never_panics_and_keeps_refunds_within_paid(
            status in prop::sample::select(PaymentStatus::ALL.to_vec()),
            refunded in 0i64..=1000,
            observed in prop_oneof![
                Just(ObservedStatus::Pending), Just(ObservedStatus::Succeeded), Just(ObservedStatus::Failed),
                Just(ObservedStatus::Canceled), Just(ObservedStatus::Stale),
                proptest::option::of(0i64..2000).prop_map(|t| ObservedStatus::Refunded { total: t.map(usd) }),
            ],
            money in proptest::option::of(0i64..2000),
        ) {
            let paid = matches!(status, PaymentStatus::Succeeded | PaymentStatus::Refunded).then(|| usd(1000));
            let state = PaymentState {
                status,
                expected: Some(usd(1000)),
                paid,
                refunded: (status == PaymentStatus::Refunded).then(|| usd(refunded.max(1))),
            };
            if let Ok(t) = apply(&state, observed, money.map(usd)) {
                if let (Some(paid), Some(refunded)) = (t.state.paid, t.state.refunded) {
                    prop_assert!(refunded.minor() <= paid.minor());
                }
                prop_assert!(!t.steps.is_empty());
            }
        }
    }
}
