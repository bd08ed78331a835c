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
pub(crate) mod console;
pub(crate) mod extract;
pub(crate) mod listener;
pub(crate) mod metrics;
pub(crate) mod oauth;
pub(crate) mod observe;
pub(crate) mod openapi;
pub(crate) mod outbound;
pub(crate) mod problem;
pub(crate) mod revocation;

use crate::http::extract::{BODY_LIMIT, Cursor, ListQuery, USAGE_BODY_LIMIT};
use crate::http::listener::ClientCertificate;
use crate::http::oauth::error::OAuthError;
use crate::http::problem::{ApiError, ApiResult};
use crate::service::state::AppState;
use api::{
    catalogue, console_sessions, health, keys, leaks, members, policy, tenants, tokens, trusts,
    usage, webhooks,
};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use latchkey_core::ids::FieldError;
use latchkey_core::store::{Page, PageRequest};
use tower_http::set_header::SetResponseHeaderLayer;
use utoipa::OpenApi;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

/// The whole HTTP application, and its OpenAPI document at `/openapi.json`.
///
/// Every route is registered with `routes!`, which reads the method and path from the
/// handler's `#[utoipa::path]` (docs/API.md, "OpenAPI"): a route cannot exist without
/// its entry in the document. The API tests fail, naming it, for a route added any
/// other way.
pub fn router(state: AppState) -> Router {
    let (router, document) = routes(&state).split_for_parts();
    let spec = openapi::Spec::new(document);
    // The console's pages are HTML for browsers, not part of the API or its document
    // (docs/CONSOLE.md).
    router
        .merge(console::routes(&state))
        .layer(Extension(spec))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            observe::observe,
        ))
        .with_state(state)
}

fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    // Without mutual TLS there is nothing to require: the layer is left out rather than
    // run on every introspection to let the request through.
    let mutual_tls = state.settings().mutual_tls;
    let followers = |route: UtoipaMethodRouter<AppState>| {
        if !mutual_tls {
            return route;
        }
        let layer = middleware::from_fn_with_state(state.clone(), require_client_certificate);
        route.map(|route| route.route_layer(layer))
    };
    let management = OpenApiRouter::new()
        .routes(routes!(tenants::list, tenants::create))
        .routes(routes!(tenants::show, tenants::delete))
        .routes(routes!(policy::show, policy::put))
        .routes(routes!(catalogue::list_permissions))
        .routes(routes!(catalogue::put_permission))
        .routes(routes!(catalogue::list_roles))
        .routes(routes!(catalogue::put_role))
        .routes(routes!(members::list))
        .routes(routes!(members::put, members::remove))
        .routes(routes!(members::delete_user))
        .routes(routes!(tokens::list_tenant, tokens::create_tenant))
        .routes(routes!(tokens::list_personal, tokens::create_personal))
        .routes(routes!(tokens::show, tokens::rename, tokens::revoke))
        .routes(routes!(tokens::roll))
        .routes(routes!(keys::rotate))
        // Trust relationships (docs/API.md, "Trusts").
        .routes(routes!(trusts::list, trusts::create))
        .routes(routes!(trusts::show, trusts::rename, trusts::revoke))
        // A gateway's batch outgrows the 64 KiB of every other body (docs/API.md).
        .routes(followers(routes!(usage::ingest).map(|route| {
            route.layer(DefaultBodyLimit::max(USAGE_BODY_LIMIT))
        })))
        .routes(routes!(usage::token_usage))
        // Leak reports (docs/API.md, "Leak reports"); a partner's batch may reach 1 MiB.
        .routes(routes!(leaks::report))
        .routes(routes!(leaks::github).layer(DefaultBodyLimit::max(leaks::PARTNER_BODY_LIMIT)))
        .routes(routes!(webhooks::list, webhooks::create))
        .routes(routes!(webhooks::show, webhooks::delete))
        .routes(routes!(webhooks::deliveries))
        .routes(routes!(webhooks::ping))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(webhooks::redeliver))
        // The console (docs/CONSOLE.md): its session URLs, and ending a session.
        .routes(routes!(console_sessions::create))
        .routes(routes!(console_sessions::delete))
        .routes(routes!(audit::list))
        .routes(routes!(audit::head))
        .routes(routes!(audit::chain))
        .routes(routes!(audit::verify::verify))
        .routes(followers(routes!(revocation::page)))
        .routes(followers(routes!(revocation::follow)))
        .routes(followers(routes!(revocation::ack)))
        .fallback(not_found)
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    let oauth = OpenApiRouter::new()
        .routes(post_only(routes!(oauth::token::token)))
        .routes(post_only(followers(routes!(oauth::introspect::introspect))))
        .routes(post_only(routes!(oauth::revoke::revoke)))
        .routes(routes!(oauth::metadata::metadata))
        .routes(routes!(oauth::metadata::jwks));
    let mut app = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(health::live))
        .routes(routes!(health::ready))
        .routes(routes!(openapi::document));
    // With metrics off, nothing is counted and `/metrics` is not there (docs/OPERATIONS.md).
    if state.metrics().enabled() {
        app = app.routes(routes!(metrics::scrape));
    }
    app.merge(oauth).merge(management)
}

/// An OAuth endpoint answers any other method with an RFC 6749 error (405).
fn post_only(route: UtoipaMethodRouter<AppState>) -> UtoipaMethodRouter<AppState> {
    route.map(|route| route.fallback(oauth::token::wrong_method))
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
