//! Trust relationships (docs/API.md, "Trusts"): create, list, read, rename (the only
//! change a trust admits) and revoke. A trust grants what a tenant token with the same
//! roles and permissions would, and is bounded by its creator's authority the same way.

use super::tenants::visible_tenant;
use super::tokens::{member_permissions, rename_body, sorted_unique};
use crate::http::auth::Caller;
use crate::http::extract::{ApiJson, ListQuery, Query};
use crate::http::problem::{ApiError, ApiResult};
use crate::http::{page_body, path_param};
use crate::service::federation::check_issuer_url;
use crate::service::policy;
use crate::service::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_core::permission::{check_caller_grant, check_user_grant};
use latchkey_core::token::TokenName;
use latchkey_core::trust::{
    IMMUTABLE_FIELDS, MAX_TEXT, RequiredClaims, SubjectPattern, Trust, check_required_claims,
};
use latchkey_core::{Permission, RoleName, TokenId, UserId};
use latchkey_wire::Page;
use serde::Deserialize;
use serde_json::{Map, Value};

/// The body of `POST /v1/tenants/{tid}/trusts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateTrust {
    name: TokenName,
    issuer: String,
    audience: String,
    subject: SubjectPattern,
    #[serde(default)]
    claims: RequiredClaims,
    #[serde(default)]
    roles: Vec<RoleName>,
    #[serde(default)]
    permissions: Vec<Permission>,
    #[serde(default)]
    access_token_ttl_seconds: Option<u32>,
    #[serde(default)]
    replay_protection: Option<bool>,
    #[serde(default)]
    created_by: Option<UserId>,
}

