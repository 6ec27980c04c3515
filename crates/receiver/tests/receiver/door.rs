//! The door holds (issue 17): strangers cannot hold every connection, make
//! the receiver read bodies they have no right to send, or spend all the
//! memory bodies may take; a genuine callback always finds a place.
//!
//! Strangers connect from other loopback addresses (127.0.0.2 and up), the
//! genuine provider from 127.0.0.1, so the limits per client address apply
//! as they would on the internet.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use paysettle_queue::BackendKind;
use paysettle_receiver::ReceiverSettings;
use paysettle_sim::PlutuGateway;
use paysettle_testkit::eventually;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::support::*;

fn stranger(n: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, n])
}

/// A connection to `addr` from the loopback address `from`.
async fn connect_from(from: IpAddr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(from, 0))?;
    socket.connect(addr).await
}

/// An HTTP/2 connection that asks for `/healthz` once and then only
/// answers the server's pings: the connection task, and whether the one
/// request was answered.
async fn idle_h2(
    from: IpAddr,
    addr: SocketAddr,
) -> Option<(http2::SendRequest<Empty<Bytes>>, JoinHandle<()>)> {
    let stream = connect_from(from, addr).await.ok()?;
    let (mut send, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .ok()?;
    let task = tokio::spawn(async move {
        let _ = conn.await;
    });
    let request = http::Request::get(format!("http://{addr}/healthz"))
        .body(Empty::new())
        .unwrap();
    let answered = send.send_request(request).await.ok()?;
    (answered.status() == 200).then_some((send, task))
}

/// A genuine signed Plutu MPGS callback, from 127.0.0.1.
fn genuine_plutu(receiver: &TestReceiver, invoice: &str) -> String {
    let pairs = [
        ("gateway", "mpgs"),
        ("approved", "1"),
        ("amount", "1.00"),
        ("currency", "USD"),
        ("invoice_no", invoice),
    ];
    receiver.url(&format!(
        "/callbacks/plutu?{}",
        plutu_query(&pairs, PlutuGateway::Mpgs, PLUTU_SECRET)
    ))
}

/// The first finding: idle HTTP/2 connections (one request each,
/// then only pings) held every connection permit, and a genuine signed
/// Plutu callback and `/readyz` timed out. Now the stranger's address gets
/// its share at most, and at the limit its connections give way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_from_one_address_do_not_keep_out_a_genuine_callback() {
    let mut options = Options::new(BackendKind::Embedded);
    options.settings = |s: &mut ReceiverSettings| {
        s.max_connections = 24;
        // Long enough that no timeout frees a place during the test.
        s.header_read_timeout = Duration::from_secs(30);
    };
    let receiver = spawn_with(options).await;
    let addr = receiver.addr;
    // More strangers than places, all from one address, each held open.
    let mut strangers = Vec::new();
    for _ in 0..40 {
        strangers.push(tokio::spawn(async move {
            tokio::time::timeout(Duration::from_secs(3), idle_h2(stranger(2), addr))
                .await
                .ok()
                .flatten()
        }));
    }
    let mut held = Vec::new();
    for stranger in strangers {
        if let Some(connection) = stranger.await.unwrap() {
            held.push(connection);
        }
    }
    assert!(
        held.len() >= 20,
        "the strangers got {} connections",
        held.len()
    );

    let answer = tokio::time::timeout(DEADLINE, get(&genuine_plutu(&receiver, "DOOR-H2-1")))
        .await
        .expect("a genuine callback finds a place");
    assert_eq!(answer.status, 303);
    let ready = tokio::time::timeout(DEADLINE, get(&receiver.url("/readyz")))
        .await
        .expect("readiness finds a place");
    assert_eq!(ready.status, 200);
    assert_eq!(receiver.drain(1).await.len(), 1);
    drop(held);
    receiver.stop().await;
}

/// An HTTP/2 connection with nothing in flight is closed after the idle
/// timeout, however faithfully it answers pings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed() {
    let mut options = Options::new(BackendKind::Embedded);
    options.settings = |s: &mut ReceiverSettings| {
        s.idle_timeout = Duration::from_millis(500);
    };
    let receiver = spawn_with(options).await;
    let (_send, task) = idle_h2(stranger(2), receiver.addr).await.unwrap();
    tokio::time::timeout(DEADLINE, task)
        .await
        .expect("the server closes the idle connection")
        .unwrap();
    let page = get(&receiver.metrics_url("/metrics")).await;
    let text = String::from_utf8_lossy(&page.body);
    assert!(
        metric(
            &text,
            "paysettle_receiver_connection_timeouts_total",
            &[("reason", "idle")]
        )
        .is_some_and(|n| n >= 1.0),
        "{text}"
    );
    receiver.stop().await;
}

