//! Asking providers for a payment's status: Portmanat's `/check` and PaySys's
//! `paysys.check_payment`, each behind a per-provider concurrency limit, a
//! start-rate limit and a pause that a 429's `Retry-After` sets. On a shared
//! ledger (several workers), the start rate is the whole deployment's: each
//! request takes a token from the provider account's bucket in the ledger.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use paysettle_core::clock::Clock;
use paysettle_core::{
    Account, Observation, Provider, ProviderTxnId, Reference, paysys, portmanat, schedule,
};
use paysettle_store::{Ledger, PaymentRecord, RateDecision, RateLimit};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::settings::WorkerSettings;

/// When to look again at a check deferred because its claim had too little
/// time left to ask within it.
const RETRY_AFTER_LATE_TURN: Duration = Duration::from_millis(500);

/// The most of a status answer that is read.
const MAX_ANSWER: usize = 256 * 1024;

/// What a status check found.
#[derive(Debug)]
pub enum CheckResult {
    /// The provider's answer, with the raw answer for the history.
    Answer {
        observation: Box<Observation>,
        raw: serde_json::Value,
    },
    /// The provider does not know the payment (Portmanat "RRN is wrong").
    Unknown(String),
    /// The provider asked us to slow down.
    Busy { retry_after: Duration },
    /// The deployment's rate limit for the provider account is used up for
    /// longer than this check may wait: asked again after `retry_after`,
    /// never sent over the rate.
    Deferred { retry_after: Duration },
    /// The check failed (timeout, 5xx, an answer that cannot be read).
    Failed(String),
    /// This payment cannot be checked (no status API, no provider id yet,
    /// no credentials for its account).
    Unsupported(String),
}

impl CheckResult {
    /// A short name for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            CheckResult::Answer { .. } => "answer",
            CheckResult::Unknown(_) => "unknown",
            CheckResult::Busy { .. } => "busy",
            CheckResult::Deferred { .. } => "deferred",
            CheckResult::Failed(_) => "failed",
            CheckResult::Unsupported(_) => "unsupported",
        }
    }
}

/// Spaces request starts at most `rate` per second, and holds every start
/// until a provider's `Retry-After` has passed.
#[derive(Debug)]
struct Pacer {
    interval: Duration,
    state: Mutex<PacerState>,
}

#[derive(Debug)]
struct PacerState {
    next: Instant,
    paused_until: Option<Instant>,
}

impl Pacer {
    fn new(rate_per_sec: f64) -> Pacer {
        let interval = if rate_per_sec.is_finite() && rate_per_sec > 0.0 {
            Duration::from_secs_f64(1.0 / rate_per_sec)
        } else {
            Duration::ZERO
        };
        Pacer {
            interval,
            state: Mutex::new(PacerState {
                next: Instant::now(),
                paused_until: None,
            }),
        }
    }

    /// Reserves the next start slot and waits for it.
    async fn wait(&self) {
        let slot = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            let mut slot = state.next.max(now);
            if let Some(until) = state.paused_until {
                slot = slot.max(until);
            }
            state.next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }

    fn pause(&self, wait: Duration) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let until = Instant::now() + wait;
        state.paused_until = Some(state.paused_until.map_or(until, |u| u.max(until)));
    }
}

#[derive(Debug)]
struct Gate {
    slots: Semaphore,
    pacer: Pacer,
    timeout: Duration,
}

/// The status client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct StatusClient {
    http: reqwest::Client,
    settings: Arc<WorkerSettings>,
    gates: Arc<BTreeMap<Provider, Gate>>,
    /// The ledger whose rate buckets every worker of the deployment shares
    /// (`None`: this worker is alone, its own pacer is the limit).
    shared: Option<Ledger>,
}

