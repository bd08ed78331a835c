//! Token pages: a member's personal tokens, a manager's tenant tokens, the create form
//! with its scope picker, the page that shows a new secret once, each token's page (the
//! five Ws and its usage), rename, roll and revoke with a confirmation.
//!
//! Every action calls the management API's handler with the session's
//! [`Caller`](crate::http::auth::Caller). What a session may act on (docs/CONSOLE.md,
//! "Authority"): a member, their own personal tokens; a manager, also the tenant's
//! tokens; never a token holding a built-in permission the user does not hold.

use super::ConsoleError;
use super::pages::{csrf, empty, maybe_time, page, tags, time};
use super::session::{CheckedForm, Console};
use super::usage;
use crate::http::api::tokens as api;
use crate::http::extract::{ApiJson, Query, parse_json};
use crate::http::problem::ApiError;
use crate::service::console;
use crate::service::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use latchkey_core::store::{PageRequest, TokenOwnerFilter};
use latchkey_core::token::{Owner, Token, TokenKind};
use latchkey_core::{Permission, PermissionSet, TenantId, TokenId};
use latchkey_wire::CreatedToken;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value, json};

/// The longest lifetime the form offers, in days (10 years).
const MAX_DAYS: i64 = 3650;

/// The tenant of a page path, if the session may see it.
pub(super) fn tenant_of(console: &Console, raw: &str) -> Result<TenantId, ConsoleError> {
    let tenant = TenantId::parse(raw).map_err(|_| ConsoleError::NotFound)?;
    if console.sees(&tenant) {
        Ok(tenant)
    } else {
        Err(ConsoleError::NotFound)
    }
}

/// What `token` grants by its own permissions and its roles' current ones.
async fn granted(state: &AppState, token: &Token) -> Result<PermissionSet, ConsoleError> {
    let mut granted = state.store().role_permissions(&token.roles).await?;
    granted.extend(token.permissions.iter().cloned());
    Ok(granted)
}

/// Whether the session may see and act on `token` in `tenant`.
async fn may_act(
    state: &AppState,
    console: &Console,
    tenant: &TenantId,
    token: &Token,
) -> Result<bool, ConsoleError> {
    if token.owner.tenant_id() != tenant {
        return Ok(false);
    }
    let owner_ok = match &token.owner {
        Owner::Tenant { .. } => console.manages(tenant),
        Owner::User { user_id, .. } => match console.user() {
            Some(user) => user == user_id,
            None => true,
        },
    };
    Ok(owner_ok && console.holds_builtins_of(&granted(state, token).await?))
}

/// Loads a token the session may act on, or answers 404.
async fn actionable(
    state: &AppState,
    console: &Console,
    tenant: &TenantId,
    raw: &str,
) -> Result<Token, ConsoleError> {
    let id = TokenId::parse(raw).map_err(|_| ConsoleError::NotFound)?;
    let record = state
        .store()
        .get_token(id)
        .await?
        .ok_or(ConsoleError::NotFound)?;
    if may_act(state, console, tenant, &record.token).await? {
        Ok(record.token)
    } else {
        Err(ConsoleError::NotFound)
    }
}

async fn list_page(
    state: &AppState,
    console: &Console,
    tenant: &TenantId,
    filter: TokenOwnerFilter,
    owner: &str,
) -> Result<Markup, ConsoleError> {
    let found = state
        .store()
        .list_tokens(
            &filter,
            &PageRequest {
                limit: 200,
                after: None,
            },
        )
        .await?;
    let mut tokens = Vec::new();
    for token in found.items {
        if may_act(state, console, tenant, &token).await? {
            tokens.push(token);
        }
    }
    let now = state.now();
    let new = format!("/console/t/{tenant}/tokens/new?owner={owner}");
    Ok(html! {
        p.actions { a.button href=(new) { "Create a token" } }
        @if tokens.is_empty() {
            (empty("No tokens yet. Create one to call the API; you will see its secret once.", None))
        } @else {
            table.list {
                caption.muted { (tokens.len()) " tokens" }
                thead { tr {
                    th scope="col" { "Name" } th scope="col" { "Kind" } th scope="col" { "Scopes" }
                    th scope="col" { "Created" } th scope="col" { "Expires" }
                    th scope="col" { "Last used" } th scope="col" { "Status" }
                } }
                tbody {
                    @for token in &tokens {
                        tr {
                            td data-label="Name" {
                                a href={ "/console/t/" (tenant) "/token/" (token.id) } { (token.name.as_str()) }
                                @if let Some(hint) = &token.secret_hint { br; code.muted { (hint) } }
                            }
                            td data-label="Kind" { (kind_label(token.kind)) }
                            td data-label="Scopes" {
                                (tags(token.roles.iter().map(|r| r.as_str()).chain(token.permissions.iter().map(Permission::as_str))))
                            }
                            td data-label="Created" { (time(token.created_at, now)) }
                            td data-label="Expires" { (maybe_time(token.expires_at, now, "never")) }
                            td data-label="Last used" {
                                (maybe_time(token.last_used_at, now, "never used"))
                                @if let Some(ip) = &token.last_used_ip { " from " code { (ip) } }
                            }
                            td data-label="Status" { (status(token, now)) }
                        }
                    }
                }
            }
        }
    })
}

