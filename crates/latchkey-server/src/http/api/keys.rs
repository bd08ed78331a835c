//! Signing-key rotation on demand (`latchkey keys rotate`); the schedule rotates too.

use crate::http::auth::Caller;
use crate::http::problem::ApiResult;
use crate::service::state::AppState;
use axum::Json;
use axum::extract::State;
use latchkey_core::store::RotateWhen;
use serde_json::{Value, json};

/// `POST /v1/keys/rotate`: a new next key; the old next starts signing.
#[utoipa::path(
    post,
    path = "/v1/keys/rotate",
    operation_id = "keys_rotate",
    tag = "keys",
    summary = "Rotate the signing keys",
    responses((status = 200, description = "The keys now", body = crate::http::openapi::KeyRotationSchema), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"))
)]
pub async fn rotate(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    caller.require_admin()?;
    state
        .keyring()
        .rotate(state.store(), RotateWhen::Always, &caller.audit(&state))
        .await?;
    let keys = state.keyring().keys();
    Ok(Json(json!({
        "current_kid": keys.current().map(|key| key.kid.clone()),
        "published_kids": keys.kids(),
    })))
}
