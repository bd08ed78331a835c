//! The storage contract. Each method is one atomic domain operation: the change, its
//! revocation-log entries and its audit event commit together or not at all.
//!
//! Backends live in `latchkey-store`; the server holds an `Arc<dyn Store>` and never
//! learns which database it talks to.

use crate::audit::{AuditContext, AuditRecord};
use crate::ids::{RoleName, TenantId, TokenId, UserId};
use crate::permission::{Permission, PermissionSet};
use crate::timestamp::Timestamp;
use crate::token::{Owner, Token, TokenName, TokenRecord};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};

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

/// A signing key as stored: the private half sealed under the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// The key id published in the JWKS and JWT headers.
    pub kid: String,
    /// Creation order; assigned by the store.
    pub seq: i64,
    /// The JOSE algorithm.
    pub alg: crate::jwt::Algorithm,
    /// Creation time.
    pub created_at: Timestamp,
    /// AES-256-GCM nonce and ciphertext of the private key.
    pub private_sealed: Vec<u8>,
    /// The public JWK, as JSON text.
    pub public_jwk: String,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SigningKeyRecord({}, {}, seq {})",
            self.kid,
            self.alg.as_str(),
            self.seq
        )
    }
}

/// When a rotation should happen; checked under the rotation lock so that several
/// replicas rotate exactly once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotateWhen {
    /// Unconditionally (an operator asked).
    Always,
    /// Only while there are fewer keys than this (first start).
    FewerThan(i64),
    /// Only when the newest key was created before this instant (the schedule).
    NewestOlderThan(Timestamp),
}

/// A refresh-token family: the chain of rotations that started with one grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshFamily {
    /// The family id.
    pub id: TokenId,
    /// The token whose grant started it.
    pub token_id: TokenId,
    /// When it started.
    pub created_at: Timestamp,
    /// Its absolute end.
    pub expires_at: Timestamp,
    /// When it was revoked.
    pub revoked_at: Option<Timestamp>,
    /// The scope granted at its start; refreshes keep it.
    pub scope: crate::PermissionSet,
    /// The audience granted at its start.
    pub audience: String,
    /// The RFC 7638 thumbprint of the DPoP key it is bound to, when it was started with
    /// a proof: every refresh must then come with a proof by that key.
    pub dpop_jkt: Option<String>,
}

/// One refresh token of a family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// The id embedded in the `lk_rt_` string.
    pub id: TokenId,
    /// Its family.
    pub family_id: TokenId,
    /// Salt and hash of its secret.
    pub secret: crate::secret::StoredSecret,
    /// The `jti` of the access token issued with it.
    pub jti: String,
    /// When that access token expires.
    pub access_expires_at: Timestamp,
    /// Issue time.
    pub created_at: Timestamp,
    /// When it was exchanged; a refresh token works once.
    pub used_at: Option<Timestamp>,
}

/// The result of presenting a refresh token for rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// It was unused: it is now used and its successor stored.
    Rotated,
    /// It had been used already: the whole family is now revoked.
    Reused,
}

/// The result of rolling a token ([`Store::roll_token`]). On any refusal nothing was
/// written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollOutcome {
    /// The successor is stored; the old token as it is now (`rolled_to`, `revokes_at`,
    /// and revoked when the window was empty).
    Rolled(Box<Token>),
    /// There is no such token.
    NotFound,
    /// The token was rolled before.
    AlreadyRolled,
    /// The token is revoked or expired.
    Revoked,
}

/// A tenant's own policy as stored (docs/API.md, "Tenant policies").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// Its rules.
    pub policy: crate::policy::TenantPolicy,
    /// When it was last set.
    pub updated_at: Timestamp,
}

