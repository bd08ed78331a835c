//! The domain operations in portable SQL. Every write is one transaction holding the
//! change, its revocation-log entries and its audit event; a serialization failure or
//! deadlock reruns the whole transaction a bounded number of times.

use crate::error::{TxError, TxResult, from_sqlx};
use crate::rows::{self, TOKEN_COLUMNS, join};
use async_trait::async_trait;
use latchkey_core::audit::{AuditAction, AuditContext, AuditEvent, AuditMacKey, AuditRecord};
use latchkey_core::policy::TenantPolicy;
use latchkey_core::store::{
    AuditFilter, AuditHead, ConsoleKey, ConsoleSession, FeedKind, LeakReport, LeakedCredential,
    Membership, Page, PageRequest, PermissionDef, RefreshFamily, RefreshOutcome, RefreshRecord,
    RevocationEntry, RoleDef, RollOutcome, RotateWhen, SigningKeyRecord, Store, StoreError,
    StoreGauges, StoreResult, StoredPolicy, Tenant, TokenOwnerFilter, TokenUse, UsageRecord,
    Webhook, WebhookAttemptOutcome, WebhookDelivery, WebhookRecord,
};
use latchkey_core::token::{
    ClientKey, Owner, RevokedReason, Token, TokenKind, TokenName, TokenRecord,
};
use latchkey_core::{Permission, PermissionSet, RoleName, TenantId, Timestamp, TokenId, UserId};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};
use std::time::Duration;

/// The pools' type, kept out of the public API.
pub(crate) type Pool = sqlx::AnyPool;

const MAX_ATTEMPTS: u32 = 5;

/// Runs a transaction function until it succeeds, fails for good, or has been tried
/// `MAX_ATTEMPTS` times.
macro_rules! retrying {
    ($attempt:expr) => {{
        let mut attempt = 1u32;
        loop {
            match $attempt.await {
                Err(error) if attempt < MAX_ATTEMPTS && error.is_retryable() => {
                    tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                    attempt += 1;
                }
                other => break other.map_err(TxError::into_store_error),
            }
        }
    }};
}

/// A [`Store`] on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pub(crate) writer: Pool,
    pub(crate) reader: Pool,
    /// Signs every audit event as it is appended.
    pub(crate) audit_key: AuditMacKey,
    /// `writer` and `reader` are the same pool (PostgreSQL).
    pub(crate) one_pool: bool,
}

