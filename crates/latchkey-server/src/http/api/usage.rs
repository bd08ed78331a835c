//! `POST /v1/usage`: the per-minute usage batches gateways send (the "how" of a token).
//! One transaction per batch; never one write per request.
//!
//! Every number a client sends is bounded before anything is stored (docs/API.md,
//! "Limits of a usage batch"): a count is 1 to [`MAX_COUNT`], `window_start` lies within
//! the retention window and at most [`CLOCK_SKEW_SECONDS`] ahead, each `last_used_at` in
//! the minute of `window_start`, strings and the batch are bounded. A batch with one bad
//! entry is refused whole. Reading sums saturate, so a row that is absurd anyway
//! (written by an older server, or by hand) reads as large, never as a 500.

use crate::http::auth::{Caller, ServiceCaller};
use crate::http::extract::{ApiJson, Query, Time, USAGE_BODY_LIMIT, query_param};
use crate::http::problem::{ApiError, ApiResult};
use crate::service::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use latchkey_core::audit::AuditContext;
use latchkey_core::store::UsageRecord;
use latchkey_core::usage::{UsageGroup, is_status_class};
use latchkey_core::{Timestamp, TokenId};
use serde::Deserialize;
use serde_json::{Value, json};
use std::net::IpAddr;

/// Most entries in one batch.
const MAX_ENTRIES: usize = 10_000;
/// Most requests one entry may count: a billion in a minute is far beyond any gateway.
const MAX_COUNT: i64 = 1_000_000_000;
/// How far ahead of the server's clock a gateway's may run.
const CLOCK_SKEW_SECONDS: i64 = 300;
const MINUTE_MS: i64 = 60_000;

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

/// Checks one entry of the batch whose minute starts at `minute`.
fn check(index: usize, entry: &Entry, minute: Timestamp) -> ApiResult<()> {
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
    if !is_status_class(&entry.status_class) {
        return Err(ApiError::field(
            field("status_class"),
            "must be one of 1xx … 5xx",
        ));
    }
    if !(1..=MAX_COUNT).contains(&entry.count) {
        return Err(ApiError::value(
            field("count"),
            format!("must be 1 to {MAX_COUNT}"),
        ));
    }
    let offset = entry.last_used_at.millis().saturating_sub(minute.millis());
    if !(0..MINUTE_MS).contains(&offset) {
        return Err(ApiError::value(
            field("last_used_at"),
            "must fall in the minute of `window_start`",
        ));
    }
    Ok(())
}

/// The start of the minute of `window_start`, when that minute is one usage may still
/// be recorded for: not yet deleted as too old, not ahead of the server's clock by more
/// than the allowed skew.
fn window_minute(state: &AppState, window_start: Timestamp) -> ApiResult<Timestamp> {
    let now = state.now();
    let oldest = now.plus_seconds(-state.settings().usage_retention_days.saturating_mul(86_400));
    let newest = now.plus_seconds(CLOCK_SKEW_SECONDS);
    if window_start < oldest || window_start > newest {
        return Err(ApiError::value(
            "window_start",
            format!(
                "must lie within the last {} days and at most {CLOCK_SKEW_SECONDS} s ahead",
                state.settings().usage_retention_days
            ),
        ));
    }
    Ok(Timestamp::from_millis(
        window_start.millis().div_euclid(MINUTE_MS) * MINUTE_MS,
    ))
}

#[utoipa::path(
    post,
    path = "/v1/usage",
    operation_id = "usage_ingest",
    tag = "usage",
    summary = "Ingest a gateway's usage batch",
    request_body = crate::http::openapi::UsageBatchSchema,
    responses((status = 202, description = "Accepted", body = crate::http::openapi::UsageAcceptedSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 413, description = "The batch is too large"))
)]
pub async fn ingest(
    State(state): State<AppState>,
    caller: ServiceCaller,
    ApiJson(batch): ApiJson<Batch, USAGE_BODY_LIMIT>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if batch.entries.len() > MAX_ENTRIES {
        return Err(ApiError::value(
            "entries",
            format!("must hold at most {MAX_ENTRIES} entries"),
        ));
    }
    let minute = window_minute(&state, batch.window_start)?;
    for (index, entry) in batch.entries.iter().enumerate() {
        check(index, entry, minute)?;
    }
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
            // Resolved here, with the server's one database, so that every gateway's
            // reports name the same country (docs/API.md, "Where tokens may be used from").
            country: state
                .geoip()
                .and_then(|geoip| geoip.country(entry.client_ip)),
        })
        .collect();
    let ctx = AuditContext {
        actor: caller.token_id.to_string(),
        actor_user: None,
        ip: caller.meta.ip.map(|ip| ip.to_string()),
        user_agent: caller.meta.agent(),
        at: state.now(),
    };
    let kept = state.store().record_usage(&records, &ctx).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({ "accepted": kept }))))
}

