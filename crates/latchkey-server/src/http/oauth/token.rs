//! `POST /oauth/token`: `client_credentials` and `refresh_token` grants.
//!
//! A request is read once into an [`OAuthRequest`] (head, form, client address and
//! agent); each grant then reads top to bottom: authenticate the client, work out the
//! scope and audience, issue, record, answer. A request with a `DPoP` proof
//! (docs/API.md, "DPoP") gets a token bound to the proof's key, and a refresh family
//! started so stays bound to it.

use super::client::{Form, OAuthRequest};
use super::error::{OAuthError, OAuthResult};
use crate::service::audit::Exchange;
use crate::service::cache::CachedToken;
use crate::service::credentials::{self, Failure, client_context};
use crate::service::issuer::{self, Issued, reload_deny_list};
use crate::service::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::audit::{AuditAction, AuditEvent};
use latchkey_core::permission::{format_scope, parse_scope};
use latchkey_core::secret::{Secret, SecretType};
use latchkey_core::store::{RefreshFamily, RefreshOutcome};
use latchkey_core::{PermissionSet, TokenId};
use latchkey_verify::dpop::{self, CheckedProof, ProofExpectations};
use latchkey_wire::TokenResponse;
use serde_json::json;

#[utoipa::path(
    post,
    path = "/oauth/token",
    operation_id = "oauth_token",
    tag = "oauth",
    summary = "Issue an access token (RFC 6749)",
    request_body(content = crate::http::openapi::TokenRequestSchema, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "The access token", body = latchkey_wire::TokenResponse), (status = 400, description = "invalid_request, invalid_grant, invalid_scope, invalid_target or unsupported_grant_type"), (status = 401, description = "invalid_client"), (status = 405, description = "Only POST"), (status = 413, description = "The form is too large"), (status = 429, description = "Too many failed authentications"))
)]
pub async fn token(State(state): State<AppState>, request: Request) -> Response {
    match grant(&state, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// Anything but POST.
pub async fn wrong_method() -> OAuthError {
    OAuthError::method_not_allowed()
}

async fn grant(state: &AppState, request: Request) -> OAuthResult<Response> {
    let request = OAuthRequest::read(state, request).await?;
    let (grant_type, answered) = match request.form.require("grant_type")? {
        "client_credentials" => (
            "client_credentials",
            client_credentials(state, &request).await,
        ),
        "refresh_token" => ("refresh_token", refresh(state, &request).await),
        super::jwt_bearer::GRANT_TYPE => (
            "jwt_bearer",
            super::jwt_bearer::grant(state, &request).await,
        ),
        other => (
            "other",
            Err(OAuthError::unsupported_grant_type(
                &other.chars().take(64).collect::<String>(),
            )),
        ),
    };
    // Grants by type and result (docs/OPERATIONS.md, "Metrics").
    let result = answered
        .as_ref()
        .map_or_else(OAuthError::code, |_| "issued");
    state.metrics().grant(grant_type, result);
    answered
}

/// The `scope` parameter, if given: what the client asks to narrow its grant to.
pub(super) fn requested_scope(form: &Form) -> OAuthResult<Option<PermissionSet>> {
    form.get("scope")?
        .map(|text| parse_scope(text).map_err(|e| OAuthError::invalid_scope(format!("scope {e}"))))
        .transpose()
}

/// Narrows `granted` to `requested`, which may not ask for more.
pub(super) fn narrow(
    requested: Option<PermissionSet>,
    granted: &PermissionSet,
) -> OAuthResult<PermissionSet> {
    let Some(requested) = requested else {
        return Ok(granted.clone());
    };
    if let Some(extra) = requested.difference(granted).next() {
        return Err(OAuthError::invalid_scope(format!(
            "scope {extra} is not granted to this client"
        )));
    }
    Ok(requested)
}

/// The `resource` parameter (RFC 8707): one of the configured audiences, or none.
pub(super) fn resource<'f>(state: &AppState, form: &'f Form) -> OAuthResult<Option<&'f str>> {
    match form.get("resource")? {
        None => Ok(None),
        Some(resource) if state.settings().audiences.iter().any(|a| a == resource) => {
            Ok(Some(resource))
        }
        Some(_) => Err(OAuthError::invalid_target(
            "resource is not an audience of this server",
        )),
    }
}

