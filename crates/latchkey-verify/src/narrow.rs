//! Narrowing a verified caller to what its token grants now, and its IP allowlist.
//!
//! Policy (README.md, "Narrowing and IP allowlists"): a credential never
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
use latchkey_core::network::NetworkRules;
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

/// Whether the tenant's network `rules` admit `client` (docs/API.md, "Where tokens may
/// be used from"): an unknown address is refused, and without `geoip` so is every
/// client of a tenant whose rules name countries (fail closed).
pub(crate) fn admitted(
    rules: &NetworkRules,
    client: Option<IpAddr>,
    geoip: Option<&latchkey_geoip::ReloadingGeoIp>,
) -> Result<(), Refusal> {
    let client = client.map_or(Client::Unknown, |ip| Client::Address(ip.to_canonical()));
    let lookup = geoip.map(|geoip| move |ip: IpAddr| geoip.country(ip));
    let lookup = lookup
        .as_ref()
        .map(|f| f as &dyn Fn(IpAddr) -> Option<latchkey_core::country::CountryCode>);
    usable::admitted(rules, client, lookup)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::principal::TokenKind;
    use crate::revocation::Revocation;
    use latchkey_core::jwt::TokenOwnerType;
    use latchkey_core::permission::parse_scope;
    use latchkey_core::usable::Standing;
    use latchkey_core::{PermissionSet, TokenId};
    use proptest::prelude::*;
    use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

    /// A deny list whose tenant tokens' roles hold `roles` and whose epoch is scripted,
    /// counting how often it is asked for the standing.
    struct State {
        roles: Mutex<PermissionSet>,
        epoch: AtomicU64,
        asked: AtomicUsize,
    }

    impl State {
        fn new(roles: &str) -> Self {
            Self {
                roles: Mutex::new(parse_scope(roles).unwrap()),
                epoch: AtomicU64::new(0),
                asked: AtomicUsize::new(0),
            }
        }

        fn change(&self, roles: &str) {
            *self.roles.lock().unwrap() = parse_scope(roles).unwrap();
            self.epoch.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl RevocationCheck for State {
        fn check(&self, _: &TokenId, _: Option<&str>) -> Revocation {
            Revocation::NotRevoked
        }

        fn standing(&self, _: &TenantId, _: Option<&UserId>, _: &[RoleName]) -> Option<Standing> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            Some(Standing::Tenant {
                role_permissions: self.roles.lock().unwrap().clone(),
            })
        }

        fn state_epoch(&self) -> u64 {
            self.epoch.load(Ordering::SeqCst)
        }
    }

    fn principal(scope: &str, allowlist: &[&str]) -> Principal {
        Principal {
            token_id: TokenId::from_u128(1),
            tenant: TenantId::parse("acme").unwrap(),
            user: None,
            owner: TokenOwnerType::Tenant,
            kind: TokenKind::ClientCredentials,
            scopes: parse_scope(scope).unwrap(),
            jti: Some("j".to_owned()),
            expires_at: None,
            ip_allowlist: allowlist.iter().map(|n| IpNet::parse(n).unwrap()).collect(),
            trust: None,
        }
    }

    fn basis(roles: &[&str], permissions: &[&str]) -> Option<GrantBasis> {
        let roles: Vec<String> = roles.iter().map(|r| (*r).to_owned()).collect();
        let permissions: Vec<String> = permissions.iter().map(|p| (*p).to_owned()).collect();
        GrantBasis::parse(Some(&roles), Some(&permissions))
    }

    fn narrowed(n: &Narrowable, state: &State) -> Arc<Principal> {
        match n.narrow(state).unwrap() {
            Narrowed::Now(principal) => principal,
            Narrowed::Unknown => panic!("state was known"),
        }
    }

    #[test]
    fn the_narrowed_caller_is_recomputed_only_when_the_state_epoch_moves() {
        let state = State::new("a:r a:w");
        let n = Narrowable::new(principal("a:r a:w", &[]), basis(&["editor"], &[]));
        let first = narrowed(&n, &state);
        assert!(Arc::ptr_eq(&first, &n.issued), "nothing to cut: no copy");
        let again = narrowed(&n, &state);
        assert!(Arc::ptr_eq(&first, &again));
        assert_eq!(state.asked.load(Ordering::SeqCst), 1);

        state.change("a:r");
        let cut = narrowed(&n, &state);
        assert_eq!(cut.scopes, parse_scope("a:r").unwrap());
        assert!(Arc::ptr_eq(&cut, &narrowed(&n, &state)), "remembered");
        assert_eq!(state.asked.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_token_without_rol_and_prm_is_not_narrowed_here() {
        let state = State::new("");
        let n = Narrowable::new(principal("a:r", &[]), None);
        assert!(matches!(n.narrow(&state), Ok(Narrowed::Unknown)));
        assert_eq!(state.asked.load(Ordering::SeqCst), 0);
        assert_eq!(basis(&["Not A Role!"], &[]), None);
        assert_eq!(GrantBasis::parse(None, Some(&[])), None);
    }

    #[test]
    fn an_allowlist_needs_a_known_address_inside_it() {
        let now = Timestamp::from_millis(0);
        let p = principal("a:r", &["203.0.113.0/24"]);
        assert_eq!(allowed(&p, None, now), Err(Refusal::AddressUnknown));
        let outside = "198.51.100.1".parse().ok();
        assert_eq!(allowed(&p, outside, now), Err(Refusal::AddressNotAllowed));
        assert_eq!(allowed(&p, "203.0.113.4".parse().ok(), now), Ok(()));
        assert_eq!(allowed(&p, "::ffff:203.0.113.4".parse().ok(), now), Ok(()));
        assert_eq!(allowed(&principal("a:r", &[]), None, now), Ok(()));
    }

    fn scope_of(bits: u8) -> String {
        let names = ["a:r", "a:w", "b:r", "b:w", "c:r", "c:w"];
        names
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, n)| *n)
            .collect::<Vec<_>>()
            .join(" ")
    }

    proptest! {
        #[test]
        fn narrowing_never_grants_beyond_the_scope_nor_the_grant(
            scope in 0u8..64, own in 0u8..64, roles in 0u8..64, later in 0u8..64,
        ) {
            let state = State::new(&scope_of(roles));
            let own_names = scope_of(own);
            let own_list: Vec<&str> = own_names.split_whitespace().collect();
            let n = Narrowable::new(principal(&scope_of(scope), &[]), basis(&["r"], &own_list));
            for _ in 0..2 {
                let got = narrowed(&n, &state);
                let grant: PermissionSet = parse_scope(&own_names)
                    .unwrap()
                    .union(&state.roles.lock().unwrap())
                    .cloned()
                    .collect();
                prop_assert!(got.scopes.is_subset(&n.issued.scopes));
                prop_assert!(got.scopes.is_subset(&grant));
                prop_assert_eq!(
                    got.scopes.len(),
                    n.issued.scopes.intersection(&grant).count()
                );
                state.change(&scope_of(later));
            }
        }
    }
}
