//! The service layer's one error type. The HTTP layer maps it to its two formats: a
//! problem (docs/API.md, "Errors") on the management API and an RFC 6749 error object
//! on `/oauth`.

use latchkey_core::store::StoreError;
use std::borrow::Cow;

/// Why a service operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store refused the operation or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The presented credential cannot be used; the reason is safe to show its sender.
    #[error("{0}")]
    InvalidCredential(Cow<'static, str>),
    /// A token to be made breaks its tenant's policy (docs/API.md, "Tenant
    /// policies"); nothing was written.
    #[error("{}", .0.detail)]
    PolicyViolation(latchkey_core::policy::Violation),
    /// Our fault: a key that does not load, no signing key, a value that does not
    /// serialise. The cause goes to the log, never to the client.
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    /// An internal failure with its cause.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        Self::Internal(cause.to_string())
    }

    /// A refused credential, with a reason safe to show.
    pub fn invalid_credential(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::InvalidCredential(reason.into())
    }
}

pub type Result<T> = std::result::Result<T, Error>;
