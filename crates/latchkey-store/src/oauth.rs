//! The authorization server's state: signing keys (rotated exactly once across
//! replicas), refresh-token families (rotated on every use, revoked whole on reuse) and
//! single access tokens on the deny list.

use crate::error::{TxResult, corrupt, from_sqlx};
use crate::sql::{SqlStore, append_revocation};
use latchkey_core::audit::{AuditAction, AuditContext, AuditEvent};
use latchkey_core::jwt::Algorithm;
use latchkey_core::permission::{format_scope, parse_scope};
use latchkey_core::secret::StoredSecret;
use latchkey_core::store::{
    FeedKind, RefreshFamily, RefreshOutcome, RefreshRecord, RevocationEntry, RotateWhen,
    SigningKeyRecord, StoreError, StoreResult,
};
use latchkey_core::token::TokenKind;
use latchkey_core::{Timestamp, TokenId};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

/// Keys beyond the newest three are kept only while a live long-lived JWT needs them:
/// the query of their kids, `$1` being now.
fn live_jwt_kids() -> String {
    format!(
        "SELECT signing_kid FROM tokens WHERE kind = '{}' \
         AND signing_kid IS NOT NULL AND revoked_at IS NULL \
         AND (expires_at IS NULL OR expires_at > $1)",
        TokenKind::Jwt.as_str()
    )
}

fn signing_key(row: &AnyRow) -> Result<SigningKeyRecord, sqlx::Error> {
    Ok(SigningKeyRecord {
        kid: row.try_get("kid")?,
        seq: row.try_get("seq")?,
        alg: {
            let alg: String = row.try_get("alg")?;
            Algorithm::parse(&alg).ok_or_else(|| corrupt("signing key algorithm", &alg))?
        },
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        private_sealed: row.try_get("private_sealed")?,
        public_jwk: row.try_get("public_jwk")?,
    })
}

fn token_id(text: &str) -> Result<TokenId, sqlx::Error> {
    TokenId::parse(text).map_err(|e| crate::error::corrupt("id", e))
}

fn refresh_pair(row: &AnyRow) -> Result<(RefreshRecord, RefreshFamily), sqlx::Error> {
    let family_id = token_id(row.try_get("family_id")?)?;
    let record = RefreshRecord {
        id: token_id(row.try_get("id")?)?,
        family_id,
        secret: StoredSecret {
            salt: row.try_get("secret_salt")?,
            hash: row.try_get("secret_hash")?,
        },
        jti: row.try_get("jti")?,
        access_expires_at: Timestamp::from_millis(row.try_get("access_expires_at")?),
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        used_at: row
            .try_get::<Option<i64>, _>("used_at")?
            .map(Timestamp::from_millis),
    };
    let family = RefreshFamily {
        id: family_id,
        token_id: token_id(row.try_get("token_id")?)?,
        created_at: Timestamp::from_millis(row.try_get("family_created_at")?),
        expires_at: Timestamp::from_millis(row.try_get("family_expires_at")?),
        revoked_at: row
            .try_get::<Option<i64>, _>("family_revoked_at")?
            .map(Timestamp::from_millis),
        scope: {
            let scope: String = row.try_get("scope")?;
            parse_scope(&scope).map_err(|error| corrupt("refresh family scope", error))?
        },
        audience: row.try_get("audience")?,
        dpop_jkt: row.try_get("dpop_jkt")?,
    };
    Ok((record, family))
}

