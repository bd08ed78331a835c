//! The audit trail: group-committed appends, filtered listing newest first, and the
//! chain in order for export and verification.

use crate::error::{TxResult, corrupt, from_sqlx};
use crate::sql::SqlStore;
use latchkey_core::Timestamp;
use latchkey_core::audit::{AuditContext, AuditEvent, chain_hash, hex};
use latchkey_core::store::{AuditFilter, AuditRecord, Page, PageRequest, StoreResult};
use sqlx::Row;
use sqlx::any::AnyRow;

const COLUMNS: &str = "seq, at, action, actor, actor_user, tenant_id, target, ip, user_agent, \
    details, prev_hash, hash";

/// Rows per multi-row INSERT: 12 parameters each, well within both databases' limits.
const INSERT_CHUNK: usize = 500;

fn record(row: &AnyRow) -> Result<AuditRecord, sqlx::Error> {
    let details: String = row.try_get("details")?;
    let action: String = row.try_get("action")?;
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        context: AuditContext {
            actor: row.try_get("actor")?,
            actor_user: row.try_get("actor_user")?,
            ip: row.try_get("ip")?,
            user_agent: row.try_get("user_agent")?,
            at: Timestamp::from_millis(row.try_get("at")?),
        },
        event: AuditEvent {
            action: action.into(),
            tenant_id: row.try_get("tenant_id")?,
            target: row.try_get("target")?,
            details: serde_json::from_str(&details).map_err(|e| corrupt("audit details", e))?,
        },
        prev_hash: hex(&row.try_get::<Vec<u8>, _>("prev_hash")?),
        hash: hex(&row.try_get::<Vec<u8>, _>("hash")?),
    })
}

impl SqlStore {
    /// One transaction, three statements per 500 events: take the chain head for the
    /// whole batch, insert the events with their hashes computed here, move the head.
    pub(crate) async fn tx_append_audit(
        &self,
        events: &[(AuditContext, AuditEvent)],
    ) -> TxResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
        let mut tx = self.writer.begin().await?;
        let head = sqlx::query(
            "UPDATE chain_heads SET seq = seq + $1 WHERE name = 'audit' RETURNING seq, hash",
        )
        .bind(count)
        .fetch_one(&mut *tx)
        .await?;
        let last: i64 = head.try_get("seq")?;
        let mut previous: Vec<u8> = head.try_get("hash")?;
        let mut seq = last - count;
        for chunk in events.chunks(INSERT_CHUNK) {
            let placeholders: Vec<String> = (0..chunk.len())
                .map(|row| {
                    let cells: Vec<String> =
                        (1..=12).map(|col| format!("${}", row * 12 + col)).collect();
                    format!("({})", cells.join(", "))
                })
                .collect();
            let sql = format!(
                "INSERT INTO audit_events ({COLUMNS}) VALUES {}",
                placeholders.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (context, event) in chunk {
                seq += 1;
                let hash = chain_hash(&previous, seq, context, event);
                query = query
                    .bind(seq)
                    .bind(context.at.millis())
                    .bind(event.action.to_string())
                    .bind(context.actor.clone())
                    .bind(context.actor_user.clone())
                    .bind(event.tenant_id.clone())
                    .bind(event.target.clone())
                    .bind(context.ip.clone())
                    .bind(context.user_agent.clone())
                    .bind(event.details.to_string())
                    .bind(std::mem::replace(&mut previous, hash.clone()))
                    .bind(hash);
            }
            query.execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE chain_heads SET hash = $1 WHERE name = 'audit'")
            .bind(previous)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn read_audit(
        &self,
        filter: &AuditFilter,
        page: &PageRequest,
    ) -> StoreResult<Page<AuditRecord>> {
        let mut conditions = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut numbers: Vec<i64> = Vec::new();
        for (column, value) in [
            ("tenant_id", &filter.tenant_id),
            ("target", &filter.target),
            ("actor", &filter.actor),
            ("action", &filter.action),
        ] {
            if let Some(value) = value {
                texts.push(value.clone());
                conditions.push(format!("{column} = ${}", texts.len()));
            }
        }
        let mut next = texts.len();
        let mut numeric = |condition: &str, value: i64, conditions: &mut Vec<String>| {
            next += 1;
            numbers.push(value);
            conditions.push(format!("{condition} ${next}"));
        };
        if let Some(since) = filter.since {
            numeric("at >=", since.millis(), &mut conditions);
        }
        if let Some(until) = filter.until {
            numeric("at <", until.millis(), &mut conditions);
        }
        if let Some(after) = page.after.as_deref().and_then(|a| a.parse::<i64>().ok()) {
            numeric("seq <", after, &mut conditions);
        }
        let limit_param = next + 1;
        let filter_sql = if conditions.is_empty() {
            String::new()
        } else {
            format!("WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {COLUMNS} FROM audit_events {filter_sql} ORDER BY seq DESC LIMIT ${limit_param}"
        );
        let mut query = sqlx::query(&sql);
        for text in texts {
            query = query.bind(text);
        }
        for number in numbers {
            query = query.bind(number);
        }
        let rows = query
            .bind(i64::from(page.limit) + 1)
            .fetch_all(&self.reader)
            .await
            .map_err(from_sqlx)?;
        let mut items = rows
            .iter()
            .map(record)
            .collect::<Result<Vec<_>, _>>()
            .map_err(from_sqlx)?;
        let next = if items.len() > page.limit as usize {
            items.truncate(page.limit as usize);
            items.last().map(|r| r.seq.to_string())
        } else {
            None
        };
        Ok(Page { items, next })
    }

    pub(crate) async fn read_audit_chain(
        &self,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(from_sqlx)?;
        rows.iter()
            .map(record)
            .collect::<Result<Vec<_>, _>>()
            .map_err(from_sqlx)
    }

    pub(crate) async fn read_audit_head(&self) -> StoreResult<(i64, String)> {
        let row = sqlx::query("SELECT seq, hash FROM chain_heads WHERE name = 'audit'")
            .fetch_one(&self.reader)
            .await
            .map_err(from_sqlx)?;
        let seq: i64 = row.try_get("seq").map_err(from_sqlx)?;
        let hash: Vec<u8> = row.try_get("hash").map_err(from_sqlx)?;
        Ok((seq, hex(&hash)))
    }
}
