//! The at-least-once contract, run against both backends: every test here is
//! instantiated once for RabbitMQ and once for the embedded queue.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use paysettle_queue::{
    BackendKind, Consumer, DEAD_LETTER_REASON_HEADER, Delivery, Durable, Message, Queue,
    QueueConfig, QueueError, QueueKind,
};
use tokio::time::Instant;

use crate::support::{TestEnv, eventually};

const WAIT: Duration = Duration::from_secs(10);

fn expected_durable(backend: BackendKind) -> Durable {
    match backend {
        BackendKind::RabbitMq => Durable::Broker,
        BackendKind::Embedded => Durable::Embedded,
    }
}

async fn start(env: &TestEnv, tweak: impl FnOnce(&mut QueueConfig)) -> Queue {
    let mut config = env.config();
    tweak(&mut config);
    Queue::start(config).await.expect("queue starts")
}

fn msg(i: usize) -> Message {
    Message::json(format!("m-{i}"), format!("{{\"n\":{i}}}"))
        .with_header("provider", "plutu")
        .with_header("seq", i.to_string())
}

/// Collects deliveries until `n` arrived or `within` passed.
async fn take(consumer: &mut Consumer, n: usize, within: Duration) -> Vec<Delivery> {
    let deadline = Instant::now() + within;
    let mut got = Vec::new();
    while got.len() < n && Instant::now() < deadline {
        let left = deadline - Instant::now();
        got.extend(
            consumer
                .next_batch(n - got.len(), left)
                .await
                .expect("next_batch"),
        );
    }
    got
}

async fn count(queue: &Queue, kind: QueueKind) -> u64 {
    queue.message_count(kind).await.expect("message_count")
}

pub async fn fields_and_arrival_order_survive(backend: BackendKind) {
    let env = TestEnv::new(backend);
    let queue = start(&env, |_| {}).await;
    for i in 0..20 {
        assert_eq!(
            queue.publish(&msg(i)).await.unwrap(),
            expected_durable(backend)
        );
    }
    let mut consumer = queue.consumer(QueueKind::Callbacks).unwrap();
    let got = take(&mut consumer, 20, WAIT).await;
    let ids: Vec<&str> = got.iter().map(|d| d.message_id()).collect();
    let want: Vec<String> = (0..20).map(|i| format!("m-{i}")).collect();
    assert_eq!(ids, want, "delivered in arrival order");
    let first = &got[0];
    assert_eq!(first.message().content_type, "application/json");
    assert_eq!(
        first.headers().get("provider").map(String::as_str),
        Some("plutu")
    );
    assert_eq!(first.body(), b"{\"n\":0}");
    assert_eq!(first.delivery_count(), 1);
    assert!(!first.redelivered());
    for d in &got {
        d.ack().await.unwrap();
    }
    assert!(
        matches!(got[0].ack().await, Err(QueueError::DeliveryLost)),
        "settled once"
    );
    drop(consumer);
    eventually(WAIT, "queue empty after acks", || async {
        count(&queue, QueueKind::Callbacks).await == 0
    })
    .await;
    // Nothing more is delivered once acked, even to a new consumer.
    let mut again = queue.consumer(QueueKind::Callbacks).unwrap();
    assert!(
        again
            .next_batch(10, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    let stats = queue.stats();
    assert_eq!(stats.acked, 20);
    assert_eq!(stats.published_broker + stats.published_embedded, 20);
    queue.shutdown(Duration::from_secs(5)).await;
}

pub async fn nack_requeue_delivers_again(backend: BackendKind) {
    let env = TestEnv::new(backend);
    let queue = start(&env, |_| {}).await;
    queue.publish(&msg(1)).await.unwrap();
    let mut consumer = queue.consumer(QueueKind::Callbacks).unwrap();
    let first = take(&mut consumer, 1, WAIT).await;
    assert_eq!(first.len(), 1);
    first[0].nack_requeue().await.unwrap();
    let second = take(&mut consumer, 1, WAIT).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].message_id(), "m-1");
    assert_eq!(second[0].delivery_count(), 2);
    assert!(second[0].redelivered());
    second[0].ack().await.unwrap();
    assert_eq!(queue.stats().requeued, 1);
    queue.shutdown(Duration::from_secs(5)).await;
}

