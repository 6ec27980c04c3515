//! The body budget: how many bytes of request bodies are being read at once,
//! all connections together and per client address, so that what bodies cost
//! in memory is bounded whatever the number of connections.
//!
//! A request reserves its declared length (or the body limit when it
//! declares none) before a byte of its body is read, and gives it back when
//! its answer is ready. A reservation that does not fit is refused at once
//! (503 `busy` with `Retry-After`): waiting would let a flood hold genuine
//! callbacks in line.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

use crate::telemetry;

/// The shared budget.
#[derive(Debug)]
pub(crate) struct BodyBudget {
    total: usize,
    per_client: usize,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// Which budget a reservation did not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exhausted {
    Client,
    Total,
}

impl Exhausted {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Exhausted::Client => "client",
            Exhausted::Total => "total",
        }
    }
}

/// Bytes held until dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<BodyBudget>,
    client: IpAddr,
    bytes: usize,
}

impl BodyBudget {
    pub(crate) fn new(total: usize, per_client: usize) -> Arc<BodyBudget> {
        Arc::new(BodyBudget {
            total,
            per_client,
            held: Mutex::new(Held::default()),
        })
    }

    /// Reserves `bytes` for `client`, or says which budget is spent.
    pub(crate) fn reserve(
        self: &Arc<Self>,
        client: IpAddr,
        bytes: usize,
    ) -> Result<Reservation, Exhausted> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = held.by_client.get(&client).copied().unwrap_or(0);
        if mine.saturating_add(bytes) > self.per_client {
            return Err(Exhausted::Client);
        }
        if held.total.saturating_add(bytes) > self.total {
            return Err(Exhausted::Total);
        }
        held.total += bytes;
        *held.by_client.entry(client).or_insert(0) += bytes;
        telemetry::body_bytes_reserved(bytes, true);
        Ok(Reservation {
            budget: self.clone(),
            client,
            bytes,
        })
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        self.held
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut held = self
            .budget
            .held
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        held.total = held.total.saturating_sub(self.bytes);
        telemetry::body_bytes_reserved(self.bytes, false);
        if let Some(mine) = held.by_client.get_mut(&self.client) {
            *mine = mine.saturating_sub(self.bytes);
            if *mine == 0 {
                held.by_client.remove(&self.client);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn reservations_fit_both_budgets_and_are_given_back() {
        let budget = BodyBudget::new(100, 60);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let first = budget.reserve(a, 50).unwrap();
        assert_eq!(budget.reserve(a, 20).unwrap_err(), Exhausted::Client);
        let second = budget.reserve(b, 50).unwrap();
        assert_eq!(budget.reserve(b, 1).unwrap_err(), Exhausted::Total);
        drop(first);
        let third = budget.reserve(b, 10).unwrap();
        drop((second, third));
        assert_eq!(budget.held(), 0);
        assert!(budget.held.lock().unwrap().by_client.is_empty());
    }
}
