//! paysettle's load generator, as a library for its binary
//! (`paysettle-loadgen`) and its tests.
//!
//! - [`callbacks`]: genuine callbacks of the three providers as HTTP/1.1
//!   requests, signed with code written from the provider documents (no
//!   dependency on `paysettle-core`, so a signing mistake there cannot hide
//!   behind the same mistake here).
//! - [`conn`]: one keep-alive client connection that writes a request and
//!   reads one answer.
//! - [`load`]: closed loop (as fast as answered) and open loop (fixed rate,
//!   latency without coordinated omission) over many connections.
//! - [`bare`]: a bare hyper server that only reads the body, the ceiling of
//!   HTTP alone.

pub mod bare;
pub mod callbacks;
pub mod conn;
pub mod load;
