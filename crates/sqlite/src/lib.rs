//! paysettle's SQLite plumbing: the one piece the ledger (`paysettle-store`)
//! and the embedded queue's FIFO (`paysettle-queue`) both need, so it exists
//! once instead of in two diverging copies. It knows nothing of payments or
//! messages. It is the only crate that depends on rusqlite (`deny.toml`
//! wraps it here); its users reach rusqlite through the re-export
//! [`rusqlite`], so every crate builds against the same version.
//!
//! - [`connection`]: [`open`] a file with paysettle's pragmas (WAL journal,
//!   `synchronous`, a busy timeout, foreign keys and `secure_delete` where the
//!   file asks for them), creating its directory; [`open_read_only`] for
//!   queries beside the writer.
//! - [`writer`]: [`Writer`], the thread that owns a file's writing connection
//!   and takes commands from a bounded channel, handing whatever is waiting to
//!   a [`Commit`] as one group, so concurrent callers share one transaction and
//!   one `fsync` (group commit), and a flood waits instead of growing memory.

pub mod connection;
pub mod writer;

pub use rusqlite;

pub use connection::{OpenError, Options, Synchronous, open, open_read_only};
pub use writer::{Commit, Stopped, TrySendError, Writer};
