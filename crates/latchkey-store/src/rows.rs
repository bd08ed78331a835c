//! Decoding rows into domain values. A stored value that fails its domain check is a
//! corrupt database, reported as a decode error, never a panic.

use crate::error::corrupt;
use latchkey_core::cidr::IpNet;
use latchkey_core::secret::StoredSecret;
use latchkey_core::store::{Membership, Tenant};
use latchkey_core::token::{
    ClientKey, Owner, RevokedReason, Token, TokenKind, TokenName, TokenRecord,
};
use latchkey_core::{Permission, RoleName, TenantId, Timestamp, TokenId, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

pub(crate) const TOKEN_COLUMNS: &str = "id, kind, tenant_id, user_id, name, roles, permissions, \
    created_by, created_at, expires_at, revoked_at, last_used_at, last_used_ip, ip_allowlist, \
    access_token_ttl_seconds, refresh_tokens, secret_salt, secret_hash, secret_hint, signing_kid, \
    revoked_reason, rolled_from, rolled_to, revokes_at, secret_lookup, public_key";

pub(crate) fn tenant_id(text: &str) -> Result<TenantId, sqlx::Error> {
    TenantId::parse(text).map_err(|e| corrupt("tenant id", e))
}

pub(crate) fn user_id(text: &str) -> Result<UserId, sqlx::Error> {
    UserId::parse(text).map_err(|e| corrupt("user id", e))
}

pub(crate) fn role(text: &str) -> Result<RoleName, sqlx::Error> {
    RoleName::parse(text).map_err(|e| corrupt("role", e))
}

pub(crate) fn permission(text: &str) -> Result<Permission, sqlx::Error> {
    Permission::parse(text).map_err(|e| corrupt("permission", e))
}

fn timestamp(millis: Option<i64>) -> Option<Timestamp> {
    millis.map(Timestamp::from_millis)
}

/// Joins names with single spaces (the charsets exclude spaces).
pub(crate) fn join<T: AsRef<str>>(items: impl IntoIterator<Item = T>) -> String {
    items
        .into_iter()
        .map(|item| item.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn split<T>(
    text: &str,
    parse: impl Fn(&str) -> Result<T, sqlx::Error>,
) -> Result<Vec<T>, sqlx::Error> {
    text.split(' ')
        .filter(|s| !s.is_empty())
        .map(parse)
        .collect()
}

pub(crate) fn tenant(row: &AnyRow) -> Result<Tenant, sqlx::Error> {
    Ok(Tenant {
        id: tenant_id(row.try_get("id")?)?,
        name: row.try_get("name")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
    })
}

pub(crate) fn token_record(row: &AnyRow) -> Result<TokenRecord, sqlx::Error> {
    let id_text: String = row.try_get("id")?;
    let id = TokenId::parse(&id_text).map_err(|e| corrupt("token id", e))?;
    let kind_text: String = row.try_get("kind")?;
    let kind = TokenKind::parse(&kind_text).ok_or_else(|| corrupt("token kind", &kind_text))?;
    let tenant = tenant_id(row.try_get("tenant_id")?)?;
    let owner = match row.try_get::<Option<String>, _>("user_id")? {
        Some(user) => Owner::User {
            tenant_id: tenant,
            user_id: user_id(&user)?,
        },
        None => Owner::Tenant { tenant_id: tenant },
    };
    let name = TokenName::parse(row.try_get("name")?).map_err(|e| corrupt("token name", e))?;
    let allowlist = split(row.try_get("ip_allowlist")?, |net| {
        IpNet::parse(net).map_err(|e| corrupt("allowlist", e))
    })?;
    let ttl: i64 = row.try_get("access_token_ttl_seconds")?;
    let linked = |column: &str| -> Result<Option<TokenId>, sqlx::Error> {
        row.try_get::<Option<String>, _>(column)?
            .map(|text| TokenId::parse(&text).map_err(|e| corrupt("token id", e)))
            .transpose()
    };
    let revoked_at = timestamp(row.try_get("revoked_at")?);
    // A revocation written by a server older than migration 0008 names no reason: it was
    // a plain one.
    let revoked_reason = row
        .try_get::<Option<String>, _>("revoked_reason")?
        .map(|text| RevokedReason::parse(&text).ok_or_else(|| corrupt("revoked reason", &text)))
        .transpose()?
        .or(revoked_at.map(|_| RevokedReason::Revoked));
    let created_by = row
        .try_get::<Option<String>, _>("created_by")?
        .map(|u| user_id(&u))
        .transpose()?;
    let token = Token {
        id,
        kind,
        owner,
        name,
        roles: split(row.try_get("roles")?, role)?,
        permissions: split(row.try_get("permissions")?, permission)?,
        created_by,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        expires_at: timestamp(row.try_get("expires_at")?),
        revoked_at,
        revoked_reason,
        rolled_from: linked("rolled_from")?,
        rolled_to: linked("rolled_to")?,
        revokes_at: timestamp(row.try_get("revokes_at")?),
        last_used_at: timestamp(row.try_get("last_used_at")?),
        last_used_ip: row.try_get("last_used_ip")?,
        ip_allowlist: allowlist,
        access_token_ttl_seconds: u32::try_from(ttl).map_err(|e| corrupt("ttl", e))?,
        refresh_tokens: row.try_get::<i64, _>("refresh_tokens")? != 0,
        secret_hint: row.try_get("secret_hint")?,
        public_key: row
            .try_get::<Option<String>, _>("public_key")?
            .map(|text| {
                ClientKey::parse_stored(&text)
                    .ok_or_else(|| corrupt("public key", "not a public JWK"))
            })
            .transpose()?,
    };
    let salt: Option<Vec<u8>> = row.try_get("secret_salt")?;
    let hash: Option<Vec<u8>> = row.try_get("secret_hash")?;
    let secret = match (salt, hash) {
        (Some(salt), Some(hash)) => Some(StoredSecret { salt, hash }),
        _ => None,
    };
    Ok(TokenRecord {
        token,
        secret,
        signing_kid: row.try_get("signing_kid")?,
        secret_lookup: row.try_get("secret_lookup")?,
    })
}

pub(crate) fn membership(
    tenant: TenantId,
    user: UserId,
    roles: Vec<RoleName>,
    permissions: Vec<Permission>,
) -> Membership {
    Membership {
        tenant_id: tenant,
        user_id: user,
        roles,
        permissions,
    }
}
