//! The audit trail: appends to the hash chain (one event in a state change's own
//! transaction, or a group-committed batch), filtered listing newest first, and the
//! chain in order for export and verification.
//!
//! Each event is written with its chain hash and the MAC of that hash under the store's
//! [`AuditMacKey`] (docs/API.md, Audit): one HMAC over 32 bytes, computed beside the
//! hash, so signing adds no round trip to the group commit.

use crate::backend::Backend;
use crate::error::{TxResult, corrupt, from_sqlx};
use crate::sql::SqlStore;
use latchkey_core::Timestamp;
use latchkey_core::audit::{
    AuditContext, AuditEvent, AuditMacKey, AuditRecord, hex, link_hash, write_canonical,
};
use latchkey_core::store::{AuditFilter, AuditHead, Page, PageRequest, StoreResult};
use sqlx::AnyConnection;
use sqlx::Row;
use sqlx::any::AnyRow;
use std::ops::Range;

const COLUMNS: &str = "seq, at, action, actor, actor_user, tenant_id, target, ip, user_agent, \
    details, prev_hash, hash, mac";

/// Rows per INSERT. A batch is cut into statements of this many rows and then of
/// halving sizes, so the trail uses a handful of statements, each prepared once.
const ROWS_PER_INSERT: usize = 256;

/// The INSERT of `rows` events, with the backend's placeholders. SQLite's are anonymous
/// (`?`): the driver looks a named one up by scanning all of them, which made binding a
/// large multi-row INSERT quadratic.
fn insert_sql(backend: Backend, rows: usize) -> String {
    const COLUMN_COUNT: usize = 13;
    let mut sql = format!("INSERT INTO audit_events ({COLUMNS}) VALUES ");
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..COLUMN_COUNT {
            if column > 0 {
                sql.push_str(", ");
            }
            match backend {
                Backend::Sqlite => sql.push('?'),
                Backend::Postgres => {
                    sql.push_str(&format!("${}", row * COLUMN_COUNT + column + 1));
                }
            }
        }
        sql.push(')');
    }
    sql
}

/// How many rows the next INSERT takes out of `remaining`.
fn next_chunk(remaining: usize) -> usize {
    if remaining >= ROWS_PER_INSERT {
        ROWS_PER_INSERT
    } else {
        1 << remaining.ilog2()
    }
}

/// One event's place in the chain.
struct Link {
    seq: i64,
    /// Where its details lie in the batch's encoding.
    details: Range<usize>,
    previous: [u8; 32],
    hash: [u8; 32],
    mac: [u8; 32],
}

