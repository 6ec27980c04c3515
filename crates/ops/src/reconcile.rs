//! The reconciliation batch: select payments, ask the provider again,
//! compare, classify, and (when asked) correct.
//!
//! A payment's [`Class`] is the most serious of everything found about it;
//! every finding is listed in [`Finding::classes`]. The comparison is of
//! three things: the ledger's payment, what the provider says now (its
//! status API, or its exported report), and the events the ledger recorded
//! and whether they were published.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use jiff::Timestamp;
use paysettle_core::money::Currency;
use paysettle_core::{
    Account, Money, Observation, ObservedStatus, PaymentStatus, Provider, Reference, Source,
};
use paysettle_store::{
    ApplyOutcome, ApplyRequest, Ledger, OutboxEvent, PaymentFilter, PaymentId, PaymentRecord,
};
use paysettle_worker::{CheckResult, StatusClient};
use serde::{Deserialize, Serialize};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::OpsError;
use crate::journal::Journal;
use crate::report::{Mapping, Report, ReportRow};

/// What reconciliation concluded about one payment, most serious first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// In the provider's report, not in the ledger.
    UnknownLocally,
    /// The provider does not know a payment the ledger has.
    MissingAtProvider,
    /// The ledger holds the payment flagged (a mismatch or a conflict):
    /// only `paysettle payments resolve` clears it, never `--apply`.
    Flagged,
    /// The provider and the ledger disagree on the currency.
    CurrencyMismatch,
    /// … on the amount.
    AmountMismatch,
    /// … on the status (or on how much was refunded).
    StatusMismatch,
    /// The provider could not be asked (after retries): the batch is not
    /// finished; `--resume` asks again.
    CheckFailed,
    /// Not final, older than the threshold, and the provider has not decided.
    StuckPending,
    /// An event the ledger recorded has not been confirmed by the broker.
    UnpublishedEvent,
    /// Everything agrees.
    Ok,
}

impl Class {
    /// Every class, most serious first.
    pub const ALL: [Class; 10] = [
        Class::UnknownLocally,
        Class::MissingAtProvider,
        Class::Flagged,
        Class::CurrencyMismatch,
        Class::AmountMismatch,
        Class::StatusMismatch,
        Class::CheckFailed,
        Class::StuckPending,
        Class::UnpublishedEvent,
        Class::Ok,
    ];

    /// The name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::UnknownLocally => "unknown_locally",
            Class::MissingAtProvider => "missing_at_provider",
            Class::Flagged => "flagged",
            Class::CurrencyMismatch => "currency_mismatch",
            Class::AmountMismatch => "amount_mismatch",
            Class::StatusMismatch => "status_mismatch",
            Class::StuckPending => "stuck_pending",
            Class::UnpublishedEvent => "unpublished_event",
            Class::CheckFailed => "check_failed",
            Class::Ok => "ok",
        }
    }
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What `--apply` does about a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fix {
    /// Nothing can be done automatically (or nothing needs doing).
    None,
    /// Write the provider's answer to the ledger (source `reconcile`).
    Apply,
    /// Publish the outbox.
    Publish,
}

/// One payment's verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `payment:<id>`, or `report:<line>` for a payment the ledger lacks.
    pub key: String,
    pub class: Class,
    /// Everything found, most serious first.
    pub classes: Vec<Class>,
    pub payment_id: Option<i64>,
    pub provider: Provider,
    pub account: Account,
    pub reference: Reference,
    pub provider_transaction_id: Option<String>,
    pub ledger_status: Option<PaymentStatus>,
    /// The ledger's amount: what the shop registered, or else what was paid.
    pub ledger_amount: Option<Money>,
    pub ledger_refunded: Option<Money>,
    /// What the provider's answer means, and its own words.
    pub provider_status: Option<PaymentStatus>,
    pub provider_said: Option<String>,
    pub provider_amount: Option<Money>,
    pub provider_refunded: Option<Money>,
    /// Whether the provider was asked (or its report consulted).
    pub checked: bool,
    /// Recorded events not yet confirmed by the broker.
    pub unpublished_events: u32,
    pub detail: String,
    pub fix: Fix,
    /// What `--apply` did, once it has run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<String>,
}

impl Finding {
    /// The money this finding is about, for the summary's sums: the
    /// provider's figure where it gave one, else the ledger's.
    pub fn money(&self) -> Option<Money> {
        self.provider_amount.or(self.ledger_amount)
    }
}

