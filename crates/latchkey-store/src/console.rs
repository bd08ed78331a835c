//! Console sessions and the secrets they show once (docs/CONSOLE.md). A session starts
//! as the digest of a single-use code and is opened at most once: the opening is one
//! conditional `UPDATE`, so two replicas racing on one code cannot both win. A secret
//! held for its one showing is read and deleted in one statement.

use crate::error::{TxResult, corrupt, from_sqlx};
use crate::rows;
use crate::sql::{SqlStore, tenant_exists};
use latchkey_core::audit::{AuditAction, AuditContext, AuditEvent};
use latchkey_core::store::{ConsoleKey, ConsoleSession, StoreError, StoreResult};
use latchkey_core::{Timestamp, TokenId};
use serde_json::json;
use sqlx::Row;
use sqlx::any::AnyRow;

const COLUMNS: &str = "id, tenant_id, user_id, admin_token_id, created_at, created_by, \
     code_expires_at, opened_at, expires_at, ended_at";

fn token_id(text: &str) -> Result<TokenId, sqlx::Error> {
    TokenId::parse(text).map_err(|e| corrupt("console session id", e))
}

fn session(row: &AnyRow) -> Result<ConsoleSession, sqlx::Error> {
    let millis = |name: &str| -> Result<Option<Timestamp>, sqlx::Error> {
        Ok(row
            .try_get::<Option<i64>, _>(name)?
            .map(Timestamp::from_millis))
    };
    Ok(ConsoleSession {
        id: token_id(&row.try_get::<String, _>("id")?)?,
        tenant_id: rows::tenant_id(&row.try_get::<String, _>("tenant_id")?)?,
        user_id: row
            .try_get::<Option<String>, _>("user_id")?
            .map(|text| rows::user_id(&text))
            .transpose()?,
        admin_token_id: row
            .try_get::<Option<String>, _>("admin_token_id")?
            .map(|text| token_id(&text))
            .transpose()?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        created_by: row.try_get("created_by")?,
        code_expires_at: Timestamp::from_millis(row.try_get("code_expires_at")?),
        opened_at: millis("opened_at")?,
        expires_at: Timestamp::from_millis(row.try_get("expires_at")?),
        ended_at: millis("ended_at")?,
    })
}

