//! Making a token (docs/API.md, "Tokens"): its id, its secret (shown once, stored
//! peppered and hashed), and for a long-lived JWT the JWT itself, signed with what the
//! token grants at creation. The caller has checked the values and the grant.

use crate::service::error::{Error, Result};
use crate::service::issuer;
use crate::service::state::AppState;
use latchkey_core::audit::AuditContext;
use latchkey_core::cidr::IpNet;
use latchkey_core::secret::{Secret, SecretType};
use latchkey_core::token::{Owner, Token, TokenKind, TokenName, TokenRecord};
use latchkey_core::{Permission, PermissionSet, RoleName, Timestamp, TokenId, UserId};

/// A token to make: what a create request settles, checked.
pub struct NewToken {
    /// How it is presented.
    pub kind: TokenKind,
    /// Its tenant, and its user for a personal token.
    pub owner: Owner,
    /// Its display name.
    pub name: TokenName,
    /// Roles whose current permissions it carries (tenant tokens).
    pub roles: Vec<RoleName>,
    /// Permissions granted directly.
    pub permissions: Vec<Permission>,
    /// The user on whose behalf it was made.
    pub created_by: Option<UserId>,
    /// When it stops authenticating.
    pub expires_at: Option<Timestamp>,
    /// Networks it may be used from.
    pub ip_allowlist: Vec<IpNet>,
    /// Lifetime of its access tokens; the server's default when `None`.
    pub access_token_ttl_seconds: Option<u32>,
    /// Whether its exchanges also get refresh tokens.
    pub refresh_tokens: bool,
    /// What it grants now: the scope of a long-lived JWT.
    pub effective: PermissionSet,
}

/// A token just made, with what is shown once.
pub struct Minted {
    /// The stored token.
    pub record: TokenRecord,
    /// Its client secret or api key.
    pub secret: Option<Secret>,
    /// A long-lived JWT.
    pub jwt: Option<String>,
}

/// Generates the id and secret, signs a long-lived JWT, and stores the token with its
/// audit event (`ctx`).
pub async fn mint(state: &AppState, ctx: &AuditContext, new: NewToken) -> Result<Minted> {
    let id = TokenId::generate(state.rng()).map_err(Error::internal)?;
    let secret_type = match new.kind {
        TokenKind::ClientCredentials => Some(SecretType::ClientSecret),
        TokenKind::ApiKey => Some(SecretType::ApiKey),
        TokenKind::Jwt => None,
    };
    let issued = secret_type
        .map(|kind| state.codec().generate(kind, id, state.rng()))
        .transpose()
        .map_err(Error::internal)?;
    let mut token = Token {
        id,
        kind: new.kind,
        owner: new.owner,
        name: new.name,
        roles: new.roles,
        permissions: new.permissions,
        created_by: new.created_by,
        created_at: ctx.at,
        expires_at: new.expires_at,
        revoked_at: None,
        last_used_at: None,
        last_used_ip: None,
        ip_allowlist: new.ip_allowlist,
        access_token_ttl_seconds: new
            .access_token_ttl_seconds
            .unwrap_or(state.settings().default_access_token_ttl_seconds),
        refresh_tokens: new.refresh_tokens,
        secret_hint: issued.as_ref().map(|i| i.secret.hint()),
    };
    // A long-lived JWT is signed now, with what the token grants now, and the key that
    // signed it stays published while the token lives.
    let long_lived = match token.kind {
        TokenKind::Jwt => {
            let audience = issuer::audience_for(state, None, &new.effective);
            let claims = issuer::claims_for(
                state,
                &token,
                &new.effective,
                audience,
                token.expires_at,
                true,
            )?;
            Some(issuer::sign_with_current_key(state, &claims)?)
        }
        _ => None,
    };
    if let Some((jwt, _)) = &long_lived {
        token.secret_hint = Some(format!("jwt…{}", &jwt[jwt.len().saturating_sub(4)..]));
    }
    let (secret, stored) = issued.map(|i| (i.secret, i.stored)).unzip();
    let (jwt, signing_kid) = long_lived.unzip();
    let record = TokenRecord {
        token,
        secret: stored,
        signing_kid,
    };
    state.store().create_token(&record, ctx).await?;
    Ok(Minted {
        record,
        secret,
        jwt,
    })
}
