//! RabbitMQ away: with a spool, callbacks are still answered and reach
//! RabbitMQ once it is back; without one, the answer is 503 and nothing is
//! claimed. The broker is "stopped" by cutting a proxy in front of it, so
//! the broker other tests use keeps running.

use std::collections::BTreeSet;

use paysettle_core::inbound::Payload;
use paysettle_queue::BackendKind;
use paysettle_sim::{CallbackFate, NewPayment, Outcome, PlutuGateway, Provider as SimProvider};
use paysettle_testkit::eventually;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rabbitmq_down_callbacks_are_spooled_answered_and_forwarded() {
    let mut options = Options::new(BackendKind::RabbitMq);
    options.proxy = true;
    let receiver = spawn_with(options).await;
    let proxy = receiver.proxy.as_ref().unwrap();
    assert!(receiver.queue.is_broker_healthy());

    proxy.cut();
    eventually(DEADLINE, "the queue notices the broker is gone", || async {
        !receiver.queue.is_broker_healthy()
    })
    .await;
    assert_eq!(
        get(&receiver.url("/readyz")).await.status,
        200,
        "the spool is durable"
    );

    let sim = receiver.sim().await;
    for (provider, reference) in [
        (SimProvider::Paysys, "DOWN-1"),
        (SimProvider::Plutu, "DOWN-2"),
        (SimProvider::Portmanat, "DOWN-3"),
    ] {
        sim.create_payment(NewPayment::new(provider, reference, 100_000).outcome(Outcome::Success))
            .unwrap();
    }
    sim.run_until_idle().await.unwrap();
    let mut answered = 0;
    for payment in sim.payments() {
        for callback in &payment.callbacks {
            let CallbackFate::Delivered { http_status } = callback.fate else {
                panic!("{} not answered: {callback:?}", payment.id);
            };
            assert!(http_status == 200 || http_status == 303, "{http_status}");
            answered += 1;
        }
    }
    assert_eq!(answered, 4);
    assert_eq!(receiver.queue.stats().published_spooled, 4);
    assert_eq!(receiver.queue.spool_depth().await.unwrap(), 4);
    let metrics = get(&receiver.metrics_url("/metrics")).await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert_eq!(metric(&text, "paysettle_queue_spool_depth", &[]), Some(4.0));
    assert_eq!(
        metric(&text, "paysettle_queue_broker_healthy", &[]),
        Some(0.0)
    );

    proxy.heal();
    eventually(DEADLINE, "the spool drains into RabbitMQ", || async {
        receiver.queue.spool_depth().await.unwrap() == 0
    })
    .await;
    let queued = receiver.drain(4).await;
    let references: BTreeSet<String> = queued
        .iter()
        .map(|q| match &q.callback.payload {
            Payload::Observation(o) => format!("{}:{:?}", o.reference, o.status),
            Payload::PortmanatHint(h) => format!("{}:hint", h.client_rrn.as_ref().unwrap()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        references,
        BTreeSet::from([
            "DOWN-1:Pending".to_owned(),
            "DOWN-1:Succeeded".to_owned(),
            "DOWN-2:Succeeded".to_owned(),
            "DOWN-3:hint".to_owned(),
        ])
    );
    assert!(receiver.queue.stats().forwarded >= 4);
    sim.shutdown().await;
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_durable_the_answer_is_503_and_nothing_is_claimed() {
    let mut options = Options::new(BackendKind::RabbitMq);
    options.proxy = true;
    options.spool = false;
    let receiver = spawn_with(options).await;
    let proxy = receiver.proxy.as_ref().unwrap();
    let query = |invoice: &str| {
        let pairs = [
            ("gateway", "mpgs"),
            ("approved", "1"),
            ("amount", "5.00"),
            ("currency", "USD"),
            ("invoice_no", invoice),
            ("transaction_id", "77"),
        ];
        receiver.url(&format!(
            "/callbacks/plutu?{}",
            plutu_query(&pairs, PlutuGateway::Mpgs, PLUTU_SECRET)
        ))
    };

    proxy.cut();
    eventually(DEADLINE, "readiness reports nothing durable", || async {
        get(&receiver.url("/readyz")).await.status == 503
    })
    .await;
    let refused = get(&query("LOST-1")).await;
    assert_eq!(refused.status, 503);
    assert_eq!(refused.code(), "not_durable");
    assert_eq!(refused.header("retry-after"), Some("5"));
    assert!(
        refused.header("location").is_none(),
        "no redirect: nothing is claimed"
    );
    let notification = serde_json::json!({"id": "1", "account": "LOST-2", "amount": 100,
        "currency": 860, "status": 2});
    let refused = post_paysys(&receiver.url("/callbacks/paysys"), notification.to_string()).await;
    assert_eq!(refused.status, 503);
    assert_ne!(refused.json()["error"], serde_json::Value::Null);

    proxy.heal();
    eventually(DEADLINE, "ready again once the broker is back", || async {
        get(&receiver.url("/readyz")).await.status == 200
    })
    .await;
    // The broker may be reconnected before publishes flow again; a provider
    // retries a 503, and so does this test.
    eventually(DEADLINE, "a callback is accepted again", || async {
        get(&query("BACK-1")).await.status == 303
    })
    .await;
    let queued = receiver.drain(1).await;
    let Payload::Observation(o) = &queued[0].callback.payload else {
        panic!()
    };
    assert_eq!(
        o.reference.as_str(),
        "BACK-1",
        "only what was answered with yes"
    );
    receiver.stop().await;
}
