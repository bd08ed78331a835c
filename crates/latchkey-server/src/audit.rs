//! The audit trail of authentications, and reading and verifying the trail.
//!
//! State changes write their audit event in the same transaction as the change (the
//! store does that). Authentications (`token.exchanged`, `token.refreshed`,
//! `auth.failed`) are too frequent for a transaction each, so they go through an
//! [`AuditQueue`] and are group-committed: the writer takes what is queued, lets more
//! gather for 20 ms, appends all of it to the chain in one transaction, and
//! repeats, so an event is normally committed within tens of milliseconds and always
//! within a second of a healthy database. Nothing is
//! dropped: the queue is bounded and a full queue makes the request wait (backpressure)
//! rather than discard, and a failed commit is retried. A crash loses at most the events
//! still queued — at most about a second's worth.

use crate::auth::Caller;
use crate::extract::form_pairs;
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::Timestamp;
use latchkey_core::audit::{AuditContext, AuditEvent};
use latchkey_core::permission::Authority;
use latchkey_core::store::{AuditFilter, PageRequest, Store};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

mod exchanges;
mod verify;

pub use exchanges::Exchange;
use exchanges::{Recorded, fold};
pub use verify::verify;

const QUEUE: usize = 65_536;
const BATCH: usize = 5_000;

enum Item {
    Recorded(Recorded),
    Flush(oneshot::Sender<()>),
}

/// Group commit of authentication events.
#[derive(Clone)]
pub struct AuditQueue {
    sender: Option<mpsc::Sender<Item>>,
}

impl AuditQueue {
    /// Starts the writer; `enabled: false` records nothing (for measuring the cost).
    pub fn start(store: Arc<dyn Store>, enabled: bool) -> Self {
        if !enabled {
            return Self { sender: None };
        }
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write(store, receiver));
        Self {
            sender: Some(sender),
        }
    }

    /// Queues an event; waits only when the queue is full.
    pub async fn record(&self, context: AuditContext, event: AuditEvent) {
        self.queue(Recorded::Event(Box::new((context, event))))
            .await;
    }

    /// Queues a client-credentials exchange, recorded with alike ones of the same
    /// commit as one `token.exchanged` event; waits only when the queue is full.
    pub async fn exchanged(&self, exchange: Exchange) {
        self.queue(Recorded::Exchange(Box::new(exchange))).await;
    }

    async fn queue(&self, recorded: Recorded) {
        if let Some(sender) = &self.sender
            && sender.send(Item::Recorded(recorded)).await.is_err()
        {
            tracing::error!("the audit writer has stopped; an authentication event is lost");
        }
    }

    /// Returns once everything queued before the call is committed.
    pub async fn flush(&self) {
        if let Some(sender) = &self.sender {
            let (done, wait) = oneshot::channel();
            if sender.send(Item::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        }
    }
}

/// How long the writer lets events gather after the first one before it commits them.
/// It sleeps meanwhile rather than waking for each event: fewer, larger transactions
/// and fewer wake-ups cost far less per event than committing as events trickle in.
const LINGER: Duration = Duration::from_millis(20);

