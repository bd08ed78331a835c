//! The console's sessions (docs/CONSOLE.md): single-use codes a host app hands its users,
//! operators' sign-ins with an admin key, the cookie that carries a session, the CSRF
//! token tied to it, and the secrets a session shows once.
//!
//! Policy: codes and cookies are 256-bit random values, stored only as their SHA-256
//! digests (high-entropy secrets need no slow hash; docs/DESIGN.md explains the same
//! choice for token secrets). A code opens at most once and within 5 minutes; a session
//! lasts at most an hour. The CSRF token is an HMAC of the cookie's secret, so it is
//! tied to that one session and needs no storage. A secret shown once is held sealed
//! under the master key, bound to its session, and deleted when its page is read.

use crate::service::error::{Error, Result};
use crate::service::state::AppState;
use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::{digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use latchkey_core::audit::AuditContext;
use latchkey_core::store::{ConsoleKey, ConsoleSession};
use latchkey_core::{TenantId, TokenId, UserId};

/// How long a session's code may be opened: 5 minutes.
pub const CODE_SECONDS: i64 = 300;
/// How long a session lasts at most: 1 hour.
pub const SESSION_SECONDS: i64 = 3600;
/// How long a secret waits for the page that shows it.
const REVEAL_SECONDS: i64 = 300;

/// A random 256-bit value in base64url, for a code or a cookie.
fn random_value(state: &AppState) -> Result<String> {
    let mut bytes = [0u8; 32];
    state.rng().fill(&mut bytes).map_err(Error::internal)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// A fresh value for the sign-in form's pre-session cookie; the form carries its
/// [`csrf_token`].
pub fn new_login_nonce(state: &AppState) -> Result<String> {
    random_value(state)
}

/// The stored form of a code or cookie secret.
pub fn digest(value: &str) -> Vec<u8> {
    digest::digest(&digest::SHA256, value.as_bytes())
        .as_ref()
        .to_vec()
}

/// Whether `value` can be a code or cookie this module made: refuses anything else
/// before a store lookup.
pub fn well_formed(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A code just made: the value for the URL (shown once) and its session.
pub struct NewCode {
    pub code: String,
    pub session: ConsoleSession,
}

/// Makes a session for `user` in `tenant` reached by a single-use code.
pub async fn create_code(
    state: &AppState,
    ctx: &AuditContext,
    tenant: &TenantId,
    user: &UserId,
) -> Result<NewCode> {
    let code = random_value(state)?;
    let now = ctx.at;
    let session = ConsoleSession {
        id: TokenId::generate(state.rng()).map_err(Error::internal)?,
        tenant_id: tenant.clone(),
        user_id: Some(user.clone()),
        admin_token_id: None,
        created_at: now,
        created_by: ctx.actor.clone(),
        code_expires_at: now.plus_seconds(CODE_SECONDS),
        opened_at: None,
        expires_at: now.plus_seconds(CODE_SECONDS + SESSION_SECONDS),
        ended_at: None,
    };
    state
        .store()
        .create_console_session(&session, &ConsoleKey::Code(digest(&code)), ctx)
        .await?;
    Ok(NewCode { code, session })
}

/// Opens the session of `code`, once; returns the session and its cookie secret, or
/// `None` when the code is unknown, used or expired.
pub async fn open_code(state: &AppState, code: &str) -> Result<Option<(ConsoleSession, String)>> {
    if !well_formed(code) {
        return Ok(None);
    }
    let now = state.now();
    let cookie = random_value(state)?;
    let opened = state
        .store()
        .open_console_session(
            &digest(code),
            &digest(&cookie),
            now.plus_seconds(SESSION_SECONDS),
            now,
        )
        .await?;
    Ok(opened.map(|session| (session, cookie)))
}

/// Starts an operator's session for the admin key `admin_token`; returns it with its
/// cookie secret.
pub async fn sign_in(
    state: &AppState,
    ctx: &AuditContext,
    admin_token: TokenId,
) -> Result<(ConsoleSession, String)> {
    let cookie = random_value(state)?;
    let now = ctx.at;
    let session = ConsoleSession {
        id: TokenId::generate(state.rng()).map_err(Error::internal)?,
        tenant_id: TenantId::system(),
        user_id: None,
        admin_token_id: Some(admin_token),
        created_at: now,
        created_by: ctx.actor.clone(),
        code_expires_at: now,
        opened_at: Some(now),
        expires_at: now.plus_seconds(SESSION_SECONDS),
        ended_at: None,
    };
    state
        .store()
        .create_console_session(&session, &ConsoleKey::Cookie(digest(&cookie)), ctx)
        .await?;
    Ok((session, cookie))
}

/// The live session whose cookie secret is `cookie`.
pub async fn live_session(state: &AppState, cookie: &str) -> Result<Option<ConsoleSession>> {
    if !well_formed(cookie) {
        return Ok(None);
    }
    let found = state.store().console_session(&digest(cookie)).await?;
    Ok(found.filter(|session| session.is_live(state.now())))
}

/// The CSRF token of the session whose cookie secret is `cookie`.
pub fn csrf_token(cookie: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, cookie.as_bytes());
    URL_SAFE_NO_PAD.encode(hmac::sign(&key, b"latchkey console csrf").as_ref())
}

/// Whether `presented` is the CSRF token of the session of `cookie`, compared in
/// constant time.
pub fn csrf_matches(cookie: &str, presented: &str) -> bool {
    let Ok(presented) = URL_SAFE_NO_PAD.decode(presented) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, cookie.as_bytes());
    hmac::verify(&key, b"latchkey console csrf", &presented).is_ok()
}

fn reveal_label(session: TokenId, id: TokenId) -> String {
    format!("console-reveal:{session}:{id}")
}

/// Holds `secret` for the one page of `session` that shows it; returns its id.
pub async fn hold_secret(state: &AppState, session: TokenId, secret: &str) -> Result<TokenId> {
    let id = TokenId::generate(state.rng()).map_err(Error::internal)?;
    let sealed = state
        .keyring()
        .master()
        .seal(&reveal_label(session, id), secret.as_bytes())?;
    let expires = state.now().plus_seconds(REVEAL_SECONDS);
    state
        .store()
        .put_console_reveal(session, id, &sealed, expires)
        .await?;
    Ok(id)
}

/// Takes the secret held as `id` for `session`: `None` once it has been shown.
pub async fn take_secret(
    state: &AppState,
    session: TokenId,
    id: TokenId,
) -> Result<Option<String>> {
    let Some(sealed) = state
        .store()
        .take_console_reveal(session, id, state.now())
        .await?
    else {
        return Ok(None);
    };
    let open = state
        .keyring()
        .master()
        .open(&reveal_label(session, id), &sealed)
        .map_err(|_| Error::internal("a held console secret does not open"))?;
    String::from_utf8(open)
        .map(Some)
        .map_err(|_| Error::internal("a held console secret is not text"))
}

/// Ends a session; false when it had already ended.
pub async fn end(state: &AppState, ctx: &AuditContext, id: TokenId) -> Result<bool> {
    Ok(state.store().end_console_session(id, ctx).await?)
}
