//! Liveness (the process answers) and readiness (the store answers too).

use crate::http::problem::{ApiError, ApiResult};
use crate::service::state::AppState;
use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

pub async fn live() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub async fn ready(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    state
        .store()
        .ping()
        .await
        .map_err(|error| ApiError::Unavailable(error.to_string()))?;
    Ok(Json(json!({ "status": "ready" })))
}
