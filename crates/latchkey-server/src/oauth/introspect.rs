//! `POST /oauth/introspect` (RFC 7662) for access JWTs, long-lived JWTs, api keys and
//! refresh tokens. The caller is a resource server or gateway presenting its own api key
//! with `latchkey:introspect` (or `latchkey:admin`). Anything not active at this instant
//! (unknown, malformed, expired, revoked, a revoked parent token, a user who left, an
//! address its allowlist refuses) answers exactly `{"active":false}`. An active answer's
//! `scope` is what the credential grants now: its scope narrowed to what its token grants
//! now (docs/API.md, "When a token is usable"), and it carries the grant's basis (`rol`,
//! `prm`) and the allowlist (`ip_allowlist`) so a verifier can keep narrowing it.
//!
//! The address judged: a `client_ip` parameter from a caller holding
//! `latchkey:introspect`; without one, that caller enforces the returned `ip_allowlist`
//! itself (a gateway caches answers per credential, not per client). A caller holding
//! only `latchkey:admin` is judged by its own address.

use super::client::read_form;
use super::error::{OAuthError, OAuthResult};
use super::jwt;
use crate::auth::authenticate_api_key;
use crate::extract::client_addr;
use crate::problem::ApiError;
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::permission::{format_scope, parse_scope};
use latchkey_core::secret::SecretType;
use latchkey_core::token::TokenKind;
use latchkey_core::usable::{Client, narrow};
use latchkey_core::{Permission, PermissionSet};
use serde_json::{Map, Value, json};
use std::net::IpAddr;

