//! [`DoorSettings`]: the limits a listener keeps, and the names its metrics
//! carry.

use std::time::Duration;

use metrics::{counter, gauge};

use crate::registry::Refused;

/// Everything [`serve`](crate::serve) needs besides the listener and the
/// service.
#[derive(Debug, Clone)]
pub struct DoorSettings {
    /// The listener's name in log lines.
    pub name: &'static str,
    /// Connections served at once. At the limit the heaviest client's
    /// connections give way to a newcomer with fewer.
    pub max_connections: usize,
    /// Connections one client address may hold; more are closed at once.
    pub max_per_client: usize,
    /// How long a new connection may take to start its first request (and an
    /// HTTP/1 request head to arrive).
    pub first_request_timeout: Duration,
    /// How long a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// The oldest a connection may grow; then it is closed gracefully.
    pub max_connection_age: Duration,
    /// How long a connection being closed (age, eviction) may take to finish
    /// its requests in flight.
    pub close_grace: Duration,
    /// After shutdown, how long requests in flight may take to finish before
    /// their connections are dropped.
    pub shutdown_grace: Duration,
    /// The largest request head (HTTP/1 read buffer, HTTP/2 header list).
    pub max_head_bytes: usize,
    /// HTTP/2 limits.
    pub http2: Http2Limits,
    /// Where the listener's connection figures go.
    pub metrics: DoorMetrics,
}

/// Per-connection HTTP/2 limits: what one connection can make the server
/// hold is `max_concurrent_streams` requests and `connection_window` bytes
/// of body not yet read.
#[derive(Debug, Clone, Copy)]
pub struct Http2Limits {
    pub max_concurrent_streams: u32,
    /// Bytes a client may send on one stream before the server reads them:
    /// the body limit, so a body within the limit never stalls.
    pub stream_window: u32,
    /// Bytes a client may send on the whole connection before the server
    /// reads them.
    pub connection_window: u32,
    /// The largest response buffered per stream.
    pub max_send_buf: usize,
    /// Pings keep a dead peer from holding a connection; the idle timeout
    /// closes a live one that sends nothing but pongs.
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
}

impl Http2Limits {
    /// Streams and windows sized to a body limit: one body fits a stream's
    /// window, and a connection buffers at most four.
    pub fn for_body_limit(max_body_bytes: usize, max_concurrent_streams: u32) -> Http2Limits {
        // HTTP/2 windows are between 65,535 (the protocol's default) and
        // 2^31 - 1.
        let body = u32::try_from(max_body_bytes)
            .unwrap_or(u32::MAX)
            .clamp(65_535, (1 << 31) - 1);
        Http2Limits {
            max_concurrent_streams,
            stream_window: body,
            connection_window: body.saturating_mul(4).min((1 << 31) - 1),
            max_send_buf: 64 * 1024,
            ping_interval: Duration::from_secs(30),
            ping_timeout: Duration::from_secs(10),
        }
    }
}

/// The metric names of one listener: `{prefix}_connections_open`,
/// `{prefix}_connection_timeouts_total{reason}`,
/// `{prefix}_connections_refused_total{reason}` and
/// `{prefix}_connections_evicted_total`.
#[derive(Debug, Clone)]
pub struct DoorMetrics {
    open: String,
    timeouts: String,
    refused: String,
    evicted: String,
}

impl DoorMetrics {
    pub fn new(prefix: &str) -> DoorMetrics {
        DoorMetrics {
            open: format!("{prefix}_connections_open"),
            timeouts: format!("{prefix}_connection_timeouts_total"),
            refused: format!("{prefix}_connections_refused_total"),
            evicted: format!("{prefix}_connections_evicted_total"),
        }
    }

    pub(crate) fn opened(&self) {
        gauge!(self.open.clone()).increment(1.0);
    }

    pub(crate) fn closed(&self) {
        gauge!(self.open.clone()).decrement(1.0);
    }

    pub(crate) fn timed_out(&self, reason: &'static str) {
        counter!(self.timeouts.clone(), "reason" => reason).increment(1);
    }

    pub(crate) fn refused(&self, refused: Refused) {
        counter!(self.refused.clone(), "reason" => refused.as_str()).increment(1);
    }

    pub(crate) fn evicted(&self) {
        counter!(self.evicted.clone()).increment(1);
    }
}

impl DoorSettings {
    /// Limits for a listener named `name` whose metrics start with `prefix`,
    /// with bodies up to `max_body_bytes`; the caller adjusts the rest.
    pub fn new(name: &'static str, prefix: &str, max_body_bytes: usize) -> DoorSettings {
        DoorSettings {
            name,
            max_connections: 1024,
            max_per_client: 64,
            first_request_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(10),
            max_connection_age: Duration::from_secs(300),
            close_grace: Duration::from_secs(10),
            shutdown_grace: Duration::from_secs(10),
            max_head_bytes: 16 * 1024,
            http2: Http2Limits::for_body_limit(max_body_bytes, 16),
            metrics: DoorMetrics::new(prefix),
        }
    }

    /// The limits that cannot work, named.
    pub fn problem(&self) -> Option<&'static str> {
        if self.max_connections == 0 {
            return Some("max_connections must be at least 1");
        }
        if self.max_per_client == 0 {
            return Some("max_connections_per_client must be at least 1");
        }
        if self.first_request_timeout.is_zero()
            || self.idle_timeout.is_zero()
            || self.max_connection_age.is_zero()
        {
            return Some("connection timeouts must be positive");
        }
        if self.http2.max_concurrent_streams == 0 {
            return Some("http2 max_concurrent_streams must be at least 1");
        }
        None
    }
}
