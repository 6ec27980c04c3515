//! The invariant checker: three accounts of one run compared.
//!
//! - the simulator's truth: every payment's status and amount at the
//!   provider, and every callback it sent with what became of it;
//! - the ledger: every payment, its history and its outbox, read after the
//!   processes stopped;
//! - finance: every event a consumer read from `<prefix>.finance`,
//!   deduplicated by `event_id`.
//!
//! With replicas (several workers on one PostgreSQL ledger) it also holds
//! the workers to the providers' limits: the simulator counts status checks
//! of one payment that overlapped, and logs when each check began.
//!
//! [`check`] is a pure function of a [`Snapshot`], so the soak can also feed
//! it doctored snapshots and prove it notices each kind of violation.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fmt;
use std::time::Duration;

use paysettle_core::PaymentStatus;
use paysettle_sim::model::{CallbackFate, CallbackRecord, PaymentView, Provider, Status};
use paysettle_store::{HistoryEntry, OutboxEvent, PaymentRecord};
use serde_json::Value;

use crate::finance::FinanceLog;

/// One payment as the ledger holds it.
#[derive(Debug, Clone)]
pub struct LedgerPayment {
    pub record: PaymentRecord,
    pub history: Vec<HistoryEntry>,
    pub events: Vec<OutboxEvent>,
}

/// What the harness did to the system, for the report.
#[derive(Debug, Clone, Copy, Default)]
pub struct ChaosCounts {
    pub worker_kills: u32,
    pub receiver_kills: u32,
    pub proxy_cuts: u32,
    pub broker_restarts: u32,
    /// Shop API registrations that had to be retried (the worker was down).
    pub registration_retries: u64,
    /// Kills of each worker, by replica (the first only, without replicas).
    pub replica_kills: [u32; 9],
}

/// The status checks the simulator saw, and the limit the workers were given.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    /// `work` processes in the run; the limits are judged when more than one.
    pub replicas: usize,
    /// `polling.{portmanat,paysys}.rate_per_sec`: for the whole deployment.
    pub rate_per_sec: f64,
    /// When each check began, from the simulator's start, oldest first.
    pub portmanat: Vec<Duration>,
    pub paysys: Vec<Duration>,
}

/// The window the checks' rate is judged over.
const RATE_WINDOW: Duration = Duration::from_secs(2);

impl Checks {
    /// The most checks one window may hold: the shared bucket allows one at
    /// once and the rate after; a request's way to the simulator may bunch a
    /// few (as tests/e2e/replicas.rs allows).
    pub fn allowed(&self) -> usize {
        (self.rate_per_sec * RATE_WINDOW.as_secs_f64()) as usize + 1 + 4
    }
}

/// The most checks that began within any `window` (`starts` oldest first).
pub fn busiest(starts: &[Duration], window: Duration) -> usize {
    let mut most = 0;
    let mut first = 0;
    for (last, at) in starts.iter().enumerate() {
        while *at - starts[first] >= window {
            first += 1;
        }
        most = most.max(last + 1 - first);
    }
    most
}

/// Everything the checker compares.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub truth: Vec<PaymentView>,
    pub sim_stats: paysettle_sim::Stats,
    pub checks: Checks,
    pub ledger: Vec<LedgerPayment>,
    pub integrity: Vec<String>,
    pub finance: FinanceLog,
    /// `x-death`-style reasons of the callbacks found in the dead-letter queue.
    pub dead_letters: Vec<String>,
    pub chaos: ChaosCounts,
    /// Failures the harness saw itself: refused registrations, panics in a
    /// process's log, a process that would not stop.
    pub harness: Vec<String>,
}

/// The three ways a run can be wrong, as the issue counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Something that happened is missing: a payment not settled, an accepted
    /// callback not in the history, an event finance never got.
    Lost,
    /// One transition announced under more than one event id.
    Duplicated,
    /// Something said that is not so: a wrong status or amount, an event for
    /// something that did not happen, a forged callback accepted.
    Wrong,
    /// A provider's limit broken by the replicas together: two status checks
    /// of one payment at once, or more checks than the configured rate.
    Limit,
}

