//! The embedded backend's own behaviour: leases that expire, a file that
//! survives the process, and a conflicting redeclaration.

use std::time::Duration;

use paysettle_queue::{BackendKind, Durable, Message, Queue, QueueError, QueueKind};

use crate::support::TestEnv;

/// Issue 17: a consumer renews the lease of what it holds, so slow work is
/// never delivered twice nor counted toward the delivery limit: a delivery
/// held for three leases is not handed out again and its ack still works.
#[tokio::test]
async fn a_held_delivery_outlives_its_lease_and_is_delivered_once() {
    let env = TestEnv::new(BackendKind::Embedded);
    let mut config = env.config();
    config.lease_duration = Duration::from_millis(300);
    let queue = Queue::start(config).await.unwrap();
    queue.publish(&Message::json("slow", "{}")).await.unwrap();
    let mut consumer = queue.consumer(QueueKind::Callbacks).unwrap();
    let first = consumer
        .next_batch(1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    // Three leases long, the consumer keeps asking: nothing comes again.
    let again = consumer
        .next_batch(1, Duration::from_millis(900))
        .await
        .unwrap();
    assert!(again.is_empty(), "delivered again while held");
    first[0].ack().await.unwrap();
    assert_eq!(queue.message_count(QueueKind::Callbacks).await.unwrap(), 0);
}

/// A delivery dropped without being settled is not renewed for as long as
/// its consumer lives: it goes back to the queue at once.
#[tokio::test]
async fn a_delivery_dropped_unsettled_comes_back_at_once() {
    let env = TestEnv::new(BackendKind::Embedded);
    let queue = Queue::start(env.config()).await.unwrap();
    queue
        .publish(&Message::json("dropped", "{}"))
        .await
        .unwrap();
    let mut consumer = queue.consumer(QueueKind::Callbacks).unwrap();
    let first = consumer
        .next_batch(1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    drop(first);
    // The lease is 30 s: only the release brings it back within the wait.
    let again = consumer
        .next_batch(1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id(), "dropped");
    assert_eq!(again[0].delivery_count(), 2);
    again[0].ack().await.unwrap();
}

/// Issue 17: hints wait in a FIFO of their own, bounded; past the bound a
/// hint is refused ([`QueueError::Full`], counted), nothing is written, and
/// signed callbacks are neither behind them nor refused.
#[tokio::test]
async fn hints_have_a_bounded_queue_of_their_own() {
    let env = TestEnv::new(BackendKind::Embedded);
    let mut config = env.config();
    config.hints_max_length = 3;
    let queue = Queue::start(config).await.unwrap();
    for i in 0..3 {
        let hint = Message::json(format!("h-{i}"), "{}");
        assert_eq!(queue.publish_hint(&hint).await.unwrap(), Durable::Embedded);
    }
    let err = queue
        .publish_hint(&Message::json("h-3", "{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::Full(q) if q == &format!("{}.hints", env.prefix)),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert_eq!(queue.stats().hints_refused, 1);
    assert_eq!(queue.message_count(QueueKind::Hints).await.unwrap(), 3);
    // A callback is not behind the hints, nor bounded by them.
    queue.publish(&Message::json("cb", "{}")).await.unwrap();
    let mut callbacks = queue.consumer(QueueKind::Callbacks).unwrap();
    let got = callbacks
        .next_batch(10, Duration::from_secs(5))
        .await
        .unwrap();
    let ids: Vec<&str> = got.iter().map(|d| d.message_id()).collect();
    assert_eq!(ids, ["cb"]);
    // Taking one hint out makes room for one more.
    let mut hints = queue.consumer_holding(QueueKind::Hints, Some(1)).unwrap();
    let one = hints.next_batch(1, Duration::from_secs(5)).await.unwrap();
    assert_eq!(one[0].message_id(), "h-0");
    one[0].ack().await.unwrap();
    queue
        .publish_hint(&Message::json("h-4", "{}"))
        .await
        .unwrap();
    assert_eq!(queue.message_count(QueueKind::Hints).await.unwrap(), 3);
}

/// Issue 17: the queue's file gives back the space a drained flood took
/// (`auto_vacuum = INCREMENTAL`, reclaimed when the file is quiet).
#[tokio::test]
async fn the_file_shrinks_after_a_flood_is_drained() {
    let env = TestEnv::new(BackendKind::Embedded);
    let queue = Queue::start(env.config()).await.unwrap();
    let path = env.dir.path().join("queue.sqlite");
    let body = "x".repeat(4000);
    const FLOOD: usize = 1500;
    let mut publishes = tokio::task::JoinSet::new();
    for i in 0..FLOOD {
        let (queue, body) = (queue.clone(), body.clone());
        publishes.spawn(async move {
            queue
                .publish(&Message::json(format!("flood-{i}"), body))
                .await
        });
        if publishes.len() >= 256 {
            publishes.join_next().await.unwrap().unwrap().unwrap();
        }
    }
    while let Some(r) = publishes.join_next().await {
        r.unwrap().unwrap();
    }
    let size = || {
        std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0)
            + std::fs::metadata(path.with_extension("sqlite-wal"))
                .map(|m| m.len())
                .unwrap_or(0)
    };
    let mut consumer = queue.consumer(QueueKind::Callbacks).unwrap();
    let mut drained = 0;
    let mut peak = size();
    while drained < FLOOD {
        let batch = consumer
            .next_batch(256, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(!batch.is_empty(), "drained {drained}");
        for d in &batch {
            d.ack().await.unwrap();
        }
        drained += batch.len();
        peak = peak.max(size());
    }
    assert_eq!(queue.message_count(QueueKind::Callbacks).await.unwrap(), 0);
    assert!(peak > 4_000_000, "the flood took {peak} bytes");
    crate::support::eventually(Duration::from_secs(20), "the file to shrink", || {
        let now = size();
        async move { now < peak / 4 }
    })
    .await;
}

#[tokio::test]
async fn a_restarted_process_finds_every_message() {
    let env = TestEnv::new(BackendKind::Embedded);
    {
        let queue = Queue::start(env.config()).await.unwrap();
        for i in 0..3 {
            let m = Message::json(format!("m-{i}"), "{}");
            assert_eq!(queue.publish(&m).await.unwrap(), Durable::Embedded);
        }
        let mut consumer = queue.consumer(QueueKind::Callbacks).unwrap();
        let got = consumer
            .next_batch(1, Duration::from_secs(5))
            .await
            .unwrap();
        got[0].ack().await.unwrap();
    }
    let queue = Queue::start(env.config()).await.unwrap();
    let mut consumer = queue.consumer(QueueKind::Callbacks).unwrap();
    let got = consumer
        .next_batch(10, Duration::from_secs(5))
        .await
        .unwrap();
    let ids: Vec<&str> = got.iter().map(|d| d.message_id()).collect();
    assert_eq!(ids, ["m-1", "m-2"]);
}

#[tokio::test]
async fn redeclaring_with_another_delivery_limit_is_a_named_conflict() {
    let env = TestEnv::new(BackendKind::Embedded);
    drop(Queue::start(env.config()).await.unwrap());
    let mut config = env.config();
    config.delivery_limit += 1;
    let err = Queue::start(config).await.unwrap_err();
    assert!(
        matches!(&err, QueueError::TopologyConflict { name, argument, .. }
            if name == &format!("{}.callbacks", env.prefix) && argument == "delivery_limit"),
        "{err}"
    );
}
