//! The in-process Rust API: [`Sim::start`] binds the listener and starts the
//! server, the scheduler and (if configured) the autopilot; [`SimHandle`]
//! drives it the way the control API does, without HTTP, and stops it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{SimConfig, is_http_url};
use crate::engine::{Creation, Engine, PartnerNotifyRequest, Stats};
use crate::error::SimError;
use crate::model::{Outcome, PartnerNotifyView, PaymentView, PlutuGateway, Provider};
use crate::money::{self, Currency};
use crate::scenario::{Scenario, ScenarioPatch};
use crate::{autopilot, paysys, plutu, server};

/// A payment to create as the shop would, without going through the
/// provider's endpoint (and so without its credentials and signatures).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPayment {
    /// Which provider.
    pub provider: Provider,
    /// The shop's order id (`client_rrn`, `partner_trans_id`, `invoice_no`).
    pub reference: String,
    /// Amount in minor units.
    pub amount_minor: i64,
    /// Currency; defaults to the provider's (AZN, UZS, the gateway's).
    #[serde(default)]
    pub currency: Option<Currency>,
    /// Plutu gateway; defaults to mpgs.
    #[serde(default)]
    pub gateway: Option<PlutuGateway>,
    /// Overrides where callbacks go: Portmanat's callback URL, PaySys's
    /// notify URL, Plutu's `return_url`.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// Forces the outcome instead of drawing it from the mix.
    #[serde(default)]
    pub outcome: Option<Outcome>,
    /// Overrides the drawn pending time.
    #[serde(default)]
    pub pending_ms: Option<u64>,
    /// Portmanat: `/check` says the service is in test mode for this payment
    /// (`"service": {"test": 1}`); unset, the scenario's `answers` decide.
    #[serde(default)]
    pub test_service: Option<bool>,
}

impl NewPayment {
    /// A payment with the provider's default currency and everything drawn.
    pub fn new(provider: Provider, reference: impl Into<String>, amount_minor: i64) -> NewPayment {
        NewPayment {
            provider,
            reference: reference.into(),
            amount_minor,
            currency: None,
            gateway: None,
            callback_url: None,
            outcome: None,
            pending_ms: None,
            test_service: None,
        }
    }

    /// Sets the currency.
    pub fn currency(mut self, currency: Currency) -> NewPayment {
        self.currency = Some(currency);
        self
    }

    /// Sets the Plutu gateway.
    pub fn gateway(mut self, gateway: PlutuGateway) -> NewPayment {
        self.gateway = Some(gateway);
        self
    }

    /// Sends this payment's callbacks to `url`.
    pub fn callback_url(mut self, url: impl Into<String>) -> NewPayment {
        self.callback_url = Some(url.into());
        self
    }

    /// Forces the outcome.
    pub fn outcome(mut self, outcome: Outcome) -> NewPayment {
        self.outcome = Some(outcome);
        self
    }

    /// Makes Portmanat's `/check` answer in test mode for this payment.
    pub fn test_service(mut self, test: bool) -> NewPayment {
        self.test_service = Some(test);
        self
    }

    /// Fixes the pending time.
    pub fn pending(mut self, pending: Duration) -> NewPayment {
        self.pending_ms = Some(u64::try_from(pending.as_millis()).unwrap_or(u64::MAX));
        self
    }
}