#[derive(Debug, Clone)]
pub struct Violation {
    pub kind: Kind,
    pub subject: String,
    pub what: String,
}

/// The checker's verdict and the run's figures.
#[derive(Debug, Clone)]
pub struct Report {
    pub violations: Vec<Violation>,
    counts: Vec<(String, String)>,
    replicas: usize,
}

impl Report {
    pub fn count(&self, kind: Kind) -> usize {
        self.violations.iter().filter(|v| v.kind == kind).count()
    }

    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "== soak: the checker's counts ==")?;
        let width = self.counts.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
        for (label, value) in &self.counts {
            writeln!(f, "  {label:<width$}  {value}")?;
        }
        writeln!(
            f,
            "  {:<width$}  lost {}, duplicated {}, wrong {}{}",
            "VIOLATIONS",
            self.count(Kind::Lost),
            self.count(Kind::Duplicated),
            self.count(Kind::Wrong),
            if self.replicas > 1 {
                format!(", limits broken {}", self.count(Kind::Limit))
            } else {
                String::new()
            },
        )?;
        // A broken run can produce thousands; the first ones say enough.
        for v in self.violations.iter().take(60) {
            writeln!(f, "  {:?} {}: {}", v.kind, v.subject, v.what)?;
        }
        if self.violations.len() > 60 {
            writeln!(f, "  … and {} more", self.violations.len() - 60)?;
        }
        Ok(())
    }
}

/// The ledger's name for a status the simulator holds, as the provider's
/// status API or callback can state it: Portmanat's `/check` has one code
/// (-1) for a decline and a cancel, so paysettle can only say "failed".
fn ledger_status(provider: Provider, status: Status) -> PaymentStatus {
    match (provider, status) {
        (_, Status::Created) => PaymentStatus::Created,
        (_, Status::Pending) => PaymentStatus::Pending,
        (_, Status::Succeeded) => PaymentStatus::Succeeded,
        (_, Status::Failed) => PaymentStatus::Failed,
        (Provider::Portmanat, Status::Canceled) => PaymentStatus::Failed,
        (_, Status::Canceled) => PaymentStatus::Canceled,
        (_, Status::Refunded) => PaymentStatus::Refunded,
    }
}

pub fn core_provider(provider: Provider) -> paysettle_core::Provider {
    match provider {
        Provider::Portmanat => paysettle_core::Provider::Portmanat,
        Provider::Paysys => paysettle_core::Provider::Paysys,
        Provider::Plutu => paysettle_core::Provider::Plutu,
    }
}

/// The receiver took it: a 2xx, or the redirect a browser return gets.
fn accepted(callback: &CallbackRecord) -> bool {
    matches!(callback.fate, CallbackFate::Delivered { http_status } if (200..400).contains(&http_status))
}

/// Sent, but whether it arrived is unknown: the receiver died (or the
/// connection did) before it answered.
fn unanswered(callback: &CallbackRecord) -> bool {
    matches!(callback.fate, CallbackFate::Failed { .. })
}