pub async fn a_consumer_that_dies_without_acking_loses_nothing(backend: BackendKind) {
    let env = TestEnv::new(backend);
    let queue = start(&env, |_| {}).await;
    for i in 0..3 {
        queue.publish(&msg(i)).await.unwrap();
    }
    let mut doomed = queue.consumer(QueueKind::Callbacks).unwrap();
    let got = take(&mut doomed, 3, WAIT).await;
    assert_eq!(got.len(), 3);
    got[0].ack().await.unwrap();
    // The consumer dies with two deliveries unacknowledged.
    drop(doomed);
    let mut survivor = queue.consumer(QueueKind::Callbacks).unwrap();
    let again = take(&mut survivor, 2, WAIT).await;
    let ids: BTreeSet<&str> = again.iter().map(|d| d.message_id()).collect();
    assert_eq!(ids, BTreeSet::from(["m-1", "m-2"]));
    for d in &again {
        assert!(d.redelivered());
        assert_eq!(d.delivery_count(), 2);
        d.ack().await.unwrap();
    }
    // The deliveries of the dead consumer can no longer be acked.
    assert!(got[1].ack().await.is_err());
    queue.shutdown(Duration::from_secs(5)).await;
}

pub async fn dead_letter_keeps_the_message_and_the_reason(backend: BackendKind) {
    let env = TestEnv::new(backend);
    let queue = start(&env, |_| {}).await;
    queue.publish(&msg(7)).await.unwrap();
    queue.publish(&msg(8)).await.unwrap();
    let mut consumer = queue.consumer(QueueKind::Callbacks).unwrap();
    let got = take(&mut consumer, 2, WAIT).await;
    got[0].dead_letter("amount is not a number").await.unwrap();
    got[1].ack().await.unwrap();
    let mut dlq = queue.consumer(QueueKind::DeadLetters).unwrap();
    let dead = take(&mut dlq, 1, WAIT).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].message_id(), "m-7");
    assert_eq!(dead[0].body(), b"{\"n\":7}");
    assert_eq!(
        dead[0]
            .headers()
            .get(DEAD_LETTER_REASON_HEADER)
            .map(String::as_str),
        Some("amount is not a number")
    );
    assert_eq!(
        dead[0].headers().get("provider").map(String::as_str),
        Some("plutu")
    );
    // The dead-letter queue has nowhere further to dead-letter to.
    assert!(matches!(
        dead[0].dead_letter("x").await,
        Err(QueueError::Unsupported(_))
    ));
    dead[0].ack().await.unwrap();
    drop(consumer);
    eventually(WAIT, "callbacks empty", || async {
        count(&queue, QueueKind::Callbacks).await == 0
    })
    .await;
    assert_eq!(queue.stats().dead_lettered, 1);
    queue.shutdown(Duration::from_secs(5)).await;
}