async fn insert_refresh(conn: &mut AnyConnection, record: &RefreshRecord) -> TxResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (id, family_id, secret_salt, secret_hash, jti, \
         access_expires_at, created_at, used_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(record.id.to_string())
    .bind(record.family_id.to_string())
    .bind(record.secret.salt.clone())
    .bind(record.secret.hash.clone())
    .bind(record.jti.clone())
    .bind(record.access_expires_at.millis())
    .bind(record.created_at.millis())
    .bind(record.used_at.map(Timestamp::millis))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Revokes a family and puts the access tokens issued from it that may still be alive on
/// the deny list. False when the family is unknown or already revoked.
pub(crate) async fn revoke_family_in(
    conn: &mut AnyConnection,
    family: TokenId,
    at: Timestamp,
) -> TxResult<bool> {
    let revoked = sqlx::query(
        "UPDATE refresh_families SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
         RETURNING token_id, expires_at",
    )
    .bind(at.millis())
    .bind(family.to_string())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = revoked else {
        return Ok(false);
    };
    let token: String = row.try_get("token_id")?;
    let family_expires: i64 = row.try_get("expires_at")?;
    let tenant: String = sqlx::query_scalar("SELECT tenant_id FROM tokens WHERE id = $1")
        .bind(token)
        .fetch_one(&mut *conn)
        .await?;
    let family_text = family.to_string();
    append_revocation(
        conn,
        FeedKind::Family,
        &family_text,
        &tenant,
        at,
        Some(family_expires),
    )
    .await?;
    let live = sqlx::query(
        "SELECT jti, access_expires_at FROM refresh_tokens \
         WHERE family_id = $1 AND access_expires_at > $2",
    )
    .bind(family_text)
    .bind(at.millis())
    .fetch_all(&mut *conn)
    .await?;
    for row in live {
        let jti: String = row.try_get("jti")?;
        let expires: i64 = row.try_get("access_expires_at")?;
        append_revocation(conn, FeedKind::Jti, &jti, &tenant, at, Some(expires)).await?;
    }
    Ok(true)
}

/// Puts `jti` on the deny list until `expires_at` inside the caller's transaction.
/// False when it was there already.
pub(crate) async fn revoke_jti_in(
    conn: &mut AnyConnection,
    jti: &str,
    tenant: &str,
    at: Timestamp,
    expires_at: Timestamp,
) -> TxResult<bool> {
    let known: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM revocations WHERE kind = $1 AND subject = $2")
            .bind(FeedKind::Jti.as_str())
            .bind(jti.to_owned())
            .fetch_optional(&mut *conn)
            .await?;
    if known.is_some() {
        return Ok(false);
    }
    append_revocation(
        conn,
        FeedKind::Jti,
        jti,
        tenant,
        at,
        Some(expires_at.millis()),
    )
    .await?;
    Ok(true)
}

impl SqlStore {
    pub(crate) async fn read_signing_keys(
        &self,
        now: Timestamp,
    ) -> StoreResult<Vec<SigningKeyRecord>> {
        let sql = format!(
            "SELECT kid, seq, alg, created_at, private_sealed, public_jwk FROM signing_keys \
             WHERE seq > (SELECT COALESCE(MAX(seq), 0) - 3 FROM signing_keys) \
             OR kid IN ({}) ORDER BY seq DESC",
            live_jwt_kids()
        );
        let found = sqlx::query(&sql)
            .bind(now.millis())
            .fetch_all(&self.reader)
            .await
            .map_err(from_sqlx)?;
        found
            .iter()
            .map(signing_key)
            .collect::<Result<Vec<_>, _>>()
            .map_err(from_sqlx)
    }

    pub(crate) async fn tx_rotate_signing_key(
        &self,
        key: &SigningKeyRecord,
        when: RotateWhen,
        ctx: &AuditContext,
    ) -> TxResult<bool> {
        let mut tx = self.writer.begin().await?;
        // Taking the rotation lock first makes the check below and the insert one step
        // for every replica: the second to arrive sees the first one's key.
        let seq: i64 = sqlx::query_scalar(
            "UPDATE chain_heads SET seq = seq + 1 WHERE name = 'signing_keys' RETURNING seq",
        )
        .fetch_one(&mut *tx)
        .await?;
        let due = match when {
            RotateWhen::Always => true,
            RotateWhen::FewerThan(count) => {
                let keys: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM signing_keys")
                    .fetch_one(&mut *tx)
                    .await?;
                keys < count
            }
            RotateWhen::NewestOlderThan(instant) => {
                let newest: Option<i64> =
                    sqlx::query_scalar("SELECT MAX(created_at) FROM signing_keys")
                        .fetch_one(&mut *tx)
                        .await?;
                newest.is_none_or(|created| created < instant.millis())
            }
        };
        if !due {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, seq, alg, created_at, private_sealed, public_jwk) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(key.kid.clone())
        .bind(seq)
        .bind(key.alg.as_str())
        .bind(key.created_at.millis())
        .bind(key.private_sealed.clone())
        .bind(key.public_jwk.clone())
        .execute(&mut *tx)
        .await?;
        let retired = sqlx::query(&format!(
            "DELETE FROM signing_keys WHERE seq <= $2 AND kid NOT IN ({})",
            live_jwt_kids()
        ))
        .bind(ctx.at.millis())
        .bind(seq - 3)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let event = AuditEvent::new(AuditAction::KeyRotated, None, Some(key.kid.clone()))
            .with_details(json!({ "alg": key.alg, "keys_retired": retired }));
        self.audit_in(&mut tx, ctx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn tx_start_refresh_family(
        &self,
        family: &RefreshFamily,
        first: &RefreshRecord,
        max_families: u32,
        ctx: &AuditContext,
    ) -> TxResult<()> {
        let mut tx = self.writer.begin().await?;
        // A token's families get strictly increasing start times, so "the oldest" that the
        // cap revokes is well defined even for exchanges within one millisecond (ties were
        // broken by the random id, and could revoke a newer family).
        let latest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(created_at) FROM refresh_families WHERE token_id = $1")
                .bind(family.token_id.to_string())
                .fetch_one(&mut *tx)
                .await?;
        let created_at = latest.map_or(family.created_at.millis(), |latest| {
            latest.saturating_add(1).max(family.created_at.millis())
        });
        sqlx::query(
            "INSERT INTO refresh_families (id, token_id, created_at, expires_at, revoked_at, \
             scope, audience, dpop_jkt) VALUES ($1, $2, $3, $4, NULL, $5, $6, $7)",
        )
        .bind(family.id.to_string())
        .bind(family.token_id.to_string())
        .bind(created_at)
        .bind(family.expires_at.millis())
        .bind(format_scope(&family.scope))
        .bind(family.audience.clone())
        .bind(family.dpop_jkt.clone())
        .execute(&mut *tx)
        .await?;
        insert_refresh(&mut tx, first).await?;
        let active: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM refresh_families WHERE token_id = $1 AND revoked_at IS NULL \
             ORDER BY created_at DESC, id DESC",
        )
        .bind(family.token_id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        for oldest in active.iter().skip(max_families as usize) {
            revoke_family_in(&mut tx, token_id(oldest)?, ctx.at).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// See `Store::remember_dpop_proof`. The insert is the test: the primary key makes
    /// two replicas racing on one proof agree that exactly one saw it first.
    pub(crate) async fn tx_remember_dpop_proof(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> TxResult<bool> {
        let mut tx = self.writer.begin().await?;
        sqlx::query("DELETE FROM dpop_proofs WHERE proof_key = $1 AND expires_at <= $2")
            .bind(key)
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO dpop_proofs (proof_key, expires_at) VALUES ($1, $2) \
             ON CONFLICT (proof_key) DO NOTHING",
        )
        .bind(key)
        .bind(expires_at.millis())
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        // Expired rows go a few at a time with each new one, so the table stays the
        // size of one window's proofs without a sweep of its own.
        if inserted {
            sqlx::query(
                "DELETE FROM dpop_proofs WHERE proof_key IN (SELECT proof_key FROM dpop_proofs \
                 WHERE expires_at <= $1 ORDER BY expires_at LIMIT 8)",
            )
            .bind(now.millis())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(inserted)
    }

    pub(crate) async fn read_refresh(
        &self,
        id: TokenId,
    ) -> StoreResult<Option<(RefreshRecord, RefreshFamily)>> {
        let row = sqlx::query(
            "SELECT r.id, r.family_id, r.secret_salt, r.secret_hash, r.jti, r.access_expires_at, \
             r.created_at, r.used_at, f.token_id, f.created_at AS family_created_at, \
             f.expires_at AS family_expires_at, f.revoked_at AS family_revoked_at, f.scope, \
             f.audience, f.dpop_jkt FROM refresh_tokens r JOIN refresh_families f ON f.id = r.family_id \
             WHERE r.id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(from_sqlx)?;
        row.as_ref()
            .map(refresh_pair)
            .transpose()
            .map_err(from_sqlx)
    }

    pub(crate) async fn tx_rotate_refresh(
        &self,
        used: TokenId,
        next: &RefreshRecord,
        ctx: &AuditContext,
    ) -> TxResult<RefreshOutcome> {
        let mut tx = self.writer.begin().await?;
        let claimed =
            sqlx::query("UPDATE refresh_tokens SET used_at = $1 WHERE id = $2 AND used_at IS NULL")
                .bind(ctx.at.millis())
                .bind(used.to_string())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if claimed == 1 {
            insert_refresh(&mut tx, next).await?;
            tx.commit().await?;
            return Ok(RefreshOutcome::Rotated);
        }
        // A used refresh token came back: someone holds a copy. Revoke the whole family.
        let family: Option<String> =
            sqlx::query_scalar("SELECT family_id FROM refresh_tokens WHERE id = $1")
                .bind(used.to_string())
                .fetch_optional(&mut *tx)
                .await?;
        let family = family.ok_or_else(|| StoreError::Internal("refresh token vanished".into()))?;
        let family = token_id(&family)?;
        if revoke_family_in(&mut tx, family, ctx.at).await? {
            let event = AuditEvent::new(AuditAction::RefreshReused, None, Some(family.to_string()))
                .with_details(json!({ "refresh_token_id": used }));
            self.audit_in(&mut tx, ctx, event).await?;
        }
        tx.commit().await?;
        Ok(RefreshOutcome::Reused)
    }

    pub(crate) async fn tx_revoke_refresh_family(
        &self,
        family: TokenId,
        ctx: &AuditContext,
    ) -> TxResult<bool> {
        let mut tx = self.writer.begin().await?;
        let revoked = revoke_family_in(&mut tx, family, ctx.at).await?;
        if revoked {
            let event =
                AuditEvent::new(AuditAction::RefreshRevoked, None, Some(family.to_string()));
            self.audit_in(&mut tx, ctx, event).await?;
        }
        tx.commit().await?;
        Ok(revoked)
    }

    pub(crate) async fn tx_revoke_jti(
        &self,
        jti: &str,
        token: TokenId,
        tenant: &str,
        expires_at: Timestamp,
        ctx: &AuditContext,
    ) -> TxResult<()> {
        let mut tx = self.writer.begin().await?;
        if revoke_jti_in(&mut tx, jti, tenant, ctx.at, expires_at).await? {
            let event = AuditEvent::new(
                AuditAction::AccessTokenRevoked,
                Some(tenant),
                Some(token.to_string()),
            )
            .with_details(json!({ "jti": jti }));
            self.audit_in(&mut tx, ctx, event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn read_revocations_after(
        &self,
        after: i64,
        limit: u32,
    ) -> StoreResult<(Vec<RevocationEntry>, i64)> {
        let mut conn = self.reader().await?;
        let head: i64 =
            sqlx::query_scalar("SELECT seq FROM chain_heads WHERE name = 'revocations'")
                .fetch_one(&mut *conn)
                .await
                .map_err(from_sqlx)?;
        let rows = sqlx::query(
            "SELECT seq, kind, subject, tenant_id, revoked_at, expires_at, state \
             FROM revocations WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
        )
        .bind(after)
        .bind(head)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await
        .map_err(from_sqlx)?;
        let entries = rows
            .iter()
            .map(revocation_entry)
            .collect::<StoreResult<Vec<_>>>()?;
        Ok((entries, head))
    }

    pub(crate) async fn tx_compact_revocations(&self, now: Timestamp) -> TxResult<u64> {
        let mut tx = self.writer.begin().await?;
        let removed = sqlx::query("DELETE FROM revocations WHERE expires_at < $1")
            .bind(now.millis())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(removed)
    }

    pub(crate) async fn read_revoked_jtis(&self, now: Timestamp) -> StoreResult<Vec<String>> {
        sqlx::query_scalar(
            "SELECT subject FROM revocations WHERE kind = $1 \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(FeedKind::Jti.as_str())
        .bind(now.millis())
        .fetch_all(&self.reader)
        .await
        .map_err(from_sqlx)
    }
}

fn revocation_entry(row: &sqlx::any::AnyRow) -> StoreResult<RevocationEntry> {
    let kind: String = row.try_get("kind").map_err(from_sqlx)?;
    let kind = FeedKind::parse(&kind)
        .ok_or_else(|| StoreError::Internal(format!("unknown revocation kind `{kind}`")))?;
    let state: Option<String> = row.try_get("state").map_err(from_sqlx)?;
    let state: Option<serde_json::Value> = state
        .map(|text| serde_json::from_str(&text))
        .transpose()
        .map_err(|e| StoreError::Internal(format!("revocation state: {e}")))?;
    // A state entry without its state would read as "holds nothing" downstream, which
    // is not what was written: refuse it instead.
    let state_names = |wanted: bool, member: &str| -> StoreResult<Option<Vec<String>>> {
        if !wanted {
            return Ok(None);
        }
        state
            .as_ref()
            .and_then(|state| state.get(member))
            .and_then(serde_json::Value::as_array)
            .and_then(|names| {
                names
                    .iter()
                    .map(|v| v.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
            })
            .map(Some)
            .ok_or_else(|| {
                StoreError::Internal(format!("{} entry without `{member}`", kind.as_str()))
            })
    };
    Ok(RevocationEntry {
        seq: row.try_get("seq").map_err(from_sqlx)?,
        kind,
        subject: row.try_get("subject").map_err(from_sqlx)?,
        tenant_id: row.try_get("tenant_id").map_err(from_sqlx)?,
        revoked_at: Timestamp::from_millis(row.try_get("revoked_at").map_err(from_sqlx)?),
        expires_at: row
            .try_get::<Option<i64>, _>("expires_at")
            .map_err(from_sqlx)?
            .map(Timestamp::from_millis),
        permissions: state_names(kind == FeedKind::Role, "permissions")?,
        roles: state_names(kind == FeedKind::Member, "roles")?,
        network: if kind == FeedKind::TenantPolicy {
            let network = state
                .as_ref()
                .and_then(|state| state.get("network"))
                .cloned()
                .ok_or_else(|| {
                    StoreError::Internal("tenant_policy entry without `network`".into())
                })?;
            Some(
                serde_json::from_value(network)
                    .map_err(|e| StoreError::Internal(format!("tenant_policy entry: {e}")))?,
            )
        } else {
            None
        },
    })
}
