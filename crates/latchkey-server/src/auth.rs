//! Who is calling the management API, and with what authority.
//!
//! A caller presents `Authorization: Bearer <api key>` or one of the server's own JWTs
//! whose `aud` is, or contains, the server's issuer URL (a JWT minted for another
//! resource is never accepted here: whoever received it could replay it). The key's
//! format and checksum are checked before any store lookup; then the token is read by the
//! id inside the key, its secret verified in constant time, and the one usability rule
//! applied (docs/API.md, "When a token is usable"). What it grants now decides the
//! authority: `latchkey:admin` (system tenant only) or `latchkey:manage` of its own
//! tenant; a JWT's `scope` narrows that further.

use crate::cache::CachedToken;
use crate::extract::client_meta;
use crate::oauth::jwt;
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use latchkey_core::audit::AuditContext;
use latchkey_core::permission::{ADMIN, Authority, INTROSPECT, MANAGE, parse_scope};
use latchkey_core::secret::{SecretFormatError, SecretType};
use latchkey_core::token::TokenKind;
use latchkey_core::usable::{Client, narrow};
use latchkey_core::{Permission, PermissionSet};
use latchkey_core::{TenantId, TokenId, UserId};
use std::sync::Arc;

/// An authenticated management caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The credential's token id.
    pub token_id: TokenId,
    /// The user of a personal credential.
    pub user: Option<UserId>,
    /// What it may do.
    pub authority: Authority,
    /// Where the request came from.
    pub meta: crate::extract::ClientMeta,
}

impl Caller {
    /// Refuses callers without `latchkey:admin`.
    pub fn require_admin(&self) -> ApiResult<()> {
        match self.authority {
            Authority::Admin => Ok(()),
            Authority::Manager(_) => Err(ApiError::InsufficientScope(ADMIN)),
        }
    }

    /// Refuses callers that may not see `tenant`, as if it did not exist.
    pub fn require_tenant(&self, tenant: &TenantId) -> ApiResult<()> {
        if self.authority.covers(tenant) {
            Ok(())
        } else {
            Err(ApiError::NotFound(format!("tenant {tenant}")))
        }
    }

