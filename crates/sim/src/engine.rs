//! The simulator's core, shared by the HTTP server, the control API, the
//! scheduler and [`crate::SimHandle`]: payments, the scenario in force, the
//! seeded RNG, the clock and the event queue, and the logic that moves a
//! payment along (create, resolve, refund, cancel, send its callbacks).
//!
//! Every path that creates or changes a payment — a provider endpoint, the
//! control API, the autopilot, a simulated payment page — goes through the
//! same functions here, so they behave alike.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::Method;
use jiff::Timestamp;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::callback::{self, HttpClient, Outbound};
use crate::config::{CallbackMethod, NumberStyle, RefundAmount, SimConfig};
use crate::error::SimError;
use crate::model::{
    CallbackFate, CallbackKind, CallbackRecord, Details, Outcome, PartnerNotifyView, Payment,
    PaymentView, PlutuGateway, Provider, Status, Store,
};
use crate::money::Currency;
use crate::scenario::{Fault, Scenario, ScenarioPatch};
use crate::schedule::{Batch, Clock, Event, Queue};
use crate::{form, paysys, plutu};

/// Payments and the events due for them, under one lock so a change and the
/// events it schedules are never seen apart.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub store: Store,
    pub queue: Queue,
}

#[derive(Debug, Clone)]
struct Scenarios {
    global: Scenario,
    patches: [ScenarioPatch; 3],
}

/// Counters of one provider's API traffic and the faults injected into it.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    http_500: AtomicU64,
    timeouts: AtomicU64,
    garbage: AtomicU64,
    too_many_requests: AtomicU64,
    delayed: AtomicU64,
    delayed_micros: AtomicU64,
    overlapping_checks: AtomicU64,
}

/// The status checks in flight, by payment, and when each began: what a
/// test of several workers needs to see that two never asked about one
/// payment at once, and that together they kept the provider's rate.
#[derive(Debug, Default)]
struct CheckWatch {
    in_flight: Mutex<std::collections::HashMap<(Provider, String), u32>>,
    /// Offsets from the simulator's start, per provider, oldest first
    /// (the last [`CHECK_LOG`] only).
    starts: Mutex<[std::collections::VecDeque<Duration>; 3]>,
}

/// Status check starts kept per provider.
const CHECK_LOG: usize = 100_000;

/// A status check in flight; dropping it ends it.
pub(crate) struct CheckGuard<'a> {
    engine: &'a Engine,
    key: (Provider, String),
}

impl Drop for CheckGuard<'_> {
    fn drop(&mut self) {
        let mut in_flight = lock(&self.engine.checks.in_flight);
        if let Some(n) = in_flight.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.key);
            }
        }
    }
}

/// What one provider's API has answered so far, so a test can see that an
/// injected fault really happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ProviderStats {
    /// Provider API requests received (payment pages and control excluded).
    pub requests: u64,
    /// Answered with an injected 500.
    pub http_500: u64,
    /// Held and dropped without an answer.
    pub timeouts: u64,
    /// Answered with an injected unparseable body.
    pub garbage: u64,
    /// Answered with an injected 429.
    pub too_many_requests: u64,
    /// Answered after an injected non-zero latency.
    pub delayed: u64,
    /// The real time those waits took, summed, in microseconds. A timer is
    /// never early and usually a little late (tokio's rounds up to the next
    /// millisecond tick), so a benchmark divides by this, not by the set
    /// latency, to know what latency the provider really had.
    #[serde(default)]
    pub delayed_micros: u64,
    /// Status checks that arrived while another check of the same payment
    /// was still being answered (two workers asking at once).
    #[serde(default)]
    pub overlapping_checks: u64,
}

/// [`ProviderStats`] of every provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Stats {
    /// Portmanat's API.
    pub portmanat: ProviderStats,
    /// PaySys's gateway.
    pub paysys: ProviderStats,
    /// Plutu's confirm endpoints.
    pub plutu: ProviderStats,
}

/// How a provider API request will misbehave, drawn before it is handled.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestPlan {
    pub latency: Duration,
    pub fault: Option<Fault>,
    pub retry_after_secs: u64,
    pub timeout_hold: Duration,
}

/// A validated request to create a payment.
#[derive(Debug, Clone)]
pub(crate) struct Creation {
    pub provider: Provider,
    pub reference: String,
    pub amount_minor: i64,
    pub currency: Currency,
    pub amount_text: String,
    pub gateway: Option<PlutuGateway>,
    pub callback_url: String,
    pub return_url: Option<String>,
    pub outcome: Option<Outcome>,
    pub pending: Option<Duration>,
    pub card_masked: Option<String>,
    /// Portmanat: the service answers `/check` in test mode for this payment
    /// (`None`: as the scenario says).
    pub test_service: Option<bool>,
}

