//! The bearer token of a request (RFC 6750 §2.1), read strictly: the one parser the
//! verifier, its tower layer and the gateway use.

use crate::error::VerifyError;
use axum::http::{HeaderMap, header};

/// The bearer token of `headers`.
///
/// No `Authorization` header, or one with another scheme, is
/// [`VerifyError::MissingToken`]; a repeated header or an empty or spaced token is
/// [`VerifyError::InvalidRequest`].
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, VerifyError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(VerifyError::MissingToken);
    };
    if values.next().is_some() {
        return Err(VerifyError::InvalidRequest);
    }
    let value = value.to_str().map_err(|_| VerifyError::InvalidRequest)?;
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(VerifyError::MissingToken);
    }
    let token = token.trim_start_matches(' ');
    if token.is_empty() || token.contains(' ') {
        return Err(VerifyError::InvalidRequest);
    }
    Ok(token)
}
