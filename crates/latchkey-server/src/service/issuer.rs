//! Issuing JWTs: their claims (docs/API.md, "Access tokens"), their audience
//! ("Audiences"), signing with the current key, and the refresh tokens beside them.

use crate::service::error::{Error, Result};
use crate::service::jwt;
use crate::service::state::AppState;
use latchkey_core::jwt::{Audience, TokenOwnerType};
use latchkey_core::permission::format_scope;
use latchkey_core::secret::{Secret, SecretType};
use latchkey_core::store::RefreshRecord;
use latchkey_core::token::Token;
use latchkey_core::{Permission, PermissionSet, Timestamp, TokenId};
use latchkey_wire::{Claims, Confirmation, JwtKind};

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
    pub jwt: String,
    pub jti: String,
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
) -> Result<Claims> {
    let now = state.now();
    let jti = TokenId::generate(state.rng())
        .map_err(Error::internal)?
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
        cnf: None,
        trust_id: None,
    })
}

/// Signs `claims` with the current key; returns the JWT and the key id.
pub fn sign_with_current_key(state: &AppState, claims: &Claims) -> Result<(String, String)> {
    let keys = state.keyring().keys();
    let key = keys
        .current()
        .ok_or_else(|| Error::internal("no signing key"))?;
    Ok((jwt::sign(key, claims)?, key.kid.clone()))
}

/// Signs an access token for `token` with `scope`, for `resource` (or the default
/// audience). It lives for the token's access-token TTL, and never past the token. With
/// `jkt` it is bound to the DPoP key of that thumbprint (`cnf.jkt`, docs/API.md, "DPoP").
pub fn issue_bound(
    state: &AppState,
    token: &Token,
    scope: &PermissionSet,
    resource: Option<&str>,
    jkt: Option<&str>,
) -> Result<Issued> {
    let now = state.now();
    let mut expires_at = now.plus_seconds(i64::from(token.access_token_ttl_seconds));
    if let Some(token_expiry) = token.expires_at {
        expires_at = expires_at.min(token_expiry);
    }
    let audience = audience_for(state, resource, scope);
    let mut claims = claims_for(state, token, scope, audience, Some(expires_at), false)?;
    claims.cnf = jkt.map(|jkt| Confirmation {
        jkt: jkt.to_owned(),
    });
    let (jwt, _) = sign_with_current_key(state, &claims)?;
    Ok(Issued {
        jwt,
        jti: claims.jti,
        expires_at,
        expires_in: (expires_at.unix_seconds() - now.unix_seconds()).max(0),
    })
}

/// A new refresh token of `family`, issued beside `issued`: its secret, shown once, and
/// the record the store keeps.
pub fn new_refresh(
    state: &AppState,
    family: TokenId,
    issued: &Issued,
) -> Result<(Secret, RefreshRecord)> {
    let id = TokenId::generate(state.rng()).map_err(Error::internal)?;
    let secret = state
        .codec()
        .generate(SecretType::RefreshToken, id, state.rng())
        .map_err(Error::internal)?;
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

/// Picks up `jti`s the store just put on the deny list, and wakes the feed's followers.
pub async fn reload_deny_list(state: &AppState) {
    state.revocations().wake();
    if let Err(error) = state.keyring().reload(state.store(), state.now()).await {
        tracing::warn!(?error, "reloading the deny list failed");
    }
}
