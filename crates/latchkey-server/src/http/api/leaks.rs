//! Leak reports (docs/API.md, "Leak reports"): `POST /v1/leaks`, open to anyone and
//! limited per address, and `POST /v1/leaks/github`, a scanning partner's signed batch.
//! The rules live in `service::leaks`.

use crate::http::extract::{AnyJson, parse_json};
use crate::http::problem::{ApiError, ApiResult};
use crate::service::client::ClientMeta;
use crate::service::leaks::{self, Verdict};
use crate::service::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use latchkey_core::audit::AuditContext;
use latchkey_core::store::LeakReport;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The largest batch a scanning partner may send.
pub const PARTNER_BODY_LIMIT: usize = 1024 * 1024;

/// The header naming the key a partner's report is signed with.
const KEY_ID_HEADER: &str = "github-public-key-identifier";
/// The header carrying the base64 signature of the raw body.
const SIGNATURE_HEADER: &str = "github-public-key-signature";

/// The audit actor of an anonymous report.
const ANONYMOUS_REPORTER: &str = "leak_report";
/// The audit actor of a scanning partner's report.
const PARTNER_REPORTER: &str = "secret_scanning";

/// `POST /v1/leaks`: `{"secret": "...", "url": "..."}`. Every JSON body gets the same
/// 202 `{}`, whether the secret was ours, revoked already, or anything else, so the
/// answer tells a reporter nothing. A body that is not JSON is 400, and nothing is
/// looked at.
#[utoipa::path(
    post,
    path = "/v1/leaks",
    operation_id = "leaks_report",
    tag = "leaks",
    summary = "Report a leaked secret",
    request_body = crate::http::openapi::LeakReportSchema,
    responses((status = 202, description = "Always the same answer", body = Object), (status = 400, description = "Malformed body, path or query"), (status = 429, description = "Too many reports from this address"))
)]
pub async fn report(
    State(state): State<AppState>,
    meta: ClientMeta,
    request: Request,
) -> ApiResult<Response> {
    // Counted before the body is read: a limited address costs no parsing.
    if let Some(wait) = state.leaks().limit.take(meta.ip) {
        return Err(ApiError::TooManyRequests(wait));
    }
    let AnyJson(body) = AnyJson::<Value>::from_request(request, &state).await?;
    if let Some(secret) = body.get("secret").and_then(Value::as_str) {
        let report = LeakReport {
            url: body.get("url").and_then(Value::as_str).map(str::to_owned),
            ..LeakReport::default()
        };
        let ctx = reporter(&state, &meta, ANONYMOUS_REPORTER);
        leaks::report(&state, secret, report, &ctx).await?;
    }
    Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response())
}

/// One entry of a scanning partner's batch. Members the partner may add later are
/// ignored.
#[derive(Debug, Deserialize)]
struct PartnerReport {
    token: String,
    #[serde(default, rename = "type")]
    token_type: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    source: Option<String>,
}

/// The answer for one entry.
#[derive(Debug, Serialize)]
struct PartnerVerdict {
    token_raw: String,
    token_type: Option<String>,
    label: &'static str,
}

/// `POST /v1/leaks/github`: a batch `[{"token","type","url","source"}]` signed with a key
/// of `leak_report_public_keys_file`. The signature is checked over the raw body before
/// anything is parsed; a missing, unknown-key or bad signature is 401 and nothing is
/// revoked. Each entry is labelled `true_positive` when it is a credential this server
/// issued (revoked now, or already), else `false_positive`.
#[utoipa::path(
    post,
    path = "/v1/leaks/github",
    operation_id = "leaks_github",
    tag = "leaks",
    summary = "Secret-scanning partner reports (signed)",
    params(("Github-Public-Key-Identifier" = String, Header, description = "The signing key"), ("Github-Public-Key-Signature" = String, Header, description = "Base64 ECDSA P-256 signature of the body")),
    request_body = Vec<crate::http::openapi::PartnerReportSchema>,
    responses((status = 200, description = "One verdict per finding", body = Vec<crate::http::openapi::PartnerVerdictSchema>), (status = 400, description = "Malformed body, path or query"), (status = 401, description = "Bad or missing signature"), (status = 404, description = "Partner reports are not configured"))
)]
pub async fn github(
    State(state): State<AppState>,
    meta: ClientMeta,
    headers: HeaderMap,
    request: Request,
) -> ApiResult<Response> {
    if !state.leaks().takes_partner_reports() {
        return Err(ApiError::NotConfigured(
            "scanning-partner reports are off: the server has no leak_report_public_keys_file \
             or leak_report_public_keys_url"
                .to_owned(),
        ));
    }
    let body = Bytes::from_request(request, &state)
        .await
        .map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(PARTNER_BODY_LIMIT)
            } else {
                ApiError::InvalidBody(rejection.body_text())
            }
        })?;
    let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
    state
        .leaks()
        .verify_partner(header(KEY_ID_HEADER), header(SIGNATURE_HEADER), &body)
        .map_err(|refused| ApiError::InvalidSignature(refused.to_string()))?;
    let batch: Vec<PartnerReport> = parse_json(&body)?;
    let ctx = reporter(&state, &meta, PARTNER_REPORTER);
    let mut verdicts = Vec::with_capacity(batch.len());
    for entry in batch {
        let report = LeakReport {
            url: entry.url,
            source: entry.source,
            secret_type: entry.token_type.clone(),
        };
        let verdict = leaks::report(&state, &entry.token, report, &ctx).await?;
        verdicts.push(PartnerVerdict {
            token_raw: entry.token,
            token_type: entry.token_type,
            label: label(verdict),
        });
    }
    Ok((StatusCode::OK, Json(verdicts)).into_response())
}

fn label(verdict: Verdict) -> &'static str {
    if verdict.is_ours() {
        "true_positive"
    } else {
        "false_positive"
    }
}

/// The audit context of a reporter: no credential, so a fixed actor, with its address
/// and agent.
fn reporter(state: &AppState, meta: &ClientMeta, actor: &str) -> AuditContext {
    AuditContext {
        actor: actor.to_owned(),
        actor_user: None,
        ip: meta.ip.map(|ip| ip.to_string()),
        user_agent: meta.agent(),
        at: state.now(),
    }
}