/// Checks a [`NewPayment`] as the provider's endpoint would and turns it
/// into what the engine creates.
pub(crate) fn creation(engine: &Engine, new: NewPayment) -> Result<Creation, SimError> {
    let invalid = |msg: String| Err(SimError::InvalidRequest(msg));
    if new.reference.trim().is_empty() || new.reference.len() > 64 {
        return invalid("reference must be 1 to 64 characters".to_owned());
    }
    if new.amount_minor <= 0 {
        return invalid("amount_minor must be positive".to_owned());
    }
    if let Some(url) = &new.callback_url
        && !is_http_url(url)
    {
        return invalid(format!("callback_url {url:?} is not an http(s) URL"));
    }
    if new.gateway.is_some() && new.provider != Provider::Plutu {
        return invalid("gateway is for Plutu only".to_owned());
    }
    let config = &engine.config;
    let (currency, amount_text, gateway, callback_url, return_url) = match new.provider {
        Provider::Portmanat => {
            let currency = new.currency.unwrap_or(Currency::Azn);
            if currency != Currency::Azn {
                return invalid("Portmanat takes AZN only".to_owned());
            }
            let url = new
                .callback_url
                .unwrap_or_else(|| config.portmanat.callback_url.clone());
            (
                currency,
                money::format_decimal(new.amount_minor, currency, 2),
                None,
                url,
                None,
            )
        }
        Provider::Paysys => {
            let currency = new.currency.unwrap_or(Currency::Uzs);
            if !paysys::amount_allowed(new.amount_minor, currency) {
                return invalid(format!(
                    "{} {} is outside PaySys's documented limits",
                    new.amount_minor,
                    currency.code()
                ));
            }
            let url = new
                .callback_url
                .unwrap_or_else(|| config.paysys.notify_url.clone());
            (currency, new.amount_minor.to_string(), None, url, None)
        }
        Provider::Plutu => {
            let gateway = new.gateway.unwrap_or(PlutuGateway::Mpgs);
            let currency = plutu::gateway_currency(gateway);
            if new.currency.is_some_and(|c| c != currency) {
                return invalid(format!(
                    "Plutu {} takes {} only",
                    gateway.name(),
                    currency.code()
                ));
            }
            let unit = 10_i64.pow(currency.exponent() - 2);
            if new.amount_minor % unit != 0 {
                return invalid("Plutu amounts have at most two decimals".to_owned());
            }
            let ok_chars = new
                .reference
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok_chars {
                return invalid("Plutu invoice_no allows [A-Za-z0-9._-] only".to_owned());
            }
            let return_url = new
                .callback_url
                .unwrap_or_else(|| config.plutu.default_return_url.clone());
            let callback_url = if config.plutu.callback_url.is_empty() {
                return_url.clone()
            } else {
                config.plutu.callback_url.clone()
            };
            (
                currency,
                money::format_decimal(new.amount_minor, currency, 2),
                Some(gateway),
                callback_url,
                Some(return_url),
            )
        }
    };
    Ok(Creation {
        provider: new.provider,
        reference: new.reference,
        amount_minor: new.amount_minor,
        currency,
        amount_text,
        gateway,
        callback_url,
        return_url,
        outcome: new.outcome,
        pending: new.pending_ms.map(Duration::from_millis),
        card_masked: None,
        test_service: new.test_service,
    })
}

/// Starts simulators.
#[derive(Debug)]
pub struct Sim;

impl Sim {
    /// Binds `config.bind` (port 0 for a free port), then serves Portmanat,
    /// PaySys, Plutu and the control API until [`SimHandle::shutdown`] (or
    /// until the handle is dropped).
    pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        config.validate()?;
        let listener = TcpListener::bind(config.bind)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.bind,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: config.bind,
            source,
        })?;
        let base_url = if config.public_base_url.is_empty() {
            format!("http://{addr}")
        } else {
            config.public_base_url.trim_end_matches('/').to_owned()
        };
        let rate = config.autopilot.rate_per_sec;
        let engine = Arc::new(Engine::new(config, base_url));
        let server = tokio::spawn(server::serve(listener, Arc::clone(&engine)));
        let scheduler = tokio::spawn(Arc::clone(&engine).run_scheduler());
        let autopilot =
            (rate > 0.0).then(|| tokio::spawn(autopilot::run(Arc::clone(&engine), rate)));
        info!(%addr, base_url = %engine.base_url, seed = engine.config.seed, autopilot_rate = rate, "simulator listening");
        Ok(SimHandle {
            engine,
            addr,
            tasks: vec![server, scheduler]
                .into_iter()
                .chain(autopilot)
                .collect(),
        })
    }
}

