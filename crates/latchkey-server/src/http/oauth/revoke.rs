//! `POST /oauth/revoke` (RFC 7009). The client authenticates and may revoke what was
//! issued to it: a refresh token (its whole family) or an access token (by `jti`).
//! Anything else, an unknown token included, answers 200 and changes nothing.

use super::client::OAuthRequest;
use super::error::OAuthResult;
use crate::service::credentials::client_context;
use crate::service::issuer::reload_deny_list;
use crate::service::jwt;
use crate::service::state::AppState;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use latchkey_core::Timestamp;
use latchkey_core::secret::SecretType;

#[utoipa::path(
    post,
    path = "/oauth/revoke",
    operation_id = "oauth_revoke",
    tag = "oauth",
    summary = "Revoke an access or refresh token (RFC 7009)",
    request_body(content = crate::http::openapi::RevokeRequestSchema, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, description = "Revoked, or unknown"), (status = 400, description = "invalid_request"), (status = 401, description = "invalid_client"), (status = 405, description = "Only POST"), (status = 429, description = "Too many failed authentications"))
)]
pub async fn revoke(State(state): State<AppState>, request: Request) -> Response {
    match run(&state, request).await {
        Ok(()) => {
            let mut response = StatusCode::OK.into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn run(state: &AppState, request: Request) -> OAuthResult<()> {
    let request = OAuthRequest::read(state, request).await?;
    let client = request.authenticate(state).await?;
    let client_token = &client.record.token;
    let presented = request.form.require("token")?;
    let ctx = client_context(state, &request.meta, client_token);
    if let Ok(parsed) = state.codec().parse(presented) {
        if let (SecretType::RefreshToken, Some(id)) = (parsed.kind, parsed.id)
            && let Some((record, family)) = state.store().get_refresh(id).await?
            && family.token_id == client_token.id
            && state.codec().verify(&parsed, &record.secret)
        {
            state.store().revoke_refresh_family(family.id, &ctx).await?;
            reload_deny_list(state).await;
        }
        return Ok(());
    }
    let keys = state.keyring().keys();
    let issuer = &state.settings().public_url;
    if let Ok(claims) = jwt::verify(&keys, issuer, presented, state.now().unix_seconds())
        && claims.client_id == client_token.id.to_string()
        && let Some(exp) = claims.exp
    {
        state
            .store()
            .revoke_jti(
                &claims.jti,
                client_token.id,
                client_token.owner.tenant_id(),
                Timestamp::from_millis(exp.saturating_mul(1000)),
                &ctx,
            )
            .await?;
        state.keyring().add_revoked_jti(&claims.jti);
        state.revocations().wake();
    }
    Ok(())
}
