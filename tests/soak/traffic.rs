//! The shop's side: payments started at the simulated providers, each
//! registered through the shop API as a shop would, retried while the worker
//! (which serves the API) is down.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use paysettle_sim::model::{PlutuGateway, Provider};
use paysettle_sim::{NewPayment, SimHandle};
use rand::Rng;
use serde_json::json;
use tokio::task::JoinSet;

/// How long one registration keeps being retried before the run fails.
const REGISTER_WITHIN: Duration = Duration::from_secs(120);

pub struct Traffic {
    sim: Arc<SimHandle>,
    http: reqwest::Client,
    /// The shop API of each replica (one without replicas).
    shops: Vec<SocketAddr>,
    run: String,
    retries: Arc<AtomicU64>,
    problems: Arc<Mutex<Vec<String>>>,
    registrations: JoinSet<()>,
    pub created: usize,
}

impl Traffic {
    pub fn new(sim: Arc<SimHandle>, shops: Vec<SocketAddr>, run: &str) -> Traffic {
        assert!(!shops.is_empty(), "no shop API to register through");
        Traffic {
            sim,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .unwrap(),
            shops,
            run: run.to_owned(),
            retries: Arc::default(),
            problems: Arc::default(),
            registrations: JoinSet::new(),
            created: 0,
        }
    }

    /// Starts one payment at a provider drawn at random; its outcome and
    /// pending time come from the simulator's scenario.
    pub fn pay(&mut self, rng: &mut impl Rng) {
        let n = self.created;
        self.created += 1;
        let reference = format!("{}-{n}", self.run);
        let new = match rng.random_range(0..3) {
            0 => NewPayment::new(
                Provider::Portmanat,
                &reference,
                rng.random_range(100..=500_000),
            ),
            1 => NewPayment::new(
                Provider::Paysys,
                &reference,
                rng.random_range(1_000..=500_000) * 100,
            ),
            // Dinars have three decimals, Plutu's amounts at most two.
            _ if rng.random_bool(0.25) => NewPayment::new(
                Provider::Plutu,
                &reference,
                rng.random_range(100..=90_000) * 10,
            )
            .gateway(PlutuGateway::Localbankcards),
            _ => NewPayment::new(Provider::Plutu, &reference, rng.random_range(100..=100_000)),
        };
        let view = self.sim.create_payment(new).unwrap();
        let mut body = json!({
            "provider": view.provider,
            "reference": view.reference,
            "amount": view.amount_minor,
            "currency": view.currency,
        });
        // Portmanat's /check is asked by psp_rrn, which the shop gets when it
        // starts the payment.
        if view.provider == Provider::Portmanat {
            body["provider_transaction_id"] = json!(view.provider_txn_id);
        }
        // Behind the shop's Service a request lands on any replica: each
        // payment starts at the next one, and a retry goes to the one after.
        let urls: Vec<String> = self
            .shops
            .iter()
            .map(|shop| format!("http://{shop}/v1/payments"))
            .collect();
        let http = self.http.clone();
        let (retries, problems) = (Arc::clone(&self.retries), Arc::clone(&self.problems));
        self.registrations.spawn(async move {
            let deadline = tokio::time::Instant::now() + REGISTER_WITHIN;
            for attempt in n.. {
                let url = &urls[attempt % urls.len()];
                match http.post(url).json(&body).send().await {
                    Ok(answer) if answer.status().is_success() => return,
                    Ok(answer) if answer.status().is_client_error() => {
                        let status = answer.status();
                        let text = answer.text().await.unwrap_or_default();
                        problems
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(format!("the shop API refused {body}: {status} {text}"));
                        return;
                    }
                    // Down, dying or not yet up: the shop tries again.
                    _ => {}
                }
                if tokio::time::Instant::now() >= deadline {
                    problems
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(format!(
                            "{body} could not be registered within {REGISTER_WITHIN:?}"
                        ));
                    return;
                }
                retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }

    /// Waits for every registration; returns how many attempts were retried
    /// and what the shop API refused.
    pub async fn finish(mut self) -> (u64, Vec<String>) {
        while let Some(joined) = self.registrations.join_next().await {
            joined.unwrap();
        }
        let problems =
            std::mem::take(&mut *self.problems.lock().unwrap_or_else(PoisonError::into_inner));
        (self.retries.load(Ordering::Relaxed), problems)
    }
}