/// `partner.notify` as a test asks for it (PaySys card registration result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartnerNotifyRequest {
    /// `SUCCESS` or `ERROR`.
    pub stat: PartnerNotifyStat,
    /// The card id; drawn when absent.
    #[serde(default)]
    pub card_id: Option<String>,
    /// SUCCESS: the card token; drawn when absent.
    #[serde(default)]
    pub token: Option<String>,
    /// SUCCESS: masked card number; `222222******2222` when absent.
    #[serde(default)]
    pub pan: Option<String>,
    /// ERROR: the error code; `-34000` when absent.
    #[serde(default)]
    pub code: Option<String>,
    /// ERROR: the error message.
    #[serde(default)]
    pub message: Option<String>,
}

/// Result of a PaySys card registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum PartnerNotifyStat {
    /// Registered: id, token and pan follow.
    Success,
    /// Not registered: code and message follow.
    Error,
}

pub(crate) struct Engine {
    pub config: SimConfig,
    pub base_url: String,
    scenarios: RwLock<Scenarios>,
    state: Mutex<State>,
    rng: Mutex<StdRng>,
    pub clock: Clock,
    wake: Notify,
    progress: watch::Sender<u64>,
    client: HttpClient,
    counters: [Counters; 3],
    checks: CheckWatch,
    started: std::time::Instant,
    pub cancel: CancellationToken,
    pub tasks: TaskTracker,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves plain data behind, still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Seeds a payment's own RNG from the run's seed and what identifies the
/// payment, so its fate does not depend on the order of other requests.
fn payment_rng(seed: u64, provider: Provider, reference: &str) -> StdRng {
    let mut hasher = Sha256::new();
    hasher.update(seed.to_le_bytes());
    hasher.update(provider.name().as_bytes());
    hasher.update([0]);
    hasher.update(reference.as_bytes());
    let digest = hasher.finalize();
    let mut seed_bytes = [0u8; 32];
    seed_bytes.copy_from_slice(&digest);
    StdRng::from_seed(seed_bytes)
}

fn random_alnum<R: Rng + ?Sized>(rng: &mut R, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

pub(crate) fn random_hex<R: Rng + ?Sized>(rng: &mut R, bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rng.random()).collect();
    hex::encode(raw)
}

fn random_digits<R: Rng + ?Sized>(rng: &mut R, len: usize) -> String {
    (0..len)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

impl Engine {
    pub fn new(config: SimConfig, base_url: String) -> Engine {
        let scenarios = Scenarios {
            global: config.scenario,
            patches: [
                config.portmanat.scenario,
                config.paysys.scenario,
                config.plutu.scenario,
            ],
        };
        let rng = StdRng::seed_from_u64(config.seed);
        Engine {
            base_url,
            scenarios: RwLock::new(scenarios),
            state: Mutex::new(State::default()),
            rng: Mutex::new(rng),
            clock: Clock::new(),
            wake: Notify::new(),
            progress: watch::channel(0).0,
            client: callback::client(),
            counters: Default::default(),
            checks: CheckWatch::default(),
            started: std::time::Instant::now(),
            cancel: CancellationToken::new(),
            tasks: TaskTracker::new(),
            config,
        }
    }

    pub fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Tells the scheduler that events were queued outside `create`/`pay`.
    pub fn wake_scheduler(&self) {
        self.wake.notify_one();
    }

    // ----- scenario --------------------------------------------------------

    /// The scenario a provider follows now.
    pub fn scenario(&self, provider: Provider) -> Scenario {
        let scenarios = self
            .scenarios
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        scenarios
            .global
            .patched(&scenarios.patches[provider.index()])
    }

    /// The scenario providers follow where their own patch says nothing.
    pub fn global_scenario(&self) -> Scenario {
        self.scenarios
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .global
    }

    /// Replaces sections of the global scenario (no provider) or of one
    /// provider's; refused whole if any resulting scenario is invalid.
    pub fn set_scenario(
        &self,
        provider: Option<Provider>,
        patch: &ScenarioPatch,
    ) -> Result<(), SimError> {
        let mut scenarios = self
            .scenarios
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut next = scenarios.clone();
        match provider {
            None => next.global = next.global.patched(patch),
            Some(provider) => {
                let slot = &mut next.patches[provider.index()];
                *slot = slot.merged(patch);
            }
        }
        for provider in Provider::ALL {
            next.global
                .patched(&next.patches[provider.index()])
                .validate()
                .map_err(|msg| SimError::Config(format!("{provider}: {msg}")))?;
        }
        *scenarios = next;
        info!(provider = provider.map(Provider::name), "scenario changed");
        Ok(())
    }

    /// Back to the configured scenario.
    pub fn reset_scenario(&self) {
        let mut scenarios = self
            .scenarios
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        *scenarios = Scenarios {
            global: self.config.scenario,
            patches: [
                self.config.portmanat.scenario,
                self.config.paysys.scenario,
                self.config.plutu.scenario,
            ],
        };
        info!("scenario reset to the configured one");
    }

    // ----- draws from the shared RNG ---------------------------------------

    /// Draws latency and fault for one provider API request and counts them.
    /// Counts the real time an injected latency took.
    pub(crate) fn record_delay(&self, provider: Provider, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.counters[provider.index()]
            .delayed_micros
            .fetch_add(micros, Ordering::Relaxed);
    }

    /// A status check of the payment `key` (Portmanat's psp_rrn, PaySys's
    /// partner_trans_id) begins: counted as overlapping when another check
    /// of it is in flight, and its start logged.
    pub(crate) fn begin_check(&self, provider: Provider, key: String) -> CheckGuard<'_> {
        {
            let mut in_flight = lock(&self.checks.in_flight);
            let n = in_flight.entry((provider, key.clone())).or_insert(0);
            if *n > 0 {
                self.counters[provider.index()]
                    .overlapping_checks
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%provider, payment = %key, "a status check overlaps another of the same payment");
            }
            *n += 1;
        }
        {
            let mut starts = lock(&self.checks.starts);
            let log = &mut starts[provider.index()];
            if log.len() == CHECK_LOG {
                log.pop_front();
            }
            log.push_back(self.started.elapsed());
        }
        CheckGuard {
            engine: self,
            key: (provider, key),
        }
    }

