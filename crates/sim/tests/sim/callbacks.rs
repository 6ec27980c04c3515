//! Callback misbehaviour (lost, duplicated, delayed, out of order, wrongly
//! signed, forged, receiver down) and the seeded outcome mix.

use std::time::Duration;

use paysettle_sim::scenario::{CallbackFaults, OutcomeMix};
use paysettle_sim::{
    CallbackFate, NewPayment, Outcome, PlutuGateway, Provider, ScenarioPatch, SimConfig, Status,
    form,
};
use secrecy::ExposeSecret;

use crate::common::*;

fn callbacks(c: CallbackFaults) -> ScenarioPatch {
    ScenarioPatch {
        callbacks: Some(c),
        ..ScenarioPatch::default()
    }
}

#[tokio::test]
async fn lost_callbacks_are_never_sent_but_recorded() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config.scenario.callbacks.lost = 1.0;
    let sim = start(config).await;
    for provider in Provider::ALL {
        sim.create_payment(NewPayment::new(provider, "LOST-1", 100_000).outcome(Outcome::Success))
            .unwrap();
    }
    sim.run_until_idle().await.unwrap();
    // Everything due has run, so an empty receiver means nothing was sent.
    assert!(receiver.received().is_empty());
    for payment in sim.payments() {
        assert_eq!(payment.status, Status::Succeeded);
        assert!(!payment.callbacks.is_empty());
        assert!(
            payment
                .callbacks
                .iter()
                .all(|c| c.fate == CallbackFate::Lost),
            "{payment:#?}"
        );
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn duplicated_callbacks_arrive_twice() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config.plutu.scenario = callbacks(CallbackFaults {
        duplicated: 1.0,
        ..CallbackFaults::default()
    });
    let sim = start(config).await;
    let view = sim
        .create_payment(NewPayment::new(Provider::Plutu, "DUP-1", 500).outcome(Outcome::Success))
        .unwrap();
    sim.run_until_idle().await.unwrap();
    let got = receiver.wait_for(2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].query, got[1].query, "byte-identical copies");
    let records = sim.payment(&view.id).unwrap().callbacks;
    assert_eq!(
        records.iter().map(|r| r.duplicate).collect::<Vec<_>>(),
        vec![false, true]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn delayed_callbacks_wait_for_the_clock() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config.paysys.notify_pending = false;
    config.paysys.scenario = callbacks(CallbackFaults {
        delayed: 1.0,
        delay_ms: 60_000,
        ..CallbackFaults::default()
    });
    let sim = start(config).await;
    let view = sim
        .create_payment(NewPayment::new(Provider::Paysys, "DELAY-1", 100_000))
        .unwrap();
    sim.pay(&view.id, Some(Outcome::Success)).unwrap();
    sim.settle().await.unwrap();
    assert!(
        receiver.received().is_empty(),
        "not yet: it is delayed by a minute"
    );
    let record = &sim.payment(&view.id).unwrap().callbacks[0];
    assert_eq!(
        (record.fate.clone(), record.delayed_ms),
        (CallbackFate::Scheduled, 60_000)
    );
    sim.advance(Duration::from_secs(61)).await.unwrap();
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].json()["status"], 2);
    sim.shutdown().await;
}

