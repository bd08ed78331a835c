//! Reading OAuth requests (form bodies) and authenticating OAuth clients with
//! `client_secret_basic` or `client_secret_post` (RFC 6749 §2.3.1).
//!
//! Every failure, whatever its cause (unknown client, wrong secret, revoked, expired,
//! user gone, address not allowed), gives the same `invalid_client` answer after the
//! same work: an unknown client is looked up (and cached) like a known one, and its
//! presented secret is checked against a dummy hash.

use super::error::{OAuthError, OAuthResult};
use crate::cache::CachedToken;
use crate::extract::{BODY_LIMIT, client_addr, client_meta, form_pairs};
use crate::state::AppState;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use latchkey_core::TokenId;
use latchkey_core::audit::{AuditAction, AuditContext, AuditEvent};
use latchkey_core::secret::{SecretType, StoredSecret};
use latchkey_core::token::TokenKind;
use serde_json::json;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// A decoded `application/x-www-form-urlencoded` body.
#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    /// The single value of `name`; a parameter sent twice is an `invalid_request`
    /// (RFC 6749 §3.1). An empty value counts as absent.
    pub fn get(&self, name: &str) -> OAuthResult<Option<&str>> {
        let mut values = self.pairs.iter().filter(|(key, _)| key == name);
        let first = values.next();
        if values.next().is_some() {
            return Err(OAuthError::invalid_request(format!(
                "parameter `{name}` appears more than once"
            )));
        }
        Ok(first
            .map(|(_, value)| value.as_str())
            .filter(|v| !v.is_empty()))
    }

    /// The value of `name`, which must be present.
    pub fn require(&self, name: &str) -> OAuthResult<&str> {
        self.get(name)?
            .ok_or_else(|| OAuthError::invalid_request(format!("parameter `{name}` is required")))
    }
}

/// Reads a form POST: the content type must be form-encoded and the body at most 64 KiB.
pub async fn read_form(request: Request) -> OAuthResult<(Parts, Form)> {
    let (parts, body) = request.into_parts();
    let form_encoded = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| {
            mime.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form_encoded {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| OAuthError::too_large(BODY_LIMIT))?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|_| OAuthError::invalid_request("the body is not UTF-8"))?;
    Ok((
        parts,
        Form {
            pairs: form_pairs(text),
        },
    ))
}

/// The credentials a client presented, by either method.
struct Presented {
    client_id: String,
    secret: String,
}

fn presented(headers: &HeaderMap, form: &Form) -> OAuthResult<Presented> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, encoded)| encoded);
    let body_id = form.get("client_id")?;
    let body_secret = form.get("client_secret")?;
    if basic.is_some() && body_secret.is_some() {
        return Err(OAuthError::invalid_request(
            "use one client authentication method, not both",
        ));
    }
    if let Some(encoded) = basic {
        return decode_basic(encoded);
    }
    match (body_id, body_secret) {
        (Some(id), Some(secret)) => Ok(Presented {
            client_id: id.to_owned(),
            secret: secret.to_owned(),
        }),
        _ => Err(OAuthError::invalid_client()),
    }
}

fn decode_basic(encoded: &str) -> OAuthResult<Presented> {
    let decoded = STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(OAuthError::invalid_client)?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(OAuthError::invalid_client)?;
    // RFC 6749 §2.3.1: both halves are form-urlencoded before Basic encoding.
    let decode = |text: &str| {
        form_pairs(&format!("v={text}"))
            .pop()
            .map(|(_, v)| v)
            .unwrap_or_default()
    };
    Ok(Presented {
        client_id: decode(id),
        secret: decode(secret),
    })
}

fn dummy_secret() -> &'static StoredSecret {
    static DUMMY: OnceLock<StoredSecret> = OnceLock::new();
    DUMMY.get_or_init(|| StoredSecret {
        salt: vec![0x5a; 16],
        hash: vec![0u8; 32],
    })
}

