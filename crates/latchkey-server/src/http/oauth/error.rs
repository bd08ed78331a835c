//! OAuth errors as RFC 6749 §5.2 objects: `{"error","error_description"}`, with
//! `Cache-Control: no-store`, a `WWW-Authenticate: Basic` challenge on 401 and
//! `Retry-After` on 429 and 503.

use crate::http::problem::CLIENT_CERTIFICATE_REQUIRED;
use crate::service::error as service;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::store::StoreError;
use latchkey_wire::OAuthErrorBody;

/// An OAuth error response.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
    retry_after: Option<u64>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        // RFC 6749 §5.2 allows only %x20-21 / %x23-5B / %x5D-7E in a description, and
        // some descriptions quote what the client sent.
        let description = description
            .into()
            .chars()
            .map(|c| match c {
                ' '..='!' | '#'..='[' | ']'..='~' => c,
                _ => '?',
            })
            .collect();
        Self {
            status,
            error,
            description,
            retry_after: None,
        }
    }

    /// 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    /// 401 `invalid_client`, the same for every cause so it reveals nothing.
    pub fn invalid_client() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "client authentication failed",
        )
    }

    /// 401 `invalid_client` for a request without the client certificate mutual TLS
    /// asks for (RFC 8705 §2: a failed certificate authentication is `invalid_client`).
    pub fn client_certificate_required() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            CLIENT_CERTIFICATE_REQUIRED,
        )
    }

    /// 400 `invalid_grant`.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    /// 400 `invalid_dpop_proof` (RFC 9449 §5): the `DPoP` proof is missing where one
    /// is needed, or is not valid.
    pub fn invalid_dpop_proof(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", description)
    }

    /// 400 `invalid_scope`.
    pub fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    /// 400 `invalid_target` (RFC 8707).
    pub fn invalid_target(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", description)
    }

    /// 400 `unsupported_grant_type`.
    pub fn unsupported_grant_type(grant: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            format!(
                "grant_type `{grant}` is not supported; use client_credentials or refresh_token"
            ),
        )
    }

    /// 401 `invalid_token` for a resource-server credential on introspection.
    pub fn invalid_token(description: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_token", description)
    }

    /// 403 `insufficient_scope`.
    pub fn insufficient_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "insufficient_scope", description)
    }

    /// 429 after too many failed authentications.
    pub fn throttled(seconds: u64) -> Self {
        let mut error = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_client",
            format!("too many failed authentications; retry in {seconds} s"),
        );
        error.retry_after = Some(seconds);
        error
    }

    /// 413 for a body over the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            format!("request body is larger than {limit} bytes"),
        )
    }

    /// 405 for anything but POST.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request",
            "use POST",
        )
    }

    /// 500, cause to the log.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error on an OAuth endpoint");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "internal error",
        )
    }

    /// 503 `temporarily_unavailable`.
    pub fn unavailable(cause: impl std::fmt::Display) -> Self {
        tracing::warn!(%cause, "store unavailable on an OAuth endpoint");
        let mut error = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the service is temporarily unavailable",
        );
        error.retry_after = Some(1);
        error
    }
}

impl OAuthError {
    /// The `error` code.
    pub(crate) fn code(&self) -> &'static str {
        self.error
    }
}

impl From<StoreError> for OAuthError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Unavailable(cause) => Self::unavailable(cause),
            other => Self::internal(format!("{other:?}")),
        }
    }
}

impl From<service::Error> for OAuthError {
    fn from(error: service::Error) -> Self {
        match error {
            service::Error::Store(error) => error.into(),
            service::Error::InvalidCredential(_) => Self::invalid_client(),
            // No OAuth endpoint makes a token; were one to, the client may not learn
            // its tenant's rules from it.
            service::Error::PolicyViolation(violation) => Self::internal(violation.detail),
            service::Error::Internal(cause) => Self::internal(cause),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = OAuthErrorBody {
            error: self.error.to_owned(),
            error_description: self.description,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        match self.status {
            StatusCode::UNAUTHORIZED if self.error == "invalid_client" => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"latchkey\""),
                );
            }
            StatusCode::UNAUTHORIZED => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"latchkey\", error=\"invalid_token\""),
                );
            }
            StatusCode::FORBIDDEN => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(
                        "Bearer realm=\"latchkey\", error=\"insufficient_scope\", scope=\"latchkey:introspect\"",
                    ),
                );
            }
            StatusCode::METHOD_NOT_ALLOWED => {
                headers.insert(header::ALLOW, HeaderValue::from_static("POST"));
            }
            _ => {}
        }
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            headers.insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// Shorthand for OAuth handler results.
pub type OAuthResult<T> = Result<T, OAuthError>;