/// A console session (docs/CONSOLE.md): who it acts as, and for how long. It starts as
/// a single-use code and becomes a session when the code is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleSession {
    /// Its id; audit events of its actions name `console:<id>` as their actor.
    pub id: TokenId,
    /// The tenant it acts in (the system tenant for an operator's session).
    pub tenant_id: TenantId,
    /// The user it acts as; `None` for an operator signed in with an admin key.
    pub user_id: Option<UserId>,
    /// The admin key an operator signed in with, re-checked on every request.
    pub admin_token_id: Option<TokenId>,
    /// When it was made.
    pub created_at: Timestamp,
    /// The credential that made it.
    pub created_by: String,
    /// Until when its code may be opened.
    pub code_expires_at: Timestamp,
    /// When its code was opened (or the operator signed in).
    pub opened_at: Option<Timestamp>,
    /// When it ends at the latest.
    pub expires_at: Timestamp,
    /// When it was ended (logout, or revoked through the API).
    pub ended_at: Option<Timestamp>,
}

impl ConsoleSession {
    /// Whether it may act at `now`: opened, not ended, not expired.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.opened_at.is_some() && self.ended_at.is_none() && now < self.expires_at
    }
}

/// How a new console session is reached: by a code to open, or already open with a
/// cookie (an operator's sign-in). Both hold SHA-256 digests, never the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleKey {
    /// The digest of the single-use code.
    Code(Vec<u8>),
    /// The digest of the cookie's secret.
    Cookie(Vec<u8>),
}

/// A successful authentication of a token, as the batched `last_used_at` update takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenUse {
    /// The token.
    pub token_id: TokenId,
    /// When.
    pub at: Timestamp,
    /// From where, when known.
    pub ip: Option<String>,
}

/// What a leak report found (docs/API.md, "Leak reports"), checked: the secret verified
/// or the JWT's signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeakedCredential {
    /// A token's own secret (an api key, a client secret, a long-lived JWT): the token.
    Token(TokenId),
    /// A refresh token: its whole family, and the access tokens issued from it.
    RefreshFamily(TokenId),
    /// One access token: its `jti`, on the deny list until it expires.
    AccessToken {
        /// The JWT's `jti`.
        jti: String,
        /// The token it was issued to.
        token_id: TokenId,
        /// That token's tenant.
        tenant: TenantId,
        /// Its `exp`.
        expires_at: Timestamp,
    },
}

/// Where a leaked secret was seen, as its reporter says: what the `token.leaked` audit
/// event records. Never the secret.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LeakReport {
    /// Where it was found.
    pub url: Option<String>,
    /// Which kind of place (a scanning partner's `source`, e.g. `content`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The scanning partner's name for the kind of secret.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub secret_type: Option<String>,
}

/// What an entry of the revocation feed names (docs/API.md, "Revocation feed").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedKind {
    /// A token: every credential whose `client_id` is the subject is revoked.
    Token,
    /// One access token, by its `jti`.
    Jti,
    /// A refresh-token family.
    Family,
    /// A role's permissions changed: the entry holds them now.
    Role,
    /// A membership changed: the entry holds the member's roles now (none once it ends).
    Member,
    /// A tenant's policy changed: the entry holds its network rules now.
    TenantPolicy,
}

impl FeedKind {
    /// The wire and storage name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Jti => "jti",
            Self::Family => "family",
            Self::Role => "role",
            Self::Member => "member",
            Self::TenantPolicy => "tenant_policy",
        }
    }

    /// The inverse of [`FeedKind::as_str`].
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "token" => Some(Self::Token),
            "jti" => Some(Self::Jti),
            "family" => Some(Self::Family),
            "role" => Some(Self::Role),
            "member" => Some(Self::Member),
            "tenant_policy" => Some(Self::TenantPolicy),
            _ => None,
        }
    }

    /// True for entries that carry state (compacted to the latest per subject) rather
    /// than a revocation.
    pub fn is_state(self) -> bool {
        matches!(self, Self::Role | Self::Member | Self::TenantPolicy)
    }
}

