//! Tenants: created, listed and deleted by `latchkey:admin`; a tenant's own managers may
//! read it. Deleting a tenant revokes and removes all its tokens.

use crate::http::auth::Caller;
use crate::http::extract::{ApiJson, ListQuery, Query};
use crate::http::problem::{ApiError, ApiResult};
use crate::http::{page_body, path_param};
use crate::service::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_core::TenantId;
use latchkey_core::store::Tenant;
use latchkey_wire::Page;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    id: TenantId,
    name: Option<String>,
}

/// Checks a display name: 1–200 characters, no control characters.
pub fn display_name(field: &str, text: &str) -> ApiResult<String> {
    latchkey_core::token::TokenName::parse(text)
        .map(|name| name.as_str().to_owned())
        .map_err(|error| ApiError::field(field, error))
}

#[utoipa::path(
    post,
    path = "/v1/tenants",
    operation_id = "tenants_create",
    tag = "tenants",
    summary = "Create a tenant",
    request_body = latchkey_wire::CreateTenant,
    responses((status = 201, description = "The tenant", body = crate::http::openapi::TenantSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 409, description = "Conflicts with the current state"), (status = 422, description = "A value is out of range, unknown or breaks a rule"))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    caller.require_admin()?;
    let name = match &body.name {
        Some(name) => display_name("name", name)?,
        None => body.id.to_string(),
    };
    let tenant = Tenant {
        id: body.id,
        name,
        created_at: state.now(),
    };
    state
        .store()
        .create_tenant(&tenant, &caller.audit(&state))
        .await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

#[utoipa::path(
    get,
    path = "/v1/tenants",
    operation_id = "tenants_list",
    tag = "tenants",
    summary = "List tenants",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, 1–200, default 50"), ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page")),
    responses((status = 200, description = "A page of tenants", body = latchkey_wire::Page<crate::http::openapi::TenantSchema>), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<Tenant>>> {
    caller.require_admin()?;
    let page = state.store().list_tenants(&query.into()).await?;
    Ok(Json(page_body(page)))
}

/// Loads a tenant the caller may see, or answers 404.
pub async fn visible_tenant(state: &AppState, caller: &Caller, raw: &str) -> ApiResult<Tenant> {
    let id = path_param("tenant_id", raw, TenantId::parse)?;
    caller.require_tenant(&id)?;
    state
        .store()
        .get_tenant(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("tenant {id}")))
}

#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}",
    operation_id = "tenants_show",
    tag = "tenants",
    summary = "Read a tenant",
    params(("tid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The tenant id")),
    responses((status = 200, description = "The tenant", body = crate::http::openapi::TenantSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(tid): Path<String>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(visible_tenant(&state, &caller, &tid).await?))
}

#[utoipa::path(
    delete,
    path = "/v1/tenants/{tid}",
    operation_id = "tenants_delete",
    tag = "tenants",
    summary = "Delete a tenant and revoke its tokens",
    params(("tid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The tenant id")),
    responses((status = 204, description = "Deleted"), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(tid): Path<String>,
) -> ApiResult<StatusCode> {
    let tenant = visible_tenant(&state, &caller, &tid).await?;
    caller.require_admin()?;
    if tenant.id.is_system() {
        return Err(ApiError::Protected(
            "the system tenant `latchkey` cannot be deleted".to_owned(),
        ));
    }
    if !state
        .store()
        .delete_tenant(&tenant.id, &caller.audit(&state))
        .await?
    {
        return Err(ApiError::NotFound(format!("tenant {}", tenant.id)));
    }
    state.auth_changed();
    Ok(StatusCode::NO_CONTENT)
}
