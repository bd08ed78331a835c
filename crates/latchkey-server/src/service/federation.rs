//! Outside issuers' keys for the JWT-bearer grant (docs/API.md, "The JWT-bearer
//! grant"): OIDC discovery (`{issuer}/.well-known/openid-configuration` → `jwks_uri`),
//! the fetched JWKS cached per issuer, and a refetch on an unknown `kid` at most once
//! per `trust_jwks_min_refresh_seconds`.
//!
//! Fetch safety. Only issuers some trust names are ever fetched (the grant finds the
//! trust first), so a caller cannot point the server at a URL of its choosing. An issuer
//! is fetched over https; plain http only for a loopback issuer (a test or a sidecar) or
//! when the operator sets `trust_allow_insecure_issuers`. Each host is resolved here and
//! the connection goes to the checked address: loopback, private and link-local
//! addresses are refused unless the issuer itself is a loopback one or the operator
//! sets `trust_allow_private_issuers`. Redirects are not followed, answers are bounded
//! in size and time, and the discovery document's `issuer` must be the issuer itself
//! (OpenID Connect Discovery §4.3).

use crate::service::webhooks::{Target, is_forbidden, parse_url};
use latchkey_verify::assertion::{JwkSet, PublicKey};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The most bytes of a discovery document or key set read.
pub const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// How long one fetch (connect, TLS, request, answer) may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// A key set is refetched after this long even when every `kid` is known, so a key the
/// issuer withdrew stops working.
const MAX_KEY_AGE: Duration = Duration::from_secs(3600);

/// One GET to an address already resolved and checked.
pub struct Fetch {
    /// Where to connect.
    pub address: SocketAddr,
    /// The URL, parsed.
    pub target: Target,
    /// The most body bytes accepted.
    pub max_body: usize,
    /// The whole fetch's deadline.
    pub timeout: Duration,
}

/// An answer.
pub struct Fetched {
    /// The HTTP status.
    pub status: u16,
    /// The body.
    pub body: Vec<u8>,
}

/// Performs a [`Fetch`] (the HTTP layer's `outbound::get`; tests may inject another).
pub type Get = fn(Fetch) -> Pin<Box<dyn Future<Output = Result<Fetched, String>> + Send>>;

/// The operator's settings for issuer fetches.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchPolicy {
    /// Plain http to issuers beyond loopback.
    pub allow_insecure: bool,
    /// Issuers on private, link-local or loopback addresses.
    pub allow_private: bool,
    /// The least time between two fetches of one issuer's keys.
    pub min_refresh: Duration,
}

/// Why no key was found; the text is for the log and the audit trail, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The issuer's key set has no usable key of that id, even after any refetch allowed.
    UnknownKey,
    /// The issuer could not be fetched or answered nonsense.
    Unreachable(String),
}

struct Cached {
    keys: Option<Arc<JwkSet>>,
    fetched_at: Instant,
}

/// The key sets of the issuers trusts name, fetched on demand.
pub struct IssuerKeys {
    get: Get,
    policy: FetchPolicy,
    cache: Mutex<HashMap<String, Cached>>,
}

impl IssuerKeys {
    /// An empty cache that fetches with `get` under `policy`.
    pub fn new(get: Get, policy: FetchPolicy) -> Self {
        Self {
            get,
            policy,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The key `kid` of `issuer`: from the cache, or after a (rate-limited) refetch
    /// when the cache lacks it or is old.
    pub async fn key(&self, issuer: &str, kid: &str) -> Result<PublicKey, KeyError> {
        let now = Instant::now();
        let (cached, may_fetch) = {
            let cache = self.cache.lock().map_err(|_| unreachable_lock())?;
            match cache.get(issuer) {
                None => (None, true),
                Some(entry) => {
                    let age = now.saturating_duration_since(entry.fetched_at);
                    (entry.keys.clone(), age >= self.policy.min_refresh)
                }
            }
        };
        if let Some(key) = cached.as_ref().and_then(|keys| keys.get(kid)) {
            let fresh = !may_fetch || self.age(issuer, now) < MAX_KEY_AGE;
            if fresh {
                return Ok(key);
            }
        }
        if !may_fetch {
            return Err(KeyError::UnknownKey);
        }
        // Mark the attempt before fetching, so that concurrent requests with unknown
        // kids make one fetch, not one each.
        if let Ok(mut cache) = self.cache.lock() {
            let keys = cache.get(issuer).and_then(|c| c.keys.clone());
            cache.insert(
                issuer.to_owned(),
                Cached {
                    keys,
                    fetched_at: now,
                },
            );
        }
        let fetched = self.fetch_keys(issuer).await;
        let keys = match fetched {
            Ok(keys) => Arc::new(keys),
            Err(why) => {
                tracing::warn!(issuer, why, "fetching a trust issuer's keys failed");
                return Err(KeyError::Unreachable(why));
            }
        };
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(
                issuer.to_owned(),
                Cached {
                    keys: Some(keys.clone()),
                    fetched_at: Instant::now(),
                },
            );
        }
        keys.get(kid).ok_or(KeyError::UnknownKey)
    }

    fn age(&self, issuer: &str, now: Instant) -> Duration {
        self.cache
            .lock()
            .ok()
            .and_then(|cache| {
                cache
                    .get(issuer)
                    .map(|c| now.saturating_duration_since(c.fetched_at))
            })
            .unwrap_or(Duration::MAX)
    }

    async fn fetch_keys(&self, issuer: &str) -> Result<JwkSet, String> {
        let loopback_issuer = is_loopback_issuer(issuer);
        let discovery = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let document = self.fetch_json(&discovery, loopback_issuer).await?;
        let document: serde_json::Value = serde_json::from_slice(&document)
            .map_err(|_| "the discovery document is not JSON".to_owned())?;
        if document.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
            return Err("the discovery document names another issuer".to_owned());
        }
        let jwks_uri = document
            .get("jwks_uri")
            .and_then(|v| v.as_str())
            .ok_or_else(|| "the discovery document has no jwks_uri".to_owned())?;
        let jwks = self.fetch_json(jwks_uri, loopback_issuer).await?;
        let keys = JwkSet::parse(&jwks).map_err(|why| format!("the key set: {why}"))?;
        if keys.is_empty() {
            return Err("the key set holds no usable key".to_owned());
        }
        Ok(keys)
    }

