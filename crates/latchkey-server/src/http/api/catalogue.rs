//! The vendor's permission catalogue and roles. Only `latchkey:admin` changes them; any
//! management caller may read them. Built-in permissions cannot be changed.

use crate::http::auth::Caller;
use crate::http::extract::ApiJson;
use crate::http::path_param;
use crate::http::problem::ApiResult;
use crate::service::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use latchkey_core::store::{PermissionDef, RoleDef};
use latchkey_core::{Permission, RoleName};
use serde::Deserialize;
use serde_json::{Value, json};

const MAX_DESCRIPTION: usize = 1000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutPermission {
    #[serde(default)]
    description: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutRole {
    permissions: Vec<Permission>,
    #[serde(default)]
    description: String,
}

fn description(text: String) -> ApiResult<String> {
    if text.chars().count() > MAX_DESCRIPTION {
        return Err(crate::http::problem::ApiError::field(
            "description",
            format!("must be at most {MAX_DESCRIPTION} characters"),
        ));
    }
    Ok(text)
}

pub async fn put_permission(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PutPermission>,
) -> ApiResult<Json<PermissionDef>> {
    caller.require_admin()?;
    let def = PermissionDef {
        name: path_param("name", &name, Permission::parse)?,
        description: description(body.description)?,
        builtin: false,
    };
    state
        .store()
        .put_permission(&def, &caller.audit(&state))
        .await?;
    Ok(Json(def))
}

pub async fn list_permissions(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<Value>> {
    let items = state.store().list_permissions().await?;
    Ok(Json(json!({ "items": items })))
}

pub async fn put_role(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<PutRole>,
) -> ApiResult<Json<RoleDef>> {
    caller.require_admin()?;
    let mut permissions = body.permissions;
    permissions.sort();
    permissions.dedup();
    let role = RoleDef {
        name: path_param("name", &name, RoleName::parse)?,
        permissions,
        description: description(body.description)?,
    };
    state.store().put_role(&role, &caller.audit(&state)).await?;
    state.auth_changed();
    Ok(Json(role))
}

pub async fn list_roles(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Value>> {
    let items = state.store().list_roles().await?;
    Ok(Json(json!({ "items": items })))
}
