//! RabbitMQ-only behaviour: confirms, returned messages, topology declaration
//! and conflicts, spooling while the broker is away, shutdown while reconnecting.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use paysettle_queue::{BackendKind, Durable, Message, Queue, QueueError, QueueKind};

use crate::support::{Proxy, TestEnv, amqp_url, amqp_url_via, broker_addr, eventually};

const WAIT: Duration = Duration::from_secs(15);

async fn raw_connection() -> Connection {
    Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("raw connection to the broker")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_returns_after_the_broker_confirmed_it() {
    let env = TestEnv::new(BackendKind::RabbitMq);
    let queue = Queue::start(env.config()).await.unwrap();
    assert!(queue.is_broker_healthy());
    assert_eq!(
        queue.publish(&Message::json("c-1", "{}")).await.unwrap(),
        Durable::Broker
    );
    // Confirmed means stored: the broker counts it without any consumer.
    eventually(WAIT, "message counted by the broker", || async {
        queue.message_count(QueueKind::Callbacks).await.unwrap() == 1
    })
    .await;
    let stats = queue.stats();
    assert_eq!((stats.published_broker, stats.published_spooled), (1, 0));
    assert_eq!(queue.spool_depth().await.unwrap(), 0);
    queue.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returned_message_is_an_error_and_is_not_spooled() {
    let env = TestEnv::new(BackendKind::RabbitMq);
    let queue = Queue::start(env.config()).await.unwrap();
    // Someone deletes the callbacks queue behind our back: the default exchange
    // has no route for it any more, and the broker returns the message.
    let raw = raw_connection().await;
    let ch = raw.create_channel().await.unwrap();
    let callbacks = format!("{}.callbacks", env.prefix);
    ch.queue_delete(callbacks.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    let err = queue
        .publish(&Message::json("c-1", "{}"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, QueueError::Unroutable { routing_key, reply, .. }
            if routing_key == &format!("{}.callbacks", env.prefix) && reply.contains("NO_ROUTE")),
        "{err}"
    );
    assert_eq!(
        queue.spool_depth().await.unwrap(),
        0,
        "an unroutable message is not spooled"
    );
    assert_eq!(queue.stats().publish_failed, 1);
    // The publish channel is still fine for the next publish.
    queue
        .publish_event("payment.succeeded.plutu", &Message::json("e-1", "{}"))
        .await
        .unwrap();
    let _ = raw.close(200, "OK".into()).await;
    queue.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declaring_twice_is_idempotent() {
    let env = TestEnv::new(BackendKind::RabbitMq);
    let first = Queue::start(env.config()).await.unwrap();
    first
        .publish(&Message::json("keep-me", "{}"))
        .await
        .unwrap();
    let second = Queue::start(env.config()).await.unwrap();
    let mut consumer = second.consumer(QueueKind::Callbacks).unwrap();
    let got = consumer.next_batch(1, WAIT).await.unwrap();
    assert_eq!(
        got[0].message_id(),
        "keep-me",
        "redeclaring keeps what is queued"
    );
    got[0].ack().await.unwrap();
    first.shutdown(Duration::from_secs(5)).await;
    second.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_with_other_arguments_is_a_named_conflict() {
    let env = TestEnv::new(BackendKind::RabbitMq);
    let raw = raw_connection().await;
    let ch = raw.create_channel().await.unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(LongString::from("quorum")),
    );
    args.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(99));
    let dlx = format!("{}.callbacks.dlx", env.prefix);
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dlx.as_str().into()),
    );
    let callbacks = format!("{}.callbacks", env.prefix);
    ch.queue_declare(
        callbacks.as_str().into(),
        QueueDeclareOptions {
            durable: true,
            ..QueueDeclareOptions::default()
        },
        args,
    )
    .await
    .unwrap();
    let err = Queue::start(env.config()).await.unwrap_err();
    match &err {
        QueueError::TopologyConflict {
            kind,
            name,
            argument,
            detail,
        } => {
            assert_eq!(*kind, "queue");
            assert_eq!(name, &callbacks);
            assert_eq!(argument, "x-delivery-limit");
            assert!(
                detail.contains("PRECONDITION_FAILED") || detail.contains("inequivalent"),
                "{detail}"
            );
        }
        other => panic!("expected a topology conflict, got {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains(&callbacks) && text.contains("x-delivery-limit"),
        "{text}"
    );
    assert!(!err.is_retryable());
    let _ = raw.close(200, "OK".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exchange_of_another_type_is_a_named_conflict() {
    let env = TestEnv::new(BackendKind::RabbitMq);
    let raw = raw_connection().await;
    let ch = raw.create_channel().await.unwrap();
    let events = format!("{}.events", env.prefix);
    ch.exchange_declare(
        events.as_str().into(),
        ExchangeKind::Direct,
        ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        },
        FieldTable::default(),
    )
    .await
    .unwrap();
    let err = Queue::start(env.config()).await.unwrap_err();
    assert!(
        matches!(&err, QueueError::TopologyConflict { kind: "exchange", name, argument, .. }
            if name == &events && argument == "type"),
        "{err}"
    );
    let _ = raw.close(200, "OK".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_spool_an_unreachable_broker_fails_start() {
    let env = TestEnv::new(BackendKind::RabbitMq);
    let proxy = Proxy::start(broker_addr()).await;
    proxy.cut();
    let mut config = env.config();
    config.amqp_url = amqp_url_via(proxy.addr);
    config.spool_path = None;
    config.connect_timeout = Duration::from_secs(1);
    let err = Queue::start(config).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_broker_away_publishes_are_spooled_then_forwarded() {
    let env = TestEnv::new(BackendKind::RabbitMq);
    let proxy = Proxy::start(broker_addr()).await;
    proxy.cut();
    let mut config = env.config();
    config.amqp_url = amqp_url_via(proxy.addr);
    config.connect_timeout = Duration::from_secs(1);
    let queue = Queue::start(config).await.expect("starts on the spool");
    assert!(!queue.is_broker_healthy());
    assert!(queue.is_durable(), "the spool is writable");
    for i in 0..50 {
        let m = Message::json(format!("s-{i}"), "{}");
        assert_eq!(queue.publish(&m).await.unwrap(), Durable::Spooled);
    }
    assert_eq!(queue.spool_depth().await.unwrap(), 50);
    proxy.heal();
    eventually(WAIT, "spool drained into the broker", || async {
        queue.spool_depth().await.unwrap() == 0
    })
    .await;
    assert_eq!(queue.stats().forwarded, 50);
    let mut consumer = queue.consumer(QueueKind::Callbacks).unwrap();
    let mut ids = Vec::new();
    while ids.len() < 50 {
        let batch = consumer.next_batch(50, WAIT).await.unwrap();
        assert!(
            !batch.is_empty(),
            "missing forwarded messages after {}",
            ids.len()
        );
        for d in batch {
            ids.push(d.message_id().to_owned());
            d.ack().await.unwrap();
        }
    }
    let want: Vec<String> = (0..50).map(|i| format!("s-{i}")).collect();
    assert_eq!(ids, want, "forwarded oldest first");
    eventually(WAIT, "publishes go to the broker again", || async {
        queue.is_broker_healthy()
    })
    .await;
    assert_eq!(
        queue.publish(&Message::json("direct", "{}")).await.unwrap(),
        Durable::Broker
    );
    queue.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_reconnecting_is_clean() {
    let env = TestEnv::new(BackendKind::RabbitMq);
    let proxy = Proxy::start(broker_addr()).await;
    let mut config = env.config();
    config.amqp_url = amqp_url_via(proxy.addr);
    let queue = Queue::start(config).await.unwrap();
    let mut consumer = queue.consumer(QueueKind::Callbacks).unwrap();
    assert!(
        consumer
            .next_batch(1, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
    proxy.cut();
    eventually(WAIT, "the loss is noticed", || async {
        !queue.is_broker_healthy()
    })
    .await;
    // A publish while away is spooled, not lost and not an error.
    assert_eq!(
        queue
            .publish(&Message::json("while-away", "{}"))
            .await
            .unwrap(),
        Durable::Spooled
    );
    // Shutdown keeps to its own bound with the broker away (the deadline only
    // keeps a hang from hanging the suite).
    tokio::time::timeout(WAIT, queue.shutdown(Duration::from_secs(5)))
        .await
        .expect("shutdown returns with the broker away");
    // After shutdown the consumer reports it instead of hanging or panicking.
    let err = consumer
        .next_batch(1, Duration::from_secs(2))
        .await
        .unwrap_err();
    assert!(
        matches!(err, QueueError::Closed | QueueError::BrokerUnavailable(_)),
        "{err}"
    );
    drop(consumer);
    drop(queue);
}

/// Issue 17: RabbitMQ refuses a hint to a full quorum queue only after it
/// has gone through the queue's log, at about a stored callback's cost, so
/// a flood of hints at a full queue took the broker from genuine callbacks
/// (the bench under attack: 56 -> 136 µs of broker CPU per callback). Once
/// the broker has said full, the hints of the next moment are refused
/// without a publish; once there is room again, hints are taken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_hints_queue_is_not_asked_again_for_every_hint() {
    let env = TestEnv::new(BackendKind::RabbitMq);
    let mut config = env.config();
    config.hints_max_length = 2;
    let queue = Queue::start(config).await.unwrap();
    let mut i = 0;
    let hint = |i: usize| Message::json(format!("h-{i}"), "{}");
    // Until the broker says full.
    loop {
        i += 1;
        assert!(i < 10, "never refused");
        if let Err(err) = queue.publish_hint(&hint(i)).await {
            assert!(matches!(err, QueueError::Full(_)), "{err}");
            break;
        }
    }
    assert_eq!(queue.stats().hints_refused_unasked, 0);
    // A flood right after: refused, almost all without asking the broker
    // (the hold is 250 ms; a slow machine may let it pass once or twice).
    for j in 0..200 {
        let err = queue.publish_hint(&hint(100 + j)).await.unwrap_err();
        assert!(matches!(err, QueueError::Full(_)), "{err}");
    }
    let stats = queue.stats();
    assert_eq!(stats.hints_refused, 201);
    assert!(stats.hints_refused_unasked >= 190, "{stats:?}");
    assert_eq!(stats.published_spooled, 0);
    // Room again: a consumer takes what is there.
    let mut hints = queue.consumer(QueueKind::Hints).unwrap();
    let mut drained = 0;
    while drained < i - 1 {
        let got = hints.next_batch(10, WAIT).await.unwrap();
        assert!(!got.is_empty(), "the stored hints are delivered");
        for d in got {
            d.ack().await.unwrap();
            drained += 1;
        }
    }
    // A hint is taken again once the hold is over.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match queue.publish_hint(&hint(1000)).await {
            Ok(durable) => {
                assert_eq!(durable, Durable::Broker);
                break;
            }
            Err(err) => {
                assert!(matches!(err, QueueError::Full(_)), "{err}");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "hints refused long after the queue had room"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    queue.shutdown(Duration::from_secs(5)).await;
}

/// Issue 17: hints have a quorum queue of their own, bounded by
/// `x-max-length` with `x-overflow = reject-publish`: past the bound the
/// broker refuses the hint (a nack), which is [`QueueError::Full`],
/// counted and not spooled; signed callbacks are not behind them. A
/// consumer holding at most `n` is sent no more than `n` (its prefetch),
/// so nothing waits unacknowledged toward the consumer timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_have_a_bounded_queue_of_their_own() {
    let env = TestEnv::new(BackendKind::RabbitMq);
    let mut config = env.config();
    config.hints_max_length = 3;
    let queue = Queue::start(config).await.unwrap();
    for i in 0..3 {
        let hint = Message::json(format!("h-{i}"), "{}");
        assert_eq!(queue.publish_hint(&hint).await.unwrap(), Durable::Broker);
    }
    // A quorum queue checks the bound before it appends, so it may take one
    // more than the bound before it refuses (RabbitMQ 3.10 here).
    let mut refused = None;
    for i in 3..6 {
        match queue
            .publish_hint(&Message::json(format!("h-{i}"), "{}"))
            .await
        {
            Ok(durable) => assert_eq!(durable, Durable::Broker),
            Err(err) => {
                refused = Some(err);
                break;
            }
        }
    }
    let err = refused.expect("refused past the bound");
    assert!(
        matches!(&err, QueueError::Full(q) if q == &format!("{}.hints", env.prefix)),
        "{err}"
    );
    assert!(!err.is_retryable());
    assert!(queue.message_count(QueueKind::Hints).await.unwrap() <= 4);
    let stats = queue.stats();
    assert_eq!((stats.hints_refused, stats.published_spooled), (1, 0));
    assert_eq!(queue.spool_depth().await.unwrap(), 0);
    queue.publish(&Message::json("cb", "{}")).await.unwrap();
    let mut callbacks = queue.consumer(QueueKind::Callbacks).unwrap();
    let got = callbacks.next_batch(10, WAIT).await.unwrap();
    let ids: Vec<&str> = got.iter().map(|d| d.message_id()).collect();
    assert_eq!(ids, ["cb"]);
    got[0].ack().await.unwrap();
    let mut hints = queue.consumer_holding(QueueKind::Hints, Some(1)).unwrap();
    let one = hints.next_batch(10, WAIT).await.unwrap();
    assert_eq!(one.len(), 1, "prefetch 1: one delivery held at a time");
    // Nothing more is sent while the one is unacknowledged.
    assert!(
        hints
            .next_batch(10, Duration::from_millis(500))
            .await
            .unwrap()
            .is_empty()
    );
    one[0].ack().await.unwrap();
    let next = hints.next_batch(10, WAIT).await.unwrap();
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].message_id(), "h-1");
    next[0].ack().await.unwrap();
    queue.shutdown(Duration::from_secs(5)).await;
}
