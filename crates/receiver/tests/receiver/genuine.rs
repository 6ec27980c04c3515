//! Genuine callbacks from each provider: answered in the provider's shape,
//! queued exactly once, with the right observation and a raw request that
//! keeps no secret.

use std::collections::BTreeMap;

use http::Method;
use paysettle_core::inbound::{CardToken, FORMAT_VERSION, Payload};
use paysettle_core::{Currency, Money, ObservedStatus, Provider};
use paysettle_queue::BackendKind;
use paysettle_sim::{
    CallbackFate, NewPayment, Outcome, PartnerNotifyRequest, PartnerNotifyStat, PlutuGateway,
    Provider as SimProvider,
};
use serde_json::json;

use crate::support::*;

const CARD_TOKEN: &str = "0b6227c70d365255176cb6c3b9b6cccfd3aa17b0";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_callbacks_are_answered_and_queued_once_embedded() {
    simulator_callbacks(BackendKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simulator_callbacks_are_answered_and_queued_once_rabbitmq() {
    simulator_callbacks(BackendKind::RabbitMq).await;
}

fn delivered(fate: &CallbackFate) -> Option<u16> {
    match fate {
        CallbackFate::Delivered { http_status } => Some(*http_status),
        _ => None,
    }
}

async fn simulator_callbacks(backend: BackendKind) {
    let receiver = spawn_receiver(backend).await;
    let sim = receiver.sim().await;
    remember_secret("card_token", CARD_TOKEN);

    let paysys = sim
        .create_payment(
            NewPayment::new(SimProvider::Paysys, "PS-1001", 150_000).outcome(Outcome::Success),
        )
        .unwrap();
    // The shop's own parameters in its return URL are not signed and must
    // not disturb verification.
    let mpgs = sim
        .create_payment(
            NewPayment::new(SimProvider::Plutu, "INV-2001", 1250)
                .callback_url(receiver.url("/callbacks/plutu?shop_order=77&lang=ar"))
                .outcome(Outcome::Success),
        )
        .unwrap();
    let local_cards = sim
        .create_payment(
            NewPayment::new(SimProvider::Plutu, "INV-2002", 5250)
                .gateway(PlutuGateway::Localbankcards)
                .outcome(Outcome::Cancel),
        )
        .unwrap();
    let portmanat = sim
        .create_payment(
            NewPayment::new(SimProvider::Portmanat, "PM-3001", 523).outcome(Outcome::Success),
        )
        .unwrap();
    sim.send_partner_notify(&PartnerNotifyRequest {
        stat: PartnerNotifyStat::Success,
        card_id: Some("card-1".into()),
        token: Some(CARD_TOKEN.into()),
        // A provider that sends a full card number: it must not be kept.
        pan: Some("4111111111111111".into()),
        code: None,
        message: None,
    })
    .unwrap();
    sim.send_partner_notify(&PartnerNotifyRequest {
        stat: PartnerNotifyStat::Error,
        card_id: Some("card-2".into()),
        token: None,
        pan: None,
        code: Some("-34000".into()),
        message: Some("card declined".into()),
    })
    .unwrap();
    sim.run_until_idle().await.unwrap();

    // Answered as each provider expects.
    let mut sent = 0;
    for payment in sim.payments() {
        let expected = match payment.provider {
            SimProvider::Paysys => 200,
            // Browsers go on to the configured result pages.
            SimProvider::Plutu | SimProvider::Portmanat => 303,
        };
        assert!(!payment.callbacks.is_empty(), "{}", payment.id);
        for callback in &payment.callbacks {
            assert_eq!(
                delivered(&callback.fate),
                Some(expected),
                "{} {callback:?}",
                payment.id
            );
            sent += 1;
        }
    }
    for notify in sim.partner_notifies() {
        assert_eq!(delivered(&notify.callback.fate), Some(200), "{notify:?}");
        sent += 1;
    }
    assert_eq!(
        sent, 7,
        "PaySys awaiting + completed, 2 Plutu, 1 Portmanat, 2 cards"
    );

    // Each exactly once, with the right content.
    let queued = receiver.drain(sent).await;
    let mut by_key: BTreeMap<String, Vec<&Queued>> = BTreeMap::new();
    for q in &queued {
        let c = &q.callback;
        assert_eq!(q.message_id, c.id, "message id is the callback's id");
        let id = uuid::Uuid::parse_str(&c.id).unwrap();
        assert_eq!(id.get_version_num(), 7, "uuid v7");
        assert_eq!(q.content_type, "application/json");
        assert_eq!(c.format, FORMAT_VERSION);
        assert_eq!(c.account.as_str(), "default");
        assert_eq!(c.client_addr.as_deref(), Some("127.0.0.1"));
        assert_eq!(q.headers["provider"], c.provider.as_str());
        assert_eq!(q.headers["account"], "default");
        let raw = serde_json::to_string(&c.raw).unwrap();
        assert!(!raw.to_lowercase().contains("authorization"), "{raw}");
        assert!(
            !raw.contains(CARD_TOKEN) && !raw.contains("4111111111111111"),
            "{raw}"
        );
        let key = match &c.payload {
            Payload::Observation(o) => format!("{}:{}:{:?}", o.provider, o.reference, o.status),
            Payload::PortmanatHint(h) => {
                format!("hint:{}", h.client_rrn.as_ref().map_or("-", |r| r.as_str()))
            }
            Payload::CardRegistered { card_id, .. } => format!("card:{card_id}"),
            Payload::CardRegistrationFailed { card_id, .. } => format!("card:{card_id}"),
        };
        by_key.entry(key).or_default().push(q);
    }
    for (key, copies) in &by_key {
        assert_eq!(copies.len(), 1, "{key} queued {} times", copies.len());
    }
    assert_eq!(by_key.len(), 7, "{:?}", by_key.keys().collect::<Vec<_>>());

    let observation = |key: &str| match &by_key[key][0].callback.payload {
        Payload::Observation(o) => o.clone(),
        other => panic!("{key}: {other:?}"),
    };
    let paid = observation("paysys:PS-1001:Succeeded");
    observation("paysys:PS-1001:Pending");
    assert_eq!(
        paid.money,
        Some(Money::from_minor(150_000, Currency::Uzs).unwrap())
    );
    assert_eq!(
        paid.provider_txn_id.map(|t| t.as_str().to_owned()),
        sim.payment(&paysys.id).unwrap().provider_txn_id
    );

    let approved = observation("plutu:INV-2001:Succeeded");
    assert_eq!(
        approved.money,
        Some(Money::from_minor(1250, Currency::Usd).unwrap())
    );
    assert_eq!(approved.provider_status, "mpgs:approved");
    assert_eq!(
        approved.provider_txn_id.map(|t| t.as_str().to_owned()),
        sim.payment(&mpgs.id).unwrap().provider_txn_id
    );
    let mpgs_raw = &by_key["plutu:INV-2001:Succeeded"][0].callback.raw;
    assert_eq!(mpgs_raw.method, "GET");
    assert_eq!(
        mpgs_raw.query[0],
        ("shop_order".to_owned(), "77".to_owned()),
        "the shop's parameter is kept, first, as received"
    );
    assert!(mpgs_raw.query.iter().any(|(k, _)| k == "hashed"));

    let canceled = observation("plutu:INV-2002:Canceled");
    assert_eq!(
        canceled.money,
        Some(Money::from_minor(5250, Currency::Lyd).unwrap())
    );
    assert_eq!(
        canceled.provider_txn_id.map(|t| t.as_str().to_owned()),
        sim.payment(&local_cards.id).unwrap().provider_txn_id
    );

    let hint = &by_key["hint:PM-3001"][0];
    assert_eq!(hint.headers["kind"], "portmanat_hint");
    let Payload::PortmanatHint(hint) = &hint.callback.payload else {
        panic!()
    };
    assert_eq!(
        hint.psp_rrn.as_ref().map(|p| p.as_str().to_owned()),
        sim.payment(&portmanat.id).unwrap().provider_txn_id
    );

    let registered = &by_key["card:card-1"][0];
    assert_eq!(registered.headers["kind"], "card.registered");
    assert_eq!(
        registered.callback.payload,
        Payload::CardRegistered {
            card_id: "card-1".into(),
            token: CardToken(CARD_TOKEN.into()),
            pan_masked: "411111******1111".into(),
        },
        "the shop gets the token; the full card number is masked"
    );
    let raw_body = registered.callback.raw.body.as_ref().unwrap();
    assert_eq!(raw_body["params"]["token"], "[redacted]");
    assert_eq!(raw_body["params"]["pan"], "411111******1111");
    let failed = &by_key["card:card-2"][0];
    assert_eq!(failed.headers["kind"], "card.registration_failed");
    assert!(matches!(
        &failed.callback.payload,
        Payload::CardRegistrationFailed { code, .. } if code == "-34000"
    ));

    sim.shutdown().await;
    receiver.stop().await;
}

/// The answers' shapes, with genuine callbacks built and signed by the
/// simulator's code: redirects with their parameters, 200 where no page is
/// configured, T-Lync's JSON POST, Portmanat's form POST, the `{account}`
/// routes and a rotated PaySys secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_provider_gets_the_answer_it_expects() {
    let receiver = spawn_receiver(BackendKind::Embedded).await;

    let pairs = [
        ("gateway", "mpgs"),
        ("approved", "1"),
        ("amount", "12.50"),
        ("currency", "USD"),
        ("invoice_no", "INV-1001"),
        ("transaction_id", "200431"),
    ];
    let query = plutu_query(&pairs, PlutuGateway::Mpgs, PLUTU_SECRET);
    let answer = get(&receiver.url(&format!("/callbacks/plutu?{query}"))).await;
    assert_eq!(answer.status, 303);
    assert_eq!(
        answer.header("location"),
        Some("https://shop.example/plutu/result?invoice_no=INV-1001&outcome=approved")
    );
    // The same callback to an account without a page: 200.
    let answer = get(&receiver.url(&format!("/callbacks/plutu/nopage?{query}"))).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json(), json!({"status": "accepted"}));
    // An account's own key; the default key does not open it.
    let shop2 = plutu_query(&pairs, PlutuGateway::Mpgs, SHOP2_PLUTU_SECRET);
    let answer = get(&receiver.url(&format!("/callbacks/plutu/shop2?{shop2}"))).await;
    assert_eq!(answer.status, 303);
    let answer = get(&receiver.url(&format!("/callbacks/plutu/shop2?{query}"))).await;
    assert_eq!(
        (answer.status.as_u16(), answer.code().as_str()),
        (401, "bad_signature")
    );

    // T-Lync POSTs JSON; its message is the whitelisted keys in body order.
    let tlync = [
        ("gateway", "tlync"),
        ("approved", "1"),
        ("invoice_no", "INV-T-1"),
        ("amount", "7.00"),
        ("transaction_id", "T-99"),
        ("payment_method", "card"),
    ];
    let message = paysettle_sim::form::http_build_query(&tlync);
    let hashed = paysettle_sim::plutu::callback_hash(PLUTU_SECRET, &message);
    let mut body = serde_json::Map::new();
    body.insert("note".into(), json!("shop's own"));
    for (k, v) in tlync {
        body.insert(k.into(), json!(v));
    }
    body.insert("hashed".into(), json!(hashed));
    let answer = send(
        Method::POST,
        &receiver.url("/callbacks/plutu"),
        &[("content-type", "application/json")],
        serde_json::Value::Object(body).to_string(),
    )
    .await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert_eq!(answer.json(), json!({"status": "accepted"}));

    // Portmanat POSTs a form; the browser goes on with the ids.
    let answer = send(
        Method::POST,
        &receiver.url("/callbacks/portmanat"),
        &[("content-type", "application/x-www-form-urlencoded")],
        "psp_rrn=1471851442-lfI7yG-vTuaxI-x87xAS&client_rrn=ORDER-42",
    )
    .await;
    assert_eq!(answer.status, 303);
    assert_eq!(
        answer.header("location"),
        Some(
            "https://shop.example/portmanat/thanks?lang=az&client_rrn=ORDER-42&psp_rrn=1471851442-lfI7yG-vTuaxI-x87xAS"
        )
    );
    let answer = get(&receiver.url("/callbacks/portmanat/nopage?client_rrn=ORDER-43")).await;
    assert_eq!(answer.status, 200);

    // PaySys: the rotated pair is accepted beside the first; shop2 has its own.
    let notification = json!({"id": "44114543", "account": "931111111", "amount": 1000,
        "card_masked": "222222******2222", "currency": 840, "currency_name": "usd",
        "status": -1, "date": "24.06.2022 07:49:16"});
    let rotated = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{PAYSYS_USER}:{PAYSYS_ROTATED}")
        )
    );
    let answer = send(
        Method::POST,
        &receiver.url("/callbacks/paysys"),
        &[("authorization", &rotated)],
        notification.to_string(),
    )
    .await;
    assert_eq!(
        (answer.status.as_u16(), answer.json()),
        (200, json!({"error": null}))
    );
    let shop2 = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{PAYSYS_USER}:{SHOP2_PAYSYS_SECRET}")
        )
    );
    let answer = send(
        Method::POST,
        &receiver.url("/callbacks/paysys/shop2"),
        &[("authorization", &shop2)],
        notification.to_string(),
    )
    .await;
    assert_eq!(answer.status, 200);
    let answer = post_paysys(
        &receiver.url("/callbacks/paysys/shop2"),
        notification.to_string(),
    )
    .await;
    assert_eq!(
        (answer.status.as_u16(), answer.code().as_str()),
        (401, "wrong_credentials")
    );

    let queued = receiver.drain(8).await;
    let accounts: Vec<(Provider, String)> = queued
        .iter()
        .map(|q| (q.callback.provider, q.callback.account.to_string()))
        .collect();
    assert_eq!(
        accounts,
        vec![
            (Provider::Plutu, "default".into()),
            (Provider::Plutu, "nopage".into()),
            (Provider::Plutu, "shop2".into()),
            (Provider::Plutu, "default".into()),
            (Provider::Portmanat, "default".into()),
            (Provider::Portmanat, "nopage".into()),
            (Provider::Paysys, "default".into()),
            (Provider::Paysys, "shop2".into()),
        ]
    );
    let Payload::Observation(tlync) = &queued[3].callback.payload else {
        panic!()
    };
    assert_eq!(tlync.status, ObservedStatus::Succeeded);
    assert_eq!(tlync.provider_status, "tlync:approved");
    assert_eq!(
        queued[3].callback.raw.body.as_ref().unwrap()["note"],
        "shop's own"
    );
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paysys_date_in_another_format_keeps_the_notification() {
    let receiver = spawn_receiver(BackendKind::Embedded).await;
    let notification = json!({"id": "44114544", "account": "931111112", "amount": 1000,
        "currency": 840, "status": 2, "date": "2022-06-24T07:49:16+05:00"});
    let answer = post_paysys(&receiver.url("/callbacks/paysys"), notification.to_string()).await;
    assert_eq!(
        (answer.status.as_u16(), answer.json()),
        (200, json!({"error": null})),
        "{:?}",
        answer.body
    );
    // shop2's account reads PaySys dates in Baku time.
    let shop2 = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{PAYSYS_USER}:{SHOP2_PAYSYS_SECRET}")
        )
    );
    let documented = json!({"id": "44114545", "account": "931111113", "amount": 1000,
        "currency": 840, "status": 2, "date": "24.06.2022 07:49:16"});
    let answer = send(
        Method::POST,
        &receiver.url("/callbacks/paysys/shop2"),
        &[("authorization", &shop2)],
        documented.to_string(),
    )
    .await;
    assert_eq!(answer.status, 200);
    let queued = receiver.drain(2).await;
    let time = |i: usize| {
        let Payload::Observation(observation) = &queued[i].callback.payload else {
            panic!("{queued:?}")
        };
        assert_eq!(observation.status, ObservedStatus::Succeeded);
        serde_json::to_value(observation).unwrap()["provider_time"].clone()
    };
    assert_eq!(
        time(0),
        json!({"utc": null, "raw": "2022-06-24T07:49:16+05:00", "zone": "Asia/Tashkent"})
    );
    assert_eq!(
        time(1),
        json!({"utc": "2022-06-24T03:49:16Z", "raw": "24.06.2022 07:49:16", "zone": "Asia/Baku"})
    );
    receiver.stop().await;
}