/// Whether the server closed `stream` within `within` without answering.
async fn closed_unanswered(stream: &mut TcpStream, within: Duration) -> bool {
    let (got, closed) = read_until_closed(stream, within).await;
    closed && got.is_empty()
}

/// One client address beyond its share is closed at once; another address
/// is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_share_is_refused_and_others_are_not() {
    let mut options = Options::new(BackendKind::Embedded);
    options.settings = |s: &mut ReceiverSettings| {
        s.max_connections_per_client = 4;
        s.header_read_timeout = Duration::from_secs(30);
    };
    let receiver = spawn_with(options).await;
    let mut holders = Vec::new();
    for _ in 0..4 {
        let mut stream = connect_from(stranger(3), receiver.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        holders.push(stream);
    }
    let mut fifth = connect_from(stranger(3), receiver.addr).await.unwrap();
    assert!(closed_unanswered(&mut fifth, DEADLINE).await);
    // The four are still open.
    for holder in &mut holders {
        assert!(!closed_unanswered(holder, Duration::from_millis(50)).await);
    }
    assert_eq!(get(&receiver.url("/healthz")).await.status, 200);
    let page = get(&receiver.metrics_url("/metrics")).await;
    let text = String::from_utf8_lossy(&page.body);
    assert!(
        metric(
            &text,
            "paysettle_receiver_connections_refused_total",
            &[("reason", "client_share")]
        )
        .is_some_and(|n| n >= 1.0)
    );
    drop(holders);
    receiver.stop().await;
}

/// Two places, both held by one stranger: a newcomer from elsewhere is
/// served at once, and one of the stranger's connections gives way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_limit_the_heaviest_client_gives_way() {
    let mut options = Options::new(BackendKind::Embedded);
    options.settings = |s: &mut ReceiverSettings| {
        s.max_connections = 2;
        s.header_read_timeout = Duration::from_secs(30);
    };
    let receiver = spawn_with(options).await;
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_from(stranger(4), receiver.addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\n")
            .await
            .unwrap();
        holders.push(stream);
    }
    // Both admitted before the newcomer arrives.
    eventually(DEADLINE, "both holders admitted", || async {
        let page = get(&receiver.metrics_url("/metrics")).await;
        let text = String::from_utf8_lossy(&page.body).into_owned();
        metric(&text, "paysettle_receiver_connections_open", &[]).is_some_and(|n| n >= 2.0)
    })
    .await;
    let answer = tokio::time::timeout(DEADLINE, get(&receiver.url("/healthz")))
        .await
        .expect("the newcomer is served");
    assert_eq!(answer.status, 200);
    let mut closed = 0;
    for holder in &mut holders {
        if closed_unanswered(holder, Duration::from_millis(500)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 1, "one holder gave way");
    drop(holders);
    receiver.stop().await;
}

/// The answer to a request head sent with `Expect: 100-continue` and no
/// body: everything the server wrote before it closed the connection.
async fn head_only(addr: SocketAddr, head: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    let (got, closed) = read_until_closed(&mut stream, DEADLINE).await;
    assert!(closed, "the connection stays open: {got:?}");
    got
}

