//! Webhook endpoints (docs/API.md, "Webhooks"): created with a signing secret shown in
//! that response only, listed, deleted, and their deliveries with every attempt.
//!
//! An admin's webhook may receive one tenant's events or, without `tenant_id`, every
//! tenant's; a tenant manager's receives its own tenant's only, and may not target a
//! non-public address unless the operator allows it. Admins are held to that too: the
//! rule protects the network the server runs in, whoever asks.

use crate::http::auth::Caller;
use crate::http::extract::{ApiJson, ListQuery, Query};
use crate::http::problem::{ApiError, ApiResult};
use crate::http::{page_body, path_param};
use crate::service::state::AppState;
use crate::service::webhooks;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use latchkey_core::audit::WEBHOOK_EVENTS;
use latchkey_core::permission::Authority;
use latchkey_core::store::{Webhook, WebhookDelivery, WebhookRecord};
use latchkey_core::{TenantId, TokenId};
use latchkey_wire::Page;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    url: String,
    events: Vec<String>,
    tenant_id: Option<TenantId>,
}

/// The answer to a creation: the endpoint and its secret, which no later response shows.
#[derive(Debug, Serialize)]
pub struct CreatedWebhook {
    webhook: Webhook,
    secret: String,
}

/// The events, checked: known, at least one, sorted and unique.
fn events(mut events: Vec<String>) -> ApiResult<Vec<String>> {
    if let Some(unknown) = events
        .iter()
        .find(|event| !WEBHOOK_EVENTS.contains(&event.as_str()))
    {
        return Err(ApiError::value(
            "events",
            format!(
                "names `{unknown}`, which is not a webhook event (one of {})",
                WEBHOOK_EVENTS.join(", ")
            ),
        ));
    }
    events.sort();
    events.dedup();
    if events.is_empty() {
        return Err(ApiError::value("events", "must name at least one event"));
    }
    Ok(events)
}

/// The tenant whose events the webhook receives: a manager's own (and no other), or
/// for an admin the one named, or every tenant.
async fn scope(
    state: &AppState,
    caller: &Caller,
    named: Option<TenantId>,
) -> ApiResult<Option<TenantId>> {
    let tenant = match (&caller.authority, named) {
        (Authority::Manager(own), None) => own.clone(),
        (_, Some(tenant)) => tenant,
        (Authority::Admin, None) => return Ok(None),
    };
    caller.require_tenant(&tenant)?;
    if state.store().get_tenant(&tenant).await?.is_none() {
        return Err(ApiError::NotFound(format!("tenant {tenant}")));
    }
    Ok(Some(tenant))
}

#[utoipa::path(
    post,
    path = "/v1/webhooks",
    operation_id = "webhooks_create",
    tag = "webhooks",
    summary = "Create a webhook",
    request_body = crate::http::openapi::CreateWebhookSchema,
    responses((status = 201, description = "The webhook and its secret, shown once", body = crate::http::openapi::CreatedWebhookSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"), (status = 422, description = "A value is out of range, unknown or breaks a rule"))
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<CreatedWebhook>)> {
    let target = webhooks::parse_url(&body.url).map_err(|reason| ApiError::value("url", reason))?;
    if !state.settings().webhook_allow_private_targets
        && let Some(reason) = webhooks::forbidden_target(&target)
    {
        return Err(ApiError::value("url", reason));
    }
    let events = events(body.events)?;
    let tenant_id = scope(&state, &caller, body.tenant_id).await?;
    let id = TokenId::generate(state.rng()).map_err(|e| ApiError::Internal(e.to_string()))?;
    let (secret, bytes) = webhooks::generate_secret(&state)?;
    let ctx = caller.audit(&state);
    let webhook = Webhook {
        id,
        tenant_id,
        url: body.url,
        events,
        created_at: ctx.at,
        created_by: caller.token_id.to_string(),
        disabled_at: None,
        disabled_reason: None,
        previous_secret_expires_at: None,
    };
    let record = WebhookRecord {
        secret_sealed: webhooks::seal_secret(&state, id, &bytes)?,
        previous_secret_sealed: None,
        webhook,
    };
    state.store().create_webhook(&record, &ctx).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedWebhook {
            webhook: record.webhook,
            secret,
        }),
    ))
}

