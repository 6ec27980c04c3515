//! Plutu: the confirm call, its error shapes, the signed callback GET.

use http::StatusCode;
use paysettle_sim::plutu::{callback_hash, verify_callback};
use paysettle_sim::{Outcome, PlutuGateway, Provider, SimHandle, Status, VerifyError, form};
use secrecy::ExposeSecret;
use serde_json::Value;

use crate::common::*;

pub fn confirm_headers(sim: &SimHandle) -> (String, String) {
    let config = &sim.config().plutu;
    (
        format!("Bearer {}", config.access_token.expose_secret()),
        config.api_key.expose_secret().to_owned(),
    )
}

pub async fn confirm(
    sim: &SimHandle,
    gateway: &str,
    pairs: &[(&str, &str)],
) -> (StatusCode, Value) {
    let (bearer, key) = confirm_headers(sim);
    let url = format!(
        "{}/plutu/api/v1/transaction/{gateway}/confirm",
        sim.base_url()
    );
    let answer = post_form(
        &url,
        &[
            ("Authorization", &bearer),
            ("X-API-KEY", &key),
            ("Accept", "application/json"),
        ],
        pairs,
    )
    .await;
    (answer.status, answer.json())
}

fn keys(pairs: &[(String, String)]) -> Vec<&str> {
    pairs.iter().map(|(k, _)| k.as_str()).collect()
}

#[tokio::test]
async fn whole_flow_mpgs_signed_callback() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    // The shop's own parameters in its return URL stay out of the signature.
    let return_url = format!("{}?order=77&lang=en", receiver.url("/callbacks/plutu"));
    let (status, body) = confirm(
        &sim,
        "mpgs",
        &[
            ("amount", "12.5"),
            ("invoice_no", "INV-1001"),
            ("return_url", &return_url),
            ("lang", "en"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], 200);
    assert_eq!(body["result"]["code"], "CHECKOUT_REDIRECT");
    let redirect_url = body["result"]["redirect_url"].as_str().unwrap();
    assert!(redirect_url.starts_with(&format!("{}/plutu/checkout/", sim.base_url())));

    let payment = sim.find(Provider::Plutu, "INV-1001").unwrap();
    assert_eq!(
        payment.provider_txn_id, None,
        "no transaction id before the callback"
    );
    assert_eq!(
        (
            payment.amount_minor,
            payment.currency.code(),
            payment.amount_text.as_str()
        ),
        (1250, "USD", "12.50")
    );
    sim.force_outcome(&payment.id, Outcome::Success).unwrap();
    sim.advance(PAST_PENDING).await.unwrap();

    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].method, http::Method::GET);
    assert_eq!(got[0].path, "/callbacks/plutu");
    let pairs = got[0].query_pairs();
    assert_eq!(
        keys(&pairs),
        vec![
            "order",
            "lang",
            "gateway",
            "approved",
            "amount",
            "currency",
            "invoice_no",
            "transaction_id",
            "hashed"
        ]
    );
    assert_eq!(form::first(&pairs, "approved"), Some("1"));
    assert_eq!(form::first(&pairs, "amount"), Some("12.50"));
    assert_eq!(form::first(&pairs, "currency"), Some("USD"));
    let txn = form::first(&pairs, "transaction_id").unwrap();
    assert_eq!(
        sim.payment(&payment.id).unwrap().provider_txn_id.as_deref(),
        Some(txn)
    );

    let secret = sim.config().plutu.secret_key.expose_secret().to_owned();
    assert_eq!(verify_callback(PlutuGateway::Mpgs, &pairs, &secret), Ok(()));
    // Spelled out: the message is the whitelisted parameters in order.
    let message = format!(
        "gateway=mpgs&approved=1&amount=12.50&currency=USD&invoice_no=INV-1001&transaction_id={txn}"
    );
    assert_eq!(
        form::first(&pairs, "hashed"),
        Some(callback_hash(&secret, &message).as_str())
    );
    assert_eq!(sim.payment(&payment.id).unwrap().status, Status::Succeeded);
    sim.shutdown().await;
}

