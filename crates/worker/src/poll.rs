//! The poller: every payment not yet final is asked about on its schedule
//! until it is final or its deadline passes (then it is marked stale).
//!
//! A step is [`Poller::run_once`]: reap finished checks, then start as many
//! due checks as the providers' concurrency allows. Checks run as tasks, so a
//! slow provider never holds up another, and a payment is never checked twice
//! at once.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use paysettle_core::schedule::NextCheck;
use paysettle_core::{Observation, ObservedStatus, Provider, Source};
use paysettle_store::{ApplyOutcome, ApplyRequest, DueCheck, Ledger, PaymentId};
use rand::{Rng, SeedableRng};
use tokio::task::JoinSet;

use crate::error::WorkerError;
use crate::settings::WorkerSettings;
use crate::status::{CheckResult, StatusClient};

/// A finished check task: which payment, and whether its result was recorded.
type Finished = Option<Result<(PaymentId, Result<(), WorkerError>), tokio::task::JoinError>>;

/// What one poller step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollRound {
    /// Checks started this step.
    pub started: usize,
    /// Checks finished this step.
    pub finished: usize,
    /// Checks still running.
    pub in_flight: usize,
}

/// The poller. One per ledger.
#[derive(Debug)]
pub struct Poller {
    ledger: Ledger,
    client: StatusClient,
    settings: Arc<WorkerSettings>,
    in_flight: HashSet<PaymentId>,
    tasks: JoinSet<(PaymentId, Result<(), WorkerError>)>,
    rng: rand::rngs::StdRng,
}

impl Poller {
    /// A poller over `ledger`.
    pub fn new(ledger: Ledger, client: StatusClient, settings: Arc<WorkerSettings>) -> Poller {
        Poller {
            ledger,
            client,
            settings,
            in_flight: HashSet::new(),
            tasks: JoinSet::new(),
            rng: rand::rngs::StdRng::from_os_rng(),
        }
    }

    fn capacity(&self) -> usize {
        Provider::ALL
            .into_iter()
            .map(|p| self.settings.limits(p).concurrency.max(1))
            .sum::<usize>()
            * 2
    }

    fn reap(&mut self, done: Finished) -> bool {
        match done {
            Some(Ok((id, result))) => {
                self.in_flight.remove(&id);
                if let Err(err) = result {
                    tracing::warn!(payment.id = id.0, error = %err, "status check could not be recorded; it will run again");
                }
                true
            }
            Some(Err(err)) => {
                tracing::error!(error = %err, "a status check task failed");
                // The id is unknown here; rebuild the set from what still runs.
                true
            }
            None => false,
        }
    }

    /// Reaps finished checks and starts due ones.
    pub async fn run_once(&mut self) -> Result<PollRound, WorkerError> {
        let mut finished = 0;
        loop {
            let done = self.tasks.try_join_next();
            if !self.reap(done) {
                break;
            }
            finished += 1;
        }
        if self.tasks.is_empty() {
            self.in_flight.clear();
        }
        let room = self.capacity().saturating_sub(self.in_flight.len());
        let mut started = 0;
        // Refill when half the room is free, not after every finished check:
        // one schedule query per batch of checks.
        if room > 0 && self.in_flight.len() <= self.capacity() / 2 {
            // The claims taken now end one lease from here (read before the
            // ledger's `now`, so never later): each check must be over by
            // then. A single worker's checks are unclaimed; the bound holds
            // all the same.
            let until = tokio::time::Instant::now() + self.settings.claim_lease;
            let now = self.settings.clock.now();
            let want = room + self.in_flight.len();
            // On a shared ledger each due check is claimed, with a lease, so
            // two workers never ask a provider about one payment at once.
            let mut due = if self.ledger.is_shared() {
                self.ledger
                    .claim_due_checks(&self.settings.owner, now, self.settings.claim_lease, want)
                    .await?
            } else {
                self.ledger.due_checks(now, want).await?
            };
            due.retain(|c| !self.in_flight.contains(&c.payment.id));
            for check in due.into_iter().take(room) {
                let id = check.payment.id;
                self.in_flight.insert(id);
                let (ledger, client, settings) = (
                    self.ledger.clone(),
                    self.client.clone(),
                    Arc::clone(&self.settings),
                );
                let sample: f64 = self.rng.random();
                self.tasks.spawn(async move {
                    (
                        id,
                        check_one(&ledger, &client, &settings, check, sample, until).await,
                    )
                });
                started += 1;
            }
        }
        Ok(PollRound {
            started,
            finished,
            in_flight: self.in_flight.len(),
        })
    }

    /// Waits for one running check to finish (for the loop around
    /// [`Poller::run_once`]); returns at once when none runs.
    pub async fn wait_one(&mut self) {
        let done = self.tasks.join_next().await;
        self.reap(done);
    }

    /// Whether checks are running.
    pub fn busy(&self) -> bool {
        !self.tasks.is_empty()
    }

