//! Health, readiness and metrics (on its own listener); draining on
//! shutdown within the grace period, and not beyond it.

use std::time::{Duration, Instant};

use http::Method;
use paysettle_queue::BackendKind;
use paysettle_receiver::ReceiverSettings;
use paysettle_sim::PlutuGateway;
use paysettle_testkit::eventually;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let receiver = spawn_receiver(BackendKind::Embedded).await;
    let alive = get(&receiver.url("/healthz")).await;
    assert_eq!(
        (alive.status.as_u16(), alive.json()),
        (200, json!({"status": "alive"}))
    );
    let head = send(Method::HEAD, &receiver.url("/healthz"), &[], "").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let ready = get(&receiver.url("/readyz")).await;
    assert_eq!(
        (ready.status.as_u16(), ready.json()),
        (200, json!({"status": "ready"}))
    );
    let post = send(Method::POST, &receiver.metrics_url("/metrics"), &[], "").await;
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    // The figures describe the shop's payments: not on the public port.
    assert_eq!(get(&receiver.url("/metrics")).await.status, 404);
    assert_eq!(get(&receiver.metrics_url("/healthz")).await.status, 404);

    // Traffic to count: one accepted callback, one refused, one unmatched.
    let before =
        String::from_utf8_lossy(&get(&receiver.metrics_url("/metrics")).await.body).into_owned();
    let count =
        |text: &str, name: &str, labels: &[(&str, &str)]| metric(text, name, labels).unwrap_or(0.0);
    let pairs = [
        ("gateway", "mpgs"),
        ("approved", "1"),
        ("amount", "1.00"),
        ("currency", "USD"),
        ("invoice_no", "M-1"),
    ];
    let good = plutu_query(&pairs, PlutuGateway::Mpgs, PLUTU_SECRET);
    assert_eq!(
        get(&receiver.url(&format!("/callbacks/plutu?{good}")))
            .await
            .status,
        303
    );
    let bad = plutu_query(&pairs, PlutuGateway::Mpgs, "sk_wrong");
    assert_eq!(
        get(&receiver.url(&format!("/callbacks/plutu?{bad}")))
            .await
            .status,
        401
    );
    assert_eq!(get(&receiver.url("/nowhere")).await.status, 404);

    let page = get(&receiver.metrics_url("/metrics")).await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    let after = String::from_utf8_lossy(&page.body).into_owned();
    // Other tests in this binary share the process-wide recorder: compare
    // before and after rather than expect absolute values.
    let grew = |name: &str, labels: &[(&str, &str)]| {
        count(&after, name, labels) - count(&before, name, labels)
    };
    let accepted = [
        ("provider", "plutu"),
        ("route", "/callbacks/plutu"),
        ("outcome", "accepted"),
    ];
    assert!(
        grew("paysettle_receiver_requests_total", &accepted) >= 1.0,
        "{after}"
    );
    let refused = [
        ("provider", "plutu"),
        ("route", "/callbacks/plutu"),
        ("outcome", "bad_signature"),
    ];
    assert!(grew("paysettle_receiver_requests_total", &refused) >= 1.0);
    assert!(
        grew(
            "paysettle_receiver_verification_failures_total",
            &[("provider", "plutu"), ("reason", "bad_signature")]
        ) >= 1.0
    );
    let unmatched = [
        ("provider", "none"),
        ("route", "unmatched"),
        ("outcome", "not_found"),
    ];
    assert!(grew("paysettle_receiver_requests_total", &unmatched) >= 1.0);
    assert!(
        grew(
            "paysettle_receiver_publishes_total",
            &[("outcome", "embedded")]
        ) >= 1.0
    );
    assert!(
        grew(
            "paysettle_receiver_request_duration_seconds_count",
            &[("provider", "plutu"), ("route", "/callbacks/plutu")]
        ) >= 2.0
    );
    assert!(after.contains("paysettle_receiver_request_duration_seconds_bucket{"));
    assert!(after.contains("paysettle_receiver_publish_duration_seconds_bucket{"));
    assert_eq!(
        metric(&after, "paysettle_queue_spool_depth", &[]),
        Some(0.0)
    );
    assert_eq!(metric(&after, "paysettle_queue_durable", &[]), Some(1.0));
    assert!(metric(&after, "paysettle_receiver_connections_open", &[]).is_some());

    assert_eq!(receiver.drain(1).await.len(), 1);
    receiver.stop().await;
}

