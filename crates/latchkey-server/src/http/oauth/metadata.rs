//! RFC 8414 authorization-server metadata and the JWKS.

use crate::service::state::AppState;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// How clients authenticate at the token and revocation endpoints.
const CLIENT_AUTH_METHODS: [&str; 3] = [
    "client_secret_basic",
    "client_secret_post",
    "private_key_jwt",
];

/// `GET /.well-known/oauth-authorization-server`.
#[utoipa::path(
    get,
    path = "/.well-known/oauth-authorization-server",
    operation_id = "oauth_metadata",
    tag = "oauth",
    summary = "Authorization-server metadata (RFC 8414)",
    responses((status = 200, description = "The metadata", body = crate::http::openapi::MetadataSchema))
)]
pub async fn metadata(State(state): State<AppState>) -> Response {
    let issuer = &state.settings().public_url;
    let algorithms = state.keyring().keys().algorithms();
    // What a `private_key_jwt` client may sign with: asymmetric algorithms only.
    let assertion_algorithms = latchkey_verify::assertion::ALGORITHMS.map(|alg| alg.as_str());
    let body = json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "grant_types_supported": [
            "client_credentials",
            "refresh_token",
            super::jwt_bearer::GRANT_TYPE,
        ],
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": assertion_algorithms,
        "revocation_endpoint_auth_methods_supported": CLIENT_AUTH_METHODS,
        "revocation_endpoint_auth_signing_alg_values_supported": assertion_algorithms,
        "introspection_endpoint_auth_methods_supported": ["bearer"],
        "access_token_signing_alg_values_supported": algorithms,
        "dpop_signing_alg_values_supported": latchkey_verify::dpop::ALGORITHMS
            .map(|alg| alg.as_str()),
    });
    cacheable(body.to_string(), "application/json")
}

/// `GET /.well-known/jwks.json`: the next, current and previous public keys.
#[utoipa::path(
    get,
    path = "/.well-known/jwks.json",
    operation_id = "oauth_jwks",
    tag = "oauth",
    summary = "The public signing keys",
    responses((status = 200, description = "The key set", body = crate::http::openapi::JwksSchema))
)]
pub async fn jwks(State(state): State<AppState>) -> Response {
    cacheable(state.keyring().keys().jwks().to_owned(), "application/json")
}

fn cacheable(body: String, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Verifiers refetch on an unknown kid, and the next key is published a rotation
    // ahead, so a short public cache lifetime is safe.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    response
}
