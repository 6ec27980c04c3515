//! Shared test helpers: a real HTTP listener that records the callbacks it
//! receives, a small HTTP client, and a simulator started for one test.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use paysettle_sim::form;
use paysettle_sim::{Sim, SimConfig, SimHandle};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Notify;

/// How long a test waits for something before failing.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// One request the receiver got.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Captured {
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form::parse_pairs(&self.query)
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("callback body is JSON")
    }

    pub fn authorization(&self) -> Option<String> {
        self.headers
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap().to_owned())
    }
}

/// A local HTTP server standing in for paysettle's receiver.
pub struct Receiver {
    addr: SocketAddr,
    captured: Arc<Mutex<Vec<Captured>>>,
    arrived: Arc<Notify>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let captured: Arc<Mutex<Vec<Captured>>> = Arc::default();
        let arrived = Arc::new(Notify::new());
        let (store, signal) = (Arc::clone(&captured), Arc::clone(&arrived));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (store, signal) = (Arc::clone(&store), Arc::clone(&signal));
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let (store, signal) = (Arc::clone(&store), Arc::clone(&signal));
                        async move {
                            let (parts, body) = request.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            store.lock().unwrap().push(Captured {
                                method: parts.method,
                                path: parts.uri.path().to_owned(),
                                query: parts.uri.query().unwrap_or_default().to_owned(),
                                headers: parts.headers,
                                body,
                            });
                            signal.notify_waiters();
                            Ok::<_, std::convert::Infallible>(Response::new(Full::new(
                                Bytes::from_static(b"{\"error\":null}"),
                            )))
                        }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Receiver {
            addr,
            captured,
            arrived,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn received(&self) -> Vec<Captured> {
        self.captured.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests have arrived (failing after
    /// [`DEADLINE`]) and returns all of them.
    pub async fn wait_for(&self, n: usize) -> Vec<Captured> {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let notified = self.arrived.notified();
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("expected {n} callbacks, got {}: {:#?}", got.len(), got);
            }
        }
    }
}

/// How long payments stay pending in these tests: long, so nothing resolves
/// on real time while a test looks at a pending payment. Tests move the
/// simulator's clock past it instead.
pub const PENDING: Duration = Duration::from_secs(60);

/// Enough clock advance for every pending payment to resolve.
pub const PAST_PENDING: Duration = Duration::from_secs(61);

/// A simulator with test defaults whose callbacks all go to `receiver`.
pub fn config_for(receiver: &Receiver) -> SimConfig {
    let mut config = SimConfig::for_tests();
    config.scenario.pending.min_ms = PENDING.as_millis() as u64;
    config.scenario.pending.max_ms = PENDING.as_millis() as u64;
    config.portmanat.callback_url = receiver.url("/callbacks/portmanat");
    config.paysys.notify_url = receiver.url("/callbacks/paysys");
    config.plutu.default_return_url = receiver.url("/callbacks/plutu");
    config
}

pub async fn start(config: SimConfig) -> SimHandle {
    Sim::start(config).await.expect("simulator starts")
}

/// The answer to a request.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|err| {
            panic!(
                "not JSON ({err}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends one request; `Err` when no HTTP answer came at all.
pub async fn try_send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Vec<u8>)>,
) -> Result<Answer, String> {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match body {
        Some((content_type, bytes)) => {
            builder = builder.header(header::CONTENT_TYPE, content_type);
            Bytes::from(bytes)
        }
        None => Bytes::new(),
    };
    let response = client()
        .request(builder.body(Full::new(body)).unwrap())
        .await
        .map_err(|err| format!("{err:?}"))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|err| format!("{err:?}"))?
        .to_bytes();
    Ok(Answer {
        status,
        headers,
        body,
    })
}

pub async fn send(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, Vec<u8>)>,
) -> Answer {
    try_send(method, url, headers, body)
        .await
        .expect("an HTTP answer")
}

pub async fn get(url: &str) -> Answer {
    send(Method::GET, url, &[], None).await
}

pub async fn post_form(url: &str, headers: &[(&str, &str)], pairs: &[(&str, &str)]) -> Answer {
    let body = form::http_build_query(pairs).into_bytes();
    send(
        Method::POST,
        url,
        headers,
        Some(("application/x-www-form-urlencoded", body)),
    )
    .await
}

pub async fn post_json(url: &str, headers: &[(&str, &str)], value: &Value) -> Answer {
    send(
        Method::POST,
        url,
        headers,
        Some(("application/json", value.to_string().into_bytes())),
    )
    .await
}

/// The current Unix time in milliseconds, for PaySys `Auth` headers.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}