impl StatusClient {
    /// A client for the providers in `settings`.
    pub fn new(settings: Arc<WorkerSettings>) -> Result<StatusClient, reqwest::Error> {
        let http = reqwest::Client::builder()
            .user_agent(concat!("paysettle/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(64)
            .build()?;
        let gates = Provider::ALL
            .into_iter()
            .map(|p| {
                let limits = settings.limits(p);
                (
                    p,
                    Gate {
                        slots: Semaphore::new(limits.concurrency.max(1)),
                        pacer: Pacer::new(limits.rate_per_sec),
                        timeout: limits.timeout,
                    },
                )
            })
            .collect();
        Ok(StatusClient {
            http,
            settings,
            gates: Arc::new(gates),
            shared: None,
        })
    }

    /// Takes each request's start from `ledger`'s deployment-wide bucket for
    /// the provider account, so several workers together keep the
    /// provider's rate (PaySys allows about 100 requests a minute in all).
    #[must_use]
    pub fn sharing_rate_with(mut self, ledger: Ledger) -> StatusClient {
        self.shared = Some(ledger);
        self
    }

    /// Waits for the deployment's turn to ask `provider` for `account`, at
    /// most `limit`; `Err` is what to record when the wait would be longer
    /// (or the ledger cannot be asked): the check is deferred, never sent
    /// over the rate.
    async fn shared_turn(
        &self,
        provider: Provider,
        account: &Account,
        limit: Duration,
    ) -> Result<(), CheckResult> {
        let Some(ledger) = &self.shared else {
            return Ok(());
        };
        let rate = RateLimit {
            per_second: self.settings.limits(provider).rate_per_sec,
            burst: 1,
        };
        let give_up = Instant::now() + limit;
        loop {
            match ledger
                .take_rate(provider, account, rate, self.settings.clock.now())
                .await
            {
                Ok(RateDecision::Go) => return Ok(()),
                Ok(RateDecision::WaitUntil(at)) => {
                    let wait = self
                        .settings
                        .clock
                        .now()
                        .until(at)
                        .ok()
                        .and_then(|span| span.total(jiff::Unit::Millisecond).ok())
                        .map_or(Duration::from_millis(1), |ms| {
                            Duration::from_millis(ms.max(1.0) as u64)
                        });
                    if Instant::now() + wait > give_up {
                        return Err(CheckResult::Deferred { retry_after: wait });
                    }
                    tokio::time::sleep(wait).await;
                }
                Err(err) => {
                    return Err(CheckResult::Failed(format!(
                        "the deployment's rate limit could not be read: {err}"
                    )));
                }
            }
        }
    }

    /// How long a check that must be over by `until` may still wait for
    /// the deployment's rate: at most half a claim, and never so long that
    /// the request (up to `timeout`) and its record (a tenth of a claim)
    /// would end after `until`, when the claim or lease that keeps other
    /// workers off the payment may have passed to another. `Err` is the
    /// deferral to record when no time is left: the slot and the pacer
    /// (a 429's pause) are waited for first, and may have taken it.
    fn rate_wait(&self, until: Instant, timeout: Duration) -> Result<Duration, CheckResult> {
        let lease = self.settings.claim_lease;
        until
            .checked_duration_since(Instant::now())
            .and_then(|left| left.checked_sub(timeout + lease / 10))
            .map(|left| left.min(lease / 2))
            .ok_or(CheckResult::Deferred {
                retry_after: RETRY_AFTER_LATE_TURN,
            })
    }

    /// Asks the provider about `payment`, within the provider's limits, for
    /// a caller that holds no claim of its own (reconcile): over within one
    /// claim's length from now (see [`StatusClient::check_by`]).
    pub async fn check(&self, payment: &PaymentRecord) -> CheckResult {
        self.check_by(payment, Instant::now() + self.settings.claim_lease)
            .await
    }

    /// Asks the provider about `payment`, within the provider's limits, and
    /// over by `until` (when the caller's claim on the payment ends): a
    /// request that could still be running then is not sent but deferred,
    /// so no other worker, claiming the payment after, asks while it runs.
    #[tracing::instrument(skip_all, fields(payment.provider = %payment.provider, payment.reference = %payment.reference))]
    pub async fn check_by(&self, payment: &PaymentRecord, until: Instant) -> CheckResult {
        let Some(gate) = self.gates.get(&payment.provider) else {
            return CheckResult::Unsupported("no limits for this provider".into());
        };
        let Ok(_permit) = gate.slots.acquire().await else {
            return CheckResult::Failed("the status client is closed".into());
        };
        gate.pacer.wait().await;
        let wait = match self.rate_wait(until, gate.timeout) {
            Ok(wait) => wait,
            Err(deferred) => return deferred,
        };
        if payment.provider != Provider::Plutu
            && let Err(deferred) = self
                .shared_turn(payment.provider, &payment.account, wait)
                .await
        {
            return deferred;
        }
        let result = match payment.provider {
            Provider::Portmanat => self.portmanat(payment, gate.timeout).await,
            Provider::Paysys => self.paysys(payment, gate.timeout).await,
            Provider::Plutu => CheckResult::Unsupported("Plutu has no status API".into()),
        };
        if let CheckResult::Busy { retry_after } = &result {
            gate.pacer.pause(*retry_after);
        }
        result
    }

    /// Asks Portmanat's `/check` directly about a payment the ledger does not
    /// hold yet (a return hint for an unregistered payment).
    /// Like [`StatusClient::check_by`], over by `until`.
    pub async fn portmanat_by_ids(
        &self,
        account: &Account,
        reference: &Reference,
        psp_rrn: &ProviderTxnId,
        until: Instant,
    ) -> CheckResult {
        let Some(gate) = self.gates.get(&Provider::Portmanat) else {
            return CheckResult::Unsupported("no limits for Portmanat".into());
        };
        let Ok(_permit) = gate.slots.acquire().await else {
            return CheckResult::Failed("the status client is closed".into());
        };
        gate.pacer.wait().await;
        let wait = match self.rate_wait(until, gate.timeout) {
            Ok(wait) => wait,
            Err(deferred) => return deferred,
        };
        if let Err(deferred) = self.shared_turn(Provider::Portmanat, account, wait).await {
            return deferred;
        }
        // The psp_rrn comes from an unsigned return: the answer need not
        // repeat it, but must name the reference.
        let result = self
            .portmanat_request(account, reference, psp_rrn, false, gate.timeout)
            .await;
        if let CheckResult::Busy { retry_after } = &result {
            gate.pacer.pause(*retry_after);
        }
        result
    }

    async fn portmanat(&self, payment: &PaymentRecord, timeout: Duration) -> CheckResult {
        let Some(psp_rrn) = &payment.provider_txn_id else {
            return CheckResult::Unsupported("no psp_rrn known yet".into());
        };
        self.portmanat_request(&payment.account, &payment.reference, psp_rrn, true, timeout)
            .await
    }

    async fn portmanat_request(
        &self,
        account: &Account,
        reference: &Reference,
        psp_rrn: &ProviderTxnId,
        psp_rrn_known: bool,
        timeout: Duration,
    ) -> CheckResult {
        let Some(access) = self.settings.portmanat.get(account) else {
            return CheckResult::Unsupported(format!("no Portmanat service for account {account}"));
        };
        let url = format!("{}/check", access.base_url.trim_end_matches('/'));
        let request = self
            .http
            .post(url)
            .timeout(timeout)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(portmanat::check_request_body(psp_rrn));
        let (body, observed_at) = match send(request, self.settings.clock.as_ref()).await {
            Ok(answer) => answer,
            Err(result) => return result,
        };
        let context = portmanat::CheckContext {
            account,
            reference,
            psp_rrn,
            psp_rrn_known,
        };
        match portmanat::parse_check(&body, context, observed_at) {
            Ok(portmanat::CheckAnswer::Status(observation)) => CheckResult::Answer {
                observation: Box::new(observation),
                raw: raw_json(&body),
            },
            Ok(portmanat::CheckAnswer::WrongRrn) => {
                CheckResult::Unknown("Portmanat: RRN is wrong".into())
            }
            Ok(portmanat::CheckAnswer::ValidationError(errors)) => {
                CheckResult::Failed(format!("Portmanat refused the check: {errors}"))
            }
            Err(err) => CheckResult::Failed(format!("unreadable answer: {err}")),
        }
    }

    async fn paysys(&self, payment: &PaymentRecord, timeout: Duration) -> CheckResult {
        let Some(access) = self.settings.paysys.get(&payment.account) else {
            return CheckResult::Unsupported(format!(
                "no PaySys service for account {}",
                payment.account
            ));
        };
        let request_id = uuid::Uuid::new_v4().to_string();
        let auth = paysys::auth_header(
            &access.service_id,
            &access.secret_key,
            self.settings.clock.now(),
        );
        let request = self
            .http
            .post(&access.gateway_url)
            .timeout(timeout)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .header("Auth", auth)
            .body(paysys::check_payment_body(&payment.reference, &request_id));
        let (body, observed_at) = match send(request, self.settings.clock.as_ref()).await {
            Ok(answer) => answer,
            Err(result) => return result,
        };
        let context = paysys::CheckContext {
            account: &payment.account,
            reference: &payment.reference,
            rules: &access.rules,
        };
        match paysys::parse_check_payment(&body, context, observed_at) {
            Ok(paysys::CheckAnswer::Status { observation, .. }) => CheckResult::Answer {
                observation,
                raw: raw_json(&body),
            },
            Ok(paysys::CheckAnswer::RpcError { code, message }) => {
                CheckResult::Failed(format!("PaySys error {code}: {message}"))
            }
            Err(err) => CheckResult::Failed(format!("unreadable answer: {err}")),
        }
    }
}

/// Sends a request and reads a bounded body. `Err` carries the check's
/// result for every way it can fail.
async fn send(
    request: reqwest::RequestBuilder,
    clock: &dyn Clock,
) -> Result<(Vec<u8>, Timestamp), CheckResult> {
    let mut response = request.send().await.map_err(|e| {
        CheckResult::Failed(if e.is_timeout() {
            format!(
                "timed out: {}",
                e.url().map_or_else(String::new, public_url)
            )
        } else {
            format!("request failed: {}", describe(&e))
        })
    })?;
    let status = response.status();
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        let retry_after = response
            .headers()
            .get(http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| schedule::retry_after(v, clock.now()))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(600));
        return Err(CheckResult::Busy { retry_after });
    }
    if !status.is_success() {
        return Err(CheckResult::Failed(format!(
            "HTTP {} from {}",
            status.as_u16(),
            public_url(response.url())
        )));
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_ANSWER {
                    return Err(CheckResult::Failed("answer too large".into()));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                return Err(CheckResult::Failed(if e.is_timeout() {
                    format!(
                        "timed out reading the answer of {}",
                        public_url(response.url())
                    )
                } else {
                    format!("reading the answer failed: {}", describe(&e))
                }));
            }
        }
    }
    Ok((body, clock.now()))
}

