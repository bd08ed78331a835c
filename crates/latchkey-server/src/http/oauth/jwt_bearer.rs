//! The JWT-bearer grant (RFC 7523 §2.1; docs/API.md, "The JWT-bearer grant"): an
//! outside issuer's signed token — a CI job's OIDC ID token — exchanged for an access
//! token with the grant of the tenant's trust that accepts it.
//!
//! The steps, each refusing with `invalid_grant` and an `auth.failed` event naming the
//! reason: the assertion's header (asymmetric `alg`, a `kid`); the trusts naming its
//! `iss` (read unverified only to find them); the issuer's key by `kid` (discovered and
//! cached); the signature; `iss`, `aud`, `exp`, `nbf`, `iat` with a minute's leeway;
//! the trust whose audience, subject pattern and required claims all fit (one, or the
//! one `client_id` names); the `jti`, accepted once while the assertion lives. Then the
//! access token: the trust's grant now, `sub` the assertion's subject, `client_id` and
//! `trust_id` the trust's id, audited as `trust.exchanged` with who the caller was.

use super::client::OAuthRequest;
use super::error::{OAuthError, OAuthResult};
use super::token::{dpop_proof, narrow, requested_scope, resource, respond};
use crate::service::federation::KeyError;
use crate::service::issuer;
use crate::service::state::AppState;
use axum::response::Response;
use latchkey_core::TokenId;
use latchkey_core::audit::{AuditAction, AuditContext, AuditEvent};
use latchkey_core::jwt::b64url_decode;
use latchkey_core::permission::format_scope;
use latchkey_core::trust::Trust;
use latchkey_verify::InvalidReason;
use latchkey_verify::assertion::{self, Expect};
use serde_json::{Map, Value, json};

/// The grant type's name.
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Clock skew tolerated on the assertion's `exp`, `nbf` and `iat`.
pub const LEEWAY_SECONDS: i64 = 60;

/// The longest an assertion may still have to live (`exp - now`), beyond the leeway: CI
/// platforms sign for minutes, Kubernetes for an hour by default; the replay guard
/// keeps each `jti` that long at most.
pub const MAX_LIFETIME_SECONDS: i64 = 86_400;

/// Claims of a CI run copied into the `trust.exchanged` event when present (the "who"
/// of the five Ws: GitHub Actions and GitLab CI names).
const RUN_CLAIMS: [&str; 14] = [
    "repository",
    "repository_owner",
    "workflow",
    "workflow_ref",
    "job_workflow_ref",
    "run_id",
    "run_number",
    "run_attempt",
    "ref",
    "sha",
    "actor",
    "environment",
    "event_name",
    "project_path",
];

/// A refusal: the reason for the audit trail, and what the client is told.
struct Refused {
    reason: &'static str,
    description: String,
    issuer: Option<String>,
    /// The trust concerned, when one was found: its id and tenant.
    trust: Option<(TokenId, latchkey_core::TenantId)>,
}

impl Refused {
    fn new(reason: &'static str, description: impl Into<String>) -> Self {
        Self {
            reason,
            description: description.into(),
            issuer: None,
            trust: None,
        }
    }

    /// This refusal, about `trust` (and so its issuer), for the audit trail.
    fn about(mut self, trust: &Trust) -> Self {
        self.issuer = Some(trust.issuer.clone());
        self.trust = Some((trust.id, trust.tenant_id.clone()));
        self
    }

    fn invalid(reason: InvalidReason) -> Self {
        let code = match reason {
            InvalidReason::AlgorithmNotAllowed | InvalidReason::AlgorithmMismatch => {
                "algorithm_not_allowed"
            }
            InvalidReason::BadSignature => "bad_signature",
            InvalidReason::Expired => "expired",
            InvalidReason::InvalidClaim("exp") => "exp_too_far",
            InvalidReason::NotYetValid => "not_yet_valid",
            InvalidReason::IssuedInFuture => "issued_in_future",
            InvalidReason::WrongAudience => "wrong_audience",
            InvalidReason::WrongIssuer => "wrong_issuer",
            InvalidReason::MissingKid => "missing_kid",
            _ => "malformed_assertion",
        };
        Self::new(code, format!("the assertion is refused: {reason}"))
    }
}

/// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`.
pub async fn grant(state: &AppState, request: &OAuthRequest) -> OAuthResult<Response> {
    let assertion = request.form.require("assertion")?;
    match accept(state, request, assertion).await {
        Ok(response) => Ok(response),
        Err(Outcome::Error(error)) => Err(error),
        Err(Outcome::Refused(refused)) => {
            audit_failure(state, request, &refused).await;
            Err(OAuthError::invalid_grant(refused.description))
        }
    }
}

enum Outcome {
    Refused(Box<Refused>),
    Error(OAuthError),
}

impl From<Refused> for Outcome {
    fn from(refused: Refused) -> Self {
        Self::Refused(Box::new(refused))
    }
}

impl From<OAuthError> for Outcome {
    fn from(error: OAuthError) -> Self {
        Self::Error(error)
    }
}