#[utoipa::path(
    get,
    path = "/v1/webhooks",
    operation_id = "webhooks_list",
    tag = "webhooks",
    summary = "List webhooks",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, 1–200, default 50"), ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page")),
    responses((status = 200, description = "A page of webhooks", body = latchkey_wire::Page<crate::http::openapi::WebhookSchema>), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"))
)]
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Page<Webhook>>> {
    let tenant = match &caller.authority {
        Authority::Admin => None,
        Authority::Manager(own) => Some(own),
    };
    let page = state.store().list_webhooks(tenant, &query.into()).await?;
    Ok(Json(page_body(page)))
}

/// Loads a webhook the caller may see, or answers 404: a manager sees its own
/// tenant's, not another tenant's nor the all-tenant ones.
async fn visible_webhook(state: &AppState, caller: &Caller, raw: &str) -> ApiResult<Webhook> {
    let id = path_param("webhook_id", raw, TokenId::parse)?;
    let not_found = || ApiError::NotFound(format!("webhook {id}"));
    let record = state.store().get_webhook(id).await?.ok_or_else(not_found)?;
    let visible = match (&caller.authority, &record.webhook.tenant_id) {
        (Authority::Admin, _) => true,
        (Authority::Manager(own), Some(tenant)) => own == tenant,
        (Authority::Manager(_), None) => false,
    };
    if visible {
        Ok(record.webhook)
    } else {
        Err(not_found())
    }
}

#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    operation_id = "webhooks_show",
    tag = "webhooks",
    summary = "Read a webhook",
    params(("id" = String, Path, format = Uuid, description = "The webhook id")),
    responses((status = 200, description = "The webhook", body = crate::http::openapi::WebhookSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<Webhook>> {
    Ok(Json(visible_webhook(&state, &caller, &id).await?))
}

#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    operation_id = "webhooks_delete",
    tag = "webhooks",
    summary = "Delete a webhook",
    params(("id" = String, Path, format = Uuid, description = "The webhook id")),
    responses((status = 204, description = "Deleted"), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    let webhook = visible_webhook(&state, &caller, &id).await?;
    if !state
        .store()
        .delete_webhook(webhook.id, &caller.audit(&state))
        .await?
    {
        return Err(ApiError::NotFound(format!("webhook {}", webhook.id)));
    }
    Ok(StatusCode::NO_CONTENT)
}

/// A delivery as the API shows it: the payload as the JSON it is, with the
/// `webhook-id` it is sent under.
#[derive(Debug, Serialize)]
pub struct DeliveryView {
    id: String,
    #[serde(flatten)]
    delivery: WebhookDelivery,
}

impl From<WebhookDelivery> for DeliveryView {
    fn from(delivery: WebhookDelivery) -> Self {
        Self {
            id: webhooks::message_id(delivery.seq),
            delivery,
        }
    }
}

#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    operation_id = "webhooks_deliveries",
    tag = "webhooks",
    summary = "List a webhook's deliveries",
    params(("id" = String, Path, format = Uuid, description = "The webhook id"), ("limit" = Option<u32>, Query, minimum = 1, maximum = 200, description = "Page size, 1–200, default 50"), ("cursor" = Option<String>, Query, description = "The `next_cursor` of the previous page")),
    responses((status = 200, description = "A page of deliveries", body = latchkey_wire::Page<crate::http::openapi::DeliverySchema>), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn deliveries(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let webhook = visible_webhook(&state, &caller, &id).await?;
    let page = state
        .store()
        .webhook_deliveries(webhook.id, &query.into())
        .await?;
    let mut body = serde_json::to_value(page_body::<_, DeliveryView>(page))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    // The payload is stored as the exact text sent; shown as JSON, not a string in one.
    if let Some(items) = body.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            let parsed = item
                .get("payload")
                .and_then(Value::as_str)
                .and_then(|text| serde_json::from_str::<Value>(text).ok());
            if let (Some(parsed), Some(slot)) = (parsed, item.get_mut("payload")) {
                *slot = parsed;
            }
        }
    }
    Ok(Json(body))
}

/// The answer to a ping or a redelivery: the delivery queued, by its `webhook-id`.
#[derive(Debug, Serialize)]
pub struct Queued {
    id: String,
}

/// Queues a `webhook.ping` for the webhook alone; a disabled webhook is enabled again.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/ping",
    operation_id = "webhooks_ping",
    tag = "webhooks",
    summary = "Send a test event",
    params(("id" = String, Path, format = Uuid, description = "The webhook id")),
    responses((status = 202, description = "Queued", body = crate::http::openapi::QueuedSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn ping(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    let webhook = visible_webhook(&state, &caller, &id).await?;
    let seq = state
        .store()
        .ping_webhook(webhook.id, &caller.audit(&state))
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("webhook {}", webhook.id)))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Queued {
            id: webhooks::message_id(seq),
        }),
    ))
}

