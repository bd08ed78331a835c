//! `POST /oauth/token`: `client_credentials` and `refresh_token` grants.

use super::client::{Form, authenticate, read_form};
use super::error::{OAuthError, OAuthResult};
use super::jwt;
use crate::audit::Exchange;
use crate::cache::CachedToken;
use crate::extract::{client_addr, client_meta};
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::audit::{AuditAction, AuditContext, AuditEvent};
use latchkey_core::jwt::{Audience, TokenOwnerType};
use latchkey_core::permission::{format_scope, parse_scope};
use latchkey_core::secret::{Secret, SecretType};
use latchkey_core::store::{RefreshFamily, RefreshOutcome, RefreshRecord};
use latchkey_core::token::Token;
use latchkey_core::{Permission, PermissionSet, Timestamp, TokenId};
use latchkey_wire::{Claims, JwtKind};
use serde_json::{Value, json};
use std::sync::Arc;

/// The token endpoint.
pub async fn token(State(state): State<AppState>, request: Request) -> Response {
    match grant(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// Anything but POST.
pub async fn wrong_method() -> OAuthError {
    OAuthError::method_not_allowed()
}

async fn grant(state: &AppState, request: Request) -> OAuthResult<Response> {
    let (parts, form) = read_form(request).await?;
    let grant_type = form.require("grant_type")?;
    match grant_type {
        "client_credentials" => client_credentials(state, &parts, &form).await,
        "refresh_token" => refresh(state, &parts, &form).await,
        other => Err(OAuthError::unsupported_grant_type(
            &other.chars().take(64).collect::<String>(),
        )),
    }
}

/// The audit context of a client's request.
pub fn client_context(state: &AppState, parts: &Parts, client: &Token) -> AuditContext {
    let meta = client_meta(parts, state);
    AuditContext {
        actor: client.id.to_string(),
        actor_user: client.owner.user_id().map(ToString::to_string),
        ip: meta.ip.map(|ip| ip.to_string()),
        user_agent: meta.user_agent,
        at: state.now(),
    }
}

/// Narrows `granted` to the `scope` parameter, which may not ask for more.
fn narrow(form: &Form, granted: &PermissionSet) -> OAuthResult<PermissionSet> {
    let Some(text) = form.get("scope")? else {
        return Ok(granted.clone());
    };
    let requested =
        parse_scope(text).map_err(|e| OAuthError::invalid_scope(format!("scope {e}")))?;
    if let Some(extra) = requested.difference(granted).next() {
        return Err(OAuthError::invalid_scope(format!(
            "scope {extra} is not granted to this client"
        )));
    }
    Ok(requested)
}

/// The `resource` parameter (RFC 8707): one of the configured audiences, or none.
fn resource<'f>(state: &AppState, form: &'f Form) -> OAuthResult<Option<&'f str>> {
    match form.get("resource")? {
        None => Ok(None),
        Some(resource) if state.settings().audiences.iter().any(|a| a == resource) => {
            Ok(Some(resource))
        }
        Some(_) => Err(OAuthError::invalid_target(
            "resource is not an audience of this server",
        )),
    }
}

/// The `aud` of a JWT (docs/API.md, "Audiences"): exactly the `resource` asked for; else
/// the default audience, with the issuer too when `scope` holds a built-in permission,
/// so that a management credential keeps working where the default audience is an API.
pub fn audience_for(state: &AppState, resource: Option<&str>, scope: &PermissionSet) -> Audience {
    let settings = state.settings();
    match resource {
        Some(resource) => Audience::from(resource),
        None => Audience::new(
            &settings.default_audience,
            &settings.public_url,
            scope.iter().any(Permission::is_builtin),
        ),
    }
}

/// A signed access token and what the response says of it.
pub struct Issued {
    /// The JWT.
    pub jwt: String,
    /// Its `jti`.
    pub jti: String,
    /// Its expiry.
    pub expires_at: Timestamp,
    /// Seconds until then.
    pub expires_in: i64,
}

