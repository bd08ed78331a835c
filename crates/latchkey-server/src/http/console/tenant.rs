//! A manager's pages of a tenant: its members and their roles, its policy (view and
//! replace, through the API's own rules), and its audit trail, filterable.

use super::ConsoleError;
use super::pages::{csrf, empty, page, tags, time};
use super::session::{CheckedForm, Console};
use super::tokens::tenant_of;
use crate::http::api::policy as api;
use crate::http::extract::{ApiJson, Query, parse_json};
use crate::service::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use latchkey_core::store::{AuditFilter, PageRequest};
use latchkey_core::{Permission, TenantId, Timestamp};
use latchkey_wire::PolicyResource;
use maud::{Markup, html};
use serde::Deserialize;

fn managed(console: &Console, raw: &str) -> Result<TenantId, ConsoleError> {
    let tenant = tenant_of(console, raw)?;
    if console.manages(&tenant) {
        Ok(tenant)
    } else {
        Err(ConsoleError::NotFound)
    }
}

/// `GET /console/t/{tid}/members`.
pub async fn members(
    State(state): State<AppState>,
    console: Console,
    Path(tid): Path<String>,
) -> Result<Response, ConsoleError> {
    let tenant = managed(&console, &tid)?;
    let found = state
        .store()
        .list_memberships(
            &tenant,
            &PageRequest {
                limit: 200,
                after: None,
            },
        )
        .await?;
    let body = html! {
        p.muted { "Members and their roles are set by your application through the API." }
        @if found.items.is_empty() {
            (empty("No members yet. Your application adds them with PUT /v1/tenants/{tenant}/users/{user}.", None))
        } @else {
            table.list {
                thead { tr { th scope="col" { "User" } th scope="col" { "Roles" } th scope="col" { "Permissions" } } }
                tbody {
                    @for member in &found.items {
                        tr {
                            td data-label="User" { code { (member.user_id) } }
                            td data-label="Roles" { (tags(member.roles.iter().map(|r| r.as_str()))) }
                            td data-label="Permissions" { (tags(member.permissions.iter().map(Permission::as_str))) }
                        }
                    }
                }
            }
        }
    };
    Ok(page("Members", Some((&console, &tenant)), body).into_response())
}

fn policy_form(
    console: &Console,
    tenant: &TenantId,
    text: &str,
    error: Option<&str>,
    notice: Option<String>,
) -> Markup {
    html! {
        @if let Some(notice) = notice { div.banner.ok role="status" { p { (notice) } } }
        p { "The rules every new or rolled token of this tenant must meet. Saving replaces the whole policy." }
        form method="post" action={ "/console/t/" (tenant) "/policy" } {
            (csrf(console))
            div.field {
                label for="policy" { "Policy (JSON)" }
                textarea #policy name="policy" spellcheck="false" aria-describedby=[error.map(|_| "policy-error")] { (text) }
                @if let Some(error) = error { p.error #policy-error role="alert" { (error) } }
            }
            button type="submit" { "Save policy" }
        }
    }
}

/// `GET /console/t/{tid}/policy`.
pub async fn policy(
    State(state): State<AppState>,
    console: Console,
    Path(tid): Path<String>,
) -> Result<Response, ConsoleError> {
    let tenant = managed(&console, &tid)?;
    let Json(current) = api::show(
        State(state.clone()),
        console.caller(),
        Path(tenant.to_string()),
    )
    .await?;
    let text = policy_text(&current)?;
    let body = policy_form(&console, &tenant, &text, None, None);
    Ok(page("Policy", Some((&console, &tenant)), body).into_response())
}

/// The tenant's own rules of a policy answer, as the form edits them.
fn policy_text(resource: &PolicyResource) -> Result<String, ConsoleError> {
    serde_json::to_string_pretty(&resource.policy)
        .map_err(|e| crate::http::problem::ApiError::Internal(e.to_string()).into())
}

/// `POST /console/t/{tid}/policy`: replaces the policy through the API's rules; a bad
/// policy re-renders with the error and changes nothing.
pub async fn put_policy(
    State(state): State<AppState>,
    Path(tid): Path<String>,
    form: CheckedForm,
) -> Result<Response, ConsoleError> {
    let console = &form.console;
    let tenant = managed(console, &tid)?;
    let text = form.get("policy").unwrap_or("").to_owned();
    let result = match parse_json::<api::PolicyBody>(text.as_bytes()) {
        Ok(body) => {
            api::put(
                State(state.clone()),
                console.caller(),
                Path(tenant.to_string()),
                ApiJson(body),
            )
            .await
        }
        Err(error) => Err(error),
    };
    match result {
        Ok(Json(saved)) => {
            let violations = saved.violations.as_ref().map_or(0, |v| v.total);
            let notice = format!(
                "Policy saved. {violations} existing tokens break it; they keep working until they are rolled or revoked."
            );
            let body = policy_form(console, &tenant, &policy_text(&saved)?, None, Some(notice));
            Ok(page("Policy", Some((console, &tenant)), body).into_response())
        }
        Err(error) if error.status().is_client_error() => {
            let body = policy_form(console, &tenant, &text, Some(&error.to_string()), None);
            Ok((
                error.status(),
                page("Policy", Some((console, &tenant)), body),
            )
                .into_response())
        }
        Err(error) => Err(error.into()),
    }
}

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    actor: Option<String>,
    #[serde(default)]
    since: Option<String>,
}