/// One entry of the revocation feed, in commit order: a revocation, or the new state of
/// something a grant is computed from (a role, a membership).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevocationEntry {
    /// Position in the log: in commit order; gaps only where compaction removed entries.
    pub seq: i64,
    /// What the entry names.
    pub kind: FeedKind,
    /// The token id, `jti` or family id; the role name; the member's user id.
    pub subject: String,
    /// The tenant concerned (a member's tenant); none for roles.
    pub tenant_id: Option<String>,
    /// When it was revoked or changed.
    pub revoked_at: Timestamp,
    /// When the entry stops mattering (no credential it matches can still be valid);
    /// `None` for never. Compaction removes entries past this instant.
    pub expires_at: Option<Timestamp>,
    /// `role` entries: the role's permissions now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permissions: Option<Vec<String>>,
    /// `member` entries: the member's roles now; empty once the membership ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub roles: Option<Vec<String>>,
    /// `tenant_policy` entries: the tenant's network rules now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network: Option<crate::network::NetworkRules>,
}

/// One aggregate of a gateway's usage batch: how often a token was used in one minute,
/// on one route, with one method, status class and client address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageRecord {
    /// The token.
    pub token_id: TokenId,
    /// The start of the minute.
    pub minute: Timestamp,
    /// The gateway route (its prefix).
    pub route: String,
    /// The HTTP method.
    pub method: String,
    /// `2xx`, `4xx`, …
    pub status_class: String,
    /// The client address.
    pub client_ip: String,
    /// How many requests.
    pub count: i64,
    /// The last of them.
    pub last_used_at: Timestamp,
    /// The client address's country, by the server's GeoIP database at ingest; `None`
    /// without a database or for an address it does not know.
    pub country: Option<crate::country::CountryCode>,
}

/// A webhook endpoint (docs/API.md, "Webhooks"). Its id is a UUID like a token's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Webhook {
    /// The endpoint's id.
    pub id: TokenId,
    /// The one tenant whose events it receives; `None`: every tenant's (admins only).
    pub tenant_id: Option<TenantId>,
    /// Where deliveries are POSTed.
    pub url: String,
    /// The events it subscribes to, sorted.
    pub events: Vec<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// The credential (token id) that created it.
    pub created_by: String,
    /// When the server disabled it after repeated failures; it then receives nothing.
    pub disabled_at: Option<Timestamp>,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// After a secret rotation: until when the previous secret signs too.
    pub previous_secret_expires_at: Option<Timestamp>,
}

/// A webhook as stored: the endpoint and its signing secret sealed under the master key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRecord {
    /// The endpoint.
    pub webhook: Webhook,
    /// AES-256-GCM nonce and ciphertext of the secret.
    pub secret_sealed: Vec<u8>,
    /// The previous secret, sealed, while it still signs (until
    /// `previous_secret_expires_at`).
    pub previous_secret_sealed: Option<Vec<u8>>,
}

impl std::fmt::Debug for WebhookRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WebhookRecord({:?})", self.webhook)
    }
}

/// One try at sending a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookAttempt {
    /// 1 for the first try.
    pub attempt: i64,
    /// When it started.
    pub at: Timestamp,
    /// How long it took.
    pub duration_ms: i64,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<i64>,
    /// Why it failed, when it did (never a secret).
    pub error: Option<String>,
}

/// One event to send to one endpoint: a row of the outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookDelivery {
    /// The endpoint.
    pub webhook_id: TokenId,
    /// The audit event's seq: an endpoint's deliveries go out in this order.
    pub seq: i64,
    /// The event type (`token.created`, …).
    pub event: String,
    /// The JSON body sent, exactly.
    pub payload: String,
    /// When the event happened.
    pub created_at: Timestamp,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// When the next try is due, while pending.
    pub next_attempt_at: Timestamp,
    /// When it was delivered or given up.
    pub finished_at: Option<Timestamp>,
    /// The tries so far, oldest first.
    pub attempts: Vec<WebhookAttempt>,
}

/// What became of a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryNext {
    /// The receiver answered 2xx.
    Delivered,
    /// Try again at this time.
    RetryAt(Timestamp),
    /// It failed for long enough: give up and move on to the next delivery.
    Failed,
}

