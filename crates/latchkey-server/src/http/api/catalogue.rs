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

#[utoipa::path(
    put,
    path = "/v1/permissions/{name}",
    operation_id = "permissions_put",
    tag = "catalogue",
    summary = "Define a permission",
    params(("name" = String, Path, pattern = "^[a-z0-9_.:-]{1,128}$", description = "The permission")),
    request_body = latchkey_wire::PutPermission,
    responses((status = 200, description = "The permission", body = crate::http::openapi::PermissionSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 422, description = "A value is out of range, unknown or breaks a rule"))
)]
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

#[utoipa::path(
    get,
    path = "/v1/permissions",
    operation_id = "permissions_list",
    tag = "catalogue",
    summary = "List the permission catalogue",
    responses((status = 200, description = "Every permission", body = crate::http::openapi::PermissionList), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"))
)]
pub async fn list_permissions(
    State(state): State<AppState>,
    _caller: Caller,
) -> ApiResult<Json<Value>> {
    let items = state.store().list_permissions().await?;
    Ok(Json(json!({ "items": items })))
}

#[utoipa::path(
    put,
    path = "/v1/roles/{name}",
    operation_id = "roles_put",
    tag = "catalogue",
    summary = "Define a role",
    params(("name" = String, Path, pattern = "^[a-z0-9_.:-]{1,128}$", description = "The role name")),
    request_body = latchkey_wire::PutRole,
    responses((status = 200, description = "The role", body = crate::http::openapi::RoleSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 422, description = "A value is out of range, unknown or breaks a rule"))
)]
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

#[utoipa::path(
    get,
    path = "/v1/roles",
    operation_id = "roles_list",
    tag = "catalogue",
    summary = "List roles",
    responses((status = 200, description = "Every role", body = crate::http::openapi::RoleList), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"))
)]
pub async fn list_roles(State(state): State<AppState>, _caller: Caller) -> ApiResult<Json<Value>> {
    let items = state.store().list_roles().await?;
    Ok(Json(json!({ "items": items })))
}