/// Pays a PaySys payment at the simulator, refunds 300,000 then 200,000 of it, and
/// returns the refund observations the receiver queued, in order.
async fn two_partial_refunds(
    receiver: &TestReceiver,
    sim: &paysettle_sim::SimHandle,
) -> Vec<paysettle_core::Observation> {
    let view = sim
        .create_payment(
            NewPayment::new(SimProvider::Paysys, "PS-PARTIAL", 1_000_000)
                .outcome(Outcome::Success)
                .pending(std::time::Duration::from_millis(10)),
        )
        .unwrap();
    sim.run_until_idle().await.unwrap();
    sim.refund(&view.id, 300_000).unwrap();
    sim.refund(&view.id, 200_000).unwrap();
    assert!(
        sim.refund(&view.id, 500_001).is_err(),
        "past the paid amount"
    );
    sim.run_until_idle().await.unwrap();
    let sent = sim.payment(&view.id).unwrap().callbacks.len();
    receiver
        .drain(sent)
        .await
        .into_iter()
        .filter_map(|q| match q.callback.payload {
            Payload::Observation(o) if matches!(o.status, ObservedStatus::Refunded { .. }) => {
                Some(o)
            }
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_partial_paysys_refunds_arrive_as_the_account_reads_them() {
    let uzs = |m| Money::from_minor(m, Currency::Uzs).unwrap();
    // The default: a refund notification's amount is the total so far.
    let receiver = spawn_receiver(BackendKind::Embedded).await;
    let sim = receiver.sim().await;
    let refunds = two_partial_refunds(&receiver, &sim).await;
    assert_eq!(
        refunds.iter().map(|o| o.status).collect::<Vec<_>>(),
        [
            ObservedStatus::Refunded {
                total: Some(uzs(300_000))
            },
            ObservedStatus::Refunded {
                total: Some(uzs(500_000))
            },
        ]
    );
    assert!(
        refunds
            .iter()
            .all(|o| o.refund_part.is_none() && o.money.is_none())
    );
    sim.shutdown().await;
    receiver.stop().await;

    // An account that says each notification carries this refund alone.
    let mut options = Options::new(BackendKind::Embedded);
    options.settings = |settings| {
        let account = settings
            .paysys
            .get_mut(&paysettle_core::Account::default())
            .unwrap();
        let rules = paysettle_core::paysys::Rules {
            refund_amount: paysettle_core::paysys::RefundAmount::ThisRefund,
            ..account.auth.rules().clone()
        };
        let auth = std::mem::replace(
            &mut account.auth,
            paysettle_core::paysys::NotificationAuth::new(&[(
                secrecy::SecretString::from("x"),
                secrecy::SecretString::from("y"),
            )])
            .unwrap(),
        );
        account.auth = auth.with_rules(rules);
    };
    let receiver = spawn_with(options).await;
    let sim = receiver
        .sim_with(|c| c.paysys.refund_amount = paysettle_sim::config::RefundAmount::ThisRefund)
        .await;
    let refunds = two_partial_refunds(&receiver, &sim).await;
    assert_eq!(
        refunds
            .iter()
            .map(|o| (o.status, o.refund_part))
            .collect::<Vec<_>>(),
        [
            (ObservedStatus::Refunded { total: None }, Some(uzs(300_000))),
            (ObservedStatus::Refunded { total: None }, Some(uzs(200_000))),
        ]
    );
    sim.shutdown().await;
    receiver.stop().await;
}
