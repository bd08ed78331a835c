//! Tenant policies and the unused-token sweep (docs/API.md, "Tenant policies"), and the
//! batched `last_used_at` updates the sweep reads.

use crate::error::{TxResult, corrupt, from_sqlx};
use crate::rows::{self, TOKEN_COLUMNS};
use crate::sql::{SqlStore, append_state, decode_all, revoke_where, tenant_exists};
use latchkey_core::audit::{AuditAction, AuditContext, AuditEvent};
use latchkey_core::policy::TenantPolicy;
use latchkey_core::store::{FeedKind, StoreError, StoreResult, StoredPolicy, TokenUse};
use latchkey_core::token::{RevokedReason, Token};
use latchkey_core::{TenantId, Timestamp, TokenId};
use serde_json::json;
use sqlx::Row;

fn decode_policy(text: &str) -> Result<TenantPolicy, sqlx::Error> {
    serde_json::from_str(text).map_err(|e| corrupt("tenant policy", e))
}

impl SqlStore {
    pub(crate) async fn read_policy(&self, tenant: &TenantId) -> StoreResult<Option<StoredPolicy>> {
        let mut conn = self.reader().await?;
        let row =
            sqlx::query("SELECT policy, updated_at FROM tenant_policies WHERE tenant_id = $1")
                .bind(tenant.as_str().to_owned())
                .fetch_optional(&mut *conn)
                .await
                .map_err(from_sqlx)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let decode = || -> Result<StoredPolicy, sqlx::Error> {
            Ok(StoredPolicy {
                policy: decode_policy(&row.try_get::<String, _>("policy")?)?,
                updated_at: Timestamp::from_millis(row.try_get("updated_at")?),
            })
        };
        decode().map(Some).map_err(from_sqlx)
    }

    pub(crate) async fn read_policies(&self) -> StoreResult<Vec<(TenantId, TenantPolicy)>> {
        let mut conn = self.reader().await?;
        let found = sqlx::query("SELECT tenant_id, policy FROM tenant_policies ORDER BY tenant_id")
            .fetch_all(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        decode_all(found, |row| {
            Ok((
                rows::tenant_id(&row.try_get::<String, _>("tenant_id")?)?,
                decode_policy(&row.try_get::<String, _>("policy")?)?,
            ))
        })
    }

    pub(crate) async fn tx_put_policy(
        &self,
        tenant: &TenantId,
        policy: &TenantPolicy,
        ctx: &AuditContext,
    ) -> TxResult<StoredPolicy> {
        let mut tx = self.writer.begin().await?;
        if !tenant_exists(&mut tx, tenant).await? {
            return Err(StoreError::UnknownTenant(tenant.clone()).into());
        }
        let text = serde_json::to_string(policy)
            .map_err(|e| StoreError::Internal(format!("encoding a policy: {e}")))?;
        sqlx::query(
            "INSERT INTO tenant_policies (tenant_id, policy, updated_at) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant_id) DO UPDATE SET policy = excluded.policy, \
             updated_at = excluded.updated_at",
        )
        .bind(tenant.as_str().to_owned())
        .bind(text)
        .bind(ctx.at.millis())
        .execute(&mut *tx)
        .await?;
        let event = AuditEvent::new(
            AuditAction::PolicyPut,
            Some(tenant.as_str()),
            Some(tenant.to_string()),
        )
        .with_details(json!({ "policy": policy }));
        self.audit_in(&mut tx, ctx, event).await?;
        // Verifiers judge the network rules themselves: the feed carries them.
        append_state(
            &mut tx,
            FeedKind::TenantPolicy,
            tenant.as_str(),
            Some(tenant.as_str()),
            ctx.at,
            json!({ "network": policy.network }),
        )
        .await?;
        tx.commit().await?;
        Ok(StoredPolicy {
            policy: policy.clone(),
            updated_at: ctx.at,
        })
    }

    /// Tokens that are neither revoked nor expired at `now`, of one tenant or of all
    /// (`tenant` `None`), whose last use (their creation when never used) is at or
    /// before `idle_since` (`None`: any); oldest use first, at most `limit`.
    pub(crate) async fn read_live_tokens(
        &self,
        tenant: Option<&TenantId>,
        idle_since: Option<Timestamp>,
        now: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<Token>> {
        let mut conn = self.reader().await?;
        let tenant_filter = if tenant.is_some() {
            "AND tenant_id = $4"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $1) \
             AND COALESCE(last_used_at, created_at) <= $2 {tenant_filter} \
             ORDER BY COALESCE(last_used_at, created_at), id LIMIT $3"
        );
        let mut query = sqlx::query(&sql)
            .bind(now.millis())
            .bind(idle_since.map_or(i64::MAX, Timestamp::millis))
            .bind(i64::from(limit));
        if let Some(tenant) = tenant {
            query = query.bind(tenant.as_str().to_owned());
        }
        let found = query.fetch_all(&mut *conn).await.map_err(from_sqlx)?;
        Ok(decode_all(found, rows::token_record)?
            .into_iter()
            .map(|record| record.token)
            .collect())
    }

    pub(crate) async fn tx_revoke_unused(
        &self,
        tokens: &[(TokenId, Timestamp)],
        ctx: &AuditContext,
    ) -> TxResult<Vec<TokenId>> {
        let mut tx = self.writer.begin().await?;
        let mut revoked = Vec::new();
        for (id, idle_since) in tokens {
            // The condition is checked again here: a use recorded since the sweep read
            // the token saves it.
            let done = revoke_where(
                &mut tx,
                "id = $2 AND COALESCE(last_used_at, created_at) <= CAST($3 AS BIGINT)",
                &[&id.to_string(), &idle_since.millis().to_string()],
                ctx.at,
                RevokedReason::Unused,
            )
            .await?;
            if done.is_empty() {
                continue;
            }
            let tenant: String = sqlx::query_scalar("SELECT tenant_id FROM tokens WHERE id = $1")
                .bind(id.to_string())
                .fetch_one(&mut *tx)
                .await?;
            let event = AuditEvent::new(
                AuditAction::TokenRevoked,
                Some(&tenant),
                Some(id.to_string()),
            )
            .with_details(json!({ "reason": RevokedReason::Unused }));
            self.audit_in(&mut tx, ctx, event).await?;
            revoked.push(*id);
        }
        tx.commit().await?;
        Ok(revoked)
    }

    pub(crate) async fn tx_touch_tokens(&self, uses: &[TokenUse]) -> TxResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for used in uses {
            sqlx::query(
                "UPDATE tokens SET last_used_at = $1, \
                 last_used_ip = COALESCE($2, last_used_ip) \
                 WHERE id = $3 AND (last_used_at IS NULL OR last_used_at < $1)",
            )
            .bind(used.at.millis())
            .bind(used.ip.clone())
            .bind(used.token_id.to_string())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
