//! Webhook endpoints and their outbox (docs/API.md, "Webhooks").
//!
//! Every audit event whose action a webhook can receive writes one delivery row per
//! enabled, subscribed endpoint that may see its tenant, in the event's own transaction
//! ([`enqueue`], called as the event is appended): a delivery exists exactly when the
//! change committed, and survives a restart. Senders lease the endpoint row, not single
//! deliveries, so one replica at a time sends an endpoint's deliveries, oldest first.

use crate::backend::Backend;
use crate::error::{TxResult, corrupt};
use crate::rows;
use crate::sql::SqlStore;
use latchkey_core::audit::{AuditAction, AuditContext, AuditEvent};
use latchkey_core::store::{
    DeliveryNext, Page, PageRequest, Webhook, WebhookAttempt, WebhookAttemptOutcome,
    WebhookDelivery, WebhookRecord,
};
use latchkey_core::{TenantId, Timestamp, TokenId};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, Row};

const WEBHOOK_COLUMNS: &str = "id, tenant_id, url, secret_sealed, created_at, created_by, \
    disabled_at, disabled_reason, previous_secret_sealed, previous_secret_until";

const DELIVERY_COLUMNS: &str =
    "webhook_id, seq, event, payload, created_at, status, next_attempt_at, finished_at";

/// The body every endpoint receives for one event: `{"type","timestamp","data"}`. The
/// data are the audit event's, which never hold a secret.
fn payload(ctx: &AuditContext, event: &AuditEvent) -> String {
    json!({
        "type": event.action.as_str(),
        "timestamp": ctx.at,
        "data": {
            "tenant_id": event.tenant_id,
            "token_id": event.target,
            "actor": ctx.actor,
            "actor_user": ctx.actor_user,
            "details": event.details,
        },
    })
    .to_string()
}

/// Writes the outbox rows of the event at `seq` inside the caller's transaction. The
/// caller has checked that the action is a webhook event
/// ([`AuditAction::is_webhook_event`]); no other event costs a query.
pub(crate) async fn enqueue(
    conn: &mut AnyConnection,
    seq: i64,
    ctx: &AuditContext,
    event: &AuditEvent,
) -> TxResult<()> {
    sqlx::query(
        "INSERT INTO webhook_deliveries \
         (webhook_id, seq, event, payload, created_at, status, attempts, next_attempt_at) \
         SELECT w.id, $1, $2, $3, $4, 'pending', 0, $4 FROM webhooks w \
         JOIN webhook_events e ON e.webhook_id = w.id AND e.event = $2 \
         WHERE w.disabled_at IS NULL AND (w.tenant_id IS NULL OR w.tenant_id = $5)",
    )
    .bind(seq)
    .bind(event.action.as_str().to_owned())
    .bind(payload(ctx, event))
    .bind(ctx.at.millis())
    .bind(event.tenant_id.clone())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

fn id_of(text: &str) -> Result<TokenId, sqlx::Error> {
    TokenId::parse(text).map_err(|e| corrupt("webhook id", e))
}

fn webhook_record(row: &AnyRow, events: Vec<String>) -> Result<WebhookRecord, sqlx::Error> {
    let tenant: Option<String> = row.try_get("tenant_id")?;
    Ok(WebhookRecord {
        webhook: Webhook {
            id: id_of(row.try_get("id")?)?,
            tenant_id: tenant.as_deref().map(rows::tenant_id).transpose()?,
            url: row.try_get("url")?,
            events,
            created_at: Timestamp::from_millis(row.try_get("created_at")?),
            created_by: row.try_get("created_by")?,
            disabled_at: row
                .try_get::<Option<i64>, _>("disabled_at")?
                .map(Timestamp::from_millis),
            disabled_reason: row.try_get("disabled_reason")?,
            previous_secret_expires_at: row
                .try_get::<Option<i64>, _>("previous_secret_until")?
                .map(Timestamp::from_millis),
        },
        secret_sealed: row.try_get("secret_sealed")?,
        previous_secret_sealed: row.try_get("previous_secret_sealed")?,
    })
}

fn delivery(row: &AnyRow) -> Result<WebhookDelivery, sqlx::Error> {
    Ok(WebhookDelivery {
        webhook_id: id_of(row.try_get("webhook_id")?)?,
        seq: row.try_get("seq")?,
        event: row.try_get("event")?,
        payload: row.try_get("payload")?,
        created_at: Timestamp::from_millis(row.try_get("created_at")?),
        status: row.try_get("status")?,
        next_attempt_at: Timestamp::from_millis(row.try_get("next_attempt_at")?),
        finished_at: row
            .try_get::<Option<i64>, _>("finished_at")?
            .map(Timestamp::from_millis),
        attempts: Vec::new(),
    })
}

fn attempt(row: &AnyRow) -> Result<(i64, WebhookAttempt), sqlx::Error> {
    Ok((
        row.try_get("seq")?,
        WebhookAttempt {
            attempt: row.try_get("attempt")?,
            at: Timestamp::from_millis(row.try_get("at")?),
            duration_ms: row.try_get("duration_ms")?,
            status_code: row.try_get("status_code")?,
            error: row.try_get("error")?,
        },
    ))
}

async fn events_of(conn: &mut AnyConnection, id: &str) -> TxResult<Vec<String>> {
    Ok(
        sqlx::query_scalar("SELECT event FROM webhook_events WHERE webhook_id = $1 ORDER BY event")
            .bind(id.to_owned())
            .fetch_all(&mut *conn)
            .await?,
    )
}

async fn select_webhook(conn: &mut AnyConnection, id: &str) -> TxResult<Option<WebhookRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE id = $1"
    ))
    .bind(id.to_owned())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let events = events_of(conn, id).await?;
    Ok(Some(webhook_record(&row, events)?))
}