fn kind_label(kind: TokenKind) -> &'static str {
    match kind {
        TokenKind::ClientCredentials => "Client credentials",
        TokenKind::ApiKey => "API key",
        TokenKind::Jwt => "Long-lived JWT",
    }
}

fn status(token: &Token, now: latchkey_core::Timestamp) -> Markup {
    html! {
        @if token.revoked_at.is_some() {
            span.revoked { "Revoked" }
        } @else if token.expires_at.is_some_and(|at| at <= now) {
            span.revoked { "Expired" }
        } @else if let Some(at) = token.revokes_at {
            "Rolled; ends " (time(at, now))
        } @else {
            "Active"
        }
    }
}

/// `GET /console/t/{tid}/tokens`: the member's own personal tokens.
pub async fn personal(
    State(state): State<AppState>,
    console: Console,
    Path(tid): Path<String>,
) -> Result<Response, ConsoleError> {
    let tenant = tenant_of(&console, &tid)?;
    let Some(user) = console.user().cloned() else {
        return Ok(Redirect::to(&format!("/console/t/{tenant}/tenant-tokens")).into_response());
    };
    let body = list_page(
        &state,
        &console,
        &tenant,
        TokenOwnerFilter::User(tenant.clone(), user),
        "me",
    )
    .await?;
    Ok(page("My tokens", Some((&console, &tenant)), body).into_response())
}

/// `GET /console/t/{tid}/tenant-tokens`: the tenant's tokens, for its managers.
pub async fn tenant(
    State(state): State<AppState>,
    console: Console,
    Path(tid): Path<String>,
) -> Result<Response, ConsoleError> {
    let tenant = tenant_of(&console, &tid)?;
    if !console.manages(&tenant) {
        return Err(ConsoleError::NotFound);
    }
    let body = list_page(
        &state,
        &console,
        &tenant,
        TokenOwnerFilter::Tenant(tenant.clone()),
        "tenant",
    )
    .await?;
    Ok(page("Tenant tokens", Some((&console, &tenant)), body).into_response())
}

/// Whom a new token belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NewOwner {
    Me,
    Tenant,
}

#[derive(Debug, Default, Deserialize)]
pub struct NewQuery {
    #[serde(default)]
    owner: Option<String>,
}

fn new_owner(
    console: &Console,
    tenant: &TenantId,
    raw: Option<&str>,
) -> Result<NewOwner, ConsoleError> {
    match (raw, console.user()) {
        (Some("tenant"), _) | (_, None) if console.manages(tenant) => Ok(NewOwner::Tenant),
        (None | Some("me"), Some(_)) => Ok(NewOwner::Me),
        _ => Err(ConsoleError::NotFound),
    }
}

/// The permissions the scope picker offers: what the user holds (an operator: the
/// catalogue, without the system-only permissions outside the system tenant).
async fn offered(
    state: &AppState,
    console: &Console,
    tenant: &TenantId,
) -> Result<Vec<Permission>, ConsoleError> {
    let catalogue = state.store().list_permissions().await?;
    Ok(catalogue
        .into_iter()
        .map(|def| def.name)
        .filter(|p| console.holds(p))
        .filter(|p| tenant.is_system() || !(p.is_admin() || p.is_introspect()))
        .collect())
}

/// What the create form was sent with, to show again beside its errors.
#[derive(Debug, Default)]
struct Draft {
    name: String,
    kind: String,
    permissions: Vec<String>,
    days: String,
}

