//! Reading and verifying the audit trail (docs/API.md, "The audit trail"):
//! `GET /v1/audit`, `/v1/audit/head`, `/v1/audit/chain` and `/v1/audit/verify`.

use crate::http::auth::Caller;
use crate::http::extract::{Cursor, Limit, Query, Seq, Text, Time};
use crate::http::page_body;
use crate::http::problem::{ApiError, ApiResult};
use crate::service::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::audit::AuditRecord;
use latchkey_core::permission::Authority;
use latchkey_core::store::{AuditFilter, PageRequest};
use serde::Deserialize;
use serde_json::{Value, json};

pub(crate) mod verify;

/// The query of `GET /v1/audit`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditQuery {
    tenant_id: Option<Text>,
    token_id: Option<Text>,
    actor: Option<Text>,
    action: Option<Text>,
    since: Option<Time>,
    until: Option<Time>,
    limit: Limit<200, 50>,
    cursor: Option<Cursor>,
}

/// The store's filter and page for `query`, as `caller` may see: a tenant's manager
/// sees its own tenant's events and nothing else.
fn filter_and_page(query: AuditQuery, caller: &Caller) -> ApiResult<(AuditFilter, PageRequest)> {
    let text = |value: Option<Text>| value.map(|text| text.0);
    let mut filter = AuditFilter {
        tenant_id: text(query.tenant_id),
        target: text(query.token_id),
        actor: text(query.actor),
        action: text(query.action),
        since: query.since.map(|time| time.0),
        until: query.until.map(|time| time.0),
    };
    // The audit trail's sort key is the event's seq.
    let after = match query.cursor {
        None => None,
        Some(Cursor(key)) => Some(
            key.parse::<i64>()
                .ok()
                .filter(|seq| *seq > 0)
                .map(|seq| seq.to_string())
                .ok_or_else(|| ApiError::field("cursor", "is not a cursor this server issued"))?,
        ),
    };
    if let Authority::Manager(own) = &caller.authority {
        match &filter.tenant_id {
            Some(asked) if asked != own.as_str() => {
                return Err(ApiError::NotFound(format!("tenant {asked}")));
            }
            _ => filter.tenant_id = Some(own.to_string()),
        }
    }
    let page = PageRequest {
        limit: query.limit.0,
        after,
    };
    Ok((filter, page))
}

/// `GET /v1/audit`: events, newest first, by a stable cursor.
#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "audit_list",
    tag = "audit",
    summary = "List audit events, newest first",
    params(("tenant_id" = Option<String>, Query), ("token_id" = Option<String>, Query), ("actor" = Option<String>, Query), ("action" = Option<String>, Query), ("since" = Option<String>, Query, format = DateTime), ("until" = Option<String>, Query, format = DateTime), ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, 1–200, default 50"), ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page")),
    responses((status = 200, description = "A page of events", body = latchkey_wire::Page<crate::http::openapi::AuditEventSchema>), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<AuditQuery>,
) -> ApiResult<impl IntoResponse> {
    let (filter, page) = filter_and_page(query, &caller)?;
    let found = state.store().list_audit(&filter, &page).await?;
    Ok(Json(page_body::<_, AuditRecord>(found)))
}

/// `GET /v1/audit/head`: the head's seq and hash, to anchor elsewhere (catches
/// truncation, which a chain alone cannot).
#[utoipa::path(
    get,
    path = "/v1/audit/head",
    operation_id = "audit_head",
    tag = "audit",
    summary = "The audit chain's head",
    responses((status = 200, description = "The head", body = crate::http::openapi::AuditHeadSchema), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"))
)]
pub async fn head(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    let head = state.store().audit_head().await?;
    Ok(Json(json!({ "seq": head.seq, "hash": head.hash })))
}

/// The query of `GET /v1/audit/chain`: events after the seq `after` (default 0),
/// `limit` of them (1–10,000, default 1,000).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChainQuery {
    after: Seq,
    limit: Limit<10_000, 1_000>,
}

/// `GET /v1/audit/chain?after=SEQ&limit=N`: events in chain order with their hashes and
/// MACs, for `latchkey audit verify` and `export`.
#[utoipa::path(
    get,
    path = "/v1/audit/chain",
    operation_id = "audit_chain",
    tag = "audit",
    summary = "Events in chain order, as JSON lines",
    params(("after" = Option<i64>, Query, minimum = 0, description = "Events after this seq, default 0"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "1–10,000, default 1,000")),
    responses((status = 200, description = "One audit event per line", content_type = "application/jsonl", body = String), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"))
)]
pub async fn chain(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ChainQuery>,
) -> ApiResult<Response> {
    caller.require_admin()?;
    let records = state
        .store()
        .audit_chain(query.after.0, query.limit.0)
        .await?;
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
