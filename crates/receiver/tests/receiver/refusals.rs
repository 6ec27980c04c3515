//! Every kind of bad request gets its own answer, and nothing of it is
//! queued.

use std::time::Duration;

use http::Method;
use paysettle_queue::{BackendKind, QueueKind};
use paysettle_receiver::ReceiverSettings;
use paysettle_sim::{CallbackFate, NewPayment, Outcome, PlutuGateway, Provider as SimProvider};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_answer_and_queue_nothing_embedded() {
    bad_requests(BackendKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_answer_and_queue_nothing_rabbitmq() {
    bad_requests(BackendKind::RabbitMq).await;
}

const MPGS: [(&str, &str); 6] = [
    ("gateway", "mpgs"),
    ("approved", "1"),
    ("amount", "12.50"),
    ("currency", "USD"),
    ("invoice_no", "INV-1001"),
    ("transaction_id", "200431"),
];

async fn bad_requests(backend: BackendKind) {
    let receiver = spawn_receiver(backend).await;

    // The simulator's wrongly signed callbacks (wrong Basic credentials,
    // a `hashed` made with another key).
    let sim = receiver
        .sim_with(|c| c.scenario.callbacks.wrongly_signed = 1.0)
        .await;
    for (provider, reference) in [(SimProvider::Paysys, "WS-1"), (SimProvider::Plutu, "WS-2")] {
        sim.create_payment(NewPayment::new(provider, reference, 100_000).outcome(Outcome::Success))
            .unwrap();
    }
    sim.run_until_idle().await.unwrap();
    let mut wrongly_signed = 0;
    for payment in sim.payments() {
        for callback in payment.callbacks {
            assert!(callback.wrongly_signed);
            assert_eq!(
                callback.fate,
                CallbackFate::Delivered { http_status: 401 },
                "{}",
                payment.id
            );
            wrongly_signed += 1;
        }
    }
    assert_eq!(wrongly_signed, 3, "PaySys awaiting + completed, one Plutu");
    sim.shutdown().await;

    let paysys = receiver.url("/callbacks/paysys");
    let plutu = |query: &str| receiver.url(&format!("/callbacks/plutu?{query}"));
    let expect = |answer: &Answer, status: u16, code: &str| {
        assert_eq!(
            (answer.status.as_u16(), answer.code().as_str()),
            (status, code),
            "{:?}",
            String::from_utf8_lossy(&answer.body)
        );
    };

    // PaySys credentials.
    let missing = send(Method::POST, &paysys, &[], "{}").await;
    expect(&missing, 401, "missing_credentials");
    assert_eq!(
        missing.header("www-authenticate"),
        Some("Basic realm=\"paysettle\"")
    );
    let wrong = send(
        Method::POST,
        &paysys,
        &[("authorization", "Basic ZGVtby12ZW5kb3I6d3Jvbmc=")],
        "{}",
    )
    .await;
    expect(&wrong, 401, "wrong_credentials");
    assert_eq!(
        wrong.json()["error"]["message"],
        "the credentials are not valid",
        "says nothing more"
    );

    // Authentic but malformed: the problem is named.
    let not_json = post_paysys(&paysys, "{\"id\": ").await;
    expect(&not_json, 400, "malformed");
    let message = not_json.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(message.contains("not JSON"), "{message}");
    let not_utf8 = post_paysys(&paysys, b"{\"id\":\"\xff\xfe\"}".to_vec()).await;
    expect(&not_utf8, 400, "malformed");
    let incomplete = post_paysys(&paysys, json!({"id": "1", "status": 2}).to_string()).await;
    expect(&incomplete, 400, "malformed");
    assert!(
        incomplete.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("account is missing")
    );
    // A key given twice is refused, not read last-wins: a genuine failure
    // with a second "status" must not become anything else.
    let twice = r#"{"id":"44114543","account":"931111111","amount":1000,"currency":840,"status":-1,"date":"24.06.2022 07:49:16","status":2}"#;
    let twice = post_paysys(&paysys, twice).await;
    expect(&twice, 400, "malformed");
    assert_eq!(
        twice.json()["error"]["message"],
        "status is given more than once"
    );

    // Plutu signatures.
    let genuine = plutu_query(&MPGS, PlutuGateway::Mpgs, PLUTU_SECRET);
    let hashed = genuine.rsplit_once("hashed=").unwrap().1.to_owned();
    let tampered = genuine.replace("amount=12.50", "amount=125.00");
    expect(&get(&plutu(&tampered)).await, 401, "bad_signature");
    let reordered = format!(
        "approved=1&gateway=mpgs&amount=12.50&currency=USD&invoice_no=INV-1001&transaction_id=200431&hashed={hashed}"
    );
    expect(&get(&plutu(&reordered)).await, 401, "bad_signature");
    let added = genuine.replace("&hashed=", "&canceled=1&hashed=");
    expect(&get(&plutu(&added)).await, 401, "bad_signature");
    // Plutu's SDK compares with hash_equals against uppercase hex: the
    // same signature in lowercase is not Plutu's.
    let lowercase = genuine.replace(&hashed, &hashed.to_ascii_lowercase());
    assert_ne!(lowercase, genuine);
    expect(&get(&plutu(&lowercase)).await, 401, "bad_signature");
    let unsigned = paysettle_sim::form::http_build_query(&MPGS);
    let missing_signature = get(&plutu(&unsigned)).await;
    expect(&missing_signature, 401, "missing_signature");
    assert!(missing_signature.header("www-authenticate").is_some());
    let not_utf8 = get(&plutu(&format!("{genuine}&note=%FF"))).await;
    expect(&not_utf8, 400, "malformed");
    assert!(
        not_utf8.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("UTF-8")
    );
    let tlync_garbage = send(Method::POST, &receiver.url("/callbacks/plutu"), &[], "{").await;
    expect(&tlync_garbage, 400, "malformed");

    // Portmanat: unsigned, but it must name a payment, in a form.
    expect(
        &get(&receiver.url("/callbacks/portmanat?shop=1")).await,
        400,
        "malformed",
    );
    let json_post = send(
        Method::POST,
        &receiver.url("/callbacks/portmanat"),
        &[("content-type", "application/json")],
        "{\"client_rrn\":\"R-1\"}",
    )
    .await;
    expect(&json_post, 415, "unsupported_media_type");

    // Routes, methods, accounts.
    expect(
        &get(&receiver.url("/callbacks/paypal")).await,
        404,
        "not_found",
    );
    expect(&get(&receiver.url("/")).await, 404, "not_found");
    let wrong_method = get(&paysys).await;
    expect(&wrong_method, 405, "method_not_allowed");
    assert_eq!(wrong_method.header("allow"), Some("POST"));
    let wrong_method = send(Method::PUT, &receiver.url("/callbacks/portmanat"), &[], "").await;
    assert_eq!(wrong_method.header("allow"), Some("GET, POST"));
    let unknown_account = post_paysys(&receiver.url("/callbacks/paysys/shop9"), "{}").await;
    expect(&unknown_account, 404, "not_found");
    expect(
        &get(&receiver.url("/callbacks/plutu/Not%20An%20Account")).await,
        404,
        "not_found",
    );

    // A body over the limit, declared: refused before it is sent (the client
    // waits for the answer, as with `Expect: 100-continue`).
    let authed = paysys_head();
    let (answer, closed) = raw_exchange(
        receiver.addr,
        format!("{authed}Content-Length: 70000\r\n\r\n").as_bytes(),
        DEADLINE,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("body_too_large") && closed, "{answer}");
    // Without credentials the head alone is refused, whatever the body.
    let (answer, closed) = raw_exchange(
        receiver.addr,
        b"POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nContent-Length: 70000\r\n\r\n",
        DEADLINE,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    assert!(answer.contains("missing_credentials") && closed, "{answer}");
    // Undeclared (chunked): refused once the limit is passed.
    let mut chunked = format!("{authed}Transfer-Encoding: chunked\r\n\r\n10000\r\n").into_bytes();
    chunked.extend(std::iter::repeat_n(b'x', 0x10000));
    chunked.extend_from_slice(b"\r\n1\r\nx");
    let (answer, closed) = raw_exchange(receiver.addr, &chunked, DEADLINE).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(closed);

    // A body that never finishes: 408 (body_timeout) once the body timeout
    // has passed, then closed.
    let (answer, closed) = raw_exchange(
        receiver.addr,
        format!("{authed}Content-Length: 100\r\n\r\n{{\"id\":").as_bytes(),
        DEADLINE,
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("body_timeout") && closed, "{answer}");

    // Headers that never finish: the connection is closed without an answer
    // after the header timeout; so is a connection that sends nothing.
    // (raw_exchange gives up at DEADLINE, far past the header timeout, and
    // then reports the connection as still open.)
    for opening in [&b"POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\n"[..], b""] {
        let (answer, closed) = raw_exchange(receiver.addr, opening, DEADLINE).await;
        assert!(closed, "closed by the server");
        assert_eq!(answer, "", "no answer to half a request");
    }

    // Nothing of any of it was queued.
    let mut consumer = receiver.queue.consumer(QueueKind::Callbacks).unwrap();
    let batch = consumer
        .next_batch(16, Duration::from_millis(300))
        .await
        .unwrap();
    assert!(
        batch.is_empty(),
        "queued: {:?}",
        batch
            .iter()
            .map(|d| d.message_id().to_owned())
            .collect::<Vec<_>>()
    );
    drop(consumer);
    receiver.stop().await;
}

/// A provider with no account configured has no routes at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_accounts_is_not_found() {
    let mut options = Options::new(BackendKind::Embedded);
    options.settings = |s: &mut ReceiverSettings| s.portmanat.clear();
    let receiver = spawn_with(options).await;
    for path in [
        "/callbacks/portmanat?client_rrn=R-1",
        "/callbacks/portmanat/default?client_rrn=R-1",
    ] {
        let answer = get(&receiver.url(path)).await;
        assert_eq!(answer.status, 404, "{path}");
    }
    // The others still work.
    let query = plutu_query(&MPGS, PlutuGateway::Mpgs, PLUTU_SECRET);
    assert_eq!(
        get(&receiver.url(&format!("/callbacks/plutu?{query}")))
            .await
            .status,
        303
    );
    assert_eq!(receiver.drain(1).await.len(), 1);
    receiver.stop().await;
}

/// A client that keeps sending a slow trickle is cut off by the body
/// timeout, not kept forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_body_is_timed_out() {
    const TRICKLE: usize = 100;
    let receiver = spawn_receiver(BackendKind::Embedded).await;
    let stream = TcpStream::connect(receiver.addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write
        .write_all(format!("{}Content-Length: 1000\r\n\r\n", paysys_head()).as_bytes())
        .await
        .unwrap();
    // One byte every 50 ms: always moving, never finishing within the
    // timeout. The pace is the load's shape, not a synchronisation.
    let written = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let trickled = written.clone();
    let trickle = tokio::spawn(async move {
        for _ in 0..TRICKLE {
            if write.write_all(b" ").await.is_err() {
                break;
            }
            trickled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !answer.ends_with(b"}") {
        let n = tokio::time::timeout(DEADLINE, read.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed before answering: {:?}",
            String::from_utf8_lossy(&answer)
        );
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    // Answered while the trickle was still moving (a write fails only once
    // the server has closed, after its answer): bytes that keep coming do not
    // keep the body's time open.
    let sent = written.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        sent < TRICKLE,
        "answered only once the trickle stopped ({sent} bytes)"
    );
    trickle.abort();
    receiver.stop().await;
}

/// The head of a PaySys notification with genuine credentials, up to the
/// body's headers.
fn paysys_head() -> String {
    format!(
        "POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\n",
        paysys_authorization()
    )
}
