//! When to ask a provider about a payment next: exponential backoff with
//! jitter, capped, until a deadline. Pure: the caller supplies the time and
//! the random sample, so tests (and replays) are exact.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};

/// The polling policy of one provider.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CheckPolicy {
    /// The first check after a payment is registered or first heard of.
    #[serde(with = "secs_f64")]
    pub first: Duration,
    /// Each interval is this many times the previous one.
    pub multiplier: f64,
    /// No interval is longer than this.
    #[serde(with = "secs_f64")]
    pub max_interval: Duration,
    /// The fraction of each interval that is randomised away (0 = none,
    /// 1 = "full jitter"), so that payments created together are not all
    /// checked together.
    pub jitter: f64,
    /// After this long with no final answer the payment is stale.
    #[serde(with = "secs_f64")]
    pub deadline: Duration,
}

impl Default for CheckPolicy {
    fn default() -> Self {
        CheckPolicy {
            first: Duration::from_secs(5),
            multiplier: 2.0,
            max_interval: Duration::from_secs(15 * 60),
            jitter: 0.2,
            deadline: Duration::from_secs(48 * 60 * 60),
        }
    }
}

/// Problems with a policy, found before it is used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("first must be more than zero")]
    ZeroFirst,
    #[error("multiplier must be at least 1")]
    Multiplier,
    #[error("max_interval must be at least first")]
    MaxBelowFirst,
    #[error("jitter must be between 0 and 1")]
    Jitter,
    #[error("deadline must be more than first")]
    Deadline,
}

impl CheckPolicy {
    /// Checks the policy makes sense.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.first.is_zero() {
            return Err(PolicyError::ZeroFirst);
        }
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            return Err(PolicyError::Multiplier);
        }
        if self.max_interval < self.first {
            return Err(PolicyError::MaxBelowFirst);
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(PolicyError::Jitter);
        }
        if self.deadline <= self.first {
            return Err(PolicyError::Deadline);
        }
        Ok(())
    }

    /// The wait before check number `attempt + 1` (attempt 0 is the first
    /// check). `sample` is uniform in `[0, 1)`; the wait lies in
    /// `[(1 - jitter) * base, base]` with `base = min(first * multiplier^attempt,
    /// max_interval)`.
    pub fn delay(&self, attempt: u32, sample: f64) -> Duration {
        let growth = self.multiplier.powi(attempt.min(64) as i32);
        let base = (self.first.as_secs_f64() * growth).min(self.max_interval.as_secs_f64());
        let sample = if sample.is_finite() {
            sample.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let wait = base * (1.0 - self.jitter * sample);
        Duration::from_secs_f64(wait.max(0.001))
    }

    /// When to check next, given when the payment was created and how many
    /// checks were made. Past the deadline: stale. Otherwise never later than
    /// the deadline, so the last word is asked for before giving up.
    pub fn next_check(
        &self,
        created_at: Timestamp,
        attempts: u32,
        now: Timestamp,
        sample: f64,
    ) -> NextCheck {
        let deadline = add(created_at, self.deadline);
        if now >= deadline {
            return NextCheck::Stale;
        }
        let at = add(now, self.delay(attempts, sample));
        NextCheck::At(at.min(deadline))
    }
}

fn add(at: Timestamp, wait: Duration) -> Timestamp {
    let wait = SignedDuration::try_from(wait).unwrap_or(SignedDuration::MAX);
    at.checked_add(wait).unwrap_or(Timestamp::MAX)
}

/// The schedule's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextCheck {
    /// Check again at this time.
    At(Timestamp),
    /// The deadline passed: mark the payment stale.
    Stale,
}

/// Reads a `Retry-After` header: delay-seconds or an HTTP-date.
pub fn retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = at.duration_since(now);
    Some(Duration::try_from(wait).unwrap_or(Duration::ZERO))
}

mod secs_f64 {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_f64(value.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(deserializer)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn policy() -> CheckPolicy {
        CheckPolicy {
            first: Duration::from_secs(2),
            multiplier: 2.0,
            max_interval: Duration::from_secs(60),
            jitter: 0.5,
            deadline: Duration::from_secs(3600),
        }
    }

    #[test]
    fn intervals_grow_then_cap() {
        let p = CheckPolicy {
            jitter: 0.0,
            ..policy()
        };
        let secs: Vec<u64> = (0..8).map(|a| p.delay(a, 0.7).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.delay(u32::MAX, 0.0), Duration::from_secs(60));
    }

    #[test]
    fn jitter_only_shortens_within_its_fraction() {
        let p = policy();
        assert_eq!(p.delay(3, 0.0), Duration::from_secs(16));
        assert_eq!(p.delay(3, 1.0), Duration::from_secs(8));
        assert_eq!(p.delay(3, f64::NAN), Duration::from_secs(16));
    }

    #[test]
    fn the_deadline_turns_a_payment_stale_and_bounds_the_last_check() {
        let p = policy();
        let created = Timestamp::from_second(1_000_000).unwrap();
        let almost = created
            .checked_add(SignedDuration::from_secs(3590))
            .unwrap();
        assert_eq!(
            p.next_check(created, 20, almost, 0.0),
            NextCheck::At(
                created
                    .checked_add(SignedDuration::from_secs(3600))
                    .unwrap()
            )
        );
        let past = created
            .checked_add(SignedDuration::from_secs(3600))
            .unwrap();
        assert_eq!(p.next_check(created, 20, past, 0.0), NextCheck::Stale);
        assert_eq!(
            p.next_check(created, 0, created, 0.0),
            NextCheck::At(created.checked_add(SignedDuration::from_secs(2)).unwrap())
        );
    }

    #[test]
    fn policies_that_make_no_sense_are_refused() {
        assert_eq!(
            CheckPolicy {
                first: Duration::ZERO,
                ..policy()
            }
            .validate(),
            Err(PolicyError::ZeroFirst)
        );
        assert_eq!(
            CheckPolicy {
                multiplier: 0.5,
                ..policy()
            }
            .validate(),
            Err(PolicyError::Multiplier)
        );
        assert_eq!(
            CheckPolicy {
                multiplier: f64::NAN,
                ..policy()
            }
            .validate(),
            Err(PolicyError::Multiplier)
        );
        assert_eq!(
            CheckPolicy {
                max_interval: Duration::from_secs(1),
                ..policy()
            }
            .validate(),
            Err(PolicyError::MaxBelowFirst)
        );
        assert_eq!(
            CheckPolicy {
                jitter: 1.5,
                ..policy()
            }
            .validate(),
            Err(PolicyError::Jitter)
        );
        assert_eq!(
            CheckPolicy {
                deadline: Duration::from_secs(1),
                ..policy()
            }
            .validate(),
            Err(PolicyError::Deadline)
        );
        assert_eq!(CheckPolicy::default().validate(), Ok(()));
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = Timestamp::from_second(1_445_412_480).unwrap(); // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
        assert_eq!(retry_after("99999999999999999999", now), None);
    }

    proptest! {
        #[test]
        fn delays_stay_within_bounds(attempt in 0u32..200, sample in 0.0f64..1.0) {
            let p = policy();
            let d = p.delay(attempt, sample);
            prop_assert!(d <= p.max_interval);
            prop_assert!(d >= Duration::from_secs_f64(p.first.as_secs_f64() * (1.0 - p.jitter)).min(p.max_interval));
        }
    }
}
