//! Permissions (scopes on the wire), the built-in ones, and the rules that bound what a
//! token may carry: effective permissions (docs/API.md, "When a token is usable") and "no one mints a token
//! stronger than themselves" (§5).

use crate::ids::{FieldError, TenantId, UserId, check_charset, is_permission_char};
use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Full control of every tenant; only the system tenant's tokens may hold it.
pub const ADMIN: &str = "latchkey:admin";
/// Administration of the holder's own tenant.
pub const MANAGE: &str = "latchkey:manage";
/// The right to call introspection and follow the revocation feed; system tenant only.
pub const INTROSPECT: &str = "latchkey:introspect";
/// The built-in permissions, always in the catalogue and never deletable.
pub const BUILTIN: [&str; 3] = [ADMIN, MANAGE, INTROSPECT];

/// A permission such as `reports:read`: 1–128 characters of `[a-z0-9_.:-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct Permission(String);

impl Permission {
    /// Accepts 1–128 characters of `[a-z0-9_.:-]`.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        check_charset(text, is_permission_char, "[a-z0-9_.:-]")?;
        Ok(Self(text.to_owned()))
    }

    /// The permission as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for `latchkey:admin`, `latchkey:manage` and `latchkey:introspect`.
    pub fn is_builtin(&self) -> bool {
        BUILTIN.contains(&self.0.as_str())
    }

    /// True for the permissions only the system tenant's tokens may hold.
    pub fn is_system_only(&self) -> bool {
        self.is_admin() || self.is_introspect()
    }

    /// True for `latchkey:admin`.
    pub fn is_admin(&self) -> bool {
        self.0 == ADMIN
    }

    /// True for `latchkey:manage`.
    pub fn is_manage(&self) -> bool {
        self.0 == MANAGE
    }

    /// True for `latchkey:introspect`.
    pub fn is_introspect(&self) -> bool {
        self.0 == INTROSPECT
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Permission {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(|e| serde::de::Error::custom(format!("`{text}` {e}")))
    }
}

/// An ordered set of permissions.
pub type PermissionSet = BTreeSet<Permission>;

/// Parses a space-separated scope string (RFC 6749 §3.3) into a set.
pub fn parse_scope(scope: &str) -> Result<PermissionSet, FieldError> {
    scope
        .split(' ')
        .filter(|part| !part.is_empty())
        .map(Permission::parse)
        .collect()
}

/// Joins a set into a space-separated scope string.
pub fn format_scope(set: &PermissionSet) -> String {
    let names: Vec<&str> = set.iter().map(Permission::as_str).collect();
    names.join(" ")
}

/// The permissions a tenant token grants right now: its own permissions together with
/// the current permissions of its roles. System-only permissions survive only in the
/// system tenant.
pub fn effective_for_tenant_token(
    tenant: &TenantId,
    permissions: &PermissionSet,
    role_permissions: &PermissionSet,
) -> PermissionSet {
    permissions
        .union(role_permissions)
        .filter(|p| tenant.is_system() || !p.is_system_only())
        .cloned()
        .collect()
}

/// The permissions a personal token grants right now: its own permissions, cut down to
/// what its user currently holds in the tenant.
pub fn effective_for_personal_token(
    tenant: &TenantId,
    permissions: &PermissionSet,
    user_holds: &PermissionSet,
) -> PermissionSet {
    permissions
        .intersection(user_holds)
        .filter(|p| tenant.is_system() || !p.is_system_only())
        .cloned()
        .collect()
}

/// The authority of a management-API caller, derived from its credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authority {
    /// Holds `latchkey:admin`: everything, everywhere.
    Admin,
    /// Holds `latchkey:manage` in this tenant: that tenant's administrator.
    Manager(TenantId),
}

impl Authority {
    /// True when the caller may act on the resources of `tenant`.
    pub fn covers(&self, tenant: &TenantId) -> bool {
        match self {
            Self::Admin => true,
            Self::Manager(own) => own == tenant,
        }
    }
}

/// Why a grant was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// `latchkey:admin` or `latchkey:introspect` asked for outside the system tenant.
    #[error("{0} can only be held by tokens of the system tenant `latchkey`")]
    SystemOnly(Permission),
    /// The granting party does not hold the permission.
    #[error("{grantor} does not hold {permission}{place}")]
    NotHeld {
        /// Who lacked it, in words (`user u_42`, `the calling credential`).
        grantor: String,
        /// The first permission not held.
        permission: Permission,
        /// Where, in words (` in tenant acme`), or empty.
        place: String,
    },
}