/// The request's `DPoP` proof, checked against this endpoint and remembered so that it
/// is never accepted twice by any replica; `None` without one. Called once the client
/// has authenticated, so only a genuine client's proofs take room in the store. A bad
/// proof is audited as `auth.failed` with reason `invalid_dpop_proof`.
pub(super) async fn dpop_proof(
    state: &AppState,
    request: &OAuthRequest,
    client: &CachedToken,
) -> OAuthResult<Option<CheckedProof>> {
    let values = request
        .parts
        .headers
        .get_all("dpop")
        .iter()
        .map(|value| value.to_str().ok());
    let checked = match dpop::proof_header(values) {
        Ok(None) if client.require_dpop => Err(dpop::ProofError::Missing),
        Ok(None) => return Ok(None),
        Ok(Some(proof)) => {
            let uri = format!("{}/oauth/token", state.settings().public_url);
            let now = state.now();
            let expect = ProofExpectations {
                method: "POST",
                uri: &uri,
                access_token: None,
                now,
                window_seconds: credentials::DPOP_WINDOW_SECONDS,
            };
            match dpop::check_proof(proof, &expect) {
                Ok(checked) => {
                    if credentials::first_use_of_proof(state, &checked).await? {
                        Ok(checked)
                    } else {
                        Err(dpop::ProofError::Replayed)
                    }
                }
                Err(error) => Err(error),
            }
        }
        Err(error) => Err(error),
    };
    match checked {
        Ok(checked) => Ok(Some(checked)),
        Err(error) => {
            let token = &client.record.token;
            let failure = Failure {
                client_id: &token.id.to_string(),
                tenant: Some(token.owner.tenant_id().as_str()),
                reason: "invalid_dpop_proof",
            };
            credentials::record_failure(state, &request.meta, request.endpoint(), failure).await;
            Err(OAuthError::invalid_dpop_proof(error.to_string()))
        }
    }
}