impl From<crate::service::error::Error> for Outcome {
    fn from(error: crate::service::error::Error) -> Self {
        Self::Error(error.into())
    }
}

impl From<latchkey_core::store::StoreError> for Outcome {
    fn from(error: latchkey_core::store::StoreError) -> Self {
        Self::Error(error.into())
    }
}

/// The `iss` of a not yet verified payload: only a key to find trusts by.
fn unverified_issuer(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = b64url_decode(payload)?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    claims
        .get("iss")
        .and_then(Value::as_str)
        .filter(|iss| !iss.is_empty() && iss.len() <= latchkey_core::trust::MAX_TEXT)
        .map(str::to_owned)
}

async fn accept(state: &AppState, request: &OAuthRequest, text: &str) -> Result<Response, Outcome> {
    let parsed = assertion::parse(text).map_err(Refused::invalid)?;
    let issuer = unverified_issuer(text)
        .ok_or_else(|| Refused::new("malformed_assertion", "the assertion has no issuer"))?;
    let with_issuer = |mut refused: Refused| {
        refused.issuer = Some(issuer.clone());
        refused
    };
    let (mut trusts, mut cached) = state.trusts_for_issuer(&issuer, false).await?;
    if trusts.is_empty() && cached {
        (trusts, cached) = state.trusts_for_issuer(&issuer, true).await?;
    }
    if trusts.is_empty() {
        return Err(with_issuer(Refused::new(
            "unknown_issuer",
            "no trust accepts this issuer",
        ))
        .into());
    }
    let kid = parsed
        .kid()
        .ok_or_else(|| with_issuer(Refused::new("missing_kid", "the assertion names no kid")))?;
    let key = state.issuers().key(&issuer, kid).await.map_err(|error| {
        with_issuer(match error {
            KeyError::UnknownKey => Refused::new("unknown_key", "the issuer publishes no such key"),
            KeyError::Unreachable(_) => Refused::new(
                "issuer_unreachable",
                "the issuer's keys could not be fetched",
            ),
        })
    })?;
    let claims = parsed
        .verify(&key)
        .map_err(|reason| with_issuer(Refused::invalid(reason)))?;
    let audiences: Vec<&str> = trusts.iter().map(|t| t.audience.as_str()).collect();
    let expect = Expect {
        issuer: &issuer,
        audiences: &audiences,
        leeway_seconds: LEEWAY_SECONDS,
        max_lifetime_seconds: Some(MAX_LIFETIME_SECONDS + LEEWAY_SECONDS),
    };
    let now = state.now();
    let checked = assertion::check_claims(&claims, &expect, now)
        .map_err(|reason| with_issuer(Refused::invalid(reason)))?;
    let mut chosen = choose(request, &trusts, &claims, &checked.subject);
    if chosen.is_err() && cached {
        // A trust made on another replica since this one cached the issuer's.
        let (fresh, _) = state.trusts_for_issuer(&issuer, true).await?;
        chosen = choose(request, &fresh, &claims, &checked.subject);
    }
    let trust = chosen.map_err(with_issuer)?;
    let with_trust = |refused: Refused| refused.about(&trust);
    if trust.replay_protection {
        let jti = checked
            .jti
            .as_deref()
            .ok_or_else(|| with_trust(Refused::new("missing_jti", "the assertion has no jti")))?;
        let remember_until =
            latchkey_core::Timestamp::from_millis((checked.expires_at + LEEWAY_SECONDS) * 1000);
        if !state
            .store()
            .use_assertion_jti(&issuer, jti, remember_until, now)
            .await?
        {
            return Err(with_trust(Refused::new(
                "replayed_jti",
                "the assertion was used before",
            ))
            .into());
        }
    }
    issue(state, request, &trust, &claims, &checked.subject).await
}

/// The one trust that accepts the assertion: its audience, subject and required claims
/// all fit; among several, the one `client_id` names.
fn choose(
    request: &OAuthRequest,
    trusts: &[Trust],
    claims: &Map<String, Value>,
    subject: &str,
) -> Result<Trust, Refused> {
    let named = request
        .form
        .get("client_id")
        .map_err(|_| Refused::new("malformed_request", "client_id appears more than once"))?
        .map(|id| TokenId::parse(id).map_err(|_| Refused::new("unknown_trust", "no such trust")))
        .transpose()?;
    let mut reason = Refused::new("wrong_audience", "no trust accepts this audience");
    let mut fitting: Vec<&Trust> = Vec::new();
    for trust in trusts {
        if named.is_some_and(|id| id != trust.id) {
            continue;
        }
        if !audience_contains(claims.get("aud"), &trust.audience) {
            continue;
        }
        if !trust.subject.matches(subject) {
            // The reason kept is the furthest any trust got: audience, subject, claims.
            if reason.reason == "wrong_audience" {
                reason = Refused::new("subject_mismatch", "no trust accepts this subject");
            }
            continue;
        }
        if let Some((name, _)) = trust
            .claims
            .iter()
            .find(|(name, value)| claims.get(*name).and_then(Value::as_str) != Some(value))
        {
            reason = Refused::new(
                "claim_mismatch",
                format!("the assertion's {name} claim is not the one the trust requires"),
            );
            reason.trust = Some((trust.id, trust.tenant_id.clone()));
            continue;
        }
        fitting.push(trust);
    }
    match fitting.len() {
        1 => Ok(fitting[0].clone()),
        0 if named.is_some() && reason.reason == "wrong_audience" => Err(Refused::new(
            "unknown_trust",
            "the trust named does not accept this assertion",
        )),
        0 => Err(reason),
        _ => Err(Refused::new(
            "ambiguous_trust",
            "several trusts accept this assertion; name one with client_id",
        )),
    }
}

