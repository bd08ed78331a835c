//! Who is calling the management API, and with what authority.
//!
//! A caller presents `Authorization: Bearer <api key>` or one of the server's own access
//! JWTs (whose `scope` then bounds what it may do). The key's format and checksum are
//! checked before any store lookup; then the token is read by the id inside the key, its
//! secret verified in constant time, and its state (revoked, expired, allowlist) checked.
//! Its effective permissions decide the authority: `latchkey:admin` (system tenant only)
//! or `latchkey:manage` of its own tenant.

use crate::cache::CachedToken;
use crate::extract::client_meta;
use crate::oauth::jwt;
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use latchkey_core::PermissionSet;
use latchkey_core::audit::AuditContext;
use latchkey_core::cidr;
use latchkey_core::permission::{ADMIN, Authority, INTROSPECT, MANAGE, parse_scope};
use latchkey_core::secret::{SecretFormatError, SecretType};
use latchkey_core::token::TokenKind;
use latchkey_core::{TenantId, TokenId, UserId};
use std::sync::Arc;

/// An authenticated management caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The credential's token id.
    pub token_id: TokenId,
    /// The credential's tenant.
    pub tenant: TenantId,
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
        let effective = &granted;
        let tenant = token.owner.tenant_id().clone();
        let authority = if tenant.is_system() && effective.iter().any(|p| p.as_str() == ADMIN) {
            Authority::Admin
        } else if effective.iter().any(|p| p.as_str() == MANAGE) {
            Authority::Manager(tenant.clone())
        } else {
            return Err(ApiError::InsufficientScope(MANAGE));
        };
        Ok(Caller {
            token_id: token.id,
            user: token.owner.user_id().cloned(),
            tenant,
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

/// Checks one of the server's own access JWTs (or long-lived JWTs): signature by a
/// published key, expiry, the deny list, and that its token is still active. What it
/// grants is its `scope`, never more than its token grants now.
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
    if state.keyring().is_jti_revoked(&claims.jti) {
        return Err(ApiError::invalid_token("credential revoked"));
    }
    let id = TokenId::parse(&claims.client_id)
        .map_err(|_| ApiError::invalid_token("invalid credential"))?;
    let cached = state
        .token(id)
        .await?
        .ok_or_else(|| ApiError::invalid_token("invalid credential"))?;
    let token = &cached.record.token;
    if token.revoked_at.is_some() {
        return Err(ApiError::invalid_token("credential revoked"));
    }
    if !token.is_active(state.now()) || !cached.member {
        return Err(ApiError::invalid_token("credential expired"));
    }
    if let Some(ip) = ip
        && !cidr::allows(&token.ip_allowlist, ip)
    {
        return Err(ApiError::invalid_token(
            "credential not allowed from this address",
        ));
    }
    let scope =
        parse_scope(&claims.scope).map_err(|_| ApiError::invalid_token("invalid credential"))?;
    let granted = scope.intersection(&cached.effective).cloned().collect();
    Ok((cached, granted))
}

/// Checks an api key end to end and returns its token with what it grants.
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
    let token = &record.token;
    if token.revoked_at.is_some() {
        return Err(ApiError::invalid_token("credential revoked"));
    }
    if !token.is_active(state.now()) {
        return Err(ApiError::invalid_token("credential expired"));
    }
    if let Some(ip) = ip
        && !cidr::allows(&token.ip_allowlist, ip)
    {
        return Err(ApiError::invalid_token(
            "credential not allowed from this address",
        ));
    }
    if !cached.member {
        return Err(ApiError::invalid_token(
            "the credential's user has left its tenant",
        ));
    }
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
            && granted
                .iter()
                .any(|p| p.as_str() == INTROSPECT || p.as_str() == ADMIN);
        if !allowed {
            return Err(ApiError::InsufficientScope(INTROSPECT));
        }
        Ok(Self {
            token_id: cached.record.token.id,
            meta,
        })
    }
}
