//! What the worker is told at start: a plain struct the product's
//! configuration fills and tests build directly.

use std::collections::BTreeMap;
use std::time::Duration;

use paysettle_core::clock::SharedClock;
use paysettle_core::handoff::HandoffKeys;
use paysettle_core::schedule::CheckPolicy;
use paysettle_core::{Account, Provider, paysys};
use secrecy::SecretString;

/// How to reach Portmanat's `/check` for one service.
#[derive(Debug, Clone)]
pub struct PortmanatAccess {
    /// `https://psp.mps.az` (paths `/check` and `/process` hang below it).
    pub base_url: String,
    /// Whether `/check` answers from a service in test mode may count as
    /// money on this account (a staging shop); off in production.
    pub accept_test_payments: bool,
}

/// How to reach the PaySys gateway for one service.
#[derive(Debug, Clone)]
pub struct PaysysAccess {
    /// `https://paysys.uz/gateway`.
    pub gateway_url: String,
    pub service_id: String,
    pub secret_key: SecretString,
    /// How the account's answers and notifications are read (its time
    /// zone).
    pub rules: paysys::Rules,
}

/// How hard the worker may press one provider.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProviderLimits {
    /// Status requests in flight at once.
    pub concurrency: usize,
    /// Status requests started per second at most.
    pub rate_per_sec: f64,
    /// The whole request, connect to last byte.
    pub timeout: Duration,
    /// The polling schedule.
    pub policy: CheckPolicy,
}

impl Default for ProviderLimits {
    fn default() -> Self {
        ProviderLimits {
            concurrency: 8,
            // PaySys's sister API allows 100 requests a minute; stay under it.
            rate_per_sec: 1.5,
            timeout: Duration::from_secs(10),
            policy: CheckPolicy::default(),
        }
    }
}

/// Everything the worker needs besides the ledger and the queue.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// Callback messages applied per ledger transaction at most.
    pub batch_size: usize,
    /// How long to wait for a batch to fill once one message is there.
    pub batch_wait: Duration,
    /// Hold a PaySys "completed" notification as pending until
    /// `check_payment` agrees, so a success is never taken on a callback's
    /// word alone.
    pub paysys_confirm: bool,
    /// Events published per relay round at most.
    pub relay_batch: usize,
    /// How often the relay looks at the outbox when nothing woke it.
    pub relay_interval: Duration,
    /// The longest the poller sleeps before looking at the schedule again.
    pub poll_idle: Duration,
    /// Time allowed to finish the work in hand on shutdown.
    pub shutdown_grace: Duration,
    /// Portmanat services by account.
    pub portmanat: BTreeMap<Account, PortmanatAccess>,
    /// PaySys services by account.
    pub paysys: BTreeMap<Account, PaysysAccess>,
    /// Plutu accounts (nothing to reach: Plutu has no status API).
    pub plutu: Vec<Account>,
    /// Limits and schedule per provider.
    pub limits: BTreeMap<Provider, ProviderLimits>,
    /// The hand-off keys: a callback message is applied only when its
    /// signature verifies with one of them, and the relay signs settled
    /// events with the signing one. `None` (the default) trusts no message:
    /// every callback is dead-lettered, and events go out unsigned.
    pub handoff: Option<HandoffKeys>,
    /// Where card registrations are kept for the shop API's card feed
    /// (`None`: they are only published to the shop queue).
    pub cards: Option<paysettle_store::CardFeed>,
    /// How long a card registration stays on the card feed.
    pub card_retention: Duration,
    /// Where the worker reads "now": when checks are due, when a deadline
    /// has passed, when a `Retry-After` date is, a PaySys `Auth` timestamp,
    /// when an answer was observed and when the shop registered a payment.
    /// The wall clock in the product; tests give the worker and the ledger
    /// one clock of their own and move it.
    pub clock: SharedClock,
    /// This worker's name in the claims it takes on a shared ledger (due
    /// checks, outbox events): unique per process.
    pub owner: String,
    /// How long a claim on a shared ledger lasts: a worker that dies gives
    /// its checks and events back to the others when it ends. Longer than a
    /// check can take (its wait for the provider's rate, then its timeout).
    pub claim_lease: Duration,
}

/// A name for this process's claims: the host, the process id and a random
/// part (a restarted process never inherits a dead one's claims by name).
pub fn claim_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &random[..8])
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            batch_size: 256,
            batch_wait: Duration::from_millis(20),
            paysys_confirm: true,
            relay_batch: 1024,
            relay_interval: Duration::from_millis(500),
            poll_idle: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            portmanat: BTreeMap::new(),
            paysys: BTreeMap::new(),
            plutu: Vec::new(),
            limits: Provider::ALL
                .into_iter()
                .map(|p| (p, ProviderLimits::default()))
                .collect(),
            handoff: None,
            cards: None,
            card_retention: Duration::from_secs(7 * 24 * 3600),
            owner: claim_owner(),
            claim_lease: Duration::from_secs(120),
            clock: paysettle_store::SystemClock::shared(),
        }
    }
}

impl WorkerSettings {
    /// The limits of a provider.
    pub fn limits(&self, provider: Provider) -> ProviderLimits {
        self.limits.get(&provider).copied().unwrap_or_default()
    }

    /// Whether callbacks for this account are expected at all; a message for
    /// any other account cannot be applied and is dead-lettered.
    pub fn knows(&self, provider: Provider, account: &Account) -> bool {
        match provider {
            Provider::Portmanat => self.portmanat.contains_key(account),
            Provider::Paysys => self.paysys.contains_key(account),
            Provider::Plutu => self.plutu.contains(account),
        }
    }

    /// Whether a payment the provider marks as a test counts as money on
    /// this account. Only Portmanat marks test payments; an account not
    /// configured accepts none.
    pub fn accepts_test(&self, provider: Provider, account: &Account) -> bool {
        match provider {
            Provider::Portmanat => self
                .portmanat
                .get(account)
                .is_some_and(|a| a.accept_test_payments),
            Provider::Paysys | Provider::Plutu => false,
        }
    }

    /// The polling policies, for the ledger's schedule.
    pub fn policies(&self) -> BTreeMap<Provider, CheckPolicy> {
        Provider::ALL
            .into_iter()
            .map(|p| (p, self.limits(p).policy))
            .collect()
    }

    /// The ledger's decision rules that come from the worker's settings.
    pub fn ledger_rules(&self) -> paysettle_store::LedgerRules {
        paysettle_store::LedgerRules {
            hold_paysys_success: self.paysys_confirm,
            test_accounts: self
                .portmanat
                .keys()
                .filter(|account| self.accepts_test(Provider::Portmanat, account))
                .map(|account| (Provider::Portmanat, account.clone()))
                .collect(),
            ..paysettle_store::LedgerRules::default()
        }
    }
}