/// Errors of the create form, by field; `general` for the form as a whole.
#[derive(Debug, Default)]
struct FormErrors {
    name: Option<String>,
    kind: Option<String>,
    permissions: Option<String>,
    days: Option<String>,
    general: Option<String>,
}

impl FormErrors {
    fn any(&self) -> bool {
        self.name.is_some()
            || self.kind.is_some()
            || self.permissions.is_some()
            || self.days.is_some()
            || self.general.is_some()
    }

    /// Places an error of the management API beside the field it concerns.
    fn place(&mut self, error: &ApiError) {
        let text = error.to_string();
        let field = match error {
            ApiError::InvalidField { field, .. } | ApiError::InvalidValue { field, .. } => {
                field.as_str()
            }
            ApiError::PermissionNotHeld { .. }
            | ApiError::UnknownPermission(_)
            | ApiError::ReservedPermission { .. } => "permissions",
            _ => "",
        };
        let slot = match field.split(['[', '.']).next().unwrap_or("") {
            "name" => &mut self.name,
            "kind" => &mut self.kind,
            "permissions" => &mut self.permissions,
            "expires_at" => &mut self.days,
            _ => &mut self.general,
        };
        *slot = Some(text);
    }
}

fn error_text(id: &str, error: &Option<String>) -> Markup {
    html! { @if let Some(error) = error { p.error id=(id) role="alert" { (error) } } }
}

fn described(error: &Option<String>, id: &str) -> Option<String> {
    error.as_ref().map(|_| id.to_owned())
}

fn create_form(
    console: &Console,
    tenant: &TenantId,
    owner: NewOwner,
    offered: &[Permission],
    draft: &Draft,
    errors: &FormErrors,
) -> Markup {
    let owner_value = match owner {
        NewOwner::Me => "me",
        NewOwner::Tenant => "tenant",
    };
    let kinds = [
        TokenKind::ApiKey,
        TokenKind::ClientCredentials,
        TokenKind::Jwt,
    ];
    let chosen_kind = if draft.kind.is_empty() {
        TokenKind::ApiKey.as_str()
    } else {
        draft.kind.as_str()
    };
    html! {
        @if let Some(general) = &errors.general {
            div.banner.warn role="alert" { p { (general) } }
        }
        p {
            @match owner {
                NewOwner::Me => "A personal token acts as you and never grants more than you hold now.",
                NewOwner::Tenant => "A tenant token belongs to the tenant and keeps working when people leave.",
            }
        }
        form method="post" action={ "/console/t/" (tenant) "/tokens/new" } novalidate {
            (csrf(console))
            input type="hidden" name="owner" value=(owner_value);
            div.field {
                label for="name" { "Name" }
                input #name type="text" name="name" value=(draft.name) maxlength="200" required
                    aria-describedby=[described(&errors.name, "name-error")];
                p.hint { "What it is for, such as “CI deploy”." }
                (error_text("name-error", &errors.name))
            }
            div.field {
                label for="kind" { "Kind" }
                select #kind name="kind" aria-describedby=[described(&errors.kind, "kind-error")] {
                    @for kind in kinds {
                        option value=(kind.as_str()) selected[kind.as_str() == chosen_kind] { (kind_label(kind)) }
                    }
                }
                (error_text("kind-error", &errors.kind))
            }
            fieldset aria-describedby=[described(&errors.permissions, "permissions-error")] {
                legend { "Scopes" }
                @if offered.is_empty() {
                    p.muted { "You hold no permissions in this tenant, so a token could grant nothing. Ask a manager for a role." }
                }
                @for (i, permission) in offered.iter().enumerate() {
                    label for={ "perm-" (i) } {
                        input id={ "perm-" (i) } type="checkbox" name="permissions" value=(permission.as_str())
                            checked[draft.permissions.iter().any(|p| p == permission.as_str())];
                        " " code { (permission.as_str()) }
                    }
                }
                (error_text("permissions-error", &errors.permissions))
            }
            div.field {
                label for="days" { "Expires after (days)" }
                input #days type="number" name="days" min="1" max=(MAX_DAYS) value=(draft.days) inputmode="numeric"
                    aria-describedby=[Some(if errors.days.is_some() { "days-hint days-error" } else { "days-hint" })];
                p.hint #days-hint { "Leave empty for a token that does not expire." }
                (error_text("days-error", &errors.days))
            }
            div.actions {
                button type="submit" { "Create token" }
                a.button.secondary href={ "/console/t/" (tenant) (if owner == NewOwner::Me { "/tokens" } else { "/tenant-tokens" }) } { "Cancel" }
            }
        }
    }
}

