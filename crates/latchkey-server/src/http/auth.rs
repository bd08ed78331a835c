//! Who is calling the management API, and with what authority.
//!
//! A caller presents `Authorization: Bearer <api key>` or one of the server's own JWTs
//! whose `aud` is, or contains, the server's issuer URL; `service::credentials` checks
//! it and applies the one usability rule (docs/API.md, "When a token is usable"). What
//! it grants now decides the authority: `latchkey:admin` (system tenant only) or
//! `latchkey:manage` of its own tenant; a JWT's `scope` narrows that further.

use crate::http::extract::client_meta;
use crate::http::problem::{ApiError, ApiResult};
use crate::service::cache::CachedToken;
use crate::service::client::ClientMeta;
use crate::service::credentials;
use crate::service::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use latchkey_core::audit::AuditContext;
use latchkey_core::bearer::{BearerError, Scheme};
use latchkey_core::permission::{ADMIN, Authority, INTROSPECT, MANAGE};
use latchkey_core::{Permission, PermissionSet};
use latchkey_core::{TenantId, TokenId, UserId};
use std::sync::Arc;

/// An authenticated management caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub token_id: TokenId,
    /// The user of a personal credential.
    pub user: Option<UserId>,
    /// What it may do.
    pub authority: Authority,
    /// Where the request came from.
    pub meta: ClientMeta,
    /// The console session acting, when the console made this call (docs/CONSOLE.md):
    /// its audit events name `console:<session id>` as their actor.
    pub console_session: Option<TokenId>,
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
            actor: match self.console_session {
                Some(session) => format!("console:{session}"),
                None => self.token_id.to_string(),
            },
            actor_user: self.user.as_ref().map(ToString::to_string),
            ip: self.meta.ip.map(|ip| ip.to_string()),
            user_agent: self.meta.agent(),
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
        let (cached, granted, meta) = authenticate(parts, state).await?;
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
            console_session: None,
        })
    }
}

/// The credential of an `Authorization: Bearer` header, read by core's one parser
/// (`latchkey_core::bearer`, RFC 6750 §2.1).
pub fn bearer(headers: &HeaderMap) -> ApiResult<&str> {
    let values = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes);
    latchkey_core::bearer::bearer(values).map_err(unusable)
}

/// The answer to a request whose `Authorization` header carries no usable credential.
fn unusable(error: BearerError) -> ApiError {
    match error {
        BearerError::Missing => ApiError::InvalidToken {
            description: "a bearer credential is required".to_owned(),
            challenge_error: false,
        },
        BearerError::Malformed => ApiError::invalid_token("malformed Authorization header"),
    }
}

/// Authenticates the bearer credential of a request (an api key or one of our JWTs) and
/// returns its token, what it grants, and who sent it.
async fn authenticate(
    parts: &Parts,
    state: &AppState,
) -> ApiResult<(Arc<CachedToken>, PermissionSet, ClientMeta)> {
    let meta = client_meta(parts, state);
    let values = parts
        .headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .map(HeaderValue::as_bytes);
    let (scheme, presented) = latchkey_core::bearer::credential(values).map_err(unusable)?;
    let dpop = match scheme {
        Scheme::Bearer => None,
        Scheme::Dpop => {
            let proofs = parts
                .headers
                .get_all("dpop")
                .iter()
                .map(|value| value.to_str().ok());
            let proof = latchkey_verify::dpop::proof_header(proofs)
                .map_err(|error| ApiError::invalid_token(format!("invalid DPoP proof: {error}")))?;
            Some(credentials::DpopUse {
                method: parts.method.as_str(),
                path: parts.uri.path(),
                proof,
            })
        }
    };
    let (cached, granted) = credentials::authenticate_bearer(state, presented, &meta, dpop).await?;
    Ok((cached, granted, meta))
}

/// A gateway or resource server: a system-tenant credential holding
/// `latchkey:introspect` (or `latchkey:admin`). Reads the revocation feed and sends usage.
pub struct ServiceCaller {
    pub token_id: TokenId,
    /// Where the request came from.
    pub meta: ClientMeta,
}

impl FromRequestParts<AppState> for ServiceCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Self> {
        let (cached, granted, meta) = authenticate(parts, state).await?;
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