#[tokio::test]
async fn out_of_order_sends_the_awaiting_notification_last() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config.paysys.scenario = callbacks(CallbackFaults {
        out_of_order: 1.0,
        ..CallbackFaults::default()
    });
    let sim = start(config).await;
    let view = sim
        .create_payment(NewPayment::new(Provider::Paysys, "OOO-1", 100_000))
        .unwrap();
    sim.settle().await.unwrap();
    assert!(
        receiver.received().is_empty(),
        "the awaiting notification is held"
    );
    sim.pay(&view.id, Some(Outcome::Success)).unwrap();
    sim.run_until_idle().await.unwrap();
    let statuses: Vec<i64> = receiver
        .wait_for(2)
        .await
        .iter()
        .map(|c| c.json()["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![2, 1]);
    let records = sim.payment(&view.id).unwrap().callbacks;
    assert!(records[0].out_of_order);
    assert!(!records[1].out_of_order);
    sim.shutdown().await;
}

#[tokio::test]
async fn wrongly_signed_callbacks_fail_verification() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config.paysys.notify_pending = false;
    config.scenario.callbacks.wrongly_signed = 1.0;
    let sim = start(config).await;
    sim.create_payment(NewPayment::new(Provider::Plutu, "WS-1", 500).outcome(Outcome::Success))
        .unwrap();
    sim.create_payment(
        NewPayment::new(Provider::Paysys, "WS-2", 100_000).outcome(Outcome::Success),
    )
    .unwrap();
    sim.run_until_idle().await.unwrap();
    let got = receiver.wait_for(2).await;
    let plutu = got.iter().find(|c| c.path == "/callbacks/plutu").unwrap();
    let paysys = got.iter().find(|c| c.path == "/callbacks/paysys").unwrap();
    let secret = sim.config().plutu.secret_key.expose_secret().to_owned();
    let pairs = plutu.query_pairs();
    assert!(form::first(&pairs, "hashed").is_some_and(|h| h.len() == 64));
    assert_eq!(
        paysettle_sim::plutu::verify_callback(PlutuGateway::Mpgs, &pairs, &secret),
        Err(paysettle_sim::VerifyError::Mismatch)
    );
    let config = &sim.config().paysys;
    let right = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!(
                "{}:{}",
                config.vendor_method.expose_secret(),
                config.vendor_secret_key.expose_secret()
            )
        )
    );
    let sent = paysys.authorization().unwrap();
    assert!(sent.starts_with("Basic "));
    assert_ne!(sent, right);
    assert!(
        sim.payments()
            .iter()
            .all(|p| p.callbacks.iter().all(|c| c.wrongly_signed))
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn forged_callbacks_claim_the_opposite_outcome_and_fail_verification() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config.paysys.notify_pending = false;
    config.scenario.callbacks.forged = 1.0;
    let sim = start(config).await;
    let secret = sim.config().plutu.secret_key.expose_secret().to_owned();
    sim.create_payment(NewPayment::new(Provider::Plutu, "FG-1", 500).outcome(Outcome::Failure))
        .unwrap();
    sim.create_payment(
        NewPayment::new(Provider::Paysys, "FG-2", 100_000).outcome(Outcome::Success),
    )
    .unwrap();
    sim.create_payment(
        NewPayment::new(Provider::Portmanat, "FG-3", 1990).outcome(Outcome::Success),
    )
    .unwrap();
    sim.run_until_idle().await.unwrap();
    // A forgery and the genuine callback each for Plutu and PaySys; Portmanat's
    // redirect carries nothing to forge.
    let got = receiver.wait_for(5).await;
    let plutu: Vec<_> = got
        .iter()
        .filter(|c| c.path == "/callbacks/plutu")
        .collect();
    assert_eq!(plutu.len(), 2);
    for callback in plutu {
        let pairs = callback.query_pairs();
        let verified = paysettle_sim::plutu::verify_callback(PlutuGateway::Mpgs, &pairs, &secret);
        if form::first(&pairs, "approved") == Some("1") {
            assert_eq!(
                verified,
                Err(paysettle_sim::VerifyError::Mismatch),
                "the forgery"
            );
        } else {
            assert_eq!(verified, Ok(()), "the genuine decline");
        }
    }
    let paysys: Vec<_> = got
        .iter()
        .filter(|c| c.path == "/callbacks/paysys")
        .collect();
    assert_eq!(paysys.len(), 2);
    let statuses: Vec<(i64, String)> = paysys
        .iter()
        .map(|c| {
            (
                c.json()["status"].as_i64().unwrap(),
                c.authorization().unwrap(),
            )
        })
        .collect();
    let forged = statuses.iter().find(|(s, _)| *s == -1).unwrap();
    let genuine = statuses.iter().find(|(s, _)| *s == 2).unwrap();
    assert_ne!(forged.1, genuine.1, "the forgery has the wrong credentials");
    for payment in sim.payments() {
        let forgeries: Vec<_> = payment.callbacks.iter().filter(|c| c.forged).collect();
        match payment.provider {
            Provider::Portmanat => assert!(forgeries.is_empty()),
            _ => {
                assert_eq!(forgeries.len(), 1, "{payment:#?}");
                assert!(forgeries[0].wrongly_signed);
                let opposite = match payment.status {
                    Status::Succeeded => Status::Failed,
                    _ => Status::Succeeded,
                };
                assert_eq!(forgeries[0].status, opposite);
                assert!(
                    payment
                        .callbacks
                        .iter()
                        .filter(|c| !c.forged)
                        .all(|c| !c.wrongly_signed && c.status == payment.status)
                );
            }
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn a_receiver_that_never_answers_is_recorded_as_failed() {
    // A listener that is bound but never accepts: the connection opens, the
    // request goes out, no answer ever comes. (A freed port could be reused
    // by a parallel test; this cannot.)
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = SimConfig::for_tests();
    config.paysys.notify_url = format!("http://{}/n", silent.local_addr().unwrap());
    config.callbacks.timeout_ms = 200;
    let sim = start(config).await;
    let view = sim
        .create_payment(NewPayment::new(Provider::Paysys, "DOWN-1", 100_000))
        .unwrap();
    sim.run_until_idle().await.unwrap();
    let records = sim.payment(&view.id).unwrap().callbacks;
    assert_eq!(records.len(), 2, "awaiting and final notifications");
    for record in records {
        match &record.fate {
            CallbackFate::Failed { error } => assert!(error.contains("no answer"), "{error}"),
            other => panic!("expected a failure, got {other:?}"),
        }
        assert!(record.sent_at.is_some());
    }
    sim.shutdown().await;
    drop(silent);
}

async fn outcomes_for(seed: u64) -> Vec<Outcome> {
    let mut config = SimConfig::for_tests();
    config.seed = seed;
    config.scenario.outcomes = OutcomeMix {
        success: 1,
        failure: 1,
        cancel: 1,
        refund: 1,
    };
    let sim = start(config).await;
    let mut outcomes = Vec::new();
    for n in 0..60 {
        for provider in Provider::ALL {
            let view = sim
                .create_payment(NewPayment::new(provider, format!("MIX-{n}"), 100_000))
                .unwrap();
            outcomes.push(view.planned_outcome);
        }
    }
    sim.shutdown().await;
    outcomes
}

#[tokio::test]
async fn the_outcome_mix_follows_the_seed() {
    let first = outcomes_for(42).await;
    let again = outcomes_for(42).await;
    let other = outcomes_for(43).await;
    assert_eq!(first, again, "same seed, same outcomes");
    assert_ne!(first, other, "another seed, other outcomes");
    let count = |o: Outcome| first.iter().filter(|&&x| x == o).count();
    for outcome in [
        Outcome::Success,
        Outcome::Failure,
        Outcome::Cancel,
        Outcome::Refund,
    ] {
        assert!(count(outcome) >= 20, "{outcome:?}: {}", count(outcome));
    }
    // Only PaySys can refund; elsewhere that weight counts as success.
    for (i, outcome) in first.iter().enumerate() {
        if Provider::ALL[i % 3] != Provider::Paysys {
            assert_ne!(*outcome, Outcome::Refund);
        }
    }
}

#[tokio::test]
async fn outcomes_play_out_as_drawn() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config.scenario.outcomes = OutcomeMix {
        success: 1,
        failure: 1,
        cancel: 1,
        refund: 1,
    };
    let sim = start(config).await;
    for n in 0..12 {
        sim.create_payment(NewPayment::new(
            Provider::Paysys,
            format!("PLAY-{n}"),
            100_000,
        ))
        .unwrap();
    }
    sim.run_until_idle().await.unwrap();
    for payment in sim.payments() {
        let expected = match payment.planned_outcome {
            Outcome::Success => Status::Succeeded,
            Outcome::Failure => Status::Failed,
            Outcome::Cancel => Status::Canceled,
            Outcome::Refund => Status::Refunded,
        };
        assert_eq!(payment.status, expected, "{}", payment.id);
    }
    sim.shutdown().await;
}