    /// When each status check of `provider` began (offsets from the
    /// simulator's start, oldest first; the last 100,000).
    pub fn check_starts(&self, provider: Provider) -> Vec<Duration> {
        lock(&self.checks.starts)[provider.index()]
            .iter()
            .copied()
            .collect()
    }

    pub fn plan_request(&self, provider: Provider) -> RequestPlan {
        let scenario = self.scenario(provider);
        let (latency, fault) = {
            let mut rng = lock(&self.rng);
            let latency = scenario.latency.sample(&mut *rng);
            (latency, scenario.faults.roll(&mut *rng))
        };
        let counters = &self.counters[provider.index()];
        counters.requests.fetch_add(1, Ordering::Relaxed);
        if !latency.is_zero() {
            counters.delayed.fetch_add(1, Ordering::Relaxed);
        }
        let counter = match fault {
            Some(Fault::Http500) => Some(&counters.http_500),
            Some(Fault::Timeout) => Some(&counters.timeouts),
            Some(Fault::Garbage) => Some(&counters.garbage),
            Some(Fault::TooManyRequests) => Some(&counters.too_many_requests),
            None => None,
        };
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        RequestPlan {
            latency,
            fault,
            retry_after_secs: scenario.faults.retry_after_secs,
            timeout_hold: Duration::from_millis(scenario.faults.timeout_hold_ms),
        }
    }

    /// Whether a numeric field is written as a string this time.
    pub fn as_string(&self, style: NumberStyle) -> bool {
        match style {
            NumberStyle::Number => false,
            NumberStyle::String => true,
            NumberStyle::Mixed => lock(&self.rng).random_bool(0.5),
        }
    }

    /// A value from the shared RNG.
    pub fn with_rng<T>(&self, f: impl FnOnce(&mut StdRng) -> T) -> T {
        f(&mut lock(&self.rng))
    }

    pub fn stats(&self) -> Stats {
        let read = |provider: Provider| {
            let c = &self.counters[provider.index()];
            ProviderStats {
                requests: c.requests.load(Ordering::Relaxed),
                http_500: c.http_500.load(Ordering::Relaxed),
                timeouts: c.timeouts.load(Ordering::Relaxed),
                garbage: c.garbage.load(Ordering::Relaxed),
                too_many_requests: c.too_many_requests.load(Ordering::Relaxed),
                delayed: c.delayed.load(Ordering::Relaxed),
                delayed_micros: c.delayed_micros.load(Ordering::Relaxed),
                overlapping_checks: c.overlapping_checks.load(Ordering::Relaxed),
            }
        };
        Stats {
            portmanat: read(Provider::Portmanat),
            paysys: read(Provider::Paysys),
            plutu: read(Provider::Plutu),
        }
    }

    // ----- payments ----------------------------------------------------------

