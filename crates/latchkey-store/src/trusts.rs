//! Trust relationships (docs/API.md, "Trusts") and the assertion replay guard shared
//! by the JWT-bearer grant and private_key_jwt client authentication.

use crate::error::{TxResult, corrupt, from_sqlx};
use crate::rows::{self, join};
use crate::sql::{
    SqlStore, decode_all, page_of, parse_token_cursor, revoke_trusts_where, tenant_exists,
};
use latchkey_core::audit::{AuditAction, AuditContext, AuditEvent};
use latchkey_core::store::{Page, PageRequest, StoreError, StoreResult};
use latchkey_core::token::TokenName;
use latchkey_core::trust::{RequiredClaims, SubjectPattern, Trust};
use latchkey_core::{Permission, RoleName, Timestamp, TokenId};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

const TRUST_COLUMNS: &str = "id, tenant_id, name, issuer, audience, subject, claims, roles, \
    permissions, access_token_ttl_seconds, replay_protection, created_by, created_at, revoked_at";

fn trust(row: &AnyRow) -> Result<Trust, sqlx::Error> {
    let id: String = row.try_get("id")?;
    let claims: String = row.try_get("claims")?;
    let ttl: i64 = row.try_get("access_token_ttl_seconds")?;
    let split = |text: String| -> Vec<String> {
        text.split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    Ok(Trust {
        id: TokenId::parse(&id).map_err(|e| corrupt("trust id", e))?,
        tenant_id: rows::tenant_id(&row.try_get::<String, _>("tenant_id")?)?,
        name: TokenName::parse(&row.try_get::<String, _>("name")?)
            .map_err(|e| corrupt("trust name", e))?,
        issuer: row.try_get("issuer")?,
        audience: row.try_get("audience")?,
        subject: SubjectPattern::parse(&row.try_get::<String, _>("subject")?)
            .map_err(|e| corrupt("trust subject", e))?,
        claims: serde_json::from_str::<RequiredClaims>(&claims)
            .map_err(|e| corrupt("trust claims", e))?,
        roles: split(row.try_get("roles")?)
            .iter()
            .map(|r| rows::role(r))
            .collect::<Result<_, _>>()?,
        permissions: split(row.try_get("permissions")?)
            .iter()
            .map(|p| rows::permission(p))
            .collect::<Result<_, _>>()?,
        access_token_ttl_seconds: u32::try_from(ttl).map_err(|e| corrupt("trust ttl", e))?,
        replay_protection: row.try_get::<i64, _>("replay_protection")? != 0,
        created_by: row
            .try_get::<Option<String>, _>("created_by")?
            .map(|u| rows::user_id(&u))
            .transpose()?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        revoked_at: row
            .try_get::<Option<i64>, _>("revoked_at")?
            .map(Timestamp::from_millis),
    })
}

async fn select_trust(conn: &mut AnyConnection, id: TokenId) -> TxResult<Option<Trust>> {
    let sql = format!("SELECT {TRUST_COLUMNS} FROM trusts WHERE id = $1");
    let row = sqlx::query(&sql)
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.as_ref().map(trust).transpose()?)
}

fn trust_cursor(trust: &Trust) -> String {
    format!("{}:{}", trust.created_at.millis(), trust.id)
}

