//! Introspection (RFC 7662, docs/API.md, "Introspection"): what a presented credential
//! — an api key, a refresh token or one of our JWTs — is and grants now, or nothing when
//! it is not active. The HTTP layer writes the answer.

use crate::service::cache::CachedToken;
use crate::service::error::Result;
use crate::service::jwt;
use crate::service::state::AppState;
use latchkey_core::PermissionSet;
use latchkey_core::permission::parse_scope;
use latchkey_core::secret::SecretType;
use latchkey_core::token::TokenKind;
use latchkey_core::usable::{Client, narrow};
use latchkey_wire::Claims;
use std::sync::Arc;

/// An active credential.
pub struct Active {
    pub token: Arc<CachedToken>,
    /// What it grants now.
    pub scope: PermissionSet,
    /// Which credential it is.
    pub kind: Presented,
}

impl Active {
    /// True for an access token issued through a trust.
    pub fn is_trust(&self) -> bool {
        matches!(&self.kind, Presented::Jwt(claims) if claims.trust_id.is_some())
    }
}

/// The kind of an active credential, with what its answer says of it alone.
pub enum Presented {
    /// An api key: created at `iat`, expiring at its token's expiry.
    ApiKey,
    /// A refresh token, issued at `iat`, whose family expires at `exp`.
    RefreshToken {
        /// Issued at (Unix seconds).
        iat: i64,
        /// The family's expiry (Unix seconds).
        exp: i64,
    },
    /// One of our JWTs, with its claims.
    Jwt(Arc<Claims>),
}

/// What `presented` is and grants now, judged for `client`; `None` when not active.
/// When `client` is left to the caller, its tenant's network rules judge `caller`, the
/// caller's own address (docs/API.md, "Where tokens may be used from").
pub async fn introspect(
    state: &AppState,
    presented: &str,
    client: Client,
    caller: Client,
) -> Result<Option<Active>> {
    let prefix = format!("{}_", state.codec().prefix().as_str());
    let active = if presented.starts_with(&prefix) {
        inspect_secret(state, presented, client).await?
    } else {
        inspect_jwt(state, presented, client).await?
    };
    let active = active
        .filter(|active| client != Client::JudgedByCaller || active.token.admits(caller).is_ok());
    // An active answer is a use of the token (docs/API.md, "Tenant policies"); a trust
    // is not a token and has no `last_used_at`.
    if let Some(active) = active.as_ref().filter(|active| !active.is_trust()) {
        let ip = match client {
            Client::Address(ip) => Some(ip),
            Client::Unknown | Client::JudgedByCaller => None,
        };
        state.used(&active.token, ip);
    }
    Ok(active)
}

async fn inspect_secret(
    state: &AppState,
    presented: &str,
    client: Client,
) -> Result<Option<Active>> {
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
            let scope = grant.clone();
            Ok(Some(Active {
                token,
                scope,
                kind: Presented::ApiKey,
            }))
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
            let scope = narrow(&family.scope, grant);
            Ok(Some(Active {
                token,
                scope,
                kind: Presented::RefreshToken {
                    iat: refresh.created_at.unix_seconds(),
                    exp: family.expires_at.unix_seconds(),
                },
            }))
        }
        SecretType::ClientSecret => Ok(None),
    }
}

async fn inspect_jwt(state: &AppState, presented: &str, client: Client) -> Result<Option<Active>> {
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
            let claims = Arc::new(claims);
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
    let token = match &claims.trust_id {
        None => state.token(id).await?,
        // Issued through a trust (docs/API.md, "Trusts"): judged by the trust's grant,
        // which is a tenant token's with the trust's id (`Trust::as_token`). The server
        // writes `trust_id` equal to `client_id`, on access tokens only.
        Some(trust_id) if *trust_id == claims.client_id && !claims.is_long_lived() => {
            state.trust_token(id).await?
        }
        Some(_) => return Ok(None),
    };
    let Some(token) = token else {
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
    let scope = narrow(&scope, grant);
    Ok(Some(Active {
        token,
        scope,
        kind: Presented::Jwt(claims),
    }))
}