/// `GET /console/t/{tid}/tokens/new?owner=me|tenant`: the create form.
pub async fn new_form(
    State(state): State<AppState>,
    console: Console,
    Path(tid): Path<String>,
    Query(query): Query<NewQuery>,
) -> Result<Response, ConsoleError> {
    let tenant = tenant_of(&console, &tid)?;
    let owner = new_owner(&console, &tenant, query.owner.as_deref())?;
    let offered = offered(&state, &console, &tenant).await?;
    let body = create_form(
        &console,
        &tenant,
        owner,
        &offered,
        &Draft::default(),
        &FormErrors::default(),
    );
    Ok(page("Create a token", Some((&console, &tenant)), body).into_response())
}

/// `POST /console/t/{tid}/tokens/new`: creates the token through the API's rules, then
/// redirects (303) to the page that shows its secret once. Bad input re-renders the
/// form with each error beside its field; nothing is created.
pub async fn create(
    State(state): State<AppState>,
    Path(tid): Path<String>,
    form: CheckedForm,
) -> Result<Response, ConsoleError> {
    let console = &form.console;
    let tenant = tenant_of(console, &tid)?;
    let owner = new_owner(console, &tenant, form.get("owner"))?;
    let offered = offered(&state, console, &tenant).await?;
    let draft = Draft {
        name: form.get("name").unwrap_or("").trim().to_owned(),
        kind: form.get("kind").unwrap_or("").to_owned(),
        permissions: form
            .all("permissions")
            .into_iter()
            .map(str::to_owned)
            .collect(),
        days: form.get("days").unwrap_or("").trim().to_owned(),
    };
    let mut errors = FormErrors::default();
    if draft.name.is_empty() {
        errors.name = Some("Give the token a name.".to_owned());
    }
    if let Some(unoffered) = draft
        .permissions
        .iter()
        .find(|p| !offered.iter().any(|o| o.as_str() == p.as_str()))
    {
        errors.permissions = Some(format!(
            "You cannot grant {unoffered}: you do not hold it here."
        ));
    }
    let expires_at = if draft.days.is_empty() {
        None
    } else {
        match draft.days.parse::<i64>() {
            Ok(days) if (1..=MAX_DAYS).contains(&days) => {
                Some(state.now().plus_seconds(days * 86_400))
            }
            _ => {
                errors.days = Some(format!(
                    "Enter a whole number of days from 1 to {MAX_DAYS}, or leave it empty."
                ));
                None
            }
        }
    };
    let result = if errors.any() {
        None
    } else {
        let body = json!({
            "name": draft.name,
            "kind": draft.kind,
            "permissions": draft.permissions,
            "expires_at": expires_at,
        });
        let made = match parse_json::<api::CreateToken>(body.to_string().as_bytes()) {
            Err(error) => Err(error),
            Ok(request) => {
                let caller = console.caller();
                match (owner, console.user()) {
                    (NewOwner::Me, Some(user)) => {
                        api::create_personal(
                            State(state.clone()),
                            caller,
                            Path((tenant.to_string(), user.to_string())),
                            ApiJson(request),
                        )
                        .await
                    }
                    _ => {
                        let request = with_creator(request, console)?;
                        api::create_tenant(
                            State(state.clone()),
                            caller,
                            Path(tenant.to_string()),
                            ApiJson(request),
                        )
                        .await
                    }
                }
            }
        };
        Some(made)
    };
    match result {
        Some(Ok((_, Json(created)))) => reveal_redirect(&state, console, &tenant, created).await,
        Some(Err(error)) if error.status().is_client_error() => {
            errors.place(&error);
            Ok(form_again(
                console,
                &tenant,
                owner,
                &offered,
                &draft,
                &errors,
                error.status(),
            ))
        }
        Some(Err(error)) => Err(error.into()),
        None => Ok(form_again(
            console,
            &tenant,
            owner,
            &offered,
            &draft,
            &errors,
            StatusCode::UNPROCESSABLE_ENTITY,
        )),
    }
}