    /// Creates a payment, draws its fate and schedules the customer.
    pub fn create(&self, creation: Creation) -> Result<PaymentView, SimError> {
        let provider = creation.provider;
        let scenario = self.scenario(provider);
        let now = self.clock.now();
        let wall = self.clock.wall_at(now);
        let mut rng = payment_rng(self.config.seed, provider, &creation.reference);
        let drawn_outcome = scenario.outcomes.pick(&mut rng, provider.can_refund());
        let drawn_pending = scenario.pending.sample(&mut rng);
        let (planned, forced) = match creation.outcome {
            Some(outcome) => (outcome, true),
            None => (drawn_outcome, false),
        };
        if planned == Outcome::Refund && !provider.can_refund() {
            return Err(SimError::Unsupported {
                provider,
                what: "report a refund".to_owned(),
            });
        }
        let pending = creation.pending.unwrap_or(drawn_pending);
        let page_token = random_hex(&mut rng, 16);
        let mut details = Details::default();
        let mut state = self.state();
        if state
            .store
            .slot_by_reference(provider, &creation.reference)
            .is_some()
        {
            return Err(SimError::DuplicateReference {
                provider,
                reference: creation.reference,
            });
        }
        let slot = state.store.payments.len();
        let number = state.store.next_number(provider);
        let provider_txn_id = match provider {
            Provider::Portmanat => {
                let raw: [u8; 20] = rng.random();
                details.bank_rrn = BASE64.encode(raw);
                Some(format!(
                    "{}-{}-{}-{}",
                    wall.as_second(),
                    random_alnum(&mut rng, 6),
                    random_alnum(&mut rng, 6),
                    random_alnum(&mut rng, 6)
                ))
            }
            Provider::Paysys => {
                details.card_masked = creation
                    .card_masked
                    .clone()
                    .unwrap_or_else(|| "427831******5400".to_owned());
                details.rrn = random_digits(&mut rng, 12);
                details.approval_code = random_digits(&mut rng, 6);
                // Sequential, in the range of the document's examples.
                Some((1_485_295 + slot as u64).to_string())
            }
            Provider::Plutu => None,
        };
        let mut payment = Payment {
            id: format!("{provider}-{number}"),
            provider,
            reference: creation.reference,
            provider_txn_id,
            gateway: creation.gateway,
            amount_minor: creation.amount_minor,
            currency: creation.currency,
            amount_text: creation.amount_text,
            status: Status::Created,
            planned,
            forced,
            refunded_minor: 0,
            test_service: creation.test_service,
            created_at: wall,
            timeline: Vec::new(),
            callbacks: Vec::new(),
            rng,
            callback_url: creation.callback_url,
            return_url: creation.return_url,
            page_token,
            details,
            held: Vec::new(),
        };
        if provider == Provider::Paysys {
            payment.set_status(Status::Created, wall, "prepare_payment");
        }
        payment.set_status(Status::Pending, wall, "created");
        state.store.insert(payment);
        state.queue.push(now + pending, Event::Resolve(slot));
        if provider == Provider::Paysys && self.config.paysys.notify_pending {
            self.plan_callback(&mut state, slot, Status::Pending, now, true, false);
        }
        self.plan_forgery(&mut state, slot, now, pending);
        let view = state.store.payments[slot].view();
        drop(state);
        self.wake.notify_one();
        info!(
            payment.id = %view.id,
            provider = %provider,
            payment.reference = %view.reference,
            amount_minor = view.amount_minor,
            currency = view.currency.code(),
            planned = ?planned,
            pending_ms = pending.as_millis() as u64,
            "payment created"
        );
        Ok(view)
    }

    /// Looks a payment up by the simulator's id.
    pub fn slot(&self, id: &str) -> Result<usize, SimError> {
        self.state()
            .store
            .slot_by_id(id)
            .ok_or_else(|| SimError::UnknownPayment(id.to_owned()))
    }

    pub fn view(&self, slot: usize) -> Option<PaymentView> {
        self.state().store.payments.get(slot).map(Payment::view)
    }

    /// The customer finishes now with `outcome` (or the planned one).
    pub fn pay(
        &self,
        slot: usize,
        outcome: Option<Outcome>,
        cause: &str,
        browser: bool,
    ) -> Result<PaymentView, SimError> {
        let mut state = self.state();
        self.resolve_locked(&mut state, slot, outcome, cause, browser)?;
        let view = state.store.payments[slot].view();
        drop(state);
        self.wake.notify_one();
        Ok(view)
    }

    /// Changes the outcome a pending payment is heading for.
    pub fn force_outcome(&self, slot: usize, outcome: Outcome) -> Result<PaymentView, SimError> {
        let mut state = self.state();
        let payment = state
            .store
            .payments
            .get_mut(slot)
            .ok_or_else(|| SimError::UnknownPayment(slot.to_string()))?;
        if outcome == Outcome::Refund && !payment.provider.can_refund() {
            return Err(SimError::Unsupported {
                provider: payment.provider,
                what: "report a refund".to_owned(),
            });
        }
        if payment.status.is_final() {
            return Err(SimError::AlreadyFinal {
                id: payment.id.clone(),
                status: payment.status,
            });
        }
        payment.planned = outcome;
        payment.forced = true;
        Ok(payment.view())
    }

    fn resolve_locked(
        &self,
        state: &mut State,
        slot: usize,
        outcome: Option<Outcome>,
        cause: &str,
        browser: bool,
    ) -> Result<(), SimError> {
        let now = self.clock.now();
        let wall = self.clock.wall_at(now);
        let payment = state
            .store
            .payments
            .get_mut(slot)
            .ok_or_else(|| SimError::UnknownPayment(slot.to_string()))?;
        let provider = payment.provider;
        if payment.status.is_final() {
            return Err(SimError::AlreadyFinal {
                id: payment.id.clone(),
                status: payment.status,
            });
        }
        if let Some(outcome) = outcome {
            if outcome == Outcome::Refund && !provider.can_refund() {
                return Err(SimError::Unsupported {
                    provider,
                    what: "report a refund".to_owned(),
                });
            }
            payment.planned = outcome;
            payment.forced = true;
        }
        let outcome = payment.planned;
        let status = match outcome {
            Outcome::Success | Outcome::Refund => Status::Succeeded,
            Outcome::Failure => Status::Failed,
            Outcome::Cancel => Status::Canceled,
        };
        payment.set_status(status, wall, cause);
        if provider == Provider::Plutu {
            payment.provider_txn_id = Some((300_001 + slot as u64).to_string());
            payment.details.plutu_params = plutu::callback_params(payment);
            state.store.index_txn(slot);
        }
        let due = self.plan_callback(state, slot, status, now, false, browser);
        self.release_held(state, slot, due);
        if outcome == Outcome::Refund {
            let scenario = self.scenario(provider);
            if let Some(payment) = state.store.payments.get_mut(slot) {
                let wait = scenario.pending.sample(&mut payment.rng);
                state.queue.push(now + wait, Event::Refund(slot));
            }
        }
        if let Some(payment) = state.store.payments.get(slot) {
            info!(payment.id = %payment.id, provider = %provider, status = ?status, cause, "payment resolved");
        }
        Ok(())
    }

