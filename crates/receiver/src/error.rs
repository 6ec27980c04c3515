//! [`ReceiverError`]: why the receiver could not start or keep serving.
//!
//! Nothing a single request does is an error here: a refused or failed
//! request is an answer (see `answer`), and accept errors such as running out
//! of file descriptors are logged and waited out, because a receiver that
//! exits is a door that stays shut.

/// Why [`crate::run`] returned an error.
#[derive(Debug, thiserror::Error)]
pub enum ReceiverError {
    /// A limit or a result page in [`crate::ReceiverSettings`] cannot work.
    #[error("invalid receiver settings: {0}")]
    InvalidSettings(String),
    /// The process-wide Prometheus recorder could not be installed (another
    /// recorder was installed first).
    #[error("cannot install the metrics recorder: {0}")]
    Metrics(String),
    /// The listener is unusable (its address cannot be read).
    #[error("the listener is unusable: {0}")]
    Listener(#[source] std::io::Error),
}