/// A tenant token made by a member's session records that member as `created_by`, so
/// the grant is bounded by what they hold.
fn with_creator(
    request: api::CreateToken,
    console: &Console,
) -> Result<api::CreateToken, ConsoleError> {
    Ok(match console.user() {
        Some(user) => request.created_by(user.clone()),
        None => request,
    })
}

fn form_again(
    console: &Console,
    tenant: &TenantId,
    owner: NewOwner,
    offered: &[Permission],
    draft: &Draft,
    errors: &FormErrors,
    status: StatusCode,
) -> Response {
    let body = create_form(console, tenant, owner, offered, draft, errors);
    (
        status,
        page("Create a token", Some((console, tenant)), body),
    )
        .into_response()
}

/// Holds the new secret for its one showing and redirects there.
async fn reveal_redirect(
    state: &AppState,
    console: &Console,
    tenant: &TenantId,
    created: CreatedToken,
) -> Result<Response, ConsoleError> {
    let secret = created
        .client_secret
        .or(created.api_key)
        .or(created.jwt)
        .unwrap_or_default();
    let held = console::hold_secret(state, console.session.id, &secret).await?;
    let to = format!(
        "/console/t/{tenant}/reveal/{held}?token={}",
        created.token.id
    );
    Ok(Redirect::to(&to).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct RevealQuery {
    #[serde(default)]
    token: Option<String>,
}

/// `GET /console/t/{tid}/reveal/{id}`: shows a new secret once; a reload finds it gone.
pub async fn reveal(
    State(state): State<AppState>,
    console: Console,
    Path((tid, id)): Path<(String, String)>,
    Query(query): Query<RevealQuery>,
) -> Result<Response, ConsoleError> {
    let tenant = tenant_of(&console, &tid)?;
    let held = TokenId::parse(&id).map_err(|_| ConsoleError::NotFound)?;
    let token = match query.token.as_deref() {
        Some(raw) => Some(actionable(&state, &console, &tenant, raw).await?),
        None => None,
    };
    let token_link = token
        .as_ref()
        .map(|t| format!("/console/t/{tenant}/token/{}", t.id));
    let Some(secret) = console::take_secret(&state, console.session.id, held).await? else {
        let body = html! {
            p { "This secret was shown once already, and it is not kept anywhere. If you did not copy it, roll the token to get a new secret." }
            @if let Some(link) = &token_link { p { a href=(link) { "Go to the token" } } }
        };
        return Ok((
            StatusCode::GONE,
            page("Secret already shown", Some((&console, &tenant)), body),
        )
            .into_response());
    };
    let body = html! {
        div.banner.warn role="alert" {
            p { strong { "Copy this secret now. You won't see it again." } " latchkey keeps only a hash of it." }
        }
        @if let Some(token) = &token {
            p { "Token " strong { (token.name.as_str()) } " (" (kind_label(token.kind)) ")" }
            @if token.kind == TokenKind::ClientCredentials {
                div.field {
                    label for="client-id" { "Client ID" }
                    input #client-id type="text" readonly value=(token.id);
                }
            }
        }
        div.field {
            label for="secret" { "Secret" }
            div.secret-box {
                input #secret.secret type="text" readonly value=(secret) autocomplete="off" spellcheck="false";
                button type="button" data-copy="secret" data-status="copy-status" hidden { "Copy" }
            }
            p #copy-status.hint role="status" aria-live="polite" {}
        }
        @if let Some(link) = &token_link { p { a.button href=(link) { "Done" } } }
    };
    Ok(page("Your new secret", Some((&console, &tenant)), body).into_response())
}

/// `GET /console/t/{tid}/token/{id}`: the five Ws of a token and its usage.
pub async fn show(
    State(state): State<AppState>,
    console: Console,
    Path((tid, id)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let tenant = tenant_of(&console, &tid)?;
    let token = actionable(&state, &console, &tenant, &id).await?;
    token_page(&state, &console, &tenant, &token, None, StatusCode::OK).await
}

async fn token_page(
    state: &AppState,
    console: &Console,
    tenant: &TenantId,
    token: &Token,
    rename_error: Option<String>,
    status_code: StatusCode,
) -> Result<Response, ConsoleError> {
    let now = state.now();
    let effective = state
        .token(token.id)
        .await?
        .map(|cached| cached.effective.clone())
        .unwrap_or_default();
    let charts = usage::section(state, token.id, now).await?;
    let base = format!("/console/t/{tenant}/token/{}", token.id);
    let active = token.is_active(now);
    let body = html! {
        p { (status(token, now)) }
        h2 { "Who" }
        dl.facts {
            dt { "Owner" }
            dd { @match &token.owner {
                Owner::Tenant { tenant_id } => { "Tenant " code { (tenant_id) } }
                Owner::User { user_id, .. } => { "User " code { (user_id) } }
            } }
            dt { "Created by" }
            dd { @match &token.created_by { Some(user) => code { (user) }, None => span.muted { "an API credential" } } }
        }
        h2 { "What" }
        dl.facts {
            dt { "Kind" } dd { (kind_label(token.kind)) }
            dt { "Secret" } dd { @match &token.secret_hint { Some(hint) => code { (hint) }, None => span.muted { "none" } } }
            dt { "Roles" } dd { (tags(token.roles.iter().map(|r| r.as_str()))) }
            dt { "Permissions" } dd { (tags(token.permissions.iter().map(Permission::as_str))) }
            dt { "Grants now" } dd { (tags(effective.iter().map(Permission::as_str))) }
            dt { "Access tokens last" } dd { (token.access_token_ttl_seconds) " seconds" }
        }
        h2 { "When" }
        dl.facts {
            dt { "Created" } dd { (time(token.created_at, now)) }
            dt { "Expires" } dd { (maybe_time(token.expires_at, now, "never")) }
            dt { "Last used" } dd { (maybe_time(token.last_used_at, now, "never used")) }
            @if let Some(at) = token.revoked_at { dt { "Revoked" } dd { (time(at, now)) } }
            @if let Some(at) = token.revokes_at { dt { "Ends (rolled)" } dd { (time(at, now)) } }
            @if let Some(next) = token.rolled_to {
                dt { "Rolled to" } dd { a href={ "/console/t/" (tenant) "/token/" (next) } { code { (next) } } }
            }
            @if let Some(previous) = token.rolled_from {
                dt { "Rolled from" } dd { a href={ "/console/t/" (tenant) "/token/" (previous) } { code { (previous) } } }
            }
        }
        h2 { "Where" }
        dl.facts {
            dt { "Last address" } dd { @match &token.last_used_ip { Some(ip) => code { (ip) }, None => span.muted { "none yet" } } }
            dt { "May be used from" }
            dd { @if token.ip_allowlist.is_empty() { "anywhere the tenant's policy allows" } @else {
                (tags(token.ip_allowlist.iter().map(|n| n.to_string()).collect::<Vec<_>>().iter().map(String::as_str)))
            } }
        }
        h2 { "How: requests per day, last 30 days" }
        (charts)
        @if active {
            h2 { "Change" }
            form method="post" action={ (base) "/rename" } novalidate {
                (csrf(console))
                div.field {
                    label for="rename" { "Name" }
                    input #rename type="text" name="name" value=(token.name.as_str()) maxlength="200" required
                        aria-describedby=[described(&rename_error, "rename-error")];
                    (error_text("rename-error", &rename_error))
                }
                button type="submit" { "Rename" }
            }
            div.actions {
                @if token.rolled_to.is_none() {
                    a.button.secondary href={ (base) "/roll" } { "Roll…" }
                }
                a.button.danger href={ (base) "/revoke" } { "Revoke…" }
            }
        }
    };
    Ok((
        status_code,
        page(token.name.as_str(), Some((console, tenant)), body),
    )
        .into_response())
}

/// `POST /console/t/{tid}/token/{id}/rename`.
pub async fn rename(
    State(state): State<AppState>,
    Path((tid, id)): Path<(String, String)>,
    form: CheckedForm,
) -> Result<Response, ConsoleError> {
    let console = &form.console;
    let tenant = tenant_of(console, &tid)?;
    let token = actionable(&state, console, &tenant, &id).await?;
    let name = form.get("name").unwrap_or("").trim().to_owned();
    let mut body = Map::new();
    body.insert("name".to_owned(), Value::String(name));
    match api::rename(
        State(state.clone()),
        console.caller(),
        Path(id.clone()),
        ApiJson(body),
    )
    .await
    {
        Ok(_) => {
            Ok(Redirect::to(&format!("/console/t/{tenant}/token/{}", token.id)).into_response())
        }
        Err(error) if error.status().is_client_error() => {
            let status = error.status();
            token_page(
                &state,
                console,
                &tenant,
                &token,
                Some(error.to_string()),
                status,
            )
            .await
        }
        Err(error) => Err(error.into()),
    }
}

fn confirm_page(
    console: &Console,
    tenant: &TenantId,
    token: &Token,
    title: &str,
    explain: Markup,
    action: &str,
    button: Markup,
) -> Response {
    let back = format!("/console/t/{tenant}/token/{}", token.id);
    let body = html! {
        (explain)
        form method="post" action=(action) {
            (csrf(console))
            (button)
            " "
            a.button.secondary href=(back) { "Cancel" }
        }
    };
    page(title, Some((console, tenant)), body).into_response()
}

/// `GET /console/t/{tid}/token/{id}/revoke`: asks for confirmation.
pub async fn revoke_confirm(
    State(state): State<AppState>,
    console: Console,
    Path((tid, id)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let tenant = tenant_of(&console, &tid)?;
    let token = actionable(&state, &console, &tenant, &id).await?;
    let explain = html! {
        p { "Revoke " strong { (token.name.as_str()) } "? Anything using it stops working within moments. This cannot be undone." }
    };
    let action = format!("/console/t/{tenant}/token/{}/revoke", token.id);
    let button = html! { button.danger type="submit" { "Revoke token" } };
    Ok(confirm_page(
        &console,
        &tenant,
        &token,
        "Revoke token",
        explain,
        &action,
        button,
    ))
}

/// `POST /console/t/{tid}/token/{id}/revoke`.
pub async fn revoke(
    State(state): State<AppState>,
    Path((tid, id)): Path<(String, String)>,
    form: CheckedForm,
) -> Result<Response, ConsoleError> {
    let console = &form.console;
    let tenant = tenant_of(console, &tid)?;
    let token = actionable(&state, console, &tenant, &id).await?;
    api::revoke(
        State(state.clone()),
        console.caller(),
        Path(id),
        Query(api::RevokeQuery::default()),
    )
    .await?;
    Ok(Redirect::to(&format!("/console/t/{tenant}/token/{}", token.id)).into_response())
}

/// `GET /console/t/{tid}/token/{id}/roll`: asks for confirmation and a grace window.
pub async fn roll_confirm(
    State(state): State<AppState>,
    console: Console,
    Path((tid, id)): Path<(String, String)>,
) -> Result<Response, ConsoleError> {
    let tenant = tenant_of(&console, &tid)?;
    let token = actionable(&state, &console, &tenant, &id).await?;
    let explain = html! {
        p { "Roll " strong { (token.name.as_str()) } "? A new token with the same grant is made and its secret shown once; this one keeps working for the grace window you choose, then is revoked." }
    };
    let action = format!("/console/t/{tenant}/token/{}/roll", token.id);
    let button = html! {
        div.field {
            label for="grace" { "Keep the old secret working for" }
            select #grace name="grace_seconds" {
                option value="0" { "no time: revoke it now" }
                option value="3600" { "1 hour" }
                option value="86400" selected { "1 day" }
                option value="604800" { "7 days" }
            }
        }
        button type="submit" { "Roll token" }
    };
    Ok(confirm_page(
        &console,
        &tenant,
        &token,
        "Roll token",
        explain,
        &action,
        button,
    ))
}

/// `POST /console/t/{tid}/token/{id}/roll`: the successor's secret is shown once, as a
/// create's.
pub async fn roll(
    State(state): State<AppState>,
    Path((tid, id)): Path<(String, String)>,
    form: CheckedForm,
) -> Result<Response, ConsoleError> {
    let console = &form.console;
    let tenant = tenant_of(console, &tid)?;
    actionable(&state, console, &tenant, &id).await?;
    let grace: i64 = form
        .get("grace_seconds")
        .unwrap_or("86400")
        .parse()
        .map_err(|_| {
            ConsoleError::Api(ApiError::value(
                "grace_seconds",
                "must be a whole number of seconds",
            ))
        })?;
    let body =
        parse_json::<api::RollToken>(json!({ "grace_seconds": grace }).to_string().as_bytes())?;
    let (_, Json(created)) = api::roll(
        State(state.clone()),
        console.caller(),
        Path(id),
        ApiJson(body),
    )
    .await?;
    reveal_redirect(&state, console, &tenant, created).await
}
