//! Whether a token may be used now, from this address, and with what grant: the one rule
//! that every path applies — client-credentials exchange, api-key authentication,
//! management authentication, introspection, and every verifier through a JWT's claims
//! (docs/API.md, "When a token is usable").
//!
//! Policy:
//! - A token grants what its roles and its user hold *now*, never what they held when a
//!   credential was issued: a tenant token its own permissions and the current
//!   permissions of its roles; a personal token its own permissions cut down to what its
//!   user currently holds in the tenant. A credential's scope is narrowed to that grant
//!   on every use ([`narrow`]).
//! - A token is refused when it is revoked, expired, its user has left the tenant, or
//!   it carries an IP allowlist that does not hold the client's address. An allowlist
//!   that cannot be enforced — the verifier does not know the client's address — refuses
//!   the token: failing open there would make the allowlist decorative.
//!
//! The rule is written over [`TokenView`], which the server's token record and a
//! verifier's claims both give, and [`Standing`], what the world says of the token's
//! roles and user now (the store, or a verifier's replica of the feed).

use crate::cidr::{self, IpNet};
use crate::ids::{RoleName, TenantId, UserId};
use crate::network::{NetworkRefusal, NetworkRules};
use crate::permission::{self, Permission, PermissionSet};
use crate::timestamp::Timestamp;
use crate::token::Token;
use std::net::IpAddr;

/// What a token is, as far as usability goes.
pub trait TokenView {
    /// The tenant the token belongs to.
    fn tenant(&self) -> &TenantId;
    /// The owning user of a personal token.
    fn user(&self) -> Option<&UserId>;
    /// Roles whose current permissions a tenant token carries.
    fn roles(&self) -> &[RoleName];
    /// Permissions granted directly.
    fn direct_permissions(&self) -> &[Permission];
    /// True once revoked.
    fn revoked(&self) -> bool;
    /// After this instant it no longer authenticates.
    fn expires_at(&self) -> Option<Timestamp>;
    /// Client networks it may be used from; empty means anywhere.
    fn ip_allowlist(&self) -> &[IpNet];
}

impl TokenView for Token {
    fn tenant(&self) -> &TenantId {
        self.owner.tenant_id()
    }

    fn user(&self) -> Option<&UserId> {
        self.owner.user_id()
    }

    fn roles(&self) -> &[RoleName] {
        &self.roles
    }

    fn direct_permissions(&self) -> &[Permission] {
        &self.permissions
    }

    fn revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    /// A rolled token stops authenticating at the end of its grace window (`revokes_at`)
    /// at the latest, even before maintenance has revoked it through the feed.
    fn expires_at(&self) -> Option<Timestamp> {
        match (self.expires_at, self.revokes_at) {
            (Some(expiry), Some(end)) => Some(expiry.min(end)),
            (expiry, end) => expiry.or(end),
        }
    }

    fn ip_allowlist(&self) -> &[IpNet] {
        &self.ip_allowlist
    }
}

/// What the world says of a token's roles and user now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    /// A tenant token: the union of its roles' current permissions.
    Tenant {
        /// The current permissions of the token's roles together.
        role_permissions: PermissionSet,
    },
    /// A personal token whose user is a member of the tenant.
    Member {
        /// What the user holds in the tenant now.
        holds: PermissionSet,
    },
    /// A personal token whose user is no longer a member.
    Departed,
}

/// What `token` grants now, or `None` when its user has left the tenant.
/// System-only permissions survive only in the system tenant.
pub fn grant_now(token: &impl TokenView, standing: &Standing) -> Option<PermissionSet> {
    let own: PermissionSet = token.direct_permissions().iter().cloned().collect();
    match standing {
        Standing::Tenant { role_permissions } => Some(permission::effective_for_tenant_token(
            token.tenant(),
            &own,
            role_permissions,
        )),
        Standing::Member { holds } => Some(permission::effective_for_personal_token(
            token.tenant(),
            &own,
            holds,
        )),
        Standing::Departed => None,
    }
}

/// The client address a usability check judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Client {
    /// The client's address, as far as it can be trusted (after `trusted_proxies`).
    Address(IpAddr),
    /// No trusted address is known here: allowlisted tokens are refused.
    Unknown,
    /// The address is judged elsewhere: introspection for a `latchkey:introspect`
    /// caller that passed no `client_ip` answers with the allowlist for the caller to
    /// enforce.
    JudgedByCaller,
}