/// How the batch's payments are chosen and judged. Saved in the journal, so
/// a resumed batch is the same batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Batch {
    pub provider: Option<Provider>,
    pub account: Option<Account>,
    /// Only these statuses; empty means the default selection: every
    /// payment not final, plus final ones created in the window.
    pub statuses: Vec<PaymentStatus>,
    /// The window, on the payment's creation time.
    pub since: Option<Timestamp>,
    pub until: Option<Timestamp>,
    /// A payment not final after this long is stuck.
    pub stuck_after_secs: u64,
    /// An unpublished event younger than this is in flight, not a finding.
    pub publish_grace_secs: u64,
    /// Times the provider is asked again after a failure.
    pub retries: usize,
    /// Compare with this report instead of the provider's status API.
    pub against: Option<ReportSpec>,
    /// When the batch started: "now" for every judgement, also on resume.
    pub started_at: Timestamp,
}

/// A provider's exported report, as the batch names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportSpec {
    pub path: String,
    pub provider: Provider,
    pub account: Account,
    pub mapping: Mapping,
}

/// Told how far the batch has come (a progress bar, or nothing).
pub trait Progress: Send + Sync {
    /// How many payments the batch has in all.
    fn total(&self, payments: u64);
    /// `payments` more are done.
    fn advance(&self, payments: u64);
}

/// What a run produced.
#[derive(Debug)]
pub struct RunOutcome {
    /// Every payment's finding, in the order they were finished.
    pub findings: Vec<Finding>,
    /// Ctrl-C stopped it before every payment was judged.
    pub interrupted: bool,
    /// How many payments the batch has in all.
    pub total: usize,
}

/// The counts an operator reads first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub payments: usize,
    pub by_class: BTreeMap<Class, usize>,
    /// Per class, the money involved per currency, in minor units.
    pub money: BTreeMap<Class, BTreeMap<Currency, i128>>,
    /// Payments whose provider could not be asked at all (no status API, no
    /// provider id yet): judged on the ledger alone.
    pub not_checked: usize,
    pub discrepancies: usize,
}

impl Summary {
    /// Counts `findings`.
    pub fn of(findings: &[Finding]) -> Summary {
        let mut summary = Summary {
            payments: findings.len(),
            ..Summary::default()
        };
        for finding in findings {
            *summary.by_class.entry(finding.class).or_default() += 1;
            if let Some(money) = finding.money() {
                *summary
                    .money
                    .entry(finding.class)
                    .or_default()
                    .entry(money.currency())
                    .or_default() += i128::from(money.minor());
            }
            if !finding.checked {
                summary.not_checked += 1;
            }
            if finding.class != Class::Ok {
                summary.discrepancies += 1;
            }
        }
        summary
    }

    /// How many payments are in `class`.
    pub fn count(&self, class: Class) -> usize {
        self.by_class.get(&class).copied().unwrap_or(0)
    }
}

/// Runs batches over one ledger.
#[derive(Debug, Clone)]
pub struct Reconciler {
    ledger: Ledger,
    client: StatusClient,
    /// Status checks in flight at most (the client's per-provider limits
    /// apply below this).
    concurrency: usize,
}

/// What the provider said about one payment.
#[derive(Debug)]
enum Said {
    Answer(Box<Observation>),
    Missing(String),
    NotAsked(String),
    Failed(String),
}

/// A page of payments read at a time.
const PAGE: usize = 1000;

impl Reconciler {
    /// A reconciler asking providers through `client`, `concurrency` at a time.
    pub fn new(ledger: Ledger, client: StatusClient, concurrency: usize) -> Reconciler {
        Reconciler {
            ledger,
            client,
            concurrency: concurrency.max(1),
        }
    }

    fn filter(batch: &Batch) -> PaymentFilter {
        let (provider, account) = match &batch.against {
            Some(spec) => (Some(spec.provider), Some(spec.account.clone())),
            None => (batch.provider, batch.account.clone()),
        };
        PaymentFilter {
            provider,
            account,
            statuses: batch.statuses.clone(),
            created_since: batch.since,
            created_until: batch.until,
            or_unsettled: batch.statuses.is_empty(),
            limit: PAGE,
            ..PaymentFilter::default()
        }
    }