/// Authenticates the client of an OAuth request and returns its token. Failures are
/// throttled as [`super::throttle`] describes: against the address always, against the
/// client id only when the attempt was a guess at its secret.
pub async fn authenticate(
    state: &AppState,
    parts: &Parts,
    form: &Form,
) -> OAuthResult<Arc<CachedToken>> {
    let ip = client_addr(parts, state);
    let presented = presented(&parts.headers, form)?;
    let client = TokenId::parse(&presented.client_id).ok();
    if let Some(wait) = state.throttle().blocked(client, ip) {
        record_failure(state, parts, &presented.client_id, None, "throttled").await;
        return Err(OAuthError::throttled(wait));
    }
    match check(state, &presented, ip).await? {
        Ok(token) => {
            state.throttle().succeeded(token.record.token.id, ip);
            Ok(token)
        }
        Err((reason, tenant)) => {
            let guessed = client.filter(|_| is_client_secret(state, &presented.secret));
            state.throttle().failed(guessed, ip);
            record_failure(
                state,
                parts,
                &presented.client_id,
                tenant.as_deref(),
                reason,
            )
            .await;
            Err(OAuthError::invalid_client())
        }
    }
}

/// Whether `secret` passes the format and checksum check of a client secret: only then
/// can it be a guess at one, and only then does its failure count against the client.
fn is_client_secret(state: &AppState, secret: &str) -> bool {
    state
        .codec()
        .parse(secret)
        .is_ok_and(|parsed| parsed.kind == SecretType::ClientSecret)
}

/// Audits a failed authentication. The actor is the presented client id only when it is
/// a well-formed one: whatever else was sent there (a secret pasted into the wrong
/// field, say) never reaches the audit trail.
pub async fn record_failure(
    state: &AppState,
    parts: &Parts,
    client_id: &str,
    tenant: Option<&str>,
    reason: &'static str,
) {
    let meta = client_meta(parts, state);
    let context = AuditContext {
        actor: TokenId::parse(client_id)
            .map(|id| id.to_string())
            .unwrap_or_else(|_| "malformed client_id".to_owned()),
        actor_user: None,
        ip: meta.ip.map(|ip| ip.to_string()),
        user_agent: meta.user_agent,
        at: state.now(),
    };
    let event = AuditEvent::new(AuditAction::AuthFailed, tenant, Some(context.actor.clone()))
        .with_details(json!({ "reason": reason, "endpoint": parts.uri.path() }));
    state.audit().record(context, event).await;
}

/// Why a client was refused (for the audit trail only), and its tenant when known.
type Refusal = (&'static str, Option<String>);

async fn check(
    state: &AppState,
    presented: &Presented,
    ip: Option<IpAddr>,
) -> OAuthResult<Result<Arc<CachedToken>, Refusal>> {
    let Ok(parsed) = state.codec().parse(&presented.secret) else {
        return Ok(Err(("malformed_secret", None)));
    };
    if parsed.kind != SecretType::ClientSecret {
        return Ok(Err(("not_a_client_secret", None)));
    }
    let Ok(id) = TokenId::parse(&presented.client_id) else {
        state.codec().verify(&parsed, dummy_secret());
        return Ok(Err(("unknown_client", None)));
    };
    let Some(token) = state.token(id).await? else {
        state.codec().verify(&parsed, dummy_secret());
        return Ok(Err(("unknown_client", None)));
    };
    let stored = token.record.secret.as_ref().unwrap_or(dummy_secret());
    let verified = state.codec().verify(&parsed, stored);
    let record = &token.record.token;
    let tenant = Some(record.owner.tenant_id().to_string());
    if !verified || record.kind != TokenKind::ClientCredentials {
        return Ok(Err(("bad_secret", tenant)));
    }
    match token.usable(state.now(), crate::auth::client(ip)) {
        Ok(_) => Ok(Ok(token)),
        Err(refusal) => Ok(Err((refusal.audit_reason(), tenant))),
    }
}

#[cfg(test)]
mod proptests;
