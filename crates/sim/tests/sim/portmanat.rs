//! Portmanat: /process, the bank page, the browser return, /check.

use http::{Method, StatusCode};
use paysettle_sim::config::{CallbackMethod, DateField, NumberStyle};
use paysettle_sim::portmanat::process_hash;
use paysettle_sim::{CallbackFate, CallbackKind, Outcome, Provider, Status, form};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::common::*;

fn process_form<'a>(
    service_id: &'a str,
    client_rrn: &'a str,
    amount: &'a str,
    hash: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("service_id", service_id),
        ("client_rrn", client_rrn),
        ("amount", amount),
        ("client_ip", "10.1.2.3"),
        ("hash", hash),
    ]
}

/// Posts a correctly hashed /process form and returns the psp_rrn from the
/// redirect to the bank page.
async fn process(sim: &paysettle_sim::SimHandle, client_rrn: &str, amount: &str) -> String {
    let config = &sim.config().portmanat;
    let hash = process_hash(
        &config.service_id,
        client_rrn,
        amount,
        config.secret_key.expose_secret(),
    );
    let answer = post_form(
        &format!("{}/portmanat/process", sim.base_url()),
        &[],
        &process_form(&config.service_id, client_rrn, amount, &hash),
    )
    .await;
    assert_eq!(answer.status, StatusCode::FOUND, "{:?}", answer.body);
    let location = answer.header("location").unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/portmanat/bank?", sim.base_url())),
        "{location}"
    );
    let query = location.split_once('?').unwrap().1;
    let pairs = form::parse_pairs(query);
    assert_eq!(form::first(&pairs, "client_rrn"), Some(client_rrn));
    form::first(&pairs, "psp_rrn").unwrap().to_owned()
}

