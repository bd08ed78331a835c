//! Request extractors that turn wire input into domain values at the boundary, and
//! every rejection into the problem format: bodies (JSON only, at most 64 KiB, unknown
//! fields refused, the offending field named), queries, and who the client is.

use crate::problem::ApiError;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use std::net::{IpAddr, SocketAddr};

/// The largest request body any endpoint takes.
pub const BODY_LIMIT: usize = 64 * 1024;

/// A JSON body deserialized into `T`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            })
            .unwrap_or(false);
        if !is_json {
            return Err(ApiError::InvalidBody(
                "expected a JSON body with Content-Type: application/json".to_owned(),
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge(BODY_LIMIT)
                } else {
                    ApiError::InvalidBody(rejection.body_text())
                }
            })?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// Deserializes `bytes`, naming the failing field by its JSON path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::InvalidBody(format!("request body is not valid JSON: {inner}"))
        } else if path == "." || path.is_empty() {
            ApiError::InvalidBody(strip_position(&inner))
        } else {
            let message = strip_position(&inner);
            let reason = match message.split_once("`, ") {
                Some((head, expected)) if head.starts_with("unknown field `") => {
                    format!("is not a field of this request ({expected})")
                }
                _ if message.starts_with("unknown field") => {
                    "is not a field of this request".to_owned()
                }
                _ => message,
            };
            ApiError::field(path, reason)
        }
    })?;
    deserializer.end().map_err(|_| {
        ApiError::InvalidBody("trailing characters after the JSON value".to_owned())
    })?;
    Ok(value)
}

fn strip_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(index) => text[..index].to_owned(),
        None => text,
    }
}

/// The client's address and agent, for the audit trail.
#[derive(Debug, Clone, Default)]
pub struct ClientMeta {
    /// The peer's IP address.
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header, cut to 256 characters.
    pub user_agent: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for ClientMeta {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(client_meta(parts))
    }
}

/// Reads the peer address (when the server was started with connect info) and agent.
pub fn client_meta(parts: &Parts) -> ClientMeta {
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip());
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|agent| agent.chars().take(256).collect());
    ClientMeta { ip, user_agent }
}

/// Query parameters of list endpoints.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Page size, 1–200, default 50.
    pub limit: u32,
    /// The opaque cursor from a previous page.
    pub cursor: Option<String>,
}

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 200;

impl<S: Send + Sync> FromRequestParts<S> for ListQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let mut query = ListQuery {
            limit: DEFAULT_LIMIT,
            cursor: None,
        };
        for (key, value) in form_pairs(parts.uri.query().unwrap_or("")) {
            match key.as_str() {
                "limit" => {
                    query.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            ApiError::field(
                                "limit",
                                format!("must be a whole number from 1 to {MAX_LIMIT}"),
                            )
                        })?;
                }
                "cursor" => query.cursor = Some(crate::api::decode_cursor(&value)?),
                other => {
                    return Err(ApiError::field(
                        other,
                        "is not a query parameter of this endpoint",
                    ));
                }
            }
        }
        Ok(query)
    }
}

/// Decodes `application/x-www-form-urlencoded` pairs (also the query-string syntax).
pub fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_pairs_decode_percent_and_plus() {
        let pairs = form_pairs("a=1&scope=reports%3Aread+x&empty=&flag");
        assert_eq!(
            pairs,
            vec![
                ("a".into(), "1".into()),
                ("scope".into(), "reports:read x".into()),
                ("empty".into(), "".into()),
                ("flag".into(), "".into())
            ]
        );
        assert_eq!(form_pairs("x=%zz%4")[0].1, "%zz%4");
    }
}
