//! Injected API faults: 500, 429 with Retry-After, timeouts, garbage, latency.
//! Each test shows the control takes effect, and only where it was set.

use std::time::Duration;

use http::{Method, StatusCode};
use paysettle_sim::scenario::{Faults, Latency};
use paysettle_sim::{Provider, ScenarioPatch, SimHandle};
use serde_json::json;

use crate::common::*;
use crate::paysys::{prepare_params, rpc};

fn faults(f: Faults) -> ScenarioPatch {
    ScenarioPatch {
        faults: Some(f),
        ..ScenarioPatch::default()
    }
}

async fn check_unknown(sim: &SimHandle) -> Result<Answer, String> {
    try_send(
        Method::POST,
        &format!("{}/portmanat/check", sim.base_url()),
        &[],
        Some(("application/x-www-form-urlencoded", b"psp_rrn=x".to_vec())),
    )
    .await
}

#[tokio::test]
async fn http_500_at_a_rate_and_only_where_set() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    sim.set_scenario(
        Some(Provider::Portmanat),
        faults(Faults {
            http_500: 0.5,
            ..Faults::default()
        }),
    )
    .unwrap();
    let mut errors = 0;
    for _ in 0..40 {
        let answer = check_unknown(&sim).await.unwrap();
        match answer.status {
            StatusCode::INTERNAL_SERVER_ERROR => errors += 1,
            // `code` is a number or a string (mixed style): 20 either way.
            StatusCode::OK => assert_eq!(answer.json()["code"].to_string().trim_matches('"'), "20"),
            other => panic!("unexpected {other}"),
        }
    }
    assert!((5..=35).contains(&errors), "{errors} of 40");
    let stats = sim.stats();
    assert_eq!(stats.portmanat.requests, 40);
    assert_eq!(stats.portmanat.http_500, errors);

    // PaySys is untouched.
    let answer = rpc(
        &sim,
        "paysys.check_payment",
        json!({"partner_trans_id": "x"}),
    )
    .await;
    assert_eq!(answer["error"]["code"], -32305);
    assert_eq!(sim.stats().paysys.http_500, 0);
    sim.shutdown().await;
}

#[tokio::test]
async fn too_many_requests_with_retry_after() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    sim.set_scenario(
        Some(Provider::Paysys),
        faults(Faults {
            too_many_requests: 1.0,
            retry_after_secs: 7,
            ..Faults::default()
        }),
    )
    .unwrap();
    let answer = post_json(
        &format!("{}/paysys/gateway", sim.base_url()),
        &[],
        &json!({"method": "paysys.check_payment"}),
    )
    .await;
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.header("retry-after"), Some("7"));
    assert_eq!(sim.stats().paysys.too_many_requests, 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_timeout_never_answers_and_closes_the_connection() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    // A client with its own deadline gives up while the request is held.
    sim.set_scenario(
        Some(Provider::Portmanat),
        faults(Faults {
            timeout: 1.0,
            timeout_hold_ms: 60_000,
            ..Faults::default()
        }),
    )
    .unwrap();
    let waited = tokio::time::timeout(Duration::from_millis(300), check_unknown(&sim)).await;
    assert!(waited.is_err(), "no answer while held");

    // With a short hold the connection is closed without any answer.
    sim.set_scenario(
        Some(Provider::Portmanat),
        faults(Faults {
            timeout: 1.0,
            timeout_hold_ms: 100,
            ..Faults::default()
        }),
    )
    .unwrap();
    let closed = tokio::time::timeout(DEADLINE, check_unknown(&sim))
        .await
        .expect("the hold ends");
    let err = closed.expect_err("closed without an HTTP answer");
    assert!(
        err.contains("IncompleteMessage") || err.contains("Closed") || err.contains("reset"),
        "{err}"
    );
    assert_eq!(sim.stats().portmanat.timeouts, 2);
    // The held request was not processed.
    sim.shutdown().await;
}