/// On shutdown: no new connections, the request in flight is finished and
/// its callback durable, then `run` returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_the_request_in_flight() {
    let mut options = Options::new(BackendKind::Embedded);
    options.settings = |s: &mut ReceiverSettings| {
        s.body_read_timeout = Duration::from_secs(20);
    };
    let receiver = spawn_with(options).await;
    let body = json!({"id": "9", "account": "DRAIN-1", "amount": 100, "currency": 860,
        "status": 2})
    .to_string();
    let (first, rest) = body.split_at(10);
    let mut stream = TcpStream::connect(receiver.addr).await.unwrap();
    let head = format!(
        "POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n{first}",
        paysys_authorization(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    in_flight(&mut stream).await;

    receiver.shutdown.cancel();
    eventually(DEADLINE, "the listener is closed", || async {
        TcpStream::connect(receiver.addr).await.is_err()
    })
    .await;
    assert!(
        !receiver.task.as_ref().unwrap().is_finished(),
        "still draining"
    );

    stream.write_all(rest.as_bytes()).await.unwrap();
    let (answer, closed) = read_until_closed(&mut stream, DEADLINE).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.ends_with("{\"error\":null}"), "{answer}");
    assert!(closed, "closed after the last answer");
    let queued = receiver.drain(1).await;
    assert_eq!(queued[0].headers["provider"], "paysys");
    receiver.stop().await;
}

/// A request that never completes does not hold shutdown beyond the grace
/// period: its connection is dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_gives_up_after_the_grace_period() {
    let mut options = Options::new(BackendKind::Embedded);
    options.settings = |s: &mut ReceiverSettings| {
        s.body_read_timeout = Duration::from_secs(60);
        s.shutdown_grace = Duration::from_millis(500);
    };
    let mut receiver = spawn_with(options).await;
    let mut stream = TcpStream::connect(receiver.addr).await.unwrap();
    let head = format!(
        "POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nContent-Length: 50\r\nExpect: 100-continue\r\n\r\n{{",
        paysys_authorization()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    in_flight(&mut stream).await;
    let started = Instant::now();
    receiver.shutdown.cancel();
    let task = receiver.task.take().unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("run returns")
        .unwrap()
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(3),
        "{took:?}"
    );
    let mut rest = Vec::new();
    let read = stream.read_to_end(&mut rest).await;
    assert!(
        read.is_err() || rest.is_empty(),
        "dropped without an answer"
    );
    receiver.stop().await;
}

/// Waits for `100 Continue`: hyper sends it when the handler starts reading
/// the body, so the request is certainly in flight inside the receiver.
async fn in_flight(stream: &mut TcpStream) {
    let expected = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut got = vec![0u8; expected.len()];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, expected, "{:?}", String::from_utf8_lossy(&got));
}

/// The auto builder serves HTTP/2 (prior knowledge) too, with the same
/// routes and answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_clients_are_served_alike() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let receiver = spawn_receiver(BackendKind::Embedded).await;
    let client = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http::<Full<Bytes>>();
    let notification = json!({"id": "7", "account": "H2-1", "amount": 100, "currency": 860,
        "status": 2})
    .to_string();
    let request = http::Request::post(receiver.url("/callbacks/paysys"))
        .header("authorization", paysys_authorization())
        .body(Full::new(Bytes::from(notification)))
        .unwrap();
    let response = client.request(request).await.unwrap();
    assert_eq!(response.version(), http::Version::HTTP_2);
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], br#"{"error":null}"#);
    let queued = receiver.drain(1).await;
    assert_eq!(queued[0].callback.raw.method, "POST");
    drop(client);
    receiver.stop().await;
}