/// The result of one attempt, to record ([`Store::finish_webhook_attempt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAttemptOutcome {
    /// The endpoint.
    pub webhook_id: TokenId,
    /// The delivery.
    pub seq: i64,
    /// The attempt.
    pub attempt: WebhookAttempt,
    /// What becomes of the delivery.
    pub next: DeliveryNext,
    /// Disable the endpoint when this many deliveries in a row have failed for good.
    pub disable_after: i64,
}

/// What an operator watches of the store (docs/OPERATIONS.md, "Metrics").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreGauges {
    /// The revocation feed's head sequence number.
    pub feed_head: i64,
    /// Webhook deliveries still pending.
    pub webhook_outbox: i64,
    /// Open connections of this process's pools, those idle, and the most they open.
    pub connections: u32,
    pub idle: u32,
    pub max_connections: u32,
}

/// The stored head of the audit chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    /// The seq of the last event (0 for an empty chain).
    pub seq: i64,
    /// Its chain hash, hex.
    pub hash: String,
    /// The first seq that was written with a MAC: events before it predate MACs.
    pub macs_from: i64,
}

/// Which audit events to list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this tenant's events.
    pub tenant_id: Option<String>,
    /// Only events whose target is this (a token id, a user id, …).
    pub target: Option<String>,
    /// Only this actor's events.
    pub actor: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// At or after this instant.
    pub since: Option<Timestamp>,
    /// Before this instant.
    pub until: Option<Timestamp>,
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
    /// Rolls token `old` (docs/API.md, "Rolling a token"): stores `successor` (whose
    /// `rolled_from` is `old`) with its `token.created` event, marks `old` with
    /// `rolled_to` and `revokes_at`, and records `token.rolled`, in one transaction. A
    /// `revokes_at` at or before `ctx.at` revokes `old` at once (reason `rolled`). Refuses
    /// a token that is rolled, revoked or expired at `ctx.at`, writing nothing.
    async fn roll_token(
        &self,
        old: TokenId,
        successor: &TokenRecord,
        revokes_at: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<RollOutcome>;
    /// Revokes, with reason `rolled`, every rolled token whose grace window ended at or
    /// before `ctx.at`. Returns the ids it revoked.
    async fn revoke_rolled(&self, ctx: &AuditContext) -> StoreResult<Vec<TokenId>>;

    /// Stores a new trust with its `trust.created` event; [`StoreError::UnknownTenant`]
    /// when its tenant is gone.
    async fn create_trust(
        &self,
        trust: &crate::trust::Trust,
        ctx: &AuditContext,
    ) -> StoreResult<()>;
    /// One trust.
    async fn get_trust(&self, id: TokenId) -> StoreResult<Option<crate::trust::Trust>>;
    /// The trusts of a tenant, newest first.
    async fn list_trusts(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<crate::trust::Trust>>;
    /// The unrevoked trusts whose issuer is exactly `issuer`, of every tenant.
    async fn trusts_for_issuer(&self, issuer: &str) -> StoreResult<Vec<crate::trust::Trust>>;
    /// Changes a trust's display name, with its `trust.renamed` event; `None` when there
    /// is no such trust.
    async fn rename_trust(
        &self,
        id: TokenId,
        name: &TokenName,
        ctx: &AuditContext,
    ) -> StoreResult<Option<crate::trust::Trust>>;
    /// Revokes a trust at `ctx.at` with its `trust.revoked` event and a `token` entry on
    /// the revocation feed naming its id (the `client_id` of its access tokens);
    /// revoking a revoked trust changes nothing. `None` when there is no such trust.
    async fn revoke_trust(
        &self,
        id: TokenId,
        ctx: &AuditContext,
    ) -> StoreResult<Option<crate::trust::Trust>>;
    /// Records that the assertion `jti` of `issuer` was used, to be remembered until
    /// `expires_at`. False, recording nothing, when it was used before and is still
    /// remembered at `now` — on any replica sharing the database.
    async fn use_assertion_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// Forgets assertion `jti`s that expired before `now`; returns how many.
    async fn prune_assertion_jtis(&self, now: Timestamp) -> StoreResult<u64>;

    /// A tenant's own policy; `None` when it never set one.
    async fn get_policy(&self, tenant: &TenantId) -> StoreResult<Option<StoredPolicy>>;
    /// Replaces a tenant's policy, with its `policy.put` event;
    /// [`StoreError::UnknownTenant`] when there is no such tenant.
    async fn put_policy(
        &self,
        tenant: &TenantId,
        policy: &crate::policy::TenantPolicy,
        ctx: &AuditContext,
    ) -> StoreResult<StoredPolicy>;
    /// Every tenant's own policy, by tenant id.
    async fn list_policies(&self) -> StoreResult<Vec<(TenantId, crate::policy::TenantPolicy)>>;
    /// Tokens neither revoked nor expired at `now`, of one tenant or of all (`None`),
    /// whose last use (their creation when never used) is at or before `idle_since`
    /// (`None`: any): least recently used first, at most `limit`.
    async fn live_tokens(
        &self,
        tenant: Option<&TenantId>,
        idle_since: Option<Timestamp>,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Token>>;
    /// Revokes, with reason `unused` and a `token.revoked` event each, those of
    /// `tokens` still unrevoked and still unused since their instant: a use recorded
    /// meanwhile saves a token. Returns the ids revoked.
    async fn revoke_unused(
        &self,
        tokens: &[(TokenId, Timestamp)],
        ctx: &AuditContext,
    ) -> StoreResult<Vec<TokenId>>;
    /// Moves each token's `last_used_at` (and `last_used_ip`, when given) forward to its
    /// use, in one transaction; never backward.
    async fn touch_tokens(&self, uses: &[TokenUse]) -> StoreResult<()>;
    /// The token whose secret has this lookup value (`SecretCodec::lookup`; only tokens
    /// made since migration 0010 have one).
    async fn find_token_by_lookup(&self, lookup: &[u8]) -> StoreResult<Option<TokenRecord>>;
    /// Revokes what a leak report found, in one transaction with its revocation-log
    /// entries and audit events: a token with reason `leaked` (`token.revoked`), a
    /// refresh family (`refresh.revoked`) or one access token (`access_token.revoked`),
    /// each followed by `token.leaked` carrying `report`. Returns false, writing nothing,
    /// when it was revoked already or does not exist: a second report changes nothing.
    async fn revoke_leaked(
        &self,
        leaked: &LeakedCredential,
        report: &LeakReport,
        ctx: &AuditContext,
    ) -> StoreResult<bool>;

    /// The signing keys to publish: the three newest (next, current, previous) and any
    /// older key that signed a long-lived JWT still alive at `now`. Newest first.
    async fn signing_keys(&self, now: Timestamp) -> StoreResult<Vec<SigningKeyRecord>>;
    /// Stores `key` as the newest key if `when` holds under the rotation lock, and drops
    /// keys that can no longer verify anything. Returns whether it rotated.
    async fn rotate_signing_key(
        &self,
        key: &SigningKeyRecord,
        when: RotateWhen,
        ctx: &AuditContext,
    ) -> StoreResult<bool>;

    /// Starts a refresh family with its first token; revokes the token's oldest families
    /// beyond `max_families`.
    async fn start_refresh_family(
        &self,
        family: &RefreshFamily,
        first: &RefreshRecord,
        max_families: u32,
        ctx: &AuditContext,
    ) -> StoreResult<()>;
    /// Remembers a DPoP proof's replay `key` until `expires_at`, for every replica;
    /// false when it is remembered already (a replay). Forgets keys expired at `now`.
    async fn remember_dpop_proof(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// A refresh token with its family.
    async fn get_refresh(&self, id: TokenId)
    -> StoreResult<Option<(RefreshRecord, RefreshFamily)>>;
    /// Marks `used` as used and stores `next`, atomically; if `used` was used already,
    /// revokes the family instead.
    async fn rotate_refresh(
        &self,
        used: TokenId,
        next: &RefreshRecord,
        ctx: &AuditContext,
    ) -> StoreResult<RefreshOutcome>;
    /// Revokes a family and the access tokens issued from it. False if unknown or revoked.
    async fn revoke_refresh_family(&self, family: TokenId, ctx: &AuditContext)
    -> StoreResult<bool>;
    /// Puts one access token's `jti` on the deny list until `expires_at`.
    async fn revoke_jti(
        &self,
        jti: &str,
        token_id: TokenId,
        tenant: &TenantId,
        expires_at: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<()>;
    /// The `jti`s on the deny list whose tokens have not expired at `now`.
    async fn revoked_jtis(&self, now: Timestamp) -> StoreResult<Vec<String>>;

    /// Up to `limit` deny-list entries after `after`, in order, and the head seq.
    async fn revocations_after(
        &self,
        after: i64,
        limit: u32,
    ) -> StoreResult<(Vec<RevocationEntry>, i64)>;
    /// Deletes entries that stopped mattering before `now`; returns how many.
    async fn compact_revocations(&self, now: Timestamp) -> StoreResult<u64>;
    /// Once per database: appends the state of every role and membership to the feed, so
    /// that followers know what every grant is computed from (later changes append their
    /// own). Returns how many entries it appended; 0 when it had been done.
    async fn backfill_feed_state(&self, at: Timestamp) -> StoreResult<u64>;

    /// Adds a batch of usage aggregates in one transaction, moves each token's
    /// `last_used_at`/`last_used_ip` forward, and records a `token.first_seen_ip` event the
    /// first time a token is seen from an address and a `token.first_seen_country` event
    /// the first time from a country. Records of unknown tokens are skipped.
    /// Returns how many records were kept.
    async fn record_usage(&self, batch: &[UsageRecord], ctx: &AuditContext) -> StoreResult<u64>;

    /// The usage aggregates of one token with `since <= minute < until`, oldest first
    /// (each record's `last_used_at` is its minute).
    async fn token_usage(
        &self,
        token: TokenId,
        since: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Vec<UsageRecord>>;
    /// Deletes usage aggregates of minutes before `before`; returns how many.
    async fn compact_usage(&self, before: Timestamp) -> StoreResult<u64>;

    /// Stores a webhook endpoint with its `webhook.created` event.
    async fn create_webhook(&self, record: &WebhookRecord, ctx: &AuditContext) -> StoreResult<()>;
    /// One webhook with its sealed secret.
    async fn get_webhook(&self, id: TokenId) -> StoreResult<Option<WebhookRecord>>;
    /// Webhooks by id: those of `tenant` only (not the all-tenant ones), or all of them.
    async fn list_webhooks(
        &self,
        tenant: Option<&TenantId>,
        page: &PageRequest,
    ) -> StoreResult<Page<Webhook>>;
    /// Deletes a webhook with its deliveries, recording `webhook.deleted`. False when
    /// there was no such webhook.
    async fn delete_webhook(&self, id: TokenId, ctx: &AuditContext) -> StoreResult<bool>;
    /// A webhook's deliveries with their attempts, newest first; `page.after` is a seq.
    async fn webhook_deliveries(
        &self,
        id: TokenId,
        page: &PageRequest,
    ) -> StoreResult<Page<WebhookDelivery>>;
    /// Leases one enabled webhook whose oldest pending delivery is due at `now` and
    /// that no replica holds, until `lease_until`, and returns it with that delivery.
    /// On PostgreSQL replicas skip each other's locked rows (`FOR UPDATE SKIP LOCKED`).
    async fn lease_webhook_delivery(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Option<(WebhookRecord, WebhookDelivery)>>;
    /// Records an attempt, moves the delivery on (delivered, retry later, failed),
    /// disables the endpoint after `disable_after` failed deliveries in a row (with a
    /// `webhook.disabled` event at `ctx`), and releases the lease.
    async fn finish_webhook_attempt(
        &self,
        outcome: &WebhookAttemptOutcome,
        ctx: &AuditContext,
    ) -> StoreResult<()>;

    /// Queues a `webhook.ping` delivery for webhook `id` alone, with a `webhook.pinged`
    /// event, and re-enables the webhook if it was disabled. Returns the delivery's seq;
    /// `None` when there is no such webhook.
    async fn ping_webhook(&self, id: TokenId, ctx: &AuditContext) -> StoreResult<Option<i64>>;
    /// Queues delivery `seq` of webhook `id` again, due at `ctx.at` (its attempts kept),
    /// with a `webhook.redelivered` event, and re-enables the webhook if it was
    /// disabled. False when there is no such delivery.
    async fn redeliver_webhook(
        &self,
        id: TokenId,
        seq: i64,
        ctx: &AuditContext,
    ) -> StoreResult<bool>;

    /// Replaces webhook `id`'s secret with `sealed`, keeping the current one as the
    /// previous secret, which signs too until `previous_until`, with a
    /// `webhook.secret_rotated` event. `None` when there is no such webhook.
    async fn rotate_webhook_secret(
        &self,
        id: TokenId,
        sealed: &[u8],
        previous_until: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<Option<Webhook>>;

    /// Writes a `token.expiring` event (docs/API.md, "Webhooks") for each unrevoked
    /// token whose `expires_at` is within 7 days, and again within 1 day, of `ctx.at`,
    /// once per token and window across replicas. Returns how many it wrote.
    async fn notify_expiring(&self, ctx: &AuditContext) -> StoreResult<u64>;

    /// Appends events to the audit chain in one transaction (group commit).
    async fn append_audit(
        &self,
        events: &[(AuditContext, crate::audit::AuditEvent)],
    ) -> StoreResult<()>;
    /// Audit events matching `filter`, newest first; `page.after` is a seq.
    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<AuditRecord>>;
    /// Audit events in chain order after `after`, for export and verification.
    async fn audit_chain(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRecord>>;
    /// The head of the chain.
    async fn audit_head(&self) -> StoreResult<AuditHead>;

    /// Stores a console session reached by `key`, with a `console.session_created`
    /// event; fails with `UnknownTenant` when its tenant is gone.
    async fn create_console_session(
        &self,
        session: &ConsoleSession,
        key: &ConsoleKey,
        ctx: &AuditContext,
    ) -> StoreResult<()>;
    /// Opens the session whose code digest is `code_hash`, once: binds it to
    /// `cookie_hash` and ends it at `expires_at` at the latest. `None` when no unopened,
    /// unexpired code has that digest (a second opening finds none).
    async fn open_console_session(
        &self,
        code_hash: &[u8],
        cookie_hash: &[u8],
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Option<ConsoleSession>>;
    /// The session whose cookie digest is `cookie_hash`, live or not.
    async fn console_session(&self, cookie_hash: &[u8]) -> StoreResult<Option<ConsoleSession>>;
    /// A session by id, live or not.
    async fn get_console_session(&self, id: TokenId) -> StoreResult<Option<ConsoleSession>>;
    /// Ends a session (and forgets what it had yet to show), with a
    /// `console.session_ended` event; false when it had already ended or is unknown.
    async fn end_console_session(&self, id: TokenId, ctx: &AuditContext) -> StoreResult<bool>;
    /// Holds a sealed secret for the one page of `session` that shows it.
    async fn put_console_reveal(
        &self,
        session: TokenId,
        id: TokenId,
        sealed: &[u8],
        expires_at: Timestamp,
    ) -> StoreResult<()>;
    /// Takes (reads and deletes) a held secret of `session`; `None` when it was already
    /// taken, has expired, or belongs to another session.
    async fn take_console_reveal(
        &self,
        session: TokenId,
        id: TokenId,
        now: Timestamp,
    ) -> StoreResult<Option<Vec<u8>>>;
    /// The store's gauges, read when metrics are scraped.
    async fn gauges(&self) -> StoreResult<StoreGauges>;
}
