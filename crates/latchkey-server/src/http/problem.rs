//! The one place where failures become HTTP responses on the management API: RFC 9457
//! `application/problem+json` with a stable `type` URN per failure, plus RFC 6750
//! `WWW-Authenticate` challenges on 401 and 403.
//!
//! The documented set of problem types (docs/API.md repeats it):
//! `invalid-token` 401, `insufficient-scope` 403, `permission-not-held` 403,
//! `invalid-field` 400, `private-key` 400, `invalid-body` 400, `payload-too-large` 413, `not-found` 404,
//! `already-exists` 409, `already-rolled` 409, `revoked` 409, `protected-resource` 409,
//! `immutable-field` 422,
//! `unknown-role` 422, `unknown-permission` 422, `unknown-member` 422,
//! `reserved-permission` 422, `invalid-value` 422, `policy-violation` 422,
//! `unavailable` 503, `internal` 500; for leak reports (docs/API.md, "Leak reports"):
//! `too-many-requests` 429, `invalid-signature` 401, `not-configured` 404.
//!
//! Internal failures reach the client as a bare 500; their cause goes to the log.

use crate::service::error as service;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::permission::GrantError;
use latchkey_core::store::StoreError;
use latchkey_wire::Problem;

/// Why a follower endpoint refused a request without a client certificate, in both
/// error formats.
pub const CLIENT_CERTIFICATE_REQUIRED: &str =
    "this endpoint needs a client certificate from the server's tls_client_ca_file (mutual TLS)";

/// The URN prefix of every problem type.
pub const PROBLEM_PREFIX: &str = "urn:latchkey:problem:";

/// A refusal or failure of a management request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No usable credential; `challenge_error` is false when none was presented at all.
    #[error("{description}")]
    InvalidToken {
        /// Why, in words safe to show.
        description: String,
        /// Whether to add `error="invalid_token"` to the challenge.
        challenge_error: bool,
    },
    /// The credential lacks the permission the operation needs.
    #[error("this operation requires {0}")]
    InsufficientScope(&'static str),
    /// A grant asked for more than its grantor holds.
    #[error("{detail}")]
    PermissionNotHeld {
        /// The whole sentence.
        detail: String,
        permission: String,
    },
    /// A field failed its format check.
    #[error("`{field}` {reason}")]
    InvalidField {
        /// The field's name or JSON path.
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// A JWK that should be public holds private key material (the field's name). The
    /// key is neither kept nor echoed.
    #[error(
        "`{0}` holds a private key; send only the public key (remove `d` and the other private members), and treat the private key as exposed"
    )]
    PrivateKey(String),
    /// The body is not the JSON the endpoint takes.
    #[error("{0}")]
    InvalidBody(String),
    /// The body is over the limit.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// Nothing here, or nothing the caller may see.
    #[error("{0} not found")]
    NotFound(String),
    /// The id is taken.
    #[error("{0}")]
    AlreadyExists(String),
    /// A token to be made breaks its tenant's policy.
    #[error("{detail}")]
    PolicyViolation {
        /// The rule, as its policy field.
        rule: &'static str,
        /// The whole sentence.
        detail: String,
    },
    /// A roll of a token that was rolled already.
    #[error("{0} was rolled already; roll its successor instead")]
    AlreadyRolled(String),
    /// A roll of a token that is revoked or expired.
    #[error("{0} is revoked or expired")]
    Revoked(String),
    /// Mutual TLS is on and the connection presented no certificate from
    /// `tls_client_ca_file`.
    #[error("{}", CLIENT_CERTIFICATE_REQUIRED)]
    ClientCertificateRequired,
    /// A built-in resource cannot be changed.
    #[error("{0}")]
    Protected(String),
    /// A rename touched another field.
    #[error("only `name` can change; `{0}` is immutable")]
    ImmutableField(String),
    /// A role named in the request does not exist.
    #[error("role {0} does not exist")]
    UnknownRole(String),
    /// A permission named in the request is not in the catalogue.
    #[error("permission {0} is not in the catalogue")]
    UnknownPermission(String),
    /// A user named in the request is not a member of the tenant.
    #[error("{detail}")]
    UnknownMember { detail: String, user: String },
    /// A system-only permission asked for outside the system tenant.
    #[error("{detail}")]
    ReservedPermission { detail: String, permission: String },
    /// A well-formed value that the operation cannot accept.
    #[error("`{field}` {reason}")]
    InvalidValue { field: String, reason: String },
    /// The store cannot be reached.
    #[error("the service is temporarily unavailable")]
    Unavailable(String),
    /// Our fault.
    #[error("internal error")]
    Internal(String),
    /// This address sent too many requests to an endpoint open to anyone: retry after
    /// this many seconds.
    #[error("too many requests from this address; retry after {0} seconds")]
    TooManyRequests(u64),
    /// A signed request whose signature is missing, names no known key, or does not
    /// verify.
    #[error("{0}")]
    InvalidSignature(String),
    /// The endpoint needs a setting this server does not have.
    #[error("{0}")]
    NotConfigured(String),
}

