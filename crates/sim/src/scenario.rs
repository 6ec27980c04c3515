//! Scenario controls: how the simulated providers misbehave. Response latency,
//! injected errors, how long payments stay pending, the mix of outcomes and
//! what happens to callbacks, each drawn from the simulator's seeded RNG.
//!
//! A [`Scenario`] applies to all providers; a [`ScenarioPatch`] replaces whole
//! sections of it for one provider (from `[<provider>.scenario]` in the config
//! file or from `PUT /_sim/scenario`). A partial section is filled with that
//! section's defaults, not with the global values, so what a patch says is all
//! there is to know about that section.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::model::Outcome;

/// How long the simulator waits before answering a provider API request.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Latency {
    /// Always the same delay.
    Fixed {
        /// Milliseconds added to every answer.
        ms: u64,
    },
    /// Uniformly drawn between two bounds.
    Uniform {
        /// Smallest delay in milliseconds.
        min_ms: u64,
        /// Largest delay in milliseconds.
        max_ms: u64,
    },
    /// A long tail like a real gateway's: exponential with a mean, capped.
    Exponential {
        /// Mean delay in milliseconds.
        mean_ms: u64,
        /// No delay exceeds this.
        max_ms: u64,
    },
}

impl Default for Latency {
    fn default() -> Self {
        Latency::Fixed { ms: 0 }
    }
}

impl Latency {
    /// Draws one delay.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let ms = match *self {
            Latency::Fixed { ms } => ms,
            Latency::Uniform { min_ms, max_ms } => {
                if max_ms <= min_ms {
                    min_ms
                } else {
                    rng.random_range(min_ms..=max_ms)
                }
            }
            Latency::Exponential { mean_ms, max_ms } => {
                let u: f64 = rng.random_range(f64::MIN_POSITIVE..1.0);
                let drawn = -(mean_ms as f64) * u.ln();
                (drawn as u64).min(max_ms)
            }
        };
        Duration::from_millis(ms)
    }

    fn validate(&self) -> Result<(), String> {
        match *self {
            Latency::Uniform { min_ms, max_ms } if min_ms > max_ms => {
                Err(format!("latency: min_ms {min_ms} exceeds max_ms {max_ms}"))
            }
            _ => Ok(()),
        }
    }
}

/// Errors injected into provider API answers, each a probability per request.
/// They are drawn once per request from one uniform number, so their sum is
/// the share of requests that misbehave and must not exceed 1.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Answer HTTP 500 with a short HTML error page.
    pub http_500: f64,
    /// Never answer: hold the request for `timeout_hold_ms`, then close the
    /// connection without a response.
    pub timeout: f64,
    /// Answer 200 with a body that is not what the protocol promises (the
    /// real answer cut short, or an HTML page where JSON was expected).
    pub garbage: f64,
    /// Answer 429 with `Retry-After: retry_after_secs`.
    pub too_many_requests: f64,
    /// Seconds sent in `Retry-After` with a 429.
    pub retry_after_secs: u64,
    /// How long a "timeout" holds the request before dropping the connection.
    pub timeout_hold_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            http_500: 0.0,
            timeout: 0.0,
            garbage: 0.0,
            too_many_requests: 0.0,
            retry_after_secs: 1,
            timeout_hold_ms: 30_000,
        }
    }
}

/// One injected error, as drawn by [`Faults::roll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// HTTP 500.
    Http500,
    /// No answer; the connection is closed after a hold.
    Timeout,
    /// A 200 whose body cannot be parsed as the protocol says.
    Garbage,
    /// HTTP 429 with `Retry-After`.
    TooManyRequests,
}

impl Faults {
    /// Draws whether this request misbehaves, and how.
    pub fn roll<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<Fault> {
        if self.http_500 + self.timeout + self.garbage + self.too_many_requests <= 0.0 {
            return None;
        }
        let u: f64 = rng.random();
        let mut edge = self.http_500;
        if u < edge {
            return Some(Fault::Http500);
        }
        edge += self.timeout;
        if u < edge {
            return Some(Fault::Timeout);
        }
        edge += self.garbage;
        if u < edge {
            return Some(Fault::Garbage);
        }
        edge += self.too_many_requests;
        (u < edge).then_some(Fault::TooManyRequests)
    }