/// The query of `GET /v1/tokens/{id}/usage`.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageQuery {
    since: Option<Time>,
    until: Option<Time>,
    group_by: Option<Grouping>,
}

/// `group_by`: one of [`UsageGroup`]'s names.
#[derive(Debug, Clone, Copy)]
pub struct Grouping(UsageGroup);

impl Grouping {
    fn parse(text: &str) -> Result<Self, &'static str> {
        UsageGroup::parse(text)
            .map(Self)
            .ok_or("must be route, ip, status, method, day or country")
    }
}

query_param!(Grouping);

/// `GET /v1/tokens/{id}/usage?since=&until=&group_by=route|ip|status|method|day|country`: the
/// "how" of a token — totals and per-minute series (per-day for `day`) for each group,
/// plus when and where it was last used. The window defaults to the last 24 hours and
/// is at most 31 days.
#[utoipa::path(
    get,
    path = "/v1/tokens/{id}/usage",
    operation_id = "tokens_usage",
    tag = "usage",
    summary = "How a token was used",
    params(("id" = String, Path, format = Uuid, description = "The token id"), ("since" = Option<String>, Query, format = DateTime, description = "Default: 24 hours before `until`"), ("until" = Option<String>, Query, format = DateTime, description = "Default: now"), ("group_by" = Option<crate::http::openapi::UsageGroupingSchema>, Query, description = "Default: route")),
    responses((status = 200, description = "The usage report", body = crate::http::openapi::TokenUsageSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"), (status = 422, description = "A value is out of range, unknown or breaks a rule"))
)]
pub async fn token_usage(
    State(state): State<AppState>,
    caller: Caller,
    axum::extract::Path(id): axum::extract::Path<String>,
    Query(query): Query<UsageQuery>,
) -> ApiResult<Json<Value>> {
    let token = super::tokens::visible_token(&state, &caller, &id).await?;
    let now = state.now();
    let until = query.until.map_or(now, |time| time.0);
    let since = query.since.map(|time| time.0);
    let group_by = query.group_by.map_or(UsageGroup::Route, |group| group.0);
    let since = since.unwrap_or(until.plus_seconds(-86_400));
    if since >= until || until.millis() - since.millis() > 31 * 86_400_000 {
        return Err(ApiError::value(
            "since",
            "must be before `until` and at most 31 days earlier",
        ));
    }
    let records = state.store().token_usage(token.id, since, until).await?;
    let day_of = |minute: Timestamp| {
        Timestamp::from_millis(minute.millis().div_euclid(86_400_000) * 86_400_000)
    };
    let mut groups: std::collections::BTreeMap<String, std::collections::BTreeMap<Timestamp, i64>> =
        std::collections::BTreeMap::new();
    let mut total = 0i64;
    for record in &records {
        // Ingestion keeps counts positive; a stored negative one is damage, read as none.
        let count = record.count.max(0);
        let (key, bucket) = match group_by {
            UsageGroup::Route => (record.route.clone(), record.minute),
            UsageGroup::Ip => (record.client_ip.clone(), record.minute),
            UsageGroup::Status => (record.status_class.clone(), record.minute),
            UsageGroup::Method => (record.method.clone(), record.minute),
            UsageGroup::Day => {
                let day = day_of(record.minute);
                let text = day.to_rfc3339();
                (text.get(..10).unwrap_or(&text).to_owned(), day)
            }
            UsageGroup::Country => {
                let country = record
                    .client_ip
                    .parse()
                    .ok()
                    .and_then(|ip| state.geoip()?.country(ip));
                let key = country.map_or("unknown".to_owned(), |cc| cc.as_str().to_owned());
                (key, record.minute)
            }
        };
        let sum = groups.entry(key).or_default().entry(bucket).or_default();
        *sum = sum.saturating_add(count);
        total = total.saturating_add(count);
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(key, series)| {
            let group_total = series.values().fold(0i64, |sum, n| sum.saturating_add(*n));
            let series: Vec<Value> = series
                .into_iter()
                .map(|(at, count)| json!({ "at": at, "count": count }))
                .collect();
            json!({ "key": key, "total": group_total, "series": series })
        })
        .collect();
    Ok(Json(json!({
        "token_id": token.id,
        "since": since,
        "until": until,
        "group_by": group_by.as_str(),
        "total": total,
        "last_used_at": token.last_used_at,
        "last_used_ip": token.last_used_ip,
        "groups": groups,
    })))
}
