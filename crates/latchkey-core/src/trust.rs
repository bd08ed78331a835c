//! Trust relationships (docs/API.md, "Trusts"): which outside issuer's tokens a tenant
//! accepts at the JWT-bearer grant, for which subjects, and the grant they get.
//!
//! Policy: a trust is immutable like a token — only its display name changes; a
//! different issuer, subject or grant is a new trust. A subject pattern is exact, or a
//! prefix when it ends in one `*`; a `*` anywhere else, or a pattern that is only `*`,
//! is refused, so no trust accepts every subject of an issuer by accident.

use crate::ids::{FieldError, RoleName, TenantId, TokenId, UserId};
use crate::permission::Permission;
use crate::timestamp::Timestamp;
use crate::token::{Owner, Token, TokenKind, TokenName};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;

/// The longest subject pattern, issuer, audience, claim name or claim value.
pub const MAX_TEXT: usize = 512;

/// The most required claims a trust may name.
pub const MAX_CLAIMS: usize = 32;

/// Which subjects a trust accepts: one exactly, or every subject starting with a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct SubjectPattern(String);

impl SubjectPattern {
    /// Accepts 1–512 characters without control characters, with at most one `*`, at
    /// the end, after at least one other character.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        if text.is_empty() || text.len() > MAX_TEXT {
            return Err(FieldError(format!("must be 1–{MAX_TEXT} characters")));
        }
        if text.chars().any(char::is_control) {
            return Err(FieldError("must not contain control characters".to_owned()));
        }
        let stars = text.matches('*').count();
        if stars > 1 || (stars == 1 && !text.ends_with('*')) {
            return Err(FieldError(
                "may hold one `*`, only as its last character".to_owned(),
            ));
        }
        if text == "*" {
            return Err(FieldError(
                "must name a subject or a prefix before `*`; `*` alone would accept every \
                 subject of the issuer"
                    .to_owned(),
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// True when `subject` is accepted: equal to the pattern, or, for a pattern ending
    /// in `*`, starting with what comes before it. A literal `*` in `subject` has no
    /// special meaning.
    pub fn matches(&self, subject: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => subject.starts_with(prefix),
            None => subject == self.0,
        }
    }

    /// The pattern as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SubjectPattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The claims a trust requires, by name: each must be present in the assertion as a
/// string equal to the value.
pub type RequiredClaims = BTreeMap<String, String>;

/// Checks the required claims of a new trust: at most [`MAX_CLAIMS`], names and values
/// 1–512 characters, and none of the registered claims the grant checks itself.
pub fn check_required_claims(claims: &RequiredClaims) -> Result<(), FieldError> {
    if claims.len() > MAX_CLAIMS {
        return Err(FieldError(format!("must hold at most {MAX_CLAIMS} claims")));
    }
    for (name, value) in claims {
        if name.is_empty() || name.len() > MAX_TEXT || value.is_empty() || value.len() > MAX_TEXT {
            return Err(FieldError(format!(
                "names and values must be 1–{MAX_TEXT} characters"
            )));
        }
        if REGISTERED_CLAIMS.contains(&name.as_str()) {
            return Err(FieldError(format!(
                "{name} is checked by the trust itself (issuer, audience, subject, times)"
            )));
        }
    }
    Ok(())
}

/// Claims the grant checks on its own; a trust cannot require values for them.
const REGISTERED_CLAIMS: [&str; 7] = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti"];

/// A trust as stored and shown. It holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Trust {
    /// Its id; also the `client_id` of the access tokens it issues.
    pub id: TokenId,
    /// The tenant whose grant it gives.
    pub tenant_id: TenantId,
    /// Display name, the only mutable field.
    pub name: TokenName,
    /// The assertions' `iss`, exactly; also where its keys are discovered.
    pub issuer: String,
    /// The `aud` the assertions must carry.
    pub audience: String,
    /// Which `sub` it accepts.
    pub subject: SubjectPattern,
    /// Claims that must all be present and equal.
    pub claims: RequiredClaims,
    /// Roles whose current permissions it grants.
    pub roles: Vec<RoleName>,
    /// Permissions it grants directly.
    pub permissions: Vec<Permission>,
    /// Lifetime of the access tokens it issues.
    pub access_token_ttl_seconds: u32,
    /// Whether an assertion's `jti` is accepted only once (on unless switched off).
    pub replay_protection: bool,
    /// The user who stands behind it, when given.
    pub created_by: Option<UserId>,
    /// Creation time.
    pub created_at: Timestamp,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
}

impl Trust {
    /// True while it is not revoked.
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }

    /// The grant as a tenant token with the trust's id, roles, permissions and TTL: what
    /// the issuer signs access tokens for. It is never stored.
    pub fn as_token(&self) -> Token {
        Token {
            id: self.id,
            kind: TokenKind::ClientCredentials,
            owner: Owner::Tenant {
                tenant_id: self.tenant_id.clone(),
            },
            name: self.name.clone(),
            roles: self.roles.clone(),
            permissions: self.permissions.clone(),
            created_by: self.created_by.clone(),
            created_at: self.created_at,
            expires_at: None,
            revoked_at: self.revoked_at,
            revoked_reason: None,
            rolled_from: None,
            rolled_to: None,
            revokes_at: None,
            last_used_at: None,
            last_used_ip: None,
            ip_allowlist: Vec::new(),
            access_token_ttl_seconds: self.access_token_ttl_seconds,
            refresh_tokens: false,
            secret_hint: None,
            public_key: None,
        }
    }
}

/// The fields of a trust that can never change after creation.
pub const IMMUTABLE_FIELDS: [&str; 13] = [
    "id",
    "tenant_id",
    "issuer",
    "audience",
    "subject",
    "claims",
    "roles",
    "permissions",
    "access_token_ttl_seconds",
    "replay_protection",
    "created_by",
    "created_at",
    "revoked_at",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_patterns_match_only_themselves() {
        let exact = SubjectPattern::parse("repo:acme/app:ref:refs/heads/main").unwrap();
        assert!(exact.matches("repo:acme/app:ref:refs/heads/main"));
        assert!(!exact.matches("repo:acme/app:ref:refs/heads/main2"));
        assert!(!exact.matches("repo:acme/app:ref:refs/heads/mai"));
        assert!(!exact.matches(""));
    }

    #[test]
    fn a_trailing_star_matches_a_prefix_and_nothing_before_it() {
        let prefix = SubjectPattern::parse("repo:acme/app:*").unwrap();
        assert!(prefix.matches("repo:acme/app:ref:refs/heads/main"));
        assert!(prefix.matches("repo:acme/app:"));
        assert!(!prefix.matches("repo:acme/app"));
        assert!(!prefix.matches("repo:acme/apple:ref:x"));
        assert!(!prefix.matches("repo:acme/*"));
    }

    #[test]
    fn stars_elsewhere_and_a_lone_star_are_refused() {
        for bad in ["*", "repo:*:main", "**", "repo:a**", "*repo", "", "a\nb"] {
            assert!(SubjectPattern::parse(bad).is_err(), "{bad:?}");
        }
        assert!(SubjectPattern::parse(&"a".repeat(MAX_TEXT + 1)).is_err());
    }

    #[test]
    fn required_claims_cannot_name_registered_ones() {
        let mut claims = RequiredClaims::new();
        claims.insert("repository".into(), "acme/app".into());
        assert!(check_required_claims(&claims).is_ok());
        claims.insert("sub".into(), "x".into());
        assert!(check_required_claims(&claims).is_err());
        let mut empty = RequiredClaims::new();
        empty.insert("workflow".into(), String::new());
        assert!(check_required_claims(&empty).is_err());
    }
}