    fn validate(&self) -> Result<(), String> {
        let rates = [
            ("http_500", self.http_500),
            ("timeout", self.timeout),
            ("garbage", self.garbage),
            ("too_many_requests", self.too_many_requests),
        ];
        for (name, rate) in rates {
            check_probability(&format!("faults.{name}"), rate)?;
        }
        let sum: f64 = rates.iter().map(|(_, rate)| rate).sum();
        if sum > 1.0 + 1e-9 {
            return Err(format!("faults: the rates add up to {sum}, more than 1"));
        }
        Ok(())
    }
}

/// How long a payment stays pending before the simulated customer finishes
/// paying (uniformly drawn per payment).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Pending {
    /// Shortest pending time in milliseconds.
    pub min_ms: u64,
    /// Longest pending time in milliseconds.
    pub max_ms: u64,
}

impl Default for Pending {
    fn default() -> Self {
        Pending {
            min_ms: 2_000,
            max_ms: 8_000,
        }
    }
}

impl Pending {
    /// Draws one pending time.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let ms = if self.max_ms <= self.min_ms {
            self.min_ms
        } else {
            rng.random_range(self.min_ms..=self.max_ms)
        };
        Duration::from_millis(ms)
    }
}

/// Relative weights of how payments end. A refund is a success followed,
/// one more pending time later, by a full refund; only PaySys can report
/// one, so for Portmanat and Plutu the refund weight counts as success.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OutcomeMix {
    /// Weight of approved payments.
    pub success: u32,
    /// Weight of declined payments.
    pub failure: u32,
    /// Weight of payments the customer cancels.
    pub cancel: u32,
    /// Weight of payments that succeed and are then refunded (PaySys).
    pub refund: u32,
}

impl Default for OutcomeMix {
    fn default() -> Self {
        OutcomeMix {
            success: 85,
            failure: 8,
            cancel: 5,
            refund: 2,
        }
    }
}

impl OutcomeMix {
    /// Draws one outcome; `can_refund` is false for providers that cannot
    /// report a refund.
    pub fn pick<R: Rng + ?Sized>(&self, rng: &mut R, can_refund: bool) -> Outcome {
        let total = u64::from(self.success)
            + u64::from(self.failure)
            + u64::from(self.cancel)
            + u64::from(self.refund);
        if total == 0 {
            return Outcome::Success;
        }
        let mut draw = rng.random_range(0..total);
        for (weight, outcome) in [
            (self.success, Outcome::Success),
            (self.failure, Outcome::Failure),
            (self.cancel, Outcome::Cancel),
            (self.refund, Outcome::Refund),
        ] {
            let weight = u64::from(weight);
            if draw < weight {
                return if outcome == Outcome::Refund && !can_refund {
                    Outcome::Success
                } else {
                    outcome
                };
            }
            draw -= weight;
        }
        Outcome::Success
    }

    fn validate(&self) -> Result<(), String> {
        if self.success + self.failure + self.cancel + self.refund == 0 {
            return Err("outcomes: every weight is 0".to_owned());
        }
        Ok(())
    }
}

/// Misbehaviour of the callbacks the simulator sends (PaySys notifications,
/// Plutu callbacks, the Portmanat browser redirect), each a probability drawn
/// per callback.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallbackFaults {
    /// Never sent (recorded as lost).
    pub lost: f64,
    /// Sent twice.
    pub duplicated: f64,
    /// Sent `delay_ms` later than due.
    pub delayed: f64,
    /// The extra wait of a delayed callback.
    pub delay_ms: u64,
    /// PaySys: the "awaiting" notification is held back and sent
    /// `reorder_gap_ms` after the final one. The other providers send one
    /// callback per payment, so there is no order to break.
    pub out_of_order: f64,
    /// Gap between the final notification and a held-back earlier one.
    pub reorder_gap_ms: u64,
    /// Signed with the wrong key: a wrong `hashed` (Plutu) or wrong Basic
    /// credentials (PaySys). Portmanat's redirect carries no signature, so
    /// there it changes nothing.
    pub wrongly_signed: f64,
    /// Besides the genuine callbacks, one more from someone without the key,
    /// sent while the payment is still pending: it claims the opposite of the
    /// outcome the payment is heading for (a decline as approved, an approval
    /// as declined) and is signed with a wrong key. Drawn once per payment;
    /// Portmanat's redirect has no signature to get wrong, so not there.
    pub forged: f64,
}