    /// PaySys `refund_payment` (and the "refund" outcome): takes `amount`
    /// minor units back from a succeeded payment.
    pub fn refund_locked(
        &self,
        state: &mut State,
        slot: usize,
        amount_minor: i64,
        cause: &str,
    ) -> Result<(), RefundError> {
        let now = self.clock.now();
        let wall = self.clock.wall_at(now);
        let payment = state
            .store
            .payments
            .get_mut(slot)
            .ok_or(RefundError::NotFound)?;
        match payment.status {
            Status::Succeeded | Status::Refunded => {}
            Status::Canceled => return Err(RefundError::Canceled),
            _ => return Err(RefundError::NotCompleted),
        }
        if amount_minor <= 0 || payment.refunded_minor + amount_minor > payment.amount_minor {
            return Err(RefundError::TooMuch);
        }
        payment.refunded_minor += amount_minor;
        payment.set_status(Status::Refunded, wall, cause);
        info!(payment.id = %payment.id, amount_minor, cause, "payment refunded");
        // What the notification's `amount` says: PaySys does not document
        // which, so it is a setting.
        let reported = match self.config.paysys.refund_amount {
            RefundAmount::Total => payment.refunded_minor,
            RefundAmount::ThisRefund => amount_minor,
        };
        let first = payment.callbacks.len();
        self.plan_callback(state, slot, Status::Refunded, now, false, false);
        if let Some(payment) = state.store.payments.get_mut(slot) {
            for callback in payment.callbacks.iter_mut().skip(first) {
                callback.amount_minor = Some(reported);
            }
        }
        Ok(())
    }

    /// A refund of `amount_minor` from the control API: PaySys only, any
    /// number of times up to what was paid.
    pub fn refund(&self, slot: usize, amount_minor: i64) -> Result<PaymentView, SimError> {
        let mut state = self.state();
        let provider = state
            .store
            .payments
            .get(slot)
            .map(|p| p.provider)
            .ok_or_else(|| SimError::UnknownPayment(slot.to_string()))?;
        if !provider.can_refund() {
            return Err(SimError::Unsupported {
                provider,
                what: "refund".to_owned(),
            });
        }
        self.refund_locked(&mut state, slot, amount_minor, "control")
            .map_err(|e| {
                SimError::InvalidRequest(
                    match e {
                        RefundError::NotFound => "no such payment",
                        RefundError::Canceled => "the payment is canceled",
                        RefundError::NotCompleted => "the payment has not succeeded",
                        RefundError::TooMuch => {
                            "the refunds would exceed the paid amount (or the amount is not positive)"
                        }
                    }
                    .to_owned(),
                )
            })?;
        let view = state.store.payments[slot].view();
        drop(state);
        self.wake.notify_one();
        Ok(view)
    }

    /// PaySys `cancel_payment`: a pending payment is cancelled, a completed
    /// one reversed.
    pub fn cancel_locked(&self, state: &mut State, slot: usize) -> Result<(), RefundError> {
        let now = self.clock.now();
        let wall = self.clock.wall_at(now);
        let payment = state
            .store
            .payments
            .get_mut(slot)
            .ok_or(RefundError::NotFound)?;
        match payment.status {
            Status::Created | Status::Pending | Status::Succeeded => {}
            Status::Canceled => return Err(RefundError::Canceled),
            Status::Failed | Status::Refunded => return Err(RefundError::NotCompleted),
        }
        payment.planned = Outcome::Cancel;
        payment.set_status(Status::Canceled, wall, "cancel_payment");
        info!(payment.id = %payment.id, "payment cancelled by the partner");
        let due = self.plan_callback(state, slot, Status::Canceled, now, false, false);
        self.release_held(state, slot, due);
        Ok(())
    }

