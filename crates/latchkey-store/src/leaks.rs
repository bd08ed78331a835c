//! Leaked credentials (docs/API.md, "Leak reports"): finding a token by the lookup value
//! of its secret, and revoking what a report found in one transaction with its
//! revocation-log entries, its usual revocation event and `token.leaked`.

use crate::error::{TxResult, from_sqlx};
use crate::oauth::{revoke_family_in, revoke_jti_in};
use crate::rows::{self, TOKEN_COLUMNS};
use crate::sql::{SqlStore, revoke_where};
use latchkey_core::audit::{AuditAction, AuditContext, AuditEvent};
use latchkey_core::store::{LeakReport, LeakedCredential, StoreResult};
use latchkey_core::token::{RevokedReason, TokenRecord};
use latchkey_core::{Timestamp, TokenId};
use serde_json::{Value, json};
use sqlx::{AnyConnection, Row};

/// The `token.leaked` event of `token`: where the report says the credential was seen,
/// and which credential it was.
fn leaked_event(
    tenant: &str,
    token: &str,
    report: &LeakReport,
    credential: &str,
    extra: Value,
) -> AuditEvent {
    let mut details = json!(report);
    if let (Some(details), Value::Object(extra)) = (details.as_object_mut(), extra) {
        details.insert("credential".to_owned(), json!(credential));
        details.extend(extra);
    }
    AuditEvent::new(
        AuditAction::TokenLeaked,
        Some(tenant),
        Some(token.to_owned()),
    )
    .with_details(details)
}

impl SqlStore {
    pub(crate) async fn read_token_by_lookup(
        &self,
        lookup: &[u8],
    ) -> StoreResult<Option<TokenRecord>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_lookup = $1");
        let row = sqlx::query(&sql)
            .bind(lookup.to_vec())
            .fetch_optional(&self.reader)
            .await
            .map_err(from_sqlx)?;
        row.as_ref()
            .map(rows::token_record)
            .transpose()
            .map_err(from_sqlx)
    }

    pub(crate) async fn tx_revoke_leaked(
        &self,
        leaked: &LeakedCredential,
        report: &LeakReport,
        ctx: &AuditContext,
    ) -> TxResult<bool> {
        let mut tx = self.writer.begin().await?;
        let revoked = match leaked {
            LeakedCredential::Token(id) => self.leaked_token_in(&mut tx, *id, report, ctx).await?,
            LeakedCredential::RefreshFamily(family) => {
                self.leaked_family_in(&mut tx, *family, report, ctx).await?
            }
            LeakedCredential::AccessToken {
                jti,
                token_id,
                tenant,
                expires_at,
            } => {
                self.leaked_jti_in(
                    &mut tx,
                    jti,
                    *token_id,
                    tenant.as_str(),
                    *expires_at,
                    report,
                    ctx,
                )
                .await?
            }
        };
        tx.commit().await?;
        Ok(revoked)
    }

    async fn leaked_token_in(
        &self,
        tx: &mut AnyConnection,
        id: TokenId,
        report: &LeakReport,
        ctx: &AuditContext,
    ) -> TxResult<bool> {
        let id_text = id.to_string();
        let revoked =
            revoke_where(tx, "id = $2", &[&id_text], ctx.at, RevokedReason::Leaked).await?;
        if revoked.is_empty() {
            return Ok(false);
        }
        let tenant: String = sqlx::query_scalar("SELECT tenant_id FROM tokens WHERE id = $1")
            .bind(id_text.clone())
            .fetch_one(&mut *tx)
            .await?;
        let event = AuditEvent::new(
            AuditAction::TokenRevoked,
            Some(&tenant),
            Some(id_text.clone()),
        )
        .with_details(json!({ "reason": RevokedReason::Leaked }));
        self.audit_in(&mut *tx, ctx, event).await?;
        let leaked = leaked_event(&tenant, &id_text, report, "token", json!({}));
        self.audit_in(&mut *tx, ctx, leaked).await?;
        Ok(true)
    }

    async fn leaked_family_in(
        &self,
        tx: &mut AnyConnection,
        family: TokenId,
        report: &LeakReport,
        ctx: &AuditContext,
    ) -> TxResult<bool> {
        if !revoke_family_in(&mut *tx, family, ctx.at).await? {
            return Ok(false);
        }
        let owner = sqlx::query(
            "SELECT t.id, t.tenant_id FROM refresh_families f \
             JOIN tokens t ON t.id = f.token_id WHERE f.id = $1",
        )
        .bind(family.to_string())
        .fetch_one(&mut *tx)
        .await?;
        let token: String = owner.try_get("id")?;
        let tenant: String = owner.try_get("tenant_id")?;
        let event = AuditEvent::new(AuditAction::RefreshRevoked, None, Some(family.to_string()))
            .with_details(json!({ "reason": RevokedReason::Leaked }));
        self.audit_in(&mut *tx, ctx, event).await?;
        let extra = json!({ "family": family });
        let leaked = leaked_event(&tenant, &token, report, "refresh_token", extra);
        self.audit_in(&mut *tx, ctx, leaked).await?;
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    async fn leaked_jti_in(
        &self,
        tx: &mut AnyConnection,
        jti: &str,
        token: TokenId,
        tenant: &str,
        expires_at: Timestamp,
        report: &LeakReport,
        ctx: &AuditContext,
    ) -> TxResult<bool> {
        if !revoke_jti_in(&mut *tx, jti, tenant, ctx.at, expires_at).await? {
            return Ok(false);
        }
        let event = AuditEvent::new(
            AuditAction::AccessTokenRevoked,
            Some(tenant),
            Some(token.to_string()),
        )
        .with_details(json!({ "jti": jti, "reason": RevokedReason::Leaked }));
        self.audit_in(&mut *tx, ctx, event).await?;
        let extra = json!({ "jti": jti });
        let leaked = leaked_event(tenant, &token.to_string(), report, "access_token", extra);
        self.audit_in(&mut *tx, ctx, leaked).await?;
        Ok(true)
    }
}