/// The introspection endpoint.
pub async fn introspect(State(state): State<AppState>, request: Request) -> Response {
    match answer(&state, request).await {
        Ok(body) => {
            let mut response = axum::Json(body).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn answer(state: &AppState, request: Request) -> OAuthResult<Value> {
    let (parts, form) = read_form(request).await?;
    let credential = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, credential)| credential.trim())
        .ok_or_else(|| {
            OAuthError::invalid_token("a bearer credential with latchkey:introspect is required")
        })?;
    let caller = authenticate_api_key(state, credential, client_addr(&parts, state))
        .await
        .map_err(|error| match error {
            ApiError::InvalidToken { description, .. } => OAuthError::invalid_token(description),
            other => OAuthError::from(other),
        })?;
    let holds = |is: fn(&Permission) -> bool| caller.effective.iter().any(is);
    let system = caller.record.token.owner.tenant_id().is_system();
    if !system || !(holds(Permission::is_introspect) || holds(Permission::is_admin)) {
        return Err(OAuthError::insufficient_scope(
            "introspection requires latchkey:introspect",
        ));
    }
    let client = match form.get("client_ip")? {
        Some(_) if !holds(Permission::is_introspect) => {
            return Err(OAuthError::invalid_request(
                "client_ip may be given only by a caller holding latchkey:introspect",
            ));
        }
        Some(text) => Client::Address(text.parse::<IpAddr>().map_err(|_| {
            OAuthError::invalid_request("client_ip must be an IPv4 or IPv6 address")
        })?),
        None if holds(Permission::is_introspect) => Client::JudgedByCaller,
        None => crate::auth::client(client_addr(&parts, state)),
    };
    let token = form.require("token")?;
    Ok(inspect(state, token, client)
        .await?
        .unwrap_or_else(|| json!({ "active": false })))
}

/// The introspection answer for an active token, or `None`.
async fn inspect(state: &AppState, presented: &str, client: Client) -> OAuthResult<Option<Value>> {
    let prefix = format!("{}_", state.codec().prefix().as_str());
    if presented.starts_with(&prefix) {
        return inspect_secret(state, presented, client).await;
    }
    inspect_jwt(state, presented, client).await
}

async fn inspect_secret(
    state: &AppState,
    presented: &str,
    client: Client,
) -> OAuthResult<Option<Value>> {
    let Ok(parsed) = state.codec().parse(presented) else {
        return Ok(None);
    };
    let Some(id) = parsed.id else {
        return Ok(None);
    };
    let now = state.now();
    match parsed.kind {
        SecretType::ApiKey => {
            let Some(token) = state.token(id).await? else {
                return Ok(None);
            };
            let record = &token.record;
            let genuine = record
                .secret
                .as_ref()
                .is_some_and(|stored| state.codec().verify(&parsed, stored));
            if !genuine || record.token.kind != TokenKind::ApiKey {
                return Ok(None);
            }
            let Ok(grant) = token.usable(now, client) else {
                return Ok(None);
            };
            let mut body = describe(state, &record.token, grant);
            body.insert("iat".into(), json!(record.token.created_at.unix_seconds()));
            if let Some(expiry) = record.token.expires_at {
                body.insert("exp".into(), json!(expiry.unix_seconds()));
            }
            Ok(Some(Value::Object(body)))
        }
        SecretType::RefreshToken => {
            let Some((refresh, family)) = state.store().get_refresh(id).await? else {
                return Ok(None);
            };
            if !state.codec().verify(&parsed, &refresh.secret)
                || refresh.used_at.is_some()
                || family.revoked_at.is_some()
                || family.expires_at <= now
            {
                return Ok(None);
            }
            let Some(token) = state.token(family.token_id).await? else {
                return Ok(None);
            };
            let Ok(grant) = token.usable(now, client) else {
                return Ok(None);
            };
            let Ok(scope) = parse_scope(&family.scope) else {
                return Ok(None);
            };
            let mut body = describe(state, &token.record.token, &narrow(&scope, grant));
            body.insert("token_type".into(), json!("refresh_token"));
            body.insert("iat".into(), json!(refresh.created_at.unix_seconds()));
            body.insert("exp".into(), json!(family.expires_at.unix_seconds()));
            Ok(Some(Value::Object(body)))
        }
        SecretType::ClientSecret => Ok(None),
    }
}

async fn inspect_jwt(
    state: &AppState,
    presented: &str,
    client: Client,
) -> OAuthResult<Option<Value>> {
    let now = state.now();
    let keys = state.keyring().keys();
    let claims = match keys.verified().get(presented) {
        Some(claims) => {
            if claims.exp.is_some_and(|exp| exp <= now.unix_seconds()) {
                return Ok(None);
            }
            claims
        }
        None => {
            let issuer = &state.settings().public_url;
            let Ok(claims) = jwt::verify(&keys, issuer, presented, now.unix_seconds()) else {
                return Ok(None);
            };
            let claims = std::sync::Arc::new(claims);
            keys.verified().put(presented, claims.clone());
            claims
        }
    };
    if state.keyring().is_jti_revoked(&claims.jti) {
        return Ok(None);
    }
    let Ok(id) = latchkey_core::TokenId::parse(&claims.client_id) else {
        return Ok(None);
    };
    let Some(token) = state.token(id).await? else {
        return Ok(None);
    };
    if claims.is_long_lived() != (token.record.token.kind == TokenKind::Jwt) {
        return Ok(None);
    }
    let Ok(grant) = token.usable(now, client) else {
        return Ok(None);
    };
    let Ok(scope) = parse_scope(&claims.scope) else {
        return Ok(None);
    };
    let mut body = describe(state, &token.record.token, &narrow(&scope, grant));
    body.insert("iat".into(), json!(claims.iat));
    body.insert("nbf".into(), json!(claims.nbf));
    body.insert("aud".into(), json!(claims.aud));
    body.insert("jti".into(), json!(claims.jti));
    if let Some(exp) = claims.exp {
        body.insert("exp".into(), json!(exp));
    }
    Ok(Some(Value::Object(body)))
}

/// The members every active answer has; `scope` is what the credential grants now.
fn describe(
    state: &AppState,
    token: &latchkey_core::token::Token,
    scope: &PermissionSet,
) -> Map<String, Value> {
    let mut body = Map::new();
    body.insert("active".into(), json!(true));
    body.insert("scope".into(), json!(format_scope(scope)));
    body.insert("client_id".into(), json!(token.id));
    body.insert("sub".into(), json!(token.id));
    body.insert("tid".into(), json!(token.owner.tenant_id()));
    if let Some(user) = token.owner.user_id() {
        body.insert("uid".into(), json!(user));
    }
    body.insert("token_type".into(), json!("Bearer"));
    body.insert("iss".into(), json!(state.settings().public_url));
    // Extension members, as in the JWT claims: what the grant is computed from, so a
    // verifier can narrow a cached answer when a role or membership changes.
    body.insert("rol".into(), json!(token.roles));
    body.insert("prm".into(), json!(token.permissions));
    // The networks the token may be used from, so that a caller that passed no
    // `client_ip` (a gateway) can enforce them against the client it sees.
    if !token.ip_allowlist.is_empty() {
        body.insert("ip_allowlist".into(), json!(token.ip_allowlist));
    }
    body
}