impl SqlStore {
    pub(crate) fn new(writer: Pool, reader: Pool, audit_key: AuditMacKey) -> Self {
        Self {
            one_pool: false,
            writer,
            reader,
            audit_key,
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    pub(crate) async fn reader(&self) -> StoreResult<sqlx::pool::PoolConnection<sqlx::Any>> {
        self.reader.acquire().await.map_err(from_sqlx)
    }

    /// A read-only transaction on the reader whose statements all see one snapshot:
    /// SQLite's deferred transaction keeps the snapshot of its first read, and
    /// PostgreSQL needs REPEATABLE READ for it (READ COMMITTED takes one per statement).
    pub(crate) async fn read_snapshot(&self) -> TxResult<sqlx::Transaction<'static, sqlx::Any>> {
        let mut tx = self.reader.begin().await?;
        if crate::Backend::of_connection(&tx) == crate::Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }
}

/// Appends an entry to the deny list inside the caller's transaction.
pub(crate) async fn append_revocation(
    conn: &mut AnyConnection,
    kind: FeedKind,
    subject: &str,
    tenant: &str,
    revoked_at: Timestamp,
    expires_at: Option<i64>,
) -> TxResult<i64> {
    append_entry(
        conn,
        kind,
        subject,
        Some(tenant),
        revoked_at,
        expires_at,
        None,
    )
    .await
}

async fn append_entry(
    conn: &mut AnyConnection,
    kind: FeedKind,
    subject: &str,
    tenant: Option<&str>,
    at: Timestamp,
    expires_at: Option<i64>,
    state: Option<String>,
) -> TxResult<i64> {
    let seq: i64 = sqlx::query_scalar(
        "UPDATE chain_heads SET seq = seq + 1 WHERE name = 'revocations' RETURNING seq",
    )
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO revocations (seq, kind, subject, tenant_id, revoked_at, expires_at, state) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(seq)
    .bind(kind.as_str())
    .bind(subject.to_owned())
    .bind(tenant.map(str::to_owned))
    .bind(at.millis())
    .bind(expires_at)
    .bind(state)
    .execute(&mut *conn)
    .await?;
    Ok(seq)
}

/// Appends the state of a role or a membership to the feed, and deletes the older state
/// entries of the same key: a follower needs only the latest (docs/API.md, "Revocation
/// feed").
pub(crate) async fn append_state(
    conn: &mut AnyConnection,
    kind: FeedKind,
    subject: &str,
    tenant: Option<&str>,
    at: Timestamp,
    state: serde_json::Value,
) -> TxResult<i64> {
    sqlx::query(
        "DELETE FROM revocations WHERE kind = $1 AND subject = $2 \
         AND COALESCE(tenant_id, '') = $3",
    )
    .bind(kind.as_str())
    .bind(subject.to_owned())
    .bind(tenant.unwrap_or("").to_owned())
    .execute(&mut *conn)
    .await?;
    append_entry(
        conn,
        kind,
        subject,
        tenant,
        at,
        None,
        Some(state.to_string()),
    )
    .await
}

/// Appends the current permissions of `role`.
async fn append_role_state(conn: &mut AnyConnection, role: &str, at: Timestamp) -> TxResult<()> {
    let permissions: Vec<String> = sqlx::query_scalar(
        "SELECT permission FROM role_permissions WHERE role = $1 ORDER BY permission",
    )
    .bind(role.to_owned())
    .fetch_all(&mut *conn)
    .await?;
    let state = json!({ "permissions": permissions });
    append_state(conn, FeedKind::Role, role, None, at, state).await?;
    Ok(())
}

/// Appends the current roles of `user` in `tenant`: none once the membership has ended.
async fn append_member_state(
    conn: &mut AnyConnection,
    tenant: &str,
    user: &str,
    at: Timestamp,
) -> TxResult<()> {
    let roles: Vec<String> = sqlx::query_scalar(
        "SELECT role FROM membership_roles WHERE tenant_id = $1 AND user_id = $2 ORDER BY role",
    )
    .bind(tenant.to_owned())
    .bind(user.to_owned())
    .fetch_all(&mut *conn)
    .await?;
    let state = json!({ "roles": roles });
    append_state(conn, FeedKind::Member, user, Some(tenant), at, state).await?;
    Ok(())
}

/// Marks the tokens selected by `filter` revoked at `at` for `reason` and logs each on
/// the deny list. Returns the ids it revoked.
///
/// Each entry's `expires_at` is when it stops mattering (the compaction rule): a
/// long-lived JWT matters until the token's own expiry (forever without one); any other
/// token's JWTs were all issued before `at` and live at most its access-token lifetime.
pub(crate) async fn revoke_where(
    conn: &mut AnyConnection,
    filter: &str,
    binds: &[&str],
    at: Timestamp,
    reason: RevokedReason,
) -> TxResult<Vec<String>> {
    // The reason is one of core's fixed names, never client text.
    let reason = reason.as_str();
    let sql = format!(
        "UPDATE tokens SET revoked_at = $1, revoked_reason = '{reason}' \
         WHERE revoked_at IS NULL AND {filter} \
         RETURNING id, tenant_id, kind, expires_at, access_token_ttl_seconds"
    );
    let mut query = sqlx::query(&sql).bind(at.millis());
    for value in binds {
        query = query.bind(value.to_string());
    }
    let revoked = query.fetch_all(&mut *conn).await?;
    let mut ids = Vec::with_capacity(revoked.len());
    for row in revoked {
        let id: String = row.try_get("id")?;
        let tenant: String = row.try_get("tenant_id")?;
        let kind: String = row.try_get("kind")?;
        let token_expiry: Option<i64> = row.try_get("expires_at")?;
        let ttl: i64 = row.try_get("access_token_ttl_seconds")?;
        let matters_until = if TokenKind::parse(&kind) == Some(TokenKind::Jwt) {
            token_expiry
        } else {
            let last_jwt = at.plus_seconds(ttl).millis();
            Some(token_expiry.map_or(last_jwt, |expiry| expiry.min(last_jwt)))
        };
        append_revocation(conn, FeedKind::Token, &id, &tenant, at, matters_until).await?;
        ids.push(id);
    }
    ids.sort();
    Ok(ids)
}

/// Marks the unrevoked trusts selected by `filter` (its first bind is `$2`) revoked at
/// `at`, each with a `token` entry on the feed: its access tokens carry its id as their
/// `client_id`, and the entry matters until the last of them has expired. Returns the
/// ids it revoked.
pub(crate) async fn revoke_trusts_where(
    conn: &mut AnyConnection,
    filter: &str,
    bind: &str,
    at: Timestamp,
) -> TxResult<Vec<String>> {
    let sql = format!(
        "UPDATE trusts SET revoked_at = $1 WHERE revoked_at IS NULL AND {filter} \
         RETURNING id, tenant_id, access_token_ttl_seconds"
    );
    let revoked = sqlx::query(&sql)
        .bind(at.millis())
        .bind(bind.to_owned())
        .fetch_all(&mut *conn)
        .await?;
    let mut ids = Vec::with_capacity(revoked.len());
    for row in revoked {
        let id: String = row.try_get("id")?;
        let tenant: String = row.try_get("tenant_id")?;
        let ttl: i64 = row.try_get("access_token_ttl_seconds")?;
        let last_jwt = at.plus_seconds(ttl).millis();
        append_revocation(conn, FeedKind::Token, &id, &tenant, at, Some(last_jwt)).await?;
        ids.push(id);
    }
    ids.sort();
    Ok(ids)
}

async fn insert_token(conn: &mut AnyConnection, record: &TokenRecord) -> TxResult<()> {
    let token = &record.token;
    let sql = format!(
        "INSERT INTO tokens ({TOKEN_COLUMNS}) VALUES \
         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
         $20, $21, $22, $23, $24, $25, $26)"
    );
    let allowlist: Vec<String> = token.ip_allowlist.iter().map(ToString::to_string).collect();
    sqlx::query(&sql)
        .bind(token.id.to_string())
        .bind(token.kind.as_str())
        .bind(token.owner.tenant_id().as_str().to_owned())
        .bind(token.owner.user_id().map(|u| u.as_str().to_owned()))
        .bind(token.name.as_str().to_owned())
        .bind(join(token.roles.iter().map(RoleName::as_str)))
        .bind(join(token.permissions.iter().map(Permission::as_str)))
        .bind(token.created_by.as_ref().map(|u| u.as_str().to_owned()))
        .bind(token.created_at.millis())
        .bind(token.expires_at.map(Timestamp::millis))
        .bind(token.revoked_at.map(Timestamp::millis))
        .bind(token.last_used_at.map(Timestamp::millis))
        .bind(token.last_used_ip.clone())
        .bind(join(allowlist))
        .bind(i64::from(token.access_token_ttl_seconds))
        .bind(i64::from(token.refresh_tokens))
        .bind(record.secret.as_ref().map(|s| s.salt.clone()))
        .bind(record.secret.as_ref().map(|s| s.hash.clone()))
        .bind(token.secret_hint.clone())
        .bind(record.signing_kid.clone())
        .bind(token.revoked_reason.map(|r| r.as_str().to_owned()))
        .bind(token.rolled_from.map(|id| id.to_string()))
        .bind(token.rolled_to.map(|id| id.to_string()))
        .bind(token.revokes_at.map(Timestamp::millis))
        .bind(record.secret_lookup.clone())
        .bind(token.public_key.as_ref().map(ClientKey::to_json))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

fn token_created_event(token: &Token) -> AuditEvent {
    AuditEvent::new(
        AuditAction::TokenCreated,
        Some(token.owner.tenant_id().as_str()),
        Some(token.id.to_string()),
    )
    .with_details(json!({
        "name": token.name,
        "kind": token.kind,
        "owner": token.owner,
        "roles": token.roles,
        "permissions": token.permissions,
        "created_by": token.created_by,
        "expires_at": token.expires_at,
        "ip_allowlist": token.ip_allowlist,
        "access_token_ttl_seconds": token.access_token_ttl_seconds,
        "refresh_tokens": token.refresh_tokens,
        "auth_method": token.auth_method(),
        "public_key_thumbprint": token.public_key.as_ref().map(ClientKey::thumbprint),
    }))
}

pub(crate) async fn select_token(
    conn: &mut AnyConnection,
    id: TokenId,
) -> TxResult<Option<TokenRecord>> {
    let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(rows::token_record).transpose()?)
}

pub(crate) async fn tenant_exists(conn: &mut AnyConnection, tenant: &TenantId) -> TxResult<bool> {
    let found = sqlx::query("SELECT 1 AS one FROM tenants WHERE id = $1")
        .bind(tenant.as_str().to_owned())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(found.is_some())
}

async fn require_roles(conn: &mut AnyConnection, roles: &[RoleName]) -> TxResult<()> {
    for role in roles {
        let found = sqlx::query("SELECT 1 AS one FROM roles WHERE name = $1")
            .bind(role.as_str().to_owned())
            .fetch_optional(&mut *conn)
            .await?;
        if found.is_none() {
            return Err(StoreError::UnknownRole(role.clone()).into());
        }
    }
    Ok(())
}

