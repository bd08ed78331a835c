//! The HTTP layer: the router, the extractors, the two error formats (RFC 9457 problems
//! on the management API, RFC 6749 error objects on `/oauth`) and every handler. A
//! handler extracts its input, calls the service layer (`crate::service`) and maps the
//! result; the rules themselves live there.
//!
//! Management handlers are in `api/`, one module per resource; the authorization
//! server's in `oauth/`; the audit trail's and the revocation feed's in `audit` and
//! `revocation`. This module assembles the router and holds what they share.

mod api;
pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod extract;
pub(crate) mod listener;
pub(crate) mod oauth;
pub(crate) mod outbound;
pub(crate) mod problem;
pub(crate) mod revocation;

use crate::http::extract::{BODY_LIMIT, Cursor, ListQuery, USAGE_BODY_LIMIT};
use crate::http::listener::ClientCertificate;
use crate::http::oauth::error::OAuthError;
use crate::http::problem::{ApiError, ApiResult};
use crate::service::state::AppState;
use api::{
    catalogue, health, keys, leaks, members, policy, tenants, tokens, trusts, usage, webhooks,
};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use latchkey_core::ids::FieldError;
use latchkey_core::store::{Page, PageRequest};
use tower_http::set_header::SetResponseHeaderLayer;

/// The whole HTTP application.
pub fn router(state: AppState) -> Router {
    let followers = || middleware::from_fn_with_state(state.clone(), require_client_certificate);
    let management = Router::new()
        .route("/v1/tenants", get(tenants::list).post(tenants::create))
        .route(
            "/v1/tenants/{tid}",
            get(tenants::show).delete(tenants::delete),
        )
        .route(
            "/v1/tenants/{tid}/policy",
            get(policy::show).put(policy::put),
        )
        .route("/v1/permissions", get(catalogue::list_permissions))
        .route("/v1/permissions/{name}", put(catalogue::put_permission))
        .route("/v1/roles", get(catalogue::list_roles))
        .route("/v1/roles/{name}", put(catalogue::put_role))
        .route("/v1/tenants/{tid}/users", get(members::list))
        .route(
            "/v1/tenants/{tid}/users/{uid}",
            put(members::put).delete(members::remove),
        )
        .route(
            "/v1/users/{uid}",
            axum::routing::delete(members::delete_user),
        )
        .route(
            "/v1/tenants/{tid}/tokens",
            get(tokens::list_tenant).post(tokens::create_tenant),
        )
        .route(
            "/v1/tenants/{tid}/users/{uid}/tokens",
            get(tokens::list_personal).post(tokens::create_personal),
        )
        .route(
            "/v1/tokens/{id}",
            get(tokens::show)
                .patch(tokens::rename)
                .delete(tokens::revoke),
        )
        .route("/v1/tokens/{id}/roll", post(tokens::roll))
        .route(
            "/v1/tenants/{tid}/trusts",
            get(trusts::list).post(trusts::create),
        )
        .route(
            "/v1/trusts/{id}",
            get(trusts::show)
                .patch(trusts::rename)
                .delete(trusts::revoke),
        )
        .route("/v1/keys/rotate", post(keys::rotate))
        // A gateway's batch outgrows the 64 KiB of every other body (docs/API.md).
        .route(
            "/v1/usage",
            post(usage::ingest)
                .layer(DefaultBodyLimit::max(USAGE_BODY_LIMIT))
                .route_layer(followers()),
        )
        .route("/v1/tokens/{id}/usage", get(usage::token_usage))
        // Leak reports (docs/API.md, "Leak reports"); a partner's batch may reach 1 MiB.
        .route("/v1/leaks", post(leaks::report))
        .route(
            "/v1/leaks/github",
            post(leaks::github).layer(DefaultBodyLimit::max(leaks::PARTNER_BODY_LIMIT)),
        )
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::show).delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/webhooks/{id}/ping", post(webhooks::ping))
        .route(
            "/v1/webhooks/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route(
            "/v1/webhooks/{id}/deliveries/{delivery}/redeliver",
            post(webhooks::redeliver),
        )
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/head", get(audit::head))
        .route("/v1/audit/chain", get(audit::chain))
        .route("/v1/audit/verify", get(audit::verify))
        .route(
            "/v1/revocations",
            get(revocation::page).route_layer(followers()),
        )
        .route(
            "/v1/revocations/stream",
            get(revocation::follow).route_layer(followers()),
        )
        .route(
            "/v1/revocations/ack",
            post(revocation::ack).route_layer(followers()),
        )
        .fallback(not_found)
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    let oauth = Router::new()
        .route(
            "/oauth/token",
            post(oauth::token::token).fallback(oauth::token::wrong_method),
        )
        .route(
            "/oauth/introspect",
            post(oauth::introspect::introspect)
                .route_layer(followers())
                .fallback(oauth::token::wrong_method),
        )
        .route(
            "/oauth/revoke",
            post(oauth::revoke::revoke).fallback(oauth::token::wrong_method),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata::metadata),
        )
        .route("/.well-known/jwks.json", get(oauth::metadata::jwks));
    Router::new()
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .merge(oauth)
        .merge(management)
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// With mutual TLS (`tls_client_ca_file`), the endpoints only followers use — the
/// revocation feed, introspection and usage ingest — need a client certificate from
/// that CA beside their credential (docs/API.md, "Mutual TLS"). The refusal comes in
/// the endpoint's error format.
async fn require_client_certificate(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .extensions()
        .get::<ClientCertificate>()
        .is_some_and(|certificate| certificate.0);
    if presented || !state.settings().mutual_tls {
        return next.run(request).await;
    }
    if request.uri().path().starts_with("/oauth/") {
        OAuthError::client_certificate_required().into_response()
    } else {
        ApiError::ClientCertificateRequired.into_response()
    }
}

async fn not_found() -> ApiError {
    ApiError::NotFound("resource".to_owned())
}

/// A list response (`latchkey_wire::Page`): the store's page with its items as the
/// wire shows them, and the key of the last one as an opaque cursor.
pub fn page_body<T, U: From<T>>(page: Page<T>) -> latchkey_wire::Page<U> {
    latchkey_wire::Page {
        items: page.items.into_iter().map(U::from).collect(),
        next_cursor: page.next.as_deref().map(Cursor::encode),
    }
}

impl From<ListQuery> for PageRequest {
    fn from(query: ListQuery) -> Self {
        Self {
            limit: query.limit.0,
            after: query.cursor.map(|cursor| cursor.0),
        }
    }
}

/// Parses a path segment, naming it on failure.
pub fn path_param<T>(
    field: &str,
    text: &str,
    parse: fn(&str) -> Result<T, FieldError>,
) -> ApiResult<T> {
    parse(text).map_err(|error| ApiError::field(field, error))
}
