//! Narrowing a verified caller to what its token grants now, and its IP allowlist.
//!
//! Policy (README.md, "latchkey-verify": narrowing and allowlists): a credential never
//! grants more than its roles and its user hold now. A JWT's `scope` (or an api key's
//! introspected scope) is what it was issued with; its `rol`/`prm` say what that grant is
//! computed from, and the deny list's state entries say what those roles and that user
//! hold now. Each request is answered with the intersection. The intersection only
//! changes when the state does, so it is remembered per credential together with the
//! list's state epoch and recomputed only once the epoch moves: a repeat costs one lock
//! and no allocation. The allowlist depends on the request's address and is checked on
//! every request, never remembered.

use crate::principal::Principal;
use crate::revocation::RevocationCheck;
use latchkey_core::cidr::IpNet;
use latchkey_core::usable::{self, Client, Refusal, TokenView};
use latchkey_core::{Permission, RoleName, TenantId, Timestamp, UserId};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// What a token's grant is computed from: its `rol` and `prm`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GrantBasis {
    pub(crate) roles: Vec<RoleName>,
    pub(crate) permissions: Vec<Permission>,
}

impl GrantBasis {
    /// From the `rol` and `prm` arrays of a JWT or an introspection answer; `None` when
    /// either is absent (an issuer that does not write them) or holds a name latchkey
    /// would never issue.
    pub(crate) fn parse(roles: Option<&[String]>, permissions: Option<&[String]>) -> Option<Self> {
        let roles = roles?
            .iter()
            .map(|r| RoleName::parse(r).ok())
            .collect::<Option<Vec<_>>>()?;
        let permissions = permissions?
            .iter()
            .map(|p| Permission::parse(p).ok())
            .collect::<Option<Vec<_>>>()?;
        Some(Self { roles, permissions })
    }
}

/// The memo: the state epoch it was computed at, and the narrowed caller (or why the
/// token is refused, when its user has left).
type Memo = Option<(u64, Result<Arc<Principal>, Refusal>)>;

/// A verified caller as issued, and what narrowing it needs.
#[derive(Debug)]
pub(crate) struct Narrowable {
    pub(crate) issued: Arc<Principal>,
    pub(crate) basis: Option<GrantBasis>,
    memo: Mutex<Memo>,
}

/// What narrowing said of a caller.
#[derive(Debug)]
pub(crate) enum Narrowed {
    /// Narrowed with the deny list's state.
    Now(Arc<Principal>),
    /// The deny list knows no state, or the token carries no basis: nothing could be
    /// narrowed here.
    Unknown,
}

impl Narrowable {
    pub(crate) fn new(issued: Principal, basis: Option<GrantBasis>) -> Self {
        Self {
            issued: Arc::new(issued),
            basis,
            memo: Mutex::new(None),
        }
    }

    /// The caller cut down to what `list` says the token grants now.
    pub(crate) fn narrow(&self, list: &dyn RevocationCheck) -> Result<Narrowed, Refusal> {
        let Some(basis) = &self.basis else {
            return Ok(Narrowed::Unknown);
        };
        // Read before the state: an entry applied meanwhile leaves the memo with an old
        // epoch, and it is recomputed next time.
        let epoch = list.state_epoch();
        let mut memo = self.memo.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((at, answer)) = memo.as_ref()
            && *at == epoch
        {
            return answer.clone().map(Narrowed::Now);
        }
        let issued = &self.issued;
        let Some(standing) = list.standing(&issued.tenant, issued.user.as_ref(), &basis.roles)
        else {
            return Ok(Narrowed::Unknown);
        };
        let view = View {
            principal: issued,
            basis,
        };
        let answer = match usable::grant_now(&view, &standing) {
            Some(grant) => {
                let scopes = usable::narrow(&issued.scopes, &grant);
                if scopes == issued.scopes {
                    Ok(issued.clone())
                } else {
                    Ok(Arc::new(Principal {
                        scopes,
                        ..Principal::clone(issued)
                    }))
                }
            }
            None => Err(Refusal::UserLeft),
        };
        *memo = Some((epoch, answer.clone()));
        answer.map(Narrowed::Now)
    }
}

/// Whether `principal` may be used from `client` at `now`: its allowlist, judged by the
/// one usability rule. Expiry and revocation were decided before; the view carries
/// neither so they are not judged twice with different leeways.
pub(crate) fn allowed(
    principal: &Principal,
    client: Option<IpAddr>,
    now: Timestamp,
) -> Result<(), Refusal> {
    if principal.ip_allowlist.is_empty() {
        return Ok(());
    }
    let view = View {
        principal,
        basis: &GrantBasis {
            roles: Vec::new(),
            permissions: Vec::new(),
        },
    };
    let client = client.map_or(Client::Unknown, |ip| Client::Address(ip.to_canonical()));
    usable::usable(&view, now, client, Some(&principal.scopes)).map(|_| ())
}

/// A verified caller as the usability rule sees it. Never revoked: the deny list
/// decides that before.
struct View<'a> {
    principal: &'a Principal,
    basis: &'a GrantBasis,
}

impl TokenView for View<'_> {
    fn tenant(&self) -> &TenantId {
        &self.principal.tenant
    }

    fn user(&self) -> Option<&UserId> {
        self.principal.user.as_ref()
    }

    fn roles(&self) -> &[RoleName] {
        &self.basis.roles
    }

    fn direct_permissions(&self) -> &[Permission] {
        &self.basis.permissions
    }

    fn revoked(&self) -> bool {
        false
    }

    fn expires_at(&self) -> Option<Timestamp> {
        // Judged by the claims check and the caches, with the verifier's leeway.
        None
    }

    fn ip_allowlist(&self) -> &[IpNet] {
        &self.principal.ip_allowlist
    }
}