/// Queues a delivery again, due now; a disabled webhook is enabled again.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/deliveries/{delivery}/redeliver",
    operation_id = "webhooks_redeliver",
    tag = "webhooks",
    summary = "Queue a delivery again",
    params(("id" = String, Path, format = Uuid, description = "The webhook id"), ("delivery" = String, Path, description = "The delivery id (`evt_…`)")),
    responses((status = 202, description = "Queued", body = crate::http::openapi::QueuedSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"))
)]
pub async fn redeliver(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, delivery)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<Queued>)> {
    let webhook = visible_webhook(&state, &caller, &id).await?;
    let seq = delivery
        .strip_prefix("evt_")
        .and_then(|digits| digits.parse::<i64>().ok())
        .filter(|seq| *seq > 0)
        .ok_or_else(|| ApiError::field("delivery_id", "must be a delivery id such as evt_42"))?;
    if !state
        .store()
        .redeliver_webhook(webhook.id, seq, &caller.audit(&state))
        .await?
    {
        return Err(ApiError::NotFound(format!("delivery {delivery}")));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(Queued {
            id: webhooks::message_id(seq),
        }),
    ))
}

/// The longest the previous secret may keep signing after a rotation.
const MAX_OVERLAP_SECONDS: i64 = 7 * 86_400;
/// How long it does when the request does not say.
const DEFAULT_OVERLAP_SECONDS: i64 = 86_400;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    #[serde(default)]
    overlap_seconds: Option<i64>,
}

/// Replaces the secret and shows the new one, once. Until `overlap_seconds` have passed
/// each delivery carries a signature with the old secret too, so receivers can switch
/// at their own pace.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/rotate-secret",
    operation_id = "webhooks_rotate_secret",
    tag = "webhooks",
    summary = "Replace a webhook's secret",
    params(("id" = String, Path, format = Uuid, description = "The webhook id")),
    request_body = crate::http::openapi::RotateSecretSchema,
    responses((status = 200, description = "The webhook and its new secret, shown once", body = crate::http::openapi::CreatedWebhookSchema), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "No valid credential"), (status = 403, description = "The credential may not do this"), (status = 404, description = "No such resource, or not visible to the caller"), (status = 422, description = "A value is out of range, unknown or breaks a rule"))
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RotateSecret>,
) -> ApiResult<Json<CreatedWebhook>> {
    let webhook = visible_webhook(&state, &caller, &id).await?;
    let overlap = body.overlap_seconds.unwrap_or(DEFAULT_OVERLAP_SECONDS);
    if !(0..=MAX_OVERLAP_SECONDS).contains(&overlap) {
        return Err(ApiError::value(
            "overlap_seconds",
            format!("must be from 0 to {MAX_OVERLAP_SECONDS}"),
        ));
    }
    let (secret, bytes) = webhooks::generate_secret(&state)?;
    let sealed = webhooks::seal_secret(&state, webhook.id, &bytes)?;
    let ctx = caller.audit(&state);
    let rotated = state
        .store()
        .rotate_webhook_secret(webhook.id, &sealed, ctx.at.plus_seconds(overlap), &ctx)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("webhook {}", webhook.id)))?;
    Ok(Json(CreatedWebhook {
        webhook: rotated,
        secret,
    }))
}