#[tokio::test]
async fn localbankcards_cancel_and_failure_flags() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    let url = receiver.url("/callbacks/plutu");
    for invoice in ["LB-CANCEL", "LB-FAIL"] {
        let (status, body) = confirm(
            &sim,
            "localbankcards",
            &[
                ("amount", "5"),
                ("invoice_no", invoice),
                ("return_url", &url),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let cancel = sim.find(Provider::Plutu, "LB-CANCEL").unwrap();
    let fail = sim.find(Provider::Plutu, "LB-FAIL").unwrap();
    assert_eq!((cancel.amount_minor, cancel.currency.code()), (5000, "LYD"));
    sim.pay(&cancel.id, Some(Outcome::Cancel)).unwrap();
    sim.pay(&fail.id, Some(Outcome::Failure)).unwrap();
    sim.settle().await.unwrap();
    let got = receiver.wait_for(2).await;
    let secret = sim.config().plutu.secret_key.expose_secret().to_owned();
    for captured in &got {
        let pairs = captured.query_pairs();
        assert_eq!(
            verify_callback(PlutuGateway::Localbankcards, &pairs, &secret),
            Ok(())
        );
        assert_eq!(form::first(&pairs, "amount"), Some("5.00"));
        assert_eq!(
            form::first(&pairs, "currency"),
            None,
            "localbankcards sends no currency"
        );
        assert!(form::first(&pairs, "approved").is_none());
        match form::first(&pairs, "invoice_no") {
            Some("LB-CANCEL") => {
                assert_eq!(
                    keys(&pairs),
                    vec![
                        "gateway",
                        "canceled",
                        "invoice_no",
                        "amount",
                        "transaction_id",
                        "hashed"
                    ]
                );
            }
            Some("LB-FAIL") => {
                assert_eq!(
                    keys(&pairs),
                    vec![
                        "gateway",
                        "invoice_no",
                        "amount",
                        "transaction_id",
                        "hashed"
                    ]
                );
            }
            other => panic!("unexpected invoice {other:?}"),
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn confirm_error_shapes() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    let url = receiver.url("/cb");
    let (bearer, key) = confirm_headers(&sim);
    let endpoint = format!("{}/plutu/api/v1/transaction/mpgs/confirm", sim.base_url());
    let good = [
        ("amount", "1.00"),
        ("invoice_no", "E-1"),
        ("return_url", url.as_str()),
    ];

    for headers in [
        vec![("X-API-KEY", key.as_str())],
        vec![("Authorization", bearer.as_str())],
        vec![
            ("Authorization", "Bearer wrong"),
            ("X-API-KEY", key.as_str()),
        ],
        vec![("Authorization", bearer.as_str()), ("X-API-KEY", "wrong")],
    ] {
        let answer = post_form(&endpoint, &headers, &good).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
        let body = answer.json();
        assert_eq!(body["error"]["status"], 401);
        assert_eq!(body["error"]["code"], "UNAUTHORIZED");
        assert!(body["error"]["message"].is_string());
    }

    let (status, body) = confirm(&sim, "mpgs", &[("invoice_no", "bad invoice!")]).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"]["code"], "INVALID_INPUTS");
    assert_eq!(body["error"]["status"], 422);
    let fields = body["error"]["fields"].as_object().unwrap();
    for field in ["amount", "invoice_no", "return_url"] {
        assert!(fields.contains_key(field), "{field}: {body}");
    }

    for amount in ["12.345", "-1", "0", "1e3", "abc"] {
        let (status, body) = confirm(
            &sim,
            "mpgs",
            &[
                ("amount", amount),
                ("invoice_no", "E-2"),
                ("return_url", &url),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{amount}");
        assert_eq!(body["error"]["code"], "INVALID_AMOUNT", "{amount}");
    }

    assert_eq!(confirm(&sim, "mpgs", &good).await.0, StatusCode::OK);
    let (status, body) = confirm(&sim, "mpgs", &good).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "DUPLICATED_INVOICE_NUMBER");

    let (status, body) = confirm(&sim, "sadad", &good).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["error"]["code"].is_string());
    assert_eq!(sim.payments().len(), 1);
    sim.shutdown().await;
}

#[tokio::test]
async fn the_checkout_page_sends_the_browser_back_signed() {
    let receiver = Receiver::start().await;
    let sim = start(config_for(&receiver)).await;
    let url = receiver.url("/back");
    let (_, body) = confirm(
        &sim,
        "mpgs",
        &[
            ("amount", "7"),
            ("invoice_no", "WEB-7"),
            ("return_url", &url),
        ],
    )
    .await;
    let checkout = body["result"]["redirect_url"].as_str().unwrap().to_owned();
    assert_eq!(get(&checkout).await.status, StatusCode::OK);
    let answer = post_form(&checkout, &[], &[("outcome", "success")]).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let location = answer.header("location").unwrap();
    let (base, query) = location.split_once('?').unwrap();
    assert_eq!(base, url);
    let pairs = form::parse_pairs(query);
    let secret = sim.config().plutu.secret_key.expose_secret().to_owned();
    assert_eq!(verify_callback(PlutuGateway::Mpgs, &pairs, &secret), Ok(()));
    assert_eq!(
        verify_callback(PlutuGateway::Mpgs, &pairs, "sk_other"),
        Err(VerifyError::Mismatch)
    );
    // The server-side callback goes out as well, with the same parameters.
    sim.settle().await.unwrap();
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0].query, query);
    sim.shutdown().await;
}