/// Why a token may not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// It was revoked.
    #[error("credential revoked")]
    Revoked,
    /// It expired.
    #[error("credential expired")]
    Expired,
    /// Its user is no longer a member of its tenant.
    #[error("the credential's user has left its tenant")]
    UserLeft,
    /// Its allowlist does not hold the client's address.
    #[error("credential not allowed from this address")]
    AddressNotAllowed,
    /// It has an allowlist, and the client's address is not known here.
    #[error("credential has an IP allowlist and the client address is unknown")]
    AddressUnknown,
    /// Its tenant's network rules refuse the client's address (or the address is not
    /// known here). Said to the client as the allowlist's refusal is, so the client
    /// does not learn which rule matched.
    #[error("credential not allowed from this address")]
    NetworkNotAllowed,
    /// Its tenant's country rules refuse the client. Said as the allowlist's refusal
    /// is.
    #[error("credential not allowed from this address")]
    CountryNotAllowed,
}

impl Refusal {
    /// The `reason` recorded in `auth.failed` audit events.
    pub fn audit_reason(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::UserLeft => "user_left_tenant",
            Self::AddressNotAllowed => "ip_not_allowed",
            Self::AddressUnknown => "ip_unknown",
            Self::NetworkNotAllowed => "network_not_allowed",
            Self::CountryNotAllowed => "country_not_allowed",
        }
    }
}

/// The one usability rule: `token` may be used at `now` by `client` when it is neither
/// revoked nor expired, its user (if any) is still a member — `grant` is what
/// [`grant_now`] gave — and its allowlist admits the client. Returns the grant.
pub fn usable<'g>(
    token: &impl TokenView,
    now: Timestamp,
    client: Client,
    grant: Option<&'g PermissionSet>,
) -> Result<&'g PermissionSet, Refusal> {
    if token.revoked() {
        return Err(Refusal::Revoked);
    }
    if token.expires_at().is_some_and(|expiry| expiry <= now) {
        return Err(Refusal::Expired);
    }
    let grant = grant.ok_or(Refusal::UserLeft)?;
    let allowlist = token.ip_allowlist();
    if !allowlist.is_empty() {
        match client {
            Client::Address(ip) if cidr::allows(allowlist, ip) => {}
            Client::Address(_) => return Err(Refusal::AddressNotAllowed),
            Client::Unknown => return Err(Refusal::AddressUnknown),
            Client::JudgedByCaller => {}
        }
    }
    Ok(grant)
}

/// The tenant's network rules (docs/API.md, "Where tokens may be used from") applied
/// to `client`: an unknown address is refused where there are rules (fail closed); a
/// client judged by the caller is left to it. `country` looks an address up in the
/// GeoIP database, when there is one.
pub fn admitted(
    network: &NetworkRules,
    client: Client,
    country: Option<&dyn Fn(IpAddr) -> Option<crate::country::CountryCode>>,
) -> Result<(), Refusal> {
    let ip = match client {
        Client::Address(ip) => Some(ip),
        Client::Unknown => None,
        Client::JudgedByCaller => return Ok(()),
    };
    network
        .admits(ip, country)
        .map_err(|refusal| match refusal {
            NetworkRefusal::NetworkNotAllowed => Refusal::NetworkNotAllowed,
            NetworkRefusal::CountryNotAllowed => Refusal::CountryNotAllowed,
        })
}