impl Default for CallbackFaults {
    fn default() -> Self {
        CallbackFaults {
            lost: 0.0,
            duplicated: 0.0,
            delayed: 0.0,
            delay_ms: 5_000,
            out_of_order: 0.0,
            reorder_gap_ms: 1_000,
            wrongly_signed: 0.0,
            forged: 0.0,
        }
    }
}

impl CallbackFaults {
    fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("lost", self.lost),
            ("duplicated", self.duplicated),
            ("delayed", self.delayed),
            ("out_of_order", self.out_of_order),
            ("wrongly_signed", self.wrongly_signed),
            ("forged", self.forged),
        ] {
            check_probability(&format!("callbacks.{name}"), rate)?;
        }
        Ok(())
    }
}

/// What the status answers say beyond the payment's state. Only Portmanat's
/// `/check` has these shapes; the other providers ignore this section.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Answers {
    /// The merchant's service is in test mode: `/check` bodies carry
    /// `"service": {"test": 1, …}` (0 otherwise).
    pub test_service: bool,
    /// Probability per `/check` that an `OK` answer comes without its
    /// `body` (the code and description only): an answer that names no
    /// payment.
    pub without_body: f64,
    /// Probability per `/check` that an `OK` answer's body leaves out
    /// `client_rrn`: an answer that does not say which payment it is about.
    pub without_client_rrn: f64,
}

impl Answers {
    fn validate(&self) -> Result<(), String> {
        check_probability("answers.without_body", self.without_body)?;
        check_probability("answers.without_client_rrn", self.without_client_rrn)
    }
}

fn check_probability(name: &str, rate: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(format!(
            "{name}: {rate} is not a probability between 0 and 1"
        ))
    }
}

/// Everything that decides how a provider behaves beyond its protocol.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Delay before each provider API answer.
    pub latency: Latency,
    /// Injected API errors.
    pub faults: Faults,
    /// How long payments stay pending.
    pub pending: Pending,
    /// How payments end.
    pub outcomes: OutcomeMix,
    /// What happens to callbacks.
    pub callbacks: CallbackFaults,
    /// What status answers say beyond the state.
    pub answers: Answers,
}

impl Scenario {
    /// This scenario with the sections the patch names replaced.
    pub fn patched(&self, patch: &ScenarioPatch) -> Scenario {
        Scenario {
            latency: patch.latency.unwrap_or(self.latency),
            faults: patch.faults.unwrap_or(self.faults),
            pending: patch.pending.unwrap_or(self.pending),
            outcomes: patch.outcomes.unwrap_or(self.outcomes),
            callbacks: patch.callbacks.unwrap_or(self.callbacks),
            answers: patch.answers.unwrap_or(self.answers),
        }
    }

    /// Checks rates and bounds, naming the first offending key.
    pub fn validate(&self) -> Result<(), String> {
        self.latency.validate()?;
        self.faults.validate()?;
        if self.pending.min_ms > self.pending.max_ms {
            return Err(format!(
                "pending: min_ms {} exceeds max_ms {}",
                self.pending.min_ms, self.pending.max_ms
            ));
        }
        self.outcomes.validate()?;
        self.callbacks.validate()?;
        self.answers.validate()
    }
}

/// Whole sections that replace the global scenario's for one provider, or,
/// sent to the control API without a provider, the global ones.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScenarioPatch {
    /// Replaces `latency`.
    pub latency: Option<Latency>,
    /// Replaces `faults`.
    pub faults: Option<Faults>,
    /// Replaces `pending`.
    pub pending: Option<Pending>,
    /// Replaces `outcomes`.
    pub outcomes: Option<OutcomeMix>,
    /// Replaces `callbacks`.
    pub callbacks: Option<CallbackFaults>,
    /// Replaces `answers`.
    pub answers: Option<Answers>,
}