/// Appends `events` to the hash chain inside the caller's transaction: moves the head
/// by their number, inserts them with the hashes and MACs computed here, stores the new
/// head.
async fn append_links(
    conn: &mut AnyConnection,
    key: &AuditMacKey,
    events: &[(&AuditContext, &AuditEvent)],
) -> TxResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    let backend = Backend::of_connection(conn);
    let count = i64::try_from(events.len()).unwrap_or(i64::MAX);
    let head = sqlx::query(
        "UPDATE chain_heads SET seq = seq + $1 WHERE name = 'audit' RETURNING seq, hash",
    )
    .bind(count)
    .fetch_one(&mut *conn)
    .await?;
    let last: i64 = head.try_get("seq")?;
    let stored: Vec<u8> = head.try_get("hash")?;
    let mut previous: [u8; 32] = stored
        .try_into()
        .map_err(|hash: Vec<u8>| corrupt("audit head hash", format!("{} bytes", hash.len())))?;
    // Each event is encoded once: the same bytes are hashed and hold its details.
    let mut encoded = Vec::with_capacity(events.len() * 320);
    let mut links = Vec::with_capacity(events.len());
    for (seq, (context, event)) in (last - count + 1..).zip(events) {
        let start = encoded.len();
        let details = write_canonical(&mut encoded, seq, context, event);
        let hash = link_hash(&previous, &encoded[start..]);
        links.push(Link {
            seq,
            details,
            previous,
            hash,
            mac: key.sign(&hash),
        });
        previous = hash;
    }
    let encoded = String::from_utf8(encoded).map_err(|e| corrupt("audit encoding", e))?;
    let mut rows = links.iter().zip(events);
    let mut remaining = events.len();
    while remaining > 0 {
        let take = next_chunk(remaining);
        remaining -= take;
        let sql = insert_sql(backend, take);
        let mut insert = sqlx::query(&sql);
        for (link, (context, event)) in rows.by_ref().take(take) {
            insert = insert
                .bind(link.seq)
                .bind(context.at.millis())
                .bind(event.action.as_str())
                .bind(context.actor.as_str())
                .bind(context.actor_user.as_deref())
                .bind(event.tenant_id.as_deref())
                .bind(event.target.as_deref())
                .bind(context.ip.as_deref())
                .bind(context.user_agent.as_deref())
                .bind(&encoded[link.details.clone()])
                .bind(&link.previous[..])
                .bind(&link.hash[..])
                .bind(&link.mac[..]);
        }
        insert.execute(&mut *conn).await?;
    }
    sqlx::query("UPDATE chain_heads SET hash = $1 WHERE name = 'audit'")
        .bind(&previous[..])
        .execute(&mut *conn)
        .await?;
    // The outbox of the webhooks (docs/API.md, "Webhooks"), in the same transaction:
    // only for the actions a webhook can receive, so every other event costs no query.
    for (link, (context, event)) in links.iter().zip(events) {
        if event.action.is_webhook_event() {
            crate::webhooks::enqueue(conn, link.seq, context, event).await?;
        }
    }
    Ok(())
}

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
            // Details that are not JSON were written by hand, not by the store: shown as
            // the text they are, they keep the trail readable and fail verification at
            // this event (a JSON string hashes differently) instead of failing every
            // read of the chain.
            details: serde_json::from_str(&details).unwrap_or(serde_json::Value::String(details)),
        },
        prev_hash: hex(&row.try_get::<Vec<u8>, _>("prev_hash")?),
        hash: hex(&row.try_get::<Vec<u8>, _>("hash")?),
        mac: row
            .try_get::<Option<Vec<u8>>, _>("mac")?
            .map(|mac| hex(&mac)),
    })
}

impl SqlStore {
    /// Appends one event to the chain inside the caller's transaction (the state
    /// change's own).
    pub(crate) async fn audit_in(
        &self,
        conn: &mut AnyConnection,
        ctx: &AuditContext,
        event: AuditEvent,
    ) -> TxResult<()> {
        append_links(conn, &self.audit_key, &[(ctx, &event)]).await
    }

    /// One transaction for the whole batch.
    pub(crate) async fn tx_append_audit(
        &self,
        events: &[(AuditContext, AuditEvent)],
    ) -> TxResult<()> {
        if events.is_empty() {
            return Ok(());
        }
        let events: Vec<_> = events
            .iter()
            .map(|(context, event)| (context, event))
            .collect();
        let mut tx = self.writer.begin().await?;
        append_links(&mut tx, &self.audit_key, &events).await?;
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

    pub(crate) async fn read_audit_head(&self) -> StoreResult<AuditHead> {
        let row = sqlx::query("SELECT seq, hash, macs_from FROM chain_heads WHERE name = 'audit'")
            .fetch_one(&self.reader)
            .await
            .map_err(from_sqlx)?;
        let hash: Vec<u8> = row.try_get("hash").map_err(from_sqlx)?;
        Ok(AuditHead {
            seq: row.try_get("seq").map_err(from_sqlx)?,
            hash: hex(&hash),
            // Set by the migration that added MACs; a NULL means someone cleared it,
            // and then every event must carry a MAC.
            macs_from: row
                .try_get::<Option<i64>, _>("macs_from")
                .map_err(from_sqlx)?
                .unwrap_or(1),
        })
    }
}