async fn require_permissions(conn: &mut AnyConnection, permissions: &[Permission]) -> TxResult<()> {
    for permission in permissions {
        let found = sqlx::query("SELECT 1 AS one FROM permissions WHERE name = $1")
            .bind(permission.as_str().to_owned())
            .fetch_optional(&mut *conn)
            .await?;
        if found.is_none() {
            return Err(StoreError::UnknownPermission(permission.clone()).into());
        }
    }
    Ok(())
}

async fn load_membership(
    conn: &mut AnyConnection,
    tenant: &TenantId,
    user: &UserId,
) -> TxResult<Option<Membership>> {
    let exists =
        sqlx::query("SELECT 1 AS one FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.as_str().to_owned())
            .bind(user.as_str().to_owned())
            .fetch_optional(&mut *conn)
            .await?;
    if exists.is_none() {
        return Ok(None);
    }
    let roles = sqlx::query_scalar::<_, String>(
        "SELECT role FROM membership_roles WHERE tenant_id = $1 AND user_id = $2 ORDER BY role",
    )
    .bind(tenant.as_str().to_owned())
    .bind(user.as_str().to_owned())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|r| rows::role(r))
    .collect::<Result<Vec<_>, _>>()?;
    let permissions = sqlx::query_scalar::<_, String>(
        "SELECT DISTINCT rp.permission FROM membership_roles mr \
         JOIN role_permissions rp ON rp.role = mr.role \
         WHERE mr.tenant_id = $1 AND mr.user_id = $2 ORDER BY rp.permission",
    )
    .bind(tenant.as_str().to_owned())
    .bind(user.as_str().to_owned())
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|p| rows::permission(p))
    .collect::<Result<Vec<_>, _>>()?
    .into_iter()
    .filter(|p| tenant.is_system() || !p.is_system_only())
    .collect();
    Ok(Some(rows::membership(
        tenant.clone(),
        user.clone(),
        roles,
        permissions,
    )))
}

pub(crate) fn page_of<T>(mut items: Vec<T>, limit: u32, key: impl Fn(&T) -> String) -> Page<T> {
    let limit = limit as usize;
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(key)
    } else {
        None
    };
    Page { items, next }
}

fn token_cursor(token: &Token) -> String {
    format!("{}:{}", token.created_at.millis(), token.id)
}

pub(crate) fn parse_token_cursor(after: Option<&str>) -> (i64, String) {
    after
        .and_then(|cursor| cursor.split_once(':'))
        .and_then(|(millis, id)| Some((millis.parse().ok()?, id.to_owned())))
        .unwrap_or((i64::MAX, String::new()))
}