impl ScenarioPatch {
    /// The patch that replaces the sections `other` names, on top of `self`.
    pub fn merged(&self, other: &ScenarioPatch) -> ScenarioPatch {
        ScenarioPatch {
            latency: other.latency.or(self.latency),
            faults: other.faults.or(self.faults),
            pending: other.pending.or(self.pending),
            outcomes: other.outcomes.or(self.outcomes),
            callbacks: other.callbacks.or(self.callbacks),
            answers: other.answers.or(self.answers),
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn fault_rates_are_respected() {
        let faults = Faults {
            http_500: 0.25,
            too_many_requests: 0.25,
            ..Faults::default()
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = [0usize; 3];
        for _ in 0..10_000 {
            match faults.roll(&mut rng) {
                Some(Fault::Http500) => counts[0] += 1,
                Some(Fault::TooManyRequests) => counts[1] += 1,
                None => counts[2] += 1,
                Some(other) => panic!("unexpected {other:?}"),
            }
        }
        assert!((2_200..2_800).contains(&counts[0]), "{counts:?}");
        assert!((2_200..2_800).contains(&counts[1]), "{counts:?}");
        assert!((4_700..5_300).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn no_faults_draws_nothing() {
        let mut rng = StdRng::seed_from_u64(1);
        assert!((0..1000).all(|_| Faults::default().roll(&mut rng).is_none()));
    }

    #[test]
    fn refund_counts_as_success_where_impossible() {
        let mix = OutcomeMix {
            success: 0,
            failure: 0,
            cancel: 0,
            refund: 1,
        };
        let mut rng = StdRng::seed_from_u64(3);
        assert_eq!(mix.pick(&mut rng, true), Outcome::Refund);
        assert_eq!(mix.pick(&mut rng, false), Outcome::Success);
    }

    #[test]
    fn latency_stays_in_bounds() {
        let mut rng = StdRng::seed_from_u64(5);
        let uniform = Latency::Uniform {
            min_ms: 10,
            max_ms: 20,
        };
        let exponential = Latency::Exponential {
            mean_ms: 50,
            max_ms: 120,
        };
        for _ in 0..1000 {
            let d = uniform.sample(&mut rng).as_millis();
            assert!((10..=20).contains(&d));
            assert!(exponential.sample(&mut rng).as_millis() <= 120);
        }
        assert_eq!(
            Latency::Fixed { ms: 7 }.sample(&mut rng),
            Duration::from_millis(7)
        );
    }

    #[test]
    fn validation_names_the_key() {
        let mut scenario = Scenario::default();
        assert_eq!(scenario.validate(), Ok(()));
        scenario.faults.http_500 = 0.7;
        scenario.faults.timeout = 0.7;
        assert!(scenario.validate().unwrap_err().contains("add up"));
        scenario.faults = Faults::default();
        scenario.callbacks.lost = 1.5;
        assert!(scenario.validate().unwrap_err().contains("callbacks.lost"));
        scenario.callbacks.lost = 0.0;
        scenario.pending = Pending {
            min_ms: 5,
            max_ms: 1,
        };
        assert!(scenario.validate().unwrap_err().contains("pending"));
    }

    #[test]
    fn a_patch_replaces_whole_sections() {
        let patch = ScenarioPatch {
            faults: Some(Faults {
                garbage: 1.0,
                ..Faults::default()
            }),
            ..ScenarioPatch::default()
        };
        let mut global = Scenario::default();
        global.faults.retry_after_secs = 9;
        global.pending.min_ms = 1;
        let patched = global.patched(&patch);
        assert_eq!(patched.faults.garbage, 1.0);
        assert_eq!(
            patched.faults.retry_after_secs, 1,
            "the section's default, not the global value"
        );
        assert_eq!(
            patched.pending.min_ms, 1,
            "sections the patch does not name stay"
        );
    }
}