/// Which statuses the ledger may honestly hold for a payment at the end, given
/// what the provider knows and which evidence reached paysettle.
///
/// - Portmanat and PaySys can always be asked: the truth, exactly. A PaySys
///   refund is the exception: nothing polls a succeeded payment, so unless the
///   refund notification was accepted, "succeeded" is still honest (a late
///   "completed" notification makes a check that may see the refund).
/// - Plutu has no status API: its genuine callback is the only evidence. If one
///   was accepted, the truth; if none was ever sent (lost on purpose), stale; if
///   one went out but got no answer (the receiver was killed), either.
pub fn acceptable(view: &PaymentView) -> Vec<PaymentStatus> {
    let truth = ledger_status(view.provider, view.status);
    let genuine_final = |status: Status| {
        view.callbacks
            .iter()
            .filter(move |c| !c.wrongly_signed && c.status == status)
    };
    match view.provider {
        Provider::Portmanat => vec![truth],
        Provider::Paysys => {
            if view.status == Status::Refunded && !genuine_final(Status::Refunded).any(accepted) {
                vec![PaymentStatus::Refunded, PaymentStatus::Succeeded]
            } else {
                vec![truth]
            }
        }
        Provider::Plutu => {
            if genuine_final(view.status).any(accepted) {
                vec![truth]
            } else if genuine_final(view.status).any(unanswered) {
                vec![truth, PaymentStatus::Stale]
            } else {
                vec![PaymentStatus::Stale]
            }
        }
    }
}

/// What a history row's callback claimed, read from the raw request the
/// ledger kept (PaySys's numeric `status`, Plutu's `approved`/`canceled`).
fn claimed_by_callback(provider: Provider, row: &HistoryEntry) -> Option<Status> {
    let request = row.raw.as_ref()?.get("request")?;
    match provider {
        Provider::Paysys => {
            let status = request.get("body")?.get("status")?;
            let code = status
                .as_i64()
                .or_else(|| status.as_str().and_then(|s| s.parse().ok()))?;
            Some(match code {
                0 => Status::Created,
                1 => Status::Pending,
                2 => Status::Succeeded,
                3 => Status::Canceled,
                6 => Status::Refunded,
                _ => Status::Failed,
            })
        }
        Provider::Plutu => {
            let query = request.get("query")?.as_array()?;
            let flag = |name: &str| {
                query.iter().any(|pair| {
                    pair.get(0).and_then(Value::as_str) == Some(name)
                        && pair.get(1).and_then(Value::as_str) == Some("1")
                })
            };
            Some(if flag("approved") {
                Status::Succeeded
            } else if flag("canceled") {
                Status::Canceled
            } else {
                Status::Failed
            })
        }
        Provider::Portmanat => None,
    }
}

/// The event types the truth allows for a payment (stale is always honest:
/// it says only that no answer came in time).
fn allowed_event(view: &PaymentView, event_type: &str) -> bool {
    let truth = ledger_status(view.provider, view.status);
    match event_type {
        "payment.stale" => true,
        "payment.succeeded" => {
            matches!(truth, PaymentStatus::Succeeded | PaymentStatus::Refunded)
        }
        "payment.refunded" => truth == PaymentStatus::Refunded,
        "payment.failed" => truth == PaymentStatus::Failed,
        "payment.canceled" => truth == PaymentStatus::Canceled,
        _ => false,
    }
}

struct Checker<'a> {
    snapshot: &'a Snapshot,
    /// Finance's events by provider and reference.
    finance: BTreeMap<(&'a str, &'a str), Vec<&'a Value>>,
    violations: Vec<Violation>,
}

