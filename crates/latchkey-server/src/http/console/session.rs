//! Who is using the console: the session cookie, read on every request and checked
//! against the store and the user's current membership (docs/CONSOLE.md, "Sessions"),
//! and the CSRF check of every state-changing form.

use super::ConsoleError;
use crate::http::auth::Caller;
use crate::http::extract::client_meta;
use crate::service::client::ClientMeta;
use crate::service::console;
use crate::service::state::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, header};
use latchkey_core::permission::Authority;
use latchkey_core::store::ConsoleSession;
use latchkey_core::{Permission, PermissionSet, TenantId, UserId};

/// The session cookie's name. It is scoped to `/console` (docs/CONSOLE.md).
pub const COOKIE: &str = "lk_console";
/// The pre-session cookie of the sign-in form's CSRF check.
pub const LOGIN_COOKIE: &str = "lk_console_login";

/// The value of cookie `name` in a request, if it sent exactly one such cookie.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    let mut found = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned());
    let first = found.next()?;
    found.next().is_none().then_some(first)
}

/// A `Set-Cookie` value for the console: HttpOnly, SameSite=Strict, Path=/console, and
/// Secure when the public URL is https. `max_age` 0 deletes it.
pub fn set_cookie(state: &AppState, name: &str, value: &str, max_age: i64) -> HeaderValue {
    let secure = if state.settings().public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    let text = format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// Who a session acts as, read again on every request.
#[derive(Debug, Clone)]
pub enum Who {
    /// An operator signed in with an admin key that is still valid.
    Admin,
    /// A member of the session's tenant, with what its roles grant now.
    Member { user: UserId, holds: PermissionSet },
}

/// A live console session and what it may do now.
#[derive(Debug, Clone)]
pub struct Console {
    pub session: ConsoleSession,
    cookie: String,
    pub who: Who,
    pub meta: ClientMeta,
}

impl Console {
    /// The CSRF token every form of this session carries.
    pub fn csrf(&self) -> String {
        console::csrf_token(&self.cookie)
    }

    /// Whether `presented` is this session's CSRF token.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        console::csrf_matches(&self.cookie, presented)
    }

    /// The user it acts as, if it is a member's session.
    pub fn user(&self) -> Option<&UserId> {
        match &self.who {
            Who::Admin => None,
            Who::Member { user, .. } => Some(user),
        }
    }

    /// Whether it may manage `tenant`: an operator anywhere, a member holding
    /// `latchkey:manage` in its own tenant.
    pub fn manages(&self, tenant: &TenantId) -> bool {
        match &self.who {
            Who::Admin => true,
            Who::Member { holds, .. } => {
                *tenant == self.session.tenant_id && holds.iter().any(Permission::is_manage)
            }
        }
    }

    /// Whether it may see pages of `tenant` at all.
    pub fn sees(&self, tenant: &TenantId) -> bool {
        matches!(self.who, Who::Admin) || *tenant == self.session.tenant_id
    }

    /// Whether it holds `permission`: an operator holds everything.
    pub fn holds(&self, permission: &Permission) -> bool {
        match &self.who {
            Who::Admin => true,
            Who::Member { holds, .. } => holds.contains(permission),
        }
    }

    /// Whether every built-in permission among `granted` is one it holds: a session
    /// never acts on a token stronger than its user (docs/CONSOLE.md, "Authority").
    pub fn holds_builtins_of(&self, granted: &PermissionSet) -> bool {
        granted
            .iter()
            .filter(|p| p.is_builtin())
            .all(|p| self.holds(p))
    }

    /// The management caller its actions go through, so that they meet the API's rules
    /// and audit (actor `console:<session id>`, actor_user the user). A member's session
    /// carries its tenant's manager authority; the console itself limits a plain
    /// member to their own personal tokens, and the grant checks bound every token by
    /// what the user holds.
    pub fn caller(&self) -> Caller {
        let authority = match self.who {
            Who::Admin => Authority::Admin,
            Who::Member { .. } => Authority::Manager(self.session.tenant_id.clone()),
        };
        Caller {
            token_id: self.session.admin_token_id.unwrap_or(self.session.id),
            user: self.user().cloned(),
            authority,
            meta: self.meta.clone(),
            console_session: Some(self.session.id),
        }
    }
}

impl FromRequestParts<AppState> for Console {
    type Rejection = ConsoleError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ConsoleError> {
        let cookie = cookie(&parts.headers, COOKIE).ok_or(ConsoleError::NoSession)?;
        let session = console::live_session(state, &cookie)
            .await?
            .ok_or(ConsoleError::NoSession)?;
        let who = match (&session.user_id, session.admin_token_id) {
            (Some(user), _) => {
                let membership = state
                    .store()
                    .get_membership(&session.tenant_id, user)
                    .await?
                    .ok_or(ConsoleError::NoSession)?;
                Who::Member {
                    user: user.clone(),
                    holds: membership.permission_set(),
                }
            }
            (None, Some(admin)) => {
                let now = state.now();
                let still_admin = state.token(admin).await?.is_some_and(|cached| {
                    cached.record.token.is_active(now)
                        && cached.record.token.owner.tenant_id().is_system()
                        && cached.effective.iter().any(Permission::is_admin)
                });
                if !still_admin {
                    return Err(ConsoleError::NoSession);
                }
                Who::Admin
            }
            (None, None) => return Err(ConsoleError::NoSession),
        };
        Ok(Console {
            session,
            cookie,
            who,
            meta: client_meta(parts, state),
        })
    }
}

/// A state-changing form of a session: its fields in order, after the CSRF check
/// (a missing or wrong `csrf` field is 403 and nothing happens).
pub struct CheckedForm {
    pub console: Console,
    pub fields: Vec<(String, String)>,
}

impl CheckedForm {
    /// The first value of field `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of field `name`.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
            .collect()
    }
}

impl FromRequest<AppState> for CheckedForm {
    type Rejection = ConsoleError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ConsoleError> {
        let (mut parts, body) = request.into_parts();
        let console = Console::from_request_parts(&mut parts, state).await?;
        refuse_cross_site(&parts.headers)?;
        let request = Request::from_parts(parts, body);
        let fields = form_fields(request, state).await?;
        let form = CheckedForm { console, fields };
        let token = form.get("csrf").unwrap_or("");
        if !form.console.csrf_matches(token) {
            return Err(ConsoleError::Csrf);
        }
        Ok(form)
    }
}

/// The fields of a form body (`application/x-www-form-urlencoded`), in order.
pub async fn form_fields(
    request: Request,
    state: &AppState,
) -> Result<Vec<(String, String)>, ConsoleError> {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(ConsoleError::BadForm);
    }
    let bytes = Bytes::from_request(request, state)
        .await
        .map_err(|_| ConsoleError::BadForm)?;
    serde_urlencoded::from_bytes(&bytes).map_err(|_| ConsoleError::BadForm)
}

/// Refuses a request a browser says came from another site, before any token check.
pub fn refuse_cross_site(headers: &HeaderMap) -> Result<(), ConsoleError> {
    let site = headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok());
    if site == Some("cross-site") {
        return Err(ConsoleError::Csrf);
    }
    Ok(())
}