impl ApiError {
    /// A 400 naming `field`.
    pub fn field(field: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason: reason.to_string(),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.parts().0
    }

    /// A 422 naming `field`.
    pub fn value(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidValue {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// The 401 for a credential that was presented but is no good.
    pub fn invalid_token(description: impl Into<String>) -> Self {
        Self::InvalidToken {
            description: description.into(),
            challenge_error: true,
        }
    }

    fn parts(&self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            InvalidToken { .. } => (
                StatusCode::UNAUTHORIZED,
                "invalid-token",
                "Invalid or missing credential",
            ),
            InsufficientScope(_) => (
                StatusCode::FORBIDDEN,
                "insufficient-scope",
                "Insufficient scope",
            ),
            PermissionNotHeld { .. } => (
                StatusCode::FORBIDDEN,
                "permission-not-held",
                "Permission not held",
            ),
            InvalidField { .. } => (StatusCode::BAD_REQUEST, "invalid-field", "Invalid field"),
            PrivateKey(_) => (StatusCode::BAD_REQUEST, "private-key", "Private key sent"),
            InvalidBody(_) => (
                StatusCode::BAD_REQUEST,
                "invalid-body",
                "Invalid request body",
            ),
            PayloadTooLarge(_) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload-too-large",
                "Request body too large",
            ),
            NotFound(_) => (StatusCode::NOT_FOUND, "not-found", "Not found"),
            ClientCertificateRequired => (
                StatusCode::FORBIDDEN,
                "client-certificate-required",
                "Client certificate required",
            ),
            AlreadyExists(_) => (StatusCode::CONFLICT, "already-exists", "Already exists"),
            AlreadyRolled(_) => (StatusCode::CONFLICT, "already-rolled", "Already rolled"),
            Revoked(_) => (StatusCode::CONFLICT, "revoked", "Revoked"),
            Protected(_) => (
                StatusCode::CONFLICT,
                "protected-resource",
                "Protected resource",
            ),
            ImmutableField(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "immutable-field",
                "Field is immutable",
            ),
            UnknownRole(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-role",
                "Unknown role",
            ),
            UnknownPermission(_) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-permission",
                "Unknown permission",
            ),
            UnknownMember { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown-member",
                "Unknown member",
            ),
            ReservedPermission { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "reserved-permission",
                "Reserved permission",
            ),
            InvalidValue { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid-value",
                "Invalid value",
            ),
            PolicyViolation { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "policy-violation",
                "Policy violation",
            ),
            Unavailable(_) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "Service unavailable",
            ),
            Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Internal error",
            ),
            TooManyRequests(_) => (
                StatusCode::TOO_MANY_REQUESTS,
                "too-many-requests",
                "Too many requests",
            ),
            InvalidSignature(_) => (
                StatusCode::UNAUTHORIZED,
                "invalid-signature",
                "Invalid signature",
            ),
            NotConfigured(_) => (StatusCode::NOT_FOUND, "not-configured", "Not configured"),
        }
    }

    /// The problem document (docs/API.md, "Problem types"), with the extension member
    /// that names what the problem is about.
    fn body(&self, status: StatusCode, code: &str, title: &str) -> Problem {
        use ApiError::*;
        let mut problem = Problem {
            r#type: format!("{PROBLEM_PREFIX}{code}"),
            title: title.to_owned(),
            status: status.as_u16(),
            detail: self.to_string(),
            field: None,
            permission: None,
            role: None,
            user_id: None,
            scope: None,
            rule: None,
        };
        match self {
            InvalidField { field, .. }
            | InvalidValue { field, .. }
            | ImmutableField(field)
            | PrivateKey(field) => problem.field = Some(field.clone()),
            PermissionNotHeld { permission, .. }
            | ReservedPermission { permission, .. }
            | UnknownPermission(permission) => problem.permission = Some(permission.clone()),
            UnknownRole(role) => problem.role = Some(role.clone()),
            UnknownMember { user, .. } => problem.user_id = Some(user.clone()),
            InsufficientScope(scope) => problem.scope = Some((*scope).to_owned()),
            PolicyViolation { rule, .. } => problem.rule = Some((*rule).to_owned()),
            _ => {}
        }
        problem
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, title) = self.parts();
        match &self {
            Self::Internal(cause) => tracing::error!(%cause, "internal error"),
            Self::Unavailable(cause) => tracing::warn!(%cause, "store unavailable"),
            _ => {}
        }
        let body = serde_json::to_string(&self.body(status, code, title)).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        let challenge = match &self {
            Self::InvalidToken {
                description,
                challenge_error: true,
            } => Some(format!(
                "Bearer realm=\"latchkey\", error=\"invalid_token\", error_description=\"{}\"",
                description.replace('"', "'")
            )),
            Self::InvalidToken { .. } => Some("Bearer realm=\"latchkey\"".to_owned()),
            Self::InsufficientScope(scope) => Some(format!(
                "Bearer realm=\"latchkey\", error=\"insufficient_scope\", scope=\"{scope}\""
            )),
            _ => None,
        };
        if let Some(value) = challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            headers.insert(header::WWW_AUTHENTICATE, value);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        if let Self::TooManyRequests(wait) = &self {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(*wait));
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(what) => Self::AlreadyExists(format!("{what} already exists")),
            StoreError::UnknownTenant(tenant) => Self::NotFound(format!("tenant {tenant}")),
            StoreError::UnknownRole(role) => Self::UnknownRole(role.to_string()),
            StoreError::UnknownPermission(p) => Self::UnknownPermission(p.to_string()),
            StoreError::NotMember(user, tenant) => Self::UnknownMember {
                detail: format!("user {user} is not a member of tenant {tenant}"),
                user: user.to_string(),
            },
            StoreError::Protected(what) => {
                Self::Protected(format!("{what} is built in and cannot be changed"))
            }
            StoreError::Unavailable(cause) => Self::Unavailable(cause),
            StoreError::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<service::Error> for ApiError {
    fn from(error: service::Error) -> Self {
        match error {
            service::Error::Store(error) => error.into(),
            service::Error::InvalidCredential(reason) => Self::invalid_token(reason),
            service::Error::PolicyViolation(violation) => Self::PolicyViolation {
                rule: violation.rule.as_str(),
                detail: violation.detail,
            },
            service::Error::Internal(cause) => Self::Internal(cause),
        }
    }
}

impl From<GrantError> for ApiError {
    fn from(error: GrantError) -> Self {
        let detail = error.to_string();
        match error {
            GrantError::SystemOnly(permission) => Self::ReservedPermission {
                detail,
                permission: permission.to_string(),
            },
            GrantError::NotHeld { permission, .. } => Self::PermissionNotHeld {
                detail,
                permission: permission.to_string(),
            },
        }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
