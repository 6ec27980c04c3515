//! PaySys: the JSON-RPC gateway, its Auth header, notifications, partner.notify.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{Method, StatusCode};
use paysettle_sim::config::NumberStyle;
use paysettle_sim::paysys::auth_header;
use paysettle_sim::{
    CallbackFate, Outcome, PartnerNotifyRequest, PartnerNotifyStat, Provider, SimHandle, Status,
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};

use crate::common::*;

fn auth(sim: &SimHandle) -> String {
    let config = &sim.config().paysys;
    auth_header(
        &config.service_id,
        config.secret_key.expose_secret(),
        now_ms(),
    )
}

pub async fn rpc(sim: &SimHandle, method: &str, params: Value) -> Value {
    rpc_with(sim, &auth(sim), method, params).await
}

async fn rpc_with(sim: &SimHandle, auth: &str, method: &str, params: Value) -> Value {
    let request = json!({"method": method, "params": params, "id": "req-1"});
    let answer = post_json(
        &format!("{}/paysys/gateway", sim.base_url()),
        &[("Auth", auth)],
        &request,
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = answer.json();
    assert_eq!(body["id"], "req-1", "the request id is echoed");
    assert!(body["mx_id"].as_str().is_some_and(|m| m.len() == 32));
    body
}

pub fn prepare_params(
    sim: &SimHandle,
    partner_trans_id: &str,
    amount: &str,
    currency: &str,
) -> Value {
    json!({
        "card_holder_name": "CARDHOLDER NAME",
        "card_number": "4278000000275400",
        "card_expire": "2702",
        "card_cvc": "067",
        "amount": amount,
        "currency": currency,
        "vendor_id": sim.config().paysys.vendor_id,
        "partner_trans_id": partner_trans_id,
        "client_ip_addr": "192.4.59.3",
        "description": "Month subscription",
    })
}

fn status_of(result: &Value) -> i64 {
    match &result["status"] {
        Value::Number(n) => n.as_i64().unwrap(),
        Value::String(s) => s.parse().unwrap(),
        other => panic!("status {other}"),
    }
}

fn expected_basic(sim: &SimHandle) -> String {
    let config = &sim.config().paysys;
    format!(
        "Basic {}",
        BASE64.encode(format!(
            "{}:{}",
            config.vendor_method.expose_secret(),
            config.vendor_secret_key.expose_secret()
        ))
    )
}

#[tokio::test]
async fn whole_flow_prepare_notify_check_refund() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config.paysys.status_style = NumberStyle::String;
    let sim = start(config).await;

    let prepared = rpc(
        &sim,
        "paysys.prepare_payment",
        prepare_params(&sim, "167075", "1000", "usd"),
    )
    .await;
    assert_eq!(prepared["error"], Value::Null);
    let txn = prepared["result"]["transaction_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let confirm_url = prepared["result"]["confirm_url"].as_str().unwrap();
    assert!(confirm_url.starts_with(&format!("{}/paysys/3ds/", sim.base_url())));

    // The "awaiting payment" notification arrives first.
    let first = receiver.wait_for(1).await;
    assert_eq!(first[0].method, Method::POST);
    assert_eq!(first[0].authorization(), Some(expected_basic(&sim)));
    assert_eq!(first[0].json()["status"], 1);

    let checked = rpc(
        &sim,
        "paysys.check_payment",
        json!({"partner_trans_id": "167075"}),
    )
    .await;
    assert_eq!(checked["result"]["status"], "1", "status as a string");
    assert_eq!(checked["result"]["transaction_id"], txn.as_str());
    assert_eq!(checked["result"]["err_obj"], Value::Null);

    let id = sim.find(Provider::Paysys, "167075").unwrap().id;
    sim.force_outcome(&id, Outcome::Success).unwrap();
    sim.advance(PAST_PENDING).await.unwrap();
    let got = receiver.wait_for(2).await;
    let note = got[1].json();
    assert_eq!(note["id"], txn.as_str());
    assert_eq!(note["account"], "167075");
    assert_eq!(note["amount"], 1000, "minor units as a number");
    assert_eq!(note["card_masked"], "427800******5400");
    assert_eq!(note["currency"], 840);
    assert_eq!(note["currency_name"], "usd");
    assert_eq!(note["status"], 2);
    let date = note["date"].as_str().unwrap();
    let expected_date =
        paysettle_sim::paysys::notification_date(sim.payment(&id).unwrap().created_at);
    assert_eq!(date, expected_date);
    assert_eq!(&date[2..3], ".");
    assert_eq!(date.len(), 19, "dd.mm.yyyy HH:MM:SS: {date}");

    let checked = rpc(
        &sim,
        "paysys.check_payment",
        json!({"partner_trans_id": "167075"}),
    )
    .await;
    assert_eq!(status_of(&checked["result"]), 2);
    assert_eq!(checked["result"]["data"]["RESULT"], "OK");
    assert_eq!(checked["result"]["data"]["CARD_NUMBER"], "427800******5400");

    // A partial refund, then one that would exceed the payment.
    let refunded = rpc(
        &sim,
        "paysys.refund_payment",
        json!({"partner_trans_id": "167075", "amount": "400", "currency": "usd"}),
    )
    .await;
    assert_eq!(refunded["error"], Value::Null);
    assert_eq!(status_of(&refunded["result"]), 6);
    let too_much = rpc(
        &sim,
        "paysys.refund_payment",
        json!({"partner_trans_id": "167075", "amount": 601, "currency": "usd"}),
    )
    .await;
    assert_eq!(too_much["error"]["code"], -32314);
    assert_eq!(too_much["result"], Value::Null);
    sim.settle().await.unwrap();
    let got = receiver.wait_for(3).await;
    assert_eq!(got[2].json()["status"], 6);

    let payment = sim.payment(&id).unwrap();
    assert_eq!(payment.refunded_minor, 400);
    let statuses: Vec<Status> = payment.timeline.iter().map(|c| c.status).collect();
    assert_eq!(
        statuses,
        vec![
            Status::Created,
            Status::Pending,
            Status::Succeeded,
            Status::Refunded
        ]
    );
    assert_eq!(payment.callbacks.len(), 3);
    assert!(
        payment
            .callbacks
            .iter()
            .all(|c| c.fate == CallbackFate::Delivered { http_status: 200 })
    );
    assert_eq!(receiver.received().len(), 3);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_auth_header_is_checked_and_a_stale_one_refused() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    let config = sim.config().paysys.clone();
    let secret = config.secret_key.expose_secret();
    let params = json!({"partner_trans_id": "none"});

    for bad in [
        String::new(),
        auth_header(&config.service_id, "wrong-secret", now_ms()),
        auth_header("9999", secret, now_ms()),
        auth_header(&config.service_id, secret, now_ms() - 10 * 60 * 1000),
        auth_header(&config.service_id, secret, now_ms() + 10 * 60 * 1000),
    ] {
        let answer = rpc_with(&sim, &bad, "paysys.check_payment", params.clone()).await;
        assert_eq!(answer["error"]["code"], -32504, "{bad:?}");
        assert_eq!(answer["result"], Value::Null);
    }
    let answer = rpc(&sim, "paysys.check_payment", params).await;
    assert_eq!(
        answer["error"]["code"], -32305,
        "authenticated, but unknown"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn documented_error_shapes() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    let url = format!("{}/paysys/gateway", sim.base_url());

    let parse = send(
        Method::POST,
        &url,
        &[("Auth", &auth(&sim))],
        Some(("application/json", b"{nope".to_vec())),
    )
    .await;
    let parse = parse.json();
    assert_eq!(parse["error"]["code"], -32700);
    assert_eq!(parse["id"], Value::Null);

    assert_eq!(
        rpc(&sim, "paysys.nothing", json!({})).await["error"]["code"],
        -32601
    );

    let ok = rpc(
        &sim,
        "paysys.prepare_payment",
        prepare_params(&sim, "P-1", "1139000", "uzs"),
    )
    .await;
    assert_eq!(ok["error"], Value::Null);
    let dup = rpc(
        &sim,
        "paysys.prepare_payment",
        prepare_params(&sim, "P-1", "1139000", "uzs"),
    )
    .await;
    assert_eq!(dup["error"]["code"], -32306);
    let small = rpc(
        &sim,
        "paysys.prepare_payment",
        prepare_params(&sim, "P-2", "99999", "uzs"),
    )
    .await;
    assert_eq!(small["error"]["code"], -32310);
    let mut bad_card = prepare_params(&sim, "P-3", "1139000", "uzs");
    bad_card["card_number"] = json!("4278-0000");
    let bad_card = rpc(&sim, "paysys.prepare_payment", bad_card).await;
    assert_eq!(bad_card["error"]["code"], -32602);
    assert!(
        bad_card["error"]["message"]
            .as_str()
            .unwrap()
            .contains("card_number")
    );
    let mut vendor = prepare_params(&sim, "P-4", "1139000", "uzs");
    vendor["vendor_id"] = json!("1");
    assert_eq!(
        rpc(&sim, "paysys.prepare_payment", vendor).await["error"]["code"],
        -32312
    );
    let mut currency = prepare_params(&sim, "P-5", "1139000", "uzs");
    currency["currency"] = json!("gbp");
    assert_eq!(
        rpc(&sim, "paysys.prepare_payment", currency).await["error"]["code"],
        -32602
    );

    // No card data is kept beyond the mask.
    let view = sim.find(Provider::Paysys, "P-1").unwrap();
    assert!(!format!("{view:?}").contains("4278000000275400"));
    // A refund before the payment completed.
    let early = rpc(
        &sim,
        "paysys.refund_payment",
        json!({"partner_trans_id": "P-1", "amount": 1000}),
    )
    .await;
    assert_eq!(early["error"]["code"], -32315);
    sim.shutdown().await;
}

#[tokio::test]
async fn cancel_pending_then_again() {
    let receiver = Receiver::start().await;
    let mut config = config_for(&receiver);
    config.paysys.notify_pending = false;
    config.paysys.status_style = NumberStyle::Number;
    let sim = start(config).await;
    rpc(
        &sim,
        "paysys.prepare_payment",
        prepare_params(&sim, "C-1", "500", "eur"),
    )
    .await;
    let cancelled = rpc(
        &sim,
        "paysys.cancel_payment",
        json!({"partner_trans_id": "C-1"}),
    )
    .await;
    assert_eq!(cancelled["result"]["status"], 3);
    let again = rpc(
        &sim,
        "paysys.cancel_payment",
        json!({"partner_trans_id": "C-1"}),
    )
    .await;
    assert_eq!(again["error"]["code"], -32313);
    assert_eq!(again["error"]["message"], "Transaction status is canceled");
    sim.run_until_idle().await.unwrap();
    let got = receiver.wait_for(1).await;
    assert_eq!(
        got.len(),
        1,
        "no status-1 notification when notify_pending is off"
    );
    assert_eq!(got[0].json()["status"], 3);
    assert_eq!(got[0].json()["currency"], 978);
    // The customer can no longer pay it.
    assert_eq!(
        sim.find(Provider::Paysys, "C-1").unwrap().status,
        Status::Canceled
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_failed_payment_has_err_obj() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    rpc(
        &sim,
        "paysys.prepare_payment",
        prepare_params(&sim, "F-1", "1139000", "uzs"),
    )
    .await;
    let id = sim.find(Provider::Paysys, "F-1").unwrap().id;
    sim.pay(&id, Some(Outcome::Failure)).unwrap();
    let checked = rpc(
        &sim,
        "paysys.check_payment",
        json!({"partner_trans_id": "F-1"}),
    )
    .await;
    assert_eq!(status_of(&checked["result"]), -1);
    assert_eq!(checked["result"]["err_obj"]["code"], -32320);
    assert_eq!(checked["result"]["data"]["RESULT"], "FAILED");
    sim.shutdown().await;
}

#[tokio::test]
async fn the_refund_outcome_notifies_success_then_refund() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    let view = sim
        .create_payment(
            paysettle_sim::NewPayment::new(Provider::Paysys, "RF-1", 250_000)
                .outcome(Outcome::Refund),
        )
        .unwrap();
    sim.run_until_idle().await.unwrap();
    let statuses: Vec<i64> = receiver
        .wait_for(3)
        .await
        .iter()
        .map(|c| c.json()["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![1, 2, 6]);
    let payment = sim.payment(&view.id).unwrap();
    assert_eq!(payment.status, Status::Refunded);
    assert_eq!(payment.refunded_minor, 250_000);
    sim.shutdown().await;
}

#[tokio::test]
async fn partner_notify_success_and_error() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    sim.send_partner_notify(&PartnerNotifyRequest {
        stat: PartnerNotifyStat::Success,
        card_id: Some("d553921350e68a6af96d63a544720f9c".to_owned()),
        token: None,
        pan: None,
        code: None,
        message: None,
    })
    .unwrap();
    sim.send_partner_notify(&PartnerNotifyRequest {
        stat: PartnerNotifyStat::Error,
        card_id: None,
        token: None,
        pan: None,
        code: Some("-34000".to_owned()),
        message: Some("Описание ошибки".to_owned()),
    })
    .unwrap();
    sim.settle().await.unwrap();
    let got = receiver.wait_for(2).await;
    let mut bodies: Vec<Value> = got.iter().map(|c| c.json()).collect();
    bodies.sort_by_key(|b| b["params"]["stat"].as_str().unwrap().to_owned());
    for (captured, body) in got.iter().zip(&bodies) {
        assert_eq!(captured.authorization(), Some(expected_basic(&sim)));
        assert_eq!(body["method"], "partner.notify");
        assert!(body["id"].is_string());
    }
    let error = &bodies[0]["params"];
    assert_eq!(error["stat"], "ERROR");
    assert_eq!(error["code"], "-34000");
    assert_eq!(error["message"], "Описание ошибки");
    let success = &bodies[1]["params"];
    assert_eq!(success["stat"], "SUCCESS");
    assert_eq!(success["id"], "d553921350e68a6af96d63a544720f9c");
    assert_eq!(success["pan"], "222222******2222");
    assert_eq!(success["token"].as_str().unwrap().len(), 40);
    let records = sim.partner_notifies();
    assert_eq!(records.len(), 2);
    assert!(
        records
            .iter()
            .all(|r| r.callback.fate == CallbackFate::Delivered { http_status: 200 })
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn the_3ds_page_lets_a_browser_finish() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    let mut params = prepare_params(&sim, "B-1", "1139000", "uzs");
    params["redirect_url"] = json!("http://127.0.0.1:1/order/23");
    let prepared = rpc(&sim, "paysys.prepare_payment", params).await;
    let confirm_url = prepared["result"]["confirm_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(get(&confirm_url).await.status, StatusCode::OK);
    let answer = post_form(&confirm_url, &[], &[("outcome", "success")]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    assert_eq!(
        answer.header("location"),
        Some("http://127.0.0.1:1/order/23")
    );
    assert_eq!(
        sim.find(Provider::Paysys, "B-1").unwrap().status,
        Status::Succeeded
    );
    sim.settle().await.unwrap();
    let statuses: Vec<i64> = receiver
        .wait_for(2)
        .await
        .iter()
        .map(|c| c.json()["status"].as_i64().unwrap())
        .collect();
    assert_eq!(statuses, vec![1, 2]);
    sim.shutdown().await;
}
