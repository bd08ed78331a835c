//! Authenticating credentials: api keys and the server's own JWTs on the management API,
//! and OAuth clients' id and secret. Each ends in the one usability rule
//! (`latchkey_core::usable`, docs/API.md, "When a token is usable").
//!
//! A management credential's format and checksum are checked before any store lookup;
//! then the token is read by the id inside the key, its secret verified in constant
//! time, and the rule applied. A JWT is accepted here only when its `aud` is, or
//! contains, the server's issuer URL: whoever received a JWT minted for another resource
//! could replay it.
//!
//! An OAuth client's failure, whatever its cause (unknown client, wrong secret, revoked,
//! expired, user gone, address not allowed), is one refusal after the same work: an
//! unknown client is looked up (and cached) like a known one, and its presented secret
//! is checked against a dummy hash.

use crate::service::cache::CachedToken;
use crate::service::client::ClientMeta;
use crate::service::client_assertion::{self, ClientAssertion};
use crate::service::error::{Error, Result};
use crate::service::jwt;
use crate::service::state::AppState;
use latchkey_core::TokenId;
use latchkey_core::audit::{AuditAction, AuditContext, AuditEvent};
use latchkey_core::permission::{PermissionSet, parse_scope};
use latchkey_core::secret::{SecretFormatError, SecretType, StoredSecret};
use latchkey_core::token::{Token, TokenKind};
use latchkey_core::usable::narrow;
use serde_json::json;
use std::sync::{Arc, OnceLock};

/// Authenticates a management credential (an api key or one of our JWTs) and returns
/// its token and what it grants now.
///
/// `dpop` is the proof check of the request when it came with the `DPoP` scheme, `None`
/// for `Bearer`: a DPoP-bound JWT (`cnf.jkt`) is accepted only with a proof by its key
/// (docs/API.md, "DPoP"), and a credential that is not bound only without one.
pub async fn authenticate_bearer(
    state: &AppState,
    presented: &str,
    meta: &ClientMeta,
    dpop: Option<DpopUse<'_>>,
) -> Result<(Arc<CachedToken>, PermissionSet)> {
    let (cached, granted, jkt) = if looks_like_jwt(state, presented) {
        authenticate_access_token(state, presented, meta).await?
    } else {
        let cached = authenticate_api_key(state, presented, meta).await?;
        let granted = cached.effective.clone();
        (cached, granted, None)
    };
    match (jkt, dpop) {
        (None, None) => {}
        (Some(_), None) => {
            return Err(Error::invalid_credential(
                "the credential is DPoP-bound; present it as `Authorization: DPoP` with a proof",
            ));
        }
        (None, Some(_)) => {
            return Err(Error::invalid_credential(
                "the credential is not DPoP-bound; present it as a bearer credential",
            ));
        }
        (Some(jkt), Some(dpop)) => check_dpop(state, presented, &jkt, dpop).await?,
    }
    Ok((cached, granted))
}

/// The request a DPoP-scheme credential came with.
#[derive(Debug, Clone, Copy)]
pub struct DpopUse<'a> {
    /// The request's method.
    pub method: &'a str,
    /// The request's path; the server's public URL gives the rest of `htu`.
    pub path: &'a str,
    /// The `DPoP` header, if there is exactly one.
    pub proof: Option<&'a str>,
}

/// Checks the proof of a management request made with a token bound to `jkt`, and
/// remembers it so that no replica accepts it again.
async fn check_dpop(state: &AppState, token: &str, jkt: &str, dpop: DpopUse<'_>) -> Result<()> {
    use latchkey_verify::dpop::{ProofError, ProofExpectations, check_proof};
    let window = DPOP_WINDOW_SECONDS;
    let refused =
        |error: ProofError| Error::invalid_credential(format!("invalid DPoP proof: {error}"));
    let proof = dpop.proof.ok_or(refused(ProofError::Missing))?;
    let uri = format!("{}{}", state.settings().public_url, dpop.path);
    let now = state.now();
    let expect = ProofExpectations {
        method: dpop.method,
        uri: &uri,
        access_token: Some(token),
        now,
        window_seconds: window,
    };
    let checked = check_proof(proof, &expect).map_err(refused)?;
    if checked.jkt != jkt {
        return Err(refused(ProofError::KeyMismatch));
    }
    if !first_use_of_proof(state, &checked).await? {
        return Err(refused(ProofError::Replayed));
    }
    Ok(())
}

/// How far a DPoP proof's `iat` may be from the server's now, either way (docs/API.md,
/// "DPoP").
pub const DPOP_WINDOW_SECONDS: i64 = 60;