    /// Judges every payment of `batch` not already in `journal`, writing
    /// each verdict to the journal as it is reached. Stops starting checks
    /// when `stop` is cancelled and finishes those in flight.
    pub async fn run(
        &self,
        batch: &Batch,
        journal: &mut Journal,
        progress: &dyn Progress,
        stop: &CancellationToken,
    ) -> Result<RunOutcome, OpsError> {
        let report = match &batch.against {
            Some(spec) => Some(Report::read(
                std::path::Path::new(&spec.path),
                spec.provider,
                spec.account.clone(),
                &spec.mapping,
            )?),
            None => None,
        };
        let mut rows: HashMap<String, ReportRow> = report
            .map(|r| {
                r.rows
                    .into_iter()
                    .map(|row| (row.reference.as_str().to_owned(), row))
                    .collect()
            })
            .unwrap_or_default();
        let against = batch.against.is_some();
        let filter = Self::filter(batch);
        let mut total = self.ledger.count(filter.clone()).await? as usize;
        progress.total(total as u64);
        let done: BTreeSet<String> = journal.done().clone();
        let mut findings: Vec<Finding> = journal.findings().to_vec();
        progress.advance(findings.len() as u64);
        let context = Arc::new(Context {
            client: self.client.clone(),
            batch: batch.clone(),
        });

        let mut tasks: JoinSet<Finding> = JoinSet::new();
        let mut interrupted = false;
        let mut after = None;
        'pages: loop {
            let page = self
                .ledger
                .list(PaymentFilter {
                    after_id: after,
                    ..filter.clone()
                })
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            let ids: Vec<PaymentId> = page.iter().map(|p| p.id).collect();
            let mut events = group_events(self.ledger.events_of_payments(ids).await?);
            for payment in page {
                // A report row that matches is consumed here, even when the
                // payment was judged before this run: what is left over is
                // what the ledger lacks.
                let row = rows.remove(payment.reference.as_str());
                if done.contains(&key_of(&payment)) {
                    continue;
                }
                if stop.is_cancelled() {
                    interrupted = true;
                    break 'pages;
                }
                while tasks.len() >= self.concurrency {
                    if let Some(finding) = join(&mut tasks).await {
                        record(journal, &mut findings, progress, finding)?;
                    }
                }
                let events = events.remove(&payment.id).unwrap_or_default();
                let context = Arc::clone(&context);
                tasks.spawn(async move {
                    let said = if against {
                        match row {
                            Some(row) => Said::Answer(Box::new(row_observation(
                                &payment.provider,
                                &payment.account,
                                &row,
                                context.batch.started_at,
                            ))),
                            None => Said::Missing("not in the provider's report".into()),
                        }
                    } else {
                        context.ask(&payment).await
                    };
                    judge(&payment, said, &events, &context.batch)
                });
            }
        }
        while let Some(finding) = join(&mut tasks).await {
            record(journal, &mut findings, progress, finding)?;
        }
        if !interrupted && let Some(spec) = &batch.against {
            // Rows left: payments the report has that the selection did not.
            // Those the ledger holds outside the window are judged too; the
            // rest are unknown here.
            let mut left: Vec<ReportRow> = rows.into_values().collect();
            left.sort_by_key(|r| r.line);
            total += left.len();
            progress.total(total as u64);
            for row in left {
                let payment = self
                    .ledger
                    .payment(spec.provider, spec.account.clone(), row.reference.clone())
                    .await?;
                let key = match &payment {
                    Some(p) => key_of(p),
                    None => format!("report:{}", row.line),
                };
                if done.contains(&key) {
                    continue;
                }
                let observation =
                    row_observation(&spec.provider, &spec.account, &row, batch.started_at);
                let finding = match payment {
                    Some(payment) => {
                        let events = self.ledger.events_of(payment.id).await?;
                        judge(
                            &payment,
                            Said::Answer(Box::new(observation)),
                            &events,
                            batch,
                        )
                    }
                    None => unknown_locally(spec, &row, &observation),
                };
                record(journal, &mut findings, progress, finding)?;
            }
        }
        Ok(RunOutcome {
            findings,
            interrupted,
            total,
        })
    }

    /// Writes the corrections of `findings` whose fix is `apply` to the
    /// ledger, source `reconcile`, through the worker's path: each is an
    /// observation the state machine judges, with its history row and, for
    /// a settled transition, its event. Each finding's `applied` says what
    /// happened; the journal remembers it, so a resumed batch applies none
    /// twice.
    pub async fn apply(
        &self,
        batch: &Batch,
        findings: &mut [Finding],
        journal: &mut Journal,
    ) -> Result<usize, OpsError> {
        let context = Context {
            client: self.client.clone(),
            batch: batch.clone(),
        };
        let report = match &batch.against {
            Some(spec) => Some(Report::read(
                std::path::Path::new(&spec.path),
                spec.provider,
                spec.account.clone(),
                &spec.mapping,
            )?),
            None => None,
        };
        let mut applied = 0;
        for finding in findings.iter_mut() {
            if finding.fix != Fix::Apply || finding.applied.is_some() {
                continue;
            }
            if let Some(outcome) = journal.applied(&finding.key) {
                finding.applied = Some(outcome.to_owned());
                continue;
            }
            let payment = match finding.payment_id {
                Some(id) => self.ledger.payment_by_id(PaymentId(id)).await?,
                None => None,
            };
            let Some(observation) = context
                .correction(finding, payment.as_ref(), report.as_ref())
                .await
            else {
                finding.applied = Some("skipped: the provider's answer changed since".into());
                continue;
            };
            let outcome = self
                .ledger
                .apply(ApplyRequest {
                    observation,
                    raw: Some(serde_json::json!({
                        "reconcile": {
                            "class": finding.class.as_str(),
                            "detail": finding.detail,
                            "started_at": batch.started_at.to_string(),
                        }
                    })),
                })
                .await?;
            let text = describe(&outcome);
            journal.record_applied(&finding.key, &text)?;
            finding.applied = Some(text);
            applied += 1;
        }
        Ok(applied)
    }
}