/// The claims of a JWT for `token` (docs/API.md, "Access tokens"). A long-lived JWT carries
/// `knd: jwt` and the token's own expiry, or none.
pub fn claims_for(
    state: &AppState,
    token: &Token,
    scope: &PermissionSet,
    audience: Audience,
    expires_at: Option<Timestamp>,
    long_lived: bool,
) -> ApiResult<Claims> {
    let now = state.now();
    let jti = TokenId::generate(state.rng())
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .to_string();
    let (tkt, uid) = match token.owner.user_id() {
        Some(user) => (TokenOwnerType::User, Some(user.to_string())),
        None => (TokenOwnerType::Tenant, None),
    };
    Ok(Claims {
        iss: state.settings().public_url.clone(),
        sub: token.id.to_string(),
        aud: audience,
        exp: expires_at.map(Timestamp::unix_seconds),
        iat: now.unix_seconds(),
        nbf: now.unix_seconds(),
        jti,
        client_id: token.id.to_string(),
        scope: format_scope(scope),
        tid: token.owner.tenant_id().to_string(),
        uid,
        tkt,
        knd: long_lived.then_some(JwtKind::Jwt),
        rol: Some(token.roles.iter().map(ToString::to_string).collect()),
        prm: Some(token.permissions.iter().map(ToString::to_string).collect()),
        ipa: token.ip_allowlist.iter().map(ToString::to_string).collect(),
    })
}

/// Signs `claims` with the current key; returns the JWT and the key id.
pub fn sign_with_current_key(state: &AppState, claims: &Claims) -> ApiResult<(String, String)> {
    let keys = state.keyring().keys();
    let key = keys
        .current()
        .ok_or_else(|| ApiError::Internal("no signing key".to_owned()))?;
    Ok((jwt::sign(key, claims)?, key.kid.clone()))
}

/// Signs an access token for `token` with `scope`, for `resource` (or the default
/// audience).
pub fn issue(
    state: &AppState,
    token: &Token,
    scope: &PermissionSet,
    resource: Option<&str>,
) -> OAuthResult<Issued> {
    let now = state.now();
    let mut expires_at = now.plus_seconds(i64::from(token.access_token_ttl_seconds));
    if let Some(token_expiry) = token.expires_at {
        expires_at = expires_at.min(token_expiry);
    }
    let audience = audience_for(state, resource, scope);
    let claims = claims_for(state, token, scope, audience, Some(expires_at), false)?;
    let (jwt, _) = sign_with_current_key(state, &claims)?;
    Ok(Issued {
        jwt,
        jti: claims.jti,
        expires_at,
        expires_in: (expires_at.unix_seconds() - now.unix_seconds()).max(0),
    })
}