/// What the head can tell is refused before the body is read, and without
/// `100 Continue`: wrong or missing PaySys credentials, an account that is
/// not configured, a method the route does not take, a Portmanat POST that
/// is not a form. Genuine credentials get `100 Continue` and are accepted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heads_are_judged_before_bodies_and_before_100_continue() {
    let mut options = Options::new(BackendKind::Embedded);
    options.settings = |s: &mut ReceiverSettings| {
        s.body_read_timeout = Duration::from_secs(20);
    };
    let receiver = spawn_with(options).await;
    let wrong = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{PAYSYS_USER}:not-the-secret")
        )
    );
    let cases = [
        (
            "POST",
            "/callbacks/paysys",
            Some(wrong.as_str()),
            "application/json",
            "401",
            "wrong_credentials",
        ),
        (
            "POST",
            "/callbacks/paysys",
            None,
            "application/json",
            "401",
            "missing_credentials",
        ),
        (
            "POST",
            "/callbacks/paysys/nosuch",
            None,
            "application/json",
            "404",
            "not_found",
        ),
        (
            "PUT",
            "/callbacks/paysys",
            None,
            "application/json",
            "405",
            "method_not_allowed",
        ),
        (
            "POST",
            "/callbacks/portmanat",
            None,
            "application/json",
            "415",
            "unsupported_media_type",
        ),
    ];
    for (method, path, auth, content_type, status, code) in cases {
        let auth = auth
            .map(|a| format!("Authorization: {a}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: t\r\n{auth}Content-Type: {content_type}\r\nContent-Length: 60000\r\nExpect: 100-continue\r\n\r\n"
        );
        let got = head_only(receiver.addr, &head).await;
        assert!(
            got.starts_with(&format!("HTTP/1.1 {status} ")),
            "{method} {path}: {got:?}"
        );
        assert!(!got.contains("100 Continue"), "{method} {path}: {got:?}");
        assert!(got.contains(code), "{method} {path}: {got:?}");
    }

    // Genuine credentials: 100 Continue, then the body, then accepted.
    let body = json!({"id": "11", "account": "DOOR-PS-1", "amount": 100, "currency": 860,
        "status": 2})
    .to_string();
    let mut stream = TcpStream::connect(receiver.addr).await.unwrap();
    let head = format!(
        "POST /callbacks/paysys HTTP/1.1\r\nHost: t\r\nAuthorization: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        paysys_authorization(),
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut continue_line = vec![0u8; b"HTTP/1.1 100 Continue\r\n\r\n".len()];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut continue_line))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(continue_line, b"HTTP/1.1 100 Continue\r\n\r\n");
    stream.write_all(body.as_bytes()).await.unwrap();
    let (got, _) = read_until_closed(&mut stream, DEADLINE).await;
    assert!(got.starts_with("HTTP/1.1 200 "), "{got:?}");
    assert_eq!(receiver.drain(1).await.len(), 1);
    receiver.stop().await;
}

