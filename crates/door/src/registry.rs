//! Who holds which connections: admission by client address, and which
//! connection gives way when the listener is full.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::settings::{DoorMetrics, DoorSettings};

/// Why a new connection was closed unanswered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Its client address already holds its share of connections.
    ClientShare,
    /// The listener is full and the newcomer is among its heaviest clients.
    Capacity,
}

impl Refused {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::ClientShare => "client_share",
            Refused::Capacity => "capacity",
        }
    }
}

/// What a connection's watchdog follows: requests in flight, and since when
/// none has been.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Activity {
    pub(crate) in_flight: usize,
    pub(crate) idle_since: Instant,
    /// Whether a request has started on this connection.
    pub(crate) served: bool,
}

/// One admitted connection, in the registry until it is dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    id: u64,
    client: IpAddr,
    pub(crate) opened: Instant,
    pub(crate) activity: watch::Sender<Activity>,
    in_flight: AtomicUsize,
    /// Cancelled when the connection must give way to a newcomer.
    pub(crate) evict: CancellationToken,
    evicting: AtomicBool,
}

impl Slot {
    pub(crate) fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
    }

    /// A request starts; the returned guard ends it.
    pub(crate) fn begin(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.activity.send_modify(|a| {
            a.in_flight += 1;
            a.served = true;
        });
        RequestGuard(self.clone())
    }
}

/// A connection's place in the registry, given back when dropped.
#[derive(Debug)]
pub(crate) struct Ticket {
    pub(crate) slot: Arc<Slot>,
    registry: Arc<Registry>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let slot = &self.slot;
        self.registry
            .remove(slot.client, slot.id, slot.evicting.load(Ordering::Acquire));
    }
}

/// Ends a request when dropped, however its future ends.
#[derive(Debug)]
pub(crate) struct RequestGuard(Arc<Slot>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.0.activity.send_modify(|a| {
            a.in_flight = a.in_flight.saturating_sub(1);
            if a.in_flight == 0 {
                a.idle_since = Instant::now();
            }
        });
    }
}

#[derive(Debug, Default)]
struct Holders {
    /// Admitted connections by client, until their tickets are dropped.
    by_client: HashMap<IpAddr, Vec<Arc<Slot>>>,
    total: usize,
    /// Connections asked to give way that have not closed yet.
    evicting: usize,
    next_id: u64,
}

/// The listener's connections by client address.
#[derive(Debug)]
pub(crate) struct Registry {
    holders: Mutex<Holders>,
    max_connections: usize,
    max_per_client: usize,
    /// Connections open at most, those giving way included: a bound on file
    /// descriptors while evicted connections finish.
    hard_limit: usize,
    metrics: DoorMetrics,
}

impl Registry {
    pub(crate) fn new(settings: &DoorSettings) -> Registry {
        Registry {
            holders: Mutex::new(Holders::default()),
            max_connections: settings.max_connections,
            max_per_client: settings.max_per_client,
            hard_limit: settings
                .max_connections
                .saturating_add(settings.max_connections / 4)
                .saturating_add(1),
            metrics: settings.metrics.clone(),
        }
    }

    /// Admits a connection from `client`, making room by asking another
    /// client's connection to close when the listener is full, or says why
    /// not.
    pub(crate) fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Ticket, Refused> {
        let mut holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        let mine = holders.by_client.get(&client).map_or(0, Vec::len);
        if mine >= self.max_per_client {
            return Err(Refused::ClientShare);
        }
        if holders.total >= self.hard_limit {
            return Err(Refused::Capacity);
        }
        if holders.total - holders.evicting >= self.max_connections {
            let victim = pick_victim(&holders, client, mine).ok_or(Refused::Capacity)?;
            victim.evicting.store(true, Ordering::Release);
            holders.evicting += 1;
            victim.evict.cancel();
            self.metrics.evicted();
        }
        let id = holders.next_id;
        holders.next_id += 1;
        let now = Instant::now();
        let (activity, _) = watch::channel(Activity {
            in_flight: 0,
            idle_since: now,
            served: false,
        });
        let slot = Arc::new(Slot {
            id,
            client,
            opened: now,
            activity,
            in_flight: AtomicUsize::new(0),
            evict: CancellationToken::new(),
            evicting: AtomicBool::new(false),
        });
        holders
            .by_client
            .entry(client)
            .or_default()
            .push(slot.clone());
        holders.total += 1;
        self.metrics.opened();
        Ok(Ticket {
            slot,
            registry: self.clone(),
        })
    }

