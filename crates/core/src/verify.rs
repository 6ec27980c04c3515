//! The result of authenticating a callback.
//!
//! [`VerifiedCallback`] can only be made inside this crate, by a verifier that
//! checked the credentials or the signature: there is no constructor to call
//! and no default that accepts. Portmanat's unsigned return is deliberately
//! not one of these (see [`crate::portmanat::ReturnHint`]).

use crate::observation::Observation;
use crate::paysys::CardRegistration;

/// Why a callback was not accepted. Each variant is its own answer and its own
/// metric label; none carries a secret or the value that failed to match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("no credentials were presented")]
    MissingCredentials,
    #[error("the credentials are not valid")]
    WrongCredentials,
    #[error("the signature is missing")]
    MissingSignature,
    #[error("the signature does not match")]
    BadSignature,
    #[error("malformed callback: {0}")]
    Malformed(String),
}

impl VerifyError {
    /// A short stable name (metric label, log field).
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::MissingCredentials => "missing_credentials",
            VerifyError::WrongCredentials => "wrong_credentials",
            VerifyError::MissingSignature => "missing_signature",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::Malformed(_) => "malformed",
        }
    }

    /// Authentication failed (401), as opposed to a malformed request (400).
    pub fn is_authentication(&self) -> bool {
        !matches!(self, VerifyError::Malformed(_))
    }

    pub(crate) fn malformed(message: impl Into<String>) -> VerifyError {
        VerifyError::Malformed(message.into())
    }
}

/// What an authenticated callback carries.
#[derive(Debug, Clone)]
pub enum CallbackKind {
    /// News about a payment.
    Payment(Observation),
    /// PaySys `partner.notify`: a card registration's result for the shop.
    CardRegistration(CardRegistration),
}

/// A callback whose credentials or signature were checked and found genuine.
#[derive(Debug, Clone)]
pub struct VerifiedCallback {
    kind: CallbackKind,
}

impl VerifiedCallback {
    pub(crate) fn new(kind: CallbackKind) -> VerifiedCallback {
        VerifiedCallback { kind }
    }

    /// What it says.
    pub fn kind(&self) -> &CallbackKind {
        &self.kind
    }

    /// What it says, by value.
    pub fn into_kind(self) -> CallbackKind {
        self.kind
    }

    /// The payment observation, when it is one.
    pub fn observation(&self) -> Option<&Observation> {
        match &self.kind {
            CallbackKind::Payment(observation) => Some(observation),
            CallbackKind::CardRegistration(_) => None,
        }
    }
}