    /// The audit context of this request at `state.now()`.
    pub fn audit(&self, state: &AppState) -> AuditContext {
        AuditContext {
            actor: self.token_id.to_string(),
            actor_user: self.user.as_ref().map(ToString::to_string),
            ip: self.meta.ip.map(|ip| ip.to_string()),
            user_agent: self.meta.user_agent.clone(),
            at: state.now(),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (cached, granted, meta) = authenticate_bearer(parts, state).await?;
        let token = &cached.record.token;
        let tenant = token.owner.tenant_id().clone();
        let authority = if tenant.is_system() && granted.iter().any(Permission::is_admin) {
            Authority::Admin
        } else if granted.iter().any(Permission::is_manage) {
            Authority::Manager(tenant.clone())
        } else {
            return Err(ApiError::InsufficientScope(MANAGE));
        };
        Ok(Caller {
            token_id: token.id,
            user: token.owner.user_id().cloned(),
            authority,
            meta,
        })
    }
}

fn bearer(parts: &Parts) -> ApiResult<&str> {
    let missing = || ApiError::InvalidToken {
        description: "a bearer credential is required".to_owned(),
        challenge_error: false,
    };
    let value = parts
        .headers
        .get(header::AUTHORIZATION)
        .ok_or_else(missing)?;
    let value = value
        .to_str()
        .map_err(|_| ApiError::invalid_token("malformed Authorization header"))?;
    let (scheme, credential) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::invalid_token("malformed Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(missing());
    }
    let credential = credential.trim();
    if credential.is_empty() {
        return Err(missing());
    }
    Ok(credential)
}

/// Authenticates the bearer credential of a request (an api key or one of our JWTs) and
/// returns its token, what it grants, and who sent it.
pub async fn authenticate_bearer(
    parts: &Parts,
    state: &AppState,
) -> ApiResult<(Arc<CachedToken>, PermissionSet, crate::extract::ClientMeta)> {
    let meta = client_meta(parts, state);
    let presented = bearer(parts)?;
    let (cached, granted) = if looks_like_jwt(state, presented) {
        authenticate_access_token(state, presented, meta.ip).await?
    } else {
        let cached = authenticate_api_key(state, presented, meta.ip).await?;
        let granted = cached.effective.clone();
        (cached, granted)
    };
    Ok((cached, granted, meta))
}

fn looks_like_jwt(state: &AppState, presented: &str) -> bool {
    !presented.starts_with(state.codec().prefix().as_str()) && presented.matches('.').count() == 2
}

/// Checks one of the server's own JWTs: signature by a published key, expiry, an
/// audience that is or contains the issuer, the deny list, and the usability of its
/// token. What it grants is its `scope` narrowed to what its token grants now.
async fn authenticate_access_token(
    state: &AppState,
    presented: &str,
    ip: Option<std::net::IpAddr>,
) -> ApiResult<(Arc<CachedToken>, PermissionSet)> {
    let keys = state.keyring().keys();
    let issuer = &state.settings().public_url;
    let claims =
        jwt::verify(&keys, issuer, presented, state.now().unix_seconds()).map_err(|rejected| {
            match rejected {
                jwt::Rejected::Expired => ApiError::invalid_token("credential expired"),
                jwt::Rejected::Invalid => ApiError::invalid_token("invalid credential"),
            }
        })?;
    if !claims.aud.contains(issuer) {
        return Err(ApiError::invalid_token(
            "the credential's audience is not this server",
        ));
    }
    if state.keyring().is_jti_revoked(&claims.jti) {
        return Err(ApiError::invalid_token("credential revoked"));
    }
    let id = TokenId::parse(&claims.client_id)
        .map_err(|_| ApiError::invalid_token("invalid credential"))?;
    let cached = state
        .token(id)
        .await?
        .ok_or_else(|| ApiError::invalid_token("invalid credential"))?;
    if claims.is_long_lived() != (cached.record.token.kind == TokenKind::Jwt) {
        return Err(ApiError::invalid_token("invalid credential"));
    }
    let grant = cached
        .usable(state.now(), client(ip))
        .map_err(|refusal| ApiError::invalid_token(refusal.to_string()))?;
    let scope =
        parse_scope(&claims.scope).map_err(|_| ApiError::invalid_token("invalid credential"))?;
    let granted = narrow(&scope, grant);
    Ok((cached, granted))
}

/// The client a usability check judges: the request's address, as far as it is known.
pub fn client(ip: Option<std::net::IpAddr>) -> Client {
    ip.map_or(Client::Unknown, Client::Address)
}

/// Checks an api key end to end and returns its token; its grant is `effective`.
pub async fn authenticate_api_key(
    state: &AppState,
    presented: &str,
    ip: Option<std::net::IpAddr>,
) -> ApiResult<Arc<CachedToken>> {
    let parsed = state
        .codec()
        .parse(presented)
        .map_err(|error| match error {
            SecretFormatError::Malformed => ApiError::invalid_token("malformed credential"),
            SecretFormatError::ChecksumMismatch => {
                ApiError::invalid_token("credential checksum mismatch")
            }
        })?;
    let (SecretType::ApiKey, Some(id)) = (parsed.kind, parsed.id) else {
        return Err(ApiError::invalid_token(
            "the management API takes an api key",
        ));
    };
    let refused = || ApiError::invalid_token("invalid credential");
    let cached = state.token(id).await?.ok_or_else(refused)?;
    let record = &cached.record;
    let verified = record.token.kind == TokenKind::ApiKey
        && record
            .secret
            .as_ref()
            .is_some_and(|stored| state.codec().verify(&parsed, stored));
    if !verified {
        return Err(refused());
    }
    cached
        .usable(state.now(), client(ip))
        .map_err(|refusal| ApiError::invalid_token(refusal.to_string()))?;
    Ok(cached)
}

/// A gateway or resource server: a system-tenant credential holding
/// `latchkey:introspect` (or `latchkey:admin`). Reads the revocation feed and sends usage.
pub struct ServiceCaller {
    /// The credential's token id.
    pub token_id: TokenId,
    /// Where the request came from.
    pub meta: crate::extract::ClientMeta,
}

impl FromRequestParts<AppState> for ServiceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let (cached, granted, meta) = authenticate_bearer(parts, state).await?;
        let allowed = cached.record.token.owner.tenant_id().is_system()
            && granted.iter().any(|p| p.is_introspect() || p.is_admin());
        if !allowed {
            return Err(ApiError::InsufficientScope(INTROSPECT));
        }
        Ok(Self {
            token_id: cached.record.token.id,
            meta,
        })
    }
}