impl Checker<'_> {
    fn flag(&mut self, kind: Kind, subject: impl Into<String>, what: impl Into<String>) {
        self.violations.push(Violation {
            kind,
            subject: subject.into(),
            what: what.into(),
        });
    }

    fn payment(&mut self, view: &PaymentView, ledger: Option<&LedgerPayment>) {
        let subject = format!("{}/{}", view.provider, view.reference);
        if !view.status.is_final()
            || (view.planned_outcome == paysettle_sim::Outcome::Refund
                && view.status == Status::Succeeded)
        {
            self.flag(
                Kind::Lost,
                &subject,
                format!(
                    "the simulator never finished it ({:?}): the harness stopped too early",
                    view.status
                ),
            );
            return;
        }
        let Some(ledger) = ledger else {
            self.flag(Kind::Lost, &subject, "not in the ledger");
            return;
        };
        let record = &ledger.record;

        // Status.
        let allowed = acceptable(view);
        if !allowed.contains(&record.status) {
            // A final status the evidence does not support was made up; a
            // payment left open (or stale though the answer was there) was
            // not settled.
            let kind = if record.status.is_final() {
                Kind::Wrong
            } else {
                Kind::Lost
            };
            let names: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
            self.flag(
                kind,
                &subject,
                format!(
                    "ledger says {}, the provider's truth is {:?} (acceptable: {})",
                    record.status,
                    view.status,
                    names.join(" or ")
                ),
            );
        }

        // Amounts.
        let code = view.currency.code();
        let same = |money: Option<paysettle_core::Money>, minor: i64| {
            money.is_none_or(|m| m.minor() == minor && m.currency().code() == code)
        };
        if record.expected.is_none() {
            self.flag(Kind::Lost, &subject, "the shop's registration is missing");
        }
        if !same(record.expected, view.amount_minor) || !same(record.paid, view.amount_minor) {
            self.flag(
                Kind::Wrong,
                &subject,
                format!(
                    "amount: ledger expected {:?} paid {:?}, provider {} {code}",
                    record.expected, record.paid, view.amount_minor
                ),
            );
        }
        let paid = matches!(
            record.status,
            PaymentStatus::Succeeded | PaymentStatus::Refunded
        );
        if paid && record.paid.is_none() {
            self.flag(
                Kind::Wrong,
                &subject,
                format!("{} with no amount paid", record.status),
            );
        }
        // A refunded total nobody reported is `None`: unknown is not wrong
        // (nothing was booked); a total the ledger states must be right.
        if record.status == PaymentStatus::Refunded
            && record.refunded.is_some()
            && !same(record.refunded, view.refunded_minor)
        {
            self.flag(
                Kind::Wrong,
                &subject,
                format!(
                    "refund: ledger {:?}, provider {} {code}",
                    record.refunded, view.refunded_minor
                ),
            );
        }
        if let Some(mismatch) = &record.mismatch {
            self.flag(
                Kind::Wrong,
                &subject,
                format!("flagged as a mismatch: {mismatch}"),
            );
        }

        self.callbacks(view, ledger, &subject);
        self.events(view, ledger, &subject);
    }

    /// Accepted callbacks are in the history; nothing forged or unsent is.
    fn callbacks(&mut self, view: &PaymentView, ledger: &LedgerPayment, subject: &str) {
        for callback in &view.callbacks {
            if let CallbackFate::Delivered { http_status } = callback.fate {
                if callback.wrongly_signed && accepted(callback) {
                    self.flag(
                        Kind::Wrong,
                        subject,
                        format!(
                            "a {} callback claiming {:?} was accepted (HTTP {http_status})",
                            if callback.forged {
                                "forged"
                            } else {
                                "wrongly signed"
                            },
                            callback.status
                        ),
                    );
                }
                if !callback.wrongly_signed && !accepted(callback) {
                    self.flag(
                        Kind::Lost,
                        subject,
                        format!(
                            "a genuine callback claiming {:?} was refused (HTTP {http_status})",
                            callback.status
                        ),
                    );
                }
            }
        }
        if view.provider == Provider::Portmanat {
            // The browser return is only a hint: it makes a check, and the
            // check's answer is the evidence. Nothing of it is in the history.
            return;
        }
        let recorded: Vec<Option<Status>> = ledger
            .history
            .iter()
            .filter(|row| row.source == "callback")
            .map(|row| claimed_by_callback(view.provider, row))
            .collect();
        let accepted_statuses: HashSet<Status> = view
            .callbacks
            .iter()
            .filter(|c| !c.wrongly_signed && accepted(c))
            .map(|c| c.status)
            .collect();
        for status in accepted_statuses {
            if !recorded.contains(&Some(status)) {
                self.flag(
                    Kind::Lost,
                    subject,
                    format!(
                        "an accepted callback claiming {status:?} is not in the ledger's history"
                    ),
                );
            }
        }
        let genuine_sent: HashSet<Status> = view
            .callbacks
            .iter()
            .filter(|c| !c.wrongly_signed && (accepted(c) || unanswered(c)))
            .map(|c| c.status)
            .collect();
        for claimed in recorded {
            match claimed {
                None => self.flag(
                    Kind::Wrong,
                    subject,
                    "a callback history row whose raw request says nothing readable",
                ),
                Some(status) if !genuine_sent.contains(&status) => self.flag(
                    Kind::Wrong,
                    subject,
                    format!(
                        "the history holds a callback claiming {status:?} that the provider \
                         never sent (forged or wrongly signed)"
                    ),
                ),
                Some(_) => {}
            }
        }
    }

    /// Each settled transition announced once, as it happened.
    fn events(&mut self, view: &PaymentView, ledger: &LedgerPayment, subject: &str) {
        let finance = self
            .finance
            .get(&(view.provider.name(), view.reference.as_str()))
            .cloned()
            .unwrap_or_default();
        let outbox_ids: BTreeSet<&str> =
            ledger.events.iter().map(|e| e.event_id.as_str()).collect();

        for event in &ledger.events {
            if event.published_at.is_none() {
                self.flag(
                    Kind::Lost,
                    subject,
                    format!(
                        "{} {} was never published",
                        event.event_type, event.event_id
                    ),
                );
                continue;
            }
            match self.snapshot.finance.events.get(&event.event_id) {
                None => self.flag(
                    Kind::Lost,
                    subject,
                    format!(
                        "{} {} was published but finance never read it",
                        event.event_type, event.event_id
                    ),
                ),
                Some(read) => {
                    let written: Value = serde_json::from_str(&event.body).unwrap_or(Value::Null);
                    if *read != written {
                        self.flag(
                            Kind::Wrong,
                            subject,
                            format!("finance read {} differently from what the ledger wrote: {read} vs {written}", event.event_id),
                        );
                    }
                }
            }
        }

        // One event id per transition: per ledger version, and per type (a
        // payment enters each announced status at most once).
        let mut ids_by_version: BTreeMap<i64, BTreeSet<&str>> = BTreeMap::new();
        let mut ids_by_type: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for event in &finance {
            let id = event["event_id"].as_str().unwrap_or_default();
            ids_by_version
                .entry(event["ledger_version"].as_i64().unwrap_or(-1))
                .or_default()
                .insert(id);
            ids_by_type
                .entry(event["type"].as_str().unwrap_or_default())
                .or_default()
                .insert(id);
        }
        for event in &ledger.events {
            let body: Value = serde_json::from_str(&event.body).unwrap_or(Value::Null);
            ids_by_version
                .entry(body["ledger_version"].as_i64().unwrap_or(-1))
                .or_default()
                .insert(event.event_id.as_str());
            ids_by_type
                .entry(event.event_type.as_str())
                .or_default()
                .insert(event.event_id.as_str());
        }
        for (version, ids) in &ids_by_version {
            if ids.len() > 1 {
                self.flag(
                    Kind::Duplicated,
                    subject,
                    format!(
                        "ledger version {version} announced under {} event ids: {ids:?}",
                        ids.len()
                    ),
                );
            }
        }
        for (event_type, ids) in &ids_by_type {
            // A refund may be announced in steps: partial refunds, or a
            // refund whose amount nobody reported first (amount null) and
            // its amount once a provider says it. Each step is its own
            // ledger version (checked above); their amounts add up to what
            // was refunded (checked below).
            if *event_type == "payment.refunded" {
                continue;
            }
            if ids.len() > 1 {
                self.flag(
                    Kind::Duplicated,
                    subject,
                    format!(
                        "{event_type} announced under {} event ids: {ids:?}",
                        ids.len()
                    ),
                );
            }
        }

        let refunded: i64 = finance
            .iter()
            .filter(|e| e["type"] == "payment.refunded")
            .filter_map(|e| e["amount"].as_i64())
            .sum();
        if ledger.record.refunded.is_some() && refunded != view.refunded_minor {
            self.flag(
                Kind::Wrong,
                subject,
                format!(
                    "the refund events add up to {refunded}, the provider refunded {}",
                    view.refunded_minor
                ),
            );
        }

        // Nothing announced that did not happen.
        let mut last: Option<(i64, &str)> = None;
        for event in &finance {
            let id = event["event_id"].as_str().unwrap_or_default();
            let event_type = event["type"].as_str().unwrap_or_default();
            if !outbox_ids.contains(id) {
                self.flag(
                    Kind::Wrong,
                    subject,
                    format!("finance read {event_type} {id}, which the ledger never wrote"),
                );
            }
            if !allowed_event(view, event_type) {
                self.flag(
                    Kind::Wrong,
                    subject,
                    format!(
                        "finance read {event_type} {id}, but the provider's truth is {:?}",
                        view.status
                    ),
                );
            }
            let want = if event_type == "payment.refunded" {
                view.refunded_minor
            } else {
                view.amount_minor
            };
            if event["amount"].as_i64().is_some_and(|a| a != want)
                || event["currency"]
                    .as_str()
                    .is_some_and(|c| c != view.currency.code())
            {
                self.flag(
                    Kind::Wrong,
                    subject,
                    format!(
                        "{event_type} {id} says {} {}, the provider {want} {}",
                        event["amount"],
                        event["currency"],
                        view.currency.code()
                    ),
                );
            }
            let version = event["ledger_version"].as_i64().unwrap_or(-1);
            if last.is_none_or(|(v, _)| version > v) {
                last = Some((version, event_type));
            }
        }
        let status = ledger.record.status;
        if status.is_announced() {
            let want = format!("payment.{status}");
            if last.map(|(_, t)| t) != Some(want.as_str()) {
                self.flag(
                    Kind::Lost,
                    subject,
                    format!(
                        "the ledger says {status} but finance's last event is {:?}",
                        last.map(|(_, t)| t)
                    ),
                );
            }
        } else if !finance.is_empty() {
            self.flag(
                Kind::Wrong,
                subject,
                format!("finance read events for a payment still {status}"),
            );
        }
    }
}

