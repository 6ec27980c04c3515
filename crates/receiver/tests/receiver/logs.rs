//! Nothing the receiver logs reveals a secret, an Authorization header, a
//! card token or a full card number: the scan of the captured logs, and
//! proof that the scan can fail.

use http::Method;
use paysettle_queue::BackendKind;
use paysettle_sim::{PartnerNotifyRequest, PartnerNotifyStat, PlutuGateway};
use serde_json::json;

use crate::support::*;

/// The scan finds each kind of leak it exists for, in the same JSON lines
/// the capture holds: were it blind, the clean scans would prove nothing.
#[test]
fn the_scan_finds_what_it_looks_for() {
    let scanner = scanner();
    let leaks = [
        (
            format!(r#"{{"fields":{{"message":"verify","key":"{PAYSYS_SECRET}"}}}}"#),
            "paysys_secret",
        ),
        (
            format!(r#"{{"fields":{{"secret":"{PLUTU_SECRET}"}}}}"#),
            "plutu_secret",
        ),
        (
            format!(
                r#"{{"fields":{{"authorization":"{}"}}}}"#,
                paysys_authorization()
            ),
            "authorization_value",
        ),
        (
            r#"{"fields":{"header":"Bearer eyJhbGciOiJIUzI1NiJ9"}}"#.to_owned(),
            "authorization_header",
        ),
        (
            r#"{"fields":{"pan":"5555555555554444"}}"#.to_owned(),
            "card_number",
        ),
    ];
    for (line, kind) in leaks {
        let findings = scanner.scan(&line);
        assert!(
            findings.iter().any(|f| f.kind == kind),
            "{kind} not found in {line}: {findings:?}"
        );
    }
    let mut with_token = scanner.clone();
    with_token.add("card_token", "tok_5f1d2c3b4a");
    assert_eq!(
        with_token.scan("token=tok_5f1d2c3b4a")[0].kind,
        "card_token"
    );
    // And it stays quiet on what the receiver does log.
    let clean = r#"{"level":"INFO","fields":{"message":"request","provider":"paysys","outcome":"wrong_credentials","message_id":"0196a7b2-0c4e-7c3a-9f2e-5b8d7c6e4f3a","latency_us":1234,"pan_masked":"411111******1111"},"target":"paysettle_receiver::access"}"#;
    assert_eq!(scanner.scan(clean), vec![]);
}

/// Traffic that carries every kind of secret through every path (accepted,
/// refused, malformed), then the scan of everything logged so far by every
/// test in this binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_logged_reveals_a_secret() {
    let receiver = spawn_receiver(BackendKind::Embedded).await;
    let sim = receiver.sim().await;
    let token = "9f3c1a7e5b2d4f6a8c0e1b3d5f7a9c2e4b6d8f0a";
    remember_secret("card_token", token);
    sim.send_partner_notify(&PartnerNotifyRequest {
        stat: PartnerNotifyStat::Success,
        card_id: Some("card-logs".into()),
        token: Some(token.into()),
        pan: Some("4111111111111111".into()),
        code: None,
        message: None,
    })
    .unwrap();
    sim.run_until_idle().await.unwrap();
    sim.shutdown().await;

    let paysys = receiver.url("/callbacks/paysys");
    // A notification with a full card number where a masked one belongs.
    let full_pan = json!({"id": "5", "account": "LOG-1", "amount": 100, "currency": 860,
        "status": 2, "card_masked": "5555555555554444"});
    assert_eq!(post_paysys(&paysys, full_pan.to_string()).await.status, 200);
    // Wrong credentials: the Authorization value must not be logged.
    let wrong = "Basic ZGVtby12ZW5kb3I6ZGVtby12ZW5kb3Itc2VjcmV0LXdyb25n";
    remember_secret("authorization_value", wrong);
    let refused = send(Method::POST, &paysys, &[("authorization", wrong)], "{}").await;
    assert_eq!(refused.status, 401);
    // Authentic but malformed, quoting a card number and a token field.
    let malformed = json!({"method": "partner.notify", "params": {"stat": "4111111111111111",
        "id": "c", "token": token}});
    assert_eq!(
        post_paysys(&paysys, malformed.to_string()).await.status,
        400
    );
    // A Plutu callback with a secret-looking and a card-number parameter of
    // the shop's own.
    let pairs = [
        ("gateway", "mpgs"),
        ("approved", "1"),
        ("amount", "3.00"),
        ("currency", "USD"),
        ("invoice_no", "LOG-2"),
    ];
    let query = format!(
        "secret_key={PLUTU_SECRET}&card=4111111111111111&{}",
        plutu_query(&pairs, PlutuGateway::Mpgs, PLUTU_SECRET)
    );
    assert_eq!(
        get(&receiver.url(&format!("/callbacks/plutu?{query}")))
            .await
            .status,
        303
    );

    let queued = receiver.drain(3).await;
    // The capture really holds this receiver's access lines, so a clean scan
    // means something.
    let logged = logs().contents();
    for q in &queued {
        assert!(
            logged.contains(&format!("\"message_id\":\"{}\"", q.message_id)),
            "access line for {} not captured",
            q.message_id
        );
    }
    assert!(logged.contains("\"outcome\":\"wrong_credentials\""));
    assert!(logged.contains("\"outcome\":\"malformed\""));
    receiver.stop().await;
}
