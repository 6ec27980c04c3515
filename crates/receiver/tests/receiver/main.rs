//! The receiver's integration tests, one binary: real HTTP through real
//! sockets, the provider simulator for genuine traffic, both queue backends
//! (a temporary SQLite file; the real RabbitMQ at `PAYSETTLE_TEST_AMQP_URL`,
//! default amqp://guest:guest@127.0.0.1:5672/%2f, under a prefix per test).
//!
//! - `genuine`: each provider's genuine callbacks are answered as it expects
//!   and queued exactly once with the right content.
//! - `refusals`: every kind of bad request gets its own answer and queues nothing.
//! - `outage`: RabbitMQ cut: spooled and answered, forwarded when it is back;
//!   503 when nothing is durable.
//! - `lifecycle`: health, readiness, metrics, the connection limit, drain on shutdown.
//! - `door`: connection limits per client address, idle HTTP/2, heads judged
//!   before bodies, the body budget.
//! - `logs`: the scan of everything logged, and proof that the scan can fail.
//!
//! Every test ends with `TestReceiver::stop`, which also scans all the logs
//! captured so far for secrets, so the last test to finish scans the suite.

// Test code: a failed unwrap or assertion is how a test fails, and clippy's
// allow-*-in-tests covers only #[test] functions, not the helpers they share.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod door;
mod genuine;
mod lifecycle;
mod logs;
mod outage;
mod refusals;
mod support;
