//! `GET /metrics`: the server's metrics in the Prometheus text format
//! (docs/OPERATIONS.md, "Metrics").
//!
//! Policy: readable by a system-tenant credential holding `latchkey:introspect` or
//! `latchkey:admin`, the same credential a gateway follows the feed with (401 without
//! a credential, 403 with one that holds neither). With `metrics_enabled = false` the
//! endpoint does not exist (404).

use crate::http::auth::ServiceCaller;
use crate::http::problem::{ApiError, ApiResult};
use crate::service::metrics::{Gauges, Scrape};
use crate::service::state::AppState;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use latchkey_telemetry::metrics::{CONTENT_TYPE, render};
use std::sync::Arc;

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "health",
    summary = "Prometheus metrics, for a system credential holding latchkey:introspect or latchkey:admin",
    responses((status = 200, description = "The Prometheus text exposition format", content_type = "text/plain"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"))
)]
pub async fn scrape(State(state): State<AppState>, _caller: ServiceCaller) -> ApiResult<Response> {
    let store = state.store().gauges().await.map_err(ApiError::from)?;
    let gauges = Gauges {
        revocations: store.feed_head,
        feed_followers: i64::try_from(state.revocations().followers()).unwrap_or(i64::MAX),
        audit_queue: i64::try_from(state.audit().depth()).unwrap_or(i64::MAX),
        webhook_outbox: store.webhook_outbox,
        db_connections: i64::from(store.connections),
        db_idle: i64::from(store.idle),
        db_max: i64::from(store.max_connections),
    };
    let body = render(Arc::new(Scrape {
        metrics: state.metrics().clone(),
        gauges,
    }));
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    Ok(response)
}