/// The answer (RFC 6749 §5.1), serialised once into a buffer sized for the JWT.
pub(super) fn respond(
    access_token: String,
    expires_in: i64,
    scope: &PermissionSet,
    refresh: Option<Secret>,
    bound: bool,
) -> Response {
    let mut bytes = Vec::with_capacity(access_token.len() + 256);
    let body = TokenResponse {
        access_token,
        token_type: if bound { "DPoP" } else { "Bearer" }.to_owned(),
        expires_in,
        scope: format_scope(scope),
        refresh_token: refresh.map(|secret| secret.expose().to_owned()),
    };
    if let Err(error) = serde_json::to_writer(&mut bytes, &body) {
        return OAuthError::internal(error).into_response();
    }
    let mut response = bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

async fn client_credentials(state: &AppState, request: &OAuthRequest) -> OAuthResult<Response> {
    let client = request.authenticate(state).await?;
    let token = &client.record.token;
    let requested = requested_scope(&request.form)?;
    let asked = requested.is_some();
    let mut scope = narrow(requested, &client.effective)?;
    let resource = resource(state, &request.form)?;
    let proof = dpop_proof(state, request, &client).await?;
    let jkt = proof.map(|proof| proof.jkt);
    let issued = issuer::issue_bound(state, token, &scope, resource, jkt.as_deref())?;
    let refresh = if token.refresh_tokens {
        let now = state.now();
        let family = RefreshFamily {
            id: TokenId::generate(state.rng()).map_err(OAuthError::internal)?,
            token_id: token.id,
            created_at: now,
            expires_at: now.plus_seconds(state.settings().refresh_token_lifetime_seconds),
            revoked_at: None,
            // Lent to the family while it is stored, then taken back: no copy.
            scope: std::mem::take(&mut scope),
            // Empty: no `resource` was asked for (docs/API.md, "Audiences").
            audience: resource.unwrap_or_default().to_owned(),
            dpop_jkt: jkt.clone(),
        };
        let (secret, first) = issuer::new_refresh(state, family.id, &issued)?;
        let ctx = client_context(state, &request.meta, token);
        state
            .store()
            .start_refresh_family(&family, &first, state.settings().max_refresh_families, &ctx)
            .await?;
        scope = family.scope;
        Some((secret, family.id))
    } else {
        None
    };
    let (secret, refresh_family) = refresh.unzip();
    let Issued {
        jwt,
        jti,
        expires_at,
        expires_in,
    } = issued;
    let response = respond(jwt, expires_in, &scope, secret, jkt.is_some());
    let exchange = Exchange {
        ip: request.meta.ip,
        user_agent: request.meta.user_agent.clone(),
        scope: asked.then(|| format_scope(&scope)),
        client,
        audience: resource
            .unwrap_or(&state.settings().default_audience)
            .to_owned(),
        jti,
        // The access token's `iat`.
        issued_at: expires_at.plus_seconds(-expires_in),
        expires_in,
        refresh_family,
    };
    state.audit().exchanged(exchange).await;
    Ok(response)
}

async fn refresh(state: &AppState, request: &OAuthRequest) -> OAuthResult<Response> {
    let client = request.authenticate(state).await?;
    let token = &client.record.token;
    let invalid = || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
    let presented = request.form.require("refresh_token")?;
    let parsed = state.codec().parse(presented).map_err(|_| invalid())?;
    let (SecretType::RefreshToken, Some(id)) = (parsed.kind, parsed.id) else {
        return Err(invalid());
    };
    let (record, family) = state.store().get_refresh(id).await?.ok_or_else(invalid)?;
    let genuine = state.codec().verify(&parsed, &record.secret) && family.token_id == token.id;
    if !genuine || family.revoked_at.is_some() || family.expires_at <= state.now() {
        let failure = Failure {
            client_id: &token.id.to_string(),
            tenant: Some(token.owner.tenant_id().as_str()),
            reason: "invalid_refresh_token",
        };
        credentials::record_failure(state, &request.meta, request.endpoint(), failure).await;
        return Err(invalid());
    }
    let proof = dpop_proof(state, request, &client).await?;
    let jkt = proof.map(|proof| proof.jkt);
    // A family started with a proof is bound to its key (RFC 9449 §5): a refresh
    // without a proof, or with another key's, is refused before the token is used up.
    if let Some(bound) = &family.dpop_jkt
        && jkt.as_ref() != Some(bound)
    {
        let failure = Failure {
            client_id: &token.id.to_string(),
            tenant: Some(token.owner.tenant_id().as_str()),
            reason: "invalid_dpop_proof",
        };
        credentials::record_failure(state, &request.meta, request.endpoint(), failure).await;
        return Err(OAuthError::invalid_dpop_proof(
            "this refresh token is bound to a DPoP key; send a proof made with it",
        ));
    }
    let ctx = client_context(state, &request.meta, token);
    if record.used_at.is_some() {
        // Reuse of a rotated token: somebody else holds a copy. End the whole family.
        state.store().revoke_refresh_family(family.id, &ctx).await?;
        reload_deny_list(state).await;
        return Err(OAuthError::invalid_grant(
            "the refresh token was already used; its family is revoked",
        ));
    }
    let still_granted: PermissionSet = family
        .scope
        .intersection(&client.effective)
        .cloned()
        .collect();
    let scope = narrow(requested_scope(&request.form)?, &still_granted)?;
    // Families started before the empty value meant "no resource" hold the default
    // audience itself.
    let resource = Some(family.audience.as_str())
        .filter(|a| !a.is_empty() && *a != state.settings().default_audience);
    let issued = issuer::issue_bound(state, token, &scope, resource, jkt.as_deref())?;
    let (secret, next) = issuer::new_refresh(state, family.id, &issued)?;
    match state.store().rotate_refresh(record.id, &next, &ctx).await? {
        RefreshOutcome::Rotated => {
            let event = AuditEvent::new(
                AuditAction::TokenRefreshed,
                Some(token.owner.tenant_id().as_str()),
                Some(token.id.to_string()),
            )
            .with_details(json!({
                "refresh_family": family.id,
                "scope": format_scope(&scope),
                "jti": issued.jti,
                "expires_at": issued.expires_at,
            }));
            state.audit().record(ctx, event).await;
            Ok(respond(
                issued.jwt,
                issued.expires_in,
                &scope,
                Some(secret),
                jkt.is_some(),
            ))
        }
        RefreshOutcome::Reused => {
            reload_deny_list(state).await;
            Err(OAuthError::invalid_grant(
                "the refresh token was already used; its family is revoked",
            ))
        }
    }
}
