//! `GET` and `PUT /v1/tenants/{tid}/policy` (docs/API.md, "Tenant policies"): read or
//! replace a tenant's own policy. An admin or that tenant's manager may do either; only
//! an admin may set the system tenant's.

use super::tenants::visible_tenant;
use crate::http::auth::Caller;
use crate::http::extract::ApiJson;
use crate::http::problem::{ApiError, ApiResult};
use crate::service::policy::{self, Breach};
use crate::service::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use latchkey_core::TenantId;
use latchkey_core::network::NetworkRules;
use latchkey_core::policy::TenantPolicy;
use latchkey_core::store::StoredPolicy;
use latchkey_core::token::TokenKind;
use latchkey_wire::{PolicyBreach, PolicyResource, PolicyViolations};
use serde::Deserialize;

/// The body of `PUT`: numbers are read wide so that a negative or huge one is refused
/// as out of range (422), like any other value outside a rule's bounds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBody {
    #[serde(default)]
    max_token_lifetime_days: Option<i64>,
    #[serde(default)]
    require_expiry: bool,
    #[serde(default)]
    allowed_kinds: Option<Vec<TokenKind>>,
    #[serde(default)]
    require_ip_allowlist: bool,
    #[serde(default)]
    revoke_unused_after_days: Option<i64>,
    #[serde(default)]
    max_access_token_ttl_seconds: Option<i64>,
    #[serde(default)]
    network: NetworkRules,
    #[serde(default)]
    require_dpop: bool,
}

impl PolicyBody {
    /// The policy, its numbers in `u32` (bounds are checked by the policy itself:
    /// anything outside `u32` is out of every rule's range).
    fn into_policy(self) -> ApiResult<TenantPolicy> {
        let narrow = |field: &str, value: Option<i64>| -> ApiResult<Option<u32>> {
            value
                .map(|n| u32::try_from(n).map_err(|_| ApiError::value(field, "is out of range")))
                .transpose()
        };
        Ok(TenantPolicy {
            max_token_lifetime_days: narrow(
                "max_token_lifetime_days",
                self.max_token_lifetime_days,
            )?,
            require_expiry: self.require_expiry,
            allowed_kinds: self.allowed_kinds,
            require_ip_allowlist: self.require_ip_allowlist,
            revoke_unused_after_days: narrow(
                "revoke_unused_after_days",
                self.revoke_unused_after_days,
            )?,
            max_access_token_ttl_seconds: narrow(
                "max_access_token_ttl_seconds",
                self.max_access_token_ttl_seconds,
            )?,
            network: self.network,
            require_dpop: self.require_dpop,
        })
    }
}

/// Loads the tenant for a policy call: the system tenant's policy is an admin's alone.
async fn policy_tenant(state: &AppState, caller: &Caller, raw: &str) -> ApiResult<TenantId> {
    let tenant = visible_tenant(state, caller, raw).await?;
    if tenant.id.is_system() {
        caller.require_admin()?;
    }
    Ok(tenant.id)
}

fn resource(state: &AppState, tenant_id: TenantId, stored: Option<StoredPolicy>) -> PolicyResource {
    let (policy, updated_at) = match stored {
        Some(stored) => (stored.policy, Some(stored.updated_at)),
        None => (TenantPolicy::default(), None),
    };
    PolicyResource {
        tenant_id,
        effective: policy.stricter(&state.settings().policy_floor),
        policy,
        updated_at,
        violations: None,
    }
}

#[utoipa::path(
    get,
    path = "/v1/tenants/{tid}/policy",
    operation_id = "policy_show",
    tag = "policies",
    summary = "Read a tenant policy",
    params(("tid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The tenant id")),
    responses((status = 200, description = "The policy", body = latchkey_wire::PolicyResource), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(tid): Path<String>,
) -> ApiResult<Json<PolicyResource>> {
    let tenant = policy_tenant(&state, &caller, &tid).await?;
    let stored = state.store().get_policy(&tenant).await?;
    Ok(Json(resource(&state, tenant, stored)))
}

/// Replaces the whole policy and answers with it and the live tokens that break the
/// rules now in force. Existing tokens are not changed: the rules bind creates and
/// rolls, and the unused sweep revokes what the unused rule names.
#[utoipa::path(
    put,
    path = "/v1/tenants/{tid}/policy",
    operation_id = "policy_put",
    tag = "policies",
    summary = "Replace a tenant policy",
    params(("tid" = String, Path, pattern = "^[A-Za-z0-9._-]{1,128}$", description = "The tenant id")),
    request_body = crate::http::openapi::PolicyBodySchema,
    responses((status = 200, description = "The policy and the live tokens that break it", body = latchkey_wire::PolicyResource), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"), (status = 422, description = "A value is out of range, unknown or breaks a rule"))
)]
pub async fn put(
    State(state): State<AppState>,
    caller: Caller,
    Path(tid): Path<String>,
    ApiJson(body): ApiJson<PolicyBody>,
) -> ApiResult<Json<PolicyResource>> {
    let tenant = policy_tenant(&state, &caller, &tid).await?;
    let policy = body.into_policy()?;
    let invalid =
        |error: latchkey_core::policy::PolicyError| ApiError::value(error.field, error.reason);
    policy
        .validate(state.settings().max_access_token_ttl_seconds)
        .map_err(invalid)?;
    policy
        .check_within(&state.settings().policy_floor)
        .map_err(invalid)?;
    if policy.network.has_country_rules() && state.geoip().is_none() {
        let field = if policy.network.allow_countries.is_some() {
            "network.allow_countries"
        } else {
            "network.deny_countries"
        };
        return Err(ApiError::value(
            field,
            "needs a GeoIP database, and this server has none (geoip_database_file)",
        ));
    }
    let stored = state
        .store()
        .put_policy(&tenant, &policy, &caller.audit(&state))
        .await?;
    // Cached tokens carry their tenant's network rules.
    state.auth_changed();
    let mut answer = resource(&state, tenant.clone(), Some(stored));
    let (listed, total) = policy::breaches(&state, &tenant, &answer.effective, state.now()).await?;
    answer.violations = Some(PolicyViolations {
        total: total as u64,
        tokens: listed.into_iter().map(breach).collect(),
    });
    Ok(Json(answer))
}

fn breach(breach: Breach) -> PolicyBreach {
    PolicyBreach {
        id: breach.token.id,
        name: breach.token.name,
        kind: breach.token.kind,
        owner: breach.token.owner,
        rules: breach.violations.iter().map(|v| v.rule).collect(),
    }
}