    fn remove(&self, client: IpAddr, id: u64, was_evicting: bool) {
        let mut holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slots) = holders.by_client.get_mut(&client) {
            slots.retain(|slot| slot.id != id);
            if slots.is_empty() {
                holders.by_client.remove(&client);
            }
        }
        holders.total = holders.total.saturating_sub(1);
        if was_evicting {
            holders.evicting = holders.evicting.saturating_sub(1);
        }
        self.metrics.closed();
    }

    #[cfg(test)]
    fn open(&self) -> (usize, usize) {
        let holders = self.holders.lock().unwrap_or_else(PoisonError::into_inner);
        (holders.total, holders.evicting)
    }
}

/// The connection that gives way to a newcomer from `client` (holding
/// `mine`), or `None` when the newcomer itself holds as much as anyone
/// (then it is refused). The heaviest other client gives way: if it holds
/// more than the newcomer would, one of its connections, idle before busy,
/// oldest first; if it holds just as much (everyone holds about the same),
/// the longest idle connection among the heaviest clients.
fn pick_victim(holders: &Holders, client: IpAddr, mine: usize) -> Option<Arc<Slot>> {
    let live = |slots: &Vec<Arc<Slot>>| -> Vec<Arc<Slot>> {
        slots
            .iter()
            .filter(|s| !s.evicting.load(Ordering::Acquire))
            .cloned()
            .collect()
    };
    let others: Vec<Vec<Arc<Slot>>> = holders
        .by_client
        .iter()
        .filter(|(other, _)| **other != client)
        .map(|(_, slots)| live(slots))
        .collect();
    let heaviest = others.iter().map(Vec::len).max().unwrap_or(0);
    if heaviest <= mine {
        return None;
    }
    if heaviest > mine + 1 {
        return others
            .into_iter()
            .find(|slots| slots.len() == heaviest)?
            .into_iter()
            .min_by_key(|s| (!s.is_idle(), s.opened));
    }
    others
        .into_iter()
        .filter(|slots| slots.len() == heaviest)
        .flatten()
        .filter(|s| s.is_idle())
        .min_by_key(|s| s.activity.borrow().idle_since)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn registry(max: usize, per_client: usize) -> Arc<Registry> {
        let mut settings = DoorSettings::new("test", "paysettle_door_test", 65_536);
        settings.max_connections = max;
        settings.max_per_client = per_client;
        Arc::new(Registry::new(&settings))
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    #[tokio::test]
    async fn a_client_over_its_share_is_refused() {
        let registry = registry(100, 3);
        let held: Vec<_> = (0..3).map(|_| registry.admit(ip(2)).unwrap()).collect();
        assert_eq!(registry.admit(ip(2)).unwrap_err(), Refused::ClientShare);
        // Another client is not affected.
        let other = registry.admit(ip(1)).unwrap();
        drop(held);
        assert_eq!(registry.open(), (1, 0));
        drop(other);
        assert_eq!(registry.open(), (0, 0));
    }

    #[tokio::test]
    async fn when_full_the_heaviest_client_gives_way_idle_first() {
        let registry = registry(4, 4);
        let heavy: Vec<_> = (0..3).map(|_| registry.admit(ip(2)).unwrap()).collect();
        // The heavy client's oldest is busy; the next one is idle.
        let _busy = heavy[0].slot.begin();
        let light = registry.admit(ip(3)).unwrap();
        let newcomer = registry.admit(ip(1)).unwrap();
        assert!(!heavy[0].slot.evict.is_cancelled(), "a busy one goes last");
        assert!(
            heavy[1].slot.evict.is_cancelled(),
            "the idle, oldest one goes"
        );
        assert!(!light.slot.evict.is_cancelled());
        assert_eq!(registry.open(), (5, 1));
        // Now the heavy client holds two: a second newcomer from the same
        // address would hold two as well, so the heavy client's longest
        // idle connection goes.
        let again = registry.admit(ip(1)).unwrap();
        assert!(heavy[2].slot.evict.is_cancelled());
        assert_eq!(registry.open(), (6, 2));
        // A third would hold more than anyone: refused (and the hard
        // limit is reached anyway).
        assert_eq!(registry.admit(ip(1)).unwrap_err(), Refused::Capacity);
        drop((again, newcomer, light, heavy));
        assert_eq!(registry.open(), (0, 0));
    }

    #[tokio::test]
    async fn the_heaviest_client_is_refused_rather_than_evicting() {
        let registry = registry(3, 10);
        let _held: Vec<_> = (0..3).map(|_| registry.admit(ip(2)).unwrap()).collect();
        assert_eq!(registry.admit(ip(2)).unwrap_err(), Refused::Capacity);
        assert_eq!(registry.open(), (3, 0));
    }

    #[tokio::test]
    async fn a_full_listener_of_busy_equals_refuses_the_newcomer() {
        let registry = registry(2, 2);
        let a = registry.admit(ip(2)).unwrap();
        let b = registry.admit(ip(3)).unwrap();
        let (_ga, _gb) = (a.slot.begin(), b.slot.begin());
        assert_eq!(registry.admit(ip(1)).unwrap_err(), Refused::Capacity);
    }
}