/// `GET /console/t/{tid}/audit?action=&token=&actor=&since=`: the newest 100 events of
/// the tenant that match.
pub async fn audit(
    State(state): State<AppState>,
    console: Console,
    Path(tid): Path<String>,
    Query(query): Query<AuditQuery>,
) -> Result<Response, ConsoleError> {
    let tenant = managed(&console, &tid)?;
    let nonempty = |v: &Option<String>| {
        v.as_ref()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    let since_text = nonempty(&query.since);
    let since = match &since_text {
        None => None,
        Some(text) => match Timestamp::parse_rfc3339(text)
            .or_else(|| Timestamp::parse_rfc3339(&format!("{text}T00:00:00Z")))
        {
            Some(at) => Some(at),
            None => {
                return Err(ConsoleError::Api(crate::http::problem::ApiError::value(
                    "since",
                    "must be a date (2026-11-30) or an RFC 3339 time",
                )));
            }
        },
    };
    let filter = AuditFilter {
        tenant_id: Some(tenant.to_string()),
        target: nonempty(&query.token),
        actor: nonempty(&query.actor),
        action: nonempty(&query.action),
        since,
        until: None,
    };
    let found = state
        .store()
        .list_audit(
            &filter,
            &PageRequest {
                limit: 100,
                after: None,
            },
        )
        .await?;
    let now = state.now();
    let value = |v: &Option<String>| nonempty(v).unwrap_or_default();
    let body = html! {
        form.filters method="get" action={ "/console/t/" (tenant) "/audit" } {
            div.field { label for="f-action" { "Action" } input #f-action type="text" name="action" value=(value(&query.action)) placeholder="token.created"; }
            div.field { label for="f-token" { "Token or target" } input #f-token type="text" name="token" value=(value(&query.token)); }
            div.field { label for="f-actor" { "Actor" } input #f-actor type="text" name="actor" value=(value(&query.actor)); }
            div.field { label for="f-since" { "Since" } input #f-since type="date" name="since" value=(since_text.clone().unwrap_or_default()); }
            button type="submit" { "Filter" }
        }
        @if found.items.is_empty() {
            (empty("No events match. Clear the filters to see the whole trail.", None))
        } @else {
            table.list {
                thead { tr { th scope="col" { "When" } th scope="col" { "Action" } th scope="col" { "Target" } th scope="col" { "Actor" } th scope="col" { "From" } } }
                tbody {
                    @for record in &found.items {
                        tr {
                            td data-label="When" { (time(record.context.at, now)) }
                            td data-label="Action" { code { (record.event.action.as_str()) } }
                            td data-label="Target" { @if let Some(target) = &record.event.target { code { (target) } } }
                            td data-label="Actor" {
                                code { (record.context.actor) }
                                @if let Some(user) = &record.context.actor_user { " (" code { (user) } ")" }
                            }
                            td data-label="From" { @if let Some(ip) = &record.context.ip { code { (ip) } } }
                        }
                    }
                }
            }
        }
    };
    Ok(page("Audit trail", Some((&console, &tenant)), body).into_response())
}
