//! Claims for many workers on one ledger: leased due checks, leased outbox
//! events, and a deployment-wide token bucket per provider account. The
//! PostgreSQL ledger's are in `pg`; here are the SQLite ledger's (one worker
//! per file, so they never contend, but they keep the same meaning) and the
//! bucket's arithmetic both share.

use std::time::Duration;

use jiff::Timestamp;
use paysettle_core::{Account, Provider};
use paysettle_sqlite::rusqlite::{self, Connection, TransactionBehavior};

use crate::error::StoreError;
use crate::ledger::SqliteLedger;
use crate::model::{DueCheck, OutboxEvent, RateDecision, RateLimit};
use crate::rows::{self, ms};

/// The bucket after one request at `now_ms`: refilled at the limit's rate
/// since `updated_ms` (never past `burst`), then one token taken if there
/// is one. Returns (tokens, updated at, decision).
pub(crate) fn take_token(
    tokens: f64,
    updated_ms: i64,
    now_ms: i64,
    limit: RateLimit,
) -> (f64, i64, RateDecision) {
    let burst = f64::from(limit.burst.max(1));
    // Another worker's clock may be a little ahead: time never runs back.
    let at = now_ms.max(updated_ms);
    let elapsed = (at - updated_ms) as f64 / 1000.0;
    let available = (tokens + elapsed * limit.per_second).min(burst);
    if available >= 1.0 {
        (available - 1.0, at, RateDecision::Go)
    } else {
        let wait_ms = ((1.0 - available) / limit.per_second * 1000.0).ceil() as i64;
        let until = Timestamp::from_millisecond(at.saturating_add(wait_ms.max(1)))
            .unwrap_or(Timestamp::MAX);
        (available, at, RateDecision::WaitUntil(until))
    }
}

/// A rate limit's own rules: a positive, finite rate.
pub(crate) fn check_limit(limit: RateLimit) -> Result<(), StoreError> {
    if limit.per_second.is_finite() && limit.per_second > 0.0 {
        Ok(())
    } else {
        Err(StoreError::Refused {
            reason: format!(
                "a rate limit must allow a positive number of requests per second, not {}",
                limit.per_second
            ),
        })
    }
}

/// A lease's end: `now + lease`, in milliseconds.
pub(crate) fn until_ms(now: Timestamp, lease: Duration) -> i64 {
    ms(now).saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX))
}