/// Compares the three accounts and counts everything.
pub fn check(snapshot: &Snapshot) -> Report {
    let mut finance: BTreeMap<(&str, &str), Vec<&Value>> = BTreeMap::new();
    for event in snapshot.finance.events.values() {
        let provider = event["provider"].as_str().unwrap_or_default();
        let reference = event["reference"].as_str().unwrap_or_default();
        finance
            .entry((provider, reference))
            .or_default()
            .push(event);
    }
    let mut checker = Checker {
        snapshot,
        finance,
        violations: Vec::new(),
    };
    let mut ledger: BTreeMap<(paysettle_core::Provider, &str), &LedgerPayment> = BTreeMap::new();
    for payment in &snapshot.ledger {
        ledger.insert(
            (payment.record.provider, payment.record.reference.as_str()),
            payment,
        );
    }
    let mut truth_keys = BTreeSet::new();
    for view in &snapshot.truth {
        let key = (core_provider(view.provider), view.reference.as_str());
        truth_keys.insert(key);
        checker.payment(view, ledger.get(&key).copied());
    }
    for (key, payment) in &ledger {
        if !truth_keys.contains(key) {
            checker.flag(
                Kind::Wrong,
                format!("{}/{}", key.0, key.1),
                format!(
                    "the ledger holds a payment ({}) the provider never had",
                    payment.record.status
                ),
            );
        }
    }
    for event in snapshot.finance.events.values() {
        let provider = event["provider"].as_str().and_then(|p| p.parse().ok());
        let reference = event["reference"].as_str().unwrap_or_default();
        if !provider.is_some_and(|p| ledger.contains_key(&(p, reference))) {
            checker.flag(
                Kind::Wrong,
                format!("{}/{reference}", event["provider"]),
                format!(
                    "finance read {} for a payment the ledger does not hold",
                    event["event_id"]
                ),
            );
        }
    }
    for id in &snapshot.finance.id_mismatches {
        checker.flag(
            Kind::Wrong,
            "finance",
            format!("message_id is not the event_id: {id}"),
        );
    }
    for problem in &snapshot.integrity {
        checker.flag(Kind::Wrong, "ledger", format!("integrity: {problem}"));
    }
    for problem in &snapshot.harness {
        checker.flag(Kind::Wrong, "harness", problem.clone());
    }
    if snapshot.checks.replicas > 1 {
        limits(&mut checker);
    }
    let counts = figures(snapshot);
    let mut violations = checker.violations;
    violations.sort_by(|a, b| (a.kind, &a.subject).cmp(&(b.kind, &b.subject)));
    Report {
        violations,
        counts,
        replicas: snapshot.checks.replicas,
    }
}

