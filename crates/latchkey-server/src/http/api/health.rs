//! Liveness (the process answers) and readiness (the store answers too).

use crate::http::problem::{ApiError, ApiResult};
use crate::service::state::AppState;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "health_live",
    tag = "health",
    summary = "Liveness",
    responses((status = 200, description = "Alive", body = crate::http::openapi::HealthSchema))
)]
pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "health_ready",
    tag = "health",
    summary = "Readiness: the store answers",
    responses((status = 200, description = "Ready", body = crate::http::openapi::HealthSchema), (status = 503, description = "The store does not answer"))
)]
pub async fn ready(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state
        .store()
        .ping()
        .await
        .map_err(|error| ApiError::Unavailable(error.to_string()))?;
    Ok(Json(json!({ "status": "ready" })))
}
