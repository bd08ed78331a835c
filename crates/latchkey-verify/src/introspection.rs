//! Introspection (RFC 7662) of api keys and long-lived JWTs, with its cache.
//!
//! Policy: the verifier asks with its own credential. Answers are cached under the
//! SHA-256 of the presented token — never the token itself, so a memory dump of a
//! resource server yields no usable credential — with a positive TTL (never past the
//! token's own `exp`) and a shorter negative TTL. Concurrent requests for one token
//! share a single introspection (single-flight). A failure to get an answer (network,
//! status, a malformed body, our credential refused) is not cached and fails closed
//! with a 503. The scope check is not done here: callers run it on every request, so
//! a cached answer is never a way past it. The server narrows an answer's scope to what
//! the token grants at that moment, so every cached answer is dropped whenever the
//! deny list reports a role or membership change, and an answer is only served at the
//! state epoch it was asked at — an introspection that was in flight during a change
//! cannot bring the old grant back into the cache.

use crate::cache::BoundedCache;
use crate::error::{InvalidReason, VerifyError};
use crate::http::Http;
use crate::json::parse_object;
use crate::jwt::numeric_date;
use crate::narrow::{GrantBasis, Narrowable};
use crate::options::Credential;
use crate::principal::{Principal, TokenKind};
use aws_lc_rs::digest::{SHA256, digest};
use latchkey_core::jwt::TokenOwnerType;
use latchkey_core::permission::parse_scope;
use latchkey_core::{PermissionSet, TenantId, Timestamp, TokenId, UserId};
use reqwest::StatusCode;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::OnceCell;

/// The cache key: SHA-256 of the presented token.
type TokenHash = [u8; 32];

type Flight = Arc<OnceCell<Result<Outcome, VerifyError>>>;

/// What was presented for introspection.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Presented {
    /// An api key, with the token id embedded in it.
    ApiKey(TokenId),
    /// A long-lived JWT whose signature and claims already verified.
    Jwt,
}

/// An introspection answer.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// An active api key: the caller the answer describes, with its `rol`/`prm` when the
    /// answer carried them.
    ApiKey(Arc<Narrowable>),
    /// An active JWT, with the scope the server says it grants now, when it said.
    Jwt(Option<Arc<PermissionSet>>),
    /// Not active: unknown, expired or revoked.
    Inactive,
}

/// Settings of the introspection client and cache.
#[derive(Debug)]
pub(crate) struct IntrospectorConfig {
    pub(crate) endpoint: String,
    pub(crate) issuer: String,
    pub(crate) credential: Option<Credential>,
    pub(crate) entries: usize,
    pub(crate) positive_ttl_ms: i64,
    pub(crate) negative_ttl_ms: i64,
}

/// See the module docs.
pub(crate) struct Introspector {
    config: IntrospectorConfig,
    http: Http,
    /// Answers with the deny list's state epoch when they were asked for.
    cache: BoundedCache<TokenHash, (Outcome, u64)>,
    flights: Mutex<HashMap<TokenHash, Flight>>,
}

