//! The revocation feed's endpoints (docs/API.md, "The revocation feed").
//!
//! `GET /v1/revocations?after=SEQ&limit=N` answers a page of entries and the head seq;
//! `GET /v1/revocations/stream?after=SEQ` (or `Last-Event-ID`) is a Server-Sent Events
//! stream: every entry after SEQ as an event whose id is its seq, then new entries as they
//! commit, and a heartbeat carrying the head seq every few seconds. Readers need a
//! system-tenant credential with `latchkey:introspect` or `latchkey:admin`.

use crate::http::auth::ServiceCaller;
use crate::http::extract::{ApiJson, Limit, Query, Seq};
use crate::http::problem::{ApiError, ApiResult};
use crate::service::revocation::{self, FeedItem};
use crate::service::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};
use std::convert::Infallible;
use uuid::Uuid;

/// The query of the feed: entries after the seq `after` (or the stream's
/// `Last-Event-ID`, else 0), `limit` of them a page (1–10,000, default 500).
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeedQuery {
    after: Option<Seq>,
    limit: Limit<10_000, 500>,
}

impl FeedQuery {
    /// Where to start: `after`, else the `Last-Event-ID` a reconnecting stream sends.
    fn after(&self, headers: &HeaderMap) -> i64 {
        let resume = || {
            headers
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<i64>().ok())
        };
        self.after.map(|seq| seq.0).or_else(resume).unwrap_or(0)
    }
}

/// `GET /v1/revocations`.
#[utoipa::path(
    get,
    path = "/v1/revocations",
    operation_id = "revocations_page",
    tag = "revocations",
    summary = "A page of the revocation feed",
    params(("after" = Option<i64>, Query, minimum = 0, description = "Entries after this seq"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000, description = "1–10,000, default 500")),
    responses((status = 200, description = "Entries and the head seq", body = crate::http::openapi::RevocationPageSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"))
)]
pub async fn page(
    State(state): State<AppState>,
    _reader: ServiceCaller,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> ApiResult<Json<Value>> {
    let after = query.after(&headers);
    let (entries, head) = state
        .store()
        .revocations_after(after, query.limit.0)
        .await?;
    Ok(Json(json!({ "entries": entries, "head": head })))
}

/// `GET /v1/revocations/stream`.
#[utoipa::path(
    get,
    path = "/v1/revocations/stream",
    operation_id = "revocations_stream",
    tag = "revocations",
    summary = "The revocation feed as Server-Sent Events",
    params(("after" = Option<i64>, Query, minimum = 0, description = "Entries after this seq"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 10000), ("Last-Event-ID" = Option<String>, Header, description = "Resume after this seq")),
    responses((status = 200, description = "`revocation` events (id = seq) and `heartbeat` events", content_type = "text/event-stream", body = String), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"))
)]
pub async fn follow(
    State(state): State<AppState>,
    _reader: ServiceCaller,
    headers: HeaderMap,
    Query(query): Query<FeedQuery>,
) -> ApiResult<Sse<impl Stream<Item = Result<Event, Infallible>>>> {
    let after = query.after(&headers);
    tracing::debug!(after, "a follower opens the revocation stream");
    let follower = revocation::follow(state, after).await?;
    let items = stream::unfold(follower, |follower| follower.next());
    Ok(Sse::new(items.map(|item| Ok(event(item)))))
}

/// One feed item as a Server-Sent Event.
fn event(item: FeedItem) -> Event {
    match item {
        FeedItem::Hello { head, subscriber } => Event::default()
            .event("heartbeat")
            .data(json!({ "head": head, "subscriber": subscriber }).to_string()),
        FeedItem::Entry(entry) => Event::default()
            .id(entry.seq.to_string())
            .event("revocation")
            .data(entry.json.as_str()),
        FeedItem::Heartbeat { head } => Event::default()
            .event("heartbeat")
            .data(json!({ "head": head }).to_string()),
    }
}

/// `POST /v1/revocations/ack` `{"subscriber": "<id from the stream>", "seq": N}`: the
/// follower has applied every entry up to N.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    subscriber: Uuid,
    seq: i64,
}

/// `POST /v1/revocations/ack`.
#[utoipa::path(
    post,
    path = "/v1/revocations/ack",
    operation_id = "revocations_ack",
    tag = "revocations",
    summary = "Acknowledge entries up to a seq",
    request_body = crate::http::openapi::AckSchema,
    responses((status = 204, description = "Acknowledged"), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn ack(
    State(state): State<AppState>,
    _caller: ServiceCaller,
    ApiJson(ack): ApiJson<Ack>,
) -> ApiResult<StatusCode> {
    if state.revocations().acknowledge(ack.subscriber, ack.seq) {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!("subscriber {}", ack.subscriber)))
    }
}
