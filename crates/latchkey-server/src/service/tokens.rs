//! Making a token (docs/API.md, "Tokens"): its id, its secret (shown once, stored
//! peppered and hashed), and for a long-lived JWT the JWT itself, signed with what the
//! token grants at creation. The caller has checked the values and the grant. Rolling a
//! token (docs/API.md, "Rolling a token") makes its successor the same way.

use crate::service::error::{Error, Result};
use crate::service::issuer;
use crate::service::policy;
use crate::service::state::AppState;
use latchkey_core::audit::AuditContext;
use latchkey_core::cidr::IpNet;
use latchkey_core::secret::{Secret, SecretType};
use latchkey_core::store::RollOutcome;
use latchkey_core::token::{ClientKey, Owner, Token, TokenKind, TokenName, TokenRecord};
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
    /// The token it succeeds, when it is made by a roll.
    pub rolled_from: Option<TokenId>,
    /// The public key of a `private_key_jwt` client, which gets no secret.
    pub public_key: Option<ClientKey>,
}

impl NewToken {
    /// The successor of `old`: the identical grant under the same name, with
    /// `expires_at` (the old token's unless given) and `effective`, what `old` grants now.
    pub fn successor(old: &Token, expires_at: Option<Timestamp>, effective: PermissionSet) -> Self {
        Self {
            kind: old.kind,
            owner: old.owner.clone(),
            name: old.name.clone(),
            roles: old.roles.clone(),
            permissions: old.permissions.clone(),
            created_by: old.created_by.clone(),
            expires_at: expires_at.or(old.expires_at),
            ip_allowlist: old.ip_allowlist.clone(),
            access_token_ttl_seconds: Some(old.access_token_ttl_seconds),
            refresh_tokens: old.refresh_tokens,
            effective,
            rolled_from: Some(old.id),
            public_key: old.public_key.clone(),
        }
    }
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

/// Checks `new` against its tenant's policy, generates the id and secret, signs a
/// long-lived JWT, and stores the token with its audit event (`ctx`).
pub async fn mint(state: &AppState, ctx: &AuditContext, mut new: NewToken) -> Result<Minted> {
    policy::admit(state, &mut new, ctx.at).await?;
    let minted = make(state, ctx, new)?;
    state.store().create_token(&minted.record, ctx).await?;
    Ok(minted)
}

/// The result of [`roll`].
pub enum Rolled {
    /// The successor, stored.
    Made(Box<Minted>),
    /// The store refused the roll, and wrote nothing.
    Refused(RollOutcome),
}

/// Makes `new` (see [`NewToken::successor`]) and stores it as the successor of `old`,
/// which is revoked at `revokes_at`, in one transaction with their audit events.
pub async fn roll(
    state: &AppState,
    ctx: &AuditContext,
    old: TokenId,
    new: NewToken,
    revokes_at: Timestamp,
) -> Result<Rolled> {
    let mut new = new;
    policy::admit(state, &mut new, ctx.at).await?;
    let minted = make(state, ctx, new)?;
    let outcome = state
        .store()
        .roll_token(old, &minted.record, revokes_at, ctx)
        .await?;
    Ok(match outcome {
        RollOutcome::Rolled(_) => Rolled::Made(Box::new(minted)),
        refused => Rolled::Refused(refused),
    })
}

/// Generates the id and secret and signs a long-lived JWT; stores nothing.
fn make(state: &AppState, ctx: &AuditContext, new: NewToken) -> Result<Minted> {
    let id = TokenId::generate(state.rng()).map_err(Error::internal)?;
    let secret_type = match new.kind {
        TokenKind::ClientCredentials if new.public_key.is_some() => None,
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
        revoked_reason: None,
        rolled_from: new.rolled_from,
        rolled_to: None,
        revokes_at: None,
        last_used_at: None,
        last_used_ip: None,
        ip_allowlist: new.ip_allowlist,
        access_token_ttl_seconds: new
            .access_token_ttl_seconds
            .unwrap_or(state.settings().default_access_token_ttl_seconds),
        refresh_tokens: new.refresh_tokens,
        secret_hint: issued.as_ref().map(|i| i.secret.hint()),
        public_key: new.public_key,
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
    let (secret, kept) = issued.map(|i| (i.secret, (i.stored, i.lookup))).unzip();
    let (stored, lookup) = kept.unzip();
    let (jwt, signing_kid) = long_lived.unzip();
    let record = TokenRecord {
        token,
        secret: stored,
        signing_kid,
        secret_lookup: lookup,
    };
    Ok(Minted {
        record,
        secret,
        jwt,
    })
}
