//! The embedded backend's own behaviour: leases that expire, a file that
//! survives the process, and a conflicting redeclaration.

use std::time::Duration;

use paysettle_queue::{BackendKind, Durable, Message, Queue, QueueError, QueueKind};

use crate::support::TestEnv;

#[tokio::test]
async fn an_expired_lease_is_delivered_again() {
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
    // Not acked in time: the same consumer gets it again once the lease expires.
    let again = consumer
        .next_batch(1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].message_id(), "slow");
    assert_eq!(again[0].delivery_count(), 2);
    // The first, expired delivery can no longer remove it.
    assert!(matches!(
        first[0].ack().await,
        Err(QueueError::DeliveryLost)
    ));
    again[0].ack().await.unwrap();
    assert_eq!(queue.message_count(QueueKind::Callbacks).await.unwrap(), 0);
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