/// A URL as an error line may show it: scheme, host, port and path, without
/// user and password (a base URL may carry them) or query and fragment.
fn public_url(url: &reqwest::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    shown.set_query(None);
    shown.set_fragment(None);
    shown.to_string()
}

/// A request's error with the URL it concerns (made public) and its causes
/// ("connection refused"), which reqwest's own text leaves out.
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    if let Some(url) = error.url() {
        let public = public_url(url);
        text = text.replace(url.as_str(), &public);
        if !text.contains(&public) {
            text = format!("{public}: {text}");
        }
    }
    text
}

fn raw_json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|_| {
        serde_json::Value::String(String::from_utf8_lossy(body).chars().take(2000).collect())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_failed_request_names_its_url_but_no_credentials_or_query() {
        // Nothing listens on the discard port.
        let request = reqwest::Client::new()
            .post("http://demo-user:s3cr3t-pw@127.0.0.1:9/portmanat/check?token=q5ecr3t#frag");
        let Err(CheckResult::Failed(text)) = send(request, &paysettle_store::SystemClock).await
        else {
            panic!("a request to a closed port must fail");
        };
        assert!(
            text.contains("http://127.0.0.1:9/portmanat/check"),
            "{text}"
        );
        for secret in ["demo-user", "s3cr3t-pw", "q5ecr3t", "frag"] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(
            text.to_lowercase().contains("connect"),
            "the cause is named: {text}"
        );
    }

    /// A clock that says what the test says.
    #[derive(Debug)]
    struct At(Timestamp);

    impl Clock for At {
        fn now(&self) -> Timestamp {
            self.0
        }
    }

    #[tokio::test]
    async fn a_retry_after_date_and_the_observation_time_are_read_on_the_workers_clock() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            for answer in [
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: Wed, 21 Oct 2026 07:28:00 GMT\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
            ] {
                let (mut stream, _) = listener.accept().await.unwrap();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    let n = stream.read(&mut buf).await.unwrap();
                    assert!(n > 0, "the client closed before its request ended");
                    head.extend_from_slice(&buf[..n]);
                }
                stream.write_all(answer.as_bytes()).await.unwrap();
            }
        });
        // Half a minute before the date Portmanat named, on the worker's
        // clock (the wall clock is years away from it).
        let clock = At("2026-10-21T07:27:30Z".parse().unwrap());
        let client = reqwest::Client::new();
        let url = format!("http://{addr}/portmanat/check");
        let Err(CheckResult::Busy { retry_after }) = send(client.post(&url), &clock).await else {
            panic!("a 429 is a busy provider");
        };
        assert_eq!(retry_after, Duration::from_secs(30));
        let (body, observed_at) = send(client.post(&url), &clock).await.unwrap();
        assert_eq!((body.as_slice(), observed_at), (&b"{}"[..], clock.0));
        server.await.unwrap();
    }

    /// A 429's pause (or a queue for the slot) can eat a claim: a check
    /// that would still be running when the claim ends, when another worker
    /// may claim the payment and ask too, is deferred instead of sent.
    #[tokio::test(start_paused = true)]
    async fn a_check_that_cannot_end_within_its_claim_is_deferred_not_sent() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut settings = WorkerSettings {
            claim_lease: Duration::from_secs(10),
            ..WorkerSettings::default()
        };
        settings.portmanat.insert(
            Account::default(),
            crate::settings::PortmanatAccess {
                base_url: format!("http://{addr}"),
                accept_test_payments: false,
            },
        );
        let timeout = Duration::from_secs(2);
        settings.limits.insert(
            Provider::Portmanat,
            crate::settings::ProviderLimits {
                timeout,
                ..Default::default()
            },
        );
        let client = StatusClient::new(Arc::new(settings)).unwrap();
        let (reference, psp_rrn) = (
            Reference::parse("PM-1").unwrap(),
            ProviderTxnId::parse("psp-1").unwrap(),
        );
        // The provider asked to wait until only the timeout is left.
        client.gates[&Provider::Portmanat]
            .pacer
            .pause(Duration::from_secs(10) - timeout);
        let until = Instant::now() + Duration::from_secs(10);
        let result = client
            .portmanat_by_ids(&Account::default(), &reference, &psp_rrn, until)
            .await;
        assert!(
            matches!(result, CheckResult::Deferred { .. }),
            "{}",
            result.kind()
        );
        // Nobody was asked.
        let asked = tokio::time::timeout(Duration::from_millis(10), listener.accept()).await;
        assert!(asked.is_err(), "the request was sent");
        // With the claim's time ahead of it, the same check is sent.
        let until = Instant::now() + Duration::from_secs(10);
        let sent = tokio::spawn(async move {
            client
                .portmanat_by_ids(&Account::default(), &reference, &psp_rrn, until)
                .await
                .kind()
        });
        assert!(listener.accept().await.is_ok(), "the request is sent");
        sent.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn the_pacer_spaces_starts_and_honours_a_pause() {
        let pacer = Pacer::new(10.0);
        let start = Instant::now();
        for _ in 0..5 {
            pacer.wait().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        pacer.pause(Duration::from_secs(3));
        pacer.wait().await;
        assert_eq!(start.elapsed(), Duration::from_millis(3400));
    }
}