struct Context {
    client: StatusClient,
    batch: Batch,
}

/// Why asking again might help.
enum Retry {
    Failed(String),
    Busy(Duration),
}

impl Context {
    /// Asks the provider, retrying failures with exponential backoff and
    /// waiting out a 429's `Retry-After`.
    async fn ask(&self, payment: &PaymentRecord) -> Said {
        let attempt = || async {
            match self.client.check(payment).await {
                CheckResult::Answer { observation, .. } => Ok(Said::Answer(observation)),
                CheckResult::Unknown(why) => Ok(Said::Missing(why)),
                CheckResult::Unsupported(why) => Ok(Said::NotAsked(why)),
                CheckResult::Busy { retry_after } | CheckResult::Deferred { retry_after } => {
                    Err(Retry::Busy(retry_after))
                }
                CheckResult::Failed(why) => Err(Retry::Failed(why)),
            }
        };
        let result = attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(10))
                    .with_max_times(self.batch.retries)
                    .with_jitter(),
            )
            .sleep(tokio::time::sleep)
            .adjust(|error, delay| match error {
                Retry::Busy(wait) => Some(*wait),
                Retry::Failed(_) => delay,
            })
            .await;
        match result {
            Ok(said) => said,
            Err(Retry::Failed(why)) => Said::Failed(why),
            Err(Retry::Busy(_)) => Said::Failed("the provider kept answering 429".into()),
        }
    }

    /// The observation `--apply` writes for `finding`: the provider is
    /// asked once more about the payment as the ledger holds it now (the
    /// answer must still say the same), or the report's row is used.
    async fn correction(
        &self,
        finding: &Finding,
        payment: Option<&PaymentRecord>,
        report: Option<&Report>,
    ) -> Option<Observation> {
        let observation = match report {
            Some(report) => {
                let row = report
                    .rows
                    .iter()
                    .find(|r| r.reference == finding.reference)?;
                row_observation(&finding.provider, &finding.account, row, Timestamp::now())
            }
            None => {
                let Said::Answer(observation) = self.ask(payment?).await else {
                    return None;
                };
                let mut observation = *observation;
                observation.source = Source::Reconcile;
                observation
            }
        };
        let same = Some(observation.status.target()) == finding.provider_status
            && observation.money == finding.provider_amount;
        same.then_some(observation)
    }
}

fn key_of(payment: &PaymentRecord) -> String {
    format!("payment:{}", payment.id.0)
}

async fn join(tasks: &mut JoinSet<Finding>) -> Option<Finding> {
    loop {
        match tasks.join_next().await? {
            Ok(finding) => return Some(finding),
            Err(err) => tracing::error!(error = %err, "a reconciliation task failed"),
        }
    }
}

