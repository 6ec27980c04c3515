//! The demo's autopilot: creates payments at a steady rate, cycling through
//! Portmanat, PaySys and Plutu (alternating Plutu's gateways), with amounts
//! drawn from the seeded RNG. Each payment then lives exactly as one a shop
//! created: the scenario draws its outcome, pending time and callback fate.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::engine::Engine;
use crate::model::{PlutuGateway, Provider};
use crate::money::Currency;
use crate::sim::{NewPayment, creation};

/// The `n`-th autopilot payment.
fn nth_payment<R: Rng + ?Sized>(n: u64, rng: &mut R) -> NewPayment {
    let provider = Provider::ALL[(n % 3) as usize];
    let reference = format!("auto-{n:06}");
    match provider {
        Provider::Portmanat => NewPayment::new(provider, reference, rng.random_range(100..=50_000)),
        Provider::Paysys => {
            NewPayment::new(provider, reference, rng.random_range(1_000..=50_000) * 100)
                .currency(Currency::Uzs)
        }
        Provider::Plutu => {
            if (n / 3).is_multiple_of(2) {
                NewPayment::new(provider, reference, rng.random_range(100..=20_000))
                    .gateway(PlutuGateway::Mpgs)
            } else {
                NewPayment::new(provider, reference, rng.random_range(100..=20_000) * 10)
                    .gateway(PlutuGateway::Localbankcards)
            }
        }
    }
}

/// Creates `rate` payments per second until the simulator stops.
pub(crate) async fn run(engine: Arc<Engine>, rate: f64) {
    let period = Duration::from_secs_f64((1.0 / rate).max(0.001));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    info!(rate, "autopilot started");
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            () = engine.cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        n += 1;
        let new = engine.with_rng(|rng| nth_payment(n, rng));
        match creation(&engine, new).and_then(|c| engine.create(c)) {
            Ok(view) => debug!(payment.id = %view.id, "autopilot created a payment"),
            Err(err) => warn!(%err, "autopilot could not create a payment"),
        }
    }
    info!(created = n, "autopilot stopped");
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn cycles_providers_and_gateways() {
        let mut rng = StdRng::seed_from_u64(1);
        let made: Vec<NewPayment> = (0..6).map(|n| nth_payment(n, &mut rng)).collect();
        let providers: Vec<Provider> = made.iter().map(|p| p.provider).collect();
        assert_eq!(providers[..3], Provider::ALL);
        assert_eq!(providers[3..], Provider::ALL);
        assert_eq!(made[2].gateway, Some(PlutuGateway::Mpgs));
        assert_eq!(made[5].gateway, Some(PlutuGateway::Localbankcards));
        assert_eq!(
            made[5].amount_minor % 10,
            0,
            "LYD amounts have two decimals"
        );
        assert!(
            made[1].amount_minor >= 100_000,
            "within PaySys's UZS minimum"
        );
    }
}
