//! The audit trail: group-committed appends, filtered listing newest first, and the
//! chain in order for export and verification.

use crate::backend::Backend;
use crate::error::{TxResult, corrupt, from_sqlx};
use crate::sql::SqlStore;
use latchkey_core::Timestamp;
use latchkey_core::audit::{AuditContext, AuditEvent, chain_hash, hex};
use latchkey_core::store::{AuditFilter, AuditRecord, Page, PageRequest, StoreResult};
use sqlx::Row;
use sqlx::any::AnyRow;

const COLUMNS: &str = "seq, at, action, actor, actor_user, tenant_id, target, ip, user_agent, \
    details, prev_hash, hash";

/// Inserts a batch given as a JSON array of rows (the columns of `COLUMNS`, hashes in
/// hex). The one dialect difference of the audit trail: how JSON is unpacked.
const SQLITE_BATCH_INSERT: &str = "INSERT INTO audit_events (seq, at, action, actor, \
    actor_user, tenant_id, target, ip, user_agent, details, prev_hash, hash) \
    SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), \
    json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), \
    json_extract(value, '$[5]'), json_extract(value, '$[6]'), json_extract(value, '$[7]'), \
    json_extract(value, '$[8]'), json_extract(value, '$[9]'), \
    unhex(json_extract(value, '$[10]')), unhex(json_extract(value, '$[11]')) \
    FROM json_each($1)";

const POSTGRES_BATCH_INSERT: &str = "INSERT INTO audit_events (seq, at, action, actor, \
    actor_user, tenant_id, target, ip, user_agent, details, prev_hash, hash) \
    SELECT (e->>0)::bigint, (e->>1)::bigint, e->>2, e->>3, e->>4, e->>5, e->>6, e->>7, \
    e->>8, e->>9, decode(e->>10, 'hex'), decode(e->>11, 'hex') \
    FROM jsonb_array_elements($1::jsonb) AS e";

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
    /// One transaction, three statements for the whole batch: take the chain head,
    /// insert the events with their hashes computed here, move the head.
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
        // The whole batch travels as one JSON parameter and the database unpacks it:
        // binding twelve parameters a row cost more than everything else together.
        let mut rows = Vec::with_capacity(events.len());
        for (context, event) in events {
            seq += 1;
            let hash = chain_hash(&previous, seq, context, event);
            rows.push(serde_json::json!([
                seq,
                context.at.millis(),
                event.action,
                context.actor,
                context.actor_user,
                event.tenant_id,
                event.target,
                context.ip,
                context.user_agent,
                event.details.to_string(),
                hex(&previous),
                hex(&hash),
            ]));
            previous = hash;
        }
        let insert = match self.backend() {
            Backend::Sqlite => SQLITE_BATCH_INSERT,
            Backend::Postgres => POSTGRES_BATCH_INSERT,
        };
        sqlx::query(insert)
            .bind(serde_json::Value::Array(rows).to_string())
            .execute(&mut *tx)
            .await?;
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
