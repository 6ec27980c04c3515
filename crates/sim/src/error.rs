//! The simulator's one error type, and how the control API answers each.

use std::time::Duration;

use http::StatusCode;

use crate::model::{Provider, Status};

/// What can go wrong when starting or driving the simulator.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration file or a scenario is invalid; the text names the key.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// Why not.
        source: std::io::Error,
    },
    /// No payment has this id or reference.
    #[error("no such payment: {0}")]
    UnknownPayment(String),
    /// The shop's reference is already taken at that provider.
    #[error("{provider} already has a payment with reference {reference:?}")]
    DuplicateReference {
        /// Where.
        provider: Provider,
        /// The reference.
        reference: String,
    },
    /// The payment has already ended, so the customer cannot change it.
    #[error("payment {id} is already {status:?}")]
    AlreadyFinal {
        /// The simulator's payment id.
        id: String,
        /// Its status.
        status: Status,
    },
    /// The provider has no such thing (a Portmanat refund, say).
    #[error("{provider} cannot {what}")]
    Unsupported {
        /// Which provider.
        provider: Provider,
        /// What was asked.
        what: String,
    },
    /// A control request was malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Events due did not finish in time (a callback receiver hanging?).
    #[error("the simulator did not settle within {0:?}")]
    NotSettled(Duration),
}

impl SimError {
    /// The control API's HTTP status for this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            SimError::Config(_) | SimError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            SimError::UnknownPayment(_) => StatusCode::NOT_FOUND,
            SimError::DuplicateReference { .. } | SimError::AlreadyFinal { .. } => {
                StatusCode::CONFLICT
            }
            SimError::Unsupported { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            SimError::NotSettled(_) => StatusCode::GATEWAY_TIMEOUT,
            SimError::Bind { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Why a signature or credential was refused. There is no "no algorithm,
/// accept" default: every check either matches or names what failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The signature or header is missing or not in the documented shape.
    #[error("signature missing or malformed")]
    Malformed,
    /// Well-formed, but computed with another key or over other data.
    #[error("signature does not match")]
    Mismatch,
    /// The timestamp is too far from the simulator's clock.
    #[error("timestamp outside the accepted window")]
    Stale,
}