fn audience_contains(aud: Option<&Value>, audience: &str) -> bool {
    match aud {
        Some(Value::String(one)) => one == audience,
        Some(Value::Array(many)) => many.iter().any(|a| a.as_str() == Some(audience)),
        _ => false,
    }
}

async fn issue(
    state: &AppState,
    request: &OAuthRequest,
    trust: &Trust,
    claims: &Map<String, Value>,
    subject: &str,
) -> Result<Response, Outcome> {
    // What the trust grants now, judged as its access tokens are (docs/API.md,
    // "Trusts"): the usability rule and its tenant's network rules; cached.
    let refused =
        |reason: &'static str, description: String| Refused::new(reason, description).about(trust);
    let judged = state
        .trust_token(trust.id)
        .await?
        .ok_or_else(|| refused("unknown_trust", "the trust no longer exists".to_owned()))?;
    let granted = judged
        .usable(state.now(), request.meta.judged())
        .map_err(|refusal| {
            refused(
                refusal.audit_reason(),
                format!("the trust cannot be used: {refusal}"),
            )
        })?
        .clone();
    let requested = requested_scope(&request.form)?;
    let asked = requested.is_some();
    let scope = narrow(requested, &granted)?;
    let resource = resource(state, &request.form)?;
    let token = trust.as_token();
    let now = state.now();
    let expires_at = now.plus_seconds(i64::from(trust.access_token_ttl_seconds));
    let audience = issuer::audience_for(state, resource, &scope);
    let mut access = issuer::claims_for(state, &token, &scope, audience, Some(expires_at), false)
        .map_err(OAuthError::from)?;
    access.sub = subject.to_owned();
    access.trust_id = Some(trust.id.to_string());
    // With a DPoP proof the token is bound to its key, as a client's is; a tenant policy
    // requiring DPoP refuses an exchange without one (docs/API.md, "DPoP").
    let proof = dpop_proof(state, request, &judged).await?;
    access.cnf = proof.map(|proof| latchkey_wire::Confirmation { jkt: proof.jkt });
    let bound = access.cnf.is_some();
    let (jwt, _) = issuer::sign_with_current_key(state, &access).map_err(OAuthError::from)?;
    let expires_in = expires_at.unix_seconds() - now.unix_seconds();
    let run: Map<String, Value> = RUN_CLAIMS
        .iter()
        .filter_map(|name| claims.get(*name).map(|v| ((*name).to_owned(), v.clone())))
        .collect();
    let event = AuditEvent::new(
        AuditAction::TrustExchanged,
        Some(trust.tenant_id.as_str()),
        Some(trust.id.to_string()),
    )
    .with_details(json!({
        "issuer": trust.issuer,
        "subject": subject,
        "assertion_jti": claims.get("jti"),
        "run": run,
        "scope": asked.then(|| format_scope(&scope)),
        "jti": access.jti,
        "audience": resource.unwrap_or(&state.settings().default_audience),
        "expires_at": expires_at,
        "dpop_jkt": access.cnf.as_ref().map(|cnf| cnf.jkt.as_str()),
    }));
    state
        .audit()
        .record(context(state, request, &trust.id.to_string()), event)
        .await;
    Ok(respond(jwt, expires_in, &scope, None, bound))
}

fn context(state: &AppState, request: &OAuthRequest, actor: &str) -> AuditContext {
    AuditContext {
        actor: actor.to_owned(),
        actor_user: None,
        ip: request.meta.ip.map(|ip| ip.to_string()),
        user_agent: request.meta.agent(),
        at: state.now(),
    }
}

/// `auth.failed` for a refused assertion: the reason, and the issuer and trust when
/// known. Never the assertion itself.
async fn audit_failure(state: &AppState, request: &OAuthRequest, refused: &Refused) {
    let actor = refused
        .trust
        .as_ref()
        .map_or_else(|| "jwt-bearer".to_owned(), |(id, _)| id.to_string());
    let event = AuditEvent::new(
        AuditAction::AuthFailed,
        refused.trust.as_ref().map(|(_, tenant)| tenant.as_str()),
        Some(actor.clone()),
    )
    .with_details(json!({
        "reason": refused.reason,
        "endpoint": request.endpoint(),
        "grant_type": GRANT_TYPE,
        "issuer": refused.issuer,
    }));
    state
        .audit()
        .record(context(state, request, &actor), event)
        .await;
}