/// A Portmanat POST declaring a body of `length` and sending a few bytes
/// of it once the server has said `100 Continue` (so its reservation is
/// made): the server holds the reservation until the body times out.
async fn stalled_body(from: IpAddr, addr: SocketAddr, length: usize) -> TcpStream {
    let mut stream = connect_from(from, addr).await.unwrap();
    let head = format!(
        "POST /callbacks/portmanat HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let expected = b"HTTP/1.1 100 Continue\r\n\r\n";
    let mut got = vec![0u8; expected.len()];
    tokio::time::timeout(DEADLINE, stream.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    if got != expected {
        let (rest, _) = read_until_closed(&mut stream, DEADLINE).await;
        panic!("{}{rest}", String::from_utf8_lossy(&got));
    }
    stream.write_all(b"psp_rrn=").await.unwrap();
    stream
}

/// The same head from `from`, refused: everything the server wrote.
async fn refused_body(from: IpAddr, addr: SocketAddr, length: usize) -> String {
    let mut stream = connect_from(from, addr).await.unwrap();
    let head = format!(
        "POST /callbacks/portmanat HTTP/1.1\r\nHost: t\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\nExpect: 100-continue\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    read_until_closed(&mut stream, DEADLINE).await.0
}

/// The budget of body bytes being read bounds memory whatever the number
/// of connections: one client's share first, then everyone's; past it a
/// request is answered 503 `busy` with `Retry-After` before its body is
/// read (no `100 Continue`), and nothing is queued. Other clients keep
/// their part.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_body_budget_bounds_bodies_in_flight() {
    let mut options = Options::new(BackendKind::Embedded);
    options.settings = |s: &mut ReceiverSettings| {
        s.max_body_bytes = 4096;
        s.body_budget_per_client = 8192;
        s.body_budget_bytes = 16384;
        s.body_read_timeout = Duration::from_secs(20);
    };
    let receiver = spawn_with(options).await;
    let mut stalled = Vec::new();
    for _ in 0..2 {
        stalled.push(stalled_body(stranger(5), receiver.addr, 4096).await);
    }
    let over = refused_body(stranger(5), receiver.addr, 4096).await;
    assert!(over.starts_with("HTTP/1.1 503 "), "{over}");
    assert!(!over.contains("100 Continue"), "{over}");
    assert!(over.contains("\"busy\""), "{over}");
    assert!(
        over.to_ascii_lowercase().contains("retry-after: "),
        "{over}"
    );

    // Another client still has its part: a genuine notification is taken.
    let notification = |id: &str| {
        json!({"id": id, "account": format!("DOOR-B-{id}"), "amount": 100, "currency": 860,
            "status": 2})
        .to_string()
    };
    let url = receiver.url("/callbacks/paysys");
    assert_eq!(post_paysys(&url, notification("1")).await.status, 200);

    // Another client spends the rest of the budget: now everyone waits.
    for _ in 0..2 {
        stalled.push(stalled_body(stranger(6), receiver.addr, 4096).await);
    }
    let refused = post_paysys(&url, notification("2")).await;
    assert_eq!(refused.status, 503);
    assert!(refused.header("retry-after").is_some());

    // Given back when those requests end (the server sees the connections
    // close and drops their reads).
    drop(stalled);
    eventually(DEADLINE, "the budget is given back", || {
        let (url, body) = (url.clone(), notification("3"));
        async move { post_paysys(&url, body).await.status == 200 }
    })
    .await;
    // Only the genuine notifications were queued.
    assert_eq!(receiver.drain(2).await.len(), 2);
    receiver.stop().await;
}

/// Portmanat's hints are unsigned, each worth a `/check`: the same payment
/// within the window is one hint, one client address is rate-limited, and
/// whatever is dropped still gets its redirect to the shop's page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hints_are_deduplicated_and_rate_limited_and_still_redirected() {
    let receiver = spawn_receiver(BackendKind::Embedded).await;
    let hint = |from: IpAddr, query: String| {
        let addr = receiver.addr;
        async move {
            let mut stream = connect_from(from, addr).await.unwrap();
            let request = format!(
                "GET /callbacks/portmanat?{query} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            );
            stream.write_all(request.as_bytes()).await.unwrap();
            read_until_closed(&mut stream, DEADLINE).await.0
        }
    };
    // The same psp_rrn twice, from two addresses: one queued.
    for from in [stranger(8), stranger(9)] {
        let got = hint(from, "psp_rrn=DOOR-PSP-1&client_rrn=DOOR-R-1".to_owned()).await;
        assert!(got.starts_with("HTTP/1.1 303 "), "{got}");
        assert!(got.contains("psp_rrn=DOOR-PSP-1"), "{got}");
    }
    // Twelve different ones from one address: its burst (5) is queued.
    for n in 0..12 {
        let got = hint(stranger(10), format!("psp_rrn=DOOR-PSP-X{n}")).await;
        assert!(got.starts_with("HTTP/1.1 303 "), "{got}");
    }
    assert_eq!(receiver.drain(1 + 5).await.len(), 6);
    let page = get(&receiver.metrics_url("/metrics")).await;
    let text = String::from_utf8_lossy(&page.body);
    for (reason, at_least) in [("duplicate", 1.0), ("client_rate", 7.0)] {
        assert!(
            metric(
                &text,
                "paysettle_receiver_hints_dropped_total",
                &[("reason", reason)]
            )
            .is_some_and(|n| n >= at_least),
            "{reason}: {text}"
        );
    }
    receiver.stop().await;
}

/// Issue 17: hints wait in a queue of their own, bounded. Past the bound a
/// hint is dropped, counted (`reason="queue_full"`), and the browser still
/// gets its redirect; a signed callback is still taken. The bound is the
/// queue's (RabbitMQ may take one more before it refuses).
async fn hints_past_their_queue_bound_are_dropped_and_still_redirected(backend: BackendKind) {
    let mut options = Options::new(backend);
    options.queue = |q| q.hints_max_length = 2;
    options.settings = |s| {
        s.hints.per_sec = 1000.0;
        s.hints.per_client_per_sec = 1000.0;
    };
    let receiver = spawn_with(options).await;
    for n in 0..5 {
        let got = get(&receiver.url(&format!(
            "/callbacks/portmanat?psp_rrn=FULL-PSP-{n}&client_rrn=FULL-R-{n}"
        )))
        .await;
        assert_eq!(got.status, 303, "hint {n}");
    }
    let queued = receiver.hints_queued().await;
    assert!((2..=3).contains(&queued), "{queued} hints queued");
    let page = get(&receiver.metrics_url("/metrics")).await;
    let text = String::from_utf8_lossy(&page.body);
    assert!(
        metric(
            &text,
            "paysettle_receiver_hints_dropped_total",
            &[("reason", "queue_full")]
        )
        .is_some_and(|n| n >= (5 - queued) as f64),
        "{text}"
    );
    // A signed callback is not refused for it.
    let notification = json!({"id": "full-1", "account": "FULL-B-1", "amount": 100,
        "currency": 860, "status": 2})
    .to_string();
    assert_eq!(
        post_paysys(&receiver.url("/callbacks/paysys"), notification)
            .await
            .status,
        200
    );
    let drained = receiver.drain(1 + queued as usize).await;
    assert_eq!(drained.len(), 1 + queued as usize);
    receiver.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_hints_past_their_queue_bound_are_dropped_and_still_redirected() {
    hints_past_their_queue_bound_are_dropped_and_still_redirected(BackendKind::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rabbitmq_hints_past_their_queue_bound_are_dropped_and_still_redirected() {
    hints_past_their_queue_bound_are_dropped_and_still_redirected(BackendKind::RabbitMq).await;
}