fn respond(issued: &Issued, scope: &PermissionSet, refresh: Option<Secret>) -> Response {
    let mut body = json!({
        "access_token": issued.jwt,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": format_scope(scope),
    });
    if let (Some(secret), Value::Object(map)) = (refresh, &mut body) {
        map.insert("refresh_token".into(), json!(secret.expose()));
    }
    let mut response = axum::Json(body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

fn new_refresh(
    state: &AppState,
    family: TokenId,
    issued: &Issued,
) -> OAuthResult<(Secret, RefreshRecord)> {
    let id = TokenId::generate(state.rng()).map_err(OAuthError::internal)?;
    let secret = state
        .codec()
        .generate(SecretType::RefreshToken, id, state.rng())
        .map_err(OAuthError::internal)?;
    let record = RefreshRecord {
        id,
        family_id: family,
        secret: secret.stored,
        jti: issued.jti.clone(),
        access_expires_at: issued.expires_at,
        created_at: state.now(),
        used_at: None,
    };
    Ok((secret.secret, record))
}

async fn client_credentials(state: &AppState, parts: &Parts, form: &Form) -> OAuthResult<Response> {
    let client: Arc<CachedToken> = authenticate(state, parts, form).await?;
    let token = &client.record.token;
    let scope = narrow(form, &client.effective)?;
    let resource = resource(state, form)?;
    let issued = issue(state, token, &scope, resource)?;
    let refresh = if token.refresh_tokens {
        let now = state.now();
        let family = RefreshFamily {
            id: TokenId::generate(state.rng()).map_err(OAuthError::internal)?,
            token_id: token.id,
            created_at: now,
            expires_at: now.plus_seconds(state.settings().refresh_token_lifetime_seconds),
            revoked_at: None,
            scope: format_scope(&scope),
            // Empty: no `resource` was asked for (docs/API.md, "Audiences").
            audience: resource.unwrap_or_default().to_owned(),
        };
        let (secret, first) = new_refresh(state, family.id, &issued)?;
        let ctx = client_context(state, parts, token);
        state
            .store()
            .start_refresh_family(&family, &first, state.settings().max_refresh_families, &ctx)
            .await?;
        Some((secret, family.id))
    } else {
        None
    };
    let (secret, refresh_family) = refresh.unzip();
    let response = respond(&issued, &scope, secret);
    let asked = form.get("scope").ok().flatten().is_some();
    let exchange = Exchange {
        ip: client_addr(parts, state),
        user_agent: parts.headers.get(header::USER_AGENT).cloned(),
        scope: asked.then(|| format_scope(&scope)),
        client,
        audience: resource
            .unwrap_or(&state.settings().default_audience)
            .to_owned(),
        jti: issued.jti,
        // The access token's `iat`.
        issued_at: issued.expires_at.plus_seconds(-issued.expires_in),
        expires_in: issued.expires_in,
        refresh_family,
    };
    state.audit().exchanged(exchange).await;
    Ok(response)
}

async fn refresh(state: &AppState, parts: &Parts, form: &Form) -> OAuthResult<Response> {
    let client = authenticate(state, parts, form).await?;
    let token = &client.record.token;
    let invalid = || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
    let presented = form.require("refresh_token")?;
    let parsed = state.codec().parse(presented).map_err(|_| invalid())?;
    let (SecretType::RefreshToken, Some(id)) = (parsed.kind, parsed.id) else {
        return Err(invalid());
    };
    let (record, family) = state.store().get_refresh(id).await?.ok_or_else(invalid)?;
    let genuine = state.codec().verify(&parsed, &record.secret) && family.token_id == token.id;
    if !genuine || family.revoked_at.is_some() || family.expires_at <= state.now() {
        let tenant = token.owner.tenant_id().to_string();
        let id = token.id.to_string();
        super::client::record_failure(state, parts, &id, Some(&tenant), "invalid_refresh_token")
            .await;
        return Err(invalid());
    }
    let ctx = client_context(state, parts, token);
    if record.used_at.is_some() {
        // Reuse of a rotated token: somebody else holds a copy. End the whole family.
        state.store().revoke_refresh_family(family.id, &ctx).await?;
        reload_deny_list(state).await;
        return Err(OAuthError::invalid_grant(
            "the refresh token was already used; its family is revoked",
        ));
    }
    let family_scope = parse_scope(&family.scope).map_err(OAuthError::internal)?;
    let still_granted: PermissionSet = family_scope
        .intersection(&client.effective)
        .cloned()
        .collect();
    let scope = narrow(form, &still_granted)?;
    // Families started before the empty value meant "no resource" hold the default
    // audience itself.
    let resource = Some(family.audience.as_str())
        .filter(|a| !a.is_empty() && *a != state.settings().default_audience);
    let issued = issue(state, token, &scope, resource)?;
    let (secret, next) = new_refresh(state, family.id, &issued)?;
    match state.store().rotate_refresh(record.id, &next, &ctx).await? {
        RefreshOutcome::Rotated => {
            let event = AuditEvent::new(
                AuditAction::TokenRefreshed,
                Some(token.owner.tenant_id().as_str()),
                Some(token.id.to_string()),
            )
            .with_details(json!({
                "refresh_family": family.id,
                "scope": format_scope(&scope),
                "jti": issued.jti,
                "expires_at": issued.expires_at,
            }));
            state.audit().record(ctx, event).await;
            Ok(respond(&issued, &scope, Some(secret)))
        }
        RefreshOutcome::Reused => {
            reload_deny_list(state).await;
            Err(OAuthError::invalid_grant(
                "the refresh token was already used; its family is revoked",
            ))
        }
    }
}

/// Picks up `jti`s the store just put on the deny list.
pub async fn reload_deny_list(state: &AppState) {
    state.revocations().wake();
    if let Err(error) = state.keyring().reload(state.store(), state.now()).await {
        tracing::warn!(?error, "reloading the deny list failed");
    }
}
