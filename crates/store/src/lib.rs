//! paysettle's SQLite storage. The only crate that depends on rusqlite.
//!
//! - [`fifo`]: the durable, leased FIFO behind the embedded queue backend and the
//!   receiver's spool (used through `paysettle-queue`).

pub mod fifo;
