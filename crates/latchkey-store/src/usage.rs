//! Usage aggregates from gateways ("how" a token is used), batched: one transaction per
//! batch, never one write per request.
//!
//! Counts saturate at `i64::MAX` rather than overflow: the server bounds each count it
//! accepts, but a row already at an absurd value (written by hand, or by a server that
//! added without a bound) must not turn every later merge or read into an error.
//! PostgreSQL raises on `bigint` overflow and SQLite turns the sum into a float, which no
//! longer reads as an integer.

use crate::error::{TxResult, from_sqlx};
use crate::sql::SqlStore;
use latchkey_core::audit::{AuditAction, AuditContext, AuditEvent};
use latchkey_core::store::{StoreResult, UsageRecord};
use latchkey_core::{Timestamp, TokenId};
use serde_json::json;
use sqlx::Row;

impl SqlStore {
    pub(crate) async fn tx_record_usage(
        &self,
        batch: &[UsageRecord],
        ctx: &AuditContext,
    ) -> TxResult<u64> {
        let mut tx = self.writer.begin().await?;
        let mut kept = 0;
        for record in batch {
            let id = record.token_id.to_string();
            let tenant: Option<String> =
                sqlx::query_scalar("SELECT tenant_id FROM tokens WHERE id = $1")
                    .bind(id.clone())
                    .fetch_optional(&mut *tx)
                    .await?;
            let Some(tenant) = tenant else {
                continue;
            };
            kept += 1;
            sqlx::query(
                "INSERT INTO usage_minutes (token_id, minute, route, method, status_class, \
                 client_ip, count) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (token_id, minute, route, method, status_class, client_ip) \
                 DO UPDATE SET count = CASE WHEN usage_minutes.count > $8 - excluded.count \
                 THEN $8 ELSE usage_minutes.count + excluded.count END",
            )
            .bind(id.clone())
            .bind(record.minute.millis())
            .bind(record.route.clone())
            .bind(record.method.clone())
            .bind(record.status_class.clone())
            .bind(record.client_ip.clone())
            // Never negative, so `$8 - excluded.count` cannot overflow either.
            .bind(record.count.max(0))
            .bind(i64::MAX)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE tokens SET last_used_at = $1, last_used_ip = $2 \
                 WHERE id = $3 AND (last_used_at IS NULL OR last_used_at <= $1)",
            )
            .bind(record.last_used_at.millis())
            .bind(record.client_ip.clone())
            .bind(id.clone())
            .execute(&mut *tx)
            .await?;
            if first_seen(
                &mut tx,
                "token_ips",
                "ip",
                &id,
                &record.client_ip,
                record.last_used_at,
            )
            .await?
            {
                let event = AuditEvent::new(
                    AuditAction::TokenFirstSeenIp,
                    Some(&tenant),
                    Some(id.clone()),
                )
                .with_details(json!({ "ip": record.client_ip, "route": record.route }));
                self.audit_in(&mut tx, ctx, event).await?;
            }
            if let Some(country) = record.country {
                if first_seen(
                    &mut tx,
                    "token_countries",
                    "country",
                    &id,
                    country.as_str(),
                    record.last_used_at,
                )
                .await?
                {
                    let event = AuditEvent::new(
                        AuditAction::TokenFirstSeenCountry,
                        Some(&tenant),
                        Some(id.clone()),
                    )
                    .with_details(json!({
                        "token_id": id,
                        "country": country.as_str(),
                        "ip": record.client_ip,
                    }));
                    self.audit_in(&mut tx, ctx, event).await?;
                }
            }
        }
        tx.commit().await?;
        Ok(kept)
    }
}

/// Records that token `id` was seen with `value` in `table` (`token_ips` by `ip`,
/// `token_countries` by `country`: names from this file, never client text); true the
/// first time.
async fn first_seen(
    tx: &mut sqlx::AnyConnection,
    table: &str,
    column: &str,
    id: &str,
    value: &str,
    at: Timestamp,
) -> Result<bool, sqlx::Error> {
    let sql = format!(
        "INSERT INTO {table} (token_id, {column}, first_seen) VALUES ($1, $2, $3) \
         ON CONFLICT (token_id, {column}) DO NOTHING"
    );
    let inserted = sqlx::query(&sql)
        .bind(id.to_owned())
        .bind(value.to_owned())
        .bind(at.millis())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    Ok(inserted == 1)
}

/// At most this many aggregates answer one query (a token used from 1,000 addresses on
/// 10 routes for a week is well below it).
const MAX_ROWS: i64 = 200_000;

impl SqlStore {
    pub(crate) async fn read_token_usage(
        &self,
        token: TokenId,
        since: Timestamp,
        until: Timestamp,
    ) -> StoreResult<Vec<UsageRecord>> {
        let rows = sqlx::query(
            // The cast reads a float that SQLite made of an overflowing sum as the
            // saturated integer (a no-op on PostgreSQL, whose column is a bigint).
            "SELECT minute, route, method, status_class, client_ip, \
             CAST(count AS BIGINT) AS count FROM usage_minutes \
             WHERE token_id = $1 AND minute >= $2 AND minute < $3 ORDER BY minute LIMIT $4",
        )
        .bind(token.to_string())
        .bind(since.millis())
        .bind(until.millis())
        .bind(MAX_ROWS)
        .fetch_all(&self.reader)
        .await
        .map_err(from_sqlx)?;
        rows.iter()
            .map(|row| {
                let minute = Timestamp::from_millis(row.try_get("minute")?);
                Ok(UsageRecord {
                    token_id: token,
                    minute,
                    route: row.try_get("route")?,
                    method: row.try_get("method")?,
                    status_class: row.try_get("status_class")?,
                    client_ip: row.try_get("client_ip")?,
                    count: row.try_get("count")?,
                    last_used_at: minute,
                    country: None,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(from_sqlx)
    }

    pub(crate) async fn tx_compact_usage(&self, before: Timestamp) -> TxResult<u64> {
        let mut tx = self.writer.begin().await?;
        let removed = sqlx::query("DELETE FROM usage_minutes WHERE minute < $1")
            .bind(before.millis())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(removed)
    }
}