/// The attempts of deliveries `seqs` of webhook `id`, oldest first, attached to them.
async fn attach_attempts(
    conn: &mut AnyConnection,
    id: &str,
    deliveries: &mut [WebhookDelivery],
) -> TxResult<()> {
    let (Some(low), Some(high)) = (
        deliveries.iter().map(|d| d.seq).min(),
        deliveries.iter().map(|d| d.seq).max(),
    ) else {
        return Ok(());
    };
    let found = sqlx::query(
        "SELECT seq, attempt, at, duration_ms, status_code, error FROM webhook_attempts \
         WHERE webhook_id = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq, attempt",
    )
    .bind(id.to_owned())
    .bind(low)
    .bind(high)
    .fetch_all(&mut *conn)
    .await?;
    for row in &found {
        let (seq, attempt) = attempt(row)?;
        if let Some(delivery) = deliveries.iter_mut().find(|d| d.seq == seq) {
            delivery.attempts.push(attempt);
        }
    }
    Ok(())
}

impl SqlStore {
    pub(crate) async fn tx_create_webhook(
        &self,
        record: &WebhookRecord,
        ctx: &AuditContext,
    ) -> TxResult<()> {
        let hook = &record.webhook;
        let mut tx = self.writer.begin().await?;
        if let Some(tenant) = &hook.tenant_id
            && !crate::sql::tenant_exists(&mut tx, tenant).await?
        {
            return Err(latchkey_core::store::StoreError::UnknownTenant(tenant.clone()).into());
        }
        let id = hook.id.to_string();
        sqlx::query(&format!(
            "INSERT INTO webhooks ({WEBHOOK_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL, NULL, NULL, NULL)"
        ))
        .bind(id.clone())
        .bind(hook.tenant_id.as_ref().map(|t| t.as_str().to_owned()))
        .bind(hook.url.clone())
        .bind(record.secret_sealed.clone())
        .bind(hook.created_at.millis())
        .bind(hook.created_by.clone())
        .execute(&mut *tx)
        .await?;
        for event in &hook.events {
            sqlx::query("INSERT INTO webhook_events (webhook_id, event) VALUES ($1, $2)")
                .bind(id.clone())
                .bind(event.clone())
                .execute(&mut *tx)
                .await?;
        }
        let event = AuditEvent::new(
            AuditAction::WebhookCreated,
            hook.tenant_id.as_ref().map(TenantId::as_str),
            Some(id),
        )
        .with_details(json!({ "url": hook.url, "events": hook.events }));
        self.audit_in(&mut tx, ctx, event).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn read_webhook(&self, id: TokenId) -> TxResult<Option<WebhookRecord>> {
        let mut conn = self.read_snapshot().await?;
        let found = select_webhook(&mut conn, &id.to_string()).await?;
        conn.commit().await?;
        Ok(found)
    }

    pub(crate) async fn read_webhooks(
        &self,
        tenant: Option<&TenantId>,
        page: &PageRequest,
    ) -> TxResult<Page<Webhook>> {
        let mut conn = self.read_snapshot().await?;
        let filter = if tenant.is_some() {
            "tenant_id = $3 AND"
        } else {
            ""
        };
        let sql = format!(
            "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE {filter} id > $1 ORDER BY id LIMIT $2"
        );
        let mut query = sqlx::query(&sql)
            .bind(page.after.clone().unwrap_or_default())
            .bind(i64::from(page.limit) + 1);
        if let Some(tenant) = tenant {
            query = query.bind(tenant.as_str().to_owned());
        }
        let found = query.fetch_all(&mut *conn).await?;
        let mut items = Vec::with_capacity(found.len());
        for row in &found {
            let id: String = row.try_get("id")?;
            let events = events_of(&mut conn, &id).await?;
            items.push(webhook_record(row, events)?.webhook);
        }
        let limit = page.limit as usize;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|w: &Webhook| w.id.to_string())
        } else {
            None
        };
        conn.commit().await?;
        Ok(Page { items, next })
    }

    pub(crate) async fn tx_delete_webhook(
        &self,
        id: TokenId,
        ctx: &AuditContext,
    ) -> TxResult<bool> {
        let mut tx = self.writer.begin().await?;
        let Some(record) = select_webhook(&mut tx, &id.to_string()).await? else {
            return Ok(false);
        };
        // The attempts go with their deliveries and those with the endpoint (ON DELETE
        // CASCADE); deleted explicitly too, so the outcome does not hang on the pragma.
        for table in ["webhook_attempts", "webhook_deliveries", "webhook_events"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE webhook_id = $1"))
                .bind(id.to_string())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let hook = &record.webhook;
        let event = AuditEvent::new(
            AuditAction::WebhookDeleted,
            hook.tenant_id.as_ref().map(TenantId::as_str),
            Some(id.to_string()),
        )
        .with_details(json!({ "url": hook.url }));
        self.audit_in(&mut tx, ctx, event).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(crate) async fn read_webhook_deliveries(
        &self,
        id: TokenId,
        page: &PageRequest,
    ) -> TxResult<Page<WebhookDelivery>> {
        // One snapshot for the deliveries and their attempts: an attempt recorded
        // between the two reads would otherwise show beside its delivery's old status.
        let mut conn = self.read_snapshot().await?;
        let before = page
            .after
            .as_deref()
            .and_then(|a| a.parse::<i64>().ok())
            .unwrap_or(i64::MAX);
        let found = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE webhook_id = $1 \
             AND seq < $2 ORDER BY seq DESC LIMIT $3"
        ))
        .bind(id.to_string())
        .bind(before)
        .bind(i64::from(page.limit) + 1)
        .fetch_all(&mut *conn)
        .await?;
        let mut items = found.iter().map(delivery).collect::<Result<Vec<_>, _>>()?;
        let limit = page.limit as usize;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|d| d.seq.to_string())
        } else {
            None
        };
        attach_attempts(&mut conn, &id.to_string(), &mut items).await?;
        conn.commit().await?;
        Ok(Page { items, next })
    }

    pub(crate) async fn tx_lease_webhook_delivery(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
    ) -> TxResult<Option<(WebhookRecord, WebhookDelivery)>> {
        // Most rounds find nothing due: asked of a reader, they take no write lock
        // (SQLite's one writer serves the hot paths' commits).
        let due = sqlx::query(
            "SELECT 1 AS one FROM webhooks w WHERE w.disabled_at IS NULL \
             AND w.lease_until <= $1 AND EXISTS (SELECT 1 FROM webhook_deliveries d \
             WHERE d.webhook_id = w.id AND d.status = 'pending' AND d.next_attempt_at <= $1) \
             LIMIT 1",
        )
        .bind(now.millis())
        .fetch_optional(&self.reader)
        .await?;
        if due.is_none() {
            return Ok(None);
        }
        let mut tx = self.writer.begin().await?;
        // PostgreSQL: replicas skip the rows another is leasing right now; SQLite has
        // one writer, and the conditional UPDATE below settles any race between files.
        let lock = match Backend::of_connection(&tx) {
            Backend::Postgres => " FOR UPDATE OF w SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let id: Option<String> = sqlx::query_scalar(&format!(
            "SELECT w.id FROM webhooks w WHERE w.disabled_at IS NULL AND w.lease_until <= $1 \
             AND (SELECT d.next_attempt_at FROM webhook_deliveries d \
                  WHERE d.webhook_id = w.id AND d.status = 'pending' \
                  ORDER BY d.seq LIMIT 1) <= $1 \
             ORDER BY w.lease_until, w.id LIMIT 1{lock}"
        ))
        .bind(now.millis())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(id) = id else {
            return Ok(None);
        };
        let leased =
            sqlx::query("UPDATE webhooks SET lease_until = $1 WHERE id = $2 AND lease_until <= $3")
                .bind(lease_until.millis())
                .bind(id.clone())
                .bind(now.millis())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        if leased != 1 {
            return Ok(None);
        }
        let Some(record) = select_webhook(&mut tx, &id).await? else {
            return Ok(None);
        };
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries \
             WHERE webhook_id = $1 AND status = 'pending' ORDER BY seq LIMIT 1"
        ))
        .bind(id.clone())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut head = [delivery(&row)?];
        attach_attempts(&mut tx, &id, &mut head).await?;
        tx.commit().await?;
        let [head] = head;
        Ok(Some((record, head)))
    }

    pub(crate) async fn tx_finish_webhook_attempt(
        &self,
        outcome: &WebhookAttemptOutcome,
        ctx: &AuditContext,
    ) -> TxResult<()> {
        let mut tx = self.writer.begin().await?;
        let id = outcome.webhook_id.to_string();
        let exists = sqlx::query(
            "SELECT 1 AS one FROM webhook_deliveries WHERE webhook_id = $1 AND seq = $2 \
             AND status = 'pending'",
        )
        .bind(id.clone())
        .bind(outcome.seq)
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_none() {
            // Deleted (or finished by someone else) while it was being sent.
            return Ok(());
        }
        let attempt = &outcome.attempt;
        sqlx::query(
            "INSERT INTO webhook_attempts \
             (webhook_id, seq, attempt, at, duration_ms, status_code, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id.clone())
        .bind(outcome.seq)
        .bind(attempt.attempt)
        .bind(attempt.at.millis())
        .bind(attempt.duration_ms)
        .bind(attempt.status_code)
        .bind(attempt.error.clone())
        .execute(&mut *tx)
        .await?;
        let (status, next_at, finished) = match outcome.next {
            DeliveryNext::Delivered => ("delivered", ctx.at, Some(ctx.at.millis())),
            DeliveryNext::RetryAt(at) => ("pending", at, None),
            DeliveryNext::Failed => ("failed", ctx.at, Some(ctx.at.millis())),
        };
        sqlx::query(
            "UPDATE webhook_deliveries SET status = $1, next_attempt_at = $2, finished_at = $3, \
             attempts = attempts + 1 WHERE webhook_id = $4 AND seq = $5",
        )
        .bind(status)
        .bind(next_at.millis())
        .bind(finished)
        .bind(id.clone())
        .bind(outcome.seq)
        .execute(&mut *tx)
        .await?;
        match outcome.next {
            DeliveryNext::Delivered => {
                sqlx::query("UPDATE webhooks SET failed_in_a_row = 0 WHERE id = $1")
                    .bind(id.clone())
                    .execute(&mut *tx)
                    .await?;
            }
            DeliveryNext::Failed => self.count_failure(&mut tx, outcome, ctx).await?,
            DeliveryNext::RetryAt(_) => {}
        }
        // Released at now, so the endpoint queues behind those served less recently.
        sqlx::query("UPDATE webhooks SET lease_until = $1 WHERE id = $2")
            .bind(ctx.at.millis())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Counts a delivery that failed for good; disables the endpoint at the limit.
    async fn count_failure(
        &self,
        conn: &mut AnyConnection,
        outcome: &WebhookAttemptOutcome,
        ctx: &AuditContext,
    ) -> TxResult<()> {
        let id = outcome.webhook_id.to_string();
        let row = sqlx::query(
            "UPDATE webhooks SET failed_in_a_row = failed_in_a_row + 1 WHERE id = $1 \
             RETURNING failed_in_a_row, tenant_id, disabled_at",
        )
        .bind(id.clone())
        .fetch_one(&mut *conn)
        .await?;
        let failed: i64 = row.try_get("failed_in_a_row")?;
        let disabled: Option<i64> = row.try_get("disabled_at")?;
        if failed < outcome.disable_after || disabled.is_some() {
            return Ok(());
        }
        let tenant: Option<String> = row.try_get("tenant_id")?;
        let last = match (&outcome.attempt.status_code, &outcome.attempt.error) {
            (Some(code), _) => format!("HTTP {code}"),
            (None, Some(error)) => error.clone(),
            (None, None) => "no answer".to_owned(),
        };
        let reason =
            format!("{failed} deliveries in a row failed for 24 hours; the last attempt: {last}");
        sqlx::query("UPDATE webhooks SET disabled_at = $1, disabled_reason = $2 WHERE id = $3")
            .bind(ctx.at.millis())
            .bind(reason.clone())
            .bind(id.clone())
            .execute(&mut *conn)
            .await?;
        let event = AuditEvent::new(AuditAction::WebhookDisabled, tenant.as_deref(), Some(id))
            .with_details(json!({ "reason": reason }));
        self.audit_in(conn, ctx, event).await?;
        Ok(())
    }
}

/// The windows before `expires_at` that a `token.expiring` event announces, in days,
/// nearest first: a token already within a day gets the 1-day event only.
const EXPIRY_WINDOWS: [i64; 2] = [1, 7];

/// Tokens announced per window and round; the next round takes the rest.
const EXPIRY_BATCH: i64 = 1000;

impl SqlStore {
    pub(crate) async fn tx_notify_expiring(&self, ctx: &AuditContext) -> TxResult<u64> {
        let mut tx = self.writer.begin().await?;
        let mut written = 0;
        for days in EXPIRY_WINDOWS {
            let due = sqlx::query(
                "SELECT id, tenant_id, expires_at FROM tokens \
                 WHERE revoked_at IS NULL AND expires_at > $1 AND expires_at <= $2 \
                 AND NOT EXISTS (SELECT 1 FROM token_expiry_notices n \
                                 WHERE n.token_id = tokens.id AND n.days = $3) \
                 ORDER BY expires_at LIMIT $4",
            )
            .bind(ctx.at.millis())
            .bind(ctx.at.plus_seconds(days * 86_400).millis())
            .bind(days)
            .bind(EXPIRY_BATCH)
            .fetch_all(&mut *tx)
            .await?;
            for row in &due {
                let id: String = row.try_get("id")?;
                let tenant: String = row.try_get("tenant_id")?;
                let expires_at = Timestamp::from_millis(row.try_get("expires_at")?);
                // Another replica's round may have claimed it: only the claim writes.
                let claimed = sqlx::query(
                    "INSERT INTO token_expiry_notices (token_id, days) VALUES ($1, $2) \
                     ON CONFLICT (token_id, days) DO NOTHING",
                )
                .bind(id.clone())
                .bind(days)
                .execute(&mut *tx)
                .await?
                .rows_affected();
                if claimed != 1 {
                    continue;
                }
                // Within a day is within a week too: no later 7-day event.
                for wider in EXPIRY_WINDOWS.iter().filter(|w| **w > days) {
                    sqlx::query(
                        "INSERT INTO token_expiry_notices (token_id, days) VALUES ($1, $2) \
                         ON CONFLICT (token_id, days) DO NOTHING",
                    )
                    .bind(id.clone())
                    .bind(*wider)
                    .execute(&mut *tx)
                    .await?;
                }
                let event = AuditEvent::new(AuditAction::TokenExpiring, Some(&tenant), Some(id))
                    .with_details(json!({ "expires_at": expires_at, "days": days }));
                self.audit_in(&mut tx, ctx, event).await?;
                written += 1;
            }
        }
        tx.commit().await?;
        Ok(written)
    }
}

/// Clears a webhook's disabled state and failure count: someone asked for a delivery.
async fn enable(conn: &mut AnyConnection, id: &str) -> TxResult<()> {
    sqlx::query(
        "UPDATE webhooks SET disabled_at = NULL, disabled_reason = NULL, failed_in_a_row = 0 \
         WHERE id = $1",
    )
    .bind(id.to_owned())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

impl SqlStore {
    pub(crate) async fn tx_ping_webhook(
        &self,
        id: TokenId,
        ctx: &AuditContext,
    ) -> TxResult<Option<i64>> {
        let mut tx = self.writer.begin().await?;
        let text = id.to_string();
        let Some(record) = select_webhook(&mut tx, &text).await? else {
            return Ok(None);
        };
        enable(&mut tx, &text).await?;
        let tenant = record.webhook.tenant_id.as_ref().map(TenantId::as_str);
        let event = AuditEvent::new(AuditAction::WebhookPinged, tenant, Some(text.clone()));
        self.audit_in(&mut tx, ctx, event).await?;
        // The head moved under this transaction's lock: it is the event just written,
        // whose seq orders the ping among the webhook's deliveries.
        let seq: i64 = sqlx::query_scalar("SELECT seq FROM chain_heads WHERE name = 'audit'")
            .fetch_one(&mut *tx)
            .await?;
        let payload = json!({
            "type": "webhook.ping",
            "timestamp": ctx.at,
            "data": { "webhook_id": text },
        })
        .to_string();
        sqlx::query(
            "INSERT INTO webhook_deliveries \
             (webhook_id, seq, event, payload, created_at, status, attempts, next_attempt_at) \
             VALUES ($1, $2, 'webhook.ping', $3, $4, 'pending', 0, $4)",
        )
        .bind(text)
        .bind(seq)
        .bind(payload)
        .bind(ctx.at.millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(seq))
    }

    pub(crate) async fn tx_redeliver_webhook(
        &self,
        id: TokenId,
        seq: i64,
        ctx: &AuditContext,
    ) -> TxResult<bool> {
        let mut tx = self.writer.begin().await?;
        let text = id.to_string();
        let Some(record) = select_webhook(&mut tx, &text).await? else {
            return Ok(false);
        };
        let queued = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = $1, \
             finished_at = NULL WHERE webhook_id = $2 AND seq = $3",
        )
        .bind(ctx.at.millis())
        .bind(text.clone())
        .bind(seq)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if queued != 1 {
            return Ok(false);
        }
        enable(&mut tx, &text).await?;
        let tenant = record.webhook.tenant_id.as_ref().map(TenantId::as_str);
        let event = AuditEvent::new(AuditAction::WebhookRedelivered, tenant, Some(text))
            .with_details(json!({ "seq": seq }));
        self.audit_in(&mut tx, ctx, event).await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl SqlStore {
    pub(crate) async fn tx_rotate_webhook_secret(
        &self,
        id: TokenId,
        sealed: &[u8],
        previous_until: Timestamp,
        ctx: &AuditContext,
    ) -> TxResult<Option<Webhook>> {
        let mut tx = self.writer.begin().await?;
        let text = id.to_string();
        let Some(record) = select_webhook(&mut tx, &text).await? else {
            return Ok(None);
        };
        sqlx::query(
            "UPDATE webhooks SET previous_secret_sealed = secret_sealed, \
             previous_secret_until = $1, secret_sealed = $2 WHERE id = $3",
        )
        .bind(previous_until.millis())
        .bind(sealed.to_vec())
        .bind(text.clone())
        .execute(&mut *tx)
        .await?;
        let tenant = record.webhook.tenant_id.as_ref().map(TenantId::as_str);
        let event = AuditEvent::new(
            AuditAction::WebhookSecretRotated,
            tenant,
            Some(text.clone()),
        )
        .with_details(json!({ "previous_secret_expires_at": previous_until }));
        self.audit_in(&mut tx, ctx, event).await?;
        let after = select_webhook(&mut tx, &text).await?;
        tx.commit().await?;
        Ok(after.map(|record| record.webhook))
    }
}
