//! `private_key_jwt` client authentication (RFC 7523 §2.2, OpenID Connect Core §9;
//! docs/API.md, "Clients with a private key"): a `client_credentials` token made with a
//! public JWK authenticates with a JWT it signs with the private key.
//!
//! The steps, each a refusal with its own audit reason: no secret beside the assertion;
//! the assertion type; the header (`latchkey_verify::assertion::parse`: size, strict
//! base64url, an asymmetric `alg`, no `jwk`/`jku`/`x5u`/`x5c`/`crit`); the client, named
//! by `client_id` or else by the assertion's `iss`; a client that has a key; the
//! signature by that key; `iss` the client id, `aud` the issuer or the token endpoint
//! URL and nothing else, `exp` required and at most [`MAX_LIFETIME_SECONDS`] ahead (plus
//! the leeway), `nbf`/`iat` not in the future; `sub` the client id; a `jti`; the one
//! usability rule; and last the `jti`, remembered in the store until the assertion
//! expires so that no replica accepts it twice. The replay guard is the one trusts use
//! (`Store::use_assertion_jti`) under the client id as the issuer: a trust's issuer is
//! an http(s) URL, a client id never is, so the two never share a key.

use crate::service::cache::CachedToken;
use crate::service::client::ClientMeta;
use crate::service::error::Result;
use crate::service::state::AppState;
use latchkey_core::jwt::b64url_decode;
use latchkey_core::token::TokenKind;
use latchkey_core::{Timestamp, TokenId};
use latchkey_verify::InvalidReason;
use latchkey_verify::assertion::{self, Expect, PublicKey};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The `client_assertion_type` of a JWT client assertion.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest an assertion may still have to live (`exp - now`), beyond the leeway:
/// the replay guard remembers each `jti` that long at most.
pub const MAX_LIFETIME_SECONDS: i64 = 3600;

/// Clock skew tolerated on the assertion's `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: i64 = 60;

/// A client assertion as the request carried it, read but not checked.
#[derive(Debug)]
pub struct ClientAssertion {
    /// The `client_id` form parameter, when sent.
    pub client_id: Option<String>,
    /// `client_assertion_type`, when sent.
    pub assertion_type: Option<String>,
    /// `client_assertion`, when sent.
    pub assertion: Option<String>,
    /// Whether a client secret came too (Basic or `client_secret`).
    pub with_secret: bool,
}

impl ClientAssertion {
    /// The client it claims to be: `client_id`, else the unverified `iss`; empty when
    /// neither is there.
    pub fn claimed_client(&self) -> String {
        self.client_id
            .clone()
            .or_else(|| self.assertion.as_deref().and_then(unverified_issuer))
            .unwrap_or_default()
    }
}

/// The `iss` of an unverified assertion: only a name to find the client by.
fn unverified_issuer(assertion: &str) -> Option<String> {
    if assertion.len() > assertion::MAX_ASSERTION_BYTES {
        return None;
    }
    let payload = assertion.split('.').nth(1)?;
    let claims: Map<String, Value> = serde_json::from_slice(&b64url_decode(payload)?).ok()?;
    claims.get("iss").and_then(Value::as_str).map(str::to_owned)
}

/// Why an assertion was refused (for the audit trail only), and the client's tenant
/// when the client is known.
pub type Refusal = (&'static str, Option<String>);

/// Checks `presented` and returns its client's token, or why it was refused.
pub async fn check(
    state: &AppState,
    presented: &ClientAssertion,
    meta: &ClientMeta,
) -> Result<std::result::Result<Arc<CachedToken>, Refusal>> {
    if presented.with_secret {
        return Ok(Err(("multiple_methods", None)));
    }
    if presented.assertion_type.as_deref() != Some(ASSERTION_TYPE) {
        return Ok(Err(("unsupported_assertion_type", None)));
    }
    let Some(text) = presented.assertion.as_deref() else {
        return Ok(Err(("missing_assertion", None)));
    };
    let parsed = match assertion::parse(text) {
        Ok(parsed) => parsed,
        Err(reason) => return Ok(Err((reason_code(&reason), None))),
    };
    let client_id = presented.claimed_client();
    let Ok(id) = TokenId::parse(&client_id) else {
        return Ok(Err(("unknown_client", None)));
    };
    let Some(token) = state.token(id).await? else {
        return Ok(Err(("unknown_client", None)));
    };
    let record = &token.record.token;
    let tenant = Some(record.owner.tenant_id().to_string());
    let refused = |reason: &'static str| Ok(Err((reason, tenant.clone())));
    let Some(client_key) = record
        .public_key
        .as_ref()
        .filter(|_| record.kind == TokenKind::ClientCredentials)
    else {
        return refused("not_a_key_client");
    };
    let Ok(key) = PublicKey::from_jwk_object(client_key.jwk()) else {
        return refused("unusable_key");
    };
    let claims = match parsed.verify(&key) {
        Ok(claims) => claims,
        Err(reason) => return refused(reason_code(&reason)),
    };
    let issuer = &state.settings().public_url;
    let token_endpoint = format!("{issuer}/oauth/token");
    let expect = Expect {
        issuer: &client_id,
        audiences: &[issuer.as_str(), token_endpoint.as_str()],
        leeway_seconds: LEEWAY_SECONDS,
        max_lifetime_seconds: Some(MAX_LIFETIME_SECONDS + LEEWAY_SECONDS),
    };
    let now = state.now();
    let checked = match assertion::check_claims(&claims, &expect, now) {
        Ok(checked) => checked,
        Err(reason) => return refused(reason_code(&reason)),
    };
    if checked.subject != client_id {
        return refused("subject_mismatch");
    }
    let Some(jti) = checked.jti.as_deref() else {
        return refused("missing_jti");
    };
    if let Err(refusal) = token.usable(now, meta.judged()) {
        return refused(refusal.audit_reason());
    }
    let remember_until = Timestamp::from_millis(
        checked
            .expires_at
            .saturating_add(LEEWAY_SECONDS)
            .saturating_mul(1000),
    );
    if !state
        .store()
        .use_assertion_jti(&client_id, jti, remember_until, now)
        .await?
    {
        return refused("replayed_jti");
    }
    Ok(Ok(token))
}

/// The audit reason of an assertion the verifier refused (docs/API.md, "Failed
/// authentications").
fn reason_code(reason: &InvalidReason) -> &'static str {
    match reason {
        InvalidReason::TooLarge => "assertion_too_large",
        InvalidReason::AlgorithmNotAllowed | InvalidReason::AlgorithmMismatch => {
            "algorithm_not_allowed"
        }
        InvalidReason::ForbiddenHeader(_) | InvalidReason::CriticalExtension => "forbidden_header",
        InvalidReason::WrongType => "wrong_type",
        InvalidReason::BadSignature => "bad_signature",
        InvalidReason::WrongIssuer => "wrong_issuer",
        InvalidReason::WrongAudience => "wrong_audience",
        InvalidReason::Expired => "assertion_expired",
        InvalidReason::InvalidClaim("exp") => "exp_too_far",
        InvalidReason::NotYetValid => "not_yet_valid",
        InvalidReason::IssuedInFuture => "issued_in_future",
        InvalidReason::MissingClaim(_) => "missing_claim",
        _ => "malformed_assertion",
    }
}