async fn write(store: Arc<dyn Store>, mut receiver: mpsc::Receiver<Item>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut waiting = Vec::new();
    while let Some(first) = receiver.recv().await {
        let mut next = Some(first);
        let mut lingered = false;
        while let Some(item) = next.take() {
            match item {
                Item::Recorded(recorded) => batch.push(recorded),
                Item::Flush(done) => waiting.push(done),
            }
            if batch.len() >= BATCH {
                break;
            }
            next = receiver.try_recv().ok();
            // Queue drained: wait once for more unless somebody waits for a flush.
            if next.is_none() && !lingered && waiting.is_empty() {
                lingered = true;
                tokio::time::sleep(LINGER).await;
                next = receiver.try_recv().ok();
            }
        }
        let events = fold(batch.drain(..));
        let mut delay = Duration::from_millis(50);
        while let Err(error) = store.append_audit(&events).await {
            tracing::warn!(
                ?error,
                events = events.len(),
                "committing audit events failed; retrying"
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        for done in waiting.drain(..) {
            let _ = done.send(());
        }
    }
}

fn filter_and_page(parts: &Parts, caller: &Caller) -> ApiResult<(AuditFilter, PageRequest)> {
    let mut filter = AuditFilter::default();
    let mut page = PageRequest {
        limit: 50,
        after: None,
    };
    let time = |field: &str, value: &str| {
        Timestamp::parse_rfc3339(value)
            .ok_or_else(|| ApiError::field(field, "must be an RFC 3339 timestamp"))
    };
    // Text filters are compared with stored text; a control character matches nothing
    // and PostgreSQL refuses a NUL outright, so neither reaches the store.
    let text = |field: &str, value: String| {
        if value.chars().any(char::is_control) {
            Err(ApiError::field(
                field,
                "must not contain control characters",
            ))
        } else {
            Ok(Some(value))
        }
    };
    for (key, value) in form_pairs(parts.uri.query().unwrap_or("")) {
        match key.as_str() {
            "tenant_id" => filter.tenant_id = text("tenant_id", value)?,
            "token_id" => filter.target = text("token_id", value)?,
            "actor" => filter.actor = text("actor", value)?,
            "action" => filter.action = text("action", value)?,
            "since" => filter.since = Some(time("since", &value)?),
            "until" => filter.until = Some(time("until", &value)?),
            "limit" => {
                page.limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=200).contains(n))
                    .ok_or_else(|| {
                        ApiError::field("limit", "must be a whole number from 1 to 200")
                    })?
            }
            "cursor" => {
                let seq = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| {
                        ApiError::field("cursor", "is not a cursor this server issued")
                    })?;
                page.after = Some(seq.to_string());
            }
            other => {
                return Err(ApiError::field(
                    other,
                    "is not a query parameter of this endpoint",
                ));
            }
        }
    }
    if let Authority::Manager(own) = &caller.authority {
        // A tenant's manager sees its own tenant's events and nothing else.
        match &filter.tenant_id {
            Some(asked) if asked != own.as_str() => {
                return Err(ApiError::NotFound(format!("tenant {asked}")));
            }
            _ => filter.tenant_id = Some(own.to_string()),
        }
    }
    Ok((filter, page))
}

/// `GET /v1/audit`: events, newest first, by a stable cursor.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    parts: Parts,
) -> ApiResult<Json<Value>> {
    let (filter, page) = filter_and_page(&parts, &caller)?;
    let found = state.store().list_audit(&filter, &page).await?;
    Ok(Json(
        json!({ "items": found.items, "next_cursor": found.next }),
    ))
}

/// `GET /v1/audit/head`: the head's seq and hash, to anchor elsewhere (catches
/// truncation, which a chain alone cannot).
pub async fn head(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let head = state.store().audit_head().await?;
    Ok(Json(json!({ "seq": head.seq, "hash": head.hash })))
}

/// `GET /v1/audit/chain?after=SEQ&limit=N`: events in chain order with their hashes and
/// MACs, for `latchkey audit verify` and `export`.
pub async fn chain(
    State(state): State<AppState>,
    caller: Caller,
    parts: Parts,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let mut after = 0i64;
    let mut limit = 1000u32;
    for (key, value) in form_pairs(parts.uri.query().unwrap_or("")) {
        match key.as_str() {
            "after" => {
                after = value
                    .parse()
                    .ok()
                    .filter(|n: &i64| *n >= 0)
                    .ok_or_else(|| ApiError::field("after", "must be a sequence number"))?
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| {
                        ApiError::field("limit", "must be a whole number from 1 to 10000")
                    })?
            }
            other => {
                return Err(ApiError::field(
                    other,
                    "is not a query parameter of this endpoint",
                ));
            }
        }
    }
    let records = state.store().audit_chain(after, limit).await?;
    let mut body = String::new();
    for record in records {
        body.push_str(&json!(record).to_string());
        body.push('\n');
    }
    let mut response = body.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/jsonl"),
    );
    Ok(response)
}