    /// Runs steps until nothing is due now and nothing runs: what tests call
    /// instead of sleeping.
    pub async fn run_until_idle(&mut self) -> Result<usize, WorkerError> {
        let mut total = 0;
        loop {
            let round = self.run_once().await?;
            total += round.started;
            if round.started == 0 && !self.busy() {
                return Ok(total);
            }
            if self.busy() {
                self.wait_one().await;
            }
        }
    }

    /// Waits for running checks, at most `grace`.
    pub async fn drain(&mut self, grace: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while self.busy() {
            if tokio::time::timeout_at(deadline, self.wait_one())
                .await
                .is_err()
            {
                tracing::warn!(
                    in_flight = self.in_flight.len(),
                    "status checks abandoned at shutdown; they run again at start"
                );
                self.tasks.abort_all();
                return;
            }
        }
    }
}

fn stale_observation(check: &DueCheck, now: Timestamp) -> ApplyRequest {
    let p = &check.payment;
    ApplyRequest {
        observation: Observation {
            provider: p.provider,
            account: p.account.clone(),
            reference: p.reference.clone(),
            provider_txn_id: p.provider_txn_id.clone(),
            status: ObservedStatus::Stale,
            money: None,
            provider_status: "deadline passed".into(),
            provider_time: None,
            observed_at: now,
            source: Source::Check,
            test: false,
            refund_part: None,
        },
        raw: check
            .last_error
            .as_ref()
            .map(|e| serde_json::json!({ "last_error": e, "attempts": check.attempts })),
    }
}

/// Checks one payment and records what came of it.
#[tracing::instrument(skip_all, fields(payment.id = check.payment.id.0, payment.provider = %check.payment.provider, payment.reference = %check.payment.reference))]
async fn check_one(
    ledger: &Ledger,
    client: &StatusClient,
    settings: &WorkerSettings,
    check: DueCheck,
    sample: f64,
    until: tokio::time::Instant,
) -> Result<(), WorkerError> {
    let policy = settings.limits(check.payment.provider).policy;
    let now = settings.clock.now();
    if now >= check.deadline_at {
        let outcome = ledger.apply(stale_observation(&check, now)).await?;
        crate::outcome::log(&outcome, "deadline passed: payment marked stale");
        return Ok(());
    }
    let result = client.check_by(&check.payment, until).await;
    let result_kind = result.kind();
    let now = settings.clock.now();
    let next = |attempts: u32| policy.next_check(check.payment.created_at, attempts, now, sample);
    let error = match result {
        CheckResult::Answer { observation, raw } => {
            let status = observation.status;
            let request = ApplyRequest {
                observation: *observation,
                raw: Some(raw),
            };
            // The answer and the next check in one commit; if the answer
            // settled the payment, it has left the schedule and the next
            // check changes nothing.
            let outcome = match next(check.attempts + 1) {
                NextCheck::At(at) => ledger.apply_check(request, at).await?,
                NextCheck::Stale => {
                    let outcome = ledger.apply(request).await?;
                    if !matches!(&outcome, ApplyOutcome::Applied { to, .. } if to.is_final()) {
                        ledger.apply(stale_observation(&check, now)).await?;
                    }
                    outcome
                }
            };
            tracing::info_span!("answer", answer = ?status)
                .in_scope(|| crate::outcome::log(&outcome, "status checked"));
            return Ok(());
        }
        CheckResult::Busy { retry_after } | CheckResult::Deferred { retry_after } => {
            let (note, error) = if matches!(result_kind, "deferred") {
                (
                    "the deployment's rate limit for this provider is used up; deferred",
                    "deferred: the deployment's rate limit is used up",
                )
            } else {
                ("provider asked to slow down", "429 Too Many Requests")
            };
            tracing::info!(retry_after_ms = retry_after.as_millis() as u64, "{note}");
            let at = now
                .checked_add(
                    jiff::SignedDuration::try_from(retry_after)
                        .unwrap_or(jiff::SignedDuration::from_secs(1)),
                )
                .unwrap_or(now);
            ledger
                .record_check(
                    check.payment.id,
                    Some(at.min(check.deadline_at)),
                    Some(error.into()),
                )
                .await?;
            return Ok(());
        }
        other => {
            let text = match other {
                CheckResult::Unknown(e) | CheckResult::Failed(e) | CheckResult::Unsupported(e) => e,
                CheckResult::Answer { .. }
                | CheckResult::Busy { .. }
                | CheckResult::Deferred { .. } => String::new(),
            };
            tracing::info!(error = %text, attempts = check.attempts + 1, "status check failed; backing off");
            Some(text)
        }
    };
    match next(check.attempts + 1) {
        NextCheck::At(at) => {
            ledger
                .record_check(check.payment.id, Some(at), error)
                .await?;
        }
        NextCheck::Stale => {
            let mut stale = stale_observation(&check, now);
            if let Some(error) = error {
                stale.raw = Some(
                    serde_json::json!({ "last_error": error, "attempts": check.attempts + 1 }),
                );
            }
            ledger.apply(stale).await?;
        }
    }
    Ok(())
}
