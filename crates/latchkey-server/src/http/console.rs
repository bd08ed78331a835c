//! The console (docs/CONSOLE.md): server-rendered pages at `/console/` where a tenant's
//! users manage their own tokens, and its managers the tenant's tokens, members, policy
//! and audit trail.
//!
//! Stack: HTML rendered with maud, whose templates are Rust checked at compile time and
//! escape every interpolated value by default; one stylesheet and one small script,
//! embedded in the binary, for the copy button. No JavaScript toolchain.
//!
//! Policy: every action goes through the management API's own handlers with a
//! [`Caller`](crate::http::auth::Caller) made from the session, so the same rules and
//! audit apply; the console adds only what a session may reach (its tenant; a plain
//! member, only their own personal tokens). Every response carries a strict
//! Content-Security-Policy, `Cache-Control: no-store` and `Referrer-Policy: no-referrer`;
//! every state-changing form carries the session's CSRF token.

mod entry;
pub(crate) mod pages;
pub(crate) mod session;
mod tenant;
mod tokens;
mod usage;

use crate::http::problem::ApiError;
use crate::service::state::AppState;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

/// The console's routes, under `/console`.
pub fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/console", get(entry::home))
        .route("/console/", get(entry::home))
        .route("/console/session/{code}", get(entry::open))
        .route("/console/login", get(entry::login_page).post(entry::login))
        .route("/console/logout", post(entry::logout))
        .route("/console/assets/console.css", get(entry::stylesheet))
        .route("/console/assets/console.js", get(entry::script))
        .route("/console/t/{tid}/tokens", get(tokens::personal))
        .route("/console/t/{tid}/tenant-tokens", get(tokens::tenant))
        .route(
            "/console/t/{tid}/tokens/new",
            get(tokens::new_form).post(tokens::create),
        )
        .route("/console/t/{tid}/reveal/{id}", get(tokens::reveal))
        .route("/console/t/{tid}/token/{id}", get(tokens::show))
        .route("/console/t/{tid}/token/{id}/rename", post(tokens::rename))
        .route(
            "/console/t/{tid}/token/{id}/revoke",
            get(tokens::revoke_confirm).post(tokens::revoke),
        )
        .route(
            "/console/t/{tid}/token/{id}/roll",
            get(tokens::roll_confirm).post(tokens::roll),
        )
        .route("/console/t/{tid}/members", get(tenant::members))
        .route(
            "/console/t/{tid}/policy",
            get(tenant::policy).post(tenant::put_policy),
        )
        .route("/console/t/{tid}/audit", get(tenant::audit))
        // Anything else under /console is a console page that does not exist.
        .route("/console/{*rest}", get(not_found).post(not_found))
        .layer(middleware::from_fn_with_state(state.clone(), headers))
}

/// The security headers of every console response.
async fn headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let ancestors = &state.settings().console_frame_ancestors;
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
    );
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    // X-Frame-Options for browsers that predate frame-ancestors: it can only say
    // "nobody" or "this origin", so a list of other sources leaves it out.
    match ancestors.as_str() {
        "'none'" => {
            headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        }
        "'self'" => {
            headers.insert(
                header::X_FRAME_OPTIONS,
                HeaderValue::from_static("SAMEORIGIN"),
            );
        }
        _ => {}
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    response
}

async fn not_found() -> ConsoleError {
    ConsoleError::NotFound
}

/// Why a console request failed, as a page.
#[derive(Debug)]
pub enum ConsoleError {
    /// No live session: none sent, expired, ended, or its user left the tenant.
    NoSession,
    /// A form without this session's CSRF token, or sent from another site.
    Csrf,
    /// A form body that is not a form.
    BadForm,
    /// Nothing here this session may see.
    NotFound,
    /// The management API refused; shown with its reason.
    Api(ApiError),
}

impl From<ApiError> for ConsoleError {
    fn from(error: ApiError) -> Self {
        match error {
            ApiError::NotFound(_) => Self::NotFound,
            other => Self::Api(other),
        }
    }
}

impl From<crate::service::error::Error> for ConsoleError {
    fn from(error: crate::service::error::Error) -> Self {
        Self::from(ApiError::from(error))
    }
}

impl From<latchkey_core::store::StoreError> for ConsoleError {
    fn from(error: latchkey_core::store::StoreError) -> Self {
        Self::from(ApiError::from(error))
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, text) = match &self {
            Self::NoSession => (
                StatusCode::UNAUTHORIZED,
                "Your session has ended",
                "Console sessions last at most an hour and end when you sign out or lose \
                 access. Go back to the application that sent you here to open a new one."
                    .to_owned(),
            ),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "This form cannot be accepted",
                "It did not come from this console session. Nothing was changed. Reload \
                 the page and try again."
                    .to_owned(),
            ),
            Self::BadForm => (
                StatusCode::BAD_REQUEST,
                "This form cannot be read",
                "Nothing was changed.".to_owned(),
            ),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                "Not found",
                "There is nothing here you can see.".to_owned(),
            ),
            Self::Api(error) => {
                let status = error.status();
                if status.is_server_error() {
                    // The cause goes to the log; the page says only that it was our fault.
                    tracing::error!(?error, "console request failed");
                    (
                        status,
                        "Something went wrong",
                        "The server could not do this. Nothing was changed; try again later."
                            .to_owned(),
                    )
                } else {
                    (status, "This cannot be done", error.to_string())
                }
            }
        };
        (status, pages::message(title, &text)).into_response()
    }
}