#[tokio::test]
async fn garbage_is_a_200_that_does_not_parse() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    sim.set_scenario(
        Some(Provider::Paysys),
        faults(Faults {
            garbage: 1.0,
            ..Faults::default()
        }),
    )
    .unwrap();
    for n in 0..10 {
        let params = prepare_params(&sim, &format!("G-{n}"), "1139000", "uzs");
        let answer = post_json(
            &format!("{}/paysys/gateway", sim.base_url()),
            &[(
                "Auth",
                &paysettle_sim::paysys::auth_header(
                    &sim.config().paysys.service_id,
                    secrecy::ExposeSecret::expose_secret(&sim.config().paysys.secret_key),
                    now_ms(),
                ),
            )],
            &json!({"method": "paysys.prepare_payment", "params": params, "id": 1}),
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK);
        assert!(
            serde_json::from_slice::<serde_json::Value>(&answer.body).is_err(),
            "{:?}",
            answer.body
        );
    }
    assert_eq!(sim.stats().paysys.garbage, 10);
    // The requests were processed even though the answers were unreadable.
    assert_eq!(sim.payments().len(), 10);
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_delays_answers() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    sim.set_scenario(
        Some(Provider::Portmanat),
        ScenarioPatch {
            latency: Some(Latency::Fixed { ms: 300 }),
            ..ScenarioPatch::default()
        },
    )
    .unwrap();
    // The answer comes once the delay is over, and it is not there a tenth
    // of the delay in (a lower bound, so it cannot be flaky).
    assert_eq!(check_unknown(&sim).await.unwrap().status, StatusCode::OK);
    assert_eq!(sim.stats().portmanat.delayed, 1);
    let early = tokio::time::timeout(Duration::from_millis(30), check_unknown(&sim)).await;
    assert!(early.is_err(), "answered before the injected delay");
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_from_the_config_file() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config = {
        let file = paysettle_sim::SimConfig::from_toml(
            "[plutu.scenario.faults]\nhttp_500 = 1.0\n[portmanat.scenario.faults]\ntoo_many_requests = 1.0\nretry_after_secs = 3\n",
        )
        .unwrap();
        config.plutu.scenario = file.plutu.scenario;
        config.portmanat.scenario = file.portmanat.scenario;
        config
    };
    let sim = start(config).await;
    let status = post_form(
        &format!("{}/plutu/api/v1/transaction/mpgs/confirm", sim.base_url()),
        &[],
        &[],
    )
    .await
    .status;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let answer = check_unknown(&sim).await.unwrap();
    assert_eq!(answer.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(answer.header("retry-after"), Some("3"));
    sim.reset_scenario();
    let answer = check_unknown(&sim).await.unwrap();
    assert_eq!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS,
        "reset returns to the configured scenario"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn shutdown_ends_a_held_request() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    sim.set_scenario(
        None,
        faults(Faults {
            timeout: 1.0,
            timeout_hold_ms: 600_000,
            ..Faults::default()
        }),
    )
    .unwrap();
    let url = format!("{}/portmanat/check?psp_rrn=x", sim.base_url());
    let held = tokio::spawn(async move { try_send(Method::GET, &url, &[], None).await });
    // Wait until the request is being held (counted), not a fixed time.
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while sim.stats().portmanat.timeouts == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the request never arrived"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::timeout(DEADLINE, sim.shutdown())
        .await
        .expect("shutdown does not wait for the hold");
    let result = tokio::time::timeout(DEADLINE, held).await.unwrap().unwrap();
    assert!(result.is_err(), "the held request got no answer");
}

/// Two status checks of one payment answered at the same time are counted
/// as overlapping: what the replicas' claims must never let happen.
#[tokio::test]
async fn checks_of_one_payment_at_once_are_counted_as_overlapping() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    sim.set_scenario(
        Some(Provider::Portmanat),
        ScenarioPatch {
            latency: Some(Latency::Fixed { ms: 300 }),
            ..ScenarioPatch::default()
        },
    )
    .unwrap();
    let (a, b) = tokio::join!(check_unknown(&sim), check_unknown(&sim));
    assert_eq!(a.unwrap().status, StatusCode::OK);
    assert_eq!(b.unwrap().status, StatusCode::OK);
    assert_eq!(sim.stats().portmanat.overlapping_checks, 1);
    // One after the other is not an overlap.
    check_unknown(&sim).await.unwrap();
    assert_eq!(sim.stats().portmanat.overlapping_checks, 1);
    sim.shutdown().await;
}

/// An injected timeout is a request lost before the provider sees it: a
/// client that gives up on it and asks again is not asking twice at once,
/// however long the simulator holds the dead connection.
#[tokio::test]
async fn a_check_lost_to_an_injected_timeout_is_not_in_flight() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    sim.set_scenario(
        Some(Provider::Portmanat),
        faults(Faults {
            timeout: 1.0,
            timeout_hold_ms: 60_000,
            ..Faults::default()
        }),
    )
    .unwrap();
    // The client's own timeout, far shorter than the hold.
    let lost = tokio::time::timeout(Duration::from_millis(200), check_unknown(&sim)).await;
    assert!(lost.is_err(), "the injected timeout answered");
    assert_eq!(sim.stats().portmanat.timeouts, 1);
    sim.set_scenario(Some(Provider::Portmanat), faults(Faults::default()))
        .unwrap();
    // The retry, while the lost one's connection is still held.
    assert_eq!(check_unknown(&sim).await.unwrap().status, StatusCode::OK);
    assert_eq!(sim.stats().portmanat.overlapping_checks, 0);
    sim.shutdown().await;
}
