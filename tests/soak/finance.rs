//! Finance: a consumer of `<prefix>.finance` that reads every settled event,
//! acknowledges it and keeps it, as finance's own consumer would. It talks to
//! RabbitMQ directly, not through the harness's proxy: cutting paysettle off
//! the broker must not cut finance off too. A broker restart does reach it;
//! the queue crate reconnects, and a delivery whose ack was lost comes again
//! (counted as a duplicate delivery, which at-least-once allows).

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use paysettle_queue::{DEAD_LETTER_REASON_HEADER, Queue, QueueConfig, QueueKind};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// What finance read.
#[derive(Debug, Clone, Default)]
pub struct FinanceLog {
    /// Each distinct event, by `event_id`, as first read.
    pub events: BTreeMap<String, Value>,
    /// Messages delivered, duplicates included.
    pub deliveries: u64,
    /// Deliveries of an event already read.
    pub duplicate_deliveries: u64,
    /// Messages whose `message_id` is not their `event_id` (or that are not
    /// events at all).
    pub id_mismatches: Vec<String>,
}

impl FinanceLog {
    fn take(&mut self, message_id: &str, body: &[u8]) {
        self.deliveries += 1;
        let Ok(event) = serde_json::from_slice::<Value>(body) else {
            self.id_mismatches.push(format!(
                "{message_id}: not JSON: {}",
                String::from_utf8_lossy(body)
            ));
            return;
        };
        let Some(event_id) = event["event_id"].as_str().map(str::to_owned) else {
            self.id_mismatches
                .push(format!("{message_id}: no event_id in {event}"));
            return;
        };
        if event_id != message_id {
            self.id_mismatches
                .push(format!("message_id {message_id}, event_id {event_id}"));
        }
        match self.events.entry(event_id) {
            Entry::Occupied(_) => self.duplicate_deliveries += 1,
            Entry::Vacant(slot) => {
                slot.insert(event);
            }
        }
    }
}

/// The running consumer.
pub struct Finance {
    queue: Queue,
    log: Arc<Mutex<FinanceLog>>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Finance {
    /// Connects and declares the topology (the same arguments as paysettle's,
    /// or RabbitMQ refuses one of them), then reads until [`Finance::finish`].
    pub async fn start(config: QueueConfig) -> Finance {
        let queue = Queue::start(config)
            .await
            .expect("finance connects to RabbitMQ");
        let log = Arc::new(Mutex::new(FinanceLog::default()));
        let stop = CancellationToken::new();
        let task = tokio::spawn(read(queue.clone(), Arc::clone(&log), stop.clone()));
        Finance {
            queue,
            log,
            stop,
            task,
        }
    }

    /// Distinct events read so far.
    pub fn distinct(&self) -> usize {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .events
            .len()
    }

    /// Stops reading and returns what was read, and the reasons of whatever
    /// sits in the callbacks' dead-letter queue.
    pub async fn finish(self) -> (FinanceLog, Vec<String>) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the finance consumer stops")
            .unwrap();
        let mut dead = Vec::new();
        let mut consumer = self.queue.consumer(QueueKind::DeadLetters).unwrap();
        loop {
            let batch = consumer
                .next_batch(256, Duration::from_millis(500))
                .await
                .unwrap();
            if batch.is_empty() {
                break;
            }
            for delivery in batch {
                dead.push(
                    delivery
                        .headers()
                        .get(DEAD_LETTER_REASON_HEADER)
                        .cloned()
                        .unwrap_or_else(|| "over the delivery limit".to_owned()),
                );
                delivery.ack().await.unwrap();
            }
        }
        drop(consumer);
        self.queue.shutdown(Duration::from_secs(5)).await;
        let log = self
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        (log, dead)
    }
}

async fn read(queue: Queue, log: Arc<Mutex<FinanceLog>>, stop: CancellationToken) {
    let mut consumer = None;
    while !stop.is_cancelled() {
        let current = match &mut consumer {
            Some(current) => current,
            None => match queue.consumer(QueueKind::Finance) {
                Ok(fresh) => consumer.insert(fresh),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            },
        };
        let batch = match current.next_batch(256, Duration::from_millis(250)).await {
            Ok(batch) => batch,
            Err(_) => {
                // The broker went away; the queue reconnects by itself. A new
                // consumer starts clean on the new connection.
                consumer = None;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        for delivery in batch {
            log.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(delivery.message_id(), delivery.body());
            // A failed ack means the message comes again: counted then.
            let _ = delivery.ack().await;
        }
    }
}
