//! Reading OAuth requests (form bodies), once per request into an [`OAuthRequest`],
//! and the client credentials they carry by `client_secret_basic` or
//! `client_secret_post` (RFC 6749 §2.3.1). Authenticating them is the service's
//! (`service::credentials`); every refusal is the same `invalid_client`.

use super::error::{OAuthError, OAuthResult};
use crate::http::extract::{BODY_LIMIT, client_meta, form_pairs, percent_decode};
use crate::service::cache::CachedToken;
use crate::service::client::ClientMeta;
use crate::service::client_assertion::ClientAssertion;
use crate::service::credentials::{self, ClientCredentials, ClientRefused, Presented};
use crate::service::state::AppState;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::sync::Arc;

/// A decoded `application/x-www-form-urlencoded` body.
#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// The single value of `name`; a parameter sent twice is an `invalid_request`
    /// (RFC 6749 §3.1). An empty value counts as absent.
    pub fn get(&self, name: &str) -> OAuthResult<Option<&str>> {
        let mut values = self.pairs.iter().filter(|(key, _)| key == name);
        let first = values.next();
        if values.next().is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{name}` appears more than once"
            )));
        }
        Ok(first
            .map(|(_, value)| value.as_str())
            .filter(|v| !v.is_empty()))
    }

    /// The value of `name`, which must be present.
    pub fn require(&self, name: &str) -> OAuthResult<&str> {
        self.get(name)?
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter `{name}` is required")))
    }
}

/// One request to an OAuth endpoint, read once: its head, its form and who sent it.
/// Each step of an endpoint reads from it, so the path reads top to bottom.
pub struct OAuthRequest {
    /// The request head.
    pub parts: Parts,
    /// The form body.
    pub form: Form,
    /// The client's address and agent.
    pub meta: ClientMeta,
}

impl OAuthRequest {
    /// Reads a form POST (see [`read_form`]) and works out who sent it.
    pub async fn read(state: &AppState, request: Request) -> OAuthResult<Self> {
        let (parts, form) = read_form(request).await?;
        let meta = client_meta(&parts, state);
        Ok(Self { parts, form, meta })
    }

    /// The endpoint's path, as the audit trail names it.
    pub fn endpoint(&self) -> &str {
        self.parts.uri.path()
    }

    /// Authenticates the client of the request and returns its token.
    pub async fn authenticate(&self, state: &AppState) -> OAuthResult<Arc<CachedToken>> {
        let presented = presented(&self.parts.headers, &self.form)?;
        match credentials::authenticate_client(state, &presented, &self.meta, self.endpoint())
            .await?
        {
            Ok(client) => Ok(client),
            Err(ClientRefused::Throttled(wait)) => Err(OAuthError::throttled(wait)),
            Err(ClientRefused::Invalid) => Err(OAuthError::invalid_client()),
        }
    }
}

/// Reads a form POST: the content type must be form-encoded and the body at most 64 KiB.
pub(crate) async fn read_form(request: Request) -> OAuthResult<(Parts, Form)> {
    let (parts, body) = request.into_parts();
    let form_encoded = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_encoded {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| OAuthError::too_large(BODY_LIMIT))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| OAuthError::invalid_request("the body is not UTF-8"))?;
    Ok((
        parts,
        Form {
            pairs: form_pairs(text),
        },
    ))
}

fn presented(headers: &HeaderMap, form: &Form) -> OAuthResult<Presented> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, encoded)| encoded);
    let body_id = form.get("client_id")?;
    let body_secret = form.get("client_secret")?;
    let assertion_type = form.get("client_assertion_type")?;
    let assertion = form.get("client_assertion")?;
    if assertion_type.is_some() || assertion.is_some() {
        // RFC 7523 §2.2 (`private_key_jwt`); a secret beside it is refused there.
        return Ok(Presented::Assertion(ClientAssertion {
            client_id: body_id.map(str::to_owned),
            assertion_type: assertion_type.map(str::to_owned),
            assertion: assertion.map(str::to_owned),
            with_secret: basic.is_some() || body_secret.is_some(),
        }));
    }
    secret(basic, body_id, body_secret).map(Presented::Secret)
}

fn secret(
    basic: Option<&str>,
    body_id: Option<&str>,
    body_secret: Option<&str>,
) -> OAuthResult<ClientCredentials> {
    if basic.is_some() && body_secret.is_some() {
        return Err(OAuthError::invalid_request(
            "use one client authentication method, not both",
        ));
    }
    if let Some(encoded) = basic {
        return decode_basic(encoded);
    }
    match (body_id, body_secret) {
        (Some(id), Some(secret)) => Ok(ClientCredentials {
            client_id: id.to_owned(),
            secret: secret.to_owned(),
        }),
        _ => Err(OAuthError::invalid_client()),
    }
}

fn decode_basic(encoded: &str) -> OAuthResult<ClientCredentials> {
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(OAuthError::invalid_client)?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(OAuthError::invalid_client)?;
    // RFC 6749 §2.3.1: both halves are form-urlencoded before Basic encoding.
    Ok(ClientCredentials {
        client_id: percent_decode(id),
        secret: percent_decode(secret),
    })
}

#[cfg(test)]
mod proptests;
