//! Sending callbacks: one small HTTP/1 client shared by every outbound
//! request (PaySys notifications, Plutu callbacks, the Portmanat browser
//! return). Plain `http://` only: the simulator talks to a receiver on the
//! same machine, and a TLS stack would only slow every build.

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The shared outbound client.
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub(crate) fn client() -> HttpClient {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector)
}

/// One request to send.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    pub method: Method,
    pub url: String,
    pub authorization: Option<String>,
    /// Content type and body.
    pub body: Option<(&'static str, Bytes)>,
}

/// Sends `outbound` and returns the receiver's HTTP status, or why there was none.
pub(crate) async fn send(
    client: &HttpClient,
    outbound: Outbound,
    timeout: Duration,
) -> Result<u16, String> {
    if outbound.url.starts_with("https://") {
        return Err("https callback URLs are not supported by the simulator".to_owned());
    }
    let uri: http::Uri = outbound
        .url
        .parse()
        .map_err(|err| format!("bad callback URL: {err}"))?;
    let mut builder = Request::builder()
        .method(outbound.method)
        .uri(uri)
        .header(header::USER_AGENT, "paysettle-sim");
    if let Some(authorization) = &outbound.authorization {
        let value = HeaderValue::from_str(authorization)
            .map_err(|_| "authorization is not a valid header value".to_owned())?;
        builder = builder.header(header::AUTHORIZATION, value);
    }
    let body = match outbound.body {
        Some((content_type, body)) => {
            builder = builder.header(header::CONTENT_TYPE, content_type);
            body
        }
        None => Bytes::new(),
    };
    let request = builder
        .body(Full::new(body))
        .map_err(|err| format!("cannot build the request: {err}"))?;
    let exchange = async {
        let response = client
            .request(request)
            .await
            .map_err(|err| format!("no answer: {err}"))?;
        let status = response.status().as_u16();
        // Read the body so the connection can be reused.
        response
            .into_body()
            .collect()
            .await
            .map_err(|err| format!("answer cut short: {err}"))?;
        Ok(status)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}
