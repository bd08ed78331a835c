//! The bearer token of a request (RFC 6750 §2.1), read strictly by core's one parser
//! (`latchkey_core::bearer`), as the verifier, its tower layer and the gateway need it.

use crate::error::VerifyError;
use axum::http::{HeaderMap, HeaderValue, header};
use latchkey_core::bearer::{BearerError, Scheme, bearer, credential};

/// The bearer token of `headers`.
///
/// No `Authorization` header, or one with another scheme, is
/// [`VerifyError::MissingToken`]; a repeated header or an empty or spaced token is
/// [`VerifyError::InvalidRequest`].
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, VerifyError> {
    let values = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes);
    bearer(values).map_err(|error| match error {
        BearerError::Missing => VerifyError::MissingToken,
        BearerError::Malformed => VerifyError::InvalidRequest,
    })
}

/// The token of `headers` with its scheme, `Bearer` or `DPoP` (RFC 9449 §7.1), read as
/// [`bearer_token`] reads a bearer token.
pub fn presented_token(headers: &HeaderMap) -> Result<(Scheme, &str), VerifyError> {
    let values = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes);
    credential(values).map_err(|error| match error {
        BearerError::Missing => VerifyError::MissingToken,
        BearerError::Malformed => VerifyError::InvalidRequest,
    })
}