/// Remembers a checked DPoP proof in the store, for every replica, until the window
/// would refuse it anyway; false when it was remembered already (a replay).
pub async fn first_use_of_proof(
    state: &AppState,
    checked: &latchkey_verify::dpop::CheckedProof,
) -> Result<bool> {
    let key: String = checked
        .replay_key()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let until =
        latchkey_core::Timestamp::from_millis(checked.remember_until_ms(DPOP_WINDOW_SECONDS));
    Ok(state
        .store()
        .remember_dpop_proof(&key, until, state.now())
        .await?)
}

fn looks_like_jwt(state: &AppState, presented: &str) -> bool {
    !presented.starts_with(state.codec().prefix().as_str()) && presented.matches('.').count() == 2
}

/// Checks one of the server's own JWTs: signature by a published key, expiry, an
/// audience that is or contains the issuer, the deny list, and the usability of its
/// token. What it grants is its `scope` narrowed to what its token grants now.
async fn authenticate_access_token(
    state: &AppState,
    presented: &str,
    meta: &ClientMeta,
) -> Result<(Arc<CachedToken>, PermissionSet, Option<String>)> {
    let keys = state.keyring().keys();
    let issuer = &state.settings().public_url;
    let claims =
        jwt::verify(&keys, issuer, presented, state.now().unix_seconds()).map_err(|rejected| {
            Error::invalid_credential(match rejected {
                jwt::Rejected::Expired => "credential expired",
                jwt::Rejected::Invalid => "invalid credential",
            })
        })?;
    if !claims.aud.contains(issuer) {
        return Err(Error::invalid_credential(
            "the credential's audience is not this server",
        ));
    }
    if state.keyring().is_jti_revoked(&claims.jti) {
        return Err(Error::invalid_credential("credential revoked"));
    }
    let refused = || Error::invalid_credential("invalid credential");
    let id = TokenId::parse(&claims.client_id).map_err(|_| refused())?;
    let cached = state.token(id).await?.ok_or_else(refused)?;
    if claims.is_long_lived() != (cached.record.token.kind == TokenKind::Jwt) {
        return Err(refused());
    }
    let grant = cached
        .usable(state.now(), meta.judged())
        .map_err(|refusal| Error::invalid_credential(refusal.to_string()))?;
    let scope = parse_scope(&claims.scope).map_err(|_| refused())?;
    let granted = narrow(&scope, grant);
    state.used(&cached, meta.ip);
    identify(&cached);
    Ok((
        cached,
        granted,
        claims.cnf.as_ref().map(|cnf| cnf.jkt.clone()),
    ))
}

/// Checks an api key end to end and returns its token; its grant is `effective`.
pub async fn authenticate_api_key(
    state: &AppState,
    presented: &str,
    meta: &ClientMeta,
) -> Result<Arc<CachedToken>> {
    let parsed = state
        .codec()
        .parse(presented)
        .map_err(|error| match error {
            SecretFormatError::Malformed => Error::invalid_credential("malformed credential"),
            SecretFormatError::ChecksumMismatch => {
                Error::invalid_credential("credential checksum mismatch")
            }
        })?;
    let (SecretType::ApiKey, Some(id)) = (parsed.kind, parsed.id) else {
        return Err(Error::invalid_credential(
            "the management API takes an api key",
        ));
    };
    let refused = || Error::invalid_credential("invalid credential");
    let cached = state.token(id).await?.ok_or_else(refused)?;
    let record = &cached.record;
    let verified = record.token.kind == TokenKind::ApiKey
        && record
            .secret
            .as_ref()
            .is_some_and(|stored| state.codec().verify(&parsed, stored));
    if !verified {
        return Err(refused());
    }
    cached
        .usable(state.now(), meta.judged())
        .map_err(|refusal| Error::invalid_credential(refusal.to_string()))?;
    state.used(&cached, meta.ip);
    identify(&cached);
    Ok(cached)
}

/// Names the authenticated token and its tenant in the request's span, so the access
/// log and every later line of the request carry them (docs/OPERATIONS.md, "Logs").
fn identify(cached: &CachedToken) {
    let token = &cached.record.token;
    let span = tracing::Span::current();
    span.record("token_id", tracing::field::display(token.id));
    span.record("tenant", tracing::field::display(token.owner.tenant_id()));
}

/// How an OAuth client authenticated: a secret, or a signed assertion
/// (`service::client_assertion`).
#[derive(Debug)]
pub enum Presented {
    /// `client_secret_basic` or `client_secret_post`.
    Secret(ClientCredentials),
    /// `private_key_jwt`.
    Assertion(ClientAssertion),
}

impl Presented {
    /// The client id it claims, as sent.
    fn claimed_client(&self) -> String {
        match self {
            Self::Secret(credentials) => credentials.client_id.clone(),
            Self::Assertion(assertion) => assertion.claimed_client(),
        }
    }
}

/// The id and secret an OAuth client presented, by either method (RFC 6749 §2.3.1).
#[derive(Debug)]
pub struct ClientCredentials {
    /// As sent: it may be no id at all.
    pub client_id: String,
    /// As sent: it may be no secret at all.
    pub secret: String,
}