fn record(
    journal: &mut Journal,
    findings: &mut Vec<Finding>,
    progress: &dyn Progress,
    finding: Finding,
) -> Result<(), OpsError> {
    // A failed check is not journaled: a resumed batch asks again.
    if finding.class != Class::CheckFailed {
        journal.record(&finding)?;
    }
    findings.push(finding);
    progress.advance(1);
    Ok(())
}

fn group_events(events: Vec<OutboxEvent>) -> HashMap<PaymentId, Vec<OutboxEvent>> {
    let mut grouped: HashMap<PaymentId, Vec<OutboxEvent>> = HashMap::new();
    for event in events {
        grouped.entry(event.payment_id).or_default().push(event);
    }
    grouped
}

fn row_observation(
    provider: &Provider,
    account: &Account,
    row: &ReportRow,
    observed_at: Timestamp,
) -> Observation {
    Observation {
        provider: *provider,
        account: account.clone(),
        reference: row.reference.clone(),
        provider_txn_id: row.provider_txn_id.clone(),
        status: row.status,
        money: Some(row.money),
        provider_status: row.provider_status.clone(),
        provider_time: None,
        observed_at,
        source: Source::Reconcile,
        test: false,
        refund_part: None,
    }
}

fn unknown_locally(spec: &ReportSpec, row: &ReportRow, observation: &Observation) -> Finding {
    Finding {
        key: format!("report:{}", row.line),
        class: Class::UnknownLocally,
        classes: vec![Class::UnknownLocally],
        payment_id: None,
        provider: spec.provider,
        account: spec.account.clone(),
        reference: row.reference.clone(),
        provider_transaction_id: row.provider_txn_id.as_ref().map(|t| t.as_str().to_owned()),
        ledger_status: None,
        ledger_amount: None,
        ledger_refunded: None,
        provider_status: Some(observation.status.target()),
        provider_said: Some(row.provider_status.clone()),
        provider_amount: Some(row.money),
        provider_refunded: refund_total(observation),
        checked: true,
        unpublished_events: 0,
        detail: format!(
            "line {} of the report: the ledger has no such payment",
            row.line
        ),
        fix: Fix::Apply,
        applied: None,
    }
}

fn refund_total(observation: &Observation) -> Option<Money> {
    match observation.status {
        ObservedStatus::Refunded { total } => total.or(observation.money),
        _ => None,
    }
}

fn money_text(money: Option<Money>) -> String {
    money.map_or_else(
        || "-".to_owned(),
        |m| format!("{} {}", m.to_decimal_string(), m.currency()),
    )
}