impl SqlStore {
    pub(crate) async fn tx_create_trust(&self, trust: &Trust, ctx: &AuditContext) -> TxResult<()> {
        let mut tx = self.writer.begin().await?;
        if !tenant_exists(&mut tx, &trust.tenant_id).await? {
            return Err(StoreError::UnknownTenant(trust.tenant_id.clone()).into());
        }
        let claims = serde_json::to_string(&trust.claims)
            .map_err(|e| StoreError::Internal(format!("encoding trust claims: {e}")))?;
        let sql = format!(
            "INSERT INTO trusts ({TRUST_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        );
        sqlx::query(&sql)
            .bind(trust.id.to_string())
            .bind(trust.tenant_id.as_str().to_owned())
            .bind(trust.name.as_str().to_owned())
            .bind(trust.issuer.clone())
            .bind(trust.audience.clone())
            .bind(trust.subject.as_str().to_owned())
            .bind(claims)
            .bind(join(trust.roles.iter().map(RoleName::as_str)))
            .bind(join(trust.permissions.iter().map(Permission::as_str)))
            .bind(i64::from(trust.access_token_ttl_seconds))
            .bind(i64::from(trust.replay_protection))
            .bind(trust.created_by.as_ref().map(|u| u.as_str().to_owned()))
            .bind(trust.created_at.millis())
            .bind(trust.revoked_at.map(Timestamp::millis))
            .execute(&mut *tx)
            .await?;
        let event = AuditEvent::new(
            AuditAction::TrustCreated,
            Some(trust.tenant_id.as_str()),
            Some(trust.id.to_string()),
        )
        .with_details(json!({
            "name": trust.name,
            "issuer": trust.issuer,
            "audience": trust.audience,
            "subject": trust.subject,
            "claims": trust.claims,
            "roles": trust.roles,
            "permissions": trust.permissions,
            "access_token_ttl_seconds": trust.access_token_ttl_seconds,
            "replay_protection": trust.replay_protection,
            "created_by": trust.created_by,
        }));
        self.audit_in(&mut tx, ctx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn read_trust(&self, id: TokenId) -> StoreResult<Option<Trust>> {
        let mut conn = self.reader().await?;
        select_trust(&mut conn, id)
            .await
            .map_err(crate::error::TxError::into_store_error)
    }

    pub(crate) async fn read_trusts(
        &self,
        tenant: &latchkey_core::TenantId,
        page: &PageRequest,
    ) -> StoreResult<Page<Trust>> {
        let (before_millis, before_id) = parse_token_cursor(page.after.as_deref());
        let sql = format!(
            "SELECT {TRUST_COLUMNS} FROM trusts WHERE tenant_id = $1 \
             AND (created_at < $2 OR (created_at = $2 AND id < $3)) \
             ORDER BY created_at DESC, id DESC LIMIT $4"
        );
        let found = sqlx::query(&sql)
            .bind(tenant.as_str().to_owned())
            .bind(before_millis)
            .bind(before_id)
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.reader)
            .await
            .map_err(from_sqlx)?;
        let items = decode_all(found, trust)?;
        Ok(page_of(items, page.limit, trust_cursor))
    }

    pub(crate) async fn read_trusts_for_issuer(&self, issuer: &str) -> StoreResult<Vec<Trust>> {
        let sql = format!(
            "SELECT {TRUST_COLUMNS} FROM trusts WHERE issuer = $1 AND revoked_at IS NULL \
             ORDER BY created_at, id"
        );
        let found = sqlx::query(&sql)
            .bind(issuer.to_owned())
            .fetch_all(&self.reader)
            .await
            .map_err(from_sqlx)?;
        decode_all(found, trust)
    }

    pub(crate) async fn tx_rename_trust(
        &self,
        id: TokenId,
        name: &TokenName,
        ctx: &AuditContext,
    ) -> TxResult<Option<Trust>> {
        let mut tx = self.writer.begin().await?;
        let Some(before) = select_trust(&mut tx, id).await? else {
            return Ok(None);
        };
        sqlx::query("UPDATE trusts SET name = $1 WHERE id = $2")
            .bind(name.as_str().to_owned())
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let event = AuditEvent::new(
            AuditAction::TrustRenamed,
            Some(before.tenant_id.as_str()),
            Some(id.to_string()),
        )
        .with_details(json!({ "from": before.name, "to": name }));
        self.audit_in(&mut tx, ctx, event).await?;
        let after = select_trust(&mut tx, id).await?;
        tx.commit().await?;
        Ok(after)
    }

    pub(crate) async fn tx_revoke_trust(
        &self,
        id: TokenId,
        ctx: &AuditContext,
    ) -> TxResult<Option<Trust>> {
        let mut tx = self.writer.begin().await?;
        let revoked = revoke_trusts_where(&mut tx, "id = $2", &id.to_string(), ctx.at).await?;
        let Some(trust) = select_trust(&mut tx, id).await? else {
            return Ok(None);
        };
        if !revoked.is_empty() {
            let event = AuditEvent::new(
                AuditAction::TrustRevoked,
                Some(trust.tenant_id.as_str()),
                Some(id.to_string()),
            );
            self.audit_in(&mut tx, ctx, event).await?;
        }
        tx.commit().await?;
        Ok(Some(trust))
    }

    /// One statement, so that two replicas racing on one `jti` cannot both win: the
    /// primary key lets one insert, and the other's upsert updates nothing unless the
    /// remembered use has expired.
    pub(crate) async fn insert_assertion_jti(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let accepted = sqlx::query(
            "INSERT INTO assertion_jtis (issuer, jti, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (issuer, jti) DO UPDATE SET expires_at = excluded.expires_at \
             WHERE assertion_jtis.expires_at <= $4 RETURNING jti",
        )
        .bind(issuer.to_owned())
        .bind(jti.to_owned())
        .bind(expires_at.millis())
        .bind(now.millis())
        .fetch_optional(&self.writer)
        .await
        .map_err(from_sqlx)?;
        Ok(accepted.is_some())
    }

    pub(crate) async fn delete_assertion_jtis(&self, now: Timestamp) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM assertion_jtis WHERE expires_at <= $1")
            .bind(now.millis())
            .execute(&self.writer)
            .await
            .map_err(from_sqlx)?;
        Ok(done.rows_affected())
    }
}