impl Introspector {
    pub(crate) fn new(config: IntrospectorConfig, http: Http) -> Self {
        let cache = BoundedCache::new(8, config.entries);
        Self {
            config,
            http,
            cache,
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `token` is active, from the cache (an answer asked for at state `epoch`)
    /// or the issuer.
    pub(crate) async fn introspect(
        &self,
        token: &str,
        presented: Presented,
        now: Timestamp,
        epoch: u64,
    ) -> Result<Outcome, VerifyError> {
        let Some(credential) = &self.config.credential else {
            return Err(InvalidReason::IntrospectionNotConfigured.into());
        };
        let hash = hash(token);
        if let Some((hit, asked_at)) = self.cache.get(&hash, now.millis())
            && asked_at == epoch
        {
            return Ok(hit);
        }
        let flight = self
            .flights
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(hash)
            .or_default()
            .clone();
        let result = flight
            .get_or_init(|| async {
                let result = self.ask(token, credential, presented, now).await;
                // Cached before the flight ends, so no one arriving later misses both.
                if let Ok(outcome) = &result {
                    self.cache.insert(
                        hash,
                        (outcome.clone(), epoch),
                        self.deadline(outcome, now),
                        1,
                        now.millis(),
                    );
                }
                result
            })
            .await
            .clone();
        let mut flights = self.flights.lock().unwrap_or_else(PoisonError::into_inner);
        if flights.get(&hash).is_some_and(|f| Arc::ptr_eq(f, &flight)) {
            flights.remove(&hash);
        }
        result
    }

    /// Drops cached answers describing a matching principal.
    pub(crate) fn evict(&self, doomed: &dyn Fn(&Principal) -> bool) {
        self.cache.remove_where(|(outcome, _)| match outcome {
            Outcome::ApiKey(narrowable) => doomed(&narrowable.issued),
            _ => false,
        });
    }

    /// Drops every cached answer.
    pub(crate) fn forget_all(&self) {
        self.cache.remove_where(|_| true);
    }

    /// Drops the cached answer for `token`.
    pub(crate) fn forget(&self, token: &str) {
        self.cache.remove(&hash(token));
    }

    fn deadline(&self, outcome: &Outcome, now: Timestamp) -> i64 {
        let now = now.millis();
        match outcome {
            Outcome::Inactive => now.saturating_add(self.config.negative_ttl_ms),
            Outcome::ApiKey(_) | Outcome::Jwt(_) => {
                let ttl = now.saturating_add(self.config.positive_ttl_ms);
                let expires_at = match outcome {
                    Outcome::ApiKey(narrowable) => narrowable.issued.expires_at,
                    _ => None,
                };
                match expires_at {
                    Some(exp) => ttl.min(exp.saturating_mul(1000)),
                    None => ttl,
                }
            }
        }
    }

    async fn ask(
        &self,
        token: &str,
        credential: &Credential,
        presented: Presented,
        now: Timestamp,
    ) -> Result<Outcome, VerifyError> {
        let (status, body) = self
            .http
            .introspect(&self.config.endpoint, token, credential.expose())
            .await
            .map_err(|e| unavailable(&format!("introspection failed: {}", e.0)))?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(unavailable(
                "the issuer refused this verifier's introspection credential",
            ));
        }
        if status != StatusCode::OK {
            return Err(unavailable(&format!("introspection answered {status}")));
        }
        let answer = parse_object(&body).map_err(|_| malformed())?;
        match answer.get("active") {
            Some(Value::Bool(false)) => return Ok(Outcome::Inactive),
            Some(Value::Bool(true)) => {}
            _ => return Err(malformed()),
        }
        if answer
            .get("iss")
            .is_some_and(|iss| iss.as_str() != Some(self.config.issuer.as_str()))
        {
            return Err(unavailable("introspection answered for another issuer"));
        }
        let exp = answer.get("exp").map(numeric_date);
        if exp.is_some_and(|exp| exp <= now.unix_seconds()) {
            return Ok(Outcome::Inactive);
        }
        match presented {
            Presented::Jwt => {
                let scope = match answer.get("scope") {
                    None => None,
                    Some(Value::String(scope)) => {
                        Some(Arc::new(parse_scope(scope).map_err(|_| malformed())?))
                    }
                    Some(_) => return Err(malformed()),
                };
                Ok(Outcome::Jwt(scope))
            }
            Presented::ApiKey(id) => {
                let principal = principal(&answer, exp).ok_or_else(malformed)?;
                if principal.token_id != id {
                    return Err(unavailable("introspection answered for another token"));
                }
                let basis = grant_basis(&answer)?;
                Ok(Outcome::ApiKey(Arc::new(Narrowable::new(principal, basis))))
            }
        }
    }
}

fn hash(token: &str) -> TokenHash {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

fn unavailable(why: &str) -> VerifyError {
    tracing::error!(why, "introspection unavailable");
    VerifyError::Unavailable(why.to_owned())
}

fn malformed() -> VerifyError {
    unavailable("introspection answer is malformed")
}

/// The answer's `rol` and `prm`, when it carries both; an answer without them is not
/// narrowed here (the server narrowed it when it answered).
fn grant_basis(answer: &Map<String, Value>) -> Result<Option<GrantBasis>, VerifyError> {
    let strings = |name: &str| -> Result<Option<Vec<String>>, VerifyError> {
        match answer.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| item.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .map(Some)
                .ok_or_else(malformed),
            Some(_) => Err(malformed()),
        }
    };
    match (strings("rol")?, strings("prm")?) {
        (Some(roles), Some(permissions)) => GrantBasis::parse(Some(&roles), Some(&permissions))
            .map(Some)
            .ok_or_else(malformed),
        _ => Ok(None),
    }
}

/// The api key's caller, from an active answer.
fn principal(answer: &Map<String, Value>, exp: Option<i64>) -> Option<Principal> {
    let text = |name: &str| answer.get(name).and_then(Value::as_str);
    let token_id = TokenId::parse(text("client_id").or(text("sub"))?).ok()?;
    let tenant = TenantId::parse(text("tid")?).ok()?;
    let user = match text("uid") {
        Some(uid) => Some(UserId::parse(uid).ok()?),
        None => None,
    };
    let scopes = parse_scope(text("scope").unwrap_or("")).ok()?;
    let owner = if user.is_some() {
        TokenOwnerType::User
    } else {
        TokenOwnerType::Tenant
    };
    let ip_allowlist = match answer.get("ip_allowlist") {
        None => Vec::new(),
        Some(Value::Array(networks)) => networks
            .iter()
            .map(|net| {
                net.as_str()
                    .and_then(|n| latchkey_core::cidr::IpNet::parse(n).ok())
            })
            .collect::<Option<Vec<_>>>()?,
        Some(_) => return None,
    };
    Some(Principal {
        token_id,
        tenant,
        user,
        owner,
        kind: TokenKind::ApiKey,
        scopes,
        jti: None,
        expires_at: exp,
        ip_allowlist,
        // Only api keys are introspected into a principal; JWTs keep the one their
        // claims gave.
        trust: None,
    })
}
