//! `POST /v1/usage`: the per-minute usage batches gateways send (the "how" of a token).
//! One transaction per batch; never one write per request.

use crate::auth::ServiceCaller;
use crate::extract::ApiJson;
use crate::problem::{ApiError, ApiResult};
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_core::audit::AuditContext;
use latchkey_core::store::UsageRecord;
use latchkey_core::{Timestamp, TokenId};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::IpAddr;

const MAX_ENTRIES: usize = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batch {
    window_start: Timestamp,
    entries: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    token_id: TokenId,
    route: String,
    method: String,
    status_class: String,
    client_ip: IpAddr,
    count: i64,
    last_used_at: Timestamp,
}

fn check(index: usize, entry: &Entry) -> ApiResult<()> {
    let field = |name: &str| format!("entries[{index}].{name}");
    if entry.route.is_empty()
        || entry.route.len() > 256
        || entry.route.chars().any(char::is_control)
    {
        return Err(ApiError::field(field("route"), "must be 1–256 characters"));
    }
    if entry.method.is_empty()
        || entry.method.len() > 16
        || !entry.method.bytes().all(|b| b.is_ascii_uppercase())
    {
        return Err(ApiError::field(
            field("method"),
            "must be an HTTP method in capitals",
        ));
    }
    if !matches!(
        entry.status_class.as_str(),
        "1xx" | "2xx" | "3xx" | "4xx" | "5xx"
    ) {
        return Err(ApiError::field(
            field("status_class"),
            "must be one of 1xx … 5xx",
        ));
    }
    if entry.count < 1 {
        return Err(ApiError::field(field("count"), "must be at least 1"));
    }
    Ok(())
}

pub async fn ingest(
    State(state): State<AppState>,
    caller: ServiceCaller,
    ApiJson(batch): ApiJson<Batch>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if batch.entries.len() > MAX_ENTRIES {
        return Err(ApiError::field(
            "entries",
            format!("must hold at most {MAX_ENTRIES} entries"),
        ));
    }
    for (index, entry) in batch.entries.iter().enumerate() {
        check(index, entry)?;
    }
    let minute = Timestamp::from_millis(batch.window_start.millis().div_euclid(60_000) * 60_000);
    let records: Vec<UsageRecord> = batch
        .entries
        .into_iter()
        .map(|entry| UsageRecord {
            token_id: entry.token_id,
            minute,
            route: entry.route,
            method: entry.method,
            status_class: entry.status_class,
            client_ip: entry.client_ip.to_string(),
            count: entry.count,
            last_used_at: entry.last_used_at,
        })
        .collect();
    let ctx = AuditContext {
        actor: caller.token_id.to_string(),
        actor_user: None,
        ip: caller.meta.ip.map(|ip| ip.to_string()),
        user_agent: caller.meta.user_agent,
        at: state.now(),
    };
    let kept = state.store().record_usage(&records, &ctx).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": kept }))))
}