async fn check(sim: &paysettle_sim::SimHandle, psp_rrn: &str) -> Value {
    let answer = post_form(
        &format!("{}/portmanat/check", sim.base_url()),
        &[],
        &[("psp_rrn", psp_rrn)],
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    answer.json()
}

#[tokio::test]
async fn whole_flow_process_pay_return_and_check() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config.portmanat.code_style = NumberStyle::Number;
    let sim = start(config).await;

    let psp_rrn = process(&sim, "ORDER-42", "19.90").await;
    let payment = sim.find(Provider::Portmanat, "ORDER-42").unwrap();
    assert_eq!(payment.provider_txn_id.as_deref(), Some(psp_rrn.as_str()));
    assert_eq!(
        (
            payment.amount_minor,
            payment.currency.code(),
            payment.amount_text.as_str()
        ),
        (1990, "AZN", "19.90")
    );

    // Pending while the customer is at the bank.
    let pending = check(&sim, &psp_rrn).await;
    assert_eq!(pending["status"], "OK");
    assert_eq!(pending["code"], 1);
    assert_eq!(pending["description"], "Pending");
    let body = &pending["body"];
    assert_eq!(body["amount"], "19.90");
    assert_eq!(body["client_rrn"], "ORDER-42");
    assert_eq!(body["psp_rrn"], psp_rrn.as_str());
    assert!(body["bank_rrn"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(body["created_at"]["timezone"], "Asia/Baku");
    assert_eq!(body["created_at"]["timezone_type"], 3);
    let date = body["created_at"]["date"].as_str().unwrap();
    assert!(date.ends_with(".000000") && date.len() == 26, "{date}");
    assert!(receiver.received().is_empty());

    sim.force_outcome(&payment.id, Outcome::Success).unwrap();
    // The pending time (at most 200 ms in tests) passes on the sim's clock.
    sim.advance(PAST_PENDING).await.unwrap();

    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].method, Method::GET);
    assert_eq!(got[0].path, "/callbacks/portmanat");
    let pairs = got[0].query_pairs();
    assert_eq!(form::first(&pairs, "psp_rrn"), Some(psp_rrn.as_str()));
    assert_eq!(form::first(&pairs, "client_rrn"), Some("ORDER-42"));
    assert!(
        form::first(&pairs, "hash").is_none(),
        "the return carries no signature"
    );

    let done = check(&sim, &psp_rrn).await;
    assert_eq!(done["code"], 0);
    assert_eq!(done["description"], "Success");

    let payment = sim.payment(&payment.id).unwrap();
    let statuses: Vec<Status> = payment.timeline.iter().map(|c| c.status).collect();
    assert_eq!(statuses, vec![Status::Pending, Status::Succeeded]);
    assert_eq!(payment.callbacks.len(), 1);
    assert_eq!(payment.callbacks[0].kind, CallbackKind::BrowserRedirect);
    assert_eq!(
        payment.callbacks[0].fate,
        CallbackFate::Delivered { http_status: 200 }
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_declined_payment_checks_as_minus_one() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config.portmanat.code_style = NumberStyle::String;
    let sim = start(config).await;
    let psp_rrn = process(&sim, "ORDER-43", "5.23").await;
    let id = sim.find(Provider::Portmanat, "ORDER-43").unwrap().id;
    sim.pay(&id, Some(Outcome::Failure)).unwrap();
    sim.settle().await.unwrap();
    receiver.wait_for(1).await;
    let answer = check(&sim, &psp_rrn).await;
    assert_eq!(answer["status"], "OK");
    assert_eq!(answer["code"], "-1", "code as a string");
    assert_eq!(answer["description"], "Request failed");
    sim.shutdown().await;
}

#[tokio::test]
async fn process_refuses_bad_input() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    let url = format!("{}/portmanat/process", sim.base_url());
    let config = sim.config().portmanat.clone();
    let secret = config.secret_key.expose_secret();

    let wrong_hash = process_hash(&config.service_id, "R-1", "1.00", "not-the-secret");
    let answer = post_form(
        &url,
        &[],
        &process_form(&config.service_id, "R-1", "1.00", &wrong_hash),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let body = answer.json();
    assert_eq!(
        (body["status"].as_str(), body["code"].as_i64()),
        (Some("BAD"), Some(10))
    );
    assert!(body["errors"]["hash"].is_array());

    // The hash is over the exact amount string: "1.0" signed, "1.00" sent.
    let other_amount = process_hash(&config.service_id, "R-1", "1.0", secret);
    let answer = post_form(
        &url,
        &[],
        &process_form(&config.service_id, "R-1", "1.00", &other_amount),
    )
    .await;
    assert!(answer.json()["errors"]["hash"].is_array());

    let answer = post_form(&url, &[], &[("service_id", config.service_id.as_str())]).await;
    let errors = answer.json()["errors"].clone();
    for field in ["client_rrn", "amount", "client_ip", "hash"] {
        assert!(
            errors[field].is_array(),
            "{field} reported missing: {errors}"
        );
    }

    let hash = process_hash("999", "R-1", "1.00", secret);
    let answer = post_form(&url, &[], &process_form("999", "R-1", "1.00", &hash)).await;
    assert!(answer.json()["errors"]["service_id"].is_array());

    let hash = process_hash(&config.service_id, "R-1", "1,00", secret);
    let answer = post_form(
        &url,
        &[],
        &process_form(&config.service_id, "R-1", "1,00", &hash),
    )
    .await;
    assert!(answer.json()["errors"]["amount"].is_array());

    // A reused client_rrn.
    process(&sim, "R-2", "1.00").await;
    let hash = process_hash(&config.service_id, "R-2", "1.00", secret);
    let answer = post_form(
        &url,
        &[],
        &process_form(&config.service_id, "R-2", "1.00", &hash),
    )
    .await;
    assert!(answer.json()["errors"]["client_rrn"].is_array());

    let answer = get(&url).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        sim.payments().len(),
        1,
        "only the valid form created a payment"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn check_answers_bad_10_bad_20_by_query_with_date_field() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config.portmanat.code_style = NumberStyle::String;
    config.portmanat.date_field = DateField::Date;
    let sim = start(config).await;
    let url = format!("{}/portmanat/check", sim.base_url());

    let missing = post_form(&url, &[], &[]).await.json();
    assert_eq!(missing["status"], "BAD");
    assert_eq!(missing["code"], "10");
    assert_eq!(missing["description"], "Validation error");
    assert_eq!(
        missing["errors"]["psp_rrn"][0],
        "The psp rrn field is required."
    );

    let wrong = get(&format!("{url}?psp_rrn=1471851442-lfI7yG-vTuaxI-x87xAS"))
        .await
        .json();
    assert_eq!(wrong["status"], "BAD");
    assert_eq!(wrong["code"], "20");
    assert_eq!(wrong["description"], "RRN is wrong");

    let psp_rrn = process(&sim, "Q-1", "2.50").await;
    // Some integrations send psp_rrn as a query string.
    let by_query = send(Method::POST, &format!("{url}?psp_rrn={psp_rrn}"), &[], None)
        .await
        .json();
    assert_eq!(by_query["status"], "OK");
    assert_eq!(by_query["code"], "1");
    assert!(by_query["body"]["date"]["date"].is_string());
    assert!(by_query["body"].get("created_at").is_none());
    sim.shutdown().await;
}

#[tokio::test]
async fn mixed_code_style_sends_both_shapes() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await; // code_style = mixed by default
    let psp_rrn = process(&sim, "MIX-1", "1.00").await;
    let mut numbers = 0;
    let mut strings = 0;
    for _ in 0..40 {
        match &check(&sim, &psp_rrn).await["code"] {
            Value::Number(n) => {
                assert_eq!(n.as_i64(), Some(1));
                numbers += 1;
            }
            Value::String(s) => {
                assert_eq!(s, "1");
                strings += 1;
            }
            other => panic!("unexpected code {other}"),
        }
    }
    assert!(
        numbers > 0 && strings > 0,
        "numbers {numbers}, strings {strings}"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_real_browser_on_the_bank_page_returns_to_the_callback() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    let psp_rrn = process(&sim, "WEB-1", "3.00").await;
    let page = get(&format!(
        "{}/portmanat/bank?psp_rrn={psp_rrn}",
        sim.base_url()
    ))
    .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&page.body).contains("WEB-1"));

    let answer = post_form(
        &format!("{}/portmanat/bank", sim.base_url()),
        &[],
        &[("psp_rrn", &psp_rrn), ("outcome", "cancel")],
    )
    .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let location = answer.header("location").unwrap();
    let expected = format!(
        "{}?psp_rrn={psp_rrn}&client_rrn=WEB-1",
        receiver.url("/callbacks/portmanat")
    );
    assert_eq!(location, expected);

    let payment = sim.find(Provider::Portmanat, "WEB-1").unwrap();
    assert_eq!(payment.status, Status::Canceled);
    assert_eq!(payment.callbacks[0].fate, CallbackFate::FollowedByBrowser);
    // The simulator does not also play the browser.
    sim.run_until_idle().await.unwrap();
    assert!(receiver.received().is_empty());
    assert_eq!(check(&sim, &psp_rrn).await["description"], "Request failed");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_browser_return_can_be_a_form_post() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config.portmanat.callback_method = CallbackMethod::Post;
    let sim = start(config).await;
    let psp_rrn = process(&sim, "POST-1", "1.00").await;
    sim.run_until_idle().await.unwrap();
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].method, Method::POST);
    assert!(got[0].query.is_empty());
    let pairs = form::parse_pairs(std::str::from_utf8(&got[0].body).unwrap());
    assert_eq!(form::first(&pairs, "psp_rrn"), Some(psp_rrn.as_str()));
    assert_eq!(form::first(&pairs, "client_rrn"), Some("POST-1"));
    sim.shutdown().await;
}

