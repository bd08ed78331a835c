//! Console sessions (docs/API.md, "Console sessions"; docs/CONSOLE.md): a host app's
//! backend asks for a single-use URL that puts one of its users into the console, and
//! may end any session of its tenant before its hour is up.

use super::tenants::visible_tenant;
use crate::http::auth::Caller;
use crate::http::path_param;
use crate::http::problem::{ApiError, ApiResult};
use crate::service::console;
use crate::service::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_core::{TokenId, UserId};
use serde_json::{Value, json};

/// `POST /v1/tenants/{tid}/users/{uid}/console-sessions`: 201 with the URL to send the
/// user to (its code opens once, within 5 minutes) and when the code expires.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tid}/users/{uid}/console-sessions",
    operation_id = "console_sessions_create",
    tag = "console",
    summary = "A single-use URL that opens a console session as this user",
    params(("tid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The tenant id"), ("uid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The user id")),
    responses((status = 201, description = "The session's URL, valid once within 5 minutes", body = crate::http::openapi::ConsoleSessionSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path((tid, uid)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let tenant = visible_tenant(&state, &caller, &tid).await?;
    let user = path_param("user_id", &uid, UserId::parse)?;
    if state
        .store()
        .get_membership(&tenant.id, &user)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound(format!(
            "user {user} in tenant {}",
            tenant.id
        )));
    }
    let made = console::create_code(&state, &caller.audit(&state), &tenant.id, &user).await?;
    let url = format!(
        "{}/console/session/{}",
        state.settings().public_url.trim_end_matches('/'),
        made.code
    );
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "id": made.session.id,
            "url": url,
            "expires_at": made.session.code_expires_at,
        })),
    ))
}

/// `DELETE /v1/console-sessions/{id}`: ends the session at once (204, also when it had
/// ended already); 404 for a session the caller may not see.
#[utoipa::path(
    delete,
    path = "/v1/console-sessions/{id}",
    operation_id = "console_sessions_delete",
    tag = "console",
    summary = "End a console session",
    params(("id" = String, Path, format = Uuid, description = "The session id")),
    responses((status = 204, description = "Ended"), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let id = path_param("session_id", &id, TokenId::parse)?;
    let not_found = || ApiError::NotFound(format!("console session {id}"));
    let session = state
        .store()
        .get_console_session(id)
        .await?
        .ok_or_else(not_found)?;
    if !caller.authority.covers(&session.tenant_id) {
        return Err(not_found());
    }
    console::end(&state, &caller.audit(&state), id).await?;
    Ok(StatusCode::NO_CONTENT)
}