impl SqlStore {
    pub(crate) async fn tx_create_console_session(
        &self,
        new: &ConsoleSession,
        key: &ConsoleKey,
        ctx: &AuditContext,
    ) -> TxResult<()> {
        let mut tx = self.writer.begin().await?;
        if !tenant_exists(&mut tx, &new.tenant_id).await? {
            return Err(StoreError::UnknownTenant(new.tenant_id.clone()).into());
        }
        let (code, cookie) = match key {
            ConsoleKey::Code(digest) => (Some(digest.clone()), None),
            ConsoleKey::Cookie(digest) => (None, Some(digest.clone())),
        };
        sqlx::query(&format!(
            "INSERT INTO console_sessions ({COLUMNS}, code_hash, cookie_hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
        ))
        .bind(new.id.to_string())
        .bind(new.tenant_id.as_str().to_owned())
        .bind(new.user_id.as_ref().map(ToString::to_string))
        .bind(new.admin_token_id.map(|id| id.to_string()))
        .bind(new.created_at.millis())
        .bind(new.created_by.clone())
        .bind(new.code_expires_at.millis())
        .bind(new.opened_at.map(Timestamp::millis))
        .bind(new.expires_at.millis())
        .bind(new.ended_at.map(Timestamp::millis))
        .bind(code)
        .bind(cookie)
        .execute(&mut *tx)
        .await?;
        let event = AuditEvent::new(
            AuditAction::ConsoleSessionCreated,
            Some(new.tenant_id.as_str()),
            None,
        )
        .with_details(json!({
            "session_id": new.id,
            "user_id": new.user_id,
            "expires_at": new.expires_at,
        }));
        self.audit_in(&mut tx, ctx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn write_open_console_session(
        &self,
        code_hash: &[u8],
        cookie_hash: &[u8],
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<Option<ConsoleSession>> {
        // The code digest is cleared as it is used: the code can never open anything
        // again, and the row no longer holds it.
        let row = sqlx::query(&format!(
            "UPDATE console_sessions SET cookie_hash = $1, opened_at = $2, \
             expires_at = CASE WHEN expires_at < $3 THEN expires_at ELSE $3 END, code_hash = NULL \
             WHERE code_hash = $4 AND opened_at IS NULL AND ended_at IS NULL \
             AND code_expires_at > $2 RETURNING {COLUMNS}"
        ))
        .bind(cookie_hash.to_vec())
        .bind(now.millis())
        .bind(expires_at.millis())
        .bind(code_hash.to_vec())
        .fetch_optional(&self.writer)
        .await
        .map_err(from_sqlx)?;
        row.as_ref().map(session).transpose().map_err(from_sqlx)
    }

    pub(crate) async fn read_console_session_by_cookie(
        &self,
        cookie_hash: &[u8],
    ) -> StoreResult<Option<ConsoleSession>> {
        let sql = format!("SELECT {COLUMNS} FROM console_sessions WHERE cookie_hash = $1");
        // From the writer: a session opened a moment ago on this replica must be found.
        let row = sqlx::query(&sql)
            .bind(cookie_hash.to_vec())
            .fetch_optional(&self.writer)
            .await
            .map_err(from_sqlx)?;
        row.as_ref().map(session).transpose().map_err(from_sqlx)
    }

    pub(crate) async fn read_console_session_by_id(
        &self,
        id: TokenId,
    ) -> StoreResult<Option<ConsoleSession>> {
        let sql = format!("SELECT {COLUMNS} FROM console_sessions WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.to_string())
            .fetch_optional(&self.writer)
            .await
            .map_err(from_sqlx)?;
        row.as_ref().map(session).transpose().map_err(from_sqlx)
    }

    pub(crate) async fn tx_end_console_session(
        &self,
        id: TokenId,
        ctx: &AuditContext,
    ) -> TxResult<bool> {
        let mut tx = self.writer.begin().await?;
        let ended = sqlx::query(
            "UPDATE console_sessions SET ended_at = $1, code_hash = NULL \
             WHERE id = $2 AND ended_at IS NULL RETURNING tenant_id, user_id",
        )
        .bind(ctx.at.millis())
        .bind(id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = ended else {
            return Ok(false);
        };
        let tenant: String = row.try_get("tenant_id")?;
        let user: Option<String> = row.try_get("user_id")?;
        sqlx::query("DELETE FROM console_reveals WHERE session_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let event = AuditEvent::new(AuditAction::ConsoleSessionEnded, Some(&tenant), None)
            .with_details(json!({ "session_id": id, "user_id": user }));
        self.audit_in(&mut tx, ctx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn write_console_reveal(
        &self,
        session: TokenId,
        id: TokenId,
        sealed: &[u8],
        expires_at: Timestamp,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO console_reveals (id, session_id, sealed, expires_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(session.to_string())
        .bind(sealed.to_vec())
        .bind(expires_at.millis())
        .execute(&self.writer)
        .await
        .map_err(from_sqlx)?;
        Ok(())
    }

    pub(crate) async fn write_take_console_reveal(
        &self,
        session: TokenId,
        id: TokenId,
        now: Timestamp,
    ) -> StoreResult<Option<Vec<u8>>> {
        // Expired ones go with any taking, so none outlives its page for long.
        sqlx::query("DELETE FROM console_reveals WHERE expires_at <= $1")
            .bind(now.millis())
            .execute(&self.writer)
            .await
            .map_err(from_sqlx)?;
        let row = sqlx::query(
            "DELETE FROM console_reveals WHERE id = $1 AND session_id = $2 RETURNING sealed",
        )
        .bind(id.to_string())
        .bind(session.to_string())
        .fetch_optional(&self.writer)
        .await
        .map_err(from_sqlx)?;
        row.map(|row| row.try_get::<Vec<u8>, _>("sealed"))
            .transpose()
            .map_err(from_sqlx)
    }
}