#[tokio::test]
async fn check_dates_name_their_zone_as_configured() {
    use paysettle_sim::config::TimezoneStyle;
    let receiver = Receiver::start().await;
    for (style, kind, zone) in [
        (TimezoneStyle::Name, 3, "Asia/Baku"),
        (TimezoneStyle::Offset, 1, "+04:00"),
        (TimezoneStyle::Abbreviation, 2, "+04"),
    ] {
        let mut config = config_for(&receiver);
        config.portmanat.timezone_style = style;
        let sim = start(config).await;
        let psp_rrn = process(&sim, "TZ-1", "1.00").await;
        let answer = check(&sim, &psp_rrn).await;
        let date = &answer["body"]["created_at"];
        assert_eq!(date["timezone_type"], kind, "{style:?}");
        assert_eq!(date["timezone"], zone, "{style:?}");
        assert_eq!(answer["body"]["service"]["test"], 0, "live mode by default");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn check_answers_can_leave_out_the_body_or_its_client_rrn() {
    use paysettle_sim::scenario::{Answers, ScenarioPatch};
    let receiver = Receiver::start().await;
    for (answers, reference) in [
        (
            Answers {
                without_body: 1.0,
                ..Answers::default()
            },
            "NB-1",
        ),
        (
            Answers {
                without_client_rrn: 1.0,
                ..Answers::default()
            },
            "NC-1",
        ),
    ] {
        let mut config = config_for(&receiver);
        config.portmanat.scenario = ScenarioPatch {
            answers: Some(answers),
            ..ScenarioPatch::default()
        };
        let sim = start(config).await;
        let psp_rrn = process(&sim, reference, "1.00").await;
        let answer = check(&sim, &psp_rrn).await;
        assert_eq!(answer["status"], "OK", "{answer}");
        if answers.without_body > 0.0 {
            assert!(answer.get("body").is_none(), "{answer}");
        } else {
            let body = &answer["body"];
            assert!(body.get("client_rrn").is_none(), "{answer}");
            assert_eq!(body["psp_rrn"], psp_rrn.as_str(), "{answer}");
            assert_eq!(body["amount"], "1.00", "{answer}");
        }
        sim.shutdown().await;
    }
}
