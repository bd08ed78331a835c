//! `POST /oauth/introspect` (RFC 7662) for access JWTs, long-lived JWTs, api keys and
//! refresh tokens. The caller is a resource server or gateway presenting its own api key
//! with `latchkey:introspect` (or `latchkey:admin`). Anything not active at this instant
//! (unknown, malformed, expired, revoked, a revoked parent token, a user who left, an
//! address its allowlist refuses) answers exactly `{"active":false}`. An active answer's
//! `scope` is what the credential grants now: its scope narrowed to what its token grants
//! now (docs/API.md, "When a token is usable"), and it carries the grant's basis (`rol`,
//! `prm`) and the allowlist (`ip_allowlist`) so a verifier can keep narrowing it.
//!
//! An access token issued through a trust is judged by the trust: active while the trust
//! is and the JWT is valid, with what the trust grants now; its answer names the trust
//! (`client_id`, `trust_id`) and the outside caller (`sub`).
//!
//! The address judged: a `client_ip` parameter from a caller holding
//! `latchkey:introspect`; without one, that caller enforces the returned `ip_allowlist`
//! itself (a gateway caches answers per credential, not per client). A caller holding
//! only `latchkey:admin` is judged by its own address.

use super::client::OAuthRequest;
use super::error::{OAuthError, OAuthResult};
use crate::http::auth::bearer;
use crate::service::credentials::authenticate_api_key;
use crate::service::error::Error;
use crate::service::introspection::{self, Active, Presented};
use crate::service::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::Permission;
use latchkey_core::permission::format_scope;
use latchkey_core::usable::Client;
use latchkey_wire::IntrospectionResponse;
use std::net::IpAddr;

#[utoipa::path(
    post,
    path = "/oauth/introspect",
    operation_id = "oauth_introspect",
    tag = "oauth",
    summary = "Introspect a credential (RFC 7662)",
    request_body(content = crate::http::openapi::IntrospectRequestSchema, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Whether it is active, and what it grants", body = latchkey_wire::IntrospectionResponse), (status = 400, description = "invalid_request"), (status = 401, description = "invalid_token"), (status = 403, description = "insufficient_scope"), (status = 405, description = "Only POST"))
)]
pub async fn introspect(State(state): State<AppState>, request: Request) -> Response {
    let answered = answer(&state, request).await;
    state.metrics().introspection(match &answered {
        Ok(body) if body.active => "active",
        Ok(_) => "inactive",
        Err(error) => error.code(),
    });
    match answered {
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

async fn answer(state: &AppState, request: Request) -> OAuthResult<IntrospectionResponse> {
    let request = OAuthRequest::read(state, request).await?;
    let credential = bearer(&request.parts.headers).map_err(|_| {
        OAuthError::invalid_token("a bearer credential with latchkey:introspect is required")
    })?;
    let caller = authenticate_api_key(state, credential, &request.meta)
        .await
        .map_err(|error| match error {
            Error::InvalidCredential(reason) => OAuthError::invalid_token(reason),
            other => OAuthError::from(other),
        })?;
    let form = &request.form;
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
        None => request.meta.judged(),
    };
    let token = form.require("token")?;
    Ok(
        match introspection::introspect(state, token, client, request.meta.judged()).await? {
            Some(active) => answer_for(state, &active),
            None => IntrospectionResponse::inactive(),
        },
    )
}

/// The answer for an active credential (docs/API.md, "Introspection"); `scope` is what
/// it grants now.
fn answer_for(state: &AppState, active: &Active) -> IntrospectionResponse {
    let token = &active.token.record.token;
    let mut body = IntrospectionResponse {
        active: true,
        scope: Some(format_scope(&active.scope)),
        client_id: Some(token.id),
        sub: Some(token.id.to_string()),
        tid: Some(token.owner.tenant_id().clone()),
        uid: token.owner.user_id().cloned(),
        token_type: Some("Bearer".to_owned()),
        iss: Some(state.settings().public_url.clone()),
        // Extension members, as in the JWT claims: what the grant is computed from, so
        // a verifier can narrow a cached answer when a role or membership changes.
        rol: Some(token.roles.clone()),
        prm: Some(token.permissions.clone()),
        // The networks the token may be used from, so that a caller that passed no
        // `client_ip` (a gateway) can enforce them against the client it sees.
        ip_allowlist: token.ip_allowlist.clone(),
        ..IntrospectionResponse::default()
    };
    match &active.kind {
        Presented::ApiKey => {
            body.iat = Some(token.created_at.unix_seconds());
            body.exp = token.expires_at.map(|expiry| expiry.unix_seconds());
        }
        Presented::RefreshToken { iat, exp } => {
            body.token_type = Some("refresh_token".to_owned());
            body.iat = Some(*iat);
            body.exp = Some(*exp);
        }
        Presented::Jwt(claims) => {
            body.iat = Some(claims.iat);
            body.nbf = Some(claims.nbf);
            body.aud = Some(claims.aud.clone());
            body.jti = Some(claims.jti.clone());
            body.exp = claims.exp;
            if let Some(cnf) = &claims.cnf {
                body.token_type = Some("DPoP".to_owned());
                body.cnf = Some(cnf.clone());
            }
            // Issued through a trust: `client_id` is the trust's id (the token built
            // from it), `sub` the outside caller's subject.
            if claims.trust_id.is_some() {
                body.sub = Some(claims.sub.clone());
                body.trust_id = Some(token.id);
            }
        }
    }
    body
}