impl SqlStore {
    async fn tx_bootstrap(
        &self,
        system: &Tenant,
        root: &TokenRecord,
        ctx: &AuditContext,
    ) -> TxResult<bool> {
        let mut tx = self.writer.begin().await?;
        let created = sqlx::query(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(system.id.as_str().to_owned())
        .bind(system.name.clone())
        .bind(system.created_at.millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if created == 0 {
            return Ok(false);
        }
        let tenant_event = AuditEvent::new(
            AuditAction::TenantCreated,
            Some(system.id.as_str()),
            Some(system.id.to_string()),
        )
        .with_details(json!({ "name": system.name }));
        self.audit_in(&mut tx, ctx, tenant_event).await?;
        insert_token(&mut tx, root).await?;
        self.audit_in(&mut tx, ctx, token_created_event(&root.token))
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn tx_create_tenant(&self, tenant: &Tenant, ctx: &AuditContext) -> TxResult<()> {
        let mut tx = self.writer.begin().await?;
        let created = sqlx::query(
            "INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(tenant.id.as_str().to_owned())
        .bind(tenant.name.clone())
        .bind(tenant.created_at.millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if created == 0 {
            return Err(StoreError::Conflict(format!("tenant {}", tenant.id)).into());
        }
        let event = AuditEvent::new(
            AuditAction::TenantCreated,
            Some(tenant.id.as_str()),
            Some(tenant.id.to_string()),
        )
        .with_details(json!({ "name": tenant.name }));
        self.audit_in(&mut tx, ctx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn tx_delete_tenant(&self, id: &TenantId, ctx: &AuditContext) -> TxResult<bool> {
        if id.is_system() {
            return Err(StoreError::Protected(format!("tenant {id}")).into());
        }
        let mut tx = self.writer.begin().await?;
        if !tenant_exists(&mut tx, id).await? {
            return Ok(false);
        }
        let revoked = revoke_where(
            &mut tx,
            "tenant_id = $2",
            &[id.as_str()],
            ctx.at,
            RevokedReason::Revoked,
        )
        .await?;
        // Its trusts go too; the access tokens they issued are revoked through the feed.
        revoke_trusts_where(&mut tx, "tenant_id = $2", id.as_str(), ctx.at).await?;
        let members = sqlx::query_scalar::<_, String>(
            "SELECT user_id FROM memberships WHERE tenant_id = $1 ORDER BY user_id",
        )
        .bind(id.as_str().to_owned())
        .fetch_all(&mut *tx)
        .await?;
        for table in ["tokens", "trusts", "membership_roles", "memberships"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                .bind(id.as_str().to_owned())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(id.as_str().to_owned())
            .execute(&mut *tx)
            .await?;
        for user in &members {
            append_member_state(&mut tx, id.as_str(), user, ctx.at).await?;
        }
        let event = AuditEvent::new(
            AuditAction::TenantDeleted,
            Some(id.as_str()),
            Some(id.to_string()),
        )
        .with_details(json!({ "tokens_revoked": revoked }));
        self.audit_in(&mut tx, ctx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn tx_backfill_feed_state(&self, at: Timestamp) -> TxResult<u64> {
        let mut tx = self.writer.begin().await?;
        let claimed =
            sqlx::query("UPDATE chain_heads SET seq = 1 WHERE name = 'feed_state' AND seq = 0")
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if claimed == 0 {
            return Ok(0);
        }
        let roles: Vec<String> = sqlx::query_scalar("SELECT name FROM roles ORDER BY name")
            .fetch_all(&mut *tx)
            .await?;
        let members =
            sqlx::query("SELECT tenant_id, user_id FROM memberships ORDER BY tenant_id, user_id")
                .fetch_all(&mut *tx)
                .await?;
        for role in &roles {
            append_role_state(&mut tx, role, at).await?;
        }
        for row in &members {
            let tenant: String = row.try_get("tenant_id")?;
            let user: String = row.try_get("user_id")?;
            append_member_state(&mut tx, &tenant, &user, at).await?;
        }
        tx.commit().await?;
        Ok(u64::try_from(roles.len() + members.len()).unwrap_or(u64::MAX))
    }

    async fn tx_put_permission(&self, def: &PermissionDef, ctx: &AuditContext) -> TxResult<()> {
        let mut tx = self.writer.begin().await?;
        let builtin: Option<i64> =
            sqlx::query_scalar("SELECT builtin FROM permissions WHERE name = $1")
                .bind(def.name.as_str().to_owned())
                .fetch_optional(&mut *tx)
                .await?;
        if builtin == Some(1) || def.name.is_builtin() {
            return Err(StoreError::Protected(format!("permission {}", def.name)).into());
        }
        sqlx::query(
            "INSERT INTO permissions (name, description, builtin) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET description = excluded.description",
        )
        .bind(def.name.as_str().to_owned())
        .bind(def.description.clone())
        .bind(0i64)
        .execute(&mut *tx)
        .await?;
        let event = AuditEvent::new(AuditAction::PermissionPut, None, Some(def.name.to_string()))
            .with_details(json!({ "description": def.description }));
        self.audit_in(&mut tx, ctx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn tx_put_role(&self, role: &RoleDef, ctx: &AuditContext) -> TxResult<()> {
        let mut tx = self.writer.begin().await?;
        require_permissions(&mut tx, &role.permissions).await?;
        sqlx::query(
            "INSERT INTO roles (name, description) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET description = excluded.description",
        )
        .bind(role.name.as_str().to_owned())
        .bind(role.description.clone())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM role_permissions WHERE role = $1")
            .bind(role.name.as_str().to_owned())
            .execute(&mut *tx)
            .await?;
        for permission in &role.permissions {
            sqlx::query("INSERT INTO role_permissions (role, permission) VALUES ($1, $2)")
                .bind(role.name.as_str().to_owned())
                .bind(permission.as_str().to_owned())
                .execute(&mut *tx)
                .await?;
        }
        append_role_state(&mut tx, role.name.as_str(), ctx.at).await?;
        let event = AuditEvent::new(AuditAction::RolePut, None, Some(role.name.to_string()))
            .with_details(
                json!({ "permissions": role.permissions, "description": role.description }),
            );
        self.audit_in(&mut tx, ctx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn tx_put_membership(
        &self,
        tenant: &TenantId,
        user: &UserId,
        roles: &[RoleName],
        ctx: &AuditContext,
    ) -> TxResult<Membership> {
        let mut tx = self.writer.begin().await?;
        if !tenant_exists(&mut tx, tenant).await? {
            return Err(StoreError::UnknownTenant(tenant.clone()).into());
        }
        require_roles(&mut tx, roles).await?;
        sqlx::query(
            "INSERT INTO memberships (tenant_id, user_id, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id, user_id) DO NOTHING",
        )
        .bind(tenant.as_str().to_owned())
        .bind(user.as_str().to_owned())
        .bind(ctx.at.millis())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM membership_roles WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.as_str().to_owned())
            .bind(user.as_str().to_owned())
            .execute(&mut *tx)
            .await?;
        for role in roles {
            sqlx::query(
                "INSERT INTO membership_roles (tenant_id, user_id, role) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant.as_str().to_owned())
            .bind(user.as_str().to_owned())
            .bind(role.as_str().to_owned())
            .execute(&mut *tx)
            .await?;
        }
        append_member_state(&mut tx, tenant.as_str(), user.as_str(), ctx.at).await?;
        let event = AuditEvent::new(
            AuditAction::MembershipPut,
            Some(tenant.as_str()),
            Some(user.to_string()),
        )
        .with_details(json!({ "roles": roles }));
        self.audit_in(&mut tx, ctx, event).await?;
        let membership = load_membership(&mut tx, tenant, user)
            .await?
            .ok_or_else(|| StoreError::Internal("membership vanished".to_owned()))?;
        tx.commit().await?;
        Ok(membership)
    }

    async fn tx_remove_membership(
        &self,
        tenant: &TenantId,
        user: &UserId,
        ctx: &AuditContext,
    ) -> TxResult<bool> {
        let mut tx = self.writer.begin().await?;
        let removed = sqlx::query("DELETE FROM memberships WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.as_str().to_owned())
            .bind(user.as_str().to_owned())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM membership_roles WHERE tenant_id = $1 AND user_id = $2")
            .bind(tenant.as_str().to_owned())
            .bind(user.as_str().to_owned())
            .execute(&mut *tx)
            .await?;
        let revoked = revoke_where(
            &mut tx,
            "tenant_id = $2 AND user_id = $3",
            &[tenant.as_str(), user.as_str()],
            ctx.at,
            RevokedReason::Revoked,
        )
        .await?;
        let event = AuditEvent::new(
            AuditAction::MembershipRemoved,
            Some(tenant.as_str()),
            Some(user.to_string()),
        )
        .with_details(json!({ "tokens_revoked": revoked }));
        self.audit_in(&mut tx, ctx, event).await?;
        append_member_state(&mut tx, tenant.as_str(), user.as_str(), ctx.at).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn tx_delete_user(&self, user: &UserId, ctx: &AuditContext) -> TxResult<bool> {
        let mut tx = self.writer.begin().await?;
        let tenants = sqlx::query_scalar::<_, String>(
            "SELECT tenant_id FROM memberships WHERE user_id = $1 ORDER BY tenant_id",
        )
        .bind(user.as_str().to_owned())
        .fetch_all(&mut *tx)
        .await?;
        let revoked = revoke_where(
            &mut tx,
            "user_id = $2",
            &[user.as_str()],
            ctx.at,
            RevokedReason::Revoked,
        )
        .await?;
        let deleted = sqlx::query("DELETE FROM tokens WHERE user_id = $1")
            .bind(user.as_str().to_owned())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for table in ["membership_roles", "memberships"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
                .bind(user.as_str().to_owned())
                .execute(&mut *tx)
                .await?;
        }
        if tenants.is_empty() && deleted == 0 {
            return Ok(false);
        }
        for tenant in &tenants {
            append_member_state(&mut tx, tenant, user.as_str(), ctx.at).await?;
        }
        let event = AuditEvent::new(AuditAction::UserDeleted, None, Some(user.to_string()))
            .with_details(
                json!({ "tenants": tenants, "tokens_revoked": revoked, "tokens_deleted": deleted }),
            );
        self.audit_in(&mut tx, ctx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn tx_create_token(&self, record: &TokenRecord, ctx: &AuditContext) -> TxResult<()> {
        let mut tx = self.writer.begin().await?;
        self.create_token_in(&mut tx, record, ctx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Stores a new token with its `token.created` event inside the caller's
    /// transaction, after checking its tenant, its user's membership, its roles and its
    /// permissions.
    async fn create_token_in(
        &self,
        tx: &mut AnyConnection,
        record: &TokenRecord,
        ctx: &AuditContext,
    ) -> TxResult<()> {
        let token = &record.token;
        let tenant = token.owner.tenant_id();
        if !tenant_exists(&mut *tx, tenant).await? {
            return Err(StoreError::UnknownTenant(tenant.clone()).into());
        }
        if let Owner::User { tenant_id, user_id } = &token.owner {
            // Touching the membership row locks it on PostgreSQL, so a concurrent removal
            // either sees this token and revokes it, or happens first and refuses it.
            let locked = sqlx::query(
                "UPDATE memberships SET created_at = created_at \
                 WHERE tenant_id = $1 AND user_id = $2",
            )
            .bind(tenant_id.as_str().to_owned())
            .bind(user_id.as_str().to_owned())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if locked == 0 {
                return Err(StoreError::NotMember(user_id.clone(), tenant_id.clone()).into());
            }
        }
        require_roles(&mut *tx, &token.roles).await?;
        require_permissions(&mut *tx, &token.permissions).await?;
        insert_token(&mut *tx, record).await?;
        self.audit_in(&mut *tx, ctx, token_created_event(token))
            .await?;
        Ok(())
    }

    async fn tx_roll_token(
        &self,
        old: TokenId,
        successor: &TokenRecord,
        revokes_at: Timestamp,
        ctx: &AuditContext,
    ) -> TxResult<RollOutcome> {
        let mut tx = self.writer.begin().await?;
        // One conditional update both checks and claims the token, so two concurrent
        // rolls cannot both succeed.
        let claimed = sqlx::query(
            "UPDATE tokens SET rolled_to = $1, revokes_at = $2 \
             WHERE id = $3 AND rolled_to IS NULL AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $4)",
        )
        .bind(successor.token.id.to_string())
        .bind(revokes_at.millis())
        .bind(old.to_string())
        .bind(ctx.at.millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if claimed == 0 {
            return Ok(match select_token(&mut tx, old).await? {
                None => RollOutcome::NotFound,
                Some(record) if record.token.rolled_to.is_some() => RollOutcome::AlreadyRolled,
                Some(_) => RollOutcome::Revoked,
            });
        }
        self.create_token_in(&mut tx, successor, ctx).await?;
        // The successor has the old token's owner, so its tenant.
        let event = AuditEvent::new(
            AuditAction::TokenRolled,
            Some(successor.token.owner.tenant_id().as_str()),
            Some(old.to_string()),
        )
        .with_details(json!({ "successor": successor.token.id, "revokes_at": revokes_at }));
        self.audit_in(&mut tx, ctx, event).await?;
        if revokes_at <= ctx.at {
            self.revoke_rolled_in(&mut tx, &[old.to_string()], ctx)
                .await?;
        }
        let after = select_token(&mut tx, old).await?;
        tx.commit().await?;
        Ok(after.map_or(RollOutcome::NotFound, |record| {
            RollOutcome::Rolled(Box::new(record.token))
        }))
    }

    /// Revokes `ids` (those still unrevoked) with reason `rolled`, each with its
    /// `token.revoked` event, inside the caller's transaction. Returns the ids revoked.
    async fn revoke_rolled_in(
        &self,
        tx: &mut AnyConnection,
        ids: &[String],
        ctx: &AuditContext,
    ) -> TxResult<Vec<String>> {
        let mut revoked = Vec::with_capacity(ids.len());
        for id in ids {
            let done = revoke_where(tx, "id = $2", &[id], ctx.at, RevokedReason::Rolled).await?;
            let tenant: Option<String> =
                sqlx::query_scalar("SELECT tenant_id FROM tokens WHERE id = $1")
                    .bind(id.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
            if let (false, Some(tenant)) = (done.is_empty(), tenant) {
                let event =
                    AuditEvent::new(AuditAction::TokenRevoked, Some(&tenant), Some(id.clone()))
                        .with_details(json!({ "reason": RevokedReason::Rolled }));
                self.audit_in(&mut *tx, ctx, event).await?;
                revoked.extend(done);
            }
        }
        Ok(revoked)
    }

    async fn tx_revoke_rolled(&self, ctx: &AuditContext) -> TxResult<Vec<TokenId>> {
        let mut tx = self.writer.begin().await?;
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM tokens WHERE revokes_at <= $1 AND revoked_at IS NULL ORDER BY id",
        )
        .bind(ctx.at.millis())
        .fetch_all(&mut *tx)
        .await?;
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let revoked = self.revoke_rolled_in(&mut tx, &due, ctx).await?;
        tx.commit().await?;
        Ok(revoked
            .iter()
            .map(|id| TokenId::parse(id).map_err(|e| crate::error::corrupt("token id", e)))
            .collect::<Result<_, _>>()?)
    }

    async fn tx_rename_token(
        &self,
        id: TokenId,
        name: &TokenName,
        ctx: &AuditContext,
    ) -> TxResult<Option<Token>> {
        let mut tx = self.writer.begin().await?;
        let Some(before) = select_token(&mut tx, id).await? else {
            return Ok(None);
        };
        sqlx::query("UPDATE tokens SET name = $1 WHERE id = $2")
            .bind(name.as_str().to_owned())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let event = AuditEvent::new(
            AuditAction::TokenRenamed,
            Some(before.token.owner.tenant_id().as_str()),
            Some(id.to_string()),
        )
        .with_details(json!({ "from": before.token.name, "to": name }));
        self.audit_in(&mut tx, ctx, event).await?;
        let after = select_token(&mut tx, id).await?;
        tx.commit().await?;
        Ok(after.map(|record| record.token))
    }

    async fn tx_revoke_token(&self, id: TokenId, ctx: &AuditContext) -> TxResult<Option<Token>> {
        let mut tx = self.writer.begin().await?;
        let revoked = revoke_where(
            &mut tx,
            "id = $2",
            &[&id.to_string()],
            ctx.at,
            RevokedReason::Revoked,
        )
        .await?;
        let Some(record) = select_token(&mut tx, id).await? else {
            return Ok(None);
        };
        if !revoked.is_empty() {
            let event = AuditEvent::new(
                AuditAction::TokenRevoked,
                Some(record.token.owner.tenant_id().as_str()),
                Some(id.to_string()),
            );
            self.audit_in(&mut tx, ctx, event).await?;
        }
        tx.commit().await?;
        Ok(Some(record.token))
    }

    async fn read_memberships(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> TxResult<Page<Membership>> {
        let mut conn = self.reader().await?;
        let users = sqlx::query_scalar::<_, String>(
            "SELECT user_id FROM memberships WHERE tenant_id = $1 AND user_id > $2 \
             ORDER BY user_id LIMIT $3",
        )
        .bind(tenant.as_str().to_owned())
        .bind(page.after.clone().unwrap_or_default())
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&mut *conn)
        .await?;
        let mut items = Vec::with_capacity(users.len());
        for user in users {
            let user = rows::user_id(&user)?;
            if let Some(membership) = load_membership(&mut conn, tenant, &user).await? {
                items.push(membership);
            }
        }
        Ok(page_of(items, page.limit, |m| m.user_id.to_string()))
    }
}

pub(crate) fn decode_all<T>(
    found: Vec<AnyRow>,
    decode: fn(&AnyRow) -> Result<T, sqlx::Error>,
) -> StoreResult<Vec<T>> {
    found
        .iter()
        .map(decode)
        .collect::<Result<Vec<_>, _>>()
        .map_err(from_sqlx)
}

#[async_trait]
impl Store for SqlStore {
    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map_err(from_sqlx)?;
        Ok(())
    }

    async fn bootstrap(
        &self,
        system: &Tenant,
        root: &TokenRecord,
        ctx: &AuditContext,
    ) -> StoreResult<bool> {
        retrying!(self.tx_bootstrap(system, root, ctx))
    }

    async fn create_tenant(&self, tenant: &Tenant, ctx: &AuditContext) -> StoreResult<()> {
        retrying!(self.tx_create_tenant(tenant, ctx))
    }

    async fn get_tenant(&self, id: &TenantId) -> StoreResult<Option<Tenant>> {
        let row = sqlx::query("SELECT id, name, created_at FROM tenants WHERE id = $1")
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(from_sqlx)?;
        row.as_ref()
            .map(rows::tenant)
            .transpose()
            .map_err(from_sqlx)
    }

    async fn list_tenants(&self, page: &PageRequest) -> StoreResult<Page<Tenant>> {
        let found = sqlx::query(
            "SELECT id, name, created_at FROM tenants WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(page.after.clone().unwrap_or_default())
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(from_sqlx)?;
        let items = decode_all(found, rows::tenant)?;
        Ok(page_of(items, page.limit, |t| t.id.to_string()))
    }

    async fn delete_tenant(&self, id: &TenantId, ctx: &AuditContext) -> StoreResult<bool> {
        retrying!(self.tx_delete_tenant(id, ctx))
    }

    async fn put_permission(&self, def: &PermissionDef, ctx: &AuditContext) -> StoreResult<()> {
        retrying!(self.tx_put_permission(def, ctx))
    }

    async fn list_permissions(&self) -> StoreResult<Vec<PermissionDef>> {
        let found = sqlx::query("SELECT name, description, builtin FROM permissions ORDER BY name")
            .fetch_all(&self.reader)
            .await
            .map_err(from_sqlx)?;
        decode_all(found, |row| {
            Ok(PermissionDef {
                name: rows::permission(row.try_get("name")?)?,
                description: row.try_get("description")?,
                builtin: row.try_get::<i64, _>("builtin")? != 0,
            })
        })
    }

    async fn put_role(&self, role: &RoleDef, ctx: &AuditContext) -> StoreResult<()> {
        retrying!(self.tx_put_role(role, ctx))
    }

    async fn list_roles(&self) -> StoreResult<Vec<RoleDef>> {
        let found = sqlx::query(
            "SELECT r.name, r.description, rp.permission FROM roles r \
             LEFT JOIN role_permissions rp ON rp.role = r.name ORDER BY r.name, rp.permission",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(from_sqlx)?;
        let mut roles: Vec<RoleDef> = Vec::new();
        for row in &found {
            let decoded = (|| -> Result<(RoleName, String, Option<Permission>), sqlx::Error> {
                let permission: Option<String> = row.try_get("permission")?;
                Ok((
                    rows::role(row.try_get("name")?)?,
                    row.try_get("description")?,
                    permission.map(|p| rows::permission(&p)).transpose()?,
                ))
            })()
            .map_err(from_sqlx)?;
            let (name, description, permission) = decoded;
            match roles.last_mut() {
                Some(last) if last.name == name => last.permissions.extend(permission),
                _ => roles.push(RoleDef {
                    name,
                    description,
                    permissions: permission.into_iter().collect(),
                }),
            }
        }
        Ok(roles)
    }

    async fn role_permissions(&self, roles: &[RoleName]) -> StoreResult<PermissionSet> {
        let mut conn = self.reader().await?;
        require_roles(&mut conn, roles)
            .await
            .map_err(TxError::into_store_error)?;
        let mut set = PermissionSet::new();
        for role in roles {
            let names = sqlx::query_scalar::<_, String>(
                "SELECT permission FROM role_permissions WHERE role = $1",
            )
            .bind(role.as_str().to_owned())
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
            for name in names {
                set.insert(rows::permission(&name).map_err(from_sqlx)?);
            }
        }
        Ok(set)
    }

    async fn check_permissions_exist(&self, permissions: &[Permission]) -> StoreResult<()> {
        let mut conn = self.reader().await?;
        require_permissions(&mut conn, permissions)
            .await
            .map_err(TxError::into_store_error)
    }

    async fn put_membership(
        &self,
        tenant: &TenantId,
        user: &UserId,
        roles: &[RoleName],
        ctx: &AuditContext,
    ) -> StoreResult<Membership> {
        retrying!(self.tx_put_membership(tenant, user, roles, ctx))
    }

    async fn get_membership(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> StoreResult<Option<Membership>> {
        let mut conn = self.reader().await?;
        load_membership(&mut conn, tenant, user)
            .await
            .map_err(TxError::into_store_error)
    }

    async fn list_memberships(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<Membership>> {
        self.read_memberships(tenant, page)
            .await
            .map_err(TxError::into_store_error)
    }

    async fn remove_membership(
        &self,
        tenant: &TenantId,
        user: &UserId,
        ctx: &AuditContext,
    ) -> StoreResult<bool> {
        retrying!(self.tx_remove_membership(tenant, user, ctx))
    }

    async fn delete_user(&self, user: &UserId, ctx: &AuditContext) -> StoreResult<bool> {
        retrying!(self.tx_delete_user(user, ctx))
    }

    async fn create_token(&self, record: &TokenRecord, ctx: &AuditContext) -> StoreResult<()> {
        retrying!(self.tx_create_token(record, ctx))
    }

    async fn get_token(&self, id: TokenId) -> StoreResult<Option<TokenRecord>> {
        let mut conn = self.reader().await?;
        select_token(&mut conn, id)
            .await
            .map_err(TxError::into_store_error)
    }

    async fn list_tokens(
        &self,
        owner: &TokenOwnerFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<Token>> {
        let (before_millis, before_id) = parse_token_cursor(page.after.as_deref());
        let (tenant, user) = match owner {
            TokenOwnerFilter::Tenant(tenant) => (tenant, None),
            TokenOwnerFilter::User(tenant, user) => (tenant, Some(user)),
        };
        let owner_filter = if user.is_some() {
            "user_id = $5"
        } else {
            "user_id IS NULL"
        };
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE tenant_id = $1 AND {owner_filter} \
             AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let mut query = sqlx::query(&sql)
            .bind(tenant.as_str().to_owned())
            .bind(before_millis)
            .bind(before_id)
            .bind(i64::from(page.limit) + 1);
        if let Some(user) = user {
            query = query.bind(user.as_str().to_owned());
        }
        let found = query.fetch_all(&self.reader).await.map_err(from_sqlx)?;
        let items = decode_all(found, rows::token_record)?
            .into_iter()
            .map(|record| record.token)
            .collect();
        Ok(page_of(items, page.limit, token_cursor))
    }

    async fn rename_token(
        &self,
        id: TokenId,
        name: &TokenName,
        ctx: &AuditContext,
    ) -> StoreResult<Option<Token>> {
        retrying!(self.tx_rename_token(id, name, ctx))
    }

    async fn revoke_token(&self, id: TokenId, ctx: &AuditContext) -> StoreResult<Option<Token>> {
        retrying!(self.tx_revoke_token(id, ctx))
    }

    async fn roll_token(
        &self,
        old: TokenId,
        successor: &TokenRecord,
        revokes_at: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<RollOutcome> {
        retrying!(self.tx_roll_token(old, successor, revokes_at, ctx))
    }

    async fn revoke_rolled(&self, ctx: &AuditContext) -> StoreResult<Vec<TokenId>> {
        retrying!(self.tx_revoke_rolled(ctx))
    }

    async fn create_trust(
        &self,
        trust: &latchkey_core::trust::Trust,
        ctx: &AuditContext,
    ) -> StoreResult<()> {
        retrying!(self.tx_create_trust(trust, ctx))
    }

    async fn get_trust(&self, id: TokenId) -> StoreResult<Option<latchkey_core::trust::Trust>> {
        self.read_trust(id).await
    }

    async fn list_trusts(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<latchkey_core::trust::Trust>> {
        self.read_trusts(tenant, page).await
    }

    async fn trusts_for_issuer(
        &self,
        issuer: &str,
    ) -> StoreResult<Vec<latchkey_core::trust::Trust>> {
        self.read_trusts_for_issuer(issuer).await
    }

    async fn rename_trust(
        &self,
        id: TokenId,
        name: &TokenName,
        ctx: &AuditContext,
    ) -> StoreResult<Option<latchkey_core::trust::Trust>> {
        retrying!(self.tx_rename_trust(id, name, ctx))
    }

    async fn revoke_trust(
        &self,
        id: TokenId,
        ctx: &AuditContext,
    ) -> StoreResult<Option<latchkey_core::trust::Trust>> {
        retrying!(self.tx_revoke_trust(id, ctx))
    }

    async fn use_assertion_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        self.insert_assertion_jti(issuer, jti, expires_at, now)
            .await
    }

    async fn prune_assertion_jtis(&self, now: Timestamp) -> StoreResult<u64> {
        self.delete_assertion_jtis(now).await
    }

    async fn get_policy(&self, tenant: &TenantId) -> StoreResult<Option<StoredPolicy>> {
        self.read_policy(tenant).await
    }

    async fn put_policy(
        &self,
        tenant: &TenantId,
        policy: &TenantPolicy,
        ctx: &AuditContext,
    ) -> StoreResult<StoredPolicy> {
        retrying!(self.tx_put_policy(tenant, policy, ctx))
    }

    async fn list_policies(&self) -> StoreResult<Vec<(TenantId, TenantPolicy)>> {
        self.read_policies().await
    }

    async fn live_tokens(
        &self,
        tenant: Option<&TenantId>,
        idle_since: Option<Timestamp>,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Token>> {
        self.read_live_tokens(tenant, idle_since, now, limit).await
    }

    async fn revoke_unused(
        &self,
        tokens: &[(TokenId, Timestamp)],
        ctx: &AuditContext,
    ) -> StoreResult<Vec<TokenId>> {
        retrying!(self.tx_revoke_unused(tokens, ctx))
    }

    async fn touch_tokens(&self, uses: &[TokenUse]) -> StoreResult<()> {
        retrying!(self.tx_touch_tokens(uses))
    }

    async fn find_token_by_lookup(&self, lookup: &[u8]) -> StoreResult<Option<TokenRecord>> {
        self.read_token_by_lookup(lookup).await
    }

    async fn revoke_leaked(
        &self,
        leaked: &LeakedCredential,
        report: &LeakReport,
        ctx: &AuditContext,
    ) -> StoreResult<bool> {
        retrying!(self.tx_revoke_leaked(leaked, report, ctx))
    }

    async fn signing_keys(&self, now: Timestamp) -> StoreResult<Vec<SigningKeyRecord>> {
        self.read_signing_keys(now).await
    }

    async fn rotate_signing_key(
        &self,
        key: &SigningKeyRecord,
        when: RotateWhen,
        ctx: &AuditContext,
    ) -> StoreResult<bool> {
        retrying!(self.tx_rotate_signing_key(key, when, ctx))
    }

    async fn start_refresh_family(
        &self,
        family: &RefreshFamily,
        first: &RefreshRecord,
        max_families: u32,
        ctx: &AuditContext,
    ) -> StoreResult<()> {
        retrying!(self.tx_start_refresh_family(family, first, max_families, ctx))
    }

    async fn get_refresh(
        &self,
        id: TokenId,
    ) -> StoreResult<Option<(RefreshRecord, RefreshFamily)>> {
        self.read_refresh(id).await
    }

    async fn remember_dpop_proof(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        retrying!(self.tx_remember_dpop_proof(key, expires_at, now))
    }

    async fn rotate_refresh(
        &self,
        used: TokenId,
        next: &RefreshRecord,
        ctx: &AuditContext,
    ) -> StoreResult<RefreshOutcome> {
        retrying!(self.tx_rotate_refresh(used, next, ctx))
    }

    async fn revoke_refresh_family(
        &self,
        family: TokenId,
        ctx: &AuditContext,
    ) -> StoreResult<bool> {
        retrying!(self.tx_revoke_refresh_family(family, ctx))
    }

    async fn revoke_jti(
        &self,
        jti: &str,
        token_id: TokenId,
        tenant: &TenantId,
        expires_at: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<()> {
        retrying!(self.tx_revoke_jti(jti, token_id, tenant.as_str(), expires_at, ctx))
    }

    async fn revoked_jtis(&self, now: Timestamp) -> StoreResult<Vec<String>> {
        self.read_revoked_jtis(now).await
    }

    async fn revocations_after(
        &self,
        after: i64,
        limit: u32,
    ) -> StoreResult<(Vec<RevocationEntry>, i64)> {
        self.read_revocations_after(after, limit).await
    }

    async fn compact_revocations(&self, now: Timestamp) -> StoreResult<u64> {
        retrying!(self.tx_compact_revocations(now))
    }

    async fn backfill_feed_state(&self, at: Timestamp) -> StoreResult<u64> {
        retrying!(self.tx_backfill_feed_state(at))
    }

    async fn record_usage(&self, batch: &[UsageRecord], ctx: &AuditContext) -> StoreResult<u64> {
        retrying!(self.tx_record_usage(batch, ctx))
    }

    async fn token_usage(
        &self,
        token: TokenId,
        since: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Vec<UsageRecord>> {
        self.read_token_usage(token, since, until).await
    }

    async fn compact_usage(&self, before: Timestamp) -> StoreResult<u64> {
        retrying!(self.tx_compact_usage(before))
    }

    async fn create_webhook(&self, record: &WebhookRecord, ctx: &AuditContext) -> StoreResult<()> {
        retrying!(self.tx_create_webhook(record, ctx))
    }

    async fn get_webhook(&self, id: TokenId) -> StoreResult<Option<WebhookRecord>> {
        self.read_webhook(id)
            .await
            .map_err(TxError::into_store_error)
    }

    async fn list_webhooks(
        &self,
        tenant: Option<&TenantId>,
        page: &PageRequest,
    ) -> StoreResult<Page<Webhook>> {
        self.read_webhooks(tenant, page)
            .await
            .map_err(TxError::into_store_error)
    }

    async fn delete_webhook(&self, id: TokenId, ctx: &AuditContext) -> StoreResult<bool> {
        retrying!(self.tx_delete_webhook(id, ctx))
    }

    async fn webhook_deliveries(
        &self,
        id: TokenId,
        page: &PageRequest,
    ) -> StoreResult<Page<WebhookDelivery>> {
        self.read_webhook_deliveries(id, page)
            .await
            .map_err(TxError::into_store_error)
    }

    async fn lease_webhook_delivery(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> StoreResult<Option<(WebhookRecord, WebhookDelivery)>> {
        retrying!(self.tx_lease_webhook_delivery(now, lease_until))
    }

    async fn finish_webhook_attempt(
        &self,
        outcome: &WebhookAttemptOutcome,
        ctx: &AuditContext,
    ) -> StoreResult<()> {
        retrying!(self.tx_finish_webhook_attempt(outcome, ctx))
    }

    async fn ping_webhook(&self, id: TokenId, ctx: &AuditContext) -> StoreResult<Option<i64>> {
        retrying!(self.tx_ping_webhook(id, ctx))
    }

    async fn redeliver_webhook(
        &self,
        id: TokenId,
        seq: i64,
        ctx: &AuditContext,
    ) -> StoreResult<bool> {
        retrying!(self.tx_redeliver_webhook(id, seq, ctx))
    }

    async fn rotate_webhook_secret(
        &self,
        id: TokenId,
        sealed: &[u8],
        previous_until: Timestamp,
        ctx: &AuditContext,
    ) -> StoreResult<Option<Webhook>> {
        retrying!(self.tx_rotate_webhook_secret(id, sealed, previous_until, ctx))
    }

    async fn notify_expiring(&self, ctx: &AuditContext) -> StoreResult<u64> {
        retrying!(self.tx_notify_expiring(ctx))
    }

    async fn append_audit(&self, events: &[(AuditContext, AuditEvent)]) -> StoreResult<()> {
        retrying!(self.tx_append_audit(events))
    }

    async fn list_audit(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<AuditRecord>> {
        self.read_audit(filter, page).await
    }

    async fn audit_chain(&self, after: i64, limit: u32) -> StoreResult<Vec<AuditRecord>> {
        self.read_audit_chain(after, limit).await
    }

    async fn audit_head(&self) -> StoreResult<AuditHead> {
        self.read_audit_head().await
    }

    async fn create_console_session(
        &self,
        session: &ConsoleSession,
        key: &ConsoleKey,
        ctx: &AuditContext,
    ) -> StoreResult<()> {
        retrying!(self.tx_create_console_session(session, key, ctx))
    }

    async fn open_console_session(
        &self,
        code_hash: &[u8],
        cookie_hash: &[u8],
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Option<ConsoleSession>> {
        self.write_open_console_session(code_hash, cookie_hash, expires_at, now)
            .await
    }

    async fn console_session(&self, cookie_hash: &[u8]) -> StoreResult<Option<ConsoleSession>> {
        self.read_console_session_by_cookie(cookie_hash).await
    }

    async fn get_console_session(&self, id: TokenId) -> StoreResult<Option<ConsoleSession>> {
        self.read_console_session_by_id(id).await
    }

    async fn end_console_session(&self, id: TokenId, ctx: &AuditContext) -> StoreResult<bool> {
        retrying!(self.tx_end_console_session(id, ctx))
    }

    async fn put_console_reveal(
        &self,
        session: TokenId,
        id: TokenId,
        sealed: &[u8],
        expires_at: Timestamp,
    ) -> StoreResult<()> {
        self.write_console_reveal(session, id, sealed, expires_at)
            .await
    }

    async fn take_console_reveal(
        &self,
        session: TokenId,
        id: TokenId,
        now: Timestamp,
    ) -> StoreResult<Option<Vec<u8>>> {
        self.write_take_console_reveal(session, id, now).await
    }

    async fn gauges(&self) -> StoreResult<StoreGauges> {
        let feed_head: i64 =
            sqlx::query_scalar("SELECT seq FROM chain_heads WHERE name = 'revocations'")
                .fetch_one(&self.reader)
                .await
                .map_err(from_sqlx)?;
        let webhook_outbox: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'pending'")
                .fetch_one(&self.reader)
                .await
                .map_err(from_sqlx)?;
        // On PostgreSQL both are the same pool; on SQLite the writer is a second one.
        let mut pools = vec![&self.reader];
        if !self.one_pool {
            pools.push(&self.writer);
        }
        let mut gauges = StoreGauges {
            feed_head,
            webhook_outbox,
            ..StoreGauges::default()
        };
        for pool in pools {
            gauges.connections += pool.size();
            gauges.idle += u32::try_from(pool.num_idle()).unwrap_or(u32::MAX);
            gauges.max_connections += pool.options().get_max_connections();
        }
        Ok(gauges)
    }
}