/// Compares one payment with what its provider said and its events.
fn judge(payment: &PaymentRecord, said: Said, events: &[OutboxEvent], batch: &Batch) -> Finding {
    let now = batch.started_at;
    let mut classes = BTreeSet::new();
    let mut details: Vec<String> = Vec::new();
    let mut fix = Fix::None;
    let ledger_amount = payment.expected.or(payment.paid);
    let mut finding = Finding {
        key: key_of(payment),
        class: Class::Ok,
        classes: Vec::new(),
        payment_id: Some(payment.id.0),
        provider: payment.provider,
        account: payment.account.clone(),
        reference: payment.reference.clone(),
        provider_transaction_id: payment
            .provider_txn_id
            .as_ref()
            .map(|t| t.as_str().to_owned()),
        ledger_status: Some(payment.status),
        ledger_amount,
        ledger_refunded: payment.refunded,
        provider_status: None,
        provider_said: None,
        provider_amount: None,
        provider_refunded: None,
        checked: true,
        unpublished_events: 0,
        detail: String::new(),
        fix: Fix::None,
        applied: None,
    };
    let mut provider_final = false;
    match said {
        Said::Answer(observation) => {
            let theirs = observation.status.target();
            provider_final = theirs.is_final();
            finding.provider_status = Some(theirs);
            finding.provider_said = Some(observation.provider_status.clone());
            finding.provider_amount = observation.money;
            finding.provider_refunded = refund_total(&observation);
            if let (Some(ours), Some(their_money)) = (ledger_amount, observation.money)
                && theirs != PaymentStatus::Refunded
            {
                if ours.currency() != their_money.currency() {
                    classes.insert(Class::CurrencyMismatch);
                    details.push(format!(
                        "the provider says {}, the ledger {}",
                        money_text(Some(their_money)),
                        money_text(Some(ours))
                    ));
                } else if ours.minor() != their_money.minor() {
                    classes.insert(Class::AmountMismatch);
                    details.push(format!(
                        "the provider says {}, the ledger {}",
                        money_text(Some(their_money)),
                        money_text(Some(ours))
                    ));
                }
            }
            let ours = payment.status;
            let disagree = if theirs.is_final() {
                theirs != ours
                    || (theirs == PaymentStatus::Refunded
                        && finding.provider_refunded.is_some()
                        && finding.provider_refunded != payment.refunded)
            } else {
                // The provider has not decided: a final ledger status is a
                // disagreement; not-final against not-final is not.
                ours.is_final()
            };
            if disagree {
                classes.insert(Class::StatusMismatch);
                if theirs == ours {
                    details.push(format!(
                        "refunded {} at the provider, {} in the ledger",
                        money_text(finding.provider_refunded),
                        money_text(payment.refunded)
                    ));
                } else {
                    details.push(format!(
                        "the provider says {theirs} ({:?}), the ledger {ours}",
                        observation.provider_status
                    ));
                }
            }
            let money_wrong = classes.contains(&Class::CurrencyMismatch)
                || classes.contains(&Class::AmountMismatch);
            if (disagree && provider_final) || money_wrong {
                fix = Fix::Apply;
            }
        }
        Said::Missing(why) => {
            classes.insert(Class::MissingAtProvider);
            details.push(why);
        }
        Said::NotAsked(why) => {
            finding.checked = false;
            details.push(format!("not asked: {why}"));
        }
        Said::Failed(why) => {
            classes.insert(Class::CheckFailed);
            details.push(format!("the provider could not be asked: {why}"));
        }
    }
    if let Some(flag) = payment.flag.as_ref().filter(|f| f.holds()) {
        // A flag is for a person: `--apply` would only be held by it, and
        // must never look as if it settled what the flag disputes.
        classes.insert(Class::Flagged);
        details.insert(
            0,
            format!(
                "flagged {}; an operator resolves it (paysettle payments resolve)",
                flag.summary()
            ),
        );
        if fix == Fix::Apply {
            fix = Fix::None;
        }
    }
    let age = now.duration_since(payment.created_at);
    if !payment.status.is_final()
        && !provider_final
        && age.as_secs() >= i64::try_from(batch.stuck_after_secs).unwrap_or(i64::MAX)
    {
        classes.insert(Class::StuckPending);
        details.push(format!(
            "{} for {}",
            payment.status,
            human_age(age.as_secs())
        ));
    }
    let grace = jiff::SignedDuration::from_secs(
        i64::try_from(batch.publish_grace_secs).unwrap_or(i64::MAX),
    );
    let unpublished = events
        .iter()
        .filter(|e| e.published_at.is_none() && now.duration_since(e.created_at) >= grace)
        .count();
    if unpublished > 0 {
        classes.insert(Class::UnpublishedEvent);
        details.push(format!(
            "{unpublished} event(s) not confirmed by the broker"
        ));
        if fix == Fix::None {
            fix = Fix::Publish;
        }
    }
    finding.unpublished_events = u32::try_from(unpublished).unwrap_or(u32::MAX);
    finding.classes = classes.into_iter().collect();
    finding.class = finding.classes.first().copied().unwrap_or(Class::Ok);
    finding.detail = details.join("; ");
    finding.fix = fix;
    finding
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s >= 86_400 => format!("{}d {}h", s / 86_400, (s % 86_400) / 3600),
        s if s >= 3600 => format!("{}h {}m", s / 3600, (s % 3600) / 60),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn describe(outcome: &ApplyOutcome) -> String {
    match outcome {
        ApplyOutcome::Applied {
            from, to, events, ..
        } => {
            format!("applied: {from} -> {to} ({} event(s))", events.len())
        }
        ApplyOutcome::Duplicate { .. } => "duplicate: already applied".into(),
        ApplyOutcome::Ignored { reason, detail, .. } => {
            format!("ignored ({reason}): {detail}; a person must decide")
        }
        ApplyOutcome::Mismatch { reason, event, .. } => match event {
            Some(_) => format!("flagged {reason}; finance told"),
            None => format!("flagged {reason} (already announced)"),
        },
        ApplyOutcome::Held { reason, .. } => {
            format!("held: the payment is flagged {reason}; an operator resolves it")
        }
        ApplyOutcome::Recheck { .. } => {
            "conflicts with the ledger's final status; the provider is asked once more".into()
        }
    }
}
