//! The revocation seam: how the verifier asks "is this token revoked?" and how it is
//! told that one was, so its caches let go.
//!
//! Policy (docs/API.md, "When a token is usable"): the check runs on every accepted
//! request, cache hits included, so a revocation takes effect as soon as the deny list
//! knows it — the caches are never a way around it. The same list answers what a
//! token's roles and user hold now ([`RevocationCheck::standing`]), and the verifier
//! narrows every credential's scopes to that on every request. A deny list that has gone quiet for too long
//! answers [`Revocation::Stale`] and the verifier fails closed. Without a deny list
//! ([`NoRevocationList`]) short-lived access tokens are accepted on their signature and
//! expiry alone, while api keys and long-lived JWTs are checked through introspection,
//! whose cache TTL then bounds how late a revocation is noticed. Without state, a JWT's
//! scope is not narrowed locally: short-lived access tokens keep theirs until they
//! expire, long-lived JWTs and api keys get the scope the server narrowed at
//! introspection.

use latchkey_core::network::NetworkRules;
use latchkey_core::usable::Standing;
use latchkey_core::{RoleName, TenantId, TokenId, UserId};
use std::sync::Arc;

/// What the deny list says about a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revocation {
    /// Neither the token id nor the `jti` is on the deny list, and the list is current.
    NotRevoked,
    /// The token id or the `jti` is on the deny list.
    Revoked,
    /// There is no deny list to ask: decide by the token kind (see the module docs).
    NoList,
    /// The deny list has not heard from the feed for too long; fail closed.
    Stale,
}

/// A deny-list lookup. It runs on every request, so it must be a local, in-memory read
/// (a replica of the server's revocation feed), never a network call.
///
/// ```
/// use latchkey_core::TokenId;
/// use latchkey_verify::{Revocation, RevocationCheck};
/// use std::collections::HashSet;
/// use std::sync::RwLock;
///
/// struct DenyList(RwLock<HashSet<String>>);
///
/// impl RevocationCheck for DenyList {
///     fn check(&self, token_id: &TokenId, jti: Option<&str>) -> Revocation {
///         let list = self.0.read().unwrap_or_else(|e| e.into_inner());
///         if list.contains(&token_id.to_string()) || jti.is_some_and(|j| list.contains(j)) {
///             Revocation::Revoked
///         } else {
///             Revocation::NotRevoked
///         }
///     }
/// }
/// ```
pub trait RevocationCheck: Send + Sync + 'static {
    /// Looks up a token by its id (the JWT's `client_id`, or the id inside an api key)
    /// and, for JWTs, its `jti`.
    fn check(&self, token_id: &TokenId, jti: Option<&str>) -> Revocation;

    /// What the feed says now of a token's grant: for a personal token (`user` given)
    /// what that user holds in `tenant`, or [`Standing::Departed`] when the user is no
    /// longer a member; for a tenant token the current permissions of `roles` together.
    /// `None` when this list knows no such state, and then the verifier cannot narrow
    /// locally (see the module docs). Asked only after [`check`](Self::check) answered
    /// [`Revocation::NotRevoked`], so it need not repeat the staleness check.
    fn standing(
        &self,
        tenant: &TenantId,
        user: Option<&UserId>,
        roles: &[RoleName],
    ) -> Option<Standing> {
        let _ = (tenant, user, roles);
        None
    }

    /// A counter that moves whenever what [`standing`](Self::standing) answers may have
    /// changed, so the verifier can keep a narrowed caller until it moves.
    fn state_epoch(&self) -> u64 {
        0
    }

    /// The network rules of `tenant`'s policy as the feed last said (docs/API.md,
    /// "Where tokens may be used from"); `None` when it has none, or this list does not
    /// follow them.
    fn network(&self, tenant: &TenantId) -> Option<Arc<NetworkRules>> {
        let _ = tenant;
        None
    }
}

/// The default seam: no deny list, and no state to narrow grants with.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRevocationList;

impl RevocationCheck for NoRevocationList {
    fn check(&self, _token_id: &TokenId, _jti: Option<&str>) -> Revocation {
        Revocation::NoList
    }
}
