//! The console's page frame and the small pieces every page shares: the navigation,
//! times shown relative with the exact time on hover, forms carrying the CSRF token.

use super::session::Console;
use axum::response::Html;
use latchkey_core::{TenantId, Timestamp};
use maud::{DOCTYPE, Markup, PreEscaped, html};

/// A whole page: `title`, the session's navigation (none without a session), `body`.
pub fn page(title: &str, nav: Option<(&Console, &TenantId)>, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · latchkey console" }
                link rel="stylesheet" href="/console/assets/console.css";
                script src="/console/assets/console.js" defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    span.brand { "latchkey" }
                    @if let Some((console, tenant)) = nav {
                        (navigation(console, tenant))
                    }
                }
                main #main {
                    h1 { (title) }
                    (body)
                }
            }
        }
    };
    Html(markup.into_string())
}

fn navigation(console: &Console, tenant: &TenantId) -> Markup {
    let base = format!("/console/t/{tenant}");
    html! {
        nav aria-label="Console" {
            ul {
                @if console.user().is_some() {
                    li { a href={ (base) "/tokens" } { "My tokens" } }
                }
                @if console.manages(tenant) {
                    li { a href={ (base) "/tenant-tokens" } { "Tenant tokens" } }
                    li { a href={ (base) "/members" } { "Members" } }
                    li { a href={ (base) "/policy" } { "Policy" } }
                    li { a href={ (base) "/audit" } { "Audit trail" } }
                }
                @if console.user().is_none() {
                    li { a href="/console/" { "Tenants" } }
                }
            }
            form.inline method="post" action="/console/logout" {
                (csrf(console))
                span.who {
                    @match console.user() {
                        Some(user) => { (user) " in " (tenant) }
                        None => { "operator" }
                    }
                }
                button type="submit" { "Sign out" }
            }
        }
    }
}

/// The hidden CSRF field of a session's form.
pub fn csrf(console: &Console) -> Markup {
    html! { input type="hidden" name="csrf" value=(console.csrf()); }
}

/// A page with a title and one paragraph (errors, notices).
pub fn message(title: &str, text: &str) -> Html<String> {
    page(
        title,
        None,
        html! {
            p { (text) }
            p { a href="/console/" { "Back to the console" } }
        },
    )
}

/// `at` relative to `now` ("3 hours ago", "in 2 days"), the exact time on hover.
pub fn time(at: Timestamp, now: Timestamp) -> Markup {
    let exact = at.to_rfc3339();
    html! { time datetime=(exact) title=(exact) { (relative(at, now)) } }
}

/// An optional time, or `never`-style text.
pub fn maybe_time(at: Option<Timestamp>, now: Timestamp, none: &str) -> Markup {
    match at {
        Some(at) => time(at, now),
        None => html! { span.muted { (none) } },
    }
}

/// "3 hours ago", "in 5 minutes", "just now".
pub fn relative(at: Timestamp, now: Timestamp) -> String {
    let seconds = (now.millis() - at.millis()) / 1000;
    let (past, magnitude) = (seconds >= 0, seconds.unsigned_abs());
    if magnitude < 45 {
        return "just now".to_owned();
    }
    let units: [(u64, &str); 6] = [
        (60, "minute"),
        (3_600, "hour"),
        (86_400, "day"),
        (2_592_000, "month"),
        (31_536_000, "year"),
        (u64::MAX, ""),
    ];
    let mut chosen = (60, "minute");
    for window in units.windows(2) {
        chosen = window[0];
        if magnitude < window[1].0.saturating_mul(9) / 10 {
            break;
        }
    }
    let count = ((magnitude as f64) / (chosen.0 as f64)).round().max(1.0) as u64;
    let plural = if count == 1 { "" } else { "s" };
    if past {
        format!("{count} {}{plural} ago", chosen.1)
    } else {
        format!("in {count} {}{plural}", chosen.1)
    }
}

/// An empty-state box that says what to do next.
pub fn empty(text: &str, action: Option<(&str, &str)>) -> Markup {
    html! {
        div.empty role="status" {
            p { (text) }
            @if let Some((href, label)) = action {
                p { a.button href=(href) { (label) } }
            }
        }
    }
}

/// A list of permission names as tags.
pub fn tags<'a>(items: impl IntoIterator<Item = &'a str>) -> Markup {
    let items: Vec<&str> = items.into_iter().collect();
    html! {
        @if items.is_empty() {
            span.muted { "none" }
        } @else {
            ul.tags { @for item in items { li { code { (item) } } } }
        }
    }
}

/// Marks text that is already HTML (the inline SVG chart).
pub fn raw(html: String) -> Markup {
    PreEscaped(html)
}

#[cfg(test)]
mod tests {
    use super::relative;
    use latchkey_core::Timestamp;

    #[test]
    fn relative_times_read_as_people_say_them() {
        let now = Timestamp::from_millis(1_000_000_000_000);
        let ago = |s: i64| relative(now.plus_seconds(-s), now);
        assert_eq!(ago(10), "just now");
        assert_eq!(ago(120), "2 minutes ago");
        assert_eq!(ago(3 * 3600), "3 hours ago");
        assert_eq!(ago(86_400), "1 day ago");
        assert_eq!(relative(now.plus_seconds(5 * 86_400), now), "in 5 days");
    }
}