/// The replicas together kept each provider's limits: never two checks of one
/// payment at once, never faster than the configured rate.
fn limits(checker: &mut Checker<'_>) {
    let snapshot = checker.snapshot;
    let stats = &snapshot.sim_stats;
    let checks = &snapshot.checks;
    for (provider, overlapping, starts) in [
        (
            Provider::Portmanat,
            stats.portmanat.overlapping_checks,
            &checks.portmanat,
        ),
        (
            Provider::Paysys,
            stats.paysys.overlapping_checks,
            &checks.paysys,
        ),
    ] {
        if overlapping > 0 {
            checker.flag(
                Kind::Limit,
                provider.to_string(),
                format!(
                    "{overlapping} status checks began while another check of the same payment was \
                     being answered (the simulator's log names the payments)"
                ),
            );
        }
        let most = busiest(starts, RATE_WINDOW);
        if most > checks.allowed() {
            checker.flag(
                Kind::Limit,
                provider.to_string(),
                format!(
                    "{most} status checks began within {RATE_WINDOW:?}; {} a second allows {}",
                    checks.rate_per_sec,
                    checks.allowed()
                ),
            );
        }
    }
}

fn figures(snapshot: &Snapshot) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut push = |label: &str, value: String| rows.push((label.to_owned(), value));

    push("payments", snapshot.truth.len().to_string());
    for provider in Provider::ALL {
        let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
        for payment in snapshot
            .ledger
            .iter()
            .filter(|p| p.record.provider == core_provider(provider))
        {
            *by_status
                .entry(payment.record.status.to_string())
                .or_default() += 1;
        }
        let total: usize = by_status.values().sum();
        let parts: Vec<String> = by_status.iter().map(|(s, n)| format!("{s} {n}")).collect();
        push(
            &format!("  {provider} (ledger)"),
            format!("{total}: {}", parts.join(", ")),
        );
    }

    let all: Vec<&CallbackRecord> = snapshot.truth.iter().flat_map(|p| &p.callbacks).collect();
    let count = |f: &dyn Fn(&CallbackRecord) -> bool| all.iter().filter(|c| f(c)).count();
    push("callbacks planned", all.len().to_string());
    push(
        "  sent",
        count(&|c| {
            matches!(
                c.fate,
                CallbackFate::Delivered { .. } | CallbackFate::Failed { .. }
            )
        })
        .to_string(),
    );
    push("  accepted (2xx/3xx)", count(&|c| accepted(c)).to_string());
    push(
        "  rejected",
        count(&|c| matches!(c.fate, CallbackFate::Delivered { http_status } if http_status >= 400))
            .to_string(),
    );
    push(
        "  unanswered (receiver down)",
        count(&|c| unanswered(c)).to_string(),
    );
    push(
        "  lost on purpose",
        count(&|c| c.fate == CallbackFate::Lost).to_string(),
    );
    push("  duplicate copies", count(&|c| c.duplicate).to_string());
    push("  delayed", count(&|c| c.delayed_ms > 0).to_string());
    push("  out of order", count(&|c| c.out_of_order).to_string());
    push(
        "  wrongly signed sent / rejected / accepted",
        format!(
            "{} / {} / {}",
            count(&|c| c.wrongly_signed && !c.forged && c.sent_at.is_some()),
            count(&|c| c.wrongly_signed
                && !c.forged
                && matches!(c.fate, CallbackFate::Delivered { http_status } if http_status >= 400)),
            count(&|c| c.wrongly_signed && !c.forged && accepted(c)),
        ),
    );
    push(
        "  forged sent / rejected / accepted",
        format!(
            "{} / {} / {}",
            count(&|c| c.forged && c.sent_at.is_some()),
            count(&|c| c.forged
                && matches!(c.fate, CallbackFate::Delivered { http_status } if http_status >= 400)),
            count(&|c| c.forged && accepted(c)),
        ),
    );
    let stats = &snapshot.sim_stats;
    let api = [stats.portmanat, stats.paysys, stats.plutu];
    push(
        "provider API requests / 500 / 429 / garbage / timeouts",
        format!(
            "{} / {} / {} / {} / {}",
            api.iter().map(|s| s.requests).sum::<u64>(),
            api.iter().map(|s| s.http_500).sum::<u64>(),
            api.iter().map(|s| s.too_many_requests).sum::<u64>(),
            api.iter().map(|s| s.garbage).sum::<u64>(),
            api.iter().map(|s| s.timeouts).sum::<u64>(),
        ),
    );
    let checks = &snapshot.checks;
    push(
        "status checks portmanat / paysys",
        format!("{} / {}", checks.portmanat.len(), checks.paysys.len()),
    );
    push(
        "  overlapping (one payment asked twice at once)",
        format!(
            "{} / {}",
            stats.portmanat.overlapping_checks, stats.paysys.overlapping_checks
        ),
    );
    push(
        "  busiest window",
        format!(
            "{} / {} began within {RATE_WINDOW:?} (rate {} a second: {} allowed)",
            busiest(&checks.portmanat, RATE_WINDOW),
            busiest(&checks.paysys, RATE_WINDOW),
            checks.rate_per_sec,
            checks.allowed(),
        ),
    );
    let chaos = snapshot.chaos;
    push("workers (replicas)", checks.replicas.to_string());
    let by_replica = chaos.replica_kills[..checks.replicas.clamp(1, 9)]
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    push(
        "worker kills (SIGKILL)",
        if checks.replicas > 1 {
            format!("{} (by replica: {by_replica})", chaos.worker_kills)
        } else {
            chaos.worker_kills.to_string()
        },
    );
    push("receiver kills (SIGKILL)", chaos.receiver_kills.to_string());
    push("broker connection cuts", chaos.proxy_cuts.to_string());
    push("broker restarts", chaos.broker_restarts.to_string());
    push(
        "registrations retried",
        chaos.registration_retries.to_string(),
    );
    let outbox: usize = snapshot.ledger.iter().map(|p| p.events.len()).sum();
    push("events in the ledger's outbox", outbox.to_string());
    push(
        "finance deliveries",
        snapshot.finance.deliveries.to_string(),
    );
    push(
        "finance distinct events",
        snapshot.finance.events.len().to_string(),
    );
    push(
        "finance duplicates delivered",
        snapshot.finance.duplicate_deliveries.to_string(),
    );
    push(
        "dead-lettered callbacks",
        snapshot.dead_letters.len().to_string(),
    );
    if !snapshot.dead_letters.is_empty() {
        let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
        for reason in &snapshot.dead_letters {
            *reasons.entry(reason.as_str()).or_default() += 1;
        }
        push("  dead-letter reasons", format!("{reasons:?}"));
    }
    rows
}
