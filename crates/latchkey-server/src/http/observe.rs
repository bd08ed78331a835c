//! What every request passes through on its way in and out (docs/OPERATIONS.md):
//! its `X-Request-Id`, the tracing span every log line of the request is written in,
//! the access-log line, the metrics, and the request id in the body of a 500.
//!
//! Policy: the request id is the client's if sane (`latchkey_telemetry::request_id`),
//! otherwise generated, and always answered in `X-Request-Id`. The span carries
//! `request_id`, `method` and `route` (the template, never the raw path); the
//! authentication code adds `token_id` and `tenant` once it knows them. The access
//! line (target `latchkey::access`, level info) holds method, route, status, duration
//! and, through the span, the request id, token id and tenant; never a header value,
//! a query string or a body, so no secret can reach it.

use crate::service::metrics::UNMATCHED;
use crate::service::state::AppState;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use latchkey_telemetry::request_id;
use std::time::Instant;
use tracing::Instrument;

/// The largest 500 body the request id is added to; ours are far smaller.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Runs `next` inside the request's span and records what came of it.
pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id::from_client(request.headers().get(request_id::NAME));
    let route = request.extensions().get::<MatchedPath>().cloned();
    let route = route.as_ref().map_or(UNMATCHED, MatchedPath::as_str);
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = id.to_str().unwrap_or_default(),
        method = %method,
        route,
        token_id = tracing::field::Empty,
        tenant = tracing::field::Empty,
    );
    // A disabled span (RUST_LOG above info) is not entered on every poll: entering it
    // would only cost.
    let mut response = if span.is_disabled() {
        next.run(request).await
    } else {
        next.run(request).instrument(span.clone()).await
    };
    let status = response.status();
    let elapsed = started.elapsed();
    state
        .metrics()
        .request(route, &method, status.as_u16(), elapsed);
    tracing::info!(
        target: "latchkey::access",
        parent: &span,
        status = status.as_u16(),
        duration_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
        "request"
    );
    if status == StatusCode::INTERNAL_SERVER_ERROR {
        response = with_request_id(response, &id).await;
    }
    response.headers_mut().insert(request_id::NAME, id);
    response
}

/// A 500 whose body is a JSON object gains a `request_id` member, so the client can
/// quote it and the operator find the cause in the log.
async fn with_request_id(response: Response, id: &HeaderValue) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, ERROR_BODY_LIMIT).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let mut value = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(serde_json::Value::Object(object)) => object,
        _ => return Response::from_parts(parts, Body::from(bytes)),
    };
    value.insert(
        "request_id".to_owned(),
        serde_json::Value::String(id.to_str().unwrap_or_default().to_owned()),
    );
    let body = serde_json::Value::Object(value).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(body))
}