/// A running simulator. Dropping it stops it without waiting; prefer
/// [`SimHandle::shutdown`], which waits for connections to drain.
#[derive(Debug)]
pub struct SimHandle {
    engine: Arc<Engine>,
    addr: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}` (or the configured public base URL), without a
    /// trailing slash: point the product's provider base URLs at
    /// `{base_url}/portmanat`, `{base_url}/paysys/gateway`,
    /// `{base_url}/plutu/api/v1`.
    pub fn base_url(&self) -> &str {
        &self.engine.base_url
    }

    /// The configuration it runs with (credentials included, so a test can
    /// configure the product to match).
    pub fn config(&self) -> &SimConfig {
        &self.engine.config
    }

    /// Creates a payment as the shop would.
    pub fn create_payment(&self, new: NewPayment) -> Result<PaymentView, SimError> {
        self.engine.create(creation(&self.engine, new)?)
    }

    /// Every payment, in creation order.
    pub fn payments(&self) -> Vec<PaymentView> {
        self.engine
            .state()
            .store
            .payments
            .iter()
            .map(|p| p.view())
            .collect()
    }

    /// One payment by the simulator's id.
    pub fn payment(&self, id: &str) -> Option<PaymentView> {
        let slot = self.engine.slot(id).ok()?;
        self.engine.view(slot)
    }

    /// One payment by the shop's reference.
    pub fn find(&self, provider: Provider, reference: &str) -> Option<PaymentView> {
        let slot = self
            .engine
            .state()
            .store
            .slot_by_reference(provider, reference)?;
        self.engine.view(slot)
    }

    /// The customer finishes now, with `outcome` or the planned one; the
    /// callbacks are scheduled (call [`SimHandle::settle`] to wait for them).
    pub fn pay(&self, id: &str, outcome: Option<Outcome>) -> Result<PaymentView, SimError> {
        let slot = self.engine.slot(id)?;
        self.engine.pay(slot, outcome, "customer", false)
    }

    /// Refunds `amount_minor` of a succeeded PaySys payment now (any number
    /// of times, up to what was paid); its notification is scheduled.
    pub fn refund(&self, id: &str, amount_minor: i64) -> Result<PaymentView, SimError> {
        let slot = self.engine.slot(id)?;
        self.engine.refund(slot, amount_minor)
    }

    /// Changes the outcome a pending payment will have when it resolves.
    pub fn force_outcome(&self, id: &str, outcome: Outcome) -> Result<PaymentView, SimError> {
        let slot = self.engine.slot(id)?;
        self.engine.force_outcome(slot, outcome)
    }

    /// Moves the simulator's clock forward and returns once everything then
    /// due (customers, refunds, callbacks) has happened.
    pub async fn advance(&self, by: Duration) -> Result<(), SimError> {
        self.engine.advance(by).await
    }

    /// Returns once everything due now has happened.
    pub async fn settle(&self) -> Result<(), SimError> {
        self.engine.settle().await
    }

    /// Advances the clock until nothing is left to happen.
    pub async fn run_until_idle(&self) -> Result<(), SimError> {
        self.engine.run_until_idle().await
    }

    /// The scenario a provider follows now.
    pub fn scenario(&self, provider: Provider) -> Scenario {
        self.engine.scenario(provider)
    }

    /// Replaces scenario sections globally (`None`) or for one provider.
    pub fn set_scenario(
        &self,
        provider: Option<Provider>,
        patch: ScenarioPatch,
    ) -> Result<(), SimError> {
        self.engine.set_scenario(provider, &patch)
    }

    /// Back to the configured scenario.
    pub fn reset_scenario(&self) {
        self.engine.reset_scenario();
    }

    /// Sends a PaySys `partner.notify` (subject to PaySys's callback faults).
    pub fn send_partner_notify(
        &self,
        request: &PartnerNotifyRequest,
    ) -> Result<Vec<PartnerNotifyView>, SimError> {
        self.engine.partner_notify(request)
    }

    /// Every `partner.notify` sent or dropped.
    pub fn partner_notifies(&self) -> Vec<PartnerNotifyView> {
        self.engine.state().store.partner_notifies.clone()
    }

    /// Provider API traffic and injected faults so far.
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// When each status check of `provider` began, as offsets from the
    /// simulator's start, oldest first: to see that the workers together
    /// kept the provider's rate.
    pub fn check_starts(&self, provider: Provider) -> Vec<Duration> {
        self.engine.check_starts(provider)
    }

    /// Stops accepting, lets open connections finish (at most 5 s), lets
    /// callbacks in flight finish (at most the callback timeout), and returns.
    pub async fn shutdown(mut self) {
        self.engine.cancel.cancel();
        for task in self.tasks.drain(..) {
            if let Err(err) = task.await {
                warn!(%err, "a simulator task ended abnormally");
            }
        }
        self.engine.tasks.close();
        let grace =
            Duration::from_millis(self.engine.config.callbacks.timeout_ms) + Duration::from_secs(1);
        if tokio::time::timeout(grace, self.engine.tasks.wait())
            .await
            .is_err()
        {
            warn!("callbacks still in flight at shutdown were abandoned");
        }
        info!("simulator stopped");
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.engine.cancel.cancel();
    }
}
