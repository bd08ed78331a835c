//! Memberships: which roles a user holds in a tenant. Removing a membership revokes the
//! user's personal tokens there; deleting a user does so everywhere and removes them.

use super::tenants::visible_tenant;
use crate::http::auth::Caller;
use crate::http::extract::{ApiJson, ListQuery, Query};
use crate::http::problem::{ApiError, ApiResult};
use crate::http::{page_body, path_param};
use crate::service::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_core::permission::check_caller_grant;
use latchkey_core::store::Membership;
use latchkey_core::{RoleName, UserId};
use latchkey_wire::Page;
use serde::Deserialize;

const MAX_ROLES: usize = 64;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PutMembership {
    roles: Vec<RoleName>,
}

#[utoipa::path(
    put,
    path = "/v1/tenants/{tid}/users/{uid}",
    operation_id = "members_put",
    tag = "tenants",
    summary = "Set a member's roles",
    params(("tid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The tenant id"), ("uid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The user id")),
    request_body = latchkey_wire::PutMembership,
    responses((status = 200, description = "The membership", body = crate::http::openapi::MembershipSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"), (status = 422, description = "A value is out of range, unknown or breaks a rule"))
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path((tid, uid)): Path<(String, String)>,
    ApiJson(body): ApiJson<PutMembership>,
) -> ApiResult<Json<Membership>> {
    let tenant = visible_tenant(&state, &caller, &tid).await?;
    let user = path_param("user_id", &uid, UserId::parse)?;
    let mut roles = body.roles;
    roles.sort();
    roles.dedup();
    if roles.len() > MAX_ROLES {
        return Err(ApiError::field(
            "roles",
            format!("must hold at most {MAX_ROLES} roles"),
        ));
    }
    // A manager cannot hand out, through roles, what it could not put on a token.
    let granted = state.store().role_permissions(&roles).await?;
    check_caller_grant(&caller.authority, &tenant.id, &granted)?;
    let membership = state
        .store()
        .put_membership(&tenant.id, &user, &roles, &caller.audit(&state))
        .await?;
    state.auth_changed();
    Ok(Json(membership))
}

#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/users",
    operation_id = "members_list",
    tag = "tenants",
    summary = "List a tenant's members",
    params(("tid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The tenant id"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, 1–200, default 50"), ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page")),
    responses((status = 200, description = "A page of members", body = latchkey_wire::Page<crate::http::openapi::MembershipSchema>), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(tid): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<Membership>>> {
    let tenant = visible_tenant(&state, &caller, &tid).await?;
    let page = state
        .store()
        .list_memberships(&tenant.id, &query.into())
        .await?;
    Ok(Json(page_body(page)))
}

#[utoipa::path(
    delete,
    path = "/v1/tenants/{tid}/users/{uid}",
    operation_id = "members_remove",
    tag = "tenants",
    summary = "Remove a member and revoke their personal tokens there",
    params(("tid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The tenant id"), ("uid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The user id")),
    responses((status = 204, description = "Removed"), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path((tid, uid)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let tenant = visible_tenant(&state, &caller, &tid).await?;
    let user = path_param("user_id", &uid, UserId::parse)?;
    let removed = state
        .store()
        .remove_membership(&tenant.id, &user, &caller.audit(&state))
        .await?;
    if !removed {
        return Err(ApiError::NotFound(format!(
            "user {user} in tenant {}",
            tenant.id
        )));
    }
    state.auth_changed();
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(
    delete,
    path = "/v1/users/{uid}",
    operation_id = "users_delete",
    tag = "tenants",
    summary = "Delete a user everywhere",
    params(("uid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The user id")),
    responses((status = 204, description = "Deleted"), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn delete_user(
    State(state): State<AppState>,
    caller: Caller,
    Path(uid): Path<String>,
) -> ApiResult<StatusCode> {
    let user = path_param("user_id", &uid, UserId::parse)?;
    caller.require_admin()?;
    if !state
        .store()
        .delete_user(&user, &caller.audit(&state))
        .await?
    {
        return Err(ApiError::NotFound(format!("user {user}")));
    }
    state.auth_changed();
    Ok(StatusCode::NO_CONTENT)
}