/// Checks that `caller` may put `requested` (the token's permissions together with its
/// roles' permissions) on a token of `tenant`.
///
/// `latchkey:admin` grants anything; a manager grants anything but the built-in
/// permissions, except `latchkey:manage` itself.
pub fn check_caller_grant(
    caller: &Authority,
    tenant: &TenantId,
    requested: &PermissionSet,
) -> Result<(), GrantError> {
    if let Some(permission) = requested
        .iter()
        .find(|p| p.is_system_only() && !tenant.is_system())
    {
        return Err(GrantError::SystemOnly(permission.clone()));
    }
    if let Authority::Manager(_) = caller
        && let Some(permission) = requested.iter().find(|p| p.is_builtin() && !p.is_manage())
    {
        return Err(GrantError::NotHeld {
            grantor: "the calling credential".to_owned(),
            permission: permission.clone(),
            place: String::new(),
        });
    }
    Ok(())
}

/// Checks that `user`, who holds `holds` in `tenant`, may stand behind a token carrying
/// `requested`.
pub fn check_user_grant(
    user: &UserId,
    tenant: &TenantId,
    holds: &PermissionSet,
    requested: &PermissionSet,
) -> Result<(), GrantError> {
    match requested.difference(holds).next() {
        Some(permission) => Err(GrantError::NotHeld {
            grantor: format!("user {user}"),
            permission: permission.clone(),
            place: format!(" in tenant {tenant}"),
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> PermissionSet {
        names
            .iter()
            .map(|n| Permission::parse(n).unwrap())
            .collect()
    }

    #[test]
    fn tenant_token_gets_its_permissions_and_its_roles() {
        let acme = TenantId::parse("acme").unwrap();
        let got = effective_for_tenant_token(&acme, &set(&["a:w"]), &set(&["a:r", ADMIN]));
        assert_eq!(got, set(&["a:r", "a:w"]));
        let system = TenantId::system();
        let got = effective_for_tenant_token(&system, &set(&[ADMIN]), &set(&[]));
        assert_eq!(got, set(&[ADMIN]));
    }

    #[test]
    fn personal_token_never_exceeds_its_user() {
        let acme = TenantId::parse("acme").unwrap();
        let got = effective_for_personal_token(&acme, &set(&["a:r", "a:w"]), &set(&["a:r"]));
        assert_eq!(got, set(&["a:r"]));
    }

    #[test]
    fn managers_cannot_grant_builtins_except_manage() {
        let acme = TenantId::parse("acme").unwrap();
        let manager = Authority::Manager(acme.clone());
        assert!(check_caller_grant(&manager, &acme, &set(&[MANAGE, "a:r"])).is_ok());
        assert!(matches!(
            check_caller_grant(&manager, &TenantId::system(), &set(&[INTROSPECT])),
            Err(GrantError::NotHeld { .. })
        ));
        assert!(matches!(
            check_caller_grant(&Authority::Admin, &acme, &set(&[ADMIN])),
            Err(GrantError::SystemOnly(_))
        ));
        assert!(check_caller_grant(&Authority::Admin, &TenantId::system(), &set(&[ADMIN])).is_ok());
    }

    #[test]
    fn user_grant_names_the_first_missing_permission() {
        let user = UserId::parse("u_42").unwrap();
        let acme = TenantId::parse("acme").unwrap();
        let err =
            check_user_grant(&user, &acme, &set(&["a:r"]), &set(&["a:r", "a:w"])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "user u_42 does not hold a:w in tenant acme"
        );
    }

    type Test = fn(&Permission) -> bool;

    #[test]
    fn each_builtin_is_recognised_by_its_own_test_only() {
        let tests: [(&str, Test); 3] = [
            (ADMIN, Permission::is_admin),
            (MANAGE, Permission::is_manage),
            (INTROSPECT, Permission::is_introspect),
        ];
        for (name, _) in tests {
            let permission = Permission::parse(name).unwrap();
            let matching: Vec<&str> = tests
                .iter()
                .filter(|(_, is)| is(&permission))
                .map(|(n, _)| *n)
                .collect();
            assert_eq!(matching, [name]);
            assert!(permission.is_builtin());
        }
        // Look-alikes are ordinary permissions.
        for name in [
            "latchkey:admins",
            "latchkey:manage:x",
            "reports:read",
            "latchkey",
        ] {
            let permission = Permission::parse(name).unwrap();
            assert!(tests.iter().all(|(_, is)| !is(&permission)), "{name}");
            assert!(
                !permission.is_builtin() && !permission.is_system_only(),
                "{name}"
            );
        }
    }

    #[test]
    fn scope_strings_round_trip() {
        let parsed = parse_scope("b:r  a:r").unwrap();
        assert_eq!(format_scope(&parsed), "a:r b:r");
        assert!(parse_scope("A:r").is_err());
    }
}
