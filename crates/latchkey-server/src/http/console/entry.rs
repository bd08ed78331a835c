//! Ways into and out of the console: the single-use session URL, the operators' sign-in
//! with an admin key, sign-out, the home page, and the embedded assets.

use super::ConsoleError;
use super::pages::{self, page};
use super::session::{
    COOKIE, Console, LOGIN_COOKIE, cookie, form_fields, refuse_cross_site, set_cookie,
};
use crate::http::extract::client_meta;
use crate::service::console;
use crate::service::credentials;
use crate::service::state::AppState;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_core::Permission;
use latchkey_core::audit::AuditContext;
use maud::html;

/// `GET /console/session/{code}`: opens the session once and redirects at once to the
/// console with the session cookie, so the code leaves the address bar and history.
pub async fn open(State(state): State<AppState>, Path(code): Path<String>) -> Response {
    match console::open_code(&state, &code).await {
        Ok(Some((session, secret))) => {
            let mut response = Redirect::to("/console/").into_response();
            let age = (session.expires_at.millis() - state.now().millis()) / 1000;
            response
                .headers_mut()
                .insert(header::SET_COOKIE, set_cookie(&state, COOKIE, &secret, age));
            response
        }
        Ok(None) => (
            StatusCode::GONE,
            pages::message(
                "This link no longer works",
                "Console links work once and for 5 minutes. This one was used already or \
                 has expired; no session was started. Go back to the application that \
                 sent you here to get a new one.",
            ),
        )
            .into_response(),
        Err(error) => ConsoleError::from(error).into_response(),
    }
}

/// `GET /console/`: a member's own tokens, or an operator's list of tenants.
pub async fn home(
    State(state): State<AppState>,
    console: Console,
) -> Result<Response, ConsoleError> {
    if console.user().is_some() {
        let to = format!("/console/t/{}/tokens", console.session.tenant_id);
        return Ok(Redirect::to(&to).into_response());
    }
    let tenants = state
        .store()
        .list_tenants(&latchkey_core::store::PageRequest {
            limit: 200,
            after: None,
        })
        .await?;
    let system = console.session.tenant_id.clone();
    let body = html! {
        p { "Choose a tenant to manage its tokens, members, policy and audit trail." }
        ul.cards {
            @for tenant in &tenants.items {
                li {
                    a href={ "/console/t/" (tenant.id) "/tenant-tokens" } { (tenant.name) }
                    " " code { (tenant.id) }
                }
            }
        }
    };
    Ok(page("Tenants", Some((&console, &system)), body).into_response())
}

/// `GET /console/login`: the operators' sign-in form, unless `console_login` is off.
pub async fn login_page(State(state): State<AppState>) -> Result<Response, ConsoleError> {
    if !state.settings().console_login {
        return Err(ConsoleError::NotFound);
    }
    let nonce = console::new_login_nonce(&state)?;
    let mut response = login_form(&nonce, None).into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        set_cookie(&state, LOGIN_COOKIE, &nonce, 600),
    );
    Ok(response)
}

fn login_form(nonce: &str, error: Option<&str>) -> axum::response::Html<String> {
    page(
        "Sign in",
        None,
        html! {
            p { "Operators sign in with an admin key. Users of an application reach the \
                 console through a link from that application instead." }
            form method="post" action="/console/login" {
                input type="hidden" name="csrf" value=(console::csrf_token(nonce));
                div.field {
                    label for="key" { "Admin key" }
                    input #key type="password" name="key" autocomplete="off" required
                        aria-describedby=[error.map(|_| "key-error")];
                    @if let Some(error) = error {
                        p.error #key-error role="alert" { (error) }
                    }
                }
                button type="submit" { "Sign in" }
            }
        },
    )
}

/// `POST /console/login`: checks the form's CSRF nonce against its cookie, then the key
/// as the management API would; an admin key starts an operator's session.
pub async fn login(
    State(state): State<AppState>,
    request: Request,
) -> Result<Response, ConsoleError> {
    if !state.settings().console_login {
        return Err(ConsoleError::NotFound);
    }
    let (parts, body) = request.into_parts();
    refuse_cross_site(&parts.headers)?;
    let nonce = cookie(&parts.headers, LOGIN_COOKIE).ok_or(ConsoleError::Csrf)?;
    let meta = client_meta(&parts, &state);
    let request = Request::from_parts(parts, body);
    let fields = form_fields(request, &state).await?;
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .unwrap_or("")
    };
    if !console::csrf_matches(&nonce, field("csrf")) {
        return Err(ConsoleError::Csrf);
    }
    let refused = || {
        (
            StatusCode::UNAUTHORIZED,
            login_form(&nonce, Some("This is not a valid admin key.")),
        )
            .into_response()
    };
    let Ok((cached, granted)) =
        credentials::authenticate_bearer(&state, field("key"), &meta, None).await
    else {
        return Ok(refused());
    };
    let token = &cached.record.token;
    if !token.owner.tenant_id().is_system() || !granted.iter().any(Permission::is_admin) {
        return Ok(refused());
    }
    let ctx = AuditContext {
        actor: token.id.to_string(),
        actor_user: None,
        ip: meta.ip.map(|ip| ip.to_string()),
        user_agent: meta.agent(),
        at: state.now(),
    };
    let (session, secret) = console::sign_in(&state, &ctx, token.id).await?;
    let mut response = Redirect::to("/console/").into_response();
    let age = (session.expires_at.millis() - state.now().millis()) / 1000;
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, set_cookie(&state, COOKIE, &secret, age));
    headers.append(header::SET_COOKIE, set_cookie(&state, LOGIN_COOKIE, "", 0));
    Ok(response)
}

/// `POST /console/logout`: ends the session in the store and forgets the cookie.
pub async fn logout(
    State(state): State<AppState>,
    form: super::session::CheckedForm,
) -> Result<Response, ConsoleError> {
    let caller = form.console.caller();
    console::end(&state, &caller.audit(&state), form.console.session.id).await?;
    let mut response = (
        StatusCode::OK,
        pages::message("Signed out", "Your console session has ended."),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, set_cookie(&state, COOKIE, "", 0));
    Ok(response)
}

/// `GET /console/assets/console.css`.
pub async fn stylesheet() -> Response {
    asset(
        include_str!("../../../assets/console/console.css"),
        "text/css; charset=utf-8",
    )
}

/// `GET /console/assets/console.js`.
pub async fn script() -> Response {
    asset(
        include_str!("../../../assets/console/console.js"),
        "text/javascript; charset=utf-8",
    )
}

fn asset(body: &'static str, kind: &'static str) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    response
}