/// `POST /v1/tenants/{tid}/trusts` → 201 with the trust.
#[utoipa::path(
    post,
    path = "/v1/tenants/{tid}/trusts",
    operation_id = "trusts_create",
    tag = "trusts",
    summary = "Create a trust relationship with an identity provider",
    params(("tid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The tenant id")),
    request_body = crate::http::openapi::CreateTrustSchema,
    responses((status = 201, description = "The trust", body = crate::http::openapi::TrustSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"), (status = 422, description = "A value is out of range, unknown or breaks a rule"))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    Path(tid): Path<String>,
    ApiJson(body): ApiJson<CreateTrust>,
) -> ApiResult<(StatusCode, Json<Trust>)> {
    let tenant = visible_tenant(&state, &caller, &tid).await?;
    check_issuer_url(&body.issuer, state.settings().trust_allow_insecure_issuers)
        .map_err(|why| ApiError::value("issuer", why))?;
    if body.audience.is_empty() || body.audience.len() > MAX_TEXT {
        return Err(ApiError::value(
            "audience",
            format!("must be 1–{MAX_TEXT} characters"),
        ));
    }
    check_required_claims(&body.claims).map_err(|e| ApiError::value("claims", e.0))?;
    let roles = sorted_unique("roles", body.roles)?;
    let permissions = sorted_unique("permissions", body.permissions)?;
    if roles.is_empty() && permissions.is_empty() {
        return Err(ApiError::value(
            "permissions",
            "a trust must grant at least one role or permission",
        ));
    }
    let policy = policy::effective(&state, &tenant.id).await?;
    let max = policy
        .max_access_token_ttl_seconds
        .unwrap_or(u32::MAX)
        .min(state.settings().max_access_token_ttl_seconds);
    let ttl = body
        .access_token_ttl_seconds
        .unwrap_or(state.settings().default_access_token_ttl_seconds.min(max));
    if !(1..=max).contains(&ttl) {
        return Err(ApiError::value(
            "access_token_ttl_seconds",
            format!("must be between 1 and {max}"),
        ));
    }
    // No one grants more than they hold: the rules of token creation.
    state.store().check_permissions_exist(&permissions).await?;
    let mut requested = state.store().role_permissions(&roles).await?;
    requested.extend(permissions.iter().cloned());
    // The JWTs a trust issues are not management credentials (docs/API.md, "Trusts").
    if let Some(builtin) = requested.iter().find(|p| p.is_builtin()) {
        return Err(ApiError::value(
            "permissions",
            format!("{builtin} is built in; a trust cannot grant it"),
        ));
    }
    check_caller_grant(&caller.authority, &tenant.id, &requested)?;
    if let Some(user) = &body.created_by {
        let holds = member_permissions(&state, &tenant.id, user).await?;
        check_user_grant(user, &tenant.id, &holds, &requested)?;
    }
    let mut ctx = caller.audit(&state);
    ctx.actor_user = body.created_by.as_ref().map(ToString::to_string);
    let trust = Trust {
        id: TokenId::generate(state.rng()).map_err(|e| ApiError::Internal(e.to_string()))?,
        tenant_id: tenant.id,
        name: body.name,
        issuer: body.issuer,
        audience: body.audience,
        subject: body.subject,
        claims: body.claims,
        roles,
        permissions,
        access_token_ttl_seconds: ttl,
        replay_protection: body.replay_protection.unwrap_or(true),
        created_by: body.created_by,
        created_at: ctx.at,
        revoked_at: None,
    };
    state.store().create_trust(&trust, &ctx).await?;
    Ok((StatusCode::CREATED, Json(trust)))
}

/// `GET /v1/tenants/{tid}/trusts`: newest first.
#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/trusts",
    operation_id = "trusts_list",
    tag = "trusts",
    summary = "List a tenant's trusts",
    params(("tid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The tenant id"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, 1–200, default 50"), ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page")),
    responses((status = 200, description = "A page of trusts", body = latchkey_wire::Page<crate::http::openapi::TrustSchema>), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Path(tid): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<Trust>>> {
    let tenant = visible_tenant(&state, &caller, &tid).await?;
    let page = state.store().list_trusts(&tenant.id, &query.into()).await?;
    Ok(Json(page_body(page)))
}

/// Loads a trust the caller may see, or answers 404 as if it did not exist.
async fn visible_trust(state: &AppState, caller: &Caller, raw: &str) -> ApiResult<Trust> {
    let id = path_param("trust_id", raw, TokenId::parse)?;
    state
        .store()
        .get_trust(id)
        .await?
        .filter(|trust| caller.authority.covers(&trust.tenant_id))
        .ok_or_else(|| ApiError::NotFound(format!("trust {id}")))
}

/// `GET /v1/trusts/{id}`.
#[utoipa::path(
    get,
    path = "/v1/trusts/{id}",
    operation_id = "trusts_show",
    tag = "trusts",
    summary = "Read a trust",
    params(("id" = String, Path, format = Uuid, description = "The trust id")),
    responses((status = 200, description = "The trust", body = crate::http::openapi::TrustSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Trust>> {
    Ok(Json(visible_trust(&state, &caller, &id).await?))
}

/// `PATCH /v1/trusts/{id}`: only `name` may change; any other trust field is 422
/// `immutable-field`, any other key 400, before anything is written.
#[utoipa::path(
    patch,
    path = "/v1/trusts/{id}",
    operation_id = "trusts_rename",
    tag = "trusts",
    summary = "Rename a trust (its only mutable field)",
    params(("id" = String, Path, format = Uuid, description = "The trust id")),
    request_body = latchkey_wire::RenameToken,
    responses((status = 200, description = "The trust", body = crate::http::openapi::TrustSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"), (status = 422, description = "A value is out of range, unknown or breaks a rule"))
)]
pub async fn rename(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> ApiResult<Json<Trust>> {
    let trust = visible_trust(&state, &caller, &id).await?;
    let name = rename_body(&body, &IMMUTABLE_FIELDS, "trust")?;
    let renamed = state
        .store()
        .rename_trust(trust.id, &name, &caller.audit(&state))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("trust {}", trust.id)))?;
    Ok(Json(renamed))
}

/// `DELETE /v1/trusts/{id}`: 204. The trust stops issuing, and the access tokens it
/// issued are revoked through the feed (their `client_id` is its id).
#[utoipa::path(
    delete,
    path = "/v1/trusts/{id}",
    operation_id = "trusts_revoke",
    tag = "trusts",
    summary = "Revoke a trust and the access tokens it issued",
    params(("id" = String, Path, format = Uuid, description = "The trust id")),
    responses((status = 204, description = "Revoked"), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let trust = visible_trust(&state, &caller, &id).await?;
    state
        .store()
        .revoke_trust(trust.id, &caller.audit(&state))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("trust {}", trust.id)))?;
    state.auth_changed();
    Ok(StatusCode::NO_CONTENT)
}
