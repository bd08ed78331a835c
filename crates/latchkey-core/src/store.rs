//! The storage contract. Each method is one atomic domain operation: the change, its
//! revocation-log entries and its audit event commit together or not at all.
//!
//! Backends live in `latchkey-store`; the server holds an `Arc<dyn Store>` and never
//! learns which database it talks to.

use crate::audit::AuditContext;
use crate::ids::{RoleName, TenantId, TokenId, UserId};
use crate::permission::{Permission, PermissionSet};
use crate::timestamp::Timestamp;
use crate::token::{Owner, Token, TokenName, TokenRecord};
use async_trait::async_trait;
use serde::Serialize;

/// A customer account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    /// Chosen by the host application.
    pub id: TenantId,
    /// Display name.
    pub name: String,
    /// Creation time.
    pub created_at: Timestamp,
}

/// An entry of the permission catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermissionDef {
    /// The permission.
    pub name: Permission,
    /// What it allows, in words.
    pub description: String,
    /// Built in: always present, never deletable or editable.
    pub builtin: bool,
}

/// A named set of permissions defined by the vendor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleDef {
    /// The role name.
    pub name: RoleName,
    /// Its permissions, sorted.
    pub permissions: Vec<Permission>,
    /// What it is for, in words.
    pub description: String,
}

/// A user's membership in a tenant, with the permissions its roles give right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Membership {
    /// The tenant.
    pub tenant_id: TenantId,
    /// The user.
    pub user_id: UserId,
    /// The roles the user holds there, sorted.
    pub roles: Vec<RoleName>,
    /// The union of those roles' permissions, sorted.
    pub permissions: Vec<Permission>,
}

impl Membership {
    /// The permissions as a set.
    pub fn permission_set(&self) -> PermissionSet {
        self.permissions.iter().cloned().collect()
    }
}

/// Which tokens to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenOwnerFilter {
    /// The tenant-owned tokens of a tenant.
    Tenant(TenantId),
    /// The personal tokens of one user in one tenant.
    User(TenantId, UserId),
}

impl From<&Owner> for TokenOwnerFilter {
    fn from(owner: &Owner) -> Self {
        match owner {
            Owner::Tenant { tenant_id } => Self::Tenant(tenant_id.clone()),
            Owner::User { tenant_id, user_id } => Self::User(tenant_id.clone(), user_id.clone()),
        }
    }
}

/// A request for one page of a list, in the list's stable order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    /// At most this many items.
    pub limit: u32,
    /// The sort key of the last item already seen, from the previous page's `next`.
    pub after: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// The sort key to continue after, when there may be more.
    pub next: Option<String>,
}

/// A storage failure, in domain terms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A unique key already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// The tenant does not exist.
    #[error("tenant {0} does not exist")]
    UnknownTenant(TenantId),
    /// A role named in the request does not exist.
    #[error("role {0} does not exist")]
    UnknownRole(RoleName),
    /// A permission named in the request is not in the catalogue.
    #[error("permission {0} is not in the catalogue")]
    UnknownPermission(Permission),
    /// The user is not a member of the tenant.
    #[error("user {0} is not a member of tenant {1}")]
    NotMember(UserId, TenantId),
    /// Built-in entries cannot be changed.
    #[error("{0} is built in and cannot be changed")]
    Protected(String),
    /// The database cannot be reached; the caller may retry later.
    #[error("the store is unavailable")]
    Unavailable(String),
    /// Anything else; the message is for the log, not the client.
    #[error("store failure")]
    Internal(String),
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Persistent state of latchkey.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Succeeds when the database answers.
    async fn ping(&self) -> StoreResult<()>;

    /// Creates the system tenant and `root` (its first admin key) unless the tenant
    /// exists already. Returns whether it created them.
    async fn bootstrap(
        &self,
        system: &Tenant,
        root: &TokenRecord,
        ctx: &AuditContext,
    ) -> StoreResult<bool>;

    /// Creates a tenant; [`StoreError::Conflict`] when the id is taken.
    async fn create_tenant(&self, tenant: &Tenant, ctx: &AuditContext) -> StoreResult<()>;
    /// One tenant.
    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>>;
    /// Tenants by id.
    async fn list_tenants(&self, page: &PageRequest) -> StoreResult<Page<Tenant>>;
    /// Revokes every token of the tenant, then deletes it with its memberships and tokens.
    /// Returns false when there was no such tenant.
    async fn delete_tenant(&self, id: &TenantId, ctx: &AuditContext) -> StoreResult<bool>;

    /// Creates or updates a catalogue entry.
    async fn put_permission(&self, def: &PermissionDef, ctx: &AuditContext) -> StoreResult<()>;
    /// The whole catalogue, by name.
    async fn list_permissions(&self) -> StoreResult<Vec<PermissionDef>>;

    /// Creates or replaces a role.
    async fn put_role(&self, role: &RoleDef, ctx: &AuditContext) -> StoreResult<()>;
    /// All roles, by name.
    async fn list_roles(&self) -> StoreResult<Vec<RoleDef>>;
    /// The union of the current permissions of `roles`; [`StoreError::UnknownRole`] for
    /// the first that does not exist.
    async fn role_permissions(&self, roles: &[RoleName]) -> StoreResult<PermissionSet>;
    /// [`StoreError::UnknownPermission`] for the first of `permissions` not in the catalogue.
    async fn check_permissions_exist(&self, permissions: &[Permission]) -> StoreResult<()>;

    /// Creates or replaces a membership and returns it.
    async fn put_membership(
        &self,
        tenant: &TenantId,
        user: &UserId,
        roles: &[RoleName],
        ctx: &AuditContext,
    ) -> StoreResult<Membership>;
    /// One membership with its current permissions.
    async fn get_membership(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> StoreResult<Option<Membership>>;
    /// The memberships of a tenant, by user id.
    async fn list_memberships(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<Membership>>;
    /// Removes a membership and revokes the user's personal tokens in that tenant.
    /// Returns false when there was no such membership.
    async fn remove_membership(
        &self,
        tenant: &TenantId,
        user: &UserId,
        ctx: &AuditContext,
    ) -> StoreResult<bool>;
    /// Removes a user everywhere: memberships go, personal tokens are revoked and deleted.
    /// Returns false when the user had neither memberships nor tokens.
    async fn delete_user(&self, user: &UserId, ctx: &AuditContext) -> StoreResult<bool>;

    /// Stores a new token.
    async fn create_token(&self, record: &TokenRecord, ctx: &AuditContext) -> StoreResult<()>;
    /// One token with its stored secret.
    async fn get_token(&self, id: TokenId) -> StoreResult<Option<TokenRecord>>;
    /// Tokens of one owner, newest first.
    async fn list_tokens(
        &self,
        owner: &TokenOwnerFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Token>>;
    /// Changes a token's display name; `None` when there is no such token.
    async fn rename_token(
        &self,
        id: TokenId,
        name: &TokenName,
        ctx: &AuditContext,
    ) -> StoreResult<Option<Token>>;
    /// Revokes a token at `ctx.at`; revoking a revoked token changes nothing. `None` when
    /// there is no such token.
    async fn revoke_token(&self, id: TokenId, ctx: &AuditContext) -> StoreResult<Option<Token>>;
}
