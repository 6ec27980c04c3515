//! Test support shared by paysettle's crates, used only as a dev-dependency.
//!
//! Everything here stands in for a piece of the outside world a test needs
//! to control, with real parts underneath (real sockets, the real broker):
//!
//! - [`clock`]: [`TestClock`], the clock the ledger and the worker read in a
//!   test, moved by the test (and following tokio's paused time).
//! - [`wait`]: [`eventually`], polling a condition against a deadline instead
//!   of sleeping and hoping.
//! - [`proxy`]: [`Proxy`], a TCP forwarder a test cuts and heals, to take
//!   RabbitMQ "down" without touching the broker other tests share.
//! - [`amqp`]: the test broker's URL and [`amqp::delete_topology`], which
//!   removes a test's queues and exchanges (speaking the few AMQP methods that
//!   needs, because only the queue crate may use lapin).
//! - [`queue`]: [`TestQueue`], one test's private queue: a temporary
//!   directory for SQLite files and, on RabbitMQ, a unique prefix deleted when
//!   the test ends, passed or failed.
//! - [`logs`]: [`capture_logs`], the test binary's tracing output kept in a
//!   buffer so a test can read everything the code under test logged.
//! - [`config`]: [`config::sim_accounts`], the provider accounts of a product
//!   configuration that talks to the simulator.
//! - [`pg`]: [`TestDatabase`], one test's own PostgreSQL database, dropped
//!   when the test ends.
//! - [`scan`]: [`SecretScanner`], which finds secrets, Authorization headers,
//!   card tokens and full card numbers in text such as those logs.

pub mod amqp;
pub mod clock;
pub mod config;
pub mod handoff;
pub mod logs;
pub mod pg;
pub mod procfs;
pub mod proxy;
pub mod queue;
pub mod scan;
pub mod wait;

pub use clock::TestClock;
pub use logs::{LogCapture, capture_logs};
pub use pg::TestDatabase;
pub use proxy::Proxy;
pub use queue::TestQueue;
pub use scan::{Finding, SecretScanner};
pub use wait::eventually;