/// A credential's scope as it stands now: what it was issued with, cut down to what its
/// token grants now. Never wider than either.
pub fn narrow(scope: &PermissionSet, grant: &PermissionSet) -> PermissionSet {
    scope.intersection(grant).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TokenId;
    use crate::permission::{ADMIN, parse_scope};
    use crate::token::{Owner, TokenKind, TokenName};

    fn token(owner: Owner, permissions: &str, allowlist: &[&str]) -> Token {
        Token {
            id: TokenId::from_u128(1),
            kind: TokenKind::Jwt,
            owner,
            name: TokenName::parse("t").unwrap(),
            roles: vec![RoleName::parse("viewer").unwrap()],
            permissions: parse_scope(permissions).unwrap().into_iter().collect(),
            created_by: None,
            created_at: Timestamp::from_millis(0),
            expires_at: Some(Timestamp::from_millis(10_000)),
            revoked_at: None,
            revoked_reason: None,
            rolled_from: None,
            rolled_to: None,
            revokes_at: None,
            last_used_at: None,
            last_used_ip: None,
            ip_allowlist: allowlist.iter().map(|n| IpNet::parse(n).unwrap()).collect(),
            access_token_ttl_seconds: 900,
            refresh_tokens: false,
            secret_hint: None,
            public_key: None,
        }
    }

    fn acme() -> Owner {
        Owner::Tenant {
            tenant_id: TenantId::parse("acme").unwrap(),
        }
    }

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_millis(millis)
    }

    #[test]
    fn a_tenant_token_grants_its_permissions_and_its_roles_now() {
        let t = token(acme(), "a:w", &[]);
        let standing = Standing::Tenant {
            role_permissions: parse_scope("a:r").unwrap(),
        };
        let grant = grant_now(&t, &standing).unwrap();
        assert_eq!(grant, parse_scope("a:r a:w").unwrap());
        let lost = Standing::Tenant {
            role_permissions: PermissionSet::new(),
        };
        assert_eq!(grant_now(&t, &lost).unwrap(), parse_scope("a:w").unwrap());
    }

    #[test]
    fn a_personal_token_never_grants_more_than_its_user_holds_now() {
        let owner = Owner::User {
            tenant_id: TenantId::parse("acme").unwrap(),
            user_id: UserId::parse("u_1").unwrap(),
        };
        let t = token(owner, "a:r a:w", &[]);
        let holds = Standing::Member {
            holds: parse_scope("a:r").unwrap(),
        };
        assert_eq!(grant_now(&t, &holds).unwrap(), parse_scope("a:r").unwrap());
        assert_eq!(grant_now(&t, &Standing::Departed), None);
        assert_eq!(
            usable(&t, at(1), Client::Unknown, None),
            Err(Refusal::UserLeft)
        );
    }

    #[test]
    fn system_only_permissions_never_survive_outside_the_system_tenant() {
        let t = token(acme(), "", &[]);
        let standing = Standing::Tenant {
            role_permissions: parse_scope(&format!("{ADMIN} a:r")).unwrap(),
        };
        assert_eq!(
            grant_now(&t, &standing).unwrap(),
            parse_scope("a:r").unwrap()
        );
    }

    #[test]
    fn revoked_and_expired_tokens_are_refused_in_that_order() {
        let grant = PermissionSet::new();
        let mut t = token(acme(), "", &[]);
        assert!(usable(&t, at(9_999), Client::Unknown, Some(&grant)).is_ok());
        assert_eq!(
            usable(&t, at(10_000), Client::Unknown, Some(&grant)),
            Err(Refusal::Expired)
        );
        t.revoked_at = Some(at(5));
        assert_eq!(
            usable(&t, at(10_000), Client::Unknown, Some(&grant)),
            Err(Refusal::Revoked)
        );
    }

    #[test]
    fn an_allowlist_admits_only_its_networks_and_never_an_unknown_address() {
        let grant = PermissionSet::new();
        let t = token(acme(), "", &["203.0.113.0/24"]);
        let inside = Client::Address("203.0.113.9".parse().unwrap());
        let outside = Client::Address("198.51.100.1".parse().unwrap());
        assert!(usable(&t, at(1), inside, Some(&grant)).is_ok());
        assert_eq!(
            usable(&t, at(1), outside, Some(&grant)),
            Err(Refusal::AddressNotAllowed)
        );
        assert_eq!(
            usable(&t, at(1), Client::Unknown, Some(&grant)),
            Err(Refusal::AddressUnknown)
        );
        assert!(usable(&t, at(1), Client::JudgedByCaller, Some(&grant)).is_ok());
        let open = token(acme(), "", &[]);
        assert!(usable(&open, at(1), Client::Unknown, Some(&grant)).is_ok());
    }

    #[test]
    fn narrowing_keeps_only_what_both_hold() {
        let scope = parse_scope("a:r a:w").unwrap();
        let grant = parse_scope("a:r b:r").unwrap();
        assert_eq!(narrow(&scope, &grant), parse_scope("a:r").unwrap());
    }
}