    /// Draws what happens to one callback and records and schedules it.
    /// Returns when the callback is due. `may_hold`: it may be held back
    /// until after the final one (out of order). `browser`: a real browser
    /// carries it, so the simulator sends nothing.
    fn plan_callback(
        &self,
        state: &mut State,
        slot: usize,
        status: Status,
        base: Duration,
        may_hold: bool,
        browser: bool,
    ) -> Duration {
        let State { store, queue } = state;
        let Some(payment) = store.payments.get_mut(slot) else {
            return base;
        };
        let provider = payment.provider;
        let faults = self.scenario(provider).callbacks;
        let rolls: [f64; 5] = payment.rng.random();
        let lost = rolls[0] < faults.lost;
        let duplicated = rolls[1] < faults.duplicated;
        let delayed = rolls[2] < faults.delayed;
        let out_of_order =
            may_hold && provider == Provider::Paysys && rolls[3] < faults.out_of_order;
        let wrongly_signed = provider != Provider::Portmanat && rolls[4] < faults.wrongly_signed;
        let delay_ms = if delayed { faults.delay_ms } else { 0 };
        let due = base + Duration::from_millis(delay_ms);
        let (kind, method, url) = match provider {
            Provider::Portmanat => {
                let method = match self.config.portmanat.callback_method {
                    CallbackMethod::Get => "GET",
                    CallbackMethod::Post => "POST",
                };
                (
                    CallbackKind::BrowserRedirect,
                    method,
                    payment.callback_url.clone(),
                )
            }
            Provider::Paysys => (
                CallbackKind::StatusNotification,
                "POST",
                payment.callback_url.clone(),
            ),
            Provider::Plutu => (
                CallbackKind::PlutuCallback,
                "GET",
                payment.callback_url.clone(),
            ),
        };
        let fate = if browser && provider == Provider::Portmanat {
            CallbackFate::FollowedByBrowser
        } else if lost {
            CallbackFate::Lost
        } else if out_of_order {
            CallbackFate::Held
        } else {
            CallbackFate::Scheduled
        };
        let copies = if duplicated
            && fate != CallbackFate::Lost
            && fate != CallbackFate::FollowedByBrowser
        {
            2
        } else {
            1
        };
        for copy in 0..copies {
            let index = payment.callbacks.len();
            payment.callbacks.push(CallbackRecord {
                index,
                kind,
                status,
                url: url.clone(),
                method: method.to_owned(),
                duplicate: copy == 1,
                wrongly_signed,
                forged: false,
                delayed_ms: delay_ms,
                out_of_order,
                due_at: (fate == CallbackFate::Scheduled).then(|| self.clock.wall_at(due)),
                amount_minor: None,
                sent_at: None,
                fate: fate.clone(),
            });
            match fate {
                CallbackFate::Scheduled => queue.push(due, Event::Deliver(slot, index)),
                CallbackFate::Held => payment.held.push(index),
                _ => {}
            }
        }
        debug!(payment.id = %payment.id, ?kind, ?status, lost, duplicated, delay_ms, out_of_order, wrongly_signed, "callback planned");
        due
    }

    /// Draws whether a forger sends a callback for this pending payment and,
    /// if so, schedules it at a random moment before the customer finishes:
    /// it claims the opposite of the planned outcome, signed with a wrong key.
    /// Draws nothing when the scenario forges nothing, so seeded runs without
    /// forgeries are unchanged.
    fn plan_forgery(&self, state: &mut State, slot: usize, now: Duration, pending: Duration) {
        let State { store, queue } = state;
        let Some(payment) = store.payments.get_mut(slot) else {
            return;
        };
        let provider = payment.provider;
        let rate = self.scenario(provider).callbacks.forged;
        if rate <= 0.0 || provider == Provider::Portmanat {
            return;
        }
        let roll: f64 = payment.rng.random();
        if roll >= rate {
            return;
        }
        let claimed = match payment.planned {
            Outcome::Success | Outcome::Refund => Status::Failed,
            Outcome::Failure | Outcome::Cancel => Status::Succeeded,
        };
        let lead = payment.rng.random_range(0..=pending.as_millis() as u64);
        let due = now + Duration::from_millis(lead);
        let (kind, method) = match provider {
            Provider::Paysys => (CallbackKind::StatusNotification, "POST"),
            _ => (CallbackKind::PlutuCallback, "GET"),
        };
        let index = payment.callbacks.len();
        payment.callbacks.push(CallbackRecord {
            index,
            kind,
            status: claimed,
            url: payment.callback_url.clone(),
            method: method.to_owned(),
            duplicate: false,
            wrongly_signed: true,
            forged: true,
            delayed_ms: 0,
            out_of_order: false,
            due_at: Some(self.clock.wall_at(due)),
            amount_minor: None,
            sent_at: None,
            fate: CallbackFate::Scheduled,
        });
        queue.push(due, Event::Deliver(slot, index));
        debug!(payment.id = %payment.id, claimed = ?claimed, "forged callback planned");
    }

    /// Schedules callbacks held back for a payment after `after`.
    fn release_held(&self, state: &mut State, slot: usize, after: Duration) {
        let State { store, queue } = state;
        let Some(payment) = store.payments.get_mut(slot) else {
            return;
        };
        if payment.held.is_empty() {
            return;
        }
        let gap = Duration::from_millis(self.scenario(payment.provider).callbacks.reorder_gap_ms);
        let due = after + gap;
        for index in std::mem::take(&mut payment.held) {
            if let Some(record) = payment.callbacks.get_mut(index) {
                record.fate = CallbackFate::Scheduled;
                record.due_at = Some(self.clock.wall_at(due));
                queue.push(due, Event::Deliver(slot, index));
            }
        }
    }

