//! The queue crate's integration tests, one binary: the shared contract run
//! against both backends, RabbitMQ-only behaviour, the embedded backend's own,
//! and the fault test through a TCP proxy. RabbitMQ tests need a broker at
//! `PAYSETTLE_TEST_AMQP_URL` (default amqp://guest:guest@127.0.0.1:5672/%2f).

// This whole binary is test code, but clippy's allow-*-in-tests only covers
// `#[test]` functions, not the shared contract and support functions they call.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod contract;
mod embedded;
mod fault;
mod rabbitmq;
mod support;
