//! The fault test: a TCP proxy between the queue and RabbitMQ is cut while
//! thousands of messages are published. Every message reported durable must
//! arrive, directly or through the spool; duplicates are allowed and told
//! apart by `message_id`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use paysettle_queue::{BackendKind, Durable, Message, Queue, QueueKind};
use tokio::sync::Semaphore;

use crate::support::{Proxy, TestEnv, amqp_url_via, broker_addr, eventually};

const MESSAGES: usize = 3000;
const CONCURRENCY: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_durable_message_arrives_through_a_cut_connection() {
    let env = TestEnv::new(BackendKind::RabbitMq);
    let proxy = Arc::new(Proxy::start(broker_addr()).await);
    let mut config = env.config();
    config.amqp_url = amqp_url_via(proxy.addr);
    config.confirm_timeout = Duration::from_secs(2);
    let queue = Queue::start(config).await.unwrap();

    let published = Arc::new(AtomicUsize::new(0));
    let chaos = {
        let (proxy, published, queue) = (proxy.clone(), published.clone(), queue.clone());
        tokio::spawn(async move {
            // Cut twice, each time mid-stream, and keep it down until the spool
            // has taken over, then let the broker back.
            for at in [MESSAGES / 5, MESSAGES / 2] {
                eventually(Duration::from_secs(30), "publishing progressed", || async {
                    published.load(Ordering::SeqCst) >= at
                })
                .await;
                let spooled_before = queue.stats().published_spooled;
                proxy.cut();
                eventually(
                    Duration::from_secs(30),
                    "publishes spooled while cut",
                    || async { queue.stats().published_spooled > spooled_before + 50 },
                )
                .await;
                proxy.heal();
            }
        })
    };

    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::with_capacity(MESSAGES);
    for i in 0..MESSAGES {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (queue, published) = (queue.clone(), published.clone());
        tasks.push(tokio::spawn(async move {
            let id = format!("f-{i}");
            let result = queue
                .publish(&Message::json(id.clone(), format!("{{\"i\":{i}}}")))
                .await;
            published.fetch_add(1, Ordering::SeqCst);
            drop(permit);
            (id, result)
        }));
    }
    let mut durable = HashSet::new();
    let mut by_outcome: HashMap<&'static str, usize> = HashMap::new();
    for t in tasks {
        let (id, result) = t.await.unwrap();
        let outcome = match result {
            Ok(Durable::Broker) => "broker",
            Ok(Durable::Spooled) => "spooled",
            Ok(Durable::Embedded) => "embedded",
            Err(_) => "failed",
        };
        *by_outcome.entry(outcome).or_default() += 1;
        if outcome != "failed" {
            durable.insert(id);
        }
    }
    chaos.await.unwrap();
    eprintln!("fault test outcomes: {by_outcome:?}");
    assert!(
        by_outcome.get("spooled").copied().unwrap_or(0) > 0,
        "the cut must have spooled some"
    );
    assert!(by_outcome.get("broker").copied().unwrap_or(0) > 0);
    // With a writable spool nothing may fail.
    assert_eq!(by_outcome.get("failed"), None);

    eventually(Duration::from_secs(30), "spool drained", || async {
        queue.spool_depth().await.unwrap() == 0
    })
    .await;

    let mut consumer = queue.consumer(QueueKind::Callbacks).unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !durable.iter().all(|id| seen.contains_key(id)) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "messages still missing"
        );
        let Ok(batch) = consumer.next_batch(500, Duration::from_secs(1)).await else {
            continue;
        };
        for d in batch {
            *seen.entry(d.message_id().to_owned()).or_default() += 1;
            let _ = d.ack().await;
        }
    }
    let missing: Vec<&String> = durable
        .iter()
        .filter(|id| !seen.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "lost {} durable messages",
        missing.len()
    );
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "fault test: {} durable, {} received, {} duplicates, {} reconnects",
        durable.len(),
        seen.len(),
        duplicates,
        queue.stats().reconnects
    );
    assert_eq!(seen.len(), MESSAGES, "every id arrived, and only ours");
    queue.shutdown(Duration::from_secs(5)).await;
}