    // ----- PaySys partner.notify --------------------------------------------

    /// Sends (or, per the scenario, drops, delays, duplicates or mis-signs) a
    /// `partner.notify`.
    pub fn partner_notify(
        &self,
        request: &PartnerNotifyRequest,
    ) -> Result<Vec<PartnerNotifyView>, SimError> {
        let faults = self.scenario(Provider::Paysys).callbacks;
        let (body, rolls) = self.with_rng(|rng| {
            let rolls: [f64; 4] = rng.random();
            (paysys::partner_notify_body(request, rng), rolls)
        });
        let url = if self.config.paysys.partner_notify_url.is_empty() {
            self.config.paysys.notify_url.clone()
        } else {
            self.config.paysys.partner_notify_url.clone()
        };
        let lost = rolls[0] < faults.lost;
        let copies = if !lost && rolls[1] < faults.duplicated {
            2
        } else {
            1
        };
        let delay_ms = if rolls[2] < faults.delayed {
            faults.delay_ms
        } else {
            0
        };
        let wrongly_signed = rolls[3] < faults.wrongly_signed;
        let now = self.clock.now();
        let due = now + Duration::from_millis(delay_ms);
        let mut state = self.state();
        let mut views = Vec::new();
        for copy in 0..copies {
            let index = state.store.partner_notifies.len();
            let view = PartnerNotifyView {
                index,
                body: body.clone(),
                callback: CallbackRecord {
                    index,
                    kind: CallbackKind::PartnerNotify,
                    status: Status::Pending,
                    url: url.clone(),
                    method: "POST".to_owned(),
                    duplicate: copy == 1,
                    wrongly_signed,
                    forged: false,
                    delayed_ms: delay_ms,
                    out_of_order: false,
                    due_at: (!lost).then(|| self.clock.wall_at(due)),
                    amount_minor: None,
                    sent_at: None,
                    fate: if lost {
                        CallbackFate::Lost
                    } else {
                        CallbackFate::Scheduled
                    },
                },
            };
            if !lost {
                state.queue.push(due, Event::PartnerNotify(index));
            }
            state.store.partner_notifies.push(view.clone());
            views.push(view);
        }
        drop(state);
        self.wake.notify_one();
        Ok(views)
    }

    // ----- events --------------------------------------------------------------