    async fn fetch_json(&self, url: &str, loopback_issuer: bool) -> Result<Vec<u8>, String> {
        let target = check_url(url, loopback_issuer, self.policy.allow_insecure)?;
        let allow_private = loopback_issuer || self.policy.allow_private;
        let address = tokio::time::timeout(FETCH_TIMEOUT, resolve(&target, allow_private))
            .await
            .map_err(|_| format!("resolving {} timed out", target.host))??;
        let fetched = (self.get)(Fetch {
            address,
            target,
            max_body: MAX_DOCUMENT_BYTES,
            timeout: FETCH_TIMEOUT,
        })
        .await?;
        if fetched.status != 200 {
            // Redirects included: they are never followed.
            return Err(format!("{url} answered {}", fetched.status));
        }
        Ok(fetched.body)
    }
}

fn unreachable_lock() -> KeyError {
    KeyError::Unreachable("the key cache is unavailable".to_owned())
}

/// True when the URL's host is a loopback address or `localhost`.
pub fn is_loopback_issuer(url: &str) -> bool {
    parse_url(url).is_ok_and(|target| is_loopback_host(&target.host))
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Checks an issuer URL as a trust's creation and each fetch judge it: an absolute
/// http(s) URL without user information, query or fragment; https unless it is a
/// loopback issuer or `allow_insecure`. The reason is safe to show.
pub fn check_issuer_url(url: &str, allow_insecure: bool) -> Result<Target, String> {
    if url.contains('?') || url.contains('#') {
        return Err("must not carry a query or fragment".to_owned());
    }
    check_url(url, is_loopback_issuer(url), allow_insecure)
}

fn check_url(url: &str, loopback_issuer: bool, allow_insecure: bool) -> Result<Target, String> {
    let target = parse_url(url)?;
    let plain_allowed = allow_insecure || (loopback_issuer && is_loopback_host(&target.host));
    if !target.https && !plain_allowed {
        return Err(
            "must be https (plain http only on loopback, or when the operator sets \
             trust_allow_insecure_issuers)"
                .to_owned(),
        );
    }
    Ok(target)
}

/// The first address of the host that may be reached.
async fn resolve(target: &Target, allow_private: bool) -> Result<SocketAddr, String> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|error| format!("resolving {}: {error}", target.host))?
        .collect();
    found
        .iter()
        .find(|address| allow_private || !is_forbidden(address.ip()))
        .copied()
        .ok_or_else(|| {
            format!(
                "{} resolves to no address that may be fetched (private and loopback \
                 addresses need trust_allow_private_issuers)",
                target.host
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_are_https_unless_loopback_or_allowed() {
        assert!(check_issuer_url("https://token.actions.githubusercontent.com", false).is_ok());
        assert!(check_issuer_url("http://127.0.0.1:8080", false).is_ok());
        assert!(check_issuer_url("http://localhost:8080/issuer", false).is_ok());
        assert!(check_issuer_url("http://[::1]:8080", false).is_ok());
        assert!(check_issuer_url("http://ci.example", false).is_err());
        assert!(check_issuer_url("http://ci.example", true).is_ok());
        assert!(check_issuer_url("https://ci.example?x=1", false).is_err());
        assert!(check_issuer_url("https://user:pw@ci.example", false).is_err());
        assert!(check_issuer_url("ftp://ci.example", false).is_err());
    }

    #[test]
    fn a_public_issuer_may_not_send_its_keys_over_plain_http_to_loopback() {
        // The jwks_uri of a non-loopback issuer is judged as that issuer's.
        assert!(check_url("http://127.0.0.1/jwks", false, false).is_err());
        assert!(check_url("http://127.0.0.1/jwks", true, false).is_ok());
    }
}
