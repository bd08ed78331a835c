//! The verified caller ([`Principal`]) and the scope requirements routes put on it
//! ([`Scopes`]).
//!
//! Policy: a principal only ever comes out of a successful verification; handlers trust
//! its fields. Scope requirements are checked on every request — cached verifications
//! and cached introspections included — because the cache remembers who the caller is,
//! not what the route needs.

use crate::error::VerifyError;
use latchkey_core::jwt::TokenOwnerType;
use latchkey_core::{PermissionSet, TenantId, TokenId, UserId};
use serde::Serialize;
use std::sync::Arc;

/// How the token was presented (docs/API.md, "Tokens"): the server's own token kind,
/// re-exported so a principal's kind and a token's compare as one type.
pub use latchkey_core::token::TokenKind;

/// The verified caller of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// The token's id (its `client_id`).
    pub token_id: TokenId,
    /// The tenant the token belongs to.
    pub tenant: TenantId,
    /// The user, for personal tokens.
    pub user: Option<UserId>,
    /// Whether the token acts for the tenant or for one user.
    pub owner: TokenOwnerType,
    /// How the token was presented.
    pub kind: TokenKind,
    /// The effective permissions: what the credential was issued with, narrowed to
    /// what its token grants now when the verifier knows that (README.md, "Narrowing
    /// and IP allowlists").
    pub scopes: PermissionSet,
    /// The JWT's `jti`; `None` for api keys.
    pub jti: Option<String>,
    /// Expiry in seconds since the epoch, when the token has one.
    pub expires_at: Option<i64>,
    /// Client networks the token may be used from: a JWT's `ipa` claim, or an api
    /// key's introspected `ip_allowlist`; empty means anywhere. The verifier has
    /// already judged it against the client address it was given.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_allowlist: Vec<latchkey_core::cidr::IpNet>,
    /// Who the caller is outside latchkey, on access tokens issued through a trust (the
    /// JWT-bearer grant, docs/API.md "Trusts"); `None` on every other credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust: Option<TrustCaller>,
}

/// The caller of an access token issued through a trust: the outside issuer's subject
/// (a CI job's `repo:acme/app:ref:refs/heads/main`) and the trust that accepted it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TrustCaller {
    /// The trust's id: the token's `trust_id`, which is also its `client_id` and so the
    /// principal's `token_id`.
    pub trust_id: TokenId,
    /// The assertion's subject, the token's `sub`, exactly as the issuer wrote it: any
    /// non-empty string, so it may hold characters no HTTP header may carry.
    pub subject: String,
}

impl Principal {
    /// True when the token may be used from `ip`.
    pub fn allowed_from(&self, ip: std::net::IpAddr) -> bool {
        latchkey_core::cidr::allows(&self.ip_allowlist, ip)
    }

    /// True when the principal holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|held| held.as_str() == scope)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    AllOf,
    AnyOf,
}

/// A route's scope requirement: all of a list, or any of it.
///
/// ```
/// use latchkey_verify::Scopes;
/// let read = Scopes::all_of(["reports:read"]);
/// let either = Scopes::any_of(["reports:read", "reports:admin"]);
/// assert_eq!(read.to_string(), "reports:read");
/// assert_eq!(either.to_string(), "reports:read reports:admin");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes {
    mode: Mode,
    names: Arc<[Box<str>]>,
}

impl Scopes {
    /// No requirement beyond a valid token.
    pub fn none() -> Self {
        Self::all_of(std::iter::empty::<&str>())
    }

    /// Every one of `names` is needed. An empty list needs nothing.
    pub fn all_of<I, T>(names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Self::new(Mode::AllOf, names)
    }

    /// At least one of `names` is needed. An empty list is never satisfied.
    pub fn any_of<I, T>(names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        Self::new(Mode::AnyOf, names)
    }

    fn new<I, T>(mode: Mode, names: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: AsRef<str>,
    {
        let names = names.into_iter().map(|n| n.as_ref().into()).collect();
        Self { mode, names }
    }

    /// True when `principal` meets the requirement.
    pub fn is_satisfied_by(&self, principal: &Principal) -> bool {
        match self.mode {
            Mode::AllOf => self.names.iter().all(|n| principal.has_scope(n)),
            Mode::AnyOf => self.names.iter().any(|n| principal.has_scope(n)),
        }
    }

    /// `Ok` when `principal` meets the requirement, else the RFC 6750
    /// `insufficient_scope` error naming what is needed.
    pub fn check(&self, principal: &Principal) -> Result<(), VerifyError> {
        if self.is_satisfied_by(principal) {
            Ok(())
        } else {
            Err(VerifyError::InsufficientScope {
                scope: self.to_string(),
            })
        }
    }
}

impl std::fmt::Display for Scopes {
    /// The names, space-separated, as RFC 6750's `scope` attribute lists them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, name) in self.names.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use latchkey_core::permission::parse_scope;

    fn principal(scope: &str) -> Principal {
        Principal {
            token_id: TokenId::from_u128(1),
            tenant: TenantId::parse("acme").unwrap(),
            user: None,
            owner: TokenOwnerType::Tenant,
            kind: TokenKind::ApiKey,
            scopes: parse_scope(scope).unwrap(),
            jti: None,
            expires_at: None,
            ip_allowlist: Vec::new(),
            trust: None,
        }
    }

    #[test]
    fn all_of_needs_every_scope_and_any_of_needs_one() {
        let p = principal("a:r b:r");
        assert!(Scopes::all_of(["a:r", "b:r"]).is_satisfied_by(&p));
        assert!(!Scopes::all_of(["a:r", "c:r"]).is_satisfied_by(&p));
        assert!(Scopes::any_of(["c:r", "b:r"]).is_satisfied_by(&p));
        assert!(!Scopes::any_of(["c:r", "d:r"]).is_satisfied_by(&p));
        assert!(Scopes::none().is_satisfied_by(&p));
        assert!(!Scopes::any_of(Vec::<String>::new()).is_satisfied_by(&p));
    }

    #[test]
    fn a_failed_check_names_the_needed_scope() {
        let err = Scopes::all_of(["a:w"])
            .check(&principal("a:r"))
            .unwrap_err();
        assert_eq!(
            err,
            VerifyError::InsufficientScope {
                scope: "a:w".to_owned()
            }
        );
    }
}