impl SqliteLedger {
    /// Runs `work` in an immediate transaction on a connection of its own
    /// (beside the writer thread, whose lock it waits for), off the async
    /// threads.
    async fn claim_tx<T: Send + 'static>(
        &self,
        work: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = self.path().to_path_buf();
        tokio::task::spawn_blocking(move || {
            let mut conn = Connection::open(&path)?;
            conn.busy_timeout(Duration::from_secs(5))?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let value = work(&tx)?;
            tx.commit()?;
            Ok(value)
        })
        .await
        .map_err(|_| StoreError::ReadFailed)?
    }

    /// Claims up to `limit` due checks for `owner` until `now + lease`:
    /// checks held under a lease that has not ended (by anyone, this owner
    /// too) are left alone. Recording the check's result (`record_check`, `apply_check`)
    /// releases the claim.
    pub async fn claim_due_checks(
        &self,
        owner: &str,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<DueCheck>, StoreError> {
        let owner = owner.to_owned();
        let (now, until) = (ms(now), until_ms(now, lease));
        self.claim_tx(move |tx| {
            let mut picked = tx.prepare(
                "SELECT payment_id FROM checks WHERE next_check_at_ms <= ?1 \
                 AND (claim_until_ms IS NULL OR claim_until_ms <= ?1) \
                 ORDER BY next_check_at_ms LIMIT ?2",
            )?;
            let ids: Vec<i64> = picked
                .query_map((now, limit as i64), |r| r.get(0))?
                .collect::<Result<_, _>>()?;
            let mut claim = tx.prepare(
                "UPDATE checks SET claimed_by = ?2, claim_until_ms = ?3 WHERE payment_id = ?1",
            )?;
            let mut claimed = Vec::with_capacity(ids.len());
            for id in ids {
                claim.execute((id, &owner, until))?;
                claimed.extend(rows::due_check_of(tx, id)?);
            }
            Ok(claimed)
        })
        .await
    }

    /// Claims up to `limit` unpublished events for `owner` until
    /// `now + lease`, in outbox order, never an event held under a live lease
    /// nor one of a payment whose earlier unpublished event is held. Marking
    /// them published ends the claim.
    pub async fn claim_unpublished(
        &self,
        owner: &str,
        now: Timestamp,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let owner = owner.to_owned();
        let (now, until) = (ms(now), until_ms(now, lease));
        self.claim_tx(move |tx| {
            let sql = format!(
                "SELECT {} FROM outbox o WHERE o.published_at_ms IS NULL \
                 AND (o.claim_until_ms IS NULL OR o.claim_until_ms <= ?1) \
                 AND NOT EXISTS (SELECT 1 FROM outbox e WHERE e.payment_id = o.payment_id AND e.seq < o.seq \
                 AND e.published_at_ms IS NULL AND e.claim_until_ms > ?1) \
                 ORDER BY o.seq LIMIT ?2",
                rows::OUTBOX_COLUMNS
            );
            let limit = limit as i64;
            let events = rows::outbox(tx, &sql, &[&now, &limit])?;
            let mut claim = tx.prepare(
                "UPDATE outbox SET claimed_by = ?2, claim_until_ms = ?3 WHERE seq = ?1",
            )?;
            for event in &events {
                claim.execute((event.seq, &owner, until))?;
            }
            Ok(events)
        })
        .await
    }

    /// Takes one request from the provider account's bucket, or says when
    /// to ask again.
    pub async fn take_rate(
        &self,
        provider: Provider,
        account: &Account,
        limit: RateLimit,
        now: Timestamp,
    ) -> Result<RateDecision, StoreError> {
        check_limit(limit)?;
        let account = account.as_str().to_owned();
        let now = ms(now);
        self.claim_tx(move |tx| {
            tx.execute(
                "INSERT INTO rate_buckets (provider, account, tokens, updated_at_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (provider, account) DO NOTHING",
                (provider.as_str(), &account, f64::from(limit.burst.max(1)), now),
            )?;
            let (tokens, updated): (f64, i64) = tx.query_row(
                "SELECT tokens, updated_at_ms FROM rate_buckets WHERE provider = ?1 AND account = ?2",
                (provider.as_str(), &account),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let (tokens, at, decision) = take_token(tokens, updated, now, limit);
            tx.execute(
                "UPDATE rate_buckets SET tokens = ?3, updated_at_ms = ?4 WHERE provider = ?1 AND account = ?2",
                (provider.as_str(), &account, tokens, at),
            )?;
            Ok(decision)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: f64, burst: u32) -> RateLimit {
        RateLimit { per_second, burst }
    }

    #[test]
    fn a_bucket_gives_its_burst_then_one_token_per_interval() {
        let l = limit(2.0, 3);
        let (mut tokens, mut at) = (3.0, 1_000);
        for _ in 0..3 {
            let (t, a, d) = take_token(tokens, at, 1_000, l);
            assert_eq!(d, RateDecision::Go);
            (tokens, at) = (t, a);
        }
        let (t, a, d) = take_token(tokens, at, 1_000, l);
        assert_eq!(
            d,
            RateDecision::WaitUntil(Timestamp::from_millisecond(1_500).unwrap())
        );
        let (_, _, d) = take_token(t, a, 1_500, l);
        assert_eq!(d, RateDecision::Go);
    }

    #[test]
    fn a_clock_behind_the_bucket_neither_refills_nor_rewinds_it() {
        let (tokens, at, d) = take_token(0.0, 5_000, 4_000, limit(1.0, 1));
        assert_eq!(at, 5_000);
        assert_eq!(tokens, 0.0);
        assert_eq!(
            d,
            RateDecision::WaitUntil(Timestamp::from_millisecond(6_000).unwrap())
        );
    }

    #[test]
    fn a_rate_that_is_not_positive_is_refused() {
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let err = check_limit(limit(bad, 1)).unwrap_err();
            assert!(err.to_string().contains("positive"), "{err}");
        }
    }
}