    async fn run_batch(self: Arc<Self>, batch: Batch) {
        for event in batch.events {
            match event {
                Event::Resolve(slot) => {
                    let mut state = self.state();
                    match self.resolve_locked(&mut state, slot, None, "customer", false) {
                        Ok(()) | Err(SimError::AlreadyFinal { .. }) => {}
                        Err(err) => warn!(%err, "cannot resolve a payment"),
                    }
                }
                Event::Refund(slot) => {
                    let mut state = self.state();
                    let amount = state
                        .store
                        .payments
                        .get(slot)
                        .map(|p| p.amount_minor - p.refunded_minor)
                        .unwrap_or(0);
                    // A refund that is no longer possible (the shop cancelled
                    // or refunded first) is simply not done.
                    let _ = self.refund_locked(&mut state, slot, amount, "refund");
                }
                Event::Deliver(slot, index) => self.deliver(slot, index).await,
                Event::PartnerNotify(index) => self.deliver_partner_notify(index).await,
            }
        }
        self.state().queue.finish(batch.lane);
        self.wake.notify_one();
        self.progress.send_modify(|n| *n += 1);
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.config.callbacks.timeout_ms)
    }

    async fn deliver(&self, slot: usize, index: usize) {
        let built = {
            let state = self.state();
            state.store.payments.get(slot).and_then(|payment| {
                let record = payment.callbacks.get(index)?;
                (record.fate == CallbackFate::Scheduled)
                    .then(|| (self.outbound(payment, record), payment.id.clone()))
            })
        };
        let Some((outbound, id)) = built else {
            return;
        };
        let sent_at = self.clock.wall_now();
        let result = callback::send(&self.client, outbound, self.timeout()).await;
        let mut state = self.state();
        if let Some(record) = state
            .store
            .payments
            .get_mut(slot)
            .and_then(|p| p.callbacks.get_mut(index))
        {
            record.sent_at = Some(sent_at);
            match result {
                Ok(http_status) => {
                    info!(payment.id = %id, kind = ?record.kind, status = ?record.status, http_status, duplicate = record.duplicate, wrongly_signed = record.wrongly_signed, "callback delivered");
                    record.fate = CallbackFate::Delivered { http_status };
                }
                Err(error) => {
                    warn!(payment.id = %id, kind = ?record.kind, %error, "callback failed");
                    record.fate = CallbackFate::Failed { error };
                }
            }
        }
    }

    async fn deliver_partner_notify(&self, index: usize) {
        let built = {
            let state = self.state();
            state
                .store
                .partner_notifies
                .get(index)
                .filter(|view| view.callback.fate == CallbackFate::Scheduled)
                .map(|view| {
                    let authorization = paysys::basic_authorization(
                        &self.config.paysys,
                        view.callback.wrongly_signed,
                    );
                    Outbound {
                        method: Method::POST,
                        url: view.callback.url.clone(),
                        authorization: Some(authorization),
                        body: Some(("application/json", view.body.to_string().into())),
                    }
                })
        };
        let Some(outbound) = built else {
            return;
        };
        let sent_at = self.clock.wall_now();
        let result = callback::send(&self.client, outbound, self.timeout()).await;
        let mut state = self.state();
        if let Some(view) = state.store.partner_notifies.get_mut(index) {
            view.callback.sent_at = Some(sent_at);
            view.callback.fate = match result {
                Ok(http_status) => {
                    info!(index, http_status, "partner.notify delivered");
                    CallbackFate::Delivered { http_status }
                }
                Err(error) => {
                    warn!(index, %error, "partner.notify failed");
                    CallbackFate::Failed { error }
                }
            };
        }
    }

    /// The HTTP request that carries one callback.
    fn outbound(&self, payment: &Payment, record: &CallbackRecord) -> Outbound {
        match payment.provider {
            Provider::Portmanat => {
                let query = form::http_build_query(&[
                    (
                        "psp_rrn",
                        payment.provider_txn_id.as_deref().unwrap_or_default(),
                    ),
                    ("client_rrn", payment.reference.as_str()),
                ]);
                match self.config.portmanat.callback_method {
                    CallbackMethod::Get => Outbound {
                        method: Method::GET,
                        url: form::append_query(&record.url, &query),
                        authorization: None,
                        body: None,
                    },
                    CallbackMethod::Post => Outbound {
                        method: Method::POST,
                        url: record.url.clone(),
                        authorization: None,
                        body: Some(("application/x-www-form-urlencoded", query.into())),
                    },
                }
            }
            Provider::Paysys => Outbound {
                method: Method::POST,
                url: record.url.clone(),
                authorization: Some(paysys::basic_authorization(
                    &self.config.paysys,
                    record.wrongly_signed,
                )),
                body: Some((
                    "application/json",
                    paysys::notification_body(payment, record.status, record.amount_minor)
                        .to_string()
                        .into(),
                )),
            },
            Provider::Plutu => {
                let secret = self.config.plutu.secret_key.expose_secret();
                let forged;
                let params = if record.forged {
                    forged = plutu::forged_params(payment, record.status);
                    &forged
                } else {
                    &payment.details.plutu_params
                };
                let query = plutu::signed_query(
                    params,
                    payment.gateway.unwrap_or(PlutuGateway::Mpgs),
                    secret,
                    record.wrongly_signed,
                );
                Outbound {
                    method: Method::GET,
                    url: form::append_query(&record.url, &query),
                    authorization: None,
                    body: None,
                }
            }
        }
    }

    // ----- the scheduler -----------------------------------------------------

    /// Fires due events until the simulator stops.
    pub async fn run_scheduler(self: Arc<Self>) {
        loop {
            let (batches, next) = {
                let mut state = self.state();
                state.queue.take_due(self.clock.now())
            };
            for batch in batches {
                self.tasks.spawn(Arc::clone(&self).run_batch(batch));
            }
            self.progress.send_modify(|n| *n += 1);
            let sleep = async {
                match next {
                    Some(due) => tokio::time::sleep_until(self.clock.real_instant(due)).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = self.cancel.cancelled() => break,
                () = self.wake.notified() => {}
                () = sleep => {}
            }
        }
        debug!("scheduler stopped");
    }

    /// Waits until nothing is due and nothing is running.
    pub async fn settle(&self) -> Result<(), SimError> {
        let limit = self.timeout() * 2 + Duration::from_secs(10);
        let deadline = tokio::time::Instant::now() + limit;
        let mut progress = self.progress.subscribe();
        self.wake.notify_one();
        loop {
            if self.state().queue.settled(self.clock.now()) {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, progress.changed())
                .await
                .is_err()
            {
                return Err(SimError::NotSettled(limit));
            }
        }
    }

    /// Moves the clock forward and waits until everything then due is done.
    pub async fn advance(&self, by: Duration) -> Result<(), SimError> {
        self.clock.advance(by);
        debug!(by_ms = by.as_millis() as u64, "clock advanced");
        self.settle().await
    }

    /// Advances until nothing is left to happen (bounded, for safety against
    /// an autopilot that keeps adding work).
    pub async fn run_until_idle(&self) -> Result<(), SimError> {
        for _ in 0..1_000 {
            self.settle().await?;
            let last = self.state().queue.last_due();
            match last {
                None => return Ok(()),
                Some(due) => {
                    let now = self.clock.now();
                    self.advance(due.saturating_sub(now)).await?;
                }
            }
        }
        Err(SimError::InvalidRequest(
            "events keep being added; the simulator does not go idle".to_owned(),
        ))
    }
}

/// Why a refund or cancel was refused (mapped to PaySys errors).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RefundError {
    NotFound,
    Canceled,
    NotCompleted,
    TooMuch,
}

/// Wall-clock time in milliseconds since the epoch, for `Auth` timestamps.
pub(crate) fn unix_ms(at: Timestamp) -> i64 {
    at.as_millisecond()
}
