//! How database errors become domain errors, and which ones are worth retrying.

use latchkey_core::store::StoreError;

/// The error of one attempt at a transaction: a domain refusal, or a database failure
/// that may be transient.
#[derive(Debug)]
pub(crate) enum TxError {
    Domain(StoreError),
    Sql(sqlx::Error),
}

impl From<sqlx::Error> for TxError {
    fn from(error: sqlx::Error) -> Self {
        Self::Sql(error)
    }
}

impl From<StoreError> for TxError {
    fn from(error: StoreError) -> Self {
        Self::Domain(error)
    }
}

pub(crate) type TxResult<T> = Result<T, TxError>;

/// SQLSTATEs of serialization failures and deadlocks: the transaction may simply be
/// run again.
const RETRYABLE: [&str; 2] = ["40001", "40P01"];

impl TxError {
    pub(crate) fn is_retryable(&self) -> bool {
        match self {
            Self::Sql(sqlx::Error::Database(db)) => db
                .code()
                .is_some_and(|code| RETRYABLE.contains(&code.as_ref())),
            _ => false,
        }
    }

    pub(crate) fn into_store_error(self) -> StoreError {
        match self {
            Self::Domain(error) => error,
            Self::Sql(error) => from_sqlx(error),
        }
    }
}

/// Classifies a database error: connectivity problems are `Unavailable` (503), unique
/// violations `Conflict`, the rest `Internal`.
pub(crate) fn from_sqlx(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.to_string()),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // Class 08 is connection exceptions, 57P0x the server shutting down, and
            // SQLite's 5/6 busy and locked.
            if code.starts_with("08") || code.starts_with("57P0") || code == "5" || code == "6" {
                StoreError::Unavailable(error.to_string())
            } else if db.is_unique_violation() {
                StoreError::Conflict(db.message().to_owned())
            } else {
                StoreError::Internal(error.to_string())
            }
        }
        _ => StoreError::Internal(error.to_string()),
    }
}

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Decode(format!("stored {what} is invalid: {detail}").into())
}