/// Why an OAuth client was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRefused {
    /// Too many failures from this address or against this client: retry after this
    /// many seconds.
    Throttled(u64),
    /// Anything else; the audit trail has the reason, the client never learns it.
    Invalid,
}

/// Authenticates the client of an OAuth request at `endpoint` and returns its token.
/// Failures are throttled as `throttle` describes: against the address always, against
/// the client id only when the attempt was a guess at its secret.
pub async fn authenticate_client(
    state: &AppState,
    presented: &Presented,
    meta: &ClientMeta,
    endpoint: &str,
) -> Result<std::result::Result<Arc<CachedToken>, ClientRefused>> {
    let claimed = presented.claimed_client();
    let client = TokenId::parse(&claimed).ok();
    if let Some(wait) = state.throttle().blocked(client, meta.ip) {
        let failure = Failure {
            client_id: &claimed,
            tenant: None,
            reason: "throttled",
        };
        record_failure(state, meta, endpoint, failure).await;
        return Ok(Err(ClientRefused::Throttled(wait)));
    }
    let outcome = match presented {
        Presented::Secret(credentials) => check(state, credentials, meta).await?,
        Presented::Assertion(assertion) => client_assertion::check(state, assertion, meta).await?,
    };
    match outcome {
        Ok(token) => {
            state.throttle().succeeded(token.record.token.id, meta.ip);
            state.used(&token, meta.ip);
            identify(&token);
            Ok(Ok(token))
        }
        Err((reason, tenant)) => {
            // Only a guess at a secret counts against the client: an assertion cannot
            // be guessed.
            let guessed = match presented {
                Presented::Secret(credentials) => {
                    client.filter(|_| is_client_secret(state, &credentials.secret))
                }
                Presented::Assertion(_) => None,
            };
            state.throttle().failed(guessed, meta.ip);
            let failure = Failure {
                client_id: &claimed,
                tenant: tenant.as_deref(),
                reason,
            };
            record_failure(state, meta, endpoint, failure).await;
            Ok(Err(ClientRefused::Invalid))
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

fn dummy_secret() -> &'static StoredSecret {
    static DUMMY: OnceLock<StoredSecret> = OnceLock::new();
    DUMMY.get_or_init(|| StoredSecret {
        salt: vec![0x5a; 16],
        hash: vec![0u8; 32],
    })
}

/// Why a client was refused (for the audit trail only), and its tenant when known.
type Refusal = (&'static str, Option<String>);

async fn check(
    state: &AppState,
    presented: &ClientCredentials,
    meta: &ClientMeta,
) -> Result<std::result::Result<Arc<CachedToken>, Refusal>> {
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
    if record.public_key.is_some() {
        return Ok(Err(("key_client_needs_assertion", tenant)));
    }
    if !verified || record.kind != TokenKind::ClientCredentials {
        return Ok(Err(("bad_secret", tenant)));
    }
    match token.usable(state.now(), meta.judged()) {
        Ok(_) => Ok(Ok(token)),
        Err(refusal) => Ok(Err((refusal.audit_reason(), tenant))),
    }
}

/// A failed authentication, as the audit trail records it.
pub struct Failure<'a> {
    /// The client id as presented.
    pub client_id: &'a str,
    /// The client's tenant, when the client is known.
    pub tenant: Option<&'a str>,
    /// The reason (docs/API.md, "Failed authentications").
    pub reason: &'static str,
}

/// Audits a failed authentication at `endpoint`. The actor is the presented client id
/// only when it is a well-formed one: whatever else was sent there (a secret pasted into
/// the wrong field, say) never reaches the audit trail.
pub async fn record_failure(
    state: &AppState,
    meta: &ClientMeta,
    endpoint: &str,
    failure: Failure<'_>,
) {
    let context = AuditContext {
        actor: TokenId::parse(failure.client_id)
            .map(|id| id.to_string())
            .unwrap_or_else(|_| "malformed client_id".to_owned()),
        actor_user: None,
        ip: meta.ip.map(|ip| ip.to_string()),
        user_agent: meta.agent(),
        at: state.now(),
    };
    let event = AuditEvent::new(
        AuditAction::AuthFailed,
        failure.tenant,
        Some(context.actor.clone()),
    )
    .with_details(json!({ "reason": failure.reason, "endpoint": endpoint }));
    state.audit().record(context, event).await;
}

/// The audit context of an authenticated client's request.
pub fn client_context(state: &AppState, meta: &ClientMeta, client: &Token) -> AuditContext {
    AuditContext {
        actor: client.id.to_string(),
        actor_user: client.owner.user_id().map(ToString::to_string),
        ip: meta.ip.map(|ip| ip.to_string()),
        user_agent: meta.agent(),
        at: state.now(),
    }
}