pub async fn the_delivery_limit_dead_letters_a_poison_message(backend: BackendKind) {
    let env = TestEnv::new(backend);
    let queue = start(&env, |c| c.delivery_limit = 1).await;
    queue.publish(&msg(1)).await.unwrap();
    let mut consumer = queue.consumer(QueueKind::Callbacks).unwrap();
    // Limit 1: two deliveries, each returned.
    for delivery in 1..=2 {
        let got = take(&mut consumer, 1, WAIT).await;
        assert_eq!(got.len(), 1, "delivery {delivery}");
        assert_eq!(got[0].delivery_count(), delivery);
        got[0].nack_requeue().await.unwrap();
    }
    let mut dlq = queue.consumer(QueueKind::DeadLetters).unwrap();
    let dead = take(&mut dlq, 1, WAIT).await;
    assert_eq!(dead.len(), 1, "dead-lettered after the limit");
    assert_eq!(dead[0].message_id(), "m-1");
    dead[0].ack().await.unwrap();
    assert!(
        consumer
            .next_batch(1, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "no third delivery"
    );
    queue.shutdown(Duration::from_secs(5)).await;
}

pub async fn events_reach_finance_and_unroutable_ones_are_errors(backend: BackendKind) {
    let env = TestEnv::new(backend);
    let queue = start(&env, |_| {}).await;
    let event = Message::json("evt-1", "{\"type\":\"payment.succeeded\"}");
    queue
        .publish_event("payment.succeeded.plutu", &event)
        .await
        .unwrap();
    let err = queue
        .publish_event("refund.succeeded.plutu", &Message::json("evt-2", "{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::Unroutable { routing_key, .. } if routing_key == "refund.succeeded.plutu"),
        "{err}"
    );
    assert!(!err.is_retryable());
    let mut finance = queue.consumer(QueueKind::Finance).unwrap();
    let got = take(&mut finance, 1, WAIT).await;
    assert_eq!(got[0].message_id(), "evt-1");
    got[0].ack().await.unwrap();
    assert!(
        finance
            .next_batch(5, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty()
    );
    // Card registrations carry a card token: they reach the shop's queue,
    // never finance's.
    queue
        .publish_event("card.registered.paysys", &Message::json("card-1", "{}"))
        .await
        .unwrap();
    let mut shop = queue.consumer(QueueKind::Shop).unwrap();
    let got = take(&mut shop, 1, WAIT).await;
    assert_eq!(got[0].message_id(), "card-1");
    got[0].ack().await.unwrap();
    assert!(
        finance
            .next_batch(5, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    let stats = queue.stats();
    assert_eq!((stats.events_published, stats.events_failed), (2, 1));
    queue.shutdown(Duration::from_secs(5)).await;

    // Without a finance queue nothing is bound, so even payment events are unroutable.
    let env = TestEnv::new(backend);
    let queue = start(&env, |c| c.finance_queue = false).await;
    let err = queue
        .publish_event("payment.failed.paysys", &event)
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::Unroutable { .. }), "{err}");
    assert!(matches!(
        queue.consumer(QueueKind::Finance),
        Err(QueueError::Unsupported(_))
    ));
    queue.shutdown(Duration::from_secs(5)).await;
}

pub async fn next_batch_waits_at_most_the_given_time(backend: BackendKind) {
    let env = TestEnv::new(backend);
    let queue = start(&env, |_| {}).await;
    let mut consumer = queue.consumer(QueueKind::Callbacks).unwrap();
    // Warm up (the RabbitMQ consumer starts on first use).
    assert!(
        consumer
            .next_batch(10, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    // An empty queue: the call comes back, empty, once the wait is over
    // (the deadline only keeps a hang from hanging the suite).
    let got = tokio::time::timeout(
        Duration::from_secs(30),
        consumer.next_batch(10, Duration::from_millis(400)),
    )
    .await
    .expect("next_batch returns once its wait is over")
    .unwrap();
    assert!(got.is_empty());
    // It waits rather than returning at once: a message published while it
    // waits is in the batch, and it is returned without waiting out the
    // (hour-long) time.
    let q = queue.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        q.publish(&msg(1)).await.unwrap();
    });
    let got = tokio::time::timeout(
        Duration::from_secs(30),
        consumer.next_batch(10, Duration::from_secs(3600)),
    )
    .await
    .expect("a message ends the wait")
    .unwrap();
    assert_eq!(got.len(), 1);
    got[0].ack().await.unwrap();
    publisher.await.unwrap();
    queue.shutdown(Duration::from_secs(5)).await;
}

pub async fn concurrent_publishes_are_all_delivered(backend: BackendKind) {
    let env = TestEnv::new(backend);
    let queue = start(&env, |_| {}).await;
    let n = 500;
    let mut tasks = Vec::new();
    for i in 0..n {
        let q = queue.clone();
        tasks.push(tokio::spawn(async move { q.publish(&msg(i)).await }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), expected_durable(backend));
    }
    assert!(queue.is_durable());
    let mut consumer = queue.consumer(QueueKind::Callbacks).unwrap();
    let mut ids = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    // Ack as they come: RabbitMQ sends no more than the prefetch unacked.
    while ids.len() < n && Instant::now() < deadline {
        for d in consumer
            .next_batch(100, Duration::from_secs(1))
            .await
            .unwrap()
        {
            assert!(ids.insert(d.message_id().to_owned()), "no duplicates here");
            d.ack().await.unwrap();
        }
    }
    assert_eq!(ids.len(), n);
    queue.shutdown(Duration::from_secs(5)).await;
}

pub async fn an_invalid_message_is_refused_before_it_is_stored(backend: BackendKind) {
    let env = TestEnv::new(backend);
    let queue = start(&env, |_| {}).await;
    let err = queue
        .publish(&Message::json("x".repeat(300), "{}"))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::InvalidMessage(_)));
    assert_eq!(queue.spool_depth().await.unwrap(), 0);
    assert_eq!(count(&queue, QueueKind::Callbacks).await, 0);
    queue.shutdown(Duration::from_secs(5)).await;
}

/// Instantiates every contract test for one backend.
macro_rules! contract_suite {
    ($module:ident, $backend:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn fields_and_arrival_order_survive() {
                super::fields_and_arrival_order_survive($backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn nack_requeue_delivers_again() {
                super::nack_requeue_delivers_again($backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_consumer_that_dies_without_acking_loses_nothing() {
                super::a_consumer_that_dies_without_acking_loses_nothing($backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dead_letter_keeps_the_message_and_the_reason() {
                super::dead_letter_keeps_the_message_and_the_reason($backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn the_delivery_limit_dead_letters_a_poison_message() {
                super::the_delivery_limit_dead_letters_a_poison_message($backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn events_reach_finance_and_unroutable_ones_are_errors() {
                super::events_reach_finance_and_unroutable_ones_are_errors($backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn next_batch_waits_at_most_the_given_time() {
                super::next_batch_waits_at_most_the_given_time($backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn concurrent_publishes_are_all_delivered() {
                super::concurrent_publishes_are_all_delivered($backend).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn an_invalid_message_is_refused_before_it_is_stored() {
                super::an_invalid_message_is_refused_before_it_is_stored($backend).await;
            }
        }
    };
}

contract_suite!(rabbitmq, BackendKind::RabbitMq);
contract_suite!(embedded, BackendKind::Embedded);
